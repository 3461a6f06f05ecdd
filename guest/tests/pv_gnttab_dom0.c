/*
 * gnttab-dom0: a page granted to dom0, mapped by a dom0 service through xkvmd's dom0
 * socket (tests/kvm/dom0-iface.sh drives the service side with xkvm-dom0-probe).
 *
 * The guest writes PING into a page, grants it to domid 0 (ref 8), grants the same
 * page to another domain (ref 9) and a second page read-only to dom0 (ref 10), prints
 * the refs, and waits for the service to write PONG. While the service still maps
 * the page Xen marks the entry GTF_reading|GTF_writing; once it unmaps, the flags
 * clear and the guest ends the grant as a frontend does. Then PASS.
 */
#include "../pv.h"
#include "../xtest.h"

#define PING "xkvm-gnttab-dom0 ping"
#define PONG "xkvm-gnttab-dom0 pong"
#define REF_DOM0 8
#define REF_OTHER 9
#define REF_RO 10

static uint8_t shared_page[4096] __attribute__((aligned(4096)));
static uint8_t ro_page[4096] __attribute__((aligned(4096)));

static void grant(grant_entry_v1_t *gt, unsigned ref, void *page, domid_t dom, uint16_t ro)
{
    gt[ref].frame = (uint32_t)((uintptr_t)page >> 12);
    gt[ref].domid = dom;
    __atomic_store_n(&gt[ref].flags, (uint16_t)(GTF_permit_access | ro), __ATOMIC_RELEASE);
}

static uint16_t entry_flags(grant_entry_v1_t *gt, unsigned ref)
{
    return __atomic_load_n(&gt[ref].flags, __ATOMIC_ACQUIRE);
}

static void yield(void)
{
    HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

static void test_gnttab_dom0(void)
{
    XTEST_NEED_XEN();
    grant_entry_v1_t *gt = gnttab_init();
    if (!gt)
        xtest_fail("grant table set-up failed");
    memcpy(shared_page, PING, sizeof(PING));
    memcpy(ro_page, PING, sizeof(PING));
    grant(gt, REF_DOM0, shared_page, 0, 0);
    grant(gt, REF_OTHER, shared_page, 0x7fef, 0);
    grant(gt, REF_RO, ro_page, 0, GTF_readonly);
    printf("xtest: gnttab-dom0: gref=%u other=%u ro=%u gfn=%#lx\n", REF_DOM0, REF_OTHER,
           REF_RO, (unsigned long)((uintptr_t)shared_page >> 12));

    while (memcmp((const void *)shared_page, PONG, sizeof(PONG)))
        yield();
    uint16_t f = entry_flags(gt, REF_DOM0);
    printf("xkvm-guest: gnttab-dom0: saw pong, entry flags %#x\n", f);
    if ((f & (GTF_reading | GTF_writing)) != (GTF_reading | GTF_writing))
        xtest_fail("entry flags %#x while dom0 maps the page writable", f);

    /* Ending access as a frontend does: only once dom0 has let go, atomically. */
    for (;;) {
        f = entry_flags(gt, REF_DOM0);
        if (f & (GTF_reading | GTF_writing)) {
            yield();
            continue;
        }
        if (__atomic_compare_exchange_n(&gt[REF_DOM0].flags, &f, 0, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            break;
    }
    if (entry_flags(gt, REF_RO) & (GTF_reading | GTF_writing))
        xtest_fail("read-only grant still marked in use: %#x", entry_flags(gt, REF_RO));
    printf("xkvm-guest: gnttab-dom0: dom0 unmapped, grant ended\n");
}
XTEST("gnttab-dom0", test_gnttab_dom0);
