/* Guest linear-address translation and copies, against page tables in a flat buffer. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "hv/guest_access.h"

HARNESS_MAIN_STATE("guest-access");

#define MEM_SIZE (8u << 20)      /* guest RAM at gpa 0 */
static uint8_t *mem;

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    if (gpa > MEM_SIZE || len > MEM_SIZE - gpa)
        return NULL;
    return mem + gpa;
}

static const struct gphys g = { .ptr = flat_ptr, .opaque = NULL };

#define CR0_PE   (1ull << 0)
#define CR0_WP   (1ull << 16)
#define CR0_PG   (1ull << 31)
#define CR4_PSE  (1ull << 4)
#define CR4_PAE  (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

#define P   0x1ull
#define RW  0x2ull
#define US  0x4ull
#define PS  0x80ull
#define NX  (1ull << 63)

/* Page tables come from a bump allocator at 1 MiB; data pages live below that. */
static uint64_t next_table;

static void reset(void)
{
    memset(mem, 0, MEM_SIZE);
    next_table = 0x100000;
}

static uint64_t alloc_table(void)
{
    uint64_t t = next_table;
    next_table += 0x1000;
    return t;
}

static void put64(uint64_t gpa, uint64_t v) { memcpy(mem + gpa, &v, 8); }
static uint64_t get64(uint64_t gpa) { uint64_t v; memcpy(&v, mem + gpa, 8); return v; }
static void put32(uint64_t gpa, uint32_t v) { memcpy(mem + gpa, &v, 4); }
static uint32_t get32(uint64_t gpa) { uint32_t v; memcpy(&v, mem + gpa, 4); return v; }

/*
 * Map gva -> gpa in 64-bit-format tables rooted at `root` (a PML4 when top == 4, a
 * page directory when top == 2), with a leaf at `leaf` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
 * Intermediate entries get P|RW|US; the leaf gets `flags` (PS added for large pages).
 */
static void map64(uint64_t root, int top, uint64_t gva, uint64_t gpa, int leaf,
                  uint64_t flags)
{
    uint64_t table = root;
    for (int level = top; level > leaf; level--) {
        uint64_t slot = table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8;
        uint64_t e = get64(slot);
        if (!(e & P)) {
            e = alloc_table() | P | RW | US;
            put64(slot, e);
        }
        table = e & 0x000ffffffffff000ull;
    }
    uint64_t slot = table + ((gva >> (12 + 9 * (leaf - 1))) & 511) * 8;
    put64(slot, gpa | flags | (leaf > 1 ? PS : 0));
}

/* Address of the entry for gva at `level` (tables must exist down to it). */
static uint64_t slot64(uint64_t root, int top, uint64_t gva, int level)
{
    uint64_t table = root;
    for (int l = top; l > level; l--)
        table = get64(table + ((gva >> (12 + 9 * (l - 1))) & 511) * 8) & 0x000ffffffffff000ull;
    return table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8;
}

static struct guest_paging lm_paging(uint64_t pml4)
{
    return (struct guest_paging){ CR0_PE | CR0_PG | CR0_WP, pml4, CR4_PAE,
                                  EFER_LME | EFER_LMA };
}

/* PAE: PDPT at `pdpt` (32-byte aligned); one page directory per 1 GiB quarter. */
static void pae_map(uint64_t pdpt, uint64_t gva, uint64_t gpa, int leaf, uint64_t flags)
{
    uint64_t slot = pdpt + ((gva >> 30) & 3) * 8;
    uint64_t e = get64(slot);
    if (!(e & P)) {
        e = alloc_table() | P;
        put64(slot, e);
    }
    map64(e & 0x000ffffffffff000ull, 2, gva, gpa, leaf, flags);
}

/* 32-bit: 4 KiB (leaf 1) or 4 MiB (leaf 2) mappings. */
static void map32(uint64_t pd, uint32_t gva, uint64_t gpa, int leaf, uint32_t flags)
{
    uint64_t slot = pd + (gva >> 22) * 4;
    if (leaf == 2) {
        uint32_t e = (uint32_t)(gpa & 0xffc00000) | (uint32_t)(((gpa >> 32) & 0xff) << 13);
        put32(slot, e | flags | PS);
        return;
    }
    uint32_t e = get32(slot);
    if (!(e & P)) {
        e = (uint32_t)alloc_table() | P | RW | US;
        put32(slot, e);
    }
    put32((e & 0xfffff000) + ((gva >> 12) & 0x3ff) * 4, (uint32_t)gpa | flags);
}

static int xlate(const struct guest_paging *pg, uint64_t gva, int write, uint64_t *gpa)
{
    *gpa = 0xdeadbeef;
    return guest_translate(&g, pg, gva, write, gpa);
}

#define CHECK_XLATE(pg, gva, write, expect) do { \
    uint64_t _gpa; \
    int _r = xlate(pg, gva, write, &_gpa); \
    CHECK_MSG(_r == 0 && _gpa == (uint64_t)(expect), \
              "translate 0x%llx (write %d): r=%d gpa=0x%llx, expected 0x%llx", \
              (unsigned long long)(gva), (int)(write), _r, (unsigned long long)_gpa, \
              (unsigned long long)(expect)); \
} while (0)

#define CHECK_FAULT(pg, gva, write) do { \
    uint64_t _gpa; \
    int _r = xlate(pg, gva, write, &_gpa); \
    CHECK_MSG(_r == -EFAULT, "translate 0x%llx (write %d): r=%d gpa=0x%llx, expected fault", \
              (unsigned long long)(gva), (int)(write), _r, (unsigned long long)_gpa); \
    CHECK_EQ(_gpa, 0xdeadbeef); \
} while (0)

/* ---- no paging ---- */

static void no_paging(void)
{
    reset();
    struct guest_paging pg = { CR0_PE, 0x12345000, 0, 0 };
    CHECK_XLATE(&pg, 0, 0, 0);
    CHECK_XLATE(&pg, 0x1234567, 1, 0x1234567);
    CHECK_XLATE(&pg, 0xffffffff, 1, 0xffffffff);
    CHECK_FAULT(&pg, 0x100000000ull, 0);
    CHECK_FAULT(&pg, UINT64_MAX, 0);
    pg.cr0 = 0;                  /* real mode */
    CHECK_XLATE(&pg, 0xffff0, 0, 0xffff0);
}

/* ---- 32-bit paging ---- */

static void paging32_4k(void)
{
    reset();
    uint64_t pd = alloc_table();
    struct guest_paging pg = { CR0_PE | CR0_PG | CR0_WP, pd | 0x18, 0, 0 };
    map32(pd, 0x40001000, 0x5000, 1, P | RW);
    map32(pd, 0xfffff000, 0x6000, 1, P | RW | US);
    CHECK_XLATE(&pg, 0x40001234, 0, 0x5234);
    CHECK_XLATE(&pg, 0x40001fff, 1, 0x5fff);
    CHECK_XLATE(&pg, 0xffffffff, 0, 0x6fff);
    CHECK_FAULT(&pg, 0x40002000, 0);          /* PTE not present */
    CHECK_FAULT(&pg, 0x80000000, 0);          /* PDE not present */
    CHECK_FAULT(&pg, 0x140001234ull, 0);      /* above 4 GiB */
}

static void paging32_4m(void)
{
    reset();
    uint64_t pd = alloc_table();
    struct guest_paging pg = { CR0_PE | CR0_PG | CR0_WP, pd, CR4_PSE, 0 };
    map32(pd, 0xc0000000, 0x400000, 2, P | RW);
    CHECK_XLATE(&pg, 0xc0123456, 0, 0x523456);
    CHECK_XLATE(&pg, 0xc03fffff, 1, 0x7fffff);

    /* PSE-36: PDE bits 20:13 give physical bits 39:32 */
    map32(pd, 0x80000000, 0x3400c00000ull, 2, P | RW);
    CHECK_XLATE(&pg, 0x80000010, 0, 0x3400c00010ull);

    /* bit 21 is reserved in a 4 MiB PDE */
    put32(pd + (0xc0000000u >> 22) * 4, get32(pd + (0xc0000000u >> 22) * 4) | (1u << 21));
    CHECK_FAULT(&pg, 0xc0000000, 0);

    /* without CR4.PSE the PS bit is ignored: the PDE points at a page table */
    reset();
    pd = alloc_table();
    pg.cr3 = pd;
    pg.cr4 = 0;
    put32(pd + (0xc0000000u >> 22) * 4, 0x400000 | P | RW | PS);
    put32(0x400000 + 5 * 4, 0x9000 | P | RW);
    CHECK_XLATE(&pg, 0xc0005123, 0, 0x9123);
    CHECK_FAULT(&pg, 0xc0006000, 0);
}

static void paging32_ro(void)
{
    reset();
    uint64_t pd = alloc_table();
    struct guest_paging pg = { CR0_PE | CR0_PG | CR0_WP, pd, CR4_PSE, 0 };
    map32(pd, 0x1000, 0x5000, 1, P);             /* RO PTE */
    map32(pd, 0x400000, 0x400000, 2, P);         /* RO 4 MiB page */
    map32(pd, 0x800000, 0x6000, 1, P | RW);
    put32(pd + 2 * 4, get32(pd + 2 * 4) & ~(uint32_t)RW);   /* RO PDE over a RW PTE */
    CHECK_XLATE(&pg, 0x1000, 0, 0x5000);
    CHECK_FAULT(&pg, 0x1000, 1);
    CHECK_FAULT(&pg, 0x400000, 1);
    CHECK_FAULT(&pg, 0x800000, 1);
    pg.cr0 &= ~CR0_WP;                           /* supervisor writes ignore R/W */
    CHECK_XLATE(&pg, 0x1000, 1, 0x5000);
    CHECK_XLATE(&pg, 0x400000, 1, 0x400000);
    CHECK_XLATE(&pg, 0x800000, 1, 0x6000);
}

/* ---- PAE ---- */

static void paging_pae(void)
{
    reset();
    uint64_t pdpt = alloc_table() + 0x20;        /* 32-byte aligned, not page aligned */
    struct guest_paging pg = { CR0_PE | CR0_PG | CR0_WP, pdpt, CR4_PAE, 0 };
    pae_map(pdpt, 0x00001000, 0x5000, 1, P | RW);
    pae_map(pdpt, 0xc0200000, 0x600000, 2, P | RW);
    pae_map(pdpt, 0x80003000, 0x123456789000ull, 1, P | RW);   /* high gpa */
    CHECK_XLATE(&pg, 0x1abc, 0, 0x5abc);
    CHECK_XLATE(&pg, 0xc02fffff, 1, 0x6fffff);
    CHECK_XLATE(&pg, 0x80003008, 0, 0x123456789008ull);
    CHECK_FAULT(&pg, 0x2000, 0);                 /* PTE not present */
    CHECK_FAULT(&pg, 0x00400000, 0);             /* PDE not present */
    CHECK_FAULT(&pg, 0x40000000, 0);             /* PDPTE not present */
    CHECK_FAULT(&pg, 0x100001000ull, 0);         /* above 4 GiB */

    /* PDPTE reserved bits: R/W (bit 1) and NX are reserved there */
    uint64_t s = pdpt + 3 * 8;
    uint64_t e = get64(s);
    put64(s, e | RW);
    CHECK_FAULT(&pg, 0xc0200000, 0);
    put64(s, e | NX);
    CHECK_FAULT(&pg, 0xc0200000, 0);
    put64(s, e);

    /* NX in a PDE: reserved unless EFER.NXE */
    uint64_t pde = slot64(get64(s) & ~0xfffull, 2, 0xc0200000, 2);
    put64(pde, get64(pde) | NX);
    CHECK_FAULT(&pg, 0xc0200000, 0);
    pg.efer = EFER_NXE;
    CHECK_XLATE(&pg, 0xc0200000, 0, 0x600000);

    /* 2 MiB page with a reserved low bit (13) */
    put64(pde, get64(pde) | (1ull << 13));
    CHECK_FAULT(&pg, 0xc0200000, 0);
    /* bit 12 is PAT, not reserved */
    put64(pde, (get64(pde) & ~(1ull << 13)) | (1ull << 12));
    CHECK_XLATE(&pg, 0xc0200000, 0, 0x600000);

    /* write protection at the PDE and PTE levels */
    pg.efer = 0;
    uint64_t pte = slot64(get64(pdpt) & ~0xfffull, 2, 0x1000, 1);
    put64(pte, get64(pte) & ~RW);
    CHECK_FAULT(&pg, 0x1000, 1);
    CHECK_XLATE(&pg, 0x1000, 0, 0x5000);
    put64(pte, get64(pte) | RW);
    uint64_t pde0 = slot64(get64(pdpt) & ~0xfffull, 2, 0x1000, 2);
    put64(pde0, get64(pde0) & ~RW);
    CHECK_FAULT(&pg, 0x1000, 1);
    pg.cr0 &= ~CR0_WP;
    CHECK_XLATE(&pg, 0x1000, 1, 0x5000);
}

/* ---- 4-level long mode ---- */

static void paging_lm_pages(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4 | 0x18);
    map64(pml4, 4, 0x400000, 0x5000, 1, P | RW);
    map64(pml4, 4, 0xffffffff80200000ull, 0x200000, 2, P | RW);
    map64(pml4, 4, 0xffff888000000000ull, 0x40000000, 3, P | RW | NX);
    map64(pml4, 4, 0x7ffffffff000ull, 0x7000, 1, P | RW | US);
    CHECK_XLATE(&pg, 0x400123, 0, 0x5123);
    CHECK_XLATE(&pg, 0xffffffff803fffffull, 1, 0x3fffff);
    CHECK_XLATE(&pg, 0x7fffffffffffull, 0, 0x7fff);

    /* 1 GiB page; NX reserved unless EFER.NXE */
    CHECK_FAULT(&pg, 0xffff888000000000ull, 0);
    pg.efer |= EFER_NXE;
    CHECK_XLATE(&pg, 0xffff888012345678ull, 0, 0x52345678);
    CHECK_XLATE(&pg, 0xffff88803fffffffull, 1, 0x7fffffff);
    /* 1 GiB page: bits 29:13 reserved */
    uint64_t s = slot64(pml4, 4, 0xffff888000000000ull, 3);
    put64(s, get64(s) | (1ull << 20));
    CHECK_FAULT(&pg, 0xffff888000000000ull, 0);
    put64(s, get64(s) & ~(1ull << 20));

    /* software-available/protection-key bits 62:52 are ignored, not reserved */
    uint64_t pte = slot64(pml4, 4, 0x400000, 1);
    put64(pte, get64(pte) | (0x7ffull << 52));
    CHECK_XLATE(&pg, 0x400000, 0, 0x5000);

    /* PS in a PML4E is reserved */
    uint64_t top = slot64(pml4, 4, 0x400000, 4);
    put64(top, get64(top) | PS);
    CHECK_FAULT(&pg, 0x400000, 0);
}

static void paging_lm_not_present(void)
{
    for (int level = 1; level <= 4; level++) {
        reset();
        uint64_t pml4 = alloc_table();
        struct guest_paging pg = lm_paging(pml4);
        uint64_t gva = 0xffffc90000123000ull;
        map64(pml4, 4, gva, 0x5000, 1, P | RW);
        CHECK_XLATE(&pg, gva + 5, 0, 0x5005);
        uint64_t s = slot64(pml4, 4, gva, level);
        put64(s, get64(s) & ~P);
        CHECK_FAULT(&pg, gva + 5, 0);
    }
}

static void paging_lm_write_protect(void)
{
    for (int level = 1; level <= 4; level++) {
        reset();
        uint64_t pml4 = alloc_table();
        struct guest_paging pg = lm_paging(pml4);
        uint64_t gva = 0x0000123456789000ull;
        map64(pml4, 4, gva, 0x5000, 1, P | RW);
        uint64_t s = slot64(pml4, 4, gva, level);
        put64(s, get64(s) & ~RW);
        CHECK_XLATE(&pg, gva, 0, 0x5000);
        CHECK_FAULT(&pg, gva, 1);
        pg.cr0 &= ~CR0_WP;
        CHECK_XLATE(&pg, gva, 1, 0x5000);
    }
}

static void paging_lm_canonical(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4);
    /* map PML4 slots 255 and 256 so only the canonical check can fault */
    map64(pml4, 4, 0x00007fffc0000000ull, 0, 3, P | RW);
    map64(pml4, 4, 0xffff800000000000ull, 0, 3, P | RW);
    CHECK_XLATE(&pg, 0x00007fffffffffffull, 0, 0x3fffffff);
    CHECK_XLATE(&pg, 0xffff800000000000ull, 0, 0);
    CHECK_FAULT(&pg, 0x0000800000000000ull, 0);
    CHECK_FAULT(&pg, 0xffff7fffffffffffull, 0);
    CHECK_FAULT(&pg, 0x8000000000000000ull, 0);
    CHECK_FAULT(&pg, 0x00ff800000000000ull, 0);
}

static void paging_lm_unsupported(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    map64(pml4, 4, 0x1000, 0x5000, 1, P | RW);
    struct guest_paging pg = lm_paging(pml4);
    CHECK_XLATE(&pg, 0x1000, 0, 0x5000);
    pg.cr4 |= CR4_LA57;                       /* 5-level paging: not supported */
    CHECK_FAULT(&pg, 0x1000, 0);
    pg = lm_paging(pml4);
    pg.cr4 = 0;                               /* LMA without PAE: impossible state */
    CHECK_FAULT(&pg, 0x1000, 0);
}

static void tables_outside_memory(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4);
    map64(pml4, 4, 0x1000, 0x5000, 1, P | RW);
    map64(pml4, 4, 0x200000, 0x5000, 1, P | RW);
    /* a page directory pointer far outside guest RAM */
    uint64_t s = slot64(pml4, 4, 0x1000, 2);
    put64(s, 0x7ff0000000ull | P | RW);
    CHECK_FAULT(&pg, 0x1000, 0);
    /* CR3 outside guest RAM */
    pg.cr3 = 0x40000000;
    CHECK_FAULT(&pg, 0x1000, 0);
    /* table straddling the end of memory */
    pg.cr3 = MEM_SIZE - 0x1000;
    put64(MEM_SIZE - 8, 0x3000 | P | RW);     /* slot 511 is in memory, fine */
    CHECK_FAULT(&pg, 0xffffff8000000000ull, 0); /* ... but the PDPT at 0x3000 is empty */

    /* 32-bit and PAE: CR3 outside memory */
    struct guest_paging p32 = { CR0_PE | CR0_PG, 0xfffff000, 0, 0 };
    CHECK_FAULT(&p32, 0x1000, 0);
    struct guest_paging pae = { CR0_PE | CR0_PG, 0xffffffe0, CR4_PAE, 0 };
    CHECK_FAULT(&pae, 0x1000, 0);
}

static void null_args(void)
{
    struct guest_paging pg = { 0 };
    uint64_t gpa;
    CHECK_EQ(guest_translate(&g, NULL, 0, 0, &gpa), -EFAULT);
    CHECK_EQ(guest_translate(&g, &pg, 0, 0, NULL), -EFAULT);
}

/* ---- copies ---- */

static void copy_across_pages(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4);
    /* two consecutive linear pages backed by non-adjacent frames, in reverse order */
    map64(pml4, 4, 0x10000, 0x9000, 1, P | RW);
    map64(pml4, 4, 0x11000, 0x3000, 1, P | RW);
    for (unsigned i = 0; i < 0x1000; i++) {
        mem[0x9000 + i] = (uint8_t)i;
        mem[0x3000 + i] = (uint8_t)(i ^ 0x5a);
    }
    uint8_t buf[0x1800];
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x10800, sizeof(buf)), 0);
    for (unsigned i = 0; i < 0x800; i++)
        CHECK_EQ(buf[i], (uint8_t)(0x800 + i));
    for (unsigned i = 0; i < 0x1000; i++)
        CHECK_EQ(buf[0x800 + i], (uint8_t)(i ^ 0x5a));

    uint8_t src[0x20];
    for (unsigned i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(0xc0 + i);
    CHECK_EQ(copy_to_guest(&g, &pg, 0x10ff0, src, sizeof(src)), 0);
    CHECK(memcmp(mem + 0x9ff0, src, 0x10) == 0);
    CHECK(memcmp(mem + 0x3000, src + 0x10, 0x10) == 0);

    /* exactly one page, and one byte */
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x11000, 0x1000), 0);
    CHECK_EQ(buf[0], 0xd0);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x11fff, 1), 0);
    CHECK_EQ(buf[0], (uint8_t)(0xfff ^ 0x5a));
}

static void copy_second_page_unmapped(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4);
    map64(pml4, 4, 0x10000, 0x9000, 1, P | RW);
    memset(mem + 0x9000, 0x11, 0x1000);

    uint8_t buf[0x2000];
    memset(buf, 0xee, sizeof(buf));
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x10f00, 0x200), -EFAULT);
    /* the first page may have been copied; nothing past it was touched */
    for (unsigned i = 0x100; i < sizeof(buf); i++)
        CHECK_EQ(buf[i], 0xee);

    /* to guest: second page read-only under CR0.WP; it stays untouched */
    map64(pml4, 4, 0x11000, 0xa000, 1, P);
    memset(mem + 0xa000, 0x22, 0x1000);
    memset(buf, 0x33, sizeof(buf));
    CHECK_EQ(copy_to_guest(&g, &pg, 0x10f00, buf, 0x200), -EFAULT);
    for (unsigned i = 0; i < 0x1000; i++)
        CHECK_EQ(mem[0xa000 + i], 0x22);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x10f00, 0x200), 0);   /* reads are fine */

    /* mapped, but the frame is outside guest RAM */
    map64(pml4, 4, 0x12000, 0x40000000, 1, P | RW);
    uint64_t gpa;
    CHECK_EQ(guest_translate(&g, &pg, 0x12000, 0, &gpa), 0);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x12000, 1), -EFAULT);
    CHECK_EQ(copy_to_guest(&g, &pg, 0x12000, buf, 1), -EFAULT);
}

static void copy_bounds(void)
{
    reset();
    uint64_t pml4 = alloc_table();
    struct guest_paging pg = lm_paging(pml4);
    map64(pml4, 4, 0xfffffffffffff000ull, 0x9000, 1, P | RW);
    uint8_t buf[0x1000];

    /* len 0 succeeds whatever the address */
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x8000000000000000ull, 0), 0);
    CHECK_EQ(copy_to_guest(&g, &pg, UINT64_MAX, buf, 0), 0);

    /* a range ending exactly at 2^64 is fine; one byte more wraps */
    mem[0x9fff] = 0x77;
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0xfffffffffffff000ull, 0x1000), 0);
    CHECK_EQ(buf[0xfff], 0x77);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, UINT64_MAX, 1), 0);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, UINT64_MAX, 2), -EFAULT);
    CHECK_EQ(copy_to_guest(&g, &pg, 0xfffffffffffff001ull, buf, 0x1000), -EFAULT);
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 1, SIZE_MAX), -EFAULT);

    /* non-canonical range start, and a range that runs into the hole */
    CHECK_EQ(copy_from_guest(&g, &pg, buf, 0x0000800000000000ull, 1), -EFAULT);

    /* 32-bit: linear addresses stop at 4 GiB */
    reset();
    uint64_t pd = alloc_table();
    struct guest_paging p32 = { CR0_PE | CR0_PG, pd, 0, 0 };
    map32(pd, 0xfffff000, 0x9000, 1, P | RW);
    CHECK_EQ(copy_from_guest(&g, &p32, buf, 0xfffff000, 0x1000), 0);
    CHECK_EQ(copy_from_guest(&g, &p32, buf, 0xfffffff0, 0x20), -EFAULT);

    /* no paging: physical, bounded by guest RAM and by 4 GiB */
    struct guest_paging flat = { CR0_PE, 0, 0, 0 };
    CHECK_EQ(copy_to_guest(&g, &flat, MEM_SIZE - 4, "abcd", 4), 0);
    CHECK(memcmp(mem + MEM_SIZE - 4, "abcd", 4) == 0);
    CHECK_EQ(copy_to_guest(&g, &flat, MEM_SIZE - 4, "abcde", 5), -EFAULT);
}

int main(void)
{
    mem = malloc(MEM_SIZE);
    if (!mem)
        return 1;
    RUN_TEST(no_paging);
    RUN_TEST(paging32_4k);
    RUN_TEST(paging32_4m);
    RUN_TEST(paging32_ro);
    RUN_TEST(paging_pae);
    RUN_TEST(paging_lm_pages);
    RUN_TEST(paging_lm_not_present);
    RUN_TEST(paging_lm_write_protect);
    RUN_TEST(paging_lm_canonical);
    RUN_TEST(paging_lm_unsupported);
    RUN_TEST(tables_outside_memory);
    RUN_TEST(null_args);
    RUN_TEST(copy_across_pages);
    RUN_TEST(copy_second_page_unmapped);
    RUN_TEST(copy_bounds);
    free(mem);
    HARNESS_EXIT();
}
