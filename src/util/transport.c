/* The plain-descriptor transport and the helpers every transport shares: transport.h. */
#include "util/transport.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

/* The fds are blocking: EAGAIN means SO_RCVTIMEO/SO_SNDTIMEO ran out (as tls.c says). */
static ssize_t timed_out(ssize_t n)
{
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        errno = ETIMEDOUT;
    return n;
}

static ssize_t plain_read(struct transport *t, void *buf, size_t len)
{
    return timed_out(read(t->fd, buf, len));
}

static ssize_t plain_writev(struct transport *t, const struct iovec *iov, int iovcnt)
{
    return timed_out(writev(t->fd, iov, iovcnt));
}

static bool plain_pending(struct transport *t)
{
    return false;
}

void transport_plain(struct transport *t, int fd)
{
    *t = (struct transport){ .fd = fd, .read = plain_read, .writev = plain_writev,
                             .pending = plain_pending, .name = "plain", .raw = true };
}

ssize_t transport_read(struct transport *t, void *buf, size_t len)
{
    ssize_t n;
    do
        n = t->read(t, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

int transport_write_all(struct transport *t, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
        ssize_t w = t->writev(t, &iov, 1);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EPIPE;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int transport_wait_readable(struct transport *t, unsigned timeout_ms)
{
    if (t->pending(t))
        return 1;
    struct pollfd p = { .fd = t->fd, .events = POLLIN };
    int r;
    do
        r = poll(&p, 1, (int)timeout_ms);
    while (r < 0 && errno == EINTR);
    return r;
}

void transport_release(struct transport *t)
{
    void (*release)(struct transport *) = t->release;
    t->release = NULL;
    if (release)
        release(t);     /* a TLS transport frees itself: t is gone after this */
}

static ssize_t pushback_read(struct transport *t, void *buf, size_t len)
{
    struct transport_pushback *p = (struct transport_pushback *)t;
    if (p->byte >= 0 && len) {
        *(uint8_t *)buf = (uint8_t)p->byte;
        p->byte = -1;
        return 1;
    }
    ssize_t n = p->inner->read(p->inner, buf, len);
    if (n < 0)
        memcpy(t->why, p->inner->why, sizeof(t->why));
    return n;
}

static ssize_t pushback_writev(struct transport *t, const struct iovec *iov, int iovcnt)
{
    struct transport_pushback *p = (struct transport_pushback *)t;
    ssize_t n = p->inner->writev(p->inner, iov, iovcnt);
    if (n < 0)
        memcpy(t->why, p->inner->why, sizeof(t->why));
    return n;
}

static bool pushback_pending(struct transport *t)
{
    struct transport_pushback *p = (struct transport_pushback *)t;
    return p->byte >= 0 || p->inner->pending(p->inner);
}

void transport_pushback(struct transport_pushback *p, struct transport *inner, uint8_t byte)
{
    /* raw as inner: the byte put back is read (by the stream's header) before any splice */
    p->t = (struct transport){ .fd = inner->fd, .read = pushback_read,
                               .writev = pushback_writev, .pending = pushback_pending,
                               .name = inner->name, .raw = inner->raw };
    p->inner = inner;
    p->byte = byte;
}

static ssize_t io_read(void *ctx, void *buf, size_t len)
{
    struct transport *t = ctx;
    return t->read(t, buf, len);
}

static ssize_t io_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    struct transport *t = ctx;
    return t->writev(t, iov, iovcnt);
}

struct xkvm_stream_io transport_stream_io(struct transport *t)
{
    return (struct xkvm_stream_io){ .read = io_read, .writev = io_writev, .ctx = t };
}
