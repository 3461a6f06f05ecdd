/*
 * hcfuzz: a hostile guest. For `seconds=` (default 10), or exactly `count=` calls, it
 * makes hypercalls with random numbers (0..63, a few past them, absurd ones through
 * the port-I/O transport), random sub-ops and arguments: pointers into its own scratch
 * memory (aligned, misaligned, page-crossing, running into an unmapped page),
 * unmapped, non-canonical and kernel-half addresses, huge counts, other domains' ids,
 * random ports, grant refs, vCPUs and frames. The generator is guest/fuzzgen.c; `seed=`
 * (default 1) picks the sequence. At the end it prints
 *     xkvm-guest: hcfuzz: seed S: N hypercalls in T ms, checksum 0x...
 * and passes: the verdict on the host (xkvmd and the dom0 services up, other guests
 * unaffected, nothing leaked) is the suite's, tests/kvm/hcfuzz.sh.
 *
 * It never ends itself on purpose: SCHEDOP_shutdown, _watchdog and _block (which may
 * never return once the fuzzer closed or masked its timer port), VCPUOP_down of vCPU 0,
 * VCPUOP_up of another vCPU (it would start a random context) and SCHEDOP_poll without
 * a timeout are never issued, and no frame or pointer it passes names its own image
 * (fuzzgen.h). So a crash of this guest is a finding too: the hypervisor wrote where it
 * was not pointed, or a filter above has a gap. Interrupts stay off throughout: the
 * fuzzer sets random upcall vectors, which must not reach it.
 *
 * `verbose=N` prints every call from the N-th on, before it is made (to find the one
 * that takes a host down); `progress=` seconds between progress lines (default 5).
 */
#include "../fuzzgen.h"
#include "../xtest.h"

#include <xen/errno.h>
#include <xen/hvm/hvm_vcpu.h>

struct call {
    uint64_t nr;
    uint64_t a[5];
};

/* ---- time: Xen system time from the TSC, calibrated once --------------------------- */

static struct {
    uint64_t xen0, tsc0, khz;
} clock;
static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));

static void clock_init(void)
{
    uint32_t a, b, c, d;
    cpuid_count(xen.base + 3, 2, &a, &b, &c, &d);
    clock.khz = a;
    if (!clock.khz) {
        cpuid_count(xen.base + 3, 0, &a, &b, &c, &d);
        clock.khz = c ? c : 1000000;
    }
    struct xen_add_to_physmap x = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
        .gpfn = (uint64_t)(uintptr_t)shinfo_page >> 12,
    };
    if (HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x))
        xtest_fail("cannot map shared_info for the clock");
    const volatile struct vcpu_time_info *t =
        &((const volatile struct shared_info *)shinfo_page)->vcpu_info[0].time;
    uint32_t ver;
    do {
        ver = t->version;
        barrier();
        clock.tsc0 = rdtsc();
        uint64_t delta = clock.tsc0 - t->tsc_timestamp;
        if (t->tsc_shift >= 0)
            delta <<= t->tsc_shift;
        else
            delta >>= -t->tsc_shift;
        clock.xen0 = t->system_time + (uint64_t)(((unsigned __int128)delta *
                                                  t->tsc_to_system_mul) >> 32);
        barrier();
    } while ((ver & 1) || ver != t->version);
}

static uint64_t elapsed_ns(void)
{
    uint64_t d = rdtsc() - clock.tsc0;
    return d / clock.khz * 1000000 + d % clock.khz * 1000000 / clock.khz;
}

static uint64_t xen_now(void)
{
    return clock.xen0 + elapsed_ns();
}

/* A timer deadline: soon, now, past, 0, wrapped negative, far ahead, random. */
static uint64_t deadline(void)
{
    switch (fz_below(8)) {
    case 0: case 1: return xen_now() + fz_below(3000000);
    case 2: return xen_now() - fz_below(1000000000);
    case 3: return 0;
    case 4: return 1;
    case 5: return 0x8000000000000000ULL | fz_rand();
    case 6: return xen_now() + (1ULL << 50) + fz_below(1ULL << 40);
    default: return fz_word();
    }
}

/* ---- argument helpers ---------------------------------------------------------------- */

/* A pointer argument for len bytes: mostly a filled scratch buffer, else the pool. */
static uint64_t ptr_arg(size_t len)
{
    if (fz_chance(70))
        return (uint64_t)(uintptr_t)fz_buf(len);
    uint64_t p = fz_ptr(len);
    if (p >= FZ_GUARD_VA && p < FZ_GUARD_VA + PAGE_SIZE)
        fz_fill((void *)(uintptr_t)p, FZ_GUARD_VA + PAGE_SIZE - p);
    return p;
}

/* Room for n objects of size sz: in scratch, or ending exactly at the guard page's end
 * (what a hypervisor reads past the last one faults). */
static void *array_of(size_t n, size_t sz, bool at_guard)
{
    if (at_guard && n * sz <= PAGE_SIZE)
        return (void *)(uintptr_t)(FZ_GUARD_VA + PAGE_SIZE - n * sz);
    return fz_buf(n * sz);
}

/* A count: mostly small, sometimes huge or negative. */
static uint64_t count_arg(uint64_t small)
{
    static const uint64_t huge[] = { 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL,
                                     ~0ULL, 0x10000, 4097 };
    if (fz_chance(85))
        return fz_below(small + 1);
    return huge[fz_below(ARRAY_SIZE(huge))];
}

static uint64_t sub_op(uint64_t nr_ops)
{
    return fz_chance(90) ? fz_below(nr_ops) : fz_word();
}

/* A sub-op: often one of those xkvm implements (hot), else any (sub_op). */
static uint64_t hot_op(const uint8_t *hot, size_t n, uint64_t nr_ops)
{
    return fz_chance(60) ? hot[fz_below(n)] : sub_op(nr_ops);
}

/* ---- per family ----------------------------------------------------------------------- */

static void build_generic(struct call *c)
{
    c->a[0] = fz_chance(70) ? fz_below(64) : fz_word();
    for (int i = 1; i < 5; i++)
        c->a[i] = fz_chance(60) ? ptr_arg(fz_chance(80) ? 64 : 256) : fz_word();
}

static void build_evtchn(struct call *c)
{
    c->a[0] = sub_op(15);
    uint8_t *p = fz_buf(64);
    switch (c->a[0]) {
    case EVTCHNOP_alloc_unbound: {
        struct evtchn_alloc_unbound *a = (void *)p;
        a->dom = fz_domid();
        a->remote_dom = fz_domid();
        break;
    }
    case EVTCHNOP_bind_interdomain: {
        struct evtchn_bind_interdomain *a = (void *)p;
        a->remote_dom = fz_domid();
        a->remote_port = fz_port();
        break;
    }
    case EVTCHNOP_bind_virq: {
        struct evtchn_bind_virq *a = (void *)p;
        a->virq = fz_chance(80) ? (uint32_t)fz_below(NR_VIRQS + 2) : (uint32_t)fz_word();
        a->vcpu = fz_vcpu();
        break;
    }
    case EVTCHNOP_bind_ipi:
        ((struct evtchn_bind_ipi *)p)->vcpu = fz_vcpu();
        break;
    case EVTCHNOP_close: case EVTCHNOP_send: case EVTCHNOP_unmask:
        *(uint32_t *)p = fz_port();
        break;
    case EVTCHNOP_status: {
        struct evtchn_status *a = (void *)p;
        a->dom = fz_domid();
        a->port = fz_port();
        break;
    }
    case EVTCHNOP_bind_vcpu: {
        struct evtchn_bind_vcpu *a = (void *)p;
        a->port = fz_port();
        a->vcpu = fz_vcpu();
        break;
    }
    case EVTCHNOP_reset: case 14:    /* EVTCHNOP_reset_cont */
        if (fz_chance(80))      /* closing everything: not too often */
            c->a[0] = EVTCHNOP_status;
        ((struct evtchn_reset *)p)->dom = fz_domid();
        break;
    case EVTCHNOP_init_control: {
        struct evtchn_init_control *a = (void *)p;
        a->control_gfn = fz_gfn(0);
        a->offset = fz_chance(70) ? (uint32_t)fz_below(64) * 64 : (uint32_t)fz_word();
        a->vcpu = fz_vcpu();
        break;
    }
    case EVTCHNOP_expand_array:
        ((struct evtchn_expand_array *)p)->array_gfn = fz_gfn(0);
        break;
    case EVTCHNOP_set_priority: {
        struct evtchn_set_priority *a = (void *)p;
        a->port = fz_port();
        a->priority = fz_chance(80) ? (uint32_t)fz_below(20) : (uint32_t)fz_word();
        break;
    }
    }
    c->a[1] = fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
}

/* After an event op: remember the ports it gave. */
static void note_evtchn(const struct call *c, long rc)
{
    if (rc || !fz_writable(c->a[1], 16))
        return;
    const uint32_t *w = (const uint32_t *)(uintptr_t)c->a[1];
    switch (c->a[0]) {
    case EVTCHNOP_alloc_unbound: fz_note_port(w[1]); break;
    case EVTCHNOP_bind_interdomain: fz_note_port(w[2]); break;
    case EVTCHNOP_bind_virq: fz_note_port(w[2]); break;
    case EVTCHNOP_bind_ipi: fz_note_port(w[1]); break;
    }
}

static void build_vcpu(struct call *c)
{
    uint64_t cmd = sub_op(15), vcpu = fz_vcpu();
    if ((uint32_t)cmd == VCPUOP_down && (uint32_t)vcpu == 0)
        cmd = VCPUOP_is_up;     /* would power the guest off */
    if ((uint32_t)cmd == VCPUOP_up)
        vcpu = 0;               /* another vCPU would run a random context */
    uint8_t *p = fz_buf(sizeof(struct vcpu_hvm_context));
    switch (cmd) {
    case VCPUOP_set_periodic_timer:
        ((struct vcpu_set_periodic_timer *)p)->period_ns =
            fz_chance(50) ? 1000000 + fz_below(1000000000) : fz_word();
        break;
    case VCPUOP_set_singleshot_timer: {
        struct vcpu_set_singleshot_timer *t = (void *)p;
        t->timeout_abs_ns = deadline();
        t->flags = fz_chance(80) ? (uint32_t)fz_below(2) : (uint32_t)fz_word();
        break;
    }
    case VCPUOP_register_vcpu_info: {
        struct vcpu_register_vcpu_info *r = (void *)p;
        r->mfn = fz_gfn(0);
        r->offset = fz_chance(70) ? (uint32_t)fz_below(64) * 64 : (uint32_t)fz_word();
        break;
    }
    case VCPUOP_register_runstate_memory_area:
    case VCPUOP_register_vcpu_time_memory_area:
        *(uint64_t *)p = fz_ptr(64);
        break;
    }
    c->a[0] = cmd;
    c->a[1] = vcpu;
    c->a[2] = fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
}

/* struct xen_memory_reservation with an extent list that stays in the pools. */
static void fill_reservation(struct xen_memory_reservation *r)
{
    unsigned order = fz_chance(70) ? 0 : fz_chance(80) ? (unsigned)fz_below(10) :
                     (unsigned)fz_word();
    uint64_t n = count_arg(8);
    bool huge = n > 8;
    /* Only order-0 lists may run on into scratch memory the fuzzer filled. */
    xen_pfn_t *list = array_of(huge ? 4 : n ? n : 1, sizeof(xen_pfn_t), huge && order);
    for (uint64_t i = 0; i < (huge ? 4 : n); i++)
        list[i] = fz_gfn(order);
    set_xen_guest_handle(r->extent_start, fz_chance(95) ? list : (xen_pfn_t *)fz_ptr(8));
    r->nr_extents = n;
    r->extent_order = order;
    r->mem_flags = fz_chance(70) ? 0 : (unsigned)fz_word();
    r->domid = fz_domid();
}

static void build_add_to_physmap(struct xen_add_to_physmap *x)
{
    x->domid = fz_domid();
    x->space = fz_chance(85) ? (unsigned)fz_below(7) : (unsigned)fz_word();
    unsigned order = x->space == XENMAPSPACE_gmfn_range ? (unsigned)fz_below(5) : 0;
    x->size = (uint16_t)(1u << order);
    switch (x->space) {
    case XENMAPSPACE_shared_info: x->idx = fz_below(3); break;
    case XENMAPSPACE_grant_table:
        x->idx = fz_chance(80) ? fz_below(70) : fz_below(70) | XENMAPIDX_grant_table_status;
        break;
    default: x->idx = fz_gfn(order); break;
    }
    x->gpfn = fz_gfn(order);
}

static void build_memory(struct call *c)
{
    static const uint8_t hot[] = {
        XENMEM_add_to_physmap, XENMEM_add_to_physmap, XENMEM_add_to_physmap,
        XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_populate_physmap,
        XENMEM_memory_map, XENMEM_current_reservation, XENMEM_maximum_reservation,
        XENMEM_maximum_gpfn, XENMEM_maximum_ram_page, XENMEM_get_vnumainfo,
        XENMEM_exchange, XENMEM_add_to_physmap_batch, XENMEM_remove_from_physmap,
    };
    uint64_t cmd = hot_op(hot, sizeof(hot), 32);
    if (fz_chance(5))
        cmd = (cmd & 0x3f) | (fz_below(1u << 20) << 6);     /* continuation bits */
    uint8_t *p = fz_buf(128);
    switch (cmd & 0x3f) {
    case XENMEM_increase_reservation:
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap:
        fill_reservation((void *)p);
        break;
    case XENMEM_exchange: {
        struct xen_memory_exchange *e = (void *)p;
        fill_reservation(&e->in);
        fill_reservation(&e->out);
        e->nr_exchanged = fz_chance(80) ? 0 : fz_word();
        break;
    }
    case XENMEM_add_to_physmap:
        build_add_to_physmap((void *)p);
        break;
    case XENMEM_add_to_physmap_batch: {
        struct xen_add_to_physmap_batch *b = (void *)p;
        b->domid = fz_domid();
        b->space = fz_chance(85) ? (unsigned)fz_below(7) : (unsigned)fz_word();
        b->size = (uint16_t)fz_below(9);
        xen_ulong_t *idx = fz_buf(8 * 8);
        xen_pfn_t *gpfn = fz_buf(8 * 8);
        for (int i = 0; i < 8; i++) {
            idx[i] = fz_gfn(0);
            gpfn[i] = fz_gfn(0);
        }
        set_xen_guest_handle(b->idxs, idx);
        set_xen_guest_handle(b->gpfns, gpfn);
        set_xen_guest_handle(b->errs, (int *)(uintptr_t)fz_ptr(32));
        b->u.foreign_domid = fz_domid();
        break;
    }
    case XENMEM_remove_from_physmap: {
        struct xen_remove_from_physmap *r = (void *)p;
        r->domid = fz_domid();
        r->gpfn = fz_gfn(0);
        break;
    }
    case XENMEM_memory_map: case XENMEM_machine_memory_map: case XENMEM_set_memory_map: {
        struct xen_memory_map *m = (void *)p;
        m->nr_entries = (unsigned)count_arg(300);
        set_xen_guest_handle(m->buffer, (void *)(uintptr_t)fz_ptr(m->nr_entries * 20));
        break;
    }
    case XENMEM_current_reservation: case XENMEM_maximum_reservation:
    case XENMEM_maximum_gpfn: case XENMEM_get_vnumainfo:
        *(domid_t *)p = fz_domid();
        break;
    }
    c->a[0] = cmd;
    c->a[1] = fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
}

static uint32_t gref(void)
{
    return fz_chance(85) ? (uint32_t)fz_below(40) : (uint32_t)fz_word();
}

static void fill_copy_end(struct gnttab_copy_ptr *e, bool is_gref)
{
    if (is_gref)
        e->u.ref = gref();
    else
        e->u.gmfn = fz_gfn(0);
    e->domid = fz_domid();
    e->offset = fz_chance(80) ? (uint16_t)fz_below(4096) : (uint16_t)fz_word();
}

static void build_gnttab(struct call *c)
{
    static const uint8_t hot[] = {
        GNTTABOP_copy, GNTTABOP_copy, GNTTABOP_copy, GNTTABOP_setup_table,
        GNTTABOP_query_size, GNTTABOP_set_version, GNTTABOP_get_version,
        GNTTABOP_dump_table, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
        GNTTABOP_get_status_frames,
    };
    uint64_t cmd = hot_op(hot, sizeof(hot), 13), count = fz_chance(70) ? 1 : count_arg(80);
    uint64_t n = count <= 80 ? count : 3;     /* entries filled */
    bool at_guard = count > 80;
    void *p = NULL;
    switch (cmd) {
    case GNTTABOP_map_grant_ref: {
        struct gnttab_map_grant_ref *m = array_of(n ? n : 1, sizeof(*m), at_guard);
        for (uint64_t i = 0; i < n && i < 8; i++)
            m[i] = (struct gnttab_map_grant_ref){
                .host_addr = fz_gfn(0) << 12, .flags = (uint32_t)fz_below(32),
                .ref = gref(), .dom = fz_domid() };
        p = m;
        break;
    }
    case GNTTABOP_unmap_grant_ref: {
        struct gnttab_unmap_grant_ref *u = array_of(n ? n : 1, sizeof(*u), at_guard);
        for (uint64_t i = 0; i < n && i < 8; i++)
            u[i] = (struct gnttab_unmap_grant_ref){
                .host_addr = fz_gfn(0) << 12, .dev_bus_addr = fz_word(),
                .handle = fz_chance(80) ? (uint32_t)fz_below(16) : (uint32_t)fz_word() };
        p = u;
        break;
    }
    case GNTTABOP_setup_table: {
        struct gnttab_setup_table *s = fz_buf(sizeof(*s));
        s->dom = fz_domid();
        s->nr_frames = (uint32_t)count_arg(70);
        set_xen_guest_handle(s->frame_list, (xen_pfn_t *)(uintptr_t)fz_ptr(8 * 70));
        p = s;
        break;
    }
    case GNTTABOP_copy: {
        struct gnttab_copy *g = array_of(n ? n : 1, sizeof(*g), at_guard);
        for (uint64_t i = 0; i < n; i++) {
            g[i].flags = (uint16_t)(fz_chance(90) ? fz_below(4) : fz_word());
            fill_copy_end(&g[i].source, g[i].flags & GNTCOPY_source_gref);
            fill_copy_end(&g[i].dest, g[i].flags & GNTCOPY_dest_gref);
            g[i].len = fz_chance(80) ? (uint16_t)fz_below(4097) : (uint16_t)fz_word();
        }
        p = g;
        break;
    }
    case GNTTABOP_set_version:
        p = fz_buf(8);
        *(uint32_t *)p = fz_chance(80) ? (uint32_t)fz_below(4) : (uint32_t)fz_word();
        break;
    case GNTTABOP_get_status_frames: {
        struct gnttab_get_status_frames *s = fz_buf(sizeof(*s));
        s->nr_frames = (uint32_t)count_arg(8);
        s->dom = fz_domid();
        set_xen_guest_handle(s->frame_list, (uint64_t *)(uintptr_t)fz_ptr(64));
        p = s;
        break;
    }
    case GNTTABOP_query_size: case GNTTABOP_get_version: case GNTTABOP_dump_table:
        p = fz_buf(16);
        *(domid_t *)p = fz_domid();
        break;
    default:
        p = fz_buf(64);
        break;
    }
    c->a[0] = cmd;
    c->a[1] = fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
    c->a[2] = count;
}

/*
 * Our own grant table, frame 0, mapped into the scratch region: entries the other
 * fuzzing guests may copy from and to (frames from the pool, any domid). The fuzzer's
 * own calls may move it away or give its gfn back, and the CPL3 code that scribbles on
 * it runs natively, where a write to a page given back fails the vCPU
 * (docs/hypervisor.md, "Holes inside RAM"): so it goes back there before each batch.
 */
static grant_entry_v1_t *gtab;

static void gtab_place(void)
{
    gtab = NULL;
    struct xen_add_to_physmap x = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0,
        .gpfn = fz.scratch_gfn,
    };
    if (HYPERVISOR_memory_op(XENMEM_add_to_physmap, &x) == 0)
        gtab = (grant_entry_v1_t *)(uintptr_t)(fz.scratch_gfn << 12);
}

static void scribble_grant(void)
{
    if (!gtab)
        return;
    grant_entry_v1_t *e = &gtab[gref() % 512];
    e->domid = fz_domid();
    e->frame = (uint32_t)fz_gfn(0);
    barrier();
    e->flags = (uint16_t)(fz_chance(80) ? GTF_permit_access | (fz_below(2) * GTF_readonly) :
                                          fz_word());
}

static void build_sched(struct call *c)
{
    static const uint64_t ok[] = { SCHEDOP_yield, SCHEDOP_poll, SCHEDOP_poll,
                                   SCHEDOP_remote_shutdown, SCHEDOP_shutdown_code,
                                   SCHEDOP_pin_override, 8, 0x100 };
    uint64_t cmd = fz_chance(90) ? ok[fz_below(ARRAY_SIZE(ok))] : fz_word();
    switch ((uint32_t)cmd) {    /* Xen reads an int: the low half counts */
    case SCHEDOP_block: case SCHEDOP_shutdown: case SCHEDOP_watchdog:
        cmd = SCHEDOP_yield;
        break;
    }
    uint8_t *p = fz_buf(64);
    switch (cmd) {
    case SCHEDOP_poll: {
        struct sched_poll *sp = (void *)p;
        uint64_t n = fz_chance(90) ? fz_below(5) : fz_chance(50) ? 128 + fz_below(2) : fz_word();
        uint32_t *ports = array_of(4, 4, false);
        for (int i = 0; i < 4; i++)
            ports[i] = fz_port();
        set_xen_guest_handle(sp->ports, (evtchn_port_t *)(fz_chance(90) ? (uint64_t)(uintptr_t)ports : fz_ptr(16)));
        sp->nr_ports = (unsigned)n;
        sp->timeout = fz_chance(80) ? xen_now() + fz_below(2000000) : 1;
        break;
    }
    case SCHEDOP_remote_shutdown: {
        struct sched_remote_shutdown *r = (void *)p;
        r->domain_id = fz_domid();
        r->reason = (unsigned)fz_below(6);
        break;
    }
    case SCHEDOP_shutdown_code:
        ((struct sched_shutdown *)p)->reason = (unsigned)fz_below(8);
        break;
    }
    c->a[0] = cmd;
    /* poll must not lose its timeout: a pool pointer could read as 0 (forever) */
    c->a[1] = cmd == SCHEDOP_poll || fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
}

static void build_hvm(struct call *c)
{
    static const uint8_t hot[] = { HVMOP_set_param, HVMOP_get_param, HVMOP_get_param,
                                   HVMOP_set_evtchn_upcall_vector, HVMOP_pagetable_dying };
    uint64_t cmd = hot_op(hot, sizeof(hot), 32);
    uint8_t *p = fz_buf(64);
    switch (cmd) {
    case HVMOP_set_param: case HVMOP_get_param: {
        struct xen_hvm_param *h = (void *)p;
        h->domid = fz_domid();
        h->index = fz_chance(85) ? (uint32_t)fz_below(HVM_NR_PARAMS + 2) : (uint32_t)fz_word();
        h->value = fz_word();
        break;
    }
    case HVMOP_set_evtchn_upcall_vector: {
        struct xen_hvm_evtchn_upcall_vector *u = (void *)p;
        u->vcpu = fz_vcpu();
        u->vector = (uint8_t)fz_below(256);
        break;
    }
    case HVMOP_pagetable_dying:
        ((struct xen_hvm_pagetable_dying *)p)->domid = fz_domid();
        break;
    }
    c->a[0] = cmd;
    c->a[1] = fz_chance(95) ? (uint64_t)(uintptr_t)p : fz_ptr(64);
}

static void build_multicall(struct call *c)
{
    static const uint64_t ops[] = { __HYPERVISOR_xen_version, __HYPERVISOR_event_channel_op,
                                    __HYPERVISOR_memory_op, __HYPERVISOR_grant_table_op, 60 };
    uint64_t n = count_arg(4);
    struct multicall_entry *m = array_of(n <= 4 ? (n ? n : 1) : 2, sizeof(*m), n > 4);
    for (uint64_t i = 0; i < (n <= 4 ? n : 2); i++) {
        fz_fill(&m[i], sizeof(m[i]));
        m[i].op = ops[fz_below(ARRAY_SIZE(ops))];
        m[i].args[0] = fz_below(8);     /* sub-ops that end nobody */
    }
    c->a[0] = (uint64_t)(uintptr_t)m;
    c->a[1] = n;
}

/* Hypercall numbers: the families xkvm implements often, every other one sometimes. */
static uint64_t pick_nr(void)
{
    static const uint8_t hot[] = {
        __HYPERVISOR_event_channel_op, __HYPERVISOR_event_channel_op,
        __HYPERVISOR_event_channel_op, __HYPERVISOR_memory_op, __HYPERVISOR_memory_op,
        __HYPERVISOR_memory_op, __HYPERVISOR_grant_table_op, __HYPERVISOR_grant_table_op,
        __HYPERVISOR_grant_table_op, __HYPERVISOR_vcpu_op, __HYPERVISOR_vcpu_op,
        __HYPERVISOR_hvm_op, __HYPERVISOR_hvm_op, __HYPERVISOR_sched_op,
        __HYPERVISOR_sched_op, __HYPERVISOR_xen_version, __HYPERVISOR_console_io,
        __HYPERVISOR_set_timer_op, __HYPERVISOR_vm_assist, __HYPERVISOR_multicall,
    };
    static const uint64_t absurd[] = { 128, 255, 256, 0x1000, 0x7fffffff, 0x80000000,
                                       0xffffffff, 0x100000000ULL | __HYPERVISOR_sched_op,
                                       0x100000000ULL | __HYPERVISOR_memory_op, ~0ULL };
    unsigned r = (unsigned)fz_below(100);
    if (r < 75)
        return hot[fz_below(ARRAY_SIZE(hot))];
    if (r < 95)
        return fz_below(64);
    if (r < 98 || !xen.hcall_insn || strcmp(xen.hcall_insn, "out"))
        return 64 + fz_below(64);
    return absurd[fz_below(ARRAY_SIZE(absurd))];
}

static void build(struct call *c)
{
    uint64_t nr = pick_nr();
    /* A number with bits above 32: Xen answers -ENOSYS, a hypervisor that truncates
     * would run the family below, so its arguments are that family's (safe) ones. */
    *c = (struct call){ .nr = nr >> 32 ? (uint32_t)nr : nr };
    switch (c->nr) {
    case __HYPERVISOR_event_channel_op: build_evtchn(c); break;
    case __HYPERVISOR_vcpu_op: build_vcpu(c); break;
    case __HYPERVISOR_memory_op: build_memory(c); break;
    case __HYPERVISOR_grant_table_op: build_gnttab(c); break;
    case __HYPERVISOR_sched_op: build_sched(c); break;
    case __HYPERVISOR_hvm_op: build_hvm(c); break;
    case __HYPERVISOR_multicall: build_multicall(c); break;
    case __HYPERVISOR_set_timer_op: c->a[0] = deadline(); break;
    case __HYPERVISOR_vm_assist:
        c->a[0] = fz_chance(90) ? fz_below(4) : fz_word();
        c->a[1] = fz_chance(90) ? fz_below(34) : fz_word();
        break;
    case __HYPERVISOR_console_io: {
        uint64_t n = fz_chance(95) ? fz_below(80) : count_arg(4096);
        c->a[0] = fz_chance(85) ? CONSOLEIO_write : fz_word();
        c->a[1] = n;
        c->a[2] = fz_chance(70) ? (uint64_t)(uintptr_t)fz_buf(n) : fz_ptr(n);
        break;
    }
    case __HYPERVISOR_xen_version:
        c->a[0] = sub_op(16);
        c->a[1] = ptr_arg(sizeof(xen_capabilities_info_t));    /* the largest answer */
        break;
    case 6:     /* sched_op_compat: its cmd 1 blocks, 2 shuts down, 3 polls */
        build_generic(c);
        c->a[0] = fz_chance(50) ? SCHEDOP_yield : 7 + fz_below(60);
        break;
    default:
        build_generic(c);
        break;
    }
    c->nr = nr;
}

/* ---- issuing ---------------------------------------------------------------------------- */

/* A number past the hypercall page's 128 stubs, straight through the port-I/O
 * transport (pick_nr only asks for one there). */
static long raw_hypercall(uint64_t nr, const uint64_t *a)
{
    register uint64_t r10 asm("r10") = a[3];
    register uint64_t r8 asm("r8") = a[4];
    uint64_t rax = nr, rdi = a[0], rsi = a[1], rdx = a[2];
    asm volatile("out %%eax, $0xea"
                 : "+a"(rax), "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r10), "+r"(r8)
                 :
                 : "memory", "rcx", "r9", "r11");
    return (long)rax;
}

static long issue(const struct call *c)
{
    if (c->nr < 128)
        return _hypercall5((unsigned)c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
    return raw_hypercall(c->nr, c->a);
}

/* ---- the test ---------------------------------------------------------------------------- */

struct tally {
    uint64_t calls, ok, enosys, efault, other;
};

static void count_rc(struct tally *t, long rc)
{
    t->calls++;
    if (rc >= 0)
        t->ok++;
    else if (rc == -XEN_ENOSYS)
        t->enosys++;
    else if (rc == -XEN_EFAULT)
        t->efault++;
    else
        t->other++;
}

/* Calls are built in batches at CPL3 (native speed under kvm-pvm, where kernel code is
 * emulated), each with its structures in its own part of the arena, then issued. */
#define BATCH 32

struct batch {
    unsigned n;
    struct call calls[BATCH];
};

static uint64_t build_batch(uint64_t arg)
{
    struct batch *b = (struct batch *)(uintptr_t)arg;
    fz_arena_reset();
    for (b->n = 0; b->n < BATCH && fz_arena_room() >= 16384; b->n++) {
        if (fz_chance(5))
            scribble_grant();
        build(&b->calls[b->n]);
    }
    return 0;
}

struct run {
    uint64_t max_calls, end_ns, verbose_from, progress_ns, next_progress, sum;
    struct tally t;
};

/* Issue a batch; false once the time or count is up. */
static bool issue_batch(struct run *r, const struct batch *b)
{
    for (unsigned i = 0; i < b->n; i++) {
        if (r->max_calls ? r->t.calls >= r->max_calls : elapsed_ns() >= r->end_ns)
            return false;
        const struct call *c = &b->calls[i];
        if (r->t.calls >= r->verbose_from)
            printf("xkvm-guest: hcfuzz: call %lu: nr %#lx (%#lx, %#lx, %#lx, %#lx, %#lx)\n",
                   (unsigned long)r->t.calls, (unsigned long)c->nr, (unsigned long)c->a[0],
                   (unsigned long)c->a[1], (unsigned long)c->a[2], (unsigned long)c->a[3],
                   (unsigned long)c->a[4]);
        if (r->t.calls >= r->verbose_from && fz_writable(c->a[1], 24))
            printf("xkvm-guest: hcfuzz:   *a1 = %#lx %#lx %#lx (now %#lx)\n",
                   (unsigned long)((uint64_t *)(uintptr_t)c->a[1])[0],
                   (unsigned long)((uint64_t *)(uintptr_t)c->a[1])[1],
                   (unsigned long)((uint64_t *)(uintptr_t)c->a[1])[2],
                   (unsigned long)xen_now());
        long rc = issue(c);
        irq_disable();          /* whatever the hypervisor did to our flags */
        if (c->nr == __HYPERVISOR_event_channel_op)
            note_evtchn(c, rc);
        count_rc(&r->t, rc);
        r->sum = fz_mix(fz_mix(fz_mix(r->sum, c->nr), c->a[0]), (uint64_t)rc);
    }
    if (elapsed_ns() >= r->next_progress) {
        printf("xkvm-guest: hcfuzz: progress: %lu hypercalls\n", (unsigned long)r->t.calls);
        r->next_progress += r->progress_ns;
    }
    return true;
}

static struct batch batch;

static void test_hcfuzz(void)
{
    XTEST_NEED_XEN();
    irq_disable();
    run_user_rflags = 0x2;      /* the batches are built with interrupts off too */
    const char *err = fz_layout_init();
    if (err)
        xtest_fail("%s", err);
    uint64_t seed = cmdline_get_u64("seed", 1), seconds = cmdline_get_u64("seconds", 10);
    struct run r = {
        .max_calls = cmdline_get_u64("count", 0),
        .end_ns = seconds * 1000000000ULL,
        .verbose_from = cmdline_get_u64("verbose", ~0ULL),
        .progress_ns = cmdline_get_u64("progress", 5) * 1000000000ULL,
        .sum = fz_mix(0xcbf29ce484222325ULL, seed),
    };
    r.next_progress = r.progress_ns;
    clock_init();
    fz_seed(seed);
    printf("xkvm-guest: hcfuzz: seed %lu, %s %lu, scratch gfns %#lx+%u, RAM to gfn %#lx\n",
           (unsigned long)seed, r.max_calls ? "calls" : "seconds",
           (unsigned long)(r.max_calls ? r.max_calls : seconds),
           (unsigned long)fz.scratch_gfn, FZ_SCRATCH_PAGES, (unsigned long)fz.ram_top_gfn);
    bool in_kernel = cmdline_get("gen", NULL, 0);    /* gen=kernel: build at CPL0 */
    do {
        gtab_place();
        in_kernel ? build_batch((uint64_t)(uintptr_t)&batch) :
                    run_user(build_batch, (uint64_t)(uintptr_t)&batch);
    } while (issue_batch(&r, &batch));

    uint64_t ms = elapsed_ns() / 1000000;
    /* Let the console's rate limit (64 KiB/s) recover from what the fuzzer wrote. */
    uint64_t quiet_until = elapsed_ns() + 2000000000ULL;
    while (elapsed_ns() < quiet_until)
        cpu_relax();
    printf("\nxkvm-guest: hcfuzz: results: %lu ok, %lu -ENOSYS, %lu -EFAULT, %lu other errors\n",
           (unsigned long)r.t.ok, (unsigned long)r.t.enosys, (unsigned long)r.t.efault,
           (unsigned long)r.t.other);
    printf("xkvm-guest: hcfuzz: seed %lu: %lu hypercalls in %lu ms, checksum %#lx\n",
           (unsigned long)seed, (unsigned long)r.t.calls, (unsigned long)ms,
           (unsigned long)r.sum);
}
XTEST("hcfuzz", test_hcfuzz);
