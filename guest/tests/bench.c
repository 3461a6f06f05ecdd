/*
 * hcloop: the hypercall round trip as the guest sees it. `n=` calls (default 20000) of
 * xen_version(XENVER_version), the cheapest hypercall, timed with the TSC; the result
 * is printed as "xtest: hcloop: n=N tsc_per_call=T tsc_khz=K" before PASS. bench/
 * runs the same guest code on a bare KVM loop for the reference.
 */
#include "../xtest.h"

static void test_hcloop(void)
{
    XTEST_NEED_XEN();
    uint64_t n = cmdline_get_u64("n", 20000);
    uint32_t a, b, c, d;
    cpuid_count(xen.base + 3, 2, &a, &b, &c, &d);
    uint64_t tsc_khz = a;
    if (n == 0)
        xtest_fail("n must be at least 1");

    long expect = HYPERVISOR_xen_version(XENVER_version, NULL);
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        if (HYPERVISOR_xen_version(XENVER_version, NULL) != expect)
            xtest_fail("xen_version changed during the loop");
    uint64_t t1 = rdtsc();
    printf("xtest: hcloop: n=%lu tsc_per_call=%lu tsc_khz=%lu\n", n, (t1 - t0) / n, tsc_khz);
}
XTEST("hcloop", test_hcloop);
