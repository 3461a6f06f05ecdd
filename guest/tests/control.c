/*
 * control: answer the toolstack's requests as Linux's drivers/xen/manage.c does
 * (tests/kvm/verbs.sh): advertise control/feature-poweroff and feature-reboot, watch
 * control/shutdown and control/sysrq. A shutdown request ("poweroff", "halt",
 * "reboot") is acknowledged by writing "" back in the transaction that read it, then
 * the guest shuts down with that reason (SCHEDOP_shutdown); any other value is
 * ignored. A sysrq key is acknowledged the same way and printed. Runs until asked.
 */
#include "../pv.h"
#include "../xtest.h"

static char value[64];

/* Read and acknowledge control/NODE in one transaction; "" if there was nothing. */
static void take_request(const char *node, bool (*handled)(const char *))
{
    for (;;) {
        uint32_t tx;
        int rc = xs_transaction_start(&tx);

        if (rc)
            xtest_fail("transaction start: %s", xs_errname(rc));
        rc = xs_read(tx, node, value, sizeof(value));
        if (rc <= 0) {
            value[0] = '\0';
            xs_transaction_end(tx, false);
            return;
        }
        if (handled(value) && (rc = xs_write(tx, node, "")))
            xtest_fail("acknowledging %s: %s", node, xs_errname(rc));
        rc = xs_transaction_end(tx, true);
        if (rc == -XEN_EAGAIN)
            continue;
        if (rc)
            xtest_fail("transaction end: %s", xs_errname(rc));
        return;
    }
}

static bool shutdown_known(const char *v)
{
    return !strcmp(v, "poweroff") || !strcmp(v, "halt") || !strcmp(v, "reboot");
}

static bool sysrq_key(const char *v)
{
    return v[0] != '\0';
}

static void test_control(void)
{
    struct xs_watch_event ev;
    int rc;

    XTEST_NEED_XEN();
    if ((rc = xenbus_init()))
        xtest_fail("xenbus_init: %s", xs_errname(rc));
    if ((rc = xs_write(0, "control/feature-poweroff", "1")) ||
        (rc = xs_write(0, "control/feature-reboot", "1")))
        xtest_fail("writing control/feature-*: %s", xs_errname(rc));
    if ((rc = xs_watch("control/shutdown", "shutdown", NULL, NULL)) ||
        (rc = xs_watch("control/sysrq", "sysrq", NULL, NULL)))
        xtest_fail("watching control/: %s", xs_errname(rc));
    printf("xkvm-guest: control: ready\n");
    for (;;) {
        if (!xs_watch_next(NULL, &ev, 600000))
            continue;
        if (!strcmp(ev.token, "sysrq")) {
            take_request("control/sysrq", sysrq_key);
            if (value[0])
                printf("xkvm-guest: control: sysrq '%s'\n", value);
            continue;
        }
        take_request("control/shutdown", shutdown_known);
        if (!value[0])
            continue;
        if (!shutdown_known(value)) {
            printf("xkvm-guest: control: ignoring shutdown request \"%s\"\n", value);
            continue;
        }
        printf("xkvm-guest: control: shutdown request \"%s\" acknowledged\n", value);
        shutdown(strcmp(value, "reboot") ? SHUTDOWN_poweroff : SHUTDOWN_reboot);
    }
}
XTEST("control", test_control);
