/* The xenbus handshake of the network backend: see xenbus.h. */
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

#include "util/domcfg.h"
#include "util/log.h"

/* xenstore read of dir/node: a malloc'd string, or NULL. */
static char *rd(struct netback *b, const char *dir, const char *node)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    unsigned len;
    return xs_read(b->xs, XBT_NULL, path, &len);
}

/* An unsigned value, or dflt if missing; -1 if present but not a number. */
static long long rd_uint(struct netback *b, const char *dir, const char *node,
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

static bool wr(struct netback *b, xs_transaction_t t, const char *dir, const char *node,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool wr(struct netback *b, xs_transaction_t t, const char *dir, const char *node,
               const char *fmt, ...)
{
    char path[256], val[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    if (!xs_write(b->xs, t, path, val, (unsigned)strlen(val))) {
        log_warn("netback: write %s: %m", path);
        return false;
    }
    return true;
}

/* Is the backend's state node still there, read inside t? */
static bool be_present(struct netback *b, struct nb_dev *d, xs_transaction_t t)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/state", d->be);
    unsigned len;
    char *s = xs_read(b->xs, t, path, &len);
    free(s);
    return s != NULL;
}

typedef bool (*be_fill_fn)(struct netback *b, struct nb_dev *d, xs_transaction_t t,
                           const void *arg);

/*
 * Write the backend's nodes (fill, may be NULL) and its state in one transaction that
 * first checks the state node exists, as Linux's xenbus_switch_state does: a device the
 * toolstack removes while we step it is not brought back by our writes, and the next
 * scan forgets it. False if nothing was written.
 */
static bool be_update(struct netback *b, struct nb_dev *d, be_fill_fn fill,
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
                log_info("netback: %u/%u: backend state %d -> %d", d->domid, d->handle,
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

static void switch_state(struct netback *b, struct nb_dev *d, int state)
{
    if (d->be_state != state)
        be_update(b, d, NULL, NULL, state);
}

/*
 * What the vif offers (Linux's netback_probe and connect): written at probe and again
 * with Connected, same values. One queue (multi-queue-max-queues 1), no ctrl ring, no
 * multicast control. hotplug-status is what libxl's vif-bridge script would write.
 */
static bool write_features(struct netback *b, struct nb_dev *d, xs_transaction_t t,
                           const void *unused)
{
    (void)unused;
    return wr(b, t, d->be, "feature-sg", "1") &&
           wr(b, t, d->be, "feature-gso-tcpv4", "1") &&
           wr(b, t, d->be, "feature-gso-tcpv6", "1") &&
           wr(b, t, d->be, "feature-ipv6-csum-offload", "1") &&
           wr(b, t, d->be, "feature-rx-copy", "1") &&
           wr(b, t, d->be, "feature-rx-flip", "0") &&
           wr(b, t, d->be, "feature-split-event-channels", "1") &&
           wr(b, t, d->be, "multi-queue-max-queues", "1") &&
           wr(b, t, d->be, "hotplug-status", "connected");
}

/* Linux's connect(): the features and Connected, in one transaction. */
static bool announce_connected(struct netback *b, struct nb_dev *d)
{
    return be_update(b, d, write_features, NULL, XenbusStateConnected);
}

static bool write_error(struct netback *b, struct nb_dev *d, xs_transaction_t t,
                        const void *why)
{
    return wr(b, t, d->be, "error", "%s", (const char *)why);
}

/* Xenbus's dev_fatal: say why in the backend's error node and go Closing. */
static void fatal(struct netback *b, struct nb_dev *d, const char *why)
{
    log_err("netback: %u/%u: %s", d->domid, d->handle, why);
    be_update(b, d, write_error, why, XenbusStateClosing);
}

/* A frontend feature-* flag: absent is 0. */
static bool fe_flag(struct netback *b, struct nb_dev *d, const char *node)
{
    return rd_uint(b, d->fe, node, 0) == 1;
}

/*
 * Linux's connect_data_rings / read_xenbus_vif_flags: the frontend's rings, port(s)
 * and features. 0, or -EINVAL with *why for a frontend error.
 */
static int read_ring_params(struct netback *b, struct nb_dev *d,
                            struct nb_ring_params *rp, const char **why)
{
    memset(rp, 0, sizeof(*rp));
    if (rd_uint(b, d->fe, "multi-queue-num-queues", 1) != 1) {
        *why = "multi-queue-num-queues: only one queue is offered";
        return -EINVAL;
    }
    if (rd_uint(b, d->fe, "request-rx-copy", 0) != 1) {
        *why = "frontend does not request rx-copy (flipping is not supported)";
        return -EINVAL;
    }
    long long tx = rd_uint(b, d->fe, "tx-ring-ref", -2);
    long long rx = rd_uint(b, d->fe, "rx-ring-ref", -2);
    if (tx < 0 || rx < 0) {
        *why = "tx-ring-ref or rx-ring-ref missing or malformed";
        return -EINVAL;
    }
    rp->tx_ref = (grant_ref_t)tx;
    rp->rx_ref = (grant_ref_t)rx;
    long long port = rd_uint(b, d->fe, "event-channel", -2);
    long long ptx = rd_uint(b, d->fe, "event-channel-tx", -2);
    long long prx = rd_uint(b, d->fe, "event-channel-rx", -2);
    if (port == -2 && ptx >= 0 && prx >= 0) {
        rp->split = true;
        rp->tx_port = (uint32_t)ptx;
        rp->rx_port = (uint32_t)prx;
    } else if (port >= 0) {
        rp->tx_port = rp->rx_port = (uint32_t)port;
    } else {
        *why = "event-channel (or event-channel-tx and -rx) missing or malformed";
        return -EINVAL;
    }
    rp->f.sg = fe_flag(b, d, "feature-sg");
    rp->f.gso_tcpv4 = fe_flag(b, d, "feature-gso-tcpv4");
    rp->f.gso_tcpv6 = fe_flag(b, d, "feature-gso-tcpv6");
    rp->f.csum = !fe_flag(b, d, "feature-no-csum-offload");
    /* The toolstack's rate= (Linux's xen_net_read_rate): "BYTES,USECS"; bad is none. */
    char *rate = rd(b, d->be, "rate");
    unsigned long long bytes = 0;
    unsigned long usec = 0;
    if (rate && (sscanf(rate, "%llu,%lu", &bytes, &usec) != 2 || !bytes || !usec ||
                 usec > UINT32_MAX)) {
        log_warn("netback: %u/%u: bad rate \"%.40s\": not limited", d->domid, d->handle,
                 rate);
        bytes = usec = 0;
    }
    free(rate);
    rp->rate_bytes = bytes;
    rp->rate_usec = (uint32_t)usec;
    return 0;
}

/* The vif's MAC and bridge (the toolstack's nodes), then its TAP device, once. */
static int ensure_tap(struct netback *b, struct nb_dev *d)
{
    if (d->tap_fd >= 0)
        return 0;
    char *mac = rd(b, d->be, "mac");
    char *bridge = rd(b, d->be, "bridge");
    int rc = -ENOENT;
    if (mac && domcfg_mac_parse(mac, d->mac) == 0) {
        snprintf(d->bridge, sizeof(d->bridge), "%s",
                 bridge && domcfg_ifname_valid(bridge) ? bridge : "");
        rc = dev_open_tap(d);
        if (rc && rc != d->last_fail)
            log_warn("netback: %u/%u: TAP device vif%u.%u: %s (retrying)", d->domid,
                     d->handle, d->domid, d->handle, strerror(-rc));
        d->last_fail = rc;
    } else if (mac && d->last_fail != -EINVAL) {
        log_warn("netback: %u/%u: bad mac \"%.20s\"", d->domid, d->handle, mac);
        d->last_fail = -EINVAL;
    }
    free(mac);
    free(bridge);
    return rc;
}

/* Map and bind from what the frontend published; nothing is written. */
static int attach(struct netback *b, struct nb_dev *d, bool fresh_handshake)
{
    struct nb_ring_params rp;
    const char *why = NULL;
    int rc = read_ring_params(b, d, &rp, &why);
    if (rc) {
        if (fresh_handshake)
            fatal(b, d, why);
        else if (d->last_fail != rc)
            log_warn("netback: %u/%u: cannot re-attach: %s", d->domid, d->handle, why);
        d->last_fail = rc;
        return rc;
    }
    d->wake_fd = b->wake_fd;
    d->rundir = b->rundir;
    rc = dev_connect(d, &rp);
    if (rc && rc != d->last_fail)     /* retried every second: say it once */
        log_warn("netback: %u/%u: cannot %s: %s (retrying)", d->domid, d->handle,
                 d->fail_step ? d->fail_step : "connect", strerror(-rc));
    d->last_fail = rc;
    return rc;
}

/* One step of the backend's state machine: Linux's frontend_changed(). */
static void dev_step(struct netback *b, struct nb_dev *d)
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
            log_warn("netback: watch %s: %m", path);
    }
    if (ensure_tap(b, d))
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
            log_info("netback: %u/%u: prepare for reconnect", d->domid, d->handle);
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
                log_info("netback: %u/%u: re-attached to the existing rings",
                         d->domid, d->handle);
            break;
        }
        if (d->be_state != XenbusStateInitWait && d->be_state != XenbusStateInitialised)
            break;
        dev_disconnect(d);
        if (attach(b, d, true) == 0 && !announce_connected(b, d))
            log_warn("netback: %u/%u: could not announce Connected", d->domid, d->handle);
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

static struct nb_dev *find_dev(struct netback *b, uint32_t domid, uint32_t handle)
{
    for (struct nb_dev *d = b->devs; d; d = d->next)
        if (d->domid == domid && d->handle == handle)
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

static void forget(struct netback *b, struct nb_dev *d)
{
    if (d->fe[0] && b->xs) {
        char path[160];
        snprintf(path, sizeof(path), "%s/state", d->fe);
        xs_unwatch(b->xs, path, "fe");
    }
    log_info("netback: %u/%u: device removed", d->domid, d->handle);
    dev_free(d, true);
}

/* Is this errno from xenstored about the node (fine), or about the connection? */
static bool xs_lost(int e)
{
    return e != ENOENT && e != EACCES && e != EINVAL && e != E2BIG && e != ENOSPC &&
           e != EEXIST && e != EAGAIN && e != EPERM;
}

bool xb_scan(struct netback *b)
{
    if (!b->xs)
        return false;
    for (struct nb_dev *d = b->devs; d; d = d->next)
        d->seen = false;
    unsigned nd = 0;
    char **doms = xs_directory(b->xs, XBT_NULL, NB_BACKEND_ROOT, &nd);
    if (!doms && xs_lost(errno))
        return false;
    for (unsigned i = 0; doms && i < nd; i++) {
        uint32_t domid, handle;
        if (!parse_id(doms[i], &domid))
            continue;
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/%u", NB_BACKEND_ROOT, domid);
        unsigned nv = 0;
        char **vifs = xs_directory(b->xs, XBT_NULL, dir, &nv);
        for (unsigned j = 0; vifs && j < nv; j++) {
            if (!parse_id(vifs[j], &handle))
                continue;
            struct nb_dev *d = find_dev(b, domid, handle);
            if (!d) {
                d = calloc(1, sizeof(*d));
                if (!d)
                    continue;
                d->domid = domid;
                d->handle = handle;
                d->tap_fd = -1;
                d->tx_to = d->tx_from = d->rx_to = d->rx_from = d->stop_fd = -1;
                snprintf(d->be, sizeof(d->be), "%s/%u", dir, handle);
                d->next = b->devs;
                b->devs = d;
                log_info("netback: %u/%u: found %s", domid, handle, d->be);
            }
            d->seen = true;
            dev_step(b, d);
        }
        free(vifs);
    }
    free(doms);
    /* Devices whose backend directory is gone: the toolstack removed them. */
    for (struct nb_dev **pp = &b->devs; *pp;) {
        struct nb_dev *d = *pp;
        if (!d->seen) {
            *pp = d->next;
            forget(b, d);
        } else {
            pp = &d->next;
        }
    }
    return true;
}

bool xb_watches(struct netback *b)
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

void xb_reap(struct netback *b)
{
    for (struct nb_dev *d = b->devs; d; d = d->next) {
        if (!d->connected)
            continue;
        int why = dev_stop_reason(d);
        if (why == NB_STOP_NONE)
            continue;
        dev_disconnect(d);
        if (why == NB_STOP_BROKEN)
            d->broken = true;       /* until the frontend starts over, as Linux does */
        else if (why == NB_STOP_GONE)
            d->gone = true;         /* until the toolstack removes the device */
        /* NB_STOP_LOST: the next scan re-attaches once xkvmd is back. */
    }
}

int xb_open(struct netback *b)
{
    b->xs = xs_open(XS_OPEN_SOCKETONLY);
    if (!b->xs)
        return -errno;
    if (!xs_watch(b->xs, NB_BACKEND_ROOT, "be") ||
        !xs_watch(b->xs, "@releaseDomain", "rel")) {
        int e = errno;
        xs_close(b->xs);
        b->xs = NULL;
        return -e;
    }
    /* Frontend watches belong to the old connection: set them again. */
    for (struct nb_dev *d = b->devs; d; d = d->next) {
        if (d->fe[0]) {
            char path[160];
            snprintf(path, sizeof(path), "%s/state", d->fe);
            xs_watch(b->xs, path, "fe");
        }
    }
    return 0;
}

void xb_close(struct netback *b)
{
    if (b->xs)
        xs_close(b->xs);
    b->xs = NULL;
}

void xb_free_all(struct netback *b)
{
    while (b->devs) {
        struct nb_dev *d = b->devs;
        b->devs = d->next;
        dev_free(d, false);
    }
}
