/*
 * The platform's few I/O ports a PVH guest may touch (platform_io.c): the ACPI sleep
 * control, sleep status and reset registers the FADT names (acpi.h). docs/hypervisor.md,
 * "ACPI".
 */
#ifndef XKVM_HV_PLATFORM_IO_H
#define XKVM_HV_PLATFORM_IO_H

#include <stdbool.h>
#include <stdint.h>

struct vcpu;

/*
 * A port I/O exit: handled here (true), or not one of these ports (false). `data`
 * holds size * count bytes (written by the guest for out, to be filled for in).
 */
bool platform_io(struct vcpu *v, bool out, uint16_t port, uint8_t *data, unsigned size,
                 unsigned count);

#endif
