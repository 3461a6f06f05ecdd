#include "util/log.h"
#include "util/logrot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_fd = STDERR_FILENO;
static const char *log_ident = "xkvm";
static enum log_level log_max = LOG_INFO;
/* Rotation (util/logrot.h): the log's path, or NULL (stderr, or not rotated). */
static char *log_path;
static struct logrot_limits log_limits;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_rotate_at(const char *path, const struct logrot_limits *l)
{
    pthread_mutex_lock(&log_lock);
    free(log_path);
    log_path = path ? strdup(path) : NULL;
    if (l)
        log_limits = *l;
    pthread_mutex_unlock(&log_lock);
}

int log_open(const char *path, const char *ident, enum log_level max_level)
{
    log_ident = ident;
    log_max = max_level;
    if (!path)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    fchmod(fd, 0600);   /* logs name guests and what they do: one left 0644 is tightened */
    log_fd = fd;
    return 0;
}

void log_open_fd(int fd, const char *ident, enum log_level max_level)
{
    log_ident = ident;
    log_max = max_level;
    if (fd >= 0)
        log_fd = fd;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    if (level > log_max)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s[%d] %s: ",
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     log_ident, (int)getpid(), names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole when several threads log. */
    if (log_path) {
        pthread_mutex_lock(&log_lock);
        logrot_write(&log_fd, log_path, &log_limits, line, (size_t)n);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    ssize_t r = write(log_fd, line, (size_t)n);
    (void)r;
}
