/*
 * Console output and a small printf: %s %c %d %i %u %x %X %p %%, with l/ll/z/h
 * length modifiers, '-', '0' and '#' flags and a field width (or '*'). Each printf call
 * is formatted into a buffer and written with one HYPERVISOR_console_io (or to port
 * 0xE9 when there is no Xen), or to the PV console ring with console=ring
 * (console_ring.c).
 */
#include "guest.h"
#include "hypercall.h"
#include "pv.h"                 /* console_ring_write (console=ring) */

#include <xen/xen.h>

void console_write(const char *s, size_t len)
{
    if (xen.present) {
        if (console_ring_write(s, len))
            return;
        while (len) {
            unsigned chunk = len > 4096 ? 4096 : (unsigned)len;

            if (HYPERVISOR_console_io(CONSOLEIO_write, chunk, s) < 0)
                break;
            s += chunk;
            len -= chunk;
        }
        return;
    }
    while (len--)
        outb(0xe9, (uint8_t)*s++);
}

struct outbuf {
    char *buf;
    size_t size, len;       /* len counts every byte, even those that do not fit */
};

static void put(struct outbuf *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct outbuf *o, const char *s, size_t n, int width, bool left,
                       char pad, size_t prefix)
{
    int fill = width > (int)n ? width - (int)n : 0;

    if (!left) {
        /* Zero padding goes after a sign or 0x. */
        if (pad == '0')
            for (; prefix && n; prefix--, n--)
                put(o, *s++);
        while (fill-- > 0)
            put(o, pad);
    }
    while (n--)
        put(o, *s++);
    if (left)
        while (fill-- > 0)
            put(o, ' ');
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct outbuf o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        bool left = false, alt = false;
        char pad = ' ';
        int width = 0, lng = 0;

        for (;; fmt++) {
            if (*fmt == '-')
                left = true;
            else if (*fmt == '#')
                alt = true;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        for (;; fmt++) {
            if (*fmt == 'l' || *fmt == 'z')
                lng++;
            else if (*fmt != 'h')
                break;
        }

        char tmp[24];
        const char *s = tmp;
        size_t n = 0, prefix = 0;
        uint64_t u = 0;
        unsigned base = 10;
        bool upper = false;

        switch (*fmt) {
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            n = 1;
            break;
        case 's':
            s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            n = strlen(s);
            break;
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, long) : va_arg(ap, int);
            char *p = tmp + sizeof(tmp);
            u = v < 0 ? -(uint64_t)v : (uint64_t)v;
            do
                *--p = '0' + u % 10;
            while (u /= 10);
            if (v < 0) {
                *--p = '-';
                prefix = 1;
            }
            s = p;
            n = tmp + sizeof(tmp) - p;
            break;
        }
        case 'p':
            u = (uint64_t)va_arg(ap, void *);
            base = 16;
            alt = true;
            goto number;
        case 'X':
            upper = true;
            /* fall through */
        case 'x':
            base = 16;
            /* fall through */
        case 'u':
            u = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
        number: {
            char *p = tmp + sizeof(tmp);
            const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
            do
                *--p = digits[u % base];
            while (u /= base);
            if (alt && base == 16) {
                *--p = 'x';
                *--p = '0';
                prefix = 2;
            }
            s = p;
            n = tmp + sizeof(tmp) - p;
            break;
        }
        case '%':
            tmp[0] = '%';
            n = 1;
            break;
        case '\0':
            fmt--;
            continue;
        default:
            tmp[0] = '%';
            tmp[1] = *fmt;
            n = 2;
            break;
        }
        put_padded(&o, s, n, width, left, pad, prefix);
    }
    if (o.size)
        o.buf[o.len < o.size ? o.len : o.size - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    console_write(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    return n;
}
