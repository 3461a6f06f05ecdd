/*
 * The hypercall page's contents: one 32-byte stub per hypercall,
 * `mov $nr, %eax; out %eax, $XKVM_HYPERCALL_PORT; ret`, padded with int3. The port
 * write exits to the VMM, which finds the number in the data and the arguments in the
 * registers; the stub changes no register but RAX. Same bytes for 32- and 64-bit code.
 */
#ifndef XKVM_HV_HYPERCALL_PAGE_H
#define XKVM_HV_HYPERCALL_PAGE_H

#include <stdint.h>

#define XKVM_HYPERCALL_PORT   0xEA
#define XKVM_HYPERCALL_MSR    0x40000000u
#define XKVM_HYPERCALL_STUB   32
#define XKVM_HYPERCALL_OUT_LEN 2        /* bytes of `out %eax, $imm8` */

void hypercall_page_write(uint8_t page[4096]);

#endif
