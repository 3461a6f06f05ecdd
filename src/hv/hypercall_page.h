/*
 * The hypercall page's contents: one 32-byte stub per hypercall, padded with int3.
 * On the port-I/O transport `mov $nr, %eax; out %eax, $XKVM_HYPERCALL_PORT; ret`: the
 * port write exits to the VMM, which finds the number in RAX and the arguments in the
 * registers. Where KVM intercepts Xen hypercalls, the host's native instruction
 * instead, `mov $nr, %eax; vmcall (or vmmcall); ret`, as Xen writes it. Either way
 * the stub changes no register but RAX, and the bytes serve 32- and 64-bit code.
 */
#ifndef XKVM_HV_HYPERCALL_PAGE_H
#define XKVM_HV_HYPERCALL_PAGE_H

#include <stdbool.h>
#include <stdint.h>

#define XKVM_HYPERCALL_PORT   0xEA
#define XKVM_HYPERCALL_MSR    0x40000000u
#define XKVM_HYPERCALL_STUB   32
#define XKVM_HYPERCALL_OUT_LEN 2        /* bytes of `out %eax, $imm8` */
#define XKVM_HYPERCALL_VMCALL_LEN 3     /* bytes of `vmcall` and of `vmmcall` */

enum hypercall_stub {
    HYPERCALL_STUB_PORT_IO,
    HYPERCALL_STUB_VMCALL,      /* 0f 01 c1: Intel's */
    HYPERCALL_STUB_VMMCALL,     /* 0f 01 d9: AMD's and Hygon's */
};

void hypercall_page_write(uint8_t page[4096], enum hypercall_stub kind);
/* Is this instruction VMCALL or VMMCALL? */
bool hypercall_insn_is_vmcall(const uint8_t insn[3]);

#endif
