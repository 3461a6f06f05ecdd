/*
 * xenstore operations per second on the UNIX socket, through libxenstore as every
 * dom0 tool does: small WRITE+READ pairs, and read-modify-write transactions. Measured
 * against xkvm-xenstored and, in the same run, a plain UNIX-socket echo round trip of
 * the same request/reply sizes (the transport's floor). Xen's own daemons cannot be the
 * reference here: Debian's oxenstored needs to raise RLIMIT_NOFILE (EPERM in a
 * container) and its C xenstored, the only mode that runs without /dev/xen (-N -D),
 * crashes on the first WRITE (no dom0 domain for the accounting); --xen-xenstored PATH
 * still tries such a binary (-N -D) where it works. One JSON line per figure.
 *
 *   bench-xenstore [--xenstored PATH] [--xen-xenstored PATH] [--ops N]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <xenstore.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn(char *const argv[], const char *sock)
{
    pid_t p = fork();
    if (p == 0) {
        int nul = open("/dev/null", 1);
        if (nul >= 0) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        setenv("XENSTORED_PATH", sock, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        struct stat st;
        if (stat(sock, &st) == 0)
            return p;
        usleep(20000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    return -1;
}

static void stop(pid_t p)
{
    kill(p, SIGTERM);
    waitpid(p, NULL, 0);
}

static int run_xs(const char *server, const char *sock, long ops)
{
    setenv("XENSTORED_PATH", sock, 1);
    struct xs_handle *h = xs_open(0);
    if (!h) {
        fprintf(stderr, "bench-xenstore: %s: xs_open: %s\n", server, strerror(errno));
        return -1;
    }
    char path[64], val[32];
    unsigned len;
    long pairs = ops / 2;
    /* warm up: create the nodes */
    for (int k = 0; k < 100; k++) {
        snprintf(path, sizeof(path), "/bench/k%d", k);
        xs_write(h, XBT_NULL, path, "0", 1);
    }
    double t0 = now();
    for (long i = 0; i < pairs; i++) {
        snprintf(path, sizeof(path), "/bench/k%ld", i % 100);
        int n = snprintf(val, sizeof(val), "v%ld", i);
        if (!xs_write(h, XBT_NULL, path, val, (unsigned)n))
            return -1;
        char *r = xs_read(h, XBT_NULL, path, &len);
        if (!r || strcmp(r, val))
            return -1;
        free(r);
    }
    double t = now() - t0;
    printf("{\"bench\":\"xenstore\",\"op\":\"write+read\",\"server\":\"%s\",\"ops\":%ld,"
           "\"seconds\":%.3f,\"ops_per_sec\":%.0f,\"us_per_op\":%.2f}\n",
           server, pairs * 2, t, (double)pairs * 2 / t, t * 1e6 / (double)(pairs * 2));
    long txns = ops / 20;
    int retries = 0;
    t0 = now();
    for (long i = 0; i < txns; i++) {
        for (;;) {
            xs_transaction_t tx = xs_transaction_start(h);
            char *r = xs_read(h, tx, "/bench/k1", &len);
            free(r);
            int n = snprintf(val, sizeof(val), "t%ld", i);
            xs_write(h, tx, "/bench/k1", val, (unsigned)n);
            if (xs_transaction_end(h, tx, false))
                break;
            if (errno != EAGAIN)
                return -1;
            retries++;
        }
    }
    t = now() - t0;
    printf("{\"bench\":\"xenstore\",\"op\":\"transaction(start,read,write,end)\","
           "\"server\":\"%s\",\"transactions\":%ld,\"seconds\":%.3f,"
           "\"transactions_per_sec\":%.0f,\"retries\":%d}\n",
           server, txns, t, (double)txns / t, retries);
    xs_close(h);
    return 0;
}

/* The floor: a UNIX stream socket round trip of a WRITE-sized request and OK reply. */
static void run_echo(long ops)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return;
    pid_t p = fork();
    if (p == 0) {
        char b[64];
        close(sv[0]);
        for (;;) {
            ssize_t n = read(sv[1], b, 32);
            if (n <= 0)
                _exit(0);
            if (write(sv[1], b, 19) != 19)
                _exit(0);
        }
    }
    close(sv[1]);
    char b[64] = { 0 };
    double t0 = now();
    for (long i = 0; i < ops; i++) {
        if (write(sv[0], b, 32) != 32 || read(sv[0], b, 19) <= 0)
            break;
    }
    double t = now() - t0;
    close(sv[0]);
    waitpid(p, NULL, 0);
    printf("{\"bench\":\"xenstore\",\"op\":\"round trip\",\"server\":\"unix-socket-echo\","
           "\"ops\":%ld,\"seconds\":%.3f,\"ops_per_sec\":%.0f,\"us_per_op\":%.2f}\n",
           ops, t, (double)ops / t, t * 1e6 / (double)ops);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "xenstored", required_argument, NULL, 'x' },
        { "xen-xenstored", required_argument, NULL, 'X' },
        { "ops", required_argument, NULL, 'n' },
        { 0 }
    };
    char self[PATH_MAX], ours[PATH_MAX + 64];
    const char *xen = NULL;
    long ops = 20000;
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[l > 0 ? l : 0] = '\0';
    snprintf(ours, sizeof(ours), "%s/../src/dom0/xenstored/xkvm-xenstored", dirname(self));
    const char *xsd = ours;
    int o;
    while ((o = getopt_long(argc, argv, "x:X:n:", opts, NULL)) != -1) {
        switch (o) {
        case 'x': xsd = optarg; break;
        case 'X': xen = optarg; break;
        case 'n': ops = atol(optarg); break;
        default:
            fprintf(stderr, "usage: bench-xenstore [--xenstored PATH] [--xen-xenstored PATH] [--ops N]\n");
            return 2;
        }
    }
    if (ops < 20)
        ops = 20;
    char dir[] = "/tmp/bench-xenstore.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char rundir[128], sock[192], xsock[192], pidf[192];
    snprintf(rundir, sizeof(rundir), "%s/host", dir);
    snprintf(sock, sizeof(sock), "%s/xenstored/socket", rundir);
    snprintf(xsock, sizeof(xsock), "%s/xen.sock", dir);
    snprintf(pidf, sizeof(pidf), "%s/xen.pid", dir);
    int rc = 0;

    char *a1[] = { (char *)xsd, "--rundir", rundir, "--foreground", NULL };
    pid_t p = spawn(a1, sock);
    if (p < 0 || run_xs("xkvm-xenstored", sock, ops) < 0) {
        fprintf(stderr, "bench-xenstore: xkvm-xenstored (%s) failed\n", xsd);
        rc = 1;
    }
    if (p > 0)
        stop(p);

    if (xen && access(xen, X_OK) == 0) {
        char *a2[] = { (char *)xen, "-N", "-D", "-F", pidf, "-T", "/dev/null", NULL };
        p = spawn(a2, xsock);
        if (p < 0 || run_xs("xen-4.17-xenstored", xsock, ops) < 0)
            fprintf(stderr, "bench-xenstore: reference %s did not run\n", xen);
        if (p > 0)
            stop(p);
    }
    run_echo(ops);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 0;
    return rc;
}
