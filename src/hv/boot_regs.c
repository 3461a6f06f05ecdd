#include "hv/boot_regs.h"

#include <string.h>

void pvh_boot_regs(struct kvm_sregs *s, struct kvm_regs *r, uint32_t entry,
                   uint32_t start_info)
{
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
        .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    struct kvm_segment data = code;
    data.type = 0x3;
    data.selector = 0x18;
    s->cs = code;
    s->ds = s->es = s->fs = s->gs = s->ss = data;
    s->tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1,
    };
    s->ldt = (struct kvm_segment){ .unusable = 1 };
    s->cr0 = 0x11;
    s->cr3 = 0;
    s->cr4 = 0;
    s->efer = 0;
    memset(r, 0, sizeof(*r));
    r->rip = entry;
    r->rbx = start_info;
    r->rflags = 0x2;
}
