/*
 * A tiny test harness. Every test prints exactly one result line:
 *   PASS: suite/name
 *   FAIL: suite/name: file:line: what
 *   SKIP: suite/name: reason
 * scripts/run-tests.sh counts those lines across all suites.
 */
#ifndef XKVM_TESTS_HARNESS_H
#define XKVM_TESTS_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct harness_state {
    const char *suite;
    int failed;          /* tests that failed */
    int cur_failed;      /* current test has failed */
    int cur_skipped;
    char cur_msg[512];
};

extern struct harness_state harness;

/* Define exactly once per test program, before main(). */
#define HARNESS_MAIN_STATE(suite_name) \
    struct harness_state harness = { .suite = suite_name }

static inline void harness_fail(const char *file, int line, const char *fmt, ...)
{
    if (harness.cur_failed)
        return;                   /* keep the first failure's message */
    harness.cur_failed = 1;
    int n = snprintf(harness.cur_msg, sizeof(harness.cur_msg), "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(harness.cur_msg))
        vsnprintf(harness.cur_msg + n, sizeof(harness.cur_msg) - (size_t)n, fmt, ap);
    va_end(ap);
}

static inline void harness_skip(const char *fmt, ...)
{
    harness.cur_skipped = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(harness.cur_msg, sizeof(harness.cur_msg), fmt, ap);
    va_end(ap);
}

static inline void harness_run(const char *name, void (*fn)(void))
{
    harness.cur_failed = 0;
    harness.cur_skipped = 0;
    harness.cur_msg[0] = '\0';
    fn();
    if (harness.cur_failed) {
        harness.failed++;
        printf("FAIL: %s/%s: %s\n", harness.suite, name, harness.cur_msg);
    } else if (harness.cur_skipped) {
        printf("SKIP: %s/%s: %s\n", harness.suite, name, harness.cur_msg);
    } else {
        printf("PASS: %s/%s\n", harness.suite, name);
    }
    fflush(stdout);
}

#define RUN_TEST(fn) harness_run(#fn, fn)
#define HARNESS_EXIT() return harness.failed ? 1 : 0

#define CHECK(cond) do { if (!(cond)) harness_fail(__FILE__, __LINE__, "%s", #cond); } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) harness_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
    if (_a != _b) harness_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, _a, #b, _b); } while (0)
#define CHECK_STR_CONTAINS(hay, needle) do { const char *_h = (hay), *_n = (needle); \
    if (!_h || !strstr(_h, _n)) harness_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n); } while (0)
/* Stop the current test after a failed check (for checks later code depends on). */
#define REQUIRE(cond) do { if (!(cond)) { harness_fail(__FILE__, __LINE__, "%s", #cond); return; } } while (0)

#endif
