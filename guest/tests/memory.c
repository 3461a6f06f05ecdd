/*
 * memory: write and read back all RAM the memory map gives the guest (type 1
 * entries, below the 4 GiB identity map), except the pages the guest itself lives
 * in (image with stacks and page tables, start_info, memmap, cmdline, modules).
 *
 * What is verified, and why it is fast enough:
 *   default (memtest=user): every 8-byte word of every tested page is written with
 *     a value derived from its own address (addr ^ seed), all of RAM is then read
 *     back, then the same with the complement. That catches unbacked or aliased
 *     pages (two gfns on one frame), lost writes and stuck bits. The loops run at
 *     CPL3 through run_user(): on kvm-pvm user code runs natively, so 32 MiB is
 *     a few million iterations at hardware speed (kernel code would be emulated at
 *     ~1.5 M instructions/s: far too slow for a full pass).
 *   memtest=kernel: the loops run at CPL0 (emulated on kvm-pvm: ~0.5 M loop
 *     instructions/s measured) and touch one word every `memstride=` bytes
 *     (default 512: 8 words per page, one pass, addr ^ seed): 64 K words for
 *     32 MiB, about 2 s. Still catches unbacked and aliased pages. (memstride=64,
 *     one word per cache line, took 15 s for 32 MiB on kvm-pvm.)
 * On kvm-pvm the default mode took 0.3 s for 32 MiB, boot included.
 */
#include "../xtest.h"

#define MAX_RANGES 64

struct memtest {
    uint64_t nr;
    struct {
        uint64_t start, end;
    } r[MAX_RANGES];
    uint64_t seed, stride, passes;
    uint64_t bad_addr, bad_got, bad_want;
};

static struct memtest mt;

/* Runs at CPL3 (or CPL0 for memtest=kernel): touches nothing but mt and RAM. */
static uint64_t memtest_run(uint64_t arg)
{
    struct memtest *m = (struct memtest *)arg;
    uint64_t stride = m->stride;

    for (uint64_t pass = 0; pass < m->passes; pass++) {
        uint64_t seed = pass ? ~m->seed : m->seed;

        for (uint64_t i = 0; i < m->nr; i++)
            for (uint64_t a = m->r[i].start; a < m->r[i].end; a += stride)
                *(volatile uint64_t *)a = a ^ seed;
        for (uint64_t i = 0; i < m->nr; i++)
            for (uint64_t a = m->r[i].start; a < m->r[i].end; a += stride) {
                uint64_t got = *(volatile uint64_t *)a;

                if (got != (a ^ seed)) {
                    m->bad_addr = a;
                    m->bad_got = got;
                    m->bad_want = a ^ seed;
                    return 1;
                }
            }
    }
    return 0;
}

/* Add [s, e) minus every reserved region. */
static void add_range(uint64_t s, uint64_t e, unsigned from)
{
    for (unsigned i = from; i < boot.nr_reserved && s < e; i++) {
        const struct mem_region *r = &boot.reserved[i];

        if (r->end <= s || r->start >= e)
            continue;
        if (r->start > s)
            add_range(s, r->start, i + 1);
        s = r->end;
    }
    if (s >= e)
        return;
    if (mt.nr == MAX_RANGES)
        xtest_fail("memory map too fragmented (> %d ranges)", MAX_RANGES);
    mt.r[mt.nr].start = s;
    mt.r[mt.nr].end = e;
    mt.nr++;
}

static void test_memory(void)
{
    char mode[16] = "user";
    uint64_t total_ram = 0, above = 0, tested = 0, reserved = 0;

    if (!boot.memmap_entries)
        xtest_fail("no memory map in start_info");
    cmdline_get("memtest", mode, sizeof(mode));
    if (strcmp(mode, "user") && strcmp(mode, "kernel"))
        xtest_fail("memtest=%s: want user or kernel", mode);

    for (unsigned i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        uint64_t s = (e->addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
        uint64_t end = (e->addr + e->size) & ~(PAGE_SIZE - 1);

        printf("xkvm-guest: memmap %u: %#018lx-%#018lx type %u\n", i, e->addr,
               e->addr + e->size, e->type);
        if (e->type != XEN_HVM_MEMMAP_TYPE_RAM || end <= s)
            continue;
        total_ram += end - s;
        if (end > IDENT_MAP_LIMIT) {
            above += end - (s > IDENT_MAP_LIMIT ? s : IDENT_MAP_LIMIT);
            end = IDENT_MAP_LIMIT;
        }
        if (s < end)
            add_range(s, end, 0);
    }
    for (unsigned i = 0; i < mt.nr; i++)
        tested += mt.r[i].end - mt.r[i].start;
    reserved = total_ram - above - tested;
    for (unsigned i = 0; i < boot.nr_reserved; i++)
        printf("xkvm-guest: skipping %s %#lx-%#lx\n", boot.reserved[i].what,
               boot.reserved[i].start, boot.reserved[i].end);
    if (!tested)
        xtest_fail("no RAM to test");

    bool user = !strcmp(mode, "user");

    mt.seed = 0x9e3779b97f4a7c15ULL;
    mt.stride = cmdline_get_u64("memstride", user ? 8 : 512);
    mt.passes = user ? 2 : 1;
    if (mt.stride < 8 || mt.stride % 8 || mt.stride > PAGE_SIZE)
        xtest_fail("memstride=%lu: want a multiple of 8 up to 4096", mt.stride);
    printf("xkvm-guest: memory: testing %lu KiB in %lu ranges at %s (one word every "
           "%lu bytes, %lu pattern(s)), skipping %lu KiB of the guest's own pages, "
           "%lu KiB above 4 GiB\n",
           tested >> 10, mt.nr, user ? "CPL3" : "CPL0", mt.stride, mt.passes,
           reserved >> 10, above >> 10);

    uint64_t t0 = rdtsc();
    uint64_t bad = user ? run_user(memtest_run, (uint64_t)(uintptr_t)&mt)
                        : memtest_run((uint64_t)(uintptr_t)&mt);
    uint64_t t1 = rdtsc();

    printf("xkvm-guest: memory: done in %lu M TSC cycles\n", (t1 - t0) >> 20);
    if (bad)
        xtest_fail("at %#lx read %#lx, wrote %#lx", mt.bad_addr, mt.bad_got,
                   mt.bad_want);
    printf("xkvm-guest: memory: %lu KiB verified\n", tested >> 10);
}
XTEST("memory", test_memory);
