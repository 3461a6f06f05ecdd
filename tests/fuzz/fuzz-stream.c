/*
 * libFuzzer target for the migration stream reader (buffer source) and the HVM
 * context walker. Every input is read as a stream and as an HVM context blob.
 * Every accepted v3 stream is written again through the writer, record by record,
 * and must come out byte for byte the same (unless a record came COMPRESSED: the
 * writer, without compress_state, writes it back plain).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xkvm/stream.h"

static void roundtrip(const uint8_t *in, size_t size)
{
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    struct xkvm_stream_limits lim = { .max_pfn = 0x10000, .max_vcpus = 8 };
    struct xkvm_stream_writer w;
    int rc;

    if (xkvm_stream_reader_init_buffer(&r, in, size, &lim) < 0)
        abort();
    if (xkvm_stream_read_headers(&r) < 0 || r.info.version != 3) {
        xkvm_stream_reader_release(&r);
        return;
    }
    struct xkvm_stream_writer_opts o = {
        .xen_major = r.info.xen_major, .xen_minor = r.info.xen_minor, .limits = lim,
    };
    if (!o.xen_major && !o.xen_minor)
        o.xen_minor = 0xffffffff;       /* 0/0 means "default"; skip compare */
    if (xkvm_stream_writer_init_buffer(&w, &o) < 0)
        abort();
    bool exact = true;      /* a COMPRESSED record comes back plain: other bytes */
    while ((rc = xkvm_stream_next(&r, &rec)) > 0) {
        if (rec.compressed_length)
            exact = false;
        if (rec.type == XKVM_STREAM_REC_PAGE_DATA) {
            struct xkvm_stream_page_iter it;
            struct xkvm_stream_page pg;
            volatile uint8_t sink = 0;
            xkvm_stream_page_iter_init(&it, &rec);
            while (xkvm_stream_page_next(&it, &pg))
                if (pg.data)
                    sink ^= ((const uint8_t *)pg.data)[4095];
            (void)sink;
        } else if (rec.type == XKVM_STREAM_REC_X86_TSC_INFO) {
            struct xkvm_stream_tsc_info t;
            xkvm_stream_decode_tsc_info(&rec, &t);
        } else if (rec.type == XKVM_STREAM_REC_HVM_PARAMS) {
            struct xkvm_stream_hvm_param p;
            uint32_t n = xkvm_stream_hvm_params_count(&rec);
            for (uint32_t i = 0; i < n; i++)
                xkvm_stream_hvm_param_get(&rec, i, &p);
        }
        if (xkvm_stream_write_record(&w, rec.type, rec.body, rec.length) < 0)
            abort();            /* the reader accepted it: the writer must too */
    }
    if (rc == 0 && exact) {
        size_t len;
        const uint8_t *out = xkvm_stream_writer_data(&w, &len);
        if (len != r.info.bytes)
            abort();
        /* Headers differ only where the writer's defaults fill in xen 0.0. */
        if (o.xen_minor != 0xffffffff && memcmp(out, in, len) != 0)
            abort();
        if (memcmp(out + 40, in + 40, len - 40) != 0)
            abort();
    }
    xkvm_stream_writer_release(&w);
    xkvm_stream_reader_release(&r);
}

/* The deferred reader's pages of its current PAGE_DATA, compared with a's (if a has it). */
static int deferred_pages(struct xkvm_stream_reader *b, const struct xkvm_stream_record *rb,
                          const struct xkvm_stream_record *ra)
{
    static uint8_t page[4096];
    struct xkvm_stream_page_iter it;
    struct xkvm_stream_page pg;
    if (ra)
        xkvm_stream_page_iter_init(&it, ra);
    for (uint32_t i = 0; i < rb->pages_pending / 4096; i++) {
        struct iovec iov = { .iov_base = page, .iov_len = sizeof(page) };
        if (xkvm_stream_read_pages(b, &iov, 1) < 0)
            return -1;
        if (!ra)
            continue;
        do
            if (!xkvm_stream_page_next(&it, &pg))
                abort();
        while (!pg.data);
        if (memcmp(page, pg.data, sizeof(page)))
            abort();
    }
    return 1;
}

/*
 * The same input with PAGE_DATA contents deferred (the one-copy receive): the same
 * records and page bytes, accepted exactly when the whole-record reader accepts it,
 * with the same error unless the whole-record reader found the stream cut short (the
 * deferred one checks a PAGE_DATA's pfns before its pages arrive, so it may refuse
 * the pfns of a record cut inside its pages).
 */
static void deferred_same(const uint8_t *in, size_t size)
{
    struct xkvm_stream_limits lim = { .max_pfn = 0x10000, .max_vcpus = 8 };
    struct xkvm_stream_reader a, b;
    struct xkvm_stream_record ra, rb;
    int rca, rcb;
    if (xkvm_stream_reader_init_buffer(&a, in, size, &lim) < 0 ||
        xkvm_stream_reader_init_buffer(&b, in, size, &lim) < 0)
        abort();
    xkvm_stream_reader_defer_pages(&b, true);
    do {
        rca = xkvm_stream_next(&a, &ra);
        rcb = xkvm_stream_next(&b, &rb);
        if (rcb > 0 && rb.pages_pending)
            rcb = deferred_pages(&b, &rb, rca > 0 ? &ra : NULL);
        if (rca > 0 && rcb > 0 && (ra.type != rb.type || ra.offset != rb.offset))
            abort();
    } while (rca > 0 && rcb > 0);
    if (rca > 0)
        abort();                /* b refused or ended where a went on */
    if (rcb > 0 && (rca == 0 || a.err.code != XKVM_STREAM_ERR_TRUNCATED ||
                    xkvm_stream_next(&b, &rb) >= 0))
        abort();                /* b went on where a was not merely cut short */
    if (rcb <= 0 && (rca == 0) != (rcb == 0))
        abort();
    if (rca < 0 && rcb < 0 && a.err.code != XKVM_STREAM_ERR_TRUNCATED && a.err.code != b.err.code)
        abort();
    xkvm_stream_reader_release(&a);
    xkvm_stream_reader_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);     /* 8-byte aligned */
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    roundtrip(buf, size);
    deferred_same(buf, size);

    struct xkvm_hvmctx_walker *w = malloc(sizeof(*w));
    struct xkvm_hvmctx_entry e;
    if (w) {
        xkvm_hvmctx_walker_init(w, buf, size, 8);
        while (xkvm_hvmctx_next(w, &e) > 0)
            ;
        free(w);
    }
    free(buf);
    return 0;
}
