/* Shared by the two halves of live update (live_update.c, lu_restore.c). */
#ifndef XKVM_MIGRATE_LU_INTERNAL_H
#define XKVM_MIGRATE_LU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in ns: one clock for both binaries, so phases add up across exec. */
uint64_t lu_now_ns(void);

/*
 * fn(item) for each of n items of `size` bytes at items, on as many threads as there
 * are CPUs (at most n); returns when all are done.
 */
void lu_parallel(unsigned n, size_t size, void *items, void (*fn)(void *item));

/* A 64-bit hash of a domain's RAM and toolstack pages (--verify-memory). 0 or -errno. */
struct domain;
int lu_memory_checksum(struct domain *d, uint64_t *sum);

#endif
