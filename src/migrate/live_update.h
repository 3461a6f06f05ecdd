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
#include <stddef.h>

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

/* What the toolstack asked for (xkvm live-update; the daemon parses the request). */
struct live_update_request {
    const char *binary;         /* absolute path of the next xkvmd */
    bool verify_memory;         /* hash every guest frame before and after */
    const char *inject_fault;   /* tests: the phase the new binary fails at, or NULL */
    /*
     * How (docs/live-update.md): LU_MODE_AUTO starts the new xkvmd beside this one when
     * it can (its --lu-accepts answer says so), else exec's it; LU_MODE_BESIDE insists
     * on beside, LU_MODE_EXEC on the exec.
     */
    enum { LU_MODE_AUTO, LU_MODE_BESIDE, LU_MODE_EXEC } mode;
    int client_fd;              /* the client's connection: the new xkvmd answers there */
};

/* The default next binary: the one this xkvmd was started from. */
const char *live_update_self_path(void);

/*
 * Run a live update (main thread; the caller made sure no save, restore or migration
 * job runs). On success it does not return: the new xkvmd answers the client.
 * Otherwise -errno and a message, with every domain running as before.
 */
int live_update_run(const struct live_update_request *rq, char *err, size_t errlen);

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

/*
 * xkvmd --lu-beside SOCKET_FD,PREBUILD_IMAGE_FD: started by a live update --beside next
 * to the old xkvmd (docs/live-update.md, "Beside"). Builds every VM from the prebuild
 * image while the old one runs the guests, then takes them over from the image it
 * sends in the pause. Returns 0 with *dm's fds filled once the domains run here (the
 * daemon then serves); on any failure before that it says why to the old xkvmd, which
 * keeps the domains, and exits.
 */
int live_update_beside(const char *spec, const char *rundir, int argc, char **argv,
                       struct lu_daemon *dm);

#endif
