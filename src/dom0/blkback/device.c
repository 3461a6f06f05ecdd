/* A device's connection and ring thread: see device.h. */
#include "util/clock.h"
#include "device.h"

#include <errno.h>
#include <sys/stat.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/daemon.h"
#include "util/log.h"

/* Requests served before looking at stop requests again. */
#define BLK_BUDGET 64
/* How often an idle thread checks that xkvmd and the domain are still there (ms). */
#define BLK_LIVENESS_MS 1000

static void *op_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    return grants_map(&((struct blk_dev *)ctx)->grants, ref, ro, cookie);
}

static void op_unmap(void *ctx, void *page, uint64_t cookie)
{
    grants_unmap(&((struct blk_dev *)ctx)->grants, page, cookie);
}

static int op_io(void *ctx, bool write, const struct iovec *iov, unsigned n, uint64_t off)
{
    return image_io(&((struct blk_dev *)ctx)->img, write, iov, n, off);
}

static int op_flush(void *ctx)
{
    return image_flush(&((struct blk_dev *)ctx)->img);
}

static int op_discard(void *ctx, uint64_t off, uint64_t len)
{
    return image_discard(&((struct blk_dev *)ctx)->img, off, len);
}

static bool op_lost(void *ctx)
{
    return grants_lost(&((struct blk_dev *)ctx)->grants);
}

int dev_open_image(struct blk_dev *d, const char *params, bool readonly)
{
    image_close(&d->img);
    int rc = image_open(&d->img, image_path_of(params), readonly);
    if (rc)
        return rc;
    d->lim.sectors = d->img.sectors;
    d->lim.readonly = readonly;
    d->lim.max_indirect_segs = BLK_MAX_INDIRECT_SEGS;
    d->lim.discard = d->img.is_file && !readonly;
    return 0;
}

static void notify(struct blk_dev *d)
{
    uint64_t one = 1;
    if (write(d->to_guest, &one, sizeof(one)) == sizeof(one))
        d->notifies++;
}

static void stop_with(struct blk_dev *d, int why)
{
    int none = XB_STOP_NONE;
    atomic_compare_exchange_strong(&d->stop_reason, &none, why);
    uint64_t one = 1;
    if (d->wake_fd >= 0 && write(d->wake_fd, &one, sizeof(one)) < 0)
        log_warn("blkback: wake main thread: %m");
}

/*
 * The device's I/O so far, for `xkvm top` (xkvmd sums a domain's files into its list
 * reply): RUNDIR/stats/vbd-DOMID-DEVID holds "BYTES REQUESTS", rewritten in place at
 * most once a second while requests are served, and removed at disconnect.
 */
#define STATS_EVERY_NS 1000000000ull

static void stats_open(struct blk_dev *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stats", d->rundir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/stats/vbd-%u-%u", d->rundir, d->xb.domid, d->xb.devid);
    d->stats_fd = daemon_open_private(path, O_WRONLY);
    if (d->stats_fd < 0)
        d->stats_fd = -1;       /* statistics only: serve on without */
    d->stats_at_ns = 0;
}

static void stats_write(struct blk_dev *d, bool now)
{
    uint64_t t = mono_ns();
    if (d->stats_fd < 0 || (!now && t - d->stats_at_ns < STATS_EVERY_NS))
        return;
    char line[64];
    int n = snprintf(line, sizeof(line), "%20llu %20llu\n",
                     (unsigned long long)(d->work ? d->work->bytes : 0),
                     (unsigned long long)d->requests);
    if (pwrite(d->stats_fd, line, (size_t)n, 0) == n)
        d->stats_at_ns = t;
}

static void stats_close(struct blk_dev *d)
{
    if (d->stats_fd < 0)
        return;
    close(d->stats_fd);
    d->stats_fd = -1;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stats/vbd-%u-%u", d->rundir, d->xb.domid, d->xb.devid);
    unlink(path);
}

static void *ring_thread(void *arg)
{
    struct blk_dev *d = arg;
    const struct blk_ops ops = {
        .ctx = d, .map = op_map, .unmap = op_unmap, .io = op_io, .flush = op_flush,
        .discard = op_discard, .lost = op_lost,
    };
    /* Requests produced while nobody served the ring are served now. */
    bool first = true;
    for (;;) {
        if (atomic_load(&d->stop_reason) != XB_STOP_NONE)
            return NULL;
        bool kick = first;
        first = false;
        uint64_t before = d->ring.rsp_prod_pvt;
        uint64_t t0 = mono_ns();
        enum blk_ring_state st = blk_ring_process(&d->ring, d->work, &d->lim, &ops,
                                                  BLK_BUDGET, &kick);
        d->requests += d->ring.rsp_prod_pvt - before;
        if (d->ring.rsp_prod_pvt != before)
            d->busy_ns += mono_ns() - t0;
        if (kick)
            notify(d);
        if (d->ring.rsp_prod_pvt != before)
            stats_write(d, false);
        if (d->ring.rsp_prod_pvt != before)
            log_debug("blkback: %u/%u: %u served, notify %d", d->xb.domid, d->xb.devid,
                      (unsigned)(d->ring.rsp_prod_pvt - before), kick);
        if (st == BLK_RING_BROKEN) {
            log_err("blkback: %u/%u: frontend broke the ring (req_prod %u, rsp_prod %u, "
                    "size %u): halting it", d->xb.domid, d->xb.devid,
                    d->ring.sring->req_prod, d->ring.rsp_prod_pvt, RING_SIZE(&d->ring));
            stop_with(d, XB_STOP_BROKEN);
            return NULL;
        }
        if (st == BLK_RING_LOST) {
            log_warn("blkback: %u/%u: lost the dom0 connection mid-request",
                     d->xb.domid, d->xb.devid);
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (st == BLK_RING_MORE)
            continue;
        /*
         * The dom0 socket's hang-up too: the eventfds do not tell when xkvmd goes
         * (a live update exec's it), and the guest's I/O waits until we re-attach.
         */
        struct pollfd pf[3] = { { .fd = d->from_guest, .events = POLLIN },
                                { .fd = d->stop_fd, .events = POLLIN },
                                { .fd = dom0_fileno(d->conn), .events = POLLRDHUP } };
        int n = poll(pf, 3, BLK_LIVENESS_MS);
        if (n < 0 && errno != EINTR) {
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (pf[1].revents)
            return NULL;
        if (pf[2].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            log_info("blkback: %u/%u: xkvmd went away: re-attaching when it is back",
                     d->xb.domid, d->xb.devid);
            stop_with(d, XB_STOP_LOST);
            return NULL;
        }
        if (pf[0].revents & POLLIN) {
            log_debug("blkback: %u/%u: event", d->xb.domid, d->xb.devid);
            uint64_t cnt;
            if (read(d->from_guest, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
                log_warn("blkback: %u/%u: read event: %m", d->xb.domid, d->xb.devid);
        } else if (n == 0) {
            struct xkvm_dom0_domain_info info;
            int rc = dom0_domain_info(d->conn, d->xb.domid, false, &info);
            if (rc == -ESRCH) {
                stop_with(d, XB_STOP_GONE);
                return NULL;
            }
            if (rc) {
                log_warn("blkback: %u/%u: dom0 connection: %s", d->xb.domid, d->xb.devid,
                         strerror(-rc));
                stop_with(d, XB_STOP_LOST);
                return NULL;
            }
        }
    }
}

int dev_connect(struct blk_dev *d, const struct blk_ring_params *rp)
{
    if (d->xb.connected)
        return 0;
    int rc;
    d->to_guest = d->from_guest = d->stop_fd = d->stats_fd = -1;
    d->sring = NULL;
    atomic_store(&d->stop_reason, XB_STOP_NONE);
    d->rp = *rp;
    if (!d->work && !(d->work = calloc(1, sizeof(*d->work))))
        return -ENOMEM;
    char name[32];
    snprintf(name, sizeof(name), "blkback-%u-%u", d->xb.domid, d->xb.devid);
    d->xb.fail_step = "connect to xkvmd";
    d->conn = dom0_connect(d->rundir, name);
    if (!d->conn)
        return -errno;
    if ((rc = grants_init(&d->grants, d->conn, d->xb.domid, rp->persistent)))
        goto fail;
    d->sring = grants_map_ring(&d->grants, rp->refs, rp->nr_pages, d->ring_handles);
    if (!d->sring) {
        rc = -errno;
        d->xb.fail_step = "map the ring";
        goto fail;
    }
    rc = dom0_bind_evtchn(d->conn, d->xb.domid, rp->port, &d->to_guest, &d->from_guest);
    if (rc) {
        d->xb.fail_step = "bind the event channel";
        goto fail;
    }
    d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->stop_fd < 0) {
        rc = -errno;
        goto fail;
    }
    /*
     * Attach where the previous backend (or nobody, for a new ring) left off: rsp_prod
     * is what the frontend has been answered; requests after it are served.
     */
    blkif_sring_t *s = d->sring;
    RING_IDX at = __atomic_load_n(&s->rsp_prod, __ATOMIC_ACQUIRE);
    BACK_RING_ATTACH(&d->ring, s, at, (size_t)rp->nr_pages * BLK_PAGE_SIZE);
    stats_open(d);
    stats_write(d, true);
    if ((rc = -pthread_create(&d->thread, NULL, ring_thread, d)))
        goto fail;
    d->has_thread = true;
    d->xb.connected = true;
    log_info("blkback: %u/%u: connected: %u ring page(s) at index %u, port %u, "
             "%s grants, %llu sectors%s", d->xb.domid, d->xb.devid, rp->nr_pages, at,
             rp->port, rp->persistent ? "persistent" : "per-request",
             (unsigned long long)d->lim.sectors, d->lim.readonly ? " read-only" : "");
    return 0;
fail:
    d->xb.connected = true;    /* let disconnect clean up what there is */
    dev_disconnect(d);
    return rc;
}

void dev_disconnect(struct blk_dev *d)
{
    if (!d->xb.connected)
        return;
    bool served = d->has_thread;
    if (d->has_thread) {
        int none = XB_STOP_NONE;
        atomic_compare_exchange_strong(&d->stop_reason, &none, XB_STOP_ASKED);
        uint64_t one = 1;
        if (write(d->stop_fd, &one, sizeof(one)) < 0)
            log_warn("blkback: stop thread: %m");
        pthread_join(d->thread, NULL);
        d->has_thread = false;
    }
    stats_close(d);
    if (served)
        log_info("blkback: %u/%u: disconnected (%llu requests, %llu KiB in %llu ms busy, "
                 "%llu notifies, %llu grant maps, %llu persistent hits)", d->xb.domid,
                 d->xb.devid, (unsigned long long)d->requests,
                 (unsigned long long)(d->work ? d->work->bytes >> 10 : 0),
                 (unsigned long long)(d->busy_ns / 1000000),
                 (unsigned long long)d->notifies, (unsigned long long)d->grants.maps,
                 (unsigned long long)d->grants.hits);
    if (d->conn) {
        grants_fini(&d->grants);
        if (d->sring)
            grants_unmap_ring(&d->grants, d->sring, d->rp.nr_pages, d->ring_handles);
        if (d->to_guest >= 0)
            dom0_unbind_evtchn(d->conn, d->xb.domid, d->rp.port);
        dom0_close(d->conn);
    }
    d->conn = NULL;
    d->sring = NULL;
    if (d->to_guest >= 0)
        close(d->to_guest);
    if (d->from_guest >= 0)
        close(d->from_guest);
    if (d->stop_fd >= 0)
        close(d->stop_fd);
    d->to_guest = d->from_guest = d->stop_fd = -1;
    d->xb.connected = false;
}

int dev_stop_reason(struct blk_dev *d)
{
    return atomic_load(&d->stop_reason);
}

void dev_free(struct blk_dev *d)
{
    dev_disconnect(d);
    image_close(&d->img);
    free(d->work);
    free(d);
}
