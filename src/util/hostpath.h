/*
 * Host resources a restore or migration stream names (disk images, the kernel): a
 * stream is the guest's data, so a path in it is used only if the operator allowed it
 * (xkvmd --disk-root / --kernel-root) or comes from a configuration read on this host
 * (xkvm restore FILE CONFIG). Documented in docs/migration.md, "Host resources".
 */
#ifndef XKVM_UTIL_HOSTPATH_H
#define XKVM_UTIL_HOSTPATH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/domcfg.h"

#define HOSTPATH_ROOTS_MAX 16

/* Directories (resolved, without a trailing slash) a stream's paths may lie in. */
struct hostpath_roots {
    unsigned n;
    char dirs[HOSTPATH_ROOTS_MAX][PATH_MAX];
};

/* Add dir (must exist and be a directory). 0, or -errno with a message. */
int hostpath_roots_add(struct hostpath_roots *r, const char *dir, char *err, size_t errlen);

/*
 * A path named by a stream, resolved: no symlink as its last component, a regular
 * file (or, if block_ok, a block device), inside one of the roots. The resolved path
 * in out; 0, or -EPERM / -errno with a message that names the option (what).
 */
int hostpath_check(const struct hostpath_roots *r, const char *what, const char *path,
                   bool block_ok, char *out, size_t outsz, char *err, size_t errlen);

/* Is the resolved path resolved inside dir (a resolved directory)? */
bool hostpath_within(const char *resolved, const char *dir);

/*
 * Give a stream's configuration its host resources. With local (a configuration read
 * on this host), its disks must be the stream's (same vdevs and devids) and their
 * paths and modes, and the kernel and ramdisk, are local's. Without, each disk must
 * pass hostpath_check against disk_roots and the kernel and ramdisk against
 * kernel_roots; a kernel or ramdisk that does not is never read (a ramdisk is
 * dropped), and the domain's restart actions become destroy
 * (*kernel_dropped set). 0, or -EPERM / -EINVAL with a message.
 */
int hostpath_apply(struct domcfg *cfg, const struct domcfg *local,
                   const struct hostpath_roots *disk_roots,
                   const struct hostpath_roots *kernel_roots, bool *kernel_dropped,
                   char *err, size_t errlen);

#endif
