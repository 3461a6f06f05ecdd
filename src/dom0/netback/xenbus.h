/*
 * The xenbus side of the network backend: find vifs under
 * /local/domain/0/backend/vif, and follow Linux netback's handshake
 * (drivers/net/xen-netback/xenbus.c) with each frontend. A vif found with both ends
 * Connected (netback restarted, xkvmd restarted or live-updated) is re-attached to its
 * rings without writing anything.
 */
#ifndef XKVM_NETBACK_XENBUS_H
#define XKVM_NETBACK_XENBUS_H

#include <stdbool.h>

#include "device.h"

#define NB_BACKEND_ROOT "/local/domain/0/backend/vif"

struct netback {
    const char *rundir;
    struct xs_handle *xs;       /* NULL while xenstored is unreachable */
    struct nb_dev *devs;
    int wake_fd;                /* device threads say they stopped */
};

/* Connect to xenstored and set the watches. 0 or -errno. */
int xb_open(struct netback *b);
void xb_close(struct netback *b);
/* Handle pending watch events (the xs fd was readable); false if xenstore was lost. */
bool xb_watches(struct netback *b);
/* Look at every vif and take each one step through the handshake. */
bool xb_scan(struct netback *b);
/* Collect vifs whose packet thread stopped. */
void xb_reap(struct netback *b);
/* Disconnect and free every vif, keeping the TAP devices (nothing is written). */
void xb_free_all(struct netback *b);

#endif
