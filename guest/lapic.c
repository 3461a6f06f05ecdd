/*
 * Local APIC, the minimum a Xen HVM guest needs: software-enable it (SVR), EOI the
 * per-vCPU upcall vector, and a one-shot timer used as a watchdog so that a lost
 * event ends a wait with a FAIL instead of hanging the vCPU in HLT.
 *
 * x2APIC (MSRs 0x800+) when CPUID.1:ECX[21] says so and apic=xapic is not given;
 * otherwise xAPIC MMIO at 0xFEE00000, which the boot identity map ([0, 4 GiB))
 * already maps. Both modes are per-CPU state: lapic_init runs on every vCPU.
 */
#include "pv.h"
#include "xtest.h"

#define APIC_MMIO       0xfee00000UL
#define APIC_BASE_EN    (1ULL << 11)
#define APIC_BASE_EXTD  (1ULL << 10)

/* Register offsets (xAPIC MMIO); the x2APIC MSR is 0x800 + off / 16. */
#define APIC_ID         0x020
#define APIC_EOI        0x0b0
#define APIC_SVR        0x0f0
#define APIC_LVT_TIMER  0x320
#define APIC_TMICT      0x380
#define APIC_TDCR       0x3e0
#define LVT_MASKED      (1u << 16)

static int use_x2apic = -1;                     /* decided once, on CPU 0 */

bool lapic_x2apic(void)
{
    return use_x2apic == 1;
}

static void apic_write(unsigned off, uint32_t v)
{
    if (use_x2apic == 1)
        wrmsr(0x800 + off / 16, v);
    else
        *(volatile uint32_t *)(uintptr_t)(APIC_MMIO + off) = v;
}

static uint32_t apic_read(unsigned off)
{
    if (use_x2apic == 1)
        return (uint32_t)rdmsr(0x800 + off / 16);
    return *(volatile uint32_t *)(uintptr_t)(APIC_MMIO + off);
}

/* Send an IPI: ICR low word (vector, delivery mode, level) to APIC ID dest. */
void lapic_send_icr(uint32_t dest, uint32_t lo)
{
    if (use_x2apic == 1) {
        wrmsr(0x830, ((uint64_t)dest << 32) | lo);
        return;
    }
    apic_write(0x310, dest << 24);
    apic_write(0x300, lo);
}

void lapic_eoi(void)
{
    apic_write(APIC_EOI, 0);
}

uint32_t lapic_id(void)
{
    uint32_t id = apic_read(APIC_ID);
    return use_x2apic == 1 ? id : id >> 24;
}

static void watchdog_irq(struct trap_frame *f)
{
    struct cpu *c = this_cpu();

    c->watchdog_fired = true;
    c->nr_watchdog++;
    lapic_eoi();
}

static void spurious_irq(struct trap_frame *f)
{
    /* No EOI for the spurious vector. */
}

void lapic_init(void)
{
    if (use_x2apic < 0) {
        uint32_t a, b, c, d;
        char mode[16] = "auto";

        cpuid(1, &a, &b, &c, &d);
        cmdline_get("apic", mode, sizeof(mode));
        use_x2apic = (c & (1u << 21)) && strcmp(mode, "xapic") ? 1 : 0;
        set_irq_handler(VEC_WATCHDOG, watchdog_irq);
        set_irq_handler(VEC_SPURIOUS, spurious_irq);
    }
    uint64_t base = rdmsr(MSR_APIC_BASE);
    uint64_t want = base | APIC_BASE_EN;

    if (use_x2apic == 1)
        want |= APIC_BASE_EXTD;
    if (want != base) {
        if (!(base & APIC_BASE_EN))         /* EN before EXTD: the legal order */
            wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN);
        wrmsr(MSR_APIC_BASE, want);
    }
    apic_write(APIC_SVR, 0x100 | VEC_SPURIOUS);     /* software enable */
    apic_write(APIC_LVT_TIMER, LVT_MASKED | VEC_WATCHDOG);
    apic_write(APIC_TDCR, 0x3);                     /* divide by 16 */
}

/* KVM's APIC bus runs at 1 GHz (Xen's at 100 MHz: a watchdog there is 10x longer,
 * which is fine for a watchdog). Divide by 16: about 16 ns per count. */
void watchdog_arm(uint64_t ms)
{
    uint64_t count = ms * 1000000 / 16;

    if (count > 0xffffffffULL)
        count = 0xffffffffULL;
    if (!count)
        count = 1;
    this_cpu()->watchdog_fired = false;
    apic_write(APIC_LVT_TIMER, VEC_WATCHDOG);      /* one-shot, unmasked */
    apic_write(APIC_TMICT, (uint32_t)count);
}

void watchdog_stop(void)
{
    apic_write(APIC_TMICT, 0);
    apic_write(APIC_LVT_TIMER, LVT_MASKED | VEC_WATCHDOG);
}
