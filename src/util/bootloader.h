/*
 * xl.cfg's bootloader = "pygrub" (docs/config.md, "Booting from the guest's disk";
 * docs/security.md): Xen's own pygrub, run as libxl runs it (libxl_bootloader.c:
 * --output=FILE --output-format=simple0 --output-directory=DIR [--kernel] [--args]
 * DISK), reads the guest's first disk and extracts its kernel, initrd and command line
 * from its grub.cfg. The disk is the guest's, hence hostile: pygrub runs as an
 * unprivileged user (its --runas, which also chroots and unshares it), in a private
 * directory, without our descriptors, bounded in time and file size; what it prints
 * and the files it leaves are read as untrusted and capped.
 */
#ifndef XKVM_UTIL_BOOTLOADER_H
#define XKVM_UTIL_BOOTLOADER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/domcfg.h"

/* Debian's xen-utils-4.17. */
#define BOOTLOADER_PYGRUB_PATH  "/usr/lib/xen-4.17/bin/pygrub"
#define BOOTLOADER_TIMEOUT_S    30
/* pygrub's simple0 output: three short entries; anything longer is refused. */
#define BOOTLOADER_OUTPUT_MAX   (16 * 1024)
#define BOOTLOADER_USER_DEFAULT "nobody"

struct bootloader_result {
    char dir[PATH_MAX];                 /* the private directory; "" when none */
    char kernel[PATH_MAX];              /* the extracted kernel, in dir */
    char ramdisk[PATH_MAX];             /* the extracted initrd, in dir, or "" */
    char cmdline[DOMCFG_CMDLINE_MAX];   /* grub.cfg's arguments (+ the config's) */
};

/*
 * Whom pygrub runs as when xkvmd is root (xkvmd --bootloader-user): a user name or
 * a numeric uid. 0, or -EINVAL with a message.
 */
int bootloader_set_user(const char *user, char *err, size_t errlen);

/*
 * Parse pygrub's simple0 output (untrusted): "kernel PATH\0[ramdisk PATH\0][args
 * ARGS\0]\0". Both paths must name a file pygrub made directly in dir
 * (boot_kernel.*, boot_ramdisk.*); args obey the config's cmdline rules. 0, or
 * -EINVAL with a message. No I/O.
 */
int bootloader_parse_simple0(const char *buf, size_t len, const char *dir,
                             struct bootloader_result *r, char *err, size_t errlen);

/*
 * Run pygrub on cfg's first disk, with cfg's kernel and cmdline as --kernel/--args,
 * in a new directory under workdir. On success r names the extracted files; on
 * failure nothing is left behind. Blocks for at most BOOTLOADER_TIMEOUT_S seconds.
 * 0, or -errno with a message.
 */
int bootloader_run(const struct domcfg *cfg, const char *workdir,
                   struct bootloader_result *r, char *err, size_t errlen);

/* Remove the extracted files and the directory. */
void bootloader_cleanup(struct bootloader_result *r);

#endif
