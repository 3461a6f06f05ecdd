/* A vif frontend's published rings, ports and features: see vifparams.h. */
#include "vifparams.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

unsigned nb_max_queues(long ncpus)
{
    if (ncpus < 1)
        return 1;
    return ncpus > (long)NB_MAX_QUEUES ? NB_MAX_QUEUES : (unsigned)ncpus;
}

static long long rd_in(nb_read_uint_fn *rd, void *ctx, const char *dir, const char *leaf,
                       long long dflt)
{
    char node[64];
    snprintf(node, sizeof(node), "%s%s%s", dir, *dir ? "/" : "", leaf);
    return rd(ctx, node, dflt);
}

static bool is_u32(long long v)
{
    return v >= 0 && v <= (long long)UINT32_MAX;
}

/* Linux's connect_data_rings: one queue's refs and port(s) under dir ("" or queue-N). */
static int read_queue(nb_read_uint_fn *rd, void *ctx, const char *dir,
                      struct nb_queue_params *q, const char **why)
{
    long long tx = rd_in(rd, ctx, dir, "tx-ring-ref", -2);
    long long rx = rd_in(rd, ctx, dir, "rx-ring-ref", -2);
    if (!is_u32(tx) || !is_u32(rx)) {
        *why = "tx-ring-ref or rx-ring-ref missing or malformed";
        return -EINVAL;
    }
    q->tx_ref = (grant_ref_t)tx;
    q->rx_ref = (grant_ref_t)rx;
    /* Split event channels first, then one channel, as Linux tries them. */
    long long ptx = rd_in(rd, ctx, dir, "event-channel-tx", -2);
    long long prx = rd_in(rd, ctx, dir, "event-channel-rx", -2);
    if (is_u32(ptx) && is_u32(prx)) {
        q->split = true;
        q->tx_port = (uint32_t)ptx;
        q->rx_port = (uint32_t)prx;
        return 0;
    }
    long long port = rd_in(rd, ctx, dir, "event-channel", -2);
    if (!is_u32(port)) {
        *why = "event-channel (or event-channel-tx and -rx) missing or malformed";
        return -EINVAL;
    }
    q->split = false;
    q->tx_port = q->rx_port = (uint32_t)port;
    return 0;
}

int nb_params_read(nb_read_uint_fn *rd, void *ctx, unsigned max_queues,
                   struct nb_ring_params *rp, const char **why)
{
    memset(rp, 0, sizeof(*rp));
    if (max_queues < 1 || max_queues > NB_MAX_QUEUES)
        max_queues = 1;
    long long n = rd(ctx, "multi-queue-num-queues", 1);
    if (n < 1 || n > (long long)max_queues) {
        *why = n < 1 ? "multi-queue-num-queues: not a number of queues"
                     : "multi-queue-num-queues: more queues than multi-queue-max-queues";
        return -EINVAL;
    }
    if (rd(ctx, "request-rx-copy", 0) != 1) {
        *why = "frontend does not request rx-copy (flipping is not supported)";
        return -EINVAL;
    }
    rp->nr_queues = (unsigned)n;
    for (unsigned i = 0; i < rp->nr_queues; i++) {
        char dir[16] = "";
        if (rp->nr_queues > 1)
            snprintf(dir, sizeof(dir), "queue-%u", i);
        int rc = read_queue(rd, ctx, dir, &rp->q[i], why);
        if (rc)
            return rc;
    }
    rp->f.sg = rd(ctx, "feature-sg", 0) == 1;
    rp->f.gso_tcpv4 = rd(ctx, "feature-gso-tcpv4", 0) == 1;
    rp->f.gso_tcpv6 = rd(ctx, "feature-gso-tcpv6", 0) == 1;
    rp->f.csum = rd(ctx, "feature-no-csum-offload", 0) != 1;
    return 0;
}
