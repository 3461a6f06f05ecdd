/* KVM vCPU state <-> Xen HVM_CONTEXT entries: see arch_state.h. */
#include "migrate/arch_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <xen/hvm/save.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/vcpu.h"

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

/* ---- MSRs: the ones every vCPU carries, and optional ones KVM may not have ---- */

enum msr_slot {
    M_TSC, M_SYSENTER_CS, M_SYSENTER_ESP, M_SYSENTER_EIP, M_STAR, M_LSTAR, M_CSTAR,
    M_SFMASK, M_KGSBASE, M_TSC_AUX, M_PAT, M_MTRRCAP, M_MTRRDEF,
    M_MTRRVAR0, M_MTRRFIX0 = M_MTRRVAR0 + 2 * MTRR_VCNT,
    M_TSC_ADJUST = M_MTRRFIX0 + NUM_FIXED_MSR, M_TSC_DEADLINE, M_SPEC_CTRL, M_COUNT
};

static uint32_t msr_index(unsigned slot)
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

/* KVM's list of MSRs it saves and restores, read once. */
static struct kvm_msr_list *kvm_msrs;
static pthread_once_t kvm_msrs_once = PTHREAD_ONCE_INIT;

static void read_msr_list(void)
{
    struct kvm_msr_list probe = { .nmsrs = 0 };
    ioctl(host.kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);     /* E2BIG, fills nmsrs */
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
    if (!l)
        return;
    l->nmsrs = probe.nmsrs;
    if (ioctl(host.kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        free(l);
        return;
    }
    kvm_msrs = l;
}

static bool kvm_has_msr(uint32_t index)
{
    pthread_once(&kvm_msrs_once, read_msr_list);
    if (!kvm_msrs)
        return false;
    for (uint32_t i = 0; i < kvm_msrs->nmsrs; i++)
        if (kvm_msrs->indices[i] == index)
            return true;
    return false;
}

/* struct kvm_msrs with room for every slot (its entries[] is a flexible array). */
struct msr_set {
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + M_COUNT * sizeof(struct kvm_msr_entry)];
    };
};
#define MSR_E(s) ((s)->hdr.entries)

/* The slots KVM can save, in order; *have gets a bit per slot present. */
static void msr_set_init(struct msr_set *s, uint64_t *have)
{
    memset(s, 0, sizeof(*s));
    *have = 0;
    for (unsigned i = 0; i < M_COUNT; i++) {
        uint32_t idx = msr_index(i);
        bool needed = i < M_TSC_ADJUST;
        if (!needed && !kvm_has_msr(idx))
            continue;
        MSR_E(s)[s->hdr.nmsrs++].index = idx;
        *have |= 1ull << i;
    }
}

static uint64_t msr_get(const struct msr_set *s, unsigned slot)
{
    uint32_t idx = msr_index(slot);
    for (uint32_t i = 0; i < s->hdr.nmsrs; i++)
        if (MSR_E(s)[i].index == idx)
            return MSR_E(s)[i].data;
    return 0;
}

static void msr_put(struct msr_set *s, unsigned slot, uint64_t v)
{
    uint32_t idx = msr_index(slot);
    for (uint32_t i = 0; i < s->hdr.nmsrs; i++)
        if (MSR_E(s)[i].index == idx) {
            MSR_E(s)[i].data = v;
            return;
        }
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

static void seg_from(struct kvm_segment *s, uint32_t sel, uint32_t limit, uint64_t base,
                     uint32_t attr)
{
    *s = (struct kvm_segment){
        .base = base, .limit = limit, .selector = (uint16_t)sel,
        .type = attr & 0xf, .s = (attr >> 4) & 1, .dpl = (attr >> 5) & 3,
        .present = (attr >> 7) & 1, .avl = (attr >> 8) & 1, .l = (attr >> 9) & 1,
        .db = (attr >> 10) & 1, .g = (attr >> 11) & 1,
    };
    s->unusable = !s->present;
}

#define SEG_OUT(c, name, seg) do {                   \
        (c)->name##_sel = (seg).selector;            \
        (c)->name##_limit = (seg).limit;             \
        (c)->name##_base = (seg).base;               \
        (c)->name##_arbytes = seg_attr(&(seg));      \
    } while (0)
#define SEG_IN(seg, c, name) \
    seg_from(&(seg), (c)->name##_sel, (c)->name##_limit, (c)->name##_base, (c)->name##_arbytes)

/* ---- Save ---- */

static int xsave_size(void)
{
    int n = ioctl(host.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

static int get_xsave(struct vcpu *v, void *buf, int size)
{
    unsigned long req = size > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
    return ioctl(v->fd, req, buf);
}

int arch_vcpu_halted(struct vcpu *v)
{
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
        return -errno;
    return mp.mp_state == KVM_MP_STATE_HALTED;
}

static int save_vcpu(struct vcpu *v, struct xkvm_hvmctx_builder *b, int xs_size,
                     uint8_t *xs, char *err, size_t errlen)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events ev;
    struct kvm_debugregs dbg;
    struct msr_set m;
    uint64_t have;
    msr_set_init(&m, &have);
    const char *what = NULL;
    memset(&xcrs, 0, sizeof(xcrs));
    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0) what = "KVM_GET_REGS";
    else if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) what = "KVM_GET_SREGS";
    else if (get_xsave(v, xs, xs_size) < 0) what = "KVM_GET_XSAVE";
    else if (ioctl(v->fd, KVM_GET_XCRS, &xcrs) < 0) what = "KVM_GET_XCRS";
    else if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0) what = "KVM_GET_LAPIC";
    else if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0) what = "KVM_GET_VCPU_EVENTS";
    else if (ioctl(v->fd, KVM_GET_DEBUGREGS, &dbg) < 0) what = "KVM_GET_DEBUGREGS";
    else if (ioctl(v->fd, KVM_GET_MSRS, &m) != (int)m.hdr.nmsrs) what = "KVM_GET_MSRS";
    if (what) {
        snprintf(err, errlen, "v%u: %s: %s", v->id, what, strerror(errno));
        return -EIO;
    }

    struct hvm_hw_cpu c;
    memset(&c, 0, sizeof(c));
    memcpy(c.fpu_regs, xs, sizeof(c.fpu_regs));
    c.rax = r.rax; c.rbx = r.rbx; c.rcx = r.rcx; c.rdx = r.rdx;
    c.rbp = r.rbp; c.rsi = r.rsi; c.rdi = r.rdi; c.rsp = r.rsp;
    c.r8 = r.r8; c.r9 = r.r9; c.r10 = r.r10; c.r11 = r.r11;
    c.r12 = r.r12; c.r13 = r.r13; c.r14 = r.r14; c.r15 = r.r15;
    c.rip = r.rip; c.rflags = r.rflags;
    c.cr0 = s.cr0; c.cr2 = s.cr2; c.cr3 = s.cr3; c.cr4 = s.cr4;
    c.dr0 = dbg.db[0]; c.dr1 = dbg.db[1]; c.dr2 = dbg.db[2]; c.dr3 = dbg.db[3];
    c.dr6 = dbg.dr6; c.dr7 = dbg.dr7;
    SEG_OUT(&c, cs, s.cs); SEG_OUT(&c, ds, s.ds); SEG_OUT(&c, es, s.es);
    SEG_OUT(&c, fs, s.fs); SEG_OUT(&c, gs, s.gs); SEG_OUT(&c, ss, s.ss);
    SEG_OUT(&c, tr, s.tr); SEG_OUT(&c, ldtr, s.ldt);
    c.idtr_limit = s.idt.limit; c.idtr_base = s.idt.base;
    c.gdtr_limit = s.gdt.limit; c.gdtr_base = s.gdt.base;
    c.sysenter_cs = msr_get(&m, M_SYSENTER_CS);
    c.sysenter_esp = msr_get(&m, M_SYSENTER_ESP);
    c.sysenter_eip = msr_get(&m, M_SYSENTER_EIP);
    c.shadow_gs = msr_get(&m, M_KGSBASE);
    c.msr_lstar = msr_get(&m, M_LSTAR);
    c.msr_star = msr_get(&m, M_STAR);
    c.msr_cstar = msr_get(&m, M_CSTAR);
    c.msr_syscall_mask = msr_get(&m, M_SFMASK);
    c.msr_efer = s.efer;
    c.msr_tsc_aux = msr_get(&m, M_TSC_AUX);
    c.tsc = msr_get(&m, M_TSC);
    if (ev.exception.injected || ev.exception.pending) {
        c.pending_vector = ev.exception.nr;
        c.pending_type = EVT_HW_EXC;
        c.pending_error_valid = ev.exception.has_error_code & 1;
        c.error_code = ev.exception.error_code;
        c.pending_valid = 1;
    } else if (ev.interrupt.injected) {
        c.pending_vector = ev.interrupt.nr;
        c.pending_type = ev.interrupt.soft ? EVT_SW_INTR : EVT_EXT_INTR;
        c.pending_valid = 1;
    }
    c.flags = XEN_X86_FPU_INITIALISED;

    uint32_t tdcr, spiv;
    memcpy(&tdcr, lapic.regs + APIC_TDCR, 4);
    memcpy(&spiv, lapic.regs + APIC_SPIV, 4);
    unsigned dv = (tdcr & 3) | ((tdcr >> 1) & 4);
    struct hvm_hw_lapic hl = {
        .apic_base_msr = s.apic_base,
        .disabled = (s.apic_base & APIC_BASE_ENABLE ? 0 : XEN_VLAPIC_HW_DISABLED) |
                    (spiv & 0x100 ? 0 : XEN_VLAPIC_SW_DISABLED),
        .timer_divisor = dv == 7 ? 1 : 2u << dv,
        .tdt_msr = msr_get(&m, M_TSC_DEADLINE),
    };
    struct hvm_hw_mtrr mtrr = {
        .msr_pat_cr = msr_get(&m, M_PAT),
        .msr_mtrr_cap = msr_get(&m, M_MTRRCAP),
        .msr_mtrr_def_type = msr_get(&m, M_MTRRDEF),
    };
    for (unsigned i = 0; i < 2 * MTRR_VCNT; i++)
        mtrr.msr_mtrr_var[i] = msr_get(&m, M_MTRRVAR0 + i);
    for (unsigned i = 0; i < NUM_FIXED_MSR; i++)
        mtrr.msr_mtrr_fixed[i] = msr_get(&m, M_MTRRFIX0 + i);

    uint64_t xcr0 = 0;
    for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
        if (xcrs.xcrs[i].xcr == 0)
            xcr0 = xcrs.xcrs[i].value;
    size_t xlen = 24 + (size_t)xs_size;
    uint8_t *xb = malloc(xlen);
    if (!xb) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* KVM's image may hold components (PKRU) outside XCR0: count them as used. */
    uint64_t xstate_bv;
    memcpy(&xstate_bv, xs + 512, 8);
    struct { uint64_t mask, xcr0, accum; } xh = { xcr0 | xstate_bv, xcr0, xcr0 | xstate_bv };
    memcpy(xb, &xh, 24);
    memcpy(xb + 24, xs, (size_t)xs_size);

    uint16_t id = (uint16_t)v->id;
    int rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU, id, &c, sizeof(c));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_LAPIC, id, &hl, sizeof(hl));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_LAPIC_REGS, id, lapic.regs, sizeof(lapic.regs));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_MTRR, id, &mtrr, sizeof(mtrr));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU_XSAVE, id, xb, (uint32_t)xlen);
    free(xb);
    if (!rc && (have & (1ull << M_TSC_ADJUST))) {
        struct hvm_tsc_adjust ta = { .tsc_adjust = msr_get(&m, M_TSC_ADJUST) };
        rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_TSC_ADJUST, id, &ta, sizeof(ta));
    }
    if (!rc && (have & (1ull << M_SPEC_CTRL))) {
        struct { uint32_t count, pad; struct hvm_one_msr m[1]; } cm = {
            .count = 1, .m = { { .index = MSR_IA32_SPEC_CTRL, .val = msr_get(&m, M_SPEC_CTRL) } },
        };
        rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU_MSR, id, &cm, sizeof(cm));
    }
    if (rc) {
        snprintf(err, errlen, "v%u: HVM context: %s", v->id, b->err.msg);
        return -EINVAL;
    }
    return 0;
}

int arch_save_domain(struct domain *d, struct xkvm_hvmctx_builder *b, char *err, size_t errlen)
{
    int size = xsave_size();
    uint8_t *xs = calloc(1, (size_t)size);
    if (!xs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    for (unsigned i = 0; i < d->nr_vcpus && !rc; i++)
        rc = save_vcpu(&d->vcpus[i], b, size, xs, err, errlen);
    free(xs);
    return rc;
}

/* ---- Restore ---- */

/* What the blob holds for one vCPU, gathered before anything is loaded. */
struct vcpu_blob {
    const uint8_t *cpu, *lapic, *lapic_regs, *mtrr, *xsave, *tsc_adjust, *msrs;
    uint32_t xsave_len, msrs_len;
};

static int load_vcpu(struct vcpu *v, const struct vcpu_blob *vb, uint64_t tsc_advance,
                     int xs_size, uint8_t *xs, char *err, size_t errlen)
{
    struct hvm_hw_cpu c;
    memcpy(&c, vb->cpu, sizeof(c));
    struct kvm_sregs s;
    struct kvm_regs r;
    memset(&s, 0, sizeof(s));
    memset(&r, 0, sizeof(r));
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {   /* keeps KVM's interrupt bitmap format */
        snprintf(err, errlen, "v%u: KVM_GET_SREGS: %s", v->id, strerror(errno));
        return -EIO;
    }
    SEG_IN(s.cs, &c, cs); SEG_IN(s.ds, &c, ds); SEG_IN(s.es, &c, es);
    SEG_IN(s.fs, &c, fs); SEG_IN(s.gs, &c, gs); SEG_IN(s.ss, &c, ss);
    SEG_IN(s.tr, &c, tr); SEG_IN(s.ldt, &c, ldtr);
    s.tr.unusable = 0;
    s.idt.limit = (uint16_t)c.idtr_limit; s.idt.base = c.idtr_base;
    s.gdt.limit = (uint16_t)c.gdtr_limit; s.gdt.base = c.gdtr_base;
    s.cr0 = c.cr0; s.cr2 = c.cr2; s.cr3 = c.cr3; s.cr4 = c.cr4;
    s.efer = c.msr_efer;
    memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
    struct hvm_hw_lapic hl;
    memcpy(&hl, vb->lapic, sizeof(hl));
    s.apic_base = hl.apic_base_msr;

    r.rax = c.rax; r.rbx = c.rbx; r.rcx = c.rcx; r.rdx = c.rdx;
    r.rbp = c.rbp; r.rsi = c.rsi; r.rdi = c.rdi; r.rsp = c.rsp;
    r.r8 = c.r8; r.r9 = c.r9; r.r10 = c.r10; r.r11 = c.r11;
    r.r12 = c.r12; r.r13 = c.r13; r.r14 = c.r14; r.r15 = c.r15;
    r.rip = c.rip; r.rflags = c.rflags | 2;

    struct kvm_xcrs xcrs;
    memset(&xcrs, 0, sizeof(xcrs));
    memset(xs, 0, (size_t)xs_size);
    if (vb->xsave) {
        uint64_t xcr0;
        memcpy(&xcr0, vb->xsave + 8, 8);
        xcrs.nr_xcrs = 1;
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = xcr0;
        uint32_t n = vb->xsave_len - 24;
        memcpy(xs, vb->xsave + 24, n < (uint32_t)xs_size ? n : (uint32_t)xs_size);
    } else {
        memcpy(xs, c.fpu_regs, sizeof(c.fpu_regs));
    }

    struct kvm_debugregs dbg;
    memset(&dbg, 0, sizeof(dbg));
    dbg.db[0] = c.dr0; dbg.db[1] = c.dr1; dbg.db[2] = c.dr2; dbg.db[3] = c.dr3;
    dbg.dr6 = c.dr6; dbg.dr7 = c.dr7;

    struct kvm_lapic_state lapic;
    memcpy(lapic.regs, vb->lapic_regs, sizeof(lapic.regs));

    struct msr_set m;
    uint64_t have;
    msr_set_init(&m, &have);
    uint64_t tsc_khz = host.tsc_khz ? host.tsc_khz : 1000000;
    msr_put(&m, M_TSC, c.tsc + tsc_advance * tsc_khz / 1000000);
    msr_put(&m, M_SYSENTER_CS, c.sysenter_cs);
    msr_put(&m, M_SYSENTER_ESP, c.sysenter_esp);
    msr_put(&m, M_SYSENTER_EIP, c.sysenter_eip);
    msr_put(&m, M_KGSBASE, c.shadow_gs);
    msr_put(&m, M_LSTAR, c.msr_lstar);
    msr_put(&m, M_STAR, c.msr_star);
    msr_put(&m, M_CSTAR, c.msr_cstar);
    msr_put(&m, M_SFMASK, c.msr_syscall_mask);
    msr_put(&m, M_TSC_AUX, c.msr_tsc_aux);
    if (vb->mtrr) {
        struct hvm_hw_mtrr mt;
        memcpy(&mt, vb->mtrr, sizeof(mt));
        msr_put(&m, M_PAT, mt.msr_pat_cr);
        msr_put(&m, M_MTRRCAP, mt.msr_mtrr_cap);
        msr_put(&m, M_MTRRDEF, mt.msr_mtrr_def_type);
        for (unsigned i = 0; i < 2 * MTRR_VCNT; i++)
            msr_put(&m, M_MTRRVAR0 + i, mt.msr_mtrr_var[i]);
        for (unsigned i = 0; i < NUM_FIXED_MSR; i++)
            msr_put(&m, M_MTRRFIX0 + i, mt.msr_mtrr_fixed[i]);
    } else {
        msr_put(&m, M_PAT, 0x0007040600070406ull);      /* the power-on PAT */
    }
    /* MTRRcap is read-only: KVM refuses a write of it. */
    for (uint32_t i = 0; i < m.hdr.nmsrs; i++)
        if (MSR_E(&m)[i].index == MSR_MTRRcap) {
            MSR_E(&m)[i] = MSR_E(&m)[--m.hdr.nmsrs];
            break;
        }
    if (vb->tsc_adjust) {
        uint64_t ta;
        memcpy(&ta, vb->tsc_adjust, 8);
        msr_put(&m, M_TSC_ADJUST, ta);
    } else {
        msr_put(&m, M_TSC_ADJUST, 0);
    }
    for (uint32_t i = 0; vb->msrs && i < (vb->msrs_len - 8) / 16; i++) {
        uint32_t idx;
        uint64_t val;
        memcpy(&idx, vb->msrs + 8 + 16 * i, 4);
        memcpy(&val, vb->msrs + 16 + 16 * i, 8);
        if (idx != MSR_IA32_SPEC_CTRL || !(have & (1ull << M_SPEC_CTRL))) {
            snprintf(err, errlen, "v%u: CPU_MSR: MSR %#x cannot be restored here", v->id, idx);
            return -EINVAL;
        }
        msr_put(&m, M_SPEC_CTRL, val);
    }
    /* The deadline goes in after the LAPIC (its timer mode decides if it counts). */
    uint64_t deadline = hl.tdt_msr;
    for (uint32_t i = 0; i < m.hdr.nmsrs; i++)
        if (MSR_E(&m)[i].index == MSR_IA32_TSC_DEADLINE) {
            MSR_E(&m)[i] = MSR_E(&m)[--m.hdr.nmsrs];
            break;
        }

    struct kvm_vcpu_events ev;
    memset(&ev, 0, sizeof(ev));
    if (c.pending_valid) {
        if (c.pending_type == EVT_HW_EXC) {
            ev.exception.injected = 1;
            ev.exception.nr = c.pending_vector;
            ev.exception.has_error_code = c.pending_error_valid;
            ev.exception.error_code = c.error_code;
        } else if (c.pending_type == EVT_EXT_INTR || c.pending_type == EVT_SW_INTR) {
            ev.interrupt.injected = 1;
            ev.interrupt.nr = c.pending_vector;
            ev.interrupt.soft = c.pending_type == EVT_SW_INTR;
        }
    }

    const char *what = NULL;
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0) what = "KVM_SET_SREGS";
    else if (ioctl(v->fd, KVM_SET_REGS, &r) < 0) what = "KVM_SET_REGS";
    else if (vb->xsave && ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0) what = "KVM_SET_XCRS";
    else if (ioctl(v->fd, KVM_SET_XSAVE, xs) < 0) what = "KVM_SET_XSAVE";
    else if (ioctl(v->fd, KVM_SET_DEBUGREGS, &dbg) < 0) what = "KVM_SET_DEBUGREGS";
    else if (ioctl(v->fd, KVM_SET_MSRS, &m) != (int)m.hdr.nmsrs) what = "KVM_SET_MSRS";
    else if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) what = "KVM_SET_LAPIC";
    else if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) what = "KVM_SET_VCPU_EVENTS";
    if (!what && (have & (1ull << M_TSC_DEADLINE))) {
        struct msr_set dl;
        memset(&dl, 0, sizeof(dl));
        dl.hdr.nmsrs = 1;
        MSR_E(&dl)[0] = (struct kvm_msr_entry){ .index = MSR_IA32_TSC_DEADLINE, .data = deadline };
        if (ioctl(v->fd, KVM_SET_MSRS, &dl) != 1)
            what = "KVM_SET_MSRS (TSC deadline)";
    }
    if (what) {
        snprintf(err, errlen, "v%u: %s: %s", v->id, what, errno ? strerror(errno) : "refused");
        return -EIO;
    }
    return 0;
}

int arch_restore_domain(struct domain *d, const void *blob, size_t len,
                        uint64_t tsc_advance_ns, char *err, size_t errlen)
{
    struct vcpu_blob *vb = calloc(d->nr_vcpus, sizeof(*vb));
    if (!vb) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct xkvm_hvmctx_walker w;
    struct xkvm_hvmctx_entry e;
    xkvm_hvmctx_walker_init(&w, blob, len, d->nr_vcpus);
    int rc = 0, n;
    while ((n = xkvm_hvmctx_next(&w, &e)) > 0) {
        if (e.typecode == XKVM_HVMCTX_HEADER || e.typecode == XKVM_HVMCTX_END)
            continue;
        if (e.instance >= d->nr_vcpus) {
            snprintf(err, errlen, "HVM context: %s instance %u, domain has %u vCPUs",
                     xkvm_hvmctx_name(e.typecode), e.instance, d->nr_vcpus);
            rc = -EINVAL;
            break;
        }
        struct vcpu_blob *b = &vb[e.instance];
        switch (e.typecode) {
        case XKVM_HVMCTX_CPU: b->cpu = e.data; break;
        case XKVM_HVMCTX_LAPIC: b->lapic = e.data; break;
        case XKVM_HVMCTX_LAPIC_REGS: b->lapic_regs = e.data; break;
        case XKVM_HVMCTX_MTRR: b->mtrr = e.data; break;
        case XKVM_HVMCTX_CPU_XSAVE: b->xsave = e.data; b->xsave_len = e.length; break;
        case XKVM_HVMCTX_TSC_ADJUST: b->tsc_adjust = e.data; break;
        case XKVM_HVMCTX_CPU_MSR: b->msrs = e.data; b->msrs_len = e.length; break;
        case XKVM_HVMCTX_IOAPIC: case XKVM_HVMCTX_PIC: case XKVM_HVMCTX_PIT:
        case XKVM_HVMCTX_PCI_IRQ: case XKVM_HVMCTX_ISA_IRQ: case XKVM_HVMCTX_PCI_LINK:
        case XKVM_HVMCTX_RTC: case XKVM_HVMCTX_HPET: case XKVM_HVMCTX_PMTIMER:
            /* Emulated platform devices a PVH domain does not have: Xen saves them
             * for every HVM domain; their state has nothing to apply here. */
            break;
        default:
            snprintf(err, errlen, "HVM context: %s is not supported",
                     xkvm_hvmctx_name(e.typecode) ? xkvm_hvmctx_name(e.typecode) : "entry");
            rc = -EINVAL;
        }
        if (rc)
            break;
    }
    if (!rc && n < 0) {
        snprintf(err, errlen, "HVM context: %s", w.err.msg);
        rc = -EINVAL;
    }
    for (unsigned i = 0; !rc && i < d->nr_vcpus; i++)
        if (!vb[i].cpu || !vb[i].lapic || !vb[i].lapic_regs) {
            snprintf(err, errlen, "HVM context: vCPU %u lacks its CPU, LAPIC or LAPIC_REGS", i);
            rc = -EINVAL;
        }
    int xs_size = xsave_size();
    uint8_t *xs = rc ? NULL : calloc(1, (size_t)xs_size);
    if (!rc && !xs) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    for (unsigned i = 0; !rc && i < d->nr_vcpus; i++)
        rc = load_vcpu(&d->vcpus[i], &vb[i], tsc_advance_ns, xs_size, xs, err, errlen);
    free(xs);
    free(vb);
    return rc;
}
