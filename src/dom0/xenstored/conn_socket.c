/* dom0 clients on the UNIX socket RUNDIR/xenstored/socket (Xen's /run/xenstored/socket). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "xsd.h"

struct sock_client {
    struct xsd_ev ev;
    struct xs_conn *conn;
    uint8_t in[XS_HDR_SIZE + XENSTORE_PAYLOAD_MAX];
    size_t inlen;
    uint8_t *out;
    size_t outlen, outoff, outcap;
    bool closing;
};

static struct xsd_ev listen_ev;
static char sock_path[108];
static ino_t sock_ino;

bool xsd_socket_still_ours(void)
{
    struct stat st;
    return stat(sock_path, &st) == 0 && st.st_ino == sock_ino;
}
static struct sock_client *current;   /* the client whose requests are being handled */

static void client_close(struct sock_client *s)
{
    if (s->closing)
        return;
    s->closing = true;
    xsd_ev_del(&s->ev);
    close(s->ev.fd);
    xs_conn_free(s->conn);
    free(s->out);
    xsd_defer_free(s);
}

static void flush(struct sock_client *s)
{
    while (s->outoff < s->outlen) {
        ssize_t n = send(s->ev.fd, s->out + s->outoff, s->outlen - s->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            client_close(s);
            return;
        }
        s->outoff += (size_t)n;
    }
    if (s->outoff == s->outlen) {
        s->outoff = s->outlen = 0;
        xsd_ev_mod(&s->ev, EPOLLIN);
    } else {
        xsd_ev_mod(&s->ev, EPOLLIN | EPOLLOUT);
    }
}

static void sock_send(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
    struct sock_client *s = c->io;
    if (s->closing)
        return;
    size_t need = s->outlen + XS_HDR_SIZE + h->len;
    if (need > s->outcap) {
        if (s->outoff) {
            memmove(s->out, s->out + s->outoff, s->outlen - s->outoff);
            s->outlen -= s->outoff;
            s->outoff = 0;
            need = s->outlen + XS_HDR_SIZE + h->len;
        }
        if (need > s->outcap) {
            size_t cap = s->outcap ? s->outcap : 8192;
            while (cap < need)
                cap *= 2;
            uint8_t *o = realloc(s->out, cap);
            if (!o)
                abort();
            s->out = o;
            s->outcap = cap;
        }
    }
    bool was_empty = s->outlen == s->outoff;
    memcpy(s->out + s->outlen, h, XS_HDR_SIZE);
    if (h->len)
        memcpy(s->out + s->outlen + XS_HDR_SIZE, body, h->len);
    s->outlen += XS_HDR_SIZE + h->len;
    /* A watch event for another client: have epoll tell us when to write it. */
    if (s != current && was_empty)
        xsd_ev_mod(&s->ev, EPOLLIN | EPOLLOUT);
}

static void client_ev(struct xsd_ev *e, uint32_t events)
{
    struct sock_client *s = e->arg;
    if (s->closing)
        return;
    if (events & EPOLLIN) {
        ssize_t n = recv(e->fd, s->in + s->inlen, sizeof(s->in) - s->inlen, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            client_close(s);
            return;
        }
        if (n > 0)
            s->inlen += (size_t)n;
        size_t off = 0;
        for (;;) {
            struct xsd_sockmsg h;
            const uint8_t *body;
            size_t used;
            int r = xs_wire_parse(s->in + off, s->inlen - off, &h, &body, &used);
            if (r < 0) {
                /* Over XENSTORE_PAYLOAD_MAX: Xen drops such a client. */
                xsd_log("socket client sent a %u byte payload: dropped", h.len);
                client_close(s);
                return;
            }
            if (r == 0)
                break;
            current = s;
            xs_handle(s->conn, &h, body);
            current = NULL;
            off += used;
            if (s->closing)
                return;
        }
        memmove(s->in, s->in + off, s->inlen - off);
        s->inlen -= off;
    } else if (events & (EPOLLHUP | EPOLLERR)) {
        client_close(s);
        return;
    }
    flush(s);
}

static void listen_fn(struct xsd_ev *e, uint32_t events)
{
    for (;;) {
        int fd = accept4(e->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct sock_client *s = calloc(1, sizeof(*s));
        if (!s)
            abort();
        s->ev.fd = fd;
        s->ev.fn = client_ev;
        s->ev.arg = s;
        s->conn = xs_conn_new(&xsd.xs, 0, false);
        s->conn->send = sock_send;
        s->conn->io = s;
        if (xsd_ev_add(&s->ev, EPOLLIN)) {
            close(fd);
            xs_conn_free(s->conn);
            free(s);
        }
    }
}

int xsd_socket_listen(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    mode_t old = umask(0077);
    int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (r < 0 || listen(fd, 128) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    struct stat st;
    if (stat(path, &st) == 0)
        sock_ino = st.st_ino;
    snprintf(sock_path, sizeof(sock_path), "%s", path);
    listen_ev.fd = fd;
    listen_ev.fn = listen_fn;
    return xsd_ev_add(&listen_ev, EPOLLIN);
}
