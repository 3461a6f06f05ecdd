/*
 * vcpu-info: VCPUOP_register_vcpu_info for every vCPU into one page of ours at
 * non-zero offsets. vCPU 0 registers itself; vCPU 1 is registered by vCPU 0 while it
 * is still down (Xen allows that for offline vCPUs); vCPUs 2+ register themselves
 * once up. Then events (a loopback port moved to each vCPU with bind_vcpu, and an
 * IPI per vCPU) must arrive through the new vcpu_infos, the legacy slots in
 * shared_info must stay untouched, time must be readable from the new places, and a
 * second registration must fail.
 */
#include "../pv.h"
#include "../xtest.h"

static uint8_t vinfo_page[4096] __attribute__((aligned(4096)));

static unsigned vinfo_offset(unsigned id)
{
    return 64 + id * 192;           /* 8-byte aligned, never 0, within the page */
}

static long register_vcpu_info(unsigned id)
{
    struct vcpu_register_vcpu_info r = {
        .mfn = (uint64_t)(uintptr_t)vinfo_page >> 12, .offset = vinfo_offset(id),
    };
    return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, id, &r);
}

static long reg_rc[MAX_CPUS];

/* CPU 0, with vCPU id still down. */
static void pre_up(unsigned id)
{
    if (id != 1)
        return;
    reg_rc[id] = register_vcpu_info(id);
    if (!reg_rc[id])
        cpus[id].vi = (struct vcpu_info *)(vinfo_page + vinfo_offset(id));
}

static void self_register(void *arg)
{
    unsigned id = this_cpu()->id;

    irq_disable();
    reg_rc[id] = register_vcpu_info(id);
    if (!reg_rc[id])
        cpus[id].vi = (struct vcpu_info *)(vinfo_page + vinfo_offset(id));
    irq_enable();
}

static volatile uint64_t vi_hits[MAX_CPUS];

/* Counts on the vCPU it runs on and wakes CPU 0, which waits for it. */
static void vi_handler(uint32_t port, void *arg)
{
    unsigned id = this_cpu()->id;

    vi_hits[id]++;
    if (id != 0)
        evtchn_send(cpus[0].wake_port);
}

static const char *errname(long rc)
{
    switch (rc) {
    case -XEN_EINVAL: return "-EINVAL";
    case -XEN_EEXIST: return "-EEXIST";
    case -XEN_EBUSY: return "-EBUSY";
    case -XEN_ENXIO: return "-ENXIO";
    case -XEN_ENOENT: return "-ENOENT";
    case -XEN_ENOSYS: return "-ENOSYS";
    default: return rc < 0 ? "another error" : "not an error";
    }
}

static void test_vcpu_info(void)
{
    long rc;

    pv_init();
    unsigned n = smp_nr_vcpus();
    if (n < 2)
        xtest_fail("needs 2 or more vCPUs (vcpus = 2), VCPUOP_is_up finds %u", n);

    /* vCPU 0 itself, with upcalls held off while the pointer moves. */
    irq_disable();
    rc = register_vcpu_info(0);
    if (!rc)
        cpus[0].vi = (struct vcpu_info *)(vinfo_page + vinfo_offset(0));
    irq_enable();
    if (rc)
        xtest_fail("VCPUOP_register_vcpu_info(vCPU 0, offset %u) = %ld", vinfo_offset(0), rc);

    smp_pre_up_hook = pre_up;
    for (unsigned i = 1; i < n; i++) {
        if ((rc = smp_bringup(i)))
            xtest_fail("bringing up vCPU %u: %ld", i, rc);
        if (i == 1 && reg_rc[1])
            xtest_fail("VCPUOP_register_vcpu_info(vCPU 1 while down) from vCPU 0 = %ld",
                       reg_rc[1]);
        if (i >= 2) {
            reg_rc[i] = 1;
            if (!smp_call(i, self_register, NULL, 3000))
                xtest_fail("vCPU %u did not run its registration", i);
            if (reg_rc[i])
                xtest_fail("VCPUOP_register_vcpu_info(vCPU %u) on itself = %ld", i,
                           reg_rc[i]);
        }
    }
    printf("xkvm-guest: vcpu-info: %u vCPUs registered at gfn %#lx offsets 64+192*i\n",
           n, (unsigned long)((uint64_t)(uintptr_t)vinfo_page >> 12));

    /* From here on the legacy slots must not see events. */
    for (unsigned i = 0; i < n; i++) {
        shinfo->vcpu_info[i].evtchn_pending_sel = 0;
        shinfo->vcpu_info[i].evtchn_upcall_pending = 0;
    }

    /* Time from the new vcpu_infos. */
    for (unsigned i = 0; i < n; i++) {
        volatile struct vcpu_time_info *t = &cpus[i].vi->time;

        if (!t->system_time || (t->version & 1))
            xtest_fail("vCPU %u: registered vcpu_info has no time (version %u, "
                       "system_time %lu)", i, t->version, (unsigned long)t->system_time);
    }
    uint64_t t0 = xen_time_ns();
    spin_ns(1000000);
    if (xen_time_ns() <= t0)
        xtest_fail("Xen time does not advance through the registered vcpu_info");

    /* A loopback port moved to each vCPU in turn. */
    uint32_t a, b;
    if ((rc = evtchn_alloc_unbound(DOMID_SELF, &a)) ||
        (rc = evtchn_bind_interdomain(DOMID_SELF, a, &b)))
        xtest_fail("loopback pair: %ld", rc);
    evtchn_attach(a, 0, vi_handler, NULL);
    spin_ns(2000000);
    for (unsigned i = 0; i < n; i++) {
        uint64_t before = vi_hits[i];

        if ((rc = evtchn_bind_vcpu(a, i)))
            xtest_fail("EVTCHNOP_bind_vcpu(%u, vCPU %u) = %ld", a, i, rc);
        if ((rc = evtchn_send(b)))
            xtest_fail("send(%u) = %ld", b, rc);
        if (!wait_ge(&vi_hits[i], before + 1, 2000))
            xtest_fail("loopback event bound to vCPU %u did not arrive there (sel %#lx, "
                       "upcall_pending %u)", i, (unsigned long)cpus[i].vi->evtchn_pending_sel,
                       cpus[i].vi->evtchn_upcall_pending);
    }
    /* An IPI to each vCPU. */
    for (unsigned i = 0; i < n; i++) {
        uint32_t p;
        uint64_t before = vi_hits[i];

        if ((rc = evtchn_bind_ipi(i, &p)))
            xtest_fail("bind_ipi(%u) = %ld", i, rc);
        evtchn_attach(p, i, vi_handler, NULL);
        if ((rc = evtchn_send(p)))
            xtest_fail("send(IPI %u) = %ld", p, rc);
        if (!wait_ge(&vi_hits[i], before + 1, 2000))
            xtest_fail("IPI to vCPU %u did not arrive", i);
        evtchn_detach(p);
        evtchn_close(p);
    }
    for (unsigned i = 0; i < n; i++) {
        const struct vcpu_info *l = &shinfo->vcpu_info[i];

        if (l->evtchn_pending_sel || l->evtchn_upcall_pending)
            xtest_fail("legacy vcpu_info slot %u used after registration (sel %#lx, "
                       "upcall_pending %u)", i, (unsigned long)l->evtchn_pending_sel,
                       l->evtchn_upcall_pending);
    }

    /* Again: Xen refuses a second registration. */
    rc = register_vcpu_info(0);
    printf("xkvm-guest: vcpu-info: registering vCPU 0 again = %ld (%s)\n", rc, errname(rc));
    if (rc >= 0)
        xtest_fail("a second VCPUOP_register_vcpu_info succeeded");
    for (unsigned i = 0; i < n; i++)
        printf("xkvm-guest: vcpu-info: vCPU %u: %lu upcalls, %lu events\n", i,
               (unsigned long)cpus[i].nr_upcalls, (unsigned long)vi_hits[i]);
    evtchn_close(b);
    evtchn_close(a);
}
XTEST("vcpu-info", test_vcpu_info);
