/*
 * Log rotation by size, shared by every writer of a log: xkvmd's and the dom0
 * services' own logs (util/log.c) and a domain's console log, which xkvmd (console_io,
 * the debug port) and xkvm-consoled (the PV console ring) both append to.
 *
 * The protocol, which needs no process to know about the others: a writer takes an
 * exclusive flock on its descriptor, and writes only if that descriptor is still the
 * file at PATH (same device and inode); if it is not, someone rotated, and it reopens
 * PATH first. The writer that takes the file over the cap renames it away (PATH.N-1 to
 * PATH.N ..., PATH to PATH.1; the oldest is dropped) while still holding the lock,
 * so no writer can be writing to a file that is being renamed away, nothing is ever
 * written to an unlinked file and no byte is lost. A file is rotated after a newline
 * (the one that ends the line crossing the cap), so a writer's lines stay whole.
 */
#ifndef XKVM_UTIL_LOGROT_H
#define XKVM_UTIL_LOGROT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOGROT_DEFAULT_MAX  (16ull << 20)   /* bytes */
#define LOGROT_DEFAULT_KEEP 3               /* generations: PATH.1 ... PATH.3 */
#define LOGROT_KEEP_LIMIT   99
/* How xkvmd tells the services it starts (and how an operator tells any daemon). */
#define LOGROT_ENV_MAX  "XKVM_LOG_MAX_SIZE"
#define LOGROT_ENV_KEEP "XKVM_LOG_KEEP"

struct logrot_limits {
    uint64_t max;       /* rotate past this many bytes; 0: never */
    unsigned keep;      /* generations kept; 0: the full file is removed */
};

/* "16M", "64K", "1G", "4096" (bytes), "0" (no rotation). 0 or -EINVAL. */
int logrot_parse_size(const char *s, uint64_t *out);
/* 0 .. LOGROT_KEEP_LIMIT. 0 or -EINVAL. */
int logrot_parse_keep(const char *s, unsigned *out);
/* The limits from the environment, defaults for what is unset; a bad value is ignored. */
void logrot_limits_from_env(struct logrot_limits *l);

/*
 * Of `len` bytes about to be appended to a file of `size` bytes: how many to write
 * before rotating (then *rotate is true), or len (*rotate false: no rotation after
 * these bytes). Rotation follows the newline that ends the line reaching the cap.
 */
size_t logrot_cut(const char *buf, size_t len, uint64_t size, uint64_t max, bool *rotate);

/* Rename PATH to PATH.1, PATH.1 to PATH.2 ... dropping PATH.keep. 0 or -errno. */
int logrot_rotate(const char *path, unsigned keep);

/*
 * Append buf to the log at path through *fd under the protocol above; *fd may be
 * replaced (same number kept) by a reopened PATH. path NULL or l->max 0: a plain
 * write. Callers in one process serialise their calls on one fd. 0 or -errno.
 */
int logrot_write(int *fd, const char *path, const struct logrot_limits *l,
                 const void *buf, size_t len);

#endif
