/*
 * The VMCALL verdict on hosts without KVM's Xen intercept: see vmcall_watch.h and
 * docs/hypervisor.md, "A guest this host cannot run".
 */
#include "hv/vmcall_watch.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/guest_access.h"
#include "hv/hv.h"
#include "hv/hypercall_page.h"
#include "hv/vcpu.h"
#include "util/clock.h"
#include "util/log.h"

#define EFER_LMA (1ULL << 10)

bool vmcall_verdict_at_rip(struct vcpu *v)
{
    if (host.transport == HCALL_TRANSPORT_INTERCEPT)
        return false;
    struct kvm_regs r;
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return false;
    /* A linear address: CS's base applies outside 64-bit mode (real mode, 32-bit). */
    bool is64 = (s.efer & EFER_LMA) && s.cs.l;
    uint64_t linear = is64 ? r.rip : (uint32_t)(s.cs.base + r.rip);
    struct guest_paging pg = { .cr0 = s.cr0, .cr3 = s.cr3, .cr4 = s.cr4, .efer = s.efer };
    struct gphys gp = p2m_gphys(&v->d->p2m);
    uint8_t insn[3];
    if (copy_from_guest(&gp, &pg, insn, linear, sizeof(insn)) ||
        !hypercall_insn_is_vmcall(insn))
        return false;
    log_err("d%u v%u: %s at RIP %#llx (RAX %llu): this host cannot intercept it%s",
            v->d->domid, v->id, insn[2] == 0xd9 ? "VMMCALL" : "VMCALL",
            (unsigned long long)r.rip, (unsigned long long)r.rax,
            host.transport_port_io_only ? " (xkvmd --hypercall-transport port-io)" : "");
    domain_crash(v->d, VMCALL_VERDICT_FMT, host.kvm_module);
    return true;
}

/* Ask a running vCPU that made no exit for a while to look at its RIP (d->lock held). */
static void watch_vcpu(struct vcpu *v, uint64_t now)
{
    uint64_t exits = __atomic_load_n(&v->nr_exits, __ATOMIC_RELAXED);
    if (exits != v->watch_exits || v->parked || !v->tid || !v->watch_since_ns) {
        v->watch_exits = exits;
        v->watch_since_ns = now;
        return;
    }
    if (now - v->watch_since_ns < VMCALL_WATCH_STALL_S * 1000000000ull)
        return;
    v->watch_since_ns = now;    /* once per stall period, not every second */
    /*
     * Only the signal: no immediate_exit, no event wake-up, so a vCPU that waits in
     * xkvmd (SCHEDOP_block) is not woken. The signal is unblocked only inside KVM_RUN:
     * it interrupts it now, or the next one at once.
     */
    __atomic_store_n(&v->probe_rip, true, __ATOMIC_RELEASE);
    syscall(SYS_tgkill, getpid(), v->tid, VCPU_KICK_SIGNAL);
}

static void watch_domain(struct domain *d, uint64_t now)
{
    pthread_mutex_lock(&d->lock);
    bool running = d->pause_count == 0 && !d->dying && d->shutdown_code < 0;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu *v = &d->vcpus[i];
        if (running)
            watch_vcpu(v, now);
        else
            v->watch_since_ns = 0;
    }
    pthread_mutex_unlock(&d->lock);
}

static void *watch_thread(void *arg)
{
    (void)arg;
    for (;;) {
        sleep(1);
        uint64_t now = mono_ns();
        for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++) {
            if (!__atomic_load_n(&host.domains[id], __ATOMIC_RELAXED))
                continue;
            struct domain *d = domain_get(id);
            if (!d)
                continue;
            watch_domain(d, now);
            domain_put(d);
        }
    }
    return NULL;
}

int vmcall_watch_start(void)
{
    if (host.transport == HCALL_TRANSPORT_INTERCEPT)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);     /* signals are the main loop's */
    pthread_t t;
    int rc = pthread_create(&t, NULL, watch_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    pthread_detach(t);
    pthread_setname_np(t, "vmcall-watch");
    return 0;
}
