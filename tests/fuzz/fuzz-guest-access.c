/*
 * Fuzz guest page-table walks and copies. Input layout:
 *   [0]     mode bits: PE PG PAE PSE LMA WP NXE LA57 (bit 0 = PE ... bit 7 = LA57)
 *   [1..8]  CR3, little endian
 *   [9]     number of operations (mod 17)
 *   ops     12 bytes each: gva (8), len (2), kind (1: bit 0 write, bit 1 translate
 *           only), unused (1)
 *   rest    guest memory image at gpa 0 (64 KiB guest; the rest stays zero)
 * Guest memory, destination and source buffers are exactly sized heap blocks, so any
 * out-of-bounds access is an ASan report.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/guest_access.h"

#define GUEST_SIZE 0x10000u
#define OP_SIZE 12

struct flat {
    uint8_t *mem;
};

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    struct flat *f = opaque;
    if (gpa > GUEST_SIZE || len > GUEST_SIZE - gpa)
        return NULL;
    return f->mem + gpa;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10)
        return 0;
    uint8_t mode = data[0];
    struct guest_paging pg = {
        .cr0 = (mode & 0x01 ? 1ull : 0) | (mode & 0x02 ? 1ull << 31 : 0) |
               (mode & 0x20 ? 1ull << 16 : 0),
        .cr3 = le64(data + 1),
        .cr4 = (mode & 0x04 ? 1ull << 5 : 0) | (mode & 0x08 ? 1ull << 4 : 0) |
               (mode & 0x80 ? 1ull << 12 : 0),
        .efer = (mode & 0x10 ? (1ull << 10) | (1ull << 8) : 0) |
                (mode & 0x40 ? 1ull << 11 : 0),
    };
    unsigned nops = data[9] % 17;
    size_t pos = 10;
    if (size - pos < (size_t)nops * OP_SIZE)
        nops = (unsigned)((size - pos) / OP_SIZE);
    const uint8_t *ops = data + pos;
    pos += (size_t)nops * OP_SIZE;

    struct flat f = { calloc(1, GUEST_SIZE) };
    if (!f.mem)
        abort();
    size_t img = size - pos < GUEST_SIZE ? size - pos : GUEST_SIZE;
    memcpy(f.mem, data + pos, img);
    const struct gphys g = { .ptr = flat_ptr, .opaque = &f };

    for (unsigned i = 0; i < nops; i++) {
        const uint8_t *op = ops + (size_t)i * OP_SIZE;
        uint64_t gva = le64(op);
        size_t len = (size_t)op[8] | (size_t)op[9] << 8;
        int write = op[10] & 1;
        uint64_t gpa_w, gpa_r;

        int rw = guest_translate(&g, &pg, gva, 1, &gpa_w);
        int rr = guest_translate(&g, &pg, gva, 0, &gpa_r);
        if ((rw != 0 && rw != -EFAULT) || (rr != 0 && rr != -EFAULT))
            abort();
        /* writable implies readable, at the same address */
        if (rw == 0 && (rr != 0 || gpa_r != gpa_w))
            abort();
        if (rr == 0 && (gpa_r & 0xfff) != (gva & 0xfff))
            abort();
        if (op[10] & 2)
            continue;

        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            abort();
        int r;
        if (write) {
            memset(buf, 0xa5, len);
            r = copy_to_guest(&g, &pg, gva, buf, len);
        } else {
            r = copy_from_guest(&g, &pg, buf, gva, len);
            /* the first byte came from where translate says it lives */
            if (r == 0 && len && (rr != 0 || buf[0] != f.mem[gpa_r]))
                abort();
        }
        if (r != 0 && r != -EFAULT)
            abort();
        if (len == 0 && r != 0)
            abort();
        free(buf);
    }
    free(f.mem);
    return 0;
}
