/*
 * Domain context records: encode and decode+validate throughput, each beside a
 * memcpy of the same bytes measured in the same run. One JSON line per figure.
 *
 *   small_records: 1,000,000 records with 24-byte bodies (fields incl. flags and a
 *                  reserved word, like a per-vCPU record), 40 bytes each in the image.
 *   large_opaque:  4 records with 64 MiB opaque bodies (a blob the reader only frames).
 *   large_array:   4 records of 64 MiB arrays of 16-byte elements with a flags field
 *                  and a reserved word that are validated in every element.
 *
 * encode = xkvm_ctx_write() of every record into a buffer sink (body validated, then
 *          copied; buffer memory already faulted in), vs memcpy of the image size.
 * decode = xkvm_ctx_verify() of the image (walk, frame, validate; bodies not copied),
 *          vs memcpy of the image size. Best of BENCH_REPS runs for both.
 * The record types are defined here, in a registry extending the builtin one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xkvm/ctx.h"

#define BENCH_REPS      5
#define SMALL_RECORDS   1000000u
#define LARGE_RECORDS   4u
#define LARGE_BODY      (64ull << 20)

struct small_body {
    uint64_t gpa;
    uint32_t port;
    uint32_t flags;
    uint32_t vcpu;
    uint32_t pad;
};

struct extent {
    uint64_t gfn;
    uint32_t flags;
    uint32_t pad;
};

static const struct xkvm_ctx_field small_fields[] = {
    XKVM_CTX_F_HEX(struct small_body, gpa),
    XKVM_CTX_F_UINT(struct small_body, port),
    XKVM_CTX_F_FLAGS(struct small_body, flags, 0xff),
    XKVM_CTX_F_UINT(struct small_body, vcpu),
    XKVM_CTX_F_RESERVED(struct small_body, pad),
};

static const struct xkvm_ctx_field extent_fields[] = {
    XKVM_CTX_F_HEX(struct extent, gfn),
    XKVM_CTX_F_FLAGS(struct extent, flags, 0x7),
    XKVM_CTX_F_RESERVED(struct extent, pad),
};

enum { T_SMALL = XKVM_CTX_TEST_BASE, T_BLOB = XKVM_CTX_TEST_BASE + 1, T_ARRAY = XKVM_CTX_TEST_BASE + 2 };

static struct xkvm_ctx_type_desc types[XKVM_CTX_MAX_TYPES];
static struct xkvm_ctx_registry registry;

static void build_registry(void)
{
    const struct xkvm_ctx_registry *b = &xkvm_ctx_builtin_registry;
    size_t n = b->nr_types;
    memcpy(types, b->types, n * sizeof(*types));
    types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_SMALL, .name = "SMALL", .fixed_size = sizeof(struct small_body),
        .fields = XKVM_CTX_FIELDS(small_fields),
    };
    types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_BLOB, .name = "BLOB", .elem_size = 1,
    };
    types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_ARRAY, .name = "ARRAY", .elem_size = sizeof(struct extent),
        .elem_fields = XKVM_CTX_FIELDS(extent_fields),
    };
    registry = (struct xkvm_ctx_registry) { .types = types, .nr_types = n };
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench-ctx: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    memset(p, 0, n);        /* fault it in before timing */
    return p;
}

/* Best-of time of memcpy(dst, src, n). */
static double time_memcpy(void *dst, const void *src, size_t n)
{
    double best = 1e30;
    for (int rep = 0; rep < BENCH_REPS; rep++) {
        double t0 = now();
        memcpy(dst, src, n);
        __asm__ volatile("" : : "r"(dst) : "memory");
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

static void report(const char *bench_case, const char *op, uint64_t records, uint64_t bytes,
                   double secs, double memcpy_secs)
{
    double mbs = (double)bytes / secs / 1e6;
    double ref = (double)bytes / memcpy_secs / 1e6;
    printf("{\"bench\":\"ctx\",\"case\":\"%s\",\"op\":\"%s\",\"records\":%" PRIu64
           ",\"bytes\":%" PRIu64 ",\"seconds\":%.9f,\"mb_per_s\":%.1f,\"records_per_s\":%.0f,"
           "\"memcpy_mb_per_s\":%.1f,\"ratio_to_memcpy\":%.3f}\n",
           bench_case, op, records, bytes, secs, mbs, (double)records / secs, ref, mbs / ref);
    fflush(stdout);
}

/* The image written by `emit`, encode-timed; returns it (owned by w). */
typedef void (*emit_fn)(struct xkvm_ctx_writer *w, const void *arg);

static const uint8_t *encode(const char *bench_case, struct xkvm_ctx_writer *w,
                             emit_fn emit, const void *arg, size_t image_size,
                             uint64_t records, void *scratch)
{
    double best = 1e30;
    size_t len = 0;
    const uint8_t *img = NULL;

    for (int rep = 0; rep < BENCH_REPS + 1; rep++) {
        xkvm_ctx_writer_reset(w);
        double t0 = now();
        emit(w, arg);
        double t = now() - t0;
        if (w->failed) {
            fprintf(stderr, "bench-ctx: %s: encode failed: %s\n", bench_case, w->err.msg);
            exit(1);
        }
        img = xkvm_ctx_writer_data(w, &len);
        if (rep && t < best)            /* the first run grows the buffer */
            best = t;
    }
    if (len != image_size) {
        fprintf(stderr, "bench-ctx: %s: image is %zu bytes, expected %zu\n",
                bench_case, len, image_size);
        exit(1);
    }
    report(bench_case, "encode", records, len, best, time_memcpy(scratch, img, len));
    return img;
}

static void decode(const char *bench_case, const uint8_t *img, size_t len, uint64_t records,
                   void *scratch)
{
    struct xkvm_ctx_summary sum;
    struct xkvm_ctx_error err;
    double best = 1e30;

    for (int rep = 0; rep < BENCH_REPS; rep++) {
        double t0 = now();
        int rc = xkvm_ctx_verify(img, len, &registry, &sum, &err);
        double t = now() - t0;
        if (rc || sum.nr_records != records) {
            fprintf(stderr, "bench-ctx: %s: decode failed: %s\n", bench_case, err.msg);
            exit(1);
        }
        if (t < best)
            best = t;
    }
    report(bench_case, "decode_validate", records, len, best, time_memcpy(scratch, img, len));
}

static void emit_small(struct xkvm_ctx_writer *w, const void *arg)
{
    const struct small_body *bodies = arg;
    xkvm_ctx_write_start(w);
    for (uint32_t i = 0; i < SMALL_RECORDS; i++)
        xkvm_ctx_write(w, T_SMALL, i, &bodies[i % 1024], sizeof(*bodies));
    xkvm_ctx_write_end(w);
}

struct large_arg { uint32_t type; const void *body; };

static void emit_large(struct xkvm_ctx_writer *w, const void *arg)
{
    const struct large_arg *a = arg;
    xkvm_ctx_write_start(w);
    for (uint32_t i = 0; i < LARGE_RECORDS; i++)
        xkvm_ctx_write(w, a->type, i, a->body, LARGE_BODY);
    xkvm_ctx_write_end(w);
}

int main(void)
{
    struct xkvm_ctx_writer w;
    const size_t framing = 24 + 16;         /* START + END */

    build_registry();

    /* (a) a million small records */
    struct small_body *bodies = xmalloc(1024 * sizeof(*bodies));
    for (uint32_t i = 0; i < 1024; i++)
        bodies[i] = (struct small_body) {
            .gpa = 0xfee00000ull + i * 4096ull, .port = i, .flags = i & 0xff, .vcpu = i % 8,
        };
    size_t small_size = framing + SMALL_RECORDS * xkvm_ctx_record_size(sizeof(*bodies));
    void *scratch = xmalloc(small_size);
    xkvm_ctx_writer_init_buffer(&w);
    w.registry = &registry;
    xkvm_ctx_writer_reserve(&w, small_size);
    const uint8_t *img = encode("small_records", &w, emit_small, bodies, small_size,
                                SMALL_RECORDS + 2, scratch);
    decode("small_records", img, small_size, SMALL_RECORDS + 2, scratch);
    xkvm_ctx_writer_release(&w);
    free(scratch);
    free(bodies);

    /* (b) a few 64 MiB bodies: opaque, then validated element arrays */
    size_t large_size = framing + LARGE_RECORDS * xkvm_ctx_record_size(LARGE_BODY);
    struct extent *body = xmalloc(LARGE_BODY);
    for (size_t i = 0; i < LARGE_BODY / sizeof(*body); i++)
        body[i] = (struct extent) { .gfn = i, .flags = (uint32_t)i & 7 };
    scratch = xmalloc(large_size);
    xkvm_ctx_writer_init_buffer(&w);
    w.registry = &registry;
    xkvm_ctx_writer_reserve(&w, large_size);

    struct large_arg opaque = { .type = T_BLOB, .body = body };
    img = encode("large_opaque", &w, emit_large, &opaque, large_size, LARGE_RECORDS + 2,
                 scratch);
    decode("large_opaque", img, large_size, LARGE_RECORDS + 2, scratch);

    struct large_arg array = { .type = T_ARRAY, .body = body };
    img = encode("large_array", &w, emit_large, &array, large_size, LARGE_RECORDS + 2,
                 scratch);
    decode("large_array", img, large_size, LARGE_RECORDS + 2, scratch);

    xkvm_ctx_writer_release(&w);
    free(scratch);
    free(body);
    return 0;
}
