/*
 * Request parsing and ring processing for the block backend: pure code, no system
 * calls. Grant mapping and image I/O come in through struct blk_ops, so the fuzz
 * target drives exactly this code with fake pages and a fake image.
 *
 * The frontend is hostile: every request is copied out of the shared ring (and every
 * indirect descriptor out of its page) before it is looked at, every field is checked,
 * and a bad request is answered BLKIF_RSP_ERROR (BLKIF_RSP_EOPNOTSUPP for an unknown
 * operation), never acted on. A ring whose producer index runs further ahead than the
 * ring is large is broken: processing stops.
 */
#ifndef XKVM_BLKBACK_RING_H
#define XKVM_BLKBACK_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blkif.h"

/* What a device allows: fixed when it connects. */
struct blk_limits {
    uint64_t sectors;           /* image size in 512-byte sectors */
    unsigned max_indirect_segs; /* 0: indirect requests refused */
    bool readonly;              /* mode r: writes, barriers and discards refused */
    bool discard;               /* feature-discard offered */
};

/* Where data goes: mapping grants and doing I/O. Each returns 0 or -errno. */
struct blk_ops {
    void *ctx;
    /* Map grant ref (read-only if asked); NULL if it cannot be. *cookie goes to unmap. */
    void *(*map)(void *ctx, grant_ref_t ref, bool readonly, uint64_t *cookie);
    void (*unmap)(void *ctx, void *page, uint64_t cookie);
    /* Read into / write from iov[0..n), byte offset off, all of it or an error. */
    int (*io)(void *ctx, bool write, const struct iovec *iov, unsigned n, uint64_t off);
    int (*flush)(void *ctx);
    int (*discard)(void *ctx, uint64_t off, uint64_t len);
    /*
     * Optional: true once mapping failed because the way to the guest is gone (xkvmd
     * restarting), not because of the request. The request is then left on the ring
     * unanswered, to be done again after reconnecting.
     */
    bool (*lost)(void *ctx);
};

struct blk_seg {
    grant_ref_t gref;
    uint8_t first, last;        /* sectors within the page, inclusive */
};

/* One request, as the backend's private copy. */
struct blk_req {
    uint64_t id;                /* echoed in the response */
    uint8_t rsp_op;             /* the response's operation */
    uint8_t op;                 /* what to do: BLKIF_OP_READ/WRITE/WRITE_BARRIER/... */
    uint16_t nr_segs;
    uint8_t nr_indirect;        /* indirect descriptor pages, 0 for direct requests */
    uint64_t sector;
    uint64_t nr_sectors;        /* discard only */
    grant_ref_t indirect[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    struct blk_seg segs[BLK_MAX_SEGS];
};

/* Scratch space for one request in flight (large: keep it off the stack). */
struct blk_work {
    struct blk_req req;
    void *pages[BLK_MAX_SEGS];
    uint64_t cookies[BLK_MAX_SEGS];
    struct iovec iov[BLK_MAX_SEGS];
    uint64_t bytes;             /* statistics: data moved by successful requests */
};

/*
 * Decode a copied ring entry. Returns BLKIF_RSP_OKAY or the status to answer with;
 * r->id and r->rsp_op are set either way. Indirect segments are not loaded yet.
 */
int blk_parse(const union blkif_sring_entry *e, const struct blk_limits *lim,
              struct blk_req *r);
/* Copy the segment descriptors of indirect page `idx` (its contents, `page`). */
void blk_load_indirect(struct blk_req *r, unsigned idx, const void *page);
/* Check segments (first <= last <= 7) and the sector range against the image. */
int blk_check_segs(const struct blk_req *r, const struct blk_limits *lim);
/* Carry out a parsed request: BLKIF_RSP_OKAY or an error status. */
int blk_execute(struct blk_work *w, const struct blk_limits *lim, const struct blk_ops *ops);

enum blk_ring_state {
    BLK_RING_IDLE,      /* nothing left: req_event is set, sleep until notified */
    BLK_RING_MORE,      /* the budget ran out with requests left */
    BLK_RING_BROKEN,    /* producer index out of range: stop this ring */
    BLK_RING_LOST,      /* ops->lost(): stopped before answering the current request */
};

/*
 * Answer up to `budget` requests of a back ring, in order, one response each, pushed
 * as it is written (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY). *notify is set when the
 * frontend wants an event.
 */
enum blk_ring_state blk_ring_process(blkif_back_ring_t *ring, struct blk_work *w,
                                     const struct blk_limits *lim,
                                     const struct blk_ops *ops, unsigned budget,
                                     bool *notify);

#endif
