/*
 * The guest's PV runtime: what a Xen HVM/PVH guest kernel sets up to use Xen's
 * event and time ABIs (and what xkvmd must provide for it).
 *
 *   per-CPU data   struct cpu, reached through GS base (smp.c, traps.c)
 *   lapic.c        local APIC: enable, EOI, a one-shot watchdog timer
 *   evtchn.c       shared_info (XENMAPSPACE_shared_info), 2-level event channels,
 *                  upcalls (HVM_PARAM_CALLBACK_IRQ vector or per-vCPU upcall vector),
 *                  Xen system time (vcpu_time_info), waiting (sti;hlt or SCHEDOP_block)
 *   smp.c          secondary vCPUs: VCPUOP_initialise (vcpu_hvm_context, 64-bit) + up
 *   gnttab.c       grant table v1 set-up (XENMAPSPACE_grant_table)
 *
 * Command-line words it reads: upcall=callback|vector (default callback),
 * wait=hlt|block (default hlt), apic=auto|xapic (default auto: x2APIC if CPUID has it).
 */
#ifndef XKVM_GUEST_PV_H
#define XKVM_GUEST_PV_H

#include "guest.h"
#include "hypercall.h"

#include <xen/errno.h>

#define MAX_CPUS 8
#define EVTCHN_WORDS 64                         /* 2-level: 64 words of 64 bits */
#define EVTCHN_NR_PORTS (EVTCHN_WORDS * 64)     /* 4096 */

/* Vectors. The watchdog's priority class (0xf) is above the upcalls' (0xe), so it
 * still arrives if a hypervisor leaves an upcall's ISR bit set. */
#define VEC_UPCALL_CALLBACK 0xe0                /* HVM_PARAM_CALLBACK_IRQ, no EOI */
#define VEC_UPCALL_PERCPU   0xe1                /* HVMOP_set_evtchn_upcall_vector, EOI */
#define VEC_WATCHDOG        0xf0                /* LAPIC timer */
#define VEC_SPURIOUS        0xff

/* ---- per-CPU data (GS base points at the CPU's struct cpu) -------------------- */
struct cpu {
    struct cpu *self;                           /* %gs:0 */
    unsigned id;
    volatile uint64_t online;                   /* 1 once it runs its idle loop */
    struct vcpu_info *vi;                       /* legacy slot or registered one */
    uint64_t port_mask[EVTCHN_WORDS];           /* ports this CPU handles */
    volatile uint64_t nr_upcalls;
    volatile uint64_t nr_watchdog;
    volatile bool watchdog_fired;
    uint32_t wake_port;                         /* IPI port bound to this CPU */
    /* Work posted to a secondary CPU (smp_call). */
    void (*volatile work_fn)(void *);
    void *volatile work_arg;
    volatile uint64_t work_seq, work_done;
};
extern struct cpu cpus[MAX_CPUS];
extern unsigned nr_cpus_up;                     /* CPUs online, 1 + secondaries */

static inline struct cpu *this_cpu(void)
{
    struct cpu *c;
    asm volatile("mov %%gs:0, %0" : "=r"(c));
    return c;
}

#define MSR_GS_BASE     0xc0000101
#define MSR_EFER        0xc0000080
#define MSR_APIC_BASE   0x1b

static inline uint64_t read_cr0(void) { uint64_t v; asm volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr4(void) { uint64_t v; asm volatile("mov %%cr4, %0" : "=r"(v)); return v; }

/* Atomic bit operations on shared memory (Xen writes the same words). */
static inline void set_bit64(volatile uint64_t *w, unsigned b)
{
    __atomic_fetch_or(w, 1ULL << b, __ATOMIC_SEQ_CST);
}
static inline void clear_bit64(volatile uint64_t *w, unsigned b)
{
    __atomic_fetch_and(w, ~(1ULL << b), __ATOMIC_SEQ_CST);
}
static inline bool test_bit64(const volatile uint64_t *w, unsigned b)
{
    return (*w >> b) & 1;
}

/* ---- traps.c: descriptor tables of a secondary CPU ------------------------------ */
void trap_init_cpu(unsigned id);

/* ---- lapic.c ------------------------------------------------------------------------ */
void lapic_init(void);                          /* this CPU: enable (SVR), handlers */
void lapic_eoi(void);
bool lapic_x2apic(void);
uint32_t lapic_id(void);
/* One-shot watchdog on this CPU: sets this_cpu()->watchdog_fired after ~ms. */
void watchdog_arm(uint64_t ms);
void watchdog_stop(void);

/* ---- evtchn.c --------------------------------------------------------------------- */
enum upcall_mode { UPCALL_CALLBACK, UPCALL_VECTOR };
enum wait_mode { WAIT_HLT, WAIT_BLOCK };
extern enum upcall_mode upcall_mode;
extern enum wait_mode wait_mode;
extern struct shared_info *shinfo;
extern uint16_t self_domid;                     /* from CPUID base+4, or DOMID_SELF */

/* Map shared_info, mask every port, set up the upcall on CPU 0, LAPIC, time.
 * Fails the test (xtest_fail) on any error. Safe to call twice. */
void pv_init(void);
/* Per secondary CPU (smp.c calls it): LAPIC and its upcall vector. */
int pv_init_cpu(void);
const char *upcall_mode_name(void);

typedef void (*evtchn_handler_t)(uint32_t port, void *arg);
/* Route `port` to `cpu` (only there does the scan handle it) with handler h
 * (may be NULL: just counted), then EVTCHNOP_unmask it. */
void evtchn_attach(uint32_t port, unsigned cpu, evtchn_handler_t h, void *arg);
void evtchn_detach(uint32_t port);             /* mask locally, forget the handler */
extern volatile uint64_t evtchn_count[EVTCHN_NR_PORTS];     /* upcalls handled, per port */
extern volatile uint8_t evtchn_last_cpu[EVTCHN_NR_PORTS];

long evtchn_alloc_unbound(domid_t remote, uint32_t *port);
long evtchn_bind_interdomain(domid_t rdom, uint32_t rport, uint32_t *lport);
long evtchn_bind_virq(uint32_t virq, uint32_t vcpu, uint32_t *port);
long evtchn_bind_ipi(uint32_t vcpu, uint32_t *port);
long evtchn_bind_vcpu(uint32_t port, uint32_t vcpu);
long evtchn_send(uint32_t port);
long evtchn_close(uint32_t port);
long evtchn_unmask(uint32_t port);              /* EVTCHNOP_unmask (Xen re-raises) */
long evtchn_status(uint32_t port, struct evtchn_status *st);
void evtchn_mask(uint32_t port);                /* local: set the mask bit */
bool evtchn_pending(uint32_t port);
bool evtchn_masked(uint32_t port);
const char *evtchn_status_name(uint32_t s);

/* Xen system time in ns from this CPU's vcpu_time_info; 0 if Xen gives none. */
uint64_t xen_time_ns(void);
/* Spin (pause) for ns of Xen time; interrupts as they are. */
void spin_ns(uint64_t ns);

/* Wait with interrupts on (sti;hlt or SCHEDOP_block per wait=) until *p >= target;
 * false after timeout_ms (LAPIC watchdog). */
bool wait_ge(const volatile uint64_t *p, uint64_t target, uint64_t timeout_ms);
/* Wait for a single interrupt or the watchdog. */
void wait_once(uint64_t timeout_ms);

/* ---- smp.c -------------------------------------------------------------------------- */
/* Bring vCPU id up (VCPUOP_initialise + VCPUOP_up) and wait until it runs.
 * 0, or the failing hypercall's result (or -XEN_ETIMEDOUT). */
long smp_bringup(unsigned id);
/* Before bringing vCPU id up: called on CPU 0 (e.g. to register its vcpu_info). */
extern void (*smp_pre_up_hook)(unsigned id);
/* Run fn(arg) on CPU id (woken through its wake port) and wait for it. */
bool smp_call(unsigned id, void (*fn)(void *), void *arg, uint64_t timeout_ms);
/* Number of vCPUs the domain has (probes VCPUOP_is_up until -ENOENT). */
unsigned smp_nr_vcpus(void);

/* ---- gnttab.c ------------------------------------------------------------------------ */
/* Set up grant table v1 (query_size, set_version, setup_table, map frame 0).
 * Returns the shared entries, or NULL after printing why. */
grant_entry_v1_t *gnttab_init(void);
extern unsigned gnttab_nr_entries;

#endif
