/*
 * memory_op: the guest's physical memory map and its reservation (decoded here; the
 * changes are reservation.c's and physmap.c's).
 */
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
#include "hv/reservation.h"
#include "util/log.h"

/* cmd's low bits are the sub-op, the rest a continuation's start extent (Xen's). */
#define MEMOP_EXTENT_SHIFT 6
#define MEMOP_CMD_MASK     ((1u << MEMOP_EXTENT_SHIFT) - 1)
/* Pages changed per invocation before a continuation (Xen preempts similarly). */
#define MEMOP_PAGE_BUDGET  256

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
        /* Status frames exist in v2 only; in v1 the bit makes idx out of range. */
        bool status = gnttab_version(d) == 2 && (x.idx & XENMAPIDX_grant_table_status);
        uint64_t idx = status ? x.idx & ~(uint64_t)XENMAPIDX_grant_table_status : x.idx;
        uint64_t mfn = status ? gnttab_status_mfn(d, idx) : gnttab_frame_mfn(d, idx);
        if (mfn == INVALID_MFN)
            return -EINVAL;
        rc = physmap_place(d, x.gpfn, mfn, INVALID_GFN);
        if (!rc && status)
            gnttab_status_placed(d, idx, x.gpfn);
        else if (!rc)
            gnttab_frame_placed(d, idx, x.gpfn);
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
    if (hc->arg[0] >> MEMOP_EXTENT_SHIFT)
        return -EINVAL;
    if (hc_copy_from(hc, &domid, hc->arg[1], sizeof(domid)))
        return -EFAULT;
    long rc = self_or_error(hc, domid);
    if (rc)
        return rc;
    return maximum ? (long)reservation_maximum(hc->d) : (long)reservation_current(hc->d);
}

/* struct xen_memory_reservation in the 64-bit and the 32-bit (compat) layouts. */
struct memop_args {
    uint64_t extent_list;       /* guest-linear; unused by increase_reservation */
    uint64_t nr_extents;
    uint32_t extent_order, mem_flags;
    domid_t domid;
};

static int read_reservation(struct hcall *hc, struct memop_args *a)
{
    if (hc->is64) {
        struct { uint64_t list, nr; uint32_t order, flags; uint16_t domid; } r;
        _Static_assert(sizeof(r) == sizeof(struct xen_memory_reservation), "its layout");
        if (hc_copy_from(hc, &r, hc->arg[1], sizeof(r)))
            return -EFAULT;
        *a = (struct memop_args){ .extent_list = r.list, .nr_extents = r.nr,
                                  .extent_order = r.order, .mem_flags = r.flags,
                                  .domid = r.domid };
        return 0;
    }
    struct { uint32_t list, nr, order, flags; uint16_t domid; } c;
    if (hc_copy_from(hc, &c, hc->arg[1], sizeof(c)))
        return -EFAULT;
    *a = (struct memop_args){ .extent_list = c.list, .nr_extents = c.nr,
                              .extent_order = c.order, .mem_flags = c.flags,
                              .domid = c.domid };
    return 0;
}

/* Extent i of the guest's list (xen_pfn_t: 8 bytes, 4 in the compat ABI). */
static int read_extent(struct hcall *hc, const struct memop_args *a, uint64_t i,
                       uint64_t *gfn)
{
    if (hc->is64)
        return hc_copy_from(hc, gfn, a->extent_list + i * 8, 8);
    uint32_t g;
    if (hc_copy_from(hc, &g, a->extent_list + i * 4, 4))
        return -EFAULT;
    *gfn = g;
    return 0;
}

/* One extent of decrease_reservation: its pages in order, stopping at the first refusal. */
static int decrease_extent(struct reservation *r, uint64_t gfn, unsigned order)
{
    for (uint64_t j = 0; j < (1ull << order); j++) {
        int rc = reservation_remove_page(r, gfn + j);
        if (rc)
            return rc;
    }
    return 0;
}

/*
 * Extents [start, nr_extents), the op applied to each until one fails; a continuation
 * after MEMOP_PAGE_BUDGET pages. Returns the extents done (from 0), as Xen does.
 */
static long run_extents(struct hcall *hc, unsigned op, const struct memop_args *a,
                        uint64_t start)
{
    struct reservation r;
    uint64_t i = start, pages = 0, gfn = 0;
    reservation_begin(&r, hc->d);
    for (; i < a->nr_extents; i++) {
        if (i != start && pages >= MEMOP_PAGE_BUDGET) {
            hc->arg[0] = op | (i << MEMOP_EXTENT_SHIFT);
            hc->continuation = true;
            break;
        }
        /* increase_reservation's list is for guests without a p2m: not read here. */
        if (op != XENMEM_increase_reservation && read_extent(hc, a, i, &gfn))
            break;
        int rc = op == XENMEM_decrease_reservation ? decrease_extent(&r, gfn, a->extent_order)
               : op == XENMEM_populate_physmap ? reservation_populate(&r, gfn, a->extent_order)
               : reservation_increase(&r, a->extent_order);
        if (rc)
            break;
        pages += 1ull << a->extent_order;
    }
    reservation_end(&r);
    return (long)i;
}

/*
 * decrease_reservation, populate_physmap, increase_reservation. As on Xen, the answer
 * is the number of extents done: a refusal of the whole request is the extent it was
 * asked to start from, never an error code.
 */
static long change_reservation(struct hcall *hc, unsigned op)
{
    uint64_t start = hc->arg[0] >> MEMOP_EXTENT_SHIFT;
    struct memop_args a;
    if (read_reservation(hc, &a))
        return (long)start;
    /* Too many to encode a continuation of; nothing left to do; another domain. */
    if (a.nr_extents > (UINT32_MAX >> MEMOP_EXTENT_SHIFT) || start >= a.nr_extents ||
        self_or_error(hc, a.domid))
        return (long)start;
    /* An address width that leaves no page (Xen: -EINVAL, answered as the start). */
    unsigned bits = XENMEMF_get_address_bits(a.mem_flags);
    if (bits && bits <= XKVM_PAGE_SHIFT)
        return (long)start;
    /* A guest may not mark its own memory populate-on-demand; orders past a domU's. */
    if ((op == XENMEM_populate_physmap && (a.mem_flags & XENMEMF_populate_on_demand)) ||
        a.extent_order > RESERVATION_MAX_ORDER)
        return (long)start;
    return run_extents(hc, op, &a, start);
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
    switch (hc->arg[0] & MEMOP_CMD_MASK) {
    case XENMEM_add_to_physmap:
        return add_to_physmap(hc);
    case XENMEM_memory_map:
        return memory_map(hc);
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap:
    case XENMEM_increase_reservation:
        return change_reservation(hc, (unsigned)(hc->arg[0] & MEMOP_CMD_MASK));
    case XENMEM_get_sharing_freed_pages:
    case XENMEM_get_sharing_shared_pages:
        return 0;           /* Xen without pages shared between domains */
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
        return hc_unimplemented(hc, "memory_op", (unsigned long)(hc->arg[0] & MEMOP_CMD_MASK));
    }
}
