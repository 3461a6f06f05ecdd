/*
 * Live update, the old binary's half: check the new binary, pause, serialise every
 * domain into the image, and exec. See live_update.h and docs/live-update.md.
 */
#include "migrate/local_mem.h"
#include "migrate/live_update.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv/domain.h"
#include "hv/gnttab.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/toolstack_xs.h"
#include "migrate/lu_internal.h"
#include "migrate/migrate.h"
#include "migrate/pv_save.h"
#include "util/domcfg.h"
#include "util/log.h"
#include "util/notify.h"
#include "xkvm/ctx.h"
#include "xkvm/live_update.h"

#define ACCEPTS_TIMEOUT_MS  10000u
/* Beside: how long the new xkvmd may take to build the VMs, and to run them. */
#define BESIDE_PREBUILD_TIMEOUT_MS  120000u
#define BESIDE_RUNNING_TIMEOUT_MS   60000u
/* The fds a live update keeps across exec: its FD records and the image. */
#define LU_KEPT_FDS_MAX 9

static struct lu_daemon daemon_info = { .control_listen_fd = -1, .dom0_listen_fd = -1,
                                        .migrate_listen_fd = -1, .pidfile_fd = -1,
                                        .self_fd = -1 };

void live_update_init(const struct lu_daemon *dm)
{
    daemon_info = *dm;
}

const char *live_update_self_path(void)
{
    return daemon_info.self_path;
}

int live_update_accepts_main(const char *version)
{
    unsigned major, minor;
    char tail, why[200];
    if (sscanf(version, "%u.%u%c", &major, &minor, &tail) != 2) {
        printf("no: '%s' is not MAJOR.MINOR\n", version);
        return 2;
    }
    bool ok = xkvm_lu_accepts(major, minor, why, sizeof(why));
    /* "beside": this binary can be started with --lu-beside (docs/live-update.md). */
    printf("%s: %s%s\n", ok ? "yes" : "no", why, ok ? "; beside" : "");
    return ok ? 0 : 1;
}

/*
 * Run `binary --lu-accepts M.m` and wait for its verdict (bounded). 0 if it accepts;
 * otherwise -errno with its answer in err.
 */
static int ask_binary(const char *binary, bool *can_beside, char *err, size_t errlen)
{
    *can_beside = false;
    if (access(binary, X_OK) < 0) {
        snprintf(err, errlen, "%s: %s", binary, strerror(errno));
        return -errno;
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -errno;
    }
    char ver[32];
    snprintf(ver, sizeof(ver), "%u.%u", XKVM_LU_MAJOR, XKVM_LU_MINOR);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        execl(binary, binary, "--lu-accepts", ver, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        close(out[0]);
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -EAGAIN;
    }
    char answer[256] = "";
    size_t n = 0;
    uint64_t end = host_monotonic_ns() + ACCEPTS_TIMEOUT_MS * 1000000ull;
    for (;;) {
        uint64_t now = host_monotonic_ns();
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        if (now >= end || poll(&p, 1, (int)((end - now) / 1000000) + 1) == 0) {
            kill(pid, SIGKILL);
            snprintf(answer, sizeof(answer), "(no answer in %u s)", ACCEPTS_TIMEOUT_MS / 1000);
            break;
        }
        ssize_t r = read(out[0], answer + n, sizeof(answer) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (n += (size_t)r) == sizeof(answer) - 1)
            break;
    }
    answer[n] = '\0';
    answer[strcspn(answer, "\n")] = '\0';
    close(out[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        *can_beside = strstr(answer, "; beside") != NULL;
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(err, errlen, "%s cannot be run", binary);
    else
        snprintf(err, errlen, "%s refuses this xkvmd's image (version %s): %s", binary, ver,
                 answer[0] ? answer : "no reason given");
    return -EPROTO;
}

/* ---- serialising one domain (on a thread of its own) ---- */

/* Is frame mfn's page hashed: RAM or a toolstack page of the p2m, not left out? */
static bool hashed(struct domain *d, uint64_t gfn, uint64_t mfn, const uint64_t *skip,
                   size_t nskip, size_t *k)
{
    if (mfn == INVALID_MFN)
        return false;
    uint8_t t = mm_frame_type(host_mm(), mfn);
    if (t != FRAME_RAM && t != FRAME_SPECIAL)
        return false;
    while (*k < nskip && skip[*k] < gfn)
        (*k)++;
    return !(*k < nskip && skip[*k] == gfn);
}

/* Read with pread, so holes in the memfd are not faulted in. */
int lu_memory_checksum(struct domain *d, const uint64_t *skip, size_t nskip, uint64_t *sum)
{
    static const size_t chunk = 1u << 20;
    uint64_t *buf = malloc(chunk);
    if (!buf)
        return -ENOMEM;
    uint64_t h = 0x9E3779B97F4A7C15ull;
    uint64_t gfn = 0;
    size_t k = 0;
    int rc = 0;
    while (!rc && gfn < d->p2m.nr_gfns) {
        uint64_t mfn = p2m_lookup(&d->p2m, gfn);
        if (!hashed(d, gfn, mfn, skip, nskip, &k)) {
            gfn++;
            continue;
        }
        uint64_t n = 1;
        size_t k2 = k;
        while (n < chunk / XKVM_PAGE_SIZE && gfn + n < d->p2m.nr_gfns &&
               p2m_lookup(&d->p2m, gfn + n) == mfn + n &&
               mm_frame_type(host_mm(), mfn + n) == mm_frame_type(host_mm(), mfn) &&
               hashed(d, gfn + n, mfn + n, skip, nskip, &k2))
            n++;
        size_t len = (size_t)(n << XKVM_PAGE_SHIFT);
        if (pread(host_mm()->fd, buf, len, (off_t)(mfn << XKVM_PAGE_SHIFT)) != (ssize_t)len) {
            rc = -EIO;
            break;
        }
        h ^= gfn * 0xff51afd7ed558ccdull;
        for (size_t i = 0; i < len / 8; i++) {
            h ^= buf[i];
            h *= 0x100000001B3ull;
            h ^= h >> 29;
        }
        gfn += n;
    }
    free(buf);
    *sum = h;
    return rc;
}

int lu_dom0_mapped_gfns(struct domain *d, uint64_t **gfns, size_t *n)
{
    size_t cap = 64, k = 0;
    uint64_t *g = malloc(cap * sizeof(*g));
    if (!g)
        return -ENOMEM;
    for (uint64_t gfn = 0; gfn < d->p2m.nr_gfns; gfn++) {
        uint64_t mfn = p2m_lookup(&d->p2m, gfn);
        if (mfn == INVALID_MFN || !mm_frame_foreign_mapped(host_mm(), mfn))
            continue;
        if (k == cap) {
            uint64_t *ng = realloc(g, (cap *= 2) * sizeof(*g));
            if (!ng) {
                free(g);
                return -ENOMEM;
            }
            g = ng;
        }
        g[k++] = gfn;
    }
    *gfns = g;
    *n = k;
    return 0;
}

/* RAM and toolstack pages, as runs that are contiguous in both gfn and mfn. */
static int p2m_extents(struct domain *d, struct xkvm_lu_extent **out, size_t *nr)
{
    size_t n = 0, cap = 16;
    struct xkvm_lu_extent *x = malloc(cap * sizeof(*x));
    if (!x)
        return -ENOMEM;
    for (uint64_t g = 0; g < d->p2m.nr_gfns; g++) {
        uint64_t mfn = p2m_lookup(&d->p2m, g);
        if (mfn == INVALID_MFN)
            continue;
        uint8_t t = mm_frame_type(host_mm(), mfn);
        uint32_t lt = t == FRAME_RAM ? XKVM_LU_FRAME_RAM :
                      t == FRAME_SPECIAL ? XKVM_LU_FRAME_SPECIAL : 0;
        if (!lt)
            continue;       /* shared_info, grant frames: in the domain context */
        if (n && x[n - 1].gfn + x[n - 1].nr == g && x[n - 1].mfn + x[n - 1].nr == mfn &&
            x[n - 1].type == lt) {
            x[n - 1].nr++;
            continue;
        }
        if (n == cap) {
            struct xkvm_lu_extent *nx = realloc(x, (cap *= 2) * sizeof(*x));
            if (!nx) {
                free(x);
                return -ENOMEM;
            }
            x = nx;
        }
        x[n++] = (struct xkvm_lu_extent){ .gfn = g, .mfn = mfn, .nr = 1, .type = lt };
    }
    *out = x;
    *nr = n;
    return 0;
}

struct save_job {
    struct domain *d;
    bool verify;
    /* Prepared before the pause, good while the p2m's generation is still gen. */
    struct xkvm_lu_extent *x;
    size_t nx;
    uint64_t gen;
    struct xkvm_lu_writer w;
    int rc;
    char err[256];
};

/* Before the pause: the extents, with the generation of the p2m they describe. */
static void run_prebuild_job(void *arg)
{
    struct save_job *j = arg;
    p2m_hold(&j->d->p2m);
    j->gen = j->d->p2m.gen;
    if (p2m_extents(j->d, &j->x, &j->nx))
        j->x = NULL;            /* the save computes them again */
    p2m_release(&j->d->p2m);
}

/* DOMAIN: the config, and how it stands (paused by the toolstack, shut down). */
static int write_domain_record(struct domain *d, struct xkvm_lu_writer *w)
{
    struct domrec dr = { .members = DOMREC_CONFIG | DOMREC_PAUSED | DOMREC_SHUTDOWN,
                         .cfg = &d->cfg };
    pthread_mutex_lock(&d->lock);
    dr.paused = d->toolstack_pauses > 0;
    dr.shutdown_code = d->shutdown_code;
    dr.shutdown_handled = d->shutdown_handled;
    pthread_mutex_unlock(&d->lock);
    char *js = domrec_to_json(&dr);
    if (!js)
        return -ENOMEM;
    xkvm_lu_write(w, XKVM_LU_REC_DOMAIN, d->domid, js, strlen(js));
    free(js);
    return 0;
}

static int save_domain(struct save_job *j)
{
    struct domain *d = j->d;
    struct xkvm_lu_writer *w = &j->w;
    int rc = write_domain_record(d, w);
    if (rc)
        return rc;
    /* Paused: nothing changes the p2m now. Changed since the prebuild: again. */
    if (!j->x || d->p2m.gen != j->gen) {
        free(j->x);
        j->x = NULL;
        if ((rc = p2m_extents(d, &j->x, &j->nx)))
            return rc;
    }
    xkvm_lu_write(w, XKVM_LU_REC_P2M, d->domid, j->x, j->nx * sizeof(*j->x));

    /*
     * HVM_PARAMS: a copy of DOMAIN_CONTEXT's, which is the one a restore applies;
     * written because every reader of this major requires the record.
     */
    struct xkvm_ctx_hvm_param sp[HVM_NR_PARAMS];
    struct xkvm_lu_hvm_param lp[HVM_NR_PARAMS];
    uint32_t np = migrate_hvm_params(d, sp);
    for (uint32_t i = 0; i < np; i++)
        lp[i] = (struct xkvm_lu_hvm_param){ .index = (uint32_t)sp[i].index, .value = sp[i].value };
    xkvm_lu_write(w, XKVM_LU_REC_HVM_PARAMS, d->domid, lp, np * sizeof(lp[0]));

    void *hvm = NULL;
    size_t hlen = 0;
    if ((rc = migrate_hvm_context(d, &hvm, &hlen, j->err, sizeof(j->err))))
        return rc;
    xkvm_lu_write(w, XKVM_LU_REC_HVM_CONTEXT, d->domid, hvm, hlen);
    free(hvm);

    struct xkvm_ctx_writer cw;
    xkvm_ctx_writer_init_buffer(&cw);
    rc = pv_save_context(d, &cw, j->err, sizeof(j->err));
    if (!rc) {
        size_t clen = 0;
        const uint8_t *img = xkvm_ctx_writer_data(&cw, &clen);
        xkvm_lu_write(w, XKVM_LU_REC_DOMAIN_CONTEXT, d->domid, img, clen);
    }
    xkvm_ctx_writer_release(&cw);
    if (!rc && j->verify) {
        uint64_t *skip = NULL;
        size_t nskip = 0;
        rc = lu_dom0_mapped_gfns(d, &skip, &nskip);
        uint64_t *body = rc ? NULL : malloc((nskip + 1) * sizeof(uint64_t));
        if (!rc && !body)
            rc = -ENOMEM;
        if (!rc && !(rc = lu_memory_checksum(d, skip, nskip, &body[0]))) {
            memcpy(body + 1, skip, nskip * sizeof(uint64_t));
            xkvm_lu_write(w, XKVM_LU_REC_MEM_CHECKSUM, d->domid, body,
                          (nskip + 1) * sizeof(uint64_t));
        }
        if (rc)
            snprintf(j->err, sizeof(j->err), "checksumming memory: %s", strerror(-rc));
        free(body);
        free(skip);
    }
    if (!rc && w->failed)
        rc = -ENOMEM;
    return rc;
}

static void run_save_job(void *arg)
{
    struct save_job *j = arg;
    j->rc = save_domain(j);
    if (j->rc && !j->err[0])
        snprintf(j->err, sizeof(j->err), "%s", strerror(-j->rc));
}

/* ---- the hand-over ---- */

/*
 * Close-on-exec every fd but those in keep[]; clear it on those, and check that it is
 * clear: an fd lost at exec would lose the hand-over. 0 or -errno.
 */
static int mark_fds_for_exec(const int *keep, unsigned nkeep)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        int dfd = dirfd(dir);
        struct dirent *e;
        while ((e = readdir(dir))) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (*end || fd <= STDERR_FILENO || fd == dfd)
                continue;
            int fl = fcntl((int)fd, F_GETFD);
            if (fl >= 0)
                fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
        }
        closedir(dir);
    }
    for (unsigned i = 0; i < nkeep; i++) {
        int fl = fcntl(keep[i], F_GETFD);
        if (fl < 0 || fcntl(keep[i], F_SETFD, fl & ~FD_CLOEXEC) < 0 ||
            (fcntl(keep[i], F_GETFD) & FD_CLOEXEC))
            return fl < 0 ? -EBADF : -errno;
    }
    return 0;
}

static void resume_all(struct domain **doms, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        domain_unpause(doms[i]);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The domains of a live update: every one, each at rest. */
struct lu_run {
    const struct live_update_request *rq;
    bool beside;                /* the mode chosen: beside, or exec */
    struct domain **doms;
    unsigned n;
    struct xkvm_lu_host hr;
    uint64_t t_prebuild, t_prebuilt;
    struct save_job *jobs;
    int img_fd;
    size_t img_len;
    int keep[LU_KEPT_FDS_MAX];
    unsigned nkeep;
    char *err;
    size_t errlen;
};

/*
 * Grant mappings between guests are not carried: the next xkvmd rebuilds each p2m
 * from the domain's own frames, and a mapping names another domain's. Checked before
 * the pause and again once every domain is paused (one could map in between).
 */
static int refuse_grant_maps(struct lu_run *r)
{
    for (unsigned i = 0; i < r->n; i++) {
        uint32_t maps = gnttab_foreign_maps(r->doms[i]);
        if (maps) {
            snprintf(r->err, r->errlen, "domain %u maps %u grant(s) of other domains "
                     "(GNTTABOP_map_grant_ref), which live update cannot carry: "
                     "try again when they are unmapped", r->doms[i]->domid, maps);
            return -EBUSY;
        }
        /* A held event page its gfn no longer maps: neither binary could restore it,
         * and the rollback would lose every domain (event.h). */
        uint64_t gfn = event_frame_unreachable(r->doms[i]);
        if (gfn != INVALID_GFN) {
            snprintf(r->err, r->errlen, "domain %u gave back or replaced gfn 0x%llx, which "
                     "still holds its event state (vcpu_info or a FIFO event page): live "
                     "update cannot carry it (nor can save or migration); destroy it first",
                     r->doms[i]->domid, (unsigned long long)gfn);
            return -EBUSY;
        }
    }
    return 0;
}

/* Every domain, if each is at rest (nothing half built, moving or held). 0 or -EBUSY. */
static int collect_domains(struct lu_run *r)
{
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++) {
        struct domain *d = host.domains[id];
        if (!d)
            continue;
        if (d->migrating || d->restoring || !domain_at_rest(d)) {
            snprintf(r->err, r->errlen, "domain %u is being %s: try again when it is done", id,
                     d->migrating || d->restoring ? "saved, restored or migrated"
                                                  : "built or shut down");
            return -EBUSY;
        }
        r->doms[r->n++] = d;
    }
    return refuse_grant_maps(r);
}

/* What must hold before anything is paused. 0, or -errno with r->err. */
static int check_preconditions(struct lu_run *r)
{
    int rc = collect_domains(r);
    if (!rc)
        rc = local_lu_refusal(r->err, r->errlen);  /* same-host migrations' memory */
    if (rc)
        return rc;
    /* The next binary rebuilds each domain's Xen frames in the region (and a margin). */
    uint64_t need = mm_count_xen_frames(&host.mm) + 64;
    if (host.mm.lu_nr < need) {
        snprintf(r->err, r->errlen, "the live-update region (%llu frames) is too small: "
                 "%u domains need %llu", (unsigned long long)host.mm.lu_nr, r->n,
                 (unsigned long long)need);
        return -ENOSPC;
    }
    bool can_beside;
    if ((rc = ask_binary(r->rq->binary, &can_beside, r->err, r->errlen))) {
        log_warn("live update refused: %s", r->err);
        return rc;
    }
    if (r->rq->mode == LU_MODE_BESIDE && !can_beside) {
        snprintf(r->err, r->errlen, "%s cannot be started beside this xkvmd (an older "
                 "xkvmd): use --exec", r->rq->binary);
        return -ENOTSUP;
    }
    r->beside = r->rq->mode == LU_MODE_BESIDE || (r->rq->mode == LU_MODE_AUTO && can_beside);
    log_info("live update to %s (%s): %u domain(s)", r->rq->binary,
             r->beside ? "beside" : "exec", r->n);
    /* The worker finishes what it has queued: it must not die halfway in xenstored. */
    if (!toolstack_xs_stop()) {
        snprintf(r->err, r->errlen, "the xenstore worker is busy: try again");
        return -EBUSY;
    }
    return 0;
}

static void pause_all(struct lu_run *r)
{
    r->hr.t_pausing = host_monotonic_ns();
    for (unsigned i = 0; i < r->n; i++)
        domain_pause_begin(r->doms[i]);
    for (unsigned i = 0; i < r->n; i++)
        domain_pause_wait(r->doms[i]);
    r->hr.t_paused = host_monotonic_ns();
    migrate_wait_dom0_quiet(r->doms, r->n);
    /* From here nothing writes guest state: timers fire again in the new binary. */
    event_thread_freeze(true);
}

/*
 * While every guest runs: what the save needs that the pause does not change (each
 * domain's extents), in parallel. 0 or -ENOMEM with r->err.
 */
static int prebuild_all(struct lu_run *r)
{
    r->jobs = calloc(r->n ? r->n : 1, sizeof(*r->jobs));
    if (!r->jobs) {
        snprintf(r->err, r->errlen, "out of memory");
        return -ENOMEM;
    }
    r->t_prebuild = host_monotonic_ns();
    for (unsigned i = 0; i < r->n; i++)
        r->jobs[i] = (struct save_job){ .d = r->doms[i], .verify = r->rq->verify_memory };
    lu_parallel(r->n, sizeof(*r->jobs), r->jobs, run_prebuild_job);
    r->t_prebuilt = host_monotonic_ns();
    return 0;
}

/* Serialise every domain, in parallel. 0 or -errno with r->err. */
static int save_all(struct lu_run *r)
{
    lu_parallel_on(r->n, sizeof(*r->jobs), r->jobs, run_save_job, false);   /* computes */
    for (unsigned i = 0; i < r->n; i++)
        if (r->jobs[i].rc) {
            snprintf(r->err, r->errlen, "d%u: %s", r->doms[i]->domid, r->jobs[i].err);
            return r->jobs[i].rc;
        }
    return 0;
}

/* The fds the next binary inherits, as FD records, and in r->keep. */
static void write_fd_records(struct lu_run *r, struct xkvm_lu_writer *w)
{
    const struct { uint32_t role; int fd; } fds[] = {
        { XKVM_LU_FD_MACHINE_MEMORY, host.mm.fd },
        { XKVM_LU_FD_CONTROL_LISTEN, daemon_info.control_listen_fd },
        { XKVM_LU_FD_DOM0_LISTEN, daemon_info.dom0_listen_fd },
        { XKVM_LU_FD_MIGRATE_LISTEN, daemon_info.migrate_listen_fd },
        { XKVM_LU_FD_PIDFILE, daemon_info.pidfile_fd },
        { XKVM_LU_FD_CLIENT, r->rq->client_fd },
        { XKVM_LU_FD_OLD_BINARY, daemon_info.self_fd },
    };
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i].fd >= 0) {
            int32_t f = fds[i].fd;
            xkvm_lu_write(w, XKVM_LU_REC_FD, fds[i].role, &f, sizeof(f));
            r->keep[r->nkeep++] = fds[i].fd;
        }
}

/* xkvmd's own arguments, NUL-separated, for the next binary. false if out of memory. */
static bool write_argv_record(struct xkvm_lu_writer *w)
{
    size_t alen = 0;
    for (int i = 0; i < daemon_info.argc; i++)
        alen += strlen(daemon_info.argv[i]) + 1;
    char *args = malloc(alen ? alen : 1), *ap = args;
    for (int i = 0; args && i < daemon_info.argc; i++)
        ap = stpcpy(ap, daemon_info.argv[i]) + 1;
    if (args)
        xkvm_lu_write(w, XKVM_LU_REC_ARGV, 0, args, alen);
    free(args);
    return args != NULL;
}

/* A prebuild image's domain: DOMAIN and P2M, as they stand while the guests run. */
static int write_prebuilt_domain(struct save_job *j, struct xkvm_lu_writer *w)
{
    int rc = write_domain_record(j->d, w);
    if (!rc && !j->x)
        rc = -ENOMEM;   /* the prebuild could not walk it: no beside without it */
    if (!rc)
        xkvm_lu_write(w, XKVM_LU_REC_P2M, j->d->domid, j->x, j->nx * sizeof(*j->x));
    return rc;
}

/*
 * The image (HOST, the fds, our arguments, the domains, END) in a new memfd, *fd. The
 * prebuild image (beside, written while the guests run) has each domain's DOMAIN and
 * P2M only.
 */
static int write_image(struct lu_run *r, bool prebuild, int *fd)
{
    *fd = memfd_create(prebuild ? "xkvm-live-update-prebuild" : "xkvm-live-update",
                       MFD_CLOEXEC);
    if (*fd < 0) {
        snprintf(r->err, r->errlen, "memfd: %s", strerror(errno));
        return -errno;
    }
    struct xkvm_lu_writer w;
    xkvm_lu_writer_init(&w, 0);
    struct xkvm_lu_host hr = r->hr;
    hr.nr_frames = host.mm.nr_frames;
    hr.lu_region_mfn = host.mm.lu_mfn;
    hr.lu_region_nr = host.mm.lu_nr;
    hr.nr_domains = r->n;
    hr.flags = prebuild ? XKVM_LU_HOST_PREBUILD :
               r->rq->verify_memory ? XKVM_LU_HOST_VERIFY_MEMORY : 0;
    xkvm_lu_write(&w, XKVM_LU_REC_HOST, 0, &hr, sizeof(hr));
    r->nkeep = 0;
    write_fd_records(r, &w);
    bool args_ok = write_argv_record(&w);
    uint64_t times[2] = { r->t_prebuild, r->t_prebuilt };
    xkvm_lu_write(&w, XKVM_LU_REC_TIMES, 0, times, sizeof(times));
    int rc = 0;
    for (unsigned i = 0; i < r->n && !rc; i++)
        if (prebuild)
            rc = write_prebuilt_domain(&r->jobs[i], &w);
        else
            xkvm_lu_append_records(&w, &r->jobs[i].w);
#ifdef XKVM_LU_TEST_NEXT
    uint64_t next[2] = { 0x4e455854u, r->n };
    xkvm_lu_write(&w, XKVM_LU_REC_TEST_NEXT, 0, next, sizeof(next));
#endif
    if (rc || !args_ok || xkvm_lu_finish(&w)) {
        rc = -ENOMEM;
        snprintf(r->err, r->errlen, "out of memory for the image");
    }
    if (!rc && !prebuild) {
        r->hr.t_saved = host_monotonic_ns();       /* in place in HOST, the first record */
        memcpy(w.buf + XKVM_LU_HDR_SIZE + XKVM_LU_RHDR_SIZE +
               offsetof(struct xkvm_lu_host, t_saved), &r->hr.t_saved, sizeof(r->hr.t_saved));
    }
    if (!rc && (rc = write_all(*fd, w.buf, w.len)))
        snprintf(r->err, r->errlen, "writing the image: %s", strerror(-rc));
    if (!prebuild)
        r->img_len = w.len;
    xkvm_lu_writer_release(&w);
    return rc;
}

/*
 * The holder of this address space across the exec (lu_holder.c), given every KVM fd;
 * its pipe joins the fds kept. -1 if there is none.
 */
static int start_holder(struct lu_run *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->n; i++)
        n += 1 + r->doms[i]->nr_vcpus;
    int *fds = malloc((n ? n : 1) * sizeof(*fds)), wfd = -1;
    if (!fds)
        return -1;
    n = 0;
    for (unsigned i = 0; i < r->n; i++) {
        struct domain *d = r->doms[i];
        if (d->vm_fd >= 0)
            fds[n++] = d->vm_fd;
        for (unsigned v = 0; v < d->nr_vcpus; v++)
            if (d->vcpus[v].fd >= 0)
                fds[n++] = d->vcpus[v].fd;
    }
    if ((wfd = lu_holder_start(fds, n)) >= 0)
        r->keep[r->nkeep++] = wfd;
    free(fds);
    return wfd;
}

/* exec the next binary with the image. Returns only if that failed: -errno. */
static int exec_next(struct lu_run *r)
{
    char fdarg[64];
    snprintf(fdarg, sizeof(fdarg), "%d,%d", r->img_fd, daemon_info.self_fd);
    char **argv = calloc((size_t)daemon_info.argc + 3, sizeof(*argv));
    if (!argv) {
        snprintf(r->err, r->errlen, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < daemon_info.argc; i++)
        argv[i] = daemon_info.argv[i];
    argv[daemon_info.argc] = "--lu-resume";
    argv[daemon_info.argc + 1] = fdarg;
    argv[0] = (char *)r->rq->binary;
    if (r->rq->inject_fault)
        setenv("XKVM_LU_FAULT", r->rq->inject_fault, 1);
    else
        unsetenv("XKVM_LU_FAULT");
    r->keep[r->nkeep++] = r->img_fd;
    int holder = start_holder(r);
    int rc = mark_fds_for_exec(r->keep, r->nkeep);
    if (rc) {
        snprintf(r->err, r->errlen, "keeping the fds across exec: %s", strerror(-rc));
    } else {
        log_info("live update: %u domain(s) paused in %.2f ms, image of %zu bytes in "
                 "%.2f ms; exec %s", r->n, (double)(r->hr.t_paused - r->hr.t_pausing) / 1e6,
                 r->img_len, (double)(r->hr.t_saved - r->hr.t_paused) / 1e6, r->rq->binary);
        /* t_exec, in place in the HOST record (the first one). */
        uint64_t t_exec = host_monotonic_ns();
        (void)!pwrite(r->img_fd, &t_exec, sizeof(t_exec), XKVM_LU_HDR_SIZE +
                      XKVM_LU_RHDR_SIZE + offsetof(struct xkvm_lu_host, t_exec));
        /* Under systemd: reloading until the new binary (this pid) says READY=1. */
        notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=live update: exec %s",
                     (unsigned long long)(host_monotonic_ns() / 1000), r->rq->binary);
        execv(r->rq->binary, argv);
        rc = -errno;
        snprintf(r->err, r->errlen, "exec %s: %s", r->rq->binary, strerror(errno));
        unsetenv("XKVM_LU_FAULT");
    }
    if (holder >= 0) {
        r->nkeep--;
        lu_holder_cancel(holder);
    }
    free(argv);
    return rc;
}

/*
 * Beside, while every guest runs: start the new xkvmd next to this one with the
 * prebuild image and wait until it has built every VM. 0, or -errno with r->err (the
 * new one is gone again; nothing was paused).
 */
static int beside_prebuild(struct lu_run *r, struct lu_beside *b)
{
    int pre_fd = -1;
    int rc = write_image(r, true, &pre_fd);
    if (!rc) {
        r->keep[r->nkeep++] = pre_fd;
        rc = lu_beside_spawn(r->rq->binary, daemon_info.argv, daemon_info.argc, r->keep,
                             r->nkeep, pre_fd, r->rq->inject_fault, b, r->err, r->errlen);
    }
    if (pre_fd >= 0)
        close(pre_fd);
    if (!rc) {
        log_info("live update: started %s beside this xkvmd (pid %d), building %u domain(s)",
                 r->rq->binary, (int)b->pid, r->n);
        char why[512] = "";
        if ((rc = lu_beside_wait(b, "PREBUILT", BESIDE_PREBUILD_TIMEOUT_MS, why, sizeof(why))))
            snprintf(r->err, r->errlen, "the new xkvmd failed while it built the VMs: %s "
                     "(nothing was paused)", why);
    }
    if (rc)
        lu_beside_abort(b);
    return rc;
}

/*
 * Beside, in the pause: hand the new xkvmd the image and wait until it has restored
 * every domain (READY, still paused); then commit (GO) and exit, touching nothing
 * more. Returns only if the new one failed before GO (-errno with r->err): it is gone
 * (killed and reaped), and the caller unpauses every domain here.
 */
static int beside_hand_over(struct lu_run *r, struct lu_beside *b)
{
    uint64_t t_exec = host_monotonic_ns();      /* the hand-over: "exec" in the phases */
    (void)!pwrite(r->img_fd, &t_exec, sizeof(t_exec), XKVM_LU_HDR_SIZE + XKVM_LU_RHDR_SIZE +
                  offsetof(struct xkvm_lu_host, t_exec));
    char why[512] = "";
    int rc = lu_beside_send_final(b, r->img_fd, why, sizeof(why));
    if (!rc && r->rq->inject_fault && !strcmp(r->rq->inject_fault, "old-gone")) {
        log_err("live update: injected fault old-gone: this xkvmd exits after FINAL");
        _exit(70);      /* tests: the old one dies in the pause; the new one must go on */
    }
    if (!rc)
        rc = lu_beside_wait(b, "READY", BESIDE_RUNNING_TIMEOUT_MS, why, sizeof(why));
    if (!rc) {
        /* Under systemd the new process is the service from now on; it says READY=1
         * itself. The barrier: the manager has the new pid before this one exits. */
        notify_sendf("MAINPID=%d\nSTATUS=live update: handed over to pid %d", (int)b->pid,
                     (int)b->pid);
        notify_barrier(5000);
        if ((rc = lu_beside_say(b->sock, "GO")))
            snprintf(why, sizeof(why), "it went away before the commit");
    }
    if (rc) {
        lu_beside_abort(b);
        snprintf(r->err, r->errlen, "the new xkvmd failed: %s; rolled back, every domain runs "
                 "on the old xkvmd", why);
        if (notify_enabled())
            notify_sendf("MAINPID=%d", (int)getpid());
        return rc;
    }
    log_info("live update: every domain runs in the new xkvmd (pid %d); this one exits",
             (int)b->pid);
    _exit(0);
}

/* Still here after the pause: nothing was handed over. Everything runs on as before. */
static void undo_pause(struct lu_run *r)
{
    /* Those that are not meant to be inherited by children (the services) again. */
    const int again[] = { r->rq->client_fd, daemon_info.pidfile_fd, daemon_info.self_fd };
    for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++)
        if (again[i] >= 0)
            fcntl(again[i], F_SETFD, FD_CLOEXEC);
    if (r->img_fd >= 0)
        close(r->img_fd);
    event_thread_freeze(false);
    resume_all(r->doms, r->n);
    toolstack_xs_start(host.rundir);
}

int live_update_run(const struct live_update_request *rq, char *err, size_t errlen)
{
    struct lu_run r = { .rq = rq, .img_fd = -1, .err = err, .errlen = errlen,
                        .hr = { .t_request = host_monotonic_ns() } };
    if (daemon_info.self_fd < 0 || !rq->binary || !rq->binary[0]) {
        snprintf(err, errlen, "live update is not set up in this xkvmd");
        return -ENOTSUP;
    }
    if (rq->binary[0] != '/') {
        snprintf(err, errlen, "--binary needs an absolute path, got '%s'", rq->binary);
        return -EINVAL;
    }
    lu_holder_reap_previous();
    if (!(r.doms = calloc(XKVM_DOMID_LIMIT, sizeof(*r.doms)))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct lu_beside b = { .pid = -1, .sock = -1 };
    int rc = check_preconditions(&r);
    if (!rc && ((rc = prebuild_all(&r)) || (r.beside && (rc = beside_prebuild(&r, &b)))))
        toolstack_xs_start(host.rundir);
    if (rc) {
        for (unsigned i = 0; r.jobs && i < r.n; i++)
            free(r.jobs[i].x);
        free(r.jobs);
        free(r.doms);
        return rc;
    }
    pause_all(&r);
    if (!(rc = refuse_grant_maps(&r)) && !(rc = save_all(&r)) &&
        !(rc = write_image(&r, false, &r.img_fd)))
        rc = r.beside ? beside_hand_over(&r, &b) : exec_next(&r);
    lu_beside_abort(&b);
    for (unsigned i = 0; r.jobs && i < r.n; i++) {
        xkvm_lu_writer_release(&r.jobs[i].w);
        free(r.jobs[i].x);
    }
    free(r.jobs);
    undo_pause(&r);
    free(r.doms);
    char why[512];
    snprintf(why, sizeof(why), "%s", err);
    log_err("live update failed, every domain runs on here: %s", why);
    notify_sendf("READY=1\nSTATUS=serving; live update failed, nothing changed");
    snprintf(err, errlen, "live update failed (nothing changed): %s", why);
    return rc;
}
