/*
 * Xen's blkif ABI (xen/io/blkif.h) with the memory barriers its ring macros expect
 * from the includer. Every blkback file includes Xen's headers through this one.
 */
#ifndef XKVM_BLKBACK_BLKIF_H
#define XKVM_BLKBACK_BLKIF_H

#include <stdint.h>

#define xen_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/blkif.h>

#define BLK_PAGE_SIZE           4096u
#define BLK_SECTOR_SIZE         512u
#define BLK_SECTORS_PER_PAGE    (BLK_PAGE_SIZE / BLK_SECTOR_SIZE)
/* Segment descriptors in one indirect page. */
#define BLK_SEGS_PER_INDIRECT   (BLK_PAGE_SIZE / sizeof(struct blkif_request_segment))
/* What this backend offers: feature-max-indirect-segments, max-ring-page-order. */
#define BLK_MAX_INDIRECT_SEGS   256u
#define BLK_MAX_RING_ORDER      4u
#define BLK_MAX_RING_PAGES      (1u << BLK_MAX_RING_ORDER)
/* Largest request in segments, direct or indirect. */
#define BLK_MAX_SEGS            BLK_MAX_INDIRECT_SEGS

#endif
