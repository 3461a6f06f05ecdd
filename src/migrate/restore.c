/*
 * The receiving side of restore and live migration: see migrate.h. Every record is
 * validated by the stream reader before it is applied; the domain is built paused
 * from DOMAIN_CONFIG once the gate admitted it (nothing is allocated before), filled
 * from PAGE_DATA, given its state at the end, published to the toolstack and run only
 * after END (and, from a peer, after GO). Any failure destroys it unseen.
 */
#include "util/clock.h"
#include "migrate/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "hv/domain.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/toolstack_xs.h"
#include "migrate/arch_state.h"
#include "migrate/local_mem.h"
#include "migrate/postcopy_restore.h"
#include "migrate/multiconn.h"
#include "migrate/pv_restore.h"
#include "util/domcfg.h"
#include "util/hostpath.h"
#include "util/log.h"

/*
 * Fault injection for the test suite (tests/kvm/migrate.sh): with XKVM_TEST_FAULT set
 * to a phase name, the receiving xkvmd dies there, as a crash would.
 */
static void fault_point(const char *phase)
{
    const char *f = getenv("XKVM_TEST_FAULT");
    if (f && !strcmp(f, phase)) {
        log_err("XKVM_TEST_FAULT=%s: exiting here", phase);
        _exit(70);
    }
}

struct receiver {
    bool peer;
    struct migrate_gate *gate;      /* NULL: a local restore */
    const struct domcfg *local;     /* the host's config for the guest, or NULL */
    struct domain *d;
    bool paused;                /* arrives paused (xkvm pause on the source) */
    char *err;
    size_t errlen;
    /* Records kept until END (the reader reuses its buffer per record). */
    void *hvm_ctx, *dom_ctx, *xs_state;
    size_t hvm_len, dom_len, xs_len;
    char uuid[37];              /* the source's /vm name for the guest, or "" */
    uint64_t ram_held;          /* RAM frames the domain holds: at most its maximum */
    /* A plain transport's pages go socket -> pipe -> memfd (splice_move); else -1. */
    int pipe_rd, pipe_wr, splice_from;
    struct postcopy_restore *postcopy;  /* POSTCOPY_MISSING read: owned by d */
    /* Several connections (multiconn.h): an extra connection's receiver names the
     * main one, whose ram_held it shares under place_lock. */
    struct receiver *main;
    pthread_mutex_t place_lock;
    struct multiconn_rx *mc;
};

/* Where a stream's host paths may lie (xkvmd --disk-root, --kernel-root). */
static struct hostpath_roots disk_roots, kernel_roots;

int migrate_allow_root(bool kernel, const char *dir, char *err, size_t errlen)
{
    return hostpath_roots_add(kernel ? &kernel_roots : &disk_roots, dir, err, errlen);
}

/* ---- main-thread steps ---- */

struct build_call {
    struct domcfg cfg;
    uint16_t domid;
    bool same_host;             /* built without RAM (migrate/local_mem.h) */
    struct domain *d;
    int rc;
    char err[512];
};

static void build_on_main(void *arg)
{
    struct build_call *c = arg;
    c->rc = c->same_host ? domain_create_for_local(&c->cfg, c->domid, &c->d, c->err,
                                                   sizeof(c->err))
                         : domain_create_for_restore(&c->cfg, c->domid, &c->d, c->err,
                                                     sizeof(c->err));
    if (!c->rc)
        domain_job_claim(c->d);     /* new, not yet published: cannot fail */
}

static void destroy_on_main(void *arg)
{
    struct domain *d = arg;
    domain_job_release(d);
    domain_destroy(d);
}

/* Whole and about to run: the toolstack may see it, under its name. */
struct publish_call {
    struct domain *d;
    int rc;
    char err[256];
};

static void publish_on_main(void *arg)
{
    struct publish_call *c = arg;
    c->rc = domain_publish(c->d, c->err, sizeof(c->err));
}

static void release_on_main(void *arg)
{
    domain_job_release(arg);
    host_notify();      /* a shutdown that waited for the restore */
}

static int fail(struct receiver *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct receiver *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* The host resources of the guest: the local config's, or the stream's if allowed. */
static int host_resources(struct receiver *r, struct domcfg *cfg)
{
    char why[512];
    bool kernel_dropped = false;
    int rc = hostpath_apply(cfg, r->local, &disk_roots, &kernel_roots, &kernel_dropped, why,
                            sizeof(why));
    if (rc)
        return fail(r, rc, "DOMAIN_CONFIG: %s", why);
    if (kernel_dropped)
        log_warn("restore: the stream's kernel %s is not under any --kernel-root: never read; "
                 "the domain's restart actions become destroy", cfg->kernel);
    return 0;
}

_Static_assert(XKVM_DOMID_LIMIT == DOMREC_DOMID_LIMIT, "one guest domid range");

static int on_config(struct receiver *r, const struct xkvm_stream_record *rec)
{
    struct build_call *c = calloc(1, sizeof(*c));
    struct domrec dr = { .cfg = c ? &c->cfg : NULL };
    int rc = 0;
    if (!c)
        rc = fail(r, -ENOMEM, "out of memory");
    else
        rc = domrec_from_json((const char *)rec->body, rec->length, DOMREC_DOMID | DOMREC_CONFIG,
                              DOMREC_PAUSED | DOMREC_UUID | DOMREC_VMCALL, "DOMAIN_CONFIG",
                              "{\"domid\": N, \"config\": {...}}", &dr, r->err, r->errlen);
    if (!rc) {
        /* The optional members: "paused", "uuid" (the source's /vm name). */
        if (dr.members & DOMREC_UUID)
            snprintf(r->uuid, sizeof(r->uuid), "%s", dr.uuid);
        if (dr.members & DOMREC_PAUSED)
            r->paused = dr.paused;
    }
    if (!rc && dr.vmcall && host.transport != HCALL_TRANSPORT_INTERCEPT)
        rc = fail(r, -EOPNOTSUPP, "DOMAIN_CONFIG: the guest issues VMCALL hypercalls; this "
                  "host's KVM (%s) cannot intercept them%s", host.kvm_module,
                  host.transport_port_io_only ? " (xkvmd --hypercall-transport port-io)" : "");
    if (!rc)
        rc = host_resources(r, &c->cfg);
    /* Nothing is allocated for the stream before this. */
    if (!rc && r->gate)
        rc = r->gate->admit(r->gate, &c->cfg, r->err, r->errlen);
    if (!rc) {
        c->domid = (uint16_t)dr.domid;
        /* Same-host: no RAM yet; LOCAL_MEMORY says where it is (on_local_memory). */
        c->same_host = r->gate && r->gate->local_mem;
        host_call_main(build_on_main, c);
        if (c->rc)
            rc = fail(r, c->rc, "%s", c->err);
        else
            r->d = c->d;
        if (r->d)
            r->ram_held = mm_count_owner_ram(r->d);     /* its RAM, as laid out */
    }
    /* The xenstore layout now, while the pages come: only the import is left for the
     * pause (docs/migration.md, "Backends"). */
    if (!rc && r->d)
        rc = toolstack_xs_prepare(r->d, r->uuid[0] ? r->uuid : NULL, r->err, r->errlen);
    free(c);
    return rc;
}

/*
 * Where the next data page goes: the frame's bytes in xkvmd's mapping of machine
 * memory, appended to iov (merged with the previous entry when the frames follow).
 */
static void add_frame(struct iovec *iov, int *n, uint64_t mfn)
{
    uint8_t *dst = (uint8_t *)host_mm()->base + (mfn << XKVM_PAGE_SHIFT);
    if (*n && (uint8_t *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == dst) {
        iov[*n - 1].iov_len += XKVM_PAGE_SIZE;
        return;
    }
    iov[(*n)++] = (struct iovec){ .iov_base = dst, .iov_len = XKVM_PAGE_SIZE };
}

/*
 * A page where the domain has a hole: a toolstack page (xenstore or console ring) or
 * ACPI, or RAM the guest populated (ballooned in) after its memory was laid out, up to
 * its maximum. Outside the MMIO hole only, as a guest may populate.
 */
static int place_new_page(struct receiver *r, uint64_t gfn, bool special, uint64_t *mfn)
{
    struct domain *d = r->d;
    bool mmio = gfn >= (GUEST_LOWMEM_END >> XKVM_PAGE_SHIFT) &&
                gfn < (GUEST_HIGHMEM_START >> XKVM_PAGE_SHIFT);
    struct receiver *m = r->main ? r->main : r;
    if (!special && (mmio || m->ram_held >= d->max_frames))
        return fail(r, -EINVAL, "page %#llx is not in the domain's memory map%s",
                    (unsigned long long)gfn, mmio ? "" : " and past its maximum");
    if (mm_alloc_run(host_mm(), 1, d->domid, special ? FRAME_SPECIAL : FRAME_RAM, mfn) != 1)
        return fail(r, -ENOMEM, "out of memory for page %#llx", (unsigned long long)gfn);
    if (physmap_place(d, gfn, *mfn, INVALID_GFN))
        return fail(r, -EIO, "placing page %#llx", (unsigned long long)gfn);
    m->ram_held += !special;
    return 0;
}

/*
 * Plain transports: page contents move from the socket (or file) into the memfd with
 * splice(2), socket -> pipe -> frames: the pipe takes the socket's buffers without a
 * copy, the memfd copies them into its pages without faulting them in or zeroing
 * them first (bench-page-recv: the fastest way on hosts measured, docs/performance.md).
 */
struct splice_run {
    const struct receiver *r;
    loff_t off;                 /* in the memfd */
};

static ssize_t splice_move(void *arg, size_t len)
{
    struct splice_run *s = arg;
    ssize_t n = splice(s->r->splice_from, NULL, s->r->pipe_wr, NULL, len, SPLICE_F_MOVE);
    if (n <= 0)
        return n;
    for (ssize_t out = 0; out < n;) {
        ssize_t m = splice(s->r->pipe_rd, NULL, host_mm()->fd, &s->off, (size_t)(n - out),
                           SPLICE_F_MOVE);
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0) {
            if (m == 0)
                errno = EIO;
            return -1;
        }
        out += m;
    }
    return n;
}

/* The page contents of a record into the frames iov names (host_mm()'s mapping). */
static int receive_pages(struct receiver *r, struct xkvm_stream_reader *rd,
                         const struct iovec *iov, int niov)
{
    if (r->splice_from < 0)
        return xkvm_stream_read_pages(rd, iov, niov);
    for (int i = 0; i < niov; i++) {
        struct splice_run s = {
            .r = r, .off = (loff_t)((uint8_t *)iov[i].iov_base - (uint8_t *)host_mm()->base),
        };
        if (xkvm_stream_read_pages_by(rd, iov[i].iov_len, splice_move, &s))
            return -1;
    }
    return 0;
}

/*
 * Splice when the transport's bytes are its descriptor's and the descriptor can, and
 * the frames are not resident already: preallocated machine memory (xkvmd
 * --machine-memory-prealloc) is read into in place, which is faster there
 * (bench-page-recv's resident-direct against resident-splice).
 */
static void splice_setup(struct receiver *r, const struct transport *t)
{
    struct stat st;
    int p[2];
    r->pipe_rd = r->pipe_wr = r->splice_from = -1;
    if (!t->raw || host_mm()->prealloc || fstat(t->fd, &st) ||
        !(S_ISSOCK(st.st_mode) || S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode)) ||
        pipe2(p, O_CLOEXEC))
        return;
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);     /* fewer round trips; the default does too */
    r->pipe_rd = p[0];
    r->pipe_wr = p[1];
    r->splice_from = t->fd;
}

/* A removed page (XTAB, BROKEN): the domain gives up its frame there, if it has one. */
static int drop_page(struct receiver *r, uint64_t gfn, uint64_t mfn)
{
    if (mfn == INVALID_MFN)
        return 0;
    struct receiver *m = r->main ? r->main : r;
    bool ram = mm_frame_type(host_mm(), mfn) == FRAME_RAM;
    if (physmap_place(r->d, gfn, INVALID_MFN, INVALID_GFN))
        return fail(r, -EIO, "removing page %#llx", (unsigned long long)gfn);
    m->ram_held -= ram && m->ram_held;
    return 0;
}

/*
 * PAGE_DATA, one copy: every entry is checked and given its frame first (a page the
 * domain may not have is refused before any byte of the record lands), then the page
 * contents are read from the stream straight into those frames.
 */
static int place_pages(struct receiver *r, const struct xkvm_stream_record *rec,
                       struct iovec *iov, int *niov);

static int on_pages(struct receiver *r, struct xkvm_stream_reader *rd,
                    const struct xkvm_stream_record *rec)
{
    struct iovec iov[XKVM_STREAM_BATCH_MAX];
    int niov = 0;
    /* Extra connections place pages at once (multiconn.h): one at a time. */
    pthread_mutex_t *lock = &(r->main ? r->main : r)->place_lock;
    pthread_mutex_lock(lock);
    int rc = place_pages(r, rec, iov, &niov);
    pthread_mutex_unlock(lock);
    if (!rc && niov && receive_pages(r, rd, iov, niov))
        return fail(r, -EIO, "stream: %s", rd->err.msg);
    return rc;
}

/* Every entry checked and given its frame; the frames to fill into iov. */
static int place_pages(struct receiver *r, const struct xkvm_stream_record *rec,
                       struct iovec *iov, int *niov)
{
    int rc;
    struct domain *d = r->d;
    struct xkvm_stream_page_iter it;
    struct xkvm_stream_page pg;
    xkvm_stream_page_iter_init(&it, rec);
    while (xkvm_stream_page_next(&it, &pg)) {
        if (pg.pfn >= d->p2m.nr_gfns)
            return fail(r, -EINVAL, "page %#llx is beyond the domain's memory",
                        (unsigned long long)pg.pfn);
        uint64_t mfn = p2m_lookup(&d->p2m, pg.pfn);
        bool special = guest_gfn_is_special(pg.pfn);
        if (pg.type == XKVM_STREAM_PAGE_XTAB || pg.type == XKVM_STREAM_PAGE_BROKEN) {
            if ((rc = drop_page(r, pg.pfn, mfn)))
                return rc;
            continue;
        }
        if (mfn == INVALID_MFN && (rc = place_new_page(r, pg.pfn, special, &mfn)))
            return rc;
        /*
         * XALLOC: a zero page. Frames come zeroed and the sender never sends XALLOC
         * for a page it sent with data before, so there is nothing to write.
         */
        if (pg.type == XKVM_STREAM_PAGE_NORMAL)
            add_frame(iov, niov, mfn);
    }
    return 0;
}

/* Same-host migration: the domain's RAM, where it is (migrate/local_mem.h). */
static int on_local_memory(struct receiver *r, const struct xkvm_stream_record *rec)
{
    struct local_mem *lm = r->gate ? r->gate->local_mem : NULL;
    if (!lm || !r->d || lm->nr_runs)
        return fail(r, -EINVAL, "LOCAL_MEMORY outside a same-host migration");
    char why[512];
    int rc = local_recv_runs(lm, rec, why, sizeof(why));
    struct domain_adopt a = { .extents = lm->runs, .nr_extents = lm->nr_runs,
                              .migrating = true };
    if (!rc)
        rc = domain_adopt_local(r->d, &a, why, sizeof(why));
    if (rc)
        return fail(r, rc, "%s", why);
    for (size_t i = 0; i < lm->nr_runs; i++)    /* its RAM: the runs (no walk of it) */
        r->ram_held += lm->runs[i].nr;
    return 0;
}

static void close_splice(struct receiver *r)
{
    if (r->pipe_rd >= 0) {
        close(r->pipe_rd);
        close(r->pipe_wr);
    }
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fault injection (tests/kvm/migrate-multiconn.sh): an extra connection drops. */
static bool data_fault_point(struct transport *t)
{
    const char *f = getenv("XKVM_TEST_FAULT");
    if (!f || strcmp(f, "data-drop"))
        return false;
    shutdown(t->fd, SHUT_RDWR);
    return true;
}

int restore_data_stream(void *receiver, struct transport *t,
                        void (*marker)(void *arg, uint32_t seq), void *arg,
                        char *err, size_t errlen)
{
    struct receiver *m = receiver;
    struct receiver r = { .peer = true, .main = m, .d = m->d, .err = err, .errlen = errlen };
    struct xkvm_stream_reader rd;
    struct xkvm_stream_limits lim = { .max_vcpus = XKVM_STREAM_MAX_VCPUS };
    struct xkvm_stream_io io = transport_stream_io(t);
    if (xkvm_stream_reader_init_io(&rd, &io, &lim))
        return fail(&r, -ENOMEM, "out of memory");
    xkvm_stream_reader_defer_pages(&rd, true);
    splice_setup(&r, t);
    struct xkvm_stream_record rec;
    int rc = 0, n;
    bool ended = false;
    while (!rc && !ended && (n = xkvm_stream_next(&rd, &rec)) > 0) {
        if (rec.type == XKVM_STREAM_REC_PAGE_DATA && data_fault_point(t))
            rc = fail(&r, -EPIPE, "XKVM_TEST_FAULT=data-drop: connection dropped");
        else if (rec.type == XKVM_STREAM_REC_PAGE_DATA)
            rc = on_pages(&r, &rd, &rec);
        else if (rec.type == XKVM_STREAM_REC_SYNC && rec.length == 4 &&
                 le32_at(rec.body) == MULTICONN_LAST_MARKER)
            ended = true;
        else if (rec.type == XKVM_STREAM_REC_SYNC && rec.length == 4)
            marker(arg, le32_at(rec.body));
        else if (rec.type != XKVM_STREAM_REC_STATIC_DATA_END)
            rc = fail(&r, -EPROTO, "an extra connection carries STATIC_DATA_END, PAGE_DATA "
                      "and SYNC markers only, not %s", xkvm_stream_rec_name(rec.type) ?
                      xkvm_stream_rec_name(rec.type) : "an unknown record");
    }
    if (!rc && !ended)
        rc = fail(&r, -EPIPE, "stream: %s", rd.err.msg);
    if (rc && t->why[0] && !strstr(err, t->why)) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (%s)", t->why);
    }
    xkvm_stream_reader_release(&rd);
    close_splice(&r);
    return rc;
}

/* SYNC: with several connections (an 8-byte body), wait for the extra ones first. */
static int on_sync(struct receiver *r, struct transport *t, const struct xkvm_stream_record *rec)
{
    if (r->mc && rec->length == 8) {
        uint32_t count = le32_at(rec->body);
        int rc = multiconn_rx_wait(r->mc, &count, le32_at(rec->body + 4), false, r->err,
                                   r->errlen);
        if (rc)
            return rc;
    }
    if (r->peer && migrate_send_line(t, MIGRATE_MSG_SYNCED))
        return fail(r, -EPIPE, "source went away");
    return 0;
}

/*
 * READY, with a token for extra connections where they can reach us (a network peer),
 * then what this reader offers: compressed state records.
 */
static int say_ready(struct receiver *r, struct transport *t)
{
    char token[MULTICONN_TOKEN_LEN + 1];
    if (r->gate && (r->mc = multiconn_rx_open(r, t->fd, token)))
        return migrate_send_line(t, MIGRATE_MSG_READY " %s " MIGRATE_FEATURE_LZ4, token);
    return migrate_send_line(t, MIGRATE_MSG_READY " " MIGRATE_FEATURE_LZ4);
}

static int keep(void **dst, size_t *len, const struct xkvm_stream_record *rec)
{
    free(*dst);
    *dst = malloc(rec->length ? rec->length : 1);
    if (!*dst)
        return -ENOMEM;
    memcpy(*dst, rec->body, rec->length);
    *len = rec->length;
    return 0;
}

/* END: everything has been read and checked; apply the state. */
/* The domain is whole: dom0 services may see it (and re-attach to its rings). */
static void reveal_on_main(void *arg)
{
    struct domain *d = arg;
    d->restoring = false;
    domains_changed();
}

static int finish(struct receiver *r)
{
    struct domain *d = r->d;
    uint64_t t0 = mono_ns();
    if (!r->dom_ctx || !r->xs_state)
        return fail(r, -EINVAL, "stream lacks its DOMAIN_CONTEXT or XENSTORE_STATE record "
                    "(a --compat stream cannot be restored)");
    int rc = pv_restore_check(d, r->dom_ctx, r->dom_len, r->err, r->errlen);
    if (rc)
        return rc;
    uint64_t advance = 0;
    rc = pv_restore_context(d, r->dom_ctx, r->dom_len, &advance, r->err, r->errlen);
    uint64_t t1 = mono_ns();
    if (!rc)
        rc = arch_restore_domain(d, r->hvm_ctx, r->hvm_len, advance, r->err, r->errlen);
    uint64_t t2 = mono_ns();
    /* Visible to xenstored before INTRODUCE, so it never takes the domain for gone. */
    if (!rc)
        host_call_main(reveal_on_main, d);
    if (!rc)
        rc = toolstack_xs_import(d, r->uuid[0] ? r->uuid : NULL, r->xs_state, r->xs_len,
                                 r->err, r->errlen);
    log_info("d%u: state applied: PV %.2f ms, vCPUs %.2f ms, xenstore %.2f ms", d->domid,
             (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(mono_ns() - t2) / 1e6);
    return rc;
}

int migrate_receive(struct transport *t, bool peer, struct migrate_gate *gate,
                    const struct domcfg *local, uint16_t *domid, char *err, size_t errlen)
{
    struct receiver r = { .peer = peer, .gate = gate, .local = local, .err = err,
                          .errlen = errlen, .pipe_rd = -1, .pipe_wr = -1, .splice_from = -1,
                          .place_lock = PTHREAD_MUTEX_INITIALIZER };
    struct xkvm_stream_reader rd;
    /* Until a peer's config is admitted, no record may make us buffer more than it. */
    struct xkvm_stream_limits lim = { .max_vcpus = XKVM_STREAM_MAX_VCPUS,
                                      .record_max = peer ? XKVM_STREAM_CONFIG_MAX : 0 };
    int rc = 0;
    struct xkvm_stream_io io = transport_stream_io(t);
    if (xkvm_stream_reader_init_io(&rd, &io, &lim))
        return fail(&r, -ENOMEM, "out of memory");
    xkvm_stream_reader_defer_pages(&rd, true);     /* one copy: on_pages */
    splice_setup(&r, t);
    struct xkvm_stream_record rec;
    int n;
    bool ended = false;
    while (!rc && !ended && (n = xkvm_stream_next(&rd, &rec)) > 0) {
        if (!r.d && rec.type != XKVM_STREAM_REC_DOMAIN_CONFIG && rec.type != XKVM_STREAM_REC_END &&
            rec.type != XKVM_STREAM_REC_STATIC_DATA_END && !rec.skipped &&
            rec.type != XKVM_STREAM_REC_X86_CPUID_POLICY && rec.type != XKVM_STREAM_REC_X86_MSR_POLICY) {
            rc = fail(&r, -EINVAL, "stream has no DOMAIN_CONFIG before its %s record "
                      "(not an xkvm save, or a --compat one)",
                      xkvm_stream_rec_name(rec.type) ? xkvm_stream_rec_name(rec.type) : "first");
            break;
        }
        switch (rec.type) {
        case XKVM_STREAM_REC_DOMAIN_CONFIG:
            rc = on_config(&r, &rec);
            if (!rc)
                xkvm_stream_reader_set_record_max(&rd, 0);
            fault_point("recv-config");
            if (!rc && peer && say_ready(&r, t))
                rc = fail(&r, -EPIPE, "source went away");
            break;
        case XKVM_STREAM_REC_LOCAL_MEMORY:
            fault_point("recv-local");
            rc = on_local_memory(&r, &rec);
            break;
        case XKVM_STREAM_REC_PAGE_DATA:
            fault_point("recv-pages");
            rc = on_pages(&r, &rd, &rec);
            break;
        case XKVM_STREAM_REC_HVM_CONTEXT:
            rc = keep(&r.hvm_ctx, &r.hvm_len, &rec);
            break;
        case XKVM_STREAM_REC_DOMAIN_CONTEXT:
            rc = keep(&r.dom_ctx, &r.dom_len, &rec);
            break;
        case XKVM_STREAM_REC_XENSTORE_STATE:
            rc = keep(&r.xs_state, &r.xs_len, &rec);
            break;
        case XKVM_STREAM_REC_POSTCOPY_MISSING:
            rc = peer ? postcopy_restore_begin(&r.postcopy, r.d, t, &rec, err, errlen) :
                 fail(&r, -EINVAL, "POSTCOPY_MISSING in a saved image");
            break;
        case XKVM_STREAM_REC_END:
            fault_point("recv-end");
            ended = true;
            if (r.mc)
                rc = multiconn_rx_wait(r.mc, NULL, 0, true, err, errlen);
            if (!rc)
                rc = finish(&r);
            break;
        case XKVM_STREAM_REC_SYNC:
            rc = on_sync(&r, t, &rec);
            break;
        default:
            /* TSC_INFO (time is in DOMAIN_CONTEXT), HVM_PARAMS (a Xen reader's copy of
             * DOMAIN_CONTEXT's, which pv_restore_context applies), policies, optional */
            break;
        }
        if (rc == -ENOMEM && !err[0])
            fail(&r, rc, "out of memory");
    }
    if (!rc && !ended)
        rc = fail(&r, -EINVAL, "stream: %s", rd.err.msg);
    if (rc && r.mc)
        multiconn_rx_failed(r.mc, err, errlen);     /* the cause, if theirs */
    multiconn_rx_close(r.mc);      /* every extra connection gone: none writes any more */
    close_splice(&r);
    free(r.hvm_ctx);
    free(r.dom_ctx);
    free(r.xs_state);

    if (!rc && peer) {
        char line[MIGRATE_MSG_MAX];
        if (migrate_send_line(t, MIGRATE_MSG_RESTORED)) {
            rc = fail(&r, -EPIPE, "source went away before the hand-over");
        } else {
            fault_point("recv-restored");
            if (migrate_read_line(t, line, sizeof(line), migrate_stall_timeout_ms()) ||
                strcmp(line, MIGRATE_MSG_GO))
                rc = fail(&r, -EPIPE, "source did not hand the guest over");
        }
    }
    if (!rc) {
        struct publish_call pc = { .d = r.d };
        host_call_main(publish_on_main, &pc);
        if ((rc = pc.rc))
            snprintf(err, errlen, "%s", pc.err);
    }
    if (rc && t->why[0] && !strstr(err, t->why)) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (%s)", t->why);   /* what the transport knows */
    }
    if (rc) {
        xkvm_stream_reader_release(&rd);
        if (peer)
            migrate_send_line(t, MIGRATE_MSG_ERROR " %s", err);
        if (r.d) {
            uint16_t id = r.d->domid;
            if (gate && gate->local_mem)    /* the source runs on over these frames */
                local_hand_over(gate->local_mem, id);
            host_call_main(destroy_on_main, r.d);
            log_warn("d%u: incoming domain removed: %s", id, err);
        }
        return rc;
    }
    struct domain *d = r.d;
    pv_restore_kick_events(d);
    if (r.paused)
        domain_toolstack_pause(d);      /* stays paused, as it was */
    domain_unpause(d);          /* the hold domain_create_for_restore took */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (peer && migrate_send_line(t, MIGRATE_MSG_RUNNING " %llu%s%s",
                                  (unsigned long long)ts.tv_sec * 1000000000ull +
                                  (unsigned long long)ts.tv_nsec, r.postcopy ? " " : "",
                                  r.postcopy ? postcopy_restore_token(r.postcopy) : "")) {
        /* The source cannot learn that we run it, so it takes the guest back. */
        snprintf(err, errlen, "the source went away before it heard RUNNING");
        xkvm_stream_reader_release(&rd);
        uint16_t id = d->domid;
        domain_pause(d);
        if (gate && gate->local_mem)
            local_hand_over(gate->local_mem, id);
        host_call_main(destroy_on_main, d);
        log_warn("d%u: incoming domain removed: %s", id, err);
        return -EPIPE;
    }
    *domid = d->domid;
    log_info("d%u: restored and running", d->domid);
    if (r.postcopy) {           /* the guest runs; its missing pages come now */
        postcopy_restore_running(r.postcopy);
        rc = postcopy_restore_serve(r.postcopy, &rd, err, errlen);
        postcopy_restore_detach(r.postcopy);
    }
    xkvm_stream_reader_release(&rd);
    host_call_main(release_on_main, d);
    return rc;
}
