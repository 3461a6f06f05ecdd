/*
 * Error reporting and the table-driven body checks every record type shares:
 * layout length, reserved bytes, flag bits, enum ranges, then the type's own hook.
 */
#include <inttypes.h>
#include <stdio.h>

#include "ctx_internal.h"

static const char *const errcode_names[] = {
    [XKVM_CTX_OK]                   = "ok",
    [XKVM_CTX_ERR_MISALIGNED]       = "misaligned",
    [XKVM_CTX_ERR_TRUNCATED]        = "truncated",
    [XKVM_CTX_ERR_LENGTH_OVERFLOW]  = "length_overflow",
    [XKVM_CTX_ERR_LENGTH_PAST_END]  = "length_past_end",
    [XKVM_CTX_ERR_PADDING]          = "padding",
    [XKVM_CTX_ERR_UNKNOWN_TYPE]     = "unknown_type",
    [XKVM_CTX_ERR_MISSING_START]    = "missing_start",
    [XKVM_CTX_ERR_START_NOT_FIRST]  = "start_not_first",
    [XKVM_CTX_ERR_DUPLICATE_START]  = "duplicate_start",
    [XKVM_CTX_ERR_MISSING_END]      = "missing_end",
    [XKVM_CTX_ERR_AFTER_END]        = "after_end",
    [XKVM_CTX_ERR_VERSION]          = "version",
    [XKVM_CTX_ERR_INSTANCE]         = "instance",
    [XKVM_CTX_ERR_DUPLICATE]        = "duplicate",
    [XKVM_CTX_ERR_BAD_LENGTH]       = "bad_length",
    [XKVM_CTX_ERR_RESERVED]         = "reserved",
    [XKVM_CTX_ERR_BAD_VALUE]        = "bad_value",
    [XKVM_CTX_ERR_IO]               = "io",
    [XKVM_CTX_ERR_NOMEM]            = "nomem",
    [XKVM_CTX_ERR_REGISTRY]         = "registry",
    [XKVM_CTX_ERR_MISSING_RECORD]   = "missing_record",
    [XKVM_CTX_ERR_INCONSISTENT]     = "inconsistent",
};

const char *xkvm_ctx_errcode_name(enum xkvm_ctx_errcode code)
{
    if ((unsigned)code < sizeof(errcode_names) / sizeof(errcode_names[0]) &&
        errcode_names[code])
        return errcode_names[code];
    return "unknown_error";
}

void ctx_set_verror(struct xkvm_ctx_error *err, enum xkvm_ctx_errcode code,
                    uint64_t offset, bool type_known, uint32_t type, const char *name,
                    const char *fmt, va_list ap)
{
    if (!err)
        return;
    err->code = code;
    err->offset = offset;
    err->type_known = type_known;
    err->type = type_known ? type : 0;
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    if (type_known)
        snprintf(err->msg, sizeof(err->msg), "offset %" PRIu64 " (0x%" PRIx64 "), type %" PRIu32
                 " (%s): %s", offset, offset, type, name ? name : "unknown", err->reason);
    else
        snprintf(err->msg, sizeof(err->msg), "offset %" PRIu64 " (0x%" PRIx64 "): %s",
                 offset, offset, err->reason);
}

void ctx_set_error(struct xkvm_ctx_error *err, enum xkvm_ctx_errcode code,
                   uint64_t offset, bool type_known, uint32_t type, const char *name,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctx_set_verror(err, code, offset, type_known, type, name, fmt, ap);
    va_end(ap);
}

int xkvm_ctx_fail(struct xkvm_ctx_error *err, const struct xkvm_ctx_record *rec,
                  enum xkvm_ctx_errcode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctx_set_verror(err, code, rec->offset, true, rec->type,
                   rec->desc ? rec->desc->name : NULL, fmt, ap);
    va_end(ap);
    return -1;
}

/* Check one field at p. `where` prefixes the reason ("" or "element N: "). */
static int check_field(const struct xkvm_ctx_record *rec, const struct xkvm_ctx_field *f,
                       const uint8_t *p, const char *where, struct xkvm_ctx_error *err)
{
    uint64_t v;

    switch (f->kind) {
    case XKVM_CTX_FIELD_RESERVED:
        for (uint32_t i = 0; i < f->size; i++)
            if (p[i])
                return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_RESERVED,
                                     "%sreserved field '%s' is not zero (byte %" PRIu32
                                     " is 0x%02x)", where, f->name, i, p[i]);
        return 0;
    case XKVM_CTX_FIELD_FLAGS:
        v = ctx_load_uint(p, f->size);
        if (v & ~f->allowed)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_RESERVED,
                                 "%sfield '%s' has unknown bits 0x%" PRIx64 " set",
                                 where, f->name, v & ~f->allowed);
        return 0;
    case XKVM_CTX_FIELD_ENUM:
        v = ctx_load_uint(p, f->size);
        if (v >= f->nr_names || !f->names[v])
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "%sfield '%s' has unknown value %" PRIu64,
                                 where, f->name, v);
        return 0;
    case XKVM_CTX_FIELD_RANGE:
        v = ctx_load_uint(p, f->size);
        if (v < f->min || v > f->max)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "%sfield '%s' is %" PRIu64 ", must be %" PRIu64 "..%" PRIu64,
                                 where, f->name, v, f->min, f->max);
        return 0;
    case XKVM_CTX_FIELD_GFN:
        v = ctx_load_uint(p, f->size);
        if (v != XKVM_CTX_GFN_NONE && v > XKVM_CTX_GFN_MAX)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "%sfield '%s' is 0x%" PRIx64 ", beyond the largest gfn 0x%llx"
                                 " (and not 'none')", where, f->name, v, XKVM_CTX_GFN_MAX);
        return 0;
    default:
        return 0;
    }
}

static bool field_needs_check(const struct xkvm_ctx_field *f)
{
    return f->kind == XKVM_CTX_FIELD_RESERVED || f->kind == XKVM_CTX_FIELD_FLAGS ||
           f->kind == XKVM_CTX_FIELD_ENUM || f->kind == XKVM_CTX_FIELD_RANGE ||
           f->kind == XKVM_CTX_FIELD_GFN;
}

/*
 * Elements are checked with a mask of the bits that must be zero, built from the
 * element's fields, so a large array costs one AND per word rather than one
 * table walk per field. ENUM, RANGE and GFN fields need a range check: those go
 * field by field.
 */
#define ELEM_MASK_MAX 256

static int check_elements_slow(const struct xkvm_ctx_record *rec, const uint8_t *elems,
                               uint64_t n, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_type_desc *d = rec->desc;
    char where[40];

    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = elems + i * d->elem_size;
        for (uint32_t j = 0; j < d->nr_elem_fields; j++) {
            const struct xkvm_ctx_field *f = &d->elem_fields[j];
            if (!field_needs_check(f))
                continue;
            snprintf(where, sizeof(where), "element %" PRIu64 ": ", i);
            if (check_field(rec, f, e + f->offset, where, err))
                return -1;
        }
    }
    return 0;
}

static int check_elements(const struct xkvm_ctx_record *rec, const uint8_t *elems,
                          uint64_t n, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_type_desc *d = rec->desc;
    alignas(8) uint8_t mask[ELEM_MASK_MAX] = { 0 };
    bool any = false;

    if (!d->nr_elem_fields || !n)
        return 0;
    if (d->elem_size > ELEM_MASK_MAX)
        return check_elements_slow(rec, elems, n, err);
    for (uint32_t j = 0; j < d->nr_elem_fields; j++) {
        const struct xkvm_ctx_field *f = &d->elem_fields[j];
        if (f->kind == XKVM_CTX_FIELD_ENUM || f->kind == XKVM_CTX_FIELD_RANGE ||
            f->kind == XKVM_CTX_FIELD_GFN)
            return check_elements_slow(rec, elems, n, err);
        if (f->kind == XKVM_CTX_FIELD_RESERVED) {
            memset(mask + f->offset, 0xff, f->size);
            any = true;
        } else if (f->kind == XKVM_CTX_FIELD_FLAGS) {
            ctx_store_uint(mask + f->offset, f->size, ~f->allowed);
            any = true;
        }
    }
    if (!any)
        return 0;

    const uint8_t *first = elems;
    bool dirty = false;
    if (d->elem_size % 8 == 0) {
        /* Body is 8-aligned and so is every element: whole-word loads. */
        const uint64_t *w = (const uint64_t *)(const void *)elems;
        const uint64_t *m = (const uint64_t *)(const void *)mask;
        size_t words = d->elem_size / 8;
        uint64_t acc = 0;
        if (4 % words == 0) {
            /* Mask period divides 4: four independent accumulators, 4 words a step. */
            uint64_t m0 = m[0], m1 = m[1 % words], m2 = m[2 % words], m3 = m[3 % words];
            uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, nw = n * words, i = 0;
            for (; i + 4 <= nw; i += 4) {
                a0 |= w[i] & m0;
                a1 |= w[i + 1] & m1;
                a2 |= w[i + 2] & m2;
                a3 |= w[i + 3] & m3;
            }
            for (; i < nw; i++)
                acc |= w[i] & m[i % words];
            acc |= a0 | a1 | a2 | a3;
        } else {
            for (uint64_t i = 0; i < n; i++, w += words)
                for (size_t j = 0; j < words; j++)
                    acc |= w[j] & m[j];
        }
        dirty = acc != 0;
    } else {
        uint8_t acc = 0;
        for (uint64_t i = 0; i < n; i++, elems += d->elem_size)
            for (size_t j = 0; j < d->elem_size; j++)
                acc |= elems[j] & mask[j];
        dirty = acc != 0;
    }
    /* Something is set that must not be: find and name it. */
    return dirty ? check_elements_slow(rec, first, n, err) : 0;
}

int xkvm_ctx_validate_body(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_type_desc *d = rec->desc;
    const uint8_t *body = rec->body;
    uint64_t n = 0;

    if (!(d->flags & XKVM_CTX_TYPE_ONCE) && d->max_instance &&
        (rec->instance < d->min_instance || rec->instance > d->max_instance))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_INSTANCE,
                             "instance %" PRIu32 ", must be %" PRIu32 "..%" PRIu32,
                             rec->instance, d->min_instance, d->max_instance);
    if (!d->elem_size) {
        if (rec->length != d->fixed_size)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                                 "length %" PRIu64 " does not fit layout (exactly %" PRIu64
                                 " bytes)", rec->length, d->fixed_size);
    } else {
        if (rec->length < d->fixed_size ||
            (rec->length - d->fixed_size) % d->elem_size)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                                 "length %" PRIu64 " does not fit layout (%" PRIu64
                                 " + n * %" PRIu64 " bytes)", rec->length, d->fixed_size,
                                 d->elem_size);
        if (d->max_length && rec->length > d->max_length)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                                 "length %" PRIu64 " exceeds the maximum %" PRIu64,
                                 rec->length, d->max_length);
        n = (rec->length - d->fixed_size) / d->elem_size;
    }

    for (uint32_t i = 0; i < d->nr_fields; i++) {
        const struct xkvm_ctx_field *f = &d->fields[i];
        if (field_needs_check(f) && check_field(rec, f, body + f->offset, "", err))
            return -1;
    }
    if (check_elements(rec, body + d->fixed_size, n, err))
        return -1;
    if (d->validate && d->validate(rec, err))
        return -1;
    return 0;
}

/* Fields lie inside their part and numeric ones have a loadable size. */
static bool fields_fit(const struct xkvm_ctx_field *f, uint32_t n, uint64_t part_size)
{
    for (uint32_t i = 0; i < n; i++) {
        bool numeric = f[i].kind != XKVM_CTX_FIELD_RESERVED &&
                       f[i].kind != XKVM_CTX_FIELD_BYTES;
        if ((uint64_t)f[i].offset + f[i].size > part_size)
            return false;
        if (numeric && f[i].size != 1 && f[i].size != 2 && f[i].size != 4 && f[i].size != 8)
            return false;
    }
    return true;
}

int ctx_registry_check(const struct xkvm_ctx_registry *reg, struct xkvm_ctx_error *err)
{
    for (size_t i = 0; i < reg->nr_types; i++) {
        const struct xkvm_ctx_type_desc *d = &reg->types[i];
        if (!fields_fit(d->fields, d->nr_fields, d->fixed_size) ||
            !fields_fit(d->elem_fields, d->nr_elem_fields, d->elem_size)) {
            ctx_set_error(err, XKVM_CTX_ERR_REGISTRY, 0, false, 0, NULL,
                          "registry entry %zu (type %" PRIu32 ") has a field outside "
                          "its body or of an unsupported size", i, d->type);
            return -1;
        }
    }

    if (reg->nr_types > XKVM_CTX_MAX_TYPES) {
        ctx_set_error(err, XKVM_CTX_ERR_REGISTRY, 0, false, 0, NULL,
                      "registry has %zu types, at most %d supported",
                      reg->nr_types, XKVM_CTX_MAX_TYPES);
        return -1;
    }
    for (size_t i = 1; i < reg->nr_types; i++) {
        if (reg->types[i].type <= reg->types[i - 1].type) {
            ctx_set_error(err, XKVM_CTX_ERR_REGISTRY, 0, false, 0, NULL,
                          "registry not sorted by type at entry %zu", i);
            return -1;
        }
    }
    return 0;
}

const struct xkvm_ctx_type_desc *
xkvm_ctx_lookup(const struct xkvm_ctx_registry *reg, uint32_t type)
{
    /* Dense low numbers index directly; otherwise binary search. */
    if (type < reg->nr_types && reg->types[type].type == type)
        return &reg->types[type];
    size_t lo = 0, hi = reg->nr_types;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (reg->types[mid].type == type)
            return &reg->types[mid];
        if (reg->types[mid].type < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int ctx_check_order(struct ctx_order *o, const struct xkvm_ctx_record *rec,
                    struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_type_desc *d = rec->desc;

    if (*o->ended)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_AFTER_END, "record after END");
    if (rec->type == XKVM_CTX_START) {
        if (*o->started)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_DUPLICATE_START, "second START record");
    } else if (!*o->started) {
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_MISSING_START,
                             "first record is not START");
    }
    if (d->flags & XKVM_CTX_TYPE_ONCE) {
        size_t idx = (size_t)(d - o->registry->types);
        if (rec->instance != 0)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_INSTANCE,
                                 "instance %" PRIu32 ", must be 0", rec->instance);
        if (o->once_seen[idx / 64] & (1ull << (idx % 64)))
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_DUPLICATE,
                                 "second %s record (at most one per image)", d->name);
        o->once_seen[idx / 64] |= 1ull << (idx % 64);
    }
    if (rec->type == XKVM_CTX_START)
        *o->started = true;
    if (rec->type == XKVM_CTX_END)
        *o->ended = true;
    return 0;
}
