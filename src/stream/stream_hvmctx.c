/*
 * The HVM context blob of an HVM_CONTEXT record, in Xen's public/hvm/save.h
 * layout: a walker that validates it as untrusted input and a builder whose every
 * entry goes through the same checks. Built with GNU C: save.h needs it.
 */
#include <stdint.h>
#include <stdlib.h>

#include <xen/xen.h>
#include <xen/hvm/save.h>

#include "stream_internal.h"

_Static_assert(sizeof(struct hvm_save_descriptor) == XKVM_HVMCTX_DESC_SIZE, "descriptor");
_Static_assert(HVM_SAVE_LENGTH(HEADER) == XKVM_HVMCTX_HEADER_SIZE, "HEADER");
_Static_assert(HVM_SAVE_LENGTH(CPU) == XKVM_HVMCTX_CPU_SIZE, "CPU");
_Static_assert(sizeof(struct hvm_hw_cpu_xsave) == XKVM_HVMCTX_XSAVE_MIN, "CPU_XSAVE");
_Static_assert(offsetof(struct hvm_msr, msr) == 8 && sizeof(struct hvm_one_msr) == 16, "CPU_MSR");
_Static_assert(HVM_SAVE_CODE_MAX == XKVM_HVMCTX_CODE_MAX, "typecodes");
_Static_assert(HVM_FILE_MAGIC == XKVM_HVMCTX_FILE_MAGIC && HVM_FILE_VERSION == 1, "magic");

enum { PER_DOMAIN, PER_VCPU, PER_PIC };

struct hvmctx_type {
    const char *name;
    uint32_t size;          /* 0: variable (XSAVE, MSR) or END */
    uint8_t scope;
};

#define T(code, sc) [HVM_SAVE_CODE(code)] = { #code, HVM_SAVE_LENGTH(code), sc }
static const struct hvmctx_type types[XKVM_HVMCTX_CODE_MAX + 1] = {
    [0] = { "END", 0, PER_DOMAIN },
    T(HEADER, PER_DOMAIN), T(CPU, PER_VCPU), T(PIC, PER_PIC), T(IOAPIC, PER_DOMAIN),
    T(LAPIC, PER_VCPU), T(LAPIC_REGS, PER_VCPU), T(PCI_IRQ, PER_DOMAIN),
    T(ISA_IRQ, PER_DOMAIN), T(PCI_LINK, PER_DOMAIN), T(PIT, PER_DOMAIN),
    T(RTC, PER_DOMAIN), T(HPET, PER_DOMAIN), T(PMTIMER, PER_DOMAIN), T(MTRR, PER_VCPU),
    T(VIRIDIAN_DOMAIN, PER_DOMAIN),
    [CPU_XSAVE_CODE] = { "CPU_XSAVE", 0, PER_VCPU },
    T(VIRIDIAN_VCPU, PER_VCPU), T(VMCE_VCPU, PER_VCPU), T(TSC_ADJUST, PER_VCPU),
    [CPU_MSR_CODE] = { "CPU_MSR", 0, PER_VCPU },
};
#undef T

const char *xkvm_hvmctx_name(uint16_t typecode)
{
    return typecode <= XKVM_HVMCTX_CODE_MAX ? types[typecode].name : NULL;
}

uint32_t xkvm_hvmctx_fixed_size(uint16_t typecode)
{
    return typecode <= XKVM_HVMCTX_CODE_MAX ? types[typecode].size : 0;
}

static int wfail(struct xkvm_hvmctx_walker *w, struct xkvm_stream_error *err, uint64_t off,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int wfail(struct xkvm_hvmctx_walker *w, struct xkvm_stream_error *err, uint64_t off,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stream_vfail(err, off, false, 0, XKVM_STREAM_ERR_HVM_CONTEXT, fmt, ap);
    va_end(ap);
    w->failed = true;
    return -1;
}

void xkvm_hvmctx_walker_init(struct xkvm_hvmctx_walker *w, const void *blob, size_t size,
                             uint32_t max_vcpus)
{
    memset(w, 0, sizeof(*w));
    w->buf = blob;
    w->size = size;
    w->max_vcpus = max_vcpus ? max_vcpus : 128;
    if (w->max_vcpus > XKVM_STREAM_MAX_VCPUS)
        w->max_vcpus = XKVM_STREAM_MAX_VCPUS;
}

/* Check one entry (descriptor fields + data) against the rules and the walker's state. */
static int check_entry(struct xkvm_hvmctx_walker *w, const struct xkvm_hvmctx_entry *e,
                       struct xkvm_stream_error *err)
{
    const char *name = xkvm_hvmctx_name(e->typecode);
    const uint8_t *d = e->data;
    uint64_t off = e->offset;

    if (w->ended)
        return wfail(w, err, off, "entry after END");
    if (!name)
        return wfail(w, err, off, "unknown typecode %u", e->typecode);
    if (w->nr_entries == 0 && e->typecode != XKVM_HVMCTX_HEADER)
        return wfail(w, err, off, "first entry is %s, must be HEADER", name);
    if (w->nr_entries > 0 && e->typecode == XKVM_HVMCTX_HEADER)
        return wfail(w, err, off, "HEADER is not the first entry");

    const struct hvmctx_type *t = &types[e->typecode];
    uint32_t limit = t->scope == PER_VCPU ? w->max_vcpus : t->scope == PER_PIC ? 2 : 1;
    if (e->instance >= limit)
        return wfail(w, err, off, "%s instance %u, must be < %u", name, e->instance, limit);

    switch (e->typecode) {
    case XKVM_HVMCTX_END:
        if (e->length)
            return wfail(w, err, off, "END length %u, must be 0", e->length);
        break;
    case XKVM_HVMCTX_CPU_XSAVE: {
        if (e->length < XKVM_HVMCTX_XSAVE_MIN || e->length > XKVM_HVMCTX_XSAVE_MAX)
            return wfail(w, err, off, "CPU_XSAVE length %u, must be %u..%u", e->length,
                         XKVM_HVMCTX_XSAVE_MIN, XKVM_HVMCTX_XSAVE_MAX);
        uint64_t xcr0 = ld_le64(d + 8), accum = ld_le64(d + 16);
        uint64_t xstate_bv = ld_le64(d + 24 + 512);
        if (xcr0 & ~accum)
            return wfail(w, err, off, "CPU_XSAVE xcr0 0x%llx has bits outside xcr0_accum 0x%llx",
                         (unsigned long long)xcr0, (unsigned long long)accum);
        if (xstate_bv & ~accum)
            return wfail(w, err, off, "CPU_XSAVE xstate_bv 0x%llx has bits outside xcr0_accum",
                         (unsigned long long)xstate_bv);
        break;
    }
    case XKVM_HVMCTX_CPU_MSR: {
        if (e->length < 8)
            return wfail(w, err, off, "CPU_MSR length %u, must be at least 8", e->length);
        uint32_t count = ld_le32(d);
        if (count > XKVM_HVMCTX_MSR_MAX)
            return wfail(w, err, off, "CPU_MSR count %u exceeds %u", count, XKVM_HVMCTX_MSR_MAX);
        if (e->length != 8 + 16 * count)
            return wfail(w, err, off, "CPU_MSR length %u, must be 8 + 16 * count %u",
                         e->length, count);
        if (ld_le32(d + 4))
            return wfail(w, err, off, "CPU_MSR padding after count not zero");
        for (uint32_t i = 0; i < count; i++)
            if (ld_le32(d + 8 + 16 * i + 4))
                return wfail(w, err, off, "CPU_MSR msr[%u] reserved field not zero", i);
        break;
    }
    default:
        if (e->length != t->size)
            return wfail(w, err, off, "%s length %u, must be %u", name, e->length, t->size);
        if (e->typecode == XKVM_HVMCTX_HEADER) {
            if (ld_le32(d) != XKVM_HVMCTX_FILE_MAGIC)
                return wfail(w, err, off, "HEADER magic 0x%08x, must be 0x%08x", ld_le32(d),
                             XKVM_HVMCTX_FILE_MAGIC);
            if (ld_le32(d + 4) != XKVM_HVMCTX_FILE_VERSION)
                return wfail(w, err, off, "HEADER version %u, must be 1", ld_le32(d + 4));
        }
        break;
    }

    size_t bit = (size_t)e->typecode * XKVM_STREAM_MAX_VCPUS + e->instance;
    if (w->seen[bit / 64] & (1ull << (bit % 64)))
        return wfail(w, err, off, "%s instance %u appears twice", name, e->instance);
    w->seen[bit / 64] |= 1ull << (bit % 64);
    w->nr_entries++;
    if (e->typecode == XKVM_HVMCTX_END)
        w->ended = true;
    return 0;
}

int xkvm_hvmctx_next(struct xkvm_hvmctx_walker *w, struct xkvm_hvmctx_entry *e)
{
    if (w->failed)
        return -1;
    if (w->ended) {
        if (w->pos != w->size)
            return wfail(w, &w->err, w->pos, "%zu bytes after END", w->size - w->pos);
        return 0;
    }
    if (w->size - w->pos < XKVM_HVMCTX_DESC_SIZE)
        return wfail(w, &w->err, w->pos, w->pos == w->size ? "blob ends without END"
                                                           : "descriptor cut short");
    const uint8_t *p = w->buf + w->pos;
    e->offset = w->pos;
    e->typecode = ld_le16(p);
    e->instance = ld_le16(p + 2);
    e->length = ld_le32(p + 4);
    if (e->length > w->size - w->pos - XKVM_HVMCTX_DESC_SIZE)
        return wfail(w, &w->err, w->pos, "entry length %u runs past the blob's end", e->length);
    e->data = p + XKVM_HVMCTX_DESC_SIZE;
    if (check_entry(w, e, &w->err) < 0)
        return -1;
    w->pos += XKVM_HVMCTX_DESC_SIZE + e->length;
    return 1;
}

int xkvm_hvmctx_verify(const void *blob, size_t size, uint32_t max_vcpus,
                       struct xkvm_stream_error *err)
{
    struct xkvm_hvmctx_walker *w = malloc(sizeof(*w));
    struct xkvm_hvmctx_entry e;
    int rc;

    if (!w)
        return stream_fail(err, 0, false, 0, XKVM_STREAM_ERR_NOMEM, "out of memory");
    xkvm_hvmctx_walker_init(w, blob, size, max_vcpus);
    while ((rc = xkvm_hvmctx_next(w, &e)) > 0)
        ;
    if (rc < 0 && err)
        *err = w->err;
    free(w);
    return rc;
}

/* ---- Builder ------------------------------------------------------------------ */

static int bfail(struct xkvm_hvmctx_builder *b, enum xkvm_stream_errcode code, const char *what)
{
    b->failed = true;
    return stream_fail(&b->err, b->len, false, 0, code, "%s", what);
}

int xkvm_hvmctx_add(struct xkvm_hvmctx_builder *b, uint16_t typecode, uint16_t instance,
                    const void *data, uint32_t length)
{
    if (b->failed)
        return -1;
    if (length && !data)
        return bfail(b, XKVM_STREAM_ERR_ARG, "data is NULL");
    if (length > XKVM_STREAM_RECORD_MAX)
        return bfail(b, XKVM_STREAM_ERR_TOO_LARGE, "entry too large");
    size_t need = b->len + XKVM_HVMCTX_DESC_SIZE + length;
    if (need > XKVM_STREAM_RECORD_MAX)
        return bfail(b, XKVM_STREAM_ERR_TOO_LARGE, "blob exceeds the record cap");
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb)
            return bfail(b, XKVM_STREAM_ERR_NOMEM, "out of memory");
        b->buf = nb;
        b->cap = cap;
    }
    uint8_t *p = b->buf + b->len;
    st_le16(p, typecode);
    st_le16(p + 2, instance);
    st_le32(p + 4, length);
    if (length)
        memcpy(p + XKVM_HVMCTX_DESC_SIZE, data, length);
    struct xkvm_hvmctx_entry e = {
        .offset = b->len, .typecode = typecode, .instance = instance, .length = length,
        .data = p + XKVM_HVMCTX_DESC_SIZE,
    };
    if (check_entry(&b->check, &e, &b->err) < 0) {
        b->failed = true;
        return -1;
    }
    b->len = need;
    b->ended = b->check.ended;
    return 0;
}

int xkvm_hvmctx_builder_init(struct xkvm_hvmctx_builder *b, uint32_t max_vcpus,
                             uint64_t changeset, uint32_t cpuid, uint32_t gtsc_khz)
{
    uint8_t hdr[XKVM_HVMCTX_HEADER_SIZE];

    memset(b, 0, sizeof(*b));
    xkvm_hvmctx_walker_init(&b->check, NULL, 0, max_vcpus);
    st_le32(hdr, XKVM_HVMCTX_FILE_MAGIC);
    st_le32(hdr + 4, XKVM_HVMCTX_FILE_VERSION);
    st_le64(hdr + 8, changeset);
    st_le32(hdr + 16, cpuid);
    st_le32(hdr + 20, gtsc_khz);
    return xkvm_hvmctx_add(b, XKVM_HVMCTX_HEADER, 0, hdr, sizeof(hdr));
}

int xkvm_hvmctx_finish(struct xkvm_hvmctx_builder *b)
{
    return xkvm_hvmctx_add(b, XKVM_HVMCTX_END, 0, NULL, 0);
}

void *xkvm_hvmctx_take(struct xkvm_hvmctx_builder *b, size_t *len)
{
    void *p = b->buf;
    *len = b->len;
    b->buf = NULL;
    b->len = b->cap = 0;
    return p;
}

void xkvm_hvmctx_builder_release(struct xkvm_hvmctx_builder *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}
