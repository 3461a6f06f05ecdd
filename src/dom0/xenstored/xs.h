/*
 * xkvm-xenstored: a xenstore daemon speaking Xen's wire protocol (xs_wire.h).
 * The core (tree, permissions, transactions, watches, quotas, request handling) is a
 * library without I/O so that unit tests and the fuzzer can drive it; main.c adds the
 * UNIX socket, the guests' rings (through libdom0) and persistence.
 * Documented in docs/xenstored.md.
 */
#ifndef XKVM_XS_H
#define XKVM_XS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <xen/io/xs_wire.h>

#define XS_HDR_SIZE ((uint32_t)sizeof(struct xsd_sockmsg))
#define XS_NO_TARGET 0xFFFFFFFFu
#define XS_MAX_DOMID 0x7FEFu

/* ---- wire.c: pure parsing and formatting ---- */
/* Parse one request from buf: 1 and *used if complete, 0 if more bytes are needed,
 * -1 if the header is bad (payload over XENSTORE_PAYLOAD_MAX). */
int xs_wire_parse(const uint8_t *buf, size_t len, struct xsd_sockmsg *hdr,
                  const uint8_t **body, size_t *used);
/* Split a payload into NUL-terminated strings: returns how many (up to max) were
 * complete; trailing bytes without a NUL are not counted. */
int xs_wire_split(const uint8_t *body, uint32_t len, const char **v, int max);
const char *xs_errno_name(int err);     /* "EINVAL" etc.; unknown -> "EIO" as Xen */
int xs_errno_from_name(const char *s);  /* for tests */
const char *xs_type_name(uint32_t type);
/* Parse a decimal number fully (no sign, no junk); false on error or overflow of max. */
bool xs_parse_uint(const char *s, unsigned long max, unsigned long *out);

/* ---- perms.c ---- */
#define XS_PERM_NONE  0
#define XS_PERM_READ  1
#define XS_PERM_WRITE 2
#define XS_PERM_OWNER 4
struct xs_perm { uint32_t domid; uint8_t perm; /* XS_PERM_READ|WRITE */ };
/* "b0" etc. -> perm; false on a bad string. */
bool xs_perm_parse(const char *s, struct xs_perm *p);
char xs_perm_char(uint8_t perm);
struct xs_conn;
/* Xen's perm_for_conn: what the connection may do on a node with these perms. */
unsigned xs_perm_for(const struct xs_conn *c, const struct xs_perm *p, uint32_t n);

/* ---- tree.c ---- */
/* FNV-1a over paths, step by step (txn.c hashes every prefix of a path as it goes). */
#define XS_HASH_START 1469598103934665603ull
static inline size_t xs_hash_step(size_t h, char ch)
{
    return (h ^ (unsigned char)ch) * 1099511628211ull;
}
static inline size_t xs_hash_n(const char *s, size_t len)
{
    size_t h = XS_HASH_START;
    for (size_t i = 0; i < len; i++)
        h = xs_hash_step(h, s[i]);
    return h;
}
/* malloc that never returns NULL (xenstored stops on exhaustion; n 0 is 1 byte). */
void *xs_xmalloc(size_t n);
struct xs_node {
    char *path;                 /* absolute, canonical */
    const char *name;           /* last component (inside path) */
    uint8_t *val;
    uint32_t vlen;
    struct xs_perm *perms;
    uint32_t nperms;
    uint64_t gen;               /* changes on every change of the node or its children list */
    struct xs_node *parent;
    struct xs_node **kids;
    uint32_t nkids, capkids;
    uint32_t childlen;          /* sum of (strlen(name)+1) of kids */
    struct xs_node *hnext;
};

enum xs_change { XS_CHG_NODE, XS_CHG_RM };
struct xs_tree {
    struct xs_node **buckets;
    size_t nbuckets, count;
    struct xs_node *root;
    uint64_t *gen;              /* shared generation counter */
    uint32_t *owned;            /* nodes owned per domid, [XS_MAX_DOMID + 1] */
    /* Called for every change of this tree (the main tree only): persistence. */
    void (*changed)(void *ctx, enum xs_change what, const struct xs_node *n);
    void *changed_ctx;
};

struct xs_tree *xs_tree_new(uint64_t *gen);
void xs_tree_free(struct xs_tree *t);
/* A deep copy (migrate.c's trial import only: O(nodes)). */
struct xs_tree *xs_tree_copy(const struct xs_tree *t);
struct xs_node *xs_tree_get(const struct xs_tree *t, const char *path);
/* Create path under its existing parent, with the given value and perms (copied). */
struct xs_node *xs_tree_add(struct xs_tree *t, struct xs_node *parent, const char *path,
                            const void *val, uint32_t vlen,
                            const struct xs_perm *perms, uint32_t nperms);
int xs_tree_set_value(struct xs_tree *t, struct xs_node *n, const void *val, uint32_t vlen);
int xs_tree_set_perms(struct xs_tree *t, struct xs_node *n, const struct xs_perm *p,
                      uint32_t np);
/* Remove n and its subtree; cb is called for each removed node before it is freed. */
void xs_tree_rm(struct xs_tree *t, struct xs_node *n,
                void (*cb)(void *ctx, const struct xs_node *n), void *ctx);
/* Preorder walk (parents before children, children in creation order). */
void xs_tree_walk(const struct xs_node *n, void (*cb)(void *ctx, const struct xs_node *n),
                  void *ctx);
bool xs_is_child(const char *child, const char *parent);   /* Xen's is_child */

/* ---- quota.c ---- */
struct xs_quota {
    uint32_t nodes;         /* nodes owned per domain: 1000 */
    uint32_t entry_size;    /* node size: 2048 */
    uint32_t watches;       /* watches per domain: 128 */
    uint32_t transactions;  /* open transactions per connection: 10 */
    uint32_t perms;         /* permissions per node: 5 */
    uint32_t trans_nodes;   /* nodes accessed by one transaction: 1024 */
    uint32_t trans_memory;  /* bytes held by a domain's open transactions: nodes x entry_size */
    uint32_t outstanding;   /* queued output bytes before a guest is dropped */
};
void xs_quota_defaults(struct xs_quota *q);
/* Xen's node size accounting: header + perms + value + children names. */
uint32_t xs_node_size(uint32_t nperms, uint32_t vlen, uint32_t childlen);

/* ---- txn.c: transactions as an overlay on the main tree (no copy of it) ---- */
/* One path a transaction touched: the main tree's generation then (for the conflict
 * check) and the node as the transaction sees it. */
struct xs_txent {
    char *path;
    size_t plen, hash;
    uint64_t base_gen;          /* the main tree's generation at the first access; 0: absent */
    bool checked;               /* base_gen is checked at commit (false below a path the
                                 * transaction removed or created: that path's check covers it) */
    bool present;               /* the node exists in the transaction's view */
    bool fresh;                 /* the main tree's subtree here is hidden: the transaction
                                 * removed (tombstone) or created the node */
    bool set_val, set_perms;    /* written by the transaction */
    uint8_t *val;               /* the view's value and permissions (present only) */
    uint32_t vlen;
    struct xs_perm *perms;
    uint32_t nperms;
    uint64_t gen;               /* changes with the node or its children in the view */
    size_t bytes;               /* what the entry holds, charged to the connection */
    struct xs_txent *hnext, *next;      /* hash chain; order of first access */
};
struct xs_txn {
    uint32_t id;
    uint32_t quota_domid;       /* the guest whose created/removed nodes owned_delta
                                 * counts as requests go (the commit recounts);
                                 * XS_NO_TARGET: none (dom0) */
    int64_t owned_delta;
    struct xs_txent **buckets;
    size_t nbuckets, count;
    struct xs_txent *first, **tail;
    uint32_t max_entries;       /* nodes accessed by one transaction; 0: unlimited */
    size_t *held, max_held;     /* bytes held by the connection's transactions, its limit */
    struct xs_txn *next;
};
/* Counters of what was allocated, for tests: nodes of trees, transaction entries. */
struct xs_alloc_stats { uint64_t tree_nodes, txn_entries; };
extern struct xs_alloc_stats xs_alloc_stats;

struct xs_txn *xs_txn_new(uint32_t id, uint32_t quota_domid, uint32_t max_entries,
                          size_t *held, size_t max_held);
void xs_txn_free(struct xs_txn *t);
/* The transaction's entry for path, made at the first access from the main tree (a copy
 * of the node, or absent if it or a path the transaction removed hides it). ENOSPC over
 * the transaction's limits. */
int xs_txn_get(struct xs_txn *t, const struct xs_tree *main, const char *path,
               struct xs_txent **out);
/* The view of path without recording an access: present? and its permissions. */
bool xs_txn_peek(const struct xs_txn *t, const struct xs_tree *main, const char *path,
                 const struct xs_perm **perms, uint32_t *nperms);
/* Changes of the view; 0 or ENOSPC (the connection's transaction memory). */
int xs_txn_create(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                  const void *val, uint32_t vlen, const struct xs_perm *p, uint32_t np);
int xs_txn_set_value(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                     const void *val, uint32_t vlen);
int xs_txn_set_perms(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e,
                     const struct xs_perm *p, uint32_t np);
void xs_txn_remove(struct xs_txn *t, const struct xs_tree *main, struct xs_txent *e);
/* The children of a present entry as the transaction sees them, in order. */
void xs_txn_each_child(const struct xs_txn *t, const struct xs_tree *main,
                       const struct xs_txent *e,
                       void (*cb)(void *ctx, const char *name), void *ctx);
/* DIRECTORY_PART's generation of a present entry. */
uint64_t xs_txn_view_gen(const struct xs_txn *t, const struct xs_tree *main,
                         const struct xs_txent *e);
/* Commit: EAGAIN if anything accessed changed in main; else ENOSPC if the changes would
 * exceed node_quota (nodes owned by quota_domid) or entry_quota (0: no limit), or EAGAIN
 * if a created node lacks its parent; only if all is well are they applied to main, and
 * fire is called for each change applied. */
typedef void xs_txn_fire_fn(void *ctx, const char *path, const struct xs_perm *p,
                            uint32_t np, bool recurse);
int xs_txn_commit(struct xs_txn *t, struct xs_tree *main, uint32_t node_quota,
                  uint32_t entry_quota, xs_txn_fire_fn *fire, void *ctx);

/* ---- watch.c ---- */
struct xs_watch {
    char *path;         /* as given (relative or absolute or @special) */
    char *abs;          /* canonical absolute (or the special) */
    char *token;
    int depth;          /* -1 unlimited */
    bool relative;
    struct xs_watch *next;
};

/* ---- connections and the server ---- */
struct xs;
struct xs_conn {
    struct xs *xs;
    uint32_t domid;             /* 0: dom0 socket client */
    bool is_domain;             /* a guest (ring) connection */
    struct xs_watch *watches;
    uint32_t nwatches;
    struct xs_txn *txns;
    uint32_t ntxns, next_txid;
    size_t txn_bytes;           /* held by its open transactions (xs_txn.held) */
    /* Queue one message (header + body) to the client. */
    void (*send)(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body);
    void *io;                   /* the transport's */
    bool dead;                  /* set by the core when the connection must be dropped */
    bool lost_txns;             /* restored after a restart: its transactions are gone */
    struct xs_conn *next;       /* in xs->conns */
};

struct xs_domain {
    uint32_t domid;
    uint64_t gfn;
    uint32_t port;
    uint32_t target;            /* XS_NO_TARGET or the domain it may act for */
    bool shutdown;              /* @releaseDomain already sent for its shutdown */
    bool introduced;            /* false: known from an import only */
    bool quiesced;              /* a migration's stop: its ring is left alone (conn_ring.c) */
    struct xs_conn *conn;       /* always there: holds the domain's watches */
    void *ring;                 /* conn_ring.c's state while the ring is connected */
    /*
     * The connection's bytes outside the ring while no ring is attached (an import's,
     * or those of a ring detached while the domain lived on), until one is: carried_in
     * request bytes already taken from the ring, then carried_out output not yet put
     * in it (struct xs_conn_bytes).
     */
    uint8_t *carried;
    size_t carried_in, carried_out, carried_resp;
    struct xs_domain *next;
};

/*
 * What a ring connection holds outside the ring and the store (CONNECTION_DATA's
 * data): request bytes taken from the ring that do not yet make a whole request (in),
 * and output not yet in the ring (out), of which the first out_resp bytes end a
 * response whose start already went in. A migration carries them, so that a request
 * the source took from the ring is answered on the destination.
 */
struct xs_conn_bytes {
    const uint8_t *in;
    size_t inlen;
    const uint8_t *out;
    size_t outlen, out_resp;
};

/* Hooks to the outside world; any may be NULL (unit tests, the fuzzer). */
struct xs_ops {
    /* INTRODUCE: connect the ring; 0 or an errno. */
    int (*introduce)(struct xs *xs, struct xs_domain *d);
    /* RELEASE or a dead domain: disconnect the ring. */
    void (*release)(struct xs *xs, struct xs_domain *d);
    /* Persistence of what is not in the tree. */
    void (*domain_changed)(struct xs *xs, struct xs_domain *d, bool gone);
    void (*watch_changed)(struct xs *xs, struct xs_conn *c, const struct xs_watch *w,
                          bool added);
    void (*special_changed)(struct xs *xs, int which);
    /* CONTROL commands the daemon adds (export/import): reply payload or errno. */
    int (*control)(struct xs *xs, struct xs_conn *c, const char **v, int n,
                   char *out, size_t outsz, size_t *outlen);
    void *ctx;
};

#define XS_SPECIAL_INTRODUCE 0
#define XS_SPECIAL_RELEASE   1
struct xs {
    struct xs_tree *tree;
    uint64_t gen;
    struct xs_conn *conns;
    struct xs_domain *domains;
    struct xs_perm special_perms[2][8];
    uint32_t special_nperms[2];
    struct xs_quota quota;
    struct xs_ops ops;
    bool log_requests;
    void (*log)(const char *fmt, ...);
};

void xs_init(struct xs *xs);
void xs_fini(struct xs *xs);
struct xs_conn *xs_conn_new(struct xs *xs, uint32_t domid, bool is_domain);
void xs_conn_free(struct xs_conn *c);
/* Drop the connection's transactions (and watches if watches). */
void xs_conn_reset(struct xs_conn *c, bool watches);
/* Handle one complete request (body is hdr->len bytes). */
void xs_handle(struct xs_conn *c, const struct xsd_sockmsg *hdr, const uint8_t *body);
struct xs_domain *xs_domain_find(struct xs *xs, uint32_t domid);
struct xs_domain *xs_domain_add(struct xs *xs, uint32_t domid);
/* The domain is gone (RELEASE or destroyed): @releaseDomain, drop it. */
void xs_domain_gone(struct xs *xs, struct xs_domain *d, bool fire);
/* Fire @releaseDomain (domain shut down) / @introduceDomain. */
void xs_fire_special(struct xs *xs, int which, uint32_t domid);
/* Add a watch without the initial event (restore, import): 0 or errno. */
int xs_watch_add(struct xs_conn *c, const char *path, const char *token, int depth,
                 bool fire_now);
int xs_watch_del(struct xs_conn *c, const char *path, const char *token);
void xs_watch_free(struct xs_watch *w);
void xs_watch_initial(struct xs_conn *c, const char *path, const char *token);
void xs_watch_fire(struct xs *xs, const char *path, const struct xs_perm *perms,
                   uint32_t nperms, bool recurse);
/* Canonical absolute path for the connection: 0 or EINVAL. out has room for
 * XENSTORE_ABS_PATH_MAX + 1. */
int xs_canon(const struct xs_conn *c, const char *in, char *out, bool allow_special);
bool xs_conn_priv(const struct xs_conn *c);
uint32_t xs_conn_target(const struct xs_conn *c);

/* ---- migrate.c: designs/xenstore-migration ---- */
/* Export a domain's nodes (under /local/domain/DOMID), perms, watches and its ring's
 * bytes in flight (pending, or NULL for none). Returns a malloc'd stream and its size,
 * or NULL. */
uint8_t *xs_migrate_export(struct xs *xs, uint32_t domid, const struct xs_conn_bytes *pending,
                           size_t *len);
/* Keep a copy of cb in d (carried), for its next ring; what d kept before goes. */
void xs_domain_carry(struct xs_domain *d, const struct xs_conn_bytes *cb);
/* Is b a connection's output as a stream may carry it: out_resp bytes ending a
 * response, then whole responses? */
bool xs_conn_out_ok(const uint8_t *b, size_t len, size_t out_resp);
/*
 * Import such a stream for domain DOMID (the restored domain; the stream's CONNECTION
 * record only names the source's id for it). The stream is the guest's data: nodes of
 * the source's /local/domain/SRC are applied to /local/domain/DOMID as the guest's own
 * writes (permissions and quotas as for its requests; nodes it may not write, the
 * toolstack's, keep their value); of the toolstack's directories (its backends, /libxl,
 * /vm) only the backend state nodes blkback and netback publish are taken, for devices
 * that exist here; any other node refuses the import. The connection's bytes in flight
 * are kept in the domain (carried) for its ring. The whole stream is tried on a copy of the
 * tree first: a refused import changes nothing. 0, or an errno with a message in err.
 */
int xs_migrate_import_domain(struct xs *xs, const uint8_t *buf, size_t len, uint32_t domid,
                             char *err, size_t errlen);

/* Where a stream's node goes (xs_migrate_import_domain); out: the rewritten path. */
enum xs_import_class {
    XS_IMPORT_GUEST,            /* /local/domain/SRC/...: as the guest's own write */
    XS_IMPORT_BACKEND_STATE,    /* a vbd or vif backend's state or feature node */
    XS_IMPORT_TOOLSTACK,        /* the rest of its backends, /libxl, /vm: not taken */
    XS_IMPORT_FOREIGN,          /* anything else: refuses the import */
};
enum xs_import_class xs_import_classify(const char *path, uint32_t src, uint32_t dst,
                                        char *out, size_t outsz);
/*
 * Is val an acceptable value for the carried backend node path (a destination path
 * XS_IMPORT_BACKEND_STATE named): a decimal number, or the key's own word
 * (hotplug-status "connected")?
 */
bool xs_import_backend_value_ok(const char *path, const uint8_t *val, uint32_t vlen);

/* core.c: a write or SET_PERMS made for connection c on tree t, with all its checks. */
int xs_write_as(struct xs_conn *c, struct xs_tree *t, bool fire_watches, const char *path,
                const void *val, uint32_t vlen);
int xs_set_perms_as(struct xs_conn *c, struct xs_tree *t, bool fire_watches, const char *path,
                    const struct xs_perm *p, uint32_t np);

#endif
