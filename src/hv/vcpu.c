#include "util/clock.h"
#include "hv/vcpu.h"

#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xen/sched.h>

#include "hv/boot_regs.h"
#include "hv/cpuid.h"
#include "hv/domain.h"
#include "hv/event.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/platform_io.h"
#include "hv/vmcall_watch.h"
#include "util/log.h"

#define EFER_LMA (1ULL << 10)

int vcpu_init(struct vcpu *v, struct domain *d, unsigned id, char *err, size_t errlen)
{
    memset(v, 0, sizeof(*v));
    v->d = d;
    v->id = id;
    v->fd = ioctl(d->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        return -errno;
    }
    v->run = mmap(NULL, (size_t)host.vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                  v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        snprintf(err, errlen, "mmap of vCPU %u: %s", id, strerror(errno));
        return -errno;
    }
    struct kvm_cpuid2 *cpuid = cpuid_build(host.supported_cpuid, id, d->domid, d->tsc_khz);
    int rc = cpuid ? ioctl(v->fd, KVM_SET_CPUID2, cpuid) : -1;
    free(cpuid);
    if (rc < 0) {
        snprintf(err, errlen, "KVM_SET_CPUID2 for vCPU %u: %s", id, strerror(errno));
        return -errno;
    }
    if (host.has_sync_regs)
        v->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
    return 0;
}

void vcpu_fini(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, (size_t)host.vcpu_mmap_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

int vcpu_set_pvh_entry(struct vcpu *v, uint32_t entry, uint32_t start_info)
{
    struct kvm_sregs s;
    struct kvm_regs r;
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return -errno;
    pvh_boot_regs(&s, &r, entry, start_info);
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0 || ioctl(v->fd, KVM_SET_REGS, &r) < 0)
        return -errno;
    return 0;
}

static int vcpu_regs(struct vcpu *v, struct kvm_regs **regs, struct kvm_sregs **sregs,
                     struct kvm_regs *rbuf, struct kvm_sregs *sbuf)
{
    if (host.has_sync_regs) {
        *regs = &v->run->s.regs.regs;
        *sregs = &v->run->s.regs.sregs;
        return 0;
    }
    if (ioctl(v->fd, KVM_GET_REGS, rbuf) < 0 || ioctl(v->fd, KVM_GET_SREGS, sbuf) < 0)
        return -errno;
    *regs = rbuf;
    *sregs = sbuf;
    return 0;
}

static int vcpu_put_regs(struct vcpu *v, struct kvm_regs *regs)
{
    if (host.has_sync_regs) {
        v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
        return 0;
    }
    return ioctl(v->fd, KVM_SET_REGS, regs) < 0 ? -errno : 0;
}

int vcpu_get_paging(struct vcpu *v, struct guest_paging *pg)
{
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return -errno;
    *pg = (struct guest_paging){ .cr0 = s.cr0, .cr3 = s.cr3, .cr4 = s.cr4, .efer = s.efer };
    return 0;
}

/* Let KVM finish the exit we handled (advance past the out, inject a #GP...). */
static void complete_pending_exit(struct vcpu *v)
{
    v->run->immediate_exit = 1;
    if (ioctl(v->fd, KVM_RUN, 0) < 0 && errno != EINTR)
        log_warn("d%u v%u: completing exit: %s", v->d->domid, v->id, strerror(errno));
    v->exit_incomplete = false;
}

/*
 * The call a hypercall instruction makes, from the guest's registers: number in RAX,
 * arguments in the 64-bit (RDI RSI RDX R10 R8 R9) or 32-bit (EBX ECX EDX ESI EDI EBP)
 * registers. false if the registers cannot be read (the domain crashed).
 */
static bool hcall_from_regs(struct vcpu *v, struct hcall *hc, struct kvm_regs **regs,
                            struct kvm_regs *rbuf)
{
    struct kvm_regs *r = NULL;
    struct kvm_sregs sbuf, *s = NULL;
    if (vcpu_regs(v, &r, &s, rbuf, &sbuf)) {
        domain_crash(v->d, "v%u: cannot read registers", v->id);
        return false;
    }
    *hc = (struct hcall){
        .v = v,
        .d = v->d,
        .is64 = (s->efer & EFER_LMA) && s->cs.l,
        .paging = { .cr0 = s->cr0, .cr3 = s->cr3, .cr4 = s->cr4, .efer = s->efer },
        .gphys = p2m_gphys(&v->d->p2m),
    };
    hc->nr = hypercall_nr(r->rax, hc->is64);
    if (hc->is64) {
        hc->arg[0] = r->rdi; hc->arg[1] = r->rsi; hc->arg[2] = r->rdx;
        hc->arg[3] = r->r10; hc->arg[4] = r->r8;  hc->arg[5] = r->r9;
    } else {
        hc->arg[0] = (uint32_t)r->rbx; hc->arg[1] = (uint32_t)r->rcx;
        hc->arg[2] = (uint32_t)r->rdx; hc->arg[3] = (uint32_t)r->rsi;
        hc->arg[4] = (uint32_t)r->rdi; hc->arg[5] = (uint32_t)r->rbp;
    }
    *regs = r;
    return true;
}

/*
 * Continuation: let KVM retire the hypercall instruction first (where RIP lands after
 * it differs between KVM flavours), then step back onto it, insn_len bytes, with
 * RAX = the hypercall number and the updated arguments, as Xen does with its
 * hypercall instruction.
 */
static void hcall_continue(struct vcpu *v, const struct hcall *hc, unsigned insn_len)
{
    if (host.has_sync_regs)
        v->run->kvm_dirty_regs = 0;
    complete_pending_exit(v);
    struct kvm_regs now;
    if (ioctl(v->fd, KVM_GET_REGS, &now) < 0) {
        domain_crash(v->d, "v%u: cannot read registers", v->id);
        return;
    }
    now.rip -= insn_len;
    now.rax = hc->nr;
    if (hc->is64) {
        now.rdi = hc->arg[0]; now.rsi = hc->arg[1]; now.rdx = hc->arg[2];
        now.r10 = hc->arg[3]; now.r8 = hc->arg[4];  now.r9 = hc->arg[5];
    } else {
        now.rbx = (uint32_t)hc->arg[0]; now.rcx = (uint32_t)hc->arg[1];
        now.rdx = (uint32_t)hc->arg[2]; now.rsi = (uint32_t)hc->arg[3];
        now.rdi = (uint32_t)hc->arg[4]; now.rbp = (uint32_t)hc->arg[5];
    }
    if (ioctl(v->fd, KVM_SET_REGS, &now) < 0)
        domain_crash(v->d, "v%u: cannot write registers", v->id);
    /* The sync-regs copy in kvm_run is stale now; KVM refreshes it on the next exit. */
}

/* The port-I/O page's `out`: the result goes to RAX, nothing else changes. */
static void handle_hypercall(struct vcpu *v)
{
    struct kvm_regs rbuf, *r = NULL;
    struct hcall hc;
    if (!hcall_from_regs(v, &hc, &r, &rbuf))
        return;
    v->nr_hypercalls++;
    long ret = hypercall_dispatch(&hc);
    if (hc.continuation) {
        hcall_continue(v, &hc, XKVM_HYPERCALL_OUT_LEN);
        return;
    }
    r->rax = hc.is64 ? (uint64_t)ret : (uint32_t)ret;
    vcpu_put_regs(v, r);
}

/*
 * VMCALL/VMMCALL through KVM's Xen intercept (KVM_EXIT_XEN_HCALL): KVM read the
 * number and the arguments for us; the result goes back in the exit, and KVM puts it
 * in RAX and skips the instruction on the next KVM_RUN. As on Xen, only the guest's
 * kernel (CPL 0) may call.
 */
static void handle_xen_hcall(struct vcpu *v)
{
    struct kvm_xen_exit *x = &v->run->xen;
    v->exit_incomplete = true;
    if (x->type != KVM_EXIT_XEN_HCALL) {
        log_warn("d%u v%u: KVM Xen exit of type %u ignored", v->d->domid, v->id, x->type);
        return;
    }
    if (!__atomic_load_n(&v->d->guest_vmcall, __ATOMIC_RELAXED)) {
        __atomic_store_n(&v->d->guest_vmcall, true, __ATOMIC_RELAXED);
        log_info("d%u: the guest calls Xen with %s", v->d->domid,
                 host.native_vmmcall ? "VMMCALL" : "VMCALL");
    }
    struct kvm_regs rbuf, *r = NULL;
    struct hcall hc;
    if (!hcall_from_regs(v, &hc, &r, &rbuf))
        return;
    /* KVM's decoding is the one the instruction was made with. */
    hc.is64 = x->u.hcall.longmode;
    hc.nr = hypercall_nr(x->u.hcall.input, hc.is64);
    for (unsigned i = 0; i < 6; i++)
        hc.arg[i] = hc.is64 ? x->u.hcall.params[i] : (uint32_t)x->u.hcall.params[i];
    v->nr_hypercalls++;
    long ret = x->u.hcall.cpl ? -EPERM : hypercall_dispatch(&hc);
    x->u.hcall.result = hc.is64 ? (uint64_t)ret : (uint32_t)ret;
    if (hc.continuation)
        hcall_continue(v, &hc, XKVM_HYPERCALL_VMCALL_LEN);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    v->exit_incomplete = true;
    if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == XKVM_HYPERCALL_PORT &&
        run->io.size == 4 && run->io.count == 1) {
        handle_hypercall(v);
        return;
    }
    if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == XKVM_DEBUGCON_PORT) {
        /* Xen's HVM debug port: bytes go to the hypervisor-console (dmesg) log. */
        console_log_write(v->d, data, (size_t)run->io.size * run->io.count);
        return;
    }
    if (platform_io(v, run->io.direction == KVM_EXIT_IO_OUT, run->io.port, data,
                    run->io.size, run->io.count))
        return;
    if (run->io.direction == KVM_EXIT_IO_IN)   /* no device: the bus floats high */
        memset(data, 0xff, (size_t)run->io.size * run->io.count);
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct p2m *p = &v->d->p2m;
    v->exit_incomplete = true;
    /*
     * RAM whose memslot another vCPU is splitting this instant (p2m changes delete
     * and re-add a slot): do the access the slot would have done. Anything else is
     * unpopulated guest-physical memory: reads return all ones, writes are dropped.
     * So is a write to a read-only grant mapping (its KVM_MEM_READONLY slot exits).
     */
    uint32_t len = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : 0;
    bool write = run->mmio.is_write, violation = false, once = false;
    p2m_hold(p);
    /* Through the active altp2m view: an access it forbids is a violation (docs/altp2m.md). */
    uint8_t *ram = len ? p2m_ptr_view(p, run->mmio.phys_addr, len, write, &violation) : NULL;
    while (violation && !once) {
        p2m_release(p);
        bool recheck;
        if (!altp2m_violation_wait(v, run->mmio.phys_addr, write, &recheck))
            return;         /* dying */
        once = !recheck;    /* resumed: done once; switched: checked under the new view */
        p2m_hold(p);
        ram = p2m_ptr_view(p, run->mmio.phys_addr, len, write, &violation);
        if (violation && once)
            ram = p2m_ptr_view_once(p, run->mmio.phys_addr, len, write);
    }
    if (ram && run->mmio.is_write) {
        memcpy(ram, run->mmio.data, len);
        /* The frame written: through an altp2m remapping, the target's. */
        uint64_t at = (uint64_t)(ram - p->window);
        uint64_t first = at >> XKVM_PAGE_SHIFT;
        p2m_mark_dirty(p, first, ((at + len - 1) >> XKVM_PAGE_SHIFT) - first + 1);
    } else if (ram) {
        memcpy(run->mmio.data, ram, len);
    } else if (!run->mmio.is_write) {
        memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
    }
    p2m_release(p);
}

static void handle_msr(struct vcpu *v, bool write)
{
    struct kvm_run *run = v->run;
    v->exit_incomplete = true;
    run->msr.error = 1;      /* #GP unless handled */
    if (write && run->msr.index == XKVM_HYPERCALL_MSR) {
        uint64_t val = run->msr.data;
        /* The low 12 bits select the hypercall page; we have one. */
        if ((val & 0xfff) == 0 && hypercall_page_fill(v->d, val & ~0xfffULL) == 0)
            run->msr.error = 0;
        else
            log_guest_at(v->d, LOG_WARN, "d%u v%u: bad hypercall page MSR write %#llx",
                         v->d->domid, v->id,
                     (unsigned long long)val);
    }
}

/* Returns false when the vCPU can run no more (the domain crashed). */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    v->nr_exits++;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        return true;
    case KVM_EXIT_XEN:
        handle_xen_hcall(v);
        return true;
    case KVM_EXIT_X86_RDMSR:
        handle_msr(v, false);
        return true;
    case KVM_EXIT_X86_WRMSR:
        handle_msr(v, true);
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:  /* event_before_run injects the upcall now */
        return true;
    case KVM_EXIT_SHUTDOWN:
        if (!vmcall_verdict_at_rip(v))
            domain_triple_fault(v->d, v->id);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
            domain_shutdown(v->d, SHUTDOWN_reboot);
        else
            domain_shutdown(v->d, SHUTDOWN_poweroff);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        if (vmcall_verdict_at_rip(v))
            return false;
        domain_crash(v->d, "v%u: KVM internal error, suberror %u", v->id,
                     run->internal.suberror);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        domain_crash(v->d, "v%u: VM entry failed, reason %#llx", v->id,
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    default:
        domain_crash(v->d, "v%u: unexpected KVM exit %u", v->id, run->exit_reason);
        return false;
    }
}

/*
 * Park while the domain is paused. Before parking, the exit last handled is completed
 * so the parked vCPU sits at an instruction boundary with its state final.
 * Returns false when the domain is dying.
 */
static bool vcpu_wait_runnable(struct vcpu *v)
{
    struct domain *d = v->d;
    pthread_mutex_lock(&d->lock);
    while (d->pause_count > 0 && !d->dying) {
        if (v->exit_incomplete) {
            pthread_mutex_unlock(&d->lock);
            complete_pending_exit(v);
            pthread_mutex_lock(&d->lock);
            continue;
        }
        v->parked = true;
        d->nr_parked++;
        pthread_cond_broadcast(&d->cond);
        while (d->pause_count > 0 && !d->dying)
            pthread_cond_wait(&d->cond, &d->lock);
        d->nr_parked--;
        v->parked = false;
    }
    bool alive = !d->dying;
    /* Cleared under the lock: a pauser sets it under the lock before kicking. */
    v->run->immediate_exit = 0;
    pthread_mutex_unlock(&d->lock);
    return alive;
}

/* Take a pending kick off the queue: it has done its job of interrupting KVM_RUN. */
static void vcpu_eat_kicks(void)
{
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, VCPU_KICK_SIGNAL);
    struct timespec zero = { 0, 0 };
    while (sigtimedwait(&kick, NULL, &zero) > 0)
        ;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct domain *d = v->d;
    char name[16];
    snprintf(name, sizeof(name), "d%uv%u", d->domid, v->id);
    pthread_setname_np(pthread_self(), name);
    __atomic_store_n(&v->tid, (int)gettid(), __ATOMIC_RELEASE);

    /*
     * The kick signal stays blocked in user space and is unblocked only inside
     * KVM_RUN: a kick sent while this thread handles an exit stays pending and makes
     * the next KVM_RUN return at once, so no kick is ever lost.
     */
    union {
        struct kvm_signal_mask m;
        uint8_t bytes[sizeof(struct kvm_signal_mask) + 8];
    } in_run;
    sigset_t during;
    pthread_sigmask(SIG_BLOCK, NULL, &during);
    sigdelset(&during, VCPU_KICK_SIGNAL);
    in_run.m.len = 8;   /* the kernel's sigset: 64 bits */
    memcpy(in_run.m.sigset, &during, 8);
    if (ioctl(v->fd, KVM_SET_SIGNAL_MASK, &in_run) < 0)
        log_err("d%u v%u: KVM_SET_SIGNAL_MASK: %s", d->domid, v->id, strerror(errno));

    bool runnable = true;
    while (vcpu_wait_runnable(v)) {
        if (!runnable) {
            /* Crashed: stay parked until destroyed. */
            pthread_mutex_lock(&d->lock);
            while (!d->dying && d->pause_count == 0)
                pthread_cond_wait(&d->cond, &d->lock);
            pthread_mutex_unlock(&d->lock);
            continue;
        }
        if (__builtin_expect(v->throttle_timer_on ||
                             __atomic_load_n(&d->throttle_pct, __ATOMIC_RELAXED), 0) &&
            vcpu_throttle_point(v))
            continue;       /* slept: a pause may have come meanwhile */
        if (!v->first_run_ns)
            v->first_run_ns = mono_ns();
        event_before_run(v);
        int rc = ioctl(v->fd, KVM_RUN, 0);
        v->exit_incomplete = false;
        if (rc < 0) {
            if (errno == EINTR) {
                vcpu_eat_kicks();
                /* The VMCALL watch asked where a vCPU that makes no exits is. */
                if (__atomic_exchange_n(&v->probe_rip, false, __ATOMIC_ACQ_REL) &&
                    vmcall_verdict_at_rip(v))
                    runnable = false;
                continue;
            }
            if (errno == EAGAIN)
                continue;
            /* EFAULT: KVM could not map a page writable (docs/hypervisor.md). */
            domain_crash(d, "v%u: KVM_RUN: %s%s", v->id, strerror(errno), errno != EFAULT ? "" :
                         " (a write to a page given back or a read-only grant mapping?)");
            runnable = false;
            continue;
        }
        runnable = handle_exit(v);
    }

    vcpu_throttle_stop(v);
    struct timespec cpu;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    pthread_mutex_lock(&d->lock);
    v->cpu_ns_done += (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec;
    __atomic_store_n(&v->tid, 0, __ATOMIC_RELEASE);
    d->nr_threads--;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

uint64_t vcpu_cpu_ns(const struct vcpu *v)
{
    uint64_t done = __atomic_load_n(&v->cpu_ns_done, __ATOMIC_RELAXED);
    int tid = __atomic_load_n(&v->tid, __ATOMIC_ACQUIRE);
    if (!tid)
        return done;
    /* schedstat's first field: time on a CPU, in ns (what CLOCK_THREAD_CPUTIME_ID says). */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "re");
    unsigned long long ns = 0;
    if (f) {
        if (fscanf(f, "%llu", &ns) != 1)
            ns = 0;
        fclose(f);
    }
    return done + ns;
}

int vcpu_start(struct vcpu *v)
{
    int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (rc)
        return -rc;
    v->thread_started = true;
    return 0;
}

void vcpu_kick(struct vcpu *v)
{
    v->run->immediate_exit = 1;
    if (v->thread_started)
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    event_vcpu_kicked(v);   /* a vCPU waiting in xkvmd (SCHEDOP_poll, down) re-checks */
}
