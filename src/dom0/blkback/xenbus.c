/* The block backend's xenbus operations: see xenbus.h. */
#include "xenbus.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>

#include "util/log.h"

static struct blk_dev *blk_dev_of(struct xenbus_be_dev *x)
{
    return (struct blk_dev *)((char *)x - offsetof(struct blk_dev, xb));
}

static struct xenbus_be_dev *blk_alloc(void)
{
    struct blk_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->img.fd = -1;
    d->to_guest = d->from_guest = d->stop_fd = d->stats_fd = -1;
    return &d->xb;
}

/*
 * What the disk offers. Linux writes the ring limits when probing and the rest just
 * before Connected; the frontend reads them once the backend is Connected. Written
 * early too: a frontend that looks at InitWait sees the same values.
 */
static bool blk_write_features(struct xenbus_be *b, struct xenbus_be_dev *x,
                               xs_transaction_t t)
{
    struct blk_dev *d = blk_dev_of(x);
    const char *be = x->be;
    /* Discard punches holes in a file image (Linux: only if the device can discard). */
    if (d->lim.discard &&
        !(xenbus_be_write(b, t, be, "feature-discard", "1") &&
          xenbus_be_write(b, t, be, "discard-granularity", "%u", BLK_PAGE_SIZE) &&
          xenbus_be_write(b, t, be, "discard-alignment", "0") &&
          xenbus_be_write(b, t, be, "discard-secure", "0")))
        return false;
    return xenbus_be_write(b, t, be, "feature-flush-cache", "1") &&
           xenbus_be_write(b, t, be, "feature-barrier", "1") &&
           xenbus_be_write(b, t, be, "feature-persistent", "1") &&
           xenbus_be_write(b, t, be, "feature-max-indirect-segments", "%u",
                           BLK_MAX_INDIRECT_SEGS) &&
           xenbus_be_write(b, t, be, "max-ring-page-order", "%u", BLK_MAX_RING_ORDER) &&
           xenbus_be_write(b, t, be, "sectors", "%" PRIu64, d->img.sectors) &&
           xenbus_be_write(b, t, be, "info", "%u",
                           d->img.readonly ? VDISK_READONLY : 0u) &&
           xenbus_be_write(b, t, be, "sector-size", "%u", BLK_SECTOR_SIZE) &&
           xenbus_be_write(b, t, be, "physical-sector-size", "%u", BLK_SECTOR_SIZE);
}

/* The ring's grant references: ring-ref, or ring-page-order and ring-refN. */
static int read_ring_refs(struct xenbus_be *b, const char *fe, struct blk_ring_params *rp,
                          const char **why)
{
    long long order = xenbus_be_read_uint(b, fe, "ring-page-order", -2);
    if (order == -2) {
        long long ref = xenbus_be_read_uint(b, fe, "ring-ref", -2);
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
        long long ref = xenbus_be_read_uint(b, fe, node, -2);
        if (ref < 0) {
            *why = "ring-refN missing or malformed";
            return -EINVAL;
        }
        rp->refs[i] = (grant_ref_t)ref;
    }
    return 0;
}

/*
 * Linux's connect_ring / read_per_ring_refs: the frontend's ring pages, port,
 * protocol and features. 0, or -EINVAL with *why for a frontend error.
 */
static int read_ring_params(struct xenbus_be *b, const char *fe, struct blk_ring_params *rp,
                            const char **why)
{
    memset(rp, 0, sizeof(*rp));
    char *proto = xenbus_be_read(b, fe, "protocol");
    bool native = !proto || !strcmp(proto, XEN_IO_PROTO_ABI_NATIVE) || !*proto;
    free(proto);
    if (!native) {
        *why = "unsupported protocol (only " XEN_IO_PROTO_ABI_NATIVE ")";
        return -EINVAL;
    }
    long long queues = xenbus_be_read_uint(b, fe, "multi-queue-num-queues", 1);
    if (queues != 1) {
        *why = "multi-queue-num-queues: only one queue is offered";
        return -EINVAL;
    }
    long long pers = xenbus_be_read_uint(b, fe, "feature-persistent", 0);
    rp->persistent = pers == 1;
    long long port = xenbus_be_read_uint(b, fe, "event-channel", -2);
    if (port < 0) {
        *why = "event-channel missing or malformed";
        return -EINVAL;
    }
    rp->port = (uint32_t)port;
    return read_ring_refs(b, fe, rp, why);
}

/* Open the image named by the backend's params/mode, once. */
static int blk_open(struct xenbus_be *b, struct xenbus_be_dev *x)
{
    struct blk_dev *d = blk_dev_of(x);
    if (d->img.fd >= 0)
        return 0;
    char *params = xenbus_be_read(b, x->be, "params");
    char *mode = xenbus_be_read(b, x->be, "mode");
    int rc = -ENOENT;
    if (params && *params) {
        bool ro = mode && mode[0] == 'r';
        rc = dev_open_image(d, params, ro);
        if (rc && rc != x->last_fail)
            log_warn("blkback: %u/%u: open %s: %s (retrying)", x->domid, x->devid,
                     params, strerror(-rc));
        x->last_fail = rc;
    }
    free(params);
    free(mode);
    return rc;
}

/* Map and bind from what the frontend published; nothing is written. */
static int blk_attach(struct xenbus_be *b, struct xenbus_be_dev *x, const char **why)
{
    struct blk_dev *d = blk_dev_of(x);
    struct blk_ring_params rp;
    int rc = read_ring_params(b, x->fe, &rp, why);
    if (rc)
        return rc;
    d->wake_fd = b->wake_fd;
    d->rundir = b->rundir;
    return dev_connect(d, &rp);
}

static void blk_disconnect(struct xenbus_be_dev *x)
{
    dev_disconnect(blk_dev_of(x));
}

static int blk_stop_reason(struct xenbus_be_dev *x)
{
    return dev_stop_reason(blk_dev_of(x));
}

static void blk_free(struct xenbus_be_dev *x, bool removed)
{
    (void)removed;
    dev_free(blk_dev_of(x));
}

const struct xenbus_be_ops blk_xenbus_ops = {
    .name = "blkback",
    .root = BLK_BACKEND_ROOT,
    .rings = "ring",
    .alloc = blk_alloc,
    .open = blk_open,
    .write_features = blk_write_features,
    .attach = blk_attach,
    .disconnect = blk_disconnect,
    .stop_reason = blk_stop_reason,
    .free = blk_free,
};
