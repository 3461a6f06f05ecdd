#include "dom0/libdom0.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/fdpass.h"
#include "xkvm/control.h"

struct dom0_conn {
    int fd;
    uint32_t seq;
    int last_error;
    long page_size;
};

/* A reply: its body (up to cap bytes) and up to two fds. */
struct reply {
    int error;
    void *body;
    size_t cap;
    int fds[2];
    unsigned nfds;
};

static int exchange(struct dom0_conn *c, uint32_t type, const void *body, size_t blen,
                    struct reply *r)
{
    uint8_t out[XKVM_DOM0_MAX_MSG], in[XKVM_DOM0_MAX_MSG];
    struct xkvm_dom0_hdr h = { .type = type, .seq = ++c->seq,
                               .len = (uint32_t)(sizeof(h) + blen) };
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), body, blen);
    /* A refused peer may find the connection closed, with xkvmd's reason queued. */
    bool sent = send(c->fd, out, h.len, MSG_NOSIGNAL) == (ssize_t)h.len;
    int send_errno = errno;
    ssize_t n = fdpass_recv(c->fd, in, sizeof(in), sent ? 0 : MSG_DONTWAIT, r->fds, 2,
                            &r->nfds, NULL);
    if (n < 0 || (!sent && n == 0))
        return sent ? -errno : -send_errno;
    struct xkvm_dom0_hdr rh;
    if (n < (ssize_t)sizeof(rh))
        goto bad;
    memcpy(&rh, in, sizeof(rh));
    if (!sent && rh.error > 0 && rh.len == (uint32_t)n)
        return -rh.error;
    if (!sent)
        goto bad;
    if (rh.len != (uint32_t)n || rh.seq != h.seq || rh.type != (type | XKVM_DOM0_REPLY))
        goto bad;
    r->error = rh.error;
    c->last_error = rh.error;
    if (rh.error) {
        if (rh.error < 0 || n != (ssize_t)sizeof(rh))
            goto bad;
        for (unsigned i = 0; i < r->nfds; i++)
            close(r->fds[i]);
        r->nfds = 0;
        return -rh.error;
    }
    if ((size_t)n - sizeof(rh) != r->cap)
        goto bad;
    if (r->cap)
        memcpy(r->body, in + sizeof(rh), r->cap);
    return 0;
bad:
    for (unsigned i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    r->nfds = 0;
    return -EPROTO;
}

int dom0_fileno(const struct dom0_conn *c)
{
    return c ? c->fd : -1;
}

struct dom0_conn *dom0_connect(const char *rundir, const char *service)
{
    if (!rundir || !*rundir)
        rundir = getenv(XKVM_RUNDIR_ENV);
    if (!rundir || !*rundir)
        rundir = XKVM_RUNDIR_DEFAULT;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rundir,
                         XKVM_DOM0_SOCKET) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct xkvm_dom0_hello hello = { .version = XKVM_DOM0_VERSION };
    size_t n = strlen(service);
    if (n == 0 || n >= sizeof(hello.name)) {
        errno = EINVAL;
        return NULL;
    }
    memcpy(hello.name, service, n);
    struct dom0_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    struct xkvm_dom0_hello_reply rep;
    struct reply r = { .body = &rep, .cap = sizeof(rep) };
    int rc = exchange(c, XKVM_DOM0_HELLO, &hello, sizeof(hello), &r);
    if (rc) {
        errno = -rc;
        goto fail;
    }
    c->page_size = rep.page_size;
    if (rep.version != XKVM_DOM0_VERSION || c->page_size != sysconf(_SC_PAGESIZE)) {
        errno = EPROTO;
        goto fail;
    }
    return c;
fail:;
    int e = errno;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    errno = e;
    return NULL;
}

void dom0_close(struct dom0_conn *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

int dom0_last_error(const struct dom0_conn *c)
{
    return c->last_error;
}

int dom0_bind_evtchn(struct dom0_conn *c, uint32_t domid, uint32_t port,
                     int *to_guest, int *from_guest)
{
    struct xkvm_dom0_evtchn q = { .domid = domid, .port = port };
    struct reply r = { 0 };
    int rc = exchange(c, XKVM_DOM0_BIND_EVTCHN, &q, sizeof(q), &r);
    if (rc)
        return rc;
    if (r.nfds != 2) {
        for (unsigned i = 0; i < r.nfds; i++)
            close(r.fds[i]);
        return -EPROTO;
    }
    *to_guest = r.fds[0];
    *from_guest = r.fds[1];
    return 0;
}

int dom0_unbind_evtchn(struct dom0_conn *c, uint32_t domid, uint32_t port)
{
    struct xkvm_dom0_evtchn q = { .domid = domid, .port = port };
    struct reply r = { 0 };
    return exchange(c, XKVM_DOM0_UNBIND_EVTCHN, &q, sizeof(q), &r);
}

/* mmap the frame a MAP reply names, and close the fd it came with. */
static void *map_reply(struct dom0_conn *c, struct reply *r,
                       const struct xkvm_dom0_map_reply *rep, bool readonly)
{
    if (r->nfds != 1) {
        for (unsigned i = 0; i < r->nfds; i++)
            close(r->fds[i]);
        errno = EPROTO;
        return NULL;
    }
    void *p = rep->mfn > (uint64_t)INT64_MAX / (uint64_t)c->page_size ? MAP_FAILED :
        mmap(NULL, (size_t)c->page_size, PROT_READ | (readonly ? 0 : PROT_WRITE),
             MAP_SHARED, r->fds[0], (off_t)(rep->mfn * (uint64_t)c->page_size));
    int e = errno;
    close(r->fds[0]);
    if (p == MAP_FAILED) {
        errno = e;
        return NULL;
    }
    return p;
}

static int unmap(struct dom0_conn *c, uint32_t type, uint32_t domid, uint32_t handle,
                 void *page)
{
    if (page)
        munmap(page, (size_t)c->page_size);
    struct xkvm_dom0_unmap q = { .domid = domid, .handle = handle };
    struct reply r = { 0 };
    return exchange(c, type, &q, sizeof(q), &r);
}

/* Send a MAP_GRANT or MAP_FOREIGN request and map the frame it names. */
static void *map_request(struct dom0_conn *c, uint32_t type, const void *q, size_t qlen,
                         uint32_t domid, bool readonly, uint32_t *handle)
{
    struct xkvm_dom0_map_reply rep;
    struct reply r = { .body = &rep, .cap = sizeof(rep) };
    int rc = exchange(c, type, q, qlen, &r);
    if (rc) {
        errno = -rc;
        return NULL;
    }
    void *p = map_reply(c, &r, &rep, readonly);
    if (!p) {
        int e = errno;
        unmap(c, type == XKVM_DOM0_MAP_GRANT ? XKVM_DOM0_UNMAP_GRANT : XKVM_DOM0_UNMAP_FOREIGN,
              domid, rep.handle, NULL);
        errno = e;
        return NULL;
    }
    *handle = rep.handle;
    return p;
}

void *dom0_map_grant(struct dom0_conn *c, uint32_t domid, uint32_t ref, bool readonly,
                     uint32_t *handle)
{
    struct xkvm_dom0_map_grant q = { .domid = domid, .ref = ref,
                                     .flags = readonly ? XKVM_DOM0_MAP_READONLY : 0 };
    return map_request(c, XKVM_DOM0_MAP_GRANT, &q, sizeof(q), domid, readonly, handle);
}

int dom0_unmap_grant(struct dom0_conn *c, uint32_t domid, uint32_t handle, void *page)
{
    return unmap(c, XKVM_DOM0_UNMAP_GRANT, domid, handle, page);
}

void *dom0_map_foreign(struct dom0_conn *c, uint32_t domid, uint64_t gfn, bool readonly,
                       uint32_t *handle)
{
    struct xkvm_dom0_map_foreign q = { .domid = domid, .gfn = gfn,
                                       .flags = readonly ? XKVM_DOM0_MAP_READONLY : 0 };
    return map_request(c, XKVM_DOM0_MAP_FOREIGN, &q, sizeof(q), domid, readonly, handle);
}

int dom0_unmap_foreign(struct dom0_conn *c, uint32_t domid, uint32_t handle, void *page)
{
    return unmap(c, XKVM_DOM0_UNMAP_FOREIGN, domid, handle, page);
}

int dom0_domain_info(struct dom0_conn *c, uint32_t domid, bool next,
                     struct xkvm_dom0_domain_info *info)
{
    struct xkvm_dom0_domain_query q = { .domid = domid,
                                        .flags = next ? XKVM_DOM0_INFO_NEXT : 0 };
    struct reply r = { .body = info, .cap = sizeof(*info) };
    int rc = exchange(c, XKVM_DOM0_GET_DOMAIN_INFO, &q, sizeof(q), &r);
    if (!rc)
        info->name[sizeof(info->name) - 1] = '\0';
    return rc;
}

int dom0_send_raw(struct dom0_conn *c, const void *buf, size_t len)
{
    if (send(c->fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
        return -errno;
    uint8_t in[XKVM_DOM0_MAX_MSG];
    ssize_t n = recv(c->fd, in, sizeof(in), 0);
    struct xkvm_dom0_hdr rh;
    if (n < 0)
        return -errno;
    if (n < (ssize_t)sizeof(rh))
        return -EPROTO;
    memcpy(&rh, in, sizeof(rh));
    return rh.error;
}
