/*
 * xkvm-consoled: the console backend, as Xen's xenconsoled. For every domain it maps
 * the console ring (the gfn and port GET_DOMAIN_INFO reports), binds the port, copies
 * the guest's output to RUNDIR/console-DOMID.log and feeds what clients of
 * RUNDIR/consoled.sock type into the guest's input ring. Everything in the ring is
 * the guest's and hostile: indexes are masked, a broken ring is reset, a flooding
 * guest is rate limited. Killed and restarted, it continues from the ring's indexes.
 * docs/dom0-services.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/io/console.h>

#include "dom0/libdom0.h"
#include "util/clock.h"
#include "util/daemon.h"
#include "util/fdpass.h"
#include "util/log.h"
#include "util/logrot.h"
#include "xkvm/control.h"

#define CONSOLED_SOCKET     "consoled.sock"
#define CONSOLED_LOCK       "consoled.lock"
#define MAX_DOMAINS         1024
#define MAX_CLIENTS         64
#define CLIENT_BUF          4096
#define TICK_MS             100     /* ring polling, rate-limit refill, rescans */
#define RECONNECT_MS        250
#define RESCAN_MS           2000    /* without WATCH_DOMAINS: how often to look */
/* Per domain: RATE_REFILL bytes of output per tick, at most RATE_BURST saved up. */
#define RATE_REFILL         (64 * 1024)
#define RATE_BURST          (256 * 1024)

enum tag { TAG_LISTEN = 1, TAG_CLIENT, TAG_DOMAIN, TAG_WATCH, TAG_WATCH_CONN };
#define TAG(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

struct dom {
    bool used;
    uint32_t domid;
    uint32_t state;                 /* last GET_DOMAIN_INFO state */
    bool seen;                      /* in the latest scan */
    uint64_t gfn;
    uint32_t port;
    struct xencons_interface *ring; /* NULL: not mapped */
    uint32_t map_handle;
    bool bound;
    int to_guest, from_guest;
    int log_fd;
    uint64_t tokens;                /* output bytes allowed before throttling */
    bool broken_out, broken_in;     /* warned about a bad ring (once each) */
};

struct client {
    int fd;                         /* -1: free */
    bool have_domid;
    uint32_t domid;
    char line[16];
    size_t line_len;
    char buf[CLIENT_BUF];
    size_t len;
    bool reading;                   /* EPOLLIN armed */
};

static const char *rundir;
static struct logrot_limits log_limits;   /* console logs' rotation: from the environment */
static int epfd = -1;
static struct dom0_conn *conn;
/* WATCH_DOMAINS (dom0's VIRQ_DOM_EXC) on a connection of its own: libdom0 has no call. */
static int watch_conn = -1, watch_fd = -1;
static bool rescan;
static struct dom doms[MAX_DOMAINS];
static struct client clients[MAX_CLIENTS];

static void notify(struct dom *d)
{
    if (!d->bound)
        return;
    uint64_t one = 1;
    ssize_t r = write(d->to_guest, &one, sizeof(one));
    (void)r;
}

/* ---- the output ring -------------------------------------------------------------- */

static void drain_output(struct dom *d)
{
    struct xencons_interface *r = d->ring;
    if (!r || d->tokens == 0)
        return;
    char buf[sizeof(r->out)];
    XENCONS_RING_IDX cons = __atomic_load_n(&r->out_cons, __ATOMIC_RELAXED);
    XENCONS_RING_IDX prod = __atomic_load_n(&r->out_prod, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);     /* read prod before the data */
    XENCONS_RING_IDX avail = prod - cons;
    if (avail == 0)
        return;
    if (avail > sizeof(r->out)) {
        /* Not a ring any guest could have written: drop it and start again. */
        if (!d->broken_out)
            log_warn("d%u: console out ring indexes broken (cons %u prod %u): reset",
                     d->domid, cons, prod);
        d->broken_out = true;
        __atomic_store_n(&r->out_cons, prod, __ATOMIC_RELEASE);
        notify(d);
        return;
    }
    size_t n = avail < d->tokens ? avail : (size_t)d->tokens;
    for (size_t i = 0; i < n; i++)
        buf[i] = r->out[MASK_XENCONS_IDX(cons + (XENCONS_RING_IDX)i, r->out)];
    if (d->log_fd >= 0) {
        /* Rotated under util/logrot.h's protocol, which xkvmd's writes follow too. */
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/" XKVM_CONSOLE_LOG_FMT, rundir, d->domid);
        logrot_write(&d->log_fd, path, &log_limits, buf, n);
    }
    /* The bytes are in the log before the guest may overwrite them. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&r->out_cons, cons + (XENCONS_RING_IDX)n, __ATOMIC_RELEASE);
    d->tokens -= n;
    notify(d);
}

/* ---- the input ring --------------------------------------------------------------- */

static void arm_client(struct client *c, bool reading)
{
    if (c->reading == reading)
        return;
    struct epoll_event ev = { .events = reading ? EPOLLIN : 0,
                              .data.u64 = TAG(TAG_CLIENT, c - clients) };
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->reading = reading;
}

static struct dom *find_dom(uint32_t domid)
{
    for (int i = 0; i < MAX_DOMAINS; i++)
        if (doms[i].used && doms[i].domid == domid)
            return &doms[i];
    return NULL;
}

/* Move what client c typed into its domain's in ring, as far as there is room. */
static void push_input(struct client *c)
{
    struct dom *d = c->have_domid ? find_dom(c->domid) : NULL;
    if (!d || !d->ring || c->len == 0)
        goto out;
    struct xencons_interface *r = d->ring;
    XENCONS_RING_IDX cons = __atomic_load_n(&r->in_cons, __ATOMIC_RELAXED);
    XENCONS_RING_IDX prod = __atomic_load_n(&r->in_prod, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    XENCONS_RING_IDX used = prod - cons;
    if (used > sizeof(r->in)) {
        if (!d->broken_in)
            log_warn("d%u: console in ring indexes broken (cons %u prod %u): reset",
                     d->domid, cons, prod);
        d->broken_in = true;
        __atomic_store_n(&r->in_prod, cons, __ATOMIC_RELEASE);
        goto out;
    }
    size_t space = sizeof(r->in) - used;
    size_t n = c->len < space ? c->len : space;
    if (n == 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        r->in[MASK_XENCONS_IDX(prod + (XENCONS_RING_IDX)i, r->in)] = c->buf[i];
    __atomic_thread_fence(__ATOMIC_RELEASE);     /* data before the index */
    __atomic_store_n(&r->in_prod, prod + (XENCONS_RING_IDX)n, __ATOMIC_RELEASE);
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    notify(d);
out:
    arm_client(c, c->len < sizeof(c->buf));
}

static void push_all_input(uint32_t domid)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0 && clients[i].len && clients[i].have_domid &&
            clients[i].domid == domid)
            push_input(&clients[i]);
}

/* ---- domains ---------------------------------------------------------------------- */

/* Stop serving d; gone: xkvmd destroyed it (and dropped our binding with it). */
static void detach(struct dom *d, bool gone)
{
    if (d->bound) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, d->from_guest, NULL);
        if (conn && !gone)
            dom0_unbind_evtchn(conn, d->domid, d->port);
        close(d->to_guest);
        close(d->from_guest);
    }
    if (d->ring) {
        if (conn)
            dom0_unmap_foreign(conn, d->domid, d->map_handle, d->ring);
        else
            munmap(d->ring, (size_t)sysconf(_SC_PAGESIZE));
    }
    if (d->log_fd >= 0)
        close(d->log_fd);
    *d = (struct dom){ .log_fd = -1, .to_guest = -1, .from_guest = -1 };
}

/* Map, open the log, bind: each step retried on the next scan until it works. */
static void attach(struct dom *d)
{
    if (!d->ring) {
        d->ring = dom0_map_foreign(conn, d->domid, d->gfn, false, &d->map_handle);
        if (!d->ring) {
            log_debug("d%u: mapping console gfn %#llx: %s", d->domid,
                      (unsigned long long)d->gfn, strerror(errno));
            return;
        }
    }
    if (d->log_fd < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/" XKVM_CONSOLE_LOG_FMT, rundir, d->domid);
        /* The guest's console is for root alone. */
        int fd = daemon_open_private(path, O_WRONLY | O_APPEND);
        d->log_fd = fd < 0 ? -1 : fd;
        if (fd < 0)
            log_warn("d%u: %s: %s", d->domid, path, strerror(-fd));
    }
    if (!d->bound) {
        int rc = dom0_bind_evtchn(conn, d->domid, d->port, &d->to_guest, &d->from_guest);
        if (rc) {
            log_debug("d%u: binding console port %u: %s", d->domid, d->port,
                      strerror(-rc));
        } else {
            d->bound = true;
            struct epoll_event ev = { .events = EPOLLIN,
                                      .data.u64 = TAG(TAG_DOMAIN, d - doms) };
            epoll_ctl(epfd, EPOLL_CTL_ADD, d->from_guest, &ev);
            log_info("d%u: console attached (gfn %#llx, port %u)", d->domid,
                     (unsigned long long)d->gfn, d->port);
        }
    }
    drain_output(d);
    push_all_input(d->domid);
}

/* One request on the raw watch connection; its reply's fd (or -1) in *fd. */
static int watch_request(uint32_t type, uint32_t seq, const void *body, size_t blen, int *fd)
{
    uint8_t msg[XKVM_DOM0_MAX_MSG];
    struct xkvm_dom0_hdr h = { .type = type, .len = (uint32_t)(sizeof(h) + blen), .seq = seq };
    memcpy(msg, &h, sizeof(h));
    if (blen)
        memcpy(msg + sizeof(h), body, blen);
    if (send(watch_conn, msg, h.len, MSG_NOSIGNAL) != (ssize_t)h.len)
        return -errno;
    unsigned nfds;
    ssize_t n = fdpass_recv(watch_conn, msg, sizeof(msg), 0, fd, 1, &nfds, NULL);
    if (!nfds)
        *fd = -1;
    if (n < (ssize_t)sizeof(h)) {
        int e = n < 0 ? -errno : -EPROTO;
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return e;
    }
    struct xkvm_dom0_hdr rh;
    memcpy(&rh, msg, sizeof(rh));
    if (rh.seq != seq || rh.type != (type | XKVM_DOM0_REPLY) || rh.error) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return rh.error > 0 ? -rh.error : -EPROTO;
    }
    return 0;
}

static void watch_close(void)
{
    if (watch_fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, watch_fd, NULL);
        close(watch_fd);
    }
    if (watch_conn >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, watch_conn, NULL);
        close(watch_conn);
    }
    watch_fd = watch_conn = -1;
}

/* Subscribe to domain changes; its hang-up also tells us xkvmd is gone. */
static void watch_open(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rundir, XKVM_DOM0_SOCKET);
    watch_conn = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (watch_conn < 0)
        return;
    struct xkvm_dom0_hello hello = { .version = XKVM_DOM0_VERSION };
    snprintf(hello.name, sizeof(hello.name), "consoled-watch");
    int fd = -1, rc = -EIO;
    if (connect(watch_conn, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        (rc = watch_request(XKVM_DOM0_HELLO, 1, &hello, sizeof(hello), &fd)) == 0) {
        if (fd >= 0)
            close(fd);
        rc = watch_request(XKVM_DOM0_WATCH_DOMAINS, 2, NULL, 0, &watch_fd);
    }
    if (rc || watch_fd < 0) {
        log_warn("WATCH_DOMAINS: %s: rescanning every %d ms instead",
                 strerror(rc ? -rc : EPROTO), RESCAN_MS);
        watch_close();
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(TAG_WATCH, 0) };
    epoll_ctl(epfd, EPOLL_CTL_ADD, watch_fd, &ev);
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLRDHUP,
                               .data.u64 = TAG(TAG_WATCH_CONN, 0) };
    epoll_ctl(epfd, EPOLL_CTL_ADD, watch_conn, &ev);
}

static void detach_all(void)
{
    for (int i = 0; i < MAX_DOMAINS; i++)
        if (doms[i].used)
            detach(&doms[i], false);
}

static void lose_connection(const char *why)
{
    log_warn("lost xkvmd (%s): reconnecting", why);
    struct dom0_conn *c = conn;
    conn = NULL;        /* detach only releases our side now */
    detach_all();
    dom0_close(c);
    watch_close();
}

/* Enumerate xkvmd's domains: attach new ones, detach those that are gone. */
static void scan(void)
{
    for (int i = 0; i < MAX_DOMAINS; i++)
        doms[i].seen = false;
    uint32_t next = 0;
    for (;;) {
        struct xkvm_dom0_domain_info info;
        int rc = dom0_domain_info(conn, next, true, &info);
        if (rc == -ESRCH)
            break;
        if (rc) {
            lose_connection(strerror(-rc));
            return;
        }
        next = info.domid + 1;
        struct dom *d = find_dom(info.domid);
        /* A domain of that id that shut down and now runs is another domain. */
        if (d && (d->gfn != info.console_gfn || d->port != info.console_evtchn ||
                  (d->state == XKVM_DOM0_SHUTDOWN && info.state != XKVM_DOM0_SHUTDOWN))) {
            detach(d, true);
            d = NULL;
        }
        if (!d) {
            if (!info.console_gfn)
                continue;
            for (int i = 0; i < MAX_DOMAINS && !d; i++)
                if (!doms[i].used)
                    d = &doms[i];
            if (!d) {
                log_warn("d%u: more than %d domains: console not served", info.domid,
                         MAX_DOMAINS);
                continue;
            }
            *d = (struct dom){ .used = true, .domid = info.domid, .gfn = info.console_gfn,
                               .port = info.console_evtchn, .log_fd = -1,
                               .to_guest = -1, .from_guest = -1, .tokens = RATE_BURST };
        }
        d->seen = true;
        d->state = info.state;
        if (!d->ring || !d->bound || d->log_fd < 0)
            attach(d);
        if (!conn)
            return;
    }
    for (int i = 0; i < MAX_DOMAINS; i++)
        if (doms[i].used && !doms[i].seen) {
            drain_output(&doms[i]);     /* its last words, if the frame is still ours */
            log_info("d%u: gone", doms[i].domid);
            detach(&doms[i], true);
        }
}

static void tick(void)
{
    for (int i = 0; i < MAX_DOMAINS; i++) {
        struct dom *d = &doms[i];
        if (!d->used)
            continue;
        d->tokens = d->tokens + RATE_REFILL > RATE_BURST ? RATE_BURST : d->tokens + RATE_REFILL;
        drain_output(d);
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0 && clients[i].len)
            push_input(&clients[i]);
}

/* ---- the input socket ------------------------------------------------------------- */

static void client_close(struct client *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void accept_client(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
        (cred.uid != 0 && cred.uid != getuid())) {
        close(fd);
        return;
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &clients[i];
        if (c->fd >= 0)
            continue;
        *c = (struct client){ .fd = fd, .reading = true };
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(TAG_CLIENT, i) };
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        return;
    }
    close(fd);
}

/* The first line is the domid; the rest is keystrokes for the guest. */
static void client_readable(struct client *c)
{
    char tmp[CLIENT_BUF];
    size_t room = sizeof(c->buf) - c->len;
    if (room == 0) {
        arm_client(c, false);
        return;
    }
    ssize_t n = read(c->fd, tmp, room < sizeof(tmp) ? room : sizeof(tmp));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        client_close(c);
        return;
    }
    if (n < 0)
        return;
    size_t off = 0;
    while (!c->have_domid && off < (size_t)n) {
        char ch = tmp[off++];
        if (ch == '\n') {
            c->line[c->line_len] = '\0';
            char *end;
            unsigned long v = strtoul(c->line, &end, 10);
            if (c->line_len == 0 || *end || v == 0 || v >= 0x7ff0) {
                client_close(c);
                return;
            }
            c->domid = (uint32_t)v;
            c->have_domid = true;
        } else if (c->line_len + 1 < sizeof(c->line) && ch >= '0' && ch <= '9') {
            c->line[c->line_len++] = ch;
        } else {
            client_close(c);
            return;
        }
    }
    memcpy(c->buf + c->len, tmp + off, (size_t)n - off);
    c->len += (size_t)n - off;
    push_input(c);
}

/* ---- main ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: xkvm-consoled [--rundir DIR] [--foreground] [--verbose]\n"
               "  the console backend of the xkvm host in DIR (default $" XKVM_RUNDIR_ENV
               " or " XKVM_RUNDIR_DEFAULT ")\n");
}

static const struct daemon_cli cli = { .common = DAEMON_OPTS_SERVICE, .usage = usage };

/* Options, the run directory, detaching, the log, the one-per-host lock. */
static int start(struct daemon *dm, int argc, char **argv)
{
    int rc = daemon_begin(dm, &cli, argc, argv, false);
    if (rc != DAEMON_CONTINUE)
        return rc;
    rundir = dm->absdir;
    logrot_limits_from_env(&log_limits);
    char err[512];
    if ((rc = daemon_detach(dm, 0)) != DAEMON_CONTINUE)
        return rc;
    daemon_open_log(dm);
    /* One consoled per host: a second one waits for the first to go. */
    if (daemon_lock(dm, CONSOLED_LOCK, 0600, true, err, sizeof(err)) < 0) {
        log_err("%s", err);
        return 1;
    }
    daemon_signals();
    return DAEMON_CONTINUE;
}

/* No domains, no clients; the epoll set with the input socket in it. fd or -1. */
static int serve_setup(void)
{
    for (int i = 0; i < MAX_DOMAINS; i++)
        doms[i] = (struct dom){ .log_fd = -1, .to_guest = -1, .from_guest = -1 };
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int lfd = daemon_listen(rundir, CONSOLED_SOCKET, SOCK_NONBLOCK | SOCK_CLOEXEC, 16);
    if (epfd < 0 || lfd < 0) {
        log_err("%s/%s: %s", rundir, CONSOLED_SOCKET, strerror(lfd < 0 ? -lfd : errno));
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(TAG_LISTEN, 0) };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    log_info("serving consoles of %s", rundir);
    return lfd;
}

/* While xkvmd is away: try its dom0 socket every RECONNECT_MS, saying so once. */
static void maybe_connect(uint64_t now)
{
    static uint64_t last_connect;
    static bool warned;
    if (conn || now - last_connect < RECONNECT_MS)
        return;
    last_connect = now;
    conn = dom0_connect(rundir, "consoled");
    if (conn) {
        log_info("connected to xkvmd");
        warned = false;
        watch_open();
        rescan = true;
    } else if (!warned) {
        log_info("xkvmd not reachable (%s): retrying", strerror(errno));
        warned = true;
    }
}

/* Every TICK_MS: rescan when due, refill and drain. false: the run directory is gone. */
static bool maybe_tick(uint64_t now)
{
    static uint64_t last_tick, last_scan;
    if (now - last_tick < TICK_MS)
        return true;
    last_tick = now;
    struct stat st;
    if (stat(rundir, &st) < 0 && errno == ENOENT) {
        log_info("run directory %s is gone: exiting", rundir);
        return false;
    }
    if (conn && (rescan || (watch_fd < 0 && now - last_scan >= RESCAN_MS))) {
        rescan = false;
        last_scan = now;
        scan();
    }
    tick();
    return true;
}

static void handle_event(const struct epoll_event *e, int lfd)
{
    uint32_t kind = (uint32_t)(e->data.u64 >> 32);
    uint32_t idx = (uint32_t)e->data.u64;
    uint64_t v;
    if (kind == TAG_WATCH) {
        ssize_t r = read(watch_fd, &v, sizeof(v));
        (void)r;
        if (conn)
            scan();
    } else if (kind == TAG_WATCH_CONN) {
        if (conn)
            lose_connection("its dom0 socket hung up");
        else
            watch_close();
    } else if (kind == TAG_LISTEN) {
        accept_client(lfd);
    } else if (kind == TAG_CLIENT && idx < MAX_CLIENTS && clients[idx].fd >= 0) {
        client_readable(&clients[idx]);
    } else if (kind == TAG_DOMAIN && idx < MAX_DOMAINS && doms[idx].bound) {
        struct dom *d = &doms[idx];
        ssize_t r = read(d->from_guest, &v, sizeof(v));
        (void)r;
        drain_output(d);
        push_all_input(d->domid);
    }
}

int main(int argc, char **argv)
{
    struct daemon dm = DAEMON_INIT("xkvm-consoled", "xkvm-consoled.log");
    int rc = start(&dm, argc, argv);
    if (rc != DAEMON_CONTINUE)
        return rc;
    int lfd = serve_setup();
    if (lfd < 0)
        return 1;
    while (!daemon_stopping()) {
        uint64_t now = mono_ms();
        maybe_connect(now);
        if (!maybe_tick(now))
            break;
        struct epoll_event evs[32];
        int n = epoll_wait(epfd, evs, 32, TICK_MS);
        for (int i = 0; i < n; i++)
            handle_event(&evs[i], lfd);
    }
    log_info("exiting");
    if (conn) {
        detach_all();
        dom0_close(conn);
    }
    return 0;
}
