/*
 * grant_table_op: the guest's side of grant tables v1 and v2 (xen/grant_table.h), with
 * Xen's status codes. Both the 64-bit and the 32-bit (compat) layouts are read.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <xen/grant_table.h>

#include "hv/domain.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/physmap.h"
#include "util/log.h"

/* Copies done per invocation before a continuation (Xen preempts similarly). */
#define COPY_BATCH 64
/* Bits of cmd Xen reserves for its own continuations (GNTTABOP_cache_flush only). */
#define GNTTABOP_CMD_BITS 12

/*
 * Resolve a domid a domU names in a grant op on a table: itself, or another domain
 * it may not touch (Xen's XSM default: only the control domain may).
 */
static int16_t self_only(struct hcall *hc, domid_t dom)
{
    if (dom == DOMID_SELF || dom == hc->d->domid)
        return GNTST_okay;
    return domain_find_any(dom) ? GNTST_permission_denied : GNTST_bad_domain;
}

/* ---- setup_table, query_size, dump_table ----------------------------------------- */

static long setup_table(struct hcall *hc, uint64_t uop)
{
    /* 64-bit: dom@0 nr_frames@4 status@8 frame_list@16; compat: frame_list@12. */
    struct setup_head { uint16_t dom; uint16_t pad; uint32_t nr_frames; int16_t status; } op;
    if (hc_copy_from(hc, &op, uop, sizeof(op)))
        return -EFAULT;
    uint64_t list = 0;
    if (hc_copy_from(hc, &list, uop + (hc->is64 ? 16 : 12), hc->is64 ? 8 : 4))
        return -EFAULT;
    op.status = self_only(hc, op.dom);
    if (op.status == GNTST_okay && op.nr_frames > gnttab_nr_frames(hc->d) &&
        gnttab_grow(hc->d, op.nr_frames))
        op.status = GNTST_general_error;
    /* For a translated guest Xen answers with gfns (its M2P): ~0 where unmapped. */
    for (uint32_t i = 0; op.status == GNTST_okay && i < op.nr_frames; i++) {
        uint64_t gfn = gnttab_frame_gfn(hc->d, i);
        size_t sz = hc->is64 ? 8 : 4;
        if (gfn == INVALID_GFN)
            gfn = hc->is64 ? UINT64_MAX : UINT32_MAX;
        if (hc_copy_to(hc, list + i * sz, &gfn, sz))
            op.status = GNTST_bad_virt_addr;
    }
    return hc_copy_to(hc, uop + offsetof(struct setup_head, status), &op.status, 2) ? -EFAULT : 0;
}

static long query_size(struct hcall *hc, uint64_t uop)
{
    struct gnttab_query_size op;
    if (hc_copy_from(hc, &op, uop, sizeof(op)))
        return -EFAULT;
    op.status = self_only(hc, op.dom);
    if (op.status == GNTST_okay) {
        op.nr_frames = gnttab_nr_frames(hc->d);
        op.max_nr_frames = GNTTAB_MAX_FRAMES;
    }
    return hc_copy_to(hc, uop, &op, sizeof(op)) ? -EFAULT : 0;
}

static long dump_table(struct hcall *hc, uint64_t uop)
{
    struct gnttab_dump_table op;
    if (hc_copy_from(hc, &op, uop, sizeof(op)))
        return -EFAULT;
    op.status = self_only(hc, op.dom);
    if (op.status == GNTST_okay)
        log_guest(hc->d, "d%u: grant table: version %u, %u frame(s)", hc->d->domid,
                 gnttab_version(hc->d), gnttab_nr_frames(hc->d));
    return hc_copy_to(hc, uop, &op, sizeof(op)) ? -EFAULT : 0;
}

/* ---- versions -------------------------------------------------------------------- */

static long set_version(struct hcall *hc, uint64_t uop)
{
    struct gnttab_set_version op;
    if (hc_copy_from(hc, &op, uop, sizeof(op)))
        return -EFAULT;
    long rc = gnttab_set_version(hc->d, op.version);
    if (rc == -EBUSY)
        log_guest(hc->d, "d%u: grant table version %u -> %u refused: grants in use",
                  hc->d->domid, gnttab_version(hc->d), op.version);
    /* Like Xen, the version in effect is written back whatever the outcome. */
    op.version = gnttab_version(hc->d);
    return hc_copy_to(hc, uop, &op, sizeof(op)) ? -EFAULT : rc;
}

static long get_version(struct hcall *hc, uint64_t uop)
{
    struct gnttab_get_version op;
    if (hc_copy_from(hc, &op, uop, sizeof(op)))
        return -EFAULT;
    switch (self_only(hc, op.dom)) {
    case GNTST_okay: break;
    case GNTST_permission_denied: return -EPERM;
    default: return -ESRCH;
    }
    op.version = gnttab_version(hc->d);
    return hc_copy_to(hc, uop, &op, sizeof(op)) ? -EFAULT : 0;
}

/* Status frames' gfns (v2); the list is of uint64_t in both ABIs. */
static long get_status_frames(struct hcall *hc, uint64_t uop)
{
    /* nr_frames@0 dom@4 status@6 frame_list@8 (a handle: 8 or 4 bytes). */
    struct { uint32_t nr_frames; uint16_t dom; int16_t status; } op;
    uint64_t list = 0;
    if (hc_copy_from(hc, &op, uop, sizeof(op)) ||
        hc_copy_from(hc, &list, uop + 8, hc->is64 ? 8 : 4))
        return -EFAULT;
    op.status = self_only(hc, op.dom);
    if (op.status == GNTST_okay && op.nr_frames > gnttab_nr_status_frames(hc->d))
        op.status = GNTST_general_error;
    for (uint32_t i = 0; op.status == GNTST_okay && i < op.nr_frames; i++) {
        uint64_t gfn = gnttab_status_gfn(hc->d, i);
        if (gfn == INVALID_GFN)
            gfn = UINT64_MAX;
        if (hc_copy_to(hc, list + i * 8ull, &gfn, 8))
            op.status = GNTST_bad_virt_addr;
    }
    return hc_copy_to(hc, uop + 6, &op.status, 2) ? -EFAULT : 0;
}

/* ---- copy ------------------------------------------------------------------------ */

struct copy_ptr {
    uint64_t ref_or_gmfn;
    domid_t domid;
    uint16_t offset;
};

struct copy_op {
    struct copy_ptr src, dst;
    uint16_t len, flags;
};

/* One end of a copy, as it is claimed. */
struct copy_buf {
    struct domain *d;
    bool domain_ref;        /* d came from domain_get */
    bool pinned;            /* a grant of d is pinned */
    bool frame_ref;         /* a frame of the caller is referenced */
    uint32_t ref;
    bool readonly;
    uint64_t mfn;
};

static size_t copy_op_size(const struct hcall *hc)
{
    return hc->is64 ? sizeof(struct gnttab_copy) : 24;
}

static int read_copy_op(struct hcall *hc, uint64_t at, struct copy_op *op)
{
    if (hc->is64) {
        struct gnttab_copy c;
        if (hc_copy_from(hc, &c, at, sizeof(c)))
            return -EFAULT;
        *op = (struct copy_op){
            .src = { c.source.u.gmfn, c.source.domid, c.source.offset },
            .dst = { c.dest.u.gmfn, c.dest.domid, c.dest.offset },
            .len = c.len, .flags = c.flags };
        return 0;
    }
    struct { uint32_t u; uint16_t domid, offset; } p[2];
    uint16_t tail[2];
    if (hc_copy_from(hc, p, at, sizeof(p)) || hc_copy_from(hc, tail, at + 16, sizeof(tail)))
        return -EFAULT;
    *op = (struct copy_op){ .src = { p[0].u, p[0].domid, p[0].offset },
                            .dst = { p[1].u, p[1].domid, p[1].offset },
                            .len = tail[0], .flags = tail[1] };
    return 0;
}

static int16_t lock_domain(struct hcall *hc, const struct copy_ptr *p, bool is_gref,
                           struct copy_buf *b)
{
    if (p->domid == DOMID_SELF || p->domid == hc->d->domid) {
        b->d = hc->d;
    } else {
        b->d = domain_get_peer(p->domid);
        if (!b->d)
            return GNTST_bad_domain;
        b->domain_ref = true;
    }
    /* Only the caller's own frames may be named by gmfn (Xen 4.15 and later). */
    return !is_gref && b->d != hc->d ? GNTST_permission_denied : GNTST_okay;
}

static int16_t claim(struct hcall *hc, const struct copy_ptr *p, bool is_gref,
                     bool readonly, struct copy_buf *b)
{
    b->readonly = readonly;
    if (is_gref) {
        if (p->ref_or_gmfn > UINT32_MAX)
            return GNTST_bad_gntref;
        int16_t rc = (int16_t)gnttab_acquire(b->d, (uint32_t)p->ref_or_gmfn, hc->d->domid,
                                             readonly, &b->mfn);
        if (rc == GNTST_okay) {
            b->pinned = true;
            b->ref = (uint32_t)p->ref_or_gmfn;
        }
        return rc;
    }
    uint64_t mfn = p2m_lookup(&b->d->p2m, p->ref_or_gmfn);
    if (mfn == INVALID_MFN ||
        mm_frame_get(host_mm(), mfn, b->d->domid, (1u << FRAME_RAM) | (1u << FRAME_SPECIAL)))
        return GNTST_bad_page;
    b->frame_ref = true;
    b->mfn = mfn;
    return GNTST_okay;
}

static void release(struct copy_buf *b)
{
    if (b->pinned)
        gnttab_release(b->d, b->ref, b->readonly);
    if (b->frame_ref)
        mm_frame_put(host_mm(), b->mfn);
    if (b->domain_ref)
        domain_put(b->d);
    *b = (struct copy_buf){ 0 };
}

/* One GNTTABOP_copy, checked in Xen's order; its status. */
static int16_t copy_one(struct hcall *hc, const struct copy_op *op)
{
    struct copy_buf src = { 0 }, dst = { 0 };
    bool src_gref = op->flags & GNTCOPY_source_gref, dst_gref = op->flags & GNTCOPY_dest_gref;
    int16_t rc = lock_domain(hc, &op->src, src_gref, &src);
    if (rc == GNTST_okay)
        rc = lock_domain(hc, &op->dst, dst_gref, &dst);
    if (rc == GNTST_okay)
        rc = claim(hc, &op->src, src_gref, true, &src);
    if (rc == GNTST_okay)
        rc = claim(hc, &op->dst, dst_gref, false, &dst);
    if (rc == GNTST_okay && ((unsigned)op->src.offset + op->len > XKVM_PAGE_SIZE ||
                             (unsigned)op->dst.offset + op->len > XKVM_PAGE_SIZE))
        rc = GNTST_bad_copy_arg;
    if (rc == GNTST_okay)
        memmove((uint8_t *)mm_frame_ptr(host_mm(), dst.mfn) + op->dst.offset,
                (uint8_t *)mm_frame_ptr(host_mm(), src.mfn) + op->src.offset, op->len);
    release(&dst);
    release(&src);
    return rc;
}

/* After COPY_BATCH ops, the rest (from op i) in a continuation, as Xen preempts. */
static bool batch_done(struct hcall *hc, uint64_t uop, uint32_t i, size_t sz, uint32_t count)
{
    if (i < COPY_BATCH)
        return false;
    hc->arg[1] = uop + i * sz;
    hc->arg[2] = count - i;
    hc->continuation = true;
    return true;
}

static long grant_copy(struct hcall *hc, uint64_t uop, uint32_t count)
{
    size_t sz = copy_op_size(hc);
    size_t status_at = hc->is64 ? offsetof(struct gnttab_copy, status) : 20;
    for (uint32_t i = 0; i < count; i++) {
        if (batch_done(hc, uop, i, sz, count))
            return 0;
        struct copy_op op;
        if (read_copy_op(hc, uop + i * sz, &op))
            return -EFAULT;
        int16_t status = copy_one(hc, &op);
        if (hc_copy_to(hc, uop + i * sz + status_at, &status, sizeof(status)))
            return -EFAULT;
    }
    return 0;
}

/* ---- map_grant_ref, unmap_grant_ref (HVM/PVH: host_addr is a gpa) ------------------ */

/*
 * One map, checked in Xen's order (map_grant_ref): flags, the HVM refusals, the
 * domain, the maptrack handle, the ref, the entry, the frame, the p2m. The layout is
 * the same for 64-bit and compat callers.
 */
static int16_t map_one(struct hcall *hc, struct gnttab_map_grant_ref *op)
{
    if (!(op->flags & (GNTMAP_device_map | GNTMAP_host_map)))
        return GNTST_bad_gntref;
    /* A translated guest has no device mappings, PTE or application maps. */
    if (op->flags & (GNTMAP_device_map | GNTMAP_application_map | GNTMAP_contains_pte))
        return GNTST_general_error;
    struct domain *rd = op->dom == DOMID_SELF || op->dom == hc->d->domid ? hc->d
                        : domain_get_peer(op->dom);
    if (!rd)
        return GNTST_bad_domain;
    uint64_t gfn = op->host_addr >> XKVM_PAGE_SHIFT;
    int16_t rc;
    if (gfn >= (GUEST_LOWMEM_END >> XKVM_PAGE_SHIFT) &&
        gfn < (GUEST_HIGHMEM_START >> XKVM_PAGE_SHIFT))
        rc = GNTST_general_error;       /* the MMIO hole is the device model's */
    else
        rc = (int16_t)gnttab_map_foreign(hc->d, rd, op->ref, gfn,
                                         op->flags & GNTMAP_readonly, &op->handle);
    if (rd != hc->d)
        domain_put(rd);
    return rc;
}

static long map_grant_ref(struct hcall *hc, uint64_t uop, uint32_t count)
{
    const size_t sz = sizeof(struct gnttab_map_grant_ref);
    for (uint32_t i = 0; i < count; i++) {
        if (batch_done(hc, uop, i, sz, count))
            return 0;
        struct gnttab_map_grant_ref op;
        if (hc_copy_from(hc, &op, uop + i * sz, sz))
            return -EFAULT;
        op.status = map_one(hc, &op);
        op.dev_bus_addr = 0;
        /* status, handle and dev_bus_addr go back (offsets 18..31). */
        if (hc_copy_to(hc, uop + i * sz + offsetof(struct gnttab_map_grant_ref, status),
                       &op.status, sz - offsetof(struct gnttab_map_grant_ref, status))) {
            if (op.status == GNTST_okay)        /* the guest cannot learn its handle */
                gnttab_unmap_foreign(hc->d, op.handle, INVALID_GFN);
            return -EFAULT;
        }
    }
    return 0;
}

static long unmap_grant_ref(struct hcall *hc, uint64_t uop, uint32_t count)
{
    const size_t sz = sizeof(struct gnttab_unmap_grant_ref);
    for (uint32_t i = 0; i < count; i++) {
        if (batch_done(hc, uop, i, sz, count))
            return 0;
        struct gnttab_unmap_grant_ref op;
        if (hc_copy_from(hc, &op, uop + i * sz, sz))
            return -EFAULT;
        /* Xen: host_addr 0 (no host mapping named) unmaps by handle alone. */
        op.status = (int16_t)gnttab_unmap_foreign(hc->d, op.handle, op.host_addr ?
                                                  op.host_addr >> XKVM_PAGE_SHIFT : INVALID_GFN);
        if (hc_copy_to(hc, uop + i * sz + offsetof(struct gnttab_unmap_grant_ref, status),
                       &op.status, sizeof(op.status)))
            return -EFAULT;
    }
    return 0;
}

long do_grant_table_op(struct hcall *hc)
{
    uint32_t cmd = (uint32_t)hc->arg[0];
    uint64_t uop = hc->arg[1];
    uint32_t count = (uint32_t)hc->arg[2];
    if ((int32_t)count < 0 || (cmd >> GNTTABOP_CMD_BITS))
        return -EINVAL;
    switch (cmd) {
    case GNTTABOP_copy:
        return grant_copy(hc, uop, count);
    case GNTTABOP_map_grant_ref:
        return map_grant_ref(hc, uop, count);
    case GNTTABOP_unmap_grant_ref:
        return unmap_grant_ref(hc, uop, count);
    case GNTTABOP_setup_table:
    case GNTTABOP_query_size:
    case GNTTABOP_dump_table:
    case GNTTABOP_set_version:
    case GNTTABOP_get_version:
    case GNTTABOP_get_status_frames:
        if (count != 1)
            return -EINVAL;
        break;
    default:
        /*
         * transfer (PV only),
         * unmap_and_replace, swap_grant_ref and cache_flush.
         */
        return hc_unimplemented(hc, "grant_table_op", cmd);
    }
    switch (cmd) {
    case GNTTABOP_setup_table:  return setup_table(hc, uop);
    case GNTTABOP_query_size:   return query_size(hc, uop);
    case GNTTABOP_dump_table:   return dump_table(hc, uop);
    case GNTTABOP_set_version:  return set_version(hc, uop);
    case GNTTABOP_get_status_frames: return get_status_frames(hc, uop);
    default:                    return get_version(hc, uop);
    }
}
