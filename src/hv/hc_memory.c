/* memory_op: the guest's physical memory map and its reservation. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <xen/memory.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/physmap.h"
#include "util/log.h"

/* The 64-bit and 32-bit (compat) layouts of struct xen_add_to_physmap. */
static int read_add_to_physmap(struct hcall *hc, struct xen_add_to_physmap *x)
{
    if (hc->is64)
        return hc_copy_from(hc, x, hc->arg[1], sizeof(*x));
    struct { uint16_t domid, size; uint32_t space, idx, gpfn; } c;
    if (hc_copy_from(hc, &c, hc->arg[1], sizeof(c)))
        return -EFAULT;
    *x = (struct xen_add_to_physmap){ .domid = c.domid, .size = c.size, .space = c.space,
                                      .idx = c.idx, .gpfn = c.gpfn };
    return 0;
}

static long self_or_error(struct hcall *hc, domid_t domid)
{
    if (domid == DOMID_SELF || domid == hc->d->domid)
        return 0;
    return domain_find_any(domid) ? -EPERM : -ESRCH;
}

static long add_to_physmap(struct hcall *hc)
{
    struct xen_add_to_physmap x;
    if (read_add_to_physmap(hc, &x))
        return -EFAULT;
    long rc = self_or_error(hc, x.domid);
    if (rc)
        return rc;
    struct domain *d = hc->d;
    switch (x.space) {
    case XENMAPSPACE_shared_info:
        if (x.idx != 0)
            return -EINVAL;
        return shared_info_map(d, x.gpfn);
    case XENMAPSPACE_grant_table: {
        if (x.idx & XENMAPIDX_grant_table_status)
            return -EINVAL;     /* status frames exist in grant table v2 only */
        uint64_t mfn = gnttab_frame_mfn(d, x.idx);
        if (mfn == INVALID_MFN)
            return -EINVAL;
        rc = physmap_place(d, x.gpfn, mfn, INVALID_GFN);
        if (!rc)
            gnttab_frame_placed(d, x.idx, x.gpfn);
        return rc;
    }
    case XENMAPSPACE_gmfn:
        /* Move the page at gfn idx to gpfn. */
        return physmap_move(d, x.idx, x.gpfn);
    default:
        return -EINVAL;
    }
}

static long memory_map(struct hcall *hc)
{
    /* struct xen_memory_map: nr_entries, then a handle (pointer-sized in each ABI). */
    uint32_t nr;
    uint64_t buf = 0;
    if (hc_copy_from(hc, &nr, hc->arg[1], 4) ||
        hc_copy_from(hc, &buf, hc->arg[1] + (hc->is64 ? 8 : 4), hc->is64 ? 8 : 4))
        return -EFAULT;
    struct hvm_memmap_table_entry map[DOMAIN_MEMMAP_MAX];
    unsigned n = domain_memmap(hc->d, map);
    if (nr < n)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        struct __attribute__((packed)) { uint64_t addr, size; uint32_t type; } e = {
            map[i].addr, map[i].size, map[i].type };
        if (hc_copy_to(hc, buf + i * sizeof(e), &e, sizeof(e)))
            return -EFAULT;
    }
    return hc_copy_to(hc, hc->arg[1], &n, 4) ? -EFAULT : 0;
}

static long reservation(struct hcall *hc, bool maximum)
{
    domid_t domid;
    if (hc_copy_from(hc, &domid, hc->arg[1], sizeof(domid)))
        return -EFAULT;
    long rc = self_or_error(hc, domid);
    if (rc)
        return rc;
    return maximum ? (long)hc->d->ram_frames : (long)mm_count_owner_ram(hc->d);
}

static long maximum_gpfn(struct hcall *hc)
{
    domid_t domid;
    if (hc_copy_from(hc, &domid, hc->arg[1], sizeof(domid)))
        return -EFAULT;
    long rc = self_or_error(hc, domid);
    return rc ? rc : (long)(hc->d->p2m.nr_gfns - 1);
}

/* A domain without vNUMA (all of xkvm's): Xen answers -EOPNOTSUPP. */
static long vnuma_info(struct hcall *hc)
{
    domid_t domid;
    if (hc_copy_from(hc, &domid, hc->arg[1], sizeof(domid)))
        return -EFAULT;
    long rc = self_or_error(hc, domid);
    return rc ? rc : -EOPNOTSUPP;
}

long do_memory_op(struct hcall *hc)
{
    /* The top bits of cmd carry a continuation start extent, as on Xen. */
    switch (hc->arg[0] & 0x3f) {
    case XENMEM_add_to_physmap:
        return add_to_physmap(hc);
    case XENMEM_memory_map:
        return memory_map(hc);
    case XENMEM_current_reservation:
        return reservation(hc, false);
    case XENMEM_maximum_reservation:
        return reservation(hc, true);
    case XENMEM_maximum_gpfn:
        return maximum_gpfn(hc);
    case XENMEM_maximum_ram_page:
        /* Xen: the host's highest machine frame (max_page), to any domain. */
        return (long)host.mm.nr_frames;
    case XENMEM_get_vnumainfo:
        return vnuma_info(hc);
    case XENMEM_machine_memory_map:
    case XENMEM_set_memory_map:
        return -EPERM;      /* control domain only */
    default:
        return hc_unimplemented(hc, "memory_op", (unsigned long)(hc->arg[0] & 0x3f));
    }
}
