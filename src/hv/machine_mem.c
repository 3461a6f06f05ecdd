#include "hv/machine_mem.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BITS 64

/* Frames from mfn to the end of its region (own memory, or its bank); 0 if none. */
static uint64_t mm_region_left(const struct machine_mem *mm, uint64_t mfn)
{
    if (mfn < mm->nr_frames)
        return mm->nr_frames - mfn;
    for (unsigned b = 0; b < mm->nr_banks; b++)
        if (mfn >= mm->banks[b].first && mfn < mm->banks[b].first + mm->banks[b].nr)
            return mm->banks[b].first + mm->banks[b].nr - mfn;
    return 0;
}

static inline int frame_is_free(const struct machine_mem *mm, uint64_t mfn)
{
    return (mm->free_bitmap[mfn / BITS] >> (mfn % BITS)) & 1;
}

static void mark_range(struct machine_mem *mm, uint64_t mfn, uint64_t nr, int free)
{
    uint64_t f = mfn, end = mfn + nr;
    for (; f < end && f % BITS; f++) {
        if (free)
            mm->free_bitmap[f / BITS] |= 1ULL << (f % BITS);
        else
            mm->free_bitmap[f / BITS] &= ~(1ULL << (f % BITS));
    }
    /* Whole words at once: start-up marks all of machine memory free. */
    for (; end - f >= BITS; f += BITS)
        mm->free_bitmap[f / BITS] = free ? ~0ULL : 0;
    for (; f < end; f++) {
        if (free)
            mm->free_bitmap[f / BITS] |= 1ULL << (f % BITS);
        else
            mm->free_bitmap[f / BITS] &= ~(1ULL << (f % BITS));
    }
}

/* The live-update region: MM_LU_REGION_FRAMES (at most an eighth) at the top. */
static void set_lu_region_top(struct machine_mem *mm)
{
    uint64_t nr = MM_LU_REGION_FRAMES;
    if (nr > mm->nr_frames / 8)
        nr = mm->nr_frames / 8 & ~(uint64_t)(BITS - 1);
    mm->lu_nr = nr;
    mm->lu_mfn = (mm->nr_frames - nr) & ~(uint64_t)(BITS - 1);
    if (mm->lu_mfn + nr > mm->nr_frames)
        mm->lu_nr = 0;
}

/* Anonymous, zeroed, reserved but not committed: room for the banks costs nothing. */
static void *reserve_zeroed(uint64_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Address space, frame table and bitmap entries for own frames and every bank. */
static uint64_t capacity_frames(const struct machine_mem *mm)
{
    return mm->nr_frames + MM_BANK_VA_FRAMES;
}

static void unmap_tables(struct machine_mem *mm)
{
    uint64_t cap = capacity_frames(mm);
    if (mm->base)
        munmap(mm->base, cap << XKVM_PAGE_SHIFT);
    if (mm->frames)
        munmap(mm->frames, cap * sizeof(*mm->frames));
    if (mm->free_bitmap)
        munmap(mm->free_bitmap, (cap + BITS - 1) / BITS * sizeof(uint64_t));
    mm->base = NULL;
    mm->frames = NULL;
    mm->free_bitmap = NULL;
}

/*
 * Map mm->fd (mm->nr_frames frames) and start a frame table with every frame free.
 * The mapping and the tables reserve room for banks after the own frames
 * (mm_bank_attach), so that mm->base + (mfn << 12) names every frame.
 * 0, or -errno with everything undone but the fd, which is the caller's.
 */
static int map_all_free(struct machine_mem *mm)
{
    uint64_t cap = capacity_frames(mm);
    void *va = mmap(NULL, cap << XKVM_PAGE_SHIFT, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    mm->base = va == MAP_FAILED ? NULL : va;
    if (mm->base && mmap(mm->base, mm->nr_frames << XKVM_PAGE_SHIFT, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_NORESERVE | MAP_FIXED, mm->fd, 0) == MAP_FAILED) {
        int e = errno;
        unmap_tables(mm);
        return -e;
    }
    mm->frames = reserve_zeroed(cap * sizeof(*mm->frames));
    mm->free_bitmap = reserve_zeroed((cap + BITS - 1) / BITS * sizeof(uint64_t));
    if (!mm->base || !mm->frames || !mm->free_bitmap) {
        unmap_tables(mm);
        return -ENOMEM;
    }
    /*
     * The table stays as calloc left it (owner 0, FRAME_FREE) until a frame is used:
     * the free bitmap says what is free, and not touching 8 bytes per frame keeps a
     * live update's start-up from growing with machine memory.
     */
    mark_range(mm, 0, mm->nr_frames, 1);
    mm->nr_free = mm->nr_frames;
    mm->nr_total = mm->nr_frames;
    pthread_mutex_init(&mm->lock, NULL);
    return 0;
}

int mm_init(struct machine_mem *mm, uint64_t bytes)
{
    memset(mm, 0, sizeof(*mm));
    mm->fd = -1;
    mm->nr_frames = bytes >> XKVM_PAGE_SHIFT;
    if (mm->nr_frames == 0)
        return -EINVAL;
    /* Not CLOEXEC: live update hands this fd to the next xkvmd. */
    mm->fd = memfd_create("xkvm-machine-memory", 0);
    if (mm->fd < 0)
        return -errno;
    int rc = ftruncate(mm->fd, (off_t)(mm->nr_frames << XKVM_PAGE_SHIFT)) < 0 ? -errno
                                                                               : map_all_free(mm);
    if (rc) {
        close(mm->fd);
        mm->fd = -1;
        return rc;
    }
    set_lu_region_top(mm);
    return 0;
}

void mm_fini(struct machine_mem *mm)
{
    unmap_tables(mm);
    if (mm->fd >= 0)
        close(mm->fd);
    for (unsigned b = 0; b < mm->nr_banks; b++)
        close(mm->banks[b].fd);
    mm->nr_banks = 0;
    mm->fd = -1;
}

/* Free frames [mfn, mfn + nr) become owner's, of type, named `maps` times. mm->lock held. */
static void take_named_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr,
                              uint16_t owner, enum frame_type type, uint8_t maps)
{
    mark_range(mm, mfn, nr, 0);
    for (uint64_t f = mfn; f < mfn + nr; f++)
        mm->frames[f] = (struct frame){ .owner = owner, .type = (uint8_t)type, .maps = maps };
    mm->nr_free -= nr;
}

static void take_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                        enum frame_type type)
{
    take_named_locked(mm, mfn, nr, owner, type, 0);
}

/*
 * Where a search may look: the live-update region alone while restoring from an
 * image, everything but it otherwise. Whether the word at w may be searched, and in
 * *hi the frame a run found there must stop before.
 */
static bool alloc_window(const struct machine_mem *mm, uint64_t w, uint64_t *hi)
{
    uint64_t f = w * BITS, lu_end = mm->lu_mfn + mm->lu_nr;
    bool in_lu = mm->lu_nr && f >= mm->lu_mfn && f < lu_end;
    if (mm->lu_only) {
        *hi = lu_end;
        return in_lu;
    }
    *hi = mm->lu_nr && f < mm->lu_mfn ? mm->lu_mfn : mm->nr_frames;
    return !in_lu;
}

uint64_t mm_alloc_run(struct machine_mem *mm, uint64_t want, uint16_t owner,
                      enum frame_type type, uint64_t *mfn)
{
    if (want == 0)
        return 0;
    pthread_mutex_lock(&mm->lock);
    uint64_t words = (mm->nr_frames + BITS - 1) / BITS;
    uint64_t got = 0, start = 0, hi = 0;
    for (uint64_t i = 0; i < words && got == 0; i++) {
        uint64_t w = (mm->search_hint + i) % words;
        if (!mm->free_bitmap[w] || !alloc_window(mm, w, &hi))
            continue;
        start = w * BITS + (uint64_t)__builtin_ctzll(mm->free_bitmap[w]);
        while (got < want && start + got < hi && frame_is_free(mm, start + got))
            got++;
    }
    if (got) {
        take_locked(mm, start, got, owner, type);
        mm->search_hint = (start + got) / BITS;
        *mfn = start;
    }
    pthread_mutex_unlock(&mm->lock);
    return got;
}

/*
 * Drop the contents of frames so the memory returns to the host and reads as zero
 * (preallocated own frames: zeroed, and kept).
 */
static void discard_frames(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    while (nr) {
        uint64_t off = 0, n = mm_region_left(mm, mfn);     /* up to the bank's edge */
        n = n < nr ? n : nr;
        int fd = mm_frame_fd(mm, mfn, &off);
        if (n == 0)
            return;
        bool keep = mm->prealloc && mfn < mm->nr_frames;
        if (keep || fd < 0 || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        (off_t)off, (off_t)(n << XKVM_PAGE_SHIFT)) < 0)
            memset(mm_frame_ptr(mm, mfn), 0, n << XKVM_PAGE_SHIFT);
        mfn += n;
        nr -= n;
    }
}

static inline bool frame_named(const struct frame *fr)
{
    return fr->refs || fr->maps;
}

/*
 * The invariant broken (a bug): stop here in debug builds, which the tests run; in a
 * release build keep the frame out of the allocator for good, and say so.
 */
static void invariant_broken(uint64_t mfn, const char *what)
{
    fprintf(stderr, "machine memory: frame %#llx: %s\n", (unsigned long long)mfn, what);
    assert(!"machine memory invariant broken");
}

static void release_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    for (uint64_t f = mfn; f < mfn + nr; f++)
        if (frame_named(&mm->frames[f])) {
            /* Never hand out a frame something still names: leak it instead. */
            invariant_broken(f, "released while still named");
            if (f > mfn)
                release_locked(mm, mfn, f - mfn);
            if (f + 1 < mfn + nr)
                release_locked(mm, f + 1, mfn + nr - f - 1);
            return;
        }
    /*
     * A live-update restore that fails frees what it built, but the frames it adopted
     * are the guests' memory, which the rollback needs: keep contents until then.
     */
    if (!mm->lu_only)
        discard_frames(mm, mfn, nr);
    for (uint64_t f = mfn; f < mfn + nr; f++) {
        if (mm_frame_in_bank(mm, f)) {
            /* Another xkvmd's memory: absent here once given back, never allocated. */
            mm->frames[f] = (struct frame){ .owner = DOMID_NONE, .type = FRAME_FREE };
            continue;
        }
        mm->frames[f] = (struct frame){ .owner = DOMID_NONE, .type = FRAME_FREE };
        mm->free_bitmap[f / BITS] |= 1ULL << (f % BITS);
        mm->nr_free++;
    }
}

/* Referenced frames become orphans, freed by their last mm_frame_put. */
static void free_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    for (uint64_t f = mfn; f < mfn + nr;) {
        if (frame_is_free(mm, f) || frame_named(&mm->frames[f])) {
            if (!frame_is_free(mm, f)) {
                mm->frames[f].owner = DOMID_HYPERVISOR;
                mm->frames[f].flags |= FRAME_ORPHAN;
            }
            f++;
            continue;
        }
        uint64_t run = 1;
        while (f + run < mfn + nr && !frame_is_free(mm, f + run) &&
               !frame_named(&mm->frames[f + run]))
            run++;
        release_locked(mm, f, run);
        f += run;
    }
}

int mm_frame_get(struct machine_mem *mm, uint64_t mfn, uint16_t owner, unsigned type_mask)
{
    if (mfn >= mm->nr_total)
        return -EINVAL;
    pthread_mutex_lock(&mm->lock);
    struct frame *fr = &mm->frames[mfn];
    int rc = -EINVAL;
    if (!frame_is_free(mm, mfn) && fr->owner == owner && !(fr->flags & FRAME_ORPHAN) &&
        ((1u << fr->type) & type_mask) && fr->refs < UINT32_MAX) {
        fr->refs++;
        rc = 0;
    }
    pthread_mutex_unlock(&mm->lock);
    return rc;
}

void mm_frame_put(struct machine_mem *mm, uint64_t mfn)
{
    if (mfn >= mm->nr_total)
        return;
    pthread_mutex_lock(&mm->lock);
    struct frame *fr = &mm->frames[mfn];
    if (fr->refs && --fr->refs == 0 && !fr->maps && (fr->flags & FRAME_ORPHAN))
        release_locked(mm, mfn, 1);
    pthread_mutex_unlock(&mm->lock);
}

int mm_map_get(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner)
{
    if (mfn >= mm->nr_total || nr > mm->nr_total - mfn)
        return -EINVAL;
    pthread_mutex_lock(&mm->lock);
    int rc = 0;
    for (uint64_t f = mfn; f < mfn + nr && !rc; f++) {
        const struct frame *fr = &mm->frames[f];
        if (frame_is_free(mm, f) || fr->owner != owner || (fr->flags & FRAME_ORPHAN))
            rc = -EINVAL;
        else if (fr->maps == FRAME_MAPS_MAX)
            rc = -EBUSY;
    }
    for (uint64_t f = mfn; f < mfn + nr && !rc; f++)
        mm->frames[f].maps++;
    pthread_mutex_unlock(&mm->lock);
    return rc;
}

void mm_map_put(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    if (mfn >= mm->nr_total || nr > mm->nr_total - mfn)
        return;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = mfn; f < mfn + nr; f++) {
        struct frame *fr = &mm->frames[f];
        if (frame_is_free(mm, f) || !fr->maps) {
            invariant_broken(f, "a p2m dropped a name it never took");
            continue;
        }
        if (--fr->maps == 0 && !fr->refs && (fr->flags & FRAME_ORPHAN))
            release_locked(mm, f, 1);
    }
    pthread_mutex_unlock(&mm->lock);
}

unsigned mm_frame_maps(struct machine_mem *mm, uint64_t mfn)
{
    if (mfn >= mm->nr_total)
        return 0;
    pthread_mutex_lock(&mm->lock);
    unsigned n = mm->frames[mfn].maps;
    pthread_mutex_unlock(&mm->lock);
    return n;
}

void mm_free_run(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    if (mfn >= mm->nr_total || nr > mm->nr_total - mfn)
        return;
    pthread_mutex_lock(&mm->lock);
    free_locked(mm, mfn, nr);
    pthread_mutex_unlock(&mm->lock);
}

uint64_t mm_free_owner(struct machine_mem *mm, uint16_t owner)
{
    uint64_t freed = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_total;) {
        if (mm->frames[f].owner != owner || frame_is_free(mm, f)) {
            f++;
            continue;
        }
        uint64_t run = 1;
        while (f + run < mm->nr_total && mm->frames[f + run].owner == owner &&
               !frame_is_free(mm, f + run))
            run++;
        free_locked(mm, f, run);
        freed += run;
        f += run;
    }
    pthread_mutex_unlock(&mm->lock);
    return freed;
}

uint64_t mm_count_owner(struct machine_mem *mm, uint16_t owner)
{
    uint64_t n = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_total; f++)
        n += mm->frames[f].owner == owner && !frame_is_free(mm, f);
    pthread_mutex_unlock(&mm->lock);
    return n;
}

uint64_t mm_count_xen_frames(struct machine_mem *mm)
{
    uint64_t n = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_frames; f++) {
        const struct frame *fr = &mm->frames[f];
        n += (fr->type == FRAME_SHARED_INFO || fr->type == FRAME_GRANT) &&
             fr->owner < DOMID_HYPERVISOR;
    }
    pthread_mutex_unlock(&mm->lock);
    return n;
}

/* ---- Live update ---- */

int mm_init_inherited(struct machine_mem *mm, int fd, uint64_t nr_frames,
                      uint64_t lu_mfn, uint64_t lu_nr)
{
    memset(mm, 0, sizeof(*mm));
    mm->fd = -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (nr_frames == 0 || (uint64_t)st.st_size != nr_frames << XKVM_PAGE_SHIFT ||
        lu_mfn % BITS || lu_mfn > nr_frames || lu_nr > nr_frames - lu_mfn)
        return -EINVAL;
    mm->fd = fd;
    mm->nr_frames = nr_frames;
    int rc = map_all_free(mm);
    if (rc) {
        mm->fd = -1;        /* still the caller's: rollback needs it */
        return rc;
    }
    mm->lu_mfn = lu_mfn;
    mm->lu_nr = lu_nr;
    mm->lu_only = true;
    mm->search_hint = lu_mfn / BITS;
    /* Whatever a failed restore wrote there, the region must read as zero. */
    if (lu_nr)
        discard_frames(mm, lu_mfn, lu_nr);
    return 0;
}

int mm_prealloc(struct machine_mem *mm)
{
    if (madvise(mm->base, mm->nr_frames << XKVM_PAGE_SHIFT, MADV_POPULATE_WRITE) < 0)
        return -errno;
    mm->prealloc = true;
    return 0;
}

void mm_prefault(void *p, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1), b = ((uintptr_t)p + len) & ~(page - 1);
    /* Whole pages inside [p, p + len) and the one p starts in; the last part faults. */
    if (b > a)
        madvise((void *)a, b - a, MADV_POPULATE_WRITE);
}

/* Is every frame of [mfn, mfn + nr) free? Whole bitmap words at once. mm->lock held. */
static bool range_free_locked(const struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    uint64_t f = mfn, end = mfn + nr;
    for (; f < end && f % BITS; f++)
        if (!frame_is_free(mm, f))
            return false;
    for (; end - f >= BITS; f += BITS)
        if (mm->free_bitmap[f / BITS] != ~0ULL)
            return false;
    for (; f < end; f++)
        if (!frame_is_free(mm, f))
            return false;
    return true;
}

static int claim(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                 enum frame_type type, uint8_t maps)
{
    if (mfn >= mm->nr_frames || nr > mm->nr_frames - mfn)
        return -EINVAL;
    mm_prefault(&mm->frames[mfn], nr * sizeof(mm->frames[0]));
    pthread_mutex_lock(&mm->lock);
    bool ok = range_free_locked(mm, mfn, nr);
    if (ok)
        take_named_locked(mm, mfn, nr, owner, type, maps);
    pthread_mutex_unlock(&mm->lock);
    return ok ? 0 : -EEXIST;
}

int mm_claim(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
             enum frame_type type)
{
    return claim(mm, mfn, nr, owner, type, 0);
}

int mm_claim_named(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                   enum frame_type type)
{
    return claim(mm, mfn, nr, owner, type, 1);
}

void mm_lu_finish(struct machine_mem *mm)
{
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_frames;) {
        if (f % BITS == 0 && mm->free_bitmap[f / BITS] == 0) {
            f += BITS;      /* all in use */
            continue;
        }
        if (!frame_is_free(mm, f)) {
            f++;
            continue;
        }
        uint64_t run = 1;
        while (f + run < mm->nr_frames && frame_is_free(mm, f + run))
            run++;
        discard_frames(mm, f, run);
        f += run;
    }
    /* The next region: the highest run of whole free words, as large as the last. */
    uint64_t want = (mm->lu_nr ? mm->lu_nr : MM_LU_REGION_FRAMES) / BITS, have = 0;
    uint64_t full_words = mm->nr_frames / BITS;     /* a partial last word is not used */
    bool ok = false;
    for (uint64_t w = full_words; w-- > 0 && !ok;) {
        have = mm->free_bitmap[w] == ~0ULL ? have + 1 : 0;
        if (have == want) {
            mm->lu_mfn = w * BITS;
            ok = true;
        }
    }
    mm->lu_nr = ok ? want * BITS : 0;   /* none free: no reserve, live update refuses */
    if (!ok)
        mm->lu_mfn = 0;
    mm->lu_only = false;
    mm->search_hint = 0;
    pthread_mutex_unlock(&mm->lock);
}

/* ---- Banks: same-host migration ---- */

int mm_frame_fd(const struct machine_mem *mm, uint64_t mfn, uint64_t *off)
{
    if (mfn < mm->nr_frames) {
        *off = mfn << XKVM_PAGE_SHIFT;
        return mm->fd;
    }
    for (unsigned b = 0; b < mm->nr_banks; b++) {
        const struct mm_bank *k = &mm->banks[b];
        if (mfn >= k->first && mfn < k->first + k->nr) {
            *off = (mfn - k->first) << XKVM_PAGE_SHIFT;
            return k->fd;
        }
    }
    return -1;
}

/* A new bank for memfd fd (st its stat): mapped after the last one. mm->lock held. */
static int bank_add_locked(struct machine_mem *mm, int fd, const struct stat *st,
                           uint64_t *first)
{
    uint64_t nr = (uint64_t)st->st_size >> XKVM_PAGE_SHIFT;
    uint64_t at = mm->nr_total;
    if (mm->nr_banks == MM_BANKS_MAX || nr == 0 ||
        nr > capacity_frames(mm) - at)
        return -ENOSPC;
    if (mmap(mm_frame_ptr(mm, at), nr << XKVM_PAGE_SHIFT, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0) == MAP_FAILED)
        return -errno;
    for (uint64_t f = at; f < at + nr; f++)
        mm->frames[f] = (struct frame){ .owner = DOMID_NONE, .type = FRAME_FREE };
    mm->banks[mm->nr_banks++] = (struct mm_bank){ .fd = fd, .first = at, .nr = nr,
                                                  .dev = st->st_dev, .ino = st->st_ino };
    /* Published last: readers without the lock check mfn < nr_total first. */
    __atomic_store_n(&mm->nr_total, at + nr, __ATOMIC_RELEASE);
    *first = at;
    return 0;
}

int mm_bank_attach(struct machine_mem *mm, int fd, uint64_t *first)
{
    struct stat st, own;
    if (fstat(fd, &st) < 0 || fstat(mm->fd, &own) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size % XKVM_PAGE_SIZE) {
        close(fd);
        return -EINVAL;
    }
    if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) {
        close(fd);
        *first = 0;     /* our own memory, coming back */
        return 0;
    }
    pthread_mutex_lock(&mm->lock);
    int rc = -ENOENT;
    for (unsigned b = 0; b < mm->nr_banks && rc == -ENOENT; b++)
        if (mm->banks[b].dev == (uint64_t)st.st_dev && mm->banks[b].ino == (uint64_t)st.st_ino) {
            *first = mm->banks[b].first;
            rc = (uint64_t)st.st_size >> XKVM_PAGE_SHIFT == mm->banks[b].nr ? 0 : -EINVAL;
        }
    bool kept = false;
    if (rc == -ENOENT)
        kept = !(rc = bank_add_locked(mm, fd, &st, first));
    pthread_mutex_unlock(&mm->lock);
    if (!kept)
        close(fd);
    return rc;
}

/* May a migrating domain take frame f in place? mm->lock held. */
static bool adoptable(const struct machine_mem *mm, uint64_t f)
{
    const struct frame *fr = &mm->frames[f];
    if (fr->maps || fr->refs || frame_is_free(mm, f))
        return false;
    return fr->owner == DOMID_HANDED || (mm_frame_in_bank(mm, f) && fr->owner == DOMID_NONE);
}

/* Taken by this migration already: the source maps the frame at two gfns. */
static bool already_adopted(const struct machine_mem *mm, uint64_t f, uint16_t owner,
                            enum frame_type type)
{
    const struct frame *fr = &mm->frames[f];
    return !frame_is_free(mm, f) && fr->owner == owner && fr->type == type &&
           !(fr->flags & FRAME_ORPHAN);
}

int mm_bank_adopt(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                  enum frame_type type)
{
    uint64_t total = __atomic_load_n(&mm->nr_total, __ATOMIC_ACQUIRE);
    if (nr == 0 || mfn >= total || nr > total - mfn || mm_region_left(mm, mfn) < nr)
        return -EINVAL;
    pthread_mutex_lock(&mm->lock);
    int rc = 0;
    for (uint64_t f = mfn; f < mfn + nr && !rc; f++)
        if (!already_adopted(mm, f, owner, type) && !adoptable(mm, f))
            rc = mm->frames[f].maps || mm->frames[f].refs ? -EBUSY : -EINVAL;
    for (uint64_t f = mfn; f < mfn + nr && !rc; f++)
        if (!already_adopted(mm, f, owner, type))
            mm->frames[f] = (struct frame){ .owner = owner, .type = (uint8_t)type };
    pthread_mutex_unlock(&mm->lock);
    return rc;
}

void mm_bank_hand_over(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner)
{
    if (mfn >= mm->nr_total || nr > mm->nr_total - mfn)
        return;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = mfn; f < mfn + nr; f++) {
        struct frame *fr = &mm->frames[f];
        if (!frame_is_free(mm, f) && fr->owner == owner) {
            fr->owner = DOMID_HANDED;
            fr->flags &= (uint8_t)~FRAME_ORPHAN;
        }
    }
    pthread_mutex_unlock(&mm->lock);
}

uint64_t mm_bank_count_handed(struct machine_mem *mm)
{
    uint64_t n = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_frames; f++)
        n += mm->frames[f].owner == DOMID_HANDED && !frame_is_free(mm, f);
    pthread_mutex_unlock(&mm->lock);
    return n;
}

uint64_t mm_bank_count_adopted(struct machine_mem *mm)
{
    uint64_t n = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = mm->nr_frames; f < mm->nr_total; f++)
        n += mm->frames[f].owner < DOMID_HYPERVISOR;
    pthread_mutex_unlock(&mm->lock);
    return n;
}
