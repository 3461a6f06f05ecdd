/*
 * console-echo: the PV console ring as tests/kvm/consoled.sh drives it, with a writer
 * that waits as long as it takes (up to a minute) for xkvm-consoled to drain the ring,
 * so a backend that is killed and restarted mid-output loses nothing. Writes lines=N
 * numbered lines ("ring: line I of N") into the out ring, then waits for one line of
 * input on the in ring, echoes it into the out ring ("ring: echo LINE") and on
 * console_io ("xkvm-guest: console-echo: got LINE"), and passes.
 */
#include "pv.h"
#include "xtest.h"

#include <xen/hvm/params.h>
#include <xen/io/console.h>

#define WAIT_NS (60ull * 1000000000ull)

static volatile struct xencons_interface *ring;
static uint32_t port;

static void ring_write(const char *s, size_t len)
{
    const uint32_t size = sizeof(ring->out);
    uint64_t deadline = xen_time_ns() + WAIT_NS;
    while (len) {
        uint32_t c = __atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE);
        uint32_t p = ring->out_prod;
        if (p - c > size)
            xtest_fail("the backend broke the out ring (cons %u prod %u)", c, p);
        uint32_t space = size - (p - c);
        if (!space) {
            evtchn_send(port);
            if (xen_time_ns() > deadline)
                xtest_fail("console out ring full for 60 s");
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        uint32_t n = 0;
        while (n < space && n < len) {
            ring->out[(p + n) % size] = s[n];
            n++;
        }
        __atomic_store_n(&ring->out_prod, p + n, __ATOMIC_RELEASE);
        s += n;
        len -= n;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    evtchn_send(port);
}

/* One line of input (without its newline), waiting up to a minute for it. */
static size_t ring_read_line(char *buf, size_t len)
{
    const uint32_t size = sizeof(ring->in);
    uint64_t deadline = xen_time_ns() + WAIT_NS;
    size_t n = 0;
    for (;;) {
        uint32_t c = ring->in_cons;
        uint32_t p = __atomic_load_n(&ring->in_prod, __ATOMIC_ACQUIRE);
        if (p - c > size)
            xtest_fail("the backend broke the in ring (cons %u prod %u)", c, p);
        bool eol = false;
        while (c != p && !eol) {
            char ch = ring->in[c++ % size];
            if (ch == '\n' || ch == '\r')
                eol = true;
            else if (n + 1 < len)
                buf[n++] = ch >= ' ' && ch <= '~' ? ch : '.';
        }
        __atomic_store_n(&ring->in_cons, c, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        evtchn_send(port);
        if (eol)
            break;
        if (xen_time_ns() > deadline)
            xtest_fail("no input line on the console ring for 60 s (%zu bytes)", n);
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    buf[n] = '\0';
    return n;
}

static void test_console_echo(void)
{
    uint64_t pfn = 0, p = 0;
    char line[96], in[80];

    XTEST_NEED_XEN();
    pv_init();
    if (hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn) || !pfn || pfn >= (IDENT_MAP_LIMIT >> 12) ||
        hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &p) || !p)
        xtest_fail("no console ring (pfn %#lx port %lu)", (unsigned long)pfn,
                   (unsigned long)p);
    ring = (volatile struct xencons_interface *)(uintptr_t)(pfn << 12);
    port = (uint32_t)p;
    uint64_t lines = cmdline_get_u64("lines", 100);
    printf("xkvm-guest: console-echo: %lu lines into the ring at gfn %#lx port %u\n",
           (unsigned long)lines, (unsigned long)pfn, port);
    for (uint64_t i = 1; i <= lines; i++) {
        int len = snprintf(line, sizeof(line), "ring: line %06lu of %06lu\n",
                           (unsigned long)i, (unsigned long)lines);
        ring_write(line, (size_t)len);
    }
    /* Drained before console_io speaks again, so the log's lines do not interleave. */
    uint64_t deadline = xen_time_ns() + WAIT_NS;
    while (__atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE) != ring->out_prod) {
        if (xen_time_ns() > deadline)
            xtest_fail("console out ring not drained for 60 s");
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printf("xkvm-guest: console-echo: waiting for input\n");
    ring_read_line(in, sizeof(in));
    int len = snprintf(line, sizeof(line), "ring: echo %s\n", in);
    ring_write(line, (size_t)len);
    while (__atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE) != ring->out_prod &&
           xen_time_ns() < deadline + WAIT_NS)
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    printf("xkvm-guest: console-echo: got %s\n", in);
}
XTEST("console-echo", test_console_echo);

/*
 * console-hostile: a guest that breaks its own out ring (out_prod far ahead of
 * out_cons) must only hurt itself: the backend resets the ring (out_cons = out_prod)
 * and serves it again. Then one line ("ring: after reset") through the repaired ring.
 */
static void test_console_hostile(void)
{
    uint64_t pfn = 0, p = 0;

    XTEST_NEED_XEN();
    pv_init();
    if (hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn) || !pfn || pfn >= (IDENT_MAP_LIMIT >> 12) ||
        hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &p) || !p)
        xtest_fail("no console ring");
    ring = (volatile struct xencons_interface *)(uintptr_t)(pfn << 12);
    port = (uint32_t)p;
    uint32_t bad = ring->out_cons + 0x12345678u;
    __atomic_store_n(&ring->out_prod, bad, __ATOMIC_RELEASE);
    evtchn_send(port);
    uint64_t deadline = xen_time_ns() + WAIT_NS / 6;
    while (__atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE) != bad) {
        if (xen_time_ns() > deadline)
            xtest_fail("the backend did not reset the broken ring in 10 s (cons %u prod %u)",
                       ring->out_cons, ring->out_prod);
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printf("xkvm-guest: console-hostile: backend reset the ring\n");
    static const char line[] = "ring: after reset\n";
    ring_write(line, sizeof(line) - 1);
    while (__atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE) != ring->out_prod) {
        if (xen_time_ns() > deadline + WAIT_NS)
            xtest_fail("console out ring not drained after the reset");
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}
XTEST("console-hostile", test_console_hostile);
