/* console_io: a guest's writes to the hypervisor console go to its console log. */
#include <errno.h>
#include <stdint.h>
#include <xen/xen.h>

#include "hv/domain.h"
#include "hv/hypercall.h"

/* Bytes handled per invocation before a continuation (Xen preempts similarly). */
#define CONSOLE_WRITE_BUDGET (64 * 1024)

static long console_write(struct hcall *hc)
{
    uint64_t count = (uint32_t)hc->arg[1];
    uint64_t buf = hc->arg[2];
    char chunk[4096];
    uint64_t done = 0;
    while (done < count) {
        if (done == CONSOLE_WRITE_BUDGET) {
            hc->arg[1] = count - done;
            hc->arg[2] = buf + done;
            hc->continuation = true;
            return 0;
        }
        size_t n = count - done < sizeof(chunk) ? (size_t)(count - done) : sizeof(chunk);
        if (hc_copy_from(hc, chunk, buf + done, n))
            return -EFAULT;
        console_log_write(hc->d, chunk, n);
        done += n;
    }
    return 0;
}

long do_console_io(struct hcall *hc)
{
    switch ((uint32_t)hc->arg[0]) {    /* Xen: unsigned int cmd */
    case CONSOLEIO_write:
        return console_write(hc);
    case CONSOLEIO_read:
        return -EPERM;      /* only the control domain reads Xen's console ring */
    default:
        return hc_unimplemented(hc, "console_io", (unsigned long)hc->arg[0]);
    }
}
