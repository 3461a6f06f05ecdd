/*
 * The network backend's ring code (src/dom0/netback/netring.c, docs/netback.md)
 * against a fake frontend (netsim.h): transmit and receive round trips, scatter-gather,
 * checksum offload and GSO through the virtio-net header, every validation rule
 * (drops answered NETIF_RSP_ERROR, fatal errors breaking the ring), the rx ring
 * running out of buffers, re-attaching at rsp_prod, and a connection lost mid-packet.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "dom0/netback/netsim.h"

HARNESS_MAIN_STATE("netback-ring");

static const uint8_t guest_mac[6] = { 0x00, 0x16, 0x3e, 0x01, 0x02, 0x03 };

/* ---- frames ---- */

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t s)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* IPv4 + (proto 17: UDP, 6: TCP) frame of len bytes; the L4 checksum field holds the
 * pseudo-header sum (as a frontend sending csum_blank leaves it). */
static size_t ip4_frame(uint8_t *f, size_t len, uint8_t proto)
{
    memset(f, 0, len);
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    f[12] = 0x08;
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    size_t iplen = len - 14;
    ip[2] = (uint8_t)(iplen >> 8), ip[3] = (uint8_t)iplen;
    ip[8] = 64, ip[9] = proto;
    ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
    uint8_t *l4 = ip + 20;
    size_t l4len = iplen - 20;
    for (size_t i = (proto == 6 ? 20 : 8); i < l4len; i++)
        l4[i] = (uint8_t)(i * 7 + 3);
    if (proto == 6)
        l4[12] = 5 << 4;
    else
        l4[4] = (uint8_t)(l4len >> 8), l4[5] = (uint8_t)l4len;
    uint32_t ps = sum16(ip + 12, 8, 0) + proto + (uint32_t)l4len;
    size_t at = proto == 6 ? 16 : 6;
    l4[at] = (uint8_t)(fold(ps) >> 8), l4[at + 1] = (uint8_t)fold(ps);
    return len;
}

/* Is the frame's L4 checksum complete and right? */
static bool l4_csum_ok(const uint8_t *f, size_t len)
{
    const uint8_t *ip = f + 14;
    size_t l4len = len - 34;
    uint32_t s = sum16(ip + 12, 8, 0) + ip[9] + (uint32_t)l4len;
    return fold(sum16(ip + 20, l4len, s)) == 0xffff;
}

/* ---- the frontend's side of the rings ---- */

static void tx_req(struct netsim *s, grant_ref_t gref, uint16_t off, uint16_t flags,
                   uint16_t id, uint16_t size)
{
    netif_tx_request_t *r = RING_GET_REQUEST(&s->txf, s->txf.req_prod_pvt++);
    r->gref = gref, r->offset = off, r->flags = flags, r->id = id, r->size = size;
}

static void tx_gso(struct netsim *s, uint8_t type, uint16_t size, uint8_t flags)
{
    struct netif_extra_info e;
    memset(&e, 0, sizeof(e));
    e.type = type, e.flags = flags;
    e.u.gso.size = size, e.u.gso.type = XEN_NETIF_GSO_TYPE_TCPV4;
    memcpy(RING_GET_REQUEST(&s->txf, s->txf.req_prod_pvt++), &e, sizeof(e));
}

static void tx_push(struct netsim *s)
{
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->txf, notify);
    (void)notify;
}

static enum nb_ring_state tx_run(struct netsim *s, const char **why)
{
    struct nb_ops ops = ns_ops(s);
    struct nb_stats st = { 0 };
    bool notify = false;
    return nb_tx_process(&s->tx, &ops, s->buf, 64, ns_deliver, s, &st, NULL, &notify, why);
}

static netif_tx_response_t *tx_rsp(struct netsim *s, RING_IDX i)
{
    return RING_GET_RESPONSE(&s->txf, i);
}

static void rx_post(struct netsim *s, unsigned n, grant_ref_t first)
{
    for (unsigned i = 0; i < n; i++) {
        netif_rx_request_t *r = RING_GET_REQUEST(&s->rxf, s->rxf.req_prod_pvt);
        r->id = (uint16_t)(s->rxf.req_prod_pvt & (RING_SIZE(&s->rxf) - 1));
        r->gref = first + i;
        s->rxf.req_prod_pvt++;
    }
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->rxf, notify);
    (void)notify;
}

static enum nb_ring_state rx_run(struct netsim *s, const struct nb_features *f,
                                 uint8_t *pkt, size_t len, struct nb_stats *st)
{
    struct nb_ops ops = ns_ops(s);
    bool notify = false;
    const char *why;
    return nb_rx_put(&s->rx, f, &ops, pkt, len, st, &notify, &why);
}

/* ---- transmit ---- */

static void test_tx_single(void)
{
    struct netsim *s = ns_new();
    size_t len = ip4_frame(s->page[3] + 100, 60, 17);
    tx_req(s, 3, 100, NETTXF_data_validated, 0x1234, (uint16_t)len);
    tx_push(s);
    const char *why;
    CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
    REQUIRE(s->nr_out == 1);
    CHECK_EQ(s->out_len[0], NB_VNET_HDR_LEN + len);
    CHECK(memcmp(s->out[0] + NB_VNET_HDR_LEN, s->page[3] + 100, len) == 0);
    struct virtio_net_hdr h;
    memcpy(&h, s->out[0], sizeof(h));
    CHECK_EQ(h.flags, VIRTIO_NET_HDR_F_DATA_VALID);
    CHECK_EQ(h.gso_type, VIRTIO_NET_HDR_GSO_NONE);
    CHECK_EQ(s->txf.sring->rsp_prod, 1);
    CHECK_EQ(tx_rsp(s, 0)->id, 0x1234);
    CHECK_EQ(tx_rsp(s, 0)->status, NETIF_RSP_OKAY);
    CHECK(ns_all_unmapped(s));
    /* Idle: the frontend's next request will notify. */
    CHECK_EQ(s->txf.sring->req_event, 2);
    ns_free(s);
}

/* A packet over three slots (more_data): first slot's size is the whole packet. */
static void test_tx_sg(void)
{
    struct netsim *s = ns_new();
    uint8_t frame[3000];
    size_t len = ip4_frame(frame, sizeof(frame), 17);
    memcpy(s->page[0] + 4000, frame, 96);
    memcpy(s->page[1], frame + 96, 2000);
    memcpy(s->page[2] + 8, frame + 2096, len - 2096);
    tx_req(s, 0, 4000, NETTXF_more_data, 1, (uint16_t)len);
    tx_req(s, 1, 0, NETTXF_more_data, 2, 2000);
    tx_req(s, 2, 8, 0, 3, (uint16_t)(len - 2096));
    tx_push(s);
    const char *why;
    CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
    REQUIRE(s->nr_out == 1);
    CHECK_EQ(s->out_len[0], NB_VNET_HDR_LEN + len);
    CHECK(memcmp(s->out[0] + NB_VNET_HDR_LEN, frame, len) == 0);
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(tx_rsp(s, i)->id, i + 1);
        CHECK_EQ(tx_rsp(s, i)->status, NETIF_RSP_OKAY);
    }
    ns_free(s);
}

/* csum_blank: NEEDS_CSUM at the UDP/TCP checksum; GSO from the extra slot (NULL). */
static void test_tx_offloads(void)
{
    struct netsim *s = ns_new();
    size_t len = ip4_frame(s->page[0], 200, 17);
    tx_req(s, 0, 0, NETTXF_csum_blank, 7, (uint16_t)len);
    len = ip4_frame(s->page[1], 3000, 6);
    s->page[1][14 + 20 + 16] = 0xde;        /* a wrong checksum: GSO recomputes it */
    tx_req(s, 1, 0, NETTXF_extra_info, 8, (uint16_t)len);
    tx_gso(s, XEN_NETIF_EXTRA_TYPE_GSO, 1448, 0);
    tx_push(s);
    const char *why;
    CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
    REQUIRE(s->nr_out == 2);
    struct virtio_net_hdr h;
    memcpy(&h, s->out[0], sizeof(h));
    CHECK_EQ(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    CHECK_EQ(h.csum_start, 34);
    CHECK_EQ(h.csum_offset, 6);
    /* The kernel would finish it: the result must be a right checksum. */
    CHECK(nb_csum_fill(&h, s->out[0] + NB_VNET_HDR_LEN, 200));
    CHECK(l4_csum_ok(s->out[0] + NB_VNET_HDR_LEN, 200));
    memcpy(&h, s->out[1], sizeof(h));
    CHECK_EQ(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    CHECK_EQ(h.gso_size, 1448);
    CHECK_EQ(h.hdr_len, 54);
    CHECK_EQ(h.csum_offset, 16);
    CHECK(nb_csum_fill(&h, s->out[1] + NB_VNET_HDR_LEN, 3000));
    CHECK(l4_csum_ok(s->out[1] + NB_VNET_HDR_LEN, 3000));
    CHECK_EQ(tx_rsp(s, 1)->id, 8);
    CHECK_EQ(tx_rsp(s, 1)->status, NETIF_RSP_OKAY);
    CHECK_EQ(tx_rsp(s, 2)->status, NETIF_RSP_NULL);
    CHECK_EQ(s->txf.sring->rsp_prod, 3);
    ns_free(s);
}

/* Dropped, answered ERROR in every slot, the ring goes on: each case then a good one. */
static void test_tx_drops(void)
{
    static const char *const cases[] = { "short", "slots", "gref", "readonly-ok",
                                         "csum-not-ip", "gso-udp", "frag-larger" };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct netsim *s = ns_new();
        unsigned slots = 1;
        ip4_frame(s->page[0], 100, 17);
        if (!strcmp(cases[c], "short")) {
            tx_req(s, 0, 0, 0, 1, 13);
        } else if (!strcmp(cases[c], "slots")) {
            slots = NB_MAX_SLOTS + 1;
            for (unsigned i = 0; i < slots; i++)
                tx_req(s, 0, 0, i + 1 < slots ? NETTXF_more_data : 0, (uint16_t)i,
                       (uint16_t)(i == 0 ? 60 + 10 * (slots - 1) : 10));
        } else if (!strcmp(cases[c], "gref")) {
            tx_req(s, NS_GRANTS + 5, 0, 0, 1, 100);
        } else if (!strcmp(cases[c], "frag-larger")) {     /* Linux: dropped, not fatal */
            tx_req(s, 0, 0, NETTXF_more_data, 1, 100);
            tx_req(s, 1, 0, 0, 2, 101);
            slots = 2;
        } else if (!strcmp(cases[c], "readonly-ok")) {
            s->readonly[0] = true;              /* tx maps read-only: fine */
            tx_req(s, 0, 0, 0, 1, 100);
        } else if (!strcmp(cases[c], "csum-not-ip")) {
            s->page[0][12] = 0x88, s->page[0][13] = 0xb5;
            tx_req(s, 0, 0, NETTXF_csum_blank, 1, 100);
        } else {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 100);
            tx_gso(s, XEN_NETIF_EXTRA_TYPE_GSO, 1000, 0);
            slots = 2;
        }
        ip4_frame(s->page[1], 80, 17);
        tx_req(s, 1, 0, 0, 99, 80);
        tx_push(s);
        const char *why;
        CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
        bool ok = !strcmp(cases[c], "readonly-ok");
        CHECK_MSG(s->nr_out == (ok ? 2u : 1u), "%s: %u delivered", cases[c], s->nr_out);
        for (unsigned i = 0; i < slots; i++) {
            int want = (!strcmp(cases[c], "gso-udp") && i == 1) ? NETIF_RSP_NULL
                       : ok ? NETIF_RSP_OKAY : NETIF_RSP_ERROR;
            CHECK_MSG(tx_rsp(s, i)->status == want, "%s: slot %u status %d", cases[c], i,
                      tx_rsp(s, i)->status);
        }
        CHECK_EQ(tx_rsp(s, slots)->id, 99);
        CHECK_EQ(tx_rsp(s, slots)->status, NETIF_RSP_OKAY);
        CHECK(ns_all_unmapped(s));
        ns_free(s);
    }
}

/* Fatal: the ring is broken, nothing answered, nothing delivered. */
static void test_tx_fatal(void)
{
    static const char *const cases[] = { "prod", "offset", "first-offset",
                                         "extra-type", "gso-size", "gso-type",
                                         "chain-past-prod", "extras-past-prod",
                                         "too-many-slots", "too-many-extras" };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct netsim *s = ns_new();
        const char *k = cases[c];
        if (!strcmp(k, "prod")) {
            tx_req(s, 0, 0, 0, 1, 60);
            tx_push(s);
            s->txf.sring->req_prod += RING_SIZE(&s->txf);
        } else if (!strcmp(k, "offset")) {
            tx_req(s, 0, 0, NETTXF_more_data, 1, 200);
            tx_req(s, 1, 4000, 0, 2, 100);
        } else if (!strcmp(k, "first-offset")) {
            tx_req(s, 0, 4090, 0, 1, 60);
        } else if (!strcmp(k, "extra-type")) {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 60);
            tx_gso(s, XEN_NETIF_EXTRA_TYPE_MAX, 1000, 0);
        } else if (!strcmp(k, "gso-size")) {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 60);
            tx_gso(s, XEN_NETIF_EXTRA_TYPE_GSO, 0, 0);
        } else if (!strcmp(k, "gso-type")) {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 60);
            tx_gso(s, XEN_NETIF_EXTRA_TYPE_GSO, 1000, 0);
            struct netif_extra_info e;
            memcpy(&e, RING_GET_REQUEST(&s->txf, 1), sizeof(e));
            e.u.gso.type = 9;
            memcpy(RING_GET_REQUEST(&s->txf, 1), &e, sizeof(e));
        } else if (!strcmp(k, "chain-past-prod")) {
            tx_req(s, 0, 0, NETTXF_more_data, 1, 60);
        } else if (!strcmp(k, "extras-past-prod")) {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 60);
            tx_gso(s, XEN_NETIF_EXTRA_TYPE_GSO, 1000, XEN_NETIF_EXTRA_FLAG_MORE);
        } else if (!strcmp(k, "too-many-slots")) {
            for (unsigned i = 0; i <= NB_FATAL_SLOTS; i++)
                tx_req(s, 0, 0, NETTXF_more_data, (uint16_t)i, 60);
        } else {
            tx_req(s, 0, 0, NETTXF_extra_info, 1, 60);
            for (unsigned i = 0; i <= NB_MAX_EXTRAS; i++)
                tx_gso(s, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 1, XEN_NETIF_EXTRA_FLAG_MORE);
        }
        if (strcmp(k, "prod"))
            tx_push(s);
        const char *why = NULL;
        CHECK_MSG(tx_run(s, &why) == NB_RING_BROKEN, "%s not fatal", k);
        CHECK_MSG(why != NULL, "%s: no reason", k);
        CHECK_EQ(s->nr_out, 0);
        CHECK_EQ(s->txf.sring->rsp_prod, 0);
        CHECK(ns_all_unmapped(s));
        ns_free(s);
    }
}

/* ---- receive ---- */

static const struct nb_features all = { .sg = true, .gso_tcpv4 = true, .gso_tcpv6 = true,
                                        .csum = true };

static void test_rx_single(void)
{
    struct netsim *s = ns_new();
    static uint8_t pkt[NB_FRAME_BUF];
    memset(pkt, 0, NB_VNET_HDR_LEN);
    size_t len = ip4_frame(pkt + NB_VNET_HDR_LEN, 300, 17);
    struct nb_stats st = { 0 };
    rx_post(s, 4, 2);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(s->rxf.sring->rsp_prod, 1);
    netif_rx_response_t *r = RING_GET_RESPONSE(&s->rxf, 0);
    CHECK_EQ(r->id, 0);
    CHECK_EQ(r->status, 300);
    CHECK_EQ(r->offset, 0);
    CHECK_EQ(r->flags, 0);
    CHECK(memcmp(s->page[2], pkt + NB_VNET_HDR_LEN, 300) == 0);
    CHECK_EQ(st.rx_packets, 1);

    /* A partial checksum: csum_blank|data_validated for a frontend that takes it... */
    struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                .csum_offset = 6 };
    memcpy(pkt, &h, sizeof(h));
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    r = RING_GET_RESPONSE(&s->rxf, 1);
    CHECK_EQ(r->flags, NETRXF_csum_blank | NETRXF_data_validated);
    CHECK_EQ(r->id, 1);
    /* ...and filled in for one that does not (feature-no-csum-offload). */
    struct nb_features nocsum = all;
    nocsum.csum = false;
    CHECK_EQ(rx_run(s, &nocsum, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    r = RING_GET_RESPONSE(&s->rxf, 2);
    CHECK_EQ(r->flags, NETRXF_data_validated);
    CHECK(l4_csum_ok(s->page[4], 300));
    CHECK(ns_all_unmapped(s));
    ns_free(s);
}

/* 9000 bytes: three slots with sg (more_data), dropped without; GSO's extra slot. */
static void test_rx_sg_gso(void)
{
    struct netsim *s = ns_new();
    static uint8_t pkt[NB_FRAME_BUF];
    memset(pkt, 0, NB_VNET_HDR_LEN);
    size_t len = ip4_frame(pkt + NB_VNET_HDR_LEN, 9000, 6);
    struct nb_stats st = { 0 };
    struct nb_features nosg = all;
    nosg.sg = false;
    rx_post(s, 8, 0);
    CHECK_EQ(rx_run(s, &nosg, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(st.rx_dropped, 1);
    CHECK_EQ(s->rxf.sring->rsp_prod, 0);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(s->rxf.sring->rsp_prod, 3);
    unsigned sizes[3] = { 4096, 4096, 808 };
    for (unsigned i = 0; i < 3; i++) {
        netif_rx_response_t *r = RING_GET_RESPONSE(&s->rxf, i);
        CHECK_EQ(r->status, sizes[i]);
        CHECK_EQ(r->flags, i < 2 ? NETRXF_more_data : 0);
        CHECK(memcmp(s->page[i], pkt + NB_VNET_HDR_LEN + i * 4096, sizes[i]) == 0);
    }
    /* GSO: the extra info in the slot after the first. */
    struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                .gso_size = 1448, .hdr_len = 54 };
    memcpy(pkt, &h, sizeof(h));
    struct nb_features nogso = all;
    nogso.gso_tcpv4 = false;
    CHECK_EQ(rx_run(s, &nogso, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(st.rx_dropped, 2);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(s->rxf.sring->rsp_prod, 7);
    netif_rx_response_t *r = RING_GET_RESPONSE(&s->rxf, 3);
    CHECK_EQ(r->flags, NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info |
                       NETRXF_more_data);
    struct netif_extra_info e;
    memcpy(&e, RING_GET_RESPONSE(&s->rxf, 4), sizeof(e));
    CHECK_EQ(e.type, XEN_NETIF_EXTRA_TYPE_GSO);
    CHECK_EQ(e.u.gso.size, 1448);
    CHECK_EQ(e.u.gso.type, XEN_NETIF_GSO_TYPE_TCPV4);
    CHECK_EQ(RING_GET_RESPONSE(&s->rxf, 5)->status, 4096);
    CHECK_EQ(RING_GET_RESPONSE(&s->rxf, 6)->status, 808);
    CHECK(ns_all_unmapped(s));
    ns_free(s);
}

/* Not enough buffers: FULL with req_event asking for them; a broken ring; bad grants. */
static void test_rx_full_broken_grants(void)
{
    struct netsim *s = ns_new();
    static uint8_t pkt[NB_FRAME_BUF];
    memset(pkt, 0, NB_VNET_HDR_LEN);
    size_t len = ip4_frame(pkt + NB_VNET_HDR_LEN, 5000, 17);
    struct nb_stats st = { 0 };
    rx_post(s, 1, 0);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_FULL);
    CHECK_EQ(s->rxf.sring->req_event, 2);
    CHECK_EQ(s->rxf.sring->rsp_prod, 0);
    rx_post(s, 1, NS_GRANTS + 1);           /* a grant that does not map */
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(RING_GET_RESPONSE(&s->rxf, 0)->status, 4096);
    CHECK_EQ(RING_GET_RESPONSE(&s->rxf, 1)->status, NETIF_RSP_ERROR);
    CHECK_EQ(st.rx_dropped, 1);
    s->readonly[5] = true;                  /* rx buffers are written: refused */
    rx_post(s, 1, 5);
    len = ip4_frame(pkt + NB_VNET_HDR_LEN, 100, 17);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(RING_GET_RESPONSE(&s->rxf, 2)->status, NETIF_RSP_ERROR);
    /* Runts and giants never reach the ring. */
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + 13, &st), NB_RING_MORE);
    CHECK_EQ(st.rx_dropped, 3);
    s->rxf.sring->req_prod += 2 * RING_SIZE(&s->rxf);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_BROKEN);
    CHECK(ns_all_unmapped(s));
    ns_free(s);
}

/* ---- restart ---- */

/*
 * A new backend attaching at rsp_prod answers exactly what was not answered: packets
 * the old one took but did not answer are sent again, none is answered twice.
 */
static void test_reattach(void)
{
    struct netsim *s = ns_new();
    for (unsigned i = 0; i < 4; i++) {
        ip4_frame(s->page[i], 64, 17);
        tx_req(s, (grant_ref_t)i, 0, 0, (uint16_t)(10 + i), 64);
    }
    tx_push(s);
    struct nb_ops ops = ns_ops(s);
    struct nb_stats st = { 0 };
    bool notify = false;
    const char *why;
    CHECK_EQ(nb_tx_process(&s->tx, &ops, s->buf, 2, ns_deliver, s, &st, NULL, &notify, &why),
             NB_RING_MORE);
    CHECK_EQ(s->txf.sring->rsp_prod, 2);
    /* The old backend dies having read packet 3 but not answered it. */
    s->tx.req_cons++;
    netif_tx_back_ring_t fresh;
    BACK_RING_ATTACH(&fresh, s->txf.sring, s->txf.sring->rsp_prod, NB_PAGE_SIZE);
    s->tx = fresh;
    CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
    CHECK_EQ(s->nr_out, 4);
    CHECK_EQ(s->txf.sring->rsp_prod, 4);
    for (unsigned i = 0; i < 4; i++)
        CHECK_EQ(tx_rsp(s, i)->id, 10 + i);
    ns_free(s);
}

/* xkvmd gone mid-packet: nothing consumed, nothing answered; done after re-attach. */
static void test_lost(void)
{
    struct netsim *s = ns_new();
    ip4_frame(s->page[0], 64, 17);
    tx_req(s, 0, 0, 0, 1, 64);
    tx_push(s);
    s->lost_after_maps = true;
    const char *why;
    CHECK_EQ(tx_run(s, &why), NB_RING_LOST);
    CHECK_EQ(s->tx.req_cons, 0);
    CHECK_EQ(s->txf.sring->rsp_prod, 0);
    static uint8_t pkt[NB_FRAME_BUF];
    memset(pkt, 0, NB_VNET_HDR_LEN);
    size_t len = ip4_frame(pkt + NB_VNET_HDR_LEN, 64, 17);
    rx_post(s, 1, 1);
    struct nb_stats st = { 0 };
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_LOST);
    CHECK_EQ(s->rx.req_cons, 0);
    CHECK_EQ(s->rxf.sring->rsp_prod, 0);
    s->lost_after_maps = false;
    s->lost = false;
    CHECK_EQ(tx_run(s, &why), NB_RING_IDLE);
    CHECK_EQ(s->nr_out, 1);
    CHECK_EQ(rx_run(s, &all, pkt, NB_VNET_HDR_LEN + len, &st), NB_RING_MORE);
    CHECK_EQ(s->rxf.sring->rsp_prod, 1);
    ns_free(s);
}

/* rate=: packets wait (unconsumed) for the refill; idle time adds up to 128 KiB. */
static void test_credit(void)
{
    struct netsim *s = ns_new();
    for (unsigned i = 0; i < 5; i++) {
        ip4_frame(s->page[i], 100, 17);
        tx_req(s, (grant_ref_t)i, 0, 0, (uint16_t)i, 100);
    }
    tx_push(s);
    struct nb_credit cr;
    nb_credit_init(&cr, 250, 1000, 0);         /* 250 bytes per ms */
    struct nb_ops ops = ns_ops(s);
    struct nb_stats st = { 0 };
    bool notify = false;
    const char *why;
    CHECK_EQ(nb_tx_process(&s->tx, &ops, s->buf, 64, ns_deliver, s, &st, &cr, &notify, &why),
             NB_RING_CREDIT);
    CHECK_EQ(s->nr_out, 2);
    CHECK_EQ(s->tx.req_cons, 2);
    CHECK_EQ(cr.remaining, 50);
    CHECK_EQ(cr.waits, 1);
    nb_credit_refill(&cr, 999999);              /* not yet due: nothing */
    CHECK_EQ(cr.remaining, 50);
    nb_credit_refill(&cr, 1000000);
    CHECK_EQ(cr.remaining, 300);
    CHECK_EQ(cr.next_refill_ns, 2000000);
    CHECK_EQ(nb_tx_process(&s->tx, &ops, s->buf, 64, ns_deliver, s, &st, &cr, &notify, &why),
             NB_RING_IDLE);
    CHECK_EQ(s->nr_out, 5);
    CHECK_EQ(s->txf.sring->rsp_prod, 5);
    /* A long idle time fills the credit up to the burst cap, never beyond. */
    nb_credit_refill(&cr, 60ull * 1000000000ull);
    CHECK_EQ(cr.remaining, 131072);
    CHECK(cr.next_refill_ns > 60ull * 1000000000ull);
    /* No limit: everything goes. */
    nb_credit_init(&cr, 0, 0, 0);
    CHECK(cr.per_interval == 0);
    ns_free(s);
}

int main(void)
{
    RUN_TEST(test_tx_single);
    RUN_TEST(test_tx_sg);
    RUN_TEST(test_tx_offloads);
    RUN_TEST(test_tx_drops);
    RUN_TEST(test_tx_fatal);
    RUN_TEST(test_rx_single);
    RUN_TEST(test_rx_sg_gso);
    RUN_TEST(test_rx_full_broken_grants);
    RUN_TEST(test_reattach);
    RUN_TEST(test_lost);
    RUN_TEST(test_credit);
    HARNESS_EXIT();
}
