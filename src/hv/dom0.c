/* The dom0 socket: connections, requests, and what each connection holds. */
#include "hv/dom0.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/hvm/params.h>

#include "hv/dom0_msg.h"
#include "hv/domain.h"
#include "hv/uffd_pages.h"
#include "hv/event_state.h"
#include "hv/event.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "util/fdpass.h"
#include "util/log.h"

/*
 * One connection per service and device, and per queue for a netback vif (up to 8):
 * hundreds on a full host. Slots are reused; loops stop at conns_end, one past the
 * highest slot used since start.
 */
#define MAX_CONNS           1024
#define MAX_MAPS_PER_CONN   4096u
#define MAX_BINDS_PER_CONN  1024u

/* A frame a service maps: a pinned grant, or a foreign frame by gfn. */
struct mapping {
    bool used;
    bool grant;
    bool gone;              /* the domain was destroyed: only the frame ref is left */
    uint16_t domid;
    uint32_t gt_handle;     /* gnttab_dom0_map's handle, for grants */
    uint64_t mfn;           /* one frame reference is held on it */
    uint64_t gfn;           /* foreign maps: where it was mapped from */
    bool writable;
};

struct binding {
    bool used;
    bool gone;
    uint16_t domid;
    uint32_t port;
    uint64_t cookie;        /* evtchn_dom0_bind's name for it */
};

struct conn {
    int fd;
    bool hello;
    bool refused;           /* not root: every request gets EACCES */
    bool closing;
    pid_t pid;
    char name[XKVM_DOM0_NAME_MAX];
    struct mapping *maps;
    uint32_t nr_maps;
    struct binding *binds;
    uint32_t nr_binds;
    int domains_fd;         /* WATCH_DOMAINS: xkvmd's end of the eventfd, or -1 */
};

static int listen_fd = -1;
static int epoll_fd = -1;
static char sock_path[PATH_MAX];
static struct conn conns[MAX_CONNS];
static int conns_end;
static int readonly_mem_fd = -1;

static const struct domain_observer dom0_observer = {
    .changed = dom0_domains_changed,
    .freeing = dom0_domain_gone,
};

/* Slots below this may be in use (the others never were). */
static int conns_in_use(void)
{
    return __atomic_load_n(&conns_end, __ATOMIC_ACQUIRE);
}

/* Every slot free; and room in the fd limit for the connections (soft up to hard). */
static void init_conns(void)
{
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i] = (struct conn){ .fd = -1, .domains_fd = -1 };
    __atomic_store_n(&conns_end, 0, __ATOMIC_RELEASE);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max &&
        rl.rlim_cur < 4 * MAX_CONNS) {
        rl.rlim_cur = rl.rlim_max < 4 * MAX_CONNS ? rl.rlim_max : 4 * MAX_CONNS;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int dom0_listen(const char *rundir)
{
    domain_observe(&dom0_observer);
    init_conns();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rundir,
                         XKVM_DOM0_SOCKET) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    /* Not CLOEXEC: live update hands the listening socket to the next xkvmd. */
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path);    /* the caller holds the pidfile lock: any socket is stale */
    /* Created 0600 (no window in which others may connect), then checked per peer. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || listen(fd, 16) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    snprintf(sock_path, sizeof(sock_path), "%s", sa.sun_path);
    listen_fd = fd;
    return fd;
}

int dom0_listen_inherited(int fd, const char *rundir)
{
    domain_observe(&dom0_observer);
    init_conns();
    if ((size_t)snprintf(sock_path, sizeof(sock_path), "%s/%s", rundir, XKVM_DOM0_SOCKET) >=
        sizeof(sock_path))
        return -ENAMETOOLONG;
    listen_fd = fd;
    return fd;
}

void dom0_attach(int epfd)
{
    epoll_fd = epfd;
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listen_fd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
}

/* The machine-memory fd, reopened read-only for read-only mappings. */
static int mem_fd(bool readonly)
{
    if (!readonly)
        return host_mm()->fd;
    if (readonly_mem_fd < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", host_mm()->fd);
        readonly_mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    return readonly_mem_fd;
}

/* ---- replies ---------------------------------------------------------------------- */

static int send_reply(struct conn *c, uint32_t type, uint32_t seq, int error,
                       const void *body, size_t blen, const int *fds, unsigned nfds)
{
    uint8_t buf[XKVM_DOM0_MAX_MSG];
    struct xkvm_dom0_hdr h = { .type = type | XKVM_DOM0_REPLY, .seq = seq, .error = error,
                               .len = (uint32_t)(sizeof(h) + (error ? 0 : blen)) };
    memcpy(buf, &h, sizeof(h));
    if (!error && blen)
        memcpy(buf + sizeof(h), body, blen);
    /* A service that does not read its replies loses its connection. */
    if (fdpass_send(c->fd, buf, h.len, fds, error ? 0 : nfds, MSG_DONTWAIT, NULL, 0) ==
        (ssize_t)h.len)
        return 0;
    c->closing = true;
    return -1;
}

static int reply_error(struct conn *c, uint32_t type, uint32_t seq, int error,
                        const char *why)
{
    log_info("dom0: %s (pid %d): %s: %s (%s)", c->name[0] ? c->name : "service", c->pid,
             dom0_msg_type_name(type), why, strerror(error));
    return send_reply(c, type, seq, error, NULL, 0, NULL, 0);
}

/* ---- what a connection holds ------------------------------------------------------ */

/*
 * Double a connection's table of n entries of `size` bytes (16 at first, max at most),
 * the new ones zeroed. The new table with *n updated, or NULL (the old one stays).
 */
static void *grow_table(void *tab, uint32_t *n, size_t size, uint32_t max)
{
    if (*n == max)
        return NULL;
    uint32_t nn = *n ? *n * 2 : 16;
    uint8_t *t = realloc(tab, nn * size);
    if (!t)
        return NULL;
    memset(t + *n * size, 0, (nn - *n) * size);
    *n = nn;
    return t;
}

static struct mapping *new_mapping(struct conn *c, uint32_t *handle)
{
    for (uint32_t h = 0; h < c->nr_maps; h++)
        if (!c->maps[h].used) {
            *handle = h;
            return &c->maps[h];
        }
    uint32_t old = c->nr_maps;
    struct mapping *m = grow_table(c->maps, &c->nr_maps, sizeof(*m), MAX_MAPS_PER_CONN);
    if (!m)
        return NULL;
    c->maps = m;
    *handle = old;
    return &c->maps[old];
}

static void release_mapping(struct mapping *m)
{
    if (m->grant && !m->gone) {
        struct domain *d = domain_find(m->domid);
        if (d)
            gnttab_dom0_unmap(d, m->gt_handle);
    } else if (!m->gone && m->writable) {
        struct domain *d = domain_find(m->domid);
        if (d)
            p2m_mark_dirty(&d->p2m, m->gfn, 1);     /* log-dirty: it may have written */
    }
    mm_frame_put(host_mm(), m->mfn);
    *m = (struct mapping){ 0 };
}

static struct binding *find_binding(struct conn *c, uint32_t domid, uint32_t port)
{
    for (uint32_t i = 0; i < c->nr_binds; i++)
        if (c->binds[i].used && !c->binds[i].gone && c->binds[i].domid == domid &&
            c->binds[i].port == port)
            return &c->binds[i];
    return NULL;
}

static struct binding *new_binding(struct conn *c)
{
    for (uint32_t i = 0; i < c->nr_binds; i++)
        if (!c->binds[i].used)
            return &c->binds[i];
    uint32_t old = c->nr_binds;
    struct binding *b = grow_table(c->binds, &c->nr_binds, sizeof(*b), MAX_BINDS_PER_CONN);
    if (!b)
        return NULL;
    c->binds = b;
    return &c->binds[old];
}

static void conn_close(struct conn *c)
{
    for (uint32_t h = 0; h < c->nr_maps; h++)
        if (c->maps[h].used)
            release_mapping(&c->maps[h]);
    for (uint32_t i = 0; i < c->nr_binds; i++) {
        struct binding *b = &c->binds[i];
        struct domain *d = b->used && !b->gone ? domain_find(b->domid) : NULL;
        if (d)
            evtchn_dom0_unbind(d, b->port, b->cookie);
    }
    log_info("dom0: %s (pid %d) disconnected", c->name[0] ? c->name : "service", c->pid);
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->maps);
    free(c->binds);
    if (c->domains_fd >= 0)
        close(c->domains_fd);
    *c = (struct conn){ .fd = -1, .domains_fd = -1 };
}

void dom0_domain_gone(struct domain *d)
{
    for (int i = 0; i < conns_in_use(); i++) {
        struct conn *c = &conns[i];
        if (c->fd < 0)
            continue;
        for (uint32_t h = 0; h < c->nr_maps; h++) {
            struct mapping *m = &c->maps[h];
            if (!m->used || m->gone || m->domid != d->domid)
                continue;
            if (m->grant)
                gnttab_dom0_unmap(d, m->gt_handle);
            m->gone = true;     /* the frame ref stays until the service unmaps */
        }
        for (uint32_t k = 0; k < c->nr_binds; k++)
            if (c->binds[k].used && c->binds[k].domid == d->domid)
                c->binds[k].gone = true;
    }
}

/* ---- requests --------------------------------------------------------------------- */

static int do_bind(struct conn *c, const struct dom0_request *r)
{
    struct domain *d = domain_find(r->u.evtchn.domid);
    if (!d)
        return reply_error(c, r->type, r->seq, ESRCH, "no such domain");
    if (find_binding(c, r->u.evtchn.domid, r->u.evtchn.port))
        return reply_error(c, r->type, r->seq, EBUSY, "port already bound here");
    struct binding *b = new_binding(c);
    if (!b)
        return reply_error(c, r->type, r->seq, ENOSPC, "too many bindings");
    int fds[2] = { -1, -1 };
    uint64_t cookie;
    int rc = evtchn_dom0_bind(d, r->u.evtchn.port, &fds[0], &fds[1], &cookie);
    if (rc)
        return reply_error(c, r->type, r->seq, -rc, "evtchn_dom0_bind");
    *b = (struct binding){ .used = true, .domid = d->domid, .port = r->u.evtchn.port,
                           .cookie = cookie };
    int sent = send_reply(c, r->type, r->seq, 0, NULL, 0, fds, 2);
    close(fds[0]);
    close(fds[1]);
    return sent;
}

static int do_unbind(struct conn *c, const struct dom0_request *r)
{
    struct binding *b = find_binding(c, r->u.evtchn.domid, r->u.evtchn.port);
    if (!b)
        return reply_error(c, r->type, r->seq, ENOENT, "port not bound here");
    struct domain *d = domain_find(b->domid);
    int rc = d ? evtchn_dom0_unbind(d, b->port, b->cookie) : 0;
    *b = (struct binding){ 0 };
    if (rc)
        return reply_error(c, r->type, r->seq, -rc, "evtchn_dom0_unbind");
    return send_reply(c, r->type, r->seq, 0, NULL, 0, NULL, 0);
}

/*
 * Post-copy: a service's own mapping of a frame still at the source would see zeros
 * (and keep the page from ever being installed), so the frame must arrive first
 * (docs/migration.md "Post-copy", uffd_pages_wait_present). 0 or -errno.
 */
#define POSTCOPY_MAP_WAIT_MS 5000u
static int wait_frame_present(struct domain *d, uint64_t mfn)
{
    struct uffd_pages *u = d->postcopy;
    return u ? uffd_pages_wait_present(u, mfn, POSTCOPY_MAP_WAIT_MS) : 0;
}

/*
 * Where a service maps a frame from: an fd and the frame's page in it. This host's
 * machine memory (page: the mfn), or for a frame a same-host migration left in another
 * xkvmd's memfd (a bank) that memfd; read-only through an open file of its own when
 * asked (own: opened for this reply, closed after it).
 */
struct map_source {
    int fd, own;
    uint64_t page;
};

/*
 * Whether frame mfn can be handed to a service now, and from where; decided before a
 * mapping is recorded, so that none outlives a refusal. 0, or an errno with *why.
 */
static int map_source_of(struct domain *d, uint64_t mfn, bool readonly,
                         struct map_source *src, const char **why)
{
    *src = (struct map_source){ .fd = -1, .own = -1, .page = mfn };
    if (wait_frame_present(d, mfn)) {
        *why = "post-copy: the page has not arrived";
        return EAGAIN;
    }
    if (!mm_frame_in_bank(host_mm(), mfn)) {
        src->fd = mem_fd(readonly);
        *why = "no read-only machine-memory fd";
        return src->fd >= 0 ? 0 : EIO;
    }
    uint64_t off;
    src->fd = mm_frame_fd(host_mm(), mfn, &off);
    src->page = off >> XKVM_PAGE_SHIFT;
    if (src->fd >= 0 && readonly) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", src->fd);
        src->fd = src->own = open(path, O_RDONLY | O_CLOEXEC);
    }
    *why = "the frame's memory cannot be opened";
    return src->fd >= 0 ? 0 : EIO;
}

static int reply_mapped(struct conn *c, const struct dom0_request *r,
                        const struct map_source *src, uint32_t handle)
{
    struct xkvm_dom0_map_reply rep = { .mfn = src->page, .handle = handle };
    int fd = src->fd;
    int rc = send_reply(c, r->type, r->seq, 0, &rep, sizeof(rep), &fd, 1);
    if (src->own >= 0)
        close(src->own);
    return rc;
}

static int do_map_grant(struct conn *c, const struct dom0_request *r)
{
    const struct xkvm_dom0_map_grant *q = &r->u.map_grant;
    struct domain *d = domain_find(q->domid);
    if (!d || !d->gt)
        return reply_error(c, r->type, r->seq, ESRCH, "no such domain");
    bool ro = q->flags & XKVM_DOM0_MAP_READONLY;
    uint32_t handle;
    struct mapping *m = new_mapping(c, &handle);
    if (!m)
        return reply_error(c, r->type, r->seq, ENOSPC, "too many mappings");
    uint64_t mfn;
    uint32_t gt_handle;
    int rc = gnttab_dom0_map(d, q->ref, ro, &mfn, &gt_handle);
    if (rc)
        return reply_error(c, r->type, r->seq, -rc,
                           rc == -EINVAL ? "no such grant reference" :
                           rc == -EACCES ? "not granted to dom0 (or read-only)" :
                           rc == -EFAULT ? "granted frame is not the domain's memory" :
                                           "gnttab_dom0_map");
    struct map_source src;
    const char *why;
    if ((rc = map_source_of(d, mfn, ro, &src, &why))) {
        gnttab_dom0_unmap(d, gt_handle);
        return reply_error(c, r->type, r->seq, rc, why);
    }
    *m = (struct mapping){ .used = true, .grant = true, .domid = d->domid,
                           .gt_handle = gt_handle, .mfn = mfn };
    return reply_mapped(c, r, &src, handle);
}

static int do_map_foreign(struct conn *c, const struct dom0_request *r)
{
    const struct xkvm_dom0_map_foreign *q = &r->u.map_foreign;
    struct domain *d = domain_find(q->domid);
    if (!d)
        return reply_error(c, r->type, r->seq, ESRCH, "no such domain");
    bool ro = q->flags & XKVM_DOM0_MAP_READONLY;
    uint32_t handle;
    struct mapping *m = new_mapping(c, &handle);
    if (!m)
        return reply_error(c, r->type, r->seq, ENOSPC, "too many mappings");
    uint64_t mfn = p2m_lookup(&d->p2m, q->gfn);
    unsigned types = (1u << FRAME_RAM) | (1u << FRAME_SPECIAL) | (1u << FRAME_SHARED_INFO) |
                     (1u << FRAME_GRANT);
    if (mfn == INVALID_MFN || mm_frame_get(host_mm(), mfn, d->domid, types))
        return reply_error(c, r->type, r->seq, EFAULT, "gfn not populated");
    struct map_source src;
    const char *why;
    int rc = map_source_of(d, mfn, ro, &src, &why);
    if (rc) {
        mm_frame_put(host_mm(), mfn);
        return reply_error(c, r->type, r->seq, rc, why);
    }
    *m = (struct mapping){ .used = true, .domid = d->domid, .mfn = mfn, .gfn = q->gfn,
                           .writable = !ro };
    if (!ro)
        p2m_mark_dirty(&d->p2m, q->gfn, 1);
    return reply_mapped(c, r, &src, handle);
}

static int do_unmap(struct conn *c, const struct dom0_request *r, bool grant)
{
    uint32_t h = r->u.unmap.handle;
    if (h >= c->nr_maps || !c->maps[h].used || c->maps[h].grant != grant ||
        c->maps[h].domid != r->u.unmap.domid)
        return reply_error(c, r->type, r->seq, ENOENT, "no such mapping here");
    release_mapping(&c->maps[h]);
    return send_reply(c, r->type, r->seq, 0, NULL, 0, NULL, 0);
}

static int do_domain_info(struct conn *c, const struct dom0_request *r)
{
    struct domain *d = NULL;
    unsigned id = r->u.query.domid;
    /* A domain being restored appears to the services once it is whole. */
    if (r->u.query.flags & XKVM_DOM0_INFO_NEXT)
        for (; id < XKVM_DOMID_LIMIT && (!(d = domain_find(id)) || d->restoring); id++)
            ;
    else if ((d = domain_find(id)) && d->restoring)
        d = NULL;
    if (!d)
        return reply_error(c, r->type, r->seq, ESRCH, "no such domain");
    struct xkvm_dom0_domain_info info = {
        .domid = d->domid,
        .state = d->shutdown_code >= 0 ? XKVM_DOM0_SHUTDOWN :
                 d->toolstack_pauses ? XKVM_DOM0_PAUSED : XKVM_DOM0_RUNNING,
        .shutdown_reason = d->shutdown_code,
        .vcpus = d->nr_vcpus,
        .memory_kb = d->cfg.memory_mb * 1024,
        .store_gfn = __atomic_load_n(&d->hvm_params[HVM_PARAM_STORE_PFN], __ATOMIC_RELAXED),
        .console_gfn = __atomic_load_n(&d->hvm_params[HVM_PARAM_CONSOLE_PFN], __ATOMIC_RELAXED),
        .store_evtchn = (uint32_t)__atomic_load_n(&d->hvm_params[HVM_PARAM_STORE_EVTCHN],
                                                  __ATOMIC_RELAXED),
        .console_evtchn = (uint32_t)__atomic_load_n(&d->hvm_params[HVM_PARAM_CONSOLE_EVTCHN],
                                                    __ATOMIC_RELAXED),
    };
    snprintf(info.name, sizeof(info.name), "%s", d->cfg.name);
    return send_reply(c, r->type, r->seq, 0, &info, sizeof(info), NULL, 0);
}

static int do_watch_domains(struct conn *c, const struct dom0_request *r)
{
    if (c->domains_fd >= 0)
        return reply_error(c, r->type, r->seq, EEXIST, "already watching");
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return reply_error(c, r->type, r->seq, errno, "eventfd");
    c->domains_fd = fd;
    return send_reply(c, r->type, r->seq, 0, NULL, 0, &fd, 1);
}

void dom0_domains_changed(void)
{
    uint64_t one = 1;
    for (int i = 0; i < conns_in_use(); i++)
        if (conns[i].fd >= 0 && conns[i].domains_fd >= 0) {
            ssize_t w = write(conns[i].domains_fd, &one, sizeof(one));
            (void)w;
        }
}

static int handle_request(struct conn *c, const struct dom0_request *r)
{
    if (r->type == XKVM_DOM0_HELLO) {
        memcpy(c->name, r->u.hello.name, sizeof(c->name));
        c->hello = true;
        log_info("dom0: %s (pid %d) connected", c->name, c->pid);
        struct xkvm_dom0_hello_reply rep = { .version = XKVM_DOM0_VERSION,
                                             .page_size = XKVM_PAGE_SIZE };
        return send_reply(c, r->type, r->seq, 0, &rep, sizeof(rep), NULL, 0);
    }
    if (!c->hello)
        return reply_error(c, r->type, r->seq, EPROTO, "HELLO first");
    if (r->type != XKVM_DOM0_GET_DOMAIN_INFO && r->type != XKVM_DOM0_WATCH_DOMAINS) {
        /* A service touching a domain's memory or channels (migration waits for quiet). */
        struct domain *ad = domain_find(r->type == XKVM_DOM0_MAP_GRANT ? r->u.map_grant.domid :
                                        r->type == XKVM_DOM0_MAP_FOREIGN ? r->u.map_foreign.domid :
                                        r->type == XKVM_DOM0_UNMAP_GRANT ||
                                        r->type == XKVM_DOM0_UNMAP_FOREIGN ? r->u.unmap.domid :
                                        r->u.evtchn.domid);
        if (ad)
            ad->dom0_activity_ns = host_monotonic_ns();
    }
    switch (r->type) {
    case XKVM_DOM0_BIND_EVTCHN:     return do_bind(c, r);
    case XKVM_DOM0_UNBIND_EVTCHN:   return do_unbind(c, r);
    case XKVM_DOM0_MAP_GRANT:       return do_map_grant(c, r);
    case XKVM_DOM0_UNMAP_GRANT:     return do_unmap(c, r, true);
    case XKVM_DOM0_MAP_FOREIGN:     return do_map_foreign(c, r);
    case XKVM_DOM0_UNMAP_FOREIGN:   return do_unmap(c, r, false);
    case XKVM_DOM0_GET_DOMAIN_INFO: return do_domain_info(c, r);
    case XKVM_DOM0_WATCH_DOMAINS:   return do_watch_domains(c, r);
    }
    return reply_error(c, r->type, r->seq, EOPNOTSUPP, "unknown request");
}

static void conn_readable(struct conn *c)
{
    uint8_t buf[XKVM_DOM0_MAX_MSG];
    unsigned nfds;
    int flags;
    /* No request carries descriptors: any that come are closed. */
    ssize_t n = fdpass_recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT, NULL, 0, &nfds, &flags);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* 0 is also an empty packet, which no request is: either way the peer is done. */
    if (n <= 0) {
        conn_close(c);
        return;
    }
    struct dom0_request req;
    char why[160];
    int e = (flags & MSG_TRUNC)
        ? (snprintf(why, sizeof(why), "message longer than %u bytes", XKVM_DOM0_MAX_MSG), EMSGSIZE)
        : dom0_msg_parse(buf, (size_t)n, &req, why, sizeof(why));
    if (!e && c->refused) {
        e = EACCES;
        snprintf(why, sizeof(why), "peer is not root");
    }
    if (e) {
        uint32_t type = 0;
        if ((size_t)n >= sizeof(type))
            memcpy(&type, buf, sizeof(type));
        reply_error(c, type & ~XKVM_DOM0_REPLY, req.seq, e, why);
    } else {
        handle_request(c, &req);
    }
    if (c->closing)
        conn_close(c);
}

static void accept_one(void)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    struct conn *c = NULL;
    for (int i = 0; i < MAX_CONNS && !c; i++)
        if (conns[i].fd < 0)
            c = &conns[i];
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        close(fd);
        return;
    }
    if (!c) {
        struct conn tmp = { .fd = fd, .pid = cred.pid };
        reply_error(&tmp, XKVM_DOM0_HELLO, 0, EMFILE, "too many dom0 connections");
        close(fd);
        return;
    }
    /*
     * dom0 is root; an xkvmd run by another user serves that user. Others stay
     * connected only to be told so: closing at once would lose the reason.
     */
    if (c - conns >= conns_end)
        __atomic_store_n(&conns_end, (int)(c - conns) + 1, __ATOMIC_RELEASE);
    *c = (struct conn){ .fd = fd, .pid = cred.pid, .domains_fd = -1,
                        .refused = cred.uid != 0 && cred.uid != geteuid() };
    if (c->refused)
        log_warn("dom0: refusing pid %d: uid %u is not root", cred.pid, cred.uid);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

bool dom0_handle_event(int fd, uint32_t events)
{
    if (fd < 0)
        return false;
    if (fd == listen_fd) {
        accept_one();
        return true;
    }
    for (int i = 0; i < conns_in_use(); i++)
        if (conns[i].fd == fd) {
            conn_readable(&conns[i]);
            return true;
        }
    return false;
}

void dom0_stop(void)
{
    for (int i = 0; i < conns_in_use(); i++)
        if (conns[i].fd >= 0)
            conn_close(&conns[i]);
    if (listen_fd >= 0) {
        close(listen_fd);
        unlink(sock_path);
        listen_fd = -1;
    }
}
