/*
 * gntmap: grant mapping between two guests (GNTTABOP_map_grant_ref/unmap_grant_ref with
 * host_addr a gpa, docs/hypervisor.md "Grant mapping between guests"). The host relays
 * the refs (tests/kvm/gntmap.sh) and says when to go on through data/gntmap-go.
 *   role=granter peer=M other=O
 *       grants page A writable and page B read-only to M, page C to O, prints
 *       "xtest: gntmap: refs rw=R ro=R other=R", waits for go >= 1, then checks that A
 *       holds what M wrote, B is as it was, and no entry is left GTF_reading/writing.
 *   role=mapper peer=G rw=R ro=R other=R [hold=1] [write_ro=1]
 *       the hostile maps first (each with Xen's GNTST code), then maps A writable and B
 *       read-only over two pages of its RAM, checks them, writes A, prints "xtest:
 *       gntmap: mapped"; with hold=1 waits for go >= 1 (the host may destroy G
 *       meanwhile) and checks both pages again; then unmaps, and the bad unmaps. B is
 *       also mapped read-only above RAM, read, written (dropped) and unmapped. With
 *       write_ro=1 it writes B where it is mapped in RAM: it must crash.
 */
#include "../pv.h"
#include "../xtest.h"

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t page_c[4096] __attribute__((aligned(4096)));
/* Where the mapper maps A and B: RAM given over to the mappings (holes after unmap). */
static uint8_t win_a[4096] __attribute__((aligned(4096)));
static uint8_t win_b[4096] __attribute__((aligned(4096)));

static uint8_t pat_a(unsigned i) { return (uint8_t)(i * 13 + 0x21 + (i >> 8)); }
static uint8_t pat_b(unsigned i) { return (uint8_t)(i * 5 + 0x93); }
static uint8_t pat_back(unsigned i) { return (uint8_t)(i * 3 + 0x44 + (i >> 9)); }

static uint64_t gpa_of(const void *p)
{
    return (uint64_t)(uintptr_t)p & ~0xfffull;
}

static void wait_go(void)
{
    xs_watch("data/gntmap-go", "go", NULL, NULL);
    for (;;) {
        uint64_t go = 0;
        if (xs_read_u64(0, "data/gntmap-go", &go) >= 0 && go >= 1)
            break;
        struct xs_watch_event ev;
        xs_watch_next("go", &ev, 1000);
    }
    xs_unwatch("data/gntmap-go", "go");
}

static void grant(grant_entry_v1_t *gt, grant_ref_t ref, void *page, domid_t to, uint16_t flags)
{
    gt[ref].frame = (uint32_t)(gpa_of(page) >> 12);
    gt[ref].domid = to;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&gt[ref].flags, flags, __ATOMIC_SEQ_CST);
}

static void granter(domid_t peer, domid_t other)
{
    grant_entry_v1_t *gt = gnttab_init();
    if (!gt)
        xtest_fail("grant table set-up failed (see above)");
    for (unsigned i = 0; i < PAGE_SIZE; i++) {
        page_a[i] = pat_a(i);
        page_b[i] = pat_b(i);
        page_c[i] = 0x77;
    }
    const grant_ref_t rw = GNTTAB_NR_RESERVED_ENTRIES, ro = rw + 1, oth = rw + 2;
    grant(gt, rw, page_a, peer, GTF_permit_access);
    grant(gt, ro, page_b, peer, GTF_permit_access | GTF_readonly);
    grant(gt, oth, page_c, other, GTF_permit_access);
    printf("xtest: gntmap: refs rw=%u ro=%u other=%u\n", rw, ro, oth);
    wait_go();
    for (unsigned i = 0; i < PAGE_SIZE; i++) {
        if (__atomic_load_n(&page_a[i], __ATOMIC_RELAXED) != pat_back(i))
            xtest_fail("page A at %u is %#x: the mapper's write (%#x) did not arrive", i,
                       page_a[i], pat_back(i));
        if (page_b[i] != pat_b(i))
            xtest_fail("read-only page B changed at offset %u", i);
    }
    for (grant_ref_t r = rw; r <= oth; r++) {
        uint16_t f = __atomic_load_n(&gt[r].flags, __ATOMIC_SEQ_CST);
        if (f & (GTF_reading | GTF_writing))
            xtest_fail("entry %u still has flags %#x after the unmap", r, f);
    }
    printf("xkvm-guest: gntmap: granter: the mapper's data arrived, entries released\n");
}

static unsigned failures;

static int16_t map1(domid_t dom, grant_ref_t ref, uint64_t host_addr, uint32_t flags,
                    grant_handle_t *handle)
{
    struct gnttab_map_grant_ref op = { .host_addr = host_addr, .flags = flags, .ref = ref,
                                       .dom = dom, .status = 0x7fff, .handle = ~0u };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);
    if (rc)
        xtest_fail("map_grant_ref returned %ld (want 0 and a status)", rc);
    if (handle)
        *handle = op.handle;
    return op.status;
}

static int16_t unmap1(grant_handle_t handle, uint64_t host_addr)
{
    struct gnttab_unmap_grant_ref op = { .host_addr = host_addr, .handle = handle,
                                         .status = 0x7fff };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &op, 1);
    if (rc)
        xtest_fail("unmap_grant_ref returned %ld (want 0 and a status)", rc);
    return op.status;
}

static void expect(const char *what, int16_t got, int16_t want)
{
    printf("xkvm-guest: gntmap: %-40s status %d%s\n", what, got,
           got == want ? "" : "  (WRONG)");
    if (got != want)
        failures++;
}

static void hostile_maps(domid_t peer, grant_ref_t rw, grant_ref_t ro, grant_ref_t oth,
                         uint64_t gnttab_gpa)
{
    const uint32_t host = GNTMAP_host_map;
    uint64_t a = gpa_of(win_a);
    expect("no host_map nor device_map", map1(peer, rw, a, 0, NULL), GNTST_bad_gntref);
    expect("device_map (none for HVM)", map1(peer, rw, a, host | GNTMAP_device_map, NULL),
           GNTST_general_error);
    expect("contains_pte", map1(peer, rw, a, host | GNTMAP_contains_pte, NULL),
           GNTST_general_error);
    expect("bad domain (4000)", map1(4000, rw, a, host, NULL), GNTST_bad_domain);
    expect("bad ref (0xfffff)", map1(peer, 0xfffff, a, host, NULL), GNTST_bad_gntref);
    expect("the ref, of my own table", map1(DOMID_SELF, rw, a, host, NULL),
           GNTST_general_error);
    expect("a grant to another domain", map1(peer, oth, a, host, NULL), GNTST_general_error);
    expect("read-only grant mapped writable", map1(peer, ro, a, host, NULL),
           GNTST_general_error);
    expect("host_addr beyond the physmap", map1(peer, rw, 1ull << 46, host, NULL),
           GNTST_general_error);
    expect("host_addr in the MMIO hole (LAPIC)", map1(peer, rw, 0xfee00000ull, host, NULL),
           GNTST_general_error);
    expect("host_addr over shared_info", map1(peer, rw, gpa_of(shinfo), host, NULL),
           GNTST_general_error);
    expect("host_addr over my grant table", map1(peer, rw, gnttab_gpa, host, NULL),
           GNTST_general_error);
    expect("unmap of a bad handle", unmap1(12345, 0), GNTST_bad_handle);
}

static void check_pages(const char *when)
{
    for (unsigned i = 0; i < PAGE_SIZE; i++) {
        if (__atomic_load_n(&win_a[i], __ATOMIC_RELAXED) != pat_back(i))
            xtest_fail("%s: mapped page A at %u is %#x, want %#x", when, i, win_a[i],
                       pat_back(i));
        if (__atomic_load_n(&win_b[i], __ATOMIC_RELAXED) != pat_b(i))
            xtest_fail("%s: mapped page B at %u is %#x, want %#x", when, i, win_b[i],
                       pat_b(i));
    }
}

/*
 * B read-only once more, above RAM (identity-mapped, outside every memslot: a
 * KVM_MEM_READONLY slot of its own): readable, and a write is dropped.
 */
#define OUTSIDE_RAM_GPA 0x6000000ull        /* 96 MiB: above a 32 MiB guest's RAM */
static void ro_outside_ram(domid_t peer, grant_ref_t ro)
{
    grant_handle_t h;
    int16_t s = map1(peer, ro, OUTSIDE_RAM_GPA, GNTMAP_host_map | GNTMAP_readonly, &h);
    if (s != GNTST_okay)
        xtest_fail("read-only map above RAM = status %d", s);
    volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)OUTSIDE_RAM_GPA;
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        if (p[i] != pat_b(i))
            xtest_fail("read-only map above RAM: %u is %#x, want %#x", i, p[i], pat_b(i));
    p[100] = (uint8_t)~pat_b(100);
    if (p[100] != pat_b(100))
        xtest_fail("a write to the read-only map above RAM went through");
    expect("unmap of the read-only map above RAM", unmap1(h, OUTSIDE_RAM_GPA), GNTST_okay);
    printf("xkvm-guest: gntmap: read-only above RAM: read right, write dropped\n");
}

static void mapper(domid_t peer)
{
    if (!cmdline_get("rw", NULL, 0) || !cmdline_get("ro", NULL, 0) ||
        !cmdline_get("other", NULL, 0))
        xtest_fail("mapper needs rw=R ro=R other=R");
    grant_ref_t rw = (grant_ref_t)cmdline_get_u64("rw", 0);
    grant_ref_t ro = (grant_ref_t)cmdline_get_u64("ro", 0);
    grant_ref_t oth = (grant_ref_t)cmdline_get_u64("other", 0);
    grant_entry_v1_t *own = gnttab_init();
    if (!own)
        xtest_fail("grant table set-up failed (see above)");
    memset(win_a, 0xee, PAGE_SIZE);     /* RAM the mappings replace */
    memset(win_b, 0xee, PAGE_SIZE);
    hostile_maps(peer, rw, ro, oth, gpa_of(own));

    grant_handle_t ha, hb, h;
    int16_t s = map1(peer, rw, gpa_of(win_a), GNTMAP_host_map, &ha);
    if (s != GNTST_okay)
        xtest_fail("map of (d%u, ref %u) writable = status %d", peer, rw, s);
    s = map1(peer, ro, gpa_of(win_b), GNTMAP_host_map | GNTMAP_readonly, &hb);
    if (s != GNTST_okay)
        xtest_fail("read-only map of (d%u, ref %u) = status %d", peer, ro, s);
    for (unsigned i = 0; i < PAGE_SIZE; i++) {
        if (win_a[i] != pat_a(i) || win_b[i] != pat_b(i))
            xtest_fail("mapped pages differ at %u: A %#x (want %#x), B %#x (want %#x)", i,
                       win_a[i], pat_a(i), win_b[i], pat_b(i));
    }
    printf("xkvm-guest: gntmap: mapped d%u's pages: handles %u %u, content right\n", peer,
           ha, hb);
    /* With both mapped: nothing may be mapped over a mapping, nor unmapped elsewhere. */
    expect("a map over a mapped gfn", map1(peer, rw, gpa_of(win_b), GNTMAP_host_map, &h),
           GNTST_general_error);
    expect("unmap with another host_addr", unmap1(ha, gpa_of(win_b)), GNTST_general_error);
    ro_outside_ram(peer, ro);
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        __atomic_store_n(&win_a[i], pat_back(i), __ATOMIC_RELAXED);
    printf("xtest: gntmap: mapped\n");
    if (cmdline_get_u64("write_ro", 0)) {
        /* Inside a RAM memslot the page is read-only to KVM: this write kills us. */
        printf("xtest: gntmap: writing the read-only mapping\n");
        __atomic_store_n(&win_b[8], 0x5a, __ATOMIC_SEQ_CST);
        xtest_fail("a write to a read-only grant mapping in RAM went through (%#x)", win_b[8]);
    }
    if (cmdline_get_u64("hold", 0)) {
        wait_go();
        check_pages("after the hold");
        printf("xkvm-guest: gntmap: both pages still right after the hold\n");
    }
    expect("unmap A", unmap1(ha, gpa_of(win_a)), GNTST_okay);
    expect("unmap B (host_addr 0: by handle)", unmap1(hb, 0), GNTST_okay);
    expect("unmap A again", unmap1(ha, gpa_of(win_a)), GNTST_bad_handle);
    if (failures)
        xtest_fail("%u grant map case(s) gave the wrong status", failures);
}

static void test_gntmap(void)
{
    char role[16] = "";
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    cmdline_get("role", role, sizeof(role));
    if (!cmdline_get("peer", NULL, 0))
        xtest_fail("needs peer=DOMID");
    domid_t peer = (domid_t)cmdline_get_u64("peer", 0);
    if (!strcmp(role, "granter"))
        granter(peer, (domid_t)cmdline_get_u64("other", 0x7fef));
    else if (!strcmp(role, "mapper"))
        mapper(peer);
    else
        xtest_fail("role=%s: want granter or mapper", role);
}
XTEST("gntmap", test_gntmap);
