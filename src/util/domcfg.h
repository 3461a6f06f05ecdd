/*
 * A domain's configuration as the toolstack hands it to xkvmd: the subset of xl.cfg
 * xkvm supports. The CLI fills it from an xl.cfg file (src/tools/xlcfg.c, libxlutil);
 * the control protocol carries it as JSON, which xkvmd validates as untrusted input.
 */
#ifndef XKVM_UTIL_DOMCFG_H
#define XKVM_UTIL_DOMCFG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#define DOMCFG_NAME_MAX     64
#define DOMCFG_CMDLINE_MAX  2048
#define DOMCFG_VCPUS_MAX    128
#define DOMCFG_MEMORY_MB_MIN 2
#define DOMCFG_MEMORY_MB_MAX (1024 * 1024)

#define DOMCFG_DISKS_MAX    16
#define DOMCFG_VDEV_MAX     16

/* A virtual disk: a raw image or block device, seen by the guest as a Xen vbd. */
struct domcfg_disk {
    char path[PATH_MAX];            /* absolute path of the image (backend "params") */
    char vdev[DOMCFG_VDEV_MAX];     /* the guest's name for it, e.g. "xvda" */
    uint32_t devid;                 /* Xen's virtual-device number, e.g. 51712 */
    bool readonly;
};

enum domcfg_action {
    DOMCFG_DESTROY,     /* xl's default for on_poweroff and on_crash */
    DOMCFG_RESTART,     /* xl's default for on_reboot */
    DOMCFG_PRESERVE,    /* keep the domain, shut down, for inspection */
};

struct domcfg {
    char name[DOMCFG_NAME_MAX];
    uint64_t memory_mb;
    unsigned vcpus;
    char kernel[PATH_MAX];            /* absolute path */
    char cmdline[DOMCFG_CMDLINE_MAX];
    enum domcfg_action on_poweroff, on_reboot, on_crash;
    unsigned nr_disks;
    struct domcfg_disk disks[DOMCFG_DISKS_MAX];
};

void domcfg_defaults(struct domcfg *c);
const char *domcfg_action_name(enum domcfg_action a);
int domcfg_action_parse(const char *s, enum domcfg_action *out);

/*
 * Xen's virtual-device number for a vdev name (docs/misc/vbd-interface): xvdX[N]
 * (202 << 8 | disk << 4 | partition, or 1 << 28 | disk << 8 | partition for disks
 * beyond xvdp), hdX[N], sdX[N], or a plain number. 0 or -EINVAL.
 */
int domcfg_vdev_to_devid(const char *vdev, uint32_t *devid);

/* Check ranges and strings; 0, or -EINVAL with a message naming the field. */
int domcfg_validate(const struct domcfg *c, char *err, size_t errlen);

struct json_object *domcfg_to_json(const struct domcfg *c);
/* Untrusted JSON -> validated config. 0, or -EINVAL with a message. */
int domcfg_from_json(struct json_object *o, struct domcfg *c, char *err, size_t errlen);

#endif
