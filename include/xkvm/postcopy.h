/*
 * Post-copy's wire format (docs/stream.md "Post-copy", docs/migration.md "Post-copy"):
 * the record that hands the guest over with pages still at the source, and the page
 * requests the destination sends back. Codec: src/stream/postcopy_wire.c (no I/O),
 * tests/unit/test-postcopy-wire.c, tests/fuzz/fuzz-postcopy-wire.c.
 */
#ifndef XKVM_POSTCOPY_H
#define XKVM_POSTCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * POSTCOPY_MISSING (mandatory xkvm record, after the last pre-copy PAGE_DATA and
 * before the state records): the pfns whose contents the destination does not have
 * yet. An xkvmd that does not know it refuses the stream as it refuses any unknown
 * mandatory record, before anything runs there.
 *
 *   uint64_t nr_ranges;
 *   struct { uint64_t first_pfn; uint64_t count; } range[nr_ranges];
 *
 * Little-endian. Ranges in increasing order, not overlapping and not touching (a
 * range is as long as it can be), count >= 1, every pfn below the domain's limit.
 */
#define XKVM_STREAM_REC_POSTCOPY_MISSING    0x7F584B05u
/*
 * POSTCOPY_DONE (mandatory, empty): after RUNNING the source sends the missing pages
 * as PAGE_DATA records (requested ones first) and ends with this one; the
 * destination answers POSTCOPY-DONE on the back channel and the source may destroy
 * its copy.
 */
#define XKVM_STREAM_REC_POSTCOPY_DONE       0x7F584B06u

#define XKVM_POSTCOPY_RANGES_MAX    (1u << 20)

struct xkvm_postcopy_range {
    uint64_t first_pfn;
    uint64_t count;
};

/*
 * Encode the set bits of bitmap (nr_pfns bits) as a POSTCOPY_MISSING body into buf.
 * Returns the body's length, or -ENOSPC when cap is too small (*need: the size
 * needed), -E2BIG over XKVM_POSTCOPY_RANGES_MAX ranges.
 */
long xkvm_postcopy_missing_encode(const uint64_t *bitmap, uint64_t nr_pfns, void *buf,
                                  size_t cap, size_t *need);

/*
 * Check a POSTCOPY_MISSING body from the peer (every rule above, pfns < pfn_limit)
 * and call fn for each range (fn may be NULL: check only). Returns the number of
 * pfns named, or -EINVAL (why in *why, a static string) or fn's negative result.
 */
typedef int (*xkvm_postcopy_range_fn)(void *arg, uint64_t first_pfn, uint64_t count);
long xkvm_postcopy_missing_decode(const void *body, size_t len, uint64_t pfn_limit,
                                  xkvm_postcopy_range_fn fn, void *arg, const char **why);

/*
 * Back channel, destination to source, one line each (after RUNNING, mixed with
 * nothing else): "PAGE <pfn hex> <count decimal>", count 1..XKVM_POSTCOPY_REQ_MAX:
 * send these first. The source answers with PAGE_DATA, out of the background order.
 */
#define XKVM_POSTCOPY_REQ_MAX   64u
int xkvm_postcopy_request_format(char *buf, size_t len, uint64_t pfn, unsigned count);
/* Parse a request line (no newline). 0, or -EINVAL for anything else. */
int xkvm_postcopy_request_parse(const char *line, uint64_t pfn_limit, uint64_t *pfn,
                                unsigned *count);

/*
 * Recovery (docs/migration.md, "Recovering a post-copy"): the destination names the
 * pages it still misses, one "MISSING <first pfn hex> <count decimal>" line per range,
 * count >= 1, the range inside the domain. Parse one (no newline): 0, or -EINVAL.
 */
int xkvm_postcopy_missing_line_parse(const char *line, uint64_t pfn_limit, uint64_t *pfn,
                                     uint64_t *count);

#endif
