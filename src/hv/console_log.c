/*
 * A domain's hypervisor-console log (RUNDIR/dmesg-N.log; docs/control-api.md, "dmesg"):
 * what the guest writes with console_io and to Xen's HVM debug port 0xE9, which on Xen
 * go to the hypervisor's console and which `xl dmesg` shows. Lines are Xen's for a
 * guest, "(dN) text": bytes are gathered per domain until a newline (or
 * DMESG_LINE_MAX bytes, where Xen's DOMAIN_PBUF_SIZE cuts a line too), characters
 * that are not printable are dropped, as Xen's guest_console_write does. The PV
 * console ring goes to console-N.log (xkvm-consoled), so nothing appears twice.
 *
 * A guest must not be able to fill the host's disk (or /run's memory) with it: as Xen
 * rate-limits a domU's console writes, each domain has a token bucket of
 * CONSOLE_LOG_RATE bytes a second (CONSOLE_LOG_BURST saved up); what is over is
 * dropped, and the log says how much (docs/security.md).
 *
 * The log rotates by size ($XKVM_LOG_MAX_SIZE, $XKVM_LOG_KEEP: xkvmd's --log-max-size
 * and --log-keep) under util/logrot.h's protocol. A live-updated domain keeps its log
 * (the next xkvmd appends); a migrated domain's stays on the source.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "util/logrot.h"
#include "xkvm/control.h"

#define CONSOLE_LOG_RATE  (64 * 1024)      /* bytes a second */
#define CONSOLE_LOG_BURST (256 * 1024)
/* Formatted output is written in pieces of about this size. */
#define DMESG_OUT_CHUNK   4096
/* What `dmesg -c` keeps (written after the client read) is copied; at most this. */
#define DMESG_CLEAR_TAIL_MAX (1u << 20)

static struct logrot_limits limits;
static pthread_once_t limits_once = PTHREAD_ONCE_INIT;

static void limits_init(void)
{
    logrot_limits_from_env(&limits);
}

static void dmesg_path(const struct domain *d, char *path, size_t len)
{
    snprintf(path, len, "%s/" XKVM_DMESG_LOG_FMT, host.rundir, d->domid);
}

void console_log_init(struct domain *d)
{
    pthread_once(&limits_once, limits_init);
    pthread_mutex_init(&d->dmesg.lock, NULL);
    d->dmesg.tokens = CONSOLE_LOG_BURST;
    d->dmesg.refilled_ns = host_monotonic_ns();
    d->dmesg.dropped = 0;
    d->dmesg.line_len = 0;
}

int console_log_open(struct domain *d, bool keep)
{
    char path[PATH_MAX + 32];
    dmesg_path(d, path, sizeof(path));
    d->dmesg_fd = open(path, O_WRONLY | O_CREAT | (keep ? 0 : O_TRUNC) | O_APPEND |
                       O_CLOEXEC | O_NOFOLLOW, 0600);
    if (d->dmesg_fd < 0)
        return -errno;
    fchmod(d->dmesg_fd, 0600);
    return 0;
}

/* Tokens earned since the last refill. dmesg.lock held. */
static void refill(struct domain *d)
{
    uint64_t now = host_monotonic_ns(), dt = now - d->dmesg.refilled_ns;
    uint64_t earned = dt * CONSOLE_LOG_RATE / 1000000000ull;
    if (!earned)
        return;
    d->dmesg.tokens += earned;
    if (d->dmesg.tokens > CONSOLE_LOG_BURST)
        d->dmesg.tokens = CONSOLE_LOG_BURST;
    d->dmesg.refilled_ns = now;
}

/* Append formatted lines, within the rate limit. dmesg.lock held. */
static void emit(struct domain *d, const char *path, const char *buf, size_t len)
{
    refill(d);
    if (d->dmesg.dropped && d->dmesg.tokens >= 128) {
        char note[128];
        int n = snprintf(note, sizeof(note), "(XEN) d%u: %" PRIu64 " bytes of console "
                         "output dropped: over %u bytes/s\n", d->domid, d->dmesg.dropped,
                         CONSOLE_LOG_RATE);
        if (logrot_write(&d->dmesg_fd, path, &limits, note, (size_t)n) == 0)
            d->dmesg.tokens -= (uint64_t)n;
        d->dmesg.dropped = 0;
    }
    /* Whole lines only: a line that does not fit the bucket is dropped whole. */
    size_t n = 0;
    while (n < len) {
        const char *nl = memchr(buf + n, '\n', len - n);
        size_t line = (size_t)(nl - (buf + n)) + 1;
        if (n + line > d->dmesg.tokens)
            break;
        n += line;
    }
    if (n && logrot_write(&d->dmesg_fd, path, &limits, buf, n) == 0)
        d->dmesg.tokens -= n;
    d->dmesg.dropped += len - n;
}

/* Xen's is_console_printable. */
static bool printable(unsigned char c)
{
    return (c >= 0x20 && c < 0x7f) || c == '\t';
}

void console_log_write(struct domain *d, const void *buf, size_t len)
{
    if (d->dmesg_fd < 0 || len == 0)
        return;
    char path[PATH_MAX + 32];
    dmesg_path(d, path, sizeof(path));
    char out[DMESG_OUT_CHUNK + DMESG_LINE_MAX + 16];
    size_t o = 0;
    const unsigned char *p = buf;
    pthread_mutex_lock(&d->dmesg.lock);
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n' && printable(p[i]))
            d->dmesg.line[d->dmesg.line_len++] = (char)p[i];
        if (p[i] != '\n' && d->dmesg.line_len < DMESG_LINE_MAX - 1)
            continue;
        int n = snprintf(out + o, sizeof(out) - o, "(d%u) %.*s\n", d->domid,
                         (int)d->dmesg.line_len, d->dmesg.line);
        o += (size_t)n;
        d->dmesg.line_len = 0;
        if (o >= DMESG_OUT_CHUNK) {
            emit(d, path, out, o);
            o = 0;
        }
    }
    if (o)
        emit(d, path, out, o);
    pthread_mutex_unlock(&d->dmesg.lock);
}

/* The bytes of path from offset on (at most DMESG_CLEAR_TAIL_MAX), malloc'd. */
static char *read_tail(const char *path, uint64_t offset, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    char *buf = malloc(DMESG_CLEAR_TAIL_MAX);
    ssize_t r = buf ? pread(fd, buf, DMESG_CLEAR_TAIL_MAX, (off_t)offset) : -1;
    close(fd);
    if (r < 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)r;
    return buf;
}

int console_log_clear(struct domain *d, uint64_t size, uint64_t inode)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 48], gen[PATH_MAX + 48];
    dmesg_path(d, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.clear", path);
    int rc = 0;
    pthread_mutex_lock(&d->dmesg.lock);
    for (unsigned g = 1; g <= LOGROT_KEEP_LIMIT; g++) {
        snprintf(gen, sizeof(gen), "%s.%u", path, g);
        unlink(gen);
    }
    struct stat st;
    if (d->dmesg_fd >= 0 && stat(path, &st) == 0 && (uint64_t)st.st_ino == inode) {
        /* What was written after the client read stays: copied to a new file. */
        size_t len;
        char *rest = read_tail(path, size, &len);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || (len && write(fd, rest, len) != (ssize_t)len) ||
            rename(tmp, path) < 0) {
            rc = -errno;
            unlink(tmp);
        }
        if (fd >= 0)
            close(fd);
        free(rest);
        if (!rc) {
            /* Our descriptor names the old file: write to the new one from now on. */
            close(d->dmesg_fd);
            if (console_log_open(d, true) < 0)
                rc = -errno;
        }
    }
    pthread_mutex_unlock(&d->dmesg.lock);
    return rc;
}
