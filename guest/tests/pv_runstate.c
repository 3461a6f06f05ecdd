/*
 * runstate: VCPUOP_register_runstate_memory_area and VCPUOP_get_runstate_info, as
 * Linux uses them at boot on every vCPU. The area must be written at registration
 * (running, entered no later than now), keep being updated (a timer event later shows
 * more running time), agree with get_runstate_info, and the times must add up to no
 * more than the time since the state was first entered. Bad vCPU ids: -ENOENT.
 */
#include "../pv.h"
#include "../xtest.h"

static struct vcpu_runstate_info area __attribute__((aligned(64)));

static void test_runstate(void)
{
    XTEST_NEED_XEN();
    pv_init();
    struct vcpu_register_runstate_memory_area reg = { .addr.v = &area };
    long rc = HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, &reg);
    if (rc)
        xtest_fail("register_runstate_memory_area = %ld", rc);
    uint64_t now = xen_time_ns();
    if (area.state != RUNSTATE_running)
        xtest_fail("state %d after registration, want running", area.state);
    if (area.state_entry_time == 0 || area.state_entry_time > now)
        xtest_fail("state_entry_time %lu, now %lu", (unsigned long)area.state_entry_time,
                   (unsigned long)now);
    uint64_t ran0 = area.time[RUNSTATE_running];

    /* A timer event refreshes the area. */
    uint32_t port;
    if ((rc = evtchn_bind_virq(VIRQ_TIMER, 0, &port)))
        xtest_fail("bind_virq(TIMER) = %ld", rc);
    evtchn_attach(port, 0, NULL, NULL);
    struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = xen_time_ns() + 20000000 };
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &t)))
        xtest_fail("set_singleshot_timer = %ld", rc);
    if (!wait_ge(&evtchn_count[port], 1, 2000))
        xtest_fail("no timer event");
    spin_ns(2000000);
    if (area.time[RUNSTATE_running] <= ran0)
        xtest_fail("running time did not grow: %lu -> %lu", (unsigned long)ran0,
                   (unsigned long)area.time[RUNSTATE_running]);

    struct vcpu_runstate_info info;
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &info)))
        xtest_fail("get_runstate_info = %ld", rc);
    if (info.state != RUNSTATE_running || info.time[RUNSTATE_running] < area.time[RUNSTATE_running])
        xtest_fail("get_runstate_info: state %d running %lu, area running %lu", info.state,
                   (unsigned long)info.time[RUNSTATE_running],
                   (unsigned long)area.time[RUNSTATE_running]);
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++)
        sum += info.time[i];
    if (sum > xen_time_ns())
        xtest_fail("times add up to %lu ns, more than system time", (unsigned long)sum);

    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 99, &info)) != -XEN_ENOENT)
        xtest_fail("get_runstate_info(vCPU 99) = %ld, want -ENOENT", rc);
    if ((rc = HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 99, &reg)) != -XEN_ENOENT)
        xtest_fail("register_runstate_memory_area(vCPU 99) = %ld, want -ENOENT", rc);
    printf("xkvm-guest: runstate: running %lu ns at the end\n",
           (unsigned long)info.time[RUNSTATE_running]);
}
XTEST("runstate", test_runstate);
