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
};

#define NR_TABLE (sizeof(hypercall_table) / sizeof(hypercall_table[0]))

long hypercall_dispatch(struct hcall *hc)
{
    if (hc->nr >= NR_TABLE || !hypercall_table[hc->nr].fn) {
        log_debug("d%u: unimplemented hypercall %u", hc->d->domid, hc->nr);
        return -ENOSYS;
    }
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
    log_info("d%u: hypercall page at gpa %#llx (%s stubs)", d->domid, (unsigned long long)gpa,
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
