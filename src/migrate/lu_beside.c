/*
 * Live update beside (docs/live-update.md, "Beside"): the channel between the old
 * xkvmd and the new one it starts next to itself. The old side spawns the new binary
 * with the prebuild image and one end of a socketpair, then the two exchange short
 * messages on it (SOCK_SEQPACKET, one message each):
 *
 *   new -> old   PREBUILT                  every VM, memslot and vCPU is built
 *   old -> new   FINAL + the image's fd    every domain is paused; the image is whole
 *   new -> old   READY                     every domain is restored, still paused
 *   old -> new   GO                        the commit: the old xkvmd exits, never
 *                                          unpausing anything again
 *   new -> old   ERROR <why>               the new xkvmd gives up (before READY)
 *
 * A two-phase commit: until it sends GO the old xkvmd owns the guests (on ERROR, on the
 * new one's death or on a timeout it kills and reaps the new one, and only then
 * unpauses its own domains); the new one unpauses only on GO, or on the old one's death
 * after READY (EOF: nobody else can run them then). See lu_internal.h.
 */
#include "migrate/lu_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/fdpass.h"

#define BESIDE_MSG_MAX 640

/*
 * The child (async-signal-safe calls only): close-on-exec every fd but keep[] and the
 * socket, then exec. 126: the fds could not be sorted (close_range needs Linux 5.11).
 */
static void __attribute__((noreturn)) exec_child(const char *binary, char **argv, char **envp,
                                                 const int *keep, unsigned nkeep, int sock)
{
    if (close_range(STDERR_FILENO + 1, ~0u, CLOSE_RANGE_CLOEXEC))
        _exit(126);
    for (unsigned i = 0; i < nkeep; i++)
        fcntl(keep[i], F_SETFD, 0);
    fcntl(sock, F_SETFD, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(binary, argv, envp);
    _exit(127);
}

/* Our environment, without XKVM_LU_FAULT, plus XKVM_LU_FAULT=fault if any (malloc'd). */
static char **child_environment(const char *fault, char **fault_var)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof(*envp));
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "XKVM_LU_FAULT=", 14))
            envp[k++] = environ[i];
    *fault_var = NULL;
    if (fault && asprintf(fault_var, "XKVM_LU_FAULT=%s", fault) > 0)
        envp[k++] = *fault_var;
    return envp;
}

int lu_beside_spawn(const char *binary, char *const *argv, int argc, const int *keep,
                    unsigned nkeep, int prebuild_fd, const char *fault, struct lu_beside *b,
                    char *err, size_t errlen)
{
    int sv[2];
    b->pid = -1;
    b->sock = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -errno;
    }
    char spec[48];
    snprintf(spec, sizeof(spec), "%d,%d", sv[1], prebuild_fd);
    char **args = calloc((size_t)argc + 3, sizeof(*args)), *fault_var = NULL;
    char **envp = args ? child_environment(fault, &fault_var) : NULL;
    if (!envp) {
        free(args);
        close(sv[0]);
        close(sv[1]);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < argc; i++)
        args[i] = argv[i];
    args[0] = (char *)binary;
    args[argc] = "--lu-beside";
    args[argc + 1] = spec;
    pid_t pid = fork();
    if (pid == 0)
        exec_child(binary, args, envp, keep, nkeep, sv[1]);
    int e = errno;
    free(args);
    free(envp);
    free(fault_var);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        snprintf(err, errlen, "fork: %s", strerror(e));
        return -e;
    }
    b->pid = pid;
    b->sock = sv[0];
    return 0;
}

/* Why the new xkvmd went away, from its exit status (it is reaped here). */
static void reap_reason(struct lu_beside *b, char *err, size_t errlen)
{
    int st = 0;
    pid_t r = waitpid(b->pid, &st, 0);
    if (r == b->pid)
        b->pid = -1;
    if (r == b->pid || r < 0)
        snprintf(err, errlen, "the new xkvmd went away");
    else if (WIFSIGNALED(st))
        snprintf(err, errlen, "the new xkvmd died (signal %d)", WTERMSIG(st));
    else
        snprintf(err, errlen, "the new xkvmd exited (status %d)", WEXITSTATUS(st));
}

int lu_beside_wait(struct lu_beside *b, const char *want, unsigned timeout_ms, char *err,
                   size_t errlen)
{
    uint64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        uint64_t now = mono_ms();
        /* At the deadline, one last look: an answer already there still counts. */
        struct pollfd p = { .fd = b->sock, .events = POLLIN };
        int n = poll(&p, 1, now >= deadline ? 0 : (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 && now >= deadline) {
            snprintf(err, errlen, "the new xkvmd did not say %s within %u ms", want,
                     timeout_ms);
            return -ETIMEDOUT;
        }
        if (n <= 0)
            continue;
        char msg[BESIDE_MSG_MAX + 1];
        ssize_t got = recv(b->sock, msg, BESIDE_MSG_MAX, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            if (got < 0 && b->pid > 0)
                kill(b->pid, SIGKILL);      /* the socket failed: it may still live */
            reap_reason(b, err, errlen);
            return -EPIPE;
        }
        msg[got] = '\0';
        if (!strcmp(msg, want))
            return 0;
        if (!strncmp(msg, "ERROR ", 6)) {
            snprintf(err, errlen, "%s", msg + 6);
            return -EIO;
        }
        snprintf(err, errlen, "the new xkvmd said '%.64s', not %s", msg, want);
        return -EPROTO;
    }
}

int lu_beside_send_final(struct lu_beside *b, int image_fd, char *err, size_t errlen)
{
    static const char word[] = "FINAL";
    if (fdpass_send(b->sock, word, sizeof(word) - 1, &image_fd, 1, 0, NULL, 0) < 0) {
        snprintf(err, errlen, "handing the image to the new xkvmd: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

void lu_beside_abort(struct lu_beside *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (b->sock >= 0)
        close(b->sock);
    b->pid = -1;
    b->sock = -1;
}

/* One message, either way: GO from the old side, the new side's words. */
int lu_beside_say(int sock, const char *fmt, ...)
{
    char msg[BESIDE_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    return send(sock, msg, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -EPIPE;
}

/* ---- the new xkvmd's end ---- */

int lu_beside_take_final(int sock)
{
    for (;;) {
        char word[16];
        int fd, flags;
        unsigned nfds;
        ssize_t got = fdpass_recv(sock, word, sizeof(word), 0, &fd, 1, &nfds, &flags);
        if (got < 0 && errno == EINTR)
            continue;
        if (got != 5 || memcmp(word, "FINAL", 5) || !nfds) {
            if (nfds)
                close(fd);
            return got != 5 || memcmp(word, "FINAL", 5) ? -EPIPE :
                   flags & MSG_CTRUNC ? -EMFILE :      /* the image's fd did not arrive */
                   -EPROTO;
        }
        return fd;
    }
}

int lu_beside_await_go(int sock)
{
    for (;;) {
        char word[8];
        ssize_t got = recv(sock, word, sizeof(word), 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got == 2 && !memcmp(word, "GO", 2))
            return 0;
        /* Gone: EOF, or a reset when it died with our READY unread. */
        if (got == 0 || (got < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 1;
        return -EPROTO;
    }
}
