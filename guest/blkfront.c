/*
 * A block frontend (one device), with the xenbus handshake Linux's blkfront does:
 *
 *   device/vbd/<devid>/backend        -> the backend's path, backend-id its domain
 *   watch <backend>/state, wait for InitWait (2)
 *   ring page granted to the backend, a port allocated unbound for it
 *   transaction: ring-ref, event-channel, protocol=x86_64-abi, feature-persistent=1,
 *                state=Initialised (3)       (retried on EAGAIN)
 *   wait for backend Connected (4): sectors, sector-size, feature-flush-cache
 *   state=Connected (4)
 *
 * Data moves through a fixed pool of pages (BF_REQS requests x 11 segments), each
 * granted to the backend once and never revoked, so a backend that keeps its
 * mappings (feature-persistent) and one that maps per request both work. Requests
 * are batched: blkfront_io puts up to BF_REQS requests on the ring, notifies when
 * RING_PUSH_REQUESTS_AND_CHECK_NOTIFY says so, and collects the responses (event on
 * the port, or a 100 ms re-check).
 *
 * A backend restarted under us: while responses are missing the port is notified
 * again every second, and the backend's state is read; if the backend went back to
 * InitWait (a new backend starting the handshake over) the frontend redoes the
 * handshake with a fresh ring and port and resubmits the requests still unanswered,
 * as Linux's blkif_recover does.
 */
#include "pv.h"
#include "xtest.h"

/* ring.h's barriers, for the x86 memory model: only a store followed by a load
 * needs a fence; loads are not reordered with loads, nor stores with stores. */
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() barrier()
#define xen_wmb() barrier()
#define rmb() xen_rmb()
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>

#define BF_REQS 8
#define BF_SEGS BLKIF_MAX_SEGMENTS_PER_REQUEST          /* 11 */
#define BF_PAGES (BF_REQS * BF_SEGS)
#define SECT_PER_PAGE (PAGE_SIZE / 512)
#define GREF_RING 32                    /* refs < 8 are the toolstack's; tests use 8.. */
#define GREF_DATA 33
#define IO_TIMEOUT_MS 120000
#define STATE_TIMEOUT_MS 30000

static uint8_t ring_page[PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t data_pages[BF_PAGES][PAGE_SIZE] __attribute__((aligned(4096)));
static blkif_front_ring_t fr;
static grant_entry_v1_t *gt;

/* The batch in flight: the requests as sent (for resubmission) and which are done. */
static blkif_request_t shadow[BF_REQS];
static bool done[BF_REQS];
static int16_t status[BF_REQS];

void *blkfront_buffer(size_t *bytes)
{
    *bytes = sizeof(data_pages);
    return data_pages;
}

static void path(char *buf, size_t len, const char *base, const char *leaf)
{
    snprintf(buf, len, "%s/%s", base, leaf);
}

static int read_state(const char *base, uint64_t *state)
{
    char p[200];

    path(p, sizeof(p), base, "state");
    return xs_read_u64(0, p, state);
}

static int switch_state(struct blkfront *bf, unsigned state)
{
    char p[200];

    path(p, sizeof(p), bf->front, "state");
    return xs_printf(0, p, "%u", state);
}

/* Wait until the backend's state satisfies want (a bit per XenbusState). Returns the
 * state, or -errno. Woken by the watch on <backend>/state. */
static long wait_backend(struct blkfront *bf, unsigned want_mask, uint64_t ms)
{
    return xenbus_wait_backend(bf->back, "blkfront-be", "blkfront", want_mask, ms);
}

/* Ring + port + the Initialised transaction. */
static int publish(struct blkfront *bf)
{
    char p[200];
    int rc;

    memset(ring_page, 0, sizeof(ring_page));
    blkif_sring_t *sring = (blkif_sring_t *)ring_page;

    SHARED_RING_INIT(sring);
    FRONT_RING_INIT(&fr, sring, PAGE_SIZE);
    bf->ring_ref = GREF_RING;
    gnttab_grant(GREF_RING, ring_page, bf->backend_id, false);
    if (bf->port) {
        evtchn_detach(bf->port);
        evtchn_close(bf->port);
    }
    long lrc = evtchn_alloc_unbound(bf->backend_id, &bf->port);

    if (lrc)
        return (int)lrc;
    evtchn_attach(bf->port, 0, NULL, NULL);

    for (unsigned tries = 0;; tries++) {
        uint32_t tx;

        if ((rc = xs_transaction_start(&tx)))
            return rc;
        path(p, sizeof(p), bf->front, "ring-ref");
        if (!(rc = xs_printf(tx, p, "%u", bf->ring_ref))) {
            path(p, sizeof(p), bf->front, "event-channel");
            rc = xs_printf(tx, p, "%u", bf->port);
        }
        if (!rc) {
            path(p, sizeof(p), bf->front, "protocol");
            rc = xs_write(tx, p, XEN_IO_PROTO_ABI_X86_64);
        }
        if (!rc) {
            path(p, sizeof(p), bf->front, "feature-persistent");
            rc = xs_write(tx, p, "1");
        }
        if (!rc) {
            path(p, sizeof(p), bf->front, "state");
            rc = xs_printf(tx, p, "%u", XenbusStateInitialised);
        }
        if (rc) {
            xs_transaction_end(tx, false);
            return rc;
        }
        rc = xs_transaction_end(tx, true);
        if (rc != -XEN_EAGAIN || tries >= 10)
            return rc;
    }
}

/* After backend Connected: what it tells us, then our Connected. */
static int finish_connect(struct blkfront *bf)
{
    char p[200];
    uint64_t v;
    int rc;

    path(p, sizeof(p), bf->back, "sectors");
    if ((rc = xs_read_u64(0, p, &bf->sectors)))
        return rc;
    path(p, sizeof(p), bf->back, "sector-size");
    bf->sector_size = xs_read_u64(0, p, &v) ? 512 : (uint32_t)v;
    path(p, sizeof(p), bf->back, "feature-flush-cache");
    bf->flush = !xs_read_u64(0, p, &v) && v;
    path(p, sizeof(p), bf->back, "feature-persistent");
    bf->persistent = !xs_read_u64(0, p, &v) && v;
    return switch_state(bf, XenbusStateConnected);
}

static int handshake(struct blkfront *bf)
{
    long st = wait_backend(bf, 1u << XenbusStateInitWait, STATE_TIMEOUT_MS);

    if (st < 0)
        return (int)st;
    int rc = publish(bf);

    if (rc) {
        printf("xkvm-guest: blkfront: publishing ring: %s\n", xs_errname(rc));
        return rc;
    }
    st = wait_backend(bf, 1u << XenbusStateConnected | 1u << XenbusStateClosing |
                      1u << XenbusStateClosed, STATE_TIMEOUT_MS);
    if (st < 0)
        return (int)st;
    if (st != XenbusStateConnected) {
        printf("xkvm-guest: blkfront: backend went to state %ld instead of Connected\n", st);
        return -XEN_EIO;
    }
    return finish_connect(bf);
}

int blkfront_connect(struct blkfront *bf, unsigned devid)
{
    char p[200];
    uint64_t v;
    int rc;

    memset(bf, 0, sizeof(*bf));
    bf->devid = devid;
    if ((rc = xenbus_init()))
        return rc;
    if (!gt && !(gt = gnttab_init()))
        return -XEN_EIO;
    if (gnttab_nr_entries < GREF_DATA + BF_PAGES)
        return -XEN_ENOSPC;
    snprintf(bf->front, sizeof(bf->front), "device/vbd/%u", devid);
    path(p, sizeof(p), bf->front, "backend");
    rc = xs_read(0, p, bf->back, sizeof(bf->back));
    if (rc < 0) {
        printf("xkvm-guest: blkfront: %s: %s\n", p, xs_errname(rc));
        return rc;
    }
    path(p, sizeof(p), bf->front, "backend-id");
    bf->backend_id = xs_read_u64(0, p, &v) ? 0 : (domid_t)v;
    for (unsigned i = 0; i < BF_PAGES; i++)
        gnttab_grant(GREF_DATA + i, data_pages[i], bf->backend_id, false);

    path(p, sizeof(p), bf->back, "state");
    if ((rc = xs_watch(p, "blkfront-be", NULL, NULL)))
        return rc;
    printf("xkvm-guest: blkfront: %s -> %s (domain %u)\n", bf->front, bf->back,
           bf->backend_id);
    if ((rc = handshake(bf)))
        return rc;
    printf("xkvm-guest: blkfront: connected: %lu sectors of %u bytes, ring-ref %u, "
           "port %u, flush %d, persistent %d\n", (unsigned long)bf->sectors,
           bf->sector_size, bf->ring_ref, bf->port, bf->flush, bf->persistent);
    return 0;
}

/* ---- requests ------------------------------------------------------------------------- */
static void push(struct blkfront *bf, const blkif_request_t *req)
{
    *RING_GET_REQUEST(&fr, fr.req_prod_pvt) = *req;
    fr.req_prod_pvt++;
    bf->nr_requests++;
}

static void kick(struct blkfront *bf)
{
    int notify;

    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fr, notify);
    if (notify)
        evtchn_send(bf->port);
}

/* The backend restarted and asks for the handshake again: new ring, resubmit. */
static int recover(struct blkfront *bf, unsigned n)
{
    printf("xkvm-guest: blkfront: backend back in InitWait: reconnecting\n");
    bf->nr_reconnects++;
    int rc = handshake(bf);

    if (rc)
        return rc;
    for (unsigned i = 0; i < n; i++)
        if (!done[i])
            push(bf, &shadow[i]);
    kick(bf);
    return 0;
}

/* Collect the responses to the n requests of the batch. */
static int collect(struct blkfront *bf, unsigned n)
{
    unsigned got = 0;
    uint64_t now = xen_time_ns(), deadline = now + IO_TIMEOUT_MS * 1000000ULL;
    uint64_t last_progress = now;

    for (;;) {
        uint64_t seen = evtchn_count[bf->port];
        int more;

        do {
            RING_IDX rp = fr.sring->rsp_prod;

            rmb();
            if (rp - fr.rsp_cons > RING_SIZE(&fr))
                xtest_fail("blkfront: rsp_prod %u rsp_cons %u", rp, fr.rsp_cons);
            while (fr.rsp_cons != rp) {
                blkif_response_t *r = RING_GET_RESPONSE(&fr, fr.rsp_cons);

                fr.rsp_cons++;
                if (r->id >= n || done[r->id]) {
                    printf("xkvm-guest: blkfront: stray response id %lu\n",
                           (unsigned long)r->id);
                    continue;
                }
                done[r->id] = true;
                status[r->id] = r->status;
                got++;
                last_progress = xen_time_ns();
            }
            RING_FINAL_CHECK_FOR_RESPONSES(&fr, more);
        } while (more);
        if (got == n)
            return 0;

        now = xen_time_ns();
        if (now >= deadline) {
            printf("xkvm-guest: blkfront: %u of %u responses after %u ms (req_prod %u "
                   "rsp_prod %u)\n", got, n, IO_TIMEOUT_MS, fr.sring->req_prod,
                   fr.sring->rsp_prod);
            return -XEN_ETIMEDOUT;
        }
        if (now - last_progress >= 1000000000ULL) {
            uint64_t st = 0;

            last_progress = now;
            evtchn_send(bf->port);      /* a lost notification (backend restart) */
            if (!read_state(bf->back, &st) && st == XenbusStateInitWait) {
                int rc = recover(bf, n);

                if (rc)
                    return rc;
            }
            xs_poll();                  /* keep the watch queue drained */
        }
        wait_ge(&evtchn_count[bf->port], seen + 1, 100);
    }
}

static int batch(struct blkfront *bf, uint8_t op, uint64_t sector, unsigned nr)
{
    unsigned n = 0, page = 0;

    while (nr || (op == BLKIF_OP_FLUSH_DISKCACHE && !n)) {
        blkif_request_t *req = &shadow[n];

        memset(req, 0, sizeof(*req));
        req->operation = op;
        req->handle = (blkif_vdev_t)bf->devid;
        req->id = n;
        req->sector_number = sector;
        while (nr && req->nr_segments < BF_SEGS) {
            unsigned s = nr < SECT_PER_PAGE ? nr : SECT_PER_PAGE;
            struct blkif_request_segment *seg = &req->seg[req->nr_segments++];

            seg->gref = GREF_DATA + page++;
            seg->first_sect = 0;
            seg->last_sect = (uint8_t)(s - 1);
            sector += s;
            nr -= s;
        }
        done[n] = false;
        push(bf, req);
        n++;
    }
    kick(bf);
    int rc = collect(bf, n);

    if (rc)
        return rc;
    for (unsigned i = 0; i < n; i++) {
        if (status[i] != BLKIF_RSP_OKAY) {
            printf("xkvm-guest: blkfront: op %u sector %lu: status %d\n", op,
                   (unsigned long)shadow[i].sector_number, status[i]);
            return status[i] == BLKIF_RSP_EOPNOTSUPP ? -XEN_EOPNOTSUPP : -XEN_EIO;
        }
    }
    return 0;
}

int blkfront_io(struct blkfront *bf, bool write, uint64_t sector, unsigned nr)
{
    if ((uint64_t)nr * 512 > sizeof(data_pages) || sector + nr > bf->sectors)
        return -XEN_EINVAL;
    if (!nr)
        return 0;
    return batch(bf, write ? BLKIF_OP_WRITE : BLKIF_OP_READ, sector, nr);
}

int blkfront_flush(struct blkfront *bf)
{
    if (!bf->flush)
        return 0;
    return batch(bf, BLKIF_OP_FLUSH_DISKCACHE, 0, 0);
}

void blkfront_disconnect(struct blkfront *bf)
{
    char p[200];

    if (switch_state(bf, XenbusStateClosing))
        return;
    long st = wait_backend(bf, 1u << XenbusStateClosing | 1u << XenbusStateClosed, 5000);

    switch_state(bf, XenbusStateClosed);
    path(p, sizeof(p), bf->back, "state");
    xs_unwatch(p, "blkfront-be");
    printf("xkvm-guest: blkfront: closed (backend state %ld), %lu requests, "
           "%lu reconnects\n", st, (unsigned long)bf->nr_requests,
           (unsigned long)bf->nr_reconnects);
}
