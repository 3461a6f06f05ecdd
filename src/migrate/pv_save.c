/* Encode a paused domain's PV state as a domain context image (the save half). */
#include "migrate/pv_save.h"
#include "migrate/pv_altp2m.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/vcpu.h"
#include "migrate/arch_state.h"
#include "migrate/migrate.h"
#include "xkvm/ctx.h"

static uint8_t port_state(uint8_t s)
{
    switch (s) {
    case ECS_UNBOUND:     return XKVM_CTX_EVTCHN_STATE_UNBOUND;
    case ECS_INTERDOMAIN: return XKVM_CTX_EVTCHN_STATE_INTERDOMAIN;
    case ECS_VIRQ:        return XKVM_CTX_EVTCHN_STATE_VIRQ;
    case ECS_IPI:         return XKVM_CTX_EVTCHN_STATE_IPI;
    default:              return 0;     /* free, reserved: no record */
    }
}

static uint64_t gfn_or_none(uint64_t gfn)
{
    return gfn == INVALID_GFN ? XKVM_CTX_GFN_NONE : gfn;
}

/* shared_info's contents and place (ev->lock held: raising a port writes the page). */
static void write_shared_info(struct domain *d, struct xkvm_ctx_writer *w)
{
    struct event_domain *ev = d->ev;
    xkvm_ctx_write_shared_info(w, 0, ev->shared_info, XKVM_CTX_PAGE_SIZE);
    xkvm_ctx_write_shared_info_gfn(w, gfn_or_none(ev->shared_info_gfn));
}

/* EVTCHN_ABI and one EVTCHN_PORT per port that is not free (ev->lock held). */
static int write_ports(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen)
{
    struct event_domain *ev = d->ev;
    bool fifo = ev->abi == EVTCHN_ABI_FIFO;
    xkvm_ctx_write_evtchn_abi(w, fifo ? XKVM_CTX_EVTCHN_ABI_FIFO : XKVM_CTX_EVTCHN_ABI_2L);
    for (uint32_t p = 1; p < ev->valid_ports && p < EVTCHN_NR_PORTS; p++) {
        const struct evtchn *ch = &ev->ports[p];
        uint8_t st = port_state(ch->state);
        if (!st)
            continue;
        struct xkvm_ctx_evtchn_port rec = {
            .state = st,
            .priority = fifo ? ch->priority : XKVM_CTX_EVTCHN_PRIORITY_DEFAULT,
            .notify_vcpu = ch->notify_vcpu,
        };
        if (ch->state == ECS_UNBOUND) {
            /*
             * EVTCHNOP_alloc_unbound takes any remote_dom, as on Xen; one that is no
             * domain's id (DOMID_IO...) has no encoding in the record.
             */
            if (ch->remote_domid > XKVM_CTX_DOMID_MAX) {
                snprintf(err, errlen, "d%u: port %u is unbound for domid %#x, which an "
                         "image cannot hold (domids 0..%#x)", d->domid, p,
                         ch->remote_domid, XKVM_CTX_DOMID_MAX);
                return -EINVAL;
            }
            rec.remote_domid = ch->remote_domid;
        } else if (ch->state == ECS_INTERDOMAIN) {
            /* A dom0 service's port: interdomain to domid 0, as the guest sees it. */
            rec.remote_domid = ch->dom0_to_guest >= 0 ? 0 : ch->remote_domid;
            rec.remote_port = ch->remote_port;
        } else if (ch->state == ECS_VIRQ) {
            rec.virq = ch->virq;
        }
        xkvm_ctx_write_evtchn_port(w, p, &rec);
    }
    return 0;
}

/*
 * FIFO (ev->lock held): the array pages, each vCPU's control block and queue tails,
 * and the ports held pending for want of an event word. The words themselves are in
 * guest RAM and travel with it.
 */
static void write_fifo(struct domain *d, struct xkvm_ctx_writer *w)
{
    struct event_domain *ev = d->ev;
    if (ev->abi != EVTCHN_ABI_FIFO)
        return;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu_event *e = d->vcpus[i].ev;
        if (!e || !e->fifo_cb)
            continue;
        struct xkvm_ctx_evtchn_fifo_vcpu f = { .control_gfn = e->fifo_cb_gfn,
                                               .offset = e->fifo_cb_offset };
        memcpy(f.tail, e->fifo_tail, sizeof(f.tail));
        xkvm_ctx_write_evtchn_fifo_vcpu(w, i, &f);
    }
    xkvm_ctx_write_evtchn_fifo_array(w, ev->fifo_page_gfn, ev->fifo_nr_pages);
    uint32_t held[EVTCHN_NR_PORTS];
    uint32_t n = 0;
    for (uint32_t p = 1; p < ev->valid_ports && p < EVTCHN_NR_PORTS; p++)
        if (ev->ports[p].fifo_held && port_state(ev->ports[p].state))
            held[n++] = p;
    if (n)
        xkvm_ctx_write_evtchn_fifo_held(w, held, n);
}

static int write_gnttab(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen)
{
    unsigned nr = gnttab_nr_frames(d);
    if (nr == 0 || nr > XKVM_CTX_GNTTAB_MAX_FRAMES) {
        snprintf(err, errlen, "d%u: grant table has %u frames", d->domid, nr);
        return -EINVAL;
    }
    /* v2: the status frames' gfns follow the shared frames' (domain-context.md). */
    unsigned version = gnttab_version(d), nr_status = gnttab_nr_status_frames(d);
    if (version == 2 && nr_status != XKVM_CTX_GNTTAB_STATUS_FRAMES(nr)) {
        snprintf(err, errlen, "d%u: grant table v2 with %u frames has %u status frames",
                 d->domid, nr, nr_status);
        return -EINVAL;
    }
    uint64_t *gfns = calloc(nr + nr_status, sizeof(*gfns));
    if (!gfns) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < nr; i++)
        gfns[i] = gfn_or_none(gnttab_frame_gfn(d, i));
    for (unsigned j = 0; j < nr_status; j++)
        gfns[nr + j] = gfn_or_none(gnttab_status_gfn(d, j));
    xkvm_ctx_write_gnttab(w, version, gfns, nr);
    free(gfns);
    for (unsigned i = 0; i < nr; i++) {
        /* i < nr_frames: no growth, just the frame (the domain is paused). */
        uint64_t mfn = gnttab_frame_mfn(d, i);
        if (mfn == INVALID_MFN) {
            snprintf(err, errlen, "d%u: grant frame %u has no machine frame", d->domid, i);
            return -EIO;
        }
        xkvm_ctx_write_gnttab_frame(w, i, mm_frame_ptr(host_mm(), mfn));
    }
    return 0;
}

static void write_hvm_params(struct domain *d, struct xkvm_ctx_writer *w)
{
    struct xkvm_ctx_hvm_param params[XKVM_CTX_HVM_NR_PARAMS];
    xkvm_ctx_write_hvm_params(w, params, migrate_hvm_params(d, params));
}

/* KVM's mp_state in the image's numbering; a pending SIPI was applied by reading it. */
static uint32_t ctx_mp_state(int mp)
{
    switch (mp) {
    case KVM_MP_STATE_UNINITIALIZED: return XKVM_CTX_MP_UNINITIALIZED;
    case KVM_MP_STATE_INIT_RECEIVED: return XKVM_CTX_MP_INIT_RECEIVED;
    case KVM_MP_STATE_HALTED:        return XKVM_CTX_MP_HALTED;
    default:                         return XKVM_CTX_MP_RUNNABLE;
    }
}

/* One vCPU's records (ev->lock held). */
static void write_vcpu(struct domain *d, struct vcpu *v, struct xkvm_ctx_writer *w)
{
    struct vcpu_event *e = v->ev;
    uint32_t flags = 0;
    int mp = arch_vcpu_mp_state(v);
    uint32_t mp_state = ctx_mp_state(mp);
    if (e) {
        /* Halted in KVM: by SCHEDOP_block or by the guest's own HLT. */
        bool halted = mp == KVM_MP_STATE_HALTED;
        /*
         * Started through LAPIC INIT/SIPI and not yet seen by xkvmd (its code may
         * never have exited to user space): it runs, as if VCPUOP_up had started it.
         */
        bool started = mp >= 0 && (mp_state == XKVM_CTX_MP_RUNNABLE ||
                                    mp_state == XKVM_CTX_MP_HALTED);
        if (started && !e->initialised)
            flags |= XKVM_CTX_VCPU_INITIALISED | XKVM_CTX_VCPU_UP |
                     (halted ? XKVM_CTX_VCPU_HALTED : 0);
        if (e->initialised) {
            flags |= XKVM_CTX_VCPU_INITIALISED;
            if (e->up && !e->down_requested) {
                flags |= XKVM_CTX_VCPU_UP;
                if (halted)
                    flags |= XKVM_CTX_VCPU_HALTED;
            }
        }
    }
    xkvm_ctx_write_vcpu_state(w, v->id, flags);

    struct xkvm_ctx_vcpu_info vi = { .placement = XKVM_CTX_VCPU_INFO_NONE,
                                     .gfn = XKVM_CTX_GFN_NONE };
    if (e && e->vcpu_info) {
        if (e->vcpu_info_gfn == INVALID_GFN) {
            vi.placement = XKVM_CTX_VCPU_INFO_SHARED;
        } else {
            vi.placement = XKVM_CTX_VCPU_INFO_REGISTERED;
            vi.offset = e->vcpu_info_offset;
            vi.gfn = e->vcpu_info_gfn;
        }
    }
    xkvm_ctx_write_vcpu_info(w, v->id, &vi);
    xkvm_ctx_write_upcall(w, v->id, e ? e->upcall_vector : 0);
    struct xkvm_ctx_timer t = { 0 };
    if (e) {
        t.singleshot_deadline = e->singleshot_deadline;
        t.periodic_period = e->periodic_period;
    }
    xkvm_ctx_write_timer(w, v->id, &t);
    if (e) {
        runstate_account(v, xen_system_time(d));
        struct xkvm_ctx_runstate rs = {
            .area = e->runstate_gva, .state = (uint32_t)e->runstate.state,
            .state_entry_time = e->runstate.state_entry_time,
        };
        memcpy(rs.time, e->runstate.time, sizeof(rs.time));
        xkvm_ctx_write_runstate(w, v->id, &rs);
    }
    struct xkvm_ctx_vcpu_platform p = {
        .mp_state = mp_state,
        .intr_state = arch_vcpu_intr_state(v),
        .time_area = e ? __atomic_load_n(&e->time_area_gva, __ATOMIC_ACQUIRE) : 0,
    };
    xkvm_ctx_write_vcpu_platform(w, v->id, &p);
}

int pv_save_context(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen)
{
    struct event_domain *ev = d->ev;
    if (!ev || !d->gt) {
        snprintf(err, errlen, "d%u has no PV state yet", d->domid);
        return -EINVAL;
    }
    if (d->nr_vcpus == 0 || d->nr_vcpus > XKVM_CTX_MAX_VCPUS) {
        snprintf(err, errlen, "d%u has %u vCPUs", d->domid, d->nr_vcpus);
        return -EINVAL;
    }
    xkvm_ctx_write_start(w);
    xkvm_ctx_write_domain(w, d->domid, d->nr_vcpus);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct xkvm_ctx_time t = {
        .system_time_ns = xen_system_time(d),
        .wallclock_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec,
    };
    xkvm_ctx_write_time(w, &t);
    /* The TSC rate the guest calibrated, which the next host must keep (tsc_rate.c). */
    struct xkvm_ctx_tsc_info tsc = { .mode = XKVM_CTX_TSC_MODE_DEFAULT, .khz = d->tsc_khz };
    xkvm_ctx_write_tsc_info(w, &tsc);
    uint32_t assists = __atomic_load_n(&d->vm_assist, __ATOMIC_ACQUIRE);
    if (assists)
        xkvm_ctx_write_vm_assist(w, assists);
    if (__atomic_load_n(&d->guest_vmcall, __ATOMIC_RELAXED))
        xkvm_ctx_write_hypercall(w, XKVM_CTX_HYPERCALL_VMCALL);

    /*
     * ev->lock for the event state (ports, vcpu_info, timers), as debug-state reads
     * it; the grant table's own lock is taken by its accessors, never with ev->lock.
     */
    pthread_mutex_lock(&ev->lock);
    write_shared_info(d, w);
    int rc = write_ports(d, w, err, errlen);
    if (!rc)
        write_fifo(d, w);
    pthread_mutex_unlock(&ev->lock);
    if (rc)
        return rc;

    rc = write_gnttab(d, w, err, errlen);
    if (rc)
        return rc;
    write_hvm_params(d, w);

    pthread_mutex_lock(&ev->lock);
    for (unsigned i = 0; i < d->nr_vcpus; i++)
        write_vcpu(d, &d->vcpus[i], w);
    pthread_mutex_unlock(&ev->lock);
    if ((rc = pv_save_altp2m(d, w, err, errlen)))
        return rc;

    if (xkvm_ctx_write_end(w)) {
        snprintf(err, errlen, "d%u: encoding the context: %s", d->domid, w->err.msg);
        return w->err.code == XKVM_CTX_ERR_NOMEM ? -ENOMEM :
               w->err.code == XKVM_CTX_ERR_IO ? -(w->err.sys_errno ? w->err.sys_errno : EIO)
                                               : -EINVAL;
    }
    /* A buffer writer: check the image-level rules on what was written. */
    if (w->buf) {
        size_t len;
        const uint8_t *img = xkvm_ctx_writer_data(w, &len);
        struct xkvm_ctx_error cerr;
        if (xkvm_ctx_check_image(img, len, NULL, NULL, &cerr)) {
            snprintf(err, errlen, "d%u: the encoded context fails its check: %s",
                     d->domid, cerr.msg);
            return -EINVAL;
        }
    }
    return 0;
}
