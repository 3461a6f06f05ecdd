/*
 * hypercall-bad: hostile arguments must come back as errors, and the guest must
 * keep running. Every call below must return < 0.
 */
#include "../pv.h"
#include "../xtest.h"

#include <xen/errno.h>

/* A guard page: GUARD_VA is mapped (to a page of our .bss), GUARD_VA + 4 KiB is not. */
#define GUARD_VA     (1ULL << 40)
#define UNMAPPED_VA  (GUARD_VA + PAGE_SIZE)

static uint8_t guard_page[4096] __attribute__((aligned(4096)));
static unsigned failures;

static void expect_error(const char *what, long rc)
{
    printf("xkvm-guest: %-44s -> %ld%s\n", what, rc, rc < 0 ? "" : "  (NOT AN ERROR)");
    if (rc >= 0)
        failures++;
}

/* A hypercall with all 64 bits of RAX given: the page's stubs only set EAX. */
static long hypercall_rax(uint64_t rax, uint64_t a1, uint64_t a2)
{
    if (!strcmp(xen.hcall_insn, "vmcall"))
        asm volatile("vmcall" : "+a"(rax), "+D"(a1), "+S"(a2) :: "memory", "rcx", "rdx",
                     "r8", "r9", "r10", "r11");
    else if (!strcmp(xen.hcall_insn, "vmmcall"))
        asm volatile("vmmcall" : "+a"(rax), "+D"(a1), "+S"(a2) :: "memory", "rcx", "rdx",
                     "r8", "r9", "r10", "r11");
    else
        asm volatile("out %%eax, $0xea" : "+a"(rax), "+D"(a1), "+S"(a2) :: "memory", "rcx",
                     "rdx", "r8", "r9", "r10", "r11");
    return (long)rax;
}

static void test_hypercall_bad(void)
{
    XTEST_NEED_XEN();
    if (map_page(GUARD_VA, (uint64_t)(uintptr_t)guard_page, false))
        xtest_fail("cannot map the guard page");

    /* The last 8 bytes of the mapped page, then nothing. */
    char *edge = (char *)(uintptr_t)(GUARD_VA + PAGE_SIZE - 8);
    memcpy(edge, "hostile\n", 8);

    expect_error("console_io(write, NULL)",
                 HYPERVISOR_console_io(CONSOLEIO_write, 16, NULL));
    expect_error("console_io(write, non-canonical)",
                 HYPERVISOR_console_io(CONSOLEIO_write, 16,
                                       (void *)0x8000000000001000ULL));
    expect_error("console_io(write, unmapped)",
                 HYPERVISOR_console_io(CONSOLEIO_write, 16, (void *)UNMAPPED_VA));
    expect_error("console_io(write, huge length across a hole)",
                 HYPERVISOR_console_io(CONSOLEIO_write, 0x7fffffff, edge));
    expect_error("console_io(unknown cmd)",
                 HYPERVISOR_console_io(0x7fff, 4, "bad\n"));
    expect_error("sched_op(unknown cmd)", HYPERVISOR_sched_op(0xdead, NULL));
    expect_error("sched_op(shutdown, unmapped)",
                 HYPERVISOR_sched_op(SCHEDOP_shutdown, (void *)UNMAPPED_VA));
    expect_error("hypercall 60 (unknown)", _hypercall5(60, 1, 2, 3, 4, 5));
    expect_error("xen_version(extraversion, NULL)",
                 HYPERVISOR_xen_version(XENVER_extraversion, NULL));
    expect_error("xen_version(extraversion, unmapped)",
                 HYPERVISOR_xen_version(XENVER_extraversion, (void *)UNMAPPED_VA));
    expect_error("xen_version(unknown cmd)", HYPERVISOR_xen_version(0x7fff, NULL));
    /* Xen reads all of RAX in 64-bit mode: 2^32 + 17 is no xen_version (hcfuzz found
     * one that took the low half). */
    expect_error("hypercall 2^32 + xen_version",
                 hypercall_rax((1ULL << 32) | __HYPERVISOR_xen_version, XENVER_version, 0));

    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = 0xffff };
    expect_error("hvm_op(get_param, index 0xffff)",
                 HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    p.index = HVM_NR_PARAMS;
    expect_error("hvm_op(get_param, HVM_NR_PARAMS)",
                 HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    expect_error("hvm_op(get_param, unmapped)",
                 HYPERVISOR_hvm_op(HVMOP_get_param, (void *)UNMAPPED_VA));
    expect_error("memory_op(unknown cmd)", HYPERVISOR_memory_op(0x3fff, NULL));

    /* Still alive: a good hypercall still works. */
    long v = HYPERVISOR_xen_version(XENVER_version, NULL);
    printf("xkvm-guest: still alive, XENVER_version = %#lx\n", v);
    if (v <= 0)
        xtest_fail("XENVER_version after the hostile calls returned %ld", v);
    if (failures)
        xtest_fail("%u hostile hypercall(s) did not return an error", failures);
}
XTEST("hypercall-bad", test_hypercall_bad);

/*
 * console-flood: write `mb=` MiB (default 8) to the hypervisor console as fast as
 * console_io takes it, through the debug port too, then wait 2 s for the host's rate
 * limit to let the result line through. The host must keep its log bounded.
 */
static void test_console_flood(void)
{
    XTEST_NEED_XEN();
    pv_init();                                  /* for the clock */
    static char line[4096];
    memset(line, 'x', sizeof(line));
    line[sizeof(line) - 1] = '\n';
    uint64_t lines = cmdline_get_u64("mb", 8) * 256;
    for (uint64_t i = 0; i < lines; i++) {
        long rc = HYPERVISOR_console_io(CONSOLEIO_write, sizeof(line), line);
        if (rc < 0)
            xtest_fail("console_io write %lu returned %ld", (unsigned long)i, rc);
    }
    for (unsigned i = 0; i < 64 * 1024; i++)
        outb(0xe9, 'y');
    uint64_t until = xen_time_ns() + 2000000000ULL;
    while (xen_time_ns() < until)
        cpu_relax();
    printf("\nxkvm-guest: console-flood: wrote %lu KiB\n", (unsigned long)(lines * 4));
}
XTEST("console-flood", test_console_flood);

/*
 * console-lines: n= numbered lines (default 2000), "xkvm-guest: line K" for K = 1..n,
 * each in one console_io write, as fast as the host takes them; then spin= seconds
 * (default 0) of CPU work for `xkvm top`. tests/kvm/log-rotation.sh checks that every
 * line is in the rotated console logs exactly once.
 */
static void test_console_lines(void)
{
    XTEST_NEED_XEN();
    pv_init();                                  /* for the clock */
    uint64_t n = cmdline_get_u64("n", 2000);
    char line[48];
    for (uint64_t k = 1; k <= n; k++) {
        /* "xkvm-guest: line " then K in decimal, then a newline. */
        static const char head[] = "xkvm-guest: line ";
        size_t len = sizeof(head) - 1;
        for (size_t i = 0; i < len; i++)
            line[i] = head[i];
        char digits[24];
        size_t nd = 0;
        for (uint64_t v = k; v; v /= 10)
            digits[nd++] = (char)('0' + v % 10);
        while (nd)
            line[len++] = digits[--nd];
        line[len++] = '\n';
        long rc = HYPERVISOR_console_io(CONSOLEIO_write, (int)len, line);
        if (rc < 0)
            xtest_fail("console_io write %lu returned %ld", (unsigned long)k, rc);
    }
    uint64_t until = xen_time_ns() + cmdline_get_u64("spin", 0) * 1000000000ULL;
    while (xen_time_ns() < until)
        cpu_relax();
}
XTEST("console-lines", test_console_lines);
