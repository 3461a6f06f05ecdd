/*
 * Network backend benchmarks (docs/netback.md): one JSON line per figure, each beside
 * a reference measured in the same run.
 *
 *   tx_SIZE   xkvm-netback's transmit path (src/dom0/netback/netring.c) driven by a
 *             frontend in this process (netsim.h): granted pages are plain memory (no
 *             MAP_GRANT round trips), each frame copied out of its slot(s) behind a
 *             virtio-net header and written into a TAP device. Reference: writing the
 *             same frames into the same TAP device directly. Frames of 64, 1514 and
 *             9000 bytes (three slots).
 *   rx_SIZE   the receive path: frames put into posted rx buffers (response, copy,
 *             push). Reference: memcpy of the same bytes.
 *
 * The TAP device lives in a network namespace of the benchmark's own (unshare): no
 * device of the host is touched. Without root or /dev/net/tun the tx figures are
 * skipped with a JSON line saying why. "ratio" is time / reference time. The guest's
 * own figure (test=net-bench through xkvmd) is bench/bench-net-guest.sh's.
 *
 *   bench-net [--seconds S]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dom0/netback/netsim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A TAP device (up) in a namespace of our own; -1 with *why if there can be none. */
static int bench_tap(const char **why)
{
    if (unshare(CLONE_NEWNET) < 0) {
        *why = "cannot make a network namespace (needs root)";
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "nbbench0");
    int hdr = (int)NB_VNET_HDR_LEN;
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        *why = "no /dev/net/tun";
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (s >= 0)
        close(s);
    return fd;
}

static int tap_fd = -1;

static void to_tap(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx;
    if (write(tap_fd, buf, len) < 0)
        abort();
}

/* A broadcast frame of len bytes (ethertype 0x88B5: the stack drops it fast). */
static void frame(uint8_t *f, size_t len)
{
    memset(f, 0, len);
    memset(f, 0xff, 6);
    f[6] = 0x02, f[11] = 1;
    f[12] = 0x88, f[13] = 0xb5;
}

/* Transmit: slots of `size` bytes from grant pages 0.., batches of 64; packets/s. */
static double tx_run(size_t size, double secs, uint64_t *n_out)
{
    struct netsim *s = ns_new();
    unsigned slots = (unsigned)((size + NB_PAGE_SIZE - 1) / NB_PAGE_SIZE);
    for (unsigned i = 0; i < slots; i++)
        frame(s->page[i], NB_PAGE_SIZE);
    struct nb_ops ops = ns_ops(s);
    struct nb_stats st = { 0 };
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (unsigned p = 0; p < 64 / slots; p++) {
            size_t left = size;
            for (unsigned k = 0; k < slots; k++) {
                netif_tx_request_t *r = RING_GET_REQUEST(&s->txf, s->txf.req_prod_pvt++);
                size_t chunk = left < NB_PAGE_SIZE ? left : NB_PAGE_SIZE;
                r->gref = k, r->offset = 0, r->id = (uint16_t)p;
                r->flags = k + 1 < slots ? NETTXF_more_data : 0;
                r->size = (uint16_t)(k == 0 ? size : chunk);
                left -= chunk;
            }
        }
        int notify;
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->txf, notify);
        (void)notify;
        bool ntf = false;
        const char *why;
        nb_tx_process(&s->tx, &ops, s->buf, 64, to_tap, NULL, &st, NULL, &ntf, &why);
        s->txf.rsp_cons = s->txf.sring->rsp_prod;
        t = now_s();
    } while (t - t0 < secs);
    n = st.tx_packets;
    ns_free(s);
    *n_out = n;
    return (double)n / (t - t0);
}

static double tx_ref(size_t size, double secs)
{
    static uint8_t buf[NB_FRAME_BUF];
    memset(buf, 0, NB_VNET_HDR_LEN);
    frame(buf + NB_VNET_HDR_LEN, size);
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 64; i++, n++)
            if (write(tap_fd, buf, NB_VNET_HDR_LEN + size) < 0)
                abort();
        t = now_s();
    } while (t - t0 < secs);
    return (double)n / (t - t0);
}

/* Receive: frames of `size` into posted buffers, 64 per batch; packets/s. */
static double rx_run(size_t size, double secs)
{
    struct netsim *s = ns_new();
    static uint8_t pkt[NB_FRAME_BUF];
    memset(pkt, 0, NB_VNET_HDR_LEN);
    frame(pkt + NB_VNET_HDR_LEN, size);
    struct nb_ops ops = ns_ops(s);
    struct nb_features f = { .sg = true, .csum = true };
    struct nb_stats st = { 0 };
    unsigned slots = (unsigned)((size + NB_PAGE_SIZE - 1) / NB_PAGE_SIZE);
    double t0 = now_s(), t;
    do {
        for (unsigned p = 0; p < 64 * slots; p++) {
            netif_rx_request_t *r = RING_GET_REQUEST(&s->rxf, s->rxf.req_prod_pvt);
            r->id = (uint16_t)(p % NS_GRANTS), r->gref = p % NS_GRANTS;
            s->rxf.req_prod_pvt++;
        }
        int notify;
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->rxf, notify);
        (void)notify;
        for (int p = 0; p < 64; p++) {
            bool ntf = false;
            const char *why;
            nb_rx_put(&s->rx, &f, &ops, pkt, NB_VNET_HDR_LEN + size, &st, &ntf, &why);
        }
        s->rxf.rsp_cons = s->rxf.sring->rsp_prod;
        t = now_s();
    } while (t - t0 < secs);
    ns_free(s);
    return (double)st.rx_packets / (t - t0);
}

static double rx_ref(size_t size, double secs)
{
    static uint8_t src[NB_FRAME_BUF], dst[NB_FRAME_BUF];
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 64; i++, n++) {
            memcpy(dst, src, size);
            __asm__ volatile("" : : "r"(dst) : "memory");
        }
        t = now_s();
    } while (t - t0 < secs);
    return (double)n / (t - t0);
}

static void line(const char *fig, size_t size, double pps, double ref_pps)
{
    printf("{\"bench\":\"net\",\"figure\":\"%s_%zu\",\"bytes\":%zu,\"pps\":%.0f,"
           "\"mbit_s\":%.1f,\"ref_pps\":%.0f,\"ratio\":%.3f}\n", fig, size, size, pps,
           pps * (double)size * 8 / 1e6, ref_pps, ref_pps / pps);
}

int main(int argc, char **argv)
{
    double secs = 1.0;
    static const struct option opts[] = { { "seconds", required_argument, NULL, 's' },
                                          { NULL, 0, NULL, 0 } };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 's') {
            fprintf(stderr, "usage: bench-net [--seconds S]\n");
            return 2;
        }
        secs = atof(optarg);
    }
    static const size_t sizes[] = { 64, 1514, 9000 };
    const char *why = NULL;
    tap_fd = bench_tap(&why);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (tap_fd < 0) {
            printf("{\"bench\":\"net\",\"figure\":\"tx_%zu\",\"skipped\":\"%s\"}\n",
                   sizes[i], why);
            continue;
        }
        uint64_t n;
        double pps = tx_run(sizes[i], secs, &n);
        line("tx", sizes[i], pps, tx_ref(sizes[i], secs));
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        line("rx", sizes[i], rx_run(sizes[i], secs), rx_ref(sizes[i], secs));
    return 0;
}
