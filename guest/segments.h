/* GDT layout shared by head.S and C (see gdt in head.S). */
#ifndef XKVM_GUEST_SEGMENTS_H
#define XKVM_GUEST_SEGMENTS_H

#define GDT_KERNEL_CS   0x08
#define GDT_KERNEL_DS   0x10
#define GDT_USER_CS32   0x18
#define GDT_USER_DS     0x20
#define GDT_USER_CS64   0x28
#define GDT_USER_DS2    0x30
#define GDT_TSS         0x38

#endif
