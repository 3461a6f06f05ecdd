/* The xkvm CLI's end of the control socket. */
#include "tools/control_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/fdpass.h"
#include "xkvm/control.h"

int control_errno_from_name(const char *name)
{
    if (!name)
        return 0;
    for (int e = 1; e < 4096; e++) {
        const char *n = strerrorname_np(e);
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return 0;
}

int control_connect(struct control_client *c, const char *rundir, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    c->fd = -1;
    c->buf = NULL;
    c->len = 0;
    c->pass_fd = -1;

    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rundir, XKVM_CONTROL_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "run directory %s: path too long for a UNIX socket", rundir);
        return -ENAMETOOLONG;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "socket: %s", strerror(e));
        return -e;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            snprintf(err, errlen, "xkvmd is not running in %s (no socket at %s)",
                     rundir, sa.sun_path);
        else
            snprintf(err, errlen, "cannot connect to xkvmd at %s: %s", sa.sun_path,
                     strerror(e));
        return -e;
    }
    c->buf = malloc(XKVM_CONTROL_MAX_LINE + 1);
    if (!c->buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->fd = fd;
    return 0;
}

void control_close(struct control_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = 0;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The request's first byte with the descriptor to pass (the rest goes by send_all). */
static int send_with_fd(int fd, const char *p, int pass_fd)
{
    ssize_t n;
    while ((n = fdpass_send(fd, p, 1, &pass_fd, 1, 0, NULL, 0)) < 0 && errno == EINTR)
        ;
    return n == 1 ? 0 : n < 0 ? -errno : -EIO;
}

/* One reply line (without its newline) into *line, NUL-terminated, in c->buf. */
static int read_line(struct control_client *c, char **line, size_t *line_len,
                     char *err, size_t errlen)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            *nl = '\0';
            *line = c->buf;
            *line_len = (size_t)(nl - c->buf);
            return 0;
        }
        if (c->len >= XKVM_CONTROL_MAX_LINE) {
            snprintf(err, errlen, "xkvmd sent a reply longer than %d bytes",
                     XKVM_CONTROL_MAX_LINE);
            return -EMSGSIZE;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, XKVM_CONTROL_MAX_LINE - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "reading from xkvmd: %s", strerror(e));
            return -e;
        }
        if (n == 0) {
            snprintf(err, errlen, "xkvmd closed the connection without a reply");
            return -ECONNRESET;
        }
        c->len += (size_t)n;
    }
}

/* Drop the consumed line (and its newline) from the buffer. */
static void consume(struct control_client *c, size_t line_len)
{
    size_t used = line_len + 1;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

int control_request(struct control_client *c, struct json_object *req,
                    struct json_object **reply, char *err, size_t errlen)
{
    return control_request_ex(c, req, reply, NULL, NULL, NULL, err, errlen);
}

int control_request_ex(struct control_client *c, struct json_object *req,
                       struct json_object **reply, control_progress_fn progress, void *arg,
                       struct json_object **failed, char *err, size_t errlen)
{
    *reply = NULL;
    if (c->fd < 0) {
        snprintf(err, errlen, "not connected to xkvmd");
        return -ENOTCONN;
    }

    size_t len;
    const char *text = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (len + 1 > XKVM_CONTROL_MAX_LINE) {
        snprintf(err, errlen, "request longer than %d bytes", XKVM_CONTROL_MAX_LINE);
        return -EMSGSIZE;
    }
    /* PLAIN output has no raw newlines (json-c escapes them in strings). */
    int r = 0;
    if (c->pass_fd >= 0) {
        r = send_with_fd(c->fd, text, c->pass_fd);
        c->pass_fd = -1;
        text++;
        len--;
    }
    if (r == 0)
        r = send_all(c->fd, text, len);
    if (r == 0)
        r = send_all(c->fd, "\n", 1);
    if (r < 0) {
        snprintf(err, errlen, "sending to xkvmd: %s", strerror(-r));
        return r;
    }

    if (failed)
        *failed = NULL;
next_line:;
    char *line = NULL;
    size_t line_len = 0;
    if ((r = read_line(c, &line, &line_len, err, errlen)) < 0)
        return r;

    struct json_tokener *tok = json_tokener_new();
    if (!tok) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct json_object *o = json_tokener_parse_ex(tok, line, (int)line_len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t parsed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    consume(c, line_len);
    if (!o || jerr != json_tokener_success || parsed != line_len) {
        json_object_put(o);
        snprintf(err, errlen, "xkvmd sent a malformed reply (%s)",
                 jerr == json_tokener_success ? "trailing data"
                                               : json_tokener_error_desc(jerr));
        return -EPROTO;
    }

    struct json_object *ok, *prog;
    if (json_object_is_type(o, json_type_object) && !json_object_object_get_ex(o, "ok", &ok) &&
        json_object_object_get_ex(o, "progress", &prog)) {
        if (progress)
            progress(arg, prog);
        json_object_put(o);
        goto next_line;     /* a long job reports progress before its reply */
    }
    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "ok", &ok) || !json_object_is_type(ok, json_type_boolean)) {
        json_object_put(o);
        snprintf(err, errlen, "xkvmd sent a reply without \"ok\"");
        return -EPROTO;
    }
    if (json_object_get_boolean(ok)) {
        *reply = o;
        return 0;
    }

    struct json_object *msg, *eno;
    const char *text_err = "unknown error";
    const char *ename = NULL;
    if (json_object_object_get_ex(o, "error", &msg) && json_object_is_type(msg, json_type_string))
        text_err = json_object_get_string(msg);
    if (json_object_object_get_ex(o, "errno", &eno) && json_object_is_type(eno, json_type_string))
        ename = json_object_get_string(eno);
    snprintf(err, errlen, "%s", text_err);
    int e = control_errno_from_name(ename);
    if (failed)
        *failed = o;
    else
        json_object_put(o);
    return e ? -e : -EIO;
}

int control_call(const char *rundir, struct json_object *req, struct json_object **reply,
                 char *err, size_t errlen)
{
    struct control_client c;
    int r = control_connect(&c, rundir, err, errlen);
    if (r < 0) {
        *reply = NULL;
        return r;
    }
    r = control_request(&c, req, reply, err, errlen);
    control_close(&c);
    return r;
}
