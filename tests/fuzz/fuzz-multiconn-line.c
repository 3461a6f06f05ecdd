/* libFuzzer: the DATA line an extra migration connection begins with (util/multiconn_line.c). */
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
    if (multiconn_parse_data_line((const char *)data, size, tok, &idx))
        return 0;
    /* Accepted: exactly the canonical line, which parses to the same again. */
    int n = snprintf(again, sizeof(again), "DATA %s %u", tok, idx);
    if (n < 0 || (size_t)n != size || memcmp(again, data, size) || idx < 1 ||
        idx >= MULTICONN_MAX)
        __builtin_trap();
    return 0;
}
