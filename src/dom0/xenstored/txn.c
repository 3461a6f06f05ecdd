/*
 * Transactions, optimistic as in Xen's C xenstored: a transaction records the
 * generation of every node it reads or writes (0: absent) and the modifications it
 * makes; TRANSACTION_END "T" fails with EAGAIN if any of those nodes changed in the
 * main tree meanwhile, else replays the modifications. The transaction works on its
 * own copy of the tree, taken at its first access (so an empty transaction costs
 * nothing): it sees one consistent snapshot, and commits only if everything it saw is
 * still current.
 */
#include <stdlib.h>
#include <string.h>
#include "xs.h"

static size_t hash_str(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

struct xs_txn *xs_txn_new(const struct xs_tree *main, uint32_t id)
{
    struct xs_txn *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->id = id;
    t->tree = NULL;     /* copied at the first access */
    t->nacc_buckets = 64;
    t->acc = calloc(t->nacc_buckets, sizeof(*t->acc));
    if (!t->acc)
        abort();
    t->ops_tail = &t->ops;
    return t;
}

void xs_txn_free(struct xs_txn *t)
{
    if (!t)
        return;
    xs_tree_free(t->tree);
    for (size_t i = 0; i < t->nacc_buckets; i++) {
        struct xs_access *a = t->acc[i], *nx;
        for (; a; a = nx) {
            nx = a->next;
            free(a->path);
            free(a);
        }
    }
    free(t->acc);
    struct xs_txop *o = t->ops, *onx;
    for (; o; o = onx) {
        onx = o->next;
        free(o->path);
        free(o->data);
        free(o);
    }
    free(t);
}

bool xs_txn_access(struct xs_txn *t, const char *path, uint64_t gen, uint32_t limit)
{
    size_t h = hash_str(path) & (t->nacc_buckets - 1);
    for (struct xs_access *a = t->acc[h]; a; a = a->next)
        if (!strcmp(a->path, path))
            return true;
    if (limit && t->nacc >= limit)
        return false;
    if (t->nacc + 1 > t->nacc_buckets * 2) {
        size_t nb = t->nacc_buckets * 4;
        struct xs_access **b = calloc(nb, sizeof(*b));
        if (!b)
            abort();
        for (size_t i = 0; i < t->nacc_buckets; i++) {
            struct xs_access *a = t->acc[i], *nx;
            for (; a; a = nx) {
                nx = a->next;
                size_t k = hash_str(a->path) & (nb - 1);
                a->next = b[k];
                b[k] = a;
            }
        }
        free(t->acc);
        t->acc = b;
        t->nacc_buckets = nb;
        h = hash_str(path) & (nb - 1);
    }
    struct xs_access *a = malloc(sizeof(*a));
    if (!a || !(a->path = strdup(path)))
        abort();
    a->gen = gen;
    a->next = t->acc[h];
    t->acc[h] = a;
    t->nacc++;
    return true;
}

void xs_txn_log(struct xs_txn *t, uint32_t type, const char *path, const void *data,
                uint32_t len)
{
    struct xs_txop *o = calloc(1, sizeof(*o));
    if (!o || !(o->path = strdup(path)) || !(o->data = malloc(len ? len : 1)))
        abort();
    o->type = type;
    if (len)
        memcpy(o->data, data, len);
    o->len = len;
    *t->ops_tail = o;
    t->ops_tail = &o->next;
}

bool xs_txn_conflicts(const struct xs_txn *t, const struct xs_tree *main)
{
    for (size_t i = 0; i < t->nacc_buckets; i++)
        for (const struct xs_access *a = t->acc[i]; a; a = a->next) {
            const struct xs_node *n = xs_tree_get(main, a->path);
            if ((n ? n->gen : 0) != a->gen)
                return true;
        }
    return false;
}
