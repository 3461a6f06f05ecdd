/*
 * Internals of the migration stream library: byte order helpers, the checking
 * state shared by reader and writer, and the per-guest-type table of record rules
 * (x86 HVM only: stream_x86_hvm.c). Layout and rules: docs/stream.md.
 */
#ifndef XKVM_STREAM_INTERNAL_H
#define XKVM_STREAM_INTERNAL_H

#include <stdarg.h>
#include <string.h>

#include "xkvm/postcopy.h"
#include "xkvm/stream.h"

static inline uint16_t ld_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ld_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ld_le64(const uint8_t *p) { return ld_le32(p) | (uint64_t)ld_le32(p + 4) << 32; }
static inline uint16_t ld_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t ld_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static inline uint64_t ld_be64(const uint8_t *p) { return (uint64_t)ld_be32(p) << 32 | ld_be32(p + 4); }
static inline void st_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void st_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void st_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void st_be32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i)); }
static inline void st_be64(uint8_t *p, uint64_t v) { st_be32(p, (uint32_t)(v >> 32)); st_be32(p + 4, (uint32_t)v); }

static inline uint64_t stream_padded(uint64_t len) { return (len + 7) & ~(uint64_t)7; }

/* Fill err (msg names offset, record type and reason). Always returns -1. */
int stream_fail(struct xkvm_stream_error *err, uint64_t offset, bool type_known, uint32_t type,
                enum xkvm_stream_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
int stream_vfail(struct xkvm_stream_error *err, uint64_t offset, bool type_known, uint32_t type,
                 enum xkvm_stream_errcode code, const char *fmt, va_list ap);

/* ---- Per-guest-type record rules ---------------------------------------------- */

struct xkvm_stream_state;

#define RD_ONCE         (1u << 0)   /* at most once per stream */
#define RD_STATIC       (1u << 1)   /* only before STATIC_DATA_END */
#define RD_DYNAMIC      (1u << 2)   /* only after STATIC_DATA_END (implied in v2) */
#define RD_BEFORE_CTX   (1u << 3)   /* not after HVM_CONTEXT */
#define RD_EXT          (1u << 4)   /* xkvm extension */
#define RD_V3           (1u << 5)   /* not in v2 streams */

struct stream_rec_desc {
    uint32_t type;
    uint32_t flags;                 /* RD_* */
    uint32_t min_len, max_len;      /* body length bounds, checked on the header */
    const char *reject;             /* known but not accepted here: why */
    int (*check)(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                 struct xkvm_stream_error *err);
};

struct stream_guest_ops {
    uint32_t domain_type;
    const char *name;
    const struct stream_rec_desc *recs;
    size_t nr_recs;                 /* <= 32 (once_seen bits) */
    /* At END: records the guest type requires. */
    int (*complete)(struct xkvm_stream_state *st, uint64_t offset, struct xkvm_stream_error *err);
};

extern const struct stream_guest_ops stream_x86_hvm_ops;

struct xkvm_stream_state {
    const struct stream_guest_ops *ops;
    struct xkvm_stream_limits limits;   /* defaults filled in */
    struct xkvm_stream_info *info;
    uint32_t version;
    bool static_done, hvm_context_seen, ended;
    /* Post-copy (POSTCOPY_MISSING read): after END come PAGE_DATA and POSTCOPY_DONE. */
    bool postcopy, postcopy_done;
    uint32_t once_seen;                 /* bit per index in ops->recs */
};

void stream_state_init(struct xkvm_stream_state *st, const struct xkvm_stream_limits *limits,
                       struct xkvm_stream_info *info);
int stream_check_ihdr(struct xkvm_stream_state *st, const uint8_t *b, struct xkvm_stream_error *err);
int stream_check_dhdr(struct xkvm_stream_state *st, const uint8_t *b, uint64_t offset,
                      struct xkvm_stream_error *err);
/*
 * A record header: type known or optional, length within the type's bounds and
 * the cap, order rules. *desc is NULL for a skipped optional record. Commits nothing.
 */
int stream_check_rhdr(struct xkvm_stream_state *st, uint64_t offset, uint32_t type,
                      uint32_t length, const struct stream_rec_desc **desc,
                      struct xkvm_stream_error *err);
/* The body (and its padding bytes), then commit the record to the state. */
int stream_check_record(struct xkvm_stream_state *st, const struct stream_rec_desc *desc,
                        const struct xkvm_stream_record *rec, const uint8_t *padding,
                        struct xkvm_stream_error *err);
/*
 * The record a COMPRESSED one (outer, already checked) held, uncompressed: checked
 * and committed as if it had come plain at outer's offset; the stream's byte and
 * record counts stay the wire's.
 */
int stream_check_held(struct xkvm_stream_state *st, const struct xkvm_stream_record *outer,
                      const struct xkvm_stream_record *held, struct xkvm_stream_error *err);

#endif
