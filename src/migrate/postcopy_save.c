/*
 * Post-copy on the source: see postcopy_save.h and docs/migration.md "Post-copy".
 *
 * Two threads share the connection: the caller's writes the pages (PAGE_DATA, then
 * POSTCOPY_DONE); a reader takes the destination's lines (PAGE requests, then
 * POSTCOPY-DONE or ERROR) and queues the requests in the schedule, under one lock.
 */
#include "migrate/postcopy_save.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "migrate/postcopy_sched.h"
#include "util/clock.h"
#include "util/log.h"
#include "xkvm/postcopy.h"

#define LINE_POLL_MS        500u
#define BACKGROUND_BATCH    32u     /* pages per record while nothing is asked for */
#define POSTCOPY_NOTSENT_LOWAT (128 * 1024)

bool postcopy_should_switch(const struct migrate_opts *o, unsigned passes, const char *stop)
{
    if (!o->postcopy || !o->live || !o->peer)
        return false;
    if (passes >= o->postcopy_after)
        return true;
    return stop && strcmp(stop, "converged");   /* pre-copy cannot finish by itself */
}

int postcopy_refuse_split(struct domain *d, char *err, size_t errlen)
{
    if (!__atomic_load_n(&d->postcopy_paused, __ATOMIC_RELAXED))
        return 0;
    snprintf(err, errlen, "domain %u is postcopy-paused: its post-copy migration lost the "
             "connection, and this copy is only part of the guest (docs/migration.md "
             "\"Failure during post-copy\")", d->domid);
    return -EBUSY;
}

int postcopy_send_missing(struct xkvm_stream_writer *w, const uint64_t *missing, uint64_t nr,
                          char *err, size_t errlen)
{
    size_t need = 0;
    long len = xkvm_postcopy_missing_encode(missing, nr, NULL, 0, &need);
    void *buf = len == -ENOSPC ? calloc(1, need) : NULL;
    if (buf)
        len = xkvm_postcopy_missing_encode(missing, nr, buf, need, &need);
    int rc = 0;
    if (!buf || len < 0) {
        snprintf(err, errlen, "POSTCOPY_MISSING: %s", buf ? strerror((int)-len) : "out of memory");
        rc = buf ? (int)len : -ENOMEM;
    } else if (xkvm_stream_write_record(w, XKVM_STREAM_REC_POSTCOPY_MISSING, buf, (uint32_t)len)) {
        snprintf(err, errlen, "stream: %s", w->err.msg);
        rc = -EPIPE;
    }
    free(buf);
    return rc;
}

static uint64_t popcount_missing(const uint64_t *bm, uint64_t nr)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < (nr + 63) / 64; i++)
        n += (uint64_t)__builtin_popcountll(bm[i]);
    return n;
}

struct serve {
    struct transport *t;
    struct postcopy_sched sched;
    uint64_t nr_pfns;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done, dead, stop;      /* POSTCOPY-DONE read; the connection failed; quit */
    char why[256];
    uint64_t faults, requests, wait_avg_us, wait_max_us, asked;
};

static void back_channel_line(struct serve *v, const char *line)
{
    uint64_t pfn;
    unsigned count;
    pthread_mutex_lock(&v->lock);
    if (!xkvm_postcopy_request_parse(line, v->nr_pfns, &pfn, &count)) {
        postcopy_sched_request(&v->sched, pfn, count);
        v->asked += count;
    } else if (!strncmp(line, MIGRATE_MSG_POSTCOPY_DONE, strlen(MIGRATE_MSG_POSTCOPY_DONE))) {
        unsigned long long f = 0, r = 0, a = 0, m = 0;
        sscanf(line + strlen(MIGRATE_MSG_POSTCOPY_DONE), "%llu %llu %llu %llu", &f, &r, &a, &m);
        v->faults = f, v->requests = r, v->wait_avg_us = a, v->wait_max_us = m;
        v->done = true;
    } else {
        v->dead = true;
        snprintf(v->why, sizeof(v->why), "destination: %.200s", line);
    }
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

static void *back_channel_reader(void *arg)
{
    struct serve *v = arg;
    char line[MIGRATE_MSG_MAX];
    for (;;) {
        pthread_mutex_lock(&v->lock);
        bool quit = v->stop || v->done || v->dead;
        pthread_mutex_unlock(&v->lock);
        if (quit)
            return NULL;
        int rc = migrate_read_line(v->t, line, sizeof(line), LINE_POLL_MS);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc) {
            pthread_mutex_lock(&v->lock);
            v->dead = true;
            snprintf(v->why, sizeof(v->why), "the connection to the destination was lost");
            pthread_cond_broadcast(&v->cond);
            pthread_mutex_unlock(&v->lock);
            return NULL;
        }
        back_channel_line(v, line);
    }
}

/* Send the schedule's pages until none is left. 0, or -EPIPE (why in err). */
static int stream_pages(struct serve *v, struct domain *d, struct xkvm_stream_writer *w,
                        struct migrate_report *rep)
{
    unsigned batched = 0;
    for (;;) {
        uint64_t pfn;
        bool urgent, more;
        pthread_mutex_lock(&v->lock);
        bool dead = v->dead;
        more = !dead && postcopy_sched_next(&v->sched, &pfn, &urgent);
        bool urgent_waiting = v->sched.urgent_len > 0;
        pthread_mutex_unlock(&v->lock);
        if (dead)
            return -EPIPE;
        if (!more)
            break;
        uint64_t mfn = p2m_lookup(&d->p2m, pfn);
        int rc = mfn == INVALID_MFN || mfn >= host_mm()->nr_frames ?
                 xkvm_stream_add_pfn(w, pfn, XKVM_STREAM_PAGE_XTAB) :
                 xkvm_stream_add_page(w, pfn, mm_frame_ptr(host_mm(), mfn));
        rep->postcopy_pages++;
        /* An asked-for page goes out at once; the background in small records. */
        if (!rc && ((urgent && !urgent_waiting) || ++batched >= BACKGROUND_BATCH)) {
            rc = xkvm_stream_flush_pages(w);
            batched = 0;
        }
        if (rc)
            return -EPIPE;
    }
    return xkvm_stream_flush_pages(w) ? -EPIPE : 0;
}

int postcopy_serve(struct domain *d, struct xkvm_stream_writer *w, struct transport *t,
                   const uint64_t *missing, uint64_t nr, struct migrate_report *rep,
                   char *err, size_t errlen)
{
    struct serve *v = calloc(1, sizeof(*v));
    if (!v || postcopy_sched_init(&v->sched, missing, nr)) {
        free(v);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    v->t = t;
    v->nr_pfns = nr;
    pthread_mutex_init(&v->lock, NULL);
    cond_init_monotonic(&v->cond);
    uint64_t t0 = mono_ns();
    /*
     * Keep little unsent in the kernel, so that an asked-for page does not queue behind
     * megabytes of background pages (TCP only; elsewhere it fails and changes nothing).
     */
    int lowat = POSTCOPY_NOTSENT_LOWAT;
    setsockopt(t->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
    /*
     * A link that goes silent without an EOF: a write that makes no progress for the
     * stall timeout fails, and the domain becomes postcopy-paused (recoverable)
     * instead of waiting for ever. The destination's reads time out likewise
     * (incoming.c sets the same socket timeouts).
     */
    migrate_stall_sockopts(t->fd);
    pthread_t reader;
    int rc = -pthread_create(&reader, NULL, back_channel_reader, v);
    if (rc) {
        snprintf(err, errlen, "cannot start the post-copy reader: %s", strerror(-rc));
    } else {
        p2m_hold(&d->p2m);      /* paused: nothing changes it; held for the pointers */
        rc = stream_pages(v, d, w, rep);
        if (!rc && xkvm_stream_write_record(w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0))
            rc = -EPIPE;
        if (rc && w->failed && !v->why[0])
            snprintf(v->why, sizeof(v->why), "stream: %s", w->err.msg);
        p2m_release(&d->p2m);
        /* POSTCOPY-DONE, within the stall timeout of the last page. */
        struct timespec until = ns_timespec(mono_ns() + migrate_stall_timeout_ms() * 1000000ull);
        pthread_mutex_lock(&v->lock);
        while (!rc && !v->done && !v->dead &&
               pthread_cond_timedwait(&v->cond, &v->lock, &until) != ETIMEDOUT)
            ;
        if (!rc && !v->done)
            rc = -EPIPE;
        if (rc)
            snprintf(err, errlen, "post-copy: %s", v->why[0] ? v->why :
                     v->done || v->dead ? "the connection to the destination was lost" :
                     "the destination did not confirm the last page in time");
        v->stop = true;
        pthread_mutex_unlock(&v->lock);
        pthread_join(reader, NULL);
    }
    rep->postcopy_ms = (double)(mono_ns() - t0) / 1e6;
    rep->pages_on_demand = v->sched.sent_urgent;
    rep->faults_on_demand = v->faults;
    rep->fault_wait_ms_avg = (double)v->wait_avg_us / 1e3;
    rep->fault_wait_ms_max = (double)v->wait_max_us / 1e3;
    log_info("d%u: post-copy %s: %llu pages (%llu asked for) in %.1f ms", d->domid,
             rc ? "stopped" : "done", (unsigned long long)rep->postcopy_pages,
             (unsigned long long)v->sched.sent_urgent, rep->postcopy_ms);
    postcopy_sched_fini(&v->sched);
    pthread_mutex_destroy(&v->lock);
    pthread_cond_destroy(&v->cond);
    free(v);
    return rc;
}

void postcopy_take_token(struct domain *d, const char *running_line)
{
    char tok[sizeof(d->postcopy_token)] = "";
    unsigned long long ns;
    if (sscanf(running_line, MIGRATE_MSG_RUNNING " %llu %32s", &ns, tok) != 2)
        tok[0] = '\0';      /* an older destination: no recovery possible */
    memcpy(d->postcopy_token, tok, sizeof(tok));
}

#define RECOVER_LINE_TIMEOUT_MS 30000u

/* One MISSING line into the bitmap (postcopy_wire.c parses it). 0, or -EPROTO. */
static int take_missing_line(const char *line, uint64_t *missing, uint64_t nr)
{
    uint64_t pfn, count;
    if (xkvm_postcopy_missing_line_parse(line, nr, &pfn, &count))
        return -EPROTO;
    for (uint64_t g = pfn; g < pfn + count; g++)
        missing[g / 64] |= 1ull << (g % 64);
    return 0;
}

/* Name the domain and its token; read what the destination still misses. */
static int recover_handshake(struct domain *d, struct transport *t, uint64_t *missing,
                             uint64_t nr, char *err, size_t errlen)
{
    char line[MIGRATE_MSG_MAX];
    if (migrate_send_line(t, MIGRATE_MSG_POSTCOPY_RECOVER " %u %s", d->domid,
                          d->postcopy_token)) {
        snprintf(err, errlen, "the connection to the destination was lost");
        return -EPIPE;
    }
    for (;;) {
        int rc = migrate_read_line(t, line, sizeof(line), RECOVER_LINE_TIMEOUT_MS);
        if (rc) {
            snprintf(err, errlen, "recovery: %s", rc == -ETIMEDOUT ? "the destination did "
                     "not answer" : "the connection to the destination was lost");
            return rc;
        }
        if (!strcmp(line, MIGRATE_MSG_RECOVER_READY))
            return 0;
        if (!strncmp(line, MIGRATE_MSG_ERROR " ", 6)) {
            snprintf(err, errlen, "recovery refused by the destination: %.300s", line + 6);
            return -ECONNREFUSED;
        }
        if (strncmp(line, MIGRATE_MSG_MISSING, strlen(MIGRATE_MSG_MISSING)) ||
            take_missing_line(line, missing, nr)) {
            snprintf(err, errlen, "recovery: unexpected line from the destination: %.200s",
                     line);
            return -EPROTO;
        }
    }
}

int postcopy_recover_send(struct domain *d, struct transport *t, struct migrate_report *rep,
                          char *err, size_t errlen)
{
    memset(rep, 0, sizeof(*rep));
    rep->outcome = MIGRATE_POSTCOPY_PAUSED;
    rep->postcopy = true;
    rep->stop = "postcopy";
    if (!__atomic_load_n(&d->postcopy_paused, __ATOMIC_RELAXED) || !d->postcopy_token[0]) {
        snprintf(err, errlen, "domain %u is not the source of a postcopy-paused migration: "
                 "nothing to recover", d->domid);
        rep->outcome = MIGRATE_RESUMED;
        return -EINVAL;
    }
    uint64_t t0 = mono_ns(), nr = d->p2m.nr_gfns;
    uint64_t *missing = calloc((nr + 63) / 64, sizeof(uint64_t));
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts wo = { .skip_zero = true, .reference_pages = true,
                                          .limits = { .max_pfn = nr,
                                                      .max_vcpus = d->nr_vcpus } };
    struct xkvm_stream_io io = transport_stream_io(t);
    if (!missing || xkvm_stream_writer_init_io(&w, &io, &wo)) {
        free(missing);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xkvm_stream_writer_postcopy_tail(&w);
    int rc = recover_handshake(d, t, missing, nr, err, errlen);
    if (!rc) {
        log_info("d%u: post-copy recovery: the destination still misses %llu pages",
                 d->domid, (unsigned long long)popcount_missing(missing, nr));
        __atomic_store_n(&d->postcopy_paused, false, __ATOMIC_RELAXED);
        rc = postcopy_serve(d, &w, t, missing, nr, rep, err, errlen);
        __atomic_store_n(&d->postcopy_paused, rc != 0, __ATOMIC_RELAXED);
    }
    if (!rc)
        rep->outcome = MIGRATE_DONE;
    else
        log_err("d%u: post-copy recovery failed (%s): this copy stays postcopy-paused; "
                "xkvm migrate-recover may be tried again", d->domid, err);
    rep->bytes = w.info.bytes;
    rep->total_ms = (double)(mono_ns() - t0) / 1e6;
    xkvm_stream_writer_release(&w);
    free(missing);
    return rc;
}
