/*
 * Same-host migration (docs/migration.md, "Same-host migration"): a domain moves to a
 * second xkvmd on this machine without its RAM being copied. Before the stream, the
 * source passes its machine-memory memfd (and those of its banks) over the channel
 * (SCM_RIGHTS); the destination takes them as banks (hv/machine_mem.h, mm_bank_*).
 * In the stream, LOCAL_MEMORY replaces PAGE_DATA for RAM: runs of gfns and where the
 * pages are in those memfds. The destination builds the domain without RAM before the
 * source pauses (domain_create_for_local) and adopts the runs in place at LOCAL_MEMORY
 * (domain_adopt_local); toolstack pages (rings) still travel as PAGE_DATA, so
 * that dom0 services map them from the destination's own memfd. At the hand-over the
 * source marks the frames handed over (never reused, never punched); a destination
 * that fails does the same with what it adopted, and the source runs the guest on.
 */
#ifndef XKVM_MIGRATE_LOCAL_MEM_H
#define XKVM_MIGRATE_LOCAL_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/domain.h"
#include "util/domcfg.h"
#include "xkvm/stream.h"

struct local_mem {
    /* Receiver: where frame 0 of each memfd passed is here (mm_bank_attach). */
    uint64_t first[XKVM_STREAM_LOCAL_FDS_MAX];
    uint64_t size[XKVM_STREAM_LOCAL_FDS_MAX];  /* its frames */
    unsigned nr_fds;
    /* Both: the RAM runs, in this host's mfns (handed over at the end, or on failure). */
    struct domain_extent *runs;
    size_t nr_runs;
};

void local_mem_release(struct local_mem *lm);

/* Source: pass this host's memfd and its banks' over channel sock. 0 or -errno. */
int local_send_fds(int sock, char *err, size_t errlen);
/*
 * Source, d paused: write LOCAL_MEMORY (d's RAM runs) to w and remember the runs.
 * 0 or -errno with a message.
 */
int local_send_memory(struct domain *d, struct xkvm_stream_writer *w, struct local_mem *lm,
                      char *err, size_t errlen);
/* Source and destination: leave in dirty (a gfn bitmap) only the toolstack pages. */
void local_keep_special(struct domain *d, uint64_t *dirty, uint64_t nr_gfns);
/* The runs are the other xkvmd's now (source after RUNNING; destination on failure). */
void local_hand_over(struct local_mem *lm, uint16_t domid);

/*
 * Live update carries neither: the image names a domain's frames in this host's own
 * memfd, and the new binary punches every frame nobody adopted. 0, or -EBUSY with why.
 */
int local_lu_refusal(char *err, size_t errlen);

/* Destination: take the memfds the source passed on sock as banks. 0 or -errno. */
int local_recv_fds(int sock, struct local_mem *lm, char *err, size_t errlen);
/* Destination: LOCAL_MEMORY's runs, as extents in this host's mfns (lm->runs). */
int local_recv_runs(struct local_mem *lm, const struct xkvm_stream_record *rec,
                    char *err, size_t errlen);

#endif
