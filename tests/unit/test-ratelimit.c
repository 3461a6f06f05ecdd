/* The per-second rate limit of guest-caused log lines (src/util/ratelimit.c). */
#include "harness.h"
#include "util/ratelimit.h"

HARNESS_MAIN_STATE("ratelimit");

#define SEC 1000000000ull

static void within_a_second(void)
{
    struct ratelimit r = { 0 };
    uint64_t rep;
    for (unsigned i = 0; i < 5; i++) {
        CHECK(ratelimit_allow(&r, 7 * SEC + i, 5, &rep));
        CHECK_EQ(rep, 0u);
    }
    for (unsigned i = 0; i < 100; i++)
        CHECK(!ratelimit_allow(&r, 7 * SEC + SEC / 2, 5, &rep));
    /* The next second: allowed again, and the 100 refused are reported once. */
    CHECK(ratelimit_allow(&r, 8 * SEC, 5, &rep));
    CHECK_EQ(rep, 100u);
    CHECK(ratelimit_allow(&r, 8 * SEC + 1, 5, &rep));
    CHECK_EQ(rep, 0u);
}

static void quiet_seconds_report_nothing(void)
{
    struct ratelimit r = { 0 };
    uint64_t rep;
    CHECK(ratelimit_allow(&r, 1 * SEC, 1, &rep));
    CHECK(ratelimit_allow(&r, 5 * SEC, 1, &rep));
    CHECK_EQ(rep, 0u);
    CHECK(!ratelimit_allow(&r, 5 * SEC, 1, &rep));
    CHECK(ratelimit_allow(&r, 9 * SEC, 1, &rep));
    CHECK_EQ(rep, 1u);
}

int main(void)
{
    RUN_TEST(within_a_second);
    RUN_TEST(quiet_seconds_report_nothing);
    HARNESS_EXIT();
}
