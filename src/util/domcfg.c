/*
 * Domain configuration: defaults, validation and the JSON form the control protocol
 * carries. domcfg_from_json() runs in xkvmd on bytes from any local client, so it
 * checks every field's type, range and contents before anything is copied.
 */
#include "util/domcfg.h"
#include "util/text.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[] = {
    [DOMCFG_DESTROY] = "destroy",
    [DOMCFG_RESTART] = "restart",
    [DOMCFG_PRESERVE] = "preserve",
};
#define NR_ACTIONS (sizeof(action_names) / sizeof(action_names[0]))

/* xl accepts these too; xkvm does not implement them (yet). */
static const char *const unsupported_actions[] = {
    "coredump-destroy", "coredump-restart", "rename-restart", "soft-reset",
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

void domcfg_defaults(struct domcfg *c)
{
    memset(c, 0, sizeof(*c));
    c->memory_mb = 32;
    c->vcpus = 1;
    c->on_poweroff = DOMCFG_DESTROY;
    c->on_reboot = DOMCFG_RESTART;
    c->on_crash = DOMCFG_DESTROY;
}

const char *domcfg_action_name(enum domcfg_action a)
{
    if ((unsigned)a < NR_ACTIONS)
        return action_names[a];
    return "invalid";
}

/* 0; -EOPNOTSUPP for xl actions xkvm does not implement; -EINVAL for anything else. */
int domcfg_action_parse(const char *s, enum domcfg_action *out)
{
    if (!s)
        return -EINVAL;
    for (unsigned i = 0; i < NR_ACTIONS; i++) {
        if (strcmp(s, action_names[i]) == 0) {
            *out = (enum domcfg_action)i;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(unsupported_actions) / sizeof(unsupported_actions[0]); i++)
        if (strcmp(s, unsupported_actions[i]) == 0)
            return -EOPNOTSUPP;
    return -EINVAL;
}

/* Domain names become table keys and may appear in file names: keep them plain. */
static bool name_char_ok(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' ||
           ch == ':' || ch == '+' || ch == '@';
}

static int check_name(const char *s, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return fail(err, errlen, "name: must not be empty");
    if (len >= DOMCFG_NAME_MAX)
        return fail(err, errlen, "name: longer than %d characters", DOMCFG_NAME_MAX - 1);
    bool all_digits = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!name_char_ok(ch))
            return fail(err, errlen,
                        "name: character 0x%02x at offset %zu not allowed "
                        "(use letters, digits and _-.:+@)", ch, i);
        if (ch < '0' || ch > '9')
            all_digits = false;
    }
    if (all_digits)
        return fail(err, errlen, "name: must not be all digits (it would read as a domid)");
    if (s[0] == '-' || s[0] == '.')
        return fail(err, errlen, "name: must not start with '%c'", s[0]);
    return 0;
}

static int check_kernel(const char *s, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return fail(err, errlen, "kernel: must not be empty");
    if (len >= PATH_MAX)
        return fail(err, errlen, "kernel: path longer than %d bytes", PATH_MAX - 1);
    if (memchr(s, '\0', len))
        return fail(err, errlen, "kernel: contains a NUL byte");
    if (s[0] != '/')
        return fail(err, errlen, "kernel: must be an absolute path");
    return 0;
}

/* "" or "pygrub"; a bootloader reads the guest's first disk, so there must be one. */
static int check_bootloader(const char *s, size_t len, unsigned nr_disks, char *err,
                            size_t errlen)
{
    if (len == 0)
        return 0;
    if (len != strlen(DOMCFG_BOOTLOADER_PYGRUB) || memcmp(s, DOMCFG_BOOTLOADER_PYGRUB, len))
        return fail(err, errlen, "bootloader: only \"" DOMCFG_BOOTLOADER_PYGRUB "\" is "
                    "supported");
    if (nr_disks == 0)
        return fail(err, errlen, "bootloader: needs a disk to boot from");
    return 0;
}

static int check_cmdline(const char *s, size_t len, char *err, size_t errlen)
{
    if (len >= DOMCFG_CMDLINE_MAX)
        return fail(err, errlen, "cmdline: longer than %d bytes", DOMCFG_CMDLINE_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return fail(err, errlen,
                        "cmdline: control character 0x%02x at offset %zu not allowed", ch, i);
    }
    return 0;
}

/* "a".."z", "aa".."zz": a disk index (bijective base 26); its length in *len. */
static int disk_letters(const char *s, unsigned *disk, size_t *len)
{
    size_t n = 0;
    unsigned v = 0;
    while (s[n] >= 'a' && s[n] <= 'z' && n < 3) {
        v = v * 26 + (unsigned)(s[n] - 'a' + 1);
        n++;
    }
    if (n == 0 || (s[n] >= 'a' && s[n] <= 'z'))
        return -EINVAL;
    *disk = v - 1;
    *len = n;
    return 0;
}

/* An optional decimal partition number without leading zeros. */
static int partition_number(const char *s, unsigned max, unsigned *part)
{
    *part = 0;
    if (!*s)
        return 0;
    if (s[0] == '0')
        return -EINVAL;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > max)
            return -EINVAL;
    }
    *part = v;
    return 0;
}

int domcfg_vdev_to_devid(const char *vdev, uint32_t *devid)
{
    unsigned disk, part;
    size_t len;
    if (!vdev || !*vdev)
        return -EINVAL;
    if (vdev[0] >= '1' && vdev[0] <= '9') {
        uint64_t v = 0;
        for (const char *p = vdev; *p; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(*p - '0');
            if (v >= (1u << 29))
                return -EINVAL;
        }
        *devid = (uint32_t)v;
        return 0;
    }
    if (strncmp(vdev, "xvd", 3) == 0) {
        if (disk_letters(vdev + 3, &disk, &len))
            return -EINVAL;
        if (disk < 16) {
            if (partition_number(vdev + 3 + len, 15, &part))
                return -EINVAL;
            *devid = (202u << 8) | (disk << 4) | part;
        } else {
            if (disk > 0xfffff || partition_number(vdev + 3 + len, 255, &part))
                return -EINVAL;
            *devid = (1u << 28) | (disk << 8) | part;
        }
        return 0;
    }
    if (strncmp(vdev, "sd", 2) == 0) {
        if (disk_letters(vdev + 2, &disk, &len) || disk >= 16 ||
            partition_number(vdev + 2 + len, 15, &part))
            return -EINVAL;
        *devid = (8u << 8) | (disk << 4) | part;
        return 0;
    }
    if (strncmp(vdev, "hd", 2) == 0) {
        static const uint32_t base[4] = { 3u << 8, (3u << 8) | 64, 22u << 8, (22u << 8) | 64 };
        if (disk_letters(vdev + 2, &disk, &len) || disk >= 4 ||
            partition_number(vdev + 2 + len, 63, &part))
            return -EINVAL;
        *devid = base[disk] | part;
        return 0;
    }
    return -EINVAL;
}

static int check_disk(const struct domcfg_disk *dk, unsigned i, char *err, size_t errlen)
{
    size_t len = strnlen(dk->path, sizeof(dk->path));
    if (len == sizeof(dk->path))
        return fail(err, errlen, "disks[%u].path: not terminated", i);
    if (len == 0 || dk->path[0] != '/')
        return fail(err, errlen, "disks[%u].path: must be an absolute path", i);
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)dk->path[k] < 0x20 || dk->path[k] == 0x7f)
            return fail(err, errlen, "disks[%u].path: control character at offset %zu",
                        i, k);
    if (strnlen(dk->vdev, sizeof(dk->vdev)) == sizeof(dk->vdev))
        return fail(err, errlen, "disks[%u].vdev: not terminated", i);
    uint32_t devid;
    if (domcfg_vdev_to_devid(dk->vdev, &devid) < 0)
        return fail(err, errlen, "disks[%u].vdev: \"%s\" is not a Xen virtual device name "
                    "(xvda, xvdb1, hda, sdb, or a number)", i, dk->vdev);
    if (devid != dk->devid)
        return fail(err, errlen, "disks[%u].devid: %u does not match vdev %s (%u)",
                    i, dk->devid, dk->vdev, devid);
    return 0;
}

static int check_disks(const struct domcfg *c, char *err, size_t errlen)
{
    if (c->nr_disks > DOMCFG_DISKS_MAX)
        return fail(err, errlen, "disks: more than %d", DOMCFG_DISKS_MAX);
    for (unsigned i = 0; i < c->nr_disks; i++) {
        int r = check_disk(&c->disks[i], i, err, errlen);
        if (r < 0)
            return r;
        for (unsigned j = 0; j < i; j++)
            if (c->disks[j].devid == c->disks[i].devid)
                return fail(err, errlen, "disks[%u].vdev: %s is used twice", i,
                            c->disks[i].vdev);
    }
    return 0;
}

int domcfg_mac_parse(const char *s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        const char *p = s + i * 3;
        if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
            p[2] != (i == 5 ? '\0' : ':'))
            return -EINVAL;
        char hex[3] = { p[0], p[1], '\0' };
        mac[i] = (uint8_t)strtoul(hex, NULL, 16);
    }
    return 0;
}

void domcfg_mac_format(const uint8_t mac[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);
}

bool domcfg_ifname_valid(const char *s)
{
    size_t len = strnlen(s, DOMCFG_IFNAME_MAX);
    if (len == 0 || len >= DOMCFG_IFNAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return false;
    return true;
}

/* vifs: a unicast MAC each, used once; a bridge name Linux would accept, or none. */
static int check_vifs(const struct domcfg *c, char *err, size_t errlen)
{
    if (c->nr_vifs > DOMCFG_VIFS_MAX)
        return fail(err, errlen, "vifs: more than %d", DOMCFG_VIFS_MAX);
    for (unsigned i = 0; i < c->nr_vifs; i++) {
        const struct domcfg_vif *v = &c->vifs[i];
        if (v->mac[0] & 1)
            return fail(err, errlen, "vifs[%u].mac: a multicast address", i);
        static const uint8_t zero[6];
        if (!memcmp(v->mac, zero, 6))
            return fail(err, errlen, "vifs[%u].mac: all zero", i);
        for (unsigned j = 0; j < i; j++)
            if (!memcmp(c->vifs[j].mac, v->mac, 6))
                return fail(err, errlen, "vifs[%u].mac: used twice", i);
        if (strnlen(v->bridge, sizeof(v->bridge)) == sizeof(v->bridge))
            return fail(err, errlen, "vifs[%u].bridge: not terminated", i);
        if (v->bridge[0] && !domcfg_ifname_valid(v->bridge))
            return fail(err, errlen, "vifs[%u].bridge: not an interface name "
                        "(1 to 15 of A-Z a-z 0-9 _ . -)", i);
        if ((v->rate_bytes == 0) != (v->rate_usec == 0))
            return fail(err, errlen, "vifs[%u].rate: bytes and interval go together", i);
    }
    return 0;
}

static int check_memory(uint64_t mb, char *err, size_t errlen)
{
    if (mb < DOMCFG_MEMORY_MB_MIN || mb > DOMCFG_MEMORY_MB_MAX)
        return fail(err, errlen, "memory_mb: %" PRIu64 " out of range (%d to %d MiB)",
                    mb, DOMCFG_MEMORY_MB_MIN, DOMCFG_MEMORY_MB_MAX);
    return 0;
}

static int check_vcpus(uint64_t n, char *err, size_t errlen)
{
    if (n < 1 || n > DOMCFG_VCPUS_MAX)
        return fail(err, errlen, "vcpus: %" PRIu64 " out of range (1 to %d)",
                    n, DOMCFG_VCPUS_MAX);
    return 0;
}


uint64_t domcfg_max_mb(const struct domcfg *c)
{
    return c->maxmem_mb > c->memory_mb ? c->maxmem_mb : c->memory_mb;
}

uint64_t domcfg_target_kb(const struct domcfg *c)
{
    return c->target_kb ? c->target_kb : c->memory_mb * 1024;
}

static const char *const altp2m_names[DOMCFG_ALTP2M_NR] = {
    "disabled", "mixed", "external", "limited",
};

int domcfg_altp2m_parse(const char *s)
{
    for (int i = 0; i < DOMCFG_ALTP2M_NR; i++)
        if (!strcmp(s, altp2m_names[i]))
            return i;
    return -EINVAL;
}

const char *domcfg_altp2m_name(unsigned mode)
{
    return mode < DOMCFG_ALTP2M_NR ? altp2m_names[mode] : "?";
}

unsigned domcfg_max_vcpus(const struct domcfg *c)
{
    return c->maxvcpus ? c->maxvcpus : c->vcpus;
}

/* An optional absolute path ("" for none), as the kernel's. */
static int check_opt_path(const char *field, const char *s, size_t size, char *err,
                          size_t errlen)
{
    size_t len = strnlen(s, size);
    if (len == size)
        return fail(err, errlen, "%s: not terminated", field);
    if (len == 0)
        return 0;
    if (s[0] != '/')
        return fail(err, errlen, "%s: must be an absolute path", field);
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f)
            return fail(err, errlen, "%s: control character at offset %zu", field, k);
    return 0;
}

/* maxmem as xl checks it (not below memory); the target within [1 MiB, maxmem]. */
static int check_maxmem(const struct domcfg *c, char *err, size_t errlen)
{
    if (c->maxmem_mb && (c->maxmem_mb < c->memory_mb || c->maxmem_mb > DOMCFG_MEMORY_MB_MAX))
        return fail(err, errlen, "maxmem_mb: %" PRIu64 " out of range (memory %" PRIu64
                    " to %d MiB)", c->maxmem_mb, c->memory_mb, DOMCFG_MEMORY_MB_MAX);
    if (c->target_kb && (c->target_kb < 1024 || c->target_kb > domcfg_max_mb(c) * 1024))
        return fail(err, errlen, "target_kb: %" PRIu64 " out of range (1024 to %" PRIu64
                    " KiB)", c->target_kb, domcfg_max_mb(c) * 1024);
    return 0;
}

/* ramdisk, maxvcpus, uuid, cpus, maxmem: the keys a Linux guest's config adds. */
static int check_boot_extras(const struct domcfg *c, char *err, size_t errlen)
{
    int r = check_opt_path("ramdisk", c->ramdisk, sizeof(c->ramdisk), err, errlen);
    if (r < 0 || (r = check_maxmem(c, err, errlen)) < 0)
        return r;
    if (c->maxvcpus && (c->maxvcpus < c->vcpus || c->maxvcpus > DOMCFG_VCPUS_MAX))
        return fail(err, errlen, "maxvcpus: %u out of range (vcpus %u to %d)", c->maxvcpus,
                    c->vcpus, DOMCFG_VCPUS_MAX);
    if (strnlen(c->uuid, sizeof(c->uuid)) == sizeof(c->uuid))
        return fail(err, errlen, "uuid: not terminated");
    if (c->uuid[0] && !domrec_uuid_valid(c->uuid))
        return fail(err, errlen, "uuid: not a lower-case 8-4-4-4-12 UUID");
    if (c->nr_cpus > domcfg_max_vcpus(c))
        return fail(err, errlen, "cpus: %u entries for %u vCPUs", c->nr_cpus,
                    domcfg_max_vcpus(c));
    if (c->altp2m >= DOMCFG_ALTP2M_NR)
        return fail(err, errlen, "altp2m: mode %u out of range", c->altp2m);
    for (unsigned i = 0; i < c->nr_cpus; i++)
        if (domcfg_cpuset_empty(&c->cpus[i]))
            return fail(err, errlen, "cpus: entry %u names no CPU", i);
    return 0;
}

bool domcfg_cpuset_empty(const struct domcfg_cpuset *set)
{
    for (size_t i = 0; i < sizeof(set->bits) / sizeof(set->bits[0]); i++)
        if (set->bits[i])
            return false;
    return true;
}

static void cpuset_range(struct domcfg_cpuset *set, unsigned lo, unsigned hi, bool on)
{
    for (unsigned c = lo; c <= hi; c++) {
        if (on)
            set->bits[c / 64] |= UINT64_C(1) << (c % 64);
        else
            set->bits[c / 64] &= ~(UINT64_C(1) << (c % 64));
    }
}

/* A decimal CPU number below DOMCFG_HOST_CPUS at *p; advances *p. */
static int cpu_number(const char **p, unsigned *out)
{
    unsigned v = 0;
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (unsigned)(*s - '0');
        if (v >= DOMCFG_HOST_CPUS)
            return -ERANGE;
    }
    *p = s;
    *out = v;
    return 0;
}

/* One comma-separated element: [^](all | N | N-M). */
static int cpuset_element(const char *s, size_t len, struct domcfg_cpuset *set, char *err,
                          size_t errlen)
{
    char el[32];
    if (len == 0 || len >= sizeof(el))
        return fail(err, errlen, "cpus: \"%.*s\" is not a CPU, range or \"all\"",
                    (int)(len < 32 ? len : 32), s);
    memcpy(el, s, len);
    el[len] = '\0';
    const char *p = el;
    bool on = *p != '^';
    if (!on)
        p++;
    if (strcmp(p, "all") == 0) {
        cpuset_range(set, 0, DOMCFG_HOST_CPUS - 1, on);
        return 0;
    }
    if (strncmp(p, "nodes:", 6) == 0 || strncmp(p, "node:", 5) == 0)
        return fail(err, errlen, "cpus: \"%s\": NUMA node placement is not supported", el);
    unsigned lo, hi;
    int r = cpu_number(&p, &lo);
    hi = lo;
    if (!r && *p == '-') {
        p++;
        r = cpu_number(&p, &hi);
    }
    if (r == -ERANGE)
        return fail(err, errlen, "cpus: \"%s\": CPU numbers go up to %d", el,
                    DOMCFG_HOST_CPUS - 1);
    if (r || *p || hi < lo)
        return fail(err, errlen, "cpus: \"%s\" is not a CPU, range or \"all\"", el);
    cpuset_range(set, lo, hi, on);
    return 0;
}

int domcfg_cpuset_parse(const char *spec, struct domcfg_cpuset *set, char *err,
                        size_t errlen)
{
    memset(set, 0, sizeof(*set));
    if (!spec)
        return fail(err, errlen, "cpus: missing");
    for (const char *p = spec;;) {
        size_t len = strcspn(p, ",");
        int r = cpuset_element(p, len, set, err, errlen);
        if (r < 0)
            return r;
        if (!p[len])
            break;
        p += len + 1;
    }
    if (domcfg_cpuset_empty(set))
        return fail(err, errlen, "cpus: \"%.40s\" leaves no CPU", spec);
    return 0;
}

void domcfg_cpuset_format(const struct domcfg_cpuset *set, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen)
        out[0] = '\0';
    for (unsigned c = 0; c < DOMCFG_HOST_CPUS; c++) {
        if (!domcfg_cpuset_has(set, c))
            continue;
        unsigned hi = c;
        while (hi + 1 < DOMCFG_HOST_CPUS && domcfg_cpuset_has(set, hi + 1))
            hi++;
        int w = hi == c ? snprintf(out + n, outlen - n, "%s%u", n ? "," : "", c)
                        : snprintf(out + n, outlen - n, "%s%u-%u", n ? "," : "", c, hi);
        if (w < 0 || (size_t)w >= outlen - n)
            return;
        n += (size_t)w;
        c = hi;
    }
}

int domcfg_uuid_parse(const char *s, char out[DOMCFG_UUID_LEN + 1])
{
    char tmp[DOMCFG_UUID_LEN + 1];
    if (!s || strlen(s) != DOMCFG_UUID_LEN)
        return -EINVAL;
    for (int i = 0; i < DOMCFG_UUID_LEN; i++)
        tmp[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    tmp[DOMCFG_UUID_LEN] = '\0';
    if (!domrec_uuid_valid(tmp))
        return -EINVAL;
    memcpy(out, tmp, sizeof(tmp));
    return 0;
}

int domcfg_validate(const struct domcfg *c, char *err, size_t errlen)
{
    size_t len;
    int r;

    len = strnlen(c->name, sizeof(c->name));
    if (len == sizeof(c->name))
        return fail(err, errlen, "name: not terminated");
    if ((r = check_name(c->name, len, err, errlen)) < 0)
        return r;
    if ((r = check_memory(c->memory_mb, err, errlen)) < 0)
        return r;
    if ((r = check_vcpus(c->vcpus, err, errlen)) < 0)
        return r;
    len = strnlen(c->bootloader, sizeof(c->bootloader));
    if (len == sizeof(c->bootloader))
        return fail(err, errlen, "bootloader: not terminated");
    if ((r = check_bootloader(c->bootloader, len, c->nr_disks, err, errlen)) < 0)
        return r;
    bool kernel_optional = len > 0;
    len = strnlen(c->kernel, sizeof(c->kernel));
    if (len == sizeof(c->kernel))
        return fail(err, errlen, "kernel: not terminated");
    if ((len || !kernel_optional) && (r = check_kernel(c->kernel, len, err, errlen)) < 0)
        return r;
    len = strnlen(c->cmdline, sizeof(c->cmdline));
    if (len == sizeof(c->cmdline))
        return fail(err, errlen, "cmdline: not terminated");
    if ((r = check_cmdline(c->cmdline, len, err, errlen)) < 0)
        return r;
    if ((unsigned)c->on_poweroff >= NR_ACTIONS)
        return fail(err, errlen, "on_poweroff: invalid action %d", (int)c->on_poweroff);
    if ((unsigned)c->on_reboot >= NR_ACTIONS)
        return fail(err, errlen, "on_reboot: invalid action %d", (int)c->on_reboot);
    if ((unsigned)c->on_crash >= NR_ACTIONS)
        return fail(err, errlen, "on_crash: invalid action %d", (int)c->on_crash);
    if ((r = check_boot_extras(c, err, errlen)) < 0)
        return r;
    if ((r = check_vifs(c, err, errlen)) < 0)
        return r;
    return check_disks(c, err, errlen);
}

/* The newer members, each only where set: a config without them reads on older peers. */
static int extras_to_json(struct json_object *o, const struct domcfg *c)
{
    int bad = 0;
    if (c->ramdisk[0])
        bad |= json_object_object_add(o, "ramdisk", json_object_new_string(c->ramdisk));
    if (c->maxvcpus)
        bad |= json_object_object_add(o, "maxvcpus", json_object_new_int64(c->maxvcpus));
    if (c->maxmem_mb)
        bad |= json_object_object_add(o, "maxmem_mb", json_object_new_int64((int64_t)c->maxmem_mb));
    if (c->target_kb)
        bad |= json_object_object_add(o, "target_kb", json_object_new_int64((int64_t)c->target_kb));
    if (c->uuid[0])
        bad |= json_object_object_add(o, "uuid", json_object_new_string(c->uuid));
    if (c->altp2m)
        bad |= json_object_object_add(o, "altp2m",
                                      json_object_new_string(domcfg_altp2m_name(c->altp2m)));
    if (c->nr_cpus) {
        struct json_object *arr = json_object_new_array();
        bad |= json_object_object_add(o, "cpus", arr);
        for (unsigned i = 0; arr && i < c->nr_cpus && i < DOMCFG_VCPUS_MAX; i++) {
            char text[DOMCFG_HOST_CPUS * 5];
            domcfg_cpuset_format(&c->cpus[i], text, sizeof(text));
            bad |= json_object_array_add(arr, json_object_new_string(text));
        }
    }
    if (c->nr_vifs) {
        struct json_object *arr = json_object_new_array();
        bad |= json_object_object_add(o, "vifs", arr);
        for (unsigned i = 0; arr && i < c->nr_vifs && i < DOMCFG_VIFS_MAX; i++) {
            struct json_object *v = json_object_new_object();
            char mac[18];
            domcfg_mac_format(c->vifs[i].mac, mac);
            bad |= json_object_array_add(arr, v);
            bad |= json_object_object_add(v, "mac", json_object_new_string(mac));
            if (c->vifs[i].bridge[0])
                bad |= json_object_object_add(v, "bridge",
                                              json_object_new_string(c->vifs[i].bridge));
            if (c->vifs[i].rate_usec) {
                bad |= json_object_object_add(v, "rate_bytes",
                    json_object_new_int64((int64_t)(c->vifs[i].rate_bytes & INT64_MAX)));
                bad |= json_object_object_add(v, "rate_usec",
                                              json_object_new_int64(c->vifs[i].rate_usec));
            }
        }
    }
    return bad;
}

struct json_object *domcfg_to_json(const struct domcfg *c)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_object_add(o, "name", json_object_new_string(c->name));
    bad |= json_object_object_add(o, "memory_mb", json_object_new_int64((int64_t)c->memory_mb));
    bad |= json_object_object_add(o, "vcpus", json_object_new_int64(c->vcpus));
    bad |= json_object_object_add(o, "kernel", json_object_new_string(c->kernel));
    if (c->bootloader[0])   /* only then: a config without one reads as before */
        bad |= json_object_object_add(o, "bootloader", json_object_new_string(c->bootloader));
    bad |= json_object_object_add(o, "cmdline", json_object_new_string(c->cmdline));
    bad |= json_object_object_add(o, "on_poweroff",
                                  json_object_new_string(domcfg_action_name(c->on_poweroff)));
    bad |= json_object_object_add(o, "on_reboot",
                                  json_object_new_string(domcfg_action_name(c->on_reboot)));
    bad |= json_object_object_add(o, "on_crash",
                                  json_object_new_string(domcfg_action_name(c->on_crash)));
    if (c->nr_disks) {
        struct json_object *arr = json_object_new_array();
        bad |= json_object_object_add(o, "disks", arr);
        for (unsigned i = 0; arr && i < c->nr_disks && i < DOMCFG_DISKS_MAX; i++) {
            const struct domcfg_disk *dk = &c->disks[i];
            struct json_object *d = json_object_new_object();
            bad |= json_object_array_add(arr, d);
            bad |= json_object_object_add(d, "path", json_object_new_string(dk->path));
            bad |= json_object_object_add(d, "vdev", json_object_new_string(dk->vdev));
            bad |= json_object_object_add(d, "readonly", json_object_new_boolean(dk->readonly));
        }
    }
    bad |= extras_to_json(o, c);
    if (bad) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Field names accepted in the JSON form; anything else is rejected as a typo guard. */
static const char *const known_fields[] = {
    "name", "memory_mb", "vcpus", "kernel", "cmdline",
    "on_poweroff", "on_reboot", "on_crash", "disks", "ramdisk", "maxvcpus", "uuid", "cpus",
    "bootloader", "maxmem_mb", "target_kb", "vifs", "altp2m",
};

/* A string field: its bytes and length (json-c strings may hold NULs). */
static int get_string(struct json_object *o, const char *field, bool required,
                      const char **s, size_t *len, char *err, size_t errlen)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, field, &v)) {
        if (required)
            return fail(err, errlen, "%s: missing", field);
        *s = NULL;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return fail(err, errlen, "%s: must be a string", field);
    int n = json_object_get_string_len(v);
    const char *p = json_object_get_string(v);
    if (n < 0 || !p)
        return fail(err, errlen, "%s: unreadable string", field);
    if (memchr(p, '\0', (size_t)n))
        return fail(err, errlen, "%s: contains a NUL byte", field);
    *s = p;
    *len = (size_t)n;
    return 0;
}

/* An optional non-negative integer field; *present says whether it was there. */
static int get_uint(struct json_object *o, const char *field, uint64_t *out, bool *present,
                    char *err, size_t errlen)
{
    struct json_object *v;
    *present = false;
    if (!json_object_object_get_ex(o, field, &v))
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return fail(err, errlen, "%s: must be an integer", field);
    /* json-c stores values above INT64_MAX as uint64: those are out of range anyway. */
    int64_t n = json_object_get_int64(v);
    if (n < 0)
        return fail(err, errlen, "%s: must not be negative", field);
    *out = (uint64_t)n;
    *present = true;
    return 0;
}

static int get_action(struct json_object *o, const char *field, enum domcfg_action *out,
                      char *err, size_t errlen)
{
    const char *s;
    size_t len = 0;
    int r = get_string(o, field, false, &s, &len, err, errlen);
    if (r < 0 || !s)
        return r;
    r = domcfg_action_parse(s, out);
    char quoted[160];
    text_excerpt(quoted, sizeof(quoted), s, 32);
    (void)len;
    if (r == -EOPNOTSUPP)
        return fail(err, errlen, "%s: action \"%s\" is not supported by xkvm "
                    "(use destroy, restart or preserve)", field, quoted);
    if (r < 0)
        return fail(err, errlen, "%s: unknown action \"%s\" "
                    "(use destroy, restart or preserve)", field, quoted);
    return 0;
}

/* "disks": [{path, vdev, readonly?}], each checked before it is copied. */
static int get_disks(struct json_object *o, struct domcfg *c, char *err, size_t errlen)
{
    struct json_object *arr;
    if (!json_object_object_get_ex(o, "disks", &arr))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return fail(err, errlen, "disks: must be an array");
    size_t n = json_object_array_length(arr);
    if (n > DOMCFG_DISKS_MAX)
        return fail(err, errlen, "disks: more than %d", DOMCFG_DISKS_MAX);
    for (size_t i = 0; i < n; i++) {
        struct json_object *d = json_object_array_get_idx(arr, i), *v;
        char field[32];
        if (!json_object_is_type(d, json_type_object))
            return fail(err, errlen, "disks[%zu]: must be an object", i);
        json_object_object_foreach(d, key, val) {
            (void)val;
            if (strcmp(key, "path") && strcmp(key, "vdev") && strcmp(key, "readonly"))
                return fail(err, errlen, "disks[%zu]: unknown field", i);
        }
        struct domcfg_disk *dk = &c->disks[i];
        const char *s;
        size_t len = 0;
        int r;
        snprintf(field, sizeof(field), "disks[%zu].path", i);
        if ((r = get_string(d, "path", true, &s, &len, err, errlen)) < 0)
            return fail(err, errlen, "%s: missing or not a string", field);
        if (len >= sizeof(dk->path))
            return fail(err, errlen, "%s: longer than %zu bytes", field, sizeof(dk->path) - 1);
        memcpy(dk->path, s, len);
        dk->path[len] = '\0';
        snprintf(field, sizeof(field), "disks[%zu].vdev", i);
        if ((r = get_string(d, "vdev", true, &s, &len, err, errlen)) < 0)
            return fail(err, errlen, "%s: missing or not a string", field);
        if (len >= sizeof(dk->vdev))
            return fail(err, errlen, "%s: longer than %zu bytes", field, sizeof(dk->vdev) - 1);
        memcpy(dk->vdev, s, len);
        dk->vdev[len] = '\0';
        if (domcfg_vdev_to_devid(dk->vdev, &dk->devid) < 0)
            return fail(err, errlen, "%s: not a Xen virtual device name "
                        "(xvda, xvdb1, hda, sdb, or a number)", field);
        dk->readonly = false;
        if (json_object_object_get_ex(d, "readonly", &v)) {
            if (!json_object_is_type(v, json_type_boolean))
                return fail(err, errlen, "disks[%zu].readonly: must be true or false", i);
            dk->readonly = json_object_get_boolean(v);
        }
        c->nr_disks = (unsigned)i + 1;
    }
    return check_disks(c, err, errlen);
}

/* "cpus": [CPULIST, ...], one per vCPU from 0, or one for all. */
static int get_cpus(struct json_object *o, struct domcfg *c, char *err, size_t errlen)
{
    struct json_object *arr;
    if (!json_object_object_get_ex(o, "cpus", &arr))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return fail(err, errlen, "cpus: must be an array");
    size_t n = json_object_array_length(arr);
    if (n > DOMCFG_VCPUS_MAX)
        return fail(err, errlen, "cpus: more than %d entries", DOMCFG_VCPUS_MAX);
    for (size_t i = 0; i < n; i++) {
        struct json_object *v = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(v, json_type_string) ||
            memchr(json_object_get_string(v), '\0', (size_t)json_object_get_string_len(v)))
            return fail(err, errlen, "cpus[%zu]: must be a string", i);
        int r = domcfg_cpuset_parse(json_object_get_string(v), &c->cpus[i], err, errlen);
        if (r < 0)
            return r;
    }
    c->nr_cpus = (unsigned)n;
    return 0;
}

/* "vifs": [{mac, bridge?, rate_bytes?, rate_usec?}]; checked whole by domcfg_validate. */
static int get_vifs(struct json_object *o, struct domcfg *c, char *err, size_t errlen)
{
    struct json_object *arr;
    if (!json_object_object_get_ex(o, "vifs", &arr))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return fail(err, errlen, "vifs: must be an array");
    size_t n = json_object_array_length(arr);
    if (n > DOMCFG_VIFS_MAX)
        return fail(err, errlen, "vifs: more than %d", DOMCFG_VIFS_MAX);
    for (size_t i = 0; i < n; i++) {
        struct json_object *v = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(v, json_type_object))
            return fail(err, errlen, "vifs[%zu]: must be an object", i);
        json_object_object_foreach(v, key, val) {
            (void)val;
            if (strcmp(key, "mac") && strcmp(key, "bridge") && strcmp(key, "rate_bytes") &&
                strcmp(key, "rate_usec"))
                return fail(err, errlen, "vifs[%zu]: unknown field", i);
        }
        struct domcfg_vif *vif = &c->vifs[i];
        const char *s;
        size_t len = 0;
        if (get_string(v, "mac", true, &s, &len, err, errlen) < 0 ||
            domcfg_mac_parse(s, vif->mac) < 0)
            return fail(err, errlen, "vifs[%zu].mac: missing or not xx:xx:xx:xx:xx:xx", i);
        if (get_string(v, "bridge", false, &s, &len, err, errlen) < 0)
            return fail(err, errlen, "vifs[%zu].bridge: not a string", i);
        if (s && len >= sizeof(vif->bridge))
            return fail(err, errlen, "vifs[%zu].bridge: longer than %zu bytes", i,
                        sizeof(vif->bridge) - 1);
        if (s) {
            memcpy(vif->bridge, s, len);
            vif->bridge[len] = '\0';
        }
        uint64_t num = 0;
        bool present;
        if (get_uint(v, "rate_bytes", &num, &present, err, errlen) < 0)
            return fail(err, errlen, "vifs[%zu].rate_bytes: not a number", i);
        vif->rate_bytes = present ? num : 0;
        num = 0;
        if (get_uint(v, "rate_usec", &num, &present, err, errlen) < 0 || num > UINT32_MAX)
            return fail(err, errlen, "vifs[%zu].rate_usec: not a 32-bit number", i);
        vif->rate_usec = present ? (uint32_t)num : 0;
        c->nr_vifs = (unsigned)i + 1;
    }
    return 0;
}

/* ramdisk, maxvcpus, uuid, cpus, vifs: optional (older peers do not write them). */
static int get_extras(struct json_object *o, struct domcfg *c, char *err, size_t errlen)
{
    const char *s;
    size_t len = 0;
    uint64_t n = 0;
    bool present;
    int r;
    if ((r = get_string(o, "ramdisk", false, &s, &len, err, errlen)) < 0)
        return r;
    if (s) {
        if (len >= sizeof(c->ramdisk))
            return fail(err, errlen, "ramdisk: path longer than %zu bytes",
                        sizeof(c->ramdisk) - 1);
        memcpy(c->ramdisk, s, len);
        c->ramdisk[len] = '\0';
    }
    if ((r = get_string(o, "altp2m", false, &s, &len, err, errlen)) < 0)
        return r;
    if (s) {
        int m = strlen(s) == len ? domcfg_altp2m_parse(s) : -EINVAL;
        if (m < 0)
            return fail(err, errlen, "altp2m: not disabled, mixed, external or limited");
        c->altp2m = (unsigned)m;
    }
    if ((r = get_uint(o, "maxvcpus", &n, &present, err, errlen)) < 0)
        return r;
    if (present) {
        if (n < 1 || n > DOMCFG_VCPUS_MAX)
            return fail(err, errlen, "maxvcpus: %" PRIu64 " out of range (1 to %d)", n,
                        DOMCFG_VCPUS_MAX);
        c->maxvcpus = (unsigned)n;
    }
    /* Their ranges against memory_mb: domcfg_validate, once everything is read. */
    if ((r = get_uint(o, "maxmem_mb", &n, &present, err, errlen)) < 0)
        return r;
    if (present)
        c->maxmem_mb = n;
    if ((r = get_uint(o, "target_kb", &n, &present, err, errlen)) < 0)
        return r;
    if (present)
        c->target_kb = n;
    if ((r = get_string(o, "uuid", false, &s, &len, err, errlen)) < 0)
        return r;
    if (s && (len != DOMCFG_UUID_LEN || domcfg_uuid_parse(s, c->uuid) < 0))
        return fail(err, errlen, "uuid: not an 8-4-4-4-12 UUID");
    if ((r = get_vifs(o, c, err, errlen)) < 0)
        return r;
    return get_cpus(o, c, err, errlen);
}

int domcfg_from_json(struct json_object *o, struct domcfg *c, char *err, size_t errlen)
{
    struct domcfg tmp;
    const char *s;
    size_t len = 0;
    uint64_t n = 0;
    bool present;
    int r;

    if (!o || !json_object_is_type(o, json_type_object))
        return fail(err, errlen, "config: must be a JSON object");

    json_object_object_foreach(o, key, val) {
        (void)val;
        bool known = false;
        for (size_t i = 0; i < sizeof(known_fields) / sizeof(known_fields[0]); i++)
            if (strcmp(key, known_fields[i]) == 0)
                known = true;
        if (!known) {
            /* Keys may hold anything: print a bounded, sanitized prefix. */
            char shown[33];
            size_t i;
            for (i = 0; i < sizeof(shown) - 1 && key[i]; i++)
                shown[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
            shown[i] = '\0';
            return fail(err, errlen, "config: unknown field \"%s%s\"", shown,
                        key[i] ? "..." : "");
        }
    }

    domcfg_defaults(&tmp);

    if ((r = get_string(o, "name", true, &s, &len, err, errlen)) < 0)
        return r;
    if ((r = check_name(s, len, err, errlen)) < 0)
        return r;
    memcpy(tmp.name, s, len);
    tmp.name[len] = '\0';

    if ((r = get_uint(o, "memory_mb", &n, &present, err, errlen)) < 0)
        return r;
    if (present) {
        if ((r = check_memory(n, err, errlen)) < 0)
            return r;
        tmp.memory_mb = n;
    }

    if ((r = get_uint(o, "vcpus", &n, &present, err, errlen)) < 0)
        return r;
    if (present) {
        if ((r = check_vcpus(n, err, errlen)) < 0)
            return r;
        tmp.vcpus = (unsigned)n;
    }

    /* The bootloader's disk is checked with the disks, by domcfg_validate below. */
    if ((r = get_string(o, "bootloader", false, &s, &len, err, errlen)) < 0)
        return r;
    if (s) {
        if ((r = check_bootloader(s, len, 1, err, errlen)) < 0)
            return r;
        memcpy(tmp.bootloader, s, len);
        tmp.bootloader[len] = '\0';
    }
    if ((r = get_string(o, "kernel", !tmp.bootloader[0], &s, &len, err, errlen)) < 0)
        return r;
    if (s && (len || !tmp.bootloader[0]) && (r = check_kernel(s, len, err, errlen)) < 0)
        return r;
    if (s) {
        memcpy(tmp.kernel, s, len);
        tmp.kernel[len] = '\0';
    }

    if ((r = get_string(o, "cmdline", false, &s, &len, err, errlen)) < 0)
        return r;
    if (s) {
        if ((r = check_cmdline(s, len, err, errlen)) < 0)
            return r;
        memcpy(tmp.cmdline, s, len);
        tmp.cmdline[len] = '\0';
    }

    if ((r = get_action(o, "on_poweroff", &tmp.on_poweroff, err, errlen)) < 0 ||
        (r = get_action(o, "on_reboot", &tmp.on_reboot, err, errlen)) < 0 ||
        (r = get_action(o, "on_crash", &tmp.on_crash, err, errlen)) < 0)
        return r;

    if ((r = get_disks(o, &tmp, err, errlen)) < 0)
        return r;
    if ((r = get_extras(o, &tmp, err, errlen)) < 0)
        return r;

    /* Belt and braces: the struct must satisfy the same rules as the CLI's. */
    if ((r = domcfg_validate(&tmp, err, errlen)) < 0)
        return r;
    *c = tmp;
    return 0;
}

/* ---- The domain record (stream DOMAIN_CONFIG, live-update DOMAIN) ---- */

bool domrec_uuid_valid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[36] == '\0';
}

char *domrec_to_json(const struct domrec *r)
{
    struct json_object *o = json_object_new_object();
    if (r->members & DOMREC_DOMID)
        json_object_object_add(o, "domid", json_object_new_int((int)r->domid));
    if (r->members & DOMREC_CONFIG)
        json_object_object_add(o, "config", domcfg_to_json(r->cfg));
    if (r->members & DOMREC_PAUSED)
        json_object_object_add(o, "paused", json_object_new_boolean(r->paused));
    if (r->members & DOMREC_SHUTDOWN) {
        json_object_object_add(o, "shutdown_code", json_object_new_int(r->shutdown_code));
        json_object_object_add(o, "shutdown_handled",
                               json_object_new_boolean(r->shutdown_handled));
    }
    if (r->members & DOMREC_UUID)
        json_object_object_add(o, "uuid", json_object_new_string(r->uuid));
    if (r->members & DOMREC_VMCALL)
        json_object_object_add(o, "vmcall", json_object_new_boolean(r->vmcall));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

/* Member key of type t in o (json_type_null: any type). */
static bool has(struct json_object *o, const char *key, json_type t, struct json_object **v)
{
    struct json_object *tmp;
    if (!v)
        v = &tmp;
    return json_object_object_get_ex(o, key, v) && (t == json_type_null || json_object_is_type(*v, t));
}

/* Every required member there, of its type. */
static bool domrec_shape(struct json_object *o, unsigned required)
{
    return o && (!(required & DOMREC_DOMID) || has(o, "domid", json_type_int, NULL)) &&
           (!(required & DOMREC_CONFIG) || has(o, "config", json_type_null, NULL)) &&
           (!(required & DOMREC_PAUSED) || has(o, "paused", json_type_boolean, NULL)) &&
           (!(required & DOMREC_SHUTDOWN) ||
            (has(o, "shutdown_code", json_type_int, NULL) &&
             has(o, "shutdown_handled", json_type_boolean, NULL))) &&
           (!(required & DOMREC_UUID) || has(o, "uuid", json_type_string, NULL)) &&
           (!(required & DOMREC_VMCALL) || has(o, "vmcall", json_type_boolean, NULL));
}

/* The members after the shape: domid's range, the config, then the optional ones. */
static int domrec_members(struct json_object *o, unsigned want, const char *what,
                          struct domrec *r, char *err, size_t errlen)
{
    struct json_object *v;
    char why[512];
    if ((want & DOMREC_DOMID) && has(o, "domid", json_type_int, &v)) {
        int64_t id = json_object_get_int64(v);
        if (id < 1 || id >= DOMREC_DOMID_LIMIT)
            return fail(err, errlen, "%s: domid %lld is not a guest's", what, (long long)id);
        r->domid = (unsigned)id;
        r->members |= DOMREC_DOMID;
    }
    if ((want & DOMREC_CONFIG) && has(o, "config", json_type_null, &v)) {
        if (domcfg_from_json(v, r->cfg, why, sizeof(why)))
            return fail(err, errlen, "%s: %s", what, why);
        r->members |= DOMREC_CONFIG;
    }
    if ((want & DOMREC_UUID) && json_object_object_get_ex(o, "uuid", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            !domrec_uuid_valid(json_object_get_string(v)))
            return fail(err, errlen, "%s: \"uuid\" is not a UUID", what);
        snprintf(r->uuid, sizeof(r->uuid), "%s", json_object_get_string(v));
        r->members |= DOMREC_UUID;
    }
    if ((want & DOMREC_PAUSED) && json_object_object_get_ex(o, "paused", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return fail(err, errlen, "%s: \"paused\" must be true or false", what);
        r->paused = json_object_get_boolean(v);
        r->members |= DOMREC_PAUSED;
    }
    if ((want & DOMREC_VMCALL) && json_object_object_get_ex(o, "vmcall", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return fail(err, errlen, "%s: \"vmcall\" must be true or false", what);
        r->vmcall = json_object_get_boolean(v);
        r->members |= DOMREC_VMCALL;
    }
    struct json_object *h;
    if ((want & DOMREC_SHUTDOWN) && has(o, "shutdown_code", json_type_int, &v) &&
        has(o, "shutdown_handled", json_type_boolean, &h)) {
        int64_t sc = json_object_get_int64(v);
        r->shutdown_code = sc >= 0 && sc <= 255 ? (int)sc : -1;
        r->shutdown_handled = json_object_get_boolean(h);
        r->members |= DOMREC_SHUTDOWN;
    }
    return 0;
}

int domrec_from_json(const char *text, size_t len, unsigned required, unsigned optional,
                     const char *what, const char *shape, struct domrec *r, char *err,
                     size_t errlen)
{
    struct domcfg *cfg = r->cfg;
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    r->shutdown_code = -1;
    char *s = strndup(text, len);
    struct json_object *o = s ? json_tokener_parse(s) : NULL;
    free(s);
    int rc = domrec_shape(o, required) ? domrec_members(o, required | optional, what, r, err, errlen)
                                       : fail(err, errlen, "%s is not %s", what, shape);
    json_object_put(o);
    return rc;
}
