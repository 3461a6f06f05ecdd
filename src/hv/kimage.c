/*
 * Kernel images: a bare ELF, or a bzImage with a compressed ELF payload (kimage.h;
 * docs/hypervisor.md, "Kernel images"). The bzImage's setup header (Linux's
 * Documentation/arch/x86/boot.rst, protocol 2.08+) names the payload; Linux appends
 * the uncompressed size to every payload (le32), which bounds the output before any
 * byte is unpacked. Each codec is the distribution's library; LZ4 is Linux's legacy
 * frame format (magic, then blocks of [le32 compressed size][data], each unpacking to
 * at most 8 MiB), which liblz4's frame API does not read, so blocks go one by one to
 * LZ4_decompress_safe.
 */
#include "hv/kimage.h"

#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define SETUP_SECTS     0x1f1
#define BOOT_FLAG       0x1fe
#define HDR_MAGIC       0x202
#define HDR_VERSION     0x206
#define PAYLOAD_OFFSET  0x248
#define PAYLOAD_LENGTH  0x24c
#define HDR_END         0x250
#define LZ4_LEGACY_MAGIC   0x184C2102u
#define LZ4_LEGACY_BLOCK   (8u << 20)
#define XZ_MEMLIMIT        (256u << 20)

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static bool is_elf(const uint8_t *p, size_t len)
{
    return len >= 4 && memcmp(p, "\x7f" "ELF", 4) == 0;
}

/* The compressed stream (without Linux's trailing size) and where it unpacks to. */
struct unpack {
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_len;     /* the recorded size: exactly this much must come out */
    char *err;
    size_t errlen;
};

static int unpack_gzip(struct unpack *u)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK)
        return fail(u->err, u->errlen, -ENOMEM, "gzip: cannot start the decoder");
    s.next_in = (Bytef *)u->in;
    s.avail_in = (uInt)u->in_len;
    s.next_out = u->out;
    s.avail_out = (uInt)u->out_len;
    int zr = inflate(&s, Z_FINISH);
    size_t got = u->out_len - s.avail_out;
    inflateEnd(&s);
    if (zr == Z_STREAM_END)
        return got == u->out_len ? 0 : fail(u->err, u->errlen, -EINVAL,
            "gzip: payload unpacks to %zu bytes, its trailer says %zu", got, u->out_len);
    if (zr == Z_BUF_ERROR && s.avail_out == 0)
        return fail(u->err, u->errlen, -EINVAL,
                    "gzip: payload unpacks to more than its recorded %zu bytes", u->out_len);
    if (zr == Z_BUF_ERROR)
        return fail(u->err, u->errlen, -EINVAL, "gzip: payload truncated");
    return fail(u->err, u->errlen, -EINVAL, "gzip: corrupt payload (%s)",
                s.msg ? s.msg : "inflate failed");
}

/* xz (.xz container) or the legacy .lzma ("alone") format. */
static int unpack_lzma(struct unpack *u, bool alone)
{
    const char *name = alone ? "lzma" : "xz";
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_ret lr = alone ? lzma_alone_decoder(&s, XZ_MEMLIMIT)
                        : lzma_stream_decoder(&s, XZ_MEMLIMIT, 0);
    if (lr != LZMA_OK)
        return fail(u->err, u->errlen, -ENOMEM, "%s: cannot start the decoder", name);
    s.next_in = u->in;
    s.avail_in = u->in_len;
    s.next_out = u->out;
    s.avail_out = u->out_len;
    lr = lzma_code(&s, LZMA_FINISH);
    size_t got = u->out_len - s.avail_out;
    lzma_end(&s);
    if (lr == LZMA_STREAM_END)
        return got == u->out_len ? 0 : fail(u->err, u->errlen, -EINVAL,
            "%s: payload unpacks to %zu bytes, its trailer says %zu", name, got, u->out_len);
    if (lr == LZMA_BUF_ERROR && s.avail_out == 0)
        return fail(u->err, u->errlen, -EINVAL,
                    "%s: payload unpacks to more than its recorded %zu bytes", name,
                    u->out_len);
    if (lr == LZMA_BUF_ERROR)
        return fail(u->err, u->errlen, -EINVAL, "%s: payload truncated", name);
    if (lr == LZMA_MEMLIMIT_ERROR || lr == LZMA_MEM_ERROR)
        return fail(u->err, u->errlen, -EFBIG, "%s: decoder needs more than %u MiB", name,
                    XZ_MEMLIMIT >> 20);
    return fail(u->err, u->errlen, -EINVAL, "%s: corrupt payload (liblzma error %d)", name,
                (int)lr);
}

static int unpack_zstd(struct unpack *u)
{
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc)
        return fail(u->err, u->errlen, -ENOMEM, "zstd: cannot start the decoder");
    size_t n = ZSTD_decompressDCtx(dc, u->out, u->out_len, u->in, u->in_len);
    ZSTD_freeDCtx(dc);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return fail(u->err, u->errlen, -EINVAL,
                        "zstd: payload unpacks to more than its recorded %zu bytes",
                        u->out_len);
        if (ZSTD_getErrorCode(n) == ZSTD_error_srcSize_wrong)
            return fail(u->err, u->errlen, -EINVAL, "zstd: payload truncated");
        return fail(u->err, u->errlen, -EINVAL, "zstd: corrupt payload (%s)",
                    ZSTD_getErrorName(n));
    }
    return n == u->out_len ? 0 : fail(u->err, u->errlen, -EINVAL,
        "zstd: payload unpacks to %zu bytes, its trailer says %zu", n, u->out_len);
}

/* Linux's LZ4 legacy frames: [magic] then [le32 size][block]..., magic may recur. */
static int unpack_lz4(struct unpack *u)
{
    size_t pos = 0, got = 0;
    while (pos < u->in_len) {
        if (u->in_len - pos < 4)
            return fail(u->err, u->errlen, -EINVAL, "lz4: payload truncated at byte %zu",
                        pos);
        uint32_t csize = le32(u->in + pos);
        pos += 4;
        if (csize == LZ4_LEGACY_MAGIC)
            continue;
        if (csize == 0 || csize > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
            return fail(u->err, u->errlen, -EINVAL,
                        "lz4: block at byte %zu claims %u bytes", pos - 4, csize);
        if (csize > u->in_len - pos)
            return fail(u->err, u->errlen, -EINVAL,
                        "lz4: payload truncated (block at byte %zu needs %u bytes, %zu left)",
                        pos - 4, csize, u->in_len - pos);
        size_t room = u->out_len - got;
        if (room == 0)
            return fail(u->err, u->errlen, -EINVAL,
                        "lz4: payload unpacks to more than its recorded %zu bytes",
                        u->out_len);
        if (room > LZ4_LEGACY_BLOCK)
            room = LZ4_LEGACY_BLOCK;
        int n = LZ4_decompress_safe((const char *)u->in + pos, (char *)u->out + got,
                                    (int)csize, (int)room);
        if (n < 0)
            return fail(u->err, u->errlen, -EINVAL,
                        "lz4: corrupt block at byte %zu (or it unpacks past the recorded "
                        "%zu bytes)", pos - 4, u->out_len);
        got += (size_t)n;
        pos += csize;
    }
    return got == u->out_len ? 0 : fail(u->err, u->errlen, -EINVAL,
        "lz4: payload unpacks to %zu bytes, its trailer says %zu", got, u->out_len);
}

struct codec {
    const char *format;
    const uint8_t *magic;
    size_t magic_len;
    int kind;       /* 0 gzip, 1 xz, 2 lzma, 3 zstd, 4 lz4, -1 not supported */
};

static const struct codec codecs[] = {
    { "bzImage+gzip", (const uint8_t *)"\x1f\x8b", 2, 0 },
    { "bzImage+xz", (const uint8_t *)"\xfd" "7zXZ\0", 6, 1 },
    { "bzImage+lzma", (const uint8_t *)"\x5d\0\0", 3, 2 },
    { "bzImage+zstd", (const uint8_t *)"\x28\xb5\x2f\xfd", 4, 3 },
    { "bzImage+lz4", (const uint8_t *)"\x02\x21\x4c\x18", 4, 4 },
    { "bzImage+bzip2", (const uint8_t *)"BZh", 3, -1 },
    { "bzImage+lzo", (const uint8_t *)"\x89LZO", 4, -1 },
};

static int unpack(const struct codec *c, struct unpack *u)
{
    switch (c->kind) {
    case 0: return unpack_gzip(u);
    case 1: return unpack_lzma(u, false);
    case 2: return unpack_lzma(u, true);
    case 3: return unpack_zstd(u);
    case 4: return unpack_lz4(u);
    }
    return fail(u->err, u->errlen, -EOPNOTSUPP, "%s: this compression is not supported "
                "(xkvm unpacks gzip, xz, lzma, zstd and lz4)", c->format);
}

/* The payload's bytes inside a bzImage (setup header protocol 2.08+), or -EINVAL. */
static int find_payload(const uint8_t *p, size_t len, const uint8_t **pl, size_t *pl_len,
                        char *err, size_t errlen)
{
    if (len < HDR_END || memcmp(p + HDR_MAGIC, "HdrS", 4) != 0)
        return fail(err, errlen, -EINVAL, "not an ELF nor a bzImage (no \"HdrS\" setup "
                    "header)");
    if (le16(p + BOOT_FLAG) != 0xAA55)
        return fail(err, errlen, -EINVAL, "bzImage: boot flag is not 0xAA55");
    uint16_t version = le16(p + HDR_VERSION);
    if (version < 0x208)
        return fail(err, errlen, -EINVAL, "bzImage: boot protocol %u.%02u has no payload "
                    "fields (2.08 or later needed)", version >> 8, version & 0xff);
    unsigned sects = p[SETUP_SECTS] ? p[SETUP_SECTS] : 4;
    uint64_t off = (uint64_t)(sects + 1) * 512 + le32(p + PAYLOAD_OFFSET);
    uint64_t plen = le32(p + PAYLOAD_LENGTH);
    if (off > len || plen > len - off)
        return fail(err, errlen, -EINVAL, "bzImage: payload (%llu bytes at %llu) lies past "
                    "the end of the %zu-byte file", (unsigned long long)plen,
                    (unsigned long long)off, len);
    if (plen < 8)
        return fail(err, errlen, -EINVAL, "bzImage: payload of %llu bytes is too short",
                    (unsigned long long)plen);
    *pl = p + off;
    *pl_len = (size_t)plen;
    return 0;
}

static int extract_payload(const uint8_t *pl, size_t pl_len, size_t max_out,
                           struct kimage *out, char *err, size_t errlen)
{
    const struct codec *c = NULL;
    for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]) && !c; i++)
        if (pl_len >= codecs[i].magic_len &&
            memcmp(pl, codecs[i].magic, codecs[i].magic_len) == 0)
            c = &codecs[i];
    if (!c)
        return fail(err, errlen, -EINVAL, "bzImage: payload compression not recognised "
                    "(magic %02x %02x %02x %02x)", pl[0], pl[1], pl[2], pl[3]);
    struct unpack u = { .in = pl, .in_len = pl_len - 4, .out_len = le32(pl + pl_len - 4),
                        .err = err, .errlen = errlen };
    if (c->kind < 0)
        return unpack(c, &u);
    if (u.out_len > max_out)
        return fail(err, errlen, -EFBIG, "%s: payload unpacks to %zu MiB, above the "
                    "%zu MiB limit", c->format, u.out_len >> 20, max_out >> 20);
    if (u.out_len < 4)
        return fail(err, errlen, -EINVAL, "%s: payload's recorded size %zu is too small",
                    c->format, u.out_len);
    if (!(u.out = malloc(u.out_len)))
        return fail(err, errlen, -ENOMEM, "%s: out of memory for %zu bytes", c->format,
                    u.out_len);
    int rc = unpack(c, &u);
    if (!rc && !is_elf(u.out, u.out_len))
        rc = fail(err, errlen, -EINVAL, "%s: payload is not an ELF image", c->format);
    if (rc) {
        free(u.out);
        return rc;
    }
    *out = (struct kimage){ .elf = u.out, .size = u.out_len, .owned = u.out,
                            .format = c->format };
    return 0;
}

int kimage_extract(const void *in, size_t len, size_t max_out, struct kimage *out,
                   char *err, size_t errlen)
{
    const uint8_t *p = in;
    memset(out, 0, sizeof(*out));
    if (max_out == 0 || max_out > KIMAGE_ELF_MAX)
        max_out = KIMAGE_ELF_MAX;
    if (!p || len == 0)
        return fail(err, errlen, -EINVAL, "empty image");
    if (is_elf(p, len)) {
        if (len > max_out)
            return fail(err, errlen, -EFBIG, "ELF of %zu MiB is above the %zu MiB limit",
                        len >> 20, max_out >> 20);
        *out = (struct kimage){ .elf = p, .size = len, .format = "elf" };
        return 0;
    }
    const uint8_t *pl = NULL;
    size_t pl_len = 0;
    int rc = find_payload(p, len, &pl, &pl_len, err, errlen);
    return rc ? rc : extract_payload(pl, pl_len, max_out, out, err, errlen);
}

void kimage_free(struct kimage *k)
{
    free(k->owned);
    memset(k, 0, sizeof(*k));
}
