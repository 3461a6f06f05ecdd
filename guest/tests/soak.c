/*
 * soak: a guest that keeps busy while it is saved, restored and migrated, and reports
 * any anomaly it can see (tests/kvm/migrate.sh). Each round it
 *   - checks the memory pattern of the previous round over mb= MiB (default 4) and
 *     writes this round's (at CPL3: kernel code is emulated under kvm-pvm);
 *   - checks Xen system time never went backwards;
 *   - with blk=1, writes, flushes and reads back blk_kb= KiB (default 64) at a
 *     round-dependent place of xvda through blkfront and xkvm-blkback;
 *   - writes data/soak-round in xenstore and reads it back (events with xenstored);
 *   - checks that the running time in its runstate area (registered at start) never
 *     goes back and keeps being updated;
 *   - with cpus=N (N > 1; the domain needs N vCPUs), has each secondary vCPU count
 *     the round and check its own Xen system time (an IPI event channel wakes it);
 * and it keeps a watch on data/soak-ctl. It stops when data/soak-stop exists, or
 * rounds= rounds (0: no limit) were done, and passes if nothing went wrong:
 *     xtest: soak: round N ok (every 50 rounds, and the first), with the largest gap
 *     between two of its clock reads (one a round) since boot, and since the last such
 *     line: a pause (live update, migration) shows there as the guest saw it
 *     xtest: soak: PASS            or      xtest: soak: FAIL: what went wrong
 */
#include "../pv.h"
#include "../xtest.h"

#define SOAK_MEM_MAX (4u << 20)      /* in the image's BSS: kept small */
static uint64_t soak_mem[SOAK_MEM_MAX / 8] __attribute__((aligned(4096)));

struct mem_job {
    uint64_t *buf;
    uint64_t words, round;
};

static uint64_t word_of(uint64_t i, uint64_t round)
{
    return (i * 0x9E3779B97F4A7C15ULL) ^ (round * 0xC2B2AE3D27D4EB4FULL) ^ 0x5A5A5A5A5A5A5A5AULL;
}

static uint64_t mem_fill(uint64_t arg)
{
    const struct mem_job *j = (const struct mem_job *)arg;
    for (uint64_t i = 0; i < j->words; i++)
        j->buf[i] = word_of(i, j->round);
    return 0;
}

/* 0, or 1 + the first word that is wrong. */
static uint64_t mem_check(uint64_t arg)
{
    const struct mem_job *j = (const struct mem_job *)arg;
    for (uint64_t i = 0; i < j->words; i++)
        if (j->buf[i] != word_of(i, j->round))
            return i + 1;
    return 0;
}

static uint64_t blk_word(uint64_t sector, uint64_t i, uint64_t round)
{
    return (sector << 20) ^ (i << 8) ^ round ^ 0xB10CB10CULL;
}

struct blk_job {
    uint64_t *buf;
    uint64_t sector, nr, round;
};

static uint64_t blk_fill(uint64_t arg)
{
    const struct blk_job *j = (const struct blk_job *)arg;
    uint64_t *w = j->buf;
    for (uint64_t s = 0; s < j->nr; s++)
        for (uint64_t i = 0; i < 64; i++)
            *w++ = blk_word(j->sector + s, i, j->round);
    return 0;
}

static uint64_t blk_check(uint64_t arg)
{
    const struct blk_job *j = (const struct blk_job *)arg;
    const uint64_t *w = j->buf;
    for (uint64_t s = 0; s < j->nr; s++)
        for (uint64_t i = 0; i < 64; i++)
            if (*w++ != blk_word(j->sector + s, i, j->round))
                return s + 1;
    return 0;
}

/* Work for a secondary vCPU: count the round, check its clock. */
struct cpu_tick {
    volatile uint64_t round, last_time, backwards;
};
static struct cpu_tick ticks[MAX_CPUS];
static struct vcpu_runstate_info rs_area __attribute__((aligned(64)));

static void cpu_tick(void *arg)
{
    struct cpu_tick *t = arg;
    uint64_t now = xen_time_ns();
    if (now < t->last_time)
        t->backwards++;
    t->last_time = now;
    t->round++;
}

static void test_soak(void)
{
    XTEST_NEED_XEN();
    uint64_t mb = cmdline_get_u64("mb", 4);
    uint64_t rounds = cmdline_get_u64("rounds", 0);
    bool use_blk = cmdline_get_u64("blk", 0) != 0;
    uint64_t blk_kb = cmdline_get_u64("blk_kb", 64);
    if (mb == 0 || mb > SOAK_MEM_MAX >> 20)
        xtest_fail("mb=%lu: 1..%u", (unsigned long)mb, SOAK_MEM_MAX >> 20);
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    if ((rc = xs_watch("data/soak-ctl", "soak", NULL, NULL)))
        xtest_fail("xs_watch: %s", xs_errname(rc));
    struct blkfront bf;
    uint64_t *bbuf = NULL, bsectors = 0;
    if (use_blk) {
        size_t bsz;
        if ((rc = blkfront_connect(&bf, 51712)))
            xtest_fail("blkfront_connect: %s", xs_errname(rc));
        bbuf = blkfront_buffer(&bsz);
        bsectors = blk_kb * 2;
        if (bsectors * 512 > bsz)
            bsectors = bsz / 512;
    }
    uint64_t cpus = cmdline_get_u64("cpus", 1);
    if (cpus < 1 || cpus > MAX_CPUS)
        xtest_fail("cpus=%lu: 1..%u", (unsigned long)cpus, MAX_CPUS);
    for (unsigned c = 1; c < cpus; c++) {
        long e = smp_bringup(c);
        if (e)
            xtest_fail("bringing up vCPU %u: %ld", c, e);
    }
    printf("xtest: soak: running (mb=%lu blk=%d cpus=%lu)\n", (unsigned long)mb, use_blk,
           (unsigned long)cpus);

    struct vcpu_register_runstate_memory_area reg = { .addr.v = &rs_area };
    long hrc = HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, &reg);
    if (hrc)
        xtest_fail("register_runstate_memory_area = %ld", hrc);
    uint64_t last_running = 0, runstate_moves = 0;

    struct mem_job mj = { .buf = soak_mem, .words = mb << 17 };
    uint64_t last_time = xen_time_ns(), max_gap = 0, line_gap = 0, watch_events = 0;
    char tmp[32];
    for (uint64_t k = 1; !rounds || k <= rounds; k++) {
        if (k > 1) {
            mj.round = k - 1;
            uint64_t bad = run_user(mem_check, (uint64_t)(uintptr_t)&mj);
            if (bad)
                xtest_fail("round %lu: memory word %lu is %#lx, want %#lx", (unsigned long)k,
                           (unsigned long)(bad - 1), (unsigned long)soak_mem[bad - 1],
                           (unsigned long)word_of(bad - 1, k - 1));
        }
        mj.round = k;
        run_user(mem_fill, (uint64_t)(uintptr_t)&mj);

        uint64_t now = xen_time_ns();
        if (now < last_time)
            xtest_fail("round %lu: Xen system time went back from %lu to %lu ns",
                       (unsigned long)k, (unsigned long)last_time, (unsigned long)now);
        if (now - last_time > max_gap)
            max_gap = now - last_time;
        if (now - last_time > line_gap)
            line_gap = now - last_time;
        last_time = now;
        uint64_t running = __atomic_load_n(&rs_area.time[RUNSTATE_running], __ATOMIC_RELAXED);
        if (running < last_running)
            xtest_fail("round %lu: runstate running time went back from %lu to %lu ns",
                       (unsigned long)k, (unsigned long)last_running, (unsigned long)running);
        runstate_moves += running > last_running;
        last_running = running;

        if (use_blk) {
            uint64_t sector = (k * 37) % 2048 * 8;
            if (sector + bsectors > bf.sectors)
                sector = 0;
            struct blk_job bj = { .buf = bbuf, .sector = sector, .nr = bsectors, .round = k };
            run_user(blk_fill, (uint64_t)(uintptr_t)&bj);
            if ((rc = blkfront_io(&bf, true, sector, (unsigned)bsectors)) ||
                (rc = blkfront_flush(&bf)))
                xtest_fail("round %lu: block write at %lu: %s", (unsigned long)k,
                           (unsigned long)sector, xs_errname(rc));
            memset(bbuf, 0xa5, bsectors * 512);
            if ((rc = blkfront_io(&bf, false, sector, (unsigned)bsectors)))
                xtest_fail("round %lu: block read at %lu: %s", (unsigned long)k,
                           (unsigned long)sector, xs_errname(rc));
            uint64_t bad = run_user(blk_check, (uint64_t)(uintptr_t)&bj);
            if (bad)
                xtest_fail("round %lu: sector %lu reads back wrong", (unsigned long)k,
                           (unsigned long)(sector + bad - 1));
        }

        for (unsigned c = 1; c < cpus; c++) {
            if (!smp_call(c, cpu_tick, &ticks[c], 10000))
                xtest_fail("round %lu: vCPU %u did not answer in 10 s", (unsigned long)k, c);
            if (ticks[c].round != k || ticks[c].backwards)
                xtest_fail("round %lu: vCPU %u counted %lu, its clock went back %lu times",
                           (unsigned long)k, c, (unsigned long)ticks[c].round,
                           (unsigned long)ticks[c].backwards);
        }
        if ((rc = xs_printf(0, "data/soak-round", "%lu", (unsigned long)k)))
            xtest_fail("round %lu: xenstore write: %s", (unsigned long)k, xs_errname(rc));
        uint64_t back = 0;
        if ((rc = xs_read_u64(0, "data/soak-round", &back)) || back != k)
            xtest_fail("round %lu: xenstore read back %lu (%s)", (unsigned long)k,
                       (unsigned long)back, rc ? xs_errname(rc) : "wrong value");
        struct xs_watch_event ev;
        while (xs_watch_next("soak", &ev, 0))
            watch_events++;
        if (k == 1 || k % 50 == 0) {
            printf("xtest: soak: round %lu ok (max gap %lu us, since the last line %lu us, "
                   "%lu watch events)\n", (unsigned long)k, (unsigned long)(max_gap / 1000),
                   (unsigned long)(line_gap / 1000), (unsigned long)watch_events);
            line_gap = 0;
        }
        if (xs_read(0, "data/soak-stop", tmp, sizeof(tmp)) >= 0)
            break;
    }
    if (watch_events == 0)
        xtest_fail("the xenstore watch on data/soak-ctl never fired");
    if (runstate_moves == 0)
        xtest_fail("the runstate area was never updated");
    if (use_blk)
        blkfront_disconnect(&bf);
}
XTEST("soak", test_soak);
