/*
 * The registry of record types this build knows. Adding a type: define its body
 * struct in include/xkvm/ctx.h, describe its fields here, add one table entry (in
 * type order), document it in docs/domain-context.md.
 */
#include <inttypes.h>

#include "ctx_internal.h"

static const struct xkvm_ctx_field start_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_start, major),
    XKVM_CTX_F_UINT(struct xkvm_ctx_start, minor),
};

static const struct xkvm_ctx_field shared_info_fields[] = {
    XKVM_CTX_F_FLAGS(struct xkvm_ctx_shared_info, flags,
                     XKVM_CTX_SHARED_INFO_HAS_32BIT_LAYOUT),
    XKVM_CTX_F_UINT(struct xkvm_ctx_shared_info, buffer_size),
};

static int shared_info_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_shared_info *si = rec->body;

    if (rec->length != sizeof(*si) + (uint64_t)si->buffer_size)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "buffer_size %" PRIu32 " does not match length %" PRIu64
                             " (expected %zu + buffer_size)", si->buffer_size,
                             rec->length, sizeof(*si));
    return 0;
}

/* The page is opaque: show how much of it is in use and a digest to compare by. */
static void shared_info_dump(const struct xkvm_ctx_record *rec, struct xkvm_ctx_dumper *d)
{
    const struct xkvm_ctx_shared_info *si = rec->body;
    uint64_t hash = 0xcbf29ce484222325ull;     /* FNV-1a, 64-bit */
    uint64_t nonzero = 0;
    char hex[24];

    for (uint32_t i = 0; i < si->buffer_size; i++) {
        nonzero += si->buffer[i] != 0;
        hash = (hash ^ si->buffer[i]) * 0x100000001b3ull;
    }
    xkvm_ctx_dump_uint(d, "buffer_nonzero", nonzero);
    snprintf(hex, sizeof(hex), "%016" PRIx64, hash);
    xkvm_ctx_dump_str(d, "buffer_fnv1a64", hex);
}

static const char *const tsc_mode_names[] = {
    [XKVM_CTX_TSC_MODE_DEFAULT]        = "default",
    [XKVM_CTX_TSC_MODE_ALWAYS_EMULATE] = "always_emulate",
    [XKVM_CTX_TSC_MODE_NEVER_EMULATE]  = "never_emulate",
};

static const struct xkvm_ctx_field tsc_info_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_tsc_info, mode, tsc_mode_names),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, khz),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, nsec),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, incarnation),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_tsc_info, pad),
};

static const struct xkvm_ctx_type_desc builtin_types[] = {
    {
        .type = XKVM_CTX_END, .name = "END", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = 0,
    },
    {
        .type = XKVM_CTX_START, .name = "START", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_start),
        .fields = XKVM_CTX_FIELDS(start_fields),
    },
    {
        .type = XKVM_CTX_SHARED_INFO, .name = "SHARED_INFO", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_shared_info),
        .elem_size = 1,
        .max_length = sizeof(struct xkvm_ctx_shared_info) + XKVM_CTX_SHARED_INFO_MAX,
        .fields = XKVM_CTX_FIELDS(shared_info_fields),
        .validate = shared_info_validate,
        .dump = shared_info_dump,
    },
    {
        .type = XKVM_CTX_TSC_INFO, .name = "TSC_INFO", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_tsc_info),
        .fields = XKVM_CTX_FIELDS(tsc_info_fields),
    },
};

const struct xkvm_ctx_registry xkvm_ctx_builtin_registry = {
    .types = builtin_types,
    .nr_types = sizeof(builtin_types) / sizeof(builtin_types[0]),
};
