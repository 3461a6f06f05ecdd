/*
 * Same-host migration, the source's half: migrate/local_mem.h says what it does,
 * docs/migration.md ("Same-host migration") why.
 */
#include "migrate/local_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hv/hv.h"
#include "hv/p2m.h"
#include "util/fdpass.h"

void local_mem_release(struct local_mem *lm)
{
    free(lm->runs);
    lm->runs = NULL;
    lm->nr_runs = 0;
}

int local_send_fds(int sock, char *err, size_t errlen)
{
    struct machine_mem *mm = host_mm();
    int fds[XKVM_STREAM_LOCAL_FDS_MAX];
    unsigned n = 0;
    fds[n++] = mm->fd;
    for (unsigned b = 0; b < mm->nr_banks && n < XKVM_STREAM_LOCAL_FDS_MAX; b++)
        fds[n++] = mm->banks[b].fd;
    _Static_assert(XKVM_STREAM_LOCAL_FDS_MAX <= FDPASS_MAX, "one message carries them all");
    char tag = 'L';
    if (fdpass_send(sock, &tag, 1, fds, n, 0, NULL, 0) != 1) {
        int e = errno;
        snprintf(err, errlen, "passing the machine memory to the destination: %s",
                 strerror(e));
        return -e;
    }
    return 0;
}

/* Which memfd passed holds mfn (0: ours, b + 1: bank b) and the page in it. */
static unsigned fd_index_of(const struct machine_mem *mm, uint64_t mfn, uint64_t *frame)
{
    if (mfn < mm->nr_frames) {
        *frame = mfn;
        return 0;
    }
    for (unsigned b = 0; b < mm->nr_banks; b++)
        if (mfn >= mm->banks[b].first && mfn < mm->banks[b].first + mm->banks[b].nr) {
            *frame = mfn - mm->banks[b].first;
            return b + 1;
        }
    return UINT32_MAX;
}

/* Is gfn RAM of d's own that travels in place (not foreign, not an orphan)? */
static bool ram_in_place(struct domain *d, uint64_t gfn, uint64_t *mfn)
{
    struct machine_mem *mm = host_mm();
    *mfn = p2m_lookup(&d->p2m, gfn);
    return *mfn != INVALID_MFN && *mfn < mm->nr_total && !p2m_is_foreign(&d->p2m, gfn) &&
           mm->frames[*mfn].type == FRAME_RAM && mm->frames[*mfn].owner == d->domid;
}

/* d's RAM as runs of consecutive gfns on consecutive frames of one memfd. */
static int collect_runs(struct domain *d, struct local_mem *lm)
{
    size_t cap = 16;
    lm->runs = malloc(cap * sizeof(*lm->runs));
    lm->nr_runs = 0;
    if (!lm->runs)
        return -ENOMEM;
    struct machine_mem *mm = host_mm();
    uint64_t mfn, frame;
    for (uint64_t g = 0; g < d->p2m.nr_gfns; g++) {
        if (!ram_in_place(d, g, &mfn))
            continue;
        struct domain_extent *last = lm->nr_runs ? &lm->runs[lm->nr_runs - 1] : NULL;
        if (last && last->gfn + last->nr == g && last->mfn + last->nr == mfn &&
            last->nr < UINT32_MAX &&
            fd_index_of(mm, mfn, &frame) == fd_index_of(mm, last->mfn, &frame)) {
            last->nr++;
            continue;
        }
        if (lm->nr_runs == cap) {
            struct domain_extent *n = realloc(lm->runs, 2 * cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            lm->runs = n;
            cap *= 2;
        }
        lm->runs[lm->nr_runs++] = (struct domain_extent){ .gfn = g, .mfn = mfn, .nr = 1,
                                                          .type = FRAME_RAM };
    }
    return 0;
}

int local_send_memory(struct domain *d, struct xkvm_stream_writer *w, struct local_mem *lm,
                      char *err, size_t errlen)
{
    struct machine_mem *mm = host_mm();
    p2m_hold(&d->p2m);
    int rc = collect_runs(d, lm);
    p2m_release(&d->p2m);
    size_t len = 8 + 24 * lm->nr_runs;
    uint8_t *body = rc ? NULL : malloc(len);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uint32_t hdr[2] = { 1 + mm->nr_banks, (uint32_t)lm->nr_runs };
    memcpy(body, hdr, sizeof(hdr));
    for (size_t i = 0; i < lm->nr_runs; i++) {
        struct xkvm_stream_local_run r = { .gfn = lm->runs[i].gfn,
                                           .count = (uint32_t)lm->runs[i].nr };
        r.fd_index = fd_index_of(mm, lm->runs[i].mfn, &r.frame);
        memcpy(body + 8 + 24 * i, &r, sizeof(r));
    }
    rc = xkvm_stream_write_record(w, XKVM_STREAM_REC_LOCAL_MEMORY, body, (uint32_t)len);
    free(body);
    if (rc) {
        snprintf(err, errlen, "stream: %s", w->err.msg);
        return w->err.code == XKVM_STREAM_ERR_IO ? -EPIPE : -EINVAL;
    }
    return 0;
}

void local_keep_special(struct domain *d, uint64_t *dirty, uint64_t nr_gfns)
{
    struct machine_mem *mm = host_mm();
    for (uint64_t w = 0; w < (nr_gfns + 63) / 64; w++)
        for (uint64_t v = dirty[w]; v; v &= v - 1) {
            uint64_t g = w * 64 + (uint64_t)__builtin_ctzll(v);
            uint64_t mfn = p2m_lookup(&d->p2m, g);
            if (mfn == INVALID_MFN || mm_frame_type(mm, mfn) != FRAME_SPECIAL)
                dirty[w] &= ~(1ull << (g % 64));
        }
}

void local_hand_over(struct local_mem *lm, uint16_t domid)
{
    for (size_t i = 0; i < lm->nr_runs; i++)
        mm_bank_hand_over(host_mm(), lm->runs[i].mfn, lm->runs[i].nr, domid);
}

int local_lu_refusal(char *err, size_t errlen)
{
    uint64_t adopted = mm_bank_count_adopted(host_mm()), handed = mm_bank_count_handed(host_mm());
    if (adopted) {
        snprintf(err, errlen, "%llu MiB of guest memory here is another xkvmd's (a same-host "
                 "migration), which a live update cannot carry: migrate those guests back "
                 "or on first", (unsigned long long)(adopted >> (20 - XKVM_PAGE_SHIFT)));
        return -EBUSY;
    }
    if (handed) {
        snprintf(err, errlen, "%llu MiB of this xkvmd's memory runs guests of another "
                 "xkvmd (same-host migrations), which the new binary would free: restart "
                 "this xkvmd instead (xkvmd exits; the other keeps the memory)",
                 (unsigned long long)(handed >> (20 - XKVM_PAGE_SHIFT)));
        return -EBUSY;
    }
    return 0;
}
