/*
 * shared_info and vcpu_info: the Xen-owned shared_info frame (present from domain
 * creation, mapped by the guest with XENMAPSPACE_shared_info), where each vCPU's
 * vcpu_info lives (the legacy slot, or a gfn + offset the guest registered), the
 * wall clock, and each vCPU's vcpu_time_info.
 *
 * Xen system time is the VM's KVM clock (KVM_GET_CLOCK, ns). vcpu_time_info pairs a
 * reading of it with the guest's TSC at the same instant, scaled by the guest's TSC
 * rate (d->tsc_khz). XEN_PVCLOCK_TSC_STABLE_BIT is set while KVM says its clock runs
 * off a stable host TSC (KVM_CLOCK_TSC_STABLE): every vCPU's copy then agrees, and
 * Linux may use it from its vDSO through the secondary copy the guest registered
 * (VCPUOP_register_vcpu_time_memory_area), which is written along with this one.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <x86intrin.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/vcpu.h"
#include "util/log.h"

#define MSR_IA32_TSC 0x10

uint64_t xen_system_time(struct domain *d)
{
    struct kvm_clock_data c = { 0 };
    if (ioctl(d->vm_fd, KVM_GET_CLOCK, &c) < 0)
        return 0;
    return c.clock;
}

void shared_info_update_wallclock(struct domain *d)
{
    struct shared_info *si = d->ev->shared_info;
    uint64_t sys = xen_system_time(d);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t boot = now > sys ? now - sys : 0;    /* wall time at system time 0 */
    uint64_t sec = boot / 1000000000ull;
    __atomic_store_n(&si->wc_version, si->wc_version + 1, __ATOMIC_RELEASE);   /* odd */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    si->wc_sec = (uint32_t)sec;
    si->wc_sec_hi = (uint32_t)(sec >> 32);
    si->wc_nsec = (uint32_t)(boot % 1000000000ull);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&si->wc_version, si->wc_version + 1, __ATOMIC_RELEASE);   /* even */
}

int shared_info_init(struct domain *d)
{
    struct event_domain *ev = d->ev;
    uint64_t mfn;
    if (mm_alloc_run(host_mm(), 1, d->domid, FRAME_SHARED_INFO, &mfn) != 1)
        return -ENOMEM;
    ev->shared_info_mfn = mfn;
    ev->shared_info_gfn = INVALID_GFN;
    ev->shared_info = mm_frame_ptr(host_mm(), mfn);
    memset(ev->shared_info, 0, XKVM_PAGE_SIZE);
    shared_info_update_wallclock(d);
    return 0;
}

int shared_info_map(struct domain *d, uint64_t gfn)
{
    struct event_domain *ev = d->ev;
    if (!ev)
        return -EINVAL;
    pthread_mutex_lock(&ev->lock);
    int rc = physmap_place(d, gfn, ev->shared_info_mfn, ev->shared_info_gfn);
    if (!rc) {
        ev->shared_info_gfn = gfn;
        log_guest(d, "d%u: shared_info at gfn %#llx", d->domid, (unsigned long long)gfn);
    }
    pthread_mutex_unlock(&ev->lock);
    if (!rc)
        shared_info_update_wallclock(d);
    return rc;
}

void shared_info_vcpu_init(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    e->vcpu_info_gfn = INVALID_GFN;
    e->vcpu_info_mfn = INVALID_MFN;
    e->vcpu_info = v->id < XEN_LEGACY_MAX_VCPUS ? &v->d->ev->shared_info->vcpu_info[v->id]
                                                : NULL;
}

void shared_info_vcpu_fini(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (e->vcpu_info_mfn != INVALID_MFN)
        mm_frame_put(host_mm(), e->vcpu_info_mfn);
    e->vcpu_info_mfn = INVALID_MFN;
    e->vcpu_info = NULL;
}

int vcpu_info_register(struct vcpu *v, uint64_t gfn, uint32_t offset)
{
    struct vcpu_event *e = v->ev;
    struct domain *d = v->d;
    /* Aligned, so that our atomic updates never straddle a cache line. */
    if (offset > XKVM_PAGE_SIZE - sizeof(struct vcpu_info) || (offset & 7))
        return -EINVAL;
    if (e->vcpu_info_gfn != INVALID_GFN)
        return -EINVAL;     /* only once, as on Xen */
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    unsigned types = (1u << FRAME_RAM) | (1u << FRAME_SHARED_INFO) | (1u << FRAME_GRANT) |
                     (1u << FRAME_SPECIAL);
    if (mfn == INVALID_MFN || mm_frame_get(host_mm(), mfn, d->domid, types))
        return -EINVAL;
    /* Through the frame, not the gfn: the guest may remap the gfn, the frame stays. */
    struct vcpu_info *ni = (void *)((uint8_t *)mm_frame_ptr(host_mm(), mfn) + offset);
    struct vcpu_info *old = e->vcpu_info;
    if (old) {
        memmove(ni, old, sizeof(*ni));
    } else {
        memset(ni, 0, sizeof(*ni));
        ni->evtchn_upcall_mask = 1;
    }
    e->vcpu_info_gfn = gfn;
    e->vcpu_info_offset = offset;
    e->vcpu_info_mfn = mfn;
    __atomic_store_n(&e->vcpu_info, ni, __ATOMIC_RELEASE);
    /* Everything pending, so nothing is lost in the move (spurious events are fine). */
    __atomic_store_n(&ni->evtchn_pending_sel, ~(xen_ulong_t)0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&e->time_dirty, true, __ATOMIC_RELEASE);
    upcall_mark_pending(v);
    return 0;
}

int vcpu_info_restore(struct vcpu *v, uint64_t gfn, uint32_t offset)
{
    struct vcpu_event *e = v->ev;
    struct domain *d = v->d;
    if (offset > XKVM_PAGE_SIZE - sizeof(struct vcpu_info) || (offset & 7) ||
        e->vcpu_info_gfn != INVALID_GFN)
        return -EINVAL;
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    unsigned types = (1u << FRAME_RAM) | (1u << FRAME_SHARED_INFO) | (1u << FRAME_GRANT) |
                     (1u << FRAME_SPECIAL);
    if (mfn == INVALID_MFN || mm_frame_get(host_mm(), mfn, d->domid, types))
        return -EINVAL;
    e->vcpu_info_gfn = gfn;
    e->vcpu_info_offset = offset;
    e->vcpu_info_mfn = mfn;
    __atomic_store_n(&e->vcpu_info,
                     (struct vcpu_info *)((uint8_t *)mm_frame_ptr(host_mm(), mfn) + offset),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&e->time_dirty, true, __ATOMIC_RELEASE);
    return 0;
}

/* tsc_to_system_mul and tsc_shift for a TSC rate: ns = (tsc << shift) * mul >> 32. */
static void tsc_scale(uint32_t tsc_khz, uint32_t *mul, int8_t *shift)
{
    uint64_t khz = tsc_khz ? tsc_khz : 1000000;
    uint64_t m = (1000000ull << 32) / khz;
    int s = 0;
    while (m >= (1ull << 32)) {
        m >>= 1;
        s++;
    }
    while (m < (1ull << 31)) {
        m <<= 1;
        s--;
    }
    *mul = (uint32_t)m;
    *shift = (int8_t)s;
}

/* The secondary copy, with the same version protocol, through v's page tables. */
static void time_area_write(struct vcpu *v, const struct vcpu_time_info *t)
{
    uint64_t gva = __atomic_load_n(&v->ev->time_area_gva, __ATOMIC_ACQUIRE);
    struct guest_paging pg;
    if (!gva || vcpu_get_paging(v, &pg))
        return;
    struct gphys g = p2m_gphys(&v->d->p2m);
    struct vcpu_time_info copy = *t;
    copy.version = t->version | 1;      /* odd while it changes */
    /* As on Xen, an area the guest unmapped is silently not updated. */
    if (copy_to_guest(&g, &pg, gva, &copy.version, sizeof(copy.version)))
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    copy_to_guest(&g, &pg, gva, &copy, sizeof(copy));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    copy.version = (t->version | 1) + 1;
    copy_to_guest(&g, &pg, gva, &copy.version, sizeof(copy.version));
}

/*
 * Host TSC ticks as the guest's TSC counts them: the same where KVM does not scale
 * it, else in the ratio of the two rates (tsc_rate.c). For the microseconds between
 * two readings, so no overflow.
 */
static int64_t guest_ticks(const struct domain *d, int64_t host_ticks)
{
    if (!host.tsc_khz || !d->tsc_khz || d->tsc_khz == host.tsc_khz || !d->tsc_scaled)
        return host_ticks;
    return host_ticks * (int64_t)d->tsc_khz / (int64_t)host.tsc_khz;
}

/*
 * The guest's TSC at host TSC h: h plus KVM's own offset where KVM tells it
 * (KVM_VCPU_TSC_OFFSET, Linux 5.16) and does not scale; else estimated from a read of
 * the guest's TSC between two host readings. The estimate may be ahead of the guest's
 * TSC by up to half that read, which a guest without TSC_STABLE sees as a negative
 * delta: its clock leaps ~2^64 ticks ahead and stands there (seen in the nested VM).
 */
static uint64_t guest_tsc_at(struct vcpu *v, uint64_t h)
{
    uint64_t offset = 0;
    struct kvm_device_attr attr = { .group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET,
                                    .addr = (uint64_t)(uintptr_t)&offset };
    if (!v->d->tsc_scaled && ioctl(v->fd, KVM_GET_DEVICE_ATTR, &attr) == 0)
        return h + offset;
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    } msr;
    memset(&msr, 0, sizeof(msr));
    msr.hdr.nmsrs = 1;
    msr.hdr.entries[0].index = MSR_IA32_TSC;
    uint64_t h0 = __rdtsc();
    int n = ioctl(v->fd, KVM_GET_MSRS, &msr);
    uint64_t h1 = __rdtsc();
    uint64_t host_mid = h0 + (h1 - h0) / 2;
    uint64_t guest_tsc = n == 1 ? msr.hdr.entries[0].data : host_mid;
    return guest_tsc + (uint64_t)guest_ticks(v->d, (int64_t)(h - host_mid));
}

void vcpu_time_update(struct vcpu *v)
{
    struct vcpu_info *vi = vcpu_info_of(v);
    __atomic_store_n(&v->ev->time_dirty, false, __ATOMIC_RELEASE);
    if (!vi)
        return;
    /* The guest's TSC against the clock at one instant, on this (the vCPU's own) thread. */
    struct kvm_clock_data c = { 0 };
    uint64_t c0 = __rdtsc();
    if (ioctl(v->d->vm_fd, KVM_GET_CLOCK, &c) < 0)
        return;
    uint64_t c1 = __rdtsc();
    uint64_t host_tsc = (c.flags & KVM_CLOCK_HOST_TSC) ? c.host_tsc : c0 + (c1 - c0) / 2;
    uint64_t tsc_timestamp = guest_tsc_at(v, host_tsc);

    uint32_t mul;
    int8_t shift;
    tsc_scale(v->d->tsc_khz, &mul, &shift);
    struct vcpu_time_info *t = &vi->time;
    uint32_t odd = (__atomic_load_n(&t->version, __ATOMIC_RELAXED) + 1) | 1;
    __atomic_store_n(&t->version, odd, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    t->tsc_timestamp = tsc_timestamp;
    t->system_time = c.clock;
    t->tsc_to_system_mul = mul;
    t->tsc_shift = shift;
    t->flags = (c.flags & KVM_CLOCK_TSC_STABLE) ? XEN_PVCLOCK_TSC_STABLE_BIT : 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&t->version, odd + 1, __ATOMIC_RELEASE);
    time_area_write(v, t);
}
