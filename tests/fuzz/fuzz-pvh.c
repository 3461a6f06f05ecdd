/*
 * Fuzz the PVH loader: any bytes go to pvh_parse; accepted images are loaded into a
 * 16 MiB guest (gpa 0..16 MiB, NULL outside) and a start_info block is written.
 * The trailing 8 bytes of the input also steer pvh_write_start_info.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/pvh.h"

#define GUEST_SIZE (16u << 20)
static uint8_t *guest;

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    if (gpa > GUEST_SIZE || len > GUEST_SIZE - gpa)
        return NULL;
    return guest + gpa;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!guest && !(guest = malloc(GUEST_SIZE)))
        abort();
    const struct gphys g = { .ptr = flat_ptr, .opaque = NULL };
    char err[256];
    struct pvh_image img;

    int r = pvh_parse(data, size, &img, err, sizeof(err));
    if (r == 0) {
        if (img.load_lo >= img.load_hi || img.entry < img.load_lo ||
            img.entry >= img.load_hi)
            abort();
        r = pvh_load(data, size, &img, &g, err, sizeof(err));
        if (r != 0 && r != -EFAULT)
            abort();
    } else if (r != -EINVAL || !memchr(err, '\0', sizeof(err)) || err[0] == '\0') {
        abort();
    }

    if (size >= 8) {
        const uint8_t *t = data + size - 8;
        uint64_t at = ((uint64_t)t[0] << 16 | (uint64_t)t[1] << 8 | t[2]) * 8 + t[3];
        uint64_t limit = at + ((uint64_t)t[4] << 8 | t[5]);
        unsigned nr = t[6] % 8;
        size_t cl = t[7];
        struct hvm_memmap_table_entry map[8];
        char cmd[256];
        memset(map, 0x5a, sizeof(map));
        memset(cmd, 'c', sizeof(cmd));
        cmd[cl] = '\0';
        uint64_t si;
        r = pvh_write_start_info(&g, at, limit, (t[7] & 1) ? cmd : NULL, map, nr, &si,
                                 err, sizeof(err));
        if (r == 0) {
            if (si % 8 || si < at || si >= limit)
                abort();
            struct hvm_start_info info;
            memcpy(&info, guest + si, sizeof(info));
            if (info.magic != XEN_HVM_START_MAGIC_VALUE || info.memmap_entries != nr)
                abort();
        } else if (r != -ENOSPC && r != -EFAULT) {
            abort();
        }
    }
    return 0;
}
