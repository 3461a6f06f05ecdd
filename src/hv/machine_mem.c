#include "hv/machine_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BITS 64

static inline int frame_is_free(const struct machine_mem *mm, uint64_t mfn)
{
    return (mm->free_bitmap[mfn / BITS] >> (mfn % BITS)) & 1;
}

static void mark_range(struct machine_mem *mm, uint64_t mfn, uint64_t nr, int free)
{
    for (uint64_t f = mfn; f < mfn + nr; f++) {
        if (free)
            mm->free_bitmap[f / BITS] |= 1ULL << (f % BITS);
        else
            mm->free_bitmap[f / BITS] &= ~(1ULL << (f % BITS));
    }
}

int mm_init(struct machine_mem *mm, uint64_t bytes)
{
    memset(mm, 0, sizeof(*mm));
    mm->fd = -1;
    mm->nr_frames = bytes >> XKVM_PAGE_SHIFT;
    if (mm->nr_frames == 0)
        return -EINVAL;
    uint64_t size = mm->nr_frames << XKVM_PAGE_SHIFT;
    /* Not CLOEXEC: live update hands this fd to the next xkvmd. */
    mm->fd = memfd_create("xkvm-machine-memory", 0);
    if (mm->fd < 0)
        return -errno;
    if (ftruncate(mm->fd, (off_t)size) < 0)
        goto fail;
    mm->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                    mm->fd, 0);
    if (mm->base == MAP_FAILED) {
        mm->base = NULL;
        goto fail;
    }
    mm->frames = calloc(mm->nr_frames, sizeof(*mm->frames));
    uint64_t words = (mm->nr_frames + BITS - 1) / BITS;
    mm->free_bitmap = calloc(words, sizeof(uint64_t));
    if (!mm->frames || !mm->free_bitmap) {
        errno = ENOMEM;
        goto fail;
    }
    for (uint64_t f = 0; f < mm->nr_frames; f++)
        mm->frames[f].owner = DOMID_NONE;
    mark_range(mm, 0, mm->nr_frames, 1);
    mm->nr_free = mm->nr_frames;
    pthread_mutex_init(&mm->lock, NULL);
    return 0;
fail:;
    int err = -errno;
    mm_fini(mm);
    return err;
}

void mm_fini(struct machine_mem *mm)
{
    if (mm->base)
        munmap(mm->base, mm->nr_frames << XKVM_PAGE_SHIFT);
    if (mm->fd >= 0)
        close(mm->fd);
    free(mm->frames);
    free(mm->free_bitmap);
    mm->base = NULL;
    mm->frames = NULL;
    mm->free_bitmap = NULL;
    mm->fd = -1;
}

uint64_t mm_alloc_run(struct machine_mem *mm, uint64_t want, uint16_t owner,
                      enum frame_type type, uint64_t *mfn)
{
    if (want == 0)
        return 0;
    pthread_mutex_lock(&mm->lock);
    uint64_t words = (mm->nr_frames + BITS - 1) / BITS;
    uint64_t got = 0, start = 0;
    for (uint64_t i = 0; i < words && got == 0; i++) {
        uint64_t w = (mm->search_hint + i) % words;
        if (!mm->free_bitmap[w])
            continue;
        start = w * BITS + (uint64_t)__builtin_ctzll(mm->free_bitmap[w]);
        while (got < want && start + got < mm->nr_frames && frame_is_free(mm, start + got))
            got++;
    }
    if (got) {
        mark_range(mm, start, got, 0);
        for (uint64_t f = start; f < start + got; f++)
            mm->frames[f] = (struct frame){ .owner = owner, .type = (uint8_t)type };
        mm->nr_free -= got;
        mm->search_hint = (start + got) / BITS;
        *mfn = start;
    }
    pthread_mutex_unlock(&mm->lock);
    return got;
}

/* Drop the contents of frames so the memory returns to the host and reads as zero. */
static void discard_frames(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    if (fallocate(mm->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(mfn << XKVM_PAGE_SHIFT), (off_t)(nr << XKVM_PAGE_SHIFT)) < 0)
        memset(mm_frame_ptr(mm, mfn), 0, nr << XKVM_PAGE_SHIFT);
}

static void release_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    discard_frames(mm, mfn, nr);
    for (uint64_t f = mfn; f < mfn + nr; f++) {
        mm->frames[f] = (struct frame){ .owner = DOMID_NONE, .type = FRAME_FREE };
        mm->free_bitmap[f / BITS] |= 1ULL << (f % BITS);
        mm->nr_free++;
    }
}

/* Referenced frames become orphans, freed by their last mm_frame_put. */
static void free_locked(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    for (uint64_t f = mfn; f < mfn + nr;) {
        if (frame_is_free(mm, f) || mm->frames[f].refs) {
            if (!frame_is_free(mm, f)) {
                mm->frames[f].owner = DOMID_HYPERVISOR;
                mm->frames[f].flags |= FRAME_ORPHAN;
            }
            f++;
            continue;
        }
        uint64_t run = 1;
        while (f + run < mfn + nr && !frame_is_free(mm, f + run) && !mm->frames[f + run].refs)
            run++;
        release_locked(mm, f, run);
        f += run;
    }
}

int mm_frame_get(struct machine_mem *mm, uint64_t mfn, uint16_t owner, unsigned type_mask)
{
    if (mfn >= mm->nr_frames)
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
    if (mfn >= mm->nr_frames)
        return;
    pthread_mutex_lock(&mm->lock);
    struct frame *fr = &mm->frames[mfn];
    if (fr->refs && --fr->refs == 0 && (fr->flags & FRAME_ORPHAN))
        release_locked(mm, mfn, 1);
    pthread_mutex_unlock(&mm->lock);
}

void mm_free_run(struct machine_mem *mm, uint64_t mfn, uint64_t nr)
{
    if (mfn >= mm->nr_frames || nr > mm->nr_frames - mfn)
        return;
    pthread_mutex_lock(&mm->lock);
    free_locked(mm, mfn, nr);
    pthread_mutex_unlock(&mm->lock);
}

uint64_t mm_free_owner(struct machine_mem *mm, uint16_t owner)
{
    uint64_t freed = 0;
    pthread_mutex_lock(&mm->lock);
    for (uint64_t f = 0; f < mm->nr_frames;) {
        if (mm->frames[f].owner != owner || frame_is_free(mm, f)) {
            f++;
            continue;
        }
        uint64_t run = 1;
        while (f + run < mm->nr_frames && mm->frames[f + run].owner == owner &&
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
    for (uint64_t f = 0; f < mm->nr_frames; f++)
        n += mm->frames[f].owner == owner && !frame_is_free(mm, f);
    pthread_mutex_unlock(&mm->lock);
    return n;
}
