/*
 * Bringing a vCPU up the Xen way (VCPUOP_initialise / VCPUOP_up, hc_vcpu.c decodes
 * them): the vcpu_hvm_context checked when the guest hands it over, and applied by
 * the vCPU's own thread (its KVM state belongs to it) before it next enters KVM_RUN.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <xen/hvm/hvm_vcpu.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/vcpu.h"
#include "util/log.h"

#define X86_CR0_PE      (1ULL << 0)
#define X86_CR0_PG      (1ULL << 31)
#define X86_CR4_PAE     (1ULL << 5)
#define EFER_LME        (1ULL << 8)
#define EFER_LMA        (1ULL << 10)

static bool canonical(uint64_t a)
{
    return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* A segment from Xen's packed attribute layout (hvm_vcpu.h). */
static struct kvm_segment segment(uint32_t base, uint32_t limit, uint16_t ar, uint16_t sel)
{
    return (struct kvm_segment){
        .base = base, .limit = limit, .selector = sel,
        .type = ar & 0xf, .s = (ar >> 4) & 1, .dpl = (ar >> 5) & 3, .present = (ar >> 7) & 1,
        .avl = (ar >> 8) & 1, .l = (ar >> 9) & 1, .db = (ar >> 10) & 1, .g = (ar >> 11) & 1,
        .unusable = !((ar >> 7) & 1),
    };
}

/* Xen's checks, simplified: what KVM could not enter or would misread. */
int vcpu_context_valid(const struct vcpu_hvm_context *c)
{
    if (c->mode == VCPU_HVM_MODE_64B) {
        const struct vcpu_hvm_x86_64 *r = &c->cpu_regs.x86_64;
        if (!(r->cr0 & X86_CR0_PE) || !(r->cr0 & X86_CR0_PG) || !(r->cr4 & X86_CR4_PAE) ||
            !(r->efer & EFER_LME) || !canonical(r->rip) || !canonical(r->rsp) ||
            (r->cr3 >> 52))
            return -EINVAL;
        return 0;
    }
    if (c->mode != VCPU_HVM_MODE_32B)
        return -EINVAL;
    const struct vcpu_hvm_x86_32 *r = &c->cpu_regs.x86_32;
    bool cs_code = (r->cs_ar & 0x80) && (r->cs_ar & 0x10) && (r->cs_ar & 0x8);
    bool ss_ok = !(r->ss_ar & 0x80) || ((r->ss_ar & 0x10) && !(r->ss_ar & 0x8) && (r->ss_ar & 0x2));
    bool tr_ok = !(r->tr_ar & 0x80) || !(r->tr_ar & 0x10);
    if (!(r->cr0 & X86_CR0_PE) || !cs_code || !ss_ok || !tr_ok || (r->cs_ar & 0xf000) ||
        ((r->efer & EFER_LME) && !(r->cr0 & X86_CR0_PG)))
        return -EINVAL;
    return 0;
}

static int apply_context(struct vcpu *v, const struct vcpu_hvm_context *c)
{
    struct kvm_sregs s;
    struct kvm_regs r = { 0 };
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return -errno;
    if (c->mode == VCPU_HVM_MODE_64B) {
        const struct vcpu_hvm_x86_64 *x = &c->cpu_regs.x86_64;
        s.cs = segment(0, 0xffffffff, 0xa9b, 0x08);     /* L, P, S, code r/x accessed */
        s.ds = s.es = s.fs = s.gs = s.ss = segment(0, 0xffffffff, 0xc93, 0x10);
        s.tr = segment(0, 0x67, 0x8b, 0x18);
        s.cr0 = x->cr0, s.cr3 = x->cr3, s.cr4 = x->cr4;
        s.efer = x->efer | EFER_LMA;
        r = (struct kvm_regs){ .rax = x->rax, .rcx = x->rcx, .rdx = x->rdx, .rbx = x->rbx,
                               .rsp = x->rsp, .rbp = x->rbp, .rsi = x->rsi, .rdi = x->rdi,
                               .rip = x->rip, .rflags = x->rflags | 2 };
    } else {
        const struct vcpu_hvm_x86_32 *x = &c->cpu_regs.x86_32;
        s.cs = segment(x->cs_base, x->cs_limit, x->cs_ar, 0x08);
        s.ds = s.fs = s.gs = segment(x->ds_base, x->ds_limit, x->ds_ar, 0x10);
        s.ss = segment(x->ss_base, x->ss_limit, x->ss_ar, 0x10);
        s.es = segment(x->es_base, x->es_limit, x->es_ar, 0x10);
        s.tr = segment(x->tr_base, x->tr_limit, x->tr_ar, 0x18);
        s.cr0 = x->cr0, s.cr3 = x->cr3, s.cr4 = x->cr4;
        s.efer = x->efer;
        if ((s.efer & EFER_LME) && (s.cr0 & X86_CR0_PG))
            s.efer |= EFER_LMA;
        r = (struct kvm_regs){ .rax = x->eax, .rcx = x->ecx, .rdx = x->edx, .rbx = x->ebx,
                               .rsp = x->esp, .rbp = x->ebp, .rsi = x->esi, .rdi = x->edi,
                               .rip = x->eip, .rflags = x->eflags | 2 };
    }
    s.ldt = (struct kvm_segment){ .unusable = 1 };
    if (host.has_sync_regs)
        v->run->kvm_dirty_regs = 0;     /* the sync copy is stale now */
    struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0 || ioctl(v->fd, KVM_SET_REGS, &r) < 0 ||
        ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
        return -errno;
    return 0;
}

void vcpu_bringup_before_run(struct vcpu *v)
{
    struct domain *d = v->d;
    struct vcpu_event *e = v->ev;
    pthread_mutex_lock(&d->lock);
    if (!e->ran && v->nr_exits) {
        /* It runs: vCPU 0, or started by the guest through LAPIC INIT/SIPI. */
        e->ran = true;
        e->initialised = true;
        if (!e->down_requested)
            e->up = true;
    }
    bool apply = e->context_pending && e->up && !e->down_requested;
    if (apply)
        e->context_pending = false;
    pthread_mutex_unlock(&d->lock);
    if (apply) {
        int rc = apply_context(v, &e->context);
        if (rc)
            domain_crash(d, "v%u: applying VCPUOP_initialise context: %s", v->id,
                         strerror(-rc));
        else
            log_info("d%u v%u: up at %#llx", d->domid, v->id,
                     (unsigned long long)(e->context.mode == VCPU_HVM_MODE_64B
                                              ? e->context.cpu_regs.x86_64.rip
                                              : e->context.cpu_regs.x86_32.eip));
        __atomic_store_n(&e->time_dirty, true, __ATOMIC_RELEASE);
    }
    /* VCPUOP_down: stay out of KVM_RUN until up again (a pause still parks us). */
    pthread_mutex_lock(&d->lock);
    while (e->down_requested && !d->pause_count && !d->dying)
        pthread_cond_wait(&e->wake, &d->lock);
    pthread_mutex_unlock(&d->lock);
}
