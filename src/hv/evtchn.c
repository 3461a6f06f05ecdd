/*
 * Event channels, 2-level ABI: the port table of a domain and what happens to a port
 * (bind, send, close, unmask), with Xen's semantics and error codes. Pending and mask
 * bits live in the guest-visible shared_info frame and are changed with atomic
 * operations, as Xen's evtchn_2l_* do.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/vcpu.h"
#include "util/clock.h"
#include "util/log.h"

/* Xen's per-vCPU VIRQs; every other one is global (bound on vCPU 0). */
bool evtchn_virq_is_global(uint32_t virq)
{
    return !(virq == VIRQ_TIMER || virq == VIRQ_DEBUG || virq == VIRQ_XENOPROF ||
             virq == VIRQ_XENPMU);
}

bool evtchn_port_valid(const struct event_domain *ev, uint32_t port)
{
    return port < ev->valid_ports;
}

void evtchn_lock_pair(struct domain *a, struct domain *b)
{
    if (!b || a == b) {
        pthread_mutex_lock(&a->ev->lock);
    } else if (a->domid < b->domid) {
        pthread_mutex_lock(&a->ev->lock);
        pthread_mutex_lock(&b->ev->lock);
    } else {
        pthread_mutex_lock(&b->ev->lock);
        pthread_mutex_lock(&a->ev->lock);
    }
}

void evtchn_unlock_pair(struct domain *a, struct domain *b)
{
    if (b && a != b)
        pthread_mutex_unlock(&b->ev->lock);
    pthread_mutex_unlock(&a->ev->lock);
}

/* Lowest free port first, as Xen does; the valid range grows by buckets. */
int evtchn_get_free_port(struct event_domain *ev)
{
    for (uint32_t p = 1; p < ev->valid_ports; p++)
        if (ev->ports[p].state == ECS_FREE)
            return (int)p;
    if (ev->valid_ports >= EVTCHN_NR_PORTS)
        return -ENOSPC;
    int p = (int)ev->valid_ports;
    ev->valid_ports += EVTCHN_BUCKET;
    return p;
}

int evtchn_alloc_unbound_for(struct domain *d, uint16_t remote, uint32_t *port)
{
    pthread_mutex_lock(&d->ev->lock);
    int p = evtchn_get_free_port(d->ev);
    if (p > 0) {
        struct evtchn *ch = &d->ev->ports[p];
        ch->state = ECS_UNBOUND;
        ch->notify_vcpu = 0;
        ch->remote_domid = remote;
        *port = (uint32_t)p;
    }
    pthread_mutex_unlock(&d->ev->lock);
    return p < 0 ? p : 0;
}

static void reset_port(struct evtchn *ch)
{
    /* FIFO: where it was last linked outlives the port, as in Xen (it may be a tail). */
    *ch = (struct evtchn){ .state = ECS_FREE, .dom0_to_guest = -1, .dom0_from_guest = -1,
                           .dom0_slot = -1, .priority = EVTCHN_FIFO_PRIORITY_DEFAULT,
                           .fifo_last_vcpu = ch->fifo_last_vcpu,
                           .fifo_last_priority = ch->fifo_last_priority };
}

static void drop_dom0_binding(struct evtchn *ch)
{
    if (ch->dom0_slot >= 0)
        event_thread_unwatch(ch->dom0_slot);
    if (ch->dom0_to_guest >= 0)
        close(ch->dom0_to_guest);
    if (ch->dom0_from_guest >= 0)
        close(ch->dom0_from_guest);
    ch->dom0_slot = ch->dom0_to_guest = ch->dom0_from_guest = -1;
}

/* Free a port (ev->lock held); its pending bit is cleared, as Xen does. */
static void free_port(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    struct evtchn *ch = &ev->ports[port];
    if (ch->state == ECS_VIRQ && ch->notify_vcpu < d->nr_vcpus &&
        ch->virq < NR_VIRQS && d->vcpus[ch->notify_vcpu].ev &&
        d->vcpus[ch->notify_vcpu].ev->virq_port[ch->virq] == port)
        d->vcpus[ch->notify_vcpu].ev->virq_port[ch->virq] = 0;
    /* Global VIRQs are recorded on vCPU 0 whatever vCPU they notify. */
    if (ch->state == ECS_VIRQ && ch->virq < NR_VIRQS && d->nr_vcpus && d->vcpus[0].ev &&
        d->vcpus[0].ev->virq_port[ch->virq] == port)
        d->vcpus[0].ev->virq_port[ch->virq] = 0;
    drop_dom0_binding(ch);
    if (ev->abi == EVTCHN_ABI_FIFO)
        evtchn_fifo_clear_pending(ev, port);
    else
        bit_test_and_clear(ev->shared_info->evtchn_pending, port);
    reset_port(ch);
}

bool evtchn_is_pending(struct event_domain *ev, uint32_t port)
{
    if (ev->abi == EVTCHN_ABI_FIFO)
        return evtchn_fifo_is_pending(ev, port);
    return bit_test(ev->shared_info->evtchn_pending, port);
}

/* Every event a domain gets comes through here: under FIFO, never a 2-level bit. */
void evtchn_set_pending_locked(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    struct shared_info *si = ev->shared_info;
    struct evtchn *ch = &ev->ports[port];
    if (ev->abi == EVTCHN_ABI_FIFO) {
        evtchn_fifo_set_pending(d, port);
        return;
    }
    if (bit_test_and_set(si->evtchn_pending, port))
        return;
    ev->nr_events++;
    if (ch->notify_vcpu < d->nr_vcpus) {
        struct vcpu *v = &d->vcpus[ch->notify_vcpu];
        struct vcpu_info *vi = v->ev ? vcpu_info_of(v) : NULL;
        if (vi && !bit_test(si->evtchn_mask, port) &&
            !bit_test_and_set(&vi->evtchn_pending_sel, port / EVTCHN_WORD_BITS))
            upcall_mark_pending(v);
    }
    upcall_wake_pollers(d, port);
}

int evtchn_set_pending(struct domain *d, uint32_t port)
{
    if (!d->ev)
        return -EINVAL;
    pthread_mutex_lock(&d->ev->lock);
    int rc = -EINVAL;
    if (evtchn_port_valid(d->ev, port) && d->ev->ports[port].state >= ECS_UNBOUND) {
        evtchn_set_pending_locked(d, port);
        rc = 0;
    }
    pthread_mutex_unlock(&d->ev->lock);
    return rc;
}

int evtchn_unmask(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    pthread_mutex_lock(&ev->lock);
    if (!evtchn_port_valid(ev, port)) {
        pthread_mutex_unlock(&ev->lock);
        return -EINVAL;
    }
    if (ev->abi == EVTCHN_ABI_FIFO) {
        evtchn_fifo_unmask(d, port);
        pthread_mutex_unlock(&ev->lock);
        return 0;
    }
    struct shared_info *si = ev->shared_info;
    uint16_t vid = ev->ports[port].notify_vcpu;
    struct vcpu *v = vid < d->nr_vcpus ? &d->vcpus[vid] : NULL;
    struct vcpu_info *vi = v && v->ev ? vcpu_info_of(v) : NULL;
    if (bit_test_and_clear(si->evtchn_mask, port) && bit_test(si->evtchn_pending, port) &&
        vi && !bit_test_and_set(&vi->evtchn_pending_sel, port / EVTCHN_WORD_BITS))
        upcall_mark_pending(v);
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

void evtchn_send_virq(struct vcpu *v, uint32_t virq)
{
    struct domain *d = v->d;
    if (!d->ev || !v->ev || virq >= NR_VIRQS)
        return;
    pthread_mutex_lock(&d->ev->lock);
    uint32_t port = v->ev->virq_port[virq];
    if (port && d->ev->ports[port].state == ECS_VIRQ)
        evtchn_set_pending_locked(d, port);
    pthread_mutex_unlock(&d->ev->lock);
}

void evtchn_send_global_virq(struct domain *d, uint32_t virq)
{
    if (d->nr_vcpus)
        evtchn_send_virq(&d->vcpus[0], virq);
}

/* Our end of an interdomain channel to `rd`: does it still point back at us? */
static bool peer_points_back(struct domain *rd, uint32_t rport, uint16_t domid,
                             uint32_t port)
{
    if (!evtchn_port_valid(rd->ev, rport))
        return false;
    struct evtchn *rc = &rd->ev->ports[rport];
    return rc->state == ECS_INTERDOMAIN && rc->remote_domid == domid &&
           rc->remote_port == port && rc->dom0_to_guest < 0;
}

int evtchn_send(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    pthread_mutex_lock(&ev->lock);
    if (!evtchn_port_valid(ev, port)) {
        pthread_mutex_unlock(&ev->lock);
        return -EINVAL;
    }
    struct evtchn *ch = &ev->ports[port];
    int rc = 0;
    switch (ch->state) {
    case ECS_IPI:
        evtchn_set_pending_locked(d, port);
        break;
    case ECS_UNBOUND:
        break;      /* silently dropped, as on Xen */
    case ECS_INTERDOMAIN:
        if (ch->dom0_from_guest >= 0) {
            uint64_t one = 1;
            ssize_t w = write(ch->dom0_from_guest, &one, sizeof(one));
            (void)w;    /* a full counter already says "notified" */
        } else if (ch->remote_domid == d->domid) {
            evtchn_set_pending_locked(d, ch->remote_port);
        } else {
            uint16_t rid = ch->remote_domid;
            uint32_t rport = ch->remote_port;
            pthread_mutex_unlock(&ev->lock);
            struct domain *rd = domain_get(rid);
            if (!rd)
                return 0;
            pthread_mutex_lock(&rd->ev->lock);
            if (peer_points_back(rd, rport, d->domid, port))
                evtchn_set_pending_locked(rd, rport);
            pthread_mutex_unlock(&rd->ev->lock);
            domain_put(rd);
            return 0;
        }
        break;
    default:
        rc = -EINVAL;
        break;
    }
    pthread_mutex_unlock(&ev->lock);
    return rc;
}

/*
 * Close d's port. An interdomain peer's end goes back to unbound (for d), in another
 * domain too: both event locks are then taken in domid order.
 */
int evtchn_close(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    for (;;) {
        pthread_mutex_lock(&ev->lock);
        if (!evtchn_port_valid(ev, port)) {
            pthread_mutex_unlock(&ev->lock);
            return -EINVAL;
        }
        struct evtchn *ch = &ev->ports[port];
        if (ch->state == ECS_FREE || ch->state == ECS_RESERVED) {
            pthread_mutex_unlock(&ev->lock);
            return -EINVAL;
        }
        if (ch->state != ECS_INTERDOMAIN || ch->dom0_to_guest >= 0 ||
            ch->remote_domid == d->domid) {
            if (ch->state == ECS_INTERDOMAIN && ch->dom0_to_guest < 0 &&
                peer_points_back(d, ch->remote_port, d->domid, port)) {
                struct evtchn *peer = &ev->ports[ch->remote_port];
                peer->state = ECS_UNBOUND;
                peer->remote_domid = d->domid;
                peer->remote_port = 0;
            }
            free_port(d, port);
            pthread_mutex_unlock(&ev->lock);
            return 0;
        }
        /* Another domain: drop our lock, take both in order, check nothing moved. */
        uint16_t rid = ch->remote_domid;
        uint32_t rport = ch->remote_port;
        pthread_mutex_unlock(&ev->lock);
        struct domain *rd = domain_get(rid);
        evtchn_lock_pair(d, rd);
        ch = &ev->ports[port];
        if (ch->state != ECS_INTERDOMAIN || ch->remote_domid != rid ||
            ch->remote_port != rport || ch->dom0_to_guest >= 0) {
            evtchn_unlock_pair(d, rd);
            if (rd)
                domain_put(rd);
            continue;   /* changed under us: look again */
        }
        if (rd && peer_points_back(rd, rport, d->domid, port)) {
            struct evtchn *peer = &rd->ev->ports[rport];
            peer->state = ECS_UNBOUND;
            peer->remote_domid = d->domid;
            peer->remote_port = 0;
        }
        free_port(d, port);
        evtchn_unlock_pair(d, rd);
        if (rd)
            domain_put(rd);
        return 0;
    }
}

int evtchn_dom0_bind(struct domain *d, uint32_t port, int *to_guest, int *from_guest,
                     uint64_t *binding)
{
    static uint64_t next_binding = 1;
    struct event_domain *ev = d->ev;
    if (!ev)
        return -EINVAL;
    int to = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int from = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int my_to = to >= 0 ? fcntl(to, F_DUPFD_CLOEXEC, 0) : -1;
    int my_from = from >= 0 ? fcntl(from, F_DUPFD_CLOEXEC, 0) : -1;
    int rc = 0;
    if (to < 0 || from < 0 || my_to < 0 || my_from < 0) {
        rc = -EMFILE;
        goto fail;
    }
    pthread_mutex_lock(&ev->lock);
    struct evtchn *ch = evtchn_port_valid(ev, port) ? &ev->ports[port] : NULL;
    if (!ch || ch->state != ECS_UNBOUND || ch->remote_domid != 0) {
        pthread_mutex_unlock(&ev->lock);
        rc = -EINVAL;
        goto fail;
    }
    int slot = event_thread_watch_dom0(d, port, my_to);
    if (slot < 0) {
        pthread_mutex_unlock(&ev->lock);
        rc = slot;
        goto fail;
    }
    ch->state = ECS_INTERDOMAIN;
    ch->remote_domid = 0;
    ch->remote_port = port;     /* dom0 services name the channel by the guest's port */
    ch->dom0_to_guest = my_to;
    ch->dom0_from_guest = my_from;
    ch->dom0_slot = slot;
    ch->dom0_binding = __atomic_fetch_add(&next_binding, 1, __ATOMIC_RELAXED);
    *binding = ch->dom0_binding;
    pthread_mutex_unlock(&ev->lock);
    *to_guest = to;
    *from_guest = from;
    return 0;
fail:
    if (to >= 0)
        close(to);
    if (from >= 0)
        close(from);
    if (my_to >= 0)
        close(my_to);
    if (my_from >= 0)
        close(my_from);
    return rc;
}

int evtchn_dom0_unbind(struct domain *d, uint32_t port, uint64_t binding)
{
    struct event_domain *ev = d->ev;
    if (!ev)
        return -EINVAL;
    pthread_mutex_lock(&ev->lock);
    struct evtchn *ch = evtchn_port_valid(ev, port) ? &ev->ports[port] : NULL;
    int rc = -EINVAL;
    /* Only the binding the caller made: the port may have been closed and re-bound. */
    if (ch && ch->state == ECS_INTERDOMAIN && ch->dom0_to_guest >= 0 &&
        ch->dom0_binding == binding) {
        drop_dom0_binding(ch);
        ch->state = ECS_UNBOUND;    /* the guest's end waits for dom0 again */
        ch->remote_domid = 0;
        ch->remote_port = 0;
        rc = 0;
    }
    pthread_mutex_unlock(&ev->lock);
    return rc;
}

/* A dom0 service signalled its to_guest eventfd (the event thread calls this). */
void evtchn_dom0_raise(struct domain *d, uint32_t port, int slot)
{
    __atomic_store_n(&d->dom0_activity_ns, host_monotonic_ns(), __ATOMIC_RELAXED);
    pthread_mutex_lock(&d->ev->lock);
    if (evtchn_port_valid(d->ev, port) && d->ev->ports[port].dom0_slot == slot &&
        d->ev->ports[port].state == ECS_INTERDOMAIN)
        evtchn_set_pending_locked(d, port);
    pthread_mutex_unlock(&d->ev->lock);
}

int event_domain_init(struct domain *d)
{
    struct event_domain *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return -ENOMEM;
    ev->d = d;
    pthread_mutex_init(&ev->lock, NULL);
    for (uint32_t p = 0; p < EVTCHN_NR_PORTS; p++) {
        ev->ports[p].fifo_last_priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
        reset_port(&ev->ports[p]);
    }
    ev->ports[0].state = ECS_RESERVED;
    ev->valid_ports = EVTCHN_BUCKET;
    d->ev = ev;
    return shared_info_init(d);
}

void event_domain_fini(struct domain *d)
{
    struct event_domain *ev = d->ev;
    if (!ev)
        return;
    for (uint32_t p = 1; p < ev->valid_ports; p++)
        if (ev->ports[p].state != ECS_FREE)
            evtchn_close(d, p);
    pthread_mutex_lock(&ev->lock);
    evtchn_fifo_destroy(d);     /* the references on the guest's FIFO frames */
    pthread_mutex_unlock(&ev->lock);
    /* The shared_info frame is the domain's: mm_free_owner returns it. */
    pthread_mutex_destroy(&ev->lock);
    free(ev);
    d->ev = NULL;
}

int event_vcpu_init(struct vcpu *v)
{
    struct vcpu_event *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->v = v;
    e->timer_fd = -1;
    e->timer_slot = -1;
    e->fifo_cb_gfn = INVALID_GFN;
    e->fifo_cb_mfn = INVALID_MFN;
    cond_init_monotonic(&e->wake);
    e->initialised = e->up = v->id == 0;
    e->time_dirty = true;
    v->ev = e;
    shared_info_vcpu_init(v);
    int rc = vcpu_timer_init(v);
    if (rc) {
        event_vcpu_fini(v);
        return rc;
    }
    return 0;
}

void event_vcpu_fini(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (!e)
        return;
    if (e->nr_callbacks || e->nr_timer_events)
        log_info("d%u v%u: %llu callback upcalls (%llu retried), %llu timer events",
                 v->d->domid, v->id, (unsigned long long)e->nr_callbacks,
                 (unsigned long long)e->nr_retries, (unsigned long long)e->nr_timer_events);
    vcpu_timer_fini(v);
    shared_info_vcpu_fini(v);
    pthread_cond_destroy(&e->wake);
    free(e);
    v->ev = NULL;
}

/* ---- event_state_json: everything above, listed ------------------------------ */

static const char *state_name(uint8_t s)
{
    switch (s) {
    case ECS_RESERVED:    return "reserved";
    case ECS_UNBOUND:     return "unbound";
    case ECS_INTERDOMAIN: return "interdomain";
    case ECS_VIRQ:        return "virq";
    case ECS_IPI:         return "ipi";
    default:              return "free";
    }
}

#define J_INT(o, k, v) json_object_object_add((o), (k), json_object_new_int64((int64_t)(v)))
#define J_BOOL(o, k, v) json_object_object_add((o), (k), json_object_new_boolean(v))

static struct json_object *gfn_json(uint64_t gfn)
{
    return gfn == INVALID_GFN ? NULL : json_object_new_int64((int64_t)gfn);
}

struct json_object *event_state_json(struct domain *d)
{
    struct json_object *o = json_object_new_object();
    struct event_domain *ev = d->ev;
    if (!ev)
        return o;
    pthread_mutex_lock(&ev->lock);
    struct shared_info *si = ev->shared_info;
    J_INT(o, "shared_info_mfn", ev->shared_info_mfn);
    json_object_object_add(o, "shared_info_gfn", gfn_json(ev->shared_info_gfn));
    bool fifo = ev->abi == EVTCHN_ABI_FIFO;
    json_object_object_add(o, "abi", json_object_new_string(fifo ? "fifo" : "2-level"));
    if (fifo) {
        struct json_object *pages = json_object_new_array();
        for (unsigned n = 0; n < ev->fifo_nr_pages; n++)
            json_object_array_add(pages, json_object_new_int64((int64_t)ev->fifo_page_gfn[n]));
        json_object_object_add(o, "fifo_array_gfns", pages);
    }
    uint64_t cb = d->hvm_params[HVM_PARAM_CALLBACK_IRQ];
    struct json_object *up = json_object_new_object();
    J_INT(up, "callback_param", cb);
    J_INT(up, "callback_vector", upcall_callback_vector(d));
    json_object_object_add(o, "upcall", up);
    struct json_object *wc = json_object_new_object();
    J_INT(wc, "version", si->wc_version);
    J_INT(wc, "sec", (uint64_t)si->wc_sec | ((uint64_t)si->wc_sec_hi << 32));
    J_INT(wc, "nsec", si->wc_nsec);
    json_object_object_add(o, "wallclock", wc);
    J_INT(o, "valid_ports", ev->valid_ports);

    struct json_object *ports = json_object_new_array();
    for (uint32_t p = 1; p < ev->valid_ports; p++) {
        struct evtchn *ch = &ev->ports[p];
        if (ch->state == ECS_FREE)
            continue;
        struct json_object *j = json_object_new_object();
        J_INT(j, "port", p);
        json_object_object_add(j, "state", json_object_new_string(state_name(ch->state)));
        J_INT(j, "vcpu", ch->notify_vcpu);
        if (ch->state == ECS_UNBOUND || ch->state == ECS_INTERDOMAIN)
            J_INT(j, "remote_domid", ch->remote_domid);
        if (ch->state == ECS_INTERDOMAIN)
            J_INT(j, "remote_port", ch->remote_port);
        if (ch->state == ECS_INTERDOMAIN)
            J_BOOL(j, "dom0_service", ch->dom0_to_guest >= 0);
        if (ch->state == ECS_VIRQ)
            J_INT(j, "virq", ch->virq);
        J_BOOL(j, "pending", evtchn_is_pending(ev, p));
        if (fifo) {
            event_word_t *w = evtchn_fifo_word(ev, p);
            J_BOOL(j, "masked", w && (__atomic_load_n(w, __ATOMIC_ACQUIRE) >>
                                      EVTCHN_FIFO_MASKED) & 1);
            json_object_object_add(j, "fifo", evtchn_fifo_port_json(ev, p));
        } else {
            J_BOOL(j, "masked", bit_test(si->evtchn_mask, p));
        }
        json_object_array_add(ports, j);
    }
    json_object_object_add(o, "ports", ports);

    struct json_object *vcpus = json_object_new_array();
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu_event *e = d->vcpus[i].ev;
        if (!e)
            continue;
        struct json_object *j = json_object_new_object();
        J_INT(j, "id", i);
        struct json_object *vi = json_object_new_object();
        if (!e->vcpu_info)
            json_object_object_add(vi, "placement", json_object_new_string("none"));
        else if (e->vcpu_info_gfn == INVALID_GFN)
            json_object_object_add(vi, "placement", json_object_new_string("shared_info"));
        else {
            json_object_object_add(vi, "placement", json_object_new_string("registered"));
            J_INT(vi, "gfn", e->vcpu_info_gfn);
            J_INT(vi, "offset", e->vcpu_info_offset);
        }
        if (e->vcpu_info) {
            J_INT(vi, "upcall_pending", e->vcpu_info->evtchn_upcall_pending);
            J_INT(vi, "pending_sel", e->vcpu_info->evtchn_pending_sel);
            J_INT(vi, "time_version", e->vcpu_info->time.version);
            J_INT(vi, "system_time", e->vcpu_info->time.system_time);
            J_INT(vi, "time_flags", e->vcpu_info->time.flags);
        }
        J_INT(vi, "time_area", __atomic_load_n(&e->time_area_gva, __ATOMIC_ACQUIRE));
        json_object_object_add(j, "vcpu_info", vi);
        if (fifo)
            json_object_object_add(j, "fifo_control_block", evtchn_fifo_vcpu_json(&d->vcpus[i]));
        J_INT(j, "upcall_vector", e->upcall_vector);
        struct json_object *virqs = json_object_new_object();
        for (unsigned q = 0; q < NR_VIRQS; q++)
            if (e->virq_port[q]) {
                char k[8];
                snprintf(k, sizeof(k), "%u", q);
                J_INT(virqs, k, e->virq_port[q]);
            }
        json_object_object_add(j, "virq_ports", virqs);
        struct json_object *t = json_object_new_object();
        J_INT(t, "singleshot_deadline_ns", e->singleshot_deadline);
        J_INT(t, "periodic_period_ns", e->periodic_period);
        J_INT(t, "periodic_next_ns", e->periodic_next);
        json_object_object_add(j, "timers", t);
        J_BOOL(j, "initialised", e->initialised);
        J_BOOL(j, "up", e->up && !e->down_requested);
        J_BOOL(j, "polling", e->polling);
        J_BOOL(j, "blocked", e->block_halted);
        struct json_object *n = json_object_new_object();
        J_INT(n, "callbacks", e->nr_callbacks);
        J_INT(n, "callback_retries", e->nr_retries);
        J_INT(n, "timer_events", e->nr_timer_events);
        json_object_object_add(j, "counters", n);
        json_object_array_add(vcpus, j);
    }
    json_object_object_add(o, "vcpus", vcpus);
    J_INT(o, "vm_assist", __atomic_load_n(&d->vm_assist, __ATOMIC_ACQUIRE));
    J_INT(o, "tsc_khz", d->tsc_khz);
    J_INT(o, "system_time_ns", xen_system_time(d));   /* to set the deadlines beside */
    pthread_mutex_unlock(&ev->lock);
    return o;
}

/* Does gfn still map mfn, the frame held for it? */
static bool held_at(struct domain *d, uint64_t gfn, uint64_t mfn)
{
    return p2m_lookup(&d->p2m, gfn) == mfn;
}

uint64_t event_frame_unreachable(struct domain *d)
{
    struct event_domain *ev = d->ev;
    uint64_t bad = INVALID_GFN;
    pthread_mutex_lock(&ev->lock);
    for (unsigned i = 0; i < d->nr_vcpus && bad == INVALID_GFN; i++) {
        struct vcpu_event *e = d->vcpus[i].ev;
        if (!e)
            continue;
        if (e->vcpu_info_gfn != INVALID_GFN && !held_at(d, e->vcpu_info_gfn, e->vcpu_info_mfn))
            bad = e->vcpu_info_gfn;
        else if (e->fifo_cb && !held_at(d, e->fifo_cb_gfn, e->fifo_cb_mfn))
            bad = e->fifo_cb_gfn;
    }
    for (unsigned i = 0; i < ev->fifo_nr_pages && bad == INVALID_GFN; i++)
        if (!held_at(d, ev->fifo_page_gfn[i], ev->fifo_page_mfn[i]))
            bad = ev->fifo_page_gfn[i];
    pthread_mutex_unlock(&ev->lock);
    return bad;
}
