/*
 * Unit tests for src/hv/uffd_pages.c (post-copy's missing pages, docs/migration.md
 * "Post-copy"): a memfd as machine memory, mapped twice (as xkvmd's mm->base and as a
 * domain's p2m window), reader threads standing in for vCPUs and hypercall handlers,
 * and a "source" thread answering page requests. Skips where userfaultfd is missing.
 */
#include "harness.h"
#include "hv/uffd_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

HARNESS_MAIN_STATE("uffd-pages");

#define NR 16u
#define PG 4096u

static int memfd = -1;
static uint8_t *base, *window;      /* window: frame f at page f, as a p2m would */
static struct uffd_pages U;

/* The source: answers requests from its queue, or drops them (a dead connection). */
static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t src_cond = PTHREAD_COND_INITIALIZER;
static uint64_t queue[64];
static unsigned queued, answered_total;
static bool src_drop, src_stop;
static pthread_t src_thread;

static uint8_t content_of(uint64_t mfn) { return (uint8_t)(0xa0 + mfn); }

static void on_request(void *arg, uint64_t mfn)
{
    (void)arg;
    pthread_mutex_lock(&src_lock);
    if (!src_drop && queued < 64)
        queue[queued++] = mfn;
    pthread_cond_broadcast(&src_cond);
    pthread_mutex_unlock(&src_lock);
}

static void set_drop(bool drop)
{
    pthread_mutex_lock(&src_lock);
    src_drop = drop;
    pthread_mutex_unlock(&src_lock);
}

static uint64_t on_translate(void *arg, uint64_t addr)
{
    (void)arg;
    uint64_t lo = (uint64_t)(uintptr_t)window;
    return addr >= lo && addr < lo + NR * PG ? (addr - lo) / PG : UINT64_MAX;
}

static void *source_main(void *arg)
{
    (void)arg;
    static uint8_t page[PG];
    pthread_mutex_lock(&src_lock);
    while (!src_stop) {
        if (!queued) {
            pthread_cond_wait(&src_cond, &src_lock);
            continue;
        }
        uint64_t mfn = queue[--queued];
        pthread_mutex_unlock(&src_lock);
        memset(page, content_of(mfn), PG);
        uffd_pages_install(&U, mfn, page);
        pthread_mutex_lock(&src_lock);
        answered_total++;
    }
    pthread_mutex_unlock(&src_lock);
    return NULL;
}

/* Fresh machine memory with every frame written with 0x11 (stale contents). */
static bool setup(void)
{
    memfd = memfd_create("uffd-pages-test", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, NR * PG))
        return false;
    base = mmap(NULL, NR * PG, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    window = mmap(NULL, NR * PG, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    memset(base, 0x11, NR * PG);
    int rc = uffd_pages_open(&U, memfd, base, NR, on_translate, on_request, NULL);
    if (rc) {
        harness_skip("userfaultfd: %s", strerror(-rc));
        return false;
    }
    if (uffd_pages_register(&U, base, NR * PG) || uffd_pages_register(&U, window, NR * PG) ||
        uffd_pages_start(&U)) {
        harness_fail(__FILE__, __LINE__, "register or start failed");
        return false;
    }
    src_drop = src_stop = false;
    queued = answered_total = 0;
    pthread_create(&src_thread, NULL, source_main, NULL);
    return true;
}

static void teardown(void)
{
    pthread_mutex_lock(&src_lock);
    src_stop = true;
    pthread_cond_broadcast(&src_cond);
    pthread_mutex_unlock(&src_lock);
    pthread_join(src_thread, NULL);
    uffd_pages_abandon(&U);
    uffd_pages_close(&U);
    munmap(base, NR * PG);
    munmap(window, NR * PG);
    close(memfd);
}

struct reader { uint8_t *at; uint8_t first, last; pthread_t t; };

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->first = ((volatile uint8_t *)r->at)[0];
    r->last = ((volatile uint8_t *)r->at)[PG - 1];
    return NULL;
}

static void read_in_thread(struct reader *r, uint8_t *at)
{
    r->at = at;
    pthread_create(&r->t, NULL, reader_main, r);
}

/* A missing frame read through both mappings: each reader gets the source's bytes. */
static void test_fault_fetches_source_page(void)
{
    if (!setup())
        return;
    CHECK(uffd_pages_mark_missing(&U, 3, 2) == 0);
    CHECK(uffd_pages_nr_missing(&U) == 2);
    struct reader a, b;
    read_in_thread(&a, base + 3 * PG);
    read_in_thread(&b, window + 4 * PG);
    pthread_join(a.t, NULL);
    pthread_join(b.t, NULL);
    CHECK(a.first == content_of(3) && a.last == content_of(3));
    CHECK(b.first == content_of(4) && b.last == content_of(4));
    CHECK(window[3 * PG] == content_of(3));     /* the other mapping sees it too */
    CHECK(base[5 * PG] == 0x11);                /* frames not missing are untouched */
    struct uffd_pages_stats s;
    uffd_pages_get_stats(&U, &s);
    CHECK(s.requests == 2 && s.installed == 2 && s.faults >= 2 && s.served >= 2);
    CHECK(uffd_pages_nr_missing(&U) == 0);
    teardown();
}

/* A frame never written (a hole in the memfd) reads as zeros, without a request. */
static void test_hole_not_missing_reads_zero(void)
{
    if (!setup())
        return;
    CHECK(fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 7 * PG, PG) == 0);
    struct reader r;
    read_in_thread(&r, window + 7 * PG);
    pthread_join(r.t, NULL);
    CHECK(r.first == 0 && r.last == 0);
    struct uffd_pages_stats s;
    uffd_pages_get_stats(&U, &s);
    CHECK(s.requests == 0 && s.zero_fills >= 1);
    teardown();
}

/* Installing a frame that is not missing leaves what is there. */
static void test_install_not_missing_ignored(void)
{
    if (!setup())
        return;
    uint8_t page[PG];
    memset(page, 0x77, PG);
    CHECK(uffd_pages_install(&U, 9, page) == 0);
    CHECK(base[9 * PG] == 0x11);
    CHECK(uffd_pages_install(&U, NR, page) == -EINVAL);
    teardown();
}

/* A dom0 map waits for its frame; with nobody answering it times out. */
static void test_wait_present(void)
{
    if (!setup())
        return;
    CHECK(uffd_pages_mark_missing(&U, 2, 1) == 0);
    CHECK(uffd_pages_wait_present(&U, 2, 10000) == 0);
    CHECK(base[2 * PG] == content_of(2));
    set_drop(true);
    CHECK(uffd_pages_mark_missing(&U, 6, 1) == 0);
    CHECK(uffd_pages_wait_present(&U, 6, 50) == -ETIMEDOUT);
    CHECK(uffd_pages_is_missing(&U, 6));
    teardown();
}

/* Connection lost: the reader stays blocked; after recovery the re-request serves it. */
static void test_rerequest_after_drop(void)
{
    if (!setup())
        return;
    set_drop(true);
    CHECK(uffd_pages_mark_missing(&U, 10, 1) == 0);
    struct reader r;
    read_in_thread(&r, window + 10 * PG);
    struct uffd_pages_stats s;
    for (int i = 0; i < 10000; i++) {       /* until the fault is read and asked for */
        uffd_pages_get_stats(&U, &s);
        if (s.requests)
            break;
        usleep(1000);
    }
    CHECK(s.requests == 1);
    CHECK(uffd_pages_is_missing(&U, 10));   /* dropped: nothing was installed */
    set_drop(false);
    CHECK(uffd_pages_rerequest(&U) == 1);
    pthread_join(r.t, NULL);
    CHECK(r.first == content_of(10));
    teardown();
}

/* Tearing down: a reader blocked on a frame nobody will send is released (zeros). */
static void test_abandon_releases_waiters(void)
{
    if (!setup())
        return;
    set_drop(true);
    CHECK(uffd_pages_mark_missing(&U, 12, 1) == 0);
    struct reader r;
    read_in_thread(&r, base + 12 * PG);
    struct uffd_pages_stats s;
    for (int i = 0; i < 10000; i++) {
        uffd_pages_get_stats(&U, &s);
        if (s.faults)
            break;
        usleep(1000);
    }
    uffd_pages_abandon(&U);
    pthread_join(r.t, NULL);
    CHECK(r.first == 0);
    CHECK(uffd_pages_nr_missing(&U) == 0);
    teardown();
}

/*
 * What post-copy rests on: a KVM vCPU whose memslot is a registered mapping faults
 * into the handler on a missing frame and resumes with the installed page (the guest
 * reads the frame and reports the byte by port I/O). Real mode: emulated on kvm-pvm.
 */
static void test_kvm_vcpu_waits_for_frame(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        harness_skip("/dev/kvm: %s", strerror(errno));
        return;
    }
    if (!setup()) {
        close(kvm);
        return;
    }
    static const uint8_t code[] = { 0xa0, 0x00, 0x20,  /* mov al, [0x2000] */
                                    0xe6, 0x10,        /* out 0x10, al */
                                    0xf4 };            /* hlt */
    memcpy(base, code, sizeof(code));
    CHECK(uffd_pages_mark_missing(&U, 2, 1) == 0);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    struct kvm_userspace_memory_region slot = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = NR * PG,
        .userspace_addr = (uint64_t)(uintptr_t)window,
    };
    int vcpu = -1;
    struct kvm_run *run = MAP_FAILED;
    long runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm >= 0 && !ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) &&
        (vcpu = ioctl(vm, KVM_CREATE_VCPU, 0)) >= 0 && runsz > 0)
        run = mmap(NULL, (size_t)runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    REQUIRE(run != MAP_FAILED);
    struct kvm_sregs sr;
    REQUIRE(!ioctl(vcpu, KVM_GET_SREGS, &sr));
    sr.cs.base = sr.ds.base = 0;
    sr.cs.selector = sr.ds.selector = 0;
    REQUIRE(!ioctl(vcpu, KVM_SET_SREGS, &sr));
    struct kvm_regs regs = { .rip = 0, .rflags = 2 };
    REQUIRE(!ioctl(vcpu, KVM_SET_REGS, &regs));
    CHECK(ioctl(vcpu, KVM_RUN, 0) == 0);
    CHECK_EQ(run->exit_reason, KVM_EXIT_IO);
    if (run->exit_reason == KVM_EXIT_IO) {
        CHECK_EQ(run->io.port, 0x10);
        CHECK_EQ(((uint8_t *)run)[run->io.data_offset], content_of(2));
    }
    struct uffd_pages_stats s;
    uffd_pages_get_stats(&U, &s);
    CHECK(s.requests == 1 && s.installed == 1);
    munmap(run, (size_t)runsz);
    close(vcpu);
    close(vm);
    close(kvm);
    teardown();
}

int main(void)
{
    RUN_TEST(test_fault_fetches_source_page);
    RUN_TEST(test_hole_not_missing_reads_zero);
    RUN_TEST(test_install_not_missing_ignored);
    RUN_TEST(test_wait_present);
    RUN_TEST(test_rerequest_after_drop);
    RUN_TEST(test_abandon_releases_waiters);
    RUN_TEST(test_kvm_vcpu_waits_for_frame);
    HARNESS_EXIT();
}
