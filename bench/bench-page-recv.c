/*
 * Where a migration's received pages can land (docs/performance.md, "Live migration"):
 * BYTES (default 256 MiB) sent through one loopback TCP connection in 4 MiB records
 * and placed in a fresh memfd of machine memory, each way the destination could do it:
 *   buffer-pwrite   read into a 4 MiB buffer, pwrite to the memfd (xkvm before issue 19)
 *   direct          read straight into the memfd's mapping (xkvm over TLS)
 *   populate-direct MADV_POPULATE_WRITE on the record's frames, then read into them
 *   splice          socket -> pipe -> memfd with splice(2) (xkvm over plain TCP)
 *   floor           read into the same 4 MiB buffer, placed nowhere (bench-stream-floor)
 *   resident-direct the memfd made resident before the clock starts, then direct
 *                   (xkvmd --machine-memory-prealloc, any transport)
 *   resident-splice the same, then splice
 * One JSON line each: {"bench":"page-recv","mode":M,"bytes":N,"ms":T,"mbs":R}
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define RECORD (4u << 20)

enum mode { BUFFER_PWRITE, DIRECT, POPULATE_DIRECT, SPLICE, FLOOR, RESIDENT_DIRECT,
            RESIDENT_SPLICE, NR_MODES };
static const char *const mode_names[NR_MODES] = {
    "buffer-pwrite", "direct", "populate-direct", "splice", "floor", "resident-direct",
    "resident-splice",
};

struct sender {
    int fd;
    unsigned long long bytes;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *send_all(void *arg)
{
    struct sender *s = arg;
    static char rec[RECORD];
    memset(rec, 0x5a, sizeof(rec));
    for (unsigned long long left = s->bytes; left; left -= RECORD)
        for (size_t off = 0; off < RECORD;) {
            ssize_t w = write(s->fd, rec + off, RECORD - off);
            if (w <= 0)
                return NULL;
            off += (size_t)w;
        }
    return NULL;
}

static int read_full(int fd, char *p, size_t len)
{
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, const char *p, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int splice_full(int sock, const int pipefd[2], int mfd, loff_t off, size_t len)
{
    while (len) {
        ssize_t n = splice(sock, NULL, pipefd[1], NULL, len, SPLICE_F_MOVE);
        if (n <= 0)
            return -1;
        for (ssize_t out = 0; out < n;) {
            ssize_t m = splice(pipefd[0], NULL, mfd, &off, (size_t)(n - out), SPLICE_F_MOVE);
            if (m <= 0)
                return -1;
            out += m;
        }
        len -= (size_t)n;
    }
    return 0;
}

/* One record of RECORD bytes into frame offset off, as mode does it. */
static int receive_record(enum mode m, int sock, int mfd, char *base, char *buf,
                          const int pipefd[2], off_t off)
{
    switch (m) {
    case BUFFER_PWRITE:
        return read_full(sock, buf, RECORD) || pwrite_full(mfd, buf, RECORD, off) ? -1 : 0;
    case POPULATE_DIRECT:
        if (madvise(base + off, RECORD, MADV_POPULATE_WRITE))
            return -1;
        /* fall through */
    case DIRECT:
    case RESIDENT_DIRECT:
        return read_full(sock, base + off, RECORD);
    case SPLICE:
    case RESIDENT_SPLICE:
        return splice_full(sock, pipefd, mfd, off, RECORD);
    default:
        return read_full(sock, buf, RECORD);
    }
}

static int tcp_pair(int *a, int *b)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&sa, &len))
        return -1;
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&sa, sizeof(sa)))
        return -1;
    *b = accept(ls, NULL, NULL);
    close(ls);
    return *b < 0 ? -1 : 0;
}

static int run(enum mode m, unsigned long long bytes)
{
    static char buf[RECORD];
    int tx, rx, pipefd[2];
    int mfd = memfd_create("bench-page-recv", 0);
    if (mfd < 0 || ftruncate(mfd, (off_t)bytes) || tcp_pair(&tx, &rx) || pipe(pipefd))
        return -1;
    fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
    char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mfd, 0);
    if (base == MAP_FAILED)
        return -1;
    struct sender s = { .fd = tx, .bytes = bytes };
    pthread_t th;
    if ((m == RESIDENT_DIRECT || m == RESIDENT_SPLICE) &&
        madvise(base, bytes, MADV_POPULATE_WRITE))
        return -1;
    double t0 = now_ms();
    pthread_create(&th, NULL, send_all, &s);
    int rc = 0;
    for (off_t off = 0; !rc && (unsigned long long)off < bytes; off += RECORD)
        rc = receive_record(m, rx, mfd, base, buf, pipefd, off);
    pthread_join(th, NULL);
    double ms = now_ms() - t0;
    if (!rc && m != FLOOR && (base[0] != 0x5a || base[bytes - 1] != 0x5a))
        rc = -1;            /* the pages did not land */
    if (!rc)
        printf("{\"bench\":\"page-recv\",\"mode\":\"%s\",\"bytes\":%llu,\"ms\":%.2f,\"mbs\":%.0f}\n",
               mode_names[m], bytes, ms, bytes / 1e3 / ms);
    else
        fprintf(stderr, "bench-page-recv: %s failed\n", mode_names[m]);
    munmap(base, bytes);
    close(mfd);
    close(tx);
    close(rx);
    close(pipefd[0]);
    close(pipefd[1]);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned long long bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : 256ull << 20;
    bytes -= bytes % RECORD;
    if (!bytes)
        return 1;
    int rc = 0;
    for (int m = 0; m < NR_MODES; m++)
        rc |= run((enum mode)m, bytes);
    return rc ? 1 : 0;
}
