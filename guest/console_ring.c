/*
 * The PV console ring (struct xencons_interface at HVM_PARAM_CONSOLE_PFN, port
 * HVM_PARAM_CONSOLE_EVTCHN), written as Linux's hvc_xen writes it: bytes into out[]
 * at out_prod, out_prod advanced after the bytes, then a notification; input from
 * in[] between in_cons and in_prod.
 *
 * A Xen guest uses the ring whenever it is there. Here it is opt-in (console=ring, or
 * console=both for ring and console_io): the test scripts read RUNDIR/dmesg-N.log,
 * which xkvmd fills from console_io (xkvm-consoled fills console-N.log from the ring),
 * and ring output without a running consoled would be lost. Chosen lazily on the first write once the
 * command line is known; lines printed before that go to console_io.
 *
 * A full ring: notify and yield until there is room, but give up after 20000 yields
 * (seconds) and then drop output (no waiting) until the backend frees space again, so a
 * guest without a console backend still runs.
 */
#include "pv.h"
#include "xtest.h"

#include <xen/hvm/params.h>
#include <xen/io/console.h>

enum { MODE_UNDECIDED, MODE_HYPERCALL, MODE_RING, MODE_BOTH };

static int mode = MODE_UNDECIDED;
static volatile struct xencons_interface *cons;
static uint32_t cons_port;
static bool stalled;
static uint64_t dropped;

static void decide(void)
{
    char buf[16];
    uint64_t pfn = 0, port = 0;

    mode = MODE_HYPERCALL;
    if (!cmdline_get("console", buf, sizeof(buf)))
        return;
    int want = !strcmp(buf, "ring") ? MODE_RING : !strcmp(buf, "both") ? MODE_BOTH :
               MODE_HYPERCALL;

    if (want == MODE_HYPERCALL)
        return;
    if (hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn) || !pfn || pfn >= (IDENT_MAP_LIMIT >> 12) ||
        hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &port) || !port) {
        printf("xkvm-guest: console=%s but no console ring (pfn %#lx port %lu): "
               "console_io only\n", buf, (unsigned long)pfn, (unsigned long)port);
        return;
    }
    cons = (volatile struct xencons_interface *)(uintptr_t)(pfn << 12);
    cons_port = (uint32_t)port;
    mode = want;
    printf("xkvm-guest: console ring at gfn %#lx port %u (%s)\n", (unsigned long)pfn,
           cons_port, want == MODE_RING ? "ring only" : "ring and console_io");
}

bool console_ring_active(void)
{
    return mode == MODE_RING || mode == MODE_BOTH;
}

static void ring_put(const char *s, size_t len)
{
    const uint32_t size = sizeof(cons->out);
    uint64_t spins = 0;

    while (len) {
        uint32_t c = __atomic_load_n(&cons->out_cons, __ATOMIC_ACQUIRE);
        uint32_t p = cons->out_prod;
        uint32_t space = size - (p - c);

        if (p - c > size) {             /* a broken backend: stop using the ring */
            mode = MODE_HYPERCALL;
            return;
        }
        if (!space) {
            if (stalled)
                break;
            evtchn_send(cons_port);
            /* Counted in yields: this may run before pv_init (no Xen time yet). */
            if (++spins > 20000) {
                stalled = true;
                break;
            }
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        stalled = false;
        uint32_t n = 0;

        while (n < space && n < len) {
            cons->out[(p + n) % size] = s[n];
            n++;
        }
        __atomic_store_n(&cons->out_prod, p + n, __ATOMIC_RELEASE);
        s += n;
        len -= n;
    }
    dropped += len;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    evtchn_send(cons_port);
}

bool console_ring_write(const char *s, size_t len)
{
    if (mode == MODE_UNDECIDED) {
        if (!boot.cmdline || !xen.present)
            return false;               /* too early: console_io */
        decide();
    }
    if (mode == MODE_HYPERCALL)
        return false;
    ring_put(s, len);
    return mode == MODE_RING;
}

size_t console_ring_read(char *buf, size_t len)
{
    if (!console_ring_active())
        return 0;
    const uint32_t size = sizeof(cons->in);
    uint32_t c = cons->in_cons;
    uint32_t p = __atomic_load_n(&cons->in_prod, __ATOMIC_ACQUIRE);
    size_t n = 0;

    if (p - c > size)
        return 0;
    while (c != p && n < len)
        buf[n++] = cons->in[c++ % size];
    if (n) {
        __atomic_store_n(&cons->in_cons, c, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        evtchn_send(cons_port);
    }
    return n;
}
