/*
 * Hypervisor core benchmarks: one JSON line per figure, each beside a reference
 * measured in the same run.
 *
 *   create        create request -> vCPU 0's first KVM_RUN (xkvmd's own figure from
 *                 `list`) and the client's create round trip; reference: a bare
 *                 KVM_CREATE_VM + 32 MiB memslot + KVM_CREATE_VCPU done here.
 *   pause_unpause round trips of `pause` and `unpause` on a running domain (1 and 4
 *                 vCPUs); reference: the round trip of `ping` on the same socket.
 *   hypercall     the guest's hcloop test under xkvmd; reference: the same guest binary
 *                 and cmdline on a bare KVM loop in this program that does nothing per
 *                 hypercall exit but set RAX (goal: ratio <= 1.2).
 *   raw_exit      a 32-bit protected-mode loop of `out` in a bare VM: ns per exit.
 *   hypercall_intercept  where KVM intercepts Xen hypercalls (KVM_CAP_XEN_HVM): hcloop
 *                 with hypercall=vmcall under xkvmd, beside the same guest on a bare
 *                 KVM_EXIT_XEN loop here and a bare `vmcall; jmp` loop (ns per
 *                 KVM_EXIT_XEN); elsewhere one line saying why it was skipped.
 *
 * xkvmd runs in a temporary run directory of its own, stopped and removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <xen/sched.h>
#include <xen/xen.h>

#include "hv/boot_regs.h"
#include "hv/cpuid.h"
#include "hv/guest_access.h"
#include "hv/hypercall_page.h"
#include "hv/pvh.h"
#include "xkvm/control.h"

#define GUEST_MEM        (32u << 20)
#define START_INFO_SPACE (64u << 10)
#define XENVER_RESULT    ((XKVM_XEN_MAJOR << 16) | XKVM_XEN_MINOR)
#define RAW_EXIT_PORT    0x10
#define BARE_TIMEOUT_S   120
#define EFER_LMA         (1ULL << 10)

struct opts {
    const char *xkvmd, *xkvm, *guest;
    unsigned runs;          /* create repetitions */
    unsigned pairs;         /* pause+unpause pairs per domain */
    unsigned hc_runs;       /* hcloop and raw-exit runs on each side */
    unsigned hc_n;          /* hypercalls per hcloop run */
    unsigned exits;         /* out instructions per raw-exit run */
    bool keep;              /* keep the run directory */
    const char *only;       /* comma-separated benchmark names, NULL: all */
    unsigned events;        /* round trips per event benchmark */
    const char *evtchn;     /* event channel ABIs the event benchmark runs: 2l,fifo */
    unsigned xs_ops;        /* xenstore operations from the guest */
};

static int kvm_fd = -1;
static struct kvm_cpuid2 *supported_cpuid;
static volatile sig_atomic_t bare_timed_out;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- statistics ---------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (p in 0..100) of n samples; sorts v in place. */
static uint64_t percentile(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return v[(rank > n ? n : rank) - 1];
}

static double median_d(double *v, size_t n)
{
    for (size_t i = 1; i < n; i++)          /* n is small: insertion sort */
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* ---- the xkvmd under test -------------------------------------------------------------- */

struct host {
    char dir[PATH_MAX];
    int sock;
    char buf[XKVM_CONTROL_MAX_LINE + 1];
    size_t len;
    pid_t pid;
    bool keep;
};

static struct host host = { .sock = -1 };

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static int read_pidfile(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

/* The dom0 services outlive xkvmd by design: stop the ones this run started. */
static void stop_services(void)
{
    static const char *const names[] = { "xkvm-xenstored", "xkvm-consoled", "xkvm-blkback" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof(path), "%s/services/%s.pid", host.dir, names[i]);
        int pid = read_pidfile(path);
        if (pid > 1)
            kill(pid, SIGKILL);
    }
}

static void host_stop(void)
{
    if (host.sock >= 0)
        close(host.sock);
    host.sock = -1;
    if (!host.dir[0])
        return;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", host.dir, XKVM_PIDFILE);
    int pid = read_pidfile(path);
    if (pid > 1 && kill(pid, SIGTERM) == 0) {
        for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
            usleep(10000);
        if (kill(pid, 0) == 0) {
            fprintf(stderr, "bench-hv: xkvmd (pid %d) ignored SIGTERM; killing it\n", pid);
            kill(pid, SIGKILL);
        }
    }
    stop_services();
    if (host.keep)
        fprintf(stderr, "bench-hv: run directory kept: %s\n", host.dir);
    else
        nftw(host.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    host.dir[0] = '\0';
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-hv: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (host.dir[0])
        fprintf(stderr, "bench-hv: xkvmd log: %s/%s\n", host.dir, XKVM_LOGFILE);
    host_stop();
    exit(1);
}

static void host_start(const struct opts *o)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(host.dir, sizeof(host.dir), "%s/xkvm-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(host.dir)) {
        host.dir[0] = '\0';
        die("mkdtemp: %s", strerror(errno));
    }
    host.keep = o->keep;
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        execl(o->xkvmd, o->xkvmd, "--rundir", host.dir, "--machine-memory", "2G",
              (char *)NULL);
        fprintf(stderr, "bench-hv: exec %s: %s\n", o->xkvmd, strerror(errno));
        _exit(127);
    }
    int status;
    /* xkvmd daemonizes: its first process exits once the socket is ready. */
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("xkvmd did not start");

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", host.dir, XKVM_CONTROL_SOCKET);
    host.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (host.sock < 0 || connect(host.sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect %s: %s", sa.sun_path, strerror(errno));
}

/* Send one request line and wait for its reply line. Returns the reply (caller puts it). */
static struct json_object *request_raw(const char *line, uint64_t *rtt_ns)
{
    size_t n = strlen(line);
    uint64_t t0 = now_ns();
    for (size_t off = 0; off < n;) {
        ssize_t w = write(host.sock, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("control socket write: %s", strerror(errno));
        off += (size_t)w;
    }
    char *nl;
    while (!(nl = memchr(host.buf, '\n', host.len))) {
        if (host.len >= XKVM_CONTROL_MAX_LINE)
            die("reply line too long");
        ssize_t r = read(host.sock, host.buf + host.len, XKVM_CONTROL_MAX_LINE - host.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("control socket read: %s", r ? strerror(errno) : "xkvmd closed the socket");
        host.len += (size_t)r;
    }
    uint64_t t1 = now_ns();
    if (rtt_ns)
        *rtt_ns = t1 - t0;
    *nl = '\0';
    struct json_object *reply = json_tokener_parse(host.buf);
    size_t used = (size_t)(nl + 1 - host.buf);
    memmove(host.buf, nl + 1, host.len - used);
    host.len -= used;
    if (!reply)
        die("malformed reply to %s", line);
    return reply;
}

/* A request that must succeed. Takes ownership of req. */
static struct json_object *request(struct json_object *req, uint64_t *rtt_ns)
{
    const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    if (!line)
        die("out of memory");
    memcpy(line, s, n);
    memcpy(line + n, "\n", 2);
    struct json_object *reply = request_raw(line, rtt_ns);
    struct json_object *ok, *err;
    if (!json_object_object_get_ex(reply, "ok", &ok) || !json_object_get_boolean(ok))
        die("%.200s -> %s", s,
            json_object_object_get_ex(reply, "error", &err) ? json_object_get_string(err)
                                                            : "no \"ok\"");
    free(line);
    json_object_put(req);
    return reply;
}

static uint64_t domain_op(const char *cmd, int domid)
{
    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    json_object_object_add(req, "domid", json_object_new_int(domid));
    uint64_t rtt;
    json_object_put(request(req, &rtt));
    return rtt;
}

static uint64_t ping(void)
{
    uint64_t rtt;
    json_object_put(request_raw("{\"cmd\":\"ping\"}\n", &rtt));
    return rtt;
}

static int domain_create_as(const struct opts *o, int want_domid, const char *name,
                            unsigned vcpus, const char *cmdline, uint64_t *rtt_ns)
{
    struct json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "name", json_object_new_string(name));
    json_object_object_add(cfg, "memory_mb", json_object_new_int(GUEST_MEM >> 20));
    json_object_object_add(cfg, "vcpus", json_object_new_int((int)vcpus));
    json_object_object_add(cfg, "kernel", json_object_new_string(o->guest));
    json_object_object_add(cfg, "cmdline", json_object_new_string(cmdline));
    json_object_object_add(cfg, "on_poweroff", json_object_new_string("preserve"));
    json_object_object_add(cfg, "on_reboot", json_object_new_string("preserve"));
    json_object_object_add(cfg, "on_crash", json_object_new_string("preserve"));
    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string("create"));
    json_object_object_add(req, "config", cfg);
    if (want_domid > 0)
        json_object_object_add(req, "domid", json_object_new_int(want_domid));
    struct json_object *reply = request(req, rtt_ns), *id;
    if (!json_object_object_get_ex(reply, "domid", &id))
        die("create reply without domid");
    int domid = json_object_get_int(id);
    json_object_put(reply);
    return domid;
}

static int domain_create(const struct opts *o, const char *name, unsigned vcpus,
                         const char *cmdline, uint64_t *rtt_ns)
{
    return domain_create_as(o, 0, name, vcpus, cmdline, rtt_ns);
}

/* The domain's entry in `list`, as a new reference; NULL if absent. */
static struct json_object *domain_entry(int domid)
{
    struct json_object *reply = request_raw("{\"cmd\":\"list\"}\n", NULL), *doms;
    struct json_object *found = NULL;
    if (json_object_object_get_ex(reply, "domains", &doms) &&
        json_object_is_type(doms, json_type_array))
        for (size_t i = 0; i < json_object_array_length(doms); i++) {
            struct json_object *d = json_object_array_get_idx(doms, i), *id;
            if (json_object_object_get_ex(d, "domid", &id) && json_object_get_int(id) == domid)
                found = json_object_get(d);
        }
    json_object_put(reply);
    return found;
}

static int64_t entry_int(struct json_object *d, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(d, key, &v) ? json_object_get_int64(v) : -1;
}

static const char *entry_str(struct json_object *d, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(d, key, &v) && v ? json_object_get_string(v) : "";
}

/*
 * Wait until a line the test guest printed (console_io: the domain's dmesg log, each
 * line "(dN) text") starts with `prefix`; copy the text out.
 */
static void wait_console(int domid, const char *prefix, char *line, size_t linelen,
                         unsigned timeout_s)
{
    char path[PATH_MAX + 32], tag[16];
    snprintf(path, sizeof(path), "%s/" XKVM_DMESG_LOG_FMT, host.dir, (unsigned)domid);
    int taglen = snprintf(tag, sizeof(tag), "(d%d) ", domid);
    uint64_t deadline = now_ns() + timeout_s * 1000000000ull;
    while (now_ns() < deadline) {
        FILE *f = fopen(path, "r");
        char buf[1024];
        while (f && fgets(buf, sizeof(buf), f)) {
            const char *text = strncmp(buf, tag, (size_t)taglen) ? buf : buf + taglen;
            if (!strncmp(text, prefix, strlen(prefix))) {
                buf[strcspn(buf, "\n")] = '\0';
                snprintf(line, linelen, "%s", text);
                fclose(f);
                return;
            }
        }
        if (f)
            fclose(f);
        usleep(10000);
    }
    die("d%d: no console line \"%s\" within %u s (see %s)", domid, prefix, timeout_s, path);
}

/* ---- bare KVM ---------------------------------------------------------------------- */

struct bare_vm {
    int vm, vcpu;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;
    size_t mem_size;
    bool sync_regs;
};

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    struct bare_vm *b = opaque;
    if (gpa > b->mem_size || len > b->mem_size - gpa)
        return NULL;
    return b->mem + gpa;
}

static void bare_vm_destroy(struct bare_vm *b)
{
    if (b->run)
        munmap(b->run, b->run_size);
    if (b->vcpu >= 0)
        close(b->vcpu);
    if (b->vm >= 0)
        close(b->vm);
    if (b->mem)
        munmap(b->mem, b->mem_size);
    *b = (struct bare_vm){ .vm = -1, .vcpu = -1 };
}

/* The hypercall-page MSR exits to user space; every other MSR stays KVM's. */
static void bare_msr_filter(int vm)
{
    struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR };
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
    static uint8_t deny_bitmap[1] = { 0 };
    struct kvm_msr_filter filter = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
    filter.ranges[0] = (struct kvm_msr_filter_range){
        .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
        .nmsrs = 1, .base = XKVM_HYPERCALL_MSR, .bitmap = deny_bitmap,
    };
    if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0 || ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter) < 0)
        die("MSR filter: %s", strerror(errno));
}

/*
 * A VM set up as xkvmd sets up a domain: in-kernel irqchip, the hypercall MSR sent to
 * user space, one flat memslot at gpa 0, one vCPU with Xen's CPUID. `sync` chooses the
 * registers KVM copies into kvm_run at every exit (0: none).
 */
static void bare_vm_create(struct bare_vm *b, size_t mem_size, uint64_t sync)
{
    *b = (struct bare_vm){ .vm = -1, .vcpu = -1, .mem_size = mem_size };
    b->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (b->vm < 0)
        die("KVM_CREATE_VM: %s", strerror(errno));
    /* Ignored where meaningless (kvm-pvm, SVM). */
    ioctl(b->vm, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ 0xfeffc000 });
    ioctl(b->vm, KVM_SET_TSS_ADDR, 0xfeffd000ul);
    if (ioctl(b->vm, KVM_CREATE_IRQCHIP, 0) < 0)
        die("KVM_CREATE_IRQCHIP: %s", strerror(errno));
    bare_msr_filter(b->vm);

    b->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                  MAP_NORESERVE, -1, 0);
    if (b->mem == MAP_FAILED) {
        b->mem = NULL;
        die("mmap of %zu bytes: %s", mem_size, strerror(errno));
    }
    struct kvm_userspace_memory_region slot = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size,
        .userspace_addr = (uintptr_t)b->mem,
    };
    if (ioctl(b->vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

    b->vcpu = ioctl(b->vm, KVM_CREATE_VCPU, 0ul);
    if (b->vcpu < 0)
        die("KVM_CREATE_VCPU: %s", strerror(errno));
    b->run_size = (size_t)ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    b->run = mmap(NULL, b->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, b->vcpu, 0);
    if (b->run == MAP_FAILED) {
        b->run = NULL;
        die("mmap of kvm_run: %s", strerror(errno));
    }
    int khz = ioctl(b->vcpu, KVM_GET_TSC_KHZ, 0);
    struct kvm_cpuid2 *cpuid = cpuid_build(supported_cpuid, 0, 1, khz > 0 ? (uint32_t)khz : 0);
    if (!cpuid || ioctl(b->vcpu, KVM_SET_CPUID2, cpuid) < 0)
        die("KVM_SET_CPUID2: %s", strerror(errno));
    free(cpuid);
    int caps = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
    b->sync_regs = sync && caps > 0 && ((uint64_t)caps & sync) == sync;
    if (b->sync_regs)
        b->run->kvm_valid_regs = sync;
}

static void bare_set_entry(struct bare_vm *b, uint32_t entry, uint32_t start_info)
{
    struct kvm_sregs s;
    struct kvm_regs r;
    if (ioctl(b->vcpu, KVM_GET_SREGS, &s) < 0)
        die("KVM_GET_SREGS: %s", strerror(errno));
    pvh_boot_regs(&s, &r, entry, start_info);
    if (ioctl(b->vcpu, KVM_SET_SREGS, &s) < 0 || ioctl(b->vcpu, KVM_SET_REGS, &r) < 0)
        die("setting boot registers: %s", strerror(errno));
}

static void on_alarm(int sig)
{
    (void)sig;
    bare_timed_out = 1;
}

/* KVM_RUN, retried after signals other than our watchdog's. */
static void bare_run(struct bare_vm *b, const char *what)
{
    while (ioctl(b->vcpu, KVM_RUN, 0) < 0) {
        if (errno != EINTR)
            die("%s: KVM_RUN: %s", what, strerror(errno));
        if (bare_timed_out)
            die("%s: guest still running after %d s", what, BARE_TIMEOUT_S);
    }
}

enum bare_create_kind {
    BARE_CREATE_MINIMAL,        /* the reference: VM, 32 MiB memslot, vCPU */
    BARE_CREATE_IRQCHIP_FIRST,  /* + KVM_CREATE_IRQCHIP, MSR filter, then the memslot */
    BARE_CREATE_IRQCHIP_LAST,   /* the same ioctls: MSR filter, memslot, then irqchip */
};

/*
 * What KVM itself charges for a VM with 32 MiB and a vCPU. The two longer variants
 * show that the order of the ioctls matters: measured on kvm-pvm, the MSR filter or a
 * memslot set right after KVM_CREATE_IRQCHIP waits for a full SRCU grace period.
 */
static uint64_t bare_create_once(enum bare_create_kind kind)
{
    uint64_t t0 = now_ns();
    int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("bare create: KVM_CREATE_VM: %s", strerror(errno));
    if (kind == BARE_CREATE_IRQCHIP_FIRST) {
        if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
            die("bare create: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        bare_msr_filter(vm);
    } else if (kind == BARE_CREATE_IRQCHIP_LAST) {
        bare_msr_filter(vm);
    }
    void *mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct kvm_userspace_memory_region slot = {
        .slot = 0, .memory_size = GUEST_MEM, .userspace_addr = (uintptr_t)mem,
    };
    if (mem == MAP_FAILED || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        die("bare create: memslot: %s", strerror(errno));
    if (kind == BARE_CREATE_IRQCHIP_LAST && ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        die("bare create: KVM_CREATE_IRQCHIP: %s", strerror(errno));
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0ul);
    if (vcpu < 0)
        die("bare create: KVM_CREATE_VCPU: %s", strerror(errno));
    uint64_t t = now_ns() - t0;
    close(vcpu);
    close(vm);
    munmap(mem, GUEST_MEM);
    return t;
}

struct hcloop_result {
    uint64_t n, tsc_per_call, tsc_khz;
    double ns_per_call;
};

static bool parse_hcloop(const char *text, struct hcloop_result *res)
{
    const char *p = strstr(text, "xtest: hcloop: n=");
    if (!p || sscanf(p, "xtest: hcloop: n=%" SCNu64 " tsc_per_call=%" SCNu64 " tsc_khz=%" SCNu64,
                     &res->n, &res->tsc_per_call, &res->tsc_khz) != 3 || !res->tsc_khz)
        return false;
    res->ns_per_call = (double)res->tsc_per_call * 1e6 / (double)res->tsc_khz;
    return true;
}

/* KVM's Xen intercept on a bare VM, as xkvmd sets it: VMCALL/VMMCALL -> KVM_EXIT_XEN. */
static void bare_xen_intercept(struct bare_vm *b)
{
    struct kvm_xen_hvm_config xc = { .flags = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
                                     .msr = XKVM_HYPERCALL_MSR };
    if (ioctl(b->vm, KVM_XEN_HVM_CONFIG, &xc) < 0)
        die("KVM_XEN_HVM_CONFIG: %s", strerror(errno));
}

/*
 * A KVM_EXIT_XEN hypercall on the bare loop: as the port-I/O one below, result
 * xen_version's answer, console_io buffered, sched_op ends the run (returns true).
 */
static bool bare_xen_hcall(struct bare_vm *b, const struct gphys *g, char *console,
                           size_t size, size_t *clen)
{
    struct kvm_xen_exit *x = &b->run->xen;
    if (x->type != KVM_EXIT_XEN_HCALL)
        die("bare hcloop: Xen exit of type %u", x->type);
    uint64_t nr = x->u.hcall.input, a0 = x->u.hcall.params[0];
    x->u.hcall.result = XENVER_RESULT;
    if (nr == __HYPERVISOR_sched_op) {
        x->u.hcall.result = 0;
        return a0 == SCHEDOP_shutdown;
    }
    if (nr == __HYPERVISOR_console_io) {
        x->u.hcall.result = 0;
        struct kvm_sregs s;
        if (ioctl(b->vcpu, KVM_GET_SREGS, &s) < 0)
            die("KVM_GET_SREGS: %s", strerror(errno));
        struct guest_paging pg = { s.cr0, s.cr3, s.cr4, s.efer };
        uint64_t len = x->u.hcall.params[1];
        size_t n = len < size - 1 - *clen ? len : size - 1 - *clen;
        if (a0 == CONSOLEIO_write && n &&
            copy_from_guest(g, &pg, console + *clen, x->u.hcall.params[2], n) == 0)
            *clen += n;
    }
    return false;
}

/*
 * The guest under a VMM that does the least possible per exit: hypercall exits get
 * RAX = xen_version's answer, except console_io (buffered for the result line) and
 * sched_op (shutdown ends the run). `sync` is what KVM copies to kvm_run per exit.
 */
static void bare_hcloop(const void *elf, size_t elf_size, const char *cmdline, uint64_t sync,
                        bool intercept, struct hcloop_result *res, uint64_t *exits_out)
{
    struct bare_vm b;
    bare_vm_create(&b, GUEST_MEM, sync);
    if (intercept)
        bare_xen_intercept(&b);
    struct gphys g = { .ptr = flat_ptr, .opaque = &b };
    struct pvh_image img;
    char why[256] = "";
    if (pvh_parse(elf, elf_size, &img, why, sizeof(why)) ||
        pvh_load(elf, elf_size, &img, &g, why, sizeof(why)))
        die("bare hcloop: kernel: %s", why);
    struct hvm_memmap_table_entry map = { .addr = 0, .size = GUEST_MEM,
                                          .type = XEN_HVM_MEMMAP_TYPE_RAM };
    uint64_t at = (img.load_hi + 4095) & ~4095ull, si;
    if (pvh_write_start_info(&g, at, at + START_INFO_SPACE, cmdline, &map, 1, &si,
                             why, sizeof(why)))
        die("bare hcloop: start_info: %s", why);
    bare_set_entry(&b, img.entry, (uint32_t)si);

    char console[8192];
    size_t clen = 0;
    uint64_t exits = 0;
    bool done = false;
    struct kvm_run *run = b.run;
    bare_timed_out = 0;
    alarm(BARE_TIMEOUT_S);
    while (!done) {
        bare_run(&b, "bare hcloop");
        exits++;
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != XKVM_HYPERCALL_PORT ||
                run->io.size != 4 || run->io.count != 1) {
                if (run->io.direction == KVM_EXIT_IO_IN)
                    memset((uint8_t *)run + run->io.data_offset, 0xff,
                           (size_t)run->io.size * run->io.count);
                break;
            }
            struct kvm_regs rbuf, *r = &run->s.regs.regs;
            if (!b.sync_regs) {
                if (ioctl(b.vcpu, KVM_GET_REGS, &rbuf) < 0)
                    die("KVM_GET_REGS: %s", strerror(errno));
                r = &rbuf;
            }
            unsigned nr = (uint32_t)r->rax;
            if (nr == __HYPERVISOR_console_io || nr == __HYPERVISOR_sched_op) {
                struct kvm_sregs s;
                if (ioctl(b.vcpu, KVM_GET_SREGS, &s) < 0)
                    die("KVM_GET_SREGS: %s", strerror(errno));
                struct guest_paging pg = { s.cr0, s.cr3, s.cr4, s.efer };
                bool is64 = (s.efer & EFER_LMA) && s.cs.l;
                uint64_t a0 = is64 ? r->rdi : (uint32_t)r->rbx;
                uint64_t a1 = is64 ? r->rsi : (uint32_t)r->rcx;
                uint64_t a2 = is64 ? r->rdx : (uint32_t)r->rdx;
                r->rax = 0;
                if (nr == __HYPERVISOR_sched_op) {
                    done = a0 == SCHEDOP_shutdown;
                } else if (a0 == CONSOLEIO_write) {
                    size_t n = a1 < sizeof(console) - 1 - clen ? a1 : sizeof(console) - 1 - clen;
                    if (n && copy_from_guest(&g, &pg, console + clen, a2, n) == 0)
                        clen += n;
                }
            } else {
                r->rax = XENVER_RESULT;
            }
            if (b.sync_regs)
                run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
            else if (ioctl(b.vcpu, KVM_SET_REGS, r) < 0)
                die("KVM_SET_REGS: %s", strerror(errno));
            break;
        }
        case KVM_EXIT_XEN:
            done = bare_xen_hcall(&b, &g, console, sizeof(console), &clen);
            break;
        case KVM_EXIT_X86_WRMSR:
            run->msr.error = 1;
            if (run->msr.index == XKVM_HYPERCALL_MSR && !(run->msr.data & 0xfff)) {
                uint8_t *page = flat_ptr(&b, run->msr.data, 4096);
                if (page) {
                    hypercall_page_write(page, HYPERCALL_STUB_PORT_IO);
                    run->msr.error = 0;
                }
            }
            break;
        case KVM_EXIT_X86_RDMSR:
            run->msr.error = 1;
            break;
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
            break;
        case KVM_EXIT_INTR:
            break;
        default:
            die("bare hcloop: unexpected exit %u", run->exit_reason);
        }
    }
    alarm(0);
    bare_vm_destroy(&b);
    console[clen] = '\0';
    if (!strstr(console, "xtest: hcloop: PASS") || !parse_hcloop(console, res))
        die("bare hcloop: no PASS and result line; console:\n%s", console);
    *exits_out = exits;
}

/*
 * `code` at gpa 0x1000 in 32-bit protected mode, a loop that exits each time round:
 * after 1000 warm-up exits, ns per exit over `count`. Every exit must be `want`
 * (for KVM_EXIT_IO, on RAW_EXIT_PORT); a Xen hypercall exit is answered 0.
 */
static double bare_timed_exits(const uint8_t *code, size_t len, bool xen, uint32_t want,
                               unsigned count, const char *what)
{
    struct bare_vm b;
    bare_vm_create(&b, 2u << 20, 0);
    if (xen)
        bare_xen_intercept(&b);
    memcpy(b.mem + 0x1000, code, len);
    bare_set_entry(&b, 0x1000, 0);
    bare_timed_out = 0;
    alarm(BARE_TIMEOUT_S);
    uint64_t t0 = 0;
    const unsigned warmup = 1000;
    for (unsigned i = 0; i < warmup + count; i++) {
        if (i == warmup)
            t0 = now_ns();
        bare_run(&b, what);
        if (b.run->exit_reason != want ||
            (want == KVM_EXIT_IO && b.run->io.port != RAW_EXIT_PORT))
            die("%s: unexpected exit %u", what, b.run->exit_reason);
        if (want == KVM_EXIT_XEN)
            b.run->xen.u.hcall.result = 0;
    }
    uint64_t t = now_ns() - t0;
    alarm(0);
    bare_vm_destroy(&b);
    return (double)t / count;
}

/* `out %al, $RAW_EXIT_PORT; jmp .-2`: ns per exit. */
static double bare_raw_exits(unsigned count)
{
    static const uint8_t code[] = { 0xe6, RAW_EXIT_PORT, 0xeb, 0xfc };
    return bare_timed_exits(code, sizeof(code), false, KVM_EXIT_IO, count, "raw exit loop");
}

/* Does the host's CPU (as KVM reports it) call with VMMCALL (AMD, Hygon)? */
static bool host_vmmcall(void)
{
    for (unsigned i = 0; i < supported_cpuid->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &supported_cpuid->entries[i];
        if (e->function == 0)
            return (e->ebx == 0x68747541 && e->ecx == 0x444d4163) ||   /* AuthenticAMD */
                   (e->ebx == 0x6f677948 && e->ecx == 0x656e6975);     /* HygonGenuine */
    }
    return false;
}

/* `vmcall; jmp .-5` (or vmmcall), through KVM's Xen intercept: ns per exit. */
static double bare_raw_vmcalls(unsigned count)
{
    const uint8_t code[] = { 0x0f, 0x01, host_vmmcall() ? 0xd9 : 0xc1, 0xeb, 0xfb };
    return bare_timed_exits(code, sizeof(code), true, KVM_EXIT_XEN, count, "raw vmcall loop");
}

/* ---- the benchmarks ---------------------------------------------------------------- */

static void bench_create(const struct opts *o)
{
    unsigned n = o->runs;
    uint64_t *first = calloc(n, sizeof(uint64_t)), *rtt = calloc(n, sizeof(uint64_t));
    uint64_t *ref[3];
    for (int k = 0; k < 3; k++)
        ref[k] = calloc(n, sizeof(uint64_t));
    if (!first || !rtt || !ref[0] || !ref[1] || !ref[2])
        die("out of memory");
    for (unsigned i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bench-create-%u", i);
        int domid = domain_create(o, name, 1, "test=spin", &rtt[i]);
        uint64_t deadline = now_ns() + 10000000000ull;
        int64_t us_first = 0;
        while (us_first <= 0) {
            struct json_object *d = domain_entry(domid);
            if (!d)
                die("d%d vanished after create", domid);
            us_first = entry_int(d, "create_to_first_run_us");
            json_object_put(d);
            if (us_first > 0)
                break;
            if (now_ns() > deadline)
                die("d%d: vCPU 0 not running 10 s after create", domid);
            usleep(1000);
        }
        first[i] = (uint64_t)us_first * 1000;
        domain_op("destroy", domid);
        /* Spaced like xkvmd's creates, so no variant inherits another's grace period. */
        for (int k = 0; k < 3; k++) {
            usleep(20000);
            ref[k][i] = bare_create_once((enum bare_create_kind)k);
        }
    }
    uint64_t first_med = percentile(first, n, 50), first_max = first[n - 1];
    uint64_t rtt_med = percentile(rtt, n, 50), rtt_max = rtt[n - 1];
    uint64_t ref_med = percentile(ref[0], n, 50), ref_max = ref[0][n - 1];
    uint64_t xo_med = percentile(ref[1], n, 50), ro_med = percentile(ref[2], n, 50);
    printf("{\"bench\":\"create\",\"runs\":%u,\"memory_mb\":%u,\"vcpus\":1,"
           "\"create_to_first_run_us_median\":%.0f,\"create_to_first_run_us_max\":%.0f,"
           "\"create_rtt_us_median\":%.0f,\"create_rtt_us_max\":%.0f,"
           "\"ref\":\"bare KVM_CREATE_VM + mmap + 32 MiB memslot + KVM_CREATE_VCPU\","
           "\"ref_us_median\":%.0f,\"ref_us_max\":%.0f,\"ratio\":%.2f,"
           "\"ref_irqchip_filter_memslot_us_median\":%.0f,"
           "\"ref_filter_memslot_irqchip_us_median\":%.0f}\n",
           n, GUEST_MEM >> 20, us(first_med), us(first_max), us(rtt_med), us(rtt_max),
           us(ref_med), us(ref_max), (double)first_med / (double)ref_med,
           us(xo_med), us(ro_med));
    fflush(stdout);
    free(first);
    free(rtt);
    for (int k = 0; k < 3; k++)
        free(ref[k]);
}

static void bench_pause(const struct opts *o, unsigned vcpus)
{
    unsigned n = o->pairs;
    char name[32];
    snprintf(name, sizeof(name), "bench-pause-%u", vcpus);
    int domid = domain_create(o, name, vcpus, "test=busy-user", NULL);
    char line[256];
    wait_console(domid, "xtest: busy-user: tick", line, sizeof(line), 60);

    uint64_t *p = calloc(n, sizeof(uint64_t)), *u = calloc(n, sizeof(uint64_t));
    uint64_t *ref = calloc(n, sizeof(uint64_t));
    if (!p || !u || !ref)
        die("out of memory");
    for (unsigned i = 0; i < n; i++) {
        ref[i] = ping();
        p[i] = domain_op("pause", domid);
        u[i] = domain_op("unpause", domid);
        usleep(2000);      /* let the vCPUs get back into the guest */
    }
    struct json_object *d = domain_entry(domid);
    if (!d || strcmp(entry_str(d, "state"), "running"))
        die("d%d not running after the pause loop (state %s)", domid,
            d ? entry_str(d, "state") : "gone");
    json_object_put(d);
    domain_op("destroy", domid);

    uint64_t ref_med = percentile(ref, n, 50), ref_p99 = percentile(ref, n, 99);
    uint64_t p_med = percentile(p, n, 50), p_p99 = percentile(p, n, 99);
    uint64_t u_med = percentile(u, n, 50), u_p99 = percentile(u, n, 99);
    printf("{\"bench\":\"pause_unpause\",\"vcpus\":%u,\"pairs\":%u,\"guest\":\"test=busy-user\","
           "\"pause_us_median\":%.1f,\"pause_us_p99\":%.1f,"
           "\"unpause_us_median\":%.1f,\"unpause_us_p99\":%.1f,"
           "\"ref\":\"ping round trip\",\"ref_us_median\":%.1f,\"ref_us_p99\":%.1f,"
           "\"ratio\":%.2f,\"ratio_unpause\":%.2f}\n",
           vcpus, n, us(p_med), us(p_p99), us(u_med), us(u_p99), us(ref_med), us(ref_p99),
           (double)p_med / (double)ref_med, (double)u_med / (double)ref_med);
    fflush(stdout);
    free(p);
    free(u);
    free(ref);
}

static void *read_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0)
        die("cannot read %s: %s", path, strerror(errno));
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        die("cannot map %s: %s", path, strerror(errno));
    *size = (size_t)st.st_size;
    return p;
}

/*
 * One hcloop guest under xkvmd: created, its result line parsed, its exit and
 * hypercall counters read, destroyed; the ns per call. want_transport, if set, is the
 * transport xkvmd must name for it.
 */
static double run_hcloop_domain(const struct opts *o, const char *name, const char *cmdline,
                                int64_t *exits, int64_t *hcalls, const char *want_transport)
{
    char line[256];
    int domid = domain_create(o, name, 1, cmdline, NULL);
    wait_console(domid, "xtest: hcloop: PASS", line, sizeof(line), BARE_TIMEOUT_S);
    wait_console(domid, "xtest: hcloop: n=", line, sizeof(line), 1);
    struct hcloop_result r;
    if (!parse_hcloop(line, &r))
        die("d%d: cannot parse \"%s\"", domid, line);
    struct json_object *d = domain_entry(domid);
    if (d) {
        *exits = entry_int(d, "exits");
        *hcalls = entry_int(d, "hypercalls");
        const char *tr = entry_str(d, "hypercall_transport");
        if (want_transport && (!tr || strcmp(tr, want_transport)))
            die("xkvmd's transport is %s, not %s", tr ? tr : "not named", want_transport);
        json_object_put(d);
    }
    domain_op("destroy", domid);
    return r.ns_per_call;
}

static void bench_hypercall(const struct opts *o)
{
    size_t elf_size;
    void *elf = read_file(o->guest, &elf_size);
    char cmdline[64];
    snprintf(cmdline, sizeof(cmdline), "test=hcloop n=%u", o->hc_n);
    unsigned n = o->hc_runs;
    double *xk = calloc(n, sizeof(double)), *bare = calloc(n, sizeof(double));
    double *bare_sregs = calloc(n, sizeof(double)), *raw = calloc(n, sizeof(double));
    if (!xk || !bare || !bare_sregs || !raw)
        die("out of memory");
    int64_t xk_exits = 0, xk_hcalls = 0;
    uint64_t bare_exits = 0;
    for (unsigned i = 0; i < n; i++) {
        /* Alternate the sides so drift in the machine's speed hits both. */
        char name[32];
        snprintf(name, sizeof(name), "bench-hcloop-%u", i);
        xk[i] = run_hcloop_domain(o, name, cmdline, &xk_exits, &xk_hcalls, NULL);
        struct hcloop_result r;
        bare_hcloop(elf, elf_size, cmdline, KVM_SYNC_X86_REGS, false, &r, &bare_exits);
        bare[i] = r.ns_per_call;
        bare_hcloop(elf, elf_size, cmdline, KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS, false, &r,
                    &bare_exits);
        bare_sregs[i] = r.ns_per_call;
        raw[i] = bare_raw_exits(o->exits);
    }
    double xk_med = median_d(xk, n), bare_med = median_d(bare, n);
    double sregs_med = median_d(bare_sregs, n), raw_med = median_d(raw, n);
    printf("{\"bench\":\"hypercall\",\"guest\":\"%s\",\"runs\":%u,"
           "\"xkvm_ns_per_call\":%.0f,\"xkvm_ns_per_call_min\":%.0f,\"xkvm_ns_per_call_max\":%.0f,"
           "\"xkvm_exits\":%" PRId64 ",\"xkvm_hypercalls\":%" PRId64 ","
           "\"ref\":\"same guest on a bare KVM loop (sync regs: REGS)\","
           "\"ref_ns_per_call\":%.0f,\"ref_ns_per_call_min\":%.0f,\"ref_ns_per_call_max\":%.0f,"
           "\"ref_exits\":%" PRIu64 ",\"ratio\":%.3f,\"ratio_best\":%.3f,\"goal\":1.2,"
           "\"ref_sregs_ns_per_call\":%.0f,\"ratio_to_ref_sregs\":%.3f}\n",
           cmdline, n, xk_med, xk[0], xk[n - 1], xk_exits, xk_hcalls,
           bare_med, bare[0], bare[n - 1], bare_exits, xk_med / bare_med, xk[0] / bare[0],
           sregs_med, xk_med / sregs_med);
    printf("{\"bench\":\"raw_exit\",\"guest\":\"32-bit protected mode: out %%al,$0x%x; jmp\","
           "\"exits\":%u,\"runs\":%u,\"ns_per_exit\":%.0f,\"ns_per_exit_min\":%.0f,"
           "\"ns_per_exit_max\":%.0f,\"ref\":\"bare hcloop ns per call\","
           "\"ref_ns\":%.0f,\"ratio\":%.3f}\n",
           RAW_EXIT_PORT, o->exits, n, raw_med, raw[0], raw[n - 1], bare_med,
           bare_med / raw_med);
    fflush(stdout);
    free(xk);
    free(bare);
    free(bare_sregs);
    free(raw);
    munmap(elf, elf_size);
}

/*
 * The intercept transport: hcloop calling with VMCALL/VMMCALL directly under xkvmd,
 * beside the same guest on a bare KVM_EXIT_XEN loop and a bare `vmcall` loop.
 */
static void bench_hypercall_intercept(const struct opts *o)
{
    int cap = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XEN_HVM);
    if (cap <= 0 || !(cap & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL)) {
        printf("{\"bench\":\"hypercall_intercept\",\"skipped\":\"this host's KVM has no Xen "
               "hypercall intercept (KVM_CAP_XEN_HVM = %d): guests call through the port-I/O "
               "page here\"}\n", cap < 0 ? 0 : cap);
        fflush(stdout);
        return;
    }
    size_t elf_size;
    void *elf = read_file(o->guest, &elf_size);
    char cmdline[80];
    snprintf(cmdline, sizeof(cmdline), "test=hcloop n=%u hypercall=vmcall", o->hc_n);
    unsigned n = o->hc_runs;
    double *xk = calloc(n, sizeof(double)), *bare = calloc(n, sizeof(double));
    double *raw = calloc(n, sizeof(double));
    if (!xk || !bare || !raw)
        die("out of memory");
    int64_t xk_exits = 0, xk_hcalls = 0;
    uint64_t bare_exits = 0;
    for (unsigned i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bench-vmcall-%u", i);
        xk[i] = run_hcloop_domain(o, name, cmdline, &xk_exits, &xk_hcalls, "kvm-intercept");
        struct hcloop_result r;
        bare_hcloop(elf, elf_size, cmdline, KVM_SYNC_X86_REGS, true, &r, &bare_exits);
        bare[i] = r.ns_per_call;
        raw[i] = bare_raw_vmcalls(o->exits);
    }
    double xk_med = median_d(xk, n), bare_med = median_d(bare, n), raw_med = median_d(raw, n);
    printf("{\"bench\":\"hypercall_intercept\",\"guest\":\"%s\",\"insn\":\"%s\",\"runs\":%u,"
           "\"xkvm_ns_per_call\":%.0f,\"xkvm_ns_per_call_min\":%.0f,\"xkvm_ns_per_call_max\":%.0f,"
           "\"xkvm_exits\":%" PRId64 ",\"xkvm_hypercalls\":%" PRId64 ","
           "\"ref\":\"same guest on a bare KVM_EXIT_XEN loop\",\"ref_ns_per_call\":%.0f,"
           "\"ref_exits\":%" PRIu64 ",\"ratio\":%.3f,"
           "\"raw_ns_per_exit\":%.0f,\"raw\":\"32-bit protected mode: vmcall; jmp (%u exits)\"}\n",
           cmdline, host_vmmcall() ? "vmmcall" : "vmcall", n, xk_med, xk[0], xk[n - 1],
           xk_exits, xk_hcalls, bare_med, bare_exits, xk_med / bare_med, raw_med, o->exits);
    fflush(stdout);
    free(xk);
    free(bare);
    free(raw);
    munmap(elf, elf_size);
}

/*
 * Event round trip between two domains: the guest's evtchn-interdomain ping-pong
 * (send, upcall on the other side, send back, upcall), timed by the guests with Xen
 * system time. Reference in the same run: one bare port-I/O exit.
 */
static void bench_events(const struct opts *o, const char *upcall, const char *abi)
{
    enum { SERVER = 7001, CLIENT = 7002 };
    unsigned count = o->events;
    char cmd[192], line[256];
    snprintf(cmd, sizeof(cmd),
             "test=evtchn-interdomain role=server peer=%d count=%u upcall=%s evtchn=%s",
             CLIENT, count, upcall, abi);
    domain_create_as(o, SERVER, "bench-ev-server", 1, cmd, NULL);
    wait_console(SERVER, "xtest: evtchn-interdomain: port=", line, sizeof(line), 60);
    unsigned port = (unsigned)strtoul(strchr(line, '=') + 1, NULL, 10);
    snprintf(cmd, sizeof(cmd),
             "test=evtchn-interdomain role=client peer=%d port=%u count=%u upcall=%s evtchn=%s",
             SERVER, port, count, upcall, abi);
    domain_create_as(o, CLIENT, "bench-ev-client", 1, cmd, NULL);
    unsigned timeout = 60 + count / 100;
    wait_console(SERVER, "xtest: evtchn-interdomain: PASS", line, sizeof(line), timeout);
    wait_console(CLIENT, "xtest: evtchn-interdomain: PASS", line, sizeof(line), timeout);
    wait_console(CLIENT, "xkvm-guest: evtchn-interdomain: client sent", line, sizeof(line), 1);
    const char *rate = strchr(line, '(');
    double per_s = rate ? strtod(rate + 1, NULL) : 0;
    if (per_s <= 0)
        die("cannot parse \"%s\"", line);
    domain_op("destroy", CLIENT);
    domain_op("destroy", SERVER);
    double raw = bare_raw_exits(o->exits);
    double rt_ns = 1e9 / per_s;
    printf("{\"bench\":\"event_round_trip\",\"guests\":\"evtchn-interdomain ping-pong\","
           "\"upcall\":\"%s\",\"evtchn_abi\":\"%s\",\"round_trips\":%u,\"round_trips_per_s\":%.0f,"
           "\"us_per_round_trip\":%.1f,\"ref\":\"bare KVM port-I/O exit\","
           "\"ref_us\":%.2f,\"ratio\":%.1f}\n",
           upcall, abi, count, per_s, rt_ns / 1000, raw / 1000, rt_ns / raw);
    fflush(stdout);
}

/*
 * xenstore operations from a guest: the test guest's xenstore-bench (writes and reads
 * over its store ring, served by xkvm-xenstored through the dom0 interface), timed by
 * the guest. Reference in the same run: one bare port-I/O exit.
 */
static void bench_xenstore_ring(const struct opts *o)
{
    char cmd[64], line[256];
    snprintf(cmd, sizeof(cmd), "test=xenstore-bench n=%u", o->xs_ops / 2);
    int domid = domain_create(o, "bench-xenstore", 1, cmd, NULL);
    wait_console(domid, "xtest: xenstore-bench: PASS", line, sizeof(line), 120);
    wait_console(domid, "xtest: xenstore-bench: ops=", line, sizeof(line), 1);
    const char *p = strstr(line, "ns_per_op=");
    double ns = p ? strtod(p + 10, NULL) : 0;
    if (ns <= 0)
        die("cannot parse \"%s\"", line);
    domain_op("destroy", domid);
    double raw = bare_raw_exits(o->exits);
    printf("{\"bench\":\"xenstore_ring\",\"guest\":\"%s\",\"ops_per_s\":%.0f,"
           "\"us_per_op\":%.1f,\"ref\":\"bare KVM port-I/O exit\",\"ref_us\":%.2f,"
           "\"ratio\":%.1f}\n", cmd, 1e9 / ns, ns / 1000, raw / 1000, ns / raw);
    fflush(stdout);
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench-hv --xkvmd PATH --xkvm PATH --guest PATH [--runs N] [--pairs N]\n"
        "                [--hc-runs N] [--hc-n N] [--exits N] [--keep]\n"
        "  --runs N     domain creations (default 10)\n"
        "  --pairs N    pause+unpause pairs per domain (default 50)\n"
        "  --hc-runs N  hcloop and raw-exit runs on each side (default 5)\n"
        "  --hc-n N     hypercalls per hcloop run (default 20000)\n"
        "  --events N   event round trips per event benchmark (default 2000)\n"
        "  --evtchn L   event channel ABIs the events benchmark runs in, of 2l,fifo\n"
        "               (default both, one after the other in the same run)\n"
        "  --exits N    out instructions per raw-exit run (default 100000)\n"
        "  --keep       keep xkvmd's run directory (logs, console logs)\n"
        "  --only LIST  run only these of create,pause,events,xenstore,hypercall (raw_exit and\n"
        "               hypercall_intercept come with hypercall)\n"
        "Prints one JSON line per figure. Needs /dev/kvm.\n");
}

/* The ABI named by the first n bytes of s (one item of --evtchn), or NULL. */
static const char *evtchn_abi_name(const char *s, size_t n)
{
    return n == 2 && !strncmp(s, "2l", 2) ? "2l" : n == 4 && !strncmp(s, "fifo", 4) ? "fifo"
                                                                               : NULL;
}

static bool selected(const struct opts *o, const char *name)
{
    if (!o->only)
        return true;
    size_t n = strlen(name);
    for (const char *p = o->only; *p; p += strcspn(p, ","), p += *p == ',')
        if (strcspn(p, ",") == n && !strncmp(p, name, n))
            return true;
    return false;
}

static unsigned parse_count(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v == 0 || v > 100000000ul) {
        fprintf(stderr, "bench-hv: bad %s '%s'\n", opt, s);
        exit(2);
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    struct opts o = { .runs = 10, .pairs = 50, .hc_runs = 5, .hc_n = 20000, .exits = 100000,
                      .events = 2000, .xs_ops = 2000, .evtchn = "2l,fifo" };
    static const struct option longopts[] = {
        { "xkvmd", required_argument, NULL, 'd' },
        { "xkvm", required_argument, NULL, 'x' },
        { "guest", required_argument, NULL, 'g' },
        { "runs", required_argument, NULL, 'n' },
        { "pairs", required_argument, NULL, 'p' },
        { "hc-runs", required_argument, NULL, 'r' },
        { "hc-n", required_argument, NULL, 'c' },
        { "exits", required_argument, NULL, 'e' },
        { "events", required_argument, NULL, 'v' },
        { "evtchn", required_argument, NULL, 'a' },
        { "keep", no_argument, NULL, 'k' },
        { "only", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': o.xkvmd = optarg; break;
        case 'x': o.xkvm = optarg; break;
        case 'g': o.guest = optarg; break;
        case 'n': o.runs = parse_count(optarg, "--runs"); break;
        case 'p': o.pairs = parse_count(optarg, "--pairs"); break;
        case 'r': o.hc_runs = parse_count(optarg, "--hc-runs"); break;
        case 'c': o.hc_n = parse_count(optarg, "--hc-n"); break;
        case 'e': o.exits = parse_count(optarg, "--exits"); break;
        case 'v': o.events = parse_count(optarg, "--events"); break;
        case 'a':
            o.evtchn = optarg;
            for (const char *a = optarg; *a; a += strcspn(a, ","), a += *a == ',')
                if (!evtchn_abi_name(a, strcspn(a, ",")))
                    die("--evtchn: unknown ABI '%.*s' (2l, fifo)", (int)strcspn(a, ","), a);
            break;
        case 'k': o.keep = true; break;
        case 'o': o.only = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    for (const char *p = o.only ? o.only : ""; *p; p += strcspn(p, ","), p += *p == ',') {
        size_t n = strcspn(p, ",");
        if (!((n == 6 && !strncmp(p, "create", 6)) || (n == 5 && !strncmp(p, "pause", 5)) ||
              (n == 9 && !strncmp(p, "hypercall", 9)) || (n == 6 && !strncmp(p, "events", 6)) ||
              (n == 8 && !strncmp(p, "xenstore", 8)))) {
            fprintf(stderr, "bench-hv: --only: unknown benchmark '%.*s'\n", (int)n, p);
            return 2;
        }
    }
    if (!o.xkvmd || !o.guest || optind != argc) {
        usage(stderr);
        return 2;
    }
    /* xkvmd wants an absolute kernel path. */
    static char guest_abs[PATH_MAX];
    if (!realpath(o.guest, guest_abs)) {
        fprintf(stderr, "bench-hv: %s: %s\n", o.guest, strerror(errno));
        return 2;
    }
    o.guest = guest_abs;
    /* --xkvm is accepted for symmetry with the other tools; the socket is used directly. */

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) {
        printf("{\"bench\":\"hv\",\"skipped\":\"cannot open /dev/kvm: %s\"}\n", strerror(errno));
        return 0;
    }
    unsigned nent = 256;
    supported_cpuid = calloc(1, sizeof(*supported_cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    if (!supported_cpuid)
        die("out of memory");
    supported_cpuid->nent = nent;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, supported_cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
    struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART: KVM_RUN -> EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    host_start(&o);
    if (selected(&o, "create"))
        bench_create(&o);
    if (selected(&o, "pause")) {
        bench_pause(&o, 1);
        bench_pause(&o, 4);
    }
    if (selected(&o, "events")) {
        for (const char *abi = o.evtchn; *abi; abi += strcspn(abi, ","), abi += *abi == ',') {
            const char *name = evtchn_abi_name(abi, strcspn(abi, ","));
            bench_events(&o, "callback", name);
            bench_events(&o, "vector", name);
        }
    }
    if (selected(&o, "xenstore"))
        bench_xenstore_ring(&o);
    if (selected(&o, "hypercall")) {
        bench_hypercall(&o);
        bench_hypercall_intercept(&o);
    }
    host_stop();
    return 0;
}
