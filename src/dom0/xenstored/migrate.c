/*
 * One domain's xenstore state in Xen's migration stream format
 * (docs/designs/xenstore-migration.md, version 2, little endian): a CONNECTION_DATA
 * record for the domain's ring, WATCH_DATA_EXTENDED for its watches, NODE_DATA for the
 * nodes under /local/domain/DOMID (committed ones: conn-id 0), END.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xs.h"

enum { MR_END = 0, MR_CONN = 2, MR_WATCH = 3, MR_NODE = 5, MR_WATCH_EXT = 8 };

struct out { uint8_t *p; size_t len, cap; };

static void put(struct out *o, const void *d, size_t n)
{
    if (o->len + n > o->cap) {
        size_t c = o->cap ? o->cap : 1024;
        while (c < o->len + n)
            c *= 2;
        o->p = realloc(o->p, c);
        if (!o->p)
            abort();
        o->cap = c;
    }
    memcpy(o->p + o->len, d, n);
    o->len += n;
}
static void put8(struct out *o, uint8_t v) { put(o, &v, 1); }
static void put16(struct out *o, uint16_t v) { put(o, &v, 2); }
static void put32(struct out *o, uint32_t v) { put(o, &v, 4); }

static size_t rec_start(struct out *o, uint32_t type)
{
    put32(o, type);
    put32(o, 0);
    return o->len;
}

static void rec_finish(struct out *o, size_t start)
{
    uint32_t len = (uint32_t)(o->len - start);
    memcpy(o->p + start - 4, &len, 4);
    static const uint8_t zero[8];
    put(o, zero, (8 - (len & 7)) & 7);
}

struct exp { struct out *o; };

static void node_cb(void *ctx, const struct xs_node *n)
{
    struct out *o = ctx;
    size_t s = rec_start(o, MR_NODE);
    put32(o, 0);                                /* conn-id: committed */
    put32(o, 0);                                /* tx-id */
    put16(o, (uint16_t)(strlen(n->path) + 1));
    put16(o, (uint16_t)n->vlen);
    put16(o, 0);                                /* access */
    put16(o, (uint16_t)n->nperms);
    for (uint32_t i = 0; i < n->nperms; i++) {
        put8(o, (uint8_t)xs_perm_char(n->perms[i].perm));
        put8(o, 0);
        put16(o, (uint16_t)n->perms[i].domid);
    }
    put(o, n->path, strlen(n->path) + 1);
    put(o, n->val, n->vlen);
    rec_finish(o, s);
}

uint8_t *xs_migrate_export(struct xs *xs, uint32_t domid, size_t *len)
{
    struct out o = { 0 };
    static const uint8_t ident[8] = { 'x', 'e', 'n', 's', 't', 'o', 'r', 'e' };
    static const uint8_t ver[8] = { 0, 0, 0, 2, 0, 0, 0, 0 };   /* big endian; LE flag */
    char base[40];
    struct xs_domain *d = xs_domain_find(xs, domid);
    snprintf(base, sizeof(base), "/local/domain/%u", domid);
    struct xs_node *top = xs_tree_get(xs->tree, base);
    if (!d && !top)
        return NULL;
    put(&o, ident, 8);
    put(&o, ver, 8);
    if (d) {
        size_t s = rec_start(&o, MR_CONN);
        put32(&o, 1);                           /* conn-id */
        put16(&o, 0);                           /* shared ring */
        put16(&o, 0);
        put16(&o, (uint16_t)domid);
        put16(&o, (uint16_t)(d->target == XS_NO_TARGET ? 0x7FF4 : d->target));
        put32(&o, d->port);
        put16(&o, 0);                           /* in-data-len */
        put16(&o, 0);                           /* out-resp-len */
        put32(&o, 0);                           /* out-data-len */
        rec_finish(&o, s);
        for (struct xs_watch *w = d->conn->watches; w; w = w->next) {
            s = rec_start(&o, MR_WATCH_EXT);
            put32(&o, 1);
            put16(&o, (uint16_t)(strlen(w->path) + 1));
            put16(&o, (uint16_t)(strlen(w->token) + 1));
            put16(&o, (uint16_t)(w->depth < 0 ? 0xFFFF : w->depth));
            put16(&o, 0);
            put(&o, w->path, strlen(w->path) + 1);
            put(&o, w->token, strlen(w->token) + 1);
            rec_finish(&o, s);
        }
    }
    if (top)
        xs_tree_walk(top, node_cb, &o);
    /*
     * What the toolstack keeps about the domain elsewhere: its backends' directories
     * under dom0, /libxl/DOMID and its /vm entry. A non-cooperative migration moves
     * them too, so backends on the destination find them exactly as they were.
     */
    char p[XENSTORE_ABS_PATH_MAX + 1];
    struct xs_node *be = xs_tree_get(xs->tree, "/local/domain/0/backend");
    for (uint32_t i = 0; be && i < be->nkids; i++) {
        snprintf(p, sizeof(p), "%s/%u", be->kids[i]->path, domid);
        struct xs_node *n = xs_tree_get(xs->tree, p);
        if (n)
            xs_tree_walk(n, node_cb, &o);
    }
    snprintf(p, sizeof(p), "/libxl/%u", domid);
    struct xs_node *lx = xs_tree_get(xs->tree, p);
    if (lx)
        xs_tree_walk(lx, node_cb, &o);
    snprintf(p, sizeof(p), "%s/vm", base);
    struct xs_node *vm = xs_tree_get(xs->tree, p);
    if (vm && vm->vlen > 4 && vm->vlen < sizeof(p) && !memcmp(vm->val, "/vm/", 4) &&
        !memchr(vm->val, 0, vm->vlen)) {
        memcpy(p, vm->val, vm->vlen);
        p[vm->vlen] = '\0';
        struct xs_node *v = xs_tree_get(xs->tree, p);
        if (v)
            xs_tree_walk(v, node_cb, &o);
    }
    rec_start(&o, MR_END);
    *len = o.len;
    return o.p;
}

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static int import_node(struct xs *xs, const uint8_t *b, uint32_t len)
{
    if (len < 16)
        return EINVAL;
    if (get32(b) != 0)
        return 0;                               /* pending transactions: not migrated */
    uint32_t plen = get16(b + 8), vlen = get16(b + 10), np = get16(b + 14);
    if (np == 0 || np > 1024 || 16 + 4ull * np + plen + vlen > len || plen < 2)
        return EINVAL;
    struct xs_perm p[np];
    for (uint32_t i = 0; i < np; i++) {
        char s[2] = { (char)b[16 + 4 * i], 0 };
        p[i].perm = s[0] == 'b' ? 3 : s[0] == 'w' ? 2 : s[0] == 'r' ? 1 : 0;
        p[i].domid = get16(b + 18 + 4 * i);
    }
    const char *path = (const char *)b + 16 + 4 * np;
    const uint8_t *val = b + 16 + 4 * np + plen;
    if (path[plen - 1] != '\0' || strlen(path) != plen - 1 || path[0] != '/')
        return EINVAL;
    struct xs_node *n = xs_tree_get(xs->tree, path);
    if (n) {
        xs_tree_set_value(xs->tree, n, val, vlen);
        xs_tree_set_perms(xs->tree, n, p, np);
        xs_watch_fire(xs, path, p, np, false);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    char parent[XENSTORE_ABS_PATH_MAX + 2];
    size_t pl = (size_t)(slash - path);
    if (pl > XENSTORE_ABS_PATH_MAX)
        return EINVAL;
    memcpy(parent, path, pl ? pl : 1);
    parent[pl ? pl : 1] = '\0';
    struct xs_node *pn = xs_tree_get(xs->tree, parent);
    if (!pn) {
        /*
         * The format wants parents known; the toolstack directories a domain and its
         * backends live under (/local/domain, /local/domain/0/backend/vbd...) may not
         * exist yet on a fresh host: create them as dom0's, as xenstored's mkdir would.
         */
        if (strncmp(path, "/local/domain/", 14) && strncmp(path, "/libxl/", 7) &&
            strncmp(path, "/vm/", 4))
            return EINVAL;
        struct xs_perm dom0 = { .perm = 0, .domid = 0 };
        for (char *c = parent + 1; ; c++) {
            if (*c != '/' && *c != '\0')
                continue;
            char save = *c;
            *c = '\0';
            struct xs_node *a = xs_tree_get(xs->tree, parent);
            if (!a) {
                const char *up = strrchr(parent, '/');
                char upath[XENSTORE_ABS_PATH_MAX + 2];
                size_t ul = (size_t)(up - parent);
                memcpy(upath, parent, ul ? ul : 1);
                upath[ul ? ul : 1] = '\0';
                struct xs_node *ap = xs_tree_get(xs->tree, upath);
                if (!ap || !xs_tree_add(xs->tree, ap, parent, "", 0, &dom0, 1))
                    return EINVAL;
            }
            *c = save;
            if (!save)
                break;
        }
        pn = xs_tree_get(xs->tree, parent);
        if (!pn)
            return EINVAL;
    }
    xs_tree_add(xs->tree, pn, path, val, vlen, p, np);
    xs_watch_fire(xs, path, p, np, false);
    return 0;
}

int xs_migrate_import(struct xs *xs, const uint8_t *buf, size_t len)
{
    if (len < 16 || memcmp(buf, "xenstore", 8))
        return EINVAL;
    uint32_t ver = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | buf[10] << 8 | buf[11];
    uint32_t flags = (uint32_t)buf[12] << 24 | (uint32_t)buf[13] << 16 | buf[14] << 8 | buf[15];
    if ((ver != 1 && ver != 2) || flags != 0)
        return EINVAL;                          /* big-endian streams: not supported */
    struct xs_domain *d = NULL;
    uint32_t conn_id = 0;
    size_t off = 16;
    while (len - off >= 8) {
        uint32_t type = get32(buf + off), rlen = get32(buf + off + 4);
        off += 8;
        if (rlen > len - off)
            return EINVAL;
        const uint8_t *b = buf + off;
        off += rlen + ((8 - (rlen & 7)) & 7);
        if (off > len)
            off = len;
        int err = 0;
        switch (type) {
        case MR_END:
            return 0;
        case MR_CONN: {
            if (rlen < 16 || get16(b + 4) != 0)
                return EINVAL;
            uint32_t domid = get16(b + 8), tdomid = get16(b + 10);
            if (domid == 0 || domid > XS_MAX_DOMID)
                return EINVAL;
            conn_id = get32(b);
            d = xs_domain_find(xs, domid);
            if (!d) {
                d = xs_domain_add(xs, domid);
                d->port = get32(b + 12);
            }
            d->target = tdomid <= XS_MAX_DOMID ? tdomid : XS_NO_TARGET;
            if (xs->ops.domain_changed)
                xs->ops.domain_changed(xs, d, false);
            break;
        }
        case MR_WATCH:
        case MR_WATCH_EXT: {
            uint32_t hl = type == MR_WATCH ? 8 : 12;
            if (rlen < hl || !d || get32(b) != conn_id)
                return EINVAL;
            uint32_t pl = get16(b + 4), tl = get16(b + 6);
            int depth = -1;
            if (type == MR_WATCH_EXT && get16(b + 8) != 0xFFFF)
                depth = get16(b + 8);
            if (hl + pl + tl > rlen || !pl || !tl)
                return EINVAL;
            const char *p = (const char *)b + hl, *t = p + pl;
            if (p[pl - 1] || t[tl - 1] || strlen(p) != pl - 1 || strlen(t) != tl - 1)
                return EINVAL;
            err = xs_watch_add(d->conn, p, t, depth, false);
            if (err == EEXIST)
                err = 0;
            break;
        }
        case MR_NODE:
            err = import_node(xs, b, rlen);
            break;
        default:
            break;                              /* not for a domain's migration */
        }
        if (err)
            return err;
    }
    return EINVAL;                              /* no END */
}
