/* Shared by the two halves of live update (live_update.c, lu_restore.c). */
#ifndef XKVM_MIGRATE_LU_INTERNAL_H
#define XKVM_MIGRATE_LU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/*
 * fn(item) for each of n items of `size` bytes at items, on as many threads as there
 * are CPUs (at most n); returns when all are done.
 */
void lu_parallel(unsigned n, size_t size, void *items, void (*fn)(void *item));

/*
 * A 64-bit hash of a domain's RAM and toolstack pages (--verify-memory), leaving out
 * the gfns in skip[] (nskip of them, ascending): the pages dom0 services have mapped,
 * which a backend may still write while the domain is paused. 0 or -errno.
 */
struct domain;
int lu_memory_checksum(struct domain *d, const uint64_t *skip, size_t nskip, uint64_t *sum);
/* The gfns of d whose frames a dom0 service maps now, ascending (malloc'd). */
int lu_dom0_mapped_gfns(struct domain *d, uint64_t **gfns, size_t *n);

#endif
