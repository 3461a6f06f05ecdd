/*
 * What a stock Linux PVH guest needs from its platform beyond the PV ABI:
 *  - acpi: the RSDP in start_info, XSDT, a hardware-reduced FADT, a DSDT, a MADT with
 *    one enabled entry per vCPU (vcpus=N on the command line); the tables in the
 *    memory map as ACPI; and a power-off through the FADT's sleep control register
 *    (SLP_TYP 5, \_S5's), which must end the domain as poweroff.
 *  - sipi: vCPU 1 started the native way, LAPIC INIT then SIPI to a real-mode
 *    trampoline (delay_ms= between the two, hold_ms= afterwards while it must keep
 *    running), as Linux PVH brings up its CPUs.
 *  - platform-hc: set_timer_op, vm_assist, HVMOP_pagetable_dying, the XENMEM queries,
 *    XENVER_get_features, VCPUOP_register_vcpu_time_memory_area, and -ENOSYS for what
 *    is not there (the host checks it is logged once).
 */
#include "../pv.h"
#include "../xtest.h"

#include <xen/features.h>
#include <xen/hvm/hvm_op.h>
#include <xen/memory.h>
#include <xen/version.h>

/* ---- acpi ------------------------------------------------------------------------- */

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t sum(const uint8_t *p, uint32_t len)
{
    uint8_t s = 0;
    for (uint32_t i = 0; i < len; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* A table the guest can trust: below 4 GiB, signature, checksum. */
static const uint8_t *acpi_table(uint64_t pa, const char *sig)
{
    if (!pa || pa >= IDENT_MAP_LIMIT)
        xtest_fail("%s at %#lx is not below 4 GiB", sig, pa);
    const uint8_t *t = (const uint8_t *)(uintptr_t)pa;
    if (memcmp(t, sig, 4))
        xtest_fail("no %s at %#lx", sig, pa);
    uint32_t len = get32(t + 4);
    if (len < 36 || len > 65536 || sum(t, len))
        xtest_fail("%s: length %u or checksum wrong", sig, len);
    return t;
}

static bool in_acpi_memmap(uint64_t pa)
{
    for (unsigned i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        if (e->type == XEN_HVM_MEMMAP_TYPE_ACPI && pa >= e->addr && pa < e->addr + e->size)
            return true;
    }
    return false;
}

static unsigned madt_enabled(const uint8_t *m, uint32_t *first_apic_id)
{
    unsigned n = 0;
    *first_apic_id = ~0u;
    for (uint32_t off = 44, len = get32(m + 4); off + 2 <= len && m[off + 1]; off += m[off + 1]) {
        const uint8_t *e = m + off;
        bool lapic = e[0] == 0, x2 = e[0] == 9;
        uint32_t flags = lapic ? get32(e + 4) : x2 ? get32(e + 8) : 0;
        uint32_t id = lapic ? e[3] : x2 ? get32(e + 4) : ~0u;
        if ((lapic || x2) && (flags & 1)) {
            if (!n)
                *first_apic_id = id;
            n++;
        }
    }
    return n;
}

static void test_acpi(void)
{
    const struct hvm_start_info *si = boot.si;
    if (si->version < 1 || !si->rsdp_paddr)
        xtest_fail("start_info version %u, rsdp_paddr %#lx", si->version, si->rsdp_paddr);
    const uint8_t *r = (const uint8_t *)(uintptr_t)si->rsdp_paddr;
    if (memcmp(r, "RSD PTR ", 8) || sum(r, 20) || r[15] < 2 || sum(r, get32(r + 20)))
        xtest_fail("bad RSDP at %#lx", si->rsdp_paddr);
    if (!in_acpi_memmap(si->rsdp_paddr))
        xtest_fail("the RSDP at %#lx is not in an ACPI memory map entry", si->rsdp_paddr);
    const uint8_t *x = acpi_table(get64(r + 24), "XSDT");
    const uint8_t *fadt = NULL, *madt = NULL;
    for (uint32_t off = 36; off + 8 <= get32(x + 4); off += 8) {
        const uint8_t *t = (const uint8_t *)(uintptr_t)get64(x + off);
        if (!memcmp(t, "FACP", 4))
            fadt = acpi_table(get64(x + off), "FACP");
        else if (!memcmp(t, "APIC", 4))
            madt = acpi_table(get64(x + off), "APIC");
    }
    if (!fadt || !madt)
        xtest_fail("the XSDT lacks the %s", fadt ? "MADT" : "FADT");
    if (!(get32(fadt + 112) & (1u << 20)))
        xtest_fail("FADT not hardware-reduced (flags %#x)", get32(fadt + 112));
    acpi_table(get64(fadt + 140), "DSDT");
    lapic_init();
    uint32_t first;
    unsigned want = (unsigned)cmdline_get_u64("vcpus", 1);
    unsigned got = madt_enabled(madt, &first);
    if (got != want || first != lapic_id())
        xtest_fail("MADT: %u enabled CPUs (want %u), first APIC ID %u (mine %u)", got, want,
                   first, lapic_id());
    if (fadt[244] != 1 || fadt[245] != 8)
        xtest_fail("FADT: no I/O sleep control register");
    uint16_t port = (uint16_t)get64(fadt + 248);
    printf("xkvm-guest: acpi: RSDP %#lx, %u CPUs in the MADT, sleep control port %#x\n",
           si->rsdp_paddr, got, port);
    /* Power off as Linux's acpi_power_off does: the verdict first, then S5. */
    printf("xtest: acpi: PASS\n");
    outb(port, (5 << 2) | (1 << 5));
    spin_ns(5000000000ull);
    shutdown(SHUTDOWN_crash);   /* still here: the S5 write did nothing */
}
XTEST("acpi", test_acpi);

/* ---- sipi ------------------------------------------------------------------------- */

#define TRAMPOLINE      0x7000u             /* SIPI vector 0x07 */
#define AP_APIC_ID      ((volatile uint32_t *)(uintptr_t)0x7f00)
#define AP_COUNTER      ((volatile uint32_t *)(uintptr_t)0x7f04)

/*
 * Real mode at 0700:0000: DS = 0, store CPUID's initial APIC ID, then count forever.
 *   cli; xor ax,ax; mov ds,ax; mov eax,1; cpuid; shr ebx,24; mov [0x7f00],ebx
 *   1: inc dword [0x7f04]; pause; jmp 1b
 */
static const uint8_t trampoline[] = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2,
    0x66, 0xc1, 0xeb, 0x18, 0x66, 0x89, 0x1e, 0x00, 0x7f,
    0x66, 0xff, 0x06, 0x04, 0x7f, 0xf3, 0x90, 0xeb, 0xf7,
};

static bool wait_u32_change(volatile uint32_t *p, uint32_t from, uint64_t ms)
{
    for (uint64_t i = 0; i < ms; i++) {
        if (*p != from)
            return true;
        spin_ns(1000000);
    }
    return *p != from;
}

static void test_sipi(void)
{
    XTEST_NEED_XEN();
    pv_init();                                  /* Xen time, for the waits */
    uint64_t delay = cmdline_get_u64("delay_ms", 0), hold = cmdline_get_u64("hold_ms", 0);
    memcpy((void *)(uintptr_t)TRAMPOLINE, trampoline, sizeof(trampoline));
    *AP_APIC_ID = 0xffffffffu;
    *AP_COUNTER = 0;
    lapic_init();
    lapic_send_icr(1, 0x4500);                  /* INIT, level assert */
    printf("xtest: sipi: init sent\n");
    if (delay)
        spin_ns(delay * 1000000ull);
    lapic_send_icr(1, 0x4600 | (TRAMPOLINE >> 12));  /* STARTUP */
    printf("xtest: sipi: sipi sent\n");
    if (!wait_u32_change(AP_APIC_ID, 0xffffffffu, 20000))
        xtest_fail("vCPU 1 did not run the trampoline within 20 s of the SIPI");
    if (*AP_APIC_ID != 1)
        xtest_fail("the trampoline ran with initial APIC ID %u, want 1", *AP_APIC_ID);
    printf("xtest: sipi: ap running\n");
    /* It must keep running, also across whatever the host does meanwhile. */
    uint64_t end = xen_time_ns() + hold * 1000000ull;
    do {
        uint32_t c = *AP_COUNTER;
        if (!wait_u32_change(AP_COUNTER, c, 10000))
            xtest_fail("vCPU 1 stopped counting at %u", c);
    } while (xen_time_ns() < end);
    printf("xkvm-guest: sipi: vCPU 1 counted to %u\n", *AP_COUNTER);
}
XTEST("sipi", test_sipi);

/* ---- platform-hc ------------------------------------------------------------------ */

static struct vcpu_time_info time_area __attribute__((aligned(64)));
static struct vcpu_runstate_info runstate __attribute__((aligned(64)));

static void check_features(void)
{
    struct xen_feature_info fi = { .submap_idx = 0 };
    long rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
    uint32_t want = (1u << XENFEAT_hvm_safe_pvclock) | (1u << XENFEAT_hvm_callback_vector) |
                    (1u << XENFEAT_auto_translated_physmap);
    if (rc || (fi.submap & want) != want || (fi.submap & (1u << XENFEAT_hvm_pirqs)))
        xtest_fail("get_features: rc %ld submap %#x", rc, fi.submap);
    fi.submap_idx = 1;
    if ((rc = HYPERVISOR_xen_version(XENVER_get_features, &fi)) != -XEN_EINVAL)
        xtest_fail("get_features(1) = %ld, want -EINVAL", rc);
}

static long set_timer_op(uint64_t deadline)
{
    return _hypercall1(__HYPERVISOR_set_timer_op, deadline);
}

/* set_timer_op(deadline, or now + ahead_ns): one timer event must arrive (in 2 s). */
static void timer_fires(uint32_t port, const char *name, uint64_t deadline, uint64_t ahead_ns)
{
    uint64_t n = evtchn_count[port];
    long rc = set_timer_op(ahead_ns ? xen_time_ns() + ahead_ns : deadline);
    if (rc)
        xtest_fail("%s = %ld", name, rc);
    if (!wait_ge(&evtchn_count[port], n + 1, 2000))
        xtest_fail("%s: no timer event", name);
}

/* No timer event for 300 ms: the timer was cancelled. */
static void timer_quiet(uint32_t port, const char *name)
{
    uint64_t n = evtchn_count[port];
    spin_ns(300000000);
    if (evtchn_count[port] != n)
        xtest_fail("%s did not cancel the timer", name);
}

/*
 * set_timer_op (hypercall 15) as Xen 4.17's do_set_timer_op: the caller's singleshot
 * timer at an absolute system time; 0 cancels; a deadline in the past fires at once; one
 * wrapped negative or more than 2^50 ns ahead fires 100 ms later (Xen's workaround for
 * old Linux) rather than never. It is the same timer as VCPUOP_set_singleshot_timer:
 * either call cancels or replaces what the other armed.
 */
static void check_set_timer_op(void)
{
    uint32_t port;
    long rc = evtchn_bind_virq(VIRQ_TIMER, 0, &port);
    if (rc)
        xtest_fail("bind_virq(TIMER) = %ld", rc);
    evtchn_attach(port, 0, NULL, NULL);
    timer_fires(port, "set_timer_op(now + 20 ms)", 0, 20000000);
    timer_fires(port, "set_timer_op(1 ms ago)", 0, -1000000ULL);
    timer_fires(port, "set_timer_op(wrapped negative)", 1ULL << 63 | 12345, 0);
    timer_fires(port, "set_timer_op(now + 2^51 ns)", 0, 1ULL << 51);

    set_timer_op(xen_time_ns() + 50000000);
    if ((rc = set_timer_op(0)))
        xtest_fail("set_timer_op(0) = %ld", rc);
    timer_quiet(port, "set_timer_op(0)");

    set_timer_op(xen_time_ns() + 50000000);
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, 0, NULL)))
        xtest_fail("stop_singleshot_timer = %ld", rc);
    timer_quiet(port, "VCPUOP_stop_singleshot_timer after set_timer_op");

    struct vcpu_set_singleshot_timer st = { .timeout_abs_ns = xen_time_ns() + 50000000 };
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &st)))
        xtest_fail("set_singleshot_timer = %ld", rc);
    set_timer_op(0);
    timer_quiet(port, "set_timer_op(0) after VCPUOP_set_singleshot_timer");
    evtchn_close(port);
}

static void check_vm_assist(void)
{
    long rc = _hypercall2(__HYPERVISOR_vm_assist, VMASST_CMD_enable,
                          VMASST_TYPE_runstate_update_flag);
    if (rc)
        xtest_fail("vm_assist(runstate_update_flag) = %ld", rc);
    if ((rc = _hypercall2(__HYPERVISOR_vm_assist, VMASST_CMD_enable,
                          VMASST_TYPE_writable_pagetables)) != -XEN_EINVAL)
        xtest_fail("vm_assist(writable_pagetables) = %ld, want -EINVAL (PV only)", rc);
    struct vcpu_register_runstate_memory_area reg = { .addr.v = &runstate };
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, &reg)))
        xtest_fail("register_runstate_memory_area = %ld", rc);
    if (runstate.state != RUNSTATE_running || (runstate.state_entry_time & XEN_RUNSTATE_UPDATE))
        xtest_fail("runstate area: state %d entry %#lx", runstate.state,
                   runstate.state_entry_time);
}

static void check_queries(void)
{
    struct xen_hvm_pagetable_dying pd = { .domid = DOMID_SELF, .gpa = 0 };
    long rc = HYPERVISOR_hvm_op(HVMOP_pagetable_dying, &pd);
    if (rc)
        xtest_fail("pagetable_dying = %ld", rc);
    pd.domid = 0x7fe0;
    if ((rc = HYPERVISOR_hvm_op(HVMOP_pagetable_dying, &pd)) != -XEN_ESRCH)
        xtest_fail("pagetable_dying(no such domain) = %ld, want -ESRCH", rc);
    domid_t self = DOMID_SELF;
    if ((rc = HYPERVISOR_memory_op(XENMEM_maximum_gpfn, &self)) < 0xfeff0)
        xtest_fail("maximum_gpfn = %ld", rc);
    if ((rc = HYPERVISOR_memory_op(XENMEM_maximum_ram_page, NULL)) <= 0)
        xtest_fail("maximum_ram_page = %ld", rc);
    if ((rc = HYPERVISOR_memory_op(XENMEM_current_reservation, &self)) <= 0)
        xtest_fail("current_reservation = %ld", rc);
    struct xen_vnuma_topology_info vt = { .domid = DOMID_SELF };
    if ((rc = HYPERVISOR_memory_op(XENMEM_get_vnumainfo, &vt)) != -XEN_EOPNOTSUPP)
        xtest_fail("get_vnumainfo = %ld, want -EOPNOTSUPP", rc);
}

static void check_time_area(void)
{
    struct vcpu_register_time_memory_area t = { .addr.v = &time_area };
    long rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, &t);
    if (rc)
        xtest_fail("register_vcpu_time_memory_area = %ld", rc);
    const struct vcpu_time_info *vt = &shinfo->vcpu_info[0].time;
    if (!time_area.version || (time_area.version & 1) || !time_area.tsc_to_system_mul ||
        time_area.tsc_to_system_mul != vt->tsc_to_system_mul ||
        time_area.tsc_shift != vt->tsc_shift || time_area.flags != vt->flags)
        xtest_fail("time area: version %u mul %u/%u shift %d/%d flags %#x/%#x",
                   time_area.version, time_area.tsc_to_system_mul, vt->tsc_to_system_mul,
                   time_area.tsc_shift, vt->tsc_shift, time_area.flags, vt->flags);
    uint32_t v0 = time_area.version;
    spin_ns(20000000);
    /* A timer event refreshes the vCPU's time, and so the area. */
    struct vcpu_set_singleshot_timer st = { .timeout_abs_ns = xen_time_ns() + 1000000 };
    HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &st);
    spin_ns(100000000);
    if (time_area.version == v0 || (time_area.version & 1))
        xtest_fail("time area not refreshed (version %u, was %u)", time_area.version, v0);
    printf("xkvm-guest: platform-hc: pvclock flags %#x (TSC_STABLE %s)\n", time_area.flags,
           (time_area.flags & XEN_PVCLOCK_TSC_STABLE_BIT) ? "set" : "clear");
}

/*
 * Arguments Xen declares int or unsigned int take the low 32 bits of their register,
 * whatever the upper half holds (xen/include/hypercall-defs.c: sched_op, xen_version,
 * event_channel_op, console_io, vm_assist's cmd and type, vcpu_op's cmd and vCPU id).
 */
static void check_wide_args(void)
{
    const uint64_t hi = 0xdead000000000000ULL;
    long rc;
    if ((rc = _hypercall2(__HYPERVISOR_sched_op, hi | SCHEDOP_yield, 0)))
        xtest_fail("sched_op(2^63.. | yield) = %ld, want 0", rc);
    if ((rc = _hypercall2(__HYPERVISOR_xen_version, hi | XENVER_version, 0)) !=
        HYPERVISOR_xen_version(XENVER_version, NULL))
        xtest_fail("xen_version(2^63.. | version) = %ld", rc);
    if ((rc = _hypercall3(__HYPERVISOR_vcpu_op, hi | VCPUOP_is_up, hi | 0, 0)) != 1)
        xtest_fail("vcpu_op(is_up, vCPU 2^63.. | 0) = %ld, want 1", rc);
    struct evtchn_status st = { .dom = DOMID_SELF, .port = 0 };
    if ((rc = _hypercall2(__HYPERVISOR_event_channel_op, hi | EVTCHNOP_status, &st)))
        xtest_fail("event_channel_op(2^63.. | status) = %ld, want 0", rc);
    if ((rc = _hypercall2(__HYPERVISOR_vm_assist, hi | VMASST_CMD_enable,
                          hi | VMASST_TYPE_runstate_update_flag)))
        xtest_fail("vm_assist(2^63.. | enable, 2^63.. | runstate_update_flag) = %ld", rc);
    if ((rc = _hypercall3(__HYPERVISOR_console_io, hi | CONSOLEIO_write, hi | 1, "\n")))
        xtest_fail("console_io(2^63.. | write, 2^63.. | 1) = %ld, want 0", rc);
}

static void check_unimplemented(void)
{
    for (int i = 0; i < 2; i++) {
        long rc = _hypercall1(__HYPERVISOR_mmu_update, 0);
        if (rc != -XEN_ENOSYS)
            xtest_fail("mmu_update = %ld, want -ENOSYS", rc);
        if ((rc = HYPERVISOR_vcpu_op(99, 0, NULL)) != -XEN_ENOSYS)
            xtest_fail("vcpu_op 99 = %ld, want -ENOSYS", rc);
    }
}

static void test_platform_hc(void)
{
    XTEST_NEED_XEN();
    pv_init();
    check_features();
    check_set_timer_op();
    check_wide_args();
    check_vm_assist();
    check_queries();
    check_time_area();
    check_unimplemented();
}
XTEST("platform-hc", test_platform_hc);
