/* The daemon skeleton (util/daemon.h). */
#include "util/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/logrot.h"
#include "xkvm/control.h"

/* ---- options ------------------------------------------------------------------------ */

static const struct {
    unsigned bit;
    struct option opt;
    const char *letters;
} common_opts[] = {
    { DAEMON_OPT_RUNDIR, { "rundir", required_argument, NULL, 'r' }, "r:" },
    { DAEMON_OPT_FOREGROUND, { "foreground", no_argument, NULL, 'f' }, "f" },
    { DAEMON_OPT_LOG, { "log", required_argument, NULL, 'l' }, "l:" },
    { DAEMON_OPT_VERBOSE, { "verbose", no_argument, NULL, 'v' }, "v" },
    { DAEMON_OPT_HELP, { "help", no_argument, NULL, 'h' }, "h" },
    { DAEMON_OPT_VERSION, { "version", no_argument, NULL, DAEMON_OPTVAL_VERSION }, "" },
};
#define N_COMMON (sizeof(common_opts) / sizeof(common_opts[0]))
#define MAX_OPTS 64

const char *daemon_rundir_choose(const char *opt, const char *env)
{
    const char *dir = opt ? opt : env;
    return dir && *dir ? dir : XKVM_RUNDIR_DEFAULT;
}

/* The daemon's options first (as getopt's own order would be), then the common ones. */
static void merge_options(const struct daemon_cli *cli, struct option *longs,
                          char *shorts, size_t shortlen)
{
    size_t n = 0;
    snprintf(shorts, shortlen, "%s", cli->shortopts ? cli->shortopts : "");
    for (const struct option *o = cli->options; o && o->name; o++)
        if (n < MAX_OPTS - N_COMMON - 1)
            longs[n++] = *o;
    for (size_t i = 0; i < N_COMMON; i++) {
        if (!(cli->common & common_opts[i].bit))
            continue;
        longs[n++] = common_opts[i].opt;
        size_t l = strlen(shorts);
        snprintf(shorts + l, shortlen - l, "%s", common_opts[i].letters);
    }
    longs[n] = (struct option){ 0 };
}

int daemon_parse(struct daemon *dm, const struct daemon_cli *cli, int argc, char **argv)
{
    struct option longs[MAX_OPTS];
    char shorts[128];
    merge_options(cli, longs, shorts, sizeof(shorts));
    const char *rundir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        switch (c) {
        case 'r': rundir = optarg; break;
        case 'f': dm->foreground = true; break;
        case 'l': dm->logpath = optarg; break;
        case 'v': dm->verbose = true; break;
        case 'h': cli->usage(stdout); return 0;
        case DAEMON_OPTVAL_VERSION:
            printf("%s %s\n", dm->name, cli->version ? cli->version : "");
            return 0;
        case '?':
        case ':':
            cli->usage(stderr);
            return 2;
        default: {
            int rc = cli->option ? cli->option(c, optarg, cli->ctx) : 2;
            if (rc != DAEMON_CONTINUE)
                return rc;
        }
        }
    }
    if (optind != argc && !(cli->common & DAEMON_OPT_OPERANDS)) {
        cli->usage(stderr);
        return 2;
    }
    dm->operand = optind;
    dm->rundir = daemon_rundir_choose(rundir, getenv(XKVM_RUNDIR_ENV));
    return DAEMON_CONTINUE;
}

/* ---- the run directory -------------------------------------------------------------- */

const char *daemon_rundir_refusal(const struct stat *st, uid_t euid)
{
    if (!S_ISDIR(st->st_mode))
        return "not a directory";
    if (st->st_uid != euid)
        return "another user's";
    if (st->st_mode & (S_ISVTX | S_IWOTH))
        return "world-writable or sticky";
    return NULL;
}

int daemon_rundir(struct daemon *dm, bool create, char *err, size_t errlen)
{
    const char *dir = dm->rundir;
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create run directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        snprintf(err, errlen, "run directory %s: %s", dir, strerror(errno));
        return -1;
    }
    const char *why = daemon_rundir_refusal(&st, geteuid());
    if (why && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "run directory %s: %s", dir, why);
        return -1;
    }
    if (why) {
        snprintf(err, errlen, "run directory %s is shared (%s): give %s one of its own",
                 dir, why, dm->name);
        return -1;
    }
    if ((st.st_mode & 077) && chmod(dir, 0700) < 0) {
        snprintf(err, errlen, "run directory %s: chmod 0700: %s", dir, strerror(errno));
        return -1;
    }
    if (!realpath(dir, dm->absdir)) {
        snprintf(err, errlen, "run directory %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int daemon_begin(struct daemon *dm, const struct daemon_cli *cli, int argc, char **argv,
                 bool create_rundir)
{
    int rc = daemon_parse(dm, cli, argc, argv);
    if (rc != DAEMON_CONTINUE)
        return rc;
    char err[512];
    if (daemon_rundir(dm, create_rundir, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", dm->name, err);
        return 1;
    }
    return DAEMON_CONTINUE;
}

/* ---- files -------------------------------------------------------------------------- */

int daemon_open_private(const char *path, int flags)
{
    int fd = open(path, flags | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (fchmod(fd, 0600) < 0) {     /* one left 0644 by an older version is tightened */
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

void daemon_open_log(struct daemon *dm)
{
    enum log_level level = dm->verbose ? LOG_DEBUG : LOG_INFO;
    if (dm->logpath || dm->foreground) {
        log_open(dm->logpath, dm->name, level);     /* a file named by the admin, or stderr */
        if (dm->logpath) {
            struct logrot_limits l;
            logrot_limits_from_env(&l);
            log_rotate_at(dm->logpath, &l);
        }
        return;
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dm->absdir, dm->logname);
    int fd = daemon_open_private(path, O_WRONLY | O_APPEND);
    log_open_fd(fd, dm->name, level);
    if (fd >= 0) {
        /* Sizes from $XKVM_LOG_MAX_SIZE and $XKVM_LOG_KEEP (xkvmd's options set them). */
        struct logrot_limits l;
        logrot_limits_from_env(&l);
        log_rotate_at(path, &l);
    }
}

int daemon_lock(struct daemon *dm, const char *file, mode_t mode, bool wait, char *err,
                size_t errlen)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dm->absdir, file);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    if (wait) {
        log_info("another %s serves %s: waiting for it to exit", dm->name, dm->absdir);
        if (flock(fd, LOCK_EX) == 0)
            return fd;
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    char pid[32] = "";
    ssize_t n = read(fd, pid, sizeof(pid) - 1);
    if (n > 0)
        pid[strcspn(pid, "\n")] = '\0';
    snprintf(err, errlen, "another %s (pid %s) is running in %s", dm->name, pid, dm->absdir);
    close(fd);
    return -EBUSY;
}

void daemon_write_pid(int fd)
{
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    /* Over the old one, then cut: a reader never finds the file empty. */
    if (pwrite(fd, pid, (size_t)n, 0) == n && ftruncate(fd, n) == 0)
        return;
}

/* ---- detaching ---------------------------------------------------------------------- */

/* The parent: how the child's start-up went (DAEMON_WAIT_READY). */
static int wait_for_child(struct daemon *dm, int rfd)
{
    char msg[512];
    ssize_t n = read(rfd, msg, sizeof(msg) - 1);
    if (n == 1 && msg[0] == 'O')
        return 0;
    if (n > 0) {
        msg[n] = '\0';
        fprintf(stderr, "%s: %s\n", dm->name, msg);
    } else {
        fprintf(stderr, "%s: failed to start (see %s/%s)\n", dm->name, dm->absdir,
                dm->logname);
    }
    return 1;
}

int daemon_detach(struct daemon *dm, unsigned flags)
{
    if (dm->foreground)
        return DAEMON_CONTINUE;
    int ready[2] = { -1, -1 };
    if ((flags & DAEMON_WAIT_READY) && pipe2(ready, O_CLOEXEC) < 0) {
        fprintf(stderr, "%s: pipe: %s\n", dm->name, strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", dm->name, strerror(errno));
        return 1;
    }
    if (pid > 0) {
        if (!(flags & DAEMON_WAIT_READY))
            return 0;
        close(ready[1]);
        return wait_for_child(dm, ready[0]);
    }
    if (flags & DAEMON_WAIT_READY) {
        close(ready[0]);
        dm->ready_fd = ready[1];
    }
    setsid();
    if ((flags & DAEMON_CHDIR_ROOT) && chdir("/") < 0)
        return 1;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    return DAEMON_CONTINUE;
}

void daemon_ready(struct daemon *dm)
{
    if (dm->ready_fd < 0)
        return;
    ssize_t w = write(dm->ready_fd, "O", 1);
    (void)w;
    close(dm->ready_fd);
    dm->ready_fd = -1;
}

void daemon_failed(struct daemon *dm, const char *msg)
{
    log_err("%s", msg);
    if (dm->ready_fd >= 0) {
        ssize_t w = write(dm->ready_fd, msg, strlen(msg));
        (void)w;
    } else {
        fprintf(stderr, "%s: %s\n", dm->name, msg);
    }
}

/* ---- the listening socket ----------------------------------------------------------- */

int daemon_listen(const char *dir, const char *name, int sock_flags, int backlog)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name) >=
        sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | sock_flags, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path);   /* the caller holds the lock: any socket here is stale */
    /* Created 0600: no window in which another user may connect. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* ---- signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

void daemon_stop_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

void daemon_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

bool daemon_stopping(void)
{
    return stop_requested;
}
