/*
 * evtchn-dom0: an event channel to a dom0 service, bound through xkvmd's dom0 socket
 * (tests/kvm/dom0-iface.sh drives the service side with xkvm-dom0-probe).
 *
 * The guest allocates a port unbound for domid 0 and, for the service's refusal
 * checks, a loopback pair (A unbound for ourselves, B interdomain to A), and prints
 *     xtest: evtchn-dom0: port=P self-unbound=A interdomain=B
 * Then, rounds=R times (default 1): the service binds P and sends; the guest answers
 * every event with EVTCHNOP_send on P, count=N times (default 100), in strict
 * alternation; P is interdomain to dom0 meanwhile. The service then unbinds (or just
 * goes away): the guest waits until EVTCHNOP_status says P is unbound for domid 0
 * again, checks no event came after the last one, and prints
 *     xkvm-guest: evtchn-dom0: round R unbound
 * After the last round, PASS.
 */
#include "../pv.h"
#include "../xtest.h"

static volatile uint64_t rx;

static void handler(uint32_t port, void *arg)
{
    rx++;
}

static struct evtchn_status status_of(uint32_t port)
{
    struct evtchn_status st;
    long rc = evtchn_status(port, &st);

    if (rc)
        xtest_fail("EVTCHNOP_status(%u) = %ld", port, rc);
    return st;
}

static bool unbound_for_dom0(uint32_t port)
{
    struct evtchn_status st = status_of(port);

    return st.status == EVTCHNSTAT_unbound && st.u.unbound.dom == 0;
}

static void yield(void)
{
    HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

static void test_evtchn_dom0(void)
{
    uint32_t port, pair_a, self_b, self_a;
    long rc;

    pv_init();
    uint64_t count = cmdline_get_u64("count", 100);
    uint64_t rounds = cmdline_get_u64("rounds", 1);
    if (!count || !rounds)
        xtest_fail("count=%lu rounds=%lu: want both >= 1", (unsigned long)count,
                   (unsigned long)rounds);
    if ((rc = evtchn_alloc_unbound(0, &port)))
        xtest_fail("EVTCHNOP_alloc_unbound(remote 0) = %ld", rc);
    if (!unbound_for_dom0(port))
        xtest_fail("port %u: status %s, want unbound for domid 0", port,
                   evtchn_status_name(status_of(port).status));
    if ((rc = evtchn_alloc_unbound(DOMID_SELF, &pair_a)) ||
        (rc = evtchn_bind_interdomain(DOMID_SELF, pair_a, &self_b)))
        xtest_fail("loopback pair: %ld", rc);
    if ((rc = evtchn_alloc_unbound(DOMID_SELF, &self_a)))
        xtest_fail("alloc_unbound(DOMID_SELF) = %ld", rc);
    evtchn_attach(port, 0, handler, NULL);
    printf("xtest: evtchn-dom0: port=%u self-unbound=%u interdomain=%u\n", port, self_a,
           self_b);

    for (uint64_t r = 1; r <= rounds; r++) {
        uint64_t base = rx, tx = 0, t0 = 0;
        for (uint64_t i = 1; i <= count; i++) {
            /* The first event waits for the service to come (up to ~3 minutes). */
            for (unsigned k = 0; k < (i == 1 ? 3 : 1) && rx < base + i; k++)
                wait_ge(&rx, base + i, i == 1 ? 60000 : 10000);
            if (rx < base + i)
                xtest_fail("round %lu: event %lu from dom0 lost: received %lu, sent %lu "
                           "(pending=%d masked=%d)", (unsigned long)r, (unsigned long)i,
                           (unsigned long)(rx - base), (unsigned long)tx,
                           evtchn_pending(port), evtchn_masked(port));
            if (rx != base + i)
                xtest_fail("round %lu: not alternating: received %lu after sending %lu",
                           (unsigned long)r, (unsigned long)(rx - base), (unsigned long)tx);
            if (i == 1) {
                t0 = xen_time_ns();
                struct evtchn_status st = status_of(port);
                if (st.status != EVTCHNSTAT_interdomain || st.u.interdomain.dom != 0)
                    xtest_fail("round %lu: port %u bound by dom0: status %s dom %u, want "
                               "interdomain to 0", (unsigned long)r, port,
                               evtchn_status_name(st.status), st.u.interdomain.dom);
            }
            if ((rc = evtchn_send(port)))
                xtest_fail("round %lu: send %lu = %ld", (unsigned long)r,
                           (unsigned long)i, rc);
            tx++;
        }
        uint64_t t1 = xen_time_ns();
        printf("xkvm-guest: evtchn-dom0: round %lu: %lu round trips in %lu us\n",
               (unsigned long)r, (unsigned long)count, (unsigned long)((t1 - t0) / 1000));

        /* The service unbinds or goes away: the port waits for dom0 again. */
        uint64_t end = xen_time_ns() + 60000000000ull;
        while (!unbound_for_dom0(port)) {
            if (xen_time_ns() > end)
                xtest_fail("round %lu: port %u still %s 60 s after the last event",
                           (unsigned long)r, port,
                           evtchn_status_name(status_of(port).status));
            yield();
        }
        spin_ns(20000000);      /* anything late (a stale binding) would arrive now */
        if (rx != base + count)
            xtest_fail("round %lu: %lu events, want %lu", (unsigned long)r,
                       (unsigned long)(rx - base), (unsigned long)count);
        /* Unbound again: a send is dropped, as Xen does for an unbound port. */
        if ((rc = evtchn_send(port)))
            xtest_fail("send on the unbound port = %ld, want 0", rc);
        printf("xkvm-guest: evtchn-dom0: round %lu unbound\n", (unsigned long)r);
    }
    evtchn_detach(port);
    if ((rc = evtchn_close(port)))
        xtest_fail("EVTCHNOP_close(%u) = %ld", port, rc);
}
XTEST("evtchn-dom0", test_evtchn_dom0);
