/* Save, restore and migrate jobs, and the incoming-migration listener: migrate_job.h. */
#include "daemon/migrate_job.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/control_reply.h"
#include "hv/domain.h"
#include "hv/hv.h"
#include "migrate/local_mem.h"
#include "migrate/migrate.h"
#include "util/domcfg.h"
#include "util/log.h"
#include "util/multiconn_line.h"
#include "util/tls.h"
#include "util/transport.h"

enum job_kind { JOB_SAVE, JOB_RESTORE, JOB_MIGRATE };

struct job {
    enum job_kind kind;
    int fd;                     /* the client's connection (ours) */
    int file_fd;                /* save, restore: the file the client opened (ours) */
    struct domain *d;           /* save/migrate: referenced, d->migrating set */
    char path[4096];            /* save, restore: its name, for messages only */
    char host[256];             /* migrate: HOST, or the "via" URL (ssh://...) */
    char tls_hostname[256];     /* migrate: the name the destination's certificate has */
    int port;
    bool keep;
    struct migrate_opts opts;
    bool has_local;             /* restore: the client sent the host's config for it */
    struct domcfg local;
    struct migrate_cancel cancel;   /* migrate: xkvm migrate-cancel */
    bool same_host;             /* migrate via local:RUNDIR: memory shared, not copied */
    struct local_mem lm;
    struct data_conn {              /* migrate: extra connections (migrate/multiconn.h) */
        int fd;
        struct transport plain, *t;
    } data[MULTICONN_MAX];
    struct job *next;           /* migrate: in the list of running migrations */
};

/* Running migrations, for migrate-cancel (a job leaves the list before it is freed). */
static pthread_mutex_t migrations_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *migrations;

static void migration_list(struct job *j, bool add)
{
    pthread_mutex_lock(&migrations_lock);
    struct job **p = &migrations;
    while (*p && *p != j)
        p = &(*p)->next;
    if (add && !*p)
        *p = j;
    else if (!add && *p)
        *p = j->next;
    pthread_mutex_unlock(&migrations_lock);
}

struct json_object *migrate_cancel_domain(unsigned domid)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&migrations_lock);
    for (struct job *j = migrations; j; j = j->next)
        if (j->d->domid == domid)
            rc = migrate_cancel_request(&j->cancel);
    pthread_mutex_unlock(&migrations_lock);
    if (rc == -ENOENT)
        return control_reply_err(ENOENT, "no migration of domain %u is running here", domid);
    if (rc == -EBUSY)
        return control_reply_err(EBUSY, "too late: the migration of domain %u is handing the "
                                 "guest over (it completes, or the guest runs on here)", domid);
    log_info("d%u: migration cancelled (xkvm migrate-cancel)", domid);
    return control_reply_ok();
}

/* ---- replies on the job's connection ---- */

/* The progress and report objects, declared once as tables of their members. */
enum field_kind { FK_UINT, FK_U64, FK_DOUBLE, FK_BOOL, FK_STR };
struct field {
    const char *name;
    size_t off;
    enum field_kind kind;
};
#define FIELD(st, m, k) { #m, offsetof(struct st, m), k }

static const struct field progress_fields[] = {
    FIELD(migrate_progress, iteration, FK_UINT), FIELD(migrate_progress, dirty, FK_U64),
    FIELD(migrate_progress, sent, FK_U64), FIELD(migrate_progress, remaining, FK_U64),
    FIELD(migrate_progress, rate_mbs, FK_DOUBLE), FIELD(migrate_progress, eta_s, FK_DOUBLE),
    FIELD(migrate_progress, final, FK_BOOL), FIELD(migrate_progress, throttle_pct, FK_UINT),
};
static const struct field report_fields[] = {
    FIELD(migrate_report, iterations, FK_UINT), FIELD(migrate_report, pages_sent, FK_U64),
    FIELD(migrate_report, final_pages, FK_U64), FIELD(migrate_report, final_bytes, FK_U64),
    FIELD(migrate_report, state_compressed, FK_UINT),
    FIELD(migrate_report, bytes, FK_U64),
    FIELD(migrate_report, total_ms, FK_DOUBLE), FIELD(migrate_report, downtime_ms, FK_DOUBLE),
    FIELD(migrate_report, final_ms, FK_DOUBLE), FIELD(migrate_report, pause_ms, FK_DOUBLE),
    FIELD(migrate_report, quiet_ms, FK_DOUBLE), FIELD(migrate_report, state_ms, FK_DOUBLE),
    FIELD(migrate_report, xenstore_ms, FK_DOUBLE),
    FIELD(migrate_report, dest_ms, FK_DOUBLE), FIELD(migrate_report, rate_mbs, FK_DOUBLE),
    FIELD(migrate_report, connections, FK_UINT),
    FIELD(migrate_report, downtime_target_ms, FK_UINT),
    FIELD(migrate_report, throttle_pct, FK_UINT),
    FIELD(migrate_report, est_downtime_ms, FK_DOUBLE), FIELD(migrate_report, stop, FK_STR),
    FIELD(migrate_report, postcopy, FK_BOOL),
    FIELD(migrate_report, postcopy_pages, FK_U64), FIELD(migrate_report, pages_on_demand, FK_U64),
    FIELD(migrate_report, faults_on_demand, FK_U64), FIELD(migrate_report, postcopy_ms, FK_DOUBLE),
    FIELD(migrate_report, fault_wait_ms_avg, FK_DOUBLE),
    FIELD(migrate_report, fault_wait_ms_max, FK_DOUBLE),
};

static struct json_object *fields_json(struct json_object *o, const void *st,
                                       const struct field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)st + f[i].off;
        struct json_object *v;
        switch (f[i].kind) {
        case FK_UINT: v = json_object_new_int64(*(const unsigned *)p); break;
        case FK_U64: v = json_object_new_int64((int64_t)*(const uint64_t *)p); break;
        case FK_DOUBLE: v = json_object_new_double(*(const double *)p); break;
        case FK_STR: {
            const char *str = *(const char *const *)p;
            v = str ? json_object_new_string(str) : NULL;
            break;
        }
        default: v = json_object_new_boolean(*(const bool *)p); break;
        }
        json_object_object_add(o, f[i].name, v);
    }
    return o;
}

static void on_progress(void *arg, const struct migrate_progress *p)
{
    struct job *j = arg;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "progress", fields_json(json_object_new_object(), p,
                           progress_fields, sizeof(progress_fields) / sizeof(progress_fields[0])));
    control_write_json(j->fd, o);
}

static struct json_object *report_json(const struct migrate_report *r, const char *transport)
{
    static const char *const names[] = { "done", "resumed", "postcopy-paused" };
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "outcome", json_object_new_string(names[r->outcome]));
    if (transport)
        json_object_object_add(o, "transport", json_object_new_string(transport));
    return fields_json(o, r, report_fields, sizeof(report_fields) / sizeof(report_fields[0]));
}

/* ---- main-thread steps ---- */

static void finish_on_main(void *arg)
{
    struct job *j = arg;
    struct domain *d = j->d;
    domain_job_release(d);
    if (j->kind == JOB_SAVE && j->keep)
        domain_unpause(d);
    else
        domain_destroy(d);
}

static void release_on_main(void *arg)
{
    struct job *j = arg;
    domain_job_release(j->d);
    host_notify();      /* a shutdown that waited for the job */
}

static int connect_to(const char *hostname, int port, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int g = getaddrinfo(hostname, ps, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "%s: %s", hostname, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errlen, "connecting to %s:%d: %s", hostname, port, strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    migrate_stall_sockopts(fd);     /* a silent link fails the migration (migrate.h) */
    return fd;
}

static struct tls_creds *creds;

void migrate_set_credentials(struct tls_creds *c)
{
    creds = c;
}

struct tls_creds *migrate_credentials(void)
{
    return creds;
}

/*
 * The migration's transport on the connected socket fd: TLS when this host has
 * credentials (the destination must prove it is j->tls_hostname, or the host we
 * connected to), else plain. NULL with err if the handshake failed.
 */
static struct transport *outgoing_transport(struct job *j, int fd, struct transport *plain,
                                            char *err, size_t errlen)
{
    transport_plain(plain, fd);
    if (!creds)
        return plain;
    char why[900];
    struct transport *t = tls_open(creds, fd, false, j->tls_hostname[0] ? j->tls_hostname : j->host,
                                   MIGRATE_TLS_CONNECT_TIMEOUT_MS, why, sizeof(why));
    if (!t)
        snprintf(err, errlen, "%s:%d: %s", j->host, j->port, why);
    else
        log_info("d%u: migrating to %s:%d over %s", j->d->domid, j->host, j->port, t->name);
    return t;
}

/*
 * An extra connection of the migration (opts.open_data): to the same HOST:PORT,
 * authenticated as the main one; a stall fails it, as the main one (connect_to).
 */
static struct transport *open_data(void *arg, unsigned index, char *err, size_t errlen)
{
    struct job *j = arg;
    struct data_conn *c = &j->data[index];
    c->fd = connect_to(j->host, j->port, err, errlen);
    if (c->fd < 0)
        return NULL;
    c->t = outgoing_transport(j, c->fd, &c->plain, err, errlen);
    return c->t;
}

static void close_data(struct job *j)
{
    for (unsigned i = 0; i < MULTICONN_MAX; i++) {
        if (j->data[i].t)
            transport_release(j->data[i].t);
        if (j->data[i].fd >= 0)
            close(j->data[i].fd);
        j->data[i] = (struct data_conn){ .fd = -1 };
    }
}

/* Jobs running now (live update waits for none, nor for incoming migrations). */
static unsigned nr_jobs;

unsigned migrate_jobs_running(void)
{
    return __atomic_load_n(&nr_jobs, __ATOMIC_ACQUIRE) + migrate_incoming_running();
}

static void *job_thread(void *arg)
{
    struct job *j = arg;
    char err[1024] = "";
    struct json_object *reply;
    pthread_setname_np(pthread_self(), j->kind == JOB_RESTORE ? "restore" :
                                       j->kind == JOB_SAVE ? "save" : "migrate");
    if (j->kind == JOB_RESTORE) {
        uint16_t domid = 0;
        struct transport file;
        transport_plain(&file, j->file_fd);
        int rc = migrate_receive(&file, false, NULL, j->has_local ? &j->local : NULL,
                                 &domid, err, sizeof(err));
        close(j->file_fd);
        if (rc) {
            reply = control_reply_err(-rc, "restore from %s: %s", j->path, err);
        } else {
            reply = control_reply_ok();
            json_object_object_add(reply, "domid", json_object_new_int(domid));
        }
        control_write_json(j->fd, reply);
        goto out;
    }

    struct migrate_report rep;
    struct transport plain, *t = NULL;
    int out = -1, rc;
    if (j->kind == JOB_SAVE) {
        out = j->file_fd;   /* the client created it, with its own rights */
        transport_plain(&plain, out);
        t = &plain;
        rc = 0;
    } else if (j->file_fd >= 0) {
        out = j->file_fd;   /* "via": the client's channel to the far end (ssh) */
        migrate_stall_sockopts(out);
        migrate_cancel_set_fd(&j->cancel, out);
        transport_plain(&plain, out);
        plain.name = j->same_host ? "same-host" : "ssh";
        t = &plain;
        rc = j->same_host ? local_send_fds(out, err, sizeof(err)) : 0;
        log_info("d%u: migrating through %s", j->d->domid, j->host);
    } else {
        out = connect_to(j->host, j->port, err, sizeof(err));
        rc = out < 0 ? out : 0;
        if (!rc)
            migrate_cancel_set_fd(&j->cancel, out);
        if (!rc && !(t = outgoing_transport(j, out, &plain, err, sizeof(err))))
            rc = -EACCES;
    }
    memset(&rep, 0, sizeof(rep));
    rep.outcome = MIGRATE_RESUMED;
    if (!rc)
        rc = migrate_send(j->d, t, &j->opts, j->kind == JOB_MIGRATE ? on_progress : NULL, j,
                          &rep, err, sizeof(err));
    if (j->kind == JOB_MIGRATE) {
        migration_list(j, false);
        pthread_mutex_lock(&j->cancel.lock);
        j->cancel.fd = -1;      /* closed below: a late cancel must not shut down a reused fd */
        pthread_mutex_unlock(&j->cancel.lock);
    }
    char transport_name[400];
    snprintf(transport_name, sizeof(transport_name), "%s", t ? t->name : "none");
    close_data(j);
    if (t)
        transport_release(t);
    if (out >= 0)
        close(out);         /* a partial image: the client that created it removes it */
    unsigned domid = j->d->domid;
    if (!rc) {
        host_call_main(finish_on_main, j);
        reply = control_reply_ok();
        log_info("d%u: %s: %.1f ms, downtime %.2f ms, %llu pages, %llu bytes", domid,
                 j->kind == JOB_SAVE ? "saved" : "migrated", rep.total_ms, rep.downtime_ms,
                 (unsigned long long)rep.pages_sent, (unsigned long long)rep.bytes);
    } else {
        host_call_main(release_on_main, j);
        reply = control_reply_err(-rc, "%s d%u: %s%s", j->kind == JOB_SAVE ? "save of" :
                                  "migration of", domid, err,
                                  rep.outcome == MIGRATE_RESUMED ? " (the guest runs here)" : "");
    }
    json_object_object_add(reply, "report", report_json(&rep, j->kind == JOB_MIGRATE ?
                                                          transport_name : NULL));
    control_write_json(j->fd, reply);
out:
    close(j->fd);
    local_mem_release(&j->lm);
    free(j);
    __atomic_sub_fetch(&nr_jobs, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

int migrate_start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t, &a, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    return rc;
}

static bool get_string(struct json_object *req, const char *key, char *out, size_t len)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_string))
        return false;
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) >= len || !*s)
        return false;
    snprintf(out, len, "%s", s);
    return true;
}

/* An optional integer in [lo, hi]; false if present and bad. */
static bool get_int(struct json_object *req, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, key, &v))
        return true;
    if (!json_object_is_type(v, json_type_int))
        return false;
    int64_t x = json_object_get_int64(v);
    if (x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool get_bool(struct json_object *req, const char *key, bool *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, key, &v))
        return true;
    if (!json_object_is_type(v, json_type_boolean))
        return false;
    *out = json_object_get_boolean(v);
    return true;
}

/*
 * Save and restore: the file comes as a descriptor the client opened with its own
 * rights and passed with the request; xkvmd opens no path for a client.
 */
static struct json_object *take_file(struct job *j, struct json_object *req, const char *cmd,
                                     int *file_fd)
{
    if (!get_string(req, "path", j->path, sizeof(j->path)))
        snprintf(j->path, sizeof(j->path), "the file passed");
    if (*file_fd < 0)
        return control_reply_err(EINVAL, "%s needs the file's descriptor passed with the "
                                 "request (SCM_RIGHTS): xkvmd does not open paths", cmd);
    int mode = fcntl(*file_fd, F_GETFL) & O_ACCMODE;
    if (j->kind == JOB_SAVE ? mode == O_RDONLY : mode == O_WRONLY)
        return control_reply_err(EBADF, "%s: the descriptor passed is not open for %s", cmd,
                                 j->kind == JOB_SAVE ? "writing" : "reading");
    j->file_fd = *file_fd;
    *file_fd = -1;
    fcntl(j->file_fd, F_SETFL, fcntl(j->file_fd, F_GETFL) & ~O_NONBLOCK);
    return NULL;
}

/*
 * migrate with "via" (e.g. "ssh://host"): the client runs the channel (xkvm migrate
 * ssh://...: ssh to `xkvm migrate-receive`) and passes its end as a socket. True if
 * the request has "via" (*bad set if it is unusable).
 */
static bool take_channel(struct job *j, struct json_object *req, int *file_fd,
                         struct json_object **bad)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, "via", &v))
        return false;
    int type = 0;
    socklen_t tl = sizeof(type);
    if (!get_string(req, "via", j->host, sizeof(j->host)))
        *bad = control_reply_err(EINVAL, "\"via\" must name the channel");
    else if (*file_fd < 0 || getsockopt(*file_fd, SOL_SOCKET, SO_TYPE, &type, &tl) ||
             type != SOCK_STREAM)
        *bad = control_reply_err(EINVAL, "migrate via %s needs the channel's stream socket "
                                 "passed with the request (SCM_RIGHTS)", j->host);
    if (*bad)
        return true;
    j->file_fd = *file_fd;
    *file_fd = -1;
    fcntl(j->file_fd, F_SETFL, fcntl(j->file_fd, F_GETFL) & ~O_NONBLOCK);
    return true;
}

struct json_object *migrate_job_start(struct json_object *req, const char *cmd, int fd,
                                      int *file_fd, bool *detached)
{
    *detached = false;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return control_reply_err(ENOMEM, "out of memory");
    j->file_fd = -1;
    for (unsigned i = 0; i < MULTICONN_MAX; i++)
        j->data[i].fd = -1;
    j->kind = !strcmp(cmd, "save") ? JOB_SAVE : !strcmp(cmd, "restore") ? JOB_RESTORE : JOB_MIGRATE;
    j->opts.live = j->kind == JOB_MIGRATE;
    j->opts.peer = j->kind == JOB_MIGRATE;
    migrate_cancel_init(&j->cancel);
    if (j->kind == JOB_MIGRATE)
        j->opts.cancel = &j->cancel;
    struct json_object *bad = NULL;
    int64_t v;
    if (j->kind != JOB_MIGRATE)
        bad = take_file(j, req, cmd, file_fd);
    struct json_object *jcfg;
    if (!bad && j->kind == JOB_RESTORE && json_object_object_get_ex(req, "config", &jcfg)) {
        char why[512];
        if (domcfg_from_json(jcfg, &j->local, why, sizeof(why)))
            bad = control_reply_err(EINVAL, "restore: \"config\": %s", why);
        j->has_local = true;
    }
    if (!bad && j->kind == JOB_MIGRATE && take_channel(j, req, file_fd, &bad)) {
        /* "via": the stream goes through the descriptor passed (taken or refused) */
    } else if (!bad && j->kind == JOB_MIGRATE) {
        v = 0;
        if (!get_string(req, "host", j->host, sizeof(j->host)) ||
            !get_int(req, "port", 1, 65535, &v) || !v)
            bad = control_reply_err(EINVAL, "migrate needs \"host\" and \"port\" (1..65535)");
        j->port = (int)v;
        v = MIGRATE_DEFAULT_CONNECTIONS;
        if (!bad && !get_int(req, "connections", 1, MULTICONN_MAX, &v))
            bad = control_reply_err(EINVAL, "\"connections\" must be 1..%u", MULTICONN_MAX);
        j->opts.connections = (unsigned)v;
        j->opts.open_data = open_data;
        j->opts.open_arg = j;
    }
    if (!bad && j->kind == JOB_MIGRATE) {
        v = MIGRATE_DEFAULT_DOWNTIME_MS;
        if (!bad && !get_int(req, "downtime_ms", 1, 60000, &v))
            bad = control_reply_err(EINVAL, "\"downtime_ms\" must be 1..60000");
        j->opts.downtime_ms = (uint32_t)v;
        v = MIGRATE_DEFAULT_MAX_ITERS;
        if (!bad && !get_int(req, "max_iters", 0, 1000, &v))
            bad = control_reply_err(EINVAL, "\"max_iters\" must be 0..1000");
        j->opts.max_iters = (uint32_t)v;
        if (!bad && !get_bool(req, "live", &j->opts.live))
            bad = control_reply_err(EINVAL, "\"live\" must be true or false");
        if (!bad && !get_bool(req, "local", &j->same_host))
            bad = control_reply_err(EINVAL, "\"local\" must be true or false");
        if (!bad && j->same_host && j->file_fd < 0)
            bad = control_reply_err(EINVAL, "a same-host migration (\"local\") needs \"via\" "
                                    "and the channel to the other xkvmd");
        if (!bad && j->same_host) {
            /* The memory is shared and always current: no pre-copy, pause at once. */
            j->opts.live = false;
            j->opts.local_mem = &j->lm;
        }
        bool converge = true;
        if (!bad && !get_bool(req, "auto_converge", &converge))
            bad = control_reply_err(EINVAL, "\"auto_converge\" must be true or false");
        j->opts.no_auto_converge = !converge;
        if (!bad && !get_bool(req, "downtime_strict", &j->opts.downtime_strict))
            bad = control_reply_err(EINVAL, "\"downtime_strict\" must be true or false");
        if (!bad && !get_bool(req, "postcopy_recover", &j->opts.postcopy_recover))
            bad = control_reply_err(EINVAL, "\"postcopy_recover\" must be true or false");
        if (!bad && j->opts.postcopy_recover && j->opts.connections > 1)
            bad = control_reply_err(EINVAL, "a post-copy recovery goes over one connection "
                                    "(no --connections)");
        if (!bad && j->opts.postcopy_recover && j->same_host)
            bad = control_reply_err(EINVAL, "a same-host migration has no post-copy to recover");
        if (!bad && !get_bool(req, "postcopy", &j->opts.postcopy))
            bad = control_reply_err(EINVAL, "\"postcopy\" must be true or false");
        v = 1;          /* after the first pass */
        if (!bad && !get_int(req, "postcopy_after", 0, 1000, &v))
            bad = control_reply_err(EINVAL, "\"postcopy_after\" must be 0..1000");
        j->opts.postcopy_after = (uint32_t)v;
        struct json_object *hv;
        if (!bad && json_object_object_get_ex(req, "tls_hostname", &hv) &&
            !get_string(req, "tls_hostname", j->tls_hostname, sizeof(j->tls_hostname)))
            bad = control_reply_err(EINVAL, "\"tls_hostname\" must be a name");
    }
    if (!bad && j->kind == JOB_SAVE) {
        char compat[32] = "none";
        struct json_object *cv;
        if (json_object_object_get_ex(req, "compat", &cv) &&
            (!get_string(req, "compat", compat, sizeof(compat)) ||
             xkvm_stream_compat_parse(compat) < 0))
            bad = control_reply_err(EINVAL, "\"compat\" must be \"xen-4.17\" or \"none\"");
        else
            j->opts.compat = (enum xkvm_stream_compat)xkvm_stream_compat_parse(compat);
        if (!bad && !get_bool(req, "keep", &j->keep))
            bad = control_reply_err(EINVAL, "\"keep\" must be true or false");
        if (!bad && j->opts.compat != XKVM_STREAM_COMPAT_NONE && !j->keep)
            bad = control_reply_err(EINVAL, "a --compat image cannot be restored by xkvm: "
                                    "it needs --keep");
    }
    if (!bad && j->kind != JOB_RESTORE) {
        struct json_object *idv;
        int64_t id = -1;
        if (json_object_object_get_ex(req, "domid", &idv) && json_object_is_type(idv, json_type_int))
            id = json_object_get_int64(idv);
        struct domain *d = id > 0 && id < XKVM_DOMID_LIMIT ? domain_lookup((unsigned)id) : NULL;
        if (!d)
            bad = control_reply_err(ESRCH, "no domain with id %lld", (long long)id);
        else if (d->migrating)
            bad = control_reply_err(EBUSY, "domain %u is already being saved or migrated",
                                    d->domid);
        else if (d->shutdown_code >= 0)
            bad = control_reply_err(EINVAL, "domain %u has shut down", d->domid);
        else if (!domain_job_claim(d))
            bad = control_reply_err(ESRCH, "domain %lld is going away", (long long)id);
        else {
            j->d = d;
        }
    }
    if (!bad) {
        j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd >= 0)
            fcntl(j->fd, F_SETFL, fcntl(j->fd, F_GETFL) & ~O_NONBLOCK);
        __atomic_add_fetch(&nr_jobs, 1, __ATOMIC_ACQ_REL);
        if (j->kind == JOB_MIGRATE)
            migration_list(j, true);
        int rc = j->fd < 0 ? errno : migrate_start_thread(job_thread, j);
        if (rc) {
            __atomic_sub_fetch(&nr_jobs, 1, __ATOMIC_ACQ_REL);
            migration_list(j, false);
        }
        if (!rc) {
            *detached = true;
            return NULL;
        }
        if (j->fd >= 0)
            close(j->fd);
        if (j->d)
            domain_job_release(j->d);
        bad = control_reply_err(rc, "cannot start the %s job", cmd);
    }
    if (j->file_fd >= 0)
        close(j->file_fd);
    free(j);
    return bad;
}
