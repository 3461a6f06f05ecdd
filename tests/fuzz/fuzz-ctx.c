/*
 * libFuzzer target for the domain context reader and dumper. Every accepted image
 * is re-encoded through the writer and must come out byte for byte the same.
 * Inputs are read twice: with the builtin registry and with one that adds array
 * types, so the element checks see hostile data too. Each accepted image also goes
 * through the image-level check (cross-record rules), which must agree with the
 * reader on everything the reader rejects.
 */
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xkvm/ctx.h"

struct extent { uint64_t gfn; uint32_t flags; uint32_t pad; };
struct port { uint32_t port; uint8_t state; uint8_t pad[3]; };
struct odd { uint8_t kind; uint8_t rsvd[2]; uint8_t flags; uint8_t data[8]; };

static const struct xkvm_ctx_field extent_fields[] = {
    XKVM_CTX_F_HEX(struct extent, gfn),
    XKVM_CTX_F_FLAGS(struct extent, flags, 0x7),
    XKVM_CTX_F_RESERVED(struct extent, pad),
};
static const char *const port_states[] = { "free", "unbound", "interdomain" };
static const struct xkvm_ctx_field port_fields[] = {
    XKVM_CTX_F_UINT(struct port, port),
    XKVM_CTX_F_ENUM(struct port, state, port_states),
    XKVM_CTX_F_RESERVED(struct port, pad),
};
static const struct xkvm_ctx_field odd_fields[] = {
    XKVM_CTX_F_UINT(struct odd, kind),
    XKVM_CTX_F_RESERVED(struct odd, rsvd),
    XKVM_CTX_F_FLAGS(struct odd, flags, 0x1),
    XKVM_CTX_F_BYTES(struct odd, data),
};

static struct xkvm_ctx_type_desc fuzz_types[XKVM_CTX_MAX_TYPES];
static struct xkvm_ctx_registry fuzz_registry;
static FILE *devnull;

static void setup(void)
{
    const struct xkvm_ctx_registry *b = &xkvm_ctx_builtin_registry;
    size_t n = b->nr_types;
    memcpy(fuzz_types, b->types, n * sizeof(*fuzz_types));
    fuzz_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = XKVM_CTX_TEST_BASE, .name = "EXTENTS", .elem_size = sizeof(struct extent),
        .elem_fields = XKVM_CTX_FIELDS(extent_fields),
    };
    fuzz_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = XKVM_CTX_TEST_BASE + 1, .name = "PORTS", .elem_size = sizeof(struct port),
        .max_length = 64 * sizeof(struct port),
        .elem_fields = XKVM_CTX_FIELDS(port_fields),
    };
    fuzz_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = XKVM_CTX_TEST_BASE + 2, .name = "ODD", .flags = XKVM_CTX_TYPE_ONCE,
        .elem_size = sizeof(struct odd), .elem_fields = XKVM_CTX_FIELDS(odd_fields),
    };
    fuzz_registry = (struct xkvm_ctx_registry) { .types = fuzz_types, .nr_types = n };
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
}

static void check_image(const uint8_t *img, size_t size, const struct xkvm_ctx_registry *reg)
{
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    struct xkvm_ctx_writer w;
    int rc;

    xkvm_ctx_reader_init(&r, img, size, reg);
    xkvm_ctx_writer_init_buffer(&w);
    w.registry = reg;
    while ((rc = xkvm_ctx_next(&r, &rec)) > 0) {
        xkvm_ctx_dump_record(devnull, XKVM_CTX_DUMP_TEXT, &rec);
        xkvm_ctx_dump_record(devnull, XKVM_CTX_DUMP_JSON, &rec);
        /* What the reader accepts, the writer must accept. */
        if (xkvm_ctx_write(&w, rec.type, rec.instance, rec.body, rec.length))
            abort();
    }
    struct xkvm_ctx_error e;
    struct xkvm_ctx_summary sum;
    int image_rc = xkvm_ctx_check_image(img, size, reg, &sum, &e);
    if (rc < 0) {
        if (r.err.offset > size || !r.err.msg[0] || r.err.code == XKVM_CTX_OK)
            abort();
        /* The image check starts with the same walk: it fails the same way. */
        if (image_rc == 0 || e.code != r.err.code || e.offset != r.err.offset)
            abort();
    } else {
        size_t len;
        const uint8_t *out = xkvm_ctx_writer_data(&w, &len);
        if (r.pos > size || len != r.pos || memcmp(out, img, len))
            abort();
        if (image_rc == 0 && (sum.used != r.pos || sum.nr_records != r.nr_records))
            abort();
        if (image_rc != 0 && (e.offset >= r.pos || !e.msg[0] || e.code == XKVM_CTX_OK))
            abort();
    }
    xkvm_ctx_writer_release(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        setup();
    /* An exact-size heap copy: aligned, and any overread hits the redzone. */
    uint8_t *img = malloc(size ? size : 1);
    if (!img)
        return 0;
    if (size)
        memcpy(img, data, size);
    check_image(img, size, &xkvm_ctx_builtin_registry);
    check_image(img, size, &fuzz_registry);
    free(img);
    return 0;
}
