/*
 * Domain context records: every rejection rule on a hand-built malformed image,
 * round trips through each sink, truncation at every offset, the registry tables.
 */
#include <errno.h>
#include <signal.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "xkvm/ctx.h"

HARNESS_MAIN_STATE("ctx");

/* ---- hand-built images ---------------------------------------------------- */

struct img {
    alignas(8) uint8_t buf[16384];
    size_t len;
};

/*
 * Append a record whose header claims `length` but carrying body_bytes of body
 * (so headers can lie), then padding to 8 filled with padbyte. Returns its offset.
 */
static size_t img_raw(struct img *im, uint32_t type, uint32_t instance, uint64_t length,
                      const void *body, size_t body_bytes, uint8_t padbyte)
{
    size_t off = im->len;
    struct xkvm_ctx_record_header h = { .type = type, .instance = instance, .length = length };
    memcpy(im->buf + im->len, &h, sizeof(h));
    im->len += sizeof(h);
    if (body_bytes)
        memcpy(im->buf + im->len, body, body_bytes);
    im->len += body_bytes;
    while (im->len % 8)
        im->buf[im->len++] = padbyte;
    return off;
}

static size_t img_rec(struct img *im, uint32_t type, uint32_t instance,
                      const void *body, size_t len)
{
    return img_raw(im, type, instance, len, body, len, 0);
}

static size_t img_start_ver(struct img *im, uint32_t major, uint32_t minor)
{
    struct xkvm_ctx_start s = { .major = major, .minor = minor };
    return img_rec(im, XKVM_CTX_START, 0, &s, sizeof(s));
}

static size_t img_start(struct img *im)
{
    return img_start_ver(im, XKVM_VERSION_MAJOR, XKVM_VERSION_MINOR);
}

static size_t img_end(struct img *im)
{
    return img_rec(im, XKVM_CTX_END, 0, NULL, 0);
}

static const struct xkvm_ctx_tsc_info good_tsc = {
    .mode = XKVM_CTX_TSC_MODE_NEVER_EMULATE, .khz = 2500000, .nsec = 42, .incarnation = 3,
};

static size_t img_tsc(struct img *im, const struct xkvm_ctx_tsc_info *t)
{
    return img_rec(im, XKVM_CTX_TSC_INFO, 0, t, sizeof(*t));
}

/* SHARED_INFO with `size` bytes of page; its header claims `length`. */
static size_t img_shinfo(struct img *im, uint32_t flags, uint32_t size, uint64_t length,
                         uint8_t padbyte)
{
    alignas(8) uint8_t body[8 + 4200];
    struct xkvm_ctx_shared_info *si = (void *)body;
    si->flags = flags;
    si->buffer_size = size;
    for (uint32_t i = 0; i < size; i++)
        si->buffer[i] = (uint8_t)(i * 7 + 1);
    return img_raw(im, XKVM_CTX_SHARED_INFO, 0, length, body, 8 + size, padbyte);
}

static void valid_image(struct img *im)
{
    im->len = 0;
    img_start(im);
    img_shinfo(im, XKVM_CTX_SHARED_INFO_HAS_32BIT_LAYOUT, 13, 8 + 13, 0);
    img_tsc(im, &good_tsc);
    img_end(im);
}

/* The image is rejected with this code, at this offset, naming this type. */
#define EXPECT_REJECT(buf, len, code_, offset_, type_, reason) do {                  \
        struct xkvm_ctx_error _e;                                                    \
        memset(&_e, 0, sizeof(_e));                                                  \
        int _rc = xkvm_ctx_verify((buf), (len), NULL, NULL, &_e);                    \
        CHECK_EQ(_rc, -1);                                                           \
        CHECK_MSG(_e.code == (code_), "code %s, expected %s (%s)",                   \
                  xkvm_ctx_errcode_name(_e.code), xkvm_ctx_errcode_name(code_), _e.msg); \
        CHECK_EQ(_e.offset, (offset_));                                              \
        if ((long long)(type_) >= 0) {                                               \
            CHECK(_e.type_known);                                                    \
            CHECK_EQ(_e.type, (type_));                                              \
            char _t[32];                                                             \
            snprintf(_t, sizeof(_t), "type %lld", (long long)(type_));               \
            CHECK_STR_CONTAINS(_e.msg, _t);                                          \
        } else {                                                                     \
            CHECK(!_e.type_known);                                                   \
        }                                                                            \
        char _o[32];                                                                 \
        snprintf(_o, sizeof(_o), "offset %llu ", (unsigned long long)(offset_));     \
        CHECK_STR_CONTAINS(_e.msg, _o);                                              \
        CHECK_STR_CONTAINS(_e.msg, reason);                                          \
    } while (0)

#define NO_TYPE (-1)

/* ---- acceptance and round trips ------------------------------------------- */

static void test_valid_image_accepted(void)
{
    struct img im;
    struct xkvm_ctx_summary sum;
    struct xkvm_ctx_error err;

    valid_image(&im);
    REQUIRE(xkvm_ctx_verify(im.buf, im.len, NULL, &sum, &err) == 0);
    CHECK_EQ(sum.nr_records, 4);
    CHECK_EQ(sum.used, im.len);
    CHECK_EQ(sum.major, XKVM_VERSION_MAJOR);
    CHECK_EQ(sum.minor, XKVM_VERSION_MINOR);
}

static void test_reader_walks_without_copying(void)
{
    struct img im;
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    uint32_t types[8];
    int n = 0, rc;

    valid_image(&im);
    xkvm_ctx_reader_init(&r, im.buf, im.len, NULL);
    while ((rc = xkvm_ctx_next(&r, &rec)) > 0) {
        REQUIRE(n < 8);
        types[n++] = rec.type;
        CHECK((const uint8_t *)rec.body == im.buf + rec.offset + 16);
        CHECK_EQ((uintptr_t)rec.body % 8, 0);
        if (rec.type == XKVM_CTX_TSC_INFO) {
            const struct xkvm_ctx_tsc_info *t = rec.body;
            CHECK_EQ(t->khz, 2500000);
            CHECK_EQ(t->mode, XKVM_CTX_TSC_MODE_NEVER_EMULATE);
        }
        if (rec.type == XKVM_CTX_SHARED_INFO) {
            const struct xkvm_ctx_shared_info *si = rec.body;
            CHECK_EQ(si->buffer_size, 13);
            CHECK_EQ(si->buffer[12], (uint8_t)(12 * 7 + 1));
        }
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(n, 4);
    CHECK_EQ(types[0], XKVM_CTX_START);
    CHECK_EQ(types[3], XKVM_CTX_END);
    CHECK_EQ(xkvm_ctx_next(&r, &rec), 0);      /* stays finished */
    CHECK_EQ(r.pos, im.len);
}

/* Bytes after END are not consumed, whatever they are. */
static void test_nothing_after_end_consumed(void)
{
    struct img im;
    struct xkvm_ctx_summary sum;

    valid_image(&im);
    size_t used = im.len;
    memset(im.buf + im.len, 0xee, 13);
    im.len += 13;
    REQUIRE(xkvm_ctx_verify(im.buf, im.len, NULL, &sum, NULL) == 0);
    CHECK_EQ(sum.used, used);
    CHECK_EQ(sum.nr_records, 4);
}

static void write_sample(struct xkvm_ctx_writer *w)
{
    uint8_t page[4096];
    for (size_t i = 0; i < sizeof(page); i++)
        page[i] = (uint8_t)(i ^ (i >> 8));
    CHECK_EQ(xkvm_ctx_write_start(w), 0);
    CHECK_EQ(xkvm_ctx_write_shared_info(w, 0, page, 4093), 0);
    CHECK_EQ(xkvm_ctx_write(w, XKVM_CTX_TSC_INFO, 0, &good_tsc, sizeof(good_tsc)), 0);
    CHECK_EQ(xkvm_ctx_write_end(w), 0);
}

static void test_roundtrip_buffer(void)
{
    struct xkvm_ctx_writer w;
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    size_t len;

    xkvm_ctx_writer_init_buffer(&w);
    write_sample(&w);
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    CHECK_EQ(len, 24 + (16 + 4104) + 40 + 16);
    CHECK_EQ(w.offset, len);
    CHECK_EQ(w.nr_records, 4);

    xkvm_ctx_reader_init(&r, img, len, NULL);
    REQUIRE(xkvm_ctx_next(&r, &rec) == 1);
    CHECK_EQ(rec.type, XKVM_CTX_START);
    REQUIRE(xkvm_ctx_next(&r, &rec) == 1);
    REQUIRE(rec.type == XKVM_CTX_SHARED_INFO);
    const struct xkvm_ctx_shared_info *si = rec.body;
    CHECK_EQ(si->buffer_size, 4093);
    CHECK_EQ(rec.length, 8 + 4093);
    for (uint32_t i = 0; i < 4093; i++)
        if (si->buffer[i] != (uint8_t)(i ^ (i >> 8))) {
            CHECK_MSG(0, "buffer byte %u differs", i);
            break;
        }
    REQUIRE(xkvm_ctx_next(&r, &rec) == 1);
    REQUIRE(rec.type == XKVM_CTX_TSC_INFO);
    CHECK(memcmp(rec.body, &good_tsc, sizeof(good_tsc)) == 0);
    REQUIRE(xkvm_ctx_next(&r, &rec) == 1);
    CHECK_EQ(rec.type, XKVM_CTX_END);
    CHECK_EQ(xkvm_ctx_next(&r, &rec), 0);
    CHECK_EQ(r.pos, len);
    CHECK_EQ(r.major, XKVM_VERSION_MAJOR);
    CHECK_EQ(r.minor, XKVM_VERSION_MINOR);

    /* Re-encoding what was read gives the same bytes. */
    struct xkvm_ctx_writer w2;
    xkvm_ctx_writer_init_buffer(&w2);
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0)
        CHECK_EQ(xkvm_ctx_write(&w2, rec.type, rec.instance, rec.body, rec.length), 0);
    size_t len2;
    const uint8_t *img2 = xkvm_ctx_writer_data(&w2, &len2);
    CHECK_EQ(len2, len);
    CHECK(memcmp(img, img2, len) == 0);

    size_t taken_len;
    void *taken = xkvm_ctx_writer_take(&w2, &taken_len);
    CHECK_EQ(taken_len, len);
    free(taken);
    xkvm_ctx_writer_release(&w2);
    xkvm_ctx_writer_release(&w);
}

static void test_roundtrip_fd(void)
{
    struct xkvm_ctx_writer wb, wf;
    size_t len;

    int fd = memfd_create("ctx-test", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    xkvm_ctx_writer_init_buffer(&wb);
    write_sample(&wb);
    xkvm_ctx_writer_init_fd(&wf, fd);
    write_sample(&wf);
    const uint8_t *img = xkvm_ctx_writer_data(&wb, &len);
    CHECK_EQ(wf.offset, len);

    uint8_t *back = malloc(len + 1);
    REQUIRE(back);
    CHECK_EQ(pread(fd, back, len + 1, 0), (ssize_t)len);
    CHECK(memcmp(back, img, len) == 0);
    CHECK_EQ(xkvm_ctx_verify(back, len, NULL, NULL, NULL), 0);
    free(back);
    close(fd);
    xkvm_ctx_writer_release(&wb);
    xkvm_ctx_writer_release(&wf);
}

static void test_fd_sink_error_reported(void)
{
    struct xkvm_ctx_writer w;
    int pipefd[2];

    REQUIRE(pipe(pipefd) == 0);
    close(pipefd[0]);
    xkvm_ctx_writer_init_fd(&w, pipefd[1]);
    signal(SIGPIPE, SIG_IGN);
    CHECK_EQ(xkvm_ctx_write_start(&w), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_IO);
    CHECK_EQ(w.err.sys_errno, EPIPE);
    CHECK_EQ(xkvm_ctx_write_end(&w), -1);      /* sticky */
    close(pipefd[1]);
}

struct collect { uint8_t buf[8192]; size_t len; int calls; };

static int collect_sink(void *opaque, const struct iovec *iov, int iovcnt)
{
    struct collect *c = opaque;
    for (int i = 0; i < iovcnt; i++) {
        if (c->len + iov[i].iov_len > sizeof(c->buf))
            return -ENOSPC;
        if (iov[i].iov_len)
            memcpy(c->buf + c->len, iov[i].iov_base, iov[i].iov_len);
        c->len += iov[i].iov_len;
    }
    c->calls++;
    return 0;
}

static void test_roundtrip_custom_sink(void)
{
    struct xkvm_ctx_writer w;
    static struct collect c;

    xkvm_ctx_writer_init_sink(&w, collect_sink, &c);
    write_sample(&w);
    CHECK_EQ(c.calls, 4);
    CHECK_EQ(c.len, w.offset);
    CHECK_EQ(xkvm_ctx_verify(c.buf, c.len, NULL, NULL, NULL), 0);
}

/* ---- framing rejections --------------------------------------------------- */

static void test_reject_unknown_type(void)
{
    struct img im = { .len = 0 };
    uint64_t junk = 0;
    img_start(&im);
    size_t off = img_rec(&im, 77, 0, &junk, sizeof(junk));
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_UNKNOWN_TYPE, off, 77, "unknown record type");

    im.len = 0;
    img_start(&im);
    off = img_rec(&im, XKVM_CTX_LIVE_UPDATE_BASE, 0, NULL, 0);
    img_end(&im);
    /* Reserved numbers are not types yet. */
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_UNKNOWN_TYPE, off, XKVM_CTX_LIVE_UPDATE_BASE,
                  "unknown");
}

static void test_reject_nonzero_padding(void)
{
    /* A 13-byte page: 21-byte body, 3 bytes of padding. */
    for (int which = 0; which < 3; which++) {
        struct img im = { .len = 0 };
        img_start(&im);
        size_t off = img_shinfo(&im, 0, 13, 21, 0);
        im.buf[off + 16 + 21 + which] = 0x5a;
        img_end(&im);
        char why[64];
        snprintf(why, sizeof(why), "padding byte %d (image offset %zu) is 0x5a",
                 which, off + 16 + 21 + which);
        EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_PADDING, off, XKVM_CTX_SHARED_INFO, why);
    }
    /* Padding is checked even on types the reader does not know. */
    struct img im = { .len = 0 };
    uint8_t b = 1;
    img_start(&im);
    size_t off = img_raw(&im, 999, 0, 1, &b, 1, 0xff);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_PADDING, off, 999, "padding byte 0");
}

static void test_reject_length_past_end(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_raw(&im, XKVM_CTX_TSC_INFO, 0, 1000, &good_tsc, sizeof(good_tsc), 0);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_LENGTH_PAST_END, off, XKVM_CTX_TSC_INFO,
                  "length 1000 runs past the end");

    /* Body fits, its padding does not. */
    im.len = 0;
    img_start(&im);
    off = img_shinfo(&im, 0, 13, 21, 0);
    EXPECT_REJECT(im.buf, im.len - 1, XKVM_CTX_ERR_LENGTH_PAST_END, off,
                  XKVM_CTX_SHARED_INFO, "padding");
}

static void test_reject_length_overflow(void)
{
    const uint64_t lengths[] = { UINT64_MAX, UINT64_MAX - 6, UINT64_MAX - 7, 1ull << 63 };
    for (size_t i = 0; i < 4; i++) {
        struct img im = { .len = 0 };
        img_start(&im);
        size_t off = img_raw(&im, XKVM_CTX_TSC_INFO, 0, lengths[i], &good_tsc,
                             sizeof(good_tsc), 0);
        img_end(&im);
        struct xkvm_ctx_error e;
        CHECK_EQ(xkvm_ctx_verify(im.buf, im.len, NULL, NULL, &e), -1);
        CHECK(e.code == XKVM_CTX_ERR_LENGTH_OVERFLOW || e.code == XKVM_CTX_ERR_LENGTH_PAST_END);
        CHECK_EQ(e.offset, off);
        CHECK_EQ(e.type, XKVM_CTX_TSC_INFO);
    }
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_raw(&im, XKVM_CTX_TSC_INFO, 0, UINT64_MAX - 3, NULL, 0, 0);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_LENGTH_OVERFLOW, off, XKVM_CTX_TSC_INFO,
                  "overflows");
}

static void test_reject_truncated_header(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_end(&im);
    EXPECT_REJECT(im.buf, off + 5, XKVM_CTX_ERR_TRUNCATED, off, XKVM_CTX_END,
                  "header truncated (5 of 16 bytes)");
    EXPECT_REJECT(im.buf, off + 3, XKVM_CTX_ERR_TRUNCATED, off, NO_TYPE,
                  "header truncated (3 of 16 bytes)");
}

static void test_reject_misaligned_buffer(void)
{
    struct img im;
    valid_image(&im);
    memmove(im.buf + 4, im.buf, im.len);
    EXPECT_REJECT(im.buf + 4, im.len, XKVM_CTX_ERR_MISALIGNED, 0, NO_TYPE, "aligned");
}

/* ---- ordering rejections -------------------------------------------------- */

static void test_reject_empty_image(void)
{
    struct img im = { .len = 0 };
    EXPECT_REJECT(im.buf, 0, XKVM_CTX_ERR_MISSING_START, 0, NO_TYPE, "no START");
}

static void test_reject_missing_start(void)
{
    struct img im = { .len = 0 };
    img_tsc(&im, &good_tsc);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_MISSING_START, 0, XKVM_CTX_TSC_INFO,
                  "does not begin with a START");

    im.len = 0;
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_MISSING_START, 0, XKVM_CTX_END, "START");
}

static void test_reject_start_not_first(void)
{
    struct img im = { .len = 0 };
    img_tsc(&im, &good_tsc);
    size_t off = img_start(&im);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_START_NOT_FIRST, off, XKVM_CTX_START,
                  "not the first record");
}

static void test_reject_second_start(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    img_tsc(&im, &good_tsc);
    size_t off = img_start(&im);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_DUPLICATE_START, off, XKVM_CTX_START,
                  "second START");
}

static void test_reject_missing_end(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    img_tsc(&im, &good_tsc);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_MISSING_END, im.len, NO_TYPE,
                  "after 2 records without an END");
}

static void test_reject_duplicate_once_type(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    img_tsc(&im, &good_tsc);
    size_t off = img_tsc(&im, &good_tsc);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_DUPLICATE, off, XKVM_CTX_TSC_INFO,
                  "second TSC_INFO");
}

static void test_reject_nonzero_instance(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_rec(&im, XKVM_CTX_TSC_INFO, 1, &good_tsc, sizeof(good_tsc));
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_INSTANCE, off, XKVM_CTX_TSC_INFO,
                  "instance 1, must be 0");

    struct xkvm_ctx_start s = { XKVM_VERSION_MAJOR, XKVM_VERSION_MINOR };
    im.len = 0;
    img_rec(&im, XKVM_CTX_START, 7, &s, sizeof(s));
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_INSTANCE, 0, XKVM_CTX_START, "instance 7");

    im.len = 0;
    img_start(&im);
    off = img_rec(&im, XKVM_CTX_END, 2, NULL, 0);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_INSTANCE, off, XKVM_CTX_END, "instance 2");
}

/* ---- version -------------------------------------------------------------- */

static void test_version_rules(void)
{
    struct img im = { .len = 0 };
    img_start_ver(&im, XKVM_VERSION_MAJOR + 1, 0);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_VERSION, 0, XKVM_CTX_START,
                  "needs major version");

    /* Any minor of our major is accepted, older or newer. */
    struct xkvm_ctx_summary sum;
    const uint32_t minors[] = { 0, XKVM_VERSION_MINOR + 1, UINT32_MAX };
    for (int i = 0; i < 3; i++) {
        im.len = 0;
        img_start_ver(&im, XKVM_VERSION_MAJOR, minors[i]);
        img_end(&im);
        CHECK_EQ(xkvm_ctx_verify(im.buf, im.len, NULL, &sum, NULL), 0);
        CHECK_EQ(sum.minor, minors[i]);
    }

    /* An older major is refused too (reader pretending to be a later major). */
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    im.len = 0;
    img_start(&im);
    img_end(&im);
    xkvm_ctx_reader_init(&r, im.buf, im.len, NULL);
    r.our_major = XKVM_VERSION_MAJOR + 1;
    CHECK_EQ(xkvm_ctx_next(&r, &rec), -1);
    CHECK_EQ(r.err.code, XKVM_CTX_ERR_VERSION);
    CHECK_EQ(xkvm_ctx_next(&r, &rec), -1);      /* sticky */
}

/* ---- body layout rejections ----------------------------------------------- */

static void test_reject_bad_start_body(void)
{
    struct img im = { .len = 0 };
    uint32_t major = XKVM_VERSION_MAJOR;
    img_rec(&im, XKVM_CTX_START, 0, &major, sizeof(major));
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, 0, XKVM_CTX_START,
                  "length 4 does not fit layout (exactly 8 bytes)");
}

static void test_reject_bad_end_body(void)
{
    struct img im = { .len = 0 };
    uint64_t zero = 0;
    img_start(&im);
    size_t off = img_rec(&im, XKVM_CTX_END, 0, &zero, sizeof(zero));
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, off, XKVM_CTX_END,
                  "length 8 does not fit");
}

static void test_reject_bad_tsc_info(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_rec(&im, XKVM_CTX_TSC_INFO, 0, &good_tsc, 16);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, off, XKVM_CTX_TSC_INFO,
                  "length 16 does not fit layout (exactly 24 bytes)");

    struct xkvm_ctx_tsc_info t = good_tsc;
    t.pad = 0x100;
    im.len = 0;
    img_start(&im);
    off = img_tsc(&im, &t);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_RESERVED, off, XKVM_CTX_TSC_INFO,
                  "reserved field 'pad' is not zero (byte 1 is 0x01)");

    t = good_tsc;
    t.mode = 3;
    im.len = 0;
    img_start(&im);
    off = img_tsc(&im, &t);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_VALUE, off, XKVM_CTX_TSC_INFO,
                  "field 'mode' has unknown value 3");
}

static void test_reject_bad_shared_info(void)
{
    struct img im = { .len = 0 };
    img_start(&im);
    size_t off = img_shinfo(&im, 0x2, 16, 24, 0);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_RESERVED, off, XKVM_CTX_SHARED_INFO,
                  "field 'flags' has unknown bits 0x2");

    /* buffer_size disagrees with length */
    im.len = 0;
    img_start(&im);
    struct { uint32_t flags, size; uint8_t b[8]; } si = { 0, 9, { 0 } };
    off = img_rec(&im, XKVM_CTX_SHARED_INFO, 0, &si, sizeof(si));
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, off, XKVM_CTX_SHARED_INFO,
                  "buffer_size 9 does not match length 16");

    /* Bigger than a page */
    im.len = 0;
    img_start(&im);
    off = img_shinfo(&im, 0, 4097, 8 + 4097, 0);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, off, XKVM_CTX_SHARED_INFO,
                  "length 4105 exceeds the maximum 4104");

    /* Shorter than the fixed part */
    im.len = 0;
    img_start(&im);
    off = img_rec(&im, XKVM_CTX_SHARED_INFO, 0, &si, 4);
    img_end(&im);
    EXPECT_REJECT(im.buf, im.len, XKVM_CTX_ERR_BAD_LENGTH, off, XKVM_CTX_SHARED_INFO,
                  "length 4 does not fit layout (8 + n * 1 bytes)");

    /* An empty page and a full one are both fine. */
    uint32_t sizes[] = { 0, 4096 };
    for (int i = 0; i < 2; i++) {
        im.len = 0;
        img_start(&im);
        img_shinfo(&im, 0, sizes[i], 8 + sizes[i], 0);
        img_end(&im);
        CHECK_EQ(xkvm_ctx_verify(im.buf, im.len, NULL, NULL, NULL), 0);
    }
}

/* ---- never out of bounds -------------------------------------------------- */

/* Each prefix copied into an exact-size heap block, so ASan sees any overread. */
static void check_every_truncation(const uint8_t *img, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        REQUIRE(copy);
        memcpy(copy, img, n);
        struct xkvm_ctx_error e;
        int rc = xkvm_ctx_verify(copy, n, NULL, NULL, &e);
        CHECK_MSG(rc == -1, "prefix of %zu bytes accepted", n);
        if (rc == -1)
            CHECK_MSG(e.offset <= n, "error offset %llu beyond %zu",
                      (unsigned long long)e.offset, n);
        free(copy);
    }
}

static void test_truncation_at_every_offset(void)
{
    struct img im;
    valid_image(&im);
    check_every_truncation(im.buf, im.len);

    struct xkvm_ctx_writer w;
    size_t len;
    xkvm_ctx_writer_init_buffer(&w);
    write_sample(&w);
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    check_every_truncation(img, len);
    xkvm_ctx_writer_release(&w);
}

/* Flip every bit of a valid image: the reader may accept or reject, never misbehave. */
static void test_bit_flips(void)
{
    struct img im;
    valid_image(&im);
    uint8_t *copy = malloc(im.len);
    REQUIRE(copy);
    for (size_t bit = 0; bit < im.len * 8; bit++) {
        memcpy(copy, im.buf, im.len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct xkvm_ctx_summary sum;
        struct xkvm_ctx_error e;
        if (xkvm_ctx_verify(copy, im.len, NULL, &sum, &e) == 0)
            CHECK(sum.used <= im.len);
        else
            CHECK(e.offset <= im.len && e.msg[0]);
    }
    free(copy);
}

/* ---- writer rules --------------------------------------------------------- */

static void test_writer_rules(void)
{
    struct xkvm_ctx_writer w;

    xkvm_ctx_writer_init_buffer(&w);
    CHECK_EQ(xkvm_ctx_write(&w, XKVM_CTX_TSC_INFO, 0, &good_tsc, sizeof(good_tsc)), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_MISSING_START);
    CHECK_EQ(xkvm_ctx_write_start(&w), -1);     /* sticky */

    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write(&w, 77, 0, NULL, 0), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_UNKNOWN_TYPE);
    CHECK_STR_CONTAINS(w.err.msg, "offset 24 ");

    struct xkvm_ctx_tsc_info t = good_tsc;
    t.pad = 1;
    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write(&w, XKVM_CTX_TSC_INFO, 0, &t, sizeof(t)), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_RESERVED);

    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write_start(&w), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_DUPLICATE_START);

    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write_end(&w), 0);
    CHECK_EQ(xkvm_ctx_write(&w, XKVM_CTX_TSC_INFO, 0, &good_tsc, sizeof(good_tsc)), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_AFTER_END);

    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write(&w, XKVM_CTX_TSC_INFO, 0, (const uint8_t *)&good_tsc + 4, 16), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_MISALIGNED);

    uint8_t page[8];
    xkvm_ctx_writer_reset(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write_shared_info(&w, 0, page, 4097), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_BAD_LENGTH);

    /* A failed image is never half-valid: reset gives a clean start. */
    xkvm_ctx_writer_reset(&w);
    write_sample(&w);
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    CHECK_EQ(xkvm_ctx_verify(img, len, NULL, NULL, NULL), 0);
    xkvm_ctx_writer_release(&w);
}

/* ---- registry ------------------------------------------------------------- */

/* Fields are aligned, sorted, non-overlapping and cover every byte of their part. */
static void check_fields_tile(const char *type, const struct xkvm_ctx_field *f, uint32_t n,
                              uint64_t size)
{
    uint64_t next = 0;
    for (uint32_t i = 0; i < n; i++) {
        CHECK_MSG(f[i].offset == next, "%s.%s at %u, expected %llu", type, f[i].name,
                  f[i].offset, (unsigned long long)next);
        if (f[i].kind != XKVM_CTX_FIELD_RESERVED && f[i].kind != XKVM_CTX_FIELD_BYTES) {
            CHECK_MSG(f[i].size == 1 || f[i].size == 2 || f[i].size == 4 || f[i].size == 8,
                      "%s.%s size %u", type, f[i].name, f[i].size);
            CHECK_MSG(f[i].offset % f[i].size == 0, "%s.%s misaligned", type, f[i].name);
        }
        if (f[i].kind == XKVM_CTX_FIELD_ENUM)
            CHECK_MSG(f[i].names && f[i].nr_names, "%s.%s has no names", type, f[i].name);
        next = f[i].offset + f[i].size;
    }
    CHECK_MSG(next == size, "%s fields cover %llu of %llu bytes", type,
              (unsigned long long)next, (unsigned long long)size);
}

static void test_registry_tables(void)
{
    const struct xkvm_ctx_registry *reg = &xkvm_ctx_builtin_registry;
    REQUIRE(reg->nr_types >= 4);
    for (size_t i = 0; i < reg->nr_types; i++) {
        const struct xkvm_ctx_type_desc *d = &reg->types[i];
        CHECK(d->name && d->name[0]);
        if (i)
            CHECK(d->type > reg->types[i - 1].type);
        CHECK(xkvm_ctx_lookup(reg, d->type) == d);
        check_fields_tile(d->name, d->fields, d->nr_fields, d->fixed_size);
        if (d->nr_elem_fields)
            check_fields_tile(d->name, d->elem_fields, d->nr_elem_fields, d->elem_size);
        if (d->max_length)
            CHECK(d->elem_size && d->max_length >= d->fixed_size);
    }
    CHECK(xkvm_ctx_lookup(reg, 4) == NULL);
    CHECK(xkvm_ctx_lookup(reg, UINT32_MAX) == NULL);
    CHECK_EQ(xkvm_ctx_record_size(0), 16);
    CHECK_EQ(xkvm_ctx_record_size(1), 24);
    CHECK_EQ(xkvm_ctx_record_size(8), 24);
}

/*
 * A registry with array types like later records will have, to exercise the
 * element checks: word-sized elements (masked fast path), odd-sized elements
 * (byte path) and elements with an enum (field-by-field path).
 */
struct extent { uint64_t gfn; uint32_t flags; uint32_t pad; };
struct odd { uint8_t kind; uint8_t rsvd[2]; uint8_t flags; uint8_t data[8]; };
struct port { uint32_t port; uint8_t state; uint8_t pad[3]; };

static const struct xkvm_ctx_field extent_hdr[] = {
    { .name = "count", .offset = 0, .size = 4, .kind = XKVM_CTX_FIELD_UINT },
    { .name = "rsvd", .offset = 4, .size = 4, .kind = XKVM_CTX_FIELD_RESERVED },
};
static const struct xkvm_ctx_field extent_fields[] = {
    XKVM_CTX_F_HEX(struct extent, gfn),
    XKVM_CTX_F_FLAGS(struct extent, flags, 0x7),
    XKVM_CTX_F_RESERVED(struct extent, pad),
};
static const struct xkvm_ctx_field odd_fields[] = {
    XKVM_CTX_F_UINT(struct odd, kind),
    XKVM_CTX_F_RESERVED(struct odd, rsvd),
    XKVM_CTX_F_FLAGS(struct odd, flags, 0x1),
    XKVM_CTX_F_BYTES(struct odd, data),
};
static const char *const port_states[] = { "free", "unbound", "interdomain" };
static const struct xkvm_ctx_field port_fields[] = {
    XKVM_CTX_F_UINT(struct port, port),
    XKVM_CTX_F_ENUM(struct port, state, port_states),
    XKVM_CTX_F_RESERVED(struct port, pad),
};

enum { T_EXTENTS = XKVM_CTX_TEST_BASE, T_ODD = XKVM_CTX_TEST_BASE + 1,
       T_PORTS = XKVM_CTX_TEST_BASE + 2 };

static struct xkvm_ctx_type_desc test_types[XKVM_CTX_MAX_TYPES];
static struct xkvm_ctx_registry test_registry;

static void build_test_registry(void)
{
    const struct xkvm_ctx_registry *b = &xkvm_ctx_builtin_registry;
    memcpy(test_types, b->types, b->nr_types * sizeof(*test_types));
    size_t n = b->nr_types;
    test_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_EXTENTS, .name = "EXTENTS", .fixed_size = 8,
        .elem_size = sizeof(struct extent),
        .fields = XKVM_CTX_FIELDS(extent_hdr),
        .elem_fields = XKVM_CTX_FIELDS(extent_fields),
    };
    test_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_ODD, .name = "ODD", .elem_size = sizeof(struct odd),
        .elem_fields = XKVM_CTX_FIELDS(odd_fields),
    };
    test_types[n++] = (struct xkvm_ctx_type_desc) {
        .type = T_PORTS, .name = "PORTS", .elem_size = sizeof(struct port),
        .elem_fields = XKVM_CTX_FIELDS(port_fields),
    };
    test_registry = (struct xkvm_ctx_registry) { .types = test_types, .nr_types = n };
}

/* Write START, one record, END with the test registry; return the writer's verdict. */
static int write_one(struct xkvm_ctx_writer *w, uint32_t type, const void *body, size_t len)
{
    xkvm_ctx_writer_init_buffer(w);
    w->registry = &test_registry;
    xkvm_ctx_write_start(w);
    xkvm_ctx_write(w, type, 5, body, len);
    return xkvm_ctx_write_end(w);
}

static void test_element_validation(void)
{
    struct xkvm_ctx_writer w;
    struct xkvm_ctx_error e;
    size_t len;

    build_test_registry();
    for (size_t i = 0; i < test_registry.nr_types; i++) {
        const struct xkvm_ctx_type_desc *d = &test_registry.types[i];
        check_fields_tile(d->name, d->fields, d->nr_fields, d->fixed_size);
        if (d->nr_elem_fields)
            check_fields_tile(d->name, d->elem_fields, d->nr_elem_fields, d->elem_size);
    }

    /* Extents: fine, then a bad flag bit on element 37, then a pad byte on 50. */
    struct { uint32_t count, rsvd; struct extent e[64]; } ext = { .count = 64 };
    for (int i = 0; i < 64; i++)
        ext.e[i] = (struct extent) { .gfn = 0x1000u + (unsigned)i, .flags = (unsigned)i & 7 };
    CHECK_EQ(write_one(&w, T_EXTENTS, &ext, sizeof(ext)), 0);
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    CHECK_EQ(xkvm_ctx_verify(img, len, &test_registry, NULL, &e), 0);
    /* The builtin registry does not know the type. */
    CHECK_EQ(xkvm_ctx_verify(img, len, NULL, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_UNKNOWN_TYPE);
    CHECK_EQ(e.offset, 24);
    xkvm_ctx_writer_release(&w);

    ext.e[37].flags = 0x18;
    CHECK_EQ(write_one(&w, T_EXTENTS, &ext, sizeof(ext)), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_RESERVED);
    CHECK_STR_CONTAINS(w.err.msg, "element 37: field 'flags' has unknown bits 0x18");
    CHECK_STR_CONTAINS(w.err.msg, "type 2147418112 (EXTENTS)");
    xkvm_ctx_writer_release(&w);
    ext.e[37].flags = 0;
    ext.e[50].pad = 1u << 24;
    CHECK_EQ(write_one(&w, T_EXTENTS, &ext, sizeof(ext)), -1);
    CHECK_STR_CONTAINS(w.err.msg, "element 50: reserved field 'pad' is not zero (byte 3");
    xkvm_ctx_writer_release(&w);
    ext.e[50].pad = 0;
    ext.rsvd = 1;
    CHECK_EQ(write_one(&w, T_EXTENTS, &ext, sizeof(ext)), -1);
    CHECK_STR_CONTAINS(w.err.msg, "reserved field 'rsvd'");
    xkvm_ctx_writer_release(&w);
    ext.rsvd = 0;
    CHECK_EQ(write_one(&w, T_EXTENTS, &ext, 8 + 16 * 3 + 4), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_BAD_LENGTH);
    CHECK_STR_CONTAINS(w.err.msg, "(8 + n * 16 bytes)");
    xkvm_ctx_writer_release(&w);

    /* Odd-sized elements: byte path. */
    alignas(8) struct odd odd[5];
    memset(odd, 0, sizeof(odd));
    odd[4].data[7] = 0xff;
    odd[3].flags = 1;
    CHECK_EQ(write_one(&w, T_ODD, odd, sizeof(odd)), 0);
    xkvm_ctx_writer_release(&w);
    odd[2].rsvd[1] = 4;
    CHECK_EQ(write_one(&w, T_ODD, odd, sizeof(odd)), -1);
    CHECK_STR_CONTAINS(w.err.msg, "element 2: reserved field 'rsvd' is not zero (byte 1 is 0x04)");
    xkvm_ctx_writer_release(&w);
    odd[2].rsvd[1] = 0;
    odd[4].flags = 2;
    CHECK_EQ(write_one(&w, T_ODD, odd, sizeof(odd)), -1);
    CHECK_STR_CONTAINS(w.err.msg, "element 4: field 'flags' has unknown bits 0x2");
    xkvm_ctx_writer_release(&w);

    /* Enum elements: field-by-field path. */
    struct port ports[3] = { { 1, 0, {0} }, { 2, 2, {0} }, { 3, 3, {0} } };
    CHECK_EQ(write_one(&w, T_PORTS, ports, sizeof(ports)), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_BAD_VALUE);
    CHECK_STR_CONTAINS(w.err.msg, "element 2: field 'state' has unknown value 3");
    xkvm_ctx_writer_release(&w);
    ports[2].state = 1;
    CHECK_EQ(write_one(&w, T_PORTS, ports, sizeof(ports)), 0);
    img = xkvm_ctx_writer_data(&w, &len);

    /* Reader rejects what the writer would: corrupt a pad byte in place. */
    uint8_t *copy = malloc(len);
    REQUIRE(copy);
    memcpy(copy, img, len);
    copy[24 + 16 + 8 + 5] = 9;        /* ports[1].pad[0] */
    CHECK_EQ(xkvm_ctx_verify(copy, len, &test_registry, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_RESERVED);
    CHECK_EQ(e.offset, 24);
    CHECK_STR_CONTAINS(e.msg, "element 1: reserved field 'pad'");
    free(copy);

    /* Dump goes element by element. */
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, &test_registry);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        xkvm_ctx_dump_record(f, XKVM_CTX_DUMP_TEXT, &rec);
        xkvm_ctx_dump_record(f, XKVM_CTX_DUMP_JSON, &rec);
    }
    fclose(f);
    CHECK_STR_CONTAINS(out, "PORTS           inst=5 len=24\n    [0] port=1 state=free(0)\n");
    CHECK_STR_CONTAINS(out, "\"elements\":[{\"port\":1,\"state\":0},{\"port\":2,\"state\":2},"
                            "{\"port\":3,\"state\":1}]}");
    free(out);
    xkvm_ctx_writer_release(&w);
}

static void test_registry_must_be_sorted(void)
{
    struct xkvm_ctx_type_desc bad[2] = {
        { .type = XKVM_CTX_START, .name = "START", .fixed_size = 8 },
        { .type = XKVM_CTX_END, .name = "END" },
    };
    struct xkvm_ctx_registry reg = { .types = bad, .nr_types = 2 };
    struct img im;
    struct xkvm_ctx_error e;
    valid_image(&im);
    CHECK_EQ(xkvm_ctx_verify(im.buf, im.len, &reg, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_REGISTRY);

    /* A field reaching outside its body is refused before any record is read. */
    static const struct xkvm_ctx_field wide[] = {
        { .name = "x", .offset = 4, .size = 8, .kind = XKVM_CTX_FIELD_UINT },
    };
    struct xkvm_ctx_type_desc types[2] = {
        { .type = XKVM_CTX_END, .name = "END" },
        { .type = XKVM_CTX_START, .name = "START", .fixed_size = 8,
          .fields = XKVM_CTX_FIELDS(wide) },
    };
    reg = (struct xkvm_ctx_registry) { .types = types, .nr_types = 2 };
    CHECK_EQ(xkvm_ctx_verify(im.buf, im.len, &reg, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_REGISTRY);
    CHECK_STR_CONTAINS(e.msg, "outside");
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    w.registry = &reg;
    CHECK_EQ(xkvm_ctx_write_start(&w), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_REGISTRY);
    xkvm_ctx_writer_release(&w);
}

/* ---- dump ----------------------------------------------------------------- */

static void test_dump_formats(void)
{
    struct img im;
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    char *text = NULL, *json = NULL;
    size_t tl = 0, jl = 0;

    valid_image(&im);
    FILE *ft = open_memstream(&text, &tl), *fj = open_memstream(&json, &jl);
    REQUIRE(ft && fj);
    xkvm_ctx_reader_init(&r, im.buf, im.len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        xkvm_ctx_dump_record(ft, XKVM_CTX_DUMP_TEXT, &rec);
        xkvm_ctx_dump_record(fj, XKVM_CTX_DUMP_JSON, &rec);
    }
    fclose(ft);
    fclose(fj);
    char start[64];
    snprintf(start, sizeof(start), "0x000000 START           inst=0 len=8 major=%d minor=%d\n",
             XKVM_VERSION_MAJOR, XKVM_VERSION_MINOR);
    CHECK_STR_CONTAINS(text, start);
    CHECK_STR_CONTAINS(text, "SHARED_INFO     inst=0 len=21 flags=0x1 buffer_size=13 "
                             "(13 bytes of data) buffer_nonzero=13 buffer_fnv1a64=");
    CHECK_STR_CONTAINS(text, "TSC_INFO        inst=0 len=24 mode=never_emulate(2) khz=2500000 "
                             "nsec=42 incarnation=3\n");
    CHECK_STR_CONTAINS(text, "END             inst=0 len=0\n");
    CHECK_STR_CONTAINS(json, "{\"offset\":24,\"type\":2,\"name\":\"SHARED_INFO\",\"instance\":0,"
                             "\"length\":21,\"fields\":{\"flags\":1,\"buffer_size\":13,");
    CHECK_STR_CONTAINS(json, "\"fields\":{\"mode\":2,\"khz\":2500000,\"nsec\":42,"
                             "\"incarnation\":3}}\n");
    int lines = 0;
    for (char *p = json; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 4);
    free(text);
    free(json);
}

static void test_json_string_escaping(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    REQUIRE(f);
    xkvm_ctx_json_string(f, "a\"b\\c\nd\x01\x7f" "e\xc3\xa9");
    fclose(f);
    CHECK(strcmp(out, "\"a\\\"b\\\\c\\nd\\u0001\\u007fe\xc3\xa9\"") == 0);
    free(out);
}

int main(void)
{
    RUN_TEST(test_valid_image_accepted);
    RUN_TEST(test_reader_walks_without_copying);
    RUN_TEST(test_nothing_after_end_consumed);
    RUN_TEST(test_roundtrip_buffer);
    RUN_TEST(test_roundtrip_fd);
    RUN_TEST(test_fd_sink_error_reported);
    RUN_TEST(test_roundtrip_custom_sink);
    RUN_TEST(test_reject_unknown_type);
    RUN_TEST(test_reject_nonzero_padding);
    RUN_TEST(test_reject_length_past_end);
    RUN_TEST(test_reject_length_overflow);
    RUN_TEST(test_reject_truncated_header);
    RUN_TEST(test_reject_misaligned_buffer);
    RUN_TEST(test_reject_empty_image);
    RUN_TEST(test_reject_missing_start);
    RUN_TEST(test_reject_start_not_first);
    RUN_TEST(test_reject_second_start);
    RUN_TEST(test_reject_missing_end);
    RUN_TEST(test_reject_duplicate_once_type);
    RUN_TEST(test_reject_nonzero_instance);
    RUN_TEST(test_version_rules);
    RUN_TEST(test_reject_bad_start_body);
    RUN_TEST(test_reject_bad_end_body);
    RUN_TEST(test_reject_bad_tsc_info);
    RUN_TEST(test_reject_bad_shared_info);
    RUN_TEST(test_truncation_at_every_offset);
    RUN_TEST(test_bit_flips);
    RUN_TEST(test_writer_rules);
    RUN_TEST(test_registry_tables);
    RUN_TEST(test_element_validation);
    RUN_TEST(test_registry_must_be_sorted);
    RUN_TEST(test_dump_formats);
    RUN_TEST(test_json_string_escaping);
    HARNESS_EXIT();
}
