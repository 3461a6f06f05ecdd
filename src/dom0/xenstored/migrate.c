/*
 * One domain's xenstore state in Xen's migration stream format
 * (docs/designs/xenstore-migration.md, version 2, little endian): a CONNECTION_DATA
 * record for the domain's ring with the bytes it has in flight (a request partly read,
 * responses not yet in the ring), WATCH_DATA_EXTENDED for its watches, NODE_DATA for the
 * nodes under /local/domain/DOMID (committed ones: conn-id 0), END. The export also
 * carries the toolstack's directories of the domain; the import takes none of them but
 * the backends' own state (docs/xenstored.md, "Migration").
 */
#include <stdarg.h>
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

bool xs_conn_out_ok(const uint8_t *b, size_t len, size_t out_resp)
{
    if (out_resp > len || out_resp > XS_HDR_SIZE + XENSTORE_PAYLOAD_MAX)
        return false;
    for (size_t at = out_resp; at < len;) {
        struct xsd_sockmsg h;
        if (len - at < XS_HDR_SIZE)
            return false;
        memcpy(&h, b + at, XS_HDR_SIZE);
        if (h.len > XENSTORE_PAYLOAD_MAX || h.len > len - at - XS_HDR_SIZE)
            return false;
        at += XS_HDR_SIZE + h.len;
    }
    return true;
}

uint8_t *xs_migrate_export(struct xs *xs, uint32_t domid, const struct xs_conn_bytes *pending,
                           size_t *len)
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
    /* Always one: it names the domain (not yet introduced: port 0, no watches). */
    size_t s = rec_start(&o, MR_CONN);
    put32(&o, 1);                               /* conn-id */
    put16(&o, 0);                               /* shared ring */
    put16(&o, 0);
    put16(&o, (uint16_t)domid);
    put16(&o, (uint16_t)(!d || d->target == XS_NO_TARGET ? 0x7FF4 : d->target));
    put32(&o, d ? d->port : 0);
    static const struct xs_conn_bytes none;
    const struct xs_conn_bytes *pb = pending ? pending : &none;
    put16(&o, (uint16_t)pb->inlen);             /* in-data-len */
    put16(&o, (uint16_t)pb->out_resp);          /* out-resp-len */
    put32(&o, (uint32_t)pb->outlen);            /* out-data-len */
    if (pb->inlen)
        put(&o, pb->in, pb->inlen);
    if (pb->outlen)
        put(&o, pb->out, pb->outlen);
    rec_finish(&o, s);
    if (d) {
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

/* ---- import: the stream is the guest's data, applied as the guest's own writes ---- */

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/*
 * The nodes a backend publishes about itself (its state machine and features), per
 * device kind: carried so that a Connected frontend finds its backend as it left it
 * and the destination's backend re-attaches without writing anything. Nothing that
 * names a host resource or another end (params, type, mode, mac, bridge, frontend...)
 * is here. Values are decimal numbers, but for the keys with a word of their own.
 */
struct backend_key {
    const char *key;
    const char *word;               /* the one non-numeric value taken, or NULL */
};

static const struct backend_key vbd_state_keys[] = {
    { "state", NULL }, { "feature-flush-cache", NULL }, { "feature-barrier", NULL },
    { "feature-persistent", NULL }, { "feature-discard", NULL },
    { "discard-granularity", NULL }, { "discard-alignment", NULL },
    { "discard-secure", NULL }, { "feature-max-indirect-segments", NULL },
    { "max-ring-page-order", NULL }, { "sectors", NULL }, { "info", NULL },
    { "sector-size", NULL }, { "physical-sector-size", NULL }, { NULL, NULL },
};

/* Linux's netback's (drivers/net/xen-netback/xenbus.c) and libxl's hotplug-status. */
static const struct backend_key vif_state_keys[] = {
    { "state", NULL }, { "feature-sg", NULL }, { "feature-gso-tcpv4", NULL },
    { "feature-gso-tcpv6", NULL }, { "feature-ipv6-csum-offload", NULL },
    { "feature-rx-copy", NULL }, { "feature-rx-flip", NULL },
    { "feature-multicast-control", NULL }, { "feature-dynamic-multicast-control", NULL },
    { "feature-split-event-channels", NULL }, { "multi-queue-max-queues", NULL },
    { "feature-ctrl-ring", NULL }, { "hotplug-status", "connected" }, { NULL, NULL },
};

static const struct {
    const char *type;
    const struct backend_key *keys;
} backend_kinds[] = { { "vbd", vbd_state_keys }, { "vif", vif_state_keys } };

/* The carried key of backend type (of length tlen) named key, or NULL. */
static const struct backend_key *backend_state_key(const char *type, size_t tlen,
                                                   const char *key)
{
    for (size_t k = 0; k < sizeof(backend_kinds) / sizeof(*backend_kinds); k++) {
        if (strlen(backend_kinds[k].type) != tlen || strncmp(type, backend_kinds[k].type, tlen))
            continue;
        for (const struct backend_key *b = backend_kinds[k].keys; b->key; b++)
            if (!strcmp(b->key, key))
                return b;
    }
    return NULL;
}

bool xs_import_backend_value_ok(const char *path, const uint8_t *val, uint32_t vlen)
{
    static const char root[] = "/local/domain/0/backend/";
    if (strncmp(path, root, sizeof(root) - 1))
        return false;
    const char *type = path + sizeof(root) - 1, *tend = strchr(type, '/');
    const char *key = strrchr(path, '/') + 1;
    const struct backend_key *b =
        tend ? backend_state_key(type, (size_t)(tend - type), key) : NULL;
    if (!b)
        return false;
    if (b->word && vlen == strlen(b->word) && !memcmp(val, b->word, vlen))
        return true;
    /*
     * A number (sectors need 64 bits); a state is one of XenbusState 1..6, so that no
     * backend is left comparing its state with a value it cannot parse.
     */
    bool numeric = vlen >= 1 && vlen <= 20;
    for (uint32_t i = 0; numeric && i < vlen; i++)
        numeric = val[i] >= '0' && val[i] <= '9';
    if (numeric && !strcmp(key, "state"))
        numeric = vlen == 1 && val[0] >= '1' && val[0] <= '6';
    return numeric;
}

/* Does path start with the directory dir (equal to it, or dir + '/')? Rest in *rest. */
static bool under(const char *path, const char *dir, const char **rest)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) || (path[n] != '\0' && path[n] != '/'))
        return false;
    *rest = path + n;
    return true;
}

enum xs_import_class xs_import_classify(const char *path, uint32_t src, uint32_t dst,
                                        char *out, size_t outsz)
{
    char dir[64];
    const char *rest;
    snprintf(dir, sizeof(dir), "/local/domain/%u", src);
    if (under(path, dir, &rest)) {
        int n = snprintf(out, outsz, "/local/domain/%u%s", dst, rest);
        return n > 0 && (size_t)n < outsz ? XS_IMPORT_GUEST : XS_IMPORT_FOREIGN;
    }
    if (under(path, "/local/domain/0/backend", &rest) && rest[0] == '/') {
        /* /local/domain/0/backend/TYPE/SRC[/DEVID[/KEY]] */
        const char *type = rest + 1, *slash = strchr(type, '/');
        if (!slash || slash == type)
            return XS_IMPORT_FOREIGN;
        char *end;
        unsigned long id = strtoul(slash + 1, &end, 10);
        if (end == slash + 1 || id != src || (*end && *end != '/'))
            return XS_IMPORT_FOREIGN;
        unsigned long devid;
        char *kend;
        const char *key = *end ? end + 1 : NULL;
        if (key && (devid = strtoul(key, &kend, 10), kend != key) && *kend == '/' &&
            !strchr(kend + 1, '/') &&
            backend_state_key(type, (size_t)(slash - type), kend + 1)) {
            int n = snprintf(out, outsz, "/local/domain/0/backend/%.*s/%u/%lu/%s",
                             (int)(slash - type), type, dst, devid, kend + 1);
            return n > 0 && (size_t)n < outsz ? XS_IMPORT_BACKEND_STATE : XS_IMPORT_FOREIGN;
        }
        return XS_IMPORT_TOOLSTACK;
    }
    snprintf(dir, sizeof(dir), "/libxl/%u", src);
    if (under(path, dir, &rest) || under(path, "/vm", &rest))
        return XS_IMPORT_TOOLSTACK;
    return XS_IMPORT_FOREIGN;
}

struct imp_node {
    enum xs_import_class cls;
    char path[XENSTORE_ABS_PATH_MAX + 2];       /* rewritten to the target domain */
    const uint8_t *val;
    uint32_t vlen, nperms;
    struct xs_perm *perms;                      /* owner forced to the target */
};

struct imp_watch {
    char path[XENSTORE_ABS_PATH_MAX + 2];
    const char *token;
    int depth;
};

struct import {
    uint32_t src, dst;
    bool have_conn;
    struct xs_conn_bytes bytes;                 /* CONNECTION_DATA's data, in the stream */
    struct imp_node *nodes;
    struct imp_watch *watches;
    size_t nnodes, nwatches, cap_nodes, cap_watches;
    char *err;
    size_t errlen;
};

static int refuse(struct import *im, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct import *im, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(im->err, im->errlen, fmt, ap);
    va_end(ap);
    return err;
}

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 64;
    p = realloc(p, *cap * size);
    if (!p)
        abort();
    return p;
}

static void import_free(struct import *im)
{
    for (size_t i = 0; i < im->nnodes; i++)
        free(im->nodes[i].perms);
    free(im->nodes);
    free(im->watches);
}

/*
 * CONNECTION_DATA: the stream's name for the domain, and the bytes in flight: a
 * partial request (never a whole one, which the source would have answered) and
 * whole responses after the end of one partly sent. A version 1 stream, or a short
 * record, has none.
 */
static int parse_conn(struct import *im, const uint8_t *b, uint32_t len)
{
    if (len < 16 || get16(b + 4) != 0)
        return refuse(im, EINVAL, "CONNECTION record is malformed or not a shared ring");
    if (im->have_conn)
        return refuse(im, EINVAL, "more than one CONNECTION record");
    uint32_t domid = get16(b + 8);
    if (domid == 0 || domid > XS_MAX_DOMID)
        return refuse(im, EINVAL, "CONNECTION record names domain %u", domid);
    im->src = domid;
    im->have_conn = true;
    if (len < 24)
        return 0;
    struct xs_conn_bytes *cb = &im->bytes;
    cb->inlen = get16(b + 16);
    cb->out_resp = get16(b + 18);
    cb->outlen = get32(b + 20);
    if (cb->inlen + cb->outlen > len - 24)
        return refuse(im, EINVAL, "CONNECTION record's data overruns it");
    cb->in = b + 24;
    cb->out = b + 24 + cb->inlen;
    struct xsd_sockmsg h;
    if (cb->inlen >= XS_HDR_SIZE)
        memcpy(&h, cb->in, XS_HDR_SIZE);
    if (cb->inlen >= XS_HDR_SIZE &&
        (h.len > XENSTORE_PAYLOAD_MAX || cb->inlen >= XS_HDR_SIZE + h.len))
        return refuse(im, EINVAL, "CONNECTION record's input is not part of one request");
    if (cb->outlen > (size_t)4 << 20 || !xs_conn_out_ok(cb->out, cb->outlen, cb->out_resp))
        return refuse(im, EINVAL, "CONNECTION record's output is not whole responses");
    return 0;
}

void xs_domain_carry(struct xs_domain *d, const struct xs_conn_bytes *cb)
{
    free(d->carried);
    d->carried = NULL;
    d->carried_in = d->carried_out = d->carried_resp = 0;
    if (!cb->inlen && !cb->outlen)
        return;
    d->carried = malloc(cb->inlen + cb->outlen);
    if (!d->carried)
        abort();
    if (cb->inlen)
        memcpy(d->carried, cb->in, cb->inlen);
    if (cb->outlen)
        memcpy(d->carried + cb->inlen, cb->out, cb->outlen);
    d->carried_in = cb->inlen;
    d->carried_out = cb->outlen;
    d->carried_resp = cb->out_resp;
}

static int parse_watch(struct import *im, uint32_t type, const uint8_t *b, uint32_t len)
{
    uint32_t hl = type == MR_WATCH ? 8 : 12;
    if (!im->have_conn || len < hl)
        return refuse(im, EINVAL, "WATCH record before CONNECTION, or malformed");
    uint32_t pl = get16(b + 4), tl = get16(b + 6);
    int depth = -1;
    if (type == MR_WATCH_EXT && get16(b + 8) != 0xFFFF)
        depth = get16(b + 8);
    const char *p = (const char *)b + hl, *t = p + pl;
    if (hl + pl + tl > len || !pl || !tl || p[pl - 1] || t[tl - 1] ||
        strlen(p) != pl - 1 || strlen(t) != tl - 1)
        return refuse(im, EINVAL, "WATCH record is malformed");
    im->watches = grow(im->watches, &im->cap_watches, im->nwatches, sizeof(*im->watches));
    struct imp_watch *w = &im->watches[im->nwatches++];
    char own[64];
    const char *rest;
    snprintf(own, sizeof(own), "/local/domain/%u", im->src);
    int n = under(p, own, &rest)
        ? snprintf(w->path, sizeof(w->path), "/local/domain/%u%s", im->dst, rest)
        : snprintf(w->path, sizeof(w->path), "%s", p);
    if (n < 0 || (size_t)n >= sizeof(w->path))
        return refuse(im, EINVAL, "watch path %.64s... is too long", p);
    w->token = t;
    w->depth = depth;
    return 0;
}

/* Perms as the guest may set them: it owns what it writes; src's entries become dst's. */
static struct xs_perm *guest_perms(const struct import *im, const uint8_t *b, uint32_t np)
{
    struct xs_perm *p = calloc(np, sizeof(*p));
    if (!p)
        abort();
    for (uint32_t i = 0; i < np; i++) {
        uint8_t c = b[4 * i];
        p[i].perm = c == 'b' ? XS_PERM_READ | XS_PERM_WRITE : c == 'w' ? XS_PERM_WRITE :
                    c == 'r' ? XS_PERM_READ : XS_PERM_NONE;
        p[i].domid = get16(b + 4 * i + 2);
        if (p[i].domid == im->src)
            p[i].domid = im->dst;
    }
    p[0].domid = im->dst;
    return p;
}

static int parse_node(struct import *im, const uint8_t *b, uint32_t len)
{
    if (len < 16)
        return refuse(im, EINVAL, "NODE record is malformed");
    if (get32(b) != 0)
        return 0;                               /* pending transactions: not migrated */
    if (!im->have_conn)
        return refuse(im, EINVAL, "NODE record before the CONNECTION record");
    uint32_t plen = get16(b + 8), vlen = get16(b + 10), np = get16(b + 14);
    if (np == 0 || 16 + 4ull * np + plen + vlen > len || plen < 2)
        return refuse(im, EINVAL, "NODE record is malformed");
    const char *path = (const char *)b + 16 + 4 * np;
    if (path[plen - 1] != '\0' || strlen(path) != plen - 1 || path[0] != '/')
        return refuse(im, EINVAL, "NODE record's path is malformed");
    im->nodes = grow(im->nodes, &im->cap_nodes, im->nnodes, sizeof(*im->nodes));
    struct imp_node *n = &im->nodes[im->nnodes];
    n->cls = xs_import_classify(path, im->src, im->dst, n->path, sizeof(n->path));
    if (n->cls == XS_IMPORT_FOREIGN)
        return refuse(im, EPERM, "node %.200s is outside the domain's own subtree "
                      "/local/domain/%u", path, im->src);
    if (n->cls == XS_IMPORT_TOOLSTACK)
        return 0;                               /* the destination's toolstack writes it */
    n->val = b + 16 + 4 * np + plen;
    n->vlen = vlen;
    n->nperms = np;
    n->perms = guest_perms(im, b + 16, np);
    im->nnodes++;
    return 0;
}

static int parse_stream(struct import *im, const uint8_t *buf, size_t len)
{
    if (len < 16 || memcmp(buf, "xenstore", 8))
        return refuse(im, EINVAL, "XENSTORE_STATE is not a xenstore migration stream");
    uint32_t ver = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | buf[10] << 8 | buf[11];
    uint32_t flags = (uint32_t)buf[12] << 24 | (uint32_t)buf[13] << 16 | buf[14] << 8 | buf[15];
    if ((ver != 1 && ver != 2) || flags != 0)
        return refuse(im, EINVAL, "xenstore stream version %u flags %#x: not supported",
                      ver, flags);
    size_t off = 16;
    while (len - off >= 8) {
        uint32_t type = get32(buf + off), rlen = get32(buf + off + 4);
        off += 8;
        if (rlen > len - off)
            return refuse(im, EINVAL, "xenstore record overruns the stream");
        const uint8_t *b = buf + off;
        off += rlen + ((8 - (rlen & 7)) & 7);
        if (off > len)
            off = len;
        int err = 0;
        switch (type) {
        case MR_END:
            return im->have_conn ? 0 : refuse(im, EINVAL, "no CONNECTION record");
        case MR_CONN:       err = parse_conn(im, b, rlen); break;
        case MR_WATCH:
        case MR_WATCH_EXT:  err = parse_watch(im, type, b, rlen); break;
        case MR_NODE:       err = parse_node(im, b, rlen); break;
        default:            break;              /* not for a domain's migration */
        }
        if (err)
            return err;
    }
    return refuse(im, EINVAL, "xenstore stream has no END record");
}

/* A backend's own node of a device the local configuration defines, written as dom0's. */
static int apply_backend_state(struct import *im, struct xs *xs, struct xs_tree *t, bool live,
                               const struct imp_node *n)
{
    if (!xs_import_backend_value_ok(n->path, n->val, n->vlen))
        return refuse(im, EINVAL, "backend node %s: value is not a number", n->path);
    char dir[XENSTORE_ABS_PATH_MAX + 2];
    snprintf(dir, sizeof(dir), "%s", n->path);
    *strrchr(dir, '/') = '\0';
    struct xs_node *dn = xs_tree_get(t, dir);
    if (!dn)
        return 0;                       /* a device the local configuration does not have */
    struct xs_node *x = xs_tree_get(t, n->path);
    if (x)
        xs_tree_set_value(t, x, n->val, n->vlen);
    else
        x = xs_tree_add(t, dn, n->path, n->val, n->vlen, dn->perms, dn->nperms);
    if (live)
        xs_watch_fire(xs, n->path, x->perms, x->nperms, false);
    return 0;
}

static bool same_perms(const struct xs_node *x, const struct imp_node *n)
{
    return x->nperms == n->nperms && !memcmp(x->perms, n->perms, n->nperms * sizeof(*n->perms));
}

/* A node of the domain's own subtree, as the guest would write it over connection c. */
static int apply_guest_node(struct import *im, struct xs_conn *c, struct xs_tree *t, bool live,
                            const struct imp_node *n)
{
    char canon[XENSTORE_ABS_PATH_MAX + 2];
    if (xs_canon(c, n->path, canon, false) || strcmp(canon, n->path))
        return refuse(im, EINVAL, "node %.200s: not a valid path", n->path);
    struct xs_node *x = xs_tree_get(t, n->path);
    if (x && !(xs_perm_for(c, x->perms, x->nperms) & XS_PERM_WRITE))
        return 0;                       /* the toolstack's node: its value stays */
    int err = xs_write_as(c, t, live, n->path, n->val, n->vlen);
    if (err)
        return refuse(im, err, "node %s: the guest may not write it (%s)", n->path,
                      xs_errno_name(err));
    x = xs_tree_get(t, n->path);
    if (x && !same_perms(x, n) &&
        (err = xs_set_perms_as(c, t, live, n->path, n->perms, n->nperms)))
        return refuse(im, err, "node %s: the guest may not set its permissions (%s)",
                      n->path, xs_errno_name(err));
    return 0;
}

static int apply_watches(struct import *im, struct xs_conn *c, bool live)
{
    uint32_t quota = c->xs->quota.watches;
    if (quota && c->nwatches + im->nwatches > quota)
        return refuse(im, E2BIG, "%zu watches: over the quota of %u", im->nwatches, quota);
    for (size_t i = 0; i < im->nwatches; i++) {
        const struct imp_watch *w = &im->watches[i];
        char abs[XENSTORE_ABS_PATH_MAX + 2];
        int err = live ? xs_watch_add(c, w->path, w->token, w->depth, false)
                       : xs_canon(c, w->path, abs, true);
        if (err && err != EEXIST)
            return refuse(im, err, "watch %.200s: %s", w->path, xs_errno_name(err));
    }
    return 0;
}

/* Every node and watch, on tree t as connection c; live: t is the main tree. */
static int apply_all(struct import *im, struct xs *xs, struct xs_conn *c, struct xs_tree *t,
                     bool live)
{
    for (size_t i = 0; i < im->nnodes; i++) {
        const struct imp_node *n = &im->nodes[i];
        int err = n->cls == XS_IMPORT_GUEST ? apply_guest_node(im, c, t, live, n)
                                            : apply_backend_state(im, xs, t, live, n);
        if (err)
            return err;
    }
    return apply_watches(im, c, live);
}

/* A trial run on a copy of the tree, with a connection of the target's: the verdict. */
static int trial_run(struct import *im, struct xs *xs)
{
    struct xs_domain *d = xs_domain_find(xs, im->dst);
    struct xs_conn *c = d ? d->conn : xs_conn_new(xs, im->dst, true);
    struct xs_tree *copy = xs_tree_copy(xs->tree);
    int err = apply_all(im, xs, c, copy, false);
    xs_tree_free(copy);
    if (!d)
        xs_conn_free(c);
    return err;
}

int xs_migrate_import_domain(struct xs *xs, const uint8_t *buf, size_t len, uint32_t domid,
                             char *err, size_t errlen)
{
    struct import im = { .dst = domid, .err = err, .errlen = errlen };
    if (errlen)
        err[0] = '\0';
    if (domid == 0 || domid > XS_MAX_DOMID)
        return refuse(&im, EINVAL, "domain %u is not a guest", domid);
    struct xs_domain *d = xs_domain_find(xs, domid);
    if (d && d->introduced)
        return refuse(&im, EEXIST, "domain %u is already connected to xenstored", domid);
    int rc = parse_stream(&im, buf, len);
    if (!rc && im.bytes.outlen > xs->quota.outstanding)
        rc = refuse(&im, E2BIG, "CONNECTION record carries %zu bytes of output: over the "
                    "quota of %u", im.bytes.outlen, xs->quota.outstanding);
    if (!rc)
        rc = trial_run(&im, xs);
    if (!rc) {
        if (!d)
            d = xs_domain_add(xs, domid);
        d->target = XS_NO_TARGET;       /* never from the stream: xkvm has no stub domains */
        if (xs->ops.domain_changed)
            xs->ops.domain_changed(xs, d, false);
        rc = apply_all(&im, xs, d->conn, xs->tree, true);
        if (!rc)
            xs_domain_carry(d, &im.bytes);
    }
    import_free(&im);
    return rc;
}
