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

static uint32_t feature_submap(unsigned idx)
{
    if (idx != 0)
        return 0;
    return (1u << XENFEAT_auto_translated_physmap) | (1u << XENFEAT_supervisor_mode_kernel);
}

long do_xen_version(struct hcall *hc)
{
    uint64_t arg = hc->arg[1];
    switch (hc->arg[0]) {
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
        fi.submap = feature_submap(fi.submap_idx);
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
        return -ENOSYS;
    }
}
