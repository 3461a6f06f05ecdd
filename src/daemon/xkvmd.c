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
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/control.h"
#include "daemon/migrate_job.h"
#include "daemon/services.h"
#include "hv/dom0.h"
#include "hv/domain.h"
#include "hv/event.h"
#include "hv/hv.h"
#include "hv/toolstack_xs.h"
#include "hv/vcpu.h"
#include "migrate/live_update.h"
#include "migrate/migrate.h"
#include "util/bootloader.h"
#include "util/clock.h"
#include "util/daemon.h"
#include "util/fdpass.h"
#include "util/log.h"
#include "util/logrot.h"
#include "util/notify.h"
#include "util/tls.h"
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
static int epoll_fd;

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

/* A whole number of seconds, 1 to max. 0 or -EINVAL. */
static int parse_seconds(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < 1 || v > max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static int parse_incoming_limit(int opt, const char *arg, struct migrate_incoming_limits *l)
{
    if (opt == 'T') {
        if (parse_seconds(arg, 7 * 86400, &l->timeout_s)) {
            fprintf(stderr, "xkvmd: bad --migrate-timeout '%s' (1 to 604800 seconds)\n", arg);
            return -1;
        }
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
    int fd;
    unsigned nfds;
    ssize_t n = fdpass_recv(c->fd, buf, len, 0, &fd, 1, &nfds, NULL);
    if (nfds) {     /* a message's first descriptor replaces one an earlier message passed */
        if (c->passed_fd >= 0)
            close(c->passed_fd);
        c->passed_fd = fd;
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
    c->last_active_ms = mono_ms();
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
    c->last_active_ms = mono_ms();
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
    *c = (struct client){ .fd = cfd, .passed_fd = -1, .last_active_ms = mono_ms() };
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfd };
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, cfd, &ev);
}

static void close_idle_clients(void)
{
    uint64_t now = mono_ms();
    for (int k = 0; k < MAX_CLIENTS; k++)
        if (clients[k].fd >= 0 && now - clients[k].last_active_ms > CLIENT_IDLE_MS)
            client_close(&clients[k]);
}

static bool start_services = true;
static const char *migrate_addr;
static bool migrate_insecure;
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
    /*
     * Under systemd (Type=notify): ready now, with the control socket served from the
     * next epoll_wait. After a live update this is the new binary in the same pid,
     * which tells systemd it is ready again after the RELOADING=1 the old one sent.
     */
    notify_sendf("READY=1\nMAINPID=%d\nSTATUS=serving %s: %u domain(s)", (int)getpid(),
                 host.rundir, host.nr_domains);

    while (!daemon_stopping()) {
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
        "usage: xkvmd [--rundir DIR] [--machine-memory SIZE] [--machine-memory-prealloc]\n"
        "             [--foreground] [--log FILE]\n"
        "             [--verbose] [--no-dom0-services] [--migrate-listen ADDR:PORT]\n"
        "             [--migrate-tls-dir DIR | --migrate-psk FILE | --migrate-insecure]\n"
        "             [--migrate-timeout SECONDS] [--migrate-stall-timeout SECONDS]\n"
        "             [--migrate-max-memory SIZE] [--migrate-max-total SIZE]\n"
        "             [--disk-root DIR]... [--kernel-root DIR]...\n"
        "             [--log-max-size SIZE] [--log-keep N] [--hypercall-transport auto|port-io]\n"
        "             [--bootloader-user USER]\n"
        "  --rundir DIR          run directory (default $" XKVM_RUNDIR_ENV " or "
        XKVM_RUNDIR_DEFAULT ")\n"
        "  --machine-memory SIZE machine memory for all guests, e.g. 2G (default 4G)\n"
        "  --machine-memory-prealloc  make all of it resident at start and keep it so\n"
        "                        (a freed frame is zeroed, not returned to the host)\n"
        "  --foreground          stay in the foreground, log to stderr\n"
        "  --log FILE            log to FILE (default RUNDIR/" XKVM_LOGFILE " when detached)\n"
        "  --verbose             debug logging\n"
        "  --log-max-size SIZE   rotate logs (ours, consoles, services') past SIZE, e.g. 16M\n"
        "                        (default 16M; 0: never)\n"
        "  --log-keep N          rotated generations kept: FILE.1 ... FILE.N (default 3)\n"
        "  --hypercall-transport auto|port-io  VMCALL through KVM's Xen intercept where\n"
        "                        KVM has it (auto, the default), or only the port-I/O page\n"
        "  --no-dom0-services    do not start xkvm-xenstored, xkvm-consoled, xkvm-blkback, xkvm-netback\n"
        "  --migrate-listen ADDR:PORT  accept incoming live migrations there; needs one of:\n"
        "  --migrate-tls-dir DIR       TLS 1.3 with x509 certificates, both ends verified:\n"
        "                        DIR has ca-cert.pem, server-cert.pem and server-key.pem\n"
        "                        (to accept), client-cert.pem and client-key.pem (to send);\n"
        "                        migrations out go over TLS too\n"
        "  --migrate-psk FILE    TLS 1.3 with a pre-shared key: lines identity:hexkey\n"
        "                        (psktool's format), the first one used to send\n"
        "  --migrate-insecure    accept migrations unauthenticated and unencrypted from\n"
        "                        anyone who can reach ADDR:PORT\n"
        "  --migrate-timeout SECONDS   an incoming migration must be done within this\n"
        "                        (default %u)\n"
        "  --migrate-stall-timeout SECONDS  a migration connection, in or out, on which\n"
        "                        nothing moves for this long has failed: before the\n"
        "                        hand-over the guest runs on at the source, in post-copy\n"
        "                        both halves become postcopy-paused (1 to %u, default %u)\n"
        "  --migrate-max-memory SIZE   memory one incoming domain may have (default: the\n"
        "                        total)\n"
        "  --migrate-max-total SIZE    memory all incoming domains may hold at once\n"
        "                        (default %u%% of the machine memory)\n"
        "  --disk-root DIR       a restore or incoming migration may name disk images\n"
        "                        inside DIR (repeatable; default: none)\n"
        "  --kernel-root DIR     ...and a kernel to restart the guest with (repeatable;\n"
        "                        without, a restored guest's restart becomes destroy)\n"
        "  --bootloader-user USER  whom pygrub runs as (bootloader = \"pygrub\"; default\n"
        "                        " BOOTLOADER_USER_DEFAULT "); it must be able to read the disk\n"
        "  --lu-accepts MAJOR.MINOR    say whether this binary takes a live-update image\n"
        "                        of that version (exit status 0: yes)\n",
        MIGRATE_DEFAULT_TIMEOUT_S, MIGRATE_MAX_STALL_S, MIGRATE_DEFAULT_STALL_S,
        MIGRATE_DEFAULT_TOTAL_PERCENT);
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
static void install_signals(void)
{
    /* vCPU threads unblock the kick signal themselves; everything else keeps it blocked. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    daemon_signals();
}

/* ---- start-up ---- */

/* --migrate-tls-dir DIR or --migrate-psk FILE: loaded now, so a bad one stops the start. */
static int set_credentials(int opt, const char *arg)
{
    char err[1024];
    if (migrate_credentials()) {
        fprintf(stderr, "xkvmd: give one of --migrate-tls-dir and --migrate-psk, once\n");
        return 2;
    }
    struct tls_creds *c = opt == 'C' ? tls_creds_x509(arg, err, sizeof(err))
                                     : tls_creds_psk(arg, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "xkvmd: --migrate-%s: %s\n", opt == 'C' ? "tls-dir" : "psk", err);
        return 2;
    }
    migrate_set_credentials(c);
    return DAEMON_CONTINUE;
}

/* A listener authenticates its peers, or is told explicitly not to. 0 or 2 (usage). */
static int check_listener(void)
{
    char err[1024];
    struct tls_creds *c = migrate_credentials();
    if (migrate_addr && c && tls_creds_check(c, true, err, sizeof(err))) {
        fprintf(stderr, "xkvmd: --migrate-listen %s: --migrate-tls-dir %s\n", migrate_addr, err);
        return 2;
    }
    if (migrate_addr && c && migrate_insecure) {
        fprintf(stderr, "xkvmd: --migrate-insecure and credentials: give one or the other\n");
        return 2;
    }
    if (migrate_addr && !c && !migrate_insecure) {
        fprintf(stderr, "xkvmd: --migrate-listen %s refused: without credentials anyone who "
                "can reach it could create a domain here and run code in it. Give "
                "--migrate-tls-dir DIR (x509, both ends verified) or --migrate-psk FILE "
                "(a pre-shared key), or --migrate-insecure to accept unauthenticated, "
                "unencrypted migrations (a trusted network only)\n", migrate_addr);
        return 2;
    }
    return 0;
}

/* xkvmd's own options (the common ones are the daemon skeleton's). */
struct xkvmd_options {
    uint64_t machine_memory;
    struct migrate_incoming_limits incoming;
    unsigned stall_s;           /* --migrate-stall-timeout; 0: the default */
    const char *lu_resume, *lu_rollback, *lu_beside;
};

static const struct option own_options[] = {
    { "machine-memory", required_argument, NULL, 'm' },
    { "machine-memory-prealloc", no_argument, NULL, 'F' },
    { "no-dom0-services", no_argument, NULL, 'S' },
    { "migrate-listen", required_argument, NULL, 'M' },
    { "migrate-tls-dir", required_argument, NULL, 'C' },
    { "migrate-psk", required_argument, NULL, 'P' },
    { "migrate-insecure", no_argument, NULL, 'I' },
    { "migrate-timeout", required_argument, NULL, 'T' },
    { "migrate-stall-timeout", required_argument, NULL, 'W' },
    { "migrate-max-memory", required_argument, NULL, 'X' },
    { "migrate-max-total", required_argument, NULL, 'Y' },
    { "disk-root", required_argument, NULL, 'D' },
    { "kernel-root", required_argument, NULL, 'K' },
    { "lu-accepts", required_argument, NULL, 'A' },
    { "lu-resume", required_argument, NULL, 'R' },
    { "lu-rollback", required_argument, NULL, 'B' },
    { "lu-beside", required_argument, NULL, 'E' },
    { "log-max-size", required_argument, NULL, 'L' }, { "log-keep", required_argument, NULL, 'G' },
    { "hypercall-transport", required_argument, NULL, 'H' },
    { "bootloader-user", required_argument, NULL, 'U' },
    { 0 },
};

static int own_option(int opt, const char *arg, void *ctx)
{
    struct xkvmd_options *o = ctx;
    char err[512];
    switch (opt) {
    case 'm':
        if (parse_size(arg, &o->machine_memory) || o->machine_memory < (16ULL << 20)) {
            fprintf(stderr, "xkvmd: bad --machine-memory '%s' (e.g. 512M, 4G; at least 16M)\n",
                    arg);
            return 2;
        }
        break;
    case 'S': start_services = false; break;
    case 'F': host.memory_prealloc = true; break;
    case 'M': migrate_addr = arg; break;
    case 'C': case 'P':
        return set_credentials(opt, arg);
    case 'I': migrate_insecure = true; break;
    case 'T': case 'X': case 'Y':
        if (parse_incoming_limit(opt, arg, &o->incoming))
            return 2;
        break;
    case 'W':
        if (parse_seconds(arg, MIGRATE_MAX_STALL_S, &o->stall_s)) {
            fprintf(stderr, "xkvmd: bad --migrate-stall-timeout '%s' (1 to %u seconds)\n",
                    arg, MIGRATE_MAX_STALL_S);
            return 2;
        }
        break;
    case 'D': case 'K':
        if (migrate_allow_root(opt == 'K', arg, err, sizeof(err))) {
            fprintf(stderr, "xkvmd: --%s-root %s\n", opt == 'K' ? "kernel" : "disk", err);
            return 2;
        }
        break;
    case 'H':   /* auto: KVM's intercept where it has one; port-io: never */
        if (strcmp(arg, "auto") && strcmp(arg, "port-io")) {
            fprintf(stderr, "xkvmd: bad --hypercall-transport '%s' (auto or port-io)\n", arg);
            return 2;
        }
        host.transport_port_io_only = !strcmp(arg, "port-io");
        break;
    case 'U':
        if (bootloader_set_user(arg, err, sizeof(err))) {
            fprintf(stderr, "xkvmd: --bootloader-user: %s\n", err);
            return 2;
        }
        break;
    case 'A': return live_update_accepts_main(arg);
    case 'R': o->lu_resume = arg; break;
    case 'B': o->lu_rollback = arg; break;
    case 'E': o->lu_beside = arg; break;
    case 'L': case 'G':     /* through the environment to our logs and the services' */
        if (opt == 'L' ? logrot_parse_size(arg, &(uint64_t){0}) : logrot_parse_keep(arg, &(unsigned){0})) {
            fprintf(stderr, "xkvmd: bad --log-%s '%s'\n", opt == 'L' ? "max-size" : "keep", arg);
            return 2;
        }
        setenv(opt == 'L' ? LOGROT_ENV_MAX : LOGROT_ENV_KEEP, arg, 1);
        break;
    default: return 2;
    }
    return DAEMON_CONTINUE;
}

/* Our arguments without the --lu-* ones: a live update exec's the next binary with them. */
static void lu_arguments(struct lu_daemon *lu, int argc, char **argv)
{
    lu->argv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; lu->argv && i < argc; i++) {
        if (!strncmp(argv[i], "--lu-", 5)) {
            if (!strchr(argv[i], '=') && i + 1 < argc)
                i++;
            continue;
        }
        lu->argv[lu->argc++] = argv[i];
    }
}

/* The host, then its sockets and the xenstore worker. 0, or -errno with err. */
static int start_host(const char *absdir, uint64_t machine_memory, int *listen_fd,
                      int *dom0_fd, char *err, size_t errlen)
{
    int rc = host_init(absdir, machine_memory, err, errlen);
    if (rc)
        return rc;
    /* Not CLOEXEC: live update hands the listening socket to the next xkvmd. */
    if ((*listen_fd = daemon_listen(absdir, XKVM_CONTROL_SOCKET, SOCK_NONBLOCK, 16)) < 0) {
        snprintf(err, errlen, "control socket in %s: %s", absdir, strerror(-*listen_fd));
        return *listen_fd;
    }
    if ((*dom0_fd = dom0_listen(absdir)) < 0) {
        snprintf(err, errlen, "dom0 socket in %s: %s", absdir, strerror(-*dom0_fd));
        return *dom0_fd;
    }
    if ((rc = toolstack_xs_start(absdir))) {
        snprintf(err, errlen, "starting the xenstore worker: %s", strerror(-rc));
        return rc;
    }
    if (migrate_addr && (migrate_fd = migrate_listen(migrate_addr, err, errlen)) < 0)
        return migrate_fd;
    return 0;
}

static int resume_after_live_update(struct daemon *dm, const struct xkvmd_options *o,
                                    int argc, char **argv, struct lu_daemon *lu);
static int shut_down(const char *absdir);

static int run(int argc, char **argv, struct lu_daemon *lu);

int main(int argc, char **argv)
{
    struct lu_daemon lu = { .control_listen_fd = -1, .dom0_listen_fd = -1,
                            .migrate_listen_fd = -1, .pidfile_fd = -1, .self_fd = -1 };
    lu_arguments(&lu, argc, argv);
    int rc = run(argc, argv, &lu);
    free(lu.argv);
    return rc;
}

/* Parse, then serve: as a new daemon, or as the one a live update started. */
static int run(int argc, char **argv, struct lu_daemon *lu)
{
    struct xkvmd_options o = { .machine_memory = DEFAULT_MACHINE_MEMORY };
    struct daemon dm = DAEMON_INIT("xkvmd", XKVM_LOGFILE);
    const struct daemon_cli cli = {
        .version = XKVM_VERSION_STRING,
        .common = DAEMON_OPT_RUNDIR | DAEMON_OPT_FOREGROUND | DAEMON_OPT_LOG |
                  DAEMON_OPT_VERBOSE | DAEMON_OPT_HELP | DAEMON_OPT_VERSION,
        .options = own_options, .shortopts = "m:", .option = own_option, .ctx = &o,
        .usage = usage,
    };
    int st = daemon_begin(&dm, &cli, argc, argv, true);
    if (st != DAEMON_CONTINUE)
        return st;
    if ((st = check_listener()))
        return st;
    migrate_incoming_configure(&o.incoming);
    migrate_set_stall_timeout(o.stall_s);
    if (o.lu_resume || o.lu_beside)
        return resume_after_live_update(&dm, &o, argc, argv, lu);

    char err[512];
    int lockfd = daemon_lock(&dm, XKVM_PIDFILE, 0644, false, err, sizeof(err));
    if (lockfd < 0) {
        fprintf(stderr, "xkvmd: %s\n", err);
        return 1;
    }
    /* Detach, but let the parent report start-up errors and exit only once we serve. */
    if ((st = daemon_detach(&dm, DAEMON_WAIT_READY)) != DAEMON_CONTINUE)
        return st;
    daemon_open_log(&dm);
    daemon_write_pid(lockfd);
    install_signals();
    int listen_fd = -1, dom0_fd = -1;
    if (start_host(dm.absdir, o.machine_memory, &listen_fd, &dom0_fd, err, sizeof(err))) {
        daemon_failed(&dm, err);
        return 1;
    }
    log_info("xkvmd %s serving %s: %llu MiB machine memory, %s%s, hypercalls by %s",
             XKVM_VERSION_STRING, dm.absdir, (unsigned long long)(o.machine_memory >> 20),
             host.kvm_module, host.has_sync_regs ? ", sync regs" : "", host_transport_name());
    daemon_ready(&dm);
    self_binary(lu);
    lu->control_listen_fd = listen_fd;
    lu->dom0_listen_fd = dom0_fd;
    lu->migrate_listen_fd = migrate_fd;
    lu->pidfile_fd = lockfd;
    live_update_init(lu);

    serve(listen_fd);
    return shut_down(dm.absdir);
}

/*
 * Started by a live update (--lu-resume): the previous xkvmd's process, fds and
 * domains become ours; then serve as usual.
 */
static int resume_after_live_update(struct daemon *dm, const struct xkvmd_options *o,
                                    int argc, char **argv, struct lu_daemon *lu)
{
    const char *absdir = dm->absdir;
    daemon_open_log(dm);
    install_signals();
    self_binary(lu);
    int rc = o->lu_beside ? live_update_beside(o->lu_beside, absdir, argc, argv, lu) :
             live_update_resume(o->lu_resume, o->lu_rollback, absdir, argc, argv, lu);
    if (rc) {
        log_err("live update: giving up (%s)", strerror(-rc));
        return 1;
    }
    fcntl(lu->pidfile_fd, F_SETFD, FD_CLOEXEC);     /* (beside wrote its pid in it) */
    dom0_listen_inherited(lu->dom0_listen_fd, absdir);
    migrate_fd = lu->migrate_listen_fd;
    if ((rc = toolstack_xs_start(absdir)))
        log_err("starting the xenstore worker: %s", strerror(-rc));
    log_info("xkvmd %s (live-update image %u.%u) serving %s: %llu MiB machine memory, %u "
             "domain(s)", XKVM_VERSION_STRING, XKVM_LU_MAJOR, XKVM_LU_MINOR, absdir,
             (unsigned long long)(host.mm.nr_frames >> (20 - XKVM_PAGE_SHIFT)), host.nr_domains);
    live_update_init(lu);
    serve(lu->control_listen_fd);
    return shut_down(absdir);
}

static int shut_down(const char *absdir)
{
    log_info("stopping: destroying %u domain(s)", host.nr_domains);
    notify_sendf("STOPPING=1\nSTATUS=stopping: destroying %u domain(s)", host.nr_domains);
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
