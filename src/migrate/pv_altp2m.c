/*
 * altp2m views in a domain context image (docs/altp2m.md, docs/domain-context.md
 * ALTP2M and ALTP2M_VIEW): saved as their differences from the host p2m, as the
 * issue's seed proposes, and put back after the host p2m and before the domain first
 * runs, every value checked again against this domain's memory.
 */
#include "migrate/pv_altp2m.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/hvm/params.h>

#include "hv/altp2m.h"
#include "hv/domain.h"

/* One view's body; NULL on no memory. Lock held (shared). */
static struct xkvm_ctx_altp2m_view *view_body(const struct altp2m *a, unsigned i)
{
    const struct altp2m_view *v = &a->views[i];
    uint64_t n = v->nr_overrides + v->nr_remaps;
    struct xkvm_ctx_altp2m_view *b = calloc(1, sizeof(*b) + n * sizeof(b->entries[0]));
    if (!b)
        return NULL;
    b->default_access = v->default_access;
    b->visible = v->visible;
    for (uint64_t g = 0; v->access && g < a->nr_gfns && b->nr_access < v->nr_overrides; g++)
        if (v->access[g] && v->access[g] - 1u != v->default_access)
            b->entries[b->nr_access++] = (struct xkvm_ctx_altp2m_entry){
                .gfn = g, .value = v->access[g] - 1u };
    for (unsigned r = 0; r < v->nr_remaps; r++)
        b->entries[b->nr_access + b->nr_remaps++] = (struct xkvm_ctx_altp2m_entry){
            .gfn = v->remaps[r].gfn, .value = v->remaps[r].target };
    return b;
}

int pv_save_altp2m(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen)
{
    struct p2m *p = &d->p2m;
    int rc = 0;
    p2m_hold(p);
    const struct altp2m *a = p->alt;
    uint64_t mode = __atomic_load_n(&d->hvm_params[HVM_PARAM_ALTP2M], __ATOMIC_RELAXED);
    if (a || mode) {
        struct xkvm_ctx_altp2m rec = { .mode = (uint8_t)mode, .state = a != NULL,
                                       .active = a ? (uint16_t)a->active : 0 };
        xkvm_ctx_write_altp2m(w, &rec);
    }
    for (unsigned i = 0; a && i < ALTP2M_MAX_VIEWS && !rc; i++) {
        if (!a->views[i].present)
            continue;
        struct xkvm_ctx_altp2m_view *b = view_body(a, i);
        if (!b) {
            snprintf(err, errlen, "d%u: out of memory encoding altp2m view %u", d->domid, i);
            rc = -ENOMEM;
            break;
        }
        xkvm_ctx_write_altp2m_view(w, i, b);
        free(b);
    }
    p2m_release(p);
    return rc;
}

/* The views of the image into a; 0 or -EINVAL with err. */
static int build_views(struct altp2m *a, const struct xkvm_ctx_altp2m_view *views[],
                       char *err, size_t errlen)
{
    for (unsigned i = 0; i < ALTP2M_MAX_VIEWS; i++) {
        const struct xkvm_ctx_altp2m_view *b = views[i];
        if (!b)
            continue;
        a->views[i] = (struct altp2m_view){ .present = true, .visible = b->visible,
                                            .default_access = b->default_access };
        uint8_t prev;
        uint64_t prev_gfn;
        for (uint64_t k = 0; k < b->nr_access; k++)
            if (altp2m_set_access(a, i, b->entries[k].gfn, (unsigned)b->entries[k].value,
                                  &prev)) {
                snprintf(err, errlen, "ALTP2M_VIEW %u: access at gfn %#llx outside the physmap",
                         i, (unsigned long long)b->entries[k].gfn);
                return -EINVAL;
            }
        for (uint32_t k = 0; k < b->nr_remaps; k++) {
            const struct xkvm_ctx_altp2m_entry *e = &b->entries[b->nr_access + k];
            if (altp2m_change_gfn(a, i, e->gfn, e->value, &prev_gfn)) {
                snprintf(err, errlen, "ALTP2M_VIEW %u: remapping of gfn %#llx refused", i,
                         (unsigned long long)e->gfn);
                return -EINVAL;
            }
        }
    }
    return 0;
}

int pv_restore_altp2m(struct domain *d, const void *img, size_t len, char *err, size_t errlen)
{
    const struct xkvm_ctx_altp2m *st = NULL;
    const struct xkvm_ctx_altp2m_view *views[ALTP2M_MAX_VIEWS] = { 0 };
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        if (rec.type == XKVM_CTX_ALTP2M)
            st = xkvm_ctx_get_altp2m(&rec);
        else if (rec.type == XKVM_CTX_ALTP2M_VIEW && rec.instance < ALTP2M_MAX_VIEWS)
            views[rec.instance] = xkvm_ctx_get_altp2m_view(&rec);
    }
    bool any_view = false;
    for (unsigned i = 0; i < ALTP2M_MAX_VIEWS; i++)
        any_view |= views[i] != NULL;
    if (!st) {
        if (!any_view)
            return 0;
        snprintf(err, errlen, "ALTP2M_VIEW records without an ALTP2M record");
        return -EINVAL;
    }
    d->hvm_params[HVM_PARAM_ALTP2M] = st->mode;
    if (!st->state) {
        if (!any_view)
            return 0;
        snprintf(err, errlen, "ALTP2M_VIEW records while altp2m is off");
        return -EINVAL;
    }
    if (!views[0] || !views[st->active]) {
        snprintf(err, errlen, "altp2m: view 0 or the active view %u is missing", st->active);
        return -EINVAL;
    }
    struct altp2m *a = malloc(sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    altp2m_init(a, d->p2m.nr_gfns);
    int rc = build_views(a, views, err, errlen);
    a->active = st->active;
    if (!rc && (rc = p2m_altp2m_install(&d->p2m, a)))
        snprintf(err, errlen, "altp2m: the views do not fit this domain: %s", strerror(-rc));
    if (rc) {
        altp2m_fini(a);
        free(a);
    }
    return rc;
}
