/*
 * The guest's TSC rate (d->tsc_khz): the host's where the domain was built, and
 * kept across save, migration and live update (the domain context's TSC_INFO), since
 * the guest calibrated its clock, udelay and TSC-deadline timer against it. On a
 * host whose TSC runs at another rate, KVM scales the guest's TSC where it can
 * (KVM_CAP_TSC_CONTROL, KVM_SET_TSC_KHZ); where it cannot (kvm-pvm has no TSC
 * scaling) the domain is refused rather than run with a clock that drifts.
 * docs/migration.md, "TSC rate".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv/cpuid.h"
#include "hv/domain.h"
#include "hv/hv.h"
#include "hv/vcpu.h"
#include "util/log.h"

/* KVM's own tolerance (tsc_tolerance_ppm): closer rates need no scaling. */
#define TSC_TOLERANCE_PPM 250

static bool rates_match(uint32_t a, uint32_t b)
{
    uint64_t diff = a > b ? a - b : b - a;
    return diff * 1000000ull <= (uint64_t)b * TSC_TOLERANCE_PPM;
}

/* The Xen time leaf names the rate: rebuild each vCPU's CPUID (before it first runs). */
static int set_cpuid(struct domain *d, struct vcpu *v)
{
    struct kvm_cpuid2 *c = cpuid_build(host.supported_cpuid, v->id, d->domid, d->tsc_khz);
    int rc = c && ioctl(v->fd, KVM_SET_CPUID2, c) == 0 ? 0 : c ? -errno : -ENOMEM;
    free(c);
    return rc;
}

int domain_set_tsc_khz(struct domain *d, uint32_t khz, char *err, size_t errlen)
{
    if (!khz || !host.tsc_khz || rates_match(khz, host.tsc_khz))
        return 0;       /* unknown, or what this host runs at anyway */
    if (!host.has_tsc_control) {
        snprintf(err, errlen, "the guest's TSC runs at %u kHz, this host's at %u kHz, and "
                 "this host's KVM (%s) cannot scale a guest's TSC (no KVM_CAP_TSC_CONTROL): "
                 "the guest's clock and timers would run %s", khz, host.tsc_khz,
                 host.kvm_module, khz > host.tsc_khz ? "slow" : "fast");
        return -EOPNOTSUPP;
    }
    for (unsigned i = 0; i < d->nr_vcpus; i++)
        if (ioctl(d->vcpus[i].fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0) {
            int rc = -errno;
            snprintf(err, errlen, "KVM_SET_TSC_KHZ %u on vCPU %u: %s", khz, i, strerror(errno));
            return rc;
        }
    d->tsc_khz = khz;
    d->tsc_scaled = true;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        int rc = set_cpuid(d, &d->vcpus[i]);
        if (rc) {
            snprintf(err, errlen, "KVM_SET_CPUID2 on vCPU %u: %s", i, strerror(-rc));
            return rc;
        }
    }
    log_info("d%u: guest TSC scaled to %u kHz (this host's: %u kHz)", d->domid, khz,
             host.tsc_khz);
    return 0;
}
