/*
 * Replies of the control protocol (docs/control-api.md): the shapes every answer has,
 * and writing one as a protocol line. Below the daemon and migrate, so that a job
 * running on its own thread (save, live update's new binary) can answer its client.
 */
#ifndef XKVM_UTIL_CONTROL_REPLY_H
#define XKVM_UTIL_CONTROL_REPLY_H

#include <json-c/json.h>

struct json_object *control_reply_ok(void);
/* {"ok": false, "error": message, "errno": "ENAME"} */
struct json_object *control_reply_err(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* o as one protocol line: plain JSON (no raw newline) and '\n'; NULL if out of memory. */
char *control_json_line(struct json_object *o);
/*
 * Write o as one line to a client's fd (blocking writes; a client gone is ignored) and
 * drop the reference: the answers of jobs that took the connection over.
 */
void control_write_json(int fd, struct json_object *o);

#endif
