/*
 * vcpu_op: the VCPUOP_* an HVM guest may use (Xen's hvm_vcpu_op list): timers,
 * vcpu_info placement, and bringing vCPUs up and down with a vcpu_hvm_context.
 *
 * A vCPU's KVM state belongs to its own thread: VCPUOP_initialise only records the
 * context; the target thread applies it (registers, then RUNNABLE) in event_before_run
 * once the vCPU is up. vCPUs other than 0 wait in KVM's UNINITIALIZED state, so a
 * guest that prefers LAPIC INIT/SIPI still can.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/hvm/hvm_vcpu.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/vcpu.h"
#include "util/log.h"

#define X86_CR0_PE      (1ULL << 0)
#define X86_CR0_PG      (1ULL << 31)
#define X86_CR4_PAE     (1ULL << 5)
#define EFER_LME        (1ULL << 8)
#define EFER_LMA        (1ULL << 10)
#define STIME_DELTA_MAX (UINT64_MAX >> 2)
#define MILLISECS(ms)   ((uint64_t)(ms) * 1000000ull)

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
static int context_valid(const struct vcpu_hvm_context *c)
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

/* Make v's thread look at its bring-up state (d->lock held). */
static void poke(struct vcpu *v, struct hcall *hc)
{
    pthread_cond_broadcast(&v->ev->wake);
    if (v != hc->v && v->thread_started && !v->d->dying)
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static long vcpu_initialise(struct hcall *hc, struct vcpu *v, uint64_t gva)
{
    struct vcpu_event *e = v->ev;
    if (!vcpu_info_of(v))
        return -EINVAL;     /* Xen: a vCPU >= 32 needs its vcpu_info registered first */
    struct vcpu_hvm_context c;
    if (hc_copy_from(hc, &c, gva, sizeof(c)))
        return -EFAULT;
    struct domain *d = v->d;
    pthread_mutex_lock(&d->lock);
    long rc = e->initialised ? -EEXIST : context_valid(&c);
    if (!rc) {
        e->context = c;
        e->context_pending = true;
        e->initialised = true;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static long vcpu_up(struct hcall *hc, struct vcpu *v)
{
    struct domain *d = v->d;
    struct vcpu_event *e = v->ev;
    pthread_mutex_lock(&d->lock);
    long rc = 0;
    if (!e->initialised) {
        rc = -EINVAL;
    } else if (!e->up || e->down_requested) {
        e->up = true;
        e->down_requested = false;
        poke(v, hc);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static long vcpu_down(struct hcall *hc, struct vcpu *v)
{
    struct domain *d = v->d;
    pthread_mutex_lock(&d->lock);
    bool others_up = false;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu_event *o = d->vcpus[i].ev;
        if (i != v->id && o && o->up && !o->down_requested)
            others_up = true;
    }
    if (!others_up) {
        pthread_mutex_unlock(&d->lock);
        domain_shutdown(d, SHUTDOWN_poweroff);   /* the last vCPU going down */
        return 0;
    }
    if (v->ev->up && !v->ev->down_requested) {
        v->ev->down_requested = true;
        v->ev->up = false;
        poke(v, hc);
    }
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static long set_periodic(struct hcall *hc, struct vcpu *v, uint64_t gva)
{
    struct vcpu_set_periodic_timer t;
    if (hc_copy_from(hc, &t, gva, sizeof(t)))
        return -EFAULT;
    if (t.period_ns < MILLISECS(1) || t.period_ns > STIME_DELTA_MAX)
        return -EINVAL;
    struct event_domain *ev = v->d->ev;
    pthread_mutex_lock(&ev->lock);
    v->ev->periodic_period = t.period_ns;
    v->ev->periodic_next = xen_system_time(v->d) + t.period_ns;
    vcpu_timer_rearm(v);
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

static long set_singleshot(struct hcall *hc, struct vcpu *v, uint64_t gva)
{
    struct vcpu_set_singleshot_timer t;
    if (v != hc->v)
        return -EINVAL;     /* only a vCPU's own, as on Xen */
    if (hc_copy_from(hc, &t, gva, sizeof(t)))
        return -EFAULT;
    if ((t.flags & VCPU_SSHOTTMR_future) && t.timeout_abs_ns < xen_system_time(v->d))
        return -ETIME;
    struct event_domain *ev = v->d->ev;
    pthread_mutex_lock(&ev->lock);
    v->ev->singleshot_deadline = t.timeout_abs_ns ? t.timeout_abs_ns : 1;
    vcpu_timer_rearm(v);
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

static long stop_timer(struct hcall *hc, struct vcpu *v, bool periodic)
{
    if (!periodic && v != hc->v)
        return -EINVAL;
    struct event_domain *ev = v->d->ev;
    pthread_mutex_lock(&ev->lock);
    if (periodic)
        v->ev->periodic_period = v->ev->periodic_next = 0;
    else
        v->ev->singleshot_deadline = 0;
    vcpu_timer_rearm(v);
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

static long register_vcpu_info(struct hcall *hc, struct vcpu *v, uint64_t gva)
{
    struct vcpu_register_vcpu_info info;
    if (hc_copy_from(hc, &info, gva, sizeof(info)))
        return -EFAULT;
    struct domain *d = v->d;
    /* Only on oneself, or on a vCPU that is down (Xen's rule). */
    pthread_mutex_lock(&d->lock);
    bool may = v == hc->v || !v->ev->up || v->ev->down_requested;
    pthread_mutex_unlock(&d->lock);
    if (!may)
        return -EINVAL;
    pthread_mutex_lock(&d->ev->lock);
    long rc = vcpu_info_register(v, info.mfn, info.offset);
    pthread_mutex_unlock(&d->ev->lock);
    if (!rc)
        log_info("d%u v%u: vcpu_info at gfn %#llx offset %#x", d->domid, v->id,
                 (unsigned long long)info.mfn, info.offset);
    return rc;
}

long do_vcpu_op(struct hcall *hc)
{
    unsigned cmd = (unsigned)hc->arg[0];
    switch (cmd) {
    case VCPUOP_initialise:
    case VCPUOP_up:
    case VCPUOP_down:
    case VCPUOP_is_up:
    case VCPUOP_set_periodic_timer:
    case VCPUOP_stop_periodic_timer:
    case VCPUOP_set_singleshot_timer:
    case VCPUOP_stop_singleshot_timer:
    case VCPUOP_register_vcpu_info:
    case VCPUOP_get_physid:
    case VCPUOP_get_runstate_info:
    case VCPUOP_register_runstate_memory_area:
        break;
    default:
        return -ENOSYS;     /* not for HVM guests */
    }
    struct domain *d = hc->d;
    uint64_t id = hc->is64 ? hc->arg[1] : (uint32_t)hc->arg[1];
    if (id >= d->nr_vcpus || !d->vcpus[id].ev || !d->ev)
        return -ENOENT;
    struct vcpu *v = &d->vcpus[id];
    uint64_t gva = hc->arg[2];
    switch (cmd) {
    case VCPUOP_initialise:
        return vcpu_initialise(hc, v, gva);
    case VCPUOP_up:
        return vcpu_up(hc, v);
    case VCPUOP_down:
        return vcpu_down(hc, v);
    case VCPUOP_is_up: {
        pthread_mutex_lock(&d->lock);
        long up = v->ev->up && !v->ev->down_requested;
        pthread_mutex_unlock(&d->lock);
        return up;
    }
    case VCPUOP_set_periodic_timer:
        return set_periodic(hc, v, gva);
    case VCPUOP_stop_periodic_timer:
        return stop_timer(hc, v, true);
    case VCPUOP_set_singleshot_timer:
        return set_singleshot(hc, v, gva);
    case VCPUOP_stop_singleshot_timer:
        return stop_timer(hc, v, false);
    case VCPUOP_register_vcpu_info:
        return register_vcpu_info(hc, v, gva);
    case VCPUOP_get_runstate_info:
        return vcpu_get_runstate(hc, v, gva);
    case VCPUOP_register_runstate_memory_area:
        return vcpu_register_runstate(hc, v, gva);
    case VCPUOP_get_physid:
    default:
        return -EINVAL;     /* Xen: only for pinned vCPUs of the hardware domain */
    }
}
