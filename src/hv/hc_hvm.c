/* hvm_op: HVM parameters, with Xen's rules on what a guest may read and write. */
#include <errno.h>
#include <stdint.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/hypercall.h"

/* Parameters a guest may set on itself (Xen's hvm_allow_set_param). */
static bool guest_may_set(uint32_t index)
{
    switch (index) {
    case HVM_PARAM_CALLBACK_IRQ:
    case HVM_PARAM_VM86_TSS:
    case HVM_PARAM_VM86_TSS_SIZED:
    case HVM_PARAM_ACPI_IOPORTS_LOCATION:
    case HVM_PARAM_VM_GENERATION_ID_ADDR:
    case HVM_PARAM_STORE_EVTCHN:
    case HVM_PARAM_CONSOLE_EVTCHN:
    case HVM_PARAM_X87_FIP_WIDTH:
        return true;
    default:
        return false;
    }
}

/* Parameters a guest may read on itself (Xen's hvm_allow_get_param). */
static bool guest_may_get(uint32_t index)
{
    switch (index) {
    case HVM_PARAM_CALLBACK_IRQ:
    case HVM_PARAM_VM86_TSS:
    case HVM_PARAM_VM86_TSS_SIZED:
    case HVM_PARAM_ACPI_IOPORTS_LOCATION:
    case HVM_PARAM_VM_GENERATION_ID_ADDR:
    case HVM_PARAM_STORE_PFN:
    case HVM_PARAM_STORE_EVTCHN:
    case HVM_PARAM_CONSOLE_PFN:
    case HVM_PARAM_CONSOLE_EVTCHN:
    case HVM_PARAM_ALTP2M:
    case HVM_PARAM_X87_FIP_WIDTH:
        return true;
    default:
        return false;
    }
}

/* Retired parameters (PAE_ENABLED, DM_DOMAIN, MEMORY_EVENT_*): the header hides
 * their names from new code, so they are listed by number. */
static bool deprecated_param(uint32_t index)
{
    switch (index) {
    case 4: case 13: case 20: case 21: case 22: case 23: case 25: case 30:
        return true;
    default:
        return false;
    }
}

static long hvm_param(struct hcall *hc, bool set)
{
    struct xen_hvm_param p;
    if (hc_copy_from(hc, &p, hc->arg[1], sizeof(p)))
        return -EFAULT;
    if (p.domid != DOMID_SELF && p.domid != hc->d->domid)
        return domain_find_any(p.domid) ? -EPERM : -ESRCH;
    if (p.index >= HVM_NR_PARAMS)
        return -EINVAL;
    if (set) {
        if (deprecated_param(p.index))
            return -EPERM;
        if (!guest_may_set(p.index))
            return -EPERM;
        hc->d->hvm_params[p.index] = p.value;
        return 0;
    }
    if (deprecated_param(p.index))
        return -ENODATA;
    if (!guest_may_get(p.index))
        return -EPERM;
    p.value = hc->d->hvm_params[p.index];
    return hc_copy_to(hc, hc->arg[1], &p, sizeof(p)) ? -EFAULT : 0;
}

/*
 * A guest says a page table is about to die: only shadow paging cares, so Xen (and
 * xkvm, which has none) just checks the argument and accepts it. On oneself only.
 */
static long pagetable_dying(struct hcall *hc)
{
    struct xen_hvm_pagetable_dying a;
    if (hc_copy_from(hc, &a, hc->arg[1], sizeof(a)))
        return -EFAULT;
    if (a.domid != DOMID_SELF && a.domid != hc->d->domid)
        return domain_find_any(a.domid) ? -EINVAL : -ESRCH;
    return 0;
}

long do_hvm_op(struct hcall *hc)
{
    switch (hc->arg[0]) {
    case HVMOP_set_param:
        return hvm_param(hc, true);
    case HVMOP_get_param:
        return hvm_param(hc, false);
    case HVMOP_set_evtchn_upcall_vector:
        return do_set_evtchn_upcall_vector(hc);
    case HVMOP_pagetable_dying:
        return pagetable_dying(hc);
    case HVMOP_altp2m:
        return do_altp2m_op(hc);
    default:
        return hc_unimplemented(hc, "hvm_op", (unsigned long)hc->arg[0]);
    }
}
