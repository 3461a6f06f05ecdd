/*
 * abi-bad: hostile arguments to the event, vCPU, memory, HVM and grant ABIs. Each
 * call must give Xen's error code (from Xen's common/event_channel.c, common/domain.c,
 * grant_table.c semantics); where Xen versions differ or Xen's answer is not pinned
 * down, any negative value is accepted and the line says so. Then the guest must
 * still work: a loopback event arrives. PASS if all of that holds.
 */
#include "../pv.h"
#include "../xtest.h"

#define UNMAPPED_VA (1ULL << 41)        /* never mapped: outside the identity map */
/* A mapped page followed by an unmapped one: arrays placed at its end make a
 * hypervisor that reads or writes past them fault instead of hitting our memory. */
#define GUARD_VA    (1ULL << 40)
static uint8_t guard_page[4096] __attribute__((aligned(4096)));

static unsigned failures;

/* want: the exact code; ANY_NEG: any negative value (noted); 0 / positive: exact. */
#define ANY_NEG (-999999L)   /* sentinel, not an errno */
static void expect(const char *what, long rc, long want)
{
    bool ok = want == ANY_NEG ? rc < 0 : rc == want;

    if (want == ANY_NEG)
        printf("xkvm-guest: %-52s -> %ld%s\n", what, rc,
               ok ? " (any error accepted)" : "  (WRONG: want an error)");
    else
        printf("xkvm-guest: %-52s -> %ld%s%ld)\n", what, rc, ok ? " (want " : "  (WRONG: want ",
               want);
    if (!ok)
        failures++;
}

/* One of two codes (Xen versions differ). */
static void expect2(const char *what, long rc, long w1, long w2)
{
    bool ok = rc == w1 || rc == w2;

    printf("xkvm-guest: %-52s -> %ld%s%ld or %ld)\n", what, rc,
           ok ? " (want " : "  (WRONG: want ", w1, w2);
    if (!ok)
        failures++;
}

static long ev(int cmd, void *arg)
{
    return HYPERVISOR_event_channel_op(cmd, arg);
}

static long gnt_status_or_rc(long rc, int16_t status)
{
    return rc ? rc : status;
}

static volatile uint64_t alive_hits;
static void alive_handler(uint32_t port, void *arg)
{
    alive_hits++;
}

static uint8_t page[4096] __attribute__((aligned(4096)));

static void test_abi_bad(void)
{
    const long EINVAL = -XEN_EINVAL, ENOENT = -XEN_ENOENT, EEXIST = -XEN_EEXIST;
    static const uint32_t bad_ports[] = { 4096, 0xffffffff };
    char what[80];
    long rc;

    pv_init();
    if (map_page(GUARD_VA, (uint64_t)(uintptr_t)guard_page, false))
        xtest_fail("cannot map the guard page");

    /* ---- event channels: ports out of range ---- */
    for (unsigned i = 0; i < ARRAY_SIZE(bad_ports); i++) {
        uint32_t p = bad_ports[i];
        struct evtchn_status st;

        snprintf(what, sizeof(what), "evtchn send(%#x)", p);
        expect(what, evtchn_send(p), EINVAL);
        snprintf(what, sizeof(what), "evtchn close(%#x)", p);
        expect(what, evtchn_close(p), EINVAL);
        snprintf(what, sizeof(what), "evtchn unmask(%#x)", p);
        expect(what, evtchn_unmask(p), EINVAL);
        snprintf(what, sizeof(what), "evtchn status(%#x)", p);
        expect(what, evtchn_status(p, &st), EINVAL);
        snprintf(what, sizeof(what), "evtchn bind_vcpu(%#x, 0)", p);
        struct evtchn_bind_vcpu bv = { .port = p, .vcpu = 0 };
        expect(what, ev(EVTCHNOP_bind_vcpu, &bv), EINVAL);
    }
    /* Port 0 is reserved (ECS_RESERVED): Xen refuses send/close/bind_vcpu; unmask of
     * it is a valid no-op (0) and status reports it closed. */
    expect("evtchn send(0)", evtchn_send(0), EINVAL);
    expect("evtchn close(0)", evtchn_close(0), EINVAL);
    struct evtchn_bind_vcpu bv0 = { .port = 0, .vcpu = 0 };
    expect("evtchn bind_vcpu(0, 0)", ev(EVTCHNOP_bind_vcpu, &bv0), EINVAL);
    /* Xen: port 0 is a valid (reserved) port, so unmask(0) = 0 and status(0) says
     * closed; -EINVAL is accepted as well (a stricter reading). */
    expect2("evtchn unmask(0) (Xen: 0)", evtchn_unmask(0), 0, EINVAL);
    struct evtchn_status st0;
    rc = evtchn_status(0, &st0);
    expect2("evtchn status(0) (Xen: 0, closed)", rc ? rc : (long)st0.status,
            EVTCHNSTAT_closed, EINVAL);
    /* A free port inside the allocated range. */
    expect("evtchn send(free port 60)", evtchn_send(60), EINVAL);
    expect("evtchn close(free port 60)", evtchn_close(60), EINVAL);

    /* VIRQs. */
    uint32_t vport;
    rc = evtchn_bind_virq(VIRQ_TIMER, 0, &vport);
    expect("bind_virq(VIRQ_TIMER, 0)", rc, 0);
    uint32_t dummy;
    expect("bind_virq(VIRQ_TIMER, 0) again", evtchn_bind_virq(VIRQ_TIMER, 0, &dummy), EEXIST);
    expect("bind_virq(NR_VIRQS)", evtchn_bind_virq(NR_VIRQS, 0, &dummy), EINVAL);
    expect("bind_virq(0xffffffff)", evtchn_bind_virq(0xffffffff, 0, &dummy), EINVAL);
    expect("bind_virq(VIRQ_TIMER, vcpu 99)", evtchn_bind_virq(VIRQ_TIMER, 99, &dummy), ENOENT);
    expect("bind_virq(global VIRQ_DOM_EXC, vcpu 1)", evtchn_bind_virq(VIRQ_DOM_EXC, 1, &dummy),
           EINVAL);
    expect("bind_vcpu(per-vCPU VIRQ port, 0)", evtchn_bind_vcpu(vport, 0), EINVAL);
    expect("bind_vcpu(VIRQ port, missing vCPU 99)", evtchn_bind_vcpu(vport, 99), ENOENT);
    if (!rc)
        evtchn_close(vport);
    expect("bind_ipi(vcpu 99)", evtchn_bind_ipi(99, &dummy), ENOENT);

    /* Interdomain / unbound. */
    struct evtchn_bind_interdomain bi = { .remote_dom = DOMID_SELF, .remote_port = 0 };
    expect("bind_interdomain(self, reserved port 0)", ev(EVTCHNOP_bind_interdomain, &bi),
           EINVAL);
    bi = (struct evtchn_bind_interdomain){ .remote_dom = DOMID_SELF, .remote_port = 4096 };
    expect("bind_interdomain(self, port 4096)", ev(EVTCHNOP_bind_interdomain, &bi), EINVAL);
    bi = (struct evtchn_bind_interdomain){ .remote_dom = 4000, .remote_port = 1 };
    expect("bind_interdomain(missing domain 4000)", ev(EVTCHNOP_bind_interdomain, &bi),
           -XEN_ESRCH);
    struct evtchn_alloc_unbound au = { .dom = 4000, .remote_dom = DOMID_SELF };
    expect("alloc_unbound(in missing domain 4000)", ev(EVTCHNOP_alloc_unbound, &au), ANY_NEG);
    expect("event_channel_op(unknown cmd 99)", ev(99, &au), -XEN_ENOSYS);
    expect("event_channel_op(send, unmapped arg)", ev(EVTCHNOP_send, (void *)UNMAPPED_VA),
           -XEN_EFAULT);

    /* ---- vCPU ops ---- */
    struct vcpu_set_singleshot_timer ss = { .timeout_abs_ns = 0, .flags = 0 };
    expect("vcpu_op(set_singleshot_timer, vCPU 99)",
           HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 99, &ss), ENOENT);
    expect("vcpu_op(is_up, vCPU 99)", HYPERVISOR_vcpu_op(VCPUOP_is_up, 99, NULL), ENOENT);
    expect("vcpu_op(up, vCPU 99)", HYPERVISOR_vcpu_op(VCPUOP_up, 99, NULL), ENOENT);
    expect("vcpu_op(is_up, vCPU 0)", HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1);
    expect("vcpu_op(unknown cmd 99, vCPU 0)", HYPERVISOR_vcpu_op(99, 0, NULL), -XEN_ENOSYS);
    struct vcpu_set_periodic_timer pt = { .period_ns = 0 };
    expect("set_periodic_timer(period 0)",
           HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, &pt), EINVAL);
    pt.period_ns = 999999;
    expect("set_periodic_timer(period < 1 ms)",
           HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, &pt), EINVAL);
    pt.period_ns = ~0ULL;
    expect("set_periodic_timer(period 2^64-1)",
           HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, &pt), EINVAL);
    HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL);
    expect("set_singleshot_timer(unmapped arg)",
           HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, (void *)UNMAPPED_VA),
           -XEN_EFAULT);
    struct vcpu_register_vcpu_info rvi = {
        .mfn = (uint64_t)(uintptr_t)page >> 12, .offset = 4090,
    };
    /* Xen <= 4.17: -EINVAL; later (map_vcpu_info reworked): -ENXIO. */
    expect2("register_vcpu_info(offset 4090)",
            HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &rvi), EINVAL, -XEN_ENXIO);
    rvi = (struct vcpu_register_vcpu_info){ .mfn = 1ULL << 36, .offset = 0 };
    expect("register_vcpu_info(gfn beyond RAM)",
           HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &rvi), ANY_NEG);
    rvi = (struct vcpu_register_vcpu_info){ .mfn = (uint64_t)(uintptr_t)page >> 12 };
    expect("register_vcpu_info(vCPU 99)",
           HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 99, &rvi), ENOENT);

    /* ---- HVM ops ---- */
    struct xen_hvm_evtchn_upcall_vector uv = { .vcpu = 0, .vector = 5 };
    expect("set_evtchn_upcall_vector(vector 5)",
           HYPERVISOR_hvm_op(HVMOP_set_evtchn_upcall_vector, &uv), EINVAL);
    uv = (struct xen_hvm_evtchn_upcall_vector){ .vcpu = 99, .vector = VEC_UPCALL_PERCPU };
    expect("set_evtchn_upcall_vector(vCPU 99)",
           HYPERVISOR_hvm_op(HVMOP_set_evtchn_upcall_vector, &uv), ENOENT);

    /* ---- memory_op(add_to_physmap) ---- */
    struct xen_add_to_physmap x = {
        .domid = DOMID_SELF, .space = 99, .idx = 0,
        .gpfn = (uint64_t)(uintptr_t)page >> 12,
    };
    expect("add_to_physmap(space 99)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x),
           ANY_NEG);
    x.space = XENMAPSPACE_shared_info;
    x.idx = 1;
    expect("add_to_physmap(shared_info, idx 1)",
           HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x), EINVAL);
    x.space = XENMAPSPACE_grant_table;
    x.idx = 100000;
    expect("add_to_physmap(grant_table, idx 100000)",
           HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x), EINVAL);
    x.space = XENMAPSPACE_shared_info;
    x.idx = 0;
    x.domid = 4000;
    expect("add_to_physmap(domid 4000)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x),
           ANY_NEG);

    /* ---- grant tables ---- */
    struct gnttab_copy cp = {
        .source = { .u.ref = 0xfffff, .domid = DOMID_SELF },
        .dest = { .u.gmfn = (uint64_t)(uintptr_t)page >> 12, .domid = DOMID_SELF },
        .len = 8, .flags = GNTCOPY_source_gref,
    };
    rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, &cp, 1);
    expect("gnttab copy(self, gref 0xfffff): status", gnt_status_or_rc(rc, cp.status),
           GNTST_bad_gntref);
    /* Huge count: the first op is the last thing on the guard page. */
    struct gnttab_copy *edge_cp =
        (struct gnttab_copy *)(uintptr_t)(GUARD_VA + PAGE_SIZE - sizeof(cp));
    *edge_cp = cp;
    expect("gnttab copy(count 0x7fffffff, then unmapped)",
           HYPERVISOR_grant_table_op(GNTTABOP_copy, edge_cp, 0x7fffffff), ANY_NEG);
    expect("gnttab copy(unmapped ops)",
           HYPERVISOR_grant_table_op(GNTTABOP_copy, (void *)UNMAPPED_VA, 1), -XEN_EFAULT);
    struct gnttab_set_version sv = { .version = 3 };
    expect("gnttab set_version(3)", HYPERVISOR_grant_table_op(GNTTABOP_set_version, &sv, 1),
           EINVAL);
    struct gnttab_query_size qs = { .dom = 4000 };
    rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, &qs, 1);
    expect("gnttab query_size(domid 4000)", gnt_status_or_rc(rc, qs.status), ANY_NEG);
    xen_pfn_t *frames = (xen_pfn_t *)(uintptr_t)(GUARD_VA + PAGE_SIZE - sizeof(xen_pfn_t));
    struct gnttab_setup_table st = { .dom = DOMID_SELF, .nr_frames = 0x100000 };
    set_xen_guest_handle(st.frame_list, frames);
    rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &st, 1);
    expect("gnttab setup_table(0x100000 frames)", gnt_status_or_rc(rc, st.status), ANY_NEG);
    struct gnttab_map_grant_ref mg = {
        .host_addr = (uint64_t)(uintptr_t)page, .flags = GNTMAP_host_map,
        .ref = 0xfffff, .dom = DOMID_SELF,
    };
    rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &mg, 1);
    expect("gnttab map_grant_ref(self, gref 0xfffff)", gnt_status_or_rc(rc, mg.status),
           ANY_NEG);
    expect("grant_table_op(unknown cmd 99)", HYPERVISOR_grant_table_op(99, &cp, 1),
           -XEN_ENOSYS);

    /* Last, as a hypervisor that takes it would reset us: initialise a running vCPU. */
    expect("vcpu_op(initialise, vCPU 0, running)",
           HYPERVISOR_vcpu_op(VCPUOP_initialise, 0, page), EEXIST);

    /* ---- still alive: a loopback event still arrives ---- */
    uint32_t a, b;
    if ((rc = evtchn_alloc_unbound(DOMID_SELF, &a)) ||
        (rc = evtchn_bind_interdomain(DOMID_SELF, a, &b)))
        xtest_fail("loopback pair after the hostile calls: %ld", rc);
    evtchn_attach(a, 0, alive_handler, NULL);
    if ((rc = evtchn_send(b)))
        xtest_fail("send after the hostile calls = %ld", rc);
    if (!wait_ge(&alive_hits, 1, 2000))
        xtest_fail("no event after the hostile calls");
    evtchn_close(b);
    evtchn_close(a);
    printf("xkvm-guest: abi-bad: still alive, events still delivered\n");
    if (failures)
        xtest_fail("%u call(s) gave the wrong answer (see WRONG above)", failures);
}
XTEST("abi-bad", test_abi_bad);
