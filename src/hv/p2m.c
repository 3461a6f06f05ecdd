/*
 * A domain's physical-to-machine map: src/hv/p2m.h says what it is, docs/security.md
 * why every change is a transaction. A change runs in three steps:
 *   plan    - with the lock held exclusive, check what the change needs (memslots,
 *             the window's mapping budget, a name on the new frame) before touching
 *             anything, and refuse it whole if anything is missing;
 *   apply   - window first (a new frame is named and mapped before any memslot shows
 *             it), memslots next, the table last;
 *   undo    - a failing step puts back what the steps before it did.
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

/* Drop the names the map holds on its frames, run by run. */
static void put_all_frames(struct p2m *p)
{
    for (uint64_t g = 0; g < p->nr_gfns;) {
        uint64_t mfn = p2m_lookup(p, g);
        if (mfn == INVALID_MFN) {
            g++;
            continue;
        }
        uint64_t n = 1;
        while (g + n < p->nr_gfns && p2m_lookup(p, g + n) == mfn + n)
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

/* ---- the window ---- */

/* Map frames [mfn, mfn + nr) at gfn in the window (no names, no table). */
static int window_map(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, nr << XKVM_PAGE_SHIFT, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED, p->mm->fd, (off_t)(mfn << XKVM_PAGE_SHIFT));
    return m == MAP_FAILED ? -errno : 0;
}

/* A hole again: reserved address space, nothing behind it. */
static int window_hole(struct p2m *p, uint64_t gfn)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, XKVM_PAGE_SIZE, PROT_NONE,
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

int p2m_set_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .flags = p->log_dirty && nr ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = gfn << XKVM_PAGE_SHIFT,
        .memory_size = nr << XKVM_PAGE_SHIFT,
        .userspace_addr = (uint64_t)(uintptr_t)(p->window + (gfn << XKVM_PAGE_SHIFT)),
    };
    if (ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    if (!p->slots[slot].nr && nr)
        p->nr_slots++;
    else if (p->slots[slot].nr && !nr)
        p->nr_slots--;
    p->slots[slot] = (struct p2m_slot){ .gfn = gfn, .nr = nr };
    return 0;
}

static int add_memslot(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr == 0)
            return p2m_set_memslot(p, i, gfn, nr);
    return -ENOMEM;
}

static int slot_of(const struct p2m *p, uint64_t gfn)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr && gfn >= p->slots[i].gfn && gfn < p->slots[i].gfn + p->slots[i].nr)
            return (int)i;
    return -1;
}

/* Memslots that making gfn a hole adds (1: split in two), or frees (-1). */
static int hole_slot_cost(const struct p2m *p, uint64_t gfn)
{
    int s = slot_of(p, gfn);
    if (s < 0)
        return 0;
    const struct p2m_slot *sl = &p->slots[s];
    if (sl->nr == 1)
        return -1;
    return gfn == sl->gfn || gfn == sl->gfn + sl->nr - 1 ? 0 : 1;
}

/*
 * Take gfn out of the memslot covering it: the slot shrinks, or is split in two, or
 * goes. On failure the slot is as it was.
 */
static int punch_memslot(struct p2m *p, uint64_t gfn)
{
    int s = slot_of(p, gfn);
    if (s < 0)
        return 0;
    unsigned slot = (unsigned)s;
    struct p2m_slot old = p->slots[slot];
    uint64_t left = gfn - old.gfn, right = old.gfn + old.nr - gfn - 1;
    /* Deleting a slot drops its dirty log: count the whole range as written. */
    p2m_mark_dirty(p, old.gfn, old.nr);
    int rc = p2m_set_memslot(p, slot, old.gfn, 0);
    if (rc)
        return rc;
    if (left && (rc = p2m_set_memslot(p, slot, old.gfn, left)))
        goto undo;
    if (right && (rc = add_memslot(p, gfn + 1, right))) {
        p2m_set_memslot(p, slot, old.gfn, 0);
        goto undo;
    }
    return 0;
undo:
    p2m_set_memslot(p, slot, old.gfn, old.nr);
    return rc;
}

/* ---- the mapping budget ---- */

/* Whether the window's mapping breaks between gfn a and a + 1, given their entries. */
static bool is_break(uint64_t e_a, uint64_t e_b)
{
    if (!e_a || !e_b)
        return e_a != e_b;
    return e_b != e_a + 1;
}

static uint64_t count_breaks(const struct p2m *p)
{
    uint64_t n = 0;
    for (uint64_t g = 0; g + 1 < p->nr_gfns; g++)
        n += is_break(p->gfn_to_mfn1[g], p->gfn_to_mfn1[g + 1]);
    return n;
}

/* Breaks at the boundaries b[0..n) (boundary b lies between gfns b and b + 1). */
static uint64_t breaks_at(const struct p2m *p, const uint64_t *b, unsigned n)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += is_break(p->gfn_to_mfn1[b[i]], p->gfn_to_mfn1[b[i] + 1]);
    return sum;
}

/*
 * The change of entries `g[i]` to `e[i]` (one or two gfns): does it fit in the
 * memslots (`slots` more) and the mapping budget? Evaluated on the table itself,
 * which is put back before returning. Lock held exclusive.
 */
static int plan_fits(struct p2m *p, const uint64_t *g, const uint64_t *e, unsigned n,
                     int slots, uint64_t *breaks_after)
{
    uint64_t b[4], saved[2];
    unsigned nb = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t cand[2] = { g[i] - 1, g[i] };      /* boundaries left and right */
        for (unsigned k = 0; k < 2; k++) {
            bool dup = (k == 0 && g[i] == 0) || cand[k] + 1 >= p->nr_gfns;
            for (unsigned j = 0; j < nb && !dup; j++)
                dup = b[j] == cand[k];
            if (!dup)
                b[nb++] = cand[k];
        }
    }
    uint64_t before = breaks_at(p, b, nb);
    for (unsigned i = 0; i < n; i++) {
        saved[i] = p->gfn_to_mfn1[g[i]];
        p->gfn_to_mfn1[g[i]] = e[i];
    }
    uint64_t after = breaks_at(p, b, nb);
    for (unsigned i = n; i-- > 0;)
        p->gfn_to_mfn1[g[i]] = saved[i];
    *breaks_after = p->nr_breaks + after - before;
    if (slots > 0 && p->nr_slots + (unsigned)slots > P2M_MAX_SLOTS)
        return -ENOMEM;
    if (after > before && *breaks_after > P2M_MAX_BREAKS)
        return -ENOMEM;
    return 0;
}

/* ---- the two changes ---- */

/*
 * gfn's entry becomes mfn (a frame the domain owns) or a hole (INVALID_MFN). Does not
 * touch the name on the frame that was there. Lock held exclusive, plan checked.
 */
static int apply_entry(struct p2m *p, uint64_t gfn, uint64_t mfn)
{
    uint64_t old = p2m_lookup(p, gfn);
    int rc;
    if (mfn != INVALID_MFN) {
        if ((rc = mm_map_get(p->mm, mfn, 1, p->domid)))
            return rc;
        if ((rc = window_map(p, gfn, mfn, 1)))
            goto undo_name;
        if (old == INVALID_MFN && slot_of(p, gfn) < 0 && (rc = add_memslot(p, gfn, 1)))
            goto undo_window;
        p->gfn_to_mfn1[gfn] = mfn + 1;
        return 0;
undo_window:
        /* Back to what was there; a failure here leaves a hole, never a stale frame. */
        if (old != INVALID_MFN ? window_map(p, gfn, old, 1) : window_hole(p, gfn))
            window_hole(p, gfn);
undo_name:
        mm_map_put(p->mm, mfn, 1);
        return rc;
    }
    if (old == INVALID_MFN)
        return 0;
    if ((rc = punch_memslot(p, gfn)))
        return rc;
    if ((rc = window_hole(p, gfn))) {
        /* Still mapped in the window: put the slot back around it. */
        add_memslot(p, gfn, 1);
        return rc;
    }
    p->gfn_to_mfn1[gfn] = 0;
    return 0;
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
    pthread_rwlock_wrlock(&p->lock);
    uint64_t was = p2m_lookup(p, gfn), breaks;
    uint64_t e = mfn == INVALID_MFN ? 0 : mfn + 1;
    int slots = mfn == INVALID_MFN ? hole_slot_cost(p, gfn) : slot_of(p, gfn) < 0;
    int rc = 0;
    if (was == mfn)
        goto out;
    if ((rc = plan_fits(p, &gfn, &e, 1, slots, &breaks)) || (rc = apply_entry(p, gfn, mfn)))
        goto out;
    p->nr_breaks = breaks;
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
    pthread_rwlock_wrlock(&p->lock);
    uint64_t mfn = p2m_lookup(p, from), was = p2m_lookup(p, to), breaks;
    int rc = 0;
    if (mfn == INVALID_MFN || (expect != INVALID_MFN && mfn != expect)) {
        rc = mfn == INVALID_MFN ? -EINVAL : -ESRCH;
        goto out;
    }
    if (from == to)
        goto out;
    uint64_t g[2] = { to, from }, e[2] = { mfn + 1, 0 };
    int cost = slot_of(p, to) < 0, freed = hole_slot_cost(p, from);
    if ((rc = plan_fits(p, g, e, 2, cost + (freed > 0 ? freed : 0), &breaks)))
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
            p->nr_breaks = count_breaks(p);
        }
        goto out;
    }
    p->nr_breaks = breaks;
    mm_map_put(p->mm, mfn, 1);              /* the name `from` held */
    if (was != INVALID_MFN)
        mm_map_put(p->mm, was, 1);
    *old = was;
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* ---- building ---- */

int p2m_populate_ram(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    if (gfn > p->nr_gfns || nr > p->nr_gfns - gfn)
        return -EINVAL;
    pthread_rwlock_wrlock(&p->lock);
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
    for (uint64_t g = gfn; g < gfn + nr; g++)
        if (p->gfn_to_mfn1[g])
            return -EEXIST;
    pthread_rwlock_wrlock(&p->lock);
    int rc = map_frames(p, gfn, mfn, nr);
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

int p2m_build_memslots(struct p2m *p)
{
    pthread_rwlock_wrlock(&p->lock);
    int rc = 0;
    for (uint64_t g = 0; g < p->nr_gfns && !rc;) {
        if (!p->gfn_to_mfn1[g]) {
            g++;
            continue;
        }
        uint64_t n = 1;
        while (g + n < p->nr_gfns && p->gfn_to_mfn1[g + n])
            n++;
        rc = add_memslot(p, g, n);
        g += n;
    }
    p->nr_breaks = count_breaks(p);
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* ---- reading ---- */

void *p2m_ptr(const struct p2m *p, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        len = 1;
    if (gpa >= (p->nr_gfns << XKVM_PAGE_SHIFT) ||
        len > (p->nr_gfns << XKVM_PAGE_SHIFT) - gpa)
        return NULL;
    uint64_t first = gpa >> XKVM_PAGE_SHIFT, last = (gpa + len - 1) >> XKVM_PAGE_SHIFT;
    for (uint64_t g = first; g <= last; g++)
        if (p->gfn_to_mfn1[g] == 0)
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
    int rc = 0;
    pthread_rwlock_rdlock(&p->lock);
    unsigned slots = 0;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        slots += p->slots[i].nr != 0;
    for (uint64_t g = 0; g < p->nr_gfns && !rc; g++) {
        uint64_t mfn = p2m_lookup(p, g);
        bool in_slot = slot_of(p, g) >= 0;
        if (mfn == INVALID_MFN ? in_slot : !in_slot) {
            snprintf(why, whylen, "gfn %#llx: %s", (unsigned long long)g,
                     in_slot ? "a hole inside a memslot" : "populated but in no memslot");
            rc = -EUCLEAN;
        } else if (mfn != INVALID_MFN && (mfn >= p->mm->nr_frames ||
                                          mm_frame_maps(p->mm, mfn) == 0)) {
            snprintf(why, whylen, "gfn %#llx: frame %#llx is not named by the map",
                     (unsigned long long)g, (unsigned long long)mfn);
            rc = -EUCLEAN;
        }
    }
    if (!rc && slots != p->nr_slots) {
        snprintf(why, whylen, "%u memslots in use, %u counted", slots, p->nr_slots);
        rc = -EUCLEAN;
    }
    if (!rc && count_breaks(p) != p->nr_breaks) {
        snprintf(why, whylen, "%llu mapping breaks, %llu counted",
                 (unsigned long long)count_breaks(p), (unsigned long long)p->nr_breaks);
        rc = -EUCLEAN;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}
