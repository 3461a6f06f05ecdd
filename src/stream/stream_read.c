/*
 * Restore direction: read a stream from a buffer or an fd. Both sources go
 * through the same checks (stream_common.c, stream_x86_hvm.c); the fd reader
 * checks each record header before it allocates or reads the body.
 */
#include <errno.h>
#include <lz4.h>
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
    free(r->zbuf);
    free(r->st);
    r->rbuf = NULL;
    r->zbuf = NULL;
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

void xkvm_stream_reader_postcopy_tail(struct xkvm_stream_reader *r)
{
    r->st->ended = r->st->postcopy = r->st->static_done = true;
}

void xkvm_stream_reader_defer_pages(struct xkvm_stream_reader *r, bool on)
{
    r->defer_pages = on;
}

/*
 * A PAGE_DATA body up to its page contents: count and reserved word, then the pfns if
 * the count is one the check will accept (else the check refuses it on the first 8
 * bytes). The record is validated and committed; the page bytes stay in the stream.
 */
static int next_pages_deferred(struct xkvm_stream_reader *r, struct xkvm_stream_record *rec,
                               const struct stream_rec_desc *desc)
{
    const uint8_t *p;
    if (fetch(r, 0, 8, &p, "a PAGE_DATA header") < 0)
        return -1;
    uint32_t count = ld_le32(p);
    size_t head = 8;
    if (count && count <= XKVM_STREAM_BATCH_MAX && 8 + 8ull * count <= rec->length) {
        if (fetch(r, 8, 8ull * count, &p, "a PAGE_DATA pfn array") < 0)
            return -1;
        head += 8ull * count;
    }
    rec->body = r->fd < 0 ? r->buf + r->pos - head : r->rbuf;
    /* length % 8 == 0: no padding to check (npad is 0) */
    if (stream_check_record(r->st, desc, rec, rec->body + rec->length, &r->err) < 0)
        return -1;
    rec->pages_pending = (uint32_t)(rec->length - head);
    r->pages_left = rec->pages_pending;
    return 0;
}

static int read_into(struct xkvm_stream_reader *r, uint8_t *dst, size_t len)
{
    if (r->fd < 0) {
        const uint8_t *p;
        if (fetch(r, 0, len, &p, "page contents") < 0)
            return -1;
        memcpy(dst, p, len);
        return 0;
    }
    for (size_t got = 0; got < len;) {
        ssize_t n = r->io.read ? r->io.read(r->io.ctx, dst + got, len - got)
                               : read(r->fd, dst + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->err.sys_errno = errno;
            return stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_IO,
                               "read failed inside page contents: %s", strerror(errno));
        }
        if (n == 0)
            return stream_fail(&r->err, r->pos, true, XKVM_STREAM_REC_PAGE_DATA,
                               XKVM_STREAM_ERR_TRUNCATED,
                               "stream ends inside page contents (%llu bytes missing)",
                               (unsigned long long)(r->pages_left - got));
        got += (size_t)n;
        r->pos += (uint64_t)n;
    }
    return 0;
}

/* len page bytes may be taken now: a multiple of the page size, no more than pending. */
static int pages_wanted(struct xkvm_stream_reader *r, uint64_t len)
{
    if (len % XKVM_STREAM_PAGE_SIZE == 0 && len <= r->pages_left)
        return 0;
    stream_fail(&r->err, r->pos, true, XKVM_STREAM_REC_PAGE_DATA, XKVM_STREAM_ERR_ARG,
                "asked for %llu page bytes, %llu pending", (unsigned long long)len,
                (unsigned long long)r->pages_left);
    return -1;
}

int xkvm_stream_read_pages(struct xkvm_stream_reader *r, const struct iovec *iov, int iovcnt)
{
    if (r->failed)
        return -1;
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (pages_wanted(r, total) < 0)
        return rfail(r);
    for (int i = 0; i < iovcnt; i++) {
        if (read_into(r, iov[i].iov_base, iov[i].iov_len) < 0)
            return rfail(r);
        r->pages_left -= iov[i].iov_len;
    }
    return 0;
}

int xkvm_stream_read_pages_by(struct xkvm_stream_reader *r, size_t len,
                              ssize_t (*move)(void *ctx, size_t len), void *ctx)
{
    if (r->failed)
        return -1;
    if (r->fd < 0) {
        stream_fail(&r->err, r->pos, true, XKVM_STREAM_REC_PAGE_DATA, XKVM_STREAM_ERR_ARG,
                    "a buffer reader's pages cannot be moved by the caller");
        return rfail(r);
    }
    if (pages_wanted(r, len) < 0)
        return rfail(r);
    for (size_t done = 0; done < len;) {
        ssize_t n = move(ctx, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->err.sys_errno = errno;
            stream_fail(&r->err, r->pos, false, 0, XKVM_STREAM_ERR_IO,
                        "read failed inside page contents: %s", strerror(errno));
            return rfail(r);
        }
        if (n == 0 || (size_t)n > len - done) {
            stream_fail(&r->err, r->pos, true, XKVM_STREAM_REC_PAGE_DATA,
                        XKVM_STREAM_ERR_TRUNCATED,
                        "stream ends inside page contents (%llu bytes missing)",
                        (unsigned long long)(r->pages_left));
            return rfail(r);
        }
        done += (size_t)n;
        r->pos += (uint64_t)n;
        r->pages_left -= (uint64_t)n;
    }
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

/* A COMPRESSED record (its header checked): the record it holds, uncompressed and checked. */
static int unwrap(struct xkvm_stream_reader *r, struct xkvm_stream_record *rec)
{
    struct xkvm_stream_record held = { .offset = rec->offset, .type = ld_le32(rec->body),
                                       .length = ld_le32(rec->body + 4),
                                       .compressed_length = rec->length };
    r->zbuf = malloc(held.length ? held.length : 1);       /* 8-byte aligned */
    if (!r->zbuf)
        return stream_fail(&r->err, rec->offset, true, rec->type, XKVM_STREAM_ERR_NOMEM,
                           "out of memory for the %u bytes it holds", held.length);
    int n = LZ4_decompress_safe((const char *)rec->body + XKVM_STREAM_COMPRESSED_HDR,
                                (char *)r->zbuf, (int)(rec->length - XKVM_STREAM_COMPRESSED_HDR),
                                (int)held.length);
    if (n < 0 || (uint32_t)n != held.length)
        return stream_fail(&r->err, rec->offset, true, rec->type, XKVM_STREAM_ERR_BAD_VALUE,
                           "its LZ4 bytes do not uncompress to the %u bytes it announces",
                           held.length);
    held.body = r->zbuf;
    if (stream_check_held(r->st, rec, &held, &r->err) < 0)
        return -1;
    *rec = held;
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
    if (r->pages_left) {
        stream_fail(&r->err, r->pos, true, XKVM_STREAM_REC_PAGE_DATA, XKVM_STREAM_ERR_ARG,
                    "%llu bytes of the last PAGE_DATA's pages were not read",
                    (unsigned long long)r->pages_left);
        return rfail(r);
    }

    free(r->zbuf);              /* the last COMPRESSED record's, handed out already */
    r->zbuf = NULL;
    memset(rec, 0, sizeof(*rec));
    rec->offset = r->pos;
    if (fetch(r, 0, XKVM_STREAM_RHDR_SIZE, &p, "a record header") < 0)
        return rfail(r);
    rec->type = ld_le32(p);
    rec->length = ld_le32(p + 4);
    if (stream_check_rhdr(r->st, rec->offset, rec->type, rec->length, &desc, &r->err) < 0)
        return rfail(r);
    rec->skipped = desc == NULL;
    if (r->defer_pages && desc && rec->type == XKVM_STREAM_REC_PAGE_DATA &&
        rec->length % 8 == 0) {
        if (next_pages_deferred(r, rec, desc) < 0)
            return rfail(r);
        return 1;
    }

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
    if (desc && rec->type == XKVM_STREAM_REC_COMPRESSED && unwrap(r, rec) < 0)
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
