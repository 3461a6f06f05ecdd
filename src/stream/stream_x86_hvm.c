/*
 * x86 HVM streams: which records are valid, in which order, and what their bodies
 * must hold. The guest-type table of the stream library (x86 PV is not supported).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <xen/xen.h>
#include <xen/hvm/params.h>

#include "stream_internal.h"
#include "xkvm/ctx.h"

#define FAIL(code, ...) stream_fail(err, rec->offset, true, rec->type, (code), __VA_ARGS__)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int check_page_data(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                           struct xkvm_stream_error *err)
{
    const uint8_t *b = rec->body;
    uint32_t count = ld_le32(b), rsvd = ld_le32(b + 4);
    uint64_t sorted[XKVM_STREAM_BATCH_MAX];
    uint32_t nr_data = 0, nr_zero = 0;

    if (rsvd)
        return FAIL(XKVM_STREAM_ERR_RESERVED, "reserved field is 0x%08x, must be zero", rsvd);
    if (count == 0)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "count is 0, must be at least 1");
    if (count > XKVM_STREAM_BATCH_MAX)
        return FAIL(XKVM_STREAM_ERR_TOO_LARGE, "count %u exceeds the batch limit of %u",
                    count, XKVM_STREAM_BATCH_MAX);
    if ((uint64_t)rec->length < 8 + 8ull * count)
        return FAIL(XKVM_STREAM_ERR_BAD_LENGTH,
                    "body_length %u too short for %u pfns (%llu bytes)", rec->length, count,
                    (unsigned long long)(8 + 8ull * count));
    for (uint32_t i = 0; i < count; i++) {
        uint64_t ent = ld_le64(b + 8 + 8ull * i);
        uint64_t pfn = ent & XKVM_STREAM_PFN_MASK;
        unsigned type = (unsigned)(ent >> XKVM_STREAM_PFN_TYPE_SHIFT);

        if (ent & XKVM_STREAM_PFN_RSVD_MASK)
            return FAIL(XKVM_STREAM_ERR_RESERVED, "pfn[%u] 0x%016llx: reserved bits 59-52 set",
                        i, (unsigned long long)ent);
        switch (type) {
        case XKVM_STREAM_PAGE_NORMAL:
            nr_data++;
            break;
        case XKVM_STREAM_PAGE_XALLOC:
            nr_zero++;
            break;
        case XKVM_STREAM_PAGE_BROKEN:
        case XKVM_STREAM_PAGE_XTAB:
            break;
        case 0x5: case 0x6: case 0x7: case 0x8:
            return FAIL(XKVM_STREAM_ERR_PAGE_TYPE, "pfn[%u] 0x%llx: reserved page type 0x%x",
                        i, (unsigned long long)pfn, type);
        default:
            return FAIL(XKVM_STREAM_ERR_PAGE_TYPE,
                        "pfn[%u] 0x%llx: page-table type 0x%x is PV only, not valid in an "
                        "HVM stream", i, (unsigned long long)pfn, type);
        }
        if (pfn >= st->limits.max_pfn)
            return FAIL(XKVM_STREAM_ERR_PFN_RANGE, "pfn[%u] 0x%llx is beyond the limit 0x%llx",
                        i, (unsigned long long)pfn, (unsigned long long)st->limits.max_pfn);
        sorted[i] = pfn;
    }
    if ((uint64_t)rec->length != 8 + 8ull * count + (uint64_t)XKVM_STREAM_PAGE_SIZE * nr_data)
        return FAIL(XKVM_STREAM_ERR_BAD_LENGTH,
                    "body_length %u, must be 8 + 8 * %u pfns + 4096 * %u pages = %llu",
                    rec->length, count, nr_data,
                    (unsigned long long)(8 + 8ull * count + 4096ull * nr_data));
    qsort(sorted, count, sizeof(sorted[0]), cmp_u64);
    for (uint32_t i = 1; i < count; i++)
        if (sorted[i] == sorted[i - 1])
            return FAIL(XKVM_STREAM_ERR_PFN_DUPLICATE, "pfn 0x%llx appears twice in the batch",
                        (unsigned long long)sorted[i]);
    if (st->info) {
        st->info->nr_pfns += count;
        st->info->nr_pages_data += nr_data;
        st->info->nr_pages_zero += nr_zero;
    }
    return 0;
}

/* POSTCOPY_MISSING: every rule of include/xkvm/postcopy.h, pfns below the limit. */
static int check_postcopy_missing(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                                  struct xkvm_stream_error *err)
{
    const char *why = "";
    if (xkvm_postcopy_missing_decode(rec->body, rec->length, st->limits.max_pfn, NULL, NULL,
                                     &why) < 0)
        return stream_fail(err, rec->offset, true, rec->type, XKVM_STREAM_ERR_BAD_VALUE,
                           "%s", why);
    return 0;
}

static int check_tsc_info(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                          struct xkvm_stream_error *err)
{
    uint32_t mode = ld_le32(rec->body), rsvd = ld_le32(rec->body + 20);
    if (rsvd)
        return FAIL(XKVM_STREAM_ERR_RESERVED, "reserved field is 0x%08x, must be zero", rsvd);
    if (mode > 2)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE,
                    "mode %u unknown (0 default, 1 always emulate, 2 never emulate)", mode);
    return 0;
}

static int check_hvm_params(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                            struct xkvm_stream_error *err)
{
    uint32_t count = ld_le32(rec->body), rsvd = ld_le32(rec->body + 4);
    uint64_t seen = 0;
    _Static_assert(HVM_NR_PARAMS <= 64, "params bitmap");

    if (rsvd)
        return FAIL(XKVM_STREAM_ERR_RESERVED, "reserved field is 0x%08x, must be zero", rsvd);
    if ((uint64_t)rec->length != 8 + 16ull * count)
        return FAIL(XKVM_STREAM_ERR_BAD_LENGTH, "body_length %u, must be 8 + 16 * count %u",
                    rec->length, count);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t idx = ld_le64(rec->body + 8 + 16ull * i);
        if (idx >= HVM_NR_PARAMS)
            return FAIL(XKVM_STREAM_ERR_BAD_VALUE,
                        "param[%u]: index %llu is not an HVM param (< %u)", i,
                        (unsigned long long)idx, HVM_NR_PARAMS);
        if (seen & (1ull << idx))
            return FAIL(XKVM_STREAM_ERR_DUPLICATE, "param[%u]: index %llu appears twice", i,
                        (unsigned long long)idx);
        seen |= 1ull << idx;
    }
    return 0;
}

static int check_hvm_context(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                             struct xkvm_stream_error *err)
{
    struct xkvm_stream_error e;
    if (xkvm_hvmctx_verify(rec->body, rec->length, st->limits.max_vcpus, &e) < 0)
        return FAIL(XKVM_STREAM_ERR_HVM_CONTEXT, "blob offset %llu: %s",
                    (unsigned long long)e.offset, e.reason);
    return 0;
}

static int check_policy(const struct xkvm_stream_record *rec, uint32_t elem,
                        struct xkvm_stream_error *err)
{
    if (rec->length % elem)
        return FAIL(XKVM_STREAM_ERR_BAD_LENGTH, "body_length %u, must be a multiple of %u",
                    rec->length, elem);
    return 0;
}

static int check_cpuid_policy(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                              struct xkvm_stream_error *err)
{
    return check_policy(rec, 24, err);     /* xen_cpuid_leaf_t */
}

static int check_msr_policy(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                            struct xkvm_stream_error *err)
{
    _Static_assert(sizeof(xen_msr_entry_t) == 16 && offsetof(xen_msr_entry_t, flags) == 4 &&
                   sizeof(xen_cpuid_leaf_t) == 24, "policy entries");
    if (check_policy(rec, 16, err) < 0)    /* xen_msr_entry_t {u32 idx; u32 flags; u64 val} */
        return -1;
    for (uint32_t off = 0; off < rec->length; off += 16)
        if (ld_le32(rec->body + off + 4))
            return FAIL(XKVM_STREAM_ERR_RESERVED, "entry %u: flags 0x%x, reserved, must be zero",
                        off / 16, ld_le32(rec->body + off + 4));
    return 0;
}

static int check_domain_context(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                                struct xkvm_stream_error *err)
{
    struct xkvm_ctx_error e;
    struct xkvm_ctx_summary sum;
    if (xkvm_ctx_verify(rec->body, rec->length, NULL, &sum, &e) < 0)
        return FAIL(XKVM_STREAM_ERR_DOMAIN_CONTEXT, "image %s", e.msg);
    if (sum.used != rec->length)
        return FAIL(XKVM_STREAM_ERR_DOMAIN_CONTEXT,
                    "%llu bytes after the image's END record",
                    (unsigned long long)(rec->length - sum.used));
    return 0;
}

/* designs/xenstore-migration: big-endian header {u64 "xenstore"; u32 version; u32 flags}. */
static int check_xenstore_state(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                                struct xkvm_stream_error *err)
{
    uint64_t ident = ld_be64(rec->body);
    uint32_t version = ld_be32(rec->body + 8), flags = ld_be32(rec->body + 12);
    if (ident != 0x78656e73746f7265ull)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "xenstore image ident 0x%016llx, must be \"xenstore\"",
                    (unsigned long long)ident);
    if (version < 1 || version > 2)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "xenstore image version %u, must be 1 or 2", version);
    if (flags & ~1u)
        return FAIL(XKVM_STREAM_ERR_RESERVED, "xenstore image flags 0x%x: reserved bits set", flags);
    return 0;
}

/* The COMPRESSED header; the bytes are checked by uncompressing them (stream_read.c). */
static int check_compressed(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                            struct xkvm_stream_error *err)
{
    uint32_t type = ld_le32(rec->body), length = ld_le32(rec->body + 4);
    uint8_t method = rec->body[8];
    if (!xkvm_stream_compressible(type))
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "holds a record of type 0x%08x: only "
                    "HVM_CONTEXT, DOMAIN_CONTEXT and XENSTORE_STATE travel compressed", type);
    if (method != XKVM_STREAM_COMPRESS_LZ4)
        return FAIL(XKVM_STREAM_ERR_UNSUPPORTED, "compression method %u, only 1 (LZ4) is read",
                    method);
    if (rec->body[9] || rec->body[10] || rec->body[11])
        return FAIL(XKVM_STREAM_ERR_RESERVED, "reserved bytes not zero");
    if (length > st->limits.record_max)
        return FAIL(XKVM_STREAM_ERR_TOO_LARGE, "holds %u bytes, more than the cap of %u",
                    length, st->limits.record_max);
    /* LZ4 never packs more than 255 bytes into one: no buffer for more is made. */
    uint64_t packed = rec->length - XKVM_STREAM_COMPRESSED_HDR;
    if (length > packed * 255 + 16)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "%llu bytes of LZ4 cannot hold %u",
                    (unsigned long long)packed, length);
    return 0;
}

/* JSON text from the toolstack: no NUL bytes (its parser takes the rest as untrusted). */
static int check_domain_config(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                               struct xkvm_stream_error *err)
{
    if (memchr(rec->body, 0, rec->length))
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "domain config contains a NUL byte");
    return 0;
}

static int check_local_memory(struct xkvm_stream_state *st, const struct xkvm_stream_record *rec,
                              struct xkvm_stream_error *err)
{
    (void)st;
    uint32_t nfds = ld_le32(rec->body), n = ld_le32(rec->body + 4);
    if (nfds == 0 || nfds > XKVM_STREAM_LOCAL_FDS_MAX)
        return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "%u memfds, must be 1..%u", nfds,
                    XKVM_STREAM_LOCAL_FDS_MAX);
    if (rec->length != 8 + 24ull * n)
        return FAIL(XKVM_STREAM_ERR_BAD_LENGTH, "%u runs need %llu bytes, not %llu", n,
                    8 + 24ull * n, (unsigned long long)rec->length);
    for (uint32_t i = 0; i < n; i++) {
        struct xkvm_stream_local_run r;
        xkvm_stream_local_run_get(rec, i, &r);
        if (!r.count || r.fd_index >= nfds || r.gfn + r.count < r.gfn ||
            r.frame + r.count < r.frame || r.frame >> 40)
            return FAIL(XKVM_STREAM_ERR_BAD_VALUE, "run %u (gfn 0x%llx, %u pages, memfd %u) "
                        "is empty, wraps or names no memfd", i, (unsigned long long)r.gfn,
                        r.count, r.fd_index);
    }
    return 0;
}

void xkvm_stream_local_run_get(const struct xkvm_stream_record *rec, uint32_t i,
                               struct xkvm_stream_local_run *run)
{
    const uint8_t *p = rec->body + 8 + 24ull * i;
    *run = (struct xkvm_stream_local_run){ .gfn = ld_le64(p), .frame = ld_le64(p + 8),
                                           .count = ld_le32(p + 16),
                                           .fd_index = ld_le32(p + 20) };
}

static const char pv_only[] = "x86 PV record, not valid in an x86 HVM stream";
static const char no_checkpoint[] = "checkpointed streams (Remus/COLO) are not supported";

static const struct stream_rec_desc hvm_recs[] = {
    { XKVM_STREAM_REC_END, 0, 0, 0, NULL, NULL },
    { XKVM_STREAM_REC_PAGE_DATA, RD_DYNAMIC | RD_BEFORE_CTX, 16, XKVM_STREAM_PAGE_DATA_MAX,
      NULL, check_page_data },
    { XKVM_STREAM_REC_X86_PV_INFO, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_X86_PV_P2M_FRAMES, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_X86_PV_VCPU_BASIC, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_X86_PV_VCPU_EXTENDED, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_X86_PV_VCPU_XSAVE, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_SHARED_INFO, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_X86_TSC_INFO, RD_ONCE | RD_DYNAMIC | RD_BEFORE_CTX, 24, 24, NULL,
      check_tsc_info },
    { XKVM_STREAM_REC_HVM_CONTEXT, RD_ONCE | RD_DYNAMIC, 16, XKVM_STREAM_RECORD_MAX, NULL,
      check_hvm_context },
    { XKVM_STREAM_REC_HVM_PARAMS, RD_ONCE | RD_DYNAMIC | RD_BEFORE_CTX, 8, 8 + 16 * HVM_NR_PARAMS,
      NULL, check_hvm_params },
    { XKVM_STREAM_REC_TOOLSTACK, 0, 0, UINT32_MAX, "TOOLSTACK is deprecated", NULL },
    { XKVM_STREAM_REC_X86_PV_VCPU_MSRS, 0, 0, UINT32_MAX, pv_only, NULL },
    { XKVM_STREAM_REC_VERIFY, 0, 0, UINT32_MAX, "VERIFY (debug re-send of memory) is not supported", NULL },
    { XKVM_STREAM_REC_CHECKPOINT, 0, 0, UINT32_MAX, no_checkpoint, NULL },
    { XKVM_STREAM_REC_CHECKPOINT_DIRTY_PFN_LIST, 0, 0, UINT32_MAX, no_checkpoint, NULL },
    { XKVM_STREAM_REC_STATIC_DATA_END, RD_ONCE | RD_V3, 0, 0, NULL, NULL },
    { XKVM_STREAM_REC_X86_CPUID_POLICY, RD_ONCE | RD_STATIC | RD_V3, 24, 24 * 4096, NULL,
      check_cpuid_policy },
    { XKVM_STREAM_REC_X86_MSR_POLICY, RD_ONCE | RD_STATIC | RD_V3, 16, 16 * 4096, NULL,
      check_msr_policy },
    { XKVM_STREAM_REC_DOMAIN_CONTEXT, RD_ONCE | RD_DYNAMIC | RD_EXT, 16, XKVM_STREAM_RECORD_MAX,
      NULL, check_domain_context },
    { XKVM_STREAM_REC_XENSTORE_STATE, RD_ONCE | RD_DYNAMIC | RD_EXT, 16, XKVM_STREAM_RECORD_MAX,
      NULL, check_xenstore_state },
    { XKVM_STREAM_REC_DOMAIN_CONFIG, RD_ONCE | RD_STATIC | RD_EXT, 2, XKVM_STREAM_CONFIG_MAX,
      NULL, check_domain_config },
    { XKVM_STREAM_REC_LOCAL_MEMORY, RD_ONCE | RD_DYNAMIC | RD_BEFORE_CTX | RD_EXT, 8,
      XKVM_STREAM_RECORD_MAX, NULL, check_local_memory },
    { XKVM_STREAM_REC_POSTCOPY_MISSING, RD_ONCE | RD_DYNAMIC | RD_EXT | RD_BEFORE_CTX, 8,
      XKVM_STREAM_RECORD_MAX, NULL, check_postcopy_missing },
    { XKVM_STREAM_REC_POSTCOPY_DONE, RD_ONCE | RD_EXT, 0, 0, NULL, NULL },
    { XKVM_STREAM_REC_COMPRESSED, RD_DYNAMIC | RD_EXT, XKVM_STREAM_COMPRESSED_HDR + 1,
      XKVM_STREAM_RECORD_MAX, NULL, check_compressed },
};
_Static_assert(sizeof(hvm_recs) / sizeof(hvm_recs[0]) <= 32, "once_seen bits");

static int hvm_complete(struct xkvm_stream_state *st, uint64_t offset, struct xkvm_stream_error *err)
{
    if (!st->static_done)
        return stream_fail(err, offset, true, XKVM_STREAM_REC_END, XKVM_STREAM_ERR_MISSING,
                           "END before STATIC_DATA_END");
    if (!st->hvm_context_seen)
        return stream_fail(err, offset, true, XKVM_STREAM_REC_END, XKVM_STREAM_ERR_MISSING,
                           "END without an HVM_CONTEXT record");
    return 0;
}

const struct stream_guest_ops stream_x86_hvm_ops = {
    .domain_type = XKVM_STREAM_DOMAIN_X86_HVM,
    .name = "x86 HVM",
    .recs = hvm_recs,
    .nr_recs = sizeof(hvm_recs) / sizeof(hvm_recs[0]),
    .complete = hvm_complete,
};

/* ---- Decoding validated records ---------------------------------------------- */

void xkvm_stream_page_iter_init(struct xkvm_stream_page_iter *it,
                                const struct xkvm_stream_record *rec)
{
    it->count = ld_le32(rec->body);
    it->pfns = rec->body + 8;
    it->data = rec->pages_pending ? NULL : rec->body + 8 + 8ull * it->count;
    it->i = 0;
}

bool xkvm_stream_page_next(struct xkvm_stream_page_iter *it, struct xkvm_stream_page *pg)
{
    if (it->i >= it->count)
        return false;
    uint64_t ent = ld_le64(it->pfns + 8ull * it->i++);
    pg->pfn = ent & XKVM_STREAM_PFN_MASK;
    pg->type = (unsigned)(ent >> XKVM_STREAM_PFN_TYPE_SHIFT);
    pg->data = NULL;
    if (pg->type == XKVM_STREAM_PAGE_NORMAL && it->data) {
        pg->data = it->data;
        it->data += XKVM_STREAM_PAGE_SIZE;
    }
    return true;
}

void xkvm_stream_decode_tsc_info(const struct xkvm_stream_record *rec,
                                 struct xkvm_stream_tsc_info *tsc)
{
    tsc->mode = ld_le32(rec->body);
    tsc->khz = ld_le32(rec->body + 4);
    tsc->nsec = ld_le64(rec->body + 8);
    tsc->incarnation = ld_le32(rec->body + 16);
}

uint32_t xkvm_stream_hvm_params_count(const struct xkvm_stream_record *rec)
{
    return ld_le32(rec->body);
}

void xkvm_stream_hvm_param_get(const struct xkvm_stream_record *rec, uint32_t i,
                               struct xkvm_stream_hvm_param *p)
{
    p->index = ld_le64(rec->body + 8 + 16ull * i);
    p->value = ld_le64(rec->body + 16 + 16ull * i);
}
