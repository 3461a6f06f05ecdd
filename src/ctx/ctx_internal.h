/* Shared between the reader and the writer; not part of the public API. */
#ifndef XKVM_CTX_INTERNAL_H
#define XKVM_CTX_INTERNAL_H

#include <stdarg.h>
#include <string.h>

#include "xkvm/ctx.h"

/* Fill err; name is the type's name or NULL. */
void ctx_set_error(struct xkvm_ctx_error *err, enum xkvm_ctx_errcode code,
                   uint64_t offset, bool type_known, uint32_t type, const char *name,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void ctx_set_verror(struct xkvm_ctx_error *err, enum xkvm_ctx_errcode code,
                    uint64_t offset, bool type_known, uint32_t type, const char *name,
                    const char *fmt, va_list ap) __attribute__((format(printf, 7, 0)));

/* 0 unless the registry is unusable (too big or not sorted by type). */
int ctx_registry_check(const struct xkvm_ctx_registry *reg, struct xkvm_ctx_error *err);

/*
 * The ordering rules common to reader and writer, for a record whose type is
 * known and whose body has been validated: START first and once, ONCE types once
 * at instance 0, nothing after END. 0 or -1 with err filled.
 */
struct ctx_order {
    bool *started, *ended;
    uint64_t *once_seen;
    const struct xkvm_ctx_registry *registry;
};
int ctx_check_order(struct ctx_order *o, const struct xkvm_ctx_record *rec,
                    struct xkvm_ctx_error *err);

static inline uint64_t ctx_load_uint(const uint8_t *p, uint32_t size)
{
    uint8_t v8; uint16_t v16; uint32_t v32; uint64_t v64;
    switch (size) {
    case 1: memcpy(&v8, p, 1); return v8;
    case 2: memcpy(&v16, p, 2); return v16;
    case 4: memcpy(&v32, p, 4); return v32;
    default: memcpy(&v64, p, 8); return v64;
    }
}

static inline void ctx_store_uint(uint8_t *p, uint32_t size, uint64_t v)
{
    uint8_t v8 = (uint8_t)v; uint16_t v16 = (uint16_t)v; uint32_t v32 = (uint32_t)v;
    switch (size) {
    case 1: memcpy(p, &v8, 1); break;
    case 2: memcpy(p, &v16, 2); break;
    case 4: memcpy(p, &v32, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

#endif
