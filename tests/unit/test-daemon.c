/*
 * The daemon skeleton's I/O-free parts (util/daemon.h, util/clock.h): the common
 * options merged with a daemon's own, where the run directory comes from, which run
 * directories a daemon refuses, the monotonic clock.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "util/clock.h"
#include "util/daemon.h"
#include "xkvm/control.h"

HARNESS_MAIN_STATE("daemon");

static int usage_calls;
static FILE *usage_to;

static void usage(FILE *f)
{
    usage_calls++;
    usage_to = f;
}

struct own {
    const char *memory;
    int services;
    int calls;
};

static int own_option(int opt, const char *arg, void *ctx)
{
    struct own *o = ctx;
    o->calls++;
    switch (opt) {
    case 'm': o->memory = arg; return DAEMON_CONTINUE;
    case 'S': o->services = 0; return DAEMON_CONTINUE;
    case 'A': return 7;             /* an option that is a whole run (--lu-accepts) */
    default: return 2;
    }
}

static const struct option own_opts[] = {
    { "machine-memory", required_argument, NULL, 'm' },
    { "no-dom0-services", no_argument, NULL, 'S' },
    { "lu-accepts", required_argument, NULL, 'A' },
    { 0 },
};

/* Parse a NULL-ended argument list afresh. */
static int parse(struct daemon *dm, const struct daemon_cli *cli, const char **args)
{
    static char *argv[32];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    optind = 0;             /* glibc: start over */
    opterr = 0;             /* no getopt complaints in the test output */
    usage_calls = 0;
    usage_to = NULL;
    return daemon_parse(dm, cli, argc, argv);
}

static struct own own;
static const struct daemon_cli xkvmd_like = {
    .version = "9.9", .options = own_opts, .shortopts = "m:", .option = own_option,
    .ctx = &own, .usage = usage,
    .common = DAEMON_OPT_RUNDIR | DAEMON_OPT_FOREGROUND | DAEMON_OPT_LOG |
              DAEMON_OPT_VERBOSE | DAEMON_OPT_HELP | DAEMON_OPT_VERSION,
};
static const struct daemon_cli service_like = {
    .usage = usage, .common = DAEMON_OPTS_SERVICE,
};

static void test_common_and_own_options(void)
{
    struct daemon dm = DAEMON_INIT("xkvmd", "xkvmd.log");
    own = (struct own){ .services = 1 };
    const char *a[] = { "xkvmd", "--rundir", "/tmp/x", "-m", "2G", "--foreground",
                        "--log", "/tmp/l", "-v", "--no-dom0-services", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, a), DAEMON_CONTINUE);
    CHECK(dm.rundir && !strcmp(dm.rundir, "/tmp/x"));
    CHECK(dm.logpath && !strcmp(dm.logpath, "/tmp/l"));
    CHECK(dm.foreground && dm.verbose);
    CHECK(own.memory && !strcmp(own.memory, "2G"));
    CHECK_EQ(own.services, 0);
    CHECK_EQ(own.calls, 2);
    CHECK_EQ(usage_calls, 0);
    CHECK_EQ(dm.ready_fd, -1);
}

static void test_short_forms(void)
{
    struct daemon dm = DAEMON_INIT("xkvmd", "xkvmd.log");
    own = (struct own){ 0 };
    const char *a[] = { "xkvmd", "-r", "/d", "-f", "-l", "/l", "-m4G", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, a), DAEMON_CONTINUE);
    CHECK(!strcmp(dm.rundir, "/d") && dm.foreground && !strcmp(dm.logpath, "/l"));
    CHECK(own.memory && !strcmp(own.memory, "4G"));
}

static void test_help_version_and_errors(void)
{
    struct daemon dm = DAEMON_INIT("xkvmd", "xkvmd.log");
    const char *help[] = { "xkvmd", "--help", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, help), 0);
    CHECK_EQ(usage_calls, 1);
    CHECK(usage_to == stdout);
    const char *bad[] = { "xkvmd", "--bogus", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, bad), 2);
    CHECK(usage_to == stderr);
    const char *missing[] = { "xkvmd", "--rundir", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, missing), 2);
    const char *operand[] = { "xkvmd", "stray", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, operand), 2);
    CHECK(usage_to == stderr);
    /* An own option may end the run with its own status. */
    const char *whole[] = { "xkvmd", "--lu-accepts", "1.0", "--bogus", NULL };
    CHECK_EQ(parse(&dm, &xkvmd_like, whole), 7);
    CHECK_EQ(usage_calls, 0);
}

static void test_service_takes_only_its_options(void)
{
    struct daemon dm = DAEMON_INIT("xkvm-consoled", "xkvm-consoled.log");
    const char *log[] = { "xkvm-consoled", "--log", "/l", NULL };
    CHECK_EQ(parse(&dm, &service_like, log), 2);
    const char *mem[] = { "xkvm-consoled", "-m", "1G", NULL };
    CHECK_EQ(parse(&dm, &service_like, mem), 2);
    const char *ver[] = { "xkvm-consoled", "--version", NULL };
    CHECK_EQ(parse(&dm, &service_like, ver), 2);
    const char *ok[] = { "xkvm-consoled", "--rundir", "/r", "-v", NULL };
    CHECK_EQ(parse(&dm, &service_like, ok), DAEMON_CONTINUE);
    CHECK(!dm.foreground && dm.verbose && !strcmp(dm.rundir, "/r"));
}

static void test_operands(void)
{
    struct daemon_cli cli = service_like;
    cli.common |= DAEMON_OPT_OPERANDS;
    struct daemon dm = DAEMON_INIT("xkvm-xenstored", "xenstored/xenstored.log");
    const char *a[] = { "xkvm-xenstored", "--rundir", "/r", "export", "3", "/f", NULL };
    CHECK_EQ(parse(&dm, &cli, a), DAEMON_CONTINUE);
    CHECK_EQ(dm.operand, 3);
    const char *none[] = { "xkvm-xenstored", "-f", NULL };
    CHECK_EQ(parse(&dm, &cli, none), DAEMON_CONTINUE);
    CHECK_EQ(dm.operand, 2);
}

static void test_rundir_choice(void)
{
    CHECK(!strcmp(daemon_rundir_choose("/opt", "/env"), "/opt"));
    CHECK(!strcmp(daemon_rundir_choose(NULL, "/env"), "/env"));
    CHECK(!strcmp(daemon_rundir_choose(NULL, NULL), XKVM_RUNDIR_DEFAULT));
    CHECK(!strcmp(daemon_rundir_choose(NULL, ""), XKVM_RUNDIR_DEFAULT));
    /* An explicit empty --rundir is the default, not the environment's. */
    CHECK(!strcmp(daemon_rundir_choose("", "/env"), XKVM_RUNDIR_DEFAULT));

    struct daemon dm = DAEMON_INIT("xkvm-blkback", "xkvm-blkback.log");
    setenv(XKVM_RUNDIR_ENV, "/from-env", 1);
    const char *a[] = { "xkvm-blkback", NULL };
    CHECK_EQ(parse(&dm, &service_like, a), DAEMON_CONTINUE);
    CHECK(!strcmp(dm.rundir, "/from-env"));
    const char *b[] = { "xkvm-blkback", "--rundir", "/given", NULL };
    CHECK_EQ(parse(&dm, &service_like, b), DAEMON_CONTINUE);
    CHECK(!strcmp(dm.rundir, "/given"));
    unsetenv(XKVM_RUNDIR_ENV);
}

static struct stat st_of(mode_t mode, uid_t uid)
{
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_mode = mode;
    st.st_uid = uid;
    return st;
}

static void test_rundir_refusal(void)
{
    struct stat st = st_of(S_IFDIR | 0700, 0);
    CHECK(daemon_rundir_refusal(&st, 0) == NULL);
    st = st_of(S_IFDIR | 0755, 0);          /* tightened, not refused */
    CHECK(daemon_rundir_refusal(&st, 0) == NULL);
    st = st_of(S_IFDIR | 0770, 0);
    CHECK(daemon_rundir_refusal(&st, 0) == NULL);
    st = st_of(S_IFDIR | 0777, 0);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "world-writable");
    st = st_of(S_IFDIR | 01777, 0);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "sticky");
    st = st_of(S_IFDIR | 01700, 0);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "sticky");
    st = st_of(S_IFDIR | 0700, 1000);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "another user's");
    CHECK(daemon_rundir_refusal(&st, 1000) == NULL);
    st = st_of(S_IFREG | 0600, 0);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "not a directory");
    st = st_of(S_IFLNK | 0777, 0);
    CHECK_STR_CONTAINS(daemon_rundir_refusal(&st, 0), "not a directory");
}

static void test_monotonic_clock(void)
{
    uint64_t a = mono_ns(), ms = mono_ms(), b = mono_ns();
    CHECK(a > 0 && b >= a);
    CHECK(ms >= a / 1000000u && ms <= b / 1000000u);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t c = mono_ns();
    CHECK(c >= (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

int main(void)
{
    RUN_TEST(test_common_and_own_options);
    RUN_TEST(test_short_forms);
    RUN_TEST(test_help_version_and_errors);
    RUN_TEST(test_service_takes_only_its_options);
    RUN_TEST(test_operands);
    RUN_TEST(test_rundir_choice);
    RUN_TEST(test_rundir_refusal);
    RUN_TEST(test_monotonic_clock);
    HARNESS_EXIT();
}
