/* The host's monotonic clock: one helper for every "now" in xkvm. */
#ifndef XKVM_UTIL_CLOCK_H
#define XKVM_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ... in milliseconds (the same as tv_sec * 1000 + tv_nsec / 1000000). */
static inline uint64_t mono_ms(void)
{
    return mono_ns() / 1000000u;
}

#endif
