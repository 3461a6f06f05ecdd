/*
 * net: netfront against xkvm-netback and an echo responder on the host side of the
 * TAP device (tests/kvm/netback.sh).
 *
 * Connects to device/vif/<vif=> (default 0; split=1: split event channels), prints
 * `xtest: net: mac=...`, then per round sends count= frames (default 200) of size=
 * bytes (default 128, 60..1514) to the broadcast address, ethertype 0x88B5, in
 * bursts of 8, and after each burst collects the echoes (the responder swaps the
 * addresses and sends the frame back) for up to echo_wait= ms (default 500). Each echo
 * carry the payload we sent: a frame to our MAC of ethertype 0x88B5 that does not
 * is counted bad (other frames, e.g. other guests' broadcasts, are ignored). Prints `xtest: net: round K sent S received R lost L bad B` per round.
 * loop=N rounds (default 1); loop=0 repeats until the node data/net-stop exists.
 * Passes if nothing was bad and at most max_lost= (default 0) frames were lost in
 * all; prints `xtest: net: total sent S received R lost L bad B` first.
 * hostile=1: then break the tx ring (a req_prod beyond the ring's size, notified),
 * print `xtest: net: broke the tx ring`, wait a second and pass (the suite checks
 * that netback halted only this vif).
 *
 * Payload: "XKVMNET" NUL, round (u32 LE), seq (u32 LE), then byte i (from 16) =
 * (seq * 31 + i * 7 + round) mod 256. Filled and checked at CPL3 (run_user).
 */
#include "../pv.h"
#include "../xtest.h"

#define ETHERTYPE 0x88B5
#define BURST 8
#define LATE (~0ULL)            /* check(): an intact echo of an earlier round */

struct net_job {
    uint8_t *frame;
    size_t len;
    uint32_t round, seq;
    const uint8_t *mac;
};

static uint64_t fill(uint64_t arg)
{
    const struct net_job *j = (const struct net_job *)arg;
    uint8_t *f = j->frame, *p = f + 14;

    for (int i = 0; i < 6; i++)
        f[i] = 0xff, f[6 + i] = j->mac[i];
    f[12] = ETHERTYPE >> 8, f[13] = ETHERTYPE & 0xff;
    static const char magic[8] = "XKVMNET";
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)magic[i];
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (uint8_t)(j->round >> (8 * i));
        p[12 + i] = (uint8_t)(j->seq >> (8 * i));
    }
    for (size_t i = 16; i < j->len - 14; i++)
        p[i] = (uint8_t)(j->seq * 31 + i * 7 + j->round);
    return 0;
}

/* An echo: 1 + its seq if it is one of ours and intact, 0 if bad. */
static uint64_t check(uint64_t arg)
{
    const struct net_job *j = (const struct net_job *)arg;
    const uint8_t *f = j->frame, *p = f + 14;

    if (j->len < 14 + 16 || f[12] != (ETHERTYPE >> 8) || f[13] != (ETHERTYPE & 0xff))
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
    for (size_t i = 16; i < j->len - 14; i++)
        if (p[i] != (uint8_t)(seq * 31 + i * 7 + round))
            return 0;
    return round == j->round ? 1 + (uint64_t)seq : LATE;
}

struct tally {
    uint64_t sent, received, lost, bad, dup;
};

static void run_round(struct netfront *nf, uint32_t round, uint64_t count, size_t size,
                      uint64_t wait_ms, struct tally *t)
{
    static uint8_t frame[1536], echo[1536];
    static uint8_t got[4096];
    struct tally r = { 0 };
    int rc;

    if (count > sizeof(got))
        count = sizeof(got);
    memset(got, 0, count);
    for (uint64_t base = 0; base < count; base += BURST) {
        uint64_t n = count - base < BURST ? count - base : BURST, want = 0;
        for (uint64_t s = base; s < base + n; s++) {
            struct net_job j = { frame, size, round, (uint32_t)s, nf->mac };
            run_user(fill, (uint64_t)(uintptr_t)&j);
            if ((rc = netfront_send(nf, frame, size)))
                xtest_fail("send of frame %lu: %s", (unsigned long)s, xs_errname(rc));
            r.sent++;
            want++;
        }
        uint64_t deadline = xen_time_ns() + wait_ms * 1000000ULL;
        while (want && xen_time_ns() < deadline) {
            int len = netfront_recv(nf, echo, sizeof(echo), wait_ms);
            if (len <= 0)
                break;
            struct net_job j = { echo, (size_t)len, round, 0, nf->mac };
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
                if (len >= 14 && echo[12] == (ETHERTYPE >> 8) &&
                    echo[13] == (ETHERTYPE & 0xff) && !memcmp(echo, nf->mac, 6))
                    r.bad++;
                continue;
            }
            got[v - 1] = 1;
            r.received++;
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

    if (size < 60 || size > 1514)
        xtest_fail("size=%lu: 60 .. 1514", (unsigned long)size);
    if ((rc = netfront_connect(&nf, vif, split)))
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
    if (t.bad)
        xtest_fail("%lu bad echoes", (unsigned long)t.bad);
    if (cmdline_get_u64("hostile", 0)) {
        netfront_break_tx(&nf);
        printf("xtest: net: broke the tx ring\n");
        uint64_t until = xen_time_ns() + 1000000000ULL;
        while (xen_time_ns() < until)
            netfront_recv(&nf, tmp, sizeof(tmp), 100);
    }
    if (t.lost > max_lost)
        xtest_fail("%lu frames lost (max_lost=%lu)", (unsigned long)t.lost,
                   (unsigned long)max_lost);
}
XTEST("net", test_net);
