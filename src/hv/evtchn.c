/* placeholder until the event-channel implementation lands */
#include <errno.h>
#include "hv/event.h"
#include "hv/hypercall.h"
int event_domain_init(struct domain *d) { return 0; }
void event_domain_fini(struct domain *d) { }
int event_vcpu_init(struct vcpu *v) { return 0; }
void event_vcpu_fini(struct vcpu *v) { }
int shared_info_map(struct domain *d, uint64_t gfn) { return -ENOSYS; }
int evtchn_set_pending(struct domain *d, uint32_t port) { return -EINVAL; }
void evtchn_send_virq(struct vcpu *v, uint32_t virq) { }
void evtchn_send_global_virq(struct domain *d, uint32_t virq) { }
int evtchn_dom0_bind(struct domain *d, uint32_t port, int *to_guest, int *from_guest) { return -ENOSYS; }
int evtchn_dom0_unbind(struct domain *d, uint32_t port) { return -ENOSYS; }
void event_before_run(struct vcpu *v) { }
struct json_object *event_state_json(struct domain *d) { return json_object_new_object(); }
long do_event_channel_op(struct hcall *hc) { return -ENOSYS; }
long do_vcpu_op(struct hcall *hc) { return -ENOSYS; }
long do_set_evtchn_upcall_vector(struct hcall *hc) { return -ENOSYS; }
