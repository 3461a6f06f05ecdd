/*
 * The netif rings of one vif (docs/netback.md): pure code, no system calls. Grant
 * mapping comes in through struct nb_ops and frames leave through a callback, so the
 * unit test and the fuzz target drive exactly this code with fake pages.
 *
 * Frames on the host side carry a virtio-net header in front (struct
 * virtio_net_hdr, 10 bytes: what a TAP device opened with IFF_VNET_HDR reads and
 * writes): checksum offload and GSO travel in it.
 *
 * The frontend is hostile: every request is copied out of the shared ring before it
 * is looked at; ids are only echoed; grant refs are only mapped through ops (which
 * refuse what is not granted); offsets and sizes are checked against the page and the
 * packet; slot chains, extra-info chains and GSO fields are checked as Linux's netback
 * checks them. A packet that breaks a rule Linux drops is answered
 * NETIF_RSP_ERROR in every slot; one Linux treats as fatal (xenvif_fatal_tx_err), or a
 * producer index further ahead than the ring is large, breaks the ring: processing
 * stops.
 */
#ifndef XKVM_NETBACK_NETRING_H
#define XKVM_NETBACK_NETRING_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netif.h"

#define NB_VNET_HDR_LEN     sizeof(struct virtio_net_hdr)
/* A host-side frame buffer: header and the largest frame. */
#define NB_FRAME_BUF        (NB_VNET_HDR_LEN + NB_MAX_FRAME + 1)

/* Reaching the guest's pages. */
struct nb_ops {
    void *ctx;
    /* Map grant ref (read-only if asked); NULL if it cannot be. *cookie goes to unmap. */
    void *(*map)(void *ctx, grant_ref_t ref, bool readonly, uint64_t *cookie);
    void (*unmap)(void *ctx, void *page, uint64_t cookie);
    /* Optional: true once a map failed because xkvmd is gone, not the grant. */
    bool (*lost)(void *ctx);
};

/* What the frontend negotiated (its feature-* nodes). */
struct nb_features {
    bool sg;            /* feature-sg: frames over several rx slots */
    bool gso_tcpv4;     /* feature-gso-tcpv4 */
    bool gso_tcpv6;     /* feature-gso-tcpv6 */
    bool csum;          /* !feature-no-csum-offload: takes csum_blank frames */
};

/* One transmitted packet as the backend's private copy of its slots. */
struct nb_tx_pkt {
    unsigned nr_slots;                          /* request slots (data) */
    unsigned nr_consumed;                       /* ring slots, extras included */
    uint32_t total;                             /* the packet's length (first size) */
    struct netif_tx_request slots[NB_FATAL_SLOTS];  /* slots[0].size: its own data */
    bool is_extra[NB_FATAL_SLOTS + NB_MAX_EXTRAS];  /* per consumed slot, in ring order */
    uint16_t ids[NB_FATAL_SLOTS + NB_MAX_EXTRAS];
    bool has_gso;
    struct netif_extra_info gso;
};

enum nb_verdict {
    NB_PKT_OK,          /* well formed */
    NB_PKT_DROP,        /* answer every slot NETIF_RSP_ERROR */
    NB_PKT_FATAL,       /* the ring is broken */
    NB_PKT_INCOMPLETE,  /* nothing to take yet */
};

/*
 * Copy the packet starting at ring->req_cons out of the ring (nothing is consumed)
 * and check it. *why says what was wrong for DROP and FATAL.
 */
enum nb_verdict nb_tx_gather(const netif_tx_back_ring_t *ring, struct nb_tx_pkt *p,
                             const char **why);

/*
 * Host-side header for a guest packet: checksum (csum_blank: NEEDS_CSUM at the L4
 * checksum; data_validated: DATA_VALID) and GSO from its extra. Parses the frame's
 * Ethernet/IPv4/IPv6 and TCP/UDP headers. false if the packet cannot be offloaded
 * (drop it, as Linux's checksum_setup failing does).
 */
bool nb_tx_vnet_hdr(const struct nb_tx_pkt *p, uint8_t *frame, size_t len,
                    struct virtio_net_hdr *h);

/* Fill in the ones'-complement checksum a NEEDS_CSUM header asks for. false if bad. */
bool nb_csum_fill(const struct virtio_net_hdr *h, uint8_t *frame, size_t len);

enum nb_ring_state {
    NB_RING_IDLE,       /* nothing left: req_event set, sleep until notified */
    NB_RING_MORE,       /* the budget ran out, or (rx) a frame went in */
    NB_RING_FULL,       /* rx: not enough buffers posted for the frame; wait */
    NB_RING_BROKEN,     /* the frontend broke the protocol: stop the ring */
    NB_RING_LOST,       /* ops->lost(): stopped before answering the current packet */
    NB_RING_CREDIT,     /* tx: the next packet waits for the rate limit's next refill */
};

/*
 * xl's rate= on a vif (the backend's `rate` node, "BYTES,USECS"), as Linux's netback
 * applies it to what the guest sends: a packet goes when it fits in the remaining
 * credit; every interval adds per_interval, up to max(per_interval, 128 KiB) so a
 * burst of jumbo frames still passes. The caller refills with its clock.
 */
struct nb_credit {
    uint64_t per_interval;      /* bytes; 0: unlimited */
    uint64_t interval_ns;
    uint64_t remaining;
    uint64_t next_refill_ns;
    uint64_t waits;             /* times a packet had to wait */
};

/* Start a limit (full credit for one interval) at now_ns. */
void nb_credit_init(struct nb_credit *c, uint64_t bytes, uint64_t usecs, uint64_t now_ns);
/* Add the intervals' credit that is due at now_ns. */
void nb_credit_refill(struct nb_credit *c, uint64_t now_ns);

/* A transmitted frame leaves: hdr then len bytes of frame, contiguous in buf. */
typedef void nb_deliver_fn(void *ctx, const uint8_t *buf, size_t len);

struct nb_stats {
    uint64_t tx_packets, tx_bytes, tx_dropped;
    uint64_t rx_packets, rx_bytes, rx_dropped;
};

/*
 * Take up to budget packets off the tx ring: each is copied into buf (at least
 * NB_FRAME_BUF bytes; virtio-net header first) and delivered, or dropped, and its
 * slots answered (pushed packet by packet; *notify when the frontend wants an event).
 * credit (NULL: none) limits what is delivered: NB_RING_CREDIT, nothing consumed.
 */
enum nb_ring_state nb_tx_process(netif_tx_back_ring_t *ring, const struct nb_ops *ops,
                                 uint8_t *buf, unsigned budget, nb_deliver_fn *deliver,
                                 void *dctx, struct nb_stats *st,
                                 struct nb_credit *credit, bool *notify, const char **why);

/*
 * Put one host frame (virtio-net header then the frame, len bytes in all; the frame
 * may be changed: a checksum the frontend cannot take is filled in) into the
 * frontend's rx buffers. NB_RING_MORE: taken (or dropped, counted); NB_RING_FULL: not
 * enough buffers (req_event is set so the frontend's next post notifies); keep it.
 */
enum nb_ring_state nb_rx_put(netif_rx_back_ring_t *ring, const struct nb_features *f,
                             const struct nb_ops *ops, uint8_t *pkt, size_t len,
                             struct nb_stats *st, bool *notify, const char **why);

#endif
