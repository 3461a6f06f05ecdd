/*
 * xenstore: the xenbus client against xenstored (tests/kvm/dom0-services.sh).
 *
 * Own domid from the relative node "domid" (the toolstack writes
 * /local/domain/<domid>/domid) against CPUID's; write/read/directory/rm under the
 * guest's own data/ subtree, values larger than the ring (1500 bytes; 3000 bytes may
 * meet xenstored's 2 KiB node quota: ENOSPC); a watch on
 * data/watched fires with its path and token, and no more after unwatch; a
 * transaction whose node is changed outside it ends with EAGAIN and the retry
 * commits; dom0's nodes (/local/domain/0, /vm, /libxl/<domid>) are not readable,
 * dom0's subtree and /tool not writable (EACCES or ENOENT).
 */
#include "../pv.h"
#include "../xtest.h"

static char buf[XS_VALUE_MAX + 1];
static char big[3001];

#define XS_OK(call)                                                             \
    do {                                                                        \
        int rc_ = (call);                                                       \
        if (rc_ < 0)                                                            \
            xtest_fail("%s: %s", #call, xs_errname(rc_));                       \
    } while (0)

static void expect_value(const char *path, const char *want)
{
    int rc = xs_read(0, path, buf, sizeof(buf));

    if (rc < 0)
        xtest_fail("read %s: %s", path, xs_errname(rc));
    if (strcmp(buf, want) || (size_t)rc != strlen(want))
        xtest_fail("read %s: \"%.60s\" (%d bytes), want \"%.60s\"", path, buf, rc, want);
}

static bool path_is(const char *got, const char *rel, uint64_t domid)
{
    char abs[128];

    snprintf(abs, sizeof(abs), "/local/domain/%lu/%s", (unsigned long)domid, rel);
    return !strcmp(got, rel) || !strcmp(got, abs);
}

static unsigned cb_hits;
static void watch_cb(const struct xs_watch_event *ev, void *arg)
{
    cb_hits++;
}

static void test_xenstore(void)
{
    uint64_t domid;
    int rc;

    XTEST_NEED_XEN();
    if ((rc = xenbus_init()))
        xtest_fail("xenbus_init: %s", xs_errname(rc));

    /* Who am I. */
    if ((rc = xs_read_u64(0, "domid", &domid)))
        xtest_fail("read domid: %s", xs_errname(rc));
    if (self_domid != DOMID_SELF && domid != self_domid)
        xtest_fail("xenstore domid %lu, CPUID domid %u", (unsigned long)domid, self_domid);
    rc = xs_read(0, "name", buf, 128);
    printf("xkvm-guest: xenstore: domid %lu, name \"%s\"\n", (unsigned long)domid,
           rc < 0 ? xs_errname(rc) : buf);

    /* Plain nodes under our own subtree. */
    XS_OK(xs_write(0, "data/test", "hello xenstore"));
    expect_value("data/test", "hello xenstore");
    XS_OK(xs_mkdir(0, "data/dir"));
    XS_OK(xs_write(0, "data/dir/a", "1"));
    XS_OK(xs_write(0, "data/dir/b", ""));
    expect_value("data/dir/b", "");
    rc = xs_directory(0, "data/dir", buf, sizeof(buf));
    if (rc != 2 || !((!strcmp(buf, "a") && !strcmp(buf + 2, "b")) ||
                     (!strcmp(buf, "b") && !strcmp(buf + 2, "a"))))
        xtest_fail("directory data/dir: %d entries (%s)", rc, rc < 0 ? xs_errname(rc) : buf);
    /* 1500 bytes: more than the 1 KiB ring, within xenstored's default 2 KiB quota
     * per node; 3000 bytes: over it (Xen: ENOSPC), either way the ring copes. */
    for (unsigned i = 0; i < sizeof(big) - 1; i++)
        big[i] = (char)('a' + i % 26);
    big[1500] = '\0';
    XS_OK(xs_write(0, "data/big", big));
    expect_value("data/big", big);
    big[1500] = 'a' + 1500 % 26;
    rc = xs_write(0, "data/big", big);
    if (rc == 0)
        expect_value("data/big", big);
    else if (rc != -XEN_ENOSPC && rc != -XEN_E2BIG)
        xtest_fail("write of 3000 bytes: %s, want success, ENOSPC or E2BIG", xs_errname(rc));
    printf("xkvm-guest: xenstore: 3000-byte value: %s\n", rc ? xs_errname(rc) : "stored");
    XS_OK(xs_rm(0, "data/big"));
    XS_OK(xs_rm(0, "data/dir"));
    if ((rc = xs_read(0, "data/dir/a", buf, sizeof(buf))) != -XEN_ENOENT)
        xtest_fail("data/dir/a after rm of data/dir: %d (%s)", rc, xs_errname(rc));
    XS_OK(xs_rm(0, "data/test"));
    if ((rc = xs_read(0, "data/test", buf, sizeof(buf))) != -XEN_ENOENT)
        xtest_fail("data/test after rm: %d (%s)", rc, xs_errname(rc));
    printf("xkvm-guest: xenstore: read/write/mkdir/directory/rm ok\n");

    /* A watch: Xen fires it once on registration, then on every change. */
    struct xs_watch_event ev;

    XS_OK(xs_write(0, "data/watched", "0"));
    XS_OK(xs_watch("data/watched", "tok-w", NULL, NULL));
    if (!xs_watch_next("tok-w", &ev, 5000))
        xtest_fail("no initial event for the watch on data/watched");
    XS_OK(xs_write(0, "data/watched", "1"));
    if (!xs_watch_next("tok-w", &ev, 5000))
        xtest_fail("write of data/watched fired no watch event");
    if (!path_is(ev.path, "data/watched", domid) || strcmp(ev.token, "tok-w"))
        xtest_fail("watch event path \"%s\" token \"%s\"", ev.path, ev.token);
    /* A child of the watched node fires it too. */
    XS_OK(xs_write(0, "data/watched/child", "x"));
    if (!xs_watch_next("tok-w", &ev, 5000))
        xtest_fail("write below data/watched fired no watch event");
    if (!path_is(ev.path, "data/watched/child", domid))
        xtest_fail("watch event for the child: path \"%s\"", ev.path);
    XS_OK(xs_unwatch("data/watched", "tok-w"));
    XS_OK(xs_write(0, "data/watched", "2"));
    if (xs_watch_next("tok-w", &ev, 300))
        xtest_fail("event after unwatch: \"%s\"", ev.path);

    /* A watch with a callback, dispatched. */
    XS_OK(xs_watch("data/cb", "tok-cb", watch_cb, NULL));
    XS_OK(xs_write(0, "data/cb", "1"));
    for (unsigned i = 0; i < 50 && cb_hits < 2; i++) {
        xs_dispatch();
        if (cb_hits < 2)
            wait_once(100);
    }
    if (cb_hits < 2)
        xtest_fail("watch callback ran %u times, want 2 (initial + write)", cb_hits);
    XS_OK(xs_unwatch("data/cb", "tok-cb"));
    printf("xkvm-guest: xenstore: watches ok (%lu events dropped)\n",
           (unsigned long)xs_events_dropped);

    /* Transactions: a conflicting write outside makes the commit fail with EAGAIN. */
    uint32_t tx;

    XS_OK(xs_write(0, "data/tx", "start"));
    XS_OK(xs_transaction_start(&tx));
    if ((rc = xs_read(tx, "data/tx", buf, sizeof(buf))) < 0)
        xtest_fail("read data/tx in transaction %u: %s", tx, xs_errname(rc));
    XS_OK(xs_write(tx, "data/tx", "from-tx"));
    XS_OK(xs_write(0, "data/tx", "outside"));
    expect_value("data/tx", "outside");             /* tx writes are not visible */
    rc = xs_transaction_end(tx, true);
    if (rc != -XEN_EAGAIN)
        xtest_fail("conflicting transaction ended with %d (%s), want EAGAIN", rc,
                   rc ? xs_errname(rc) : "success");
    unsigned tries;

    for (tries = 1; tries <= 5; tries++) {
        XS_OK(xs_transaction_start(&tx));
        if ((rc = xs_read(tx, "data/tx", buf, sizeof(buf))) < 0)
            xtest_fail("read data/tx in transaction %u: %s", tx, xs_errname(rc));
        XS_OK(xs_printf(tx, "data/tx", "from-tx-%s", buf));
        rc = xs_transaction_end(tx, true);
        if (rc != -XEN_EAGAIN)
            break;
    }
    if (rc)
        xtest_fail("retried transaction: %s after %u tries", xs_errname(rc), tries);
    expect_value("data/tx", "from-tx-outside");
    /* An aborted transaction leaves nothing behind. */
    XS_OK(xs_transaction_start(&tx));
    XS_OK(xs_write(tx, "data/tx", "aborted"));
    XS_OK(xs_transaction_end(tx, false));
    expect_value("data/tx", "from-tx-outside");
    XS_OK(xs_rm(0, "data/tx"));
    printf("xkvm-guest: xenstore: transactions ok (retry took %u)\n", tries);

    /* Other domains' nodes: dom0's are not ours to read or write. */
    char libxl[40];

    snprintf(libxl, sizeof(libxl), "/libxl/%lu", (unsigned long)domid);
    const char *const forbidden[] = { "/local/domain/0", "/local/domain/0/name", "/vm",
                                      libxl };
    for (unsigned i = 0; i < ARRAY_SIZE(forbidden); i++) {
        rc = xs_read(0, forbidden[i], buf, sizeof(buf));
        if (rc >= 0)
            xtest_fail("read %s succeeded: \"%.40s\"", forbidden[i], buf);
        if (rc != -XEN_EACCES && rc != -XEN_ENOENT)
            xtest_fail("read %s: %s, want EACCES or ENOENT", forbidden[i], xs_errname(rc));
        printf("xkvm-guest: xenstore: read %s: %s\n", forbidden[i], xs_errname(rc));
    }
    rc = xs_write(0, "/local/domain/0/data/xkvm-guest-was-here", "1");
    if (rc != -XEN_EACCES && rc != -XEN_ENOENT)
        xtest_fail("write into dom0's subtree: %d (%s)", rc, rc ? xs_errname(rc) : "ok");
    rc = xs_write(0, "/tool/xkvm-guest-was-here", "1");
    if (rc != -XEN_EACCES && rc != -XEN_ENOENT)
        xtest_fail("write of /tool/...: %d (%s)", rc, rc ? xs_errname(rc) : "ok");
}
XTEST("xenstore", test_xenstore);

/*
 * console-ring: with console=ring, lines=N (default 200) numbered lines through the
 * console ring (several times its 2 KiB, so the writer waits for xkvm-consoled to
 * drain it), and whatever arrived on the input ring, then PASS. The host checks that
 * every line reached RUNDIR/console-N.log.
 */
static void test_console_ring(void)
{
    char in[64];

    XTEST_NEED_XEN();
    pv_init();
    if (!console_ring_active())
        xtest_fail("console ring not in use (console=ring on the command line?)");
    uint64_t n = cmdline_get_u64("lines", 200);

    for (uint64_t i = 1; i <= n; i++)
        printf("xtest: console-ring: line %lu of %lu\n", (unsigned long)i,
               (unsigned long)n);
    size_t got = console_ring_read(in, sizeof(in) - 1);
    in[got] = '\0';
    for (size_t i = 0; i < got; i++)
        if (in[i] < ' ' || in[i] > '~')
            in[i] = '.';
    printf("xkvm-guest: console-ring: %zu input bytes \"%s\"\n", got, in);
}
XTEST("console-ring", test_console_ring);

/*
 * xenstore-bench: xenstore operations per second over the guest's store ring, the way
 * a PV driver makes them: `n=` (default 1000) pairs of write data/bench/k and read it
 * back, timed with Xen system time. Prints "xtest: xenstore-bench: ops=N ns_per_op=T".
 */
static void test_xenstore_bench(void)
{
    XTEST_NEED_XEN();
    int rc = xenbus_init();
    if (rc)
        xtest_fail("xenbus_init = %d", rc);
    uint64_t n = cmdline_get_u64("n", 1000);
    if (n == 0)
        xtest_fail("n must be at least 1");
    uint64_t t0 = xen_time_ns();
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = xs_printf(0, "data/bench", "%lu", (unsigned long)i)) < 0)
            xtest_fail("write %lu = %d", (unsigned long)i, rc);
        uint64_t v;
        if ((rc = xs_read_u64(0, "data/bench", &v)) < 0 || v != i)
            xtest_fail("read %lu = %d (value %lu)", (unsigned long)i, rc, (unsigned long)v);
    }
    uint64_t t1 = xen_time_ns();
    printf("xtest: xenstore-bench: ops=%lu ns_per_op=%lu\n", (unsigned long)(2 * n),
           (unsigned long)((t1 - t0) / (2 * n)));
}
XTEST("xenstore-bench", test_xenstore_bench);
