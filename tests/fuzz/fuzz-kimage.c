/*
 * Fuzz the kernel-image reader (src/hv/kimage.c): any bytes go to kimage_extract with
 * a 16 MiB cap (bzImage setup header, each codec's payload, the size trailer); what it
 * accepts must be an ELF within the cap, and goes on to pvh_parse. Seeds: a small
 * bzImage per codec (tests/fuzz/corpus/kimage, from `test-kimage --write-corpus`).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/kimage.h"
#include "hv/pvh.h"

#define CAP (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kimage k;
    struct pvh_image img;
    char err[256];
    if (kimage_extract(data, size, CAP, &k, err, sizeof(err)) != 0) {
        if (k.elf || k.owned)
            abort();
        return 0;
    }
    if (!k.elf || k.size > CAP || k.size < 4 || memcmp(k.elf, "\x7f" "ELF", 4) != 0)
        abort();
    if (!k.owned && k.elf != data)
        abort();
    (void)pvh_parse(k.elf, k.size, &img, err, sizeof(err));
    kimage_free(&k);
    return 0;
}
