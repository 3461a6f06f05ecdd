/*
 * Supervision of the host's dom0 services (docs/dom0-services.md): xkvmd starts
 * xkvm-xenstored, xkvm-consoled and xkvm-blkback with `--rundir DIR --foreground`,
 * notices when one dies (a pidfd in the main loop's epoll set) and restarts it with a
 * backoff. The services outlive xkvmd: they are never killed by it, and the next xkvmd
 * adopts the running ones (each holds a lock on RUNDIR/services/NAME.pid).
 */
#ifndef XKVM_HV_SERVICES_H
#define XKVM_HV_SERVICES_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Find the service binaries (env XKVM_SERVICES_DIR, next to xkvmd, or the build
 * tree's ../dom0/NAME/), adopt running instances, start the others. Missing binaries
 * are logged once and skipped.
 */
void services_start(const char *rundir, int epfd);
/* An epoll event on fd: true if it was one of the services' pidfds or the timer. */
bool services_handle_event(int fd);
/* Is xenstored supervised (so worth waiting for while it comes up)? */
bool services_xenstored_expected(void);
/* Forget the pidfds (xkvmd is exiting): the services keep running. */
void services_detach(void);

#endif
