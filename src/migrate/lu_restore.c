/*
 * Live update, the new binary's half: validate the image, rebuild every domain on
 * the memory it already has, resume, answer; or hand back to the old binary. See
 * live_update.h and docs/live-update.md.
 */
#include "migrate/live_update.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <json-c/json.h>

#include "util/control_reply.h"
#include "hv/dom0.h"
#include "hv/domain.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "migrate/arch_state.h"
#include "migrate/lu_internal.h"
#include "migrate/pv_restore.h"
#include "util/domcfg.h"
#include "util/clock.h"
#include "util/daemon.h"
#include "util/log.h"
#include "xkvm/live_update.h"

extern char **environ;

/* ---- rollback: exec the old binary with the same image ---- */

static int old_binary_fd_of(const struct xkvm_lu_image *img);

static int old_binary_fd = -1;
static char **rollback_argv;
static char rollback_reason[512];

static void exec_old_binary(void)
{
    syscall(SYS_execveat, old_binary_fd, "", rollback_argv, environ, AT_EMPTY_PATH);
}

/* Not async-signal-safe parts are avoided: the reason is a fixed text. */
static void crash_handler(int sig)
{
    static const char msg[] = "the new xkvmd crashed (signal ";
    size_t n = sizeof(msg) - 1;
    memcpy(rollback_reason, msg, n);
    if (sig >= 10)
        rollback_reason[n++] = (char)('0' + sig / 10);
    rollback_reason[n++] = (char)('0' + sig % 10);
    rollback_reason[n++] = ')';
    rollback_reason[n] = '\0';
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    exec_old_binary();
    _exit(128 + sig);
}

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

/*
 * On an alternate stack (a stack overflow must roll back too; worker threads have
 * none, so a pass's overflow there is fatal), without blocking the signal, so that
 * the old binary does not start with it blocked.
 */
static void crash_handlers(bool on)
{
    static uint8_t altstack[64 * 1024];
    if (on) {
        stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
        sigaltstack(&ss, NULL);
    }
    struct sigaction sa = { .sa_handler = on ? crash_handler : SIG_DFL,
                            .sa_flags = on ? SA_ONSTACK | SA_NODEFER : 0 };
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
        sigaction(crash_signals[i], &sa, NULL);
}

/* Beside (lu_beside.c): the socket to the old xkvmd, which rolls back by itself. */
static int beside_sock = -1;

static void __attribute__((noreturn)) roll_back(const char *why)
{
    if (beside_sock >= 0) {
        log_err("live update: %s: the old xkvmd keeps the domains", why);
        lu_beside_say(beside_sock, "ERROR %s", why);
        _exit(70);
    }
    snprintf(rollback_reason, sizeof(rollback_reason), "%s", why);
    log_err("live update: %s: rolling back to the old xkvmd", why);
    exec_old_binary();
    log_err("live update: cannot exec the old xkvmd: %s", strerror(errno));
    _exit(70);
}

/* XKVM_LU_FAULT: the test suite's injected failures, each in the new binary only. */
static const char *fault;

static void fault_point(const char *phase)
{
    if (!fault || strcmp(fault, phase))
        return;
    if (strstr(phase, "crash")) {
        log_err("XKVM_LU_FAULT=crash: crashing here");
            raise(SIGSEGV);
    }
    roll_back("injected fault (XKVM_LU_FAULT)");
}

/* ---- per-domain passes ---- */

struct lu_dom {
    const struct xkvm_lu_domain *rec;
    struct domain *d;
    struct domcfg cfg;
    bool paused;
    int shutdown_code;
    bool shutdown_handled;
    uint64_t advance;
    int rc;
    char err[320];
};

static void lu_fail(struct lu_dom *ld, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lu_fail(struct lu_dom *ld, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, sizeof(ld->err), fmt, ap);
    va_end(ap);
    ld->rc = rc;
}

/* The DOMAIN record's JSON (the image check left its contents to us). */
static int parse_domain(struct lu_dom *ld)
{
    const unsigned members = DOMREC_CONFIG | DOMREC_PAUSED | DOMREC_SHUTDOWN;
    struct domrec dr = { .cfg = &ld->cfg };
    int rc = domrec_from_json(ld->rec->config_json, ld->rec->config_len, members, 0,
                              "DOMAIN record", "{config, paused, shutdown_code, shutdown_handled}",
                              &dr, ld->err, sizeof(ld->err));
    if (rc) {
        ld->rc = rc;
        return rc;
    }
    ld->paused = dr.paused;
    ld->shutdown_code = dr.shutdown_code;
    ld->shutdown_handled = dr.shutdown_handled;
    return 0;
}

static void pass0(void *arg)
{
    struct lu_dom *ld = arg;
    const struct xkvm_lu_domain *r = ld->rec;
    if (parse_domain(ld))
        return;
    struct domain_extent *x = calloc(r->nr_extents ? r->nr_extents : 1, sizeof(*x));
    if (!x) {
        lu_fail(ld, -ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->nr_extents; i++) {
        struct xkvm_lu_extent e;
        memcpy(&e, &r->extents[i], sizeof(e));
        x[i] = (struct domain_extent){ .gfn = e.gfn, .mfn = e.mfn, .nr = e.nr,
                                       .type = e.type == XKVM_LU_FRAME_RAM ? FRAME_RAM
                                                                          : FRAME_SPECIAL };
    }
    struct domain_adopt a = { .extents = x, .nr_extents = r->nr_extents };
    char why[512];
    int rc = domain_create_for_live_update(&ld->cfg, r->domid, &a, &ld->d, why, sizeof(why));
    free(x);
    if (rc)
        lu_fail(ld, rc, "%s", why);
    fault_point("pass0");
}

/* --verify-memory: the frames must hold exactly what they held when paused. */
static void verify_memory(void *arg)
{
    struct lu_dom *ld = arg;
    uint64_t sum = 0;
    const struct xkvm_lu_domain *r = ld->rec;
    int rc = lu_memory_checksum(ld->d, r->checksum_skip, r->nr_checksum_skip, &sum);
    if (rc)
        lu_fail(ld, rc, "checksumming memory: %s", strerror(-rc));
    else if (sum != ld->rec->checksum)
        lu_fail(ld, -EIO, "memory changed across the update: checksum %016llx, was %016llx",
                (unsigned long long)sum, (unsigned long long)ld->rec->checksum);
}

static void pass1(void *arg)
{
    struct lu_dom *ld = arg;
    struct domain *d = ld->d;
    const struct xkvm_lu_domain *r = ld->rec;
    /* The HVM params are DOMAIN_CONTEXT's (pv_restore_context sets them); the image's
     * HVM_PARAMS record is a copy for readers that require it, checked, not applied. */
    int rc = pv_restore_check(d, r->dom_ctx, r->dom_len, ld->err, sizeof(ld->err));
    fault_point("crash");
    if (!rc)
        rc = pv_restore_context(d, r->dom_ctx, r->dom_len, &ld->advance, ld->err,
                                sizeof(ld->err));
    ld->rc = rc;
    fault_point("pass1");
}

static void pass2(void *arg)
{
    struct lu_dom *ld = arg;
    struct domain *d = ld->d;
    ld->rc = arch_restore_domain(d, ld->rec->hvm_ctx, ld->rec->hvm_len, ld->advance,
                                 ld->err, sizeof(ld->err));
    if (!ld->rc) {
        pv_restore_kick_events(d);
        pv_restore_raise_dom0_ports(d);
        if (ld->shutdown_code >= 0) {
            /*
             * Shut down: stopped as it was. Handled (on_poweroff=preserve & co) it
             * holds two pauses, as domains_handle_shutdowns leaves it; otherwise one,
             * and the main loop acts on it once serving.
             */
            domain_set_shutdown_state(d, ld->shutdown_code, ld->shutdown_handled);
        }
        if (ld->paused)
            domain_toolstack_pause(d);
    }
    fault_point("pass2");
}

static void pass0_rebuild(void *arg);

/* Beside, in the pause, for a domain built before it: the final DOMAIN record's state. */
static void pass0_final(void *arg)
{
    parse_domain(arg);
}

/* Run one pass over every domain; the first failure (by domid order) wins. */
static int run_pass(const char *name, struct lu_dom *doms, unsigned n, void (*fn)(void *),
                    char *err, size_t errlen)
{
    /* Only building VMs (pass 0) mostly waits in the kernel; the other passes compute. */
    lu_parallel_on(n, sizeof(*doms), doms, fn, fn == pass0 || fn == pass0_rebuild);
    for (unsigned i = 0; i < n; i++)
        if (doms[i].rc) {
            snprintf(err, errlen, "%s, d%u: %s", name, doms[i].rec->domid, doms[i].err);
            return doms[i].rc;
        }
    return 0;
}

/* ---- the answer to the client that asked ---- */

struct phases {
    double prebuild, pause, save, exec_prep, exec, validate, startup, pass0, verify, pass1,
           pass2, unpause;
};

static void answer_client(int fd, bool ok, const char *rollback, const char *err,
                          const struct xkvm_lu_image *img, const struct phases *ph,
                          double downtime_ms, unsigned ndom)
{
    if (fd < 0)
        return;
    struct json_object *r;
    if (ok) {
        r = control_reply_ok();
    } else {
        r = control_reply_err(EIO, "%s", err);
    }
    char from[32], to[32];
    snprintf(from, sizeof(from), "%u.%u", img->major, img->minor);
    snprintf(to, sizeof(to), "%u.%u", XKVM_LU_MAJOR, XKVM_LU_MINOR);
    json_object_object_add(r, "from", json_object_new_string(from));
    json_object_object_add(r, "to", json_object_new_string(to));
    json_object_object_add(r, "domains", json_object_new_int((int)ndom));
    json_object_object_add(r, "pid", json_object_new_int(getpid()));
    json_object_object_add(r, "rolled_back", json_object_new_boolean(rollback != NULL));
    if (rollback)
        json_object_object_add(r, "rollback_reason", json_object_new_string(rollback));
    json_object_object_add(r, "downtime_ms", json_object_new_double(downtime_ms));
    struct json_object *p = json_object_new_object();
    static const struct { const char *name; size_t off; } fields[] = {
        { "prebuild", offsetof(struct phases, prebuild) },
        { "pause", offsetof(struct phases, pause) },
        { "save", offsetof(struct phases, save) },
        { "exec_prep", offsetof(struct phases, exec_prep) },
        { "exec", offsetof(struct phases, exec) },
        { "validate", offsetof(struct phases, validate) },
        { "startup", offsetof(struct phases, startup) },
        { "pass0", offsetof(struct phases, pass0) },
        { "verify", offsetof(struct phases, verify) },
        { "pass1", offsetof(struct phases, pass1) },
        { "pass2", offsetof(struct phases, pass2) },
        { "unpause", offsetof(struct phases, unpause) },
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        double v;
        memcpy(&v, (const char *)ph + fields[i].off, sizeof(v));
        json_object_object_add(p, fields[i].name, json_object_new_double(v));
    }
    json_object_object_add(r, "phases_ms", p);
    control_write_json(fd, r);
}

static double ms(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e6 : 0;
}

/* Find the role's fd in the image; it must be open here. */
static int image_fd(const struct xkvm_lu_image *img, unsigned role)
{
    int fd = img->fds[role];
    return fd >= 0 && fcntl(fd, F_GETFD) >= 0 ? fd : -1;
}

/* Beside: the old binary's fd came along too; nothing execs it here. */
static int old_binary_fd_of(const struct xkvm_lu_image *img)
{
    return image_fd(img, XKVM_LU_FD_OLD_BINARY);
}

/*
 * A failure before any domain ran again: the first time, exec the old binary (does not
 * return); already the rollback, say why and return rc.
 */
static int resume_failed(const char *rollback, int rc, const char *why)
{
    if (!rollback)
        roll_back(why);
    log_err("live update: %s", why);
    return rc;
}

/* The rollback's argv: ours, without any earlier --lu-rollback, plus the reason. */
static void prepare_rollback(const char *rollback, int argc, char **argv)
{
    rollback_argv = calloc((size_t)argc + 3, sizeof(*rollback_argv));
    int k = 0;
    for (int i = 0; rollback_argv && i < argc; i++) {
        if (!strcmp(argv[i], "--lu-rollback") && i + 1 < argc) {
            i++;
            continue;
        }
        rollback_argv[k++] = argv[i];
    }
    if (rollback_argv) {
        rollback_argv[k++] = "--lu-rollback";
        rollback_argv[k++] = rollback_reason;
    }
    const char *f = getenv("XKVM_LU_FAULT");
    fault = f && *f ? strdup(f) : NULL;
    unsetenv("XKVM_LU_FAULT");      /* never for the rollback */
    if (!rollback && rollback_argv)
        crash_handlers(true);
    else
        fault = NULL;
    if (rollback)
        log_warn("live update rolled back: %s; restoring the domains here", rollback);
}

/* The image, mapped and checked whole. 0, or -errno with why. */
static int read_image(int img_fd, uint8_t **buf, size_t *len, struct xkvm_lu_image *img,
                      char *why, size_t whylen)
{
    struct stat st;
    *buf = MAP_FAILED;
    if (fstat(img_fd, &st) == 0 && st.st_size > 0 && (uint64_t)st.st_size <= XKVM_LU_MAX_IMAGE)
        *buf = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, img_fd, 0);
    if (*buf == MAP_FAILED) {
        snprintf(why, whylen, "cannot read the live-update image");
        return -EIO;
    }
    *len = (size_t)st.st_size;
    if (fault && !strcmp(fault, "bad-image")) {
        uint16_t minor = 0xFFFF;        /* an image "from the future": refused */
        memcpy(*buf + 10, &minor, sizeof(minor));
    }
    char err[512] = "";
    int rc = xkvm_lu_check(*buf, *len, img, err, sizeof(err));
    if (rc) {
        snprintf(why, whylen, "bad live-update image: %s", err);
        munmap(*buf, *len);
        *buf = MAP_FAILED;
    }
    return rc;
}

/* The fds the image names, which must have survived exec. 0 or -EBADF. */
static int take_fds(const struct xkvm_lu_image *img, struct lu_daemon *dm, int *memfd)
{
    *memfd = image_fd(img, XKVM_LU_FD_MACHINE_MEMORY);
    dm->control_listen_fd = image_fd(img, XKVM_LU_FD_CONTROL_LISTEN);
    dm->dom0_listen_fd = image_fd(img, XKVM_LU_FD_DOM0_LISTEN);
    dm->migrate_listen_fd = image_fd(img, XKVM_LU_FD_MIGRATE_LISTEN);
    dm->pidfile_fd = image_fd(img, XKVM_LU_FD_PIDFILE);
    if (*memfd < 0 || dm->control_listen_fd < 0 || dm->dom0_listen_fd < 0 ||
        dm->pidfile_fd < 0 ||
        (img->fds[XKVM_LU_FD_MIGRATE_LISTEN] >= 0 && dm->migrate_listen_fd < 0))
        return -EBADF;
    return 0;
}

/* The host, over the machine memory the image names. 0, or -errno with why. */
static int start_host(const char *rundir, int memfd, const struct xkvm_lu_image *img,
                      char *why, size_t whylen)
{
    char err[512] = "";
    int rc = host_init(rundir, 0, err, sizeof(err));
    if (!rc && (rc = mm_init_inherited(&host.mm, memfd, img->host.nr_frames,
                                       img->host.lu_region_mfn, img->host.lu_region_nr)))
        snprintf(err, sizeof(err), "machine memory: %s", strerror(-rc));
    /* The memory is the old xkvmd's, already resident: only the rule for freed frames. */
    if (!rc)
        host.mm.prealloc = host.memory_prealloc;
    if (rc)
        snprintf(why, whylen, "start-up: %s", err);
    return rc;
}

/*
 * Passes 0, (memory check,) 1 and 2 over every domain, timed into t[0..4]. Pass 0 is
 * first: pass0 after an exec; beside, pass0_final or pass0_rebuild, in the pause, over
 * the VMs built before it. Only a rollback (the old binary, after an exec) goes on
 * past a failed memory check.
 */
static int run_passes(struct lu_dom *doms, unsigned n, const struct xkvm_lu_image *img,
                      const char *rollback, void (*first)(void *), uint64_t t[5], char *err,
                      size_t errlen)
{
    t[0] = host_monotonic_ns();
    int rc = run_pass(first == pass0 ? "pass 0 (VM, p2m, vCPUs)" : "pass 0 (the final state)",
                      doms, n, first, err, errlen);
    if (first != pass0)
        fault_point("pass0");       /* pass0 calls it itself, per domain */
    t[1] = host_monotonic_ns();
    if (!rc && (img->host.flags & XKVM_LU_HOST_VERIFY_MEMORY)) {
        rc = run_pass("memory check", doms, n, verify_memory, err, errlen);
        if (rc && rollback) {
            /* Restoring the guests beats refusing them: say it loudly and go on. */
            log_err("live update rollback: %s", err);
            rc = 0;
        }
    }
    t[2] = host_monotonic_ns();
    if (!rc)
        rc = run_pass("pass 1 (Xen frames, event channels, grants)", doms, n, pass1, err,
                      errlen);
    t[3] = host_monotonic_ns();
    if (!rc)
        rc = run_pass("pass 2 (vCPU and interrupt state)", doms, n, pass2, err, errlen);
    t[4] = host_monotonic_ns();
    return rc;
}

/* Every domain is whole: they run again, those that ran before (by *t_resumed). */
static void resume_domains(struct lu_dom *doms, unsigned n, uint64_t *t_resumed)
{
    for (unsigned i = 0; i < n; i++) {
        doms[i].d->restoring = false;
        domain_unpause(doms[i].d);      /* the hold domain_build took */
    }
    *t_resumed = host_monotonic_ns();
    /* New domids go on after the restored ones, as they would have. */
    for (unsigned i = 0; i < n; i++)
        if (doms[i].rec->domid >= host.next_domid)
            host.next_domid = doms[i].rec->domid + 1u < XKVM_DOMID_LIMIT ?
                              doms[i].rec->domid + 1u : 1;
    domains_changed();
    host_notify();      /* shutdowns not yet acted on: the main loop acts once serving */
}

/* The log line and the client's answer, with the phases of the downtime. */
static void report_resumed(int client, const char *rollback, const struct xkvm_lu_image *img,
                           unsigned n, uint64_t t_start, uint64_t t_valid, const uint64_t t[5],
                           uint64_t t_resume, uint64_t t_resumed)
{
    const struct xkvm_lu_host *h = &img->host;
    struct phases ph = {
        .prebuild = ms(img->t_prebuild, img->t_prebuilt),
        .pause = ms(h->t_pausing, h->t_paused), .save = ms(h->t_paused, h->t_saved),
        .exec_prep = ms(h->t_saved, h->t_exec), .exec = ms(h->t_exec, t_start),
        .validate = ms(t_start, t_valid), .startup = ms(t_valid, t[0]),
        .pass0 = ms(t[0], t[1]), .verify = ms(t[1], t[2]),
        .pass1 = ms(t[2], t[3]), .pass2 = ms(t[3], t[4]), .unpause = ms(t_resume, t_resumed),
    };
    double downtime = ms(h->t_paused, t_resume);
    log_info("live update %u.%u -> %u.%u%s: %u domain(s), downtime %.2f ms (pause %.2f, "
             "save %.2f, exec %.2f, validate %.2f, start-up %.2f, pass0 %.2f, pass1 %.2f, "
             "pass2 %.2f); prebuilt before the pause in %.2f ms",
             img->major, img->minor, XKVM_LU_MAJOR, XKVM_LU_MINOR,
             rollback ? " (rolled back)" : "", n, downtime, ph.pause, ph.save,
             ph.exec_prep + ph.exec, ph.validate, ph.startup, ph.pass0, ph.pass1, ph.pass2,
             ph.prebuild);
    char msg[700];
    snprintf(msg, sizeof(msg), "the new xkvmd failed: %s; rolled back, every domain runs on "
             "the old xkvmd", rollback ? rollback : "");
    answer_client(client, !rollback, rollback, msg, img, &ph, downtime, n);
}

/*
 * The rollback failed too (the binary that wrote the image cannot read it back: a
 * bug). Say so, and serve on with what was built kept paused and hidden: the guests'
 * memory stays in this process for whoever can help.
 */
static void report_unrestorable(int client, const char *rollback, const char *err,
                                const struct xkvm_lu_image *img, unsigned n)
{
    log_err("live update rollback failed: %s", err);
    struct phases ph = { 0 };
    char msg[1200];
    snprintf(msg, sizeof(msg), "the new xkvmd failed (%s) and so did the rollback: %s",
             rollback, err);
    answer_client(client, false, rollback, msg, img, &ph, 0, n);
}

/*
 * Done, the domains restored or not: close the client (answered) and the old binary's
 * fd, free the domains' table, release and unmap the image, close its fd.
 */
static void drop_image(int client, int old_binary, struct lu_dom *doms,
                       struct xkvm_lu_image *img, uint8_t *buf, size_t len, int img_fd)
{
    if (client >= 0)
        close(client);
    close(old_binary);
    free(doms);
    xkvm_lu_image_release(img);
    munmap(buf, len);
    close(img_fd);
}

int live_update_resume(const char *fdspec, const char *rollback, const char *rundir,
                       int argc, char **argv, struct lu_daemon *dm)
{
    uint64_t t_start = host_monotonic_ns();
    int img_fd = -1, memfd = -1, rc;
    char tail, why[640] = "";
    if (sscanf(fdspec, "%d,%d%c", &img_fd, &old_binary_fd, &tail) != 2 || img_fd < 0 ||
        old_binary_fd < 0) {
        log_err("--lu-resume %s: expected IMAGE_FD,OLD_BINARY_FD", fdspec);
        return -EINVAL;
    }
    /* The image fd stays open across a rollback's exec: the old binary reads it too. */
    prepare_rollback(rollback, argc, argv);
    fault_point("startup");
    fault_point("startup-crash");

    uint8_t *buf;
    size_t len = 0;
    struct xkvm_lu_image img;
    if ((rc = read_image(img_fd, &buf, &len, &img, why, sizeof(why))))
        return resume_failed(rollback, rc, why);
    if (img.host.flags & XKVM_LU_HOST_PREBUILD)
        return resume_failed(rollback, -EINVAL, "a prebuild image (--lu-beside's) given to "
                             "--lu-resume");
    uint64_t t_valid = host_monotonic_ns();
    int client = image_fd(&img, XKVM_LU_FD_CLIENT);
    if ((rc = take_fds(&img, dm, &memfd)))
        return resume_failed(rollback, rc, "an fd the image names did not survive exec");
    if ((rc = start_host(rundir, memfd, &img, why, sizeof(why))))
        return resume_failed(rollback, rc, why);
    unsigned n = img.nr_domains;
    struct lu_dom *doms = calloc(n ? n : 1, sizeof(*doms));
    if (!doms)
        return resume_failed(rollback, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < n; i++)
        doms[i] = (struct lu_dom){ .rec = &img.domains[i], .shutdown_code = -1 };

    uint64_t t[5];
    char err[512] = "";
    if ((rc = run_passes(doms, n, &img, rollback, pass0, t, err, sizeof(err)))) {
        if (!rollback)
            roll_back(err);
        crash_handlers(false);
        report_unrestorable(client, rollback, err, &img, n);
    } else {
        fault_point("before-unpause");
        crash_handlers(false);
        uint64_t t_resume = host_monotonic_ns(), t_resumed;
        resume_domains(doms, n, &t_resumed);
        mm_lu_finish(&host.mm);
        report_resumed(client, rollback, &img, n, t_start, t_valid, t, t_resume, t_resumed);
    }
    /* The guests run (or never will here): the old address space may go now. */
    lu_holder_release();
    drop_image(client, old_binary_fd, doms, &img, buf, len, img_fd);
    old_binary_fd = -1;
    return 0;
}

/* ---- beside: started next to the old xkvmd (docs/live-update.md, "Beside") ---- */

/* The final image's domain i is the prebuilt one: the same DOMAIN record and extents. */
static bool prebuilt_matches(const struct xkvm_lu_domain *pre, const struct xkvm_lu_domain *fin)
{
    return pre->domid == fin->domid && pre->config_len == fin->config_len &&
           !memcmp(pre->config_json, fin->config_json, fin->config_len) &&
           pre->nr_extents == fin->nr_extents &&
           !memcmp(pre->extents, fin->extents, fin->nr_extents * sizeof(fin->extents[0]));
}

/*
 * Take over the prebuilt domains for the final image's records. A domain that changed
 * between the two (its p2m, its configuration or its state) is destroyed here (its
 * frames freed in the region's allocator, never punched: the old xkvmd may still need
 * them) and built again by pass0_rebuild, in the pause. 0, or -EAGAIN with why when the
 * set of domains itself changed (the old xkvmd then keeps them).
 */
static int adopt_prebuilt(struct lu_dom *doms, const struct xkvm_lu_image *pre,
                          const struct xkvm_lu_image *fin, unsigned *rebuilt, char *why,
                          size_t whylen)
{
    if (pre->nr_domains != fin->nr_domains) {
        snprintf(why, whylen, "the domains changed during the update (%u, then %u): try "
                 "again", pre->nr_domains, fin->nr_domains);
        return -EAGAIN;
    }
    *rebuilt = 0;
    for (unsigned i = 0; i < fin->nr_domains; i++) {
        if (pre->domains[i].domid != fin->domains[i].domid) {
            snprintf(why, whylen, "the domains changed during the update (d%u, then d%u): "
                     "try again", pre->domains[i].domid, fin->domains[i].domid);
            return -EAGAIN;
        }
        bool changed = !prebuilt_matches(&pre->domains[i], &fin->domains[i]) ||
                       (fault && !strcmp(fault, "changed") && i == 0);  /* tests */
        if (changed && doms[i].d) {
            log_info("live update beside: d%u changed while it was built: built again",
                     fin->domains[i].domid);
            domain_destroy(doms[i].d);
            doms[i].d = NULL;
            (*rebuilt)++;
        }
        doms[i].rec = &fin->domains[i];
    }
    return 0;
}

/* Pass 0 once more, in the pause: the final DOMAIN record's state; a changed domain whole. */
static void pass0_rebuild(void *arg)
{
    struct lu_dom *ld = arg;
    if (ld->d)
        parse_domain(ld);
    else
        pass0(ld);
}

static int beside_image(int fd, uint8_t **buf, size_t *len, struct xkvm_lu_image *img,
                        bool prebuild, char *why, size_t whylen)
{
    int rc = read_image(fd, buf, len, img, why, whylen);
    if (!rc && !(img->host.flags & XKVM_LU_HOST_PREBUILD) != !prebuild) {
        snprintf(why, whylen, "the %s image is%s a prebuild image", prebuild ? "first" : "final",
                 prebuild ? " not" : "");
        rc = -EINVAL;
    }
    return rc;
}

/* Build every VM while the old xkvmd runs the guests; PREBUILT when done. */
static int beside_prebuild(int pre_fd, const char *rundir, struct lu_daemon *dm,
                           struct xkvm_lu_image *pre, uint8_t **pbuf, size_t *plen,
                           struct lu_dom **out, uint64_t *t_built)
{
    char why[640] = "", err[512] = "";
    int memfd = -1, rc = beside_image(pre_fd, pbuf, plen, pre, true, why, sizeof(why));
    if (!rc && (rc = take_fds(pre, dm, &memfd)))
        snprintf(why, sizeof(why), "an fd the image names was not passed on");
    if (!rc)
        rc = start_host(rundir, memfd, pre, why, sizeof(why));
    if (rc)
        roll_back(why);
    unsigned n = pre->nr_domains;
    struct lu_dom *doms = calloc(n ? n : 1, sizeof(*doms));
    if (!doms)
        roll_back("out of memory");
    for (unsigned i = 0; i < n; i++)
        doms[i] = (struct lu_dom){ .rec = &pre->domains[i], .shutdown_code = -1 };
    if ((rc = run_pass("pass 0 (VM, p2m, vCPUs)", doms, n, pass0, err, sizeof(err))))
        roll_back(err);
    *t_built = host_monotonic_ns();
    log_info("live update beside: %u domain(s) built while the guests run", n);
    if (lu_beside_say(beside_sock, "PREBUILT"))
        _exit(0);       /* the old xkvmd gave up: nothing here was ever used */
    *out = doms;
    return 0;
}

int live_update_beside(const char *spec, const char *rundir, int argc, char **argv,
                       struct lu_daemon *dm)
{
    (void)argc;
    (void)argv;
    uint64_t t_begin = host_monotonic_ns();
    int pre_fd = -1;
    char tail;
    if (sscanf(spec, "%d,%d%c", &beside_sock, &pre_fd, &tail) != 2 || beside_sock < 0 ||
        pre_fd < 0) {
        log_err("--lu-beside %s: expected SOCKET_FD,IMAGE_FD", spec);
        return -EINVAL;
    }
    fcntl(beside_sock, F_SETFD, FD_CLOEXEC);
    const char *f = getenv("XKVM_LU_FAULT");
    fault = f && *f ? strdup(f) : NULL;
    unsetenv("XKVM_LU_FAULT");
    fault_point("startup");
    fault_point("startup-crash");

    struct xkvm_lu_image pre, img;
    uint8_t *pbuf, *buf;
    size_t plen = 0, len = 0;
    struct lu_dom *doms;
    uint64_t t_built;
    beside_prebuild(pre_fd, rundir, dm, &pre, &pbuf, &plen, &doms, &t_built);
    close(pre_fd);

    /* The old xkvmd pauses every domain and sends the image; or gives up (EOF). */
    int img_fd = lu_beside_take_final(beside_sock);
    if (img_fd == -EMFILE || img_fd == -EPROTO)
        roll_back("the image's fd did not arrive");
    if (img_fd < 0) {
        log_info("live update beside: the old xkvmd keeps the domains; exiting");
        _exit(0);
    }
    uint64_t t_start = host_monotonic_ns();
    char why[640] = "", err[512] = "";
    int rc = beside_image(img_fd, &buf, &len, &img, false, why, sizeof(why));
    if (!rc && (img.host.nr_frames != pre.host.nr_frames ||
                img.host.lu_region_mfn != pre.host.lu_region_mfn ||
                img.host.lu_region_nr != pre.host.lu_region_nr)) {
        snprintf(why, sizeof(why), "the final image's machine memory or live-update region "
                 "is not the prebuild image's");
        rc = -EINVAL;
    }
    if (rc)
        roll_back(why);
    uint64_t t_valid = host_monotonic_ns();
    unsigned rebuilt;
    if ((rc = adopt_prebuilt(doms, &pre, &img, &rebuilt, why, sizeof(why))))
        roll_back(why);
    unsigned n = img.nr_domains;
    uint64_t t[5];
    if (run_passes(doms, n, &img, NULL, rebuilt ? pass0_rebuild : pass0_final, t, err,
                   sizeof(err)))
        roll_back(err);
    fault_point("before-unpause");

    /* The commit is the old xkvmd's: GO, or its death after READY (nobody else can). */
    if (lu_beside_say(beside_sock, "READY"))
        log_warn("live update beside: the old xkvmd went away before it heard READY");
    int go = lu_beside_await_go(beside_sock);
    if (go < 0)
        roll_back("the old xkvmd answered READY with something else than GO");
    if (go > 0)
        log_warn("live update beside: the old xkvmd is gone without GO: the domains run here");
    uint64_t t_resume = host_monotonic_ns(), t_resumed;
    resume_domains(doms, n, &t_resumed);
    daemon_write_pid(dm->pidfile_fd);      /* before anyone hears of the new pid */
    /* It exits now: once it has (EOF), it has told systemd that this pid is the service. */
    struct pollfd p = { .fd = beside_sock, .events = POLLIN };
    for (uint64_t until = mono_ms() + 5000; mono_ms() < until;)
        if (poll(&p, 1, 100) > 0 && recv(beside_sock, &tail, 1, MSG_DONTWAIT) <= 0)
            break;
    close(beside_sock);
    beside_sock = -1;
    mm_lu_finish(&host.mm);     /* the old xkvmd's own frames: it is gone */

    int client = image_fd(&img, XKVM_LU_FD_CLIENT);
    img.t_prebuild = img.t_prebuild ? img.t_prebuild : t_begin;
    img.t_prebuilt = t_built;       /* prebuild: from the first walk to the VMs built */
    report_resumed(client, NULL, &img, n, t_start, t_valid, t, t_resume, t_resumed);
    drop_image(client, old_binary_fd_of(&img), doms, &img, buf, len, img_fd);
    xkvm_lu_image_release(&pre);
    munmap(pbuf, plen);
    return 0;
}
