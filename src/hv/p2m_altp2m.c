/*
 * altp2m views put into KVM (docs/altp2m.md). altp2m.c works out the memslots that
 * realise the active view over the host's; this file swaps KVM's memslots to them and
 * back, as one transaction: the new layout is computed and checked against
 * ALTP2M_MAX_KSLOTS before KVM is touched, and a failing step puts back the layout KVM
 * held. While the swap runs a vCPU may find RAM without a memslot: its access exits as
 * MMIO and handle_mmio does it through p2m_ptr_view, which checks the view, so no
 * moment lets the guest past a restriction.
 */
#include "hv/p2m.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static void kvm_drop(struct p2m *p, const struct altp2m_kslot *ks, unsigned n, unsigned base)
{
    for (unsigned i = 0; i < n; i++)
        p2m_kvm_memslot(p, base + i, ks[i].gfn, 0, ks[i].gfn, false);
}

static int kvm_add(struct p2m *p, const struct altp2m_kslot *ks, unsigned n, unsigned base)
{
    for (unsigned i = 0; i < n; i++) {
        int rc = p2m_kvm_memslot(p, base + i, ks[i].gfn, ks[i].nr, ks[i].hva_gfn,
                                 ks[i].readonly);
        if (rc) {
            kvm_drop(p, ks, i, base);
            return rc;
        }
    }
    return 0;
}

static void host_drop(struct p2m *p)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr)
            p2m_kvm_memslot(p, i, p->slots[i].gfn, 0, p->slots[i].gfn, false);
}

static int host_add(struct p2m *p)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++) {
        if (!p->slots[i].nr)
            continue;
        int rc = p2m_kvm_memslot(p, i, p->slots[i].gfn, p->slots[i].nr, p->slots[i].gfn,
                                 p->slots[i].readonly);
        if (rc) {
            for (unsigned j = 0; j < i; j++)
                if (p->slots[j].nr)
                    p2m_kvm_memslot(p, j, p->slots[j].gfn, 0, p->slots[j].gfn, false);
            return rc;
        }
    }
    return 0;
}

/* What KVM held goes; `next` (NULL: the host's) comes; on failure the old comes back. */
static int swap_layout(struct p2m *p, struct altp2m_kslot *next, unsigned n)
{
    bool was_view = p->alt_realised;
    if (was_view)
        kvm_drop(p, p->kslots, p->nr_kslots, P2M_MAX_SLOTS);
    else
        host_drop(p);
    int rc = next ? kvm_add(p, next, n, P2M_MAX_SLOTS) : host_add(p);
    if (rc) {
        /* Put back what was: the same layout KVM took a moment ago. */
        if (was_view)
            kvm_add(p, p->kslots, p->nr_kslots, P2M_MAX_SLOTS);
        else
            host_add(p);
        return rc;
    }
    if (next) {
        free(p->kslots);
        p->kslots = next;
        p->nr_kslots = n;
        p->alt_realised = true;
    } else {
        free(p->kslots);
        p->kslots = NULL;
        p->nr_kslots = 0;
        p->alt_realised = false;
    }
    return 0;
}

static unsigned host_slots(const struct p2m *p, struct altp2m_hslot *hs)
{
    unsigned n = 0;
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr) {
            unsigned j = n++;
            for (; j > 0 && hs[j - 1].gfn > p->slots[i].gfn; j--)
                hs[j] = hs[j - 1];
            hs[j] = (struct altp2m_hslot){ .gfn = p->slots[i].gfn, .nr = p->slots[i].nr,
                                           .readonly = p->slots[i].readonly };
        }
    return n;
}

int p2m_altp2m_realise(struct p2m *p)
{
    if (!p->alt)
        return 0;
    bool identity = altp2m_view_is_identity(p->alt, p->alt->active);
    if (identity)
        return p->alt_realised ? swap_layout(p, NULL, 0) : 0;
    if (p->log_dirty)
        return -EBUSY;      /* dirty logs are kept per host slot: docs/altp2m.md */
    static __thread struct altp2m_hslot hs[P2M_MAX_SLOTS];
    unsigned nh = host_slots(p, hs);
    struct altp2m_kslot *next = calloc(ALTP2M_MAX_KSLOTS, sizeof(*next));
    if (!next)
        return -ENOMEM;
    int n = altp2m_layout(p->alt, p->alt->active, hs, nh, next, ALTP2M_MAX_KSLOTS);
    int rc = n < 0 ? n : swap_layout(p, next, (unsigned)n);
    if (rc)
        free(next);
    return rc;
}

void p2m_altp2m_host_changed(struct p2m *p, uint64_t gfn)
{
    if (p->alt && altp2m_forget_gfn(p->alt, gfn) && p2m_altp2m_realise(p))
        log_warn("d%u: altp2m: view not realised again after a change at gfn %#llx",
                 p->domid, (unsigned long long)gfn);
}

void p2m_altp2m_off(struct p2m *p)
{
    if (!p->alt)
        return;
    p->alt->active = 0;
    altp2m_fini(p->alt);
    altp2m_init(p->alt, p->nr_gfns);    /* view 0 only: the identity */
    if (p->alt_realised)
        swap_layout(p, NULL, 0);
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
