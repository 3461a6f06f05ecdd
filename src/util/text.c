#include "util/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int text_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

char *text_excerpt(char *dst, size_t dstlen, const char *src, size_t max_in)
{
    if (dstlen == 0)
        return dst;
    size_t o = 0, i = 0;
    for (; src[i] && i < max_in; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc[5];
        const char *piece = esc;
        size_t n;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            esc[0] = (char)c;
            n = 1;
        } else {
            n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
        }
        if (o + n + 4 >= dstlen)
            break;
        memcpy(dst + o, piece, n);
        o += n;
    }
    if (src[i] && o + 3 < dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}
