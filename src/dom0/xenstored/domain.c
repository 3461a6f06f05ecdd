/*
 * Domains: the dom0 connection to xkvmd (libdom0), INTRODUCE/RELEASE of rings, and
 * Xen's VIRQ_DOM_EXC handling: on every WATCH_DOMAINS event look at each introduced
 * domain with GET_DOMAIN_INFO, and fire @releaseDomain for one that shut down (once,
 * until RESUME) or is gone (then drop it). Without xkvmd, socket clients are served
 * and the connection is retried every second; when xkvmd goes away (its dom0 socket
 * hangs up) rings are dropped and re-established once it is back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include "xsd.h"
#include "dom0/libdom0.h"
#include "util/fdpass.h"

/* WATCH_DOMAINS on a connection of our own (libdom0 has no call for it). */
static int watch_connect(int *efd)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", xsd.rundir, XKVM_DOM0_SOCKET);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        goto fail;
    struct {
        struct xkvm_dom0_hdr h;
        struct xkvm_dom0_hello b;
    } hello = { { XKVM_DOM0_HELLO, sizeof(hello), 1, 0 }, { XKVM_DOM0_VERSION, 0, "xenstored-watch" } };
    uint8_t rep[XKVM_DOM0_MAX_MSG];
    if (send(fd, &hello, sizeof(hello), MSG_NOSIGNAL) != sizeof(hello))
        goto fail;
    ssize_t n = recv(fd, rep, sizeof(rep), 0);
    if (n < (ssize_t)sizeof(struct xkvm_dom0_hdr) || ((struct xkvm_dom0_hdr *)rep)->error)
        goto fail;
    struct xkvm_dom0_hdr w = { XKVM_DOM0_WATCH_DOMAINS, sizeof(w), 2, 0 };
    if (send(fd, &w, sizeof(w), MSG_NOSIGNAL) != sizeof(w))
        goto fail;
    unsigned nfds;
    n = fdpass_recv(fd, rep, sizeof(rep), 0, efd, 1, &nfds, NULL);
    if (nfds && n >= (ssize_t)sizeof(struct xkvm_dom0_hdr) &&
        !((struct xkvm_dom0_hdr *)rep)->error)
        return fd;
    if (nfds)
        close(*efd);
fail:
    *efd = -1;
    close(fd);
    return -EIO;
}

static void check_domains(void)
{
    struct xs *xs = &xsd.xs;
    struct xs_domain *d = xs->domains, *next;
    for (; d; d = next) {
        next = d->next;
        if (!d->introduced)
            continue;
        struct xkvm_dom0_domain_info info;
        int r = dom0_domain_info(xsd.dom0, d->domid, false, &info);
        if (r == -ESRCH) {
            xsd_log("dom%u: gone", d->domid);
            xs_domain_gone(xs, d, true);
        } else if (r == 0 && info.state == XKVM_DOM0_SHUTDOWN && !d->shutdown) {
            d->shutdown = true;
            xs_fire_special(xs, XS_SPECIAL_RELEASE, d->domid);
        }
    }
}

static void watch_fn(struct xsd_ev *e, uint32_t events)
{
    uint64_t v;
    if (read(e->fd, &v, sizeof(v)) < 0) {
        /* spurious */
    }
    if (xsd.dom0)
        check_domains();
}

static void dom0_lost(void);
static void try_connect(void);

static void hup_fn(struct xsd_ev *e, uint32_t events)
{
    char b[XKVM_DOM0_MAX_MSG];
    ssize_t n = recv(e->fd, b, sizeof(b), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN) || (events & (EPOLLHUP | EPOLLERR))) {
        dom0_lost();
        /*
         * At once, not at the next tick: after a live update the same listening
         * socket is there, and the new xkvmd answers as soon as it serves.
         */
        try_connect();
    }
}

static void dom0_lost(void)
{
    xsd_log("xkvmd's dom0 socket went away: rings dropped until it is back");
    for (struct xs_domain *d = xsd.xs.domains; d; d = d->next)
        xsd_ring_detach(d, false);
    xsd_ev_del(&xsd.watch_ev);
    close(xsd.watch_ev.fd);
    xsd_ev_del(&xsd.hup_ev);
    close(xsd.hup_ev.fd);
    dom0_close(xsd.dom0);
    xsd.dom0 = NULL;
}

static void try_connect(void)
{
    int efd;
    struct dom0_conn *c = dom0_connect(xsd.rundir, "xenstored");
    if (!c)
        return;
    int s = watch_connect(&efd);
    if (s < 0) {
        dom0_close(c);
        return;
    }
    xsd.dom0 = c;
    xsd.watch_ev = (struct xsd_ev){ efd, watch_fn, NULL };
    xsd.hup_ev = (struct xsd_ev){ s, hup_fn, NULL };
    xsd_ev_add(&xsd.watch_ev, EPOLLIN);
    xsd_ev_add(&xsd.hup_ev, EPOLLIN);
    xsd_log("connected to xkvmd's dom0 socket");
    check_domains();
    for (struct xs_domain *d = xsd.xs.domains; d; d = d->next)
        if (d->introduced)
            xsd_ring_attach(d);
}

static void timer_fn(struct xsd_ev *e, uint32_t events)
{
    uint64_t v;
    if (read(e->fd, &v, sizeof(v)) < 0) {
        /* spurious */
    }
    if (!xsd_socket_still_ours()) {
        /* The run directory was removed, or another xenstored took the socket over:
         * nobody can reach us any more. */
        xsd_log("socket removed or replaced: exiting");
        exit(0);
    }
    if (!xsd.dom0)
        try_connect();
    /* As Xen's xenstored looks at every ring in its main loop: a lost notification
     * (or one before a restart) costs at most a second. */
    for (struct xs_domain *d = xsd.xs.domains; d; d = d->next)
        xsd_ring_kick(d);
    xsd_persist_maybe_compact();
}

void xsd_domain_init(void)
{
    xsd.xs.ops.introduce = xsd_domain_introduce;
    xsd.xs.ops.release = xsd_domain_release;
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec its = { { 1, 0 }, { 1, 0 } };
    timerfd_settime(t, 0, &its, NULL);
    xsd.timer_ev = (struct xsd_ev){ t, timer_fn, NULL };
    xsd_ev_add(&xsd.timer_ev, EPOLLIN);
    try_connect();
}

int xsd_domain_introduce(struct xs *xs, struct xs_domain *d)
{
    if (!xsd.dom0)
        return 0;       /* attached when xkvmd is back */
    return xsd_ring_attach(d);
}

void xsd_domain_release(struct xs *xs, struct xs_domain *d)
{
    xsd_ring_detach(d, true);
}
