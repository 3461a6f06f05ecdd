/*
 * altp2m benchmarks (docs/altp2m.md): one JSON line per figure, beside a reference
 * measured in the same run, on a 1 GiB p2m of a bare KVM VM (no vCPU, no xkvmd).
 *
 *   set_mem_access  1 and 100,000 consecutive pages made rx in the active view, each
 *                   realised in KVM's memslots; reference: deleting and re-adding one
 *                   memslot of the same size.
 *   switch          switching to a view with one read-only page and back (one
 *                   realise each); reference: the same memslot update of one page.
 *   stream_bytes    the ALTP2M_VIEW record of a view restricting 1% of 1 GiB (2,621
 *                   separate pages) in a domain context image; reference: the pages
 *                   it restricts (what sending the view's contents would cost).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hv/altp2m.h"
#include "hv/p2m.h"
#include "xkvm/ctx.h"

#define GIB_PAGES   262144ull
#define REF_SLOT    (P2M_MAX_SLOTS + ALTP2M_MAX_KSLOTS + 1)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench-altp2m: %s: %s\n", what, strerror(err));
    exit(1);
}

/* Access for [gfn, gfn + n) in the active view, realised: as hc_altp2m.c does it. */
static void set_range(struct p2m *p, uint64_t gfn, uint64_t n, unsigned access)
{
    uint8_t prev;
    pthread_rwlock_wrlock(&p->lock);
    for (uint64_t g = gfn; g < gfn + n; g++)
        if (altp2m_set_access(p->alt, p->alt->active, g, access, &prev))
            die("altp2m_set_access", EINVAL);
    int rc = p2m_altp2m_realise(p);
    pthread_rwlock_unlock(&p->lock);
    if (rc)
        die("realise", -rc);
}

static void switch_to(struct p2m *p, unsigned view)
{
    pthread_rwlock_wrlock(&p->lock);
    p->alt->active = view;
    int rc = p2m_altp2m_realise(p);
    pthread_rwlock_unlock(&p->lock);
    if (rc)
        die("switch", -rc);
}

/* Delete and re-add a memslot of n pages at gfn (past the guest's RAM). */
static void memslot_update(int vm, uint8_t *mem, uint64_t gfn, uint64_t n)
{
    struct kvm_userspace_memory_region r = {
        .slot = REF_SLOT, .guest_phys_addr = gfn << 12, .memory_size = n << 12,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION", errno);
    r.memory_size = 0;
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION", errno);
}

static void line(const char *name, double ns, const char *ref, double ref_ns)
{
    printf("{\"bench\":\"altp2m\",\"name\":\"%s\",\"ns\":%.0f,\"ref\":\"%s\",\"ref_ns\":%.0f,"
           "\"ratio\":%.2f}\n", name, ns, ref, ref_ns, ref_ns > 0 ? ns / ref_ns : 0);
}

static void bench_access(struct p2m *p, int vm, uint8_t *ref_mem, uint64_t n, unsigned reps)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < reps; i++) {
        set_range(p, 4096, n, ALTP2M_ACCESS_RX);
        set_range(p, 4096, n, ALTP2M_ACCESS_DEFAULT);
    }
    double ns = (double)(now_ns() - t0) / (2.0 * reps);
    t0 = now_ns();
    for (unsigned i = 0; i < 2 * reps; i++)
        memslot_update(vm, ref_mem, GIB_PAGES + 1024, n);
    double ref = (double)(now_ns() - t0) / (2.0 * reps);
    char name[64], refname[96];
    snprintf(name, sizeof(name), "set_mem_access_%llu", (unsigned long long)n);
    snprintf(refname, sizeof(refname), "memslot delete+add of %llu pages",
             (unsigned long long)n);
    line(name, ns, refname, ref);
}

static void bench_stream_bytes(void)
{
    uint64_t n = GIB_PAGES / 100;
    size_t body = sizeof(struct xkvm_ctx_altp2m_view) + n * sizeof(struct xkvm_ctx_altp2m_entry);
    struct xkvm_ctx_altp2m_view *v = calloc(1, body);
    if (!v)
        die("calloc", ENOMEM);
    v->default_access = ALTP2M_ACCESS_RWX;
    v->nr_access = n;
    for (uint64_t i = 0; i < n; i++)
        v->entries[i] = (struct xkvm_ctx_altp2m_entry){ .gfn = i * 100, .value = 5 };
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_write_start(&w);
    size_t before;
    xkvm_ctx_writer_data(&w, &before);
    if (xkvm_ctx_write_altp2m_view(&w, 1, v))
        die("ctx write", EINVAL);
    size_t after;
    xkvm_ctx_writer_data(&w, &after);
    printf("{\"bench\":\"altp2m\",\"name\":\"stream_bytes_1pct_of_1gib\",\"bytes\":%zu,"
           "\"pages\":%llu,\"ref\":\"the restricted pages themselves\",\"ref_bytes\":%llu}\n",
           after - before, (unsigned long long)n, (unsigned long long)(n * 4096));
    xkvm_ctx_writer_release(&w);
    free(v);
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("{\"bench\":\"altp2m\",\"skipped\":\"no /dev/kvm\"}\n");
        bench_stream_bytes();
        return 0;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM", errno);
    static struct machine_mem mm;
    static struct p2m p;
    int rc = mm_init(&mm, (GIB_PAGES + 8192) << 12);   /* + the live-update region */
    if (rc || (rc = p2m_init(&p, vm, 1, &mm, GIB_PAGES + 2048)) ||
        (rc = p2m_populate_ram(&p, 0, GIB_PAGES)))
        die("1 GiB p2m", -rc);
    uint8_t *ref_mem = mmap(NULL, 100000ull << 12, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ref_mem == MAP_FAILED)
        die("mmap", errno);
    struct altp2m *a = malloc(sizeof(*a));
    if (!a)
        die("malloc", ENOMEM);
    altp2m_init(a, p.nr_gfns);
    p.alt = a;
    unsigned view;
    if (altp2m_create(a, ALTP2M_ACCESS_RWX, &view))
        die("create", EINVAL);
    switch_to(&p, view);
    bench_access(&p, vm, ref_mem, 1, 50);
    bench_access(&p, vm, ref_mem, 100000, 5);

    uint8_t prev;
    altp2m_set_access(a, view, 4096, ALTP2M_ACCESS_RX, &prev);
    switch_to(&p, 0);
    unsigned reps = 50;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < reps; i++) {
        switch_to(&p, view);
        switch_to(&p, 0);
    }
    double ns = (double)(now_ns() - t0) / (2.0 * reps);
    t0 = now_ns();
    for (unsigned i = 0; i < 2 * reps; i++)
        memslot_update(vm, ref_mem, GIB_PAGES + 1024, 1);
    line("switch_view_1_page_restricted", ns, "memslot delete+add of 1 page",
         (double)(now_ns() - t0) / (2.0 * reps));
    bench_stream_bytes();
    p2m_fini(&p);
    mm_fini(&mm);
    return 0;
}
