/*
 * Post-copy's wire format, encode and strict decode, no I/O: see include/xkvm/postcopy.h
 * and docs/stream.md, "Post-copy".
 */
#include "xkvm/postcopy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool bm_bit(const uint64_t *bm, uint64_t i) { return bm[i / 64] >> (i % 64) & 1; }

/* The next run of set bits at or after *pos: true with [first, first+count). */
static bool next_run(const uint64_t *bm, uint64_t nr, uint64_t *pos, uint64_t *first,
                     uint64_t *count)
{
    uint64_t i = *pos;
    while (i < nr) {
        if (i % 64 == 0 && !bm[i / 64]) {
            i += 64;                /* a whole empty word */
            continue;
        }
        if (bm_bit(bm, i))
            break;
        i++;
    }
    if (i >= nr)
        return false;
    uint64_t j = i;
    while (j < nr && bm_bit(bm, j))
        j++;
    *first = i;
    *count = j - i;
    *pos = j;
    return true;
}

long xkvm_postcopy_missing_encode(const uint64_t *bitmap, uint64_t nr_pfns, void *buf,
                                  size_t cap, size_t *need)
{
    uint64_t pos = 0, first, count, n = 0;
    while (next_run(bitmap, nr_pfns, &pos, &first, &count))
        n++;
    if (n > XKVM_POSTCOPY_RANGES_MAX)
        return -E2BIG;
    size_t len = 8 + (size_t)n * 16;
    if (need)
        *need = len;
    if (cap < len)
        return -ENOSPC;
    uint8_t *p = buf;
    memcpy(p, &n, 8);
    p += 8;
    pos = 0;
    while (next_run(bitmap, nr_pfns, &pos, &first, &count)) {
        memcpy(p, &first, 8);
        memcpy(p + 8, &count, 8);
        p += 16;
    }
    return (long)len;
}

long xkvm_postcopy_missing_decode(const void *body, size_t len, uint64_t pfn_limit,
                                  xkvm_postcopy_range_fn fn, void *arg, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    const uint8_t *p = body;
    uint64_t n;
    if (len < 8) {
        *why = "shorter than its range count";
        return -EINVAL;
    }
    memcpy(&n, p, 8);
    if (n > XKVM_POSTCOPY_RANGES_MAX) {
        *why = "more ranges than allowed";
        return -EINVAL;
    }
    if (len != 8 + n * 16) {
        *why = "length does not match its range count";
        return -EINVAL;
    }
    uint64_t next_free = 0, total = 0;      /* the lowest pfn the next range may start at */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t first, count;
        memcpy(&first, p + 8 + i * 16, 8);
        memcpy(&count, p + 16 + i * 16, 8);
        if (!count) {
            *why = "empty range";
            return -EINVAL;
        }
        if (first >= pfn_limit || count > pfn_limit - first) {
            *why = "range beyond the domain's pfns";
            return -EINVAL;
        }
        if (i && first <= next_free) {      /* overlapping, out of order or touching */
            *why = "ranges out of order, overlapping or touching";
            return -EINVAL;
        }
        next_free = first + count;
        total += count;
        if (fn) {
            int rc = fn(arg, first, count);
            if (rc < 0)
                return rc;
        }
    }
    return (long)total;
}

int xkvm_postcopy_request_format(char *buf, size_t len, uint64_t pfn, unsigned count)
{
    int n = snprintf(buf, len, "PAGE %" PRIx64 " %u", pfn, count);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* Digits of base 16 or 10 at *s, at most max_digits, no sign, prefix or leading 0. */
static int parse_number(const char **s, unsigned base, unsigned max_digits, uint64_t *out)
{
    uint64_t v = 0;
    unsigned nd = 0;
    for (const char *c = *s;; c++, nd++) {
        unsigned d;
        if (*c >= '0' && *c <= '9')
            d = (unsigned)(*c - '0');
        else if (base == 16 && *c >= 'a' && *c <= 'f')
            d = (unsigned)(*c - 'a' + 10);
        else
            break;
        if (nd == max_digits)
            return -EINVAL;
        v = v * base + d;
    }
    if (!nd || (nd > 1 && **s == '0'))
        return -EINVAL;
    *s += nd;
    *out = v;
    return 0;
}

int xkvm_postcopy_request_parse(const char *line, uint64_t pfn_limit, uint64_t *pfn,
                                unsigned *count)
{
    if (strncmp(line, "PAGE ", 5))
        return -EINVAL;
    const char *s = line + 5;
    uint64_t p, c;
    if (parse_number(&s, 16, 13, &p) || *s++ != ' ' || parse_number(&s, 10, 3, &c) || *s)
        return -EINVAL;
    if (!c || c > XKVM_POSTCOPY_REQ_MAX || p >= pfn_limit || c > pfn_limit - p)
        return -EINVAL;
    *pfn = p;
    *count = (unsigned)c;
    return 0;
}

int xkvm_postcopy_missing_line_parse(const char *line, uint64_t pfn_limit, uint64_t *pfn,
                                     uint64_t *count)
{
    if (strncmp(line, "MISSING ", 8))
        return -EINVAL;
    const char *s = line + 8;
    uint64_t p, c;
    if (parse_number(&s, 16, 13, &p) || *s++ != ' ' || parse_number(&s, 10, 16, &c) || *s)
        return -EINVAL;
    if (!c || p >= pfn_limit || c > pfn_limit - p)
        return -EINVAL;
    *pfn = p;
    *count = c;
    return 0;
}
