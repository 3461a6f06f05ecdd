/*
 * Post-copy on the destination (docs/migration.md "Post-copy"): the frames named by
 * POSTCOPY_MISSING are punched out and made to fault (hv/uffd_pages.c) before the
 * guest runs; after RUNNING the pages that arrive are installed and the fault thread's
 * requests go to the source, up to POSTCOPY_DONE. A lost connection leaves the domain
 * paused and listed "postcopy-paused", its blocked vCPUs waiting.
 */
#ifndef XKVM_MIGRATE_POSTCOPY_RESTORE_H
#define XKVM_MIGRATE_POSTCOPY_RESTORE_H

#include <stddef.h>

#include "migrate/migrate.h"
#include "xkvm/postcopy.h"

struct postcopy_restore;

/* POSTCOPY_MISSING for d (its pages laid out): punch, register, start. 0 or -errno. */
int postcopy_restore_begin(struct postcopy_restore **out, struct domain *d,
                           struct transport *t, const struct xkvm_stream_record *rec,
                           char *err, size_t errlen);

/* RUNNING was sent: requests may go to the source now (those made before go again). */
void postcopy_restore_running(struct postcopy_restore *pr);

/*
 * Read the pages up to POSTCOPY_DONE and answer POSTCOPY-DONE. 0; or -errno with err:
 * the domain is then paused and "postcopy-paused", kept for the operator.
 */
int postcopy_restore_serve(struct postcopy_restore *pr, struct xkvm_stream_reader *rd,
                           char *err, size_t errlen);

/* The token RUNNING carries (32 hex digits): the source names it to recover. */
const char *postcopy_restore_token(const struct postcopy_restore *pr);

/*
 * A recovery connection (its first line, POSTCOPY-RECOVER, in line): claim the
 * postcopy-paused domain it names if the token matches, send what is still missing,
 * resume the domain and serve the pages as postcopy_restore_serve does. 0: all in;
 * -EACCES (refused: ERROR sent, nothing changed) or another -errno with err (the
 * domain is postcopy-paused again).
 */
int postcopy_restore_recover(struct transport *t, const char *line, char *err, size_t errlen);

/* The connection is no longer ours (the caller releases it): no request goes on it. */
void postcopy_restore_detach(struct postcopy_restore *pr);

#endif
