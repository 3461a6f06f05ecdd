/* The xenbus side of a PV backend, for every device kind: see xenbus_be.h. */
#include "xenbus_be.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xen/io/xenbus.h>

#include "util/log.h"

/* xenstore read of dir/node: a malloc'd string, or NULL. */
char *xenbus_be_read(struct xenbus_be *b, const char *dir, const char *node)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    unsigned len;
    return xs_read(b->xs, XBT_NULL, path, &len);
}

/* An unsigned value, or dflt if missing; -1 if present but not a number. */
long long xenbus_be_read_uint(struct xenbus_be *b, const char *dir, const char *node,
                              long long dflt)
{
    char *s = xenbus_be_read(b, dir, node);
    if (!s)
        return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    long long r = (*s && !*end && !errno && v <= UINT32_MAX) ? (long long)v : -1;
    free(s);
    return r;
}

bool xenbus_be_write(struct xenbus_be *b, xs_transaction_t t, const char *dir,
                     const char *node, const char *fmt, ...)
{
    char path[256], val[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    if (!xs_write(b->xs, t, path, val, (unsigned)strlen(val))) {
        log_warn("%s: write %s: %m", b->ops->name, path);
        return false;
    }
    return true;
}

/*
 * Is the backend's state node still there, with the value this step was decided on
 * (d->be_state), read inside t? A state that changed since (a restore's import brought
 * the source's Connected) is not written over: the change's watch brings a new step.
 */
static bool be_state_unchanged(struct xenbus_be *b, struct xenbus_be_dev *d,
                               xs_transaction_t t)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/state", d->be);
    unsigned len;
    char *s = xs_read(b->xs, t, path, &len);
    if (!s)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    bool number = *s && !*end && !errno && v <= INT_MAX;
    free(s);
    return (number ? (int)v : XenbusStateUnknown) == d->be_state;
}

typedef bool (*be_fill_fn)(struct xenbus_be *b, struct xenbus_be_dev *d,
                           xs_transaction_t t, const void *arg);

/*
 * Write the backend's nodes (fill, may be NULL) and its state in one transaction that
 * first checks the state node exists, as Linux's xenbus_switch_state does (a device the
 * toolstack removes while we step it is not brought back by our writes, and the next
 * scan forgets it), and still holds the state this step was decided on. False if
 * nothing was written.
 */
static bool be_update(struct xenbus_be *b, struct xenbus_be_dev *d, be_fill_fn fill,
                      const void *arg, int state)
{
    for (int tries = 0; tries < 10; tries++) {
        xs_transaction_t t = xs_transaction_start(b->xs);
        if (t == XBT_NULL)
            return false;
        bool ok = be_state_unchanged(b, d, t) && (!fill || fill(b, d, t, arg)) &&
                  xenbus_be_write(b, t, d->be, "state", "%d", state);
        if (xs_transaction_end(b->xs, t, !ok)) {
            if (ok && d->be_state != state) {
                log_info("%s: %u/%u: backend state %d -> %d", b->ops->name, d->domid,
                         d->devid, d->be_state, state);
                d->be_state = state;
            }
            return ok;
        }
        if (errno != EAGAIN)
            return false;
    }
    return false;
}

static void switch_state(struct xenbus_be *b, struct xenbus_be_dev *d, int state)
{
    if (d->be_state != state)
        be_update(b, d, NULL, NULL, state);
}

static bool write_error(struct xenbus_be *b, struct xenbus_be_dev *d, xs_transaction_t t,
                        const void *why)
{
    return xenbus_be_write(b, t, d->be, "error", "%s", (const char *)why);
}

/* Xenbus's dev_fatal: say why in the backend's error node and go Closing. */
static void fatal(struct xenbus_be *b, struct xenbus_be_dev *d, const char *why)
{
    log_err("%s: %u/%u: %s", b->ops->name, d->domid, d->devid, why);
    be_update(b, d, write_error, why, XenbusStateClosing);
}

/* Linux's connect(): the device's features and Connected, in one transaction. */
static bool write_features(struct xenbus_be *b, struct xenbus_be_dev *d,
                           xs_transaction_t t, const void *unused)
{
    (void)unused;
    return b->ops->write_features(b, d, t);
}

static bool announce_connected(struct xenbus_be *b, struct xenbus_be_dev *d)
{
    return be_update(b, d, write_features, NULL, XenbusStateConnected);
}

/* Map and bind from what the frontend published; nothing is written. */
static int attach(struct xenbus_be *b, struct xenbus_be_dev *d, bool fresh_handshake)
{
    const char *why = NULL;
    int rc = b->ops->attach(b, d, &why);
    if (rc && why) {
        if (fresh_handshake)
            fatal(b, d, why);
        else if (d->last_fail != rc)
            log_warn("%s: %u/%u: cannot re-attach: %s", b->ops->name, d->domid, d->devid,
                     why);
        d->last_fail = rc;
        return rc;
    }
    if (rc && rc != d->last_fail)     /* retried every second: say it once */
        log_warn("%s: %u/%u: cannot %s: %s (retrying)", b->ops->name, d->domid, d->devid,
                 d->fail_step ? d->fail_step : "connect", strerror(-rc));
    d->last_fail = rc;
    return rc;
}

/* One step of the backend's state machine: Linux's frontend_changed(). */
static void dev_step(struct xenbus_be *b, struct xenbus_be_dev *d)
{
    long long bs = xenbus_be_read_uint(b, d->be, "state", XenbusStateUnknown);
    if (bs < 0)
        bs = XenbusStateUnknown;
    d->be_state = (int)bs;
    if (!d->fe[0]) {
        char *fe = xenbus_be_read(b, d->be, "frontend");
        long long fe_id = xenbus_be_read_uint(b, d->be, "frontend-id", -1);
        if (!fe || fe_id < 0) {
            free(fe);
            return;                 /* the toolstack is still writing the device */
        }
        snprintf(d->fe, sizeof(d->fe), "%s", fe);
        d->fe_domid = (uint32_t)fe_id;
        free(fe);
        char path[160];
        snprintf(path, sizeof(path), "%s/state", d->fe);
        if (!xs_watch(b->xs, path, "fe"))
            log_warn("%s: watch %s: %m", b->ops->name, path);
    }
    if (b->ops->open(b, d))
        return;

    /* Probe: a new device offers its features and waits for the frontend. */
    if (bs == XenbusStateUnknown || bs == XenbusStateInitialising) {
        if (!be_update(b, d, write_features, NULL, XenbusStateInitWait))
            return;             /* being written, or being removed */
    }

    long long fs = xenbus_be_read_uint(b, d->fe, "state", XenbusStateUnknown);
    switch (fs) {
    case XenbusStateInitialising:
        d->broken = false;
        if (d->be_state == XenbusStateClosed) {
            log_info("%s: %u/%u: prepare for reconnect", b->ops->name, d->domid,
                     d->devid);
            switch_state(b, d, XenbusStateInitWait);
        }
        break;
    case XenbusStateInitialised:
    case XenbusStateConnected:
        if (d->broken || d->gone)
            break;
        if (d->be_state == XenbusStateConnected) {
            /*
             * Both ends agree the device is connected: if this process is not serving
             * it (it was restarted, or xkvmd was), take the ring up where it is,
             * without touching xenstore and without the guest doing anything.
             */
            if (!d->connected && attach(b, d, false) == 0)
                log_info("%s: %u/%u: re-attached to the existing %s", b->ops->name,
                         d->domid, d->devid, b->ops->rings);
            break;
        }
        if (d->be_state != XenbusStateInitWait && d->be_state != XenbusStateInitialised)
            break;
        b->ops->disconnect(d);
        if (attach(b, d, true) == 0 && !announce_connected(b, d))
            log_warn("%s: %u/%u: could not announce Connected", b->ops->name, d->domid,
                     d->devid);
        break;
    case XenbusStateClosing:
        switch_state(b, d, XenbusStateClosing);
        break;
    case XenbusStateClosed:
        b->ops->disconnect(d);
        d->broken = false;
        switch_state(b, d, XenbusStateClosed);
        break;
    default:
        /* The frontend went away (Unknown, or its directory removed). */
        b->ops->disconnect(d);
        break;
    }
}

static struct xenbus_be_dev *find_dev(struct xenbus_be *b, uint32_t domid, uint32_t devid)
{
    for (struct xenbus_be_dev *d = b->devs; d; d = d->next)
        if (d->domid == domid && d->devid == devid)
            return d;
    return NULL;
}

/* A device new to this scan: at the head of the list. NULL if out of memory. */
static struct xenbus_be_dev *add_dev(struct xenbus_be *b, const char *dir, uint32_t domid,
                                     uint32_t devid)
{
    struct xenbus_be_dev *d = b->ops->alloc();
    if (!d)
        return NULL;
    d->domid = domid;
    d->devid = devid;
    snprintf(d->be, sizeof(d->be), "%s/%u", dir, devid);
    d->next = b->devs;
    b->devs = d;
    log_info("%s: %u/%u: found %s", b->ops->name, domid, devid, d->be);
    return d;
}

static bool parse_id(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static void forget(struct xenbus_be *b, struct xenbus_be_dev *d)
{
    if (d->fe[0] && b->xs) {
        char path[160];
        snprintf(path, sizeof(path), "%s/state", d->fe);
        xs_unwatch(b->xs, path, "fe");
    }
    log_info("%s: %u/%u: device removed", b->ops->name, d->domid, d->devid);
    b->ops->free(d, true);
}

/* Is this errno from xenstored about the node (fine), or about the connection? */
static bool xs_lost(int e)
{
    return e != ENOENT && e != EACCES && e != EINVAL && e != E2BIG && e != ENOSPC &&
           e != EEXIST && e != EAGAIN && e != EPERM;
}

bool xenbus_be_scan(struct xenbus_be *b)
{
    if (!b->xs)
        return false;
    for (struct xenbus_be_dev *d = b->devs; d; d = d->next)
        d->seen = false;
    unsigned nd = 0;
    char **doms = xs_directory(b->xs, XBT_NULL, b->ops->root, &nd);
    if (!doms && xs_lost(errno))
        return false;
    for (unsigned i = 0; doms && i < nd; i++) {
        uint32_t domid, devid;
        if (!parse_id(doms[i], &domid))
            continue;
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/%u", b->ops->root, domid);
        unsigned nv = 0;
        char **devdirs = xs_directory(b->xs, XBT_NULL, dir, &nv);
        for (unsigned j = 0; devdirs && j < nv; j++) {
            if (!parse_id(devdirs[j], &devid))
                continue;
            struct xenbus_be_dev *d = find_dev(b, domid, devid);
            if (!d && !(d = add_dev(b, dir, domid, devid)))
                continue;
            d->seen = true;
            dev_step(b, d);
        }
        free(devdirs);
    }
    free(doms);
    /* Devices whose backend directory is gone: the toolstack removed them. */
    for (struct xenbus_be_dev **pp = &b->devs; *pp;) {
        struct xenbus_be_dev *d = *pp;
        if (!d->seen) {
            *pp = d->next;
            forget(b, d);
        } else {
            pp = &d->next;
        }
    }
    return true;
}

bool xenbus_be_watches(struct xenbus_be *b)
{
    bool any = false;
    char **w;
    while ((w = xs_check_watch(b->xs))) {
        free(w);
        any = true;
    }
    if (errno != EAGAIN)
        return false;
    if (any)
        return xenbus_be_scan(b);
    return true;
}

void xenbus_be_reap(struct xenbus_be *b)
{
    for (struct xenbus_be_dev *d = b->devs; d; d = d->next) {
        if (!d->connected)
            continue;
        int why = b->ops->stop_reason(d);
        if (why == XB_STOP_NONE)
            continue;
        b->ops->disconnect(d);
        if (why == XB_STOP_BROKEN)
            d->broken = true;       /* until the frontend starts over, as Linux does */
        else if (why == XB_STOP_GONE)
            d->gone = true;         /* until the toolstack removes the device */
        /* XB_STOP_LOST: the next scan re-attaches once xkvmd is back. */
    }
}

int xenbus_be_open(struct xenbus_be *b)
{
    b->xs = xs_open(XS_OPEN_SOCKETONLY);
    if (!b->xs)
        return -errno;
    if (!xs_watch(b->xs, b->ops->root, "be") ||
        !xs_watch(b->xs, "@releaseDomain", "rel")) {
        int e = errno;
        xs_close(b->xs);
        b->xs = NULL;
        return -e;
    }
    /* Frontend watches belong to the old connection: set them again. */
    for (struct xenbus_be_dev *d = b->devs; d; d = d->next) {
        if (d->fe[0]) {
            char path[160];
            snprintf(path, sizeof(path), "%s/state", d->fe);
            xs_watch(b->xs, path, "fe");
        }
    }
    return 0;
}

void xenbus_be_close(struct xenbus_be *b)
{
    if (b->xs)
        xs_close(b->xs);
    b->xs = NULL;
}

void xenbus_be_free_all(struct xenbus_be *b)
{
    while (b->devs) {
        struct xenbus_be_dev *d = b->devs;
        b->devs = d->next;
        b->ops->free(d, false);
    }
}

/* Rescan period: retries (xenstored, xkvmd, re-attach) happen at this pace (ms). */
#define XB_TICK_MS 1000

/* Options, the run directory, where xenstored is, detaching, the log, the signals. */
static int start(struct daemon *dm, const struct daemon_cli *cli, int argc, char **argv)
{
    int rc = daemon_begin(dm, cli, argc, argv, false);
    if (rc != DAEMON_CONTINUE)
        return rc;
    /* libxenstore finds the daemon through XENSTORED_PATH. */
    char xspath[PATH_MAX + 32];
    snprintf(xspath, sizeof(xspath), "%s/xenstored/socket", dm->absdir);
    setenv("XENSTORED_PATH", getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : xspath,
           1);
    if ((rc = daemon_detach(dm, DAEMON_CHDIR_ROOT)) != DAEMON_CONTINUE)
        return rc;
    daemon_open_log(dm);
    daemon_signals();
    return DAEMON_CONTINUE;
}

/* While xenstored is unreachable: try to connect, and scan once connected. */
static void reconnect(struct xenbus_be *b, const sigset_t *block, bool *said_waiting)
{
    int rc = xenbus_be_open(b);
    if (rc) {
        if (!*said_waiting)
            log_info("%s: waiting for xenstored: %s", b->ops->name, strerror(-rc));
        *said_waiting = true;
        return;
    }
    *said_waiting = false;
    log_info("%s: connected to xenstored", b->ops->name);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, block, &old);
    bool ok = xenbus_be_scan(b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok)
        xenbus_be_close(b);
}

/* After poll: the wake eventfd, stopped threads, watches, and the periodic retry. */
static void serve_events(struct xenbus_be *b, const struct pollfd pf[2], int n)
{
    if (pf[0].revents & POLLIN) {
        uint64_t cnt;
        if (read(b->wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
            log_warn("%s: wake: %m", b->ops->name);
    }
    xenbus_be_reap(b);
    if (b->xs) {
        bool ok = (pf[1].revents & POLLIN) ? xenbus_be_watches(b) : true;
        if (ok && (n == 0 || (pf[0].revents & POLLIN)))
            ok = xenbus_be_scan(b);     /* the periodic retry */
        if (!ok) {
            log_warn("%s: lost xenstored; devices keep running, reconnecting",
                     b->ops->name);
            xenbus_be_close(b);
        }
    }
}

/* Serve until a termination signal; xenstored and xkvmd may come and go meanwhile. */
static void serve(struct xenbus_be *b)
{
    /* Device threads take no signals: the main thread sees them (poll returns EINTR). */
    sigset_t block, old;
    daemon_stop_sigset(&block);
    bool said_waiting = false;
    while (!daemon_stopping()) {
        if (!b->xs)
            reconnect(b, &block, &said_waiting);
        int xs_fd = b->xs ? xs_fileno(b->xs) : -1;
        struct pollfd pf[2] = { { .fd = b->wake_fd, .events = POLLIN },
                                { .fd = xs_fd, .events = POLLIN } };
        int n = poll(pf, 2, XB_TICK_MS);
        if (n < 0 && errno != EINTR) {
            log_err("%s: poll: %m", b->ops->name);
            break;
        }
        if (daemon_stopping())
            break;
        /* New threads inherit this mask: keep termination signals for this thread. */
        pthread_sigmask(SIG_BLOCK, &block, &old);
        serve_events(b, pf, n);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
}

int xenbus_be_main(const struct xenbus_be_ops *ops, struct daemon *dm,
                   const struct daemon_cli *cli, int argc, char **argv)
{
    int status = start(dm, cli, argc, argv);
    if (status != DAEMON_CONTINUE)
        return status;
    struct xenbus_be b = { .ops = ops, .rundir = dm->absdir };
    b.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b.wake_fd < 0) {
        log_err("%s: eventfd: %m", ops->name);
        return 1;
    }
    log_info("%s: starting (rundir %s, xenstore %s)", ops->name, dm->absdir,
             getenv("XENSTORED_PATH"));
    serve(&b);
    log_info("%s: exiting", ops->name);
    xenbus_be_free_all(&b);
    xenbus_be_close(&b);
    return 0;
}
