/*
 * Memory reservation and ballooning, as a balloon driver uses them (docs/hypervisor.md,
 * "Memory reservation"; tests/kvm/balloon.sh drives them).
 *
 * balloon: give back `pages=` (default 320) pages near the top of RAM with one
 *   XENMEM_decrease_reservation (more than one invocation's worth: a continuation);
 *   current_reservation drops by as many and the hypervisor no longer reaches them
 *   (a copy to them fails). Hostile requests then change nothing and return Xen's
 *   answer, the number of extents done (0): a hole given back again, shared_info's and
 *   the grant table's gfns, 2^30 extents, orders past 9, gfns past the address space,
 *   an extent list in unmapped memory, another domain, populate-on-demand, a 5-bit
 *   address width, a gfn in the MMIO hole. The pages come back
 *   with one populate_physmap: zero, writable, counted. Then RAM up to the maximum above
 *   the guest's memory (maxmem), one page more refused, and given back; an order-2
 *   extent out and in; increase_reservation takes the last frame of the maximum, after
 *   which a populate is refused.
 *   With hold=1 it stops before giving the pages back ("xtest: balloon: ready", the
 *   first holding "balloon-page"), after ("out") and after taking them again ("in")
 *   until the host writes 1, 2, then 3 to data/balloon-go, so that the host can map a
 *   page as a dom0 service would and look at its machine memory meanwhile.
 *
 * balloon-move: populate up to 16 pages above its memory (as maxmem allows), give back
 *   region A and stop ("xtest: balloon-move: out1", go=1: the host migrates the guest
 *   meanwhile); the count, the holes and the pages above memory must still be there;
 *   take A again (zero), give back region B ("out2", go=2: the host live-updates
 *   xkvmd); the same checks; take B again ("in2", go=3).
 *
 * balloon-big: 64 MiB out and in twice in Linux-sized batches, across a migration and
 *   a live update, then a fragmenting decrease that must stop at the mapping budget,
 *   and a populate over a page the guest holds (below, before test_balloon_big).
 */
#include "../pv.h"
#include "../xtest.h"

#define MARKER      0x42414c4c4f4f4e21ULL       /* "BALLOON!" */
#define FAR_GFN     0x10000ULL                  /* 256 MiB: beyond the guest's RAM */
#define MAX_PAGES   1024
#define HOSTILE_GFN (1ULL << 40)

static xen_pfn_t list[MAX_PAGES];

static long memop(int cmd, const xen_pfn_t *extents, unsigned long nr, unsigned order,
                  unsigned flags, domid_t domid)
{
    struct xen_memory_reservation r = {
        .nr_extents = nr, .extent_order = order, .mem_flags = flags, .domid = domid,
    };
    set_xen_guest_handle(r.extent_start, (xen_pfn_t *)extents);
    return HYPERVISOR_memory_op(cmd, &r);
}

static long reservation(int cmd)
{
    domid_t self = DOMID_SELF;
    long rc = HYPERVISOR_memory_op(cmd, &self);
    if (rc <= 0)
        xtest_fail("memory_op(%d) = %ld", cmd, rc);
    return rc;
}

static long current(void) { return reservation(XENMEM_current_reservation); }

/* Whether the hypervisor reaches gfn as memory: extraversion copied there. */
static bool hv_can_write(uint64_t gfn)
{
    return HYPERVISOR_xen_version(XENVER_extraversion, (void *)(uintptr_t)(gfn << 12)) >= 0;
}

static volatile uint64_t *page_at(uint64_t gfn)
{
    return (volatile uint64_t *)(uintptr_t)(gfn << 12);
}

/* The first RAM gfn past the memory map's RAM below 4 GiB. */
static uint64_t ram_top(void)
{
    uint64_t top = 0;
    for (unsigned i = 0; i < boot.memmap_entries; i++)
        if (boot.memmap[i].type == XEN_HVM_MEMMAP_TYPE_RAM &&
            boot.memmap[i].addr + boot.memmap[i].size <= 1ULL << 32)
            top = (boot.memmap[i].addr + boot.memmap[i].size) >> 12;
    return top;
}

static void fill_list(uint64_t first, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        list[i] = first + i;
}

/* Give back [first, first + n) in one request: all of it. */
static void give_back(uint64_t first, unsigned n)
{
    fill_list(first, n);
    long rc = memop(XENMEM_decrease_reservation, list, n, 0, 0, DOMID_SELF);
    if (rc != (long)n)
        xtest_fail("decrease_reservation of %u pages at %#lx: %ld", n, (unsigned long)first,
                   rc);
    for (unsigned i = 0; i < n; i++)
        if (hv_can_write(first + i))
            xtest_fail("gfn %#lx given back, still memory to the hypervisor",
                       (unsigned long)(first + i));
}

/* Take [first, first + n) again: all of it, zeroed, writable. */
static void take_again(uint64_t first, unsigned n)
{
    static char extra[XEN_EXTRAVERSION_LEN];
    if (HYPERVISOR_xen_version(XENVER_extraversion, extra) < 0)
        xtest_fail("XENVER_extraversion");
    fill_list(first, n);
    long rc = memop(XENMEM_populate_physmap, list, n, 0, 0, DOMID_SELF);
    if (rc != (long)n)
        xtest_fail("populate_physmap of %u pages at %#lx: %ld", n, (unsigned long)first, rc);
    for (unsigned i = 0; i < n; i++) {
        volatile uint64_t *p = page_at(first + i);
        for (unsigned w = 0; w < 512; w += 61)
            if (p[w])
                xtest_fail("populated gfn %#lx word %u holds %#lx, not 0",
                           (unsigned long)(first + i), w, (unsigned long)p[w]);
        p[0] = p[511] = MARKER ^ (first + i);
        if (p[0] != (MARKER ^ (first + i)))
            xtest_fail("populated gfn %#lx is not writable memory", (unsigned long)(first + i));
        /* The hypervisor writes there now; the guest must see that very frame. */
        if (!hv_can_write(first + i) || memcmp((const void *)p, extra, 16) ||
            p[511] != (MARKER ^ (first + i)))
            xtest_fail("populated gfn %#lx: the guest does not see the frame the hypervisor "
                       "writes to (%#lx)", (unsigned long)(first + i), (unsigned long)p[0]);
        p[0] = MARKER ^ (first + i);
    }
}

static void expect_count(const char *when, long want)
{
    long cur = current();
    if (cur != want)
        xtest_fail("%s: current_reservation %ld, want %ld", when, cur, want);
}

/* A request that must do nothing: Xen answers the extents done, 0 here. */
static void refused(const char *what, long rc, long cur)
{
    if (rc != 0)
        xtest_fail("%s: answered %ld, want 0 (nothing done)", what, rc);
    expect_count(what, cur);
}

static void give_back(uint64_t first, unsigned n);
static void take_again(uint64_t first, unsigned n);

/* While balloon-move waits: give pages back and take them again, round after round. */
static uint64_t churn_gfn;
static unsigned churn_pages, churn_rounds;

/*
 * With hold=1 (balloon) or always (balloon-move): say where we are, wait for go >= k,
 * churning meanwhile if asked to (a migration then copies a p2m that keeps changing).
 */
static void phase(const char *name, unsigned k, bool hold)
{
    printf("xtest: %s: %s\n", xtest_name, name);
    if (!hold)
        return;
    xs_write(0, "data/balloon-state", name);
    xs_watch("data/balloon-go", "go", NULL, NULL);
    for (;;) {
        uint64_t go = 0;
        if (xs_read_u64(0, "data/balloon-go", &go) >= 0 && go >= k)
            break;
        if (churn_pages) {
            give_back(churn_gfn, churn_pages);
            take_again(churn_gfn, churn_pages);
            churn_rounds++;
            continue;
        }
        struct xs_watch_event ev;
        xs_watch_next("go", &ev, 1000);
    }
    xs_unwatch("data/balloon-go", "go");
}

static grant_entry_v1_t *gt;

static void hostile(uint64_t hole, uint64_t populated, long cur)
{
    xen_pfn_t one = hole;
    refused("a hole given back", memop(XENMEM_decrease_reservation, &one, 1, 0, 0,
                                       DOMID_SELF), cur);
    one = (uintptr_t)shinfo >> 12;
    refused("shared_info given back", memop(XENMEM_decrease_reservation, &one, 1, 0, 0,
                                            DOMID_SELF), cur);
    if (!hv_can_write(one))
        xtest_fail("shared_info's gfn %#lx is gone after a refused decrease", (unsigned long)one);
    one = (uintptr_t)gt >> 12;
    refused("a grant frame given back", memop(XENMEM_decrease_reservation, &one, 1, 0, 0,
                                              DOMID_SELF), cur);
    one = hole;
    refused("2^30 extents", memop(XENMEM_populate_physmap, &one, 1UL << 30, 0, 0,
                                  DOMID_SELF), cur);
    refused("order 10 populate", memop(XENMEM_populate_physmap, &one, 1, 10, 0, DOMID_SELF), cur);
    refused("order 10 decrease", memop(XENMEM_decrease_reservation, &one, 1, 10, 0,
                                       DOMID_SELF), cur);
    refused("order 2^32-1", memop(XENMEM_populate_physmap, &one, 1, ~0u, 0, DOMID_SELF), cur);
    one = HOSTILE_GFN;
    refused("gfn 2^40 populated", memop(XENMEM_populate_physmap, &one, 1, 0, 0, DOMID_SELF), cur);
    refused("gfn 2^40 given back", memop(XENMEM_decrease_reservation, &one, 1, 0, 0,
                                         DOMID_SELF), cur);
    refused("extent list unmapped", memop(XENMEM_populate_physmap,
                                          (const xen_pfn_t *)(1ULL << 45), 4, 0, 0,
                                          DOMID_SELF), cur);
    refused("extent list unmapped (decrease)", memop(XENMEM_decrease_reservation,
                                                     (const xen_pfn_t *)(1ULL << 45), 4, 0,
                                                     0, DOMID_SELF), cur);
    one = hole;
    refused("domain 0", memop(XENMEM_populate_physmap, &one, 1, 0, 0, 0), cur);
    refused("domain 0x7fef", memop(XENMEM_populate_physmap, &one, 1, 0, 0, 0x7fef), cur);
    refused("populate-on-demand", memop(XENMEM_populate_physmap, &one, 1, 0,
                                        XENMEMF_populate_on_demand, DOMID_SELF), cur);
    refused("5 address bits", memop(XENMEM_populate_physmap, &one, 1, 0,
                                    XENMEMF_address_bits(5), DOMID_SELF), cur);
    one = 0xFEE00;
    refused("the MMIO hole (LAPIC)", memop(XENMEM_populate_physmap, &one, 1, 0, 0,
                                           DOMID_SELF), cur);
    if (page_at(populated)[0] != MARKER)
        xtest_fail("a refused request changed gfn %#lx", (unsigned long)populated);
}

/* RAM above the guest's memory up to its maximum; one page more is refused. */
static void up_to_maximum(long cur)
{
    long max = reservation(XENMEM_maximum_reservation);
    if (max - cur > MAX_PAGES || FAR_GFN <= ram_top())
        xtest_fail("maximum %ld, current %ld: run with maxmem at most 4 MiB over memory",
                   max, cur);
    unsigned room = (unsigned)(max - cur);
    if (room)
        take_again(FAR_GFN, room);
    expect_count("at the maximum", max);
    xen_pfn_t one = FAR_GFN + room;
    refused("past the maximum", memop(XENMEM_populate_physmap, &one, 1, 0, 0, DOMID_SELF), max);
    if (room)
        give_back(FAR_GFN, room);
    expect_count("back from the maximum", cur);
    printf("xkvm-guest: balloon: %u pages up to the maximum (%ld) and back\n", room, max);
}

static void test_balloon(void)
{
    XTEST_NEED_XEN();
    int rc = xenbus_init();
    bool hold = cmdline_get_u64("hold", 0);
    if (rc && hold)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    unsigned n = (unsigned)cmdline_get_u64("pages", 320);
    uint64_t top = ram_top();
    if (n == 0 || n > MAX_PAGES || top < 2 * n + 256)
        xtest_fail("pages=%u: 1 to %u, and RAM for it", n, MAX_PAGES);
    uint64_t a = top - 64 - n, kept = a - 8, quad = (a - 16) & ~3ULL;
    /* Mapped over RAM gfns, shared_info and the grant frame give those pages back. */
    if (!(gt = gnttab_init()))
        xtest_fail("no grant table");
    long cur0 = current();
    page_at(kept)[0] = MARKER;
    /* What a dom0 service that maps this page before it is given back must still read. */
    memcpy((void *)page_at(a), "balloon-page", 13);

    phase("ready", 1, hold);
    give_back(a, n);
    expect_count("after giving back", cur0 - n);
    phase("out", 2, hold);
    hostile(a, kept, cur0 - n);
    take_again(a, n);
    expect_count("after taking back", cur0);
    phase("in", 3, hold);

    up_to_maximum(cur0);
    xen_pfn_t q = quad;
    if (memop(XENMEM_decrease_reservation, &q, 1, 2, 0, DOMID_SELF) != 1 || hv_can_write(quad + 3))
        xtest_fail("order-2 extent at %#lx not given back", (unsigned long)quad);
    expect_count("order 2 given back", cur0 - 4);
    if (memop(XENMEM_populate_physmap, &q, 1, 2, 0, DOMID_SELF) != 1 || !hv_can_write(quad + 3))
        xtest_fail("order-2 extent at %#lx not taken back", (unsigned long)quad);
    expect_count("order 2 taken back", cur0);

    /* increase_reservation: frames without a gfn, counted; the maximum then binds. */
    long max = reservation(XENMEM_maximum_reservation);
    give_back(a, 1);
    unsigned more = (unsigned)(max - cur0) + 1;
    long got = memop(XENMEM_increase_reservation, NULL, more, 0, 0, DOMID_SELF);
    if (got != (long)more)
        xtest_fail("increase_reservation of %u pages: %ld", more, got);
    expect_count("after increase_reservation", max);
    xen_pfn_t one = a;
    refused("populate after increase_reservation took the maximum",
            memop(XENMEM_populate_physmap, &one, 1, 0, 0, DOMID_SELF), max);
    refused("increase_reservation past the maximum",
            memop(XENMEM_increase_reservation, NULL, 1, 0, 0, DOMID_SELF), max);
    if (page_at(kept)[0] != MARKER)
        xtest_fail("a page the guest kept lost its contents");
    printf("xkvm-guest: balloon: %u pages out and in, maximum %ld, current %ld\n", n, max,
           current());
}
XTEST("balloon", test_balloon);

/* Pages the guest holds get take_again's marks, so that check_moved can check them. */
static void take_again_marks(uint64_t first, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        page_at(first + i)[0] = MARKER ^ (first + i);
}

static void check_moved(const char *when, uint64_t hole, unsigned n, uint64_t kept,
                        unsigned nk, long want)
{
    expect_count(when, want);
    for (unsigned i = 0; i < n; i++)
        if (hv_can_write(hole + i))
            xtest_fail("%s: gfn %#lx, given back, is memory again", when,
                       (unsigned long)(hole + i));
    for (unsigned i = 0; i < nk; i++)
        if (page_at(kept + i)[0] != (MARKER ^ (kept + i)))
            xtest_fail("%s: gfn %#lx lost its contents", when, (unsigned long)(kept + i));
}

static void test_balloon_move(void)
{
    XTEST_NEED_XEN();
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    unsigned n = (unsigned)cmdline_get_u64("pages", 256);
    uint64_t top = ram_top();
    if (n == 0 || n > MAX_PAGES || top < 2 * n + 256)
        xtest_fail("pages=%u: 1 to %u, and RAM for it", n, MAX_PAGES);
    uint64_t a = top - 64 - n, b = a - n;
    /* RAM above the memory map, up to maxmem: it must move too. */
    long room = reservation(XENMEM_maximum_reservation) - current();
    unsigned far = room > 16 ? 16 : room > 0 ? (unsigned)room : 0;
    if (far)
        take_again(FAR_GFN, far);
    long cur0 = current();
    for (unsigned i = 0; i < n; i++)
        page_at(b + i)[0] = MARKER ^ (b + i);

    churn_gfn = b - 64;
    churn_pages = 32;
    take_again_marks(churn_gfn, churn_pages);
    give_back(a, n);
    phase("out1", 1, true);
    check_moved("after the first move", a, n, b, n, cur0 - n);
    check_moved("churned", a, 0, churn_gfn, churn_pages, cur0 - n);
    check_moved("above memory", a, 0, FAR_GFN, far, cur0 - n);
    printf("xkvm-guest: balloon-move: %u rounds of %u pages out and in across the move\n",
           churn_rounds, churn_pages);
    churn_pages = 0;
    take_again(a, n);
    give_back(b, n);
    phase("out2", 2, true);
    check_moved("after the second move", b, n, a, n, cur0 - n);
    check_moved("above memory, again", b, 0, FAR_GFN, far, cur0 - n);
    take_again(b, n);
    expect_count("all back", cur0);
    phase("in2", 3, true);
}
XTEST("balloon-move", test_balloon_move);

/*
 * balloon-big: ballooning at a Linux balloon driver's scale (tests/kvm/balloon.sh
 * "big-*"). `pages=` (default 16384: 64 MiB) given back in batches of 512, each batch
 * a page list in falling gfn order as Linux's driver hands them over, then a few
 * checks: the count, holes the hypervisor no longer reaches, a given-back page reading
 * as zeros. Taken back in batches (populate_physmap, 512 at a time), given back again,
 * across a migration and a live update (phases out1, in1/out2, in2 as balloon-move),
 * then the fragmentation attack: every other page of a region given back in one
 * request must stop at the p2m's mapping budget with the count done (Xen's partial
 * answer), leaving the pages not given back intact; they all come back afterwards.
 * Last, populate_physmap over a page the guest holds (run with maxmem a page or more
 * over memory): as on Xen, a fresh zero page takes its place and the old one stays
 * counted; over shared_info it is refused.
 */
#define BIG_BATCH 512
#define FRAG_PAGES 8192         /* every other one of 2 * FRAG_PAGES pages */

static xen_pfn_t big_list[FRAG_PAGES];

/* Give back [first, first + n) in batches of 512, falling gfns; every batch whole. */
static void big_give_back(uint64_t first, unsigned n)
{
    for (unsigned done = 0; done < n;) {
        unsigned k = n - done < BIG_BATCH ? n - done : BIG_BATCH;
        for (unsigned i = 0; i < k; i++)
            big_list[i] = first + n - 1 - done - i;
        long rc = memop(XENMEM_decrease_reservation, big_list, k, 0, 0, DOMID_SELF);
        if (rc != (long)k)
            xtest_fail("decrease_reservation batch at %#lx: %ld of %u",
                       (unsigned long)big_list[0], rc, k);
        done += k;
    }
}

/* Take [first, first + n) again in batches of 512 (Linux: populate_physmap). */
static void big_take_again(uint64_t first, unsigned n)
{
    for (unsigned done = 0; done < n;) {
        unsigned k = n - done < BIG_BATCH ? n - done : BIG_BATCH;
        for (unsigned i = 0; i < k; i++)
            big_list[i] = first + done + i;
        long rc = memop(XENMEM_populate_physmap, big_list, k, 0, 0, DOMID_SELF);
        if (rc != (long)k)
            xtest_fail("populate_physmap batch at %#lx: %ld of %u",
                       (unsigned long)big_list[0], rc, k);
        done += k;
    }
}

/* A hole: out of the hypervisor's reach, and reading as zeros. */
static void big_check_hole(const char *when, uint64_t gfn)
{
    if (hv_can_write(gfn))
        xtest_fail("%s: gfn %#lx, given back, is memory again", when, (unsigned long)gfn);
    volatile uint64_t *p = page_at(gfn);
    if (p[0] || p[300] || p[511])
        xtest_fail("%s: gfn %#lx, given back, reads %#lx, not 0", when, (unsigned long)gfn,
                   (unsigned long)p[0]);
}

/* Every 97th page and the last one. */
static void big_check_holes(const char *when, uint64_t first, unsigned n)
{
    for (unsigned i = 0; i < n; i += 97)
        big_check_hole(when, first + i);
    big_check_hole(when, first + n - 1);
}

/* Pages held: zero where fresh (taken again) or marked; writable; the hypervisor's. */
static void big_check_pages(const char *when, uint64_t first, unsigned n, bool marked)
{
    for (unsigned i = 0; i < n; i += 89) {
        volatile uint64_t *p = page_at(first + i);
        uint64_t want = marked ? MARKER ^ (first + i) : 0;
        if (p[0] != want || p[511])
            xtest_fail("%s: gfn %#lx holds %#lx, want %#lx", when,
                       (unsigned long)(first + i), (unsigned long)p[0], (unsigned long)want);
        p[0] = MARKER ^ (first + i);
        if (p[0] != (MARKER ^ (first + i)) || !hv_can_write(first + i))
            xtest_fail("%s: gfn %#lx is not the guest's memory", when,
                       (unsigned long)(first + i));
        memset((void *)p, 0, 4096);
        p[0] = MARKER ^ (first + i);
    }
}

/*
 * The fragmentation attack: every other page of [first, first + 2 * FRAG_PAGES) in one
 * request. Each such hole costs two breaks of the mapping budget, so the request stops
 * with the count done; that many pages are gone, the rest intact. Returns the count.
 */
static long frag_attack(uint64_t first, long cur)
{
    for (unsigned i = 0; i < FRAG_PAGES; i++) {
        big_list[i] = first + 2 * i;
        page_at(first + 2 * i)[0] = MARKER ^ (first + 2 * i);
        page_at(first + 2 * i + 1)[0] = MARKER ^ (first + 2 * i + 1);
    }
    long done = memop(XENMEM_decrease_reservation, big_list, FRAG_PAGES, 0, 0, DOMID_SELF);
    if (done <= 0 || done >= FRAG_PAGES)
        xtest_fail("fragmenting decrease of %u pages answered %ld: no limit hit", FRAG_PAGES,
                   done);
    expect_count("after the fragmenting decrease", cur - done);
    for (unsigned i = 0; i < FRAG_PAGES; i++) {
        uint64_t g = first + 2 * i;
        bool gone = i < done;
        /* The contents first: hv_can_write writes the page. */
        if ((!gone && page_at(g)[0] != (MARKER ^ g)) || page_at(g + 1)[0] != (MARKER ^ (g + 1)) ||
            hv_can_write(g) == gone)
            xtest_fail("fragmenting decrease: gfn %#lx %s", (unsigned long)g,
                       gone ? "still memory" : "lost its contents");
    }
    /* A second try gets nowhere: the budget is what it was. */
    xen_pfn_t one = first + 2 * done;
    refused("one more fragmenting page", memop(XENMEM_decrease_reservation, &one, 1, 0, 0,
                                               DOMID_SELF), cur - done);
    for (long i = 0; i < done; i++)
        big_list[i] = first + 2 * i;
    long back = memop(XENMEM_populate_physmap, big_list, (unsigned long)done, 0, 0, DOMID_SELF);
    if (back != done)
        xtest_fail("the fragmented pages taken back: %ld of %ld", back, done);
    expect_count("after the fragmented pages came back", cur);
    return done;
}

/* A populate over a page the guest holds replaces it (Xen's p2m_add_page). */
static void populate_over_page(uint64_t gfn, long cur)
{
    page_at(gfn)[0] = MARKER;
    xen_pfn_t one = gfn;
    long rc = memop(XENMEM_populate_physmap, &one, 1, 0, 0, DOMID_SELF);
    if (rc != 1 || page_at(gfn)[0] != 0 || !hv_can_write(gfn))
        xtest_fail("populate over held gfn %#lx: %ld, reads %#lx (want 1, a fresh page)",
                   (unsigned long)gfn, rc, (unsigned long)page_at(gfn)[0]);
    expect_count("after a populate over a held page", cur + 1);
    one = (uintptr_t)shinfo >> 12;
    refused("populate over shared_info", memop(XENMEM_populate_physmap, &one, 1, 0, 0,
                                               DOMID_SELF), cur + 1);
}

static void test_balloon_big(void)
{
    XTEST_NEED_XEN();
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    unsigned n = (unsigned)cmdline_get_u64("pages", 16384);
    uint64_t top = ram_top();
    if (n == 0 || top < (uint64_t)n + 2 * FRAG_PAGES + 8192)
        xtest_fail("pages=%u: RAM for it and the fragmentation region", n);
    uint64_t a = top - 64 - n, frag = a - 2 * FRAG_PAGES - 64;
    long cur0 = current();

    phase("ready", 1, true);
    big_give_back(a, n);
    expect_count("given back", cur0 - n);
    big_check_holes("given back", a, n);
    phase("out1", 2, true);         /* the host counts its frames, then migrates */
    expect_count("after the move", cur0 - n);
    big_check_holes("after the move", a, n);
    big_take_again(a, n);
    expect_count("taken back", cur0);
    big_check_pages("taken back", a, n, false);
    phase("in1", 3, true);
    big_give_back(a, n);
    big_check_holes("given back again", a, n);
    phase("out2", 4, true);         /* the host live-updates xkvmd */
    expect_count("after the live update", cur0 - n);
    big_check_holes("after the live update", a, n);
    big_take_again(a, n);
    expect_count("taken back again", cur0);
    big_check_pages("taken back again", a, n, false);
    phase("in2", 5, true);
    long done = frag_attack(frag, cur0);
    populate_over_page(frag, cur0);
    printf("xkvm-guest: balloon-big: %u pages out and in twice in batches of %u; the "
           "fragmenting decrease stopped at %ld of %u pages\n", n, BIG_BATCH, done, FRAG_PAGES);
}
XTEST("balloon-big", test_balloon_big);
