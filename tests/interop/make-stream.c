/*
 * Write a synthetic x86 HVM migration stream for the interop tests, or check one
 * with xkvm's own reader.
 *   make-stream [--compat xen-4.17] [--no-ext] [--optional] OUT   write to OUT
 *   make-stream --check IN                               read IN with the fd reader
 * The stream: STATIC_DATA_END, 8 pages (one zero page -> XALLOC, one XTAB pfn),
 * X86_TSC_INFO, HVM_PARAMS, HVM_CONTEXT (HEADER, CPU 0, END), and unless
 * --compat or --no-ext, xkvm's DOMAIN_CONTEXT and XENSTORE_STATE; --optional adds an unknown
 * optional record (type 0x80584b7f); then END.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xkvm/ctx.h"
#include "xkvm/stream.h"

static int check(const char *path)
{
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    int fd = open(path, O_RDONLY), rc;
    if (fd < 0) {
        perror(path);
        return 2;
    }
    struct xkvm_stream_limits lim = { .max_pfn = 1 << 20 };
    if (xkvm_stream_reader_init_fd(&r, fd, &lim) < 0)
        return 2;
    while ((rc = xkvm_stream_next(&r, &rec)) > 0)
        printf("%8llu %-16s %u bytes%s\n", (unsigned long long)rec.offset,
               xkvm_stream_rec_name(rec.type) ? xkvm_stream_rec_name(rec.type) : "(unknown)",
               rec.length, rec.skipped ? " (optional, skipped)" : "");
    if (rc < 0)
        fprintf(stderr, "make-stream: %s: %s\n", path, r.err.msg);
    else
        printf("ok: %llu records, %llu pfns (%llu with data, %llu zero), %llu bytes\n",
               (unsigned long long)r.info.nr_records, (unsigned long long)r.info.nr_pfns,
               (unsigned long long)r.info.nr_pages_data,
               (unsigned long long)r.info.nr_pages_zero, (unsigned long long)r.info.bytes);
    xkvm_stream_reader_release(&r);
    close(fd);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct xkvm_stream_writer_opts o = { .skip_zero = true, .batch = 3,
                                         .limits = { .max_pfn = 1 << 20 } };
    bool optional = false, ext = true;
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--check") && i + 1 < argc)
            return check(argv[i + 1]);
        if (!strcmp(argv[i], "--compat") && i + 1 < argc) {
            int c = xkvm_stream_compat_parse(argv[++i]);
            if (c < 0) {
                fprintf(stderr, "make-stream: unknown compat mode %s\n", argv[i]);
                return 2;
            }
            o.compat = (enum xkvm_stream_compat)c;
        } else if (!strcmp(argv[i], "--no-ext")) {
            ext = false;
        } else if (!strcmp(argv[i], "--optional")) {
            optional = true;
        } else {
            break;
        }
    }
    if (i != argc - 1) {
        fprintf(stderr, "usage: make-stream [--compat xen-4.17] [--no-ext] [--optional] OUT | --check IN\n");
        return 2;
    }
    int fd = open(argv[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(argv[i]);
        return 2;
    }

    struct xkvm_stream_writer w;
    static uint8_t page[4096] __attribute__((aligned(8)));
    if (xkvm_stream_writer_init_fd(&w, fd, &o) < 0)
        goto fail;
    xkvm_stream_write_static_data_end(&w);
    for (uint64_t pfn = 0; pfn < 8; pfn++) {
        memset(page, pfn == 5 ? 0 : (int)(0x40 + pfn), sizeof(page));
        xkvm_stream_add_page(&w, 0x100 + pfn, page);
    }
    xkvm_stream_add_pfn(&w, 0x200, XKVM_STREAM_PAGE_XTAB);
    struct xkvm_stream_tsc_info tsc = { .mode = 0, .khz = 2400000, .nsec = 1000000,
                                        .incarnation = 1 };
    xkvm_stream_write_tsc_info(&w, &tsc);
    struct xkvm_stream_hvm_param params[] = { { 1, 0 }, { 2, 0xfeff0 }, { 18, 1 } };
    xkvm_stream_write_hvm_params(&w, params, 3);

    struct xkvm_hvmctx_builder b;
    uint8_t cpu[XKVM_HVMCTX_CPU_SIZE] = { 0 };
    size_t blen;
    if (xkvm_hvmctx_builder_init(&b, 1, 0, 0x000806f0, 2400000) < 0 ||
        xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, sizeof(cpu)) < 0 ||
        xkvm_hvmctx_finish(&b) < 0) {
        fprintf(stderr, "make-stream: hvm context: %s\n", b.err.msg);
        return 1;
    }
    void *blob = xkvm_hvmctx_take(&b, &blen);
    xkvm_stream_write_hvm_context(&w, blob, (uint32_t)blen);
    free(blob);

    if (o.compat == XKVM_STREAM_COMPAT_NONE && ext) {
        struct xkvm_ctx_writer cw;
        size_t clen;
        xkvm_ctx_writer_init_buffer(&cw);
        if (xkvm_ctx_write_start(&cw) < 0 || xkvm_ctx_write_end(&cw) < 0) {
            fprintf(stderr, "make-stream: domain context: %s\n", cw.err.msg);
            return 1;
        }
        void *img = xkvm_ctx_writer_take(&cw, &clen);
        xkvm_stream_write_domain_context(&w, img, (uint32_t)clen);
        free(img);
        static const uint8_t xs[24] = { 'x', 'e', 'n', 's', 't', 'o', 'r', 'e', 0, 0, 0, 1 };
        xkvm_stream_write_xenstore_state(&w, xs, sizeof(xs));
    }
    if (optional) {
        static const uint8_t opt[12] = "optional!";
        xkvm_stream_write_record(&w, 0x80584B7Fu, opt, sizeof(opt));
    }
    if (xkvm_stream_write_end(&w) < 0)
        goto fail;
    xkvm_stream_writer_release(&w);
    close(fd);
    return 0;
fail:
    fprintf(stderr, "make-stream: %s\n", w.err.msg);
    return 1;
}
