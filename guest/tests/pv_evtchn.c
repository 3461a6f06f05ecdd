/*
 * Event channels (2-level ABI), single guest and two guests:
 *   evtchn-loopback     alloc_unbound(DOMID_SELF) + bind_interdomain to ourselves,
 *                       upcalls, mask/unmask, status, close
 *   evtchn-virq-timer   VIRQ_TIMER with the singleshot and periodic vCPU timers
 *   evtchn-ipi          vCPU 1 brought up, an IPI port per vCPU, ping-pong
 *   evtchn-interdomain  role=server|client peer=D [port=P] [count=N]: ping-pong
 *   evtchn-hold         binds one port of each kind and waits (for debug-state)
 */
#include "../pv.h"
#include "../xtest.h"

/* Print where an event is stuck: pending/mask bits and every CPU's selector. */
static void evtchn_diag(const char *what, uint32_t port)
{
    printf("xkvm-guest: %s: port %u pending=%d masked=%d", what, port,
           evtchn_pending(port), evtchn_masked(port));
    for (unsigned i = 0; i < MAX_CPUS; i++)
        if (cpus[i].online && cpus[i].vi)
            printf(" | vCPU%u sel=%#lx upcall_pending=%u upcalls=%lu", i,
                   (unsigned long)cpus[i].vi->evtchn_pending_sel,
                   cpus[i].vi->evtchn_upcall_pending, (unsigned long)cpus[i].nr_upcalls);
    printf("\n");
}

static void expect_status(uint32_t port, uint32_t want, const char *what)
{
    struct evtchn_status st;
    long rc = evtchn_status(port, &st);

    if (rc)
        xtest_fail("%s: EVTCHNOP_status(%u) = %ld", what, port, rc);
    if (st.status != want)
        xtest_fail("%s: port %u status %s, want %s", what, port,
                   evtchn_status_name(st.status), evtchn_status_name(want));
}

/* ---- evtchn-loopback ------------------------------------------------------------------ */
static volatile uint64_t lb_hits[2];

static void lb_handler(uint32_t port, void *arg)
{
    lb_hits[(uintptr_t)arg]++;
}

static void lb_expect_event(unsigned which, uint32_t port, uint64_t want, const char *what)
{
    if (!wait_ge(&lb_hits[which], want, 2000)) {
        evtchn_diag(what, port);
        xtest_fail("%s: no upcall for port %u within 2 s", what, port);
    }
}

static void test_evtchn_loopback(void)
{
    uint32_t a, b;
    struct evtchn_status st;
    long rc;

    pv_init();
    rc = evtchn_alloc_unbound(DOMID_SELF, &a);
    if (rc)
        xtest_fail("EVTCHNOP_alloc_unbound(remote DOMID_SELF) = %ld", rc);
    if (!a || a >= EVTCHN_NR_PORTS)
        xtest_fail("alloc_unbound gave port %u", a);
    rc = evtchn_status(a, &st);
    if (rc || st.status != EVTCHNSTAT_unbound || st.vcpu != 0)
        xtest_fail("status(unbound port %u) = %ld: %s vcpu %u", a, rc,
                   evtchn_status_name(st.status), st.vcpu);
    if (self_domid != DOMID_SELF && st.u.unbound.dom != self_domid)
        xtest_fail("status(unbound port %u): remote dom %u, want our domid %u", a,
                   st.u.unbound.dom, self_domid);
    evtchn_attach(a, 0, lb_handler, (void *)0);

    rc = evtchn_bind_interdomain(DOMID_SELF, a, &b);
    if (rc)
        xtest_fail("EVTCHNOP_bind_interdomain(DOMID_SELF, %u) = %ld", a, rc);
    if (b == a || !b || b >= EVTCHN_NR_PORTS)
        xtest_fail("bind_interdomain gave local port %u (remote %u)", b, a);
    evtchn_attach(b, 0, lb_handler, (void *)1);
    /* Xen raises the new local port once at bind time ("notifications may have been
     * lost on the unbound port"); the unmask above delivers it. Let it settle. */
    spin_ns(3000000);
    printf("xkvm-guest: loopback ports %u <-> %u; events at bind: a=%lu b=%lu\n", a, b,
           (unsigned long)lb_hits[0], (unsigned long)lb_hits[1]);

    for (unsigned i = 0; i < 2; i++) {
        uint32_t p = i ? b : a, q = i ? a : b;

        rc = evtchn_status(p, &st);
        if (rc || st.status != EVTCHNSTAT_interdomain || st.u.interdomain.port != q ||
            st.vcpu != 0)
            xtest_fail("status(%u) = %ld: %s remote port %u vcpu %u; want interdomain "
                       "to %u on vcpu 0", p, rc, evtchn_status_name(st.status),
                       st.u.interdomain.port, st.vcpu, q);
        if (self_domid != DOMID_SELF && st.u.interdomain.dom != self_domid)
            xtest_fail("status(%u): remote dom %u, want %u", p, st.u.interdomain.dom,
                       self_domid);
    }

    /* Send both ways. */
    uint64_t ha = lb_hits[0], hb = lb_hits[1], up0 = cpus[0].nr_upcalls;
    if ((rc = evtchn_send(b)))
        xtest_fail("EVTCHNOP_send(%u) = %ld", b, rc);
    lb_expect_event(0, a, ha + 1, "send b->a");
    if ((rc = evtchn_send(a)))
        xtest_fail("EVTCHNOP_send(%u) = %ld", a, rc);
    lb_expect_event(1, b, hb + 1, "send a->b");
    if (evtchn_pending(a) || evtchn_pending(b))
        xtest_fail("pending bits left after handling (a %d, b %d)", evtchn_pending(a),
                   evtchn_pending(b));
    if (evtchn_last_cpu[a] != 0 || cpus[0].nr_upcalls < up0 + 2)
        xtest_fail("upcalls: %lu (from %lu), last vCPU %u",
                   (unsigned long)cpus[0].nr_upcalls, (unsigned long)up0,
                   evtchn_last_cpu[a]);

    /* Masked: the send sets pending, no upcall; twice still one event. */
    evtchn_mask(a);
    ha = lb_hits[0];
    up0 = cpus[0].nr_upcalls;
    evtchn_send(b);
    evtchn_send(b);
    spin_ns(5000000);
    if (lb_hits[0] != ha || cpus[0].nr_upcalls != up0)
        xtest_fail("send while masked: %lu event(s), %lu upcall(s), want none",
                   (unsigned long)(lb_hits[0] - ha), (unsigned long)(cpus[0].nr_upcalls - up0));
    if (!evtchn_pending(a))
        xtest_fail("send while masked did not set the pending bit of port %u", a);
    /* EVTCHNOP_unmask clears the mask and re-raises the pending event. */
    if ((rc = evtchn_unmask(a)))
        xtest_fail("EVTCHNOP_unmask(%u) = %ld", a, rc);
    lb_expect_event(0, a, ha + 1, "unmask re-raise");
    spin_ns(3000000);
    if (lb_hits[0] != ha + 1)
        xtest_fail("unmask delivered %lu events for two masked sends, want 1",
                   (unsigned long)(lb_hits[0] - ha));
    if (evtchn_masked(a) || evtchn_pending(a))
        xtest_fail("after unmask: masked=%d pending=%d", evtchn_masked(a),
                   evtchn_pending(a));
    /* Unmasking a port with nothing pending delivers nothing. */
    evtchn_mask(a);
    evtchn_unmask(a);
    spin_ns(2000000);
    if (lb_hits[0] != ha + 1)
        xtest_fail("unmask with nothing pending delivered an event");

    /* bind_vcpu to vCPU 0 is allowed on interdomain ports. */
    if ((rc = evtchn_bind_vcpu(a, 0)))
        xtest_fail("EVTCHNOP_bind_vcpu(%u, 0) = %ld", a, rc);

    /* Close one end: the other becomes unbound (to us); sends on it are dropped. */
    if ((rc = evtchn_close(b)))
        xtest_fail("EVTCHNOP_close(%u) = %ld", b, rc);
    evtchn_detach(b);
    expect_status(b, EVTCHNSTAT_closed, "after close(b)");
    expect_status(a, EVTCHNSTAT_unbound, "peer of a closed port");
    ha = lb_hits[0];
    rc = evtchn_send(a);
    if (rc)
        xtest_fail("send on an unbound port = %ld, want 0 (dropped, as Xen)", rc);
    rc = evtchn_send(b);
    if (rc != -XEN_EINVAL)
        xtest_fail("send on a closed port = %ld, want -EINVAL", rc);
    spin_ns(2000000);
    if (lb_hits[0] != ha)
        xtest_fail("an event arrived after the channel was closed");
    if ((rc = evtchn_close(a)))
        xtest_fail("EVTCHNOP_close(%u) = %ld", a, rc);
    evtchn_detach(a);
    expect_status(a, EVTCHNSTAT_closed, "after close(a)");
    if ((rc = evtchn_close(a)) != -XEN_EINVAL)
        xtest_fail("closing a closed port = %ld, want -EINVAL", rc);
    printf("xkvm-guest: evtchn-loopback: %s upcalls, %lu upcalls in all\n",
           upcall_mode_name(), (unsigned long)cpus[0].nr_upcalls);
}
XTEST("evtchn-loopback", test_evtchn_loopback);

/* ---- evtchn-virq-timer ----------------------------------------------------------------- */
#define MAX_FIRES 64
static volatile uint64_t timer_fires;
static volatile uint64_t fire_ns[MAX_FIRES];

static void timer_handler(uint32_t port, void *arg)
{
    uint64_t n = timer_fires;

    if (n < MAX_FIRES)
        fire_ns[n] = xen_time_ns();
    timer_fires = n + 1;
}

static long singleshot(uint64_t abs_ns, uint32_t flags)
{
    struct vcpu_set_singleshot_timer s = { .timeout_abs_ns = abs_ns, .flags = flags };
    return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &s);
}

static void test_evtchn_virq_timer(void)
{
    const uint64_t ms = 1000000;
    uint32_t port;
    long rc;

    pv_init();
    uint64_t t0 = xen_time_ns(), t1 = xen_time_ns();
    if (!t0)
        xtest_fail("no Xen system time in vcpu_info (vcpu_time_info all zero)");
    if (t1 < t0)
        xtest_fail("Xen time went backwards: %lu then %lu", (unsigned long)t0,
                   (unsigned long)t1);
    rc = HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL);
    if (rc)
        xtest_fail("VCPUOP_stop_periodic_timer = %ld", rc);

    rc = evtchn_bind_virq(VIRQ_TIMER, 0, &port);
    if (rc)
        xtest_fail("EVTCHNOP_bind_virq(VIRQ_TIMER, vcpu 0) = %ld", rc);
    struct evtchn_status st;
    rc = evtchn_status(port, &st);
    if (rc || st.status != EVTCHNSTAT_virq || st.u.virq != VIRQ_TIMER || st.vcpu != 0)
        xtest_fail("status(VIRQ_TIMER port %u) = %ld: %s virq %u vcpu %u", port, rc,
                   evtchn_status_name(st.status), st.u.virq, st.vcpu);
    evtchn_attach(port, 0, timer_handler, NULL);
    spin_ns(2 * ms);
    timer_fires = 0;

    /* Singleshot: now + 10 ms, fires once, not before the deadline. */
    uint64_t deadline = xen_time_ns() + 10 * ms;
    if ((rc = singleshot(deadline, 0)))
        xtest_fail("VCPUOP_set_singleshot_timer(+10 ms) = %ld", rc);
    if (!wait_ge(&timer_fires, 1, 2000)) {
        evtchn_diag("singleshot", port);
        xtest_fail("singleshot timer (+10 ms) did not fire within 2 s");
    }
    if (fire_ns[0] < deadline)
        xtest_fail("singleshot fired %lu ns before its deadline",
                   (unsigned long)(deadline - fire_ns[0]));
    printf("xkvm-guest: singleshot +10 ms fired %lu us after its deadline\n",
           (unsigned long)((fire_ns[0] - deadline) / 1000));
    spin_ns(30 * ms);
    if (timer_fires != 1)
        xtest_fail("singleshot fired %lu times", (unsigned long)timer_fires);

    /* VCPU_SSHOTTMR_future with a past deadline: -ETIME, nothing fires. */
    rc = singleshot(xen_time_ns() - ms, VCPU_SSHOTTMR_future);
    if (rc != -XEN_ETIME)
        xtest_fail("singleshot(past, VCPU_SSHOTTMR_future) = %ld, want -ETIME (%d)", rc,
                   -XEN_ETIME);
    spin_ns(20 * ms);
    if (timer_fires != 1)
        xtest_fail("a refused singleshot fired");
    /* A past deadline without the flag fires at once. */
    if ((rc = singleshot(xen_time_ns() - ms, 0)))
        xtest_fail("singleshot(past, no flags) = %ld", rc);
    if (!wait_ge(&timer_fires, 2, 1000))
        xtest_fail("singleshot with a past deadline did not fire");
    /* A stopped singleshot does not fire. */
    singleshot(xen_time_ns() + 20 * ms, 0);
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, 0, NULL)))
        xtest_fail("VCPUOP_stop_singleshot_timer = %ld", rc);
    spin_ns(40 * ms);
    if (timer_fires != 2)
        xtest_fail("a stopped singleshot fired");

    /* Periodic, 10 ms: N fires, increasing, spaced; stop stops it. */
    const uint64_t period = 10 * ms;
    const unsigned N = 6;
    struct vcpu_set_periodic_timer p = { .period_ns = period };
    uint64_t n0 = timer_fires, tset = xen_time_ns();

    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, &p)))
        xtest_fail("VCPUOP_set_periodic_timer(10 ms) = %ld", rc);
    if (!wait_ge(&timer_fires, n0 + N, 3000)) {
        evtchn_diag("periodic", port);
        xtest_fail("periodic timer: %lu fires in 3 s, want %u",
                   (unsigned long)(timer_fires - n0), N);
    }
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL)))
        xtest_fail("VCPUOP_stop_periodic_timer = %ld", rc);
    spin_ns(ms);                                    /* one in flight may land */
    uint64_t stopped = timer_fires;
    spin_ns(50 * ms);
    if (timer_fires != stopped)
        xtest_fail("periodic timer fired %lu times after stop",
                   (unsigned long)(timer_fires - stopped));
    char line[256];
    int len = snprintf(line, sizeof(line), "xkvm-guest: periodic 10 ms, intervals (us):");
    for (unsigned i = 1; i < N; i++) {
        uint64_t a = fire_ns[n0 + i - 1], b = fire_ns[n0 + i];

        if (b <= a)
            xtest_fail("periodic fire %u at %lu not after fire %u at %lu", i,
                       (unsigned long)b, i - 1, (unsigned long)a);
        len += snprintf(line + len, sizeof(line) - len, " %lu",
                        (unsigned long)((b - a) / 1000));
    }
    printf("%s; first after %lu us\n", line, (unsigned long)((fire_ns[n0] - tset) / 1000));
    uint64_t span = fire_ns[n0 + N - 1] - fire_ns[n0];
    if (span < (N - 1) * period * 9 / 10)
        xtest_fail("periodic 10 ms: %u fires within %lu us, too fast", N,
                   (unsigned long)(span / 1000));

    if ((rc = evtchn_close(port)))
        xtest_fail("close(VIRQ_TIMER port) = %ld", rc);
    evtchn_detach(port);
    /* Closed: the VIRQ can be bound again. */
    if ((rc = evtchn_bind_virq(VIRQ_TIMER, 0, &port)))
        xtest_fail("bind_virq(VIRQ_TIMER) after close = %ld", rc);
    evtchn_close(port);
}
XTEST("evtchn-virq-timer", test_evtchn_virq_timer);

/* ---- evtchn-ipi ---------------------------------------------------------------------------- */
static volatile uint64_t ipi_hits[2];
static volatile uint64_t ipi_wrong_cpu;
static uint32_t ipi_port[2];
static volatile uint64_t ipi_rounds;

static void ipi_handler(uint32_t port, void *arg)
{
    unsigned want = (unsigned)(uintptr_t)arg;

    if (this_cpu()->id != want)
        ipi_wrong_cpu++;
    ipi_hits[want]++;
}

static void ipi_bind_on_1(void *arg)
{
    long *rc = arg;

    *rc = evtchn_bind_ipi(this_cpu()->id, &ipi_port[1]);
    if (!*rc)
        evtchn_attach(ipi_port[1], 1, ipi_handler, (void *)1);
}

static volatile uint64_t pong_done, pong_failed_at;

static void pong_loop(void *arg)
{
    for (uint64_t i = 1; i <= ipi_rounds; i++) {
        if (!wait_ge(&ipi_hits[1], i, 3000)) {
            pong_failed_at = i;
            break;
        }
        evtchn_send(ipi_port[0]);
    }
    pong_done = 1;
}

static void test_evtchn_ipi(void)
{
    long rc;

    pv_init();
    unsigned n = smp_nr_vcpus();
    if (n < 2)
        xtest_fail("needs 2 vCPUs (vcpus = 2), VCPUOP_is_up finds %u", n);
    if ((rc = smp_bringup(1)))
        xtest_fail("bringing up vCPU 1: %ld", rc);
    rc = HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL);
    if (rc != 1)
        xtest_fail("VCPUOP_is_up(1) = %ld after VCPUOP_up", rc);

    if ((rc = evtchn_bind_ipi(0, &ipi_port[0])))
        xtest_fail("EVTCHNOP_bind_ipi(vcpu 0) = %ld", rc);
    evtchn_attach(ipi_port[0], 0, ipi_handler, (void *)0);
    long rc1 = 1;
    if (!smp_call(1, ipi_bind_on_1, &rc1, 3000))
        xtest_fail("vCPU 1 did not run its work (wake IPI lost?)");
    if (rc1)
        xtest_fail("EVTCHNOP_bind_ipi(vcpu 1) on vCPU 1 = %ld", rc1);
    for (unsigned i = 0; i < 2; i++) {
        struct evtchn_status st;

        rc = evtchn_status(ipi_port[i], &st);
        if (rc || st.status != EVTCHNSTAT_ipi || st.vcpu != i)
            xtest_fail("status(IPI port %u) = %ld: %s vcpu %u, want ipi on vcpu %u",
                       ipi_port[i], rc, evtchn_status_name(st.status), st.vcpu, i);
    }

    ipi_rounds = cmdline_get_u64("rounds", 100);
    ipi_hits[0] = ipi_hits[1] = 0;
    /* Post the pong loop to vCPU 1 without waiting for it. */
    cpus[1].work_fn = pong_loop;
    cpus[1].work_arg = NULL;
    barrier();
    cpus[1].work_seq++;
    evtchn_send(cpus[1].wake_port);

    uint64_t t0 = xen_time_ns();
    for (uint64_t i = 1; i <= ipi_rounds; i++) {
        if ((rc = evtchn_send(ipi_port[1])))
            xtest_fail("round %lu: send to vCPU 1 = %ld", (unsigned long)i, rc);
        if (!wait_ge(&ipi_hits[0], i, 3000)) {
            evtchn_diag("ping", ipi_port[1]);
            evtchn_diag("pong", ipi_port[0]);
            xtest_fail("round %lu: no pong (vCPU 1 saw %lu pings, stopped at %lu)",
                       (unsigned long)i, (unsigned long)ipi_hits[1],
                       (unsigned long)pong_failed_at);
        }
    }
    uint64_t t1 = xen_time_ns();
    if (!wait_ge(&cpus[1].work_done, cpus[1].work_seq, 2000))
        xtest_fail("vCPU 1 did not finish its pong loop");
    if (ipi_wrong_cpu)
        xtest_fail("%lu IPI handlers ran on the wrong vCPU", (unsigned long)ipi_wrong_cpu);
    if (ipi_hits[0] != ipi_rounds || ipi_hits[1] != ipi_rounds)
        xtest_fail("counts: vCPU 0 got %lu, vCPU 1 got %lu, want %lu each",
                   (unsigned long)ipi_hits[0], (unsigned long)ipi_hits[1],
                   (unsigned long)ipi_rounds);
    if (evtchn_last_cpu[ipi_port[0]] != 0 || evtchn_last_cpu[ipi_port[1]] != 1)
        xtest_fail("last handled on vCPUs %u/%u", evtchn_last_cpu[ipi_port[0]],
                   evtchn_last_cpu[ipi_port[1]]);
    printf("xkvm-guest: evtchn-ipi: %lu round trips in %lu us (%s upcalls: vCPU0 %lu, "
           "vCPU1 %lu)\n", (unsigned long)ipi_rounds, (unsigned long)((t1 - t0) / 1000),
           upcall_mode_name(), (unsigned long)cpus[0].nr_upcalls,
           (unsigned long)cpus[1].nr_upcalls);
}
XTEST("evtchn-ipi", test_evtchn_ipi);

/* ---- evtchn-interdomain ------------------------------------------------------------------- */
static volatile uint64_t idom_rx;

static void idom_handler(uint32_t port, void *arg)
{
    idom_rx++;
}

static void test_evtchn_interdomain(void)
{
    char role[16] = "";
    long rc;

    pv_init();
    cmdline_get("role", role, sizeof(role));
    if (!cmdline_get("peer", NULL, 0))
        xtest_fail("needs peer=DOMID");
    domid_t peer = (domid_t)cmdline_get_u64("peer", 0);
    uint64_t count = cmdline_get_u64("count", 10000);
    bool server = !strcmp(role, "server");
    uint32_t port;
    uint64_t base = 0, tx = 0;

    if (server) {
        if ((rc = evtchn_alloc_unbound(peer, &port)))
            xtest_fail("alloc_unbound(remote %u) = %ld", peer, rc);
        evtchn_attach(port, 0, idom_handler, NULL);
        printf("xtest: evtchn-interdomain: port=%u\n", port);
        /* The client's first ping; the watchdog tops out near a minute. */
        for (unsigned i = 0; i < 3 && !idom_rx; i++)
            wait_ge(&idom_rx, 1, 60000);
        if (!idom_rx)
            xtest_fail("no event from the client within 3 minutes");
        struct evtchn_status st;
        rc = evtchn_status(port, &st);
        if (rc || st.status != EVTCHNSTAT_interdomain || st.u.interdomain.dom != peer)
            xtest_fail("status(%u) once bound = %ld: %s dom %u, want interdomain to %u",
                       port, rc, evtchn_status_name(st.status), st.u.interdomain.dom, peer);
    } else if (!strcmp(role, "client")) {
        if (!cmdline_get("port", NULL, 0))
            xtest_fail("client needs port=P");
        uint32_t rport = (uint32_t)cmdline_get_u64("port", 0);

        if ((rc = evtchn_bind_interdomain(peer, rport, &port)))
            xtest_fail("bind_interdomain(%u, %u) = %ld", peer, rport, rc);
        struct evtchn_status st;
        rc = evtchn_status(port, &st);
        if (rc || st.status != EVTCHNSTAT_interdomain || st.u.interdomain.dom != peer ||
            st.u.interdomain.port != rport)
            xtest_fail("status(%u) = %ld: %s dom %u port %u, want interdomain to %u:%u",
                       port, rc, evtchn_status_name(st.status), st.u.interdomain.dom,
                       st.u.interdomain.port, peer, rport);
        evtchn_attach(port, 0, idom_handler, NULL);
        spin_ns(5000000);       /* the event Xen raises locally at bind time */
        base = idom_rx;
        printf("xkvm-guest: evtchn-interdomain: bound local %u to %u:%u (%lu event at "
               "bind)\n", port, peer, rport, (unsigned long)base);
    } else {
        xtest_fail("role=%s: want server or client", role);
    }

    uint64_t t0 = xen_time_ns();
    for (uint64_t i = 1; i <= count; i++) {
        if (!server) {
            if ((rc = evtchn_send(port)))
                xtest_fail("send %lu = %ld", (unsigned long)i, rc);
            tx++;
        }
        if (!wait_ge(&idom_rx, base + i, 10000)) {
            evtchn_diag("interdomain", port);
            xtest_fail("event %lu lost: received %lu, sent %lu", (unsigned long)i,
                       (unsigned long)(idom_rx - base), (unsigned long)tx);
        }
        if (idom_rx != base + i)
            xtest_fail("not alternating: received %lu after sending %lu",
                       (unsigned long)(idom_rx - base), (unsigned long)tx);
        if (server) {
            if ((rc = evtchn_send(port)))
                xtest_fail("send %lu = %ld", (unsigned long)i, rc);
            tx++;
        }
        if (i % 2000 == 0)
            printf("xkvm-guest: evtchn-interdomain: %lu\n", (unsigned long)i);
    }
    uint64_t t1 = xen_time_ns();
    spin_ns(20000000);
    if (idom_rx != base + count)
        xtest_fail("received %lu events, want %lu", (unsigned long)(idom_rx - base),
                   (unsigned long)count);
    uint64_t us = (t1 - t0) / 1000 + 1;
    printf("xkvm-guest: evtchn-interdomain: %s sent %lu received %lu in %lu ms "
           "(%lu round trips/s)\n", server ? "server" : "client", (unsigned long)tx,
           (unsigned long)(idom_rx - base), (unsigned long)(us / 1000),
           (unsigned long)(count * 1000000 / us));
    evtchn_detach(port);
    evtchn_close(port);
}
XTEST("evtchn-interdomain", test_evtchn_interdomain);

/* ---- evtchn-hold: one port of each kind, then wait (for xkvm debug-state) -------------- */
static void test_evtchn_hold(void)
{
    uint32_t a, b, virq, ipi0, ipi1 = 0, unb;
    long rc;

    pv_init();
    if ((rc = evtchn_alloc_unbound(DOMID_SELF, &a)) ||
        (rc = evtchn_bind_interdomain(DOMID_SELF, a, &b)))
        xtest_fail("loopback pair: %ld", rc);
    evtchn_attach(b, 0, NULL, NULL);
    /* a: masked with an event pending. */
    evtchn_send(b);
    if ((rc = evtchn_bind_virq(VIRQ_TIMER, 0, &virq)))
        xtest_fail("bind_virq(VIRQ_TIMER) = %ld", rc);
    evtchn_attach(virq, 0, NULL, NULL);
    if ((rc = evtchn_bind_ipi(0, &ipi0)))
        xtest_fail("bind_ipi(0) = %ld", rc);
    evtchn_attach(ipi0, 0, NULL, NULL);
    if ((rc = evtchn_alloc_unbound(0, &unb)))
        xtest_fail("alloc_unbound(remote 0) = %ld", rc);
    if (smp_nr_vcpus() >= 2) {
        if ((rc = smp_bringup(1)))
            xtest_fail("bringing up vCPU 1: %ld", rc);
        if ((rc = evtchn_bind_ipi(1, &ipi1)))
            xtest_fail("bind_ipi(1) = %ld", rc);
        evtchn_attach(ipi1, 1, NULL, NULL);
    }
    spin_ns(2000000);
    printf("xkvm-guest: evtchn-hold: ready interdomain=%u,%u masked-pending=%u "
           "virq-timer=%u ipi0=%u ipi1=%u unbound0=%u masked=%d pending=%d\n",
           a, b, a, virq, ipi0, ipi1, unb, evtchn_masked(a), evtchn_pending(a));
    uint64_t hold_ms = cmdline_get_u64("hold_ms", 0);
    uint64_t end = xen_time_ns() + hold_ms * 1000000;
    while (!hold_ms || xen_time_ns() < end)
        wait_once(hold_ms ? hold_ms : 60000);
}
XTEST("evtchn-hold", test_evtchn_hold);
