/*
 * The hypercall fuzzer's generator (guest/tests/hcfuzz.c; docs/testing.md, "The
 * hypercall fuzzer"): a seeded PRNG and the pools its arguments come from.
 *
 * Everything here runs at CPL3 too (run_user: native speed under kvm-pvm), as
 * hcfuzz.c builds its calls in batches there.
 *
 * The rule that keeps the fuzzing guest alive: every value a hypervisor may take as a
 * guest-physical frame or a guest-linear pointer is drawn from a pool that never names
 * the guest's own image (code, data, stacks, page tables), start_info or command line.
 * Frames come from the scratch region, the free RAM below the image, holes past RAM,
 * the MMIO hole, the toolstack's special pages or absurd numbers; pointers from the
 * scratch region (aligned, misaligned, page-crossing), a mapped page followed by an
 * unmapped one, NULL, unmapped, non-canonical and kernel-half addresses. The
 * hypervisor may write anything into those; the guest never relies on them.
 */
#ifndef XKVM_GUEST_FUZZGEN_H
#define XKVM_GUEST_FUZZGEN_H

#include "guest.h"

/* The scratch region: identity-mapped free RAM, FZ_SCRATCH_PAGES pages. */
#define FZ_SCRATCH_PAGES 256
/* A mapped page (an image page of its own) whose next page is unmapped. */
#define FZ_GUARD_VA      (1ULL << 40)
#define FZ_UNMAPPED_VA   (1ULL << 41)

struct fz_layout {
    uint64_t scratch_gfn;       /* first gfn of the scratch region (va == pa) */
    uint64_t ram_top_gfn;       /* end of the RAM the memory map gives, below 4 GiB */
    uint64_t low_gfn_end;       /* free gfns [1, low_gfn_end) below the image */
};
extern struct fz_layout fz;

/* Find the scratch region and map the guard page; NULL or what is wrong. */
const char *fz_layout_init(void);

void fz_seed(uint64_t seed);
uint64_t fz_rand(void);
uint64_t fz_below(uint64_t n);          /* [0, n), n > 0 */
bool fz_chance(unsigned percent);
static inline uint8_t *fz_scratch(void)
{
    return (uint8_t *)(uintptr_t)(fz.scratch_gfn << 12);
}

/* A frame number from the gfn pool; an order > 0 gets an extent of 2^order frames
 * that stays inside the pool (aligned in the scratch region, or past RAM). */
uint64_t fz_gfn(unsigned order);
/* A pointer for an object of len bytes, from the pointer pool. */
uint64_t fz_ptr(size_t len);
/*
 * Room for len bytes (at most 8 KiB) in the arena, filled with fz_word()s: where a
 * call's own argument structures are built. The arena is part of the image, so no
 * pool value ever names it and the hypervisor writes there only while a call it was
 * handed runs (a registered area in scratch memory is rewritten at any time: a
 * structure built there could change between building and issuing). Mostly 8-byte
 * aligned, sometimes misaligned across a page boundary. fz_arena_reset() starts a
 * batch; fz_arena_room() is what is left.
 */
void *fz_buf(size_t len);
void fz_arena_reset(void);
size_t fz_arena_room(void);
/* Whether [p, p + len) is memory the guest itself may write (scratch, guard page,
 * arena). */
bool fz_writable(uint64_t p, size_t len);
/* A domid: 0, the other guests, ourselves, DOMID_SELF/IO/XEN/..., absurd ones. */
uint16_t fz_domid(void);
/* An event channel port: small, remembered from earlier answers, edges. */
uint32_t fz_port(void);
void fz_note_port(uint32_t port);
/* A vCPU id: mostly 0, then 1, 2, 31, 32, huge. */
uint32_t fz_vcpu(void);
/* Any word: small numbers, edges, domids, gfns, pointers, random bits. */
uint64_t fz_word(void);
/* Fill [p, p + len) with fz_word()s (only where fz_writable). */
void fz_fill(void *p, size_t len);

/* The checksum the fuzzer prints: FNV-1a-like mixing of 64-bit values. */
static inline uint64_t fz_mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001b3ULL;
    return h ^ (h >> 29);
}

#endif
