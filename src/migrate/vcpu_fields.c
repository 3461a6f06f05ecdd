/* One vCPU's state declared once: the Xen <-> KVM field table (see vcpu_fields.h). */
#include "migrate/vcpu_fields.h"

#include <stdbool.h>
#include <string.h>

#define MSR_IA32_TSC            0x10
#define MSR_IA32_TSC_ADJUST     0x3b
#define MSR_IA32_SPEC_CTRL      0x48
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_MTRRcap             0xfe
#define MSR_MTRRphysBase0       0x200
#define MSR_MTRRfix64K_00000    0x250
#define MSR_MTRRfix16K_80000    0x258
#define MSR_MTRRfix16K_A0000    0x259
#define MSR_MTRRfix4K_C0000     0x268
#define MSR_IA32_CR_PAT         0x277
#define MSR_MTRRdefType         0x2ff
#define MSR_IA32_TSC_DEADLINE   0x6e0
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MSR_TSC_AUX             0xc0000103

#define APIC_SPIV               0xf0
#define APIC_TDCR               0x3e0
#define APIC_BASE_ENABLE        (1ull << 11)
#define XEN_VLAPIC_SW_DISABLED  0x1
#define XEN_VLAPIC_HW_DISABLED  0x2

/* Xen's event types in pending_event (X86_EVENTTYPE_*). */
#define EVT_EXT_INTR    0
#define EVT_HW_EXC      3
#define EVT_SW_INTR     4

_Static_assert(sizeof(((struct hvm_hw_lapic_regs *)0)->data) ==
               sizeof(((struct kvm_lapic_state *)0)->regs), "LAPIC_REGS is KVM's page");

/* ---- MSRs ---- */

uint32_t msr_index(unsigned slot)
{
    static const uint32_t fixed[NUM_FIXED_MSR] = {
        MSR_MTRRfix64K_00000, MSR_MTRRfix16K_80000, MSR_MTRRfix16K_A0000,
        MSR_MTRRfix4K_C0000, MSR_MTRRfix4K_C0000 + 1, MSR_MTRRfix4K_C0000 + 2,
        MSR_MTRRfix4K_C0000 + 3, MSR_MTRRfix4K_C0000 + 4, MSR_MTRRfix4K_C0000 + 5,
        MSR_MTRRfix4K_C0000 + 6, MSR_MTRRfix4K_C0000 + 7,
    };
    switch (slot) {
    case M_TSC: return MSR_IA32_TSC;
    case M_SYSENTER_CS: return MSR_IA32_SYSENTER_CS;
    case M_SYSENTER_ESP: return MSR_IA32_SYSENTER_ESP;
    case M_SYSENTER_EIP: return MSR_IA32_SYSENTER_EIP;
    case M_STAR: return MSR_STAR;
    case M_LSTAR: return MSR_LSTAR;
    case M_CSTAR: return MSR_CSTAR;
    case M_SFMASK: return MSR_SYSCALL_MASK;
    case M_KGSBASE: return MSR_KERNEL_GS_BASE;
    case M_TSC_AUX: return MSR_TSC_AUX;
    case M_PAT: return MSR_IA32_CR_PAT;
    case M_MTRRCAP: return MSR_MTRRcap;
    case M_MTRRDEF: return MSR_MTRRdefType;
    case M_TSC_ADJUST: return MSR_IA32_TSC_ADJUST;
    case M_TSC_DEADLINE: return MSR_IA32_TSC_DEADLINE;
    case M_SPEC_CTRL: return MSR_IA32_SPEC_CTRL;
    default:
        if (slot >= M_MTRRVAR0 && slot < M_MTRRFIX0)
            return MSR_MTRRphysBase0 + (slot - M_MTRRVAR0);
        return fixed[slot - M_MTRRFIX0];
    }
}

static struct kvm_msr_entry *msr_find(const struct msr_set *s, uint32_t index)
{
    for (uint32_t i = 0; i < s->hdr.nmsrs; i++)
        if (MSR_E(s)[i].index == index)
            return (struct kvm_msr_entry *)&MSR_E(s)[i];
    return NULL;
}

uint64_t msr_get(const struct msr_set *s, unsigned slot)
{
    const struct kvm_msr_entry *e = msr_find(s, msr_index(slot));
    return e ? e->data : 0;
}

void msr_put(struct msr_set *s, unsigned slot, uint64_t v)
{
    struct kvm_msr_entry *e = msr_find(s, msr_index(slot));
    if (e)
        e->data = v;
}

uint64_t msr_take(struct msr_set *s, uint32_t index)
{
    struct kvm_msr_entry *e = msr_find(s, index);
    if (!e)
        return 0;
    uint64_t v = e->data;
    *e = MSR_E(s)[--s->hdr.nmsrs];
    return v;
}

/* ---- Segments: KVM's fields <-> Xen's packed attribute bytes ---- */

static uint32_t seg_attr(const struct kvm_segment *s)
{
    if (s->unusable || !s->present)
        return 0;   /* Xen folds "unusable" into the present bit */
    return (uint32_t)(s->type & 0xf) | (uint32_t)(s->s & 1) << 4 | (uint32_t)(s->dpl & 3) << 5 |
           1u << 7 | (uint32_t)(s->avl & 1) << 8 | (uint32_t)(s->l & 1) << 9 |
           (uint32_t)(s->db & 1) << 10 | (uint32_t)(s->g & 1) << 11;
}

static struct kvm_segment seg_from(uint64_t sel, uint64_t limit, uint64_t base, uint64_t attr)
{
    struct kvm_segment s = {
        .base = base, .limit = (uint32_t)limit, .selector = (uint16_t)sel,
        .type = attr & 0xf, .s = (attr >> 4) & 1, .dpl = (attr >> 5) & 3,
        .present = (attr >> 7) & 1, .avl = (attr >> 8) & 1, .l = (attr >> 9) & 1,
        .db = (attr >> 10) & 1, .g = (attr >> 11) & 1,
    };
    s.unusable = !s.present;
    return s;
}

/* ---- The special fields: named helpers the table refers to ---- */

/* The FXSAVE region: KVM's XSAVE image starts with it (CPU_XSAVE, if present, wins). */
static void fpu_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    memcpy(x->cpu.fpu_regs, k->xsave, sizeof(x->cpu.fpu_regs));
}

static void fpu_load(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                     const struct vcpu_load_ctx *ctx)
{
    (void)ctx;
    memcpy(k->xsave, x->cpu.fpu_regs, sizeof(x->cpu.fpu_regs));
}

/* The TSC moves on by the time the guest spent in transit. */
static void tsc_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    x->cpu.tsc = msr_get(&k->msrs, M_TSC);
}

static void tsc_load(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                     const struct vcpu_load_ctx *ctx)
{
    msr_put(&k->msrs, M_TSC, x->cpu.tsc + ctx->tsc_advance_ns * ctx->tsc_khz / 1000000);
}

/* One pending event: KVM's exception or interrupt <-> Xen's pending_event word. */
static void event_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    const struct kvm_vcpu_events *ev = &k->events;
    if (ev->exception.injected || ev->exception.pending) {
        x->cpu.pending_vector = ev->exception.nr;
        x->cpu.pending_type = EVT_HW_EXC;
        x->cpu.pending_error_valid = ev->exception.has_error_code & 1;
        x->cpu.error_code = ev->exception.error_code;
        x->cpu.pending_valid = 1;
    } else if (ev->interrupt.injected) {
        x->cpu.pending_vector = ev->interrupt.nr;
        x->cpu.pending_type = ev->interrupt.soft ? EVT_SW_INTR : EVT_EXT_INTR;
        x->cpu.pending_valid = 1;
    }
}

static void event_load(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                       const struct vcpu_load_ctx *ctx)
{
    (void)ctx;
    struct kvm_vcpu_events *ev = &k->events;
    if (!x->cpu.pending_valid)
        return;
    if (x->cpu.pending_type == EVT_HW_EXC) {
        ev->exception.injected = 1;
        ev->exception.nr = x->cpu.pending_vector;
        ev->exception.has_error_code = x->cpu.pending_error_valid;
        ev->exception.error_code = x->cpu.error_code;
    } else if (x->cpu.pending_type == EVT_EXT_INTR || x->cpu.pending_type == EVT_SW_INTR) {
        ev->interrupt.injected = 1;
        ev->interrupt.nr = x->cpu.pending_vector;
        ev->interrupt.soft = x->cpu.pending_type == EVT_SW_INTR;
    }
}

/* KVM always has the FPU state: Xen's flag says so. */
static void flags_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    (void)k;
    x->cpu.flags = XEN_X86_FPU_INITIALISED;
}

static uint32_t apic_reg(const struct vcpu_kvm_state *k, unsigned off)
{
    uint32_t v;
    memcpy(&v, k->lapic.regs + off, 4);
    return v;
}

/* Xen's summaries of the LAPIC: derived from APIC base and the registers, which a
 * load takes from LAPIC_REGS itself. */
static void apic_disabled_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    x->lapic.disabled = (k->sregs.apic_base & APIC_BASE_ENABLE ? 0 : XEN_VLAPIC_HW_DISABLED) |
                        (apic_reg(k, APIC_SPIV) & 0x100 ? 0 : XEN_VLAPIC_SW_DISABLED);
}

static void timer_divisor_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    uint32_t tdcr = apic_reg(k, APIC_TDCR);
    unsigned dv = (tdcr & 3) | ((tdcr >> 1) & 4);
    x->lapic.timer_divisor = dv == 7 ? 1 : 2u << dv;
}

/*
 * ---- The table ----
 *
 * Every byte of the Xen records in struct vcpu_xen_state belongs to exactly one entry
 * (tests/unit/test-vcpu-fields.c checks it). To add a field:
 *   1. a plain value KVM keeps in a struct of vcpu_kvm_state: COPY(xen field, kvm field),
 *      or COPY_SET if a load must force bits on;
 *   2. an MSR: give it a slot in enum msr_slot (vcpu_fields.h) and msr_index, then
 *      MSR(xen field, slot) (an array of u64 takes consecutive slots); an MSR KVM may
 *      lack goes after M_TSC_ADJUST, and arch_state.c saves its record only if present;
 *   3. a segment: SEG(xen prefix, kvm_sregs member);
 *   4. anything else: a pair of helpers above, FN(xen field, save, load) (load NULL when
 *      the field is derived from others on the way in);
 *   5. a field with no meaning here: IGNORED(xen field).
 * A new fixed-layout Xen record goes into struct vcpu_xen_state, and arch_state.c adds
 * it to what it writes and gathers (save_vcpu, vcpu_blob).
 */

#define XS(f)       { offsetof(struct vcpu_xen_state, f), sizeof(((struct vcpu_xen_state *)0)->f) }
#define KS(f)       .kvm_off = offsetof(struct vcpu_kvm_state, f), \
                    .kvm_size = sizeof(((struct vcpu_kvm_state *)0)->f)
#define COPY_SET(x, k, set) { .name = #x, .kind = VF_COPY, .xen = { XS(x) }, KS(k), .load_set = set }
#define COPY(x, k)  COPY_SET(x, k, 0)
#define BYTES(x, k) { .name = #x, .kind = VF_BYTES, .xen = { XS(x) }, KS(k) }
#define SEG_F(x, k, fl) { .name = #x, .kind = VF_SEG, .xen = { XS(cpu.x##_sel), XS(cpu.x##_limit), \
                    XS(cpu.x##_base), XS(cpu.x##_arbytes) }, KS(sregs.k), .flags = fl }
#define SEG(x, k)   SEG_F(x, k, 0)
#define MSR(x, slot) { .name = #x, .kind = VF_MSR, .xen = { XS(x) }, .msr = slot }
#define FN(x, s, l) { .name = #x, .kind = VF_FN, .xen = { XS(x) }, .save = s, .load = l }
#define IGNORED(x)  { .name = #x, .kind = VF_IGNORED, .xen = { XS(x) } }

const struct vcpu_field vcpu_fields[] = {
    /* CPU: the general registers (KVM_{GET,SET}_REGS); rflags bit 1 always reads 1. */
    FN(cpu.fpu_regs, fpu_save, fpu_load),
    COPY(cpu.rax, regs.rax), COPY(cpu.rbx, regs.rbx), COPY(cpu.rcx, regs.rcx),
    COPY(cpu.rdx, regs.rdx), COPY(cpu.rbp, regs.rbp), COPY(cpu.rsi, regs.rsi),
    COPY(cpu.rdi, regs.rdi), COPY(cpu.rsp, regs.rsp), COPY(cpu.r8, regs.r8),
    COPY(cpu.r9, regs.r9), COPY(cpu.r10, regs.r10), COPY(cpu.r11, regs.r11),
    COPY(cpu.r12, regs.r12), COPY(cpu.r13, regs.r13), COPY(cpu.r14, regs.r14),
    COPY(cpu.r15, regs.r15), COPY(cpu.rip, regs.rip), COPY_SET(cpu.rflags, regs.rflags, 2),
    /* Control and debug registers (KVM_*_SREGS, KVM_*_DEBUGREGS). */
    COPY(cpu.cr0, sregs.cr0), COPY(cpu.cr2, sregs.cr2), COPY(cpu.cr3, sregs.cr3),
    COPY(cpu.cr4, sregs.cr4),
    COPY(cpu.dr0, dbg.db[0]), COPY(cpu.dr1, dbg.db[1]), COPY(cpu.dr2, dbg.db[2]),
    COPY(cpu.dr3, dbg.db[3]), COPY(cpu.dr6, dbg.dr6), COPY(cpu.dr7, dbg.dr7),
    /* Segments and descriptor tables; TR is never unusable in KVM. */
    SEG(cs, cs), SEG(ds, ds), SEG(es, es), SEG(fs, fs), SEG(gs, gs), SEG(ss, ss),
    SEG_F(tr, tr, VF_SEG_USABLE), SEG(ldtr, ldt),
    COPY(cpu.idtr_limit, sregs.idt.limit), COPY(cpu.idtr_base, sregs.idt.base),
    COPY(cpu.gdtr_limit, sregs.gdt.limit), COPY(cpu.gdtr_base, sregs.gdt.base),
    /* MSRs (KVM_*_MSRS) and EFER (in the sregs). */
    MSR(cpu.sysenter_cs, M_SYSENTER_CS), MSR(cpu.sysenter_esp, M_SYSENTER_ESP),
    MSR(cpu.sysenter_eip, M_SYSENTER_EIP), MSR(cpu.shadow_gs, M_KGSBASE),
    IGNORED(cpu.msr_flags),     /* obsolete in Xen */
    MSR(cpu.msr_lstar, M_LSTAR), MSR(cpu.msr_star, M_STAR), MSR(cpu.msr_cstar, M_CSTAR),
    MSR(cpu.msr_syscall_mask, M_SFMASK), COPY(cpu.msr_efer, sregs.efer),
    MSR(cpu.msr_tsc_aux, M_TSC_AUX), FN(cpu.tsc, tsc_save, tsc_load),
    /* The pending event (KVM_*_VCPU_EVENTS): the word and its error code. */
    { .name = "cpu.pending_event", .kind = VF_FN,
      .xen = { XS(cpu.pending_event), XS(cpu.error_code) }, .save = event_save,
      .load = event_load },
    FN(cpu.flags, flags_save, NULL), IGNORED(cpu.pad0),
    /* LAPIC and LAPIC_REGS (KVM_*_LAPIC); the deadline goes in after the LAPIC. */
    COPY(lapic.apic_base_msr, sregs.apic_base),
    FN(lapic.disabled, apic_disabled_save, NULL),
    FN(lapic.timer_divisor, timer_divisor_save, NULL),
    MSR(lapic.tdt_msr, M_TSC_DEADLINE),
    BYTES(lapic_regs.data, lapic.regs),
    /* MTRR: PAT and the MTRRs; MTRRcap is read-only (saved, never written back). */
    MSR(mtrr.msr_pat_cr, M_PAT), MSR(mtrr.msr_mtrr_var, M_MTRRVAR0),
    MSR(mtrr.msr_mtrr_fixed, M_MTRRFIX0), MSR(mtrr.msr_mtrr_cap, M_MTRRCAP),
    MSR(mtrr.msr_mtrr_def_type, M_MTRRDEF),
    /* TSC_ADJUST, saved only if KVM has the MSR. */
    MSR(tsc_adjust.tsc_adjust, M_TSC_ADJUST),
};
const size_t vcpu_nr_fields = sizeof(vcpu_fields) / sizeof(vcpu_fields[0]);

/* ---- The two loops ---- */

static uint64_t get_uint(const uint8_t *p, uint32_t size)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    switch (size) {
    case 1: memcpy(&v8, p, 1); return v8;
    case 2: memcpy(&v16, p, 2); return v16;
    case 4: memcpy(&v32, p, 4); return v32;
    default: memcpy(&v64, p, 8); return v64;
    }
}

static void put_uint(uint8_t *p, uint32_t size, uint64_t v)
{
    uint8_t v8 = (uint8_t)v;
    uint16_t v16 = (uint16_t)v;
    uint32_t v32 = (uint32_t)v;
    switch (size) {
    case 1: memcpy(p, &v8, 1); break;
    case 2: memcpy(p, &v16, 2); break;
    case 4: memcpy(p, &v32, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

void vcpu_fields_save(const struct vcpu_kvm_state *k, struct vcpu_xen_state *x)
{
    memset(x, 0, sizeof(*x));
    for (size_t i = 0; i < vcpu_nr_fields; i++) {
        const struct vcpu_field *f = &vcpu_fields[i];
        uint8_t *xp = (uint8_t *)x;
        const uint8_t *kp = (const uint8_t *)k + f->kvm_off;
        switch (f->kind) {
        case VF_COPY:
            put_uint(xp + f->xen[0].off, f->xen[0].size, get_uint(kp, f->kvm_size));
            break;
        case VF_BYTES:
            memcpy(xp + f->xen[0].off, kp, f->xen[0].size);
            break;
        case VF_SEG: {
            const struct kvm_segment *s = (const struct kvm_segment *)kp;
            const uint64_t v[4] = { s->selector, s->limit, s->base, seg_attr(s) };
            for (unsigned j = 0; j < 4; j++)
                put_uint(xp + f->xen[j].off, f->xen[j].size, v[j]);
            break;
        }
        case VF_MSR:
            for (uint32_t j = 0; j < f->xen[0].size / 8; j++)
                put_uint(xp + f->xen[0].off + 8 * j, 8, msr_get(&k->msrs, f->msr + j));
            break;
        case VF_FN:
            if (f->save)
                f->save(k, x);
            break;
        case VF_IGNORED:
            break;
        }
    }
}

void vcpu_fields_load(const struct vcpu_xen_state *x, struct vcpu_kvm_state *k,
                      const struct vcpu_load_ctx *ctx)
{
    for (size_t i = 0; i < vcpu_nr_fields; i++) {
        const struct vcpu_field *f = &vcpu_fields[i];
        const uint8_t *xp = (const uint8_t *)x;
        uint8_t *kp = (uint8_t *)k + f->kvm_off;
        switch (f->kind) {
        case VF_COPY:
            put_uint(kp, f->kvm_size, get_uint(xp + f->xen[0].off, f->xen[0].size) | f->load_set);
            break;
        case VF_BYTES:
            memcpy(kp, xp + f->xen[0].off, f->xen[0].size);
            break;
        case VF_SEG: {
            uint64_t v[4];
            for (unsigned j = 0; j < 4; j++)
                v[j] = get_uint(xp + f->xen[j].off, f->xen[j].size);
            struct kvm_segment s = seg_from(v[0], v[1], v[2], v[3]);
            if (f->flags & VF_SEG_USABLE)
                s.unusable = 0;
            memcpy(kp, &s, sizeof(s));
            break;
        }
        case VF_MSR:
            for (uint32_t j = 0; j < f->xen[0].size / 8; j++)
                msr_put(&k->msrs, f->msr + j, get_uint(xp + f->xen[0].off + 8 * j, 8));
            break;
        case VF_FN:
            if (f->load)
                f->load(x, k, ctx);
            break;
        case VF_IGNORED:
            break;
        }
    }
}
