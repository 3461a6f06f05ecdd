/* placeholder until the grant-table implementation lands */
#include <errno.h>
#include "hv/gnttab.h"
#include "hv/hypercall.h"
#include "hv/machine_mem.h"
int gnttab_domain_init(struct domain *d) { return 0; }
void gnttab_domain_fini(struct domain *d) { }
uint64_t gnttab_frame_mfn(struct domain *d, uint64_t idx) { return INVALID_MFN; }
int gnttab_dom0_map(struct domain *d, uint32_t ref, bool readonly, uint64_t *mfn, uint32_t *handle) { return -ENOSYS; }
int gnttab_dom0_unmap(struct domain *d, uint32_t handle) { return -ENOSYS; }
struct json_object *gnttab_state_json(struct domain *d) { return json_object_new_object(); }
long do_grant_table_op(struct hcall *hc) { return -ENOSYS; }
