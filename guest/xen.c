/*
 * Finding Xen the way an HVM/PVH guest does: scan the hypervisor CPUID range for
 * "XenVMMXenVMM", read the hypercall-page MSR index from leaf base+2 and write the
 * page's guest-physical address to it; Xen (or xkvmd) fills it with 32-byte stubs.
 */
#include "guest.h"
#include "hypercall.h"

struct xen_info xen;

void xen_init(void)
{
    for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
        uint32_t a, b, c, d;

        cpuid(base, &a, &b, &c, &d);
        if (b != 0x566e6558 || c != 0x65584d4d || d != 0x4d4d566e)   /* XenV MMXe nVMM */
            continue;
        if (a < base + 2)
            continue;
        xen.base = base;
        xen.max_leaf = a;
        cpuid(base + 1, &a, &b, &c, &d);
        xen.version = a;
        cpuid(base + 2, &a, &b, &c, &d);
        xen.nr_hcall_pages = a;
        xen.hcall_msr = b;
        break;
    }
    if (!xen.base || !xen.nr_hcall_pages)
        return;

    /* The page index goes in the low 12 bits: page 0 is all we use. */
    wrmsr(xen.hcall_msr, (uint64_t)(uintptr_t)hypercall_page);
    barrier();

    /* The loader zero-filled the page; a filled page has a stub at offset 0. */
    bool filled = false;
    for (unsigned i = 0; i < 32 && !filled; i++)
        filled = hypercall_page[i] != 0;
    if (!filled) {
        static const char msg[] =
            "xkvm-guest: Xen leaves found but the hypercall page stayed empty\n";
        for (unsigned i = 0; i < sizeof(msg) - 1; i++)
            outb(0xe9, (uint8_t)msg[i]);
        return;
    }
    xen.present = true;
}

noreturn void shutdown(unsigned reason)
{
    if (xen.present) {
        struct sched_shutdown s = { .reason = reason };
        long rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);

        printf("xkvm-guest: SCHEDOP_shutdown(%u) returned %ld\n", reason, rc);
    } else {
        /* QEMU: isa-debug-exit (exit status (v << 1) | 1) if present, else the q35
         * ACPI PM1a control (SLP_EN, S5), else PIIX4's. */
        outl(0xf4, reason == SHUTDOWN_poweroff ? 0 : 1 + reason);
        outw(0x604, 0x2000);
        outw(0xb004, 0x2000);
    }
    for (;;)
        asm volatile("cli; hlt");
}
