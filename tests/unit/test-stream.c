/*
 * Migration stream library: round trips (buffer and fd, incremental fd input,
 * compat mode, zero pages), the HVM context walker and builder, and every
 * rejection rule on a hand-built malformed stream, each checked through both the
 * buffer reader and the fd reader (they share the checks).
 */
#include <errno.h>
#include <lz4.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "xkvm/ctx.h"
#include "xkvm/postcopy.h"
#include "xkvm/stream.h"

HARNESS_MAIN_STATE("stream");

/* ---- hand-built streams ----------------------------------------------------- */

struct raw {
    uint8_t *b;
    size_t len, cap;
};

static void raw_put(struct raw *r, const void *p, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n)
            cap *= 2;
        r->b = realloc(r->b, cap);
        if (!r->b)
            abort();
        r->cap = cap;
    }
    if (n)
        memcpy(r->b + r->len, p, n);
    r->len += n;
}
static void raw_be(struct raw *r, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    raw_put(r, b, (size_t)bytes);
}
static void raw_le(struct raw *r, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    raw_put(r, b, (size_t)bytes);
}
static void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static void raw_ihdr(struct raw *r, uint64_t marker, uint32_t id, uint32_t version,
                     uint16_t options, uint64_t rsvd48)
{
    raw_be(r, marker, 8);
    raw_be(r, id, 4);
    raw_be(r, version, 4);
    raw_be(r, options, 2);
    raw_be(r, rsvd48, 6);
}
static void raw_dhdr(struct raw *r, uint32_t type, uint16_t shift, uint16_t rsvd)
{
    raw_le(r, type, 4);
    raw_le(r, shift, 2);
    raw_le(r, rsvd, 2);
    raw_le(r, 4, 4);
    raw_le(r, 17, 4);
}
static void raw_headers(struct raw *r, uint32_t version)
{
    raw_ihdr(r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, version, 0, 0);
    raw_dhdr(r, XKVM_STREAM_DOMAIN_X86_HVM, 12, 0);
}
/* Record claiming `length`, carrying `n` body bytes, padded to 8 with `pad`. */
static void raw_rec_lie(struct raw *r, uint32_t type, uint32_t length, const void *body,
                        size_t n, uint8_t pad)
{
    raw_le(r, type, 4);
    raw_le(r, length, 4);
    raw_put(r, body, n);
    while (r->len % 8)
        raw_put(r, &pad, 1);
}
static void raw_rec(struct raw *r, uint32_t type, const void *body, uint32_t length)
{
    raw_rec_lie(r, type, length, body, length, 0);
}

/* A valid HVM context: HEADER, CPU 0, LAPIC 0, END. Caller frees. */
static uint8_t *hvmctx_good(size_t *len)
{
    struct xkvm_hvmctx_builder b;
    uint8_t cpu[XKVM_HVMCTX_CPU_SIZE] = { 0 }, lapic[24] = { 0 };
    if (xkvm_hvmctx_builder_init(&b, 4, 0, 0x806f0, 2000000) < 0 ||
        xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, sizeof(cpu)) < 0 ||
        xkvm_hvmctx_add(&b, XKVM_HVMCTX_LAPIC, 0, lapic, sizeof(lapic)) < 0 ||
        xkvm_hvmctx_finish(&b) < 0)
        abort();
    return xkvm_hvmctx_take(&b, len);
}

static uint8_t *domctx_good(size_t *len)
{
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    if (xkvm_ctx_write_start(&w) < 0 || xkvm_ctx_write_end(&w) < 0)
        abort();
    return xkvm_ctx_writer_take(&w, len);
}

static const uint8_t xs_good[24] = { 'x', 'e', 'n', 's', 't', 'o', 'r', 'e', 0, 0, 0, 1, 0, 0, 0, 0 };

static void raw_rec_hvmctx(struct raw *r)
{
    size_t n;
    uint8_t *c = hvmctx_good(&n);
    raw_rec(r, XKVM_STREAM_REC_HVM_CONTEXT, c, (uint32_t)n);
    free(c);
}

/* Verify through the buffer reader and through an fd reader over a memfd. */
/*
 * Read all of fd with the pages deferred (the one-copy receive: restore.c's on_pages),
 * each data page read into a scratch page. 0 at END, -1 with *err.
 */
static int read_deferred(int fd, const struct xkvm_stream_limits *lim,
                         struct xkvm_stream_error *err)
{
    static uint8_t scratch[2][4096];
    struct xkvm_stream_reader rd;
    struct xkvm_stream_record rec;
    int rc = xkvm_stream_reader_init_fd(&rd, fd, lim);
    xkvm_stream_reader_defer_pages(&rd, true);
    while (rc == 0 && (rc = xkvm_stream_next(&rd, &rec)) > 0) {
        rc = 0;
        for (uint32_t i = 0; i < rec.pages_pending / 4096 && !rc; i++) {
            struct iovec iov = { .iov_base = scratch[i & 1], .iov_len = 4096 };
            rc = xkvm_stream_read_pages(&rd, &iov, 1);
        }
    }
    *err = rd.err;
    xkvm_stream_reader_release(&rd);
    return rc;
}

static int verify_both(const struct raw *r, const struct xkvm_stream_limits *lim,
                       struct xkvm_stream_error *err_buf, struct xkvm_stream_error *err_fd)
{
    int rc1 = xkvm_stream_verify(r->b, r->len, lim, NULL, err_buf);
    int fd = memfd_create("stream", 0);
    if (fd < 0 || write(fd, r->b, r->len) != (ssize_t)r->len || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    struct xkvm_stream_reader rd;
    struct xkvm_stream_record rec;
    int rc2 = xkvm_stream_reader_init_fd(&rd, fd, lim);
    if (rc2 == 0)
        while ((rc2 = xkvm_stream_next(&rd, &rec)) > 0)
            ;
    *err_fd = rd.err;
    xkvm_stream_reader_release(&rd);
    /* The same bytes with the pages deferred: the same verdict and error code. */
    struct xkvm_stream_error e3;
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    int rc3 = read_deferred(fd, lim, &e3);
    close(fd);
    if (rc1 != rc2 || rc1 != rc3 || (rc3 && e3.code != err_fd->code))
        return 99;
    return rc1;
}

#define EXPECT_REJECT(r, lim, ecode, needle) do {                                  \
    struct xkvm_stream_error _e1, _e2;                                             \
    int _rc = verify_both((r), (lim), &_e1, &_e2);                                 \
    CHECK_MSG(_rc == -1, "stream accepted (rc %d), expected %s", _rc,              \
              xkvm_stream_errcode_name(ecode));                                   \
    if (_rc == -1) {                                                               \
        CHECK_MSG((int)_e1.code == (int)(ecode), "buffer reader: %s (%s), expected %s",      \
                  xkvm_stream_errcode_name(_e1.code), _e1.msg,                     \
                  xkvm_stream_errcode_name(ecode));                               \
        CHECK_MSG((int)_e2.code == (int)(ecode), "fd reader: %s (%s), expected %s",          \
                  xkvm_stream_errcode_name(_e2.code), _e2.msg,                     \
                  xkvm_stream_errcode_name(ecode));                               \
        CHECK_STR_CONTAINS(_e1.msg, needle);                                       \
        CHECK_EQ(_e1.offset, _e2.offset);                                          \
    }                                                                              \
} while (0)

#define EXPECT_ACCEPT(r, lim) do {                                                 \
    struct xkvm_stream_error _e1, _e2;                                             \
    int _rc = verify_both((r), (lim), &_e1, &_e2);                                 \
    CHECK_MSG(_rc == 0, "rejected: %s", _rc == -1 ? _e1.msg : "readers disagree"); \
} while (0)

/* Headers + STATIC_DATA_END; the caller adds the rest. */
static void raw_start(struct raw *r)
{
    memset(r, 0, sizeof(*r));
    raw_headers(r, 3);
    raw_rec(r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
}
static void raw_finish(struct raw *r)
{
    raw_rec_hvmctx(r);
    raw_rec(r, XKVM_STREAM_REC_END, NULL, 0);
}

/* ---- round trips ------------------------------------------------------------- */

static uint8_t page_a[4096] __attribute__((aligned(8)));
static uint8_t page_zero[4096] __attribute__((aligned(8)));

static int write_full(struct xkvm_stream_writer *w, bool ext)
{
    size_t hn, dn;
    uint8_t *h = hvmctx_good(&hn), *d = domctx_good(&dn);
    struct xkvm_stream_tsc_info tsc = { .mode = 0, .khz = 2000000, .nsec = 123, .incarnation = 7 };
    struct xkvm_stream_hvm_param p[2] = { { 2, 0x1234 }, { 5, 1 } };
    int rc = 0;

    rc |= xkvm_stream_write_static_data_end(w);
    for (uint64_t pfn = 0; pfn < 5; pfn++) {
        memset(page_a, (int)(0xa0 + pfn), sizeof(page_a));
        rc |= xkvm_stream_add_page(w, pfn, pfn == 3 ? page_zero : page_a);
    }
    rc |= xkvm_stream_add_pfn(w, 9, XKVM_STREAM_PAGE_XTAB);
    rc |= xkvm_stream_write_tsc_info(w, &tsc);
    rc |= xkvm_stream_write_hvm_params(w, p, 2);
    rc |= xkvm_stream_write_hvm_context(w, h, (uint32_t)hn);
    if (ext) {
        rc |= xkvm_stream_write_domain_context(w, d, (uint32_t)dn);
        rc |= xkvm_stream_write_xenstore_state(w, xs_good, sizeof(xs_good));
    }
    rc |= xkvm_stream_write_end(w);
    free(h);
    free(d);
    return rc;
}

static void check_full(const void *buf, size_t len, bool ext, bool zero_skipped)
{
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    struct xkvm_stream_limits lim = { .max_pfn = 16 };
    unsigned seen_pages = 0, seen_types = 0;
    int rc;

    REQUIRE(xkvm_stream_reader_init_buffer(&r, buf, len, &lim) == 0);
    while ((rc = xkvm_stream_next(&r, &rec)) > 0) {
        seen_types++;
        if (rec.type == XKVM_STREAM_REC_PAGE_DATA) {
            struct xkvm_stream_page_iter it;
            struct xkvm_stream_page pg;
            xkvm_stream_page_iter_init(&it, &rec);
            while (xkvm_stream_page_next(&it, &pg)) {
                seen_pages++;
                if (pg.pfn == 9) {
                    CHECK_EQ(pg.type, XKVM_STREAM_PAGE_XTAB);
                    CHECK(pg.data == NULL);
                } else if (pg.pfn == 3 && zero_skipped) {
                    CHECK_EQ(pg.type, XKVM_STREAM_PAGE_XALLOC);
                    CHECK(pg.data == NULL);
                } else {
                    CHECK_EQ(pg.type, XKVM_STREAM_PAGE_NORMAL);
                    REQUIRE(pg.data != NULL);
                    uint8_t want = pg.pfn == 3 ? 0 : (uint8_t)(0xa0 + pg.pfn);
                    CHECK_EQ(((const uint8_t *)pg.data)[0], want);
                    CHECK_EQ(((const uint8_t *)pg.data)[4095], want);
                }
            }
        } else if (rec.type == XKVM_STREAM_REC_X86_TSC_INFO) {
            struct xkvm_stream_tsc_info t;
            xkvm_stream_decode_tsc_info(&rec, &t);
            CHECK_EQ(t.khz, 2000000);
            CHECK_EQ(t.nsec, 123);
            CHECK_EQ(t.incarnation, 7);
        } else if (rec.type == XKVM_STREAM_REC_HVM_PARAMS) {
            struct xkvm_stream_hvm_param p;
            REQUIRE(xkvm_stream_hvm_params_count(&rec) == 2);
            xkvm_stream_hvm_param_get(&rec, 1, &p);
            CHECK_EQ(p.index, 5);
            CHECK_EQ(p.value, 1);
        } else if (rec.type == XKVM_STREAM_REC_DOMAIN_CONTEXT) {
            CHECK(ext);
        }
    }
    CHECK_MSG(rc == 0, "reader: %s", r.err.msg);
    CHECK_EQ(seen_pages, 6);
    CHECK_EQ(r.info.version, 3);
    CHECK_EQ(r.info.domain_type, XKVM_STREAM_DOMAIN_X86_HVM);
    CHECK_EQ(r.info.xen_major, 4);
    CHECK_EQ(r.info.xen_minor, 17);
    CHECK_EQ(r.info.nr_pfns, 6);
    CHECK_EQ(r.info.nr_pages_data, zero_skipped ? 4 : 5);
    CHECK_EQ(r.info.nr_pages_zero, zero_skipped ? 1 : 0);
    CHECK_EQ(r.info.bytes, len);
    CHECK_EQ(r.info.nr_records, seen_types);
    xkvm_stream_reader_release(&r);
}

static void test_roundtrip_buffer(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .batch = 2, .skip_zero = true, .limits = { .max_pfn = 16 } };
    size_t len;
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_MSG(write_full(&w, true) == 0, "%s", w.err.msg);
    void *buf = xkvm_stream_writer_take(&w, &len);
    check_full(buf, len, true, true);
    free(buf);
    xkvm_stream_writer_release(&w);
}

/* reference_pages: pages go out from where they are, contiguous ones in one iovec. */
static void test_roundtrip_page_refs(void)
{
    static uint8_t pages[6][4096] __attribute__((aligned(4096)));
    for (int i = 0; i < 6; i++)
        memset(pages[i], 0x10 + i, sizeof(pages[i]));
    memset(pages[2], 0, sizeof(pages[2]));
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .batch = 4, .skip_zero = true, .reference_pages = true,
                                         .limits = { .max_pfn = 64 } };
    REQUIRE(xkvm_stream_writer_init_fd(&w, fds[1], &o) == 0);
    int rc = xkvm_stream_write_static_data_end(&w);
    static const unsigned pfns[6] = { 7, 8, 9, 20, 3, 4 };     /* page i goes to pfns[i] */
    for (int i = 0; i < 6; i++)
        rc |= xkvm_stream_add_page(&w, pfns[i], pages[i]);
    rc |= xkvm_stream_flush_pages(&w);
    CHECK_MSG(rc == 0, "%s", w.err.msg);
    xkvm_stream_writer_release(&w);
    close(fds[1]);

    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    struct xkvm_stream_limits lim = { .max_pfn = 64 };
    REQUIRE(xkvm_stream_reader_init_fd(&r, fds[0], &lim) == 0);
    unsigned seen = 0;
    while (xkvm_stream_next(&r, &rec) > 0) {
        if (rec.type != XKVM_STREAM_REC_PAGE_DATA)
            continue;
        struct xkvm_stream_page_iter it;
        struct xkvm_stream_page pg;
        xkvm_stream_page_iter_init(&it, &rec);
        while (xkvm_stream_page_next(&it, &pg)) {
            int i = 0;
            while (i < 6 && pfns[i] != pg.pfn)
                i++;
            REQUIRE(i < 6);
            if (i == 2) {
                CHECK_EQ(pg.type, XKVM_STREAM_PAGE_XALLOC);
            } else {
                CHECK(pg.data && !memcmp(pg.data, pages[i], 4096));
            }
            seen++;
        }
    }
    CHECK_EQ(seen, 6u);
    xkvm_stream_reader_release(&r);
    close(fds[0]);
}

/*
 * Deferred pages: the contents land where the caller says, in stream order; pages not
 * read before the next record, or asked for beyond the record, are refused; a stream
 * cut inside the page contents is TRUNCATED.
 */
/* A mover for xkvm_stream_read_pages_by: read(2) from the fd into got, in order. */
struct mover {
    int fd;
    uint8_t *at;
};

static ssize_t move_read(void *arg, size_t len)
{
    struct mover *m = arg;
    ssize_t n = read(m->fd, m->at, len > 5000 ? 5000 : len);   /* short moves too */
    if (n > 0)
        m->at += n;
    return n;
}

static void test_deferred_pages(void)
{
    static uint8_t pages[5][4096], got[5][4096];
    for (int i = 0; i < 5; i++)
        memset(pages[i], 0x40 + i, sizeof(pages[i]));
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .batch = 8, .limits = { .max_pfn = 64 } };
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    int rc = xkvm_stream_write_static_data_end(&w);
    for (int i = 0; i < 5; i++)
        rc |= xkvm_stream_add_page(&w, 10 + (unsigned)i, pages[i]);
    rc |= xkvm_stream_flush_pages(&w);
    REQUIRE(rc == 0);
    size_t len;
    uint8_t *buf = xkvm_stream_writer_take(&w, &len);
    xkvm_stream_writer_release(&w);
    REQUIRE(buf);
    struct xkvm_stream_limits lim = { .max_pfn = 64 };
    for (int mode = 0; mode < 6; mode++) {
        /* 0: all read (two iovecs), 1: next() with pages unread, 2: too many asked,
         * 3: the stream cut 100 bytes into the page contents; 4, 5: 0 and 3 with the
         * caller moving the bytes (read_pages_by) */
        int fd = memfd_create("stream", 0);
        size_t n = mode == 3 || mode == 5 ? len - 5 * 4096 + 100 : len;
        REQUIRE(fd >= 0 && write(fd, buf, n) == (ssize_t)n && lseek(fd, 0, SEEK_SET) == 0);
        struct xkvm_stream_reader r;
        struct xkvm_stream_record rec;
        REQUIRE(xkvm_stream_reader_init_fd(&r, fd, &lim) == 0);
        xkvm_stream_reader_defer_pages(&r, true);
        while ((rc = xkvm_stream_next(&r, &rec)) > 0 && rec.type != XKVM_STREAM_REC_PAGE_DATA)
            ;
        REQUIRE(rc == 1);
        CHECK_EQ(rec.pages_pending, 5u * 4096);
        struct xkvm_stream_page_iter it;
        struct xkvm_stream_page pg;
        xkvm_stream_page_iter_init(&it, &rec);
        unsigned npfn = 0;
        while (xkvm_stream_page_next(&it, &pg)) {
            CHECK(pg.data == NULL && pg.type == XKVM_STREAM_PAGE_NORMAL);
            CHECK_EQ(pg.pfn, 10u + npfn++);
        }
        CHECK_EQ(npfn, 5u);
        memset(got, 0, sizeof(got));
        struct iovec iov[2] = { { got[3], 2 * 4096 }, { got[0], 3 * 4096 } };
        if (mode == 0) {
            CHECK(xkvm_stream_read_pages(&r, iov, 2) == 0);
            CHECK(!memcmp(got[3], pages[0], 4096) && !memcmp(got[4], pages[1], 4096));
            CHECK(!memcmp(got[0], pages[2], 4096) && !memcmp(got[2], pages[4], 4096));
            /* no END written: the next record header is where the bytes end */
            CHECK(xkvm_stream_next(&r, &rec) == -1);
            CHECK_MSG(r.err.code == XKVM_STREAM_ERR_TRUNCATED && r.err.offset == len &&
                      r.pos == len, "%s", r.err.msg);
        } else if (mode == 1) {
            CHECK(xkvm_stream_read_pages(&r, iov, 1) == 0);
            CHECK(xkvm_stream_next(&r, &rec) == -1 && r.err.code == XKVM_STREAM_ERR_ARG);
        } else if (mode >= 4) {
            struct mover m = { .fd = fd, .at = got[0] };
            rc = xkvm_stream_read_pages_by(&r, 5 * 4096, move_read, &m);
            if (mode == 4) {
                CHECK_MSG(rc == 0 && !memcmp(got, pages, sizeof(got)), "%s", r.err.msg);
                CHECK(xkvm_stream_next(&r, &rec) == -1 && r.err.offset == len);
            } else {
                CHECK_MSG(rc == -1 && r.err.code == XKVM_STREAM_ERR_TRUNCATED, "%s", r.err.msg);
            }
        } else if (mode == 2) {
            struct iovec big = { got[0], 5 * 4096 + 4096 };
            CHECK(xkvm_stream_read_pages(&r, &big, 1) == -1 && r.err.code == XKVM_STREAM_ERR_ARG);
        } else {
            CHECK(xkvm_stream_read_pages(&r, iov, 2) == -1);
            CHECK_MSG(r.err.code == XKVM_STREAM_ERR_TRUNCATED, "%s", r.err.msg);
        }
        xkvm_stream_reader_release(&r);
        close(fd);
    }
    free(buf);
}

static void test_roundtrip_no_skip_zero(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .limits = { .max_pfn = 16 } };
    size_t len;
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_MSG(write_full(&w, true) == 0, "%s", w.err.msg);
    void *buf = xkvm_stream_writer_take(&w, &len);
    check_full(buf, len, true, false);
    free(buf);
    xkvm_stream_writer_release(&w);
}

/* Writer to an fd, reader from a pipe fed a few bytes at a time by a child. */
static void test_roundtrip_fd_incremental(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .batch = 3, .skip_zero = true, .limits = { .max_pfn = 16 } };
    int mfd = memfd_create("out", 0), p[2];
    REQUIRE(mfd >= 0 && pipe(p) == 0);
    REQUIRE(xkvm_stream_writer_init_fd(&w, mfd, &o) == 0);
    CHECK_MSG(write_full(&w, true) == 0, "%s", w.err.msg);
    xkvm_stream_writer_release(&w);
    off_t len = lseek(mfd, 0, SEEK_END);
    uint8_t *buf = malloc((size_t)len);
    REQUIRE(buf && pread(mfd, buf, (size_t)len, 0) == len);
    check_full(buf, (size_t)len, true, true);

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        for (off_t i = 0; i < len; i += 13) {
            size_t n = (size_t)(len - i < 13 ? len - i : 13);
            if (write(p[1], buf + i, n) != (ssize_t)n)
                _exit(1);
        }
        _exit(0);
    }
    close(p[1]);
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    struct xkvm_stream_limits lim = { .max_pfn = 16 };
    int rc;
    unsigned n = 0;
    REQUIRE(xkvm_stream_reader_init_fd(&r, p[0], &lim) == 0);
    while ((rc = xkvm_stream_next(&r, &rec)) > 0)
        n++;
    CHECK_MSG(rc == 0, "%s", r.err.msg);
    CHECK_EQ(r.info.bytes, len);
    CHECK_EQ(n, r.info.nr_records);
    xkvm_stream_reader_release(&r);
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(buf);
    close(mfd);
}

static void test_fd_truncated(void)
{
    struct raw r;
    raw_start(&r);
    raw_finish(&r);
    for (size_t cut = 0; cut < r.len; cut += 5) {
        struct raw t = r;
        t.len = cut;
        struct xkvm_stream_error e1, e2;
        int rc = verify_both(&t, NULL, &e1, &e2);
        CHECK_MSG(rc == -1 && e1.code == XKVM_STREAM_ERR_TRUNCATED &&
                  e2.code == XKVM_STREAM_ERR_TRUNCATED,
                  "cut at %zu: rc %d, %s / %s", cut, rc, e1.msg, e2.msg);
    }
    free(r.b);
}

static void test_compat(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .compat = XKVM_STREAM_COMPAT_XEN_4_17,
                                         .limits = { .max_pfn = 16 } };
    size_t len, dn;
    CHECK_EQ(xkvm_stream_compat_parse("xen-4.17"), XKVM_STREAM_COMPAT_XEN_4_17);
    CHECK_EQ(xkvm_stream_compat_parse("none"), XKVM_STREAM_COMPAT_NONE);
    CHECK_EQ(xkvm_stream_compat_parse("xen-4.18"), -1);
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_MSG(write_full(&w, false) == 0, "%s", w.err.msg);
    void *buf = xkvm_stream_writer_take(&w, &len);
    check_full(buf, len, false, false);
    free(buf);
    xkvm_stream_writer_release(&w);

    /* Extension records are refused in compat mode. */
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    uint8_t *d = domctx_good(&dn);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_domain_context(&w, d, (uint32_t)dn), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_COMPAT);
    CHECK_STR_CONTAINS(w.err.msg, "DOMAIN_CONTEXT");
    free(d);
    xkvm_stream_writer_release(&w);
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_xenstore_state(&w, xs_good, sizeof(xs_good)), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_COMPAT);
    xkvm_stream_writer_release(&w);
}

/* A zero page sent as XALLOC first; once sent with data, a zero page carries data. */
static void test_zero_pages(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .skip_zero = true, .limits = { .max_pfn = 8 } };
    size_t len;
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    memset(page_a, 0x55, sizeof(page_a));
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_zero), 0);   /* XALLOC */
    CHECK_EQ(xkvm_stream_add_page(&w, 2, page_a), 0);      /* data */
    CHECK_EQ(xkvm_stream_flush_pages(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 2, page_zero), 0);   /* data: overwrites 0x55 */
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_zero), 0);   /* XALLOC again */
    size_t hn;
    uint8_t *h = hvmctx_good(&hn);
    CHECK_EQ(xkvm_stream_write_hvm_context(&w, h, (uint32_t)hn), 0);
    free(h);
    CHECK_EQ(xkvm_stream_write_end(&w), 0);
    void *buf = xkvm_stream_writer_take(&w, &len);
    struct xkvm_stream_info info;
    struct xkvm_stream_error e;
    struct xkvm_stream_limits lim = { .max_pfn = 8 };
    CHECK_MSG(xkvm_stream_verify(buf, len, &lim, &info, &e) == 0, "%s", e.msg);
    CHECK_EQ(info.nr_pfns, 4);
    CHECK_EQ(info.nr_pages_zero, 2);
    CHECK_EQ(info.nr_pages_data, 2);
    free(buf);
    xkvm_stream_writer_release(&w);

    /* skip_zero needs a bounded pfn space. */
    struct xkvm_stream_writer_opts bad = { .skip_zero = true };
    CHECK_EQ(xkvm_stream_writer_init_buffer(&w, &bad), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_ARG);
    xkvm_stream_writer_release(&w);
}

static void test_writer_rules(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .limits = { .max_pfn = 8 } };
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    /* PAGE_DATA before STATIC_DATA_END: the reader's order rule, applied on write. */
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_a), 0);
    CHECK_EQ(xkvm_stream_flush_pages(&w), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_ORDER);
    CHECK_EQ(xkvm_stream_write_end(&w), -1);                /* sticky */
    xkvm_stream_writer_release(&w);

    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 8, page_a), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_PFN_RANGE);
    xkvm_stream_writer_release(&w);

    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_end(&w), -1);                 /* no HVM_CONTEXT */
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_MISSING);
    xkvm_stream_writer_release(&w);

    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    size_t hn;
    uint8_t *h = hvmctx_good(&hn);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_hvm_context(&w, h, (uint32_t)hn), 0);
    CHECK_EQ(xkvm_stream_write_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_AFTER_END);
    free(h);
    xkvm_stream_writer_release(&w);

    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_a), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_a), 0);
    CHECK_EQ(xkvm_stream_flush_pages(&w), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_PFN_DUPLICATE);
    xkvm_stream_writer_release(&w);

    struct xkvm_stream_writer_opts big = { .batch = 1025 };
    CHECK_EQ(xkvm_stream_writer_init_buffer(&w, &big), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_ARG);
    xkvm_stream_writer_release(&w);
}

/*
 * Post-copy (docs/stream.md): after POSTCOPY_MISSING the stream goes on past END with
 * PAGE_DATA only, up to POSTCOPY_DONE; without it, nothing comes after END.
 */
static void write_postcopy(struct xkvm_stream_writer *w, bool missing, bool done_early)
{
    uint64_t bm = 0x6;      /* pfns 1, 2 */
    uint8_t body[64];
    size_t need;
    long n = xkvm_postcopy_missing_encode(&bm, 8, body, sizeof(body), &need);
    REQUIRE(n > 0);
    size_t hn;
    uint8_t *h = hvmctx_good(&hn);
    CHECK_EQ(xkvm_stream_write_static_data_end(w), 0);
    if (missing)
        CHECK_EQ(xkvm_stream_write_record(w, XKVM_STREAM_REC_POSTCOPY_MISSING, body,
                                          (uint32_t)n), 0);
    if (done_early)
        CHECK_EQ(xkvm_stream_write_record(w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0), -1);
    else
        CHECK_EQ(xkvm_stream_write_hvm_context(w, h, (uint32_t)hn), 0);
    free(h);
}

static void test_postcopy_tail(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .limits = { .max_pfn = 8 } };
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    write_postcopy(&w, true, false);
    CHECK_EQ(xkvm_stream_write_end(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 2, page_a), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_a), 0);
    CHECK_MSG(xkvm_stream_flush_pages(&w) == 0, "%s", w.err.msg);
    CHECK_EQ(xkvm_stream_write_record(&w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 3, page_a), 0);
    CHECK_EQ(xkvm_stream_flush_pages(&w), -1);              /* nothing after DONE */
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_AFTER_END);
    xkvm_stream_writer_release(&w);

    /* The reader sees END, the pages, DONE, then the end of the stream. */
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    write_postcopy(&w, true, false);
    CHECK_EQ(xkvm_stream_write_end(&w), 0);
    CHECK_EQ(xkvm_stream_add_page(&w, 1, page_a), 0);
    CHECK_EQ(xkvm_stream_flush_pages(&w), 0);
    CHECK_EQ(xkvm_stream_write_record(&w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0), 0);
    size_t len;
    void *buf = xkvm_stream_writer_take(&w, &len);
    xkvm_stream_writer_release(&w);
    struct xkvm_stream_reader r;
    struct xkvm_stream_limits lim = { .max_pfn = 8 };
    REQUIRE(xkvm_stream_reader_init_buffer(&r, buf, len, &lim) == 0);
    struct xkvm_stream_record rec;
    uint32_t last = 0, after_end = 0;
    bool ended = false;
    int rc;
    while ((rc = xkvm_stream_next(&r, &rec)) > 0) {
        after_end += ended;
        ended |= rec.type == XKVM_STREAM_REC_END;
        last = rec.type;
    }
    CHECK_MSG(rc == 0, "%s", r.err.msg);
    CHECK_EQ(last, XKVM_STREAM_REC_POSTCOPY_DONE);
    CHECK_EQ(after_end, 2);
    xkvm_stream_reader_release(&r);
    free(buf);

    /* Without POSTCOPY_MISSING: END ends it. DONE before END is refused. */
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    write_postcopy(&w, false, false);
    CHECK_EQ(xkvm_stream_write_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_record(&w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_AFTER_END);
    xkvm_stream_writer_release(&w);
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    write_postcopy(&w, true, true);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_ORDER);
    xkvm_stream_writer_release(&w);

    /* A POSTCOPY_MISSING naming a pfn past the limit. */
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    uint64_t far[2] = { 0, 1 };     /* pfn 64, the limit 8 */
    uint8_t body[64];
    size_t need;
    long n = xkvm_postcopy_missing_encode(far, 128, body, sizeof(body), &need);
    REQUIRE(n > 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_record(&w, XKVM_STREAM_REC_POSTCOPY_MISSING, body,
                                      (uint32_t)n), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_BAD_VALUE);
    xkvm_stream_writer_release(&w);
}

/*
 * A recovery's stream (docs/stream.md "Post-copy recovery"): headers, then only the
 * post-copy tail: PAGE_DATA and POSTCOPY_DONE; a state record is refused on both sides.
 */
static void test_postcopy_recovery_tail(void)
{
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .limits = { .max_pfn = 8 } };
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    xkvm_stream_writer_postcopy_tail(&w);
    CHECK_EQ(xkvm_stream_add_page(&w, 5, page_a), 0);
    CHECK_MSG(xkvm_stream_flush_pages(&w) == 0, "%s", w.err.msg);
    CHECK_EQ(xkvm_stream_write_record(&w, XKVM_STREAM_REC_POSTCOPY_DONE, NULL, 0), 0);
    size_t len;
    void *buf = xkvm_stream_writer_take(&w, &len);
    xkvm_stream_writer_release(&w);
    struct xkvm_stream_limits lim = { .max_pfn = 8 };
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    uint32_t types[4] = { 0 };
    unsigned n = 0;
    int rc;
    REQUIRE(xkvm_stream_reader_init_buffer(&r, buf, len, &lim) == 0);
    xkvm_stream_reader_postcopy_tail(&r);
    while ((rc = xkvm_stream_next(&r, &rec)) > 0 && n < 4)
        types[n++] = rec.type;
    CHECK_MSG(rc == 0, "%s", r.err.msg);
    CHECK_EQ(n, 2);
    CHECK_EQ(types[0], XKVM_STREAM_REC_PAGE_DATA);
    CHECK_EQ(types[1], XKVM_STREAM_REC_POSTCOPY_DONE);
    xkvm_stream_reader_release(&r);
    /* The same bytes without the tail mark: PAGE_DATA first is out of order. */
    REQUIRE(xkvm_stream_reader_init_buffer(&r, buf, len, &lim) == 0);
    while ((rc = xkvm_stream_next(&r, &rec)) > 0)
        ;
    CHECK_EQ(rc, -1);
    xkvm_stream_reader_release(&r);
    free(buf);
    /* The writer refuses anything but the tail. */
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    xkvm_stream_writer_postcopy_tail(&w);
    CHECK_EQ(xkvm_stream_write_end(&w), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_AFTER_END);
    xkvm_stream_writer_release(&w);
}

static void test_writer_fd_error(void)
{
    struct xkvm_stream_writer w;
    int p[2];
    REQUIRE(pipe(p) == 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    REQUIRE(xkvm_stream_writer_init_fd(&w, p[1], NULL) == 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_IO);
    CHECK_EQ(w.err.sys_errno, EPIPE);
    xkvm_stream_writer_release(&w);
    close(p[1]);
}

/* ---- rejection rules: headers ------------------------------------------------ */

static void test_reject_image_header(void)
{
    struct raw r = { 0 };
    raw_ihdr(&r, 0xFFFFFFFF00000000ull, XKVM_STREAM_ID, 3, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_MARKER, "legacy");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, 0x58454E47, 3, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ID, "XENF");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 4, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_VERSION, "version 4");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 1, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_VERSION, "version 1");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 3, 1, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ENDIAN, "big-endian");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 3, 2, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "option");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 3, 0, 1);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "reserved");
    r.len = 0;
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 3, 0, 0);
    r.len -= 3;
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TRUNCATED, "image header");
    free(r.b);
}

static void test_reject_domain_header(void)
{
    struct raw r = { 0 };
    raw_ihdr(&r, XKVM_STREAM_MARKER, XKVM_STREAM_ID, 3, 0, 0);
    size_t base = r.len;
    raw_dhdr(&r, XKVM_STREAM_DOMAIN_X86_PV, 12, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN, "PV");
    r.len = base;
    raw_dhdr(&r, 7, 12, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN, "domain type 0x7");
    r.len = base;
    raw_dhdr(&r, 0, 12, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN, "domain type 0x0");
    r.len = base;
    raw_dhdr(&r, XKVM_STREAM_DOMAIN_X86_HVM, 13, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN, "page_shift 13");
    r.len = base;
    raw_dhdr(&r, XKVM_STREAM_DOMAIN_X86_HVM, 12, 1);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "offset 30");
    r.len = base;
    raw_dhdr(&r, XKVM_STREAM_DOMAIN_X86_HVM, 12, 0);
    r.len -= 1;
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TRUNCATED, "domain header");
    free(r.b);
}

/* ---- rejection rules: framing ------------------------------------------------ */

static void test_reject_framing(void)
{
    struct raw r;
    uint8_t body[64] = { 0 };

    /* Nothing after the headers. */
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TRUNCATED, "record header");
    free(r.b);

    /* Body cut short. */
    raw_start(&r);
    raw_rec_lie(&r, XKVM_STREAM_REC_X86_TSC_INFO, 24, body, 16, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TRUNCATED, "X86_TSC_INFO");
    free(r.b);

    /* Non-zero padding (HVM_PARAMS with 0 params is 8 bytes: use xenstore, 24+3). */
    raw_start(&r);
    uint8_t xs[27] = { 0 };
    memcpy(xs, xs_good, sizeof(xs_good));
    raw_rec_lie(&r, XKVM_STREAM_REC_XENSTORE_STATE, 27, xs, 27, 0x01);
    raw_finish(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_PADDING, "padding byte 0");
    free(r.b);

    /* A huge length is refused on the header, before anything is read/allocated. */
    raw_start(&r);
    raw_rec_lie(&r, XKVM_STREAM_REC_HVM_CONTEXT, 0xFFFFFFF0u, NULL, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TOO_LARGE, "cap");
    free(r.b);

    /* A per-type maximum: PAGE_DATA beyond one full batch. */
    raw_start(&r);
    raw_rec_lie(&r, XKVM_STREAM_REC_PAGE_DATA, XKVM_STREAM_PAGE_DATA_MAX + 8, NULL, 0, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_TOO_LARGE, "PAGE_DATA");
    free(r.b);

    /* A caller's lower cap. */
    struct xkvm_stream_limits lim = { .record_max = 64 };
    raw_start(&r);
    raw_finish(&r);
    EXPECT_REJECT(&r, &lim, XKVM_STREAM_ERR_TOO_LARGE, "exceeds the cap of 64");
    free(r.b);

    /* Unknown mandatory type. */
    raw_start(&r);
    raw_rec(&r, 0x13, body, 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_UNKNOWN_TYPE, "0x00000013");
    free(r.b);

    /* Unknown optional type: skipped, stream accepted; its padding still checked. */
    raw_start(&r);
    raw_rec(&r, 0x80001234u, body, 13);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);
    raw_start(&r);
    raw_rec_lie(&r, 0x80001234u, 13, body, 13, 0xff);
    raw_finish(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_PADDING, "unknown (0x80001234)");
    free(r.b);

    /* Bytes after END are not read. */
    raw_start(&r);
    raw_finish(&r);
    size_t good = r.len;
    raw_put(&r, "garbage!", 8);
    struct xkvm_stream_info info;
    struct xkvm_stream_error e;
    CHECK_EQ(xkvm_stream_verify(r.b, r.len, NULL, &info, &e), 0);
    CHECK_EQ(info.bytes, good);
    free(r.b);

    /* Misaligned buffer. */
    raw_start(&r);
    raw_finish(&r);
    uint8_t *mis = malloc(r.len + 1);
    memcpy(mis + 1, r.b, r.len);
    CHECK_EQ(xkvm_stream_verify(mis + 1, r.len, NULL, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_STREAM_ERR_MISALIGNED);
    free(mis);
    free(r.b);
}

static void test_reject_unsupported(void)
{
    static const uint32_t types[] = {
        XKVM_STREAM_REC_X86_PV_INFO, XKVM_STREAM_REC_X86_PV_P2M_FRAMES,
        XKVM_STREAM_REC_X86_PV_VCPU_BASIC, XKVM_STREAM_REC_X86_PV_VCPU_EXTENDED,
        XKVM_STREAM_REC_X86_PV_VCPU_XSAVE, XKVM_STREAM_REC_SHARED_INFO,
        XKVM_STREAM_REC_TOOLSTACK, XKVM_STREAM_REC_X86_PV_VCPU_MSRS, XKVM_STREAM_REC_VERIFY,
        XKVM_STREAM_REC_CHECKPOINT, XKVM_STREAM_REC_CHECKPOINT_DIRTY_PFN_LIST,
    };
    uint8_t body[8] = { 0 };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct raw r;
        raw_start(&r);
        raw_rec(&r, types[i], body, 8);
        raw_finish(&r);
        EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_UNSUPPORTED, xkvm_stream_rec_name(types[i]));
        free(r.b);
    }
}

/* ---- rejection rules: order -------------------------------------------------- */

static void test_reject_order(void)
{
    struct raw r;
    uint8_t pd[8 + 8 + 4096] = { 0 };
    uint8_t tsc[24] = { 0 }, params[8] = { 0 }, cpuid[24] = { 0 };
    put_le32(pd, 1);

    /* PAGE_DATA before STATIC_DATA_END in v3. */
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, pd, sizeof(pd));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "before STATIC_DATA_END");
    free(r.b);

    /* HVM_CONTEXT before STATIC_DATA_END. */
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec_hvmctx(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "HVM_CONTEXT");
    free(r.b);

    /* CPUID policy after STATIC_DATA_END; before it is fine. */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_CPUID_POLICY, cpuid, sizeof(cpuid));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "after STATIC_DATA_END");
    free(r.b);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_X86_CPUID_POLICY, cpuid, sizeof(cpuid));
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);

    /* STATIC_DATA_END twice. */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "STATIC_DATA_END");
    free(r.b);

    /* HVM_CONTEXT twice. */
    raw_start(&r);
    raw_rec_hvmctx(&r);
    raw_rec_hvmctx(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "only one");
    free(r.b);

    /* PAGE_DATA, TSC_INFO, HVM_PARAMS after HVM_CONTEXT. */
    raw_start(&r);
    raw_rec_hvmctx(&r);
    raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, pd, sizeof(pd));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "after HVM_CONTEXT");
    free(r.b);
    raw_start(&r);
    raw_rec_hvmctx(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, sizeof(tsc));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "after HVM_CONTEXT");
    free(r.b);
    raw_start(&r);
    raw_rec_hvmctx(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, params, sizeof(params));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "after HVM_CONTEXT");
    free(r.b);

    /* TSC_INFO, HVM_PARAMS, DOMAIN_CONTEXT, XENSTORE_STATE twice. */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, sizeof(tsc));
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, sizeof(tsc));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "X86_TSC_INFO");
    free(r.b);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, params, sizeof(params));
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, params, sizeof(params));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "HVM_PARAMS");
    free(r.b);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs_good, sizeof(xs_good));
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs_good, sizeof(xs_good));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "XENSTORE_STATE");
    free(r.b);

    /* END without HVM_CONTEXT; END without STATIC_DATA_END. */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_END, NULL, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_MISSING, "without an HVM_CONTEXT");
    free(r.b);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_END, NULL, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_MISSING, "STATIC_DATA_END");
    free(r.b);

    /* END with a body. */
    raw_start(&r);
    raw_rec_hvmctx(&r);
    raw_rec(&r, XKVM_STREAM_REC_END, params, 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "must be 0");
    free(r.b);

    /* v2: no STATIC_DATA_END needed (implied by the first PAGE_DATA), not allowed. */
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 2);
    raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, pd, sizeof(pd));
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 2);
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "version 2");
    free(r.b);
}

/* ---- rejection rules: record bodies ------------------------------------------ */

static void page_data_case(const uint64_t *pfns, uint32_t count, uint32_t nr_data, uint32_t rsvd,
                           const struct xkvm_stream_limits *lim, int code, const char *needle)
{
    size_t len = 8 + 8ull * count + 4096ull * nr_data;
    uint8_t *b = calloc(1, len);
    put_le32(b, count);
    put_le32(b + 4, rsvd);
    for (uint32_t i = 0; i < count; i++)
        put_le64(b + 8 + 8 * i, pfns[i]);
    struct raw r;
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, b, (uint32_t)len);
    raw_finish(&r);
    if (code)
        EXPECT_REJECT(&r, lim, code, needle);
    else
        EXPECT_ACCEPT(&r, lim);
    free(r.b);
    free(b);
}

static void test_reject_page_data(void)
{
    struct xkvm_stream_limits lim = { .max_pfn = 0x100 };
    uint64_t p[4] = { 1, 2, 3, 4 };
    const uint64_t T = XKVM_STREAM_PFN_TYPE_SHIFT;

    page_data_case(p, 4, 4, 0, &lim, 0, NULL);
    page_data_case(p, 4, 4, 1, &lim, XKVM_STREAM_ERR_RESERVED, "reserved field");
    page_data_case(p, 0, 0, 0, &lim, XKVM_STREAM_ERR_BAD_LENGTH, "at least 16");
    {
        uint8_t b[16] = { 0 };      /* count 0 with a pfn's worth of bytes */
        struct raw r;
        raw_start(&r);
        raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, b, 16);
        EXPECT_REJECT(&r, &lim, XKVM_STREAM_ERR_BAD_VALUE, "count is 0");
        free(r.b);
        put_le32(b, 1025);
        r.len = 0;
        raw_start(&r);
        raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, b, 16);
        EXPECT_REJECT(&r, &lim, XKVM_STREAM_ERR_TOO_LARGE, "batch limit");
        free(r.b);
        put_le32(b, 3);             /* 3 pfns claimed, 1 present */
        raw_start(&r);
        raw_rec(&r, XKVM_STREAM_REC_PAGE_DATA, b, 16);
        EXPECT_REJECT(&r, &lim, XKVM_STREAM_ERR_BAD_LENGTH, "too short for 3 pfns");
        free(r.b);
    }
    page_data_case(p, 4, 3, 0, &lim, XKVM_STREAM_ERR_BAD_LENGTH, "4096 * 4 pages");
    page_data_case(p, 4, 5, 0, &lim, XKVM_STREAM_ERR_BAD_LENGTH, "4096 * 4 pages");
    uint64_t q[4] = { 1, 2 | 1ull << 52, 3, 4 };
    page_data_case(q, 4, 4, 0, &lim, XKVM_STREAM_ERR_RESERVED, "pfn[1]");
    uint64_t t5[2] = { 1, 2 | 5ull << T };
    page_data_case(t5, 2, 1, 0, &lim, XKVM_STREAM_ERR_PAGE_TYPE, "reserved page type 0x5");
    uint64_t t1[2] = { 1, 2 | 1ull << T };
    page_data_case(t1, 2, 2, 0, &lim, XKVM_STREAM_ERR_PAGE_TYPE, "PV only");
    uint64_t t9[2] = { 1, 2 | 9ull << T };
    page_data_case(t9, 2, 2, 0, &lim, XKVM_STREAM_ERR_PAGE_TYPE, "PV only");
    uint64_t nodata[4] = { 1, 2 | 0xdull << T, 3 | 0xeull << T, 4 | 0xfull << T };
    page_data_case(nodata, 4, 1, 0, &lim, 0, NULL);
    uint64_t far[2] = { 1, 0x100 };
    page_data_case(far, 2, 2, 0, &lim, XKVM_STREAM_ERR_PFN_RANGE, "pfn[1] 0x100 is beyond the limit 0x100");
    uint64_t farx[2] = { 1, 0x100 | 0xfull << T };   /* no-data types are range-checked too */
    page_data_case(farx, 2, 1, 0, &lim, XKVM_STREAM_ERR_PFN_RANGE, "beyond");
    uint64_t dup[4] = { 7, 2, 3 | 0xfull << T, 7 | 0xeull << T };
    page_data_case(dup, 4, 2, 0, &lim, XKVM_STREAM_ERR_PFN_DUPLICATE, "pfn 0x7 appears twice");
}

static void test_reject_small_records(void)
{
    struct raw r;
    uint8_t tsc[24] = { 0 };

    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, 16);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "must be 24");
    free(r.b);
    put_le32(tsc + 20, 1);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, 24);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "reserved");
    free(r.b);
    put_le32(tsc + 20, 0);
    put_le32(tsc, 3);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_X86_TSC_INFO, tsc, 24);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "mode 3");
    free(r.b);

    uint8_t pr[8 + 16 * 3] = { 0 };
    put_le32(pr, 3);
    put_le64(pr + 8, 1);
    put_le64(pr + 24, 2);
    put_le64(pr + 40, 3);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, pr, 8 + 32);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "8 + 16 * count 3");
    free(r.b);
    put_le64(pr + 40, 39);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, pr, sizeof(pr));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "index 39");
    free(r.b);
    put_le64(pr + 40, 1);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, pr, sizeof(pr));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "index 1 appears twice");
    free(r.b);
    put_le64(pr + 40, 3);
    put_le32(pr + 4, 9);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, pr, sizeof(pr));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "reserved");
    free(r.b);
    put_le32(pr + 4, 0);
    put_le32(pr, 0);                /* errata: zero-content HVM_PARAMS tolerated */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_PARAMS, pr, 8);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);

    uint8_t pol[30] = { 0 };
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_X86_CPUID_POLICY, pol, 30);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "multiple of 24");
    free(r.b);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_X86_MSR_POLICY, pol, 0);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "at least 16");
    free(r.b);
    uint8_t msrp[32] = { 0 };
    put_le32(msrp, 0x10a);
    put_le64(msrp + 8, 0xffffffff00000000ull);  /* high half of val: not reserved */
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_X86_MSR_POLICY, msrp, 16);
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);
    put_le32(msrp + 16 + 4, 1);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_X86_MSR_POLICY, msrp, 32);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_RESERVED, "entry 1: flags 0x1");
    free(r.b);
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, pol, 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "must be 0");
    free(r.b);
}

static void test_reject_extensions(void)
{
    struct raw r;
    size_t dn;
    uint8_t *d = domctx_good(&dn);

    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONTEXT, d, (uint32_t)dn);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);

    d[0] ^= 0x40;                   /* START -> unknown ctx type */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONTEXT, d, (uint32_t)dn);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN_CONTEXT, "DOMAIN_CONTEXT");
    free(r.b);
    d[0] ^= 0x40;

    uint8_t *d2 = calloc(1, dn + 8);
    memcpy(d2, d, dn);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONTEXT, d2, (uint32_t)dn + 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DOMAIN_CONTEXT, "8 bytes after");
    free(r.b);
    free(d2);
    free(d);

    uint8_t xs[24];
    memcpy(xs, xs_good, sizeof(xs));
    xs[0] = 'X';
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs, sizeof(xs));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "ident");
    free(r.b);
    memcpy(xs, xs_good, sizeof(xs));
    xs[11] = 3;
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs, sizeof(xs));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "version 3");
    free(r.b);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs_good, 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "at least 16");
    free(r.b);

    /* Bad HVM context blob inside the record. */
    uint8_t blob[16] = { 1, 0, 0, 0, 8, 0, 0, 0 };  /* HEADER with length 8 */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_HVM_CONTEXT, blob, sizeof(blob));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_HVM_CONTEXT, "HEADER length 8, must be 24");
    free(r.b);
}

/* ---- COMPRESSED --------------------------------------------------------------- */

/* A XENSTORE_STATE body of n bytes: a valid header, then zeros and a marker. */
static uint8_t *xs_body(uint32_t n)
{
    uint8_t *b = calloc(1, n);
    if (!b)
        abort();
    memcpy(b, xs_good, 16);
    b[n - 1] = 0x5a;
    return b;
}

/* A COMPRESSED body holding (type, held_len), its LZ4 bytes made from src. */
static uint32_t compressed_body(uint8_t *out, size_t cap, uint32_t type, uint32_t held_len,
                                uint8_t method, const void *src, uint32_t srclen)
{
    put_le32(out, type);
    put_le32(out + 4, held_len);
    memset(out + 8, 0, 4);
    out[8] = method;
    int n = LZ4_compress_default(src, (char *)out + 12, (int)srclen, (int)(cap - 12));
    if (n <= 0)
        abort();
    return 12 + (uint32_t)n;
}

/* The writer compresses the state records where it is smaller; the readers give them back. */
static void test_compressed_roundtrip(void)
{
    for (int compat = 0; compat < 2; compat++) {
        struct xkvm_stream_writer w;
        struct xkvm_stream_writer_opts o = { .compress_state = true,
                                             .compat = compat ? XKVM_STREAM_COMPAT_XEN_4_17
                                                              : XKVM_STREAM_COMPAT_NONE };
        REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
        size_t hn;
        uint8_t *h = hvmctx_good(&hn), *xs = xs_body(4096);
        CHECK(xkvm_stream_write_static_data_end(&w) == 0);
        CHECK(xkvm_stream_write_hvm_context(&w, h, (uint32_t)hn) == 0);
        if (!compat)
            CHECK_MSG(xkvm_stream_write_xenstore_state(&w, xs, 4096) == 0, "%s", w.err.msg);
        CHECK(xkvm_stream_write_end(&w) == 0);
        size_t len;
        const uint8_t *out = xkvm_stream_writer_data(&w, &len);
        CHECK(compat ? len < 4096 : len < 4096 + hn);
        struct xkvm_stream_reader r;
        struct xkvm_stream_record rec;
        REQUIRE(xkvm_stream_reader_init_buffer(&r, out, len, NULL) == 0);
        unsigned seen = 0;
        int rc;
        while ((rc = xkvm_stream_next(&r, &rec)) > 0) {
            CHECK(rec.type != XKVM_STREAM_REC_COMPRESSED);
            if (rec.type == XKVM_STREAM_REC_XENSTORE_STATE) {
                seen++;
                CHECK_EQ(rec.length, 4096u);
                CHECK(rec.compressed_length > 0 && rec.compressed_length < 200);
                CHECK(!memcmp(rec.body, xs, 4096));
            }
            if (rec.type == XKVM_STREAM_REC_HVM_CONTEXT)
                CHECK(rec.length == hn && !memcmp(rec.body, h, hn));
        }
        CHECK_MSG(rc == 0, "%s", r.err.msg);
        CHECK_EQ(seen, compat ? 0u : 1u);
        CHECK_EQ(r.info.bytes, (uint64_t)len);     /* the wire's bytes, not the held ones */
        /* Nothing compressed in a compat stream: a Xen reader would refuse it. */
        if (compat)
            CHECK(memmem(out, len, "\x07\x4b\x58\x7f", 4) == NULL);
        xkvm_stream_reader_release(&r);
        xkvm_stream_writer_release(&w);
        free(h);
        free(xs);
    }
}

/* What a COMPRESSED record may not be: each refused, by both readers, with why. */
static void test_compressed_reject(void)
{
    uint8_t *xs = xs_body(4096), z[4096 + 64] __attribute__((aligned(8)));
    struct raw r;
    uint32_t n;
    struct { uint32_t type, held; uint8_t method; int flip; enum xkvm_stream_errcode code;
             const char *needle; } bad[] = {
        { XKVM_STREAM_REC_XENSTORE_STATE, 4096, 2, -1, XKVM_STREAM_ERR_UNSUPPORTED, "method 2" },
        { XKVM_STREAM_REC_PAGE_DATA, 4096, 1, -1, XKVM_STREAM_ERR_BAD_VALUE, "travel compressed" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 4096, 1, 9, XKVM_STREAM_ERR_RESERVED, "reserved" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 4097, 1, -1, XKVM_STREAM_ERR_BAD_VALUE, "uncompress" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 4095, 1, -1, XKVM_STREAM_ERR_BAD_VALUE, "uncompress" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 4096, 1, 12, XKVM_STREAM_ERR_BAD_VALUE, "" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 1u << 30, 1, -1, XKVM_STREAM_ERR_TOO_LARGE, "cap" },
        { XKVM_STREAM_REC_XENSTORE_STATE, 1u << 20, 1, -1, XKVM_STREAM_ERR_BAD_VALUE, "cannot hold" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = compressed_body(z, sizeof(z), bad[i].type, bad[i].held, bad[i].method, xs, 4096);
        if (bad[i].flip >= 0)
            z[bad[i].flip] ^= 0xff;
        raw_start(&r);
        raw_rec(&r, XKVM_STREAM_REC_COMPRESSED, z, n);
        raw_finish(&r);
        EXPECT_REJECT(&r, NULL, bad[i].code, bad[i].needle);
        free(r.b);
    }
    /* The record it holds is checked as a plain one: a bad ident, a second copy. */
    xs[0] = 'X';
    n = compressed_body(z, sizeof(z), XKVM_STREAM_REC_XENSTORE_STATE, 4096, 1, xs, 4096);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_COMPRESSED, z, n);
    raw_finish(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "ident");
    free(r.b);
    xs[0] = 'x';
    n = compressed_body(z, sizeof(z), XKVM_STREAM_REC_XENSTORE_STATE, 4096, 1, xs, 4096);
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_COMPRESSED, z, n);
    raw_rec(&r, XKVM_STREAM_REC_XENSTORE_STATE, xs, 4096);
    raw_finish(&r);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "only one");
    free(r.b);
    /* And a good one is taken. */
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_COMPRESSED, z, n);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    free(r.b);
    free(xs);
}

/* LOCAL_MEMORY body: nfds, then runs (gfn, frame, count, fd index). */
static uint32_t local_body(uint8_t *b, uint32_t nfds, uint32_t n, const uint64_t (*runs)[4])
{
    put_le32(b, nfds);
    put_le32(b + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        put_le64(b + 8 + 24 * i, runs[i][0]);
        put_le64(b + 16 + 24 * i, runs[i][1]);
        put_le32(b + 24 + 24 * i, (uint32_t)runs[i][2]);
        put_le32(b + 28 + 24 * i, (uint32_t)runs[i][3]);
    }
    return 8 + 24 * n;
}

/* LOCAL_MEMORY (same-host migration): dynamic, once, before HVM_CONTEXT, runs checked. */
static void test_local_memory(void)
{
    static const uint64_t good[2][4] = { { 0, 100, 160, 0 }, { 0x100, 7, 3, 1 } };
    uint8_t b[8 + 24 * 2] __attribute__((aligned(8)));
    struct raw r;
    raw_start(&r);
    raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, 2, 2, good));
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);
    struct xkvm_stream_reader rd;
    struct xkvm_stream_record rec;
    struct xkvm_stream_local_run run = { 0 };
    REQUIRE(xkvm_stream_reader_init_buffer(&rd, r.b, r.len, NULL) == 0);
    while (xkvm_stream_next(&rd, &rec) > 0)
        if (rec.type == XKVM_STREAM_REC_LOCAL_MEMORY)
            xkvm_stream_local_run_get(&rec, 1, &run);
    CHECK_EQ(run.gfn, 0x100);
    CHECK_EQ(run.frame, 7);
    CHECK_EQ(run.count, 3);
    CHECK_EQ(run.fd_index, 1);
    xkvm_stream_reader_release(&rd);
    free(r.b);

    static const struct { uint32_t nfds; uint64_t run[4]; int code; const char *needle; } bad[] = {
        { 0, { 0, 0, 1, 0 }, XKVM_STREAM_ERR_BAD_VALUE, "memfds" },
        { XKVM_STREAM_LOCAL_FDS_MAX + 1, { 0, 0, 1, 0 }, XKVM_STREAM_ERR_BAD_VALUE, "memfds" },
        { 1, { 0, 0, 0, 0 }, XKVM_STREAM_ERR_BAD_VALUE, "empty" },
        { 1, { 0, 0, 1, 1 }, XKVM_STREAM_ERR_BAD_VALUE, "names no memfd" },
        { 1, { UINT64_MAX, 0, 2, 0 }, XKVM_STREAM_ERR_BAD_VALUE, "wraps" },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_start(&r);
        raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, bad[i].nfds, 1, &bad[i].run));
        EXPECT_REJECT(&r, NULL, bad[i].code, bad[i].needle);
        free(r.b);
    }
    raw_start(&r);      /* a length that does not match the runs */
    raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, 1, 2, good) - 8);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_LENGTH, "runs need");
    free(r.b);
    raw_start(&r);      /* twice */
    raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, 2, 2, good));
    raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, 2, 2, good));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "only one");
    free(r.b);
    raw_start(&r);      /* after HVM_CONTEXT */
    raw_rec_hvmctx(&r);
    raw_rec(&r, XKVM_STREAM_REC_LOCAL_MEMORY, b, local_body(b, 2, 2, good));
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "HVM_CONTEXT");
    free(r.b);
    CHECK_STR_CONTAINS(xkvm_stream_rec_name(XKVM_STREAM_REC_LOCAL_MEMORY), "LOCAL_MEMORY");
}

/* DOMAIN_CONFIG (static, once, no NUL) and SYNC (optional: skipped, framing checked). */
static void test_config_and_sync(void)
{
    static const char cfg[] = "{\"domid\":3,\"config\":{}}";
    struct raw r;
    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONFIG, cfg, sizeof(cfg) - 1);
    raw_rec(&r, XKVM_STREAM_REC_STATIC_DATA_END, NULL, 0);
    raw_rec(&r, XKVM_STREAM_REC_SYNC, NULL, 0);
    raw_finish(&r);
    EXPECT_ACCEPT(&r, NULL);

    struct xkvm_stream_reader rd;
    struct xkvm_stream_record rec;
    bool saw_cfg = false, saw_sync = false;
    REQUIRE(xkvm_stream_reader_init_buffer(&rd, r.b, r.len, NULL) == 0);
    while (xkvm_stream_next(&rd, &rec) > 0) {
        if (rec.type == XKVM_STREAM_REC_DOMAIN_CONFIG)
            saw_cfg = rec.length == sizeof(cfg) - 1 && !memcmp(rec.body, cfg, rec.length);
        if (rec.type == XKVM_STREAM_REC_SYNC)
            saw_sync = rec.skipped;
    }
    CHECK(saw_cfg);
    CHECK(saw_sync);
    xkvm_stream_reader_release(&rd);
    free(r.b);

    raw_start(&r);      /* after STATIC_DATA_END */
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONFIG, cfg, sizeof(cfg) - 1);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_ORDER, "STATIC_DATA_END");
    free(r.b);

    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONFIG, cfg, sizeof(cfg));   /* with its NUL */
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_BAD_VALUE, "NUL");
    free(r.b);

    memset(&r, 0, sizeof(r));
    raw_headers(&r, 3);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONFIG, cfg, sizeof(cfg) - 1);
    raw_rec(&r, XKVM_STREAM_REC_DOMAIN_CONFIG, cfg, sizeof(cfg) - 1);
    EXPECT_REJECT(&r, NULL, XKVM_STREAM_ERR_DUPLICATE, "only one");
    free(r.b);

    /* The writer: in order, and never in compat mode. */
    struct xkvm_stream_writer w;
    REQUIRE(xkvm_stream_writer_init_buffer(&w, NULL) == 0);
    CHECK_EQ(xkvm_stream_write_domain_config(&w, cfg, sizeof(cfg) - 1), 0);
    CHECK_EQ(xkvm_stream_write_static_data_end(&w), 0);
    CHECK_EQ(xkvm_stream_write_domain_config(&w, cfg, sizeof(cfg) - 1), -1);
    xkvm_stream_writer_release(&w);
    struct xkvm_stream_writer_opts o = { .compat = XKVM_STREAM_COMPAT_XEN_4_17 };
    REQUIRE(xkvm_stream_writer_init_buffer(&w, &o) == 0);
    CHECK_EQ(xkvm_stream_write_domain_config(&w, cfg, sizeof(cfg) - 1), -1);
    CHECK_EQ(w.err.code, XKVM_STREAM_ERR_COMPAT);
    xkvm_stream_writer_release(&w);
}

/* ---- HVM context blob --------------------------------------------------------- */

struct blob {
    uint8_t b[8192];
    size_t len;
};
static void blob_add(struct blob *bl, uint16_t code, uint16_t inst, uint32_t len, const void *data)
{
    bl->b[bl->len] = (uint8_t)code;
    bl->b[bl->len + 1] = (uint8_t)(code >> 8);
    bl->b[bl->len + 2] = (uint8_t)inst;
    bl->b[bl->len + 3] = (uint8_t)(inst >> 8);
    put_le32(bl->b + bl->len + 4, len);
    bl->len += 8;
    if (data)
        memcpy(bl->b + bl->len, data, len);
    else
        memset(bl->b + bl->len, 0, len);
    bl->len += len;
}
static void blob_header(struct blob *bl, uint32_t magic)
{
    uint8_t h[24] = { 0 };
    put_le32(h, magic);
    put_le32(h + 4, 1);
    bl->len = 0;
    blob_add(bl, 1, 0, 24, h);
}

#define BLOB_REJECT(bl, needle) do {                                              \
    struct xkvm_stream_error _e;                                                   \
    int _rc = xkvm_hvmctx_verify((bl)->b, (bl)->len, 4, &_e);                     \
    CHECK_MSG(_rc == -1, "blob accepted, expected \"%s\"", needle);               \
    if (_rc == -1) {                                                               \
        CHECK_EQ(_e.code, XKVM_STREAM_ERR_HVM_CONTEXT);                            \
        CHECK_STR_CONTAINS(_e.reason, needle);                                     \
    }                                                                              \
} while (0)

static void test_hvmctx(void)
{
    struct blob bl;
    struct xkvm_stream_error e;
    uint8_t msr[8 + 32] = { 0 }, xs[700] = { 0 };

    /* Good: every fixed type at its size, XSAVE and MSR variable. */
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    for (uint16_t c = 2; c <= XKVM_HVMCTX_CODE_MAX; c++)
        if (xkvm_hvmctx_fixed_size(c))
            blob_add(&bl, c, 0, xkvm_hvmctx_fixed_size(c), NULL);
    blob_add(&bl, XKVM_HVMCTX_PIC, 1, 8, NULL);
    blob_add(&bl, XKVM_HVMCTX_CPU, 3, XKVM_HVMCTX_CPU_SIZE, NULL);
    put_le32(msr, 2);
    blob_add(&bl, XKVM_HVMCTX_CPU_MSR, 0, sizeof(msr), msr);
    put_le64(xs + 8, 3);
    put_le64(xs + 16, 7);
    blob_add(&bl, XKVM_HVMCTX_CPU_XSAVE, 0, sizeof(xs), xs);
    blob_add(&bl, 0, 0, 0, NULL);
    CHECK_MSG(xkvm_hvmctx_verify(bl.b, bl.len, 4, &e) == 0, "%s", e.msg);

    struct xkvm_hvmctx_walker *w = malloc(sizeof(*w));
    struct xkvm_hvmctx_entry ent;
    unsigned n = 0;
    int rc;
    xkvm_hvmctx_walker_init(w, bl.b, bl.len, 4);
    while ((rc = xkvm_hvmctx_next(w, &ent)) > 0)
        n++;
    CHECK_EQ(rc, 0);
    CHECK_EQ(n, w->nr_entries);
    CHECK_EQ(ent.typecode, 0);
    free(w);

    size_t good = bl.len;
    bl.len = good - 8;
    BLOB_REJECT(&bl, "ends without END");
    bl.len = good - 4;
    BLOB_REJECT(&bl, "descriptor cut short");
    bl.len = good;
    blob_add(&bl, 0, 0, 0, NULL);
    BLOB_REJECT(&bl, "bytes after END");

    blob_header(&bl, 0x12345678);
    blob_add(&bl, 0, 0, 0, NULL);
    BLOB_REJECT(&bl, "HEADER magic");
    bl.len = 0;
    blob_add(&bl, 2, 0, XKVM_HVMCTX_CPU_SIZE, NULL);
    BLOB_REJECT(&bl, "first entry is CPU");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 1, 0, 24, NULL);
    BLOB_REJECT(&bl, "HEADER is not the first");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 2, 0, 1024, NULL);
    blob_add(&bl, 0, 0, 0, NULL);
    BLOB_REJECT(&bl, "CPU length 1024, must be 1032");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 5, 0, 24, NULL);
    blob_add(&bl, 5, 0, 24, NULL);
    BLOB_REJECT(&bl, "LAPIC instance 0 appears twice");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 5, 4, 24, NULL);
    BLOB_REJECT(&bl, "LAPIC instance 4, must be < 4");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 3, 2, 8, NULL);
    BLOB_REJECT(&bl, "PIC instance 2, must be < 2");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 4, 1, 400, NULL);
    BLOB_REJECT(&bl, "IOAPIC instance 1, must be < 1");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 21, 0, 8, NULL);
    BLOB_REJECT(&bl, "unknown typecode 21");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 0, 0, 8, NULL);
    BLOB_REJECT(&bl, "END length 8");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 2, 0, 1032, NULL);
    bl.len -= 1;
    put_le32(bl.b + 32 + 4, 5000);
    BLOB_REJECT(&bl, "runs past the blob's end");
    /* CPU_MSR */
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    put_le32(msr, 3);
    blob_add(&bl, 20, 0, sizeof(msr), msr);
    BLOB_REJECT(&bl, "CPU_MSR length 40, must be 8 + 16 * count 3");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    put_le32(msr, 2);
    put_le32(msr + 8 + 16 + 4, 1);
    blob_add(&bl, 20, 0, sizeof(msr), msr);
    BLOB_REJECT(&bl, "msr[1] reserved");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    put_le32(msr, 0x10000000);
    blob_add(&bl, 20, 0, sizeof(msr), msr);
    BLOB_REJECT(&bl, "exceeds");
    /* CPU_XSAVE */
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 16, 0, 599, NULL);
    BLOB_REJECT(&bl, "CPU_XSAVE length 599");
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    put_le64(xs + 8, 0xf);
    blob_add(&bl, 16, 0, sizeof(xs), xs);
    BLOB_REJECT(&bl, "outside xcr0_accum");
    put_le64(xs + 8, 3);
    put_le64(xs + 24 + 512, 0x10);
    blob_header(&bl, XKVM_HVMCTX_FILE_MAGIC);
    blob_add(&bl, 16, 0, sizeof(xs), xs);
    BLOB_REJECT(&bl, "xstate_bv");
    /* Empty blob. */
    bl.len = 0;
    BLOB_REJECT(&bl, "ends without END");
}

static void test_hvmctx_builder(void)
{
    struct xkvm_hvmctx_builder b;
    uint8_t cpu[XKVM_HVMCTX_CPU_SIZE] = { 0 };
    REQUIRE(xkvm_hvmctx_builder_init(&b, 2, 0, 0, 0) == 0);
    CHECK_EQ(xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, sizeof(cpu)), 0);
    CHECK_EQ(xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 1, cpu, sizeof(cpu)), 0);
    CHECK_EQ(xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 2, cpu, sizeof(cpu)), -1);
    CHECK_STR_CONTAINS(b.err.msg, "instance 2");
    CHECK_EQ(xkvm_hvmctx_finish(&b), -1);      /* sticky */
    xkvm_hvmctx_builder_release(&b);

    REQUIRE(xkvm_hvmctx_builder_init(&b, 2, 0, 0, 0) == 0);
    CHECK_EQ(xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, 100), -1);
    xkvm_hvmctx_builder_release(&b);

    REQUIRE(xkvm_hvmctx_builder_init(&b, 2, 0, 0, 0) == 0);
    CHECK_EQ(xkvm_hvmctx_finish(&b), 0);
    CHECK_EQ(xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, sizeof(cpu)), -1);
    CHECK_STR_CONTAINS(b.err.msg, "after END");
    size_t len;
    void *p = xkvm_hvmctx_take(&b, &len);
    CHECK_EQ(len, 8 + 24 + 8);
    CHECK_EQ(xkvm_hvmctx_verify(p, len, 2, NULL), 0);
    free(p);
    xkvm_hvmctx_builder_release(&b);
    CHECK(xkvm_hvmctx_name(XKVM_HVMCTX_CPU_MSR) && !strcmp(xkvm_hvmctx_name(20), "CPU_MSR"));
    CHECK(xkvm_hvmctx_name(21) == NULL);
}

static void test_names(void)
{
    CHECK(!strcmp(xkvm_stream_rec_name(XKVM_STREAM_REC_PAGE_DATA), "PAGE_DATA"));
    CHECK(!strcmp(xkvm_stream_rec_name(XKVM_STREAM_REC_DOMAIN_CONTEXT), "DOMAIN_CONTEXT"));
    CHECK(xkvm_stream_rec_name(0x13) == NULL);
    CHECK(!strcmp(xkvm_stream_errcode_name(XKVM_STREAM_ERR_PFN_DUPLICATE), "pfn-duplicate"));
    for (int c = 0; c <= XKVM_STREAM_ERR_ARG; c++)
        CHECK_MSG(strcmp(xkvm_stream_errcode_name(c), "unknown"), "code %d has no name", c);
    /* Extensions are mandatory: outside the optional range. */
    CHECK(!(XKVM_STREAM_REC_DOMAIN_CONTEXT & XKVM_STREAM_REC_OPTIONAL));
    CHECK(!(XKVM_STREAM_REC_XENSTORE_STATE & XKVM_STREAM_REC_OPTIONAL));
}

int main(void)
{
    RUN_TEST(test_roundtrip_buffer);
    RUN_TEST(test_roundtrip_no_skip_zero);
    RUN_TEST(test_roundtrip_page_refs);
    RUN_TEST(test_deferred_pages);
    RUN_TEST(test_roundtrip_fd_incremental);
    RUN_TEST(test_fd_truncated);
    RUN_TEST(test_compat);
    RUN_TEST(test_zero_pages);
    RUN_TEST(test_writer_rules);
    RUN_TEST(test_postcopy_tail);
    RUN_TEST(test_postcopy_recovery_tail);
    RUN_TEST(test_writer_fd_error);
    RUN_TEST(test_reject_image_header);
    RUN_TEST(test_reject_domain_header);
    RUN_TEST(test_reject_framing);
    RUN_TEST(test_reject_unsupported);
    RUN_TEST(test_reject_order);
    RUN_TEST(test_reject_page_data);
    RUN_TEST(test_reject_small_records);
    RUN_TEST(test_reject_extensions);
    RUN_TEST(test_compressed_roundtrip);
    RUN_TEST(test_compressed_reject);
    RUN_TEST(test_config_and_sync);
    RUN_TEST(test_local_memory);
    RUN_TEST(test_hvmctx);
    RUN_TEST(test_hvmctx_builder);
    RUN_TEST(test_names);
    HARNESS_EXIT();
}
