/* xenstored's import of a migration stream (designs/xenstore-migration). */
#include <stdlib.h>
#include "xs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xs xs;
    xs_init(&xs);
    struct xs_perm p = { 0, 0 };
    struct xs_node *l = xs_tree_add(xs.tree, xs.tree->root, "/local", NULL, 0, &p, 1);
    xs_tree_add(xs.tree, l, "/local/domain", NULL, 0, &p, 1);
    if (xs_migrate_import(&xs, data, size) == 0) {
        for (struct xs_domain *d = xs.domains; d; d = d->next) {
            size_t len;
            free(xs_migrate_export(&xs, d->domid, &len));
        }
    }
    xs_fini(&xs);
    return 0;
}
