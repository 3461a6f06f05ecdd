/* A per-second rate limit for log lines: see ratelimit.h. */
#include "util/ratelimit.h"

bool ratelimit_allow(struct ratelimit *r, uint64_t now_ns, uint32_t per_second,
                     uint64_t *reported)
{
    uint64_t now = now_ns / 1000000000ull;
    uint64_t w = __atomic_load_n(&r->window, __ATOMIC_ACQUIRE);
    *reported = 0;
    if (w != now && __atomic_compare_exchange_n(&r->window, &w, now, false, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&r->count, 0, __ATOMIC_RELEASE);
        *reported = __atomic_exchange_n(&r->suppressed, 0, __ATOMIC_ACQ_REL);
    }
    if (__atomic_add_fetch(&r->count, 1, __ATOMIC_ACQ_REL) <= per_second)
        return true;
    __atomic_add_fetch(&r->suppressed, 1, __ATOMIC_ACQ_REL);
    return false;
}
