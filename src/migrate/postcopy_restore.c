/*
 * Post-copy on the destination: see postcopy_restore.h and docs/migration.md
 * "Post-copy". The uffd_pages is the first member of struct postcopy_restore, which
 * d->postcopy points at and domain_destroy frees: it lives as long as the domain, so
 * the fault thread and dom0 maps never see it go while they might still use it.
 */
#include "migrate/postcopy_restore.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/uffd_pages.h"
#include "util/log.h"
#include "xkvm/postcopy.h"

struct m2g {
    uint64_t mfn, gfn;
};

struct postcopy_restore {
    struct uffd_pages u;        /* first: d->postcopy, freed by domain_destroy */
    struct domain *d;
    pthread_mutex_t wlock;      /* the connection's writes; t, live */
    struct transport *t;
    bool live;                  /* RUNNING sent: requests may go */
    struct m2g *m2g;            /* the missing frames' gfns, sorted by mfn */
    uint64_t nr_m2g;
    uint8_t *mm_lo;             /* the registered range of mm->base */
    uint64_t mm_len;
    char token[33];             /* sent with RUNNING; a recovery must name it */
    bool recovering;            /* a recovery connection serves it now */
    bool serving;               /* a connection's thread is between running and detach */
};

static int cmp_m2g(const void *a, const void *b)
{
    const struct m2g *x = a, *y = b;
    return x->mfn < y->mfn ? -1 : x->mfn > y->mfn;
}

static uint64_t window_frame(void *arg, uint64_t addr)
{
    struct postcopy_restore *pr = arg;
    uint64_t lo = (uint64_t)(uintptr_t)pr->d->p2m.window;
    if (addr < lo || addr >= lo + (pr->d->p2m.nr_gfns << XKVM_PAGE_SHIFT))
        return UINT64_MAX;
    uint64_t mfn = p2m_lookup(&pr->d->p2m, (addr - lo) >> XKVM_PAGE_SHIFT);
    return mfn == INVALID_MFN ? UINT64_MAX : mfn;
}

/* The fault thread (or a dom0 map) asks for mfn: "PAGE gfn 1" once RUNNING went out. */
static void request_frame(void *arg, uint64_t mfn)
{
    struct postcopy_restore *pr = arg;
    struct m2g key = { .mfn = mfn };
    const struct m2g *e = bsearch(&key, pr->m2g, pr->nr_m2g, sizeof(key), cmp_m2g);
    char line[64];
    if (!e || xkvm_postcopy_request_format(line, sizeof(line), e->gfn, 1) < 0)
        return;
    pthread_mutex_lock(&pr->wlock);
    if (pr->live && pr->t)
        migrate_send_line(pr->t, "%s", line);   /* a lost connection: the reader sees it */
    /* else: before RUNNING went out; postcopy_restore_running asks again */
    pthread_mutex_unlock(&pr->wlock);
}

struct collect {
    struct postcopy_restore *pr;
    const char *why;
};

static int collect_range(void *arg, uint64_t first, uint64_t count)
{
    struct collect *c = arg;
    struct postcopy_restore *pr = c->pr;
    for (uint64_t g = first; g < first + count; g++) {
        uint64_t mfn = p2m_lookup(&pr->d->p2m, g);
        if (mfn == INVALID_MFN || mfn >= host_mm()->nr_frames ||
            mm_frame_type(host_mm(), mfn) != FRAME_RAM) {
            c->why = "a missing page is not RAM the domain has here";
            return -EINVAL;
        }
        pr->m2g[pr->nr_m2g++] = (struct m2g){ mfn, g };
    }
    return 0;
}

/* Punch the missing frames (runs of consecutive mfns at once). */
static int mark_missing(struct postcopy_restore *pr)
{
    for (uint64_t i = 0; i < pr->nr_m2g;) {
        uint64_t n = 1;
        while (i + n < pr->nr_m2g && pr->m2g[i + n].mfn == pr->m2g[i].mfn + n)
            n++;
        int rc = uffd_pages_mark_missing(&pr->u, pr->m2g[i].mfn, n);
        if (rc)
            return rc;
        i += n;
    }
    return 0;
}

static int setup(struct postcopy_restore *pr, const struct xkvm_stream_record *rec,
                 char *err, size_t errlen)
{
    struct domain *d = pr->d;
    const char *why = "";
    long n = xkvm_postcopy_missing_decode(rec->body, rec->length, d->p2m.nr_gfns, NULL, NULL,
                                          &why);
    if (n < 0) {
        snprintf(err, errlen, "POSTCOPY_MISSING: %s", why);
        return -EINVAL;
    }
    pr->m2g = malloc(((size_t)n + 1) * sizeof(*pr->m2g));
    if (!pr->m2g) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct collect c = { .pr = pr };
    if (xkvm_postcopy_missing_decode(rec->body, rec->length, d->p2m.nr_gfns, collect_range, &c,
                                     &why) < 0) {
        snprintf(err, errlen, "POSTCOPY_MISSING: %s", c.why ? c.why : why);
        return -EINVAL;
    }
    qsort(pr->m2g, pr->nr_m2g, sizeof(*pr->m2g), cmp_m2g);
    struct machine_mem *mm = host_mm();
    int rc = uffd_pages_open(&pr->u, mm->fd, mm->base, mm->nr_frames, window_frame,
                             request_frame, pr);
    if (rc) {
        snprintf(err, errlen, "post-copy needs userfaultfd on shmem: %s%s", strerror(-rc),
                 rc == -EPERM ? " (vm.unprivileged_userfaultfd, or CAP_SYS_PTRACE)" : "");
        return rc;
    }
    if (!pr->nr_m2g)
        return 0;
    pr->mm_lo = mm->base + (pr->m2g[0].mfn << XKVM_PAGE_SHIFT);
    pr->mm_len = (pr->m2g[pr->nr_m2g - 1].mfn + 1 - pr->m2g[0].mfn) << XKVM_PAGE_SHIFT;
    if ((rc = uffd_pages_register(&pr->u, d->p2m.window, d->p2m.nr_gfns << XKVM_PAGE_SHIFT)) ||
        (rc = uffd_pages_register(&pr->u, pr->mm_lo, pr->mm_len)) ||
        (rc = mark_missing(pr)) || (rc = uffd_pages_start(&pr->u))) {
        snprintf(err, errlen, "post-copy: making the missing pages fault: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

int postcopy_restore_begin(struct postcopy_restore **out, struct domain *d,
                           struct transport *t, const struct xkvm_stream_record *rec,
                           char *err, size_t errlen)
{
    if (*out) {
        snprintf(err, errlen, "POSTCOPY_MISSING twice");
        return -EINVAL;
    }
    struct postcopy_restore *pr = calloc(1, sizeof(*pr));
    if (!pr) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pr->u.uffd = pr->u.stop_fd = -1;
    pr->d = d;
    pr->t = t;
    pthread_mutex_init(&pr->wlock, NULL);
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        free(pr);
        snprintf(err, errlen, "post-copy: no random bytes for the recovery token");
        return -EIO;
    }
    for (unsigned i = 0; i < sizeof(rnd); i++)
        snprintf(pr->token + 2 * i, 3, "%02x", rnd[i]);
    d->postcopy = &pr->u;       /* from here on domain_destroy frees it */
    *out = pr;
    int rc = setup(pr, rec, err, errlen);
    if (!rc)
        log_info("d%u: post-copy: %llu pages still at the source", d->domid,
                 (unsigned long long)pr->nr_m2g);
    return rc;
}

void postcopy_restore_running(struct postcopy_restore *pr)
{
    pthread_mutex_lock(&pr->wlock);
    pr->live = pr->serving = true;
    pthread_mutex_unlock(&pr->wlock);
    uffd_pages_rerequest(&pr->u);       /* faults taken before RUNNING */
}

const char *postcopy_restore_token(const struct postcopy_restore *pr)
{
    return pr->token;
}

void postcopy_restore_detach(struct postcopy_restore *pr)
{
    pthread_mutex_lock(&pr->wlock);
    pr->live = pr->serving = false;
    pr->t = NULL;
    pthread_mutex_unlock(&pr->wlock);
}

static const uint8_t zero_page[XKVM_PAGE_SIZE];

static int install_pages(struct postcopy_restore *pr, const struct xkvm_stream_record *rec)
{
    struct xkvm_stream_page_iter it;
    struct xkvm_stream_page pg;
    xkvm_stream_page_iter_init(&it, rec);
    while (xkvm_stream_page_next(&it, &pg)) {
        if (pg.type == XKVM_STREAM_PAGE_XTAB || pg.type == XKVM_STREAM_PAGE_BROKEN)
            continue;
        uint64_t mfn = pg.pfn < pr->d->p2m.nr_gfns ? p2m_lookup(&pr->d->p2m, pg.pfn) :
                       INVALID_MFN;
        if (mfn == INVALID_MFN || mfn >= host_mm()->nr_frames)
            continue;       /* only missing frames are installed; others are left alone */
        int rc = uffd_pages_install(&pr->u, mfn, pg.data ? pg.data : zero_page);
        if (rc)
            return rc;
    }
    return 0;
}

/* All in: the guest's memory is whole; nothing faults any more. */
static void finish(struct postcopy_restore *pr)
{
    if (pr->mm_lo) {
        uffd_pages_unregister(&pr->u, pr->d->p2m.window, pr->d->p2m.nr_gfns << XKVM_PAGE_SHIFT);
        uffd_pages_unregister(&pr->u, pr->mm_lo, pr->mm_len);
    }
    uffd_pages_stop(&pr->u);
    free(pr->m2g);          /* nothing is missing: no request will look a frame up */
    pr->m2g = NULL;
    pr->nr_m2g = 0;
}

static void lost(struct postcopy_restore *pr)
{
    struct domain *d = pr->d;
    pthread_mutex_lock(&pr->wlock);
    pr->live = false;           /* no request on a dead link; the caller detaches */
    pthread_mutex_unlock(&pr->wlock);
    __atomic_store_n(&d->postcopy_paused, true, __ATOMIC_RELAXED);
    /* Asked, not waited for: a vCPU blocked on a missing page stays blocked. */
    domain_pause_begin(d);
    log_err("d%u: post-copy connection lost with %llu pages still at the source: the domain "
            "is paused (postcopy-paused); the source keeps its copy (docs/migration.md "
            "\"Failure during post-copy\")", d->domid,
            (unsigned long long)uffd_pages_nr_missing(&pr->u));
}

int postcopy_restore_serve(struct postcopy_restore *pr, struct xkvm_stream_reader *rd,
                           char *err, size_t errlen)
{
    struct xkvm_stream_record rec;
    int n, rc = 0;
    bool done = false;
    xkvm_stream_reader_defer_pages(rd, false);  /* pages are installed, not written */
    while (!rc && !done && (n = xkvm_stream_next(rd, &rec)) > 0) {
        if (rec.type == XKVM_STREAM_REC_PAGE_DATA && (rc = install_pages(pr, &rec)))
            snprintf(err, errlen, "post-copy: installing a page: %s", strerror(-rc));
        done = rec.type == XKVM_STREAM_REC_POSTCOPY_DONE;
    }
    if (!rc && !done) {
        rc = -EPIPE;
        snprintf(err, errlen, "post-copy: %s", rd->err.msg);
    }
    uint64_t left = uffd_pages_nr_missing(&pr->u);
    if (!rc && left) {
        rc = -EPROTO;
        snprintf(err, errlen, "post-copy: POSTCOPY_DONE with %llu pages not sent",
                 (unsigned long long)left);
    }
    if (rc) {
        lost(pr);
        return rc;
    }
    finish(pr);
    struct uffd_pages_stats st;
    uffd_pages_get_stats(&pr->u, &st);
    uint64_t avg_us = st.served ? st.wait_ns_total / st.served / 1000 : 0;
    pthread_mutex_lock(&pr->wlock);
    rc = migrate_send_line(pr->t, MIGRATE_MSG_POSTCOPY_DONE " %llu %llu %llu %llu",
                           (unsigned long long)st.faults, (unsigned long long)st.requests,
                           (unsigned long long)avg_us,
                           (unsigned long long)(st.wait_ns_max / 1000));
    pr->live = false;
    pthread_mutex_unlock(&pr->wlock);
    log_info("d%u: post-copy done: %llu faults, %llu pages asked for, wait avg %.2f ms, max "
             "%.2f ms", pr->d->domid, (unsigned long long)st.faults,
             (unsigned long long)st.requests, (double)avg_us / 1e3,
             (double)st.wait_ns_max / 1e6);
    /* The source waits for this line before it destroys its copy; ours is whole. */
    return 0;
}

/* ---- recovery (docs/migration.md "Recovering a post-copy") ---- */

static bool token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned)(a[i] ^ b[i]);        /* no early exit: no timing oracle */
    return !diff;
}

/* MISSING lines for every frame still missing (asked for or not), then RECOVER-READY. */
static int send_missing_lines(struct postcopy_restore *pr, struct transport *t)
{
    uint64_t first = 0, count = 0;
    for (uint64_t i = 0; i <= pr->nr_m2g; i++) {
        bool miss = i < pr->nr_m2g && uffd_pages_is_missing(&pr->u, pr->m2g[i].mfn);
        if (miss && count && pr->m2g[i].gfn == first + count) {
            count++;
            continue;
        }
        if (count && migrate_send_line(t, MIGRATE_MSG_MISSING " %llx %llu",
                                       (unsigned long long)first, (unsigned long long)count))
            return -EPIPE;
        first = miss ? pr->m2g[i].gfn : 0;
        count = miss;
    }
    return migrate_send_line(t, MIGRATE_MSG_RECOVER_READY) ? -EPIPE : 0;
}

/* No other connection serves pr (the failed one has let go, no recovery runs): take it. */
static bool claim_free(struct postcopy_restore *pr)
{
    pthread_mutex_lock(&pr->wlock);
    bool free_now = !pr->serving && !pr->recovering;
    if (free_now)
        pr->recovering = true;
    pthread_mutex_unlock(&pr->wlock);
    return free_now;
}

/* The line names a postcopy-paused domain of ours and its token: claim it. */
static struct postcopy_restore *claim(const char *line, struct domain **dp, char *err,
                                      size_t errlen)
{
    unsigned domid = 0;
    char token[40] = "";
    *dp = NULL;
    if (sscanf(line, MIGRATE_MSG_POSTCOPY_RECOVER " %u %39s", &domid, token) != 2) {
        snprintf(err, errlen, "malformed recovery request");
        return NULL;
    }
    struct domain *d = domid < XKVM_DOMID_LIMIT ? domain_get(domid) : NULL;
    struct postcopy_restore *pr = d ? (struct postcopy_restore *)d->postcopy : NULL;
    if (!pr || !__atomic_load_n(&d->postcopy_paused, __ATOMIC_ACQUIRE) ||
        !token_equal(pr->token, token)) {
        /* One answer for all three: a stray peer learns nothing about our domains. */
        snprintf(err, errlen, "no postcopy-paused domain %u with that token here", domid);
        pr = NULL;
    } else if (!claim_free(pr)) {
        snprintf(err, errlen, "domain %u is being recovered already, or its last connection "
                 "is still being closed: try again", domid);
        pr = NULL;
    }
    if (!pr && d)
        domain_put(d);
    *dp = pr ? d : NULL;
    return pr;
}

int postcopy_restore_recover(struct transport *t, const char *line, char *err, size_t errlen)
{
    struct domain *d;
    struct postcopy_restore *pr = claim(line, &d, err, errlen);
    if (!pr) {
        migrate_send_line(t, MIGRATE_MSG_ERROR " %s", err);
        return -EACCES;
    }
    struct xkvm_stream_reader rd;
    struct xkvm_stream_limits lim = { .max_pfn = d->p2m.nr_gfns, .max_vcpus = d->nr_vcpus };
    struct xkvm_stream_io io = transport_stream_io(t);
    int rc = xkvm_stream_reader_init_io(&rd, &io, &lim) ? -ENOMEM : 0;
    if (rc) {
        snprintf(err, errlen, "out of memory");
    } else {
        xkvm_stream_reader_postcopy_tail(&rd);
        log_info("d%u: post-copy recovery: %llu pages still at the source", d->domid,
                 (unsigned long long)uffd_pages_nr_missing(&pr->u));
        if ((rc = send_missing_lines(pr, t)))
            snprintf(err, errlen, "the source went away during the recovery handshake");
    }
    if (!rc) {
        pthread_mutex_lock(&pr->wlock);
        pr->t = t;
        pthread_mutex_unlock(&pr->wlock);
        __atomic_store_n(&d->postcopy_paused, false, __ATOMIC_RELEASE);
        domain_unpause(d);      /* the pause lost() asked for; blocked vCPUs wait on */
        postcopy_restore_running(pr);
        rc = postcopy_restore_serve(pr, &rd, err, errlen);   /* failing: lost() again */
        postcopy_restore_detach(pr);
    }
    if (rc != -ENOMEM)
        xkvm_stream_reader_release(&rd);
    pthread_mutex_lock(&pr->wlock);
    pr->recovering = false;
    pthread_mutex_unlock(&pr->wlock);
    domain_put(d);
    return rc;
}

