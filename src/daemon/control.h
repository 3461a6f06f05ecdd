/*
 * The control socket: the toolstack's API (docs/control-api.md, xkvm/control.h). The
 * commands are a table in control.c; the reply shapes are util/control_reply.h.
 */
#ifndef XKVM_DAEMON_CONTROL_H
#define XKVM_DAEMON_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse one request line from a client on fd and handle it; returns the reply as a
 * newly allocated line. Untrusted input: any bytes may arrive here. *file_fd: a
 * descriptor the client passed with the request (SCM_RIGHTS), or -1; save and restore
 * take it (and set it to -1), the caller closes it otherwise. A long job (save,
 * restore, migrate) takes the connection over: then *detached is set, NULL is
 * returned, and the job answers on its own thread.
 */
char *control_handle_line_fd(const char *line, size_t len, int fd, int *file_fd,
                             bool *detached);

#endif
