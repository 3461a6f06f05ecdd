#include "hv/p2m.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int p2m_init(struct p2m *p, int vm_fd, uint16_t domid, struct machine_mem *mm,
             uint64_t nr_gfns)
{
    memset(p, 0, sizeof(*p));
    p->vm_fd = vm_fd;
    p->domid = domid;
    p->mm = mm;
    p->nr_gfns = nr_gfns;
    p->gfn_to_mfn1 = calloc(nr_gfns, sizeof(uint64_t));
    if (!p->gfn_to_mfn1)
        return -ENOMEM;
    /* Reserve the window; nothing is accessible until populated. */
    void *w = mmap(NULL, nr_gfns << XKVM_PAGE_SHIFT, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (w == MAP_FAILED) {
        free(p->gfn_to_mfn1);
        p->gfn_to_mfn1 = NULL;
        return -errno;
    }
    p->window = w;
    pthread_mutex_init(&p->lock, NULL);
    return 0;
}

void p2m_fini(struct p2m *p)
{
    if (p->window)
        munmap(p->window, p->nr_gfns << XKVM_PAGE_SHIFT);
    free(p->gfn_to_mfn1);
    free(p->sw_dirty);
    p->sw_dirty = NULL;
    p->window = NULL;
    p->gfn_to_mfn1 = NULL;
}

static int map_frames(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
    void *m = mmap(at, nr << XKVM_PAGE_SHIFT, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED, p->mm->fd, (off_t)(mfn << XKVM_PAGE_SHIFT));
    if (m == MAP_FAILED)
        return -errno;
    for (uint64_t i = 0; i < nr; i++)
        p->gfn_to_mfn1[gfn + i] = mfn + i + 1;
    return 0;
}

int p2m_set_memslot(struct p2m *p, unsigned slot, uint64_t gfn, uint64_t nr)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .flags = p->log_dirty && nr ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = gfn << XKVM_PAGE_SHIFT,
        .memory_size = nr << XKVM_PAGE_SHIFT,
        .userspace_addr = (uint64_t)(uintptr_t)(p->window + (gfn << XKVM_PAGE_SHIFT)),
    };
    if (ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    p->slots[slot] = (struct p2m_slot){ .gfn = gfn, .nr = nr };
    return 0;
}

static int add_memslot(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr == 0)
            return p2m_set_memslot(p, i, gfn, nr);
    return -ENOSPC;
}

static int slot_of(const struct p2m *p, uint64_t gfn)
{
    for (unsigned i = 0; i < P2M_MAX_SLOTS; i++)
        if (p->slots[i].nr && gfn >= p->slots[i].gfn && gfn < p->slots[i].gfn + p->slots[i].nr)
            return (int)i;
    return -1;
}

/* Take gfn out of the memslot covering it: delete the slot, add back the two sides. */
static int punch_memslot(struct p2m *p, unsigned slot, uint64_t gfn)
{
    struct p2m_slot old = p->slots[slot];
    /* Deleting a slot drops its dirty log: count the whole range as written. */
    p2m_mark_dirty(p, old.gfn, old.nr);
    int rc = p2m_set_memslot(p, slot, old.gfn, 0);
    if (rc)
        return rc;
    if (gfn > old.gfn && (rc = p2m_set_memslot(p, slot, old.gfn, gfn - old.gfn)))
        return rc;
    if (gfn + 1 < old.gfn + old.nr && (rc = add_memslot(p, gfn + 1, old.gfn + old.nr - gfn - 1)))
        return rc;
    return 0;
}

int p2m_populate_ram(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    if (gfn > p->nr_gfns || nr > p->nr_gfns - gfn)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    uint64_t done = 0;
    while (done < nr) {
        uint64_t mfn;
        uint64_t got = mm_alloc_run(p->mm, nr - done, p->domid, FRAME_RAM, &mfn);
        if (!got) {
            rc = -ENOMEM;
            break;
        }
        rc = map_frames(p, gfn + done, mfn, got);
        if (rc) {
            mm_free_run(p->mm, mfn, got);
            break;
        }
        done += got;
    }
    if (!rc)
        rc = add_memslot(p, gfn, nr);
    pthread_mutex_unlock(&p->lock);
    return rc;   /* on failure the caller destroys the domain, freeing its frames */
}

void *p2m_ptr(const struct p2m *p, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        len = 1;
    if (gpa >= (p->nr_gfns << XKVM_PAGE_SHIFT) ||
        len > (p->nr_gfns << XKVM_PAGE_SHIFT) - gpa)
        return NULL;
    uint64_t first = gpa >> XKVM_PAGE_SHIFT, last = (gpa + len - 1) >> XKVM_PAGE_SHIFT;
    for (uint64_t g = first; g <= last; g++)
        if (p->gfn_to_mfn1[g] == 0)
            return NULL;
    return p->window + gpa;
}

static void *gphys_p2m_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    return p2m_ptr(opaque, gpa, len);
}

static void gphys_p2m_written(void *opaque, uint64_t gpa, uint64_t len)
{
    if (len)
        p2m_mark_dirty(opaque, gpa >> XKVM_PAGE_SHIFT,
                       ((gpa + len - 1) >> XKVM_PAGE_SHIFT) - (gpa >> XKVM_PAGE_SHIFT) + 1);
}

struct gphys p2m_gphys(struct p2m *p)
{
    return (struct gphys){ .ptr = gphys_p2m_ptr, .written = gphys_p2m_written, .opaque = p };
}

int p2m_set_frame(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t *old)
{
    if (gfn >= p->nr_gfns || (mfn != INVALID_MFN && mfn >= p->mm->nr_frames))
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    *old = p2m_lookup(p, gfn);
    if (mfn != INVALID_MFN) {
        rc = map_frames(p, gfn, mfn, 1);
        if (!rc && slot_of(p, gfn) < 0)
            rc = add_memslot(p, gfn, 1);
    } else if (*old != INVALID_MFN) {
        int slot = slot_of(p, gfn);
        if (slot >= 0)
            rc = punch_memslot(p, (unsigned)slot, gfn);
        /* A hole again: reserved address space, nothing behind it. */
        void *at = p->window + (gfn << XKVM_PAGE_SHIFT);
        if (!rc && mmap(at, XKVM_PAGE_SIZE, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
            rc = -errno;
        if (!rc)
            p->gfn_to_mfn1[gfn] = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int p2m_adopt(struct p2m *p, uint64_t gfn, uint64_t mfn, uint64_t nr)
{
    if (gfn > p->nr_gfns || nr > p->nr_gfns - gfn)
        return -EINVAL;
    for (uint64_t g = gfn; g < gfn + nr; g++)
        if (p->gfn_to_mfn1[g])
            return -EEXIST;
    pthread_mutex_lock(&p->lock);
    int rc = map_frames(p, gfn, mfn, nr);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int p2m_build_memslots(struct p2m *p)
{
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    for (uint64_t g = 0; g < p->nr_gfns && !rc;) {
        if (!p->gfn_to_mfn1[g]) {
            g++;
            continue;
        }
        uint64_t n = 1;
        while (g + n < p->nr_gfns && p->gfn_to_mfn1[g + n])
            n++;
        rc = add_memslot(p, g, n);
        g += n;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}
