/* The host's monotonic clock: one helper for every "now" in xkvm. */
#ifndef XKVM_UTIL_CLOCK_H
#define XKVM_UTIL_CLOCK_H

#include <pthread.h>
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

/* ns on a clock as the timespec pthread_cond_timedwait takes. */
static inline struct timespec ns_timespec(uint64_t ns)
{
    return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_nsec = (long)(ns % 1000000000ull) };
}

/* A condition whose timed waits are on CLOCK_MONOTONIC: deadlines from mono_ns(). */
static inline void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
