/*
 * Domain context records (seed 004): the per-domain image of PV and hypervisor
 * state that save, migration and live update carry. Format and compatibility rules:
 * docs/domain-context.md.
 *
 * An image is a sequence of records, each
 *     u32 type; u32 instance; u64 length; u8 body[length]; zero padding to 8 bytes
 * in native endianness, starting with START and ending with END. Every record
 * layout below is the public, versioned format: change it only by adding types.
 *
 * Reading never copies bodies: a record's body points into the caller's buffer,
 * which must be 8-byte aligned (malloc'd memory is), so bodies can be cast to the
 * record structs below.
 */
#ifndef XKVM_CTX_H
#define XKVM_CTX_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

/* Records start, and bodies are padded, on this boundary. */
#define XKVM_CTX_ALIGN          8u

/*
 * Record types. 0..0xff follow Xen's numbering (Xen defined END, START,
 * SHARED_INFO and TSC_INFO; the rest of that range stays free for types Xen may
 * define). Types xkvm defines itself start at XKVM_CTX_XKVM_BASE.
 */
enum xkvm_ctx_type {
    XKVM_CTX_END            = 0,
    XKVM_CTX_START          = 1,
    XKVM_CTX_SHARED_INFO    = 2,
    XKVM_CTX_TSC_INFO       = 3,

    /*
     * xkvm's own types (docs/domain-context.md, "Numbering"):
     *   0x100..0x17f  domain PV state, written by save, migration and live update;
     *   0x180..0x1ff  reserved for live-update-only records (p2m extents, frame
     *                 ownership, dom0 grant mappings, preserved fds): not defined yet;
     *   0x200..0x2ff  FIFO event channels;
     *   0x300..       later groups (altp2m views...).
     */
    XKVM_CTX_XKVM_BASE      = 0x100,
    XKVM_CTX_DOMAIN         = 0x100,    /* once: domid, number of vCPUs */
    XKVM_CTX_SHARED_INFO_GFN = 0x101,   /* once: where shared_info is mapped */
    XKVM_CTX_EVTCHN_ABI     = 0x102,    /* once: 2-level or FIFO */
    XKVM_CTX_EVTCHN_PORT    = 0x103,    /* per bound port */
    XKVM_CTX_GNTTAB         = 0x104,    /* once: version, frames and their gfns */
    XKVM_CTX_GNTTAB_FRAME   = 0x105,    /* per grant frame: its contents */
    XKVM_CTX_HVM_PARAMS     = 0x106,    /* once: (index, value) pairs */
    XKVM_CTX_VCPU_STATE     = 0x107,    /* per vCPU: initialised/up/halted */
    XKVM_CTX_VCPU_INFO      = 0x108,    /* per vCPU: vcpu_info placement */
    XKVM_CTX_UPCALL         = 0x109,    /* per vCPU: upcall vector */
    XKVM_CTX_TIMER          = 0x10a,    /* per vCPU: singleshot and periodic timers */
    XKVM_CTX_TIME           = 0x10b,    /* once: system time and wall clock at save */
    XKVM_CTX_RUNSTATE       = 0x10c,    /* per vCPU: runstate area and accounting */
    XKVM_CTX_HYPERCALL      = 0x10d,    /* once, optional: how the guest calls Xen */
    XKVM_CTX_VM_ASSIST      = 0x110,    /* once: vm_assist types the guest enabled */
    XKVM_CTX_VCPU_PLATFORM  = 0x111,    /* per vCPU: KVM mp_state, time area */
    XKVM_CTX_ALTP2M         = 0x112,    /* once, optional: altp2m mode, state, view */
    XKVM_CTX_ALTP2M_VIEW    = 0x113,    /* per altp2m view: its differences */
    XKVM_CTX_PV_LAST        = 0x17f,
    XKVM_CTX_LIVE_UPDATE_BASE = 0x180,  /* reserved, see above */
    XKVM_CTX_LIVE_UPDATE_LAST = 0x1ff,
    /* FIFO event channels (docs/domain-context.md): with EVTCHN_ABI 1 only. */
    XKVM_CTX_EVTCHN_FIFO_ARRAY = 0x200, /* once: the event array pages' gfns */
    XKVM_CTX_EVTCHN_FIFO_VCPU  = 0x201, /* per vCPU with a control block: it, queue tails */
    XKVM_CTX_EVTCHN_FIFO_HELD  = 0x202, /* once, optional: ports pending with no word */
    XKVM_CTX_FIFO_LAST         = 0x2ff,
    /*
     * Never in an image: tests, fuzzers and benchmarks that extend a registry with
     * their own types number them from here, so they never collide with real ones.
     */
    XKVM_CTX_TEST_BASE      = 0x7fff0000,
};

struct xkvm_ctx_record_header {
    uint32_t type;
    uint32_t instance;
    uint64_t length;            /* of the body, padding excluded */
};
_Static_assert(sizeof(struct xkvm_ctx_record_header) == 16, "record header layout");

/* START (type 1, instance 0): the xkvm version that wrote the image. */
struct xkvm_ctx_start {
    uint32_t major;
    uint32_t minor;
};
_Static_assert(sizeof(struct xkvm_ctx_start) == 8, "START layout");

/* END (type 0, instance 0): empty body. */

/*
 * SHARED_INFO (type 2, instance 0): the domain's shared_info page.
 * buffer_size bytes of page contents follow the fixed part; length is exactly
 * 8 + buffer_size, buffer_size <= XKVM_CTX_SHARED_INFO_MAX.
 */
struct xkvm_ctx_shared_info {
    uint32_t flags;             /* XKVM_CTX_SHARED_INFO_* */
    uint32_t buffer_size;
    uint8_t buffer[];
};
#define XKVM_CTX_SHARED_INFO_HAS_32BIT_LAYOUT   (1u << 0)
#define XKVM_CTX_SHARED_INFO_MAX                4096u
_Static_assert(sizeof(struct xkvm_ctx_shared_info) == 8, "SHARED_INFO layout");
_Static_assert(offsetof(struct xkvm_ctx_shared_info, buffer) == 8, "SHARED_INFO layout");

/* TSC_INFO (type 3, instance 0): the domain's TSC mode and scaling. */
struct xkvm_ctx_tsc_info {
    uint32_t mode;              /* XKVM_CTX_TSC_MODE_* */
    uint32_t khz;
    uint64_t nsec;              /* elapsed ns the guest TSC is offset by */
    uint32_t incarnation;
    uint32_t pad;               /* must be zero */
};
enum {
    XKVM_CTX_TSC_MODE_DEFAULT        = 0,
    XKVM_CTX_TSC_MODE_ALWAYS_EMULATE = 1,
    XKVM_CTX_TSC_MODE_NEVER_EMULATE  = 2,
};
_Static_assert(sizeof(struct xkvm_ctx_tsc_info) == 24, "TSC_INFO layout");
_Static_assert(offsetof(struct xkvm_ctx_tsc_info, nsec) == 8, "TSC_INFO layout");
_Static_assert(alignof(struct xkvm_ctx_tsc_info) <= XKVM_CTX_ALIGN, "TSC_INFO alignment");

/* ---- xkvm PV state records (types 0x100..) -------------------------------------
 * Minimal, version-independent state: what the guest can observe, never xkvmd's
 * internal layouts. Per-vCPU types use instance = vCPU id; EVTCHN_PORT instance =
 * port; GNTTAB_FRAME instance = frame index. Every field is checked on read and
 * write by the field tables in src/ctx/ctx_types.c; the rules that span records are
 * in xkvm_ctx_check_image().
 */

#define XKVM_CTX_PAGE_SIZE          4096u
#define XKVM_CTX_GFN_NONE           UINT64_MAX          /* "not mapped" */
#define XKVM_CTX_GFN_MAX            ((1ull << 40) - 1)  /* 52-bit guest-physical */
#define XKVM_CTX_MAX_VCPUS          4096u               /* vCPU ids are below this */
#define XKVM_CTX_DOMID_MAX          0x7fefu             /* DOMID_FIRST_RESERVED - 1 */
#define XKVM_CTX_EVTCHN_2L_PORTS    4096u               /* 64-bit 2-level ABI */
#define XKVM_CTX_NR_VIRQS           24u                 /* Xen's NR_VIRQS */
#define XKVM_CTX_GNTTAB_MAX_FRAMES  4096u
#define XKVM_CTX_HVM_NR_PARAMS      39u                 /* Xen's HVM_NR_PARAMS */
#define XKVM_CTX_LEGACY_MAX_VCPUS   32u                 /* vcpu_info slots in shared_info */
#define XKVM_CTX_VCPU_INFO_SIZE     64u                 /* sizeof(struct vcpu_info), x86-64 */

/* DOMAIN (0x100, once): required in any image with another xkvm PV record. */
struct xkvm_ctx_domain {
    uint16_t domid;             /* 1..XKVM_CTX_DOMID_MAX (0 is dom0: the services) */
    uint16_t pad;
    uint32_t nr_vcpus;          /* 1..XKVM_CTX_MAX_VCPUS: per-vCPU instances are below */
};
_Static_assert(sizeof(struct xkvm_ctx_domain) == 8, "DOMAIN layout");

/* SHARED_INFO_GFN (0x101, once): where the guest mapped shared_info. */
struct xkvm_ctx_shared_info_gfn {
    uint64_t gfn;               /* XKVM_CTX_GFN_NONE: not mapped */
};
_Static_assert(sizeof(struct xkvm_ctx_shared_info_gfn) == 8, "SHARED_INFO_GFN layout");

/* EVTCHN_ABI (0x102, once): absent means 2-level, Xen's default. */
struct xkvm_ctx_evtchn_abi {
    uint32_t abi;               /* XKVM_CTX_EVTCHN_ABI_* */
    uint32_t pad;
};
enum {
    XKVM_CTX_EVTCHN_ABI_2L   = 0,
    XKVM_CTX_EVTCHN_ABI_FIFO = 1,   /* with EVTCHN_FIFO_* records */
};
_Static_assert(sizeof(struct xkvm_ctx_evtchn_abi) == 8, "EVTCHN_ABI layout");

/*
 * EVTCHN_PORT (0x103, instance = port, 1..4095): one bound port. Pending and mask
 * bits are not here: they live where the ABI puts them (2-level: the shared_info
 * page, carried by SHARED_INFO), so there is exactly one copy of them.
 */
struct xkvm_ctx_evtchn_port {
    uint8_t state;              /* XKVM_CTX_EVTCHN_STATE_* */
    uint8_t priority;           /* FIFO priority 0..15; 2-level: ..._PRIORITY_DEFAULT */
    uint16_t notify_vcpu;
    uint16_t remote_domid;      /* UNBOUND: who may bind; INTERDOMAIN: the peer (0: dom0 service) */
    uint16_t pad;
    uint32_t remote_port;       /* INTERDOMAIN only, else 0 */
    uint32_t virq;              /* VIRQ only, else 0 */
};
enum {
    XKVM_CTX_EVTCHN_STATE_UNBOUND     = 1,
    XKVM_CTX_EVTCHN_STATE_INTERDOMAIN = 2,
    XKVM_CTX_EVTCHN_STATE_VIRQ        = 3,
    XKVM_CTX_EVTCHN_STATE_IPI         = 4,
};
#define XKVM_CTX_EVTCHN_PRIORITY_DEFAULT 7u     /* EVTCHN_FIFO_PRIORITY_DEFAULT */
_Static_assert(sizeof(struct xkvm_ctx_evtchn_port) == 16, "EVTCHN_PORT layout");
_Static_assert(offsetof(struct xkvm_ctx_evtchn_port, remote_port) == 8, "EVTCHN_PORT layout");

/*
 * GNTTAB (0x104, once): the grant table's version and its shared frames; frame i is
 * mapped by the guest at frame_gfn[i] (XKVM_CTX_GFN_NONE: not mapped). In version 2
 * the gfns of the XKVM_CTX_GNTTAB_STATUS_FRAMES(nr_frames) status frames follow
 * (frame_gfn[nr_frames + j] for status frame j); their contents are not carried (no
 * grant is pinned on arrival). Length is exactly 8 + 8 * (nr_frames + status frames).
 * Frame contents follow as GNTTAB_FRAME records.
 */
#define XKVM_CTX_GNTTAB_STATUS_FRAMES(nr_frames) (((nr_frames) * 256u + 2047u) / 2048u)
struct xkvm_ctx_gnttab {
    uint32_t version;           /* 1 or 2 */
    uint32_t nr_frames;         /* 1..XKVM_CTX_GNTTAB_MAX_FRAMES */
    uint64_t frame_gfn[];
};
_Static_assert(sizeof(struct xkvm_ctx_gnttab) == 8, "GNTTAB layout");

/* GNTTAB_FRAME (0x105, instance = frame index < nr_frames): one shared frame's bytes. */
struct xkvm_ctx_gnttab_frame {
    uint8_t data[XKVM_CTX_PAGE_SIZE];
};

/*
 * HVM_PARAMS (0x106, once): the parameters a restore must set, as in the libxc
 * stream's HVM_PARAMS record. Sorted by index, no duplicates, index < 39, retired
 * parameters refused; length is exactly 8 + 16 * count.
 */
struct xkvm_ctx_hvm_param {
    uint64_t index;
    uint64_t value;
};
struct xkvm_ctx_hvm_params {
    uint32_t count;
    uint32_t pad;
    struct xkvm_ctx_hvm_param params[];
};
_Static_assert(sizeof(struct xkvm_ctx_hvm_params) == 8, "HVM_PARAMS layout");

/*
 * The parameters Xen retired (params.h: 4 PAE_ENABLED, 13 DM_DOMAIN, 20-23, 25 and 30
 * MEMORY_EVENT_*, kept only under __XEN_TOOLS__ for old tools): nothing sets them, no image
 * or stream carries them, a reader refuses them. The one list: the ctx checker and
 * xkvmd's savers (stream, live update, domain context) all ask here.
 */
static inline bool xkvm_ctx_hvm_param_retired(uint64_t index)
{
    switch (index) {
    case 4: case 13: case 20: case 21: case 22: case 23: case 25: case 30:
        return true;
    default:
        return false;
    }
}

/*
 * VCPU_STATE (0x107, per vCPU): what Xen's HVM_CONTEXT does not carry. UP needs
 * INITIALISED; HALTED (blocked in SCHEDOP_block: KVM's HLT state) needs UP.
 */
struct xkvm_ctx_vcpu_state {
    uint32_t flags;             /* XKVM_CTX_VCPU_* */
    uint32_t pad;
};
#define XKVM_CTX_VCPU_INITIALISED   (1u << 0)   /* has a context (VCPUOP_initialise...) */
#define XKVM_CTX_VCPU_UP            (1u << 1)   /* runs (VCPUOP_up, not VCPUOP_down) */
#define XKVM_CTX_VCPU_HALTED        (1u << 2)   /* blocked in SCHEDOP_block */
_Static_assert(sizeof(struct xkvm_ctx_vcpu_state) == 8, "VCPU_STATE layout");

/*
 * VCPU_INFO (0x108, per vCPU): where the vCPU's vcpu_info lives. Its contents are
 * not here: the legacy slot is in the shared_info page (SHARED_INFO), a registered
 * one is in the frame at gfn (guest memory, or a shared_info/grant frame).
 */
struct xkvm_ctx_vcpu_info {
    uint32_t placement;         /* XKVM_CTX_VCPU_INFO_* */
    uint32_t offset;            /* REGISTERED: in the page, 8-aligned, <= 4096 - 64; else 0 */
    uint64_t gfn;               /* REGISTERED: the page; else XKVM_CTX_GFN_NONE */
};
enum {
    XKVM_CTX_VCPU_INFO_NONE       = 0,  /* vCPU id >= 32, never registered */
    XKVM_CTX_VCPU_INFO_SHARED     = 1,  /* the legacy slot in shared_info (id < 32) */
    XKVM_CTX_VCPU_INFO_REGISTERED = 2,  /* VCPUOP_register_vcpu_info */
};
_Static_assert(sizeof(struct xkvm_ctx_vcpu_info) == 16, "VCPU_INFO layout");

/* UPCALL (0x109, per vCPU): HVMOP_set_evtchn_upcall_vector; 0 = none, else 16..255. */
struct xkvm_ctx_upcall {
    uint32_t vector;
    uint32_t pad;
};
_Static_assert(sizeof(struct xkvm_ctx_upcall) == 8, "UPCALL layout");

/* TIMER (0x10a, per vCPU): in Xen system time (ns); 0 = not set. */
struct xkvm_ctx_timer {
    uint64_t singleshot_deadline;
    uint64_t periodic_period;   /* 0, or 1 ms .. 2^62 - 1 ns (VCPUOP_set_periodic_timer) */
};
_Static_assert(sizeof(struct xkvm_ctx_timer) == 16, "TIMER layout");

/*
 * TIME (0x10b, once): the instant the image was taken, in the guest's Xen system
 * time and the host's wall clock (CLOCK_REALTIME, ns since the epoch). A restore
 * starts the guest's system time at system_time_ns plus the wall-clock time that
 * passed since (never less), so guest time never goes backwards and timers keep
 * their deadlines.
 */
struct xkvm_ctx_time {
    uint64_t system_time_ns;
    uint64_t wallclock_ns;
};
_Static_assert(sizeof(struct xkvm_ctx_time) == 16, "TIME layout");

/*
 * RUNSTATE (0x10c, per vCPU): VCPUOP_register_runstate_memory_area's guest-linear
 * address (0: none) and the accounting so far, in Xen system time, so that the times
 * the guest reads keep growing from where they were.
 */
struct xkvm_ctx_runstate {
    uint64_t area;              /* guest-linear address of the area, 0 none */
    uint32_t state;             /* RUNSTATE_running..offline: 0..3 */
    uint32_t pad;
    uint64_t state_entry_time;
    uint64_t time[4];           /* ns running, runnable, blocked, offline */
};
_Static_assert(sizeof(struct xkvm_ctx_runstate) == 56, "RUNSTATE layout");

/*
 * HYPERCALL (0x10d, once, optional): how the guest has called Xen. Written only when
 * a flag is set (absent: none), so an image of a guest that never used VMCALL still
 * loads on a reader that predates the type.
 */
struct xkvm_ctx_hypercall {
    uint32_t flags;             /* XKVM_CTX_HYPERCALL_* */
    uint32_t pad;
};
_Static_assert(sizeof(struct xkvm_ctx_hypercall) == 8, "HYPERCALL layout");
/* The guest has issued VMCALL/VMMCALL: it runs only where KVM intercepts them. */
#define XKVM_CTX_HYPERCALL_VMCALL   (1u << 0)

/*
 * FIFO event channels (EVTCHN_ABI 1). The event words and the control blocks are guest
 * RAM and travel with it; these records hold where they are and what Xen keeps in the
 * hypervisor: each queue's tail, and ports raised before their event word existed.
 */
#define XKVM_CTX_FIFO_MAX_PAGES     128u    /* EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES */
#define XKVM_CTX_FIFO_QUEUES        16u     /* EVTCHN_FIFO_MAX_QUEUES */
#define XKVM_CTX_FIFO_CB_SIZE       72u     /* sizeof(struct evtchn_fifo_control_block) */

/* EVTCHN_FIFO_ARRAY (0x200, once): length exactly 8 + 8 * nr_pages. */
struct xkvm_ctx_evtchn_fifo_array {
    uint32_t nr_pages;          /* 0..XKVM_CTX_FIFO_MAX_PAGES, in EXPAND_ARRAY order */
    uint32_t pad;
    uint64_t page_gfn[];        /* page i holds the words of ports 1024 i .. 1024 i + 1023 */
};
_Static_assert(sizeof(struct xkvm_ctx_evtchn_fifo_array) == 8, "EVTCHN_FIFO_ARRAY layout");

/* EVTCHN_FIFO_VCPU (0x201, instance = vCPU id): EVTCHNOP_init_control's block. */
struct xkvm_ctx_evtchn_fifo_vcpu {
    uint64_t control_gfn;
    uint32_t offset;            /* 8-aligned, <= 4096 - 72 */
    uint32_t pad;
    uint32_t tail[XKVM_CTX_FIFO_QUEUES];    /* per priority: last port linked, 0 none */
};
_Static_assert(sizeof(struct xkvm_ctx_evtchn_fifo_vcpu) == 80, "EVTCHN_FIFO_VCPU layout");

/* EVTCHN_FIFO_HELD (0x202, once): length exactly 8 + 4 * nr_ports, padded to 8. */
struct xkvm_ctx_evtchn_fifo_held {
    uint32_t nr_ports;
    uint32_t pad;
    uint32_t port[];            /* ascending, each bound and beyond the event array */
};
_Static_assert(sizeof(struct xkvm_ctx_evtchn_fifo_held) == 8, "EVTCHN_FIFO_HELD layout");

/* Bytes a record with a body of `length` occupies, header and padding included. */
static inline uint64_t xkvm_ctx_record_size(uint64_t length)
{
    return sizeof(struct xkvm_ctx_record_header) +
           ((length + XKVM_CTX_ALIGN - 1) & ~(uint64_t)(XKVM_CTX_ALIGN - 1));
}

/* ---- Errors ------------------------------------------------------------------ */

enum xkvm_ctx_errcode {
    XKVM_CTX_OK = 0,
    XKVM_CTX_ERR_MISALIGNED,        /* buffer not 8-byte aligned */
    XKVM_CTX_ERR_TRUNCATED,         /* record header cut short */
    XKVM_CTX_ERR_LENGTH_OVERFLOW,   /* length + padding overflows */
    XKVM_CTX_ERR_LENGTH_PAST_END,   /* body or padding runs past the buffer */
    XKVM_CTX_ERR_PADDING,           /* non-zero padding byte */
    XKVM_CTX_ERR_UNKNOWN_TYPE,
    XKVM_CTX_ERR_MISSING_START,
    XKVM_CTX_ERR_START_NOT_FIRST,
    XKVM_CTX_ERR_DUPLICATE_START,
    XKVM_CTX_ERR_MISSING_END,
    XKVM_CTX_ERR_AFTER_END,         /* writer: record after END */
    XKVM_CTX_ERR_VERSION,           /* START major differs from ours */
    XKVM_CTX_ERR_INSTANCE,          /* instance not allowed for this type */
    XKVM_CTX_ERR_DUPLICATE,         /* a once-per-image type seen twice */
    XKVM_CTX_ERR_BAD_LENGTH,        /* body length does not fit the type's layout */
    XKVM_CTX_ERR_RESERVED,          /* reserved field or unknown flag bits set */
    XKVM_CTX_ERR_BAD_VALUE,         /* field value out of range / type's own check */
    XKVM_CTX_ERR_IO,                /* writer: sink failed (errno in err->sys_errno) */
    XKVM_CTX_ERR_NOMEM,
    XKVM_CTX_ERR_REGISTRY,          /* registry too large or unsorted */
    XKVM_CTX_ERR_MISSING_RECORD,    /* image check: a record another one needs is absent */
    XKVM_CTX_ERR_INCONSISTENT,      /* image check: records contradict each other */
};

struct xkvm_ctx_error {
    enum xkvm_ctx_errcode code;
    uint64_t offset;                /* of the record header (or of the end of the image) */
    bool type_known;                /* false if the header was too short to hold a type */
    uint32_t type;
    int sys_errno;                  /* XKVM_CTX_ERR_IO only */
    char reason[192];               /* e.g. "padding byte 13 is 0x01, must be zero" */
    char msg[320];                  /* "offset 40, type 2 (SHARED_INFO): <reason>" */
};

/* Short stable identifier of a code, e.g. "padding" (used in JSON output). */
const char *xkvm_ctx_errcode_name(enum xkvm_ctx_errcode code);

/* ---- Record type registry ---------------------------------------------------- */

/*
 * Each type's body is a fixed part, optionally followed by an array of elements:
 *   elem_size == 0: length == fixed_size exactly;
 *   elem_size != 0: length == fixed_size + n * elem_size, n >= 0,
 *                   and length <= max_length when max_length != 0.
 * Fields describe both parts. Together they must cover every byte (the unit tests
 * check that), so no byte of a record escapes validation and dump.
 */
enum xkvm_ctx_field_kind {
    XKVM_CTX_FIELD_UINT,            /* unsigned, dumped in decimal */
    XKVM_CTX_FIELD_HEX,             /* unsigned, dumped in hex */
    XKVM_CTX_FIELD_FLAGS,           /* bits outside `allowed` must be zero */
    XKVM_CTX_FIELD_ENUM,            /* value < nr_names; dumped with its name */
    XKVM_CTX_FIELD_RESERVED,        /* any size; every byte must be zero */
    XKVM_CTX_FIELD_BYTES,           /* any size; opaque, dumped as hex */
    XKVM_CTX_FIELD_RANGE,           /* unsigned, min <= value <= max; dumped in decimal */
    XKVM_CTX_FIELD_GFN,             /* u64 frame number <= XKVM_CTX_GFN_MAX, or GFN_NONE */
};

struct xkvm_ctx_field {
    const char *name;
    uint32_t offset;
    uint32_t size;                  /* 1, 2, 4 or 8 for numeric kinds */
    enum xkvm_ctx_field_kind kind;
    uint64_t allowed;               /* FLAGS */
    const char *const *names;       /* ENUM: value names; FLAGS: bit names (optional) */
    uint32_t nr_names;              /* ENUM, FLAGS */
    uint64_t min, max;              /* RANGE */
};

#define XKVM_CTX_MEMBER_SIZE(st, m) ((uint32_t)sizeof(((st *)0)->m))
#define XKVM_CTX_FIELD_OF(st, m, k) \
    { .name = #m, .offset = offsetof(st, m), .size = XKVM_CTX_MEMBER_SIZE(st, m), .kind = (k) }
#define XKVM_CTX_F_UINT(st, m)      XKVM_CTX_FIELD_OF(st, m, XKVM_CTX_FIELD_UINT)
#define XKVM_CTX_F_HEX(st, m)       XKVM_CTX_FIELD_OF(st, m, XKVM_CTX_FIELD_HEX)
#define XKVM_CTX_F_RESERVED(st, m)  XKVM_CTX_FIELD_OF(st, m, XKVM_CTX_FIELD_RESERVED)
#define XKVM_CTX_F_BYTES(st, m)     XKVM_CTX_FIELD_OF(st, m, XKVM_CTX_FIELD_BYTES)
#define XKVM_CTX_F_FLAGS(st, m, ok) \
    { .name = #m, .offset = offsetof(st, m), .size = XKVM_CTX_MEMBER_SIZE(st, m), \
      .kind = XKVM_CTX_FIELD_FLAGS, .allowed = (ok) }
#define XKVM_CTX_F_FLAGS_NAMED(st, m, ok, nm) \
    { .name = #m, .offset = offsetof(st, m), .size = XKVM_CTX_MEMBER_SIZE(st, m), \
      .kind = XKVM_CTX_FIELD_FLAGS, .allowed = (ok), .names = (nm), \
      .nr_names = sizeof(nm) / sizeof((nm)[0]) }
#define XKVM_CTX_F_ENUM(st, m, nm) \
    { .name = #m, .offset = offsetof(st, m), .size = XKVM_CTX_MEMBER_SIZE(st, m), \
      .kind = XKVM_CTX_FIELD_ENUM, .names = (nm), .nr_names = sizeof(nm) / sizeof((nm)[0]) }
#define XKVM_CTX_F_RANGE(st, m, lo, hi) \
    { .name = #m, .offset = offsetof(st, m), .size = XKVM_CTX_MEMBER_SIZE(st, m), \
      .kind = XKVM_CTX_FIELD_RANGE, .min = (lo), .max = (hi) }
#define XKVM_CTX_F_GFN(st, m)       XKVM_CTX_FIELD_OF(st, m, XKVM_CTX_FIELD_GFN)
#define XKVM_CTX_FIELDS(arr)        (arr), (uint32_t)(sizeof(arr) / sizeof((arr)[0]))

/*
 * VM_ASSIST (0x110, once): the vm_assist types the guest turned on (bit n: type n).
 * An HVM guest may only have VMASST_TYPE_runstate_update_flag (5). Absent: none.
 */
struct xkvm_ctx_vm_assist {
    uint32_t types;
    uint32_t pad;
};
#define XKVM_CTX_VMASST_RUNSTATE_UPDATE_FLAG (1u << 5)
_Static_assert(sizeof(struct xkvm_ctx_vm_assist) == 8, "VM_ASSIST layout");

/*
 * ALTP2M (0x112, once, optional; docs/altp2m.md): HVM_PARAM_ALTP2M's mode (0..3), whether
 * altp2m is on, and the active view (domain-wide: every vCPU's). Absent: off.
 */
struct xkvm_ctx_altp2m {
    uint8_t mode;
    uint8_t state;
    uint16_t active;
    uint32_t pad;
};
_Static_assert(sizeof(struct xkvm_ctx_altp2m) == 8, "ALTP2M layout");
#define XKVM_CTX_ALTP2M_MAX_VIEWS   10u
#define XKVM_CTX_ALTP2M_MAX_REMAPS  1024u
#define XKVM_CTX_ALTP2M_MAX_ACCESS  (1u << 22)

/*
 * ALTP2M_VIEW (0x113, instance = view index 0..9): a view as it differs from the host
 * p2m. nr_access (gfn, access) entries, sorted by gfn, for the gfns whose access is not
 * the view's default; then nr_remaps (gfn, target gfn) entries, sorted by gfn: the view
 * shows target's host frame at gfn. Accesses are xenmem_access_t values 0 (n), 5 (rx),
 * 7 (rwx); no suppress-#VE bits (KVM has no #VE: they are all Xen's default, set).
 */
struct xkvm_ctx_altp2m_entry {
    uint64_t gfn;
    uint64_t value;
};
struct xkvm_ctx_altp2m_view {
    uint8_t default_access;
    uint8_t visible;
    uint16_t pad;
    uint32_t nr_remaps;
    uint64_t nr_access;
    struct xkvm_ctx_altp2m_entry entries[];
};
_Static_assert(sizeof(struct xkvm_ctx_altp2m_view) == 16, "ALTP2M_VIEW layout");

/*
 * VCPU_PLATFORM (0x111, per vCPU): what KVM's INIT/SIPI bring-up and Linux's vDSO
 * leave per vCPU. mp_state in KVM's numbering: a secondary vCPU still waiting for
 * INIT/SIPI (UNINITIALIZED, INIT_RECEIVED) must come back waiting; one started by SIPI
 * runs on. time_area: VCPUOP_register_vcpu_time_memory_area's guest-linear address,
 * 0 none. Absent (older images): mp_state follows VCPU_STATE, no time area.
 */
struct xkvm_ctx_vcpu_platform {
    uint32_t mp_state;          /* XKVM_CTX_MP_* */
    uint32_t intr_state;        /* XKVM_CTX_INTR_*: what blocks or awaits delivery */
    uint64_t time_area;
};
/* intr_state: the interrupt shadow (one instruction after STI or MOV SS during which
 * no interrupt is taken: `sti; hlt` relies on it) and the NMI state, which Xen's CPU
 * record does not carry. */
#define XKVM_CTX_INTR_SHADOW_STI    (1u << 0)
#define XKVM_CTX_INTR_SHADOW_MOV_SS (1u << 1)
#define XKVM_CTX_INTR_NMI_MASKED    (1u << 2)   /* in an NMI handler, before its IRET */
#define XKVM_CTX_INTR_NMI_PENDING   (1u << 3)
#define XKVM_CTX_INTR_NMI_INJECTED  (1u << 4)
#define XKVM_CTX_INTR_ALL           0x1fu
enum {
    XKVM_CTX_MP_RUNNABLE      = 0,
    XKVM_CTX_MP_UNINITIALIZED = 1,
    XKVM_CTX_MP_INIT_RECEIVED = 2,
    XKVM_CTX_MP_HALTED        = 3,
};
_Static_assert(sizeof(struct xkvm_ctx_vcpu_platform) == 16, "VCPU_PLATFORM layout");

struct xkvm_ctx_record;
struct xkvm_ctx_dumper;

/* Type flags */
#define XKVM_CTX_TYPE_ONCE  (1u << 0)   /* at most one per image, instance 0 */

struct xkvm_ctx_type_desc {
    uint32_t type;
    const char *name;
    uint32_t flags;                         /* XKVM_CTX_TYPE_* */
    /* Per-instance types: instance must be in [min_instance, max_instance] when
     * max_instance != 0 (e.g. vCPU ids, port numbers). */
    uint32_t min_instance, max_instance;
    uint64_t fixed_size;
    uint64_t elem_size;                     /* 0: fixed-size body */
    uint64_t max_length;                    /* 0: no limit but the buffer */
    const struct xkvm_ctx_field *fields;    /* of the fixed part */
    uint32_t nr_fields;
    const struct xkvm_ctx_field *elem_fields; /* of each element, offsets within it */
    uint32_t nr_elem_fields;
    /* Checks beyond the field table; NULL if none. Runs after the table checks. */
    int (*validate)(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err);
    /* Extra dump output beyond the fields (e.g. a digest of opaque data); NULL if none. */
    void (*dump)(const struct xkvm_ctx_record *rec, struct xkvm_ctx_dumper *d);
};

/* A registry: types sorted by type number, at most XKVM_CTX_MAX_TYPES of them. */
#define XKVM_CTX_MAX_TYPES 256
struct xkvm_ctx_registry {
    const struct xkvm_ctx_type_desc *types;
    size_t nr_types;
};

/* The record types this build of xkvm knows. */
extern const struct xkvm_ctx_registry xkvm_ctx_builtin_registry;

const struct xkvm_ctx_type_desc *
xkvm_ctx_lookup(const struct xkvm_ctx_registry *reg, uint32_t type);

/*
 * Check a record's body against its type: layout length, field table, the type's
 * own validator. Returns 0, or -1 with err filled. rec->desc must be set.
 */
int xkvm_ctx_validate_body(const struct xkvm_ctx_record *rec, struct xkvm_ctx_error *err);

/* Fill err for a record (type validators use this). Always returns -1. */
int xkvm_ctx_fail(struct xkvm_ctx_error *err, const struct xkvm_ctx_record *rec,
                  enum xkvm_ctx_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- Reading ----------------------------------------------------------------- */

struct xkvm_ctx_record {
    uint64_t offset;                /* of the record header in the image */
    uint32_t type;
    uint32_t instance;
    uint64_t length;
    const void *body;               /* points into the image; 8-byte aligned */
    const struct xkvm_ctx_type_desc *desc;
};

struct xkvm_ctx_reader {
    const uint8_t *buf;
    size_t size;
    size_t pos;                     /* next record; after END: bytes the image occupied */
    const struct xkvm_ctx_registry *registry;
    uint32_t our_major;             /* START major that is accepted (ours by default) */
    uint32_t major, minor;          /* from START, once read */
    unsigned nr_records;
    bool started, ended, failed;
    uint64_t once_seen[XKVM_CTX_MAX_TYPES / 64];
    struct xkvm_ctx_error err;
};

/* registry NULL: xkvm_ctx_builtin_registry. */
void xkvm_ctx_reader_init(struct xkvm_ctx_reader *r, const void *buf, size_t size,
                          const struct xkvm_ctx_registry *registry);

/*
 * Next record, START and END included. Returns 1 with *rec filled, 0 once END has
 * been returned (r->pos is then the image's size; bytes after it are not looked
 * at), -1 on a malformed image (r->err). Errors are sticky.
 */
int xkvm_ctx_next(struct xkvm_ctx_reader *r, struct xkvm_ctx_record *rec);

struct xkvm_ctx_summary {
    unsigned nr_records;            /* START and END included */
    size_t used;                    /* bytes the image occupies (END included) */
    uint32_t major, minor;          /* of the writer */
};

/* Walk and validate a whole image. 0 or -1 with err filled. */
int xkvm_ctx_verify(const void *buf, size_t size, const struct xkvm_ctx_registry *registry,
                    struct xkvm_ctx_summary *sum, struct xkvm_ctx_error *err);

/*
 * xkvm_ctx_verify() plus the rules that span records (docs/domain-context.md,
 * "Image-level rules"): no duplicate (type, instance); DOMAIN present when other PV
 * records are, and vCPU ids below its nr_vcpus; SHARED_INFO (a full page) present
 * when ports are; ports bound to their own domain paired both ways; a VIRQ bound
 * once; every grant frame's contents present, and none beyond nr_frames. The error
 * names the record that breaks a rule. Consumers restoring an image call this, not
 * just xkvm_ctx_verify().
 */
int xkvm_ctx_check_image(const void *buf, size_t size,
                         const struct xkvm_ctx_registry *registry,
                         struct xkvm_ctx_summary *sum, struct xkvm_ctx_error *err);

/*
 * Typed access to a record's body: the body as its struct if rec has that type,
 * else NULL. rec must come from a reader (so the body has been validated).
 */
#define XKVM_CTX_ACCESSOR(fn, TYPE, st)                                              \
    static inline const st *fn(const struct xkvm_ctx_record *rec)                   \
    {                                                                                \
        return rec->type == (TYPE) ? (const st *)rec->body : NULL;                   \
    }
XKVM_CTX_ACCESSOR(xkvm_ctx_get_tsc_info, XKVM_CTX_TSC_INFO, struct xkvm_ctx_tsc_info)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_shared_info, XKVM_CTX_SHARED_INFO, struct xkvm_ctx_shared_info)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_domain, XKVM_CTX_DOMAIN, struct xkvm_ctx_domain)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_shared_info_gfn, XKVM_CTX_SHARED_INFO_GFN,
                  struct xkvm_ctx_shared_info_gfn)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_evtchn_abi, XKVM_CTX_EVTCHN_ABI, struct xkvm_ctx_evtchn_abi)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_evtchn_port, XKVM_CTX_EVTCHN_PORT, struct xkvm_ctx_evtchn_port)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_gnttab, XKVM_CTX_GNTTAB, struct xkvm_ctx_gnttab)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_gnttab_frame, XKVM_CTX_GNTTAB_FRAME,
                  struct xkvm_ctx_gnttab_frame)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_hvm_params, XKVM_CTX_HVM_PARAMS, struct xkvm_ctx_hvm_params)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_vcpu_state, XKVM_CTX_VCPU_STATE, struct xkvm_ctx_vcpu_state)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_vcpu_info, XKVM_CTX_VCPU_INFO, struct xkvm_ctx_vcpu_info)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_upcall, XKVM_CTX_UPCALL, struct xkvm_ctx_upcall)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_timer, XKVM_CTX_TIMER, struct xkvm_ctx_timer)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_time, XKVM_CTX_TIME, struct xkvm_ctx_time)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_runstate, XKVM_CTX_RUNSTATE, struct xkvm_ctx_runstate)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_vm_assist, XKVM_CTX_VM_ASSIST, struct xkvm_ctx_vm_assist)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_altp2m, XKVM_CTX_ALTP2M, struct xkvm_ctx_altp2m)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_altp2m_view, XKVM_CTX_ALTP2M_VIEW, struct xkvm_ctx_altp2m_view)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_vcpu_platform, XKVM_CTX_VCPU_PLATFORM,
                  struct xkvm_ctx_vcpu_platform)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_hypercall, XKVM_CTX_HYPERCALL, struct xkvm_ctx_hypercall)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_evtchn_fifo_array, XKVM_CTX_EVTCHN_FIFO_ARRAY,
                  struct xkvm_ctx_evtchn_fifo_array)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_evtchn_fifo_vcpu, XKVM_CTX_EVTCHN_FIFO_VCPU,
                  struct xkvm_ctx_evtchn_fifo_vcpu)
XKVM_CTX_ACCESSOR(xkvm_ctx_get_evtchn_fifo_held, XKVM_CTX_EVTCHN_FIFO_HELD,
                  struct xkvm_ctx_evtchn_fifo_held)
#undef XKVM_CTX_ACCESSOR

/* ---- Writing ----------------------------------------------------------------- */

/* A sink takes bytes in order; returns 0 or a negative errno. */
typedef int (*xkvm_ctx_sink_fn)(void *opaque, const struct iovec *iov, int iovcnt);

struct xkvm_ctx_writer {
    xkvm_ctx_sink_fn sink;
    void *sink_opaque;
    uint8_t *buf;                   /* buffer sink */
    size_t len, cap;
    int fd;                         /* fd sink */
    uint64_t offset;                /* bytes written so far */
    const struct xkvm_ctx_registry *registry;   /* builtin unless changed after init */
    unsigned nr_records;
    bool started, ended, failed;
    uint64_t once_seen[XKVM_CTX_MAX_TYPES / 64];
    struct xkvm_ctx_error err;
};

/* Build the image in a growable memory buffer. */
void xkvm_ctx_writer_init_buffer(struct xkvm_ctx_writer *w);
/* Write the image straight to fd (which stays the caller's). */
void xkvm_ctx_writer_init_fd(struct xkvm_ctx_writer *w, int fd);
/* Hand the bytes to the caller's sink (e.g. a migration stream writer). */
void xkvm_ctx_writer_init_sink(struct xkvm_ctx_writer *w, xkvm_ctx_sink_fn sink, void *opaque);

/* Buffer sink: make room for `bytes` more without reallocating. 0 or -1. */
int xkvm_ctx_writer_reserve(struct xkvm_ctx_writer *w, size_t bytes);

/*
 * Append a record. The body is checked against its type exactly as the reader
 * checks it, and START-first / END-last / once-per-image rules are enforced, so
 * whatever a writer produces a reader accepts. 0, or -1 with w->err filled
 * (sticky: later calls fail too).
 */
int xkvm_ctx_write(struct xkvm_ctx_writer *w, uint32_t type, uint32_t instance,
                   const void *body, uint64_t length);
/* START with this build's XKVM_VERSION_MAJOR/MINOR. */
int xkvm_ctx_write_start(struct xkvm_ctx_writer *w);
int xkvm_ctx_write_end(struct xkvm_ctx_writer *w);
/* SHARED_INFO from a page (size <= XKVM_CTX_SHARED_INFO_MAX) and flags. */
int xkvm_ctx_write_shared_info(struct xkvm_ctx_writer *w, uint32_t flags,
                               const void *page, uint32_t size);

/*
 * Typed writers for the xkvm PV records: the caller fills a struct, the writer
 * frames it (copying into an aligned body where needed) and checks it like any
 * record. instance arguments are the vCPU id, port number or frame index.
 */
int xkvm_ctx_write_domain(struct xkvm_ctx_writer *w, uint16_t domid, uint32_t nr_vcpus);
int xkvm_ctx_write_shared_info_gfn(struct xkvm_ctx_writer *w, uint64_t gfn);
int xkvm_ctx_write_evtchn_abi(struct xkvm_ctx_writer *w, uint32_t abi);
int xkvm_ctx_write_evtchn_port(struct xkvm_ctx_writer *w, uint32_t port,
                               const struct xkvm_ctx_evtchn_port *rec);
/*
 * frame_gfn[nr_frames] (v2: then the status frames', XKVM_CTX_GNTTAB_STATUS_FRAMES of
 * them): where each frame is mapped (XKVM_CTX_GFN_NONE if not).
 */
int xkvm_ctx_write_gnttab(struct xkvm_ctx_writer *w, uint32_t version,
                          const uint64_t *frame_gfn, uint32_t nr_frames);
/* One frame's XKVM_CTX_PAGE_SIZE bytes. */
int xkvm_ctx_write_gnttab_frame(struct xkvm_ctx_writer *w, uint32_t idx, const void *page);
/* params[count], sorted by index. */
int xkvm_ctx_write_hvm_params(struct xkvm_ctx_writer *w,
                              const struct xkvm_ctx_hvm_param *params, uint32_t count);
int xkvm_ctx_write_vcpu_state(struct xkvm_ctx_writer *w, uint32_t vcpu, uint32_t flags);
int xkvm_ctx_write_vcpu_info(struct xkvm_ctx_writer *w, uint32_t vcpu,
                             const struct xkvm_ctx_vcpu_info *rec);
int xkvm_ctx_write_upcall(struct xkvm_ctx_writer *w, uint32_t vcpu, uint32_t vector);
int xkvm_ctx_write_time(struct xkvm_ctx_writer *w, const struct xkvm_ctx_time *rec);
int xkvm_ctx_write_hypercall(struct xkvm_ctx_writer *w, uint32_t flags);
int xkvm_ctx_write_runstate(struct xkvm_ctx_writer *w, uint32_t vcpu,
                            const struct xkvm_ctx_runstate *rec);
int xkvm_ctx_write_timer(struct xkvm_ctx_writer *w, uint32_t vcpu,
                         const struct xkvm_ctx_timer *rec);
int xkvm_ctx_write_vm_assist(struct xkvm_ctx_writer *w, uint32_t types);
int xkvm_ctx_write_vcpu_platform(struct xkvm_ctx_writer *w, uint32_t vcpu,
                                 const struct xkvm_ctx_vcpu_platform *rec);
int xkvm_ctx_write_tsc_info(struct xkvm_ctx_writer *w, const struct xkvm_ctx_tsc_info *rec);
int xkvm_ctx_write_altp2m(struct xkvm_ctx_writer *w, const struct xkvm_ctx_altp2m *rec);
/* body: a whole ALTP2M_VIEW body, 16 + 16 * (nr_access + nr_remaps) bytes. */
int xkvm_ctx_write_altp2m_view(struct xkvm_ctx_writer *w, uint32_t view,
                               const struct xkvm_ctx_altp2m_view *body);
int xkvm_ctx_write_evtchn_fifo_array(struct xkvm_ctx_writer *w, const uint64_t *page_gfn,
                                     uint32_t nr_pages);
int xkvm_ctx_write_evtchn_fifo_vcpu(struct xkvm_ctx_writer *w, uint32_t vcpu,
                                    const struct xkvm_ctx_evtchn_fifo_vcpu *rec);
int xkvm_ctx_write_evtchn_fifo_held(struct xkvm_ctx_writer *w, const uint32_t *ports,
                                    uint32_t nr_ports);

/* Buffer sink: the image so far. */
const uint8_t *xkvm_ctx_writer_data(const struct xkvm_ctx_writer *w, size_t *len);
/* Buffer sink: take ownership of the image (free() it); the writer is left empty. */
void *xkvm_ctx_writer_take(struct xkvm_ctx_writer *w, size_t *len);
/* Start a new image on the same sink; a buffer sink keeps its memory. */
void xkvm_ctx_writer_reset(struct xkvm_ctx_writer *w);
void xkvm_ctx_writer_release(struct xkvm_ctx_writer *w);

/* ---- Dumping ----------------------------------------------------------------- */

enum xkvm_ctx_dump_format {
    XKVM_CTX_DUMP_TEXT,             /* one line per record: offset name key=value... */
    XKVM_CTX_DUMP_JSON,             /* one JSON object per record, one per line */
};

struct xkvm_ctx_dumper {
    FILE *out;
    enum xkvm_ctx_dump_format format;
    unsigned nr_items;              /* in the current JSON object */
};

/* Print one record (validated by a reader) with its decoded fields. */
void xkvm_ctx_dump_record(FILE *out, enum xkvm_ctx_dump_format format,
                          const struct xkvm_ctx_record *rec);

/* For a type's dump hook: add one item to the record's line / "fields" object. */
void xkvm_ctx_dump_uint(struct xkvm_ctx_dumper *d, const char *name, uint64_t value);
void xkvm_ctx_dump_hex(struct xkvm_ctx_dumper *d, const char *name, uint64_t value);
void xkvm_ctx_dump_str(struct xkvm_ctx_dumper *d, const char *name, const char *value);

/* Write s as a JSON string literal, quotes included. */
void xkvm_ctx_json_string(FILE *out, const char *s);

#endif /* XKVM_CTX_H */
