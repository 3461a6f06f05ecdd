/*
 * A domain's physical-to-machine map. Guest physical memory is one reserved range of
 * xkvmd's address space (the window); each populated gfn is an mmap of the machine
 * memory fd at its mfn, so changing the p2m is an mmap and KVM follows through its MMU
 * notifier. KVM memslots cover populated ranges only, so an access to an unpopulated
 * gfn reaches xkvmd as MMIO instead of failing the vCPU.
 */
#ifndef XKVM_HV_P2M_H
#define XKVM_HV_P2M_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/gphys.h"
#include "hv/machine_mem.h"

#define P2M_MAX_SLOTS 512

struct p2m_slot {
    uint64_t gfn, nr;       /* nr == 0: slot id free */
};

struct p2m {
    int vm_fd;
    uint16_t domid;
    struct machine_mem *mm;
    uint8_t *window;            /* host address of gpa 0 */
    uint64_t nr_gfns;           /* size of the window in frames */
    /* mfn + 1 per gfn, 0 where unpopulated: a fresh zeroed table is all holes. */
    uint64_t *gfn_to_mfn1;
    struct p2m_slot slots[P2M_MAX_SLOTS];   /* indexed by KVM slot id */
    pthread_mutex_t lock;       /* changes to the map and memslots */

    /*
     * Log-dirty (migration): KVM logs the guest's own writes per memslot; writes xkvmd
     * and dom0 services make through their own mappings are marked in sw_dirty
     * (a bit per gfn), which lives as long as the p2m once allocated.
     */
    bool log_dirty;
    uint64_t *sw_dirty;
};

int p2m_init(struct p2m *p, int vm_fd, uint16_t domid, struct machine_mem *mm,
             uint64_t nr_gfns);
void p2m_fini(struct p2m *p);

/* Allocate RAM frames for [gfn, gfn + nr) and map them (one memslot). 0 or -errno. */
int p2m_populate_ram(struct p2m *p, uint64_t gfn, uint64_t nr);

/*
 * Put frame `mfn` at `gfn` (XENMEM_add_to_physmap and friends), or remove what is
 * there when mfn is INVALID_MFN. Returns the frame that was there (INVALID_MFN if
 * none) in *old; the caller decides what becomes of it. 0 or -errno.
 */
int p2m_set_frame(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t *old);

static inline uint64_t p2m_lookup(const struct p2m *p, uint64_t gfn)
{
    return gfn < p->nr_gfns ? p->gfn_to_mfn1[gfn] - 1 : INVALID_MFN;
}

/*
 * Live update: map frames the image says are already the domain's at [gfn, gfn + nr)
 * (claimed in machine memory by the caller), without memslots; then one memslot per
 * run of populated gfns. 0 or -errno.
 */
int p2m_adopt(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr);
int p2m_build_memslots(struct p2m *p);

/* Host pointer to [gpa, gpa + len) if every page of it is populated, else NULL. */
void *p2m_ptr(const struct p2m *p, uint64_t gpa, uint64_t len);

/* (Re)define KVM memslot `slot` as [gfn, gfn + nr); nr 0 deletes it. p->lock held. */
int p2m_set_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr);

/* ---- Log-dirty (src/hv/p2m_logdirty.c) ---- */
/* Start or stop logging writes to every memslot (manual clear: KVM_CLEAR_DIRTY_LOG). */
int p2m_log_dirty_enable(struct p2m *p);
void p2m_log_dirty_disable(struct p2m *p);
/* Writes made outside the guest's own vCPUs (xkvmd, dom0 services) while logging. */
void p2m_mark_dirty(struct p2m *p, uint64_t gfn, uint64_t nr);
/*
 * OR the gfns written since the last call into `bitmap` (a bit per gfn, nr_gfns bits)
 * and re-arm logging for them, in chunks. Returns how many bits it set, or -errno.
 */
int64_t p2m_collect_dirty(struct p2m *p, uint64_t *bitmap);

/* A gphys accessor over this p2m, for the loader and hypercall copies. */
struct gphys p2m_gphys(struct p2m *p);

#endif
