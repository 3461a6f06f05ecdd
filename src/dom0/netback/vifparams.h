/*
 * What a vif's frontend publishes in xenstore, parsed (docs/netback.md, "The
 * handshake"): its queues' rings and event channels in the layout of xen/io/netif.h
 * and Linux's xen-netback connect()/connect_data_rings(), and its features. Pure: the
 * nodes come in through a reader callback, so the unit test drives exactly this code.
 *
 *   multi-queue-num-queues  absent or 1: one queue, its nodes in the frontend's own
 *                           directory; N > 1 (at most what the backend offers):
 *                           queue-0/ .. queue-N-1/ each hold them
 *   tx-ring-ref, rx-ring-ref           per queue
 *   event-channel-tx and -rx (split), tried first, else event-channel   per queue
 *   request-rx-copy (must be 1), feature-sg, feature-gso-tcpv4/v6,
 *   feature-no-csum-offload            in the frontend's directory, for every queue
 */
#ifndef XKVM_NETBACK_VIFPARAMS_H
#define XKVM_NETBACK_VIFPARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "netring.h"

/* The most queues a vif is offered (Linux offers one per online CPU; we cap it). */
#define NB_MAX_QUEUES 8u

struct nb_queue_params {
    grant_ref_t tx_ref, rx_ref;
    uint32_t tx_port, rx_port;      /* equal unless split event channels */
    bool split;
};

/* What the frontend published (and the toolstack's rate, read by the caller). */
struct nb_ring_params {
    unsigned nr_queues;             /* 1 .. NB_MAX_QUEUES */
    struct nb_queue_params q[NB_MAX_QUEUES];
    struct nb_features f;
    uint64_t rate_bytes;            /* the backend's `rate` (0: unlimited) */
    uint32_t rate_usec;
};

/*
 * Read the frontend's node (a path relative to its directory, "queue-1/tx-ring-ref"):
 * its unsigned value, dflt if it is missing, -1 if it is not a number.
 */
typedef long long nb_read_uint_fn(void *ctx, const char *node, long long dflt);

/*
 * Parse the frontend's queues and features, offering max_queues. 0, or -EINVAL with
 * *why naming what is wrong (the backend's `error` node, then Closing, as Linux's
 * xenbus_dev_fatal).
 */
int nb_params_read(nb_read_uint_fn *rd, void *ctx, unsigned max_queues,
                   struct nb_ring_params *rp, const char **why);

/* multi-queue-max-queues for a host with ncpus online CPUs: 1 .. NB_MAX_QUEUES. */
unsigned nb_max_queues(long ncpus);

#endif
