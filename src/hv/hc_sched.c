/*
 * sched_op: yield, shutdown, block and poll (the last two in upcall.c); and vm_assist,
 * the per-domain assists an HVM guest may turn on (Xen's HVM_VM_ASSIST_MASK: only
 * runstate_update_flag, which runstate.c honours).
 */
#include <errno.h>
#include <stdint.h>
#include <sched.h>
#include <xen/sched.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/hypercall.h"
#include "hv/vcpu.h"
#include "util/log.h"

long do_sched_op(struct hcall *hc)
{
    switch ((uint32_t)hc->arg[0]) {    /* Xen: int cmd */
    case SCHEDOP_yield:
        sched_yield();
        return 0;
    case SCHEDOP_shutdown: {
        struct sched_shutdown s;
        if (hc_copy_from(hc, &s, hc->arg[1], sizeof(s)))
            return -EFAULT;
        if (s.reason > SHUTDOWN_MAX)
            return -EINVAL;
        log_info("d%u v%u: guest requested shutdown (%s)", hc->d->domid, hc->v->id,
                 shutdown_reason_name((int)s.reason));
        domain_shutdown(hc->d, s.reason);
        return 0;
    }
    case SCHEDOP_block:
        return event_sched_block(hc);
    case SCHEDOP_poll:
        return event_sched_poll(hc);
    case SCHEDOP_remote_shutdown:
    case SCHEDOP_pin_override:
        return -EPERM;      /* control domain only */
    default:
        return hc_unimplemented(hc, "sched_op", (unsigned long)hc->arg[0]);
    }
}

#define HVM_VM_ASSIST_MASK (1u << VMASST_TYPE_runstate_update_flag)

long do_vm_assist(struct hcall *hc)
{
    uint32_t cmd = (uint32_t)hc->arg[0], type = (uint32_t)hc->arg[1];  /* unsigned ints */
    if (type >= 32 || !((HVM_VM_ASSIST_MASK >> type) & 1))
        return -EINVAL;
    switch (cmd) {
    case VMASST_CMD_enable:
        __atomic_fetch_or(&hc->d->vm_assist, 1u << type, __ATOMIC_ACQ_REL);
        return 0;
    case VMASST_CMD_disable:
        __atomic_fetch_and(&hc->d->vm_assist, ~(1u << type), __ATOMIC_ACQ_REL);
        return 0;
    default:
        return hc_unimplemented(hc, "vm_assist", (unsigned long)cmd);
    }
}
