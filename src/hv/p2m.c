/*
 * A domain's physical-to-machine map: src/hv/p2m.h says what it is, docs/security.md
 * why every change is a transaction. A change runs in three steps:
 *   plan    - with the lock held exclusive, check what the change needs (memslots,
 *             the window's mapping budget, a name on the new frame) before touching
 *             anything, and refuse it whole if anything is missing;
 *   apply   - window first (a new frame is named and mapped before any memslot shows
 *             it), memslots next, the table last;
 *   undo    - a failing step puts back what the steps before it did.
 *
 * A memslot is never split or shrunk: KVM cannot resize one in place, and deleting and
 * re-adding it would take the guest's RAM away from its other vCPUs for that moment.
 * A gfn that becomes a hole inside a slot maps anonymous read-only memory instead (the
 * kernel's zero page: no frame, nothing of any other domain), and neighbouring holes
 * share one such mapping, so a run of holes costs the mapping budget what one hole
 * does (docs/hypervisor.md, "Holes inside RAM"). Only single-gfn slots (frames placed
 * outside RAM) are ever deleted, and no vCPU but the one that asked can be using them.
 */
#include "hv/p2m.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int p2m_init(struct p2m *p, int vm_fd, uint16_t domid, struct machine_mem *mm,
             uint64_t nr_gfns)
{
    memset(p, 0, sizeof(*p));
    p->vm_fd = vm_fd;
    p->domid = domid;
    p->mm = mm;
    p->nr_gfns = nr_gfns;
    p->gfn_to_mfn1 = calloc(nr_gfns, sizeof(uint64_t));
    if (!p->gfn_to_mfn1)
        return -ENOMEM;
    /* Reserve the window; nothing is accessible until populated. */
    void *w = mmap(NULL, nr_gfns << XKVM_PAGE_SHIFT, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (w == MAP_FAILED) {
        free(p->gfn_to_mfn1);
        p->gfn_to_mfn1 = NULL;
        return -errno;
    }
    p->window = w;
    /* Writers first: a stream of hypercall copies must not starve a physmap change. */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&p->lock, &a);
    pthread_rwlockattr_destroy(&a);
    return 0;
}

/* Foreign entries (grant mappings): a bit per gfn, and beside it whether read-only. */
static inline bool test_bit64(const uint64_t *bm, uint64_t bit)
{
    return bm && (bm[bit / 64] >> (bit % 64)) & 1;
}

static inline void put_bit64(uint64_t *bm, uint64_t bit, bool on)
{
    if (on)
        bm[bit / 64] |= 1ull << (bit % 64);
    else
        bm[bit / 64] &= ~(1ull << (bit % 64));
}

static inline uint64_t *foreign_ro(const struct p2m *p)
{
    return p->foreign ? p->foreign + (p->nr_gfns + 63) / 64 : NULL;
}

bool p2m_is_foreign(const struct p2m *p, uint64_t gfn)
{
    return gfn < p->nr_gfns && test_bit64(p->foreign, gfn);
}

/* Drop the names the map holds on its frames, run by run (foreign entries hold none). */
static void put_all_frames(struct p2m *p)
{
    for (uint64_t g = 0; g < p->nr_gfns;) {
        uint64_t mfn = p2m_lookup(p, g);
        if (mfn == INVALID_MFN || p2m_is_foreign(p, g)) {
            g++;
            continue;
        }
        uint64_t n = 1;
        while (g + n < p->nr_gfns && p2m_lookup(p, g + n) == mfn + n &&
               !p2m_is_foreign(p, g + n))
            n++;
        mm_map_put(p->mm, mfn, n);
        g += n;
    }
}

void p2m_fini(struct p2m *p)
{
    if (p->gfn_to_mfn1)
        put_all_frames(p);
    if (p->window)
        munmap(p->window, p->nr_gfns << XKVM_PAGE_SHIFT);
    free(p->gfn_to_mfn1);
    free(p->sw_dirty);
    p->sw_dirty = NULL;
    free(p->foreign);
    p->foreign = NULL;
    if (p->alt) {
        altp2m_fini(p->alt);
        free(p->alt);
        p->alt = NULL;
    }
    free(p->kslots);
    p->kslots = NULL;
    p->nr_foreign = 0;
    p->window = NULL;
    p->gfn_to_mfn1 = NULL;
}

void p2m_hold(struct p2m *p)
{
    pthread_rwlock_rdlock(&p->lock);
}

void p2m_release(struct p2m *p)
{
    pthread_rwlock_unlock(&p->lock);
}

/* The lock held exclusive, for a change to the map. */
static void change_lock(struct p2m *p)
{
    pthread_rwlock_wrlock(&p->lock);
    p->gen++;
}

/* ---- the window ---- */

/* Map frames [mfn, mfn + nr) at gfn in the window with `prot` (no names, no table). */
static int window_map_prot(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr, int prot)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, nr << XKVM_PAGE_SHIFT, prot,
                   MAP_SHARED | MAP_FIXED, p->mm->fd, (off_t)(mfn << XKVM_PAGE_SHIFT));
    return m == MAP_FAILED ? -errno : 0;
}

static int window_map(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    return window_map_prot(p, gfn, mfn, nr, PROT_READ | PROT_WRITE);
}

/* A hole again: reserved address space, nothing behind it. */
static int window_hole(struct p2m *p, uint64_t gfn)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, XKVM_PAGE_SIZE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return m == MAP_FAILED ? -errno : 0;
}

/*
 * Holes [gfn, gfn + nr) inside a memslot: anonymous, private, read-only. The guest reads
 * zeros (the kernel's zero page backs every such page: no memory, nothing of any
 * domain); a write can reach nothing (KVM emulates it as MMIO, which drops it, or fails
 * the vCPU's run, which crashes the writer). Neighbouring hole mappings have the same
 * flags, so the kernel merges them into one mapping: a run of holes is one VMA.
 */
static int window_hole_ro(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, nr << XKVM_PAGE_SHIFT, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return m == MAP_FAILED ? -errno : 0;
}

/* Name, map and enter frames [mfn, mfn + nr) at gfn, whose entries are holes. */
static int map_frames(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    int rc = mm_map_get(p->mm, mfn, nr, p->domid);
    if (rc)
        return rc;
    if ((rc = window_map(p, gfn, mfn, nr))) {
        mm_map_put(p->mm, mfn, nr);
        return rc;
    }
    for (uint64_t i = 0; i < nr; i++)
        p->gfn_to_mfn1[gfn + i] = mfn + i + 1;
    return 0;
}

/* ---- memslots ---- */

int p2m_kvm_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr,
                    uint64_t hva_gfn, bool readonly)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        /* KVM refuses dirty logging on a read-only slot; nothing writes it anyway. */
        .flags = readonly && nr ? KVM_MEM_READONLY :
                 p->log_dirty && nr ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = gfn << XKVM_PAGE_SHIFT,
        .memory_size = nr << XKVM_PAGE_SHIFT,
        .userspace_addr = (uint64_t)(uintptr_t)(p->window + (hva_gfn << XKVM_PAGE_SHIFT)),
    };
    return ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int p2m_set_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr)
{
    bool ro = nr && p->slots[slot].readonly;
    if (p->alt_realised) {
        /* KVM holds a view's layout: change the host's, then realise the view again. */
        struct p2m_slot was = p->slots[slot];
        p->slots[slot] = (struct p2m_slot){ .gfn = gfn, .nr = nr, .readonly = ro };
        int rc = p2m_altp2m_realise(p);
        p->slots[slot] = was;
        if (rc)
            return rc;
    } else {
        int rc = p2m_kvm_memslot(p, slot, gfn, nr, gfn, ro);
        if (rc)
            return rc;
    }
    if (!p->slots[slot].nr && nr)
        p->nr_slots++;
    else if (p->slots[slot].nr && !nr)
        p->nr_slots--;
    p->slots[slot] = (struct p2m_slot){ .gfn = gfn, .nr = nr, .readonly = ro };
    return 0;
}

static int add_memslot_flags(struct p2m *p, uint64_t gfn, uint64_t nr, bool readonly)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr == 0) {
            p->slots[i].readonly = readonly;
            int rc = p2m_set_memslot(p, i, gfn, nr);
            if (rc)
                p->slots[i].readonly = false;
            return rc;
        }
    return -ENOMEM;
}

static int add_memslot(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    return add_memslot_flags(p, gfn, nr, false);
}

static int slot_of(const struct p2m *p, uint64_t gfn)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr && gfn >= p->slots[i].gfn && gfn < p->slots[i].gfn + p->slots[i].nr)
            return (int)i;
    return -1;
}

/* Memslots that making populated gfn a hole frees: its own single-gfn slot, or none. */
static int hole_slot_cost(const struct p2m *p, uint64_t gfn)
{
    int s = slot_of(p, gfn);
    return s >= 0 && p->slots[s].nr == 1 ? -1 : 0;
}

/* ---- the mapping budget ---- */

/*
 * What backs gfn in the window, as a key where consecutive gfns with consecutive keys
 * share one mapping: the frame (mfn + 1), 0 for a hole outside every memslot (the
 * reserved range), or UINT64_MAX for a hole inside one (read-only anonymous memory,
 * which neighbouring holes inside slots share: window_hole_ro).
 */
static uint64_t backing_key(const struct p2m *p, uint64_t gfn, uint64_t e)
{
    if (e)
        return e;
    return slot_of(p, gfn) >= 0 ? UINT64_MAX : 0;
}

static bool is_break(uint64_t k_a, uint64_t k_b)
{
    if (k_a == UINT64_MAX || k_b == UINT64_MAX)
        return k_a != k_b;
    if (!k_a || !k_b)
        return k_a != k_b;
    return k_b != k_a + 1;
}

/* The memslots in gfn order, to answer "in a slot?" for increasing gfns cheaply. */
struct slot_sweep {
    struct p2m_slot s[P2M_MAX_SLOTS];
    unsigned n, at;
};

static void sweep_init(const struct p2m *p, struct slot_sweep *w)
{
    w->n = w->at = 0;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++) {
        if (!p->slots[i].nr)
            continue;
        unsigned j = w->n++;
        for (; j > 0 && w->s[j - 1].gfn > p->slots[i].gfn; j--)
            w->s[j] = w->s[j - 1];
        w->s[j] = p->slots[i];
    }
}

/* gfn must not decrease from one call to the next. */
static bool sweep_in_slot(struct slot_sweep *w, uint64_t gfn)
{
    while (w->at < w->n && w->s[w->at].gfn + w->s[w->at].nr <= gfn)
        w->at++;
    return w->at < w->n && gfn >= w->s[w->at].gfn;
}

static uint64_t count_breaks(const struct p2m *p)
{
    static __thread struct slot_sweep w;
    sweep_init(p, &w);
    uint64_t n = 0, prev = 0;
    for (uint64_t g = 0; g < p->nr_gfns; g++) {
        uint64_t e = p->gfn_to_mfn1[g];
        uint64_t k = e ? e : sweep_in_slot(&w, g) ? UINT64_MAX : 0;
        if (g > 0)
            n += is_break(prev, k);
        prev = k;
    }
    return n;
}

/* Breaks at the boundaries b[0..n) (boundary b lies between gfns b and b + 1). */
static uint64_t breaks_at(const struct p2m *p, const uint64_t *b, unsigned n)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += is_break(backing_key(p, b[i], p->gfn_to_mfn1[b[i]]),
                        backing_key(p, b[i] + 1, p->gfn_to_mfn1[b[i] + 1]));
    return sum;
}

/*
 * A change of one or two gfns, planned: the window boundaries it touches, the breaks
 * at them before, and the budgets it needs.
 */
struct plan {
    uint64_t b[4];      /* boundary b lies between gfns b and b + 1 */
    unsigned nb;
    uint64_t before;
};

/*
 * Will entries `g[i]` becoming `e[i]` fit in the memslots (`slots` more) and the
 * mapping budget? Estimated on the table itself, put back before returning; a hole
 * is counted as if it stayed inside its slot, so a single-gfn slot that goes with it
 * can be off by a break at each side (next to a hole inside a neighbouring slot);
 * plan_commit counts the real ones, and the next change that adds any is refused, so
 * the count passes the budget by those two at most. Lock held exclusive.
 * 0 or -ENOMEM.
 */
static int plan_change(struct p2m *p, struct plan *pl, const uint64_t *g,
                       const uint64_t *e, unsigned n, int slots)
{
    uint64_t saved[2];
    pl->nb = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t cand[2] = { g[i] - 1, g[i] };      /* boundaries left and right */
        for (unsigned k = 0; k < 2; k++) {
            bool dup = (k == 0 && g[i] == 0) || cand[k] + 1 >= p->nr_gfns;
            for (unsigned j = 0; j < pl->nb && !dup; j++)
                dup = pl->b[j] == cand[k];
            if (!dup)
                pl->b[pl->nb++] = cand[k];
        }
    }
    pl->before = breaks_at(p, pl->b, pl->nb);
    for (unsigned i = 0; i < n; i++) {
        saved[i] = p->gfn_to_mfn1[g[i]];
        p->gfn_to_mfn1[g[i]] = e[i];
    }
    uint64_t after = breaks_at(p, pl->b, pl->nb);
    for (unsigned i = n; i-- > 0;)
        p->gfn_to_mfn1[g[i]] = saved[i];
    if (slots > 0 && p->nr_slots + (unsigned)slots > P2M_MAX_SLOTS)
        return -ENOMEM;
    if (after > pl->before && p->nr_breaks + after - pl->before > P2M_MAX_BREAKS)
        return -ENOMEM;
    return 0;
}

/* The change is applied: count the breaks it really left. */
static void plan_commit(struct p2m *p, const struct plan *pl)
{
    p->nr_breaks = p->nr_breaks - pl->before + breaks_at(p, pl->b, pl->nb);
}

/* ---- the two changes ---- */

/*
 * Best effort after a failed mmap over gfn (it may have taken the old mapping with
 * it): back to what the table says; failing that, a reserved hole, never a stale
 * frame. A hole inside a slot is read-only anonymous memory.
 */
static void window_restore(struct p2m *p, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(p, gfn);
    int rc;
    if (mfn != INVALID_MFN)
        rc = window_map_prot(p, gfn, mfn, 1, test_bit64(foreign_ro(p), gfn) ?
                             PROT_READ : PROT_READ | PROT_WRITE);
    else if (slot_of(p, gfn) >= 0)
        rc = window_hole_ro(p, gfn, 1);
    else
        rc = window_hole(p, gfn);
    if (rc)
        window_hole(p, gfn);
}

/* Put frame mfn at gfn: named, mapped, in a slot (a single-gfn one if need be). */
static int apply_place(struct p2m *p, uint64_t gfn, uint64_t mfn)
{
    int rc = mm_map_get(p->mm, mfn, 1, p->domid);
    if (rc)
        return rc;
    if ((rc = window_map(p, gfn, mfn, 1)) ||
        (slot_of(p, gfn) < 0 && (rc = add_memslot(p, gfn, 1)))) {
        window_restore(p, gfn);
        mm_map_put(p->mm, mfn, 1);
        return rc;
    }
    p->gfn_to_mfn1[gfn] = mfn + 1;
    return 0;
}

/*
 * Make populated gfn a hole: a single-gfn slot goes (with its mapping), inside a larger
 * slot read-only anonymous memory takes the frame's place (window_hole_ro).
 */
static int apply_hole(struct p2m *p, uint64_t gfn)
{
    int slot = slot_of(p, gfn), rc;
    if (slot >= 0 && p->slots[slot].nr == 1) {
        bool ro = p->slots[slot].readonly;
        p2m_mark_dirty(p, gfn, 1);      /* a deleted slot's dirty log goes with it */
        if ((rc = p2m_set_memslot(p, (unsigned)slot, gfn, 0)))
            return rc;
        if ((rc = window_hole(p, gfn))) {
            p->slots[slot].readonly = ro;
            p2m_set_memslot(p, (unsigned)slot, gfn, 1);
            return rc;
        }
    } else if ((rc = window_hole_ro(p, gfn, 1))) {
        window_restore(p, gfn);
        return rc;
    }
    p->gfn_to_mfn1[gfn] = 0;
    return 0;
}

/*
 * gfn's entry becomes mfn (a frame the domain owns) or a hole (INVALID_MFN). The name
 * on the frame that was there stays: the caller drops it once the whole change stands.
 * Lock held exclusive, plan checked.
 */
static int apply_entry(struct p2m *p, uint64_t gfn, uint64_t mfn)
{
    if (mfn != INVALID_MFN)
        return apply_place(p, gfn, mfn);
    return p2m_lookup(p, gfn) == INVALID_MFN ? 0 : apply_hole(p, gfn);
}

static bool valid_gfn(const struct p2m *p, uint64_t gfn)
{
    return gfn < p->nr_gfns;
}

int p2m_set_frame(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t *old)
{
    *old = INVALID_MFN;
    if (!valid_gfn(p, gfn) || (mfn != INVALID_MFN && mfn >= p->mm->nr_frames))
        return -EINVAL;
    change_lock(p);
    uint64_t was = p2m_lookup(p, gfn);
    uint64_t e = mfn == INVALID_MFN ? 0 : mfn + 1;
    int slots = mfn == INVALID_MFN ? hole_slot_cost(p, gfn) : slot_of(p, gfn) < 0;
    struct plan pl;
    int rc = 0;
    if (p2m_is_foreign(p, gfn)) {
        rc = -EBUSY;            /* a grant mapping: only its unmap removes it */
        goto out;
    }
    if (was == mfn)
        goto out;
    if ((rc = plan_change(p, &pl, &gfn, &e, 1, slots)) || (rc = apply_entry(p, gfn, mfn)))
        goto out;
    plan_commit(p, &pl);
    p2m_mark_dirty(p, gfn, 1);      /* a migration sends the new page, or the hole */
    p2m_altp2m_host_changed(p, gfn);
    if (was != INVALID_MFN)
        mm_map_put(p->mm, was, 1);
    *old = was;
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

int p2m_move_frame(struct p2m *p, uint64_t from, uint64_t to, uint64_t expect,
                   uint64_t *old)
{
    *old = INVALID_MFN;
    if (!valid_gfn(p, from) || !valid_gfn(p, to))
        return -EINVAL;
    change_lock(p);
    uint64_t mfn = p2m_lookup(p, from), was = p2m_lookup(p, to);
    struct plan pl;
    int rc = 0;
    if (p2m_is_foreign(p, from) || p2m_is_foreign(p, to)) {
        rc = -EBUSY;
        goto out;
    }
    if (mfn == INVALID_MFN || (expect != INVALID_MFN && mfn != expect)) {
        rc = mfn == INVALID_MFN ? -EINVAL : -ESRCH;
        goto out;
    }
    if (from == to)
        goto out;
    uint64_t g[2] = { to, from }, e[2] = { mfn + 1, 0 };
    if ((rc = plan_change(p, &pl, g, e, 2, slot_of(p, to) < 0)))
        goto out;
    /* The frame is named at both gfns for a moment, so it is never unnamed. */
    if ((rc = apply_entry(p, to, mfn)))
        goto out;
    if ((rc = apply_entry(p, from, INVALID_MFN))) {
        if (!apply_entry(p, to, was)) {
            mm_map_put(p->mm, mfn, 1);      /* the name `to` took for the move */
            if (was != INVALID_MFN)
                mm_map_put(p->mm, was, 1);  /* the name the undo took again */
        } else if (was != INVALID_MFN) {
            /* Half done but consistent: both gfns map the frame; `was` is unmapped. */
            mm_map_put(p->mm, was, 1);
        }
        p->nr_breaks = count_breaks(p);
        goto out;
    }
    plan_commit(p, &pl);
    p2m_mark_dirty(p, from, 1);
    p2m_mark_dirty(p, to, 1);
    p2m_altp2m_host_changed(p, from);
    p2m_altp2m_host_changed(p, to);
    mm_map_put(p->mm, mfn, 1);              /* the name `from` held */
    if (was != INVALID_MFN)
        mm_map_put(p->mm, was, 1);
    *old = was;
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* ---- grant mappings ---- */

static int foreign_alloc(struct p2m *p)
{
    if (!p->foreign && !(p->foreign = calloc(2 * ((p->nr_gfns + 63) / 64), sizeof(uint64_t))))
        return -ENOMEM;
    return 0;
}

/* What may be replaced by a grant mapping: a hole, or one of the domain's RAM frames. */
static int foreign_target_ok(const struct p2m *p, uint64_t gfn)
{
    uint64_t was = p2m_lookup(p, gfn);
    if (p2m_is_foreign(p, gfn))
        return -EBUSY;
    if (was == INVALID_MFN)
        return 0;
    if (was >= p->mm->nr_frames || mm_frame_type(p->mm, was) != FRAME_RAM ||
        p->mm->frames[was].owner != p->domid)
        return -EPERM;
    return 0;
}

/* Map mfn at gfn in the window and a memslot: read-only as asked. Lock held. */
static int apply_foreign(struct p2m *p, uint64_t gfn, uint64_t mfn, bool readonly)
{
    int slot = slot_of(p, gfn), rc;
    rc = window_map_prot(p, gfn, mfn, 1, readonly ? PROT_READ : PROT_READ | PROT_WRITE);
    if (!rc && slot < 0)
        rc = add_memslot_flags(p, gfn, 1, readonly);
    if (rc) {
        window_restore(p, gfn);
        return rc;
    }
    p->gfn_to_mfn1[gfn] = mfn + 1;
    put_bit64(p->foreign, gfn, true);
    put_bit64(foreign_ro(p), gfn, readonly);
    p->nr_foreign++;
    return 0;
}

int p2m_map_foreign(struct p2m *p, uint64_t gfn, uint64_t mfn, bool readonly, uint64_t *old)
{
    *old = INVALID_MFN;
    if (!valid_gfn(p, gfn) || mfn >= p->mm->nr_frames)
        return -EINVAL;
    change_lock(p);
    uint64_t was = p2m_lookup(p, gfn), e = mfn + 1;
    struct plan pl;
    int rc = foreign_target_ok(p, gfn);
    if (!rc)
        rc = foreign_alloc(p);
    if (!rc)
        rc = plan_change(p, &pl, &gfn, &e, 1, slot_of(p, gfn) < 0);
    if (!rc)
        rc = apply_foreign(p, gfn, mfn, readonly);
    if (!rc) {
        plan_commit(p, &pl);
        p2m_mark_dirty(p, gfn, 1);
        p2m_altp2m_host_changed(p, gfn);
        if (was != INVALID_MFN)
            mm_map_put(p->mm, was, 1);
        *old = was;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

int p2m_unmap_foreign(struct p2m *p, uint64_t gfn, uint64_t mfn)
{
    if (!valid_gfn(p, gfn))
        return -EINVAL;
    change_lock(p);
    uint64_t e = 0;
    struct plan pl;
    int rc = 0;
    if (!p2m_is_foreign(p, gfn) || p2m_lookup(p, gfn) != mfn)
        rc = -EINVAL;
    if (!rc)
        rc = plan_change(p, &pl, &gfn, &e, 1, hole_slot_cost(p, gfn));
    if (!rc) {
        /* A read-only slot of its own goes with the mapping (apply_hole deletes it). */
        rc = apply_hole(p, gfn);
    }
    if (!rc) {
        put_bit64(p->foreign, gfn, false);
        put_bit64(foreign_ro(p), gfn, false);
        p->nr_foreign--;
        plan_commit(p, &pl);
        p2m_mark_dirty(p, gfn, 1);
        p2m_altp2m_host_changed(p, gfn);
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* ---- building ---- */

int p2m_populate_ram(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    if (gfn > p->nr_gfns || nr > p->nr_gfns - gfn)
        return -EINVAL;
    change_lock(p);
    int rc = 0;
    uint64_t done = 0;
    while (done < nr) {
        uint64_t mfn;
        uint64_t got = mm_alloc_run(p->mm, nr - done, p->domid, FRAME_RAM, &mfn);
        if (!got) {
            rc = -ENOMEM;
            break;
        }
        rc = map_frames(p, gfn + done, mfn, got);
        if (rc) {
            mm_free_run(p->mm, mfn, got);
            break;
        }
        done += got;
    }
    if (!rc)
        rc = add_memslot(p, gfn, nr);
    p->nr_breaks = count_breaks(p);
    pthread_rwlock_unlock(&p->lock);
    return rc;   /* on failure the caller destroys the domain, freeing its frames */
}

int p2m_adopt(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    if (gfn > p->nr_gfns || nr > p->nr_gfns - gfn)
        return -EINVAL;
    /* Its first and last gfns: the caller checked that the runs it adopts are disjoint. */
    if (nr && (p->gfn_to_mfn1[gfn] || p->gfn_to_mfn1[gfn + nr - 1]))
        return -EEXIST;
    mm_prefault(&p->gfn_to_mfn1[gfn], nr * sizeof(uint64_t));
    change_lock(p);
    /* The frames carry the p2m's name already (mm_claim_named). */
    int rc = window_map(p, gfn, mfn, nr);
    for (uint64_t i = 0; !rc && i < nr; i++)
        p->gfn_to_mfn1[gfn + i] = mfn + i + 1;
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/*
 * Live update: the memslots the domain had. First one over each RAM range of its
 * memory map (p2m_cover_ram, as p2m_populate_ram made them: the holes a guest made
 * inside its RAM stay holes inside a slot, and a populate fills them without a slot of
 * its own); then p2m_build_memslots gives the populated gfns no slot covers one memslot
 * per cluster of runs less than P2M_BUILD_GAP_MAX gfns apart, with holes in the gaps.
 * Both work from the runs the caller adopted, never by walking the whole window (a 256
 * MiB domain's spans 4 GiB of gfns): the downtime must not grow with it. The break
 * count is taken once, at the end of p2m_build_memslots.
 */
#define P2M_BUILD_GAP_MAX 16

/* runs[] ascending, disjoint, each adopted whole. */
static bool runs_ok(const struct p2m *p, const struct p2m_run *runs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!runs[i].nr || runs[i].gfn >= p->nr_gfns || runs[i].nr > p->nr_gfns - runs[i].gfn ||
            (i && runs[i].gfn < runs[i - 1].gfn + runs[i - 1].nr) ||
            !p->gfn_to_mfn1[runs[i].gfn] || !p->gfn_to_mfn1[runs[i].gfn + runs[i].nr - 1])
            return false;
    return true;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

int p2m_cover_ram(struct p2m *p, uint64_t gfn, uint64_t nr, const struct p2m_run *runs,
                  size_t n)
{
    if (!nr || gfn > p->nr_gfns || nr > p->nr_gfns - gfn || !runs_ok(p, runs, n))
        return -EINVAL;
    change_lock(p);
    int rc = 0;
    uint64_t g = gfn, end = gfn + nr;
    size_t i = 0;
    while (i < n && runs[i].gfn + runs[i].nr <= gfn)
        i++;
    /* The holes between the runs inside [gfn, end). */
    while (!rc && g < end) {
        uint64_t next = i < n && runs[i].gfn < end ? (runs[i].gfn > g ? runs[i].gfn : g) : end;
        if (next > g)
            rc = window_hole_ro(p, g, next - g);
        if (next == end)
            break;
        g = runs[i].gfn + runs[i].nr;
        i++;
    }
    if (!rc)
        rc = add_memslot(p, gfn, nr);
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* The first gfn at or after `gfn` that a memslot starts at (nr_gfns: none). */
static uint64_t next_slot_start(const struct p2m *p, uint64_t gfn)
{
    uint64_t next = p->nr_gfns;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr && p->slots[i].gfn >= gfn && p->slots[i].gfn < next)
            next = p->slots[i].gfn;
    return next;
}

/* What backs gfn inside a memslot, as backing_key says. */
static uint64_t inside_key(const struct p2m *p, uint64_t gfn)
{
    return p->gfn_to_mfn1[gfn] ? p->gfn_to_mfn1[gfn] : UINT64_MAX;
}

/*
 * count_breaks's answer for a map built from runs[] (every populated gfn inside a
 * memslot, nothing else populated): breaks can only be at a slot's edges and at a run's
 * edges inside a slot (a run's frames are contiguous, and holes next to each other
 * share one mapping), so only those are looked at.
 */
static uint64_t adopted_breaks(const struct p2m *p, const struct p2m_run *runs, size_t n)
{
    static __thread struct slot_sweep w;
    sweep_init(p, &w);
    uint64_t breaks = 0;
    size_t i = 0;
    for (unsigned k = 0; k < w.n; k++) {
        uint64_t s0 = w.s[k].gfn, s1 = s0 + w.s[k].nr;
        bool joined = k > 0 && w.s[k - 1].gfn + w.s[k - 1].nr == s0;
        if (s0 > 0)
            breaks += joined ? is_break(inside_key(p, s0 - 1), inside_key(p, s0)) : 1;
        if (s1 < p->nr_gfns && !(k + 1 < w.n && w.s[k + 1].gfn == s1))
            breaks++;
        while (i < n && runs[i].gfn + runs[i].nr <= s0)
            i++;
        for (size_t j = i; j < n && runs[j].gfn < s1; j++) {
            uint64_t a = runs[j].gfn > s0 ? runs[j].gfn : s0;
            uint64_t b = min_u64(runs[j].gfn + runs[j].nr, s1);
            if (a > s0)
                breaks += is_break(inside_key(p, a - 1), inside_key(p, a));
            if (b < s1 && !(j + 1 < n && runs[j + 1].gfn == b))
                breaks += is_break(inside_key(p, b - 1), inside_key(p, b));
        }
    }
    return breaks;
}

/* The next piece of runs[] from *at on that no memslot covers: [*g, *end). false: none. */
static bool next_uncovered(const struct p2m *p, const struct p2m_run *runs, size_t n,
                           size_t *i, uint64_t *at, uint64_t *g, uint64_t *end)
{
    for (; *i < n; (*i)++) {
        uint64_t s = *at > runs[*i].gfn ? *at : runs[*i].gfn, e = runs[*i].gfn + runs[*i].nr;
        while (s < e) {
            int sl = slot_of(p, s);
            if (sl < 0)
                break;
            s = min_u64(e, p->slots[sl].gfn + p->slots[sl].nr);
        }
        if (s < e) {
            *g = s;
            *end = min_u64(e, next_slot_start(p, s));
            *at = *end;
            return true;
        }
    }
    return false;
}

int p2m_build_memslots(struct p2m *p, const struct p2m_run *runs, size_t n)
{
    if (!runs_ok(p, runs, n))
        return -EINVAL;
    change_lock(p);
    int rc = 0;
    size_t i = 0;
    uint64_t at = 0, g, end;
    bool more = next_uncovered(p, runs, n, &i, &at, &g, &end);
    while (!rc && more) {
        uint64_t start = g, limit = next_slot_start(p, g);
        uint64_t g2, end2;
        /* The cluster: pieces less than P2M_BUILD_GAP_MAX apart, short of the next slot. */
        while ((more = next_uncovered(p, runs, n, &i, &at, &g2, &end2)) &&
               g2 < end + P2M_BUILD_GAP_MAX && g2 < limit) {
            if (g2 > end && (rc = window_hole_ro(p, end, g2 - end)))
                break;
            end = end2;
        }
        if (!rc)
            rc = add_memslot(p, start, end - start);
        g = g2;
        end = end2;
    }
    p->nr_breaks = rc ? count_breaks(p) : adopted_breaks(p, runs, n);
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* ---- reading ---- */

/* The gfns [*first, *last] that gpa..gpa+len (at least a byte) covers; false if past
 * the address space. */
static bool gfn_range(const struct p2m *p, uint64_t gpa, uint64_t len, uint64_t *first,
                      uint64_t *last)
{
    if (len == 0)
        len = 1;
    if (gpa >= (p->nr_gfns << XKVM_PAGE_SHIFT) ||
        len > (p->nr_gfns << XKVM_PAGE_SHIFT) - gpa)
        return false;
    *first = gpa >> XKVM_PAGE_SHIFT;
    *last = (gpa + len - 1) >> XKVM_PAGE_SHIFT;
    return true;
}

void *p2m_ptr(const struct p2m *p, uint64_t gpa, uint64_t len)
{
    uint64_t first, last;
    if (!gfn_range(p, gpa, len, &first, &last))
        return NULL;
    for (uint64_t g = first; g <= last; g++)
        if (p->gfn_to_mfn1[g] == 0 || test_bit64(p->foreign, g))
            return NULL;
    return p->window + gpa;
}

void *p2m_ptr_guest(const struct p2m *p, uint64_t gpa, uint64_t len, bool write)
{
    uint64_t first, last;
    if (!gfn_range(p, gpa, len, &first, &last))
        return NULL;
    for (uint64_t g = first; g <= last; g++)
        if (p->gfn_to_mfn1[g] == 0 || (write && test_bit64(foreign_ro(p), g)))
            return NULL;
    return p->window + gpa;
}

static void *gphys_p2m_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    return p2m_ptr(opaque, gpa, len);
}

static void gphys_p2m_written(void *opaque, uint64_t gpa, uint64_t len)
{
    if (len)
        p2m_mark_dirty(opaque, gpa >> XKVM_PAGE_SHIFT,
                       ((gpa + len - 1) >> XKVM_PAGE_SHIFT) - (gpa >> XKVM_PAGE_SHIFT) + 1);
}

static void gphys_p2m_hold(void *opaque, bool hold)
{
    if (hold)
        p2m_hold(opaque);
    else
        p2m_release(opaque);
}

struct gphys p2m_gphys(struct p2m *p)
{
    return (struct gphys){ .ptr = gphys_p2m_ptr, .written = gphys_p2m_written,
                           .hold = gphys_p2m_hold, .opaque = p };
}

/* ---- audit ---- */

int p2m_audit(struct p2m *p, char *why, size_t whylen)
{
    static __thread struct slot_sweep w;
    int rc = 0;
    pthread_rwlock_rdlock(&p->lock);
    unsigned slots = 0;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        slots += p->slots[i].nr != 0;
    sweep_init(p, &w);
    for (uint64_t g = 0; g < p->nr_gfns && !rc; g++) {
        uint64_t mfn = p2m_lookup(p, g);
        if (mfn == INVALID_MFN)
            continue;
        if (!sweep_in_slot(&w, g)) {
            snprintf(why, whylen, "gfn %#llx: populated but in no memslot",
                     (unsigned long long)g);
            rc = -EUCLEAN;
        } else if (p2m_is_foreign(p, g)) {
            if (!mm_frame_foreign_mapped(p->mm, mfn) || mfn >= p->mm->nr_frames) {
                snprintf(why, whylen, "gfn %#llx: foreign frame %#llx is not referenced",
                         (unsigned long long)g, (unsigned long long)mfn);
                rc = -EUCLEAN;
            }
        } else if (mfn >= p->mm->nr_frames || mm_frame_maps(p->mm, mfn) == 0) {
            snprintf(why, whylen, "gfn %#llx: frame %#llx is not named by the map",
                     (unsigned long long)g, (unsigned long long)mfn);
            rc = -EUCLEAN;
        }
    }
    if (!rc && slots != p->nr_slots) {
        snprintf(why, whylen, "%u memslots in use, %u counted", slots, p->nr_slots);
        rc = -EUCLEAN;
    }
    uint64_t breaks = rc ? 0 : count_breaks(p);
    if (!rc && breaks != p->nr_breaks) {
        snprintf(why, whylen, "%llu mapping breaks, %llu counted",
                 (unsigned long long)breaks, (unsigned long long)p->nr_breaks);
        rc = -EUCLEAN;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}
