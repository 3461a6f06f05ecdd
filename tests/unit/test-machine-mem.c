/* Machine memory: allocator, frame table, freeing returns frames zeroed. */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "hv/machine_mem.h"

HARNESS_MAIN_STATE("machine-mem");

#define MB (1024ULL * 1024)

static void alloc_whole_then_free(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 4 * MB) == 0);
    CHECK_EQ(mm.nr_frames, 1024);
    /* An eighth, at the top, is the live-update region: never given to domains. */
    CHECK_EQ(mm.lu_nr, 128);
    CHECK_EQ(mm.lu_mfn, 896);
    CHECK_EQ(mm_free_frames(&mm), 896);
    uint64_t mfn = 99;
    CHECK_EQ(mm_alloc_run(&mm, 4096, 7, FRAME_RAM, &mfn), 896);
    CHECK_EQ(mfn, 0);
    CHECK_EQ(mm_free_frames(&mm), 0);
    CHECK_EQ(mm_alloc_run(&mm, 1, 7, FRAME_RAM, &mfn), 0);
    CHECK_EQ(mm_count_owner(&mm, 7), 896);
    CHECK_EQ(mm_free_owner(&mm, 7), 896);
    CHECK_EQ(mm_free_frames(&mm), 896);
    mm_fini(&mm);
}

static void runs_and_fragmentation(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 1 * MB) == 0);
    uint64_t a, b, c;
    CHECK_EQ(mm_alloc_run(&mm, 10, 1, FRAME_RAM, &a), 10);
    CHECK_EQ(mm_alloc_run(&mm, 10, 2, FRAME_RAM, &b), 10);
    CHECK_EQ(mm_alloc_run(&mm, 10, 1, FRAME_RAM, &c), 10);
    CHECK(a != b && b != c && a != c);
    CHECK_EQ(mm.frames[b].owner, 2);
    CHECK_EQ(mm.frames[b].type, FRAME_RAM);
    mm_free_run(&mm, b, 10);
    CHECK_EQ(mm.frames[b].owner, DOMID_NONE);
    CHECK_EQ(mm_count_owner(&mm, 1), 20);
    CHECK_EQ(mm_free_frames(&mm), 256 - 20);
    /* Out-of-range frees are ignored, not fatal. */
    mm_free_run(&mm, 255, 2);
    mm_free_run(&mm, UINT64_MAX, 1);
    CHECK_EQ(mm_free_frames(&mm), 256 - 20);
    mm_fini(&mm);
}

static void freed_frames_read_zero(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 1 * MB) == 0);
    uint64_t mfn;
    REQUIRE(mm_alloc_run(&mm, 4, 3, FRAME_RAM, &mfn) == 4);
    memset(mm_frame_ptr(&mm, mfn), 0xab, 4 * XKVM_PAGE_SIZE);
    mm_free_owner(&mm, 3);
    uint64_t again;
    REQUIRE(mm_alloc_run(&mm, 256, 4, FRAME_RAM, &again) == 256);
    const uint8_t *p = mm_frame_ptr(&mm, mfn);
    int nonzero = 0;
    for (uint64_t i = 0; i < 4 * XKVM_PAGE_SIZE; i++)
        nonzero |= p[i];
    CHECK_EQ(nonzero, 0);
    mm_fini(&mm);
}

/*
 * Live update: a second machine_mem over the same memfd (as the next xkvmd sees it)
 * claims what the image names, allocates only from the region until finished, and
 * then has the unclaimed frames read zero while the claimed keep their contents.
 */
static void live_update_takeover(void)
{
    struct machine_mem old;
    REQUIRE(mm_init(&old, 4 * MB) == 0);
    uint64_t ram, xen;
    REQUIRE(mm_alloc_run(&old, 16, 3, FRAME_RAM, &ram) == 16);
    REQUIRE(mm_alloc_run(&old, 1, 3, FRAME_SHARED_INFO, &xen) == 1);
    memset(mm_frame_ptr(&old, ram), 0xA5, 16 * XKVM_PAGE_SIZE);
    memset(mm_frame_ptr(&old, xen), 0x5A, XKVM_PAGE_SIZE);

    struct machine_mem mm;
    REQUIRE(mm_init_inherited(&mm, old.fd, old.nr_frames, old.lu_mfn, old.lu_nr) == 0);
    CHECK(mm_init_inherited(&(struct machine_mem){ 0 }, old.fd, old.nr_frames + 1,
                            old.lu_mfn, old.lu_nr) < 0);
    REQUIRE(mm_claim(&mm, ram, 16, 3, FRAME_RAM) == 0);
    CHECK_EQ(mm_claim(&mm, ram + 15, 2, 4, FRAME_RAM), -EEXIST);
    uint64_t mfn;
    CHECK_EQ(mm_alloc_run(&mm, 4, 3, FRAME_SHARED_INFO, &mfn), 4);
    CHECK(mfn >= old.lu_mfn && mfn < old.lu_mfn + old.lu_nr);
    /* A failed restore frees what it claimed without touching it (rollback). */
    mm_free_run(&mm, ram, 16);
    CHECK_EQ(((uint8_t *)mm_frame_ptr(&mm, ram))[0], 0xA5);
    REQUIRE(mm_claim(&mm, ram, 16, 3, FRAME_RAM) == 0);

    mm_lu_finish(&mm);
    CHECK(!mm.lu_only);
    CHECK_EQ(((uint8_t *)mm_frame_ptr(&mm, ram))[16 * XKVM_PAGE_SIZE - 1], 0xA5);
    CHECK_EQ(((uint8_t *)mm_frame_ptr(&mm, xen))[0], 0);   /* nobody adopted it */
    CHECK_EQ(mm.lu_nr, 128);
    for (uint64_t f = mm.lu_mfn; f < mm.lu_mfn + mm.lu_nr; f++)
        CHECK((mm.free_bitmap[f / 64] >> (f % 64)) & 1);
    CHECK_EQ(mm_free_frames(&mm), 1024 - 16 - 4 - 128);
    mm.fd = -1;     /* old owns the fd */
    mm_fini(&mm);
    mm_fini(&old);
}

/*
 * The invariant of docs/security.md: a frame is handed out again only when no p2m
 * (maps) and no foreign mapping (refs) names it. Freed while named, it stays the
 * hypervisor's, intact, until the last name goes.
 */
static void named_frames_outlive_free(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 1024 * XKVM_PAGE_SIZE) == 0);
    uint64_t mfn;
    REQUIRE(mm_alloc_run(&mm, 4, 7, FRAME_RAM, &mfn) == 4);
    memset(mm_frame_ptr(&mm, mfn), 0x41, 4 * XKVM_PAGE_SIZE);
    CHECK_EQ(mm_map_get(&mm, mfn, 2, 7), 0);           /* two gfns map frames 0, 1 */
    CHECK_EQ(mm_map_get(&mm, mfn, 1, 8), -EINVAL);     /* not domain 8's */
    CHECK_EQ(mm_map_get(&mm, mfn, 1, 7), 0);           /* frame 0 at a second gfn */
    CHECK_EQ(mm_frame_get(&mm, mfn + 2, 7, 1u << FRAME_RAM), 0);   /* a dom0 mapping */
    uint64_t before = mm_free_frames(&mm);

    mm_free_run(&mm, mfn, 4);       /* the domain gives them all back */
    CHECK_EQ(mm_free_frames(&mm), before + 1);          /* only the unnamed frame 3 */
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(mm.frames[mfn + i].owner, DOMID_HYPERVISOR);
        CHECK(mm.frames[mfn + i].flags & FRAME_ORPHAN);
        CHECK_EQ(((uint8_t *)mm_frame_ptr(&mm, mfn + i))[0], 0x41);    /* intact */
    }
    CHECK_EQ(mm_map_get(&mm, mfn + 1, 1, 7), -EINVAL);  /* an orphan takes no new name */
    uint64_t again;
    for (uint64_t n; (n = mm_alloc_run(&mm, 1024, 9, FRAME_RAM, &again));)
        for (uint64_t f = again; f < again + n; f++)
            CHECK(f < mfn || f > mfn + 2);              /* never a named frame */
    mm_free_owner(&mm, 9);

    mm_map_put(&mm, mfn, 1);        /* frame 0: one name left */
    CHECK_EQ(mm.frames[mfn].owner, DOMID_HYPERVISOR);
    mm_map_put(&mm, mfn, 2);        /* frame 0's last name, frame 1's only one */
    CHECK_EQ(mm.frames[mfn].owner, DOMID_NONE);
    CHECK_EQ(mm.frames[mfn + 1].owner, DOMID_NONE);
    CHECK_EQ(((uint8_t *)mm_frame_ptr(&mm, mfn))[0], 0);           /* scrubbed */
    mm_frame_put(&mm, mfn + 2);
    CHECK_EQ(mm.frames[mfn + 2].owner, DOMID_NONE);
    CHECK_EQ(mm_free_frames(&mm), before + 4);
    mm_fini(&mm);
}

static void map_names_are_bounded(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 1024 * XKVM_PAGE_SIZE) == 0);
    uint64_t mfn;
    REQUIRE(mm_alloc_run(&mm, 2, 3, FRAME_GRANT, &mfn) == 2);
    for (unsigned i = 0; i < FRAME_MAPS_MAX; i++)
        REQUIRE(mm_map_get(&mm, mfn + 1, 1, 3) == 0);
    CHECK_EQ(mm_map_get(&mm, mfn, 2, 3), -EBUSY);       /* all or none */
    CHECK_EQ(mm_frame_maps(&mm, mfn), 0);
    CHECK_EQ(mm_frame_maps(&mm, mfn + 1), FRAME_MAPS_MAX);
    mm_fini(&mm);
}

/* Runs that start and end inside a bitmap word and span whole words between. */
static void claims_across_bitmap_words(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 2 * MB) == 0);         /* 512 frames, 8 words */
    uint64_t before = mm_free_frames(&mm);
    REQUIRE(mm_claim(&mm, 60, 200, 4, FRAME_RAM) == 0);
    for (uint64_t f = 50; f < 270; f++) {
        bool is_free = (mm.free_bitmap[f / 64] >> (f % 64)) & 1;
        CHECK_EQ(is_free, f < 60 || f >= 260);
    }
    CHECK_EQ(mm_count_owner(&mm, 4), 200);
    CHECK_EQ(mm_claim(&mm, 259, 2, 5, FRAME_RAM), -EEXIST);
    mm_free_run(&mm, 60, 200);
    CHECK_EQ(mm_free_frames(&mm), before);
    CHECK_EQ(mm_count_owner(&mm, 4), 0);
    mm_fini(&mm);
}

/* mm_claim_named: the frames come named once, as if mm_map_get had run. */
static void claim_named(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 2 * MB) == 0);
    uint64_t before = mm_free_frames(&mm);
    REQUIRE(mm_claim_named(&mm, 10, 100, 6, FRAME_RAM) == 0);
    CHECK_EQ(mm.frames[10].maps, 1);
    CHECK_EQ(mm.frames[109].maps, 1);
    CHECK_EQ(mm.frames[110].maps, 0);
    CHECK_EQ(mm_claim_named(&mm, 109, 2, 6, FRAME_RAM), -EEXIST);
    CHECK_EQ(mm.frames[110].maps, 0);           /* a refused claim takes nothing */
    /* Named, freeing keeps them (orphans); the name dropped first, they go. */
    mm_map_put(&mm, 10, 100);
    CHECK_EQ(mm.frames[50].maps, 0);
    mm_free_run(&mm, 10, 100);
    CHECK_EQ(mm_free_frames(&mm), before);
    mm_fini(&mm);
}

static void rejects_empty(void)
{
    struct machine_mem mm;
    CHECK(mm_init(&mm, 100) < 0);
}

int main(void)
{
    RUN_TEST(alloc_whole_then_free);
    RUN_TEST(runs_and_fragmentation);
    RUN_TEST(freed_frames_read_zero);
    RUN_TEST(live_update_takeover);
    RUN_TEST(named_frames_outlive_free);
    RUN_TEST(map_names_are_bounded);
    RUN_TEST(claims_across_bitmap_words);
    RUN_TEST(claim_named);
    RUN_TEST(rejects_empty);
    HARNESS_EXIT();
}
