/*
 * libdom0: the dom0 services' side of xkvmd's dom0 socket (include/xkvm/dom0.h), in
 * the shape of Linux's evtchn/gntdev/foreignmemory devices: bind a guest's event
 * channel and get two eventfds, map a grant or a guest frame and get a pointer.
 * Every call is synchronous; a connection is for one thread at a time. Functions
 * return 0 or -errno (pointers: NULL with errno set).
 */
#ifndef XKVM_LIBDOM0_H
#define XKVM_LIBDOM0_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xkvm/dom0.h"

struct dom0_conn;

/* Connect to RUNDIR/dom0.sock (rundir NULL: $XKVM_RUNDIR or /run/xkvm) and say HELLO. */
struct dom0_conn *dom0_connect(const char *rundir, const char *service);
/* Close the connection: xkvmd releases everything it holds (unmap pointers first). */
void dom0_close(struct dom0_conn *c);
/* The reason of the last failed request, as xkvmd's errno (0 if none). */
int dom0_last_error(const struct dom0_conn *c);
/* The connection's socket, to poll for POLLRDHUP: xkvmd went away (or exec'd). */
int dom0_fileno(const struct dom0_conn *c);

/* Writing 1 (8 bytes) to *to_guest raises the port; *from_guest reads guest sends. */
int dom0_bind_evtchn(struct dom0_conn *c, uint32_t domid, uint32_t port,
                     int *to_guest, int *from_guest);
int dom0_unbind_evtchn(struct dom0_conn *c, uint32_t domid, uint32_t port);

/* Map grant `ref` of domid: one page, read-only if asked; *handle names it for unmap. */
void *dom0_map_grant(struct dom0_conn *c, uint32_t domid, uint32_t ref, bool readonly,
                     uint32_t *handle);
int dom0_unmap_grant(struct dom0_conn *c, uint32_t domid, uint32_t handle, void *page);

/* Map frame `gfn` of domid, as xenforeignmemory_map does for the toolstack's rings. */
void *dom0_map_foreign(struct dom0_conn *c, uint32_t domid, uint64_t gfn, bool readonly,
                       uint32_t *handle);
int dom0_unmap_foreign(struct dom0_conn *c, uint32_t domid, uint32_t handle, void *page);

/* Domain domid, or with next the first one whose id is >= domid (Xen's getdomaininfo). */
int dom0_domain_info(struct dom0_conn *c, uint32_t domid, bool next,
                     struct xkvm_dom0_domain_info *info);

/*
 * Send raw bytes as one packet and read the reply: its error (0 or a positive errno)
 * or -errno if there was no reply. For tests of xkvmd's parser.
 */
int dom0_send_raw(struct dom0_conn *c, const void *buf, size_t len);

#endif
