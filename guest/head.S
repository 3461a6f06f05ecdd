/*
 * xkvm test guest: PVH entry, long-mode switch, descriptor tables, trap stubs,
 * the hypercall page and the CPL3 helper (run_user).
 *
 * Entry contract (Xen PVH, docs/misc/pvh.pandoc): 32-bit flat protected mode, paging
 * off, interrupts off, EBX = physical address of struct hvm_start_info, no stack.
 * The image is linked at its physical address (1 MiB), so virtual == physical.
 */

#include <xen/elfnote.h>
#include "segments.h"

/* --- ELF notes (found by the loader through the PT_NOTE segment) --------------- */
#define XEN_NOTE(type, desc_start, desc_end) \
    .balign 4;                               \
    .long 4;                                 \
    .long desc_end - desc_start;             \
    .long type;                              \
    .asciz "Xen";                            \
    .balign 4;

    .section .note.Xen, "a", @note
    XEN_NOTE(XEN_ELFNOTE_GUEST_OS, 1f, 2f)
1:  .asciz "xkvm-test"
2:
    XEN_NOTE(XEN_ELFNOTE_XEN_VERSION, 1f, 2f)
1:  .asciz "xen-3.0"
2:
    XEN_NOTE(XEN_ELFNOTE_PHYS32_ENTRY, 1f, 2f)
1:  .long pvh_start32
2:
    .balign 4

/* --- 32-bit entry ----------------------------------------------------------------- */
    .section .text.head, "ax", @progbits
    .code32
    .globl pvh_start32
pvh_start32:
    cld
    mov     %ebx, %esi                  /* start_info; cpuid clobbers ebx */
    mov     $boot_stack_top, %esp

    /* PML4[0] -> PDPT. Every level has U set: tests run code at CPL3 (run_user)
     * over the same identity map. SMEP/SMAP stay off. */
    movl    $(pvh_pdpt + 7), pvh_pml4

    /* 1 GiB pages if CPUID.80000001:EDX.Page1GB[26], else 2 MiB pages. */
    mov     $0x80000000, %eax
    cpuid
    cmp     $0x80000001, %eax
    jb      .Lsmall_pages
    mov     $0x80000001, %eax
    cpuid
    bt      $26, %edx
    jnc     .Lsmall_pages
    movl    $0x00000087, pvh_pdpt + 0   /* P RW US PS */
    movl    $0x40000087, pvh_pdpt + 8
    movl    $0x80000087, pvh_pdpt + 16
    movl    $0xc0000087, pvh_pdpt + 24
    movb    $1, pvh_huge_pages
    jmp     .Lpt_done

.Lsmall_pages:
    /* 4 page directories (contiguous, 2048 entries) of 2 MiB pages; the upper
     * dword of every entry stays 0 (the loader zero-fills .bss). */
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $21, %eax
    or      $0x87, %eax
    mov     %eax, pvh_pd(, %ecx, 8)
    inc     %ecx
    cmp     $2048, %ecx
    jb      1b
    movl    $(pvh_pd + 0x0000 + 7), pvh_pdpt + 0
    movl    $(pvh_pd + 0x1000 + 7), pvh_pdpt + 8
    movl    $(pvh_pd + 0x2000 + 7), pvh_pdpt + 16
    movl    $(pvh_pd + 0x3000 + 7), pvh_pdpt + 24

.Lpt_done:
    mov     %cr4, %eax
    or      $0x620, %eax                /* PAE | OSFXSR | OSXMMEXCPT */
    mov     %eax, %cr4
    mov     $pvh_pml4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx           /* EFER */
    rdmsr
    or      $0x100, %eax                /* LME */
    wrmsr
    mov     %cr0, %eax
    or      $0x80010001, %eax           /* PG | WP | PE */
    mov     %eax, %cr0
    lgdt    gdt_ptr
    ljmp    $GDT_KERNEL_CS, $start64

/* --- 64-bit entry ----------------------------------------------------------------- */
    .code64
start64:
    mov     $GDT_KERNEL_DS, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    mov     $boot_stack_top, %rsp
    mov     %esi, %edi                  /* start_info physical address */
    call    guest_main
1:  cli
    hlt
    jmp     1b

/* --- trap stubs: 256 of them, 16 bytes apart ------------------------------------ */
    .text
    .balign 16
    .globl trap_stubs
trap_stubs:
    vec = 0
    .rept 256
    .balign 16
    .if !((vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30))
    pushq   $0                          /* no error code: keep the frame uniform */
    .endif
    pushq   $vec
    jmp     trap_common
    vec = vec + 1
    .endr

trap_common:
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, %rdi
    cld
    call    trap_handler
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    add     $16, %rsp                   /* vector, error code */
    iretq

/* --- run_user(fn, arg): call fn(arg) at CPL3, return its result ------------------ */
/*
 * uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg);
 * fn runs on user_stack with the identity map (all pages U), IF as given by
 * run_user_rflags; it returns into user_exit, which traps back to CPL0 (see
 * there); trap_handler calls user_resume, which restores the kernel context saved
 * here. Not re-entrant.
 */
    .globl run_user
run_user:
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, user_saved_rsp(%rip)
    lea     user_stack_top(%rip), %rax
    sub     $8, %rax
    lea     user_exit(%rip), %rcx
    mov     %rcx, (%rax)                /* fn returns into user_exit */
    pushq   $(GDT_USER_DS | 3)          /* SS */
    push    %rax                        /* RSP */
    pushq   run_user_rflags(%rip)       /* RFLAGS */
    pushq   $(GDT_USER_CS64 | 3)        /* CS */
    push    %rdi                        /* RIP */
    mov     %rsi, %rdi
    xor     %eax, %eax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %ebp, %ebp
    xor     %r8d, %r8d
    xor     %r9d, %r9d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    iretq

/*
 * CPL3: RAX = fn's result. The way back is a deliberate #UD at this exact address:
 * exception delivery from CPL3 works everywhere (VMX, SVM, TCG and kvm-pvm), while
 * under kvm-pvm a non-PVM-aware guest's `int $n` from CPL3 raises #UD and SYSCALL
 * lands at MSR_LSTAR still at CPL3 (both measured). trap_handler recognises the
 * #UD from CPL3 at user_exit and calls user_resume(RAX).
 */
    .globl user_exit
user_exit:
    ud2

/* void user_resume(uint64_t result): back on the kernel stack saved by run_user. */
    .globl user_resume
user_resume:
    mov     $GDT_KERNEL_DS, %eax
    mov     %eax, %ss
    mov     %eax, %ds
    mov     %eax, %es
    mov     user_saved_rsp(%rip), %rsp
    mov     %rdi, %rax
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    ret

/* --- data ------------------------------------------------------------------------- */
    .data
    .balign 16
    .globl gdt
gdt:
    .quad 0                             /* 0x00 null */
    .quad 0x00af9a000000ffff            /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff            /* 0x10 kernel data */
    .quad 0x00cffa000000ffff            /* 0x18 user code, 32-bit (sysret layout) */
    .quad 0x00cff2000000ffff            /* 0x20 user data */
    .quad 0x00affa000000ffff            /* 0x28 user code, 64-bit */
    .quad 0x00cff2000000ffff            /* 0x30 user data (sysexit layout) */
    .quad 0, 0                          /* 0x38 TSS, filled in by trap_init */
gdt_end:
    .globl gdt_ptr
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

    .balign 8
    .globl run_user_rflags
run_user_rflags:
    .quad 0x202                         /* IF=1, IOPL=0 */

/* --- bss: page tables, stacks, hypercall page (the loader zero-fills) ------------- */
    .section .bss.pagetables, "aw", @nobits
    .balign 4096
    .globl pvh_pml4, pvh_pdpt, pvh_pd, hypercall_page
pvh_pml4:       .skip 4096
pvh_pdpt:       .skip 4096
pvh_pd:         .skip 4 * 4096
hypercall_page: .skip 4096

    .section .bss.stacks, "aw", @nobits
    .balign 4096
    .globl boot_stack_top, trap_stack_top, df_stack_top, user_stack_top
boot_stack:     .skip 16384
boot_stack_top:
trap_stack:     .skip 8192
trap_stack_top:
df_stack:       .skip 4096
df_stack_top:
user_stack:     .skip 16384
user_stack_top:

    .section .bss, "aw", @nobits
    .balign 8
    .globl pvh_huge_pages, user_saved_rsp
user_saved_rsp: .skip 8
pvh_huge_pages: .skip 1
