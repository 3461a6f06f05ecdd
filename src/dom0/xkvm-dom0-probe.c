/*
 * xkvm-dom0-probe: a tiny dom0 service for tests and for poking at xkvmd by hand. It
 * connects to dom0.sock and runs its steps in order; the first failing step ends it
 * with status 1. A step prefixed with "!" must fail ("!EACCES": with that errno).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "dom0/libdom0.h"

static struct dom0_conn *conn;
static void *page;
static uint32_t page_domid, page_handle;
static bool page_is_grant;

/* Event channels bound by this probe: the eventfds xkvmd gave for each. */
#define MAX_BOUND 64
static struct bound {
    bool used;
    uint32_t domid, port;
    int to_guest, from_guest;
} bound[MAX_BOUND];

static void usage(FILE *f)
{
    fprintf(f,
        "usage: xkvm-dom0-probe [--rundir DIR] [--name NAME] STEP...\n"
        "steps, run in order (\"!STEP\" or \"!ERRNO STEP\": the step must fail):\n"
        "  info DOMID                   print the domain's info\n"
        "  map-grant DOMID REF rw|ro    map a grant: it becomes the current page\n"
        "  map-foreign DOMID GFN rw|ro  map a guest frame: it becomes the current page\n"
        "  expect TEXT                  the current page starts with TEXT\n"
        "  write TEXT                   write TEXT and a NUL at the start of the page\n"
        "  unmap                        unmap the current page\n"
        "  bind DOMID PORT              bind an event channel (and keep it)\n"
        "  unbind DOMID PORT            unbind it (then signal its old fd: must be a no-op)\n"
        "  evtchn-pingpong DOMID PORT COUNT [SECS]\n"
        "                               (bind if not yet bound, keep it bound) COUNT times:\n"
        "                               raise the port, wait up to SECS (default 5) for\n"
        "                               the guest's send; print the us per round trip\n"
        "  raw HEX                      send HEX as one packet: xkvmd must refuse it\n"
        "  touch PATH                   create PATH (tells a test script where we are)\n"
        "  wait PATH [SECS]             wait until PATH exists (default 60 s)\n");
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-')
        return -EINVAL;
    *v = x;
    return 0;
}

static int parse_mode(const char *s, bool *readonly)
{
    if (!strcmp(s, "rw") || !strcmp(s, "ro")) {
        *readonly = s[1] == 'o';
        return 0;
    }
    return -EINVAL;
}

static const char *errname(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

static int hexbytes(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap)
        return -EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -EINVAL;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

static struct bound *find_bound(uint32_t domid, uint32_t port)
{
    for (unsigned i = 0; i < MAX_BOUND; i++)
        if (bound[i].used && bound[i].domid == domid && bound[i].port == port)
            return &bound[i];
    return NULL;
}

static int do_bind(uint32_t domid, uint32_t port, struct bound **out)
{
    struct bound *b = NULL;
    for (unsigned i = 0; i < MAX_BOUND && !b; i++)
        if (!bound[i].used)
            b = &bound[i];
    if (!b)
        return -ENOSPC;
    int rc = dom0_bind_evtchn(conn, domid, port, &b->to_guest, &b->from_guest);
    if (rc)
        return rc;
    b->used = true;
    b->domid = domid;
    b->port = port;
    printf("bound d%u port %u: fds %d %d\n", domid, port, b->to_guest, b->from_guest);
    if (out)
        *out = b;
    return 0;
}

/* COUNT round trips on a bound port: raise it, wait for the guest's send. */
static int pingpong(struct bound *b, uint64_t count, uint64_t secs)
{
    uint64_t one = 1, v, t0 = mono_ns(), worst = 0;
    for (uint64_t i = 1; i <= count; i++) {
        uint64_t s = mono_ns();
        if (write(b->to_guest, &one, sizeof(one)) != sizeof(one)) {
            int e = errno;
            fprintf(stderr, "xkvm-dom0-probe: round trip %llu: write to_guest: %s\n",
                    (unsigned long long)i, strerror(e));
            return -e;
        }
        struct pollfd p = { .fd = b->from_guest, .events = POLLIN };
        int n;
        do
            n = poll(&p, 1, (int)(secs * 1000));
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
            fprintf(stderr, "xkvm-dom0-probe: d%u port %u: round trip %llu of %llu: no "
                    "event from the guest within %llu s\n", b->domid, b->port,
                    (unsigned long long)i, (unsigned long long)count,
                    (unsigned long long)secs);
            return n < 0 ? -errno : -ETIMEDOUT;
        }
        ssize_t r = read(b->from_guest, &v, sizeof(v));
        if (r != sizeof(v))
            return r < 0 ? -errno : -EIO;
        if (v != 1) {
            fprintf(stderr, "xkvm-dom0-probe: round trip %llu: %llu sends from the guest, "
                    "want 1 (not alternating)\n", (unsigned long long)i,
                    (unsigned long long)v);
            return -EPROTO;
        }
        uint64_t d = mono_ns() - s;
        worst = d > worst ? d : worst;
    }
    uint64_t ns = mono_ns() - t0;
    printf("pingpong d%u port %u: %llu round trips in %llu us: %.2f us per round trip "
           "(worst %.1f us)\n", b->domid, b->port, (unsigned long long)count,
           (unsigned long long)(ns / 1000), (double)ns / 1000.0 / (double)count,
           (double)worst / 1000.0);
    return 0;
}

/* Run the step at argv[0]; *used is how many words it took. 0 or -errno. */
static int step(char **argv, int argc, int *used)
{
    const char *s = argv[0];
    uint64_t a, b;
    bool ro;
#define NEED(n) do { if (argc < (n) + 1) return -EINVAL; *used = (n) + 1; } while (0)
    if (!strcmp(s, "info")) {
        NEED(1);
        if (parse_u64(argv[1], &a))
            return -EINVAL;
        struct xkvm_dom0_domain_info i;
        int rc = dom0_domain_info(conn, (uint32_t)a, false, &i);
        if (rc)
            return rc;
        printf("domain %u '%s': state %u, %u vcpu(s), %llu KiB, store gfn %#llx port %u, "
               "console gfn %#llx port %u\n", i.domid, i.name, i.state, i.vcpus,
               (unsigned long long)i.memory_kb, (unsigned long long)i.store_gfn,
               i.store_evtchn, (unsigned long long)i.console_gfn, i.console_evtchn);
        return 0;
    }
    if (!strcmp(s, "map-grant") || !strcmp(s, "map-foreign")) {
        NEED(3);
        if (parse_u64(argv[1], &a) || parse_u64(argv[2], &b) || parse_mode(argv[3], &ro))
            return -EINVAL;
        if (page)
            return -EBUSY;
        bool grant = s[4] == 'g';
        if (grant && b > UINT32_MAX)
            return -EINVAL;
        page = grant ? dom0_map_grant(conn, (uint32_t)a, (uint32_t)b, ro, &page_handle)
                     : dom0_map_foreign(conn, (uint32_t)a, b, ro, &page_handle);
        if (!page)
            return -errno;
        page_domid = (uint32_t)a;
        page_is_grant = grant;
        printf("mapped d%u %s %#llx: handle %u\n", page_domid, grant ? "ref" : "gfn",
               (unsigned long long)b, page_handle);
        return 0;
    }
    if (!strcmp(s, "expect") || !strcmp(s, "write")) {
        NEED(1);
        if (!page)
            return -ENOENT;
        size_t n = strlen(argv[1]);
        if (n >= 4096)
            return -EINVAL;
        if (s[0] == 'w') {
            memcpy(page, argv[1], n + 1);
            return 0;
        }
        if (memcmp(page, argv[1], n)) {
            fprintf(stderr, "xkvm-dom0-probe: page starts with '%.*s'\n", (int)n,
                    (const char *)page);
            return -EBADMSG;
        }
        return 0;
    }
    if (!strcmp(s, "unmap")) {
        NEED(0);
        if (!page)
            return -ENOENT;
        int rc = page_is_grant ? dom0_unmap_grant(conn, page_domid, page_handle, page)
                               : dom0_unmap_foreign(conn, page_domid, page_handle, page);
        page = NULL;
        return rc;
    }
    if (!strcmp(s, "bind")) {
        NEED(2);
        if (parse_u64(argv[1], &a) || parse_u64(argv[2], &b) || b > UINT32_MAX)
            return -EINVAL;
        return do_bind((uint32_t)a, (uint32_t)b, NULL);
    }
    if (!strcmp(s, "unbind")) {
        NEED(2);
        if (parse_u64(argv[1], &a) || parse_u64(argv[2], &b) || b > UINT32_MAX)
            return -EINVAL;
        struct bound *e = find_bound((uint32_t)a, (uint32_t)b);
        int rc = dom0_unbind_evtchn(conn, (uint32_t)a, (uint32_t)b);
        if (rc || !e)
            return rc;
        /* xkvmd no longer watches it: raising the old fd must reach nobody. */
        uint64_t one = 1;
        ssize_t w = write(e->to_guest, &one, sizeof(one));
        (void)w;
        close(e->to_guest);
        close(e->from_guest);
        *e = (struct bound){ 0 };
        printf("unbound d%u port %u\n", (unsigned)a, (unsigned)b);
        return 0;
    }
    if (!strcmp(s, "evtchn-pingpong")) {
        uint64_t n, secs = 5;
        NEED(3);
        if (parse_u64(argv[1], &a) || parse_u64(argv[2], &b) || b > UINT32_MAX ||
            parse_u64(argv[3], &n) || !n)
            return -EINVAL;
        uint64_t t;
        if (argc > 4 && !parse_u64(argv[4], &t)) {
            if (!t || t > 3600)
                return -EINVAL;
            secs = t;
            *used = 5;
        }
        struct bound *e = find_bound((uint32_t)a, (uint32_t)b);
        if (!e) {
            int rc = do_bind((uint32_t)a, (uint32_t)b, &e);
            if (rc)
                return rc;
        }
        return pingpong(e, n, secs);
    }
    if (!strcmp(s, "raw")) {
        NEED(1);
        uint8_t buf[4096];
        size_t n;
        if (hexbytes(argv[1], buf, sizeof(buf), &n))
            return -EINVAL;
        int rc = dom0_send_raw(conn, buf, n);
        if (rc < 0)
            return rc;
        printf("refused: %s\n", rc ? errname(rc) : "no (accepted)");
        return rc ? 0 : -EPROTO;
    }
    if (!strcmp(s, "touch")) {
        NEED(1);
        FILE *f = fopen(argv[1], "w");
        if (!f)
            return -errno;
        fclose(f);
        return 0;
    }
    if (!strcmp(s, "wait")) {
        NEED(1);
        uint64_t secs = 60;
        if (argc > 2 && !parse_u64(argv[2], &secs))
            *used = 3;
        struct stat st;
        for (uint64_t i = 0; i < secs * 20; i++) {
            if (stat(argv[1], &st) == 0)
                return 0;
            nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
        }
        return -ETIMEDOUT;
    }
    return -ENOSYS;
#undef NEED
}

int main(int argc, char **argv)
{
    const char *rundir = NULL, *name = "xkvm-dom0-probe";
    static const struct option opts[] = {
        { "rundir", required_argument, NULL, 'r' },
        { "name", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "+r:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rundir = optarg; break;
        case 'n': name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    conn = dom0_connect(rundir, name);
    if (!conn) {
        fprintf(stderr, "xkvm-dom0-probe: connect: %s (%s)\n", strerror(errno), errname(errno));
        return 1;
    }
    for (int i = optind; i < argc;) {
        const char *want_fail = NULL;
        if (argv[i][0] == '!') {
            want_fail = argv[i][1] ? argv[i] + 1 : "";
            if (++i == argc)
                break;
        }
        int used = 1;
        int rc = step(&argv[i], argc - i, &used);
        if (rc == -ENOSYS && !want_fail) {
            fprintf(stderr, "xkvm-dom0-probe: unknown step '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (want_fail) {
            if (!rc || (*want_fail && strcmp(want_fail, errname(-rc)))) {
                fprintf(stderr, "xkvm-dom0-probe: %s: %s, wanted failure %s\n", argv[i],
                        rc ? errname(-rc) : "succeeded", *want_fail ? want_fail : "");
                return 1;
            }
            printf("%s: failed as expected: %s\n", argv[i], errname(-rc));
        } else if (rc) {
            fprintf(stderr, "xkvm-dom0-probe: %s: %s (%s)\n", argv[i], strerror(-rc),
                    errname(-rc));
            return 1;
        }
        i += used;
    }
    dom0_close(conn);
    return 0;
}
