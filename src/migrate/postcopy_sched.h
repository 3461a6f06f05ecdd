/*
 * The source's order of post-copy pages (docs/migration.md, "Post-copy"): the pages
 * the destination asked for go first, in the order asked; the rest stream in pfn
 * order, continuing after the last requested page (a guest that faulted there is
 * likely to touch its neighbours next). No I/O and no lock: the caller holds one.
 * tests/unit/test-postcopy-sched.c.
 */
#ifndef XKVM_MIGRATE_POSTCOPY_SCHED_H
#define XKVM_MIGRATE_POSTCOPY_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#define POSTCOPY_URGENT_MAX 4096u

struct postcopy_sched {
    uint64_t *pending;          /* bit per pfn: still to send */
    uint64_t nr_pfns;
    uint64_t nr_pending;
    uint64_t cursor;            /* the background order's next pfn */
    uint64_t urgent[POSTCOPY_URGENT_MAX];   /* requested pfns, a ring */
    unsigned urgent_head, urgent_len;
    uint64_t sent_urgent, sent_background;
    uint64_t requests_ignored;  /* for pages already sent (on their way) */
};

/* Everything set in missing (nr_pfns bits) is to be sent. 0 or -ENOMEM. */
int postcopy_sched_init(struct postcopy_sched *s, const uint64_t *missing, uint64_t nr_pfns);
void postcopy_sched_fini(struct postcopy_sched *s);

/* The destination asked for [pfn, +count): those still pending go next. */
void postcopy_sched_request(struct postcopy_sched *s, uint64_t pfn, unsigned count);

/*
 * After a reconnect (recovery), the destination lists what it still lacks: pages sent
 * on the lost connection become pending again.
 */
void postcopy_sched_resend(struct postcopy_sched *s, uint64_t pfn, uint64_t count);

/* The next pfn to send, and whether it was asked for; false once all are sent. */
bool postcopy_sched_next(struct postcopy_sched *s, uint64_t *pfn, bool *urgent);

static inline uint64_t postcopy_sched_remaining(const struct postcopy_sched *s)
{
    return s->nr_pending;
}

#endif
