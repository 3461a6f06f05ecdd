/* A vif's connection and packet thread: see device.h. */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "util/clock.h"
#include "util/daemon.h"
#include "util/log.h"

/* Packets moved each way before looking at stop requests and the other way again. */
#define NB_BUDGET 64
/* How often an idle thread checks that xkvmd and the domain are still there (ms). */
#define NB_LIVENESS_MS 1000
/* QEMU's announce-self: 3 RARPs, 50 ms after connecting, then 100 and 150 ms apart. */
#define NB_ANNOUNCES 3
#define NB_ANNOUNCE_FIRST_MS 50
#define NB_ANNOUNCE_STEP_MS 50

static void note_failure(struct nb_queue *q)
{
    switch (errno) {
    case EPIPE: case ECONNRESET: case ENOTCONN: case EPROTO: case EAGAIN:
    case EBADF: case ECONNREFUSED: case ESRCH:
        q->map_lost = true;
        break;
    default:
        break;
    }
}

static void *op_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    struct nb_queue *q = ctx;
    uint32_t handle;
    void *p = dom0_map_grant(q->conn, q->d->xb.domid, ref, ro, &handle);
    if (!p) {
        note_failure(q);
        return NULL;
    }
    *cookie = handle;
    return p;
}

static void op_unmap(void *ctx, void *page, uint64_t cookie)
{
    struct nb_queue *q = ctx;
    dom0_unmap_grant(q->conn, q->d->xb.domid, (uint32_t)cookie, page);
}

static bool op_lost(void *ctx)
{
    return ((struct nb_queue *)ctx)->map_lost;
}

/* A guest frame to the host, out of its queue's TAP queue: whole or not at all. */
static void to_tap(void *ctx, const uint8_t *buf, size_t len)
{
    struct nb_queue *q = ctx;
    if (write(q->tap_fd, buf, len) != (ssize_t)len)
        q->stats.tx_dropped++;
}

static void queue_init(struct nb_dev *d, struct nb_queue *q, unsigned idx)
{
    memset(q, 0, sizeof(*q));
    q->d = d;
    q->idx = idx;
    q->tap_fd = q->tx_to = q->tx_from = q->rx_to = q->rx_from = -1;
}

void dev_init(struct nb_dev *d)
{
    d->claim_fd = d->stop_fd = d->stats_fd = -1;
    for (unsigned i = 0; i < NB_MAX_QUEUES; i++)
        queue_init(d, &d->q[i], i);
}

bool dev_tap_is_open(const struct nb_dev *d)
{
    return d->q[0].tap_fd >= 0;
}

int dev_open_tap(struct nb_dev *d, unsigned nr_queues)
{
    if (dev_tap_is_open(d))
        return 0;
    snprintf(d->ifname, sizeof(d->ifname), "vif%u.%u", d->xb.domid, d->xb.devid);
    if (d->claim_fd < 0) {
        int c = tap_claim(d->ifname);
        if (c < 0)
            return c;
        d->claim_fd = c;
    }
    int fd = tap_open(d->ifname);
    if (fd < 0)
        return fd;
    d->q[0].tap_fd = fd;
    /*
     * Every queue a frontend may ask for is opened now, by name, while the device is
     * surely in our namespace (the toolstack may move it elsewhere): they wait detached.
     */
    for (unsigned i = 1; i < nr_queues && i < NB_MAX_QUEUES; i++) {
        struct nb_queue *q = &d->q[i];
        if ((q->tap_fd = tap_open(d->ifname)) < 0 || tap_queue_attach(q->tap_fd, false)) {
            log_warn("netback: %u/%u: %s: opening queue %u: %s", d->xb.domid, d->xb.devid,
                     d->ifname, i, q->tap_fd < 0 ? strerror(-q->tap_fd) : "detach failed");
            if (q->tap_fd >= 0)
                close(q->tap_fd);
            q->tap_fd = -1;
            break;
        }
        q->tap_detached = true;
    }
    int rc = tap_up(d->ifname, d->bridge);
    if (rc == -ENODEV && d->bridge[0])
        log_warn("netback: %u/%u: no bridge %s: %s stays on its own", d->xb.domid,
                 d->xb.devid, d->bridge, d->ifname);
    else if (rc)
        log_warn("netback: %u/%u: bringing %s up: %s", d->xb.domid, d->xb.devid, d->ifname,
                 strerror(-rc));
    log_info("netback: %u/%u: TAP device %s%s%s", d->xb.domid, d->xb.devid, d->ifname,
             d->bridge[0] && !rc ? " on bridge " : "",
             d->bridge[0] && !rc ? d->bridge : "");
    return 0;
}

static void kick(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
        log_warn("netback: notify: %m");
}

static void drain(int fd)
{
    uint64_t cnt;
    if (fd >= 0 && read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn("netback: read event: %m");
}

static void stop_with(struct nb_dev *d, int why)
{
    int none = XB_STOP_NONE;
    atomic_compare_exchange_strong(&d->stop_reason, &none, why);
    kick(d->wake_fd);
    kick(d->stop_fd);               /* the other queues' threads stop too */
}

/* One round of both directions. Returns the ring state that ends the thread, or
 * NB_RING_IDLE / NB_RING_MORE; *rx_full while the frontend has no buffers,
 * *tx_wait while the rate limit holds the next packet back. */
static enum nb_ring_state pump(struct nb_queue *q, const struct nb_ops *ops, bool *rx_full,
                               bool *tx_wait)
{
    struct nb_dev *d = q->d;
    bool ntf_tx = false, ntf_rx = false, busy = false;
    const char *why = NULL;
    nb_credit_refill(&q->credit, mono_ns());
    enum nb_ring_state st = nb_tx_process(&q->tx, ops, q->txbuf, NB_BUDGET, to_tap, q,
                                          &q->stats, &q->credit, &ntf_tx, &why);
    if (st == NB_RING_BROKEN || st == NB_RING_LOST)
        goto out;
    busy = st == NB_RING_MORE;
    *tx_wait = st == NB_RING_CREDIT;
    for (unsigned n = 0; n < NB_BUDGET; n++) {
        if (!q->rx_pending) {
            ssize_t r = read(q->tap_fd, q->rxbuf, NB_FRAME_BUF);
            if (r <= 0)
                break;
            q->rx_pending = (size_t)r;
        }
        st = nb_rx_put(&q->rx, &d->rp.f, ops, q->rxbuf, q->rx_pending, &q->stats, &ntf_rx,
                       &why);
        if (st == NB_RING_FULL) {
            *rx_full = true;
            break;
        }
        if (st == NB_RING_BROKEN || st == NB_RING_LOST)
            goto out;
        *rx_full = false;
        q->rx_pending = 0;
        if (n + 1 == NB_BUDGET)
            busy = true;
    }
    st = busy ? NB_RING_MORE : NB_RING_IDLE;
out:
    if (ntf_tx)
        kick(q->tx_to);
    if (ntf_rx && (!ntf_tx || q->rx_to != q->tx_to))
        kick(q->rx_to);
    if (st == NB_RING_BROKEN)
        log_err("netback: %u/%u: frontend broke the ring (queue %u): %s: halting it",
                d->xb.domid, d->xb.devid, q->idx, why ? why : "?");
    return st;
}

/* Liveness when idle: is xkvmd there, and the domain? false: stop (reason set). */
static bool still_there(struct nb_queue *q)
{
    struct nb_dev *d = q->d;
    struct xkvm_dom0_domain_info info;
    int rc = dom0_domain_info(q->conn, d->xb.domid, false, &info);
    if (rc == -ESRCH) {
        stop_with(d, XB_STOP_GONE);
        return false;
    }
    if (rc) {
        log_warn("netback: %u/%u: dom0 connection: %s", d->xb.domid, d->xb.devid,
                 strerror(-rc));
        stop_with(d, XB_STOP_LOST);
        return false;
    }
    return true;
}

/* Queue 0 announces; the others never do. */
static int announce_due(struct nb_queue *q, unsigned *sent, uint64_t *next_ns)
{
    if (q->idx != 0 || *sent >= NB_ANNOUNCES)
        return NB_LIVENESS_MS;
    uint64_t now = mono_ns();
    if (now >= *next_ns) {
        if (tap_announce(q->tap_fd, q->d->mac) == 0)
            q->d->announces++;
        (*sent)++;
        *next_ns = now + (uint64_t)(NB_ANNOUNCE_FIRST_MS + NB_ANNOUNCE_STEP_MS * *sent) *
                         1000000ull;
        if (*sent >= NB_ANNOUNCES)
            return NB_LIVENESS_MS;
    }
    return (int)((*next_ns - now) / 1000000ull) + 1;
}

/* How long to sleep at most: the announce, the liveness check or the rate limit. */
static int wait_ms(struct nb_queue *q, int timeout, bool tx_wait, bool *liveness)
{
    *liveness = timeout == NB_LIVENESS_MS && q->idx == 0;
    if (tx_wait) {                      /* back when the rate limit refills */
        uint64_t now = mono_ns(), at = q->credit.next_refill_ns;
        int ms = at > now ? (int)((at - now + 999999) / 1000000) : 0;
        if (ms < timeout) {
            timeout = ms;
            *liveness = false;
        }
    }
    return timeout;
}

/* Sleep until something for this queue; false: stop (reason set, or asked). */
static bool queue_wait(struct nb_queue *q, int timeout, bool liveness, bool tx_wait,
                       bool *rx_full)
{
    struct nb_dev *d = q->d;
    struct pollfd pf[5] = {
        { .fd = d->stop_fd, .events = POLLIN },
        { .fd = dom0_fileno(q->conn), .events = POLLRDHUP },
        { .fd = tx_wait ? -1 : q->tx_from, .events = POLLIN },
        { .fd = q->rx_from != q->tx_from ? q->rx_from : -1, .events = POLLIN },
        { .fd = *rx_full ? -1 : q->tap_fd, .events = POLLIN },
    };
    int n = poll(pf, 5, timeout);
    if (n < 0 && errno != EINTR) {
        stop_with(d, XB_STOP_LOST);
        return false;
    }
    if (pf[0].revents)
        return false;
    if (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        log_info("netback: %u/%u: xkvmd went away: re-attaching when it is back",
                 d->xb.domid, d->xb.devid);
        stop_with(d, XB_STOP_LOST);
        return false;
    }
    if (pf[2].revents & POLLIN) {
        drain(q->tx_from);
        *rx_full = false;               /* one channel for both: maybe rx buffers */
    }
    if (pf[3].revents & POLLIN) {
        drain(q->rx_from);
        *rx_full = false;
    }
    return !(n == 0 && liveness && !still_there(q));
}

/*
 * The vif's traffic so far, for `xkvm top` (xkvmd sums a domain's files into its list
 * reply, as blkback's vbd-D-N): RUNDIR/stats/vif-DOMID-HANDLE holds "TX_BYTES RX_BYTES
 * TX_PACKETS RX_PACKETS" as the guest sees them (tx: what it sent), summed over the
 * queues, rewritten in place by queue 0's thread at most once a second while
 * connected, and removed at disconnect.
 */
#define STATS_EVERY_NS 1000000000ull

static void stats_path(const struct nb_dev *d, char *path, size_t len)
{
    snprintf(path, len, "%s/stats/vif-%u-%u", d->rundir, d->xb.domid, d->xb.devid);
}

static void stats_open(struct nb_dev *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stats", d->rundir);
    mkdir(path, 0700);
    stats_path(d, path, sizeof(path));
    d->stats_fd = daemon_open_private(path, O_WRONLY);
    if (d->stats_fd < 0)
        d->stats_fd = -1;       /* statistics only: serve on without */
    d->stats_at_ns = 0;
}

static void stats_write(struct nb_dev *d, bool now)
{
    uint64_t t = mono_ns();
    if (d->stats_fd < 0 || (!now && t - d->stats_at_ns < STATS_EVERY_NS))
        return;
    uint64_t v[4] = { 0 };
    for (unsigned i = 0; i < d->rp.nr_queues; i++) {   /* other queues' counts: a glimpse */
        const struct nb_stats *st = &d->q[i].stats;
        v[0] += __atomic_load_n(&st->tx_bytes, __ATOMIC_RELAXED);
        v[1] += __atomic_load_n(&st->rx_bytes, __ATOMIC_RELAXED);
        v[2] += __atomic_load_n(&st->tx_packets, __ATOMIC_RELAXED);
        v[3] += __atomic_load_n(&st->rx_packets, __ATOMIC_RELAXED);
    }
    char line[96];
    int n = snprintf(line, sizeof(line), "%20llu %20llu %20llu %20llu\n",
                     (unsigned long long)v[0], (unsigned long long)v[1],
                     (unsigned long long)v[2], (unsigned long long)v[3]);
    if (pwrite(d->stats_fd, line, (size_t)n, 0) == n)
        d->stats_at_ns = t;
}

static void stats_close(struct nb_dev *d)
{
    if (d->stats_fd < 0)
        return;
    close(d->stats_fd);
    d->stats_fd = -1;
    char path[PATH_MAX];
    stats_path(d, path, sizeof(path));
    unlink(path);
}

static void *packet_thread(void *arg)
{
    struct nb_queue *q = arg;
    struct nb_dev *d = q->d;
    const struct nb_ops ops = { .ctx = q, .map = op_map, .unmap = op_unmap,
                                .lost = op_lost };
    bool rx_full = false, tx_wait = false, liveness;
    unsigned announced = 0;
    uint64_t next_announce = mono_ns() + NB_ANNOUNCE_FIRST_MS * 1000000ull;
    /* Requests produced while nobody served the rings are served now; kick once. */
    kick(q->tx_to);
    if (q->rx_to != q->tx_to)
        kick(q->rx_to);
    for (;;) {
        if (atomic_load(&d->stop_reason) != XB_STOP_NONE)
            return NULL;
        enum nb_ring_state st = pump(q, &ops, &rx_full, &tx_wait);
        if (st == NB_RING_BROKEN) {
            stop_with(d, XB_STOP_BROKEN);
            return NULL;
        }
        if (st == NB_RING_LOST) {
            log_warn("netback: %u/%u: lost the dom0 connection mid-packet", d->xb.domid,
                     d->xb.devid);
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (q->idx == 0)
            stats_write(d, false);
        int timeout = announce_due(q, &announced, &next_announce);
        if (st == NB_RING_MORE)
            continue;
        timeout = wait_ms(q, timeout, tx_wait, &liveness);
        if (!queue_wait(q, timeout, liveness, tx_wait, &rx_full))
            return NULL;
    }
}

static void *map_ring(struct nb_queue *q, grant_ref_t ref, uint32_t *handle)
{
    return dom0_map_grant(q->conn, q->d->xb.domid, ref, false, handle);
}

/* Map a queue's rings and bind its port(s); 0 or -errno with d->xb.fail_step. */
static int attach_rings(struct nb_queue *q, const struct nb_queue_params *qp)
{
    struct nb_dev *d = q->d;
    d->xb.fail_step = "map the tx ring";
    if (!(q->tx_sring = map_ring(q, qp->tx_ref, &q->tx_handle)))
        return -errno;
    d->xb.fail_step = "map the rx ring";
    if (!(q->rx_sring = map_ring(q, qp->rx_ref, &q->rx_handle)))
        return -errno;
    d->xb.fail_step = "bind the event channel";
    int rc = dom0_bind_evtchn(q->conn, d->xb.domid, qp->tx_port, &q->tx_to, &q->tx_from);
    if (rc)
        return rc;
    if (qp->split) {
        d->xb.fail_step = "bind the rx event channel";
        if ((rc = dom0_bind_evtchn(q->conn, d->xb.domid, qp->rx_port, &q->rx_to,
                                   &q->rx_from)))
            return rc;
    } else {
        q->rx_to = q->tx_to;
        q->rx_from = q->tx_from;
    }
    /* Where the previous backend (or nobody, for new rings) left off: rsp_prod. */
    netif_tx_sring_t *ts = q->tx_sring;
    netif_rx_sring_t *rs = q->rx_sring;
    BACK_RING_ATTACH(&q->tx, ts, __atomic_load_n(&ts->rsp_prod, __ATOMIC_ACQUIRE),
                     NB_PAGE_SIZE);
    BACK_RING_ATTACH(&q->rx, rs, __atomic_load_n(&rs->rsp_prod, __ATOMIC_ACQUIRE),
                     NB_PAGE_SIZE);
    return 0;
}

/* Queues beyond n (a frontend that came back with fewer) give their TAP queue back. */
/*
 * Queues n.. (never queue 0) lose their buffers; their TAP queue is closed (close_fd),
 * or stays open but detached, getting no frame, for a connection with fewer queues.
 */
static void drop_tap_queues_from(struct nb_dev *d, unsigned n, bool close_fd)
{
    for (unsigned i = n ? n : 1; i < NB_MAX_QUEUES; i++) {
        struct nb_queue *q = &d->q[i];
        if (close_fd && q->tap_fd >= 0) {
            close(q->tap_fd);
            q->tap_fd = -1;
            q->tap_detached = false;
        } else if (q->tap_fd >= 0 && !q->tap_detached) {
            q->tap_detached = tap_queue_attach(q->tap_fd, false) == 0;
        }
        free(q->txbuf);
        free(q->rxbuf);
        q->txbuf = q->rxbuf = NULL;
        q->rx_pending = 0;
    }
}

/* Queue idx's buffers and TAP queue (kept across connections), its dom0 connection,
 * rings and ports. 0 or -errno with d->xb.fail_step. */
static int queue_connect(struct nb_dev *d, struct nb_queue *q)
{
    const struct nb_queue_params *qp = &d->rp.q[q->idx];
    q->tx_sring = q->rx_sring = NULL;
    q->map_lost = false;
    q->tx_to = q->tx_from = q->rx_to = q->rx_from = -1;
    /* A TAP frame read but not yet put in the ring when the connection was lost
     * (xkvmd live-updated) stays pending: it goes in first after re-attaching. */
    d->xb.fail_step = "allocate buffers";
    if (!q->txbuf && !(q->txbuf = malloc(NB_FRAME_BUF)))
        return -ENOMEM;
    if (!q->rxbuf) {
        if (!(q->rxbuf = malloc(NB_FRAME_BUF)))
            return -ENOMEM;
        q->rx_pending = 0;
    }
    d->xb.fail_step = "open a TAP queue";
    if (q->tap_fd >= 0 && q->tap_detached) {
        int rc = tap_queue_attach(q->tap_fd, true);
        if (rc)
            return rc;
        q->tap_detached = false;
    }
    if (q->tap_fd < 0 && (q->tap_fd = tap_open(d->ifname)) < 0) {
        int rc = q->tap_fd;
        q->tap_fd = -1;
        return rc;
    }
    char name[40];
    if (q->idx == 0)
        snprintf(name, sizeof(name), "netback-%u-%u", d->xb.domid, d->xb.devid);
    else
        snprintf(name, sizeof(name), "netback-%u-%u-q%u", d->xb.domid, d->xb.devid, q->idx);
    d->xb.fail_step = "connect to xkvmd";
    if (!(q->conn = dom0_connect(d->rundir, name)))
        return -errno;
    int rc = attach_rings(q, qp);
    if (rc)
        return rc;
    nb_credit_init(&q->credit, d->rp.rate_bytes, d->rp.rate_usec, mono_ns());
    return 0;
}

static void log_connected(struct nb_dev *d)
{
    const struct nb_ring_params *rp = &d->rp;
    for (unsigned i = 0; i < rp->nr_queues; i++) {
        const struct nb_queue *q = &d->q[i];
        const struct nb_queue_params *qp = &rp->q[i];
        log_info("netback: %u/%u: connected: queue %u of %u: tx at %u, rx at %u, port%s "
                 "%u/%u, sg %d, gso %d/%d, csum %d, rate %llu bytes per %u us",
                 d->xb.domid, d->xb.devid, i, rp->nr_queues, q->tx.rsp_prod_pvt,
                 q->rx.rsp_prod_pvt, qp->split ? "s" : "", qp->tx_port, qp->rx_port,
                 rp->f.sg, rp->f.gso_tcpv4, rp->f.gso_tcpv6, rp->f.csum,
                 (unsigned long long)rp->rate_bytes, rp->rate_usec);
    }
}

int dev_connect(struct nb_dev *d, const struct nb_ring_params *rp)
{
    if (d->xb.connected)
        return 0;
    int rc;
    d->stop_fd = -1;
    atomic_store(&d->stop_reason, XB_STOP_NONE);
    d->rp = *rp;
    drop_tap_queues_from(d, rp->nr_queues, false);
    d->xb.connected = true;        /* from here dev_disconnect cleans up what there is */
    for (unsigned i = 0; i < rp->nr_queues; i++)
        if ((rc = queue_connect(d, &d->q[i])))
            goto fail;
    d->xb.fail_step = "set the TAP offloads";
    if ((rc = tap_set_offload(d->q[0].tap_fd, rp->f.csum, rp->f.gso_tcpv4 && rp->f.sg,
                              rp->f.gso_tcpv6 && rp->f.sg)))
        goto fail;
    if ((d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        goto fail;
    }
    stats_open(d);
    for (unsigned i = 0; i < rp->nr_queues; i++) {
        if ((rc = -pthread_create(&d->q[i].thread, NULL, packet_thread, &d->q[i])))
            goto fail;
        d->q[i].has_thread = true;
    }
    log_connected(d);
    return 0;
fail:
    dev_disconnect(d);
    return rc;
}

static void log_queue_stats(const struct nb_dev *d, const struct nb_queue *q)
{
    log_info("netback: %u/%u: queue %u: tx %llu packets %llu bytes %llu dropped, rx %llu "
             "packets %llu bytes %llu dropped, %llu rate waits", d->xb.domid, d->xb.devid,
             q->idx, (unsigned long long)q->stats.tx_packets,
             (unsigned long long)q->stats.tx_bytes,
             (unsigned long long)q->stats.tx_dropped,
             (unsigned long long)q->stats.rx_packets,
             (unsigned long long)q->stats.rx_bytes,
             (unsigned long long)q->stats.rx_dropped, (unsigned long long)q->credit.waits);
}

/* The vif's totals (every queue's), then each queue's when there are several. */
static void log_disconnected(const struct nb_dev *d)
{
    struct nb_stats t = { 0 };
    uint64_t waits = 0;
    for (unsigned i = 0; i < d->rp.nr_queues; i++) {
        const struct nb_queue *q = &d->q[i];
        t.tx_packets += q->stats.tx_packets, t.tx_bytes += q->stats.tx_bytes;
        t.tx_dropped += q->stats.tx_dropped, t.rx_packets += q->stats.rx_packets;
        t.rx_bytes += q->stats.rx_bytes, t.rx_dropped += q->stats.rx_dropped;
        waits += q->credit.waits;
        if (d->rp.nr_queues > 1)
            log_queue_stats(d, q);
    }
    log_info("netback: %u/%u: disconnected (tx %llu packets %llu bytes %llu dropped, "
             "rx %llu packets %llu bytes %llu dropped, %llu announces, %llu rate "
             "waits)", d->xb.domid, d->xb.devid, (unsigned long long)t.tx_packets,
             (unsigned long long)t.tx_bytes, (unsigned long long)t.tx_dropped,
             (unsigned long long)t.rx_packets, (unsigned long long)t.rx_bytes,
             (unsigned long long)t.rx_dropped, (unsigned long long)d->announces,
             (unsigned long long)waits);
}

/* Unmap, unbind and close one queue's connection; its TAP queue and buffers stay. */
static void queue_release(struct nb_dev *d, struct nb_queue *q)
{
    const struct nb_queue_params *qp = &d->rp.q[q->idx];
    if (q->conn) {
        if (q->tx_sring)
            dom0_unmap_grant(q->conn, d->xb.domid, q->tx_handle, q->tx_sring);
        if (q->rx_sring)
            dom0_unmap_grant(q->conn, d->xb.domid, q->rx_handle, q->rx_sring);
        if (q->tx_to >= 0)
            dom0_unbind_evtchn(q->conn, d->xb.domid, qp->tx_port);
        if (qp->split && q->rx_to >= 0)
            dom0_unbind_evtchn(q->conn, d->xb.domid, qp->rx_port);
        dom0_close(q->conn);
    }
    q->conn = NULL;
    q->tx_sring = q->rx_sring = NULL;
    int fds[] = { q->tx_to, q->tx_from, qp->split ? q->rx_to : -1,
                  qp->split ? q->rx_from : -1 };
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    q->tx_to = q->tx_from = q->rx_to = q->rx_from = -1;
}

void dev_disconnect(struct nb_dev *d)
{
    if (!d->xb.connected)
        return;
    bool served = d->q[0].has_thread;
    if (served) {
        int none = XB_STOP_NONE;
        atomic_compare_exchange_strong(&d->stop_reason, &none, XB_STOP_ASKED);
        kick(d->stop_fd);
    }
    for (unsigned i = 0; i < d->rp.nr_queues; i++) {
        struct nb_queue *q = &d->q[i];
        if (q->has_thread) {
            pthread_join(q->thread, NULL);
            q->has_thread = false;
        }
    }
    if (served)
        log_disconnected(d);
    stats_close(d);
    for (unsigned i = 0; i < d->rp.nr_queues; i++)
        queue_release(d, &d->q[i]);
    if (d->stop_fd >= 0)
        close(d->stop_fd);
    d->stop_fd = -1;
    d->xb.connected = false;
}

int dev_stop_reason(struct nb_dev *d)
{
    return atomic_load(&d->stop_reason);
}

void dev_free(struct nb_dev *d, bool remove)
{
    dev_disconnect(d);
    drop_tap_queues_from(d, 1, true);
    if (remove)
        tap_destroy(d->q[0].tap_fd);
    else if (d->q[0].tap_fd >= 0)
        close(d->q[0].tap_fd);
    if (d->claim_fd >= 0)
        close(d->claim_fd);
    free(d->q[0].txbuf);
    free(d->q[0].rxbuf);
    free(d);
}
