/*
 * A network frontend (one vif), with the xenbus handshake Linux's netfront does:
 *
 *   device/vif/<n>/backend          -> the backend's path; mac the guest's address
 *   watch <backend>/state, wait for InitWait (2)
 *   per queue: tx and rx ring pages granted, a port (or a tx and an rx port: split=1)
 *   transaction: one queue: tx-ring-ref, rx-ring-ref, event-channel (or
 *                event-channel-tx/-rx) in device/vif/<n>; N queues (the backend's
 *                multi-queue-max-queues >= N): multi-queue-num-queues=N and those nodes
 *                under queue-0/ .. queue-N-1/ (xen/io/netif.h); then request-rx-copy=1,
 *                feature-rx-notify=1, feature-sg=0, feature-no-csum-offload=1,
 *                state=Connected (4)
 *   wait for backend Connected (4), then post every rx buffer of every queue
 *
 * Frames are single-slot (no sg, no GSO): per queue, tx buffers are NF_TX pages
 * granted read-only once, rx buffers NF_RX pages granted writable once; a request's id
 * is its buffer's index, so the backend's echo names the buffer. The backend may
 * restart or move under us (netback re-attaches at rsp_prod): nothing to redo here.
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
#define GREF_BASE 160                   /* after blkfront's refs (32 .. 120) */
#define GREF_PER_Q (2 + NF_TX + NF_RX)
#define GREF_TX_RING(q) (GREF_BASE + GREF_PER_Q * (q))
#define GREF_RX_RING(q) (GREF_TX_RING(q) + 1)
#define GREF_TX(q) (GREF_TX_RING(q) + 2)
#define GREF_RX(q) (GREF_TX(q) + NF_TX)
#define STATE_TIMEOUT_MS 30000

struct nf_queue_mem {
    uint8_t tx_ring_page[PAGE_SIZE];
    uint8_t rx_ring_page[PAGE_SIZE];
    uint8_t tx_bufs[NF_TX][PAGE_SIZE];
    uint8_t rx_bufs[NF_RX][PAGE_SIZE];
};
static struct nf_queue_mem qmem[NF_MAX_QUEUES] __attribute__((aligned(4096)));
static netif_tx_front_ring_t txr[NF_MAX_QUEUES];
static netif_rx_front_ring_t rxr[NF_MAX_QUEUES];
static bool tx_busy[NF_MAX_QUEUES][NF_TX];
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

static void count_event(uint32_t port, void *arg)
{
    (void)port;
    ((struct netfront *)arg)->events++;
}

static int alloc_ports(struct netfront *nf, struct netfront_queue *q)
{
    long rc = evtchn_alloc_unbound(nf->backend_id, &q->tx_port);
    if (rc)
        return (int)rc;
    evtchn_attach(q->tx_port, 0, count_event, nf);
    q->rx_port = q->tx_port;
    if (nf->split) {
        if ((rc = evtchn_alloc_unbound(nf->backend_id, &q->rx_port)))
            return (int)rc;
        evtchn_attach(q->rx_port, 0, count_event, nf);
    }
    return 0;
}

/* Queue i's rings, granted, and its port(s). */
static int queue_setup(struct netfront *nf, unsigned i)
{
    struct nf_queue_mem *m = &qmem[i];
    memset(m->tx_ring_page, 0, PAGE_SIZE);
    memset(m->rx_ring_page, 0, PAGE_SIZE);
    SHARED_RING_INIT((netif_tx_sring_t *)m->tx_ring_page);
    SHARED_RING_INIT((netif_rx_sring_t *)m->rx_ring_page);
    FRONT_RING_INIT(&txr[i], (netif_tx_sring_t *)m->tx_ring_page, PAGE_SIZE);
    FRONT_RING_INIT(&rxr[i], (netif_rx_sring_t *)m->rx_ring_page, PAGE_SIZE);
    memset(tx_busy[i], 0, sizeof(tx_busy[i]));
    gnttab_grant(GREF_TX_RING(i), m->tx_ring_page, nf->backend_id, false);
    gnttab_grant(GREF_RX_RING(i), m->rx_ring_page, nf->backend_id, false);
    for (unsigned k = 0; k < NF_TX; k++)
        gnttab_grant(GREF_TX(i) + k, m->tx_bufs[k], nf->backend_id, true);
    for (unsigned k = 0; k < NF_RX; k++)
        gnttab_grant(GREF_RX(i) + k, m->rx_bufs[k], nf->backend_id, false);
    return alloc_ports(nf, &nf->q[i]);
}

/* Queue i's nodes in dir (the vif's own, or its queue-i/). */
static int write_queue(struct netfront *nf, uint32_t tx, const char *dir, unsigned i)
{
    char p[200];
    snprintf(p, sizeof(p), "%s/tx-ring-ref", dir);
    int rc = xs_printf(tx, p, "%u", GREF_TX_RING(i));
    snprintf(p, sizeof(p), "%s/rx-ring-ref", dir);
    rc = rc ? rc : xs_printf(tx, p, "%u", GREF_RX_RING(i));
    if (nf->split) {
        snprintf(p, sizeof(p), "%s/event-channel-tx", dir);
        rc = rc ? rc : xs_printf(tx, p, "%u", nf->q[i].tx_port);
        snprintf(p, sizeof(p), "%s/event-channel-rx", dir);
        rc = rc ? rc : xs_printf(tx, p, "%u", nf->q[i].rx_port);
    } else {
        snprintf(p, sizeof(p), "%s/event-channel", dir);
        rc = rc ? rc : xs_printf(tx, p, "%u", nf->q[i].tx_port);
    }
    return rc;
}

/* Rings, port(s), and the Connected transaction (retried on EAGAIN). */
static int publish(struct netfront *nf, unsigned num_queues_node)
{
    static const char *const flags[][2] = {
        { "request-rx-copy", "1" }, { "feature-rx-notify", "1" }, { "feature-sg", "0" },
        { "feature-gso-tcpv4", "0" }, { "feature-no-csum-offload", "1" },
    };
    char p[200], dir[200];
    int rc;

    for (unsigned i = 0; i < nf->nr_queues; i++)
        if ((rc = queue_setup(nf, i)))
            return rc;
    for (unsigned tries = 0;; tries++) {
        uint32_t tx;
        if ((rc = xs_transaction_start(&tx)))
            return rc;
        rc = 0;
        /* As Linux's netfront: the node only for more than one queue. */
        if (num_queues_node > 1) {
            snprintf(p, sizeof(p), "%s/multi-queue-num-queues", nf->front);
            rc = xs_printf(tx, p, "%u", num_queues_node);
        }
        for (unsigned i = 0; i < nf->nr_queues; i++) {
            if (nf->nr_queues > 1)
                snprintf(dir, sizeof(dir), "%s/queue-%u", nf->front, i);
            else
                snprintf(dir, sizeof(dir), "%s", nf->front);
            rc = rc ? rc : write_queue(nf, tx, dir, i);
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

static void rx_post(unsigned q, unsigned id)
{
    netif_rx_request_t *r = RING_GET_REQUEST(&rxr[q], rxr[q].req_prod_pvt);
    r->id = (uint16_t)id;
    r->gref = GREF_RX(q) + id;
    rxr[q].req_prod_pvt++;
}

static void rx_push(struct netfront *nf, unsigned q)
{
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rxr[q], notify);
    if (notify)
        evtchn_send(nf->q[q].rx_port);
}

int netfront_connect(struct netfront *nf, unsigned handle, bool split, unsigned queues)
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
    if (gnttab_nr_entries < GREF_RX(NF_MAX_QUEUES - 1) + NF_RX)
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
    snprintf(p, sizeof(p), "%s/state", nf->back);
    if ((rc = xs_watch(p, "netfront-be", NULL, NULL)))
        return rc;
    long st = wait_backend(nf, 1u << XenbusStateInitWait, STATE_TIMEOUT_MS);
    if (st < 0)
        return (int)st;
    nf->max_queues = path_u64(nf->back, "multi-queue-max-queues", &v) ? 1 : (unsigned)v;
    bool unchecked = queues & NETFRONT_QUEUES_UNCHECKED;
    queues &= ~NETFRONT_QUEUES_UNCHECKED;
    nf->nr_queues = queues < 1 ? 1 : queues;
    if (nf->nr_queues > nf->max_queues && !unchecked)
        nf->nr_queues = nf->max_queues ? nf->max_queues : 1;
    if (nf->nr_queues > NF_MAX_QUEUES)
        nf->nr_queues = NF_MAX_QUEUES;
    if ((rc = publish(nf, unchecked ? queues : nf->nr_queues)))
        return rc;
    st = wait_backend(nf, 1u << XenbusStateConnected | 1u << XenbusStateClosing |
                      1u << XenbusStateClosed, STATE_TIMEOUT_MS);
    if (st < 0)
        return (int)st;
    if (st != XenbusStateConnected)
        return -XEN_EIO;
    for (unsigned q = 0; q < nf->nr_queues; q++) {
        for (unsigned i = 0; i < NF_RX; i++)
            rx_post(q, i);
        rx_push(nf, q);
    }
    printf("xkvm-guest: netfront: %s -> %s, mac %s, %u of %u queues, port%s %u/%u\n",
           nf->front, nf->back, mac, nf->nr_queues, nf->max_queues, split ? "s" : "",
           nf->q[0].tx_port, nf->q[0].rx_port);
    return 0;
}

/* Take queue q's tx responses: their buffers are free again. */
static void tx_collect(struct netfront *nf, unsigned q)
{
    netif_tx_front_ring_t *r = &txr[q];
    int more;
    do {
        RING_IDX rp = r->sring->rsp_prod;
        rmb();
        if (rp - r->rsp_cons > RING_SIZE(r))
            xtest_fail("netfront: queue %u: tx rsp_prod %u rsp_cons %u", q, rp,
                       r->rsp_cons);
        while (r->rsp_cons != rp) {
            netif_tx_response_t *rsp = RING_GET_RESPONSE(r, r->rsp_cons++);
            if (rsp->status == NETIF_RSP_NULL)
                continue;
            if (rsp->id >= NF_TX || !tx_busy[q][rsp->id]) {
                nf->stray++;
                continue;
            }
            tx_busy[q][rsp->id] = false;
            if (rsp->status != NETIF_RSP_OKAY)
                nf->tx_errors++;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(r, more);
    } while (more);
}

int netfront_send(struct netfront *nf, unsigned q, const void *frame, size_t len)
{
    if (len < 14 || len > PAGE_SIZE || q >= nf->nr_queues)
        return -XEN_EINVAL;
    uint64_t deadline = xen_time_ns() + 5000000000ULL;
    for (;;) {
        tx_collect(nf, q);
        for (unsigned id = 0; id < NF_TX; id++) {
            if (tx_busy[q][id])
                continue;
            memcpy(qmem[q].tx_bufs[id], frame, len);
            tx_busy[q][id] = true;
            netif_tx_request_t *r = RING_GET_REQUEST(&txr[q], txr[q].req_prod_pvt++);
            r->gref = GREF_TX(q) + id;
            r->offset = 0;
            r->flags = 0;
            r->id = (uint16_t)id;
            r->size = (uint16_t)len;
            int notify;
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&txr[q], notify);
            if (notify)
                evtchn_send(nf->q[q].tx_port);
            nf->tx_packets++;
            nf->q[q].tx_packets++;
            return 0;
        }
        if (xen_time_ns() >= deadline)
            return -XEN_ETIMEDOUT;
        uint64_t seen = nf->events;
        wait_ge(&nf->events, seen + 1, 100);
    }
}

/* One response off queue q's rx ring into buf: its length (0: none or bad), *took. */
static int rx_take(struct netfront *nf, unsigned q, void *buf, size_t len, bool *took)
{
    netif_rx_front_ring_t *rr = &rxr[q];
    RING_IDX rp = rr->sring->rsp_prod;
    rmb();
    if (rp - rr->rsp_cons > RING_SIZE(rr))
        xtest_fail("netfront: queue %u: rx rsp_prod %u rsp_cons %u", q, rp, rr->rsp_cons);
    *took = rr->rsp_cons != rp;
    if (!*took)
        return 0;
    netif_rx_response_t *r = RING_GET_RESPONSE(rr, rr->rsp_cons++);
    unsigned id = r->id;
    int n = 0;
    if (id >= NF_RX || (r->flags & (NETRXF_more_data | NETRXF_extra_info)) ||
        r->status <= 0 || r->offset + (unsigned)r->status > PAGE_SIZE) {
        nf->rx_errors++;
    } else {
        n = r->status < (int)len ? r->status : (int)len;
        memcpy(buf, qmem[q].rx_bufs[id] + r->offset, (size_t)n);
        nf->rx_packets++;
        nf->q[q].rx_packets++;
    }
    rx_post(q, id < NF_RX ? id : 0);
    rx_push(nf, q);
    return n;
}

/* One received frame into buf: its length, 0 if none came in timeout_ms. */
int netfront_recv(struct netfront *nf, void *buf, size_t len, uint64_t timeout_ms,
                  unsigned *qout)
{
    uint64_t deadline = xen_time_ns() + timeout_ms * 1000000ULL;
    for (unsigned next = 0;; next++) {
        uint64_t seen = nf->events;
        bool any = false;
        /* Round-robin from a rotating start, so no queue starves the others. */
        for (unsigned k = 0; k < nf->nr_queues; k++) {
            unsigned q = (next + k) % nf->nr_queues;
            bool took;
            int n = rx_take(nf, q, buf, len, &took);
            if (n) {
                if (qout)
                    *qout = q;
                return n;
            }
            int more = 0;
            if (!took)
                RING_FINAL_CHECK_FOR_RESPONSES(&rxr[q], more);
            any |= took || more;
        }
        if (any)
            continue;
        for (unsigned q = 0; q < nf->nr_queues; q++)
            tx_collect(nf, q);
        if (xen_time_ns() >= deadline)
            return 0;
        wait_ge(&nf->events, seen + 1, 50);
    }
}

/* Hostile: publish a tx producer index further ahead than the ring is large. */
void netfront_break_tx(struct netfront *nf)
{
    netif_tx_front_ring_t *r = &txr[0];
    r->sring->req_prod = r->req_prod_pvt + 2 * RING_SIZE(r);
    xen_mb();
    evtchn_send(nf->q[0].tx_port);
}
