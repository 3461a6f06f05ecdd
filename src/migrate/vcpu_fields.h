/*
 * One vCPU's state declared once: which field of Xen's HVM save records (CPU, LAPIC,
 * LAPIC_REGS, MTRR, TSC_ADJUST) is which piece of KVM's vCPU state, and how the two
 * convert. One table (vcpu_fields.c) drives both directions: vcpu_fields_save fills
 * the Xen records from KVM's structs, vcpu_fields_load the reverse. No ioctls here:
 * arch_state.c reads and writes KVM around the two loops, and the records of variable
 * length (CPU_XSAVE, CPU_MSR) are its named helpers.
 */
#ifndef XKVM_MIGRATE_VCPU_FIELDS_H
#define XKVM_MIGRATE_VCPU_FIELDS_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <xen/hvm/save.h>

/* ---- MSRs: the ones every vCPU carries, then optional ones KVM may not have ---- */

enum msr_slot {
    M_TSC, M_SYSENTER_CS, M_SYSENTER_ESP, M_SYSENTER_EIP, M_STAR, M_LSTAR, M_CSTAR,
    M_SFMASK, M_KGSBASE, M_TSC_AUX, M_PAT, M_MTRRCAP, M_MTRRDEF,
    M_MTRRVAR0, M_MTRRFIX0 = M_MTRRVAR0 + 2 * MTRR_VCNT,
    M_TSC_ADJUST = M_MTRRFIX0 + NUM_FIXED_MSR,  /* the first optional one */
    M_TSC_DEADLINE, M_SPEC_CTRL, M_COUNT
};

/* The architectural MSR number of a slot. */
uint32_t msr_index(unsigned slot);

/* struct kvm_msrs with room for every slot (its entries[] is a flexible array). */
struct msr_set {
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + M_COUNT * sizeof(struct kvm_msr_entry)];
    };
};
#define MSR_E(s) ((s)->hdr.entries)

/* A slot's value in s (0 if s lacks it); set it (a no-op if s lacks it). */
uint64_t msr_get(const struct msr_set *s, unsigned slot);
void msr_put(struct msr_set *s, unsigned slot, uint64_t v);
/* Take an MSR out of s (KVM_SET_MSRS must not see it); its value, or 0. */
uint64_t msr_take(struct msr_set *s, uint32_t index);

/* ---- The two sides ---- */

/* Xen's fixed-layout records for one vCPU, side by side. */
struct vcpu_xen_state {
    struct hvm_hw_cpu cpu;
    struct hvm_hw_lapic lapic;
    struct hvm_hw_lapic_regs lapic_regs;
    struct hvm_hw_mtrr mtrr;
    struct hvm_tsc_adjust tsc_adjust;
};

/* KVM's view of the same vCPU: what its KVM_GET_* ioctls fill. */
struct vcpu_kvm_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_debugregs dbg;
    struct kvm_vcpu_events events;
    struct kvm_lapic_state lapic;
    uint8_t *xsave;             /* KVM's XSAVE image, the legacy FXSAVE region first */
    struct msr_set msrs;        /* last: struct kvm_msrs ends in a flexible array */
};

/* What a load needs beyond the records. */
struct vcpu_load_ctx {
    uint64_t tsc_advance_ns;    /* guest time spent in transit: the TSC moves on */
    uint64_t tsc_khz;
};

/* ---- The table ---- */

enum vcpu_field_kind {
    VF_COPY,        /* an integer, widths may differ (a load truncates as C does) */
    VF_BYTES,       /* the same bytes on both sides */
    VF_SEG,         /* a segment: Xen's sel, limit, base, packed arbytes <-> kvm_segment */
    VF_MSR,         /* one or more u64s <-> consecutive MSR slots from .msr */
    VF_FN,          /* special: the entry's own save/load helpers */
    VF_IGNORED,     /* in Xen's record, meaningless here (obsolete, padding): 0 */
};

#define VF_SEG_USABLE   0x1u    /* VF_SEG: never "unusable" in KVM (TR) */

struct vcpu_field_span {
    uint32_t off, size;         /* in struct vcpu_xen_state */
};

struct vcpu_field {
    const char *name;
    enum vcpu_field_kind kind;
    /* Xen side: one span; a VF_SEG has four (sel, limit, base, arbytes). */
    struct vcpu_field_span xen[4];
    uint32_t kvm_off, kvm_size; /* in struct vcpu_kvm_state (VF_COPY, VF_BYTES, VF_SEG) */
    unsigned msr;               /* VF_MSR: the first slot */
    uint64_t load_set;          /* VF_COPY: bits a load forces on */
    unsigned flags;             /* VF_SEG_* */
    void (*save)(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x);
    void (*load)(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                 const struct vcpu_load_ctx *ctx);
};

extern const struct vcpu_field vcpu_fields[];
extern const size_t vcpu_nr_fields;

/* KVM -> Xen: every field of x from k (x zeroed first). */
void vcpu_fields_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x);
/* Xen -> KVM: every field of k the records decide (the rest of k is left as it is). */
void vcpu_fields_load(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                      const struct vcpu_load_ctx *ctx);

#endif
