/*
 * xenstored's wire parser and request handler: the input is a byte stream of requests
 * (as a guest's ring or a socket delivers it) handled against a fresh in-memory tree,
 * alternately as dom0, guest 5 and guest 6 (the first byte picks who starts). Every
 * reply must be well formed and within XENSTORE_PAYLOAD_MAX; afterwards the tree must
 * be consistent (children lists, owned counts: transactions commit whole or not at all)
 * and the transactions' memory accounting back to zero once they are dropped.
 */
#include <stdlib.h>
#include <string.h>
#include "xs.h"

static size_t replies;

static void check_send(struct xs_conn *c, const struct xsd_sockmsg *h, const void *body)
{
    if (h->len > XENSTORE_PAYLOAD_MAX)
        abort();
    if (h->len)
        (void)((volatile const uint8_t *)body)[h->len - 1];
    replies++;
}

struct recount { size_t nodes; uint32_t owned[7]; };

static void check_node(void *ctx, const struct xs_node *n)
{
    struct recount *r = ctx;
    uint32_t childlen = 0;
    for (uint32_t i = 0; i < n->nkids; i++) {
        if (n->kids[i]->parent != n)
            abort();
        childlen += (uint32_t)strlen(n->kids[i]->name) + 1;
    }
    if (childlen != n->childlen)
        abort();
    r->nodes++;
    if (n->nperms && n->perms[0].domid < 7)
        r->owned[n->perms[0].domid]++;
}

static void check_tree(struct xs *xs)
{
    struct recount r = { 0 };
    xs_tree_walk(xs->tree->root, check_node, &r);
    if (r.nodes != xs->tree->count)
        abort();
    for (uint32_t d = 0; d < 7; d++)
        if (r.owned[d] != xs->tree->owned[d])
            abort();
    for (struct xs_conn *c = xs->conns; c; c = c->next) {
        xs_conn_reset(c, false);
        if (c->txn_bytes)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xs xs;
    if (size < 1)
        return 0;
    xs_init(&xs);
    struct xs_conn *d0 = xs_conn_new(&xs, 0, false);
    d0->send = check_send;
    struct xs_domain *g5 = xs_domain_add(&xs, 5), *g6 = xs_domain_add(&xs, 6);
    g5->introduced = g6->introduced = true;
    g5->conn->send = g6->conn->send = check_send;
    unsigned turn = data[0];
    size_t off = 1;
    for (;;) {
        struct xsd_sockmsg h;
        const uint8_t *body;
        size_t used;
        int r = xs_wire_parse(data + off, size - off, &h, &body, &used);
        if (r != 1)
            break;
        /* RELEASE of a fuzzed guest frees its connection: use ones that still exist. */
        struct xs_domain *d = xs_domain_find(&xs, 5 + (turn % 3 == 2));
        struct xs_conn *c = turn % 3 == 0 ? d0 : d ? d->conn : d0;
        c->send = check_send;
        xs_handle(c, &h, body);
        off += used;
        turn++;
    }
    check_tree(&xs);
    xs_fini(&xs);
    return 0;
}
