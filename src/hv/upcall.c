/*
 * Upcalls: getting a vCPU to notice that evtchn_upcall_pending went 0 -> 1, and the
 * waits that end on it (SCHEDOP_block, SCHEDOP_poll).
 *
 * Two deliveries, as on Xen:
 *  - a per-vCPU upcall vector (HVMOP_set_evtchn_upcall_vector) is an ordinary LAPIC
 *    interrupt: KVM_SIGNAL_MSI, fixed and edge, to the vCPU's APIC ID; the guest EOIs it.
 *  - the HVM_PARAM_CALLBACK_IRQ vector is not a LAPIC interrupt (the guest does not EOI
 *    it): while the vCPU's upcall is pending and it can take an interrupt, the vector
 *    is injected at VM entry (KVM_SET_VCPU_EVENTS), from the vCPU's own thread just
 *    before KVM_RUN. Notifying means kicking the thread out of KVM_RUN; if it cannot
 *    take the interrupt yet, the event thread kicks it again 1 ms later.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/sched.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/vcpu.h"
#include "util/clock.h"
#include "util/log.h"

/* A callback that cannot be injected yet is retried: soon at first, then every 1 ms. */
#define UPCALL_RETRY_FAST_NS 50000ull
#define UPCALL_RETRY_FAST    40
#define UPCALL_RETRY_NS      1000000ull
/* A LAPIC upcall vector still pending is sent again at most this often (below). */
#define UPCALL_RESEND_NS     1000000ull

uint8_t upcall_callback_vector(const struct domain *d)
{
    uint64_t p = d->hvm_params[HVM_PARAM_CALLBACK_IRQ];
    if ((p >> 56) != HVM_PARAM_CALLBACK_TYPE_VECTOR)
        return 0;
    return (uint8_t)p;
}

static void signal_upcall_vector(struct vcpu *v, uint8_t vector)
{
    /* The APIC ID of vCPU n is n (KVM's default, and CPUID says so). */
    struct kvm_msi msi = {
        .address_lo = 0xfee00000u | (v->id << 12),
        .data = vector,     /* fixed delivery, edge */
    };
    if (ioctl(v->d->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
        log_debug("d%u v%u: KVM_SIGNAL_MSI: %s", v->d->domid, v->id, strerror(errno));
}

void upcall_notify(struct vcpu *v)
{
    struct domain *d = v->d;
    struct vcpu_event *e = v->ev;
    uint8_t vector = __atomic_load_n(&e->upcall_vector, __ATOMIC_ACQUIRE);
    if (vector) {
        signal_upcall_vector(v, vector);
        __atomic_store_n(&e->vector_sent_ns, host_monotonic_ns(), __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&d->lock);
    if (!d->dying) {
        if (e->polling) {
            e->poll_kicked = true;
            pthread_cond_signal(&e->wake);
        }
        bool self = v->thread_started && pthread_equal(v->thread, pthread_self());
        /* A LAPIC vector wakes KVM_RUN by itself; the callback needs the thread. */
        if (v->thread_started && !self &&
            (!vector || __atomic_load_n(&e->block_halted, __ATOMIC_ACQUIRE)))
            pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    }
    pthread_mutex_unlock(&d->lock);
}

void upcall_mark_pending(struct vcpu *v)
{
    struct vcpu_info *vi = vcpu_info_of(v);
    if (!vi)
        return;
    if (__atomic_fetch_or(&vi->evtchn_upcall_pending, 1, __ATOMIC_SEQ_CST) & 1)
        return;
    upcall_notify(v);
}

void upcall_wake_pollers(struct domain *d, uint32_t port)
{
    if (!__atomic_load_n(&d->ev->nr_polling, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&d->lock);
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu_event *e = d->vcpus[i].ev;
        if (e && e->polling && (e->poll_port == 0 || e->poll_port == port)) {
            e->poll_kicked = true;
            pthread_cond_signal(&e->wake);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

void event_vcpu_kicked(struct vcpu *v)
{
    if (!v->ev)
        return;
    v->ev->poll_kicked = true;
    pthread_cond_broadcast(&v->ev->wake);
}

static void set_runnable(struct vcpu *v)
{
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0 && mp.mp_state == KVM_MP_STATE_HALTED) {
        mp.mp_state = KVM_MP_STATE_RUNNABLE;
        ioctl(v->fd, KVM_SET_MP_STATE, &mp);
    }
}

static void retry_later(struct vcpu *v)
{
    struct event_domain *ev = v->d->ev;
    pthread_mutex_lock(&ev->lock);
    struct vcpu_event *e = v->ev;
    e->nr_retries++;
    if (!e->retry_at) {
        bool fast = e->retries_in_row++ < UPCALL_RETRY_FAST;
        e->retry_at = host_monotonic_ns() + (fast ? UPCALL_RETRY_FAST_NS : UPCALL_RETRY_NS);
        vcpu_timer_rearm(v);
    }
    pthread_mutex_unlock(&ev->lock);
}

/* Let KVM finish the exit just handled, so the vector lands after that instruction. */
static void finish_exit(struct vcpu *v)
{
    if (!v->exit_incomplete)
        return;
    v->run->immediate_exit = 1;
    ioctl(v->fd, KVM_RUN, 0);
    v->run->immediate_exit = 0;     /* a pauser's kick is still pending: nothing lost */
    v->exit_incomplete = false;
}

/* Inject the callback vector if the vCPU can take an interrupt now. */
static void inject_callback(struct vcpu *v, uint8_t vector)
{
    finish_exit(v);
    struct kvm_vcpu_events evs;
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &evs) < 0) {
        retry_later(v);
        return;
    }
    if (!v->run->if_flag || evs.interrupt.injected || evs.interrupt.shadow ||
        evs.exception.injected || evs.exception.pending || evs.nmi.injected) {
        /* Exit when it can take one (KVM grants this where LINT0 accepts ExtINT). */
        v->run->request_interrupt_window = 1;
        retry_later(v);
        return;
    }
    v->run->request_interrupt_window = 0;
    v->ev->retries_in_row = 0;
    evs.interrupt.injected = 1;
    evs.interrupt.nr = vector;
    evs.interrupt.soft = 0;
    /* Give back exactly what KVM reported valid; SIPI is not ours to touch. */
    evs.flags &= ~KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &evs) < 0) {
        log_warn("d%u v%u: KVM_SET_VCPU_EVENTS: %s", v->d->domid, v->id, strerror(errno));
        retry_later(v);
        return;
    }
    v->ev->nr_callbacks++;
    set_runnable(v);
}

/*
 * KVM drops a fixed interrupt sent to a software-disabled LAPIC, where Xen's vlapic
 * keeps it pending. Linux binds its timer VIRQ before it enables its LAPIC, so the
 * vector for that first event was lost for good: the upcall stayed pending, so no
 * later event sent it again, and the guest's clock and SMP bring-up stood still
 * (seen with Debian's kernel in the nested VM). While the upcall stays pending, the
 * vector goes again at most every UPCALL_RESEND_NS, unless the LAPIC holds it (in IRR:
 * it will be taken; in ISR: the guest's handler runs and reads the pending state). A
 * resend of a vector in service would be a second upcall with nothing new, which Xen
 * never makes (seen as a spurious upcall by pv-abi's masked-send check under load).
 */
static bool lapic_holds_vector(struct vcpu *v, uint8_t vector)
{
    struct kvm_lapic_state l;
    if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
        return false;
    unsigned reg = (vector / 32u) * 0x10u, bit = vector % 32u;
    uint32_t isr, irr;
    memcpy(&isr, &l.regs[0x100 + reg], sizeof(isr));
    memcpy(&irr, &l.regs[0x200 + reg], sizeof(irr));
    return ((isr | irr) >> bit) & 1;
}

static void resend_lapic_vector(struct vcpu *v, uint8_t vector)
{
    struct vcpu_event *e = v->ev;
    uint64_t now = host_monotonic_ns();
    if (now - __atomic_load_n(&e->vector_sent_ns, __ATOMIC_RELAXED) < UPCALL_RESEND_NS) {
        retry_later(v);     /* look again once the vector has had its time */
        return;
    }
    __atomic_store_n(&e->vector_sent_ns, now, __ATOMIC_RELAXED);
    /*
     * Held by the LAPIC: KVM delivers it when the guest can take it, so neither a
     * resend nor more kicks are needed (each kick is a needless exit, and in the
     * nested VM every exit is slow).
     */
    if (lapic_holds_vector(v, vector))
        return;
    signal_upcall_vector(v, vector);
    retry_later(v);
}

void event_before_run(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (!e)
        return;
    vcpu_bringup_before_run(v);
    if (__atomic_load_n(&e->block_halted, __ATOMIC_ACQUIRE) && v->nr_exits != e->block_exits)
        __atomic_store_n(&e->block_halted, false, __ATOMIC_RELEASE);
    if (__atomic_load_n(&e->time_dirty, __ATOMIC_ACQUIRE)) {
        vcpu_time_update(v);
        runstate_update_area(v);
    }
    struct vcpu_info *vi = vcpu_info_of(v);
    if (!vi || !(__atomic_load_n(&vi->evtchn_upcall_pending, __ATOMIC_ACQUIRE) & 1)) {
        v->run->request_interrupt_window = 0;
        return;
    }
    /* An event for a vCPU in SCHEDOP_block ends the block, whatever its IF says. */
    if (__atomic_exchange_n(&e->block_halted, false, __ATOMIC_ACQ_REL))
        set_runnable(v);
    uint8_t lapic_vector = __atomic_load_n(&e->upcall_vector, __ATOMIC_ACQUIRE);
    if (lapic_vector) {
        resend_lapic_vector(v, lapic_vector);
        return;
    }
    uint8_t vector = upcall_callback_vector(v->d);
    if (vector)
        inject_callback(v, vector);
}

long do_set_evtchn_upcall_vector(struct hcall *hc)
{
    struct xen_hvm_evtchn_upcall_vector op;
    if (hc_copy_from(hc, &op, hc->arg[1], sizeof(op)))
        return -EFAULT;
    if (op.vector < 0x10)
        return -EINVAL;
    struct domain *d = hc->d;
    if (op.vcpu >= d->nr_vcpus || !d->vcpus[op.vcpu].ev)
        return -ENOENT;
    struct vcpu *v = &d->vcpus[op.vcpu];
    pthread_mutex_lock(&d->ev->lock);
    __atomic_store_n(&v->ev->upcall_vector, op.vector, __ATOMIC_RELEASE);
    struct vcpu_info *vi = vcpu_info_of(v);
    bool pending = vi && (vi->evtchn_upcall_pending & 1);
    pthread_mutex_unlock(&d->ev->lock);
    log_guest(d, "d%u v%u: upcall vector %#x", d->domid, v->id, op.vector);
    if (pending)
        signal_upcall_vector(v, op.vector);
    return 0;
}

/* ---- SCHEDOP_block and SCHEDOP_poll ------------------------------------------- */

/*
 * HVM SCHEDOP_block: sleep until an event is pending for this vCPU. The vCPU is put
 * in the HLT state, so that KVM wakes it for any interrupt (LAPIC timer, IPI, upcall
 * vector) and a pause or an upcall kick takes it out of KVM_RUN as for HLT.
 */
long event_sched_block(struct hcall *hc)
{
    struct vcpu *v = hc->v;
    struct vcpu_event *e = v->ev;
    struct vcpu_info *vi = vcpu_info_of(v);
    if (vi)
        vi->evtchn_upcall_mask = 0;     /* "enable event delivery", as Xen does */
    if (vi && (__atomic_load_n(&vi->evtchn_upcall_pending, __ATOMIC_ACQUIRE) & 1))
        return 0;
    struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_HALTED };
    if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
        return 0;   /* a spurious wake-up, which Xen allows */
    e->block_exits = v->nr_exits;
    __atomic_store_n(&e->block_halted, true, __ATOMIC_RELEASE);
    /* An upcall that came before block_halted was visible: before_run ends the HLT. */
    return 0;
}

static bool any_port_pending(struct event_domain *ev, const uint32_t *ports, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (evtchn_is_pending(ev, ports[i]))
            return true;
    return false;
}

long event_sched_poll(struct hcall *hc)
{
    /* struct sched_poll: 64-bit {ports ptr; nr_ports; pad; timeout}, 32-bit packs to 16 */
    uint64_t ports_gva = 0, timeout = 0;
    uint32_t nr = 0;
    if (hc->is64) {
        struct { uint64_t ports; uint32_t nr, pad; uint64_t timeout; } p;
        if (hc_copy_from(hc, &p, hc->arg[1], sizeof(p)))
            return -EFAULT;
        ports_gva = p.ports, nr = p.nr, timeout = p.timeout;
    } else {
        struct { uint32_t ports, nr; uint64_t timeout; } p;
        if (hc_copy_from(hc, &p, hc->arg[1], sizeof(p)))
            return -EFAULT;
        ports_gva = p.ports, nr = p.nr, timeout = p.timeout;
    }
    if (nr > SCHED_POLL_MAX)
        return -EINVAL;
    uint32_t ports[SCHED_POLL_MAX];
    if (nr && hc_copy_from(hc, ports, ports_gva, nr * sizeof(uint32_t)))
        return -EFAULT;

    struct vcpu *v = hc->v;
    struct domain *d = hc->d;
    struct vcpu_event *e = v->ev;
    struct vcpu_info *vi = vcpu_info_of(v);
    if (vi && (vi->evtchn_upcall_pending & 1) && v->run->if_flag)
        return 0;   /* an upcall is deliverable now: Xen returns at once */
    for (unsigned i = 0; i < nr; i++)
        if (ports[i] >= EVTCHN_NR_PORTS)
            return -EINVAL;

    pthread_mutex_lock(&d->lock);
    e->polling = true;
    e->poll_kicked = false;
    e->poll_port = nr == 1 ? ports[0] : 0;
    __atomic_add_fetch(&d->ev->nr_polling, 1, __ATOMIC_ACQ_REL);
    while (!any_port_pending(d->ev, ports, nr) && !e->poll_kicked && !d->pause_count &&
           !d->dying) {
        if (!timeout) {
            pthread_cond_wait(&e->wake, &d->lock);
            continue;
        }
        uint64_t now = xen_system_time(d);
        if (now >= timeout)
            break;
        uint64_t left = timeout - now;
        uint64_t at = host_monotonic_ns() + (left < 10000000000ull ? left : 10000000000ull);
        struct timespec ts = ns_timespec(at);
        pthread_cond_timedwait(&e->wake, &d->lock, &ts);
    }
    e->polling = false;
    __atomic_sub_fetch(&d->ev->nr_polling, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&d->lock);
    return 0;
}
