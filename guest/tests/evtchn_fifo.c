/*
 * FIFO event channels, the ABI's own rules (run without evtchn=fifo: the test switches
 * the domain itself), checked against Xen 4.17's event_fifo.c semantics:
 *   evtchn-fifo   FIFO-only ops refused under 2-level; init_control's checks; a
 *                 2-level event pending at the switch held until its array page comes;
 *                 priority order across queues, FIFO order within one; set_priority's
 *                 range; SCHEDOP_poll and EVTCHNOP_unmask; a guest that scribbles its
 *                 queue's LINK fields into a loop (xkvmd links on, never walks);
 *                 expand_array up to Xen's 128 pages; EVTCHNOP_reset back to 2-level
 *                 and FIFO again after it.
 */
#include "../pv.h"
#include "../xtest.h"

#include <xen/sched.h>

static uint8_t scratch_page[4096] __attribute__((aligned(4096)));

static uint64_t gfn_of(const void *p)
{
    return (uint64_t)(uintptr_t)p >> 12;
}

static long set_priority(uint32_t port, uint32_t prio)
{
    struct evtchn_set_priority sp = { .port = port, .priority = prio };
    return HYPERVISOR_event_channel_op(EVTCHNOP_set_priority, &sp);
}

static long expand_array(uint64_t gfn)
{
    struct evtchn_expand_array ea = { .array_gfn = gfn };
    return HYPERVISOR_event_channel_op(EVTCHNOP_expand_array, &ea);
}

static void expect_rc(const char *what, long rc, long want)
{
    if (rc != want)
        xtest_fail("%s = %ld, want %ld", what, rc, want);
}

static void wait_handled(uint64_t target, const char *what)
{
    if (!wait_ge(&fifo_nr_handled, target, 2000))
        xtest_fail("%s: %lu events handled, want %lu", what, (unsigned long)fifo_nr_handled,
                   (unsigned long)target);
}

/* Send ports[0..n) with interrupts off, then let the upcall take them: the order. */
static void send_batch(const uint32_t *ports, unsigned n, const uint32_t *want,
                       const char *what)
{
    uint64_t base = fifo_nr_handled;

    irq_disable();
    for (unsigned i = 0; i < n; i++)
        if (evtchn_send(ports[i]))
            xtest_fail("%s: send(%u) failed", what, ports[i]);
    for (unsigned i = 0; i < n; i++)
        if (!evtchn_pending(ports[i]))
            xtest_fail("%s: port %u not pending after its send", what, ports[i]);
    irq_enable();
    wait_handled(base + n, what);
    for (unsigned i = 0; i < n; i++)
        if (fifo_handled_order[base + i] != want[i])
            xtest_fail("%s: event %u handled was port %lu, want %u", what, i,
                       (unsigned long)fifo_handled_order[base + i], want[i]);
}

static void check_2level_refusals(const char *when)
{
    if (set_priority(1, EVTCHN_FIFO_PRIORITY_DEFAULT) != -XEN_ENOSYS)
        xtest_fail("%s: set_priority under 2-level = %ld, want -ENOSYS", when,
                   set_priority(1, EVTCHN_FIFO_PRIORITY_DEFAULT));
    expect_rc("expand_array under 2-level", expand_array(gfn_of(scratch_page)),
              -XEN_EOPNOTSUPP);
}

static void check_init_control_args(uint64_t cb)
{
    expect_rc("init_control(offset 4)", fifo_init_control(0, cb, 4), -XEN_EINVAL);
    expect_rc("init_control(offset 4032: block past the page)",
              fifo_init_control(0, cb, 4096 - 64), -XEN_EINVAL);
    expect_rc("init_control(vcpu 99)", fifo_init_control(99, cb, 0), -XEN_ENOENT);
    expect_rc("init_control(gfn 2^40)", fifo_init_control(0, 1ull << 40, 0), -XEN_EINVAL);
    check_2level_refusals("after refused init_controls");
}

/* A LINK loop in the guest's own queue: xkvmd keeps linking at its tail regardless. */
static void hostile_links(const uint32_t *p)
{
    irq_disable();
    evtchn_send(p[0]);
    evtchn_send(p[1]);                   /* queue 5: p0 -> p1, tail p1 */
    volatile event_word_t *w0 = &fifo_array[p[0] / 1024][p[0] % 1024];
    volatile event_word_t *w1 = &fifo_array[p[1] / 1024][p[1] % 1024];
    if ((*w0 & EVTCHN_FIFO_LINK_MASK) != p[1])
        xtest_fail("port %u's LINK is %u, want %u", p[0], *w0 & EVTCHN_FIFO_LINK_MASK, p[1]);
    __atomic_store_n(w1, (*w1 & ~EVTCHN_FIFO_LINK_MASK) | p[0] | (1u << EVTCHN_FIFO_BUSY),
                     __ATOMIC_SEQ_CST);   /* p1 -> p0: a loop, and BUSY left set */
    fifo_cb(0)->head[5] = 0x1ffff;       /* and a head past every port */
    evtchn_send(p[2]);                   /* linked after p1, whatever p1 says */
    if ((*w1 & EVTCHN_FIFO_LINK_MASK) != p[2] || (*w1 & (1u << EVTCHN_FIFO_BUSY)))
        xtest_fail("tail port %u: word %#x, want LINK %u and BUSY clear", p[1], *w1, p[2]);
    fifo_clear_queues(0);                /* the guest repairs its own queues */
    irq_enable();
    uint64_t n = fifo_nr_handled;
    evtchn_send(p[0]);
    wait_handled(n + 1, "an event after the guest repaired its queues");
}

static void expand_to_limit(void)
{
    fifo_cover(EVTCHN_NR_PORTS - 1);     /* the 4 pages our ports need */
    for (unsigned n = fifo_nr_pages; n < 128; n++)
        if (expand_array(gfn_of(scratch_page)))
            xtest_fail("expand_array(page %u) failed below Xen's 128", n);
    expect_rc("expand_array(page 129)", expand_array(gfn_of(scratch_page)), -XEN_ENOSPC);
}

static void test_evtchn_fifo(void)
{
    uint32_t a, b, p[3];
    long rc;

    pv_init();
    if (evtchn_fifo)
        xtest_fail("run evtchn-fifo without evtchn=fifo: it switches the domain itself");
    uint64_t cb = gfn_of(fifo_cb(0));
    check_2level_refusals("2-level");
    check_init_control_args(cb);

    /* A 2-level event pending at the switch: held by Xen until its word exists. */
    if (evtchn_alloc_unbound(DOMID_SELF, &a) || evtchn_bind_interdomain(DOMID_SELF, a, &b))
        xtest_fail("loopback channel");
    if (!evtchn_pending(b))
        xtest_fail("2-level: bind_interdomain left port %u not pending", b);
    expect_rc("init_control(vcpu 0)", fifo_init_control(0, cb, 0), 0);
    evtchn_fifo = true;
    expect_rc("init_control(vcpu 0) again", fifo_init_control(0, cb, 0), -XEN_EINVAL);
    fifo_cover(b);
    if (!evtchn_pending(b) || !evtchn_masked(b))
        xtest_fail("port %u after the switch and its page: pending=%d masked=%d, want 1 1",
                   b, evtchn_pending(b), evtchn_masked(b));
    uint64_t n = fifo_nr_handled;
    evtchn_attach(b, 0, NULL, NULL);
    evtchn_attach(a, 0, NULL, NULL);
    wait_handled(n + 1, "the 2-level event held across the switch");

    /* Priorities: 2 before 7 before 10, whatever the order sent. */
    for (unsigned i = 0; i < 3; i++) {
        if (evtchn_bind_ipi(0, &p[i]))
            xtest_fail("bind_ipi");
        evtchn_attach(p[i], 0, NULL, NULL);
    }
    static const uint32_t prio[3] = { 10, 2, 7 };
    for (unsigned i = 0; i < 3; i++)
        expect_rc("set_priority", set_priority(p[i], prio[i]), 0);
    send_batch(p, 3, (uint32_t[]){ p[1], p[2], p[0] }, "priority order");
    for (unsigned i = 0; i < 3; i++)
        expect_rc("set_priority(5)", set_priority(p[i], 5), 0);
    send_batch((uint32_t[]){ p[2], p[0], p[1] }, 3, (uint32_t[]){ p[2], p[0], p[1] },
               "FIFO order in one queue");
    expect_rc("set_priority(16)", set_priority(p[0], 16), -XEN_EINVAL);
    expect_rc("set_priority(port 5000)", set_priority(5000, 5), -XEN_EINVAL);

    /* Masked: pending, not linked; SCHEDOP_poll sees it; unmask delivers it. */
    evtchn_mask(p[0]);
    evtchn_send(p[0]);
    struct sched_poll poll = { .nr_ports = 1, .timeout = 0 };
    set_xen_guest_handle(poll.ports, &p[0]);
    irq_disable();
    rc = HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
    irq_enable();
    expect_rc("SCHEDOP_poll on a pending port", rc, 0);
    n = fifo_nr_handled;
    expect_rc("EVTCHNOP_unmask", evtchn_unmask(p[0]), 0);
    wait_handled(n + 1, "unmask of a pending port");

    hostile_links(p);
    expand_to_limit();

    /* EVTCHNOP_reset: every port closed, the domain back to 2-level; FIFO again after. */
    struct evtchn_reset r = { .dom = DOMID_SELF };
    expect_rc("EVTCHNOP_reset", HYPERVISOR_event_channel_op(EVTCHNOP_reset, &r), 0);
    fifo_forget();
    struct evtchn_status st;
    if (evtchn_status(a, &st) || st.status != EVTCHNSTAT_closed)
        xtest_fail("port %u not closed by the reset", a);
    check_2level_refusals("after EVTCHNOP_reset");
    expect_rc("init_control after the reset", fifo_init_control(0, cb, 0), 0);
    evtchn_fifo = true;
    if (evtchn_bind_ipi(0, &p[0]))
        xtest_fail("bind_ipi after the reset");
    evtchn_attach(p[0], 0, NULL, NULL);
    n = fifo_nr_handled;
    evtchn_send(p[0]);
    wait_handled(n + 1, "an IPI after the reset and a new init_control");
    printf("xkvm-guest: evtchn-fifo: %lu events handled, %u array pages\n",
           (unsigned long)fifo_nr_handled, fifo_nr_pages);
}
XTEST("evtchn-fifo", test_evtchn_fifo);

/*
 * fifo-giveback (run without evtchn=fifo: it switches the domain itself): a page that
 * becomes the first FIFO event array page, then given back to Xen
 * (XENMEM_decrease_reservation), as a hostile guest may. Xen allows it (the page stays
 * referenced); xkvmd then refuses to save, migrate or live-update the domain, whose
 * event state it could no longer name by gfn, and keeps every domain running
 * (tests/kvm/evtchn-fifo.sh). The guest then spins, interrupts off, until destroyed.
 */
static uint8_t giveback_page[4096] __attribute__((aligned(4096)));

static void test_fifo_giveback(void)
{
    pv_init();
    if (evtchn_fifo)
        xtest_fail("run fifo-giveback without evtchn=fifo: it switches the domain itself");
    irq_disable();
    expect_rc("init_control(vcpu 0)", fifo_init_control(0, gfn_of(fifo_cb(0)), 0), 0);
    uint64_t gfn = gfn_of(giveback_page);
    expect_rc("expand_array(the page to give back)", expand_array(gfn), 0);
    xen_pfn_t list[1] = { gfn };
    struct xen_memory_reservation r = { .nr_extents = 1, .domid = DOMID_SELF };
    set_xen_guest_handle(r.extent_start, list);
    expect_rc("decrease_reservation(an event array page)",
              HYPERVISOR_memory_op(XENMEM_decrease_reservation, &r), 1);
    printf("xtest: fifo-giveback: given back gfn %#lx\n", (unsigned long)gfn);
    for (;;)
        spin_ns(1000000000ull);
}
XTEST("fifo-giveback", test_fifo_giveback);
