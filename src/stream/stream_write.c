/*
 * Save direction: write a stream to an fd or a growable buffer. Every header and
 * record is put through the reader's own checks before it goes out, so a writer
 * never produces a stream the reader rejects. PAGE_DATA is batched.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stream_internal.h"

static const uint8_t zeros[8];

static int wfail(struct xkvm_stream_writer *w, enum xkvm_stream_errcode code, bool type_known,
                 uint32_t type, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int wfail(struct xkvm_stream_writer *w, enum xkvm_stream_errcode code, bool type_known,
                 uint32_t type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stream_vfail(&w->err, w->info.bytes, type_known, type, code, fmt, ap);
    va_end(ap);
    w->failed = true;
    return -1;
}

static int writer_init(struct xkvm_stream_writer *w, int fd, const struct xkvm_stream_writer_opts *opts)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    if (opts)
        w->opts = *opts;
    if (!w->opts.xen_major && !w->opts.xen_minor) {
        w->opts.xen_major = 4;
        w->opts.xen_minor = 17;
    }
    if (w->opts.batch == 0)
        w->opts.batch = XKVM_STREAM_BATCH_MAX;
    if (w->opts.batch > XKVM_STREAM_BATCH_MAX)
        return wfail(w, XKVM_STREAM_ERR_ARG, false, 0, "batch %u exceeds %u", w->opts.batch,
                     XKVM_STREAM_BATCH_MAX);
    if (w->opts.compat != XKVM_STREAM_COMPAT_NONE && w->opts.compat != XKVM_STREAM_COMPAT_XEN_4_17)
        return wfail(w, XKVM_STREAM_ERR_ARG, false, 0, "unknown compat mode %d", w->opts.compat);
    w->st = malloc(sizeof(*w->st));
    if (!w->st)
        return wfail(w, XKVM_STREAM_ERR_NOMEM, false, 0, "out of memory");
    stream_state_init(w->st, &w->opts.limits, &w->info);
    w->opts.limits = w->st->limits;
    if (w->opts.skip_zero) {
        uint64_t n = w->opts.limits.max_pfn;
        if (n > (1ull << 32))
            return wfail(w, XKVM_STREAM_ERR_ARG, false, 0,
                         "skip_zero needs limits.max_pfn <= 2^32 (it keeps a bitmap)");
        w->sent = calloc((size_t)((n + 63) / 64), sizeof(uint64_t));
        if (!w->sent)
            return wfail(w, XKVM_STREAM_ERR_NOMEM, false, 0, "out of memory");
    }
    return 0;
}

int xkvm_stream_writer_init_fd(struct xkvm_stream_writer *w, int fd,
                               const struct xkvm_stream_writer_opts *opts)
{
    return writer_init(w, fd, opts);
}

void xkvm_stream_writer_postcopy_tail(struct xkvm_stream_writer *w)
{
    w->st->ended = w->st->postcopy = w->st->static_done = true;
}

int xkvm_stream_writer_init_io(struct xkvm_stream_writer *w, const struct xkvm_stream_io *io,
                               const struct xkvm_stream_writer_opts *opts)
{
    int rc = writer_init(w, 0, opts);   /* not a buffer writer: the bytes go through io */
    w->io = *io;
    return rc;
}

int xkvm_stream_writer_init_buffer(struct xkvm_stream_writer *w,
                                   const struct xkvm_stream_writer_opts *opts)
{
    return writer_init(w, -1, opts);
}

void xkvm_stream_writer_release(struct xkvm_stream_writer *w)
{
    free(w->buf);
    free(w->batch);
    free(w->refs);
    free(w->iov);
    w->refs = NULL;
    w->iov = NULL;
    free(w->sent);
    free(w->st);
    w->buf = w->batch = NULL;
    w->sent = NULL;
    w->st = NULL;
    w->len = w->cap = 0;
}

const uint8_t *xkvm_stream_writer_data(const struct xkvm_stream_writer *w, size_t *len)
{
    *len = w->len;
    return w->buf;
}

void *xkvm_stream_writer_take(struct xkvm_stream_writer *w, size_t *len)
{
    void *p = w->buf;
    *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    return p;
}

static int emit(struct xkvm_stream_writer *w, struct iovec *iov, int n)
{
    if (w->fd < 0) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        if (w->len + total > w->cap) {
            size_t cap = w->cap ? w->cap : 65536;
            while (cap < w->len + total)
                cap *= 2;
            uint8_t *nb = realloc(w->buf, cap);
            if (!nb)
                return wfail(w, XKVM_STREAM_ERR_NOMEM, false, 0, "out of memory");
            w->buf = nb;
            w->cap = cap;
        }
        for (int i = 0; i < n; i++) {
            if (iov[i].iov_len)
                memcpy(w->buf + w->len, iov[i].iov_base, iov[i].iov_len);
            w->len += iov[i].iov_len;
        }
        return 0;
    }
    while (n > 0) {
        int cnt = n > 1024 ? 1024 : n;     /* IOV_MAX */
        ssize_t k = w->io.writev ? w->io.writev(w->io.ctx, iov, cnt) : writev(w->fd, iov, cnt);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            w->err.sys_errno = errno;
            return wfail(w, XKVM_STREAM_ERR_IO, false, 0, "write failed: %s", strerror(errno));
        }
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

static int write_headers(struct xkvm_stream_writer *w)
{
    uint8_t ih[XKVM_STREAM_IHDR_SIZE] = { 0 }, dh[XKVM_STREAM_DHDR_SIZE] = { 0 };

    st_be64(ih, XKVM_STREAM_MARKER);
    st_be32(ih + 8, XKVM_STREAM_ID);
    st_be32(ih + 12, XKVM_STREAM_VERSION);
    /* options (bit 0: little-endian) and reserved stay zero */
    st_le32(dh, XKVM_STREAM_DOMAIN_X86_HVM);
    st_le16(dh + 4, XKVM_STREAM_PAGE_SHIFT);
    st_le32(dh + 8, w->opts.xen_major);
    st_le32(dh + 12, w->opts.xen_minor);
    if (stream_check_ihdr(w->st, ih, &w->err) < 0 ||
        stream_check_dhdr(w->st, dh, XKVM_STREAM_IHDR_SIZE, &w->err) < 0) {
        w->failed = true;
        return -1;
    }
    struct iovec iov[2] = { { ih, sizeof(ih) }, { dh, sizeof(dh) } };
    if (emit(w, iov, 2) < 0)
        return -1;
    w->headers_done = true;
    w->info.bytes = XKVM_STREAM_IHDR_SIZE + XKVM_STREAM_DHDR_SIZE;
    return 0;
}

/*
 * Check and write one record. The body is `body` (length bytes), or, for a page batch
 * whose pages are referenced (opts.reference_pages), `body` holds the head the checks
 * read (count, pfns) and `tail` the pages, `length` counting both.
 */
static int write_raw_tail(struct xkvm_stream_writer *w, uint32_t type, const void *body,
                          uint32_t length, struct iovec *tail, int ntail, uint32_t head_len)
{
    const struct stream_rec_desc *desc;
    uint8_t hdr[XKVM_STREAM_RHDR_SIZE];
    void *copy = NULL;

    if (w->failed)
        return -1;
    if (w->ended)
        return wfail(w, XKVM_STREAM_ERR_AFTER_END, true, type, "record after END");
    if (length && !body)
        return wfail(w, XKVM_STREAM_ERR_ARG, true, type, "body is NULL");
    if (w->opts.compat != XKVM_STREAM_COMPAT_NONE &&
        (type == XKVM_STREAM_REC_DOMAIN_CONTEXT || type == XKVM_STREAM_REC_XENSTORE_STATE ||
         type == XKVM_STREAM_REC_DOMAIN_CONFIG ||
         (type & XKVM_STREAM_REC_OPTIONAL)))
        return wfail(w, XKVM_STREAM_ERR_COMPAT, true, type,
                     "xkvm extension records are not written in --compat xen-4.17 mode");
    if (!w->headers_done && write_headers(w) < 0)
        return -1;
    if (body && !tail && (uintptr_t)body % XKVM_STREAM_ALIGN) {
        /* Bodies are checked where the reader sees them: 8-byte aligned. */
        copy = malloc(length);
        if (!copy)
            return wfail(w, XKVM_STREAM_ERR_NOMEM, true, type, "out of memory");
        memcpy(copy, body, length);
        body = copy;
    }
    struct xkvm_stream_record rec = {
        .offset = w->info.bytes, .type = type, .length = length, .body = body,
    };
    if (stream_check_rhdr(w->st, rec.offset, type, length, &desc, &w->err) < 0 ||
        stream_check_record(w->st, desc, &rec, zeros, &w->err) < 0) {
        free(copy);
        w->failed = true;
        return -1;
    }
    st_le32(hdr, type);
    st_le32(hdr + 4, length);
    int rc;
    if (tail) {
        /* tail[0..1] are free for the header and the head. */
        tail[0] = (struct iovec){ hdr, sizeof(hdr) };
        tail[1] = (struct iovec){ (void *)body, head_len };
        rc = emit(w, tail, ntail);
    } else {
        struct iovec iov[3] = {
            { hdr, sizeof(hdr) },
            { (void *)body, length },
            { (void *)zeros, (size_t)(stream_padded(length) - length) },
        };
        rc = emit(w, iov, 3);
    }
    free(copy);
    if (rc == 0 && ((type == XKVM_STREAM_REC_END && !w->st->postcopy) ||
                    type == XKVM_STREAM_REC_POSTCOPY_DONE))
        w->ended = true;        /* post-copy: pages go on after END */
    return rc;
}

static int write_raw(struct xkvm_stream_writer *w, uint32_t type, const void *body, uint32_t length)
{
    return write_raw_tail(w, type, body, length, NULL, 0, 0);
}

/* A batch of referenced pages: the head, then the pages straight from where they are. */
static int flush_page_refs(struct xkvm_stream_writer *w)
{
    uint32_t n = w->nr_batch, nd = w->nr_batch_data;
    uint8_t *p = w->batch;
    st_le32(p, n);
    st_le32(p + 4, 0);
    uint32_t head = 8 + 8 * n, len = head + XKVM_STREAM_PAGE_SIZE * nd;
    struct iovec *iov = w->iov;
    int k = 2;      /* header and head */
    for (uint32_t i = 0; i < nd; i++) {
        if (k > 2 && (const uint8_t *)iov[k - 1].iov_base + iov[k - 1].iov_len == w->refs[i])
            iov[k - 1].iov_len += XKVM_STREAM_PAGE_SIZE;    /* contiguous: one iovec */
        else
            iov[k++] = (struct iovec){ (void *)w->refs[i], XKVM_STREAM_PAGE_SIZE };
    }
    w->nr_batch = w->nr_batch_data = 0;
    return write_raw_tail(w, XKVM_STREAM_REC_PAGE_DATA, p, len, iov, k, head);
}

int xkvm_stream_flush_pages(struct xkvm_stream_writer *w)
{
    if (w->failed)
        return -1;
    if (w->nr_batch == 0)
        return 0;
    if (w->opts.reference_pages)
        return flush_page_refs(w);
    uint32_t n = w->nr_batch, b = w->opts.batch;
    uint8_t *p = w->batch;
    st_le32(p, n);
    st_le32(p + 4, 0);
    if (n < b)
        memmove(p + 8 + 8ull * n, p + 8 + 8ull * b, (size_t)w->nr_batch_data * XKVM_STREAM_PAGE_SIZE);
    uint32_t len = 8 + 8 * n + XKVM_STREAM_PAGE_SIZE * w->nr_batch_data;
    w->nr_batch = w->nr_batch_data = 0;
    return write_raw(w, XKVM_STREAM_REC_PAGE_DATA, p, len);
}

/*
 * A state record as COMPRESSED where that is smaller (docs/stream.md): checked first
 * as the plain record it holds, as the reader checks it once uncompressed.
 */
static int write_compressed(struct xkvm_stream_writer *w, uint32_t type, const void *body,
                            uint32_t length)
{
    int bound = LZ4_compressBound((int)length);
    uint8_t *z = bound > 0 ? malloc(XKVM_STREAM_COMPRESSED_HDR + (size_t)bound) : NULL;
    int n = z ? LZ4_compress_default(body, (char *)z + XKVM_STREAM_COMPRESSED_HDR,
                                     (int)length, bound) : 0;
    /* Bodies are checked where the reader sees them: 8-byte aligned. */
    void *copy = n > 0 && (uintptr_t)body % XKVM_STREAM_ALIGN ? malloc(length) : NULL;
    if (n <= 0 || XKVM_STREAM_COMPRESSED_HDR + (uint32_t)n >= length ||
        ((uintptr_t)body % XKVM_STREAM_ALIGN && !copy)) {
        free(z);
        free(copy);
        return write_raw(w, type, body, length);    /* as it is: no smaller, or no memory */
    }
    if (copy)
        body = memcpy(copy, body, length);
    st_le32(z, type);
    st_le32(z + 4, length);
    memset(z + 8, 0, 4);
    z[8] = XKVM_STREAM_COMPRESS_LZ4;
    int rc = w->failed ? -1 : w->headers_done ? 0 : write_headers(w);
    struct xkvm_stream_record outer = { .offset = w->info.bytes },
                              held = { .offset = w->info.bytes, .type = type,
                                       .length = length, .body = body };
    if (rc == 0 && stream_check_held(w->st, &outer, &held, &w->err) < 0) {
        w->failed = true;
        rc = -1;
    }
    if (rc == 0)
        rc = write_raw(w, XKVM_STREAM_REC_COMPRESSED, z,
                       XKVM_STREAM_COMPRESSED_HDR + (uint32_t)n);
    free(copy);
    free(z);
    return rc;
}

int xkvm_stream_write_record(struct xkvm_stream_writer *w, uint32_t type,
                             const void *body, uint32_t length)
{
    if (xkvm_stream_flush_pages(w) < 0)
        return -1;
    if (w->opts.compress_state && w->opts.compat == XKVM_STREAM_COMPAT_NONE && body &&
        xkvm_stream_compressible(type))
        return write_compressed(w, type, body, length);
    return write_raw(w, type, body, length);
}

static int queue(struct xkvm_stream_writer *w, uint64_t pfn, unsigned type, const void *data)
{
    if (w->failed)
        return -1;
    if (pfn >= w->opts.limits.max_pfn)
        return wfail(w, XKVM_STREAM_ERR_PFN_RANGE, true, XKVM_STREAM_REC_PAGE_DATA,
                     "pfn 0x%llx is beyond the limit 0x%llx", (unsigned long long)pfn,
                     (unsigned long long)w->opts.limits.max_pfn);
    if (!w->batch) {
        bool refs = w->opts.reference_pages;
        w->batch = malloc(8 + (8 + (refs ? 0 : (size_t)XKVM_STREAM_PAGE_SIZE)) * w->opts.batch);
        if (refs) {
            w->refs = calloc(w->opts.batch, sizeof(*w->refs));
            w->iov = calloc(2 + (size_t)w->opts.batch, sizeof(*w->iov));
        }
        if (!w->batch || (refs && (!w->refs || !w->iov)))
            return wfail(w, XKVM_STREAM_ERR_NOMEM, true, XKVM_STREAM_REC_PAGE_DATA, "out of memory");
    }
    st_le64(w->batch + 8 + 8ull * w->nr_batch, pfn | (uint64_t)type << XKVM_STREAM_PFN_TYPE_SHIFT);
    w->nr_batch++;
    if (data && w->opts.reference_pages) {
        w->refs[w->nr_batch_data++] = data;
    } else if (data) {
        memcpy(w->batch + 8 + 8ull * w->opts.batch +
               (size_t)w->nr_batch_data * XKVM_STREAM_PAGE_SIZE, data, XKVM_STREAM_PAGE_SIZE);
        w->nr_batch_data++;
    }
    if (w->nr_batch == w->opts.batch)
        return xkvm_stream_flush_pages(w);
    return 0;
}

static bool page_is_zero(const void *data)
{
    const uint64_t *q = data;       /* callers pass guest pages: 8-byte aligned */
    /* A cache line at a time: a page with data (the common case) stops at once. */
    for (size_t i = 0; i < XKVM_STREAM_PAGE_SIZE / 8; i += 8) {
        uint64_t acc = q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] |
                       q[i + 6] | q[i + 7];
        if (acc)
            return false;
    }
    return true;
}

int xkvm_stream_add_page(struct xkvm_stream_writer *w, uint64_t pfn, const void *data)
{
    if (!data)
        return wfail(w, XKVM_STREAM_ERR_ARG, true, XKVM_STREAM_REC_PAGE_DATA, "data is NULL");
    if (w->opts.skip_zero && pfn < w->opts.limits.max_pfn) {
        bool sent = w->sent[pfn / 64] & (1ull << (pfn % 64));
        if (!sent && ((uintptr_t)data % 8 == 0) && page_is_zero(data))
            return queue(w, pfn, XKVM_STREAM_PAGE_XALLOC, NULL);
        w->sent[pfn / 64] |= 1ull << (pfn % 64);
    }
    return queue(w, pfn, XKVM_STREAM_PAGE_NORMAL, data);
}

int xkvm_stream_add_pfn(struct xkvm_stream_writer *w, uint64_t pfn, unsigned type)
{
    if (type != XKVM_STREAM_PAGE_XTAB && type != XKVM_STREAM_PAGE_XALLOC &&
        type != XKVM_STREAM_PAGE_BROKEN)
        return wfail(w, XKVM_STREAM_ERR_ARG, true, XKVM_STREAM_REC_PAGE_DATA,
                     "page type 0x%x carries data or is not valid for HVM", type);
    return queue(w, pfn, type, NULL);
}

int xkvm_stream_write_static_data_end(struct xkvm_stream_writer *w)
{
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
}

int xkvm_stream_write_tsc_info(struct xkvm_stream_writer *w, const struct xkvm_stream_tsc_info *tsc)
{
    uint8_t b[24] = { 0 };
    st_le32(b, tsc->mode);
    st_le32(b + 4, tsc->khz);
    st_le64(b + 8, tsc->nsec);
    st_le32(b + 16, tsc->incarnation);
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_X86_TSC_INFO, b, sizeof(b));
}

int xkvm_stream_write_hvm_params(struct xkvm_stream_writer *w,
                                 const struct xkvm_stream_hvm_param *p, uint32_t count)
{
    if (count > 64)
        return wfail(w, XKVM_STREAM_ERR_TOO_LARGE, true, XKVM_STREAM_REC_HVM_PARAMS,
                     "%u params", count);
    uint8_t b[8 + 16 * 64] = { 0 };
    st_le32(b, count);
    for (uint32_t i = 0; i < count; i++) {
        st_le64(b + 8 + 16 * i, p[i].index);
        st_le64(b + 16 + 16 * i, p[i].value);
    }
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_HVM_PARAMS, b, 8 + 16 * count);
}

int xkvm_stream_write_hvm_context(struct xkvm_stream_writer *w, const void *blob, uint32_t len)
{
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_HVM_CONTEXT, blob, len);
}

int xkvm_stream_write_domain_context(struct xkvm_stream_writer *w, const void *img, uint32_t len)
{
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_DOMAIN_CONTEXT, img, len);
}

int xkvm_stream_write_xenstore_state(struct xkvm_stream_writer *w, const void *blob, uint32_t len)
{
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_XENSTORE_STATE, blob, len);
}

int xkvm_stream_write_domain_config(struct xkvm_stream_writer *w, const char *json, uint32_t len)
{
    /* The body must be 8-byte aligned for the check; json may not be. */
    void *b = len ? malloc(len) : NULL;
    if (len && !b)
        return -1;
    if (len)
        memcpy(b, json, len);
    int rc = xkvm_stream_write_record(w, XKVM_STREAM_REC_DOMAIN_CONFIG, b, len);
    free(b);
    return rc;
}

int xkvm_stream_write_end(struct xkvm_stream_writer *w)
{
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_END, NULL, 0);
}
