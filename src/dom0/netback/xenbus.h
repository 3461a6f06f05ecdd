/*
 * The network backend's xenbus operations (docs/netback.md): the vifs under
 * /local/domain/0/backend/vif follow Linux netback's handshake
 * (drivers/net/xen-netback/xenbus.c), run by the shared plumbing in dom0/xenbus_be.h;
 * this kind opens the TAP device, offers the vif's features and reads the frontend's
 * rings, event channel(s) and features. A vif found with both ends Connected (netback
 * restarted, xkvmd restarted or live-updated) is re-attached to its rings without
 * writing anything.
 */
#ifndef XKVM_NETBACK_XENBUS_H
#define XKVM_NETBACK_XENBUS_H

#include "dom0/xenbus_be.h"
#include "device.h"

#define NB_BACKEND_ROOT "/local/domain/0/backend/vif"

extern const struct xenbus_be_ops nb_xenbus_ops;

#endif
