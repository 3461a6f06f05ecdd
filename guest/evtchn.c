/*
 * Event channels the way a Xen HVM guest uses them (2-level ABI):
 *
 * - shared_info is placed with XENMEM_add_to_physmap(XENMAPSPACE_shared_info, idx 0)
 *   at the gfn of a page of our own .bss (Xen accepts any gfn; the RAM page that was
 *   there is released).
 * - Every port starts masked (the guest sets all mask bits); evtchn_attach routes a
 *   port to a CPU and unmasks it with EVTCHNOP_unmask, which re-raises a pending event.
 * - Upcall: either HVM_PARAM_CALLBACK_IRQ = (2 << 56) | vector (Xen injects the vector
 *   directly, no LAPIC: the handler does not EOI), or HVMOP_set_evtchn_upcall_vector
 *   per vCPU (delivered through the LAPIC: the handler EOIs).
 * - The handler: clear evtchn_upcall_pending, take the selector with xchg, for each
 *   selected word handle pending & ~mask & (ports routed to this CPU), clearing each
 *   pending bit before its handler runs; again while upcall_pending was set meanwhile.
 * - Xen system time from the CPU's vcpu_time_info (version / tsc_timestamp /
 *   system_time / tsc_to_system_mul / tsc_shift).
 */
#include "pv.h"
#include "xtest.h"

#include <xen/arch-x86/cpuid.h>

enum upcall_mode upcall_mode = UPCALL_CALLBACK;
enum wait_mode wait_mode = WAIT_HLT;
struct shared_info *shinfo;
uint16_t self_domid = DOMID_SELF;

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static bool pv_ready;

volatile uint64_t evtchn_count[EVTCHN_NR_PORTS];
volatile uint8_t evtchn_last_cpu[EVTCHN_NR_PORTS];
static evtchn_handler_t handlers[EVTCHN_NR_PORTS];
static void *handler_args[EVTCHN_NR_PORTS];

const char *upcall_mode_name(void)
{
    return upcall_mode == UPCALL_VECTOR ? "vector" : "callback";
}

/* ---- time ----------------------------------------------------------------------- */
uint64_t xen_time_ns(void)
{
    const volatile struct vcpu_time_info *t = &this_cpu()->vi->time;

    for (;;) {
        uint32_t ver = t->version;

        barrier();
        if (ver & 1) {
            cpu_relax();
            continue;
        }
        uint64_t tsc = rdtsc();
        uint64_t stamp = t->tsc_timestamp, sys = t->system_time;
        uint32_t mul = t->tsc_to_system_mul;
        int8_t shift = t->tsc_shift;

        barrier();
        if (t->version != ver)
            continue;
        if (!ver && !sys && !mul)
            return 0;                           /* Xen gave us no time */
        uint64_t delta = tsc - stamp;

        if ((int64_t)delta < 0)
            delta = 0;
        if (shift < 0)
            delta >>= -shift;
        else
            delta <<= shift;
        return sys + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
    }
}

void spin_ns(uint64_t ns)
{
    uint64_t now = xen_time_ns(), end = now + ns;

    if (!now) {                         /* no Xen time: a rough loop */
        for (uint64_t i = 0; i < ns / 4096; i++)
            cpu_relax();
        return;
    }
    while (xen_time_ns() < end)
        cpu_relax();
}

/* ---- the upcall ------------------------------------------------------------------- */
static void evtchn_scan(struct cpu *c)
{
    struct vcpu_info *vi = c->vi;

    do {
        vi->evtchn_upcall_pending = 0;
        barrier();
        uint64_t sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);

        while (sel) {
            unsigned w = __builtin_ctzll(sel);

            sel &= sel - 1;
            uint64_t bits = shinfo->evtchn_pending[w] & ~shinfo->evtchn_mask[w] &
                            c->port_mask[w];
            while (bits) {
                unsigned b = __builtin_ctzll(bits);
                uint32_t port = w * 64 + b;

                bits &= bits - 1;
                clear_bit64(&shinfo->evtchn_pending[w], b);
                evtchn_count[port]++;
                evtchn_last_cpu[port] = (uint8_t)c->id;
                if (handlers[port])
                    handlers[port](port, handler_args[port]);
            }
        }
    } while (vi->evtchn_upcall_pending);
}

static void upcall_callback(struct trap_frame *f)
{
    struct cpu *c = this_cpu();

    c->nr_upcalls++;
    evtchn_scan(c);
}

static void upcall_percpu(struct trap_frame *f)
{
    struct cpu *c = this_cpu();

    c->nr_upcalls++;
    evtchn_scan(c);
    lapic_eoi();
}

/* ---- ports ------------------------------------------------------------------------- */
long evtchn_alloc_unbound(domid_t remote, uint32_t *port)
{
    struct evtchn_alloc_unbound a = { .dom = DOMID_SELF, .remote_dom = remote };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &a);

    if (!rc)
        *port = a.port;
    return rc;
}

long evtchn_bind_interdomain(domid_t rdom, uint32_t rport, uint32_t *lport)
{
    struct evtchn_bind_interdomain b = { .remote_dom = rdom, .remote_port = rport };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &b);

    if (!rc)
        *lport = b.local_port;
    return rc;
}

long evtchn_bind_virq(uint32_t virq, uint32_t vcpu, uint32_t *port)
{
    struct evtchn_bind_virq b = { .virq = virq, .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &b);

    if (!rc)
        *port = b.port;
    return rc;
}

long evtchn_bind_ipi(uint32_t vcpu, uint32_t *port)
{
    struct evtchn_bind_ipi b = { .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &b);

    if (!rc)
        *port = b.port;
    return rc;
}

long evtchn_bind_vcpu(uint32_t port, uint32_t vcpu)
{
    struct evtchn_bind_vcpu b = { .port = port, .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_vcpu, &b);

    if (!rc && port < EVTCHN_NR_PORTS && vcpu < MAX_CPUS) {
        for (unsigned i = 0; i < MAX_CPUS; i++)
            clear_bit64(&cpus[i].port_mask[port / 64], port % 64);
        set_bit64(&cpus[vcpu].port_mask[port / 64], port % 64);
    }
    return rc;
}

long evtchn_send(uint32_t port)
{
    struct evtchn_send s = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &s);
}

long evtchn_close(uint32_t port)
{
    struct evtchn_close c = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_close, &c);
}

long evtchn_unmask(uint32_t port)
{
    struct evtchn_unmask u = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &u);
}

long evtchn_status(uint32_t port, struct evtchn_status *st)
{
    *st = (struct evtchn_status){ .dom = DOMID_SELF, .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_status, st);
}

void evtchn_mask(uint32_t port)
{
    set_bit64(&shinfo->evtchn_mask[port / 64], port % 64);
}

bool evtchn_pending(uint32_t port)
{
    return test_bit64(&shinfo->evtchn_pending[port / 64], port % 64);
}

bool evtchn_masked(uint32_t port)
{
    return test_bit64(&shinfo->evtchn_mask[port / 64], port % 64);
}

const char *evtchn_status_name(uint32_t s)
{
    static const char *const names[] = {
        [EVTCHNSTAT_closed] = "closed", [EVTCHNSTAT_unbound] = "unbound",
        [EVTCHNSTAT_interdomain] = "interdomain", [EVTCHNSTAT_pirq] = "pirq",
        [EVTCHNSTAT_virq] = "virq", [EVTCHNSTAT_ipi] = "ipi",
    };
    return s < ARRAY_SIZE(names) ? names[s] : "?";
}

void evtchn_attach(uint32_t port, unsigned cpu, evtchn_handler_t h, void *arg)
{
    if (port >= EVTCHN_NR_PORTS || cpu >= MAX_CPUS)
        xtest_crash("evtchn_attach(%u, cpu %u): out of range", port, cpu);
    handlers[port] = h;
    handler_args[port] = arg;
    for (unsigned i = 0; i < MAX_CPUS; i++)
        clear_bit64(&cpus[i].port_mask[port / 64], port % 64);
    set_bit64(&cpus[cpu].port_mask[port / 64], port % 64);
    long rc = evtchn_unmask(port);
    if (rc)
        xtest_fail("EVTCHNOP_unmask(%u) = %ld", port, rc);
}

void evtchn_detach(uint32_t port)
{
    if (port >= EVTCHN_NR_PORTS)
        return;
    evtchn_mask(port);
    for (unsigned i = 0; i < MAX_CPUS; i++)
        clear_bit64(&cpus[i].port_mask[port / 64], port % 64);
    handlers[port] = NULL;
}

/* ---- waiting ------------------------------------------------------------------------ */
static bool block_warned;

/* One wait step, entered and left with IF=0: let one interrupt in. */
static void wait_step(void)
{
    if (wait_mode == WAIT_BLOCK) {
        /* An upcall already flagged but held back by IF=0 must not be slept on: Xen
         * does not count an interrupt that IF blocks as a reason to wake. */
        if (!this_cpu()->vi->evtchn_upcall_pending) {
            long rc = HYPERVISOR_sched_op(SCHEDOP_block, NULL);

            if (rc && !block_warned) {
                block_warned = true;
                printf("xkvm-guest: SCHEDOP_block = %ld (waiting by polling)\n", rc);
            }
        }
        asm volatile("sti; nop; cli" ::: "memory");
    } else {
        asm volatile("sti; hlt; cli" ::: "memory");
    }
}

bool wait_ge(const volatile uint64_t *p, uint64_t target, uint64_t timeout_ms)
{
    struct cpu *c = this_cpu();

    if (*p >= target)
        return true;
    watchdog_arm(timeout_ms);
    irq_disable();
    while (*p < target && !c->watchdog_fired)
        wait_step();
    irq_enable();
    watchdog_stop();
    return *p >= target;
}

void wait_once(uint64_t timeout_ms)
{
    watchdog_arm(timeout_ms);
    irq_disable();
    wait_step();
    irq_enable();
    watchdog_stop();
}

/* ---- set-up --------------------------------------------------------------------------- */
static long set_percpu_vector(unsigned id)
{
    struct xen_hvm_evtchn_upcall_vector u = { .vcpu = id, .vector = VEC_UPCALL_PERCPU };
    return HYPERVISOR_hvm_op(HVMOP_set_evtchn_upcall_vector, &u);
}

int pv_init_cpu(void)
{
    lapic_init();
    if (upcall_mode == UPCALL_VECTOR)
        return (int)set_percpu_vector(this_cpu()->id);
    return 0;
}

void pv_init(void)
{
    char buf[16];

    if (pv_ready)
        return;
    XTEST_NEED_XEN();
    if (cmdline_get("upcall", buf, sizeof(buf))) {
        if (!strcmp(buf, "vector"))
            upcall_mode = UPCALL_VECTOR;
        else if (strcmp(buf, "callback"))
            xtest_fail("upcall=%s: want callback or vector", buf);
    }
    if (cmdline_get("wait", buf, sizeof(buf))) {
        if (!strcmp(buf, "block"))
            wait_mode = WAIT_BLOCK;
        else if (strcmp(buf, "hlt"))
            xtest_fail("wait=%s: want hlt or block", buf);
    }
    if (xen.max_leaf >= xen.base + 4) {
        uint32_t a, b, c, d;

        cpuid(xen.base + 4, &a, &b, &c, &d);
        if (a & XEN_HVM_CPUID_DOMID_PRESENT)
            self_domid = (uint16_t)c;
    }

    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
        .gpfn = (uint64_t)(uintptr_t)shinfo_page >> 12,
    };
    long rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc)
        xtest_fail("XENMEM_add_to_physmap(shared_info, gfn %#lx) = %ld",
                   (unsigned long)xatp.gpfn, rc);
    shinfo = (struct shared_info *)shinfo_page;
    cpus[0].vi = &shinfo->vcpu_info[0];

    /* All ports masked, as a guest kernel starts; nothing routed anywhere. */
    for (unsigned w = 0; w < EVTCHN_WORDS; w++)
        __atomic_store_n(&shinfo->evtchn_mask[w], ~0ULL, __ATOMIC_SEQ_CST);

    if (upcall_mode == UPCALL_CALLBACK) {
        set_irq_handler(VEC_UPCALL_CALLBACK, upcall_callback);
        rc = hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                           ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) |
                           VEC_UPCALL_CALLBACK);
        if (rc)
            xtest_fail("HVMOP_set_param(CALLBACK_IRQ, vector %#x) = %ld",
                       VEC_UPCALL_CALLBACK, rc);
    } else {
        set_irq_handler(VEC_UPCALL_PERCPU, upcall_percpu);
    }
    rc = pv_init_cpu();
    if (rc)
        xtest_fail("HVMOP_set_evtchn_upcall_vector(vcpu 0, %#x) = %ld", VEC_UPCALL_PERCPU,
                   rc);

    uint64_t t = xen_time_ns();
    printf("xkvm-guest: pv: shared_info at gfn %#lx, upcall %s (vector %#x), %s, "
           "wait %s, domid %d, Xen time %lu ns\n",
           (unsigned long)xatp.gpfn, upcall_mode_name(),
           upcall_mode == UPCALL_VECTOR ? VEC_UPCALL_PERCPU : VEC_UPCALL_CALLBACK,
           lapic_x2apic() ? "x2APIC" : "xAPIC", wait_mode == WAIT_BLOCK ? "block" : "hlt",
           self_domid == DOMID_SELF ? -1 : (int)self_domid, (unsigned long)t);
    irq_enable();
    pv_ready = true;
}
