/*
 * Restore half of a domain's PV state: apply a domain context image
 * (docs/domain-context.md) to a domain built for restore, whose memory is already
 * loaded and whose vCPUs have never run.
 */
#ifndef XKVM_MIGRATE_PV_RESTORE_H
#define XKVM_MIGRATE_PV_RESTORE_H

#include <stddef.h>
#include <stdint.h>

struct domain;

/*
 * Check the whole image (xkvm_ctx_check_image plus what this domain can take: its
 * domid and vCPU count, frame and gfn limits) before touching anything. 0, or
 * -errno with a message.
 */
int pv_restore_check(struct domain *d, const void *img, size_t len, char *err, size_t errlen);

/*
 * Apply a checked image, in the order the records depend on each other: time (the
 * VM's clock continues from the image's system time plus the wall-clock time since),
 * shared_info contents and place, grant frames (contents, places; pins from the
 * source are dropped), ports (a port a dom0 service had bound becomes unbound for
 * dom0 again, for the service to re-bind), HVM params, then per vCPU its bring-up
 * state, vcpu_info, upcall vector and timers. *advance_ns: the guest time that
 * passed since the image was taken (for the guest TSCs). 0, or -errno with a message.
 */
int pv_restore_context(struct domain *d, const void *img, size_t len, uint64_t *advance_ns,
                       char *err, size_t errlen);

/* Last step before the domain runs: a spurious upcall on every vCPU, so an event
 * raised while the domain moved is never lost (guests rescan; Xen allows it). */
void pv_restore_kick_events(struct domain *d);

/*
 * Live update: a notification a dom0 service sent just before the hand-over may not
 * have reached the guest. Mark every port waiting for dom0 pending (a spurious event
 * the guest's handler takes as a cue to look at its ring).
 */
void pv_restore_raise_dom0_ports(struct domain *d);

#endif
