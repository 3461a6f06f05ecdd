/*
 * xkvm-xenstored --rundir DIR [--foreground]: the xenstore daemon (docs/dom0-services.md)
 * xkvm-xenstored --rundir DIR export DOMID FILE | import DOMID FILE  (via the running daemon)
 */
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "util/daemon.h"
#include "xsd.h"

struct xsd xsd;
static FILE *log_file;
static void **graveyard;
static size_t ngrave, capgrave;

void xsd_log(const char *fmt, ...)
{
    FILE *f = log_file ? log_file : stderr;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(f, "%02d:%02d:%02d.%03ld xenstored: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

int xsd_ev_add(struct xsd_ev *e, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = e };
    return epoll_ctl(xsd.epfd, EPOLL_CTL_ADD, e->fd, &ev) < 0 ? -errno : 0;
}

void xsd_ev_mod(struct xsd_ev *e, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = e };
    epoll_ctl(xsd.epfd, EPOLL_CTL_MOD, e->fd, &ev);
}

void xsd_ev_del(struct xsd_ev *e)
{
    epoll_ctl(xsd.epfd, EPOLL_CTL_DEL, e->fd, NULL);
    e->fn = NULL;
}

void xsd_defer_free(void *p)
{
    if (ngrave == capgrave) {
        capgrave = capgrave ? capgrave * 2 : 16;
        graveyard = realloc(graveyard, capgrave * sizeof(*graveyard));
        if (!graveyard)
            abort();
    }
    graveyard[ngrave++] = p;
}

/* ---------------------------------------------------------------- export/import */

static int ctl_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > (64 << 20)) {
        close(fd);
        return EINVAL;
    }
    *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = read(fd, *buf, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) {
        free(*buf);
        return EIO;
    }
    *len = (size_t)n;
    return 0;
}

/*
 * Fault injection for the test suite (tests/kvm/migrate-xenstore.sh): with
 * XKVM_TEST_FAULT=xenstored-no-quiesce this xenstored answers an export as one older
 * than the word `quiesce` does (it ignores it and says "OK").
 */
static bool acts_without_quiesce(void)
{
    const char *f = getenv("XKVM_TEST_FAULT");
    return f && !strcmp(f, "xenstored-no-quiesce");
}

/*
 * CONTROL export|DOMID|FILE[|quiesce], import|DOMID|FILE and resume|DOMID: the file is
 * written/read by the daemon. quiesce: a migration's stop; the domain's ring stays as
 * it is from now on (its bytes in flight are in the export) until resume, should the
 * migration fail.
 */
static int control(struct xs *xs, struct xs_conn *c, const char **v, int n, char *out,
                   size_t outsz, size_t *outlen)
{
    if (!strcmp(v[0], "resume")) {
        unsigned long domid;
        if (n < 2 || !xs_parse_uint(v[1], XS_MAX_DOMID, &domid))
            return EINVAL;
        struct xs_domain *d = xs_domain_find(xs, (uint32_t)domid);
        if (d)
            xsd_ring_quiesce(d, false);
        *outlen = (size_t)snprintf(out, outsz, "OK") + 1;
        return d ? 0 : ENOENT;
    }
    if (!strcmp(v[0], "export")) {
        unsigned long domid;
        if (n < 3 || !xs_parse_uint(v[1], XS_MAX_DOMID, &domid) || v[2][0] != '/' ||
            (n > 3 && strcmp(v[3], "quiesce")))
            return EINVAL;
        struct xs_domain *d = xs_domain_find(xs, (uint32_t)domid);
        struct xs_conn_bytes pending = { 0 };
        bool quiesce = n > 3 && !acts_without_quiesce();
        if (d && quiesce)
            xsd_ring_quiesce(d, true);
        if (d)
            xsd_ring_in_flight(d, &pending);
        size_t len;
        uint8_t *b = xs_migrate_export(xs, (uint32_t)domid, &pending, &len);
        if (!b)
            return ENOENT;
        int fd = open(v[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int err = 0;
        if (fd < 0 || write(fd, b, len) != (ssize_t)len)
            err = EIO;
        if (fd >= 0)
            close(fd);
        free(b);
        /* "OK quiesced" tells the toolstack this xenstored knows the word (an older one
         * ignores it and says "OK"). */
        if (!err)
            *outlen = (size_t)snprintf(out, outsz, quiesce ? "OK quiesced" : "OK") + 1;
        return err;
    }
    if (!strcmp(v[0], "import")) {
        /* The verdict is the reply ("OK" or "ERROR: why"), so the toolstack can say why. */
        unsigned long domid;
        uint8_t *b = NULL;
        size_t len = 0;
        if (n < 3 || !xs_parse_uint(v[1], XS_MAX_DOMID, &domid) || v[2][0] != '/')
            return EINVAL;
        int err = ctl_file(v[2], &b, &len);
        if (err)
            return err == ENOENT ? ENOENT : EIO;
        char why[512];
        err = xs_migrate_import_domain(xs, b, len, (uint32_t)domid, why, sizeof(why));
        free(b);
        if (err)
            xsd_log("import for d%lu refused: %s", domid, why);
        *outlen = (size_t)snprintf(out, outsz, err ? "ERROR: %s" : "OK", why) + 1;
        return 0;
    }
    return ENOSYS;
}

/* The CLI side: one CONTROL request on the socket. */
static int client_control(const char *sock, const char **args, int nargs)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr, "xkvm-xenstored: cannot connect to %s: %s\n", sock, strerror(errno));
        return 1;
    }
    uint8_t buf[XS_HDR_SIZE + XENSTORE_PAYLOAD_MAX];
    size_t off = XS_HDR_SIZE;
    for (int i = 0; i < nargs; i++) {
        size_t l = strlen(args[i]) + 1;
        if (off + l > sizeof(buf))
            return 1;
        memcpy(buf + off, args[i], l);
        off += l;
    }
    struct xsd_sockmsg h = { .type = XS_CONTROL, .req_id = 1, .len = (uint32_t)(off - XS_HDR_SIZE) };
    memcpy(buf, &h, sizeof(h));
    if (write(fd, buf, off) != (ssize_t)off)
        return 1;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
        if (n <= 0)
            return 1;
        got += (size_t)n;
        const uint8_t *body;
        size_t used;
        int r = xs_wire_parse(buf, got, &h, &body, &used);
        if (r < 0)
            return 1;
        if (r == 0)
            continue;
        if (h.type == XS_ERROR) {
            fprintf(stderr, "xkvm-xenstored: %s: %.*s\n", args[0], (int)h.len, body);
            return 1;
        }
        if (h.len > 6 && !memcmp(body, "ERROR:", 6)) {
            fprintf(stderr, "xkvm-xenstored: %s: %.*s\n", args[0], (int)h.len - 7, body + 7);
            return 1;
        }
        return 0;
    }
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: xkvm-xenstored --rundir DIR [--foreground]\n"
               "       xkvm-xenstored --rundir DIR export DOMID FILE\n"
               "       xkvm-xenstored --rundir DIR import DOMID FILE\n");
}

static const struct daemon_cli cli = {
    .common = DAEMON_OPT_RUNDIR | DAEMON_OPT_FOREGROUND | DAEMON_OPT_HELP |
              DAEMON_OPT_OPERANDS,
    .usage = usage,
};

/* export DOMID FILE | import DOMID FILE: one CONTROL request to the running daemon. */
static int client_main(const char *sock, int argc, char **argv, int i)
{
    char absf[4200];
    const char *args[3];
    if (argc - i != 3 || (strcmp(argv[i], "export") && strcmp(argv[i], "import"))) {
        usage(stderr);
        return 2;
    }
    args[0] = argv[i];
    args[1] = argv[i + 1];
    args[2] = realpath(argv[i + 2], absf) ? absf : argv[i + 2];
    if (!strcmp(argv[i], "export") && argv[i + 2][0] != '/' && args[2] != absf) {
        char cwd[4096];
        snprintf(absf, sizeof(absf), "%s/%s", getcwd(cwd, sizeof(cwd)) ? cwd : ".",
                 argv[i + 2]);
        args[2] = absf;
    }
    return client_control(sock, args, 3);
}

/*
 * The run directory (ours, 0700) and RUNDIR/xenstored in it; one xenstored per run
 * directory (the lock on xenstored/xenstored.pid, fd in *lockfd); the log when detached.
 */
static int prepare_dirs(struct daemon *dm, int *lockfd)
{
    char err[512];
    if (daemon_rundir(dm, true, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", dm->name, err);
        return 1;
    }
    xsd.rundir = dm->absdir;
    snprintf(xsd.dir, sizeof(xsd.dir), "%s/xenstored", xsd.rundir);
    if (mkdir(xsd.dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "%s: %s: %s\n", dm->name, xsd.dir, strerror(errno));
        return 1;
    }
    if ((*lockfd = daemon_lock(dm, "xenstored/xenstored.pid", 0644, false, err,
                               sizeof(err))) < 0) {
        fprintf(stderr, "%s: %s\n", dm->name, err);
        return 1;
    }
    if (!dm->foreground) {
        char lp[4200];
        snprintf(lp, sizeof(lp), "%s/xenstored.log", xsd.dir);
        int fd = daemon_open_private(lp, O_WRONLY | O_APPEND);
        log_file = fd >= 0 ? fdopen(fd, "a") : NULL;
    }
    return DAEMON_CONTINUE;
}

int main(int argc, char **argv)
{
    struct daemon dm = DAEMON_INIT("xkvm-xenstored", "xenstored/xenstored.log");
    int rc = daemon_parse(&dm, &cli, argc, argv);
    if (rc != DAEMON_CONTINUE)
        return rc;
    char sock[4200];
    snprintf(sock, sizeof(sock), "%s/xenstored/socket", dm.rundir);
    if (dm.operand < argc)
        return client_main(sock, argc, argv, dm.operand);

    signal(SIGPIPE, SIG_IGN);
    int lockfd;
    if ((rc = prepare_dirs(&dm, &lockfd)) != DAEMON_CONTINUE)
        return rc;
    snprintf(sock, sizeof(sock), "%s/socket", xsd.dir);
    xsd.epfd = epoll_create1(EPOLL_CLOEXEC);
    xs_init(&xsd.xs);
    xsd.xs.log = xsd_log;
    xsd.xs.ops.control = control;
    xsd_persist_hooks();
    int r = xsd_persist_open();
    if (r < 0) {
        xsd_log("cannot write state in %s: %s", xsd.dir, strerror(-r));
        return 1;
    }
    r = xsd_socket_listen(sock);
    if (r < 0) {
        xsd_log("cannot listen on %s: %s", sock, strerror(-r));
        return 1;
    }
    xsd_domain_init();
    /* Detached only now: when the parent returns, the socket is there. */
    if ((rc = daemon_detach(&dm, 0)) != DAEMON_CONTINUE)
        return rc;
    daemon_write_pid(lockfd);
    xsd_log("ready on %s (%zu nodes)", sock, xsd.xs.tree->count);
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(xsd.epfd, evs, 64, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct xsd_ev *e = evs[i].data.ptr;
            if (e->fn)
                e->fn(e, evs[i].events);
        }
        for (size_t i = 0; i < ngrave; i++)
            free(graveyard[i]);
        ngrave = 0;
    }
    return 1;
}
