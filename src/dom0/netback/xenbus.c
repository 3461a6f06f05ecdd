/* The network backend's xenbus operations: see xenbus.h. */
#include "xenbus.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/domcfg.h"
#include "util/log.h"

static struct nb_dev *nb_dev_of(struct xenbus_be_dev *x)
{
    return (struct nb_dev *)((char *)x - offsetof(struct nb_dev, xb));
}

static struct xenbus_be_dev *nb_alloc(void)
{
    struct nb_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->tap_fd = -1;
    d->tx_to = d->tx_from = d->rx_to = d->rx_from = d->stop_fd = -1;
    return &d->xb;
}

/*
 * What the vif offers (Linux's netback_probe and connect): written at probe and again
 * with Connected, same values. One queue (multi-queue-max-queues 1), no ctrl ring, no
 * multicast control. hotplug-status is what libxl's vif-bridge script would write.
 */
static bool nb_write_features(struct xenbus_be *b, struct xenbus_be_dev *d,
                              xs_transaction_t t)
{
    return xenbus_be_write(b, t, d->be, "feature-sg", "1") &&
           xenbus_be_write(b, t, d->be, "feature-gso-tcpv4", "1") &&
           xenbus_be_write(b, t, d->be, "feature-gso-tcpv6", "1") &&
           xenbus_be_write(b, t, d->be, "feature-ipv6-csum-offload", "1") &&
           xenbus_be_write(b, t, d->be, "feature-rx-copy", "1") &&
           xenbus_be_write(b, t, d->be, "feature-rx-flip", "0") &&
           xenbus_be_write(b, t, d->be, "feature-split-event-channels", "1") &&
           xenbus_be_write(b, t, d->be, "multi-queue-max-queues", "1") &&
           xenbus_be_write(b, t, d->be, "hotplug-status", "connected");
}

/* A frontend feature-* flag: absent is 0. */
static bool fe_flag(struct xenbus_be *b, struct xenbus_be_dev *d, const char *node)
{
    return xenbus_be_read_uint(b, d->fe, node, 0) == 1;
}

/*
 * Linux's connect_data_rings / read_xenbus_vif_flags: the frontend's rings, port(s)
 * and features. 0, or -EINVAL with *why for a frontend error.
 */
static int read_ring_params(struct xenbus_be *b, struct xenbus_be_dev *d,
                            struct nb_ring_params *rp, const char **why)
{
    memset(rp, 0, sizeof(*rp));
    if (xenbus_be_read_uint(b, d->fe, "multi-queue-num-queues", 1) != 1) {
        *why = "multi-queue-num-queues: only one queue is offered";
        return -EINVAL;
    }
    if (xenbus_be_read_uint(b, d->fe, "request-rx-copy", 0) != 1) {
        *why = "frontend does not request rx-copy (flipping is not supported)";
        return -EINVAL;
    }
    long long tx = xenbus_be_read_uint(b, d->fe, "tx-ring-ref", -2);
    long long rx = xenbus_be_read_uint(b, d->fe, "rx-ring-ref", -2);
    if (tx < 0 || rx < 0) {
        *why = "tx-ring-ref or rx-ring-ref missing or malformed";
        return -EINVAL;
    }
    rp->tx_ref = (grant_ref_t)tx;
    rp->rx_ref = (grant_ref_t)rx;
    long long port = xenbus_be_read_uint(b, d->fe, "event-channel", -2);
    long long ptx = xenbus_be_read_uint(b, d->fe, "event-channel-tx", -2);
    long long prx = xenbus_be_read_uint(b, d->fe, "event-channel-rx", -2);
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
    char *rate = xenbus_be_read(b, d->be, "rate");
    unsigned long long bytes = 0;
    unsigned long usec = 0;
    if (rate && (sscanf(rate, "%llu,%lu", &bytes, &usec) != 2 || !bytes || !usec ||
                 usec > UINT32_MAX)) {
        log_warn("netback: %u/%u: bad rate \"%.40s\": not limited", d->domid, d->devid,
                 rate);
        bytes = usec = 0;
    }
    free(rate);
    rp->rate_bytes = bytes;
    rp->rate_usec = (uint32_t)usec;
    return 0;
}

/* The vif's MAC and bridge (the toolstack's nodes), then its TAP device, once. */
static int nb_open(struct xenbus_be *b, struct xenbus_be_dev *x)
{
    struct nb_dev *d = nb_dev_of(x);
    if (d->tap_fd >= 0)
        return 0;
    char *mac = xenbus_be_read(b, x->be, "mac");
    char *bridge = xenbus_be_read(b, x->be, "bridge");
    int rc = -ENOENT;
    if (mac && domcfg_mac_parse(mac, d->mac) == 0) {
        snprintf(d->bridge, sizeof(d->bridge), "%s",
                 bridge && domcfg_ifname_valid(bridge) ? bridge : "");
        rc = dev_open_tap(d);
        if (rc && rc != x->last_fail)
            log_warn("netback: %u/%u: TAP device vif%u.%u: %s (retrying)", x->domid,
                     x->devid, x->domid, x->devid, strerror(-rc));
        x->last_fail = rc;
    } else if (mac && x->last_fail != -EINVAL) {
        log_warn("netback: %u/%u: bad mac \"%.20s\"", x->domid, x->devid, mac);
        x->last_fail = -EINVAL;
    }
    free(mac);
    free(bridge);
    return rc;
}

/* Map and bind from what the frontend published; nothing is written. */
static int nb_attach(struct xenbus_be *b, struct xenbus_be_dev *x, const char **why)
{
    struct nb_dev *d = nb_dev_of(x);
    struct nb_ring_params rp;
    int rc = read_ring_params(b, x, &rp, why);
    if (rc)
        return rc;
    d->wake_fd = b->wake_fd;
    d->rundir = b->rundir;
    return dev_connect(d, &rp);
}

static void nb_disconnect(struct xenbus_be_dev *x)
{
    dev_disconnect(nb_dev_of(x));
}

static int nb_stop_reason(struct xenbus_be_dev *x)
{
    return dev_stop_reason(nb_dev_of(x));
}

/* Removed: delete the TAP device; netback exiting: the persistent device stays. */
static void nb_free(struct xenbus_be_dev *x, bool removed)
{
    dev_free(nb_dev_of(x), removed);
}

const struct xenbus_be_ops nb_xenbus_ops = {
    .name = "netback",
    .root = NB_BACKEND_ROOT,
    .rings = "rings",
    .alloc = nb_alloc,
    .open = nb_open,
    .write_features = nb_write_features,
    .attach = nb_attach,
    .disconnect = nb_disconnect,
    .stop_reason = nb_stop_reason,
    .free = nb_free,
};
