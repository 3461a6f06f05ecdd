/*
 * The control socket's commands (docs/control-api.md): one table, name -> handler and
 * what the handler needs (a domain named by "domid", the client's connection). The
 * plumbing below the table never names a command.
 */
#include "daemon/control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/altp2m_command.h"
#include "daemon/lu_command.h"
#include "daemon/migrate_job.h"
#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/reservation.h"
#include "hv/toolstack_xs.h"
#include "hv/vcpu.h"
#include "migrate/pv_save.h"
#include "util/control_reply.h"
#include "util/log.h"
#include "util/text.h"
#include "xkvm/ctx.h"
#include "xkvm/control.h"

#define reply_ok control_reply_ok
#define reply_err control_reply_err

/* One request as a handler sees it. */
struct request {
    struct json_object *req;
    const char *cmd;
    struct domain *d;           /* CMD_DOMAIN: the live domain "domid" names */
    int client_fd;              /* the client's connection, or -1 */
    int *file_fd;               /* a descriptor passed with the request, or -1 */
    bool *detached;             /* set by a handler that took the connection over */
};

/* The request's "domid" as a live domain, or an error reply in *reply. */
static struct domain *request_domain(struct json_object *req, struct json_object **reply)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, "domid", &v) || !json_object_is_type(v, json_type_int)) {
        *reply = reply_err(EINVAL, "request needs an integer \"domid\"");
        return NULL;
    }
    int64_t id = json_object_get_int64(v);
    struct domain *d = (id > 0 && id < XKVM_DOMID_LIMIT) ? domain_lookup((unsigned)id) : NULL;
    if (!d)
        *reply = reply_err(ESRCH, "no domain with id %lld", (long long)id);
    return d;
}

/* The p2m's use of its budgets, and whether it agrees with machine memory. */
static struct json_object *p2m_state_json(struct p2m *p)
{
    char why[160] = "";
    struct json_object *o = json_object_new_object();
    int rc = p2m_audit(p, why, sizeof(why));
    json_object_object_add(o, "memslots", json_object_new_int((int)p->nr_slots));
    json_object_object_add(o, "memslots_max", json_object_new_int(P2M_MAX_SLOTS));
    json_object_object_add(o, "breaks", json_object_new_int64((int64_t)p->nr_breaks));
    json_object_object_add(o, "breaks_max", json_object_new_int(P2M_MAX_BREAKS));
    json_object_object_add(o, "audit", json_object_new_string(rc ? why : "ok"));
    return o;
}

static struct json_object *cmd_create(struct request *rq)
{
    struct json_object *req = rq->req;
    struct json_object *cfgj, *pausedj;
    if (!json_object_object_get_ex(req, "config", &cfgj))
        return reply_err(EINVAL, "create needs a \"config\" object");
    struct domcfg cfg;
    char err[512] = "";
    if (domcfg_from_json(cfgj, &cfg, err, sizeof(err)))
        return reply_err(EINVAL, "bad config: %s", err);
    bool paused = false;
    if (json_object_object_get_ex(req, "start_paused", &pausedj)) {
        if (!json_object_is_type(pausedj, json_type_boolean))
            return reply_err(EINVAL, "\"start_paused\" must be true or false");
        paused = json_object_get_boolean(pausedj);
    }
    uint16_t domid = 0;
    struct json_object *want;
    if (json_object_object_get_ex(req, "domid", &want)) {
        int64_t w = json_object_is_type(want, json_type_int) ? json_object_get_int64(want) : -1;
        if (w < 1 || w >= XKVM_DOMID_LIMIT)
            return reply_err(EINVAL, "\"domid\" must be an integer from 1 to %u",
                             XKVM_DOMID_LIMIT - 1);
        domid = (uint16_t)w;
    }
    int rc = domain_create(&cfg, paused, &domid, err, sizeof(err));
    if (rc)
        return reply_err(-rc, "%s", err);
    struct json_object *r = reply_ok();
    json_object_object_add(r, "domid", json_object_new_int(domid));
    return r;
}

/*
 * A domain's I/O so far, as its backends count it: RUNDIR/stats/KIND-DOMID-DEV per
 * device (blkback's vbd-: "BYTES REQUESTS"; netback's vif-: "TX_BYTES RX_BYTES
 * TX_PACKETS RX_PACKETS"), each of the n numbers summed over the domain's devices of
 * that kind into v[]; 0 where there are none.
 */
static void backend_stats(const char *kind, unsigned domid, uint64_t *v, unsigned n)
{
    memset(v, 0, n * sizeof(*v));
    char dir[PATH_MAX + 8], prefix[32];
    snprintf(dir, sizeof(dir), "%s/stats", host.rundir);
    int plen = snprintf(prefix, sizeof(prefix), "%s-%u-", kind, domid);
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (strncmp(e->d_name, prefix, (size_t)plen))
            continue;
        int fd = openat(dirfd(dp), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        char line[128] = "";
        ssize_t got = fd >= 0 ? read(fd, line, sizeof(line) - 1) : -1;
        if (fd >= 0)
            close(fd);
        unsigned long long x[4];
        if (got <= 0 || n > 4 || sscanf(line, "%llu %llu %llu %llu", &x[0], &x[1], &x[2],
                                        &x[3]) < (int)n)
            continue;
        for (unsigned i = 0; i < n; i++)
            v[i] += x[i];
    }
    closedir(dp);
}

static struct json_object *domain_json(struct domain *d)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "domid", json_object_new_int(d->domid));
    json_object_object_add(o, "name", json_object_new_string(d->cfg.name));
    json_object_object_add(o, "state", json_object_new_string(domain_state_name(d)));
    json_object_object_add(o, "shutdown_reason",
        d->shutdown_code >= 0 ? json_object_new_string(shutdown_reason_name(d->shutdown_code))
                              : NULL);
    pthread_mutex_lock(&d->lock);
    json_object_object_add(o, "crash_reason",
        d->crash_reason[0] ? json_object_new_string(d->crash_reason) : NULL);
    pthread_mutex_unlock(&d->lock);
    /* The host's transport, and whether this guest has called by VMCALL/VMMCALL. */
    json_object_object_add(o, "hypercall_transport", json_object_new_string(host_transport_name()));
    json_object_object_add(o, "guest_vmcall",
        json_object_new_boolean(__atomic_load_n(&d->guest_vmcall, __ATOMIC_RELAXED)));
    /* Auto-converge's vCPU throttle (percent; 0 unless a migration is slowing it). */
    json_object_object_add(o, "throttle_pct", json_object_new_int((int)domain_throttle(d)));
    /* As xl list: the memory the domain holds now (ballooning moves it); its target, max. */
    json_object_object_add(o, "memory_kb",
        json_object_new_int64((int64_t)reservation_current(d) << (XKVM_PAGE_SHIFT - 10)));
    json_object_object_add(o, "target_kb", json_object_new_int64((int64_t)domcfg_target_kb(&d->cfg)));
    json_object_object_add(o, "max_memory_kb",
        json_object_new_int64((int64_t)reservation_maximum(d) << (XKVM_PAGE_SHIFT - 10)));
    /* As xl list: the vCPUs online (vcpus, moved by vcpu-set), of max_vcpus. */
    json_object_object_add(o, "vcpus", json_object_new_int((int)d->cfg.vcpus));
    json_object_object_add(o, "max_vcpus", json_object_new_int((int)d->nr_vcpus));
    char uuid[DOMCFG_UUID_LEN + 1];
    if (d->cfg.uuid[0])
        json_object_object_add(o, "uuid", json_object_new_string(d->cfg.uuid));
    else if (toolstack_xs_known_uuid(d->domid, uuid))
        json_object_object_add(o, "uuid", json_object_new_string(uuid));
    else
        json_object_object_add(o, "uuid", NULL);
    uint64_t exits = 0, hcalls = 0;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        exits += d->vcpus[i].nr_exits;
        hcalls += d->vcpus[i].nr_hypercalls;
    }
    json_object_object_add(o, "exits", json_object_new_int64((int64_t)exits));
    /* Build time: from the create request to vCPU 0's first KVM_RUN (0: not yet). */
    uint64_t first = d->nr_vcpus ? d->vcpus[0].first_run_ns : 0;
    json_object_object_add(o, "create_to_first_run_us",
        json_object_new_int64(first > d->created_ns ? (int64_t)(first - d->created_ns) / 1000 : 0));
    json_object_object_add(o, "hypercalls", json_object_new_int64((int64_t)hcalls));
    uint64_t disk[2], net[4];
    backend_stats("vbd", d->domid, disk, 2);
    json_object_object_add(o, "disk_bytes", json_object_new_int64((int64_t)disk[0]));
    json_object_object_add(o, "disk_requests", json_object_new_int64((int64_t)disk[1]));
    backend_stats("vif", d->domid, net, 4);
    json_object_object_add(o, "net_tx_bytes", json_object_new_int64((int64_t)net[0]));
    json_object_object_add(o, "net_rx_bytes", json_object_new_int64((int64_t)net[1]));
    json_object_object_add(o, "net_tx_packets", json_object_new_int64((int64_t)net[2]));
    json_object_object_add(o, "net_rx_packets", json_object_new_int64((int64_t)net[3]));
    /* For `xkvm top`: counters since the domain was built here; rates are the CLI's. */
    uint64_t cpu_ns = 0, upcalls = 0;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        cpu_ns += vcpu_cpu_ns(&d->vcpus[i]);
        upcalls += d->vcpus[i].ev ? d->vcpus[i].ev->nr_callbacks : 0;
    }
    json_object_object_add(o, "cpu_ns", json_object_new_int64((int64_t)cpu_ns));
    json_object_object_add(o, "events",
        json_object_new_int64(d->ev ? (int64_t)__atomic_load_n(&d->ev->nr_events, __ATOMIC_RELAXED) : 0));
    json_object_object_add(o, "upcalls", json_object_new_int64((int64_t)upcalls));
    return o;
}

static struct json_object *cmd_list(struct request *rq)
{
    (void)rq;
    struct json_object *arr = json_object_new_array();
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++)
        if (domain_listed(host.domains[id]))
            json_object_array_add(arr, domain_json(host.domains[id]));
    struct json_object *r = reply_ok();
    json_object_object_add(r, "domains", arr);
    return r;
}

static struct json_object *cmd_info(struct request *rq)
{
    (void)rq;
    struct json_object *r = reply_ok();
    uint64_t total_kb = host.mm.nr_frames * (XKVM_PAGE_SIZE / 1024);
    uint64_t free_kb = mm_free_frames(&host.mm) * (XKVM_PAGE_SIZE / 1024);
    json_object_object_add(r, "version", json_object_new_string(XKVM_VERSION_STRING));
    char xenver[16];
    snprintf(xenver, sizeof(xenver), "%d.%d", XKVM_XEN_MAJOR, XKVM_XEN_MINOR);
    json_object_object_add(r, "xen_version", json_object_new_string(xenver));
    json_object_object_add(r, "machine_memory_kb", json_object_new_int64((int64_t)total_kb));
    json_object_object_add(r, "free_memory_kb", json_object_new_int64((int64_t)free_kb));
    unsigned listed = 0;
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++)
        listed += domain_listed(host.domains[id]);
    json_object_object_add(r, "nr_domains", json_object_new_int((int)listed));
    json_object_object_add(r, "kvm_module", json_object_new_string(host.kvm_module));
    json_object_object_add(r, "hypercall_transport", json_object_new_string(host_transport_name()));
    json_object_object_add(r, "rundir", json_object_new_string(host.rundir));
    json_object_object_add(r, "pid", json_object_new_int(getpid()));
    return r;
}

static struct json_object *cmd_ping(struct request *rq)
{
    (void)rq;
    struct json_object *r = reply_ok();
    json_object_object_add(r, "pid", json_object_new_int(getpid()));
    return r;
}

static struct json_object *cmd_pause(struct request *rq)
{
    if (rq->d->shutdown_code >= 0)
        return reply_err(EINVAL, "domain %u has shut down", rq->d->domid);
    domain_toolstack_pause(rq->d);
    return reply_ok();
}

static struct json_object *cmd_unpause(struct request *rq)
{
    if (rq->d->shutdown_code >= 0)
        return reply_err(EINVAL, "domain %u has shut down", rq->d->domid);
    if (domain_toolstack_unpause(rq->d))
        return reply_err(EINVAL, "domain %u is not paused", rq->d->domid);
    return reply_ok();
}

/* xl vcpu-set: vCPUs 0..N-1 online, the rest offline, in xenstore's cpu/N/availability. */
static struct json_object *cmd_vcpu_set(struct request *rq)
{
    struct json_object *v;
    struct domain *d = rq->d;
    if (!json_object_object_get_ex(rq->req, "vcpus", &v) || !json_object_is_type(v, json_type_int))
        return reply_err(EINVAL, "vcpu-set needs an integer \"vcpus\"");
    int64_t n = json_object_get_int64(v);
    if (n < 1 || n > (int64_t)d->nr_vcpus)
        return reply_err(EINVAL, "domain %u has %u vCPUs (maxvcpus): %lld is out of range "
                         "(1 to %u)", d->domid, d->nr_vcpus, (long long)n, d->nr_vcpus);
    if (d->shutdown_code >= 0)
        return reply_err(EINVAL, "domain %u has shut down", d->domid);
    if (d->migrating)
        return reply_err(EBUSY, "domain %u is being saved or migrated", d->domid);
    d->cfg.vcpus = (unsigned)n;
    toolstack_xs_vcpus(d);
    log_info("d%u: vcpu-set %lld of %u", d->domid, (long long)n, d->nr_vcpus);
    return reply_ok();
}

/*
 * xl mem-set: the balloon target (KiB), at most the domain's maximum, written to
 * memory/target, which the guest's balloon driver follows; kept in the config, so a
 * migration or live update carries it.
 */
static struct json_object *cmd_mem_set(struct request *rq)
{
    struct json_object *v;
    struct domain *d = rq->d;
    if (!json_object_object_get_ex(rq->req, "target_kb", &v) ||
        !json_object_is_type(v, json_type_int))
        return reply_err(EINVAL, "mem-set needs an integer \"target_kb\"");
    int64_t kb = json_object_get_int64(v), max_kb = (int64_t)domcfg_max_mb(&d->cfg) * 1024;
    if (kb < 1024 || kb > max_kb)
        return reply_err(EINVAL, "domain %u: a target of %lld KiB is out of range (1024 to "
                         "%lld KiB, its maxmem)", d->domid, (long long)kb, (long long)max_kb);
    if (d->shutdown_code >= 0)
        return reply_err(EINVAL, "domain %u has shut down", d->domid);
    if (d->migrating)
        return reply_err(EBUSY, "domain %u is being saved or migrated", d->domid);
    d->cfg.target_kb = (uint64_t)kb;
    toolstack_xs_mem_target(d);
    log_info("d%u: mem-set %lld KiB", d->domid, (long long)kb);
    return reply_ok();
}

static struct json_object *cmd_destroy(struct request *rq)
{
    if (rq->d->migrating)
        return reply_err(EBUSY, "domain %u is being saved or migrated", rq->d->domid);
    domain_destroy(rq->d);
    return reply_ok();
}

static struct json_object *cmd_console(struct request *rq)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/" XKVM_CONSOLE_LOG_FMT, host.rundir, rq->d->domid);
    struct json_object *r = reply_ok();
    json_object_object_add(r, "path", json_object_new_string(path));
    return r;
}

/*
 * dmesg: the hypervisor-console log of a live domain, or of one that is gone but whose
 * log is still there (it is kept until the domid is used again).
 */
static struct json_object *cmd_dmesg(struct request *rq)
{
    struct json_object *v;
    if (!json_object_object_get_ex(rq->req, "domid", &v) || !json_object_is_type(v, json_type_int))
        return reply_err(EINVAL, "request needs an integer \"domid\"");
    int64_t id = json_object_get_int64(v);
    if (id <= 0 || id >= XKVM_DOMID_LIMIT)
        return reply_err(ESRCH, "no domain with id %lld", (long long)id);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/" XKVM_DMESG_LOG_FMT, host.rundir, (unsigned)id);
    if (!domain_lookup((unsigned)id) && access(path, F_OK) < 0)
        return reply_err(ESRCH, "no domain with id %lld, and no log of one", (long long)id);
    struct json_object *r = reply_ok();
    json_object_object_add(r, "path", json_object_new_string(path));
    return r;
}

/* A non-negative integer member; false (and *reply) if missing or out of range. */
static bool request_u64(struct json_object *req, const char *name, uint64_t *out,
                        struct json_object **reply)
{
    struct json_object *v;
    if (!json_object_object_get_ex(req, name, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0) {
        *reply = reply_err(EINVAL, "request needs a non-negative integer \"%s\"", name);
        return false;
    }
    *out = (uint64_t)json_object_get_int64(v);
    return true;
}

/* dmesg-clear: drop what `xkvm dmesg -c` printed (size bytes of the file inode). */
static struct json_object *cmd_dmesg_clear(struct request *rq)
{
    uint64_t size, inode;
    struct json_object *reply = NULL;
    if (!request_u64(rq->req, "size", &size, &reply) ||
        !request_u64(rq->req, "inode", &inode, &reply))
        return reply;
    int rc = console_log_clear(rq->d, size, inode);
    if (rc)
        return reply_err(-rc, "clearing domain %u's dmesg log: %s", rq->d->domid,
                         strerror(-rc));
    return reply_ok();
}

/* A guest that can still be asked: not shut down, not leaving. */
static struct json_object *control_refusal(struct domain *d)
{
    if (d->shutdown_code >= 0)
        return reply_err(EINVAL, "domain %u has shut down", d->domid);
    if (d->migrating)
        return reply_err(EBUSY, "domain %u is being saved or migrated", d->domid);
    return NULL;
}

/*
 * Queue control/NODE = value and hand the connection to the xenstore worker, which
 * answers once it is written (a client then sees the guest's answer, not our delay).
 */
static struct json_object *ask_guest(struct request *rq, const char *node, const char *value)
{
    int fd = fcntl(rq->client_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return reply_err(errno, "cannot keep the connection: %s", strerror(errno));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    char err[256];
    int rc = toolstack_xs_control(rq->d, node, value, fd, err, sizeof(err));
    if (rc) {
        close(fd);
        return reply_err(-rc, "%s", err);
    }
    *rq->detached = true;
    return NULL;
}

/*
 * shutdown: ask the guest to power off or reboot, as libxl_domain_shutdown/reboot
 * do: write control/shutdown. For a PVH guest libxl writes it without looking for
 * the guest's control/feature-* nodes (its PV-control check is for HVM only).
 */
static struct json_object *cmd_shutdown(struct request *rq)
{
    struct json_object *v, *refused = control_refusal(rq->d);
    if (refused)
        return refused;
    const char *reason = "poweroff";
    if (json_object_object_get_ex(rq->req, "reason", &v)) {
        reason = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(reason, "poweroff") && strcmp(reason, "reboot"))
            return reply_err(EINVAL, "\"reason\" must be \"poweroff\" or \"reboot\"");
    }
    return ask_guest(rq, "shutdown", reason);
}

/* sysrq: control/sysrq = the key, as libxl_send_sysrq. */
static struct json_object *cmd_sysrq(struct request *rq)
{
    struct json_object *v, *refused = control_refusal(rq->d);
    if (refused)
        return refused;
    const char *key = NULL;
    if (json_object_object_get_ex(rq->req, "key", &v) && json_object_is_type(v, json_type_string))
        key = json_object_get_string(v);
    if (!key || strlen(key) != 1 || key[0] <= ' ' || key[0] > '~' ||
        json_object_get_string_len(v) != 1)
        return reply_err(EINVAL, "\"key\" must be one printable character");
    return ask_guest(rq, "sysrq", key);
}

static struct json_object *hvm_params_json(const struct domain *d)
{
    struct json_object *params = json_object_new_object();
    for (unsigned i = 0; i < HVM_NR_PARAMS; i++) {
        if (!d->hvm_params[i])
            continue;
        char name[16];
        snprintf(name, sizeof(name), "%u", i);
        json_object_object_add(params, name, json_object_new_int64((int64_t)d->hvm_params[i]));
    }
    return params;
}

static struct json_object *cmd_debug_state(struct request *rq)
{
    struct domain *d = rq->d;
    struct json_object *r = reply_ok();
    struct json_object *st = json_object_new_object();
    json_object_object_add(st, "domid", json_object_new_int(d->domid));
    json_object_object_add(st, "events", event_state_json(d));
    json_object_object_add(st, "grant_table", gnttab_state_json(d));
    json_object_object_add(st, "hvm_params", hvm_params_json(d));
    json_object_object_add(st, "p2m", p2m_state_json(&d->p2m));
    /* KVM's side of each vCPU, when none is in KVM_RUN (xkvm pause first). */
    /* (d->lock held: no vCPU leaves its parking while KVM is asked.) */
    pthread_mutex_lock(&d->lock);
    if (d->pause_count > 0 && d->nr_threads && d->nr_parked >= d->nr_threads) {
        struct json_object *vk = json_object_new_array();
        for (unsigned i = 0; i < d->nr_vcpus; i++)
            json_object_array_add(vk, vcpu_kvm_state_json(&d->vcpus[i]));
        json_object_object_add(st, "vcpus_kvm", vk);
    }
    pthread_mutex_unlock(&d->lock);
    json_object_object_add(r, "state", st);
    return r;
}

/* Standard base64 (RFC 4648, with padding) of len bytes; NULL if out of memory. */
static char *base64_encode(const uint8_t *in, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* Room the reply's other members take on its line, generously. */
#define CONTEXT_REPLY_OVERHEAD 256

/*
 * domain-context: pause the domain, encode its PV state as a domain context image
 * (docs/domain-context.md), unpause, and reply with the image in base64.
 */
static struct json_object *cmd_domain_context(struct request *rq)
{
    struct domain *d = rq->d;
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    char err[512] = "";
    domain_pause(d);
    int rc = pv_save_context(d, &w, err, sizeof(err));
    domain_unpause(d);
    if (rc) {
        xkvm_ctx_writer_release(&w);
        return reply_err(-rc, "%s", err);
    }
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    size_t b64len = (len + 2) / 3 * 4;
    if (b64len + CONTEXT_REPLY_OVERHEAD > XKVM_CONTROL_MAX_LINE) {
        xkvm_ctx_writer_release(&w);
        return reply_err(E2BIG, "domain %u's context image (%zu bytes) does not fit in a "
                         "control reply (%d bytes of base64 at most)", d->domid, len,
                         XKVM_CONTROL_MAX_LINE - CONTEXT_REPLY_OVERHEAD);
    }
    char *b64 = base64_encode(img, len);
    xkvm_ctx_writer_release(&w);
    if (!b64)
        return reply_err(ENOMEM, "out of memory");
    struct json_object *r = reply_ok();
    json_object_object_add(r, "domid", json_object_new_int(d->domid));
    json_object_object_add(r, "size", json_object_new_int64((int64_t)len));
    json_object_object_add(r, "image", json_object_new_string_len(b64, (int)b64len));
    free(b64);
    return r;
}

/* save, restore, migrate: a job on its own thread, which may take the connection. */
static struct json_object *cmd_job(struct request *rq)
{
    return migrate_job_start(rq->req, rq->cmd, rq->client_fd, rq->file_fd, rq->detached);
}

/* migrate-cancel: stop a running outgoing migration before its hand-over. */
static struct json_object *cmd_migrate_cancel(struct request *rq)
{
    return migrate_cancel_domain(rq->d->domid);
}

/* migrate-receive: an incoming migration through a channel the client passed. */
static struct json_object *cmd_receive(struct request *rq)
{
    struct json_object *v;
    bool same_host = json_object_object_get_ex(rq->req, "local", &v) &&
                     json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    return migrate_receive_start(rq->client_fd, rq->file_fd, same_host, rq->detached);
}

/* live-update: returns only if the update failed (else the new binary answers). */
static struct json_object *cmd_live_update(struct request *rq)
{
    return lu_command(rq->req, rq->client_fd);
}

/* What a command needs before its handler runs. */
enum {
    CMD_DOMAIN = 1u << 0,       /* a live domain named by "domid" (else ESRCH) */
    CMD_CONNECTION = 1u << 1,   /* a client connection (not there: unknown command) */
};

static struct json_object *cmd_altp2m(struct request *rq)
{
    return altp2m_command(rq->d, rq->req);
}

static const struct command {
    const char *name;
    struct json_object *(*fn)(struct request *rq);
    unsigned flags;
} commands[] = {
    { "create",         cmd_create,         0 },
    { "list",           cmd_list,           0 },
    { "info",           cmd_info,           0 },
    { "ping",           cmd_ping,           0 },
    { "pause",          cmd_pause,          CMD_DOMAIN },
    { "unpause",        cmd_unpause,        CMD_DOMAIN },
    { "destroy",        cmd_destroy,        CMD_DOMAIN },
    { "vcpu-set",       cmd_vcpu_set,       CMD_DOMAIN },
    { "mem-set",        cmd_mem_set,        CMD_DOMAIN },
    { "console",        cmd_console,        CMD_DOMAIN },
    { "dmesg",          cmd_dmesg,          0 },
    { "dmesg-clear",    cmd_dmesg_clear,    CMD_DOMAIN },
    { "shutdown",       cmd_shutdown,       CMD_DOMAIN | CMD_CONNECTION },
    { "sysrq",          cmd_sysrq,          CMD_DOMAIN | CMD_CONNECTION },
    { "debug-state",    cmd_debug_state,    CMD_DOMAIN },
    { "domain-context", cmd_domain_context, CMD_DOMAIN },
    { "save",           cmd_job,            CMD_CONNECTION },
    { "restore",        cmd_job,            CMD_CONNECTION },
    { "migrate",        cmd_job,            CMD_CONNECTION },
    { "migrate-receive", cmd_receive,       CMD_CONNECTION },
    { "migrate-cancel", cmd_migrate_cancel, CMD_DOMAIN },
    { "live-update",    cmd_live_update,    CMD_CONNECTION },
    { "altp2m",         cmd_altp2m,         CMD_DOMAIN },
};

static const struct command *find_command(const char *name, bool connected)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, name) &&
            (connected || !(commands[i].flags & CMD_CONNECTION)))
            return &commands[i];
    return NULL;
}

static struct json_object *dispatch(struct request *rq)
{
    struct json_object *cmdj, *reply = NULL;
    if (!json_object_is_type(rq->req, json_type_object) ||
        !json_object_object_get_ex(rq->req, "cmd", &cmdj) ||
        !json_object_is_type(cmdj, json_type_string))
        return reply_err(EINVAL, "a request is a JSON object with a string \"cmd\"");
    rq->cmd = json_object_get_string(cmdj);
    if (strlen(rq->cmd) != (size_t)json_object_get_string_len(cmdj))
        return reply_err(EINVAL, "\"cmd\" contains a NUL byte");
    const struct command *c = find_command(rq->cmd, rq->client_fd >= 0);
    if (!c) {
        char quoted[300];
        return reply_err(EINVAL, "unknown command \"%s\"",
                         text_excerpt(quoted, sizeof(quoted), rq->cmd, 64));
    }
    if ((c->flags & CMD_DOMAIN) && !(rq->d = request_domain(rq->req, &reply)))
        return reply;
    return c->fn(rq);
}

/* Parse one line as exactly one JSON value, with nothing but white space after it. */
static struct json_object *parse_request(const char *line, size_t len, char *err, size_t errlen)
{
    struct json_tokener *tok = json_tokener_new_ex(32);
    if (!tok) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *obj = json_tokener_parse_ex(tok, line, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (e == json_tokener_continue) {
        snprintf(err, errlen, "incomplete JSON (a request is one JSON object on one line)");
        return NULL;
    }
    if (e != json_tokener_success) {
        snprintf(err, errlen, "malformed JSON: %s", json_tokener_error_desc(e));
        return NULL;
    }
    while (end < len && (line[end] == ' ' || line[end] == '\t' || line[end] == '\r'))
        end++;
    if (end != len) {
        json_object_put(obj);
        snprintf(err, errlen, "unexpected data after the request object at byte %zu", end);
        return NULL;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        snprintf(err, errlen, "a request is a JSON object with a string \"cmd\"");
        return NULL;
    }
    return obj;
}

char *control_handle_line_fd(const char *line, size_t len, int fd, int *file_fd,
                             bool *detached)
{
    char err[256];
    *detached = false;
    struct json_object *req = parse_request(line, len, err, sizeof(err)), *reply;
    if (req) {
        struct request rq = { .req = req, .client_fd = fd, .file_fd = file_fd,
                              .detached = detached };
        reply = dispatch(&rq);
    } else {
        reply = reply_err(EINVAL, "%s", err);
    }
    json_object_put(req);
    if (*detached)
        return NULL;    /* the job answers on its own thread */
    char *out = control_json_line(reply);
    json_object_put(reply);
    return out;
}
