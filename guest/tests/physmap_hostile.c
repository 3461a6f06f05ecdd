/*
 * Hostile XENMEM_add_to_physmap use: the attacks of docs/security.md ("p2m changes are
 * transactions"), as a guest would make them. tests/kvm/physmap-hostile.sh drives them.
 *
 * physmap-exhaust: move RAM frames out of the middle of RAM into far holes until the
 *   hypervisor refuses (every move adds a memslot and breaks the window's mapping in
 *   four places; it used to split a memslot too). The refusal
 *   must be clean: an error, the source frame still in place, the destination still a
 *   hole. Then the use-after-free sequence that worked when a refused move left the
 *   frame at both gfns: move a frame over the refused source (freeing what is there),
 *   move the refused destination elsewhere, free 20 more frames. Finally, for
 *   `seconds=` (default 20), keep writing a marker into the frames it holds and
 *   reading it back, while the test starts a victim domain: a frame the guest still
 *   reaches after it was freed would carry the marker into the victim (its memory test
 *   fails) or the victim's patterns into this guest (this test fails).
 *
 * physmap-race: vCPU 1 moves a page between a RAM gfn and a hole as fast as it can
 *   while vCPU 0 has the hypervisor copy into and out of that gfn (XENVER_extraversion,
 *   XENMEM_current_reservation). Every copy must either succeed or fail with -EFAULT; the hypervisor
 *   must survive (it used to take SIGSEGV copying through a page another vCPU had
 *   just unmapped). Needs vcpus >= 2; runs for `seconds=` (default 10).
 */
#include "../pv.h"
#include "../xtest.h"

#include <xen/errno.h>

#define MARKER       0x4141414141414141ULL
#define FAR_HOLE_GFN 0x10000ULL         /* 256 MiB: beyond the guest's RAM */
#define MAX_MOVES    1200

static long move_gfn(uint64_t from, uint64_t to)
{
    struct xen_add_to_physmap x = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_gmfn, .idx = from, .gpfn = to,
    };
    return HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x);
}

/* Whether the hypervisor can write at gfn: extraversion copied to its address. */
static bool hv_can_write(uint64_t gfn)
{
    return HYPERVISOR_xen_version(XENVER_extraversion, (void *)(uintptr_t)(gfn << 12)) >= 0;
}

static volatile uint64_t *word_at(uint64_t gfn)
{
    return (volatile uint64_t *)(uintptr_t)(gfn << 12);
}

/* The highest RAM gfn the memory map gives us, minus a margin. */
static uint64_t top_ram_gfn(void)
{
    uint64_t top = 0;
    for (unsigned i = 0; i < boot.memmap_entries; i++)
        if (boot.memmap[i].type == XEN_HVM_MEMMAP_TYPE_RAM &&
            boot.memmap[i].addr + boot.memmap[i].size <= 1ULL << 32)
            top = (boot.memmap[i].addr + boot.memmap[i].size) >> 12;
    if (top < 2048)
        xtest_fail("too little RAM for this test (%lu pages)", (unsigned long)top);
    return top - 64;
}

static uint64_t src_of(uint64_t top, unsigned i) { return top - 2 * i; }
static uint64_t dst_of(unsigned i) { return FAR_HOLE_GFN + 2 * i; }

/* Moves until the first refusal; returns how many went through. */
static unsigned exhaust(uint64_t top)
{
    for (unsigned i = 0; i < MAX_MOVES; i++) {
        *word_at(src_of(top, i)) = MARKER ^ i;
        long rc = move_gfn(src_of(top, i), dst_of(i));
        if (rc == 0)
            continue;
        printf("xkvm-guest: physmap: move %u (gfn %#lx -> %#lx) refused: %ld\n", i,
               (unsigned long)src_of(top, i), (unsigned long)dst_of(i), rc);
        if (rc != -XEN_ENOMEM && rc != -XEN_EBUSY)
            xtest_fail("move %u refused with %ld, not -ENOMEM/-EBUSY", i, rc);
        return i;
    }
    xtest_fail("%d moves and no refusal: memslots are not bounded", MAX_MOVES);
}

/* A refused move changes nothing; a done one leaves a hole behind it. */
static void check_consistent(uint64_t top, unsigned done)
{
    uint64_t s = src_of(top, done), d = dst_of(done);
    if (*word_at(s) != (MARKER ^ done) || !hv_can_write(s))
        xtest_fail("refused move %u lost its source gfn %#lx", done, (unsigned long)s);
    if (hv_can_write(d))
        xtest_fail("refused move %u populated its destination gfn %#lx", done,
                   (unsigned long)d);
    for (unsigned i = 0; i < done; i++) {
        if (hv_can_write(src_of(top, i)))
            xtest_fail("moved gfn %#lx is still reachable at its old place",
                       (unsigned long)src_of(top, i));
        if (*word_at(dst_of(i)) == 0 && !hv_can_write(dst_of(i)))
            xtest_fail("moved frame %u is not at its new place", i);
    }
}

static void test_physmap_exhaust(void)
{
    XTEST_NEED_XEN();
    pv_init();                                  /* for the clock */
    uint64_t top = top_ram_gfn();
    unsigned done = exhaust(top);
    check_consistent(top, done);
    if (done < 24)
        xtest_fail("only %u moves before a refusal", done);

    /* The old use-after-free sequence; each step may now be refused, none may break. */
    long a = move_gfn(dst_of(0), src_of(top, done));        /* frees the source's frame */
    long b = move_gfn(dst_of(done), dst_of(1));             /* the would-be stale gfn */
    unsigned freed = 0;
    for (unsigned k = 2; k + 1 < done && freed < 20; k += 2)
        freed += move_gfn(dst_of(k), dst_of(k + 1)) == 0;
    printf("xkvm-guest: physmap: over the source %ld, stale move %ld, %u more freed\n",
           a, b, freed);
    if (b == 0)
        xtest_fail("a move from a hole (gfn %#lx) succeeded", (unsigned long)dst_of(done));

    /* Hold on to what we have and watch it while a victim runs. */
    static uint64_t held[MAX_MOVES];
    unsigned n = 0;
    held[n++] = dst_of(1);
    for (unsigned k = 3; k + 1 < done && n < MAX_MOVES; k += 2)
        held[n++] = dst_of(k);
    if (a == 0)
        held[n++] = src_of(top, done);
    printf("xtest: physmap-exhaust: ready\n");
    uint64_t end = xen_time_ns() + cmdline_get_u64("seconds", 20) * 1000000000ULL;
    unsigned rounds = 0;
    while (xen_time_ns() < end) {
        for (unsigned k = 0; k < n; k++)
            *word_at(held[k]) = MARKER;
        for (unsigned k = 0; k < n; k++)
            if (*word_at(held[k]) != MARKER)
                xtest_fail("gfn %#lx holds %#lx, not our marker: another domain's memory",
                           (unsigned long)held[k], (unsigned long)*word_at(held[k]));
        rounds++;
    }
    printf("xkvm-guest: physmap: %u moves, %u frames watched for %u rounds\n", done, n,
           rounds);
}
XTEST("physmap-exhaust", test_physmap_exhaust);

/* ---- physmap-race ---- */

#define RACE_GFN_HOLE (FAR_HOLE_GFN + 0x100)

static struct {
    volatile bool stop, done;
    volatile uint64_t moves, refused;
    uint64_t ram_gfn;
} race;

static void race_mover(void *arg)
{
    (void)arg;
    while (!race.stop) {
        long r1 = move_gfn(race.ram_gfn, RACE_GFN_HOLE);
        long r2 = r1 ? 0 : move_gfn(RACE_GFN_HOLE, race.ram_gfn);
        if (r1 || r2)
            race.refused++;
        if (r2)
            break;              /* the page is stuck in the hole: the copier sees faults */
        race.moves++;
    }
    race.done = true;
}

static void test_physmap_race(void)
{
    XTEST_NEED_XEN();
    pv_init();
    long rc = smp_bringup(1);
    if (rc)
        xtest_fail("vCPU 1 did not come up: %ld (run with vcpus >= 2)", rc);
    race.ram_gfn = top_ram_gfn();
    smp_call(1, race_mover, NULL, 0);           /* runs on vCPU 1 until told to stop */
    char *page = (char *)(uintptr_t)(race.ram_gfn << 12);
    *(volatile domid_t *)page = DOMID_SELF;     /* travels with the frame */
    uint64_t ok = 0, faults = 0, end = xen_time_ns() + cmdline_get_u64("seconds", 10) *
                                                        1000000000ULL;
    while (xen_time_ns() < end) {
        long r = HYPERVISOR_xen_version(XENVER_extraversion, page + 4096 - 8);
        long w = HYPERVISOR_memory_op(XENMEM_current_reservation, page);
        if ((r < 0 && r != -XEN_EFAULT) || (w < 0 && w != -XEN_EFAULT))
            xtest_fail("copy returned %ld / %ld, not 0 or -EFAULT", r, w);
        r < 0 ? faults++ : ok++;
    }
    race.stop = true;
    uint64_t wait_end = xen_time_ns() + 5000000000ULL;
    while (!race.done && xen_time_ns() < wait_end)
        cpu_relax();
    if (!race.done)
        xtest_fail("vCPU 1 did not stop");
    printf("xkvm-guest: physmap-race: %lu moves (%lu refused), %lu copies done, %lu "
           "faulted\n", (unsigned long)race.moves, (unsigned long)race.refused,
           (unsigned long)ok, (unsigned long)faults);
    if (race.moves == 0 || ok + faults == 0)
        xtest_fail("the race did not run");
}
XTEST("physmap-race", test_physmap_race);
