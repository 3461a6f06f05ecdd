/* Supervision of the dom0 services: start, adopt, notice deaths, restart with backoff. */
#include "daemon/services.h"
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

#define BACKOFF_MIN_MS      200
#define BACKOFF_MAX_MS      10000
#define STABLE_AFTER_MS     10000   /* a service that ran this long restarts at once */
#define LOCK_FD             3       /* where a service finds its pidfile lock */

struct service {
    const char *name;           /* binary name */
    const char *subdir;         /* its build directory under src/dom0/ */
    char path[PATH_MAX];        /* the binary, or "" when none was found */
    pid_t pid;                  /* 0: not running */
    int pidfd;                  /* -1: not watched */
    bool child;                 /* started by this xkvmd (else adopted) */
    uint64_t started_ms;
    uint64_t restart_at_ms;     /* 0: no restart pending */
    unsigned backoff_ms;
};

static struct service services[] = {
    { .name = "xkvm-xenstored", .subdir = "xenstored" },
    { .name = "xkvm-consoled", .subdir = "consoled" },
    { .name = "xkvm-blkback", .subdir = "blkback" },
    { .name = "xkvm-netback", .subdir = "netback" },
};
#define NR_SERVICES (sizeof(services) / sizeof(services[0]))

static char svc_rundir[PATH_MAX];
static int svc_epfd = -1;
static int timer_fd = -1;

static int open_pidfd(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static void find_binary(struct service *s, const char *selfdir)
{
    const char *env = getenv("XKVM_SERVICES_DIR");
    char cand[PATH_MAX];
    s->path[0] = '\0';
    if (env && *env) {
        snprintf(cand, sizeof(cand), "%s/%s", env, s->name);
        if (executable(cand))
            goto found;
        snprintf(cand, sizeof(cand), "%s/%s/%s", env, s->subdir, s->name);
        if (executable(cand))
            goto found;
    }
    if (selfdir) {
        snprintf(cand, sizeof(cand), "%s/%s", selfdir, s->name);
        if (executable(cand))
            goto found;
        snprintf(cand, sizeof(cand), "%s/../dom0/%s/%s", selfdir, s->subdir, s->name);
        if (executable(cand))
            goto found;
    }
#if defined(XKVM_BINDIR) && defined(XKVM_SERVICES_INSTALL_DIR)
    /* Installed: BINDIR/xkvmd runs LIBEXECDIR/xkvm/NAME; also when the whole tree was
     * moved (meson install --destdir D: D/BINDIR/xkvmd finds D/LIBEXECDIR/xkvm/NAME). */
    if (selfdir) {
        size_t sl = strlen(selfdir), bl = strlen(XKVM_BINDIR);
        if (sl >= bl && !strcmp(selfdir + sl - bl, XKVM_BINDIR)) {
            snprintf(cand, sizeof(cand), "%.*s%s/%s", (int)(sl - bl), selfdir,
                     XKVM_SERVICES_INSTALL_DIR, s->name);
            if (executable(cand))
                goto found;
        }
    }
    snprintf(cand, sizeof(cand), "%s/%s", XKVM_SERVICES_INSTALL_DIR, s->name);
    if (executable(cand))
        goto found;
#else
#define XKVM_SERVICES_INSTALL_DIR "(not configured)"
#endif
    log_warn("dom0 service %s not found (XKVM_SERVICES_DIR, next to xkvmd, "
             "../dom0/%s/, " XKVM_SERVICES_INSTALL_DIR "): running without it",
             s->name, s->subdir);
    return;
found:;
    char *real = realpath(cand, NULL);
    snprintf(s->path, sizeof(s->path), "%s", real ? real : cand);
    free(real);
}

static void pidfile_path(const struct service *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s/services/%s.pid", svc_rundir, s->name);
}

static void arm_timer(void)
{
    uint64_t next = 0;
    for (size_t i = 0; i < NR_SERVICES; i++)
        if (services[i].restart_at_ms && (!next || services[i].restart_at_ms < next))
            next = services[i].restart_at_ms;
    struct itimerspec its = { 0 };
    if (next) {
        uint64_t now = mono_ms();
        uint64_t in = next > now ? next - now : 1;
        its.it_value.tv_sec = (time_t)(in / 1000);
        its.it_value.tv_nsec = (long)(in % 1000) * 1000000;
    }
    timerfd_settime(timer_fd, 0, &its, NULL);
}

static void watch(struct service *s)
{
    s->pidfd = open_pidfd(s->pid);
    if (s->pidfd < 0) {
        log_warn("%s (pid %d): pidfd_open: %s", s->name, (int)s->pid, strerror(errno));
        return;
    }
    fcntl(s->pidfd, F_SETFD, FD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->pidfd };
    epoll_ctl(svc_epfd, EPOLL_CTL_ADD, s->pidfd, &ev);
}

static void schedule_restart(struct service *s)
{
    uint64_t now = mono_ms();
    if (now - s->started_ms >= STABLE_AFTER_MS)
        s->backoff_ms = BACKOFF_MIN_MS;
    s->restart_at_ms = now + s->backoff_ms;
    log_warn("%s will be restarted in %u ms", s->name, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
    arm_timer();
}

/*
 * Start s, or adopt the instance already running (it holds the pidfile's lock, which
 * it inherited from the xkvmd that started it).
 */
static void launch(struct service *s)
{
    char pidfile[PATH_MAX + 64];
    pidfile_path(s, pidfile, sizeof(pidfile));
    int fd = open(pidfile, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_err("%s: cannot open %s: %s", s->name, pidfile, strerror(errno));
        schedule_restart(s);
        return;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid > 1) {
            s->pid = (pid_t)pid;
            s->child = false;
            s->started_ms = mono_ms();
            watch(s);
            if (s->pidfd >= 0) {
                log_info("%s already running (pid %ld): adopted", s->name, pid);
                return;
            }
        }
        log_warn("%s: pidfile locked but no usable pid in it", s->name);
        s->pid = 0;
        schedule_restart(s);
        return;
    }
    char logpath[PATH_MAX + 64];
    snprintf(logpath, sizeof(logpath), "%s/%s.log", svc_rundir, s->name);
    char *argv[] = { s->path, "--rundir", svc_rundir, "--foreground", NULL };
    pid_t pid = fork();
    if (pid < 0) {
        log_err("%s: fork: %s", s->name, strerror(errno));
        close(fd);
        schedule_restart(s);
        return;
    }
    if (pid == 0) {
        /* The child: a clean process that keeps only the lock and its log. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        setsid();
        int null = open("/dev/null", O_RDONLY);
        int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (log >= 0)
            fchmod(log, 0600);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
        }
        if (fd != LOCK_FD)
            dup2(fd, LOCK_FD);
        fcntl(LOCK_FD, F_SETFD, 0);
        /* xkvmd's listening sockets are not close-on-exec (live update): close all. */
        syscall(SYS_close_range, LOCK_FD + 1, ~0u, 0);
        execv(s->path, argv);
        _exit(127);
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        log_warn("%s: cannot write %s", s->name, pidfile);
    close(fd);      /* the child's copy keeps the lock */
    s->pid = pid;
    s->child = true;
    s->started_ms = mono_ms();
    watch(s);
    log_info("started %s (pid %d)", s->name, (int)pid);
}

void services_start(const char *rundir, int epfd)
{
    snprintf(svc_rundir, sizeof(svc_rundir), "%s", rundir);
    svc_epfd = epfd;
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = timer_fd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &ev);
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/services", rundir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        log_warn("cannot create %s: %s", dir, strerror(errno));

    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *selfdir = NULL;
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            selfdir = self;
        }
    }
    for (size_t i = 0; i < NR_SERVICES; i++) {
        struct service *s = &services[i];
        s->pidfd = -1;
        s->backoff_ms = BACKOFF_MIN_MS;
        find_binary(s, selfdir);
        if (s->path[0])
            launch(s);
    }
}

bool services_xenstored_expected(void)
{
    return services[0].path[0] != '\0';
}

static void on_exit_of(struct service *s)
{
    epoll_ctl(svc_epfd, EPOLL_CTL_DEL, s->pidfd, NULL);
    close(s->pidfd);
    s->pidfd = -1;
    char how[64] = "exited";
    /* Adopted ones too: after a live update's exec they are still our children. */
    {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            if (WIFEXITED(status))
                snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
            else if (WIFSIGNALED(status))
                snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
        }
    }
    log_warn("%s (pid %d) %s", s->name, (int)s->pid, how);
    s->pid = 0;
    schedule_restart(s);
}

bool services_handle_event(int fd)
{
    if (fd < 0)
        return false;
    if (fd == timer_fd) {
        uint64_t v;
        ssize_t r = read(timer_fd, &v, sizeof(v));
        (void)r;
        uint64_t now = mono_ms();
        for (size_t i = 0; i < NR_SERVICES; i++) {
            struct service *s = &services[i];
            if (s->restart_at_ms && s->restart_at_ms <= now) {
                s->restart_at_ms = 0;
                launch(s);
            }
        }
        arm_timer();
        return true;
    }
    for (size_t i = 0; i < NR_SERVICES; i++)
        if (services[i].pidfd == fd) {
            on_exit_of(&services[i]);
            return true;
        }
    return false;
}

void services_detach(void)
{
    for (size_t i = 0; i < NR_SERVICES; i++)
        if (services[i].pidfd >= 0) {
            close(services[i].pidfd);
            services[i].pidfd = -1;
        }
    if (timer_fd >= 0)
        close(timer_fd);
    timer_fd = -1;
}
