/*
 * Page-table changes after boot: the NULL page is unmapped (so a NULL pointer
 * handed to a hypercall really is unmapped), and extra 4 KiB mappings outside the
 * boot identity map ([0, 4 GiB), built in head.S) serve as guard pages.
 */
#include "guest.h"

#define PT_POOL 8
#define PTE_P   0x1ULL
#define PTE_RW  0x2ULL
#define PTE_US  0x4ULL
#define PTE_PS  0x80ULL
#define PTE_ADDR 0x000ffffffffff000ULL

extern uint64_t pvh_pml4[512], pvh_pdpt[512], pvh_pd[4 * 512];
static uint64_t pt_pool[PT_POOL][512] __attribute__((aligned(4096)));
static unsigned pt_used;

static uint64_t *alloc_table(void)
{
    return pt_used < PT_POOL ? pt_pool[pt_used++] : NULL;
}

static uint64_t *next_level(uint64_t *table, unsigned idx)
{
    if (!(table[idx] & PTE_P)) {
        uint64_t *t = alloc_table();            /* zero: .bss */

        if (!t)
            return NULL;
        table[idx] = (uint64_t)(uintptr_t)t | PTE_P | PTE_RW | PTE_US;
    } else if (table[idx] & PTE_PS) {
        return NULL;
    }
    return (uint64_t *)(uintptr_t)(table[idx] & PTE_ADDR);
}

/* Split the first 2 MiB of the identity map into 4 KiB pages, all but page 0.
 * About 1000 short loop iterations: cheap even under emulation. */
void mm_init(void)
{
    uint64_t *pt = alloc_table(), *pd = pvh_pd;

    if (pvh_huge_pages) {
        pd = alloc_table();
        for (unsigned i = 0; i < 512; i++)
            pd[i] = ((uint64_t)i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;
    }
    for (unsigned i = 1; i < 512; i++)
        pt[i] = ((uint64_t)i << 12) | PTE_P | PTE_RW | PTE_US;
    pd[0] = (uint64_t)(uintptr_t)pt | PTE_P | PTE_RW | PTE_US;
    if (pvh_huge_pages)
        pvh_pdpt[0] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_RW | PTE_US;
    write_cr3(read_cr3());
}

int map_page(uint64_t va, uint64_t pa, bool user)
{
    if (va < (512ULL << 30) || va >= (1ULL << 47) || (va | pa) & (PAGE_SIZE - 1))
        return -1;

    uint64_t *pdpt = next_level(pvh_pml4, (va >> 39) & 511);
    uint64_t *pd = pdpt ? next_level(pdpt, (va >> 30) & 511) : NULL;
    uint64_t *pt = pd ? next_level(pd, (va >> 21) & 511) : NULL;

    if (!pt)
        return -1;
    pt[(va >> 12) & 511] = pa | PTE_P | PTE_RW | (user ? PTE_US : 0);
    asm volatile("invlpg (%0)" :: "r"(va) : "memory");
    return 0;
}
