/*
 * Passing descriptors (util/fdpass.h): over a socketpair, one and two descriptors
 * arrive as descriptors of the same files (st_ino), none when none are sent, and a
 * datagram to an address carries them too; a receiver keeping fewer closes the rest,
 * and a message truncated is said so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "util/fdpass.h"

HARNESS_MAIN_STATE("fdpass");

/* One message into buf with fdpass_recv; its descriptors (all it keeps) into fds. */
static int receive(int sock, char *buf, size_t len, ssize_t *got, int *fds)
{
    unsigned n = 0;
    *got = fdpass_recv(sock, buf, len, 0, fds, FDPASS_MAX, &n, NULL);
    return (int)n;
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
           sa.st_dev == sb.st_dev;
}

/* Send nfds descriptors of distinct files on a SEQPACKET pair; they must come back. */
static void round_trip(unsigned nfds)
{
    int sv[2], fds[2], got_fds[FDPASS_MAX];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fds[1] = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    REQUIRE(fds[0] >= 0 && fds[1] >= 0);
    CHECK_EQ(fdpass_send(sv[0], "HELLO", 5, fds, nfds, 0, NULL, 0), 5);
    char buf[16];
    ssize_t got;
    int n = receive(sv[1], buf, sizeof(buf), &got, got_fds);
    CHECK_EQ(got, 5);
    CHECK(!memcmp(buf, "HELLO", 5));
    CHECK_EQ(n, nfds);
    for (int i = 0; i < n && i < (int)nfds; i++) {
        CHECK(got_fds[i] != fds[i]);
        CHECK(same_file(got_fds[i], fds[i]));
    }
    if (nfds == 2)
        CHECK(!same_file(got_fds[0], got_fds[1]));
    for (int i = 0; i < n; i++)
        close(got_fds[i]);
    close(fds[0]);
    close(fds[1]);
    close(sv[0]);
    close(sv[1]);
}

static void test_no_fd(void) { round_trip(0); }
static void test_one_fd(void) { round_trip(1); }
static void test_two_fds(void) { round_trip(2); }

static void test_too_many(void)
{
    int sv[2], fds[FDPASS_MAX + 1];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    for (unsigned i = 0; i <= FDPASS_MAX; i++)
        fds[i] = sv[0];
    errno = 0;
    CHECK_EQ(fdpass_send(sv[0], "X", 1, fds, FDPASS_MAX + 1, 0, NULL, 0), -1);
    CHECK_EQ(errno, EINVAL);
    close(sv[0]);
    close(sv[1]);
}

/*
 * The receiver keeps one of two: the other (a pipe's write end) is closed, so once the
 * sender closes its own, the pipe reads EOF. A short buffer says MSG_TRUNC.
 */
static void test_keep_fewer(void)
{
    int sv[2], p[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    int fds[2] = { p[0], p[1] };
    CHECK_EQ(fdpass_send(sv[0], "HELLO", 5, fds, 2, 0, NULL, 0), 5);
    char buf[2];
    int kept = -1, flags = 0;
    unsigned n = 9;
    CHECK_EQ(fdpass_recv(sv[1], buf, sizeof(buf), 0, &kept, 1, &n, &flags), 2);
    CHECK_EQ(n, 1);
    CHECK(flags & MSG_TRUNC);
    CHECK(kept >= 0 && same_file(kept, p[0]));
    CHECK(fcntl(kept, F_GETFD) & FD_CLOEXEC);
    close(p[1]);            /* the only write end left, if the extra one was closed */
    char c;
    CHECK_EQ(read(kept, &c, 1), 0);
    close(kept);
    close(p[0]);
    /* None wanted: all closed; an error leaves none. */
    CHECK_EQ(fdpass_send(sv[0], "X", 1, &sv[0], 1, 0, NULL, 0), 1);
    CHECK_EQ(fdpass_recv(sv[1], buf, sizeof(buf), 0, NULL, 0, &n, NULL), 1);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdpass_recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT, &kept, 1, &n, &flags), -1);
    CHECK_EQ(n, 0);
    close(sv[0]);
    close(sv[1]);
}

/* As BARRIER=1 goes to the service manager: a datagram to an (abstract) address. */
static void test_to_address(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int k = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "xkvm-fdpass-test-%d",
                     (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
    int rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(rx >= 0 && tx >= 0 && bind(rx, (struct sockaddr *)&sa, len) == 0);
    int p[2], got_fd = -1;
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    CHECK_EQ(fdpass_send(tx, "BARRIER=1", 9, &p[1], 1, 0, (struct sockaddr *)&sa, len), 9);
    char buf[16];
    ssize_t got;
    CHECK_EQ(receive(rx, buf, sizeof(buf), &got, &got_fd), 1);
    CHECK_EQ(got, 9);
    CHECK(got_fd >= 0 && same_file(got_fd, p[1]));
    if (got_fd >= 0)
        close(got_fd);
    close(p[0]);
    close(p[1]);
    close(rx);
    close(tx);
}

int main(void)
{
    RUN_TEST(test_no_fd);
    RUN_TEST(test_one_fd);
    RUN_TEST(test_two_fds);
    RUN_TEST(test_too_many);
    RUN_TEST(test_keep_fewer);
    RUN_TEST(test_to_address);
    HARNESS_EXIT();
}
