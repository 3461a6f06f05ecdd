/*
 * HVMOP_altp2m: alternate p2m views, from the guest (HVM_PARAM_ALTP2M mixed or limited)
 * and from the toolstack (control requests, as libxc's xc_altp2m_* ask Xen). The views
 * are altp2m.c's state in d->p2m.alt; every change that touches the active view is
 * realised in KVM's memslots before it is answered (p2m_altp2m.c), and undone whole
 * where that fails. docs/altp2m.md says what is refused and why.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

#include "hv/altp2m.h"
#include "hv/domain.h"
#include "hv/hypercall.h"

/* Sub-ops a guest may make itself in each mode (Xen 4.17's xsm dummy policy). */
static int guest_may(uint64_t mode, uint32_t cmd)
{
    switch (mode) {
    case XEN_ALTP2M_mixed:
        return 0;
    case XEN_ALTP2M_limited:
        return cmd == HVMOP_altp2m_vcpu_enable_notify ||
               cmd == HVMOP_altp2m_vcpu_disable_notify ? 0 : -EPERM;
    default:                /* external: the toolstack's alone */
        return -EPERM;
    }
}

static bool known_cmd(uint32_t cmd)
{
    return cmd >= HVMOP_altp2m_get_domain_state && cmd <= HVMOP_altp2m_set_visibility;
}

unsigned domain_altp2m_view(struct domain *d)
{
    p2m_hold(&d->p2m);
    unsigned v = d->p2m.alt ? d->p2m.alt->active : 0;
    p2m_release(&d->p2m);
    return v;
}

static int set_domain_state(struct domain *d, bool on)
{
    struct p2m *p = &d->p2m;
    if (on == (p->alt != NULL))
        return 0;
    if (!on) {
        p2m_altp2m_off(p);
        return 0;
    }
    if (p->log_dirty || d->migrating)
        return -EBUSY;      /* being saved or migrated */
    struct altp2m *a = malloc(sizeof(*a));
    if (!a || altp2m_init(a, p->nr_gfns)) {
        free(a);
        return -ENOMEM;
    }
    p->alt = a;
    return 0;
}

/* A change to view `view` done: realise it if active; else undo with `undo`. */
static int realise_or(struct p2m *p, unsigned view, void (*undo)(struct p2m *, void *),
                      void *arg)
{
    if (view != p->alt->active)
        return 0;
    int rc = p2m_altp2m_realise(p);
    if (rc)
        undo(p, arg);
    return rc;
}

struct access_undo {
    unsigned view, n;
    const uint64_t *gfns;
    const uint8_t *prev;
};

static void undo_access(struct p2m *p, void *arg)
{
    struct access_undo *u = arg;
    for (unsigned i = u->n; i-- > 0;)
        altp2m_put_raw(p->alt, u->view, u->gfns[i], u->prev[i]);
}

/* Lock held exclusive. */
static int set_access_locked(struct p2m *p, unsigned view, const uint64_t *gfns,
                             const uint8_t *access, unsigned n)
{
    uint8_t *prev = malloc(n ? n : 1);
    if (!prev)
        return -ENOMEM;
    struct access_undo u = { .view = view, .n = 0, .gfns = gfns, .prev = prev };
    int rc = 0;
    for (unsigned i = 0; i < n && !rc; i++) {
        if (gfns[i] >= p->nr_gfns || p2m_lookup(p, gfns[i]) == INVALID_MFN)
            rc = -EINVAL;   /* outside the physmap: Xen's altp2m_set_mem_access */
        else if (!(rc = altp2m_set_access(p->alt, view, gfns[i], access[i], &prev[i])))
            u.n = i + 1;
    }
    if (rc)
        undo_access(p, &u);
    else
        rc = realise_or(p, view, undo_access, &u);
    free(prev);
    return rc;
}

/*
 * A view change runs alone and with the domain's other vCPUs paused: memslots are
 * swapped under it (p2m_altp2m.c). A vCPU waiting for another's change counts as
 * parked meanwhile, so two vCPUs changing views never wait for each other.
 */
/*
 * A view change runs alone, with the domain's other vCPUs paused. A vCPU that finds
 * another change under way does not wait inside its exit (it would hold up a full
 * pause, which must find every vCPU at an instruction boundary): the hypercall is
 * re-executed, as Xen's domain_pause_except_self answers -ERESTART. The toolstack and
 * the monitor's switch (self NULL, or a vCPU already held for its monitor) wait.
 */
#define ALTP2M_RESTART 1

static int change_begin(struct domain *d, struct vcpu *self, bool may_restart)
{
    if (self && may_restart) {
        if (pthread_mutex_trylock(&d->altp2m_lock))
            return ALTP2M_RESTART;
    } else if (!self) {
        pthread_mutex_lock(&d->altp2m_lock);
    } else {
        while (pthread_mutex_trylock(&d->altp2m_lock))
            domain_park_self_briefly(d, self);
    }
    domain_pause_others(d, self);
    return 0;
}

static void change_end(struct domain *d)
{
    domain_unpause(d);
    pthread_mutex_unlock(&d->altp2m_lock);
}

int domain_altp2m_set_access_multi(struct domain *d, unsigned view, const uint64_t *gfns,
                                   const uint8_t *access, unsigned n, struct vcpu *self)
{
    struct p2m *p = &d->p2m;
    if (change_begin(d, self, true))
        return ALTP2M_RESTART;
    pthread_rwlock_wrlock(&p->lock);
    int rc = !p->alt ? -EOPNOTSUPP : altp2m_check_view(p->alt, view);
    if (!rc)
        rc = set_access_locked(p, view, gfns, access, n);
    pthread_rwlock_unlock(&p->lock);
    change_end(d);
    return rc;
}

struct remap_undo {
    unsigned view;
    uint64_t gfn, prev;
};

static void undo_remap(struct p2m *p, void *arg)
{
    struct remap_undo *u = arg;
    uint64_t ignored;
    altp2m_change_gfn(p->alt, u->view, u->gfn, u->prev, &ignored);
}

/* A frame a view may show elsewhere: the domain's own RAM, never a grant mapping. */
static bool remap_target_ok(const struct p2m *p, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(p, gfn);
    return mfn != INVALID_MFN && !p2m_is_foreign(p, gfn) && mfn < p->mm->nr_frames &&
           mm_frame_type(p->mm, mfn) == FRAME_RAM && p->mm->frames[mfn].owner == p->domid;
}

static int change_gfn_locked(struct p2m *p, struct xen_hvm_altp2m_change_gfn *c)
{
    if (c->pad1 || c->pad2)
        return -EINVAL;
    int rc = altp2m_check_view(p->alt, c->view);
    if (rc)
        return rc;
    uint64_t to = c->new_gfn == ~0ull ? ALTP2M_NO_GFN : c->new_gfn;
    if (!remap_target_ok(p, c->old_gfn) || (to != ALTP2M_NO_GFN && !remap_target_ok(p, to)))
        return -EINVAL;
    struct remap_undo u = { .view = c->view, .gfn = c->old_gfn };
    if ((rc = altp2m_change_gfn(p->alt, c->view, c->old_gfn, to, &u.prev)))
        return rc;
    return realise_or(p, c->view, undo_remap, &u);
}

static void undo_switch(struct p2m *p, void *arg)
{
    p->alt->active = *(unsigned *)arg;
}

static int switch_locked(struct p2m *p, unsigned view)
{
    int rc = altp2m_check_view(p->alt, view);
    if (rc)
        return rc;
    unsigned was = p->alt->active;
    p->alt->active = view;
    return realise_or(p, view, undo_switch, &was);
}

/* The sub-ops that change or read views; altp2m is on. Lock held exclusive. */
static int view_op_locked(struct domain *d, struct xen_hvm_altp2m_op *a, bool from_guest)
{
    struct p2m *p = &d->p2m;
    unsigned view;
    uint8_t acc;
    switch (a->cmd) {
    case HVMOP_altp2m_create_p2m: {
        int rc = altp2m_create(p->alt, a->u.view.hvmmem_default_access, &view);
        if (!rc)
            a->u.view.view = (uint16_t)view;
        return rc;
    }
    case HVMOP_altp2m_destroy_p2m:
        return altp2m_destroy(p->alt, a->u.view.view);
    case HVMOP_altp2m_switch_p2m:
        if (from_guest && !altp2m_check_view(p->alt, a->u.view.view) &&
            !p->alt->views[a->u.view.view].visible)
            return -EINVAL;
        return switch_locked(p, a->u.view.view);
    case HVMOP_altp2m_set_mem_access:
        if (a->u.mem_access.pad)
            return -EINVAL;
        if (altp2m_check_view(p->alt, a->u.mem_access.view))
            return -EINVAL;
        acc = (uint8_t)(a->u.mem_access.access > 0xff ? 0xff : a->u.mem_access.access);
        return set_access_locked(p, a->u.mem_access.view, &a->u.mem_access.gfn, &acc, 1);
    case HVMOP_altp2m_get_mem_access:
        if (a->u.mem_access.pad || altp2m_check_view(p->alt, a->u.mem_access.view))
            return -EINVAL;
        if (a->u.mem_access.gfn >= p->nr_gfns ||
            p2m_lookup(p, a->u.mem_access.gfn) == INVALID_MFN)
            return -ESRCH;
        a->u.mem_access.access = (uint16_t)altp2m_access(p->alt, a->u.mem_access.view,
                                                         a->u.mem_access.gfn);
        return 0;
    case HVMOP_altp2m_change_gfn:
        return change_gfn_locked(p, &a->u.change_gfn);
    case HVMOP_altp2m_set_visibility:
        if (a->u.set_visibility.pad || altp2m_check_view(p->alt, a->u.set_visibility.altp2m_idx))
            return -EINVAL;
        p->alt->views[a->u.set_visibility.altp2m_idx].visible = a->u.set_visibility.visible;
        return 0;
    default:
        return -EOPNOTSUPP;
    }
}

/* Sub-ops that need no view change: state, indexes, and what KVM cannot do. */
static int other_op(struct domain *d, struct xen_hvm_altp2m_op *a)
{
    switch (a->cmd) {
    case HVMOP_altp2m_get_domain_state:
        a->u.domain_state.state = d->p2m.alt != NULL;
        return 0;
    case HVMOP_altp2m_get_p2m_idx:
        if (a->u.get_vcpu_p2m_idx.vcpu_id >= d->nr_vcpus)
            return -EINVAL;
        a->u.get_vcpu_p2m_idx.altp2m_idx = (uint16_t)domain_altp2m_view(d);
        return 0;
    case HVMOP_altp2m_vcpu_enable_notify:
    case HVMOP_altp2m_vcpu_disable_notify:
    case HVMOP_altp2m_set_suppress_ve:
    case HVMOP_altp2m_set_suppress_ve_multi:
    case HVMOP_altp2m_get_suppress_ve:
        /* #VE needs EPT violations delivered to the guest: no KVM API has them. */
        return -EOPNOTSUPP;
    default:
        return 1;   /* not one of these */
    }
}

int domain_altp2m_op(struct domain *d, struct xen_hvm_altp2m_op *a, bool from_guest,
                     struct vcpu *self)
{
    if (a->version != HVMOP_ALTP2M_INTERFACE_VERSION || !known_cmd(a->cmd))
        return -EOPNOTSUPP;
    if (a->pad1 || a->pad2)
        return -EINVAL;
    uint64_t mode = __atomic_load_n(&d->hvm_params[HVM_PARAM_ALTP2M], __ATOMIC_RELAXED);
    if (a->cmd != HVMOP_altp2m_get_domain_state && a->cmd != HVMOP_altp2m_set_domain_state &&
        !d->p2m.alt)
        return -EOPNOTSUPP;
    if (mode == XEN_ALTP2M_disabled)
        return -EINVAL;
    int rc;
    if (from_guest && (rc = guest_may(mode, a->cmd)))
        return rc;
    if ((rc = other_op(d, a)) <= 0)
        return rc;
    if (change_begin(d, self, from_guest))
        return ALTP2M_RESTART;
    pthread_rwlock_wrlock(&d->p2m.lock);
    if (a->cmd == HVMOP_altp2m_set_domain_state)
        rc = set_domain_state(d, a->u.domain_state.state != 0);
    else if (!d->p2m.alt)       /* turned off while this call waited for the lock */
        rc = -EOPNOTSUPP;
    else
        rc = view_op_locked(d, a, from_guest);
    pthread_rwlock_unlock(&d->p2m.lock);
    change_end(d);
    return rc;
}

/* ---- the guest's hypercall ---- */

#define MULTI_CHUNK 256u
_Static_assert(offsetof(struct xen_hvm_altp2m_set_mem_access_multi, pfn_list) == 16,
               "set_mem_access_multi layout");

/* set_mem_access_multi: MULTI_CHUNK entries a call, the rest by continuation. */
static long guest_access_multi(struct hcall *hc, struct xen_hvm_altp2m_op *a)
{
    struct xen_hvm_altp2m_set_mem_access_multi *m = &a->u.set_mem_access_multi;
    if (m->pad || m->opaque > m->nr)
        return -EINVAL;
    uint64_t gfns[MULTI_CHUNK];
    uint8_t acc[MULTI_CHUNK];
    unsigned n = m->nr - (uint32_t)m->opaque;
    if (n > MULTI_CHUNK)
        n = MULTI_CHUNK;
    uint64_t pfns = (uint64_t)(uintptr_t)m->pfn_list.p, accs = (uint64_t)(uintptr_t)m->access_list.p;
    if (!hc->is64) {
        /* The compat layout: two 32-bit handles at offsets 16 and 20 of the sub-op. */
        uint32_t h[2];
        memcpy(h, (const uint8_t *)m + 16, sizeof(h));
        pfns = h[0];
        accs = h[1];
    }
    uint64_t gfn_at = pfns + m->opaque * sizeof(uint64_t);
    uint64_t acc_at = accs + m->opaque;
    if (n && (hc_copy_from(hc, gfns, gfn_at, n * sizeof(uint64_t)) ||
              hc_copy_from(hc, acc, acc_at, n)))
        return -EFAULT;
    int rc = domain_altp2m_set_access_multi(hc->d, m->view, gfns, acc, n, hc->v);
    if (rc == ALTP2M_RESTART) {
        hc->continuation = true;    /* another change runs: the same piece again */
        return 0;
    }
    if (rc)
        return rc;
    m->opaque += n;
    if (m->opaque < m->nr) {
        if (hc_copy_to(hc, hc->arg[1], a, sizeof(*a)))
            return -EFAULT;
        hc->continuation = true;
    }
    return 0;
}

long do_altp2m_op(struct hcall *hc)
{
    struct xen_hvm_altp2m_op a;
    if (hc_copy_from(hc, &a, hc->arg[1], sizeof(a)))
        return -EFAULT;
    if (a.domain != DOMID_SELF && a.domain != hc->d->domid)
        return domain_find_any(a.domain) ? -EPERM : -ESRCH;
    if (a.cmd == HVMOP_altp2m_set_mem_access_multi) {
        uint64_t mode = __atomic_load_n(&hc->d->hvm_params[HVM_PARAM_ALTP2M], __ATOMIC_RELAXED);
        if (a.version != HVMOP_ALTP2M_INTERFACE_VERSION)
            return -EOPNOTSUPP;
        if (a.pad1 || a.pad2)
            return -EINVAL;
        if (!hc->d->p2m.alt)
            return -EOPNOTSUPP;
        if (mode == XEN_ALTP2M_disabled)
            return -EINVAL;
        if (guest_may(mode, a.cmd))
            return -EPERM;
        return guest_access_multi(hc, &a);
    }
    long rc = domain_altp2m_op(hc->d, &a, true, hc->v);
    if (rc == ALTP2M_RESTART) {
        hc->continuation = true;    /* another change runs: the hypercall again */
        return 0;
    }
    if (!rc && hc_copy_to(hc, hc->arg[1], &a, sizeof(a)))
        return -EFAULT;
    return rc;
}
