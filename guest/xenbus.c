/*
 * A xenstore client over the store ring, as a Xen HVM guest kernel's xenbus does it:
 *
 * - The ring is the page at HVM_PARAM_STORE_PFN (xkvmd: gfn 0xFEFF0, in the special
 *   region below 4 GiB, so inside the boot identity map); HVM_PARAM_STORE_EVTCHN is
 *   its port, already bound by xenstored (xkvmd allocated it unbound for dom0).
 * - Requests (struct xsd_sockmsg + payload) go into req[] at req_prod; xenstored
 *   consumes them and advances req_cons. A message may be larger than the 1 KiB
 *   ring: the writer waits for space (an event, or a 100 ms re-check), so a full ring
 *   only slows it down. Replies and XS_WATCH_EVENTs come from rsp[]; they are read
 *   piecewise into one message buffer, which again copes with messages larger than
 *   the ring. Every index move is followed by a notification on the port.
 * - One request is outstanding at a time; its reply is matched by req_id (a reply
 *   with another id, e.g. to a request that timed out, is dropped). Watch events
 *   are queued (16) and either dispatched to the watch's callback (xs_dispatch) or
 *   taken with xs_watch_next.
 * - Waiting is wait_ge on the port's event count with 100 ms steps, so a lost event
 *   (e.g. while xenstored restarts) costs at most 100 ms; the whole request gives up
 *   after xs_timeout= ms (default 30000).
 * - A request still without a reply after xs_reconnect= ms (5000), or a ring the
 *   server flagged in its error field, is sent again after the ring reconnection of
 *   xenstore-ring.txt (XENSTORE_SERVER_FEATURE_RECONNECTION), which also registers
 *   our watches again: a xenstored killed between taking a request and answering it
 *   does not leave the guest stuck.
 * - All ring work happens in thread context; the upcall only counts the event.
 */
#include "pv.h"
#include "xtest.h"

#include <xen/hvm/params.h>
#include <xen/io/xs_wire.h>

#define RING_SZ XENSTORE_RING_SIZE
#define HDR_SZ ((uint32_t)sizeof(struct xsd_sockmsg))
#define EVQ_LEN 16
#define MAX_WATCHES 16

static volatile struct xenstore_domain_interface *ring;
static uint32_t port;
static bool ready;
static uint32_t next_req_id = 1;
static uint64_t timeout_ms = 30000;

/* The message being received. */
static struct xsd_sockmsg rx_hdr;
static char rx_body[XENSTORE_PAYLOAD_MAX + 1];
static uint32_t rx_got;

/* The reply to the outstanding request. */
static uint32_t want_req_id;
static bool reply_ready;
static struct xsd_sockmsg reply_hdr;
static char reply_body[XENSTORE_PAYLOAD_MAX + 1];

/* Watch events. */
static struct xs_watch_event evq[EVQ_LEN];
static unsigned evq_len;
uint64_t xs_events_dropped;

/* Registered watches: their callbacks, and what to register again after a
 * reconnection (xenstored then forgets the connection's watches). */
static struct {
    bool used;
    char path[128];
    char token[64];
    xs_watch_fn fn;
    void *arg;
} watches[MAX_WATCHES];
static uint64_t reconnect_ms = 5000;
static bool reconnecting;
uint64_t xs_reconnects;

static const struct { int err; const char *name; } errnames[] = {
    { XEN_EINVAL, "EINVAL" }, { XEN_EACCES, "EACCES" }, { XEN_EEXIST, "EEXIST" },
    { XEN_EISDIR, "EISDIR" }, { XEN_ENOENT, "ENOENT" }, { XEN_ENOMEM, "ENOMEM" },
    { XEN_ENOSPC, "ENOSPC" }, { XEN_EIO, "EIO" }, { XEN_ENOTEMPTY, "ENOTEMPTY" },
    { XEN_ENOSYS, "ENOSYS" }, { XEN_EROFS, "EROFS" }, { XEN_EBUSY, "EBUSY" },
    { XEN_EAGAIN, "EAGAIN" }, { XEN_EISCONN, "EISCONN" }, { XEN_E2BIG, "E2BIG" },
    { XEN_EPERM, "EPERM" }, { XEN_ETIMEDOUT, "ETIMEDOUT" }, { XEN_ENODEV, "ENODEV" },
};

const char *xs_errname(int err)
{
    if (err < 0)
        err = -err;
    for (unsigned i = 0; i < ARRAY_SIZE(errnames); i++)
        if (errnames[i].err == err)
            return errnames[i].name;
    return "E?";
}

static int err_from_reply(const char *s)
{
    for (unsigned i = 0; i < ARRAY_SIZE(errnames); i++)
        if (!strcmp(errnames[i].name, s))
            return -errnames[i].err;
    return -XEN_EIO;
}

bool xenbus_ready(void)
{
    return ready;
}

uint32_t xenbus_port(void)
{
    return port;
}

/* ---- receiving ---------------------------------------------------------------------- */
static void queue_event(const char *body, uint32_t len)
{
    size_t plen = strnlen(body, len);

    if (plen >= len) {
        printf("xkvm-guest: xenbus: malformed watch event (%u bytes)\n", len);
        return;
    }
    const char *tok = body + plen + 1;
    size_t tlen = strnlen(tok, len - plen - 1);

    if (evq_len == EVQ_LEN) {           /* drop the oldest */
        memmove(&evq[0], &evq[1], sizeof(evq[0]) * (EVQ_LEN - 1));
        evq_len--;
        xs_events_dropped++;
    }
    struct xs_watch_event *ev = &evq[evq_len++];

    if (plen >= sizeof(ev->path))
        plen = sizeof(ev->path) - 1;
    if (tlen >= sizeof(ev->token))
        tlen = sizeof(ev->token) - 1;
    memcpy(ev->path, body, plen);
    ev->path[plen] = '\0';
    memcpy(ev->token, tok, tlen);
    ev->token[tlen] = '\0';
}

static void deliver(void)
{
    rx_body[rx_hdr.len] = '\0';
    if (rx_hdr.type == XS_WATCH_EVENT) {
        queue_event(rx_body, rx_hdr.len);
    } else if (rx_hdr.req_id == want_req_id && !reply_ready) {
        reply_hdr = rx_hdr;
        memcpy(reply_body, rx_body, rx_hdr.len + 1);
        reply_ready = true;
    } else {
        printf("xkvm-guest: xenbus: dropping reply type %u req_id %u (want %u)\n",
               rx_hdr.type, rx_hdr.req_id, want_req_id);
    }
}

void xs_poll(void)
{
    if (!ready)
        return;
    for (;;) {
        uint32_t cons = ring->rsp_cons;
        uint32_t prod = __atomic_load_n(&ring->rsp_prod, __ATOMIC_ACQUIRE);

        if (prod == cons)
            return;
        if (prod - cons > RING_SZ)
            xtest_fail("xenstore ring: rsp_prod %u rsp_cons %u", prod, cons);
        while (cons != prod) {
            uint32_t need = rx_got < HDR_SZ ? HDR_SZ - rx_got : HDR_SZ + rx_hdr.len - rx_got;
            uint32_t off = cons % RING_SZ, chunk = prod - cons;

            if (chunk > RING_SZ - off)
                chunk = RING_SZ - off;
            if (chunk > need)
                chunk = need;
            if (rx_got < HDR_SZ)
                memcpy((char *)&rx_hdr + rx_got, (const char *)ring->rsp + off, chunk);
            else
                memcpy(rx_body + (rx_got - HDR_SZ), (const char *)ring->rsp + off, chunk);
            cons += chunk;
            rx_got += chunk;
            if (rx_got == HDR_SZ && rx_hdr.len > XENSTORE_PAYLOAD_MAX)
                xtest_fail("xenstore ring: message of %u bytes (type %u)", rx_hdr.len,
                           rx_hdr.type);
            if (rx_got >= HDR_SZ && rx_got == HDR_SZ + rx_hdr.len) {
                deliver();
                rx_got = 0;
            }
        }
        __atomic_store_n(&ring->rsp_cons, cons, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        evtchn_send(port);              /* there is room again */
    }
}

/* ---- waiting ------------------------------------------------------------------------- */
static uint64_t deadline_after(uint64_t ms)
{
    return xen_time_ns() + ms * 1000000ULL;
}

/* One wait for an event on the store port (or 100 ms); false once past deadline. */
static bool wait_step(uint64_t seen, uint64_t deadline)
{
    if (xen_time_ns() >= deadline)
        return false;
    wait_ge(&evtchn_count[port], seen + 1, 100);
    return true;
}

/* ---- sending --------------------------------------------------------------------------- */
static int put_bytes(const void *data, uint32_t len, uint64_t deadline)
{
    const char *p = data;

    while (len) {
        uint64_t seen = evtchn_count[port];
        uint32_t cons = __atomic_load_n(&ring->req_cons, __ATOMIC_ACQUIRE);
        uint32_t prod = ring->req_prod;

        if (prod - cons > RING_SZ)
            xtest_fail("xenstore ring: req_prod %u req_cons %u", prod, cons);
        uint32_t space = RING_SZ - (prod - cons), off = prod % RING_SZ;

        if (!space) {
            evtchn_send(port);
            xs_poll();                  /* the server may be waiting for us too */
            if (!wait_step(seen, deadline))
                return -XEN_ETIMEDOUT;
            continue;
        }
        uint32_t chunk = len;

        if (chunk > space)
            chunk = space;
        if (chunk > RING_SZ - off)
            chunk = RING_SZ - off;
        memcpy((char *)ring->req + off, p, chunk);
        __atomic_store_n(&ring->req_prod, prod + chunk, __ATOMIC_RELEASE);
        p += chunk;
        len -= chunk;
    }
    return 0;
}

struct iov {
    const void *p;
    uint32_t len;
};

static int talk(uint32_t type, uint32_t tx, const struct iov *iov, unsigned n);

/*
 * The reconnection of docs/misc/xenstore-ring.txt, when the server offers it: set
 * connection = XENSTORE_RECONNECT, notify, wait until the server has reset the ring
 * and says XENSTORE_CONNECTED. It forgets our watches and transactions; the watches
 * are registered again here.
 */
static int reconnect(uint64_t deadline, const char *why)
{
    printf("xkvm-guest: xenbus: %s: reconnecting (req %u/%u rsp %u/%u, error %u)\n", why,
           ring->req_cons, ring->req_prod, ring->rsp_cons, ring->rsp_prod, ring->error);
    __atomic_store_n(&ring->connection, XENSTORE_RECONNECT, __ATOMIC_SEQ_CST);
    evtchn_send(port);
    uint64_t next_kick = xen_time_ns() + 1000000000ULL;

    while (__atomic_load_n(&ring->connection, __ATOMIC_ACQUIRE) != XENSTORE_CONNECTED) {
        uint64_t seen = evtchn_count[port];

        if (xen_time_ns() >= next_kick) {
            evtchn_send(port);
            next_kick = xen_time_ns() + 1000000000ULL;
        }
        if (!wait_step(seen, deadline))
            return -XEN_ETIMEDOUT;
    }
    rx_got = 0;
    xs_reconnects++;
    reconnecting = true;
    for (unsigned i = 0; i < MAX_WATCHES; i++) {
        if (!watches[i].used)
            continue;
        struct iov v[2] = { { watches[i].path, (uint32_t)strlen(watches[i].path) + 1 },
                            { watches[i].token, (uint32_t)strlen(watches[i].token) + 1 } };
        int rc = talk(XS_WATCH, 0, v, 2);

        if (rc < 0)
            printf("xkvm-guest: xenbus: watch %s again: %s\n", watches[i].path,
                   xs_errname(rc));
    }
    reconnecting = false;
    printf("xkvm-guest: xenbus: reconnected\n");
    return 0;
}

static bool can_reconnect(void)
{
    return !reconnecting &&
           (ring->server_features & XENSTORE_SERVER_FEATURE_RECONNECTION);
}

/* Send one request and wait for its reply; the reply's payload (NUL-terminated) is
 * left in reply_body. Returns the payload length or -errno. A request without a
 * reply for xs_reconnect= ms (5000), or a ring the server flagged with an error, is
 * sent again after a reconnection if the server offers it (at most 3 times). */
static int talk(uint32_t type, uint32_t tx, const struct iov *iov, unsigned n)
{
    if (!ready)
        return -XEN_ENODEV;
    struct xsd_sockmsg h = { .type = type, .tx_id = tx };

    for (unsigned i = 0; i < n; i++)
        h.len += iov[i].len;
    if (h.len > XENSTORE_PAYLOAD_MAX)
        return -XEN_E2BIG;

    uint64_t deadline = deadline_after(timeout_ms);
    unsigned resends = 0;
    int rc;

resend:
    h.req_id = next_req_id++;
    want_req_id = h.req_id;
    reply_ready = false;
    if ((rc = put_bytes(&h, HDR_SZ, deadline)))
        goto timeout;
    for (unsigned i = 0; i < n; i++)
        if ((rc = put_bytes(iov[i].p, iov[i].len, deadline)))
            goto timeout;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    evtchn_send(port);

    uint64_t stuck = deadline_after(reconnect_ms);

    for (;;) {
        uint64_t seen = evtchn_count[port];

        xs_poll();
        if (reply_ready)
            break;
        bool err = __atomic_load_n(&ring->error, __ATOMIC_ACQUIRE) != XENSTORE_ERROR_NONE;

        if ((err || xen_time_ns() >= stuck) && can_reconnect() && resends < 3) {
            resends++;
            if ((rc = reconnect(deadline, err ? "ring error" : "no reply")))
                goto timeout;
            goto resend;
        }
        if (!wait_step(seen, deadline)) {
            rc = -XEN_ETIMEDOUT;
            goto timeout;
        }
    }
    if (reply_hdr.type == XS_ERROR)
        return err_from_reply(reply_body);
    if (reply_hdr.type != type) {
        printf("xkvm-guest: xenbus: request type %u answered with type %u\n", type,
               reply_hdr.type);
        return -XEN_EIO;
    }
    return (int)reply_hdr.len;

timeout:
    printf("xkvm-guest: xenbus: no reply to request type %u (req_id %u) in %lu ms "
           "(req %u/%u rsp %u/%u)\n", type, h.req_id, (unsigned long)timeout_ms,
           ring->req_cons, ring->req_prod, ring->rsp_cons, ring->rsp_prod);
    return rc;
}

static struct iov str_iov(const char *s)
{
    return (struct iov){ s, (uint32_t)strlen(s) + 1 };
}

/* ---- operations -------------------------------------------------------------------------- */
int xs_read(uint32_t tx, const char *path, char *buf, size_t len)
{
    struct iov v = str_iov(path);
    int rc = talk(XS_READ, tx, &v, 1);

    if (rc < 0)
        return rc;
    if (len) {
        size_t n = (size_t)rc < len - 1 ? (size_t)rc : len - 1;

        memcpy(buf, reply_body, n);
        buf[n] = '\0';
    }
    return rc;
}

int xs_read_u64(uint32_t tx, const char *path, uint64_t *v)
{
    char buf[32];
    const char *end;
    int rc = xs_read(tx, path, buf, sizeof(buf));

    if (rc < 0)
        return rc;
    if (!buf[0] || buf[0] < '0' || buf[0] > '9')
        return -XEN_EINVAL;
    *v = strtou64(buf, &end);
    return *end ? -XEN_EINVAL : 0;
}

int xs_write(uint32_t tx, const char *path, const char *val)
{
    struct iov v[2] = { str_iov(path), { val, (uint32_t)strlen(val) } };
    int rc = talk(XS_WRITE, tx, v, 2);

    return rc < 0 ? rc : 0;
}

int xs_printf(uint32_t tx, const char *path, const char *fmt, ...)
{
    char buf[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return xs_write(tx, path, buf);
}

int xs_mkdir(uint32_t tx, const char *path)
{
    struct iov v = str_iov(path);
    int rc = talk(XS_MKDIR, tx, &v, 1);

    return rc < 0 ? rc : 0;
}

int xs_rm(uint32_t tx, const char *path)
{
    struct iov v = str_iov(path);
    int rc = talk(XS_RM, tx, &v, 1);

    return rc < 0 ? rc : 0;
}

int xs_directory(uint32_t tx, const char *path, char *buf, size_t len)
{
    struct iov v = str_iov(path);
    int rc = talk(XS_DIRECTORY, tx, &v, 1);

    if (rc < 0)
        return rc;
    if ((size_t)rc > len)
        return -XEN_E2BIG;
    memcpy(buf, reply_body, (size_t)rc);
    int n = 0;

    for (int i = 0; i < rc; i++)
        n += !buf[i];
    return n;
}

int xs_transaction_start(uint32_t *tx)
{
    struct iov v = { "", 1 };
    int rc = talk(XS_TRANSACTION_START, 0, &v, 1);
    const char *end;

    if (rc < 0)
        return rc;
    uint64_t id = strtou64(reply_body, &end);

    if (end == reply_body || *end || !id)
        return -XEN_EIO;
    *tx = (uint32_t)id;
    return 0;
}

int xs_transaction_end(uint32_t tx, bool commit)
{
    struct iov v = { commit ? "T" : "F", 2 };
    int rc = talk(XS_TRANSACTION_END, tx, &v, 1);

    return rc < 0 ? rc : 0;
}

int xs_watch(const char *path, const char *token, xs_watch_fn fn, void *arg)
{
    struct iov v[2] = { str_iov(path), str_iov(token) };
    int rc = talk(XS_WATCH, 0, v, 2);

    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < MAX_WATCHES; i++) {
        if (watches[i].used)
            continue;
        if (strlen(path) >= sizeof(watches[i].path) ||
            strlen(token) >= sizeof(watches[i].token))
            break;
        memcpy(watches[i].path, path, strlen(path) + 1);
        memcpy(watches[i].token, token, strlen(token) + 1);
        watches[i].arg = arg;
        watches[i].fn = fn;
        watches[i].used = true;
        return 0;
    }
    printf("xkvm-guest: xenbus: watch %s (%s) not remembered: no room\n", path, token);
    return 0;
}

int xs_unwatch(const char *path, const char *token)
{
    struct iov v[2] = { str_iov(path), str_iov(token) };
    int rc = talk(XS_UNWATCH, 0, v, 2);

    for (unsigned i = 0; i < MAX_WATCHES; i++)
        if (watches[i].used && !strcmp(watches[i].token, token) &&
            !strcmp(watches[i].path, path))
            watches[i].used = false;
    /* Drop its queued events: a removed watch fires no more. */
    for (unsigned i = 0; i < evq_len;) {
        if (!strcmp(evq[i].token, token)) {
            memmove(&evq[i], &evq[i + 1], sizeof(evq[0]) * (evq_len - i - 1));
            evq_len--;
        } else {
            i++;
        }
    }
    return rc < 0 ? rc : 0;
}

static void take_event(unsigned i, struct xs_watch_event *ev)
{
    *ev = evq[i];
    memmove(&evq[i], &evq[i + 1], sizeof(evq[0]) * (evq_len - i - 1));
    evq_len--;
}

unsigned xs_dispatch(void)
{
    unsigned ran = 0;

    xs_poll();
    for (unsigned i = 0; i < evq_len;) {
        unsigned w;

        for (w = 0; w < MAX_WATCHES; w++)
            if (watches[w].used && watches[w].fn && !strcmp(watches[w].token, evq[i].token))
                break;
        if (w == MAX_WATCHES) {
            i++;
            continue;
        }
        struct xs_watch_event ev;

        take_event(i, &ev);
        watches[w].fn(&ev, watches[w].arg);
        ran++;
    }
    return ran;
}

bool xs_watch_next(const char *token, struct xs_watch_event *ev, uint64_t ms)
{
    if (!ready)
        return false;
    uint64_t deadline = deadline_after(ms);

    for (;;) {
        uint64_t seen = evtchn_count[port];

        xs_poll();
        for (unsigned i = 0; i < evq_len; i++) {
            if (!token || !strcmp(evq[i].token, token)) {
                take_event(i, ev);
                return true;
            }
        }
        if (!wait_step(seen, deadline))
            return false;
    }
}

/* ---- set-up ----------------------------------------------------------------------------- */
int xenbus_init(void)
{
    uint64_t pfn = 0, evtchn = 0;

    if (ready)
        return 0;
    pv_init();
    timeout_ms = cmdline_get_u64("xs_timeout", 30000);
    reconnect_ms = cmdline_get_u64("xs_reconnect", 5000);
    if (hvm_get_param(HVM_PARAM_STORE_PFN, &pfn) || !pfn ||
        hvm_get_param(HVM_PARAM_STORE_EVTCHN, &evtchn) || !evtchn ||
        evtchn >= EVTCHN_NR_PORTS) {
        printf("xkvm-guest: xenbus: no store ring (pfn %#lx, port %lu)\n",
               (unsigned long)pfn, (unsigned long)evtchn);
        return -XEN_ENODEV;
    }
    uint64_t va = pfn << 12;

    if (va >= IDENT_MAP_LIMIT) {        /* not on xkvmd; Xen puts it below 4 GiB too */
        va = (520ULL << 30);
        if (map_page(va, pfn << 12, false))
            return -XEN_ENOMEM;
    }
    ring = (volatile struct xenstore_domain_interface *)(uintptr_t)va;
    port = (uint32_t)evtchn;
    rx_got = 0;
    evtchn_attach(port, 0, NULL, NULL);
    ready = true;
    printf("xkvm-guest: xenbus: store ring gfn %#lx port %u, req %u/%u rsp %u/%u, "
           "server features %#x, connection %u\n", (unsigned long)pfn, port,
           ring->req_cons, ring->req_prod, ring->rsp_cons, ring->rsp_prod,
           ring->server_features, ring->connection);
    return 0;
}

long xenbus_wait_backend(const char *back, const char *token, const char *who,
                         unsigned want_mask, uint64_t ms)
{
    uint64_t deadline = xen_time_ns() + ms * 1000000ULL, st = 0;
    struct xs_watch_event ev;
    char p[200];

    snprintf(p, sizeof(p), "%s/state", back);
    for (;;) {
        int rc = xs_read_u64(0, p, &st);

        if (rc == 0 && st < 32 && (want_mask >> st) & 1)
            return (long)st;
        if (xen_time_ns() >= deadline) {
            printf("xkvm-guest: %s: backend state %lu (rc %d), want mask %#x\n", who,
                   (unsigned long)st, rc, want_mask);
            return -XEN_ETIMEDOUT;
        }
        xs_watch_next(token, &ev, 500);
    }
}
