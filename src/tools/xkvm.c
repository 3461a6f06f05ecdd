/*
 * xkvm: the toolstack CLI, xl-like. Each command is one or a few requests on
 * xkvmd's control socket (docs/control-api.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "tools/control_client.h"
#include "tools/xlcfg.h"
#include "util/domcfg.h"
#include "xkvm/control.h"

#include <xenstore.h>

#define EXIT_USAGE 2
#define ERRLEN 1024
/* Xen's DOMID_FIRST_RESERVED: ids from here on are not domains. */
#define DOMID_LIMIT 0x7ff0u
#define CTRL_RIGHT_BRACKET 0x1d
#define CONSOLE_POLL_MS 200
/* How long `console` keeps retrying while xkvmd is unreachable (e.g. live update). */
#define CONSOLE_DAEMON_GRACE_S 10

static const char *rundir;

static const char usage_text[] =
"Usage: xkvm [--rundir DIR] COMMAND [ARGS...]\n"
"\n"
"The toolstack for xkvmd, which runs Xen HVM/PVH guests on KVM.\n"
"\n"
"Commands:\n"
"  create CFG [-p|--paused] [--domid N]\n"
"                                create a domain from an xl.cfg file and print its\n"
"                                domid (-p: leave it paused; --domid: ask for N)\n"
"  list [--json]                 list the domains\n"
"  info [--json]                 show information about the host and xkvmd\n"
"  top [-d SECONDS] [-n ITERATIONS] [--json]\n"
"                                per-domain CPU %, memory, events/s, hypercalls/s,\n"
"                                VM exits/s, disk and network I/O, refreshed every\n"
"                                -d seconds (default 1) -n times (default: until\n"
"                                interrupted), as xl top; --json: one sample over -d\n"
"                                seconds as one JSON object, then exit\n"
"  pause DOMAIN                  pause a domain\n"
"  unpause DOMAIN                unpause a domain\n"
"  destroy DOMAIN                destroy a domain\n"
"  vcpu-set DOMAIN N             set the domain's online vCPUs to N (1 to its\n"
"                                maxvcpus): cpu/I/availability in xenstore says\n"
"                                online for I < N, offline above, as xl vcpu-set\n"
"  mem-set DOMAIN MEM            set the domain's balloon target to MEM (MiB, or\n"
"                                with a suffix k, m or g; at most its maxmem):\n"
"                                memory/target in xenstore, as xl mem-set\n"
"  console DOMAIN [--no-follow]  print the domain's console output and follow it\n"
"                                until the domain is gone (Ctrl-] detaches); on a\n"
"                                terminal, what you type goes to the guest's PV\n"
"                                console (through xkvm-consoled);\n"
"                                --no-follow prints what is there and exits\n"
"  dmesg DOMAIN [-c|--clear]     print the domain's hypervisor-console log: what it\n"
"                                wrote with console_io or to port 0xE9, as xl dmesg\n"
"                                shows it, \"(dN) text\"; a gone domain's log is kept\n"
"                                until its id is reused (-c: then clear it)\n"
"  shutdown DOMAIN [-w|--wait] [--timeout SECONDS]\n"
"                                ask the guest to power off (control/shutdown in\n"
"                                xenstore, as xl shutdown) and wait for it to\n"
"                                acknowledge (--timeout, default 60 s); -w: then wait\n"
"                                until it has shut down and its on_poweroff action\n"
"                                was taken\n"
"  reboot DOMAIN [-w|--wait] [--timeout SECONDS]\n"
"                                the same, to reboot (control/shutdown = reboot)\n"
"  sysrq DOMAIN KEY              send the guest a magic SysRq key (control/sysrq)\n"
"  debug-state DOMAIN            print the domain's PV state (event channels,\n"
"                                grant table, shared_info, vcpu_info, timers) as JSON\n"
"  save-context DOMAIN FILE      pause the domain briefly and write its PV state\n"
"                                (a domain context image, docs/domain-context.md)\n"
"                                to FILE; check it with xkvm-ctx verify\n"
"  save DOMAIN FILE [--keep] [--compat xen-4.17]\n"
"                                save the domain to FILE (a libxc migration stream,\n"
"                                docs/stream.md) and destroy it (--keep: let it run\n"
"                                on; --compat: a plain Xen 4.17 stream, needs --keep);\n"
"                                FILE is created, mode 0600, and must not exist\n"
"  restore FILE [CONFIG]         restore a saved domain under its old domid; its disks\n"
"                                and kernel are CONFIG's (an xl.cfg), else the save's\n"
"                                if inside an xkvmd --disk-root/--kernel-root\n"
"  migrate DOMAIN HOST:PORT|ssh://[USER@]HOST[:PORT]|local:RUNDIR [--downtime-ms N] [--max-iters N]\n"
"          [--non-live] [--no-auto-converge] [--downtime-strict] [--report FILE]\n"
"          [--postcopy] [--postcopy-after N]\n"
"          [--tls-hostname NAME] [--ssh-command CMD] [--remote-xkvm PATH]\n"
"          [--connections N]\n"
"                                live-migrate the domain to the xkvmd listening at\n"
"                                HOST:PORT (xkvmd --migrate-listen); progress on a\n"
"                                terminal, a JSON report with --report. Over TLS when\n"
"                                this host's xkvmd has --migrate-tls-dir/--migrate-psk;\n"
"                                the destination's certificate must name NAME (default\n"
"                                HOST). ssh://: through ssh (CMD, default $XKVM_SSH or\n"
"                                ssh) running `PATH migrate-receive` there (default xkvm).\n"
"                                local:RUNDIR: to another xkvmd on this host, sharing\n"
"                                the guest's memory instead of copying it\n"
"                                A guest that dirties faster than the link is slowed\n"
"                                (vCPU throttle) until the rest fits --downtime-ms;\n"
"                                --downtime-strict: fail if it cannot. --postcopy: run\n"
"                                the guest there after N passes (default 1; 0: at\n"
"                                once) or when pre-copy cannot converge, its missing\n"
"                                pages fetched on demand (docs/migration.md)\n"
"                                --connections N: pages over N TCP connections (or\n"
"                                TLS sessions), 1..16, default 1\n"
"  migrate-recover DOMAIN HOST:PORT|ssh://[USER@]HOST[:PORT]\n"
"                                resume a postcopy-paused post-copy migration\n"
"                                over a new connection (docs/migration.md)\n"
"  migrate-cancel DOMAIN         stop the domain's running migration before the\n"
"                                hand-over: it runs on here, the destination cleans up\n"
"  migrate-receive               receive a migration on stdin/stdout into this host's\n"
"                                xkvmd (what xkvm migrate ssh:// runs at the far end)\n"
"  live-update [--binary PATH] [--verify-memory] [--beside|--exec]\n"
"                                replace the running xkvmd with PATH (default: the\n"
"                                binary it was started from) while every domain stays\n"
"                                alive; prints the downtime and its phases.\n"
"                                By default PATH starts as a new process beside the\n"
"                                old one and builds the VMs while the guests run (the\n"
"                                pid changes), if it can (else as --exec); --beside\n"
"                                insists on it, --exec replaces the process in place\n"
"                                (same pid, VMs built in the pause)\n"
"                                --verify-memory: check that no guest frame changed\n"
"                                (slower). --inject-fault PHASE (tests): make the new\n"
"                                binary fail there (startup, bad-image, pass0, crash,\n"
"                                pass1, pass2, before-unpause) and roll back\n"
"  altp2m DOMAIN OP [KEY=VALUE...]\n"
"                                altp2m views (docs/altp2m.md), as xc_altp2m_*: OP is\n"
"                                mode (mode=mixed|external|limited|disabled),\n"
"                                set-state on=true|false, create access=rwx|rx|n,\n"
"                                destroy|switch view=N, set-access view=N gfn=G\n"
"                                [nr=K] access=A (or gfns=G1,G2,..), get-access view=N\n"
"                                gfn=G, change-gfn view=N old_gfn=G new_gfn=H|-1,\n"
"                                set-visibility view=N visible=true, get-p2m-idx\n"
"                                vcpu=V, status; prints the reply as JSON\n"
"  altp2m-monitor DOMAIN [--json] [--answer resume|keep] [--count N]\n"
"                                print the accesses the domain's altp2m views stop\n"
"                                (vcpu, gfn, offset, access, view, rip) and answer each\n"
"                                (default resume: done once); --count: exit after N.\n"
"                                Paused vCPUs resume once no monitor has polled for\n"
"                                5 s\n"
"  help                          show this help\n"
"\n"
"DOMAIN is a domain id or a domain name.\n"
"\n"
"Options:\n"
"  --rundir DIR   the host's run directory (default: $" XKVM_RUNDIR_ENV ", else "
XKVM_RUNDIR_DEFAULT ")\n"
"  -h, --help     show this help\n"
"  --version      show the version\n"
"\n"
"Exit status: 0 success, 1 error, 2 usage error.\n";

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void errorf(const char *fmt, ...)
{
    va_list ap;
    fputs("xkvm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("xkvm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'xkvm help' for usage.\n", stderr);
    return EXIT_USAGE;
}

static struct json_object *new_request(const char *cmd)
{
    struct json_object *o = json_object_new_object();
    if (!o || json_object_object_add(o, "cmd", json_object_new_string(cmd)) < 0) {
        errorf("out of memory");
        exit(EXIT_FAILURE);
    }
    return o;
}

static void add_field(struct json_object *o, const char *key, struct json_object *v)
{
    if (!v || json_object_object_add(o, key, v) < 0) {
        errorf("out of memory");
        exit(EXIT_FAILURE);
    }
}

/* One request; prints the error and returns the negative errno on failure. */
static int call(struct json_object *req, struct json_object **reply)
{
    char err[ERRLEN];
    int r = control_call(rundir, req, reply, err, sizeof(err));
    json_object_put(req);
    if (r < 0)
        errorf("%s", err);
    return r;
}

/* Same, but ESRCH from xkvmd becomes the CLI's own "no domain" message. */
static int call_domain(struct json_object *req, const char *domain, struct json_object **reply)
{
    char err[ERRLEN];
    int r = control_call(rundir, req, reply, err, sizeof(err));
    json_object_put(req);
    if (r == -ESRCH)
        errorf("no domain with id or name %s", domain);
    else if (r < 0)
        errorf("%s", err);
    return r;
}

static bool get_int_field(struct json_object *o, const char *key, int64_t *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

static const char *get_str_field(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The "domains" array of a list reply, or NULL. */
static struct json_object *list_domains(struct json_object *reply)
{
    struct json_object *d;
    if (!json_object_object_get_ex(reply, "domains", &d) || !json_object_is_type(d, json_type_array))
        return NULL;
    return d;
}

static bool parse_domid(const char *s, uint32_t *domid)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (errno || v >= DOMID_LIMIT)
        return false;
    *domid = (uint32_t)v;
    return true;
}

/*
 * DOMAIN argument -> domid. All digits means an id (as in xl; names cannot be all
 * digits); anything else is looked up by name. 0, or 1 after printing the error.
 */
static int resolve_domain(const char *arg, uint32_t *domid)
{
    bool digits = *arg != '\0';
    for (const char *p = arg; *p; p++)
        if (*p < '0' || *p > '9')
            digits = false;
    if (digits) {
        if (!parse_domid(arg, domid)) {
            errorf("no domain with id or name %s", arg);
            return 1;
        }
        return 0;
    }

    struct json_object *reply;
    if (call(new_request("list"), &reply) < 0)
        return 1;
    struct json_object *doms = list_domains(reply);
    if (!doms) {
        errorf("xkvmd sent a list reply without \"domains\"");
        json_object_put(reply);
        return 1;
    }
    size_t n = json_object_array_length(doms);
    for (size_t i = 0; i < n; i++) {
        struct json_object *d = json_object_array_get_idx(doms, i);
        const char *name = get_str_field(d, "name");
        int64_t id;
        if (name && strcmp(name, arg) == 0 && get_int_field(d, "domid", &id) &&
            id >= 0 && id < DOMID_LIMIT) {
            *domid = (uint32_t)id;
            json_object_put(reply);
            return 0;
        }
    }
    json_object_put(reply);
    errorf("no domain with id or name %s", arg);
    return 1;
}

/* --- create --- */

static int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {
        { "paused", no_argument, NULL, 'p' },
        { "domid", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool paused = false;
    long want_domid = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "+ph", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': paused = true; break;
        case 'd': {
            char *end;
            want_domid = strtol(optarg, &end, 10);
            if (*end || end == optarg || want_domid < 1 || want_domid > 0x7fef)
                return usage_error("create: --domid takes a number from 1 to 32751");
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("create: bad option");
        }
    }
    /* Allow "create CFG -p" as well as "create -p CFG". */
    const char *cfgpath = NULL;
    for (; optind < argc; optind++) {
        if (strcmp(argv[optind], "-p") == 0 || strcmp(argv[optind], "--paused") == 0)
            paused = true;
        else if (!cfgpath)
            cfgpath = argv[optind];
        else
            return usage_error("create: unexpected argument '%s'", argv[optind]);
    }
    if (!cfgpath)
        return usage_error("create: missing config file");

    struct domcfg cfg;
    char err[ERRLEN];
    if (xlcfg_read_file(cfgpath, &cfg, stderr, err, sizeof(err)) < 0) {
        errorf("%s", err);
        return EXIT_FAILURE;
    }

    struct json_object *req = new_request("create");
    add_field(req, "config", domcfg_to_json(&cfg));
    if (paused)
        add_field(req, "start_paused", json_object_new_boolean(1));
    if (want_domid > 0)
        add_field(req, "domid", json_object_new_int64(want_domid));
    struct json_object *reply;
    if (call(req, &reply) < 0)
        return EXIT_FAILURE;
    int64_t domid;
    if (!get_int_field(reply, "domid", &domid) || domid < 0) {
        errorf("xkvmd sent a create reply without a valid \"domid\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    printf("%" PRId64 "\n", domid);
    json_object_put(reply);
    return 0;
}

/* --- list, info --- */

/* Parse "[--json]" for commands with no other arguments. */
static int json_flag(const char *cmd, int argc, char **argv, bool *json)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int ch;
    *json = false;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': *json = true; break;
        case 'h': fputs(usage_text, stdout); return -1;
        default: return usage_error("%s: bad option", cmd);
        }
    }
    if (optind < argc)
        return usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
    return 0;
}

static void print_json(struct json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                           JSON_C_TO_STRING_SPACED |
                                           JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int cmd_list(int argc, char **argv)
{
    bool json;
    int r = json_flag("list", argc, argv, &json);
    if (r)
        return r < 0 ? 0 : r;

    struct json_object *reply;
    if (call(new_request("list"), &reply) < 0)
        return EXIT_FAILURE;
    struct json_object *doms = list_domains(reply);
    if (!doms) {
        errorf("xkvmd sent a list reply without \"domains\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    if (json) {
        print_json(doms);
        json_object_put(reply);
        return 0;
    }

    size_t n = json_object_array_length(doms);
    int width = 20;
    for (size_t i = 0; i < n; i++) {
        const char *name = get_str_field(json_object_array_get_idx(doms, i), "name");
        if (name && (int)strlen(name) > width)
            width = (int)strlen(name);
    }
    printf("%-*s %5s %9s %5s %-9s %s\n", width, "Name", "ID", "Mem(MiB)", "VCPUs",
           "State", "Reason");
    for (size_t i = 0; i < n; i++) {
        struct json_object *d = json_object_array_get_idx(doms, i);
        const char *name = get_str_field(d, "name");
        const char *state = get_str_field(d, "state");
        const char *reason = get_str_field(d, "shutdown_reason");
        const char *why = get_str_field(d, "crash_reason");
        int64_t id = -1, mem_kb = -1, vcpus = -1;
        get_int_field(d, "domid", &id);
        get_int_field(d, "memory_kb", &mem_kb);
        get_int_field(d, "vcpus", &vcpus);
        printf("%-*s %5" PRId64 " %9" PRId64 " %5" PRId64 " %-9s %s%s%s\n", width,
               name ? name : "?", id, mem_kb >= 0 ? mem_kb / 1024 : -1, vcpus,
               state ? state : "?", reason ? reason : "-", why ? ": " : "", why ? why : "");
    }
    json_object_put(reply);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    bool json;
    int r = json_flag("info", argc, argv, &json);
    if (r)
        return r < 0 ? 0 : r;

    struct json_object *reply;
    if (call(new_request("info"), &reply) < 0)
        return EXIT_FAILURE;
    json_object_object_del(reply, "ok");
    if (json) {
        print_json(reply);
    } else {
        json_object_object_foreach(reply, key, val) {
            const char *s = !val ? "-"
                          : json_object_is_type(val, json_type_string) ? json_object_get_string(val)
                          : json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
            printf("%-20s: %s\n", key, s);
        }
    }
    json_object_put(reply);
    return 0;
}

/* --- top --- */

/* One domain's counters from a list reply. */
struct top_sample {
    int64_t domid, cpu_ns, events, hypercalls, exits, disk_bytes, net_tx, net_rx;
};

static struct top_sample top_sample_of(struct json_object *d)
{
    struct top_sample t = { .domid = -1 };
    get_int_field(d, "domid", &t.domid);
    get_int_field(d, "cpu_ns", &t.cpu_ns);
    get_int_field(d, "events", &t.events);
    get_int_field(d, "hypercalls", &t.hypercalls);
    get_int_field(d, "exits", &t.exits);
    get_int_field(d, "disk_bytes", &t.disk_bytes);
    get_int_field(d, "net_tx_bytes", &t.net_tx);
    get_int_field(d, "net_rx_bytes", &t.net_rx);
    return t;
}

/* The list reply's "domains" (owned by *reply) and the monotonic time it was taken. */
static struct json_object *top_poll(struct json_object **reply, uint64_t *when)
{
    if (call(new_request("list"), reply) < 0)
        return NULL;
    *when = mono_ns();
    struct json_object *doms = list_domains(*reply);
    if (!doms) {
        errorf("xkvmd sent a list reply without \"domains\"");
        json_object_put(*reply);
    }
    return doms;
}

/* A counter's rate between two samples; a domain new since (or a counter reset by a
 * restore or live update) counts from 0. */
static double top_rate(int64_t now, int64_t before, double secs)
{
    if (secs <= 0)
        return 0;
    int64_t d = now >= before ? now - before : now;
    return (double)d / secs;
}

static const struct top_sample *top_find(const struct top_sample *s, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].domid == id)
            return &s[i];
    return NULL;
}

/* One domain's row: the rates of `now` since `before` (NULL: since it was built). */
static struct json_object *top_row(struct json_object *d, const struct top_sample *before,
                                   double secs)
{
    struct top_sample now = top_sample_of(d), zero = { 0 };
    if (!before)
        before = &zero;
    struct json_object *o = json_object_new_object();
    const char *name = get_str_field(d, "name"), *state = get_str_field(d, "state");
    int64_t mem_kb = 0, vcpus = 0;
    get_int_field(d, "memory_kb", &mem_kb);
    get_int_field(d, "vcpus", &vcpus);
    json_object_object_add(o, "domid", json_object_new_int64(now.domid));
    json_object_object_add(o, "name", json_object_new_string(name ? name : "?"));
    json_object_object_add(o, "state", json_object_new_string(state ? state : "?"));
    json_object_object_add(o, "vcpus", json_object_new_int64(vcpus));
    json_object_object_add(o, "memory_kb", json_object_new_int64(mem_kb));
    json_object_object_add(o, "cpu_ns", json_object_new_int64(now.cpu_ns));
    /* 100 is one host CPU busy, as xl top's CPU(%). */
    json_object_object_add(o, "cpu_percent",
        json_object_new_double(top_rate(now.cpu_ns, before->cpu_ns, secs) / 1e7));
    json_object_object_add(o, "events_per_s",
        json_object_new_double(top_rate(now.events, before->events, secs)));
    json_object_object_add(o, "hypercalls_per_s",
        json_object_new_double(top_rate(now.hypercalls, before->hypercalls, secs)));
    json_object_object_add(o, "exits_per_s",
        json_object_new_double(top_rate(now.exits, before->exits, secs)));
    json_object_object_add(o, "disk_bytes_per_s",
        json_object_new_double(top_rate(now.disk_bytes, before->disk_bytes, secs)));
    /* As xl top's NETTX/NETRX: what the guest sent and received through its vifs. */
    double tx = top_rate(now.net_tx, before->net_tx, secs);
    double rx = top_rate(now.net_rx, before->net_rx, secs);
    json_object_object_add(o, "net_tx_bytes_per_s", json_object_new_double(tx));
    json_object_object_add(o, "net_rx_bytes_per_s", json_object_new_double(rx));
    json_object_object_add(o, "net_bytes_per_s", json_object_new_double(tx + rx));
    return o;
}

static void top_print_table(struct json_object *rows, double secs, bool tty)
{
    if (tty)
        fputs("\033[H\033[2J", stdout);     /* home, clear: a plain redraw */
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    printf("xkvm top - %02d:%02d:%02d  %zu domains, interval %.1fs\n", tm.tm_hour, tm.tm_min,
           tm.tm_sec, json_object_array_length(rows), secs);
    printf("%-20s %5s %-9s %7s %9s %5s %10s %10s %10s %8s %8s %8s\n", "NAME", "ID", "STATE",
           "CPU(%)", "MEM(MiB)", "VCPUS", "EVENTS/s", "HCALLS/s", "EXITS/s", "DISK/s", "NETTX/s",
           "NETRX/s");
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        struct json_object *r = json_object_array_get_idx(rows, i), *v;
        int64_t id = 0, mem = 0, vcpus = 0;
        get_int_field(r, "domid", &id);
        get_int_field(r, "memory_kb", &mem);
        get_int_field(r, "vcpus", &vcpus);
        double cpu = 0, ev = 0, hc = 0, ex = 0, disk = 0;
        if (json_object_object_get_ex(r, "cpu_percent", &v)) cpu = json_object_get_double(v);
        if (json_object_object_get_ex(r, "events_per_s", &v)) ev = json_object_get_double(v);
        if (json_object_object_get_ex(r, "hypercalls_per_s", &v)) hc = json_object_get_double(v);
        if (json_object_object_get_ex(r, "exits_per_s", &v)) ex = json_object_get_double(v);
        if (json_object_object_get_ex(r, "disk_bytes_per_s", &v)) disk = json_object_get_double(v);
        double tx = 0, rx = 0;
        if (json_object_object_get_ex(r, "net_tx_bytes_per_s", &v)) tx = json_object_get_double(v);
        if (json_object_object_get_ex(r, "net_rx_bytes_per_s", &v)) rx = json_object_get_double(v);
        char dcol[16], tcol[16], rcol[16];
        snprintf(dcol, sizeof(dcol), "%.0fK", disk / 1024);
        snprintf(tcol, sizeof(tcol), "%.0fK", tx / 1024);
        snprintf(rcol, sizeof(rcol), "%.0fK", rx / 1024);
        printf("%-20.20s %5" PRId64 " %-9s %7.1f %9" PRId64 " %5" PRId64 " %10.0f %10.0f %10.0f "
               "%8s %8s %8s\n", get_str_field(r, "name"), id, get_str_field(r, "state"), cpu,
               mem / 1024, vcpus, ev, hc, ex, dcol, tcol, rcol);
    }
    fflush(stdout);
}

static int cmd_top(int argc, char **argv)
{
    static const struct option opts[] = {
        { "delay", required_argument, NULL, 'd' },
        { "iterations", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    double delay = 1;
    long iterations = -1;
    bool json = false;
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "+d:n:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            delay = strtod(optarg, &end);
            if (*end || end == optarg || !(delay >= 0.1 && delay <= 3600))
                return usage_error("top: -d wants seconds from 0.1 to 3600");
            break;
        case 'n':
            iterations = strtol(optarg, &end, 10);
            if (*end || end == optarg || iterations < 1)
                return usage_error("top: -n wants a positive count");
            break;
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("top: bad option");
        }
    }
    if (optind < argc)
        return usage_error("top: unexpected argument '%s'", argv[optind]);
    bool tty = isatty(STDOUT_FILENO);
    struct top_sample *prev = NULL;
    size_t nprev = 0;
    uint64_t prev_when = 0;
    /* The first sample is a baseline: rates need two. */
    for (long it = 0; iterations < 0 || it <= iterations; it++) {
        struct json_object *reply;
        uint64_t when;
        struct json_object *doms = top_poll(&reply, &when);
        if (!doms) {
            free(prev);
            return EXIT_FAILURE;
        }
        size_t n = json_object_array_length(doms);
        if (it > 0) {
            double secs = (double)(when - prev_when) / 1e9;
            struct json_object *rows = json_object_new_array();
            for (size_t i = 0; i < n; i++) {
                struct json_object *d = json_object_array_get_idx(doms, i);
                int64_t id = -1;
                get_int_field(d, "domid", &id);
                json_object_array_add(rows, top_row(d, top_find(prev, nprev, id), secs));
            }
            if (json) {
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "interval_s", json_object_new_double(secs));
                json_object_object_add(o, "domains", rows);
                print_json(o);
                json_object_put(o);
            } else {
                top_print_table(rows, secs, tty);
                if (!tty)
                    putchar('\n');
                json_object_put(rows);
            }
        }
        free(prev);
        prev = calloc(n ? n : 1, sizeof(*prev));
        if (!prev) {
            json_object_put(reply);
            return EXIT_FAILURE;
        }
        for (size_t i = 0; i < n; i++)
            prev[i] = top_sample_of(json_object_array_get_idx(doms, i));
        nprev = n;
        prev_when = when;
        json_object_put(reply);
        if (json && it > 0)
            break;
        if (iterations >= 0 && it == iterations)
            break;
        struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    free(prev);
    return 0;
}

/* --- pause, unpause, destroy --- */

static int simple_domain_cmd(const char *cmd, int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 2)
        return usage_error("%s: expected exactly one DOMAIN argument", cmd);
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request(cmd);
    add_field(req, "domid", json_object_new_int64(domid));
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    return 0;
}

/* vcpu-set DOMAIN N: as xl vcpu-set, through xenstore's cpu/I/availability. */
static int cmd_vcpu_set(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 3)
        return usage_error("vcpu-set: expected DOMAIN and a number of vCPUs");
    char *end;
    errno = 0;
    long n = strtol(argv[2], &end, 10);
    if (errno || end == argv[2] || *end || n < 1 || n > 128)
        return usage_error("vcpu-set: \"%s\" is not a number of vCPUs (1 to 128)", argv[2]);
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("vcpu-set");
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "vcpus", json_object_new_int64(n));
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    return 0;
}

/* "512", "512m", "1g", "262144k": KiB, or -1. MiB without a suffix. */
static long long parse_mem_kb(const char *s)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || n < 0 || n > (1LL << 40))
        return -1;
    int shift = 10;
    if (*end == 'k' || *end == 'K')
        shift = 0, end++;
    else if (*end == 'm' || *end == 'M')
        end++;
    else if (*end == 'g' || *end == 'G')
        shift = 20, end++;
    return *end ? -1 : n << shift;
}

/* mem-set DOMAIN MEM: as xl mem-set, through xenstore's memory/target. */
static int cmd_mem_set(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 3)
        return usage_error("mem-set: expected DOMAIN and an amount of memory");
    long long kb = parse_mem_kb(argv[2]);
    if (kb < 0)
        return usage_error("mem-set: \"%s\" is not an amount of memory (MiB, or with a "
                           "suffix k, m or g)", argv[2]);
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("mem-set");
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "target_kb", json_object_new_int64(kb));
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    return 0;
}

/* --- debug-state --- */

/* The domain's whole PV state as xkvmd holds it (what a save encodes), as JSON. */
static int cmd_debug_state(int argc, char **argv)
{
    if (argc != 2)
        return usage_error("debug-state: expected exactly one DOMAIN argument");
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("debug-state");
    add_field(req, "domid", json_object_new_int64(domid));
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    struct json_object *state;
    if (!json_object_object_get_ex(reply, "state", &state)) {
        errorf("xkvmd sent a debug-state reply without \"state\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    puts(json_object_to_json_string_ext(state, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
    json_object_put(reply);
    return 0;
}

/* --- save-context --- */

static int write_all(int fd, const char *p, size_t len);

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode padded base64 into a new buffer; NULL if malformed or out of memory. */
static uint8_t *b64_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4)
        return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        bool last = i + 4 == len;
        for (int k = 0; k < 4; k++) {
            v[k] = b64_value((unsigned char)in[i + k]);
            if (v[k] < 0 && !(last && k >= 2 && in[i + k] == '=' &&
                              (k == 3 || in[i + 3] == '='))) {
                free(out);
                return NULL;
            }
        }
        out[n++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[n++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
        if (v[2] >= 0 && v[3] >= 0)
            out[n++] = (uint8_t)(v[2] << 6 | v[3]);
    }
    *outlen = n;
    return out;
}

static int cmd_save_context(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 3)
        return usage_error("save-context: expected DOMAIN and FILE");
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("domain-context");
    add_field(req, "domid", json_object_new_int64(domid));
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    struct json_object *img;
    int64_t size;
    if (!json_object_object_get_ex(reply, "image", &img) ||
        !json_object_is_type(img, json_type_string) || !get_int_field(reply, "size", &size)) {
        errorf("xkvmd sent a domain-context reply without \"image\" and \"size\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    size_t len = 0;
    uint8_t *buf = b64_decode(json_object_get_string(img), (size_t)json_object_get_string_len(img),
                              &len);
    json_object_put(reply);
    if (!buf || (int64_t)len != size) {
        errorf("xkvmd sent a malformed context image");
        free(buf);
        return EXIT_FAILURE;
    }
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        errorf("%s: %s", argv[2], strerror(errno));
        free(buf);
        return EXIT_FAILURE;
    }
    int rc = write_all(fd, (const char *)buf, len);
    free(buf);
    if (rc < 0 || close(fd) < 0) {
        errorf("writing %s: %s", argv[2], strerror(errno));
        return EXIT_FAILURE;
    }
    return 0;
}

/* ---- save, restore, migrate -------------------------------------------------- */

/* A job on a file the client opened: file_fd goes with the request (-1: none). */
static int long_job_fd(struct json_object *req, int file_fd, control_progress_fn progress,
                       void *arg, struct json_object **reply, struct json_object **failed)
{
    char err[ERRLEN];
    struct control_client c;
    int r = control_connect(&c, rundir, err, sizeof(err));
    if (r == 0) {
        c.pass_fd = file_fd;
        r = control_request_ex(&c, req, reply, progress, arg, failed, err, sizeof(err));
        control_close(&c);
    }
    json_object_put(req);
    if (r < 0)
        errorf("%s", err);
    return r;
}

static int long_job(struct json_object *req, control_progress_fn progress, void *arg,
                    struct json_object **reply, struct json_object **failed)
{
    return long_job_fd(req, -1, progress, arg, reply, failed);
}

/*
 * A save image is created by the client, with its own rights: never through a
 * symlink, never over an existing file (O_EXCL), readable by its owner alone.
 * xkvmd writes to the descriptor and opens no path.
 */
static int create_image(const char *path, struct stat *st)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        errorf("save: cannot create %s: %s%s", path, strerror(errno),
               errno == EEXIST ? " (save never overwrites a file: remove it first)" : "");
        return -1;
    }
    fstat(fd, st);
    return fd;
}

/* A failed save: remove the partial image, if the path still names the file we made. */
static void remove_image(const char *path, const struct stat *made)
{
    struct stat now;
    if (lstat(path, &now) == 0 && now.st_dev == made->st_dev && now.st_ino == made->st_ino)
        unlink(path);
}

static int absolute_path(const char *in, char *out, size_t len)
{
    if (in[0] == '/') {
        snprintf(out, len, "%s", in);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    if ((size_t)snprintf(out, len, "%s/%s", cwd, in) >= len)
        return -ENAMETOOLONG;
    return 0;
}

static int cmd_save(int argc, char **argv)
{
    static const struct option opts[] = {
        { "keep", no_argument, NULL, 'k' },
        { "compat", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool keep = false;
    const char *compat = NULL;
    int o;
    optind = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': keep = true; break;
        case 'c': compat = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("save: bad option");
        }
    }
    if (argc - optind != 2)
        return usage_error("save: expected DOMAIN and FILE");
    uint32_t domid;
    if (resolve_domain(argv[optind], &domid))
        return EXIT_FAILURE;
    char path[PATH_MAX];
    if (absolute_path(argv[optind + 1], path, sizeof(path))) {
        errorf("save: bad path %s", argv[optind + 1]);
        return EXIT_FAILURE;
    }
    struct stat made;
    int fd = create_image(path, &made);
    if (fd < 0)
        return EXIT_FAILURE;
    struct json_object *req = new_request("save"), *reply = NULL;
    add_field(req, "domid", json_object_new_int((int)domid));
    add_field(req, "path", json_object_new_string(path));
    add_field(req, "keep", json_object_new_boolean(keep));
    if (compat)
        add_field(req, "compat", json_object_new_string(compat));
    int r = long_job_fd(req, fd, NULL, NULL, &reply, NULL);
    close(fd);
    if (r < 0) {
        remove_image(path, &made);
        return EXIT_FAILURE;
    }
    json_object_put(reply);
    return 0;
}

/* restore FILE [CONFIG]: the guest's disks and kernel on this host are CONFIG's. */
static int cmd_restore(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || argv[1][0] == '-')
        return usage_error("restore: expected FILE [CONFIG]");
    char path[PATH_MAX];
    if (absolute_path(argv[1], path, sizeof(path))) {
        errorf("restore: bad path %s", argv[1]);
        return EXIT_FAILURE;
    }
    struct domcfg cfg;
    char err[ERRLEN];
    if (argc == 3 && xlcfg_read_file(argv[2], &cfg, stderr, err, sizeof(err)) < 0) {
        errorf("%s", err);
        return EXIT_FAILURE;
    }
    /* Read with the client's own rights: xkvmd opens no path for it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        errorf("restore: cannot open %s: %s", path, strerror(errno));
        return EXIT_FAILURE;
    }
    struct json_object *req = new_request("restore"), *reply = NULL;
    add_field(req, "path", json_object_new_string(path));
    if (argc == 3)
        add_field(req, "config", domcfg_to_json(&cfg));
    int r = long_job_fd(req, fd, NULL, NULL, &reply, NULL);
    close(fd);
    if (r < 0)
        return EXIT_FAILURE;
    int64_t id = 0;
    get_int_field(reply, "domid", &id);
    printf("%lld\n", (long long)id);
    json_object_put(reply);
    return 0;
}

static double num_field(struct json_object *o, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

struct migrate_view {
    bool tty;
    double t0;
};

static void show_progress(void *arg, struct json_object *p)
{
    struct migrate_view *mv = arg;
    if (!mv->tty)
        return;
    struct json_object *f;
    bool final = json_object_object_get_ex(p, "final", &f) && json_object_get_boolean(f);
    fprintf(stderr, "\r\033[K%s iteration %d: %.0f/%.0f dirty pages sent, %.0f MB/s, "
            "%.0f remaining, ETA %.1f s, throttle %d%%", final ? "final" : "pre-copy",
            (int)num_field(p, "iteration"), num_field(p, "sent"), num_field(p, "dirty"),
            num_field(p, "rate_mbs"), num_field(p, "remaining"), num_field(p, "eta_s"),
            (int)num_field(p, "throttle_pct"));
    fflush(stderr);
}

/* ---- migration through ssh (xl migrate's way) --------------------------------- */

/* "ssh://[user@]host[:port]" -> dest "[user@]host", port ("" if none). 0 or -1. */
static int parse_ssh_url(const char *url, char *dest, size_t dl, char *port, size_t pl)
{
    const char *p = url + strlen("ssh://");
    const char *colon = strrchr(p, ':');
    size_t hl = colon ? (size_t)(colon - p) : strlen(p);
    if (!hl || hl >= dl || strchr(p, '/') || p[0] == '-')
        return -1;
    memcpy(dest, p, hl);
    dest[hl] = '\0';
    snprintf(port, pl, "%s", colon ? colon + 1 : "");
    char *end;
    long n = colon ? strtol(colon + 1, &end, 10) : 1;
    return colon && (*end || n < 1 || n > 65535) ? -1 : 0;
}

/*
 * Run `CMD [-p PORT] DEST REMOTE migrate-receive` (CMD split at spaces) with its stdin
 * and stdout on one end of a socketpair; the other end in *chan. The pid, or -1.
 */
static pid_t spawn_ssh(const char *cmd, const char *dest, const char *port, const char *remote,
                       int *chan)
{
    char *words = strdup(cmd), *argv[40], *save = NULL;
    int n = 0, sv[2];
    for (char *w = strtok_r(words, " ", &save); w && n < 32; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    if (!n || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        free(words);
        return -1;
    }
    if (port[0]) {
        argv[n++] = "-p";
        argv[n++] = (char *)port;
    }
    argv[n++] = (char *)dest;
    argv[n++] = (char *)remote;
    argv[n++] = "migrate-receive";
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(sv[1], STDIN_FILENO);
        dup2(sv[1], STDOUT_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "xkvm: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(sv[1]);
    free(words);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    *chan = sv[0];
    return pid;
}

/* One direction of migrate-receive's relay: from -> to until the end, then pass it on. */
struct relay {
    int from, to;
    bool to_socket;         /* the end: shutdown(to, SHUT_WR); else close(to) */
};

static void *relay_thread(void *arg)
{
    struct relay *r = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->from, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(r->to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    if (r->to_socket)
        shutdown(r->to, SHUT_WR);
    else
        close(r->to);
    return NULL;
}

/*
 * The far end of `xkvm migrate DOMAIN ssh://...`: stdin and stdout are the stream;
 * xkvmd receives through a socket passed to it, which this relays to and from them.
 */
static int cmd_migrate_receive(int argc, char **argv)
{
    if (argc > 1)
        return usage_error("migrate-receive takes no arguments (the stream is on stdin/stdout)");
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp)) {
        errorf("socketpair: %s", strerror(errno));
        return EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);
    struct relay in = { .from = STDIN_FILENO, .to = sp[0], .to_socket = true };
    struct relay out = { .from = sp[0], .to = STDOUT_FILENO };
    pthread_t tin, tout;
    if (pthread_create(&tin, NULL, relay_thread, &in) ||
        pthread_create(&tout, NULL, relay_thread, &out)) {
        errorf("cannot start the relay");
        return EXIT_FAILURE;
    }
    struct json_object *reply = NULL;
    int r = long_job_fd(new_request("migrate-receive"), sp[1], NULL, NULL, &reply, NULL);
    close(sp[1]);       /* xkvmd closed its copy: the relay sees the end and flushes */
    pthread_join(tout, NULL);
    if (r == 0)
        fprintf(stderr, "xkvm migrate-receive: domain %d runs here\n",
                (int)num_field(reply, "domid"));
    json_object_put(reply);
    return r < 0 ? EXIT_FAILURE : 0;
}

/*
 * xkvm migrate DOMAIN local:RUNDIR: the destination is another xkvmd on this host. A
 * child asks it (migrate-receive, "local") to receive on one end of a socket pair; the
 * source gets the other end, passes its memory over it, then the stream. The child's
 * pid, or -1; *chan is the source's end.
 */
static pid_t spawn_local_receiver(const char *dest_rundir, int *chan)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (pid == 0) {
        close(sp[0]);
        rundir = dest_rundir;
        struct json_object *req = new_request("migrate-receive"), *reply = NULL;
        add_field(req, "local", json_object_new_boolean(true));
        int r = long_job_fd(req, sp[1], NULL, NULL, &reply, NULL);
        json_object_put(reply);
        _exit(r < 0 ? EXIT_FAILURE : 0);
    }
    close(sp[1]);
    *chan = sp[0];
    return pid;
}

static bool migrate_recover_mode;       /* cmd_migrate for migrate-recover */

static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        { "downtime-ms", required_argument, NULL, 'd' },
        { "max-iters", required_argument, NULL, 'i' },
        { "non-live", no_argument, NULL, 'n' },
        { "no-auto-converge", no_argument, NULL, 'c' },
        { "downtime-strict", no_argument, NULL, 'S' },
        { "postcopy", no_argument, NULL, 'P' },
        { "postcopy-after", required_argument, NULL, 'A' },
        { "report", required_argument, NULL, 'r' },
        { "tls-hostname", required_argument, NULL, 't' },
        { "ssh-command", required_argument, NULL, 's' },
        { "remote-xkvm", required_argument, NULL, 'x' },
        { "connections", required_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    long downtime = -1, iters = -1, pc_after = -1, conns = 0;
    bool live = true, converge = true, strict = false, postcopy = false;
    const char *report = NULL, *tls_hostname = NULL, *remote = "xkvm";
    const char *ssh = getenv("XKVM_SSH") && *getenv("XKVM_SSH") ? getenv("XKVM_SSH") : "ssh";
    int o;
    char *end;
    optind = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            downtime = strtol(optarg, &end, 10);
            if (*end || downtime < 1 || downtime > 60000)
                return usage_error("migrate: --downtime-ms takes 1..60000");
            break;
        case 'i':
            iters = strtol(optarg, &end, 10);
            if (*end || iters < 0 || iters > 1000)
                return usage_error("migrate: --max-iters takes 0..1000");
            break;
        case 'n': live = false; break;
        case 'c': converge = false; break;
        case 'S': strict = true; break;
        case 'P': postcopy = true; break;
        case 'A':
            pc_after = strtol(optarg, &end, 10);
            if (*end || pc_after < 0 || pc_after > 1000)
                return usage_error("migrate: --postcopy-after takes 0..1000");
            postcopy = true;
            break;
        case 'r': report = optarg; break;
        case 't':
            if (!*optarg || strlen(optarg) > 253)
                return usage_error("migrate: --tls-hostname takes a name of 1..253 characters");
            tls_hostname = optarg;
            break;
        case 's': ssh = optarg; break;
        case 'x': remote = optarg; break;
        case 'C':
            conns = strtol(optarg, &end, 10);
            if (*end || conns < 1 || conns > 16)
                return usage_error("migrate: --connections takes 1..16");
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("migrate: bad option");
        }
    }
    if (argc - optind != 2)
        return usage_error("migrate: expected DOMAIN and HOST:PORT");
    uint32_t domid;
    if (resolve_domain(argv[optind], &domid))
        return EXIT_FAILURE;
    const char *hp = argv[optind + 1], *colon = strrchr(hp, ':');
    char dest[256], sport[16];
    bool via_ssh = !strncmp(hp, "ssh://", 6), same_host = !strncmp(hp, "local:", 6);
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (via_ssh && parse_ssh_url(hp, dest, sizeof(dest), sport, sizeof(sport)))
        return usage_error("migrate: ssh://[USER@]HOST[:PORT] expected, got '%s'", hp);
    if (same_host && !hp[6])
        return usage_error("migrate: local:RUNDIR expected (another xkvmd's run directory)");
    if (!via_ssh && !same_host && (!colon || colon == hp || *end || port < 1 || port > 65535))
        return usage_error("migrate: HOST:PORT expected, got '%s'", hp);
    if (via_ssh && conns > 1)
        return usage_error("migrate: --connections needs HOST:PORT (ssh:// is one channel)");
    int chan = -1;
    pid_t ssh_pid = via_ssh ? spawn_ssh(ssh, dest, sport, remote, &chan) :
                    same_host ? spawn_local_receiver(hp + 6, &chan) : 0;
    if (ssh_pid < 0) {
        errorf("migrate: cannot start '%s': %s", same_host ? "the receiver" : ssh,
               strerror(errno));
        return EXIT_FAILURE;
    }
    struct json_object *req = new_request("migrate"), *reply = NULL, *failed = NULL;
    add_field(req, "domid", json_object_new_int((int)domid));
    if (via_ssh || same_host) {
        add_field(req, "via", json_object_new_string(hp));
        if (same_host)
            add_field(req, "local", json_object_new_boolean(true));
    } else {
        add_field(req, "host", json_object_new_string_len(hp, (int)(colon - hp)));
        add_field(req, "port", json_object_new_int((int)port));
    }
    add_field(req, "live", json_object_new_boolean(live));
    if (migrate_recover_mode)
        add_field(req, "postcopy_recover", json_object_new_boolean(true));
    if (downtime > 0)
        add_field(req, "downtime_ms", json_object_new_int((int)downtime));
    if (iters >= 0)
        add_field(req, "max_iters", json_object_new_int((int)iters));
    if (!converge)
        add_field(req, "auto_converge", json_object_new_boolean(false));
    if (strict)
        add_field(req, "downtime_strict", json_object_new_boolean(true));
    if (postcopy)
        add_field(req, "postcopy", json_object_new_boolean(true));
    if (pc_after >= 0)
        add_field(req, "postcopy_after", json_object_new_int((int)pc_after));
    if (tls_hostname)
        add_field(req, "tls_hostname", json_object_new_string(tls_hostname));
    if (conns > 0)
        add_field(req, "connections", json_object_new_int((int)conns));
    struct migrate_view mv = { .tty = isatty(STDERR_FILENO) };
    int r = long_job_fd(req, chan, show_progress, &mv, &reply, &failed);
    if (mv.tty)
        fputs("\r\033[K", stderr);
    if (same_host) {
        close(chan);
        int st = 0;
        waitpid(ssh_pid, &st, 0);
    } else if (via_ssh) {
        close(chan);        /* ssh sees the end of its input and exits */
        int st = 0;
        waitpid(ssh_pid, &st, 0);
        if (r < 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
            errorf("migrate: %s to %s ended with status %d", ssh, dest,
                   WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    struct json_object *res = r < 0 ? failed : reply, *rep = NULL;
    if (res)
        json_object_object_get_ex(res, "report", &rep);
    if (rep) {
        struct json_object *tr = json_object_object_get(rep, "transport");
        struct json_object *stop = json_object_object_get(rep, "stop");
        printf("migrated d%u to %s (%s): %s, %d iteration(s), %.0f pages, %.1f MB, "
               "total %.1f ms, downtime %.2f ms (target %d ms, throttle %d%%, %s)\n",
               domid, hp, tr ? json_object_get_string(tr) : "plain",
               json_object_get_string(json_object_object_get(rep, "outcome")),
               (int)num_field(rep, "iterations"), num_field(rep, "pages_sent"),
               num_field(rep, "bytes") / 1e6, num_field(rep, "total_ms"),
               num_field(rep, "downtime_ms"), (int)num_field(rep, "downtime_target_ms"),
               (int)num_field(rep, "throttle_pct"),
               stop ? json_object_get_string(stop) : "stopped before pre-copy ended");
        struct json_object *pc = json_object_object_get(rep, "postcopy");
        if (pc && json_object_get_boolean(pc))
            printf("post-copy: %.0f pages in %.1f ms, %.0f on demand (%.0f faults), fault wait "
                   "avg %.2f ms, max %.2f ms\n", num_field(rep, "postcopy_pages"),
                   num_field(rep, "postcopy_ms"), num_field(rep, "pages_on_demand"),
                   num_field(rep, "faults_on_demand"), num_field(rep, "fault_wait_ms_avg"),
                   num_field(rep, "fault_wait_ms_max"));
        if (report) {
            FILE *f = fopen(report, "w");
            if (f) {
                fprintf(f, "%s\n", json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN));
                fclose(f);
            } else {
                errorf("cannot write report %s: %s", report, strerror(errno));
            }
        }
    }
    json_object_put(reply);
    json_object_put(failed);
    return r < 0 ? EXIT_FAILURE : 0;
}

/* ---- live update ---- */

static void print_phases(struct json_object *r)
{
    struct json_object *ph;
    if (!json_object_object_get_ex(r, "phases_ms", &ph))
        return;
    printf("  downtime %.2f ms: save %.2f, exec %.2f, validate %.2f, start-up %.2f, "
           "pass0 %.2f, ", num_field(r, "downtime_ms"), num_field(ph, "save"),
           num_field(ph, "exec_prep") + num_field(ph, "exec"), num_field(ph, "validate"),
           num_field(ph, "startup"), num_field(ph, "pass0"));
    if (num_field(ph, "verify") > 0)    /* --verify-memory: its hashing is downtime too */
        printf("memory check %.2f, ", num_field(ph, "verify"));
    printf("pass1 %.2f, pass2 %.2f (pausing took %.2f; prebuilt before it in %.2f)\n",
           num_field(ph, "pass1"), num_field(ph, "pass2"), num_field(ph, "pause"),
           num_field(ph, "prebuild"));
}

static int cmd_live_update(int argc, char **argv)
{
    static const struct option opts[] = {
        { "binary", required_argument, NULL, 'b' },
        { "verify-memory", no_argument, NULL, 'v' },
        { "inject-fault", required_argument, NULL, 'f' },
        { "beside", no_argument, NULL, 's' },
        { "exec", no_argument, NULL, 'e' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    const char *binary = NULL, *fault = NULL;
    bool verify = false, as_json = false;
    const char *mode = NULL;
    int o;
    optind = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'b': binary = optarg; break;
        case 'v': verify = true; break;
        case 'f': fault = optarg; break;
        case 's': mode = "beside"; break;
        case 'e': mode = "exec"; break;
        case 'j': as_json = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("live-update: bad option");
        }
    }
    if (optind != argc)
        return usage_error("live-update: unexpected argument '%s'", argv[optind]);
    char path[PATH_MAX];
    if (binary && absolute_path(binary, path, sizeof(path))) {
        errorf("live-update: bad path %s", binary);
        return EXIT_FAILURE;
    }
    struct json_object *req = new_request("live-update"), *reply = NULL, *failed = NULL;
    if (binary)
        add_field(req, "binary", json_object_new_string(path));
    if (verify)
        add_field(req, "verify_memory", json_object_new_boolean(true));
    if (fault)
        add_field(req, "inject_fault", json_object_new_string(fault));
    if (mode)
        add_field(req, "mode", json_object_new_string(mode));
    int r = long_job(req, NULL, NULL, &reply, &failed);
    struct json_object *res = r < 0 ? failed : reply;
    if (res && as_json)
        printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN));
    else if (res && json_object_object_get_ex(res, "phases_ms", &(struct json_object *){ 0 })) {
        struct json_object *rb;
        bool rolled = json_object_object_get_ex(res, "rolled_back", &rb) &&
                      json_object_get_boolean(rb);
        printf("live update %s -> %s: %d domain(s) %s, xkvmd pid %d\n",
               json_object_get_string(json_object_object_get(res, "from")),
               json_object_get_string(json_object_object_get(res, "to")),
               (int)num_field(res, "domains"),
               rolled ? "rolled back to the old binary" : "carried over",
               (int)num_field(res, "pid"));
        print_phases(res);
    }
    json_object_put(reply);
    json_object_put(failed);
    return r < 0 ? EXIT_FAILURE : 0;
}

static int cmd_pause(int argc, char **argv)   { return simple_domain_cmd("pause", argc, argv); }
static int cmd_unpause(int argc, char **argv) { return simple_domain_cmd("unpause", argc, argv); }
static int cmd_destroy(int argc, char **argv) { return simple_domain_cmd("destroy", argc, argv); }
/* xkvm migrate-recover DOMAIN HOST:PORT|ssh://...: a migrate that resumes a paused post-copy. */
static int cmd_migrate_recover(int argc, char **argv)
{
    migrate_recover_mode = true;
    return cmd_migrate(argc, argv);
}

static int cmd_migrate_cancel(int argc, char **argv)
{
    return simple_domain_cmd("migrate-cancel", argc, argv);
}

/* --- console --- */

static volatile sig_atomic_t got_signal;
static struct termios saved_termios;
static bool termios_changed;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void restore_terminal(void)
{
    if (termios_changed) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
        termios_changed = false;
    }
}

/* Keystrokes one at a time, unechoed, so Ctrl-] is seen; Ctrl-C still interrupts. */
static void setup_terminal(void)
{
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
        return;
    t = saved_termios;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        termios_changed = true;
        atexit(restore_terminal);
    }
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

struct console_log {
    const char *path;
    int fd;
    dev_t dev;
    ino_t ino;
    off_t off;
};

/* Copy what is new in the log to stdout. Reopens a log that was replaced or created. */
static int console_drain(struct console_log *log)
{
    char buf[16384];
    struct stat st;

    if (log->fd < 0) {
        log->fd = open(log->path, O_RDONLY | O_CLOEXEC);
        if (log->fd < 0)
            return errno == ENOENT ? 0 : -errno;    /* not written yet */
        if (fstat(log->fd, &st) == 0) {
            log->dev = st.st_dev;
            log->ino = st.st_ino;
        }
        log->off = 0;
    }
    for (;;) {
        if (fstat(log->fd, &st) == 0 && st.st_size < log->off) {
            /* truncated: start over */
            log->off = 0;
        }
        ssize_t n = pread(log->fd, buf, sizeof(buf), log->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        int r = write_all(STDOUT_FILENO, buf, (size_t)n);
        if (r < 0)
            return r;
        log->off += n;
    }
    /* Replaced (rotated, or a new xkvmd recreated it)? Switch after draining the old one. */
    if (stat(log->path, &st) == 0 && (st.st_dev != log->dev || st.st_ino != log->ino)) {
        close(log->fd);
        log->fd = -1;
        return console_drain(log);
    }
    return 0;
}

/*
 * Keystrokes for the guest go to xkvm-consoled's socket beside the console log
 * (RUNDIR/consoled.sock): the domid on the first line, then the bytes as typed.
 */
struct console_input {
    char sock[PATH_MAX];
    uint32_t domid;
    int fd;
    double next_try;
};

static void console_input_connect(struct console_input *in)
{
    double t = (double)mono_ns() / 1e9;
    if (in->fd >= 0 || t < in->next_try)
        return;
    in->next_try = t + 1.0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(in->sock) >= sizeof(sa.sun_path))
        return;
    strcpy(sa.sun_path, in->sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    char hello[16];
    int n = snprintf(hello, sizeof(hello), "%u\n", in->domid);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, hello, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return;
    }
    /* Keys the guest does not take are dropped, never waited for. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    in->fd = fd;
}

static void console_input_send(struct console_input *in, const char *keys, size_t n)
{
    console_input_connect(in);
    if (in->fd < 0 || n == 0)
        return;     /* no console backend (yet): keys are dropped, as on a dead line */
    ssize_t w = send(in->fd, keys, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (w < 0) {
        close(in->fd);
        in->fd = -1;
        in->next_try = 0;
    }
}

/* 1 if domid is in xkvmd's list, 0 if not, negative errno if xkvmd cannot be asked. */
static int domain_exists(struct control_client *c, bool *connected, uint32_t domid)
{
    char err[ERRLEN];
    int r;
    if (!*connected) {
        if ((r = control_connect(c, rundir, err, sizeof(err))) < 0)
            return r;
        *connected = true;
    }
    struct json_object *req = new_request("list"), *reply;
    r = control_request(c, req, &reply, err, sizeof(err));
    json_object_put(req);
    if (r < 0) {
        control_close(c);
        *connected = false;
        return r;
    }
    int found = 0;
    struct json_object *doms = list_domains(reply);
    size_t n = doms ? json_object_array_length(doms) : 0;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (get_int_field(json_object_array_get_idx(doms, i), "domid", &id) && id == domid)
            found = 1;
    }
    json_object_put(reply);
    return found;
}

/* --- shutdown, reboot, sysrq: asking the guest through xenstore, as xl does --- */

/* Poll interval while `shutdown` waits; how long for the guest's answer (libxl's). */
#define WAIT_POLL_MS 100
#define ACK_TIMEOUT_S 60

/* The domain's state and shutdown reason in a list reply; false if it is not there. */
static bool domain_status(struct json_object *reply, uint32_t domid, char *state,
                          size_t slen, char *reason, size_t rlen)
{
    struct json_object *doms = list_domains(reply);
    size_t n = doms ? json_object_array_length(doms) : 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *d = json_object_array_get_idx(doms, i);
        int64_t id;
        if (!get_int_field(d, "domid", &id) || id != domid)
            continue;
        const char *st = get_str_field(d, "state"), *why = get_str_field(d, "shutdown_reason");
        snprintf(state, slen, "%s", st ? st : "");
        snprintf(reason, rlen, "%s", why ? why : "");
        return true;
    }
    return false;
}

/*
 * -w: wait until the domain has shut down and xkvmd acted on it (on_poweroff &
 * co.): it is gone (destroyed, or restarted under a new domid) or stays shut down
 * (preserve). As xl's wait_for_domain_deaths, without a time limit.
 */
static int wait_shut_down(uint32_t domid)
{
    char state[32] = "", reason[32] = "", last_reason[32] = "";
    for (;;) {
        struct json_object *reply;
        if (call(new_request("list"), &reply) < 0)
            return EXIT_FAILURE;
        bool there = domain_status(reply, domid, state, sizeof(state), reason, sizeof(reason));
        json_object_put(reply);
        if (there && reason[0])
            snprintf(last_reason, sizeof(last_reason), "%s", reason);
        if (!there) {
            printf("Domain %u has been destroyed%s%s.\n", domid,
                   last_reason[0] ? " after shutting down: " : "", last_reason);
            return 0;
        }
        if (!strcmp(state, "shutdown")) {
            printf("Domain %u has been shut down, reason: %s.\n", domid, reason);
            return 0;
        }
        struct timespec ts = { .tv_nsec = WAIT_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}

/*
 * libxl_domain_shutdown/reboot wait for the guest to acknowledge the request (the node
 * read back as "" or gone) for 60 s; so do we, reading the guest's node from the
 * host's xenstored as xl does. 0 acknowledged (or shut down meanwhile), 1 not.
 */
static int wait_ack(uint32_t domid, const char *reason, unsigned timeout_s)
{
    char sock[PATH_MAX + 32], node[64];
    snprintf(sock, sizeof(sock), "%s/xenstored/socket", rundir);
    setenv("XENSTORED_PATH", sock, 1);      /* only ours, never a real Xen's xenbus */
    struct xs_handle *xs = access(sock, F_OK) == 0 ? xs_open(0) : NULL;
    if (!xs) {
        errorf("cannot reach xenstored at %s to see the guest's answer", sock);
        return 1;
    }
    snprintf(node, sizeof(node), "/local/domain/%u/control/shutdown", domid);
    uint64_t deadline = mono_ms() + timeout_s * 1000ull;
    int rc = 1;
    for (;;) {
        unsigned len = 0;
        char *v = xs_read(xs, XBT_NULL, node, &len);
        bool acked = !v || len == 0;
        free(v);
        char state[32] = "", why[32] = "";
        struct json_object *reply;
        bool gone = false;
        if (call(new_request("list"), &reply) == 0) {
            gone = !domain_status(reply, domid, state, sizeof(state), why, sizeof(why)) ||
                   !strcmp(state, "shutdown");
            json_object_put(reply);
        }
        if (acked || gone) {
            rc = 0;
            break;
        }
        if (mono_ms() >= deadline) {
            errorf("domain %u did not acknowledge the %s request within %u s (no PV "
                   "control driver watching control/shutdown?)", domid, reason, timeout_s);
            break;
        }
        struct timespec ts = { .tv_nsec = WAIT_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
    xs_close(xs);
    return rc;
}

static int shutdown_cmd(const char *reason, int argc, char **argv)
{
    static const struct option opts[] = {
        { "wait", no_argument, NULL, 'w' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool wait = false;
    unsigned long timeout_s = ACK_TIMEOUT_S;
    char *end;
    int ch;
    while ((ch = getopt_long(argc, argv, "wh", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': wait = true; break;
        case 't':
            timeout_s = strtoul(optarg, &end, 10);
            if (*end || !*optarg || timeout_s > 86400)
                return usage_error("%s: bad --timeout '%s'", argv[0], optarg);
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("%s: bad option", argv[0]);
        }
    }
    if (argc - optind != 1)
        return usage_error("%s: expected exactly one DOMAIN argument", argv[0]);
    const char *domain = argv[optind];
    uint32_t domid;
    if (resolve_domain(domain, &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("shutdown"), *reply;
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "reason", json_object_new_string(reason));
    if (call_domain(req, domain, &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    if (wait_ack(domid, reason, (unsigned)timeout_s))
        return EXIT_FAILURE;
    return wait ? wait_shut_down(domid) : 0;
}

static int cmd_shutdown(int argc, char **argv) { return shutdown_cmd("poweroff", argc, argv); }
static int cmd_reboot(int argc, char **argv)   { return shutdown_cmd("reboot", argc, argv); }

static int cmd_sysrq(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 3)
        return usage_error("sysrq: expected DOMAIN and KEY");
    if (strlen(argv[2]) != 1)
        return usage_error("sysrq: KEY is one character");
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("sysrq"), *reply;
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "key", json_object_new_string(argv[2]));
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    return 0;
}

/* --- dmesg: the domain's hypervisor-console log --- */

/* Copy the file at path to stdout; its inode and the bytes copied. -errno (ENOENT ok). */
static int print_file(const char *path, uint64_t *inode, uint64_t *size)
{
    *inode = *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0)
        *inode = (uint64_t)st.st_ino;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        *size += (uint64_t)n;
    }
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int cmd_dmesg(int argc, char **argv)
{
    static const struct option opts[] = {
        { "clear", no_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool clear = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "ch", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': clear = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("dmesg: bad option");
        }
    }
    if (argc - optind != 1)
        return usage_error("dmesg: expected exactly one DOMAIN argument");
    const char *domain = argv[optind];
    uint32_t domid;
    if (resolve_domain(domain, &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("dmesg"), *reply;
    add_field(req, "domid", json_object_new_int64(domid));
    if (call_domain(req, domain, &reply) < 0)
        return EXIT_FAILURE;
    const char *p = get_str_field(reply, "path");
    if (!p || p[0] != '/') {
        errorf("xkvmd sent a dmesg reply without an absolute \"path\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    char path[PATH_MAX], gen[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s", p);
    json_object_put(reply);
    uint64_t inode, size;
    /* The rotated generations first, oldest first (logrot.h: PATH.1 is the newest). */
    for (int g = 99; g >= 1; g--) {
        snprintf(gen, sizeof(gen), "%s.%d", path, g);
        print_file(gen, &inode, &size);
    }
    int r = print_file(path, &inode, &size);
    fflush(stdout);
    if (r < 0 && r != -ENOENT) {
        errorf("dmesg log %s: %s", path, strerror(-r));
        return EXIT_FAILURE;
    }
    if (!clear || r < 0)
        return 0;
    req = new_request("dmesg-clear");
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "size", json_object_new_int64((int64_t)size));
    add_field(req, "inode", json_object_new_int64((int64_t)inode));
    if (call_domain(req, domain, &reply) < 0)
        return EXIT_FAILURE;
    json_object_put(reply);
    return 0;
}

static int cmd_console(int argc, char **argv)
{
    static const struct option opts[] = {
        { "no-follow", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool follow = true;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': follow = false; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("console: bad option");
        }
    }
    if (argc - optind != 1)
        return usage_error("console: expected exactly one DOMAIN argument");
    const char *domain = argv[optind];

    uint32_t domid;
    if (resolve_domain(domain, &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("console"), *reply;
    add_field(req, "domid", json_object_new_int64(domid));
    if (call_domain(req, domain, &reply) < 0)
        return EXIT_FAILURE;
    const char *p = get_str_field(reply, "path");
    if (!p || p[0] != '/') {
        errorf("xkvmd sent a console reply without an absolute \"path\"");
        json_object_put(reply);
        return EXIT_FAILURE;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", p);
    json_object_put(reply);

    struct console_log log = { .path = path, .fd = -1 };
    int r = console_drain(&log);
    if (r < 0 || !follow) {
        if (r < 0)
            errorf("console log %s: %s", path, strerror(-r));
        if (log.fd >= 0)
            close(log.fd);
        return r < 0 ? EXIT_FAILURE : 0;
    }

    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: poll wakes */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    bool tty = isatty(STDIN_FILENO);
    if (tty)
        setup_terminal();
    struct console_input input = { .domid = domid, .fd = -1 };
    const char *slash = strrchr(path, '/');
    snprintf(input.sock, sizeof(input.sock), "%.*s/consoled.sock",
             (int)(slash ? slash - path : 1), slash ? path : "/");
    if (tty)
        console_input_connect(&input);

    struct control_client client;
    bool connected = false;
    double last_check = 0, unreachable_since = 0;
    int status = 0;
    for (;;) {
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        int n = poll(&pfd, tty ? 1 : 0, CONSOLE_POLL_MS);
        if (got_signal) {
            status = 128 + got_signal;
            break;
        }
        if (n > 0 && (pfd.revents & POLLIN)) {
            char keys[64];
            ssize_t k = read(STDIN_FILENO, keys, sizeof(keys));
            const char *detach = k > 0 ? memchr(keys, CTRL_RIGHT_BRACKET, (size_t)k) : NULL;
            if (k > 0)
                console_input_send(&input, keys, detach ? (size_t)(detach - keys) : (size_t)k);
            if (detach)
                break;
            if (k == 0)
                tty = false;         /* stdin closed: stop watching it */
        } else if (n > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))) {
            tty = false;
        }

        if ((r = console_drain(&log)) < 0) {
            if (r != -EPIPE)
                errorf("console log %s: %s", path, strerror(-r));
            status = EXIT_FAILURE;
            break;
        }
        double t = (double)mono_ns() / 1e9;
        if (t - last_check < CONSOLE_POLL_MS / 1000.0)
            continue;
        last_check = t;
        r = domain_exists(&client, &connected, domid);
        if (r == 0) {
            console_drain(&log);     /* the last words */
            break;
        }
        if (r > 0) {
            unreachable_since = 0;
            continue;
        }
        if (unreachable_since == 0)
            unreachable_since = t;
        else if (t - unreachable_since > CONSOLE_DAEMON_GRACE_S) {
            console_drain(&log);
            errorf("lost contact with xkvmd in %s", rundir);
            status = EXIT_FAILURE;
            break;
        }
    }
    if (connected)
        control_close(&client);
    if (log.fd >= 0)
        close(log.fd);
    if (input.fd >= 0)
        close(input.fd);
    restore_terminal();
    return status;
}

/* --- main --- */

/* --- altp2m --- */

/* KEY=VALUE as a request member: an integer, true/false, a comma list of integers, or text. */
static struct json_object *altp2m_value(const char *v)
{
    if (!strcmp(v, "true") || !strcmp(v, "false"))
        return json_object_new_boolean(!strcmp(v, "true"));
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 0);
    if (*v && !*end && !errno)
        return json_object_new_int64(n);
    if (*v && *end == ',') {
        struct json_object *a = json_object_new_array();
        const char *p = v;
        while (*p) {
            n = strtoll(p, &end, 0);
            if (end == p || (*end && *end != ','))
                break;
            json_object_array_add(a, json_object_new_int64(n));
            p = *end ? end + 1 : end;
        }
        if (!*p)
            return a;
        json_object_put(a);
    }
    return json_object_new_string(v);
}

static int cmd_altp2m(int argc, char **argv)
{
    if (argc < 3)
        return usage_error("altp2m: expected DOMAIN OP [KEY=VALUE...]");
    uint32_t domid;
    if (resolve_domain(argv[1], &domid))
        return EXIT_FAILURE;
    struct json_object *req = new_request("altp2m");
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "op", json_object_new_string(argv[2]));
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            json_object_put(req);
            return usage_error("altp2m: \"%s\" is not KEY=VALUE", argv[i]);
        }
        *eq = '\0';
        add_field(req, argv[i], altp2m_value(eq + 1));
    }
    struct json_object *reply;
    if (call_domain(req, argv[1], &reply) < 0)
        return EXIT_FAILURE;
    json_object_object_del(reply, "ok");
    if (json_object_object_length(reply))
        printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
    json_object_put(reply);
    return 0;
}

static volatile sig_atomic_t monitor_stop;

static void monitor_on_signal(int sig)
{
    (void)sig;
    monitor_stop = 1;
}

static void monitor_print(struct json_object *e, bool json)
{
    if (json) {
        printf("%s\n", json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
    } else {
        int64_t vcpu = 0, gfn = 0, off = 0, view = 0, rip = 0;
        get_int_field(e, "vcpu", &vcpu);
        get_int_field(e, "gfn", &gfn);
        get_int_field(e, "offset", &off);
        get_int_field(e, "view", &view);
        get_int_field(e, "rip", &rip);
        const char *acc = get_str_field(e, "access");
        printf("vcpu %" PRId64 ": %s of gfn %#" PRIx64 " offset %#" PRIx64
               " stopped by view %" PRId64 " at rip %#" PRIx64 "\n", vcpu,
               acc && !strcmp(acc, "w") ? "write" : "read", (uint64_t)gfn, (uint64_t)off,
               view, (uint64_t)rip);
    }
    fflush(stdout);
}

/* One monitor request ("monitor-poll", "-answer", "-detach"). 0 or -errno. */
static int monitor_call(uint32_t domid, const char *op, int64_t vcpu, const char *action,
                        struct json_object **reply)
{
    struct json_object *req = new_request("altp2m");
    add_field(req, "domid", json_object_new_int64(domid));
    add_field(req, "op", json_object_new_string(op));
    if (action) {
        add_field(req, "vcpu", json_object_new_int64(vcpu));
        add_field(req, "action", json_object_new_string(action));
    }
    struct json_object *r = NULL;
    int rc = call(req, &r);
    if (reply)
        *reply = r;
    else if (r)
        json_object_put(r);
    return rc;
}

static int cmd_altp2m_monitor(int argc, char **argv)
{
    bool json = false;
    const char *answer = "resume", *domain = NULL;
    long count = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--answer") && i + 1 < argc &&
                   (!strcmp(argv[i + 1], "resume") || !strcmp(argv[i + 1], "keep"))) {
            answer = argv[++i];
        } else if (!strcmp(a, "--count") && i + 1 < argc && atol(argv[i + 1]) > 0) {
            count = atol(argv[++i]);
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (a[0] != '-' && !domain) {
            domain = a;
        } else {
            return usage_error("altp2m-monitor: bad argument \"%s\"", a);
        }
    }
    if (!domain)
        return usage_error("altp2m-monitor: expected one DOMAIN");
    uint32_t domid;
    if (resolve_domain(domain, &domid))
        return EXIT_FAILURE;
    signal(SIGINT, monitor_on_signal);
    signal(SIGTERM, monitor_on_signal);
    uint64_t last_seq = 0;
    int rc = 0;
    while (!monitor_stop && count != 0) {
        struct json_object *reply = NULL, *evs;
        if ((rc = monitor_call(domid, "monitor-poll", 0, NULL, &reply)) < 0)
            break;
        size_t n = json_object_object_get_ex(reply, "events", &evs) ?
                   json_object_array_length(evs) : 0;
        for (size_t i = 0; i < n && count != 0; i++) {
            struct json_object *e = json_object_array_get_idx(evs, i);
            int64_t seq = 0, vcpu = 0;
            get_int_field(e, "seq", &seq);
            get_int_field(e, "vcpu", &vcpu);
            if ((uint64_t)seq <= last_seq)
                continue;
            last_seq = (uint64_t)seq;
            monitor_print(e, json);
            if (strcmp(answer, "keep"))
                monitor_call(domid, "monitor-answer", vcpu, answer, NULL);
            if (count > 0)
                count--;
        }
        json_object_put(reply);
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);
    }
    monitor_call(domid, "monitor-detach", 0, NULL, NULL);
    return rc < 0 ? EXIT_FAILURE : 0;
}

static int cmd_help(int argc, char **argv)
{
    fputs(usage_text, stdout);
    return 0;
}

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    { "create", cmd_create },
    { "list", cmd_list },
    { "info", cmd_info },
    { "top", cmd_top },
    { "pause", cmd_pause },
    { "unpause", cmd_unpause },
    { "destroy", cmd_destroy },
    { "vcpu-set", cmd_vcpu_set },
    { "mem-set", cmd_mem_set },
    { "console", cmd_console },
    { "dmesg", cmd_dmesg },
    { "shutdown", cmd_shutdown },
    { "reboot", cmd_reboot },
    { "sysrq", cmd_sysrq },
    { "debug-state", cmd_debug_state },
    { "save-context", cmd_save_context },
    { "save", cmd_save },
    { "restore", cmd_restore },
    { "migrate", cmd_migrate },
    { "migrate-receive", cmd_migrate_receive },
    { "migrate-cancel", cmd_migrate_cancel },
    { "migrate-recover", cmd_migrate_recover },
    { "live-update", cmd_live_update },
    { "altp2m", cmd_altp2m },
    { "altp2m-monitor", cmd_altp2m_monitor },
    { "help", cmd_help },
};

int main(int argc, char **argv)
{
    enum { OPT_RUNDIR = 256, OPT_VERSION };
    static const struct option opts[] = {
        { "rundir", required_argument, NULL, OPT_RUNDIR },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { 0 },
    };
    int ch;

    rundir = getenv(XKVM_RUNDIR_ENV);
    if (!rundir || !*rundir)
        rundir = XKVM_RUNDIR_DEFAULT;

    /* '+': stop at the command; its own options are parsed by the command. */
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_RUNDIR:
            if (!*optarg)
                return usage_error("--rundir: empty directory name");
            rundir = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("xkvm %s\n", XKVM_VERSION_STRING);
            return 0;
        default:
            return usage_error("bad option");
        }
    }
    if (optind >= argc)
        return usage_error("missing command");

    const char *name = argv[optind];
    int status = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            optind = 0;      /* glibc: full getopt reinitialisation */
            status = commands[i].fn(sub_argc, sub_argv);
            break;
        }
    }
    if (status < 0)
        return usage_error("unknown command '%s'", name);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        errorf("writing output: %s", strerror(errno));
        return EXIT_FAILURE;
    }
    return status;
}
