/*
 * A domain's hypervisor console log (console-N.log in the run directory): what the
 * guest writes with console_io and to Xen's HVM debug port. A guest must not be able
 * to fill the host's disk (or /run's memory) with it: as Xen rate-limits a domU's
 * console writes, each domain has a token bucket of CONSOLE_LOG_RATE bytes a second
 * (CONSOLE_LOG_BURST saved up); what is over is dropped, and the log says how much.
 * docs/security.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/event_state.h"

#define CONSOLE_LOG_RATE  (64 * 1024)      /* bytes a second */
#define CONSOLE_LOG_BURST (256 * 1024)

void console_log_init(struct domain *d)
{
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
    pthread_mutex_lock(&d->console.lock);
    refill(d);
    if (d->console.dropped && d->console.tokens >= 128) {
        char note[96];
        int n = snprintf(note, sizeof(note), "\n[xkvm: %" PRIu64 " bytes of console output "
                         "dropped: over %u bytes/s]\n", d->console.dropped, CONSOLE_LOG_RATE);
        if (write(d->console_fd, note, (size_t)n) == n)
            d->console.tokens -= (uint64_t)n;
        d->console.dropped = 0;
    }
    size_t n = len <= d->console.tokens ? len : (size_t)d->console.tokens;
    if (n && write(d->console_fd, buf, n) > 0)
        d->console.tokens -= n;
    d->console.dropped += len - n;
    pthread_mutex_unlock(&d->console.lock);
}
