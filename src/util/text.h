/* Messages: quoting untrusted text in them, and filling a caller's error buffer. */
#ifndef XKVM_UTIL_TEXT_H
#define XKVM_UTIL_TEXT_H

#include <stddef.h>

/*
 * Copy at most `max_in` bytes of `src` (up to its NUL) into `dst` as printable ASCII:
 * other bytes become \xNN, so the result is always valid UTF-8 and never cuts a
 * character in half; "..." marks a cut. Returns dst.
 */
char *text_excerpt(char *dst, size_t dstlen, const char *src, size_t max_in);

/* Format a message into err (nothing if err is NULL or errlen 0); returns rc, so that
 * `return text_err(err, errlen, -EINVAL, "...", ...);` reports and fails in one. */
int text_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
