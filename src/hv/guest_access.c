/*
 * Guest linear address translation and copies, for hypercall arguments.
 *
 * The walk follows the SDM for supervisor data accesses: present bits, reserved bits,
 * and R/W at every level (ignored for writes when CR0.WP is clear). U/S, SMAP, PKRU and
 * NX do not apply: the hypervisor reads data on behalf of the guest kernel.
 *
 * Accessed/Dirty bits are deliberately not set. Setting them would mean racing the
 * guest's other vCPUs with cmpxchg on guest memory, and nothing depends on them: the
 * guest sees no fault either way, and its own accesses to the buffer (it wrote the
 * hypercall arguments) have already set them in nearly every case.
 *
 * Page tables are read through gphys at each step; the guest may change them
 * concurrently, so every entry is read exactly once into a local.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "hv/guest_access.h"

#define CR0_WP      (UINT64_C(1) << 16)
#define CR0_PG      (UINT64_C(1) << 31)
#define CR4_PSE     (UINT64_C(1) << 4)
#define CR4_PAE     (UINT64_C(1) << 5)
#define CR4_LA57    (UINT64_C(1) << 12)
#define EFER_LMA    (UINT64_C(1) << 10)
#define EFER_NXE    (UINT64_C(1) << 11)

#define PTE_P       (UINT64_C(1) << 0)
#define PTE_RW      (UINT64_C(1) << 1)
#define PTE_PS      (UINT64_C(1) << 7)
#define PTE_NX      (UINT64_C(1) << 63)

#define PAGE_SIZE   UINT64_C(4096)
#define PAGE_MASK   (PAGE_SIZE - 1)
#define LIMIT_32BIT UINT64_C(0xffffffff)

/*
 * Assumed MAXPHYADDR. Bits [51:MAXPHYADDR] of an entry are reserved; bits 62:52 are
 * ignored by the CPU (software bits, protection keys), so they are not checked.
 * Addresses the guest does not have are caught by gphys anyway.
 */
#define GA_MAXPHYADDR 52
#define ADDR_MASK   (((UINT64_C(1) << GA_MAXPHYADDR) - 1) & ~PAGE_MASK)
#define RSVD_HIGH   (((UINT64_C(1) << 52) - 1) & ~((UINT64_C(1) << GA_MAXPHYADDR) - 1))

static int read_entry64(const struct gphys *g, uint64_t gpa, uint64_t *val)
{
    const void *p = gphys_ptr(g, gpa, sizeof(*val));
    if (!p)
        return -EFAULT;
    memcpy(val, p, sizeof(*val));
    __asm__ volatile("" ::: "memory");   /* use this one copy, never re-read */
    return 0;
}

static int read_entry32(const struct gphys *g, uint64_t gpa, uint32_t *val)
{
    const void *p = gphys_ptr(g, gpa, sizeof(*val));
    if (!p)
        return -EFAULT;
    memcpy(val, p, sizeof(*val));
    __asm__ volatile("" ::: "memory");
    return 0;
}

/*
 * Walk 64-bit-format tables (PAE and long mode) from `table` at `level` (4 = PML4,
 * 2 = page directory) down to the page. Large pages are allowed at levels 3 (1 GiB)
 * and 2 (2 MiB); PS is reserved at level 4.
 */
static int walk64(const struct gphys *g, const struct guest_paging *pg, uint64_t table,
                  int level, uint64_t gva, bool check_rw, uint64_t *gpa)
{
    uint64_t rsvd = RSVD_HIGH | ((pg->efer & EFER_NXE) ? 0 : PTE_NX);

    for (; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        uint64_t e;
        if (read_entry64(g, table + ((gva >> shift) & 511) * 8, &e) < 0)
            return -EFAULT;
        if (!(e & PTE_P) || (e & rsvd))
            return -EFAULT;
        if (check_rw && !(e & PTE_RW))
            return -EFAULT;
        if (level == 1) {
            *gpa = (e & ADDR_MASK) | (gva & PAGE_MASK);
            return 0;
        }
        if (e & PTE_PS) {
            if (level == 4)
                return -EFAULT;
            uint64_t size = UINT64_C(1) << shift;
            /* bits [shift-1:13] of a large-page entry are reserved (bit 12 is PAT) */
            uint64_t low_rsvd = (size - 1) & ~((UINT64_C(1) << 13) - 1);
            if (e & low_rsvd)
                return -EFAULT;
            *gpa = (e & ADDR_MASK & ~(size - 1)) | (gva & (size - 1));
            return 0;
        }
        table = e & ADDR_MASK;
    }
    return -EFAULT;   /* not reached */
}

static int walk_pae(const struct gphys *g, const struct guest_paging *pg, uint64_t gva,
                    bool check_rw, uint64_t *gpa)
{
    /* PDPTE: bits 2:1 and 8:5 are reserved, and bit 63 (no NX at this level). */
    const uint64_t pdpte_rsvd = RSVD_HIGH | PTE_NX | UINT64_C(0x1e6);
    uint64_t pdpte;

    if (read_entry64(g, (pg->cr3 & UINT64_C(0xffffffe0)) + ((gva >> 30) & 3) * 8,
                     &pdpte) < 0)
        return -EFAULT;
    if (!(pdpte & PTE_P) || (pdpte & pdpte_rsvd))
        return -EFAULT;
    return walk64(g, pg, pdpte & ADDR_MASK, 2, gva, check_rw, gpa);
}

static int walk_32bit(const struct gphys *g, const struct guest_paging *pg, uint64_t gva,
                      bool check_rw, uint64_t *gpa)
{
    uint32_t pde, pte;

    if (read_entry32(g, (pg->cr3 & UINT64_C(0xfffff000)) + ((gva >> 22) & 0x3ff) * 4,
                     &pde) < 0)
        return -EFAULT;
    if (!(pde & PTE_P) || (check_rw && !(pde & PTE_RW)))
        return -EFAULT;
    if ((pde & PTE_PS) && (pg->cr4 & CR4_PSE)) {
        /* 4 MiB page; PSE-36: bits 20:13 hold physical bits 39:32, bit 21 is reserved */
        if (pde & (UINT32_C(1) << 21))
            return -EFAULT;
        uint64_t base = (uint64_t)(pde & UINT32_C(0xffc00000)) |
                        ((uint64_t)((pde >> 13) & 0xff) << 32);
        *gpa = base | (gva & UINT64_C(0x3fffff));
        return 0;
    }
    if (read_entry32(g, (pde & UINT32_C(0xfffff000)) + ((gva >> 12) & 0x3ff) * 4,
                     &pte) < 0)
        return -EFAULT;
    if (!(pte & PTE_P) || (check_rw && !(pte & PTE_RW)))
        return -EFAULT;
    *gpa = (uint64_t)(pte & UINT32_C(0xfffff000)) | (gva & PAGE_MASK);
    return 0;
}

/* guest_translate with the map already held by the caller. */
static int translate_held(const struct gphys *g, const struct guest_paging *pg,
                          uint64_t gva, int write, uint64_t *gpa)
{
    uint64_t out;
    int r;

    if (!g || !pg || !gpa)
        return -EFAULT;
    bool check_rw = write && (pg->cr0 & CR0_WP);

    if (!(pg->cr0 & CR0_PG)) {
        /* Real mode and unpaged protected mode: 32-bit linear == physical. */
        if (gva > LIMIT_32BIT)
            return -EFAULT;
        *gpa = gva;
        return 0;
    }
    if (pg->efer & EFER_LMA) {
        if (!(pg->cr4 & CR4_PAE))
            return -EFAULT;           /* not a state a CPU can be in */
        if (pg->cr4 & CR4_LA57)
            return -EFAULT;           /* 5-level paging: not supported */
        /* canonical: bits 63:47 all equal */
        if ((uint64_t)((int64_t)(gva << 16) >> 16) != gva)
            return -EFAULT;
        r = walk64(g, pg, pg->cr3 & ADDR_MASK, 4, gva, check_rw, &out);
    } else {
        if (gva > LIMIT_32BIT)
            return -EFAULT;
        if (pg->cr4 & CR4_PAE)
            r = walk_pae(g, pg, gva, check_rw, &out);
        else
            r = walk_32bit(g, pg, gva, check_rw, &out);
    }
    if (r < 0)
        return r;
    *gpa = out;
    return 0;
}

int guest_translate(const struct gphys *g, const struct guest_paging *pg,
                    uint64_t gva, int write, uint64_t *gpa)
{
    if (!g)
        return -EFAULT;
    gphys_hold(g, true);
    int rc = translate_held(g, pg, gva, write, gpa);
    gphys_hold(g, false);
    return rc;
}

/*
 * One chunk inside one page: translate and copy with the map held, so that another
 * vCPU cannot take the page away between the walk and the copy.
 */
static int copy_chunk(const struct gphys *g, const struct guest_paging *pg,
                      uint64_t gva, uint8_t *host, uint64_t chunk, bool to_guest)
{
    uint64_t gpa;
    int rc = -EFAULT;
    gphys_hold(g, true);
    uint8_t *p = translate_held(g, pg, gva, to_guest, &gpa) < 0 ? NULL
                                                                 : gphys_ptr(g, gpa, chunk);
    if (p) {
        if (to_guest) {
            memcpy(p, host, chunk);
            gphys_written(g, gpa, chunk);
        } else
            memcpy(host, p, chunk);
        rc = 0;
    }
    gphys_hold(g, false);
    return rc;
}

/* Copy page by page; each chunk stays inside one 4 KiB page of the linear address. */
static int copy_guest(const struct gphys *g, const struct guest_paging *pg,
                      uint64_t gva, uint8_t *host, size_t len, bool to_guest)
{
    if (len == 0)
        return 0;
    if ((uint64_t)len - 1 > UINT64_MAX - gva)
        return -EFAULT;               /* gva + len wraps */
    while (len) {
        uint64_t chunk = PAGE_SIZE - (gva & PAGE_MASK);
        if (chunk > len)
            chunk = len;
        if (copy_chunk(g, pg, gva, host, chunk, to_guest))
            return -EFAULT;
        host += chunk;
        len -= chunk;
        gva += chunk;                 /* may wrap to 0 only when len reached 0 */
    }
    return 0;
}

int copy_from_guest(const struct gphys *g, const struct guest_paging *pg,
                    void *dst, uint64_t gva, size_t len)
{
    return copy_guest(g, pg, gva, dst, len, false);
}

int copy_to_guest(const struct gphys *g, const struct guest_paging *pg,
                  uint64_t gva, const void *src, size_t len)
{
    /* copy_guest only reads from host memory when copying to the guest */
    return copy_guest(g, pg, gva, (uint8_t *)(uintptr_t)src, len, true);
}
