/*
 * event_channel_op: EVTCHNOP_*, with Xen's argument checks and error codes. The
 * structures have the same layout in the 32-bit and 64-bit ABIs.
 */
#include <errno.h>
#include <stdint.h>
#include <xen/event_channel.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hypercall.h"
#include "hv/vcpu.h"

#ifndef EVTCHNOP_reset_cont     /* the public header has it under __XEN__ only */
#define EVTCHNOP_reset_cont 14
#endif

/* A domid argument: ourselves, or -EPERM for another domain, -ESRCH for none. */
static long only_self(struct hcall *hc, domid_t dom)
{
    if (dom == DOMID_SELF || dom == hc->d->domid)
        return 0;
    return domain_find_any(dom) ? -EPERM : -ESRCH;
}

static long alloc_unbound(struct hcall *hc, struct evtchn_alloc_unbound *a)
{
    long rc = only_self(hc, a->dom);
    if (rc)
        return rc;
    struct domain *d = hc->d;
    return evtchn_alloc_unbound_for(d, a->remote_dom == DOMID_SELF ? d->domid : a->remote_dom,
                                    &a->port);
}

static long bind_interdomain(struct hcall *hc, struct evtchn_bind_interdomain *b)
{
    struct domain *ld = hc->d;
    domid_t rid = b->remote_dom == DOMID_SELF ? ld->domid : b->remote_dom;
    struct domain *rd = rid == ld->domid ? ld : domain_get_peer(rid);
    if (!rd)
        return -ESRCH;
    evtchn_lock_pair(ld, rd);
    long rc;
    int lport = evtchn_get_free_port(ld->ev);
    if (lport < 0) {
        rc = lport;
    } else if (!evtchn_port_valid(rd->ev, b->remote_port) ||
               rd->ev->ports[b->remote_port].state != ECS_UNBOUND ||
               rd->ev->ports[b->remote_port].remote_domid != ld->domid) {
        rc = -EINVAL;
    } else {
        struct evtchn *l = &ld->ev->ports[lport], *r = &rd->ev->ports[b->remote_port];
        *l = (struct evtchn){ .state = ECS_INTERDOMAIN, .remote_domid = rd->domid,
                              .remote_port = b->remote_port, .dom0_to_guest = -1,
                              .dom0_from_guest = -1, .dom0_slot = -1 };
        r->state = ECS_INTERDOMAIN;
        r->remote_domid = ld->domid;
        r->remote_port = (uint32_t)lport;
        /* The peer may have sent before we bound: always raise ours, as Xen does. */
        evtchn_set_pending_locked(ld, (uint32_t)lport);
        b->local_port = (uint32_t)lport;
        rc = 0;
    }
    evtchn_unlock_pair(ld, rd);
    if (rd != ld)
        domain_put(rd);
    return rc;
}

static long bind_virq(struct hcall *hc, struct evtchn_bind_virq *b)
{
    struct domain *d = hc->d;
    if (b->virq >= NR_VIRQS)
        return -EINVAL;
    if (evtchn_virq_is_global(b->virq) && b->vcpu != 0)
        return -EINVAL;
    if (b->vcpu >= d->nr_vcpus || !d->vcpus[b->vcpu].ev)
        return -ENOENT;
    struct vcpu_event *e = d->vcpus[b->vcpu].ev;
    pthread_mutex_lock(&d->ev->lock);
    long rc;
    int port;
    if (e->virq_port[b->virq]) {
        rc = -EEXIST;
    } else if ((port = evtchn_get_free_port(d->ev)) < 0) {
        rc = port;
    } else {
        struct evtchn *ch = &d->ev->ports[port];
        ch->state = ECS_VIRQ;
        ch->notify_vcpu = (uint16_t)b->vcpu;
        ch->virq = b->virq;
        e->virq_port[b->virq] = (uint32_t)port;
        b->port = (uint32_t)port;
        rc = 0;
    }
    pthread_mutex_unlock(&d->ev->lock);
    return rc;
}

static long bind_ipi(struct hcall *hc, struct evtchn_bind_ipi *b)
{
    struct domain *d = hc->d;
    if (b->vcpu >= d->nr_vcpus)
        return -ENOENT;
    pthread_mutex_lock(&d->ev->lock);
    int port = evtchn_get_free_port(d->ev);
    if (port > 0) {
        d->ev->ports[port].state = ECS_IPI;
        d->ev->ports[port].notify_vcpu = (uint16_t)b->vcpu;
        b->port = (uint32_t)port;
    }
    pthread_mutex_unlock(&d->ev->lock);
    return port < 0 ? port : 0;
}

static long status(struct hcall *hc, struct evtchn_status *st)
{
    long rc = only_self(hc, st->dom);
    if (rc)
        return rc;
    struct event_domain *ev = hc->d->ev;
    pthread_mutex_lock(&ev->lock);
    if (!evtchn_port_valid(ev, st->port)) {
        pthread_mutex_unlock(&ev->lock);
        return -EINVAL;
    }
    struct evtchn *ch = &ev->ports[st->port];
    switch (ch->state) {
    case ECS_UNBOUND:
        st->status = EVTCHNSTAT_unbound;
        st->u.unbound.dom = ch->remote_domid;
        break;
    case ECS_INTERDOMAIN:
        st->status = EVTCHNSTAT_interdomain;
        st->u.interdomain.dom = ch->remote_domid;
        st->u.interdomain.port = ch->remote_port;
        break;
    case ECS_VIRQ:
        st->status = EVTCHNSTAT_virq;
        st->u.virq = ch->virq;
        break;
    case ECS_IPI:
        st->status = EVTCHNSTAT_ipi;
        break;
    default:
        st->status = EVTCHNSTAT_closed;
        break;
    }
    st->vcpu = ch->notify_vcpu;
    pthread_mutex_unlock(&ev->lock);
    return 0;
}

static long bind_vcpu(struct hcall *hc, struct evtchn_bind_vcpu *b)
{
    struct domain *d = hc->d;
    if (b->vcpu >= d->nr_vcpus)
        return -ENOENT;
    pthread_mutex_lock(&d->ev->lock);
    long rc = 0;
    struct evtchn *ch = evtchn_port_valid(d->ev, b->port) ? &d->ev->ports[b->port] : NULL;
    if (!ch)
        rc = -EINVAL;
    else if (ch->state == ECS_UNBOUND || ch->state == ECS_INTERDOMAIN ||
             (ch->state == ECS_VIRQ && evtchn_virq_is_global(ch->virq)))
        ch->notify_vcpu = (uint16_t)b->vcpu;
    else
        rc = -EINVAL;   /* IPIs and per-vCPU VIRQs stay where they were bound */
    pthread_mutex_unlock(&d->ev->lock);
    return rc;
}

/* Close every port; a FIFO domain goes back to 2-level (Xen's evtchn_reset). */
static long reset_self(struct domain *d)
{
    pthread_mutex_lock(&d->ev->lock);
    unsigned valid = d->ev->valid_ports;
    pthread_mutex_unlock(&d->ev->lock);
    for (uint32_t p = 1; p < valid; p++)
        evtchn_close(d, p);
    pthread_mutex_lock(&d->ev->lock);
    evtchn_fifo_destroy(d);
    pthread_mutex_unlock(&d->ev->lock);
    return 0;
}

static long reset(struct hcall *hc, struct evtchn_reset *r)
{
    long rc = only_self(hc, r->dom);
    return rc ? rc : reset_self(hc->d);
}

static long init_control(struct hcall *hc, struct evtchn_init_control *c)
{
    struct domain *d = hc->d;
    if (c->vcpu >= d->nr_vcpus || !d->vcpus[c->vcpu].ev)
        return -ENOENT;
    pthread_mutex_lock(&d->ev->lock);
    int rc = evtchn_fifo_init_control(&d->vcpus[c->vcpu], c->control_gfn, c->offset);
    pthread_mutex_unlock(&d->ev->lock);
    c->link_bits = EVTCHN_FIFO_LINK_BITS;
    return rc;
}

static long expand_array(struct hcall *hc, struct evtchn_expand_array *a)
{
    pthread_mutex_lock(&hc->d->ev->lock);
    int rc = evtchn_fifo_expand_array(hc->d, a->array_gfn);
    pthread_mutex_unlock(&hc->d->ev->lock);
    return rc;
}

static long set_priority(struct hcall *hc, struct evtchn_set_priority *s)
{
    pthread_mutex_lock(&hc->d->ev->lock);
    int rc = evtchn_fifo_set_priority(hc->d, s->port, s->priority);
    pthread_mutex_unlock(&hc->d->ev->lock);
    return rc;
}

/* Copy the argument in, run op, copy it back if op succeeded and wants that. */
#define EVTCHN_OP(type, fn, out)                                         \
    do {                                                                \
        type a;                                                         \
        if (hc_copy_from(hc, &a, hc->arg[1], sizeof(a)))                \
            return -EFAULT;                                             \
        long rc = fn(hc, &a);                                           \
        if (!rc && (out) && hc_copy_to(hc, hc->arg[1], &a, sizeof(a)))  \
            return -EFAULT;                                             \
        return rc;                                                      \
    } while (0)

static long close_op(struct hcall *hc, struct evtchn_close *c)
{
    return evtchn_close(hc->d, c->port);
}

static long send_op(struct hcall *hc, struct evtchn_send *s)
{
    return evtchn_send(hc->d, s->port);
}

static long unmask_op(struct hcall *hc, struct evtchn_unmask *u)
{
    return evtchn_unmask(hc->d, u->port);
}

long do_event_channel_op(struct hcall *hc)
{
    if (!hc->d->ev)
        return -ENOSYS;
    switch ((uint32_t)hc->arg[0]) {    /* Xen: int cmd */
    case EVTCHNOP_alloc_unbound:
        EVTCHN_OP(struct evtchn_alloc_unbound, alloc_unbound, true);
    case EVTCHNOP_bind_interdomain:
        EVTCHN_OP(struct evtchn_bind_interdomain, bind_interdomain, true);
    case EVTCHNOP_bind_virq:
        EVTCHN_OP(struct evtchn_bind_virq, bind_virq, true);
    case EVTCHNOP_bind_ipi:
        EVTCHN_OP(struct evtchn_bind_ipi, bind_ipi, true);
    case EVTCHNOP_close:
        EVTCHN_OP(struct evtchn_close, close_op, false);
    case EVTCHNOP_send:
        EVTCHN_OP(struct evtchn_send, send_op, false);
    case EVTCHNOP_status:
        EVTCHN_OP(struct evtchn_status, status, true);
    case EVTCHNOP_bind_vcpu:
        EVTCHN_OP(struct evtchn_bind_vcpu, bind_vcpu, false);
    case EVTCHNOP_unmask:
        EVTCHN_OP(struct evtchn_unmask, unmask_op, false);
    case EVTCHNOP_reset:
        EVTCHN_OP(struct evtchn_reset, reset, false);
    case EVTCHNOP_reset_cont:       /* continues a preempted reset on Xen; ours is whole */
        EVTCHN_OP(struct evtchn_reset, reset, false);
    case EVTCHNOP_init_control:
        EVTCHN_OP(struct evtchn_init_control, init_control, true);
    case EVTCHNOP_expand_array:
        EVTCHN_OP(struct evtchn_expand_array, expand_array, false);
    case EVTCHNOP_set_priority:
        EVTCHN_OP(struct evtchn_set_priority, set_priority, false);
    case EVTCHNOP_bind_pirq:        /* no physical IRQs in a PVH domain */
    default:
        return hc_unimplemented(hc, "event_channel_op", (unsigned long)hc->arg[0]);
    }
}
