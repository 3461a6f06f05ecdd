/*
 * The libxl half of the toolstack, in xkvmd: a domain's xenstore layout
 * (docs/dom0-services.md). A worker thread talks to xenstored through libxenstore so
 * the main loop never waits on it: after domain_create the domain is held paused
 * until its layout is written and it is introduced to xenstored; on destroy its
 * layout is removed and it is released. Without a xenstored the domain runs anyway.
 */
#ifndef XKVM_HV_TOOLSTACK_XS_H
#define XKVM_HV_TOOLSTACK_XS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct domain;

/*
 * Point libxenstore at RUNDIR/xenstored/socket and start the worker, which from then
 * on writes each created domain's layout (the guest waits for it) and removes a
 * destroyed one's (a domain observer, domain.h). 0 or -errno.
 */
int toolstack_xs_start(const char *rundir);
/* xenstored is supervised on this host: a domain's layout waits for it to come up. */
void toolstack_xs_expect_xenstored(bool expected);
/*
 * Let the worker finish what is queued (bounded wait), then stop it. False if it is
 * still busy: it is left running (live update then refuses).
 */
bool toolstack_xs_stop(void);

/*
 * Migration (any thread): a domain's xenstore state in designs/xenstore-migration's
 * format, from xenstored's export; and into xenstored, then INTRODUCE on its ring.
 * With quiesced, the export quiesces the domain's ring: from then on xenstored leaves
 * it as it is (the bytes it holds outside it are in the export), so the last copy of
 * memory and the export agree; *quiesced says whether it did (an older xenstored,
 * adopted across a live update, does not know the word). toolstack_xs_resume undoes
 * that when the guest runs on here.
 */
int toolstack_xs_export(unsigned domid, bool *quiesced, uint8_t **buf, size_t *len,
                        char *err, size_t errlen);
void toolstack_xs_resume(unsigned domid);
/*
 * Restore, as soon as d is built (while the source's pages still stream in): write
 * d's layout from d->cfg (whose host paths the caller checked) and d's rings, with no
 * device state node on either end, so that no backend steps it yet. uuid: the source's
 * /vm name for the guest, kept unless malformed or taken here (NULL: a new one). Left
 * in place if the restore fails: destroying d removes it, as any domain's.
 */
int toolstack_xs_prepare(struct domain *d, const char *uuid, char *err, size_t errlen);
/*
 * The import, in the pause: the layout if toolstack_xs_prepare did not write it (and
 * the rings' nodes again if the stream moved them), then xenstored applies the stream
 * as the guest's own writes, a device end the stream left without a state gets
 * Initialising, and d is introduced. A refusal leaves nothing behind.
 */
int toolstack_xs_import(struct domain *d, const char *uuid, const uint8_t *buf, size_t len,
                        char *err, size_t errlen);
/* `xkvm vcpu-set`: rewrite cpu/N/availability from d->cfg.vcpus (queued, as libxl). */
void toolstack_xs_vcpus(const struct domain *d);
/* `xkvm mem-set`: rewrite memory/target from d->cfg's target (queued, as libxl). */
void toolstack_xs_mem_target(const struct domain *d);
/* The /vm/<uuid> name written for domid, without asking xenstored (main loop). */
bool toolstack_xs_known_uuid(unsigned domid, char out[37]);

/*
 * Main thread: write the guest's control/NODE = value (xl's shutdown, reboot, sysrq),
 * queued behind the domain's layout; the worker answers the client on reply_fd (a
 * control reply line, once the node is written) and closes it. 0 (reply_fd is the
 * worker's now), or -ENOTCONN without a xenstored.
 */
int toolstack_xs_control(const struct domain *d, const char *node, const char *value,
                         int reply_fd, char *err, size_t errlen);
/* The /vm/<uuid> name of the domain's layout: true and out if known. */
bool toolstack_xs_uuid(unsigned domid, char out[37]);

#endif
