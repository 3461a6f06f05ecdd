/* Host resources named by a stream: checked against the operator's roots. See hostpath.h. */
#include "util/hostpath.h"
#include "util/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int hostpath_roots_add(struct hostpath_roots *r, const char *dir, char *err, size_t errlen)
{
    char resolved[PATH_MAX];
    struct stat st;
    if (r->n == HOSTPATH_ROOTS_MAX)
        return text_err(err, errlen, -E2BIG, "at most %d such directories", HOSTPATH_ROOTS_MAX);
    if (!realpath(dir, resolved) || stat(resolved, &st) < 0)
        return text_err(err, errlen, -errno, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return text_err(err, errlen, -ENOTDIR, "%s: not a directory", dir);
    snprintf(r->dirs[r->n++], sizeof(r->dirs[0]), "%s", resolved);
    return 0;
}

bool hostpath_within(const char *resolved, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return resolved[0] == '/';
    return !strncmp(resolved, dir, n) && resolved[n] == '/';
}

int hostpath_check(const struct hostpath_roots *r, const char *what, const char *path,
                   bool block_ok, char *out, size_t outsz, char *err, size_t errlen)
{
    const char *opt = !strcmp(what, "kernel") ? "--kernel-root" : "--disk-root";
    if (!r->n)
        return text_err(err, errlen, -EPERM, "the stream names the %s %s: xkvmd takes no host "
                    "path from a stream unless allowed with %s DIR (or give xkvm restore "
                    "a CONFIG)", what, path, opt);
    struct stat st;
    char resolved[PATH_MAX];
    if (path[0] != '/')
        return text_err(err, errlen, -EPERM, "%s %s: not an absolute path", what, path);
    if (lstat(path, &st) < 0)
        return text_err(err, errlen, -errno, "%s %s: %s", what, path, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return text_err(err, errlen, -EPERM, "%s %s: is a symbolic link", what, path);
    if (!realpath(path, resolved) || stat(resolved, &st) < 0)
        return text_err(err, errlen, -errno, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode) && !(block_ok && S_ISBLK(st.st_mode)))
        return text_err(err, errlen, -EPERM, "%s %s: not a regular file%s", what, path,
                    block_ok ? " or block device" : "");
    for (unsigned i = 0; i < r->n; i++) {
        if (hostpath_within(resolved, r->dirs[i])) {
            if (snprintf(out, outsz, "%s", resolved) >= (int)outsz)
                return text_err(err, errlen, -ENAMETOOLONG, "%s %s: too long", what, path);
            return 0;
        }
    }
    return text_err(err, errlen, -EPERM, "%s %s (%s) is outside every %s directory", what, path,
                resolved, opt);
}

static const struct domcfg_disk *disk_by_vdev(const struct domcfg *c, const char *vdev)
{
    for (unsigned i = 0; i < c->nr_disks; i++)
        if (!strcmp(c->disks[i].vdev, vdev))
            return &c->disks[i];
    return NULL;
}

/* The guest sees the same disks: local's paths and modes replace the stream's. */
static int take_local_disks(struct domcfg *cfg, const struct domcfg *local, char *err,
                            size_t errlen)
{
    if (cfg->nr_disks != local->nr_disks)
        return text_err(err, errlen, -EINVAL, "the stream has %u disks, the config %u",
                    cfg->nr_disks, local->nr_disks);
    for (unsigned i = 0; i < cfg->nr_disks; i++) {
        struct domcfg_disk *dk = &cfg->disks[i];
        const struct domcfg_disk *l = disk_by_vdev(local, dk->vdev);
        if (!l || l->devid != dk->devid)
            return text_err(err, errlen, -EINVAL, "the stream's disk %s is not in the config",
                        dk->vdev);
        snprintf(dk->path, sizeof(dk->path), "%s", l->path);
        dk->readonly = l->readonly;
    }
    return 0;
}

static void never_restart(struct domcfg *cfg)
{
    enum domcfg_action *acts[] = { &cfg->on_poweroff, &cfg->on_reboot, &cfg->on_crash };
    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
        if (*acts[i] == DOMCFG_RESTART)
            *acts[i] = DOMCFG_DESTROY;
}

int hostpath_apply(struct domcfg *cfg, const struct domcfg *local,
                   const struct hostpath_roots *disk_roots,
                   const struct hostpath_roots *kernel_roots, bool *kernel_dropped,
                   char *err, size_t errlen)
{
    *kernel_dropped = false;
    if (local) {
        snprintf(cfg->kernel, sizeof(cfg->kernel), "%s", local->kernel);
        snprintf(cfg->ramdisk, sizeof(cfg->ramdisk), "%s", local->ramdisk);
        snprintf(cfg->bootloader, sizeof(cfg->bootloader), "%s", local->bootloader);
        return take_local_disks(cfg, local, err, errlen);
    }
    for (unsigned i = 0; i < cfg->nr_disks; i++) {
        struct domcfg_disk *dk = &cfg->disks[i];
        char resolved[PATH_MAX];
        int rc = hostpath_check(disk_roots, "disk", dk->path, true, resolved,
                                sizeof(resolved), err, errlen);
        if (rc)
            return rc;
        memcpy(dk->path, resolved, sizeof(dk->path));
    }
    /* With a bootloader the kernel is a path inside the first disk, checked above. */
    if (cfg->bootloader[0])
        return 0;
    char kernel[PATH_MAX], why[256];
    if (hostpath_check(kernel_roots, "kernel", cfg->kernel, false, kernel, sizeof(kernel),
                       why, sizeof(why))) {
        *kernel_dropped = true;
        never_restart(cfg);
    } else {
        memcpy(cfg->kernel, kernel, sizeof(cfg->kernel));
    }
    /* The ramdisk goes with the kernel: the same roots, the same consequence. */
    if (cfg->ramdisk[0] && hostpath_check(kernel_roots, "kernel", cfg->ramdisk, false, kernel,
                                          sizeof(kernel), why, sizeof(why))) {
        cfg->ramdisk[0] = '\0';
        *kernel_dropped = true;
        never_restart(cfg);
    } else if (cfg->ramdisk[0]) {
        memcpy(cfg->ramdisk, kernel, sizeof(cfg->ramdisk));
    }
    return 0;
}
