/* The daemon around the core: event loop, socket and ring transports, persistence. */
#ifndef XKVM_XSD_H
#define XKVM_XSD_H

#include "xs.h"

struct xsd_ev {
    int fd;
    void (*fn)(struct xsd_ev *e, uint32_t events);
    void *arg;
};

struct xsd {
    struct xs xs;
    const char *rundir;
    char dir[4096];             /* RUNDIR/xenstored */
    int epfd;
    bool loading;               /* replaying the state file: no persistence */
    /* persist.c */
    int logfd;
    uint64_t log_records;
    /* domain.c */
    struct dom0_conn *dom0;
    struct xsd_ev watch_ev;     /* WATCH_DOMAINS eventfd */
    int watch_sock;             /* our own dom0 connection holding the watch */
    struct xsd_ev hup_ev;
    struct xsd_ev timer_ev;
};

extern struct xsd xsd;

void xsd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int xsd_ev_add(struct xsd_ev *e, uint32_t events);
void xsd_ev_mod(struct xsd_ev *e, uint32_t events);
void xsd_ev_del(struct xsd_ev *e);
/* Free p after the current batch of events (it may still be referenced in it). */
void xsd_defer_free(void *p);

/* conn_socket.c */
int xsd_socket_listen(const char *path);
/* Is RUNDIR/xenstored/socket still the one we listen on (not removed or replaced)? */
bool xsd_socket_still_ours(void);
/* conn_ring.c */
int xsd_ring_attach(struct xs_domain *d);
void xsd_ring_detach(struct xs_domain *d, bool unbind);
void xsd_ring_kick(struct xs_domain *d);
/* Stop touching d's ring (a migration's last copy is taken) or go on. */
void xsd_ring_quiesce(struct xs_domain *d, bool quiesced);
/* d's bytes outside the ring (pointers into the ring's state, valid until it moves). */
void xsd_ring_in_flight(struct xs_domain *d, struct xs_conn_bytes *b);
/* domain.c */
void xsd_domain_init(void);
int xsd_domain_introduce(struct xs *xs, struct xs_domain *d);
void xsd_domain_release(struct xs *xs, struct xs_domain *d);
/* persist.c */
int xsd_persist_open(void);
void xsd_persist_hooks(void);
void xsd_persist_maybe_compact(void);

#endif
