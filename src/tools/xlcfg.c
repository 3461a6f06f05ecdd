/*
 * xl.cfg -> struct domcfg. libxlutil does the parsing (so the syntax is exactly
 * xl's); this file maps the keys xkvm supports, checks them, and warns about the
 * rest. libxlutil cannot list the keys a file sets, so a small scanner walks the
 * (already accepted) text for "KEY =" at statement starts and records each key's
 * line for messages.
 */
#include "tools/xlcfg.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libxlutil.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keys xkvm reads. */
static const char *const handled_keys[] = {
    "name", "type", "builder", "memory", "vcpus", "kernel", "cmdline", "extra", "root",
    "on_poweroff", "on_reboot", "on_crash", "disk", "ramdisk", "maxvcpus", "uuid", "cpus",
    "bootloader", "maxmem", "vif", "altp2m",
};

/* xl keys that xkvm recognises but does not implement yet: warned about, ignored. */
static const char *const unsupported_keys[] = {
    "vfb", "vkb", "vtpm", "vdispl", "vsnd", "p9", "pvcalls", "channel",
    "usb", "usbctrl", "usbdev", "pci", "dtdev", "iomem", "ioports", "irqs", "rdm",
    "serial", "console", "seclabel",
    "init_seclabel", "pool", "cpus_soft", "cpu_weight", "cap", "on_watchdog",
    "on_soft_reset", "bootloader_args", "device_model_version",
    "device_model_override", "device_model_args", "device_model_stubdomain_override",
    "altp2mhvm", "nestedhvm", "hap", "shadow_memory", "viridian", "acpi",
    "apic", "pae", "hpet", "firmware", "bios", "boot", "localtime", "rtc_timeoffset",
    "tsc_mode", "timer_mode", "max_grant_frames", "max_maptrack_frames",
    "max_event_channels", "max_grant_version", "e820_host", "xen_platform_pci",
    "vnc", "vnclisten", "vncdisplay", "vncpasswd", "vncunused", "sdl", "vga",
    "videoram", "stdvga", "keymap", "soundhw", "usbdevice", "cpuid", "driver_domain",
    "device_tree", "mmio_hole", "smbios_firmware", "acpi_firmware", "gfx_passthru",
    "vcpu_hard_affinity", "vcpu_soft_affinity", "dm_restrict", "passthrough",
    "vpmu", "vuart", "nomigrate", "claim_mode", "vm_generationid", "pvh",
};

#define MAX_KEYS 256

struct key_seen {
    char name[64];
    int line;            /* line of the last assignment (the one libxlutil uses) */
};

struct reader {
    const char *filename;
    struct key_seen keys[MAX_KEYS];
    int nr_keys;
    char *err;
    size_t errlen;
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}
#define IN_LIST(s, list) in_list((s), (list), sizeof(list) / sizeof((list)[0]))

static int key_line(const struct reader *rd, const char *key)
{
    for (int i = 0; i < rd->nr_keys; i++)
        if (strcmp(rd->keys[i].name, key) == 0)
            return rd->keys[i].line;
    return 0;
}

/* "FILE:LINE: key: why" (or "FILE: key: why" when the key has no line). */
static int fail_key(struct reader *rd, const char *key, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_key(struct reader *rd, const char *key, int rc, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    int line = key ? key_line(rd, key) : 0;
    if (line > 0)
        snprintf(rd->err, rd->errlen, "%s:%d: %s%s%s", rd->filename, line,
                 key ? key : "", key ? ": " : "", why);
    else
        snprintf(rd->err, rd->errlen, "%s: %s%s%s", rd->filename,
                 key ? key : "", key ? ": " : "", why);
    return rc;
}

static void note_key(struct reader *rd, const char *name, size_t len, int line)
{
    char buf[sizeof(rd->keys[0].name)];
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;     /* such a key is unknown anyway; keep a prefix */
    memcpy(buf, name, len);
    buf[len] = '\0';
    for (int i = 0; i < rd->nr_keys; i++) {
        if (strcmp(rd->keys[i].name, buf) == 0) {
            rd->keys[i].line = line;
            return;
        }
    }
    if (rd->nr_keys == MAX_KEYS)
        return;
    memcpy(rd->keys[rd->nr_keys].name, buf, len + 1);
    rd->keys[rd->nr_keys].line = line;
    rd->nr_keys++;
}

static bool ident_start(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool ident_char(char ch)
{
    return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '.';
}

/*
 * Record "KEY =" / "KEY +=" at statement starts. Statements end at a newline or ';'
 * outside brackets; values are strings, numbers or bracketed lists; '#' starts a
 * comment. Only called on text libxlutil accepted.
 */
static void scan_keys(struct reader *rd, const char *p, size_t len)
{
    const char *end = p + len;
    int line = 1, depth = 0;
    bool want_key = true;

    while (p < end) {
        char ch = *p;
        if (ch == '\n') {
            line++;
            p++;
            if (depth == 0)
                want_key = true;
        } else if (ch == '#') {
            while (p < end && *p != '\n')
                p++;
        } else if (ch == '"' || ch == '\'') {
            p++;
            while (p < end && *p != ch && *p != '\n') {
                if (*p == '\\' && p + 1 < end && p[1] != '\n')
                    p++;
                p++;
            }
            if (p < end && *p == ch)
                p++;
            want_key = false;
        } else if (ch == '[') {
            depth++;
            p++;
        } else if (ch == ']') {
            if (depth > 0)
                depth--;
            p++;
        } else if (ch == ';' && depth == 0) {
            want_key = true;
            p++;
        } else if (want_key && ident_start(ch)) {
            const char *start = p;
            while (p < end && ident_char(*p))
                p++;
            note_key(rd, start, (size_t)(p - start), line);
            want_key = false;
        } else {
            p++;
        }
    }
}

static void warn_keys(const struct reader *rd, FILE *warn)
{
    if (!warn)
        return;
    for (int i = 0; i < rd->nr_keys; i++) {
        const char *k = rd->keys[i].name;
        if (IN_LIST(k, handled_keys))
            continue;
        fprintf(warn, "%s:%d: warning: `%s' ignored (%s)\n", rd->filename,
                rd->keys[i].line, k,
                IN_LIST(k, unsupported_keys) ? "not yet supported" : "unknown key");
    }
}

/* A string key: 0 (found), ESRCH (absent), or a negative errno with a message. */
static int get_str(struct reader *rd, XLU_Config *x, const char *key, const char **out)
{
    int r = xlu_cfg_get_string(x, key, out, 1);
    if (r == 0 || r == ESRCH)
        return r;
    if (r == EINVAL)
        return fail_key(rd, key, -EINVAL, "must be a single value, not a list");
    return fail_key(rd, key, -r, "cannot read value: %s", strerror(r));
}

static int get_num(struct reader *rd, XLU_Config *x, const char *key, long min, long max,
                   const char *unit, long *out)
{
    const char *s = NULL;
    int r = xlu_cfg_get_long(x, key, out, 1);
    if (r == ESRCH)
        return r;
    if (r == ERANGE || (r == 0 && (*out < min || *out > max))) {
        xlu_cfg_get_string(x, key, &s, 1);
        return fail_key(rd, key, -ERANGE, "%s out of range (%ld to %ld%s)",
                        s ? s : "value", min, max, unit);
    }
    if (r == EINVAL) {
        if (xlu_cfg_get_string(x, key, &s, 1) != 0)
            return fail_key(rd, key, -EINVAL, "must be a number, not a list");
        return fail_key(rd, key, -EINVAL, "\"%.40s\" is not a number", s);
    }
    if (r)
        return fail_key(rd, key, -r, "cannot read value: %s", strerror(r));
    return 0;
}

static int get_action(struct reader *rd, XLU_Config *x, const char *key,
                      enum domcfg_action *out)
{
    const char *s;
    int r = get_str(rd, x, key, &s);
    if (r == ESRCH)
        return 0;
    if (r)
        return r;
    r = domcfg_action_parse(s, out);
    if (r == -EOPNOTSUPP)
        return fail_key(rd, key, -EINVAL, "action \"%s\" is not supported by xkvm "
                        "(use destroy, restart or preserve)", s);
    if (r < 0)
        return fail_key(rd, key, -EINVAL, "unknown action \"%.40s\" "
                        "(use destroy, restart or preserve)", s);
    return 0;
}

static int copy_str(struct reader *rd, const char *key, char *dst, size_t size,
                    const char *src)
{
    size_t len = strlen(src);
    if (len >= size)
        return fail_key(rd, key, -ENAMETOOLONG, "longer than %zu characters", size - 1);
    memcpy(dst, src, len + 1);
    return 0;
}

/* xl's rules: the type key; else the legacy builder key; absent means PVH for us. */
static int check_type(struct reader *rd, XLU_Config *x)
{
    const char *s;
    int r = get_str(rd, x, "type", &s);
    if (r == 0) {
        if (strcmp(s, "pvh") == 0 || strcmp(s, "hvm") == 0)
            return 0;
        if (strcmp(s, "pv") == 0)
            return fail_key(rd, "type", -EOPNOTSUPP, "PV guests are not supported "
                            "(use type = \"pvh\")");
        return fail_key(rd, "type", -EINVAL, "unknown type \"%.40s\" (use \"pvh\" or \"hvm\")",
                        s);
    }
    if (r != ESRCH)
        return r;
    r = get_str(rd, x, "builder", &s);
    if (r == 0) {
        if (strcmp(s, "hvm") == 0)
            return 0;
        if (strcmp(s, "generic") == 0)
            return fail_key(rd, "builder", -EOPNOTSUPP, "PV guests are not supported "
                            "(use type = \"pvh\")");
        return fail_key(rd, "builder", -EINVAL, "unknown builder \"%.40s\"", s);
    }
    return r == ESRCH ? 0 : r;
}

/* cmdline, or xl's legacy root + extra ("root=ROOT EXTRA"). */
static int get_cmdline(struct reader *rd, XLU_Config *x, struct domcfg *cfg, FILE *warn)
{
    const char *cmdline = NULL, *root = NULL, *extra = NULL;
    int r;

    if ((r = get_str(rd, x, "cmdline", &cmdline)) != 0 && r != ESRCH)
        return r;
    if ((r = get_str(rd, x, "root", &root)) != 0 && r != ESRCH)
        return r;
    if ((r = get_str(rd, x, "extra", &extra)) != 0 && r != ESRCH)
        return r;

    if (cmdline) {
        if ((root || extra) && warn)
            fprintf(warn, "%s:%d: warning: root and extra ignored in favour of cmdline\n",
                    rd->filename, key_line(rd, "cmdline"));
        return copy_str(rd, "cmdline", cfg->cmdline, sizeof(cfg->cmdline), cmdline);
    }
    const char *key = extra ? "extra" : "root";
    int n;
    if (root)
        n = snprintf(cfg->cmdline, sizeof(cfg->cmdline), "root=%s%s%s", root,
                     extra ? " " : "", extra ? extra : "");
    else
        n = snprintf(cfg->cmdline, sizeof(cfg->cmdline), "%s", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(cfg->cmdline))
        return fail_key(rd, key, -ENAMETOOLONG, "command line longer than %zu characters",
                        sizeof(cfg->cmdline) - 1);
    return 0;
}

/* A boot file (kernel, ramdisk): relative to basedir, must be a readable file. */
static int resolve_boot_file(struct reader *rd, const char *key, const char *path,
                             const char *basedir, unsigned flags, char *dst, size_t dstsize)
{
    char joined[PATH_MAX * 2 + 2];
    char cwd[PATH_MAX];
    int n;

    if (path[0] == '\0')
        return fail_key(rd, key, -EINVAL, "must not be empty");
    if (path[0] == '/') {
        n = snprintf(joined, sizeof(joined), "%s", path);
    } else {
        const char *dir = basedir && basedir[0] ? basedir : ".";
        if (dir[0] == '/') {
            n = snprintf(joined, sizeof(joined), "%s/%s", dir, path);
        } else {
            if (!getcwd(cwd, sizeof(cwd)))
                return fail_key(rd, key, -errno, "cannot resolve \"%s\": getcwd: %s",
                                path, strerror(errno));
            n = snprintf(joined, sizeof(joined), "%s/%s/%s", cwd, dir, path);
        }
    }
    if (n < 0 || (size_t)n >= sizeof(joined) || (size_t)n >= dstsize)
        return fail_key(rd, key, -ENAMETOOLONG, "path too long");

    if (flags & XLCFG_NO_KERNEL_CHECK) {
        memcpy(dst, joined, (size_t)n + 1);
        return 0;
    }

    int fd = open(joined, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_key(rd, key, -errno, "cannot read %s: %s", joined, strerror(errno));
    struct stat st;
    int r = fstat(fd, &st);
    int saved = errno;
    close(fd);
    if (r < 0)
        return fail_key(rd, key, -saved, "cannot stat %s: %s", joined, strerror(saved));
    if (!S_ISREG(st.st_mode))
        return fail_key(rd, key, -EINVAL, "%s is not a regular file", joined);
    char *real = realpath(joined, NULL);
    if (!real)
        return fail_key(rd, key, -errno, "cannot resolve %s: %s", joined, strerror(errno));
    r = copy_str(rd, key, dst, dstsize, real);
    free(real);
    return r;
}

/* Free what xlu_disk_parse allocated in a libxl_device_disk (no libxl needed). */
static void disk_strings_free(libxl_device_disk *d)
{
    free(d->backend_domname);
    free(d->pdev_path);
    free(d->vdev);
    free(d->script);
    free(d->colo_host);
    free(d->colo_export);
    free(d->active_disk);
    free(d->hidden_disk);
    memset(d, 0, sizeof(*d));
}

/* The image path: absolute, canonical unless XLCFG_NO_KERNEL_CHECK. */
static int resolve_disk_path(struct reader *rd, const char *path, unsigned flags,
                             struct domcfg_disk *dk)
{
    char joined[PATH_MAX * 2 + 2], cwd[PATH_MAX];
    int n;
    if (path[0] == '/') {
        n = snprintf(joined, sizeof(joined), "%s", path);
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return fail_key(rd, "disk", -errno, "cannot resolve \"%s\": getcwd: %s", path,
                            strerror(errno));
        n = snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
    }
    if (n < 0 || (size_t)n >= sizeof(dk->path))
        return fail_key(rd, "disk", -ENAMETOOLONG, "path too long");
    if (flags & XLCFG_NO_KERNEL_CHECK) {
        memcpy(dk->path, joined, (size_t)n + 1);
        return 0;
    }
    char *real = realpath(joined, NULL);
    if (!real)
        return fail_key(rd, "disk", -errno, "cannot use %s: %s", joined, strerror(errno));
    struct stat st;
    int r = 0;
    if (stat(real, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
        r = fail_key(rd, "disk", -EINVAL, "%s is not a regular file or block device", real);
    else
        r = copy_str(rd, "disk", dk->path, sizeof(dk->path), real);
    free(real);
    return r;
}

/* disk = [ 'target,format,vdev,access', ... ] as xl reads it (xlu_disk_parse). */
static int get_disks(struct reader *rd, XLU_Config *x, unsigned flags, struct domcfg *cfg)
{
    XLU_ConfigList *list;
    int count = 0;
    int r = xlu_cfg_get_list(x, "disk", &list, &count, 1);
    if (r == ESRCH)
        return 0;
    if (r)
        return fail_key(rd, "disk", -EINVAL, "must be a list of disk specifications, "
                        "e.g. [ '/path/to/image,raw,xvda,rw' ]");
    if (count > DOMCFG_DISKS_MAX)
        return fail_key(rd, "disk", -E2BIG, "%d disks, at most %d are supported", count,
                        DOMCFG_DISKS_MAX);
    for (int i = 0; i < count; i++) {
        const char *spec = xlu_cfg_get_listitem(list, i);
        if (!spec)
            return fail_key(rd, "disk", -EINVAL, "entry %d is not a string", i + 1);
        libxl_device_disk d;
        memset(&d, 0, sizeof(d));
        r = xlu_disk_parse(x, 1, &spec, &d);
        if (r) {
            disk_strings_free(&d);
            return fail_key(rd, "disk", -EINVAL, "entry %d \"%.80s\": cannot parse "
                            "(xl-disk-configuration: target,format,vdev,access)", i + 1, spec);
        }
        struct domcfg_disk *dk = &cfg->disks[i];
        if (d.format != LIBXL_DISK_FORMAT_RAW && d.format != LIBXL_DISK_FORMAT_UNKNOWN)
            r = fail_key(rd, "disk", -EOPNOTSUPP, "entry %d: only raw images are supported",
                         i + 1);
        else if (d.is_cdrom)
            r = fail_key(rd, "disk", -EOPNOTSUPP, "entry %d: CD-ROMs are not supported",
                         i + 1);
        else if (d.backend != LIBXL_DISK_BACKEND_UNKNOWN && d.backend != LIBXL_DISK_BACKEND_PHY)
            r = fail_key(rd, "disk", -EOPNOTSUPP, "entry %d: only the phy (blkback) backend "
                         "is supported", i + 1);
        else if (d.script)
            r = fail_key(rd, "disk", -EOPNOTSUPP, "entry %d: hotplug scripts are not "
                         "supported", i + 1);
        else if (!d.pdev_path || !d.pdev_path[0])
            r = fail_key(rd, "disk", -EINVAL, "entry %d: no target (empty drives are not "
                         "supported)", i + 1);
        else if (!d.vdev || strlen(d.vdev) >= sizeof(dk->vdev) ||
                 domcfg_vdev_to_devid(d.vdev, &dk->devid) < 0)
            r = fail_key(rd, "disk", -EINVAL, "entry %d: vdev \"%.20s\" is not a Xen "
                         "virtual device (xvda, xvdb1, hda, sdb...)", i + 1,
                         d.vdev ? d.vdev : "");
        if (!r) {
            snprintf(dk->vdev, sizeof(dk->vdev), "%s", d.vdev);
            dk->readonly = !d.readwrite;
            r = resolve_disk_path(rd, d.pdev_path, flags, dk);
        }
        disk_strings_free(&d);
        if (r)
            return r;
        for (int j = 0; j < i; j++)
            if (cfg->disks[j].devid == dk->devid)
                return fail_key(rd, "disk", -EINVAL, "entry %d: vdev %s is used twice",
                                i + 1, dk->vdev);
        cfg->nr_disks = (unsigned)i + 1;
    }
    return 0;
}

/* libxl's default MAC: Xen's OUI 00:16:3e, then three random bytes, the first < 0x80. */
static void vif_random_mac(uint8_t mac[6])
{
    uint8_t r[3];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        for (int i = 0; i < 3; i++)
            r[i] = (uint8_t)rand();
    mac[0] = 0x00;
    mac[1] = 0x16;
    mac[2] = 0x3e;
    mac[3] = r[0] & 0x7f;
    mac[4] = r[1];
    mac[5] = r[2];
}

/* Keys of xl's vif spec (xl-network-configuration) that xkvm reads past, with a note. */
static const char *const vif_ignored_keys[] = {
    "script", "ip", "vifname", "type", "model", "mtu", "gatewaydev", "accel",
    "powerlevel", "devid",
};

/* One "key=value" of a vif spec into v; 0, or a negative errno with a message. */
static int vif_option(struct reader *rd, XLU_Config *x, int i, const char *opt,
                      struct domcfg_vif *v, bool *have_mac, FILE *warn)
{
    const char *eq = strchr(opt, '=');
    size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
    const char *val = eq ? eq + 1 : "";
    if (klen == 3 && !strncmp(opt, "mac", 3)) {
        if (domcfg_mac_parse(val, v->mac) < 0)
            return fail_key(rd, "vif", -EINVAL, "entry %d: mac \"%.20s\" is not "
                            "xx:xx:xx:xx:xx:xx", i + 1, val);
        *have_mac = true;
        return 0;
    }
    if (klen == 6 && !strncmp(opt, "bridge", 6)) {
        if (!domcfg_ifname_valid(val))
            return fail_key(rd, "vif", -EINVAL, "entry %d: bridge \"%.20s\" is not an "
                            "interface name", i + 1, val);
        snprintf(v->bridge, sizeof(v->bridge), "%s", val);
        return 0;
    }
    if (klen == 4 && !strncmp(opt, "rate", 4)) {
        /* xl's RATE[@INTERVAL] ("10Mb/s", "1MB/s@20ms"), by libxlutil itself. */
        libxl_device_nic nic;
        memset(&nic, 0, sizeof(nic));
        if (xlu_vif_parse_rate(x, val, &nic) || !nic.rate_interval_usecs)
            return fail_key(rd, "vif", -EINVAL, "entry %d: rate \"%.30s\" is not "
                            "RATE[@INTERVAL] (e.g. 10Mb/s@20ms)", i + 1, val);
        v->rate_bytes = nic.rate_bytes_per_interval;
        v->rate_usec = nic.rate_interval_usecs;
        return 0;
    }
    if (klen == 7 && !strncmp(opt, "backend", 7)) {
        if (strcmp(val, "0") && strcmp(val, "Domain-0"))
            return fail_key(rd, "vif", -EOPNOTSUPP, "entry %d: only dom0 backends are "
                            "supported", i + 1);
        return 0;
    }
    for (size_t k = 0; k < sizeof(vif_ignored_keys) / sizeof(vif_ignored_keys[0]); k++) {
        if (strlen(vif_ignored_keys[k]) == klen && !strncmp(opt, vif_ignored_keys[k], klen)) {
            if (warn)
                fprintf(warn, "%s:%d: warning: vif entry %d: `%.*s' ignored (not yet "
                        "supported)\n", rd->filename, key_line(rd, "vif"), i + 1,
                        (int)klen, opt);
            return 0;
        }
    }
    return fail_key(rd, "vif", -EINVAL, "entry %d: unknown option \"%.*s\"", i + 1,
                    (int)(klen > 32 ? 32 : klen), opt);
}

/* vif = [ 'mac=00:16:3e:01:02:03,bridge=xenbr0', ... ] as xl reads it. */
static int get_vifs(struct reader *rd, XLU_Config *x, struct domcfg *cfg, FILE *warn)
{
    XLU_ConfigList *list;
    int count = 0;
    int r = xlu_cfg_get_list(x, "vif", &list, &count, 1);
    if (r == ESRCH)
        return 0;
    if (r)
        return fail_key(rd, "vif", -EINVAL, "must be a list of network interfaces, "
                        "e.g. [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]");
    if (count > DOMCFG_VIFS_MAX)
        return fail_key(rd, "vif", -E2BIG, "%d interfaces, at most %d are supported",
                        count, DOMCFG_VIFS_MAX);
    for (int i = 0; i < count; i++) {
        const char *spec = xlu_cfg_get_listitem(list, i);
        if (!spec)
            return fail_key(rd, "vif", -EINVAL, "entry %d is not a string", i + 1);
        char buf[512];
        if (strlen(spec) >= sizeof(buf))
            return fail_key(rd, "vif", -EINVAL, "entry %d is too long", i + 1);
        snprintf(buf, sizeof(buf), "%s", spec);
        struct domcfg_vif *v = &cfg->vifs[i];
        memset(v, 0, sizeof(*v));
        bool have_mac = false;
        char *save = NULL;
        for (char *opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
            while (*opt == ' ' || *opt == '\t')
                opt++;
            size_t len = strlen(opt);
            while (len && (opt[len - 1] == ' ' || opt[len - 1] == '\t'))
                opt[--len] = '\0';
            if (!*opt)
                continue;
            if ((r = vif_option(rd, x, i, opt, v, &have_mac, warn)) < 0)
                return r;
        }
        if (!have_mac)
            vif_random_mac(v->mac);
        cfg->nr_vifs = (unsigned)i + 1;
    }
    return 0;
}

/* uuid: xl's libxl_uuid_from_string (either case). */
static int get_uuid(struct reader *rd, XLU_Config *x, struct domcfg *cfg)
{
    const char *s;
    int r = get_str(rd, x, "uuid", &s);
    if (r == ESRCH)
        return 0;
    if (r)
        return r;
    if (domcfg_uuid_parse(s, cfg->uuid) < 0)
        return fail_key(rd, "uuid", -EINVAL, "\"%.40s\" is not a UUID "
                        "(8-4-4-4-12 hex digits)", s);
    return 0;
}

/*
 * cpus = "CPULIST" (every vCPU) or [ "CPULIST", ... ] (vCPU 0, 1, ...), as xl. The
 * parser's messages begin "cpus: ", which fail_key writes itself: skipped (+ 6).
 */
static int get_cpus(struct reader *rd, XLU_Config *x, struct domcfg *cfg)
{
    XLU_ConfigList *list;
    int count = 0;
    char why[256];
    const char *s;
    if (xlu_cfg_get_list(x, "cpus", &list, &count, 1) == 0) {
        if (count < 1)
            return fail_key(rd, "cpus", -EINVAL, "empty list");
        if ((unsigned)count > domcfg_max_vcpus(cfg))
            return fail_key(rd, "cpus", -EINVAL, "%d entries for %u vCPUs", count,
                            domcfg_max_vcpus(cfg));
        for (int i = 0; i < count; i++) {
            s = xlu_cfg_get_listitem(list, i);
            if (!s)
                return fail_key(rd, "cpus", -EINVAL, "entry %d is not a string", i + 1);
            if (domcfg_cpuset_parse(s, &cfg->cpus[i], why, sizeof(why)) < 0)
                return fail_key(rd, "cpus", -EINVAL, "entry %d: %s", i + 1, why + 6);
        }
        cfg->nr_cpus = (unsigned)count;
        return 0;
    }
    int r = get_str(rd, x, "cpus", &s);
    if (r == ESRCH)
        return 0;
    if (r)
        return r;
    if (domcfg_cpuset_parse(s, &cfg->cpus[0], why, sizeof(why)) < 0)
        return fail_key(rd, "cpus", -EINVAL, "%s", why + 6);
    cfg->nr_cpus = 1;
    return 0;
}

/* maxvcpus (at least vcpus), uuid and cpus pinning. */
static int get_vcpu_keys(struct reader *rd, XLU_Config *x, struct domcfg *cfg)
{
    long n;
    int r = get_num(rd, x, "maxvcpus", 1, DOMCFG_VCPUS_MAX, "", &n);
    if (r < 0)
        return r;
    if (r == 0) {
        if ((unsigned long)n < cfg->vcpus)
            return fail_key(rd, "maxvcpus", -EINVAL, "%ld is less than vcpus (%u)", n,
                            cfg->vcpus);
        cfg->maxvcpus = (unsigned)n;
    }
    if ((r = get_uuid(rd, x, cfg)) < 0)
        return r;
    return get_cpus(rd, x, cfg);
}

/* Map domcfg_validate's "FIELD: why" to the xl key that set FIELD. */
static int validate(struct reader *rd, const struct domcfg *cfg, const char *cmdline_key)
{
    char why[256];
    if (domcfg_validate(cfg, why, sizeof(why)) == 0)
        return 0;
    static const struct { const char *field, *key; } map[] = {
        { "name", "name" }, { "memory_mb", "memory" }, { "vcpus", "vcpus" },
        { "kernel", "kernel" }, { "on_poweroff", "on_poweroff" },
        { "on_reboot", "on_reboot" }, { "on_crash", "on_crash" }, { "disks", "disk" },
        { "ramdisk", "ramdisk" }, { "maxvcpus", "maxvcpus" }, { "uuid", "uuid" },
        { "cpus", "cpus" },
        { "bootloader", "bootloader" }, { "maxmem_mb", "maxmem" }, { "vifs", "vif" },
    };
    const char *key = NULL, *rest = why;
    size_t flen = strcspn(why, ":");
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i].field) == flen && strncmp(why, map[i].field, flen) == 0)
            key = map[i].key;
    if (flen == strlen("cmdline") && strncmp(why, "cmdline", flen) == 0)
        key = cmdline_key;
    if (key && why[flen] == ':') {
        rest = why + flen + 1;
        while (*rest == ' ')
            rest++;
    }
    return fail_key(rd, key, -EINVAL, "%s", rest);
}

/*
 * bootloader: "pygrub", or a path to it (as xl.cfg files name it, e.g.
 * "/usr/lib/xen-4.17/bin/pygrub"): xkvmd runs Xen's own pygrub either way.
 */
static int get_bootloader(struct reader *rd, XLU_Config *x, struct domcfg *cfg)
{
    const char *s;
    int r = get_str(rd, x, "bootloader", &s);
    if (r == ESRCH)
        return 0;
    if (r)
        return r;
    const char *base = strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
    if (strcmp(base, DOMCFG_BOOTLOADER_PYGRUB))
        return fail_key(rd, "bootloader", -EINVAL, "\"%s\": only pygrub is supported", s);
    return copy_str(rd, "bootloader", cfg->bootloader, sizeof(cfg->bootloader),
                    DOMCFG_BOOTLOADER_PYGRUB);
}

static int read_config(struct reader *rd, XLU_Config *x, const char *basedir,
                       unsigned flags, struct domcfg *cfg, FILE *warn)
{
    const char *s;
    long n;
    int r;

    domcfg_defaults(cfg);

    if ((r = check_type(rd, x)) != 0)
        return r;

    r = get_str(rd, x, "name", &s);
    if (r == ESRCH)
        return fail_key(rd, NULL, -EINVAL, "name: missing (every domain needs a name)");
    if (r)
        return r;
    if ((r = copy_str(rd, "name", cfg->name, sizeof(cfg->name), s)) < 0)
        return r;

    r = get_num(rd, x, "memory", DOMCFG_MEMORY_MB_MIN, DOMCFG_MEMORY_MB_MAX, " MiB", &n);
    if (r < 0)
        return r;
    if (r == 0)
        cfg->memory_mb = (uint64_t)n;

    /* xl: maxmem below memory is an error (domcfg_validate says so). */
    r = get_num(rd, x, "maxmem", DOMCFG_MEMORY_MB_MIN, DOMCFG_MEMORY_MB_MAX, " MiB", &n);
    if (r < 0)
        return r;
    if (r == 0)
        cfg->maxmem_mb = (uint64_t)n;

    r = get_num(rd, x, "vcpus", 1, DOMCFG_VCPUS_MAX, "", &n);
    if (r < 0)
        return r;
    if (r == 0)
        cfg->vcpus = (unsigned)n;

    if ((r = get_cmdline(rd, x, cfg, warn)) < 0)
        return r;

    if ((r = get_action(rd, x, "on_poweroff", &cfg->on_poweroff)) < 0 ||
        (r = get_action(rd, x, "on_reboot", &cfg->on_reboot)) < 0 ||
        (r = get_action(rd, x, "on_crash", &cfg->on_crash)) < 0)
        return r;

    r = get_str(rd, x, "altp2m", &s);      /* Xen 4.17's xl.cfg: docs/altp2m.md */
    if (r && r != ESRCH)
        return r;
    if (!r) {
        int m = domcfg_altp2m_parse(s);
        if (m < 0)
            return fail_key(rd, "altp2m", -EINVAL, "\"%.40s\" is not disabled, mixed, "
                            "external or limited", s);
        cfg->altp2m = (unsigned)m;
    }
    if ((r = get_bootloader(rd, x, cfg)) < 0)
        return r;
    r = get_str(rd, x, "kernel", &s);
    if (r == ESRCH && !cfg->bootloader[0])
        return fail_key(rd, NULL, -EINVAL, "kernel: missing (xkvm boots a PVH kernel image)");
    if (r && r != ESRCH)
        return r;
    /*
     * With a bootloader, kernel and ramdisk are paths inside the guest's disk (libxl's
     * --kernel and --ramdisk for pygrub); without, files on this host.
     */
    if (!r && cfg->bootloader[0])
        r = copy_str(rd, "kernel", cfg->kernel, sizeof(cfg->kernel), s);
    else if (!r)
        r = resolve_boot_file(rd, "kernel", s, basedir, flags, cfg->kernel,
                              sizeof(cfg->kernel));
    if (r < 0)
        return r;
    r = get_str(rd, x, "ramdisk", &s);
    if (r != 0 && r != ESRCH)
        return r;
    if (r == 0 && cfg->bootloader[0])
        r = copy_str(rd, "ramdisk", cfg->ramdisk, sizeof(cfg->ramdisk), s);
    else if (r == 0)
        r = resolve_boot_file(rd, "ramdisk", s, basedir, flags, cfg->ramdisk,
                              sizeof(cfg->ramdisk));
    if (r < 0)
        return r;
    if ((r = get_vcpu_keys(rd, x, cfg)) < 0)
        return r;

    if ((r = get_disks(rd, x, flags, cfg)) < 0)
        return r;
    if ((r = get_vifs(rd, x, cfg, warn)) < 0)
        return r;

    const char *cmdline_key = key_line(rd, "cmdline") ? "cmdline"
                            : key_line(rd, "extra") ? "extra" : "root";
    return validate(rd, cfg, cmdline_key);
}

/* libxlutil's report text, trimmed, as the error message (it carries FILE:LINE). */
static void report_to_err(const char *report, const char *filename, int r,
                          char *err, size_t errlen)
{
    size_t len = report ? strlen(report) : 0;
    while (len && (report[len - 1] == '\n' || report[len - 1] == ' '))
        len--;
    if (len)
        snprintf(err, errlen, "%.*s", (int)len, report);
    else
        snprintf(err, errlen, "%s: cannot parse: %s", filename, strerror(r));
}

int xlcfg_read_data(const char *data, size_t len, const char *filename,
                    const char *basedir, unsigned flags, struct domcfg *cfg,
                    FILE *warn, char *err, size_t errlen)
{
    struct reader *rd;
    char *report = NULL;
    size_t report_len = 0;
    FILE *rep;
    XLU_Config *x = NULL;
    int r;

    if (len > XLCFG_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %d bytes", filename, XLCFG_MAX_FILE);
        return -EFBIG;
    }
    /* libxlutil asserts (aborts) on a NUL inside a quoted string: refuse them first. */
    const char *nul = memchr(data, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = data; p < nul; p++)
            line += *p == '\n';
        snprintf(err, errlen, "%s:%d: NUL byte in config file", filename, line);
        return -EINVAL;
    }
    rd = calloc(1, sizeof(*rd));
    if (!rd) {
        snprintf(err, errlen, "%s: out of memory", filename);
        return -ENOMEM;
    }
    rd->filename = filename;
    rd->err = err;
    rd->errlen = errlen;

    rep = open_memstream(&report, &report_len);
    if (!rep) {
        r = -errno;
        snprintf(err, errlen, "%s: open_memstream: %s", filename, strerror(errno));
        goto out;
    }
    x = xlu_cfg_init(rep, filename);
    if (!x) {
        r = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", filename);
        goto out;
    }
    r = xlu_cfg_readdata(x, data, (int)len);
    if (r) {
        fflush(rep);
        report_to_err(report, filename, r, err, errlen);
        r = -r;
        goto out;
    }
    scan_keys(rd, data, len);
    warn_keys(rd, warn);    /* first: an unknown key is often the typo behind an error */
    r = read_config(rd, x, basedir, flags, cfg, warn);

out:
    if (x)
        xlu_cfg_destroy(x);
    if (rep)
        fclose(rep);
    free(report);
    free(rd);
    return r < 0 ? r : 0;
}

int xlcfg_read_file(const char *path, struct domcfg *cfg, FILE *warn,
                    char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open config %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if (st.st_size > XLCFG_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, XLCFG_MAX_FILE);
        close(fd);
        return -EFBIG;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (;;) {
        if (len == cap) {
            /* the file grew under us: allow up to the limit */
            if (cap > XLCFG_MAX_FILE) {
                snprintf(err, errlen, "%s: larger than %d bytes", path, XLCFG_MAX_FILE);
                free(buf);
                close(fd);
                return -EFBIG;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                snprintf(err, errlen, "%s: out of memory", path);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "cannot read config %s: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);

    char *copy = strdup(path);
    if (!copy) {
        free(buf);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    int r = xlcfg_read_data(buf, len, path, dirname(copy), 0, cfg, warn, err, errlen);
    free(copy);
    free(buf);
    return r;
}
