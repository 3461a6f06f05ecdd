/*
 * Log rotation (util/logrot.h): size and generation parsing, where a write is cut
 * to rotate, the rename chain, and two processes appending to one rotating file with
 * every line kept exactly once and whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util/logrot.h"

HARNESS_MAIN_STATE("logrot");

static void test_parse_size(void)
{
    uint64_t v = 1;
    CHECK(logrot_parse_size("0", &v) == 0 && v == 0);
    CHECK(logrot_parse_size("4096", &v) == 0 && v == 4096);
    CHECK(logrot_parse_size("64K", &v) == 0 && v == 65536);
    CHECK(logrot_parse_size("64k", &v) == 0 && v == 65536);
    CHECK(logrot_parse_size("16M", &v) == 0 && v == (16ull << 20));
    CHECK(logrot_parse_size("16MiB", &v) == 0 && v == (16ull << 20));
    CHECK(logrot_parse_size("1G", &v) == 0 && v == (1ull << 30));
    CHECK(logrot_parse_size("2KB", &v) == 0 && v == 2048);
    CHECK_EQ(logrot_parse_size("", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size(NULL, &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("-1", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("12Q", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("M", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("1 M", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("99999999999999999999", &v), -EINVAL);
    CHECK_EQ(logrot_parse_size("17179869184G", &v), -EINVAL);    /* 2^64 bytes */
}

static void test_parse_keep(void)
{
    unsigned k = 7;
    CHECK(logrot_parse_keep("0", &k) == 0 && k == 0);
    CHECK(logrot_parse_keep("3", &k) == 0 && k == 3);
    CHECK(logrot_parse_keep("99", &k) == 0 && k == 99);
    CHECK_EQ(logrot_parse_keep("100", &k), -EINVAL);
    CHECK_EQ(logrot_parse_keep("-1", &k), -EINVAL);
    CHECK_EQ(logrot_parse_keep("3x", &k), -EINVAL);
    CHECK_EQ(logrot_parse_keep(NULL, &k), -EINVAL);
}

static void test_env(void)
{
    struct logrot_limits l;
    unsetenv(LOGROT_ENV_MAX);
    unsetenv(LOGROT_ENV_KEEP);
    logrot_limits_from_env(&l);
    CHECK(l.max == LOGROT_DEFAULT_MAX && l.keep == LOGROT_DEFAULT_KEEP);
    setenv(LOGROT_ENV_MAX, "64K", 1);
    setenv(LOGROT_ENV_KEEP, "5", 1);
    logrot_limits_from_env(&l);
    CHECK(l.max == 65536 && l.keep == 5);
    setenv(LOGROT_ENV_MAX, "junk", 1);      /* a bad value: the default */
    logrot_limits_from_env(&l);
    CHECK(l.max == LOGROT_DEFAULT_MAX && l.keep == 5);
    unsetenv(LOGROT_ENV_MAX);
    unsetenv(LOGROT_ENV_KEEP);
}

static void test_cut(void)
{
    bool rot;
    const char *b = "aaaa\nbbbb\ncccc\n";
    /* Under the cap after the write: all of it, no rotation. */
    CHECK_EQ(logrot_cut(b, 15, 0, 100, &rot), 15);
    CHECK(!rot);
    /* No cap: never. */
    CHECK_EQ(logrot_cut(b, 15, 1000, 0, &rot), 15);
    CHECK(!rot);
    /* The cap falls in "bbbb": rotate after its newline. */
    CHECK_EQ(logrot_cut(b, 15, 0, 7, &rot), 10);
    CHECK(rot);
    /* The cap is the newline itself: rotate right after it. */
    CHECK_EQ(logrot_cut(b, 15, 0, 5, &rot), 5);
    CHECK(rot);
    /* Already over: the first newline. */
    CHECK_EQ(logrot_cut(b, 15, 200, 100, &rot), 5);
    CHECK(rot);
    /* No newline reaching the cap: write on, rotate later. */
    CHECK_EQ(logrot_cut("xxxxxx", 6, 98, 100, &rot), 6);
    CHECK(!rot);
    CHECK_EQ(logrot_cut("ab\ncd", 5, 96, 100, &rot), 5);    /* the \n is before the cap */
    CHECK(!rot);
}

static char dir[64];

static void put(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static int get(const char *name, char *buf, size_t len)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

static void test_rotate_chain(void)
{
    char p[128], b[64];
    snprintf(p, sizeof(p), "%s/x.log", dir);
    put("x.log", "0");
    put("x.log.1", "1");
    put("x.log.2", "2");
    CHECK_EQ(logrot_rotate(p, 2), 0);
    CHECK(get("x.log", b, sizeof(b)) < 0);
    CHECK(get("x.log.1", b, sizeof(b)) == 0 && !strcmp(b, "0"));
    CHECK(get("x.log.2", b, sizeof(b)) == 0 && !strcmp(b, "1"));   /* "2" dropped */
    CHECK(get("x.log.3", b, sizeof(b)) < 0);
    put("x.log", "n");
    CHECK_EQ(logrot_rotate(p, 0), 0);                                 /* keep 0: removed */
    CHECK(get("x.log", b, sizeof(b)) < 0);
    CHECK(get("x.log.1", b, sizeof(b)) == 0 && !strcmp(b, "0"));
    for (int i = 1; i <= 2; i++) {
        snprintf(p, sizeof(p), "%s/x.log.%d", dir, i);
        unlink(p);
    }
}

#define WRITERS 2
#define LINES 3000

/* Two processes, each with its own descriptor, append numbered lines. */
static void writer(int id, const char *path, const struct logrot_limits *l)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    char line[64];
    for (int k = 0; k < LINES; k++) {
        int n = snprintf(line, sizeof(line), "writer %d line %d\n", id, k);
        if (logrot_write(&fd, path, l, line, (size_t)n))
            _exit(1);
    }
    _exit(0);
}

static void test_two_writers(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/c.log", dir);
    /* ~40 KB in all, 2 KB files: ~20 rotations; 60 generations keep everything. */
    struct logrot_limits l = { .max = 2048, .keep = 60 };
    pid_t pids[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        if ((pids[i] = fork()) == 0)
            writer(i, path, &l);
    for (int i = 0; i < WRITERS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    static unsigned char seen[WRITERS][LINES];
    memset(seen, 0, sizeof(seen));
    int files = 0, bad = 0, over = 0;
    for (int g = l.keep; g >= 0; g--) {
        char p[160];
        if (g)
            snprintf(p, sizeof(p), "%s.%d", path, g);
        else
            snprintf(p, sizeof(p), "%s", path);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        files++;
        struct stat st;
        fstat(fileno(f), &st);
        if (st.st_size > (off_t)l.max + 64)   /* at most the line that crossed the cap */
            over++;
        char buf[128];
        while (fgets(buf, sizeof(buf), f)) {
            int id, k;
            if (sscanf(buf, "writer %d line %d\n", &id, &k) != 2 || id < 0 ||
                id >= WRITERS || k < 0 || k >= LINES || !strchr(buf, '\n'))
                bad++;
            else
                seen[id][k]++;
        }
        fclose(f);
        unlink(p);
    }
    int missing = 0, twice = 0;
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < LINES; k++) {
            missing += seen[i][k] == 0;
            twice += seen[i][k] > 1;
        }
    CHECK_MSG(files > 10 && files < (int)l.keep, "%d files", files);
    CHECK_EQ(bad, 0);
    CHECK_EQ(missing, 0);
    CHECK_EQ(twice, 0);
    CHECK_EQ(over, 0);
}

static void test_generations_capped(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/d.log", dir);
    struct logrot_limits l = { .max = 100, .keep = 3 };
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    char line[64];
    for (int k = 0; k < 200; k++) {
        int n = snprintf(line, sizeof(line), "line %03d\n", k);
        CHECK_EQ(logrot_write(&fd, path, &l, line, (size_t)n), 0);
    }
    close(fd);
    struct stat st;
    char p[160];
    int present = 0;
    for (int g = 0; g <= 5; g++) {
        snprintf(p, sizeof(p), g ? "%s.%d" : "%s", path, g);
        if (stat(p, &st) == 0) {
            present |= 1 << g;
            unlink(p);
        }
    }
    CHECK_EQ(present, 0xf);     /* d.log, .1, .2, .3; no .4 */
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/xkvm-logrot-unit.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_parse_size);
    RUN_TEST(test_parse_keep);
    RUN_TEST(test_env);
    RUN_TEST(test_cut);
    RUN_TEST(test_rotate_chain);
    RUN_TEST(test_two_writers);
    RUN_TEST(test_generations_capped);
    rmdir(dir);
    HARNESS_EXIT();
}
