/*
 * The live-update image (xkvm/live_update.h): how long writing and validating it take
 * for 1, 8, 32 and 128 domains, each beside a memcpy of the same bytes measured in the
 * same run. These are the image's share of a live update's downtime (the "save"
 * phase's assembly and the "validate" phase); no KVM needed. One JSON line per case.
 *
 * Each domain is shaped like a running 256 MiB test guest: its config as JSON, three
 * p2m extents, eight HVM params, an HVM context with a vCPU's CPU entry, and a domain
 * context with shared_info and one grant frame (4 KiB each), 8 ports and the
 * per-vCPU records. Best of BENCH_REPS runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xkvm/ctx.h"
#include "xkvm/live_update.h"
#include "xkvm/stream.h"

#define BENCH_REPS 5

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

struct domain_parts {
    void *hvm, *ctx;
    size_t hvm_len, ctx_len;
};

static int make_parts(struct domain_parts *p)
{
    struct xkvm_hvmctx_builder b;
    if (xkvm_hvmctx_builder_init(&b, 1, 0, 0, 2000000))
        return -1;
    static uint8_t cpu[XKVM_HVMCTX_CPU_SIZE];
    xkvm_hvmctx_add(&b, XKVM_HVMCTX_CPU, 0, cpu, sizeof(cpu));     /* best effort */
    if (xkvm_hvmctx_finish(&b))
        return -1;
    p->hvm = xkvm_hvmctx_take(&b, &p->hvm_len);
    xkvm_hvmctx_builder_release(&b);

    static uint8_t page[4096];
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    uint64_t gfn = 0xF0000;
    int rc = xkvm_ctx_write_start(&w) || xkvm_ctx_write_domain(&w, 1, 1) ||
             xkvm_ctx_write_shared_info(&w, 0, page, sizeof(page)) ||
             xkvm_ctx_write_shared_info_gfn(&w, 0xFEFF2) || xkvm_ctx_write_evtchn_abi(&w, XKVM_CTX_EVTCHN_ABI_2L);
    for (uint32_t port = 1; !rc && port <= 8; port++) {
        struct xkvm_ctx_evtchn_port e = { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND,
                                          .priority = XKVM_CTX_EVTCHN_PRIORITY_DEFAULT };
        rc = xkvm_ctx_write_evtchn_port(&w, port, &e);
    }
    if (!rc)
        rc = xkvm_ctx_write_gnttab(&w, 1, &gfn, 1) || xkvm_ctx_write_gnttab_frame(&w, 0, page) ||
             xkvm_ctx_write_vcpu_state(&w, 0, 0) || xkvm_ctx_write_upcall(&w, 0, 0xF3) ||
             xkvm_ctx_write_end(&w);
    if (rc) {
        fprintf(stderr, "bench-lu-image: domain context: %s\n", w.err.msg);
        return -1;
    }
    p->ctx = xkvm_ctx_writer_take(&w, &p->ctx_len);
    xkvm_ctx_writer_release(&w);
    return 0;
}

static void write_image(struct xkvm_lu_writer *w, unsigned n, const struct domain_parts *p)
{
    static const char cfg[] =
        "{\"config\":{\"name\":\"guest-0000\",\"memory_mb\":256,\"vcpus\":1,"
        "\"kernel\":\"/usr/lib/xkvm/xkvm-guest\",\"cmdline\":\"test=soak mb=2 blk=1\","
        "\"on_poweroff\":\"destroy\",\"on_reboot\":\"restart\",\"on_crash\":\"destroy\","
        "\"disks\":[{\"target\":\"/var/lib/xkvm/disk.img\",\"format\":\"raw\","
        "\"vdev\":\"xvda\",\"mode\":\"rw\"}]},\"paused\":false,\"shutdown_code\":-1,"
        "\"shutdown_handled\":false}";
    xkvm_lu_writer_init(w, 0);
    struct xkvm_lu_host h = { .nr_frames = (uint64_t)n * 65536 + 8192,
                              .lu_region_mfn = (uint64_t)n * 65536, .lu_region_nr = 4096,
                              .nr_domains = n };
    xkvm_lu_write(w, XKVM_LU_REC_HOST, 0, &h, sizeof(h));
    for (uint32_t role = 1; role <= XKVM_LU_FD_ROLE_MAX; role++) {
        int32_t fd = (int32_t)(role + 2);
        xkvm_lu_write(w, XKVM_LU_REC_FD, role, &fd, sizeof(fd));
    }
    static const char argv[] = "/usr/sbin/xkvmd\0--rundir\0/run/xkvm\0--machine-memory\0" "16G";
    xkvm_lu_write(w, XKVM_LU_REC_ARGV, 0, argv, sizeof(argv));
    for (unsigned i = 0; i < n; i++) {
        uint32_t id = i + 1;
        uint64_t base = (uint64_t)i * 65536;
        struct xkvm_lu_extent x[3] = {
            { .gfn = 0, .mfn = base, .nr = 64998, .type = XKVM_LU_FRAME_RAM },
            { .gfn = 0xFEFF0, .mfn = base + 64998, .nr = 2, .type = XKVM_LU_FRAME_SPECIAL },
            { .gfn = 64998, .mfn = base + 65000, .nr = 536, .type = XKVM_LU_FRAME_RAM },
        };
        struct xkvm_lu_hvm_param hp[8];
        for (uint32_t k = 0; k < 8; k++)
            hp[k] = (struct xkvm_lu_hvm_param){ .index = k + 1, .value = k * 7 };
        xkvm_lu_write(w, XKVM_LU_REC_DOMAIN, id, cfg, sizeof(cfg) - 1);
        xkvm_lu_write(w, XKVM_LU_REC_P2M, id, x, sizeof(x));
        xkvm_lu_write(w, XKVM_LU_REC_HVM_PARAMS, id, hp, sizeof(hp));
        xkvm_lu_write(w, XKVM_LU_REC_HVM_CONTEXT, id, p->hvm, p->hvm_len);
        xkvm_lu_write(w, XKVM_LU_REC_DOMAIN_CONTEXT, id, p->ctx, p->ctx_len);
    }
    xkvm_lu_finish(w);
}

int main(void)
{
    struct domain_parts p;
    if (make_parts(&p))
        return 1;
    static const unsigned cases[] = { 1, 8, 32, 128 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        unsigned n = cases[c];
        double best_w = 1e30, best_c = 1e30, best_m = 1e30;
        struct xkvm_lu_writer w = { 0 };
        for (int r = 0; r < BENCH_REPS; r++) {
            xkvm_lu_writer_release(&w);
            double t0 = now_us();
            write_image(&w, n, &p);
            double t1 = now_us();
            best_w = t1 - t0 < best_w ? t1 - t0 : best_w;
        }
        if (w.failed)
            return 1;
        uint8_t *copy = malloc(w.len);
        if (!copy)
            return 1;
        memcpy(copy, w.buf, w.len);     /* faulted in before it is timed */
        for (int r = 0; r < BENCH_REPS; r++) {
            struct xkvm_lu_image img;
            char err[512];
            double t0 = now_us();
            int rc = xkvm_lu_check(w.buf, w.len, &img, err, sizeof(err));
            double t1 = now_us();
            if (rc) {
                fprintf(stderr, "bench-lu-image: %u domains: %s\n", n, err);
                return 1;
            }
            xkvm_lu_image_release(&img);
            best_c = t1 - t0 < best_c ? t1 - t0 : best_c;
            t0 = now_us();
            memcpy(copy, w.buf, w.len);
            __asm__ volatile("" : : "r"(copy) : "memory");
            t1 = now_us();
            best_m = t1 - t0 < best_m ? t1 - t0 : best_m;
        }
        printf("{\"bench\":\"lu-image\",\"domains\":%u,\"bytes\":%zu,\"write_us\":%.1f,"
               "\"check_us\":%.1f,\"memcpy_us\":%.1f,\"check_vs_memcpy\":%.1f}\n", n, w.len,
               best_w, best_c, best_m, best_m > 0 ? best_c / best_m : 0);
        free(copy);
        xkvm_lu_writer_release(&w);
    }
    free(p.hvm);
    free(p.ctx);
    return 0;
}
