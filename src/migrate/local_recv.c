/*
 * Same-host migration, the destination's half: migrate/local_mem.h says what it does,
 * docs/migration.md ("Same-host migration") why.
 */
#include "migrate/local_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hv/hv.h"
#include "util/fdpass.h"

int local_recv_fds(int sock, struct local_mem *lm, char *err, size_t errlen)
{
    char tag = 0;
    int fds[XKVM_STREAM_LOCAL_FDS_MAX], flags = 0;
    unsigned n = 0;
    ssize_t got = fdpass_recv(sock, &tag, 1, 0, fds, XKVM_STREAM_LOCAL_FDS_MAX, &n, &flags);
    if (got != 1 || tag != 'L' || n == 0 || (flags & MSG_CTRUNC)) {
        for (unsigned i = 0; i < n; i++)
            close(fds[i]);
        snprintf(err, errlen, "same-host migration: the source passed no machine memory "
                 "(%s)", got < 0 ? strerror(errno) : got == 0 ? "channel closed" :
                 "not an xkvmd on this host");
        return -EPROTO;
    }
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        int r = rc ? (close(fds[i]), 0) : mm_bank_attach(host_mm(), fds[i], &lm->first[i]);
        if (r && !rc) {
            rc = r;
            snprintf(err, errlen, "same-host migration: taking the source's memory: %s",
                     r == -ENOSPC ? "no room for another bank (restart this xkvmd)" :
                     strerror(-r));
        }
    }
    lm->nr_fds = n;
    struct machine_mem *mm = host_mm();
    for (unsigned i = 0; !rc && i < n; i++) {
        lm->size[i] = lm->first[i] ? 0 : mm->nr_frames;
        for (unsigned b = 0; lm->first[i] && b < mm->nr_banks; b++)
            if (mm->banks[b].first == lm->first[i])
                lm->size[i] = mm->banks[b].nr;
    }
    return rc;
}

int local_recv_runs(struct local_mem *lm, const struct xkvm_stream_record *rec,
                    char *err, size_t errlen)
{
    uint32_t nfds, n;
    memcpy(&nfds, rec->body, 4);
    memcpy(&n, rec->body + 4, 4);
    if (nfds != lm->nr_fds) {
        snprintf(err, errlen, "LOCAL_MEMORY names %u memfds, %u were passed", nfds, lm->nr_fds);
        return -EINVAL;
    }
    free(lm->runs);
    lm->nr_runs = 0;
    lm->runs = calloc(n ? n : 1, sizeof(*lm->runs));
    if (!lm->runs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct xkvm_stream_local_run r;
        xkvm_stream_local_run_get(rec, i, &r);
        if (r.frame >= lm->size[r.fd_index] || r.count > lm->size[r.fd_index] - r.frame) {
            snprintf(err, errlen, "LOCAL_MEMORY run %u: pages 0x%llx+%u are beyond memfd %u",
                     i, (unsigned long long)r.frame, r.count, r.fd_index);
            return -EINVAL;
        }
        lm->runs[i] = (struct domain_extent){ .gfn = r.gfn, .mfn = lm->first[r.fd_index] + r.frame,
                                              .nr = r.count, .type = FRAME_RAM };
    }
    lm->nr_runs = n;
    return 0;
}
