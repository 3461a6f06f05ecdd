/*
 * Kernel images as distributions ship them: a bzImage whose protected-mode payload is
 * a compressed ELF (gzip, xz, lzma, zstd, or Linux's LZ4 legacy frames), found and
 * unpacked the way Xen's domain builder does (libxenguest's xc_dom_bzimageloader), or
 * a bare ELF passed through. I/O-free: bytes in, ELF bytes out; the bytes are
 * untrusted. docs/hypervisor.md, "Kernel images"; docs/config.md, `kernel`.
 */
#ifndef XKVM_HV_KIMAGE_H
#define XKVM_HV_KIMAGE_H

#include <stddef.h>
#include <stdint.h>

/* The largest ELF a payload may unpack to (Debian's 6.1 kernel: 51 MiB). */
#define KIMAGE_ELF_MAX (256u << 20)

struct kimage {
    const uint8_t *elf;     /* the ELF bytes: the input itself, or `owned` */
    size_t size;
    void *owned;            /* malloc'd output (kimage_free), NULL for a bare ELF */
    const char *format;     /* "elf", "bzImage+gzip", "bzImage+xz", ... (static) */
};

/*
 * The ELF inside `in`: a bare ELF (returned in place), or a bzImage's payload,
 * unpacked into at most `max_out` bytes (at most KIMAGE_ELF_MAX; 0 means that). The
 * payload must end in its uncompressed size (Linux's size_append), and unpack to
 * exactly that many bytes. Returns 0, or with a message in err: -EINVAL (not a kernel
 * image, a bad setup header, a corrupt or truncated payload), -EOPNOTSUPP (a codec
 * xkvm does not unpack: bzip2, lzo), -EFBIG (above the cap), -ENOMEM.
 */
int kimage_extract(const void *in, size_t len, size_t max_out, struct kimage *out,
                   char *err, size_t errlen);

void kimage_free(struct kimage *k);

#endif
