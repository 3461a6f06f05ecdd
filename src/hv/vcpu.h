/* A vCPU: one thread running KVM_RUN and handling its exits. */
#ifndef XKVM_HV_VCPU_H
#define XKVM_HV_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "hv/guest_access.h"

struct domain;

struct vcpu {
    struct domain *d;
    unsigned id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    bool parked;
    bool exit_incomplete;   /* an I/O or MSR exit KVM finishes on the next KVM_RUN */
    uint64_t first_run_ns;  /* CLOCK_MONOTONIC at the first KVM_RUN */
    uint64_t nr_exits;
    uint64_t nr_hypercalls;
    int tid;                /* the vCPU thread's, while it runs; 0: none */
    uint64_t cpu_ns_done;   /* CPU time of this vCPU's threads that have ended */
    /* vmcall_watch.c: the exit count last seen, since when, and its request to look. */
    uint64_t watch_exits, watch_since_ns;
    bool probe_rip;
    /* vcpu_throttle.c: the thread's kick timer, the end of its slice, time held out. */
    timer_t throttle_timer;
    bool throttle_timer_on, throttle_timer_failed;
    uint64_t throttle_run_until, throttled_ns;
    /* migrate: VCPU_PLATFORM's intr_state, held from the PV restore to the arch one. */
    uint32_t restore_intr_state;

    /* altp2m_monitor.c: the access a view stopped, waiting for the monitor's answer. */
    bool alt_waiting;
    uint64_t alt_seq, alt_gpa, alt_rip;
    bool alt_write;
    unsigned alt_view;
    int alt_answer;             /* enum altp2m_answer */
    unsigned alt_switch_to;

    struct vcpu_event *ev;      /* event.h: vcpu_info, upcall, timers */
};

/* Signal used to kick a vCPU thread out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

int vcpu_init(struct vcpu *v, struct domain *d, unsigned id, char *err, size_t errlen);
/* Registers for the PVH entry: 32-bit flat protected mode, EBX = start_info. */
int vcpu_set_pvh_entry(struct vcpu *v, uint32_t entry, uint32_t start_info);
int vcpu_start(struct vcpu *v);
/* Make the vCPU leave KVM_RUN soon. Caller holds d->lock. */
void vcpu_kick(struct vcpu *v);
/* CPU time the vCPU's threads have used (host nanoseconds, user and system). */
uint64_t vcpu_cpu_ns(const struct vcpu *v);
/* After the thread has exited. */
void vcpu_fini(struct vcpu *v);

/*
 * vcpu_throttle.c: auto-converge's throttle. domain_set_throttle(d, P): each vCPU
 * thread stays out of KVM_RUN for P% of the time (0: off, at most
 * VCPU_THROTTLE_MAX_PCT). vcpu_throttle_point runs on the vCPU thread before KVM_RUN
 * while the throttle is on or its timer armed; true if it slept.
 */
#define VCPU_THROTTLE_MAX_PCT 99
void domain_set_throttle(struct domain *d, unsigned pct);
unsigned domain_throttle(struct domain *d);
bool vcpu_throttle_point(struct vcpu *v);
/* On the vCPU thread as it ends: the timer goes. */
void vcpu_throttle_stop(struct vcpu *v);

/* vcpu_debug.c: KVM's view of a vCPU (mp_state, RIP, IF, LAPIC vectors) as JSON.
 * Only while the domain is paused and every vCPU thread is parked. */
struct json_object *vcpu_kvm_state_json(struct vcpu *v);

/* The vCPU's current paging registers, for translating its linear addresses. */
int vcpu_get_paging(struct vcpu *v, struct guest_paging *pg);

#endif
