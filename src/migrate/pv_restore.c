/* Apply a domain context image to a domain being restored: see pv_restore.h. */
#include "migrate/pv_restore.h"
#include "migrate/pv_altp2m.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <xen/grant_table.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/vcpu.h"
#include "xkvm/ctx.h"

/* A FIFO record's gfns must be in the domain's address space. */
static int fifo_check(struct domain *d, const struct xkvm_ctx_record *rec, char *err,
                      size_t errlen)
{
    const struct xkvm_ctx_evtchn_fifo_array *a = xkvm_ctx_get_evtchn_fifo_array(rec);
    const struct xkvm_ctx_evtchn_fifo_vcpu *v = xkvm_ctx_get_evtchn_fifo_vcpu(rec);
    for (uint32_t i = 0; a && i < a->nr_pages; i++)
        if (a->page_gfn[i] >= d->p2m.nr_gfns) {
            snprintf(err, errlen, "FIFO event array page %u at gfn %#llx, beyond the "
                     "address space", i, (unsigned long long)a->page_gfn[i]);
            return -1;
        }
    if (v && v->control_gfn >= d->p2m.nr_gfns) {
        snprintf(err, errlen, "v%u's FIFO control block at gfn %#llx, beyond the address "
                 "space", rec->instance, (unsigned long long)v->control_gfn);
        return -1;
    }
    return 0;
}

int pv_restore_check(struct domain *d, const void *img, size_t len, char *err, size_t errlen)
{
    struct xkvm_ctx_error cerr;
    if (xkvm_ctx_check_image(img, len, NULL, NULL, &cerr)) {
        snprintf(err, errlen, "domain context: %s", cerr.msg);
        return -EINVAL;
    }
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    bool have_domain = false, have_time = false;
    while (xkvm_ctx_next(&r, &rec) > 0) {
        const struct xkvm_ctx_domain *dom = xkvm_ctx_get_domain(&rec);
        const struct xkvm_ctx_gnttab *gt = xkvm_ctx_get_gnttab(&rec);
        const struct xkvm_ctx_evtchn_abi *abi = xkvm_ctx_get_evtchn_abi(&rec);
        if (dom) {
            have_domain = true;
            if (dom->domid != d->domid || dom->nr_vcpus != d->nr_vcpus) {
                snprintf(err, errlen, "domain context is of d%u with %u vCPUs, restoring "
                         "d%u with %u", dom->domid, dom->nr_vcpus, d->domid, d->nr_vcpus);
                return -EINVAL;
            }
        } else if (gt) {
            if ((gt->version != 1 && gt->version != 2) || gt->nr_frames > GNTTAB_MAX_FRAMES) {
                snprintf(err, errlen, "grant table v%u with %u frames: this host takes v1 "
                         "or v2 with up to %u", gt->version, gt->nr_frames, GNTTAB_MAX_FRAMES);
                return -EINVAL;
            }
            uint32_t nr_gfns = gt->nr_frames +
                (gt->version == 2 ? XKVM_CTX_GNTTAB_STATUS_FRAMES(gt->nr_frames) : 0);
            for (uint32_t i = 0; i < nr_gfns; i++)
                if (gt->frame_gfn[i] != XKVM_CTX_GFN_NONE && gt->frame_gfn[i] >= d->p2m.nr_gfns) {
                    snprintf(err, errlen, "grant frame %u at gfn %#llx, beyond the domain's "
                             "address space", i, (unsigned long long)gt->frame_gfn[i]);
                    return -EINVAL;
                }
        } else if (abi && abi->abi != XKVM_CTX_EVTCHN_ABI_2L &&
                   abi->abi != XKVM_CTX_EVTCHN_ABI_FIFO) {
            snprintf(err, errlen, "event channel ABI %u is not supported", abi->abi);
            return -EINVAL;
        } else if (fifo_check(d, &rec, err, errlen)) {
            return -EINVAL;
        } else if (rec.type == XKVM_CTX_SHARED_INFO_GFN) {
            uint64_t g = xkvm_ctx_get_shared_info_gfn(&rec)->gfn;
            if (g != XKVM_CTX_GFN_NONE && g >= d->p2m.nr_gfns) {
                snprintf(err, errlen, "shared_info at gfn %#llx, beyond the address space",
                         (unsigned long long)g);
                return -EINVAL;
            }
        } else if (rec.type == XKVM_CTX_TIME) {
            have_time = true;
        } else if (rec.type == XKVM_CTX_HYPERCALL &&
                   (xkvm_ctx_get_hypercall(&rec)->flags & XKVM_CTX_HYPERCALL_VMCALL) &&
                   host.transport != HCALL_TRANSPORT_INTERCEPT) {
            snprintf(err, errlen, "the guest issues VMCALL hypercalls; this host's KVM (%s) "
                     "cannot intercept them%s", host.kvm_module, host.transport_port_io_only ?
                     " (xkvmd --hypercall-transport port-io)" : "");
            return -EOPNOTSUPP;
        } else if (rec.type == XKVM_CTX_SHARED_INFO &&
                   (xkvm_ctx_get_shared_info(&rec)->flags & XKVM_CTX_SHARED_INFO_HAS_32BIT_LAYOUT)) {
            snprintf(err, errlen, "a 32-bit guest's shared_info layout is not supported");
            return -EINVAL;
        }
    }
    if (!have_domain || !have_time) {
        snprintf(err, errlen, "domain context lacks its %s record",
                 have_domain ? "TIME" : "DOMAIN");
        return -EINVAL;
    }
    return 0;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The VM's clock (Xen system time) continues where the image left it. */
static int restore_time(struct domain *d, const struct xkvm_ctx_time *t, uint64_t *advance,
                        char *err, size_t errlen)
{
    uint64_t now = realtime_ns();
    *advance = now > t->wallclock_ns ? now - t->wallclock_ns : 0;
    struct kvm_clock_data c = { .clock = t->system_time_ns + *advance };
    if (ioctl(d->vm_fd, KVM_SET_CLOCK, &c) < 0) {
        snprintf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

/* v2: the status frames (zeroed) at the gfns the guest had them. */
static int restore_status_frames(struct domain *d, const struct xkvm_ctx_gnttab *gt,
                                 char *err, size_t errlen)
{
    uint32_t nr_status = gt->version == 2 ? XKVM_CTX_GNTTAB_STATUS_FRAMES(gt->nr_frames) : 0;
    if (gnttab_nr_status_frames(d) != nr_status) {
        snprintf(err, errlen, "grant table v2: %u status frames, %u expected",
                 gnttab_nr_status_frames(d), nr_status);
        return -EINVAL;
    }
    for (uint32_t j = 0; j < nr_status; j++) {
        uint64_t gfn = gt->frame_gfn[gt->nr_frames + j], mfn = gnttab_status_mfn(d, j);
        if (gfn == XKVM_CTX_GFN_NONE)
            continue;
        int rc = mfn == INVALID_MFN ? -EINVAL : physmap_place(d, gfn, mfn, INVALID_GFN);
        if (rc) {
            snprintf(err, errlen, "placing grant status frame %u at gfn %#llx: %s", j,
                     (unsigned long long)gfn, strerror(-rc));
            return rc;
        }
        gnttab_status_placed(d, j, gfn);
    }
    return 0;
}

static int restore_gnttab(struct domain *d, const struct xkvm_ctx_gnttab *gt,
                          const struct xkvm_ctx_gnttab_frame **frames, char *err, size_t errlen)
{
    int rc = gnttab_restore_version(d, gt->version);
    if (!rc)
        rc = gnttab_grow(d, gt->nr_frames);
    if (rc) {
        snprintf(err, errlen, "growing the grant table to %u frames", gt->nr_frames);
        return rc;
    }
    for (uint32_t i = 0; i < gt->nr_frames; i++) {
        uint64_t mfn = gnttab_frame_mfn(d, i);
        if (mfn == INVALID_MFN || !frames[i]) {
            snprintf(err, errlen, "grant frame %u", i);
            return -EINVAL;
        }
        grant_entry_v1_t *e = mm_frame_ptr(host_mm(), mfn);
        memcpy(e, frames[i]->data, XKVM_CTX_PAGE_SIZE);
        /*
         * Nothing has the grants pinned here: mappings and copies stayed behind. (v2
         * keeps these bits in the status frames, which start zeroed.)
         */
        for (unsigned k = 0; gt->version == 1 && k < GNTTAB_ENTRIES_PER_FRAME; k++)
            e[k].flags &= (uint16_t)~(GTF_reading | GTF_writing);
        uint64_t gfn = gt->frame_gfn[i];
        if (gfn == XKVM_CTX_GFN_NONE)
            continue;
        if ((rc = physmap_place(d, gfn, mfn, INVALID_GFN))) {
            snprintf(err, errlen, "placing grant frame %u at gfn %#llx: %s", i,
                     (unsigned long long)gfn, strerror(-rc));
            return rc;
        }
        gnttab_frame_placed(d, i, gfn);
    }
    return restore_status_frames(d, gt, err, errlen);
}

/*
 * The FIFO ABI, before any port (seed 003): array pages, control blocks with their
 * queue tails, held ports (ev->lock held). The words are in the guest's RAM, already
 * restored; the frames are held again as EVTCHNOP_init_control/expand_array hold them.
 */
static int restore_fifo(struct domain *d, const void *img, size_t len, char *err,
                        size_t errlen)
{
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    int rc = 0;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (!rc && xkvm_ctx_next(&r, &rec) > 0) {
        const struct xkvm_ctx_evtchn_fifo_array *a = xkvm_ctx_get_evtchn_fifo_array(&rec);
        const struct xkvm_ctx_evtchn_fifo_vcpu *v = xkvm_ctx_get_evtchn_fifo_vcpu(&rec);
        const struct xkvm_ctx_evtchn_fifo_held *h = xkvm_ctx_get_evtchn_fifo_held(&rec);
        for (uint32_t i = 0; a && !rc && i < a->nr_pages; i++)
            if ((rc = evtchn_fifo_restore_page(d, a->page_gfn[i])))
                snprintf(err, errlen, "FIFO event array page %u at gfn %#llx: not the "
                         "domain's RAM", i, (unsigned long long)a->page_gfn[i]);
        if (v && rec.instance < d->nr_vcpus &&
            (rc = evtchn_fifo_restore_vcpu(&d->vcpus[rec.instance], v->control_gfn,
                                           v->offset, v->tail)))
            snprintf(err, errlen, "v%u: FIFO control block at gfn %#llx + %u: not the "
                     "domain's RAM", rec.instance, (unsigned long long)v->control_gfn,
                     v->offset);
        for (uint32_t i = 0; h && i < h->nr_ports; i++)
            if (h->port[i] < EVTCHN_NR_PORTS)
                d->ev->ports[h->port[i]].fifo_held = true;
    }
    return rc;
}

/* One port (ev->lock held). */
static void restore_port(struct domain *d, uint32_t port, const struct xkvm_ctx_evtchn_port *p)
{
    struct event_domain *ev = d->ev;
    struct evtchn *ch = &ev->ports[port];
    ch->notify_vcpu = p->notify_vcpu < d->nr_vcpus ? p->notify_vcpu : 0;
    ch->priority = p->priority;
    switch (p->state) {
    case XKVM_CTX_EVTCHN_STATE_UNBOUND:
        ch->state = ECS_UNBOUND;
        ch->remote_domid = p->remote_domid;
        break;
    case XKVM_CTX_EVTCHN_STATE_INTERDOMAIN:
        /*
         * The peer did not come along: a dom0 service re-binds its port (as after a
         * restart of the service); a guest peer may bind it again.
         */
        ch->state = ECS_UNBOUND;
        ch->remote_domid = p->remote_domid;
        break;
    case XKVM_CTX_EVTCHN_STATE_VIRQ: {
        ch->state = ECS_VIRQ;
        ch->virq = p->virq;
        unsigned owner = evtchn_virq_is_global(p->virq) ? 0 : ch->notify_vcpu;
        if (p->virq < NR_VIRQS)
            d->vcpus[owner].ev->virq_port[p->virq] = port;
        break;
    }
    case XKVM_CTX_EVTCHN_STATE_IPI:
        ch->state = ECS_IPI;
        break;
    }
    while (ev->valid_ports <= port)
        ev->valid_ports += EVTCHN_BUCKET;
}

/*
 * A vCPU's KVM mp_state and time area. One that waited for INIT/SIPI waits again (a
 * fresh vCPU other than the first is UNINITIALIZED already; INIT_RECEIVED must be
 * set, or the SIPI to come would be ignored); one that runs or halted runs (HALTED
 * comes back runnable, as with VCPU_STATE).
 */
static int restore_vcpu_platform(struct vcpu *v, const struct xkvm_ctx_vcpu_platform *p,
                                 char *err, size_t errlen)
{
    __atomic_store_n(&v->ev->time_area_gva, p->time_area, __ATOMIC_RELEASE);
    v->restore_intr_state = p->intr_state;     /* for arch_restore_domain, which follows */
    struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
    if (p->mp_state == XKVM_CTX_MP_UNINITIALIZED)
        mp.mp_state = KVM_MP_STATE_UNINITIALIZED;
    else if (p->mp_state == XKVM_CTX_MP_INIT_RECEIVED)
        mp.mp_state = KVM_MP_STATE_INIT_RECEIVED;
    if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED && v->id != 0)
        return 0;
    if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
        int rc = -errno;
        snprintf(err, errlen, "v%u: KVM_SET_MP_STATE %u: %s", v->id, mp.mp_state,
                 strerror(errno));
        return rc;
    }
    return 0;
}

int pv_restore_context(struct domain *d, const void *img, size_t len, uint64_t *advance_ns,
                       char *err, size_t errlen)
{
    struct event_domain *ev = d->ev;
    const struct xkvm_ctx_time *time = NULL;
    const struct xkvm_ctx_shared_info *si = NULL;
    uint64_t si_gfn = XKVM_CTX_GFN_NONE;
    const struct xkvm_ctx_gnttab *gt = NULL;
    const struct xkvm_ctx_gnttab_frame *frames[GNTTAB_MAX_FRAMES] = { 0 };
    const struct xkvm_ctx_hvm_params *params = NULL;
    uint32_t tsc_khz = 0;       /* absent (older images): this host's rate */
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;

    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        switch (rec.type) {
        case XKVM_CTX_TIME: time = xkvm_ctx_get_time(&rec); break;
        case XKVM_CTX_SHARED_INFO: si = xkvm_ctx_get_shared_info(&rec); break;
        case XKVM_CTX_SHARED_INFO_GFN: si_gfn = xkvm_ctx_get_shared_info_gfn(&rec)->gfn; break;
        case XKVM_CTX_GNTTAB: gt = xkvm_ctx_get_gnttab(&rec); break;
        case XKVM_CTX_GNTTAB_FRAME:
            if (rec.instance < GNTTAB_MAX_FRAMES)
                frames[rec.instance] = xkvm_ctx_get_gnttab_frame(&rec);
            break;
        case XKVM_CTX_HVM_PARAMS: params = xkvm_ctx_get_hvm_params(&rec); break;
        case XKVM_CTX_TSC_INFO: tsc_khz = xkvm_ctx_get_tsc_info(&rec)->khz; break;
        case XKVM_CTX_VM_ASSIST:
            __atomic_store_n(&d->vm_assist, xkvm_ctx_get_vm_assist(&rec)->types,
                             __ATOMIC_RELEASE);
            break;
        case XKVM_CTX_HYPERCALL:
            if (xkvm_ctx_get_hypercall(&rec)->flags & XKVM_CTX_HYPERCALL_VMCALL)
                __atomic_store_n(&d->guest_vmcall, true, __ATOMIC_RELAXED);
            break;
        default: break;
        }
    }
    int rc = domain_set_tsc_khz(d, tsc_khz, err, errlen);
    if (rc)
        return rc;
    rc = restore_time(d, time, advance_ns, err, errlen);
    if (rc)
        return rc;
    if (si) {
        /* buffer_size was checked against the record's length: copy what is there. */
        uint32_t n = si->buffer_size < XKVM_CTX_PAGE_SIZE ? si->buffer_size : XKVM_CTX_PAGE_SIZE;
        pthread_mutex_lock(&ev->lock);
        memcpy(ev->shared_info, si->buffer, n);
        memset((uint8_t *)ev->shared_info + n, 0, XKVM_CTX_PAGE_SIZE - n);
        pthread_mutex_unlock(&ev->lock);
    }
    if (si_gfn != XKVM_CTX_GFN_NONE && (rc = shared_info_map(d, si_gfn))) {
        snprintf(err, errlen, "mapping shared_info at gfn %#llx: %s",
                 (unsigned long long)si_gfn, strerror(-rc));
        return rc;
    }
    shared_info_update_wallclock(d);
    if (gt && (rc = restore_gnttab(d, gt, frames, err, errlen)))
        return rc;
    for (uint32_t i = 0; params && i < params->count; i++)
        if (params->params[i].index < HVM_NR_PARAMS)
            d->hvm_params[params->params[i].index] = params->params[i].value;

    /* Ports and per-vCPU state, in a second pass now that the frames are in place. */
    uint64_t now_sys = time->system_time_ns + *advance_ns;
    pthread_mutex_lock(&ev->lock);
    rc = restore_fifo(d, img, len, err, errlen);
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (!rc && xkvm_ctx_next(&r, &rec) > 0) {
        struct vcpu *v = rec.instance < d->nr_vcpus ? &d->vcpus[rec.instance] : NULL;
        struct vcpu_event *e = v ? v->ev : NULL;
        switch (rec.type) {
        case XKVM_CTX_EVTCHN_PORT:
            if (rec.instance > 0 && rec.instance < EVTCHN_NR_PORTS)
                restore_port(d, rec.instance, xkvm_ctx_get_evtchn_port(&rec));
            break;
        case XKVM_CTX_VCPU_STATE: {
            uint32_t f = xkvm_ctx_get_vcpu_state(&rec)->flags;
            e->initialised = f & XKVM_CTX_VCPU_INITIALISED;
            e->up = f & XKVM_CTX_VCPU_UP;
            /*
             * KVM starts every vCPU but the first waiting for INIT/SIPI; one that runs
             * must be runnable (VCPUOP_up does the same).
             */
            struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
            if (e->up && ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
                rc = -errno;
                snprintf(err, errlen, "v%u: KVM_SET_MP_STATE: %s", v->id, strerror(errno));
            }
            /* HALTED comes back runnable: a spurious wake-up from HLT or
             * SCHEDOP_block, which both allow (the guest re-checks and waits again). */
            break;
        }
        case XKVM_CTX_VCPU_INFO: {
            const struct xkvm_ctx_vcpu_info *vi = xkvm_ctx_get_vcpu_info(&rec);
            if (vi->placement == XKVM_CTX_VCPU_INFO_REGISTERED &&
                (rc = vcpu_info_restore(v, vi->gfn, vi->offset)))
                snprintf(err, errlen, "v%u: vcpu_info at gfn %#llx offset %u is not in "
                         "the domain's memory", v->id, (unsigned long long)vi->gfn, vi->offset);
            break;
        }
        case XKVM_CTX_UPCALL:
            e->upcall_vector = (uint8_t)xkvm_ctx_get_upcall(&rec)->vector;
            break;
        case XKVM_CTX_RUNSTATE: {
            const struct xkvm_ctx_runstate *rs = xkvm_ctx_get_runstate(&rec);
            e->runstate.state = (int)rs->state;
            e->runstate.state_entry_time = rs->state_entry_time;
            memcpy(e->runstate.time, rs->time, sizeof(rs->time));
            e->runstate_since = now_sys;        /* accounting goes on from here */
            __atomic_store_n(&e->runstate_gva, rs->area, __ATOMIC_RELEASE);
            break;
        }
        case XKVM_CTX_VCPU_PLATFORM:
            rc = restore_vcpu_platform(v, xkvm_ctx_get_vcpu_platform(&rec), err, errlen);
            break;
        case XKVM_CTX_TIMER: {
            const struct xkvm_ctx_timer *t = xkvm_ctx_get_timer(&rec);
            e->singleshot_deadline = t->singleshot_deadline;
            e->periodic_period = t->periodic_period;
            e->periodic_next = t->periodic_period ? now_sys + t->periodic_period : 0;
            vcpu_timer_rearm(v);
            break;
        }
        default:
            break;
        }
    }
    pthread_mutex_unlock(&ev->lock);
    if (!rc)
        rc = pv_restore_altp2m(d, img, len, err, errlen);
    return rc;
}

void pv_restore_kick_events(struct domain *d)
{
    struct event_domain *ev = d->ev;
    pthread_mutex_lock(&ev->lock);
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu *v = &d->vcpus[i];
        struct vcpu_info *vi = vcpu_info_of(v);
        __atomic_store_n(&v->ev->time_dirty, true, __ATOMIC_RELEASE);
        if (!vi)
            continue;
        __atomic_store_n(&vi->evtchn_pending_sel, ~(xen_ulong_t)0, __ATOMIC_SEQ_CST);
        upcall_mark_pending(v);
    }
    pthread_mutex_unlock(&ev->lock);
}

void pv_restore_raise_dom0_ports(struct domain *d)
{
    struct event_domain *ev = d->ev;
    pthread_mutex_lock(&ev->lock);
    for (uint32_t p = 1; p < EVTCHN_NR_PORTS; p++)
        if (ev->ports[p].state == ECS_UNBOUND && ev->ports[p].remote_domid == 0)
            evtchn_set_pending_locked(d, p);
    pthread_mutex_unlock(&ev->lock);
}
