/*
 * libFuzzer: the block backend's ring processing (src/dom0/blkback/ring.c) on a ring
 * page and granted pages filled from fuzz bytes, as a hostile frontend would fill
 * them. The fake world (ringsim.h) aborts on any access outside a granted page or the
 * image, on mapping a read-only grant writable, and on unbalanced map/unmap; ASan
 * catches the rest. Input: 8 header bytes (req_prod, then flags: read-only device,
 * discard offered, budget, read-only grants), then the ring page, then page contents.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dom0/blkback/ringsim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t take(void *dst, size_t want, const uint8_t **data, size_t *size)
{
    size_t n = want < *size ? want : *size;
    memcpy(dst, *data, n);
    *data += n;
    *size -= n;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hdr[8] = { 0 };
    take(hdr, sizeof(hdr), &data, &size);
    struct ringsim *s = sim_new();
    s->lim.readonly = hdr[4] & 1;
    s->lim.discard = hdr[4] & 2;
    s->lim.max_indirect_segs = (hdr[4] & 4) ? 0 : BLK_MAX_INDIRECT_SEGS;
    unsigned budget = 1 + hdr[5] % 64;
    for (unsigned i = 0; i < 16 && i < SIM_GRANTS; i++)
        s->readonly[i] = (((unsigned)hdr[6] | (unsigned)hdr[7] << 8) >> i) & 1;
    /* The whole ring page, indexes and events included, is the frontend's to write. */
    take(s->sring, BLK_PAGE_SIZE, &data, &size);
    for (unsigned i = 0; i < SIM_GRANTS && size; i++)
        take(s->page[i], BLK_PAGE_SIZE, &data, &size);
    blkif_sring_t *sr = s->sring;
    uint32_t prod;
    memcpy(&prod, hdr, sizeof(prod));
    sr->req_prod = prod;

    /* Attach as a restarted backend does: where the shared ring says it was. */
    blkif_back_ring_t ring;
    BACK_RING_ATTACH(&ring, sr, sr->rsp_prod, BLK_PAGE_SIZE);
    RING_IDX start = ring.rsp_prod_pvt;
    struct blk_ops ops = sim_ops(s);
    bool notify = false;
    for (int round = 0; round < 4; round++) {
        enum blk_ring_state st = blk_ring_process(&ring, &s->work, &s->lim, &ops, budget,
                                                  &notify);
        if (!sim_all_unmapped(s))
            __builtin_trap();
        /* Never more responses than requests, never past what the ring holds. */
        if (ring.rsp_prod_pvt - start > RING_SIZE(&ring) * 4 ||
            ring.req_cons != ring.rsp_prod_pvt || sr->rsp_prod != ring.rsp_prod_pvt)
            __builtin_trap();
        if (st != BLK_RING_MORE)
            break;
    }
    sim_free(s);
    return 0;
}
