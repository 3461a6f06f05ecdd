/* Grant mappings: see grants.h. */
#include "grants.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/log.h"

/* Twice the cap keeps linear probing short; a power of two. */
#define BLK_PGRANT_SLOTS 2048u

int grants_init(struct blk_grants *g, struct dom0_conn *conn, uint32_t domid,
                bool persistent)
{
    memset(g, 0, sizeof(*g));
    g->conn = conn;
    g->domid = domid;
    g->persistent = persistent;
    if (persistent) {
        g->tab = calloc(BLK_PGRANT_SLOTS, sizeof(*g->tab));
        if (!g->tab)
            return -ENOMEM;
    }
    return 0;
}

void grants_fini(struct blk_grants *g)
{
    if (g->tab) {
        for (unsigned i = 0; i < BLK_PGRANT_SLOTS; i++) {
            if (g->tab[i].page) {
                dom0_unmap_grant(g->conn, g->domid, g->tab[i].handle, g->tab[i].page);
                g->unmaps++;
            }
        }
        free(g->tab);
    }
    g->tab = NULL;
    g->count = 0;
}

/* Did the last map fail because the connection (or the domain) is gone? */
static void note_failure(struct blk_grants *g)
{
    switch (errno) {
    case EPIPE: case ECONNRESET: case ENOTCONN: case EPROTO: case EAGAIN:
    case EBADF: case ECONNREFUSED: case ESRCH:
        g->lost = true;
        break;
    default:
        break;
    }
}

bool grants_lost(void *ctx)
{
    return ((struct blk_grants *)ctx)->lost;
}

static unsigned slot_of(grant_ref_t ref)
{
    return (ref * 2654435761u) & (BLK_PGRANT_SLOTS - 1);
}

void *grants_map(void *ctx, grant_ref_t ref, bool readonly, uint64_t *cookie)
{
    struct blk_grants *g = ctx;
    uint32_t handle;
    if (g->tab) {
        unsigned s = slot_of(ref);
        while (g->tab[s].page) {
            if (g->tab[s].ref == ref) {
                g->hits++;
                *cookie = BLK_COOKIE_PERSISTENT;
                return g->tab[s].page;
            }
            s = (s + 1) & (BLK_PGRANT_SLOTS - 1);
        }
        if (g->count < BLK_MAX_PERSISTENT) {
            /* Persistent grants are writable whatever this request does. */
            void *p = dom0_map_grant(g->conn, g->domid, ref, false, &handle);
            if (p) {
                g->maps++;
                g->tab[s] = (struct blk_pgrant){ .ref = ref, .handle = handle, .page = p };
                g->count++;
                *cookie = BLK_COOKIE_PERSISTENT;
                return p;
            }
            note_failure(g);
            if (!readonly || g->lost)
                return NULL;
            /* Granted read-only: fall through to a mapping for this request only. */
        }
    }
    void *p = dom0_map_grant(g->conn, g->domid, ref, readonly, &handle);
    if (!p) {
        note_failure(g);
        return NULL;
    }
    g->maps++;
    *cookie = handle;
    return p;
}

void grants_unmap(void *ctx, void *page, uint64_t cookie)
{
    struct blk_grants *g = ctx;
    if (cookie == BLK_COOKIE_PERSISTENT)
        return;
    dom0_unmap_grant(g->conn, g->domid, (uint32_t)cookie, page);
    g->unmaps++;
}

void *grants_map_ring(struct blk_grants *g, const grant_ref_t *refs, unsigned n,
                      uint32_t *handles)
{
    if (n == 0 || n > BLK_MAX_RING_PAGES) {
        errno = EINVAL;
        return NULL;
    }
    if (n == 1) {
        return dom0_map_grant(g->conn, g->domid, refs[0], false, &handles[0]);
    }
    /* Reserve the address range, then move each page into its place. */
    uint8_t *area = mmap(NULL, (size_t)n * BLK_PAGE_SIZE, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return NULL;
    unsigned i;
    for (i = 0; i < n; i++) {
        void *p = dom0_map_grant(g->conn, g->domid, refs[i], false, &handles[i]);
        if (!p)
            goto fail;
        void *q = mremap(p, BLK_PAGE_SIZE, BLK_PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED,
                         area + (size_t)i * BLK_PAGE_SIZE);
        if (q == MAP_FAILED) {
            int e = errno;
            dom0_unmap_grant(g->conn, g->domid, handles[i], p);
            errno = e;
            goto fail;
        }
    }
    return area;
fail:;
    int e = errno;
    for (unsigned j = 0; j < i; j++)
        dom0_unmap_grant(g->conn, g->domid, handles[j], area + (size_t)j * BLK_PAGE_SIZE);
    munmap(area, (size_t)n * BLK_PAGE_SIZE);
    errno = e;
    return NULL;
}

void grants_unmap_ring(struct blk_grants *g, void *ring, unsigned n,
                       const uint32_t *handles)
{
    for (unsigned i = 0; i < n; i++)
        dom0_unmap_grant(g->conn, g->domid, handles[i],
                         (uint8_t *)ring + (size_t)i * BLK_PAGE_SIZE);
}
