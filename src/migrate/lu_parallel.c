/*
 * lu_parallel: per-domain work of a live update, spread over threads (docs/live-update.md,
 * "What the downtime is made of").
 */
#include "migrate/lu_internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * Threads beyond the CPUs: pass0's per-domain work mostly waits in the kernel (KVM's
 * memslot changes each wait for an SRCU grace period, VM and vCPU creation sleep), and
 * a thread per domain overlaps those waits. Measured on a loaded 2-CPU kvm-pvm host:
 * pass0 of 8 x 256 MiB about halved, 32 x 256 MiB 20-40% less (docs/performance.md).
 */
#define LU_THREADS_MIN 16

struct pool {
    unsigned n, next;
    size_t size;
    uint8_t *items;
    void (*fn)(void *item);
};

static void *worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        unsigned i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n)
            return NULL;
        p->fn(p->items + (size_t)i * p->size);
    }
}

void lu_parallel_on(unsigned n, size_t size, void *items, void (*fn)(void *item),
                    bool waits)
{
    struct pool p = { .n = n, .size = size, .items = items, .fn = fn };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nt = cpus < 1 ? 1 : (unsigned)cpus;
    if (waits && nt < LU_THREADS_MIN)
        nt = LU_THREADS_MIN;
    if (nt > n)
        nt = n;
    pthread_t *t = nt > 1 ? calloc(nt - 1, sizeof(*t)) : NULL;
    unsigned started = 0;
    for (unsigned i = 0; t && i + 1 < nt; i++)
        if (pthread_create(&t[i], NULL, worker, &p) == 0)
            started++;
    worker(&p);     /* this thread works too: with no extra threads, it does it all */
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
}

void lu_parallel(unsigned n, size_t size, void *items, void (*fn)(void *item))
{
    lu_parallel_on(n, size, items, fn, true);
}
