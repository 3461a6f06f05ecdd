/*
 * Changing what a guest sees at a gfn on its behalf (physmap.h): the p2m change, and
 * what becomes of the frame it displaced. XENMEM_add_to_physmap (hc_memory.c), the
 * domain builder and restore come here.
 */
#include "hv/physmap.h"

#include <errno.h>

#include "hv/domain.h"
#include "hv/hv.h"

/*
 * A page of the domain (RAM, or a toolstack page) that a gfn no longer maps goes back,
 * as on Xen; Xen's own frames (shared_info, grant frames) stay, the domain holds them
 * elsewhere. A restore that drops a page it was sent (XTAB) frees it the same way, so a
 * stream cannot pile up frames by dropping and re-adding pages.
 */
static void release_displaced(struct domain *d, uint64_t old, uint64_t placed)
{
    struct machine_mem *mm = host_mm();
    if (old == INVALID_MFN || old == placed || old >= mm->nr_frames)
        return;
    uint8_t type = mm->frames[old].type;
    if (mm->frames[old].owner == d->domid && (type == FRAME_RAM || type == FRAME_SPECIAL))
        mm_free_run(mm, old, 1);    /* kept, as an orphan, while anything names it */
}

int physmap_place(struct domain *d, uint64_t gfn, uint64_t mfn, uint64_t prev_gfn)
{
    uint64_t old;
    int rc = -ESRCH;
    if (prev_gfn != INVALID_GFN && prev_gfn != gfn)
        rc = p2m_move_frame(&d->p2m, prev_gfn, gfn, mfn, &old);
    if (rc == -ESRCH)       /* not where it was last put: the guest moved it since */
        rc = p2m_set_frame(&d->p2m, gfn, mfn, &old);
    if (!rc)
        release_displaced(d, old, mfn);
    return rc;
}

int physmap_move(struct domain *d, uint64_t from, uint64_t to)
{
    uint64_t old;
    int rc = p2m_move_frame(&d->p2m, from, to, INVALID_MFN, &old);
    if (!rc)
        release_displaced(d, old, p2m_lookup(&d->p2m, to));
    return rc;
}
