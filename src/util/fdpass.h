/*
 * Passing file descriptors over an AF_UNIX socket (SCM_RIGHTS, unix(7)): one message
 * with its descriptors, sent or received, the control buffer laid out and aligned
 * once, here. Every descriptor xkvm passes goes through it: xkvmd's dom0 replies
 * (hv/dom0.c) and their reader (dom0/libdom0.c, the services' watch connections),
 * the live update's FINAL (migrate/lu_beside.c), a same-host migration's memfds
 * (migrate/local_send.c, local_recv.c), a client's file to xkvmd (tools, daemon) and
 * BARRIER=1 to the service manager (util/notify.c). Unit-tested:
 * tests/unit/test-fdpass.c.
 */
#ifndef XKVM_UTIL_FDPASS_H
#define XKVM_UTIL_FDPASS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The most descriptors one fdpass_send carries (a same-host migration's memfds: 16). */
#define FDPASS_MAX 16

/*
 * One sendmsg of LEN bytes at BUF with fds[0..nfds) (none when nfds is 0), to TO
 * (TOLEN bytes; a datagram socket's peer) or, with TO NULL, on a connected socket.
 * FLAGS go to sendmsg with MSG_NOSIGNAL added; no retry on EINTR. What sendmsg
 * returns (-1 with errno; EINVAL for more than FDPASS_MAX descriptors).
 */
ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds,
                    int flags, const struct sockaddr *to, socklen_t tolen);

/*
 * One recvmsg of at most LEN bytes into BUF (FLAGS as recvmsg's; MSG_CMSG_CLOEXEC is
 * always added), with the message's descriptors: the first MAXFDS (up to FDPASS_MAX)
 * go into fds[0..*nfds) in order, any more are closed. *msg_flags (if not NULL) gets
 * the message's flags (MSG_TRUNC, MSG_CTRUNC: more than FDPASS_MAX descriptors came,
 * and the kernel dropped the rest). What recvmsg returns; *nfds is 0 on an error.
 */
ssize_t fdpass_recv(int sock, void *buf, size_t len, int flags, int *fds, unsigned maxfds,
                    unsigned *nfds, int *msg_flags);

#endif
