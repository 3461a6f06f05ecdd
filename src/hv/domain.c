#include "hv/domain.h"
#include "hv/uffd_pages.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xen/sched.h>

#include "hv/acpi.h"
#include "hv/event.h"
#include "hv/gnttab.h"
#include "hv/hv.h"
#include "hv/hypercall.h"
#include "hv/kimage.h"
#include "hv/physmap.h"
#include "hv/pvh.h"
#include "hv/vcpu.h"
#include "util/bootloader.h"
#include "util/clock.h"
#include "util/log.h"
#include "xkvm/control.h"

/* The kernel file: a bzImage or a bare vmlinux (Debian's unpacks to 51 MiB). */
#define KERNEL_MAX_SIZE KIMAGE_ELF_MAX
#define START_INFO_SPACE (64u << 10)
#define DOMAIN_XEN_FRAMES 8

/* ---- observers ---- */

#define DOMAIN_OBSERVERS_MAX 4
static const struct domain_observer *observers[DOMAIN_OBSERVERS_MAX];
static unsigned nr_observers;

void domain_observe(const struct domain_observer *o)
{
    for (unsigned i = 0; i < nr_observers; i++)
        if (observers[i] == o)
            return;
    if (nr_observers < DOMAIN_OBSERVERS_MAX)
        observers[nr_observers++] = o;
    else
        log_err("domain observers: no room for another one");
}

#define NOTIFY(event, ...)                                                              \
    do {                                                                                \
        for (unsigned i_ = 0; i_ < nr_observers; i_++)                                  \
            if (observers[i_]->event)                                                   \
                observers[i_]->event(__VA_ARGS__);                                      \
    } while (0)

void domains_changed(void)
{
    NOTIFY(changed);
}

struct domain *domain_find(unsigned domid)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT)
        return NULL;
    return host.domains[domid];
}

struct domain *domain_lookup(unsigned domid)
{
    struct domain *d = domain_find(domid);
    return domain_listed(d) ? d : NULL;
}

/* A listed domain (other than self) with this name, or NULL. Main thread. */
static struct domain *domain_named(const char *name, const struct domain *self)
{
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++) {
        struct domain *d = host.domains[id];
        if (d != self && domain_listed(d) && !strcmp(d->cfg.name, name))
            return d;
    }
    return NULL;
}

int domain_publish(struct domain *d, char *err, size_t errlen)
{
    struct domain *other = domain_named(d->cfg.name, d);
    if (other) {
        snprintf(err, errlen, "a domain named '%s' was created meanwhile (domid %u)",
                 d->cfg.name, other->domid);
        return -EEXIST;
    }
    __atomic_store_n(&d->incoming, false, __ATOMIC_RELEASE);
    return 0;
}

bool domain_find_any(unsigned domid)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT)
        return false;
    pthread_mutex_lock(&host.lock);
    bool found = host.domains[domid] != NULL;
    pthread_mutex_unlock(&host.lock);
    return found;
}

/* A reference on a live domain; for a peer, only on one that is whole (not incoming). */
static struct domain *get_ref(unsigned domid, bool peer)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT)
        return NULL;
    pthread_mutex_lock(&host.lock);
    struct domain *d = host.domains[domid];
    if (d && !d->dying && !(peer && __atomic_load_n(&d->incoming, __ATOMIC_ACQUIRE)))
        __atomic_add_fetch(&d->refs, 1, __ATOMIC_ACQ_REL);
    else
        d = NULL;
    pthread_mutex_unlock(&host.lock);
    return d;
}

struct domain *domain_get(unsigned domid)
{
    return get_ref(domid, false);
}

struct domain *domain_get_peer(unsigned domid)
{
    return get_ref(domid, true);
}

void domain_put(struct domain *d)
{
    pthread_mutex_lock(&host.lock);
    __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&host.refs_cond);
    pthread_mutex_unlock(&host.lock);
}

bool domain_job_claim(struct domain *d)
{
    if (d->migrating || !domain_get(d->domid))
        return false;
    d->migrating = true;
    return true;
}

void domain_job_release(struct domain *d)
{
    d->migrating = false;
    domain_put(d);
}

void domain_set_shutdown_state(struct domain *d, int code, bool handled)
{
    /* As domains_handle_shutdowns leaves it: one pause from the shutdown, one more once
     * handled. */
    pthread_mutex_lock(&d->lock);
    d->shutdown_code = code;
    d->shutdown_handled = handled;
    d->pause_count += handled ? 2 : 1;
    pthread_mutex_unlock(&d->lock);
}

static int alloc_domid(void)
{
    for (unsigned i = 0; i < XKVM_DOMID_LIMIT - 1; i++) {
        unsigned id = host.next_domid;
        host.next_domid = host.next_domid + 1 >= XKVM_DOMID_LIMIT ? 1 : host.next_domid + 1;
        if (!host.domains[id])
            return (int)id;
    }
    return -ENOSPC;
}

/*
 * Read a boot file (what: "kernel", "ramdisk") of at most max bytes into memory: a
 * file that changes under us must not hurt xkvmd.
 */
static int read_boot_file(const char *what, const char *path, uint64_t max, void **data,
                          size_t *size, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not stall the daemon. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        return -errno;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
        rc = -EINVAL;
    } else if (st.st_size == 0) {
        snprintf(err, errlen, "%s %s: empty file", what, path);
        rc = -EINVAL;
    } else if ((uint64_t)st.st_size > max) {
        snprintf(err, errlen, "%s %s: larger than %llu MiB", what, path,
                 (unsigned long long)(max >> 20));
        rc = -EFBIG;
    }
    uint8_t *buf = rc ? NULL : malloc((size_t)st.st_size);
    if (!rc && !buf) {
        snprintf(err, errlen, "out of memory reading %s %s", what, path);
        rc = -ENOMEM;
    }
    size_t got = 0;
    while (!rc && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "reading %s %s: %s", what, path,
                     n < 0 ? strerror(errno) : "file shrank while being read");
            rc = -EIO;
        } else {
            got += (size_t)n;
        }
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    *size = got;
    return 0;
}

/*
 * Where KVM intercepts Xen hypercalls, VMCALL/VMMCALL come to xkvmd as KVM_EXIT_XEN.
 * KVM wants the hypercall-page MSR named (the intercept is off without it); the MSR
 * filter still sends the MSR write to xkvmd, which writes the page itself (KVM would
 * write the same native stubs). Nothing else of KVM's Xen support is used: shared_info,
 * event channels and timers stay xkvmd's, so KVM holds no Xen state to save.
 */
static int setup_xen_intercept(struct domain *d, char *err, size_t errlen)
{
    if (host.transport != HCALL_TRANSPORT_INTERCEPT)
        return 0;
    struct kvm_xen_hvm_config xc = {
        .flags = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
        .msr = XKVM_HYPERCALL_MSR,
    };
    if (ioctl(d->vm_fd, KVM_XEN_HVM_CONFIG, &xc) < 0) {
        snprintf(err, errlen, "KVM_XEN_HVM_CONFIG: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static int setup_vm(struct domain *d, char *err, size_t errlen)
{
    d->vm_fd = ioctl(host.kvm_fd, KVM_CREATE_VM, 0);
    if (d->vm_fd < 0) {
        snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
        return -errno;
    }
    fcntl(d->vm_fd, F_SETFD, FD_CLOEXEC);
    /* Both addresses lie in the MMIO hole, clear of RAM and the special pages. */
    /*
     * A PVH domain has a local APIC and nothing else (no PIC, IOAPIC or PIT), as on
     * Xen: the split irqchip keeps the LAPIC in the kernel and leaves the rest out.
     * It also lets xkvmd inject the event-channel callback vector as an external
     * interrupt, which like Xen's callback needs no EOI.
     */
    struct kvm_enable_cap split = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 0 } };
    /* Log-dirty with KVM_CLEAR_DIRTY_LOG (migration re-arms in chunks it chooses). */
    struct kvm_enable_cap manual = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                     .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } };
    if (ioctl(d->vm_fd, KVM_ENABLE_CAP, &manual) < 0) {
        snprintf(err, errlen, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(d->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ 0xfeffc000 }) < 0 ||
        ioctl(d->vm_fd, KVM_SET_TSS_ADDR, 0xfeffd000ul) < 0 ||
        ioctl(d->vm_fd, KVM_ENABLE_CAP, &split) < 0) {
        snprintf(err, errlen, "KVM VM setup: %s", strerror(errno));
        return -errno;
    }
    /* Trap the hypercall-page MSR to xkvmd; every other MSR stays KVM's. */
    struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR };
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
    if (ioctl(d->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
        snprintf(err, errlen, "KVM_CAP_X86_USER_SPACE_MSR: %s", strerror(errno));
        return -errno;
    }
    static uint8_t deny_bitmap[1] = { 0 };
    struct kvm_msr_filter filter = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
    filter.ranges[0] = (struct kvm_msr_filter_range){
        .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
        .nmsrs = 1, .base = XKVM_HYPERCALL_MSR, .bitmap = deny_bitmap,
    };
    if (ioctl(d->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0) {
        snprintf(err, errlen, "KVM_X86_SET_MSR_FILTER: %s", strerror(errno));
        return -errno;
    }
    return setup_xen_intercept(d, err, errlen);
}

/*
 * The vCPUs the ACPI tables describe: enabled in the MADT, and possible. All maxvcpus
 * are enabled. libxl marks those past vcpus disabled and has Xen emulate ACPI CPU
 * hotplug to add them later; xkvm has no ACPI CPU hotplug yet, and Linux cannot start
 * a CPU whose APIC ID no enabled MADT entry gave it ("native_cpu_up: bad cpu").
 * So Linux brings every vCPU up at boot, and its Xen CPU-hotplug watcher
 * (drivers/xen/cpu_hotplug.c, PV and PVH) then takes those whose
 * cpu/N/availability is "offline" down again; `xkvm vcpu-set` brings them back.
 */
static void acpi_vcpus(const struct domcfg *cfg, unsigned *online, unsigned *max)
{
    *max = domcfg_max_vcpus(cfg);
    *online = *max;
}

unsigned domain_acpi_pages(const struct domcfg *cfg)
{
    unsigned online, max;
    acpi_vcpus(cfg, &online, &max);
    return (unsigned)((acpi_tables_size(max) + XKVM_PAGE_SIZE - 1) >> XKVM_PAGE_SHIFT);
}

/*
 * RAM below the MMIO hole, the rest above 4 GiB; the ACPI tables (E820 ACPI, as libxl
 * marks them) and the special pages (reserved) in the hole.
 */
unsigned domain_memmap(const struct domain *d, struct hvm_memmap_table_entry *map)
{
    uint64_t ram_bytes = d->cfg.memory_mb << 20;
    unsigned n = 0;
    uint64_t low = ram_bytes < GUEST_LOWMEM_END ? ram_bytes : GUEST_LOWMEM_END;
    map[n++] = (struct hvm_memmap_table_entry){ .addr = 0, .size = low,
                                                .type = XEN_HVM_MEMMAP_TYPE_RAM };
    map[n++] = (struct hvm_memmap_table_entry){
        .addr = GUEST_ACPI_GFN << XKVM_PAGE_SHIFT,
        .size = (uint64_t)domain_acpi_pages(&d->cfg) << XKVM_PAGE_SHIFT,
        .type = XEN_HVM_MEMMAP_TYPE_ACPI };
    map[n++] = (struct hvm_memmap_table_entry){
        .addr = GUEST_SPECIAL_GFN << XKVM_PAGE_SHIFT,
        .size = GUEST_SPECIAL_PAGES * XKVM_PAGE_SIZE, .type = XEN_HVM_MEMMAP_TYPE_RESERVED };
    if (ram_bytes > low)
        map[n++] = (struct hvm_memmap_table_entry){
            .addr = GUEST_HIGHMEM_START, .size = ram_bytes - low,
            .type = XEN_HVM_MEMMAP_TYPE_RAM };
    return n;
}

/*
 * The p2m's window: RAM below the MMIO hole, the rest above 4 GiB, laid out for maxmem
 * (gfns past `memory` start as holes a balloon driver may populate).
 */
static int init_p2m(struct domain *d)
{
    uint64_t ram = domcfg_max_mb(&d->cfg) << 20;
    uint64_t low = ram < GUEST_LOWMEM_END ? ram : GUEST_LOWMEM_END;
    uint64_t top = ram > low ? GUEST_HIGHMEM_START + (ram - low) : 1ULL << 32;
    d->ram_frames = (d->cfg.memory_mb << 20) >> XKVM_PAGE_SHIFT;
    d->max_frames = ram >> XKVM_PAGE_SHIFT;
    return p2m_init(&d->p2m, d->vm_fd, d->domid, &host.mm, top >> XKVM_PAGE_SHIFT);
}

/* The memory map's RAM ranges, one memslot each: fn(p2m, gfn, nr) for each. */
/* The memory map's RAM ranges as {gfn, nr}: how many (1 or 2). */
static unsigned ram_ranges(const struct domain *d, uint64_t r[2][2])
{
    uint64_t ram = d->cfg.memory_mb << 20;
    uint64_t low = ram < GUEST_LOWMEM_END ? ram : GUEST_LOWMEM_END;
    r[0][0] = 0;
    r[0][1] = low >> XKVM_PAGE_SHIFT;
    r[1][0] = GUEST_HIGHMEM_START >> XKVM_PAGE_SHIFT;
    r[1][1] = (ram - low) >> XKVM_PAGE_SHIFT;
    return ram > low ? 2 : 1;
}

static int for_ram_ranges(struct domain *d, int (*fn)(struct p2m *, uint64_t, uint64_t))
{
    uint64_t r[2][2];
    unsigned n = ram_ranges(d, r);
    int rc = 0;
    for (unsigned i = 0; !rc && i < n; i++)
        rc = fn(&d->p2m, r[i][0], r[i][1]);
    return rc;
}

static int populate_memory(struct domain *d, char *err, size_t errlen)
{
    int rc = init_p2m(d);
    if (!rc)
        rc = for_ram_ranges(d, p2m_populate_ram);
    if (rc)
        snprintf(err, errlen, "populating %llu MiB of guest memory: %s",
                 (unsigned long long)d->cfg.memory_mb, strerror(-rc));
    return rc;
}

static int run_by_gfn(const void *a, const void *b)
{
    uint64_t x = ((const struct p2m_run *)a)->gfn, y = ((const struct p2m_run *)b)->gfn;
    return x < y ? -1 : x > y;
}

/* The extents' gfn runs, ascending; -EEXIST (with err) if two overlap. */
static int sorted_runs(const struct domain_adopt *a, struct p2m_run **out, char *err,
                       size_t errlen)
{
    struct p2m_run *runs = calloc(a->nr_extents ? a->nr_extents : 1, sizeof(*runs));
    if (!runs)
        return -ENOMEM;
    for (size_t i = 0; i < a->nr_extents; i++)
        runs[i] = (struct p2m_run){ .gfn = a->extents[i].gfn, .nr = a->extents[i].nr };
    qsort(runs, a->nr_extents, sizeof(*runs), run_by_gfn);
    for (size_t i = 1; i < a->nr_extents; i++)
        if (runs[i].gfn < runs[i - 1].gfn + runs[i - 1].nr) {
            snprintf(err, errlen, "gfns %#llx+%llu: mapped twice",
                     (unsigned long long)runs[i].gfn, (unsigned long long)runs[i].nr);
            free(runs);
            return -EEXIST;
        }
    *out = runs;
    return 0;
}

/*
 * Same-host migration, built before the source pauses: memslots over the RAM ranges,
 * all holes for now (domain_adopt_local fills them), and the gfn table faulted in, so
 * that the downtime pays for neither.
 */
static int cover_ram_empty(struct p2m *p, uint64_t gfn, uint64_t nr)
{
    return p2m_cover_ram(p, gfn, nr, NULL, 0);
}

static int prepare_local_memory(struct domain *d, char *err, size_t errlen)
{
    int rc = init_p2m(d);
    if (!rc)
        memset(d->p2m.gfn_to_mfn1, 0, d->p2m.nr_gfns * sizeof(*d->p2m.gfn_to_mfn1));
    if (!rc && (rc = for_ram_ranges(d, cover_ram_empty)))
        snprintf(err, errlen, "memslots: %s", strerror(-rc));
    return rc;
}

int domain_adopt_local(struct domain *d, const struct domain_adopt *a, char *err,
                       size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < a->nr_extents; i++) {
        const struct domain_extent *x = &a->extents[i];
        if ((rc = mm_bank_adopt(&host.mm, x->mfn, x->nr, d->domid, x->type))) {
            snprintf(err, errlen, "frames %#llx+%llu: not handed over (%s)",
                     (unsigned long long)x->mfn, (unsigned long long)x->nr, strerror(-rc));
        } else if ((rc = p2m_adopt_shared(&d->p2m, x->gfn, x->mfn, x->nr))) {
            snprintf(err, errlen, "gfns %#llx+%llu: %s", (unsigned long long)x->gfn,
                     (unsigned long long)x->nr, rc == -EEXIST ? "mapped twice" :
                     rc == -EINVAL ? "beyond the domain's memory" : strerror(-rc));
        }
    }
    /* Outside the RAM ranges (RAM the guest populated elsewhere): slots of their own. */
    struct p2m_run *runs = NULL;
    if (!rc && (rc = sorted_runs(a, &runs, err, errlen)) == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (!rc && (rc = p2m_build_memslots(&d->p2m, runs, a->nr_extents)))
        snprintf(err, errlen, "memslots: %s", strerror(-rc));
    free(runs);
    if (rc)     /* the other xkvmd runs on over them: never freed (punched) here */
        for (size_t i = 0; i < a->nr_extents; i++)
            mm_bank_hand_over(&host.mm, a->extents[i].mfn, a->extents[i].nr, d->domid);
    return rc;
}

/*
 * Live update: the memory is already there, in the frames the image names. Each
 * extent's frames are claimed with the p2m's name on them and mapped in one go: no
 * per-frame pass beyond writing the frame table and the gfn table once.
 */
static int adopt_memory(struct domain *d, const struct domain_adopt *a, char *err,
                        size_t errlen)
{
    if (a->migrating)
        return prepare_local_memory(d, err, errlen);
    struct p2m_run *runs = NULL;
    int rc = init_p2m(d);
    if (!rc && (rc = sorted_runs(a, &runs, err, errlen)) == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    for (size_t i = 0; !rc && i < a->nr_extents; i++) {
        const struct domain_extent *x = &a->extents[i];
        rc = mm_claim_named(&host.mm, x->mfn, x->nr, d->domid, x->type);
        if (rc) {
            snprintf(err, errlen, "frames %#llx+%llu: already taken",
                     (unsigned long long)x->mfn, (unsigned long long)x->nr);
            break;
        }
        if ((rc = p2m_adopt(&d->p2m, x->gfn, x->mfn, x->nr))) {
            /* Not in the p2m: its name goes, then the frames (domain_free does the rest). */
            mm_map_put(&host.mm, x->mfn, x->nr);
            mm_free_run(&host.mm, x->mfn, x->nr);
            snprintf(err, errlen, "gfns %#llx+%llu: %s", (unsigned long long)x->gfn,
                     (unsigned long long)x->nr, rc == -EEXIST ? "mapped twice" :
                     rc == -EINVAL ? "beyond the domain's memory" : strerror(-rc));
        }
    }
    /* The memslots as they were: one per RAM range, then the rest (p2m.h). */
    uint64_t r[2][2];
    unsigned nr = rc ? 0 : ram_ranges(d, r);
    for (unsigned i = 0; !rc && i < nr; i++)
        if ((rc = p2m_cover_ram(&d->p2m, r[i][0], r[i][1], runs, a->nr_extents)))
            snprintf(err, errlen, "memslots: %s", strerror(-rc));
    if (!rc && (rc = p2m_build_memslots(&d->p2m, runs, a->nr_extents)))
        snprintf(err, errlen, "memslots: %s", strerror(-rc));
    free(runs);
    return rc;
}

/*
 * xl's `ramdisk`, as Xen's domain builder places a PVH module: in RAM after the kernel
 * and start_info (its list page first, then the bytes, page-aligned), below 4 GiB,
 * named by hvm_start_info's module 0.
 */
static int load_ramdisk(struct domain *d, uint64_t at, uint64_t start_info_gpa, char *err,
                        size_t errlen)
{
    uint64_t ram = d->cfg.memory_mb << 20;
    uint64_t top = ram < GUEST_LOWMEM_END ? ram : GUEST_LOWMEM_END;
    uint64_t list = (at + XKVM_PAGE_SIZE - 1) & ~(uint64_t)(XKVM_PAGE_SIZE - 1);
    uint64_t base = list + XKVM_PAGE_SIZE;
    if (base >= top) {
        snprintf(err, errlen, "ramdisk %s: no guest memory left after the kernel",
                 d->cfg.ramdisk);
        return -ENOSPC;
    }
    void *data = NULL;
    size_t size = 0;
    int rc = read_boot_file("ramdisk", d->cfg.ramdisk, top - base, &data, &size, err, errlen);
    if (rc == -EFBIG)
        snprintf(err, errlen, "ramdisk %s: does not fit in the guest's memory below 4 GiB "
                 "after the kernel (%llu MiB free there)", d->cfg.ramdisk,
                 (unsigned long long)((top - base) >> 20));
    if (rc)
        return rc;
    struct gphys g = p2m_gphys(&d->p2m);
    struct hvm_modlist_entry mod = { .paddr = base, .size = size };
    uint8_t *dst = gphys_ptr(&g, base, size);
    char why[256] = "";
    if (!dst) {
        snprintf(why, sizeof(why), "0x%llx-0x%llx is not in guest memory",
                 (unsigned long long)base, (unsigned long long)(base + size));
        rc = -EFAULT;
    } else {
        memcpy(dst, data, size);
        rc = pvh_write_modules(&g, start_info_gpa, list, &mod, 1, why, sizeof(why));
    }
    free(data);
    if (rc)
        snprintf(err, errlen, "ramdisk %s: %s", d->cfg.ramdisk, why);
    else
        log_info("d%u: ramdisk %s: %zu bytes at %#llx (module 0)", d->domid,
                 d->cfg.ramdisk, size, (unsigned long long)base);
    return rc;
}

static int load_kernel(struct domain *d, uint32_t *entry, uint32_t *start_info,
                       char *err, size_t errlen)
{
    void *file = NULL;
    size_t size = 0;
    int rc = read_boot_file("kernel", d->cfg.kernel, KERNEL_MAX_SIZE, &file, &size, err,
                            errlen);
    if (rc)
        return rc;
    struct kimage k;
    struct pvh_image img;
    struct gphys g = p2m_gphys(&d->p2m);
    char why[256] = "";
    rc = kimage_extract(file, size, KIMAGE_ELF_MAX, &k, why, sizeof(why));
    if (!rc) {
        rc = pvh_parse(k.elf, k.size, &img, why, sizeof(why));
        if (!rc)
            rc = pvh_load(k.elf, k.size, &img, &g, why, sizeof(why));
        if (!rc)
            log_info("d%u: kernel %s: %s, ELF of %zu bytes, PVH entry %#x, loaded at "
                     "%#llx-%#llx", d->domid, d->cfg.kernel, k.format, k.size, img.entry,
                     (unsigned long long)img.load_lo, (unsigned long long)img.load_hi);
        kimage_free(&k);
    }
    free(file);
    if (rc) {
        snprintf(err, errlen, "kernel %s: %s", d->cfg.kernel, why);
        return rc;
    }
    struct hvm_memmap_table_entry map[DOMAIN_MEMMAP_MAX];
    unsigned nr_map = domain_memmap(d, map);
    uint64_t at = (img.load_hi + XKVM_PAGE_SIZE - 1) & ~(XKVM_PAGE_SIZE - 1);
    uint64_t si;
    rc = pvh_write_start_info(&g, at, at + START_INFO_SPACE, d->cfg.cmdline, map, nr_map,
                              &si, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "kernel %s: start_info: %s", d->cfg.kernel, why);
        return rc;
    }
    if (d->cfg.ramdisk[0] && (rc = load_ramdisk(d, at + START_INFO_SPACE, si, err, errlen)))
        return rc;
    *entry = img.entry;
    *start_info = (uint32_t)si;
    return 0;
}

/*
 * The ACPI tables (acpi.h) in pages of their own at GUEST_ACPI_GFN, and the RSDP's
 * address in the hvm_start_info at gpa start_info (version 1's rsdp_paddr).
 */
static int setup_acpi(struct domain *d, uint64_t start_info, char *err, size_t errlen)
{
    unsigned online, max, pages = domain_acpi_pages(&d->cfg);
    acpi_vcpus(&d->cfg, &online, &max);
    uint64_t gpa = GUEST_ACPI_GFN << XKVM_PAGE_SHIFT, mfn;
    int rc = pages > GUEST_ACPI_MAX_PAGES ? -E2BIG : 0;
    for (unsigned i = 0; !rc && i < pages; i++) {
        if (mm_alloc_run(&host.mm, 1, d->domid, FRAME_SPECIAL, &mfn) != 1)
            rc = -ENOMEM;
        else
            rc = physmap_place(d, GUEST_ACPI_GFN + i, mfn, INVALID_GFN);
    }
    struct acpi_built built = { 0 };
    p2m_hold(&d->p2m);
    uint8_t *tables = rc ? NULL : p2m_ptr(&d->p2m, gpa, (uint64_t)pages << XKVM_PAGE_SHIFT);
    struct hvm_start_info *si = p2m_ptr(&d->p2m, start_info, sizeof(*si));
    if (!rc && (!tables || !si))
        rc = -EFAULT;
    if (!rc)
        rc = acpi_build(tables, (size_t)pages << XKVM_PAGE_SHIFT, gpa, online, max, &built);
    if (!rc)
        si->rsdp_paddr = built.rsdp_gpa;
    p2m_release(&d->p2m);
    if (rc)
        snprintf(err, errlen, "ACPI tables: %s", strerror(-rc));
    return rc;
}

/*
 * bootloader = "pygrub" (util/bootloader.h): the kernel and command line come from the
 * guest's first disk, at every build (a restart reads grub.cfg again, as xl reruns
 * its bootloader). Loaded as if the config had named them, then deleted; d->cfg keeps
 * the bootloader, so a restart or a migration carries the config, not the files.
 */
static int load_kernel_from_disk(struct domain *d, uint32_t *entry, uint32_t *start_info,
                                 char *err, size_t errlen)
{
    struct bootloader_result *boot = calloc(1, sizeof(*boot));
    struct domcfg *saved = malloc(sizeof(*saved));
    int rc = boot && saved ? 0 : -ENOMEM;
    if (rc)
        snprintf(err, errlen, "out of memory");
    if (!rc)
        rc = bootloader_run(&d->cfg, host.rundir, boot, err, errlen);
    if (!rc) {
        log_info("d%u: pygrub found kernel, %s, args \"%s\"", d->domid,
                 boot->ramdisk[0] ? "ramdisk" : "no ramdisk", boot->cmdline);
        *saved = d->cfg;
        snprintf(d->cfg.kernel, sizeof(d->cfg.kernel), "%s", boot->kernel);
        snprintf(d->cfg.cmdline, sizeof(d->cfg.cmdline), "%s", boot->cmdline);
        snprintf(d->cfg.ramdisk, sizeof(d->cfg.ramdisk), "%s", boot->ramdisk);
        rc = load_kernel(d, entry, start_info, err, errlen);
        d->cfg = *saved;
    }
    if (boot)
        bootloader_cleanup(boot);
    free(boot);
    free(saved);
    return rc;
}

/*
 * What Xen's domain builder sets up for the PV backends: the xenstore and console
 * ring pages in the special region, and a port on each ring unbound for dom0, named
 * to the guest by HVM params (and to dom0 by the toolstack, through xenstore).
 */
static int setup_toolstack_pages(struct domain *d, char *err, size_t errlen)
{
    static const struct { uint64_t gfn; unsigned pfn_param, evtchn_param; } rings[] = {
        { GUEST_STORE_GFN, HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN },
        { GUEST_CONSOLE_GFN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN },
    };
    for (size_t i = 0; i < sizeof(rings) / sizeof(rings[0]); i++) {
        uint64_t mfn;
        uint32_t port;
        int rc;
        if (mm_alloc_run(&host.mm, 1, d->domid, FRAME_SPECIAL, &mfn) != 1)
            rc = -ENOMEM;
        else if (!(rc = physmap_place(d, rings[i].gfn, mfn, INVALID_GFN)))
            rc = evtchn_alloc_unbound_for(d, 0, &port);
        if (rc) {
            snprintf(err, errlen, "toolstack pages: %s", strerror(-rc));
            return rc;
        }
        d->hvm_params[rings[i].pfn_param] = rings[i].gfn;
        d->hvm_params[rings[i].evtchn_param] = port;
    }
    return 0;
}

/*
 * A domain that lives on (live update) keeps its logs; others start new ones: the
 * console log (xkvm-consoled writes it; xkvmd only starts it afresh) and the
 * hypervisor-console log (console_log.c).
 */
static int open_logs(struct domain *d, bool keep)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/" XKVM_CONSOLE_LOG_FMT, host.rundir, d->domid);
    int fd = open(path, O_WRONLY | O_CREAT | (keep ? 0 : O_TRUNC) | O_APPEND |
                  O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    fchmod(fd, 0600);    /* one left by an older xkvmd may be 0644 */
    close(fd);
    return console_log_open(d, keep);
}

/* Free everything a partly or fully built domain holds. Threads must be gone. */
static void domain_free(struct domain *d)
{
    NOTIFY(freeing, d);
    gnttab_domain_fini(d);
    event_domain_fini(d);
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        event_vcpu_fini(&d->vcpus[i]);
        vcpu_fini(&d->vcpus[i]);
    }
    free(d->vcpus);
    p2m_fini(&d->p2m);
    if (d->vm_fd >= 0)
        close(d->vm_fd);
    if (d->dmesg_fd >= 0)
        close(d->dmesg_fd);
    mm_free_owner(&host.mm, d->domid);
    free(d);
}

static struct domain *domain_with_uuid(const char *uuid)
{
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++)
        if (host.domains[id] && strcmp(host.domains[id]->cfg.uuid, uuid) == 0)
            return host.domains[id];
    return NULL;
}

/*
 * xl's `cpus`: each vCPU thread on its set of host CPUs, those of them xkvmd may use
 * (a restored or live-updated domain gets the same on whatever CPUs this host has).
 */
void domain_pin_vcpus(struct domain *d)
{
    cpu_set_t allowed;
    if (!d->cfg.nr_cpus || sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        return;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        if (!d->vcpus[i].thread_started || (d->cfg.nr_cpus > 1 && i >= d->cfg.nr_cpus))
            continue;
        const struct domcfg_cpuset *want = &d->cfg.cpus[d->cfg.nr_cpus > 1 ? i : 0];
        cpu_set_t set;
        CPU_ZERO(&set);
        unsigned n = 0;
        for (unsigned c = 0; c < CPU_SETSIZE && c < DOMCFG_HOST_CPUS; c++)
            if (domcfg_cpuset_has(want, c) && CPU_ISSET(c, &allowed)) {
                CPU_SET(c, &set);
                n++;
            }
        char text[256];
        domcfg_cpuset_format(want, text, sizeof(text));
        int rc = n ? pthread_setaffinity_np(d->vcpus[i].thread, sizeof(set), &set) : 0;
        if (!n)
            log_warn("d%u: vCPU %u: none of CPUs %s is available here: not pinned",
                     d->domid, i, text);
        else if (rc)
            log_warn("d%u: vCPU %u: pinning to CPUs %s: %s", d->domid, i, text, strerror(rc));
        else
            log_info("d%u: vCPU %u pinned to CPUs %s", d->domid, i, text);
    }
}

/*
 * Build a domain. A fresh one boots its kernel; one built for restore gets its memory,
 * special pages and state from a stream (src/migrate/restore.c) and stays paused
 * (one pause held for the restorer) until the restorer lets it go.
 */
static int domain_build(const struct domcfg *cfg, bool start_paused, bool for_restore,
                        const struct domain_adopt *adopt, uint16_t *domid_out,
                        struct domain **out, char *err, size_t errlen)
{
    int rc = domcfg_validate(cfg, err, errlen);
    if (rc)
        return rc;
    /* A requested domid (restore, migration, tests): refuse clearly if taken. */
    struct domain *other = *domid_out ? host.domains[*domid_out] : NULL;
    if (other) {
        if (domain_listed(other))
            snprintf(err, errlen, "domain id %u is taken (by '%s')", other->domid,
                     other->cfg.name);
        else
            snprintf(err, errlen, "domain id %u is taken (by a domain arriving)",
                     other->domid);
        return -EEXIST;
    }
    /* As names: an arriving domain's uuid is the xenstore import's to check. */
    if (cfg->uuid[0] && !for_restore && (other = domain_with_uuid(cfg->uuid))) {
        snprintf(err, errlen, "a domain with uuid %s already exists ('%s', domid %u)",
                 cfg->uuid, other->cfg.name, other->domid);
        return -EEXIST;
    }
    /* Incoming domains have no name yet: they take it when published, if it is free. */
    if ((other = domain_named(cfg->name, NULL))) {
        snprintf(err, errlen, "a domain named '%s' already exists (domid %u)", cfg->name,
                 other->domid);
        return -EEXIST;
    }
    int id;
    if (*domid_out) {
        id = *domid_out;
    } else if ((id = alloc_domid()) < 0) {
        snprintf(err, errlen, "no free domain id");
        return id;
    }
    /* RAM plus the Xen frames a domain starts with (shared_info, grant, rings). */
    uint64_t need = (cfg->memory_mb << (20 - XKVM_PAGE_SHIFT)) + DOMAIN_XEN_FRAMES +
                    domain_acpi_pages(cfg);
    uint64_t free_frames = mm_free_frames(&host.mm);
    if (!adopt && need > free_frames) {
        snprintf(err, errlen, "not enough memory: domain needs %llu MiB, %llu MiB free",
                 (unsigned long long)cfg->memory_mb,
                 (unsigned long long)(free_frames >> (20 - XKVM_PAGE_SHIFT)));
        return -ENOMEM;
    }
    uint64_t t0 = mono_ns();
    struct timespec c0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    struct domain *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    d->domid = (uint16_t)id;
    d->cfg = *cfg;
    d->vm_fd = -1;
    d->dmesg_fd = -1;
    console_log_init(d);
    /* Xen's hvm_domain_initialise: a triple fault reboots unless the toolstack says
     * otherwise (xl never does; a restore or live update brings the source's value). */
    d->hvm_params[HVM_PARAM_TRIPLE_FAULT_REASON] = SHUTDOWN_reboot;
    d->hvm_params[HVM_PARAM_ALTP2M] = d->cfg.altp2m;   /* xl.cfg's altp2m (docs/altp2m.md) */
    d->shutdown_code = -1;
    d->created_ns = t0;
    d->tsc_khz = host.tsc_khz;  /* a restore may bring another (domain_set_tsc_khz) */
    d->restoring = for_restore;
    d->incoming = for_restore && (!adopt || adopt->migrating);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    pthread_mutex_init(&d->reservation_lock, NULL);
    pthread_mutex_init(&d->altp2m_lock, NULL);

    uint32_t entry = 0, start_info = 0;
    rc = setup_vm(d, err, errlen);
    if (!rc)
        rc = adopt ? adopt_memory(d, adopt, err, errlen) : populate_memory(d, err, errlen);
    if (!rc && !for_restore)
        rc = d->cfg.bootloader[0] ? load_kernel_from_disk(d, &entry, &start_info, err, errlen)
                                  : load_kernel(d, &entry, &start_info, err, errlen);
    if (!rc && (rc = open_logs(d, adopt != NULL)))
        snprintf(err, errlen, "console logs: %s", strerror(-rc));
    if (!rc) {
        d->vcpus = calloc(domcfg_max_vcpus(cfg), sizeof(*d->vcpus));
        if (!d->vcpus) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
        }
    }
    if (!rc && (rc = event_domain_init(d)))
        snprintf(err, errlen, "event channels: %s", strerror(-rc));
    if (!rc && (rc = gnttab_domain_init(d)))
        snprintf(err, errlen, "grant table: %s", strerror(-rc));
    if (!rc && !for_restore)
        rc = setup_toolstack_pages(d, err, errlen);
    if (!rc && !for_restore)
        rc = setup_acpi(d, start_info, err, errlen);
    /* maxvcpus of them: those past vcpus wait, as secondary vCPUs do, to be brought up. */
    for (unsigned i = 0; !rc && i < domcfg_max_vcpus(cfg); i++) {
        d->vcpus[i].fd = -1;
        rc = vcpu_init(&d->vcpus[i], d, i, err, errlen);
        d->nr_vcpus = i + 1;
        if (!rc && (rc = event_vcpu_init(&d->vcpus[i])))
            snprintf(err, errlen, "vCPU %u events: %s", i, strerror(-rc));
    }
    if (!rc && !for_restore && (rc = vcpu_set_pvh_entry(&d->vcpus[0], entry, start_info)))
        snprintf(err, errlen, "setting boot registers: %s", strerror(-rc));
    if (rc) {
        domain_free(d);
        return rc;
    }

    if (start_paused) {
        d->pause_count = 1;
        d->toolstack_pauses = 1;
    }
    /* Held until the observers had their say (the toolstack holds it longer), or the
     * restore ends. */
    d->pause_count++;
    pthread_mutex_lock(&host.lock);
    host.domains[d->domid] = d;
    host.nr_domains++;
    pthread_mutex_unlock(&host.lock);
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        pthread_mutex_lock(&d->lock);
        d->nr_threads++;
        pthread_mutex_unlock(&d->lock);
        if (vcpu_start(&d->vcpus[i]) < 0) {
            pthread_mutex_lock(&d->lock);
            d->nr_threads--;
            pthread_mutex_unlock(&d->lock);
            snprintf(err, errlen, "cannot start vCPU thread");
            domain_destroy(d);
            return -EAGAIN;
        }
    }
    domain_pin_vcpus(d);
    if (!for_restore)
        NOTIFY(changed);
    if (for_restore) {
        struct timespec c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        log_info("d%u: built '%s' for restore: %llu MiB, %u vCPU(s), in %.3f ms (%.3f ms CPU)",
                 d->domid, cfg->name, (unsigned long long)cfg->memory_mb, cfg->vcpus,
                 (double)(mono_ns() - t0) / 1e6,
                 (double)((c1.tv_sec - c0.tv_sec) * 1000000000ll + c1.tv_nsec - c0.tv_nsec) / 1e6);
    } else {
        NOTIFY(built, d);
        domain_unpause(d);
        log_info("d%u: created '%s': %llu MiB, %u vCPU(s), kernel %s%s, entry %#x, in %.3f ms",
                 d->domid, cfg->name, (unsigned long long)cfg->memory_mb, cfg->vcpus,
                 cfg->bootloader[0] ? "from pygrub " : "", cfg->kernel, entry,
                 (double)(mono_ns() - t0) / 1e6);
    }
    *domid_out = d->domid;
    if (out)
        *out = d;
    return 0;
}

int domain_create(const struct domcfg *cfg, bool start_paused, uint16_t *domid_out,
                  char *err, size_t errlen)
{
    return domain_build(cfg, start_paused, false, NULL, domid_out, NULL, err, errlen);
}

int domain_create_for_restore(const struct domcfg *cfg, uint16_t domid, struct domain **out,
                              char *err, size_t errlen)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT) {
        snprintf(err, errlen, "domain id %u is not a guest's (1..%u)", domid,
                 XKVM_DOMID_LIMIT - 1);
        return -EINVAL;
    }
    return domain_build(cfg, false, true, NULL, &domid, out, err, errlen);
}

int domain_create_for_local(const struct domcfg *cfg, uint16_t domid, struct domain **out,
                            char *err, size_t errlen)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT) {
        snprintf(err, errlen, "domain id %u is not a guest's (1..%u)", domid,
                 XKVM_DOMID_LIMIT - 1);
        return -EINVAL;
    }
    struct domain_adopt none = { .migrating = true };
    return domain_build(cfg, false, true, &none, &domid, out, err, errlen);
}

int domain_create_for_live_update(const struct domcfg *cfg, uint16_t domid,
                                  const struct domain_adopt *adopt, struct domain **out,
                                  char *err, size_t errlen)
{
    if (domid == 0 || domid >= XKVM_DOMID_LIMIT) {
        snprintf(err, errlen, "domain id %u is not a guest's", domid);
        return -EINVAL;
    }
    return domain_build(cfg, false, true, adopt, &domid, out, err, errlen);
}

/* Caller holds d->lock: ask every vCPU to park. */
static void ask_pause_locked(struct domain *d)
{
    d->pause_count++;
    for (unsigned i = 0; i < d->nr_vcpus; i++)
        vcpu_kick(&d->vcpus[i]);
    if (d->throttle_pct)
        pthread_cond_broadcast(&d->cond);   /* a vCPU the throttle holds out wakes to park */
}

/* Caller holds d->lock. Waits until every live vCPU thread is parked. */
static void wait_parked_locked(struct domain *d)
{
    while (d->nr_parked < d->nr_threads)
        pthread_cond_wait(&d->cond, &d->lock);
}

static void pause_locked(struct domain *d)
{
    ask_pause_locked(d);
    wait_parked_locked(d);
}

void domain_pause(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    pause_locked(d);
    pthread_mutex_unlock(&d->lock);
}

/*
 * Pauses a shut-down domain holds: one from the shutdown, one more once the main loop
 * handled it (it pauses the domain to act on it). d->lock held.
 */
static unsigned shutdown_pauses(const struct domain *d)
{
    return d->shutdown_code < 0 ? 0 : d->shutdown_handled ? 2 : 1;
}

bool domain_at_rest(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    bool held = d->pause_count > d->toolstack_pauses + shutdown_pauses(d);
    pthread_mutex_unlock(&d->lock);
    return !held;
}

void domain_hold(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    d->pause_count++;
    pthread_mutex_unlock(&d->lock);
}

void domain_pause_others(struct domain *d, struct vcpu *self)
{
    pthread_mutex_lock(&d->lock);
    ask_pause_locked(d);
    while (d->nr_parked + (self != NULL) < d->nr_threads)
        pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

void domain_park_self_briefly(struct domain *d, struct vcpu *self)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    self->parked = true;
    d->nr_parked++;
    pthread_cond_broadcast(&d->cond);
    pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    d->nr_parked--;
    self->parked = false;
    pthread_mutex_unlock(&d->lock);
}

void domain_pause_begin(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    ask_pause_locked(d);
    pthread_mutex_unlock(&d->lock);
}

void domain_pause_wait(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    wait_parked_locked(d);
    pthread_mutex_unlock(&d->lock);
}

void domain_unpause(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    if (d->pause_count > 0 && --d->pause_count == 0)
        pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

int domain_toolstack_pause(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    d->toolstack_pauses++;
    pause_locked(d);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int domain_toolstack_unpause(struct domain *d)
{
    pthread_mutex_lock(&d->lock);
    int rc = -EINVAL;
    if (d->toolstack_pauses > 0) {
        d->toolstack_pauses--;
        if (--d->pause_count == 0)
            pthread_cond_broadcast(&d->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void domain_destroy(struct domain *d)
{
    pthread_mutex_lock(&host.lock);
    pthread_mutex_lock(&d->lock);
    d->dying = true;
    pthread_mutex_unlock(&host.lock);
    d->pause_count++;
    for (unsigned i = 0; i < d->nr_vcpus; i++)
        vcpu_kick(&d->vcpus[i]);
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->postcopy)
        uffd_pages_abandon(d->postcopy);    /* vCPUs blocked on a missing page go */
    for (unsigned i = 0; i < d->nr_vcpus; i++)
        if (d->vcpus[i].thread_started)
            pthread_join(d->vcpus[i].thread, NULL);
    if (d->postcopy) {
        uffd_pages_close(d->postcopy);
        free(d->postcopy);
        d->postcopy = NULL;
    }

    pthread_mutex_lock(&host.lock);
    host.domains[d->domid] = NULL;
    host.nr_domains--;
    while (__atomic_load_n(&d->refs, __ATOMIC_ACQUIRE) > 0)
        pthread_cond_wait(&host.refs_cond, &host.lock);
    pthread_mutex_unlock(&host.lock);
    log_info("d%u: destroyed", d->domid);
    NOTIFY(gone, d);
    domain_free(d);
    NOTIFY(changed);
}

void domain_shutdown(struct domain *d, unsigned reason)
{
    pthread_mutex_lock(&d->lock);
    if (d->shutdown_code < 0) {
        d->shutdown_code = (int)reason;
        /* Every vCPU stops; the main loop then applies on_poweroff & co. */
        d->pause_count++;
        for (unsigned i = 0; i < d->nr_vcpus; i++)
            if (!pthread_equal(d->vcpus[i].thread, pthread_self()))
                vcpu_kick(&d->vcpus[i]);
    }
    pthread_mutex_unlock(&d->lock);
    host_notify();
}

void domain_crash(struct domain *d, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_err("d%u: domain crashed: %s", d->domid, why);
    pthread_mutex_lock(&d->lock);
    if (d->shutdown_code < 0 && !d->crash_reason[0])
        snprintf(d->crash_reason, sizeof(d->crash_reason), "%s", why);
    pthread_mutex_unlock(&d->lock);
    domain_shutdown(d, SHUTDOWN_crash);
}

void domain_triple_fault(struct domain *d, unsigned vcpu)
{
    unsigned reason = (uint8_t)__atomic_load_n(&d->hvm_params[HVM_PARAM_TRIPLE_FAULT_REASON],
                                               __ATOMIC_RELAXED);
    log_warn("d%u v%u: triple fault: invoking HVM shutdown action %u (%s)", d->domid, vcpu,
             reason, shutdown_reason_name((int)reason));
    domain_shutdown(d, reason);
}

static enum domcfg_action action_for(const struct domain *d)
{
    switch (d->shutdown_code) {
    case SHUTDOWN_poweroff: return d->cfg.on_poweroff;
    case SHUTDOWN_reboot:   return d->cfg.on_reboot;
    case SHUTDOWN_suspend:  return DOMCFG_PRESERVE;
    default:                return d->cfg.on_crash;
    }
}

void domains_handle_shutdowns(void)
{
    for (unsigned id = 1; id < XKVM_DOMID_LIMIT; id++) {
        struct domain *d = host.domains[id];
        if (!d)
            continue;
        pthread_mutex_lock(&d->lock);
        bool act = d->shutdown_code >= 0 && !d->shutdown_handled;
        d->shutdown_handled |= act;
        pthread_mutex_unlock(&d->lock);
        if (!act)
            continue;
        if (__atomic_load_n(&d->migrating, __ATOMIC_ACQUIRE)) {
            /* The migration ends first (it holds a reference) and notifies again. */
            pthread_mutex_lock(&d->lock);
            d->shutdown_handled = false;
            pthread_mutex_unlock(&d->lock);
            continue;
        }
        /* Wait for every vCPU to park, so the domain is quiet before we act. */
        domain_pause(d);
        NOTIFY(changed);
        enum domcfg_action a = action_for(d);
        log_info("d%u: shut down (%s), action %s", d->domid,
                 shutdown_reason_name(d->shutdown_code), domcfg_action_name(a));
        if (a == DOMCFG_PRESERVE)
            continue;
        struct domcfg cfg = d->cfg;
        domain_destroy(d);
        if (a == DOMCFG_RESTART) {
            char err[256];
            uint16_t newid = 0;
            if (domain_create(&cfg, false, &newid, err, sizeof(err)))
                log_err("restarting '%s': %s", cfg.name, err);
            else
                log_info("'%s' restarted as d%u", cfg.name, newid);
        }
    }
}

uint64_t mm_count_owner_ram(const struct domain *d)
{
    uint64_t n = 0;
    for (uint64_t g = 0; g < d->p2m.nr_gfns; g++) {
        uint64_t m = p2m_lookup(&d->p2m, g);
        n += m != INVALID_MFN && host.mm.frames[m].type == FRAME_RAM;
    }
    return n;
}

const char *shutdown_reason_name(int code)
{
    switch (code) {
    case SHUTDOWN_poweroff:   return "poweroff";
    case SHUTDOWN_reboot:     return "reboot";
    case SHUTDOWN_suspend:    return "suspend";
    case SHUTDOWN_crash:      return "crash";
    case SHUTDOWN_watchdog:   return "watchdog";
    case SHUTDOWN_soft_reset: return "soft_reset";
    default:                  return "unknown";
    }
}

const char *domain_state_name(const struct domain *d)
{
    if (d->shutdown_code >= 0)
        return "shutdown";
    if (__atomic_load_n(&d->postcopy_paused, __ATOMIC_RELAXED))
        return "postcopy-paused";
    if (d->toolstack_pauses > 0)
        return "paused";
    return "running";
}
