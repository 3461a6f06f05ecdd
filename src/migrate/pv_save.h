/*
 * Save half of a domain's PV state: encode it as a domain context image
 * (docs/domain-context.md, records 0x100..0x10a plus Xen's SHARED_INFO).
 */
#ifndef XKVM_MIGRATE_PV_SAVE_H
#define XKVM_MIGRATE_PV_SAVE_H

#include <stddef.h>

struct domain;
struct xkvm_ctx_writer;

/*
 * Write START, DOMAIN, SHARED_INFO, SHARED_INFO_GFN, EVTCHN_ABI, EVTCHN_PORTs,
 * GNTTAB + GNTTAB_FRAMEs, HVM_PARAMS, per vCPU VCPU_STATE, VCPU_INFO, UPCALL, TIMER,
 * and END to w. The caller holds the domain paused (domain_pause) around the call,
 * so no vCPU changes the state while it is read. Main thread (the domain must not be
 * destroyed meanwhile). 0, or -errno with a message in err; on success the image
 * also passed xkvm_ctx_check_image() when w is a buffer writer.
 */
int pv_save_context(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen);

#endif
