/*
 * Post-copy's missing pages on the destination (docs/migration.md, "Post-copy"): the
 * frames of machine memory whose contents are still at the source, made to fault
 * through userfaultfd until they arrive. Needs no KVM: tests/unit/test-uffd-pages.c.
 *
 * Mode: MISSING on the shmem memfd. A missing frame is punched out of the memfd, so
 * every registered mapping of it (xkvmd's machine-memory mapping, the domain's p2m
 * window that KVM's memslots point into) faults, and the faulting thread (a vCPU in
 * KVM_RUN, a hypercall handler reading through mm->base, a grant copy) sleeps in the
 * kernel until the page is installed. uffd_pages_install() puts the source's bytes in
 * with UFFDIO_COPY, which fills a new page and inserts it in one step: no mapping ever
 * sees half a page, and every mapping of the memfd sees it at once. (MINOR mode with
 * UFFDIO_CONTINUE would let the data be written through an unregistered alias, but
 * needs every frame already in the page cache, and a frame absent from it silently
 * reads as zeros in a MINOR-only mapping: the wrong failure for a frame not yet sent.)
 * Mappings that cannot be registered (a dom0 service's own mmap of the memfd) must
 * uffd_pages_wait_present() before they are handed out.
 *
 * Locking: a thread that faults may hold any lock of its own (a hypercall handler
 * holds its domain's); so the fault thread's request callback and the receiver that
 * calls uffd_pages_install() must take none of those, and the page given to install
 * must not itself be guest memory.
 */
#ifndef XKVM_HV_UFFD_PAGES_H
#define XKVM_HV_UFFD_PAGES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Ask the source for mfn's page (the fault thread calls it once per missing frame). */
typedef void (*uffd_request_fn)(void *arg, uint64_t mfn);
/* Which frame a registered address shows, or UINT64_MAX. */
typedef uint64_t (*uffd_translate_fn)(void *arg, uint64_t addr);

#define UFFD_PAGES_WAITERS_MAX 1024u

struct uffd_waiter {
    uint64_t addr;              /* the faulting address, page-aligned */
    uint64_t mfn;
    uint64_t since_ns;          /* when the fault was read */
};

struct uffd_pages_stats {
    uint64_t faults;            /* faults on a missing frame */
    uint64_t requests;          /* frames asked for on demand */
    uint64_t installed;         /* frames installed (on demand and in the background) */
    uint64_t zero_fills;        /* faults on frames that were not missing */
    uint64_t wait_ns_total;     /* fault read to install, summed over served faults */
    uint64_t wait_ns_max;
    uint64_t served;            /* faults whose wait was measured */
};

struct uffd_pages {
    int uffd;                   /* MISSING mode, non-blocking */
    int stop_fd;                /* eventfd: ends the fault thread */
    int memfd;
    uint8_t *base;              /* the whole memfd mapped: where pages are installed */
    uint64_t nr_frames;
    uint64_t *missing;          /* bit per mfn: contents still at the source */
    uint64_t *requested;        /* bit per mfn: asked for, not yet installed */
    uint64_t nr_missing;
    uffd_request_fn request;
    uffd_translate_fn translate;
    void *arg;
    struct uffd_waiter waiters[UFFD_PAGES_WAITERS_MAX];
    unsigned nr_waiters;
    struct uffd_pages_stats stats;
    pthread_mutex_t lock;
    pthread_cond_t arrived;     /* a frame was installed */
    pthread_t thread;
    bool running;
};

/* A userfaultfd over machine memory (memfd, its mapping at base). 0 or -errno. */
int uffd_pages_open(struct uffd_pages *u, int memfd, uint8_t *base, uint64_t nr_frames,
                    uffd_translate_fn translate, uffd_request_fn request, void *arg);
void uffd_pages_close(struct uffd_pages *u);

/* Make [addr, +len) fault on missing frames (page-aligned, a shmem or anon mapping). */
int uffd_pages_register(struct uffd_pages *u, void *addr, uint64_t len);
int uffd_pages_unregister(struct uffd_pages *u, void *addr, uint64_t len);

/* Frames [mfn, +nr) are stale here: punch them out; they fault until installed. */
int uffd_pages_mark_missing(struct uffd_pages *u, uint64_t mfn, uint64_t nr);
bool uffd_pages_is_missing(struct uffd_pages *u, uint64_t mfn);
uint64_t uffd_pages_nr_missing(struct uffd_pages *u);

/*
 * The source's bytes for mfn: installed and every thread waiting on it woken. A frame
 * that is not missing (sent twice, or installed already) is left alone: 0 either way.
 */
int uffd_pages_install(struct uffd_pages *u, uint64_t mfn, const void *page);

/* Block until mfn is present (asking for it if need be). 0, -ETIMEDOUT, -ECANCELED. */
int uffd_pages_wait_present(struct uffd_pages *u, uint64_t mfn, unsigned timeout_ms);

/* Start / stop the fault thread (it reads faults and asks for missing frames). */
int uffd_pages_start(struct uffd_pages *u);
void uffd_pages_stop(struct uffd_pages *u);

/*
 * After a reconnect (postcopy recovery): ask again for every frame asked for and not
 * installed. Returns how many were asked for.
 */
uint64_t uffd_pages_rerequest(struct uffd_pages *u);

/* Fill every missing frame with zeros and wake all: only to tear the domain down. */
void uffd_pages_abandon(struct uffd_pages *u);

void uffd_pages_get_stats(struct uffd_pages *u, struct uffd_pages_stats *out);

#endif
