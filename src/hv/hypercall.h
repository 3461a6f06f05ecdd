/*
 * The hypercall transport. A guest enables the hypercall page by writing its address
 * to the MSR named in CPUID leaf 0x40000002; xkvmd fills it (hypercall_page.h). The
 * stub's port write (or, where KVM intercepts it, VMCALL/VMMCALL: KVM_EXIT_XEN) exits
 * to xkvmd, which reads the arguments from the guest's registers (64-bit or 32-bit
 * ABI), runs the handler, and puts the result in RAX.
 *
 * A handler that has more work than it should do at once asks for a continuation:
 * the guest re-executes the `out` (or VMCALL) with updated arguments (as Xen re-executes the
 * hypercall instruction), so a vCPU can always be paused between two pieces.
 */
#ifndef XKVM_HV_HYPERCALL_H
#define XKVM_HV_HYPERCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/guest_access.h"
#include "hv/hypercall_page.h"

#define XKVM_DEBUGCON_PORT    0xE9      /* Xen's HVM debug console port */

struct vcpu;
struct domain;

struct hcall {
    struct vcpu *v;
    struct domain *d;
    unsigned nr;
    uint64_t arg[6];
    bool is64;                  /* 64-bit ABI (long mode, CS.L) */
    struct guest_paging paging;
    struct gphys gphys;
    bool continuation;          /* re-execute with arg[] as updated by the handler */
};

typedef long (*hypercall_fn)(struct hcall *hc);

/*
 * The hypercall number in RAX: in 64-bit mode all of it, as Xen reads it (a number
 * past 32 bits is no hypercall: -ENOSYS, never the one its low half names), in 32-bit
 * mode EAX.
 */
#define HYPERCALL_NR_INVALID (~0u)
static inline unsigned hypercall_nr(uint64_t rax, bool is64)
{
    if (!is64)
        return (uint32_t)rax;
    return rax > UINT32_MAX - 1 ? HYPERCALL_NR_INVALID : (unsigned)rax;
}

/* Run hypercall hc->nr; returns the value for RAX. */
long hypercall_dispatch(struct hcall *hc);

/* Fill the page at guest-physical `gpa` with the stubs. 0 or -EFAULT. */
int hypercall_page_fill(struct domain *d, uint64_t gpa);

/* Copy hypercall arguments in and out of the guest's linear memory. 0 or -EFAULT. */
int hc_copy_from(struct hcall *hc, void *dst, uint64_t gva, size_t len);
int hc_copy_to(struct hcall *hc, uint64_t gva, const void *src, size_t len);

/*
 * A hypercall or sub-op xkvm does not implement: logged once per domain (family: the
 * hypercall's name, cmd: the sub-op; family NULL and cmd HC_NO_SUBOP for a hypercall
 * missing from the table). Returns -ENOSYS.
 */
#define HC_NO_SUBOP (~0ul)
long hc_unimplemented(struct hcall *hc, const char *family, unsigned long cmd);

/* Handlers, one file per hypercall family. */
long do_console_io(struct hcall *hc);
long do_xen_version(struct hcall *hc);
long do_sched_op(struct hcall *hc);
long do_hvm_op(struct hcall *hc);
long do_altp2m_op(struct hcall *hc);        /* hc_altp2m.c: HVMOP_altp2m */
long do_memory_op(struct hcall *hc);
long do_set_timer_op(struct hcall *hc);     /* hc_vcpu.c: the vCPU's singleshot timer */
long do_vm_assist(struct hcall *hc);        /* hc_sched.c */

#endif
