/*
 * The "altp2m" control command (docs/control-api.md, docs/altp2m.md): the toolstack's
 * HVMOP_altp2m, as libxc's xc_altp2m_* make it, plus the monitor's poll and answer.
 * One request names the sub-op in "op"; the work is src/hv/hc_altp2m.c's and
 * altp2m_monitor.c's.
 */
#include "daemon/altp2m_command.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

#include "hv/altp2m.h"
#include "hv/domain.h"
#include "util/control_reply.h"

static const char *const access_names[] = {
    "n", "r", "w", "rw", "x", "rx", "wx", "rwx", "rx2rw", "n2rwx",
};

/* An access by name ("rx") or xenmem_access_t number; "default" is 15. -1: none. */
static int access_of(struct json_object *v)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        return n >= 0 && n <= 0xffff ? (int)n : -1;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    const char *s = json_object_get_string(v);
    if (!strcmp(s, "default"))
        return ALTP2M_ACCESS_DEFAULT;
    for (unsigned i = 0; i < sizeof(access_names) / sizeof(access_names[0]); i++)
        if (!strcmp(s, access_names[i]))
            return (int)i;
    return -1;
}

static const char *access_name(unsigned a)
{
    return a < sizeof(access_names) / sizeof(access_names[0]) ? access_names[a] : "?";
}

static bool get_u64(struct json_object *req, const char *name, uint64_t *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, name, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0)
        return false;
    *out = (uint64_t)json_object_get_int64(v);
    return true;
}

static struct json_object *need(const char *what)
{
    return control_reply_err(EINVAL, "altp2m: request needs %s", what);
}

static struct json_object *op_reply(int rc, const char *op)
{
    return rc ? control_reply_err(-rc, "altp2m %s: %s", op, strerror(-rc)) : control_reply_ok();
}

static const char *const mode_names[] = { "disabled", "mixed", "external", "limited" };

static struct json_object *set_mode(struct domain *d, struct json_object *req)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, "mode", &v) || !json_object_is_type(v, json_type_string))
        return need("a string \"mode\": disabled, mixed, external or limited");
    for (unsigned m = 0; m < 4; m++)
        if (!strcmp(json_object_get_string(v), mode_names[m])) {
            if (d->p2m.alt)
                return control_reply_err(EBUSY, "altp2m is on: set its state off first");
            __atomic_store_n(&d->hvm_params[HVM_PARAM_ALTP2M], m, __ATOMIC_RELAXED);
            return control_reply_ok();
        }
    return need("a \"mode\" of disabled, mixed, external or limited");
}

/* "gfns": [..] with "access": one for all, or "gfn" + "nr" (default 1). */
static struct json_object *set_access(struct domain *d, struct json_object *req, unsigned view,
                                      int acc)
{
    struct json_object *list;
    uint64_t gfn, nr = 1;
    unsigned n;
    bool have_list = json_object_object_get_ex(req, "gfns", &list) &&
                     json_object_is_type(list, json_type_array);
    if (have_list)
        n = (unsigned)json_object_array_length(list);
    else if (!get_u64(req, "gfn", &gfn) || (json_object_object_get_ex(req, "nr", NULL) &&
                                             !get_u64(req, "nr", &nr)))
        return need("\"gfn\" (and \"nr\") or a \"gfns\" list");
    else if (nr > UINT32_MAX || gfn + nr < gfn)
        return control_reply_err(EINVAL, "altp2m set-access: \"nr\" too large");
    else
        n = (unsigned)nr;
    uint64_t *gfns = malloc((n ? n : 1) * sizeof(uint64_t));
    uint8_t *accs = malloc(n ? n : 1);
    if (!gfns || !accs) {
        free(gfns);
        free(accs);
        return control_reply_err(ENOMEM, "altp2m set-access: out of memory");
    }
    int rc = 0;
    for (unsigned i = 0; i < n && !rc; i++) {
        accs[i] = (uint8_t)(acc > 0xff ? 0xff : acc);
        if (!have_list)
            gfns[i] = gfn + i;
        else if (!json_object_is_type(json_object_array_get_idx(list, i), json_type_int))
            rc = -EINVAL;
        else
            gfns[i] = (uint64_t)json_object_get_int64(json_object_array_get_idx(list, i));
    }
    if (!rc && acc > 0xff)
        rc = -EINVAL;
    if (!rc)
        rc = domain_altp2m_set_access_multi(d, view, gfns, accs, n, NULL);
    free(gfns);
    free(accs);
    return op_reply(rc, "set-access");
}

static struct json_object *status(struct domain *d)
{
    struct json_object *r = control_reply_ok(), *views = json_object_new_array();
    uint64_t mode = __atomic_load_n(&d->hvm_params[HVM_PARAM_ALTP2M], __ATOMIC_RELAXED);
    json_object_object_add(r, "mode", json_object_new_string(mode < 4 ? mode_names[mode] : "?"));
    p2m_hold(&d->p2m);
    struct altp2m *a = d->p2m.alt;
    json_object_object_add(r, "state", json_object_new_boolean(a != NULL));
    json_object_object_add(r, "active", json_object_new_int(a ? (int)a->active : 0));
    json_object_object_add(r, "memslots", json_object_new_int(
        d->p2m.alt_realised ? (int)d->p2m.nr_kslots : (int)d->p2m.nr_slots));
    for (unsigned i = 0; a && i < ALTP2M_MAX_VIEWS; i++) {
        if (!a->views[i].present)
            continue;
        struct json_object *v = json_object_new_object();
        json_object_object_add(v, "view", json_object_new_int((int)i));
        json_object_object_add(v, "default_access",
                               json_object_new_string(access_name(a->views[i].default_access)));
        json_object_object_add(v, "overrides",
                               json_object_new_int64((int64_t)a->views[i].nr_overrides));
        json_object_object_add(v, "remaps", json_object_new_int((int)a->views[i].nr_remaps));
        json_object_object_add(v, "visible", json_object_new_boolean(a->views[i].visible));
        json_object_array_add(views, v);
    }
    p2m_release(&d->p2m);
    json_object_object_add(r, "views", views);
    pthread_mutex_lock(&d->lock);
    json_object_object_add(r, "violations", json_object_new_int64((int64_t)d->altp2m_violations));
    pthread_mutex_unlock(&d->lock);
    return r;
}

static struct json_object *monitor_answer(struct domain *d, struct json_object *req)
{
    uint64_t vcpu, view = 0;
    struct json_object *v;
    if (!get_u64(req, "vcpu", &vcpu) || vcpu > UINT32_MAX)
        return need("a \"vcpu\"");
    if (!json_object_object_get_ex(req, "action", &v) || !json_object_is_type(v, json_type_string))
        return need("an \"action\": resume, switch or keep");
    const char *s = json_object_get_string(v);
    enum altp2m_answer ans;
    if (!strcmp(s, "resume"))
        ans = ALTP2M_ANSWER_RESUME;
    else if (!strcmp(s, "keep"))
        ans = ALTP2M_ANSWER_NONE;
    else if (!strcmp(s, "switch") && get_u64(req, "view", &view) && view < ALTP2M_MAX_VIEWS)
        ans = ALTP2M_ANSWER_SWITCH;
    else
        return need("an \"action\" of resume, keep, or switch with a \"view\"");
    return op_reply(altp2m_monitor_answer(d, (unsigned)vcpu, ans, (unsigned)view),
                    "monitor-answer");
}

/* The sub-ops that are HVMOP_altp2m's own, in a xen_hvm_altp2m_op. */
static struct json_object *hvmop(struct domain *d, struct json_object *req, const char *op)
{
    struct xen_hvm_altp2m_op a = { .version = HVMOP_ALTP2M_INTERFACE_VERSION };
    struct json_object *v;
    uint64_t x = 0, y = 0;
    bool has_view = get_u64(req, "view", &x);
    uint16_t view = has_view && x <= 0xffff ? (uint16_t)x : 0xffff;
    int acc = json_object_object_get_ex(req, "access", &v) ? access_of(v) : ALTP2M_ACCESS_DEFAULT;
    if (acc < 0)
        return need("an \"access\" of n, r, w, rw, x, rx, wx, rwx, rx2rw, n2rwx or default");
    if (!strcmp(op, "set-state")) {
        a.cmd = HVMOP_altp2m_set_domain_state;
        a.u.domain_state.state = json_object_object_get_ex(req, "on", &v) &&
                                 json_object_get_boolean(v);
    } else if (!strcmp(op, "create")) {
        a.cmd = HVMOP_altp2m_create_p2m;
        a.u.view.hvmmem_default_access = (uint16_t)acc;
    } else if (!strcmp(op, "destroy") || !strcmp(op, "switch")) {
        if (!has_view)
            return need("a \"view\"");
        a.cmd = !strcmp(op, "destroy") ? HVMOP_altp2m_destroy_p2m : HVMOP_altp2m_switch_p2m;
        a.u.view.view = view;
    } else if (!strcmp(op, "set-access")) {
        if (!has_view)
            return need("a \"view\"");
        if (!d->p2m.alt)
            return op_reply(-EOPNOTSUPP, op);
        return set_access(d, req, view, acc);
    } else if (!strcmp(op, "get-access")) {
        if (!has_view || !get_u64(req, "gfn", &y))
            return need("a \"view\" and a \"gfn\"");
        a.cmd = HVMOP_altp2m_get_mem_access;
        a.u.mem_access.view = view;
        a.u.mem_access.gfn = y;
    } else if (!strcmp(op, "change-gfn")) {
        a.cmd = HVMOP_altp2m_change_gfn;
        if (!has_view || !get_u64(req, "old_gfn", &a.u.change_gfn.old_gfn))
            return need("a \"view\", an \"old_gfn\" and a \"new_gfn\" (-1: revert)");
        a.u.change_gfn.view = view;
        a.u.change_gfn.new_gfn = get_u64(req, "new_gfn", &y) ? y : ~0ull;
    } else if (!strcmp(op, "set-visibility")) {
        if (!has_view)
            return need("a \"view\"");
        a.cmd = HVMOP_altp2m_set_visibility;
        a.u.set_visibility.altp2m_idx = view;
        a.u.set_visibility.visible = json_object_object_get_ex(req, "visible", &v) &&
                                     json_object_get_boolean(v);
    } else if (!strcmp(op, "get-p2m-idx")) {
        a.cmd = HVMOP_altp2m_get_p2m_idx;
        a.u.get_vcpu_p2m_idx.vcpu_id = get_u64(req, "vcpu", &y) && y <= UINT32_MAX ?
                                       (uint32_t)y : 0;
    } else if (!strcmp(op, "set-suppress-ve") || !strcmp(op, "get-suppress-ve")) {
        a.cmd = HVMOP_altp2m_set_suppress_ve;
    } else {
        return control_reply_err(EINVAL, "altp2m: unknown op \"%.64s\"", op);
    }
    int rc = domain_altp2m_op(d, &a, false, NULL);
    struct json_object *r = op_reply(rc, op);
    if (rc)
        return r;
    if (a.cmd == HVMOP_altp2m_create_p2m)
        json_object_object_add(r, "view", json_object_new_int(a.u.view.view));
    else if (a.cmd == HVMOP_altp2m_get_mem_access)
        json_object_object_add(r, "access",
                               json_object_new_string(access_name(a.u.mem_access.access)));
    else if (a.cmd == HVMOP_altp2m_get_p2m_idx)
        json_object_object_add(r, "view", json_object_new_int(a.u.get_vcpu_p2m_idx.altp2m_idx));
    return r;
}

struct json_object *altp2m_command(struct domain *d, struct json_object *req)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, "op", &v) || !json_object_is_type(v, json_type_string))
        return need("a string \"op\"");
    const char *op = json_object_get_string(v);
    if (!strcmp(op, "mode"))
        return set_mode(d, req);
    if (!strcmp(op, "status"))
        return status(d);
    if (!strcmp(op, "monitor-poll")) {
        struct json_object *r = control_reply_ok();
        json_object_object_add(r, "events", altp2m_monitor_poll(d));
        return r;
    }
    if (!strcmp(op, "monitor-answer"))
        return monitor_answer(d, req);
    if (!strcmp(op, "monitor-detach")) {
        altp2m_monitor_detach(d);
        return control_reply_ok();
    }
    return hvmop(d, req, op);
}
