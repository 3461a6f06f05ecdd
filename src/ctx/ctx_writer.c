/*
 * Building an image. Records go to a sink: a growable memory buffer, a file
 * descriptor, or the caller's function. Every record is checked as the reader
 * would check it before a byte of it is emitted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctx_internal.h"

#define HDR_SIZE sizeof(struct xkvm_ctx_record_header)

static int buffer_grow(struct xkvm_ctx_writer *w, size_t need)
{
    if (need <= w->cap - w->len)
        return 0;
    if (need > SIZE_MAX / 2 - w->len)
        return -ENOMEM;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + need)
        cap *= 2;
    uint8_t *buf = realloc(w->buf, cap);
    if (!buf)
        return -ENOMEM;
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static int buffer_sink(void *opaque, const struct iovec *iov, int iovcnt)
{
    struct xkvm_ctx_writer *w = opaque;
    size_t total = 0;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    int rc = buffer_grow(w, total);
    if (rc)
        return rc;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(w->buf + w->len, iov[i].iov_base, iov[i].iov_len);
        w->len += iov[i].iov_len;
    }
    return 0;
}

static int fd_sink(void *opaque, const struct iovec *iov_in, int iovcnt)
{
    struct xkvm_ctx_writer *w = opaque;
    struct iovec iov[4];

    if (iovcnt > 4)
        return -EINVAL;
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
    struct iovec *cur = iov;
    while (iovcnt > 0) {
        ssize_t n = writev(w->fd, cur, iovcnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        /* Partial write: skip what went out and go again. */
        size_t done = (size_t)n;
        while (iovcnt > 0 && done >= cur->iov_len) {
            done -= cur->iov_len;
            cur++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            cur->iov_base = (uint8_t *)cur->iov_base + done;
            cur->iov_len -= done;
        }
    }
    return 0;
}

static void writer_init(struct xkvm_ctx_writer *w, xkvm_ctx_sink_fn sink, void *opaque)
{
    memset(w, 0, sizeof(*w));
    w->sink = sink;
    w->sink_opaque = opaque;
    w->fd = -1;
    w->registry = &xkvm_ctx_builtin_registry;
}

void xkvm_ctx_writer_init_buffer(struct xkvm_ctx_writer *w)
{
    writer_init(w, buffer_sink, w);
}

void xkvm_ctx_writer_init_fd(struct xkvm_ctx_writer *w, int fd)
{
    writer_init(w, fd_sink, w);
    w->fd = fd;
}

void xkvm_ctx_writer_init_sink(struct xkvm_ctx_writer *w, xkvm_ctx_sink_fn sink, void *opaque)
{
    writer_init(w, sink, opaque);
}

static int writer_fail(struct xkvm_ctx_writer *w, enum xkvm_ctx_errcode code, uint32_t type,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int writer_fail(struct xkvm_ctx_writer *w, enum xkvm_ctx_errcode code, uint32_t type,
                       const char *fmt, ...)
{
    const struct xkvm_ctx_type_desc *d = xkvm_ctx_lookup(w->registry, type);
    va_list ap;
    va_start(ap, fmt);
    ctx_set_verror(&w->err, code, w->offset, true, type, d ? d->name : NULL, fmt, ap);
    va_end(ap);
    w->failed = true;
    return -1;
}

int xkvm_ctx_writer_reserve(struct xkvm_ctx_writer *w, size_t bytes)
{
    if (w->sink != buffer_sink)
        return 0;
    if (buffer_grow(w, bytes))
        return writer_fail(w, XKVM_CTX_ERR_NOMEM, XKVM_CTX_END,
                           "cannot reserve %zu bytes", bytes);
    return 0;
}

int xkvm_ctx_write(struct xkvm_ctx_writer *w, uint32_t type, uint32_t instance,
                   const void *body, uint64_t length)
{
    static const alignas(8) uint8_t zeros[XKVM_CTX_ALIGN];

    if (w->failed)
        return -1;
    if (w->offset == 0 && ctx_registry_check(w->registry, &w->err)) {
        w->failed = true;
        return -1;
    }
    const struct xkvm_ctx_type_desc *d = xkvm_ctx_lookup(w->registry, type);
    if (!d)
        return writer_fail(w, XKVM_CTX_ERR_UNKNOWN_TYPE, type, "unknown record type");
    if (length && !body)
        return writer_fail(w, XKVM_CTX_ERR_BAD_VALUE, type, "no body for length %" PRIu64,
                           length);
    if ((uintptr_t)body % XKVM_CTX_ALIGN)
        return writer_fail(w, XKVM_CTX_ERR_MISALIGNED, type,
                           "body is not %u-byte aligned", XKVM_CTX_ALIGN);
    if (length > SIZE_MAX - 2 * XKVM_CTX_ALIGN - HDR_SIZE)
        return writer_fail(w, XKVM_CTX_ERR_LENGTH_OVERFLOW, type,
                           "length 0x%" PRIx64 " too large", length);

    struct xkvm_ctx_record rec = {
        .offset = w->offset, .type = type, .instance = instance,
        .length = length, .body = length ? body : zeros, .desc = d,
    };
    struct ctx_order order = {
        .started = &w->started, .ended = &w->ended,
        .once_seen = w->once_seen, .registry = w->registry,
    };
    if (ctx_check_order(&order, &rec, &w->err) || xkvm_ctx_validate_body(&rec, &w->err)) {
        w->failed = true;
        return -1;
    }

    struct xkvm_ctx_record_header hdr = { .type = type, .instance = instance, .length = length };
    uint64_t size = xkvm_ctx_record_size(length);
    size_t pad = (size_t)(size - HDR_SIZE - length);
    struct iovec iov[3] = { { .iov_base = &hdr, .iov_len = HDR_SIZE } };
    int iovcnt = 1;
    if (length)
        iov[iovcnt++] = (struct iovec) { .iov_base = (void *)body, .iov_len = (size_t)length };
    if (pad)
        iov[iovcnt++] = (struct iovec) { .iov_base = (void *)zeros, .iov_len = pad };
    int rc = w->sink(w->sink_opaque, iov, iovcnt);
    if (rc) {
        writer_fail(w, rc == -ENOMEM ? XKVM_CTX_ERR_NOMEM : XKVM_CTX_ERR_IO, type,
                    "writing the record failed: %s", strerror(-rc));
        w->err.sys_errno = -rc;
        return -1;
    }
    w->offset += size;
    w->nr_records++;
    return 0;
}

int xkvm_ctx_write_start(struct xkvm_ctx_writer *w)
{
    struct xkvm_ctx_start start = {
        .major = XKVM_VERSION_MAJOR, .minor = XKVM_VERSION_MINOR,
    };
    return xkvm_ctx_write(w, XKVM_CTX_START, 0, &start, sizeof(start));
}

int xkvm_ctx_write_end(struct xkvm_ctx_writer *w)
{
    return xkvm_ctx_write(w, XKVM_CTX_END, 0, NULL, 0);
}

int xkvm_ctx_write_shared_info(struct xkvm_ctx_writer *w, uint32_t flags,
                               const void *page, uint32_t size)
{
    alignas(8) uint8_t body[sizeof(struct xkvm_ctx_shared_info) + XKVM_CTX_SHARED_INFO_MAX];
    struct xkvm_ctx_shared_info *si = (struct xkvm_ctx_shared_info *)body;

    if (w->failed)
        return -1;
    if (size > XKVM_CTX_SHARED_INFO_MAX)
        return writer_fail(w, XKVM_CTX_ERR_BAD_LENGTH, XKVM_CTX_SHARED_INFO,
                           "buffer_size %" PRIu32 " exceeds %u", size,
                           XKVM_CTX_SHARED_INFO_MAX);
    si->flags = flags;
    si->buffer_size = size;
    if (size)
        memcpy(si->buffer, page, size);
    return xkvm_ctx_write(w, XKVM_CTX_SHARED_INFO, 0, body, sizeof(*si) + size);
}

const uint8_t *xkvm_ctx_writer_data(const struct xkvm_ctx_writer *w, size_t *len)
{
    *len = w->len;
    return w->buf;
}

void *xkvm_ctx_writer_take(struct xkvm_ctx_writer *w, size_t *len)
{
    void *buf = w->buf;
    *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    return buf;
}

void xkvm_ctx_writer_reset(struct xkvm_ctx_writer *w)
{
    w->len = 0;
    w->offset = 0;
    w->nr_records = 0;
    w->started = w->ended = w->failed = false;
    memset(w->once_seen, 0, sizeof(w->once_seen));
    memset(&w->err, 0, sizeof(w->err));
}

void xkvm_ctx_writer_release(struct xkvm_ctx_writer *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}
