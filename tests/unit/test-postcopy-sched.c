/*
 * Unit tests for src/migrate/postcopy_sched.c: the source's order of post-copy pages
 * (requested first, then the rest after the last requested one), and resending after
 * a reconnect.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "migrate/postcopy_sched.h"

HARNESS_MAIN_STATE("postcopy-sched");

#define NR 200u

static void set(uint64_t *bm, uint64_t p) { bm[p / 64] |= 1ull << (p % 64); }

/* Every missing pfn is sent exactly once; nothing else is. */
static void test_sends_each_once(void)
{
    uint64_t bm[4] = { 0 };
    for (uint64_t p = 0; p < NR; p += 7)
        set(bm, p);
    set(bm, NR - 1);
    struct postcopy_sched s;
    REQUIRE(postcopy_sched_init(&s, bm, NR) == 0);
    uint64_t seen[4] = { 0 }, pfn, n = 0;
    bool urgent;
    while (postcopy_sched_next(&s, &pfn, &urgent)) {
        CHECK(!(seen[pfn / 64] >> (pfn % 64) & 1));
        set(seen, pfn);
        CHECK(!urgent);
        n++;
    }
    CHECK(!memcmp(seen, bm, sizeof(bm)));
    CHECK_EQ(n, NR / 7 + 1 + 1);
    CHECK_EQ(postcopy_sched_remaining(&s), 0);
    postcopy_sched_fini(&s);
}

/* A request jumps the queue; the background then continues after it. */
static void test_request_first_then_neighbours(void)
{
    uint64_t bm[4] = { 0 };
    for (uint64_t p = 0; p < NR; p++)
        set(bm, p);
    struct postcopy_sched s;
    REQUIRE(postcopy_sched_init(&s, bm, NR) == 0);
    uint64_t pfn;
    bool urgent;
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 0 && !urgent);
    postcopy_sched_request(&s, 150, 2);
    postcopy_sched_request(&s, 0, 1);          /* already sent: ignored */
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 150 && urgent);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 151 && urgent);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 152 && !urgent);
    CHECK_EQ(s.requests_ignored, 1);
    /* Asked for twice: sent once. */
    postcopy_sched_request(&s, 170, 1);
    postcopy_sched_request(&s, 170, 1);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 170 && urgent);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 171 && !urgent);
    /* The background wraps around to what is left below. */
    uint64_t n = 0, last = 0;
    while (postcopy_sched_next(&s, &pfn, &urgent)) {
        n++;
        last = pfn;
    }
    CHECK_EQ(n, NR - 6);
    CHECK_EQ(last, 169);                        /* 171..199, 1..149, 153..169 */
    postcopy_sched_fini(&s);
}

/* After a reconnect, pages the destination still lacks go again. */
static void test_resend_after_reconnect(void)
{
    uint64_t bm[4] = { 0 };
    set(bm, 5);
    set(bm, 6);
    struct postcopy_sched s;
    REQUIRE(postcopy_sched_init(&s, bm, NR) == 0);
    uint64_t pfn;
    bool urgent;
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 5);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 6);
    CHECK(!postcopy_sched_next(&s, &pfn, &urgent));
    postcopy_sched_resend(&s, 6, 1);            /* lost with the connection */
    postcopy_sched_resend(&s, NR, 5);           /* beyond the domain: nothing */
    CHECK_EQ(postcopy_sched_remaining(&s), 1);
    CHECK(postcopy_sched_next(&s, &pfn, &urgent) && pfn == 6);
    CHECK(!postcopy_sched_next(&s, &pfn, &urgent));
    postcopy_sched_fini(&s);
}

int main(void)
{
    RUN_TEST(test_sends_each_once);
    RUN_TEST(test_request_first_then_neighbours);
    RUN_TEST(test_resend_after_reconnect);
    HARNESS_EXIT();
}
