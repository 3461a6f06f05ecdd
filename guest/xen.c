/*
 * Finding Xen the way an HVM/PVH guest does: scan the hypervisor CPUID range for
 * "XenVMMXenVMM", read the hypercall-page MSR index from leaf base+2 and write the
 * page's guest-physical address to it; Xen (or xkvmd) fills it with 32-byte stubs.
 *
 * With `hypercall=vmcall` on the command line the guest calls Xen as current Linux
 * does (xen_hypercall_intel/_amd): VMCALL on Intel, VMMCALL on AMD and Hygon, chosen
 * by the CPUID vendor, with the Xen register convention, and never writes the MSR.
 * It writes those instructions into its own page, laid out as Xen's stubs, so every
 * caller's `call hypercall_page + nr*32` issues them directly.
 */
#include "guest.h"
#include "hypercall.h"

struct xen_info xen;

/* AMD and Hygon have VMMCALL, everyone else VMCALL (Linux: xen_hypercall_setfunc). */
static bool cpu_is_amd(void)
{
    uint32_t a, b, c, d;

    cpuid(0, &a, &b, &c, &d);
    return (b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163) ||  /* AuthenticAMD */
           (b == 0x6f677948 && d == 0x6e65476e && c == 0x656e6975);    /* HygonGenuine */
}

static void write_direct_stubs(void)
{
    xen.hcall_insn = cpu_is_amd() ? "vmmcall" : "vmcall";
    for (uint32_t nr = 0; nr < 4096 / 32; nr++) {
        uint8_t *stub = hypercall_page + nr * 32;

        memset(stub, 0xcc, 32);
        stub[0] = 0xb8;                         /* mov $nr, %eax */
        memcpy(&stub[1], &nr, 4);
        stub[5] = 0x0f;                         /* vmcall / vmmcall */
        stub[6] = 0x01;
        stub[7] = strcmp(xen.hcall_insn, "vmmcall") ? 0xc1 : 0xd9;
        stub[8] = 0xc3;                         /* ret */
    }
}

/* What the page's first stub calls with: the hypervisor chose it. */
static const char *page_insn(void)
{
    if (hypercall_page[5] == 0xe7)
        return "out";
    if (hypercall_page[5] == 0x0f && hypercall_page[6] == 0x01)
        return hypercall_page[7] == 0xd9 ? "vmmcall" : hypercall_page[7] == 0xc1 ? "vmcall" : "?";
    return "?";
}

void xen_init(void)
{
    char mode[16];

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
    if (cmdline_get("hypercall", mode, sizeof(mode)) && !strcmp(mode, "vmcall")) {
        xen.direct = true;
        write_direct_stubs();
        barrier();
        xen.present = true;
        return;
    }

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
    xen.hcall_insn = page_insn();
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
