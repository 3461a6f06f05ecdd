/*
 * Guests on the shared ring page (xs_wire.h struct xenstore_domain_interface,
 * docs/misc/xenstore-ring.txt), mapped with libdom0's MAP_FOREIGN, notified through
 * the store event channel bound with BIND_EVTCHN. Anything inconsistent from the
 * guest (indexes beyond the ring, a payload over XENSTORE_PAYLOAD_MAX) stops the
 * connection with the ring's error indicator set, as Xen's xenstored does; the guest
 * may reset it with the reconnection feature.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include "xsd.h"
#include "dom0/libdom0.h"

struct ring {
    struct xsd_ev ev;
    struct xs_domain *d;
    volatile struct xenstore_domain_interface *intf;
    uint32_t handle;
    int to_guest;
    uint8_t in[XS_HDR_SIZE + XENSTORE_PAYLOAD_MAX];
    size_t inlen;
    uint8_t *out;
    size_t outlen, outoff, outcap;
    size_t resp_left;           /* bytes at outoff that end a response partly in the ring */
    bool broken;
    bool dropped;               /* a watch event was dropped while quiesced (logged once) */
};

#define RD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define WR(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static void notify(struct ring *r)
{
    uint64_t one = 1;
    if (write(r->to_guest, &one, sizeof(one)) < 0) {
        /* the eventfd counter cannot overflow in practice */
    }
}

static struct ring *current;   /* the ring whose requests are being handled */
static bool push_out(struct ring *r);

static void ring_break(struct ring *r, uint32_t why)
{
    xsd_log("dom%u: ring error %u: connection stopped", r->d->domid, why);
    r->broken = true;
    WR(r->intf->error, why);
    r->inlen = 0;
    r->outlen = r->outoff = r->resp_left = 0;
    xs_conn_reset(r->d->conn, false);
    notify(r);
}

static void ring_send(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
    struct xs_domain *d = xs_domain_find(c->xs, c->domid);
    struct ring *r = d ? d->ring : NULL;
    if (!r || r->broken)
        return;
    size_t need = r->outlen + XS_HDR_SIZE + h->len;
    if (need - r->outoff > c->xs->quota.outstanding && d->quiesced) {
        /* A watch event after the export: dropped, the ring untouched. */
        if (!r->dropped)
            xsd_log("dom%u: quiesced for a migration with %zu bytes of output queued: "
                    "dropping watch events", c->domid, need - r->outoff);
        r->dropped = true;
        return;
    }
    if (need - r->outoff > c->xs->quota.outstanding) {
        xsd_log("dom%u: %zu bytes of output not read: connection stopped", c->domid,
                need - r->outoff);
        ring_break(r, XENSTORE_ERROR_COMM);
        return;
    }
    if (need > r->outcap) {
        if (r->outoff) {
            memmove(r->out, r->out + r->outoff, r->outlen - r->outoff);
            r->outlen -= r->outoff;
            r->outoff = 0;
            need = r->outlen + XS_HDR_SIZE + h->len;
        }
        size_t cap = r->outcap ? r->outcap : 8192;
        while (cap < need)
            cap *= 2;
        if (cap != r->outcap) {
            uint8_t *o = realloc(r->out, cap);
            if (!o)
                abort();
            r->out = o;
            r->outcap = cap;
        }
    }
    memcpy(r->out + r->outlen, h, XS_HDR_SIZE);
    if (h->len)
        memcpy(r->out + r->outlen + XS_HDR_SIZE, body, h->len);
    r->outlen += XS_HDR_SIZE + h->len;
    /* A watch event for a guest whose requests are not being handled: push it now. */
    if (r != current && !d->quiesced && push_out(r))
        notify(r);
}

/* n more bytes went into the ring from outoff: where does the response they end stop? */
static void count_sent(struct ring *r, size_t n)
{
    size_t at = r->outoff, take = r->resp_left < n ? r->resp_left : n;
    r->resp_left -= take;
    at += take;
    n -= take;
    while (n) {
        struct xsd_sockmsg h;
        if (r->outlen - at < XS_HDR_SIZE) {     /* never: whole responses are queued */
            r->resp_left = 0;
            return;
        }
        memcpy(&h, r->out + at, XS_HDR_SIZE);
        size_t msg = XS_HDR_SIZE + (size_t)h.len;
        if (msg > n) {
            r->resp_left = msg - n;
            return;
        }
        at += msg;
        n -= msg;
    }
}

/* Copy pending output into the rsp ring: true if anything moved. */
static bool push_out(struct ring *r)
{
    volatile struct xenstore_domain_interface *i = r->intf;
    bool moved = false;
    while (r->outoff < r->outlen) {
        uint32_t cons = RD(i->rsp_cons), prod = RD(i->rsp_prod);
        if (prod - cons > XENSTORE_RING_SIZE) {
            ring_break(r, XENSTORE_ERROR_RINGIDX);
            return false;
        }
        uint32_t space = XENSTORE_RING_SIZE - (prod - cons);
        if (!space)
            break;
        uint32_t idx = MASK_XENSTORE_IDX(prod);
        uint32_t chunk = XENSTORE_RING_SIZE - idx;
        if (chunk > space)
            chunk = space;
        if (chunk > r->outlen - r->outoff)
            chunk = (uint32_t)(r->outlen - r->outoff);
        memcpy((char *)i->rsp + idx, r->out + r->outoff, chunk);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        WR(i->rsp_prod, prod + chunk);
        count_sent(r, chunk);
        r->outoff += chunk;
        moved = true;
    }
    if (r->outoff == r->outlen)
        r->outoff = r->outlen = r->resp_left = 0;
    return moved;
}

/*
 * Fault injection for the test suite (tests/kvm/migrate-xenstore.sh): with
 * XKVM_TEST_FAULT=xenstored-slow-reply in its environment, xenstored answers a guest's
 * request 20 ms after taking it from the ring, as a loaded host may.
 */
static void slow_reply_fault(void)
{
    static int on = -1;
    if (on < 0) {
        const char *f = getenv("XKVM_TEST_FAULT");
        on = f && !strcmp(f, "xenstored-slow-reply");
    }
    if (on)
        usleep(20 * 1000);
}

/* Take request bytes from the req ring: true if anything was consumed. */
static bool pull_in(struct ring *r)
{
    volatile struct xenstore_domain_interface *i = r->intf;
    bool moved = false;
    for (;;) {
        uint32_t cons = RD(i->req_cons), prod = RD(i->req_prod);
        if (prod - cons > XENSTORE_RING_SIZE) {
            ring_break(r, XENSTORE_ERROR_RINGIDX);
            return false;
        }
        uint32_t avail = prod - cons;
        if (!avail)
            break;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* Read the header first, then exactly the payload it announces. */
        size_t want;
        if (r->inlen < XS_HDR_SIZE) {
            want = XS_HDR_SIZE - r->inlen;
        } else {
            struct xsd_sockmsg h;
            memcpy(&h, r->in, XS_HDR_SIZE);
            want = XS_HDR_SIZE + h.len - r->inlen;
        }
        uint32_t idx = MASK_XENSTORE_IDX(cons);
        uint32_t chunk = XENSTORE_RING_SIZE - idx;
        if (chunk > avail)
            chunk = avail;
        if (chunk > want)
            chunk = (uint32_t)want;
        memcpy(r->in + r->inlen, (const char *)i->req + idx, chunk);
        r->inlen += chunk;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        WR(i->req_cons, cons + chunk);
        moved = true;
        if (r->inlen == XS_HDR_SIZE) {
            struct xsd_sockmsg h;
            memcpy(&h, r->in, XS_HDR_SIZE);
            if (h.len > XENSTORE_PAYLOAD_MAX) {
                ring_break(r, XENSTORE_ERROR_PROTO);
                return false;
            }
        }
        struct xsd_sockmsg h;
        const uint8_t *body;
        size_t used;
        if (xs_wire_parse(r->in, r->inlen, &h, &body, &used) == 1) {
            slow_reply_fault();
            current = r;
            xs_handle(r->d->conn, &h, body);
            current = NULL;
            r->inlen = 0;
            if (r->broken)
                return false;
            /* Flow control: stop reading while the guest leaves replies unread. */
            if (r->outlen - r->outoff > 64 * 1024)
                break;
        }
    }
    return moved;
}

void xsd_ring_kick(struct xs_domain *d)
{
    struct ring *r = d->ring;
    if (!r || d->quiesced)
        return;
    volatile struct xenstore_domain_interface *i = r->intf;
    if (RD(i->connection) == XENSTORE_RECONNECT) {
        xs_conn_reset(d->conn, true);
        r->inlen = 0;
        r->outlen = r->outoff = r->resp_left = 0;
        r->broken = false;
        WR(i->req_cons, 0);
        WR(i->req_prod, 0);
        WR(i->rsp_cons, 0);
        WR(i->rsp_prod, 0);
        WR(i->error, XENSTORE_ERROR_NONE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        WR(i->connection, XENSTORE_CONNECTED);
        notify(r);
        return;
    }
    if (r->broken)
        return;
    bool moved = false;
    for (int round = 0; round < 64; round++) {
        bool m = push_out(r);
        m |= pull_in(r);
        m |= push_out(r);
        moved |= m;
        if (!m || r->broken)
            break;
    }
    if (moved)
        notify(r);
}

static void ring_ev(struct xsd_ev *e, uint32_t events)
{
    struct ring *r = e->arg;
    uint64_t v;
    if (read(e->fd, &v, sizeof(v)) < 0) {
        /* spurious */
    }
    if (r->d)
        xsd_ring_kick(r->d);
}

/* Bytes in flight kept for the ring (a migration's import, or a detach while the
 * domain lived on): the ring goes on with them. */
static void take_carried(struct ring *r, struct xs_domain *d)
{
    if (!d->carried)
        return;
    memcpy(r->in, d->carried, d->carried_in);       /* checked: within one request */
    r->inlen = d->carried_in;
    if (d->carried_out) {
        r->out = malloc(d->carried_out);
        if (!r->out)
            abort();
        memcpy(r->out, d->carried + d->carried_in, d->carried_out);
        r->outlen = r->outcap = d->carried_out;
        r->resp_left = d->carried_resp;
    }
    xsd_log("dom%u: ring goes on with %zu request and %zu response bytes kept for it",
            d->domid, d->carried_in, d->carried_out);
    free(d->carried);
    d->carried = NULL;
    d->carried_in = d->carried_out = d->carried_resp = 0;
}

int xsd_ring_attach(struct xs_domain *d)
{
    if (!xsd.dom0)
        return 0;       /* later, when xkvmd is there */
    if (d->ring)
        return 0;
    struct ring *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->d = d;
    r->intf = dom0_map_foreign(xsd.dom0, d->domid, d->gfn, false, &r->handle);
    if (!r->intf) {
        int e = errno;
        xsd_log("dom%u: cannot map store gfn %#llx: %s", d->domid,
                (unsigned long long)d->gfn, strerror(e));
        free(r);
        return e == ESRCH ? ENOENT : EINVAL;
    }
    int from_guest;
    int err = dom0_bind_evtchn(xsd.dom0, d->domid, d->port, &r->to_guest, &from_guest);
    if (err) {
        xsd_log("dom%u: cannot bind store port %u: %s", d->domid, d->port, strerror(-err));
        dom0_unmap_foreign(xsd.dom0, d->domid, r->handle, (void *)r->intf);
        free(r);
        return EINVAL;
    }
    r->ev.fd = from_guest;
    r->ev.fn = ring_ev;
    r->ev.arg = r;
    take_carried(r, d);
    d->ring = r;
    d->conn->send = ring_send;
    xsd_ev_add(&r->ev, EPOLLIN);
    WR(r->intf->server_features,
       XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR | 4u);
    xsd_log("dom%u: ring connected (gfn %#llx port %u)%s", d->domid,
            (unsigned long long)d->gfn, d->port, d->quiesced ? ", quiesced" : "");
    if (!d->quiesced) {
        xsd_ring_kick(d);
        notify(r);
    }
    return 0;
}

static void nosend(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
}

/* What r holds outside the ring (pointers into r, valid until it moves). */
static void ring_bytes(const struct ring *r, struct xs_conn_bytes *b)
{
    b->in = r->in;
    b->inlen = r->inlen;
    b->outlen = r->outlen - r->outoff;
    b->out = b->outlen ? r->out + r->outoff : NULL;
    b->out_resp = r->resp_left < b->outlen ? r->resp_left : b->outlen;
}

/*
 * The ring goes while its domain lives on (xkvmd went away: a live update): what it
 * holds outside the ring waits in d, as a migration's bytes do, for the next attach.
 */
static void stash_carried(struct ring *r, struct xs_domain *d)
{
    struct xs_conn_bytes b;
    if (r->broken)
        return;
    ring_bytes(r, &b);
    xs_domain_carry(d, &b);
}

void xsd_ring_detach(struct xs_domain *d, bool unbind)
{
    struct ring *r = d->ring;
    if (!r)
        return;
    if (!unbind)
        stash_carried(r, d);
    d->ring = NULL;
    d->conn->send = nosend;
    xsd_ev_del(&r->ev);
    close(r->ev.fd);
    close(r->to_guest);
    if (unbind && xsd.dom0) {
        dom0_unbind_evtchn(xsd.dom0, d->domid, d->port);
        dom0_unmap_foreign(xsd.dom0, d->domid, r->handle, (void *)r->intf);
    } else {
        munmap((void *)r->intf, (size_t)sysconf(_SC_PAGESIZE));
    }
    free(r->out);
    r->d = NULL;
    xsd_defer_free(r);
}

/*
 * A migration's stop (before its last copy of memory): leave both rings as they are
 * now, whatever comes; replies and watch events queue. Every request already taken
 * was answered (this runs between requests), so the ring and xsd_ring_in_flight are
 * all there is.
 */
void xsd_ring_quiesce(struct xs_domain *d, bool quiesced)
{
    struct ring *r = d->ring;
    if (d->quiesced == quiesced)
        return;
    d->quiesced = quiesced;     /* kept in d: a ring attached meanwhile stays alone too */
    if (r && !quiesced) {       /* the migration failed: the guest runs on here */
        r->dropped = false;
        xsd_ring_kick(d);
        notify(r);
    }
}

void xsd_ring_in_flight(struct xs_domain *d, struct xs_conn_bytes *b)
{
    struct ring *r = d->ring;
    *b = (struct xs_conn_bytes){ 0 };
    /* On a ring still running the bytes may be taken again from it: only when quiesced. */
    if (r && !r->broken && d->quiesced)
        ring_bytes(r, b);
}
