/*
 * One vif: its TAP device (kept open across ring (re)connections), its own dom0
 * connection (closing it releases everything the vif holds in xkvmd), the mapped tx
 * and rx rings, the bound event channel(s) and the thread that moves packets.
 */
#ifndef XKVM_NETBACK_DEVICE_H
#define XKVM_NETBACK_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dom0/libdom0.h"
#include "dom0/xenbus_be.h"
#include "netring.h"

/* What the frontend published: read from xenstore by xenbus.c. */
struct nb_ring_params {
    grant_ref_t tx_ref, rx_ref;
    uint32_t tx_port, rx_port;      /* equal unless split event channels */
    bool split;
    struct nb_features f;
    uint64_t rate_bytes;            /* the backend's `rate` (0: unlimited) */
    uint32_t rate_usec;
};

struct nb_dev {
    struct xenbus_be_dev xb;        /* domid, devid (the handle), xenstore paths... */
    uint8_t mac[6];                 /* the guest's (backend's `mac`), for announcing */
    char bridge[16];
    char ifname[16];                /* vif<domid>.<handle> */
    int tap_fd;                     /* -1 until the TAP device is open */
    const char *rundir;
    int wake_fd;                    /* the main thread's eventfd (not owned) */

    /* Connected state (xb.connected). */
    struct dom0_conn *conn;
    struct nb_ring_params rp;
    void *tx_sring, *rx_sring;
    uint32_t tx_handle, rx_handle;
    netif_tx_back_ring_t tx;
    netif_rx_back_ring_t rx;
    int tx_to, tx_from, rx_to, rx_from;     /* rx_* are tx_*'s when not split */
    int stop_fd;
    pthread_t thread;
    bool has_thread;
    _Atomic int stop_reason;        /* enum xenbus_be_stop */
    bool map_lost;                  /* a map failed for want of xkvmd or the domain */
    uint8_t *txbuf, *rxbuf;
    size_t rx_pending;              /* a TAP frame in rxbuf waiting for rx buffers */
    struct nb_stats stats;
    struct nb_credit credit;        /* rate=: what the guest may still send */
    uint64_t announces;
};

/* Open the TAP device and bring it up on its bridge, once. 0 or -errno. */
int dev_open_tap(struct nb_dev *d);
/*
 * Connect to xkvmd, map both rings, bind the event channel(s), start moving packets
 * from the rings' current indexes (rsp_prod), kick the frontend once and announce the
 * guest's MAC. Writes nothing to xenstore.
 */
int dev_connect(struct nb_dev *d, const struct nb_ring_params *rp);
/* Stop the thread, unmap, unbind, close the connection; the TAP stays. Idempotent. */
void dev_disconnect(struct nb_dev *d);
int dev_stop_reason(struct nb_dev *d);
/*
 * Disconnect and free. remove: the vif is gone, delete its TAP device; otherwise
 * (netback exiting) the persistent device stays for the next instance.
 */
void dev_free(struct nb_dev *d, bool remove);

#endif
