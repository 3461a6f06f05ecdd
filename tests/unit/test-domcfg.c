/*
 * struct domcfg: defaults, actions, validation, and the JSON codec on hostile input;
 * the host paths a restore stream may name (util/hostpath.h).
 */
#include <errno.h>
#include <stddef.h>
#include <json-c/json.h>

#include "harness.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util/domcfg.h"
#include "util/hostpath.h"

HARNESS_MAIN_STATE("domcfg");

static void fill(struct domcfg *c)
{
    domcfg_defaults(c);
    strcpy(c->name, "guest-1");
    c->memory_mb = 256;
    c->vcpus = 4;
    strcpy(c->kernel, "/boot/xkvm-guest");
    strcpy(c->cmdline, "console=hvc0 test=\"quoted\" \\ back");
    c->on_poweroff = DOMCFG_PRESERVE;
    c->on_reboot = DOMCFG_DESTROY;
    c->on_crash = DOMCFG_RESTART;
}

static struct json_object *parse(const char *text)
{
    return json_tokener_parse(text);
}

static void test_defaults(void)
{
    struct domcfg c;
    domcfg_defaults(&c);
    CHECK_EQ(c.memory_mb, 32);
    CHECK_EQ(c.vcpus, 1);
    CHECK_EQ(c.on_poweroff, DOMCFG_DESTROY);
    CHECK_EQ(c.on_reboot, DOMCFG_RESTART);
    CHECK_EQ(c.on_crash, DOMCFG_DESTROY);
    CHECK_EQ(c.name[0], '\0');
    char err[256] = "";
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);   /* no name */
    CHECK_STR_CONTAINS(err, "name");
}

static void test_actions(void)
{
    enum domcfg_action a;
    CHECK(domcfg_action_parse("destroy", &a) == 0 && a == DOMCFG_DESTROY);
    CHECK(domcfg_action_parse("restart", &a) == 0 && a == DOMCFG_RESTART);
    CHECK(domcfg_action_parse("preserve", &a) == 0 && a == DOMCFG_PRESERVE);
    CHECK_EQ(domcfg_action_parse("coredump-destroy", &a), -EOPNOTSUPP);
    CHECK_EQ(domcfg_action_parse("rename-restart", &a), -EOPNOTSUPP);
    CHECK_EQ(domcfg_action_parse("Destroy", &a), -EINVAL);
    CHECK_EQ(domcfg_action_parse("", &a), -EINVAL);
    CHECK_EQ(domcfg_action_parse(NULL, &a), -EINVAL);
    for (int i = DOMCFG_DESTROY; i <= DOMCFG_PRESERVE; i++) {
        CHECK(domcfg_action_parse(domcfg_action_name((enum domcfg_action)i), &a) == 0);
        CHECK_EQ(a, i);
    }
    CHECK(strcmp(domcfg_action_name((enum domcfg_action)99), "invalid") == 0);
}

static void test_round_trip(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    /* Through text, as on the socket. */
    struct json_object *back = parse(json_object_to_json_string(o));
    json_object_put(o);
    REQUIRE(back);
    memset(&out, 0xa5, sizeof(out));
    int r = domcfg_from_json(back, &out, err, sizeof(err));
    json_object_put(back);
    CHECK_MSG(r == 0, "from_json: %s", err);
    CHECK(strcmp(out.name, in.name) == 0);
    CHECK_EQ(out.memory_mb, in.memory_mb);
    CHECK_EQ(out.vcpus, in.vcpus);
    CHECK(strcmp(out.kernel, in.kernel) == 0);
    CHECK(strcmp(out.cmdline, in.cmdline) == 0);
    CHECK_EQ(out.on_poweroff, in.on_poweroff);
    CHECK_EQ(out.on_reboot, in.on_reboot);
    CHECK_EQ(out.on_crash, in.on_crash);
}

static void test_round_trip_limits(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    memset(in.name, 'n', DOMCFG_NAME_MAX - 1);
    in.name[DOMCFG_NAME_MAX - 1] = '\0';
    in.memory_mb = DOMCFG_MEMORY_MB_MAX;
    in.vcpus = DOMCFG_VCPUS_MAX;
    in.kernel[0] = '/';
    memset(in.kernel + 1, 'k', PATH_MAX - 2);
    in.kernel[PATH_MAX - 1] = '\0';
    memset(in.cmdline, 'c', DOMCFG_CMDLINE_MAX - 1);
    in.cmdline[DOMCFG_CMDLINE_MAX - 1] = '\0';
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    int r = domcfg_from_json(o, &out, err, sizeof(err));
    json_object_put(o);
    CHECK_MSG(r == 0, "from_json: %s", err);
    CHECK(memcmp(&in, &out, offsetof(struct domcfg, on_poweroff)) == 0);

    in.memory_mb = DOMCFG_MEMORY_MB_MIN;
    in.vcpus = 1;
    in.cmdline[0] = '\0';
    o = domcfg_to_json(&in);
    REQUIRE(o);
    r = domcfg_from_json(o, &out, err, sizeof(err));
    json_object_put(o);
    CHECK_MSG(r == 0, "from_json: %s", err);
    CHECK_EQ(out.memory_mb, DOMCFG_MEMORY_MB_MIN);
    CHECK_EQ(out.cmdline[0], '\0');
}

/* Only name and kernel are required; the rest take xl's defaults. */
static void test_minimal(void)
{
    struct domcfg c;
    char err[256] = "";
    struct json_object *o = parse("{\"name\":\"m\",\"kernel\":\"/k\"}");
    REQUIRE(o);
    int r = domcfg_from_json(o, &c, err, sizeof(err));
    json_object_put(o);
    REQUIRE(r == 0);
    CHECK_EQ(c.memory_mb, 32);
    CHECK_EQ(c.vcpus, 1);
    CHECK_EQ(c.cmdline[0], '\0');
    CHECK_EQ(c.on_poweroff, DOMCFG_DESTROY);
    CHECK_EQ(c.on_reboot, DOMCFG_RESTART);
    CHECK_EQ(c.on_crash, DOMCFG_DESTROY);
}

/* Each bad document must be rejected with a message containing `want`, and the
 * output config must be left alone. */
static void reject(const char *text, const char *want)
{
    struct domcfg c;
    char err[256] = "";
    memset(&c, 0x5a, sizeof(c));
    struct json_object *o = parse(text);
    if (!o && strcmp(text, "null") != 0) {
        harness_fail(__FILE__, __LINE__, "test JSON does not parse: %s", text);
        return;
    }
    int r = domcfg_from_json(o, &c, err, sizeof(err));
    json_object_put(o);
    CHECK_MSG(r == -EINVAL, "accepted: %s", text);
    CHECK_STR_CONTAINS(err, want);
    CHECK_MSG((unsigned char)c.name[0] == 0x5a && c.memory_mb == 0x5a5a5a5a5a5a5a5aull,
              "output modified on error: %s", text);
}

#define BASE_K "\"kernel\":\"/k\""
#define BASE_N "\"name\":\"n\""

static void test_reject_shape(void)
{
    reject("null", "config");
    reject("[]", "config");
    reject("\"name\"", "config");
    reject("42", "config");
    reject("{" BASE_N "," BASE_K ",\"memroy_mb\":32}", "memroy_mb");
    reject("{" BASE_N "," BASE_K ",\"disk\":[]}", "unknown field");
    reject("{" BASE_N "," BASE_K ",\"\\u0001evil\":1}", "unknown field");
}

static void test_reject_name(void)
{
    reject("{" BASE_K "}", "name: missing");
    reject("{\"name\":null," BASE_K "}", "name: must be a string");
    reject("{\"name\":42," BASE_K "}", "name: must be a string");
    reject("{\"name\":[\"a\"]," BASE_K "}", "name: must be a string");
    reject("{\"name\":\"\"," BASE_K "}", "name: must not be empty");
    reject("{\"name\":\"a\\u0000b\"," BASE_K "}", "name: contains a NUL");
    reject("{\"name\":\"a/b\"," BASE_K "}", "name");
    reject("{\"name\":\"a b\"," BASE_K "}", "name");
    reject("{\"name\":\"a\\nb\"," BASE_K "}", "name");
    reject("{\"name\":\"\\u00e9\"," BASE_K "}", "name");
    reject("{\"name\":\"123\"," BASE_K "}", "all digits");
    reject("{\"name\":\"-x\"," BASE_K "}", "name");
    char buf[512];
    char longname[DOMCFG_NAME_MAX + 1];
    memset(longname, 'a', DOMCFG_NAME_MAX);
    longname[DOMCFG_NAME_MAX] = '\0';
    snprintf(buf, sizeof(buf), "{\"name\":\"%s\"," BASE_K "}", longname);
    reject(buf, "name: longer than");
}

static void test_reject_numbers(void)
{
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":\"32\"}", "memory_mb: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":32.5}", "memory_mb: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":true}", "memory_mb: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":null}", "memory_mb: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":0}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":1}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":-32}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":1048577}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":9223372036854775807}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":18446744073709551615}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":99999999999999999999999}", "memory_mb");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":0}", "vcpus");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":129}", "vcpus");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":-1}", "vcpus");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":4294967297}", "vcpus");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":\"2\"}", "vcpus: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":1e2}", "vcpus: must be an integer");
}

static void test_reject_kernel(void)
{
    reject("{" BASE_N "}", "kernel: missing");
    reject("{" BASE_N ",\"kernel\":7}", "kernel: must be a string");
    reject("{" BASE_N ",\"kernel\":\"\"}", "kernel: must not be empty");
    reject("{" BASE_N ",\"kernel\":\"boot/k\"}", "kernel: must be an absolute path");
    reject("{" BASE_N ",\"kernel\":\"./k\"}", "kernel: must be an absolute path");
    reject("{" BASE_N ",\"kernel\":\"/k\\u0000/etc/shadow\"}", "kernel: contains a NUL");
    static char buf[PATH_MAX + 100];
    char *p = buf + sprintf(buf, "{" BASE_N ",\"kernel\":\"/");
    memset(p, 'k', PATH_MAX);
    strcpy(p + PATH_MAX, "\"}");
    reject(buf, "kernel: path longer than");
}

static void test_reject_cmdline(void)
{
    reject("{" BASE_N "," BASE_K ",\"cmdline\":1}", "cmdline: must be a string");
    reject("{" BASE_N "," BASE_K ",\"cmdline\":[]}", "cmdline: must be a string");
    reject("{" BASE_N "," BASE_K ",\"cmdline\":\"a\\u0000b\"}", "cmdline: contains a NUL");
    reject("{" BASE_N "," BASE_K ",\"cmdline\":\"a\\nb\"}", "cmdline: control character");
    reject("{" BASE_N "," BASE_K ",\"cmdline\":\"\\u007f\"}", "cmdline: control character");
    static char buf[DOMCFG_CMDLINE_MAX + 100];
    char *p = buf + sprintf(buf, "{" BASE_N "," BASE_K ",\"cmdline\":\"");
    memset(p, 'c', DOMCFG_CMDLINE_MAX);
    strcpy(p + DOMCFG_CMDLINE_MAX, "\"}");
    reject(buf, "cmdline: longer than");
}

static void test_reject_actions(void)
{
    reject("{" BASE_N "," BASE_K ",\"on_poweroff\":\"explode\"}", "on_poweroff: unknown action");
    reject("{" BASE_N "," BASE_K ",\"on_reboot\":\"rename-restart\"}",
           "on_reboot: action \"rename-restart\" is not supported");
    reject("{" BASE_N "," BASE_K ",\"on_crash\":\"coredump-destroy\"}", "on_crash");
    reject("{" BASE_N "," BASE_K ",\"on_crash\":0}", "on_crash: must be a string");
    reject("{" BASE_N "," BASE_K ",\"on_crash\":\"destroy\\u0000x\"}", "on_crash: contains a NUL");
    reject("{" BASE_N "," BASE_K ",\"on_reboot\":null}", "on_reboot: must be a string");
}

static void test_validate(void)
{
    struct domcfg c;
    char err[256];

    fill(&c);
    c.memory_mb = 0;
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "memory_mb");

    fill(&c);
    c.vcpus = DOMCFG_VCPUS_MAX + 1;
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "vcpus");

    fill(&c);
    strcpy(c.kernel, "relative");
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "kernel");

    fill(&c);
    memset(c.name, 'x', sizeof(c.name));      /* unterminated */
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "name");

    fill(&c);
    memset(c.cmdline, 'x', sizeof(c.cmdline));
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "cmdline");

    fill(&c);
    c.on_crash = (enum domcfg_action)7;
    CHECK(domcfg_validate(&c, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "on_crash");

    /* A tiny error buffer is truncated, never overrun; NULL is allowed. */
    fill(&c);
    c.vcpus = 0;
    char tiny[4] = "zzz";
    CHECK(domcfg_validate(&c, tiny, sizeof(tiny)) == -EINVAL);
    CHECK(strcmp(tiny, "vcp") == 0);
    CHECK(domcfg_validate(&c, NULL, 0) == -EINVAL);
}

/* Xen's virtual-device numbers (docs/misc/vbd-interface). */
static void test_vdev_numbers(void)
{
    static const struct { const char *vdev; uint32_t devid; } good[] = {
        { "xvda", 51712 }, { "xvdb", 51728 }, { "xvda1", 51713 }, { "xvdp15", 51967 },
        { "xvdq", (1u << 28) | (16u << 8) }, { "xvdaa", (1u << 28) | (26u << 8) },
        { "xvdq255", (1u << 28) | (16u << 8) | 255 }, { "hda", 768 }, { "hdb", 832 },
        { "hdc", 5632 }, { "hdd1", 5697 }, { "sda", 2048 }, { "sdb2", 2066 },
        { "51712", 51712 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint32_t id = 0;
        int r = domcfg_vdev_to_devid(good[i].vdev, &id);
        CHECK_MSG(r == 0 && id == good[i].devid, "%s: rc %d devid %u, want %u",
                  good[i].vdev, r, id, good[i].devid);
    }
    static const char *const bad[] = {
        "", "xvd", "xvdA", "xvda0", "xvda16", "xvda01", "xvdq256", "hde", "sdq", "sda16",
        "vda", "0", "0123", "xvda-1", "xvdaaaa", "536870912", "xvda 1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t id;
        CHECK_MSG(domcfg_vdev_to_devid(bad[i], &id) == -EINVAL, "accepted \"%s\"", bad[i]);
    }
}

static void test_disks(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    in.nr_disks = 2;
    strcpy(in.disks[0].path, "/images/root.img");
    strcpy(in.disks[0].vdev, "xvda");
    in.disks[0].devid = 51712;
    strcpy(in.disks[1].path, "/images/data with space.img");
    strcpy(in.disks[1].vdev, "xvdb");
    in.disks[1].devid = 51728;
    in.disks[1].readonly = true;
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    struct json_object *back = parse(json_object_to_json_string(o));
    json_object_put(o);
    REQUIRE(back);
    int r = domcfg_from_json(back, &out, err, sizeof(err));
    json_object_put(back);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_EQ(out.nr_disks, 2);
    CHECK(strcmp(out.disks[1].path, "/images/data with space.img") == 0);
    CHECK(strcmp(out.disks[0].vdev, "xvda") == 0);
    CHECK_EQ(out.disks[0].devid, 51712);
    CHECK_EQ(out.disks[0].readonly, false);
    CHECK_EQ(out.disks[1].devid, 51728);
    CHECK_EQ(out.disks[1].readonly, true);

    /* A devid that does not match its vdev, or a duplicate, fails validation. */
    in.disks[1].devid = 1;
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "disks[1].devid");
    in.disks[1].devid = 51712;
    strcpy(in.disks[1].vdev, "xvda");
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "used twice");
    in.nr_disks = DOMCFG_DISKS_MAX + 1;
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);

#define D(x) "{" BASE_N "," BASE_K ",\"disks\":" x "}"
    reject(D("{}"), "disks: must be an array");
    reject(D("[1]"), "disks[0]: must be an object");
    reject(D("[{\"path\":\"/a\"}]"), "disks[0].vdev");
    reject(D("[{\"vdev\":\"xvda\"}]"), "disks[0].path");
    reject(D("[{\"path\":\"rel\",\"vdev\":\"xvda\"}]"), "absolute");
    reject(D("[{\"path\":\"/a\\n\",\"vdev\":\"xvda\"}]"), "control character");
    reject(D("[{\"path\":\"/a\\u0000b\",\"vdev\":\"xvda\"}]"), "disks[0].path");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"vda\"}]"), "not a Xen virtual device");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"xvdaxvdaxvdaxvdaxvda\"}]"), "longer than");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"xvda\",\"readonly\":1}]"), "true or false");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"xvda\",\"devid\":5}]"), "unknown field");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"xvda\"},{\"path\":\"/b\",\"vdev\":\"51712\"}]"),
           "used twice");
    reject(D("[{\"path\":\"/a\",\"vdev\":\"xvda\"},{\"path\":\"/a\",\"vdev\":\"xvdb\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdc\"},{\"path\":\"/a\",\"vdev\":\"xvdd\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvde\"},{\"path\":\"/a\",\"vdev\":\"xvdf\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdg\"},{\"path\":\"/a\",\"vdev\":\"xvdh\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdi\"},{\"path\":\"/a\",\"vdev\":\"xvdj\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdk\"},{\"path\":\"/a\",\"vdev\":\"xvdl\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdm\"},{\"path\":\"/a\",\"vdev\":\"xvdn\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdo\"},{\"path\":\"/a\",\"vdev\":\"xvdp\"},"
             "{\"path\":\"/a\",\"vdev\":\"xvdq\"}]"), "more than");
#undef D
}

static void add_disk(struct domcfg *c, const char *path, const char *vdev)
{
    struct domcfg_disk *dk = &c->disks[c->nr_disks++];
    snprintf(dk->path, sizeof(dk->path), "%s", path);
    snprintf(dk->vdev, sizeof(dk->vdev), "%s", vdev);
    domcfg_vdev_to_devid(vdev, &dk->devid);
}

/* ramdisk, maxvcpus, uuid, cpus: through JSON and back; absent when unset. */
static void test_boot_extras_round_trip(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    strcpy(in.ramdisk, "/boot/initrd.img");
    in.maxvcpus = 8;
    strcpy(in.uuid, "5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f60");
    REQUIRE(domcfg_cpuset_parse("0-3,^2,7", &in.cpus[0], err, sizeof(err)) == 0);
    REQUIRE(domcfg_cpuset_parse("all,^1-1022", &in.cpus[1], err, sizeof(err)) == 0);
    in.nr_cpus = 2;
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    struct json_object *back = parse(json_object_to_json_string(o));
    json_object_put(o);
    int r = domcfg_from_json(back, &out, err, sizeof(err));
    json_object_put(back);
    REQUIRE(r == 0);
    CHECK(strcmp(out.ramdisk, in.ramdisk) == 0);
    CHECK_EQ(out.maxvcpus, 8);
    CHECK(strcmp(out.uuid, in.uuid) == 0);
    CHECK_EQ(out.nr_cpus, 2);
    CHECK(memcmp(out.cpus, in.cpus, 2 * sizeof(in.cpus[0])) == 0);
    char text[64];
    domcfg_cpuset_format(&out.cpus[0], text, sizeof(text));
    CHECK(strcmp(text, "0-1,3,7") == 0);
    domcfg_cpuset_format(&out.cpus[1], text, sizeof(text));
    CHECK(strcmp(text, "0,1023") == 0);

    /* Unset, they are not written: older peers (which refuse unknown members) read it. */
    fill(&in);
    o = domcfg_to_json(&in);
    REQUIRE(o);
    const char *t = json_object_to_json_string(o);
    CHECK(!strstr(t, "ramdisk") && !strstr(t, "maxvcpus") && !strstr(t, "uuid") &&
          !strstr(t, "\"cpus\""));
    json_object_put(o);
    CHECK_EQ(domcfg_max_vcpus(&in), 4);
}

/* maxmem and the balloon target: through JSON and back, absent when unset, ranges. */
static void test_maxmem(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    CHECK_EQ(domcfg_max_mb(&in), in.memory_mb);
    CHECK_EQ(domcfg_target_kb(&in), in.memory_mb * 1024);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    CHECK(!strstr(json_object_to_json_string(o), "maxmem") &&
          !strstr(json_object_to_json_string(o), "target"));
    json_object_put(o);
    in.maxmem_mb = in.memory_mb + 16;
    in.target_kb = 3000;
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    o = domcfg_to_json(&in);
    REQUIRE(o);
    struct json_object *back = parse(json_object_to_json_string(o));
    json_object_put(o);
    int r = domcfg_from_json(back, &out, err, sizeof(err));
    json_object_put(back);
    REQUIRE(r == 0);
    CHECK_EQ(out.maxmem_mb, in.memory_mb + 16);
    CHECK_EQ(domcfg_max_mb(&out), in.memory_mb + 16);
    CHECK_EQ(domcfg_target_kb(&out), 3000);

    fill(&in);
    in.maxmem_mb = in.memory_mb - 1;
    CHECK_EQ(domcfg_validate(&in, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "maxmem_mb");
    fill(&in);
    in.target_kb = (in.memory_mb + 1) * 1024;
    CHECK_EQ(domcfg_validate(&in, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "target_kb");
    fill(&in);
    in.maxmem_mb = UINT64_MAX;
    CHECK_EQ(domcfg_validate(&in, err, sizeof(err)), -EINVAL);
    reject("{" BASE_N "," BASE_K ",\"maxmem_mb\":\"64\"}", "maxmem_mb: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"memory_mb\":64,\"maxmem_mb\":32}", "maxmem_mb: 32 out of range");
    reject("{" BASE_N "," BASE_K ",\"target_kb\":5}", "target_kb: 5 out of range");
}

static void test_cpuset_parse(void)
{
    struct domcfg_cpuset s;
    char err[256], text[64];
    static const struct { const char *in, *out; } ok[] = {
        { "2", "2" }, { "0-3,5", "0-3,5" }, { "0-3,^1", "0,2-3" }, { "all,^0", "1-1023" },
        { "5,1,3-4", "1,3-5" }, { "1023", "1023" }, { "0-0", "0" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_MSG(domcfg_cpuset_parse(ok[i].in, &s, err, sizeof(err)) == 0, "%s: %s",
                  ok[i].in, err);
        domcfg_cpuset_format(&s, text, sizeof(text));
        CHECK_MSG(strcmp(text, ok[i].out) == 0, "%s -> %s", ok[i].in, text);
    }
    static const char *const bad[] = {
        "", ",", "1,", "a", "1-", "-1", "3-1", "1024", "99999999999", "^1", "0,^0",
        "nodes:0", "1 ", " 1", "1--2", "0x1", "all,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_MSG(domcfg_cpuset_parse(bad[i], &s, err, sizeof(err)) == -EINVAL,
                  "accepted \"%s\"", bad[i]);
        CHECK_STR_CONTAINS(err, "cpus: ");
    }
}

static void test_uuid_parse(void)
{
    char u[DOMCFG_UUID_LEN + 1];
    CHECK_EQ(domcfg_uuid_parse("5F2E8A10-0C3B-4D2E-9A7F-1B2C3D4E5F60", u), 0);
    CHECK(strcmp(u, "5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f60") == 0);
    CHECK_EQ(domcfg_uuid_parse("5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f6", u), -EINVAL);
    CHECK_EQ(domcfg_uuid_parse("5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f600", u), -EINVAL);
    CHECK_EQ(domcfg_uuid_parse("5f2e8a100c3b-4d2e-9a7f-1b2c3d4e5f60-", u), -EINVAL);
    CHECK_EQ(domcfg_uuid_parse("gf2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f60", u), -EINVAL);
    CHECK_EQ(domcfg_uuid_parse(NULL, u), -EINVAL);
}

static void test_reject_boot_extras(void)
{
    reject("{" BASE_N "," BASE_K ",\"ramdisk\":\"initrd\"}", "ramdisk: must be an absolute");
    reject("{" BASE_N "," BASE_K ",\"ramdisk\":\"/a\\nb\"}", "ramdisk: control character");
    reject("{" BASE_N "," BASE_K ",\"ramdisk\":5}", "ramdisk: must be a string");
    reject("{" BASE_N "," BASE_K ",\"maxvcpus\":0}", "maxvcpus: 0 out of range");
    reject("{" BASE_N "," BASE_K ",\"maxvcpus\":129}", "maxvcpus: 129 out of range");
    reject("{" BASE_N "," BASE_K ",\"vcpus\":4,\"maxvcpus\":2}", "maxvcpus: 2 out of range");
    reject("{" BASE_N "," BASE_K ",\"maxvcpus\":\"2\"}", "maxvcpus: must be an integer");
    reject("{" BASE_N "," BASE_K ",\"uuid\":\"x\"}", "uuid: not an 8-4-4-4-12 UUID");
    reject("{" BASE_N "," BASE_K ",\"uuid\":7}", "uuid: must be a string");
    reject("{" BASE_N "," BASE_K ",\"cpus\":\"0\"}", "cpus: must be an array");
    reject("{" BASE_N "," BASE_K ",\"cpus\":[1]}", "cpus[0]: must be a string");
    reject("{" BASE_N "," BASE_K ",\"cpus\":[\"0\",\"1\"]}", "cpus: 2 entries for 1 vCPUs");
    reject("{" BASE_N "," BASE_K ",\"cpus\":[\"^0\"]}", "cpus: \"^0\" leaves no CPU");

    struct domcfg c;
    char err[256];
    fill(&c);
    c.maxvcpus = 2;
    CHECK_EQ(domcfg_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "maxvcpus");
    fill(&c);
    strcpy(c.uuid, "5F2E8A10-0C3B-4D2E-9A7F-1B2C3D4E5F60");
    CHECK_EQ(domcfg_validate(&c, err, sizeof(err)), -EINVAL);
    fill(&c);
    c.nr_cpus = 1;          /* an empty set */
    CHECK_EQ(domcfg_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "names no CPU");
}

static void test_hostpath(void)
{
    CHECK(hostpath_within("/srv/img/a.img", "/srv/img"));
    CHECK(!hostpath_within("/srv/img2/a.img", "/srv/img"));
    CHECK(!hostpath_within("/srv/img", "/srv/img"));
    CHECK(hostpath_within("/a", "/"));

    char dir[] = "/tmp/xkvm-hostpath.XXXXXX", sub[64], img[96], outside[96], link[96];
    char err[512], out[4096];
    REQUIRE(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/root", dir);
    snprintf(img, sizeof(img), "%s/a.img", sub);
    snprintf(outside, sizeof(outside), "%s/secret.img", dir);
    snprintf(link, sizeof(link), "%s/link.img", sub);
    REQUIRE(mkdir(sub, 0700) == 0);
    fclose(fopen(img, "w"));
    fclose(fopen(outside, "w"));
    REQUIRE(symlink(outside, link) == 0);
    struct hostpath_roots none = { 0 }, roots = { 0 };
    CHECK_EQ(hostpath_roots_add(&roots, sub, err, sizeof(err)), 0);
    CHECK(hostpath_roots_add(&roots, img, err, sizeof(err)) < 0);      /* not a directory */

    CHECK_EQ(hostpath_check(&roots, "disk", img, true, out, sizeof(out), err, sizeof(err)), 0);
    CHECK_EQ(hostpath_check(&none, "disk", img, true, out, sizeof(out), err, sizeof(err)),
             -EPERM);
    CHECK_STR_CONTAINS(err, "--disk-root DIR");
    CHECK_EQ(hostpath_check(&roots, "disk", outside, true, out, sizeof(out), err, sizeof(err)),
             -EPERM);
    CHECK_STR_CONTAINS(err, "outside every --disk-root");
    CHECK_EQ(hostpath_check(&roots, "disk", link, true, out, sizeof(out), err, sizeof(err)),
             -EPERM);
    CHECK_STR_CONTAINS(err, "symbolic link");
    char dotdot[128];
    snprintf(dotdot, sizeof(dotdot), "%s/../secret.img", sub);
    CHECK_EQ(hostpath_check(&roots, "disk", dotdot, true, out, sizeof(out), err, sizeof(err)),
             -EPERM);
    CHECK_EQ(hostpath_check(&roots, "disk", sub, true, out, sizeof(out), err, sizeof(err)),
             -EPERM);                                               /* a directory */

    /* A local config: its disks replace the stream's, matched by vdev. */
    struct domcfg stream, local;
    bool dropped;
    fill(&stream);
    stream.nr_disks = 0;
    add_disk(&stream, outside, "xvda");
    stream.on_reboot = DOMCFG_RESTART;
    local = stream;
    local.nr_disks = 0;
    add_disk(&local, img, "xvda");
    local.disks[0].readonly = true;
    struct domcfg c = stream;
    CHECK_EQ(hostpath_apply(&c, &local, &none, &none, &dropped, err, sizeof(err)), 0);
    CHECK(!strcmp(c.disks[0].path, img) && c.disks[0].readonly && !dropped);
    CHECK_EQ(c.on_reboot, DOMCFG_RESTART);
    local.nr_disks = 0;
    add_disk(&local, img, "xvdb");
    c = stream;
    CHECK_EQ(hostpath_apply(&c, &local, &none, &none, &dropped, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "xvda is not in the config");
    /* Without: the roots decide; a kernel outside them is dropped, restarts with it. */
    c = stream;
    CHECK_EQ(hostpath_apply(&c, NULL, &roots, &none, &dropped, err, sizeof(err)), -EPERM);
    snprintf(c.disks[0].path, sizeof(c.disks[0].path), "%s", img);
    CHECK_EQ(hostpath_apply(&c, NULL, &roots, &none, &dropped, err, sizeof(err)), 0);
    CHECK(dropped && c.on_reboot == DOMCFG_DESTROY && c.on_poweroff == DOMCFG_PRESERVE);

    unlink(link);
    unlink(img);
    unlink(outside);
    rmdir(sub);
    rmdir(dir);
}

/* The domain record: the stream's and the live-update image's members, in one order. */
static void test_domrec(void)
{
    static struct domcfg cfg, back;
    char err[256] = "";
    fill(&cfg);
    struct json_object *co = domcfg_to_json(&cfg);
    char cfg_json[4096];
    snprintf(cfg_json, sizeof(cfg_json), "%s", json_object_to_json_string_ext(co, JSON_C_TO_STRING_PLAIN));
    json_object_put(co);

    struct domrec st = { .members = DOMREC_DOMID | DOMREC_CONFIG | DOMREC_PAUSED | DOMREC_UUID,
                         .domid = 7, .cfg = &cfg, .paused = true,
                         .uuid = "0123abcd-0000-4000-8000-00000000beef" };
    char *j = domrec_to_json(&st), want[8192];
    REQUIRE(j);
    snprintf(want, sizeof(want), "{\"domid\":7,\"config\":%s,\"paused\":true,"
             "\"uuid\":\"0123abcd-0000-4000-8000-00000000beef\"}", cfg_json);
    CHECK_MSG(!strcmp(j, want), "%s", j);
    struct domrec r = { .cfg = &back };
    CHECK_EQ(domrec_from_json(j, strlen(j), DOMREC_DOMID | DOMREC_CONFIG,
                              DOMREC_PAUSED | DOMREC_UUID, "DOMAIN_CONFIG", "{...}", &r, err,
                              sizeof(err)), 0);
    CHECK_EQ(r.members, st.members);
    CHECK_EQ(r.domid, 7);
    CHECK(r.paused && !strcmp(r.uuid, st.uuid) && !strcmp(back.cmdline, cfg.cmdline));
    free(j);

    struct domrec lu = { .members = DOMREC_CONFIG | DOMREC_PAUSED | DOMREC_SHUTDOWN,
                         .cfg = &cfg, .shutdown_code = 2, .shutdown_handled = true };
    j = domrec_to_json(&lu);
    REQUIRE(j);
    snprintf(want, sizeof(want), "{\"config\":%s,\"paused\":false,\"shutdown_code\":2,"
             "\"shutdown_handled\":true}", cfg_json);
    CHECK_MSG(!strcmp(j, want), "%s", j);
    const unsigned all = DOMREC_CONFIG | DOMREC_PAUSED | DOMREC_SHUTDOWN;
    CHECK_EQ(domrec_from_json(j, strlen(j), all, 0, "DOMAIN record", "{...}", &r, err,
                              sizeof(err)), 0);
    CHECK(r.shutdown_code == 2 && r.shutdown_handled && !r.paused);
    free(j);

    /* Refusals name the record. */
    const char *no_domid = "{\"config\":{}}";
    CHECK_EQ(domrec_from_json(no_domid, strlen(no_domid), DOMREC_DOMID | DOMREC_CONFIG, 0,
                              "DOMAIN_CONFIG", "{\"domid\": N, \"config\": {...}}", &r, err,
                              sizeof(err)), -EINVAL);
    CHECK(!strcmp(err, "DOMAIN_CONFIG is not {\"domid\": N, \"config\": {...}}"));
    const char *dom0 = "{\"domid\":0,\"config\":{}}";
    CHECK_EQ(domrec_from_json(dom0, strlen(dom0), DOMREC_DOMID | DOMREC_CONFIG, 0,
                              "DOMAIN_CONFIG", "{...}", &r, err, sizeof(err)), -EINVAL);
    CHECK(!strcmp(err, "DOMAIN_CONFIG: domid 0 is not a guest's"));
    snprintf(want, sizeof(want), "{\"domid\":1,\"config\":%s,\"uuid\":\"X\"}", cfg_json);
    CHECK_EQ(domrec_from_json(want, strlen(want), DOMREC_DOMID | DOMREC_CONFIG, DOMREC_UUID,
                              "DOMAIN_CONFIG", "{...}", &r, err, sizeof(err)), -EINVAL);
    CHECK(!strcmp(err, "DOMAIN_CONFIG: \"uuid\" is not a UUID"));
    snprintf(want, sizeof(want), "{\"config\":%s,\"paused\":1,\"shutdown_code\":-1,"
             "\"shutdown_handled\":false}", cfg_json);
    CHECK_EQ(domrec_from_json(want, strlen(want), all, 0, "DOMAIN record", "{shape}", &r, err,
                              sizeof(err)), -EINVAL);
    CHECK(!strcmp(err, "DOMAIN record is not {shape}"));
}

/* The ramdisk follows the kernel: the local config's, else inside a --kernel-root. */
static void test_hostpath_ramdisk(void)
{
    char dir[] = "/tmp/xkvm-hostpath-rd.XXXXXX", k[96], rd[96], err[512];
    REQUIRE(mkdtemp(dir));
    snprintf(k, sizeof(k), "%s/vmlinuz", dir);
    snprintf(rd, sizeof(rd), "%s/initrd.img", dir);
    fclose(fopen(k, "w"));
    fclose(fopen(rd, "w"));
    struct hostpath_roots none = { 0 }, roots = { 0 };
    REQUIRE(hostpath_roots_add(&roots, dir, err, sizeof(err)) == 0);
    struct domcfg stream, local, c;
    bool dropped;
    fill(&stream);
    strcpy(stream.kernel, k);
    strcpy(stream.ramdisk, rd);
    stream.on_reboot = DOMCFG_RESTART;
    c = stream;
    CHECK_EQ(hostpath_apply(&c, NULL, &none, &roots, &dropped, err, sizeof(err)), 0);
    CHECK(!dropped && strcmp(c.ramdisk, rd) == 0 && c.on_reboot == DOMCFG_RESTART);
    strcpy(stream.ramdisk, "/etc/shadow");      /* outside: dropped, never read */
    c = stream;
    CHECK_EQ(hostpath_apply(&c, NULL, &none, &roots, &dropped, err, sizeof(err)), 0);
    CHECK(dropped && c.ramdisk[0] == '\0' && c.on_reboot == DOMCFG_DESTROY);
    local = stream;
    strcpy(local.ramdisk, rd);
    c = stream;
    CHECK_EQ(hostpath_apply(&c, &local, &none, &none, &dropped, err, sizeof(err)), 0);
    CHECK(strcmp(c.ramdisk, rd) == 0);
    local.ramdisk[0] = '\0';                    /* the local config has none */
    c = stream;
    CHECK_EQ(hostpath_apply(&c, &local, &none, &none, &dropped, err, sizeof(err)), 0);
    CHECK(c.ramdisk[0] == '\0');
    unlink(k);
    unlink(rd);
    rmdir(dir);
}

/* "vmcall" (the guest has called by VMCALL): written only when set, read as optional. */
static void test_domrec_vmcall(void)
{
    static struct domcfg cfg, back;
    char err[256] = "";
    fill(&cfg);
    struct domrec st = { .members = DOMREC_DOMID | DOMREC_CONFIG | DOMREC_VMCALL,
                         .domid = 3, .cfg = &cfg, .vmcall = true };
    char *j = domrec_to_json(&st);
    REQUIRE(j);
    CHECK_MSG(strstr(j, ",\"vmcall\":true}") != NULL, "%s", j);
    struct domrec r = { .cfg = &back };
    CHECK_EQ(domrec_from_json(j, strlen(j), DOMREC_DOMID | DOMREC_CONFIG, DOMREC_VMCALL,
                              "DOMAIN_CONFIG", "{...}", &r, err, sizeof(err)), 0);
    CHECK(r.vmcall && (r.members & DOMREC_VMCALL));
    /* A reader that does not ask for it ignores it, as an older xkvmd does. */
    CHECK_EQ(domrec_from_json(j, strlen(j), DOMREC_DOMID | DOMREC_CONFIG, 0,
                              "DOMAIN_CONFIG", "{...}", &r, err, sizeof(err)), 0);
    CHECK(!r.vmcall && !(r.members & DOMREC_VMCALL));
    free(j);
    const char *bad = "{\"domid\":1,\"config\":{},\"vmcall\":1}";
    CHECK_EQ(domrec_from_json(bad, strlen(bad), DOMREC_DOMID, DOMREC_VMCALL,
                              "DOMAIN_CONFIG", "{...}", &r, err, sizeof(err)), -EINVAL);
    CHECK_MSG(!strcmp(err, "DOMAIN_CONFIG: \"vmcall\" must be true or false"), "%s", err);
}

/* "bootloader": only pygrub, only with a disk; then the kernel may be empty. */
static void test_bootloader(void)
{
    static const char disk[] = ",\"disks\":[{\"path\":\"/i\",\"vdev\":\"xvda\"}]";
    struct domcfg c;
    char err[256] = "";
    char text[512];
    snprintf(text, sizeof(text), "{" BASE_N ",\"bootloader\":\"pygrub\"%s}", disk);
    struct json_object *o = parse(text);
    REQUIRE(o);
    CHECK_MSG(domcfg_from_json(o, &c, err, sizeof(err)) == 0, "%s", err);
    json_object_put(o);
    CHECK(!strcmp(c.bootloader, "pygrub") && c.kernel[0] == '\0');
    /* Round trip: the member is written only when set. */
    o = domcfg_to_json(&c);
    struct domcfg back;
    CHECK(o && domcfg_from_json(o, &back, err, sizeof(err)) == 0 &&
          !strcmp(back.bootloader, "pygrub"));
    json_object_put(o);
    fill(&c);
    o = domcfg_to_json(&c);
    CHECK(o && !json_object_object_get_ex(o, "bootloader", NULL));
    json_object_put(o);
    snprintf(text, sizeof(text), "{" BASE_N ",\"bootloader\":\"pygrub\",\"kernel\":\"/boot/vmlinuz\"%s}", disk);
    o = parse(text);
    CHECK(o && domcfg_from_json(o, &c, err, sizeof(err)) == 0 && !strcmp(c.kernel, "/boot/vmlinuz"));
    json_object_put(o);
    reject("{" BASE_N ",\"bootloader\":\"pygrub\"}", "bootloader: needs a disk");
    snprintf(text, sizeof(text), "{" BASE_N ",\"bootloader\":\"/bin/sh\"%s}", disk);
    reject(text, "bootloader: only \"pygrub\"");
    snprintf(text, sizeof(text), "{" BASE_N ",\"bootloader\":7%s}", disk);
    reject(text, "bootloader: must be a string");
    snprintf(text, sizeof(text), "{" BASE_N ",\"bootloader\":\"pygrub\",\"kernel\":\"k\"%s}", disk);
    reject(text, "kernel: must be an absolute path");
    /* Without a bootloader the kernel stays required. */
    snprintf(text, sizeof(text), "{" BASE_N "%s}", disk);
    reject(text, "kernel: missing");
    /* validate() on a struct: the bootloader's disk. */
    fill(&c);
    strcpy(c.bootloader, "pygrub");
    CHECK(domcfg_validate(&c, err, sizeof(err)) < 0);
    CHECK_STR_CONTAINS(err, "needs a disk");
}

/* vifs: round trip, validation, the JSON shape refused where it is wrong. */
static void test_vifs(void)
{
    struct domcfg in, out;
    char err[256] = "";
    fill(&in);
    in.nr_vifs = 2;
    static const uint8_t m0[6] = { 0x00, 0x16, 0x3e, 0x7f, 0x00, 0xab };
    memcpy(in.vifs[0].mac, m0, 6);
    strcpy(in.vifs[0].bridge, "xkbr0");
    memcpy(in.vifs[1].mac, m0, 6);
    in.vifs[1].mac[5] = 1;
    in.vifs[1].rate_bytes = 62500;
    in.vifs[1].rate_usec = 50000;
    REQUIRE(domcfg_validate(&in, err, sizeof(err)) == 0);
    struct json_object *o = domcfg_to_json(&in);
    REQUIRE(o);
    CHECK_STR_CONTAINS(json_object_to_json_string(o), "\"00:16:3e:7f:00:ab\"");
    struct json_object *back = parse(json_object_to_json_string(o));
    json_object_put(o);
    REQUIRE(back);
    int r = domcfg_from_json(back, &out, err, sizeof(err));
    json_object_put(back);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_EQ(out.nr_vifs, 2);
    CHECK(memcmp(out.vifs[0].mac, m0, 6) == 0);
    CHECK(strcmp(out.vifs[0].bridge, "xkbr0") == 0);
    CHECK(out.vifs[1].bridge[0] == '\0' && out.vifs[1].mac[5] == 1);
    CHECK_EQ(out.vifs[1].rate_bytes, 62500);
    CHECK_EQ(out.vifs[1].rate_usec, 50000);
    CHECK_EQ(out.vifs[0].rate_usec, 0);
    in.vifs[1].rate_usec = 0;
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "vifs[1].rate");
    in.vifs[1].rate_bytes = 0;

    in.vifs[1].mac[5] = 0xab;
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "vifs[1].mac: used twice");
    in.vifs[1].mac[0] = 1;
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "multicast");
    in.vifs[1].mac[0] = 0;
    in.vifs[1].mac[5] = 2;
    strcpy(in.vifs[1].bridge, "../x");
    CHECK(domcfg_validate(&in, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "vifs[1].bridge");

#define V(x) "{" BASE_N "," BASE_K ",\"vifs\":" x "}"
    reject(V("{}"), "vifs: must be an array");
    reject(V("[1]"), "vifs[0]: must be an object");
    reject(V("[{\"bridge\":\"b\"}]"), "vifs[0].mac");
    reject(V("[{\"mac\":\"00:16:3e:00:00:0g\"}]"), "vifs[0].mac");
    reject(V("[{\"mac\":\"00:16:3e:00:00:01\",\"x\":1}]"), "vifs[0]: unknown field");
    reject(V("[{\"mac\":\"00:16:3e:00:00:01\",\"bridge\":\"a b\"}]"), "vifs[0].bridge");
    reject(V("[{\"mac\":\"00:00:00:00:00:00\"}]"), "all zero");
    reject(V("[{\"mac\":\"00:16:3e:00:00:01\",\"rate_usec\":-1}]"), "vifs[0].rate_usec");
    reject(V("[{\"mac\":\"00:16:3e:00:00:01\",\"rate_bytes\":5}]"), "vifs[0].rate");
#undef V
}

int main(void)
{
    RUN_TEST(test_defaults);
    RUN_TEST(test_domrec_vmcall);
    RUN_TEST(test_actions);
    RUN_TEST(test_round_trip);
    RUN_TEST(test_round_trip_limits);
    RUN_TEST(test_minimal);
    RUN_TEST(test_reject_shape);
    RUN_TEST(test_reject_name);
    RUN_TEST(test_reject_numbers);
    RUN_TEST(test_reject_kernel);
    RUN_TEST(test_reject_cmdline);
    RUN_TEST(test_reject_actions);
    RUN_TEST(test_validate);
    RUN_TEST(test_vdev_numbers);
    RUN_TEST(test_disks);
    RUN_TEST(test_vifs);
    RUN_TEST(test_domrec);
    RUN_TEST(test_hostpath);
    RUN_TEST(test_boot_extras_round_trip);
    RUN_TEST(test_cpuset_parse);
    RUN_TEST(test_uuid_parse);
    RUN_TEST(test_reject_boot_extras);
    RUN_TEST(test_hostpath_ramdisk);
    RUN_TEST(test_bootloader);
    RUN_TEST(test_maxmem);
    HARNESS_EXIT();
}
