/* ACPI tables for PVH domains (src/hv/acpi.c): layout, checksums, pointers, MADT. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hv/acpi.h"

HARNESS_MAIN_STATE("acpi");

#define GPA  ACPI_TABLES_GPA
#define CAP  (64u << 10)
static uint8_t buf[CAP];
static struct acpi_built built;

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* The table at a guest-physical address, checked: inside what was built, length fits. */
static const uint8_t *table_at(uint64_t gpa, const char *sig)
{
    if (gpa < GPA || gpa - GPA + 36 > built.size) {
        harness_fail(__FILE__, __LINE__, "%s at %#llx is outside the tables", sig, (unsigned long long)gpa);
        return NULL;
    }
    const uint8_t *t = buf + (gpa - GPA);
    if (memcmp(t, sig, 4)) {
        harness_fail(__FILE__, __LINE__, "wanted %s at %#llx, found %.4s", sig, (unsigned long long)gpa, (const char *)t);
        return NULL;
    }
    uint32_t len = get32(t + 4);
    if (len < 36 || gpa - GPA + len > built.size) {
        harness_fail(__FILE__, __LINE__, "%s: length %u runs past the tables", sig, len);
        return NULL;
    }
    if (acpi_checksum(t, len) != 0)
        harness_fail(__FILE__, __LINE__, "%s: checksum does not sum to 0", sig);
    return t;
}

static int build(unsigned online, unsigned max)
{
    memset(buf, 0xa5, sizeof(buf));
    return acpi_build(buf, sizeof(buf), GPA, online, max, &built);
}

static const uint8_t *rsdp(void)
{
    const uint8_t *r = buf + (built.rsdp_gpa - GPA);
    if (built.rsdp_gpa & 15)
        harness_fail(__FILE__, __LINE__, "RSDP at %#llx is not 16-byte aligned", (unsigned long long)built.rsdp_gpa);
    if (memcmp(r, "RSD PTR ", 8))
        harness_fail(__FILE__, __LINE__, "no RSDP signature");
    if (acpi_checksum(r, 20) || acpi_checksum(r, 36))
        harness_fail(__FILE__, __LINE__, "RSDP checksums wrong");
    if (r[15] != 2 || get32(r + 20) != 36)
        harness_fail(__FILE__, __LINE__, "RSDP revision %u length %u", r[15], get32(r + 20));
    return r;
}

static void test_pointers(void)
{
    CHECK(build(1, 1) == 0);
    const uint8_t *x = table_at(get64(rsdp() + 24), "XSDT");
    if (!x)
        return;
    CHECK(get32(x + 4) == 36 + 16);
    const uint8_t *fadt = table_at(get64(x + 36), "FACP");
    const uint8_t *madt = table_at(get64(x + 44), "APIC");
    if (!fadt || !madt)
        return;
    CHECK(get32(fadt + 40) == get64(fadt + 140));    /* DSDT and X_DSDT agree */
    const uint8_t *dsdt = table_at(get64(fadt + 140), "DSDT");
    CHECK(dsdt != NULL);
    CHECK(built.rsdp_gpa + 36 == GPA + built.size);
    CHECK(built.size <= acpi_tables_size(1));
}

static void test_fadt_hw_reduced(void)
{
    CHECK(build(2, 2) == 0);
    const uint8_t *x = table_at(get64(rsdp() + 24), "XSDT");
    const uint8_t *f = x ? table_at(get64(x + 36), "FACP") : NULL;
    if (!f)
        return;
    CHECK(f[8] == 5 && get32(f + 4) == 268);
    CHECK(get32(f + 112) & (1u << 20));             /* HW_REDUCED_ACPI */
    CHECK(get32(f + 112) & (1u << 10));             /* RESET_REG_SUP */
    /* Sleep control/status and reset: one byte in I/O space each. */
    CHECK(f[244] == 1 && f[245] == 8 && get64(f + 248) == ACPI_SLEEP_CONTROL_PORT);
    CHECK(f[256] == 1 && f[257] == 8 && get64(f + 260) == ACPI_SLEEP_STATUS_PORT);
    CHECK(f[116] == 1 && get64(f + 120) == ACPI_RESET_PORT && f[128] == ACPI_RESET_VALUE);
    CHECK(get32(f + 36) == 0);                      /* no FACS: HW-reduced */
    /* No legacy PM blocks: HW-reduced. */
    for (unsigned off = 56; off < 88; off += 4)
        CHECK(get32(f + off) == 0);
}

static void test_dsdt_s5(void)
{
    CHECK(build(1, 1) == 0);
    const uint8_t *x = table_at(get64(rsdp() + 24), "XSDT");
    const uint8_t *f = x ? table_at(get64(x + 36), "FACP") : NULL;
    const uint8_t *d = f ? table_at(get64(f + 140), "DSDT") : NULL;
    if (!d)
        return;
    uint32_t len = get32(d + 4);
    const uint8_t *aml = d + 36;
    /* Name (\_S5_, Package (4) { 5, 5, 0, 0 }) */
    static const uint8_t want[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04,
                                    0x0A, ACPI_S5_SLP_TYP, 0x0A, ACPI_S5_SLP_TYP, 0, 0 };
    CHECK(len == 36 + sizeof(want) && memcmp(aml, want, sizeof(want)) == 0);
    CHECK(d[8] == 2);
}

/* MADT entries: one per possible vCPU, enabled for the online ones, UID = APIC ID = id. */
static void check_madt(unsigned online, unsigned max)
{
    if (build(online, max)) {
        harness_fail(__FILE__, __LINE__, "build(%u, %u) failed", online, max);
        return;
    }
    const uint8_t *x = table_at(get64(rsdp() + 24), "XSDT");
    const uint8_t *m = x ? table_at(get64(x + 44), "APIC") : NULL;
    if (!m)
        return;
    CHECK(get32(m + 36) == ACPI_LAPIC_BASE);
    uint32_t len = get32(m + 4);
    unsigned n = 0, enabled = 0;
    for (uint32_t off = 44; off < len; n++) {
        const uint8_t *e = m + off;
        uint32_t id, uid, flags;
        if (e[0] == 0 && e[1] == 8) {
            uid = e[2]; id = e[3]; flags = get32(e + 4);
        } else if (e[0] == 9 && e[1] == 16) {
            id = get32(e + 4); flags = get32(e + 8); uid = get32(e + 12);
            if (id <= 254)
                harness_fail(__FILE__, __LINE__, "x2APIC entry for xAPIC-sized id %u", id);
        } else {
            harness_fail(__FILE__, __LINE__, "entry %u: type %u length %u", n, e[0], e[1]);
            return;
        }
        if (id != n || uid != n)
            harness_fail(__FILE__, __LINE__, "entry %u: APIC ID %u UID %u", n, id, uid);
        if ((flags & 1) != (n < online))
            harness_fail(__FILE__, __LINE__, "entry %u: flags %#x with %u online", n, flags, online);
        enabled += flags & 1;
        off += e[1];
    }
    if (n != max || enabled != online)
        harness_fail(__FILE__, __LINE__, "MADT for (%u, %u): %u entries, %u enabled", online, max, n, enabled);
}

static void test_madt_counts(void)
{
    check_madt(1, 1);
    check_madt(2, 4);
    check_madt(128, 128);
    check_madt(3, 300);     /* x2APIC entries above 254 */
}

static void test_errors(void)
{
    CHECK(acpi_build(buf, sizeof(buf), GPA, 2, 1, &built) == -EINVAL);
    CHECK(acpi_build(buf, sizeof(buf), GPA, 0, 0, &built) == -EINVAL);
    CHECK(acpi_build(buf, sizeof(buf), GPA + 8, 1, 1, &built) == -EINVAL);
    CHECK(acpi_build(buf, acpi_tables_size(4) - 1, GPA, 1, 4, &built) == -ENOSPC);
    CHECK(acpi_build(buf, sizeof(buf), 0xFFFFFF00ull, 1, 4, &built) == -ENOSPC);
    CHECK(acpi_build(buf, acpi_tables_size(4), GPA, 1, 4, &built) == 0);
}

/* Write one table to DIR/NAME.dat; 0 or -1. */
static int write_table(const char *dir, const char *name, const uint8_t *t)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t len = get32(t + 4);
    int rc = fwrite(t, 1, len, f) == len ? 0 : -1;
    return fclose(f) || rc ? -1 : 0;
}

/* Debian's iasl (acpica-tools) disassembles every table without an error or warning. */
static void test_iasl_disassembles(void)
{
    if (system("command -v iasl >/dev/null 2>&1") != 0) {
        harness_skip("iasl not installed (acpica-tools)");
        return;
    }
    char dir[] = "/tmp/test-acpi-XXXXXX";
    if (!mkdtemp(dir)) {
        harness_fail(__FILE__, __LINE__, "mkdtemp");
        return;
    }
    CHECK(build(2, 4) == 0);
    const uint8_t *x = table_at(get64(rsdp() + 24), "XSDT");
    const uint8_t *f = x ? table_at(get64(x + 36), "FACP") : NULL;
    const uint8_t *m = x ? table_at(get64(x + 44), "APIC") : NULL;
    const uint8_t *d = f ? table_at(get64(f + 140), "DSDT") : NULL;
    if (!d || !m || write_table(dir, "dsdt", d) || write_table(dir, "facp", f) ||
        write_table(dir, "apic", m) || write_table(dir, "xsdt", x)) {
        harness_fail(__FILE__, __LINE__, "writing the tables to %s", dir);
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && for t in dsdt facp apic xsdt; do iasl -d $t.dat >$t.log 2>&1 || "
             "{ echo \"iasl failed on $t\"; cat $t.log; exit 1; }; "
             "if grep -Eiq '(error|warning)[^s]' $t.log; then cat $t.log; exit 1; fi; done",
             dir);
    int rc = system(cmd);
    if (rc != 0)
        harness_fail(__FILE__, __LINE__, "iasl -d complained (exit %d); logs in %s", WEXITSTATUS(rc), dir);
    else if (system("grep -q '_S5_' /tmp/test-acpi-*/dsdt.dsl 2>/dev/null") != 0)
        harness_fail(__FILE__, __LINE__, "the disassembled DSDT has no _S5_ (%s)", dir);
    if (rc == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            harness_fail(__FILE__, __LINE__, "removing %s", dir);
    }
}

int main(void)
{
    RUN_TEST(test_pointers);
    RUN_TEST(test_fadt_hw_reduced);
    RUN_TEST(test_dsdt_s5);
    RUN_TEST(test_madt_counts);
    RUN_TEST(test_errors);
    RUN_TEST(test_iasl_disassembles);
    HARNESS_EXIT();
}
