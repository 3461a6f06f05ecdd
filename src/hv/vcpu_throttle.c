/*
 * The vCPU throttle of auto-converge (docs/migration.md, "Convergence"). While a
 * domain's throttle is P percent, each of its vCPU threads runs for a slice of
 * VCPU_THROTTLE_SLICE_NS and then stays out of KVM_RUN for SLICE * P / (100 - P), as
 * QEMU's cpu-throttle does. A POSIX timer of the thread's own kicks it out of KVM_RUN
 * once a slice, so a vCPU that makes no exits is throttled too; a halted vCPU is
 * throttled as well (its wake-up waits for the end of its sleep), which is what slows
 * a guest that dirties memory in bursts between idle periods. A pause, the domain's
 * end or the throttle being lifted ends a sleep at once. When the throttle is off the
 * run loop pays one load per KVM_RUN.
 */
#include "util/clock.h"
#include "hv/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/domain.h"
#include "util/log.h"

#define VCPU_THROTTLE_SLICE_NS (10 * 1000 * 1000ull)

void domain_set_throttle(struct domain *d, unsigned pct)
{
    if (pct > VCPU_THROTTLE_MAX_PCT)
        pct = VCPU_THROTTLE_MAX_PCT;
    pthread_mutex_lock(&d->lock);
    unsigned old = d->throttle_pct;
    __atomic_store_n(&d->throttle_pct, pct, __ATOMIC_RELEASE);
    if (pct && !old) {
        /* Out of KVM_RUN once, to arm each thread's timer (vcpu_throttle_point). */
        for (unsigned i = 0; i < d->nr_vcpus; i++)
            if (__atomic_load_n(&d->vcpus[i].tid, __ATOMIC_ACQUIRE))
                pthread_kill(d->vcpus[i].thread, VCPU_KICK_SIGNAL);
    }
    pthread_cond_broadcast(&d->cond);      /* sleepers re-check (lifted, shorter) */
    pthread_mutex_unlock(&d->lock);
    if (pct != old)
        log_info("d%u: vCPU throttle %u%% -> %u%%", d->domid, old, pct);
}

unsigned domain_throttle(struct domain *d)
{
    return __atomic_load_n(&d->throttle_pct, __ATOMIC_ACQUIRE);
}

static void timer_arm(struct vcpu *v)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = VCPU_KICK_SIGNAL;
    sev._sigev_un._tid = gettid();     /* sigev_notify_thread_id: glibc 2.36 has no name */
    if (timer_create(CLOCK_MONOTONIC, &sev, &v->throttle_timer)) {
        /* Once: the throttle then acts only at the exits the vCPU makes. */
        if (!v->throttle_timer_failed)
            log_warn("d%u v%u: throttle timer: %s", v->d->domid, v->id, strerror(errno));
        v->throttle_timer_failed = true;
        return;
    }
    struct itimerspec its = {
        .it_interval = { 0, (long)VCPU_THROTTLE_SLICE_NS },
        .it_value = { 0, (long)VCPU_THROTTLE_SLICE_NS },
    };
    timer_settime(v->throttle_timer, 0, &its, NULL);
    v->throttle_timer_on = true;
}

void vcpu_throttle_stop(struct vcpu *v)
{
    if (v->throttle_timer_on)
        timer_delete(v->throttle_timer);
    v->throttle_timer_on = false;
    v->throttle_run_until = 0;
}

/* Sleep until deadline (CLOCK_MONOTONIC ns), a pause, the end, or the throttle lifted. */
static void throttle_sleep(struct vcpu *v, uint64_t deadline)
{
    struct domain *d = v->d;
    pthread_mutex_lock(&d->lock);
    while (!d->dying && d->pause_count == 0 && d->throttle_pct) {
        uint64_t now = mono_ns();
        if (now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);     /* d->cond waits on the real clock */
        uint64_t at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                      (deadline - now);
        ts = (struct timespec){ (time_t)(at / 1000000000ull), (long)(at % 1000000000ull) };
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
}

bool vcpu_throttle_point(struct vcpu *v)
{
    unsigned pct = domain_throttle(v->d);
    if (!pct) {
        vcpu_throttle_stop(v);
        return false;
    }
    if (!v->throttle_timer_on && !v->throttle_timer_failed)
        timer_arm(v);
    uint64_t now = mono_ns();
    if (!v->throttle_run_until)
        v->throttle_run_until = now + VCPU_THROTTLE_SLICE_NS;
    if (now < v->throttle_run_until)
        return false;
    throttle_sleep(v, now + VCPU_THROTTLE_SLICE_NS * pct / (100 - pct));
    uint64_t after = mono_ns();
    __atomic_add_fetch(&v->throttled_ns, after - now, __ATOMIC_RELAXED);
    v->throttle_run_until = after + VCPU_THROTTLE_SLICE_NS;
    return true;
}
