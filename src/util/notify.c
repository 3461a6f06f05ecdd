/* The service manager's readiness protocol: notify.h. */
#include "util/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fdpass.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

int notify_socket_addr(const char *value, struct sockaddr_un *sa, socklen_t *len)
{
    if (!value || !*value)
        return -EINVAL;
    if (!strncmp(value, "vsock:", 6))
        return -EAFNOSUPPORT;
    if (value[0] != '/' && value[0] != '@')
        return -EINVAL;
    size_t n = strlen(value);
    if (n >= sizeof(sa->sun_path))
        return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, value, n);
    if (value[0] == '@')
        sa->sun_path[0] = '\0';     /* abstract: the name is the bytes after the NUL */
    /* A path counts its terminating NUL; an abstract name is exactly its bytes. */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (value[0] == '/'));
    return 0;
}

bool notify_enabled(void)
{
    const char *v = getenv("NOTIFY_SOCKET");
    return v && *v;
}

int notify_send_raw(const char *msg)
{
    const char *v = getenv("NOTIFY_SOCKET");
    if (!v || !*v)
        return 0;
    struct sockaddr_un sa;
    socklen_t len;
    int rc = notify_socket_addr(v, &sa, &len);
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t w;
    do
        w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (w < 0 && errno == EINTR);
    rc = w < 0 ? -errno : 1;
    close(fd);
    return rc;
}

bool notify_uses_libsystemd(void)
{
#ifdef HAVE_LIBSYSTEMD
    return true;
#else
    return false;
#endif
}

int notify_send(const char *msg)
{
#ifdef HAVE_LIBSYSTEMD
    /* unset_environment 0: a live update's exec keeps NOTIFY_SOCKET. */
    return sd_notify(0, msg);
#else
    return notify_send_raw(msg);
#endif
}

int notify_sendf(const char *fmt, ...)
{
    if (!notify_enabled())
        return 0;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    /* A newline in a value would start a new assignment: values are one line each. */
    if ((size_t)n >= sizeof(buf))
        buf[sizeof(buf) - 1] = '\0';
    return notify_send(buf);
}

/* BARRIER=1 with the write end of a pipe: the manager closes it once it got that far. */
static int __attribute__((unused)) barrier_raw(unsigned timeout_ms)
{
    const char *v = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t len;
    int rc = notify_socket_addr(v, &sa, &len), p[2] = { -1, -1 };
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || pipe2(p, O_CLOEXEC)) {
        rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    static const char msg[] = "BARRIER=1";
    rc = fdpass_send(fd, msg, sizeof(msg) - 1, &p[1], 1, 0, (struct sockaddr *)&sa, len) < 0 ?
         -errno : 0;
    close(fd);
    close(p[1]);
    if (!rc) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        int n;
        do
            n = poll(&pf, 1, (int)timeout_ms);
        while (n < 0 && errno == EINTR);
        rc = n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
    }
    close(p[0]);
    return rc;
}

int notify_barrier(unsigned timeout_ms)
{
    if (!notify_enabled())
        return 0;
#ifdef HAVE_LIBSYSTEMD
    int rc = sd_notify_barrier(0, (uint64_t)timeout_ms * 1000);
    return rc < 0 ? rc : 0;     /* it says 1 once the manager got that far */
#else
    return barrier_raw(timeout_ms);
#endif
}
