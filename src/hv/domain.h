/*
 * A domain: one KVM VM, its p2m, its vCPU threads, and the Xen state xkvmd keeps for
 * it. Pausing is counted (toolstack pauses and xkvmd's own holds add up); a paused
 * domain's vCPUs are all parked at an instruction boundary with no hypercall or I/O
 * exit half done.
 */
#ifndef XKVM_HV_DOMAIN_H
#define XKVM_HV_DOMAIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/hvm/params.h>
#include <xen/arch-x86/hvm/start_info.h>

#include "hv/p2m.h"
#include "util/clock.h"
#include "util/domcfg.h"
#include "util/log.h"
#include "util/ratelimit.h"

struct vcpu;

/* Guest-physical layout of a domain (PVH, as Xen's toolstack lays it out). */
#define GUEST_LOWMEM_END        0xF0000000ULL   /* RAM below; MMIO hole above */
#define GUEST_HIGHMEM_START     0x100000000ULL
#define GUEST_SPECIAL_GFN       0xFEFF0ULL      /* toolstack pages (rings), reserved */
#define GUEST_SPECIAL_PAGES     16
/* Toolstack pages in the special region, as HVM_PARAM_{STORE,CONSOLE}_PFN name them. */
#define GUEST_STORE_GFN         (GUEST_SPECIAL_GFN + 0)
#define GUEST_CONSOLE_GFN       (GUEST_SPECIAL_GFN + 1)
/* ACPI tables (acpi.h), where libxl puts a PVH guest's: at most this many pages. */
#define GUEST_ACPI_GFN          0xFC000ULL
#define GUEST_ACPI_MAX_PAGES    16

/* Pages outside RAM that xkvmd populates and a stream may bring (toolstack, ACPI). */
static inline bool guest_gfn_is_special(uint64_t gfn)
{
    return (gfn >= GUEST_SPECIAL_GFN && gfn < GUEST_SPECIAL_GFN + GUEST_SPECIAL_PAGES) ||
           (gfn >= GUEST_ACPI_GFN && gfn < GUEST_ACPI_GFN + GUEST_ACPI_MAX_PAGES);
}

#define DOMAIN_UNIMPL_SLOTS     64

/* A guest's hypervisor-console line is cut here, as Xen's DOMAIN_PBUF_SIZE does. */
#define DMESG_LINE_MAX          200

struct uffd_pages;

struct domain {
#ifdef XKVM_LU_TEST_NEXT
    /* The cross-version test's changed internal structure: images never depend on it. */
    uint64_t lu_test_next[3];
#endif
    uint16_t domid;
    struct domcfg cfg;
    int vm_fd;
    struct p2m p2m;
    unsigned nr_vcpus;
    struct vcpu *vcpus;
    uint64_t ram_frames;
    /*
     * Memory reservation (reservation.c): the most RAM frames the domain may hold
     * (Xen's max_pages, from maxmem), the frames XENMEM_increase_reservation gave it
     * outside its p2m (Xen's way for a translated guest; not carried by a move), and
     * the lock that orders reservation changes against each other.
     */
    uint64_t max_frames;
    uint64_t unmapped_frames;
    pthread_mutex_t reservation_lock;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned pause_count;       /* > 0: vCPUs park */
    unsigned toolstack_pauses;  /* the part of pause_count that is xkvm pause */
    unsigned nr_parked;
    unsigned nr_threads;        /* vCPU threads alive */
    unsigned throttle_pct;      /* vcpu_throttle.c: auto-converge's, 0: off */
    bool dying;
    int shutdown_code;          /* SHUTDOWN_* once shut down, else -1 */
    bool shutdown_handled;      /* the main loop applied on_poweroff & co */

    uint64_t hvm_params[HVM_NR_PARAMS];
    int dmesg_fd;               /* the hypervisor-console log, RUNDIR/dmesg-N.log */
    struct {                    /* console_log.c: its line buffer and rate limit */
        pthread_mutex_t lock;
        uint64_t tokens, refilled_ns, dropped;
        unsigned line_len;
        char line[DMESG_LINE_MAX];
    } dmesg;
    uint64_t created_ns;

    /* References other threads hold (domain_get); destroy waits for them. */
    unsigned refs;

    bool migrating;             /* saved or migrated now: not destroyed under it */
    bool restoring;             /* being restored: dom0 services do not see it yet */
    /*
     * Post-copy (docs/migration.md "Post-copy"): its frames still at the source
     * (migrate/postcopy_restore.c; the struct is the first member of a malloc'd block
     * that domain_destroy frees), and whether the connection to the source was lost
     * (listed "postcopy-paused").
     */
    struct uffd_pages *postcopy;
    bool postcopy_paused;
    /* The switch's token (RUNNING's): a recovery must name it (postcopy_recover). */
    char postcopy_token[33];
    /*
     * Arriving (restore, migration) and not yet whole: the toolstack does not see it
     * (not listed, not addressable, not counted) and its name is not taken, until
     * domain_publish just before it first runs. Its domid is held meanwhile.
     */
    bool incoming;
    uint64_t dom0_activity_ns;  /* last map/unmap/bind by a dom0 service, or its event */

    /*
     * The guest has called Xen with VMCALL/VMMCALL (KVM's intercept): it can run only
     * where KVM intercepts them. Carried by save, migration and live update.
     */
    bool guest_vmcall;
    char crash_reason[256];     /* domain_crash's first reason, "" if none */

    struct event_domain *ev;    /* event.h: shared_info, event channels */
    struct gnttab *gt;          /* gnttab.h: grant table */

    /* Hypercalls and sub-ops already logged as unimplemented (hypercall.c). */
    uint64_t unimpl_seen[DOMAIN_UNIMPL_SLOTS];
    struct ratelimit guest_log; /* log_guest's */
    uint32_t vm_assist;         /* VMASST_TYPE_* bits the guest enabled (hc_sched.c) */
    /*
     * altp2m (hc_altp2m.c, altp2m_monitor.c, docs/altp2m.md): the views are p2m.alt
     * (NULL: off); the monitor holds a lease it renews by polling, and while it holds
     * one a vCPU whose access a view forbids waits for its answer.
     */
    pthread_mutex_t altp2m_lock;    /* one view change at a time (hc_altp2m.c) */
    uint64_t altp2m_lease_until_ns;
    uint64_t altp2m_next_seq;
    uint64_t altp2m_violations;
    uint32_t tsc_khz;           /* the guest's TSC rate: the host's where it was built */
    bool tsc_scaled;            /* KVM scales the guest's TSC to tsc_khz (tsc_rate.c) */
};

/* ---- altp2m (hc_altp2m.c; docs/altp2m.md) ---- */
struct xen_hvm_altp2m_op;
/*
 * One HVMOP_altp2m sub-op on d, with its arguments in *a (results written back there):
 * as the guest itself asks (from_guest: HVM_PARAM_ALTP2M's rules) or the toolstack.
 * set_mem_access_multi's lists come through domain_altp2m_set_access_multi.
 * 0 or -errno, Xen's codes; from the guest's own vCPU, 1 when another view change is
 * under way: re-execute the hypercall (Xen's -ERESTART).
 */
int domain_altp2m_op(struct domain *d, struct xen_hvm_altp2m_op *a, bool from_guest,
                     struct vcpu *self);
/*
 * Access for gfns[i] = access[i] in a view, all or none. self: the calling vCPU (its
 * own thread: 1 means re-execute, as above), NULL from the toolstack. 0 or -errno.
 */
int domain_altp2m_set_access_multi(struct domain *d, unsigned view, const uint64_t *gfns,
                                   const uint8_t *access, unsigned n, struct vcpu *self);
/* The active view now (0 when altp2m is off). */
unsigned domain_altp2m_view(struct domain *d);

/* ---- altp2m monitor (altp2m_monitor.c) ---- */
#define ALTP2M_MONITOR_LEASE_NS (5ull * 1000000000ull)
enum altp2m_answer { ALTP2M_ANSWER_NONE, ALTP2M_ANSWER_RESUME, ALTP2M_ANSWER_SWITCH };
/*
 * On the vCPU thread, after a view forbade its access: report it and wait for the
 * monitor's answer (parked, as a pause parks it). Returns once the access may be done
 * once as it is (resume; no monitor: Xen's rule for a ring with no listener) or after a
 * view switch (the caller checks again). Returns false if the domain is dying.
 */
struct vcpu;
bool altp2m_violation_wait(struct vcpu *v, uint64_t gpa, bool write, bool *recheck);
/* The monitor polls (renewing its lease): the waiting vCPUs' events as JSON. */
struct json_object *altp2m_monitor_poll(struct domain *d);
/* Its answer for a waiting vCPU. 0, -ESRCH (not waiting), -EINVAL. */
int altp2m_monitor_answer(struct domain *d, unsigned vcpu, enum altp2m_answer ans,
                          unsigned view);
/* The monitor said goodbye: its lease ends, waiting vCPUs resume. */
void altp2m_monitor_detach(struct domain *d);

/* The guest's memory map (as in its hvm_start_info and XENMEM_memory_map). */
#define DOMAIN_MEMMAP_MAX 5
unsigned domain_memmap(const struct domain *d, struct hvm_memmap_table_entry *map);
/* Pages the domain's ACPI tables take at GUEST_ACPI_GFN (from its config). */
unsigned domain_acpi_pages(const struct domcfg *cfg);
/* RAM frames the domain holds now. */
uint64_t mm_count_owner_ram(const struct domain *d);

/* Pin each vCPU thread as the config's `cpus` says (domain_build does it). */
void domain_pin_vcpus(struct domain *d);

/*
 * Build and start a domain from a validated config. *domid in: the domid wanted, or 0
 * for the next free one; out: the domid. 0, or -errno with a message.
 */
int domain_create(const struct domcfg *cfg, bool start_paused, uint16_t *domid,
                  char *err, size_t errlen);
/*
 * Build a domain to restore into (main thread): VM, RAM, vCPUs, empty PV state, no
 * kernel and no toolstack pages (the stream brings them). It is registered under
 * `domid` and held paused; the restorer unpauses it (domain_unpause) or destroys it.
 */
int domain_create_for_restore(const struct domcfg *cfg, uint16_t domid, struct domain **out,
                              char *err, size_t errlen);
/* Live update: frames of machine memory a domain already has, and where. */
struct domain_extent {
    uint64_t gfn, mfn, nr;
    enum frame_type type;       /* FRAME_RAM or FRAME_SPECIAL */
};
struct domain_adopt {
    const struct domain_extent *extents;
    size_t nr_extents;
    /* Same-host migration (migrate/local_mem.h): adopted by domain_adopt_local. */
    bool migrating;
};
/*
 * As domain_create_for_restore, but the memory is adopted in place (claimed in the
 * frame table and mapped) instead of allocated: src/migrate/lu_restore.c. Safe to
 * call for different domains from several threads while nothing else runs.
 */
int domain_create_for_live_update(const struct domcfg *cfg, uint16_t domid,
                                  const struct domain_adopt *adopt, struct domain **out,
                                  char *err, size_t errlen);
/*
 * Same-host migration (migrate/local_mem.h), main thread: as domain_create_for_restore,
 * but with no RAM yet, only memslots over its ranges (holes), built before the source
 * pauses. Then domain_adopt_local takes the RAM in place: frames another xkvmd handed
 * over (mm_bank_adopt), at the gfns the extents say; on failure it hands them back,
 * never frees them. 0 or -errno with a message.
 */
int domain_create_for_local(const struct domcfg *cfg, uint16_t domid, struct domain **out,
                            char *err, size_t errlen);
int domain_adopt_local(struct domain *d, const struct domain_adopt *adopt, char *err,
                       size_t errlen);
/*
 * Who wants to know when domains come and go (the dom0 bridge, the toolstack's
 * xenstore half): each registers itself once, on the main thread, and domain.c calls
 * them without naming them. Any member may be NULL.
 */
struct domain_observer {
    /*
     * A domain was created (not restored) and its vCPUs wait: an observer that must
     * act before the guest runs holds it with domain_hold and unpauses it when done.
     */
    void (*built)(struct domain *d);
    /* The set of domains, or a domain's state, changed (main thread). */
    void (*changed)(void);
    /* d is being freed: drop whatever names it (main thread). */
    void (*freeing)(struct domain *d);
    /* d was destroyed, its threads are gone (main thread). */
    void (*gone)(const struct domain *d);
};
void domain_observe(const struct domain_observer *o);
/* Tell the observers the domains changed (a restore made one whole, say). */
void domains_changed(void);
/* One more pause on d, without waiting for its vCPUs to park (domain_unpause drops it). */
void domain_hold(struct domain *d);

/* Look up a live domain (main thread). NULL if none. */
struct domain *domain_find(unsigned domid);
/* The toolstack's view (main thread): a live domain that is not incoming, or NULL. */
struct domain *domain_lookup(unsigned domid);
static inline bool domain_listed(const struct domain *d)
{
    return d && !d->incoming;
}
/*
 * An incoming domain is whole (main thread): it takes its name, now, if no listed
 * domain has it, and becomes visible. 0, or -EEXIST with a message.
 */
int domain_publish(struct domain *d, char *err, size_t errlen);
/* From any thread: does a live domain with this id exist? */
bool domain_find_any(unsigned domid);
/*
 * From any thread (a hypercall touching another domain): a reference to a live domain
 * that is not being destroyed, or NULL. Drop it with domain_put, without holding
 * locks of other domains while waiting for it.
 */
struct domain *domain_get(unsigned domid);
/*
 * domain_get for a domid another guest names (an interdomain event channel, a grant
 * copy): an incoming domain, still being restored, is not there yet for it.
 */
struct domain *domain_get_peer(unsigned domid);
void domain_put(struct domain *d);
/*
 * Main thread: take d for a save, restore or migration job: a reference (destroy
 * waits for it) and the mark (d->migrating) that keeps a second job and the toolstack's
 * destroy away. false if d is taken already or going away.
 */
bool domain_job_claim(struct domain *d);
/* The job is done with d (main thread, or before d was published): both go. */
void domain_job_release(struct domain *d);
/* Restore (live update): d was shut down, as code says, and handled or not yet. */
void domain_set_shutdown_state(struct domain *d, int code, bool handled);

/*
 * Restore: the guest's TSC runs at khz (tsc_rate.c). Scaled where KVM can; -EOPNOTSUPP
 * with a message where the rates differ and it cannot. Before the vCPUs first run.
 */
int domain_set_tsc_khz(struct domain *d, uint32_t khz, char *err, size_t errlen);

/* Counted pause: returns once every vCPU is parked. */
void domain_pause(struct domain *d);
void domain_unpause(struct domain *d);
/*
 * Held by nobody but the toolstack and its own shutdown: no build, save or other
 * hold of xkvmd's is under way (live update takes only domains at rest).
 */
bool domain_at_rest(struct domain *d);
/*
 * Pause every vCPU but self (NULL: all), as Xen's domain_pause_except_self; undone by
 * domain_unpause. From a vCPU thread, self is that vCPU.
 */
void domain_pause_others(struct domain *d, struct vcpu *self);
/* On self's thread: count as parked for a moment (at most 10 ms), so a pauser can go on. */
void domain_park_self_briefly(struct domain *d, struct vcpu *self);
/* domain_pause in two halves, to pause many domains at once: ask, then wait. */
void domain_pause_begin(struct domain *d);
void domain_pause_wait(struct domain *d);
/* The toolstack's pause/unpause (xkvm pause): -EINVAL when not paused. */
int domain_toolstack_pause(struct domain *d);
int domain_toolstack_unpause(struct domain *d);

/* Stop every vCPU, free every frame, remove the domain. Main thread only. */
void domain_destroy(struct domain *d);

/* From a vCPU thread: the guest shut down (SCHEDOP_shutdown) or crashed. */
void domain_shutdown(struct domain *d, unsigned reason);
void domain_crash(struct domain *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * From a vCPU thread: a triple fault, as Xen's hvm_triple_fault: a shutdown with the
 * reason in HVM_PARAM_TRIPLE_FAULT_REASON (SHUTDOWN_reboot unless the toolstack set
 * it), so on_reboot applies, not on_crash.
 */
void domain_triple_fault(struct domain *d, unsigned vcpu);

/* Main loop: apply on_poweroff/on_reboot/on_crash to domains that shut down. */
void domains_handle_shutdowns(void);

const char *domain_state_name(const struct domain *d);
const char *shutdown_reason_name(int code);

/*
 * The domain's hypervisor-console log, RUNDIR/dmesg-N.log (console_io, the debug
 * port): Xen's "(dN) text" lines, written at most at a fixed rate, the rest dropped
 * and counted (console_log.c).
 */
void console_log_init(struct domain *d);
/* Open (keep: append to what a live-updated domain had; else start afresh). 0/-errno. */
int console_log_open(struct domain *d, bool keep);
void console_log_write(struct domain *d, const void *buf, size_t len);
/*
 * `xkvm dmesg -c`: drop the older generations and the first `size` bytes of the log if
 * it is still the file `inode` the client read (else it was rotated away: keep it all).
 */
int console_log_clear(struct domain *d, uint64_t size, uint64_t inode);

/*
 * An info line a guest's own requests cause (a hypercall it may repeat at will: a
 * grant-table dump, a new upcall vector, its hypercall page): at most
 * DOMAIN_GUEST_LOG_PER_SEC a second per domain, and how many were dropped is said once
 * the next second starts. Found by the hypercall fuzzer: without it a guest wrote
 * xkvmd's log as fast as it could call.
 */
#define DOMAIN_GUEST_LOG_PER_SEC 10
#define log_guest(d, ...) log_guest_at(d, LOG_INFO, __VA_ARGS__)
#define log_guest_at(d, level, ...)                                                     \
    do {                                                                                \
        uint64_t dropped_;                                                              \
        if (ratelimit_allow(&(d)->guest_log, mono_ns(), DOMAIN_GUEST_LOG_PER_SEC,       \
                            &dropped_)) {                                               \
            if (dropped_)                                                               \
                log_info("d%u: %llu more lines the guest caused were not logged",       \
                         (d)->domid, (unsigned long long)dropped_);                      \
            log_msg(level, __VA_ARGS__);                                                \
        }                                                                               \
    } while (0)

#endif
