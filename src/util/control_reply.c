/* Replies of the control protocol: control_reply.h. */
#include "util/control_reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct json_object *control_reply_ok(void)
{
    struct json_object *r = json_object_new_object();
    json_object_object_add(r, "ok", json_object_new_boolean(1));
    return r;
}

struct json_object *control_reply_err(int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct json_object *r = json_object_new_object();
    json_object_object_add(r, "ok", json_object_new_boolean(0));
    json_object_object_add(r, "error", json_object_new_string(msg));
    const char *name = strerrorname_np(err);
    json_object_object_add(r, "errno", json_object_new_string(name ? name : "EIO"));
    return r;
}

char *control_json_line(struct json_object *o)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    size_t n = strlen(s);
    char *out = malloc(n + 2);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\n';
        out[n + 1] = '\0';
    }
    return out;
}

void control_write_json(int fd, struct json_object *o)
{
    char *line = control_json_line(o);
    size_t n = line ? strlen(line) : 0;
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;      /* the client went away: what it asked for goes on regardless */
        off += (size_t)w;
    }
    free(line);
    json_object_put(o);
}
