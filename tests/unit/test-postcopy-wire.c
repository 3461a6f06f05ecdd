/*
 * Unit tests for src/stream/postcopy_wire.c: the POSTCOPY_MISSING record's ranges and
 * the destination's page requests (include/xkvm/postcopy.h, docs/stream.md).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "xkvm/postcopy.h"

HARNESS_MAIN_STATE("postcopy-wire");

struct collect { uint64_t first[16], count[16]; unsigned n; };

static int collect_range(void *arg, uint64_t first, uint64_t count)
{
    struct collect *c = arg;
    if (c->n < 16) {
        c->first[c->n] = first;
        c->count[c->n] = count;
    }
    c->n++;
    return 0;
}

/* Bits set in a bitmap come back as maximal ranges, across word boundaries. */
static void test_encode_decode_roundtrip(void)
{
    uint64_t bm[4] = { 0 };
    bm[0] = 1ull << 3 | 1ull << 4 | 1ull << 63;     /* 3-4, 63-64 (crosses a word) */
    bm[1] = 1ull << 0;
    bm[3] = 1ull << 63;                             /* 255: the last pfn */
    uint8_t buf[256];
    size_t need = 0;
    long len = xkvm_postcopy_missing_encode(bm, 256, buf, sizeof(buf), &need);
    CHECK_EQ(len, 8 + 3 * 16);
    CHECK_EQ(need, (size_t)len);
    struct collect c = { 0 };
    const char *why = NULL;
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, (size_t)len, 256, collect_range, &c, &why), 5);
    REQUIRE(c.n == 3);
    CHECK(c.first[0] == 3 && c.count[0] == 2);
    CHECK(c.first[1] == 63 && c.count[1] == 2);
    CHECK(c.first[2] == 255 && c.count[2] == 1);
    /* One pfn short of the domain: the last range is refused. */
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, (size_t)len, 255, NULL, NULL, &why), -EINVAL);
    CHECK_STR_CONTAINS(why, "beyond");
}

static void test_encode_empty_and_short_buffer(void)
{
    uint64_t bm[2] = { 0 };
    uint8_t buf[64];
    CHECK_EQ(xkvm_postcopy_missing_encode(bm, 128, buf, sizeof(buf), NULL), 8);
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, 8, 128, NULL, NULL, NULL), 0);
    bm[1] = 0x5;                                    /* two ranges: 40 bytes */
    size_t need = 0;
    CHECK_EQ(xkvm_postcopy_missing_encode(bm, 128, buf, 39, &need), -ENOSPC);
    CHECK_EQ(need, 40);
}

static size_t body(uint8_t *buf, uint64_t n, const uint64_t *pairs, unsigned npairs)
{
    memcpy(buf, &n, 8);
    memcpy(buf + 8, pairs, npairs * 8);
    return 8 + npairs * 8;
}

/* Each rule of the record refuses on its own. */
static void test_decode_refuses(void)
{
    uint8_t buf[128];
    const char *why = NULL;
    const uint64_t touching[] = { 10, 2, 12, 1 }, overlap[] = { 10, 4, 12, 1 },
                   backwards[] = { 20, 1, 10, 1 }, empty[] = { 10, 0 },
                   wrap[] = { 10, UINT64_MAX }, fine[] = { 10, 2, 13, 1 };
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 2, touching, 4), 100, NULL, NULL,
                                          &why), -EINVAL);
    CHECK_STR_CONTAINS(why, "touching");
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 2, overlap, 4), 100, NULL, NULL,
                                          &why), -EINVAL);
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 2, backwards, 4), 100, NULL, NULL,
                                          &why), -EINVAL);
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 1, empty, 2), 100, NULL, NULL,
                                          &why), -EINVAL);
    CHECK_STR_CONTAINS(why, "empty");
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 1, wrap, 2), 100, NULL, NULL,
                                          &why), -EINVAL);
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 3, fine, 4), 100, NULL, NULL,
                                          &why), -EINVAL);     /* count says 3, has 2 */
    CHECK_STR_CONTAINS(why, "length");
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, 7, 100, NULL, NULL, &why), -EINVAL);
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 2, fine, 4), 100, NULL, NULL,
                                          &why), 3);
}

static int stop_at_second(void *arg, uint64_t first, uint64_t count)
{
    unsigned *n = arg;
    return ++*n == 2 ? -ECANCELED : 0;
}

static void test_decode_callback_error_stops(void)
{
    uint8_t buf[64];
    const uint64_t r[] = { 1, 1, 5, 1 };
    unsigned n = 0;
    CHECK_EQ(xkvm_postcopy_missing_decode(buf, body(buf, 2, r, 4), 100, stop_at_second, &n,
                                          NULL), -ECANCELED);
    CHECK_EQ(n, 2);
}

static void test_request_lines(void)
{
    char line[64];
    uint64_t pfn = 0;
    unsigned count = 0;
    CHECK(xkvm_postcopy_request_format(line, sizeof(line), 0xabc12, 3) > 0);
    CHECK(!strcmp(line, "PAGE abc12 3"));
    CHECK_EQ(xkvm_postcopy_request_parse(line, 0x100000, &pfn, &count), 0);
    CHECK(pfn == 0xabc12 && count == 3);
    static const char *const bad[] = {
        "PAGE abc12 0", "PAGE abc12 65", "PAGE abc12", "PAGE  1 1", "PAGE 1 1 ",
        "PAGE -1 1", "PAGE 0x1 1", "PAGE ABC 1", "page 1 1", "PAGE fffff 2",
        "PAGE 10000000000000 1", "PAGE 1 0001", "PAGE 01 1", "PAGE 1 01", "",
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_MSG(xkvm_postcopy_request_parse(bad[i], 0x100000, &pfn, &count) == -EINVAL,
                  "accepted \"%s\"", bad[i]);
    CHECK_EQ(xkvm_postcopy_request_parse("PAGE 0 1", 0x100000, &pfn, &count), 0);
    CHECK(pfn == 0 && count == 1);
    CHECK_EQ(xkvm_postcopy_request_format(line, 8, 0xabc12, 3), -ENOSPC);
}

/* A recovery's MISSING lines: strict numbers, a non-empty range inside the domain. */
static void test_missing_lines(void)
{
    uint64_t pfn = 0, count = 0;
    CHECK_EQ(xkvm_postcopy_missing_line_parse("MISSING abc12 300", 0x100000, &pfn, &count), 0);
    CHECK(pfn == 0xabc12 && count == 300);
    CHECK_EQ(xkvm_postcopy_missing_line_parse("MISSING 0 1048576", 0x100000, &pfn, &count), 0);
    CHECK(pfn == 0 && count == 0x100000);
    static const char *const bad[] = {
        "MISSING abc12 0", "MISSING 0 1048577", "MISSING fffff 2", "MISSING 100000 1",
        "MISSING -1 1", "MISSING 1 -1", "MISSING 0x1 1", "MISSING 01 1", "MISSING 1 01",
        "MISSING  1 1", "MISSING 1 1 ", "MISSING 1", "missing 1 1", "PAGE 1 1", "",
        "MISSING 1 99999999999999999999",
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_MSG(xkvm_postcopy_missing_line_parse(bad[i], 0x100000, &pfn, &count) == -EINVAL,
                  "accepted \"%s\"", bad[i]);
}

int main(void)
{
    RUN_TEST(test_encode_decode_roundtrip);
    RUN_TEST(test_encode_empty_and_short_buffer);
    RUN_TEST(test_decode_refuses);
    RUN_TEST(test_decode_callback_error_stops);
    RUN_TEST(test_request_lines);
    RUN_TEST(test_missing_lines);
    HARNESS_EXIT();
}
