/*
 * Grant tables, version 1 (xen/grant_table.h, Xen's misc/grant-tables.txt). The
 * shared entries live in Xen-owned frames of machine memory that the guest maps with
 * XENMAPSPACE_grant_table; xkvmd keeps the active-entry state (who has a grant mapped
 * or is copying from it) in plain structures, listable by gnttab_state_json().
 */
#ifndef XKVM_HV_GNTTAB_H
#define XKVM_HV_GNTTAB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct domain;
struct hcall;

int gnttab_domain_init(struct domain *d);
/* Revokes what other domains and dom0 services still map, then frees the frames. */
void gnttab_domain_fini(struct domain *d);

/*
 * XENMAPSPACE_grant_table: the mfn of shared frame `idx` (status frames are v2 only),
 * growing the table up to idx as Xen does; INVALID_MFN if idx is beyond the maximum.
 */
uint64_t gnttab_frame_mfn(struct domain *d, uint64_t idx);

/*
 * The dom0 device interface: map grant `ref` of domain d for a dom0 service. On
 * success *mfn is the frame to mmap from the machine-memory fd and *handle names the
 * mapping for unmap. The grant stays mapped (its frame referenced) until unmapped or
 * the service disconnects.
 */
int gnttab_dom0_map(struct domain *d, uint32_t ref, bool readonly, uint64_t *mfn,
                    uint32_t *handle);
int gnttab_dom0_unmap(struct domain *d, uint32_t handle);

struct json_object *gnttab_state_json(struct domain *d);

long do_grant_table_op(struct hcall *hc);

#endif
