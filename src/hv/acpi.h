/*
 * ACPI tables for a PVH domain, as Xen's libxl builds them for PVH guests (RSDP, XSDT,
 * a hardware-reduced FADT, a DSDT and a MADT): I/O-free, built into a buffer that
 * will sit at a given guest-physical address. docs/hypervisor.md, "ACPI".
 *
 * The MADT has one processor entry per possible vCPU (`max`): enabled for the vCPUs
 * online at boot (`online`), disabled for the rest, which Linux then counts as
 * hot-pluggable. APIC ID and ACPI processor UID are the vCPU id (Linux PVH takes the
 * UID as its Xen vCPU id); IDs above 254 get x2APIC entries.
 *
 * The FADT names two I/O ports, handled by platform_io.c: the sleep control register
 * (the DSDT's \_S5 says which SLP_TYP means soft-off) and the reset register.
 */
#ifndef XKVM_HV_ACPI_H
#define XKVM_HV_ACPI_H

#include <stddef.h>
#include <stdint.h>

/* Where libxl puts a PVH guest's ACPI tables (ACPI_INFO_PHYSICAL_ADDRESS). */
#define ACPI_TABLES_GPA         0xFC000000ULL
#define ACPI_LAPIC_BASE         0xFEE00000u

/* The FADT's fixed registers (SystemIO, one byte each). */
#define ACPI_SLEEP_CONTROL_PORT 0xB004      /* where Xen's HVM PM1a control block is */
#define ACPI_SLEEP_STATUS_PORT  0xB000
#define ACPI_RESET_PORT         0x0CF9
#define ACPI_RESET_VALUE        0x06
#define ACPI_SLP_EN             (1u << 5)   /* in the sleep control register */
#define ACPI_SLP_TYP_SHIFT      2
#define ACPI_SLP_TYP_MASK       7u
#define ACPI_S5_SLP_TYP         5           /* \_S5's value: soft-off */

#define ACPI_MAX_VCPUS          4096u

/* Bytes the tables take for `max` vCPUs (RSDP included): a bound for the buffer. */
size_t acpi_tables_size(unsigned max);

struct acpi_built {
    uint64_t rsdp_gpa;          /* for hvm_start_info.rsdp_paddr */
    size_t size;                /* bytes of buf used */
};

/*
 * Build the tables into buf (zeroed first), which the guest will see at `gpa`.
 * online <= max, 1 <= max <= ACPI_MAX_VCPUS. 0, -EINVAL or -ENOSPC.
 */
int acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned online, unsigned max,
               struct acpi_built *out);

/* The ACPI table checksum rule: every byte of a table sums to 0 (mod 256). */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

#endif
