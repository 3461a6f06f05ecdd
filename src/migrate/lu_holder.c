/*
 * Live update: the holder, which takes the old address space's teardown out of the
 * downtime. See lu_internal.h and docs/live-update.md ("What the downtime is made of").
 *
 * execve frees the old address space, and closing the old KVM VMs and vCPUs destroys
 * them, both while every guest is paused: page tables over every guest window, KVM's
 * shadow state. Just before the exec, the old binary starts a process that shares its
 * address space (CLONE_VM) and keeps only the KVM fds. The exec then merely drops a
 * reference, and the holder does the freeing when it exits: once the new binary, its
 * domains running, closes the holder's pipe (or after HOLD_MAX_MS, for a new binary that
 * does not know about it). The holder is this process's child, so the binary after the
 * exec reaps it (on a thread: the freeing takes a while).
 *
 * The holder shares memory with a process that goes on (until its exec) and runs on the
 * thread-local storage of the thread that started it: it makes raw system calls only,
 * touches nothing but its own stack and what it was given, and never returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrate/lu_internal.h"
#include "util/log.h"

#define HOLDER_ENV      "XKVM_LU_HOLDER"         /* "PIPE_FD,PID" */
#define HOLD_MAX_MS     10000
#define HOLDER_STACK    (16 * 1024)
#define HOLDER_KEEP_MAX 4096

/* Everything the holder uses, set up before it starts and never freed (it is tiny). */
static struct holder_args {
    int pipe_rd;
    unsigned nkeep;
    unsigned fd_limit;
    int keep[HOLDER_KEEP_MAX];      /* ascending, pipe_rd among them */
} hargs;
static uint8_t holder_stack[HOLDER_STACK] __attribute__((aligned(16)));
static pid_t holder_pid = -1;   /* ours: the one started, or the one released */

/* The holder's code runs on no runtime of its own: nothing instrumented calls out. */
#define HOLDER_CODE __attribute__((no_sanitize("address", "undefined"), noinline))

static inline __attribute__((always_inline)) long raw3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline __attribute__((always_inline)) long raw4(long nr, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

/* Close [from, to], by close_range or one at a time. */
static HOLDER_CODE void holder_close(unsigned from, unsigned to)
{
    if (from > to)
        return;
    if (raw3(SYS_close_range, from, to, 0) == 0)
        return;
    for (unsigned fd = from; fd <= to && fd < hargs.fd_limit; fd++)
        raw3(SYS_close, fd, 0, 0);
}

static HOLDER_CODE int holder_main(void *unused)
{
    (void)unused;
    unsigned next = 0;
    for (unsigned i = 0; i < hargs.nkeep; i++) {
        holder_close(next, (unsigned)hargs.keep[i] - 1);
        next = (unsigned)hargs.keep[i] + 1;
    }
    holder_close(next, ~0u);
    struct { int fd; short events, revents; } p = { .fd = hargs.pipe_rd, .events = 1 };
    struct { long sec, nsec; } ts = { HOLD_MAX_MS / 1000, (HOLD_MAX_MS % 1000) * 1000000L };
    /* Until the pipe's write end is gone (the new binary closed it) or the time is up. */
    long r;
    do
        r = raw4(SYS_ppoll, (long)&p, 1, (long)&ts, 0);
    while (r == -EINTR);
    raw3(SYS_exit, 0, 0, 0);
    return 0;       /* not reached; glibc's clone would exit the same way */
}

static void reap(pid_t pid)
{
    while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int lu_holder_start(const int *kvm_fds, unsigned n)
{
    int pfd[2];
    if (n + 1 > HOLDER_KEEP_MAX || pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    hargs.pipe_rd = pfd[0];
    hargs.nkeep = n + 1;
    memcpy(hargs.keep, kvm_fds, n * sizeof(int));
    hargs.keep[n] = pfd[0];
    qsort(hargs.keep, hargs.nkeep, sizeof(int), cmp_int);
    struct rlimit rl;
    hargs.fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1u << 20 ?
                     (unsigned)rl.rlim_cur : 1u << 20;
    /* Started with every signal blocked: a handler must never run in the holder. */
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);
    pid_t pid = clone(holder_main, holder_stack + sizeof(holder_stack),
                      CLONE_VM | SIGCHLD, NULL);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    close(pfd[0]);
    if (pid < 0) {
        log_warn("live update: no holder for the old address space (%s): exec frees it",
                 strerror(saved));
        close(pfd[1]);
        return -1;
    }
    holder_pid = pid;
    char v[32];
    snprintf(v, sizeof(v), "%d,%d", pfd[1], (int)pid);
    setenv(HOLDER_ENV, v, 1);
    return pfd[1];
}

void lu_holder_cancel(int wfd)
{
    unsetenv(HOLDER_ENV);
    if (wfd >= 0)
        close(wfd);         /* the holder sees the pipe close and exits at once */
    reap(holder_pid);
    holder_pid = -1;
}

static void *reap_holder(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    reap(pid);
    /* Reaped: its pid may be anyone's now. */
    __atomic_compare_exchange_n(&holder_pid, &pid, -1, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return NULL;
}

void lu_holder_reap_previous(void)
{
    /* Released, so gone or going; its reaper thread may not have outlived an exec. */
    reap(__atomic_exchange_n(&holder_pid, -1, __ATOMIC_SEQ_CST));
}

void lu_holder_release(void)
{
    const char *v = getenv(HOLDER_ENV);
    int fd = -1, pid = -1;
    char tail;
    if (v && sscanf(v, "%d,%d%c", &fd, &pid, &tail) == 2 && fd > STDERR_FILENO && pid > 0) {
        close(fd);
        __atomic_store_n(&holder_pid, pid, __ATOMIC_SEQ_CST);
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, reap_holder, (void *)(intptr_t)pid))
            log_warn("live update: cannot reap the holder (pid %d)", pid);
        pthread_attr_destroy(&a);
    }
    unsetenv(HOLDER_ENV);
}
