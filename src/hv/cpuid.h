/* The CPUID a guest sees: the host's supported leaves plus Xen's at 0x40000000. */
#ifndef XKVM_HV_CPUID_H
#define XKVM_HV_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

#define XEN_CPUID_BASE 0x40000000u

/* Xen version our ABI follows (xen_version, CPUID leaf 0x40000001). */
#define XKVM_XEN_MAJOR 4
#define XKVM_XEN_MINOR 17

/*
 * The CPUID table for one vCPU: `supported` (KVM_GET_SUPPORTED_CPUID) with KVM's own
 * paravirt leaves replaced by Xen's, and the vCPU's APIC ID filled in. Returns a
 * malloc'd table for KVM_SET_CPUID2, or NULL.
 */
struct kvm_cpuid2 *cpuid_build(const struct kvm_cpuid2 *supported, unsigned vcpu_id,
                               unsigned domid, uint32_t tsc_khz);

#endif
