/*
 * Grant mappings of one device through its own dom0 connection: the shared ring
 * (one or more pages, made contiguous), and data/indirect pages, either mapped for one
 * request or, when the frontend negotiated feature-persistent, kept in a per-device
 * cache keyed by grant reference until the device disconnects (as Linux's blkback).
 */
#ifndef XKVM_BLKBACK_GRANTS_H
#define XKVM_BLKBACK_GRANTS_H

#include <stdbool.h>
#include <stdint.h>

#include "blkif.h"
#include "dom0/libdom0.h"

/* Linux's default cap on persistent grants per ring (xen_blkif_max_pgrants). */
#define BLK_MAX_PERSISTENT  1056u
/* Cookie of a page that stays mapped in the persistent cache. */
#define BLK_COOKIE_PERSISTENT UINT64_MAX

struct blk_pgrant {
    grant_ref_t ref;
    uint32_t handle;
    void *page;                 /* NULL: empty slot */
};

struct blk_grants {
    struct dom0_conn *conn;
    uint32_t domid;
    bool persistent;            /* both ends offered feature-persistent */
    bool lost;                  /* a map failed for want of xkvmd or of the domain */
    struct blk_pgrant *tab;     /* open addressing, BLK_PGRANT_SLOTS */
    unsigned count;
    uint64_t maps, unmaps, hits;  /* statistics */
};

/* Set up the cache; 0 or -ENOMEM. */
int grants_init(struct blk_grants *g, struct dom0_conn *conn, uint32_t domid,
                bool persistent);
/* Unmap every persistent grant and free the cache. */
void grants_fini(struct blk_grants *g);

/* struct blk_ops callbacks (ctx is the struct blk_grants). */
void *grants_map(void *ctx, grant_ref_t ref, bool readonly, uint64_t *cookie);
void grants_unmap(void *ctx, void *page, uint64_t cookie);
bool grants_lost(void *ctx);

/* Map n ring pages writable at one contiguous address; handles[] for the unmap. */
void *grants_map_ring(struct blk_grants *g, const grant_ref_t *refs, unsigned n,
                      uint32_t *handles);
void grants_unmap_ring(struct blk_grants *g, void *ring, unsigned n,
                       const uint32_t *handles);

#endif
