/*
 * pygrub's simple0 output as xkvmd reads it (util/bootloader.h): what pygrub writes
 * is taken, anything else (paths outside its directory, links out of it, duplicates,
 * control characters, no terminator, junk after the end) is refused.
 */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "util/bootloader.h"

HARNESS_MAIN_STATE("bootloader");

#define DIR "/run/xkvm/bootloader/pygrub.Ab12_z"

static int parse(const char *buf, size_t len, struct bootloader_result *r, char *err,
                 size_t errlen)
{
    memset(r, 0x5a, sizeof(*r));
    return bootloader_parse_simple0(buf, len, DIR, r, err, errlen);
}
/* A static array of the output: its implicit last NUL is the empty entry that ends it. */
#define PARSE(arr, r, err) parse(arr, sizeof(arr), r, err, sizeof(err))

static void test_kernel_args(void)
{
    struct bootloader_result r;
    char err[256] = "";
    static const char out[] = "kernel " DIR "/boot_kernel.u4by9lhp\0args test=hello foo=bar\0";
    REQUIRE(PARSE(out, &r, err) == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(!strcmp(r.kernel, DIR "/boot_kernel.u4by9lhp"));
    CHECK(!strcmp(r.ramdisk, ""));
    CHECK(!strcmp(r.cmdline, "test=hello foo=bar"));
}

static void test_ramdisk_no_args(void)
{
    struct bootloader_result r;
    char err[256] = "";
    static const char out[] = "kernel " DIR "/boot_kernel.a\0ramdisk " DIR "/boot_ramdisk.B_9\0";
    REQUIRE(PARSE(out, &r, err) == 0 || (harness_fail(__FILE__, __LINE__, "%s", err), 0));
    CHECK(!strcmp(r.ramdisk, DIR "/boot_ramdisk.B_9"));
    CHECK(!strcmp(r.cmdline, ""));
    static const char empty_args[] = "kernel " DIR "/boot_kernel.a\0args \0";
    CHECK(PARSE(empty_args, &r, err) == 0 && !strcmp(r.cmdline, ""));
}

static void refuse(int line, const char *buf, size_t len, const char *want)
{
    struct bootloader_result r;
    char err[256] = "";
    int rc = parse(buf, len, &r, err, sizeof(err));
    if (rc != -EINVAL)
        harness_fail(__FILE__, line, "rc %d, want -EINVAL", rc);
    else if (!strstr(err, want))
        harness_fail(__FILE__, line, "\"%s\" does not contain \"%s\"", err, want);
}
#define REFUSE(lit, want) refuse(__LINE__, lit, sizeof(lit) - 1, want)

static void test_refusals(void)
{
    REFUSE("", "not terminated");
    REFUSE("\0", "no kernel");
    REFUSE("kernel " DIR "/boot_kernel.a\0", "not terminated");
    REFUSE("kernel " DIR "/boot_kernel.a", "not terminated");
    REFUSE("kernel " DIR "/boot_kernel.a\0\0x", "data after the end");
    REFUSE("args x\0\0", "no kernel");
    REFUSE("kernel /etc/shadow\0\0", "kernel is not a file pygrub extracted");
    REFUSE("kernel " DIR "/../boot_kernel.a\0\0", "kernel is not");
    REFUSE("kernel " DIR "/boot_kernel.a/../../x\0\0", "kernel is not");
    REFUSE("kernel " DIR "/boot_kernel.\0\0", "kernel is not");
    REFUSE("kernel " DIR "/boot_ramdisk.a\0\0", "kernel is not");
    REFUSE("kernel " DIR "x/boot_kernel.a\0\0", "kernel is not");
    REFUSE("kernel " DIR "/boot_kernel.a\0ramdisk /boot/initrd\0\0", "ramdisk is not");
    REFUSE("kernel " DIR "/boot_kernel.a\0kernel " DIR "/boot_kernel.b\0\0", "two kernel");
    REFUSE("kernel " DIR "/boot_kernel.a\0args a\0args b\0\0", "two args");
    REFUSE("kernel " DIR "/boot_kernel.a\0args a\nb\0\0", "control character");
    REFUSE("kernel " DIR "/boot_kernel.a\0args a\x7f\0\0", "control character");
    REFUSE("kernel " DIR "/boot_kernel.a\0root /dev/xvda\0\0", "unknown entry");
    REFUSE("linux (kernel '/x')", "not terminated");
    static char big[DOMCFG_CMDLINE_MAX + 64];
    size_t n = (size_t)snprintf(big, sizeof(big), "kernel " DIR "/boot_kernel.a");
    big[n++] = '\0';
    memcpy(big + n, "args ", 5);
    n += 5;
    memset(big + n, 'a', DOMCFG_CMDLINE_MAX);
    n += DOMCFG_CMDLINE_MAX;
    big[n++] = '\0';
    big[n++] = '\0';
    refuse(__LINE__, big, n, "args longer than");
}

int main(void)
{
    RUN_TEST(test_kernel_args);
    RUN_TEST(test_ramdisk_no_args);
    RUN_TEST(test_refusals);
    HARNESS_EXIT();
}
