/*
 * gnttab-v2: grant table version 2 as Xen 4.17 gives it to an HVM/PVH guest
 * (docs/hypervisor.md "Grant tables"): set_version and its refusals (-EINVAL, -EBUSY
 * while a grant is mapped), the reserved entries converted with their pins, status
 * frames placed with XENMAPSPACE_grant_table | XENMAPIDX_grant_table_status and listed
 * by get_status_frames, v2 entries used by grant copy and by map_grant_ref, with
 * GTF_reading/GTF_writing in the status frame, never in the entry. With hold=1 it stops
 * ("xtest: gnttab-v2: hold", data/gntv2-go >= 1 resumes), with ref 20 granted to dom0
 * for a dom0 service to map and write, for the host to save and restore, migrate or
 * live-update it, then checks the service's write and that the v2 state came back and
 * works.
 */
#include <xen/arch-x86/cpuid.h>

#include "../pv.h"
#include "../xtest.h"

static uint8_t v1_page[4096] __attribute__((aligned(4096)));   /* shared frame 0 */
static uint8_t status_page[4096] __attribute__((aligned(4096)));
static uint8_t status_page1[4096] __attribute__((aligned(4096)));
static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static char page_c[4096] __attribute__((aligned(4096)));   /* granted to dom0 (hold=1) */
/* RAM given over to a mapping of our own grant (a hole after each unmap). */
static uint8_t win[2][4096] __attribute__((aligned(4096)));

static grant_entry_v2_t *gt2;
static volatile grant_status_t *status;
static uint16_t self;

static uint64_t gfn_of(const void *p)
{
    return (uint64_t)(uintptr_t)p >> 12;
}

static long gnttab_op(unsigned cmd, void *op)
{
    return HYPERVISOR_grant_table_op(cmd, op, 1);
}

static long set_version(uint32_t v, uint32_t *now)
{
    struct gnttab_set_version sv = { .version = v };
    long rc = gnttab_op(GNTTABOP_set_version, &sv);
    *now = sv.version;
    return rc;
}

static uint32_t get_version(void)
{
    struct gnttab_get_version gv = { .dom = DOMID_SELF };
    long rc = gnttab_op(GNTTABOP_get_version, &gv);
    if (rc)
        xtest_fail("get_version = %ld", rc);
    return gv.version;
}

static long place(uint64_t idx, void *page)
{
    struct xen_add_to_physmap x = { .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table,
                                    .idx = idx, .gpfn = gfn_of(page) };
    return HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x);
}

/* get_status_frames for nr frames: the status, the first gfn in *gfn. */
static int16_t status_frames(uint32_t nr, uint64_t *gfn)
{
    uint64_t list[9] = { 0 };
    struct gnttab_get_status_frames op = { .nr_frames = nr, .dom = DOMID_SELF,
                                           .status = 0x7777 };
    set_xen_guest_handle(op.frame_list, list);
    long rc = gnttab_op(GNTTABOP_get_status_frames, &op);
    if (rc)
        xtest_fail("get_status_frames(%u) = %ld", nr, rc);
    if (gfn)
        *gfn = list[0];
    return op.status;
}

static void grant_v2(grant_ref_t ref, void *page, domid_t to, uint16_t extra)
{
    gt2[ref].full_page.frame = gfn_of(page);
    gt2[ref].hdr.domid = to;
    __atomic_store_n(&gt2[ref].hdr.flags, (uint16_t)(GTF_permit_access | extra),
                     __ATOMIC_RELEASE);
}

static int16_t copy_ref(grant_ref_t src, grant_ref_t dst, uint16_t len)
{
    struct gnttab_copy op = {
        .source = { .u.ref = src, .domid = DOMID_SELF },
        .dest = { .u.ref = dst, .domid = DOMID_SELF },
        .len = len, .flags = GNTCOPY_source_gref | GNTCOPY_dest_gref, .status = 0x7777 };
    long rc = gnttab_op(GNTTABOP_copy, &op);
    if (rc)
        xtest_fail("GNTTABOP_copy = %ld", rc);
    return op.status;
}

static int16_t map_own(grant_ref_t ref, void *at, grant_handle_t *h)
{
    struct gnttab_map_grant_ref op = { .host_addr = (uint64_t)(uintptr_t)at,
                                       .flags = GNTMAP_host_map, .ref = ref, .dom = self,
                                       .status = 0x7777 };
    long rc = gnttab_op(GNTTABOP_map_grant_ref, &op);
    if (rc)
        xtest_fail("map_grant_ref = %ld", rc);
    *h = op.handle;
    return op.status;
}

static void unmap_own(grant_handle_t h, void *at)
{
    struct gnttab_unmap_grant_ref op = { .host_addr = (uint64_t)(uintptr_t)at, .handle = h,
                                         .status = 0x7777 };
    long rc = gnttab_op(GNTTABOP_unmap_grant_ref, &op);
    if (rc || op.status != GNTST_okay)
        xtest_fail("unmap_grant_ref = %ld, status %d", rc, op.status);
}

static void expect_eq(const char *what, long got, long want)
{
    if (got != want)
        xtest_fail("%s: %ld, want %ld", what, got, want);
    printf("xkvm-guest: gnttab-v2: %-44s %ld\n", what, got);
}

/* Version 1 answers, then the switch with entry 2 mapped (a reserved entry: allowed). */
static grant_handle_t switch_to_v2(void)
{
    uint32_t now;
    expect_eq("set_version(3)", set_version(3, &now), -XEN_EINVAL);
    expect_eq("version after set_version(3)", now, 1);
    expect_eq("get_status_frames(1) in v1", status_frames(1, NULL), GNTST_general_error);
    expect_eq("get_status_frames(0) in v1", status_frames(0, NULL), GNTST_okay);
    expect_eq("status frame 0 placed in v1",
              place(0 | XENMAPIDX_grant_table_status, status_page), -XEN_EINVAL);
    grant_entry_v1_t *gt1 = (grant_entry_v1_t *)v1_page;
    expect_eq("shared frame 0 placed (v1)", place(0, v1_page), 0);
    for (grant_ref_t r = 1; r <= 2; r++) {
        gt1[r].frame = (uint32_t)gfn_of(page_a);
        gt1[r].domid = r == 1 ? 0 : self;
        __atomic_store_n(&gt1[r].flags, GTF_permit_access, __ATOMIC_RELEASE);
    }
    gt1[9] = (grant_entry_v1_t){ .flags = GTF_permit_access, .domid = self,
                                 .frame = (uint32_t)gfn_of(page_a) };
    grant_handle_t h9, h2;
    expect_eq("map of v1 entry 9", map_own(9, win[0], &h9), GNTST_okay);
    expect_eq("set_version(2) with entry 9 mapped", set_version(2, &now), -XEN_EBUSY);
    expect_eq("version after the refusal", now, 1);
    unmap_own(h9, win[0]);
    expect_eq("map of reserved v1 entry 2", map_own(2, win[1], &h2), GNTST_okay);
    expect_eq("set_version(2) with entry 2 mapped", set_version(2, &now), 0);
    expect_eq("version after set_version(2)", now, 2);
    expect_eq("get_version", get_version(), 2);
    return h2;
}

/* The v2 table as set up: frames placed, reserved entries converted, 9 cleared. */
static void check_v2_layout(void)
{
    gt2 = (grant_entry_v2_t *)v1_page;
    expect_eq("status frame 0 placed", place(0 | XENMAPIDX_grant_table_status, status_page), 0);
    status = (volatile grant_status_t *)status_page;
    uint64_t gfn = 0;
    expect_eq("get_status_frames(1)", status_frames(1, &gfn), GNTST_okay);
    expect_eq("status frame 0 gfn", (long)gfn, (long)gfn_of(status_page));
    expect_eq("get_status_frames(2) with 1 frame", status_frames(2, NULL), GNTST_general_error);
    expect_eq("get_status_frames(9)", status_frames(9, NULL), GNTST_general_error);
    expect_eq("status frame 8 placed (max 8)",
              place(8 | XENMAPIDX_grant_table_status, page_b), -XEN_EINVAL);
    /* Status frame 1 covers v2 entries 2048..4095: the table grows to 16 frames. */
    expect_eq("status frame 1 placed", place(1 | XENMAPIDX_grant_table_status, status_page1), 0);
    struct gnttab_query_size q = { .dom = DOMID_SELF };
    if (gnttab_op(GNTTABOP_query_size, &q) || q.status)
        xtest_fail("query_size: status %d", q.status);
    expect_eq("shared frames after status frame 1", q.nr_frames, 16);
    expect_eq("get_status_frames(2)", status_frames(2, NULL), GNTST_okay);
    expect_eq("get_status_frames(3)", status_frames(3, NULL), GNTST_general_error);
    expect_eq("entry 1 flags (converted)", gt2[1].hdr.flags, GTF_permit_access);
    expect_eq("entry 1 domid", gt2[1].hdr.domid, 0);
    expect_eq("entry 1 frame", (long)gt2[1].full_page.frame, (long)gfn_of(page_a));
    expect_eq("entry 2 flags (pinned, bits in status)", gt2[2].hdr.flags, GTF_permit_access);
    expect_eq("status 2 (mapped: reading|writing)", status[2], GTF_reading | GTF_writing);
    expect_eq("entry 9 cleared by the switch", gt2[9].hdr.flags, 0);
}

/* Copies and a map through v2 entries; the status frame shows the pins. */
static void use_v2(const char *when)
{
    for (unsigned i = 0; i < 4096; i++) {
        page_a[i] = (uint8_t)(i * 7 + 3);
        page_b[i] = 0;
    }
    grant_v2(10, page_a, self, GTF_readonly);
    grant_v2(11, page_b, self, 0);
    expect_eq("copy ref 10 -> ref 11 (v2 entries)", copy_ref(10, 11, 4096), GNTST_okay);
    if (memcmp(page_a, page_b, 4096))
        xtest_fail("%s: the copy through v2 grants moved the wrong bytes", when);
    expect_eq("status 10, 11 after the copy", status[10] | status[11], 0);
    expect_eq("copy into read-only ref 10", copy_ref(11, 10, 8), GNTST_general_error);
    grant_v2(12, page_b, self, GTF_sub_page);
    expect_eq("copy from a sub_page grant (refused)", copy_ref(12, 11, 8), GNTST_general_error);
    gt2[13].transitive.trans_domid = self;
    gt2[13].transitive.gref = 11;
    __atomic_store_n(&gt2[13].hdr.flags, GTF_transitive, __ATOMIC_RELEASE);
    gt2[13].hdr.domid = self;
    expect_eq("copy from a transitive grant (refused)", copy_ref(13, 10, 8), GNTST_general_error);
    expect_eq("copy from ref 4096 (beyond 16 v2 frames)", copy_ref(4096, 11, 8),
              GNTST_bad_gntref);

    grant_handle_t h;
    expect_eq("map of v2 entry 11", map_own(11, win[0], &h), GNTST_okay);
    expect_eq("status 11 while mapped", status[11], GTF_reading | GTF_writing);
    expect_eq("entry 11 flags while mapped", gt2[11].hdr.flags, GTF_permit_access);
    if (memcmp(win[0], page_a, 4096))
        xtest_fail("%s: the mapping of v2 entry 11 shows other bytes", when);
    uint32_t now;
    expect_eq("set_version(1) while entry 11 is mapped", set_version(1, &now), -XEN_EBUSY);
    expect_eq("version after the refusal", now, 2);
    unmap_own(h, win[0]);
    expect_eq("status 11 after the unmap", status[11], 0);
    printf("xkvm-guest: gnttab-v2: %s: v2 copies and maps work\n", when);
}

static void hold(void)
{
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    printf("xtest: gnttab-v2: hold\n");
    xs_watch("data/gntv2-go", "go", NULL, NULL);
    for (;;) {
        uint64_t go = 0;
        if (xs_read_u64(0, "data/gntv2-go", &go) >= 0 && go >= 1)
            break;
        struct xs_watch_event ev;
        xs_watch_next("go", &ev, 1000);
    }
    xs_unwatch("data/gntv2-go", "go");
}

static void test_gnttab_v2(void)
{
    XTEST_NEED_XEN();
    uint32_t a, b, c, d;
    cpuid(xen.base + 4, &a, &b, &c, &d);
    self = (uint16_t)c;
    expect_eq("get_version at boot", get_version(), 1);
    grant_handle_t h2 = switch_to_v2();
    check_v2_layout();
    unmap_own(h2, win[1]);
    expect_eq("status 2 after its unmap", status[2], 0);
    use_v2("before");
    if (cmdline_get_u64("hold", 0)) {
        /* For a dom0 service (xkvm-dom0-probe) to map and write while we hold. */
        memcpy(page_c, "gnttab-v2 to dom0", sizeof("gnttab-v2 to dom0"));
        grant_v2(20, page_c, 0, 0);
        hold();
        if (strcmp(page_c, "dom0-was-here"))
            xtest_fail("page granted to dom0 (v2 ref 20) holds '%.20s'", page_c);
        expect_eq("status 20 after dom0's unmap", status[20], 0);
        expect_eq("get_version after the move", get_version(), 2);
        uint64_t gfn = 0;
        expect_eq("get_status_frames(1) after the move", status_frames(1, &gfn), GNTST_okay);
        expect_eq("status frame 0 gfn after the move", (long)gfn, (long)gfn_of(status_page));
        expect_eq("entry 1 frame after the move", (long)gt2[1].full_page.frame,
                  (long)gfn_of(page_a));
        use_v2("after");
    }
    uint32_t now;
    expect_eq("set_version(1)", set_version(1, &now), 0);
    expect_eq("get_status_frames(1) back in v1", status_frames(1, NULL), GNTST_general_error);
    grant_entry_v1_t *gt1 = (grant_entry_v1_t *)v1_page;
    expect_eq("v1 entry 1 flags (converted back)", gt1[1].flags, GTF_permit_access);
    expect_eq("v1 entry 1 frame", gt1[1].frame, (long)gfn_of(page_a));
    expect_eq("v1 entry 11 cleared", gt1[11].flags, 0);
}
XTEST("gnttab-v2", test_gnttab_v2);
