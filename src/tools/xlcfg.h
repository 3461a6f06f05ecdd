/*
 * Reading xl.cfg files (the subset xkvm supports, docs/config.md) into struct domcfg,
 * with Xen's own parser, libxlutil.
 */
#ifndef XKVM_TOOLS_XLCFG_H
#define XKVM_TOOLS_XLCFG_H

#include <stddef.h>
#include <stdio.h>

#include "util/domcfg.h"

/* Largest config file accepted. */
#define XLCFG_MAX_FILE (1024 * 1024)

/* Flags for xlcfg_read_data(). */
#define XLCFG_NO_KERNEL_CHECK 0x1   /* do not open or canonicalize the kernel path */

/*
 * Read the xl.cfg file at path into *cfg. A relative kernel path is resolved against
 * the directory holding the config file. Warnings (unknown or ignored keys) are
 * printed to warn, if not NULL, as "FILE:LINE: warning: ...".
 * Returns 0, or a negative errno with a message in err: "FILE:LINE: why" where the
 * problem has a line, else "FILE: why".
 */
int xlcfg_read_file(const char *path, struct domcfg *cfg, FILE *warn,
                    char *err, size_t errlen);

/*
 * The same for config text in memory. filename names it in messages; basedir is the
 * directory relative kernel paths are resolved against (NULL: the current directory).
 */
int xlcfg_read_data(const char *data, size_t len, const char *filename,
                    const char *basedir, unsigned flags, struct domcfg *cfg,
                    FILE *warn, char *err, size_t errlen);

#endif
