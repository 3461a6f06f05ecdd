/*
 * The ACPI fixed registers of a hardware-reduced PVH platform (platform_io.h): a guest
 * powering off through ACPI (Linux's acpi_power_off: SLP_TYP from \_S5 with SLP_EN,
 * written to the FADT's sleep control register) shuts the domain down as poweroff; a
 * write of the reset value to the FADT's reset register (Linux's ACPI reboot) as
 * reboot. Sleep states other than soft-off are not offered (the DSDT has \_S5 only)
 * and their writes are ignored. docs/hypervisor.md, "ACPI".
 */
#include "hv/platform_io.h"

#include <xen/sched.h>

#include "hv/acpi.h"
#include "hv/domain.h"
#include "hv/vcpu.h"
#include "util/log.h"

static void sleep_control_write(struct vcpu *v, uint8_t val)
{
    unsigned typ = (val >> ACPI_SLP_TYP_SHIFT) & ACPI_SLP_TYP_MASK;
    if (!(val & ACPI_SLP_EN))
        return;
    if (typ != ACPI_S5_SLP_TYP) {
        log_info("d%u v%u: ACPI sleep type %u requested: not offered, ignored",
                 v->d->domid, v->id, typ);
        return;
    }
    log_info("d%u v%u: guest powered off through ACPI (S5)", v->d->domid, v->id);
    domain_shutdown(v->d, SHUTDOWN_poweroff);
}

bool platform_io(struct vcpu *v, bool out, uint16_t port, uint8_t *data, unsigned size,
                 unsigned count)
{
    if (port != ACPI_SLEEP_CONTROL_PORT && port != ACPI_SLEEP_STATUS_PORT &&
        port != ACPI_RESET_PORT)
        return false;
    if (!out) {
        /* Nothing to report: no wake status, no sleep state entered. */
        for (unsigned i = 0; i < size * count; i++)
            data[i] = 0;
        return true;
    }
    if (size != 1)
        return true;        /* the FADT declares byte access: others are dropped */
    for (unsigned i = 0; i < count; i++) {
        if (port == ACPI_SLEEP_CONTROL_PORT) {
            sleep_control_write(v, data[i]);
        } else if (port == ACPI_RESET_PORT && data[i] == ACPI_RESET_VALUE) {
            log_info("d%u v%u: guest reset through the ACPI reset register", v->d->domid,
                     v->id);
            domain_shutdown(v->d, SHUTDOWN_reboot);
        }
    }
    return true;
}
