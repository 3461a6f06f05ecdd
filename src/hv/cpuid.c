#include "hv/cpuid.h"

#include <stdbool.h>
#include <stdlib.h>
#include <xen/arch-x86/cpuid.h>

#include "hv/hypercall_page.h"

#define XEN_LEAVES 5    /* 0x40000001 .. 0x40000005 */

static void set_leaf(struct kvm_cpuid_entry2 *e, uint32_t fn, uint32_t idx, uint32_t a,
                     uint32_t b, uint32_t c, uint32_t d, bool indexed)
{
    *e = (struct kvm_cpuid_entry2){
        .function = fn, .index = idx, .eax = a, .ebx = b, .ecx = c, .edx = d,
        .flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
    };
}

struct kvm_cpuid2 *cpuid_build(const struct kvm_cpuid2 *sup, unsigned vcpu_id,
                               unsigned domid, uint32_t tsc_khz)
{
    unsigned max = sup->nent + 16;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(c->entries[0]));
    if (!c)
        return NULL;
    unsigned n = 0;
    for (unsigned i = 0; i < sup->nent; i++) {
        struct kvm_cpuid_entry2 e = sup->entries[i];
        /* KVM's own paravirt leaves would shadow Xen's: drop the whole range. */
        if (e.function >= 0x40000000u && e.function < 0x50000000u)
            continue;
        if (e.function == 1) {
            e.ebx = (e.ebx & 0x00ffffffu) | (vcpu_id << 24);  /* initial APIC ID */
            e.ecx |= 1u << 31;                                /* hypervisor present */
        }
        if (e.function == 0xb || e.function == 0x1f)
            e.edx = vcpu_id;                                  /* x2APIC ID */
        c->entries[n++] = e;
    }
    struct kvm_cpuid_entry2 *x = &c->entries[n];
    set_leaf(x++, XEN_CPUID_BASE, 0, XEN_CPUID_BASE + XEN_LEAVES,
             XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, false);
    set_leaf(x++, XEN_CPUID_BASE + 1, 0, (XKVM_XEN_MAJOR << 16) | XKVM_XEN_MINOR, 0, 0, 0, false);
    /* One hypercall page, enabled through this MSR. */
    set_leaf(x++, XEN_CPUID_BASE + 2, 0, 1, XKVM_HYPERCALL_MSR, 0, 0, false);
    /* Time leaf: sub-leaf 0 mode (0: default), sub-leaf 2 the TSC frequency in kHz. */
    set_leaf(x++, XEN_CPUID_BASE + 3, 0, 0, 0, 0, 0, true);
    set_leaf(x++, XEN_CPUID_BASE + 3, 1, 0, 0, 0, 0, true);
    set_leaf(x++, XEN_CPUID_BASE + 3, 2, tsc_khz, 0, 0, 0, true);
    set_leaf(x++, XEN_CPUID_BASE + 4, 0,
             XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT |
             XEN_HVM_CPUID_UPCALL_VECTOR,
             vcpu_id, domid, 0, true);
    set_leaf(x++, XEN_CPUID_BASE + 5, 0, 0, 0, 0, 0, false);
    c->nent = (uint32_t)(x - c->entries);
    return c;
}
