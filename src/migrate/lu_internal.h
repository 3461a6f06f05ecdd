/* Shared by the two halves of live update (live_update.c, lu_restore.c). */
#ifndef XKVM_MIGRATE_LU_INTERNAL_H
#define XKVM_MIGRATE_LU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * fn(item) for each of n items of `size` bytes at items, on as many threads as there
 * are CPUs (at most n); returns when all are done.
 */
void lu_parallel(unsigned n, size_t size, void *items, void (*fn)(void *item));
/*
 * The same, on one thread per CPU (at most n) unless waits: work that computes rather
 * than waits gains nothing from more threads, and each costs its creation.
 */
void lu_parallel_on(unsigned n, size_t size, void *items, void (*fn)(void *item),
                    bool waits);

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

/*
 * Beside (lu_beside.c): the old xkvmd starts the new one next to itself and hands the
 * guests over on a socketpair, in a two-phase commit. Old side: lu_beside_spawn (fork,
 * exec BINARY with argv plus `--lu-beside SOCK,PREBUILD_FD` and XKVM_LU_FAULT=fault if
 * any, every fd but keep[] and the socket close-on-exec), lu_beside_wait for a message
 * (PREBUILT, READY; ERROR, the new one's death or the timeout fail with why),
 * lu_beside_send_final (the image's fd), lu_beside_abort (kill and reap it, then close).
 * New side: lu_beside_take_final (the image's fd, or -errno when the old one gave up),
 * lu_beside_await_go (0 on GO, 1 when the old one is gone, -EPROTO otherwise). Either
 * side: lu_beside_say a message (GO on b->sock; PREBUILT, READY, ERROR <why>), 0 or
 * -EPIPE.
 */
struct lu_beside {
    pid_t pid;
    int sock;
};
int lu_beside_spawn(const char *binary, char *const *argv, int argc, const int *keep,
                    unsigned nkeep, int prebuild_fd, const char *fault, struct lu_beside *b,
                    char *err, size_t errlen);
int lu_beside_wait(struct lu_beside *b, const char *want, unsigned timeout_ms, char *err,
                   size_t errlen);
int lu_beside_send_final(struct lu_beside *b, int image_fd, char *err, size_t errlen);
void lu_beside_abort(struct lu_beside *b);
int lu_beside_say(int sock, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lu_beside_take_final(int sock);
int lu_beside_await_go(int sock);

#endif
