/* xl.cfg reading (src/tools/xlcfg.c): good configs, and an error naming file:line or
 * the key for each malformed one. Config files are written to a temporary directory. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tools/xlcfg.h"

HARNESS_MAIN_STATE("xlcfg");

const char *__lsan_default_suppressions(void);

/* libxlutil 4.17 leaks a value when its parser recovers from some syntax errors
 * (under ASan): not ours to fix. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libxlutil.so\n";
}

static char tmpdir[64];
static char kernel_path[PATH_MAX];    /* tmpdir/guest/kernel, a readable file */
static char cfg_path[PATH_MAX];       /* tmpdir/cfg/test.cfg */

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void setup(void)
{
    char path[PATH_MAX];
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-xlcfg.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/guest", tmpdir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/cfg", tmpdir);
    mkdir(path, 0755);
    snprintf(kernel_path, sizeof(kernel_path), "%s/guest/kernel", tmpdir);
    write_file(kernel_path, "\x7f" "ELF", 4);
    snprintf(cfg_path, sizeof(cfg_path), "%s/cfg/test.cfg", tmpdir);
}

static void cleanup(void)
{
    char path[PATH_MAX];
    unlink(cfg_path);
    unlink(kernel_path);
    snprintf(path, sizeof(path), "%s/guest", tmpdir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/cfg", tmpdir);
    rmdir(path);
    rmdir(tmpdir);
}

/* Read text as cfg_path; warnings collected into *warnings (caller frees). */
static int read_cfg(const char *text, struct domcfg *c, char *err, size_t errlen,
                    char **warnings)
{
    size_t wlen;
    char *wbuf = NULL;
    FILE *w = open_memstream(&wbuf, &wlen);
    write_file(cfg_path, text, strlen(text));
    int r = xlcfg_read_file(cfg_path, c, w, err, errlen);
    fclose(w);
    if (warnings)
        *warnings = wbuf;
    else
        free(wbuf);
    return r;
}

#define KERNEL_REL "kernel = \"../guest/kernel\"\n"

static void test_full(void)
{
    struct domcfg c;
    char err[1024] = "";
    char *warn = NULL;
    int r = read_cfg("# a comment\n"
                     "name = \"full\"\n"
                     "type = \"pvh\"\n"
                     "memory = 256\n"
                     "vcpus = 4\n"
                     KERNEL_REL
                     "cmdline = \"console=hvc0 test=full\"\n"
                     "on_poweroff = \"preserve\"\n"
                     "on_reboot = \"destroy\"\n"
                     "on_crash = 'restart'\n", &c, err, sizeof(err), &warn);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(strcmp(c.name, "full") == 0);
    CHECK_EQ(c.memory_mb, 256);
    CHECK_EQ(c.vcpus, 4);
    CHECK_MSG(strcmp(c.kernel, kernel_path) == 0, "kernel %s, expected %s", c.kernel, kernel_path);
    CHECK(strcmp(c.cmdline, "console=hvc0 test=full") == 0);
    CHECK_EQ(c.on_poweroff, DOMCFG_PRESERVE);
    CHECK_EQ(c.on_reboot, DOMCFG_DESTROY);
    CHECK_EQ(c.on_crash, DOMCFG_RESTART);
    CHECK_MSG(warn && warn[0] == '\0', "unexpected warnings: %s", warn);
    free(warn);
}

static void test_defaults_and_absolute_kernel(void)
{
    struct domcfg c;
    char err[1024] = "";
    char text[PATH_MAX + 64];
    snprintf(text, sizeof(text), "name=\"d\"\nkernel=\"%s\"\n", kernel_path);
    int r = read_cfg(text, &c, err, sizeof(err), NULL);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_EQ(c.memory_mb, 32);
    CHECK_EQ(c.vcpus, 1);
    CHECK(strcmp(c.kernel, kernel_path) == 0);
    CHECK_EQ(c.cmdline[0], '\0');
    CHECK_EQ(c.on_poweroff, DOMCFG_DESTROY);
    CHECK_EQ(c.on_reboot, DOMCFG_RESTART);
    CHECK_EQ(c.on_crash, DOMCFG_DESTROY);
}

static void test_types(void)
{
    struct domcfg c;
    char err[1024];
    CHECK(read_cfg("name='t'\ntype='hvm'\n" KERNEL_REL, &c, err, sizeof(err), NULL) == 0);
    CHECK(read_cfg("name='t'\nbuilder='hvm'\n" KERNEL_REL, &c, err, sizeof(err), NULL) == 0);
    /* Numbers may be quoted, in hex, and statements separated by ';'. */
    CHECK(read_cfg("name='t'; memory='64'; vcpus=0x2\n" KERNEL_REL, &c, err, sizeof(err),
                   NULL) == 0);
    CHECK_EQ(c.memory_mb, 64);
    CHECK_EQ(c.vcpus, 2);
    /* The last assignment wins, as in xl. */
    CHECK(read_cfg("name='a'\nname='b'\n" KERNEL_REL, &c, err, sizeof(err), NULL) == 0);
    CHECK(strcmp(c.name, "b") == 0);
}

static void test_extra_root(void)
{
    struct domcfg c;
    char err[1024] = "";
    char *warn = NULL;
    CHECK(read_cfg("name='e'\n" KERNEL_REL "extra='quiet'\n", &c, err, sizeof(err), NULL) == 0);
    CHECK(strcmp(c.cmdline, "quiet") == 0);
    CHECK(read_cfg("name='e'\n" KERNEL_REL "root='/dev/xvda1'\nextra='quiet'\n", &c, err,
                   sizeof(err), NULL) == 0);
    CHECK(strcmp(c.cmdline, "root=/dev/xvda1 quiet") == 0);
    CHECK(read_cfg("name='e'\n" KERNEL_REL "root='/dev/xvda1'\n", &c, err, sizeof(err),
                   NULL) == 0);
    CHECK(strcmp(c.cmdline, "root=/dev/xvda1") == 0);
    CHECK(read_cfg("name='e'\n" KERNEL_REL "extra='x'\ncmdline='y'\n", &c, err, sizeof(err),
                   &warn) == 0);
    CHECK(strcmp(c.cmdline, "y") == 0);
    CHECK_STR_CONTAINS(warn, "test.cfg:4: warning: root and extra ignored");
    free(warn);
}

static void test_warnings(void)
{
    struct domcfg c;
    char err[1024] = "";
    char *warn = NULL;
    int r = read_cfg("name = 'w'\n"
                     "channel = [ 'name=a,connection=pty',\n"
                     "         'name=x;y,connection=socket' ]  # a ; in a string, a comment\n"
                     KERNEL_REL
                     "frobnicate = 1; vfb = []\n"
                     "memory = 64\n", &c, err, sizeof(err), &warn);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_STR_CONTAINS(warn, "test.cfg:2: warning: `channel' ignored (not yet supported)");
    CHECK_STR_CONTAINS(warn, "test.cfg:5: warning: `frobnicate' ignored (unknown key)");
    CHECK_STR_CONTAINS(warn, "test.cfg:5: warning: `vfb' ignored (not yet supported)");
    CHECK_MSG(!strstr(warn, "`y") && !strstr(warn, "`connection") && !strstr(warn, "`memory"),
              "spurious warning: %s", warn);
    CHECK_EQ(c.memory_mb, 64);
    free(warn);
}

/* A malformed config must fail and its message contain every one of the given parts. */
static void bad(int line, const char *text, const char *want1, const char *want2)
{
    struct domcfg c;
    char err[1024] = "";
    int r = read_cfg(text, &c, err, sizeof(err), NULL);
    if (r >= 0) {
        harness_fail(__FILE__, line, "accepted: %s", text);
        return;
    }
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        harness_fail(__FILE__, line, "\"%s\" lacks \"%s\"%s%s", err, want1,
                     want2 ? " or " : "", want2 ? want2 : "");
}
#define BAD(text, w1, w2) bad(__LINE__, text, w1, w2)

static void test_syntax_errors(void)
{
    /* libxlutil reports an error at a line end against the line before. */
    BAD("name = 'x'\nmemory = \n" KERNEL_REL, "test.cfg:1:", "parsing error");
    BAD("name='x'\n" KERNEL_REL "memory = 32.5\n", "test.cfg:3:", "lexical error");
    BAD("name = 'x'\n" KERNEL_REL "vcpus = 1 2\n", "test.cfg:3:", NULL);
    BAD("name = x\n", "test.cfg:1:", NULL);
    BAD("name = 'x\n", "test.cfg:1:", NULL);
    BAD("\n\nimport os\n", "test.cfg:3:", NULL);
    BAD("name = 'x'\ndisk = [ 'a',\n", "test.cfg:", NULL);
    BAD("memory = -1\n", "test.cfg:1:", NULL);
}

static void test_bad_values(void)
{
    BAD("name='x'\n" KERNEL_REL "memory = 0\n", "test.cfg:3: memory:", "out of range");
    BAD("name='x'\n" KERNEL_REL "memory = 1\n", "test.cfg:3: memory:", NULL);
    BAD("name='x'\n" KERNEL_REL "memory = 99999999999999999999\n", "test.cfg:3: memory:", NULL);
    BAD("name='x'\n" KERNEL_REL "memory = 1048577\n", "test.cfg:3: memory:", NULL);
    BAD("name='x'\n" KERNEL_REL "memory = 'lots'\n", "test.cfg:3: memory:", "not a number");
    BAD("name='x'\n" KERNEL_REL "memory = [32]\n", "test.cfg:3: memory:", "list");
    BAD("name='x'\n" KERNEL_REL "vcpus = 0\n", "test.cfg:3: vcpus:", "out of range");
    BAD("name='x'\n" KERNEL_REL "vcpus = 129\n", "test.cfg:3: vcpus:", "out of range");
    BAD("name=['x']\n" KERNEL_REL, "test.cfg:1: name:", "list");
    BAD("name='a b'\n" KERNEL_REL, "test.cfg:1: name:", NULL);
    BAD("name='42'\n" KERNEL_REL, "test.cfg:1: name:", "digits");
    BAD("name='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n"
        KERNEL_REL, "test.cfg:1: name:", "longer");
    BAD("name='x'\n" KERNEL_REL "on_poweroff = 'explode'\n", "test.cfg:3: on_poweroff:", NULL);
    BAD("name='x'\n" KERNEL_REL "on_crash = 'coredump-destroy'\n", "test.cfg:3: on_crash:",
        "not supported");
    BAD("name='x'\n" KERNEL_REL "on_reboot = 'rename-restart'\n", "test.cfg:3: on_reboot:",
        "not supported");
    BAD("name='x'\n" KERNEL_REL "type = 'pv'\n", "test.cfg:3: type:",
        "PV guests are not supported");
    BAD("name='x'\n" KERNEL_REL "builder = 'generic'\n", "test.cfg:3: builder:",
        "PV guests are not supported");
    BAD("name='x'\n" KERNEL_REL "type = 'hvmx'\n", "test.cfg:3: type:", NULL);
    BAD("name='x'\n" KERNEL_REL "cmdline = 'a\tb'\n", "test.cfg:3: cmdline:", NULL);

    static char big[DOMCFG_CMDLINE_MAX + 200];
    char *p = big + sprintf(big, "name='x'\n" KERNEL_REL "extra='");
    memset(p, 'e', DOMCFG_CMDLINE_MAX);
    strcpy(p + DOMCFG_CMDLINE_MAX, "'\n");
    BAD(big, "test.cfg:3: extra:", "longer");
}

static void test_missing(void)
{
    BAD("", "test.cfg: name: missing", NULL);
    BAD("memory = 64\n" KERNEL_REL, "test.cfg: name: missing", NULL);
    BAD("name = 'x'\n", "test.cfg: kernel: missing", NULL);
    BAD("name = 'x'\nkernel = 'nonexistent'\n", "test.cfg:2: kernel:", "No such file");
    BAD("name = 'x'\nkernel = '../guest'\n", "test.cfg:2: kernel:", "not a regular file");
    BAD("name = 'x'\nkernel = ''\n", "test.cfg:2: kernel:", "empty");
    /* The kernel is resolved against the config's directory, not the cwd. */
    BAD("name = 'x'\nkernel = 'guest/kernel'\n", "test.cfg:2: kernel:", "cfg/guest/kernel");

    struct domcfg c;
    char err[1024] = "";
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/nope.cfg", tmpdir);
    CHECK(xlcfg_read_file(path, &c, NULL, err, sizeof(err)) == -ENOENT);
    CHECK_STR_CONTAINS(err, "nope.cfg");
    CHECK(xlcfg_read_file(tmpdir, &c, NULL, err, sizeof(err)) < 0);
    CHECK_STR_CONTAINS(err, "not a regular file");
}

static void test_read_data(void)
{
    struct domcfg c;
    char err[1024] = "";
    static const char text[] = "name='m'\nkernel='k/vmlinuz'\n";
    int r = xlcfg_read_data(text, strlen(text), "mem.cfg", "/base", XLCFG_NO_KERNEL_CHECK,
                            &c, NULL, err, sizeof(err));
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(strcmp(c.kernel, "/base/k/vmlinuz") == 0);

    /* An embedded NUL is a parse error, not a truncated string. */
    static const char nul[] = "name='m\0x'\nkernel='/k'\n";
    r = xlcfg_read_data(nul, sizeof(nul) - 1, "mem.cfg", NULL, XLCFG_NO_KERNEL_CHECK,
                        &c, NULL, err, sizeof(err));
    CHECK(r < 0);
    CHECK_STR_CONTAINS(err, "mem.cfg:1: NUL byte");

    static char huge[XLCFG_MAX_FILE + 2];
    memset(huge, '\n', sizeof(huge));
    r = xlcfg_read_data(huge, sizeof(huge), "huge.cfg", NULL, XLCFG_NO_KERNEL_CHECK,
                        &c, NULL, err, sizeof(err));
    CHECK_EQ(r, -EFBIG);
    CHECK_STR_CONTAINS(err, "huge.cfg");
}

/* disk = [...]: xl's disk specification syntax, raw images only. */
static void test_disks(void)
{
    struct domcfg c;
    char err[1024] = "";
    char text[4 * PATH_MAX];
    char *warn = NULL;
    snprintf(text, sizeof(text),
             "name = 'dk'\n" KERNEL_REL
             "disk = [ '%s,raw,xvda,rw',\n"
             "         'format=raw, vdev=xvdb, access=ro, target=%s',\n"
             "         '%s,,hdc,r', '%s,raw,xvdq1,w' ]\n",
             kernel_path, kernel_path, kernel_path, kernel_path);
    int r = read_cfg(text, &c, err, sizeof(err), &warn);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_MSG(warn && warn[0] == '\0', "unexpected warnings: %s", warn);
    free(warn);
    CHECK_EQ(c.nr_disks, 4);
    CHECK(strcmp(c.disks[0].path, kernel_path) == 0);
    CHECK(strcmp(c.disks[0].vdev, "xvda") == 0);
    CHECK_EQ(c.disks[0].devid, 51712);
    CHECK_EQ(c.disks[0].readonly, false);
    CHECK_EQ(c.disks[1].devid, 51728);
    CHECK_EQ(c.disks[1].readonly, true);
    CHECK_EQ(c.disks[2].devid, 5632);
    CHECK_EQ(c.disks[2].readonly, true);
    CHECK_EQ(c.disks[3].devid, (1u << 28) | (16u << 8) | 1);

    /* A relative target is taken from the current directory, as xl does. */
    char cwd[PATH_MAX];
    REQUIRE(getcwd(cwd, sizeof(cwd)));
    REQUIRE(chdir(tmpdir) == 0);
    r = read_cfg("name='dk'\n" KERNEL_REL "disk=['guest/kernel,raw,xvda,rw']\n", &c, err,
                 sizeof(err), NULL);
    REQUIRE(chdir(cwd) == 0);
    CHECK_MSG(r == 0, "%s", err);
    CHECK(r != 0 || strcmp(c.disks[0].path, kernel_path) == 0);

    BAD("name='x'\n" KERNEL_REL "disk = [ '/nonexistent/img,raw,xvda,rw' ]\n",
        "test.cfg:3: disk", "/nonexistent/img");
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,qcow2,xvda,rw' ]\n", "disk",
        "only raw");
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,raw,vda,rw' ]\n", "disk",
        "not a Xen virtual device");
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,raw,xvda,rw', "
        "'/etc/passwd,raw,51712,rw' ]\n", "disk", "used twice");
    BAD("name='x'\n" KERNEL_REL "disk = [ ',raw,xvda,cdrom' ]\n", "disk", NULL);
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,raw,xvda,rw,script=block' ]\n",
        "disk", "scripts");
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,raw,xvda,bogus' ]\n", "disk",
        "cannot parse");
    BAD("name='x'\n" KERNEL_REL "disk = 'not-a-list'\n", "disk", "list");
    BAD("name='x'\n" KERNEL_REL "disk = [ '/etc/passwd,raw,xvda,rw', '/etc/passwd,raw,xvdb', "
        "'/etc/passwd,raw,xvdc', '/etc/passwd,raw,xvdd', '/etc/passwd,raw,xvde', "
        "'/etc/passwd,raw,xvdf', '/etc/passwd,raw,xvdg', '/etc/passwd,raw,xvdh', "
        "'/etc/passwd,raw,xvdi', '/etc/passwd,raw,xvdj', '/etc/passwd,raw,xvdk', "
        "'/etc/passwd,raw,xvdl', '/etc/passwd,raw,xvdm', '/etc/passwd,raw,xvdn', "
        "'/etc/passwd,raw,xvdo', '/etc/passwd,raw,xvdp', '/etc/passwd,raw,xvdq' ]\n",
        "disk", "at most");
}

/* vif = [...]: mac and bridge read, libxl's MAC made up, the rest noted or refused. */
static void test_vifs(void)
{
    struct domcfg c;
    char err[1024] = "";
    char *warn = NULL;
    int r = read_cfg("name='v'\n" KERNEL_REL
                     "vif = [ ' mac=00:16:3E:0a:0b:0c , bridge=xkbr0 ', 'bridge=br-1,rate=10Mb/s',"
                     " 'script=vif-bridge' ]\n", &c, err, sizeof(err), &warn);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_EQ(c.nr_vifs, 3);
    static const uint8_t mac0[6] = { 0x00, 0x16, 0x3e, 0x0a, 0x0b, 0x0c };
    CHECK(memcmp(c.vifs[0].mac, mac0, 6) == 0);
    CHECK(strcmp(c.vifs[0].bridge, "xkbr0") == 0);
    CHECK(strcmp(c.vifs[1].bridge, "br-1") == 0);
    CHECK(c.vifs[2].bridge[0] == '\0');
    /* Generated: Xen's OUI, the first random byte below 0x80, two different MACs. */
    for (int i = 1; i < 3; i++) {
        CHECK(c.vifs[i].mac[0] == 0x00 && c.vifs[i].mac[1] == 0x16 &&
              c.vifs[i].mac[2] == 0x3e && c.vifs[i].mac[3] < 0x80);
    }
    CHECK_STR_CONTAINS(warn, "vif entry 3: `script' ignored");
    /* rate= by libxlutil: 10 Mbit/s in 50 ms intervals (its default). */
    CHECK_EQ(c.vifs[1].rate_usec, 50000);
    CHECK_EQ(c.vifs[1].rate_bytes, 10000000 / 8 / 20);
    CHECK_EQ(c.vifs[0].rate_usec, 0);
    CHECK_MSG(!strstr(warn, "`vif' ignored"), "vif reported as unsupported: %s", warn);
    free(warn);

    BAD("name='x'\n" KERNEL_REL "vif = [ 'mac=00:16:3e:0a:0b' ]\n", "test.cfg:3: vif",
        "entry 1: mac");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'mac=01:16:3e:0a:0b:0c' ]\n", "vif", "multicast");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'bridge=a/b' ]\n", "vif", "interface name");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'bridge=abcdefghijklmnop' ]\n", "vif",
        "interface name");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'frob=1' ]\n", "vif", "unknown option");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'rate=fast' ]\n", "vif", "entry 1: rate");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'backend=2' ]\n", "vif", "dom0");
    BAD("name='x'\n" KERNEL_REL "vif = 'mac=00:16:3e:00:00:01'\n", "vif", "list");
    BAD("name='x'\n" KERNEL_REL "vif = [ 'mac=00:16:3e:00:00:01', "
        "'mac=00:16:3e:00:00:01' ]\n", "vif", "used twice");
    BAD("name='x'\n" KERNEL_REL "vif = [ '','','','','','','','','' ]\n", "vif", "at most");
}

/* ramdisk (relative to the config's directory, like kernel), maxvcpus, uuid, cpus. */
static void test_linux_keys(void)
{
    struct domcfg c;
    char err[1024] = "";
    char *warn = NULL;
    int r = read_cfg("name='l'\n" KERNEL_REL "vcpus = 2\nmaxvcpus = 4\n"
                     "ramdisk = '../guest/kernel'\n"
                     "uuid = '5F2E8A10-0c3b-4d2e-9a7f-1b2c3d4e5f60'\n"
                     "cpus = [ '0-1', '^1,all', '3' ]\n", &c, err, sizeof(err), &warn);
    REQUIRE(r == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK_MSG(strcmp(c.ramdisk, kernel_path) == 0, "ramdisk %s", c.ramdisk);
    CHECK_EQ(c.vcpus, 2);
    CHECK_EQ(c.maxvcpus, 4);
    CHECK_EQ(c.maxmem_mb, 0);
    CHECK(strcmp(c.uuid, "5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f60") == 0);
    CHECK_EQ(c.nr_cpus, 3);
    char text[64];
    domcfg_cpuset_format(&c.cpus[1], text, sizeof(text));
    CHECK(strcmp(text, "0-1023") == 0);
    domcfg_cpuset_format(&c.cpus[2], text, sizeof(text));
    CHECK(strcmp(text, "3") == 0);
    CHECK_MSG(warn && warn[0] == '\0', "unexpected warnings: %s", warn);
    free(warn);

    CHECK(read_cfg("name='l'\n" KERNEL_REL "cpus = '0-3,^1'\n", &c, err, sizeof(err),
                   NULL) == 0);
    CHECK_EQ(c.nr_cpus, 1);
    domcfg_cpuset_format(&c.cpus[0], text, sizeof(text));
    CHECK(strcmp(text, "0,2-3") == 0);
    CHECK_EQ(c.maxvcpus, 0);
    CHECK_EQ(domcfg_max_vcpus(&c), 1);
    CHECK(read_cfg("name='l'\n" KERNEL_REL "memory = 64\nmaxmem = 96\n", &c, err,
                   sizeof(err), NULL) == 0);
    CHECK_EQ(c.memory_mb, 64);
    CHECK_EQ(c.maxmem_mb, 96);
    CHECK(c.ramdisk[0] == '\0' && c.uuid[0] == '\0');
}

/* altp2m: Xen 4.17's xl.cfg key, the mode by name; through JSON and back. */
static void test_altp2m_key(void)
{
    struct domcfg c, back;
    char err[1024] = "";
    char *warn = NULL;
    CHECK(read_cfg("name='a'\n" KERNEL_REL "altp2m = 'limited'\n", &c, err, sizeof(err),
                   &warn) == 0);
    CHECK_EQ(c.altp2m, DOMCFG_ALTP2M_LIMITED);
    CHECK_MSG(warn && warn[0] == '\0', "unexpected warnings: %s", warn);
    free(warn);
    struct json_object *o = domcfg_to_json(&c);
    REQUIRE(o);
    CHECK(domcfg_from_json(o, &back, err, sizeof(err)) == 0);
    CHECK_EQ(back.altp2m, DOMCFG_ALTP2M_LIMITED);
    json_object_put(o);
    CHECK(read_cfg("name='a'\n" KERNEL_REL, &c, err, sizeof(err), NULL) == 0);
    CHECK_EQ(c.altp2m, DOMCFG_ALTP2M_DISABLED);
    o = domcfg_to_json(&c);
    REQUIRE(o);
    CHECK(!json_object_object_get_ex(o, "altp2m", NULL));   /* older peers read it */
    json_object_put(o);
    BAD("name='x'\n" KERNEL_REL "altp2m = 'on'\n", "test.cfg:3: altp2m:", "not disabled");
    BAD("name='x'\n" KERNEL_REL "altp2m = ['mixed']\n", "test.cfg:3: altp2m:", "list");
}

static void test_bad_linux_keys(void)
{
    BAD("name='x'\n" KERNEL_REL "memory = 64\nmaxmem = 32\n", "test.cfg:4: maxmem:",
        "out of range");
    BAD("name='x'\n" KERNEL_REL "maxmem = 'lots'\n", "test.cfg:3: maxmem:", NULL);
    BAD("name='x'\n" KERNEL_REL "ramdisk = 'nonexistent'\n", "test.cfg:3: ramdisk:",
        "No such file");
    BAD("name='x'\n" KERNEL_REL "ramdisk = ''\n", "test.cfg:3: ramdisk:", "empty");
    BAD("name='x'\n" KERNEL_REL "ramdisk = ['a']\n", "test.cfg:3: ramdisk:", "list");
    BAD("name='x'\n" KERNEL_REL "vcpus = 4\nmaxvcpus = 2\n", "test.cfg:4: maxvcpus:",
        "less than vcpus");
    BAD("name='x'\n" KERNEL_REL "maxvcpus = 129\n", "test.cfg:3: maxvcpus:", "out of range");
    BAD("name='x'\n" KERNEL_REL "uuid = 'not-a-uuid'\n", "test.cfg:3: uuid:", "not a UUID");
    BAD("name='x'\n" KERNEL_REL "cpus = '0-'\n", "test.cfg:3: cpus:", "not a CPU");
    BAD("name='x'\n" KERNEL_REL "cpus = '^0'\n", "test.cfg:3: cpus:", "leaves no CPU");
    BAD("name='x'\n" KERNEL_REL "cpus = 'nodes:0'\n", "test.cfg:3: cpus:", "NUMA");
    BAD("name='x'\n" KERNEL_REL "cpus = [ '0', '1' ]\n", "test.cfg:3: cpus:",
        "2 entries for 1 vCPUs");
    BAD("name='x'\n" KERNEL_REL "cpus = [ ]\n", "test.cfg:3: cpus:", NULL);
    BAD("name='x'\n" KERNEL_REL "vcpus = 2\ncpus = [ '0', 'x' ]\n", "test.cfg:4: cpus:",
        "entry 2");
}

/* bootloader = "pygrub": no host kernel needed; a kernel is a path in the guest's disk. */
static void test_bootloader(void)
{
    struct domcfg c;
    char err[1024] = "";
    char text[4 * PATH_MAX];
    snprintf(text, sizeof(text), "name = 'b'\nbootloader = 'pygrub'\ncmdline = 'x=1'\n"
             "disk = [ '%s,raw,xvda,rw' ]\n", kernel_path);
    REQUIRE(read_cfg(text, &c, err, sizeof(err), NULL) == 0 ||
            (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(!strcmp(c.bootloader, "pygrub"));
    CHECK(!strcmp(c.kernel, ""));
    CHECK(!strcmp(c.cmdline, "x=1"));
    snprintf(text, sizeof(text), "name = 'b'\nbootloader = '/usr/lib/xen-4.17/bin/pygrub'\n"
             "kernel = '/boot/vmlinuz-not-on-this-host'\ndisk = [ '%s,raw,xvda,rw' ]\n",
             kernel_path);
    REQUIRE(read_cfg(text, &c, err, sizeof(err), NULL) == 0 ||
            (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(!strcmp(c.bootloader, "pygrub"));
    CHECK(!strcmp(c.kernel, "/boot/vmlinuz-not-on-this-host"));
    snprintf(text, sizeof(text), "name = 'b'\nbootloader = 'grub2'\ndisk = [ '%s,raw,xvda,rw' ]\n",
             kernel_path);
    CHECK(read_cfg(text, &c, err, sizeof(err), NULL) < 0);
    CHECK_STR_CONTAINS(err, "test.cfg:2: bootloader:");
    CHECK_STR_CONTAINS(err, "only pygrub");
    CHECK(read_cfg("name = 'b'\nbootloader = 'pygrub'\n", &c, err, sizeof(err), NULL) < 0);
    CHECK_STR_CONTAINS(err, "bootloader:");
    CHECK_STR_CONTAINS(err, "needs a disk");
    snprintf(text, sizeof(text), "name = 'b'\nbootloader = 'pygrub'\nkernel = 'boot/vmlinuz'\n"
             "disk = [ '%s,raw,xvda,rw' ]\n", kernel_path);
    CHECK(read_cfg(text, &c, err, sizeof(err), NULL) < 0);
    CHECK_STR_CONTAINS(err, "kernel: must be an absolute path");
}

int main(void)
{
    setup();
    RUN_TEST(test_full);
    RUN_TEST(test_defaults_and_absolute_kernel);
    RUN_TEST(test_types);
    RUN_TEST(test_extra_root);
    RUN_TEST(test_warnings);
    RUN_TEST(test_syntax_errors);
    RUN_TEST(test_bad_values);
    RUN_TEST(test_missing);
    RUN_TEST(test_read_data);
    RUN_TEST(test_disks);
    RUN_TEST(test_vifs);
    RUN_TEST(test_linux_keys);
    RUN_TEST(test_altp2m_key);
    RUN_TEST(test_bad_linux_keys);
    RUN_TEST(test_bootloader);
    cleanup();
    HARNESS_EXIT();
}
