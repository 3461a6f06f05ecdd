/* Changing what a guest sees at a gfn on its behalf (XENMEM_add_to_physmap & co). */
#ifndef XKVM_HV_PHYSMAP_H
#define XKVM_HV_PHYSMAP_H

#include <stdint.h>

struct domain;

/*
 * Put frame `mfn` at `gfn`. A RAM frame of the domain that was there is given back to
 * the allocator (the guest traded it away, as on Xen); `prev_gfn`, if it is not
 * INVALID_GFN and differs from gfn, is where the same frame was mapped before: that
 * gfn becomes a hole, in the same step. 0, or -errno (Xen's code for the guest) with
 * nothing changed.
 */
#define INVALID_GFN UINT64_MAX
int physmap_place(struct domain *d, uint64_t gfn, uint64_t mfn, uint64_t prev_gfn);
/* Move whatever frame is at `from` to `to` (XENMAPSPACE_gmfn), as physmap_place. */
int physmap_move(struct domain *d, uint64_t from, uint64_t to);

#endif
