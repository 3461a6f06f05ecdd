/*
 * xenstored's core driven directly: requests as dom0 and as guests (domids 5 and 6)
 * against an in-memory tree. Permissions, quotas and transactions with Xen's errors
 * (the overlay view, all-or-nothing commits, what a transaction costs and holds);
 * the migration stream round trip, and the import's refusal of what is not the guest's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "xs.h"

HARNESS_MAIN_STATE("xs-core");

/* Everything a connection was sent, as a list of messages. */
struct msg { struct xsd_sockmsg h; char body[XENSTORE_PAYLOAD_MAX + 1]; };
struct sink { struct msg m[256]; int n; };

static void sink_send(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
    struct sink *s = c->io;
    if (s->n == 256)
        return;
    s->m[s->n].h = *h;
    memcpy(s->m[s->n].body, body, h->len);
    s->m[s->n].body[h->len] = '\0';
    s->n++;
}

static struct xs xs;
static struct sink sinks[4];

static struct xs_conn *mk(struct xs_conn *c, struct sink *s)
{
    memset(s, 0, sizeof(*s));
    c->send = sink_send;
    c->io = s;
    return c;
}

static struct xs_conn *dom0(void)
{
    return mk(xs_conn_new(&xs, 0, false), &sinks[0]);
}

/* Introduce domid through dom0 (no ring: the core has no introduce hook here). */
static struct xs_conn *guest(struct xs_conn *d0, uint32_t domid, struct sink *s);

/* One request: returns the reply (the first message that is not a watch event). */
static struct msg *rq(struct xs_conn *c, uint32_t type, uint32_t tx, const char *a,
                      const char *b, size_t blen)
{
    static struct msg none;
    uint8_t buf[XENSTORE_PAYLOAD_MAX + 64];
    size_t len = 0;
    if (a) {
        memcpy(buf, a, strlen(a) + 1);
        len = strlen(a) + 1;
    }
    if (b) {
        memcpy(buf + len, b, blen);
        len += blen;
    }
    struct xsd_sockmsg h = { .type = type, .req_id = 7, .tx_id = tx, .len = (uint32_t)len };
    struct sink *s = c->io;
    if (s->n > 200)
        s->n = 0;       /* keep room: tests look at recent messages only */
    int first = s->n;
    xs_handle(c, &h, buf);
    for (int i = first; i < s->n; i++)
        if (s->m[i].h.type != XS_WATCH_EVENT)
            return &s->m[i];
    memset(&none, 0, sizeof(none));
    none.h.type = XS_INVALID;
    return &none;
}

static const char *err_of(struct msg *m)
{
    return m->h.type == XS_ERROR ? m->body : "OK";
}

#define W(c, p, v) rq(c, XS_WRITE, 0, p, v, strlen(v))
#define R(c, p) rq(c, XS_READ, 0, p, NULL, 0)
#define WTX(c, tx, p, v) rq(c, XS_WRITE, tx, p, v, strlen(v))
#define RTX(c, tx, p) rq(c, XS_READ, tx, p, NULL, 0)

static struct xs_conn *guest(struct xs_conn *d0, uint32_t domid, struct sink *s)
{
    char id[16], args[64];
    snprintf(id, sizeof(id), "%u", domid);
    int n = snprintf(args, sizeof(args), "%u%c4096%c3", domid, 0, 0);
    rq(d0, XS_INTRODUCE, 0, NULL, args, (size_t)n + 1);
    struct xs_domain *d = xs_domain_find(&xs, domid);
    if (!d)
        return NULL;
    return mk(d->conn, s);
}

static void setup(void)
{
    xs_fini(&xs);
    xs_init(&xs);
}

static void test_basic(void)
{
    setup();
    struct xs_conn *c = dom0();
    CHECK_STR_CONTAINS(err_of(W(c, "/a/b/c", "v")), "OK");
    struct msg *m = R(c, "/a/b/c");
    CHECK_EQ(m->h.type, XS_READ);
    CHECK_EQ(m->h.req_id, 7);
    CHECK(!strcmp(m->body, "v"));
    CHECK(!strcmp(err_of(R(c, "/a/x")), "ENOENT"));
    CHECK(!strcmp(err_of(R(c, "/a//b")), "EINVAL"));
    CHECK(!strcmp(err_of(R(c, "/a/b/")), "EINVAL"));
    CHECK(!strcmp(err_of(R(c, "/a/b c")), "EINVAL"));
    m = rq(c, XS_DIRECTORY, 0, "/a/b", NULL, 0);
    CHECK_EQ(m->h.len, 2);
    CHECK(!strcmp(err_of(rq(c, XS_RM, 0, "/a/nothere", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(rq(c, XS_RM, 0, "/x/y", NULL, 0)), "ENOENT"));
    CHECK(!strcmp(err_of(rq(c, XS_RM, 0, "/", NULL, 0)), "EINVAL"));
    CHECK(!strcmp(err_of(rq(c, XS_RM, 0, "/a", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(R(c, "/a/b/c")), "ENOENT"));
    /* Relative paths of dom0: /local/domain/0 */
    W(c, "rel", "1");
    CHECK(!strcmp(R(c, "/local/domain/0/rel")->body, "1"));
    m = rq(c, XS_GET_DOMAIN_PATH, 0, "7", NULL, 0);
    CHECK(!strcmp(m->body, "/local/domain/7"));
    /* Unknown type */
    CHECK(!strcmp(err_of(rq(c, 999, 0, "x", NULL, 0)), "EINVAL"));
    CHECK(!strcmp(err_of(rq(c, XS_CONTROL, 0, "check", NULL, 0)), "OK"));
}

static void test_directory_part(void)
{
    setup();
    struct xs_conn *c = dom0();
    char p[64];
    for (int i = 0; i < 400; i++) {
        snprintf(p, sizeof(p), "/d/child-with-a-long-name-%03d", i);
        W(c, p, "");
    }
    CHECK(!strcmp(err_of(rq(c, XS_DIRECTORY, 0, "/d", NULL, 0)), "E2BIG"));
    /* Walk the parts the way libxenstore does. */
    unsigned off = 0, total = 0;
    for (int guard = 0; guard < 20; guard++) {
        char o[16];
        int n = snprintf(o, sizeof(o), "%u", off);
        struct msg *m = rq(c, XS_DIRECTORY_PART, 0, "/d", o, (size_t)n + 1);
        REQUIRE(m->h.type == XS_DIRECTORY_PART);
        size_t pos = strlen(m->body) + 1;
        bool end = false;
        while (pos < m->h.len) {
            size_t l = strlen(m->body + pos);
            if (!l) {
                end = true;
                break;
            }
            total++;
            off += (unsigned)l + 1;
            pos += l + 1;
        }
        if (end)
            break;
    }
    CHECK_EQ(total, 400);
}

static void test_perms(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *g5 = guest(c, 5, &sinks[1]), *g6 = guest(c, 6, &sinks[2]);
    REQUIRE(g5 && g6);
    /* The toolstack's layout: /local/domain/N owned by N. */
    W(c, "/local/domain/5/x", "five");
    W(c, "/local/domain/6/x", "six");
    CHECK(!strcmp(err_of(rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3)), "OK"));
    CHECK(!strcmp(err_of(rq(c, XS_SET_PERMS, 0, "/local/domain/6", "n6\0r5\0", 6)), "OK"));
    /* Guests' nodes inherit from the parent when created by dom0: /x is n0 */
    CHECK(!strcmp(err_of(R(g5, "/local/domain/5/x")), "EACCES"));
    /* What 5 creates, 5 owns */
    CHECK(!strcmp(err_of(W(g5, "/local/domain/5/mine", "m")), "OK"));
    CHECK(!strcmp(R(g5, "mine")->body, "m"));
    struct msg *m = rq(g5, XS_GET_PERMS, 0, "mine", NULL, 0);
    CHECK(!memcmp(m->body, "n5\0", 3));
    /* 6 cannot read or write 5's nodes */
    CHECK(!strcmp(err_of(R(g6, "/local/domain/5/mine")), "EACCES"));
    CHECK(!strcmp(err_of(W(g6, "/local/domain/5/mine", "x")), "EACCES"));
    CHECK(!strcmp(err_of(W(g6, "/local/domain/5/new", "x")), "EACCES"));
    /* ENOENT vs EACCES: a missing node under an unreadable parent is EACCES */
    CHECK(!strcmp(err_of(R(g6, "/local/domain/5/nothere")), "EACCES"));
    CHECK(!strcmp(err_of(R(g5, "/local/domain/5/nothere")), "ENOENT"));
    /* 5 may read 6's directory node (r5) but not write it */
    CHECK(!strcmp(err_of(rq(g5, XS_DIRECTORY, 0, "/local/domain/6", NULL, 0)), "DIRECTORY") ||
          rq(g5, XS_DIRECTORY, 0, "/local/domain/6", NULL, 0)->h.type == XS_DIRECTORY);
    CHECK(!strcmp(err_of(W(g5, "/local/domain/6/y", "x")), "EACCES"));
    /* A guest cannot give its node away */
    CHECK(!strcmp(err_of(rq(g5, XS_SET_PERMS, 0, "mine", "b6\0", 3)), "EPERM"));
    CHECK(!strcmp(err_of(rq(g5, XS_SET_PERMS, 0, "mine", "n5\0r6\0", 6)), "OK"));
    CHECK(!strcmp(R(g6, "/local/domain/5/mine")->body, "m"));
    CHECK(!strcmp(err_of(W(g6, "/local/domain/5/mine", "x")), "EACCES"));
    /* Privileged operations */
    CHECK(!strcmp(err_of(rq(g5, XS_INTRODUCE, 0, NULL, "9\0001\0002\0", 7)), "EACCES"));
    CHECK(!strcmp(err_of(rq(g5, XS_RELEASE, 0, "6", NULL, 0)), "EACCES"));
    CHECK(!strcmp(err_of(rq(g5, XS_CONTROL, 0, "check", NULL, 0)), "EACCES"));
    /* Relative paths of a guest */
    CHECK(!strcmp(err_of(W(g5, "rel/a", "1")), "OK"));
    CHECK(!strcmp(R(c, "/local/domain/5/rel/a")->body, "1"));
    /* SET_TARGET: 6 becomes privileged over what 5 owns */
    CHECK(!strcmp(err_of(R(g6, "/local/domain/5/rel/a")), "EACCES"));
    CHECK(!strcmp(err_of(rq(c, XS_SET_TARGET, 0, NULL, "6\0005\0", 4)), "OK"));
    CHECK(!strcmp(R(g6, "/local/domain/5/rel/a")->body, "1"));
    CHECK(!strcmp(err_of(W(g6, "/local/domain/5/rel/a", "2")), "OK"));
    /* Release: 5's nodes become dom0's */
    CHECK(!strcmp(err_of(rq(c, XS_RELEASE, 0, "5", NULL, 0)), "OK"));
    m = rq(c, XS_GET_PERMS, 0, "/local/domain/5/mine", NULL, 0);
    CHECK(!memcmp(m->body, "n0\0r6\0", 6));
    CHECK(!strcmp(rq(c, XS_IS_DOMAIN_INTRODUCED, 0, "5", NULL, 0)->body, "F"));
    CHECK(!strcmp(rq(c, XS_IS_DOMAIN_INTRODUCED, 0, "6", NULL, 0)->body, "T"));
}

static void test_quota(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    W(c, "/local/domain/5", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3);
    /* Nodes: 1000 per domain (the directory it owns counts) -> ENOSPC */
    char p[64];
    int ok = 0;
    const char *last = "OK";
    for (int i = 0; i < 1100; i++) {
        snprintf(p, sizeof(p), "n/%d", i);
        last = err_of(W(g, p, "x"));
        if (strcmp(last, "OK"))
            break;
        ok++;
    }
    CHECK(!strcmp(last, "ENOSPC"));
    CHECK_MSG(ok >= 990 && ok < 1000, "%d nodes created", ok);
    rq(g, XS_RM, 0, "n", NULL, 0);
    /* Entry size: 2048 -> ENOSPC; dom0 is not limited */
    static char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    CHECK(!strcmp(err_of(W(g, "big", big)), "ENOSPC"));
    CHECK(!strcmp(err_of(W(c, "/local/domain/5/big", big)), "OK"));
    /* Watches: 128 -> E2BIG */
    last = "OK";
    ok = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(p, sizeof(p), "t%d", i);
        last = err_of(rq(g, XS_WATCH, 0, "w", p, strlen(p) + 1));
        if (strcmp(last, "OK"))
            break;
        ok++;
    }
    CHECK(!strcmp(last, "E2BIG"));
    CHECK_EQ(ok, 128);
    CHECK(!strcmp(err_of(rq(g, XS_WATCH, 0, "w", "t1", 3)), "EEXIST"));
    CHECK(!strcmp(err_of(rq(g, XS_RESET_WATCHES, 0, "", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(rq(g, XS_WATCH, 0, "w", "t1", 3)), "OK"));
    /* Transactions: 10 -> ENOSPC */
    last = "OK";
    ok = 0;
    for (int i = 0; i < 20; i++) {
        last = err_of(rq(g, XS_TRANSACTION_START, 0, "", NULL, 0));
        if (strcmp(last, "TRANSACTION_START") && strcmp(last, "OK"))
            break;
        ok++;
    }
    CHECK(!strcmp(last, "ENOSPC"));
    CHECK_EQ(ok, 10);
    /* Permissions per node: 5 -> ENOSPC */
    W(g, "pp", "");
    CHECK(!strcmp(err_of(rq(g, XS_SET_PERMS, 0, "pp", "n5\0r1\0r2\0r3\0r4\0", 15)), "OK"));
    CHECK(!strcmp(err_of(rq(g, XS_SET_PERMS, 0, "pp", "n5\0r1\0r2\0r3\0r4\0r6\0", 18)),
                  "ENOSPC"));
    /* Path length */
    static char lp[3100];
    memset(lp, 'a', sizeof(lp) - 1);
    lp[0] = '/';
    CHECK(!strcmp(err_of(R(c, lp)), "EINVAL"));
}

static void test_txn(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *c2 = mk(xs_conn_new(&xs, 0, false), &sinks[3]);
    W(c, "/t/a", "1");
    W(c, "/t/b", "1");
    struct msg *m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    REQUIRE(m->h.type == XS_TRANSACTION_START);
    uint32_t tx = (uint32_t)atoi(m->body);
    CHECK(tx != 0);
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "1"));
    WTX(c, tx, "/t/a", "2");
    /* Not visible outside before commit */
    CHECK(!strcmp(R(c2, "/t/a")->body, "1"));
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "2"));
    /* Someone else changes a node the transaction read: EAGAIN */
    W(c2, "/t/a", "3");
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0)), "EAGAIN"));
    CHECK(!strcmp(R(c, "/t/a")->body, "3"));
    /* A retry without interference commits */
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    tx = (uint32_t)atoi(m->body);
    RTX(c, tx, "/t/a");
    WTX(c, tx, "/t/a", "4");
    W(c2, "/t/b", "other");     /* not accessed by the transaction: no conflict */
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0)), "OK"));
    CHECK(!strcmp(R(c, "/t/a")->body, "4"));
    /* Abort discards */
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    tx = (uint32_t)atoi(m->body);
    WTX(c, tx, "/t/new", "x");
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "F", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(R(c, "/t/new")), "ENOENT"));
    /* A stale or unknown transaction */
    CHECK(!strcmp(err_of(RTX(c, tx, "/t/a")), "ENOENT"));
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, 4242, "T", NULL, 0)), "ENOENT"));
    /* A read-only transaction conflicts too */
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    tx = (uint32_t)atoi(m->body);
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "4"));
    W(c2, "/t/a", "5");
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0)), "EAGAIN"));
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    tx = (uint32_t)atoi(m->body);
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "5"));
    W(c2, "/t/a", "6");
    /* A snapshot: the transaction still sees its value (Xen's test-xenstore "ta err") */
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "5"));
    WTX(c, tx, "/t/a", "7");
    CHECK(!strcmp(RTX(c, tx, "/t/a")->body, "7"));
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0)), "EAGAIN"));
    CHECK(!strcmp(R(c, "/t/a")->body, "6"));
    /* A conflicting creation of a node the transaction found absent */
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    tx = (uint32_t)atoi(m->body);
    CHECK(!strcmp(err_of(RTX(c, tx, "/t/c")), "ENOENT"));
    WTX(c, tx, "/t/d", "1");
    W(c2, "/t/c", "now");
    CHECK(!strcmp(err_of(rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0)), "EAGAIN"));
    CHECK(!strcmp(err_of(R(c, "/t/d")), "ENOENT"));
}

static int count_events(struct sink *s, const char *path, const char *token)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->m[i].h.type == XS_WATCH_EVENT && !strcmp(s->m[i].body, path) &&
            !strcmp(s->m[i].body + strlen(path) + 1, token))
            n++;
    return n;
}

static void test_watch(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *c2 = mk(xs_conn_new(&xs, 0, false), &sinks[3]);
    struct msg *m = rq(c2, XS_WATCH, 0, "/w", "tok", 4);
    CHECK_EQ(m->h.type, XS_WATCH);
    /* OK first, then the initial event */
    CHECK_EQ(sinks[3].n, 2);
    CHECK_EQ(sinks[3].m[1].h.type, XS_WATCH_EVENT);
    CHECK_EQ(count_events(&sinks[3], "/w", "tok"), 1);
    W(c, "/w/x/y", "1");
    CHECK_EQ(count_events(&sinks[3], "/w/x/y", "tok"), 1);
    W(c, "/other", "1");
    CHECK_EQ(count_events(&sinks[3], "/other", "tok"), 0);
    rq(c, XS_RM, 0, "/w", NULL, 0);
    CHECK_EQ(count_events(&sinks[3], "/w", "tok"), 2);
    /* A watch below a removed node fires with its own path */
    rq(c2, XS_WATCH, 0, "/r/s/t", "deep", 5);
    W(c, "/r/s/t/u", "1");
    rq(c, XS_RM, 0, "/r", NULL, 0);
    CHECK_EQ(count_events(&sinks[3], "/r/s/t", "deep"), 2);
    /* Transactions fire at commit only */
    m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    uint32_t tx = (uint32_t)atoi(m->body);
    WTX(c, tx, "/w/t", "1");
    CHECK_EQ(count_events(&sinks[3], "/w/t", "tok"), 0);
    rq(c, XS_TRANSACTION_END, tx, "T", NULL, 0);
    CHECK_EQ(count_events(&sinks[3], "/w/t", "tok"), 1);
    CHECK(!strcmp(err_of(rq(c2, XS_UNWATCH, 0, "/w", "tok", 4)), "OK"));
    CHECK(!strcmp(err_of(rq(c2, XS_UNWATCH, 0, "/w", "tok", 4)), "ENOENT"));
    /* Special watches; a guest needs the special node's read permission */
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    rq(c2, XS_WATCH, 0, "@introduceDomain", "i", 2);
    rq(c2, XS_WATCH, 0, "@releaseDomain", "r", 2);
    rq(g, XS_WATCH, 0, "@releaseDomain", "gr", 3);
    guest(c, 7, &sinks[2]);
    CHECK_EQ(count_events(&sinks[3], "@introduceDomain", "i"), 2);
    rq(c, XS_RELEASE, 0, "7", NULL, 0);
    CHECK_EQ(count_events(&sinks[3], "@releaseDomain", "r"), 2);
    CHECK_EQ(count_events(&sinks[1], "@releaseDomain", "gr"), 1);   /* initial only */
    rq(c, XS_SET_PERMS, 0, "@releaseDomain", "n0\0r5\0", 6);
    guest(c, 8, &sinks[2]);
    rq(c, XS_RELEASE, 0, "8", NULL, 0);
    CHECK_EQ(count_events(&sinks[1], "@releaseDomain", "gr"), 2);
    /* A guest's relative watch reports relative paths; it cannot see what it cannot read */
    W(c, "/local/domain/5/data", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5/data", "n5\0", 3);
    rq(g, XS_WATCH, 0, "data", "rel", 4);
    W(c, "/local/domain/5/data/k", "v");
    CHECK_EQ(count_events(&sinks[1], "data/k", "rel"), 1);
    rq(g, XS_WATCH, 0, "/secret", "s", 2);
    W(c, "/secret/k", "v");
    CHECK_EQ(count_events(&sinks[1], "/secret/k", "s"), 0);
    /* Depth */
    rq(c2, XS_WATCH, 0, NULL, "/dep\0d\0" "1\0", 9);
    W(c, "/dep/a", "1");
    W(c, "/dep/a/b", "1");
    CHECK_EQ(count_events(&sinks[3], "/dep/a", "d"), 1);
    CHECK_EQ(count_events(&sinks[3], "/dep/a/b", "d"), 0);
}

/* ---- transactions: an overlay of what they touch on the main tree ---- */

static uint32_t tx_start(struct xs_conn *c)
{
    struct msg *m = rq(c, XS_TRANSACTION_START, 0, "", NULL, 0);
    return m->h.type == XS_TRANSACTION_START ? (uint32_t)atoi(m->body) : 0;
}

static const char *tx_end(struct xs_conn *c, uint32_t tx, const char *how)
{
    return err_of(rq(c, XS_TRANSACTION_END, tx, how, NULL, 0));
}

/* A DIRECTORY reply as "a b c" (or the error). */
static const char *dir_of(struct xs_conn *c, uint32_t tx, const char *path)
{
    static char out[XENSTORE_PAYLOAD_MAX + 1];
    struct msg *m = rq(c, XS_DIRECTORY, tx, path, NULL, 0);
    if (m->h.type != XS_DIRECTORY)
        return err_of(m);
    size_t o = 0;
    for (uint32_t pos = 0; pos < m->h.len; pos += (uint32_t)strlen(m->body + pos) + 1)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", o ? " " : "", m->body + pos);
    out[o] = '\0';
    return out;
}

static void test_txn_overlay(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *w = mk(xs_conn_new(&xs, 0, false), &sinks[3]);
    W(c, "/o/a", "1");
    W(c, "/o/b", "2");
    W(c, "/o/c/d", "3");
    rq(w, XS_WATCH, 0, "/o", "tok", 4);
    uint32_t tx = tx_start(c);
    REQUIRE(tx);
    /* A removal is a tombstone hiding the subtree, in the transaction only */
    CHECK(!strcmp(err_of(rq(c, XS_RM, tx, "/o/c", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(RTX(c, tx, "/o/c/d")), "ENOENT"));
    CHECK(!strcmp(dir_of(c, tx, "/o"), "a b"));
    CHECK(!strcmp(dir_of(c, 0, "/o"), "a b c"));
    CHECK(!strcmp(R(c, "/o/c/d")->body, "3"));
    /* Creations show in the transaction's directories */
    CHECK(!strcmp(err_of(WTX(c, tx, "/o/new/x", "v")), "OK"));
    CHECK(!strcmp(dir_of(c, tx, "/o"), "a b new"));
    CHECK(!strcmp(dir_of(c, tx, "/o/new"), "x"));
    CHECK(!strcmp(err_of(R(c, "/o/new")), "ENOENT"));
    /* Re-created: the old subtree stays hidden */
    CHECK(!strcmp(err_of(WTX(c, tx, "/o/c", "r")), "OK"));
    CHECK(!strcmp(dir_of(c, tx, "/o/c"), ""));
    CHECK(!strcmp(err_of(RTX(c, tx, "/o/c/d")), "ENOENT"));
    CHECK(!strcmp(dir_of(c, tx, "/o"), "a b c new"));
    /* Permissions through the overlay */
    CHECK(!strcmp(err_of(rq(c, XS_SET_PERMS, tx, "/o/new/x", "n0\0r5\0", 6)), "OK"));
    struct msg *m = rq(c, XS_GET_PERMS, tx, "/o/new/x", NULL, 0);
    CHECK(m->h.type == XS_GET_PERMS && !memcmp(m->body, "n0\0r5\0", 6));
    CHECK(!strcmp(err_of(rq(c, XS_GET_PERMS, 0, "/o/new/x", NULL, 0)), "ENOENT"));
    m = rq(c, XS_DIRECTORY_PART, tx, "/o", "0", 2);
    CHECK(m->h.type == XS_DIRECTORY_PART);
    size_t g = strlen(m->body) + 1;
    CHECK(m->h.len == g + 11 && !memcmp(m->body + g, "a\0b\0c\0new\0\0", 11));
    /* Nothing fired before the commit; the changes fire at it, in the same order */
    CHECK_EQ(count_events(&sinks[3], "/o/c", "tok"), 0);
    CHECK(!strcmp(tx_end(c, tx, "T"), "OK"));
    CHECK(!strcmp(dir_of(c, 0, "/o"), "a b c new"));
    CHECK(!strcmp(R(c, "/o/c")->body, "r"));
    CHECK(!strcmp(err_of(R(c, "/o/c/d")), "ENOENT"));
    CHECK(!strcmp(R(c, "/o/new/x")->body, "v"));
    CHECK_EQ(count_events(&sinks[3], "/o/c", "tok"), 2);     /* removed, re-created */
    CHECK_EQ(count_events(&sinks[3], "/o/new/x", "tok"), 1);
    CHECK_EQ(c->txn_bytes, 0);
}

/* A guest's transaction uses its own view for permissions; a change of what it read
 * is a conflict. */
static void test_txn_view_perms(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    W(c, "/local/domain/5", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3);
    W(c, "/pub/k", "v");
    rq(c, XS_SET_PERMS, 0, "/pub/k", "n0\0r5\0", 6);
    W(g, "d/old", "1");
    uint32_t tx = tx_start(g);
    CHECK(!strcmp(RTX(g, tx, "/pub/k")->body, "v"));
    rq(c, XS_SET_PERMS, 0, "/pub/k", "n0\0", 3);
    CHECK(!strcmp(err_of(R(g, "/pub/k")), "EACCES"));
    CHECK(!strcmp(RTX(g, tx, "/pub/k")->body, "v"));       /* as it saw it */
    CHECK(!strcmp(err_of(rq(g, XS_RM, tx, "d", NULL, 0)), "OK"));
    CHECK(!strcmp(err_of(WTX(g, tx, "d/e", "2")), "OK"));
    CHECK(!strcmp(err_of(RTX(g, tx, "d/old")), "ENOENT"));
    struct msg *m = rq(g, XS_GET_PERMS, tx, "d/e", NULL, 0);
    CHECK(m->h.type == XS_GET_PERMS && !strcmp(m->body, "n5"));
    CHECK(!strcmp(tx_end(g, tx, "T"), "EAGAIN"));
    CHECK(!strcmp(R(g, "d/old")->body, "1"));
    CHECK(!strcmp(err_of(R(g, "d/e")), "ENOENT"));
    /* A conflict through a parent: the transaction created /t/x, someone else too */
    tx = tx_start(c);
    WTX(c, tx, "/t/x/y", "1");
    W(c, "/t/x", "other");
    CHECK(!strcmp(tx_end(c, tx, "T"), "EAGAIN"));
    CHECK(!strcmp(err_of(R(c, "/t/x/y")), "ENOENT"));
    CHECK_EQ(g->txn_bytes, 0);
}

/* TRANSACTION_END applies everything or nothing: a commit the node quota refuses
 * changes nothing and fires nothing. */
static void test_txn_commit_quota(void)
{
    setup();
    xs.quota.nodes = 20;
    struct xs_conn *c = dom0();
    struct xs_conn *w = mk(xs_conn_new(&xs, 0, false), &sinks[3]);
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    W(c, "/local/domain/5", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3);  /* owned: 1 */
    W(g, "n", "");
    W(g, "other", "");                                      /* owned: 3 */
    rq(w, XS_WATCH, 0, "/local/domain/5/n", "tok", 4);
    uint32_t tx = tx_start(g);
    char p[32];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "n/%d", i);
        CHECK(!strcmp(err_of(WTX(g, tx, p, "x")), "OK"));  /* 5 nodes */
    }
    /* 14 more outside, not touching what the transaction accessed */
    for (int i = 0; i < 14; i++) {
        snprintf(p, sizeof(p), "other/o%d", i);
        CHECK(!strcmp(err_of(W(g, p, "x")), "OK"));
    }
    CHECK_EQ(xs.tree->owned[5], 17);
    int before = count_events(&sinks[3], "/local/domain/5/n", "tok");
    CHECK(!strcmp(tx_end(g, tx, "T"), "ENOSPC"));
    CHECK(!strcmp(err_of(R(g, "n/0")), "ENOENT"));
    CHECK_EQ(xs.tree->owned[5], 17);
    CHECK_EQ(count_events(&sinks[3], "/local/domain/5/n", "tok"), before);
    CHECK(!strcmp(tx_end(g, tx, "T"), "ENOENT"));              /* gone */
    /* Removals in the transaction make room: remove 10, create 7 */
    tx = tx_start(g);
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof(p), "other/o%d", i);
        CHECK(!strcmp(err_of(rq(g, XS_RM, tx, p, NULL, 0)), "OK"));
    }
    for (int i = 0; i < 7; i++) {
        snprintf(p, sizeof(p), "n/%d", i);
        CHECK(!strcmp(err_of(WTX(g, tx, p, "x")), "OK"));
    }
    CHECK(!strcmp(err_of(WTX(g, tx, "n/a/b/c/d/e/f/g", "x")), "ENOSPC"));
    CHECK(!strcmp(tx_end(g, tx, "T"), "OK"));
    CHECK_EQ(xs.tree->owned[5], 14);
    CHECK_EQ(count_events(&sinks[3], "/local/domain/5/n/6", "tok"), 1);
    CHECK_EQ(g->txn_bytes, 0);
    /* The commit counts against the tree as it is: a removal below a path the
     * transaction removed (no conflict) frees nothing more for it */
    rq(g, XS_RM, 0, "n", NULL, 0);
    rq(g, XS_RM, 0, "other", NULL, 0);
    W(g, "d/x/y", "");                                     /* owned: 4 */
    xs.quota.nodes = 8;
    tx = tx_start(g);
    CHECK(!strcmp(err_of(rq(g, XS_RM, tx, "d", NULL, 0)), "OK"));
    rq(g, XS_RM, 0, "d/x/y", NULL, 0);                      /* owned: 3 */
    for (int i = 0; i < 8; i++) {       /* as requests go: 3 - 3 + 8 */
        snprintf(p, sizeof(p), "m%d", i);
        CHECK(!strcmp(err_of(WTX(g, tx, p, "x")), "OK"));
    }
    CHECK(!strcmp(tx_end(g, tx, "T"), "ENOSPC"));          /* 3 - 2 + 8 > 8 */
    CHECK_EQ(xs.tree->owned[5], 3);
    CHECK(!strcmp(err_of(R(g, "d/x")), "OK"));
}

/* What a guest's open transactions hold is bounded (trans_memory, trans_nodes). */
static void test_txn_memory(void)
{
    setup();
    xs.quota.trans_memory = 8192;
    struct xs_conn *c = dom0();
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    W(c, "/local/domain/5", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3);
    static char big[1500];
    memset(big, 'x', sizeof(big) - 1);
    uint32_t t1 = tx_start(g), t2 = tx_start(g);
    const char *last = "OK";
    int ok = 0;
    char p[32];
    for (int i = 0; i < 20 && !strcmp(last, "OK"); i++) {
        snprintf(p, sizeof(p), "b%d", i);
        last = err_of(WTX(g, i % 2 ? t2 : t1, p, big));
        ok += !strcmp(last, "OK");
    }
    CHECK(!strcmp(last, "ENOSPC"));
    CHECK_MSG(ok >= 3 && ok <= 5, "%d big writes", ok);
    CHECK(g->txn_bytes <= 8192);
    CHECK(!strcmp(tx_end(g, t1, "F"), "OK"));
    CHECK(!strcmp(tx_end(g, t2, "F"), "OK"));
    CHECK_EQ(g->txn_bytes, 0);
    /* Accessed nodes per transaction */
    xs.quota.trans_memory = 0;
    xs.quota.trans_nodes = 50;
    t1 = tx_start(g);
    last = "OK";
    for (int i = 0; i < 60 && strcmp(last, "ENOSPC"); i++) {
        snprintf(p, sizeof(p), "r%d", i);
        last = err_of(RTX(g, t1, p));
    }
    CHECK(!strcmp(last, "ENOSPC"));
    CHECK(!strcmp(tx_end(g, t1, "F"), "OK"));
}

/* A transaction costs what it touches: 1,000 of them on a 20,000-node tree allocate
 * no tree node and a few entries each. */
static void test_txn_no_copy(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    char p[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(p, sizeof(p), "/big/%d/%d", i / 100, i % 100);
        W(c, p, "v");
    }
    W(c, "/local/domain/5/k", "0");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5", "n5\0", 3);
    rq(c, XS_SET_PERMS, 0, "/local/domain/5/k", "n5\0", 3);
    struct xs_alloc_stats before = xs_alloc_stats;
    uint32_t held[10];
    for (int i = 0; i < 10; i++) {          /* the guest's quota of open ones */
        held[i] = tx_start(g);
        CHECK(!strcmp(RTX(g, held[i], "k")->body, "0"));
    }
    int commits = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t tx = tx_start(c);
        snprintf(p, sizeof(p), "/big/%d/%d", i % 200, i % 100);
        RTX(c, tx, p);
        WTX(c, tx, "/big/0/0", "w");
        commits += !strcmp(tx_end(c, tx, i % 2 ? "T" : "F"), "OK");
    }
    CHECK_EQ(commits, 1000);
    for (int i = 0; i < 10; i++)
        CHECK(!strcmp(tx_end(g, held[i], "T"), "OK"));
    CHECK_EQ(xs_alloc_stats.tree_nodes - before.tree_nodes, 0);
    CHECK_MSG(xs_alloc_stats.txn_entries - before.txn_entries <= 2010, "%llu entries",
              (unsigned long long)(xs_alloc_stats.txn_entries - before.txn_entries));
    CHECK_EQ(c->txn_bytes + g->txn_bytes, 0);
}

/* ---- migration: export, and the import of a stream as the guest's own data ---- */

/* A xenstore stream built by hand: header, CONNECTION for src, NODEs, WATCHes, END. */
struct xsm { uint8_t b[1 << 17]; size_t len; };

static void xsm_put(struct xsm *m, const void *d, size_t n)
{
    if (n)
        memcpy(m->b + m->len, d, n);
    m->len += n;
}

static void xsm_rec(struct xsm *m, uint32_t type, const void *body, uint32_t len)
{
    static const uint8_t zero[8];
    xsm_put(m, &type, 4);
    xsm_put(m, &len, 4);
    xsm_put(m, body, len);
    xsm_put(m, zero, (8 - (len & 7)) & 7);
}

static void xsm_start(struct xsm *m, uint16_t src, uint16_t target)
{
    m->len = 0;
    xsm_put(m, "xenstore\0\0\0\2\0\0\0\0", 16);
    uint8_t c[20] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    memcpy(c + 8, &src, 2);
    memcpy(c + 10, &target, 2);
    xsm_rec(m, 2, c, 20);
}

/* A version 2 CONNECTION record with bytes in flight (in, then out; resp: out-resp-len). */
static void xsm_start_bytes(struct xsm *m, uint16_t src, const void *in, uint16_t inlen,
                            const void *out, uint32_t outlen, uint16_t resp)
{
    m->len = 0;
    xsm_put(m, "xenstore\0\0\0\2\0\0\0\0", 16);
    uint8_t c[24 + 512] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    uint16_t target = 0x7FF4;
    memcpy(c + 8, &src, 2);
    memcpy(c + 10, &target, 2);
    memcpy(c + 16, &inlen, 2);
    memcpy(c + 18, &resp, 2);
    memcpy(c + 20, &outlen, 4);
    if (inlen)
        memcpy(c + 24, in, inlen);
    if (outlen)
        memcpy(c + 24 + inlen, out, outlen);
    xsm_rec(m, 2, c, 24u + inlen + outlen);
}

/* perms: "n0" style, one entry. */
static void xsm_node(struct xsm *m, const char *path, const char *val, char perm, uint16_t id)
{
    uint8_t r[4096] = { 0 };
    uint16_t pl = (uint16_t)(strlen(path) + 1), vl = (uint16_t)strlen(val), np = 1;
    memcpy(r + 8, &pl, 2);
    memcpy(r + 10, &vl, 2);
    memcpy(r + 14, &np, 2);
    r[16] = (uint8_t)perm;
    memcpy(r + 18, &id, 2);
    memcpy(r + 20, path, pl);
    memcpy(r + 20 + pl, val, vl);
    xsm_rec(m, 5, r, 20u + pl + vl);
}

static void xsm_watch(struct xsm *m, const char *path, const char *token)
{
    uint8_t r[512] = { 1, 0, 0, 0 };
    uint16_t pl = (uint16_t)(strlen(path) + 1), tl = (uint16_t)(strlen(token) + 1);
    memcpy(r + 4, &pl, 2);
    memcpy(r + 6, &tl, 2);
    memcpy(r + 8, path, pl);
    memcpy(r + 8 + pl, token, tl);
    xsm_rec(m, 3, r, 8u + pl + tl);
}

static void xsm_end(struct xsm *m)
{
    xsm_rec(m, 0, NULL, 0);
}

/* Write path (a format with domid) as dom0, owned by owner, readable by reader. */
static void layout_node(struct xs_conn *d0, const char *fmt, uint32_t domid, const char *val,
                        uint32_t owner, uint32_t reader)
{
    char p[128], perms[32];
    snprintf(p, sizeof(p), fmt, domid);
    W(d0, p, val);
    int n = snprintf(perms, sizeof(perms), "n%u", owner) + 1;
    if (reader != owner)
        n += snprintf(perms + n, sizeof(perms) - (size_t)n, "r%u", reader) + 1;
    rq(d0, XS_SET_PERMS, 0, p, perms, (size_t)n);
}

/* What the destination's toolstack writes for domid before the import (toolstack_xs.c). */
static void dest_layout(struct xs *x, uint32_t domid)
{
    struct xs_conn *d0 = mk(xs_conn_new(x, 0, false), &sinks[2]);
    layout_node(d0, "/local/domain/%u", domid, "", 0, domid);
    layout_node(d0, "/local/domain/%u/name", domid, "local-name", 0, domid);
    layout_node(d0, "/local/domain/%u/control", domid, "", 0, domid);
    layout_node(d0, "/local/domain/%u/data", domid, "", domid, domid);
    layout_node(d0, "/local/domain/%u/device", domid, "", 0, domid);
    layout_node(d0, "/local/domain/%u/device/vbd/768", domid, "", domid, 0);
    layout_node(d0, "/local/domain/%u/device/vbd/768/state", domid, "1", domid, 0);
    layout_node(d0, "/local/domain/0/backend/vbd/%u/768", domid, "", 0, domid);
    layout_node(d0, "/local/domain/0/backend/vbd/%u/768/params", domid, "/images/local.img",
                0, domid);
    layout_node(d0, "/local/domain/0/backend/vbd/%u/768/state", domid, "1", 0, domid);
    /* A vif as a restore's layout has it: no state node on either end (the stream's). */
    layout_node(d0, "/local/domain/%u/device/vif/0", domid, "", domid, 0);
    layout_node(d0, "/local/domain/0/backend/vif/%u/0", domid, "", 0, domid);
    layout_node(d0, "/local/domain/0/backend/vif/%u/0/mac", domid, "00:16:3e:00:00:07", 0,
                domid);
    xs_conn_free(d0);
}

/* The whole tree, as text: a refused import must leave it as it was. */
struct dump { char s[1 << 16]; size_t len; };
static void dump_cb(void *ctx, const struct xs_node *n)
{
    struct dump *d = ctx;
    d->len += (size_t)snprintf(d->s + d->len, sizeof(d->s) - d->len, "%s=%.*s/%u:%u\n",
                               n->path, (int)n->vlen, (const char *)n->val, n->nperms,
                               n->nperms ? n->perms[0].domid : 0);
}
static void dump_tree(struct xs *x, struct dump *d)
{
    d->len = 0;
    d->s[0] = '\0';
    xs_tree_walk(x->tree->root, dump_cb, d);
}

static const char *val_of(struct xs *x, const char *path)
{
    static char v[256];
    struct xs_node *n = xs_tree_get(x->tree, path);
    if (!n)
        return "(none)";
    snprintf(v, sizeof(v), "%.*s", (int)n->vlen, (const char *)n->val);
    return v;
}

static void test_migrate(void)
{
    setup();
    struct xs_conn *c = dom0();
    struct xs_conn *g = guest(c, 5, &sinks[1]);
    REQUIRE(g);
    W(c, "/local/domain/5/name", "vm5");
    W(c, "/local/domain/5/device/vbd/768/state", "4");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5/device", "n5\0r0\0", 6);
    W(c, "/local/domain/5/data", "");
    rq(c, XS_SET_PERMS, 0, "/local/domain/5/data", "n5\0", 3);
    rq(g, XS_WRITE, 0, "/local/domain/5/data/bin", "a\0b", 3);
    W(c, "/local/domain/0/backend/vbd/5/768/params", "/images/source.img");
    W(c, "/local/domain/0/backend/vbd/5/768/state", "4");
    W(c, "/local/domain/0/backend/vbd/5/768/sectors", "2048");
    W(c, "/local/domain/5/device/vif/0/state", "4");
    W(c, "/local/domain/5/device/vif/0/tx-ring-ref", "8");
    W(c, "/local/domain/0/backend/vif/5/0/state", "4");
    W(c, "/local/domain/0/backend/vif/5/0/feature-rx-copy", "1");
    W(c, "/local/domain/0/backend/vif/5/0/hotplug-status", "connected");
    W(c, "/local/domain/0/backend/vif/5/0/mac", "00:16:3e:00:00:05");
    W(c, "/libxl/5/type", "pvh");
    rq(g, XS_WATCH, 0, "device", "tok", 4);
    rq(g, XS_WATCH, 0, NULL, "/local/domain/5/name\0t2\0" "0\0", 26);
    xs_domain_find(&xs, 5)->target = 6;
    size_t len;
    uint8_t *s = xs_migrate_export(&xs, 5, NULL, &len);
    REQUIRE(s);
    CHECK(!memcmp(s, "xenstore\0\0\0\2\0\0\0\0", 16));

    /* Into domain 7 of a host whose toolstack wrote 7's layout from its own config. */
    struct xs other;
    char err[256];
    xs_init(&other);
    dest_layout(&other, 7);
    CHECK_MSG(xs_migrate_import_domain(&other, s, len, 7, err, sizeof(err)) == 0, "%s", err);
    CHECK(!strcmp(val_of(&other, "/local/domain/7/device/vbd/768/state"), "4"));
    struct xs_node *n = xs_tree_get(other.tree, "/local/domain/7/data/bin");
    CHECK(n && n->vlen == 3 && !memcmp(n->val, "a\0b", 3) && n->perms[0].domid == 7);
    /* The toolstack's nodes keep its values; of the backend only its own state comes. */
    CHECK(!strcmp(val_of(&other, "/local/domain/7/name"), "local-name"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vbd/7/768/params"),
                  "/images/local.img"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vbd/7/768/state"), "4"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vbd/7/768/sectors"), "2048"));
    /* A vif's ends get their state and the backend its features; the mac stays local. */
    CHECK(!strcmp(val_of(&other, "/local/domain/7/device/vif/0/state"), "4"));
    CHECK(!strcmp(val_of(&other, "/local/domain/7/device/vif/0/tx-ring-ref"), "8"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vif/7/0/state"), "4"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vif/7/0/feature-rx-copy"), "1"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vif/7/0/hotplug-status"),
                  "connected"));
    CHECK(!strcmp(val_of(&other, "/local/domain/0/backend/vif/7/0/mac"),
                  "00:16:3e:00:00:07"));
    n = xs_tree_get(other.tree, "/local/domain/0/backend/vif/7/0/state");
    CHECK(n && n->perms[0].domid == 0);     /* dom0's, as the directory it is in */
    CHECK(!xs_tree_get(other.tree, "/local/domain/5"));
    CHECK(!xs_tree_get(other.tree, "/local/domain/0/backend/vbd/5"));
    CHECK(!xs_tree_get(other.tree, "/libxl"));
    struct xs_domain *d = xs_domain_find(&other, 7);
    REQUIRE(d);
    CHECK_EQ(d->target, XS_NO_TARGET);      /* the source's target: not taken */
    CHECK_EQ(d->conn->nwatches, 2);
    CHECK(d->conn->watches && !strcmp(d->conn->watches->path, "device"));
    CHECK(d->conn->watches->next && d->conn->watches->next->depth == 0 &&
          !strcmp(d->conn->watches->next->path, "/local/domain/7/name"));
    /* A second import for a connected domain is refused. */
    d->introduced = true;
    CHECK_EQ(xs_migrate_import_domain(&other, s, len, 7, err, sizeof(err)), EEXIST);
    /* Truncations and garbage are refused without crashing, and change nothing. */
    xs_fini(&other);
    xs_init(&other);
    dest_layout(&other, 7);
    struct dump before, after;
    dump_tree(&other, &before);
    for (size_t cut = 0; cut < len; cut += 7) {
        CHECK(xs_migrate_import_domain(&other, s, cut, 7, err, sizeof(err)) != 0);
        CHECK(err[0] != '\0');
    }
    dump_tree(&other, &after);
    CHECK(!strcmp(before.s, after.s));
    CHECK(!xs_domain_find(&other, 7));
    free(s);
    xs_fini(&other);
}

static int import_crafted(const struct xsm *m, struct xs *dst, char *err, size_t errlen);

/*
 * A request the source took from the ring (part of one: the rest is still in it) and
 * output it had not put in the ring (the end of one response, then a whole one) go
 * with the domain, and come out of the destination's export as they went in.
 */
static void test_migrate_in_flight(void)
{
    struct xsd_sockmsg req = { .type = XS_READ, .req_id = 3, .len = 10 };
    struct xsd_sockmsg rsp = { .type = XS_READ, .req_id = 2, .len = 3 };
    uint8_t in[XS_HDR_SIZE + 4], out[5 + XS_HDR_SIZE + 3];
    memcpy(in, &req, XS_HDR_SIZE);
    memcpy(in + XS_HDR_SIZE, "data", 4);
    memcpy(out, "tail\0", 5);
    memcpy(out + 5, &rsp, XS_HDR_SIZE);
    memcpy(out + 5 + XS_HDR_SIZE, "abc", 3);
    CHECK(xs_conn_out_ok(out, sizeof(out), 5));
    CHECK(!xs_conn_out_ok(out, sizeof(out), 4));        /* a header cut in two */
    CHECK(!xs_conn_out_ok(out, sizeof(out) - 1, 5));    /* a response cut short */
    CHECK(!xs_conn_out_ok(out, 4, 5));                  /* resp beyond the data */

    setup();
    struct xs_conn *c = dom0();
    REQUIRE(guest(c, 5, &sinks[1]));
    struct xs_conn_bytes pb = { in, sizeof(in), out, sizeof(out), 5 };
    size_t len;
    uint8_t *s = xs_migrate_export(&xs, 5, &pb, &len);
    REQUIRE(s);
    struct xs other;
    char err[256];
    xs_init(&other);
    dest_layout(&other, 7);
    CHECK_MSG(xs_migrate_import_domain(&other, s, len, 7, err, sizeof(err)) == 0, "%s", err);
    struct xs_domain *d = xs_domain_find(&other, 7);
    REQUIRE(d && d->carried);
    CHECK_EQ(d->carried_in, sizeof(in));
    CHECK_EQ(d->carried_out, sizeof(out));
    CHECK_EQ(d->carried_resp, 5);
    CHECK(!memcmp(d->carried, in, sizeof(in)) &&
          !memcmp(d->carried + sizeof(in), out, sizeof(out)));
    /* Exported again as it came (the CONNECTION record is the stream's first). */
    struct xs_conn_bytes back = { d->carried, d->carried_in, d->carried + d->carried_in,
                                  d->carried_out, d->carried_resp };
    size_t len2;
    uint8_t *s2 = xs_migrate_export(&other, 7, &back, &len2);
    REQUIRE(s2);
    CHECK(!memcmp(s + 16, s2 + 16, 8));                 /* CONNECTION, same length */
    CHECK(!memcmp(s + 16 + 8 + 16, s2 + 16 + 8 + 16, 8 + sizeof(in) + sizeof(out)));
    free(s2);
    free(s);
    xs_fini(&other);

    /* Refused: a whole request left unanswered, output not whole responses, overruns. */
    static struct xsm m;
    struct xs dst;
    xs_init(&dst);
    struct xsd_sockmsg whole = { .type = XS_READ, .req_id = 1, .len = 2 };
    uint8_t w[XS_HDR_SIZE + 2];
    memcpy(w, &whole, XS_HDR_SIZE);
    memcpy(w + XS_HDR_SIZE, "x", 2);
    xsm_start_bytes(&m, 5, w, sizeof(w), NULL, 0, 0);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    CHECK_STR_CONTAINS(err, "not part of one request");
    struct xsd_sockmsg big = { .type = XS_READ, .req_id = 1, .len = XENSTORE_PAYLOAD_MAX + 1 };
    xsm_start_bytes(&m, 5, &big, XS_HDR_SIZE, NULL, 0, 0);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    xsm_start_bytes(&m, 5, NULL, 0, out, sizeof(out) - 1, 5);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    CHECK_STR_CONTAINS(err, "not whole responses");
    xsm_start_bytes(&m, 5, NULL, 0, out, sizeof(out), 6);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    /* A length beyond the record. */
    xsm_start_bytes(&m, 5, in, sizeof(in), NULL, 0, 0);
    uint16_t over = 200;
    memcpy(m.b + 16 + 8 + 16, &over, 2);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    CHECK_STR_CONTAINS(err, "overruns");
    /* And a good one is kept. */
    xsm_start_bytes(&m, 5, in, sizeof(in), out, sizeof(out), 5);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), 0);
    CHECK_EQ(xs_domain_find(&dst, 7)->carried_out, sizeof(out));
    xs_fini(&dst);
}

/* Import one crafted stream into a fresh destination: its error, the tree unchanged if so. */
static int import_crafted(const struct xsm *m, struct xs *dst, char *err, size_t errlen)
{
    xs_fini(dst);
    xs_init(dst);
    dest_layout(dst, 7);
    dest_layout(dst, 6);        /* another running domain */
    struct dump before, after;
    dump_tree(dst, &before);
    int rc = xs_migrate_import_domain(dst, m->b, m->len, 7, err, errlen);
    dump_tree(dst, &after);
    if (rc) {
        CHECK_MSG(!strcmp(before.s, after.s), "refused import changed the tree: %s", err);
        CHECK(!xs_domain_find(dst, 7));
        CHECK(err[0] != '\0');
    }
    return rc;
}

static void test_migrate_refusals(void)
{
    static struct xsm m;
    struct xs dst;
    char err[256];
    xs_init(&dst);
    /* The four injections of the report: three refused, one not taken. */
    static const char *const foreign[] = {
        "/evil", "/local/domain/6/evil", "/local/domain/0/backend/vbd/6/768/params",
        "/local/domain/0/backend/vbd/6/999/params", "/libxl/6/x", "/local/domain/0/x",
        "/local/domain", "/tool/x",
    };
    for (size_t i = 0; i < sizeof(foreign) / sizeof(*foreign); i++) {
        xsm_start(&m, 5, 0x7FF4);
        xsm_node(&m, "/local/domain/5/data/ok", "1", 'n', 5);    /* applied first... */
        xsm_node(&m, foreign[i], "x", 'n', 0);                   /* ...then refused */
        xsm_end(&m);
        CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EPERM);
        CHECK_STR_CONTAINS(err, "outside the domain's own subtree");
    }
    xsm_start(&m, 5, 0x7FF4);
    xsm_node(&m, "/local/domain/0/backend/vbd/5/768/params", "/root/secret", 'n', 0);
    xsm_node(&m, "/local/domain/0/backend/vbd/5/768/mode", "w", 'n', 0);
    xsm_node(&m, "/local/domain/0/backend/vbd/5/768/state", "4", 'n', 0);
    xsm_node(&m, "/local/domain/0/backend/vbd/5/2048/state", "4", 'n', 0);
    xsm_node(&m, "/vm/0000/name", "x", 'n', 0);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), 0);
    CHECK(!strcmp(val_of(&dst, "/local/domain/0/backend/vbd/7/768/params"),
                  "/images/local.img"));
    CHECK(!strcmp(val_of(&dst, "/local/domain/0/backend/vbd/7/768/mode"), "(none)"));
    CHECK(!strcmp(val_of(&dst, "/local/domain/0/backend/vbd/7/768/state"), "4"));
    CHECK(!xs_tree_get(dst.tree, "/local/domain/0/backend/vbd/7/2048"));
    CHECK(!xs_tree_get(dst.tree, "/vm"));

    /* The guest's own subtree: as its writes. */
    xsm_start(&m, 5, 6);                            /* a target: never taken */
    xsm_node(&m, "/local/domain/5/name", "evil", 'b', 5);    /* the toolstack's: kept */
    xsm_node(&m, "/local/domain/5/data/x", "v", 'r', 0);     /* owner forced to 7 */
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), 0);
    CHECK(!strcmp(val_of(&dst, "/local/domain/7/name"), "local-name"));
    struct xs_node *n = xs_tree_get(dst.tree, "/local/domain/7/data/x");
    CHECK(n && n->perms[0].domid == 7 && n->perms[0].perm == XS_PERM_READ);
    CHECK_EQ(xs_domain_find(&dst, 7)->target, XS_NO_TARGET);

    static const struct { const char *path, *why; } own_bad[] = {
        { "/local/domain/5/control/new", "may not write" },   /* parent is dom0's */
        { "/local/domain/5/newdir", "may not write" },
        { "/local/domain/0/backend/vbd/5/768/state", "not a number" },
        { "/local/domain/0/backend/vif/5/0/hotplug-status", "not a number" },
        { "/local/domain/5/data/a//b", "not a valid path" },
    };
    for (size_t i = 0; i < sizeof(own_bad) / sizeof(*own_bad); i++) {
        xsm_start(&m, 5, 0x7FF4);
        xsm_node(&m, "/local/domain/5/data/ok", "1", 'n', 5);
        xsm_node(&m, own_bad[i].path, "x", 'n', 5);
        xsm_end(&m);
        CHECK(import_crafted(&m, &dst, err, sizeof(err)) != 0);
        CHECK_STR_CONTAINS(err, own_bad[i].why);
    }

    /* Quotas: nodes, value size, watches. */
    xsm_start(&m, 5, 0x7FF4);
    for (int i = 0; i < 1001; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/local/domain/5/data/n%d", i);
        xsm_node(&m, p, "", 'n', 5);
    }
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), ENOSPC);
    static char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    xsm_start(&m, 5, 0x7FF4);
    xsm_node(&m, "/local/domain/5/data/big", big, 'n', 5);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), ENOSPC);
    xsm_start(&m, 5, 0x7FF4);
    for (int i = 0; i < 129; i++) {
        char t[16];
        snprintf(t, sizeof(t), "t%d", i);
        xsm_watch(&m, "data", t);
    }
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), E2BIG);
    /* No CONNECTION record, or one naming dom0. */
    xsm_start(&m, 0, 0x7FF4);
    xsm_end(&m);
    CHECK_EQ(import_crafted(&m, &dst, err, sizeof(err)), EINVAL);
    xs_fini(&dst);
}

static void test_import_classify(void)
{
    char out[XENSTORE_ABS_PATH_MAX + 2];
    CHECK_EQ(xs_import_classify("/local/domain/5", 5, 9, out, sizeof(out)), XS_IMPORT_GUEST);
    CHECK(!strcmp(out, "/local/domain/9"));
    CHECK_EQ(xs_import_classify("/local/domain/5/a/b", 5, 9, out, sizeof(out)),
             XS_IMPORT_GUEST);
    CHECK(!strcmp(out, "/local/domain/9/a/b"));
    CHECK_EQ(xs_import_classify("/local/domain/55/a", 5, 9, out, sizeof(out)),
             XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/5/51712/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_BACKEND_STATE);
    CHECK(!strcmp(out, "/local/domain/0/backend/vbd/9/51712/state"));
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/5/51712/params", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/5/51712/x/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/console/5/0/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    /* A vif backend's state and features (netback's), not its mac or bridge. */
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vif/5/1/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_BACKEND_STATE);
    CHECK(!strcmp(out, "/local/domain/0/backend/vif/9/1/state"));
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vif/5/0/feature-rx-copy", 5, 9, out,
                                sizeof(out)), XS_IMPORT_BACKEND_STATE);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vif/5/0/hotplug-status", 5, 9, out,
                                sizeof(out)), XS_IMPORT_BACKEND_STATE);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vif/5/0/mac", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vif/5/0/sectors", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/5/768/feature-rx-copy", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vifx/5/0/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_TOOLSTACK);
    static const struct { const char *path, *val; bool ok; } values[] = {
        { "/local/domain/0/backend/vif/9/0/state", "4", true },
        { "/local/domain/0/backend/vif/9/0/hotplug-status", "connected", true },
        { "/local/domain/0/backend/vif/9/0/hotplug-status", "connectedx", false },
        { "/local/domain/0/backend/vif/9/0/state", "connected", false },
        { "/local/domain/0/backend/vbd/9/768/sectors", "2048", true },
        { "/local/domain/0/backend/vbd/9/768/sectors", "-1", false },
        { "/local/domain/0/backend/vbd/9/768/state", "", false },
        { "/local/domain/0/backend/vbd/9/768/state", "3000000000", false },
        { "/local/domain/0/backend/vbd/9/768/state", "7", false },
        { "/local/domain/0/backend/vbd/9/768/state", "04", false },
        { "/local/domain/0/backend/vbd/9/768/sectors", "17179869184", true },
        { "/local/domain/0/backend/vbd/9/768/params", "1", false },
        { "/local/domain/9/state", "1", false },
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(*values); i++)
        CHECK_EQ(xs_import_backend_value_ok(values[i].path, (const uint8_t *)values[i].val,
                                            (uint32_t)strlen(values[i].val)), values[i].ok);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/6/51712/state", 5, 9, out,
                                sizeof(out)), XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend/vbd/55", 5, 9, out, sizeof(out)),
             XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/local/domain/0/backend", 5, 9, out, sizeof(out)),
             XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/libxl/5/device", 5, 9, out, sizeof(out)),
             XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/libxl/6", 5, 9, out, sizeof(out)), XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/vm/abc/name", 5, 9, out, sizeof(out)), XS_IMPORT_TOOLSTACK);
    CHECK_EQ(xs_import_classify("/vmx", 5, 9, out, sizeof(out)), XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/", 5, 9, out, sizeof(out)), XS_IMPORT_FOREIGN);
    CHECK_EQ(xs_import_classify("/local/domain/0", 5, 9, out, sizeof(out)), XS_IMPORT_FOREIGN);
}

int main(void)
{
    xs_init(&xs);
    RUN_TEST(test_basic);
    RUN_TEST(test_directory_part);
    RUN_TEST(test_perms);
    RUN_TEST(test_quota);
    RUN_TEST(test_txn);
    RUN_TEST(test_watch);
    RUN_TEST(test_txn_overlay);
    RUN_TEST(test_txn_view_perms);
    RUN_TEST(test_txn_commit_quota);
    RUN_TEST(test_txn_memory);
    RUN_TEST(test_txn_no_copy);
    RUN_TEST(test_migrate);
    RUN_TEST(test_migrate_refusals);
    RUN_TEST(test_migrate_in_flight);
    RUN_TEST(test_import_classify);
    xs_fini(&xs);
    HARNESS_EXIT();
}
