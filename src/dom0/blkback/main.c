/*
 * xkvm-blkback: the PV block backend, a dom0 service (docs/blkback.md).
 *
 *   xkvm-blkback --rundir DIR [--foreground] [--verbose]
 *
 * Serves every vbd under /local/domain/0/backend/vbd in the xenstored of DIR
 * (DIR/xenstored/socket, or $XENSTORED_PATH) through xkvmd's dom0 socket
 * (DIR/dom0.sock). Either may come and go: the backend retries, and re-attaches to
 * rings that are already connected without writing to xenstore.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xenstore.h>

#include "util/log.h"
#include "xenbus.h"
#include "xkvm/control.h"

/* Rescan period: retries (xenstored, xkvmd, re-attach) happen at this pace (ms). */
#define BLK_TICK_MS 1000

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xkvm-blkback --rundir DIR [--foreground] [--verbose]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "rundir", required_argument, NULL, 'r' },
        { "foreground", no_argument, NULL, 'f' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *rundir = NULL;
    bool foreground = false, verbose = false;
    int c;
    while ((c = getopt_long(argc, argv, "r:fvh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rundir = optarg; break;
        case 'f': foreground = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!rundir || !*rundir)
        rundir = getenv(XKVM_RUNDIR_ENV);
    if (!rundir || !*rundir)
        rundir = XKVM_RUNDIR_DEFAULT;
    char absdir[PATH_MAX];
    if (!realpath(rundir, absdir)) {
        fprintf(stderr, "xkvm-blkback: %s: %s\n", rundir, strerror(errno));
        return 1;
    }
    /* libxenstore finds the daemon through XENSTORED_PATH. */
    char xspath[PATH_MAX + 32];
    snprintf(xspath, sizeof(xspath), "%s/xenstored/socket", absdir);
    setenv("XENSTORED_PATH", getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : xspath,
           1);

    char logpath[PATH_MAX + 32] = "";
    if (!foreground) {
        snprintf(logpath, sizeof(logpath), "%s/xkvm-blkback.log", absdir);
        if (daemon(0, 0) < 0) {
            perror("xkvm-blkback: daemon");
            return 1;
        }
    }
    log_open(logpath[0] ? logpath : NULL, "xkvm-blkback", verbose ? LOG_DEBUG : LOG_INFO);

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Device threads take no signals: the main thread sees them (poll returns EINTR). */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);

    struct blkback b = { .rundir = absdir };
    b.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b.wake_fd < 0) {
        log_err("blkback: eventfd: %m");
        return 1;
    }
    log_info("blkback: starting (rundir %s, xenstore %s)", absdir, getenv("XENSTORED_PATH"));
    bool said_waiting = false;
    while (!quit) {
        if (!b.xs) {
            int rc = xb_open(&b);
            if (rc) {
                if (!said_waiting)
                    log_info("blkback: waiting for xenstored: %s", strerror(-rc));
                said_waiting = true;
            } else {
                said_waiting = false;
                log_info("blkback: connected to xenstored");
                pthread_sigmask(SIG_BLOCK, &block, &old);
                bool ok = xb_scan(&b);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (!ok)
                    xb_close(&b);
            }
        }
        struct pollfd pf[2] = { { .fd = b.wake_fd, .events = POLLIN },
                                { .fd = b.xs ? xs_fileno(b.xs) : -1, .events = POLLIN } };
        int n = poll(pf, 2, BLK_TICK_MS);
        if (n < 0 && errno != EINTR) {
            log_err("blkback: poll: %m");
            break;
        }
        if (quit)
            break;
        /* New threads inherit this mask: keep termination signals for this thread. */
        pthread_sigmask(SIG_BLOCK, &block, &old);
        if (pf[0].revents & POLLIN) {
            uint64_t cnt;
            if (read(b.wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
                log_warn("blkback: wake: %m");
        }
        xb_reap(&b);
        if (b.xs) {
            bool ok = (pf[1].revents & POLLIN) ? xb_watches(&b) : true;
            if (ok && (n == 0 || (pf[0].revents & POLLIN)))
                ok = xb_scan(&b);   /* the periodic retry */
            if (!ok) {
                log_warn("blkback: lost xenstored; devices keep running, reconnecting");
                xb_close(&b);
            }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    log_info("blkback: exiting");
    xb_free_all(&b);
    xb_close(&b);
    return 0;
}
