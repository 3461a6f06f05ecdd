/*
 * The live-update image (xkvm/live_update.h): what the writer produces passes the
 * checker; every rule the checker enforces refuses a mutated image with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xkvm/ctx.h"
#include "xkvm/live_update.h"
#include "xkvm/stream.h"

HARNESS_MAIN_STATE("lu-image");

struct dom_spec {
    uint16_t domid;
    struct xkvm_lu_extent ext[2];
    unsigned next;
};

static void write_domain(struct xkvm_lu_writer *w, const struct dom_spec *d)
{
    static const char cfg[] = "{\"config\":{},\"paused\":false,\"shutdown_code\":-1}";
    xkvm_lu_write(w, XKVM_LU_REC_DOMAIN, d->domid, cfg, sizeof(cfg) - 1);
    xkvm_lu_write(w, XKVM_LU_REC_P2M, d->domid, d->ext, d->next * sizeof(d->ext[0]));
    struct xkvm_lu_hvm_param p = { .index = 1, .value = 0xF3 };
    xkvm_lu_write(w, XKVM_LU_REC_HVM_PARAMS, d->domid, &p, sizeof(p));
    struct xkvm_hvmctx_builder b;
    xkvm_hvmctx_builder_init(&b, 1, 0, 0, 1000000);
    xkvm_hvmctx_finish(&b);
    size_t hlen;
    void *hvm = xkvm_hvmctx_take(&b, &hlen);
    xkvm_hvmctx_builder_release(&b);
    xkvm_lu_write(w, XKVM_LU_REC_HVM_CONTEXT, d->domid, hvm, hlen);
    free(hvm);
    struct xkvm_ctx_writer cw;
    xkvm_ctx_writer_init_buffer(&cw);
    xkvm_ctx_write_start(&cw);
    xkvm_ctx_write_end(&cw);
    size_t clen;
    const uint8_t *img = xkvm_ctx_writer_data(&cw, &clen);
    xkvm_lu_write(w, XKVM_LU_REC_DOMAIN_CONTEXT, d->domid, img, clen);
    xkvm_ctx_writer_release(&cw);
}

/* A two-domain image; `tweak` may add or change records before END. */
static void build(struct xkvm_lu_writer *w, const struct dom_spec *doms, unsigned n)
{
    xkvm_lu_writer_init(w, 0);
    struct xkvm_lu_host h = { .nr_frames = 4096, .lu_region_mfn = 3968, .lu_region_nr = 128,
                              .nr_domains = n };
    xkvm_lu_write(w, XKVM_LU_REC_HOST, 0, &h, sizeof(h));
    int32_t fd = 5;
    xkvm_lu_write(w, XKVM_LU_REC_FD, XKVM_LU_FD_MACHINE_MEMORY, &fd, sizeof(fd));
    static const char argv[] = "xkvmd\0--rundir\0/run/x";
    xkvm_lu_write(w, XKVM_LU_REC_ARGV, 0, argv, sizeof(argv));
    for (unsigned i = 0; i < n; i++)
        write_domain(w, &doms[i]);
}

static const struct dom_spec two[] = {
    { .domid = 1, .ext = { { .gfn = 0, .mfn = 0, .nr = 1024, .type = XKVM_LU_FRAME_RAM },
                           { .gfn = 0xFEFF0, .mfn = 1024, .nr = 2, .type = XKVM_LU_FRAME_SPECIAL } },
      .next = 2 },
    { .domid = 7, .ext = { { .gfn = 0, .mfn = 2048, .nr = 512, .type = XKVM_LU_FRAME_RAM } },
      .next = 1 },
};

static int check(struct xkvm_lu_writer *w, char *err, size_t errlen)
{
    struct xkvm_lu_image img;
    int rc = xkvm_lu_check(w->buf, w->len, &img, err, errlen);
    if (!rc)
        xkvm_lu_image_release(&img);
    return rc;
}

/* Offset of the last record of `type` in a finished image (0: none). */
static size_t last_record(const struct xkvm_lu_writer *w, uint32_t type)
{
    size_t at = 0;
    for (size_t off = XKVM_LU_HDR_SIZE; off + XKVM_LU_RHDR_SIZE <= w->len;) {
        uint32_t t;
        uint64_t l;
        memcpy(&t, w->buf + off, 4);
        memcpy(&l, w->buf + off + 8, 8);
        if (t == type)
            at = off;
        off += XKVM_LU_RHDR_SIZE + ((l + 7) & ~7ull);
    }
    return at;
}

static void valid_image(void)
{
    struct xkvm_lu_writer w;
    build(&w, two, 2);
    REQUIRE(xkvm_lu_finish(&w) == 0);
    struct xkvm_lu_image img;
    char err[512] = "";
    REQUIRE(xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err)) == 0);
    CHECK_EQ(img.major, XKVM_LU_MAJOR);
    CHECK_EQ(img.nr_domains, 2);
    CHECK_EQ(img.fds[XKVM_LU_FD_MACHINE_MEMORY], 5);
    CHECK_EQ(img.fds[XKVM_LU_FD_CLIENT], -1);
    CHECK_EQ(img.domains[0].nr_extents, 2);
    CHECK_EQ(img.domains[1].domid, 7);
    CHECK_EQ(img.domains[1].extents[0].mfn, 2048);
    CHECK_EQ(img.domains[0].nr_params, 1);
    CHECK(!strcmp(img.argv + 6, "--rundir"));
    xkvm_lu_image_release(&img);
    xkvm_lu_writer_release(&w);
}

/* Expect refusal with `want` in the message. */
static void refused(struct xkvm_lu_writer *w, const char *want)
{
    char err[512] = "";
    CHECK(check(w, err, sizeof(err)) < 0);
    CHECK_STR_CONTAINS(err, want);
    xkvm_lu_writer_release(w);
}

/* The two-domain image of d, finished, must be refused with `want` in the message. */
static void refused_spec(const struct dom_spec d[2], const char *want)
{
    struct xkvm_lu_writer w;
    build(&w, d, 2);
    xkvm_lu_finish(&w);
    refused(&w, want);
}

static void versions(void)
{
    struct xkvm_lu_writer w;
    uint16_t v;
    build(&w, two, 2);
    xkvm_lu_finish(&w);
    v = XKVM_LU_MAJOR + 1;
    memcpy(w.buf + 8, &v, 2);
    refused(&w, "major version");
    build(&w, two, 2);
    xkvm_lu_finish(&w);
    v = XKVM_LU_MINOR + 1;
    memcpy(w.buf + 10, &v, 2);
    refused(&w, "newer than this xkvmd");
    char why[200];
    CHECK(xkvm_lu_accepts(XKVM_LU_MAJOR, XKVM_LU_MINOR, why, sizeof(why)));
    CHECK(!xkvm_lu_accepts(XKVM_LU_MAJOR + 1, 0, why, sizeof(why)));
    if (XKVM_LU_MINOR > 0)
        CHECK(xkvm_lu_accepts(XKVM_LU_MAJOR, XKVM_LU_MINOR - 1, why, sizeof(why)));
}

static void framing(void)
{
    struct xkvm_lu_writer w;
    build(&w, two, 2);
    xkvm_lu_finish(&w);
    w.buf[0] = 'Y';
    refused(&w, "not a live-update image");

    build(&w, two, 2);
    xkvm_lu_finish(&w);
    w.len -= 8;             /* the END record's tail missing */
    refused(&w, "records");

    build(&w, two, 2);
    xkvm_lu_finish(&w);
    /* ARGV's body is 23 bytes: its padding byte must be zero. */
    size_t argv_at = last_record(&w, XKVM_LU_REC_ARGV);
    REQUIRE(argv_at);
    w.buf[argv_at + XKVM_LU_RHDR_SIZE + 23] = 1;
    refused(&w, "non-zero padding");

    /* An unknown mandatory record is refused; an optional one is skipped. */
    build(&w, two, 2);
    xkvm_lu_write(&w, 0x1234, 0, "x", 1);
    xkvm_lu_finish(&w);
    refused(&w, "unknown record type");
    build(&w, two, 2);
    xkvm_lu_write(&w, 0x1234 | XKVM_LU_OPTIONAL, 0, "x", 1);
    xkvm_lu_finish(&w);
    char err[512];
    CHECK_MSG(check(&w, err, sizeof(err)) == 0, "%s", err);
    xkvm_lu_writer_release(&w);
}

static void domains(void)
{
    struct xkvm_lu_writer w;
    struct dom_spec d[2];
    memcpy(d, two, sizeof(d));

    /* A frame in two domains. */
    d[1].ext[0].mfn = 1000;
    refused_spec(d, "in two extents");

    /* A frame in the reserved region. */
    memcpy(d, two, sizeof(d));
    d[1].ext[0].mfn = 3960;
    d[1].ext[0].nr = 16;
    refused_spec(d, "live-update region");

    /* Beyond machine memory. */
    memcpy(d, two, sizeof(d));
    d[1].ext[0].mfn = 4000;
    d[1].ext[0].nr = 1u << 20;
    refused_spec(d, "outside machine memory");

    /* The same domid twice. */
    memcpy(d, two, sizeof(d));
    d[1].domid = 1;
    d[1].ext[0].mfn = 2048;
    refused_spec(d, "appears twice");

    /* HOST promises more domains than come. */
    build(&w, two, 1);
    xkvm_lu_finish(&w);
    ((struct xkvm_lu_host *)(w.buf + XKVM_LU_HDR_SIZE + XKVM_LU_RHDR_SIZE))->nr_domains = 2;
    refused(&w, "HOST says 2 domains");

    /* A domain's records out of order: DOMAIN then HVM_PARAMS. */
    xkvm_lu_writer_init(&w, 0);
    struct xkvm_lu_host h = { .nr_frames = 4096, .nr_domains = 1 };
    xkvm_lu_write(&w, XKVM_LU_REC_HOST, 0, &h, sizeof(h));
    int32_t fd = 5;
    xkvm_lu_write(&w, XKVM_LU_REC_FD, XKVM_LU_FD_MACHINE_MEMORY, &fd, sizeof(fd));
    xkvm_lu_write(&w, XKVM_LU_REC_DOMAIN, 1, "{}", 2);
    xkvm_lu_write(&w, XKVM_LU_REC_HVM_PARAMS, 1, NULL, 0);
    xkvm_lu_finish(&w);
    refused(&w, "was due");

    /* MEM_CHECKSUM: right after its domain, with the gfns left out ascending. */
    uint64_t sum[3] = { 0x1234, 3, 5 };
    build(&w, two, 2);
    xkvm_lu_write(&w, XKVM_LU_REC_MEM_CHECKSUM, 7, sum, sizeof(sum));
    xkvm_lu_finish(&w);
    char err[512];
    struct xkvm_lu_image img;
    CHECK_MSG(xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err)) == 0, "%s", err);
    CHECK_EQ(img.domains[1].nr_checksum_skip, 2);
    CHECK_EQ(img.domains[1].checksum_skip[1], 5);
    xkvm_lu_image_release(&img);
    xkvm_lu_writer_release(&w);
    sum[1] = 9;
    build(&w, two, 2);
    xkvm_lu_write(&w, XKVM_LU_REC_MEM_CHECKSUM, 7, sum, sizeof(sum));
    xkvm_lu_finish(&w);
    refused(&w, "not ascending");
    build(&w, two, 2);
    xkvm_lu_write(&w, XKVM_LU_REC_MEM_CHECKSUM, 1, sum, sizeof(sum));
    xkvm_lu_finish(&w);
    refused(&w, "out of place");

    /* A damaged domain context image. */
    build(&w, two, 2);
    xkvm_lu_finish(&w);
    size_t last_ctx = last_record(&w, XKVM_LU_REC_DOMAIN_CONTEXT);
    REQUIRE(last_ctx);
    w.buf[last_ctx + XKVM_LU_RHDR_SIZE] ^= 0xFF;
    refused(&w, "domain context");
}

/* The two-domain image with TIMES {t0, t1}, `copies` of them before the domains. */
static void build_times(struct xkvm_lu_writer *w, uint64_t t0, uint64_t t1, unsigned copies,
                        bool after_domains)
{
    uint64_t t[2] = { t0, t1 };
    build(w, two, after_domains ? 2 : 0);
    for (unsigned i = 0; i < copies; i++)
        xkvm_lu_write(w, XKVM_LU_REC_TIMES, 0, t, sizeof(t));
    if (!after_domains) {
        struct xkvm_lu_host *h = (struct xkvm_lu_host *)(w->buf + XKVM_LU_HDR_SIZE +
                                                         XKVM_LU_RHDR_SIZE);
        h->nr_domains = 2;
        for (unsigned i = 0; i < 2; i++)
            write_domain(w, &two[i]);
    }
    xkvm_lu_finish(w);
}

/* TIMES (optional): the prebuild's start and end, read when present, checked. */
static void prebuild_times(void)
{
    struct xkvm_lu_writer w;
    struct xkvm_lu_image img;
    char err[512] = "";
    build_times(&w, 100, 250, 1, false);
    int rc = xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s", err);
    REQUIRE(rc == 0);
    CHECK_EQ(img.t_prebuild, 100);
    CHECK_EQ(img.t_prebuilt, 250);
    CHECK_EQ(img.nr_domains, 2);
    xkvm_lu_image_release(&img);
    xkvm_lu_writer_release(&w);
    /* Absent: zero, and the image is good (an older binary's). */
    build(&w, two, 2);
    xkvm_lu_finish(&w);
    REQUIRE(xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err)) == 0);
    CHECK_EQ(img.t_prebuilt, 0);
    xkvm_lu_image_release(&img);
    xkvm_lu_writer_release(&w);
    build_times(&w, 100, 250, 2, false);
    refused(&w, "TIMES record: misplaced, duplicate");
    build_times(&w, 100, 250, 1, true);
    refused(&w, "TIMES record: misplaced");
    build_times(&w, 300, 250, 1, false);
    refused(&w, "ends before it starts");
}

/* The prebuild image (XKVM_LU_HOST_PREBUILD): DOMAIN and P2M per domain, nothing else. */
static void build_prebuild(struct xkvm_lu_writer *w, bool with_context, uint32_t flags)
{
    xkvm_lu_writer_init(w, 0);
    struct xkvm_lu_host h = { .nr_frames = 4096, .lu_region_mfn = 3968, .lu_region_nr = 128,
                              .nr_domains = 2, .flags = flags };
    xkvm_lu_write(w, XKVM_LU_REC_HOST, 0, &h, sizeof(h));
    int32_t fd = 5;
    xkvm_lu_write(w, XKVM_LU_REC_FD, XKVM_LU_FD_MACHINE_MEMORY, &fd, sizeof(fd));
    static const char cfg[] = "{\"config\":{},\"paused\":false,\"shutdown_code\":-1}";
    for (unsigned i = 0; i < 2; i++) {
        xkvm_lu_write(w, XKVM_LU_REC_DOMAIN, two[i].domid, cfg, sizeof(cfg) - 1);
        xkvm_lu_write(w, XKVM_LU_REC_P2M, two[i].domid, two[i].ext,
                      two[i].next * sizeof(two[i].ext[0]));
        if (with_context) {
            struct xkvm_lu_hvm_param p = { .index = 1, .value = 0xF3 };
            xkvm_lu_write(w, XKVM_LU_REC_HVM_PARAMS, two[i].domid, &p, sizeof(p));
        }
    }
    xkvm_lu_finish(w);
}

static void prebuild_image(void)
{
    struct xkvm_lu_writer w;
    struct xkvm_lu_image img;
    char err[512] = "";
    build_prebuild(&w, false, XKVM_LU_HOST_PREBUILD);
    int rc = xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s", err);
    REQUIRE(rc == 0);
    CHECK_EQ(img.nr_domains, 2);
    CHECK_EQ(img.domains[1].extents[0].mfn, 2048);
    CHECK(img.domains[0].hvm_ctx == NULL && img.domains[0].dom_ctx == NULL);
    xkvm_lu_image_release(&img);
    xkvm_lu_writer_release(&w);
    /* Anything past P2M is a full image's: refused in a prebuild one. */
    build_prebuild(&w, true, XKVM_LU_HOST_PREBUILD);
    refused(&w, "outside a domain's records");
    /* The same short domains without the flag: records missing. */
    build_prebuild(&w, false, 0);
    refused(&w, "where");
    /* A prebuild image has no memory to verify. */
    build_prebuild(&w, false, XKVM_LU_HOST_PREBUILD | XKVM_LU_HOST_VERIFY_MEMORY);
    refused(&w, "unknown flags");
}

int main(int argc, char **argv)
{
    if (argc == 2 || argc == 3) {
        /* The fuzz corpus's seeds: test-lu-image tests/fuzz/corpus/lu-image/two.bin,
         * and with "times" (times.bin) the TIMES record too. */
        struct xkvm_lu_writer w;
        if (argc == 3)
            build_times(&w, 100, 250, 1, false);
        else
            build(&w, two, 2);
        if (argc == 2)
            xkvm_lu_finish(&w);
        FILE *f = fopen(argv[1], "wb");
        if (!f || fwrite(w.buf, 1, w.len, f) != w.len || fclose(f))
            return 1;
        xkvm_lu_writer_release(&w);
        return 0;
    }
    RUN_TEST(valid_image);
    RUN_TEST(versions);
    RUN_TEST(framing);
    RUN_TEST(domains);
    RUN_TEST(prebuild_times);
    RUN_TEST(prebuild_image);
    HARNESS_EXIT();
}
