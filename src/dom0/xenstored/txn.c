/*
 * Transactions, optimistic as in Xen's C xenstored, without a copy of the tree: a
 * transaction keeps an overlay of the paths it touched (keyed by path). Each entry has
 * the main tree's generation at the first touch (0: absent), checked at commit, and the
 * node as the transaction sees it: a copy of what it read (a second read sees the same
 * value), what it wrote, or a tombstone (removed: the main subtree below is hidden too).
 * Paths it never touched fall through to the main tree. TRANSACTION_END "T" checks
 * every generation (EAGAIN on a change), then what applying the changes needs (quotas,
 * parents), and only then applies them all: everything or nothing.
 * The cost is in what a transaction touches; what it holds is charged to its
 * connection (xs_txn.held) and bounded.
 */
#include <stdlib.h>
#include <string.h>
#include "xs.h"


/* ---------------------------------------------------------------- the overlay table */

static struct xs_txent *find_n(const struct xs_txn *t, const char *path, size_t len,
                               size_t h)
{
    struct xs_txent *e = t->buckets[h & (t->nbuckets - 1)];
    for (; e; e = e->hnext)
        if (e->hash == h && e->plen == len && !memcmp(e->path, path, len))
            return e;
    return NULL;
}

static struct xs_txent *find(const struct xs_txn *t, const char *path)
{
    size_t len = strlen(path);
    return find_n(t, path, len, xs_hash_n(path, len));
}

static void table_grow(struct xs_txn *t)
{
    size_t nb = t->nbuckets * 4;
    struct xs_txent **b = calloc(nb, sizeof(*b));
    if (!b)
        abort();
    for (struct xs_txent *e = t->first; e; e = e->next) {
        e->hnext = b[e->hash & (nb - 1)];
        b[e->hash & (nb - 1)] = e;
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

static void table_insert(struct xs_txn *t, struct xs_txent *e)
{
    if (t->count + 1 > t->nbuckets * 2)
        table_grow(t);
    e->hnext = t->buckets[e->hash & (t->nbuckets - 1)];
    t->buckets[e->hash & (t->nbuckets - 1)] = e;
    *t->tail = e;
    t->tail = &e->next;
    t->count++;
}

/* The entry of the longest proper ancestor of path the transaction touched, if any:
 * one pass over path, the hash of each prefix being the hash's state there. */
static const struct xs_txent *nearest_ancestor(const struct xs_txn *t, const char *path)
{
    const struct xs_txent *best = NULL, *e;
    size_t h = XS_HASH_START;
    for (size_t i = 0; path[i]; i++) {
        if (i == 1 || (i > 1 && path[i] == '/')) {
            if ((e = find_n(t, path, i, h)))
                best = e;
        }
        h = xs_hash_step(h, path[i]);
    }
    return best;
}

/* A path below a removed or created one, or below an absent one, is not the main
 * tree's in the view. (A present, not fresh entry is never below such a one.) */
static bool hidden(const struct xs_txn *t, const char *path)
{
    const struct xs_txent *a = nearest_ancestor(t, path);
    return a && (!a->present || a->fresh);
}

/* ---------------------------------------------------------------- life */

struct xs_txn *xs_txn_new(uint32_t id, uint32_t quota_domid, uint32_t max_entries,
                          size_t *held, size_t max_held)
{
    struct xs_txn *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->id = id;
    t->quota_domid = quota_domid;
    t->max_entries = max_entries;
    t->held = held;
    t->max_held = max_held;
    t->nbuckets = 16;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets)
        abort();
    t->tail = &t->first;
    return t;
}

void xs_txn_free(struct xs_txn *t)
{
    if (!t)
        return;
    struct xs_txent *e = t->first, *nx;
    for (; e; e = nx) {
        nx = e->next;
        *t->held -= e->bytes;
        free(e->path);
        free(e->val);
        free(e->perms);
        free(e);
    }
    free(t->buckets);
    free(t);
}

/* ---------------------------------------------------------------- entry contents */

static size_t ent_size(size_t plen, uint32_t vlen, uint32_t np)
{
    return sizeof(struct xs_txent) + plen + 1 + vlen + np * sizeof(struct xs_perm);
}

/* Charge the change of an entry's size from old to new: false over the limit. */
static bool charge(struct xs_txn *t, size_t old, size_t new)
{
    if (new > old && t->max_held && *t->held + (new - old) > t->max_held)
        return false;
    *t->held = *t->held - old + new;
    return true;
}

/* Set the entry's view to (val, perms), or to nothing (val NULL and np 0). */
static int ent_fill(struct xs_txn *t, struct xs_txent *e, const void *val, uint32_t vlen,
                    const struct xs_perm *p, uint32_t np)
{
    size_t size = ent_size(e->plen, vlen, np);
    if (!charge(t, e->bytes, size))
        return ENOSPC;
    uint8_t *v = xs_xmalloc(vlen);
    struct xs_perm *pp = xs_xmalloc(np * sizeof(*p));
    if (vlen)
        memcpy(v, val, vlen);
    if (np)
        memcpy(pp, p, np * sizeof(*p));
    free(e->val);
    free(e->perms);
    e->val = v;
    e->vlen = vlen;
    e->perms = pp;
    e->nperms = np;
    e->bytes = size;
    return 0;
}

static void ent_clear(struct xs_txn *t, struct xs_txent *e)
{
    ent_fill(t, e, NULL, 0, NULL, 0);       /* shrinking: cannot fail */
    e->present = e->fresh = e->set_val = e->set_perms = false;
}

int xs_txn_get(struct xs_txn *t, const struct xs_tree *main, const char *path,
               struct xs_txent **out)
{
    size_t len = strlen(path), h = xs_hash_n(path, len);
    struct xs_txent *e = find_n(t, path, len, h);
    if (e) {
        *out = e;
        return 0;
    }
    if (t->max_entries && t->count >= t->max_entries)
        return ENOSPC;
    bool below = hidden(t, path);
    const struct xs_node *n = below ? NULL : xs_tree_get(main, path);
    size_t size = ent_size(len, n ? n->vlen : 0, n ? n->nperms : 0);
    if (!charge(t, 0, size))
        return ENOSPC;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->path = strdup(path)))
        abort();
    xs_alloc_stats.txn_entries++;
    e->plen = len;
    e->hash = h;
    e->checked = !below;
    e->base_gen = e->gen = n ? n->gen : 0;
    e->present = n != NULL;
    e->val = xs_xmalloc(n ? n->vlen : 0);
    e->perms = xs_xmalloc(n ? n->nperms * sizeof(*n->perms) : 0);
    if (n) {
        memcpy(e->val, n->val, n->vlen);
        memcpy(e->perms, n->perms, n->nperms * sizeof(*n->perms));
        e->vlen = n->vlen;
        e->nperms = n->nperms;
    }
    e->bytes = size;
    table_insert(t, e);
    *out = e;
    return 0;
}

bool xs_txn_peek(const struct xs_txn *t, const struct xs_tree *main, const char *path,
                 const struct xs_perm **perms, uint32_t *nperms)
{
    const struct xs_txent *e = find(t, path);
    if (e) {
        *perms = e->perms;
        *nperms = e->nperms;
        return e->present;
    }
    const struct xs_node *n = hidden(t, path) ? NULL : xs_tree_get(main, path);
    if (!n)
        return false;
    *perms = n->perms;
    *nperms = n->nperms;
    return true;
}

/* ---------------------------------------------------------------- changes of the view */

static void parent_of(const char *path, char *out)
{
    const char *s = strrchr(path, '/');
    size_t n = s > path ? (size_t)(s - path) : 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

/* The children list of the parent changed: its DIRECTORY_PART generation too. */
static void touch_parent(struct xs_txn *t, const struct xs_tree *main, const char *path)
{
    char p[XENSTORE_ABS_PATH_MAX + 2];
    if (strlen(path) > XENSTORE_ABS_PATH_MAX || !strcmp(path, "/"))
        return;
    parent_of(path, p);
    struct xs_txent *pe = find(t, p);
    if (pe)
        pe->gen = ++*main->gen;
}

static bool owned_by(const struct xs_perm *p, uint32_t np, uint32_t domid)
{
    return np && p[0].domid == domid;
}

int xs_txn_create(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                  const void *val, uint32_t vlen, const struct xs_perm *p, uint32_t np)
{
    int err = ent_fill(t, e, val, vlen, p, np);
    if (err)
        return err;
    e->present = e->fresh = e->set_val = e->set_perms = true;
    e->gen = ++*main->gen;
    touch_parent(t, main, e->path);
    if (owned_by(p, np, t->quota_domid))
        t->owned_delta++;
    return 0;
}

int xs_txn_set_value(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                     const void *val, uint32_t vlen)
{
    struct xs_perm p[e->nperms ? e->nperms : 1];
    memcpy(p, e->perms, e->nperms * sizeof(*p));
    int err = ent_fill(t, e, val, vlen, p, e->nperms);
    if (err)
        return err;
    e->set_val = true;
    e->gen = ++*main->gen;
    return 0;
}

int xs_txn_set_perms(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                     const struct xs_perm *p, uint32_t np)
{
    bool was = owned_by(e->perms, e->nperms, t->quota_domid);
    uint8_t *v = xs_xmalloc(e->vlen);
    memcpy(v, e->val, e->vlen);
    int err = ent_fill(t, e, v, e->vlen, p, np);
    free(v);
    if (err)
        return err;
    t->owned_delta += (int)owned_by(p, np, t->quota_domid) - (int)was;
    e->set_perms = true;
    e->gen = ++*main->gen;
    return 0;
}

static bool at_or_below(const char *path, const char *top)
{
    return xs_is_child(path, top);
}

/* Nodes of the main subtree at m that the view still has, owned by domid. Touched
 * paths the transaction removed or replaced are counted with the entries. */
static uint32_t owned_main_below(const struct xs_txn *t, const struct xs_node *m,
                                 uint32_t domid)
{
    const struct xs_txent *e = find(t, m->path);
    if (e && (!e->present || e->fresh))
        return 0;
    uint32_t n = e ? owned_by(e->perms, e->nperms, domid)
                   : owned_by(m->perms, m->nperms, domid);
    for (uint32_t i = 0; i < m->nkids; i++)
        n += owned_main_below(t, m->kids[i], domid);
    return n;
}

/* Nodes owned by domid in the view's subtree at the present entry e. */
static uint32_t owned_in_view(const struct xs_txn *t, const struct xs_tree *main,
                              const struct xs_txent *e, uint32_t domid)
{
    uint32_t n = 0;
    const struct xs_node *m = e->fresh ? NULL : xs_tree_get(main, e->path);
    if (m)
        n += owned_main_below(t, m, domid);
    for (const struct xs_txent *x = t->first; x; x = x->next)
        if (x->present && x->fresh && at_or_below(x->path, e->path))
            n += owned_by(x->perms, x->nperms, domid);
    return n;
}

void xs_txn_remove(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e)
{
    if (t->quota_domid != XS_NO_TARGET)
        t->owned_delta -= owned_in_view(t, main, e, t->quota_domid);
    for (struct xs_txent *x = t->first; x; x = x->next)
        if (x != e && at_or_below(x->path, e->path))
            ent_clear(t, x);
    ent_clear(t, e);
    e->fresh = true;            /* the tombstone hides the main subtree */
    e->gen = ++*main->gen;
    touch_parent(t, main, e->path);
}

/* ---------------------------------------------------------------- directories */

/* Is path a child (one level) of dir? */
static bool direct_child(const char *path, size_t plen, const char *dir, size_t dlen)
{
    size_t base = dlen == 1 ? 0 : dlen;     /* "/" */
    if (plen <= base + 1 || memcmp(path, dir, base) || path[base] != '/')
        return false;
    return !memchr(path + base + 1, '/', plen - base - 1);
}

void xs_txn_each_child(const struct xs_txn *t, const struct xs_tree *main,
                       const struct xs_txent *e,
                       void (*cb)(void *ctx, const char *name), void *ctx)
{
    const struct xs_node *m = e->fresh ? NULL : xs_tree_get(main, e->path);
    for (uint32_t i = 0; m && i < m->nkids; i++) {
        const struct xs_txent *k = find(t, m->kids[i]->path);
        if (!k || (k->present && !k->fresh))
            cb(ctx, m->kids[i]->name);
    }
    /* Then what the transaction created (or the main tree dropped since it looked). */
    for (const struct xs_txent *k = t->first; k; k = k->next) {
        if (!k->present || !direct_child(k->path, k->plen, e->path, e->plen))
            continue;
        if (k->fresh || !m || !xs_tree_get(main, k->path))
            cb(ctx, strrchr(k->path, '/') + 1);
    }
}

uint64_t xs_txn_view_gen(const struct xs_txn *t, const struct xs_tree *main,
                         const struct xs_txent *e)
{
    const struct xs_node *m = e->fresh ? NULL : xs_tree_get(main, e->path);
    (void)t;
    return m && m->gen > e->gen ? m->gen : e->gen;
}

static void add_len(void *ctx, const char *name)
{
    *(uint32_t *)ctx += (uint32_t)strlen(name) + 1;
}

/* ---------------------------------------------------------------- commit */

static bool conflicts(const struct xs_txn *t, const struct xs_tree *main)
{
    for (const struct xs_txent *e = t->first; e; e = e->next) {
        if (!e->checked)
            continue;
        const struct xs_node *n = xs_tree_get(main, e->path);
        if ((n ? n->gen : 0) != e->base_gen)
            return true;
    }
    return false;
}

struct change { struct xs_txent *e; uint32_t depth, seq; };

static int by_depth(const void *a, const void *b)
{
    const struct change *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The entries that change the main tree, parents before children. */
static struct change *changes(const struct xs_txn *t, size_t *count)
{
    struct change *c = xs_xmalloc(t->count * sizeof(*c));
    size_t n = 0;
    uint32_t seq = 0;
    for (struct xs_txent *e = t->first; e; e = e->next, seq++) {
        if (e->present && !e->fresh && !e->set_val && !e->set_perms)
            continue;
        uint32_t depth = 0;
        for (const char *p = e->path; *p; p++)
            depth += *p == '/';
        c[n++] = (struct change){ e, depth, seq };
    }
    qsort(c, n, sizeof(*c), by_depth);
    *count = n;
    return c;
}

static uint32_t owned_subtree(const struct xs_node *m, uint32_t d)
{
    uint32_t n = owned_by(m->perms, m->nperms, d);
    for (uint32_t i = 0; i < m->nkids; i++)
        n += owned_subtree(m->kids[i], d);
    return n;
}

/* How many more nodes d owns once the changes are applied to main as it is now
 * (exact: the main tree may have changed below a removed path without a conflict). */
static int64_t owned_change(const struct xs_txn *t, const struct xs_tree *main,
                            const struct change *c, size_t n, uint32_t d)
{
    int64_t delta = 0;
    for (size_t i = 0; i < n; i++) {
        const struct xs_txent *e = c[i].e;
        const struct xs_node *m = xs_tree_get(main, e->path);
        if ((!e->present || e->fresh) && m && !hidden(t, e->path))
            delta -= owned_subtree(m, d);       /* a topmost removal */
        if (!e->present)
            continue;
        if (e->fresh)
            delta += owned_by(e->perms, e->nperms, d);
        else if (e->set_perms && m)
            delta += (int)owned_by(e->perms, e->nperms, d) -
                     (int)owned_by(m->perms, m->nperms, d);
    }
    return delta;
}

/* Would applying them succeed? The conflict check passed: main is as the view saw it
 * wherever the transaction looked. */
static int check_changes(const struct xs_txn *t, const struct xs_tree *main,
                         const struct change *c, size_t n, uint32_t node_quota,
                         uint32_t entry_quota)
{
    uint32_t d = t->quota_domid;
    if (node_quota && d <= XS_MAX_DOMID) {
        int64_t delta = owned_change(t, main, c, n, d);
        if (delta > 0 && (int64_t)main->owned[d] + delta > (int64_t)node_quota)
            return ENOSPC;
    }
    for (size_t i = 0; i < n; i++) {
        const struct xs_txent *e = c[i].e;
        const struct xs_perm *pp;
        uint32_t np;
        char parent[XENSTORE_ABS_PATH_MAX + 2];
        if (!e->present)
            continue;
        parent_of(e->path, parent);
        if (e->fresh && !xs_txn_peek(t, main, parent, &pp, &np))
            return EAGAIN;
        uint32_t childlen = 0;
        if (entry_quota) {
            xs_txn_each_child(t, main, e, add_len, &childlen);
            if (xs_node_size(e->nperms, e->vlen, childlen) >= entry_quota)
                return ENOSPC;
        }
    }
    return 0;
}

static void apply_removals(struct xs_tree *main, const struct change *c, size_t n,
                           xs_txn_fire_fn *fire, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        const struct xs_txent *e = c[i].e;
        if (e->present && !e->fresh)
            continue;
        struct xs_node *m = xs_tree_get(main, e->path);
        if (!m || m == main->root)
            continue;       /* absent already, or went with a removed ancestor */
        struct xs_perm p[m->nperms ? m->nperms : 1];
        uint32_t np = m->nperms;
        memcpy(p, m->perms, np * sizeof(*p));
        xs_tree_rm(main, m, NULL, NULL);
        fire(ctx, e->path, p, np, true);
    }
}

static void apply_writes(struct xs_tree *main, const struct change *c, size_t n,
                         xs_txn_fire_fn *fire, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        const struct xs_txent *e = c[i].e;
        char parent[XENSTORE_ABS_PATH_MAX + 2];
        if (!e->present)
            continue;
        struct xs_node *m = xs_tree_get(main, e->path);
        if (e->fresh) {
            parent_of(e->path, parent);
            struct xs_node *pn = xs_tree_get(main, parent);
            if (!pn || m)
                continue;   /* checked before: cannot happen */
            m = xs_tree_add(main, pn, e->path, e->val, e->vlen, e->perms, e->nperms);
        } else {
            if (!m)
                continue;   /* the conflict check saw it: cannot happen */
            if (e->set_val)
                xs_tree_set_value(main, m, e->val, e->vlen);
            if (e->set_perms)
                xs_tree_set_perms(main, m, e->perms, e->nperms);
        }
        fire(ctx, e->path, m->perms, m->nperms, false);
    }
}

int xs_txn_commit(struct xs_txn *t, struct xs_tree *main, uint32_t node_quota,
                  uint32_t entry_quota, xs_txn_fire_fn *fire, void *ctx)
{
    if (conflicts(t, main))
        return EAGAIN;
    size_t n;
    struct change *c = changes(t, &n);
    int err = check_changes(t, main, c, n, node_quota, entry_quota);
    if (!err) {
        apply_removals(main, c, n, fire, ctx);
        apply_writes(main, c, n, fire, ctx);
    }
    free(c);
    return err;
}
