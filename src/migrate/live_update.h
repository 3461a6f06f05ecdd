/*
 * Live update (docs/live-update.md): replace the running xkvmd with another binary
 * while every domain stays alive and its memory stays where it is, in the
 * machine-memory fd.
 *
 *   old xkvmd (live_update.c)              new xkvmd (lu_restore.c)
 *   ask BINARY --lu-accepts M.m
 *   stop the xenstore worker
 *   pause every domain, dom0 quiet
 *   serialise domains (in parallel)
 *   image -> memfd; keep the fds that
 *   survive, close-on-exec the rest
 *   exec BINARY ... --lu-resume IMG,OLD -> validate the whole image
 *                                         pass 0: VM, p2m (frames adopted), vCPUs
 *                                         pass 1: Xen frames, event channels, grants
 *                                         pass 2: vCPU and interrupt state
 *                                         unpause the domains that were running
 *                                         answer the client; serve
 *
 * Until it unpauses, any failure of the new binary (a bad image, a refused version,
 * a crash, an injected fault) exec's the old binary again (--lu-rollback) with the
 * same image, and that one restores the domains and tells the client what failed.
 */
#ifndef XKVM_MIGRATE_LIVE_UPDATE_H
#define XKVM_MIGRATE_LIVE_UPDATE_H

#include <limits.h>
#include <stdbool.h>

struct json_object;

/* What xkvmd started with, and the fds a live update hands on. */
struct lu_daemon {
    int control_listen_fd;
    int dom0_listen_fd;
    int migrate_listen_fd;      /* -1 without --migrate-listen */
    int pidfile_fd;
    int self_fd;                /* the running binary (rollback exec's it) */
    char self_path[PATH_MAX];   /* where it was started from (the default new binary) */
    int argc;
    char **argv;                /* without any --lu-* arguments */
};

/* xkvmd main, once it serves (or has resumed): remember how to hand over. */
void live_update_init(const struct lu_daemon *dm);

/*
 * The "live-update" control request from the client on client_fd (main thread).
 * On success it does not return: the new xkvmd answers the client. Otherwise the
 * error reply, with every domain running as before.
 */
struct json_object *live_update_request(struct json_object *req, int client_fd);

/* xkvmd --lu-accepts MAJOR.MINOR: print the verdict; the exit status (0 = yes). */
int live_update_accepts_main(const char *version);

/*
 * xkvmd --lu-resume IMAGE_FD,OLD_BINARY_FD [--lu-rollback REASON]: take over from the
 * image. Returns 0 with *dm's fds filled (the daemon then serves), or, on failure
 * before any domain was unpaused, exec's the old binary (does not return) unless
 * this already is the rollback, which returns -errno. argv: this process's, for
 * the rollback.
 */
int live_update_resume(const char *fds, const char *rollback_reason, const char *rundir,
                       int argc, char **argv, struct lu_daemon *dm);

#endif
