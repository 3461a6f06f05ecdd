/* The xenbus handshake: see xenbus.h. */
#include "xenbus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>

#include "util/log.h"

/* xenstore read of dir/node: a malloc'd string, or NULL. */
static char *rd(struct blkback *b, const char *dir, const char *node)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    unsigned len;
    return xs_read(b->xs, XBT_NULL, path, &len);
}

/* An unsigned value, or dflt if missing; -1 if present but not a number. */
static long long rd_uint(struct blkback *b, const char *dir, const char *node,
                         long long dflt)
{
    char *s = rd(b, dir, node);
    if (!s)
        return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    long long r = (*s && !*end && !errno && v <= UINT32_MAX) ? (long long)v : -1;
    free(s);
    return r;
}

static bool wr(struct blkback *b, xs_transaction_t t, const char *dir, const char *node,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool wr(struct blkback *b, xs_transaction_t t, const char *dir, const char *node,
               const char *fmt, ...)
{
    char path[256], val[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    if (!xs_write(b->xs, t, path, val, (unsigned)strlen(val))) {
        log_warn("blkback: write %s: %m", path);
        return false;
    }
    return true;
}

/* Is the backend's state node still there, read inside t? */
static bool be_present(struct blkback *b, struct blk_dev *d, xs_transaction_t t)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/state", d->be);
    unsigned len;
    char *s = xs_read(b->xs, t, path, &len);
    free(s);
    return s != NULL;
}

typedef bool (*be_fill_fn)(struct blkback *b, struct blk_dev *d, xs_transaction_t t,
                           const void *arg);

/*
 * Write the backend's nodes (fill, may be NULL) and its state in one transaction that
 * first checks the state node exists, as Linux's xenbus_switch_state does: a device the
 * toolstack removes while we step it is not brought back by our writes, and the next
 * scan forgets it. False if nothing was written.
 */
static bool be_update(struct blkback *b, struct blk_dev *d, be_fill_fn fill,
                      const void *arg, int state)
{
    for (int tries = 0; tries < 10; tries++) {
        xs_transaction_t t = xs_transaction_start(b->xs);
        if (t == XBT_NULL)
            return false;
        bool ok = be_present(b, d, t) && (!fill || fill(b, d, t, arg)) &&
                  wr(b, t, d->be, "state", "%d", state);
        if (xs_transaction_end(b->xs, t, !ok)) {
            if (ok && d->be_state != state) {
                log_info("blkback: %u/%u: backend state %d -> %d", d->domid, d->devid,
                         d->be_state, state);
                d->be_state = state;
            }
            return ok;
        }
        if (errno != EAGAIN)
            return false;
    }
    return false;
}

static void switch_state(struct blkback *b, struct blk_dev *d, int state)
{
    if (d->be_state != state)
        be_update(b, d, NULL, NULL, state);
}

/*
 * What the disk offers. Linux writes the ring limits when probing and the rest just
 * before Connected; the frontend reads them once the backend is Connected. Written
 * early too: a frontend that looks at InitWait sees the same values.
 */
static bool write_features(struct blkback *b, struct blk_dev *d, xs_transaction_t t,
                           const void *unused)
{
    (void)unused;
    /* Discard punches holes in a file image (Linux: only if the device can discard). */
    if (d->lim.discard &&
        !(wr(b, t, d->be, "feature-discard", "1") &&
          wr(b, t, d->be, "discard-granularity", "%u", BLK_PAGE_SIZE) &&
          wr(b, t, d->be, "discard-alignment", "0") &&
          wr(b, t, d->be, "discard-secure", "0")))
        return false;
    return wr(b, t, d->be, "feature-flush-cache", "1") &&
           wr(b, t, d->be, "feature-barrier", "1") &&
           wr(b, t, d->be, "feature-persistent", "1") &&
           wr(b, t, d->be, "feature-max-indirect-segments", "%u", BLK_MAX_INDIRECT_SEGS) &&
           wr(b, t, d->be, "max-ring-page-order", "%u", BLK_MAX_RING_ORDER) &&
           wr(b, t, d->be, "sectors", "%" PRIu64, d->img.sectors) &&
           wr(b, t, d->be, "info", "%u", d->img.readonly ? VDISK_READONLY : 0u) &&
           wr(b, t, d->be, "sector-size", "%u", BLK_SECTOR_SIZE) &&
           wr(b, t, d->be, "physical-sector-size", "%u", BLK_SECTOR_SIZE);
}

/* Linux's connect(): the disk's features and Connected, in one transaction. */
static bool announce_connected(struct blkback *b, struct blk_dev *d)
{
    return be_update(b, d, write_features, NULL, XenbusStateConnected);
}

static bool write_error(struct blkback *b, struct blk_dev *d, xs_transaction_t t,
                        const void *why)
{
    return wr(b, t, d->be, "error", "%s", (const char *)why);
}

/* Xenbus's dev_fatal: say why in the backend's error node and go Closing. */
static void fatal(struct blkback *b, struct blk_dev *d, const char *why)
{
    log_err("blkback: %u/%u: %s", d->domid, d->devid, why);
    be_update(b, d, write_error, why, XenbusStateClosing);
}

/*
 * Linux's connect_ring / read_per_ring_refs: the frontend's ring pages, port,
 * protocol and features. 0, or -EINVAL with *why for a frontend error.
 */
static int read_ring_params(struct blkback *b, struct blk_dev *d,
                            struct blk_ring_params *rp, const char **why)
{
    memset(rp, 0, sizeof(*rp));
    char *proto = rd(b, d->fe, "protocol");
    bool native = !proto || !strcmp(proto, XEN_IO_PROTO_ABI_NATIVE) || !*proto;
    free(proto);
    if (!native) {
        *why = "unsupported protocol (only " XEN_IO_PROTO_ABI_NATIVE ")";
        return -EINVAL;
    }
    long long queues = rd_uint(b, d->fe, "multi-queue-num-queues", 1);
    if (queues != 1) {
        *why = "multi-queue-num-queues: only one queue is offered";
        return -EINVAL;
    }
    long long pers = rd_uint(b, d->fe, "feature-persistent", 0);
    rp->persistent = pers == 1;
    long long port = rd_uint(b, d->fe, "event-channel", -2);
    if (port < 0) {
        *why = "event-channel missing or malformed";
        return -EINVAL;
    }
    rp->port = (uint32_t)port;
    long long order = rd_uint(b, d->fe, "ring-page-order", -2);
    if (order == -2) {
        long long ref = rd_uint(b, d->fe, "ring-ref", -2);
        if (ref < 0) {
            *why = "ring-ref missing or malformed";
            return -EINVAL;
        }
        rp->nr_pages = 1;
        rp->refs[0] = (grant_ref_t)ref;
        return 0;
    }
    if (order < 0 || order > BLK_MAX_RING_ORDER) {
        *why = "ring-page-order out of range";
        return -EINVAL;
    }
    rp->nr_pages = 1u << order;
    for (unsigned i = 0; i < rp->nr_pages; i++) {
        char node[32];
        snprintf(node, sizeof(node), "ring-ref%u", i);
        long long ref = rd_uint(b, d->fe, node, -2);
        if (ref < 0) {
            *why = "ring-refN missing or malformed";
            return -EINVAL;
        }
        rp->refs[i] = (grant_ref_t)ref;
    }
    return 0;
}

/* Open the image named by the backend's params/mode, once. */
static int ensure_image(struct blkback *b, struct blk_dev *d)
{
    if (d->img.fd >= 0)
        return 0;
    char *params = rd(b, d->be, "params");
    char *mode = rd(b, d->be, "mode");
    int rc = -ENOENT;
    if (params && *params) {
        bool ro = mode && mode[0] == 'r';
        rc = dev_open_image(d, params, ro);
        if (rc && rc != d->last_fail)
            log_warn("blkback: %u/%u: open %s: %s (retrying)", d->domid, d->devid,
                     params, strerror(-rc));
        d->last_fail = rc;
    }
    free(params);
    free(mode);
    return rc;
}

/* Map and bind from what the frontend published; nothing is written. */
static int attach(struct blkback *b, struct blk_dev *d, bool fresh_handshake)
{
    struct blk_ring_params rp;
    const char *why = NULL;
    int rc = read_ring_params(b, d, &rp, &why);
    if (rc) {
        if (fresh_handshake)
            fatal(b, d, why);
        else if (d->last_fail != rc)
            log_warn("blkback: %u/%u: cannot re-attach: %s", d->domid, d->devid, why);
        d->last_fail = rc;
        return rc;
    }
    d->wake_fd = b->wake_fd;
    d->rundir = b->rundir;
    rc = dev_connect(d, &rp);
    if (rc && rc != d->last_fail)     /* retried every second: say it once */
        log_warn("blkback: %u/%u: cannot %s: %s (retrying)", d->domid, d->devid,
                 d->fail_step ? d->fail_step : "connect", strerror(-rc));
    d->last_fail = rc;
    return rc;
}

/* One step of the backend's state machine: Linux's frontend_changed(). */
static void dev_step(struct blkback *b, struct blk_dev *d)
{
    long long bs = rd_uint(b, d->be, "state", XenbusStateUnknown);
    if (bs < 0)
        bs = XenbusStateUnknown;
    d->be_state = (int)bs;
    if (!d->fe[0]) {
        char *fe = rd(b, d->be, "frontend");
        long long fe_id = rd_uint(b, d->be, "frontend-id", -1);
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
            log_warn("blkback: watch %s: %m", path);
    }
    if (ensure_image(b, d))
        return;

    /* Probe: a new device offers its features and waits for the frontend. */
    if (bs == XenbusStateUnknown || bs == XenbusStateInitialising) {
        if (!be_update(b, d, write_features, NULL, XenbusStateInitWait))
            return;             /* being written, or being removed */
    }

    long long fs = rd_uint(b, d->fe, "state", XenbusStateUnknown);
    switch (fs) {
    case XenbusStateInitialising:
        d->broken = false;
        if (d->be_state == XenbusStateClosed) {
            log_info("blkback: %u/%u: prepare for reconnect", d->domid, d->devid);
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
                log_info("blkback: %u/%u: re-attached to the existing ring",
                         d->domid, d->devid);
            break;
        }
        if (d->be_state != XenbusStateInitWait && d->be_state != XenbusStateInitialised)
            break;
        dev_disconnect(d);
        if (attach(b, d, true) == 0 && !announce_connected(b, d))
            log_warn("blkback: %u/%u: could not announce Connected", d->domid, d->devid);
        break;
    case XenbusStateClosing:
        switch_state(b, d, XenbusStateClosing);
        break;
    case XenbusStateClosed:
        dev_disconnect(d);
        d->broken = false;
        switch_state(b, d, XenbusStateClosed);
        break;
    default:
        /* The frontend went away (Unknown, or its directory removed). */
        dev_disconnect(d);
        break;
    }
}

static struct blk_dev *find_dev(struct blkback *b, uint32_t domid, uint32_t devid)
{
    for (struct blk_dev *d = b->devs; d; d = d->next)
        if (d->domid == domid && d->devid == devid)
            return d;
    return NULL;
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

static void forget(struct blkback *b, struct blk_dev *d)
{
    if (d->fe[0] && b->xs) {
        char path[160];
        snprintf(path, sizeof(path), "%s/state", d->fe);
        xs_unwatch(b->xs, path, "fe");
    }
    log_info("blkback: %u/%u: device removed", d->domid, d->devid);
    dev_free(d);
}

/* Is this errno from xenstored about the node (fine), or about the connection? */
static bool xs_lost(int e)
{
    return e != ENOENT && e != EACCES && e != EINVAL && e != E2BIG && e != ENOSPC &&
           e != EEXIST && e != EAGAIN && e != EPERM;
}

bool xb_scan(struct blkback *b)
{
    if (!b->xs)
        return false;
    for (struct blk_dev *d = b->devs; d; d = d->next)
        d->seen = false;
    unsigned nd = 0;
    char **doms = xs_directory(b->xs, XBT_NULL, BLK_BACKEND_ROOT, &nd);
    if (!doms && xs_lost(errno))
        return false;
    for (unsigned i = 0; doms && i < nd; i++) {
        uint32_t domid, devid;
        if (!parse_id(doms[i], &domid))
            continue;
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/%u", BLK_BACKEND_ROOT, domid);
        unsigned nv = 0;
        char **vbds = xs_directory(b->xs, XBT_NULL, dir, &nv);
        for (unsigned j = 0; vbds && j < nv; j++) {
            if (!parse_id(vbds[j], &devid))
                continue;
            struct blk_dev *d = find_dev(b, domid, devid);
            if (!d) {
                d = calloc(1, sizeof(*d));
                if (!d)
                    continue;
                d->domid = domid;
                d->devid = devid;
                d->img.fd = -1;
                d->to_guest = d->from_guest = d->stop_fd = d->stats_fd = -1;
                snprintf(d->be, sizeof(d->be), "%s/%u", dir, devid);
                d->next = b->devs;
                b->devs = d;
                log_info("blkback: %u/%u: found %s", domid, devid, d->be);
            }
            d->seen = true;
            dev_step(b, d);
        }
        free(vbds);
    }
    free(doms);
    /* Devices whose backend directory is gone: the toolstack removed them. */
    for (struct blk_dev **pp = &b->devs; *pp;) {
        struct blk_dev *d = *pp;
        if (!d->seen) {
            *pp = d->next;
            forget(b, d);
        } else {
            pp = &d->next;
        }
    }
    return true;
}

bool xb_watches(struct blkback *b)
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
        return xb_scan(b);
    return true;
}

void xb_reap(struct blkback *b)
{
    for (struct blk_dev *d = b->devs; d; d = d->next) {
        if (!d->connected)
            continue;
        int why = dev_stop_reason(d);
        if (why == BLK_STOP_NONE)
            continue;
        dev_disconnect(d);
        if (why == BLK_STOP_BROKEN)
            d->broken = true;       /* until the frontend starts over, as Linux does */
        else if (why == BLK_STOP_GONE)
            d->gone = true;         /* until the toolstack removes the device */
        /* BLK_STOP_LOST: the next scan re-attaches once xkvmd is back. */
    }
}

int xb_open(struct blkback *b)
{
    b->xs = xs_open(XS_OPEN_SOCKETONLY);
    if (!b->xs)
        return -errno;
    if (!xs_watch(b->xs, BLK_BACKEND_ROOT, "be") ||
        !xs_watch(b->xs, "@releaseDomain", "rel")) {
        int e = errno;
        xs_close(b->xs);
        b->xs = NULL;
        return -e;
    }
    /* Frontend watches belong to the old connection: set them again. */
    for (struct blk_dev *d = b->devs; d; d = d->next) {
        if (d->fe[0]) {
            char path[160];
            snprintf(path, sizeof(path), "%s/state", d->fe);
            xs_watch(b->xs, path, "fe");
        }
    }
    return 0;
}

void xb_close(struct blkback *b)
{
    if (b->xs)
        xs_close(b->xs);
    b->xs = NULL;
}

void xb_free_all(struct blkback *b)
{
    while (b->devs) {
        struct blk_dev *d = b->devs;
        b->devs = d->next;
        dev_free(d);
    }
}
