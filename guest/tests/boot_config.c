/*
 * What the domain builder hands the guest from its config (docs/config.md):
 *   modules:    hvm_start_info's module list (xl's `ramdisk`): each module's address,
 *               size and FNV-1a hash on one line, for the host to compare with the
 *               file; passes if there are `modules=` of them (default 1), each
 *               page-aligned, below 4 GiB and clear of the guest's image.
 *   vcpu-count: the vCPUs the hypervisor has (VCPUOP_is_up answers for each, up or
 *               not: maxvcpus of them); passes if `expect=` (default 1).
 */
#include "../pv.h"
#include "../xtest.h"

static uint32_t fnv1a(const uint8_t *p, uint64_t n)
{
    uint32_t h = 2166136261u;

    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void test_modules(void)
{
    const struct hvm_start_info *si = boot.si;
    uint64_t want = cmdline_get_u64("modules", 1);

    printf("xtest: modules: %u module(s), list at %#lx\n", si->nr_modules,
           (unsigned long)si->modlist_paddr);
    if (si->nr_modules != want)
        xtest_fail("%u modules, expected %lu", si->nr_modules, (unsigned long)want);
    if (!want)
        return;
    if (!si->modlist_paddr || si->modlist_paddr >= IDENT_MAP_LIMIT)
        xtest_fail("module list at %#lx", (unsigned long)si->modlist_paddr);
    const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
    uint64_t img_lo = (uint64_t)(uintptr_t)__image_start;
    uint64_t img_hi = (uint64_t)(uintptr_t)__image_end;
    for (unsigned i = 0; i < si->nr_modules; i++) {
        uint64_t a = m[i].paddr, n = m[i].size;
        if (!n || a % PAGE_SIZE || a >= IDENT_MAP_LIMIT || n > IDENT_MAP_LIMIT - a)
            xtest_fail("module %u: %lu bytes at %#lx", i, (unsigned long)n,
                       (unsigned long)a);
        if (a < img_hi && img_lo < a + n)
            xtest_fail("module %u overlaps the kernel image", i);
        printf("xtest: modules: module %u at %#lx size %lu fnv1a %08x\n", i,
               (unsigned long)a, (unsigned long)n,
               fnv1a((const uint8_t *)(uintptr_t)a, n));
    }
}
XTEST("modules", test_modules);

static void test_vcpu_count(void)
{
    XTEST_NEED_XEN();
    unsigned n = smp_nr_vcpus();
    uint64_t want = cmdline_get_u64("expect", 1);

    printf("xtest: vcpu-count: %u vCPUs\n", n);
    if (n != want)
        xtest_fail("%u vCPUs, expected %lu", n, (unsigned long)want);
}
XTEST("vcpu-count", test_vcpu_count);
