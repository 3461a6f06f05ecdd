/* Xen's C xenstored quota defaults (xenstored_core.c, 4.17) and node size accounting. */
#include "xs.h"

void xs_quota_defaults(struct xs_quota *q)
{
    q->nodes = 1000;        /* quota_nb_entry_per_domain -> ENOSPC */
    q->entry_size = 2048;   /* quota_max_entry_size -> ENOSPC */
    q->watches = 128;       /* quota_nb_watch_per_domain -> E2BIG */
    q->transactions = 10;   /* quota_max_transaction -> ENOSPC */
    q->perms = 5;           /* quota_nb_perms_per_node -> ENOSPC */
    q->trans_nodes = 1024;  /* quota_trans_nodes -> ENOSPC */
    /* What a guest's open transactions may hold: as much as it may own in the tree. */
    q->trans_memory = q->nodes * q->entry_size;
    q->outstanding = 1u << 20;
}

uint32_t xs_node_size(uint32_t nperms, uint32_t vlen, uint32_t childlen)
{
    /* struct xs_tdb_record_hdr (generation, num_perms, datalen, childlen) + perms of
     * 8 bytes each + data + children names, as Xen's write_node_raw counts. */
    return 20 + 8 * nperms + vlen + childlen;
}
