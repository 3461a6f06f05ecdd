/* vCPU register state at a PVH kernel's entry, as Xen's PVH ABI states it. */
#ifndef XKVM_HV_BOOT_REGS_H
#define XKVM_HV_BOOT_REGS_H

#include <linux/kvm.h>
#include <stdint.h>

/*
 * Flat 32-bit code and data segments (base 0, limit 4 GiB), a nominal TSS, CR0 =
 * PE|ET with paging off, CR4 = EFER = 0, EFLAGS = 0x2, EIP = entry, EBX = start_info.
 * `s` should come from KVM_GET_SREGS so the fields not set here stay KVM's.
 */
void pvh_boot_regs(struct kvm_sregs *s, struct kvm_regs *r, uint32_t entry,
                   uint32_t start_info);

#endif
