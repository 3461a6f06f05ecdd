/*
 * xenstored's import of a migration stream (designs/xenstore-migration) for domain 7,
 * into a store holding the toolstack's layout of 7 (its own subtree, a control
 * directory the guest may only read, one vbd and one vif backend) and another domain, 6.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xs.h"

static struct xs_node *add(struct xs *xs, const char *path, uint32_t owner, uint32_t reader)
{
    char parent[128];
    snprintf(parent, sizeof(parent), "%s", path);
    *strrchr(parent, '/') = '\0';
    struct xs_node *pn = xs_tree_get(xs->tree, parent[0] ? parent : "/");
    struct xs_perm p[2] = { { owner, XS_PERM_NONE }, { reader, XS_PERM_READ } };
    return xs_tree_add(xs->tree, pn, path, "1", 1, p, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct { const char *path; uint32_t owner, reader; } layout[] = {
        { "/local", 0, 0 }, { "/local/domain", 0, 0 }, { "/local/domain/7", 0, 7 },
        { "/local/domain/7/control", 0, 7 }, { "/local/domain/7/data", 7, 0 },
        { "/local/domain/6", 0, 6 }, { "/local/domain/0", 0, 0 },
        { "/local/domain/0/backend", 0, 0 }, { "/local/domain/0/backend/vbd", 0, 0 },
        { "/local/domain/0/backend/vbd/7", 0, 7 },
        { "/local/domain/0/backend/vbd/7/768", 0, 7 },
        { "/local/domain/0/backend/vif", 0, 0 }, { "/local/domain/0/backend/vif/7", 0, 7 },
        { "/local/domain/0/backend/vif/7/0", 0, 7 },
    };
    struct xs xs;
    xs_init(&xs);
    for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++)
        add(&xs, layout[i].path, layout[i].owner, layout[i].reader);
    char err[256];
    if (xs_migrate_import_domain(&xs, data, size, 7, err, sizeof(err)) == 0) {
        /* The bytes in flight it kept are what a ring may go on with. */
        struct xs_domain *d = xs_domain_find(&xs, 7);
        if (!d)
            __builtin_trap();
        const uint8_t *out = d->carried ? d->carried + d->carried_in : NULL;
        if (!xs_conn_out_ok(out, d->carried_out, d->carried_resp))
            __builtin_trap();
        struct xs_conn_bytes b = { d->carried, d->carried_in, out, d->carried_out,
                                   d->carried_resp };
        size_t len;
        free(xs_migrate_export(&xs, 7, &b, &len));
    }
    xs_fini(&xs);
    return 0;
}
