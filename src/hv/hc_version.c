/* xen_version: the Xen version and features xkvm presents. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <xen/features.h>
#include <xen/version.h>
#include <xen/xen.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/hypercall.h"

/*
 * What Xen 4.17 offers an HVM/PVH domU (xen/common/kernel.c): a translated guest with
 * writable page tables, pvclock safe to use, the callback vector (HVM_PARAM_CALLBACK_IRQ
 * type vector: upcall.c), vNUMA queries (XENMEM_get_vnumainfo answers -EOPNOTSUPP
 * without vNUMA, as there), not direct-mapped. No hvm_pirqs: there are no physical
 * IRQs here. Any other index: -EINVAL, as on Xen.
 */
static int feature_submap(unsigned idx, uint32_t *submap)
{
    if (idx != 0)
        return -EINVAL;
    *submap = (1u << XENFEAT_writable_page_tables) | (1u << XENFEAT_auto_translated_physmap) |
              (1u << XENFEAT_hvm_callback_vector) | (1u << XENFEAT_hvm_safe_pvclock) |
              (1u << XENFEAT_memory_op_vnode_supported) | (1u << XENFEAT_not_direct_mapped);
    return 0;
}

long do_xen_version(struct hcall *hc)
{
    uint64_t arg = hc->arg[1];
    switch ((uint32_t)hc->arg[0]) {    /* Xen: int cmd */
    case XENVER_version:
        return (XKVM_XEN_MAJOR << 16) | XKVM_XEN_MINOR;
    case XENVER_extraversion: {
        xen_extraversion_t ev = { 0 };
        strncpy(ev, "-xkvm", sizeof(ev) - 1);
        return hc_copy_to(hc, arg, ev, sizeof(ev)) ? -EFAULT : 0;
    }
    case XENVER_compile_info: {
        struct xen_compile_info ci;
        memset(&ci, 0, sizeof(ci));
        strncpy(ci.compiler, "xkvm", sizeof(ci.compiler) - 1);
        strncpy(ci.compile_by, "xkvm", sizeof(ci.compile_by) - 1);
        strncpy(ci.compile_domain, "xkvm", sizeof(ci.compile_domain) - 1);
        strncpy(ci.compile_date, XKVM_VERSION_STRING, sizeof(ci.compile_date) - 1);
        return hc_copy_to(hc, arg, &ci, sizeof(ci)) ? -EFAULT : 0;
    }
    case XENVER_capabilities: {
        xen_capabilities_info_t caps = { 0 };
        strncpy(caps, "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64", sizeof(caps) - 1);
        return hc_copy_to(hc, arg, caps, sizeof(caps)) ? -EFAULT : 0;
    }
    case XENVER_changeset: {
        xen_changeset_info_t cs = { 0 };
        strncpy(cs, "xkvm " XKVM_VERSION_STRING, sizeof(cs) - 1);
        return hc_copy_to(hc, arg, cs, sizeof(cs)) ? -EFAULT : 0;
    }
    case XENVER_platform_parameters: {
        /* No hypervisor hole in an HVM guest's address space. */
        uint64_t virt_start = 0;
        size_t len = hc->is64 ? 8 : 4;
        return hc_copy_to(hc, arg, &virt_start, len) ? -EFAULT : 0;
    }
    case XENVER_get_features: {
        struct xen_feature_info fi;
        if (hc_copy_from(hc, &fi, arg, sizeof(fi)))
            return -EFAULT;
        if (feature_submap(fi.submap_idx, &fi.submap))
            return -EINVAL;
        return hc_copy_to(hc, arg, &fi, sizeof(fi)) ? -EFAULT : 0;
    }
    case XENVER_pagesize:
        return XKVM_PAGE_SIZE;
    case XENVER_guest_handle: {
        xen_domain_handle_t handle = { 0 };
        memcpy(handle, &hc->d->domid, sizeof(hc->d->domid));
        return hc_copy_to(hc, arg, handle, sizeof(handle)) ? -EFAULT : 0;
    }
    case XENVER_commandline:
    case XENVER_build_id:
        return -EPERM;      /* control domain only */
    default:
        return hc_unimplemented(hc, "xen_version", (unsigned long)hc->arg[0]);
    }
}
