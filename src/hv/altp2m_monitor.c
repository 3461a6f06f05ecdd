/*
 * altp2m violations and the monitor that answers them (docs/altp2m.md, "Monitor"),
 * as Xen's vm_event ring delivers VM_EVENT_REASON_MEM_ACCESS. A guest access the
 * active view forbids exits as MMIO (its gfn has no memslot, or a read-only one);
 * handle_mmio finds the view forbids it and calls altp2m_violation_wait on the vCPU's
 * own thread, which parks there (counted as parked, so pauses and destroys proceed)
 * until the monitor answers: resume (the access is done once), switch the domain's
 * view (the access is checked again under it), or nothing yet (it stays). The monitor
 * is the control client that polls: each poll renews a lease of
 * ALTP2M_MONITOR_LEASE_NS. With no lease (never attached, detached, or gone silent)
 * the access is done once and counted, as Xen does when no listener is on the ring.
 */
#include <errno.h>
#include <json-c/json.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <time.h>
#include <xen/hvm/hvm_op.h>

#include "hv/domain.h"
#include "hv/vcpu.h"
#include "util/clock.h"
#include "util/log.h"

static bool lease_held(const struct domain *d)
{
    return mono_ns() < d->altp2m_lease_until_ns;
}

static uint64_t vcpu_rip(struct vcpu *v)
{
    struct kvm_regs r;
    return ioctl(v->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

/* Wait on d->cond for at most 100 ms (CLOCK_REALTIME, the condition's clock). */
static void wait_a_little(struct domain *d)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

bool altp2m_violation_wait(struct vcpu *v, uint64_t gpa, bool write, bool *recheck)
{
    struct domain *d = v->d;
    *recheck = false;
    uint64_t rip = vcpu_rip(v);
    unsigned view = domain_altp2m_view(d);
    pthread_mutex_lock(&d->lock);
    d->altp2m_violations++;
    if (!lease_held(d)) {
        pthread_mutex_unlock(&d->lock);
        log_guest_at(d, LOG_INFO, "d%u v%u: altp2m: %s of gpa %#llx forbidden by view %u; "
                     "no monitor: done once", d->domid, v->id, write ? "write" : "read",
                     (unsigned long long)gpa, view);
        return true;
    }
    v->alt_seq = ++d->altp2m_next_seq;
    v->alt_gpa = gpa;
    v->alt_write = write;
    v->alt_rip = rip;
    v->alt_view = view;
    v->alt_answer = ALTP2M_ANSWER_NONE;
    v->alt_waiting = true;
    v->parked = true;
    d->nr_parked++;
    pthread_cond_broadcast(&d->cond);
    while (!d->dying) {
        if (v->alt_answer != ALTP2M_ANSWER_NONE && d->pause_count == 0)
            break;
        if (v->alt_answer == ALTP2M_ANSWER_NONE && !lease_held(d))
            v->alt_answer = ALTP2M_ANSWER_RESUME;   /* the monitor went: docs/altp2m.md */
        wait_a_little(d);
    }
    d->nr_parked--;
    v->parked = false;
    v->alt_waiting = false;
    bool alive = !d->dying;
    int ans = v->alt_answer;
    unsigned to = v->alt_switch_to;
    pthread_mutex_unlock(&d->lock);
    if (alive && ans == ALTP2M_ANSWER_SWITCH) {
        struct xen_hvm_altp2m_op a = { .version = HVMOP_ALTP2M_INTERFACE_VERSION,
                                       .cmd = HVMOP_altp2m_switch_p2m,
                                       .u.view.view = (uint16_t)to };
        int rc = domain_altp2m_op(d, &a, false, v);
        if (rc)
            log_warn("d%u v%u: altp2m: the monitor's switch to view %u: %d", d->domid,
                     v->id, to, rc);
        *recheck = true;
    }
    return alive;
}

struct json_object *altp2m_monitor_poll(struct domain *d)
{
    struct json_object *evs = json_object_new_array();
    pthread_mutex_lock(&d->lock);
    d->altp2m_lease_until_ns = mono_ns() + ALTP2M_MONITOR_LEASE_NS;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu *v = &d->vcpus[i];
        if (!v->alt_waiting || v->alt_answer != ALTP2M_ANSWER_NONE)
            continue;
        struct json_object *e = json_object_new_object();
        json_object_object_add(e, "seq", json_object_new_int64((int64_t)v->alt_seq));
        json_object_object_add(e, "vcpu", json_object_new_int((int)i));
        json_object_object_add(e, "gfn", json_object_new_int64((int64_t)(v->alt_gpa >> 12)));
        json_object_object_add(e, "offset", json_object_new_int((int)(v->alt_gpa & 0xfff)));
        json_object_object_add(e, "access", json_object_new_string(v->alt_write ? "w" : "r"));
        json_object_object_add(e, "view", json_object_new_int((int)v->alt_view));
        json_object_object_add(e, "rip", json_object_new_int64((int64_t)v->alt_rip));
        json_object_array_add(evs, e);
    }
    pthread_mutex_unlock(&d->lock);
    return evs;
}

int altp2m_monitor_answer(struct domain *d, unsigned vcpu, enum altp2m_answer ans,
                          unsigned view)
{
    if (vcpu >= d->nr_vcpus)
        return -EINVAL;
    pthread_mutex_lock(&d->lock);
    struct vcpu *v = &d->vcpus[vcpu];
    int rc = v->alt_waiting && v->alt_answer == ALTP2M_ANSWER_NONE ? 0 : -ESRCH;
    if (!rc && ans != ALTP2M_ANSWER_NONE) {
        v->alt_answer = ans;
        v->alt_switch_to = view;
        pthread_cond_broadcast(&d->cond);
    }
    d->altp2m_lease_until_ns = mono_ns() + ALTP2M_MONITOR_LEASE_NS;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void altp2m_monitor_detach(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    d->altp2m_lease_until_ns = 0;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}
