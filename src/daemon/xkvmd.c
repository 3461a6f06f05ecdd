/*
 * xkvmd: the hypervisor. One per host (run directory). Owns /dev/kvm, machine memory
 * and the domains; serves the toolstack on RUNDIR/xkvmd.sock.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/control.h"
#include "daemon/lu_command.h"
#include "util/control_reply.h"
#include "migrate/live_update.h"
#include "migrate/migrate.h"
#include "daemon/migrate_job.h"
#include "hv/dom0.h"
#include "hv/domain.h"
#include "hv/event.h"
#include "hv/hv.h"
#include "daemon/services.h"
#include "hv/toolstack_xs.h"
#include "hv/vcpu.h"
#include "util/log.h"
#include "xkvm/control.h"
#include "xkvm/live_update.h"

#define DEFAULT_MACHINE_MEMORY (4ULL << 30)
#define MAX_CLIENTS 64
#define CLIENT_IDLE_MS 60000        /* a connection with nothing to do is closed after */
#define CLIENT_OUT_MAX (1 << 20)    /* replies a client leaves unread before it is dropped */

/*
 * A control-socket connection. Requests are handled in order; a client that does not
 * read its replies is not read from until it does, so it can stall only itself.
 */
struct client {
    int fd;
    int passed_fd;              /* a descriptor that came with the request (save, restore) */
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    uint64_t last_active_ms;
};

static struct client clients[MAX_CLIENTS];
static volatile sig_atomic_t stop_requested;
static int epoll_fd;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 20;  /* bare numbers are MiB, as xl's memory= */
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    case '\0': break;
    default: return -EINVAL;
    }
    if ((*end == 'b' || *end == 'B') && end[1] == '\0')
        end++;
    if (*end || v == 0 || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static int listen_control(const char *rundir)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rundir,
                         XKVM_CONTROL_SOCKET) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    /* Not CLOEXEC: live update hands the listening socket to the next xkvmd. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path);   /* we hold the pidfile lock: any socket here is stale */
    /* Created 0600: no window in which another user may connect. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || listen(fd, 16) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/*
 * The run directory holds guests' consoles and the sockets that control them: ours
 * alone (0700). An existing one is tightened; a shared one (world-writable, sticky,
 * or another user's) is refused rather than taken over.
 */
static int prepare_rundir(const char *rundir, char *err, size_t errlen)
{
    if (mkdir(rundir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create run directory %s: %s", rundir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(rundir, &st) < 0) {
        snprintf(err, errlen, "run directory %s: %s", rundir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "run directory %s: not a directory", rundir);
        return -1;
    }
    if (st.st_uid != geteuid() || (st.st_mode & (S_ISVTX | S_IWOTH))) {
        snprintf(err, errlen, "run directory %s is shared (%s): give xkvmd one of its own",
                 rundir, st.st_uid != geteuid() ? "another user's" : "world-writable or sticky");
        return -1;
    }
    if ((st.st_mode & 077) && chmod(rundir, 0700) < 0) {
        snprintf(err, errlen, "run directory %s: chmod 0700: %s", rundir, strerror(errno));
        return -1;
    }
    return 0;
}

/* --migrate-timeout, --migrate-max-memory, --migrate-max-total. 0, or -1 (said why). */
static int parse_incoming_limit(int opt, const char *arg, struct migrate_incoming_limits *l)
{
    if (opt == 'T') {
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < 1 || v > 7 * 86400) {
            fprintf(stderr, "xkvmd: bad --migrate-timeout '%s' (1 to 604800 seconds)\n", arg);
            return -1;
        }
        l->timeout_s = (unsigned)v;
        return 0;
    }
    uint64_t bytes;
    if (parse_size(arg, &bytes) || bytes < (1ULL << 20)) {
        fprintf(stderr, "xkvmd: bad --migrate-max-%s '%s' (e.g. 512M, 4G)\n",
                opt == 'X' ? "memory" : "total", arg);
        return -1;
    }
    *(opt == 'X' ? &l->max_memory_mb : &l->max_total_mb) = bytes >> 20;
    return 0;
}

/* One xkvmd per run directory: hold an exclusive lock on its pidfile. */
static int lock_pidfile(const char *rundir, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", rundir, XKVM_PIDFILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = read(fd, pid, sizeof(pid) - 1);
        if (n > 0)
            pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "another xkvmd (pid %s) is running in %s", pid, rundir);
        close(fd);
        return -EBUSY;
    }
    return fd;
}

static void write_pidfile(int fd)
{
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n)
        return;
}

static void client_close(struct client *c)
{
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->passed_fd >= 0)
        close(c->passed_fd);
    free(c->in);
    free(c->out);
    *c = (struct client){ .fd = -1, .passed_fd = -1 };
}

static void client_watch(struct client *c)
{
    bool pending = c->out_off < c->out_len;
    struct epoll_event ev = { .events = pending ? EPOLLOUT : EPOLLIN, .data.fd = c->fd };
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what is queued; false if the client is gone. */
static bool client_flush(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0)
            return false;
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    client_watch(c);
    return true;
}

static bool client_queue(struct client *c, const char *s, size_t n)
{
    if (c->out_len - c->out_off + n > CLIENT_OUT_MAX)
        return false;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    char *nb = realloc(c->out, c->out_len + n);
    if (!nb)
        return false;
    memcpy(nb + c->out_len, s, n);
    c->out = nb;
    c->out_len += n;
    return true;
}

/* Answer complete request lines, stopping while replies wait to be read. */
static void client_process(struct client *c)
{
    size_t start = 0;
    for (size_t i = 0; i < c->in_len && c->out_off == c->out_len; i++) {
        if (c->in[i] != '\n')
            continue;
        bool detached = false;
        char *reply = control_handle_line_fd(c->in + start, i - start, c->fd,
                                             &c->passed_fd, &detached);
        if (c->passed_fd >= 0) {
            close(c->passed_fd);    /* the request did not take it: it was not for it */
            c->passed_fd = -1;
        }
        if (detached) {
            /* A job thread owns the connection now (it got its own dup of the fd). */
            client_close(c);
            return;
        }
        bool ok = reply && client_queue(c, reply, strlen(reply));
        free(reply);
        start = i + 1;
        if (!ok || !client_flush(c)) {
            client_close(c);
            return;
        }
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
}

/*
 * Read what the client sent, and a descriptor that came with it (the file of a save
 * or restore; any further ones are closed). A new one replaces one not yet taken.
 */
static ssize_t client_recv(struct client *c, char *buf, size_t len)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                          .msg_controllen = sizeof(ctl.space) };
    ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
    bool got = false;
    for (struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; h; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < nfds; k++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + k * sizeof(int), sizeof(fd));
            if (got) {
                close(fd);
                continue;
            }
            if (c->passed_fd >= 0)
                close(c->passed_fd);
            c->passed_fd = fd;
            got = true;
        }
    }
    return n;
}

static void client_readable(struct client *c)
{
    char tmp[8192];
    ssize_t n = client_recv(c, tmp, sizeof(tmp));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        client_close(c);
        return;
    }
    if (n < 0)
        return;
    c->last_active_ms = now_ms();
    if (c->in_len + (size_t)n > XKVM_CONTROL_MAX_LINE) {
        static const char msg[] = "{\"ok\":false,\"error\":\"request line too long\","
                                  "\"errno\":\"E2BIG\"}\n";
        ssize_t w = write(c->fd, msg, sizeof(msg) - 1);
        (void)w;
        client_close(c);
        return;
    }
    char *nb = realloc(c->in, c->in_len + (size_t)n);
    if (!nb) {
        client_close(c);
        return;
    }
    c->in = nb;
    memcpy(c->in + c->in_len, tmp, (size_t)n);
    c->in_len += (size_t)n;
    client_process(c);
}

static void client_writable(struct client *c)
{
    c->last_active_ms = now_ms();
    if (!client_flush(c)) {
        client_close(c);
        return;
    }
    if (c->out_off == c->out_len)
        client_process(c);     /* requests that waited behind the replies */
}

/*
 * A free slot. When all are taken, the longest-idle client with no request or reply
 * in flight makes room: idle connections cannot lock the toolstack out.
 */
static struct client *client_slot(void)
{
    struct client *idlest = NULL;
    for (int k = 0; k < MAX_CLIENTS; k++) {
        struct client *c = &clients[k];
        if (c->fd < 0)
            return c;
        if (c->in_len == 0 && c->out_len == 0 &&
            (!idlest || c->last_active_ms < idlest->last_active_ms))
            idlest = c;
    }
    if (idlest) {
        client_close(idlest);
        return idlest;
    }
    return NULL;
}

static void accept_client(int listen_fd)
{
    int cfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    struct client *c = client_slot();
    if (!c) {
        static const char msg[] = "{\"ok\":false,\"error\":\"too many clients, try again\","
                                  "\"errno\":\"EAGAIN\"}\n";
        ssize_t w = write(cfd, msg, sizeof(msg) - 1);
        (void)w;
        close(cfd);
        return;
    }
    *c = (struct client){ .fd = cfd, .passed_fd = -1, .last_active_ms = now_ms() };
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfd };
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, cfd, &ev);
}

static void close_idle_clients(void)
{
    uint64_t now = now_ms();
    for (int k = 0; k < MAX_CLIENTS; k++)
        if (clients[k].fd >= 0 && now - clients[k].last_active_ms > CLIENT_IDLE_MS)
            client_close(&clients[k]);
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static bool start_services = true;
static const char *migrate_addr;
static int migrate_fd = -1;

static int serve(int listen_fd)
{
    host_set_main_thread();
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listen_fd };
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
    ev.data.fd = host.notify_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, host.notify_fd, &ev);
    dom0_attach(epoll_fd);
    if (migrate_fd >= 0) {
        ev.data.fd = migrate_fd;
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, migrate_fd, &ev);
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i] = (struct client){ .fd = -1, .passed_fd = -1 };
    if (start_services) {
        services_start(host.rundir, epoll_fd);
        toolstack_xs_expect_xenstored(services_xenstored_expected());
    }

    while (!stop_requested) {
        struct epoll_event evs[16];
        int n = epoll_wait(epoll_fd, evs, 16, 1000);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == host.notify_fd) {
                uint64_t v;
                while (read(host.notify_fd, &v, sizeof(v)) > 0)
                    ;
                host_run_main_calls();
                domains_handle_shutdowns();
            } else if (fd == listen_fd) {
                accept_client(listen_fd);
            } else if (fd == migrate_fd) {
                migrate_accept(migrate_fd);
            } else if (dom0_handle_event(fd, evs[i].events)) {
                /* the dom0 socket or one of its services */
            } else if (services_handle_event(fd)) {
                /* a dom0 service exited, or one is due to be restarted */
            } else {
                for (int k = 0; k < MAX_CLIENTS; k++) {
                    if (clients[k].fd != fd)
                        continue;
                    if (evs[i].events & EPOLLOUT)
                        client_writable(&clients[k]);
                    else
                        client_readable(&clients[k]);
                    break;
                }
            }
        }
        close_idle_clients();
        migrate_incoming_watchdog();
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: xkvmd [--rundir DIR] [--machine-memory SIZE] [--foreground] [--log FILE]\n"
        "             [--verbose] [--no-dom0-services] [--migrate-listen ADDR:PORT]\n"
        "             [--migrate-timeout SECONDS] [--migrate-max-memory SIZE]\n"
        "             [--migrate-max-total SIZE] [--disk-root DIR]... [--kernel-root DIR]...\n"
        "  --rundir DIR          run directory (default $" XKVM_RUNDIR_ENV " or "
        XKVM_RUNDIR_DEFAULT ")\n"
        "  --machine-memory SIZE machine memory for all guests, e.g. 2G (default 4G)\n"
        "  --foreground          stay in the foreground, log to stderr\n"
        "  --log FILE            log to FILE (default RUNDIR/" XKVM_LOGFILE " when detached)\n"
        "  --verbose             debug logging\n"
        "  --no-dom0-services    do not start xkvm-xenstored, xkvm-consoled, xkvm-blkback\n"
        "  --migrate-listen ADDR:PORT  accept incoming live migrations there\n"
        "  --migrate-timeout SECONDS   an incoming migration must be done within this\n"
        "                        (default %u)\n"
        "  --migrate-max-memory SIZE   memory one incoming domain may have (default: the\n"
        "                        total)\n"
        "  --migrate-max-total SIZE    memory all incoming domains may hold at once\n"
        "                        (default %u%% of the machine memory)\n"
        "  --disk-root DIR       a restore or incoming migration may name disk images\n"
        "                        inside DIR (repeatable; default: none)\n"
        "  --kernel-root DIR     ...and a kernel to restart the guest with (repeatable;\n"
        "                        without, a restored guest's restart becomes destroy)\n"
        "  --lu-accepts MAJOR.MINOR    say whether this binary takes a live-update image\n"
        "                        of that version (exit status 0: yes)\n",
        MIGRATE_DEFAULT_TIMEOUT_S, MIGRATE_DEFAULT_TOTAL_PERCENT);
}

/* Where this binary was started from ("xkvm live-update" without --binary). */
static void self_binary(struct lu_daemon *dm)
{
    ssize_t n = readlink("/proc/self/exe", dm->self_path, sizeof(dm->self_path) - 1);
    dm->self_path[n > 0 ? n : 0] = '\0';
    char *del = strstr(dm->self_path, " (deleted)");
    if (del && del[10] == '\0')
        *del = '\0';       /* replaced on disk: the new file is the default */
    dm->self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
}

/* Log to FILE, or RUNDIR/xkvmd.log when detached, or stderr in the foreground. */
static void open_log(const char *absdir, const char *logpath, bool foreground, bool verbose)
{
    char deflog[PATH_MAX + 32];
    if (!logpath && !foreground) {
        snprintf(deflog, sizeof(deflog), "%s/%s", absdir, XKVM_LOGFILE);
        logpath = deflog;
    }
    log_open(logpath, "xkvmd", verbose ? LOG_DEBUG : LOG_INFO);
}

static void install_signals(void)
{
    /* vCPU threads unblock the kick signal themselves; everything else keeps it blocked. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static int resume_after_live_update(const char *fds, const char *rollback, const char *absdir,
                                    const char *logpath, bool foreground, bool verbose,
                                    int argc, char **argv, struct lu_daemon *dm);
static int shut_down(const char *absdir);

int main(int argc, char **argv)
{
    const char *rundir = getenv(XKVM_RUNDIR_ENV);
    const char *logpath = NULL;
    uint64_t machine_memory = DEFAULT_MACHINE_MEMORY;
    struct migrate_incoming_limits incoming = { 0 };
    bool foreground = false, verbose = false;
    const char *lu_resume = NULL, *lu_rollback = NULL;
    /* Our arguments without the --lu-* ones: a live update exec's the next binary with them. */
    struct lu_daemon dm = { .control_listen_fd = -1, .dom0_listen_fd = -1,
                            .migrate_listen_fd = -1, .pidfile_fd = -1, .self_fd = -1 };
    dm.argv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; dm.argv && i < argc; i++) {
        if (!strncmp(argv[i], "--lu-", 5)) {
            if (!strchr(argv[i], '=') && i + 1 < argc)
                i++;
            continue;
        }
        dm.argv[dm.argc++] = argv[i];
    }
    static const struct option opts[] = {
        { "rundir", required_argument, NULL, 'r' },
        { "machine-memory", required_argument, NULL, 'm' },
        { "foreground", no_argument, NULL, 'f' },
        { "log", required_argument, NULL, 'l' },
        { "verbose", no_argument, NULL, 'v' },
        { "no-dom0-services", no_argument, NULL, 'S' },
        { "migrate-listen", required_argument, NULL, 'M' },
        { "migrate-timeout", required_argument, NULL, 'T' },
        { "migrate-max-memory", required_argument, NULL, 'X' },
        { "migrate-max-total", required_argument, NULL, 'Y' },
        { "disk-root", required_argument, NULL, 'D' },
        { "kernel-root", required_argument, NULL, 'K' },
        { "lu-accepts", required_argument, NULL, 'A' },
        { "lu-resume", required_argument, NULL, 'R' },
        { "lu-rollback", required_argument, NULL, 'B' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    int c;
    char err[512];
    while ((c = getopt_long(argc, argv, "r:m:fl:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rundir = optarg; break;
        case 'm':
            if (parse_size(optarg, &machine_memory) || machine_memory < (16ULL << 20)) {
                fprintf(stderr, "xkvmd: bad --machine-memory '%s' (e.g. 512M, 4G; at least 16M)\n",
                        optarg);
                return 2;
            }
            break;
        case 'f': foreground = true; break;
        case 'l': logpath = optarg; break;
        case 'v': verbose = true; break;
        case 'S': start_services = false; break;
        case 'M': migrate_addr = optarg; break;
        case 'T': case 'X': case 'Y':
            if (parse_incoming_limit(c, optarg, &incoming))
                return 2;
            break;
        case 'D':
        case 'K':
            if (migrate_allow_root(c == 'K', optarg, err, sizeof(err))) {
                fprintf(stderr, "xkvmd: --%s-root %s\n", c == 'K' ? "kernel" : "disk", err);
                return 2;
            }
            break;
        case 'A': return live_update_accepts_main(optarg);
        case 'R': lu_resume = optarg; break;
        case 'B': lu_rollback = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("xkvmd %s\n", XKVM_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!rundir || !*rundir)
        rundir = XKVM_RUNDIR_DEFAULT;
    migrate_incoming_configure(&incoming);
    if (prepare_rundir(rundir, err, sizeof(err))) {
        fprintf(stderr, "xkvmd: %s\n", err);
        return 1;
    }
    char absdir[PATH_MAX];
    if (!realpath(rundir, absdir)) {
        fprintf(stderr, "xkvmd: run directory %s: %s\n", rundir, strerror(errno));
        return 1;
    }

    if (lu_resume)
        return resume_after_live_update(lu_resume, lu_rollback, absdir, logpath, foreground,
                                        verbose, argc, argv, &dm);
    int lockfd = lock_pidfile(absdir, err, sizeof(err));
    if (lockfd < 0) {
        fprintf(stderr, "xkvmd: %s\n", err);
        return 1;
    }

    /* Detach, but let the parent report start-up errors and exit only once we serve. */
    int ready[2] = { -1, -1 };
    if (!foreground) {
        if (pipe2(ready, O_CLOEXEC) < 0) {
            perror("xkvmd: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("xkvmd: fork");
            return 1;
        }
        if (pid > 0) {
            close(ready[1]);
            char msg[512];
            ssize_t n = read(ready[0], msg, sizeof(msg) - 1);
            if (n == 1 && msg[0] == 'O')
                return 0;
            if (n > 0) {
                msg[n] = '\0';
                fprintf(stderr, "xkvmd: %s\n", msg);
            } else {
                fprintf(stderr, "xkvmd: failed to start (see %s/%s)\n", absdir, XKVM_LOGFILE);
            }
            return 1;
        }
        close(ready[0]);
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO)
                close(null);
        }
        /* The lock belongs to the child now: flock locks follow the open file. */
    }
    open_log(absdir, logpath, foreground, verbose);
    write_pidfile(lockfd);

    install_signals();

    int rc = host_init(absdir, machine_memory, err, sizeof(err));
    int listen_fd = rc ? rc : listen_control(absdir);
    if (!rc && listen_fd < 0)
        snprintf(err, sizeof(err), "control socket in %s: %s", absdir, strerror(-listen_fd));
    int dom0_fd = rc || listen_fd < 0 ? -1 : dom0_listen(absdir);
    if (!rc && listen_fd >= 0 && dom0_fd < 0)
        snprintf(err, sizeof(err), "dom0 socket in %s: %s", absdir, strerror(-dom0_fd));
    if (!rc && listen_fd >= 0 && dom0_fd >= 0 && (rc = toolstack_xs_start(absdir)))
        snprintf(err, sizeof(err), "starting the xenstore worker: %s", strerror(-rc));
    if (!rc && listen_fd >= 0 && dom0_fd >= 0 && migrate_addr &&
        (migrate_fd = migrate_listen(migrate_addr, err, sizeof(err))) < 0)
        rc = migrate_fd;
    if (rc || listen_fd < 0 || dom0_fd < 0) {
        log_err("%s", err);
        if (ready[1] >= 0) {
            ssize_t w = write(ready[1], err, strlen(err));
            (void)w;
        } else {
            fprintf(stderr, "xkvmd: %s\n", err);
        }
        return 1;
    }
    log_info("xkvmd %s serving %s: %llu MiB machine memory, %s%s", XKVM_VERSION_STRING,
             absdir, (unsigned long long)(machine_memory >> 20), host.kvm_module,
             host.has_sync_regs ? ", sync regs" : "");
    if (ready[1] >= 0) {
        ssize_t w = write(ready[1], "O", 1);
        (void)w;
        close(ready[1]);
    }
    self_binary(&dm);
    dm.control_listen_fd = listen_fd;
    dm.dom0_listen_fd = dom0_fd;
    dm.migrate_listen_fd = migrate_fd;
    dm.pidfile_fd = lockfd;
    live_update_init(&dm);

    serve(listen_fd);
    return shut_down(absdir);
}

/*
 * Started by a live update (--lu-resume): the previous xkvmd's process, fds and
 * domains become ours; then serve as usual.
 */
static int resume_after_live_update(const char *fds, const char *rollback, const char *absdir,
                                    const char *logpath, bool foreground, bool verbose,
                                    int argc, char **argv, struct lu_daemon *dm)
{
    open_log(absdir, logpath, foreground, verbose);
    install_signals();
    self_binary(dm);
    int rc = live_update_resume(fds, rollback, absdir, argc, argv, dm);
    if (rc) {
        log_err("live update: giving up (%s)", strerror(-rc));
        return 1;
    }
    fcntl(dm->pidfile_fd, F_SETFD, FD_CLOEXEC);     /* same pid: the file stays as it is */
    dom0_listen_inherited(dm->dom0_listen_fd, absdir);
    migrate_fd = dm->migrate_listen_fd;
    if ((rc = toolstack_xs_start(absdir)))
        log_err("starting the xenstore worker: %s", strerror(-rc));
    log_info("xkvmd %s (live-update image %u.%u) serving %s: %llu MiB machine memory, %u "
             "domain(s)", XKVM_VERSION_STRING, XKVM_LU_MAJOR, XKVM_LU_MINOR, absdir,
             (unsigned long long)(host.mm.nr_frames >> (20 - XKVM_PAGE_SHIFT)), host.nr_domains);
    live_update_init(dm);
    serve(dm->control_listen_fd);
    return shut_down(absdir);
}

static int shut_down(const char *absdir)
{
    log_info("stopping: destroying %u domain(s)", host.nr_domains);
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++)
        if (host.domains[id])
            domain_destroy(host.domains[id]);
    toolstack_xs_stop();
    services_detach();     /* the services keep running for the next xkvmd */
    dom0_stop();
    char sock[PATH_MAX + 32];
    snprintf(sock, sizeof(sock), "%s/%s", absdir, XKVM_CONTROL_SOCKET);
    unlink(sock);
    return 0;
}
