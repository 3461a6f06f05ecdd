/*
 * The floor under a migration's total time (docs/performance.md): BYTES pushed through
 * one loopback TCP connection as the stream writer pushes pages (writev of up to 1024
 * 4 KiB iovecs) and read as the receiver reads them, plain and through a TLS 1.3 PSK
 * session (util/tls.h, the migration transport). One JSON line each:
 *   {"bench":"stream-floor","transport":"plain","bytes":N,"ms":T,"mbs":R}
 *   bench-stream-floor [BYTES]      (default 256 MiB)
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/tls.h"
#include "util/transport.h"

#define PAGE 4096
#define IOVS 1024

struct side {
    struct tls_creds *creds;
    int fd;
    unsigned long long bytes, got;
    int ok;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *reader(void *arg)
{
    struct side *s = arg;
    char err[1024];
    struct transport plain, *t = &plain;
    transport_plain(&plain, s->fd);
    if (s->creds && !(t = tls_open(s->creds, s->fd, true, NULL, 10000, err, sizeof(err)))) {
        fprintf(stderr, "bench-stream-floor: server: %s\n", err);
        return NULL;
    }
    static char buf[1 << 20];
    while (s->got < s->bytes) {
        ssize_t n = transport_read(t, buf, sizeof(buf));
        if (n <= 0)
            break;
        s->got += (unsigned long long)n;
    }
    s->ok = s->got == s->bytes;
    transport_write_all(t, "K", 1);
    transport_release(t);
    return NULL;
}

/* A connected loopback pair: *cfd (ours), *sfd (the reader's). */
static int tcp_pair(int *cfd, int *sfd)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&a, &al))
        return -1;
    *cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*cfd, (struct sockaddr *)&a, sizeof(a)))
        return -1;
    *sfd = accept(ls, NULL, NULL);
    close(ls);
    setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return *sfd < 0 ? -1 : 0;
}

static int run(const char *name, struct tls_creds *c, unsigned long long bytes)
{
    static char pages[IOVS][PAGE];
    for (int i = 0; i < IOVS; i++)
        for (int k = 0; k < PAGE; k++)
            pages[i][k] = (char)(i * 31 + k * 7);
    int cfd, sfd;
    if (tcp_pair(&cfd, &sfd))
        return -1;
    struct side s = { .creds = c, .fd = sfd, .bytes = bytes };
    pthread_t th;
    pthread_create(&th, NULL, reader, &s);
    char err[1024];
    struct transport plain, *t = &plain;
    transport_plain(&plain, cfd);
    double t0 = now_ms();
    if (c && !(t = tls_open(c, cfd, false, "localhost", 10000, err, sizeof(err)))) {
        fprintf(stderr, "bench-stream-floor: client: %s\n", err);
        return -1;
    }
    struct iovec iov[IOVS];
    for (unsigned long long left = bytes; left;) {
        int n = 0;
        size_t chunk = 0;
        for (; n < IOVS && left - chunk >= PAGE; n++, chunk += PAGE)
            iov[n] = (struct iovec){ .iov_base = pages[n], .iov_len = PAGE };
        if (!n)
            break;
        for (int k = 0; k < n;) {       /* short writes: go on from where it stopped */
            ssize_t w = t->writev(t, iov + k, n - k);
            if (w <= 0)
                return -1;
            while (k < n && (size_t)w >= iov[k].iov_len)
                w -= (ssize_t)iov[k++].iov_len;
            if (k < n) {
                iov[k].iov_base = (char *)iov[k].iov_base + w;
                iov[k].iov_len -= (size_t)w;
            }
        }
        left -= chunk;
    }
    char k;
    transport_read(t, &k, 1);           /* the reader has it all */
    double ms = now_ms() - t0;
    pthread_join(th, NULL);
    transport_release(t);
    close(cfd);
    close(sfd);
    if (!s.ok)
        return -1;
    printf("{\"bench\":\"stream-floor\",\"transport\":\"%s\",\"bytes\":%llu,\"ms\":%.2f,"
           "\"mbs\":%.0f}\n", name, bytes, ms, bytes / 1e3 / ms);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long long bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : 256ull << 20;
    bytes -= bytes % PAGE;
    char dir[] = "/tmp/xkvm-bench-floor.XXXXXX", path[64], err[512];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/k.psk", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "bench:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    fclose(f);
    chmod(path, 0600);
    struct tls_creds *c = tls_creds_psk(path, err, sizeof(err));
    unlink(path);
    rmdir(dir);
    if (!c) {
        fprintf(stderr, "bench-stream-floor: %s\n", err);
        return 1;
    }
    int rc = run("plain", NULL, bytes) || run("tls-psk", c, bytes);
    tls_creds_free(c);
    return rc ? 1 : 0;
}
