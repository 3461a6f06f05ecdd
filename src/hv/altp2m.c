/*
 * altp2m views: the state, the access checks and the memslot layout that realises a
 * view (src/hv/altp2m.h; docs/altp2m.md). No I/O: unit-tested in tests/unit/test-altp2m.c.
 */
#include "hv/altp2m.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int altp2m_init(struct altp2m *a, uint64_t nr_gfns)
{
    memset(a, 0, sizeof(*a));
    a->nr_gfns = nr_gfns;
    a->views[0] = (struct altp2m_view){ .present = true, .visible = true,
                                        .default_access = ALTP2M_ACCESS_RWX };
    return 0;
}

static void view_clear(struct altp2m_view *v)
{
    free(v->access);
    free(v->remaps);
    memset(v, 0, sizeof(*v));
}

void altp2m_fini(struct altp2m *a)
{
    for (unsigned i = 0; i < ALTP2M_MAX_VIEWS; i++)
        view_clear(&a->views[i]);
}

int altp2m_access_ok(unsigned access)
{
    switch (access) {
    case ALTP2M_ACCESS_N:
    case ALTP2M_ACCESS_RX:
    case ALTP2M_ACCESS_RWX:
    case ALTP2M_ACCESS_DEFAULT:
        return 0;
    default:
        /* r, w, rw, x, wx, rx2rw, n2rwx: an execute or write-only restriction. */
        return access <= ALTP2M_ACCESS_DEFAULT ? -EOPNOTSUPP : -EINVAL;
    }
}

int altp2m_check_view(const struct altp2m *a, unsigned view)
{
    return view < ALTP2M_MAX_VIEWS && a->views[view].present ? 0 : -EINVAL;
}

int altp2m_create(struct altp2m *a, unsigned default_access, unsigned *view)
{
    int rc = altp2m_access_ok(default_access);
    if (rc)
        return rc;
    if (default_access == ALTP2M_ACCESS_DEFAULT)
        default_access = ALTP2M_ACCESS_RWX;
    for (unsigned i = 1; i < ALTP2M_MAX_VIEWS; i++)
        if (!a->views[i].present) {
            a->views[i] = (struct altp2m_view){ .present = true, .visible = true,
                                                .default_access = (uint8_t)default_access };
            *view = i;
            return 0;
        }
    return -EINVAL;     /* Xen: no free slot in altp2m_p2m[] */
}

int altp2m_destroy(struct altp2m *a, unsigned view)
{
    if (view == 0 || altp2m_check_view(a, view))
        return -EINVAL;
    if (view == a->active)
        return -EBUSY;
    view_clear(&a->views[view]);
    return 0;
}

static unsigned raw_access(const struct altp2m_view *v, uint64_t gfn)
{
    uint8_t raw = v->access ? v->access[gfn] : 0;
    return raw ? raw - 1u : v->default_access;
}

unsigned altp2m_access(const struct altp2m *a, unsigned view, uint64_t gfn)
{
    if (altp2m_check_view(a, view) || gfn >= a->nr_gfns)
        return ALTP2M_ACCESS_RWX;
    return raw_access(&a->views[view], gfn);
}

void altp2m_put_raw(struct altp2m *a, unsigned view, uint64_t gfn, uint8_t raw)
{
    struct altp2m_view *v = &a->views[view];
    if (!v->access)
        return;     /* never allocated: every byte is still 0 */
    uint8_t was = v->access[gfn];
    v->access[gfn] = raw;
    v->nr_overrides += (raw != 0) - (was != 0);
}

int altp2m_set_access(struct altp2m *a, unsigned view, uint64_t gfn, unsigned access,
                      uint8_t *prev)
{
    int rc = altp2m_check_view(a, view);
    if (rc || (rc = altp2m_access_ok(access)))
        return rc;
    if (gfn >= a->nr_gfns)
        return -EINVAL;
    struct altp2m_view *v = &a->views[view];
    *prev = v->access ? v->access[gfn] : 0;
    uint8_t raw = access == ALTP2M_ACCESS_DEFAULT ? 0 : (uint8_t)(access + 1);
    if (raw && !v->access && !(v->access = calloc(a->nr_gfns, 1)))
        return -ENOMEM;
    altp2m_put_raw(a, view, gfn, raw);
    return 0;
}

/* Index of gfn's remapping in v, or where it would go (*found false). */
static unsigned remap_find(const struct altp2m_view *v, uint64_t gfn, bool *found)
{
    unsigned lo = 0, hi = v->nr_remaps;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (v->remaps[mid].gfn < gfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < v->nr_remaps && v->remaps[lo].gfn == gfn;
    return lo;
}

uint64_t altp2m_target(const struct altp2m *a, unsigned view, uint64_t gfn)
{
    if (altp2m_check_view(a, view))
        return gfn;
    bool found;
    const struct altp2m_view *v = &a->views[view];
    unsigned i = remap_find(v, gfn, &found);
    return found ? v->remaps[i].target : gfn;
}

int altp2m_change_gfn(struct altp2m *a, unsigned view, uint64_t gfn, uint64_t target,
                      uint64_t *prev)
{
    int rc = altp2m_check_view(a, view);
    if (rc)
        return rc;
    if (gfn >= a->nr_gfns || (target != ALTP2M_NO_GFN && target >= a->nr_gfns))
        return -EINVAL;
    struct altp2m_view *v = &a->views[view];
    bool found;
    unsigned i = remap_find(v, gfn, &found);
    *prev = found ? v->remaps[i].target : ALTP2M_NO_GFN;
    if (target == gfn)
        target = ALTP2M_NO_GFN;
    if (target == ALTP2M_NO_GFN) {
        if (found) {
            memmove(&v->remaps[i], &v->remaps[i + 1],
                    (v->nr_remaps - i - 1) * sizeof(v->remaps[0]));
            v->nr_remaps--;
        }
        return 0;
    }
    if (found) {
        v->remaps[i].target = target;
        return 0;
    }
    if (v->nr_remaps >= ALTP2M_MAX_REMAPS)
        return -ENOMEM;
    if (!v->remaps && !(v->remaps = calloc(ALTP2M_MAX_REMAPS, sizeof(v->remaps[0]))))
        return -ENOMEM;
    memmove(&v->remaps[i + 1], &v->remaps[i], (v->nr_remaps - i) * sizeof(v->remaps[0]));
    v->remaps[i] = (struct altp2m_remap){ .gfn = gfn, .target = target };
    v->nr_remaps++;
    return 0;
}

bool altp2m_forget_gfn(struct altp2m *a, uint64_t gfn)
{
    bool any = false;
    for (unsigned i = 0; i < ALTP2M_MAX_VIEWS; i++) {
        struct altp2m_view *v = &a->views[i];
        unsigned k = 0;
        for (unsigned j = 0; j < v->nr_remaps; j++) {
            if (v->remaps[j].gfn == gfn || v->remaps[j].target == gfn)
                any = true;
            else
                v->remaps[k++] = v->remaps[j];
        }
        v->nr_remaps = k;
    }
    return any;
}

bool altp2m_view_is_identity(const struct altp2m *a, unsigned view)
{
    if (altp2m_check_view(a, view))
        return true;
    const struct altp2m_view *v = &a->views[view];
    if (v->nr_remaps)
        return false;
    if (v->default_access != ALTP2M_ACCESS_RWX)
        return false;
    if (!v->nr_overrides)
        return true;
    for (uint64_t g = 0; g < a->nr_gfns; g++)
        if (v->access[g] && v->access[g] != ALTP2M_ACCESS_RWX + 1)
            return false;
    return true;
}

bool altp2m_allows(const struct altp2m *a, uint64_t gfn, bool write)
{
    if (gfn >= a->nr_gfns)
        return true;
    unsigned acc = raw_access(&a->views[a->active], gfn);
    return write ? acc == ALTP2M_ACCESS_RWX : acc != ALTP2M_ACCESS_N;
}

/* ---- layout ---- */

enum gclass { G_HOLE, G_RO, G_RW, G_REMAP };

static enum gclass classify(const struct altp2m_view *v, uint64_t gfn, bool host_ro,
                            bool remapped)
{
    unsigned acc = raw_access(v, gfn);
    if (acc == ALTP2M_ACCESS_N)
        return G_HOLE;
    if (remapped)
        return G_REMAP;
    return host_ro || acc == ALTP2M_ACCESS_RX ? G_RO : G_RW;
}

struct layout_out {
    struct altp2m_kslot *s;
    unsigned n, max;
};

static int emit(struct layout_out *o, uint64_t gfn, uint64_t nr, uint64_t hva_gfn, bool ro)
{
    if (o->n >= o->max)
        return -ENOMEM;
    o->s[o->n++] = (struct altp2m_kslot){ .gfn = gfn, .nr = nr, .hva_gfn = hva_gfn,
                                          .readonly = ro };
    return 0;
}

/* One host slot, cut into runs of one class. */
static int layout_slot(const struct altp2m *a, const struct altp2m_view *v,
                       const struct altp2m_hslot *h, struct layout_out *o)
{
    uint64_t end = h->gfn + h->nr;
    bool found;
    unsigned ri = remap_find(v, h->gfn, &found);
    for (uint64_t g = h->gfn; g < end;) {
        bool remapped = ri < v->nr_remaps && v->remaps[ri].gfn == g;
        enum gclass c = classify(v, g, h->readonly, remapped);
        int rc = 0;
        if (c == G_REMAP) {
            rc = emit(o, g, 1, v->remaps[ri].target,
                      h->readonly || raw_access(v, g) == ALTP2M_ACCESS_RX);
            g++;
        } else {
            uint64_t run = 1;
            while (g + run < end && !(ri < v->nr_remaps && v->remaps[ri].gfn == g + run) &&
                   classify(v, g + run, h->readonly, false) == c)
                run++;
            if (c != G_HOLE)
                rc = emit(o, g, run, g, c == G_RO);
            g += run;
        }
        if (rc)
            return rc;
        while (ri < v->nr_remaps && v->remaps[ri].gfn < g)
            ri++;
    }
    (void)a;
    return 0;
}

int altp2m_layout(const struct altp2m *a, unsigned view, const struct altp2m_hslot *hs,
                  unsigned nh, struct altp2m_kslot *out, unsigned max)
{
    if (altp2m_check_view(a, view))
        return -EINVAL;
    struct layout_out o = { .s = out, .n = 0, .max = max };
    for (unsigned i = 0; i < nh; i++) {
        if (!hs[i].nr)
            continue;
        int rc = layout_slot(a, &a->views[view], &hs[i], &o);
        if (rc)
            return rc;
    }
    return (int)o.n;
}
