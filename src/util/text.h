/* Quoting untrusted text in messages. */
#ifndef XKVM_UTIL_TEXT_H
#define XKVM_UTIL_TEXT_H

#include <stddef.h>

/*
 * Copy at most `max_in` bytes of `src` (up to its NUL) into `dst` as printable ASCII:
 * other bytes become \xNN, so the result is always valid UTF-8 and never cuts a
 * character in half; "..." marks a cut. Returns dst.
 */
char *text_excerpt(char *dst, size_t dstlen, const char *src, size_t max_in);

#endif
