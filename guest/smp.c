/*
 * Secondary vCPUs the Xen HVM way: VCPUOP_initialise with a vcpu_hvm_context in
 * 64-bit mode (our CR0/CR3/CR4/EFER, RIP = ap_entry, RSP = its own stack, RDI = its
 * id), then VCPUOP_up. The new vCPU loads its own GDT copy and TSS, the shared IDT
 * and GS base (trap_init_cpu), enables its LAPIC and upcall vector (pv_init_cpu), and
 * idles in sti;hlt waiting for work posted by CPU 0 (smp_call), woken through an IPI
 * event channel bound to it. Needs pv_init() first.
 */
#include "pv.h"
#include "xtest.h"

#include <xen/hvm/hvm_vcpu.h>

#define AP_STACK_SIZE 16384

struct cpu cpus[MAX_CPUS];
unsigned nr_cpus_up = 1;
void (*smp_pre_up_hook)(unsigned id);

static uint8_t ap_stacks[MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(4096)));

static noreturn void idle_loop(struct cpu *c)
{
    for (;;) {
        irq_disable();
        while (c->work_done == c->work_seq)
            asm volatile("sti; hlt; cli" ::: "memory");
        irq_enable();
        uint64_t seq = c->work_seq;

        c->work_fn(c->work_arg);
        c->work_done = seq;
        if (cpus[0].wake_port)
            evtchn_send(cpus[0].wake_port);
    }
}

noreturn void ap_entry(unsigned id);
noreturn void ap_entry(unsigned id)
{
    struct cpu *c = &cpus[id];

    trap_init_cpu(id);                          /* GDT, segments, TSS, IDT, GS base */
    long rc = pv_init_cpu();
    if (rc)
        printf("xkvm-guest: vCPU %u: HVMOP_set_evtchn_upcall_vector = %ld\n", id, rc);
    c->online = 1;
    if (cpus[0].wake_port)
        evtchn_send(cpus[0].wake_port);
    idle_loop(c);
}

long smp_bringup(unsigned id)
{
    struct cpu *c = &cpus[id];
    long rc;

    if (!id || id >= MAX_CPUS)
        return -XEN_EINVAL;
    pv_init();
    c->self = c;
    c->id = id;
    c->vi = id < XEN_LEGACY_MAX_VCPUS ? &shinfo->vcpu_info[id] : NULL;
    if (!cpus[0].wake_port) {
        rc = evtchn_bind_ipi(0, &cpus[0].wake_port);
        if (rc)
            return rc;
        evtchn_attach(cpus[0].wake_port, 0, NULL, NULL);
    }
    rc = evtchn_bind_ipi(id, &c->wake_port);
    if (rc)
        return rc;
    evtchn_attach(c->wake_port, id, NULL, NULL);
    if (smp_pre_up_hook)
        smp_pre_up_hook(id);

    struct vcpu_hvm_context ctx = { .mode = VCPU_HVM_MODE_64B };
    struct vcpu_hvm_x86_64 *r = &ctx.cpu_regs.x86_64;

    r->rip = (uint64_t)(uintptr_t)ap_entry;
    r->rsp = (uint64_t)(uintptr_t)(ap_stacks[id] + AP_STACK_SIZE) - 8;
    r->rdi = id;
    r->rflags = 0x2;
    r->cr0 = read_cr0();
    r->cr3 = read_cr3();
    r->cr4 = read_cr4();
    r->efer = rdmsr(MSR_EFER);
    rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, id, &ctx);
    if (rc) {
        printf("xkvm-guest: VCPUOP_initialise(%u) = %ld\n", id, rc);
        return rc;
    }
    rc = HYPERVISOR_vcpu_op(VCPUOP_up, id, NULL);
    if (rc) {
        printf("xkvm-guest: VCPUOP_up(%u) = %ld\n", id, rc);
        return rc;
    }
    if (!wait_ge(&c->online, 1, 5000)) {
        printf("xkvm-guest: vCPU %u did not come up within 5 s (is_up = %ld)\n", id,
               HYPERVISOR_vcpu_op(VCPUOP_is_up, id, NULL));
        return -XEN_ETIMEDOUT;
    }
    nr_cpus_up++;
    return 0;
}

bool smp_call(unsigned id, void (*fn)(void *), void *arg, uint64_t timeout_ms)
{
    struct cpu *c = &cpus[id];

    if (!c->online)
        return false;
    c->work_fn = fn;
    c->work_arg = arg;
    barrier();
    uint64_t seq = c->work_seq + 1;

    c->work_seq = seq;
    evtchn_send(c->wake_port);
    return wait_ge(&c->work_done, seq, timeout_ms);
}

unsigned smp_nr_vcpus(void)
{
    unsigned n = 0;

    while (n < MAX_CPUS && HYPERVISOR_vcpu_op(VCPUOP_is_up, n, NULL) >= 0)
        n++;
    return n;
}
