/*
 * A network frontend (one vif), with the xenbus handshake Linux's netfront does:
 *
 *   device/vif/<n>/backend          -> the backend's path; mac the guest's address
 *   watch <backend>/state, wait for InitWait (2)
 *   tx and rx ring pages granted, a port (or a tx and an rx port: split=1) unbound
 *   transaction: tx-ring-ref, rx-ring-ref, event-channel (or event-channel-tx/-rx),
 *                request-rx-copy=1, feature-rx-notify=1, feature-sg=0,
 *                feature-no-csum-offload=1, state=Connected (4)
 *   wait for backend Connected (4), then post every rx buffer
 *
 * Frames are single-slot (no sg, no GSO): tx buffers are NF_TX pages granted
 * read-only once, rx buffers NF_RX pages granted writable once; a request's id is its
 * buffer's index, so the backend's echo names the buffer. The backend may restart
 * or move under us (netback re-attaches at rsp_prod): nothing to redo here.
 */
#include "pv.h"
#include "xtest.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() barrier()
#define xen_wmb() barrier()
#define rmb() xen_rmb()
#include <xen/io/netif.h>
#include <xen/io/xenbus.h>

#define NF_TX 16
#define NF_RX 32
#define GREF_TX_RING 160                /* after blkfront's refs (32 .. 120) */
#define GREF_RX_RING 161
#define GREF_TX 162
#define GREF_RX (GREF_TX + NF_TX)
#define STATE_TIMEOUT_MS 30000

static uint8_t tx_ring_page[PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t rx_ring_page[PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t tx_bufs[NF_TX][PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t rx_bufs[NF_RX][PAGE_SIZE] __attribute__((aligned(4096)));
static netif_tx_front_ring_t txr;
static netif_rx_front_ring_t rxr;
static bool tx_busy[NF_TX];
static grant_entry_v1_t *gt;

static int path_u64(const char *base, const char *leaf, uint64_t *v)
{
    char p[200];
    snprintf(p, sizeof(p), "%s/%s", base, leaf);
    return xs_read_u64(0, p, v);
}

static long wait_backend(struct netfront *nf, unsigned want_mask, uint64_t ms)
{
    return xenbus_wait_backend(nf->back, "netfront-be", "netfront", want_mask, ms);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[i * 3 + k];
            unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                       : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                       : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
            if (d > 15)
                return -XEN_EINVAL;
            v = v * 16 + d;
        }
        if (i < 5 && s[i * 3 + 2] != ':')
            return -XEN_EINVAL;
        mac[i] = (uint8_t)v;
    }
    return 0;
}

static int alloc_ports(struct netfront *nf)
{
    long rc = evtchn_alloc_unbound(nf->backend_id, &nf->tx_port);
    if (rc)
        return (int)rc;
    evtchn_attach(nf->tx_port, 0, NULL, NULL);
    nf->rx_port = nf->tx_port;
    if (nf->split) {
        if ((rc = evtchn_alloc_unbound(nf->backend_id, &nf->rx_port)))
            return (int)rc;
        evtchn_attach(nf->rx_port, 0, NULL, NULL);
    }
    return 0;
}

/* Rings, port(s), and the Connected transaction (retried on EAGAIN). */
static int publish(struct netfront *nf)
{
    static const char *const flags[][2] = {
        { "request-rx-copy", "1" }, { "feature-rx-notify", "1" }, { "feature-sg", "0" },
        { "feature-gso-tcpv4", "0" }, { "feature-no-csum-offload", "1" },
    };
    char p[200];
    int rc;

    memset(tx_ring_page, 0, sizeof(tx_ring_page));
    memset(rx_ring_page, 0, sizeof(rx_ring_page));
    SHARED_RING_INIT((netif_tx_sring_t *)tx_ring_page);
    SHARED_RING_INIT((netif_rx_sring_t *)rx_ring_page);
    FRONT_RING_INIT(&txr, (netif_tx_sring_t *)tx_ring_page, PAGE_SIZE);
    FRONT_RING_INIT(&rxr, (netif_rx_sring_t *)rx_ring_page, PAGE_SIZE);
    gnttab_grant(GREF_TX_RING, tx_ring_page, nf->backend_id, false);
    gnttab_grant(GREF_RX_RING, rx_ring_page, nf->backend_id, false);
    if ((rc = alloc_ports(nf)))
        return rc;
    for (unsigned tries = 0;; tries++) {
        uint32_t tx;
        if ((rc = xs_transaction_start(&tx)))
            return rc;
        snprintf(p, sizeof(p), "%s/tx-ring-ref", nf->front);
        rc = xs_printf(tx, p, "%u", GREF_TX_RING);
        snprintf(p, sizeof(p), "%s/rx-ring-ref", nf->front);
        rc = rc ? rc : xs_printf(tx, p, "%u", GREF_RX_RING);
        if (nf->split) {
            snprintf(p, sizeof(p), "%s/event-channel-tx", nf->front);
            rc = rc ? rc : xs_printf(tx, p, "%u", nf->tx_port);
            snprintf(p, sizeof(p), "%s/event-channel-rx", nf->front);
            rc = rc ? rc : xs_printf(tx, p, "%u", nf->rx_port);
        } else {
            snprintf(p, sizeof(p), "%s/event-channel", nf->front);
            rc = rc ? rc : xs_printf(tx, p, "%u", nf->tx_port);
        }
        for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
            snprintf(p, sizeof(p), "%s/%s", nf->front, flags[i][0]);
            rc = rc ? rc : xs_write(tx, p, flags[i][1]);
        }
        snprintf(p, sizeof(p), "%s/state", nf->front);
        rc = rc ? rc : xs_printf(tx, p, "%u", XenbusStateConnected);
        if (rc) {
            xs_transaction_end(tx, false);
            return rc;
        }
        rc = xs_transaction_end(tx, true);
        if (rc != -XEN_EAGAIN || tries >= 10)
            return rc;
    }
}

static void rx_post(unsigned id)
{
    netif_rx_request_t *r = RING_GET_REQUEST(&rxr, rxr.req_prod_pvt);
    r->id = (uint16_t)id;
    r->gref = GREF_RX + id;
    rxr.req_prod_pvt++;
}

static void rx_push(struct netfront *nf)
{
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rxr, notify);
    if (notify)
        evtchn_send(nf->rx_port);
}

int netfront_connect(struct netfront *nf, unsigned handle, bool split)
{
    char p[200], mac[32];
    uint64_t v;
    int rc;

    memset(nf, 0, sizeof(*nf));
    nf->handle = handle;
    nf->split = split;
    if ((rc = xenbus_init()))
        return rc;
    if (!gt && !(gt = gnttab_init()))
        return -XEN_EIO;
    if (gnttab_nr_entries < GREF_RX + NF_RX)
        return -XEN_ENOSPC;
    snprintf(nf->front, sizeof(nf->front), "device/vif/%u", handle);
    snprintf(p, sizeof(p), "%s/backend", nf->front);
    if ((rc = xs_read(0, p, nf->back, sizeof(nf->back))) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/mac", nf->front);
    if ((rc = xs_read(0, p, mac, sizeof(mac))) < 0)
        return rc;
    if ((rc = parse_mac(mac, nf->mac)))
        return rc;
    nf->backend_id = path_u64(nf->front, "backend-id", &v) ? 0 : (domid_t)v;
    for (unsigned i = 0; i < NF_TX; i++)
        gnttab_grant(GREF_TX + i, tx_bufs[i], nf->backend_id, true);
    for (unsigned i = 0; i < NF_RX; i++)
        gnttab_grant(GREF_RX + i, rx_bufs[i], nf->backend_id, false);
    snprintf(p, sizeof(p), "%s/state", nf->back);
    if ((rc = xs_watch(p, "netfront-be", NULL, NULL)))
        return rc;
    long st = wait_backend(nf, 1u << XenbusStateInitWait, STATE_TIMEOUT_MS);
    if (st < 0)
        return (int)st;
    if ((rc = publish(nf)))
        return rc;
    st = wait_backend(nf, 1u << XenbusStateConnected | 1u << XenbusStateClosing |
                      1u << XenbusStateClosed, STATE_TIMEOUT_MS);
    if (st < 0)
        return (int)st;
    if (st != XenbusStateConnected)
        return -XEN_EIO;
    for (unsigned i = 0; i < NF_RX; i++)
        rx_post(i);
    rx_push(nf);
    printf("xkvm-guest: netfront: %s -> %s, mac %s, port%s %u/%u\n", nf->front, nf->back,
           mac, split ? "s" : "", nf->tx_port, nf->rx_port);
    return 0;
}

/* Take tx responses: their buffers are free again. */
static void tx_collect(struct netfront *nf)
{
    int more;
    do {
        RING_IDX rp = txr.sring->rsp_prod;
        rmb();
        if (rp - txr.rsp_cons > RING_SIZE(&txr))
            xtest_fail("netfront: tx rsp_prod %u rsp_cons %u", rp, txr.rsp_cons);
        while (txr.rsp_cons != rp) {
            netif_tx_response_t *r = RING_GET_RESPONSE(&txr, txr.rsp_cons++);
            if (r->status == NETIF_RSP_NULL)
                continue;
            if (r->id >= NF_TX || !tx_busy[r->id]) {
                nf->stray++;
                continue;
            }
            tx_busy[r->id] = false;
            if (r->status != NETIF_RSP_OKAY)
                nf->tx_errors++;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(&txr, more);
    } while (more);
}

int netfront_send(struct netfront *nf, const void *frame, size_t len)
{
    if (len < 14 || len > PAGE_SIZE)
        return -XEN_EINVAL;
    uint64_t deadline = xen_time_ns() + 5000000000ULL;
    for (;;) {
        tx_collect(nf);
        for (unsigned id = 0; id < NF_TX; id++) {
            if (tx_busy[id])
                continue;
            memcpy(tx_bufs[id], frame, len);
            tx_busy[id] = true;
            netif_tx_request_t *r = RING_GET_REQUEST(&txr, txr.req_prod_pvt++);
            r->gref = GREF_TX + id;
            r->offset = 0;
            r->flags = 0;
            r->id = (uint16_t)id;
            r->size = (uint16_t)len;
            int notify;
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&txr, notify);
            if (notify)
                evtchn_send(nf->tx_port);
            nf->tx_packets++;
            return 0;
        }
        if (xen_time_ns() >= deadline)
            return -XEN_ETIMEDOUT;
        uint64_t seen = evtchn_count[nf->tx_port];
        wait_ge(&evtchn_count[nf->tx_port], seen + 1, 100);
    }
}

/* One received frame into buf: its length, 0 if none came in timeout_ms. */
int netfront_recv(struct netfront *nf, void *buf, size_t len, uint64_t timeout_ms)
{
    uint64_t deadline = xen_time_ns() + timeout_ms * 1000000ULL;
    for (;;) {
        uint64_t seen = evtchn_count[nf->rx_port];
        int more;
        RING_IDX rp = rxr.sring->rsp_prod;
        rmb();
        if (rp - rxr.rsp_cons > RING_SIZE(&rxr))
            xtest_fail("netfront: rx rsp_prod %u rsp_cons %u", rp, rxr.rsp_cons);
        if (rxr.rsp_cons != rp) {
            netif_rx_response_t *r = RING_GET_RESPONSE(&rxr, rxr.rsp_cons++);
            unsigned id = r->id;
            int n = 0;
            if (id >= NF_RX || (r->flags & (NETRXF_more_data | NETRXF_extra_info)) ||
                r->status <= 0 || r->offset + (unsigned)r->status > PAGE_SIZE) {
                nf->rx_errors++;
            } else {
                n = r->status < (int)len ? r->status : (int)len;
                memcpy(buf, rx_bufs[id] + r->offset, (size_t)n);
                nf->rx_packets++;
            }
            rx_post(id < NF_RX ? id : 0);
            rx_push(nf);
            if (n)
                return n;
            continue;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(&rxr, more);
        if (more)
            continue;
        tx_collect(nf);
        if (xen_time_ns() >= deadline)
            return 0;
        wait_ge(&evtchn_count[nf->rx_port], seen + 1, 50);
    }
}

/* Hostile: publish a tx producer index further ahead than the ring is large. */
void netfront_break_tx(struct netfront *nf)
{
    txr.sring->req_prod = txr.req_prod_pvt + 2 * RING_SIZE(&txr);
    xen_mb();
    evtchn_send(nf->tx_port);
}
