/*
 * The xenbus side of the block backend: find devices under
 * /local/domain/0/backend/vbd, and follow Linux blkback's handshake
 * (drivers/block/xen-blkback/xenbus.c) with each frontend. A device found with both
 * ends Connected (blkback restarted, xkvmd restarted) is re-attached to its ring
 * without writing anything.
 */
#ifndef XKVM_BLKBACK_XENBUS_H
#define XKVM_BLKBACK_XENBUS_H

#include <stdbool.h>

#include "device.h"

#define BLK_BACKEND_ROOT "/local/domain/0/backend/vbd"

struct blkback {
    const char *rundir;
    struct xs_handle *xs;       /* NULL while xenstored is unreachable */
    struct blk_dev *devs;
    int wake_fd;                /* device threads say they stopped */
};

/* Connect to xenstored and set the watches. 0 or -errno. */
int xb_open(struct blkback *b);
void xb_close(struct blkback *b);
/* Handle pending watch events (the xs fd was readable); false if xenstore was lost. */
bool xb_watches(struct blkback *b);
/* Look at every device and take each one step through the handshake. */
bool xb_scan(struct blkback *b);
/* Collect devices whose ring thread stopped. */
void xb_reap(struct blkback *b);
/* Disconnect and free every device (nothing is written). */
void xb_free_all(struct blkback *b);

#endif
