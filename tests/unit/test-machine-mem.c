/* Machine memory: allocator, frame table, freeing returns frames zeroed. */
#include "harness.h"
#include "hv/machine_mem.h"

HARNESS_MAIN_STATE("machine-mem");

#define MB (1024ULL * 1024)

static void alloc_whole_then_free(void)
{
    struct machine_mem mm;
    REQUIRE(mm_init(&mm, 4 * MB) == 0);
    CHECK_EQ(mm.nr_frames, 1024);
    CHECK_EQ(mm_free_frames(&mm), 1024);
    uint64_t mfn = 99;
    CHECK_EQ(mm_alloc_run(&mm, 4096, 7, FRAME_RAM, &mfn), 1024);
    CHECK_EQ(mfn, 0);
    CHECK_EQ(mm_free_frames(&mm), 0);
    CHECK_EQ(mm_alloc_run(&mm, 1, 7, FRAME_RAM, &mfn), 0);
    CHECK_EQ(mm_count_owner(&mm, 7), 1024);
    CHECK_EQ(mm_free_owner(&mm, 7), 1024);
    CHECK_EQ(mm_free_frames(&mm), 1024);
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
    RUN_TEST(rejects_empty);
    HARNESS_EXIT();
}
