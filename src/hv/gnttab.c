/*
 * Grant tables v1 and v2: the shared and status frames, active entries, pins and dom0
 * mappings (hypervisor.md "Grant tables").
 */
#include "hv/gnttab.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xen/grant_table.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "util/log.h"

/* Pins by other domains (copies) and dom0 services (maps) of one entry. */
struct active_grant {
    uint32_t readers;       /* read-only pins */
    uint32_t writers;       /* writable pins */
    uint32_t dom0_maps;     /* of the pins, how many are dom0 mappings */
    uint16_t domid;         /* the domain holding the pins */
    uint64_t gfn, mfn;      /* the frame, fixed at the first pin */
};

struct dom0_grant_map {
    uint32_t ref;
    bool readonly;
    bool used;
};

/* One grant mapping this domain holds of another domain's grant (its maptrack). */
enum maptrack_state { MT_FREE = 0, MT_BUSY, MT_MAPPED };
struct maptrack {
    uint8_t state;          /* MT_BUSY: being mapped or unmapped, not usable */
    bool readonly;
    uint16_t domid;         /* the granting domain */
    uint32_t ref;
    uint64_t serial;        /* the granting table's serial: domids are reused */
    uint64_t gfn, mfn;      /* where in this domain's p2m, and the frame */
};

struct gnttab {
    pthread_mutex_t lock;
    unsigned version;
    unsigned nr_frames;
    uint64_t mfn[GNTTAB_MAX_FRAMES];
    uint64_t gfn[GNTTAB_MAX_FRAMES];        /* where last placed; checked on use */
    /* Indexed as v1 (512 a frame) in both versions: v2 uses the first half of the refs. */
    struct active_grant *active[GNTTAB_MAX_FRAMES];
    unsigned nr_status;                     /* v2: status frames in use; 0 in v1 */
    unsigned nr_status_alloc;               /* allocated, kept across version switches */
    uint64_t status_mfn[GNTTAB_MAX_STATUS_FRAMES];
    uint64_t status_gfn[GNTTAB_MAX_STATUS_FRAMES];
    struct dom0_grant_map *maps;
    uint32_t nr_maps;                       /* slots allocated in maps */
    uint64_t serial;                        /* unique per table, never reused */
    struct maptrack *mt;                    /* this domain's mappings of others' grants */
    uint32_t nr_mt, mt_used;                /* allocated, not MT_FREE */
};

static uint64_t next_serial = 1;

/* A pin count that cannot overflow even with every vCPU of every domain copying. */
#define MAX_PINS (1u << 24)
/* Frames a guest may grant: its RAM and the toolstack's pages, never Xen's own. */
#define GRANTABLE_TYPES ((1u << FRAME_RAM) | (1u << FRAME_SPECIAL))

static inline struct active_grant *active_of(struct gnttab *gt, uint32_t ref)
{
    return &gt->active[ref / GNTTAB_ENTRIES_PER_FRAME][ref % GNTTAB_ENTRIES_PER_FRAME];
}

/* Entries the table holds now: 512 a frame in v1, 256 in v2. */
static inline uint32_t nr_entries(const struct gnttab *gt)
{
    return gt->nr_frames * (gt->version == 2 ? GNTTAB_V2_ENTRIES_PER_FRAME
                                             : GNTTAB_ENTRIES_PER_FRAME);
}

/*
 * The shared entry in machine memory; the guest writes it concurrently. Both layouts
 * start with flags (low 16 bits) and domid (high 16 bits) in one 32-bit word.
 */
static inline void *shared_of(struct gnttab *gt, uint32_t ref)
{
    unsigned per = gt->version == 2 ? GNTTAB_V2_ENTRIES_PER_FRAME : GNTTAB_ENTRIES_PER_FRAME;
    uint8_t *frame = mm_frame_ptr(host_mm(), gt->mfn[ref / per]);
    return frame + (ref % per) * (gt->version == 2 ? sizeof(grant_entry_v2_t)
                                                   : sizeof(grant_entry_v1_t));
}

/* Where GTF_reading/GTF_writing live: the entry's flags (v1), the status frame (v2). */
static inline uint16_t *status_of(struct gnttab *gt, uint32_t ref)
{
    if (gt->version != 2)
        return &((grant_entry_v1_t *)shared_of(gt, ref))->flags;
    uint16_t *frame = mm_frame_ptr(host_mm(), gt->status_mfn[ref / GNTTAB_STATUS_PER_FRAME]);
    return &frame[ref % GNTTAB_STATUS_PER_FRAME];
}

/* The granted frame named by the entry (v2: full_page.frame). */
static inline uint64_t frame_of(struct gnttab *gt, uint32_t ref)
{
    if (gt->version == 2)
        return __atomic_load_n(&((grant_entry_v2_t *)shared_of(gt, ref))->full_page.frame,
                               __ATOMIC_ACQUIRE);
    return __atomic_load_n(&((grant_entry_v1_t *)shared_of(gt, ref))->frame, __ATOMIC_ACQUIRE);
}

/* v2 status frames for nr shared frames (2048 status words a frame). */
static unsigned status_frames_for(unsigned nr)
{
    return (nr * GNTTAB_V2_ENTRIES_PER_FRAME + GNTTAB_STATUS_PER_FRAME - 1) /
           GNTTAB_STATUS_PER_FRAME;
}

/* v2: allocate (or reuse) zeroed status frames to cover the shared frames. */
static int grow_status_locked(struct domain *d, struct gnttab *gt)
{
    unsigned want = status_frames_for(gt->nr_frames);
    while (gt->nr_status < want) {
        unsigned i = gt->nr_status;
        if (i == gt->nr_status_alloc) {
            uint64_t mfn;
            if (mm_alloc_run(host_mm(), 1, d->domid, FRAME_GRANT, &mfn) != 1)
                return -ENOMEM;
            gt->status_mfn[i] = mfn;
            gt->nr_status_alloc = i + 1;
        }
        memset(mm_frame_ptr(host_mm(), gt->status_mfn[i]), 0, XKVM_PAGE_SIZE);
        gt->status_gfn[i] = INVALID_GFN;
        gt->nr_status = i + 1;
    }
    return 0;
}

static int grow_locked(struct domain *d, struct gnttab *gt, unsigned nr)
{
    if (nr > GNTTAB_MAX_FRAMES)
        return -EINVAL;
    while (gt->nr_frames < nr) {
        unsigned i = gt->nr_frames;
        struct active_grant *act = calloc(GNTTAB_ENTRIES_PER_FRAME, sizeof(*act));
        uint64_t mfn;
        if (!act)
            return -ENOMEM;
        if (mm_alloc_run(host_mm(), 1, d->domid, FRAME_GRANT, &mfn) != 1) {
            free(act);
            return -ENOMEM;
        }
        gt->active[i] = act;
        gt->mfn[i] = mfn;
        gt->gfn[i] = INVALID_GFN;
        gt->nr_frames = i + 1;
    }
    return gt->version == 2 ? grow_status_locked(d, gt) : 0;
}

int gnttab_domain_init(struct domain *d)
{
    struct gnttab *gt = calloc(1, sizeof(*gt));
    if (!gt)
        return -ENOMEM;
    pthread_mutex_init(&gt->lock, NULL);
    /* Version 1 from the start: Xen's default, and all xkvm offers. */
    gt->version = 1;
    gt->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
    d->gt = gt;
    return grow_locked(d, gt, GNTTAB_INITIAL_FRAMES);
}

static void maptrack_fini(struct domain *d);

void gnttab_domain_fini(struct domain *d)
{
    struct gnttab *gt = d->gt;
    if (!gt)
        return;
    maptrack_fini(d);
    /*
     * Other domains' copies hold domain refs, so only maps can be left: dom0's and
     * other guests'. Each keeps its own reference on the frame, so what it maps
     * lives on as an orphan until it unmaps; the pin's reference goes now.
     */
    for (unsigned f = 0; f < gt->nr_frames; f++) {
        for (unsigned i = 0; i < GNTTAB_ENTRIES_PER_FRAME; i++) {
            struct active_grant *act = &gt->active[f][i];
            if (act->readers + act->writers)
                mm_frame_put(host_mm(), act->mfn);
        }
        free(gt->active[f]);
    }
    /* The frames themselves are the domain's: mm_free_owner returns them. */
    free(gt->maps);
    free(gt->mt);
    pthread_mutex_destroy(&gt->lock);
    free(gt);
    d->gt = NULL;
}

uint64_t gnttab_frame_mfn(struct domain *d, uint64_t idx)
{
    struct gnttab *gt = d->gt;
    if (idx >= GNTTAB_MAX_FRAMES)
        return INVALID_MFN;
    pthread_mutex_lock(&gt->lock);
    uint64_t mfn = INVALID_MFN;
    if (!grow_locked(d, gt, (unsigned)idx + 1))
        mfn = gt->mfn[idx];
    pthread_mutex_unlock(&gt->lock);
    return mfn;
}

void gnttab_frame_placed(struct domain *d, uint64_t idx, uint64_t gfn)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    if (idx < gt->nr_frames)
        gt->gfn[idx] = gfn;
    pthread_mutex_unlock(&gt->lock);
}

unsigned gnttab_nr_frames(struct domain *d)
{
    pthread_mutex_lock(&d->gt->lock);
    unsigned n = d->gt->nr_frames;
    pthread_mutex_unlock(&d->gt->lock);
    return n;
}

int gnttab_grow(struct domain *d, unsigned nr)
{
    pthread_mutex_lock(&d->gt->lock);
    int rc = grow_locked(d, d->gt, nr);
    pthread_mutex_unlock(&d->gt->lock);
    return rc;
}

static uint64_t frame_gfn_locked(struct domain *d, struct gnttab *gt, unsigned idx)
{
    if (idx >= gt->nr_frames || gt->gfn[idx] == INVALID_GFN)
        return INVALID_GFN;
    return p2m_lookup(&d->p2m, gt->gfn[idx]) == gt->mfn[idx] ? gt->gfn[idx] : INVALID_GFN;
}

uint64_t gnttab_frame_gfn(struct domain *d, unsigned idx)
{
    pthread_mutex_lock(&d->gt->lock);
    uint64_t gfn = frame_gfn_locked(d, d->gt, idx);
    pthread_mutex_unlock(&d->gt->lock);
    return gfn;
}

/* Whether an entry's header (flags | domid << 16) lets ldomid pin it. */
static bool entry_permits(uint32_t hdr, unsigned version, uint16_t ldomid, bool readonly)
{
    uint16_t flags = (uint16_t)hdr, domid = (uint16_t)(hdr >> 16);
    if ((flags & GTF_type_mask) != GTF_permit_access || domid != ldomid)
        return false;               /* v2 transitive grants are refused (hypervisor.md) */
    if (version == 2 && (flags & GTF_sub_page))
        return false;               /* v2 sub-page grants are refused (hypervisor.md) */
    return readonly || !(flags & GTF_readonly);
}

/*
 * Set GTF_reading (and GTF_writing) in the shared entry. The guest may rewrite the
 * entry at any moment: flags and domid are one 32-bit word, updated by compare and
 * swap and checked again on every retry, as Xen's _set_status_v1 does.
 */
static int set_status_v1(grant_entry_v1_t *sha, bool pinned, uint16_t ldomid, bool readonly)
{
    uint32_t *word = (uint32_t *)sha;       /* flags in the low half, domid above */
    uint32_t seen = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (unsigned tries = 0;; tries++) {
        uint16_t flags = (uint16_t)seen;
        if (!pinned && !entry_permits(seen, 1, ldomid, true))
            return GNTST_general_error;
        uint32_t want = seen | GTF_reading;
        if (!readonly) {
            if (flags & GTF_readonly)
                return GNTST_general_error;
            want |= GTF_writing;
        }
        if (__atomic_compare_exchange_n(word, &seen, want, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return GNTST_okay;
        if (tries == 4)
            return GNTST_general_error;     /* the guest keeps changing it */
    }
}

/*
 * v2 (Xen's _set_status_v2): check the header, set the bits in the status word, then
 * check the header again; if the guest changed it meanwhile, undo and fail.
 */
static int set_status_v2(struct gnttab *gt, uint32_t ref, bool pinned, uint16_t ldomid,
                         bool readonly)
{
    uint32_t *hdr = shared_of(gt, ref);
    uint16_t *status = status_of(gt, ref);
    uint32_t seen = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
    if (pinned ? !readonly && ((uint16_t)seen & GTF_readonly)
               : !entry_permits(seen, 2, ldomid, readonly))
        return GNTST_general_error;
    uint16_t bits = readonly ? GTF_reading : GTF_reading | GTF_writing;
    uint16_t old = __atomic_fetch_or(status, bits, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(hdr, __ATOMIC_SEQ_CST) != seen) {
        __atomic_fetch_and(status, (uint16_t)~(bits & ~old), __ATOMIC_RELEASE);
        return GNTST_general_error;
    }
    return GNTST_okay;
}

static int set_status(struct gnttab *gt, uint32_t ref, bool pinned, uint16_t ldomid,
                      bool readonly)
{
    if (gt->version == 2)
        return set_status_v2(gt, ref, pinned, ldomid, readonly);
    return set_status_v1(shared_of(gt, ref), pinned, ldomid, readonly);
}

static void clear_flags(struct gnttab *gt, uint32_t ref, uint16_t bits)
{
    __atomic_fetch_and(status_of(gt, ref), (uint16_t)~bits, __ATOMIC_RELEASE);
}

static int acquire_locked(struct domain *rd, struct gnttab *gt, uint32_t ref,
                          uint16_t ldomid, bool readonly, uint64_t *mfn)
{
    if (ref >= nr_entries(gt))
        return GNTST_bad_gntref;
    struct active_grant *act = active_of(gt, ref);
    uint32_t pins = act->readers + act->writers;
    if (pins && (act->domid != ldomid || pins >= MAX_PINS))
        return GNTST_general_error;
    if (!pins || (!readonly && !act->writers)) {
        int rc = set_status(gt, ref, pins != 0, ldomid, readonly);
        if (rc != GNTST_okay)
            return rc;
    }
    if (!pins) {
        /* The guest may not change the frame of an entry in use: read it once. */
        uint64_t gfn = frame_of(gt, ref);
        uint64_t m = p2m_lookup(&rd->p2m, gfn);
        if (m == INVALID_MFN || mm_frame_get(host_mm(), m, rd->domid, GRANTABLE_TYPES)) {
            clear_flags(gt, ref, readonly ? GTF_reading : GTF_reading | GTF_writing);
            return GNTST_bad_page;
        }
        act->domid = ldomid;
        act->gfn = gfn;
        act->mfn = m;
    }
    if (readonly)
        act->readers++;
    else
        act->writers++;
    *mfn = act->mfn;
    return GNTST_okay;
}

static void release_locked(struct gnttab *gt, uint32_t ref, bool readonly)
{
    struct active_grant *act = active_of(gt, ref);
    if (readonly ? !act->readers : !act->writers)
        return;
    if (readonly)
        act->readers--;
    else
        act->writers--;
    if (!act->writers)
        clear_flags(gt, ref, GTF_writing);
    if (!act->readers && !act->writers) {
        clear_flags(gt, ref, GTF_reading);
        mm_frame_put(host_mm(), act->mfn);
        act->mfn = act->gfn = 0;
    }
}

int gnttab_acquire(struct domain *rd, uint32_t ref, uint16_t ldomid, bool readonly,
                   uint64_t *mfn)
{
    pthread_mutex_lock(&rd->gt->lock);
    int rc = acquire_locked(rd, rd->gt, ref, ldomid, readonly, mfn);
    pthread_mutex_unlock(&rd->gt->lock);
    return rc;
}

void gnttab_release(struct domain *rd, uint32_t ref, bool readonly)
{
    pthread_mutex_lock(&rd->gt->lock);
    if (ref < nr_entries(rd->gt))
        release_locked(rd->gt, ref, readonly);
    pthread_mutex_unlock(&rd->gt->lock);
}

static int map_slot_locked(struct gnttab *gt)
{
    for (uint32_t h = 0; h < gt->nr_maps; h++)
        if (!gt->maps[h].used)
            return (int)h;
    if (gt->nr_maps == GNTTAB_MAX_DOM0_MAPS)
        return -ENOSPC;
    uint32_t n = gt->nr_maps ? gt->nr_maps * 2 : 16;
    struct dom0_grant_map *m = realloc(gt->maps, n * sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (uint32_t h = gt->nr_maps; h < n; h++)
        m[h] = (struct dom0_grant_map){ 0 };
    gt->maps = m;
    int h = (int)gt->nr_maps;
    gt->nr_maps = n;
    return h;
}

int gnttab_dom0_map(struct domain *d, uint32_t ref, bool readonly, uint64_t *mfn,
                    uint32_t *handle)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    int rc, slot = map_slot_locked(gt);
    if (slot < 0) {
        rc = slot;
        goto out;
    }
    switch (acquire_locked(d, gt, ref, 0, readonly, mfn)) {
    case GNTST_okay:        rc = 0; break;
    case GNTST_bad_gntref:  rc = -EINVAL; goto out;
    case GNTST_bad_page:    rc = -EFAULT; goto out;
    default:                rc = -EACCES; goto out;
    }
    /* The caller's own reference, which outlives the pin and the domain. */
    if (mm_frame_get(host_mm(), *mfn, d->domid, GRANTABLE_TYPES)) {
        release_locked(gt, ref, readonly);
        rc = -EFAULT;
        goto out;
    }
    active_of(gt, ref)->dom0_maps++;
    gt->maps[slot] = (struct dom0_grant_map){ .ref = ref, .readonly = readonly, .used = true };
    if (!readonly)
        p2m_mark_dirty(&d->p2m, active_of(gt, ref)->gfn, 1);
    *handle = (uint32_t)slot;
out:
    pthread_mutex_unlock(&gt->lock);
    return rc;
}

int gnttab_dom0_unmap(struct domain *d, uint32_t handle)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    int rc = -EINVAL;
    if (handle < gt->nr_maps && gt->maps[handle].used) {
        struct dom0_grant_map *m = &gt->maps[handle];
        /* The service may have written the page while it had it (log-dirty). */
        if (!m->readonly)
            p2m_mark_dirty(&d->p2m, active_of(gt, m->ref)->gfn, 1);
        active_of(gt, m->ref)->dom0_maps--;
        release_locked(gt, m->ref, m->readonly);
        *m = (struct dom0_grant_map){ 0 };
        rc = 0;
    }
    pthread_mutex_unlock(&gt->lock);
    return rc;
}

void gnttab_dom0_mapped_gfns(struct domain *d, uint64_t *bitmap)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    for (uint32_t ref = 0; ref < nr_entries(gt); ref++) {
        struct active_grant *act = active_of(gt, ref);
        if (act->writers && act->gfn < d->p2m.nr_gfns)
            bitmap[act->gfn / 64] |= 1ull << (act->gfn % 64);
    }
    pthread_mutex_unlock(&gt->lock);
}

/* ---- grant mappings between guests ---------------------------------------------- */

/* A free maptrack entry of gt, marked busy: its handle, or -1 at the limit. Locked. */
static int64_t maptrack_get_locked(struct gnttab *gt)
{
    if (gt->mt_used < gt->nr_mt)
        for (uint32_t h = 0; h < gt->nr_mt; h++)
            if (gt->mt[h].state == MT_FREE) {
                gt->mt[h].state = MT_BUSY;
                gt->mt_used++;
                return h;
            }
    if (gt->nr_mt == GNTTAB_MAX_MAPTRACK)
        return -1;
    uint32_t n = gt->nr_mt ? gt->nr_mt * 2 : 64;
    if (n > GNTTAB_MAX_MAPTRACK)
        n = GNTTAB_MAX_MAPTRACK;
    struct maptrack *m = realloc(gt->mt, n * sizeof(*m));
    if (!m)
        return -1;
    for (uint32_t h = gt->nr_mt; h < n; h++)
        m[h] = (struct maptrack){ 0 };
    gt->mt = m;
    uint32_t h = gt->nr_mt;
    gt->nr_mt = n;
    gt->mt[h].state = MT_BUSY;
    gt->mt_used++;
    return h;
}

static void maptrack_put(struct gnttab *gt, uint32_t h)
{
    pthread_mutex_lock(&gt->lock);
    gt->mt[h] = (struct maptrack){ 0 };
    gt->mt_used--;
    pthread_mutex_unlock(&gt->lock);
}

/*
 * The granting side of a mapping going away: unpin in rd's table if rd is still the
 * domain that granted it (written pages marked dirty for its migration), then drop
 * the mapper's reference on the frame (an orphan's last one frees it).
 */
static void unpin_granter(const struct maptrack *m)
{
    struct domain *rd = domain_get_peer(m->domid);
    if (rd && rd->gt && rd->gt->serial == m->serial) {
        pthread_mutex_lock(&rd->gt->lock);
        if (m->ref < nr_entries(rd->gt)) {
            struct active_grant *act = active_of(rd->gt, m->ref);
            if (!m->readonly)
                p2m_mark_dirty(&rd->p2m, act->gfn, 1);
            release_locked(rd->gt, m->ref, m->readonly);
        }
        pthread_mutex_unlock(&rd->gt->lock);
    }
    if (rd)
        domain_put(rd);
    mm_frame_put(host_mm(), m->mfn);
}

int gnttab_map_foreign(struct domain *ld, struct domain *rd, uint32_t ref, uint64_t gfn,
                       bool readonly, uint32_t *handle)
{
    struct gnttab *lgt = ld->gt;
    pthread_mutex_lock(&lgt->lock);
    int64_t h = maptrack_get_locked(lgt);
    pthread_mutex_unlock(&lgt->lock);
    if (h < 0)
        return GNTST_no_device_space;
    struct maptrack m = { .state = MT_MAPPED, .readonly = readonly, .domid = rd->domid,
                          .ref = ref, .gfn = gfn, .serial = rd->gt->serial };
    int rc = gnttab_acquire(rd, ref, ld->domid, readonly, &m.mfn);
    if (rc != GNTST_okay) {
        maptrack_put(lgt, (uint32_t)h);
        return rc;
    }
    /* The mapper's own reference, which outlives the pin and the granting domain. */
    uint64_t old;
    bool got = !mm_frame_get(host_mm(), m.mfn, rd->domid, GRANTABLE_TYPES);
    if (!got || p2m_map_foreign(&ld->p2m, gfn, m.mfn, readonly, &old)) {
        if (got)
            mm_frame_put(host_mm(), m.mfn);
        gnttab_release(rd, ref, readonly);
        maptrack_put(lgt, (uint32_t)h);
        return GNTST_general_error;
    }
    /* As Xen, a RAM page that was at gfn stays the domain's, unreachable (hypervisor.md). */
    if (!readonly)
        p2m_mark_dirty(&rd->p2m, active_of(rd->gt, ref)->gfn, 1);
    pthread_mutex_lock(&lgt->lock);
    lgt->mt[h] = m;
    pthread_mutex_unlock(&lgt->lock);
    *handle = (uint32_t)h;
    return GNTST_okay;
}

int gnttab_unmap_foreign(struct domain *ld, uint32_t handle, uint64_t gfn)
{
    struct gnttab *lgt = ld->gt;
    pthread_mutex_lock(&lgt->lock);
    if (handle >= lgt->nr_mt || lgt->mt[handle].state != MT_MAPPED) {
        pthread_mutex_unlock(&lgt->lock);
        return GNTST_bad_handle;
    }
    struct maptrack m = lgt->mt[handle];
    if (gfn != INVALID_GFN && gfn != m.gfn) {
        pthread_mutex_unlock(&lgt->lock);
        return GNTST_general_error;
    }
    lgt->mt[handle].state = MT_BUSY;
    pthread_mutex_unlock(&lgt->lock);
    if (p2m_unmap_foreign(&ld->p2m, m.gfn, m.mfn)) {
        pthread_mutex_lock(&lgt->lock);
        lgt->mt[handle].state = MT_MAPPED;
        pthread_mutex_unlock(&lgt->lock);
        return GNTST_general_error;
    }
    unpin_granter(&m);
    maptrack_put(lgt, handle);
    return GNTST_okay;
}

uint32_t gnttab_foreign_maps(struct domain *ld)
{
    pthread_mutex_lock(&ld->gt->lock);
    uint32_t n = ld->gt->mt_used;
    pthread_mutex_unlock(&ld->gt->lock);
    return n;
}

/*
 * The mapping domain is going (its threads are gone): every mapping it holds is
 * released, the granters' entries unpinned. Its p2m holds no name on these frames.
 */
static void maptrack_fini(struct domain *d)
{
    struct gnttab *gt = d->gt;
    for (uint32_t h = 0; h < gt->nr_mt; h++)
        if (gt->mt[h].state == MT_MAPPED) {
            struct maptrack m = gt->mt[h];
            gt->mt[h] = (struct maptrack){ 0 };
            gt->mt_used--;
            unpin_granter(&m);
        }
}

static struct json_object *u64_or_null(uint64_t v, uint64_t invalid)
{
    return v == invalid ? NULL : json_object_new_int64((int64_t)v);
}

struct json_object *gnttab_state_json(struct domain *d)
{
    struct gnttab *gt = d->gt;
    struct json_object *o = json_object_new_object();
    if (!gt)
        return o;
    pthread_mutex_lock(&gt->lock);
    json_object_object_add(o, "version", json_object_new_int((int)gt->version));
    json_object_object_add(o, "nr_frames", json_object_new_int((int)gt->nr_frames));
    json_object_object_add(o, "max_frames", json_object_new_int(GNTTAB_MAX_FRAMES));
    struct json_object *frames = json_object_new_array();
    for (unsigned i = 0; i < gt->nr_frames; i++) {
        struct json_object *f = json_object_new_object();
        json_object_object_add(f, "idx", json_object_new_int((int)i));
        json_object_object_add(f, "mfn", json_object_new_int64((int64_t)gt->mfn[i]));
        json_object_object_add(f, "gfn", u64_or_null(frame_gfn_locked(d, gt, i), INVALID_GFN));
        json_object_array_add(frames, f);
    }
    json_object_object_add(o, "frames", frames);
    struct json_object *status = json_object_new_array();
    for (unsigned i = 0; i < gt->nr_status; i++) {
        uint64_t g = gt->status_gfn[i];
        if (g != INVALID_GFN && p2m_lookup(&d->p2m, g) != gt->status_mfn[i])
            g = INVALID_GFN;
        struct json_object *f = json_object_new_object();
        json_object_object_add(f, "idx", json_object_new_int((int)i));
        json_object_object_add(f, "mfn", json_object_new_int64((int64_t)gt->status_mfn[i]));
        json_object_object_add(f, "gfn", u64_or_null(g, INVALID_GFN));
        json_object_array_add(status, f);
    }
    json_object_object_add(o, "status_frames", status);
    struct json_object *active = json_object_new_array();
    for (uint32_t ref = 0; ref < nr_entries(gt); ref++) {
        struct active_grant *act = active_of(gt, ref);
        if (!act->readers && !act->writers)
            continue;
        struct json_object *a = json_object_new_object();
        json_object_object_add(a, "ref", json_object_new_int64(ref));
        json_object_object_add(a, "domid", json_object_new_int(act->domid));
        json_object_object_add(a, "gfn", json_object_new_int64((int64_t)act->gfn));
        json_object_object_add(a, "mfn", json_object_new_int64((int64_t)act->mfn));
        json_object_object_add(a, "flags",
            json_object_new_int(__atomic_load_n(status_of(gt, ref), __ATOMIC_RELAXED)));
        json_object_object_add(a, "readers", json_object_new_int64(act->readers));
        json_object_object_add(a, "writers", json_object_new_int64(act->writers));
        json_object_object_add(a, "dom0_maps", json_object_new_int64(act->dom0_maps));
        json_object_array_add(active, a);
    }
    json_object_object_add(o, "active", active);
    struct json_object *maps = json_object_new_array();
    for (uint32_t h = 0; h < gt->nr_maps; h++) {
        if (!gt->maps[h].used)
            continue;
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "handle", json_object_new_int64(h));
        json_object_object_add(m, "ref", json_object_new_int64(gt->maps[h].ref));
        json_object_object_add(m, "readonly", json_object_new_boolean(gt->maps[h].readonly));
        json_object_array_add(maps, m);
    }
    json_object_object_add(o, "dom0_maps", maps);
    struct json_object *mt = json_object_new_array();
    for (uint32_t h = 0; h < gt->nr_mt; h++) {
        if (gt->mt[h].state != MT_MAPPED)
            continue;
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "handle", json_object_new_int64(h));
        json_object_object_add(m, "domid", json_object_new_int(gt->mt[h].domid));
        json_object_object_add(m, "ref", json_object_new_int64(gt->mt[h].ref));
        json_object_object_add(m, "gfn", json_object_new_int64((int64_t)gt->mt[h].gfn));
        json_object_object_add(m, "mfn", json_object_new_int64((int64_t)gt->mt[h].mfn));
        json_object_object_add(m, "readonly", json_object_new_boolean(gt->mt[h].readonly));
        json_object_array_add(mt, m);
    }
    json_object_object_add(o, "maptrack", mt);
    pthread_mutex_unlock(&gt->lock);
    return o;
}

unsigned gnttab_version(struct domain *d)
{
    return d->gt->version;
}

/* ---- version 2: switching, status frames ------------------------------------------ */

/* A reserved entry (ref < GNTTAB_NR_RESERVED_ENTRIES) across a switch, v1-style. */
struct reserved_entry {
    uint16_t flags;         /* with GTF_reading/GTF_writing */
    uint16_t domid;
    uint64_t frame;
};

static void save_reserved(struct gnttab *gt, struct reserved_entry *r)
{
    for (uint32_t i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
        uint32_t hdr = __atomic_load_n((uint32_t *)shared_of(gt, i), __ATOMIC_ACQUIRE);
        uint16_t flags = (uint16_t)hdr;
        r[i] = (struct reserved_entry){ 0 };
        /* v2: only permit_access entries survive, as in Xen. */
        if (gt->version == 2 && (flags & GTF_type_mask) != GTF_permit_access)
            continue;
        r[i] = (struct reserved_entry){ .flags = flags | *status_of(gt, i),
                                        .domid = (uint16_t)(hdr >> 16),
                                        .frame = frame_of(gt, i) };
    }
}

static void load_reserved(struct gnttab *gt, const struct reserved_entry *r)
{
    for (uint32_t i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
        if (gt->version == 2) {
            grant_entry_v2_t *e = shared_of(gt, i);
            *status_of(gt, i) = r[i].flags & (GTF_reading | GTF_writing);
            e->hdr.flags = r[i].flags & (uint16_t)~(GTF_reading | GTF_writing);
            e->hdr.domid = r[i].domid;
            e->full_page.frame = r[i].frame;
        } else if (r[i].frame <= UINT32_MAX) {
            grant_entry_v1_t *e = shared_of(gt, i);
            *e = (grant_entry_v1_t){ .flags = r[i].flags, .domid = r[i].domid,
                                     .frame = (uint32_t)r[i].frame };
        }
    }
}

/* Xen 4.17's gnttab_set_version: only the reserved entries may be in use. */
static int set_version_locked(struct domain *d, struct gnttab *gt, unsigned version)
{
    if (version == gt->version)
        return 0;
    for (uint32_t ref = GNTTAB_NR_RESERVED_ENTRIES; ref < nr_entries(gt); ref++)
        if (active_of(gt, ref)->readers + active_of(gt, ref)->writers)
            return -EBUSY;
    /* v1 has the entries of 2 v2 frames in one: a pinned reserved entry stays at its ref. */
    struct reserved_entry r[GNTTAB_NR_RESERVED_ENTRIES];
    save_reserved(gt, r);
    unsigned old = gt->version;
    gt->version = version;
    if (version == 2 && grow_status_locked(d, gt)) {
        gt->version = old;
        return -ENOMEM;
    }
    if (version == 1) {
        /* As Xen: the status frames leave the guest's physmap. */
        for (unsigned i = 0; i < gt->nr_status; i++)
            if (gt->status_gfn[i] != INVALID_GFN &&
                p2m_lookup(&d->p2m, gt->status_gfn[i]) == gt->status_mfn[i])
                if (p2m_set_frame(&d->p2m, gt->status_gfn[i], INVALID_MFN, &(uint64_t){ 0 }))
                    log_warn("d%u: grant status frame %u stays at gfn %#llx", d->domid, i,
                             (unsigned long long)gt->status_gfn[i]);
        gt->nr_status = 0;
    }
    for (unsigned f = 0; f < gt->nr_frames; f++)
        memset(mm_frame_ptr(host_mm(), gt->mfn[f]), 0, XKVM_PAGE_SIZE);
    load_reserved(gt, r);
    return 0;
}

int gnttab_set_version(struct domain *d, unsigned version)
{
    if (version != 1 && version != 2)
        return -EINVAL;
    pthread_mutex_lock(&d->gt->lock);
    int rc = set_version_locked(d, d->gt, version);
    pthread_mutex_unlock(&d->gt->lock);
    return rc;
}

int gnttab_restore_version(struct domain *d, unsigned version)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    int rc = -EINVAL;
    if (version == 1 || version == 2) {
        gt->version = version;
        gt->nr_status = 0;
        rc = version == 2 ? grow_status_locked(d, gt) : 0;
    }
    pthread_mutex_unlock(&gt->lock);
    return rc;
}

unsigned gnttab_nr_status_frames(struct domain *d)
{
    pthread_mutex_lock(&d->gt->lock);
    unsigned n = d->gt->nr_status;
    pthread_mutex_unlock(&d->gt->lock);
    return n;
}

uint64_t gnttab_status_mfn(struct domain *d, uint64_t idx)
{
    struct gnttab *gt = d->gt;
    if (idx >= GNTTAB_MAX_STATUS_FRAMES)
        return INVALID_MFN;
    pthread_mutex_lock(&gt->lock);
    uint64_t mfn = INVALID_MFN;
    /* As Xen: grow the table (shared frames, then status) until status frame idx exists. */
    unsigned need = (unsigned)(idx + 1) * GNTTAB_STATUS_PER_FRAME / GNTTAB_V2_ENTRIES_PER_FRAME;
    if (gt->version == 2 && idx >= gt->nr_status)
        grow_locked(d, gt, need < GNTTAB_MAX_FRAMES ? need : GNTTAB_MAX_FRAMES);
    if (gt->version == 2 && idx < gt->nr_status)
        mfn = gt->status_mfn[idx];
    pthread_mutex_unlock(&gt->lock);
    return mfn;
}

void gnttab_status_placed(struct domain *d, uint64_t idx, uint64_t gfn)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    if (idx < gt->nr_status)
        gt->status_gfn[idx] = gfn;
    pthread_mutex_unlock(&gt->lock);
}

uint64_t gnttab_status_gfn(struct domain *d, unsigned idx)
{
    struct gnttab *gt = d->gt;
    pthread_mutex_lock(&gt->lock);
    uint64_t gfn = INVALID_GFN;
    if (idx < gt->nr_status && gt->status_gfn[idx] != INVALID_GFN &&
        p2m_lookup(&d->p2m, gt->status_gfn[idx]) == gt->status_mfn[idx])
        gfn = gt->status_gfn[idx];
    pthread_mutex_unlock(&gt->lock);
    return gfn;
}
