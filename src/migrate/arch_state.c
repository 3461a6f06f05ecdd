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
#include <xkvm/ctx.h>

#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/vcpu.h"
#include "migrate/vcpu_fields.h"

#define POWER_ON_PAT    0x0007040600070406ull

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

int arch_vcpu_mp_state(struct vcpu *v)
{
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
        return -errno;
    return (int)mp.mp_state;
}

uint32_t arch_vcpu_intr_state(struct vcpu *v)
{
    struct kvm_vcpu_events ev;
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
        return 0;
    uint32_t s = 0;
    if (ev.interrupt.shadow & KVM_X86_SHADOW_INT_STI)
        s |= XKVM_CTX_INTR_SHADOW_STI;
    if (ev.interrupt.shadow & KVM_X86_SHADOW_INT_MOV_SS)
        s |= XKVM_CTX_INTR_SHADOW_MOV_SS;
    if (ev.nmi.masked)
        s |= XKVM_CTX_INTR_NMI_MASKED;
    if (ev.nmi.pending)
        s |= XKVM_CTX_INTR_NMI_PENDING;
    if (ev.nmi.injected)
        s |= XKVM_CTX_INTR_NMI_INJECTED;
    return s;
}

/*
 * Back into KVM: the shadow, or an interrupt may be taken between a restored `sti` and
 * its `hlt`, and the vCPU then sleeps through the wake-up it was about to wait for
 * (the likeliest cause of a stock Linux whose CPU 0 once idled for good after a live
 * update in the nested VM).
 */
static void intr_state_load(uint32_t s, struct kvm_vcpu_events *ev)
{
    if (!s)
        return;     /* a new vCPU's own state: nothing to say (and no flag KVM may lack) */
    ev->flags |= KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
    ev->interrupt.shadow = (uint8_t)((s & XKVM_CTX_INTR_SHADOW_STI ? KVM_X86_SHADOW_INT_STI : 0) |
                                     (s & XKVM_CTX_INTR_SHADOW_MOV_SS ? KVM_X86_SHADOW_INT_MOV_SS : 0));
    ev->nmi.masked = !!(s & XKVM_CTX_INTR_NMI_MASKED);
    ev->nmi.pending = !!(s & XKVM_CTX_INTR_NMI_PENDING);
    ev->nmi.injected = !!(s & XKVM_CTX_INTR_NMI_INJECTED);
}

int arch_vcpu_halted(struct vcpu *v)
{
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
        return -errno;
    return mp.mp_state == KVM_MP_STATE_HALTED;
}

/* Every KVM_GET_* the table's KVM side needs, and XCR0's register. */
static int read_vcpu(struct vcpu *v, struct vcpu_kvm_state *k, struct kvm_xcrs *xcrs,
                     int xs_size, char *err, size_t errlen)
{
    const char *what = NULL;
    struct kvm_mp_state mp;
    memset(xcrs, 0, sizeof(*xcrs));
    /*
     * First: reading the mp_state makes KVM act on an INIT or SIPI it has not yet
     * (a vCPU paused right after another sent them), so the registers read below are
     * the ones the mp_state saved with DOMAIN_CONTEXT (pv_save.c) goes with.
     */
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0) what = "KVM_GET_MP_STATE";
    else if (ioctl(v->fd, KVM_GET_REGS, &k->regs) < 0) what = "KVM_GET_REGS";
    else if (ioctl(v->fd, KVM_GET_SREGS, &k->sregs) < 0) what = "KVM_GET_SREGS";
    else if (get_xsave(v, k->xsave, xs_size) < 0) what = "KVM_GET_XSAVE";
    else if (ioctl(v->fd, KVM_GET_XCRS, xcrs) < 0) what = "KVM_GET_XCRS";
    else if (ioctl(v->fd, KVM_GET_LAPIC, &k->lapic) < 0) what = "KVM_GET_LAPIC";
    else if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &k->events) < 0) what = "KVM_GET_VCPU_EVENTS";
    else if (ioctl(v->fd, KVM_GET_DEBUGREGS, &k->dbg) < 0) what = "KVM_GET_DEBUGREGS";
    else if (ioctl(v->fd, KVM_GET_MSRS, &k->msrs) != (int)k->msrs.hdr.nmsrs) what = "KVM_GET_MSRS";
    if (what) {
        snprintf(err, errlen, "v%u: %s: %s", v->id, what, strerror(errno));
        return -EIO;
    }
    return 0;
}

/* CPU_XSAVE: XCR0, the components in use, KVM's image. */
static int add_xsave(struct xkvm_hvmctx_builder *b, uint16_t id, const struct kvm_xcrs *xcrs,
                     const uint8_t *xs, int xs_size)
{
    uint64_t xcr0 = 0;
    for (uint32_t i = 0; i < xcrs->nr_xcrs && i < KVM_MAX_XCRS; i++)
        if (xcrs->xcrs[i].xcr == 0)
            xcr0 = xcrs->xcrs[i].value;
    size_t xlen = 24 + (size_t)xs_size;
    uint8_t *xb = malloc(xlen);
    if (!xb)
        return -ENOMEM;
    /* KVM's image may hold components (PKRU) outside XCR0: count them as used. */
    uint64_t xstate_bv;
    memcpy(&xstate_bv, xs + 512, 8);
    struct { uint64_t mask, xcr0, accum; } xh = { xcr0 | xstate_bv, xcr0, xcr0 | xstate_bv };
    memcpy(xb, &xh, 24);
    memcpy(xb + 24, xs, (size_t)xs_size);
    int rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU_XSAVE, id, xb, (uint32_t)xlen);
    free(xb);
    return rc;
}

/* CPU_MSR: the optional MSRs no fixed record has a field for (SPEC_CTRL). */
static int add_cpu_msrs(struct xkvm_hvmctx_builder *b, uint16_t id, const struct msr_set *m)
{
    struct { uint32_t count, pad; struct hvm_one_msr m[1]; } cm = {
        .count = 1, .m = { { .index = msr_index(M_SPEC_CTRL), .val = msr_get(m, M_SPEC_CTRL) } },
    };
    return xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU_MSR, id, &cm, sizeof(cm));
}

static int save_vcpu(struct vcpu *v, struct xkvm_hvmctx_builder *b, int xs_size,
                     uint8_t *xs, char *err, size_t errlen)
{
    struct vcpu_kvm_state k;
    struct kvm_xcrs xcrs;
    uint64_t have;
    memset(&k, 0, sizeof(k));
    k.xsave = xs;
    msr_set_init(&k.msrs, &have);
    if (read_vcpu(v, &k, &xcrs, xs_size, err, errlen))
        return -EIO;
    struct vcpu_xen_state x;
    vcpu_fields_save(&k, &x);

    uint16_t id = (uint16_t)v->id;
    int rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_CPU, id, &x.cpu, sizeof(x.cpu));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_LAPIC, id, &x.lapic, sizeof(x.lapic));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_LAPIC_REGS, id, x.lapic_regs.data,
                                  sizeof(x.lapic_regs.data));
    if (!rc) rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_MTRR, id, &x.mtrr, sizeof(x.mtrr));
    if (!rc && (rc = add_xsave(b, id, &xcrs, xs, xs_size)) == -ENOMEM) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!rc && (have & (1ull << M_TSC_ADJUST)))
        rc = xkvm_hvmctx_add(b, XKVM_HVMCTX_TSC_ADJUST, id, &x.tsc_adjust, sizeof(x.tsc_adjust));
    if (!rc && (have & (1ull << M_SPEC_CTRL)))
        rc = add_cpu_msrs(b, id, &k.msrs);
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

/* The fixed-layout records, or what a missing optional one means. */
static void blob_records(const struct vcpu_blob *vb, struct vcpu_xen_state *x)
{
    memset(x, 0, sizeof(*x));
    memcpy(&x->cpu, vb->cpu, sizeof(x->cpu));
    memcpy(&x->lapic, vb->lapic, sizeof(x->lapic));
    memcpy(x->lapic_regs.data, vb->lapic_regs, sizeof(x->lapic_regs.data));
    if (vb->mtrr)
        memcpy(&x->mtrr, vb->mtrr, sizeof(x->mtrr));
    else
        x->mtrr.msr_pat_cr = POWER_ON_PAT;
    if (vb->tsc_adjust)
        memcpy(&x->tsc_adjust, vb->tsc_adjust, sizeof(x->tsc_adjust));
}

/* CPU_XSAVE, if present: XCR0 and the whole image (over the table's FXSAVE region). */
static void load_xsave(const struct vcpu_blob *vb, struct kvm_xcrs *xcrs, uint8_t *xs,
                       int xs_size)
{
    memset(xcrs, 0, sizeof(*xcrs));
    if (!vb->xsave)
        return;
    uint64_t xcr0;
    memcpy(&xcr0, vb->xsave + 8, 8);
    xcrs->nr_xcrs = 1;
    xcrs->xcrs[0].xcr = 0;
    xcrs->xcrs[0].value = xcr0;
    uint32_t n = vb->xsave_len - 24;
    memset(xs, 0, (size_t)xs_size);
    memcpy(xs, vb->xsave + 24, n < (uint32_t)xs_size ? n : (uint32_t)xs_size);
}

/* CPU_MSR: only the optional MSRs this KVM has (SPEC_CTRL). */
static int load_cpu_msrs(const struct vcpu *v, const struct vcpu_blob *vb, struct msr_set *m,
                         uint64_t have, char *err, size_t errlen)
{
    for (uint32_t i = 0; vb->msrs && i < (vb->msrs_len - 8) / 16; i++) {
        uint32_t idx;
        uint64_t val;
        memcpy(&idx, vb->msrs + 8 + 16 * i, 4);
        memcpy(&val, vb->msrs + 16 + 16 * i, 8);
        if (idx != msr_index(M_SPEC_CTRL) || !(have & (1ull << M_SPEC_CTRL))) {
            snprintf(err, errlen, "v%u: CPU_MSR: MSR %#x cannot be restored here", v->id, idx);
            return -EINVAL;
        }
        msr_put(m, M_SPEC_CTRL, val);
    }
    return 0;
}

/* Every KVM_SET_*, in the order KVM needs; the deadline after the LAPIC (its timer
 * mode decides if it counts). */
static int write_vcpu(struct vcpu *v, struct vcpu_kvm_state *k, const struct kvm_xcrs *xcrs,
                      bool set_xcrs, bool set_deadline, uint64_t deadline, char *err,
                      size_t errlen)
{
    const char *what = NULL;
    if (ioctl(v->fd, KVM_SET_SREGS, &k->sregs) < 0) what = "KVM_SET_SREGS";
    else if (ioctl(v->fd, KVM_SET_REGS, &k->regs) < 0) what = "KVM_SET_REGS";
    else if (set_xcrs && ioctl(v->fd, KVM_SET_XCRS, xcrs) < 0) what = "KVM_SET_XCRS";
    else if (ioctl(v->fd, KVM_SET_XSAVE, k->xsave) < 0) what = "KVM_SET_XSAVE";
    else if (ioctl(v->fd, KVM_SET_DEBUGREGS, &k->dbg) < 0) what = "KVM_SET_DEBUGREGS";
    else if (ioctl(v->fd, KVM_SET_MSRS, &k->msrs) != (int)k->msrs.hdr.nmsrs) what = "KVM_SET_MSRS";
    else if (ioctl(v->fd, KVM_SET_LAPIC, &k->lapic) < 0) what = "KVM_SET_LAPIC";
    else if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &k->events) < 0) what = "KVM_SET_VCPU_EVENTS";
    if (!what && set_deadline) {
        struct msr_set dl;
        memset(&dl, 0, sizeof(dl));
        dl.hdr.nmsrs = 1;
        MSR_E(&dl)[0] = (struct kvm_msr_entry){ .index = msr_index(M_TSC_DEADLINE),
                                                .data = deadline };
        if (ioctl(v->fd, KVM_SET_MSRS, &dl) != 1)
            what = "KVM_SET_MSRS (TSC deadline)";
    }
    if (what) {
        snprintf(err, errlen, "v%u: %s: %s", v->id, what, errno ? strerror(errno) : "refused");
        return -EIO;
    }
    return 0;
}

static int load_vcpu(struct vcpu *v, const struct vcpu_blob *vb, const struct vcpu_load_ctx *ctx,
                     int xs_size, uint8_t *xs, char *err, size_t errlen)
{
    struct vcpu_xen_state x;
    blob_records(vb, &x);
    struct vcpu_kvm_state k;
    uint64_t have;
    memset(&k, 0, sizeof(k));
    memset(xs, 0, (size_t)xs_size);
    k.xsave = xs;
    msr_set_init(&k.msrs, &have);
    if (ioctl(v->fd, KVM_GET_SREGS, &k.sregs) < 0) {   /* keeps KVM's interrupt bitmap format */
        snprintf(err, errlen, "v%u: KVM_GET_SREGS: %s", v->id, strerror(errno));
        return -EIO;
    }
    memset(k.sregs.interrupt_bitmap, 0, sizeof(k.sregs.interrupt_bitmap));
    vcpu_fields_load(&x, &k, ctx);
    intr_state_load(v->restore_intr_state, &k.events);
    v->restore_intr_state = 0;

    struct kvm_xcrs xcrs;
    load_xsave(vb, &xcrs, xs, xs_size);
    msr_take(&k.msrs, msr_index(M_MTRRCAP));    /* read-only: KVM refuses a write */
    int rc = load_cpu_msrs(v, vb, &k.msrs, have, err, errlen);
    if (rc)
        return rc;
    uint64_t deadline = msr_take(&k.msrs, msr_index(M_TSC_DEADLINE));
    return write_vcpu(v, &k, &xcrs, vb->xsave != NULL, have & (1ull << M_TSC_DEADLINE),
                      deadline, err, errlen);
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
    struct vcpu_load_ctx ctx = { .tsc_advance_ns = tsc_advance_ns,
                                 .tsc_khz = d->tsc_khz ? d->tsc_khz : 1000000 };
    for (unsigned i = 0; !rc && i < d->nr_vcpus; i++)
        rc = load_vcpu(&d->vcpus[i], &vb[i], &ctx, xs_size, xs, err, errlen);
    free(xs);
    free(vb);
    return rc;
}
