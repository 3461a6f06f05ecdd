/* The DATA line and READY token of extra migration connections: multiconn_line.h. */
#include "util/multiconn_line.h"

#include <stdbool.h>
#include <string.h>

void multiconn_token_format(const uint8_t bytes[MULTICONN_TOKEN_BYTES], char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < MULTICONN_TOKEN_BYTES; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[MULTICONN_TOKEN_LEN] = '\0';
}

static int token_at(const char *p, size_t len, char out[MULTICONN_TOKEN_LEN + 1])
{
    if (len < MULTICONN_TOKEN_LEN)
        return -1;
    for (unsigned i = 0; i < MULTICONN_TOKEN_LEN; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return -1;
    memcpy(out, p, MULTICONN_TOKEN_LEN);
    out[MULTICONN_TOKEN_LEN] = '\0';
    return 0;
}

int multiconn_ready_token(const char *arg, char out[MULTICONN_TOKEN_LEN + 1])
{
    size_t len = strlen(arg);
    if (len < 1 + MULTICONN_TOKEN_LEN || arg[0] != ' ' ||
        (len > 1 + MULTICONN_TOKEN_LEN && arg[1 + MULTICONN_TOKEN_LEN] != ' '))
        return -1;
    return token_at(arg + 1, MULTICONN_TOKEN_LEN, out);
}

bool multiconn_ready_offers(const char *arg, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = arg; wl && (p = strchr(p, ' ')); ) {
        p++;
        if (!strncmp(p, word, wl) && (p[wl] == ' ' || p[wl] == '\0'))
            return true;
    }
    return false;
}

int multiconn_parse_data_line(const char *line, size_t len,
                              char token[MULTICONN_TOKEN_LEN + 1], unsigned *index)
{
    const size_t word = sizeof(MULTICONN_DATA_WORD) - 1;
    char tok[MULTICONN_TOKEN_LEN + 1];
    if (len < word + 1 + MULTICONN_TOKEN_LEN + 2 || memcmp(line, MULTICONN_DATA_WORD, word) ||
        line[word] != ' ' || token_at(line + word + 1, len - word - 1, tok))
        return -1;
    const char *p = line + word + 1 + MULTICONN_TOKEN_LEN;
    size_t rest = len - (size_t)(p - line);
    if (p[0] != ' ' || rest < 2 || rest > 3 || p[1] == '0')
        return -1;
    unsigned v = 0;
    for (size_t i = 1; i < rest; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v < 1 || v >= MULTICONN_MAX)
        return -1;
    memcpy(token, tok, sizeof(tok));
    *index = v;
    return 0;
}
