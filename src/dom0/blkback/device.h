/*
 * One virtual block device: its image, its own dom0 connection (so that closing it
 * releases everything the device holds in xkvmd), the mapped ring, the bound event
 * channel and the thread that serves the ring.
 */
#ifndef XKVM_BLKBACK_DEVICE_H
#define XKVM_BLKBACK_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dom0/xenbus_be.h"
#include "grants.h"
#include "io.h"
#include "ring.h"

/* What the frontend published: read from xenstore by xenbus.c. */
struct blk_ring_params {
    unsigned nr_pages;
    grant_ref_t refs[BLK_MAX_RING_PAGES];
    uint32_t port;
    bool persistent;
};

struct blk_dev {
    struct xenbus_be_dev xb;        /* domid/devid, xenstore paths, handshake state */
    bool want_connected;            /* should be serving (retry if not) */

    struct blk_image img;
    struct blk_limits lim;
    const char *rundir;

    /* Connected state (xb.connected). */
    struct dom0_conn *conn;
    struct blk_grants grants;
    struct blk_ring_params rp;
    void *sring;
    uint32_t ring_handles[BLK_MAX_RING_PAGES];
    blkif_back_ring_t ring;
    int to_guest, from_guest;
    int stop_fd;                    /* eventfd: the main thread wants the thread out */
    int wake_fd;                    /* the main thread's eventfd (not owned) */
    pthread_t thread;
    bool has_thread;
    _Atomic int stop_reason;        /* enum xenbus_be_stop, set by whoever stops it */
    struct blk_work *work;
    uint64_t requests, notifies;
    uint64_t busy_ns;               /* time spent serving the ring */
    int stats_fd;                   /* RUNDIR/stats/vbd-DOMID-DEVID, or -1 */
    uint64_t stats_at_ns;           /* when it was last written */
};

/* Open the image for the device (mode r: read-only). 0 or -errno. */
int dev_open_image(struct blk_dev *d, const char *params, bool readonly);
/*
 * Connect to xkvmd, map the ring, bind the event channel, start serving from the ring's
 * current indexes (rsp_prod), and kick the frontend once. Writes nothing to xenstore.
 */
int dev_connect(struct blk_dev *d, const struct blk_ring_params *rp);
/* Stop the thread, unmap everything, unbind, close the connection. Idempotent. */
void dev_disconnect(struct blk_dev *d);
/* Why the thread stopped (XB_STOP_NONE while it serves). */
int dev_stop_reason(struct blk_dev *d);
void dev_free(struct blk_dev *d);

#endif
