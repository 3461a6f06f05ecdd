/*
 * altp2m views (docs/altp2m.md): a domain's alternate p2m views as Xen's HVMOP_altp2m
 * defines them, kept as differences from the host p2m: per view a default access, a
 * per-gfn access where it differs, and gfn->gfn remappings. I/O-free: this file keeps
 * the state, checks accesses and works out the memslot layout that realises a view;
 * p2m.c applies the layout to KVM, hc_altp2m.c is the hypercall family.
 *
 * What KVM memslots can enforce decides which accesses a view may hold: only
 * XENMEM_access_n (a hole: every access exits to xkvmd), _rx (a read-only slot: a
 * write exits) and _rwx (none); the others, which would need an execute restriction
 * or a write-only page, are refused (-EOPNOTSUPP).
 */
#ifndef XKVM_HV_ALTP2M_H
#define XKVM_HV_ALTP2M_H

#include <stdbool.h>
#include <stdint.h>

#define ALTP2M_MAX_VIEWS    10      /* Xen's MAX_ALTP2M */
/* Remappings per view (Xen has no count but runs out of p2m pages: -ENOMEM). */
#define ALTP2M_MAX_REMAPS   1024
/*
 * KVM memslots a realised view may take in all (KVM allows 32764 per VM): a view that
 * would need more is refused with -ENOMEM, as Xen refuses what it has no p2m pages for.
 */
#define ALTP2M_MAX_KSLOTS   4096
#define ALTP2M_NO_GFN       UINT64_MAX

/* xenmem_access_t values a view may hold (xen/memory.h). */
#define ALTP2M_ACCESS_N     0
#define ALTP2M_ACCESS_RX    5
#define ALTP2M_ACCESS_RWX   7
#define ALTP2M_ACCESS_DEFAULT 15    /* XENMEM_access_default */

struct altp2m_remap {
    uint64_t gfn, target;           /* the view maps gfn to the host frame at target */
};

struct altp2m_view {
    bool present;
    bool visible;                   /* set_visibility: may the guest switch to it */
    uint8_t default_access;         /* ALTP2M_ACCESS_* */
    uint64_t nr_overrides;          /* gfns whose byte in access[] is not 0 */
    uint8_t *access;                /* per gfn: 0 = default, else access + 1 */
    struct altp2m_remap *remaps;    /* sorted by gfn */
    unsigned nr_remaps;
};

struct altp2m {
    uint64_t nr_gfns;
    unsigned active;                /* the domain's view (switch_p2m is domain-wide) */
    struct altp2m_view views[ALTP2M_MAX_VIEWS];
};

/* One KVM memslot of a realised layout. */
struct altp2m_kslot {
    uint64_t gfn, nr;
    uint64_t hva_gfn;               /* window frame behind gfn (gfn itself unless remapped) */
    bool readonly;
    unsigned id;                    /* KVM slot id (p2m_altp2m.c's; 0 from altp2m_layout) */
};

/* Host memslots as the p2m keeps them. */
struct altp2m_hslot {
    uint64_t gfn, nr;
    bool readonly;
};

/* Empty state with view 0 (the host p2m, rwx) present and active. 0 or -ENOMEM. */
int altp2m_init(struct altp2m *a, uint64_t nr_gfns);
void altp2m_fini(struct altp2m *a);

/* Whether an access value may be held by a view: 0, -EINVAL (not an access), -EOPNOTSUPP. */
int altp2m_access_ok(unsigned access);

/* Create a view in the lowest free slot (view 0 is the host's). 0, -EINVAL, -ENOMEM. */
int altp2m_create(struct altp2m *a, unsigned default_access, unsigned *view);
/* Destroy a view: -EINVAL for view 0 or no view, -EBUSY for the active one. */
int altp2m_destroy(struct altp2m *a, unsigned view);
/* -EINVAL unless view exists. */
int altp2m_check_view(const struct altp2m *a, unsigned view);

/*
 * Set gfn's access in a view (ALTP2M_ACCESS_DEFAULT: the view's default). Returns the
 * previous byte (for an undo with altp2m_put_raw) in *prev. 0, -EINVAL, -EOPNOTSUPP.
 */
int altp2m_set_access(struct altp2m *a, unsigned view, uint64_t gfn, unsigned access,
                      uint8_t *prev);
void altp2m_put_raw(struct altp2m *a, unsigned view, uint64_t gfn, uint8_t raw);
/* gfn's access in a view. */
unsigned altp2m_access(const struct altp2m *a, unsigned view, uint64_t gfn);

/*
 * The view maps gfn to the frame at `target` (ALTP2M_NO_GFN: back to its own). The
 * caller checks that target is populated. *prev: what it was (for an undo).
 * 0, -EINVAL, -ENOMEM (ALTP2M_MAX_REMAPS).
 */
int altp2m_change_gfn(struct altp2m *a, unsigned view, uint64_t gfn, uint64_t target,
                      uint64_t *prev);
/* The host map changed at gfn: remappings from or to it go, in every view (as Xen
 * resets what a host change invalidates). Whether any went. */
bool altp2m_forget_gfn(struct altp2m *a, uint64_t gfn);
/* The gfn whose host frame the view shows at gfn (gfn itself unless remapped). */
uint64_t altp2m_target(const struct altp2m *a, unsigned view, uint64_t gfn);

/* Whether the active view restricts or remaps anything (else the host layout holds). */
bool altp2m_view_is_identity(const struct altp2m *a, unsigned view);

/* Whether the active view lets the guest read (write) gfn. */
bool altp2m_allows(const struct altp2m *a, uint64_t gfn, bool write);

/*
 * The KVM memslots realising `view` over the host slots hs[0..nh): rwx runs keep the
 * host's slot (read-only where the host's is), rx runs become read-only slots, n gfns
 * holes, a remapped gfn a slot of its own backed by its target's frame. At most `max`
 * slots into out; returns how many, or -ENOMEM if more would be needed.
 */
int altp2m_layout(const struct altp2m *a, unsigned view, const struct altp2m_hslot *hs,
                  unsigned nh, struct altp2m_kslot *out, unsigned max);

#endif
