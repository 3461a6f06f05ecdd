/*
 * Post-copy's missing pages through userfaultfd: see uffd_pages.h and
 * docs/migration.md, "Post-copy".
 */
#include "hv/uffd_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

#define PAGE 4096ull
#define MSG_BATCH 16

static bool bit_get(const uint64_t *bm, uint64_t i) { return bm[i / 64] >> (i % 64) & 1; }
static void bit_set(uint64_t *bm, uint64_t i) { bm[i / 64] |= 1ull << (i % 64); }
static void bit_clear(uint64_t *bm, uint64_t i) { bm[i / 64] &= ~(1ull << (i % 64)); }

int uffd_pages_open(struct uffd_pages *u, int memfd, uint8_t *base, uint64_t nr_frames,
                    uffd_translate_fn translate, uffd_request_fn request, void *arg)
{
    memset(u, 0, sizeof(*u));
    u->uffd = u->stop_fd = -1;
    /* Not UFFD_USER_MODE_ONLY: KVM's and the kernel's own accesses must fault too. */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct uffdio_api api = { .api = UFFD_API };
    if (ioctl(fd, UFFDIO_API, &api)) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
        close(fd);
        return -EOPNOTSUPP;
    }
    size_t words = (size_t)(nr_frames + 63) / 64;
    u->missing = calloc(words, sizeof(uint64_t));
    u->requested = calloc(words, sizeof(uint64_t));
    u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!u->missing || !u->requested || u->stop_fd < 0) {
        free(u->missing);
        free(u->requested);
        if (u->stop_fd >= 0)
            close(u->stop_fd);
        close(fd);
        return -ENOMEM;
    }
    u->uffd = fd;
    u->memfd = memfd;
    u->base = base;
    u->nr_frames = nr_frames;
    u->translate = translate;
    u->request = request;
    u->arg = arg;
    pthread_mutex_init(&u->lock, NULL);
    cond_init_monotonic(&u->arrived);
    return 0;
}

void uffd_pages_close(struct uffd_pages *u)
{
    if (u->uffd < 0)
        return;
    uffd_pages_stop(u);
    close(u->uffd);
    close(u->stop_fd);
    free(u->missing);
    free(u->requested);
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->arrived);
    u->uffd = u->stop_fd = -1;
}

int uffd_pages_register(struct uffd_pages *u, void *addr, uint64_t len)
{
    struct uffdio_register r = {
        .range = { .start = (uint64_t)(uintptr_t)addr, .len = len },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    return ioctl(u->uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

int uffd_pages_unregister(struct uffd_pages *u, void *addr, uint64_t len)
{
    struct uffdio_range r = { .start = (uint64_t)(uintptr_t)addr, .len = len };
    return ioctl(u->uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

int uffd_pages_mark_missing(struct uffd_pages *u, uint64_t mfn, uint64_t nr)
{
    if (mfn >= u->nr_frames || nr > u->nr_frames - mfn)
        return -EINVAL;
    pthread_mutex_lock(&u->lock);
    /* Punching unmaps the page from every mapping: each faults from now on. */
    int rc = fallocate(u->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       (off_t)(mfn * PAGE), (off_t)(nr * PAGE)) ? -errno : 0;
    for (uint64_t f = mfn; !rc && f < mfn + nr; f++)
        if (!bit_get(u->missing, f)) {
            bit_set(u->missing, f);
            u->nr_missing++;
        }
    pthread_mutex_unlock(&u->lock);
    return rc;
}

bool uffd_pages_is_missing(struct uffd_pages *u, uint64_t mfn)
{
    pthread_mutex_lock(&u->lock);
    bool m = mfn < u->nr_frames && bit_get(u->missing, mfn);
    pthread_mutex_unlock(&u->lock);
    return m;
}

uint64_t uffd_pages_nr_missing(struct uffd_pages *u)
{
    pthread_mutex_lock(&u->lock);
    uint64_t n = u->nr_missing;
    pthread_mutex_unlock(&u->lock);
    return n;
}

static int uffd_wake(struct uffd_pages *u, uint64_t addr)
{
    struct uffdio_range r = { .start = addr, .len = PAGE };
    return ioctl(u->uffd, UFFDIO_WAKE, &r) ? -errno : 0;
}

/* UFFDIO_COPY or (page NULL) UFFDIO_ZEROPAGE at addr; -EEXIST if a page is there. */
static int uffd_fill(struct uffd_pages *u, uint64_t addr, const void *page)
{
    for (;;) {
        int r;
        if (page) {
            struct uffdio_copy c = { .dst = addr, .src = (uint64_t)(uintptr_t)page,
                                     .len = PAGE };
            r = ioctl(u->uffd, UFFDIO_COPY, &c);
        } else {
            struct uffdio_zeropage z = { .range = { .start = addr, .len = PAGE } };
            r = ioctl(u->uffd, UFFDIO_ZEROPAGE, &z);
        }
        if (!r)
            return 0;
        if (errno != EAGAIN)
            return -errno;
    }
}

/* mfn is no longer missing: wake whoever faulted on it, through any mapping. Locked. */
static void frame_arrived(struct uffd_pages *u, uint64_t mfn)
{
    bit_clear(u->missing, mfn);
    bit_clear(u->requested, mfn);
    u->nr_missing--;
    u->stats.installed++;
    uint64_t now = mono_ns();
    for (unsigned i = 0; i < u->nr_waiters;) {
        struct uffd_waiter *w = &u->waiters[i];
        if (w->mfn != mfn) {
            i++;
            continue;
        }
        uint64_t waited = now - w->since_ns;
        u->stats.served++;
        u->stats.wait_ns_total += waited;
        if (waited > u->stats.wait_ns_max)
            u->stats.wait_ns_max = waited;
        uffd_wake(u, w->addr);
        *w = u->waiters[--u->nr_waiters];
    }
    pthread_cond_broadcast(&u->arrived);
}

int uffd_pages_install(struct uffd_pages *u, uint64_t mfn, const void *page)
{
    if (mfn >= u->nr_frames)
        return -EINVAL;
    pthread_mutex_lock(&u->lock);
    int rc = 0;
    if (bit_get(u->missing, mfn)) {
        rc = uffd_fill(u, (uint64_t)(uintptr_t)(u->base + mfn * PAGE), page);
        if (rc == -EEXIST)          /* written through an unregistered mapping */
            rc = 0;
        if (!rc)
            frame_arrived(u, mfn);
    }
    pthread_mutex_unlock(&u->lock);
    return rc;
}

/* Mark mfn asked for; true if the caller is to ask. Locked. */
static bool claim_request(struct uffd_pages *u, uint64_t mfn)
{
    if (bit_get(u->requested, mfn))
        return false;
    bit_set(u->requested, mfn);
    u->stats.requests++;
    return true;
}

int uffd_pages_wait_present(struct uffd_pages *u, uint64_t mfn, unsigned timeout_ms)
{
    if (mfn >= u->nr_frames)
        return -EINVAL;
    struct timespec until = ns_timespec(mono_ns() + (uint64_t)timeout_ms * 1000000ull);
    pthread_mutex_lock(&u->lock);
    if (bit_get(u->missing, mfn) && claim_request(u, mfn)) {
        pthread_mutex_unlock(&u->lock);
        u->request(u->arg, mfn);
        pthread_mutex_lock(&u->lock);
    }
    int rc = 0;
    while (!rc && bit_get(u->missing, mfn))
        rc = -pthread_cond_timedwait(&u->arrived, &u->lock, &until);
    pthread_mutex_unlock(&u->lock);
    return rc;
}

/* One fault read from the userfaultfd. */
static void handle_fault(struct uffd_pages *u, uint64_t addr)
{
    addr &= ~(PAGE - 1);
    uint64_t lo = (uint64_t)(uintptr_t)u->base;
    uint64_t mfn = addr >= lo && addr < lo + u->nr_frames * PAGE ? (addr - lo) / PAGE :
                   u->translate ? u->translate(u->arg, addr) : UINT64_MAX;
    pthread_mutex_lock(&u->lock);
    if (mfn >= u->nr_frames || !bit_get(u->missing, mfn)) {
        /* Never written, or installed meanwhile: what is in the memfd is right. */
        u->stats.zero_fills++;
        if (uffd_fill(u, addr, NULL) == -EEXIST)
            uffd_wake(u, addr);
        pthread_mutex_unlock(&u->lock);
        return;
    }
    u->stats.faults++;
    if (u->nr_waiters < UFFD_PAGES_WAITERS_MAX)
        u->waiters[u->nr_waiters++] = (struct uffd_waiter){ addr, mfn, mono_ns() };
    else
        uffd_wake(u, addr);         /* no room to remember it: it faults again */
    bool ask = claim_request(u, mfn);
    pthread_mutex_unlock(&u->lock);
    if (ask)
        u->request(u->arg, mfn);
}

static void *fault_thread(void *arg)
{
    struct uffd_pages *u = arg;
    for (;;) {
        struct pollfd p[2] = { { u->uffd, POLLIN, 0 }, { u->stop_fd, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        struct uffd_msg m[MSG_BATCH];
        ssize_t n = read(u->uffd, m, sizeof(m));
        for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++)
            if (m[i].event == UFFD_EVENT_PAGEFAULT)
                handle_fault(u, m[i].arg.pagefault.address);
    }
    return NULL;
}

int uffd_pages_start(struct uffd_pages *u)
{
    int rc = -pthread_create(&u->thread, NULL, fault_thread, u);
    u->running = !rc;
    return rc;
}

void uffd_pages_stop(struct uffd_pages *u)
{
    if (!u->running)
        return;
    uint64_t one = 1;
    if (write(u->stop_fd, &one, sizeof(one)) != sizeof(one))
        return;
    pthread_join(u->thread, NULL);
    u->running = false;
    uint64_t v;
    if (read(u->stop_fd, &v, sizeof(v)) < 0) { /* drained for a later start */ }
}

uint64_t uffd_pages_rerequest(struct uffd_pages *u)
{
    size_t words = (size_t)(u->nr_frames + 63) / 64;
    uint64_t *asked = malloc(words * sizeof(uint64_t));
    if (!asked)
        return 0;
    pthread_mutex_lock(&u->lock);
    memcpy(asked, u->requested, words * sizeof(uint64_t));
    pthread_mutex_unlock(&u->lock);
    uint64_t n = 0;
    for (uint64_t f = 0; f < u->nr_frames; f++)
        if (bit_get(asked, f)) {
            u->request(u->arg, f);
            n++;
        }
    free(asked);
    return n;
}

void uffd_pages_abandon(struct uffd_pages *u)
{
    pthread_mutex_lock(&u->lock);
    for (uint64_t f = 0; f < u->nr_frames && u->nr_missing; f++)
        if (bit_get(u->missing, f)) {
            uffd_fill(u, (uint64_t)(uintptr_t)(u->base + f * PAGE), NULL);
            frame_arrived(u, f);
        }
    for (unsigned i = 0; i < u->nr_waiters; i++)
        uffd_wake(u, u->waiters[i].addr);
    u->nr_waiters = 0;
    pthread_cond_broadcast(&u->arrived);
    pthread_mutex_unlock(&u->lock);
}

void uffd_pages_get_stats(struct uffd_pages *u, struct uffd_pages_stats *out)
{
    pthread_mutex_lock(&u->lock);
    *out = u->stats;
    pthread_mutex_unlock(&u->lock);
}
