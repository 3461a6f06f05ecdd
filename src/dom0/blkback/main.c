/*
 * xkvm-blkback: the PV block backend, a dom0 service (docs/blkback.md).
 *
 *   xkvm-blkback --rundir DIR [--foreground] [--verbose]
 *
 * Serves every vbd under /local/domain/0/backend/vbd in the xenstored of DIR
 * (DIR/xenstored/socket, or $XENSTORED_PATH) through xkvmd's dom0 socket
 * (DIR/dom0.sock). Either may come and go: the backend retries, and re-attaches to
 * rings that are already connected without writing to xenstore.
 * The handshake and the main loop are the shared ones (dom0/xenbus_be.h).
 */
#include <stdio.h>

#include "util/daemon.h"
#include "xenbus.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: xkvm-blkback --rundir DIR [--foreground] [--verbose]\n");
}

static const struct daemon_cli cli = { .common = DAEMON_OPTS_SERVICE, .usage = usage };

int main(int argc, char **argv)
{
    static struct daemon dm = DAEMON_INIT("xkvm-blkback", "xkvm-blkback.log");
    return xenbus_be_main(&blk_xenbus_ops, &dm, &cli, argc, argv);
}
