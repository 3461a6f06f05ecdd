/*
 * The service manager's readiness protocol (sd_notify(3)): datagrams of
 * "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET. xkvmd says
 * READY=1 once it serves, RELOADING=1 just before a live update's exec and READY=1
 * again once the new binary serves (same pid), STOPPING=1 when it stops.
 *
 * With libsystemd at build time (HAVE_LIBSYSTEMD) the messages go through its
 * sd_notify(); without, through notify_send_raw(), the same protocol in a few lines.
 * Without $NOTIFY_SOCKET (not under systemd) every call does nothing. The variable is
 * never unset: the binary a live update exec's inherits it and notifies too.
 */
#ifndef XKVM_UTIL_NOTIFY_H
#define XKVM_UTIL_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/*
 * $NOTIFY_SOCKET's value as an address: a path ("/run/systemd/notify") or, with a
 * leading '@', an abstract name. 0, or -EINVAL (empty, relative, too long) or
 * -EAFNOSUPPORT (vsock:..., which xkvm does not speak). Pure.
 */
int notify_socket_addr(const char *value, struct sockaddr_un *sa, socklen_t *len);

/* Send MSG ("READY=1\nSTATUS=...") on our own: 1 sent, 0 no socket, -errno. */
int notify_send_raw(const char *msg);

/* Send MSG through libsystemd's sd_notify() when built with it, else notify_send_raw. */
int notify_send(const char *msg);

/* printf-style, one message (truncated at 1 KiB); each value must be one line. */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Wait (at most timeout_ms) until the service manager has processed every message sent
 * before (BARRIER=1, as sd_notify_barrier): e.g. MAINPID= before the process exits.
 * 0, or -errno (-ETIMEDOUT); 0 at once without NOTIFY_SOCKET.
 */
int notify_barrier(unsigned timeout_ms);

/* Whether a service manager listens ($NOTIFY_SOCKET set). */
bool notify_enabled(void);

/* Whether this build sends through libsystemd. */
bool notify_uses_libsystemd(void);

#endif
