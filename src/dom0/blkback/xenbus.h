/*
 * The block backend's xenbus operations (docs/blkback.md): the vbds under
 * /local/domain/0/backend/vbd follow Linux blkback's handshake
 * (drivers/block/xen-blkback/xenbus.c), run by the shared plumbing in
 * dom0/xenbus_be.h; this kind opens the image, offers the disk's features and reads
 * the frontend's ring pages.
 */
#ifndef XKVM_BLKBACK_XENBUS_H
#define XKVM_BLKBACK_XENBUS_H

#include "dom0/xenbus_be.h"
#include "device.h"

#define BLK_BACKEND_ROOT "/local/domain/0/backend/vbd"

extern const struct xenbus_be_ops blk_xenbus_ops;

#endif
