/*
 * Hypercalls the way a Xen HVM/PVH guest makes them: `call hypercall_page + nr*32`,
 * 64-bit ABI (docs/guest-guide/x86/hypercall-abi): args in RDI RSI RDX R10 R8,
 * result in RAX. The argument registers are declared clobbered: Xen debug builds
 * poison the ones a hypercall does not use.
 */
#ifndef XKVM_GUEST_HYPERCALL_H
#define XKVM_GUEST_HYPERCALL_H

#include "guest.h"

#include <xen/sched.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/memory.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/vcpu.h>

static inline long _hypercall5(unsigned nr, uint64_t a1, uint64_t a2, uint64_t a3,
                               uint64_t a4, uint64_t a5)
{
    register uint64_t r10 asm("r10") = a4;
    register uint64_t r8 asm("r8") = a5;
    uint64_t rax = (uint64_t)(hypercall_page + (uint64_t)nr * 32);

    asm volatile("call *%%rax"
                 : "+a"(rax), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                 :
                 : "memory", "rcx", "r9", "r11");
    return (long)rax;
}

#define _hypercall1(nr, a)          _hypercall5(nr, (uint64_t)(a), 0, 0, 0, 0)
#define _hypercall2(nr, a, b)       _hypercall5(nr, (uint64_t)(a), (uint64_t)(b), 0, 0, 0)
#define _hypercall3(nr, a, b, c)    _hypercall5(nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), 0, 0)

static inline long HYPERVISOR_console_io(int cmd, unsigned count, const void *buf)
{
    return _hypercall3(__HYPERVISOR_console_io, cmd, count, buf);
}
static inline long HYPERVISOR_xen_version(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}
static inline long HYPERVISOR_sched_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_sched_op, cmd, arg);
}
static inline long HYPERVISOR_hvm_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_hvm_op, cmd, arg);
}
static inline long HYPERVISOR_memory_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_memory_op, cmd, arg);
}
static inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}
static inline long HYPERVISOR_grant_table_op(int cmd, void *arg, unsigned count)
{
    return _hypercall3(__HYPERVISOR_grant_table_op, cmd, arg, count);
}
static inline long HYPERVISOR_vcpu_op(int cmd, unsigned vcpu, void *arg)
{
    return _hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg);
}

/* HVMOP_get_param / set_param for DOMID_SELF. */
static inline long hvm_get_param(uint32_t idx, uint64_t *val)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = idx };
    long rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);
    if (rc == 0)
        *val = p.value;
    return rc;
}
static inline long hvm_set_param(uint32_t idx, uint64_t val)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = idx, .value = val };
    return HYPERVISOR_hvm_op(HVMOP_set_param, &p);
}

#endif
