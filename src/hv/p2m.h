/*
 * A domain's physical-to-machine map. Guest physical memory is one reserved range of
 * xkvmd's address space (the window); each populated gfn is an mmap of the machine
 * memory fd at its mfn, so changing the p2m is an mmap and KVM follows through its MMU
 * notifier. KVM memslots cover populated ranges only, so an access to an unpopulated
 * gfn reaches xkvmd as MMIO instead of failing the vCPU.
 *
 * Every change is a transaction (docs/security.md): what it needs (a memslot, room in
 * the window's mapping budget, a name on the frame) is reserved first, and a failure
 * at any step undoes the steps before it, so the map, the window and the memslots
 * always agree. Each populated gfn names its frame in machine memory (mm_map_get), so
 * a frame is never given back while a gfn still maps it. Readers that copy through the
 * window (hypercall arguments) hold the lock shared for the length of the copy.
 */
#ifndef XKVM_HV_P2M_H
#define XKVM_HV_P2M_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/altp2m.h"
#include "hv/gphys.h"
#include "hv/machine_mem.h"

#define P2M_MAX_SLOTS 512
/*
 * Places where the window's mapping is not one run of consecutive frames (a hole next
 * to RAM, a moved frame): each costs xkvmd a mapping (a VMA) of its own, a per-process
 * resource (vm.max_map_count) that all domains share. A run of holes inside a memslot
 * is one mapping whatever its length, so a balloon costs two breaks per run of pages
 * given back, not per page. A guest's own layout uses a few hundred at most; changes
 * that would pass this are refused with -ENOMEM.
 */
#define P2M_MAX_BREAKS 2048

struct p2m_slot {
    uint64_t gfn, nr;       /* nr == 0: slot id free */
    bool readonly;          /* KVM_MEM_READONLY: a read-only grant mapping's own slot */
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
    unsigned nr_slots;          /* slots in use */
    uint64_t nr_breaks;         /* see P2M_MAX_BREAKS */
    /* Held exclusive by changes to the map and memslots, shared by window copies. */
    pthread_rwlock_t lock;
    /* Bumped by every change to the map (under the lock held exclusive): what a live
     * update prepared before the pause is still right while this has not moved. */
    uint64_t gen;

    /*
     * Log-dirty (migration): KVM logs the guest's own writes per memslot; writes xkvmd
     * and dom0 services make through their own mappings are marked in sw_dirty
     * (a bit per gfn), which lives as long as the p2m once allocated.
     */
    bool log_dirty;
    uint64_t *sw_dirty;

    /*
     * Foreign entries: gfns where another domain's frame is mapped by a grant
     * (GNTTABOP_map_grant_ref, p2m_map_foreign). The frame is not named by this map
     * (it is not this domain's) but referenced by the grant mapping (mm_frame_get);
     * hypercall copies never go through it (p2m_ptr answers NULL, as Xen's
     * __hvm_copy refuses grant p2m types) and other changes refuse it (-EBUSY).
     * A bit per gfn, allocated at the first one.
     */
    uint64_t *foreign;
    uint64_t nr_foreign;

    /*
     * altp2m (p2m_altp2m.c, docs/altp2m.md): the domain's views, NULL while altp2m is
     * off. While the active view restricts or remaps anything, KVM holds the view's
     * layout (kslots, KVM slot ids P2M_MAX_SLOTS + i) instead of slots[], which stay
     * the host's layout; every change of slots[] then realises the view again.
     * Changed only with the lock held exclusive.
     */
    struct altp2m *alt;
    bool alt_realised;
    struct altp2m_kslot *kslots;
    unsigned nr_kslots;
};

int p2m_init(struct p2m *p, int vm_fd, uint16_t domid, struct machine_mem *mm,
             uint64_t nr_gfns);
void p2m_fini(struct p2m *p);

/* Allocate RAM frames for [gfn, gfn + nr) and map them (one memslot). 0 or -errno. */
int p2m_populate_ram(struct p2m *p, uint64_t gfn, uint64_t nr);

/*
 * Put frame `mfn` at `gfn` (XENMEM_add_to_physmap and friends), or remove what is
 * there when mfn is INVALID_MFN. Returns the frame that was there (INVALID_MFN if
 * none) in *old; the p2m no longer names it, the caller decides what becomes of it.
 * 0, or -errno with nothing changed: -EINVAL (gfn outside the window, mfn not the
 * domain's), -ENOMEM (no memslot or mapping budget left), -EBUSY.
 */
int p2m_set_frame(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t *old);
/*
 * Move the frame at `from` to `to` (XENMAPSPACE_gmfn): `from` becomes a hole. With
 * `expect` other than INVALID_MFN, only if `from` holds that frame. Returns the frame
 * `to` held before in *old, as p2m_set_frame. 0, or -errno with nothing changed
 * (-EINVAL if `from` is a hole, -ESRCH if it holds another frame than `expect`).
 */
int p2m_move_frame(struct p2m *p, uint64_t from, uint64_t to, uint64_t expect,
                   uint64_t *old);

/*
 * Grant mappings (Xen's create_grant_p2m_mapping / replace_grant_p2m_mapping): put
 * another domain's frame `mfn` (the caller holds a reference on it) at gfn, read-only
 * or writable, replacing what was there. Refused (-EPERM) over anything but a hole or
 * one of the domain's RAM frames (shared_info, grant frames, toolstack pages), -EBUSY
 * over another foreign entry; the RAM frame it displaces is returned in *old, no longer
 * named (as Xen, it stays the domain's). Read-only: a gfn outside every memslot gets a
 * single-gfn KVM_MEM_READONLY slot; inside a RAM slot (which is never split) the
 * window's page is mapped PROT_READ, so a guest write faults in KVM and crashes the
 * writer (Xen injects #GP). 0, or -errno with nothing changed.
 */
int p2m_map_foreign(struct p2m *p, uint64_t gfn, uint64_t mfn, bool readonly,
                    uint64_t *old);
/* Make foreign entry gfn (which must map mfn) a hole again. 0, -EINVAL or -errno. */
int p2m_unmap_foreign(struct p2m *p, uint64_t gfn, uint64_t mfn);
/* Whether gfn is a foreign entry now (a snapshot). */
bool p2m_is_foreign(const struct p2m *p, uint64_t gfn);

/*
 * Check that the map, the window and machine memory agree: every populated gfn names
 * a frame that is allocated and named at least once; the slot and break counts are
 * right. 0, or -EUCLEAN with a description in `why`.
 */
int p2m_audit(struct p2m *p, char *why, size_t whylen);

static inline uint64_t p2m_lookup(const struct p2m *p, uint64_t gfn)
{
    return gfn < p->nr_gfns ? p->gfn_to_mfn1[gfn] - 1 : INVALID_MFN;
}

/*
 * Live update: map frames the image says are already the domain's at [gfn, gfn + nr)
 * (claimed by the caller with mm_claim_named, so already named once; the runs it adopts
 * must not overlap, which the caller checks), without memslots; then one memslot over
 * each RAM range of the memory map (p2m_cover_ram: its holes stay holes inside the
 * slot, as before the update); then one memslot per cluster of populated gfns that no
 * slot covers yet (p2m_build_memslots, last: it counts the mapping breaks). Both take
 * the runs adopted, in gfn order (-EINVAL if they are not ascending, disjoint and
 * adopted), and neither walks the whole table. 0 or -errno.
 */
struct p2m_run {
    uint64_t gfn, nr;
};
int p2m_adopt(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr);
int p2m_cover_ram(struct p2m *p, uint64_t gfn, uint64_t nr, const struct p2m_run *runs,
                  size_t n);
int p2m_build_memslots(struct p2m *p, const struct p2m_run *runs, size_t n);

/*
 * Host pointer to [gpa, gpa + len) if every page of it is populated, else NULL. Valid
 * only while nothing changes the map: at build time, or between p2m_hold and
 * p2m_release.
 */
void *p2m_ptr(const struct p2m *p, uint64_t gpa, uint64_t len);
/*
 * The same for an access the guest itself made (an MMIO exit on RAM): grant mappings
 * included, but a write to a read-only one is refused (NULL).
 */
void *p2m_ptr_guest(const struct p2m *p, uint64_t gpa, uint64_t len, bool write);
void p2m_hold(struct p2m *p);
void p2m_release(struct p2m *p);

/* KVM memslot `slot` as [gfn, gfn + nr) backed by the window at hva_gfn; nr 0 deletes. */
int p2m_kvm_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr,
                    uint64_t hva_gfn, bool readonly);
/* (Re)define host memslot `slot` as [gfn, gfn + nr); nr 0 deletes it. Lock held. */
int p2m_set_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr);

/* ---- altp2m (src/hv/p2m_altp2m.c) ---- */
/*
 * Put the active view of p->alt into KVM (or the host's layout back where it restricts
 * nothing). Lock held exclusive. 0, or -ENOMEM (more than ALTP2M_MAX_KSLOTS memslots;
 * what KVM held before is left), -errno.
 */
int p2m_altp2m_realise(struct p2m *p);
/* The host map changed at gfn (lock held): remaps through it go, the view follows. */
void p2m_altp2m_host_changed(struct p2m *p, uint64_t gfn);
/*
 * A restored domain's views (not running yet): a's remappings are checked against this
 * p2m (the domain's own RAM at both ends), then a becomes p->alt and is realised.
 * 0, or -EINVAL/-ENOMEM/-errno with p unchanged (a stays the caller's).
 */
int p2m_altp2m_install(struct p2m *p, struct altp2m *a);
/* Back to the host layout and no views (altp2m off). Lock held exclusive. */
void p2m_altp2m_off(struct p2m *p);
/*
 * A guest access that exited as MMIO, through the active view: the host pointer the
 * view backs [gpa, gpa + len) with (a remapped gfn's target frame), NULL if not RAM.
 * *violation: the view forbids it. Lock held shared.
 */
void *p2m_ptr_view(const struct p2m *p, uint64_t gpa, uint64_t len, bool write,
                   bool *violation);
/* The same, the view's restrictions aside (an access the monitor lets through once). */
void *p2m_ptr_view_once(const struct p2m *p, uint64_t gpa, uint64_t len, bool write);

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
