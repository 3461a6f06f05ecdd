/* The network backend's xenbus operations: see xenbus.h. */
#include "xenbus.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    dev_init(d);
    return &d->xb;
}

/*
 * The queues offered: one per online CPU (at most NB_MAX_QUEUES), as Linux's netback;
 * $XKVM_NETBACK_MAX_QUEUES (1..NB_MAX_QUEUES) sets it instead, as Linux's
 * xen_netback.max_queues module parameter does.
 */
static unsigned offered_queues(void)
{
    const char *env = getenv("XKVM_NETBACK_MAX_QUEUES");
    char *end;
    long n = env ? strtol(env, &end, 10) : 0;
    if (env && *env && !*end && n >= 1 && n <= (long)NB_MAX_QUEUES)
        return (unsigned)n;
    return nb_max_queues(sysconf(_SC_NPROCESSORS_ONLN));
}

/*
 * What the vif offers (Linux's netback_probe and connect): written at probe and again
 * with Connected, same values. offered_queues() queues,
 * no ctrl ring, no multicast control. hotplug-status is what libxl's vif-bridge
 * script would write.
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
           xenbus_be_write(b, t, d->be, "multi-queue-max-queues", "%u",
                           offered_queues()) &&
           xenbus_be_write(b, t, d->be, "hotplug-status", "connected");
}

struct fe_reader {
    struct xenbus_be *b;
    struct xenbus_be_dev *d;
};

static long long fe_read_uint(void *ctx, const char *node, long long dflt)
{
    struct fe_reader *r = ctx;
    return xenbus_be_read_uint(r->b, r->d->fe, node, dflt);
}

/*
 * Linux's connect / connect_data_rings / read_xenbus_vif_flags: the frontend's queues
 * (vifparams.c), then the toolstack's rate. 0, or -EINVAL with *why for a frontend error.
 */
static int read_ring_params(struct xenbus_be *b, struct xenbus_be_dev *d,
                            struct nb_ring_params *rp, const char **why)
{
    struct fe_reader r = { b, d };
    int rc = nb_params_read(fe_read_uint, &r, offered_queues(), rp, why);
    if (rc)
        return rc;
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
    if (dev_tap_is_open(d))
        return 0;
    char *mac = xenbus_be_read(b, x->be, "mac");
    char *bridge = xenbus_be_read(b, x->be, "bridge");
    int rc = -ENOENT;
    if (mac && domcfg_mac_parse(mac, d->mac) == 0) {
        snprintf(d->bridge, sizeof(d->bridge), "%s",
                 bridge && domcfg_ifname_valid(bridge) ? bridge : "");
        rc = dev_open_tap(d, offered_queues());
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
