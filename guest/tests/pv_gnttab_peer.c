/*
 * gnttab-peer: grant copy between two guests (the single-guest `gnttab` test in
 * pv_gnttab.c covers copies within one domain).
 *   role=granter peer=D   sets up grant table v1, grants a patterned page read-only to
 *                         D, prints "xtest: gnttab-peer: gref=R" and "xtest:
 *                         gnttab-peer: done-port=P" (an unbound port for D), waits for
 *                         the event on P, then checks its page and entry are intact.
 *   role=copier peer=G gref=R [done_port=P]
 *                         GNTTABOP_copy from (G, R) into its own page (by gmfn), checks
 *                         the content and the error statuses, then signals P.
 */
#include "../pv.h"
#include "../xtest.h"

static uint8_t gpage[4096] __attribute__((aligned(4096)));
static uint8_t cbuf[4096] __attribute__((aligned(4096)));

static uint8_t pattern(unsigned i)
{
    return (uint8_t)(i * 7 + 0x5a + (i >> 8));
}

static uint64_t gfn_of(const void *p)
{
    return (uint64_t)(uintptr_t)p >> 12;
}

static const char *gntst_name(int16_t s)
{
    switch (s) {
    case GNTST_okay: return "okay";
    case GNTST_general_error: return "general_error";
    case GNTST_bad_domain: return "bad_domain";
    case GNTST_bad_gntref: return "bad_gntref";
    case GNTST_bad_handle: return "bad_handle";
    case GNTST_bad_virt_addr: return "bad_virt_addr";
    case GNTST_permission_denied: return "permission_denied";
    case GNTST_bad_page: return "bad_page";
    case GNTST_bad_copy_arg: return "bad_copy_arg";
    case GNTST_address_too_big: return "address_too_big";
    case GNTST_eagain: return "eagain";
    default: return "?";
    }
}

static volatile uint64_t done_hits;

static void done_handler(uint32_t port, void *arg)
{
    done_hits++;
}

static void granter(domid_t peer)
{
    grant_entry_v1_t *gt = gnttab_init();
    if (!gt)
        xtest_fail("grant table set-up failed (see above)");

    for (unsigned i = 0; i < PAGE_SIZE; i++)
        gpage[i] = pattern(i);
    const grant_ref_t ref = GNTTAB_NR_RESERVED_ENTRIES;         /* first free entry */
    const uint16_t flags = GTF_permit_access | GTF_readonly;

    gt[ref].frame = (uint32_t)gfn_of(gpage);
    gt[ref].domid = peer;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);                     /* flags last */
    __atomic_store_n(&gt[ref].flags, flags, __ATOMIC_SEQ_CST);

    uint32_t port;
    long rc = evtchn_alloc_unbound(peer, &port);
    if (rc)
        xtest_fail("alloc_unbound(remote %u) = %ld", peer, rc);
    evtchn_attach(port, 0, done_handler, NULL);
    printf("xtest: gnttab-peer: gref=%u\n", ref);
    printf("xtest: gnttab-peer: done-port=%u\n", port);

    /* Until the copier says done (or we are destroyed); the watchdog bounds each wait. */
    while (!done_hits)
        wait_ge(&done_hits, 1, 60000);

    uint16_t f = __atomic_load_n(&gt[ref].flags, __ATOMIC_SEQ_CST);
    if (f != flags || gt[ref].domid != peer)
        xtest_fail("grant entry left changed: flags %#x domid %u (want %#x %u)", f,
                   gt[ref].domid, flags, peer);
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        if (gpage[i] != pattern(i))
            xtest_fail("granted read-only page modified at offset %u", i);
    /* End foreign access: nobody holds it, so just clear the flags. */
    __atomic_store_n(&gt[ref].flags, 0, __ATOMIC_SEQ_CST);
    printf("xkvm-guest: gnttab-peer: granter done, page and entry intact\n");
    evtchn_detach(port);
    evtchn_close(port);
}

static long copy1(struct gnttab_copy *op)
{
    op->status = 0x7fff;
    return HYPERVISOR_grant_table_op(GNTTABOP_copy, op, 1);
}

static unsigned failures;

static void expect_copy_status(const char *what, struct gnttab_copy *op, int16_t want,
                               int16_t alt)
{
    long rc = copy1(op);
    bool ok = rc == 0 && (op->status == want || (alt && op->status == alt));

    printf("xkvm-guest: gnttab-peer: %-34s rc %ld status %d (%s)%s\n", what, rc,
           op->status, gntst_name(op->status), ok ? "" : "  (WRONG)");
    if (!ok)
        failures++;
}

static void copier(domid_t peer)
{
    if (!cmdline_get("gref", NULL, 0))
        xtest_fail("copier needs gref=R");
    grant_ref_t ref = (grant_ref_t)cmdline_get_u64("gref", 0);

    /* The whole page. */
    struct gnttab_copy op = {
        .source = { .u.ref = ref, .domid = peer, .offset = 0 },
        .dest = { .u.gmfn = gfn_of(cbuf), .domid = DOMID_SELF, .offset = 0 },
        .len = PAGE_SIZE, .flags = GNTCOPY_source_gref,
    };
    long rc = copy1(&op);
    if (rc || op.status != GNTST_okay)
        xtest_fail("GNTTABOP_copy of (%u, gref %u) = %ld, status %d (%s)", peer, ref, rc,
                   op.status, gntst_name(op.status));
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        if (cbuf[i] != pattern(i))
            xtest_fail("copied page differs at offset %u: %#x, want %#x", i, cbuf[i],
                       pattern(i));

    /* A piece, at different offsets on each side. */
    memset(cbuf, 0, PAGE_SIZE);
    op.source.offset = 100;
    op.dest.offset = 2000;
    op.len = 1000;
    rc = copy1(&op);
    if (rc || op.status != GNTST_okay)
        xtest_fail("partial GNTTABOP_copy = %ld, status %d", rc, op.status);
    for (unsigned i = 0; i < PAGE_SIZE; i++) {
        uint8_t want = i >= 2000 && i < 3000 ? pattern(i - 2000 + 100) : 0;

        if (cbuf[i] != want)
            xtest_fail("partial copy: offset %u is %#x, want %#x", i, cbuf[i], want);
    }
    printf("xkvm-guest: gnttab-peer: copied page and piece from d%u gref %u: content "
           "right\n", peer, ref);

    struct gnttab_copy bad = op;
    bad.source.offset = bad.dest.offset = 0;
    bad.len = 64;
    bad.source.u.ref = 0xfffff;
    expect_copy_status("bad gref (0xfffff)", &bad, GNTST_bad_gntref, 0);
    bad = op;
    bad.source.offset = bad.dest.offset = 0;
    bad.len = 64;
    bad.source.domid = 4000;
    expect_copy_status("bad domid (4000)", &bad, GNTST_bad_domain, 0);
    bad = op;
    bad.source.offset = 4000;
    bad.dest.offset = 0;
    bad.len = 200;
    expect_copy_status("source offset+len beyond the page", &bad, GNTST_bad_copy_arg, 0);
    bad = op;
    bad.source.offset = 0;
    bad.dest.offset = 3900;
    bad.len = 400;
    expect_copy_status("dest offset+len beyond the page", &bad, GNTST_bad_copy_arg, 0);
    /* Writing into the read-only grant. Xen's _set_status_v1 answers GNTST_general_error
     * ("Attempt to write-pin a r/o grant entry"); permission_denied is accepted too. */
    struct gnttab_copy into = {
        .source = { .u.gmfn = gfn_of(cbuf), .domid = DOMID_SELF, .offset = 0 },
        .dest = { .u.ref = ref, .domid = peer, .offset = 0 },
        .len = 64, .flags = GNTCOPY_dest_gref,
    };
    expect_copy_status("copy INTO the read-only grant", &into, GNTST_permission_denied,
                       GNTST_general_error);

    /* Still works after the errors. */
    memset(cbuf, 0, 64);
    op.source.offset = op.dest.offset = 0;
    op.len = 64;
    if (copy1(&op) || op.status != GNTST_okay || cbuf[63] != pattern(63))
        xtest_fail("a good copy after the bad ones failed: status %d", op.status);

    if (cmdline_get("done_port", NULL, 0)) {
        uint32_t rport = (uint32_t)cmdline_get_u64("done_port", 0), lport;

        if ((rc = evtchn_bind_interdomain(peer, rport, &lport)))
            xtest_fail("bind_interdomain(%u, done port %u) = %ld", peer, rport, rc);
        if ((rc = evtchn_send(lport)))
            xtest_fail("send(done) = %ld", rc);
        evtchn_close(lport);
    }
    if (failures)
        xtest_fail("%u grant copy error case(s) gave the wrong status", failures);
}

static void test_gnttab_peer(void)
{
    char role[16] = "";

    pv_init();
    cmdline_get("role", role, sizeof(role));
    if (!cmdline_get("peer", NULL, 0))
        xtest_fail("needs peer=DOMID");
    domid_t peer = (domid_t)cmdline_get_u64("peer", 0);

    if (!strcmp(role, "granter"))
        granter(peer);
    else if (!strcmp(role, "copier"))
        copier(peer);
    else
        xtest_fail("role=%s: want granter or copier", role);
}
XTEST("gnttab-peer", test_gnttab_peer);
