/*
 * The host: the one KVM handle, machine memory and the domain table (hv.h), and the
 * main loop's wake-up. xkvmd's composition root (src/daemon/xkvmd.c) calls host_init
 * once at start.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hv/event.h"
#include "hv/hv.h"
#include "hv/vcpu.h"
#include "hv/vmcall_watch.h"

struct host host;

void host_notify(void)
{
    uint64_t one = 1;
    ssize_t r = write(host.notify_fd, &one, sizeof(one));
    (void)r;
}
static void detect_kvm_module(void)
{
    static const char *const mods[] = { "kvm_pvm", "kvm_intel", "kvm_amd" };
    snprintf(host.kvm_module, sizeof(host.kvm_module), "unknown");
    for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/sys/module/%s", mods[i]);
        if (access(path, F_OK) == 0) {
            snprintf(host.kvm_module, sizeof(host.kvm_module), "%s", mods[i]);
            return;
        }
    }
}

static void kick_handler(int sig)
{
    (void)sig;   /* only interrupts KVM_RUN */
}

/* KVM_GET_TSC_KHZ is a vCPU ioctl: ask a throwaway vCPU. 0 if unknown. */
static uint32_t probe_tsc_khz(void)
{
    int khz = -1;
    int vm = ioctl(host.kvm_fd, KVM_CREATE_VM, 0);
    int vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
    if (vcpu >= 0)
        khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
    if (vcpu >= 0)
        close(vcpu);
    if (vm >= 0)
        close(vm);
    return khz > 0 ? (uint32_t)khz : 0;
}

const char *host_transport_name(void)
{
    return host.transport == HCALL_TRANSPORT_INTERCEPT ? "kvm-intercept" : "port-io";
}

/* CPUID vendor of the host (as KVM reports it): AMD and Hygon call with VMMCALL. */
static bool host_vendor_vmmcall(const struct kvm_cpuid2 *c)
{
    for (unsigned i = 0; i < c->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function != 0)
            continue;
        return (e->ebx == 0x68747541 && e->edx == 0x69746e65 && e->ecx == 0x444d4163) ||
               (e->ebx == 0x6f677948 && e->edx == 0x6e65476e && e->ecx == 0x656e6975);
    }
    return false;
}

/*
 * The intercept where KVM has it (KVM_CAP_XEN_HVM reports the flag), unless told
 * to keep to the port-I/O page.
 */
static void choose_transport(void)
{
    int xen = ioctl(host.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XEN_HVM);
    host.native_vmmcall = host_vendor_vmmcall(host.supported_cpuid);
    host.transport = HCALL_TRANSPORT_PORT_IO;
    if (xen > 0 && (xen & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) && !host.transport_port_io_only)
        host.transport = HCALL_TRANSPORT_INTERCEPT;
}

int host_init(const char *rundir, uint64_t machine_memory, char *err, size_t errlen)
{
    snprintf(host.rundir, sizeof(host.rundir), "%s", rundir);
    pthread_mutex_init(&host.lock, NULL);
    pthread_cond_init(&host.refs_cond, NULL);
    host.next_domid = 1;
    detect_kvm_module();

    host.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (host.kvm_fd < 0) {
        snprintf(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(host.kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        snprintf(err, errlen, "unsupported KVM API version");
        return -EINVAL;
    }
    static const struct { int cap; const char *name; } required[] = {
        { KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP" },
        { KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
        { KVM_CAP_X86_USER_SPACE_MSR, "KVM_CAP_X86_USER_SPACE_MSR" },
        { KVM_CAP_X86_MSR_FILTER, "KVM_CAP_X86_MSR_FILTER" },
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (ioctl(host.kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
            snprintf(err, errlen, "KVM lacks %s", required[i].name);
            return -ENOTSUP;
        }
    int sync = ioctl(host.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
    host.has_sync_regs = sync > 0 && (sync & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)) ==
                                     (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
    host.vcpu_mmap_size = ioctl(host.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (host.vcpu_mmap_size <= 0) {
        snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed");
        return -EINVAL;
    }
    unsigned nent = 256;
    host.supported_cpuid = calloc(1, sizeof(struct kvm_cpuid2) +
                                     nent * sizeof(struct kvm_cpuid_entry2));
    host.supported_cpuid->nent = nent;
    if (ioctl(host.kvm_fd, KVM_GET_SUPPORTED_CPUID, host.supported_cpuid) < 0) {
        snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        return -errno;
    }
    host.tsc_khz = probe_tsc_khz();
    host.has_tsc_control = ioctl(host.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0;
    choose_transport();

    /* 0: live update, which takes over the previous xkvmd's machine memory. */
    int rc = machine_memory ? mm_init(&host.mm, machine_memory) : 0;
    if (!rc && machine_memory && host.memory_prealloc && (rc = mm_prealloc(&host.mm)))
        mm_fini(&host.mm);
    if (rc) {
        snprintf(err, errlen, "machine memory of %llu MiB%s: %s",
                 (unsigned long long)(machine_memory >> 20),
                 host.memory_prealloc ? ", preallocated" : "", strerror(-rc));
        return rc;
    }
    host.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if ((rc = event_host_init())) {
        snprintf(err, errlen, "starting the event thread: %s", strerror(-rc));
        return rc;
    }
    if ((rc = vmcall_watch_start())) {
        snprintf(err, errlen, "starting the VMCALL watch: %s", strerror(-rc));
        return rc;
    }

    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);   /* no SA_RESTART: KVM_RUN returns EINTR */
    return 0;
}
