/*
 * Restore direction: read a stream from a buffer or an fd. Both sources go
 * through the same checks (stream_common.c, stream_x86_hvm.c); the fd reader
 * checks each record header before it allocates or reads the body.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "stream_internal.h"

static int rfail(struct xkvm_stream_reader *r)
{
    r->failed = true;
    return -1;
}

static int reader_init(struct xkvm_stream_reader *r, const struct xkvm_stream_limits *limits)
{
    r->st = malloc(sizeof(*r->st));
    if (!r->st) {
        stream_fail(&r->err, 0, false, 0, XKVM_STREAM_ERR_NOMEM, "out of memory");
        return rfail(r);
    }
    stream_state_init(r->st, limits, &r->info);
    r->limits = r->st->limits;
    return 0;
}

int xkvm_stream_reader_init_buffer(struct xkvm_stream_reader *r, const void *buf,
                                   size_t size, const struct xkvm_stream_limits *limits)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->buf = buf;
    r->size = size;
    if ((uintptr_t)buf % XKVM_STREAM_ALIGN) {
        stream_fail(&r->err, 0, false, 0, XKVM_STREAM_ERR_MISALIGNED,
                    "buffer is not 8-byte aligned");
        return rfail(r);
    }
    return reader_init(r, limits);
}

int xkvm_stream_reader_init_fd(struct xkvm_stream_reader *r, int fd,
                               const struct xkvm_stream_limits *limits)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    return reader_init(r, limits);
}

int xkvm_stream_reader_init_io(struct xkvm_stream_reader *r, const struct xkvm_stream_io *io,
                               const struct xkvm_stream_limits *limits)
{
    memset(r, 0, sizeof(*r));
    r->fd = 0;          /* not a buffer reader; the bytes come through io */
    r->io = *io;
    return reader_init(r, limits);
}

void xkvm_stream_reader_release(struct xkvm_stream_reader *r)
{
    free(r->rbuf);
    free(r->st);
    r->rbuf = NULL;
    r->st = NULL;
    r->rcap = 0;
}

void xkvm_stream_reader_set_record_max(struct xkvm_stream_reader *r, uint32_t record_max)
{
    if (record_max == 0 || record_max > XKVM_STREAM_RECORD_MAX)
        record_max = XKVM_STREAM_RECORD_MAX;
    r->limits.record_max = record_max;
    if (r->st)
        r->st->limits.record_max = record_max;
}

/*
 * Make `len` bytes at the current position available at *out and advance.
 * Buffer: a pointer into it. Fd: read into r->rbuf (at `at`, growing it).
 */
static int fetch(struct xkvm_stream_reader *r, size_t at, size_t len, const uint8_t **out,
                 const char *what)
{
    if (r->fd < 0) {
        size_t left = r->size > r->pos ? (size_t)(r->size - r->pos) : 0;
        if (left < len)
            return stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_TRUNCATED,
                               "stream ends inside %s (%zu of %zu bytes present)", what,
                               left, len);
        *out = r->buf + r->pos;
        r->pos += len;
        return 0;
    }
    if (at + len > r->rcap) {
        size_t cap = r->rcap ? r->rcap : 4096;
        while (cap < at + len)
            cap *= 2;
        uint8_t *nb = realloc(r->rbuf, cap);
        if (!nb)
            return stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_NOMEM, "out of memory");
        r->rbuf = nb;
        r->rcap = cap;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = r->io.read ? r->io.read(r->io.ctx, r->rbuf + at + got, len - got)
                               : read(r->fd, r->rbuf + at + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->err.sys_errno = errno;
            return stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_IO,
                               "read failed inside %s: %s", what, strerror(errno));
        }
        if (n == 0)
            return stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_TRUNCATED,
                               "stream ends inside %s (%zu of %zu bytes present)", what,
                               got, len);
        got += (size_t)n;
    }
    *out = r->rbuf + at;
    r->pos += len;
    return 0;
}

int xkvm_stream_read_headers(struct xkvm_stream_reader *r)
{
    const uint8_t *p;

    if (r->failed)
        return -1;
    if (r->headers_done)
        return 0;
    if (fetch(r, 0, XKVM_STREAM_IHDR_SIZE, &p, "the image header") < 0 ||
        stream_check_ihdr(r->st, p, &r->err) < 0)
        return rfail(r);
    if (fetch(r, 0, XKVM_STREAM_DHDR_SIZE, &p, "the domain header") < 0 ||
        stream_check_dhdr(r->st, p, XKVM_STREAM_IHDR_SIZE, &r->err) < 0)
        return rfail(r);
    r->headers_done = true;
    r->info.bytes = r->pos;
    return 0;
}

int xkvm_stream_next(struct xkvm_stream_reader *r, struct xkvm_stream_record *rec)
{
    const struct stream_rec_desc *desc;
    const uint8_t *p;

    if (r->failed)
        return -1;
    if (r->ended)
        return 0;
    if (!r->headers_done && xkvm_stream_read_headers(r) < 0)
        return -1;

    memset(rec, 0, sizeof(*rec));
    rec->offset = r->pos;
    if (fetch(r, 0, XKVM_STREAM_RHDR_SIZE, &p, "a record header") < 0)
        return rfail(r);
    rec->type = ld_le32(p);
    rec->length = ld_le32(p + 4);
    if (stream_check_rhdr(r->st, rec->offset, rec->type, rec->length, &desc, &r->err) < 0)
        return rfail(r);
    rec->skipped = desc == NULL;

    size_t padded = (size_t)stream_padded(rec->length);   /* <= record_max + 7 */
    if (fetch(r, 0, padded, &p, "a record body") < 0) {
        char why[sizeof(r->err.reason)];
        memcpy(why, r->err.reason, sizeof(why));
        stream_fail(&r->err, rec->offset, true, rec->type, r->err.code, "%s", why);
        return rfail(r);
    }
    rec->body = p;
    if (stream_check_record(r->st, desc, rec, p + rec->length, &r->err) < 0)
        return rfail(r);
    /* A post-copy stream goes on after END, up to POSTCOPY_DONE. */
    if ((rec->type == XKVM_STREAM_REC_END && !r->st->postcopy) ||
        rec->type == XKVM_STREAM_REC_POSTCOPY_DONE)
        r->ended = true;
    return 1;
}

int xkvm_stream_verify(const void *buf, size_t size, const struct xkvm_stream_limits *limits,
                       struct xkvm_stream_info *info, struct xkvm_stream_error *err)
{
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    int rc = xkvm_stream_reader_init_buffer(&r, buf, size, limits);

    if (rc == 0)
        while ((rc = xkvm_stream_next(&r, &rec)) > 0)
            ;
    if (rc < 0 && err)
        *err = r.err;
    if (info)
        *info = r.info;
    xkvm_stream_reader_release(&r);
    return rc;
}
