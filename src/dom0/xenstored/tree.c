/* The node tree: nodes by full path in a hash table, children in creation order. */
#include <stdlib.h>
#include <string.h>
#include "xs.h"

static size_t hash_path(const char *s)
{
    return xs_hash_n(s, strlen(s));
}

void *xs_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

bool xs_is_child(const char *child, const char *parent)
{
    size_t len;
    if (parent[0] == '/' && parent[1] == '\0')
        return child[0] == '/';
    len = strlen(parent);
    return !strncmp(child, parent, len) && (child[len] == '/' || child[len] == '\0');
}

static void hash_insert(struct xs_tree *t, struct xs_node *n)
{
    if (t->count + 1 > t->nbuckets * 2) {
        size_t nb = t->nbuckets * 4;
        struct xs_node **b = calloc(nb, sizeof(*b));
        if (!b)
            abort();
        for (size_t i = 0; i < t->nbuckets; i++) {
            struct xs_node *m = t->buckets[i], *nx;
            for (; m; m = nx) {
                nx = m->hnext;
                size_t h = hash_path(m->path) & (nb - 1);
                m->hnext = b[h];
                b[h] = m;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
    }
    size_t h = hash_path(n->path) & (t->nbuckets - 1);
    n->hnext = t->buckets[h];
    t->buckets[h] = n;
    t->count++;
}

static void hash_remove(struct xs_tree *t, struct xs_node *n)
{
    struct xs_node **pp = &t->buckets[hash_path(n->path) & (t->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == n) {
            *pp = n->hnext;
            t->count--;
            return;
        }
}

struct xs_node *xs_tree_get(const struct xs_tree *t, const char *path)
{
    struct xs_node *n = t->buckets[hash_path(path) & (t->nbuckets - 1)];
    for (; n; n = n->hnext)
        if (!strcmp(n->path, path))
            return n;
    return NULL;
}

static void owned_adj(struct xs_tree *t, const struct xs_node *n, int d)
{
    if (n->nperms && n->perms[0].domid <= XS_MAX_DOMID)
        t->owned[n->perms[0].domid] += (uint32_t)d;
}

struct xs_alloc_stats xs_alloc_stats;

static struct xs_node *node_new(const char *path, const void *val, uint32_t vlen,
                                const struct xs_perm *perms, uint32_t np)
{
    struct xs_node *n = calloc(1, sizeof(*n));
    if (!n)
        abort();
    xs_alloc_stats.tree_nodes++;
    n->path = strdup(path);
    if (!n->path)
        abort();
    const char *slash = strrchr(n->path, '/');
    n->name = slash ? slash + 1 : n->path;
    n->val = xs_xmalloc(vlen);
    if (vlen)
        memcpy(n->val, val, vlen);
    n->vlen = vlen;
    n->perms = xs_xmalloc(np * sizeof(*perms));
    memcpy(n->perms, perms, np * sizeof(*perms));
    n->nperms = np;
    return n;
}

struct xs_tree *xs_tree_new(uint64_t *gen)
{
    struct xs_tree *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->gen = gen;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->owned = calloc(XS_MAX_DOMID + 1, sizeof(*t->owned));
    if (!t->buckets || !t->owned)
        abort();
    struct xs_perm p = { 0, XS_PERM_NONE };
    t->root = node_new("/", NULL, 0, &p, 1);
    t->root->name = "";
    t->root->gen = ++*gen;
    hash_insert(t, t->root);
    owned_adj(t, t->root, 1);
    /* Xen's initial tree has /tool/xenstored (empty). */
    struct xs_node *tool = xs_tree_add(t, t->root, "/tool", NULL, 0, &p, 1);
    xs_tree_add(t, tool, "/tool/xenstored", NULL, 0, &p, 1);
    return t;
}

static void node_free(struct xs_node *n)
{
    free(n->path);
    free(n->val);
    free(n->perms);
    free(n->kids);
    free(n);
}

static void free_rec(struct xs_node *n)
{
    for (uint32_t i = 0; i < n->nkids; i++)
        free_rec(n->kids[i]);
    node_free(n);
}

void xs_tree_free(struct xs_tree *t)
{
    if (!t)
        return;
    free_rec(t->root);
    free(t->buckets);
    free(t->owned);
    free(t);
}

static void copy_rec(struct xs_tree *t, struct xs_node *parent, const struct xs_node *src,
                     struct xs_node *dst)
{
    dst->gen = src->gen;
    dst->parent = parent;
    dst->childlen = src->childlen;
    dst->nkids = dst->capkids = src->nkids;
    dst->kids = xs_xmalloc(src->nkids * sizeof(*dst->kids));
    for (uint32_t i = 0; i < src->nkids; i++) {
        const struct xs_node *k = src->kids[i];
        struct xs_node *c = node_new(k->path, k->val, k->vlen, k->perms, k->nperms);
        hash_insert(t, c);
        dst->kids[i] = c;
        copy_rec(t, dst, k, c);
    }
}

struct xs_tree *xs_tree_copy(const struct xs_tree *src)
{
    struct xs_tree *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->gen = src->gen;
    t->nbuckets = src->nbuckets;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->owned = xs_xmalloc((XS_MAX_DOMID + 1) * sizeof(*t->owned));
    if (!t->buckets)
        abort();
    memcpy(t->owned, src->owned, (XS_MAX_DOMID + 1) * sizeof(*t->owned));
    const struct xs_node *r = src->root;
    t->root = node_new("/", r->val, r->vlen, r->perms, r->nperms);
    t->root->name = "";
    hash_insert(t, t->root);
    copy_rec(t, NULL, r, t->root);
    return t;
}

struct xs_node *xs_tree_add(struct xs_tree *t, struct xs_node *parent, const char *path,
                            const void *val, uint32_t vlen,
                            const struct xs_perm *perms, uint32_t nperms)
{
    struct xs_node *n = node_new(path, val, vlen, perms, nperms);
    n->parent = parent;
    n->gen = ++*t->gen;
    if (parent->nkids == parent->capkids) {
        parent->capkids = parent->capkids ? parent->capkids * 2 : 4;
        parent->kids = realloc(parent->kids, parent->capkids * sizeof(*parent->kids));
        if (!parent->kids)
            abort();
    }
    parent->kids[parent->nkids++] = n;
    parent->childlen += (uint32_t)strlen(n->name) + 1;
    parent->gen = ++*t->gen;
    hash_insert(t, n);
    owned_adj(t, n, 1);
    if (t->changed)
        t->changed(t->changed_ctx, XS_CHG_NODE, n);
    return n;
}

int xs_tree_set_value(struct xs_tree *t, struct xs_node *n, const void *val, uint32_t vlen)
{
    uint8_t *v = xs_xmalloc(vlen);
    if (vlen)
        memcpy(v, val, vlen);
    free(n->val);
    n->val = v;
    n->vlen = vlen;
    n->gen = ++*t->gen;
    if (t->changed)
        t->changed(t->changed_ctx, XS_CHG_NODE, n);
    return 0;
}

int xs_tree_set_perms(struct xs_tree *t, struct xs_node *n, const struct xs_perm *p,
                      uint32_t np)
{
    struct xs_perm *np2 = xs_xmalloc(np * sizeof(*p));
    memcpy(np2, p, np * sizeof(*p));
    owned_adj(t, n, -1);
    free(n->perms);
    n->perms = np2;
    n->nperms = np;
    owned_adj(t, n, 1);
    n->gen = ++*t->gen;
    if (t->changed)
        t->changed(t->changed_ctx, XS_CHG_NODE, n);
    return 0;
}

static void rm_rec(struct xs_tree *t, struct xs_node *n,
                   void (*cb)(void *ctx, const struct xs_node *n), void *ctx)
{
    for (uint32_t i = 0; i < n->nkids; i++)
        rm_rec(t, n->kids[i], cb, ctx);
    if (cb)
        cb(ctx, n);
    hash_remove(t, n);
    owned_adj(t, n, -1);
    node_free(n);
}

void xs_tree_rm(struct xs_tree *t, struct xs_node *n,
                void (*cb)(void *ctx, const struct xs_node *n), void *ctx)
{
    struct xs_node *p = n->parent;
    if (!p)
        return;         /* never the root */
    if (t->changed)
        t->changed(t->changed_ctx, XS_CHG_RM, n);
    for (uint32_t i = 0; i < p->nkids; i++)
        if (p->kids[i] == n) {
            memmove(&p->kids[i], &p->kids[i + 1], (p->nkids - i - 1) * sizeof(*p->kids));
            p->nkids--;
            break;
        }
    p->childlen -= (uint32_t)strlen(n->name) + 1;
    p->gen = ++*t->gen;
    rm_rec(t, n, cb, ctx);
}

void xs_tree_walk(const struct xs_node *n, void (*cb)(void *ctx, const struct xs_node *n),
                  void *ctx)
{
    cb(ctx, n);
    for (uint32_t i = 0; i < n->nkids; i++)
        xs_tree_walk(n->kids[i], cb, ctx);
}
