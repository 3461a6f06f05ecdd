/*
 * The host side of a vif: a persistent TAP device vif<domid>.<handle> opened with a
 * virtio-net header (IFF_VNET_HDR), brought up and joined to a bridge (docs/netback.md).
 * Persistent so that a restarted netback opens the same device again; multi-queue
 * (IFF_MULTI_QUEUE), one fd per netif queue.
 */
#ifndef XKVM_NETBACK_TAP_H
#define XKVM_NETBACK_TAP_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Hold name in this network namespace (an abstract UNIX socket named after it, freed
 * when the process dies): a multi-queue TAP device takes any number of openers, so
 * this is what keeps two netbacks (both hosts of a test in one namespace) off one
 * device. fd, or -EBUSY if another process holds it.
 */
int tap_claim(const char *name);
/*
 * Open (creating it if need be) one queue of the multi-queue TAP device name,
 * non-blocking; each call attaches another queue. fd or -errno.
 */
int tap_open(const char *name);
/*
 * Take queue fd out of the device (on = false: the kernel steers no frame to it) or put
 * it back (TUNSETQUEUE). The fd stays bound to its device wherever the device goes,
 * which opening by name again would not: a device moved to another network namespace
 * is not found by name from here. 0 or -errno.
 */
int tap_queue_attach(int fd, bool on);
/* What the kernel may hand us: checksum offload, TSO for IPv4/IPv6. 0 or -errno. */
int tap_set_offload(int fd, bool csum, bool tso4, bool tso6);
/* Bring the device up and, if bridge is not "", join it. 0, or -errno (-ENODEV: no bridge). */
int tap_up(const char *name, const char *bridge);
/* Drop persistence and close: the device disappears. */
void tap_destroy(int fd);
/*
 * Announce mac on the device's network as QEMU's announce-self does: one RARP
 * (ethertype 0x8035, "reverse request", sender and target the MAC), written as if the
 * guest sent it. 0 or -errno.
 */
int tap_announce(int fd, const uint8_t mac[6]);

#endif
