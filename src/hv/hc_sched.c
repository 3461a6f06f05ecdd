/* sched_op: yield, shutdown, block and poll (the last two in upcall.c). */
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
    switch (hc->arg[0]) {
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
        return -ENOSYS;
    }
}
