/* The control socket: the toolstack's API (docs/control-api.md, xkvm/control.h). */
#ifndef XKVM_HV_CONTROL_H
#define XKVM_HV_CONTROL_H

#include <json-c/json.h>

/*
 * Handle one request object; always returns a reply object (never NULL).
 * Untrusted input: any JSON value may arrive here.
 */
struct json_object *control_handle(struct json_object *req);

/* Parse one request line and handle it; returns the reply as a newly allocated line. */
char *control_handle_line(const char *line, size_t len);
/*
 * The same for a client on fd. *file_fd: a descriptor the client passed with the
 * request (SCM_RIGHTS), or -1; save and restore take it (and set it to -1), the caller
 * closes it otherwise. A long job (save, restore, migrate) takes the fd over: then
 * *detached is set, NULL is returned, and the job answers on its own thread.
 */
#include <stdbool.h>
char *control_handle_line_fd(const char *line, size_t len, int fd, int *file_fd,
                             bool *detached);

/* o as one protocol line: plain JSON (no raw newline) and '\n'; NULL if out of memory. */
char *control_json_line(struct json_object *o);
/*
 * Write o as one line to a client's fd (blocking writes; a client gone is ignored) and
 * drop the reference: the answers of jobs that took the connection over.
 */
void control_write_json(int fd, struct json_object *o);

struct json_object *control_reply_ok(void);
struct json_object *control_reply_err(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
