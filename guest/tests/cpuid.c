/* cpuid: Xen's CPUID leaves and XENVER_* agree. */
#include "../xtest.h"

static void test_cpuid(void)
{
    uint32_t a, b, c, d;
    char sig[13];

    XTEST_NEED_XEN();
    cpuid(xen.base, &a, &b, &c, &d);
    memcpy(sig + 0, &b, 4);
    memcpy(sig + 4, &c, 4);
    memcpy(sig + 8, &d, 4);
    sig[12] = '\0';
    printf("xkvm-guest: cpuid %#x: max leaf %#x, signature \"%s\"\n", xen.base, a, sig);
    if (strcmp(sig, "XenVMMXenVMM"))
        xtest_fail("signature \"%s\"", sig);
    if (a < xen.base + 2)
        xtest_fail("max leaf %#x < base+2", a);

    cpuid(xen.base + 1, &a, &b, &c, &d);
    printf("xkvm-guest: cpuid %#x: version %u.%u\n", xen.base + 1, a >> 16, a & 0xffff);
    if (a == 0)
        xtest_fail("leaf base+1 returned version 0");

    uint32_t version = a;

    cpuid(xen.base + 2, &a, &b, &c, &d);
    printf("xkvm-guest: cpuid %#x: %u hypercall page(s), MSR %#x, flags %#x\n",
           xen.base + 2, a, b, c);
    if (a < 1)
        xtest_fail("leaf base+2 reports %u hypercall pages", a);
    if (b == 0)
        xtest_fail("leaf base+2 reports MSR index 0");

    long v = HYPERVISOR_xen_version(XENVER_version, NULL);
    printf("xkvm-guest: XENVER_version = %#lx (%lu.%lu)\n", v, (unsigned long)v >> 16,
           (unsigned long)v & 0xffff);
    if (v < 0)
        xtest_fail("XENVER_version returned %ld", v);
    if ((uint32_t)v != version)
        xtest_fail("XENVER_version %#lx != CPUID version %#x", v, version);

    xen_extraversion_t extra;
    memset(extra, 0x55, sizeof(extra));
    long rc = HYPERVISOR_xen_version(XENVER_extraversion, extra);
    if (rc < 0)
        xtest_fail("XENVER_extraversion returned %ld", rc);
    if (strnlen(extra, sizeof(extra)) == sizeof(extra))
        xtest_fail("XENVER_extraversion not NUL-terminated");
    printf("xkvm-guest: XENVER_extraversion = \"%s\" (Xen %lu.%lu%s)\n", extra,
           (unsigned long)v >> 16, (unsigned long)v & 0xffff, extra);
}
XTEST("cpuid", test_cpuid);
