/*
 * Running Xen's pygrub on a guest's disk (util/bootloader.h; docs/config.md, "Booting
 * from the guest's disk"; docs/security.md).
 */
#include "util/bootloader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/text.h"

/* Kept of pygrub's stderr: its last words (a Python traceback ends with the error). */
#define STDERR_KEEP     1024
/* pygrub's own cap on what it extracts (its LIMIT_FSIZE), as a limit we impose too. */
#define FILE_SIZE_MAX   (128ull << 20)
#define ADDRESS_SPACE_MAX (1ull << 30)

static uid_t run_uid;
static gid_t run_gid;
static char run_user[64];

int bootloader_set_user(const char *user, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(user, &end, 10);
    struct passwd *pw = NULL;
    if (*user && !*end && !errno) {
        pw = getpwuid((uid_t)n);
        run_uid = (uid_t)n;
        run_gid = pw ? pw->pw_gid : (gid_t)n;
    } else if ((pw = getpwnam(user))) {
        run_uid = pw->pw_uid;
        run_gid = pw->pw_gid;
    } else {
        return text_err(err, errlen, -EINVAL, "no user \"%.40s\"", user);
    }
    if (run_uid == 0)
        return text_err(err, errlen, -EINVAL, "the bootloader must not run as root");
    snprintf(run_user, sizeof(run_user), "%.40s", user);
    return 0;
}

/* "DIR/PREFIX" followed by mkstemp's suffix (letters, digits, '_'), nothing else. */
static bool made_by_pygrub(const char *path, size_t len, const char *dir, const char *prefix)
{
    size_t dl = strlen(dir), pl = strlen(prefix);
    if (len <= dl + 1 + pl || len >= PATH_MAX || memcmp(path, dir, dl) || path[dl] != '/' ||
        memcmp(path + dl + 1, prefix, pl))
        return false;
    for (size_t i = dl + 1 + pl; i < len; i++) {
        char c = path[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static int take_path(char *dst, const char *v, size_t vlen, const char *dir,
                     const char *prefix, const char *what, char *err, size_t errlen)
{
    if (dst[0])
        return text_err(err, errlen, -EINVAL, "bootloader output: two %s entries", what);
    if (!made_by_pygrub(v, vlen, dir, prefix))
        return text_err(err, errlen, -EINVAL, "bootloader output: %s is not a file pygrub "
                    "extracted into its directory", what);
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return 0;
}

int bootloader_parse_simple0(const char *buf, size_t len, const char *dir,
                             struct bootloader_result *r, char *err, size_t errlen)
{
    r->kernel[0] = r->ramdisk[0] = r->cmdline[0] = '\0';
    bool have_args = false;
    size_t at = 0;
    for (;;) {
        const char *e = at < len ? memchr(buf + at, '\0', len - at) : NULL;
        if (!e)
            return text_err(err, errlen, -EINVAL, "bootloader output: not terminated "
                        "(simple0: entries end with NUL, the list with an empty one)");
        size_t elen = (size_t)(e - (buf + at));
        const char *v = buf + at;
        at += elen + 1;
        if (elen == 0)
            break;
        int rc = 0;
        if (elen > 7 && !memcmp(v, "kernel ", 7)) {
            rc = take_path(r->kernel, v + 7, elen - 7, dir, "boot_kernel.", "kernel", err,
                           errlen);
        } else if (elen > 8 && !memcmp(v, "ramdisk ", 8)) {
            rc = take_path(r->ramdisk, v + 8, elen - 8, dir, "boot_ramdisk.", "ramdisk",
                           err, errlen);
        } else if (elen >= 5 && !memcmp(v, "args ", 5)) {
            if (have_args)
                return text_err(err, errlen, -EINVAL, "bootloader output: two args entries");
            if (elen - 5 >= DOMCFG_CMDLINE_MAX)
                return text_err(err, errlen, -EINVAL, "bootloader output: args longer than %d "
                            "bytes", DOMCFG_CMDLINE_MAX - 1);
            for (size_t i = 5; i < elen; i++)
                if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                    return text_err(err, errlen, -EINVAL, "bootloader output: args hold a "
                                "control character");
            memcpy(r->cmdline, v + 5, elen - 5);
            r->cmdline[elen - 5] = '\0';
            have_args = true;
        } else {
            return text_err(err, errlen, -EINVAL, "bootloader output: unknown entry");
        }
        if (rc)
            return rc;
    }
    if (at != len)
        return text_err(err, errlen, -EINVAL, "bootloader output: data after the end");
    if (!r->kernel[0])
        return text_err(err, errlen, -EINVAL, "bootloader output: no kernel");
    return 0;
}

void bootloader_cleanup(struct bootloader_result *r)
{
    if (!r->dir[0])
        return;
    DIR *dp = opendir(r->dir);
    if (dp) {
        /* pygrub's files, and the chroot directory of a pygrub that was killed. */
        for (struct dirent *e; (e = readdir(dp));)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                unlinkat(dirfd(dp), e->d_name, 0) < 0 && errno == EISDIR)
                unlinkat(dirfd(dp), e->d_name, AT_REMOVEDIR);
        closedir(dp);
    }
    rmdir(r->dir);
    r->dir[0] = r->kernel[0] = r->ramdisk[0] = '\0';
}

/* Can uid/gid read the file by its mode? (pygrub opens it after dropping root.) */
static bool readable_by(const struct stat *st, uid_t uid, gid_t gid)
{
    if (st->st_uid == uid)
        return st->st_mode & S_IRUSR;
    if (st->st_gid == gid)
        return st->st_mode & S_IRGRP;
    return st->st_mode & S_IROTH;
}

/* The child: no descriptor of ours, no signal mask, limits, then pygrub. */
static __attribute__((noreturn)) void exec_pygrub(char *const argv[], int err_fd)
{
    static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
                                  NULL };
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    closefrom(3);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    struct rlimit core = { 0, 0 }, cpu = { BOOTLOADER_TIMEOUT_S, BOOTLOADER_TIMEOUT_S },
                  fsize = { FILE_SIZE_MAX, FILE_SIZE_MAX },
                  as = { ADDRESS_SPACE_MAX, ADDRESS_SPACE_MAX };
    setrlimit(RLIMIT_CORE, &core);
    setrlimit(RLIMIT_CPU, &cpu);
    setrlimit(RLIMIT_FSIZE, &fsize);
    setrlimit(RLIMIT_AS, &as);
    execve(argv[0], argv, envp);
    _exit(127);
}

/* Keep the last tailsz - 1 bytes of what comes through. */
static void keep_tail(char *tail, size_t tailsz, size_t *kept, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (*kept == tailsz - 1) {
            memmove(tail, tail + 1, *kept - 1);
            (*kept)--;
        }
        tail[(*kept)++] = buf[i];
    }
    tail[*kept] = '\0';
}

/*
 * Wait for the child, keeping the tail of its stderr; at the deadline kill its
 * process group (pygrub --runas forks). Returns its wait status, or -ETIMEDOUT.
 */
static int wait_pygrub(pid_t pid, int err_fd, char *tail, size_t tailsz)
{
    uint64_t deadline = mono_ms() + BOOTLOADER_TIMEOUT_S * 1000ull;
    size_t kept = 0;
    tail[0] = '\0';
    bool open = true;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            /* Its last words may still be in the pipe. */
            struct pollfd p = { .fd = err_fd, .events = POLLIN };
            char buf[512];
            ssize_t n;
            while (open && poll(&p, 1, 0) > 0 && (n = read(err_fd, buf, sizeof(buf))) > 0)
                keep_tail(tail, tailsz, &kept, buf, (size_t)n);
            return status;
        }
        uint64_t now = mono_ms();
        if (now >= deadline || (w < 0 && errno != EINTR))
            break;
        /* Once stderr is closed, look again every 10 ms until it exits. */
        struct pollfd p = { .fd = open ? err_fd : -1, .events = POLLIN };
        uint64_t wait = open ? deadline - now : 10;
        if (poll(&p, 1, (int)(wait < 10 ? wait : open ? 50 : 10)) <= 0 || !open)
            continue;
        char buf[512];
        ssize_t n = read(err_fd, buf, sizeof(buf));
        if (n > 0)
            keep_tail(tail, tailsz, &kept, buf, (size_t)n);
        else if (n == 0 || errno != EINTR)
            open = false;
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return -ETIMEDOUT;
}

/* The last non-empty line of pygrub's stderr, printable only, for the error message. */
static const char *last_line(char *tail)
{
    size_t n = strlen(tail);
    while (n && (tail[n - 1] == '\n' || tail[n - 1] == ' '))
        tail[--n] = '\0';
    char *l = strrchr(tail, '\n');
    l = l ? l + 1 : tail;
    for (char *p = l; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    return *l ? l : "no message";
}

/* Read the output file: at most BOOTLOADER_OUTPUT_MAX bytes, else an error. */
static ssize_t read_output(const char *path, char *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, BOOTLOADER_OUTPUT_MAX + 1 - got)) > 0 &&
           (got += (size_t)n) <= BOOTLOADER_OUTPUT_MAX)
        ;
    close(fd);
    return n < 0 ? -EIO : got > BOOTLOADER_OUTPUT_MAX ? -E2BIG : (ssize_t)got;
}

/* An extracted file: a regular file of ours (not a link), no larger than the cap. */
static int check_extracted(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return text_err(err, errlen, -errno, "bootloader: the extracted %s: %s", what,
                    strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || (uint64_t)st.st_size > FILE_SIZE_MAX)
        return text_err(err, errlen, -EINVAL, "bootloader: the extracted %s is not a plain "
                    "file of at most %llu bytes", what, (unsigned long long)FILE_SIZE_MAX);
    return 0;
}

/* The private directory WORKDIR/bootloader/pygrub.XXXXXX and its empty output file. */
static int make_dir(const char *workdir, struct bootloader_result *r, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s/bootloader", workdir);
    if (mkdir(base, 0700) < 0 && errno != EEXIST)
        return text_err(err, errlen, -errno, "bootloader: %s: %s", base, strerror(errno));
    int n = snprintf(r->dir, sizeof(r->dir), "%s/pygrub.XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof(r->dir) - 64 || !mkdtemp(r->dir)) {
        r->dir[0] = '\0';
        return text_err(err, errlen, -EIO, "bootloader: cannot make a directory in %s", base);
    }
    snprintf(out, outlen, "%s/output", r->dir);
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return text_err(err, errlen, -errno, "bootloader: %s: %s", out, strerror(errno));
    close(fd);
    return 0;
}

/* Root: pygrub's --runas user must be able to read the disk, as with libxl. */
static int check_disk(const char *disk, bool as_root, char *err, size_t errlen)
{
    struct stat st;
    if (stat(disk, &st) < 0)
        return text_err(err, errlen, -errno, "bootloader: disk %s: %s", disk, strerror(errno));
    if (as_root && !readable_by(&st, run_uid, run_gid))
        return text_err(err, errlen, -EACCES, "bootloader: pygrub runs as user %s (uid %u, "
                    "xkvmd --bootloader-user) and cannot read %s (mode %03o, owner "
                    "%u:%u); give that user read access to the image",
                    run_user, (unsigned)run_uid, disk, (unsigned)(st.st_mode & 0777),
                    (unsigned)st.st_uid, (unsigned)st.st_gid);
    return 0;
}

int bootloader_run(const struct domcfg *cfg, const char *workdir,
                   struct bootloader_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (!cfg->nr_disks)
        return text_err(err, errlen, -EINVAL, "bootloader: the config has no disk");
    const char *disk = cfg->disks[0].path;
    bool as_root = geteuid() == 0;
    int rc;
    if (as_root && !run_uid && (rc = bootloader_set_user(BOOTLOADER_USER_DEFAULT, err, errlen)))
        return rc;
    if (access(BOOTLOADER_PYGRUB_PATH, X_OK) < 0)
        return text_err(err, errlen, -ENOENT, "bootloader: no %s (Debian: xen-utils-4.17)",
                    BOOTLOADER_PYGRUB_PATH);
    if ((rc = check_disk(disk, as_root, err, errlen)))
        return rc;
    char *buf = NULL;
    char out[PATH_MAX + 16], a_out[PATH_MAX + 16], a_dir[PATH_MAX + 32], a_kernel[PATH_MAX + 16],
         a_ramdisk[PATH_MAX + 16],
         a_args[DOMCFG_CMDLINE_MAX + 8], a_runas[32];
    if ((rc = make_dir(workdir, r, out, sizeof(out), err, errlen)))
        goto fail;
    char *argv[12];
    int n = 0;
    argv[n++] = BOOTLOADER_PYGRUB_PATH;
    if (as_root) {
        snprintf(a_runas, sizeof(a_runas), "--runas=%u", (unsigned)run_uid);
        argv[n++] = a_runas;
    }
    argv[n++] = "-q";
    if (cfg->kernel[0]) {
        snprintf(a_kernel, sizeof(a_kernel), "--kernel=%s", cfg->kernel);
        argv[n++] = a_kernel;
    }
    if (cfg->ramdisk[0]) {
        snprintf(a_ramdisk, sizeof(a_ramdisk), "--ramdisk=%s", cfg->ramdisk);
        argv[n++] = a_ramdisk;
    }
    if (cfg->cmdline[0]) {
        snprintf(a_args, sizeof(a_args), "--args=%s", cfg->cmdline);
        argv[n++] = a_args;
    }
    snprintf(a_out, sizeof(a_out), "--output=%s", out);
    argv[n++] = a_out;
    argv[n++] = "--output-format=simple0";
    snprintf(a_dir, sizeof(a_dir), "--output-directory=%s", r->dir);
    argv[n++] = a_dir;
    argv[n++] = (char *)disk;
    argv[n] = NULL;

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        rc = text_err(err, errlen, -errno, "bootloader: pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid == 0)
        exec_pygrub(argv, pipefd[1]);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        rc = text_err(err, errlen, -errno, "bootloader: fork: %s", strerror(errno));
        goto fail;
    }
    char tail[STDERR_KEEP];
    int status = wait_pygrub(pid, pipefd[0], tail, sizeof(tail));
    close(pipefd[0]);
    if (status == -ETIMEDOUT) {
        rc = text_err(err, errlen, -ETIMEDOUT, "bootloader: pygrub did not finish in %d s on %s",
                  BOOTLOADER_TIMEOUT_S, disk);
        goto fail;
    }
    /* pygrub --runas exits 0 even when it failed: its output says whether it did. */
    buf = malloc(BOOTLOADER_OUTPUT_MAX + 1);
    ssize_t got = buf ? read_output(out, buf) : -ENOMEM;
    if (got == 0) {
        rc = text_err(err, errlen, -ENOENT, "bootloader: pygrub found no kernel on %s%s: %s",
                  disk, WIFSIGNALED(status) ? " (it was killed)" : "", last_line(tail));
        goto fail;
    }
    if (got < 0) {
        rc = text_err(err, errlen, (int)got, "bootloader: pygrub's output: %s",
                  got == -E2BIG ? "too long" : strerror((int)-got));
        goto fail;
    }
    if ((rc = bootloader_parse_simple0(buf, (size_t)got, r->dir, r, err, errlen)) ||
        (rc = check_extracted(r->kernel, "kernel", err, errlen)) ||
        (r->ramdisk[0] && (rc = check_extracted(r->ramdisk, "ramdisk", err, errlen))))
        goto fail;
    unlink(out);
    free(buf);
    return 0;
fail:
    free(buf);
    bootloader_cleanup(r);
    return rc;
}
