/*
 * xkvm-ctx: inspect domain context images (docs/domain-context.md).
 *
 *   xkvm-ctx [--json] verify FILE   check an image (records, then the image-level
 *                                   rules); "FILE: ok, N records, V bytes"
 *   xkvm-ctx [--json] dump FILE     one line per record with its decoded fields
 *   xkvm-ctx sample FILE            write a sample image with every record type
 *                                   (a 2-vCPU domain with PV state)
 * FILE "-" is stdin (stdout for sample). --json prints JSON lines: one object per
 * record (dump), then one summary object {"file","ok",...} (dump and verify).
 * Exit status: 0 valid, 1 invalid image or I/O error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xkvm/ctx.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xkvm-ctx [--json] verify FILE\n"
            "       xkvm-ctx [--json] dump FILE\n"
            "       xkvm-ctx sample FILE\n"
            "FILE may be - for stdin (stdout for sample).\n");
}

/* Whole file (or stdin) into a malloc'd, hence 8-byte aligned, buffer. */
static int read_all(const char *path, uint8_t **bufp, size_t *lenp)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0) {
        fprintf(stderr, "xkvm-ctx: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t len = 0, cap = 65536;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "xkvm-ctx: %s: out of memory\n", path);
            break;
        }
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "xkvm-ctx: %s: %s\n", path, strerror(errno));
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    if (!buf)
        return -1;
    *bufp = buf;
    *lenp = len;
    return 0;
}

static void print_ok(const char *path, bool json, const struct xkvm_ctx_reader *r)
{
    size_t trailing = r->size - r->pos;

    if (json) {
        fputs("{\"file\":", stdout);
        xkvm_ctx_json_string(stdout, path);
        printf(",\"ok\":true,\"records\":%u,\"bytes\":%zu,\"trailing\":%zu,"
               "\"major\":%" PRIu32 ",\"minor\":%" PRIu32 "}\n",
               r->nr_records, r->pos, trailing, r->major, r->minor);
        return;
    }
    printf("%s: ok, %u records, %zu bytes", path, r->nr_records, r->pos);
    if (trailing)
        printf(", %zu trailing bytes not consumed", trailing);
    putchar('\n');
}

static void print_error(const char *path, bool json, const struct xkvm_ctx_error *err)
{
    if (!json) {
        fflush(stdout);
        fprintf(stderr, "%s: %s\n", path, err->msg);
        return;
    }
    const struct xkvm_ctx_type_desc *d =
        err->type_known ? xkvm_ctx_lookup(&xkvm_ctx_builtin_registry, err->type) : NULL;
    fputs("{\"file\":", stdout);
    xkvm_ctx_json_string(stdout, path);
    printf(",\"ok\":false,\"error\":\"%s\",\"offset\":%" PRIu64 ",\"type\":",
           xkvm_ctx_errcode_name(err->code), err->offset);
    if (err->type_known)
        printf("%" PRIu32, err->type);
    else
        fputs("null", stdout);
    fputs(",\"name\":", stdout);
    if (d)
        xkvm_ctx_json_string(stdout, d->name);
    else
        fputs("null", stdout);
    fputs(",\"reason\":", stdout);
    xkvm_ctx_json_string(stdout, err->reason);
    fputs("}\n", stdout);
}

/* verify (dump == false) or dump an image. */
static int inspect(const char *path, bool json, bool dump)
{
    uint8_t *buf;
    size_t len;
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    int rc;

    if (read_all(path, &buf, &len))
        return 1;
    xkvm_ctx_reader_init(&r, buf, len, NULL);
    while ((rc = xkvm_ctx_next(&r, &rec)) > 0)
        if (dump)
            xkvm_ctx_dump_record(stdout, json ? XKVM_CTX_DUMP_JSON : XKVM_CTX_DUMP_TEXT, &rec);
    struct xkvm_ctx_error err = r.err;
    /* Every record is fine on its own: now the rules between them. */
    if (rc == 0 && xkvm_ctx_check_image(buf, len, NULL, NULL, &err))
        rc = -1;
    if (rc < 0)
        print_error(path, json, &err);
    else if (json || !dump)
        print_ok(path, json, &r);
    free(buf);
    return rc < 0 ? 1 : 0;
}

/*
 * A plausible domain: 2 vCPUs, shared_info mapped, vCPU 1's vcpu_info registered,
 * xenstore and console channels to dom0 services, a timer VIRQ per vCPU, an IPI, a
 * loopback pair, two grant frames (one mapped), the callback and ring parameters.
 */
static void sample_records(struct xkvm_ctx_writer *w)
{
    static alignas(8) uint8_t page[XKVM_CTX_SHARED_INFO_MAX];
    static alignas(8) uint8_t frame[2][XKVM_CTX_PAGE_SIZE];

    memset(page, 0, sizeof(page));
    page[0] = 1;                /* vCPU 0: upcall pending */
    page[2048] = 0x0e;          /* evtchn_pending: ports 1-3 */
    page[3072] = 0x42;          /* wallclock */
    /* Grant entries 8.. of frame 0: the xenstore/console and two blkfront grants. */
    for (int i = 8; i < 12; i++) {
        uint16_t flags = 1 /* GTF_permit_access */, domid = 0;
        uint32_t gfn = 0x10000u + (uint32_t)i;
        memcpy(frame[0] + i * 8, &flags, 2);
        memcpy(frame[0] + i * 8 + 2, &domid, 2);
        memcpy(frame[0] + i * 8 + 4, &gfn, 4);
    }

    struct xkvm_ctx_tsc_info tsc = {
        .mode = XKVM_CTX_TSC_MODE_DEFAULT, .khz = 2000000,
        .nsec = 123456789, .incarnation = 1,
    };
    static const struct xkvm_ctx_hvm_param params[] = {
        { 0 /* CALLBACK_IRQ */, (2ull << 56) | 0xf3 },  /* vector 0xf3 */
        { 1 /* STORE_PFN */, 0xfeff0 },
        { 2 /* STORE_EVTCHN */, 1 },
        { 17 /* CONSOLE_PFN */, 0xfeff1 },
        { 18 /* CONSOLE_EVTCHN */, 2 },
    };
    const uint64_t gnttab_gfns[2] = { 0xf0000, XKVM_CTX_GFN_NONE };
    const struct { uint32_t port; struct xkvm_ctx_evtchn_port p; } ports[] = {
        { 1, { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 0, .remote_port = 1 } },
        { 2, { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 0, .remote_port = 2 } },
        { 3, { .state = XKVM_CTX_EVTCHN_STATE_VIRQ, .virq = 0 /* TIMER */ } },
        { 4, { .state = XKVM_CTX_EVTCHN_STATE_VIRQ, .notify_vcpu = 1, .virq = 0 } },
        { 5, { .state = XKVM_CTX_EVTCHN_STATE_IPI, .notify_vcpu = 1 } },
        { 6, { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND, .remote_domid = 0 } },
        { 7, { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 1, .remote_port = 8 } },
        { 8, { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 1, .remote_port = 7 } },
    };

    xkvm_ctx_write_start(w);
    xkvm_ctx_write_domain(w, 1, 2);
    xkvm_ctx_write(w, XKVM_CTX_TSC_INFO, 0, &tsc, sizeof(tsc));
    xkvm_ctx_write_shared_info(w, 0, page, sizeof(page));
    xkvm_ctx_write_shared_info_gfn(w, 0xfefff);
    xkvm_ctx_write_evtchn_abi(w, XKVM_CTX_EVTCHN_ABI_2L);
    xkvm_ctx_write_gnttab(w, 1, gnttab_gfns, 2);
    xkvm_ctx_write_gnttab_frame(w, 0, frame[0]);
    xkvm_ctx_write_gnttab_frame(w, 1, frame[1]);
    xkvm_ctx_write_hvm_params(w, params, sizeof(params) / sizeof(params[0]));
    for (uint32_t v = 0; v < 2; v++) {
        struct xkvm_ctx_vcpu_info vi = { .placement = XKVM_CTX_VCPU_INFO_SHARED,
                                         .gfn = XKVM_CTX_GFN_NONE };
        if (v == 1)
            vi = (struct xkvm_ctx_vcpu_info) { .placement = XKVM_CTX_VCPU_INFO_REGISTERED,
                                               .gfn = 0x1234, .offset = 0x40 };
        struct xkvm_ctx_timer t = { .singleshot_deadline = v ? 0 : 5000000000ull,
                                    .periodic_period = v ? 10000000ull : 0 };
        xkvm_ctx_write_vcpu_state(w, v, XKVM_CTX_VCPU_INITIALISED | XKVM_CTX_VCPU_UP |
                                        (v ? XKVM_CTX_VCPU_HALTED : 0));
        xkvm_ctx_write_vcpu_info(w, v, &vi);
        xkvm_ctx_write_upcall(w, v, v ? 0xf4 : 0);
        xkvm_ctx_write_timer(w, v, &t);
    }
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        struct xkvm_ctx_evtchn_port p = ports[i].p;
        p.priority = XKVM_CTX_EVTCHN_PRIORITY_DEFAULT;
        xkvm_ctx_write_evtchn_port(w, ports[i].port, &p);
    }
    xkvm_ctx_write_end(w);
}

static int sample(const char *path)
{
    struct xkvm_ctx_writer w;
    int fd = strcmp(path, "-") ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                               : STDOUT_FILENO;
    if (fd < 0) {
        fprintf(stderr, "xkvm-ctx: %s: %s\n", path, strerror(errno));
        return 1;
    }
    xkvm_ctx_writer_init_fd(&w, fd);
    sample_records(&w);
    int rc = w.failed ? -1 : 0;     /* errors are sticky: one look at the end */
    if (rc)
        fprintf(stderr, "xkvm-ctx: %s: %s\n", path, w.err.msg);
    if (fd != STDOUT_FILENO && close(fd) && !rc) {
        fprintf(stderr, "xkvm-ctx: %s: %s\n", path, strerror(errno));
        rc = -1;
    }
    xkvm_ctx_writer_release(&w);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    bool json = false;
    const char *args[2];
    int nargs = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (nargs < 2) {
            args[nargs++] = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (nargs != 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(args[0], "verify"))
        return inspect(args[1], json, false);
    if (!strcmp(args[0], "dump"))
        return inspect(args[1], json, true);
    if (!strcmp(args[0], "sample"))
        return sample(args[1]);
    usage(stderr);
    return 2;
}
