/* The hypercall fuzzer's PRNG and argument pools: see fuzzgen.h. */
#include "fuzzgen.h"

#include <xen/xen.h>

struct fz_layout fz;
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

#define SCRATCH_BYTES ((uint64_t)FZ_SCRATCH_PAGES * PAGE_SIZE)
#define ARENA_BYTES   (128 * 1024)

static uint8_t arena[ARENA_BYTES] __attribute__((aligned(4096)));
/*
 * What the guard page maps: a page of the image, so no pool value names it and the
 * fuzzer's own calls never give it back (its CPL3 code writes there; a native write to
 * a page given back fails the vCPU: docs/hypervisor.md, "Holes inside RAM").
 */
static uint8_t guard_backing[PAGE_SIZE] __attribute__((aligned(4096)));
static size_t arena_used;

static bool overlaps_reserved(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < boot.nr_reserved; i++)
        if (start < boot.reserved[i].end && boot.reserved[i].start < end)
            return true;
    return false;
}

const char *fz_layout_init(void)
{
    uint64_t top = 0;
    for (unsigned i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        if (e->type == XEN_HVM_MEMMAP_TYPE_RAM && e->addr <= (1ULL << 20) &&
            e->addr + e->size > (1ULL << 20))
            top = e->addr + e->size;
    }
    if (top > IDENT_MAP_LIMIT)
        top = IDENT_MAP_LIMIT;
    if (top < 3 * SCRATCH_BYTES)
        return "too little RAM below 4 GiB (or no memory map)";
    fz.ram_top_gfn = top >> 12;
    /* One MiB below the top of RAM, so that extents may run past it into free RAM. */
    uint64_t at = (top - 2 * SCRATCH_BYTES) & ~(SCRATCH_BYTES - 1);
    if (overlaps_reserved(at, at + SCRATCH_BYTES))
        return "the scratch region overlaps the image or boot data";
    fz.scratch_gfn = at >> 12;
    uint64_t low = (uint64_t)(uintptr_t)__image_start;
    for (unsigned i = 0; i < boot.nr_reserved; i++)
        if (boot.reserved[i].start >= PAGE_SIZE && boot.reserved[i].start < low)
            low = boot.reserved[i].start;
    fz.low_gfn_end = low >> 12;
    if (map_page(FZ_GUARD_VA, (uint64_t)(uintptr_t)guard_backing, true))
        return "cannot map the guard page";
    return NULL;
}

void fz_seed(uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    if (!rng_state)
        rng_state = 1;
}

uint64_t fz_rand(void)
{
    /* xorshift64* */
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint64_t fz_below(uint64_t n)
{
    return fz_rand() % n;
}

bool fz_chance(unsigned percent)
{
    return fz_below(100) < percent;
}

static uint64_t pick(const uint64_t *v, size_t n)
{
    return v[fz_below(n)];
}

/* ---- frames ------------------------------------------------------------------------ */

uint64_t fz_gfn(unsigned order)
{
    uint64_t pages = 1ULL << (order < 40 ? order : 40);
    switch (fz_below(order ? 4 : 9)) {
    case 0:     /* inside the scratch region, aligned to the extent */
    case 1:
        if (pages <= FZ_SCRATCH_PAGES)
            return fz.scratch_gfn + (fz_below(FZ_SCRATCH_PAGES / pages) * pages);
        /* fall through */
    case 2: {   /* past RAM, below the MMIO hole (gfn 0xF0000) */
        uint64_t base = (fz.ram_top_gfn + 0x1000 + pages) & ~(pages - 1);
        if (base + pages <= 0xF0000)
            return base + fz_below(16) * pages;
        return base;
    }
    case 3: {   /* absurd */
        static const uint64_t far[] = { 1ULL << 36, 1ULL << 40, (1ULL << 52) - 1,
                                        0x7fffffffffffffffULL, ~0ULL, 0xffffffffULL };
        return pick(far, ARRAY_SIZE(far)) & ~(pages - 1);
    }
    case 4:     /* free RAM below the image */
        return 1 + fz_below(fz.low_gfn_end > 1 ? fz.low_gfn_end - 1 : 1);
    case 5:     /* the toolstack's special pages, ACPI, the MMIO hole */
        return fz_chance(50) ? 0xFEFF0 + fz_below(16) :
               fz_chance(50) ? 0xFC000 + fz_below(4) : 0xF0000 + fz_below(0x10000);
    case 6:     /* gfn 0, the NULL page (free RAM too) */
        return 0;
    case 7:     /* just past the top of RAM */
        return fz.ram_top_gfn + fz_below(4);
    default:    /* the scratch region, any page */
        return fz.scratch_gfn + fz_below(FZ_SCRATCH_PAGES);
    }
}

/* ---- pointers ---------------------------------------------------------------------- */

bool fz_writable(uint64_t p, size_t len)
{
    uint64_t s = fz.scratch_gfn << 12;
    if (p >= s && p + len <= s + SCRATCH_BYTES && p + len >= p)
        return true;
    uint64_t a = (uint64_t)(uintptr_t)arena;
    if (p >= a && p + len <= a + ARENA_BYTES && p + len >= p)
        return true;
    return p >= FZ_GUARD_VA && p + len <= FZ_GUARD_VA + PAGE_SIZE;
}

uint64_t fz_ptr(size_t len)
{
    uint64_t s = fz.scratch_gfn << 12;
    if (len > 65536)    /* a huge count: where it starts is what matters */
        len = 65536;
    switch (fz_below(20)) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: {
        /* scratch, 8-aligned, fitting */
        uint64_t room = SCRATCH_BYTES - (len < SCRATCH_BYTES ? len : 0);
        return s + (fz_below(room / 8 + 1) * 8);
    }
    case 8: case 9:     /* scratch, misaligned */
        return s + fz_below(SCRATCH_BYTES - 64) + 1;
    case 10:            /* crossing a page boundary inside scratch */
        return s + PAGE_SIZE * (1 + fz_below(FZ_SCRATCH_PAGES - 2)) - 1 - fz_below(len + 1);
    case 11: case 12:   /* the guard page's end: the rest is unmapped */
        return FZ_GUARD_VA + PAGE_SIZE - 1 - fz_below(len + 1);
    case 13:            /* NULL and the NULL page */
        return fz_chance(50) ? 0 : fz_below(PAGE_SIZE);
    case 14:            /* unmapped, canonical */
        return FZ_UNMAPPED_VA + (fz_rand() & ((1ULL << 40) - 1));
    case 15:            /* non-canonical */
        return 0x8000000000000000ULL | (fz_rand() & 0x7fff00000000ffffULL) | (1ULL << 47);
    case 16:            /* the kernel half, unmapped */
        return 0xffff800000000000ULL | (fz_rand() & 0x7fffffffffffULL);
    case 17:            /* wrapping around */
        return ~0ULL - fz_below(len + 1);
    case 18:            /* the MMIO hole, the special pages: mapped, mostly not RAM */
        return fz_chance(50) ? 0xF0000000ULL + (fz_rand() & 0xfffffffULL) :
                               0xFEFF0000ULL + fz_below(16 * PAGE_SIZE);
    default:            /* just past RAM, through the identity map */
        return (fz.ram_top_gfn << 12) + fz_below(4 * PAGE_SIZE);
    }
}

void fz_arena_reset(void)
{
    arena_used = 0;
}

size_t fz_arena_room(void)
{
    return ARENA_BYTES - arena_used;
}

void *fz_buf(size_t len)
{
    if (len > 8192)
        len = 8192;
    size_t at = (arena_used + 7) & ~(size_t)7;
    if (fz_chance(10))          /* misaligned, across a page boundary */
        at = ((at + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) + PAGE_SIZE - (len / 2 | 1);
    if (at + len > ARENA_BYTES)     /* the caller ran out of room: reuse the start */
        at = 0;
    arena_used = at + len;
    fz_fill(arena + at, len);
    return arena + at;
}

void fz_fill(void *p, size_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)p;
    if (!fz_writable(a, len))
        return;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = fz_word();
        size_t n = len - i < 8 ? len - i : 8;
        memcpy((uint8_t *)p + i, &w, n);
    }
}

/* ---- small things -------------------------------------------------------------------- */

uint16_t fz_domid(void)
{
    static const uint64_t ids[] = {
        0, 1, 2, 3, 4, 5, DOMID_SELF, DOMID_SELF, DOMID_SELF, DOMID_IO, DOMID_XEN,
        DOMID_COW, DOMID_INVALID, DOMID_IDLE, 0x7ff6, 0x7fff, 0x8000, 0xffff, 0x7fef,
    };
    return (uint16_t)(fz_chance(10) ? fz_rand() : pick(ids, ARRAY_SIZE(ids)));
}

static uint32_t ports_seen[16];

void fz_note_port(uint32_t port)
{
    ports_seen[fz_below(ARRAY_SIZE(ports_seen))] = port;
}

uint32_t fz_port(void)
{
    switch (fz_below(8)) {
    case 0: case 1: case 2:
        return ports_seen[fz_below(ARRAY_SIZE(ports_seen))];
    case 3: case 4:
        return (uint32_t)fz_below(64);
    case 5: {
        static const uint64_t edge[] = { 0, 4095, 4096, 4097, 0x20000, 0x7fffffff,
                                         0x80000000, 0xffffffff, 1023, 1024, 131071 };
        return (uint32_t)pick(edge, ARRAY_SIZE(edge));
    }
    default:
        return (uint32_t)fz_below(4200);
    }
}

uint32_t fz_vcpu(void)
{
    static const uint64_t ids[] = { 1, 2, 3, 31, 32, 127, 128, 0x7fffffff, 0xffffffff };
    return fz_chance(70) ? 0 : (uint32_t)pick(ids, ARRAY_SIZE(ids));
}

/* Whether v, read as an address or as a frame number, names the image or boot data. */
static bool names_guest(uint64_t v)
{
    for (unsigned i = 0; i < boot.nr_reserved; i++) {
        const struct mem_region *r = &boot.reserved[i];
        if (r->start < PAGE_SIZE)
            continue;           /* the NULL page: fair game */
        if ((v >= r->start && v < r->end) || (v >= r->start >> 12 && v < r->end >> 12))
            return true;
    }
    return false;
}

static uint64_t word_unsafe(void);

uint64_t fz_word(void)
{
    uint64_t w = word_unsafe();
    return names_guest(w) ? w | (1ULL << 32) : w;
}

static uint64_t word_unsafe(void)
{
    static const uint64_t edge[] = {
        0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 4095, 4096, 4097,
        0x40000,
        0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL,
        0x7fffffffffffffffULL, 0x8000000000000000ULL, ~0ULL, ~0ULL - 1,
    };
    switch (fz_below(10)) {
    case 0: case 1:
        return fz_below(256);
    case 2: case 3:
        return pick(edge, ARRAY_SIZE(edge));
    case 4:
        return fz_domid();
    case 5:
        return fz_gfn(0);
    case 6: case 7:
        return fz_ptr(64);
    case 8:
        return fz_port();
    default:
        /* random bits, but neither half a small frame number, nor a low pointer */
        return fz_rand() | 0x0001000100010000ULL;
    }
}
