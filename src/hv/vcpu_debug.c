/*
 * What KVM holds for a paused vCPU, for `xkvm debug-state` (docs/control-api.md): its
 * run state, where it is, whether it takes interrupts, and its LAPIC's pending and
 * in-service vectors. Read only while the domain is paused (every vCPU thread parked
 * out of KVM_RUN): a vCPU ioctl would otherwise wait for KVM_RUN to return.
 */
#include <json-c/json.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>

#include "hv/domain.h"
#include "hv/vcpu.h"

#define APIC_REG(lapic, off) (*(const uint32_t *)&(lapic)->regs[(off)])
#define APIC_TPR 0x80
#define APIC_PPR 0xa0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100
#define APIC_IRR 0x200
#define APIC_LVTT 0x320

/* The vectors set in one of the LAPIC's 256-bit registers (ISR, IRR), as a list. */
static struct json_object *apic_vectors(const struct kvm_lapic_state *l, unsigned base)
{
    struct json_object *a = json_object_new_array();
    for (unsigned w = 0; w < 8; w++) {
        uint32_t bits = APIC_REG(l, base + w * 0x10);
        for (unsigned b = 0; b < 32; b++)
            if (bits & (1u << b))
                json_object_array_add(a, json_object_new_int((int)(w * 32 + b)));
    }
    return a;
}

struct json_object *vcpu_kvm_state_json(struct vcpu *v)
{
    struct json_object *j = json_object_new_object();
    json_object_object_add(j, "id", json_object_new_int((int)v->id));
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0)
        json_object_object_add(j, "mp_state", json_object_new_int((int)mp.mp_state));
    struct kvm_regs r;
    if (ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
        char rip[24];
        snprintf(rip, sizeof(rip), "%#llx", (unsigned long long)r.rip);
        json_object_object_add(j, "rip", json_object_new_string(rip));
        json_object_object_add(j, "if", json_object_new_boolean((r.rflags >> 9) & 1));
    }
    struct kvm_vcpu_events ev;
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0) {
        json_object_object_add(j, "interrupt_injected", json_object_new_int(ev.interrupt.injected
                                                                             ? ev.interrupt.nr : -1));
        json_object_object_add(j, "interrupt_shadow", json_object_new_int(ev.interrupt.shadow));
        json_object_object_add(j, "nmi_masked", json_object_new_int(ev.nmi.masked));
    }
    struct kvm_lapic_state l;
    if (ioctl(v->fd, KVM_GET_LAPIC, &l) == 0) {
        struct json_object *a = json_object_new_object();
        json_object_object_add(a, "irr", apic_vectors(&l, APIC_IRR));
        json_object_object_add(a, "isr", apic_vectors(&l, APIC_ISR));
        json_object_object_add(a, "tpr", json_object_new_int((int)APIC_REG(&l, APIC_TPR)));
        json_object_object_add(a, "ppr", json_object_new_int((int)APIC_REG(&l, APIC_PPR)));
        json_object_object_add(a, "svr", json_object_new_int((int)APIC_REG(&l, APIC_SVR)));
        json_object_object_add(a, "lvtt", json_object_new_int((int)APIC_REG(&l, APIC_LVTT)));
        json_object_object_add(j, "lapic", a);
    }
    return j;
}
