/*
 * Walking an image: framing (header, length, padding), then type, ordering,
 * body layout and version. Bodies are never copied: records point into the buffer.
 */
#include <inttypes.h>

#include "ctx_internal.h"

#define HDR_SIZE sizeof(struct xkvm_ctx_record_header)

void xkvm_ctx_reader_init(struct xkvm_ctx_reader *r, const void *buf, size_t size,
                          const struct xkvm_ctx_registry *registry)
{
    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->size = size;
    r->registry = registry ? registry : &xkvm_ctx_builtin_registry;
    r->our_major = XKVM_VERSION_MAJOR;
}

static int reader_fail(struct xkvm_ctx_reader *r, enum xkvm_ctx_errcode code,
                       uint64_t offset, bool type_known, uint32_t type,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int reader_fail(struct xkvm_ctx_reader *r, enum xkvm_ctx_errcode code,
                       uint64_t offset, bool type_known, uint32_t type,
                       const char *fmt, ...)
{
    const struct xkvm_ctx_type_desc *d =
        type_known ? xkvm_ctx_lookup(r->registry, type) : NULL;
    va_list ap;
    va_start(ap, fmt);
    ctx_set_verror(&r->err, code, offset, type_known, type, d ? d->name : NULL, fmt, ap);
    va_end(ap);
    r->failed = true;
    return -1;
}

/*
 * Frame the record at pos: header complete, body and padding inside the buffer.
 * Fills hdr; 0 or -1 (error recorded only if report).
 */
static int frame_record(struct xkvm_ctx_reader *r, size_t pos,
                        struct xkvm_ctx_record_header *hdr, bool report)
{
    size_t remaining = r->size - pos;

    if (remaining < HDR_SIZE) {
        if (!report)
            return -1;
        if (remaining >= sizeof(uint32_t)) {
            uint32_t type;
            memcpy(&type, r->buf + pos, sizeof(type));
            return reader_fail(r, XKVM_CTX_ERR_TRUNCATED, pos, true, type,
                               "record header truncated (%zu of %zu bytes)",
                               remaining, HDR_SIZE);
        }
        return reader_fail(r, XKVM_CTX_ERR_TRUNCATED, pos, false, 0,
                           "record header truncated (%zu of %zu bytes)",
                           remaining, HDR_SIZE);
    }
    memcpy(hdr, r->buf + pos, HDR_SIZE);
    uint64_t room = remaining - HDR_SIZE;
    if (hdr->length > UINT64_MAX - (XKVM_CTX_ALIGN - 1))
        return report ? reader_fail(r, XKVM_CTX_ERR_LENGTH_OVERFLOW, pos, true, hdr->type,
                                    "length 0x%" PRIx64 " overflows when padded",
                                    hdr->length) : -1;
    if (hdr->length > room)
        return report ? reader_fail(r, XKVM_CTX_ERR_LENGTH_PAST_END, pos, true, hdr->type,
                                    "length %" PRIu64 " runs past the end of the image "
                                    "(%" PRIu64 " bytes after the header)",
                                    hdr->length, room) : -1;
    if (xkvm_ctx_record_size(hdr->length) - HDR_SIZE > room)
        return report ? reader_fail(r, XKVM_CTX_ERR_LENGTH_PAST_END, pos, true, hdr->type,
                                    "padding after the %" PRIu64 "-byte body runs past "
                                    "the end of the image", hdr->length) : -1;
    return 0;
}

/* The first record is not START: is there a START later (misplaced) or none? */
static int report_missing_start(struct xkvm_ctx_reader *r, uint32_t first_type)
{
    const struct xkvm_ctx_type_desc *d = xkvm_ctx_lookup(r->registry, first_type);
    struct xkvm_ctx_record_header hdr;
    size_t pos = 0;

    while (pos < r->size && frame_record(r, pos, &hdr, false) == 0) {
        if (hdr.type == XKVM_CTX_START && pos > 0)
            return reader_fail(r, XKVM_CTX_ERR_START_NOT_FIRST, pos, true, hdr.type,
                               "START is not the first record (the image begins with "
                               "type %" PRIu32 " (%s) at offset 0)",
                               first_type, d ? d->name : "unknown");
        if (hdr.type == XKVM_CTX_END)
            break;
        pos += xkvm_ctx_record_size(hdr.length);
    }
    return reader_fail(r, XKVM_CTX_ERR_MISSING_START, 0, true, first_type,
                       "image does not begin with a START record");
}

int xkvm_ctx_next(struct xkvm_ctx_reader *r, struct xkvm_ctx_record *rec)
{
    struct xkvm_ctx_record_header hdr;
    size_t pos = r->pos;

    if (r->failed)
        return -1;
    if (r->ended)
        return 0;
    if (pos == 0) {
        if ((uintptr_t)r->buf % XKVM_CTX_ALIGN)
            return reader_fail(r, XKVM_CTX_ERR_MISALIGNED, 0, false, 0,
                               "image buffer is not %u-byte aligned", XKVM_CTX_ALIGN);
        if (ctx_registry_check(r->registry, &r->err)) {
            r->failed = true;
            return -1;
        }
    }
    if (pos == r->size) {
        if (!r->started)
            return reader_fail(r, XKVM_CTX_ERR_MISSING_START, pos, false, 0,
                               "empty image: no START record");
        return reader_fail(r, XKVM_CTX_ERR_MISSING_END, pos, false, 0,
                           "image ends after %u records without an END record",
                           r->nr_records);
    }
    if (frame_record(r, pos, &hdr, true))
        return -1;

    const uint8_t *body = r->buf + pos + HDR_SIZE;
    uint64_t padded = xkvm_ctx_record_size(hdr.length) - HDR_SIZE;
    for (uint64_t i = hdr.length; i < padded; i++)
        if (body[i])
            return reader_fail(r, XKVM_CTX_ERR_PADDING, pos, true, hdr.type,
                               "padding byte %" PRIu64 " (image offset %" PRIu64
                               ") is 0x%02x, must be zero", i - hdr.length,
                               (uint64_t)pos + HDR_SIZE + i, body[i]);

    if (pos == 0 && hdr.type != XKVM_CTX_START)
        return report_missing_start(r, hdr.type);

    const struct xkvm_ctx_type_desc *d = xkvm_ctx_lookup(r->registry, hdr.type);
    if (!d)
        return reader_fail(r, XKVM_CTX_ERR_UNKNOWN_TYPE, pos, true, hdr.type,
                           "unknown record type");

    *rec = (struct xkvm_ctx_record) {
        .offset = pos, .type = hdr.type, .instance = hdr.instance,
        .length = hdr.length, .body = body, .desc = d,
    };
    struct ctx_order order = {
        .started = &r->started, .ended = &r->ended,
        .once_seen = r->once_seen, .registry = r->registry,
    };
    if (ctx_check_order(&order, rec, &r->err) || xkvm_ctx_validate_body(rec, &r->err)) {
        r->failed = true;
        return -1;
    }
    if (hdr.type == XKVM_CTX_START) {
        const struct xkvm_ctx_start *s = rec->body;
        if (s->major != r->our_major)
            return reader_fail(r, XKVM_CTX_ERR_VERSION, pos, true, hdr.type,
                               "image written by xkvm %" PRIu32 ".%" PRIu32
                               ", this reader needs major version %" PRIu32,
                               s->major, s->minor, r->our_major);
        r->major = s->major;
        r->minor = s->minor;
    }
    r->pos = pos + xkvm_ctx_record_size(hdr.length);
    r->nr_records++;
    return 1;
}

int xkvm_ctx_verify(const void *buf, size_t size, const struct xkvm_ctx_registry *registry,
                    struct xkvm_ctx_summary *sum, struct xkvm_ctx_error *err)
{
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    int rc;

    xkvm_ctx_reader_init(&r, buf, size, registry);
    while ((rc = xkvm_ctx_next(&r, &rec)) > 0)
        ;
    if (rc < 0) {
        if (err)
            *err = r.err;
        return -1;
    }
    if (sum)
        *sum = (struct xkvm_ctx_summary) {
            .nr_records = r.nr_records, .used = r.pos, .major = r.major, .minor = r.minor,
        };
    return 0;
}
