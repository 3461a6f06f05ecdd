/*
 * Incoming live migrations (xkvmd --migrate-listen, and channels xkvm migrate-receive
 * passes): the listener, the TLS handshake that authenticates a peer before the first
 * byte of its stream is read (with --migrate-tls-dir or --migrate-psk; plain only with
 * --migrate-insecure), and the limits a peer lives under, authenticated or not: one of
 * MAX_INCOMING slots; its DOMAIN_CONFIG admitted within ADMIT_DEADLINE_S of
 * connecting, and the whole migration done within --migrate-timeout, or the main
 * loop's watchdog shuts the connection down (its half-built domain is then removed);
 * and its domain's memory within --migrate-max-memory and, with every other incoming
 * migration's, within --migrate-max-total, checked before anything is built for it
 * (restore.c asks the slot's gate). docs/migration.md.
 */
#include "daemon/migrate_job.h"
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hv/hv.h"
#include "migrate/local_mem.h"
#include "migrate/migrate.h"
#include "migrate/multiconn.h"
#include "migrate/postcopy_restore.h"
#include "util/control_reply.h"
#include "util/domcfg.h"
#include "util/log.h"
#include "util/tls.h"
#include "util/transport.h"

/* Incoming migrations at once: a peer cannot make xkvmd start threads without end. */
#define MAX_INCOMING 4
/* A peer must have its domain admitted this soon, whatever --migrate-timeout says. */
#define ADMIT_DEADLINE_S 30u

/*
 * One incoming migration. The gate comes first: restore.c sees only it. fd, the
 * deadlines and cut_off are under slots_lock (the watchdog reads them); fd -1: free.
 */
struct slot {
    struct migrate_gate gate;
    int fd;
    char peer[INET6_ADDRSTRLEN + 8];
    uint64_t admit_by_ns, deadline_ns;
    uint64_t claimed_mb;        /* admitted: counted in claimed_total_mb */
    unsigned admit_s;           /* the admission deadline, in seconds from accept */
    bool admitted;
    char cut_off[96];           /* why the watchdog shut it down; "": it did not */
    int reply_fd;               /* migrate-receive: its client's connection; else -1 */
    bool same_host;             /* migrate-receive "local": memory passed, not copied */
};

static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[MAX_INCOMING] = {
    [0 ... MAX_INCOMING - 1] = { .fd = -1, .reply_fd = -1 },
};
static unsigned nr_incoming;
static uint64_t claimed_total_mb;
static struct migrate_incoming_limits limits = { .timeout_s = MIGRATE_DEFAULT_TIMEOUT_S };

void migrate_incoming_configure(const struct migrate_incoming_limits *l)
{
    pthread_mutex_lock(&slots_lock);
    limits = *l;
    if (!limits.timeout_s)
        limits.timeout_s = MIGRATE_DEFAULT_TIMEOUT_S;
    pthread_mutex_unlock(&slots_lock);
}

unsigned migrate_incoming_running(void)
{
    return __atomic_load_n(&nr_incoming, __ATOMIC_ACQUIRE);
}

/* The caps in MiB; unset ones follow from the machine memory (slots_lock held). */
static uint64_t total_cap_mb(void)
{
    uint64_t machine_mb = host.mm.nr_frames >> (20 - XKVM_PAGE_SHIFT);
    return limits.max_total_mb ? limits.max_total_mb
                               : machine_mb * MIGRATE_DEFAULT_TOTAL_PERCENT / 100;
}

static uint64_t one_cap_mb(void)
{
    uint64_t total = total_cap_mb();
    return limits.max_memory_mb && limits.max_memory_mb < total ? limits.max_memory_mb : total;
}

/*
 * The gate: the peer's DOMAIN_CONFIG is well-formed (restore.c parsed it); may its
 * domain claim this much memory? Reserves it against the total if so.
 */
static int admit(struct migrate_gate *g, const struct domcfg *cfg, char *err, size_t errlen)
{
    struct slot *s = (struct slot *)g;
    int rc = 0;
    pthread_mutex_lock(&slots_lock);
    uint64_t one = one_cap_mb(), total = total_cap_mb();
    uint64_t mb = domcfg_max_mb(cfg);       /* a balloon driver may grow it to maxmem */
    if (s->admitted) {
        rc = -EINVAL;
        snprintf(err, errlen, "a second DOMAIN_CONFIG");
    } else if (mb > one) {
        rc = -EFBIG;
        snprintf(err, errlen, "refused: the domain's %llu MiB exceed the %llu MiB one "
                 "incoming migration may claim here (--migrate-max-memory)",
                 (unsigned long long)mb, (unsigned long long)one);
    } else if (claimed_total_mb + mb > total) {
        rc = -EBUSY;
        snprintf(err, errlen, "refused: the domain's %llu MiB and the %llu MiB other "
                 "incoming migrations hold exceed the %llu MiB all may claim here "
                 "(--migrate-max-total); try again later",
                 (unsigned long long)mb, (unsigned long long)claimed_total_mb,
                 (unsigned long long)total);
    } else {
        s->admitted = true;
        s->claimed_mb = mb;
        claimed_total_mb += mb;
    }
    pthread_mutex_unlock(&slots_lock);
    return rc;
}

void migrate_incoming_watchdog(void)
{
    uint64_t now = mono_ns();
    pthread_mutex_lock(&slots_lock);
    for (unsigned i = 0; i < MAX_INCOMING; i++) {
        struct slot *s = &slots[i];
        if (s->fd < 0 || s->cut_off[0])
            continue;
        if (now >= s->deadline_ns)
            snprintf(s->cut_off, sizeof(s->cut_off), "not complete within "
                     "--migrate-timeout (%u s)", limits.timeout_s);
        else if (!s->admitted && now >= s->admit_by_ns)
            snprintf(s->cut_off, sizeof(s->cut_off), "no acceptable DOMAIN_CONFIG within "
                     "%u s of connecting", s->admit_s);
        if (s->cut_off[0])
            shutdown(s->fd, SHUT_RDWR);     /* the receiver's next read or write fails */
    }
    pthread_mutex_unlock(&slots_lock);
}

/*
 * Give the slot back: its memory claim ends (its domain runs here or is gone). The
 * connection is closed, unless keep_fd (an extra data connection lives on without).
 */
static void slot_release_fd(struct slot *s, char *cut_off, size_t len, bool keep_fd);
static void slot_release(struct slot *s, char *cut_off, size_t len)
{
    slot_release_fd(s, cut_off, len, false);
}

static void slot_release_fd(struct slot *s, char *cut_off, size_t len, bool keep_fd)
{
    pthread_mutex_lock(&slots_lock);
    snprintf(cut_off, len, "%s", s->cut_off);
    claimed_total_mb -= s->claimed_mb;
    int fd = s->fd;
    *s = (struct slot){ .fd = -1, .reply_fd = -1 };
    pthread_mutex_unlock(&slots_lock);
    if (!keep_fd)
        close(fd);  /* only now: the watchdog must never shut down a reused fd */
    __atomic_sub_fetch(&nr_incoming, 1, __ATOMIC_ACQ_REL);
}

/*
 * The peer proves who it is before the first byte of its stream is read, within what
 * is left of its admission deadline: until then it holds this slot and nothing else.
 * A peer that speaks plain text is told so in plain text. NULL with err if refused.
 */
static struct transport *authenticate(struct slot *s, struct tls_creds *c, char *err,
                                      size_t errlen)
{
    uint64_t now = mono_ns();
    unsigned ms = s->admit_by_ns > now ? (unsigned)((s->admit_by_ns - now) / 1000000u) + 1 : 1;
    int tls = tls_peek_is_tls(s->fd, ms);
    if (tls == 0) {
        struct transport plain;
        transport_plain(&plain, s->fd);
        snprintf(err, errlen, "refused: it sent plain text, this host takes migrations "
                 "only over TLS (%s)", tls_creds_kind(c));
        migrate_send_line(&plain, MIGRATE_MSG_ERROR " %s: give the source's xkvmd "
                          "--migrate-tls-dir or --migrate-psk", err);
        return NULL;
    }
    if (tls < 0) {
        snprintf(err, errlen, "refused: nothing received: %s", strerror(-tls));
        return NULL;
    }
    char why[900];
    struct transport *t = tls_open(c, s->fd, true, NULL, ms, why, sizeof(why));
    if (!t)
        snprintf(err, errlen, "refused: %s", why);
    else
        log_info("incoming migration from %s over %s", s->peer, t->name);
    return t;
}

/* migrate-receive: the outcome, to the client that passed the channel. */
static void reply_to_client(int fd, int rc, uint16_t domid, const char *err)
{
    struct json_object *r;
    if (rc) {
        r = control_reply_err(-rc, "incoming migration: %s", err);
    } else {
        r = control_reply_ok();
        json_object_object_add(r, "domid", json_object_new_int(domid));
    }
    control_write_json(fd, r);
    close(fd);
}

/*
 * After refusing a peer: end our side and read what it still sends (at most
 * LINGER_BYTES, LINGER_MS) before the close, so that the close does not reset the
 * connection and throw away the refusal (our ERROR line or TLS alert) before the peer
 * has read it.
 */
#define LINGER_MS    2000u
#define LINGER_BYTES (4u << 20)
static void linger_after_refusal(int fd)
{
    shutdown(fd, SHUT_WR);
    uint64_t end = mono_ns() + LINGER_MS * 1000000ull;
    char buf[16384];
    for (size_t got = 0; got < LINGER_BYTES;) {
        uint64_t now = mono_ns();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= end || poll(&p, 1, (int)((end - now) / 1000000u) + 1) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN)))
            break;
        got += n > 0 ? (size_t)n : 0;
    }
}

/* Milliseconds left of the slot's admission deadline (at least 1). */
static unsigned admit_ms_left(const struct slot *s)
{
    uint64_t now = mono_ns();
    return s->admit_by_ns > now ? (unsigned)((s->admit_by_ns - now) / 1000000u) + 1 : 1;
}

/*
 * A connection that began with 'D': an extra data connection of a migration in
 * progress (migrate/multiconn.h), refused unless its DATA line names one. It gives
 * its slot back at once (the migration it joins holds one) and runs here until its
 * END; a refusal is logged, and said to the peer, as any refused peer's.
 */
static void data_connection(struct slot *s, struct transport *t)
{
    char line[96] = "D", tok[MULTICONN_TOKEN_LEN + 1], err[900] = "", peer[sizeof(s->peer)];
    char cut_off[sizeof(s->cut_off)];
    unsigned index = 0;
    int rc = migrate_read_line(t, line + 1, sizeof(line) - 1, admit_ms_left(s));
    if (rc || multiconn_parse_data_line(line, strlen(line), tok, &index)) {
        rc = -EPROTO;
        snprintf(err, sizeof(err), "refused: not a migration stream nor a DATA line");
    }
    snprintf(peer, sizeof(peer), "%s", s->peer);
    int fd = s->fd;
    slot_release_fd(s, cut_off, sizeof(cut_off), true);
    if (!rc)
        rc = migrate_receive_data(tok, index, t, err, sizeof(err));
    if (rc == -EACCES || rc == -EPROTO) {
        migrate_send_line(t, MIGRATE_MSG_ERROR " %s", err);
        linger_after_refusal(fd);
    }
    transport_release(t);
    close(fd);
    if (rc)
        log_warn("incoming migration from %s failed: %s", peer, err);
    else
        log_info("incoming data connection %u from %s done", index, peer);
}

/*
 * A post-copy recovery: its one line names a postcopy-paused domain and its token
 * (postcopy_restore_recover checks both), read within RECOVER_LINE_S. Admitted once
 * read: it claims no memory, and the watchdog's --migrate-timeout still applies.
 */
#define RECOVER_LINE_S 10u
static int recover_postcopy(struct slot *s, struct transport *t, uint16_t *domid, char *err,
                            size_t errlen)
{
    char line[MIGRATE_MSG_MAX];
    if (migrate_read_line(t, line, sizeof(line), RECOVER_LINE_S * 1000u)) {
        snprintf(err, errlen, "refused: no recovery request within %u s", RECOVER_LINE_S);
        return -EACCES;
    }
    pthread_mutex_lock(&slots_lock);
    s->admitted = true;
    pthread_mutex_unlock(&slots_lock);
    int rc = postcopy_restore_recover(t, line, err, errlen);
    if (rc == -EACCES)
        linger_after_refusal(s->fd);
    else if (!rc)       /* the domain it named, for migrate-receive's answer */
        sscanf(line, MIGRATE_MSG_POSTCOPY_RECOVER " %hu", domid);
    return rc;
}

static void *receive_thread(void *arg)
{
    struct slot *s = arg;
    pthread_setname_np(pthread_self(), "migrate-in");
    char err[1024] = "";
    uint16_t domid = 0;
    /* A channel a local client passed (migrate-receive) was authenticated by it (ssh). */
    struct tls_creds *c = s->reply_fd < 0 ? migrate_credentials() : NULL;
    struct transport plain, *t = &plain;
    transport_plain(&plain, s->fd);
    int rc = 0;
    struct local_mem lm = { 0 };
    if (c && !(t = authenticate(s, c, err, sizeof(err)))) {
        rc = -EACCES;
        linger_after_refusal(s->fd);
    }
    if (!rc && s->same_host) {      /* the source's memfds come first, beside the stream */
        s->gate.local_mem = &lm;
        rc = local_recv_fds(s->fd, &lm, err, sizeof(err));
    }
    /* Its first byte: a stream begins with 0xff, an extra data connection with 'D'. */
    uint8_t first = 0;
    if (!rc && (transport_wait_readable(t, admit_ms_left(s)) <= 0 ||
                transport_read(t, &first, 1) != 1)) {
        rc = -EPIPE;
        snprintf(err, sizeof(err), "nothing received%s%s", t->why[0] ? ": " : "", t->why);
    }
    if (!rc && first == 'D' && s->reply_fd < 0) {
        local_mem_release(&lm);
        data_connection(s, t);
        return NULL;
    }
    struct transport_pushback pb;
    if (!rc)
        transport_pushback(&pb, t, first);
    if (!rc && first == 'P' && !s->same_host)   /* xkvm migrate-recover: migration.md */
        rc = recover_postcopy(s, &pb.t, &domid, err, sizeof(err));
    else if (!rc)
        rc = migrate_receive(&pb.t, true, &s->gate, NULL, &domid, err, sizeof(err));
    local_mem_release(&lm);
    if (t)
        transport_release(t);
    char peer[sizeof(s->peer)], cut_off[sizeof(s->cut_off)];
    snprintf(peer, sizeof(peer), "%s", s->peer);
    int reply_fd = s->reply_fd;
    slot_release(s, cut_off, sizeof(cut_off));
    if (reply_fd >= 0)
        reply_to_client(reply_fd, rc, domid, cut_off[0] ? cut_off : err);
    if (rc && cut_off[0])
        log_warn("incoming migration from %s cut off: %s", peer, cut_off);
    else if (rc)
        log_warn("incoming migration from %s failed: %s", peer, err);
    return NULL;
}

/* A free slot for fd, its deadlines set (peer: a socket address, or NULL); NULL if full. */
static struct slot *slot_take(int fd, const struct sockaddr_storage *sa, socklen_t salen)
{
    struct slot *s = NULL;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&slots_lock);
    for (unsigned i = 0; i < MAX_INCOMING && !s; i++)
        if (slots[i].fd < 0)
            s = &slots[i];
    if (s) {
        unsigned admit_s = limits.timeout_s < ADMIT_DEADLINE_S ? limits.timeout_s
                                                                : ADMIT_DEADLINE_S;
        *s = (struct slot){ .gate = { .admit = admit }, .fd = fd, .reply_fd = -1,
                            .admit_s = admit_s,
                            .admit_by_ns = now + admit_s * 1000000000ull,
                            .deadline_ns = now + limits.timeout_s * 1000000000ull };
        char addr[INET6_ADDRSTRLEN], port[8];
        if (!sa)
            snprintf(s->peer, sizeof(s->peer), "migrate-receive");
        else if (getnameinfo((const struct sockaddr *)sa, salen, addr, sizeof(addr), port,
                             sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV))
            snprintf(s->peer, sizeof(s->peer), "?");
        else
            snprintf(s->peer, sizeof(s->peer), "%s:%s", addr, port);
        __atomic_add_fetch(&nr_incoming, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&slots_lock);
    return s;
}

/*
 * No Nagle, and the stall timeout (--migrate-stall-timeout) on reads and writes, as for
 * every incoming connection: a peer that sends nothing for that long is given up on
 * even before its deadline, and a post-copy whose link goes silent is paused.
 */
static void incoming_sockopts(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    migrate_stall_sockopts(fd);
}

struct json_object *migrate_receive_start(int client_fd, int *file_fd, bool same_host,
                                          bool *detached)
{
    *detached = false;
    int type = 0;
    socklen_t tl = sizeof(type);
    if (*file_fd < 0 || getsockopt(*file_fd, SOL_SOCKET, SO_TYPE, &type, &tl) ||
        type != SOCK_STREAM)
        return control_reply_err(EINVAL, "migrate-receive needs the channel's stream socket "
                                 "passed with the request (SCM_RIGHTS)");
    int reply_fd = fcntl(client_fd, F_DUPFD_CLOEXEC, 3);
    if (reply_fd < 0)
        return control_reply_err(errno, "migrate-receive: %s", strerror(errno));
    fcntl(reply_fd, F_SETFL, fcntl(reply_fd, F_GETFL) & ~O_NONBLOCK);
    struct slot *s = slot_take(*file_fd, NULL, 0);
    if (!s) {
        close(reply_fd);
        return control_reply_err(EBUSY, "too many incoming migrations: %d in progress",
                                 MAX_INCOMING);
    }
    int fd = *file_fd;
    *file_fd = -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    incoming_sockopts(fd);
    s->reply_fd = reply_fd;
    s->same_host = same_host;
    if (migrate_start_thread(receive_thread, s)) {
        char unused[sizeof(s->cut_off)];
        s->reply_fd = -1;
        slot_release(s, unused, sizeof(unused));
        close(reply_fd);
        return control_reply_err(EAGAIN, "cannot start the receiver");
    }
    log_info("incoming migration through a channel a local client passed (migrate-receive)");
    *detached = true;
    return NULL;
}

void migrate_accept(int listen_fd)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int fd = accept4(listen_fd, (struct sockaddr *)&sa, &salen, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct slot *s = slot_take(fd, &sa, salen);
    if (!s) {
        log_warn("incoming migration refused: %d already in progress", MAX_INCOMING);
        struct transport plain;
        transport_plain(&plain, fd);
        if (!migrate_credentials())     /* a TLS peer could not read it: it sees the close */
            migrate_send_line(&plain, MIGRATE_MSG_ERROR " too many incoming migrations: %d "
                              "in progress, each cut off after %u s at most; try again later",
                              MAX_INCOMING, limits.timeout_s);
        close(fd);
        return;
    }
    incoming_sockopts(fd);
    if (migrate_start_thread(receive_thread, s)) {
        char unused[sizeof(s->cut_off)];
        slot_release(s, unused, sizeof(unused));
    }
}

int migrate_listen(const char *addrport, char *err, size_t errlen)
{
    char addr[256];
    const char *colon = strrchr(addrport, ':');
    if (!colon || colon == addrport || (size_t)(colon - addrport) >= sizeof(addr) || !colon[1]) {
        snprintf(err, errlen, "--migrate-listen wants ADDR:PORT, got '%s'", addrport);
        return -EINVAL;
    }
    memcpy(addr, addrport, (size_t)(colon - addrport));
    addr[colon - addrport] = '\0';
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
    int g = getaddrinfo(addr, colon + 1, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "--migrate-listen %s: %s", addrport, gai_strerror(g));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 8) < 0) {
        int e = errno;
        snprintf(err, errlen, "--migrate-listen %s: %s", addrport, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -e;
    }
    freeaddrinfo(ai);
    log_info("accepting migrations on %s", addrport);
    return fd;
}
