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
/* The one bootloader xkvm runs (xl.cfg bootloader = "pygrub"; docs/config.md). */
#define DOMCFG_BOOTLOADER_PYGRUB "pygrub"
#define DOMCFG_VDEV_MAX     16
#define DOMCFG_VIFS_MAX     8
/* A host interface name: Linux's IFNAMSIZ, with its NUL. */
#define DOMCFG_IFNAME_MAX   16
/* Host CPUs a `cpus` pinning can name (0 .. DOMCFG_HOST_CPUS - 1). */
#define DOMCFG_HOST_CPUS    1024
#define DOMCFG_UUID_LEN     36

/* A set of host CPUs (xl's CPULIST: "all", "2", "0-3,5", "0-7,^1"). */
struct domcfg_cpuset {
    uint64_t bits[DOMCFG_HOST_CPUS / 64];
};

/* A virtual disk: a raw image or block device, seen by the guest as a Xen vbd. */
struct domcfg_disk {
    char path[PATH_MAX];            /* absolute path of the image (backend "params") */
    char vdev[DOMCFG_VDEV_MAX];     /* the guest's name for it, e.g. "xvda" */
    uint32_t devid;                 /* Xen's virtual-device number, e.g. 51712 */
    bool readonly;
};

/*
 * A network interface (xl's vif): handle N is its index in the list, the guest sees
 * device/vif/N; the backend is the TAP device vif<domid>.<N> (docs/netback.md).
 */
struct domcfg_vif {
    uint8_t mac[6];                 /* unicast; made up with libxl's 00:16:3e if unset */
    char bridge[DOMCFG_IFNAME_MAX]; /* "" or the host bridge the TAP joins */
    /* xl's rate=: the guest may send rate_bytes per rate_usec (0, 0: unlimited). */
    uint64_t rate_bytes;
    uint32_t rate_usec;
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
    /*
     * Absolute path. With a bootloader: a path inside the guest's first disk, or ""
     * (the bootloader's choice), as libxl passes it to pygrub (--kernel).
     */
    char kernel[PATH_MAX];
    char bootloader[16];              /* "" or DOMCFG_BOOTLOADER_PYGRUB */
    char cmdline[DOMCFG_CMDLINE_MAX];
    enum domcfg_action on_poweroff, on_reboot, on_crash;
    unsigned nr_disks;
    struct domcfg_disk disks[DOMCFG_DISKS_MAX];
    /* xl's `ramdisk`: absolute path, "" for none; the first hvm_start_info module. */
    char ramdisk[PATH_MAX];
    /*
     * xl's `maxmem` (MiB, 0: as memory): the most RAM the guest may hold (Xen's
     * max_pages, memory/static-max); ballooning beyond `memory` populates gfns above
     * its RAM up to this. target_kb: the balloon target (memory/target, KiB; 0: as
     * memory), moved by `xkvm mem-set` and carried with the config.
     */
    uint64_t maxmem_mb;
    uint64_t target_kb;
    /* xl's `maxvcpus`: vCPUs created (0: as many as vcpus); those past vcpus start
     * offline and come up with `xkvm vcpu-set`, which also changes vcpus. */
    unsigned maxvcpus;
    /* xl's `uuid`: lower-case 8-4-4-4-12, "" to have one made up. */
    char uuid[DOMCFG_UUID_LEN + 1];
    /* xl's `cpus`: 0 (no pinning), 1 (every vCPU on cpus[0]), or one set per vCPU
     * from vCPU 0 up (the rest unpinned). */
    unsigned nr_cpus;
    struct domcfg_cpuset cpus[DOMCFG_VCPUS_MAX];
    /* xl's `vif`: network interfaces, handles 0 .. nr_vifs - 1. */
    unsigned nr_vifs;
    struct domcfg_vif vifs[DOMCFG_VIFS_MAX];
    /* xl's `altp2m`: HVM_PARAM_ALTP2M's mode, DOMCFG_ALTP2M_* (docs/altp2m.md). */
    unsigned altp2m;
};
enum { DOMCFG_ALTP2M_DISABLED, DOMCFG_ALTP2M_MIXED, DOMCFG_ALTP2M_EXTERNAL,
       DOMCFG_ALTP2M_LIMITED, DOMCFG_ALTP2M_NR };
/* "disabled", "mixed", "external", "limited" -> DOMCFG_ALTP2M_*; -EINVAL if none. */
int domcfg_altp2m_parse(const char *s);
const char *domcfg_altp2m_name(unsigned mode);

/* The most RAM a domain may hold, in MiB: maxmem, or memory where maxmem is 0. */
uint64_t domcfg_max_mb(const struct domcfg *c);
/* Its balloon target in KiB: target_kb, or memory where target_kb is 0. */
uint64_t domcfg_target_kb(const struct domcfg *c);
/* The vCPUs a domain has: maxvcpus, or vcpus where maxvcpus is 0. */
unsigned domcfg_max_vcpus(const struct domcfg *c);
/*
 * xl's CPULIST syntax into *set, as xl's parse_cpurange reads it: comma-separated
 * "all", "N", "N-M", each negated with a leading '^'; the set starts empty. "nodes:"
 * is refused (no NUMA placement). 0, or -EINVAL with a message.
 */
int domcfg_cpuset_parse(const char *spec, struct domcfg_cpuset *set, char *err,
                        size_t errlen);
/* The set as "0-3,5" ("" if empty), into out (truncated to outlen). */
void domcfg_cpuset_format(const struct domcfg_cpuset *set, char *out, size_t outlen);
bool domcfg_cpuset_empty(const struct domcfg_cpuset *set);
static inline bool domcfg_cpuset_has(const struct domcfg_cpuset *s, unsigned cpu)
{
    return cpu < DOMCFG_HOST_CPUS && (s->bits[cpu / 64] >> (cpu % 64)) & 1;
}

void domcfg_defaults(struct domcfg *c);
const char *domcfg_action_name(enum domcfg_action a);
int domcfg_action_parse(const char *s, enum domcfg_action *out);

/*
 * Xen's virtual-device number for a vdev name (docs/misc/vbd-interface): xvdX[N]
 * (202 << 8 | disk << 4 | partition, or 1 << 28 | disk << 8 | partition for disks
 * beyond xvdp), hdX[N], sdX[N], or a plain number. 0 or -EINVAL.
 */
int domcfg_vdev_to_devid(const char *vdev, uint32_t *devid);

/*
 * A MAC address "xx:xx:xx:xx:xx:xx" (hex, either case) into mac; 0 or -EINVAL.
 * domcfg_mac_format writes the lower-case form (18 bytes with the NUL).
 */
int domcfg_mac_parse(const char *s, uint8_t mac[6]);
void domcfg_mac_format(const uint8_t mac[6], char out[18]);
/* A name Linux accepts for an interface: 1..15 of [A-Za-z0-9_.-]. */
bool domcfg_ifname_valid(const char *s);

/* Check ranges and strings; 0, or -EINVAL with a message naming the field. */
int domcfg_validate(const struct domcfg *c, char *err, size_t errlen);

struct json_object *domcfg_to_json(const struct domcfg *c);
/* Untrusted JSON -> validated config. 0, or -EINVAL with a message. */
int domcfg_from_json(struct json_object *o, struct domcfg *c, char *err, size_t errlen);

/*
 * A domain record: a config and how the domain stands, as one JSON object. The one
 * codec for the migration stream's DOMAIN_CONFIG ({domid, config, paused?, uuid?,
 * vmcall?}) and
 * the live-update image's DOMAIN ({config, paused, shutdown_code, shutdown_handled}):
 * each is a set of these members, always written in this order.
 */
enum domrec_member {
    DOMREC_DOMID    = 1u << 0,  /* "domid": a guest's, 1 .. DOMREC_DOMID_LIMIT - 1 */
    DOMREC_CONFIG   = 1u << 1,  /* "config": domcfg_to_json's object */
    DOMREC_PAUSED   = 1u << 2,  /* "paused": paused by the toolstack */
    DOMREC_SHUTDOWN = 1u << 3,  /* "shutdown_code" (-1: none), "shutdown_handled" */
    DOMREC_UUID     = 1u << 4,  /* "uuid": the /vm name, lower-case 8-4-4-4-12 hex */
    DOMREC_VMCALL   = 1u << 5,  /* "vmcall": the guest has called Xen by VMCALL/VMMCALL */
};
#define DOMREC_DOMID_LIMIT  0x7FF0u

struct domrec {
    unsigned members;           /* enum domrec_member: present (read) or to write */
    unsigned domid;
    struct domcfg *cfg;         /* DOMREC_CONFIG: written from, or read into */
    bool paused;
    int shutdown_code;          /* 0..255, or -1 */
    bool shutdown_handled;
    char uuid[37];
    bool vmcall;
};

/* Is s a lower-case textual UUID (8-4-4-4-12 hex digits)? */
bool domrec_uuid_valid(const char *s);
/*
 * A UUID as xl reads one (libxl_uuid_from_string: 8-4-4-4-12 hex digits, either case)
 * into lower case. 0 or -EINVAL.
 */
int domcfg_uuid_parse(const char *s, char out[DOMCFG_UUID_LEN + 1]);
/* The record's members as compact JSON, malloc'd (NULL: out of memory). */
char *domrec_to_json(const struct domrec *r);
/*
 * Untrusted JSON text of len bytes -> r, with every member of required and any of
 * optional (others are ignored); r->cfg points at where the config goes. 0, or -EINVAL
 * with a message that begins with what ("DOMAIN_CONFIG is not {shape}", "DOMAIN_CONFIG: ...").
 */
int domrec_from_json(const char *text, size_t len, unsigned required, unsigned optional,
                     const char *what, const char *shape, struct domrec *r, char *err,
                     size_t errlen);

#endif
