/*
 * A vCPU's architectural state, converted between KVM's ioctls and Xen's HVM_CONTEXT
 * entries (xen/hvm/save.h: CPU, LAPIC, LAPIC_REGS, MTRR, CPU_XSAVE, TSC_ADJUST,
 * CPU_MSR), so that a stream saved on one KVM host (intel, amd, pvm) restores on
 * another. Only what the guest can observe is carried; KVM's internal views
 * (interrupt shadow, nested state) are not.
 */
#ifndef XKVM_MIGRATE_ARCH_STATE_H
#define XKVM_MIGRATE_ARCH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "xkvm/stream.h"

struct domain;

/*
 * Append every vCPU's entries to b (the domain is paused). 0, or -errno with a
 * message. The guest TSCs are read here, so this is the instant the time base of
 * the image refers to.
 */
int arch_save_domain(struct domain *d, struct xkvm_hvmctx_builder *b, char *err, size_t errlen);

/*
 * Load a validated HVM context blob into the (paused, never run) vCPUs of d. Guest
 * TSCs are moved forward by tsc_advance_ns of guest time (the time the guest spent
 * paused in transit). 0, or -errno with a message naming the entry.
 */
int arch_restore_domain(struct domain *d, const void *blob, size_t len,
                        uint64_t tsc_advance_ns, char *err, size_t errlen);

/* Whether vCPU v is halted (HLT or SCHEDOP_block) in KVM. */
struct vcpu;
int arch_vcpu_halted(struct vcpu *v);
/* v's KVM_GET_MP_STATE (KVM_MP_STATE_*), or -errno. */
int arch_vcpu_mp_state(struct vcpu *v);
/* v's interrupt shadow and NMI state as VCPU_PLATFORM's intr_state (XKVM_CTX_INTR_*);
 * restored by arch_restore_domain from v->restore_intr_state. */
uint32_t arch_vcpu_intr_state(struct vcpu *v);

#endif
