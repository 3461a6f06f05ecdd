/*
 * altp2m views from inside the guest (docs/altp2m.md); tests/kvm/altp2m.sh drives them
 * and sets HVM_PARAM_ALTP2M first (the toolstack's).
 *
 * altp2m (mode mixed): turn altp2m on; hostile arguments refused with Xen's codes (bad
 * view indexes, gfns outside the physmap, remaps to a hole, execute restrictions, #VE,
 * a view per free slot and no more); then a view that makes page A read-only and shows
 * page B's frame at page C: switched to, C reads B's bytes, A reads its own, a write to
 * A exits to the monitor (the suite sees the event and resumes it, done once); switched
 * back, C reads its own again. Then thousands of restrictions: a view of 2100 separate
 * read-only pages is accepted but cannot be switched to (-ENOMEM: more memslots than a
 * view may take), and the domain stays on view 0. Prints "xtest: altp2m: write-probe"
 * before the forbidden write, so that the suite can check the monitor's event.
 *
 * altp2m-limited (mode limited; the suite turned altp2m on): every sub-op but the #VE
 * notifications is the toolstack's (-EPERM); those are refused (-EOPNOTSUPP).
 *
 * altp2m-soak (mode mixed): the view of altp2m (A read-only, C showing B's frame),
 * switched to, then checked once a second for `seconds=` (60) while the suite saves,
 * migrates and live-updates the domain: the active view, A's access, C reading B's
 * bytes; each round writes A once (a violation the monitor hears of, wherever the
 * domain is) and prints "xtest: altp2m-soak: round N ok".
 */
#include "../pv.h"
#include "../xtest.h"

#include <xen/errno.h>
#include <xen/hvm/hvm_op.h>
#include <xen/memory.h>

#define ACC_N   0
#define ACC_RW  3
#define ACC_RX  5
#define ACC_RWX 7
#define FAR_HOLE_GFN 0x10000ULL     /* past the guest's RAM */
#define MANY 2100

static uint8_t pages[3][4096] __attribute__((aligned(4096)));
static uint64_t many_gfns[MANY];
static uint8_t many_acc[MANY];

static uint64_t gfn_of(const void *p)
{
    return (uint64_t)(uintptr_t)p >> 12;
}

static long altp2m(uint32_t cmd, struct xen_hvm_altp2m_op *a)
{
    a->version = HVMOP_ALTP2M_INTERFACE_VERSION;
    a->cmd = cmd;
    a->domain = DOMID_SELF;
    return HYPERVISOR_hvm_op(HVMOP_altp2m, a);
}

static long set_state(bool on)
{
    struct xen_hvm_altp2m_op a = { .u.domain_state.state = on };
    return altp2m(HVMOP_altp2m_set_domain_state, &a);
}

static long create_view(uint16_t access, uint16_t *view)
{
    struct xen_hvm_altp2m_op a = { .u.view.hvmmem_default_access = access };
    long rc = altp2m(HVMOP_altp2m_create_p2m, &a);
    *view = a.u.view.view;
    return rc;
}

static long view_op(uint32_t cmd, uint16_t view)
{
    struct xen_hvm_altp2m_op a = { .u.view.view = view };
    return altp2m(cmd, &a);
}

static long set_access(uint16_t view, uint64_t gfn, uint16_t access)
{
    struct xen_hvm_altp2m_op a = { .u.mem_access = { .view = view, .access = access,
                                                     .gfn = gfn } };
    return altp2m(HVMOP_altp2m_set_mem_access, &a);
}

static long get_access(uint16_t view, uint64_t gfn, uint16_t *access)
{
    struct xen_hvm_altp2m_op a = { .u.mem_access = { .view = view, .gfn = gfn } };
    long rc = altp2m(HVMOP_altp2m_get_mem_access, &a);
    *access = a.u.mem_access.access;
    return rc;
}

static long change_gfn(uint16_t view, uint64_t old_gfn, uint64_t new_gfn)
{
    struct xen_hvm_altp2m_op a = { .u.change_gfn = { .view = view, .old_gfn = old_gfn,
                                                     .new_gfn = new_gfn } };
    return altp2m(HVMOP_altp2m_change_gfn, &a);
}

static long get_idx(void)
{
    struct xen_hvm_altp2m_op a = { .u.get_vcpu_p2m_idx.vcpu_id = 0 };
    long rc = altp2m(HVMOP_altp2m_get_p2m_idx, &a);
    return rc ? rc : a.u.get_vcpu_p2m_idx.altp2m_idx;
}

#define EXPECT(call, want)                                                        \
    do {                                                                          \
        long rc_ = (call);                                                        \
        if (rc_ != (want))                                                        \
            xtest_fail("%s: %ld, expected %ld", #call, rc_, (long)(want));        \
    } while (0)

static void hostile(void)
{
    uint16_t v, views[10];
    EXPECT(create_view(ACC_RW, &v), -XEN_EOPNOTSUPP);       /* execute restriction */
    EXPECT(create_view(99, &v), -XEN_EINVAL);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, 9), -XEN_EINVAL);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, 0xffff), -XEN_EINVAL);
    EXPECT(view_op(HVMOP_altp2m_destroy_p2m, 0), -XEN_EINVAL);
    EXPECT(set_access(0, FAR_HOLE_GFN, ACC_RX), -XEN_EINVAL);
    EXPECT(set_access(0, ~0ULL, ACC_RX), -XEN_EINVAL);
    EXPECT(set_access(7, gfn_of(pages[0]), ACC_RX), -XEN_EINVAL);
    EXPECT(change_gfn(0, gfn_of(pages[0]), FAR_HOLE_GFN), -XEN_EINVAL);
    EXPECT(change_gfn(0, FAR_HOLE_GFN, gfn_of(pages[0])), -XEN_EINVAL);
    struct xen_hvm_altp2m_op a = { .u.enable_notify.vcpu_id = 0 };
    EXPECT(altp2m(HVMOP_altp2m_vcpu_enable_notify, &a), -XEN_EOPNOTSUPP);
    struct xen_hvm_altp2m_op bad = { .pad1 = 1 };
    EXPECT(altp2m(HVMOP_altp2m_get_domain_state, &bad), -XEN_EINVAL);
    struct xen_hvm_altp2m_op ver = { 0 };
    ver.cmd = HVMOP_altp2m_get_domain_state;
    ver.version = 2;
    ver.domain = DOMID_SELF;
    EXPECT(HYPERVISOR_hvm_op(HVMOP_altp2m, &ver), -XEN_EOPNOTSUPP);
    for (unsigned i = 0; i < 9; i++)
        EXPECT(create_view(ACC_RWX, &views[i]), 0);
    EXPECT(create_view(ACC_RWX, &v), -XEN_EINVAL);           /* all 10 in use */
    for (unsigned i = 0; i < 9; i++)
        EXPECT(view_op(HVMOP_altp2m_destroy_p2m, views[i]), 0);
}

static void check_fill(const uint8_t *p, uint8_t want, const char *what)
{
    for (unsigned i = 0; i < 4096; i += 512)
        if (((volatile const uint8_t *)p)[i] != want)
            xtest_fail("%s: byte %u is %#x, expected %#x", what, i, p[i], want);
}

static void views(void)
{
    uint16_t v, acc;
    memset(pages[0], 0xaa, 4096);
    memset(pages[1], 0xbb, 4096);
    memset(pages[2], 0xcc, 4096);
    EXPECT(create_view(ACC_RWX, &v), 0);
    EXPECT(set_access(v, gfn_of(pages[0]), ACC_RX), 0);
    EXPECT(get_access(v, gfn_of(pages[0]), &acc), 0);
    if (acc != ACC_RX)
        xtest_fail("get_mem_access: %u, expected rx", acc);
    EXPECT(change_gfn(v, gfn_of(pages[2]), gfn_of(pages[1])), 0);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, v), 0);
    EXPECT(get_idx(), v);
    check_fill(pages[2], 0xbb, "C through the view");
    check_fill(pages[0], 0xaa, "A through the view");
    printf("xtest: altp2m: write-probe view=%u gfn=%#lx\n", v, (unsigned long)gfn_of(pages[0]));
    ((volatile uint8_t *)pages[0])[64] = 0x5a;   /* forbidden: the monitor answers */
    printf("xkvm-guest: altp2m: the forbidden write came back\n");
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, 0), 0);
    EXPECT(get_idx(), 0);
    check_fill(pages[2], 0xcc, "C through view 0");
    pages[0][0] = 0x11;                          /* view 0: allowed */
    EXPECT(view_op(HVMOP_altp2m_destroy_p2m, v), 0);
}

static void many(void)
{
    uint16_t v;
    uint64_t base = gfn_of(pages[0]) + 64;       /* RAM past the image */
    for (unsigned i = 0; i < MANY; i++) {
        many_gfns[i] = base + 2 * i;
        many_acc[i] = ACC_RX;
    }
    EXPECT(create_view(ACC_RWX, &v), 0);
    struct xen_hvm_altp2m_op a = { .u.set_mem_access_multi = { .view = v, .nr = MANY } };
    set_xen_guest_handle(a.u.set_mem_access_multi.pfn_list, many_gfns);
    set_xen_guest_handle(a.u.set_mem_access_multi.access_list, many_acc);
    EXPECT(altp2m(HVMOP_altp2m_set_mem_access_multi, &a), 0);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, v), -XEN_ENOMEM);
    EXPECT(get_idx(), 0);
    many_gfns[5] = FAR_HOLE_GFN;
    struct xen_hvm_altp2m_op b = { .u.set_mem_access_multi = { .view = v, .nr = 10 } };
    set_xen_guest_handle(b.u.set_mem_access_multi.pfn_list, many_gfns);
    set_xen_guest_handle(b.u.set_mem_access_multi.access_list, many_acc);
    EXPECT(altp2m(HVMOP_altp2m_set_mem_access_multi, &b), -XEN_EINVAL);
    EXPECT(view_op(HVMOP_altp2m_destroy_p2m, v), 0);
}

static void test_altp2m(void)
{
    XTEST_NEED_XEN();
    struct xen_hvm_altp2m_op st = { 0 };
    EXPECT(altp2m(HVMOP_altp2m_get_domain_state, &st), 0);
    if (st.u.domain_state.state)
        xtest_fail("altp2m already on");
    EXPECT(view_op(HVMOP_altp2m_create_p2m, 0), -XEN_EOPNOTSUPP);   /* not on yet */
    EXPECT(set_state(true), 0);
    hostile();
    views();
    many();
    EXPECT(set_state(false), 0);
}
XTEST("altp2m", test_altp2m);

static void test_altp2m_limited(void)
{
    XTEST_NEED_XEN();
    uint16_t v;
    struct xen_hvm_altp2m_op st = { 0 };
    EXPECT(altp2m(HVMOP_altp2m_get_domain_state, &st), -XEN_EPERM);
    EXPECT(set_state(false), -XEN_EPERM);
    EXPECT(create_view(ACC_RWX, &v), -XEN_EPERM);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, 0), -XEN_EPERM);
    EXPECT(set_access(0, gfn_of(pages[0]), ACC_N), -XEN_EPERM);
    EXPECT(change_gfn(0, gfn_of(pages[0]), gfn_of(pages[1])), -XEN_EPERM);
    struct xen_hvm_altp2m_op a = { .u.set_mem_access_multi = { .view = 0, .nr = 1 } };
    EXPECT(altp2m(HVMOP_altp2m_set_mem_access_multi, &a), -XEN_EPERM);
    struct xen_hvm_altp2m_op n = { .u.enable_notify.vcpu_id = 0 };
    EXPECT(altp2m(HVMOP_altp2m_vcpu_enable_notify, &n), -XEN_EOPNOTSUPP);
}
XTEST("altp2m-limited", test_altp2m_limited);

static void test_altp2m_soak(void)
{
    XTEST_NEED_XEN();
    pv_init();                                  /* for the clock */
    uint16_t v, acc;
    memset(pages[1], 0xbb, 4096);
    memset(pages[2], 0xcc, 4096);
    EXPECT(set_state(true), 0);
    EXPECT(create_view(ACC_RWX, &v), 0);
    EXPECT(set_access(v, gfn_of(pages[0]), ACC_RX), 0);
    EXPECT(change_gfn(v, gfn_of(pages[2]), gfn_of(pages[1])), 0);
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, v), 0);
    printf("xtest: altp2m-soak: ready view=%u gfn=%#lx\n", v, (unsigned long)gfn_of(pages[0]));
    uint64_t end = xen_time_ns() + cmdline_get_u64("seconds", 60) * 1000000000ULL;
    for (unsigned round = 1; xen_time_ns() < end; round++) {
        uint64_t next = xen_time_ns() + 1000000000ULL;
        if (get_idx() != v)
            xtest_fail("round %u: active view %ld, expected %u", round, get_idx(), v);
        EXPECT(get_access(v, gfn_of(pages[0]), &acc), 0);
        if (acc != ACC_RX)
            xtest_fail("round %u: access of A %u, expected rx", round, acc);
        check_fill(pages[2], 0xbb, "C through the view");
        ((volatile uint8_t *)pages[0])[round % 4096] = (uint8_t)round;   /* a violation */
        printf("xtest: altp2m-soak: round %u ok\n", round);
        while (xen_time_ns() < next)
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    EXPECT(view_op(HVMOP_altp2m_switch_p2m, 0), 0);
    check_fill(pages[2], 0xcc, "C through view 0");
    EXPECT(set_state(false), 0);
}
XTEST("altp2m-soak", test_altp2m_soak);
