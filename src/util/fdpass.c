/* Passing file descriptors over an AF_UNIX socket: fdpass.h. */
#include "util/fdpass.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds,
                    int flags, const struct sockaddr *to, socklen_t tolen)
{
    if (nfds > FDPASS_MAX) {
        errno = EINVAL;
        return -1;
    }
    /* The union aligns the buffer for struct cmsghdr, as CMSG_FIRSTHDR expects. */
    union {
        char buf[CMSG_SPACE(FDPASS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr mh = { .msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
                         .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    return sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
}

ssize_t fdpass_recv(int sock, void *buf, size_t len, int flags, int *fds, unsigned maxfds,
                    unsigned *nfds, int *msg_flags)
{
    union {
        char buf[CMSG_SPACE(FDPASS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf) };
    ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    *nfds = 0;
    if (msg_flags)
        *msg_flags = n < 0 ? 0 : mh.msg_flags;
    if (n < 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
            if (*nfds < maxfds && *nfds < FDPASS_MAX)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
    return n;
}
