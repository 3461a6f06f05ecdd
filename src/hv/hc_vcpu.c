/*
 * vcpu_op: the VCPUOP_* an HVM guest may use (Xen's hvm_vcpu_op list): timers,
 * vcpu_info placement, the secondary vcpu_time_info (vDSO), and bringing vCPUs up and
 * down with a vcpu_hvm_context. Also set_timer_op, the older singleshot timer call.
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

#define STIME_DELTA_MAX (UINT64_MAX >> 2)
#define MILLISECS(ms)   ((uint64_t)(ms) * 1000000ull)

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
    long rc = e->initialised ? -EEXIST : vcpu_context_valid(&c);
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

/*
 * set_timer_op: the calling vCPU's singleshot timer at an absolute system time, 0
 * cancels. Xen's workaround for old Linux kept: a deadline wrapped negative or more
 * than 2^50 ns (13 days) ahead fires in 100 ms instead.
 */
long do_set_timer_op(struct hcall *hc)
{
    struct vcpu *v = hc->v;
    uint64_t timeout = hc->is64 ? hc->arg[0] : (hc->arg[0] & 0xffffffffu) | (hc->arg[1] << 32);
    uint64_t now = xen_system_time(v->d);
    int64_t offset = (int64_t)(timeout - now);
    if (timeout && ((int64_t)timeout < 0 || (offset > 0 && (offset >> 50) != 0)))
        timeout = now + MILLISECS(100);
    struct event_domain *ev = v->d->ev;
    if (!ev)
        return -EINVAL;
    pthread_mutex_lock(&ev->lock);
    v->ev->singleshot_deadline = timeout;
    vcpu_timer_rearm(v);
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

/*
 * A second copy of the vCPU's vcpu_time_info at a guest-linear address (Linux maps it
 * for its vDSO), written wherever the vcpu_info copy is (vcpu_time_update). 0 stops.
 */
static long register_time_area(struct hcall *hc, struct vcpu *v, uint64_t gva)
{
    struct vcpu_register_time_memory_area area;
    if (hc_copy_from(hc, &area, gva, sizeof(area)))
        return -EFAULT;
    uint64_t at = hc->is64 ? area.addr.p : (uint32_t)area.addr.p;
    __atomic_store_n(&v->ev->time_area_gva, at, __ATOMIC_RELEASE);
    __atomic_store_n(&v->ev->time_dirty, true, __ATOMIC_RELEASE);
    if (at && v == hc->v)
        vcpu_time_update(v);    /* Linux reads it right after registering */
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
    case VCPUOP_register_vcpu_time_memory_area:
        break;
    default:
        return hc_unimplemented(hc, "vcpu_op", cmd);     /* not for HVM guests */
    }
    struct domain *d = hc->d;
    uint32_t id = (uint32_t)hc->arg[1];     /* Xen: unsigned int vcpuid */
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
    case VCPUOP_register_vcpu_time_memory_area:
        return register_time_area(hc, v, gva);
    case VCPUOP_get_physid:
    default:
        return -EINVAL;     /* Xen: only for pinned vCPUs of the hardware domain */
    }
}
