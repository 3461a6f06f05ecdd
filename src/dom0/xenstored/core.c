/* Request handling: Xen's xenstore operations on the tree, with Xen's errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xs.h"

struct op {
    struct xs_conn *c;
    struct xs_tree *t;
    struct xs_txn *tx;      /* NULL: the main tree, changes visible and fired */
    bool quiet;             /* fire no watches (a trial run on a copy of the tree) */
};

/* ---------------------------------------------------------------- setup */

void xs_init(struct xs *xs)
{
    memset(xs, 0, sizeof(*xs));
    xs->tree = xs_tree_new(&xs->gen);
    xs_quota_defaults(&xs->quota);
    for (int i = 0; i < 2; i++) {
        xs->special_perms[i][0] = (struct xs_perm){ 0, XS_PERM_NONE };
        xs->special_nperms[i] = 1;
    }
}

void xs_fini(struct xs *xs)
{
    while (xs->domains) {
        struct xs_domain *d = xs->domains;
        xs->domains = d->next;
        xs_conn_free(d->conn);
        free(d->carried);
        free(d);
    }
    while (xs->conns)
        xs_conn_free(xs->conns);
    xs_tree_free(xs->tree);
    xs->tree = NULL;
}

struct xs_conn *xs_conn_new(struct xs *xs, uint32_t domid, bool is_domain)
{
    struct xs_conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->xs = xs;
    c->domid = domid;
    c->is_domain = is_domain;
    c->next_txid = 1;
    c->next = xs->conns;
    xs->conns = c;
    return c;
}

void xs_conn_reset(struct xs_conn *c, bool watches)
{
    while (c->txns) {
        struct xs_txn *t = c->txns;
        c->txns = t->next;
        xs_txn_free(t);
    }
    c->ntxns = 0;
    if (!watches)
        return;
    while (c->watches) {
        struct xs_watch *w = c->watches;
        c->watches = w->next;
        if (c->xs->ops.watch_changed)
            c->xs->ops.watch_changed(c->xs, c, w, false);
        xs_watch_free(w);
    }
    c->nwatches = 0;
}

void xs_conn_free(struct xs_conn *c)
{
    if (!c)
        return;
    for (struct xs_conn **pp = &c->xs->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    /* Watches of a socket client go with it, unpersisted (they never were). */
    void (*wc)(struct xs *, struct xs_conn *, const struct xs_watch *, bool) =
        c->xs->ops.watch_changed;
    if (!c->is_domain)
        c->xs->ops.watch_changed = NULL;
    xs_conn_reset(c, true);
    c->xs->ops.watch_changed = wc;
    free(c);
}

/* ---------------------------------------------------------------- domains */

struct xs_domain *xs_domain_find(struct xs *xs, uint32_t domid)
{
    for (struct xs_domain *d = xs->domains; d; d = d->next)
        if (d->domid == domid)
            return d;
    return NULL;
}

static void nosend(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
}

struct xs_domain *xs_domain_add(struct xs *xs, uint32_t domid)
{
    struct xs_domain *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    d->domid = domid;
    d->target = XS_NO_TARGET;
    d->conn = xs_conn_new(xs, domid, true);
    d->conn->send = nosend;
    d->next = xs->domains;
    xs->domains = d;
    return d;
}

struct revoke { struct xs *xs; uint32_t domid; struct xs_node **list; size_t n, cap; };

static void revoke_cb(void *ctx, const struct xs_node *n)
{
    struct revoke *r = ctx;
    bool hit = false;
    for (uint32_t i = 0; i < n->nperms; i++)
        hit |= n->perms[i].domid == r->domid;
    if (!hit)
        return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->list = realloc(r->list, r->cap * sizeof(*r->list));
        if (!r->list)
            abort();
    }
    r->list[r->n++] = (struct xs_node *)n;
}

/* XSA-322: what a removed domain owned becomes dom0's, its other entries go. */
static void revoke_perms(struct xs *xs, uint32_t domid)
{
    struct revoke r = { xs, domid, NULL, 0, 0 };
    xs_tree_walk(xs->tree->root, revoke_cb, &r);
    for (size_t i = 0; i < r.n; i++) {
        struct xs_node *n = r.list[i];
        struct xs_perm p[n->nperms];
        uint32_t np = 0;
        for (uint32_t k = 0; k < n->nperms; k++) {
            if (k == 0) {
                p[np] = n->perms[0];
                if (p[np].domid == domid)
                    p[np].domid = 0;
                np++;
            } else if (n->perms[k].domid != domid) {
                p[np++] = n->perms[k];
            }
        }
        xs_tree_set_perms(xs->tree, n, p, np);
    }
    free(r.list);
}

void xs_domain_gone(struct xs *xs, struct xs_domain *d, bool fire)
{
    uint32_t domid = d->domid;
    if (xs->ops.release)
        xs->ops.release(xs, d);
    for (struct xs_domain **pp = &xs->domains; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    d->conn->dead = true;
    xs_conn_free(d->conn);
    d->conn = NULL;
    if (xs->ops.domain_changed)
        xs->ops.domain_changed(xs, d, true);
    free(d->carried);
    free(d);
    revoke_perms(xs, domid);
    if (fire)
        xs_fire_special(xs, XS_SPECIAL_RELEASE, domid);
}

/* ---------------------------------------------------------------- paths */

static bool valid_chars(const char *p)
{
    for (; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '/' || ch == '_' || ch == '@'))
            return false;
    }
    return true;
}

int xs_canon(const struct xs_conn *c, const char *in, char *out, bool allow_special)
{
    size_t len;
    if (in[0] == '@') {
        if (!allow_special)
            return EINVAL;
        len = strlen(in);
        if (len > XENSTORE_ABS_PATH_MAX)
            return EINVAL;
        memcpy(out, in, len + 1);
        return 0;
    }
    if (in[0] == '/') {
        len = strlen(in);
        if (len > XENSTORE_ABS_PATH_MAX)
            return EINVAL;
        memcpy(out, in, len + 1);
    } else {
        int n = snprintf(out, XENSTORE_ABS_PATH_MAX + 1, "/local/domain/%u/%s", c->domid,
                         in);
        if (n < 0 || n > XENSTORE_ABS_PATH_MAX)
            return EINVAL;
        len = (size_t)n;
    }
    if (!valid_chars(out) || strstr(out, "//") || (len > 1 && out[len - 1] == '/'))
        return EINVAL;
    if (!xs_conn_priv(c)) {
        /* A guest's own subtree may hold paths of XENSTORE_REL_PATH_MAX. */
        char pre[32];
        int n = snprintf(pre, sizeof(pre), "/local/domain/%u/", c->domid);
        size_t base = strncmp(out, pre, (size_t)n) ? 0 : (size_t)n;
        if (len - base > XENSTORE_REL_PATH_MAX && base)
            return EINVAL;
    }
    return 0;
}

static void parent_path(const char *path, char *out)
{
    const char *s = strrchr(path, '/');
    size_t n = (size_t)(s - path);
    if (n == 0)
        n = 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

/* ---------------------------------------------------------------- node access */

/* A node as a request sees it: a node of o->t, or in a transaction, its entry (the
 * transaction's view; the main tree for paths it has not touched). */
struct view {
    bool present;
    struct xs_node *node;       /* outside a transaction */
    struct xs_txent *ent;       /* inside one */
    const uint8_t *val;
    uint32_t vlen;
    const struct xs_perm *perms;
    uint32_t nperms;
};

static void view_set(struct view *v, struct xs_node *n, struct xs_txent *e)
{
    memset(v, 0, sizeof(*v));
    v->node = n;
    v->ent = e;
    if (n) {
        v->present = true;
        v->val = n->val;
        v->vlen = n->vlen;
        v->perms = n->perms;
        v->nperms = n->nperms;
    } else if (e && e->present) {
        v->present = true;
        v->val = e->val;
        v->vlen = e->vlen;
        v->perms = e->perms;
        v->nperms = e->nperms;
    }
}

/* Look path up; in a transaction this records the access (ENOSPC over its limits). */
static int look(struct op *o, const char *path, struct view *v)
{
    struct xs_txent *e;
    if (!o->tx) {
        view_set(v, xs_tree_get(o->t, path), NULL);
        return 0;
    }
    int err = xs_txn_get(o->tx, o->t, path, &e);
    if (err)
        return err;
    view_set(v, NULL, e);
    return 0;
}

/* The permissions of path if present, without recording an access. */
static bool peek(struct op *o, const char *path, const struct xs_perm **p, uint32_t *np)
{
    if (o->tx)
        return xs_txn_peek(o->tx, o->t, path, p, np);
    struct xs_node *n = xs_tree_get(o->t, path);
    if (n) {
        *p = n->perms;
        *np = n->nperms;
    }
    return n != NULL;
}

static void sum_len(void *ctx, const char *name)
{
    *(uint32_t *)ctx += (uint32_t)strlen(name) + 1;
}

static uint32_t view_childlen(struct op *o, const struct view *v)
{
    uint32_t len = 0;
    if (!o->tx)
        return v->node->childlen;
    xs_txn_each_child(o->tx, o->t, v->ent, sum_len, &len);
    return len;
}

/* Xen's errno_from_parents: not knowing a node below an unreadable one is EACCES. */
static int err_from_parents(struct op *o, const char *path, int err)
{
    char p[XENSTORE_ABS_PATH_MAX + 2];
    const struct xs_perm *perms;
    uint32_t np;
    strcpy(p, path);
    while (strcmp(p, "/")) {
        char q[XENSTORE_ABS_PATH_MAX + 2];
        parent_path(p, q);
        strcpy(p, q);
        if (peek(o, p, &perms, &np))
            return (xs_perm_for(o->c, perms, np) & XS_PERM_READ) ? err : EACCES;
    }
    return err;
}

/* 0 if path is present and the connection has perm on it; else ENOENT, EACCES... */
static int get_node(struct op *o, const char *path, unsigned perm, struct view *v)
{
    int err = look(o, path, v);
    if (err)
        return err;
    if (!v->present)
        return err_from_parents(o, path, ENOENT);
    if ((xs_perm_for(o->c, v->perms, v->nperms) & perm) != perm)
        return err_from_parents(o, path, EACCES);
    return 0;
}

static bool unpriv(struct op *o)
{
    return !xs_conn_priv(o->c);
}

/* The nearest present ancestor of path (recorded in a transaction); *missing counts
 * the nodes a creation of path adds. */
static int nearest_present(struct op *o, const char *path, char *anc, struct view *a,
                           int *missing)
{
    int err;
    *missing = 1;
    strcpy(anc, path);
    for (;;) {
        char q[XENSTORE_ABS_PATH_MAX + 2];
        parent_path(anc, q);
        strcpy(anc, q);
        if ((err = look(o, anc, a)))
            return err;
        if (a->present)
            return 0;
        (*missing)++;
    }
}

/* Nodes the domain owns, in the request's view. */
static int64_t owned_now(struct op *o, uint32_t domid)
{
    int64_t n = o->t->owned[domid];
    if (o->tx && o->tx->quota_domid == domid)
        n += o->tx->owned_delta;
    return n;
}

/* Add one node under parent (the view of it) with value and perms. */
static int add_node(struct op *o, struct view *parent, const char *path, const void *val,
                    uint32_t vlen, const struct xs_perm *perms, uint32_t np,
                    struct view *out)
{
    if (!o->tx) {
        view_set(out, xs_tree_add(o->t, parent->node, path, val, vlen, perms, np), NULL);
        return 0;
    }
    int err = look(o, path, out);
    if (!err)
        err = xs_txn_create(o->tx, o->t, out->ent, val, vlen, perms, np);
    if (!err)
        view_set(out, NULL, out->ent);
    return err;
}

/* Create path (and missing parents) with value; perms inherited, guests own theirs. */
static int create_node(struct op *o, const char *path, const void *val, uint32_t vlen,
                       struct view *out)
{
    struct xs *xs = o->c->xs;
    char anc[XENSTORE_ABS_PATH_MAX + 2];
    struct view a;
    int missing, err;
    if ((err = nearest_present(o, path, anc, &a, &missing)))
        return err;
    if (!(xs_perm_for(o->c, a.perms, a.nperms) & XS_PERM_WRITE))
        return err_from_parents(o, path, EACCES);
    uint32_t np = a.nperms;
    struct xs_perm perms[np];
    memcpy(perms, a.perms, sizeof(perms));
    if (unpriv(o)) {
        perms[0].domid = o->c->domid;
        uint32_t q = xs->quota.nodes;
        if (q && owned_now(o, perms[0].domid) + missing > q)
            return ENOSPC;
        if (xs->quota.entry_size && xs_node_size(np, vlen, 0) >= xs->quota.entry_size)
            return ENOSPC;
    }
    /* Create top-down: path components after anc. */
    const char *rest = path + (strcmp(anc, "/") ? strlen(anc) : 0);
    char cur[XENSTORE_ABS_PATH_MAX + 2];
    size_t curlen = strcmp(anc, "/") ? strlen(anc) : 0;
    memcpy(cur, path, curlen);
    struct view parent = a;
    while (*rest) {
        const char *next = strchr(rest + 1, '/');
        size_t seg = next ? (size_t)(next - rest) : strlen(rest);
        memcpy(cur + curlen, rest, seg);
        curlen += seg;
        cur[curlen] = '\0';
        rest += seg;
        bool last = !*rest;
        if ((err = add_node(o, &parent, cur, last ? val : NULL, last ? vlen : 0, perms, np,
                            out)))
            return err;
        parent = *out;
    }
    return 0;
}

static void fire(struct op *o, const char *path, const struct view *v, bool recurse)
{
    if (!o->tx && !o->quiet)
        xs_watch_fire(o->c->xs, path, v->perms, v->nperms, recurse);
}

static int op_write(struct op *o, const char *path, const void *val, uint32_t vlen)
{
    struct view v;
    struct xs *xs = o->c->xs;
    int err = get_node(o, path, XS_PERM_WRITE, &v);
    if (err == ENOENT) {
        if ((err = create_node(o, path, val, vlen, &v)))
            return err;
    } else if (err) {
        return err;
    } else {
        if (unpriv(o) && xs->quota.entry_size &&
            xs_node_size(v.nperms, vlen, view_childlen(o, &v)) >= xs->quota.entry_size)
            return ENOSPC;
        if (o->tx)
            err = xs_txn_set_value(o->tx, o->t, v.ent, val, vlen);
        else
            xs_tree_set_value(o->t, v.node, val, vlen);
        if (err)
            return err;
        view_set(&v, v.node, v.ent);
    }
    fire(o, path, &v, false);
    return 0;
}

static int op_mkdir(struct op *o, const char *path)
{
    struct view v;
    int err = get_node(o, path, XS_PERM_WRITE, &v);
    if (err != ENOENT)
        return err;         /* 0: it exists */
    if ((err = create_node(o, path, NULL, 0, &v)))
        return err;
    fire(o, path, &v, false);
    return 0;
}

/* RM of a missing node: fine if its parent exists (Xen), else ENOENT. */
static int rm_missing(struct op *o, const char *path)
{
    char p[XENSTORE_ABS_PATH_MAX + 2];
    struct view pv;
    parent_path(path, p);
    int err = look(o, p, &pv);
    if (err)
        return err;
    return pv.present ? 0 : ENOENT;
}

static int op_rm(struct op *o, const char *path)
{
    struct view v, pv;
    char p[XENSTORE_ABS_PATH_MAX + 2];
    int err = get_node(o, path, XS_PERM_WRITE, &v);
    if (err)
        return err == ENOENT ? rm_missing(o, path) : err;
    if (!strcmp(path, "/"))
        return EINVAL;
    if (o->tx) {
        /* The parent's children change: its generation is checked at commit. */
        parent_path(path, p);
        if ((err = look(o, p, &pv)))
            return err;
        xs_txn_remove(o->tx, o->t, v.ent);
        return 0;
    }
    struct xs_perm perms[v.nperms];
    uint32_t np = v.nperms;
    memcpy(perms, v.perms, sizeof(perms));
    xs_tree_rm(o->t, v.node, NULL, NULL);
    if (!o->quiet)
        xs_watch_fire(o->c->xs, path, perms, np, true);
    return 0;
}

/* SET_PERMS of @introduceDomain / @releaseDomain. */
static int set_special_perms(struct op *o, const char *path, const struct xs_perm *p,
                             uint32_t np)
{
    struct xs *xs = o->c->xs;
    int w = !strcmp(path, "@introduceDomain") ? XS_SPECIAL_INTRODUCE :
            !strcmp(path, "@releaseDomain") ? XS_SPECIAL_RELEASE : -1;
    if (w < 0)
        return ENOENT;
    if (!(xs_perm_for(o->c, xs->special_perms[w], xs->special_nperms[w]) & XS_PERM_OWNER))
        return EACCES;
    if (np > 8)
        return ENOSPC;
    memcpy(xs->special_perms[w], p, np * sizeof(*p));
    xs->special_nperms[w] = np;
    if (xs->ops.special_changed)
        xs->ops.special_changed(xs, w);
    return 0;
}

static int op_set_perms(struct op *o, const char *path, const struct xs_perm *p, uint32_t np)
{
    struct xs *xs = o->c->xs;
    struct view v;
    if (path[0] == '@')
        return set_special_perms(o, path, p, np);
    int err = get_node(o, path, XS_PERM_WRITE, &v);
    if (err)
        return err;
    if (!(xs_perm_for(o->c, v.perms, v.nperms) & XS_PERM_OWNER))
        return EACCES;
    if (unpriv(o)) {
        if (p[0].domid != v.perms[0].domid)
            return EPERM;
        if (xs->quota.perms && np > xs->quota.perms)
            return ENOSPC;
        if (xs->quota.entry_size &&
            xs_node_size(np, v.vlen, view_childlen(o, &v)) >= xs->quota.entry_size)
            return ENOSPC;
    }
    if (o->tx)
        err = xs_txn_set_perms(o->tx, o->t, v.ent, p, np);
    else
        xs_tree_set_perms(o->t, v.node, p, np);
    if (err)
        return err;
    view_set(&v, v.node, v.ent);
    fire(o, path, &v, false);
    return 0;
}

/* A write made on a connection's behalf (migrate.c's import): every check of its own. */
int xs_write_as(struct xs_conn *c, struct xs_tree *t, bool fire_watches, const char *path,
                const void *val, uint32_t vlen)
{
    struct op o = { c, t, NULL, !fire_watches };
    return op_write(&o, path, val, vlen);
}

int xs_set_perms_as(struct xs_conn *c, struct xs_tree *t, bool fire_watches, const char *path,
                    const struct xs_perm *p, uint32_t np)
{
    if (np == 0 || path[0] != '/')
        return EINVAL;
    struct op o = { c, t, NULL, !fire_watches };
    return op_set_perms(&o, path, p, np);
}

/* ---------------------------------------------------------------- replies */

static void reply(struct xs_conn *c, const struct xsd_sockmsg *req, uint32_t type,
                  const void *body, size_t len);

static void reply_err(struct xs_conn *c, const struct xsd_sockmsg *req, int err)
{
    const char *s = xs_errno_name(err);
    reply(c, req, XS_ERROR, s, strlen(s) + 1);
}

static void reply(struct xs_conn *c, const struct xsd_sockmsg *req, uint32_t type,
                  const void *body, size_t len)
{
    if (len > XENSTORE_PAYLOAD_MAX) {
        reply_err(c, req, E2BIG);
        return;
    }
    struct xsd_sockmsg h = { .type = type, .req_id = req->req_id, .tx_id = req->tx_id,
                             .len = (uint32_t)len };
    c->send(c, &h, body);
}

static void reply_ok(struct xs_conn *c, const struct xsd_sockmsg *req)
{
    reply(c, req, req->type, "OK", 3);
}

static void reply_str(struct xs_conn *c, const struct xsd_sockmsg *req, const char *s)
{
    reply(c, req, req->type, s, strlen(s) + 1);
}

/* ---------------------------------------------------------------- handlers */

static int perms_string(const struct xs_perm *p, uint32_t np, char *buf, size_t sz)
{
    size_t off = 0;
    for (uint32_t i = 0; i < np; i++) {
        int n = snprintf(buf + off, sz - off, "%c%u", xs_perm_char(p[i].perm), p[i].domid);
        if (n < 0 || (size_t)n + 1 >= sz - off)
            return -1;
        off += (size_t)n + 1;
    }
    return (int)off;
}

static int do_get_perms(struct op *o, const char *path, const struct xsd_sockmsg *req)
{
    struct xs *xs = o->c->xs;
    char buf[XENSTORE_PAYLOAD_MAX + 64];
    const struct xs_perm *p;
    uint32_t np;
    if (path[0] == '@') {
        int w = !strcmp(path, "@introduceDomain") ? XS_SPECIAL_INTRODUCE :
                !strcmp(path, "@releaseDomain") ? XS_SPECIAL_RELEASE : -1;
        if (w < 0)
            return ENOENT;
        p = xs->special_perms[w];
        np = xs->special_nperms[w];
        if (!(xs_perm_for(o->c, p, np) & XS_PERM_READ))
            return EACCES;
    } else {
        struct view v;
        int err = get_node(o, path, XS_PERM_READ, &v);
        if (err)
            return err;
        p = v.perms;
        np = v.nperms;
    }
    int len = perms_string(p, np, buf, sizeof(buf));
    if (len < 0)
        return E2BIG;
    reply(o->c, req, XS_GET_PERMS, buf, (size_t)len);
    return 0;
}

/* The names of a node's children, each NUL-terminated, as the request sees them. */
struct names { char *buf; size_t len, cap; };

static void names_add(void *ctx, const char *name)
{
    struct names *nm = ctx;
    size_t l = strlen(name) + 1;
    if (nm->len + l > nm->cap) {
        nm->cap = (nm->len + l) * 2;
        nm->buf = realloc(nm->buf, nm->cap);
        if (!nm->buf)
            abort();
    }
    memcpy(nm->buf + nm->len, name, l);
    nm->len += l;
}

static void list_children(struct op *o, const struct view *v, struct names *nm)
{
    memset(nm, 0, sizeof(*nm));
    names_add(nm, "");          /* a buffer even for no child */
    nm->len = 0;
    if (o->tx) {
        xs_txn_each_child(o->tx, o->t, v->ent, names_add, nm);
        return;
    }
    for (uint32_t i = 0; i < v->node->nkids; i++)
        names_add(nm, v->node->kids[i]->name);
}

/* DIRECTORY_PART: the generation, then the names from offset start that fit, then an
 * empty name if that is the end of the list. */
static int directory_part(struct op *o, const struct view *v, const struct names *nm,
                          const struct xsd_sockmsg *req, const char *offstr)
{
    unsigned long start;
    if (!xs_parse_uint(offstr, UINT32_MAX, &start) || start > nm->len)
        return EINVAL;
    if (start && nm->buf[start - 1] != '\0')
        return EINVAL;      /* not at the start of a name */
    uint64_t gen = o->tx ? xs_txn_view_gen(o->tx, o->t, v->ent) : v->node->gen;
    char buf[XENSTORE_PAYLOAD_MAX + 1];
    size_t off = (size_t)snprintf(buf, 64, "%llu", (unsigned long long)gen) + 1;
    size_t pos = start;
    while (pos < nm->len) {
        size_t l = strlen(nm->buf + pos) + 1;
        if (off + l + 1 > XENSTORE_PAYLOAD_MAX)
            break;
        memcpy(buf + off, nm->buf + pos, l);
        off += l;
        pos += l;
    }
    if (pos == nm->len)
        buf[off++] = '\0';      /* the end of the list: an empty name */
    reply(o->c, req, XS_DIRECTORY_PART, buf, off);
    return 0;
}

static int do_directory(struct op *o, const char *path, const struct xsd_sockmsg *req,
                        const char *offstr)
{
    struct view v;
    struct names nm;
    int err = get_node(o, path, XS_PERM_READ, &v);
    if (err)
        return err;
    list_children(o, &v, &nm);
    if (!offstr)
        reply(o->c, req, XS_DIRECTORY, nm.buf, nm.len);
    else
        err = directory_part(o, &v, &nm, req, offstr);
    free(nm.buf);
    return err;
}

static struct xs_txn *find_txn(struct xs_conn *c, uint32_t id)
{
    for (struct xs_txn *t = c->txns; t; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

static void commit_fire(void *ctx, const char *path, const struct xs_perm *p, uint32_t np,
                        bool recurse)
{
    xs_watch_fire(ctx, path, p, np, recurse);
}

/* TRANSACTION_END: "T" commits (all of it or nothing), "F" drops. */
static int do_txn_end(struct xs_conn *c, const struct xsd_sockmsg *req, const char *arg)
{
    struct xs_txn **pp = &c->txns;
    for (; *pp && (*pp)->id != req->tx_id; pp = &(*pp)->next)
        ;
    if (!*pp)
        return c->lost_txns ? EAGAIN : ENOENT;
    bool commit;
    if (!strcmp(arg, "T"))
        commit = true;
    else if (!strcmp(arg, "F"))
        commit = false;
    else
        return EINVAL;
    struct xs_txn *t = *pp;
    *pp = t->next;
    c->ntxns--;
    int err = 0;
    if (commit) {
        struct xs *xs = c->xs;
        bool guest = !xs_conn_priv(c);
        err = xs_txn_commit(t, xs->tree, guest ? xs->quota.nodes : 0,
                            guest ? xs->quota.entry_size : 0, commit_fire, xs);
    }
    xs_txn_free(t);
    return err;
}

static bool parse_domid(const char *s, uint32_t *domid)
{
    unsigned long v;
    if (!xs_parse_uint(s, 0xFFFF, &v))
        return false;
    *domid = (uint32_t)v;
    return true;
}

static int do_introduce(struct xs_conn *c, const struct xsd_sockmsg *req, const char **v,
                        int n)
{
    struct xs *xs = c->xs;
    uint32_t domid, port;
    if (!xs_conn_priv(c))
        return EACCES;
    if (n < 3 || !parse_domid(v[0], &domid) || domid == 0 || domid > XS_MAX_DOMID)
        return EINVAL;
    char *end;
    errno = 0;
    long long gfn = strtoll(v[1], &end, 10);
    if (errno || *end || end == v[1])
        return EINVAL;
    unsigned long p;
    if (!xs_parse_uint(v[2], UINT32_MAX, &p))
        return EINVAL;
    port = (uint32_t)p;
    struct xs_domain *d = xs_domain_find(xs, domid);
    if (d && d->introduced) {
        reply_ok(c, req);
        return 0;
    }
    bool fresh = !d;
    if (!d)
        d = xs_domain_add(xs, domid);
    d->gfn = (uint64_t)gfn;
    d->port = port;
    d->shutdown = false;
    if (xs->ops.introduce) {
        int err = xs->ops.introduce(xs, d);
        if (err) {
            if (fresh) {
                for (struct xs_domain **pp = &xs->domains; *pp; pp = &(*pp)->next)
                    if (*pp == d) {
                        *pp = d->next;
                        break;
                    }
                xs_conn_free(d->conn);
                free(d->carried);
                free(d);
            }
            return err;
        }
    }
    d->introduced = true;
    if (xs->ops.domain_changed)
        xs->ops.domain_changed(xs, d, false);
    reply_ok(c, req);
    xs_fire_special(xs, XS_SPECIAL_INTRODUCE, domid);
    return 0;
}

static int do_control(struct xs_conn *c, const struct xsd_sockmsg *req, const char **v,
                      int n)
{
    struct xs *xs = c->xs;
    if (!xs_conn_priv(c))
        return EACCES;
    if (n < 1)
        return EINVAL;
    if (!strcmp(v[0], "check")) {
        reply_str(c, req, "OK");
        return 0;
    }
    if (!strcmp(v[0], "log")) {
        if (n < 2)
            return EINVAL;
        if (!strcmp(v[1], "on"))
            xs->log_requests = true;
        else if (!strcmp(v[1], "off"))
            xs->log_requests = false;
        else
            return EINVAL;
        reply_str(c, req, "OK");
        return 0;
    }
    if (!strcmp(v[0], "print")) {
        if (n < 2)
            return EINVAL;
        if (xs->log)
            xs->log("control print: %s", v[1]);
        reply_str(c, req, "OK");
        return 0;
    }
    if (!strcmp(v[0], "help")) {
        reply_str(c, req, "check\nlog\nprint\nquota\nhelp\nexport\nimport\nresume\n");
        return 0;
    }
    if (!strcmp(v[0], "quota")) {
        char buf[512];
        if (n >= 2 && strlen(v[1])) {
            uint32_t domid;
            if (!parse_domid(v[1], &domid) || domid > XS_MAX_DOMID)
                return EINVAL;
            struct xs_domain *d = xs_domain_find(xs, domid);
            if (!d)
                return ENOENT;
            snprintf(buf, sizeof(buf), "Domain %u:\nnodes: %u\nwatches: %u\n"
                     "transactions: %u\ntransaction memory: %zu\n", domid,
                     xs->tree->owned[domid], d->conn->nwatches, d->conn->ntxns,
                     d->conn->txn_bytes);
        } else {
            snprintf(buf, sizeof(buf), "Nodes per domain: %u\nEntry size: %u\n"
                     "Watches per domain: %u\nTransactions per domain: %u\n"
                     "Permissions per node: %u\nNodes per transaction: %u\n"
                     "Transaction memory per domain: %u\n",
                     xs->quota.nodes, xs->quota.entry_size, xs->quota.watches,
                     xs->quota.transactions, xs->quota.perms, xs->quota.trans_nodes,
                     xs->quota.trans_memory);
        }
        reply_str(c, req, buf);
        return 0;
    }
    if (xs->ops.control) {
        static char out[XENSTORE_PAYLOAD_MAX];
        size_t outlen = 0;
        int err = xs->ops.control(xs, c, v, n, out, sizeof(out), &outlen);
        if (err != ENOSYS) {
            if (!err)
                reply(c, req, XS_CONTROL, out, outlen);
            return err;
        }
    }
    return EINVAL;
}

static void log_req(struct xs_conn *c, const struct xsd_sockmsg *h, const uint8_t *body)
{
    if (!c->xs->log_requests || !c->xs->log)
        return;
    char s[81];
    uint32_t n = h->len < 80 ? h->len : 80;
    for (uint32_t i = 0; i < n; i++)
        s[i] = body[i] >= 0x20 && body[i] < 0x7f ? (char)body[i] : ' ';
    s[n] = '\0';
    c->xs->log("dom%u %s tx %u \"%s\"", c->domid, xs_type_name(h->type), h->tx_id, s);
}

/* ---------------------------------------------------------------- requests */

/* One request being handled: its words, and for node operations its path and view. */
struct req {
    struct xs_conn *c;
    const struct xsd_sockmsg *h;
    const uint8_t *body;
    const char *v[8];
    int n;                                  /* words in v */
    char path[XENSTORE_ABS_PATH_MAX + 2];   /* OP_NODE: v[0], canonical */
    struct op o;                            /* OP_NODE: the tree or transaction it sees */
};

/* Each handler answers the request itself and returns 0, or returns the errno to answer. */

static int handle_read(struct req *r)
{
    struct view nd;
    int err = get_node(&r->o, r->path, XS_PERM_READ, &nd);
    if (!err)
        reply(r->c, r->h, XS_READ, nd.val, nd.vlen);
    return err;
}

static int handle_write(struct req *r)
{
    size_t off = strlen(r->v[0]) + 1;
    int err = op_write(&r->o, r->path, r->body + off, r->h->len - (uint32_t)off);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_mkdir(struct req *r)
{
    int err = op_mkdir(&r->o, r->path);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_rm(struct req *r)
{
    int err = op_rm(&r->o, r->path);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_directory(struct req *r)
{
    return do_directory(&r->o, r->path, r->h, NULL);
}

static int handle_directory_part(struct req *r)
{
    return r->n < 2 ? EINVAL : do_directory(&r->o, r->path, r->h, r->v[1]);
}

static int handle_get_perms(struct req *r)
{
    return do_get_perms(&r->o, r->path, r->h);
}

static int handle_set_perms(struct req *r)
{
    struct xs_perm p[XENSTORE_PAYLOAD_MAX / 2];
    uint32_t np = 0;
    if (r->n < 2)
        return EINVAL;
    const char *all[XENSTORE_PAYLOAD_MAX / 2];
    int na = xs_wire_split(r->body, r->h->len, all, XENSTORE_PAYLOAD_MAX / 2);
    for (int i = 1; i < na; i++)
        if (!xs_perm_parse(all[i], &p[np++]))
            return EINVAL;
    int err = op_set_perms(&r->o, r->path, p, np);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_watch(struct req *r)
{
    int depth = -1;
    if (r->n < 2)
        return EINVAL;
    if (r->n >= 3 && r->v[2][0]) {
        unsigned long dv;
        if (!xs_parse_uint(r->v[2], 65535, &dv))
            return EINVAL;
        depth = (int)dv;
    }
    int err = xs_watch_add(r->c, r->v[0], r->v[1], depth, false);
    if (!err) {
        reply_ok(r->c, r->h);
        xs_watch_initial(r->c, r->v[0], r->v[1]);
    }
    return err;
}

static int handle_unwatch(struct req *r)
{
    if (r->n < 2)
        return EINVAL;
    int err = xs_watch_del(r->c, r->v[0], r->v[1]);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_reset_watches(struct req *r)
{
    xs_conn_reset(r->c, true);
    reply_ok(r->c, r->h);
    return 0;
}

static int handle_transaction_start(struct req *r)
{
    struct xs_conn *c = r->c;
    struct xs *xs = c->xs;
    if (r->h->tx_id)
        return EBUSY;
    bool guest = !xs_conn_priv(c);
    if (guest && xs->quota.transactions && c->ntxns >= xs->quota.transactions)
        return ENOSPC;
    uint32_t id;
    do {
        id = c->next_txid++;
    } while (id == 0 || find_txn(c, id));
    struct xs_txn *t = xs_txn_new(id, guest ? c->domid : XS_NO_TARGET,
                                  guest ? xs->quota.trans_nodes : 0, &c->txn_bytes,
                                  guest ? xs->quota.trans_memory : 0);
    t->next = c->txns;
    c->txns = t;
    c->ntxns++;
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", id);
    reply_str(c, r->h, buf);
    return 0;
}

static int handle_transaction_end(struct req *r)
{
    if (r->n < 1)
        return EINVAL;
    int err = do_txn_end(r->c, r->h, r->v[0]);
    if (!err)
        reply_ok(r->c, r->h);
    return err;
}

static int handle_introduce(struct req *r)
{
    return do_introduce(r->c, r->h, r->v, r->n);
}

/* The domain the request's first word names (privileged requests). 0 or an errno. */
static int request_domain(struct req *r, struct xs_domain **d)
{
    uint32_t domid;
    if (!xs_conn_priv(r->c))
        return EACCES;
    if (r->n < 1 || !parse_domid(r->v[0], &domid))
        return EINVAL;
    if (!(*d = xs_domain_find(r->c->xs, domid)))
        return ENOENT;
    return 0;
}

static int handle_release(struct req *r)
{
    struct xs_domain *d;
    uint32_t domid;
    if (xs_conn_priv(r->c) && r->n >= 1 && parse_domid(r->v[0], &domid) && domid == 0)
        return EINVAL;
    int err = request_domain(r, &d);
    if (!err) {
        xs_domain_gone(r->c->xs, d, true);
        reply_ok(r->c, r->h);
    }
    return err;
}

static int handle_get_domain_path(struct req *r)
{
    uint32_t domid;
    if (r->n < 1 || !parse_domid(r->v[0], &domid))
        return EINVAL;
    char buf[40];
    snprintf(buf, sizeof(buf), "/local/domain/%u", domid);
    reply_str(r->c, r->h, buf);
    return 0;
}

static int handle_is_domain_introduced(struct req *r)
{
    struct xs_domain *d;
    uint32_t domid;
    if (r->n < 1 || !parse_domid(r->v[0], &domid))
        return EINVAL;
    reply_str(r->c, r->h, domid == 0 || ((d = xs_domain_find(r->c->xs, domid)) &&
                                           d->introduced) ? "T" : "F");
    return 0;
}

static int handle_resume(struct req *r)
{
    struct xs_domain *d;
    int err = request_domain(r, &d);
    if (!err) {
        d->shutdown = false;
        reply_ok(r->c, r->h);
    }
    return err;
}

static int handle_set_target(struct req *r)
{
    struct xs_domain *d;
    uint32_t tdomid = 0;
    if (xs_conn_priv(r->c) && (r->n < 2 || !parse_domid(r->v[1], &tdomid)))
        return EINVAL;
    int err = request_domain(r, &d);
    if (!err) {
        d->target = tdomid;
        if (r->c->xs->ops.domain_changed)
            r->c->xs->ops.domain_changed(r->c->xs, d, false);
        reply_ok(r->c, r->h);
    }
    return err;
}

static int handle_control(struct req *r)
{
    return do_control(r->c, r->h, r->v, r->n);
}

/* What a request needs before its handler runs. */
enum {
    OP_NODE = 1u << 0,      /* v[0] is a node's path, seen through its transaction */
    OP_SPECIAL = 1u << 1,   /* ...which may also be a special @path */
};

/*
 * The wire protocol's requests (xen/io/xs_wire.h), by type. To add one: a handle_*
 * above and its row here; a type without a row is answered EINVAL.
 */
static const struct {
    int (*handle)(struct req *r);
    unsigned flags;
} requests[] = {
    [XS_READ]                 = { handle_read,                 OP_NODE },
    [XS_WRITE]                = { handle_write,                OP_NODE },
    [XS_MKDIR]                = { handle_mkdir,                OP_NODE },
    [XS_RM]                   = { handle_rm,                   OP_NODE },
    [XS_DIRECTORY]            = { handle_directory,            OP_NODE },
    [XS_DIRECTORY_PART]       = { handle_directory_part,       OP_NODE },
    [XS_GET_PERMS]            = { handle_get_perms,            OP_NODE | OP_SPECIAL },
    [XS_SET_PERMS]            = { handle_set_perms,            OP_NODE | OP_SPECIAL },
    [XS_WATCH]                = { handle_watch,                0 },
    [XS_UNWATCH]              = { handle_unwatch,              0 },
    [XS_RESET_WATCHES]        = { handle_reset_watches,        0 },
    [XS_TRANSACTION_START]    = { handle_transaction_start,    0 },
    [XS_TRANSACTION_END]      = { handle_transaction_end,      0 },
    [XS_INTRODUCE]            = { handle_introduce,            0 },
    [XS_RELEASE]              = { handle_release,              0 },
    [XS_GET_DOMAIN_PATH]      = { handle_get_domain_path,      0 },
    [XS_IS_DOMAIN_INTRODUCED] = { handle_is_domain_introduced, 0 },
    [XS_RESUME]               = { handle_resume,               0 },
    [XS_SET_TARGET]           = { handle_set_target,           0 },
    [XS_CONTROL]              = { handle_control,              0 },
};

/* A node request: its transaction (if any) and its canonical path. 0 or an errno. */
static int prepare_node_request(struct req *r, unsigned flags)
{
    if (r->h->tx_id) {
        r->o.tx = find_txn(r->c, r->h->tx_id);
        if (!r->o.tx)   /* a guest's transaction lost in a restart: retry, as after a conflict */
            return r->c->lost_txns ? EAGAIN : ENOENT;
    }
    if (r->n < 1)
        return EINVAL;
    return xs_canon(r->c, r->v[0], r->path, (flags & OP_SPECIAL) != 0);
}

void xs_handle(struct xs_conn *c, const struct xsd_sockmsg *h, const uint8_t *body)
{
    struct req r = { .c = c, .h = h, .body = body, .o = { c, c->xs->tree, NULL, false } };
    r.n = xs_wire_split(body, h->len, r.v, 8);
    log_req(c, h, body);
    int err = EINVAL;
    if (h->type < sizeof(requests) / sizeof(requests[0]) && requests[h->type].handle) {
        unsigned flags = requests[h->type].flags;
        err = flags & OP_NODE ? prepare_node_request(&r, flags) : 0;
        if (!err)
            err = requests[h->type].handle(&r);
    }
    if (err)
        reply_err(c, h, err);
}
