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
 *
 * With evtchn=fifo on the command line the FIFO ABI instead, as Linux's
 * events_fifo.c uses it: EVTCHNOP_init_control per CPU (a control block page each),
 * event array pages added with EVTCHNOP_expand_array as ports need them (every word
 * starts MASKED), and the upcall takes the control block's READY bits, walks each
 * ready queue from HEAD (or from where it stopped) through the LINK fields, clearing
 * LINKED with compare-and-swap, and handles a port that is pending and not masked
 * (PENDING cleared first). A walk is bounded: a queue that loops fails the test.
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

/* ---- FIFO ABI --------------------------------------------------------------------- */
#define FIFO_PAGES (EVTCHN_NR_PORTS / 1024)
#define W_PENDING (1u << EVTCHN_FIFO_PENDING)
#define W_MASKED  (1u << EVTCHN_FIFO_MASKED)
#define W_LINKED  (1u << EVTCHN_FIFO_LINKED)
#define W_BUSY    (1u << EVTCHN_FIFO_BUSY)

bool evtchn_fifo;
unsigned fifo_nr_pages;
volatile event_word_t fifo_array[FIFO_PAGES][1024] __attribute__((aligned(4096)));
static uint8_t fifo_cb_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));
static uint32_t fifo_local_head[MAX_CPUS][EVTCHN_FIFO_MAX_QUEUES];
volatile uint64_t fifo_handled_order[64];       /* ports in the order handled */
volatile uint64_t fifo_nr_handled;

struct evtchn_fifo_control_block *fifo_cb(unsigned cpu)
{
    return (struct evtchn_fifo_control_block *)fifo_cb_pages[cpu];
}

static volatile event_word_t *fifo_word(uint32_t port)
{
    return port / 1024 < fifo_nr_pages ? &fifo_array[port / 1024][port % 1024] : NULL;
}

long fifo_init_control(unsigned cpu, uint64_t gfn, uint32_t offset)
{
    struct evtchn_init_control ic = { .control_gfn = gfn, .offset = offset, .vcpu = cpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, &ic);

    if (!rc && ic.link_bits != EVTCHN_FIFO_LINK_BITS)
        xtest_fail("init_control: link_bits %u, want %u", ic.link_bits, EVTCHN_FIFO_LINK_BITS);
    return rc;
}

void fifo_forget(void)
{
    evtchn_fifo = false;
    fifo_nr_pages = 0;
    memset(fifo_cb_pages, 0, sizeof(fifo_cb_pages));
    memset(fifo_local_head, 0, sizeof(fifo_local_head));
}

void fifo_clear_queues(unsigned cpu)
{
    for (unsigned n = 0; n < fifo_nr_pages; n++)
        for (unsigned i = 0; i < 1024; i++)
            __atomic_fetch_and(&fifo_array[n][i], ~(W_LINKED | W_BUSY | EVTCHN_FIFO_LINK_MASK),
                               __ATOMIC_SEQ_CST);
    memset(fifo_cb_pages[cpu], 0, sizeof(fifo_cb_pages[cpu]));
    memset(fifo_local_head[cpu], 0, sizeof(fifo_local_head[cpu]));
}

static void fifo_init_cpu(unsigned cpu)
{
    memset(fifo_cb_pages[cpu], 0, sizeof(fifo_cb_pages[cpu]));
    memset(fifo_local_head[cpu], 0, sizeof(fifo_local_head[cpu]));
    long rc = fifo_init_control(cpu, (uint64_t)(uintptr_t)fifo_cb_pages[cpu] >> 12, 0);
    if (rc)
        xtest_fail("EVTCHNOP_init_control(vcpu %u) = %ld", cpu, rc);
}

/* The event array reaches port (pages added as needed, every word MASKED first). */
void fifo_cover(uint32_t port)
{
    while (port / 1024 >= fifo_nr_pages) {
        if (fifo_nr_pages >= FIFO_PAGES)
            xtest_crash("FIFO: port %u beyond the array", port);
        unsigned n = fifo_nr_pages;
        for (unsigned i = 0; i < 1024; i++)
            fifo_array[n][i] = W_MASKED;
        struct evtchn_expand_array ea = { .array_gfn = (uint64_t)(uintptr_t)fifo_array[n] >> 12 };
        long rc = HYPERVISOR_event_channel_op(EVTCHNOP_expand_array, &ea);
        if (rc)
            xtest_fail("EVTCHNOP_expand_array(page %u) = %ld", n, rc);
        fifo_nr_pages = n + 1;
    }
}

/* Clear LINKED (and LINK), waiting out BUSY a bounded while: the next port or 0. */
static uint32_t fifo_clear_linked(volatile event_word_t *w)
{
    event_word_t old = *w;

    for (unsigned tries = 0; tries < 1000000; tries++) {
        old &= ~W_BUSY;
        event_word_t nw = old & ~(W_LINKED | EVTCHN_FIFO_LINK_MASK);
        if (__atomic_compare_exchange_n(w, &old, nw, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return old & EVTCHN_FIFO_LINK_MASK;
        cpu_relax();
    }
    xtest_fail("FIFO: event word stays BUSY (%#x)", old);
}

static void handle_port(struct cpu *c, uint32_t port);

/* One event from queue q: take it off, handle it if pending and not masked. */
static void fifo_consume_one(struct cpu *c, unsigned q, uint32_t *ready)
{
    struct evtchn_fifo_control_block *cb = fifo_cb(c->id);
    uint32_t head = fifo_local_head[c->id][q];

    if (!head)
        head = __atomic_load_n(&cb->head[q], __ATOMIC_ACQUIRE);
    volatile event_word_t *w = head < EVTCHN_NR_PORTS ? fifo_word(head) : NULL;
    if (!head || !w)
        xtest_fail("FIFO: queue %u on CPU %u is ready but its head is port %u", q, c->id,
                   head);
    uint32_t next = fifo_clear_linked(w);
    if (!next)
        *ready &= ~(1u << q);
    event_word_t v = *w;
    if ((v & W_PENDING) && !(v & W_MASKED)) {
        __atomic_fetch_and(w, ~W_PENDING, __ATOMIC_SEQ_CST);
        uint64_t n = fifo_nr_handled;
        if (n < ARRAY_SIZE(fifo_handled_order))
            fifo_handled_order[n] = head;
        fifo_nr_handled = n + 1;
        handle_port(c, head);
    }
    fifo_local_head[c->id][q] = next;
}

static void fifo_scan(struct cpu *c)
{
    struct evtchn_fifo_control_block *cb = fifo_cb(c->id);
    uint32_t ready = __atomic_exchange_n(&cb->ready, 0, __ATOMIC_SEQ_CST);
    unsigned budget = 4 * EVTCHN_NR_PORTS;      /* more than every port once: a loop */

    while (ready) {
        if (!budget--)
            xtest_fail("FIFO: CPU %u's queues do not end (ready %#x): a LINK loop?",
                       c->id, ready);
        fifo_consume_one(c, (unsigned)__builtin_ctz(ready), &ready);
        ready |= __atomic_exchange_n(&cb->ready, 0, __ATOMIC_SEQ_CST);
    }
}

/* ---- the upcall ------------------------------------------------------------------- */
static void handle_port(struct cpu *c, uint32_t port)
{
    evtchn_count[port]++;
    evtchn_last_cpu[port] = (uint8_t)c->id;
    if (handlers[port])
        handlers[port](port, handler_args[port]);
}

static void evtchn_scan(struct cpu *c)
{
    struct vcpu_info *vi = c->vi;

    if (evtchn_fifo) {
        do {
            vi->evtchn_upcall_pending = 0;
            barrier();
            fifo_scan(c);
        } while (vi->evtchn_upcall_pending);
        return;
    }

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
                handle_port(c, port);
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
    if (evtchn_fifo) {
        volatile event_word_t *w = fifo_word(port);
        if (w)
            __atomic_fetch_or(w, W_MASKED, __ATOMIC_SEQ_CST);
        return;
    }
    set_bit64(&shinfo->evtchn_mask[port / 64], port % 64);
}

bool evtchn_pending(uint32_t port)
{
    if (evtchn_fifo) {
        volatile event_word_t *w = fifo_word(port);
        return w && (*w & W_PENDING);
    }
    return test_bit64(&shinfo->evtchn_pending[port / 64], port % 64);
}

bool evtchn_masked(uint32_t port)
{
    if (evtchn_fifo) {
        volatile event_word_t *w = fifo_word(port);
        return !w || (*w & W_MASKED);
    }
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
    if (evtchn_fifo) {      /* as Linux: the guest clears MASKED, Xen links if pending */
        fifo_cover(port);
        __atomic_fetch_and(fifo_word(port), ~W_MASKED, __ATOMIC_SEQ_CST);
    }
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
    if (evtchn_fifo && this_cpu()->id)
        fifo_init_cpu(this_cpu()->id);
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
    if (cmdline_get("evtchn", buf, sizeof(buf))) {
        if (!strcmp(buf, "fifo"))
            evtchn_fifo = true;
        else if (strcmp(buf, "2l"))
            xtest_fail("evtchn=%s: want 2l or fifo", buf);
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

    /* FIFO: CPU 0's control block before any port is bound, as Linux does. */
    if (evtchn_fifo)
        fifo_init_cpu(0);

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
           "wait %s, events %s, domid %d, Xen time %lu ns\n",
           (unsigned long)xatp.gpfn, upcall_mode_name(),
           upcall_mode == UPCALL_VECTOR ? VEC_UPCALL_PERCPU : VEC_UPCALL_CALLBACK,
           lapic_x2apic() ? "x2APIC" : "xAPIC", wait_mode == WAIT_BLOCK ? "block" : "hlt",
           evtchn_fifo ? "fifo" : "2l", self_domid == DOMID_SELF ? -1 : (int)self_domid,
           (unsigned long)t);
    irq_enable();
    pv_ready = true;
}
