/*
 * gnttab: grant table v1 hypercalls and Xen's answers to a domU: sizes, versions,
 * setup_table, and GNTTABOP_copy between grants and frames of the guest itself,
 * with every per-op status Xen gives (bad domain, bad ref, bad page, read-only or
 * foreign grants, copies crossing the page) and a batch long enough to need
 * continuations.
 */
#include <xen/arch-x86/cpuid.h>

#include "../pv.h"
#include "../xtest.h"

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t gnttab_frame1[4096] __attribute__((aligned(4096)));
static struct gnttab_copy ops[200];

static uint16_t my_domid(void)
{
    uint32_t a, b, c, d;
    cpuid(xen.base + 4, &a, &b, &c, &d);
    if (!(a & XEN_HVM_CPUID_DOMID_PRESENT))
        xtest_fail("no domid in CPUID leaf %#x", xen.base + 4);
    return (uint16_t)c;
}

static xen_pfn_t gfn_of(void *p)
{
    return (xen_pfn_t)((uintptr_t)p >> 12);
}

static void grant(grant_entry_v1_t *gt, unsigned ref, void *page, domid_t dom, uint16_t ro)
{
    gt[ref].frame = (uint32_t)gfn_of(page);
    gt[ref].domid = dom;
    __atomic_store_n(&gt[ref].flags, (uint16_t)(GTF_permit_access | ro), __ATOMIC_RELEASE);
}

/* One copy; returns its status (the hypercall itself must succeed). */
static int16_t copy1(struct gnttab_copy *op)
{
    op->status = 0x7777;
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, op, 1);
    if (rc)
        xtest_fail("GNTTABOP_copy = %ld", rc);
    return op->status;
}

static void expect_status(const char *what, int16_t got, int16_t want)
{
    if (got != want)
        xtest_fail("%s: status %d, want %d", what, got, want);
    printf("xkvm-guest: gnttab: %s: status %d\n", what, got);
}

static void test_gnttab(void)
{
    XTEST_NEED_XEN();
    uint16_t self = my_domid();

    /* Versions: 1 at boot (v2 is tests/gnttab_v2.c's); 3 does not exist. */
    struct gnttab_get_version gv = { .dom = DOMID_SELF };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &gv, 1);
    if (rc || gv.version != 1)
        xtest_fail("get_version = %ld, version %u", rc, gv.version);
    struct gnttab_set_version sv = { .version = 1 };
    rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &sv, 1);
    if (rc || sv.version != 1)
        xtest_fail("set_version(1) = %ld, version %u", rc, sv.version);
    sv.version = 3;
    if ((rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &sv, 1)) != -XEN_EINVAL)
        xtest_fail("set_version(3) = %ld", rc);
    gv.dom = 0x7000;
    if ((rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &gv, 1)) != -XEN_ESRCH)
        xtest_fail("get_version(d0x7000) = %ld", rc);
    if ((rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, &gv, 2)) != -XEN_EINVAL)
        xtest_fail("query_size with count 2 = %ld", rc);
    /* map_grant_ref (tests/kvm/gntmap.sh tests it): no operations, nothing done, 0. */
    if ((rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &gv, 0)) != 0)
        xtest_fail("map_grant_ref with count 0 = %ld", rc);

    struct gnttab_query_size q = { .dom = 0x7000 };
    HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);
    expect_status("query_size of no domain", q.status, GNTST_bad_domain);

    grant_entry_v1_t *gt = gnttab_init();
    if (!gt)
        xtest_fail("grant table set-up failed");

    /* setup_table: grows on demand, answers gfns (~0 where unmapped), max 64. */
    xen_pfn_t frames[2] = { 0, 0 };
    struct gnttab_setup_table st = { .dom = DOMID_SELF, .nr_frames = 2 };
    set_xen_guest_handle(st.frame_list, frames);
    rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &st, 1);
    if (rc || st.status != GNTST_okay || frames[0] != gfn_of(gt) || frames[1] != ~0UL)
        xtest_fail("setup_table(2) = %ld, status %d, frames %#lx %#lx", rc, st.status,
                   frames[0], frames[1]);
    struct xen_add_to_physmap x = { .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table,
                                    .idx = 1, .gpfn = gfn_of(gnttab_frame1) };
    if ((rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x)))
        xtest_fail("add_to_physmap(grant_table 1) = %ld", rc);
    q.dom = DOMID_SELF;
    HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);
    if (q.status || q.nr_frames != 2 || q.max_nr_frames != 64)
        xtest_fail("query_size: status %d, %u of %u frames", q.status, q.nr_frames,
                   q.max_nr_frames);
    st.nr_frames = 65;
    HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &st, 1);
    expect_status("setup_table(65)", st.status, GNTST_general_error);
    x.idx = 64;
    if ((rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x)) != -XEN_EINVAL)
        xtest_fail("add_to_physmap(grant_table 64) = %ld", rc);

    /* Copies. Ref 8: page A to us; 9: page B read-only to us; 10: page A to dom0. */
    for (unsigned i = 0; i < 4096; i++)
        page_a[i] = (uint8_t)(i * 7 + 1);
    grant(gt, 8, page_a, self, 0);
    grant(gt, 9, page_b, self, GTF_readonly);
    grant(gt, 10, page_a, 0, 0);
    grant((grant_entry_v1_t *)gnttab_frame1 - 512, 600, page_b, self, 0);  /* in frame 1 */

    struct gnttab_copy op = {
        .source = { .u.ref = 8, .domid = DOMID_SELF, .offset = 16 },
        .dest = { .u.gmfn = gfn_of(page_b), .domid = DOMID_SELF, .offset = 100 },
        .len = 1000, .flags = GNTCOPY_source_gref,
    };
    expect_status("copy gref -> gmfn", copy1(&op), GNTST_okay);
    if (memcmp(page_b + 100, page_a + 16, 1000) || page_b[99] || page_b[1100])
        xtest_fail("copy gref -> gmfn: wrong bytes");
    if (gt[8].flags & (GTF_reading | GTF_writing))
        xtest_fail("flags %#x left set after the copy", gt[8].flags);

    struct gnttab_copy o2 = op;
    o2.dest = (struct gnttab_copy_ptr){ .u.ref = 600, .domid = self, .offset = 0 };
    o2.flags = GNTCOPY_source_gref | GNTCOPY_dest_gref;
    expect_status("copy gref -> gref in frame 1", copy1(&o2), GNTST_okay);
    if (memcmp(page_b, page_a + 16, 1000))
        xtest_fail("copy gref -> gref: wrong bytes");

    o2 = op;
    o2.dest.domid = self;       /* our own frames by number: allowed since Xen 4.15 */
    expect_status("copy to own gmfn by domid", copy1(&o2), GNTST_okay);
    o2.dest.domid = 0x7000;
    expect_status("copy to gmfn of no domain", copy1(&o2), GNTST_bad_domain);
    o2 = op;
    o2.dest = (struct gnttab_copy_ptr){ .u.ref = 9, .domid = DOMID_SELF };
    o2.flags = GNTCOPY_source_gref | GNTCOPY_dest_gref;
    expect_status("copy into a read-only grant", copy1(&o2), GNTST_general_error);
    if (gt[9].flags != (GTF_permit_access | GTF_readonly))
        xtest_fail("read-only entry flags became %#x", gt[9].flags);
    o2 = op;
    o2.source.u.ref = 10;
    expect_status("copy from a grant for dom0", copy1(&o2), GNTST_general_error);
    o2.source.u.ref = 4096 * 2 / 8;
    expect_status("copy from a ref beyond the table", copy1(&o2), GNTST_bad_gntref);
    o2.source.u.ref = 8;
    o2.source.domid = 0x7000;
    expect_status("copy from a gref of no domain", copy1(&o2), GNTST_bad_domain);
    o2 = op;
    o2.dest.u.gmfn = 0xE0000;       /* the MMIO hole: nothing there */
    expect_status("copy to an unpopulated gmfn", copy1(&o2), GNTST_bad_page);
    o2 = op;
    o2.dest.offset = 4000;
    expect_status("copy across the page end", copy1(&o2), GNTST_bad_copy_arg);
    o2 = op;
    o2.len = 0;
    expect_status("copy of 0 bytes", copy1(&o2), GNTST_okay);

    /* A batch longer than xkvmd does at once: continuations, all done in order. */
    memset(page_b, 0, sizeof(page_b));
    for (unsigned i = 0; i < ARRAY_SIZE(ops); i++)
        ops[i] = (struct gnttab_copy){
            .source = { .u.ref = 8, .domid = DOMID_SELF, .offset = (uint16_t)(i * 20) },
            .dest = { .u.gmfn = gfn_of(page_b), .domid = DOMID_SELF,
                      .offset = (uint16_t)(i * 20) },
            .len = 20, .flags = GNTCOPY_source_gref, .status = 0x7777 };
    ops[150].source.u.ref = 9999;
    rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, ARRAY_SIZE(ops));
    if (rc)
        xtest_fail("copy of %u ops = %ld", (unsigned)ARRAY_SIZE(ops), rc);
    for (unsigned i = 0; i < ARRAY_SIZE(ops); i++) {
        int16_t want = i == 150 ? GNTST_bad_gntref : GNTST_okay;
        if (ops[i].status != want)
            xtest_fail("batch op %u: status %d, want %d", i, ops[i].status, want);
        if (i != 150 && memcmp(page_b + i * 20, page_a + i * 20, 20))
            xtest_fail("batch op %u: wrong bytes", i);
    }
    printf("xkvm-guest: gnttab: batch of %u copies done\n", (unsigned)ARRAY_SIZE(ops));

    rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, (void *)0x10, 1);
    if (rc != -XEN_EFAULT)
        xtest_fail("copy with a bad pointer = %ld", rc);
}
XTEST("gnttab", test_gnttab);
