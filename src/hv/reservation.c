/*
 * Memory reservation: what a balloon driver changes (reservation.h). Every change goes
 * through the p2m's transactions (p2m_set_frame: budgets checked first, undone on
 * failure), and a populate that cannot complete gives back what it took, so an extent
 * is populated whole or not at all. Frames given back are freed through machine
 * memory's frame table: one a dom0 service or a grant still maps stays, as an orphan,
 * until the last mapping goes (docs/security.md).
 */
#include "hv/reservation.h"

#include <errno.h>

#include "hv/domain.h"
#include "hv/hv.h"

/* Populating these gfns would shadow what the platform puts there (LAPIC, rings, ACPI). */
static bool in_mmio_hole(uint64_t gfn)
{
    return gfn >= (GUEST_LOWMEM_END >> XKVM_PAGE_SHIFT) &&
           gfn < (GUEST_HIGHMEM_START >> XKVM_PAGE_SHIFT);
}

uint64_t reservation_current(struct domain *d)
{
    return mm_count_owner_ram(d) + __atomic_load_n(&d->unmapped_frames, __ATOMIC_RELAXED);
}

uint64_t reservation_maximum(const struct domain *d)
{
    return d->max_frames;
}

void reservation_begin(struct reservation *r, struct domain *d)
{
    pthread_mutex_lock(&d->reservation_lock);
    r->d = d;
    r->held = reservation_current(d);
}

void reservation_end(struct reservation *r)
{
    pthread_mutex_unlock(&r->d->reservation_lock);
}

int reservation_remove_page(struct reservation *r, uint64_t gfn)
{
    struct domain *d = r->d;
    struct machine_mem *mm = host_mm();
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    if (mfn == INVALID_MFN || mfn >= mm->nr_total)
        return -EINVAL;
    if (mm_frame_type(mm, mfn) != FRAME_RAM)
        return -ENXIO;
    uint64_t old;
    int rc = p2m_set_frame(&d->p2m, gfn, INVALID_MFN, &old);
    if (rc)
        return rc;
    if (old != INVALID_MFN) {
        mm_free_run(mm, old, 1);    /* an orphan while anything still maps it */
        if (r->held)
            r->held--;
    }
    return 0;
}

/* Frames for n pages, in as many runs as it takes; all or none. */
static int alloc_frames(struct domain *d, uint64_t *mfns, uint64_t n)
{
    uint64_t got = 0;
    while (got < n) {
        uint64_t m, k = mm_alloc_run(host_mm(), n - got, d->domid, FRAME_RAM, &m);
        if (!k) {
            for (uint64_t i = 0; i < got; i++)
                mm_free_run(host_mm(), mfns[i], 1);
            return -ENOMEM;
        }
        for (uint64_t i = 0; i < k; i++)
            mfns[got++] = m + i;
    }
    return 0;
}

/* What a populate may put a fresh page over: a hole, or a RAM page of the domain's. */
static bool populate_target_ok(struct domain *d, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    if (in_mmio_hole(gfn))
        return false;
    return mfn == INVALID_MFN || (!p2m_is_foreign(&d->p2m, gfn) &&
                                  mm_frame_type(host_mm(), mfn) == FRAME_RAM &&
                                  host_mm()->frames[mfn].owner == d->domid);
}

static int check_populate(struct reservation *r, uint64_t gfn, uint64_t n)
{
    struct domain *d = r->d;
    if (gfn >= d->p2m.nr_gfns || n > d->p2m.nr_gfns - gfn)
        return -EINVAL;
    for (uint64_t i = 0; i < n; i++)
        if (!populate_target_ok(d, gfn + i))
            return -EINVAL;
    if (r->held + n > d->max_frames)
        return -ENOMEM;     /* Xen: "Over-allocation", the extent fails */
    return 0;
}

/*
 * Undo the first `placed` pages of a populate that failed: each gfn gets back what it
 * held (old[i]: a hole or the page replaced). A step that fails leaves the fresh page
 * the guest's, counted; the fresh frames not in the p2m are freed.
 */
static void undo_populate(struct reservation *r, uint64_t gfn, const uint64_t *mfns,
                          const uint64_t *olds, uint64_t placed, uint64_t n)
{
    struct domain *d = r->d;
    uint64_t was;
    for (uint64_t i = 0; i < n; i++) {
        if (i < placed && p2m_set_frame(&d->p2m, gfn + i, olds[i], &was)) {
            r->held++;
            if (olds[i] != INVALID_MFN)     /* the page it replaced stays, unmapped */
                __atomic_add_fetch(&d->unmapped_frames, 1, __ATOMIC_RELAXED);
            continue;
        }
        mm_free_run(host_mm(), mfns[i], 1);
    }
}

int reservation_populate(struct reservation *r, uint64_t gfn, unsigned order)
{
    static __thread uint64_t mfns[1u << RESERVATION_MAX_ORDER];
    static __thread uint64_t olds[1u << RESERVATION_MAX_ORDER];
    if (order > RESERVATION_MAX_ORDER)
        return -EINVAL;
    uint64_t n = 1ull << order, placed = 0, replaced = 0;
    int rc = check_populate(r, gfn, n);
    if (rc || (rc = alloc_frames(r->d, mfns, n)))
        return rc;
    for (; placed < n && !rc; placed++)
        rc = p2m_set_frame(&r->d->p2m, gfn + placed, mfns[placed], &olds[placed]);
    if (rc) {
        undo_populate(r, gfn, mfns, olds, placed - 1, n);   /* the failed one was not placed */
        return rc;
    }
    /*
     * As Xen (p2m_add_page): a page that was there leaves the p2m but stays the
     * domain's, counted, as increase_reservation's frames without a gfn.
     */
    for (uint64_t i = 0; i < n; i++)
        replaced += olds[i] != INVALID_MFN;
    if (replaced)
        __atomic_add_fetch(&r->d->unmapped_frames, replaced, __ATOMIC_RELAXED);
    r->held += n;
    return 0;
}

int reservation_increase(struct reservation *r, unsigned order)
{
    static __thread uint64_t mfns[1u << RESERVATION_MAX_ORDER];
    struct domain *d = r->d;
    uint64_t n = 1ull << order;
    if (order > RESERVATION_MAX_ORDER || r->held + n > d->max_frames)
        return -ENOMEM;
    int rc = alloc_frames(d, mfns, n);
    if (rc)
        return rc;
    __atomic_add_fetch(&d->unmapped_frames, n, __ATOMIC_RELAXED);
    r->held += n;
    return 0;
}
