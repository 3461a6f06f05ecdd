/*
 * The readiness protocol (util/notify.h): $NOTIFY_SOCKET parsed into an address, and
 * messages arriving on a fake service manager's datagram socket, both through our own
 * sender and through libsystemd's sd_notify when the build has it; BARRIER=1 likewise.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util/notify.h"

HARNESS_MAIN_STATE("notify");

static void test_addr(void)
{
    struct sockaddr_un sa;
    socklen_t len;
    CHECK_EQ(notify_socket_addr("/run/systemd/notify", &sa, &len), 0);
    CHECK_EQ(sa.sun_family, AF_UNIX);
    CHECK(!strcmp(sa.sun_path, "/run/systemd/notify"));
    CHECK_EQ(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    CHECK_EQ(notify_socket_addr("@abstract/name", &sa, &len), 0);
    CHECK_EQ(sa.sun_path[0], '\0');
    CHECK(!memcmp(sa.sun_path + 1, "abstract/name", 13));
    CHECK_EQ(len, offsetof(struct sockaddr_un, sun_path) + 14);   /* no trailing NUL */
    CHECK_EQ(notify_socket_addr("", &sa, &len), -EINVAL);
    CHECK_EQ(notify_socket_addr(NULL, &sa, &len), -EINVAL);
    CHECK_EQ(notify_socket_addr("relative/path", &sa, &len), -EINVAL);
    CHECK_EQ(notify_socket_addr("vsock:2:1234", &sa, &len), -EAFNOSUPPORT);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    CHECK_EQ(notify_socket_addr(longp, &sa, &len), -EINVAL);
}

/* A fake service manager: a datagram socket at a path, or at an abstract name. */
static int listener(const char *value)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (notify_socket_addr(value, &sa, &len))
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0)
        return -1;
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static ssize_t receive(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

static void over(const char *value)
{
    int fd = listener(value);
    REQUIRE(fd >= 0);
    setenv("NOTIFY_SOCKET", value, 1);
    char buf[2048];
    CHECK(notify_enabled());
    CHECK_EQ(notify_send_raw("READY=1\nSTATUS=raw"), 1);
    CHECK(receive(fd, buf, sizeof(buf)) > 0);
    CHECK(!strcmp(buf, "READY=1\nSTATUS=raw"));
    CHECK(notify_send("STOPPING=1") > 0);
    CHECK(receive(fd, buf, sizeof(buf)) > 0);
    CHECK(!strcmp(buf, "STOPPING=1"));
    CHECK(notify_sendf("READY=1\nMAINPID=%d", 4242) > 0);
    CHECK(receive(fd, buf, sizeof(buf)) > 0);
    CHECK(!strcmp(buf, "READY=1\nMAINPID=4242"));
    /* sd_notify(0, ...) and ours leave the variable for the next exec. */
    CHECK(getenv("NOTIFY_SOCKET") && !strcmp(getenv("NOTIFY_SOCKET"), value));
    close(fd);
}

static void test_path_socket(void)
{
    char dir[] = "/tmp/xkvm-notify-test.XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/notify", dir);
    over(path);
    unlink(path);
    rmdir(dir);
}

static void test_abstract_socket(void)
{
    char name[64];
    snprintf(name, sizeof(name), "@xkvm-notify-test-%d", (int)getpid());
    over(name);
}

/*
 * BARRIER=1 carries a pipe's write end: passed once the manager has closed it (a recv
 * without room for descriptors closes them), -ETIMEDOUT while nobody reads.
 */
static void test_barrier(void)
{
    char name[64];
    snprintf(name, sizeof(name), "@xkvm-notify-barrier-%d", (int)getpid());
    int fd = listener(name);
    REQUIRE(fd >= 0);
    setenv("NOTIFY_SOCKET", name, 1);
    char buf[64];
    CHECK_EQ(notify_barrier(100), -ETIMEDOUT);
    CHECK(receive(fd, buf, sizeof(buf)) > 0 && !strcmp(buf, "BARRIER=1"));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(receive(fd, buf, sizeof(buf)) > 0 && !strcmp(buf, "BARRIER=1") ? 0 : 1);
    CHECK_EQ(notify_barrier(2000), 0);
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

static void test_not_under_systemd(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK(!notify_enabled());
    CHECK_EQ(notify_send_raw("READY=1"), 0);
    CHECK_EQ(notify_send("READY=1"), 0);
    CHECK_EQ(notify_sendf("READY=1"), 0);
    /* Nobody listening at the path: an error, not a hang or a crash. */
    setenv("NOTIFY_SOCKET", "/nonexistent/xkvm-notify", 1);
    CHECK(notify_send_raw("READY=1") < 0);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    printf("# sending through %s\n", notify_uses_libsystemd() ? "libsystemd" : "our own sender");
    RUN_TEST(test_addr);
    RUN_TEST(test_path_socket);
    RUN_TEST(test_abstract_socket);
    RUN_TEST(test_barrier);
    RUN_TEST(test_not_under_systemd);
    HARNESS_EXIT();
}
