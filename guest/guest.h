/*
 * xkvm test guest: the runtime every test may use. Freestanding: no libc.
 */
#ifndef XKVM_GUEST_H
#define XKVM_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xen/xen.h>
#include <xen/arch-x86/hvm/start_info.h>

#define PAGE_SIZE 4096UL
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define noreturn __attribute__((__noreturn__))
#define printf_like(f, a) __attribute__((format(printf, f, a)))

/* ---- x86 -------------------------------------------------------------------- */
static inline void cpuid_count(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b,
                               uint32_t *c, uint32_t *d)
{
    asm volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    cpuid_count(leaf, 0, a, b, c, d);
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    asm volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline void outb(uint16_t port, uint8_t v) { asm volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { asm volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { asm volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint64_t read_cr2(void) { uint64_t v; asm volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; asm volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { asm volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) { asm volatile("pause" ::: "memory"); }
static inline void barrier(void) { asm volatile("" ::: "memory"); }

/* ---- string.c ------------------------------------------------------------------ */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
/* Parse an unsigned number (decimal, or hex with 0x); *end past the digits. */
uint64_t strtou64(const char *s, const char **end);

/* ---- console.c ----------------------------------------------------------------- */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) printf_like(3, 4);
int printf(const char *fmt, ...) printf_like(1, 2);
/* Raw console: HYPERVISOR_console_io under Xen, port 0xE9 (debugcon) otherwise. */
void console_write(const char *s, size_t len);

/* ---- xen.c: Xen detection and the hypercall page -------------------------------- */
struct xen_info {
    bool present;
    uint32_t base;          /* CPUID leaf carrying "XenVMMXenVMM" */
    uint32_t max_leaf;      /* EAX of the base leaf */
    uint32_t version;       /* EAX of base+1: major << 16 | minor */
    uint32_t nr_hcall_pages;/* EAX of base+2 */
    uint32_t hcall_msr;     /* EBX of base+2 */
    bool direct;            /* hypercall=vmcall: VMCALL/VMMCALL, the MSR never written */
    const char *hcall_insn; /* what the stubs call with: out, vmcall, vmmcall */
};
extern struct xen_info xen;
extern uint8_t hypercall_page[4096];
/* Scan CPUID for Xen; if found, write the hypercall page MSR (or, with
 * hypercall=vmcall on the command line, the VMCALL/VMMCALL stubs). Needs boot.cmdline. */
void xen_init(void);
/* Shut down (Xen: SCHEDOP_shutdown; bare: QEMU isa-debug-exit / ACPI). */
noreturn void shutdown(unsigned reason);

/* ---- boot (main.c) ------------------------------------------------------------ */
struct mem_region {
    uint64_t start, end;    /* [start, end), page aligned */
    const char *what;
};
#define MAX_RESERVED 16
#define MAX_MEMMAP 128
struct boot_info {
    const struct hvm_start_info *si;            /* a copy: boot.si_copy */
    struct hvm_start_info si_copy;
    const char *cmdline;                        /* never NULL */
    const struct hvm_memmap_table_entry *memmap;    /* a copy: boot.memmap_copy */
    unsigned memmap_entries;
    struct hvm_memmap_table_entry memmap_copy[MAX_MEMMAP];
    /* RAM a test must not overwrite (or cannot reach): the NULL page, the image
     * (incl. stacks, page tables), start_info, memmap, cmdline, modules. */
    struct mem_region reserved[MAX_RESERVED];
    unsigned nr_reserved;
};
extern struct boot_info boot;
extern char __image_start[], __image_end[];

/* cmdline "key=value" lookup: copies the value (NUL-terminated) to out; true if the
 * key is present (a bare "key" yields ""). */
bool cmdline_get(const char *key, char *out, size_t outlen);
uint64_t cmdline_get_u64(const char *key, uint64_t def);

/* ---- traps.c ----------------------------------------------------------------- */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;          /* pushed by the CPU */
};
void trap_init(void);
typedef void (*irq_handler_t)(struct trap_frame *f);
/* Handler for a vector >= 32 (external interrupts, upcalls). NULL: unexpected. */
void set_irq_handler(unsigned vector, irq_handler_t h);
static inline void irq_enable(void) { asm volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { asm volatile("cli" ::: "memory"); }

/* ---- user mode (head.S) ------------------------------------------------------- */
/* Run fn(arg) at CPL3 (native speed on kvm-pvm) and return its result. fn sees the
 * whole identity map and must not use hypercalls, port I/O or privileged
 * instructions; an exception in it fails the test. */
typedef uint64_t (*user_fn_t)(uint64_t arg);
uint64_t run_user(user_fn_t fn, uint64_t arg);
extern uint64_t run_user_rflags;

/* ---- mm.c ---------------------------------------------------------------------- */
/* Identity map covers [4 KiB, 4 GiB) after mm_init(); page 0 and everything else
 * are not present. */
#define IDENT_MAP_LIMIT (4ULL << 30)
/* Map one 4 KiB page at a virtual address outside the identity map (>= 512 GiB),
 * using page tables from a small static pool. Returns 0 or -1 (out of tables or
 * inside the identity map). */
int map_page(uint64_t va, uint64_t pa, bool user);
/* Unmap the NULL page (boot does this once start_info is parsed). */
void mm_init(void);
extern uint8_t pvh_huge_pages;

#endif
