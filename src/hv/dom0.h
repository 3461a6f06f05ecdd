/*
 * The dom0 device interface (include/xkvm/dom0.h, docs/dom0-interface.md): xkvmd's
 * second socket, RUNDIR/dom0.sock, on which dom0 services bind event channels and map
 * granted or foreign frames of guests. Served from the main loop; every connection's
 * mappings and bindings are released when it closes.
 */
#ifndef XKVM_HV_DOM0_H
#define XKVM_HV_DOM0_H

#include <stdbool.h>
#include <stdint.h>

struct domain;

/* Listen on RUNDIR/dom0.sock (not close-on-exec: live update hands it on). fd or -errno. */
int dom0_listen(const char *rundir);
/* Live update: serve the listening socket the previous xkvmd handed on. */
int dom0_listen_inherited(int fd, const char *rundir);
/* Serve the socket from the main loop's epoll set. */
void dom0_attach(int epfd);
/* An epoll event on fd: true if fd was the dom0 socket or one of its connections. */
bool dom0_handle_event(int fd, uint32_t events);
/*
 * Domain d is being destroyed (main thread, before its grant table and channels go):
 * its grants are unpinned, but frames that services map stay theirs until unmapped.
 */
void dom0_domain_gone(struct domain *d);
/* A domain was created, shut down or destroyed: signal WATCH_DOMAINS eventfds. */
void dom0_domains_changed(void);
/* Close every connection and remove the socket. */
void dom0_stop(void);

#endif
