/*
 * The hypercall table: dispatch by Xen's number, and the one place that logs what a
 * guest asked for and xkvm does not implement (once per domain per hypercall and
 * sub-op, so that the next gap a guest runs into is visible in the log).
 * docs/hypervisor.md, "The hypercall transport".
 */
#include "hv/hypercall.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <xen/xen.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/vcpu.h"
#include "util/log.h"

struct hypercall_entry {
    const char *name;
    hypercall_fn fn;
};

/* Hypercalls xkvm implements, by Xen's number. Everything else is -ENOSYS. */
static const struct hypercall_entry hypercall_table[] = {
    [__HYPERVISOR_xen_version] = { "xen_version", do_xen_version },
    [__HYPERVISOR_console_io]  = { "console_io", do_console_io },
    [__HYPERVISOR_sched_op]    = { "sched_op", do_sched_op },
    [__HYPERVISOR_hvm_op]      = { "hvm_op", do_hvm_op },
    [__HYPERVISOR_memory_op]   = { "memory_op", do_memory_op },
    [__HYPERVISOR_event_channel_op] = { "event_channel_op", do_event_channel_op },
    [__HYPERVISOR_vcpu_op]     = { "vcpu_op", do_vcpu_op },
    [__HYPERVISOR_grant_table_op] = { "grant_table_op", do_grant_table_op },
    [__HYPERVISOR_set_timer_op] = { "set_timer_op", do_set_timer_op },
    [__HYPERVISOR_vm_assist]   = { "vm_assist", do_vm_assist },
};

/* Xen's names for the hypercalls xkvm does not implement, for the log. */
static const char *const hypercall_names[] = {
    [0] = "set_trap_table", [1] = "mmu_update", [2] = "set_gdt",
    [3] = "stack_switch", [4] = "set_callbacks", [5] = "fpu_taskswitch",
    [6] = "sched_op_compat", [7] = "platform_op", [8] = "set_debugreg",
    [9] = "get_debugreg", [10] = "update_descriptor", [12] = "memory_op",
    [13] = "multicall", [14] = "update_va_mapping", [15] = "set_timer_op",
    [16] = "event_channel_op_compat", [17] = "xen_version", [18] = "console_io",
    [19] = "physdev_op_compat", [20] = "grant_table_op", [21] = "vm_assist",
    [22] = "update_va_mapping_otherdomain", [23] = "iret", [24] = "vcpu_op",
    [25] = "set_segment_base", [26] = "mmuext_op", [27] = "xsm_op", [28] = "nmi_op",
    [29] = "sched_op", [30] = "callback_op", [31] = "xenoprof_op",
    [32] = "event_channel_op", [33] = "physdev_op", [34] = "hvm_op", [35] = "sysctl",
    [36] = "domctl", [37] = "kexec_op", [38] = "tmem_op", [39] = "argo_op",
    [40] = "xenpmu_op", [41] = "dm_op", [42] = "hypfs_op",
};

#define NR_TABLE (sizeof(hypercall_table) / sizeof(hypercall_table[0]))

/* First time this domain asks for (nr, cmd)? Lock-free: vCPU threads race here. */
static bool unimplemented_first_time(struct domain *d, unsigned nr, uint64_t cmd)
{
    uint64_t key = (((uint64_t)nr << 32) | (cmd & 0xffffffffu)) + 1;
    for (unsigned i = 0; i < DOMAIN_UNIMPL_SLOTS; i++) {
        uint64_t seen = __atomic_load_n(&d->unimpl_seen[i], __ATOMIC_ACQUIRE);
        if (seen == key)
            return false;
        if (seen == 0 && __atomic_compare_exchange_n(&d->unimpl_seen[i], &seen, key, false,
                                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return true;
        if (seen == key)
            return false;
    }
    return false;   /* a guest probing this many gaps has had its share of the log */
}

long hc_unimplemented(struct hcall *hc, const char *family, unsigned long cmd)
{
    if (!unimplemented_first_time(hc->d, hc->nr, cmd))
        return -ENOSYS;
    if (family)
        log_info("d%u: unimplemented %s (hypercall %u) sub-op %lu: -ENOSYS", hc->d->domid,
                 family, hc->nr, cmd);
    else
        log_info("d%u: unimplemented hypercall %u (%s): -ENOSYS", hc->d->domid, hc->nr,
                 hc->nr < sizeof(hypercall_names) / sizeof(hypercall_names[0]) &&
                 hypercall_names[hc->nr] ? hypercall_names[hc->nr] : "unknown");
    return -ENOSYS;
}

long hypercall_dispatch(struct hcall *hc)
{
    if (hc->nr >= NR_TABLE || !hypercall_table[hc->nr].fn)
        return hc_unimplemented(hc, NULL, HC_NO_SUBOP);
    return hypercall_table[hc->nr].fn(hc);
}

/* The stubs this host's transport takes: the native instruction where KVM intercepts it. */
static enum hypercall_stub host_stub(void)
{
    if (host.transport != HCALL_TRANSPORT_INTERCEPT)
        return HYPERCALL_STUB_PORT_IO;
    return host.native_vmmcall ? HYPERCALL_STUB_VMMCALL : HYPERCALL_STUB_VMCALL;
}

int hypercall_page_fill(struct domain *d, uint64_t gpa)
{
    enum hypercall_stub kind = host_stub();
    p2m_hold(&d->p2m);
    uint8_t *page = p2m_ptr(&d->p2m, gpa, XKVM_PAGE_SIZE);
    if (page) {
        hypercall_page_write(page, kind);
        p2m_mark_dirty(&d->p2m, gpa >> XKVM_PAGE_SHIFT, 1);
    }
    p2m_release(&d->p2m);
    if (!page)
        return -EFAULT;
    log_guest(d, "d%u: hypercall page at gpa %#llx (%s stubs)", d->domid, (unsigned long long)gpa,
             kind == HYPERCALL_STUB_PORT_IO ? "port-I/O" :
             kind == HYPERCALL_STUB_VMMCALL ? "VMMCALL" : "VMCALL");
    return 0;
}

int hc_copy_from(struct hcall *hc, void *dst, uint64_t gva, size_t len)
{
    return copy_from_guest(&hc->gphys, &hc->paging, dst, gva, len);
}

int hc_copy_to(struct hcall *hc, uint64_t gva, const void *src, size_t len)
{
    return copy_to_guest(&hc->gphys, &hc->paging, gva, src, len);
}
