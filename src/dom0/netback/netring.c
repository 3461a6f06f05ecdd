/* The netif rings of one vif: see netring.h. */
#include "netring.h"

#include <string.h>

/* ---- checksums and headers --------------------------------------------------------- */

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

bool nb_csum_fill(const struct virtio_net_hdr *h, uint8_t *frame, size_t len)
{
    if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
        return true;
    size_t start = h->csum_start, at = start + h->csum_offset;
    if (start >= len || at + 2 > len)
        return false;
    /* The field holds the pseudo-header's sum: add the rest and complement. */
    put16(frame + at, (uint16_t)~fold(sum16(frame + start, len - start, 0)));
    return true;
}

/* Where the L3 and L4 headers of an Ethernet frame are, and which L4 protocol. */
struct nb_l4 {
    size_t l3, l4;
    uint8_t proto;
    bool v6;
};

static bool locate_l4(const uint8_t *f, size_t len, struct nb_l4 *o)
{
    if (len < NB_ETH_HLEN)
        return false;
    uint16_t type = get16(f + 12);
    size_t off = NB_ETH_HLEN;
    if (type == 0x8100) {               /* one 802.1Q tag */
        if (len < off + 4)
            return false;
        type = get16(f + 16);
        off += 4;
    }
    o->l3 = off;
    if (type == 0x0800) {
        if (len < off + 20 || (f[off] >> 4) != 4)
            return false;
        size_t ihl = (size_t)(f[off] & 15) * 4;
        if (ihl < 20 || len < off + ihl || (get16(f + off + 6) & 0x3fff))
            return false;               /* a fragment has no L4 header to offload */
        o->proto = f[off + 9];
        o->l4 = off + ihl;
        o->v6 = false;
        return true;
    }
    if (type == 0x86dd) {
        if (len < off + 40 || (f[off] >> 4) != 6)
            return false;
        o->proto = f[off + 6];
        o->l4 = off + 40;
        o->v6 = true;
        return true;
    }
    return false;
}

/* Linux's recalculate_partial_csum: the L4 checksum field := pseudo-header sum. */
static void pseudo_header_sum(uint8_t *f, size_t len, const struct nb_l4 *l, size_t at)
{
    uint32_t l4len = (uint32_t)(len - l->l4);
    uint32_t sum = l->v6 ? sum16(f + l->l3 + 8, 32, 0) : sum16(f + l->l3 + 12, 8, 0);
    sum += l->proto + (l4len >> 16) + (l4len & 0xffff);
    put16(f + at, fold(sum));
}

bool nb_tx_vnet_hdr(const struct nb_tx_pkt *p, uint8_t *frame, size_t len,
                    struct virtio_net_hdr *h)
{
    memset(h, 0, sizeof(*h));
    uint16_t flags = p->slots[0].flags;
    if (!(flags & NETTXF_csum_blank) && !p->has_gso) {
        if (flags & NETTXF_data_validated)
            h->flags = VIRTIO_NET_HDR_F_DATA_VALID;
        return true;
    }
    struct nb_l4 l;
    if (!locate_l4(frame, len, &l))
        return false;
    size_t csum_off;
    if (l.proto == 6 && len >= l.l4 + 20)
        csum_off = 16;
    else if (l.proto == 17 && len >= l.l4 + 8 && !p->has_gso)
        csum_off = 6;
    else
        return false;
    h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h->csum_start = (uint16_t)l.l4;
    h->csum_offset = (uint16_t)csum_off;
    if (!p->has_gso)
        return true;
    bool v6 = p->gso.u.gso.type == XEN_NETIF_GSO_TYPE_TCPV6;
    if (v6 != l.v6)
        return false;
    size_t doff = (size_t)(frame[l.l4 + 12] >> 4) * 4;
    if (doff < 20 || len < l.l4 + doff)
        return false;
    h->gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
    h->gso_size = p->gso.u.gso.size;
    h->hdr_len = (uint16_t)(l.l4 + doff);
    pseudo_header_sum(frame, len, &l, l.l4 + csum_off);
    return true;
}

/* ---- transmit (guest -> host) ------------------------------------------------------- */

static enum nb_verdict fatal(const char **why, const char *what)
{
    *why = what;
    return NB_PKT_FATAL;
}

/* Copy a ring slot out before looking at it: the guest may change it meanwhile. */
static void copy_slot(const netif_tx_back_ring_t *ring, RING_IDX i, void *out, size_t n)
{
    memcpy(out, RING_GET_REQUEST(ring, i), n);
}

/* The extra-info slots after the first request (XEN_NETIF_EXTRA_FLAG_MORE chained). */
static enum nb_verdict gather_extras(const netif_tx_back_ring_t *ring, RING_IDX avail,
                                     struct nb_tx_pkt *p, const char **why)
{
    unsigned n = 0;
    uint8_t more;
    do {
        if (p->nr_consumed >= avail)
            return fatal(why, "extra info beyond req_prod");
        if (n++ == NB_MAX_EXTRAS)
            return fatal(why, "too many extra info slots");
        struct netif_extra_info ex;
        copy_slot(ring, ring->req_cons + p->nr_consumed, &ex, sizeof(ex));
        p->is_extra[p->nr_consumed] = true;
        p->ids[p->nr_consumed++] = 0;
        if (ex.type == XEN_NETIF_EXTRA_TYPE_NONE || ex.type >= XEN_NETIF_EXTRA_TYPE_MAX)
            return fatal(why, "bad extra info type");
        if (ex.type == XEN_NETIF_EXTRA_TYPE_GSO) {
            if (ex.u.gso.size == 0)
                return fatal(why, "GSO size is zero");
            if (ex.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV4 &&
                ex.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV6)
                return fatal(why, "bad GSO type");
            p->gso = ex;
            p->has_gso = true;
        }
        more = ex.flags & XEN_NETIF_EXTRA_FLAG_MORE;
    } while (more);
    return NB_PKT_OK;
}

enum nb_verdict nb_tx_gather(const netif_tx_back_ring_t *ring, struct nb_tx_pkt *p,
                             const char **why)
{
    RING_IDX prod = __atomic_load_n(&ring->sring->req_prod, __ATOMIC_ACQUIRE);
    RING_IDX avail = prod - ring->req_cons;
    *why = NULL;
    if (avail > RING_SIZE(ring))
        return fatal(why, "req_prod further ahead than the ring is large");
    if (avail == 0)
        return NB_PKT_INCOMPLETE;
    p->nr_slots = 1;
    p->nr_consumed = 1;
    p->has_gso = false;
    copy_slot(ring, ring->req_cons, &p->slots[0], sizeof(p->slots[0]));
    p->ids[0] = p->slots[0].id;
    p->is_extra[0] = false;
    p->total = p->slots[0].size;
    if (p->slots[0].flags & NETTXF_extra_info) {
        enum nb_verdict v = gather_extras(ring, avail, p, why);
        if (v != NB_PKT_OK)
            return v;
    }
    uint32_t first_len = p->total;
    const char *drop = NULL;    /* a bad packet, not a broken ring: Linux drops it */
    for (uint16_t flags = p->slots[0].flags; flags & NETTXF_more_data;) {
        if (p->nr_consumed >= avail)
            return fatal(why, "more_data beyond req_prod");
        if (p->nr_slots == NB_FATAL_SLOTS)
            return fatal(why, "packet of too many slots");
        struct netif_tx_request *t = &p->slots[p->nr_slots++];
        copy_slot(ring, ring->req_cons + p->nr_consumed, t, sizeof(*t));
        p->is_extra[p->nr_consumed] = false;
        p->ids[p->nr_consumed++] = t->id;
        if (t->size > first_len && !drop)
            drop = "fragments larger than the packet";
        first_len -= t->size > first_len ? first_len : t->size;
        if ((uint32_t)t->offset + t->size > NB_PAGE_SIZE)
            return fatal(why, "fragment crosses a page boundary");
        flags = t->flags;
    }
    p->slots[0].size = (uint16_t)first_len;
    if ((uint32_t)p->slots[0].offset + first_len > NB_PAGE_SIZE)
        return fatal(why, "first slot crosses a page boundary");
    if (drop) {
        *why = drop;
        return NB_PKT_DROP;
    }
    if (p->nr_slots > NB_MAX_SLOTS) {
        *why = "more slots than XEN_NETBK_LEGACY_SLOTS_MAX";
        return NB_PKT_DROP;
    }
    if (p->total < NB_ETH_HLEN) {
        *why = "shorter than an Ethernet header";
        return NB_PKT_DROP;
    }
    return NB_PKT_OK;
}

/* Copy the packet's slots into frame; 1 done, 0 a grant did not map, -1 lost. */
static int tx_copy(const struct nb_tx_pkt *p, const struct nb_ops *ops, uint8_t *frame)
{
    size_t len = 0;
    for (unsigned i = 0; i < p->nr_slots; i++) {
        const struct netif_tx_request *t = &p->slots[i];
        uint64_t cookie = 0;
        const uint8_t *page = ops->map(ops->ctx, t->gref, true, &cookie);
        if (!page)
            return ops->lost && ops->lost(ops->ctx) ? -1 : 0;
        memcpy(frame + len, page + t->offset, t->size);
        ops->unmap(ops->ctx, (void *)page, cookie);
        len += t->size;
    }
    return 1;
}

static void tx_respond(netif_tx_back_ring_t *ring, const struct nb_tx_pkt *p, bool ok,
                       bool *notify)
{
    for (unsigned c = 0; c < p->nr_consumed; c++) {
        netif_tx_response_t *r = RING_GET_RESPONSE(ring, ring->rsp_prod_pvt);
        r->id = p->ids[c];
        r->status = p->is_extra[c] ? NETIF_RSP_NULL : ok ? NETIF_RSP_OKAY : NETIF_RSP_ERROR;
        ring->rsp_prod_pvt++;
    }
    ring->req_cons += p->nr_consumed;
    int ntf;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(ring, ntf);
    if (ntf)
        *notify = true;
}

#define NB_CREDIT_MAX_BURST 131072u

void nb_credit_init(struct nb_credit *c, uint64_t bytes, uint64_t usecs, uint64_t now_ns)
{
    c->per_interval = usecs ? bytes : 0;
    c->interval_ns = usecs * 1000;
    c->remaining = c->per_interval;
    c->next_refill_ns = now_ns + c->interval_ns;
    c->waits = 0;
}

void nb_credit_refill(struct nb_credit *c, uint64_t now_ns)
{
    if (!c->per_interval || now_ns < c->next_refill_ns)
        return;
    uint64_t cap = c->per_interval > NB_CREDIT_MAX_BURST ? c->per_interval
                                                         : NB_CREDIT_MAX_BURST;
    uint64_t intervals = (now_ns - c->next_refill_ns) / c->interval_ns + 1;
    uint64_t add = intervals > cap / c->per_interval + 1 ? cap : intervals * c->per_interval;
    c->remaining = c->remaining + add > cap ? cap : c->remaining + add;
    c->next_refill_ns += intervals * c->interval_ns;
}

/* May the packet go now? Takes its bytes from the credit if so. */
static bool credit_take(struct nb_credit *c, uint32_t bytes)
{
    if (!c || !c->per_interval)
        return true;
    if (bytes > c->remaining) {
        c->waits++;
        return false;
    }
    c->remaining -= bytes;
    return true;
}

enum nb_ring_state nb_tx_process(netif_tx_back_ring_t *ring, const struct nb_ops *ops,
                                 uint8_t *buf, unsigned budget, nb_deliver_fn *deliver,
                                 void *dctx, struct nb_stats *st,
                                 struct nb_credit *credit, bool *notify, const char **why)
{
    struct nb_tx_pkt p;
    *why = NULL;
    for (unsigned n = 0; n < budget;) {
        enum nb_verdict v = nb_tx_gather(ring, &p, why);
        if (v == NB_PKT_FATAL)
            return NB_RING_BROKEN;
        if (v == NB_PKT_INCOMPLETE) {
            int more;
            RING_FINAL_CHECK_FOR_REQUESTS(ring, more);
            if (!more)
                return NB_RING_IDLE;
            continue;
        }
        if (v == NB_PKT_OK && !credit_take(credit, p.total))
            return NB_RING_CREDIT;          /* nothing consumed: sent after the refill */
        n++;
        bool ok = v == NB_PKT_OK;
        uint8_t *frame = buf + NB_VNET_HDR_LEN;
        if (ok) {
            int c = tx_copy(&p, ops, frame);
            if (c < 0) {
                if (credit && credit->per_interval)
                    credit->remaining += p.total;
                return NB_RING_LOST;        /* nothing consumed: done again later */
            }
            ok = c == 1;
        }
        struct virtio_net_hdr h;
        if (ok && !nb_tx_vnet_hdr(&p, frame, p.total, &h))
            ok = false;
        if (ok) {
            memcpy(buf, &h, sizeof(h));
            deliver(dctx, buf, NB_VNET_HDR_LEN + p.total);
            st->tx_packets++;
            st->tx_bytes += p.total;
        } else {
            st->tx_dropped++;
        }
        tx_respond(ring, &p, ok, notify);
    }
    return NB_RING_MORE;
}

/* ---- receive (host -> guest) -------------------------------------------------------- */

/* May the frontend take this frame? Fills in a checksum it cannot take. */
static bool rx_acceptable(const struct nb_features *f, struct virtio_net_hdr *h,
                          uint8_t *frame, size_t flen, unsigned *data_slots, bool *gso)
{
    uint8_t g = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    *gso = g != VIRTIO_NET_HDR_GSO_NONE;
    if (*gso && !((g == VIRTIO_NET_HDR_GSO_TCPV4 && f->gso_tcpv4) ||
                  (g == VIRTIO_NET_HDR_GSO_TCPV6 && f->gso_tcpv6)) )
        return false;
    if (*gso && h->gso_size == 0)
        return false;
    if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !f->csum) {
        if (*gso || !nb_csum_fill(h, frame, flen))
            return false;
        h->flags = VIRTIO_NET_HDR_F_DATA_VALID;
    }
    *data_slots = (unsigned)((flen + NB_PAGE_SIZE - 1) / NB_PAGE_SIZE);
    return *data_slots == 1 || f->sg;
}

static void rx_extra(netif_rx_back_ring_t *ring, RING_IDX at, const struct virtio_net_hdr *h)
{
    struct netif_extra_info ex;
    memset(&ex, 0, sizeof(ex));
    ex.type = XEN_NETIF_EXTRA_TYPE_GSO;
    ex.u.gso.size = h->gso_size;
    ex.u.gso.type = (h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN) ==
                    VIRTIO_NET_HDR_GSO_TCPV6 ? XEN_NETIF_GSO_TYPE_TCPV6
                                             : XEN_NETIF_GSO_TYPE_TCPV4;
    memcpy(RING_GET_RESPONSE(ring, at), &ex, sizeof(ex));
}

/* Are `need` buffers posted? If not, ask to be told when they are (req_event). */
static enum nb_ring_state rx_room(netif_rx_back_ring_t *ring, unsigned need,
                                  const char **why)
{
    for (int pass = 0; pass < 2; pass++) {
        RING_IDX prod = __atomic_load_n(&ring->sring->req_prod, __ATOMIC_ACQUIRE);
        RING_IDX avail = prod - ring->req_cons;
        if (avail > RING_SIZE(ring)) {
            *why = "req_prod further ahead than the ring is large";
            return NB_RING_BROKEN;
        }
        if (avail >= need)
            return NB_RING_MORE;
        if (pass == 0) {
            ring->sring->req_event = ring->req_cons + need;
            xen_mb();
        }
    }
    return NB_RING_FULL;
}

enum nb_ring_state nb_rx_put(netif_rx_back_ring_t *ring, const struct nb_features *f,
                             const struct nb_ops *ops, uint8_t *pkt, size_t len,
                             struct nb_stats *st, bool *notify, const char **why)
{
    *why = NULL;
    struct virtio_net_hdr h;
    unsigned data_slots = 0;
    bool gso = false;
    if (len < NB_VNET_HDR_LEN + NB_ETH_HLEN || len > NB_VNET_HDR_LEN + NB_MAX_FRAME) {
        st->rx_dropped++;
        return NB_RING_MORE;
    }
    memcpy(&h, pkt, sizeof(h));
    uint8_t *frame = pkt + NB_VNET_HDR_LEN;
    size_t flen = len - NB_VNET_HDR_LEN;
    if (!rx_acceptable(f, &h, frame, flen, &data_slots, &gso)) {
        st->rx_dropped++;
        return NB_RING_MORE;
    }
    unsigned need = data_slots + (gso ? 1 : 0);
    enum nb_ring_state room = rx_room(ring, need, why);
    if (room != NB_RING_MORE)
        return room;
    uint16_t csum = (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
                        ? (NETRXF_csum_blank | NETRXF_data_validated)
                        : (h.flags & VIRTIO_NET_HDR_F_DATA_VALID) ? NETRXF_data_validated : 0;
    size_t off = 0;
    bool ok = true;
    for (unsigned k = 0, d = 0; k < need; k++) {
        RING_IDX at = ring->rsp_prod_pvt + k;
        if (gso && k == 1) {
            rx_extra(ring, at, &h);
            continue;
        }
        netif_rx_request_t req;
        memcpy(&req, RING_GET_REQUEST(ring, ring->req_cons + k), sizeof(req));
        size_t chunk = flen - off < NB_PAGE_SIZE ? flen - off : NB_PAGE_SIZE;
        uint64_t cookie = 0;
        uint8_t *page = ops->map(ops->ctx, req.gref, false, &cookie);
        if (!page && ops->lost && ops->lost(ops->ctx))
            return NB_RING_LOST;            /* nothing pushed: the frame stays ours */
        if (page) {
            memcpy(page, frame + off, chunk);
            ops->unmap(ops->ctx, page, cookie);
        } else {
            ok = false;
        }
        netif_rx_response_t *r = RING_GET_RESPONSE(ring, at);
        r->id = req.id;
        r->offset = 0;
        r->flags = (uint16_t)((d == 0 ? csum | (gso ? NETRXF_extra_info : 0) : 0) |
                              (d + 1 < data_slots ? NETRXF_more_data : 0));
        r->status = page ? (int16_t)chunk : NETIF_RSP_ERROR;
        off += chunk;
        d++;
    }
    ring->req_cons += need;
    ring->rsp_prod_pvt += need;
    int ntf;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(ring, ntf);
    if (ntf)
        *notify = true;
    if (ok) {
        st->rx_packets++;
        st->rx_bytes += flen;
    } else {
        st->rx_dropped++;
        *why = "an rx grant did not map";
    }
    return NB_RING_MORE;
}
