/* Small tests the hypervisor's integration tests drive: hello, list, crash, reboot,
 * triple-fault, spin, busy-user. */
#include "../xtest.h"

static void test_hello(void)
{
    printf("xkvm-guest: hello from the xkvm test guest (%s)\n",
           xen.present ? "Xen ABI" : "no Xen, debugcon");
}
XTEST("hello", test_hello);

static void test_list(void)
{
    for (const struct xtest *t = __xtests_start; t < __xtests_end; t++)
        printf("xkvm-guest: test %s\n", t->name);
}
XTEST("list", test_list);

static void test_crash(void)
{
    printf("xkvm-guest: crash: calling SCHEDOP_shutdown(SHUTDOWN_crash)\n");
    shutdown(SHUTDOWN_crash);
}
XTEST("crash", test_crash);

static void test_reboot(void)
{
    printf("xkvm-guest: reboot: calling SCHEDOP_shutdown(SHUTDOWN_reboot)\n");
    shutdown(SHUTDOWN_reboot);
}
XTEST("reboot", test_reboot);

/* A triple fault: an empty IDT, then #UD, which cannot be delivered, nor the #DF. */
static void test_triple_fault(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr = { 0, 0 };

    printf("xkvm-guest: triple-fault: empty IDT, then ud2\n");
    asm volatile("lidt %0\n\tud2" : : "m"(idtr) : "memory");
    xtest_fail("ud2 with an empty IDT returned");
}
XTEST("triple-fault", test_triple_fault);

/*
 * spin: kernel-mode busy loop printing "xtest: spin: tick K" every `tick=` loop
 * iterations (default 50000: about 0.5 s under kvm-pvm's emulator, measured).
 * Runs forever unless `ticks=N` is given, then passes after N ticks.
 */
static void test_spin(void)
{
    uint64_t every = cmdline_get_u64("tick", 50000);
    uint64_t ticks = cmdline_get_u64("ticks", 0);

    for (uint64_t k = 1;; k++) {
        for (volatile uint64_t i = 0; i < every; i++)
            ;
        printf("xtest: spin: tick %lu\n", k);
        if (ticks && k >= ticks)
            return;
    }
}
XTEST("spin", test_spin);

/* CPL3 busy loop: `n` iterations, returns a checksum so it cannot be elided. */
static uint64_t user_spin(uint64_t n)
{
    uint64_t x = 0;

    for (uint64_t i = 0; i < n; i++) {
        x += i ^ (x >> 3);
        asm volatile("" : "+r"(x));
    }
    return x;
}

/*
 * busy-user: like spin but the loop runs at CPL3 (natively on kvm-pvm): one
 * run_user() of `tick=` iterations (default 100,000,000: about 0.3 s on kvm-pvm)
 * per "xtest: busy-user: tick K" line. Forever unless `ticks=N`.
 */
static void test_busy_user(void)
{
    uint64_t every = cmdline_get_u64("tick", 100000000);
    uint64_t ticks = cmdline_get_u64("ticks", 0);

    for (uint64_t k = 1;; k++) {
        uint64_t x = run_user(user_spin, every);

        printf("xtest: busy-user: tick %lu (%#lx)\n", k, x);
        if (ticks && k >= ticks)
            return;
    }
}
XTEST("busy-user", test_busy_user);

/* fault: a deliberate kernel #PF, to exercise exception delivery and the
 * exception report (always ends "FAIL: kernel #PF ..." and SHUTDOWN_crash). */
static void test_fault(void)
{
    printf("xkvm-guest: fault: reading unmapped address %#llx\n", 1ULL << 45);
    (void)*(volatile uint64_t *)(1ULL << 45);
    xtest_fail("no page fault");
}
XTEST("fault", test_fault);

/* user-fault: the same at CPL3 inside run_user. */
static uint64_t user_touch_unmapped(uint64_t va)
{
    return *(volatile uint64_t *)va;
}

static void test_user_fault(void)
{
    run_user(user_touch_unmapped, 1ULL << 45);
    xtest_fail("no page fault");
}
XTEST("user-fault", test_user_fault);
