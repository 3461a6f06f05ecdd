/*
 * ACPI tables for a PVH domain (acpi.h; docs/hypervisor.md, "ACPI"): what libxl's
 * PVH builder gives a guest, laid out in one buffer: DSDT, FADT, MADT, XSDT, then
 * the RSDP. All little-endian, every table checksummed.
 */
#include "hv/acpi.h"

#include <errno.h>
#include <string.h>

#define HEADER_LEN      36
#define RSDP_LEN        36
#define FADT_LEN        268     /* ACPI 5.0: up to the sleep status register */
#define FADT_REVISION   5
#define MADT_REVISION   4       /* < 5: a disabled entry is a hot-pluggable CPU */
#define MADT_FIXED_LEN  (HEADER_LEN + 8)
#define MADT_LAPIC_LEN  8
#define MADT_X2APIC_LEN 16
#define XAPIC_ID_MAX    254     /* 255 is the broadcast ID */

/* FADT flags and IA-PC boot architecture flags (ACPI 5.0, 5.2.9). */
#define FADT_F_PWR_BUTTON       (1u << 4)   /* no fixed power button */
#define FADT_F_SLP_BUTTON       (1u << 5)   /* no fixed sleep button */
#define FADT_F_RESET_REG_SUP    (1u << 10)
#define FADT_F_HW_REDUCED_ACPI  (1u << 20)
#define BOOT_NO_VGA             (1u << 2)
#define BOOT_NO_ASPM            (1u << 4)
#define BOOT_NO_CMOS_RTC        (1u << 5)

#define GAS_SYSTEM_IO   1
#define GAS_ACCESS_BYTE 1

/* \_S5 = Package (4) { 5, 5, 0, 0 }: SLP_TYP 5 is soft-off (platform_io.c). */
static const uint8_t dsdt_aml[] = {
    0x08, '\\', '_', 'S', '5', '_',         /* Name (\_S5_, */
    0x12, 0x08, 0x04,                       /*   Package (4) { (PkgLength 8) */
    0x0A, ACPI_S5_SLP_TYP, 0x0A, ACPI_S5_SLP_TYP, 0x00, 0x00,
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return sum;
}

static void fix_checksum(uint8_t *table, size_t len, size_t at)
{
    table[at] = 0;
    table[at] = (uint8_t)(0 - acpi_checksum(table, len));
}

/* The common table header; the checksum is fixed once the body is written. */
static void header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
    memcpy(t, sig, 4);
    put32(t + 4, len);
    t[8] = rev;
    memcpy(t + 10, "Xen   ", 6);            /* OEM ID and table ID as libxl's */
    memcpy(t + 16, "HVM     ", 8);
    put32(t + 24, 0);                       /* OEM revision */
    memcpy(t + 28, "XKVM", 4);              /* creator */
    put32(t + 32, 1);
}

/* A Generic Address Structure: one byte in I/O space. */
static void gas_io_byte(uint8_t *p, uint16_t port)
{
    p[0] = GAS_SYSTEM_IO;
    p[1] = 8;                               /* bit width */
    p[2] = 0;                               /* bit offset */
    p[3] = GAS_ACCESS_BYTE;
    put64(p + 4, port);
}

static size_t align16(size_t x)
{
    return (x + 15) & ~(size_t)15;
}

static size_t madt_len(unsigned max)
{
    size_t n = MADT_FIXED_LEN;
    for (unsigned id = 0; id < max; id++)
        n += id <= XAPIC_ID_MAX ? MADT_LAPIC_LEN : MADT_X2APIC_LEN;
    return n;
}

size_t acpi_tables_size(unsigned max)
{
    size_t n = align16(HEADER_LEN + sizeof(dsdt_aml));
    n += align16(FADT_LEN);
    n += align16(madt_len(max));
    n += align16(HEADER_LEN + 2 * 8);       /* XSDT: FADT, MADT */
    return n + RSDP_LEN;
}

static void build_fadt(uint8_t *t, uint64_t dsdt)
{
    header(t, "FACP", FADT_LEN, FADT_REVISION);
    put32(t + 40, (uint32_t)dsdt);          /* DSDT */
    put16(t + 109, BOOT_NO_VGA | BOOT_NO_ASPM | BOOT_NO_CMOS_RTC);
    put32(t + 112, FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP |
                   FADT_F_HW_REDUCED_ACPI);
    gas_io_byte(t + 116, ACPI_RESET_PORT);
    t[128] = ACPI_RESET_VALUE;
    put64(t + 140, dsdt);                   /* X_DSDT */
    gas_io_byte(t + 244, ACPI_SLEEP_CONTROL_PORT);
    gas_io_byte(t + 256, ACPI_SLEEP_STATUS_PORT);
    fix_checksum(t, FADT_LEN, 9);
}

static void build_madt(uint8_t *t, unsigned online, unsigned max)
{
    uint32_t len = (uint32_t)madt_len(max);
    header(t, "APIC", len, MADT_REVISION);
    put32(t + 36, ACPI_LAPIC_BASE);
    put32(t + 40, 0);                       /* no 8259s: not PCAT_COMPAT */
    uint8_t *e = t + MADT_FIXED_LEN;
    for (unsigned id = 0; id < max; id++) {
        uint32_t enabled = id < online ? 1 : 0;
        if (id <= XAPIC_ID_MAX) {
            e[0] = 0;                       /* Processor Local APIC */
            e[1] = MADT_LAPIC_LEN;
            e[2] = (uint8_t)id;             /* ACPI processor UID */
            e[3] = (uint8_t)id;             /* APIC ID */
            put32(e + 4, enabled);
            e += MADT_LAPIC_LEN;
        } else {
            e[0] = 9;                       /* Processor Local x2APIC */
            e[1] = MADT_X2APIC_LEN;
            put16(e + 2, 0);
            put32(e + 4, id);               /* x2APIC ID */
            put32(e + 8, enabled);
            put32(e + 12, id);              /* ACPI processor UID */
            e += MADT_X2APIC_LEN;
        }
    }
    fix_checksum(t, len, 9);
}

static void build_rsdp(uint8_t *r, uint64_t xsdt)
{
    memcpy(r, "RSD PTR ", 8);
    memcpy(r + 9, "Xen   ", 6);
    r[15] = 2;                              /* ACPI 2.0+: the XSDT is used */
    put32(r + 16, 0);                       /* no RSDT */
    put32(r + 20, RSDP_LEN);
    put64(r + 24, xsdt);
    fix_checksum(r, 20, 8);                 /* ACPI 1.0 part */
    fix_checksum(r, RSDP_LEN, 32);          /* the whole of it */
}

int acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned online, unsigned max,
               struct acpi_built *out)
{
    if (max < 1 || max > ACPI_MAX_VCPUS || online > max || (gpa & 15))
        return -EINVAL;
    size_t need = acpi_tables_size(max);
    if (cap < need || gpa + need > (1ULL << 32))
        return -ENOSPC;         /* the FADT's 32-bit DSDT pointer must reach it */
    memset(buf, 0, need);
    size_t dsdt = 0;
    size_t fadt = dsdt + align16(HEADER_LEN + sizeof(dsdt_aml));
    size_t madt = fadt + align16(FADT_LEN);
    size_t xsdt = madt + align16(madt_len(max));
    size_t rsdp = xsdt + align16(HEADER_LEN + 2 * 8);

    header(buf + dsdt, "DSDT", HEADER_LEN + sizeof(dsdt_aml), 2);
    memcpy(buf + dsdt + HEADER_LEN, dsdt_aml, sizeof(dsdt_aml));
    fix_checksum(buf + dsdt, HEADER_LEN + sizeof(dsdt_aml), 9);
    build_fadt(buf + fadt, gpa + dsdt);
    build_madt(buf + madt, online, max);
    header(buf + xsdt, "XSDT", HEADER_LEN + 2 * 8, 1);
    put64(buf + xsdt + HEADER_LEN, gpa + fadt);
    put64(buf + xsdt + HEADER_LEN + 8, gpa + madt);
    fix_checksum(buf + xsdt, HEADER_LEN + 2 * 8, 9);
    build_rsdp(buf + rsdp, gpa + xsdt);
    out->rsdp_gpa = gpa + rsdp;
    out->size = rsdp + RSDP_LEN;
    return 0;
}
