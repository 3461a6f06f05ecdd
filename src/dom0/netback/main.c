/*
 * xkvm-netback: the PV network backend, a dom0 service (docs/netback.md).
 *
 *   xkvm-netback --rundir DIR [--foreground] [--verbose]
 *
 * Serves every vif under /local/domain/0/backend/vif in the xenstored of DIR
 * (DIR/xenstored/socket, or $XENSTORED_PATH) through xkvmd's dom0 socket
 * (DIR/dom0.sock). Either may come and go: the backend retries, and re-attaches to
 * rings that are already connected without writing to xenstore. Each vif is a TAP
 * device vif<domid>.<handle> (kept across restarts: persistent).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xenstore.h>

#include "util/daemon.h"
#include "util/log.h"
#include "xenbus.h"
#include "xkvm/control.h"

/* Rescan period: retries (xenstored, xkvmd, re-attach) happen at this pace (ms). */
#define NB_TICK_MS 1000

static void usage(FILE *f)
{
    fprintf(f, "usage: xkvm-netback --rundir DIR [--foreground] [--verbose]\n");
}

static const struct daemon_cli cli = { .common = DAEMON_OPTS_SERVICE, .usage = usage };

/* Options, the run directory, where xenstored is, detaching, the log, the signals. */
static int start(struct daemon *dm, int argc, char **argv)
{
    int rc = daemon_begin(dm, &cli, argc, argv, false);
    if (rc != DAEMON_CONTINUE)
        return rc;
    /* libxenstore finds the daemon through XENSTORED_PATH. */
    char xspath[PATH_MAX + 32];
    snprintf(xspath, sizeof(xspath), "%s/xenstored/socket", dm->absdir);
    setenv("XENSTORED_PATH", getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : xspath,
           1);
    if ((rc = daemon_detach(dm, DAEMON_CHDIR_ROOT)) != DAEMON_CONTINUE)
        return rc;
    daemon_open_log(dm);
    daemon_signals();
    return DAEMON_CONTINUE;
}

int main(int argc, char **argv)
{
    static struct daemon dm = DAEMON_INIT("xkvm-netback", "xkvm-netback.log");
    int status = start(&dm, argc, argv);
    if (status != DAEMON_CONTINUE)
        return status;
    const char *absdir = dm.absdir;
    /* Device threads take no signals: the main thread sees them (poll returns EINTR). */
    sigset_t block, old;
    daemon_stop_sigset(&block);

    struct netback b = { .rundir = absdir };
    signal(SIGPIPE, SIG_IGN);
    b.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b.wake_fd < 0) {
        log_err("netback: eventfd: %m");
        return 1;
    }
    log_info("netback: starting (rundir %s, xenstore %s)", absdir, getenv("XENSTORED_PATH"));
    bool said_waiting = false;
    while (!daemon_stopping()) {
        if (!b.xs) {
            int rc = xb_open(&b);
            if (rc) {
                if (!said_waiting)
                    log_info("netback: waiting for xenstored: %s", strerror(-rc));
                said_waiting = true;
            } else {
                said_waiting = false;
                log_info("netback: connected to xenstored");
                pthread_sigmask(SIG_BLOCK, &block, &old);
                bool ok = xb_scan(&b);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (!ok)
                    xb_close(&b);
            }
        }
        struct pollfd pf[2] = { { .fd = b.wake_fd, .events = POLLIN },
                                { .fd = b.xs ? xs_fileno(b.xs) : -1, .events = POLLIN } };
        int n = poll(pf, 2, NB_TICK_MS);
        if (n < 0 && errno != EINTR) {
            log_err("netback: poll: %m");
            break;
        }
        if (daemon_stopping())
            break;
        /* New threads inherit this mask: keep termination signals for this thread. */
        pthread_sigmask(SIG_BLOCK, &block, &old);
        if (pf[0].revents & POLLIN) {
            uint64_t cnt;
            if (read(b.wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
                log_warn("netback: wake: %m");
        }
        xb_reap(&b);
        if (b.xs) {
            bool ok = (pf[1].revents & POLLIN) ? xb_watches(&b) : true;
            if (ok && (n == 0 || (pf[0].revents & POLLIN)))
                ok = xb_scan(&b);   /* the periodic retry */
            if (!ok) {
                log_warn("netback: lost xenstored; devices keep running, reconnecting");
                xb_close(&b);
            }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    log_info("netback: exiting");
    xb_free_all(&b);
    xb_close(&b);
    return 0;
}
