/*
 * Test registry and verdicts. A test is a function registered with XTEST(name, fn);
 * it passes by returning. It fails with xtest_fail() (result line, then poweroff) or
 * XASSERT()/xtest_crash() (result line, then SHUTDOWN_crash). Exceptions also crash.
 * The result line, exactly one per run:
 *     xtest: NAME: PASS
 *     xtest: NAME: FAIL: reason
 */
#ifndef XKVM_GUEST_XTEST_H
#define XKVM_GUEST_XTEST_H

#include "guest.h"
#include "hypercall.h"

struct xtest {
    const char *name;
    void (*fn)(void);
};

#define XTEST(name_, fn_)                                                       \
    static const struct xtest xtest_##fn_                                        \
        __attribute__((used, section(".xtests"), aligned(8))) = { name_, fn_ }

extern const struct xtest __xtests_start[], __xtests_end[];
extern const char *xtest_name;          /* the running test */

noreturn void xtest_fail(const char *fmt, ...) printf_like(1, 2);
noreturn void xtest_crash(const char *fmt, ...) printf_like(1, 2);
/* Print the result line (no shutdown). */
void xtest_result(bool pass, const char *fmt, va_list ap);

#define XASSERT(c)                                                              \
    do {                                                                        \
        if (!(c))                                                               \
            xtest_crash("assertion failed: %s:%d: %s", __FILE__, __LINE__, #c); \
    } while (0)

/* Fail unless Xen's CPUID leaves were found. */
#define XTEST_NEED_XEN()                                                        \
    do {                                                                        \
        if (!xen.present)                                                       \
            xtest_fail("no Xen CPUID leaves");                                  \
    } while (0)

#endif
