/*
 * The source's order of post-copy pages: see postcopy_sched.h and docs/migration.md,
 * "Post-copy".
 */
#include "migrate/postcopy_sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool pending(const struct postcopy_sched *s, uint64_t pfn)
{
    return pfn < s->nr_pfns && s->pending[pfn / 64] >> (pfn % 64) & 1;
}

static void take(struct postcopy_sched *s, uint64_t pfn)
{
    s->pending[pfn / 64] &= ~(1ull << (pfn % 64));
    s->nr_pending--;
}

int postcopy_sched_init(struct postcopy_sched *s, const uint64_t *missing, uint64_t nr_pfns)
{
    memset(s, 0, sizeof(*s));
    size_t words = (size_t)(nr_pfns + 63) / 64;
    s->pending = calloc(words ? words : 1, sizeof(uint64_t));
    if (!s->pending)
        return -ENOMEM;
    s->nr_pfns = nr_pfns;
    for (uint64_t p = 0; p < nr_pfns; p++)
        if (missing[p / 64] >> (p % 64) & 1) {
            s->pending[p / 64] |= 1ull << (p % 64);
            s->nr_pending++;
        }
    return 0;
}

void postcopy_sched_fini(struct postcopy_sched *s)
{
    free(s->pending);
    s->pending = NULL;
}

void postcopy_sched_request(struct postcopy_sched *s, uint64_t pfn, unsigned count)
{
    for (uint64_t p = pfn; p < pfn + count && p < s->nr_pfns; p++) {
        if (!pending(s, p) || s->urgent_len == POSTCOPY_URGENT_MAX) {
            s->requests_ignored++;  /* on its way; or the ring is full: it comes anyway */
            continue;
        }
        s->urgent[(s->urgent_head + s->urgent_len++) % POSTCOPY_URGENT_MAX] = p;
    }
}

void postcopy_sched_resend(struct postcopy_sched *s, uint64_t pfn, uint64_t count)
{
    for (uint64_t p = pfn; p < pfn + count && p < s->nr_pfns; p++)
        if (!pending(s, p)) {
            s->pending[p / 64] |= 1ull << (p % 64);
            s->nr_pending++;
        }
}

/* The next pending pfn at or after the cursor, wrapping once. */
static bool next_background(struct postcopy_sched *s, uint64_t *pfn)
{
    for (uint64_t n = 0, p = s->cursor; n < s->nr_pfns; n++, p = p + 1 == s->nr_pfns ? 0 : p + 1) {
        if (p % 64 == 0 && !s->pending[p / 64] && s->nr_pfns - p >= 64) {
            n += 63;                /* a whole empty word */
            p += 63;
            continue;
        }
        if (pending(s, p)) {
            *pfn = p;
            return true;
        }
    }
    return false;
}

bool postcopy_sched_next(struct postcopy_sched *s, uint64_t *pfn, bool *urgent)
{
    if (!s->nr_pending)
        return false;
    while (s->urgent_len) {
        uint64_t p = s->urgent[s->urgent_head];
        s->urgent_head = (s->urgent_head + 1) % POSTCOPY_URGENT_MAX;
        s->urgent_len--;
        if (!pending(s, p))
            continue;               /* asked twice, or sent in the background since */
        take(s, p);
        s->cursor = p + 1 < s->nr_pfns ? p + 1 : 0;
        s->sent_urgent++;
        *pfn = p;
        *urgent = true;
        return true;
    }
    if (!next_background(s, pfn))
        return false;
    take(s, *pfn);
    s->cursor = *pfn + 1 < s->nr_pfns ? *pfn + 1 : 0;
    s->sent_background++;
    *urgent = false;
    return true;
}
