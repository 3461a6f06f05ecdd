/*
 * A fake frontend world for testing ring.c without xkvmd: granted pages and an image
 * in memory, each in its own allocation (so ASan sees any access beyond them), and
 * blk_ops that abort on anything outside the granted pages or the image. Used by
 * tests/unit/test-blkback-ring.c and tests/fuzz/fuzz-blkif-ring.c.
 */
#ifndef XKVM_BLKBACK_RINGSIM_H
#define XKVM_BLKBACK_RINGSIM_H

#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define SIM_GRANTS      16u     /* grant refs 0..15 exist */
#define SIM_IMAGE_SECTORS 64u

struct ringsim {
    uint8_t *page[SIM_GRANTS];
    bool readonly[SIM_GRANTS];  /* granted read-only */
    int maps[SIM_GRANTS];       /* outstanding mappings */
    uint8_t *image;
    unsigned flushes, discards, ios;
    bool lost;                  /* pretend xkvmd went away: maps fail, ops->lost() */
    void *sring;                /* one ring page */
    struct blk_limits lim;
    struct blk_work work;
};

static inline void sim_die(const char *why)
{
    (void)why;
    abort();
}

static inline int sim_ref_of(struct ringsim *s, const void *page)
{
    for (unsigned i = 0; i < SIM_GRANTS; i++)
        if (s->page[i] == page)
            return (int)i;
    return -1;
}

static inline void *sim_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    struct ringsim *s = ctx;
    if (s->lost || ref >= SIM_GRANTS || (!ro && s->readonly[ref]))
        return NULL;
    s->maps[ref]++;
    *cookie = ref;
    return s->page[ref];
}

static inline void sim_unmap(void *ctx, void *page, uint64_t cookie)
{
    struct ringsim *s = ctx;
    int ref = sim_ref_of(s, page);
    if (ref < 0 || (uint64_t)ref != cookie || s->maps[ref] <= 0)
        sim_die("unmap of something not mapped");
    s->maps[ref]--;
}

/* Every byte of every iovec must lie in one mapped granted page. */
static inline void sim_check_iov(struct ringsim *s, const struct iovec *v, bool write)
{
    for (unsigned i = 0; i < SIM_GRANTS; i++) {
        uint8_t *p = s->page[i], *b = v->iov_base;
        if (b >= p && b < p + BLK_PAGE_SIZE) {
            if (v->iov_len > (size_t)(p + BLK_PAGE_SIZE - b) || s->maps[i] <= 0)
                sim_die("iovec beyond its page or unmapped");
            if (!write && s->readonly[i])
                sim_die("read into a read-only grant");
            return;
        }
    }
    sim_die("iovec outside every granted page");
}

static inline int sim_io(void *ctx, bool write, const struct iovec *iov, unsigned n,
                         uint64_t off)
{
    struct ringsim *s = ctx;
    const uint64_t size = (uint64_t)SIM_IMAGE_SECTORS * BLK_SECTOR_SIZE;
    s->ios++;
    for (unsigned i = 0; i < n; i++) {
        sim_check_iov(s, &iov[i], write);
        if (off > size || iov[i].iov_len > size - off)
            sim_die("I/O beyond the image");
        if (write)
            memcpy(s->image + off, iov[i].iov_base, iov[i].iov_len);
        else
            memcpy(iov[i].iov_base, s->image + off, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return 0;
}

static inline int sim_flush(void *ctx)
{
    ((struct ringsim *)ctx)->flushes++;
    return 0;
}

static inline int sim_discard(void *ctx, uint64_t off, uint64_t len)
{
    struct ringsim *s = ctx;
    const uint64_t size = (uint64_t)SIM_IMAGE_SECTORS * BLK_SECTOR_SIZE;
    if (off > size || len > size - off)
        sim_die("discard beyond the image");
    memset(s->image + off, 0, len);
    s->discards++;
    return 0;
}

static inline bool sim_lost(void *ctx)
{
    return ((struct ringsim *)ctx)->lost;
}

static inline struct blk_ops sim_ops(struct ringsim *s)
{
    return (struct blk_ops){ .ctx = s, .map = sim_map, .unmap = sim_unmap, .io = sim_io,
                             .flush = sim_flush, .discard = sim_discard,
                             .lost = sim_lost };
}

static inline struct ringsim *sim_new(void)
{
    struct ringsim *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    for (unsigned i = 0; i < SIM_GRANTS; i++)
        if (!(s->page[i] = calloc(1, BLK_PAGE_SIZE)))
            abort();
    if (!(s->image = calloc(SIM_IMAGE_SECTORS, BLK_SECTOR_SIZE)) ||
        !(s->sring = aligned_alloc(BLK_PAGE_SIZE, BLK_PAGE_SIZE)))
        abort();
    memset(s->sring, 0, BLK_PAGE_SIZE);
    s->lim = (struct blk_limits){ .sectors = SIM_IMAGE_SECTORS,
                                  .max_indirect_segs = BLK_MAX_INDIRECT_SEGS,
                                  .discard = true };
    return s;
}

static inline bool sim_all_unmapped(const struct ringsim *s)
{
    for (unsigned i = 0; i < SIM_GRANTS; i++)
        if (s->maps[i])
            return false;
    return true;
}

static inline void sim_free(struct ringsim *s)
{
    for (unsigned i = 0; i < SIM_GRANTS; i++)
        free(s->page[i]);
    free(s->image);
    free(s->sring);
    free(s);
}

#endif
