/*
 * fill: a guest for the migration benchmark (bench/bench-migrate.sh). It fills mb=
 * MiB (default 256) of RAM from at= MiB (default 64) with pseudo-random data (seed=,
 * xorshift64, at CPL3), prints `xtest: fill: ready`, then either idles (dirty_mb=0,
 * the default) or rewrites one word in every page of the first dirty_mb= MiB of the
 * region every period_ms= ms (default 100), forever: a guest dirtying memory at
 * dirty_mb * 1000 / period_ms MiB/s. It never ends by itself.
 */
#include "../pv.h"
#include "../xtest.h"

struct fill_job {
    uint64_t *p;
    uint64_t words, seed;
};

static uint64_t fill_random(uint64_t arg)
{
    const struct fill_job *j = (const struct fill_job *)arg;
    uint64_t x = j->seed | 1;
    for (uint64_t i = 0; i < j->words; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        j->p[i] = x;
    }
    return x;
}

static uint64_t dirty_pages(uint64_t arg)
{
    const struct fill_job *j = (const struct fill_job *)arg;
    for (uint64_t i = 0; i < j->words; i += 512)
        j->p[i] += j->seed;
    return 0;
}

static void test_fill(void)
{
    XTEST_NEED_XEN();
    uint64_t mb = cmdline_get_u64("mb", 256), at = cmdline_get_u64("at", 64);
    uint64_t dirty_mb = cmdline_get_u64("dirty_mb", 0), period = cmdline_get_u64("period_ms", 100);
    uint64_t top = 0;
    for (unsigned i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        if (e->type == XEN_HVM_MEMMAP_TYPE_RAM && e->addr <= (at << 20) &&
            e->addr + e->size > top)
            top = e->addr + e->size;
    }
    if (((at + mb) << 20) > top || ((at + mb) << 20) > (4ull << 30))
        xtest_fail("[%lu, %lu) MiB is not RAM below 4 GiB (RAM ends at %lu MiB)",
                   (unsigned long)at, (unsigned long)(at + mb), (unsigned long)(top >> 20));
    pv_init();
    struct fill_job j = { .p = (uint64_t *)(uintptr_t)(at << 20), .words = mb << 17,
                          .seed = cmdline_get_u64("seed", 0x1234567) };
    uint64_t t0 = xen_time_ns();
    run_user(fill_random, (uint64_t)(uintptr_t)&j);
    printf("xtest: fill: ready (%lu MiB at %lu MiB in %lu ms)\n", (unsigned long)mb,
           (unsigned long)at, (unsigned long)((xen_time_ns() - t0) / 1000000));
    struct fill_job dj = { .p = j.p, .words = (dirty_mb < mb ? dirty_mb : mb) << 17, .seed = 1 };
    for (;;) {
        if (dj.words)
            run_user(dirty_pages, (uint64_t)(uintptr_t)&dj);
        wait_once(period);
    }
}
XTEST("fill", test_fill);
