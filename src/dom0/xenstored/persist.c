/*
 * Persistence: every change of the tree, of the introduced domains and of guests'
 * watches is appended to RUNDIR/xenstored/state (one write() per record, so a
 * kill -9 loses nothing that was acknowledged); at start the file is replayed and
 * rewritten compacted (a snapshot), and again whenever the log grows.
 *
 * Record: u32 type, u32 body length, body. Bodies use u32 length-prefixed strings.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>
#include "xsd.h"

enum { R_NODE = 1, R_RM, R_DOMAIN, R_DOMAIN_GONE, R_WATCH, R_UNWATCH, R_SPECIAL };

struct buf { uint8_t *p; size_t len, cap; };

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n)
            c *= 2;
        b->p = realloc(b->p, c);
        if (!b->p)
            abort();
        b->cap = c;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void put32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void putstr(struct buf *b, const void *s, uint32_t n) { put32(b, n); put(b, s, n); }

static void rec_begin(struct buf *b, uint32_t type)
{
    b->len = 0;
    put32(b, type);
    put32(b, 0);
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t w = write(fd, q, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

static void rec_end(struct buf *b, int fd)
{
    uint32_t len = (uint32_t)(b->len - 8);
    memcpy(b->p + 4, &len, 4);
    if (fd >= 0 && write_all(fd, b->p, b->len) < 0)
        xsd_log("state write failed: %s", strerror(errno));
}

static void enc_node(struct buf *b, const struct xs_node *n)
{
    rec_begin(b, R_NODE);
    putstr(b, n->path, (uint32_t)strlen(n->path));
    put32(b, n->nperms);
    for (uint32_t i = 0; i < n->nperms; i++) {
        put32(b, n->perms[i].domid);
        put32(b, n->perms[i].perm);
    }
    putstr(b, n->val, n->vlen);
}

static void enc_domain(struct buf *b, const struct xs_domain *d)
{
    rec_begin(b, R_DOMAIN);
    put32(b, d->domid);
    put64(b, d->gfn);
    put32(b, d->port);
    put32(b, d->target);
    put32(b, d->introduced);
}

static void enc_watch(struct buf *b, uint32_t type, uint32_t domid, const struct xs_watch *w)
{
    rec_begin(b, type);
    put32(b, domid);
    put32(b, (uint32_t)w->depth);
    putstr(b, w->path, (uint32_t)strlen(w->path));
    putstr(b, w->token, (uint32_t)strlen(w->token));
}

static void enc_special(struct buf *b, int which)
{
    rec_begin(b, R_SPECIAL);
    put32(b, (uint32_t)which);
    put32(b, xsd.xs.special_nperms[which]);
    for (uint32_t i = 0; i < xsd.xs.special_nperms[which]; i++) {
        put32(b, xsd.xs.special_perms[which][i].domid);
        put32(b, xsd.xs.special_perms[which][i].perm);
    }
}

static struct buf wb;

static void logged(void)
{
    rec_end(&wb, xsd.logfd);
    xsd.log_records++;
}

static void tree_changed(void *ctx, enum xs_change what, const struct xs_node *n)
{
    if (xsd.loading)
        return;
    if (what == XS_CHG_NODE) {
        enc_node(&wb, n);
    } else {
        rec_begin(&wb, R_RM);
        putstr(&wb, n->path, (uint32_t)strlen(n->path));
    }
    logged();
}

static void domain_changed(struct xs *xs, struct xs_domain *d, bool gone)
{
    if (xsd.loading)
        return;
    if (gone) {
        rec_begin(&wb, R_DOMAIN_GONE);
        put32(&wb, d->domid);
    } else {
        enc_domain(&wb, d);
    }
    logged();
}

static void watch_changed(struct xs *xs, struct xs_conn *c, const struct xs_watch *w,
                          bool added)
{
    if (xsd.loading || !c->is_domain)
        return;
    enc_watch(&wb, added ? R_WATCH : R_UNWATCH, c->domid, w);
    logged();
}

static void special_changed(struct xs *xs, int which)
{
    if (xsd.loading)
        return;
    enc_special(&wb, which);
    logged();
}

void xsd_persist_hooks(void)
{
    xsd.xs.tree->changed = tree_changed;
    xsd.xs.ops.domain_changed = domain_changed;
    xsd.xs.ops.watch_changed = watch_changed;
    xsd.xs.ops.special_changed = special_changed;
}

/* ---------------------------------------------------------------- loading */

struct rd { const uint8_t *p; size_t len, off; bool bad; };

static uint32_t get32(struct rd *r)
{
    uint32_t v = 0;
    if (r->len - r->off < 4) {
        r->bad = true;
        return 0;
    }
    memcpy(&v, r->p + r->off, 4);
    r->off += 4;
    return v;
}
static uint64_t get64(struct rd *r)
{
    uint64_t lo = get32(r);
    return lo | (uint64_t)get32(r) << 32;
}
/* A string as a malloc'd NUL-terminated copy. */
static char *getstr(struct rd *r, uint32_t *lenp)
{
    uint32_t n = get32(r);
    if (r->bad || r->len - r->off < n || n > 1u << 20) {
        r->bad = true;
        return NULL;
    }
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, r->p + r->off, n);
    s[n] = '\0';
    r->off += n;
    if (lenp)
        *lenp = n;
    return s;
}

static void load_node(struct rd *r)
{
    struct xs_tree *t = xsd.xs.tree;
    char *path = getstr(r, NULL);
    uint32_t np = get32(r);
    if (r->bad || np == 0 || np > 1024) {
        r->bad = true;
        free(path);
        return;
    }
    struct xs_perm *p = calloc(np, sizeof(*p));
    for (uint32_t i = 0; i < np; i++) {
        p[i].domid = get32(r);
        p[i].perm = (uint8_t)(get32(r) & 3);
    }
    uint32_t vlen;
    char *val = getstr(r, &vlen);
    if (!r->bad && path[0] == '/') {
        struct xs_node *n = xs_tree_get(t, path);
        if (n) {
            xs_tree_set_value(t, n, val, vlen);
            xs_tree_set_perms(t, n, p, np);
        } else {
            char parent[XENSTORE_ABS_PATH_MAX + 2];
            const char *s = strrchr(path, '/');
            size_t pl = (size_t)(s - path);
            if (pl < sizeof(parent)) {
                memcpy(parent, path, pl ? pl : 1);
                parent[pl ? pl : 1] = '\0';
                struct xs_node *pn = xs_tree_get(t, parent);
                if (pn)
                    xs_tree_add(t, pn, path, val, vlen, p, np);
            }
        }
    }
    free(path);
    free(val);
    free(p);
}

static void load(const uint8_t *p, size_t len)
{
    struct xs *xs = &xsd.xs;
    size_t off = 0;
    while (len - off >= 8) {
        uint32_t type, blen;
        memcpy(&type, p + off, 4);
        memcpy(&blen, p + off + 4, 4);
        if (len - off - 8 < blen)
            break;      /* a torn last record */
        struct rd r = { p + off + 8, blen, 0, false };
        off += 8 + blen;
        switch (type) {
        case R_NODE:
            load_node(&r);
            break;
        case R_RM: {
            char *path = getstr(&r, NULL);
            struct xs_node *n = path ? xs_tree_get(xs->tree, path) : NULL;
            if (n && n != xs->tree->root)
                xs_tree_rm(xs->tree, n, NULL, NULL);
            free(path);
            break;
        }
        case R_DOMAIN: {
            uint32_t domid = get32(&r);
            uint64_t gfn = get64(&r);
            uint32_t port = get32(&r), target = get32(&r), intro = get32(&r);
            if (r.bad || domid == 0 || domid > XS_MAX_DOMID)
                break;
            struct xs_domain *d = xs_domain_find(xs, domid);
            if (!d) {
                d = xs_domain_add(xs, domid);
                /* Its open transactions died with the old process: new ids far from
                 * the old ones, and the old ones answered EAGAIN. */
                d->conn->lost_txns = true;
                d->conn->next_txid = 0x40000000u | ((uint32_t)time(NULL) & 0x3FFFFFFFu);
            }
            d->gfn = gfn;
            d->port = port;
            d->target = target;
            d->introduced = intro;
            break;
        }
        case R_DOMAIN_GONE: {
            struct xs_domain *d = xs_domain_find(xs, get32(&r));
            if (d) {
                void (*rel)(struct xs *, struct xs_domain *) = xs->ops.release;
                xs->ops.release = NULL;
                xs_domain_gone(xs, d, false);
                xs->ops.release = rel;
            }
            break;
        }
        case R_WATCH:
        case R_UNWATCH: {
            uint32_t domid = get32(&r);
            int depth = (int)get32(&r);
            char *path = getstr(&r, NULL), *tok = getstr(&r, NULL);
            struct xs_domain *d = xs_domain_find(xs, domid);
            if (!r.bad && d) {
                if (type == R_WATCH)
                    xs_watch_add(d->conn, path, tok, depth, false);
                else
                    xs_watch_del(d->conn, path, tok);
            }
            free(path);
            free(tok);
            break;
        }
        case R_SPECIAL: {
            uint32_t w = get32(&r), np = get32(&r);
            if (r.bad || w > 1 || np == 0 || np > 8)
                break;
            for (uint32_t i = 0; i < np; i++) {
                xs->special_perms[w][i].domid = get32(&r);
                xs->special_perms[w][i].perm = (uint8_t)(get32(&r) & 3);
            }
            xs->special_nperms[w] = np;
            break;
        }
        default:
            break;
        }
    }
}

static void snap_node(void *ctx, const struct xs_node *n)
{
    struct buf *b = ctx, rec = { 0 };
    enc_node(&rec, n);
    uint32_t l = (uint32_t)(rec.len - 8);
    memcpy(rec.p + 4, &l, 4);
    put(b, rec.p, rec.len);
    free(rec.p);
}

static void snap_rec(struct buf *b, struct buf *rec)
{
    uint32_t l = (uint32_t)(rec->len - 8);
    memcpy(rec->p + 4, &l, 4);
    put(b, rec->p, rec->len);
}

/* Write the whole state to state.new and rename it over state; reopen for append. */
static int snapshot(void)
{
    struct xs *xs = &xsd.xs;
    struct buf b = { 0 }, rec = { 0 };
    char path[4200], tmp[4200];
    xs_tree_walk(xs->tree->root, snap_node, &b);
    for (int w = 0; w < 2; w++) {
        enc_special(&rec, w);
        snap_rec(&b, &rec);
    }
    for (struct xs_domain *d = xs->domains; d; d = d->next) {
        enc_domain(&rec, d);
        snap_rec(&b, &rec);
        for (struct xs_watch *w = d->conn->watches; w; w = w->next) {
            enc_watch(&rec, R_WATCH, d->domid, w);
            snap_rec(&b, &rec);
        }
    }
    free(rec.p);
    snprintf(path, sizeof(path), "%s/state", xsd.dir);
    snprintf(tmp, sizeof(tmp), "%s/state.new", xsd.dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, b.p, b.len) < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(b.p);
        return -e;
    }
    close(fd);
    free(b.p);
    if (rename(tmp, path) < 0)
        return -errno;
    int nfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (nfd < 0)
        return -errno;
    if (xsd.logfd >= 0)
        close(xsd.logfd);
    xsd.logfd = nfd;
    xsd.log_records = 0;
    return 0;
}

int xsd_persist_open(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/state", xsd.dir);
    xsd.logfd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            uint8_t *p = malloc((size_t)st.st_size);
            if (!p)
                abort();
            size_t got = 0;
            while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            xsd.loading = true;
            load(p, got);
            xsd.loading = false;
            free(p);
            xsd_log("state restored: %zu nodes", xsd.xs.tree->count);
        }
        close(fd);
    }
    return snapshot();
}

void xsd_persist_maybe_compact(void)
{
    if (xsd.log_records > 20000 && xsd.log_records > 4 * xsd.xs.tree->count) {
        int r = snapshot();
        if (r < 0)
            xsd_log("snapshot failed: %s", strerror(-r));
    }
}
