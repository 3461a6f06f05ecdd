/*
 * One vif: its TAP device (a multi-queue one, its queues kept open across ring
 * (re)connections) and per netif queue (multi-queue-num-queues) the TAP queue, a dom0
 * connection of its own (closing it releases everything the queue holds in xkvmd), the
 * mapped tx and rx rings, the bound event channel(s) and the thread that moves packets.
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
#include "vifparams.h"

/* One queue: its TAP queue, its own dom0 connection, rings, port(s) and thread. */
struct nb_queue {
    struct nb_dev *d;
    unsigned idx;
    int tap_fd;                     /* this queue's TAP fd (IFF_MULTI_QUEUE); -1 */
    bool tap_detached;              /* open but taken out of the device (TUNSETQUEUE) */
    struct dom0_conn *conn;
    void *tx_sring, *rx_sring;
    uint32_t tx_handle, rx_handle;
    netif_tx_back_ring_t tx;
    netif_rx_back_ring_t rx;
    int tx_to, tx_from, rx_to, rx_from;     /* rx_* are tx_*'s when not split */
    pthread_t thread;
    bool has_thread;
    bool map_lost;                  /* a map failed for want of xkvmd or the domain */
    uint8_t *txbuf, *rxbuf;
    size_t rx_pending;              /* a TAP frame in rxbuf waiting for rx buffers */
    struct nb_stats stats;
    struct nb_credit credit;        /* rate=: what the guest may still send, per queue */
};

struct nb_dev {
    struct xenbus_be_dev xb;        /* domid, devid (the handle), xenstore paths... */
    uint8_t mac[6];                 /* the guest's (backend's `mac`), for announcing */
    char bridge[16];
    char ifname[16];                /* vif<domid>.<handle> */
    int claim_fd;                   /* holds the device name in this network namespace */
    const char *rundir;
    int wake_fd;                    /* the main thread's eventfd (not owned) */
    struct nb_queue q[NB_MAX_QUEUES];   /* q[i].tap_fd stays open across connections */

    /* Connected state (xb.connected). */
    struct nb_ring_params rp;       /* rp.nr_queues queues serve */
    int stop_fd;                    /* one for every queue's thread */
    _Atomic int stop_reason;        /* enum xenbus_be_stop: the first queue's reason */
    uint64_t announces;
    int stats_fd;                   /* RUNDIR/stats/vif-D-H, for xkvm top; -1 */
    uint64_t stats_at_ns;
};

/* Fresh device: nothing open. */
void dev_init(struct nb_dev *d);
/* Queue 0's TAP fd is open (opened before the handshake). */
bool dev_tap_is_open(const struct nb_dev *d);
/*
 * Claim the device name, open nr_queues queues of the TAP device (the ones past 0
 * detached until a frontend connects that many) and bring it up on its bridge, once.
 * 0 or -errno (-EBUSY: another netback holds it).
 */
int dev_open_tap(struct nb_dev *d, unsigned nr_queues);
/*
 * Per queue: open its TAP queue, connect to xkvmd, map both rings, bind the event
 * channel(s), start moving packets from the rings' current indexes (rsp_prod) and kick
 * the frontend once; queue 0 announces the guest's MAC. Writes nothing to xenstore.
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
