/*
 * Xen's netif ABI (xen/io/netif.h) with the memory barriers its ring macros expect
 * from the includer, and this backend's limits (docs/netback.md). Every netback file
 * includes Xen's headers through this one.
 */
#ifndef XKVM_NETBACK_NETIF_H
#define XKVM_NETBACK_NETIF_H

#include <stdint.h>

#define xen_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/netif.h>

#define NB_PAGE_SIZE        4096u
#define NB_ETH_HLEN         14u
/* Slots of one transmitted packet: more is dropped (XEN_NETBK_LEGACY_SLOTS_MAX)... */
#define NB_MAX_SLOTS        XEN_NETIF_NR_SLOTS_MIN
/* ...and a chain longer than this breaks the ring (Linux's fatal_skb_slots). */
#define NB_FATAL_SLOTS      20u
/* Extra-info slots of one packet (one per type at most). */
#define NB_MAX_EXTRAS       (XEN_NETIF_EXTRA_TYPE_MAX - 1)
/* Largest frame either way: a GSO packet of 64 KiB, as Linux's netback allows. */
#define NB_MAX_FRAME        XEN_NETIF_MAX_TX_SIZE
/* Data slots a received frame of NB_MAX_FRAME takes, plus the GSO extra. */
#define NB_RX_MAX_SLOTS     ((NB_MAX_FRAME + NB_PAGE_SIZE - 1) / NB_PAGE_SIZE + 1)

#endif
