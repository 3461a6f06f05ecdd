/*
 * The verdict on a guest that calls Xen with VMCALL/VMMCALL where KVM cannot
 * intercept them (kvm_pvm): such a vCPU never exits again (VMCALL) or faults on the
 * instruction (VMMCALL as #UD, then a triple fault). docs/hypervisor.md, "A guest
 * this host cannot run".
 */
#ifndef XKVM_HV_VMCALL_WATCH_H
#define XKVM_HV_VMCALL_WATCH_H

#include <stdbool.h>

struct vcpu;

/* The reason a domain stopped for this gets (xkvm list shows it). */
#define VMCALL_VERDICT_FMT \
    "the guest issues VMCALL hypercalls; this host's KVM (%s) cannot intercept them"

/*
 * On a host without the intercept, start the watch: once a second it looks for vCPUs
 * that have made no exit for VMCALL_WATCH_STALL_S seconds and asks each (a kick) to
 * look at the instruction at its RIP. Costs a healthy guest nothing per exit.
 */
#define VMCALL_WATCH_STALL_S 5
int vmcall_watch_start(void);

/*
 * On the vCPU's own thread, after a stall kick, a triple fault or an internal error:
 * if the host has no intercept and the instruction at RIP is VMCALL or VMMCALL, crash
 * the domain with the verdict and return true.
 */
bool vmcall_verdict_at_rip(struct vcpu *v);

#endif
