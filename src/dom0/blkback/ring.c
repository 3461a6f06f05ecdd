/* Request parsing and ring processing: see ring.h. */
#include "ring.h"

#include <errno.h>
#include <string.h>

int blk_parse(const union blkif_sring_entry *e, const struct blk_limits *lim,
              struct blk_req *r)
{
    const struct blkif_request *rw = &e->req;
    r->id = rw->id;                 /* at the same offset in every request layout */
    r->rsp_op = rw->operation;
    r->op = rw->operation;
    r->nr_segs = 0;
    r->nr_indirect = 0;
    r->sector = 0;
    r->nr_sectors = 0;

    switch (rw->operation) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
    case BLKIF_OP_WRITE_BARRIER:
    case BLKIF_OP_FLUSH_DISKCACHE:
        r->nr_segs = rw->nr_segments;
        r->sector = rw->sector_number;
        if (r->nr_segs > BLKIF_MAX_SEGMENTS_PER_REQUEST)
            return BLKIF_RSP_ERROR;
        /* Only a flush (or barrier) may carry no data. */
        if (r->nr_segs == 0 && (r->op == BLKIF_OP_READ || r->op == BLKIF_OP_WRITE))
            return BLKIF_RSP_ERROR;
        for (unsigned i = 0; i < r->nr_segs; i++) {
            r->segs[i].gref = rw->seg[i].gref;
            r->segs[i].first = rw->seg[i].first_sect;
            r->segs[i].last = rw->seg[i].last_sect;
        }
        if (lim->readonly && r->op != BLKIF_OP_READ &&
            !(r->op == BLKIF_OP_FLUSH_DISKCACHE && r->nr_segs == 0))
            return BLKIF_RSP_ERROR;
        return blk_check_segs(r, lim);
    case BLKIF_OP_INDIRECT: {
        const struct blkif_request_indirect *in = (const void *)e;
        r->op = in->indirect_op;
        r->rsp_op = in->indirect_op;
        r->nr_segs = in->nr_segments;
        r->sector = in->sector_number;
        if (in->indirect_op != BLKIF_OP_READ && in->indirect_op != BLKIF_OP_WRITE)
            return BLKIF_RSP_ERROR;
        if (r->nr_segs == 0 || r->nr_segs > lim->max_indirect_segs ||
            r->nr_segs > BLK_MAX_SEGS)
            return BLKIF_RSP_ERROR;
        if (lim->readonly && r->op != BLKIF_OP_READ)
            return BLKIF_RSP_ERROR;
        r->nr_indirect = (uint8_t)((r->nr_segs + BLK_SEGS_PER_INDIRECT - 1) /
                                   BLK_SEGS_PER_INDIRECT);
        if (r->nr_indirect > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST)
            return BLKIF_RSP_ERROR;
        memcpy(r->indirect, in->indirect_grefs, sizeof(r->indirect));
        return BLKIF_RSP_OKAY;
    }
    case BLKIF_OP_DISCARD: {
        const struct blkif_request_discard *d = (const void *)e;
        r->sector = d->sector_number;
        r->nr_sectors = d->nr_sectors;
        if (!lim->discard || lim->readonly)
            return BLKIF_RSP_EOPNOTSUPP;
        if (r->sector > lim->sectors || r->nr_sectors > lim->sectors - r->sector)
            return BLKIF_RSP_ERROR;
        return BLKIF_RSP_OKAY;
    }
    default:
        return BLKIF_RSP_EOPNOTSUPP;
    }
}

void blk_load_indirect(struct blk_req *r, unsigned idx, const void *page)
{
    unsigned base = idx * (unsigned)BLK_SEGS_PER_INDIRECT;
    if (base >= r->nr_segs)
        return;
    unsigned n = r->nr_segs - base;
    if (n > BLK_SEGS_PER_INDIRECT)
        n = BLK_SEGS_PER_INDIRECT;
    /* One copy out of the guest's page; only the copy is ever looked at. */
    struct blkif_request_segment segs[BLK_SEGS_PER_INDIRECT];
    memcpy(segs, page, n * sizeof(segs[0]));
    for (unsigned i = 0; i < n; i++) {
        r->segs[base + i].gref = segs[i].gref;
        r->segs[base + i].first = segs[i].first_sect;
        r->segs[base + i].last = segs[i].last_sect;
    }
}

int blk_check_segs(const struct blk_req *r, const struct blk_limits *lim)
{
    /*
     * No data, no range: Linux's block layer leaves an empty flush's sector at
     * (sector_t)-1, which blkfront passes on (Xen's blkback does not look at it).
     */
    if (r->nr_segs == 0)
        return BLKIF_RSP_OKAY;
    uint64_t total = 0;
    for (unsigned i = 0; i < r->nr_segs; i++) {
        if (r->segs[i].first > r->segs[i].last ||
            r->segs[i].last >= BLK_SECTORS_PER_PAGE)
            return BLKIF_RSP_ERROR;
        total += (uint64_t)(r->segs[i].last - r->segs[i].first + 1);
    }
    if (r->sector > lim->sectors || total > lim->sectors - r->sector)
        return BLKIF_RSP_ERROR;
    return BLKIF_RSP_OKAY;
}

static void unmap_all(struct blk_work *w, unsigned n, const struct blk_ops *ops)
{
    for (unsigned i = 0; i < n; i++)
        ops->unmap(ops->ctx, w->pages[i], w->cookies[i]);
}

/* Map the data pages, read or write them at the request's sector, unmap. */
static int do_rw(struct blk_work *w, bool write, const struct blk_ops *ops)
{
    struct blk_req *r = &w->req;
    unsigned mapped = 0;
    int status = BLKIF_RSP_OKAY;
    for (; mapped < r->nr_segs; mapped++) {
        /* A write only reads the guest's pages: map them read-only. */
        void *p = ops->map(ops->ctx, r->segs[mapped].gref, write, &w->cookies[mapped]);
        if (!p) {
            status = BLKIF_RSP_ERROR;
            break;
        }
        w->pages[mapped] = p;
        w->iov[mapped].iov_base = (uint8_t *)p + r->segs[mapped].first * BLK_SECTOR_SIZE;
        w->iov[mapped].iov_len = (size_t)(r->segs[mapped].last - r->segs[mapped].first + 1) *
                                 BLK_SECTOR_SIZE;
    }
    if (status == BLKIF_RSP_OKAY && r->nr_segs) {
        if (ops->io(ops->ctx, write, w->iov, r->nr_segs, r->sector * BLK_SECTOR_SIZE) < 0) {
            status = BLKIF_RSP_ERROR;
        } else {
            for (unsigned i = 0; i < r->nr_segs; i++)
                w->bytes += w->iov[i].iov_len;
        }
    }
    unmap_all(w, mapped, ops);
    return status;
}

int blk_execute(struct blk_work *w, const struct blk_limits *lim, const struct blk_ops *ops)
{
    struct blk_req *r = &w->req;
    for (unsigned i = 0; i < r->nr_indirect; i++) {
        uint64_t cookie;
        const void *p = ops->map(ops->ctx, r->indirect[i], true, &cookie);
        if (!p)
            return BLKIF_RSP_ERROR;
        blk_load_indirect(r, i, p);
        ops->unmap(ops->ctx, (void *)p, cookie);
    }
    if (r->nr_indirect) {
        int rc = blk_check_segs(r, lim);
        if (rc != BLKIF_RSP_OKAY)
            return rc;
    }
    switch (r->op) {
    case BLKIF_OP_READ:
        return do_rw(w, false, ops);
    case BLKIF_OP_WRITE:
        return do_rw(w, true, ops);
    case BLKIF_OP_FLUSH_DISKCACHE:
        /* A flush with data (as Linux's blkfront never sends) is flush, then write. */
        if (ops->flush(ops->ctx) < 0)
            return BLKIF_RSP_ERROR;
        return r->nr_segs ? do_rw(w, true, ops) : BLKIF_RSP_OKAY;
    case BLKIF_OP_WRITE_BARRIER: {
        /* Everything before is on disk, then the write, then it is on disk too. */
        if (ops->flush(ops->ctx) < 0)
            return BLKIF_RSP_ERROR;
        if (!r->nr_segs)
            return BLKIF_RSP_OKAY;
        int rc = do_rw(w, true, ops);
        if (rc == BLKIF_RSP_OKAY && ops->flush(ops->ctx) < 0)
            rc = BLKIF_RSP_ERROR;
        return rc;
    }
    case BLKIF_OP_DISCARD:
        if (!r->nr_sectors)
            return BLKIF_RSP_OKAY;
        return ops->discard(ops->ctx, r->sector * BLK_SECTOR_SIZE,
                            r->nr_sectors * BLK_SECTOR_SIZE) < 0 ?
               BLKIF_RSP_ERROR : BLKIF_RSP_OKAY;
    default:
        return BLKIF_RSP_EOPNOTSUPP;
    }
}

enum blk_ring_state blk_ring_process(blkif_back_ring_t *ring, struct blk_work *w,
                                     const struct blk_limits *lim,
                                     const struct blk_ops *ops, unsigned budget,
                                     bool *notify)
{
    for (;;) {
        RING_IDX rp = __atomic_load_n(&ring->sring->req_prod, __ATOMIC_ACQUIRE);
        if (RING_REQUEST_PROD_OVERFLOW(ring, rp))
            return BLK_RING_BROKEN;
        while (ring->req_cons != rp) {
            if (budget == 0)
                return BLK_RING_MORE;
            if (RING_REQUEST_CONS_OVERFLOW(ring, ring->req_cons))
                return BLK_RING_BROKEN;
            budget--;
            union blkif_sring_entry copy;
            memcpy(&copy, RING_GET_REQUEST(ring, ring->req_cons), sizeof(copy));
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            ring->req_cons++;
            int status = blk_parse(&copy, lim, &w->req);
            if (status == BLKIF_RSP_OKAY)
                status = blk_execute(w, lim, ops);
            if (ops->lost && ops->lost(ops->ctx)) {
                ring->req_cons--;       /* not answered: it is done again later */
                return BLK_RING_LOST;
            }
            struct blkif_response rsp;
            memset(&rsp, 0, sizeof(rsp));
            rsp.id = w->req.id;
            rsp.operation = w->req.rsp_op;
            rsp.status = (int16_t)status;
            memcpy(RING_GET_RESPONSE(ring, ring->rsp_prod_pvt), &rsp, sizeof(rsp));
            ring->rsp_prod_pvt++;
            bool n;
            RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(ring, n);
            if (n)
                *notify = true;
        }
        int more;
        RING_FINAL_CHECK_FOR_REQUESTS(ring, more);
        if (!more)
            return BLK_RING_IDLE;
    }
}
