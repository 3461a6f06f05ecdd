/*
 * Post-copy on the source (docs/migration.md "Post-copy"): the POSTCOPY_MISSING
 * record at the switch, then, once the destination runs the guest, the missing pages,
 * those it asks for (PAGE lines on the back channel, read by a thread of its own)
 * before the rest (postcopy_sched.c), up to POSTCOPY_DONE and its answer.
 */
#ifndef XKVM_MIGRATE_POSTCOPY_SAVE_H
#define XKVM_MIGRATE_POSTCOPY_SAVE_H

#include <stdbool.h>
#include <stdint.h>

#include "migrate/migrate.h"

/* Switch now, before pass `passes` + 1 (stop: why pre-copy would stop, or NULL)? */
bool postcopy_should_switch(const struct migrate_opts *o, unsigned passes, const char *stop);

/* A postcopy-paused domain (either half of a split guest) is never saved or sent. */
int postcopy_refuse_split(struct domain *d, char *err, size_t errlen);

/* POSTCOPY_MISSING for the pfns set in missing (nr bits). 0 or -errno with err. */
int postcopy_send_missing(struct xkvm_stream_writer *w, const uint64_t *missing, uint64_t nr,
                          char *err, size_t errlen);

/*
 * After RUNNING: send every page set in missing (the domain paused, its pages read
 * where they are), answering the destination's requests first, then POSTCOPY_DONE,
 * and wait for POSTCOPY-DONE. 0, or -errno with err (the connection is gone: the
 * caller keeps the paused domain, rep->outcome MIGRATE_POSTCOPY_PAUSED).
 */
int postcopy_serve(struct domain *d, struct xkvm_stream_writer *w, struct transport *t,
                   const uint64_t *missing, uint64_t nr, struct migrate_report *rep,
                   char *err, size_t errlen);

/* RUNNING <ns> <token>: keep the token for a recovery (none from an older peer). */
void postcopy_take_token(struct domain *d, const char *running_line);

/*
 * xkvm migrate-recover, on a new connection t to the destination: name d and its
 * token, read the pages still missing there, then serve them as postcopy_serve does.
 * 0: the destination has every page (the caller destroys d, as after a migration);
 * else -errno with err, d stays postcopy-paused (rep->outcome) and may be retried.
 */
int postcopy_recover_send(struct domain *d, struct transport *t, struct migrate_report *rep,
                          char *err, size_t errlen);

#endif
