/*
 * hvm_start_info's module list (pvh_write_modules, src/hv/pvh.c): xl's `ramdisk` as
 * module 0, the list written and start_info pointed at it; modules outside guest
 * memory, above 4 GiB, or overlapping the list refused with start_info untouched.
 */
#include <errno.h>
#include <stdint.h>

#include "harness.h"
#include "hv/pvh.h"

HARNESS_MAIN_STATE("pvh-modules");

#define MEM_SIZE 0x40000u
static uint8_t mem[MEM_SIZE];

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    if (gpa > MEM_SIZE || len > MEM_SIZE - gpa)
        return NULL;
    return mem + gpa;
}

static const struct gphys g = { .ptr = flat_ptr };

/* A start_info at 0x1000, as pvh_write_start_info leaves it. */
static uint64_t fresh_start_info(void)
{
    uint64_t si;
    char err[256];
    memset(mem, 0, sizeof(mem));
    if (pvh_write_start_info(&g, 0x1000, 0x2000, "console=hvc0", NULL, 0, &si, err,
                             sizeof(err)))
        abort();
    return si;
}

static struct hvm_start_info start_info(uint64_t si)
{
    struct hvm_start_info info;
    memcpy(&info, mem + si, sizeof(info));
    return info;
}

static void one_module(void)
{
    uint64_t si = fresh_start_info();
    struct hvm_modlist_entry m = { .paddr = 0x10000, .size = 12345, .reserved = 77 };
    char err[256] = "";
    REQUIRE(pvh_write_modules(&g, si, 0x3001, &m, 1, err, sizeof(err)) == 0);
    struct hvm_start_info info = start_info(si);
    CHECK_EQ(info.nr_modules, 1);
    CHECK_EQ(info.modlist_paddr, 0x3008);           /* 8-byte aligned up */
    CHECK_EQ(info.cmdline_paddr != 0, 1);            /* the rest is left alone */
    struct hvm_modlist_entry got;
    memcpy(&got, mem + 0x3008, sizeof(got));
    CHECK_EQ(got.paddr, 0x10000);
    CHECK_EQ(got.size, 12345);
    CHECK_EQ(got.cmdline_paddr, 0);
    CHECK_EQ(got.reserved, 0);
}

static void two_modules(void)
{
    uint64_t si = fresh_start_info();
    struct hvm_modlist_entry m[2] = { { .paddr = 0x10000, .size = 0x1000 },
                                      { .paddr = 0x20000, .size = 0x8000 } };
    char err[256] = "";
    REQUIRE(pvh_write_modules(&g, si, 0x3000, m, 2, err, sizeof(err)) == 0);
    CHECK_EQ(start_info(si).nr_modules, 2);
    struct hvm_modlist_entry got;
    memcpy(&got, mem + 0x3000 + sizeof(got), sizeof(got));
    CHECK_EQ(got.paddr, 0x20000);
}

static void refused(void)
{
    uint64_t si = fresh_start_info();
    char err[256] = "";
    struct hvm_modlist_entry m = { .paddr = 0x3f000, .size = 0x2000 };   /* past memory */
    CHECK_EQ(pvh_write_modules(&g, si, 0x3000, &m, 1, err, sizeof(err)), -EFAULT);
    CHECK_STR_CONTAINS(err, "not in guest memory");
    m = (struct hvm_modlist_entry){ .paddr = 0xfffff000, .size = 0x2000 };  /* past 4 GiB */
    CHECK_EQ(pvh_write_modules(&g, si, 0x3000, &m, 1, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "below 4 GiB");
    m = (struct hvm_modlist_entry){ .paddr = 0x10000, .size = 0 };
    CHECK_EQ(pvh_write_modules(&g, si, 0x3000, &m, 1, err, sizeof(err)), -EINVAL);
    m = (struct hvm_modlist_entry){ .paddr = 0x3000, .size = 0x1000 };   /* on the list */
    CHECK_EQ(pvh_write_modules(&g, si, 0x3010, &m, 1, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "overlaps");
    m = (struct hvm_modlist_entry){ .paddr = 0x10000, .size = 0x1000 };
    CHECK_EQ(pvh_write_modules(&g, si, 0x3ffff, &m, 1, err, sizeof(err)), -EFAULT);
    CHECK_EQ(pvh_write_modules(&g, si, 0x100000000ull, &m, 1, err, sizeof(err)), -ENOSPC);
    CHECK_EQ(pvh_write_modules(&g, si + 8, 0x3000, &m, 1, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "no hvm_start_info");
    CHECK_EQ(pvh_write_modules(&g, si, 0x3000, &m, 0, err, sizeof(err)), -EINVAL);
    CHECK_EQ(pvh_write_modules(&g, si, 0x3000, NULL, 1, err, sizeof(err)), -EINVAL);
    struct hvm_start_info info = start_info(si);
    CHECK_EQ(info.nr_modules, 0);
    CHECK_EQ(info.modlist_paddr, 0);
}

int main(void)
{
    RUN_TEST(one_module);
    RUN_TEST(two_modules);
    RUN_TEST(refused);
    HARNESS_EXIT();
}
