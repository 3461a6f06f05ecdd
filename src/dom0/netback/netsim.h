/*
 * A fake netfront for the ring code (netring.c): a tx and an rx ring page and
 * NS_GRANTS granted pages in memory, grant refs 0 .. NS_GRANTS-1 (others do not map),
 * some of them read-only. Mapping a read-only grant writable, unbalanced map/unmap
 * and unmapping a page that is not mapped abort. Delivered tx frames are kept. For the
 * unit test and the fuzz target; header-only.
 */
#ifndef XKVM_NETBACK_NETSIM_H
#define XKVM_NETBACK_NETSIM_H

#include <stdlib.h>
#include <string.h>

#include "netring.h"

#define NS_GRANTS 24
#define NS_MAX_OUT 8

struct netsim {
    void *tx_page, *rx_page;
    uint8_t *page[NS_GRANTS];
    bool readonly[NS_GRANTS];
    int mapped[NS_GRANTS];
    unsigned maps;
    bool lost_after_maps;           /* every map fails "lost" once maps >= lost_at */
    unsigned lost_at;
    bool lost;
    netif_tx_back_ring_t tx;
    netif_rx_back_ring_t rx;
    netif_tx_front_ring_t txf;
    netif_rx_front_ring_t rxf;
    unsigned nr_out;
    size_t out_len[NS_MAX_OUT];
    uint8_t *out[NS_MAX_OUT];
    uint8_t buf[NB_FRAME_BUF];
};

static inline void *ns_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    struct netsim *s = ctx;
    if (s->lost_after_maps && s->maps >= s->lost_at) {
        s->lost = true;
        return NULL;
    }
    if (ref >= NS_GRANTS)
        return NULL;
    if (!ro && s->readonly[ref])
        return NULL;                /* as MAP_GRANT refuses it: EACCES */
    s->maps++;
    s->mapped[ref]++;
    *cookie = ref;
    return s->page[ref];
}

static inline void ns_unmap(void *ctx, void *page, uint64_t cookie)
{
    struct netsim *s = ctx;
    if (cookie >= NS_GRANTS || s->page[cookie] != page || s->mapped[cookie] <= 0)
        abort();
    s->mapped[cookie]--;
}

static inline bool ns_lost(void *ctx)
{
    return ((struct netsim *)ctx)->lost;
}

static inline bool ns_all_unmapped(const struct netsim *s)
{
    for (unsigned i = 0; i < NS_GRANTS; i++)
        if (s->mapped[i])
            return false;
    return true;
}

static inline void ns_deliver(void *ctx, const uint8_t *buf, size_t len)
{
    struct netsim *s = ctx;
    if (len < NB_VNET_HDR_LEN || len > NB_FRAME_BUF)
        abort();
    if (s->nr_out == NS_MAX_OUT)
        return;
    s->out[s->nr_out] = malloc(len);
    if (!s->out[s->nr_out])
        abort();
    memcpy(s->out[s->nr_out], buf, len);
    s->out_len[s->nr_out++] = len;
}

static inline struct nb_ops ns_ops(struct netsim *s)
{
    struct nb_ops o = { .ctx = s, .map = ns_map, .unmap = ns_unmap, .lost = ns_lost };
    return o;
}

static inline struct netsim *ns_new(void)
{
    struct netsim *s = calloc(1, sizeof(*s));
    if (!s || posix_memalign(&s->tx_page, NB_PAGE_SIZE, NB_PAGE_SIZE) ||
        posix_memalign(&s->rx_page, NB_PAGE_SIZE, NB_PAGE_SIZE))
        abort();
    memset(s->tx_page, 0, NB_PAGE_SIZE);
    memset(s->rx_page, 0, NB_PAGE_SIZE);
    for (unsigned i = 0; i < NS_GRANTS; i++) {
        void *p;
        if (posix_memalign(&p, NB_PAGE_SIZE, NB_PAGE_SIZE))
            abort();
        memset(p, 0, NB_PAGE_SIZE);
        s->page[i] = p;
    }
    netif_tx_sring_t *ts = s->tx_page;
    netif_rx_sring_t *rs = s->rx_page;
    SHARED_RING_INIT(ts);
    SHARED_RING_INIT(rs);
    FRONT_RING_INIT(&s->txf, ts, NB_PAGE_SIZE);
    FRONT_RING_INIT(&s->rxf, rs, NB_PAGE_SIZE);
    BACK_RING_INIT(&s->tx, ts, NB_PAGE_SIZE);
    BACK_RING_INIT(&s->rx, rs, NB_PAGE_SIZE);
    return s;
}

static inline void ns_free(struct netsim *s)
{
    for (unsigned i = 0; i < NS_GRANTS; i++)
        free(s->page[i]);
    for (unsigned i = 0; i < s->nr_out; i++)
        free(s->out[i]);
    free(s->tx_page);
    free(s->rx_page);
    free(s);
}

#endif
