/*
 * The text of a migration's extra data connections (docs/migration.md, "Several
 * connections"; docs/stream.md): the token the destination offers with READY and the
 * line `DATA <token> <index>` an extra connection begins with. I/O-free: the
 * destination parses what any peer sends (tests/unit/test-multiconn-line.c,
 * tests/fuzz/fuzz-multiconn-line.c).
 */
#ifndef XKVM_UTIL_MULTICONN_LINE_H
#define XKVM_UTIL_MULTICONN_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connections a migration may use at most, the main one included. */
#define MULTICONN_MAX           16u
/* A token: 16 random bytes as 32 lower-case hex digits. */
#define MULTICONN_TOKEN_BYTES   16u
#define MULTICONN_TOKEN_LEN     (2u * MULTICONN_TOKEN_BYTES)
#define MULTICONN_DATA_WORD     "DATA"

/* The token for 16 bytes (out: MULTICONN_TOKEN_LEN + 1 bytes). */
void multiconn_token_format(const uint8_t bytes[MULTICONN_TOKEN_BYTES], char *out);

/*
 * A READY line's argument (arg points after "READY"): " <token>" where the destination
 * takes extra connections, then " <feature>" for each feature it offers (an older
 * destination says just "READY", or "READY <token>"; an older source that wants extra
 * connections takes a READY with features for one without a token, and uses one).
 * multiconn_ready_token: 0 and out filled, or -1 if arg does not begin with a token.
 */
int multiconn_ready_token(const char *arg, char out[MULTICONN_TOKEN_LEN + 1]);
/* Whether arg offers word (one of its space-separated words after the first space). */
bool multiconn_ready_offers(const char *arg, const char *word);
/* The features: the state records may come COMPRESSED (docs/stream.md). */
#define MIGRATE_FEATURE_LZ4     "lz4"


/*
 * An extra connection's first line, without its newline: "DATA <token> <index>", the
 * index 1..MULTICONN_MAX-1 in decimal without leading zeros. 0 with token and index
 * set, or -1 (nothing set) for anything else.
 */
int multiconn_parse_data_line(const char *line, size_t len,
                              char token[MULTICONN_TOKEN_LEN + 1], unsigned *index);

#endif
