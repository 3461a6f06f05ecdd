/* Watches: registration, matching (Xen's rules incl. depth and specials), events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xs.h"

static const char *const special_names[2] = { "@introduceDomain", "@releaseDomain" };

void xs_watch_free(struct xs_watch *w)
{
    free(w->path);
    free(w->abs);
    free(w->token);
    free(w);
}

static void send_event(struct xs_conn *c, const char *path, const char *token)
{
    size_t pl = strlen(path) + 1, tl = strlen(token) + 1;
    char buf[XENSTORE_PAYLOAD_MAX + 2];
    if (pl + tl > XENSTORE_PAYLOAD_MAX)
        return;
    memcpy(buf, path, pl);
    memcpy(buf + pl, token, tl);
    struct xsd_sockmsg h = { .type = XS_WATCH_EVENT, .len = (uint32_t)(pl + tl) };
    c->send(c, &h, buf);
}

/* The event path as the watcher sees it: relative if the watch was. */
static void deliver(struct xs_conn *c, const struct xs_watch *w, const char *path)
{
    if (w->relative) {
        char prefix[40];
        int n = snprintf(prefix, sizeof(prefix), "/local/domain/%u/", c->domid);
        if (!strncmp(path, prefix, (size_t)n)) {
            send_event(c, path + n, w->token);
            return;
        }
    }
    send_event(c, path, w->token);
}

static int depth_below(const char *path, const char *wpath)
{
    size_t wl = strlen(wpath);
    int d = 0;
    if (!strcmp(wpath, "/"))
        wl = 0;
    for (const char *p = path + wl; *p; p++)
        d += *p == '/';
    return d;
}

int xs_watch_add(struct xs_conn *c, const char *path, const char *token, int depth,
                 bool fire_now)
{
    char abs[XENSTORE_ABS_PATH_MAX + 2];
    int err = xs_canon(c, path, abs, true);
    if (err)
        return err;
    for (struct xs_watch *w = c->watches; w; w = w->next)
        if (!strcmp(w->abs, abs) && !strcmp(w->token, token))
            return EEXIST;
    if (!xs_conn_priv(c) && c->xs->quota.watches && c->nwatches >= c->xs->quota.watches)
        return E2BIG;
    struct xs_watch *w = calloc(1, sizeof(*w));
    if (!w || !(w->path = strdup(path)) || !(w->abs = strdup(abs)) ||
        !(w->token = strdup(token)))
        abort();
    w->depth = depth;
    w->relative = path[0] != '/' && path[0] != '@';
    /* Appended: events for one change go out in registration order. */
    struct xs_watch **pp = &c->watches;
    while (*pp)
        pp = &(*pp)->next;
    *pp = w;
    c->nwatches++;
    if (c->xs->ops.watch_changed)
        c->xs->ops.watch_changed(c->xs, c, w, true);
    if (fire_now)
        deliver(c, w, w->abs);
    return 0;
}

int xs_watch_del(struct xs_conn *c, const char *path, const char *token)
{
    char abs[XENSTORE_ABS_PATH_MAX + 2];
    int err = xs_canon(c, path, abs, true);
    if (err)
        return err;
    for (struct xs_watch **pp = &c->watches; *pp; pp = &(*pp)->next) {
        struct xs_watch *w = *pp;
        if (!strcmp(w->abs, abs) && !strcmp(w->token, token)) {
            *pp = w->next;
            c->nwatches--;
            if (c->xs->ops.watch_changed)
                c->xs->ops.watch_changed(c->xs, c, w, false);
            xs_watch_free(w);
            return 0;
        }
    }
    return ENOENT;
}

static void fire_conn(struct xs_conn *c, const char *path, const struct xs_perm *perms,
                      uint32_t nperms, bool recurse)
{
    if (c->dead)
        return;
    if (perms && !(xs_perm_for(c, perms, nperms) & XS_PERM_READ))
        return;
    for (struct xs_watch *w = c->watches; w; w = w->next) {
        if (w->abs[0] == '@')
            continue;
        if (xs_is_child(path, w->abs)) {
            if (w->depth >= 0 && depth_below(path, w->abs) > w->depth)
                continue;
            deliver(c, w, path);
        } else if (recurse && xs_is_child(w->abs, path)) {
            deliver(c, w, w->abs);
        }
    }
}

void xs_watch_fire(struct xs *xs, const char *path, const struct xs_perm *perms,
                   uint32_t nperms, bool recurse)
{
    for (struct xs_conn *c = xs->conns; c; c = c->next)
        fire_conn(c, path, perms, nperms, recurse);
}

void xs_fire_special(struct xs *xs, int which, uint32_t domid)
{
    const char *name = special_names[which];
    char withid[48];
    snprintf(withid, sizeof(withid), "%s/%u", name, domid);
    for (struct xs_conn *c = xs->conns; c; c = c->next) {
        if (c->dead)
            continue;
        if (!xs_conn_priv(c) &&
            !(xs_perm_for(c, xs->special_perms[which], xs->special_nperms[which]) &
              XS_PERM_READ))
            continue;
        for (struct xs_watch *w = c->watches; w; w = w->next) {
            if (!strcmp(w->abs, name))
                deliver(c, w, w->depth == 1 ? withid : name);
            else if (!strcmp(w->abs, withid))
                deliver(c, w, withid);
        }
    }
}

/* The event every new watch gets once, right after the OK to its WATCH. */
void xs_watch_initial(struct xs_conn *c, const char *path, const char *token)
{
    char abs[XENSTORE_ABS_PATH_MAX + 2];
    if (xs_canon(c, path, abs, true))
        return;
    for (struct xs_watch *w = c->watches; w; w = w->next)
        if (!strcmp(w->abs, abs) && !strcmp(w->token, token)) {
            deliver(c, w, abs);
            return;
        }
}
