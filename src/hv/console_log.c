/*
 * A domain's hypervisor console log (console-N.log in the run directory): what the
 * guest writes with console_io and to Xen's HVM debug port. A guest must not be able
 * to fill the host's disk (or /run's memory) with it: as Xen rate-limits a domU's
 * console writes, each domain has a token bucket of CONSOLE_LOG_RATE bytes a second
 * (CONSOLE_LOG_BURST saved up); what is over is dropped, and the log says how much.
 * docs/security.md.
 *
 * The log rotates by size ($XKVM_LOG_MAX_SIZE, $XKVM_LOG_KEEP: xkvmd's --log-max-size
 * and --log-keep) under util/logrot.h's protocol, which xkvm-consoled (the PV console
 * ring, appending to the same file) follows too: the guest sees nothing of it.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "util/logrot.h"
#include "xkvm/control.h"

#define CONSOLE_LOG_RATE  (64 * 1024)      /* bytes a second */
#define CONSOLE_LOG_BURST (256 * 1024)

static struct logrot_limits limits;
static pthread_once_t limits_once = PTHREAD_ONCE_INIT;

static void limits_init(void)
{
    logrot_limits_from_env(&limits);
}

void console_log_init(struct domain *d)
{
    pthread_once(&limits_once, limits_init);
    pthread_mutex_init(&d->console.lock, NULL);
    d->console.tokens = CONSOLE_LOG_BURST;
    d->console.refilled_ns = host_monotonic_ns();
    d->console.dropped = 0;
}

/* Tokens earned since the last refill. console.lock held. */
static void refill(struct domain *d)
{
    uint64_t now = host_monotonic_ns(), dt = now - d->console.refilled_ns;
    uint64_t earned = dt * CONSOLE_LOG_RATE / 1000000000ull;
    if (!earned)
        return;
    d->console.tokens += earned;
    if (d->console.tokens > CONSOLE_LOG_BURST)
        d->console.tokens = CONSOLE_LOG_BURST;
    d->console.refilled_ns = now;
}

void console_log_write(struct domain *d, const void *buf, size_t len)
{
    if (d->console_fd < 0 || len == 0)
        return;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/" XKVM_CONSOLE_LOG_FMT, host.rundir, d->domid);
    pthread_mutex_lock(&d->console.lock);
    refill(d);
    if (d->console.dropped && d->console.tokens >= 128) {
        char note[96];
        int n = snprintf(note, sizeof(note), "\n[xkvm: %" PRIu64 " bytes of console output "
                         "dropped: over %u bytes/s]\n", d->console.dropped, CONSOLE_LOG_RATE);
        if (logrot_write(&d->console_fd, path, &limits, note, (size_t)n) == 0)
            d->console.tokens -= (uint64_t)n;
        d->console.dropped = 0;
    }
    size_t n = len <= d->console.tokens ? len : (size_t)d->console.tokens;
    if (n && logrot_write(&d->console_fd, path, &limits, buf, n) == 0)
        d->console.tokens -= n;
    d->console.dropped += len - n;
    pthread_mutex_unlock(&d->console.lock);
}
