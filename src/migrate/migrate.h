/*
 * Save, restore and live migration of a domain (docs/migration.md). The sender
 * (save.c) writes a libxc migration stream (include/xkvm/stream.h) to an fd: a file,
 * or a socket to a destination xkvmd; the receiver (restore.c) builds the domain from
 * one and resumes it only once every record has been read and checked.
 *
 * Over a socket the destination answers on the same connection with text lines
 * (MIGRATE_MSG_*): READY once it has accepted the domain's config (domid free,
 * memory enough), RESTORED once the domain is rebuilt and paused, and after the
 * source's GO, RUNNING with the time it resumed it. Until the source has read
 * RUNNING it takes the guest back on any failure; the destination resumes only on GO
 * and destroys its copy if it cannot say RUNNING.
 */
#ifndef XKVM_MIGRATE_MIGRATE_H
#define XKVM_MIGRATE_MIGRATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/transport.h"
#include "xkvm/stream.h"

struct domcfg;

struct domain;
struct xkvm_ctx_hvm_param;

#define MIGRATE_MSG_READY       "READY"
#define MIGRATE_MSG_RESTORED    "RESTORED"
#define MIGRATE_MSG_SYNCED      "SYNCED"      /* read up to a SYNC record */
#define MIGRATE_MSG_GO          "GO"
#define MIGRATE_MSG_RUNNING     "RUNNING"     /* RUNNING <realtime ns it resumed> */
#define MIGRATE_MSG_ERROR       "ERROR"       /* ERROR <message> */
/* POSTCOPY-DONE <faults> <requests> <wait avg us> <wait max us>: all pages in */
#define MIGRATE_MSG_POSTCOPY_DONE "POSTCOPY-DONE"
/*
 * Post-copy recovery (docs/migration.md "Recovering a post-copy"), on a new
 * connection: the source's first line POSTCOPY-RECOVER <domid> <token> (the token the
 * destination sent with RUNNING), then the destination's MISSING <pfn hex> <count>
 * lines and RECOVER-READY, or ERROR.
 */
#define MIGRATE_MSG_POSTCOPY_RECOVER "POSTCOPY-RECOVER"
#define MIGRATE_MSG_MISSING     "MISSING"
#define MIGRATE_MSG_RECOVER_READY "RECOVER-READY"
#define MIGRATE_MSG_MAX         512

/*
 * Cancelling a migration from another thread (xkvm migrate-cancel), up to the
 * hand-over: migrate_cancel_request shuts the connection down, so the sender's next
 * read or write fails, the guest runs on at the source and the destination, which
 * sees the connection end, removes what it built. Once the sender is about to send GO
 * it is too late (-EBUSY): the migration then completes or fails on its own.
 */
struct migrate_cancel {
    pthread_mutex_t lock;
    int fd;                     /* the connection to shut down; -1: not connected yet */
    bool cancelled, handover;
};
void migrate_cancel_init(struct migrate_cancel *c);
/* The connection is fd (shut down at once if a cancel came first). */
void migrate_cancel_set_fd(struct migrate_cancel *c, int fd);
/* 0: cancelled (or already); -EBUSY: the hand-over has begun. */
int migrate_cancel_request(struct migrate_cancel *c);

struct migrate_opts {
    bool live;                  /* pre-copy while the guest runs */
    struct migrate_cancel *cancel;  /* NULL: not cancellable */
    bool peer;                  /* fd is a connection to a destination xkvmd */
    uint32_t downtime_ms;       /* live: stop iterating when the rest fits this */
    uint32_t max_iters;         /* live: iterations at most */
    uint32_t max_factor;        /* live: stop after sending this many times the RAM */
    bool no_auto_converge;      /* live: never throttle the vCPUs */
    bool downtime_strict;       /* live: fail (the guest runs on here) if the rest
                                   does not fit downtime_ms when pre-copy stops */
    enum xkvm_stream_compat compat;
    /* Same-host migration (migrate/local_mem.h): RAM stays in place; else NULL. */
    struct local_mem *local_mem;
    bool postcopy;              /* live: switch to post-copy (postcopy_save.c) */
    bool postcopy_recover;      /* resume a postcopy-paused post-copy (postcopy_save.c) */
    uint32_t postcopy_after;    /* ...after this many passes (0: at once); also when
                                   pre-copy stops without converging */
    /*
     * peer: connections to use, the main one included (0 or 1: just it; at most
     * MULTICONN_MAX), extra ones opened by open_data (connected and authenticated,
     * NULL with a message if not; they stay the caller's). migrate/multiconn.h.
     */
    unsigned connections;
    struct transport *(*open_data)(void *arg, unsigned index, char *err, size_t errlen);
    void *open_arg;
};
/* Connections when the request names none (docs/performance.md, "Several connections"). */
#define MIGRATE_DEFAULT_CONNECTIONS 1
#define MIGRATE_DEFAULT_DOWNTIME_MS 5
#define MIGRATE_DEFAULT_MAX_ITERS   30
#define MIGRATE_DEFAULT_MAX_FACTOR  3
/* Auto-converge: the first throttle, each step up (percent); the top is VCPU_THROTTLE_MAX_PCT. */
#define MIGRATE_THROTTLE_INITIAL    20
#define MIGRATE_THROTTLE_STEP       10
/* Iterations at the top throttle before pre-copy gives up on the target. */
#define MIGRATE_THROTTLE_MAX_ITERS  3

struct migrate_progress {
    unsigned iteration;         /* 0: first full pass */
    uint64_t dirty;             /* pages to send this iteration */
    uint64_t sent;              /* of them, sent so far */
    uint64_t remaining;         /* dirty pages known right now */
    double rate_mbs;            /* measured MB/s */
    double eta_s;
    bool final;                 /* the stop-and-copy phase */
    unsigned throttle_pct;      /* auto-converge's vCPU throttle now */
};
typedef void (*migrate_progress_fn)(void *arg, const struct migrate_progress *p);

enum migrate_outcome {
    MIGRATE_DONE,               /* destination runs it (or the file is complete) */
    MIGRATE_RESUMED,            /* failed: the source runs it again */
    MIGRATE_POSTCOPY_PAUSED,    /* failed in post-copy: both halves kept, paused */
};

struct migrate_report {
    enum migrate_outcome outcome;
    unsigned iterations;
    uint64_t pages_sent, zero_pages, bytes;
    uint64_t final_pages;
    uint64_t final_bytes;           /* written between the pause and RESTORED */
    unsigned state_compressed;      /* state records that went COMPRESSED (docs/stream.md) */
    double total_ms, downtime_ms, final_ms;
    double pause_ms;                /* parking the vCPUs (part of final_ms) */
    double quiet_ms, state_ms;      /* parts of final_ms: dom0 quiet wait, state records */
    double xenstore_ms;             /* ...and xenstored's quiesce and export */
    double dest_ms;                 /* END sent to RESTORED received */
    double rate_mbs;
    unsigned connections;           /* TCP connections (or TLS sessions) used */
    /*
     * Convergence: the target, the throttle when pre-copy stopped, the final copy's
     * pages at the rate measured then, and why pre-copy stopped: "converged" (the rest
     * fit half the target), "max-throttle", "max-iters", "max-volume", "non-live";
     * NULL if it did not get that far.
     */
    unsigned downtime_target_ms;
    unsigned throttle_pct;
    double est_downtime_ms;
    const char *stop;
    /*
     * Post-copy (docs/migration.md "Post-copy"): the pages left at the switch, the
     * phase from RUNNING to the destination's POSTCOPY-DONE, the pages it asked for,
     * and (the destination's figures) its faults and how long a fault waited.
     */
    bool postcopy;
    uint64_t postcopy_pages, pages_on_demand, faults_on_demand;
    double postcopy_ms, fault_wait_ms_avg, fault_wait_ms_max;
};

/*
 * Send domain d (a reference held, d->migrating set) through t (a file, a socket, a
 * TLS session: util/transport.h). Without opts->live the
 * domain is paused first. On success (MIGRATE_DONE) the domain is left paused: the
 * caller destroys it (or unpauses it for save --keep). 0 or -errno with a message;
 * report->outcome says where the guest is.
 */
int migrate_send(struct domain *d, struct transport *t, const struct migrate_opts *opts,
                 migrate_progress_fn progress, void *arg, struct migrate_report *report,
                 char *err, size_t errlen);

/*
 * What a receiver must pass before it builds anything for a stream: admit() sees the
 * DOMAIN_CONFIG, parsed and well-formed, and says 0 to go on or -errno with a message
 * (sent to the peer as its ERROR line). incoming.c's gate caps a peer's memory; NULL:
 * a local restore, which the toolstack asked for.
 */
struct domcfg;
struct local_mem;
struct migrate_gate {
    int (*admit)(struct migrate_gate *g, const struct domcfg *cfg, char *err, size_t errlen);
    /* Same-host migration (migrate/local_mem.h): the memfds passed; else NULL. */
    struct local_mem *local_mem;
};

/*
 * Receive a domain through t (peer: a source xkvmd on the other end, answered as
 * above; local: a configuration read on this host, or NULL). The domain is built only
 * once the gate admitted its config, and stays invisible to the toolstack and unnamed
 * (domain.h: incoming) until it is whole and about to run. On success it runs under
 * the domid in the stream and *domid says which. On any failure every trace of it is
 * gone. 0 or -errno with a message.
 */
int migrate_receive(struct transport *t, bool peer, struct migrate_gate *gate,
                    const struct domcfg *local, uint16_t *domid, char *err, size_t errlen);

/*
 * The host resources a stream may name (util/hostpath.h): xkvmd --disk-root and
 * --kernel-root add directories; a restore with a local config (local above) takes its
 * disks and kernel from that instead. 0, or -errno with a message.
 */
int migrate_allow_root(bool kernel, const char *dir, char *err, size_t errlen);

/*
 * The HVM params a domain carries (non-zero, not retired), sorted; returns how many.
 * The one list: DOMAIN_CONTEXT's HVM_PARAMS (the record a restore applies), the
 * stream's libxc HVM_PARAMS and the live-update image's HVM_PARAMS are all copies of it.
 */
uint32_t migrate_hvm_params(struct domain *d, struct xkvm_ctx_hvm_param *out);
/* Every vCPU's HVM_CONTEXT blob (domain paused), malloc'd. 0 or -errno with a message. */
int migrate_hvm_context(struct domain *d, void **blob, size_t *len, char *err, size_t errlen);

/*
 * With the domains paused: wait until no dom0 service has touched any of them for
 * 2 ms (200 ms at most), so requests they were serving are finished (save.c).
 */
void migrate_wait_dom0_quiet(struct domain *const *doms, unsigned n);

/* Line I/O on a migration connection (blocking). */
int migrate_send_line(struct transport *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line without its newline; timeout_ms 0: none. 0, -ETIMEDOUT, -EPIPE (closed). */
int migrate_read_line(struct transport *t, char *buf, size_t len, unsigned timeout_ms);

/*
 * The stall timeout (xkvmd --migrate-stall-timeout; docs/migration.md "A silent
 * link"): a migration connection on which nothing moves for this long, either way,
 * has failed. It bounds every wait on a peer: a write that makes no progress and a
 * read that gets nothing (the socket timeouts migrate_stall_sockopts sets, on both
 * sides, extra data connections included), and each wait for the peer's next line
 * (READY, SYNCED, RESTORED, GO, RUNNING, POSTCOPY-DONE) or an extra connection's pages.
 * Process-wide, set once at start-up; 0 restores the default.
 */
#define MIGRATE_DEFAULT_STALL_S 60u
#define MIGRATE_MAX_STALL_S     3600u
void migrate_set_stall_timeout(unsigned seconds);
unsigned migrate_stall_timeout_ms(void);
/* SO_SNDTIMEO and SO_RCVTIMEO of the socket fd: the stall timeout (else: no effect). */
void migrate_stall_sockopts(int fd);

#endif
