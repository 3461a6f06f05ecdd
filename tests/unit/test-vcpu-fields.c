/* The Xen <-> KVM vCPU field table (src/migrate/vcpu_fields.c): complete, and both
 * directions agree. No KVM: the table converts structs in memory. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "migrate/vcpu_fields.h"

HARNESS_MAIN_STATE("vcpu-fields");

/* The Xen records the table covers, as spans of struct vcpu_xen_state. */
static const struct { const char *name; size_t off, size; } records[] = {
    { "CPU", offsetof(struct vcpu_xen_state, cpu), sizeof(struct hvm_hw_cpu) },
    { "LAPIC", offsetof(struct vcpu_xen_state, lapic), sizeof(struct hvm_hw_lapic) },
    { "LAPIC_REGS", offsetof(struct vcpu_xen_state, lapic_regs),
      sizeof(struct hvm_hw_lapic_regs) },
    { "MTRR", offsetof(struct vcpu_xen_state, mtrr), sizeof(struct hvm_hw_mtrr) },
    { "TSC_ADJUST", offsetof(struct vcpu_xen_state, tsc_adjust), sizeof(struct hvm_tsc_adjust) },
};

/* Every byte of every record belongs to exactly one entry. */
static void test_every_xen_byte_once(void)
{
    static uint8_t owners[sizeof(struct vcpu_xen_state)];
    memset(owners, 0, sizeof(owners));
    for (size_t i = 0; i < vcpu_nr_fields; i++) {
        const struct vcpu_field *f = &vcpu_fields[i];
        unsigned spans = f->kind == VF_SEG ? 4 : f->xen[1].size ? 2 : 1;
        for (unsigned j = 0; j < 4; j++)
            CHECK_MSG((j < spans) == (f->xen[j].size != 0), "%s: span %u", f->name, j);
        for (unsigned j = 0; j < spans; j++) {
            REQUIRE(f->xen[j].off + f->xen[j].size <= sizeof(owners));
            for (uint32_t b = 0; b < f->xen[j].size; b++)
                owners[f->xen[j].off + b]++;
        }
    }
    for (size_t r = 0; r < sizeof(records) / sizeof(records[0]); r++)
        for (size_t b = 0; b < records[r].size; b++)
            CHECK_MSG(owners[records[r].off + b] == 1, "%s byte %zu: %u entries", records[r].name,
                      b, owners[records[r].off + b]);
}

/* Each kind has what it needs: sizes that fit, a KVM side, slots that exist. */
static void test_entries_well_formed(void)
{
    for (size_t i = 0; i < vcpu_nr_fields; i++) {
        const struct vcpu_field *f = &vcpu_fields[i];
        for (size_t j = 0; j < i; j++)
            CHECK_MSG(strcmp(f->name, vcpu_fields[j].name), "%s twice", f->name);
        switch (f->kind) {
        case VF_COPY:
            CHECK_MSG(f->kvm_size == 1 || f->kvm_size == 2 || f->kvm_size == 4 ||
                      f->kvm_size == 8, "%s: kvm size %u", f->name, f->kvm_size);
            CHECK_MSG(f->xen[0].size == 4 || f->xen[0].size == 8, "%s", f->name);
            break;
        case VF_BYTES:
            CHECK_MSG(f->kvm_size == f->xen[0].size, "%s", f->name);
            break;
        case VF_SEG:
            CHECK_MSG(f->kvm_size == sizeof(struct kvm_segment), "%s", f->name);
            break;
        case VF_MSR:
            CHECK_MSG(f->xen[0].size % 8 == 0 && f->msr + f->xen[0].size / 8 <= M_COUNT,
                      "%s", f->name);
            break;
        case VF_FN:
            CHECK_MSG(f->save, "%s has no save helper", f->name);
            break;
        case VF_IGNORED:
            break;
        }
    }
}

/* Every MSR slot is some entry's (SPEC_CTRL: arch_state's CPU_MSR record). */
static void test_every_msr_slot_once(void)
{
    unsigned seen[M_COUNT] = { 0 };
    seen[M_TSC]++;              /* FN(cpu.tsc) */
    seen[M_SPEC_CTRL]++;        /* CPU_MSR */
    for (size_t i = 0; i < vcpu_nr_fields; i++)
        if (vcpu_fields[i].kind == VF_MSR)
            for (uint32_t j = 0; j < vcpu_fields[i].xen[0].size / 8; j++)
                seen[vcpu_fields[i].msr + j]++;
    for (unsigned s = 0; s < M_COUNT; s++)
        CHECK_MSG(seen[s] == 1, "slot %u (MSR %#x): %u", s, msr_index(s), seen[s]);
}

static void msr_set_all(struct msr_set *m)
{
    memset(m, 0, sizeof(*m));
    for (unsigned s = 0; s < M_COUNT; s++)
        MSR_E(m)[m->hdr.nmsrs++].index = msr_index(s);
}

/* Xen -> KVM -> Xen gives the same records, but for what KVM derives. */
static void test_round_trip(void)
{
    static uint8_t xs_in[4096], xs_out[4096];
    struct vcpu_xen_state x, y;
    memset(&x, 0, sizeof(x));
    for (size_t i = 0; i < sizeof(x.cpu.fpu_regs); i++)
        x.cpu.fpu_regs[i] = (uint8_t)(i * 7);
    uint64_t *gpr = &x.cpu.rax;
    for (unsigned i = 0; i < 28; i++)       /* rax .. dr7 */
        gpr[i] = 0x1111111111111111ull * (i % 15 + 1);
    x.cpu.rflags |= 2;
    x.cpu.cs_sel = 0x10; x.cpu.cs_limit = 0xffffffff; x.cpu.cs_base = 0;
    x.cpu.cs_arbytes = 0xa9b;
    x.cpu.tr_sel = 0x28; x.cpu.tr_limit = 0x67; x.cpu.tr_base = 0xffff8000;
    x.cpu.tr_arbytes = 0x8b;
    x.cpu.idtr_limit = 0xfff; x.cpu.idtr_base = 0xfffffe0000000000ull;
    x.cpu.gdtr_limit = 0x7f; x.cpu.gdtr_base = 0xfffffe0000001000ull;
    x.cpu.sysenter_cs = 0x10; x.cpu.msr_lstar = 0xffffffff81000000ull;
    x.cpu.msr_efer = 0xd01; x.cpu.msr_tsc_aux = 3; x.cpu.tsc = 123456789;
    x.cpu.pending_vector = 14; x.cpu.pending_type = 3; x.cpu.pending_error_valid = 1;
    x.cpu.pending_valid = 1; x.cpu.error_code = 2;
    x.cpu.flags = XEN_X86_FPU_INITIALISED;
    x.lapic.apic_base_msr = 0xfee00900;     /* enabled, BSP */
    x.lapic.tdt_msr = 99;
    x.lapic_regs.data[0xf1] = 0x01;         /* SPIV: software-enabled */
    x.lapic_regs.data[0x3e0] = 0x0b;        /* TDCR: divide by 1 */
    x.lapic.timer_divisor = 1;
    x.mtrr.msr_pat_cr = 0x0007040600070406ull;
    x.mtrr.msr_mtrr_var[3] = 0xabc000;
    x.mtrr.msr_mtrr_fixed[10] = 0x0606060606060606ull;
    x.mtrr.msr_mtrr_def_type = 0xc06;
    x.tsc_adjust.tsc_adjust = 42;

    struct vcpu_kvm_state k;
    memset(&k, 0, sizeof(k));
    k.xsave = xs_in;
    msr_set_all(&k.msrs);
    const struct vcpu_load_ctx ctx = { .tsc_advance_ns = 1000, .tsc_khz = 2000000 };
    vcpu_fields_load(&x, &k, &ctx);
    CHECK_EQ(k.regs.rflags, x.cpu.rflags);
    CHECK_EQ(k.sregs.cs.l, 1);
    CHECK_EQ(k.sregs.tr.unusable, 0);
    CHECK_EQ(k.sregs.ds.unusable, 1);
    CHECK_EQ(k.sregs.idt.limit, 0xfff);
    CHECK_EQ(k.events.exception.injected, 1);
    CHECK_EQ(k.events.exception.nr, 14);
    CHECK_EQ(msr_get(&k.msrs, M_TSC), 123456789 + 2000);
    CHECK_EQ(msr_get(&k.msrs, M_TSC_DEADLINE), 99);

    memcpy(xs_out, xs_in, sizeof(xs_out));
    k.xsave = xs_out;
    msr_put(&k.msrs, M_TSC, x.cpu.tsc);    /* as if no time passed */
    vcpu_fields_save(&k, &y);
    CHECK(!memcmp(&x.cpu, &y.cpu, sizeof(x.cpu)));
    CHECK(!memcmp(&x.lapic, &y.lapic, sizeof(x.lapic)));
    CHECK(!memcmp(&x.lapic_regs, &y.lapic_regs, sizeof(x.lapic_regs)));
    CHECK(!memcmp(&x.mtrr, &y.mtrr, sizeof(x.mtrr)));
    CHECK(!memcmp(&x.tsc_adjust, &y.tsc_adjust, sizeof(x.tsc_adjust)));
}

int main(void)
{
    RUN_TEST(test_every_xen_byte_once);
    RUN_TEST(test_entries_well_formed);
    RUN_TEST(test_every_msr_slot_once);
    RUN_TEST(test_round_trip);
    HARNESS_EXIT();
}
