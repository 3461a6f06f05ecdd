/*
 * What a vif frontend publishes, parsed (src/dom0/netback/vifparams.c,
 * docs/netback.md "The handshake"): the single-queue layout, the multi-queue one
 * (queue-N/ directories, xen/io/netif.h), split and single event channels, and every
 * refusal (too many queues, zero, a missing or malformed node in any queue, no rx-copy).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "dom0/netback/vifparams.h"

HARNESS_MAIN_STATE("netback-params");

/* A fake frontend directory: "node=value" pairs. */
struct fe {
    const char *kv[64];
};

static long long fe_rd(void *ctx, const char *node, long long dflt)
{
    const struct fe *f = ctx;
    size_t n = strlen(node);
    for (unsigned i = 0; f->kv[i]; i++) {
        if (strncmp(f->kv[i], node, n) || f->kv[i][n] != '=')
            continue;
        const char *v = f->kv[i] + n + 1;
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        return *v && !*end && x <= 0xffffffffull ? (long long)x : -1;
    }
    return dflt;
}

static int parse(const struct fe *f, unsigned max, struct nb_ring_params *rp,
                 const char **why)
{
    *why = NULL;
    return nb_params_read(fe_rd, (void *)f, max, rp, why);
}

static void single_queue_layout(void)
{
    struct fe f = { { "tx-ring-ref=8", "rx-ring-ref=9", "event-channel=5",
                      "request-rx-copy=1", "feature-sg=1", "feature-gso-tcpv4=1" } };
    struct nb_ring_params rp;
    const char *why;
    REQUIRE(parse(&f, 4, &rp, &why) == 0);
    CHECK_EQ(rp.nr_queues, 1);
    CHECK_EQ(rp.q[0].tx_ref, 8);
    CHECK_EQ(rp.q[0].rx_ref, 9);
    CHECK(!rp.q[0].split);
    CHECK_EQ(rp.q[0].tx_port, 5);
    CHECK_EQ(rp.q[0].rx_port, 5);
    CHECK(rp.f.sg && rp.f.gso_tcpv4 && !rp.f.gso_tcpv6 && rp.f.csum);
}

/* multi-queue-num-queues 1 keeps the flat layout (queue-0/ is not looked at). */
static void one_queue_asked_is_flat(void)
{
    struct fe f = { { "multi-queue-num-queues=1", "tx-ring-ref=8", "rx-ring-ref=9",
                      "event-channel-tx=5", "event-channel-rx=6", "request-rx-copy=1",
                      "feature-no-csum-offload=1", "queue-0/tx-ring-ref=100" } };
    struct nb_ring_params rp;
    const char *why;
    REQUIRE(parse(&f, 2, &rp, &why) == 0);
    CHECK_EQ(rp.nr_queues, 1);
    CHECK_EQ(rp.q[0].tx_ref, 8);
    CHECK(rp.q[0].split);
    CHECK_EQ(rp.q[0].tx_port, 5);
    CHECK_EQ(rp.q[0].rx_port, 6);
    CHECK(!rp.f.csum);
}

static void two_queues(void)
{
    struct fe f = { { "multi-queue-num-queues=2", "request-rx-copy=1",
                      "queue-0/tx-ring-ref=10", "queue-0/rx-ring-ref=11",
                      "queue-0/event-channel=7",
                      "queue-1/tx-ring-ref=20", "queue-1/rx-ring-ref=21",
                      "queue-1/event-channel-tx=8", "queue-1/event-channel-rx=9",
                      "tx-ring-ref=1" } };
    struct nb_ring_params rp;
    const char *why;
    REQUIRE(parse(&f, 2, &rp, &why) == 0);
    CHECK_EQ(rp.nr_queues, 2);
    CHECK_EQ(rp.q[0].tx_ref, 10);
    CHECK_EQ(rp.q[0].rx_ref, 11);
    CHECK(!rp.q[0].split);
    CHECK_EQ(rp.q[0].rx_port, 7);
    CHECK_EQ(rp.q[1].tx_ref, 20);
    CHECK_EQ(rp.q[1].rx_ref, 21);
    CHECK(rp.q[1].split);
    CHECK_EQ(rp.q[1].tx_port, 8);
    CHECK_EQ(rp.q[1].rx_port, 9);
}

/* Split channels are tried first, as Linux does, when both kinds are there. */
static void split_preferred(void)
{
    struct fe f = { { "tx-ring-ref=8", "rx-ring-ref=9", "event-channel=5",
                      "event-channel-tx=6", "event-channel-rx=7", "request-rx-copy=1" } };
    struct nb_ring_params rp;
    const char *why;
    REQUIRE(parse(&f, 1, &rp, &why) == 0);
    CHECK(rp.q[0].split);
    CHECK_EQ(rp.q[0].tx_port, 6);
    /* Half a split pair falls back to event-channel. */
    struct fe g = { { "tx-ring-ref=8", "rx-ring-ref=9", "event-channel=5",
                      "event-channel-tx=6", "request-rx-copy=1" } };
    REQUIRE(parse(&g, 1, &rp, &why) == 0);
    CHECK(!rp.q[0].split);
    CHECK_EQ(rp.q[0].tx_port, 5);
}

static void refusals(void)
{
    struct nb_ring_params rp;
    const char *why;
    struct fe more = { { "multi-queue-num-queues=3", "request-rx-copy=1" } };
    CHECK_EQ(parse(&more, 2, &rp, &why), -22);
    CHECK_STR_CONTAINS(why, "multi-queue-max-queues");
    struct fe zero = { { "multi-queue-num-queues=0", "request-rx-copy=1",
                         "tx-ring-ref=8", "rx-ring-ref=9", "event-channel=5" } };
    CHECK_EQ(parse(&zero, 2, &rp, &why), -22);
    struct fe junk = { { "multi-queue-num-queues=two", "request-rx-copy=1" } };
    CHECK_EQ(parse(&junk, 2, &rp, &why), -22);
    struct fe huge = { { "multi-queue-num-queues=4294967297", "request-rx-copy=1" } };
    CHECK_EQ(parse(&huge, 8, &rp, &why), -22);
    struct fe nocopy = { { "tx-ring-ref=8", "rx-ring-ref=9", "event-channel=5" } };
    CHECK_EQ(parse(&nocopy, 1, &rp, &why), -22);
    CHECK_STR_CONTAINS(why, "rx-copy");
    /* The second queue lacks its port; then its rx ring ref is malformed. */
    struct fe q1port = { { "multi-queue-num-queues=2", "request-rx-copy=1",
                           "queue-0/tx-ring-ref=10", "queue-0/rx-ring-ref=11",
                           "queue-0/event-channel=7", "queue-1/tx-ring-ref=20",
                           "queue-1/rx-ring-ref=21", "event-channel=3" } };
    CHECK_EQ(parse(&q1port, 2, &rp, &why), -22);
    CHECK_STR_CONTAINS(why, "event-channel");
    struct fe q1ref = { { "multi-queue-num-queues=2", "request-rx-copy=1",
                          "queue-0/tx-ring-ref=10", "queue-0/rx-ring-ref=11",
                          "queue-0/event-channel=7", "queue-1/tx-ring-ref=20",
                          "queue-1/rx-ring-ref=x", "queue-1/event-channel=3" } };
    CHECK_EQ(parse(&q1ref, 2, &rp, &why), -22);
    CHECK_STR_CONTAINS(why, "ring-ref");
    /* Two queues where one is offered: refused even though the nodes are fine. */
    CHECK_EQ(parse(&q1ref, 1, &rp, &why), -22);
}

static void max_queues(void)
{
    CHECK_EQ(nb_max_queues(-1), 1);
    CHECK_EQ(nb_max_queues(0), 1);
    CHECK_EQ(nb_max_queues(1), 1);
    CHECK_EQ(nb_max_queues(2), 2);
    CHECK_EQ(nb_max_queues(64), NB_MAX_QUEUES);
}

int main(void)
{
    RUN_TEST(single_queue_layout);
    RUN_TEST(one_queue_asked_is_flat);
    RUN_TEST(two_queues);
    RUN_TEST(split_preferred);
    RUN_TEST(refusals);
    RUN_TEST(max_queues);
    HARNESS_EXIT();
}
