/*
 * The xenbus side of a PV backend, shared by every device kind (docs/blkback.md,
 * docs/netback.md): find devices under the kind's backend root in xenstore and follow
 * Linux's backend handshake (frontend_changed in drivers/block/xen-blkback/xenbus.c and
 * drivers/net/xen-netback/xenbus.c) with each frontend. A device found with both ends
 * Connected (the backend restarted, xkvmd restarted) is re-attached to its ring(s)
 * without writing anything. The plumbing never names a kind: a kind registers its
 * operations (struct xenbus_be_ops) and embeds struct xenbus_be_dev in its device.
 */
#ifndef XKVM_DOM0_XENBUS_BE_H
#define XKVM_DOM0_XENBUS_BE_H

#include <stdbool.h>
#include <stdint.h>
#include <xenstore.h>

#include "util/daemon.h"

/* Why a device's ring thread stopped; each kind's stop enum has these values. */
enum xenbus_be_stop {
    XB_STOP_NONE = 0,
    XB_STOP_ASKED,      /* the main thread asked (disconnect) */
    XB_STOP_LOST,       /* the dom0 connection failed: reconnect without xenstore */
    XB_STOP_GONE,       /* the domain no longer exists */
    XB_STOP_BROKEN,     /* the frontend broke the ring protocol: leave it stopped */
};

/* What every device has, whatever its kind: embedded in the kind's device. */
struct xenbus_be_dev {
    struct xenbus_be_dev *next;
    uint32_t domid, devid;          /* devid: the vbd's devid, the vif's handle */
    char be[128], fe[128];          /* backend and frontend xenstore directories */
    uint32_t fe_domid;
    int be_state;                   /* last XenbusState we wrote or read */
    bool seen;                      /* found by the current scan */
    bool broken;                    /* stopped for a protocol violation */
    bool gone;                      /* the domain died */
    bool connected;                 /* serving its ring(s): the kind sets it */
    const char *fail_step;          /* what the kind's connect failed to do */
    int last_fail;                  /* the last failure logged (logged once per kind) */
};

struct xenbus_be;

/* A device kind's operations. */
struct xenbus_be_ops {
    const char *name;               /* for logs: "blkback" */
    const char *root;               /* its devices: "/local/domain/0/backend/vbd" */
    const char *rings;              /* "ring" or "rings", for the re-attach log line */
    /* A new device with its resources unopened (fds -1); NULL if out of memory. */
    struct xenbus_be_dev *(*alloc)(void);
    /* Open what the device serves (image, TAP...), once. 0 or -errno (logged once). */
    int (*open)(struct xenbus_be *b, struct xenbus_be_dev *d);
    /* Write the device's feature nodes inside t (probe, and again with Connected). */
    bool (*write_features)(struct xenbus_be *b, struct xenbus_be_dev *d,
                           xs_transaction_t t);
    /*
     * Read what the frontend published and connect to the ring(s); nothing is written.
     * -EINVAL with *why for a frontend error, or -errno from connecting (*why NULL).
     */
    int (*attach)(struct xenbus_be *b, struct xenbus_be_dev *d, const char **why);
    /* Stop serving; idempotent. */
    void (*disconnect)(struct xenbus_be_dev *d);
    /* enum xenbus_be_stop: why the ring thread stopped (XB_STOP_NONE while it serves). */
    int (*stop_reason)(struct xenbus_be_dev *d);
    /* Disconnect and free. removed: the toolstack removed it (else the backend exits). */
    void (*free)(struct xenbus_be_dev *d, bool removed);
};

struct xenbus_be {
    const struct xenbus_be_ops *ops;
    const char *rundir;
    struct xs_handle *xs;           /* NULL while xenstored is unreachable */
    struct xenbus_be_dev *devs;
    int wake_fd;                    /* device threads say they stopped */
};

/* xenstore read of dir/node: a malloc'd string, or NULL. */
char *xenbus_be_read(struct xenbus_be *b, const char *dir, const char *node);
/* An unsigned value, or dflt if missing; -1 if present but not a number. */
long long xenbus_be_read_uint(struct xenbus_be *b, const char *dir, const char *node,
                              long long dflt);
/* Write dir/node inside t (the failure is logged). */
bool xenbus_be_write(struct xenbus_be *b, xs_transaction_t t, const char *dir,
                     const char *node, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Connect to xenstored and set the watches. 0 or -errno. */
int xenbus_be_open(struct xenbus_be *b);
void xenbus_be_close(struct xenbus_be *b);
/* Handle pending watch events (the xs fd was readable); false if xenstore was lost. */
bool xenbus_be_watches(struct xenbus_be *b);
/* Look at every device and take each one step through the handshake. */
bool xenbus_be_scan(struct xenbus_be *b);
/* Collect devices whose ring thread stopped. */
void xenbus_be_reap(struct xenbus_be *b);
/* Disconnect and free every device (nothing is written). */
void xenbus_be_free_all(struct xenbus_be *b);

/*
 * A backend daemon's main: options (cli), the run directory and where xenstored is,
 * detaching, the log, then serving until a termination signal. dm names the daemon.
 */
int xenbus_be_main(const struct xenbus_be_ops *ops, struct daemon *dm,
                   const struct daemon_cli *cli, int argc, char **argv);

#endif
