/*
 * The registry of record types this build knows. Adding a type: define its body
 * struct in include/xkvm/ctx.h, describe its fields here, add one table entry (in
 * type order), document it in docs/domain-context.md.
 */
#include <inttypes.h>
#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/hvm/params.h>

#include "ctx_internal.h"

/* The format's limits are Xen's: if a newer Xen header moves them, look again. */
_Static_assert(XKVM_CTX_HVM_NR_PARAMS == HVM_NR_PARAMS, "HVM_NR_PARAMS");
_Static_assert(XKVM_CTX_DOMID_MAX == DOMID_FIRST_RESERVED - 1, "DOMID_FIRST_RESERVED");
_Static_assert(XKVM_CTX_LEGACY_MAX_VCPUS == XEN_LEGACY_MAX_VCPUS, "XEN_LEGACY_MAX_VCPUS");
_Static_assert(XKVM_CTX_VCPU_INFO_SIZE == sizeof(struct vcpu_info), "vcpu_info size");
_Static_assert(XKVM_CTX_FIFO_QUEUES == EVTCHN_FIFO_MAX_QUEUES, "EVTCHN_FIFO_MAX_QUEUES");
_Static_assert(XKVM_CTX_FIFO_CB_SIZE == sizeof(struct evtchn_fifo_control_block),
               "FIFO control block size");
_Static_assert(XKVM_CTX_FIFO_MAX_PAGES == EVTCHN_FIFO_NR_CHANNELS / 1024,
               "EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES");

static const struct xkvm_ctx_field start_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_start, major),
    XKVM_CTX_F_UINT(struct xkvm_ctx_start, minor),
};

static const struct xkvm_ctx_field shared_info_fields[] = {
    XKVM_CTX_F_FLAGS(struct xkvm_ctx_shared_info, flags,
                     XKVM_CTX_SHARED_INFO_HAS_32BIT_LAYOUT),
    XKVM_CTX_F_UINT(struct xkvm_ctx_shared_info, buffer_size),
};

static int shared_info_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_shared_info *si = rec->body;

    if (rec->length != sizeof(*si) + (uint64_t)si->buffer_size)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "buffer_size %" PRIu32 " does not match length %" PRIu64
                             " (expected %zu + buffer_size)", si->buffer_size,
                             rec->length, sizeof(*si));
    return 0;
}

/* The page is opaque: show how much of it is in use and a digest to compare by. */
static void shared_info_dump(const struct xkvm_ctx_record *rec, struct xkvm_ctx_dumper *d)
{
    const struct xkvm_ctx_shared_info *si = rec->body;
    uint64_t hash = 0xcbf29ce484222325ull;     /* FNV-1a, 64-bit */
    uint64_t nonzero = 0;
    char hex[24];

    for (uint32_t i = 0; i < si->buffer_size; i++) {
        nonzero += si->buffer[i] != 0;
        hash = (hash ^ si->buffer[i]) * 0x100000001b3ull;
    }
    xkvm_ctx_dump_uint(d, "buffer_nonzero", nonzero);
    snprintf(hex, sizeof(hex), "%016" PRIx64, hash);
    xkvm_ctx_dump_str(d, "buffer_fnv1a64", hex);
}

static const char *const tsc_mode_names[] = {
    [XKVM_CTX_TSC_MODE_DEFAULT]        = "default",
    [XKVM_CTX_TSC_MODE_ALWAYS_EMULATE] = "always_emulate",
    [XKVM_CTX_TSC_MODE_NEVER_EMULATE]  = "never_emulate",
};

static const struct xkvm_ctx_field tsc_info_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_tsc_info, mode, tsc_mode_names),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, khz),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, nsec),
    XKVM_CTX_F_UINT(struct xkvm_ctx_tsc_info, incarnation),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_tsc_info, pad),
};

/* ---- xkvm PV state (0x100..) ------------------------------------------------ */

static const struct xkvm_ctx_field domain_fields[] = {
    XKVM_CTX_F_RANGE(struct xkvm_ctx_domain, domid, 1, XKVM_CTX_DOMID_MAX),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_domain, pad),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_domain, nr_vcpus, 1, XKVM_CTX_MAX_VCPUS),
};

static const struct xkvm_ctx_field shared_info_gfn_fields[] = {
    XKVM_CTX_F_GFN(struct xkvm_ctx_shared_info_gfn, gfn),
};

static const char *const evtchn_abi_names[] = {
    [XKVM_CTX_EVTCHN_ABI_2L] = "2l",
    [XKVM_CTX_EVTCHN_ABI_FIFO] = "fifo",
};

static const struct xkvm_ctx_field evtchn_abi_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_evtchn_abi, abi, evtchn_abi_names),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_evtchn_abi, pad),
};

static const char *const evtchn_state_names[] = {
    [XKVM_CTX_EVTCHN_STATE_UNBOUND]     = "unbound",
    [XKVM_CTX_EVTCHN_STATE_INTERDOMAIN] = "interdomain",
    [XKVM_CTX_EVTCHN_STATE_VIRQ]        = "virq",
    [XKVM_CTX_EVTCHN_STATE_IPI]         = "ipi",
};

static const struct xkvm_ctx_field evtchn_port_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_evtchn_port, state, evtchn_state_names),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_port, priority, 0, 15),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_port, notify_vcpu, 0, XKVM_CTX_MAX_VCPUS - 1),
    /* Any domid: Xen lets a guest allocate an unbound port for any remote_dom. */
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_port, remote_domid, 0, 0xffff),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_evtchn_port, pad),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_port, remote_port, 0, XKVM_CTX_EVTCHN_2L_PORTS - 1),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_port, virq, 0, XKVM_CTX_NR_VIRQS - 1),
};

/* What each state uses; the fields it does not use must be 0. */
static int evtchn_port_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_evtchn_port *p = rec->body;

    switch (p->state) {
    case XKVM_CTX_EVTCHN_STATE_UNBOUND:
        if (p->remote_port || p->virq)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "unbound port with remote_port %" PRIu32 " / virq %" PRIu32
                                 ", both must be 0", p->remote_port, p->virq);
        return 0;
    case XKVM_CTX_EVTCHN_STATE_INTERDOMAIN:
        if (p->remote_domid > XKVM_CTX_DOMID_MAX)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "interdomain port to domid %" PRIu16 ", not a domain's",
                                 p->remote_domid);
        if (!p->remote_port)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "interdomain port with remote_port 0 (port 0 is reserved)");
        if (p->virq)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "interdomain port with virq %" PRIu32 ", must be 0", p->virq);
        return 0;
    case XKVM_CTX_EVTCHN_STATE_VIRQ:
        if (p->remote_domid || p->remote_port)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "virq port with remote_domid %" PRIu16 " / remote_port %"
                                 PRIu32 ", both must be 0", p->remote_domid, p->remote_port);
        return 0;
    default:    /* IPI */
        if (p->remote_domid || p->remote_port || p->virq)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "ipi port with remote_domid %" PRIu16 " / remote_port %"
                                 PRIu32 " / virq %" PRIu32 ", all must be 0",
                                 p->remote_domid, p->remote_port, p->virq);
        return 0;
    }
}

static const char *const gnttab_version_names[] = { [1] = "v1", [2] = "v2" };

static const struct xkvm_ctx_field gnttab_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_gnttab, version, gnttab_version_names),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_gnttab, nr_frames, 1, XKVM_CTX_GNTTAB_MAX_FRAMES),
};

static const struct xkvm_ctx_field gnttab_elem_fields[] = {
    { .name = "gfn", .offset = 0, .size = 8, .kind = XKVM_CTX_FIELD_GFN },
};

static int gnttab_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_gnttab *gt = rec->body;
    uint64_t gfns = gt->nr_frames;

    if (gt->version == 2)
        gfns += XKVM_CTX_GNTTAB_STATUS_FRAMES((uint64_t)gt->nr_frames);
    if (rec->length != sizeof(*gt) + gfns * sizeof(uint64_t))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "nr_frames %" PRIu32 " (v%" PRIu32 ") does not match length %"
                             PRIu64 " (expected 8 + 8 * (nr_frames + v2 status frames))",
                             gt->nr_frames, gt->version, rec->length);
    return 0;
}

static const struct xkvm_ctx_field gnttab_frame_fields[] = {
    XKVM_CTX_F_BYTES(struct xkvm_ctx_gnttab_frame, data),
};

/* FNV-1a over bytes: a digest to compare opaque contents by. */
static void dump_digest(struct xkvm_ctx_dumper *d, const char *name, const uint8_t *p,
                        size_t n)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    char hex[24];

    for (size_t i = 0; i < n; i++)
        hash = (hash ^ p[i]) * 0x100000001b3ull;
    snprintf(hex, sizeof(hex), "%016" PRIx64, hash);
    xkvm_ctx_dump_str(d, name, hex);
}

/* The frame is opaque to the format; as v1 entries, how many are in use. */
static void gnttab_frame_dump(const struct xkvm_ctx_record *rec, struct xkvm_ctx_dumper *d)
{
    const uint8_t *data = ((const struct xkvm_ctx_gnttab_frame *)rec->body)->data;
    uint64_t used = 0;

    for (size_t i = 0; i < XKVM_CTX_PAGE_SIZE; i += 8) {
        uint16_t flags;
        memcpy(&flags, data + i, sizeof(flags));
        used += (flags & 3) != 0;       /* GTF_type_mask: permit_access/transfer */
    }
    xkvm_ctx_dump_uint(d, "v1_entries_in_use", used);
    dump_digest(d, "data_fnv1a64", data, XKVM_CTX_PAGE_SIZE);
}

static const struct xkvm_ctx_field hvm_params_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_hvm_params, count),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_hvm_params, pad),
};

static const struct xkvm_ctx_field hvm_param_fields[] = {
    XKVM_CTX_F_RANGE(struct xkvm_ctx_hvm_param, index, 0, XKVM_CTX_HVM_NR_PARAMS - 1),
    XKVM_CTX_F_HEX(struct xkvm_ctx_hvm_param, value),
};

static int hvm_params_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_hvm_params *hp = rec->body;

    if (rec->length != sizeof(*hp) + (uint64_t)hp->count * sizeof(hp->params[0]))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "count %" PRIu32 " does not match length %" PRIu64
                             " (expected 8 + 16 * count)", hp->count, rec->length);
    for (uint32_t i = 0; i < hp->count; i++) {
        if (xkvm_ctx_hvm_param_retired(hp->params[i].index))
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu32 ": parameter %" PRIu64 " is retired",
                                 i, hp->params[i].index);
        if (i && hp->params[i].index <= hp->params[i - 1].index)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu32 ": index %" PRIu64 " %s index %" PRIu64
                                 " of element %" PRIu32 " (must be sorted, no duplicates)",
                                 i, hp->params[i].index,
                                 hp->params[i].index == hp->params[i - 1].index ?
                                 "repeats" : "is below", hp->params[i - 1].index, i - 1);
    }
    return 0;
}

static const char *const vcpu_state_bits[] = { "initialised", "up", "halted" };

static const struct xkvm_ctx_field vcpu_state_fields[] = {
    XKVM_CTX_F_FLAGS_NAMED(struct xkvm_ctx_vcpu_state, flags,
                           XKVM_CTX_VCPU_INITIALISED | XKVM_CTX_VCPU_UP | XKVM_CTX_VCPU_HALTED,
                           vcpu_state_bits),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_vcpu_state, pad),
};

static int vcpu_state_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    uint32_t f = ((const struct xkvm_ctx_vcpu_state *)rec->body)->flags;

    if ((f & XKVM_CTX_VCPU_UP) && !(f & XKVM_CTX_VCPU_INITIALISED))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "flags 0x%" PRIx32 ": UP without INITIALISED", f);
    if ((f & XKVM_CTX_VCPU_HALTED) && !(f & XKVM_CTX_VCPU_UP))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "flags 0x%" PRIx32 ": HALTED without UP", f);
    return 0;
}

static const char *const vcpu_info_placement_names[] = {
    [XKVM_CTX_VCPU_INFO_NONE]       = "none",
    [XKVM_CTX_VCPU_INFO_SHARED]     = "shared_info",
    [XKVM_CTX_VCPU_INFO_REGISTERED] = "registered",
};

static const struct xkvm_ctx_field vcpu_info_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_vcpu_info, placement, vcpu_info_placement_names),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_vcpu_info, offset, 0,
                     XKVM_CTX_PAGE_SIZE - XKVM_CTX_VCPU_INFO_SIZE),
    XKVM_CTX_F_GFN(struct xkvm_ctx_vcpu_info, gfn),
};

static int vcpu_info_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_vcpu_info *vi = rec->body;

    if (vi->placement == XKVM_CTX_VCPU_INFO_REGISTERED) {
        if (vi->gfn == XKVM_CTX_GFN_NONE)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "registered vcpu_info without a gfn");
        if (vi->offset % 8)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "registered vcpu_info at offset %" PRIu32
                                 ", must be 8-byte aligned", vi->offset);
        return 0;
    }
    if (vi->gfn != XKVM_CTX_GFN_NONE || vi->offset)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "placement %s with gfn/offset set (only 'registered' has them)",
                             vcpu_info_placement_names[vi->placement]);
    if (vi->placement == XKVM_CTX_VCPU_INFO_SHARED &&
        rec->instance >= XKVM_CTX_LEGACY_MAX_VCPUS)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "vCPU %" PRIu32 " has no slot in shared_info (only vCPUs below %u)",
                             rec->instance, XKVM_CTX_LEGACY_MAX_VCPUS);
    if (vi->placement == XKVM_CTX_VCPU_INFO_NONE && rec->instance < XKVM_CTX_LEGACY_MAX_VCPUS)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "vCPU %" PRIu32 " below %u always has a vcpu_info (its "
                             "shared_info slot at least)", rec->instance,
                             XKVM_CTX_LEGACY_MAX_VCPUS);
    return 0;
}

static const struct xkvm_ctx_field upcall_fields[] = {
    XKVM_CTX_F_RANGE(struct xkvm_ctx_upcall, vector, 0, 255),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_upcall, pad),
};

static int upcall_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    uint32_t v = ((const struct xkvm_ctx_upcall *)rec->body)->vector;

    if (v && v < 0x10)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "upcall vector %" PRIu32 ", must be 0 (none) or 16..255", v);
    return 0;
}

#define TIMER_PERIOD_MIN 1000000ull             /* 1 ms, as VCPUOP_set_periodic_timer */
#define TIMER_PERIOD_MAX (UINT64_MAX >> 2)

static const struct xkvm_ctx_field timer_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_timer, singleshot_deadline),
    XKVM_CTX_F_UINT(struct xkvm_ctx_timer, periodic_period),
};

static const struct xkvm_ctx_field time_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_time, system_time_ns),
    XKVM_CTX_F_UINT(struct xkvm_ctx_time, wallclock_ns),
};

static const struct xkvm_ctx_field runstate_fields[] = {
    XKVM_CTX_F_HEX(struct xkvm_ctx_runstate, area),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_runstate, state, 0, 3),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_runstate, pad),
    XKVM_CTX_F_UINT(struct xkvm_ctx_runstate, state_entry_time),
    XKVM_CTX_F_BYTES(struct xkvm_ctx_runstate, time),
};

static const struct xkvm_ctx_field vm_assist_fields[] = {
    XKVM_CTX_F_FLAGS(struct xkvm_ctx_vm_assist, types, XKVM_CTX_VMASST_RUNSTATE_UPDATE_FLAG),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_vm_assist, pad),
};

static const char *const mp_state_names[] = {
    [XKVM_CTX_MP_RUNNABLE] = "runnable", [XKVM_CTX_MP_UNINITIALIZED] = "uninitialized",
    [XKVM_CTX_MP_INIT_RECEIVED] = "init_received", [XKVM_CTX_MP_HALTED] = "halted",
};

static const char *const intr_state_names[] = {
    "shadow_sti", "shadow_mov_ss", "nmi_masked", "nmi_pending", "nmi_injected",
};

static const struct xkvm_ctx_field vcpu_platform_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_vcpu_platform, mp_state, mp_state_names),
    XKVM_CTX_F_FLAGS_NAMED(struct xkvm_ctx_vcpu_platform, intr_state, XKVM_CTX_INTR_ALL,
                           intr_state_names),
    XKVM_CTX_F_HEX(struct xkvm_ctx_vcpu_platform, time_area),
};

static int timer_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    uint64_t p = ((const struct xkvm_ctx_timer *)rec->body)->periodic_period;

    if (p && (p < TIMER_PERIOD_MIN || p > TIMER_PERIOD_MAX))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "periodic_period %" PRIu64 " ns, must be 0 (none) or %llu..%llu",
                             p, TIMER_PERIOD_MIN, (unsigned long long)TIMER_PERIOD_MAX);
    return 0;
}

static const char *const hypercall_bits[] = { "vmcall" };

static const struct xkvm_ctx_field hypercall_fields[] = {
    XKVM_CTX_F_FLAGS_NAMED(struct xkvm_ctx_hypercall, flags, XKVM_CTX_HYPERCALL_VMCALL,
                           hypercall_bits),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_hypercall, pad),
};

static const char *const altp2m_modes[] = { "disabled", "mixed", "external", "limited" };

static const struct xkvm_ctx_field altp2m_fields[] = {
    XKVM_CTX_F_ENUM(struct xkvm_ctx_altp2m, mode, altp2m_modes),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_altp2m, state, 0, 1),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_altp2m, active, 0, XKVM_CTX_ALTP2M_MAX_VIEWS - 1),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_altp2m, pad),
};

static const struct xkvm_ctx_field altp2m_view_fields[] = {
    XKVM_CTX_F_UINT(struct xkvm_ctx_altp2m_view, default_access),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_altp2m_view, visible, 0, 1),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_altp2m_view, pad),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_altp2m_view, nr_remaps, 0, XKVM_CTX_ALTP2M_MAX_REMAPS),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_altp2m_view, nr_access, 0, XKVM_CTX_ALTP2M_MAX_ACCESS),
};

static const struct xkvm_ctx_field altp2m_entry_fields[] = {
    XKVM_CTX_F_HEX(struct xkvm_ctx_altp2m_entry, gfn),
    XKVM_CTX_F_HEX(struct xkvm_ctx_altp2m_entry, value),
};

/* The accesses a view may hold on KVM: n, rx, rwx (docs/altp2m.md). */
static bool altp2m_access_ok(uint64_t a)
{
    return a == 0 || a == 5 || a == 7;
}

/* Sorted, no duplicates, within [0, 2^52); accesses valid, targets gfns. */
static int altp2m_entries_check(const struct xkvm_ctx_record *rec,
                                const struct xkvm_ctx_altp2m_entry *e, uint64_t n,
                                bool access, uint64_t base, struct xkvm_ctx_error *err)
{
    for (uint64_t i = 0; i < n; i++) {
        if (e[i].gfn >> 52 || (!access && e[i].value >> 52))
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu64 ": gfn beyond 2^52", base + i);
        if (access && !altp2m_access_ok(e[i].value))
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu64 ": access %" PRIu64
                                 " is not n (0), rx (5) or rwx (7)", base + i, e[i].value);
        if (i && e[i].gfn <= e[i - 1].gfn)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu64 ": gfn %#" PRIx64
                                 " not above the one before (must be sorted, no duplicates)",
                                 base + i, e[i].gfn);
    }
    return 0;
}

static int altp2m_view_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_altp2m_view *v = rec->body;
    if (v->nr_access > XKVM_CTX_ALTP2M_MAX_ACCESS || v->nr_remaps > XKVM_CTX_ALTP2M_MAX_REMAPS)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE, "too many entries");
    if (rec->length != sizeof(*v) + (v->nr_access + v->nr_remaps) * sizeof(v->entries[0]))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "nr_access %" PRIu64 " + nr_remaps %" PRIu32
                             " do not match length %" PRIu64 " (expected 16 + 16 * both)",
                             v->nr_access, v->nr_remaps, rec->length);
    if (!altp2m_access_ok(v->default_access))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "default_access %u is not n (0), rx (5) or rwx (7)",
                             v->default_access);
    int rc = altp2m_entries_check(rec, v->entries, v->nr_access, true, 0, err);
    if (!rc)
        rc = altp2m_entries_check(rec, v->entries + v->nr_access, v->nr_remaps, false,
                                  v->nr_access, err);
    return rc;
}

/* ---- FIFO event channels (0x200..) ------------------------------------------- */

static const struct xkvm_ctx_field fifo_array_fields[] = {
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_fifo_array, nr_pages, 0, XKVM_CTX_FIFO_MAX_PAGES),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_evtchn_fifo_array, pad),
};

static const struct xkvm_ctx_field fifo_array_elem_fields[] = {
    { .name = "page_gfn", .offset = 0, .size = 8, .kind = XKVM_CTX_FIELD_GFN },
};

static int fifo_array_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_evtchn_fifo_array *a = rec->body;

    if (rec->length != sizeof(*a) + (uint64_t)a->nr_pages * sizeof(uint64_t))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "nr_pages %" PRIu32 " does not match length %" PRIu64
                             " (expected 8 + 8 * nr_pages)", a->nr_pages, rec->length);
    for (uint32_t i = 0; i < a->nr_pages; i++)
        if (a->page_gfn[i] == XKVM_CTX_GFN_NONE)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "event array page %" PRIu32 " has no gfn", i);
    return 0;
}

static const struct xkvm_ctx_field fifo_vcpu_fields[] = {
    XKVM_CTX_F_GFN(struct xkvm_ctx_evtchn_fifo_vcpu, control_gfn),
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_fifo_vcpu, offset, 0,
                     XKVM_CTX_PAGE_SIZE - XKVM_CTX_FIFO_CB_SIZE),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_evtchn_fifo_vcpu, pad),
    XKVM_CTX_F_BYTES(struct xkvm_ctx_evtchn_fifo_vcpu, tail),
};

static int fifo_vcpu_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_evtchn_fifo_vcpu *v = rec->body;

    if (v->control_gfn == XKVM_CTX_GFN_NONE)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE, "control block without a gfn");
    if (v->offset % 8)
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                             "control block at offset %" PRIu32 ", must be 8-byte aligned",
                             v->offset);
    for (unsigned q = 0; q < XKVM_CTX_FIFO_QUEUES; q++)
        if (v->tail[q] >= XKVM_CTX_EVTCHN_2L_PORTS)
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "queue %u's tail is port %" PRIu32 ", ports are below %u",
                                 q, v->tail[q], XKVM_CTX_EVTCHN_2L_PORTS);
    return 0;
}

/* The tails as numbers, the queues that have one. */
static void fifo_vcpu_dump(const struct xkvm_ctx_record *rec, struct xkvm_ctx_dumper *d)
{
    const struct xkvm_ctx_evtchn_fifo_vcpu *v = rec->body;
    char name[16];

    for (unsigned q = 0; q < XKVM_CTX_FIFO_QUEUES; q++)
        if (v->tail[q]) {
            snprintf(name, sizeof(name), "tail_%u", q);
            xkvm_ctx_dump_uint(d, name, v->tail[q]);
        }
}

static const struct xkvm_ctx_field fifo_held_fields[] = {
    XKVM_CTX_F_RANGE(struct xkvm_ctx_evtchn_fifo_held, nr_ports, 1,
                     XKVM_CTX_EVTCHN_2L_PORTS - 1),
    XKVM_CTX_F_RESERVED(struct xkvm_ctx_evtchn_fifo_held, pad),
};

static const struct xkvm_ctx_field fifo_held_elem_fields[] = {
    { .name = "port", .offset = 0, .size = 4, .kind = XKVM_CTX_FIELD_RANGE,
      .min = 1, .max = XKVM_CTX_EVTCHN_2L_PORTS - 1 },
};

static int fifo_held_validate(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err)
{
    const struct xkvm_ctx_evtchn_fifo_held *h = rec->body;

    if (rec->length != sizeof(*h) + (uint64_t)h->nr_ports * sizeof(uint32_t))
        return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_LENGTH,
                             "nr_ports %" PRIu32 " does not match length %" PRIu64
                             " (expected 8 + 4 * nr_ports)", h->nr_ports, rec->length);
    for (uint32_t i = 1; i < h->nr_ports; i++)
        if (h->port[i] <= h->port[i - 1])
            return xkvm_ctx_fail(err, rec, XKVM_CTX_ERR_BAD_VALUE,
                                 "element %" PRIu32 ": port %" PRIu32 " after %" PRIu32
                                 " (must ascend)", i, h->port[i], h->port[i - 1]);
    return 0;
}

#define PER_VCPU .min_instance = 0, .max_instance = XKVM_CTX_MAX_VCPUS - 1

static const struct xkvm_ctx_type_desc builtin_types[] = {
    {
        .type = XKVM_CTX_END, .name = "END", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = 0,
    },
    {
        .type = XKVM_CTX_START, .name = "START", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_start),
        .fields = XKVM_CTX_FIELDS(start_fields),
    },
    {
        .type = XKVM_CTX_SHARED_INFO, .name = "SHARED_INFO", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_shared_info),
        .elem_size = 1,
        .max_length = sizeof(struct xkvm_ctx_shared_info) + XKVM_CTX_SHARED_INFO_MAX,
        .fields = XKVM_CTX_FIELDS(shared_info_fields),
        .validate = shared_info_validate,
        .dump = shared_info_dump,
    },
    {
        .type = XKVM_CTX_TSC_INFO, .name = "TSC_INFO", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_tsc_info),
        .fields = XKVM_CTX_FIELDS(tsc_info_fields),
    },
    {
        .type = XKVM_CTX_DOMAIN, .name = "DOMAIN", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_domain),
        .fields = XKVM_CTX_FIELDS(domain_fields),
    },
    {
        .type = XKVM_CTX_SHARED_INFO_GFN, .name = "SHARED_INFO_GFN",
        .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_shared_info_gfn),
        .fields = XKVM_CTX_FIELDS(shared_info_gfn_fields),
    },
    {
        .type = XKVM_CTX_EVTCHN_ABI, .name = "EVTCHN_ABI", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_evtchn_abi),
        .fields = XKVM_CTX_FIELDS(evtchn_abi_fields),
    },
    {
        .type = XKVM_CTX_EVTCHN_PORT, .name = "EVTCHN_PORT",
        .min_instance = 1, .max_instance = XKVM_CTX_EVTCHN_2L_PORTS - 1,
        .fixed_size = sizeof(struct xkvm_ctx_evtchn_port),
        .fields = XKVM_CTX_FIELDS(evtchn_port_fields),
        .validate = evtchn_port_validate,
    },
    {
        .type = XKVM_CTX_GNTTAB, .name = "GNTTAB", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_gnttab),
        .elem_size = sizeof(uint64_t),
        .max_length = sizeof(struct xkvm_ctx_gnttab) +
                      (XKVM_CTX_GNTTAB_MAX_FRAMES +
                       XKVM_CTX_GNTTAB_STATUS_FRAMES(XKVM_CTX_GNTTAB_MAX_FRAMES)) *
                      sizeof(uint64_t),
        .fields = XKVM_CTX_FIELDS(gnttab_fields),
        .elem_fields = XKVM_CTX_FIELDS(gnttab_elem_fields),
        .validate = gnttab_validate,
    },
    {
        .type = XKVM_CTX_GNTTAB_FRAME, .name = "GNTTAB_FRAME",
        .min_instance = 0, .max_instance = XKVM_CTX_GNTTAB_MAX_FRAMES - 1,
        .fixed_size = sizeof(struct xkvm_ctx_gnttab_frame),
        .fields = XKVM_CTX_FIELDS(gnttab_frame_fields),
        .dump = gnttab_frame_dump,
    },
    {
        .type = XKVM_CTX_HVM_PARAMS, .name = "HVM_PARAMS", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_hvm_params),
        .elem_size = sizeof(struct xkvm_ctx_hvm_param),
        .max_length = sizeof(struct xkvm_ctx_hvm_params) +
                      XKVM_CTX_HVM_NR_PARAMS * sizeof(struct xkvm_ctx_hvm_param),
        .fields = XKVM_CTX_FIELDS(hvm_params_fields),
        .elem_fields = XKVM_CTX_FIELDS(hvm_param_fields),
        .validate = hvm_params_validate,
    },
    {
        .type = XKVM_CTX_VCPU_STATE, .name = "VCPU_STATE", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_vcpu_state),
        .fields = XKVM_CTX_FIELDS(vcpu_state_fields),
        .validate = vcpu_state_validate,
    },
    {
        .type = XKVM_CTX_VCPU_INFO, .name = "VCPU_INFO", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_vcpu_info),
        .fields = XKVM_CTX_FIELDS(vcpu_info_fields),
        .validate = vcpu_info_validate,
    },
    {
        .type = XKVM_CTX_UPCALL, .name = "UPCALL", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_upcall),
        .fields = XKVM_CTX_FIELDS(upcall_fields),
        .validate = upcall_validate,
    },
    {
        .type = XKVM_CTX_TIMER, .name = "TIMER", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_timer),
        .fields = XKVM_CTX_FIELDS(timer_fields),
        .validate = timer_validate,
    },
    {
        .type = XKVM_CTX_TIME, .name = "TIME", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_time),
        .fields = XKVM_CTX_FIELDS(time_fields),
    },
    {
        .type = XKVM_CTX_RUNSTATE, .name = "RUNSTATE", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_runstate),
        .fields = XKVM_CTX_FIELDS(runstate_fields),
    },
    {
        .type = XKVM_CTX_HYPERCALL, .name = "HYPERCALL", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_hypercall),
        .fields = XKVM_CTX_FIELDS(hypercall_fields),
    },
    {
        .type = XKVM_CTX_VM_ASSIST, .name = "VM_ASSIST", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_vm_assist),
        .fields = XKVM_CTX_FIELDS(vm_assist_fields),
    },
    {
        .type = XKVM_CTX_VCPU_PLATFORM, .name = "VCPU_PLATFORM", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_vcpu_platform),
        .fields = XKVM_CTX_FIELDS(vcpu_platform_fields),
    },
    {
        .type = XKVM_CTX_ALTP2M, .name = "ALTP2M", .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_altp2m),
        .fields = XKVM_CTX_FIELDS(altp2m_fields),
    },
    {
        .type = XKVM_CTX_ALTP2M_VIEW, .name = "ALTP2M_VIEW",
        .min_instance = 0, .max_instance = XKVM_CTX_ALTP2M_MAX_VIEWS - 1,
        .fixed_size = sizeof(struct xkvm_ctx_altp2m_view),
        .elem_size = sizeof(struct xkvm_ctx_altp2m_entry),
        .max_length = sizeof(struct xkvm_ctx_altp2m_view) +
                      (uint64_t)(XKVM_CTX_ALTP2M_MAX_ACCESS + XKVM_CTX_ALTP2M_MAX_REMAPS) *
                      sizeof(struct xkvm_ctx_altp2m_entry),
        .fields = XKVM_CTX_FIELDS(altp2m_view_fields),
        .elem_fields = XKVM_CTX_FIELDS(altp2m_entry_fields),
        .validate = altp2m_view_validate,
    },
    {
        .type = XKVM_CTX_EVTCHN_FIFO_ARRAY, .name = "EVTCHN_FIFO_ARRAY",
        .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_evtchn_fifo_array),
        .elem_size = sizeof(uint64_t),
        .max_length = sizeof(struct xkvm_ctx_evtchn_fifo_array) +
                      XKVM_CTX_FIFO_MAX_PAGES * sizeof(uint64_t),
        .fields = XKVM_CTX_FIELDS(fifo_array_fields),
        .elem_fields = XKVM_CTX_FIELDS(fifo_array_elem_fields),
        .validate = fifo_array_validate,
    },
    {
        .type = XKVM_CTX_EVTCHN_FIFO_VCPU, .name = "EVTCHN_FIFO_VCPU", PER_VCPU,
        .fixed_size = sizeof(struct xkvm_ctx_evtchn_fifo_vcpu),
        .fields = XKVM_CTX_FIELDS(fifo_vcpu_fields),
        .validate = fifo_vcpu_validate,
        .dump = fifo_vcpu_dump,
    },
    {
        .type = XKVM_CTX_EVTCHN_FIFO_HELD, .name = "EVTCHN_FIFO_HELD",
        .flags = XKVM_CTX_TYPE_ONCE,
        .fixed_size = sizeof(struct xkvm_ctx_evtchn_fifo_held),
        .elem_size = sizeof(uint32_t),
        .max_length = sizeof(struct xkvm_ctx_evtchn_fifo_held) +
                      (XKVM_CTX_EVTCHN_2L_PORTS - 1) * sizeof(uint32_t),
        .fields = XKVM_CTX_FIELDS(fifo_held_fields),
        .elem_fields = XKVM_CTX_FIELDS(fifo_held_elem_fields),
        .validate = fifo_held_validate,
    },
};

const struct xkvm_ctx_registry xkvm_ctx_builtin_registry = {
    .types = builtin_types,
    .nr_types = sizeof(builtin_types) / sizeof(builtin_types[0]),
};
