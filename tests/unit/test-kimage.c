/*
 * Kernel images (src/hv/kimage.c): bzImages whose payloads this test compresses with
 * the same libraries (zlib, liblzma, libzstd, liblz4), unpacked back to the same ELF
 * bytes; truncated, corrupt, oversized and malformed ones refused with a clear error.
 * `test-kimage --write-corpus DIR` writes the fuzz seeds (tests/fuzz/corpus/kimage).
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "harness.h"
#include "hv/kimage.h"
#include "hv/pvh.h"

HARNESS_MAIN_STATE("kimage");

enum codec { GZIP, XZ, LZMA, ZSTD, LZ4, NR_CODECS };
static const char *const codec_names[] = { "gzip", "xz", "lzma", "zstd", "lz4" };

struct buf {
    uint8_t *p;
    size_t len;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* An "ELF": the magic, then bytes that compress but are not all alike. */
static struct buf make_elf(size_t len)
{
    struct buf b = { malloc(len), len };
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        b.p[i] = (i % 64 < 48) ? (uint8_t)(i / 64) : (uint8_t)(x >> 24);
    }
    memcpy(b.p, "\x7f" "ELF", 4);
    return b;
}

static size_t gzip_pack(const struct buf *in, uint8_t *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (deflateInit2(&s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    s.next_in = in->p;
    s.avail_in = (uInt)in->len;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int r = deflate(&s, Z_FINISH);
    size_t n = cap - s.avail_out;
    deflateEnd(&s);
    return r == Z_STREAM_END ? n : 0;
}

static size_t lzma_pack(const struct buf *in, uint8_t *out, size_t cap, bool alone)
{
    if (!alone) {
        size_t pos = 0;
        return lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in->p, in->len, out,
                                       &pos, cap) == LZMA_OK ? pos : 0;
    }
    lzma_options_lzma opt;
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_lzma_preset(&opt, 6) || lzma_alone_encoder(&s, &opt) != LZMA_OK)
        return 0;
    s.next_in = in->p;
    s.avail_in = in->len;
    s.next_out = out;
    s.avail_out = cap;
    lzma_ret r = lzma_code(&s, LZMA_FINISH);
    size_t n = cap - s.avail_out;
    lzma_end(&s);
    return r == LZMA_STREAM_END ? n : 0;
}

/* With a content checksum, as the zstd command line (and so Linux's build) writes. */
static size_t zstd_pack(const struct buf *in, uint8_t *out, size_t cap)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
    size_t n = ZSTD_compress2(c, out, cap, in->p, in->len);
    ZSTD_freeCCtx(c);
    return ZSTD_isError(n) ? 0 : n;
}

/* Linux's LZ4 legacy format: magic, then [le32 size][block] per 8 MiB of input. */
static size_t lz4_pack(const struct buf *in, uint8_t *out, size_t cap)
{
    size_t pos = 4;
    put_le32(out, 0x184C2102u);
    for (size_t off = 0; off < in->len; off += 8u << 20) {
        size_t n = in->len - off < (8u << 20) ? in->len - off : (8u << 20);
        int c = LZ4_compress_default((const char *)in->p + off, (char *)out + pos + 4,
                                     (int)n, (int)(cap - pos - 4));
        if (c <= 0)
            return 0;
        put_le32(out + pos, (uint32_t)c);
        pos += 4 + (size_t)c;
    }
    return pos;
}

/* The payload: the compressed stream, then Linux's le32 uncompressed size. */
static struct buf pack(enum codec c, const struct buf *in)
{
    size_t cap = in->len + in->len / 8 + (1u << 16);
    struct buf b = { malloc(cap + 4), 0 };
    switch (c) {
    case GZIP: b.len = gzip_pack(in, b.p, cap); break;
    case XZ:   b.len = lzma_pack(in, b.p, cap, false); break;
    case LZMA: b.len = lzma_pack(in, b.p, cap, true); break;
    case ZSTD: b.len = zstd_pack(in, b.p, cap); break;
    default:   b.len = lz4_pack(in, b.p, cap); break;
    }
    if (!b.len)
        abort();
    put_le32(b.p + b.len, (uint32_t)in->len);
    b.len += 4;
    return b;
}

#define SETUP_SECTS 3

/* A bzImage: boot sector + setup sectors with a 2.15 setup header, then the payload. */
static struct buf bzimage(const struct buf *payload)
{
    size_t off = (SETUP_SECTS + 1) * 512 + 0x40;   /* payload_offset 0x40 */
    struct buf b = { calloc(1, off + payload->len + 512), off + payload->len + 512 };
    b.p[0x1f1] = SETUP_SECTS;
    b.p[0x1fe] = 0x55;
    b.p[0x1ff] = 0xAA;
    memcpy(b.p + 0x202, "HdrS", 4);
    b.p[0x206] = 0x0f;
    b.p[0x207] = 0x02;
    put_le32(b.p + 0x248, 0x40);
    put_le32(b.p + 0x24c, (uint32_t)payload->len);
    memcpy(b.p + off, payload->p, payload->len);
    return b;
}

static struct buf bzimage_of(enum codec c, const struct buf *elf)
{
    struct buf pl = pack(c, elf);
    struct buf b = bzimage(&pl);
    free(pl.p);
    return b;
}

static int extract(const struct buf *b, size_t max, struct kimage *k, char *err)
{
    return kimage_extract(b->p, b->len, max, k, err, 256);
}

static void check_roundtrip(enum codec c, size_t len)
{
    struct buf elf = make_elf(len);
    struct buf bz = bzimage_of(c, &elf);
    struct kimage k;
    char err[256] = "";
    int r = extract(&bz, 0, &k, err);
    CHECK_MSG(r == 0, "%s: %d %s", codec_names[c], r, err);
    if (r == 0) {
        CHECK_EQ(k.size, len);
        CHECK(memcmp(k.elf, elf.p, len) == 0);
        CHECK(k.owned == k.elf);
        CHECK_STR_CONTAINS(k.format, codec_names[c]);
    }
    kimage_free(&k);
    free(bz.p);
    free(elf.p);
}

static void gzip_roundtrip(void) { check_roundtrip(GZIP, 300000); }
static void xz_roundtrip(void) { check_roundtrip(XZ, 300000); }
static void lzma_roundtrip(void) { check_roundtrip(LZMA, 300000); }
static void zstd_roundtrip(void) { check_roundtrip(ZSTD, 300000); }
/* Past 8 MiB: two legacy blocks. */
static void lz4_roundtrip_two_blocks(void) { check_roundtrip(LZ4, (9u << 20) + 123); }

static void bare_elf_in_place(void)
{
    struct buf elf = make_elf(5000);
    struct kimage k;
    char err[256];
    REQUIRE(extract(&elf, 0, &k, err) == 0);
    CHECK(k.elf == elf.p);
    CHECK(k.owned == NULL);
    CHECK_EQ(k.size, 5000);
    CHECK(strcmp(k.format, "elf") == 0);
    kimage_free(&k);
    CHECK_EQ(extract(&elf, 4096, &k, err), -EFBIG);
    free(elf.p);
}

/* The legacy magic may recur between blocks (concatenated archives). */
static void lz4_magic_repeated(void)
{
    struct buf elf = make_elf(100000);
    struct buf pl = pack(LZ4, &elf);
    struct buf pl2 = { malloc(pl.len + 4), pl.len + 4 };
    memcpy(pl2.p, pl.p, pl.len - 4);
    put_le32(pl2.p + pl.len - 4, 0x184C2102u);
    put_le32(pl2.p + pl.len, (uint32_t)elf.len);
    struct buf bz = bzimage(&pl2);
    struct kimage k;
    char err[256] = "";
    CHECK_MSG(extract(&bz, 0, &k, err) == 0, "%s", err);
    CHECK(k.size == elf.len && memcmp(k.elf, elf.p, elf.len) == 0);
    kimage_free(&k);
    free(bz.p);
    free(pl2.p);
    free(pl.p);
    free(elf.p);
}

/* The payload cut short (its size trailer kept): every codec says so. */
static void reject_truncated(void)
{
    struct buf elf = make_elf(200000);
    for (int c = 0; c < NR_CODECS; c++) {
        struct buf pl = pack((enum codec)c, &elf);
        size_t keep = (pl.len - 4) / 2;
        memmove(pl.p + keep, pl.p + pl.len - 4, 4);
        pl.len = keep + 4;
        struct buf bz = bzimage(&pl);
        struct kimage k;
        char err[256] = "";
        int r = extract(&bz, 0, &k, err);
        CHECK_MSG(r == -EINVAL, "%s: %d", codec_names[c], r);
        CHECK_MSG(strstr(err, "truncated") || strstr(err, "corrupt") ||
                  strstr(err, "unpacks to"), "%s: %s", codec_names[c], err);
        CHECK(k.elf == NULL);
        free(bz.p);
        free(pl.p);
    }
    free(elf.p);
}

/* Flipped bytes inside the stream: the codecs with a checksum notice. */
static void reject_corrupt(void)
{
    struct buf elf = make_elf(200000);
    for (int c = 0; c < NR_CODECS; c++) {
        if (c == LZ4)
            continue;       /* no checksum: see lz4_reject_bad_block */
        struct buf pl = pack((enum codec)c, &elf);
        for (size_t i = pl.len / 2; i < pl.len / 2 + 16; i++)
            pl.p[i] ^= 0x5a;
        struct buf bz = bzimage(&pl);
        struct kimage k;
        char err[256] = "";
        int r = extract(&bz, 0, &k, err);
        CHECK_MSG(r == -EINVAL, "%s: %d %s", codec_names[c], r, err);
        CHECK_STR_CONTAINS(err, codec_names[c]);
        free(bz.p);
        free(pl.p);
    }
    free(elf.p);
}

static void lz4_reject_bad_block(void)
{
    struct buf elf = make_elf(50000);
    struct buf pl = pack(LZ4, &elf);
    put_le32(pl.p + 4, 0x7fffffffu);             /* the first block's size */
    struct buf bz = bzimage(&pl);
    struct kimage k;
    char err[256] = "";
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    CHECK_STR_CONTAINS(err, "lz4: block at byte 4");
    free(bz.p);
    put_le32(pl.p + 4, 2);                       /* a block that cannot decode */
    bz = bzimage(&pl);
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    free(bz.p);
    free(pl.p);
    free(elf.p);
}

/* The size trailer must match what comes out, in both directions. */
static void reject_size_mismatch(void)
{
    struct buf elf = make_elf(100000);
    for (int c = 0; c < NR_CODECS; c++) {
        for (int delta = -1; delta <= 1; delta += 2) {
            struct buf pl = pack((enum codec)c, &elf);
            put_le32(pl.p + pl.len - 4, (uint32_t)((long)elf.len + delta * 1000));
            struct buf bz = bzimage(&pl);
            struct kimage k;
            char err[256] = "";
            int r = extract(&bz, 0, &k, err);
            CHECK_MSG(r == -EINVAL, "%s %+d: %d %s", codec_names[c], delta, r, err);
            CHECK_MSG(strstr(err, "unpacks to") || strstr(err, "truncated") ||
                      strstr(err, "corrupt"), "%s %+d: %s", codec_names[c], delta, err);
            free(bz.p);
            free(pl.p);
        }
    }
    free(elf.p);
}

/* The cap applies before any allocation: a trailer of 4 GiB - 1 is refused. */
static void reject_above_cap(void)
{
    struct buf elf = make_elf(100000);
    struct buf pl = pack(ZSTD, &elf);
    struct buf bz = bzimage(&pl);
    struct kimage k;
    char err[256] = "";
    CHECK_EQ(extract(&bz, 65536, &k, err), -EFBIG);
    CHECK_STR_CONTAINS(err, "limit");
    free(bz.p);
    put_le32(pl.p + pl.len - 4, 0xffffffffu);
    bz = bzimage(&pl);
    CHECK_EQ(extract(&bz, 0, &k, err), -EFBIG);
    free(bz.p);
    free(pl.p);
    free(elf.p);
}

static void reject_not_elf_payload(void)
{
    struct buf elf = make_elf(10000);
    elf.p[0] = 'M';
    struct buf bz = bzimage_of(GZIP, &elf);
    struct kimage k;
    char err[256] = "";
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    CHECK_STR_CONTAINS(err, "not an ELF");
    free(bz.p);
    free(elf.p);
}

static void reject_setup_header(void)
{
    struct buf elf = make_elf(10000);
    struct buf bz = bzimage_of(GZIP, &elf);
    struct kimage k;
    char err[256] = "";

    bz.p[0x206] = 0x07;                                  /* protocol 2.07 */
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    CHECK_STR_CONTAINS(err, "2.08");
    bz.p[0x206] = 0x0f;
    put_le32(bz.p + 0x24c, (uint32_t)bz.len);            /* payload past the end */
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    CHECK_STR_CONTAINS(err, "past the end");
    put_le32(bz.p + 0x248, 0xfffffff0u);                 /* offset overflowing */
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    bz.p[0x1fe] = 0;                                      /* boot flag */
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    memcpy(bz.p + 0x202, "HdrX", 4);
    CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
    CHECK_STR_CONTAINS(err, "not an ELF nor a bzImage");
    CHECK_EQ(kimage_extract(bz.p, 0x100, 0, &k, err, sizeof(err)), -EINVAL);
    CHECK_EQ(kimage_extract(bz.p, 0, 0, &k, err, sizeof(err)), -EINVAL);
    free(bz.p);
    free(elf.p);
}

static void reject_unsupported_codecs(void)
{
    static const char *const magics[] = { "BZh91AY&SY", "\x89LZO\0\r\n\x1a\n" };
    for (int i = 0; i < 2; i++) {
        struct buf pl = { calloc(1, 64), 64 };
        memcpy(pl.p, magics[i], 10);
        put_le32(pl.p + 60, 1000);
        struct buf bz = bzimage(&pl);
        struct kimage k;
        char err[256] = "";
        CHECK_EQ(extract(&bz, 0, &k, err), -EOPNOTSUPP);
        CHECK_STR_CONTAINS(err, "not supported");
        memset(pl.p, 0x42, 8);
        free(bz.p);
        bz = bzimage(&pl);
        CHECK_EQ(extract(&bz, 0, &k, err), -EINVAL);
        CHECK_STR_CONTAINS(err, "not recognised");
        free(bz.p);
        free(pl.p);
    }
}

static bool read_file(const char *path, struct buf *b)
{
    int fd = path ? open(path, O_RDONLY) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    b->len = (size_t)st.st_size;
    b->p = malloc(b->len);
    bool ok = read(fd, b->p, b->len) == (ssize_t)b->len;
    close(fd);
    return ok;
}

static const char *guest_path(void)
{
    static char path[4096];
    const char *b = getenv("XKVM_BUILD");
    if (getenv("XKVM_GUEST"))
        return getenv("XKVM_GUEST");
    snprintf(path, sizeof(path), "%s/guest/xkvm-guest", b ? b : "build");
    return access(path, R_OK) == 0 ? path : "guest/xkvm-guest";
}

/* The real test guest, packed with every codec, comes back byte for byte with its
 * PVH entry. */
static void real_guest_packed(void)
{
    struct buf elf;
    if (!read_file(guest_path(), &elf)) {
        harness_skip("no test guest kernel (set XKVM_GUEST or build guest/xkvm-guest)");
        return;
    }
    struct pvh_image want, got;
    char err[256] = "";
    REQUIRE(pvh_parse(elf.p, elf.len, &want, err, sizeof(err)) == 0);
    for (int c = 0; c < NR_CODECS; c++) {
        struct buf bz = bzimage_of((enum codec)c, &elf);
        struct kimage k;
        int r = extract(&bz, 0, &k, err);
        CHECK_MSG(r == 0, "%s: %s", codec_names[c], err);
        if (r == 0) {
            CHECK(k.size == elf.len && memcmp(k.elf, elf.p, elf.len) == 0);
            CHECK(pvh_parse(k.elf, k.size, &got, err, sizeof(err)) == 0);
            CHECK_EQ(got.entry, want.entry);
        }
        kimage_free(&k);
        free(bz.p);
    }
    free(elf.p);
}

/* A distribution's own bzImage, where the machine has one (XKVM_DISTRO_KERNEL). */
static void distro_kernel(void)
{
    const char *path = getenv("XKVM_DISTRO_KERNEL");
    struct buf bz;
    if (!path || !read_file(path, &bz)) {
        harness_skip("XKVM_DISTRO_KERNEL not set to a readable bzImage");
        return;
    }
    struct kimage k;
    struct pvh_image img;
    char err[256] = "";
    int r = kimage_extract(bz.p, bz.len, 0, &k, err, sizeof(err));
    CHECK_MSG(r == 0, "%s: %s", path, err);
    if (r == 0) {
        CHECK(strncmp(k.format, "bzImage+", 8) == 0);
        CHECK_MSG(pvh_parse(k.elf, k.size, &img, err, sizeof(err)) == 0, "%s", err);
        printf("# %s: %s, ELF %zu bytes, PVH entry %#x\n", path, k.format, k.size,
               img.entry);
    }
    kimage_free(&k);
    free(bz.p);
}

/* The fuzz seeds: a small bzImage per codec around the real test guest, or a stub. */
static int write_corpus(const char *dir)
{
    struct buf elf;
    if (!read_file(guest_path(), &elf))
        elf = make_elf(4096);
    for (int c = 0; c < NR_CODECS; c++) {
        struct buf bz = bzimage_of((enum codec)c, &elf);
        char path[4096];
        snprintf(path, sizeof(path), "%s/bzimage-%s", dir, codec_names[c]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, bz.p, bz.len) != (ssize_t)bz.len) {
            perror(path);
            return 1;
        }
        close(fd);
        free(bz.p);
    }
    free(elf.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    RUN_TEST(gzip_roundtrip);
    RUN_TEST(xz_roundtrip);
    RUN_TEST(lzma_roundtrip);
    RUN_TEST(zstd_roundtrip);
    RUN_TEST(lz4_roundtrip_two_blocks);
    RUN_TEST(bare_elf_in_place);
    RUN_TEST(lz4_magic_repeated);
    RUN_TEST(reject_truncated);
    RUN_TEST(reject_corrupt);
    RUN_TEST(lz4_reject_bad_block);
    RUN_TEST(reject_size_mismatch);
    RUN_TEST(reject_above_cap);
    RUN_TEST(reject_not_elf_payload);
    RUN_TEST(reject_setup_header);
    RUN_TEST(reject_unsupported_codecs);
    RUN_TEST(real_guest_packed);
    RUN_TEST(distro_kernel);
    HARNESS_EXIT();
}
