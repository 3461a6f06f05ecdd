/*
 * Machine memory: the host's one memfd that holds every frame a guest can see (guest
 * RAM, shared_info, grant frames...). A frame number (mfn) is an offset / 4096. The
 * frame table records each frame's owner and type; the allocator hands out contiguous
 * runs so that a guest's memory maps with few mmaps. Freed frames are punched out of
 * the memfd, so they return to the host and come back zeroed (Xen scrubs too).
 */
#ifndef XKVM_HV_MACHINE_MEM_H
#define XKVM_HV_MACHINE_MEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XKVM_PAGE_SHIFT 12
#define XKVM_PAGE_SIZE  (1ULL << XKVM_PAGE_SHIFT)
#define INVALID_MFN     UINT64_MAX
#define DOMID_NONE      0xFFFFu     /* owner of a free frame */
#define DOMID_HYPERVISOR 0x7FF0u    /* owner of frames xkvmd keeps for itself */
/*
 * Owner of frames a same-host migration handed to another xkvmd, or took from one and
 * gave back (docs/migration.md, "Same-host migration"): never allocated, never
 * punched, until a migration brings them back (mm_bank_adopt).
 */
#define DOMID_HANDED    0x7FF1u

enum frame_type {
    FRAME_FREE = 0,
    FRAME_RAM,          /* guest RAM */
    FRAME_SHARED_INFO,  /* Xen-owned, mapped into its guest */
    FRAME_GRANT,        /* grant-table frame */
    FRAME_SPECIAL,      /* toolstack pages: store/console rings, start_info */
    FRAME_TYPE_COUNT
};

/*
 * The invariant this table keeps: a frame goes back to the allocator only when nothing
 * names it any more, neither a p2m (maps) nor a foreign mapping (refs). A frame freed
 * while named becomes an orphan and is released by whichever drops the last name.
 */
struct frame {
    uint16_t owner;     /* domid; when free (the bitmap says), DOMID_NONE or 0 */
    uint8_t type : 4;   /* enum frame_type */
    uint8_t flags : 4;  /* FRAME_ORPHAN */
    uint8_t maps;       /* gfns that map it in its owner's p2m */
    uint32_t refs;      /* foreign mappings (dom0 services, grant maps, vcpu_info) */
};
#define FRAME_MAPS_MAX UINT8_MAX

/*
 * Freed while named (a p2m still maps it, or its domain died under a dom0 mapping):
 * owned by DOMID_HYPERVISOR, kept intact, and returned to the allocator on the last
 * put.
 */
#define FRAME_ORPHAN 0x01

/*
 * A bank: another xkvmd's machine memory (its memfd, passed by a same-host migration),
 * seen as frames [first, first + nr) after this host's own. Its frames are never
 * allocated: they are adopted by a migrating domain and, once freed, punched in that
 * memfd (the memory returns to the host) and marked absent (owner DOMID_NONE, not free).
 */
struct mm_bank {
    int fd;
    uint64_t first, nr;
    uint64_t dev, ino;      /* the memfd's identity: one bank per memfd */
};
#define MM_BANKS_MAX        8
#define MM_BANK_VA_FRAMES   (64ULL << 20)   /* 256 GiB of frames for all banks */

struct machine_mem {
    int fd;                 /* the memfd */
    uint64_t nr_frames;     /* this host's own frames: [0, nr_frames) */
    uint64_t nr_total;      /* own frames and every bank's: valid mfns are below this */
    struct mm_bank banks[MM_BANKS_MAX];
    unsigned nr_banks;
    uint64_t nr_free;
    uint8_t *base;          /* xkvmd's own mapping of the whole memfd */
    struct frame *frames;   /* the frame table, nr_frames entries */
    uint64_t *free_bitmap;  /* bit set = frame free */
    uint64_t search_hint;   /* word index to start the next search from */
    /*
     * The live-update region (seed 002's "live update bootmem"): frames kept free
     * for the next xkvmd, which allocates only from them (lu_only) until it has
     * adopted every frame the image names. 64-frame aligned.
     */
    uint64_t lu_mfn, lu_nr;
    bool lu_only;
    /*
     * xkvmd --machine-memory-prealloc (QEMU's -mem-prealloc): the own frames are all
     * resident from the start and stay so; a freed frame is zeroed, not punched.
     */
    bool prealloc;
    pthread_mutex_t lock;
};

/* Create machine memory of `bytes` (rounded down to pages). 0 or -errno. */
int mm_init(struct machine_mem *mm, uint64_t bytes);
void mm_fini(struct machine_mem *mm);

/* ---- Live update ---- */
/* Frames set aside for the next xkvmd's live-update restore. */
#define MM_LU_REGION_FRAMES 4096u      /* 16 MiB, or an eighth of machine memory */
/*
 * Take over machine memory from a previous xkvmd (fd inherited across exec): every
 * frame starts free and the allocator hands out only the region [lu_mfn, +lu_nr)
 * until mm_lu_finish. 0 or -errno (-EINVAL if the fd's size is not nr_frames).
 */
int mm_init_inherited(struct machine_mem *mm, int fd, uint64_t nr_frames,
                      uint64_t lu_mfn, uint64_t lu_nr);
/*
 * Fault in, in one call, the pages of [p, p + len) that a loop is about to write (a
 * table untouched since calloc): where a page fault is costly (a host under kvm-pvm),
 * thousands of them add up. Best effort, nothing changes but the timing.
 */
void mm_prefault(void *p, size_t len);
/* Make every own frame resident now and keep them so (mm->prealloc). 0 or -errno. */
int mm_prealloc(struct machine_mem *mm);
/* Mark [mfn, mfn + nr) as owner's, of type (they must be free). 0 or -EEXIST. */
int mm_claim(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
             enum frame_type type);
/*
 * As mm_claim, with one name already taken on each frame (as mm_map_get would): for a
 * p2m that maps them at once (p2m_adopt). A failed adoption drops it (mm_map_put)
 * before freeing them.
 */
int mm_claim_named(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                   enum frame_type type);
/*
 * The image is consumed: punch every free frame (what the previous xkvmd used and
 * nobody adopted reads as zero again), set aside a new region, allocate anywhere.
 */
void mm_lu_finish(struct machine_mem *mm);

/*
 * Allocate one contiguous run of at most `want` frames for `owner` (the longest run
 * found at the first free frame from the search hint). Returns the run's length, 0 if
 * no frame is free; *mfn is its first frame.
 */
uint64_t mm_alloc_run(struct machine_mem *mm, uint64_t want, uint16_t owner,
                      enum frame_type type, uint64_t *mfn);
/* Free frames [mfn, mfn + nr): their contents are discarded. */
void mm_free_run(struct machine_mem *mm, uint64_t mfn, uint64_t nr);
/* Free every frame owned by `owner`; returns how many. */
uint64_t mm_free_owner(struct machine_mem *mm, uint16_t owner);
/*
 * Take a reference on frame mfn if `owner` owns it and its type is in `type_mask`
 * (bits 1 << FRAME_*): freeing it then leaves it intact until the last put. 0 or
 * -EINVAL.
 */
int mm_frame_get(struct machine_mem *mm, uint64_t mfn, uint16_t owner, unsigned type_mask);
void mm_frame_put(struct machine_mem *mm, uint64_t mfn);

/*
 * A p2m names frames [mfn, mfn + nr) (each must be owner's, allocated, not an orphan,
 * and named fewer than FRAME_MAPS_MAX times): all or none. 0 or -EINVAL / -EBUSY.
 */
int mm_map_get(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner);
/* A p2m no longer names [mfn, mfn + nr): an orphan nobody names is released. */
void mm_map_put(struct machine_mem *mm, uint64_t mfn, uint64_t nr);
/* How many p2m mappings name frame mfn (tests and audits). */
unsigned mm_frame_maps(struct machine_mem *mm, uint64_t mfn);

/* Frames Xen keeps for guests (shared_info, grant frames): rebuilt by live update. */
uint64_t mm_count_xen_frames(struct machine_mem *mm);
/* Frames owned by `owner`. */
uint64_t mm_count_owner(struct machine_mem *mm, uint16_t owner);

/* What frame mfn is (FRAME_FREE beyond machine memory); a snapshot, without the lock. */
static inline enum frame_type mm_frame_type(const struct machine_mem *mm, uint64_t mfn)
{
    return mfn < mm->nr_total ? (enum frame_type)mm->frames[mfn].type : FRAME_FREE;
}

/* Whether anything outside the owner's p2m maps frame mfn now (dom0, grants). */
static inline bool mm_frame_foreign_mapped(const struct machine_mem *mm, uint64_t mfn)
{
    return mfn < mm->nr_total && __atomic_load_n(&mm->frames[mfn].refs, __ATOMIC_RELAXED);
}

static inline void *mm_frame_ptr(const struct machine_mem *mm, uint64_t mfn)
{
    return mm->base + (mfn << XKVM_PAGE_SHIFT);
}

/* Free frames a domain can be given (the live-update region excluded). */
static inline uint64_t mm_free_frames(struct machine_mem *mm)
{
    pthread_mutex_lock(&mm->lock);
    uint64_t n = mm->lu_only ? mm->nr_free : mm->nr_free - mm->lu_nr;
    pthread_mutex_unlock(&mm->lock);
    return n;
}

/* ---- Banks: same-host migration (docs/migration.md, "Same-host migration") ---- */
/*
 * The fd behind frame mfn and the frame's offset in it (mfns of a bank are relative to
 * its first). -1 if mfn is no frame.
 */
int mm_frame_fd(const struct machine_mem *mm, uint64_t mfn, uint64_t *off);
/* Whether mfn is in a bank (another xkvmd's memory), not this host's own. */
static inline bool mm_frame_in_bank(const struct machine_mem *mm, uint64_t mfn)
{
    return mfn >= mm->nr_frames && mfn < mm->nr_total;
}
/*
 * Take memfd fd (another xkvmd's machine memory, or this host's own) as a bank: *first
 * is the mfn its frame 0 has here (0 for this host's own memfd, the bank's first for
 * one already attached). fd is consumed (kept or closed). 0 or -errno.
 */
int mm_bank_attach(struct machine_mem *mm, int fd, uint64_t *first);
/*
 * A migrating domain takes frames [mfn, mfn + nr) in place: each must be handed over
 * (DOMID_HANDED) or an absent frame of a bank, and named by nothing, or be owner's
 * already (the source maps it at two gfns; left as it is). All or none.
 * 0, -EINVAL or -EBUSY.
 */
int mm_bank_adopt(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner,
                  enum frame_type type);
/*
 * Frames [mfn, mfn + nr) owned by `owner` now belong to another xkvmd: they become
 * DOMID_HANDED, kept intact and out of the allocator (names are dropped as usual).
 */
void mm_bank_hand_over(struct machine_mem *mm, uint64_t mfn, uint64_t nr, uint16_t owner);
/* Own frames handed over, and bank frames a domain here owns (live update refuses both). */
uint64_t mm_bank_count_handed(struct machine_mem *mm);
uint64_t mm_bank_count_adopted(struct machine_mem *mm);

#endif
