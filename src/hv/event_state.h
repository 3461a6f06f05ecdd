/*
 * The PV event state xkvmd keeps per domain and per vCPU (event.h is the interface).
 * Plain structures: everything here can be listed (event_state_json) and is what save,
 * migration and live update carry.
 *
 * Locking: ev->lock (one per domain) guards the port table, the vCPUs' VIRQ bindings,
 * vcpu_info placement and timers. Taken before d->lock (kicks and wake-ups), never
 * with another domain's ev->lock unless both are taken in domid order.
 */
#ifndef XKVM_HV_EVENT_STATE_H
#define XKVM_HV_EVENT_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/vcpu.h>
#include <xen/event_channel.h>
#include <xen/hvm/hvm_vcpu.h>

#include "util/clock.h"
#include "hv/vcpu.h"

struct domain;
struct hcall;

#define EVTCHN_NR_PORTS     EVTCHN_2L_NR_CHANNELS   /* 4096 for 64-bit guests */
#define EVTCHN_BUCKET       64      /* ports become valid in buckets, as on Xen */
#define EVTCHN_WORD_BITS    64
#define NR_VIRQS            24
#define SCHED_POLL_MAX      128     /* Xen's limit on sched_poll.nr_ports */

/* FIFO ABI (evtchn_fifo.c): Xen's EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, 1024 words a page. */
#define EVTCHN_FIFO_WORDS_PER_PAGE  (4096 / sizeof(event_word_t))
#define EVTCHN_FIFO_MAX_PAGES       (EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_WORDS_PER_PAGE)

enum evtchn_abi {
    EVTCHN_ABI_2L = 0,  /* pending and mask bits in shared_info */
    EVTCHN_ABI_FIFO,    /* event words in the guest's array pages, queues per vCPU */
};

enum evtchn_state {
    ECS_FREE = 0,
    ECS_RESERVED,       /* port 0 */
    ECS_UNBOUND,        /* waiting for remote_domid to bind */
    ECS_INTERDOMAIN,    /* bound to remote_domid:remote_port (domid 0: a dom0 service) */
    ECS_VIRQ,
    ECS_IPI,
};

struct evtchn {
    uint8_t state;              /* enum evtchn_state */
    uint16_t notify_vcpu;
    uint16_t remote_domid;      /* UNBOUND: who may bind; INTERDOMAIN: the peer */
    uint32_t remote_port;       /* INTERDOMAIN */
    uint32_t virq;              /* VIRQ */
    /* A dom0 service bound to this port: xkvmd's own ends of the eventfds, or -1. */
    int dom0_to_guest;          /* readable: raise the port */
    int dom0_from_guest;        /* EVTCHNOP_send writes 1 */
    int dom0_slot;              /* the to_guest fd's slot in the event thread */
    uint64_t dom0_binding;      /* names this binding for unbind (ports get reused) */
    /* FIFO ABI: the queue the port is linked on, and what Xen keeps per port. */
    uint8_t priority;           /* 0..15, EVTCHN_FIFO_PRIORITY_DEFAULT when allocated */
    uint8_t fifo_last_priority; /* the queue it was last linked on: */
    uint16_t fifo_last_vcpu;    /*   its tail is forgotten when the port moves */
    bool fifo_held;             /* pending, but no event word yet (Xen's evtchn->pending) */
};

struct event_domain {
    struct domain *d;
    pthread_mutex_t lock;

    uint64_t shared_info_mfn;   /* Xen-owned, always present */
    uint64_t shared_info_gfn;   /* where the guest mapped it; INVALID_GFN if not */
    struct shared_info *shared_info;

    uint8_t abi;                /* enum evtchn_abi */
    /* FIFO: the event array, held by frame (a reference each), as vcpu_info is. */
    unsigned fifo_nr_pages;
    uint64_t fifo_page_gfn[EVTCHN_FIFO_MAX_PAGES];
    uint64_t fifo_page_mfn[EVTCHN_FIFO_MAX_PAGES];
    event_word_t *fifo_page[EVTCHN_FIFO_MAX_PAGES];

    unsigned valid_ports;       /* ports below this exist (grows by EVTCHN_BUCKET) */
    struct evtchn ports[EVTCHN_NR_PORTS];

    unsigned nr_polling;        /* vCPUs in SCHEDOP_poll (under d->lock) */
    uint64_t nr_events;         /* ports raised (set pending when they were not) */
};

struct vcpu_event {
    struct vcpu *v;

    /* vcpu_info: the legacy slot in shared_info, or a registered gfn + offset. */
    struct vcpu_info *vcpu_info;    /* NULL: none (id >= 32, not registered) */
    uint64_t vcpu_info_gfn;         /* INVALID_GFN: the legacy slot */
    uint32_t vcpu_info_offset;
    uint64_t vcpu_info_mfn;         /* the frame we hold a reference on */

    /* FIFO: the control block (EVTCHNOP_init_control), held by frame; queue tails. */
    struct evtchn_fifo_control_block *fifo_cb;     /* NULL: not initialised */
    uint64_t fifo_cb_gfn;
    uint64_t fifo_cb_mfn;
    uint32_t fifo_cb_offset;
    uint32_t fifo_tail[EVTCHN_FIFO_MAX_QUEUES];    /* 0: the queue is empty */

    uint8_t upcall_vector;          /* HVMOP_set_evtchn_upcall_vector; 0: none */
    uint32_t virq_port[NR_VIRQS];   /* 0: not bound (global VIRQs: on vCPU 0) */

    /* Timers, in Xen system time (ns of the VM's KVM clock); 0 = not set. */
    uint64_t singleshot_deadline;
    uint64_t periodic_period;
    uint64_t periodic_next;
    uint64_t retry_at;              /* host CLOCK_MONOTONIC: re-try an upcall */
    uint64_t vector_sent_ns;        /* host CLOCK_MONOTONIC: the LAPIC vector last sent */
    unsigned retries_in_row;        /* since the last injection */
    int timer_fd;                   /* timerfd armed to the earliest of the above */
    int timer_slot;

    /* Waiting (guarded by d->lock; `wake` waits on it). */
    pthread_cond_t wake;
    bool polling;
    bool poll_kicked;               /* an upcall, a polled port, or a pause */
    uint32_t poll_port;             /* 0: any of several ports */
    bool block_halted;              /* SCHEDOP_block put the vCPU in HLT state */
    uint64_t block_exits;           /* v->nr_exits when it did */

    /* Bring-up (VCPUOP_initialise/up/down). */
    bool initialised;               /* has a context (vCPU 0, initialise, or ran) */
    bool ran;                       /* seen running (a KVM exit) */
    bool up;
    bool down_requested;            /* VCPUOP_down: stop before the next KVM_RUN */
    bool context_pending;           /* apply `context` on the vCPU's own thread */
    struct vcpu_hvm_context context;

    bool time_dirty;                /* refresh vcpu_time_info before the next run */

    /* Runstate (runstate.c): accounting, and the guest's area (linear, 0: none). */
    struct vcpu_runstate_info runstate;
    uint64_t runstate_since;        /* Xen system time accounted up to; 0: not yet */
    uint64_t runstate_gva;
    uint64_t time_area_gva;         /* secondary vcpu_time_info (linear, 0: none) */
    uint64_t nr_callbacks;          /* callback vectors injected */
    uint64_t nr_timer_events;       /* VIRQ_TIMER raised */
    uint64_t nr_retries;            /* callback not injectable yet: retried later */
};

/* ---- evtchn.c ---- */
/* Raise port (ev->lock held): Xen's 2-level set_pending. */
void evtchn_set_pending_locked(struct domain *d, uint32_t port);
bool evtchn_port_valid(const struct event_domain *ev, uint32_t port);
/* Lock two domains' event state in domid order (b may equal a or be NULL). */
void evtchn_lock_pair(struct domain *a, struct domain *b);
void evtchn_unlock_pair(struct domain *a, struct domain *b);
int evtchn_get_free_port(struct event_domain *ev);
/* Close a port: interdomain peers see it unbound again. 0 or -EINVAL. */
int evtchn_close(struct domain *d, uint32_t port);
int evtchn_send(struct domain *d, uint32_t port);
int evtchn_unmask(struct domain *d, uint32_t port);
/* The event thread: a dom0 service's to_guest eventfd (watch `slot`) was signalled. */
void evtchn_dom0_raise(struct domain *d, uint32_t port, int slot);

static inline bool bit_test(const volatile uint64_t *words, uint32_t bit)
{
    return (__atomic_load_n(&words[bit / 64], __ATOMIC_ACQUIRE) >> (bit % 64)) & 1;
}
static inline bool bit_test_and_set(volatile uint64_t *words, uint32_t bit)
{
    uint64_t m = 1ULL << (bit % 64);
    return __atomic_fetch_or(&words[bit / 64], m, __ATOMIC_SEQ_CST) & m;
}
static inline bool bit_test_and_clear(volatile uint64_t *words, uint32_t bit)
{
    uint64_t m = 1ULL << (bit % 64);
    return __atomic_fetch_and(&words[bit / 64], ~m, __ATOMIC_SEQ_CST) & m;
}

/* Is port pending, under the domain's ABI (ev->lock held)? */
bool evtchn_is_pending(struct event_domain *ev, uint32_t port);

/* ---- evtchn_fifo.c (ev->lock held for all) ---- */
void evtchn_fifo_set_pending(struct domain *d, uint32_t port);
void evtchn_fifo_unmask(struct domain *d, uint32_t port);
bool evtchn_fifo_is_pending(struct event_domain *ev, uint32_t port);
void evtchn_fifo_clear_pending(struct event_domain *ev, uint32_t port);
/* The port's event word, or NULL if the array does not reach it yet. */
event_word_t *evtchn_fifo_word(struct event_domain *ev, uint32_t port);
/* EVTCHNOP_init_control, _expand_array, _set_priority: Xen's checks and codes. */
int evtchn_fifo_init_control(struct vcpu *v, uint64_t gfn, uint32_t offset);
int evtchn_fifo_expand_array(struct domain *d, uint64_t gfn);
int evtchn_fifo_set_priority(struct domain *d, uint32_t port, uint32_t priority);
/* Back to 2-level (EVTCHNOP_reset, domain destroy): drop every frame held. */
void evtchn_fifo_destroy(struct domain *d);
/* Restore: adopt the FIFO state an image names (its words already in guest RAM). */
int evtchn_fifo_restore_vcpu(struct vcpu *v, uint64_t gfn, uint32_t offset,
                             const uint32_t tail[EVTCHN_FIFO_MAX_QUEUES]);
int evtchn_fifo_restore_page(struct domain *d, uint64_t gfn);
struct json_object;
struct json_object *evtchn_fifo_vcpu_json(struct vcpu *v);
struct json_object *evtchn_fifo_port_json(struct event_domain *ev, uint32_t port);

/* ---- shared_info.c ---- */
int shared_info_init(struct domain *d);
void shared_info_vcpu_init(struct vcpu *v);     /* point at the legacy slot */
void shared_info_vcpu_fini(struct vcpu *v);     /* drop a registered frame */
/* VCPUOP_register_vcpu_info (ev->lock held). */
int vcpu_info_register(struct vcpu *v, uint64_t gfn, uint32_t offset);
/* Restore: the vcpu_info already in guest memory at gfn + offset (its contents kept). */
int vcpu_info_restore(struct vcpu *v, uint64_t gfn, uint32_t offset);
static inline struct vcpu_info *vcpu_info_of(struct vcpu *v)
{
    return __atomic_load_n(&v->ev->vcpu_info, __ATOMIC_ACQUIRE);
}
/* Xen system time: the VM's KVM clock, ns. */
uint64_t xen_system_time(struct domain *d);
/* Refresh v's vcpu_time_info. On v's own thread only (reads its TSC). */
void vcpu_time_update(struct vcpu *v);
void shared_info_update_wallclock(struct domain *d);

/* ---- upcall.c ---- */
/* evtchn_upcall_pending 0->1 on v and notify it (ev->lock held). */
void upcall_mark_pending(struct vcpu *v);
/* Make v look at its events now: wake it if blocked or polling, kick it out of KVM_RUN. */
void upcall_notify(struct vcpu *v);
/* Wake vCPUs polling on port (ev->lock held). */
void upcall_wake_pollers(struct domain *d, uint32_t port);
/* The callback vector if HVM_PARAM_CALLBACK_IRQ selects one, else 0. */
uint8_t upcall_callback_vector(const struct domain *d);

/* ---- vcpu_timer.c ---- */
int vcpu_timer_init(struct vcpu *v);
void vcpu_timer_fini(struct vcpu *v);
/* Arm v's timerfd to its earliest deadline (ev->lock held). */
void vcpu_timer_rearm(struct vcpu *v);
/* Watch a dom0 service's to_guest eventfd: readable raises port. Slot or -errno. */
int event_thread_watch_dom0(struct domain *d, uint32_t port, int fd);
void event_thread_unwatch(int slot);
/* The host's CLOCK_MONOTONIC in ns (util/clock.h). */
static inline uint64_t host_monotonic_ns(void)
{
    return mono_ns();
}

/* ---- runstate.c ---- */
/* Bring v's runstate accounting up to Xen system time `now` (ev->lock held). */
void runstate_account(struct vcpu *v, uint64_t now);
/* On v's own thread: write v's runstate to its registered area, if any. */
void runstate_update_area(struct vcpu *v);
long vcpu_register_runstate(struct hcall *hc, struct vcpu *v, uint64_t arg);
long vcpu_get_runstate(struct hcall *hc, struct vcpu *v, uint64_t arg);

/* ---- hc_vcpu.c ---- */
/* On v's own thread: apply a VCPUOP_initialise context, honour VCPUOP_down. */
void vcpu_bringup_before_run(struct vcpu *v);
/* vcpu_bringup.c: can KVM enter this VCPUOP_initialise context? 0 or -EINVAL. */
struct vcpu_hvm_context;
int vcpu_context_valid(const struct vcpu_hvm_context *c);

#endif
