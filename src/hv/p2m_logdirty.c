/*
 * Log-dirty for migration. KVM logs the guest's writes per memslot in a bitmap that
 * we fetch with KVM_GET_DIRTY_LOG and re-arm with KVM_CLEAR_DIRTY_LOG (manual
 * protect, enabled at VM creation), a chunk at a time so a large slot is never
 * write-protected in one go. Writes that do not go through the guest's MMU (xkvmd's
 * copies to guest memory, dom0 services' mappings) are marked in p->sw_dirty.
 */
#include "hv/p2m.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* Pages re-protected per KVM_CLEAR_DIRTY_LOG (a multiple of 64). */
#define CLEAR_CHUNK_PAGES (64u * 1024u)

static inline void set_bit_atomic(uint64_t *bm, uint64_t bit)
{
    __atomic_fetch_or(&bm[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
}

void p2m_mark_dirty(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    if (!__atomic_load_n(&p->log_dirty, __ATOMIC_ACQUIRE) || !p->sw_dirty)
        return;
    for (uint64_t g = gfn; g < gfn + nr && g < p->nr_gfns; g++)
        set_bit_atomic(p->sw_dirty, g);
}

/* Rewrite every memslot with the current log-dirty flag. p->lock held. */
static int reflag_slots(struct p2m *p)
{
    for (unsigned i = 0; p->alt_realised && i < p->nr_kslots; i++) {
        /* A realised altp2m view: KVM holds its memslots (p2m_altp2m.c). */
        const struct altp2m_kslot *k = &p->kslots[i];
        int rc = p2m_kvm_memslot(p, k->id, k->gfn, k->nr, k->hva_gfn, k->readonly);
        if (rc)
            return rc;
    }
    for (unsigned i = 0; !p->alt_realised && i < P2M_MAX_SLOTS; i++) {
        if (!p->slots[i].nr)
            continue;
        int rc = p2m_set_memslot(p, i, p->slots[i].gfn, p->slots[i].nr);
        if (rc)
            return rc;
    }
    return 0;
}

int p2m_log_dirty_enable(struct p2m *p)
{
    size_t words = (p->nr_gfns + 63) / 64;
    pthread_rwlock_wrlock(&p->lock);
    int rc = 0;
    if (!p->sw_dirty && !(p->sw_dirty = calloc(words, sizeof(uint64_t))))
        rc = -ENOMEM;
    if (!rc) {
        memset(p->sw_dirty, 0, words * sizeof(uint64_t));
        __atomic_store_n(&p->log_dirty, true, __ATOMIC_RELEASE);
        rc = reflag_slots(p);
        if (rc) {
            __atomic_store_n(&p->log_dirty, false, __ATOMIC_RELEASE);
            reflag_slots(p);
        }
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

void p2m_log_dirty_disable(struct p2m *p)
{
    pthread_rwlock_wrlock(&p->lock);
    __atomic_store_n(&p->log_dirty, false, __ATOMIC_RELEASE);
    reflag_slots(p);
    pthread_rwlock_unlock(&p->lock);
}

static int clear_chunked(struct p2m *p, unsigned slot, uint64_t nr, uint64_t *bm)
{
    for (uint64_t first = 0; first < nr; first += CLEAR_CHUNK_PAGES) {
        uint64_t n = nr - first < CLEAR_CHUNK_PAGES ? nr - first : CLEAR_CHUNK_PAGES;
        bool any = false;
        for (uint64_t w = first / 64; w < (first + n + 63) / 64 && !any; w++)
            any = bm[w] != 0;
        if (!any)
            continue;
        struct kvm_clear_dirty_log c = {
            .slot = slot, .num_pages = (uint32_t)n, .first_page = first,
            .dirty_bitmap = bm + first / 64,
        };
        if (ioctl(p->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
            return -errno;
    }
    return 0;
}

int64_t p2m_collect_dirty(struct p2m *p, uint64_t *bitmap)
{
    int64_t count = 0;
    uint64_t *bm = NULL;
    size_t bm_words = 0;
    int rc = 0;
    pthread_rwlock_rdlock(&p->lock);
    /* What KVM holds: the host's memslots, or a realised altp2m view's (p2m_altp2m.c). */
    unsigned nr = p->alt_realised ? p->nr_kslots : P2M_MAX_SLOTS;
    for (unsigned i = 0; i < nr && !rc; i++) {
        struct altp2m_kslot s;
        if (p->alt_realised)
            s = p->kslots[i];
        else
            s = (struct altp2m_kslot){ .gfn = p->slots[i].gfn, .nr = p->slots[i].nr,
                                       .hva_gfn = p->slots[i].gfn, .id = i,
                                       .readonly = p->slots[i].readonly };
        if (!s.nr || s.readonly)
            continue;       /* a read-only slot logs nothing (and KVM refuses to) */
        size_t words = (s.nr + 63) / 64;
        if (words > bm_words) {
            uint64_t *n = realloc(bm, words * sizeof(uint64_t));
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            bm = n;
            bm_words = words;
        }
        memset(bm, 0, words * sizeof(uint64_t));
        struct kvm_dirty_log log = { .slot = s.id, .dirty_bitmap = bm };
        if (ioctl(p->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
            rc = -errno;
            break;
        }
        /* Re-arm before the pages are read: a write after this is logged again. */
        if ((rc = clear_chunked(p, s.id, s.nr, bm)))
            break;
        for (size_t w = 0; w < words; w++) {
            uint64_t v = bm[w];
            while (v) {
                /* A write through a remapped gfn wrote its target's frame. */
                uint64_t g = s.hva_gfn + w * 64 + (uint64_t)__builtin_ctzll(v);
                v &= v - 1;
                if (!(bitmap[g / 64] & (1ull << (g % 64)))) {
                    bitmap[g / 64] |= 1ull << (g % 64);
                    count++;
                }
            }
        }
    }
    pthread_rwlock_unlock(&p->lock);
    free(bm);
    if (rc)
        return rc;
    if (p->sw_dirty) {
        for (size_t w = 0; w < (p->nr_gfns + 63) / 64; w++) {
            uint64_t v = __atomic_exchange_n(&p->sw_dirty[w], 0, __ATOMIC_ACQ_REL);
            count += __builtin_popcountll(v & ~bitmap[w]);
            bitmap[w] |= v;
        }
    }
    return count;
}
