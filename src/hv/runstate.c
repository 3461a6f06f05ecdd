/*
 * vCPU runstate (VCPUOP_get_runstate_info, VCPUOP_register_runstate_memory_area): the
 * time each vCPU has spent running, runnable, blocked and offline, in Xen system time.
 * Linux registers a runstate area on every vCPU at boot and gives up if it cannot.
 *
 * xkvmd does not see the time a vCPU spends halted inside KVM, so a vCPU that is up is
 * accounted as running and one that is down as offline; runnable and blocked stay 0
 * (no steal time is reported). The area is a guest-linear address, as on Xen for HVM
 * guests, written through the vCPU's own page tables on its own thread. With
 * vm_assist(VMASST_TYPE_runstate_update_flag) on, XEN_RUNSTATE_UPDATE is set in
 * state_entry_time while the area changes, as Xen does, so a reader on another vCPU
 * can tell a torn copy.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <xen/vcpu.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hypercall.h"
#include "hv/vcpu.h"

/* Bring the accounting up to `now` (ev->lock held). */
void runstate_account(struct vcpu *v, uint64_t now)
{
    struct vcpu_event *e = v->ev;
    struct vcpu_runstate_info *rs = &e->runstate;
    int state = e->up && !e->down_requested ? RUNSTATE_running : RUNSTATE_offline;
    if (e->runstate_since == 0) {
        rs->state = state;
        rs->state_entry_time = now;
        e->runstate_since = now;
        return;
    }
    if (now > e->runstate_since)
        rs->time[rs->state] += now - e->runstate_since;
    e->runstate_since = now;
    if (state != rs->state) {
        rs->state = state;
        rs->state_entry_time = now;
    }
}

/* The 32-bit ABI packs the struct: no padding after `state`. */
static size_t runstate_layout(const struct vcpu_runstate_info *rs, bool is64, uint8_t *out)
{
    if (is64) {
        memcpy(out, rs, sizeof(*rs));
        return sizeof(*rs);
    }
    uint32_t state = (uint32_t)rs->state;
    memcpy(out, &state, 4);
    memcpy(out + 4, &rs->state_entry_time, 8);
    memcpy(out + 12, rs->time, sizeof(rs->time));
    return 12 + sizeof(rs->time);
}

static int runstate_copy_out(struct vcpu *v, const struct gphys *g,
                             const struct guest_paging *pg, bool is64, uint64_t gva)
{
    struct domain *d = v->d;
    uint8_t buf[sizeof(struct vcpu_runstate_info)];
    pthread_mutex_lock(&d->ev->lock);
    runstate_account(v, xen_system_time(d));
    size_t n = runstate_layout(&v->ev->runstate, is64, buf);
    pthread_mutex_unlock(&d->ev->lock);
    if (!(__atomic_load_n(&d->vm_assist, __ATOMIC_ACQUIRE) &
          (1u << VMASST_TYPE_runstate_update_flag)))
        return copy_to_guest(g, pg, gva, buf, n);
    size_t at = is64 ? offsetof(struct vcpu_runstate_info, state_entry_time) : 4;
    uint64_t entry;
    memcpy(&entry, buf + at, sizeof(entry));
    uint64_t updating = entry | XEN_RUNSTATE_UPDATE;
    memcpy(buf + at, &updating, sizeof(updating));
    int rc = copy_to_guest(g, pg, gva + at, &updating, sizeof(updating));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!rc)
        rc = copy_to_guest(g, pg, gva, buf, n);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!rc)
        rc = copy_to_guest(g, pg, gva + at, &entry, sizeof(entry));
    return rc;
}

void runstate_update_area(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    uint64_t gva = __atomic_load_n(&e->runstate_gva, __ATOMIC_ACQUIRE);
    if (!gva)
        return;
    struct guest_paging pg;
    if (vcpu_get_paging(v, &pg))
        return;
    struct gphys g = p2m_gphys(&v->d->p2m);
    bool is64 = (pg.efer & (1ULL << 10)) != 0;   /* the area's layout follows the ABI */
    /* As on Xen, an area the guest unmapped is silently not updated. */
    runstate_copy_out(v, &g, &pg, is64, gva);
}

long vcpu_register_runstate(struct hcall *hc, struct vcpu *v, uint64_t arg)
{
    struct vcpu_register_runstate_memory_area area;
    if (hc_copy_from(hc, &area, arg, sizeof(area)))
        return -EFAULT;
    uint64_t gva = hc->is64 ? area.addr.p : (uint32_t)area.addr.p;
    __atomic_store_n(&v->ev->runstate_gva, gva, __ATOMIC_RELEASE);
    if (gva && v == hc->v)
        runstate_copy_out(v, &hc->gphys, &hc->paging, hc->is64, gva);
    else if (gva)
        __atomic_store_n(&v->ev->time_dirty, true, __ATOMIC_RELEASE);
    return 0;
}

long vcpu_get_runstate(struct hcall *hc, struct vcpu *v, uint64_t arg)
{
    return runstate_copy_out(v, &hc->gphys, &hc->paging, hc->is64, arg) ? -EFAULT : 0;
}
