/*
 * Grant tables, versions 1 and 2 (xen/grant_table.h, Xen's misc/grant-tables.txt). The
 * shared entries (and v2's status words) live in Xen-owned frames of machine memory that the guest maps with
 * XENMAPSPACE_grant_table; xkvmd keeps the active-entry state (who has a grant mapped
 * or is copying from it) in plain structures, listable by gnttab_state_json().
 *
 * Locking: each table has its own lock, held only briefly and never two at once; a
 * pinned grant keeps a reference on its frame (machine_mem.h), so copies run unlocked.
 */
#ifndef XKVM_HV_GNTTAB_H
#define XKVM_HV_GNTTAB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct domain;
struct hcall;

/* Xen's default max_grant_frames (4.17): 64 frames, 32768 v1 entries. */
#define GNTTAB_MAX_FRAMES       64u
#define GNTTAB_INITIAL_FRAMES   1u
#define GNTTAB_ENTRIES_PER_FRAME 512u   /* 4096 / sizeof(grant_entry_v1_t) */
#define GNTTAB_V2_ENTRIES_PER_FRAME 256u /* 4096 / sizeof(grant_entry_v2_t) */
#define GNTTAB_STATUS_PER_FRAME 2048u   /* 4096 / sizeof(grant_status_t) */
/* v2 status frames for GNTTAB_MAX_FRAMES shared frames (Xen: grant_to_status_frames). */
#define GNTTAB_MAX_STATUS_FRAMES \
    ((GNTTAB_MAX_FRAMES * GNTTAB_V2_ENTRIES_PER_FRAME + GNTTAB_STATUS_PER_FRAME - 1) / \
     GNTTAB_STATUS_PER_FRAME)
/* dom0 mappings of one domain's grants at once. */
#define GNTTAB_MAX_DOM0_MAPS    4096u

int gnttab_domain_init(struct domain *d);
/* Drops the table's own pins and frees it. dom0 services keep their frame refs. */
void gnttab_domain_fini(struct domain *d);

/*
 * XENMAPSPACE_grant_table: the mfn of shared frame `idx` (status frames are v2 only),
 * growing the table up to idx as Xen does; INVALID_MFN if idx is beyond the maximum.
 */
uint64_t gnttab_frame_mfn(struct domain *d, uint64_t idx);
/* add_to_physmap placed frame idx at gfn (for setup_table's frame list). */
void gnttab_frame_placed(struct domain *d, uint64_t idx, uint64_t gfn);

/* The version in effect: 1 (Xen's default) or 2. */
unsigned gnttab_version(struct domain *d);
/*
 * GNTTABOP_set_version as Xen 4.17: -EINVAL unless 1 or 2; -EBUSY while an entry
 * beyond the reserved ones is pinned; else every shared frame is cleared and the
 * reserved entries are converted (their pins carried), v2 gets its status frames and
 * v1 takes them out of the guest's physmap. 0 when already at that version.
 */
int gnttab_set_version(struct domain *d, unsigned version);
/* Restore: set the version of a fresh table (status frames allocated, zeroed). */
int gnttab_restore_version(struct domain *d, unsigned version);
/* v2: status frames now (0 in v1); the mfn of status frame idx, growing the table as
 * XENMAPSPACE_grant_table with XENMAPIDX_grant_table_status does, or INVALID_MFN. */
unsigned gnttab_nr_status_frames(struct domain *d);
uint64_t gnttab_status_mfn(struct domain *d, uint64_t idx);
void gnttab_status_placed(struct domain *d, uint64_t idx, uint64_t gfn);
/* Where the guest mapped status frame idx, or INVALID_GFN. */
uint64_t gnttab_status_gfn(struct domain *d, unsigned idx);
/* The table's size now; grow it to nr frames (0, or -EINVAL beyond the maximum). */
unsigned gnttab_nr_frames(struct domain *d);
int gnttab_grow(struct domain *d, unsigned nr);
/* Where the guest mapped shared frame idx, or INVALID_GFN (Xen's M2P answer). */
uint64_t gnttab_frame_gfn(struct domain *d, unsigned idx);

/*
 * Pin grant `ref` of domain rd for access by domain `ldomid` (a copy or a map), as
 * Xen's acquire_grant_for_copy: sets GTF_reading (and GTF_writing) in the shared
 * entry. GNTST_okay with the frame in *mfn, or a GNTST_* error. Release with
 * gnttab_release and the same readonly.
 */
int gnttab_acquire(struct domain *rd, uint32_t ref, uint16_t ldomid, bool readonly,
                   uint64_t *mfn);
void gnttab_release(struct domain *rd, uint32_t ref, bool readonly);

/*
 * The dom0 device interface: map grant `ref` of domain d for a dom0 service. On
 * success *mfn is the frame to mmap from the machine-memory fd and *handle names the
 * mapping for unmap; the caller also owns one reference on the frame (mm_frame_put
 * when done), which outlives the domain. 0, or -EINVAL (bad ref), -EACCES (not
 * granted to dom0, or read-only), -EFAULT (bad frame), -ENOSPC (too many maps).
 */
int gnttab_dom0_map(struct domain *d, uint32_t ref, bool readonly, uint64_t *mfn,
                    uint32_t *handle);
int gnttab_dom0_unmap(struct domain *d, uint32_t handle);

/*
 * Set the bit of every gfn mapped writable now, by a dom0 service or another guest
 * (migration sends them at the end: the mapper may write them until it unmaps).
 */
void gnttab_dom0_mapped_gfns(struct domain *d, uint64_t *bitmap);

/*
 * Grant mappings between guests (GNTTABOP_map_grant_ref with GNTMAP_host_map from an
 * HVM/PVH guest, hypervisor.md "Grant mapping"). Domain ld maps grant `ref` of rd at
 * its gfn: the grant is pinned in rd's table (GTF_reading/GTF_writing set), ld's
 * maptrack holds a reference on the frame, which outlives rd (an orphan until the last
 * unmap), and ld's p2m maps it at gfn (p2m_map_foreign). GNTST_okay with the handle in
 * *handle, or a GNTST_* code with nothing changed.
 */
/* Xen 4.17's default max_maptrack_frames (1024) x 256 entries of 16 bytes a frame. */
#define GNTTAB_MAX_MAPTRACK     (1024u * 256u)
int gnttab_map_foreign(struct domain *ld, struct domain *rd, uint32_t ref, uint64_t gfn,
                       bool readonly, uint32_t *handle);
/*
 * Unmap ld's handle; gfn must be where it is mapped unless INVALID_GFN (host_addr 0).
 * gfn becomes a hole. GNTST_okay, GNTST_bad_handle, or GNTST_general_error.
 */
int gnttab_unmap_foreign(struct domain *ld, uint32_t handle, uint64_t gfn);
/* Grant mappings of other domains' frames ld holds now. */
uint32_t gnttab_foreign_maps(struct domain *ld);

struct json_object *gnttab_state_json(struct domain *d);

long do_grant_table_op(struct hcall *hc);

#endif
