/*
 * Post-copy's wire format (src/stream/postcopy_wire.c) against a hostile peer: the
 * input's first byte picks a POSTCOPY_MISSING body (the source's), a page request
 * line or a recovery's MISSING line (the destination's). An accepted body's ranges, set in a bitmap and encoded
 * again, give back the same bytes; an accepted request stays inside the limit.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xkvm/postcopy.h"

#define LIMIT 4096u             /* pfns of the pretend domain */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int set_range(void *arg, uint64_t first, uint64_t count)
{
    uint64_t *bm = arg;
    for (uint64_t p = first; p < first + count; p++)
        bm[p / 64] |= 1ull << (p % 64);
    return 0;
}

static void fuzz_missing(const uint8_t *data, size_t size)
{
    uint64_t bm[LIMIT / 64] = { 0 };
    const char *why = NULL;
    long n = xkvm_postcopy_missing_decode(data, size, LIMIT, set_range, bm, &why);
    if (n < 0) {
        if (!why)
            abort();
        return;
    }
    static uint8_t again[8 + LIMIT * 16];
    long len = xkvm_postcopy_missing_encode(bm, LIMIT, again, sizeof(again), NULL);
    if (len != (long)size || memcmp(again, data, size))
        abort();
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    char line[128];
    if (size >= sizeof(line))
        size = sizeof(line) - 1;
    memcpy(line, data, size);
    line[size] = '\0';
    uint64_t pfn;
    unsigned count;
    if (xkvm_postcopy_request_parse(line, LIMIT, &pfn, &count))
        return;
    if (!count || count > XKVM_POSTCOPY_REQ_MAX || pfn + count > LIMIT)
        abort();
    char again[64];
    if (xkvm_postcopy_request_format(again, sizeof(again), pfn, count) < 0 ||
        strcmp(again, line))
        abort();
}

static void fuzz_missing_line(const uint8_t *data, size_t size)
{
    char line[128];
    if (size >= sizeof(line))
        size = sizeof(line) - 1;
    memcpy(line, data, size);
    line[size] = '\0';
    uint64_t pfn, count;
    if (xkvm_postcopy_missing_line_parse(line, LIMIT, &pfn, &count))
        return;
    if (!count || pfn >= LIMIT || count > LIMIT - pfn)
        abort();
    char again[64];
    snprintf(again, sizeof(again), "MISSING %" PRIx64 " %" PRIu64, pfn, count);
    if (strcmp(again, line))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    if (data[0] % 3 == 1)
        fuzz_request(data + 1, size - 1);
    else if (data[0] % 3 == 2)
        fuzz_missing_line(data + 1, size - 1);
    else
        fuzz_missing(data + 1, size - 1);
    return 0;
}
