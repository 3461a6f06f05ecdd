/*
 * xkvmd's host-wide state: the one KVM handle, machine memory and the domain table.
 * Everything the Xen hypervisor owns lives under here.
 */
#ifndef XKVM_HV_HV_H
#define XKVM_HV_HV_H

#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/cpuid.h"
#include "hv/machine_mem.h"

/* Xen's DOMID_FIRST_RESERVED: domids 1..0x7FEF are for guests. */
#define XKVM_DOMID_LIMIT 0x7FF0u


struct domain;

/*
 * How guests' hypercalls reach xkvmd (docs/hypervisor.md, "The hypercall transport"):
 * the port-I/O hypercall page everywhere, and where KVM intercepts Xen hypercalls
 * (KVM_CAP_XEN_HVM with KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) also VMCALL/VMMCALL.
 */
enum hcall_transport {
    HCALL_TRANSPORT_PORT_IO,
    HCALL_TRANSPORT_INTERCEPT,
};

struct host {
    char rundir[PATH_MAX];
    int kvm_fd;
    int vcpu_mmap_size;
    struct kvm_cpuid2 *supported_cpuid;
    bool has_sync_regs;
    char kvm_module[16];            /* kvm_pvm, kvm_intel, kvm_amd */
    uint32_t tsc_khz;
    bool has_tsc_control;           /* KVM can scale a guest's TSC (KVM_SET_TSC_KHZ) */
    enum hcall_transport transport;  /* chosen by host_init */
    bool transport_port_io_only;    /* set before host_init: never the intercept */
    bool memory_prealloc;           /* set before host_init: --machine-memory-prealloc */
    bool native_vmmcall;            /* AMD/Hygon: VMMCALL is the native instruction */

    struct machine_mem mm;

    /* The domain table. Domains are created and freed only by the main thread. */
    pthread_mutex_t lock;
    pthread_cond_t refs_cond;       /* a domain reference was dropped */
    struct domain *domains[XKVM_DOMID_LIMIT];
    unsigned nr_domains;
    unsigned next_domid;

    /* Written by vCPU threads when a domain needs the main loop (shut down, crashed). */
    int notify_fd;
};

extern struct host host;

static inline struct machine_mem *host_mm(void)
{
    return &host.mm;
}

int host_init(const char *rundir, uint64_t machine_memory, char *err, size_t errlen);
/* "port-io" or "kvm-intercept": the name xkvm info and list --json show. */
const char *host_transport_name(void);
/* Wake the main loop: some domain changed state it must act on. */
void host_notify(void);
/* main_call.c: run fn(arg) on the main thread and wait for it (or run it, if there). */
void host_call_main(void (*fn)(void *), void *arg);
void host_set_main_thread(void);
void host_run_main_calls(void);     /* the main loop, on host.notify_fd */

#endif
