/*
 * A per-second rate limit, lock-free, for log lines that someone else can cause at
 * will (a guest's hypercalls: hv/domain.h's log_guest; docs/security.md). I/O-free,
 * unit-tested (tests/unit/test-ratelimit.c). Approximate under races by design: two
 * threads crossing into a new second may each let a line through.
 */
#ifndef XKVM_UTIL_RATELIMIT_H
#define XKVM_UTIL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    uint64_t window;            /* the second (now_ns / 1e9) being counted */
    uint32_t count;             /* events in it */
    uint64_t suppressed;        /* events refused since the last report */
};

/*
 * One event at now_ns: true if it is within the first per_second of its second. When
 * an allowed event starts a new second, *reported is what was refused before it (to be
 * said once); otherwise 0.
 */
bool ratelimit_allow(struct ratelimit *r, uint64_t now_ns, uint32_t per_second,
                     uint64_t *reported);

#endif
