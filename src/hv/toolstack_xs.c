/*
 * The toolstack's xenstore writes (libxl's layout, docs/dom0-services.md), done by one
 * worker thread in queue order: the main loop only queues jobs.
 */
#include "util/clock.h"
#include "hv/toolstack_xs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "util/control_reply.h"
#include "util/log.h"

#define XS_WAIT_MS          5000    /* how long a new domain waits for xenstored */
#define XS_RETRY_MS         100
/* libxl retries a conflicting transaction until it commits; so do we, for a while. */
#define TXN_ATTEMPTS        100
#define STOP_WAIT_MS        2000

enum job_kind { JOB_BUILT, JOB_GONE, JOB_VCPUS, JOB_CONTROL, JOB_MEM_TARGET };

struct job {
    struct job *next;
    enum job_kind kind;
    uint16_t domid;
    uint64_t created_ns;        /* which domain of that id (domids are reused) */
    struct domcfg cfg;          /* JOB_BUILT */
    uint64_t store_gfn, console_gfn;
    uint32_t store_port, console_port;
    bool state_from_stream;     /* restore: no vbd/vif state node here (both ends') */
    char control_node[16];      /* JOB_CONTROL: control/NODE = value, answered on */
    char control_value[16];
    int reply_fd;               /* the client's connection */
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t q_idle = PTHREAD_COND_INITIALIZER;
static struct job *q_head, *q_tail;
static bool q_busy, q_stop, started;
static pthread_t worker_thread;
static char socket_path[PATH_MAX + 32];

/* Worker-only state. */
static struct xs_handle *xsh;
static bool warned_absent;
static char vm_uuids[XKVM_DOMID_LIMIT][37];     /* /vm/<uuid> of each domain written */
/*
 * Restore: the layout toolstack_xs_prepare wrote, kept by the thread restoring that
 * domid (one at a time): which domain (created_ns; 0: none) and the rings it named.
 */
static struct prepared_layout {
    uint64_t created_ns;
    uint64_t store_gfn, console_gfn;
    uint32_t store_port, console_port;
} prepared[XKVM_DOMID_LIMIT];

static struct prepared_layout layout_of(const struct job *j)
{
    return (struct prepared_layout){ .created_ns = j->created_ns, .store_gfn = j->store_gfn,
                                     .console_gfn = j->console_gfn,
                                     .store_port = j->store_port,
                                     .console_port = j->console_port };
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/*
 * A new connection to our xenstored, waiting up to wait_ms for it to come up; NULL if
 * none. Only our socket: libxenstore would fall back to a real Xen's xenbus device.
 */
static struct xs_handle *xs_connect(unsigned wait_ms)
{
    uint64_t deadline = mono_ms() + wait_ms;
    for (;;) {
        struct stat st;
        struct xs_handle *h = stat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode) ?
                              xs_open(0) : NULL;
        if (h || mono_ms() >= deadline)
            return h;
        sleep_ms(XS_RETRY_MS);
    }
}

/* The worker's handle on xenstored, waiting up to wait_ms for it; NULL if none. */
static struct xs_handle *xs_get(unsigned wait_ms)
{
    if (xsh)
        return xsh;
    xsh = xs_connect(wait_ms);
    if (xsh) {
        if (warned_absent)
            log_info("xenstored at %s is up: writing domains to xenstore", socket_path);
        warned_absent = false;
        return xsh;
    }
    if (!warned_absent)
        log_warn("no xenstored answering at %s: domains run without xenstore",
                 socket_path);
    warned_absent = true;
    return NULL;
}

static void xs_drop(void)
{
    if (xsh)
        xs_close(xsh);
    xsh = NULL;
}

/* ---- writing a layout ------------------------------------------------------------ */

struct txn {
    struct xs_handle *h;
    xs_transaction_t t;
    bool failed;
    char failed_path[256];
    int failed_errno;
};

enum perms {
    PERM_DOM0,          /* dom0 only */
    PERM_GUEST_READ,    /* dom0 owns, the guest reads (libxl's read-only nodes) */
    PERM_GUEST_OWNS,    /* the guest owns (libxl's writable nodes) */
    PERM_FRONTEND,      /* the guest owns, the backend (dom0) reads */
};

static void set_perms(struct txn *x, const char *path, enum perms p, unsigned domid)
{
    struct xs_permissions perms[2];
    unsigned n = 1;
    switch (p) {
    case PERM_DOM0:
        perms[0] = (struct xs_permissions){ .id = 0, .perms = XS_PERM_NONE };
        break;
    case PERM_GUEST_READ:
        perms[0] = (struct xs_permissions){ .id = 0, .perms = XS_PERM_NONE };
        perms[1] = (struct xs_permissions){ .id = domid, .perms = XS_PERM_READ };
        n = 2;
        break;
    case PERM_GUEST_OWNS:
        perms[0] = (struct xs_permissions){ .id = domid, .perms = XS_PERM_NONE };
        break;
    case PERM_FRONTEND:
        perms[0] = (struct xs_permissions){ .id = domid, .perms = XS_PERM_NONE };
        perms[1] = (struct xs_permissions){ .id = 0, .perms = XS_PERM_READ };
        n = 2;
        break;
    }
    if (!x->failed && !xs_set_permissions(x->h, x->t, path, perms, n)) {
        x->failed = true;
        x->failed_errno = errno;
        snprintf(x->failed_path, sizeof(x->failed_path), "%s (permissions)", path);
    }
}

static void put(struct txn *x, const char *path, const char *value)
{
    if (!x->failed && !xs_write(x->h, x->t, path, value, strlen(value))) {
        x->failed = true;
        x->failed_errno = errno;
        snprintf(x->failed_path, sizeof(x->failed_path), "%s", path);
    }
}

/* Write PATH = a printf-formatted value. */
static void putf(struct txn *x, const char *path, const char *value_fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void putf(struct txn *x, const char *path, const char *value_fmt, ...)
{
    char value[PATH_MAX + 64];
    va_list ap;
    va_start(ap, value_fmt);
    vsnprintf(value, sizeof(value), value_fmt, ap);
    va_end(ap);
    put(x, path, value);
}

static void node(struct txn *x, const char *path, const char *value, enum perms p,
                 unsigned domid)
{
    put(x, path, value);
    set_perms(x, path, p, domid);
}

static void make_uuid(char out[37])
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (uint8_t)rand();
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
             b[12], b[13], b[14], b[15]);
}

/* The config's `uuid`, else a new random one. */
static void config_uuid(const struct domcfg *cfg, char out[37])
{
    if (domrec_uuid_valid(cfg->uuid))
        snprintf(out, 37, "%s", cfg->uuid);
    else
        make_uuid(out);
}

static void write_disk(struct txn *x, const struct job *j, const struct domcfg_disk *dk)
{
    unsigned id = j->domid;
    char fe[128], be[128], lx[128], p[256];
    snprintf(fe, sizeof(fe), "/local/domain/%u/device/vbd/%" PRIu32, id, dk->devid);
    snprintf(be, sizeof(be), "/local/domain/0/backend/vbd/%u/%" PRIu32, id, dk->devid);
    snprintf(lx, sizeof(lx), "/libxl/%u/device/vbd/%" PRIu32, id, dk->devid);

    /* The backend: dom0's, the guest may read it. */
    node(x, be, "", PERM_GUEST_READ, id);
    snprintf(p, sizeof(p), "%s/frontend", be);      put(x, p, fe);
    snprintf(p, sizeof(p), "%s/frontend-id", be);   putf(x, p, "%u", id);
    snprintf(p, sizeof(p), "%s/online", be);        put(x, p, "1");
    /* Restore: both ends' states come with the stream (or write_missing_state). */
    snprintf(p, sizeof(p), "%s/state", be);
    if (!j->state_from_stream)
        put(x, p, "1");
    snprintf(p, sizeof(p), "%s/params", be);        put(x, p, dk->path);
    snprintf(p, sizeof(p), "%s/type", be);          put(x, p, "phy");
    snprintf(p, sizeof(p), "%s/format", be);        put(x, p, "raw");
    snprintf(p, sizeof(p), "%s/mode", be);          put(x, p, dk->readonly ? "r" : "w");
    snprintf(p, sizeof(p), "%s/removable", be);     put(x, p, "0");
    snprintf(p, sizeof(p), "%s/bootable", be);      put(x, p, "1");
    snprintf(p, sizeof(p), "%s/device-type", be);   put(x, p, "disk");
    snprintf(p, sizeof(p), "%s/dev", be);           put(x, p, dk->vdev);

    /* The frontend: the guest's, the backend may read it. */
    node(x, fe, "", PERM_FRONTEND, id);
    snprintf(p, sizeof(p), "%s/backend", fe);         put(x, p, be);
    snprintf(p, sizeof(p), "%s/backend-id", fe);      put(x, p, "0");
    snprintf(p, sizeof(p), "%s/state", fe);
    if (!j->state_from_stream)
        put(x, p, "1");
    snprintf(p, sizeof(p), "%s/virtual-device", fe);  putf(x, p, "%" PRIu32, dk->devid);
    snprintf(p, sizeof(p), "%s/device-type", fe);     put(x, p, "disk");

    /* libxl's own trustworthy copy. */
    snprintf(p, sizeof(p), "%s/frontend", lx);  put(x, p, fe);
    snprintf(p, sizeof(p), "%s/backend", lx);   put(x, p, be);
    snprintf(p, sizeof(p), "%s/params", lx);    put(x, p, dk->path);
    snprintf(p, sizeof(p), "%s/mode", lx);      put(x, p, dk->readonly ? "r" : "w");
}

/*
 * A vif as libxl 4.17 writes it (libxl__device_nic_add), without the hotplug script:
 * xkvm-netback makes the TAP device vif<domid>.<handle> and joins the bridge itself.
 */
static void write_vif(struct txn *x, const struct job *j, unsigned handle,
                      const struct domcfg_vif *v)
{
    unsigned id = j->domid;
    char fe[128], be[128], lx[128], p[256], mac[18];
    domcfg_mac_format(v->mac, mac);
    snprintf(fe, sizeof(fe), "/local/domain/%u/device/vif/%u", id, handle);
    snprintf(be, sizeof(be), "/local/domain/0/backend/vif/%u/%u", id, handle);
    snprintf(lx, sizeof(lx), "/libxl/%u/device/vif/%u", id, handle);

    node(x, be, "", PERM_GUEST_READ, id);
    snprintf(p, sizeof(p), "%s/frontend", be);      put(x, p, fe);
    snprintf(p, sizeof(p), "%s/frontend-id", be);   putf(x, p, "%u", id);
    snprintf(p, sizeof(p), "%s/online", be);        put(x, p, "1");
    snprintf(p, sizeof(p), "%s/state", be);         /* as for vbds */
    if (!j->state_from_stream)
        put(x, p, "1");
    snprintf(p, sizeof(p), "%s/mac", be);           put(x, p, mac);
    snprintf(p, sizeof(p), "%s/bridge", be);        put(x, p, v->bridge);
    snprintf(p, sizeof(p), "%s/handle", be);        putf(x, p, "%u", handle);
    snprintf(p, sizeof(p), "%s/type", be);          put(x, p, "vif");
    snprintf(p, sizeof(p), "%s/mtu", be);           put(x, p, "1500");
    if (v->rate_usec) {     /* libxl: bytes per interval, interval in microseconds */
        snprintf(p, sizeof(p), "%s/rate", be);
        putf(x, p, "%" PRIu64 ",%" PRIu32, v->rate_bytes, v->rate_usec);
    }

    node(x, fe, "", PERM_FRONTEND, id);
    snprintf(p, sizeof(p), "%s/backend", fe);       put(x, p, be);
    snprintf(p, sizeof(p), "%s/backend-id", fe);    put(x, p, "0");
    snprintf(p, sizeof(p), "%s/state", fe);
    if (!j->state_from_stream)
        put(x, p, "1");
    snprintf(p, sizeof(p), "%s/handle", fe);        putf(x, p, "%u", handle);
    snprintf(p, sizeof(p), "%s/mac", fe);           put(x, p, mac);
    snprintf(p, sizeof(p), "%s/mtu", fe);           put(x, p, "1500");

    snprintf(p, sizeof(p), "%s/frontend", lx);      put(x, p, fe);
    snprintf(p, sizeof(p), "%s/backend", lx);       put(x, p, be);
}

/* cpu/N/availability for every vCPU, as libxl: vcpus of them online, the rest not. */
static void write_vcpus(struct txn *x, const struct job *j, const char *uuid)
{
    (void)uuid;
    char p[96];
    for (unsigned v = 0; v < domcfg_max_vcpus(&j->cfg); v++) {
        snprintf(p, sizeof(p), "/local/domain/%u/cpu/%u/availability", j->domid, v);
        put(x, p, v < j->cfg.vcpus ? "online" : "offline");
    }
}

/* The xenstore and console rings: page and port, as the domain's HVM params name them. */
static void write_rings(struct txn *x, const struct job *j, const char *uuid)
{
    (void)uuid;
    char p[96];
    snprintf(p, sizeof(p), "/local/domain/%u/store/port", j->domid);
    putf(x, p, "%" PRIu32, j->store_port);
    snprintf(p, sizeof(p), "/local/domain/%u/store/ring-ref", j->domid);
    putf(x, p, "%" PRIu64, j->store_gfn);
    snprintf(p, sizeof(p), "/local/domain/%u/console/ring-ref", j->domid);
    putf(x, p, "%" PRIu64, j->console_gfn);
    snprintf(p, sizeof(p), "/local/domain/%u/console/port", j->domid);
    putf(x, p, "%" PRIu32, j->console_port);
}

static void write_layout(struct txn *x, const struct job *j, const char *uuid)
{
    unsigned id = j->domid;
    char dom[64], vm[64], lx[64], p[256];
    snprintf(dom, sizeof(dom), "/local/domain/%u", id);
    snprintf(vm, sizeof(vm), "/vm/%s", uuid);
    snprintf(lx, sizeof(lx), "/libxl/%u", id);

    /* Start clean: a crashed earlier xkvmd may have left a domain of this id behind. */
    xs_rm(x->h, x->t, dom);
    xs_rm(x->h, x->t, lx);
    char bep[96];
    snprintf(bep, sizeof(bep), "/local/domain/0/backend/vbd/%u", id);
    xs_rm(x->h, x->t, bep);
    snprintf(bep, sizeof(bep), "/local/domain/0/backend/console/%u", id);
    xs_rm(x->h, x->t, bep);
    snprintf(bep, sizeof(bep), "/local/domain/0/backend/vif/%u", id);
    xs_rm(x->h, x->t, bep);

    node(x, dom, "", PERM_GUEST_READ, id);
    node(x, vm, "", PERM_GUEST_READ, id);
    node(x, lx, "", PERM_DOM0, id);

    snprintf(p, sizeof(p), "%s/uuid", vm);          put(x, p, uuid);
    snprintf(p, sizeof(p), "%s/name", vm);          put(x, p, j->cfg.name);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(p, sizeof(p), "%s/start_time", vm);
    putf(x, p, "%lld.%02ld", (long long)ts.tv_sec, ts.tv_nsec / 10000000);

    snprintf(p, sizeof(p), "%s/vm", dom);           put(x, p, vm);
    snprintf(p, sizeof(p), "%s/name", dom);         put(x, p, j->cfg.name);
    snprintf(p, sizeof(p), "%s/domid", dom);        putf(x, p, "%u", id);
    /* As libxl: KiB, the most the guest may hold and what its balloon aims at. */
    snprintf(p, sizeof(p), "%s/memory/static-max", dom);
    putf(x, p, "%" PRIu64, domcfg_max_mb(&j->cfg) * 1024);
    snprintf(p, sizeof(p), "%s/memory/target", dom);
    putf(x, p, "%" PRIu64, domcfg_target_kb(&j->cfg));
    snprintf(p, sizeof(p), "%s/memory/videoram", dom);   put(x, p, "0");
    write_vcpus(x, j, uuid);

    write_rings(x, j, uuid);

    /* The primary console (console.txt), served by xkvm-consoled. */
    char cbe[96];
    snprintf(cbe, sizeof(cbe), "/local/domain/0/backend/console/%u/0", id);
    snprintf(p, sizeof(p), "%s/console/backend", dom);    put(x, p, cbe);
    snprintf(p, sizeof(p), "%s/console/backend-id", dom); put(x, p, "0");
    snprintf(p, sizeof(p), "%s/console/limit", dom);      put(x, p, "1048576");
    snprintf(p, sizeof(p), "%s/console/type", dom);       put(x, p, "xenconsoled");
    snprintf(p, sizeof(p), "%s/console/output", dom);     put(x, p, "pty");
    node(x, cbe, "", PERM_GUEST_READ, id);
    snprintf(p, sizeof(p), "%s/frontend", cbe);    putf(x, p, "%s/console", dom);
    snprintf(p, sizeof(p), "%s/frontend-id", cbe); putf(x, p, "%u", id);
    snprintf(p, sizeof(p), "%s/online", cbe);      put(x, p, "1");
    snprintf(p, sizeof(p), "%s/state", cbe);       put(x, p, "1");
    snprintf(p, sizeof(p), "%s/protocol", cbe);    put(x, p, "vt100");

    /* control/: read-only but for the nodes the guest answers in. */
    snprintf(p, sizeof(p), "%s/control", dom);      node(x, p, "", PERM_GUEST_READ, id);
    static const char *const guest_control[] = {
        "shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq",
    };
    for (size_t i = 0; i < sizeof(guest_control) / sizeof(guest_control[0]); i++) {
        snprintf(p, sizeof(p), "%s/control/%s", dom, guest_control[i]);
        node(x, p, "", PERM_GUEST_OWNS, id);
    }
    snprintf(p, sizeof(p), "%s/control/platform-feature-multiprocessor-suspend", dom);
    put(x, p, "1");
    snprintf(p, sizeof(p), "%s/control/platform-feature-xs_reset_watches", dom);
    put(x, p, "1");

    /* The guest's own directories. */
    static const char *const guest_dirs[] = { "data", "drivers", "feature", "attr", "error" };
    for (size_t i = 0; i < sizeof(guest_dirs) / sizeof(guest_dirs[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dom, guest_dirs[i]);
        node(x, p, "", PERM_GUEST_OWNS, id);
    }
    snprintf(p, sizeof(p), "%s/device", dom);       node(x, p, "", PERM_GUEST_READ, id);
    snprintf(p, sizeof(p), "%s/device/suspend/event-channel", dom);
    node(x, p, "", PERM_GUEST_OWNS, id);

    snprintf(p, sizeof(p), "%s/type", lx);          put(x, p, "pvh");
    snprintf(p, sizeof(p), "%s/device/console/0/frontend", lx); putf(x, p, "%s/console", dom);
    snprintf(p, sizeof(p), "%s/device/console/0/backend", lx);  put(x, p, cbe);

    for (unsigned i = 0; i < j->cfg.nr_disks && i < DOMCFG_DISKS_MAX; i++)
        write_disk(x, j, &j->cfg.disks[i]);
    for (unsigned i = 0; i < j->cfg.nr_vifs && i < DOMCFG_VIFS_MAX; i++)
        write_vif(x, j, i, &j->cfg.vifs[i]);
}

/*
 * Restore, after the import: a vbd or vif end whose state the stream did not carry (a
 * stream of an older xkvm) starts at Initialising, as a new device's. A device whose
 * states came with the stream gets no write at all: its backend finds it as the source
 * left it and re-attaches (docs/migration.md, "Backends").
 */
static void state_if_missing(struct txn *x, const char *dir)
{
    char p[192];
    snprintf(p, sizeof(p), "%s/state", dir);
    unsigned len;
    char *v = xs_read(x->h, x->t, p, &len);
    if (!v)
        put(x, p, "1");
    free(v);
}

static void write_missing_state(struct txn *x, const struct job *j, const char *uuid)
{
    (void)uuid;
    char dir[128];
    for (unsigned i = 0; i < j->cfg.nr_disks && i < DOMCFG_DISKS_MAX; i++) {
        uint32_t devid = j->cfg.disks[i].devid;
        snprintf(dir, sizeof(dir), "/local/domain/%u/device/vbd/%" PRIu32, j->domid, devid);
        state_if_missing(x, dir);
        snprintf(dir, sizeof(dir), "/local/domain/0/backend/vbd/%u/%" PRIu32, j->domid, devid);
        state_if_missing(x, dir);
    }
    for (unsigned i = 0; i < j->cfg.nr_vifs && i < DOMCFG_VIFS_MAX; i++) {
        snprintf(dir, sizeof(dir), "/local/domain/%u/device/vif/%u", j->domid, i);
        state_if_missing(x, dir);
        snprintf(dir, sizeof(dir), "/local/domain/0/backend/vif/%u/%u", j->domid, i);
        state_if_missing(x, dir);
    }
}

static void write_removal(struct txn *x, const struct job *j, const char *uuid)
{
    static const char *const fmts[] = {
        "/local/domain/%u", "/local/domain/0/backend/vbd/%u",
        "/local/domain/0/backend/vif/%u", "/local/domain/0/backend/console/%u",
        "/libxl/%u",
    };
    char p[96];
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        snprintf(p, sizeof(p), fmts[i], j->domid);
        xs_rm(x->h, x->t, p);
    }
    if (uuid && *uuid) {
        snprintf(p, sizeof(p), "/vm/%s", uuid);
        xs_rm(x->h, x->t, p);
    }
}

typedef void txn_body(struct txn *x, const struct job *j, const char *uuid);

/* One transaction, retried while xenstored reports a conflict. true if committed. */
static bool run_txn(struct xs_handle *h, const struct job *j, const char *uuid,
                    txn_body *body)
{
    for (int attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
        struct txn x = { .h = h };
        x.t = xs_transaction_start(h);
        if (x.t == XBT_NULL) {
            log_warn("d%u: xenstore transaction: %s", j->domid, strerror(errno));
            return false;
        }
        body(&x, j, uuid);
        if (x.failed) {
            xs_transaction_end(h, x.t, true);
            log_warn("d%u: xenstore write of %s: %s", j->domid, x.failed_path,
                     strerror(x.failed_errno));
            return false;
        }
        if (xs_transaction_end(h, x.t, false))
            return true;
        if (errno != EAGAIN) {
            log_warn("d%u: xenstore commit: %s", j->domid, strerror(errno));
            return false;
        }
        /* Another writer touched a node we read (a parent, say): let it finish. */
        usleep(1000 + (unsigned)(rand() % 4000) * (unsigned)(attempt < 10 ? 1 : 4));
    }
    log_warn("d%u: xenstore transaction kept conflicting", j->domid);
    return false;
}

/* Set by the daemon: xenstored is supervised, so worth waiting for while it comes up. */
static bool xenstored_expected;

void toolstack_xs_expect_xenstored(bool expected)
{
    __atomic_store_n(&xenstored_expected, expected, __ATOMIC_RELEASE);
}

static void do_built(const struct job *j)
{
    /* While xenstored is supervised but not answering yet, the domain waits for it. */
    unsigned wait = __atomic_load_n(&xenstored_expected, __ATOMIC_ACQUIRE) ? XS_WAIT_MS : 0;
    struct xs_handle *h = xs_get(warned_absent ? 0 : wait);
    if (h) {
        char *uuid = vm_uuids[j->domid];
        config_uuid(&j->cfg, uuid);
        bool ok = run_txn(h, j, uuid, write_layout);
        if (ok && !xs_introduce_domain(h, j->domid, j->store_gfn, j->store_port)) {
            log_warn("d%u: xenstore introduce: %s", j->domid, strerror(errno));
            ok = false;
        }
        if (ok)
            log_info("d%u: xenstore layout written, introduced (store gfn %#" PRIx64
                     " port %" PRIu32 ")", j->domid, j->store_gfn, j->store_port);
        else
            xs_drop();      /* maybe xenstored went away: reconnect next time */
    }
    struct domain *d = domain_get(j->domid);
    if (d) {
        if (d->created_ns == j->created_ns)
            domain_unpause(d);
        domain_put(d);
    }
}

/* A layout written by an earlier xkvmd (live update): the domain's node names its uuid. */
static void learn_uuid(struct xs_handle *h, unsigned domid)
{
    char p[64];
    unsigned vlen = 0;
    if (vm_uuids[domid][0])
        return;
    snprintf(p, sizeof(p), "/local/domain/%u/vm", domid);
    char *vm = xs_read(h, XBT_NULL, p, &vlen);
    if (vm && vlen == 4 + 36 && !strncmp(vm, "/vm/", 4))
        snprintf(vm_uuids[domid], sizeof(vm_uuids[0]), "%s", vm + 4);
    free(vm);
}

static void do_gone(const struct job *j)
{
    char *uuid = vm_uuids[j->domid];
    struct xs_handle *h = xs_get(0);
    if (h)
        learn_uuid(h, j->domid);
    if (h) {
        bool ok = run_txn(h, j, uuid, write_removal);
        if (ok && !xs_release_domain(h, j->domid) && errno != ENOENT && errno != EINVAL)
            log_warn("d%u: xenstore release: %s", j->domid, strerror(errno));
        if (!ok)
            xs_drop();
    }
    uuid[0] = '\0';
}

static void do_vcpus(const struct job *j)
{
    struct xs_handle *h = xs_get(0);
    if (h && run_txn(h, j, vm_uuids[j->domid], write_vcpus))
        log_info("d%u: %u of %u vCPUs online in xenstore", j->domid, j->cfg.vcpus,
                 domcfg_max_vcpus(&j->cfg));
    else
        log_warn("d%u: cannot write the vCPUs' availability to xenstore", j->domid);
}

static void write_mem_target(struct txn *x, const struct job *j, const char *uuid)
{
    (void)uuid;
    char p[96];
    snprintf(p, sizeof(p), "/local/domain/%u/memory/target", j->domid);
    putf(x, p, "%" PRIu64, domcfg_target_kb(&j->cfg));
}

/* xl mem-set: memory/target, which the guest's balloon driver watches. */
static void do_mem_target(const struct job *j)
{
    struct xs_handle *h = xs_get(0);
    if (h && run_txn(h, j, vm_uuids[j->domid], write_mem_target))
        log_info("d%u: memory/target = %" PRIu64 " KiB", j->domid, domcfg_target_kb(&j->cfg));
    else
        log_warn("d%u: cannot write memory/target to xenstore", j->domid);
}

/*
 * The toolstack asks the guest (xl shutdown, reboot, sysrq): control/NODE = value,
 * then the client's reply, so that it can watch for the guest's answer from then on.
 */
static void do_control(const struct job *j)
{
    struct xs_handle *h = xs_get(0);
    struct domain *d = domain_get(j->domid);
    bool same = d && d->created_ns == j->created_ns;
    if (d)
        domain_put(d);
    char p[96];
    snprintf(p, sizeof(p), "/local/domain/%u/control/%s", j->domid, j->control_node);
    struct json_object *reply;
    if (!same) {
        reply = control_reply_err(ESRCH, "domain %u is gone", j->domid);
    } else if (!h) {
        reply = control_reply_err(ENOTCONN, "no xenstored: the guest cannot be asked");
    } else if (!xs_write(h, XBT_NULL, p, j->control_value, strlen(j->control_value))) {
        int e = errno;
        log_warn("d%u: writing %s: %s", j->domid, p, strerror(e));
        reply = control_reply_err(EIO, "writing %s: %s", p, strerror(e));
        xs_drop();
    } else {
        log_info("d%u: control/%s = \"%s\"", j->domid, j->control_node, j->control_value);
        reply = control_reply_ok();
    }
    control_write_json(j->reply_fd, reply);
    close(j->reply_fd);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&q_lock);
    for (;;) {
        while (!q_head && !q_stop)
            pthread_cond_wait(&q_cond, &q_lock);
        if (!q_head)
            break;
        struct job *j = q_head;
        q_head = j->next;
        if (!q_head)
            q_tail = NULL;
        q_busy = true;
        pthread_mutex_unlock(&q_lock);
        if (j->kind == JOB_BUILT)
            do_built(j);
        else if (j->kind == JOB_VCPUS)
            do_vcpus(j);
        else if (j->kind == JOB_CONTROL)
            do_control(j);
        else if (j->kind == JOB_MEM_TARGET)
            do_mem_target(j);
        else
            do_gone(j);
        free(j);
        pthread_mutex_lock(&q_lock);
        if (!q_head)
            xs_drop();      /* idle: hold no connection (xenstored may restart meanwhile) */
        q_busy = false;
        pthread_cond_broadcast(&q_idle);
    }
    pthread_mutex_unlock(&q_lock);
    xs_drop();
    return NULL;
}

static void on_built(struct domain *d);
static void on_gone(const struct domain *d);
static const struct domain_observer toolstack_observer = { .built = on_built,
                                                           .gone = on_gone };

int toolstack_xs_start(const char *rundir)
{
    domain_observe(&toolstack_observer);
    snprintf(socket_path, sizeof(socket_path), "%s/xenstored/socket", rundir);
    /* Before any other thread exists: libxenstore reads it at every xs_open. */
    setenv("XENSTORED_PATH", socket_path, 1);
    pthread_mutex_lock(&q_lock);
    q_stop = false;     /* started again after a live update that did not happen */
    pthread_mutex_unlock(&q_lock);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);     /* signals are for the main loop */
    int rc = pthread_create(&worker_thread, NULL, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    started = true;
    return 0;
}

static void enqueue(struct job *j)
{
    pthread_mutex_lock(&q_lock);
    if (q_tail)
        q_tail->next = j;
    else
        q_head = j;
    q_tail = j;
    pthread_cond_signal(&q_cond);
    pthread_mutex_unlock(&q_lock);
}

/* What the layout of d is written from: its (local) configuration and its rings. */
static void job_for(struct job *j, const struct domain *d)
{
    j->kind = JOB_BUILT;
    j->domid = d->domid;
    j->created_ns = d->created_ns;
    j->cfg = d->cfg;
    j->store_gfn = d->hvm_params[HVM_PARAM_STORE_PFN];
    j->store_port = (uint32_t)d->hvm_params[HVM_PARAM_STORE_EVTCHN];
    j->console_gfn = d->hvm_params[HVM_PARAM_CONSOLE_PFN];
    j->console_port = (uint32_t)d->hvm_params[HVM_PARAM_CONSOLE_EVTCHN];
}

/* The guest waits for its layout: held until the worker wrote it (or gave up). */
static void on_built(struct domain *d)
{
    struct job *j = started ? calloc(1, sizeof(*j)) : NULL;
    if (!j)
        return;
    domain_hold(d);
    job_for(j, d);
    enqueue(j);
}

int toolstack_xs_control(const struct domain *d, const char *node, const char *value,
                         int reply_fd, char *err, size_t errlen)
{
    struct stat st;
    if (!started || stat(socket_path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "no xenstored on this host: the guest cannot be asked");
        return -ENOTCONN;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    j->kind = JOB_CONTROL;
    j->domid = d->domid;
    j->created_ns = d->created_ns;
    snprintf(j->control_node, sizeof(j->control_node), "%s", node);
    snprintf(j->control_value, sizeof(j->control_value), "%s", value);
    j->reply_fd = reply_fd;
    enqueue(j);
    return 0;
}

static void on_gone(const struct domain *d)
{
    struct job *j = started ? calloc(1, sizeof(*j)) : NULL;
    if (!j)
        return;
    j->kind = JOB_GONE;
    j->domid = d->domid;
    j->created_ns = d->created_ns;
    enqueue(j);
}

void toolstack_xs_vcpus(const struct domain *d)
{
    struct job *j = started ? calloc(1, sizeof(*j)) : NULL;
    if (!j)
        return;
    job_for(j, d);
    j->kind = JOB_VCPUS;
    enqueue(j);
}

void toolstack_xs_mem_target(const struct domain *d)
{
    struct job *j = started ? calloc(1, sizeof(*j)) : NULL;
    if (!j)
        return;
    job_for(j, d);
    j->kind = JOB_MEM_TARGET;
    enqueue(j);
}

bool toolstack_xs_known_uuid(unsigned domid, char out[37])
{
    if (domid >= XKVM_DOMID_LIMIT)
        return false;
    memcpy(out, vm_uuids[domid], 37);
    out[36] = '\0';
    return domrec_uuid_valid(out);
}

/* Wait (bounded) until the worker has nothing queued or running; q_lock held. */
static bool wait_idle_locked(void)
{
    uint64_t deadline = mono_ms() + STOP_WAIT_MS;
    while ((q_head || q_busy) && mono_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&q_idle, &q_lock, &ts);
    }
    return !q_head && !q_busy;
}

bool toolstack_xs_stop(void)
{
    if (!started)
        return true;
    pthread_mutex_lock(&q_lock);
    bool done = wait_idle_locked();
    if (done) {
        q_stop = true;
        pthread_cond_signal(&q_cond);
    }
    pthread_mutex_unlock(&q_lock);
    if (!done) {
        log_warn("xenstore worker still busy: left running");
        return false;
    }
    pthread_join(worker_thread, NULL);
    started = false;
    return true;
}

/* ---- Migration: a domain's xenstore state out of and into xenstored ---------- */

/*
 * A connection of our own to xenstored, or NULL with why in err. A supervised one
 * still coming up is waited for, as a new domain's layout waits (a migration may
 * arrive as soon as xkvmd serves).
 */
static struct xs_handle *xs_reach(char *err, size_t errlen)
{
    bool expected = __atomic_load_n(&xenstored_expected, __ATOMIC_ACQUIRE);
    struct xs_handle *h = xs_connect(expected ? XS_WAIT_MS : 0);
    if (!h)
        snprintf(err, errlen, "cannot reach xenstored at %s: %s", socket_path,
                 strerror(errno ? errno : ENOENT));
    return h;
}

/*
 * One CONTROL request on h (xenstored reads/writes the file); xenstored's reply text,
 * if wanted, in reply.
 */
static int xs_control_on(struct xs_handle *h, const char *cmd, const char *arg1,
                         const char *path, const char *arg3, char *reply, size_t replylen,
                         char *err, size_t errlen)
{
    char data[PATH_MAX + 64];
    size_t n = 0;
    if (arg1) {
        n = (size_t)snprintf(data, sizeof(data), "%s", arg1) + 1;
    }
    n += (size_t)snprintf(data + n, sizeof(data) - n, "%s", path) + 1;
    if (arg3 && n < sizeof(data))
        n += (size_t)snprintf(data + n, sizeof(data) - n, "%s", arg3) + 1;
    else if (arg3)
        n = sizeof(data) + 1;
    if (n > sizeof(data)) {
        snprintf(err, errlen, "xenstored %s: arguments too long", cmd);
        return -ENAMETOOLONG;
    }
    char *r = xs_control_command(h, cmd, data, (unsigned)n);
    int rc = r ? 0 : -errno;
    if (!r)
        snprintf(err, errlen, "xenstored %s: %s", cmd, strerror(errno));
    else if (reply)
        snprintf(reply, replylen, "%s", r);
    free(r);
    return rc;
}

/* The same on a connection of its own. */
static int xs_control_file(const char *cmd, const char *arg1, const char *path,
                           const char *arg3, char *reply, size_t replylen, char *err,
                           size_t errlen)
{
    struct xs_handle *h = xs_reach(err, errlen);
    if (!h)
        return -EIO;
    int rc = xs_control_on(h, cmd, arg1, path, arg3, reply, replylen, err, errlen);
    xs_close(h);
    return rc;
}

int toolstack_xs_export(unsigned domid, bool *quiesced, uint8_t **buf, size_t *len,
                        char *err, size_t errlen)
{
    char path[PATH_MAX + 64], id[16], reply[64] = "";
    snprintf(path, sizeof(path), "%s/xenstored/export-%u.xsm", host.rundir, domid);
    snprintf(id, sizeof(id), "%u", domid);
    int rc = xs_control_file("export", id, path, quiesced ? "quiesce" : NULL, reply,
                             sizeof(reply), err, errlen);
    if (rc)
        return rc;
    if (quiesced)
        *quiesced = !strcmp(reply, "OK quiesced");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    rc = fd < 0 || fstat(fd, &st) < 0 ? -errno : 0;
    uint8_t *b = rc ? NULL : malloc((size_t)st.st_size + 1);
    if (!rc && (!b || read(fd, b, (size_t)st.st_size) != st.st_size))
        rc = -EIO;
    if (fd >= 0)
        close(fd);
    unlink(path);
    if (rc) {
        free(b);
        snprintf(err, errlen, "reading xenstored's export of d%u: %s", domid, strerror(-rc));
        return rc;
    }
    *buf = b;
    *len = (size_t)st.st_size;
    return 0;
}

void toolstack_xs_resume(unsigned domid)
{
    char id[16], err[256];
    snprintf(id, sizeof(id), "%u", domid);
    if (xs_control_file("resume", NULL, id, NULL, NULL, 0, err, sizeof(err)))
        log_warn("d%u: xenstored did not take up the ring again: %s", domid, err);
}

/*
 * xkvmd is the authority on which domains exist: whatever xenstored still holds for
 * this domid (a domain of an xkvmd that died without cleaning up, or a refused
 * import's layout) goes.
 */
static void forget_domain(struct xs_handle *h, unsigned domid)
{
    struct job j = { .domid = (uint16_t)domid };
    run_txn(h, &j, vm_uuids[domid], write_removal);
    vm_uuids[domid][0] = '\0';
    prepared[domid].created_ns = 0;
    xs_release_domain(h, domid);
}

/* Hand xenstored the stream for domain d: "" if it took it, else why not (in why). */
static int import_state(struct xs_handle *h, const struct domain *d, const uint8_t *buf,
                        size_t len, char *why, size_t whylen, char *err, size_t errlen)
{
    char path[PATH_MAX + 64], id[16], reply[1024] = "";
    snprintf(path, sizeof(path), "%s/xenstored/import-%u.xsm", host.rundir, d->domid);
    snprintf(id, sizeof(id), "%u", d->domid);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
        snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    close(fd);
    int rc = xs_control_on(h, "import", id, path, NULL, reply, sizeof(reply), err, errlen);
    unlink(path);
    snprintf(why, whylen, "%s", strcmp(reply, "OK") && !rc ? reply : "");
    return rc;
}

bool toolstack_xs_uuid(unsigned domid, char out[37])
{
    if (domid >= XKVM_DOMID_LIMIT)
        return false;
    if (!vm_uuids[domid][0]) {
        struct xs_handle *h = xs_open(0);
        if (h) {
            learn_uuid(h, domid);
            xs_close(h);
        }
    }
    snprintf(out, 37, "%s", vm_uuids[domid]);
    return domrec_uuid_valid(out);
}

/*
 * Restore: the destination's toolstack writes the layout from the local configuration
 * (d->cfg, whose host paths restore.c checked) and d's rings as soon as d is built;
 * in the pause the guest's own nodes and its backends' state come from the stream
 * (xenstored applies them as the guest's writes); a device end left without a state
 * (an older stream) gets Initialising; then the domain is introduced.
 *
 * The restore's layout of d: whatever xenstored holds for its domid goes, then the
 * layout from d's configuration and rings, under the source's uuid where it is free.
 */
static int write_restore_layout(struct xs_handle *h, struct domain *d, const char *src_uuid,
                                char *err, size_t errlen)
{
    /* A removal still queued for this domid (the saved domain, destroyed just before
     * a restore on this host) must not run over the layout written here. */
    pthread_mutex_lock(&q_lock);
    if (started && !wait_idle_locked())
        log_warn("d%u: xenstore worker still busy before the restore's layout", d->domid);
    pthread_mutex_unlock(&q_lock);
    forget_domain(h, d->domid);
    struct job j = { .state_from_stream = true };
    job_for(&j, d);
    char *uuid = vm_uuids[d->domid];
    config_uuid(&d->cfg, uuid);
    if (src_uuid && domrec_uuid_valid(src_uuid)) {
        char p[64];
        snprintf(p, sizeof(p), "/vm/%s", src_uuid);
        unsigned vlen;
        char *taken = xs_read(h, XBT_NULL, p, &vlen);
        if (!taken)
            snprintf(uuid, sizeof(vm_uuids[0]), "%s", src_uuid);
        free(taken);
    }
    if (!run_txn(h, &j, uuid, write_layout)) {
        snprintf(err, errlen, "writing the xenstore layout of d%u failed", d->domid);
        return -EIO;
    }
    prepared[d->domid] = layout_of(&j);
    return 0;
}

int toolstack_xs_prepare(struct domain *d, const char *src_uuid, char *err, size_t errlen)
{
    struct xs_handle *h = xs_reach(err, errlen);
    if (!h)
        return -EIO;
    int rc = write_restore_layout(h, d, src_uuid, err, errlen);
    xs_close(h);
    return rc;
}

/* Did toolstack_xs_prepare write a layout for this domain (not an earlier one of its id)? */
static bool prepared_for(const struct domain *d)
{
    return d->created_ns && prepared[d->domid].created_ns == d->created_ns;
}

/*
 * Is the layout toolstack_xs_prepare wrote for d still there? A removal of an earlier
 * domain of that id still queued then (the worker busy past its bound) would have
 * taken it away since: the pause writes it again.
 */
static bool prepared_layout_there(struct xs_handle *h, const struct domain *d)
{
    if (!prepared_for(d))
        return false;
    char p[64], want[64];
    unsigned len = 0;
    snprintf(p, sizeof(p), "/local/domain/%u/vm", d->domid);
    snprintf(want, sizeof(want), "/vm/%s", vm_uuids[d->domid]);
    char *vm = xs_read(h, XBT_NULL, p, &len);
    bool there = vm && vm_uuids[d->domid][0] && !strcmp(vm, want);
    free(vm);
    return there;
}

/* The prepared layout's rings, if the stream's HVM params moved them. */
static int rewrite_rings(struct xs_handle *h, struct domain *d, const struct job *now,
                         char *err, size_t errlen)
{
    struct prepared_layout was = prepared[d->domid], is = layout_of(now);
    if (!memcmp(&was, &is, sizeof(is)))
        return 0;
    if (!run_txn(h, now, vm_uuids[d->domid], write_rings)) {
        snprintf(err, errlen, "writing the xenstore rings of d%u failed", d->domid);
        return -EIO;
    }
    return 0;
}

int toolstack_xs_import(struct domain *d, const char *src_uuid, const uint8_t *buf, size_t len,
                        char *err, size_t errlen)
{
    struct xs_handle *h = xs_reach(err, errlen);
    if (!h)
        return -EIO;
    struct job j = { .state_from_stream = true };
    job_for(&j, d);
    bool laid_out = prepared_layout_there(h, d);
    if (!laid_out && prepared_for(d))
        log_warn("d%u: the xenstore layout written for the restore went away: written again",
                 d->domid);
    int rc = laid_out ? rewrite_rings(h, d, &j, err, errlen)
                      : write_restore_layout(h, d, src_uuid, err, errlen);
    char why[1024] = "";
    if (!rc)
        rc = import_state(h, d, buf, len, why, sizeof(why), err, errlen);
    if (!rc && why[0]) {
        snprintf(err, errlen, "XENSTORE_STATE refused: %s", why + (strncmp(why, "ERROR: ", 7)
                                                                   ? 0 : 7));
        rc = -EPERM;
    }
    /* No device, no state to look for: not even an empty transaction in the pause. */
    if (!rc && (j.cfg.nr_disks || j.cfg.nr_vifs) &&
        !run_txn(h, &j, vm_uuids[d->domid], write_missing_state)) {
        snprintf(err, errlen, "writing the device states of d%u failed", d->domid);
        rc = -EIO;
    }
    if (!rc && !xs_introduce_domain(h, d->domid, d->hvm_params[HVM_PARAM_STORE_PFN],
                                    (unsigned)d->hvm_params[HVM_PARAM_STORE_EVTCHN])) {
        snprintf(err, errlen, "xenstore introduce of d%u: %s", d->domid, strerror(errno));
        rc = -EIO;
    }
    if (rc)
        forget_domain(h, d->domid);
    prepared[d->domid].created_ns = 0;
    xs_close(h);
    return rc;
}
