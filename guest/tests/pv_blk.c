/*
 * blk: blkfront against xkvm-blkback (tests/kvm/dom0-services.sh).
 *
 * Connects to device/vbd/<vbd=> (default 51712, xvda), prints
 * `xtest: blk: sectors=N`, then writes a pattern over the first mb= MiB (default 4;
 * mb=0: the whole disk), flushes, reads everything back and checks it. loop=N (default
 * 1) repeats that N times with seeds seed, seed+1, ... (seed= default 1) and prints
 * `xtest: blk: loop K seed S ok` after each; loop=0 repeats until the node
 * data/blk-stop exists in xenstore (checked after each loop). Then disconnects
 * (Closing/Closed) and passes. The disk ends up holding the last loop's pattern.
 *
 * Pattern, per 512-byte sector s, 64 little-endian 64-bit words w[i]:
 *   w[0] = s, w[1] = seed,
 *   w[i] = ((s * 0x9E3779B97F4A7C15) ^ (seed * 0xC2B2AE3D27D4EB4F)) + i * 0x165667B19E3779F9
 * (mod 2^64). Generated and checked at CPL3 (run_user): kernel code is emulated
 * under kvm-pvm.
 */
#include "../pv.h"
#include "../xtest.h"

struct pat_job {
    uint64_t *buf;
    uint64_t sector, nr, seed;
};

static uint64_t pat_word(uint64_t s, uint64_t seed, uint64_t i)
{
    if (i == 0)
        return s;
    if (i == 1)
        return seed;
    return ((s * 0x9E3779B97F4A7C15ULL) ^ (seed * 0xC2B2AE3D27D4EB4FULL)) +
           i * 0x165667B19E3779F9ULL;
}

static uint64_t pat_fill(uint64_t arg)
{
    const struct pat_job *j = (const struct pat_job *)arg;
    uint64_t *w = j->buf;

    for (uint64_t s = j->sector; s < j->sector + j->nr; s++)
        for (uint64_t i = 0; i < 64; i++)
            *w++ = pat_word(s, j->seed, i);
    return 0;
}

/* 0, or 1 + the index of the first bad sector in the job. */
static uint64_t pat_check(uint64_t arg)
{
    const struct pat_job *j = (const struct pat_job *)arg;
    const uint64_t *w = j->buf;

    for (uint64_t s = j->sector; s < j->sector + j->nr; s++)
        for (uint64_t i = 0; i < 64; i++)
            if (*w++ != pat_word(s, j->seed, i))
                return s - j->sector + 1;
    return 0;
}

static void test_blk(void)
{
    struct blkfront bf;
    size_t bufsz;
    char tmp[8];
    int rc;

    XTEST_NEED_XEN();
    unsigned devid = (unsigned)cmdline_get_u64("vbd", 51712);
    uint64_t mb = cmdline_get_u64("mb", 4);
    uint64_t loops = cmdline_get_u64("loop", 1);
    uint64_t seed = cmdline_get_u64("seed", 1);

    if ((rc = xenbus_init()))
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    if ((rc = blkfront_connect(&bf, devid)))
        xtest_fail("blkfront_connect(%u): %s", devid, xs_errname(rc));
    printf("xtest: blk: sectors=%lu\n", (unsigned long)bf.sectors);

    uint64_t total = mb ? mb * 2048 : bf.sectors;

    if (total > bf.sectors)
        total = bf.sectors;
    uint64_t *buf = blkfront_buffer(&bufsz);
    uint64_t chunk = bufsz / 512;

    for (uint64_t k = 0; !loops || k < loops; k++) {
        uint64_t sd = seed + k, t0 = xen_time_ns();
        struct pat_job j = { .buf = buf, .seed = sd };

        for (uint64_t s = 0; s < total; s += chunk) {
            j.sector = s;
            j.nr = total - s < chunk ? total - s : chunk;
            run_user(pat_fill, (uint64_t)(uintptr_t)&j);
            if ((rc = blkfront_io(&bf, true, s, (unsigned)j.nr)))
                xtest_fail("write of sectors %lu+%lu: %s", (unsigned long)s,
                           (unsigned long)j.nr, xs_errname(rc));
        }
        if ((rc = blkfront_flush(&bf)))
            xtest_fail("flush: %s", xs_errname(rc));
        for (uint64_t s = 0; s < total; s += chunk) {
            j.sector = s;
            j.nr = total - s < chunk ? total - s : chunk;
            memset(buf, 0xa5, j.nr * 512);
            if ((rc = blkfront_io(&bf, false, s, (unsigned)j.nr)))
                xtest_fail("read of sectors %lu+%lu: %s", (unsigned long)s,
                           (unsigned long)j.nr, xs_errname(rc));
            uint64_t bad = run_user(pat_check, (uint64_t)(uintptr_t)&j);
            if (bad) {
                uint64_t bs = s + bad - 1;
                const uint64_t *w = buf + (bad - 1) * 64;
                xtest_fail("loop %lu: sector %lu reads back %#lx %#lx ..., want %lu %lu",
                           (unsigned long)k + 1, (unsigned long)bs, (unsigned long)w[0],
                           (unsigned long)w[1], (unsigned long)bs, (unsigned long)sd);
            }
        }
        printf("xtest: blk: loop %lu seed %lu ok (%lu sectors, %lu ms)\n",
               (unsigned long)k + 1, (unsigned long)sd, (unsigned long)total,
               (unsigned long)((xen_time_ns() - t0) / 1000000));
        if (!loops && xs_read(0, "data/blk-stop", tmp, sizeof(tmp)) >= 0)
            break;
    }
    blkfront_disconnect(&bf);
}
XTEST("blk", test_blk);
