/*
 * Shared by reader and writer: error reporting, record names, and the checks of
 * the image header, domain header, record headers and order rules. The same code
 * checks what the writer emits and what the reader accepts.
 */
#include <stdio.h>
#include <string.h>

#include "stream_internal.h"

static const char *const errcode_names[] = {
    [XKVM_STREAM_OK] = "ok",
    [XKVM_STREAM_ERR_IO] = "io",
    [XKVM_STREAM_ERR_TRUNCATED] = "truncated",
    [XKVM_STREAM_ERR_MARKER] = "marker",
    [XKVM_STREAM_ERR_ID] = "id",
    [XKVM_STREAM_ERR_VERSION] = "version",
    [XKVM_STREAM_ERR_ENDIAN] = "endian",
    [XKVM_STREAM_ERR_DOMAIN] = "domain",
    [XKVM_STREAM_ERR_RESERVED] = "reserved",
    [XKVM_STREAM_ERR_PADDING] = "padding",
    [XKVM_STREAM_ERR_TOO_LARGE] = "too-large",
    [XKVM_STREAM_ERR_UNKNOWN_TYPE] = "unknown-type",
    [XKVM_STREAM_ERR_UNSUPPORTED] = "unsupported",
    [XKVM_STREAM_ERR_BAD_LENGTH] = "bad-length",
    [XKVM_STREAM_ERR_BAD_VALUE] = "bad-value",
    [XKVM_STREAM_ERR_ORDER] = "order",
    [XKVM_STREAM_ERR_DUPLICATE] = "duplicate",
    [XKVM_STREAM_ERR_MISSING] = "missing",
    [XKVM_STREAM_ERR_PFN_RANGE] = "pfn-range",
    [XKVM_STREAM_ERR_PFN_DUPLICATE] = "pfn-duplicate",
    [XKVM_STREAM_ERR_PAGE_TYPE] = "page-type",
    [XKVM_STREAM_ERR_HVM_CONTEXT] = "hvm-context",
    [XKVM_STREAM_ERR_DOMAIN_CONTEXT] = "domain-context",
    [XKVM_STREAM_ERR_COMPAT] = "compat",
    [XKVM_STREAM_ERR_AFTER_END] = "after-end",
    [XKVM_STREAM_ERR_NOMEM] = "nomem",
    [XKVM_STREAM_ERR_MISALIGNED] = "misaligned",
    [XKVM_STREAM_ERR_ARG] = "arg",
};

const char *xkvm_stream_errcode_name(enum xkvm_stream_errcode code)
{
    if ((unsigned)code < sizeof(errcode_names) / sizeof(errcode_names[0]) && errcode_names[code])
        return errcode_names[code];
    return "unknown";
}

static const char *const rec_names[] = {
    "END", "PAGE_DATA", "X86_PV_INFO", "X86_PV_P2M_FRAMES", "X86_PV_VCPU_BASIC",
    "X86_PV_VCPU_EXTENDED", "X86_PV_VCPU_XSAVE", "SHARED_INFO", "X86_TSC_INFO",
    "HVM_CONTEXT", "HVM_PARAMS", "TOOLSTACK", "X86_PV_VCPU_MSRS", "VERIFY",
    "CHECKPOINT", "CHECKPOINT_DIRTY_PFN_LIST", "STATIC_DATA_END", "X86_CPUID_POLICY",
    "X86_MSR_POLICY",
};

const char *xkvm_stream_rec_name(uint32_t type)
{
    if (type < sizeof(rec_names) / sizeof(rec_names[0]))
        return rec_names[type];
    if (type == XKVM_STREAM_REC_DOMAIN_CONTEXT)
        return "DOMAIN_CONTEXT";
    if (type == XKVM_STREAM_REC_XENSTORE_STATE)
        return "XENSTORE_STATE";
    if (type == XKVM_STREAM_REC_DOMAIN_CONFIG)
        return "DOMAIN_CONFIG";
    if (type == XKVM_STREAM_REC_LOCAL_MEMORY)
        return "LOCAL_MEMORY";
    if (type == XKVM_STREAM_REC_POSTCOPY_MISSING)
        return "POSTCOPY_MISSING";
    if (type == XKVM_STREAM_REC_POSTCOPY_DONE)
        return "POSTCOPY_DONE";
    if (type == XKVM_STREAM_REC_COMPRESSED)
        return "COMPRESSED";
    return NULL;
}

bool xkvm_stream_compressible(uint32_t type)
{
    return type == XKVM_STREAM_REC_HVM_CONTEXT || type == XKVM_STREAM_REC_DOMAIN_CONTEXT ||
           type == XKVM_STREAM_REC_XENSTORE_STATE;
}

int stream_check_held(struct xkvm_stream_state *st, const struct xkvm_stream_record *outer,
                      const struct xkvm_stream_record *held, struct xkvm_stream_error *err)
{
    static const uint8_t zeros[8];
    const struct stream_rec_desc *d;
    struct xkvm_stream_info saved = st->info ? *st->info : (struct xkvm_stream_info){ 0 };
    if (stream_check_rhdr(st, outer->offset, held->type, held->length, &d, err) < 0 ||
        stream_check_record(st, d, held, zeros, err) < 0)
        return -1;
    if (st->info) {         /* the stream's bytes and records are the ones on the wire */
        st->info->bytes = saved.bytes;
        st->info->nr_records = saved.nr_records;
        st->info->nr_compressed++;
    }
    return 0;
}

int stream_vfail(struct xkvm_stream_error *err, uint64_t offset, bool type_known, uint32_t type,
                 enum xkvm_stream_errcode code, const char *fmt, va_list ap)
{
    if (!err)
        return -1;
    err->code = code;
    err->offset = offset;
    err->type_known = type_known;
    err->type = type;
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    if (type_known) {
        const char *name = xkvm_stream_rec_name(type);
        snprintf(err->msg, sizeof(err->msg), "offset %llu, record %s (0x%x): %s",
                 (unsigned long long)offset, name ? name : "unknown", type, err->reason);
    } else {
        snprintf(err->msg, sizeof(err->msg), "offset %llu: %s",
                 (unsigned long long)offset, err->reason);
    }
    return -1;
}

int stream_fail(struct xkvm_stream_error *err, uint64_t offset, bool type_known, uint32_t type,
                enum xkvm_stream_errcode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stream_vfail(err, offset, type_known, type, code, fmt, ap);
    va_end(ap);
    return -1;
}

int xkvm_stream_compat_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "xen-4.17"))
        return XKVM_STREAM_COMPAT_XEN_4_17;
    if (!strcmp(s, "none") || !strcmp(s, "xkvm"))
        return XKVM_STREAM_COMPAT_NONE;
    return -1;
}

void stream_state_init(struct xkvm_stream_state *st, const struct xkvm_stream_limits *limits,
                       struct xkvm_stream_info *info)
{
    memset(st, 0, sizeof(*st));
    if (limits)
        st->limits = *limits;
    if (st->limits.max_pfn == 0 || st->limits.max_pfn > XKVM_STREAM_PFN_MASK + 1)
        st->limits.max_pfn = XKVM_STREAM_PFN_MASK + 1;
    if (st->limits.max_vcpus == 0)
        st->limits.max_vcpus = 128;
    if (st->limits.max_vcpus > XKVM_STREAM_MAX_VCPUS)
        st->limits.max_vcpus = XKVM_STREAM_MAX_VCPUS;
    if (st->limits.record_max == 0 || st->limits.record_max > XKVM_STREAM_RECORD_MAX)
        st->limits.record_max = XKVM_STREAM_RECORD_MAX;
    st->info = info;
}

int stream_check_ihdr(struct xkvm_stream_state *st, const uint8_t *b, struct xkvm_stream_error *err)
{
    uint64_t marker = ld_be64(b);
    uint32_t id = ld_be32(b + 8), version = ld_be32(b + 12);
    uint16_t options = ld_be16(b + 16), rsvd16 = ld_be16(b + 18);
    uint32_t rsvd32 = ld_be32(b + 20);

    if (marker != XKVM_STREAM_MARKER)
        return stream_fail(err, 0, false, 0, XKVM_STREAM_ERR_MARKER,
                           "image header: marker is 0x%016llx, must be 0xffffffffffffffff "
                           "(a zero bit means a legacy image)", (unsigned long long)marker);
    if (id != XKVM_STREAM_ID)
        return stream_fail(err, 8, false, 0, XKVM_STREAM_ERR_ID,
                           "image header: id is 0x%08x, must be 0x58454e46 (\"XENF\")", id);
    if (version != 2 && version != 3)
        return stream_fail(err, 12, false, 0, XKVM_STREAM_ERR_VERSION,
                           "image header: version %u, only 2 and 3 are read", version);
    if (options & ~XKVM_STREAM_OPT_BIG_ENDIAN)
        return stream_fail(err, 16, false, 0, XKVM_STREAM_ERR_RESERVED,
                           "image header: reserved option bits 0x%04x set",
                           options & ~XKVM_STREAM_OPT_BIG_ENDIAN);
    if (options & XKVM_STREAM_OPT_BIG_ENDIAN)
        return stream_fail(err, 16, false, 0, XKVM_STREAM_ERR_ENDIAN,
                           "image header: big-endian stream, only little-endian is read");
    if (rsvd16 || rsvd32)
        return stream_fail(err, 18, false, 0, XKVM_STREAM_ERR_RESERVED,
                           "image header: reserved bytes not zero");
    st->version = version;
    if (st->info)
        st->info->version = version;
    return 0;
}

int stream_check_dhdr(struct xkvm_stream_state *st, const uint8_t *b, uint64_t offset,
                      struct xkvm_stream_error *err)
{
    uint32_t type = ld_le32(b);
    uint16_t page_shift = ld_le16(b + 4), rsvd = ld_le16(b + 6);

    if (type == XKVM_STREAM_DOMAIN_X86_PV)
        return stream_fail(err, offset, false, 0, XKVM_STREAM_ERR_DOMAIN,
                           "domain header: x86 PV streams are not supported");
    if (type != XKVM_STREAM_DOMAIN_X86_HVM)
        return stream_fail(err, offset, false, 0, XKVM_STREAM_ERR_DOMAIN,
                           "domain header: unknown domain type 0x%x", type);
    if (page_shift != XKVM_STREAM_PAGE_SHIFT)
        return stream_fail(err, offset + 4, false, 0, XKVM_STREAM_ERR_DOMAIN,
                           "domain header: page_shift %u, must be 12", page_shift);
    if (rsvd)
        return stream_fail(err, offset + 6, false, 0, XKVM_STREAM_ERR_RESERVED,
                           "domain header: reserved field is 0x%04x, must be zero", rsvd);
    st->ops = &stream_x86_hvm_ops;
    if (st->info) {
        st->info->domain_type = type;
        st->info->xen_major = ld_le32(b + 8);
        st->info->xen_minor = ld_le32(b + 12);
    }
    return 0;
}

static const struct stream_rec_desc *lookup(const struct stream_guest_ops *ops, uint32_t type,
                                            size_t *idx)
{
    for (size_t i = 0; i < ops->nr_recs; i++)
        if (ops->recs[i].type == type) {
            *idx = i;
            return &ops->recs[i];
        }
    return NULL;
}

int stream_check_rhdr(struct xkvm_stream_state *st, uint64_t offset, uint32_t type,
                      uint32_t length, const struct stream_rec_desc **descp,
                      struct xkvm_stream_error *err)
{
    size_t idx = 0;
    const struct stream_rec_desc *d = lookup(st->ops, type, &idx);

    *descp = NULL;
    bool tail = st->ended && st->postcopy && !st->postcopy_done &&
                (type == XKVM_STREAM_REC_PAGE_DATA || type == XKVM_STREAM_REC_POSTCOPY_DONE);
    if (st->ended && !tail)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_AFTER_END, st->postcopy ?
                           "record after END other than post-copy's PAGE_DATA" : "record after END");
    if (type == XKVM_STREAM_REC_POSTCOPY_DONE && !st->ended)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_ORDER,
                           "POSTCOPY_DONE before END or without POSTCOPY_MISSING");
    if (length > st->limits.record_max)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_TOO_LARGE,
                           "body_length %u exceeds the cap of %u", length, st->limits.record_max);
    if (!d) {
        if (type & XKVM_STREAM_REC_OPTIONAL)
            return 0;           /* skipped: framing and padding only */
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_UNKNOWN_TYPE,
                           "unknown mandatory record type 0x%08x", type);
    }
    if (d->reject)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_UNSUPPORTED, "%s", d->reject);
    if ((d->flags & RD_V3) && st->version < 3)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_ORDER,
                           "not allowed in a version %u stream", st->version);
    if (length < d->min_len || length > d->max_len) {
        if (length > d->max_len && d->max_len > d->min_len)
            return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_TOO_LARGE,
                               "body_length %u exceeds the maximum of %u for this type",
                               length, d->max_len);
        if (d->min_len == d->max_len)
            return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_BAD_LENGTH,
                               "body_length %u, must be %u", length, d->min_len);
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_BAD_LENGTH,
                           "body_length %u, must be at least %u", length, d->min_len);
    }
    if ((d->flags & RD_ONCE) && (st->once_seen & (1u << idx)))
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_DUPLICATE,
                           "only one is allowed per stream");
    if ((d->flags & RD_STATIC) && st->static_done)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_ORDER,
                           "static data record after STATIC_DATA_END");
    if ((d->flags & RD_DYNAMIC) && !st->static_done && st->version >= 3)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_ORDER,
                           "before STATIC_DATA_END (required first in a v3 stream)");
    if ((d->flags & RD_BEFORE_CTX) && st->hvm_context_seen && !tail)
        return stream_fail(err, offset, true, type, XKVM_STREAM_ERR_ORDER,
                           "after HVM_CONTEXT");
    if (type == XKVM_STREAM_REC_END && st->ops->complete &&
        st->ops->complete(st, offset, err) < 0)
        return -1;
    *descp = d;
    return 0;
}

int stream_check_record(struct xkvm_stream_state *st, const struct stream_rec_desc *d,
                        const struct xkvm_stream_record *rec, const uint8_t *padding,
                        struct xkvm_stream_error *err)
{
    uint32_t npad = (uint32_t)(stream_padded(rec->length) - rec->length);
    for (uint32_t i = 0; i < npad; i++)
        if (padding[i])
            return stream_fail(err, rec->offset, true, rec->type, XKVM_STREAM_ERR_PADDING,
                               "padding byte %u is 0x%02x, must be zero", i, padding[i]);
    if (d && d->check && d->check(st, rec, err) < 0)
        return -1;
    if (d) {
        size_t idx = (size_t)(d - st->ops->recs);
        st->once_seen |= 1u << idx;
        if (d->flags & RD_DYNAMIC)
            st->static_done = true;     /* v2: the first dynamic record implies it */
        if (rec->type == XKVM_STREAM_REC_STATIC_DATA_END)
            st->static_done = true;
        if (rec->type == XKVM_STREAM_REC_HVM_CONTEXT)
            st->hvm_context_seen = true;
        if (rec->type == XKVM_STREAM_REC_END)
            st->ended = true;
        if (rec->type == XKVM_STREAM_REC_POSTCOPY_MISSING)
            st->postcopy = true;
        if (rec->type == XKVM_STREAM_REC_POSTCOPY_DONE)
            st->postcopy_done = true;
    }
    if (st->info) {
        st->info->nr_records++;
        st->info->bytes = rec->offset + XKVM_STREAM_RHDR_SIZE + stream_padded(rec->length);
    }
    return 0;
}
