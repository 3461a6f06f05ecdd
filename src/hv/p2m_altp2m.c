/*
 * altp2m views put into KVM (docs/altp2m.md). altp2m.c works out the memslots that
 * realise the active view over the host's; this file changes KVM's memslots from the
 * layout they hold to that one, as one transaction: the new layout is computed and
 * checked against ALTP2M_MAX_KSLOTS before KVM is touched, only the memslots that
 * differ are deleted and added, and a failing step puts back what was. A memslot the
 * view leaves as the host has it keeps the host's slot id, so going back to the host
 * layout touches only what the view changed.
 *
 * Deleting a memslot takes RAM from running vCPUs for a moment, and KVM cannot walk
 * page tables or fetch instructions from outside memslots (the guest faults): view
 * changes run with the domain's other vCPUs paused (hc_altp2m.c), as Xen pauses the
 * domain to switch views. Host changes while a view is realised (a frame placed
 * outside RAM, its single-gfn slot) differ only at that gfn.
 */
#include "hv/p2m.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* KVM slot ids for view pieces that are not a host slot as it is. */
#define KSLOT_ID_BASE P2M_MAX_SLOTS
#define KSLOT_ID_END  (P2M_MAX_SLOTS + ALTP2M_MAX_KSLOTS)

static bool same_slot(const struct altp2m_kslot *a, const struct altp2m_kslot *b)
{
    return a->gfn == b->gfn && a->nr == b->nr && a->hva_gfn == b->hva_gfn &&
           a->readonly == b->readonly;
}

/* The host's memslots as a layout (ids = host slot ids), sorted by gfn. */
static unsigned host_layout(const struct p2m *p, struct altp2m_kslot *out)
{
    unsigned n = 0;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++) {
        if (!p->slots[i].nr)
            continue;
        unsigned j = n++;
        for (; j > 0 && out[j - 1].gfn > p->slots[i].gfn; j--)
            out[j] = out[j - 1];
        out[j] = (struct altp2m_kslot){ .gfn = p->slots[i].gfn, .nr = p->slots[i].nr,
                                        .hva_gfn = p->slots[i].gfn,
                                        .readonly = p->slots[i].readonly, .id = i };
    }
    return n;
}

static int kvm_put(struct p2m *p, const struct altp2m_kslot *k, bool on)
{
    if (!on && !k->readonly)
        p2m_mark_dirty(p, k->hva_gfn, k->nr);   /* a deleted slot's dirty log goes with it */
    return p2m_kvm_memslot(p, k->id, k->gfn, on ? k->nr : 0, k->hva_gfn, k->readonly);
}

/*
 * Ids for `next` (sorted by gfn): a piece equal to one KVM holds keeps its id; one
 * equal to a host slot takes that slot's id; the rest take free ids from KSLOT_ID_BASE.
 */
static int assign_ids(const struct altp2m_kslot *cur, unsigned nc,
                      const struct altp2m_kslot *host, unsigned nh,
                      struct altp2m_kslot *next, unsigned nn, bool *keep)
{
    static __thread uint8_t used[KSLOT_ID_END];
    memset(used, 0, sizeof(used));
    unsigned c = 0, h = 0;
    for (unsigned i = 0; i < nn; i++) {
        next[i].id = UINT32_MAX;
        while (c < nc && cur[c].gfn < next[i].gfn)
            c++;
        while (h < nh && host[h].gfn < next[i].gfn)
            h++;
        keep[i] = c < nc && same_slot(&cur[c], &next[i]);
        if (keep[i])
            next[i].id = cur[c].id;
        else if (h < nh && same_slot(&host[h], &next[i]))
            next[i].id = host[h].id;
        if (next[i].id != UINT32_MAX)
            used[next[i].id] = 1;
    }
    /* Ids cur holds stay taken until deleted: a new piece never reuses one mid-change. */
    for (unsigned i = 0; i < nc; i++)
        used[cur[i].id] = 1;
    unsigned free_id = KSLOT_ID_BASE;
    for (unsigned i = 0; i < nn; i++) {
        if (next[i].id != UINT32_MAX)
            continue;
        while (free_id < KSLOT_ID_END && used[free_id])
            free_id++;
        if (free_id == KSLOT_ID_END)
            return -ENOMEM;
        next[i].id = free_id;
        used[free_id] = 1;
    }
    return 0;
}

/* Whether cur[i] is among the kept pieces of next. */
static bool kept(const struct altp2m_kslot *c, const struct altp2m_kslot *next, unsigned nn,
                 const bool *keep)
{
    unsigned lo = 0, hi = nn;
    while (lo < hi) {       /* next is sorted by gfn and its pieces do not overlap */
        unsigned mid = lo + (hi - lo) / 2;
        if (next[mid].gfn < c->gfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nn && keep[lo] && next[lo].id == c->id && same_slot(&next[lo], c);
}

/* KVM goes from cur to next: deletions first (slots may not overlap), then additions. */
static int apply_diff(struct p2m *p, const struct altp2m_kslot *cur, unsigned nc,
                      const struct altp2m_kslot *next, unsigned nn, const bool *keep)
{
    unsigned deleted = 0, added = 0;    /* cur[0..deleted), next[0..added) done */
    int rc = 0;
    for (; deleted < nc; deleted++)
        if (!kept(&cur[deleted], next, nn, keep) && (rc = kvm_put(p, &cur[deleted], false)))
            break;
    if (!rc)
        for (; added < nn; added++)
            if (!keep[added] && (rc = kvm_put(p, &next[added], true)))
                break;
    if (!rc)
        return 0;
    /* Undo: what was added goes, what was deleted comes back. */
    for (unsigned i = 0; i < added; i++)
        if (!keep[i])
            kvm_put(p, &next[i], false);
    for (unsigned i = 0; i < deleted; i++)
        if (!kept(&cur[i], next, nn, keep))
            kvm_put(p, &cur[i], true);
    return rc;
}

int p2m_altp2m_realise(struct p2m *p)
{
    if (!p->alt)
        return 0;
    bool identity = altp2m_view_is_identity(p->alt, p->alt->active);
    if (identity && !p->alt_realised)
        return 0;
    static __thread struct altp2m_hslot hs[P2M_MAX_SLOTS];
    static __thread struct altp2m_kslot host[P2M_MAX_SLOTS];
    unsigned nh = host_layout(p, host);
    for (unsigned i = 0; i < nh; i++)
        hs[i] = (struct altp2m_hslot){ .gfn = host[i].gfn, .nr = host[i].nr,
                                       .readonly = host[i].readonly };
    struct altp2m_kslot *next = calloc(ALTP2M_MAX_KSLOTS, sizeof(*next));
    bool *keep = calloc(ALTP2M_MAX_KSLOTS, sizeof(*keep));
    int n = next && keep ? 0 : -ENOMEM, rc;
    if (!n && identity) {
        memcpy(next, host, nh * sizeof(*next));
        n = (int)nh;
    } else if (!n) {
        n = altp2m_layout(p->alt, p->alt->active, hs, nh, next, ALTP2M_MAX_KSLOTS);
    }
    const struct altp2m_kslot *cur = p->alt_realised ? p->kslots : host;
    unsigned nc = p->alt_realised ? p->nr_kslots : nh;
    rc = n < 0 ? n : assign_ids(cur, nc, host, nh, next, (unsigned)n, keep);
    if (!rc)
        rc = apply_diff(p, cur, nc, next, (unsigned)n, keep);
    free(keep);
    if (rc) {
        free(next);
        return rc;
    }
    free(p->kslots);
    p->kslots = identity ? NULL : next;
    p->nr_kslots = identity ? 0 : (unsigned)n;
    p->alt_realised = !identity;
    if (identity)
        free(next);
    return 0;
}

void p2m_altp2m_host_changed(struct p2m *p, uint64_t gfn)
{
    if (p->alt && altp2m_forget_gfn(p->alt, gfn) && p2m_altp2m_realise(p))
        log_warn("d%u: altp2m: view not realised again after a change at gfn %#llx",
                 p->domid, (unsigned long long)gfn);
}

static bool own_ram(const struct p2m *p, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(p, gfn);
    return mfn != INVALID_MFN && !p2m_is_foreign(p, gfn) && mfn < p->mm->nr_frames &&
           mm_frame_type(p->mm, mfn) == FRAME_RAM && p->mm->frames[mfn].owner == p->domid;
}

int p2m_altp2m_install(struct p2m *p, struct altp2m *a)
{
    if (a->nr_gfns != p->nr_gfns)
        return -EINVAL;
    pthread_rwlock_wrlock(&p->lock);
    int rc = p->alt ? -EEXIST : 0;
    for (unsigned i = 0; i < ALTP2M_MAX_VIEWS && !rc; i++)
        for (unsigned r = 0; r < a->views[i].nr_remaps && !rc; r++)
            if (!own_ram(p, a->views[i].remaps[r].gfn) ||
                !own_ram(p, a->views[i].remaps[r].target))
                rc = -EINVAL;
    if (!rc) {
        p->alt = a;
        if ((rc = p2m_altp2m_realise(p)))
            p->alt = NULL;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

void p2m_altp2m_off(struct p2m *p)
{
    if (!p->alt)
        return;
    p->alt->active = 0;
    altp2m_fini(p->alt);
    altp2m_init(p->alt, p->nr_gfns);    /* view 0 only: the identity */
    if (p->alt_realised && p2m_altp2m_realise(p))
        log_warn("d%u: altp2m: the host's memslots did not come back", p->domid);
    free(p->alt);
    p->alt = NULL;
}

void *p2m_ptr_view(const struct p2m *p, uint64_t gpa, uint64_t len, bool write,
                   bool *violation)
{
    *violation = false;
    if (!p->alt || !len)
        return p2m_ptr_guest(p, gpa, len, write);
    uint64_t first = gpa >> XKVM_PAGE_SHIFT, last = (gpa + len - 1) >> XKVM_PAGE_SHIFT;
    if (first >= p->nr_gfns || last >= p->nr_gfns)
        return NULL;
    for (uint64_t g = first; g <= last; g++)
        if (p2m_lookup(p, g) != INVALID_MFN && !altp2m_allows(p->alt, g, write)) {
            *violation = true;
            return NULL;
        }
    return p2m_ptr_view_once(p, gpa, len, write);
}

void *p2m_ptr_view_once(const struct p2m *p, uint64_t gpa, uint64_t len, bool write)
{
    if (!p->alt || !len)
        return p2m_ptr_guest(p, gpa, len, write);
    uint64_t first = gpa >> XKVM_PAGE_SHIFT, last = (gpa + len - 1) >> XKVM_PAGE_SHIFT;
    if (first >= p->nr_gfns || last >= p->nr_gfns)
        return NULL;
    uint64_t target = altp2m_target(p->alt, p->alt->active, first);
    if (first != last)      /* across two pages: only where neither is remapped */
        return target == first && altp2m_target(p->alt, p->alt->active, last) == last ?
               p2m_ptr_guest(p, gpa, len, write) : NULL;
    if (target == first)
        return p2m_ptr_guest(p, gpa, len, write);
    uint64_t off = gpa & (XKVM_PAGE_SIZE - 1);
    return p2m_ptr_guest(p, (target << XKVM_PAGE_SHIFT) + off, len, write);
}
