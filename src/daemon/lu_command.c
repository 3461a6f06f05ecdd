/* The "live-update" control command (docs/control-api.md): lu_command.h. */
#include "daemon/lu_command.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "daemon/migrate_job.h"
#include "migrate/live_update.h"
#include "util/control_reply.h"

struct json_object *lu_command(struct json_object *req, int client_fd)
{
    struct live_update_request rq = { .binary = live_update_self_path(),
                                      .client_fd = client_fd };
    struct json_object *v;
    if (json_object_object_get_ex(req, "binary", &v) && json_object_is_type(v, json_type_string))
        rq.binary = json_object_get_string(v);
    if (json_object_object_get_ex(req, "verify_memory", &v))
        rq.verify_memory = json_object_get_boolean(v);
    if (json_object_object_get_ex(req, "mode", &v)) {
        const char *m = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (!strcmp(m, "beside"))
            rq.mode = LU_MODE_BESIDE;
        else if (!strcmp(m, "exec"))
            rq.mode = LU_MODE_EXEC;
        else if (strcmp(m, "auto"))
            return control_reply_err(EINVAL, "mode: 'auto', 'beside' or 'exec', not '%s'", m);
    }
    if (json_object_object_get_ex(req, "inject_fault", &v) &&
        json_object_is_type(v, json_type_string))
        rq.inject_fault = json_object_get_string(v);
    if (migrate_jobs_running())
        return control_reply_err(EBUSY, "a save, restore or migration is running: try again "
                                 "when it is done");
    char err[1024] = "";
    int rc = live_update_run(&rq, err, sizeof(err));
    return control_reply_err(-rc, "%s", err);
}
