/*
 * The client side of the xkvmd control protocol (include/xkvm/control.h,
 * docs/control-api.md): one JSON request line out, one JSON reply line back.
 */
#ifndef XKVM_TOOLS_CONTROL_CLIENT_H
#define XKVM_TOOLS_CONTROL_CLIENT_H

#include <stddef.h>
#include <json-c/json.h>

struct control_client {
    int fd;
    char *buf;          /* received bytes not yet consumed */
    size_t len;
    int pass_fd;        /* >= 0: sent with the next request (SCM_RIGHTS), then -1 */
};

/*
 * Connect to RUNDIR/xkvmd.sock. 0, or a negative errno with a message in err
 * ("xkvmd is not running in RUNDIR (no socket at PATH)" when nothing listens there).
 */
int control_connect(struct control_client *c, const char *rundir, char *err, size_t errlen);

/*
 * Send req (not consumed) and wait for the reply. On {"ok": true, ...} returns 0 and
 * the reply in *reply (the caller puts it). On {"ok": false, ...} returns the negative
 * errno the reply names (-EIO if none or unknown) with its "error" text in err; on a
 * transport failure returns a negative errno with a message.
 */
int control_request(struct control_client *c, struct json_object *req,
                    struct json_object **reply, char *err, size_t errlen);

/*
 * The same for a long job (save, restore, migrate): lines {"progress": {...}} before
 * the reply go to progress(arg, obj); on failure the whole reply is in *failed (if not
 * NULL) for its report.
 */
typedef void (*control_progress_fn)(void *arg, struct json_object *progress);
int control_request_ex(struct control_client *c, struct json_object *req,
                       struct json_object **reply, control_progress_fn progress, void *arg,
                       struct json_object **failed, char *err, size_t errlen);

void control_close(struct control_client *c);

/* Connect, one request, close. */
int control_call(const char *rundir, struct json_object *req, struct json_object **reply,
                 char *err, size_t errlen);

/* errno value for a name like "ESRCH"; 0 if unknown. */
int control_errno_from_name(const char *name);

#endif
