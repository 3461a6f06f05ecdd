/*
 * libFuzzer: the network backend's ring code (src/dom0/netback/netring.c) on tx and rx
 * ring pages and granted pages filled from fuzz bytes, as a hostile frontend would
 * fill them, and a host frame (virtio-net header and all) from fuzz bytes too. The
 * fake frontend (netsim.h) aborts on unbalanced map/unmap and refuses writable maps
 * of read-only grants; ASan catches any access outside a page or a buffer.
 * Input: 16 header bytes (tx req_prod, rx req_prod, frontend features, budget,
 * read-only grants, host frame length, a rate limit), the tx ring page, the rx ring page, the host
 * frame, then page contents.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dom0/netback/netsim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t take(void *dst, size_t want, const uint8_t **data, size_t *size)
{
    size_t n = want < *size ? want : *size;
    memcpy(dst, *data, n);
    *data += n;
    *size -= n;
    return n;
}

static void check_tx(struct netsim *s, RING_IDX start)
{
    netif_tx_back_ring_t *r = &s->tx;
    /* One response per consumed slot, all published, never past the ring. */
    if (r->req_cons != r->rsp_prod_pvt || r->sring->rsp_prod != r->rsp_prod_pvt ||
        r->rsp_prod_pvt - start > 4 * RING_SIZE(r) || !ns_all_unmapped(s))
        __builtin_trap();
    for (unsigned i = 0; i < s->nr_out; i++)
        if (s->out_len[i] > NB_VNET_HDR_LEN + NB_MAX_FRAME ||
            s->out_len[i] < NB_VNET_HDR_LEN + NB_ETH_HLEN)
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hdr[16] = { 0 };
    take(hdr, sizeof(hdr), &data, &size);
    struct netsim *s = ns_new();
    take(s->tx_page, NB_PAGE_SIZE, &data, &size);
    take(s->rx_page, NB_PAGE_SIZE, &data, &size);
    static uint8_t frame[NB_FRAME_BUF];
    size_t flen = (size_t)(hdr[12] | hdr[13] << 8 | (hdr[14] & 1) << 16);
    if (flen > NB_FRAME_BUF)
        flen = NB_FRAME_BUF;
    memset(frame, 0, flen);
    take(frame, flen, &data, &size);
    for (unsigned i = 0; i < NS_GRANTS && size; i++)
        take(s->page[i], NB_PAGE_SIZE, &data, &size);
    for (unsigned i = 0; i < NS_GRANTS; i++)
        s->readonly[i] = (((uint32_t)hdr[10] | (uint32_t)hdr[11] << 8) >> (i % 16)) & 1;
    netif_tx_sring_t *ts = s->tx_page;
    netif_rx_sring_t *rs = s->rx_page;
    memcpy(&ts->req_prod, hdr, 4);
    memcpy(&rs->req_prod, hdr + 4, 4);
    struct nb_features f = { .sg = hdr[8] & 1, .gso_tcpv4 = hdr[8] & 2,
                             .gso_tcpv6 = hdr[8] & 4, .csum = hdr[8] & 8 };
    unsigned budget = 1 + hdr[9] % 64;
    struct nb_credit credit;                    /* hdr[15]: a rate limit, bytes/ms */
    nb_credit_init(&credit, (uint64_t)hdr[15] * 64, 1000, 0);

    /* Attach as a restarted backend does: where the shared rings say they were. */
    BACK_RING_ATTACH(&s->tx, ts, ts->rsp_prod, NB_PAGE_SIZE);
    BACK_RING_ATTACH(&s->rx, rs, rs->rsp_prod, NB_PAGE_SIZE);
    RING_IDX tx_start = s->tx.rsp_prod_pvt, rx_start = s->rx.rsp_prod_pvt;
    struct nb_ops ops = ns_ops(s);
    struct nb_stats st = { 0 };
    bool notify = false;
    const char *why;
    for (int round = 0; round < 4; round++) {
        enum nb_ring_state t = nb_tx_process(&s->tx, &ops, s->buf, budget, ns_deliver, s,
                                             &st, hdr[15] ? &credit : NULL, &notify, &why);
        nb_credit_refill(&credit, (uint64_t)(round + 1) * 1000000);
        check_tx(s, tx_start);
        if (t == NB_RING_BROKEN && !why)
            __builtin_trap();
        enum nb_ring_state r = nb_rx_put(&s->rx, &f, &ops, frame, flen, &st, &notify, &why);
        if (!ns_all_unmapped(s) || s->rx.req_cons != s->rx.rsp_prod_pvt ||
            rs->rsp_prod != s->rx.rsp_prod_pvt ||
            s->rx.rsp_prod_pvt - rx_start > NB_RX_MAX_SLOTS * 4)
            __builtin_trap();
        if (t != NB_RING_MORE && t != NB_RING_CREDIT && r != NB_RING_MORE)
            break;
    }
    ns_free(s);
    return 0;
}
