/*
 * IDT, TSS and the C side of every trap. Exceptions print the vector, RIP and
 * error code, fail the running test and crash the domain; #UD from CPL3 at
 * user_exit is run_user's way back; vectors >= 32 go to a registered handler
 * (event-channel upcalls, the LAPIC watchdog and spurious vector: see pv.h), any
 * other interrupt is a failure. Secondary vCPUs get their own GDT copy and TSS
 * (trap_init_cpu) and share the IDT; GS base points at each CPU's struct cpu.
 */
#include "guest.h"
#include "pv.h"
#include "segments.h"
#include "xtest.h"

struct idt_entry {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

struct tss64 {
    uint32_t rsvd0;
    uint64_t rsp[3];
    uint64_t rsvd1;
    uint64_t ist[7];
    uint64_t rsvd2;
    uint16_t rsvd3, iomap_base;
} __attribute__((packed));

extern uint64_t gdt[];
extern char trap_stubs[], trap_stack_top[], df_stack_top[];
noreturn void user_resume(uint64_t result);
extern char user_exit[];

static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));

/* Secondary CPUs: GDT copies (same layout as head.S's gdt), TSSs, #DF/NMI stacks. */
#define GDT_ENTRIES (GDT_TSS / 8 + 2)
static uint64_t cpu_gdt[MAX_CPUS][GDT_ENTRIES] __attribute__((aligned(16)));
static struct tss64 cpu_tss[MAX_CPUS] __attribute__((aligned(16)));
static uint8_t cpu_df_stack[MAX_CPUS][4096] __attribute__((aligned(16)));
static uint8_t cpu_trap_stack[MAX_CPUS][8192] __attribute__((aligned(16)));
static irq_handler_t irq_handlers[256];

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
    "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void trap_init(void)
{
    uint64_t base = (uint64_t)(uintptr_t)&tss;

    tss.rsp[0] = (uint64_t)(uintptr_t)trap_stack_top;
    tss.ist[0] = (uint64_t)(uintptr_t)df_stack_top;        /* IST1: #DF, NMI, #MC */
    tss.iomap_base = sizeof(tss);                           /* no I/O bitmap */

    gdt[GDT_TSS / 8] = (sizeof(tss) - 1) | ((base & 0xffffff) << 16) |
                       (0x89ULL << 40) | (((base >> 24) & 0xff) << 56);
    gdt[GDT_TSS / 8 + 1] = base >> 32;
    cpus[0].self = &cpus[0];
    cpus[0].id = 0;
    cpus[0].online = 1;
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)&cpus[0]);

    for (unsigned v = 0; v < 256; v++) {
        uint64_t off = (uint64_t)(uintptr_t)(trap_stubs + v * 16);
        struct idt_entry *e = &idt[v];

        e->off_lo = off & 0xffff;
        e->sel = GDT_KERNEL_CS;
        e->ist = (v == 2 || v == 8 || v == 18) ? 1 : 0;
        /* Interrupt gates; #BP (int3) is reachable from CPL3. */
        e->type = v == 3 ? 0xee : 0x8e;
        e->off_mid = (off >> 16) & 0xffff;
        e->off_hi = off >> 32;
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

    asm volatile("lidt %0" :: "m"(idtr));
    asm volatile("ltr %w0" :: "r"(GDT_TSS));
}

/* On a secondary CPU, first thing: its GDT (with its own TSS), segments, IDT, GS. */
void trap_init_cpu(unsigned id)
{
    uint64_t *g = cpu_gdt[id];
    struct tss64 *t = &cpu_tss[id];
    uint64_t base = (uint64_t)(uintptr_t)t;

    for (unsigned i = 0; i < GDT_ENTRIES; i++)
        g[i] = gdt[i];
    t->rsp[0] = (uint64_t)(uintptr_t)(cpu_trap_stack[id] + sizeof(cpu_trap_stack[id]));
    t->ist[0] = (uint64_t)(uintptr_t)(cpu_df_stack[id] + sizeof(cpu_df_stack[id]));
    t->iomap_base = sizeof(*t);
    g[GDT_TSS / 8] = (sizeof(*t) - 1) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
                     (((base >> 24) & 0xff) << 56);
    g[GDT_TSS / 8 + 1] = base >> 32;

    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) gdtr = { sizeof(cpu_gdt[id]) - 1, (uint64_t)(uintptr_t)g },
      idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

    asm volatile("lgdt %0\n\t"
                 "pushq %1\n\t"
                 "leaq 1f(%%rip), %%rax\n\t"
                 "pushq %%rax\n\t"
                 "lretq\n"
                 "1:\n\t"
                 "mov %2, %%eax\n\t"
                 "mov %%eax, %%ds\n\t"
                 "mov %%eax, %%es\n\t"
                 "mov %%eax, %%ss"
                 :: "m"(gdtr), "i"(GDT_KERNEL_CS), "i"(GDT_KERNEL_DS) : "rax", "memory");
    asm volatile("lidt %0" :: "m"(idtr));
    asm volatile("ltr %w0" :: "r"(GDT_TSS));
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)&cpus[id]);
}

void set_irq_handler(unsigned vector, irq_handler_t h)
{
    if (vector >= 32 && vector < 256)
        irq_handlers[vector] = h;
}

void trap_handler(struct trap_frame *f);
void trap_handler(struct trap_frame *f)
{
    bool from_user = (f->cs & 3) == 3;

    if (f->vector == 6 && from_user && f->rip == (uint64_t)(uintptr_t)user_exit)
        user_resume(f->rax);

    if (f->vector >= 32 && irq_handlers[f->vector]) {
        irq_handlers[f->vector](f);
        return;
    }

    const char *name = f->vector < 32 && exc_names[f->vector] ? exc_names[f->vector]
                                                              : "interrupt";
    printf("xkvm-guest: vCPU %u: %s %s (vector %lu) at RIP=%#lx err=%#lx cr2=%#lx "
           "cs=%#lx rflags=%#lx rsp=%#lx\n",
           this_cpu()->id, from_user ? "user" : "kernel", name, f->vector, f->rip, f->error,
           read_cr2(), f->cs, f->rflags, f->rsp);
    printf("xkvm-guest: rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx rsi=%#lx rdi=%#lx\n",
           f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi);
    xtest_crash("%s %s (vector %lu) at RIP=%#lx err=%#lx", from_user ? "user" : "kernel",
                f->vector < 32 ? name : "unexpected interrupt", f->vector, f->rip,
                f->error);
}
