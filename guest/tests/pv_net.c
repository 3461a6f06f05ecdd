/*
 * net: netfront against xkvm-netback and an echo responder on the host side of the
 * TAP device (tests/kvm/netback.sh).
 *
 * Connects to device/vif/<vif=> (default 0; split=1: split event channels; queues=N
 * netif queues, default 2 with 2 or more vCPUs else one without the
 * multi-queue-num-queues node, as many as the backend offers at most), prints
 * `xtest: net: mac=...`, then per round sends count= frames (default 200) of size=
 * bytes (default 128, 88..1514) to the broadcast address, ethertype 0x88B5, in
 * bursts of 8, and after each burst collects the echoes (the responder swaps the
 * addresses and sends the frame back) for up to echo_wait= ms (default 500). Each echo
 * carry the payload we sent: a frame to our MAC of ethertype 0x88B5 that does not
 * is counted bad (other frames, e.g. other guests' broadcasts, are ignored). Prints `xtest: net: round K sent S received R lost L bad B` per round.
 * loop=N rounds (default 1); loop=0 repeats until the node data/net-stop exists.
 * Passes if nothing was bad and at most max_lost= (default 0) frames were lost in
 * all; prints `xtest: net: total sent S received R lost L bad B` first.
 * queues_over=1: ask for 9 queues (more than netback ever offers) and pass if the
 * backend refuses (goes to Closing): `xtest: net: asked 9 queues of M offered: refused`.
 * hostile=1: then break the tx ring (a req_prod beyond the ring's size, notified),
 * print `xtest: net: broke the tx ring`, wait a second and pass (the suite checks
 * that netback halted only this vif).
 *
 * Payload: "XKVMNET" NUL, round (u32 LE), seq (u32 LE), then byte i (from 16) =
 * (seq * 31 + i * 7 + round) mod 256. Filled and checked at CPL3 (run_user).
 *
 * With several queues, frame seq goes out on queue seq mod N, and it is an IPv4/UDP
 * broadcast (10.0.0.1 -> 255.255.255.255, source port 40000 + queue, destination
 * port 0x88B5, the payload above behind the UDP header): the TAP device's flow
 * steering (tun's automq) sends a flow's frames back to the queue that last sent it,
 * so each queue's echoes come back on it. Prints per queue at the end
 * `xtest: net: queue Q sent S received R same R2` (R2: echoes on the queue they left).
 */
#include "../pv.h"
#include "../xtest.h"

#define ETHERTYPE 0x88B5
#define BURST 8
#define LATE (~0ULL)            /* check(): an intact echo of an earlier round */

#define UDP_HDR (20 + 8)        /* IPv4 and UDP headers, multi-queue frames */

struct net_job {
    uint8_t *frame;
    size_t len;
    uint32_t round, seq;
    const uint8_t *mac;
    unsigned queue;             /* fill: the UDP source port's; check: unused */
    bool udp;                   /* IPv4/UDP frames (several queues) */
};

static void fill_udp(uint8_t *ip, size_t len, unsigned queue)
{
    static const uint8_t hdr[20] = { 0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0,
                                     10, 0, 0, 1, 255, 255, 255, 255 };
    for (int i = 0; i < 20; i++)
        ip[i] = hdr[i];
    ip[2] = (uint8_t)(len >> 8), ip[3] = (uint8_t)len;
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += (uint32_t)ip[i] << 8 | ip[i + 1];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = (uint8_t)(~sum >> 8), ip[11] = (uint8_t)~sum;
    uint8_t *u = ip + 20;
    unsigned sport = 40000 + queue, ulen = (unsigned)len - 20;
    u[0] = (uint8_t)(sport >> 8), u[1] = (uint8_t)sport;
    u[2] = ETHERTYPE >> 8, u[3] = ETHERTYPE & 0xff;
    u[4] = (uint8_t)(ulen >> 8), u[5] = (uint8_t)ulen;
    u[6] = u[7] = 0;                    /* no UDP checksum */
}

static uint64_t fill(uint64_t arg)
{
    const struct net_job *j = (const struct net_job *)arg;
    uint8_t *f = j->frame, *p = f + 14 + (j->udp ? UDP_HDR : 0);
    size_t plen = j->len - (size_t)(p - f);

    for (int i = 0; i < 6; i++)
        f[i] = 0xff, f[6 + i] = j->mac[i];
    f[12] = ETHERTYPE >> 8, f[13] = ETHERTYPE & 0xff;
    if (j->udp) {
        f[12] = 0x08, f[13] = 0x00;
        fill_udp(f + 14, j->len - 14, j->queue);
    }
    static const char magic[8] = "XKVMNET";
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)magic[i];
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (uint8_t)(j->round >> (8 * i));
        p[12 + i] = (uint8_t)(j->seq >> (8 * i));
    }
    for (size_t i = 16; i < plen; i++)
        p[i] = (uint8_t)(j->seq * 31 + i * 7 + j->round);
    return 0;
}

/* Our kind of frame: ethertype 0x88B5, or IPv4/UDP to port 0x88B5. */
static bool is_ours(const uint8_t *f, bool udp)
{
    if (!udp)
        return f[12] == (ETHERTYPE >> 8) && f[13] == (ETHERTYPE & 0xff);
    return f[12] == 0x08 && f[13] == 0x00 && f[14 + 9] == 17 &&
           f[14 + 22] == (ETHERTYPE >> 8) && f[14 + 23] == (ETHERTYPE & 0xff);
}

/* An echo: 1 + its seq if it is one of ours and intact, 0 if bad. */
static uint64_t check(uint64_t arg)
{
    const struct net_job *j = (const struct net_job *)arg;
    size_t off = 14 + (j->udp ? UDP_HDR : 0);
    const uint8_t *f = j->frame, *p = f + off;

    if (j->len < off + 16 || !is_ours(f, j->udp))
        return 0;
    for (int i = 0; i < 6; i++)
        if (f[i] != j->mac[i])
            return 0;
    uint32_t round = 0, seq = 0;
    for (int i = 0; i < 4; i++) {
        round |= (uint32_t)p[8 + i] << (8 * i);
        seq |= (uint32_t)p[12 + i] << (8 * i);
    }
    if (p[0] != 'X' || p[6] != 'T')
        return 0;
    for (size_t i = 16; i < j->len - off; i++)
        if (p[i] != (uint8_t)(seq * 31 + i * 7 + round))
            return 0;
    return round == j->round ? 1 + (uint64_t)seq : LATE;
}

struct tally {
    uint64_t sent, received, lost, bad, dup;
    uint64_t q_sent[NF_MAX_QUEUES], q_received[NF_MAX_QUEUES], q_same[NF_MAX_QUEUES];
};

static void run_round(struct netfront *nf, uint32_t round, uint64_t count, size_t size,
                      uint64_t wait_ms, struct tally *t)
{
    static uint8_t frame[1536], echo[1536];
    static uint8_t got[4096];
    struct tally r = { 0 };
    bool udp = nf->nr_queues > 1;
    int rc;

    if (count > sizeof(got))
        count = sizeof(got);
    memset(got, 0, count);
    for (uint64_t base = 0; base < count; base += BURST) {
        uint64_t n = count - base < BURST ? count - base : BURST, want = 0;
        for (uint64_t s = base; s < base + n; s++) {
            unsigned q = (unsigned)(s % nf->nr_queues);
            struct net_job j = { frame, size, round, (uint32_t)s, nf->mac, q, udp };
            run_user(fill, (uint64_t)(uintptr_t)&j);
            if ((rc = netfront_send(nf, q, frame, size)))
                xtest_fail("send of frame %lu: %s", (unsigned long)s, xs_errname(rc));
            r.sent++;
            t->q_sent[q]++;
            want++;
        }
        uint64_t deadline = xen_time_ns() + wait_ms * 1000000ULL;
        while (want && xen_time_ns() < deadline) {
            unsigned q = 0;
            int len = netfront_recv(nf, echo, sizeof(echo), wait_ms, &q);
            if (len <= 0)
                break;
            struct net_job j = { echo, (size_t)len, round, 0, nf->mac, 0, udp };
            uint64_t v = (size_t)len == size ? run_user(check, (uint64_t)(uintptr_t)&j) : 0;
            if (v == LATE || (v && v - 1 < count && got[v - 1])) {
                /* Replayed across a backend restart or a move, or held up (in the
                 * TAP's queue while no backend served it) past its round. */
                r.dup++;
                continue;
            }
            if (v == 0 || v - 1 >= count) {
                /* Not for us (the host's, other guests' broadcasts) is ignored; an
                 * echo to us that is wrong is bad. */
                if (len >= 14 + UDP_HDR && is_ours(echo, udp) && !memcmp(echo, nf->mac, 6))
                    r.bad++;
                continue;
            }
            got[v - 1] = 1;
            r.received++;
            t->q_received[q]++;
            if ((v - 1) % nf->nr_queues == q)
                t->q_same[q]++;
            if (v - 1 >= base)
                want--;
        }
    }
    r.lost = r.sent - r.received;
    printf("xtest: net: round %u sent %lu received %lu lost %lu bad %lu dup %lu\n", round,
           (unsigned long)r.sent, (unsigned long)r.received, (unsigned long)r.lost,
           (unsigned long)r.bad, (unsigned long)r.dup);
    t->sent += r.sent, t->received += r.received, t->lost += r.lost, t->bad += r.bad;
    t->dup += r.dup;
}

static void test_net(void)
{
    struct netfront nf;
    struct tally t = { 0 };
    char tmp[8];
    int rc;

    XTEST_NEED_XEN();
    unsigned vif = (unsigned)cmdline_get_u64("vif", 0);
    bool split = cmdline_get_u64("split", 0) != 0;
    uint64_t count = cmdline_get_u64("count", 200);
    uint64_t size = cmdline_get_u64("size", 128);
    uint64_t loops = cmdline_get_u64("loop", 1);
    uint64_t wait_ms = cmdline_get_u64("echo_wait", 500);
    uint64_t max_lost = cmdline_get_u64("max_lost", 0);

    if (size < 60 + UDP_HDR || size > 1514)
        xtest_fail("size=%lu: 88 .. 1514", (unsigned long)size);
    unsigned queues = (unsigned)cmdline_get_u64("queues", smp_nr_vcpus() >= 2 ? 2 : 0);
    if (cmdline_get_u64("queues_over", 0)) {
        /* Hostile: one queue more than offered; the backend must go to Closing. */
        rc = netfront_connect(&nf, vif, split, NETFRONT_QUEUES_UNCHECKED | 9);
        printf("xtest: net: asked 9 queues of %u offered: %s\n", nf.max_queues,
               rc == -XEN_EIO ? "refused" : rc ? xs_errname(rc) : "connected");
        if (rc != -XEN_EIO)
            xtest_fail("9 queues of %u offered: not refused (%s)", nf.max_queues,
                       rc ? xs_errname(rc) : "connected");
        return;
    }
    if ((rc = netfront_connect(&nf, vif, split, queues)))
        xtest_fail("netfront_connect(%u): %s", vif, xs_errname(rc));
    printf("xtest: net: mac=%02x:%02x:%02x:%02x:%02x:%02x\n", nf.mac[0], nf.mac[1],
           nf.mac[2], nf.mac[3], nf.mac[4], nf.mac[5]);
    for (uint64_t k = 0; !loops || k < loops; k++) {
        run_round(&nf, (uint32_t)k + 1, count, (size_t)size, wait_ms, &t);
        if (!loops && xs_read(0, "data/net-stop", tmp, sizeof(tmp)) >= 0)
            break;
    }
    printf("xtest: net: total sent %lu received %lu lost %lu bad %lu dup %lu (tx errors "
           "%lu, rx errors %lu)\n", (unsigned long)t.sent, (unsigned long)t.received,
           (unsigned long)t.lost, (unsigned long)t.bad, (unsigned long)t.dup,
           (unsigned long)nf.tx_errors, (unsigned long)nf.rx_errors);
    for (unsigned q = 0; nf.nr_queues > 1 && q < nf.nr_queues; q++)
        printf("xtest: net: queue %u sent %lu received %lu same %lu\n", q,
               (unsigned long)t.q_sent[q], (unsigned long)t.q_received[q],
               (unsigned long)t.q_same[q]);
    if (t.bad)
        xtest_fail("%lu bad echoes", (unsigned long)t.bad);
    if (cmdline_get_u64("hostile", 0)) {
        netfront_break_tx(&nf);
        printf("xtest: net: broke the tx ring\n");
        uint64_t until = xen_time_ns() + 1000000000ULL;
        while (xen_time_ns() < until)
            netfront_recv(&nf, tmp, sizeof(tmp), 100, NULL);
    }
    if (t.lost > max_lost)
        xtest_fail("%lu frames lost (max_lost=%lu)", (unsigned long)t.lost,
                   (unsigned long)max_lost);
}
XTEST("net", test_net);

/*
 * net-bench: the guest-side network figure (bench/bench-net-guest.sh,
 * docs/performance.md). Connects as test=net does (queues= likewise), then per phase
 * prints `xtest: net-bench: NAME start`, runs seconds= (default 2) and prints
 * `xtest: net-bench: NAME frames N bytes B ns T`:
 *   tx-60, tx-1514   frames of that size (broadcast, ethertype 0x88B5, filled once)
 *                    sent as fast as netfront takes them, round robin over the queues
 *   rx-60, rx-1514   data/net-bench-rx set to the size (the host then floods the TAP
 *                    device with such frames); every frame that arrives is counted
 *                    (netfront copies it out)
 * then data/net-bench-rx = "done", and passes. First it prints what one frame's guest
 * work costs: `xtest: net-bench: costs ns memcpy-60 A memcpy-1514 B evtchn-send C`.
 */
static void bench_tx(struct netfront *nf, size_t size, uint64_t secs)
{
    static uint8_t frame[1536];
    struct net_job j = { frame, size, 0, 0, nf->mac, 0, false };
    run_user(fill, (uint64_t)(uintptr_t)&j);
    printf("xtest: net-bench: tx-%lu start\n", (unsigned long)size);
    uint64_t n = 0, t0 = xen_time_ns(), end = t0 + secs * 1000000000ULL, t;
    int rc;
    do {
        for (unsigned k = 0; k < 16; k++, n++)
            if ((rc = netfront_send(nf, (unsigned)(n % nf->nr_queues), frame, size)))
                xtest_fail("net-bench: send: %s", xs_errname(rc));
        t = xen_time_ns();
    } while (t < end);
    printf("xtest: net-bench: tx-%lu frames %lu bytes %lu ns %lu\n", (unsigned long)size,
           (unsigned long)n, (unsigned long)(n * size), (unsigned long)(t - t0));
}

static void bench_rx(struct netfront *nf, size_t size, uint64_t secs)
{
    static uint8_t buf[1536];
    int rc;
    if ((rc = xs_printf(0, "data/net-bench-rx", "%lu", (unsigned long)size)))
        xtest_fail("net-bench: write data/net-bench-rx: %s", xs_errname(rc));
    printf("xtest: net-bench: rx-%lu start\n", (unsigned long)size);
    /* From the first frame of this size on (the host's flood starts after the node). */
    uint64_t n = 0, bytes = 0, t0 = 0, end = 0, t = 0;
    uint64_t give_up = xen_time_ns() + 10000000000ULL;
    for (;;) {
        int len = netfront_recv(nf, buf, sizeof(buf), 100, NULL);
        t = xen_time_ns();
        if (len == (int)size && !t0) {
            t0 = t;
            end = t0 + secs * 1000000000ULL;
        }
        if (t0 && len > 0)
            n++, bytes += (uint64_t)len;
        if ((t0 && t >= end) || (!t0 && t >= give_up))
            break;
    }
    printf("xtest: net-bench: rx-%lu frames %lu bytes %lu ns %lu\n", (unsigned long)size,
           (unsigned long)n, (unsigned long)bytes, (unsigned long)(t0 ? t - t0 : 0));
}

/*
 * What one frame's guest work costs here: a copy of 60 and 1514 bytes into a tx buffer
 * (kernel code: emulated under kvm-pvm), and one event channel send (a hypercall).
 */
static void bench_costs(struct netfront *nf)
{
    static uint8_t a[1536], b[1536];
    uint64_t ns[3];
    for (int k = 0; k < 3; k++) {
        uint64_t t0 = xen_time_ns();
        for (int i = 0; i < 100; i++) {
            if (k < 2)
                memcpy(b, a, k ? 1514 : 60);
            else
                evtchn_send(nf->q[0].tx_port);
            __asm__ volatile("" : : "r"(b) : "memory");
        }
        ns[k] = (xen_time_ns() - t0) / 100;
    }
    printf("xtest: net-bench: costs ns memcpy-60 %lu memcpy-1514 %lu evtchn-send %lu\n",
           (unsigned long)ns[0], (unsigned long)ns[1], (unsigned long)ns[2]);
}

static void test_net_bench(void)
{
    struct netfront nf;
    int rc;

    XTEST_NEED_XEN();
    uint64_t secs = cmdline_get_u64("seconds", 2);
    unsigned queues = (unsigned)cmdline_get_u64("queues", smp_nr_vcpus() >= 2 ? 2 : 0);
    if ((rc = netfront_connect(&nf, (unsigned)cmdline_get_u64("vif", 0), false, queues)))
        xtest_fail("netfront_connect: %s", xs_errname(rc));
    printf("xtest: net-bench: queues %u\n", nf.nr_queues);
    bench_costs(&nf);
    bench_tx(&nf, 60, secs);
    bench_tx(&nf, 1514, secs);
    bench_rx(&nf, 60, secs);
    bench_rx(&nf, 1514, secs);
    xs_write(0, "data/net-bench-rx", "done");
    if (nf.tx_errors || nf.rx_errors)
        xtest_fail("net-bench: %lu tx errors, %lu rx errors", (unsigned long)nf.tx_errors,
                   (unsigned long)nf.rx_errors);
}
XTEST("net-bench", test_net_bench);
