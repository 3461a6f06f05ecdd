/*
 * PV event delivery: shared_info, vcpu_info, event channels (2-level ABI), upcalls,
 * Xen timers and VIRQs. All of it is "PV state" that save, migration and live update
 * carry later: keep it in plain structures, listable by event_state_json().
 * Implemented in evtchn.c (ports), shared_info.c (shared_info/vcpu_info/time),
 * upcall.c (injection, block/poll), vcpu_timer.c (timers and the event thread),
 * hc_evtchn.c and hc_vcpu.c; the structures are in event_state.h.
 */
#ifndef XKVM_HV_EVENT_H
#define XKVM_HV_EVENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct domain;
struct vcpu;
struct hcall;

/* The host's event thread (timers, dom0 eventfds, upcall retries): at start-up. */
int event_host_init(void);
/*
 * Live update: stop (true) delivering timer and dom0 events until thawed (false);
 * returns once the event thread is idle, so nothing writes guest state after it.
 */
void event_thread_freeze(bool frozen);

/* Per-domain and per-vCPU state; called from domain_create / domain_destroy. */
int event_domain_init(struct domain *d);
void event_domain_fini(struct domain *d);   /* closes channels, peers see them closed */
int event_vcpu_init(struct vcpu *v);
void event_vcpu_fini(struct vcpu *v);

/* XENMAPSPACE_shared_info: map the domain's shared_info frame at gfn. */
int shared_info_map(struct domain *d, uint64_t gfn);

/* The toolstack's EVTCHNOP_alloc_unbound on the guest's behalf (store, console). */
int evtchn_alloc_unbound_for(struct domain *d, uint16_t remote, uint32_t *port);

/* Raise `port` in domain d (any thread). 0, or -EINVAL for a bad port. */
int evtchn_set_pending(struct domain *d, uint32_t port);
/* Raise the port bound to `virq` on vCPU v, if any. */
void evtchn_send_virq(struct vcpu *v, uint32_t virq);
/* A global VIRQ (VIRQ_DOM_EXC, VIRQ_CONSOLE): raised on whichever vCPU it is bound. */
void evtchn_send_global_virq(struct domain *d, uint32_t virq);
/* Xen's virq_is_global(): all but TIMER, DEBUG, XENOPROF and XENPMU (bound on vCPU 0). */
bool evtchn_virq_is_global(uint32_t virq);

/*
 * The dom0 device interface: a dom0 service binds to `port`, which the guest allocated
 * as unbound for domid 0. Writing to *to_guest raises the port in the guest; the
 * guest's EVTCHNOP_send on it makes *from_guest readable. Both are eventfds owned by
 * the caller afterwards (xkvmd keeps its own duplicates). *binding names the binding.
 */
int evtchn_dom0_bind(struct domain *d, uint32_t port, int *to_guest, int *from_guest,
                     uint64_t *binding);
/* Undo that binding; -EINVAL if the port no longer carries it. */
int evtchn_dom0_unbind(struct domain *d, uint32_t port, uint64_t binding);

/* vcpu.c calls this before every KVM_RUN: inject a pending upcall if it can. */
void event_before_run(struct vcpu *v);

/* SCHEDOP_block and SCHEDOP_poll (hc_sched.c). */
long event_sched_block(struct hcall *hc);
long event_sched_poll(struct hcall *hc);

/* vcpu_kick (d->lock held) calls this: a vCPU waiting in xkvmd re-checks why it waits. */
void event_vcpu_kicked(struct vcpu *v);

/* The whole PV event state of a domain, for `xkvm debug-state`. */
struct json_object *event_state_json(struct domain *d);

/*
 * A frame xkvmd holds by reference for the domain's events (a registered vcpu_info, a
 * FIFO control block or array page) that its gfn no longer maps: the guest gave the
 * gfn back or moved another page over it. Save, migration and live update carry these
 * by gfn, so such a domain cannot be carried. The first such gfn, or INVALID_GFN.
 * Call with the domain paused.
 */
uint64_t event_frame_unreachable(struct domain *d);

long do_event_channel_op(struct hcall *hc);
long do_vcpu_op(struct hcall *hc);
long do_set_evtchn_upcall_vector(struct hcall *hc);   /* HVMOP_set_evtchn_upcall_vector */

#endif
