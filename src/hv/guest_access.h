/*
 * Reading and writing guest memory on behalf of a hypercall: translate the guest's
 * linear addresses through its own page tables (no paging, 32-bit, PAE, 4-level), and
 * copy in and out with every address and length checked. All inputs are hostile.
 */
#ifndef XKVM_HV_GUEST_ACCESS_H
#define XKVM_HV_GUEST_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "hv/gphys.h"

/* The control registers that decide how a vCPU translates linear addresses. */
struct guest_paging {
    uint64_t cr0, cr3, cr4, efer;
};

/*
 * Translate linear address `gva` to a guest-physical address. `write` asks for a
 * writable mapping (honouring CR0.WP as for supervisor accesses). Returns 0, or
 * -EFAULT if any level is not present, reserved bits are set, a table lies outside
 * guest memory, or a write hits a read-only page.
 */
int guest_translate(const struct gphys *g, const struct guest_paging *pg,
                    uint64_t gva, int write, uint64_t *gpa);

/* Copy len bytes between host and guest linear memory, page by page. 0 or -EFAULT;
 * on -EFAULT nothing beyond the failing page was touched on the destination. */
int copy_from_guest(const struct gphys *g, const struct guest_paging *pg,
                    void *dst, uint64_t gva, size_t len);
int copy_to_guest(const struct gphys *g, const struct guest_paging *pg,
                  uint64_t gva, const void *src, size_t len);

#endif
