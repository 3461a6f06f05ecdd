/*
 * libFuzzer: the DATA line an extra migration connection begins with, and READY's
 * argument (util/multiconn_line.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/multiconn_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char tok[MULTICONN_TOKEN_LEN + 1], again[80];
    unsigned idx;
    /* The READY line's argument, as a string: a token is 32 hex digits. */
    char arg[256];
    size_t n0 = size < sizeof(arg) - 1 ? size : sizeof(arg) - 1;
    memcpy(arg, data, n0);
    arg[n0] = '\0';
    if (!multiconn_ready_token(arg, tok) && strspn(tok, "0123456789abcdef") != MULTICONN_TOKEN_LEN)
        __builtin_trap();
    (void)multiconn_ready_offers(arg, MIGRATE_FEATURE_LZ4);
    if (multiconn_parse_data_line((const char *)data, size, tok, &idx))
        return 0;
    /* Accepted: exactly the canonical line, which parses to the same again. */
    int n = snprintf(again, sizeof(again), "DATA %s %u", tok, idx);
    if (n < 0 || (size_t)n != size || memcmp(again, data, size) || idx < 1 ||
        idx >= MULTICONN_MAX)
        __builtin_trap();
    return 0;
}
