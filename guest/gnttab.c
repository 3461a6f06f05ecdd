/*
 * Grant table v1 set-up as an HVM guest does it: GNTTABOP_query_size,
 * GNTTABOP_set_version(1), GNTTABOP_setup_table (status check only: an HVM guest
 * reaches its frames through the physmap), then XENMEM_add_to_physmap
 * (XENMAPSPACE_grant_table, idx 0) at the gfn of a page of our .bss.
 */
#include "pv.h"
#include "xtest.h"

static uint8_t gnttab_page[4096] __attribute__((aligned(4096)));
static grant_entry_v1_t *gnttab;
unsigned gnttab_nr_entries;

grant_entry_v1_t *gnttab_init(void)
{
    if (gnttab)
        return gnttab;

    struct gnttab_query_size q = { .dom = DOMID_SELF };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);
    if (rc || q.status != GNTST_okay) {
        printf("xkvm-guest: GNTTABOP_query_size = %ld, status %d\n", rc, q.status);
        return NULL;
    }
    printf("xkvm-guest: grant table: %u of max %u frames\n", q.nr_frames, q.max_nr_frames);

    struct gnttab_set_version v = { .version = 1 };
    rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &v, 1);
    if (rc) {
        printf("xkvm-guest: GNTTABOP_set_version(1) = %ld\n", rc);
        return NULL;
    }

    xen_pfn_t frame = 0;
    struct gnttab_setup_table s = { .dom = DOMID_SELF, .nr_frames = 1 };
    set_xen_guest_handle(s.frame_list, &frame);
    rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1);
    if (rc || s.status != GNTST_okay) {
        printf("xkvm-guest: GNTTABOP_setup_table(1) = %ld, status %d\n", rc, s.status);
        return NULL;
    }

    struct xen_add_to_physmap x = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0,
        .gpfn = (uint64_t)(uintptr_t)gnttab_page >> 12,
    };
    rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x);
    if (rc) {
        printf("xkvm-guest: XENMEM_add_to_physmap(grant_table 0, gfn %#lx) = %ld\n",
               (unsigned long)x.gpfn, rc);
        return NULL;
    }
    gnttab = (grant_entry_v1_t *)gnttab_page;
    gnttab_nr_entries = PAGE_SIZE / sizeof(grant_entry_v1_t);
    return gnttab;
}

void gnttab_grant(unsigned ref, void *page, domid_t dom, bool readonly)
{
    gnttab[ref].frame = (uint32_t)((uintptr_t)page >> 12);
    gnttab[ref].domid = dom;
    __atomic_store_n(&gnttab[ref].flags,
                     (uint16_t)(GTF_permit_access | (readonly ? GTF_readonly : 0)),
                     __ATOMIC_RELEASE);
}
