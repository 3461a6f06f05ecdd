/*
 * The sending side of save and live migration: see migrate.h and docs/migration.md.
 *
 *   DOMAIN_CONFIG, STATIC_DATA_END            -> (peer) READY
 *   pass 0: every page; passes 1..n: pages KVM and xkvmd logged dirty since
 *   pause; quiet dom0; last dirty pages, rings, vcpu_info and dom0-mapped pages
 *   X86_TSC_INFO, HVM_PARAMS, HVM_CONTEXT, DOMAIN_CONTEXT, XENSTORE_STATE, END
 *                                             -> (peer) RESTORED, GO, RUNNING
 */
#include "util/clock.h"
#include "migrate/migrate.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/toolstack_xs.h"
#include "hv/vcpu.h"
#include "migrate/arch_state.h"
#include "migrate/local_mem.h"
#include "migrate/postcopy_save.h"
#include "migrate/multiconn.h"
#include "migrate/pv_save.h"
#include "util/domcfg.h"
#include "util/log.h"
#include "xkvm/ctx.h"

/* dom0 services quiet for this long before the last copy (migrate_wait_dom0_quiet). */
#define DOM0_QUIET_NS       (2 * 1000 * 1000ull)
#define DOM0_QUIET_MAX_NS   (200 * 1000 * 1000ull)

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int migrate_send_line(struct transport *t, const char *fmt, ...)
{
    char buf[MIGRATE_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    for (int i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    buf[n++] = '\n';
    return transport_write_all(t, buf, (size_t)n) ? -EPIPE : 0;
}

int migrate_read_line(struct transport *t, char *buf, size_t len, unsigned timeout_ms)
{
    size_t n = 0;
    uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (n + 1 < len) {
        if (timeout_ms) {
            uint64_t now = mono_ns();
            if (now >= end)
                return -ETIMEDOUT;
            int r = transport_wait_readable(t, (unsigned)((end - now) / 1000000ull) + 1);
            if (r == 0)
                return -ETIMEDOUT;
        }
        char c;
        ssize_t r = transport_read(t, &c, 1);      /* lines are rare and short */
        if (r <= 0)
            return -EPIPE;
        if (c == '\n') {
            buf[n] = '\0';
            return 0;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    return 0;
}

static unsigned stall_s = MIGRATE_DEFAULT_STALL_S;

void migrate_set_stall_timeout(unsigned seconds)
{
    if (!seconds || seconds > MIGRATE_MAX_STALL_S)
        seconds = MIGRATE_DEFAULT_STALL_S;
    __atomic_store_n(&stall_s, seconds, __ATOMIC_RELAXED);
}

unsigned migrate_stall_timeout_ms(void)
{
    return __atomic_load_n(&stall_s, __ATOMIC_RELAXED) * 1000u;
}

void migrate_stall_sockopts(int fd)
{
    struct timeval tmo = { .tv_sec = __atomic_load_n(&stall_s, __ATOMIC_RELAXED) };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
}

void migrate_cancel_init(struct migrate_cancel *c)
{
    *c = (struct migrate_cancel){ .fd = -1 };
    pthread_mutex_init(&c->lock, NULL);
}

void migrate_cancel_set_fd(struct migrate_cancel *c, int fd)
{
    pthread_mutex_lock(&c->lock);
    c->fd = fd;
    if (c->cancelled)
        shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&c->lock);
}

int migrate_cancel_request(struct migrate_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    int rc = c->handover ? -EBUSY : 0;
    if (!rc) {
        c->cancelled = true;
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);     /* the sender's next read or write fails */
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* Before GO: from here on a cancel is refused. False if one came first. */
static bool begin_handover(struct migrate_cancel *c)
{
    if (!c)
        return true;
    pthread_mutex_lock(&c->lock);
    bool ok = !c->cancelled;
    c->handover = ok;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static bool was_cancelled(struct migrate_cancel *c)
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    bool v = c->cancelled;
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* Wait for `want` from the destination; its ERROR, or silence, becomes err. */
static int expect(struct transport *t, const char *want, char *line, size_t linelen,
                  char *err, size_t errlen)
{
    int rc = migrate_read_line(t, line, linelen, migrate_stall_timeout_ms());
    if (rc) {
        snprintf(err, errlen, "destination %s before %s", rc == -ETIMEDOUT ?
                 "did not answer in time" : "closed the connection", want);
        return rc;
    }
    size_t wl = strlen(want);
    if (!strncmp(line, want, wl) && (line[wl] == '\0' || line[wl] == ' '))
        return 0;
    if (!strncmp(line, MIGRATE_MSG_ERROR " ", 6))
        snprintf(err, errlen, "destination: %s", line + 6);
    else
        snprintf(err, errlen, "destination sent \"%.100s\", expected %s", line, want);
    return -EPROTO;
}

struct sender {
    struct domain *d;
    struct xkvm_stream_writer w;
    const struct migrate_opts *o;
    migrate_progress_fn progress;
    void *arg;
    struct migrate_report *rep;
    uint64_t *dirty;            /* pages still to send, a bit per gfn */
    uint64_t *backed;           /* pass 0: machine frames the memfd has pages for */
    uint64_t nr_gfns;
    uint64_t bytes_before;
    unsigned throttle;          /* auto-converge's vCPU throttle now (percent) */
    unsigned at_max_throttle;   /* iterations at the top throttle */
    bool postcopy;              /* switching to post-copy (postcopy_save.c) */
    bool xs_quiesced;           /* xenstored leaves the ring alone (toolstack_xs_export) */
    uint8_t *xs;                /* ...and its export, taken before the last copy */
    size_t xslen;
    struct multiconn_tx mc;     /* extra connections (multiconn.h), if any */
    char why[400];              /* stream_why's message */
};

static inline bool bit(const uint64_t *bm, uint64_t i)
{
    return bm[i / 64] >> (i % 64) & 1;
}

/* Is gfn one of the domain's pages that travel as memory (RAM, toolstack pages)? */
static bool sendable(struct domain *d, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    if (mfn == INVALID_MFN || mfn >= host_mm()->nr_total || p2m_is_foreign(&d->p2m, gfn))
        return false;
    uint8_t t = mm_frame_type(host_mm(), mfn);
    return t == FRAME_RAM || t == FRAME_SPECIAL;
}

/* Is gfn RAM in the memory map (domain_memmap's, taken once per pass by the caller)? */
static bool in_ram_map(const struct hvm_memmap_table_entry *map, unsigned n, uint64_t gfn)
{
    for (unsigned i = 0; i < n; i++)
        if (map[i].type == XEN_HVM_MEMMAP_TYPE_RAM && gfn >= map[i].addr >> 12 &&
            gfn < (map[i].addr + map[i].size) >> 12)
            return true;
    return false;
}

static uint64_t writer_bytes(const struct sender *s)
{
    return s->w.info.bytes + multiconn_tx_bytes(&s->mc);
}

/* The stream error behind a failed write: the main stream's or an extra one's. */
static const char *stream_why(struct sender *s)
{
    if (!s->mc.failed)
        return s->w.err.msg;
    snprintf(s->why, sizeof(s->why), "extra connection %u: %s",
             (unsigned)(s->mc.failed - s->mc.w), s->mc.failed->err.msg);
    return s->why;
}

/*
 * Which machine frames have memory behind them (SEEK_DATA/SEEK_HOLE on the memfd).
 * A frame without is all zeros: pass 0 sends it as XALLOC without reading it, which
 * would allocate it. NULL if the file system cannot tell (everything is read then).
 */
static uint64_t *backed_frames(void)
{
    struct machine_mem *mm = host_mm();
    uint64_t *bm = calloc((mm->nr_frames + 63) / 64, sizeof(uint64_t));
    if (!bm)
        return NULL;
    off_t end = (off_t)(mm->nr_frames << XKVM_PAGE_SHIFT), off = 0;
    while (off < end) {
        off_t data = lseek(mm->fd, off, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;
            free(bm);
            return NULL;
        }
        off_t hole = lseek(mm->fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = end;
        for (uint64_t f = (uint64_t)data >> XKVM_PAGE_SHIFT;
             f < ((uint64_t)hole + XKVM_PAGE_SIZE - 1) >> XKVM_PAGE_SHIFT && f < mm->nr_frames; f++)
            bm[f / 64] |= 1ull << (f % 64);
        off = hole;
    }
    return bm;
}

/*
 * Send the pages marked in s->dirty (clearing them); pass 0 also sends holes.
 *
 * The writer sends pages from where they are, after add_page returns: the p2m is held
 * (shared) from a page's lookup until its batch has gone out, so that the guest cannot
 * give the frame back meanwhile and another domain's data take its place in the
 * stream. Between batches the hold is let go, so the guest's own physmap changes wait
 * at most one batch.
 */
static int send_marked(struct sender *s, unsigned iteration, bool final, uint64_t count,
                       uint64_t *sent_out)
{
    struct domain *d = s->d;
    uint64_t sent = 0, t0 = mono_ns(), b0 = writer_bytes(s);
    int rc = 0;
    struct hvm_memmap_table_entry map[DOMAIN_MEMMAP_MAX];
    unsigned nmap = domain_memmap(d, map);
    p2m_hold(&d->p2m);
    for (uint64_t w = 0; w < (s->nr_gfns + 63) / 64; w++) {
        uint64_t v = s->dirty[w];
        if (!v)
            continue;
        s->dirty[w] = 0;
        struct xkvm_stream_writer *out = multiconn_tx_writer(&s->mc, &s->w, w);
        while (v) {
            uint64_t g = w * 64 + (uint64_t)__builtin_ctzll(v);
            v &= v - 1;
            if (sendable(d, g)) {
                uint64_t mfn = p2m_lookup(&d->p2m, g);
                /*
                 * Read through xkvmd's own mapping of the frame: the writer keeps the
                 * pointer until the batch goes out, and the guest may remap the gfn.
                 */
                const uint8_t *page = mm_frame_ptr(host_mm(), mfn);
                if (iteration == 0 && s->backed && mfn < host_mm()->nr_frames &&
                    !bit(s->backed, mfn))
                    rc = xkvm_stream_add_pfn(out, g, XKVM_STREAM_PAGE_XALLOC);
                else
                    rc = xkvm_stream_add_page(out, g, page);
            } else if (p2m_lookup(&d->p2m, g) == INVALID_MFN &&
                       (iteration > 0 || in_ram_map(map, nmap, g))) {
                /* Ballooned out: before pass 0, or since (the p2m marked it dirty). */
                rc = xkvm_stream_add_pfn(out, g, XKVM_STREAM_PAGE_XTAB);
            } else {
                continue;       /* a Xen frame (shared_info, grants): in DOMAIN_CONTEXT */
            }
            if (rc) {
                s->mc.failed = out != &s->w ? out : NULL;
                goto out;
            }
            if ((++sent % XKVM_STREAM_BATCH_MAX) == 0) {
                if ((rc = xkvm_stream_flush_pages(&s->w)) || (rc = multiconn_tx_flush(&s->mc)))
                    goto out;
                p2m_release(&d->p2m);
                p2m_hold(&d->p2m);
            }
            if (s->progress && (sent & 0x3fff) == 0) {
                double secs = (double)(mono_ns() - t0) / 1e9;
                double mbs = secs > 0 ? (double)(writer_bytes(s) - b0) / 1e6 / secs : 0;
                struct migrate_progress p = {
                    .iteration = iteration, .dirty = count, .sent = sent,
                    .remaining = count > sent ? count - sent : 0, .rate_mbs = mbs,
                    .eta_s = mbs > 0 ? (double)(count - sent) * 4096 / 1e6 / mbs : 0,
                    .final = final, .throttle_pct = s->throttle,
                };
                s->progress(s->arg, &p);
            }
        }
    }
    if (!(rc = xkvm_stream_flush_pages(&s->w)))
        rc = multiconn_tx_flush(&s->mc);
out:
    p2m_release(&d->p2m);
    if (rc)
        return -1;
    double secs = (double)(mono_ns() - t0) / 1e9;
    if (secs > 0.001 && writer_bytes(s) > b0)
        s->rep->rate_mbs = (double)(writer_bytes(s) - b0) / 1e6 / secs;
    s->rep->pages_sent += sent;
    *sent_out = sent;
    return 0;
}

static uint64_t popcount_bm(const uint64_t *bm, uint64_t nbits)
{
    uint64_t n = 0;
    for (uint64_t w = 0; w < (nbits + 63) / 64; w++)
        n += (uint64_t)__builtin_popcountll(bm[w]);
    return n;
}

/*
 * dom0 services finish what the guest asked of them before the last copy: wait until
 * none has mapped, unmapped or signalled for these domains for DOM0_QUIET_NS (their
 * vCPUs are paused, so no new request arrives). Requests still unanswered in a ring
 * are served again by the backend on the destination, from the ring's rsp_prod.
 */
void migrate_wait_dom0_quiet(struct domain *const *doms, unsigned n)
{
    uint64_t start = mono_ns();
    for (;;) {
        uint64_t now = mono_ns(), last = 0;
        for (unsigned i = 0; i < n; i++) {
            uint64_t a = __atomic_load_n(&doms[i]->dom0_activity_ns, __ATOMIC_RELAXED);
            last = a > last ? a : last;
        }
        if (now - last >= DOM0_QUIET_NS || now - start >= DOM0_QUIET_MAX_NS)
            return;
        usleep(200);
    }
}

/* Pages written behind KVM's back that the final copy always includes. */
static void mark_final_extras(struct sender *s)
{
    struct domain *d = s->d;
    for (uint64_t g = GUEST_SPECIAL_GFN; g < GUEST_SPECIAL_GFN + GUEST_SPECIAL_PAGES; g++)
        if (g < s->nr_gfns && sendable(d, g))
            s->dirty[g / 64] |= 1ull << (g % 64);
    pthread_mutex_lock(&d->ev->lock);
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        uint64_t g = d->vcpus[i].ev->vcpu_info_gfn;
        if (g != INVALID_GFN && g < s->nr_gfns)
            s->dirty[g / 64] |= 1ull << (g % 64);
        /* FIFO: the control block's READY bits and HEADs, written by xkvmd. */
        g = d->vcpus[i].ev->fifo_cb ? d->vcpus[i].ev->fifo_cb_gfn : INVALID_GFN;
        if (g != INVALID_GFN && g < s->nr_gfns)
            s->dirty[g / 64] |= 1ull << (g % 64);
    }
    for (unsigned n = 0; n < d->ev->fifo_nr_pages; n++) {   /* FIFO event words */
        uint64_t g = d->ev->fifo_page_gfn[n];
        if (g < s->nr_gfns)
            s->dirty[g / 64] |= 1ull << (g % 64);
    }
    pthread_mutex_unlock(&d->ev->lock);
    gnttab_dom0_mapped_gfns(d, s->dirty);
}

_Static_assert(HVM_NR_PARAMS == XKVM_CTX_HVM_NR_PARAMS, "one HVM param numbering");

uint32_t migrate_hvm_params(struct domain *d, struct xkvm_ctx_hvm_param *out)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < HVM_NR_PARAMS; i++) {
        uint64_t v = __atomic_load_n(&d->hvm_params[i], __ATOMIC_RELAXED);
        if (v && !xkvm_ctx_hvm_param_retired(i))
            out[n++] = (struct xkvm_ctx_hvm_param){ .index = i, .value = v };
    }
    return n;
}

int migrate_hvm_context(struct domain *d, void **blob, size_t *len, char *err, size_t errlen)
{
    struct xkvm_hvmctx_builder b;
    if (xkvm_hvmctx_builder_init(&b, d->nr_vcpus, 0, 0, d->tsc_khz)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = arch_save_domain(d, &b, err, errlen);
    if (!rc && xkvm_hvmctx_finish(&b)) {
        snprintf(err, errlen, "HVM context: %s", b.err.msg);
        rc = -EINVAL;
    }
    *blob = rc ? NULL : xkvm_hvmctx_take(&b, len);
    xkvm_hvmctx_builder_release(&b);
    return rc;
}

static int send_state(struct sender *s, char *err, size_t errlen)
{
    struct domain *d = s->d;
    struct xkvm_stream_tsc_info tsc = { .mode = 0, .khz = d->tsc_khz,
                                        .nsec = xen_system_time(d), .incarnation = 0 };
    /* The libxc record a Xen reader needs; an xkvm restore applies DOMAIN_CONTEXT's. */
    struct xkvm_ctx_hvm_param cp[HVM_NR_PARAMS];
    struct xkvm_stream_hvm_param params[HVM_NR_PARAMS];
    uint32_t np = migrate_hvm_params(d, cp);
    for (uint32_t i = 0; i < np; i++)
        params[i] = (struct xkvm_stream_hvm_param){ .index = cp[i].index, .value = cp[i].value };
    size_t hlen = 0;
    void *hvm = NULL;
    int rc = migrate_hvm_context(d, &hvm, &hlen, err, errlen);
    if (rc)
        return rc;

    struct xkvm_ctx_writer cw;
    xkvm_ctx_writer_init_buffer(&cw);
    bool ext = s->o->compat == XKVM_STREAM_COMPAT_NONE;
    if (ext)
        rc = pv_save_context(d, &cw, err, errlen);
    if (ext && !rc && !s->xs)       /* an older xenstored: export_xenstore */
        rc = toolstack_xs_export(d->domid, NULL, &s->xs, &s->xslen, err, errlen);
    if (!rc) {
        size_t clen = 0;
        const uint8_t *img = ext ? xkvm_ctx_writer_data(&cw, &clen) : NULL;
        if (xkvm_stream_write_tsc_info(&s->w, &tsc) ||
            xkvm_stream_write_hvm_params(&s->w, params, np) ||
            xkvm_stream_write_hvm_context(&s->w, hvm, (uint32_t)hlen) ||
            (ext && xkvm_stream_write_domain_context(&s->w, img, (uint32_t)clen)) ||
            (ext && xkvm_stream_write_xenstore_state(&s->w, s->xs, (uint32_t)s->xslen)) ||
            xkvm_stream_write_end(&s->w)) {
            snprintf(err, errlen, "stream: %s", s->w.err.msg);
            rc = s->w.err.code == XKVM_STREAM_ERR_IO ? -EPIPE : -EINVAL;
        }
    }
    xkvm_ctx_writer_release(&cw);
    free(hvm);
    return rc;
}

/*
 * xenstored's part of the pause, before the last copy of memory: it stops touching the
 * ring (every request it took is answered by then, in the ring or in the export), so
 * the ring page that copy takes and the export agree. Taken after, a request xenstored
 * took from the ring before the copy and answered after it would be lost: the guest's
 * xenbus would wait for its reply forever.
 */
static int export_xenstore(struct sender *s, char *err, size_t errlen)
{
    if (s->o->compat != XKVM_STREAM_COMPAT_NONE)
        return 0;               /* a Xen-compatible stream carries no xenstore state */
    bool quiesced = false;
    s->xs_quiesced = true;      /* until it says otherwise: a failed export may have */
    int rc = toolstack_xs_export(s->d->domid, &quiesced, &s->xs, &s->xslen, err, errlen);
    if (!rc && !quiesced) {
        /* An xenstored older than xkvmd, kept across a live update, ignored the word:
         * its ring runs on, so its export is taken after the last copy, as it was. */
        log_warn("d%u: xenstored cannot quiesce the ring (older than this xkvmd): its "
                 "state is taken after the last copy; restart xkvm-xenstored to update it",
                 s->d->domid);
        s->xs_quiesced = false;
        free(s->xs);
        s->xs = NULL;
        s->xslen = 0;
    }
    return rc;
}

static int send_config(struct sender *s, char *err, size_t errlen)
{
    /* Paused by the toolstack (xkvm pause): it arrives paused too. */
    struct domrec dr = { .members = DOMREC_DOMID | DOMREC_CONFIG | DOMREC_PAUSED,
                         .domid = s->d->domid, .cfg = &s->d->cfg };
    pthread_mutex_lock(&s->d->lock);
    dr.paused = s->d->toolstack_pauses > 0;
    pthread_mutex_unlock(&s->d->lock);
    if (toolstack_xs_uuid(s->d->domid, dr.uuid))
        dr.members |= DOMREC_UUID;
    /* Said up front so that a host without KVM's intercept refuses before any page. */
    if (__atomic_load_n(&s->d->guest_vmcall, __ATOMIC_RELAXED)) {
        dr.members |= DOMREC_VMCALL;
        dr.vmcall = true;
    }
    char *j = domrec_to_json(&dr);
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    if (s->o->compat == XKVM_STREAM_COMPAT_NONE &&
        xkvm_stream_write_domain_config(&s->w, j, (uint32_t)strlen(j)))
        rc = -1;
    free(j);
    if (!rc && xkvm_stream_write_static_data_end(&s->w))
        rc = -1;
    if (rc) {
        snprintf(err, errlen, "stream: %s", s->w.err.msg);
        return s->w.err.code == XKVM_STREAM_ERR_IO ? -EPIPE : -EINVAL;
    }
    return 0;
}

/*
 * SYNC: wait until the destination has read everything sent so far (peer only). With
 * extra connections each gets a marker first, and the SYNC says how many there are and
 * which marker (multiconn.h): the destination answers once all delivered it.
 */
static int sync_peer(struct sender *s, struct transport *t, char *err, size_t errlen)
{
    char line[MIGRATE_MSG_MAX];
    uint32_t seq = 0;
    if (!s->o->peer)
        return 0;
    if (s->mc.n && multiconn_tx_mark(&s->mc, &seq)) {
        snprintf(err, errlen, "stream: %s", stream_why(s));
        return -EPIPE;
    }
    uint8_t b[8] = { (uint8_t)s->mc.n, 0, 0, 0, (uint8_t)seq, (uint8_t)(seq >> 8),
                     (uint8_t)(seq >> 16), (uint8_t)(seq >> 24) };
    if (xkvm_stream_write_record(&s->w, XKVM_STREAM_REC_SYNC, b, s->mc.n ? 8 : 0)) {
        snprintf(err, errlen, "stream: %s", s->w.err.msg);
        return -EPIPE;
    }
    return expect(t, MIGRATE_MSG_SYNCED, line, sizeof(line), err, errlen);
}

/*
 * Auto-converge (docs/migration.md, "Convergence"): after an iteration whose rest does
 * not fit, if the guest dirtied more than half of what the last iteration sent (it
 * dirties faster than the link drains), throttle its vCPUs a step more: 20%, then
 * +10% up to VCPU_THROTTLE_MAX_PCT. False once the top has been tried for
 * MIGRATE_THROTTLE_MAX_ITERS iterations: the target cannot be met by throttling.
 */
static bool converge_step(struct sender *s, uint64_t dirty, uint64_t last_sent)
{
    if (s->o->no_auto_converge || dirty * 2 <= last_sent)
        return true;
    if (s->throttle >= VCPU_THROTTLE_MAX_PCT)
        return ++s->at_max_throttle < MIGRATE_THROTTLE_MAX_ITERS;
    unsigned pct = s->throttle ? s->throttle + MIGRATE_THROTTLE_STEP : MIGRATE_THROTTLE_INITIAL;
    s->throttle = pct > VCPU_THROTTLE_MAX_PCT ? VCPU_THROTTLE_MAX_PCT : pct;
    s->rep->throttle_pct = s->throttle;
    domain_set_throttle(s->d, s->throttle);
    return true;
}

/* Why pre-copy stops now (a rest of n pages, about est_ms), or NULL to go on. */
static const char *precopy_stop(struct sender *s, unsigned it, uint64_t n, double est_ms,
                                uint64_t last_sent)
{
    uint64_t ram = s->d->ram_frames ? s->d->ram_frames : 1;
    uint64_t cap = (uint64_t)(s->o->max_factor ? s->o->max_factor : MIGRATE_DEFAULT_MAX_FACTOR) * ram;
    unsigned max_iters = s->o->max_iters ? s->o->max_iters : MIGRATE_DEFAULT_MAX_ITERS;
    if (est_ms <= s->rep->downtime_target_ms / 2.0)
        return "converged";
    if (it > max_iters)
        return "max-iters";
    /* The volume cap waits while auto-converge is still raising the throttle. */
    bool throttling = !s->o->no_auto_converge && s->throttle &&
                      s->throttle < VCPU_THROTTLE_MAX_PCT;
    if (s->rep->pages_sent >= cap && !throttling)
        return "max-volume";
    if (!converge_step(s, n, last_sent))
        return "max-throttle";
    return NULL;
}

/*
 * Iterate while the guest runs (log-dirty is on, pass 0 sent). Each iteration sends
 * what was written since the last one and waits for the destination to catch up, so
 * the rate it measures is end to end. It stops when the dirty set would go in half
 * the downtime target (the other half is for the state and the hand-over), or at the
 * iteration, volume or throttle cap; the set then left goes in the final copy (or,
 * with downtime_strict and a set that does not fit, the migration fails).
 */
static int precopy(struct sender *s, struct transport *t, uint64_t t_start, char *err,
                   size_t errlen)
{
    struct domain *d = s->d;
    int rc = sync_peer(s, t, err, errlen);
    if (rc)
        return rc;
    double secs = (double)(mono_ns() - t_start) / 1e9;
    double rate = secs > 0 ? (double)writer_bytes(s) / 1e6 / secs : 100;   /* MB/s */
    uint64_t last_sent = s->rep->pages_sent;
    for (unsigned it = 1; ; it++) {
        int64_t n = p2m_collect_dirty(&d->p2m, s->dirty);
        if (n < 0) {
            snprintf(err, errlen, "reading the dirty log: %s", strerror((int)-n));
            return (int)n;
        }
        double est_ms = (double)n * 4096 / 1e3 / (rate > 1 ? rate : 1);
        const char *stop = precopy_stop(s, it, (uint64_t)n, est_ms, last_sent);
        if (postcopy_should_switch(s->o, it, stop)) {
            s->postcopy = true;
            stop = stop && strcmp(stop, "converged") ? stop : "postcopy";
        }
        if (stop) {
            s->rep->stop = stop;
            s->rep->throttle_pct = s->throttle;
            s->rep->est_downtime_ms = est_ms;
            log_info("d%u: pre-copy ends after %u iteration(s) (%s): %lld dirty pages, about "
                     "%.2f ms at %.1f MB/s, throttle %u%%", d->domid, it - 1, stop,
                     (long long)n, est_ms, rate, s->throttle);
            if (strcmp(stop, "converged") && !s->postcopy && s->o->downtime_strict) {
                snprintf(err, errlen, "the downtime target of %u ms cannot be met (%s, "
                         "throttle %u%%): %lld dirty pages need about %.0f ms at %.1f MB/s "
                         "(--downtime-strict)", s->rep->downtime_target_ms, stop,
                         s->throttle, (long long)n, est_ms, rate);
                return -ETIME;
            }
            return 0;       /* the marked pages go in the final copy */
        }
        uint64_t sent, t0 = mono_ns(), b0 = writer_bytes(s);
        if (send_marked(s, it, false, (uint64_t)n, &sent)) {
            snprintf(err, errlen, "stream: %s", stream_why(s));
            return -EPIPE;
        }
        if ((rc = sync_peer(s, t, err, errlen)))
            return rc;
        secs = (double)(mono_ns() - t0) / 1e9;
        if (secs > 0.0005)
            rate = (double)(writer_bytes(s) - b0) / 1e6 / secs;
        last_sent = sent;
        s->rep->iterations = it;
        if (s->progress) {
            struct migrate_progress p = { .iteration = it, .dirty = (uint64_t)n, .sent = sent,
                                          .rate_mbs = rate, .throttle_pct = s->throttle };
            s->progress(s->arg, &p);
        }
    }
}

/*
 * A domain that maps other domains' grants cannot be carried: the frames are the
 * granters', which stay on this host (migration.md, "Grant mappings between guests").
 */
static int refuse_foreign_maps(struct domain *d, char *err, size_t errlen)
{
    uint32_t n = gnttab_foreign_maps(d);
    if (!n)
        return 0;
    snprintf(err, errlen, "domain %u maps %u grant(s) of other domains "
             "(GNTTABOP_map_grant_ref): it cannot be saved or migrated until it unmaps them",
             d->domid, n);
    return -EBUSY;
}

/*
 * A page the domain's events live in (vcpu_info, FIFO) that its gfn no longer maps
 * cannot be carried: the stream names it by gfn (docs/migration.md). Checked paused.
 */
static int refuse_unreachable_event_frames(struct domain *d, char *err, size_t errlen)
{
    uint64_t gfn = event_frame_unreachable(d);
    if (gfn == INVALID_GFN)
        return 0;
    snprintf(err, errlen, "domain %u gave back or replaced gfn 0x%llx, which still holds "
             "its event state (vcpu_info or a FIFO event page): it cannot be saved or "
             "migrated", d->domid, (unsigned long long)gfn);
    return -EBUSY;
}

/*
 * Post-copy's switch: of the last dirty set (s->dirty, extras not yet marked), what
 * the destination's restore itself touches goes now (mark_final_extras), the rest is
 * left missing; returns the missing bitmap (NULL: out of memory).
 */
static uint64_t *postcopy_split(struct sender *s, bool pass0)
{
    size_t words = (size_t)(s->nr_gfns + 63) / 64;
    uint64_t *missing = calloc(words, sizeof(uint64_t)), *dirty = s->dirty;
    uint64_t *extras = calloc(words, sizeof(uint64_t));
    if (!missing || !extras) {
        free(missing);
        free(extras);
        return NULL;
    }
    s->dirty = extras;
    mark_final_extras(s);
    s->dirty = dirty;
    /*
     * Only RAM the destination has a frame for: every page pass 0 sent, or, without
     * pass 0 (--postcopy-after 0), RAM of the memory map it lays out. Toolstack pages
     * and RAM populated later go now.
     */
    struct hvm_memmap_table_entry map[DOMAIN_MEMMAP_MAX];
    unsigned nmap = pass0 ? 0 : domain_memmap(s->d, map);
    /* The dirty pages only: the gfn space reaches the special pages near 4 GiB. */
    for (size_t w = 0; w < words; w++) {
        for (uint64_t v = dirty[w] & ~extras[w]; v; v &= v - 1) {
            uint64_t g = w * 64 + (uint64_t)__builtin_ctzll(v);
            if (g >= s->nr_gfns || !sendable(s->d, g) ||
                mm_frame_type(host_mm(), p2m_lookup(&s->d->p2m, g)) != FRAME_RAM)
                continue;
            if (pass0 || in_ram_map(map, nmap, g)) {
                missing[w] |= 1ull << (g % 64);
                dirty[w] &= ~(1ull << (g % 64));
            }
        }
    }
    free(extras);
    return missing;
}

int migrate_send(struct domain *d, struct transport *t, const struct migrate_opts *o,
                 migrate_progress_fn progress, void *arg, struct migrate_report *rep,
                 char *err, size_t errlen)
{
    if (o->postcopy_recover)    /* xkvm migrate-recover: a paused post-copy goes on */
        return postcopy_recover_send(d, t, rep, err, errlen);
    memset(rep, 0, sizeof(*rep));
    rep->outcome = MIGRATE_RESUMED;
    rep->downtime_target_ms = o->downtime_ms ? o->downtime_ms : MIGRATE_DEFAULT_DOWNTIME_MS;
    if (!o->live)
        rep->stop = "non-live";
    uint64_t t_start = mono_ns();
    struct sender s = { .d = d, .o = o, .progress = progress, .arg = arg, .rep = rep,
                        .nr_gfns = d->p2m.nr_gfns };
    s.dirty = calloc((s.nr_gfns + 63) / 64, sizeof(uint64_t));
    struct xkvm_stream_writer_opts wo = { .compat = o->compat, .skip_zero = true,
                                          .reference_pages = true,
                                          .limits = { .max_pfn = s.nr_gfns,
                                                      .max_vcpus = d->nr_vcpus } };
    struct xkvm_stream_io io = transport_stream_io(t);
    if (!s.dirty || xkvm_stream_writer_init_io(&s.w, &io, &wo)) {
        free(s.dirty);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char line[MIGRATE_MSG_MAX];
    bool paused = false, logging = false;
    int rc = refuse_foreign_maps(d, err, errlen);
    if (!rc && o->connections > 1 && (o->postcopy || o->local_mem)) {
        snprintf(err, errlen, "--connections does not apply to %s",
                 o->local_mem ? "a same-host migration (its memory is not copied)" :
                 "a post-copy migration (its pages go on one connection)");
        rc = -EINVAL;
    }
    if (!rc && o->local_mem && o->postcopy) {
        snprintf(err, errlen, "--postcopy does not apply to a same-host migration: "
                 "its memory is not copied");
        rc = -EINVAL;
    }
    if (!rc)
        rc = postcopy_refuse_split(d, err, errlen);
    if (!rc)
        rc = send_config(&s, err, errlen);
    if (!rc && o->peer)
        rc = expect(t, MIGRATE_MSG_READY, line, sizeof(line), err, errlen);
    /* The state in the pause goes compressed where the destination reads it so. */
    if (!rc && o->peer && o->compat == XKVM_STREAM_COMPAT_NONE &&
        multiconn_ready_offers(line + strlen(MIGRATE_MSG_READY), MIGRATE_FEATURE_LZ4))
        s.w.opts.compress_state = true;
    /* Extra connections: all there (the destination says SYNCED) before any page. */
    if (!rc && o->peer && !(rc = multiconn_tx_open(&s.mc, o, d->domid, line, &wo, err, errlen)) &&
        s.mc.n)
        rc = sync_peer(&s, t, err, errlen);
    if (!rc && !o->live) {
        domain_pause(d);
        paused = true;
    }
    /* Pass 0: every page the domain has. */
    if (!rc) {
        struct hvm_memmap_table_entry map[DOMAIN_MEMMAP_MAX];
        unsigned nmap = domain_memmap(d, map);
        for (uint64_t g = 0; g < s.nr_gfns; g++)
            if (sendable(d, g) ||
                (in_ram_map(map, nmap, g) && p2m_lookup(&d->p2m, g) == INVALID_MFN))
                s.dirty[g / 64] |= 1ull << (g % 64);
    }
    /* Same-host (not live: paused now): RAM stays where it is, toolstack pages go. */
    if (!rc && o->local_mem && !(rc = local_send_memory(d, &s.w, o->local_mem, err, errlen)))
        local_keep_special(d, s.dirty, s.nr_gfns);
    if (!rc && o->live) {
        logging = true;
        rc = p2m_log_dirty_enable(&d->p2m);
        if (rc)
            snprintf(err, errlen, "enabling dirty logging: %s", strerror(-rc));
    }
    uint64_t sent;
    s.postcopy = postcopy_should_switch(o, 0, NULL);    /* --postcopy-after 0: no pass 0 */
    if (s.postcopy)
        rep->stop = "postcopy";
    s.backed = rc || o->local_mem ? NULL : backed_frames();  /* after logging started */
    if (!rc && !s.postcopy &&
        send_marked(&s, 0, !o->live, popcount_bm(s.dirty, s.nr_gfns), &sent)) {
        snprintf(err, errlen, "stream: %s", stream_why(&s));
        rc = -EPIPE;
    }
    if (!rc && o->live && !s.postcopy)
        rc = precopy(&s, t, t_start, err, errlen);
    uint64_t *missing = NULL;

    uint64_t t_pause = 0, t_pause_real = 0, b_pause = writer_bytes(&s);
    if (!rc) {
        if (!paused) {
            t_pause = mono_ns();
            t_pause_real = real_ns();
            domain_pause(d);
            paused = true;
            rep->pause_ms = (double)(mono_ns() - t_pause) / 1e6;
            if (s.throttle)
                domain_set_throttle(d, 0);  /* paused: lifting it costs no downtime */
        } else {
            t_pause = mono_ns();
            t_pause_real = real_ns();
        }
        uint64_t t_q = mono_ns();
        migrate_wait_dom0_quiet(&d, 1);
        rep->quiet_ms = (double)(mono_ns() - t_q) / 1e6;
        if (logging) {
            int64_t n = p2m_collect_dirty(&d->p2m, s.dirty);
            if (n < 0) {
                rc = (int)n;
                snprintf(err, errlen, "reading the dirty log: %s", strerror(-rc));
            }
        }
        if (!rc)
            rc = refuse_foreign_maps(d, err, errlen);   /* mapped while it was sent */
        if (!rc)
            rc = refuse_unreachable_event_frames(d, err, errlen);
        uint64_t t_x = mono_ns();
        if (!rc)
            rc = export_xenstore(&s, err, errlen);
        rep->xenstore_ms = (double)(mono_ns() - t_x) / 1e6;
        if (!rc && s.postcopy && !(missing = postcopy_split(&s, o->postcopy_after > 0))) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        }
        if (!rc) {
            mark_final_extras(&s);
            if (o->local_mem)
                local_keep_special(d, s.dirty, s.nr_gfns);
            uint64_t n = popcount_bm(s.dirty, s.nr_gfns);
            if (send_marked(&s, rep->iterations + 1, true, n, &sent) ||
                multiconn_tx_end(&s.mc)) {
                snprintf(err, errlen, "stream: %s", stream_why(&s));
                rc = -EPIPE;
            }
            rep->final_pages = sent;
        }
        if (!rc && missing) {
            rep->postcopy = true;
            rc = postcopy_send_missing(&s.w, missing, s.nr_gfns, err, errlen);
        }
        uint64_t t_s = mono_ns();
        if (!rc)
            rc = send_state(&s, err, errlen);
        rep->state_ms = (double)(mono_ns() - t_s) / 1e6;
        rep->final_ms = (double)(mono_ns() - t_pause) / 1e6;
        rep->final_bytes = writer_bytes(&s) - b_pause;
        rep->state_compressed = s.w.info.nr_compressed;
    }
    uint64_t t_wait = mono_ns();
    if (!rc && o->peer)
        rc = expect(t, MIGRATE_MSG_RESTORED, line, sizeof(line), err, errlen);
    rep->dest_ms = (double)(mono_ns() - t_wait) / 1e6;
    if (!rc && o->peer) {
        /*
         * The hand-over. Until the destination says RUNNING, any failure means it does
         * not run the guest (it resumes only on GO and, should it fail to say RUNNING,
         * destroys its copy), so the source takes the guest back.
         */
        if (!begin_handover(o->cancel)) {
            rc = -ECANCELED;
        } else if (migrate_send_line(t, MIGRATE_MSG_GO)) {
            rc = -EPIPE;
            snprintf(err, errlen, "connection lost before the hand-over");
        } else if ((rc = expect(t, MIGRATE_MSG_RUNNING, line, sizeof(line), err, errlen))) {
            log_err("d%u: %s after GO: the guest runs here again", d->domid, err);
        } else {
            uint64_t resumed = strtoull(line + strlen(MIGRATE_MSG_RUNNING), NULL, 10);
            postcopy_take_token(d, line);
            if (o->local_mem)   /* the destination's now: never reused or punched here */
                local_hand_over(o->local_mem, d->domid);
            rep->downtime_ms = resumed > t_pause_real ?
                               (double)(resumed - t_pause_real) / 1e6 : 0;
            /* Post-copy: the guest runs there, its missing pages are only here. */
            if (missing && (rc = postcopy_serve(d, &s.w, t, missing, s.nr_gfns, rep, err,
                                                errlen))) {
                rep->outcome = MIGRATE_POSTCOPY_PAUSED;
                __atomic_store_n(&d->postcopy_paused, true, __ATOMIC_RELAXED);  /* xkvm list */
            }
        }
    } else if (!rc) {
        rep->downtime_ms = rep->final_ms;
    }
    if (logging)
        p2m_log_dirty_disable(&d->p2m);
    if (s.throttle)
        domain_set_throttle(d, 0);      /* every path: the guest runs at full speed here */
    if (rc && was_cancelled(o->cancel)) {
        rc = -ECANCELED;        /* whatever failed, it failed because of the cancel */
        snprintf(err, errlen, "cancelled (xkvm migrate-cancel) %s", paused ?
                 "during the stop-and-copy" : "while the guest ran");
    } else if (rc && t->why[0] && !strstr(err, t->why)) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (%s)", t->why);   /* what the transport knows */
    }
    /* The guest runs on here (a failure, or a save it outlives): so does its ring. */
    if (s.xs_quiesced && (rc ? rep->outcome == MIGRATE_RESUMED : !o->peer))
        toolstack_xs_resume(d->domid);
    if (!rc) {
        rep->outcome = MIGRATE_DONE;
    } else if (rep->outcome == MIGRATE_RESUMED && paused) {
        domain_unpause(d);
        log_warn("d%u: migration failed (%s): the guest runs here again", d->domid, err);
    } else if (rep->outcome == MIGRATE_RESUMED) {
        log_warn("d%u: migration failed (%s): the guest kept running here", d->domid, err);
    } else if (rep->outcome == MIGRATE_POSTCOPY_PAUSED) {
        log_err("d%u: post-copy failed (%s): the guest ran on at the destination; this paused "
                "copy holds its missing pages and is kept (docs/migration.md \"Failure during "
                "post-copy\")", d->domid, err);
    }
    rep->bytes = writer_bytes(&s);
    rep->connections = s.mc.n + 1;
    rep->total_ms = (double)(mono_ns() - t_start) / 1e6;
    multiconn_tx_release(&s.mc);
    xkvm_stream_writer_release(&s.w);
    free(s.dirty);
    free(s.backed);
    free(s.xs);
    free(missing);
    return rc;
}
