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
 *   xenbus.c       xenstore client over the store ring (HVM_PARAM_STORE_PFN/EVTCHN)
 *   console_ring.c PV console ring (HVM_PARAM_CONSOLE_PFN/EVTCHN), with console=ring
 *   blkfront.c     block frontend: xenbus handshake, blkif ring, granted data pages
 *   netfront.c     network frontend: xenbus handshake, netif tx/rx rings, granted buffers
 *
 * Command-line words it reads: upcall=callback|vector (default callback),
 * wait=hlt|block (default hlt), apic=auto|xapic (default auto: x2APIC if CPUID has it),
 * evtchn=2l|fifo (default 2l), console=hypercall|ring|both (default hypercall), xs_timeout=MS (default 30000),
 * xs_reconnect=MS (default 5000).
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
void lapic_send_icr(uint32_t dest, uint32_t lo);    /* raw IPI: INIT, SIPI... */
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
/* FIFO ABI (evtchn=fifo): set by pv_init; the array pages added so far. */
extern bool evtchn_fifo;
extern unsigned fifo_nr_pages;
extern volatile event_word_t fifo_array[EVTCHN_NR_PORTS / 1024][1024];
extern volatile uint64_t fifo_handled_order[64];    /* ports, in the order handled */
extern volatile uint64_t fifo_nr_handled;
struct evtchn_fifo_control_block *fifo_cb(unsigned cpu);
long fifo_init_control(unsigned cpu, uint64_t gfn, uint32_t offset);
void fifo_cover(uint32_t port);         /* expand the array (words MASKED) to reach port */
void fifo_forget(void);                 /* after EVTCHNOP_reset: back to 2-level, locally */
void fifo_clear_queues(unsigned cpu);   /* unlink every word, empty cpu's control block */

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
/* Grant dom access to page as entry ref (after gnttab_init). */
void gnttab_grant(unsigned ref, void *page, domid_t dom, bool readonly);

/* ---- xenbus.c: xenstore client ---------------------------------------------------- */
/* Every call returns >= 0 on success or a negative Xen errno: an XS_ERROR reply maps
 * to its errno (-XEN_ENOENT, -XEN_EACCES, -XEN_EAGAIN ...), no reply within
 * xs_timeout= ms to -XEN_ETIMEDOUT, no store ring to -XEN_ENODEV. Relative paths are
 * relative to /local/domain/<own domid> (xenstored resolves them). tx 0: no
 * transaction. One request at a time (the guest is single-threaded). */
#define XS_VALUE_MAX 4096
struct xs_watch_event {
    char path[256];
    char token[64];
};
typedef void (*xs_watch_fn)(const struct xs_watch_event *ev, void *arg);

int xenbus_init(void);                  /* pv_init() + ring + port; 0 or -errno */
bool xenbus_ready(void);
uint32_t xenbus_port(void);
/* Value NUL-terminated into buf (truncated to len-1); returns the value's length. */
int xs_read(uint32_t tx, const char *path, char *buf, size_t len);
int xs_read_u64(uint32_t tx, const char *path, uint64_t *v);
int xs_write(uint32_t tx, const char *path, const char *val);
int xs_printf(uint32_t tx, const char *path, const char *fmt, ...) printf_like(3, 4);
int xs_mkdir(uint32_t tx, const char *path);
int xs_rm(uint32_t tx, const char *path);
/* Children as NUL-separated names into buf; returns their number. */
int xs_directory(uint32_t tx, const char *path, char *buf, size_t len);
int xs_transaction_start(uint32_t *tx);
int xs_transaction_end(uint32_t tx, bool commit);    /* -XEN_EAGAIN: conflict, retry */
/* Register a watch. With fn, xs_dispatch() hands it its events; without, they wait
 * in the queue for xs_watch_next(). Xen fires one event right after registering. */
int xs_watch(const char *path, const char *token, xs_watch_fn fn, void *arg);
int xs_unwatch(const char *path, const char *token);
/* Read whatever the ring holds (replies, watch events into the queue). */
void xs_poll(void);
/* Run the callbacks of queued events whose token has one; returns how many ran. */
unsigned xs_dispatch(void);
/* Take the oldest queued event for token (NULL: any), waiting up to timeout_ms. */
bool xs_watch_next(const char *token, struct xs_watch_event *ev, uint64_t timeout_ms);
/* A frontend's wait until <back>/state is in want_mask (a bit per XenbusState), woken by
 * the watch token on it. Returns the state, or -XEN_ETIMEDOUT after ms (said as who). */
long xenbus_wait_backend(const char *back, const char *token, const char *who,
                         unsigned want_mask, uint64_t ms);
extern uint64_t xs_events_dropped;      /* queue overflow */
extern uint64_t xs_reconnects;          /* ring reconnections (xenstore-ring.txt) */
const char *xs_errname(int err);        /* "EAGAIN" for -XEN_EAGAIN, etc. */

/* ---- console_ring.c: PV console -------------------------------------------------------- */
/* console=ring: printf output goes to the console ring (HVM_PARAM_CONSOLE_PFN) and
 * the console port is notified, as hvc_xen does; console=both: ring and console_io;
 * default (console=hypercall): console_io only. console.c calls console_ring_write
 * first: true means the output is taken care of. */
bool console_ring_write(const char *s, size_t len);
bool console_ring_active(void);
/* Bytes from the input ring (0 if none). */
size_t console_ring_read(char *buf, size_t len);

/* ---- blkfront.c: block frontend (one device) ------------------------------------------ */
struct blkfront {
    unsigned devid;                     /* 51712 = xvda */
    char front[64];                     /* device/vbd/<devid> */
    char back[160];                     /* its backend path */
    domid_t backend_id;
    uint32_t port;
    uint32_t ring_ref;
    uint64_t sectors;                   /* in 512-byte units, as the backend says */
    uint32_t sector_size;
    bool flush, persistent;
    uint64_t nr_requests, nr_reconnects;
};
/* Handshake with the backend up to Connected (both sides); 0 or -errno. */
int blkfront_connect(struct blkfront *bf, unsigned devid);
/* The granted data buffer requests use, and its size in bytes. */
void *blkfront_buffer(size_t *bytes);
/* Read or write nr 512-byte sectors at sector from/to the data buffer (nr*512 must fit
 * in it); split into requests, all in flight at once. 0 or -errno (-XEN_EIO when the
 * backend answered BLKIF_RSP_ERROR). */
int blkfront_io(struct blkfront *bf, bool write, uint64_t sector, unsigned nr);
int blkfront_flush(struct blkfront *bf);        /* 0 also when not supported */
/* Closing -> Closed, as a frontend does on shutdown (bounded wait). */
void blkfront_disconnect(struct blkfront *bf);

/* ---- netfront.c: network frontend (one vif, up to NF_MAX_QUEUES queues) ------------- */
#define NF_MAX_QUEUES 2
struct netfront_queue {
    uint32_t tx_port, rx_port;
    uint64_t tx_packets, rx_packets;
};
struct netfront {
    unsigned handle;                    /* device/vif/<handle> */
    char front[64], back[160];
    domid_t backend_id;
    bool split;                         /* event-channel-tx/-rx instead of one */
    unsigned nr_queues;                 /* what was asked and the backend offers */
    unsigned max_queues;                /* the backend's multi-queue-max-queues */
    struct netfront_queue q[NF_MAX_QUEUES];
    volatile uint64_t events;           /* events on any of its ports */
    uint8_t mac[6];
    uint64_t tx_packets, rx_packets, tx_errors, rx_errors, stray;
};
/*
 * Handshake up to Connected with min(queues, the backend's multi-queue-max-queues,
 * NF_MAX_QUEUES) queues (queues 0: one, and no multi-queue-num-queues node written, as
 * an old frontend), rx buffers posted; 0 or -errno.
 */
int netfront_connect(struct netfront *nf, unsigned handle, bool split, unsigned queues);
/* queues | NETFRONT_QUEUES_UNCHECKED: ask that many whatever the backend offers (a
 * hostile frontend: rings for NF_MAX_QUEUES at most; the backend should refuse). */
#define NETFRONT_QUEUES_UNCHECKED 0x80000000u
/* Queue one frame (14 .. 4096 bytes) on queue q for the backend; 0 or -errno. */
int netfront_send(struct netfront *nf, unsigned q, const void *frame, size_t len);
/*
 * The next received frame (any queue, *q says which if q is not NULL) into buf
 * (truncated to len): its length, 0 on timeout.
 */
int netfront_recv(struct netfront *nf, void *buf, size_t len, uint64_t timeout_ms,
                  unsigned *q);
/* Hostile (test=net hostile=1): a tx req_prod beyond the ring, and a notification. */
void netfront_break_tx(struct netfront *nf);

#endif
