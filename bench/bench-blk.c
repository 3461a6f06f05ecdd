/*
 * Block backend benchmarks: one JSON line per figure, each beside `dd` of the same
 * file with the same request size, run on the host in the same run.
 *
 *   backend   xkvm-blkback's request path (src/dom0/blkback/ring.c + io.c) driven by
 *             a frontend in this process: granted pages are plain memory (no
 *             MAP_GRANT round trips: what a frontend with persistent grants costs once
 *             its pages are mapped), the image a real file. Write (then fdatasync) and
 *             read the whole image in 4 KiB, 44 KiB (11 segments) and 1 MiB (indirect,
 *             256 segments) requests: MB/s and IOPS.
 *   guest     the test guest's blkfront (test=blk loop=N) against xkvm-blkback under
 *             xkvmd: each loop writes a pattern over mb= MiB in 44 KiB requests,
 *             flushes, reads it back and checks it; the guest generates and checks the
 *             pattern at CPL3, so the figure is a lower bound of the I/O path.
 *             Needs --xkvmd, --xkvm, --guest, /dev/kvm and xenstore-write; skipped
 *             (with a JSON line saying why) otherwise.
 *
 * "ratio" is always time / reference time: below 1 is faster than dd (whose figure
 * includes starting the process), above 1 slower.
 *
 *   bench-blk [--mb N] [--loops N] [--xkvmd PATH --xkvm PATH --guest PATH] [--keep]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dom0/blkback/io.h"
#include "dom0/blkback/ringsim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- backend: ring.c + io.c with in-memory grants --------------------------------------- */

struct bctx {
    struct ringsim *sim;
    struct blk_image img;
};

static void *b_map(void *ctx, grant_ref_t ref, bool ro, uint64_t *cookie)
{
    return sim_map(((struct bctx *)ctx)->sim, ref, ro, cookie);
}

static void b_unmap(void *ctx, void *page, uint64_t cookie)
{
    sim_unmap(((struct bctx *)ctx)->sim, page, cookie);
}

static int b_io(void *ctx, bool write, const struct iovec *iov, unsigned n, uint64_t off)
{
    return image_io(&((struct bctx *)ctx)->img, write, iov, n, off);
}

static int b_flush(void *ctx)
{
    return image_flush(&((struct bctx *)ctx)->img);
}

static int b_discard(void *ctx, uint64_t off, uint64_t len)
{
    return image_discard(&((struct bctx *)ctx)->img, off, len);
}

/* Move the whole image in requests of `segs` pages; seconds, or -1 on an error. */
static double backend_pass(struct bctx *c, bool write, unsigned segs, uint64_t *reqs)
{
    blkif_sring_t *sr = c->sim->sring;
    SHARED_RING_INIT(sr);
    blkif_front_ring_t fr;
    blkif_back_ring_t br;
    FRONT_RING_INIT(&fr, sr, BLK_PAGE_SIZE);
    BACK_RING_INIT(&br, sr, BLK_PAGE_SIZE);
    struct blk_ops ops = { .ctx = c, .map = b_map, .unmap = b_unmap, .io = b_io,
                           .flush = b_flush, .discard = b_discard };
    /* Indirect descriptors for the 1 MiB requests live in grant 15. */
    struct blkif_request_segment *ind = (void *)c->sim->page[SIM_GRANTS - 1];
    for (unsigned i = 0; i < BLK_MAX_INDIRECT_SEGS; i++)
        ind[i] = (struct blkif_request_segment){ .gref = 1 + i % (SIM_GRANTS - 2),
                                                 .first_sect = 0, .last_sect = 7 };
    uint64_t total = c->img.sectors / BLK_SECTORS_PER_PAGE, done = 0;
    *reqs = 0;
    double t0 = now_s();
    while (done < total) {
        while (done < total && !RING_FULL(&fr)) {
            unsigned n = segs;
            if (n > total - done)
                n = (unsigned)(total - done);
            blkif_request_t *r = RING_GET_REQUEST(&fr, fr.req_prod_pvt++);
            uint8_t op = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
            if (n > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
                blkif_request_indirect_t *in = (void *)r;
                memset(in, 0, sizeof(*in));
                in->operation = BLKIF_OP_INDIRECT;
                in->indirect_op = op;
                in->nr_segments = (uint16_t)n;
                in->sector_number = done * BLK_SECTORS_PER_PAGE;
                in->indirect_grefs[0] = SIM_GRANTS - 1;
            } else {
                r->operation = op;
                r->nr_segments = (uint8_t)n;
                r->sector_number = done * BLK_SECTORS_PER_PAGE;
                for (unsigned i = 0; i < n; i++)
                    r->seg[i] = (struct blkif_request_segment){ .gref = 1 + i,
                        .first_sect = 0, .last_sect = 7 };
            }
            done += n;
        }
        RING_PUSH_REQUESTS(&fr);
        bool notify = false;
        if (blk_ring_process(&br, &c->sim->work, &c->sim->lim, &ops, UINT32_MAX,
                             &notify) != BLK_RING_IDLE)
            return -1;
        while (fr.rsp_cons != sr->rsp_prod) {
            if (RING_GET_RESPONSE(&fr, fr.rsp_cons)->status != BLKIF_RSP_OKAY)
                return -1;
            fr.rsp_cons++;
            (*reqs)++;
        }
    }
    if (write && image_flush(&c->img) < 0)
        return -1;
    return now_s() - t0;
}

/* dd of the same file, same block size: seconds, or -1. */
static double dd_pass(const char *img, bool write, unsigned bs, uint64_t bytes)
{
    char cmd[PATH_MAX + 256];
    uint64_t count = (bytes + bs - 1) / bs;
    if (write)
        snprintf(cmd, sizeof(cmd), "dd if=/dev/zero of='%s' bs=%u count=%" PRIu64
                 " conv=notrunc,fdatasync status=none", img, bs, count);
    else
        snprintf(cmd, sizeof(cmd), "dd if='%s' of=/dev/null bs=%u count=%" PRIu64
                 " status=none", img, bs, count);
    double t0 = now_s();
    if (system(cmd) != 0)
        return -1;
    return now_s() - t0;
}

static void bench_backend(const char *dir, unsigned mb)
{
    char img[PATH_MAX];
    snprintf(img, sizeof(img), "%s/backend.img", dir);
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)mb << 20) < 0) {
        fprintf(stderr, "bench-blk: %s: %s\n", img, strerror(errno));
        exit(1);
    }
    close(fd);
    struct bctx c = { .sim = sim_new() };
    c.sim->lim.sectors = ((uint64_t)mb << 20) / BLK_SECTOR_SIZE;
    if (image_open(&c.img, img, false) < 0) {
        fprintf(stderr, "bench-blk: open %s failed\n", img);
        exit(1);
    }
    static const struct { const char *name; unsigned segs; } sizes[] = {
        { "4k", 1 }, { "44k", 11 }, { "1m_indirect", 256 },
    };
    /* Lay the file out once so every pass overwrites allocated blocks. */
    dd_pass(img, true, 1 << 20, (uint64_t)mb << 20);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int w = 1; w >= 0; w--) {
            uint64_t reqs;
            double t = backend_pass(&c, w, sizes[i].segs, &reqs);
            double ref = dd_pass(img, w, sizes[i].segs * BLK_PAGE_SIZE, (uint64_t)mb << 20);
            if (t <= 0 || ref <= 0) {
                printf("{\"bench\":\"blk\",\"figure\":\"backend_%s_%s\",\"error\":\"failed\"}\n",
                       w ? "write" : "read", sizes[i].name);
                continue;
            }
            printf("{\"bench\":\"blk\",\"figure\":\"backend_%s_%s\",\"mb\":%u,"
                   "\"mb_per_s\":%.1f,\"iops\":%.0f,\"ref\":\"dd bs=%u%s\","
                   "\"ref_mb_per_s\":%.1f,\"ref_iops\":%.0f,\"ratio\":%.2f}\n",
                   w ? "write" : "read", sizes[i].name, mb, mb / t, (double)reqs / t,
                   sizes[i].segs * BLK_PAGE_SIZE, w ? " conv=fdatasync" : "", mb / ref,
                   (double)(((uint64_t)mb << 20) / (sizes[i].segs * BLK_PAGE_SIZE)) / ref,
                   t / ref);
            fflush(stdout);
        }
    }
    image_close(&c.img);
    sim_free(c.sim);
    unlink(img);
}

/* ---- guest: blkfront against xkvm-blkback under xkvmd ------------------------------------ */

static void skip_guest(const char *why)
{
    printf("{\"bench\":\"blk\",\"figure\":\"guest\",\"skipped\":\"%s\"}\n", why);
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

static void bench_guest(const char *dir, unsigned mb, unsigned loops, const char *xkvmd,
                        const char *xkvm, const char *guest)
{
    if (!xkvmd || !xkvm || !guest) {
        skip_guest("needs --xkvmd, --xkvm and --guest");
        return;
    }
    if (access("/dev/kvm", R_OK | W_OK) < 0) {
        skip_guest("no usable /dev/kvm");
        return;
    }
    if (run("command -v xenstore-write >/dev/null") < 0) {
        skip_guest("no xenstore-write (Debian xen-utils)");
        return;
    }
    char rundir[PATH_MAX], cmd[4 * PATH_MAX], img[PATH_MAX], cfg[PATH_MAX];
    snprintf(rundir, sizeof(rundir), "%s/host", dir);
    snprintf(img, sizeof(img), "%s/guest.img", dir);
    snprintf(cfg, sizeof(cfg), "%s/blk.cfg", dir);
    mkdir(rundir, 0700);
    snprintf(cmd, sizeof(cmd), "truncate -s %uM '%s'", mb + 1, img);
    if (run(cmd) < 0) {
        skip_guest("cannot create the image");
        return;
    }
    FILE *f = fopen(cfg, "w");
    if (!f) {
        skip_guest("cannot write the config");
        return;
    }
    fprintf(f, "name = \"bench-blk\"\nmemory = 32\nvcpus = 1\nkernel = \"%s\"\n"
            "cmdline = \"test=blk mb=%u loop=%u seed=1\"\non_poweroff = \"preserve\"\n"
            "disk = [ '%s,raw,xvda,rw' ]\n", guest, mb, loops, img);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' --rundir '%s' --machine-memory 1G", xkvmd, rundir);
    if (run(cmd) < 0) {
        skip_guest("xkvmd did not start");
        return;
    }
    char xs[PATH_MAX + 32];
    snprintf(xs, sizeof(xs), "%s/xenstored/socket", rundir);
    setenv("XENSTORED_PATH", xs, 1);
    for (int i = 0; i < 100 && access(xs, F_OK) < 0; i++)
        usleep(100000);
    int domid = -1;
    snprintf(cmd, sizeof(cmd), "'%s' --rundir '%s' create '%s' -p 2>/dev/null", xkvm,
             rundir, cfg);
    FILE *p = popen(cmd, "r");
    if (p) {
        char line[64];
        while (fgets(line, sizeof(line), p))
            domid = atoi(line);
        pclose(p);
    }
    double t0 = 0, t1 = 0;
    char console[PATH_MAX + 32];
    snprintf(console, sizeof(console), "%s/dmesg-%d.log", rundir, domid);
    double loop_ms[64];
    unsigned nloops = 0;
    unsigned long long sectors = 0, reqs = 0;
    const char *why = NULL;
    if (domid <= 0) {
        why = "xkvm create failed";
        goto out;
    }
    /* Where the toolstack does not write vbd nodes yet, write libxl's layout here. */
    snprintf(cmd, sizeof(cmd), "xenstore-read /local/domain/0/backend/vbd/%d/51712/params "
             ">/dev/null 2>&1 || { B=/local/domain/0/backend/vbd/%d/51712; "
             "F=/local/domain/%d/device/vbd/51712; xenstore-write $B/frontend $F "
             "$B/frontend-id %d $B/online 1 $B/state 1 $B/params '%s' $B/mode w "
             "$B/type phy $B/device-type disk $B/dev xvda && xenstore-write $F/backend $B "
             "$F/backend-id 0 $F/state 1 $F/virtual-device 51712 $F/device-type disk && "
             "xenstore-chmod -r $B n0 r%d && xenstore-chmod -r $F n%d r0; }",
             domid, domid, domid, domid, img, domid, domid);
    if (run(cmd) < 0) {
        why = "could not write the vbd's xenstore nodes";
        goto out;
    }
    snprintf(cmd, sizeof(cmd), "'%s' --rundir '%s' unpause %d >/dev/null", xkvm, rundir,
             domid);
    run(cmd);
    t0 = now_s();
    bool done = false;
    while (!done && now_s() - t0 < 600) {
        usleep(100000);
        FILE *c = fopen(console, "r");
        if (!c)
            continue;
        char line[512];
        nloops = 0;
        while (fgets(line, sizeof(line), c)) {
            /* The dmesg log's "(dN) " before the guest's text. */
            char *l = line[0] == '(' && strchr(line, ' ') ? strchr(line, ' ') + 1 : line;
            memmove(line, l, strlen(l) + 1);
            unsigned long k, s, n, ms;
            if (sscanf(line, "xtest: blk: loop %lu seed %lu ok (%lu sectors, %lu ms)",
                       &k, &s, &n, &ms) == 4 && nloops < 64) {
                loop_ms[nloops++] = (double)ms;
                sectors = n;
            }
            sscanf(line, "xkvm-guest: blkfront: closed (backend state %*u), %llu requests",
                   &reqs);
            if (!strncmp(line, "xtest: blk: PASS", 16)) {
                done = true;
                t1 = now_s();
            } else if (!strncmp(line, "xtest: blk: FAIL", 16)) {
                why = "the guest's blk test failed";
                done = true;
            }
        }
        fclose(c);
    }
    if (!done)
        why = "the guest did not finish in 600 s";
    if (!why && nloops) {
        double best = loop_ms[0], sum = 0;
        for (unsigned i = 0; i < nloops; i++) {
            sum += loop_ms[i];
            if (loop_ms[i] < best)
                best = loop_ms[i];
        }
        double bytes = (double)sectors * 512 * 2;   /* written, then read */
        double ref_w = dd_pass(img, true, 44 << 10, sectors * 512);
        double ref_r = dd_pass(img, false, 44 << 10, sectors * 512);
        double ref_ms = (ref_w + ref_r) * 1000;
        printf("{\"bench\":\"blk\",\"figure\":\"guest_loop\",\"mb\":%u,\"loops\":%u,"
               "\"best_mb_per_s\":%.1f,\"mean_mb_per_s\":%.1f,\"requests\":%llu,"
               "\"iops\":%.0f,\"ref\":\"dd bs=44k write+fdatasync then read\","
               "\"ref_mb_per_s\":%.1f,\"ratio\":%.2f,\"note\":\"guest figure includes "
               "CPL3 pattern generation and check\"}\n",
               mb, nloops, bytes / 1048576 / (best / 1000),
               bytes / 1048576 / (sum / nloops / 1000), reqs,
               (double)reqs / (t1 - t0), bytes / 1048576 / (ref_ms / 1000),
               best / ref_ms);
    }
out:
    if (why)
        skip_guest(why);
    usleep(1500000);        /* let blkback see the frontend close and log its counters */
    if (!why) {
        /* blkback's own account: time spent serving the ring, data moved. */
        char logp[PATH_MAX + 32], line[512];
        snprintf(logp, sizeof(logp), "%s/xkvm-blkback.log", rundir);
        FILE *l = fopen(logp, "r");
        unsigned long long r = 0, kib = 0, ms = 0, nt = 0, maps = 0, hits = 0;
        bool found = false;
        while (l && fgets(line, sizeof(line), l)) {
            const char *q = strstr(line, "disconnected (");
            if (q && sscanf(q, "disconnected (%llu requests, %llu KiB in %llu ms busy, "
                            "%llu notifies, %llu grant maps, %llu persistent hits)",
                            &r, &kib, &ms, &nt, &maps, &hits) == 6)
                found = true;
        }
        if (l)
            fclose(l);
        if (found && ms)
            printf("{\"bench\":\"blk\",\"figure\":\"guest_backend_busy\",\"requests\":%llu,"
                   "\"kib\":%llu,\"busy_ms\":%llu,\"mb_per_s\":%.1f,\"iops\":%.0f,"
                   "\"notifies\":%llu,\"grant_maps\":%llu,\"persistent_hits\":%llu,"
                   "\"note\":\"blkback's time serving the guest's ring (grant maps, "
                   "image I/O, responses), the guest's think time excluded\"}\n",
                   r, kib, ms, (double)kib / 1024 / ((double)ms / 1000),
                   (double)r / ((double)ms / 1000), nt, maps, hits);
    }
    /* xkvmd, then the dom0 services it started: they outlive it by design. */
    static const char *const pidfiles[] = {
        "xkvmd.pid", "services/xkvm-blkback.pid", "services/xkvm-xenstored.pid",
        "services/xkvm-consoled.pid",
    };
    for (size_t i = 0; i < sizeof(pidfiles) / sizeof(pidfiles[0]); i++) {
        char pidfile[PATH_MAX + 64];
        snprintf(pidfile, sizeof(pidfile), "%s/%s", rundir, pidfiles[i]);
        FILE *pf = fopen(pidfile, "r");
        if (!pf)
            continue;
        int pid = 0;
        if (fscanf(pf, "%d", &pid) == 1 && pid > 1)
            kill(pid, SIGTERM);
        fclose(pf);
        usleep(i == 0 ? 500000 : 100000);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "mb", required_argument, NULL, 'm' },
        { "loops", required_argument, NULL, 'l' },
        { "xkvmd", required_argument, NULL, 'd' },
        { "xkvm", required_argument, NULL, 'x' },
        { "guest", required_argument, NULL, 'g' },
        { "keep", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned mb = 64, loops = 3;
    const char *xkvmd = NULL, *xkvm = NULL, *guest = NULL;
    bool keep = false;
    int c;
    while ((c = getopt_long(argc, argv, "m:l:d:x:g:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mb = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'l': loops = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': xkvmd = optarg; break;
        case 'x': xkvm = optarg; break;
        case 'g': guest = optarg; break;
        case 'k': keep = true; break;
        default:
            fprintf(stderr, "usage: bench-blk [--mb N] [--loops N] [--xkvmd PATH "
                    "--xkvm PATH --guest PATH] [--keep]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (mb == 0 || mb > 4096 || loops == 0 || loops > 64) {
        fprintf(stderr, "bench-blk: --mb 1..4096, --loops 1..64\n");
        return 2;
    }
    char dir[] = "/tmp/bench-blk.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench-blk: mkdtemp");
        return 1;
    }
    bench_backend(dir, mb);
    bench_guest(dir, mb < 16 ? mb : 16, loops, xkvmd, xkvm, guest);
    if (!keep) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        run(cmd);
    } else {
        fprintf(stderr, "bench-blk: kept %s\n", dir);
    }
    return 0;
}
