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

/*
 * The holder of the old address space (lu_holder.c). Old binary, just before exec:
 * lu_holder_start(the KVM VM and vCPU fds) returns the fd to keep open across exec (or
 * -1: none, exec frees everything itself); lu_holder_cancel(it) if the exec failed.
 * New binary (or the rollback), once its domains run: lu_holder_release() lets the
 * holder go, which frees the old address space, and reaps it on a thread; a thread an
 * exec may kill, so the next live update reaps it first (lu_holder_reap_previous).
 */
int lu_holder_start(const int *kvm_fds, unsigned n);
void lu_holder_cancel(int wfd);
void lu_holder_release(void);
void lu_holder_reap_previous(void);

#endif
