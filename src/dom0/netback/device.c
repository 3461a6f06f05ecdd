/* A vif's connection and packet thread: see device.h. */
#include "device.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "util/clock.h"
#include "util/log.h"

/* Packets moved each way before looking at stop requests and the other way again. */
#define NB_BUDGET 64
/* How often an idle thread checks that xkvmd and the domain are still there (ms). */
#define NB_LIVENESS_MS 1000
/* QEMU's announce-self: 3 RARPs, 50 ms after connecting, then 100 and 150 ms apart. */
#define NB_ANNOUNCES 3
#define NB_ANNOUNCE_FIRST_MS 50
#define NB_ANNOUNCE_STEP_MS 50

static void note_failure(struct nb_dev *d)
{
    switch (errno) {
    case EPIPE: case ECONNRESET: case ENOTCONN: case EPROTO: case EAGAIN:
    case EBADF: case ECONNREFUSED: case ESRCH:
        d->map_lost = true;
        break;
    default:
        break;
    }
}

static void *op_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    struct nb_dev *d = ctx;
    uint32_t handle;
    void *p = dom0_map_grant(d->conn, d->xb.domid, ref, ro, &handle);
    if (!p) {
        note_failure(d);
        return NULL;
    }
    *cookie = handle;
    return p;
}

static void op_unmap(void *ctx, void *page, uint64_t cookie)
{
    struct nb_dev *d = ctx;
    dom0_unmap_grant(d->conn, d->xb.domid, (uint32_t)cookie, page);
}

static bool op_lost(void *ctx)
{
    return ((struct nb_dev *)ctx)->map_lost;
}

/* A guest frame to the host: the TAP takes it whole or not at all. */
static void to_tap(void *ctx, const uint8_t *buf, size_t len)
{
    struct nb_dev *d = ctx;
    if (write(d->tap_fd, buf, len) != (ssize_t)len)
        d->stats.tx_dropped++;
}

int dev_open_tap(struct nb_dev *d)
{
    if (d->tap_fd >= 0)
        return 0;
    snprintf(d->ifname, sizeof(d->ifname), "vif%u.%u", d->xb.domid, d->xb.devid);
    int fd = tap_open(d->ifname);
    if (fd < 0)
        return fd;
    d->tap_fd = fd;
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
}

/* One round of both directions. Returns the ring state that ends the thread, or
 * NB_RING_IDLE / NB_RING_MORE; *rx_full while the frontend has no buffers,
 * *tx_wait while the rate limit holds the next packet back. */
static enum nb_ring_state pump(struct nb_dev *d, const struct nb_ops *ops, bool *rx_full,
                               bool *tx_wait)
{
    bool ntf_tx = false, ntf_rx = false, busy = false;
    const char *why = NULL;
    nb_credit_refill(&d->credit, mono_ns());
    enum nb_ring_state st = nb_tx_process(&d->tx, ops, d->txbuf, NB_BUDGET, to_tap, d,
                                          &d->stats, &d->credit, &ntf_tx, &why);
    if (st == NB_RING_BROKEN || st == NB_RING_LOST)
        goto out;
    busy = st == NB_RING_MORE;
    *tx_wait = st == NB_RING_CREDIT;
    for (unsigned n = 0; n < NB_BUDGET; n++) {
        if (!d->rx_pending) {
            ssize_t r = read(d->tap_fd, d->rxbuf, NB_FRAME_BUF);
            if (r <= 0)
                break;
            d->rx_pending = (size_t)r;
        }
        st = nb_rx_put(&d->rx, &d->rp.f, ops, d->rxbuf, d->rx_pending, &d->stats, &ntf_rx,
                       &why);
        if (st == NB_RING_FULL) {
            *rx_full = true;
            break;
        }
        if (st == NB_RING_BROKEN || st == NB_RING_LOST)
            goto out;
        *rx_full = false;
        d->rx_pending = 0;
        if (n + 1 == NB_BUDGET)
            busy = true;
    }
    st = busy ? NB_RING_MORE : NB_RING_IDLE;
out:
    if (ntf_tx)
        kick(d->tx_to);
    if (ntf_rx && (!ntf_tx || d->rx_to != d->tx_to))
        kick(d->rx_to);
    if (st == NB_RING_BROKEN)
        log_err("netback: %u/%u: frontend broke the ring: %s: halting it", d->xb.domid,
                d->xb.devid, why ? why : "?");
    return st;
}

/* Liveness when idle: is xkvmd there, and the domain? false: stop (reason set). */
static bool still_there(struct nb_dev *d)
{
    struct xkvm_dom0_domain_info info;
    int rc = dom0_domain_info(d->conn, d->xb.domid, false, &info);
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

static int announce_due(struct nb_dev *d, unsigned *sent, uint64_t *next_ns)
{
    if (*sent >= NB_ANNOUNCES)
        return NB_LIVENESS_MS;
    uint64_t now = mono_ns();
    if (now >= *next_ns) {
        if (tap_announce(d->tap_fd, d->mac) == 0)
            d->announces++;
        (*sent)++;
        *next_ns = now + (uint64_t)(NB_ANNOUNCE_FIRST_MS + NB_ANNOUNCE_STEP_MS * *sent) *
                         1000000ull;
        if (*sent >= NB_ANNOUNCES)
            return NB_LIVENESS_MS;
    }
    return (int)((*next_ns - now) / 1000000ull) + 1;
}

static void *packet_thread(void *arg)
{
    struct nb_dev *d = arg;
    const struct nb_ops ops = { .ctx = d, .map = op_map, .unmap = op_unmap, .lost = op_lost };
    bool rx_full = false, tx_wait = false;
    unsigned announced = 0;
    uint64_t next_announce = mono_ns() + NB_ANNOUNCE_FIRST_MS * 1000000ull;
    /* Requests produced while nobody served the rings are served now; kick once. */
    kick(d->tx_to);
    if (d->rx_to != d->tx_to)
        kick(d->rx_to);
    for (;;) {
        if (atomic_load(&d->stop_reason) != XB_STOP_NONE)
            return NULL;
        enum nb_ring_state st = pump(d, &ops, &rx_full, &tx_wait);
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
        int timeout = announce_due(d, &announced, &next_announce);
        if (st == NB_RING_MORE)
            continue;
        bool liveness = timeout == NB_LIVENESS_MS;
        if (tx_wait) {                  /* back when the rate limit refills */
            uint64_t now = mono_ns(), at = d->credit.next_refill_ns;
            int ms = at > now ? (int)((at - now + 999999) / 1000000) : 0;
            if (ms < timeout) {
                timeout = ms;
                liveness = false;
            }
        }
        struct pollfd pf[5] = {
            { .fd = d->stop_fd, .events = POLLIN },
            { .fd = dom0_fileno(d->conn), .events = POLLRDHUP },
            { .fd = tx_wait ? -1 : d->tx_from, .events = POLLIN },
            { .fd = d->rx_from != d->tx_from ? d->rx_from : -1, .events = POLLIN },
            { .fd = rx_full ? -1 : d->tap_fd, .events = POLLIN },
        };
        int n = poll(pf, 5, timeout);
        if (n < 0 && errno != EINTR) {
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (pf[0].revents)
            return NULL;
        if (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            log_info("netback: %u/%u: xkvmd went away: re-attaching when it is back",
                     d->xb.domid, d->xb.devid);
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (pf[2].revents & POLLIN) {
            drain(d->tx_from);
            rx_full = false;            /* one channel for both: maybe rx buffers */
        }
        if (pf[3].revents & POLLIN) {
            drain(d->rx_from);
            rx_full = false;
        }
        if (n == 0 && liveness && !still_there(d))
            return NULL;
    }
}

static void *map_ring(struct nb_dev *d, grant_ref_t ref, uint32_t *handle)
{
    return dom0_map_grant(d->conn, d->xb.domid, ref, false, handle);
}

/* Map the rings and bind the port(s); 0 or -errno with d->xb.fail_step. */
static int attach_rings(struct nb_dev *d, const struct nb_ring_params *rp)
{
    d->xb.fail_step = "map the tx ring";
    if (!(d->tx_sring = map_ring(d, rp->tx_ref, &d->tx_handle)))
        return -errno;
    d->xb.fail_step = "map the rx ring";
    if (!(d->rx_sring = map_ring(d, rp->rx_ref, &d->rx_handle)))
        return -errno;
    d->xb.fail_step = "bind the event channel";
    int rc = dom0_bind_evtchn(d->conn, d->xb.domid, rp->tx_port, &d->tx_to, &d->tx_from);
    if (rc)
        return rc;
    if (rp->split) {
        d->xb.fail_step = "bind the rx event channel";
        if ((rc = dom0_bind_evtchn(d->conn, d->xb.domid, rp->rx_port, &d->rx_to,
                                   &d->rx_from)))
            return rc;
    } else {
        d->rx_to = d->tx_to;
        d->rx_from = d->tx_from;
    }
    /* Where the previous backend (or nobody, for new rings) left off: rsp_prod. */
    netif_tx_sring_t *ts = d->tx_sring;
    netif_rx_sring_t *rs = d->rx_sring;
    BACK_RING_ATTACH(&d->tx, ts, __atomic_load_n(&ts->rsp_prod, __ATOMIC_ACQUIRE),
                     NB_PAGE_SIZE);
    BACK_RING_ATTACH(&d->rx, rs, __atomic_load_n(&rs->rsp_prod, __ATOMIC_ACQUIRE),
                     NB_PAGE_SIZE);
    return 0;
}

int dev_connect(struct nb_dev *d, const struct nb_ring_params *rp)
{
    if (d->xb.connected)
        return 0;
    int rc;
    d->tx_to = d->tx_from = d->rx_to = d->rx_from = d->stop_fd = -1;
    d->tx_sring = d->rx_sring = NULL;
    d->map_lost = false;
    /* A TAP frame read but not yet put in the ring when the connection was lost
     * (xkvmd live-updated) stays pending: it goes in first after re-attaching. */
    atomic_store(&d->stop_reason, XB_STOP_NONE);
    d->rp = *rp;
    if (!d->txbuf && !(d->txbuf = malloc(NB_FRAME_BUF)))
        return -ENOMEM;
    if (!d->rxbuf) {
        if (!(d->rxbuf = malloc(NB_FRAME_BUF)))
            return -ENOMEM;
        d->rx_pending = 0;
    }
    char name[32];
    snprintf(name, sizeof(name), "netback-%u-%u", d->xb.domid, d->xb.devid);
    d->xb.fail_step = "connect to xkvmd";
    d->conn = dom0_connect(d->rundir, name);
    if (!d->conn)
        return -errno;
    d->xb.connected = true;        /* from here dev_disconnect cleans up what there is */
    if ((rc = attach_rings(d, rp)))
        goto fail;
    d->xb.fail_step = "set the TAP offloads";
    if ((rc = tap_set_offload(d->tap_fd, rp->f.csum, rp->f.gso_tcpv4 && rp->f.sg,
                              rp->f.gso_tcpv6 && rp->f.sg)))
        goto fail;
    nb_credit_init(&d->credit, rp->rate_bytes, rp->rate_usec, mono_ns());
    if ((d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = -pthread_create(&d->thread, NULL, packet_thread, d)))
        goto fail;
    d->has_thread = true;
    log_info("netback: %u/%u: connected: tx at %u, rx at %u, port%s %u/%u, sg %d, "
             "gso %d/%d, csum %d, rate %llu bytes per %u us", d->xb.domid, d->xb.devid,
             d->tx.rsp_prod_pvt, d->rx.rsp_prod_pvt, rp->split ? "s" : "", rp->tx_port,
             rp->rx_port, rp->f.sg, rp->f.gso_tcpv4, rp->f.gso_tcpv6, rp->f.csum,
             (unsigned long long)rp->rate_bytes, rp->rate_usec);
    return 0;
fail:
    dev_disconnect(d);
    return rc;
}

void dev_disconnect(struct nb_dev *d)
{
    if (!d->xb.connected)
        return;
    bool served = d->has_thread;
    if (d->has_thread) {
        int none = XB_STOP_NONE;
        atomic_compare_exchange_strong(&d->stop_reason, &none, XB_STOP_ASKED);
        kick(d->stop_fd);
        pthread_join(d->thread, NULL);
        d->has_thread = false;
    }
    if (served)
        log_info("netback: %u/%u: disconnected (tx %llu packets %llu bytes %llu dropped, "
                 "rx %llu packets %llu bytes %llu dropped, %llu announces, %llu rate "
                 "waits)", d->xb.domid,
                 d->xb.devid, (unsigned long long)d->stats.tx_packets,
                 (unsigned long long)d->stats.tx_bytes,
                 (unsigned long long)d->stats.tx_dropped,
                 (unsigned long long)d->stats.rx_packets,
                 (unsigned long long)d->stats.rx_bytes,
                 (unsigned long long)d->stats.rx_dropped, (unsigned long long)d->announces,
                 (unsigned long long)d->credit.waits);
    if (d->conn) {
        if (d->tx_sring)
            dom0_unmap_grant(d->conn, d->xb.domid, d->tx_handle, d->tx_sring);
        if (d->rx_sring)
            dom0_unmap_grant(d->conn, d->xb.domid, d->rx_handle, d->rx_sring);
        if (d->tx_to >= 0)
            dom0_unbind_evtchn(d->conn, d->xb.domid, d->rp.tx_port);
        if (d->rp.split && d->rx_to >= 0)
            dom0_unbind_evtchn(d->conn, d->xb.domid, d->rp.rx_port);
        dom0_close(d->conn);
    }
    d->conn = NULL;
    d->tx_sring = d->rx_sring = NULL;
    int fds[] = { d->tx_to, d->tx_from, d->rp.split ? d->rx_to : -1,
                  d->rp.split ? d->rx_from : -1, d->stop_fd };
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    d->tx_to = d->tx_from = d->rx_to = d->rx_from = d->stop_fd = -1;
    d->xb.connected = false;
}

int dev_stop_reason(struct nb_dev *d)
{
    return atomic_load(&d->stop_reason);
}

void dev_free(struct nb_dev *d, bool remove)
{
    dev_disconnect(d);
    if (remove)
        tap_destroy(d->tap_fd);
    else if (d->tap_fd >= 0)
        close(d->tap_fd);
    free(d->txbuf);
    free(d->rxbuf);
    free(d);
}
