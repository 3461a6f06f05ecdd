/*
 * libFuzzer target for the live-update image checker (xkvm/live_update.h): the new
 * xkvmd trusts nothing in the image it is handed. The input is copied to an 8-aligned
 * buffer, as the image is when mapped; every accepted image's index must point
 * inside it.
 */
#include <stdlib.h>
#include <string.h>

#include "xkvm/live_update.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t *buf = malloc(size + 8);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    const uint8_t *lo = (const uint8_t *)buf, *hi = lo + size;
    struct xkvm_lu_image img;
    char err[512];
    if (xkvm_lu_check(buf, size, &img, err, sizeof(err)) == 0) {
        for (unsigned i = 0; i < img.nr_domains; i++) {
            const struct xkvm_lu_domain *d = &img.domains[i];
            if ((const uint8_t *)d->config_json < lo ||
                (const uint8_t *)d->config_json + d->config_len > hi ||
                (d->nr_extents && (const uint8_t *)(d->extents + d->nr_extents) > hi) ||
                (const uint8_t *)d->dom_ctx + d->dom_len > hi ||
                (const uint8_t *)d->hvm_ctx + d->hvm_len > hi)
                abort();
            for (size_t e = 0; e < d->nr_extents; e++)
                if (d->extents[e].mfn + d->extents[e].nr > img.host.nr_frames)
                    abort();
        }
        xkvm_lu_image_release(&img);
    }
    free(buf);
    return 0;
}
