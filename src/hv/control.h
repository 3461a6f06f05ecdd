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

#endif
