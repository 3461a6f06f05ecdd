/*
 * Xen's vCPU timers (VCPUOP_set_singleshot_timer, set_periodic_timer), delivered as
 * VIRQ_TIMER, and the host's event thread that runs them.
 *
 * One event thread per host waits in epoll on: a timerfd per vCPU, armed to the
 * earliest of its singleshot deadline, its next periodic tick and an upcall retry;
 * and the to_guest eventfds of dom0 services. Watched fds sit in slots; an event names
 * a slot, whose domid is looked up again with domain_get, so a domain being destroyed
 * is never touched.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/vcpu.h"
#include "util/log.h"

enum watch_kind { WATCH_VCPU_TIMER = 1, WATCH_DOM0_PORT };

struct watch_slot {
    uint8_t kind;           /* 0: free */
    uint16_t domid;
    uint32_t idx;           /* vCPU id or port */
    int fd;
};

static struct {
    pthread_once_t once;
    int start_error;
    int epfd;
    pthread_mutex_t lock;
    struct watch_slot *slots;
    unsigned nr_slots;
    /* Live update: while frozen the thread delivers nothing (timers, dom0 events). */
    bool frozen, busy;
    pthread_cond_t changed;
} et = { .once = PTHREAD_ONCE_INIT, .epfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
         .changed = PTHREAD_COND_INITIALIZER };

void event_thread_freeze(bool frozen)
{
    pthread_mutex_lock(&et.lock);
    et.frozen = frozen;
    pthread_cond_broadcast(&et.changed);
    while (frozen && et.busy)
        pthread_cond_wait(&et.changed, &et.lock);
    pthread_mutex_unlock(&et.lock);
}

static int watch(uint8_t kind, uint16_t domid, uint32_t idx, int fd)
{
    pthread_mutex_lock(&et.lock);
    unsigned s = 0;
    while (s < et.nr_slots && et.slots[s].kind)
        s++;
    if (s == et.nr_slots) {
        unsigned n = et.nr_slots ? et.nr_slots * 2 : 64;
        struct watch_slot *ns = realloc(et.slots, n * sizeof(*ns));
        if (!ns) {
            pthread_mutex_unlock(&et.lock);
            return -ENOMEM;
        }
        memset(ns + et.nr_slots, 0, (n - et.nr_slots) * sizeof(*ns));
        et.slots = ns;
        et.nr_slots = n;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = s };
    if (epoll_ctl(et.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        pthread_mutex_unlock(&et.lock);
        return err;
    }
    et.slots[s] = (struct watch_slot){ .kind = kind, .domid = domid, .idx = idx, .fd = fd };
    pthread_mutex_unlock(&et.lock);
    return (int)s;
}

void event_thread_unwatch(int slot)
{
    pthread_mutex_lock(&et.lock);
    if (slot >= 0 && (unsigned)slot < et.nr_slots && et.slots[slot].kind) {
        epoll_ctl(et.epfd, EPOLL_CTL_DEL, et.slots[slot].fd, NULL);
        et.slots[slot].kind = 0;
    }
    pthread_mutex_unlock(&et.lock);
}

int event_thread_watch_dom0(struct domain *d, uint32_t port, int fd)
{
    return watch(WATCH_DOM0_PORT, d->domid, port, fd);
}

static uint64_t host_time_of(uint64_t xen_deadline, uint64_t xen_now, uint64_t mono_now)
{
    return mono_now + (xen_deadline > xen_now ? xen_deadline - xen_now : 0);
}

void vcpu_timer_rearm(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (e->timer_fd < 0)
        return;
    uint64_t at = 0;
    if (e->singleshot_deadline || e->periodic_period) {
        uint64_t xnow = xen_system_time(v->d), mnow = host_monotonic_ns();
        if (e->singleshot_deadline)
            at = host_time_of(e->singleshot_deadline, xnow, mnow);
        if (e->periodic_period) {
            uint64_t p = host_time_of(e->periodic_next, xnow, mnow);
            at = at && at < p ? at : p;
        }
    }
    if (e->retry_at && (!at || e->retry_at < at))
        at = e->retry_at;
    struct itimerspec its = { 0 };
    if (at) {
        its.it_value.tv_sec = (time_t)(at / 1000000000ull);
        its.it_value.tv_nsec = (long)(at % 1000000000ull);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(e->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void kick_thread(struct vcpu *v)
{
    struct domain *d = v->d;
    pthread_mutex_lock(&d->lock);
    if (!d->dying && v->thread_started)
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    pthread_mutex_unlock(&d->lock);
}

/* v's timerfd expired: fire whatever is due. */
static void vcpu_timer_fire(struct vcpu *v)
{
    struct domain *d = v->d;
    struct vcpu_event *e = v->ev;
    bool fire = false, kick = false;
    pthread_mutex_lock(&d->ev->lock);
    uint64_t now = xen_system_time(d);
    if (e->singleshot_deadline && now >= e->singleshot_deadline) {
        e->singleshot_deadline = 0;
        fire = true;
    }
    if (e->periodic_period && now >= e->periodic_next) {
        fire = true;
        /* As Xen's vcpu_periodic_timer_work: the next tick is a period after this
         * one fired, so a late tick never brings the next one closer (nor are missed
         * ticks made up). */
        e->periodic_next = now + e->periodic_period;
    }
    if (e->retry_at && host_monotonic_ns() >= e->retry_at) {
        e->retry_at = 0;
        kick = true;
    }
    vcpu_timer_rearm(v);
    if (fire) {
        e->nr_timer_events++;
        __atomic_store_n(&e->time_dirty, true, __ATOMIC_RELEASE);
        uint32_t port = e->virq_port[VIRQ_TIMER];
        if (port && d->ev->ports[port].state == ECS_VIRQ)
            evtchn_set_pending_locked(d, port);
        kick = true;    /* also to refresh its vcpu_time_info */
    }
    pthread_mutex_unlock(&d->ev->lock);
    if (kick)
        kick_thread(v);
}

static void *event_thread(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "xkvmd-events");
    struct epoll_event evs[32];
    for (;;) {
        int n = epoll_wait(et.epfd, evs, 32, -1);
        if (n < 0) {
            if (errno != EINTR)
                log_err("event thread: epoll_wait: %s", strerror(errno));
            continue;
        }
        pthread_mutex_lock(&et.lock);
        while (et.frozen)
            pthread_cond_wait(&et.changed, &et.lock);
        et.busy = true;
        pthread_mutex_unlock(&et.lock);
        for (int i = 0; i < n; i++) {
            unsigned s = (unsigned)evs[i].data.u64;
            struct watch_slot w = { 0 };
            pthread_mutex_lock(&et.lock);
            if (s < et.nr_slots && et.slots[s].kind) {
                w = et.slots[s];
                uint64_t count;
                ssize_t r = read(w.fd, &count, sizeof(count));   /* drain; fd is open */
                (void)r;
            }
            pthread_mutex_unlock(&et.lock);
            if (!w.kind)
                continue;
            struct domain *d = domain_get(w.domid);
            if (!d)
                continue;
            if (d->ev && w.kind == WATCH_VCPU_TIMER && w.idx < d->nr_vcpus &&
                d->vcpus[w.idx].ev)
                vcpu_timer_fire(&d->vcpus[w.idx]);
            else if (d->ev && w.kind == WATCH_DOM0_PORT)
                evtchn_dom0_raise(d, w.idx, (int)s);
            domain_put(d);
        }
        pthread_mutex_lock(&et.lock);
        et.busy = false;
        pthread_cond_broadcast(&et.changed);
        pthread_mutex_unlock(&et.lock);
    }
    return NULL;
}

static void start_event_thread(void)
{
    et.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (et.epfd < 0) {
        et.start_error = -errno;
        return;
    }
    /* The thread must never take a vCPU kick (it is sent to vCPU threads only). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, event_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        et.start_error = -rc;
        return;
    }
    pthread_detach(t);
}

int event_host_init(void)
{
    pthread_once(&et.once, start_event_thread);
    return et.start_error;
}

int vcpu_timer_init(struct vcpu *v)
{
    pthread_once(&et.once, start_event_thread);
    if (et.start_error)
        return et.start_error;
    struct vcpu_event *e = v->ev;
    e->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (e->timer_fd < 0)
        return -errno;
    int slot = watch(WATCH_VCPU_TIMER, v->d->domid, v->id, e->timer_fd);
    if (slot < 0)
        return slot;
    e->timer_slot = slot;
    return 0;
}

void vcpu_timer_fini(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (e->timer_slot >= 0)
        event_thread_unwatch(e->timer_slot);
    if (e->timer_fd >= 0)
        close(e->timer_fd);
    e->timer_slot = e->timer_fd = -1;
}
