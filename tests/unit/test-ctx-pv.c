/*
 * Domain context records for PV state (types 0x100..): a round trip of every type
 * through the typed writers and accessors, one malformed body per validation rule
 * (refused by the reader and by the writer alike), the image-level rules, the dump.
 */
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xkvm/ctx.h"

HARNESS_MAIN_STATE("ctx-pv");

/* ---- helpers ---------------------------------------------------------------- */

static const struct xkvm_ctx_evtchn_port port_ipi = {
    .state = XKVM_CTX_EVTCHN_STATE_IPI, .priority = XKVM_CTX_EVTCHN_PRIORITY_DEFAULT,
};

/*
 * START, one record of `type` with this body, END, built by hand (the writer would
 * refuse a bad body). The record is at offset 24.
 */
static size_t one_record(uint8_t *buf, uint32_t type, uint32_t instance, const void *body,
                         size_t len)
{
    struct xkvm_ctx_record_header h = { XKVM_CTX_START, 0, 8 };
    struct xkvm_ctx_start s = { XKVM_VERSION_MAJOR, XKVM_VERSION_MINOR };
    size_t off = 0;
    memcpy(buf, &h, 16);
    memcpy(buf + 16, &s, 8);
    off = 24;
    h = (struct xkvm_ctx_record_header) { type, instance, len };
    memcpy(buf + off, &h, 16);
    off += 16;
    memcpy(buf + off, body, len);
    off += len;
    while (off % 8)
        buf[off++] = 0;
    h = (struct xkvm_ctx_record_header) { XKVM_CTX_END, 0, 0 };
    memcpy(buf + off, &h, 16);
    return off + 16;
}

/* The body is refused by the reader (code, reason) and the writer (code). */
#define BODY_REJECT(type_, inst_, body_, len_, code_, reason) do {                   \
        static alignas(8) uint8_t _img[8192];                                        \
        size_t _sz = one_record(_img, (type_), (inst_), (body_), (len_));             \
        struct xkvm_ctx_error _e;                                                    \
        memset(&_e, 0, sizeof(_e));                                                  \
        CHECK_EQ(xkvm_ctx_verify(_img, _sz, NULL, NULL, &_e), -1);                    \
        CHECK_MSG(_e.code == (code_), "code %s, expected %s (%s)",                   \
                  xkvm_ctx_errcode_name(_e.code), xkvm_ctx_errcode_name(code_), _e.msg); \
        CHECK_EQ(_e.offset, 24);                                                     \
        CHECK_EQ(_e.type, (type_));                                                   \
        CHECK_STR_CONTAINS(_e.msg, reason);                                          \
        struct xkvm_ctx_writer _w;                                                   \
        xkvm_ctx_writer_init_buffer(&_w);                                            \
        xkvm_ctx_write_start(&_w);                                                   \
        alignas(8) uint8_t _copy[4200];                                              \
        memcpy(_copy, (body_), (len_));                                                \
        CHECK_EQ(xkvm_ctx_write(&_w, (type_), (inst_), _copy, (len_)), -1);        \
        CHECK_EQ(_w.err.code, (code_));                                              \
        xkvm_ctx_writer_release(&_w);                                                \
    } while (0)

#define BODY_ACCEPT(type_, inst_, body_, len_) do {                                  \
        static alignas(8) uint8_t _img[8192];                                        \
        size_t _sz = one_record(_img, (type_), (inst_), (body_), (len_));             \
        struct xkvm_ctx_error _e;                                                    \
        int _rc = xkvm_ctx_verify(_img, _sz, NULL, NULL, &_e);                        \
        CHECK_MSG(_rc == 0, "refused: %s", _e.msg);                                  \
    } while (0)

/* ---- a whole domain ------------------------------------------------------------ */

static alignas(8) uint8_t shinfo_page[4096];
static alignas(8) uint8_t gframe[3][4096];

static const struct xkvm_ctx_hvm_param sample_params[] = {
    { 0, (2ull << 56) | 0xf3 }, { 1, 0xfeff0 }, { 2, 1 }, { 17, 0xfeff1 }, { 18, 2 },
};

/* What the base image holds; tests change one thing and write it. */
struct domain_spec {
    bool no_domain, no_shared_info, short_shared_info, no_gnttab;
    uint32_t nr_vcpus;
    uint32_t nr_frames, frames_written;     /* GNTTAB_FRAME 0..frames_written-1 */
    struct { uint32_t port; struct xkvm_ctx_evtchn_port p; } ports[16];
    unsigned nr_ports;
    uint32_t extra_timer_vcpu;              /* also a TIMER for this vCPU, if != 0 */
    /* FIFO: abi (EVTCHN_ABI value), control blocks on vCPUs below fifo_vcpus, pages. */
    uint32_t abi, fifo_vcpus, fifo_pages;
    uint32_t held[4];
    unsigned nr_held;
};

static void spec_default(struct domain_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->nr_vcpus = 2;
    s->nr_frames = s->frames_written = 2;
    const struct xkvm_ctx_evtchn_port p7 = { .priority = 7 };
    struct xkvm_ctx_evtchn_port p;
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN; p.remote_port = 1;
    s->ports[s->nr_ports].port = 1; s->ports[s->nr_ports++].p = p;
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_VIRQ; p.virq = 0;
    s->ports[s->nr_ports].port = 2; s->ports[s->nr_ports++].p = p;
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_VIRQ; p.virq = 0; p.notify_vcpu = 1;
    s->ports[s->nr_ports].port = 3; s->ports[s->nr_ports++].p = p;
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_UNBOUND; p.remote_domid = 5;
    s->ports[s->nr_ports].port = 4; s->ports[s->nr_ports++].p = p;
    /* A loopback pair: domain 3 bound to itself. */
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN; p.remote_domid = 3; p.remote_port = 6;
    s->ports[s->nr_ports].port = 5; s->ports[s->nr_ports++].p = p;
    p.remote_port = 5; p.notify_vcpu = 1;
    s->ports[s->nr_ports].port = 6; s->ports[s->nr_ports++].p = p;
    /* A global VIRQ (VIRQ_CON_RING 8) on vCPU 1, an IPI. */
    p = p7; p.state = XKVM_CTX_EVTCHN_STATE_VIRQ; p.virq = 8; p.notify_vcpu = 1;
    s->ports[s->nr_ports].port = 7; s->ports[s->nr_ports++].p = p;
    s->ports[s->nr_ports].port = 4095; s->ports[s->nr_ports++].p = port_ipi;
}

/* The image described by s, written by the typed writers; NULL if the writer refused. */
static uint8_t *write_domain(const struct domain_spec *s, size_t *len)
{
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    for (size_t i = 0; i < sizeof(shinfo_page); i++)
        shinfo_page[i] = (uint8_t)(i * 13);
    for (int f = 0; f < 3; f++)
        for (size_t i = 0; i < 4096; i++)
            gframe[f][i] = (uint8_t)(i + (size_t)f * 7);
    const uint64_t gfns[3] = { 0xf0000, XKVM_CTX_GFN_NONE, 0xf0002 };

    xkvm_ctx_write_start(&w);
    if (!s->no_domain)
        xkvm_ctx_write_domain(&w, 3, s->nr_vcpus);
    if (!s->no_shared_info)
        xkvm_ctx_write_shared_info(&w, 0, shinfo_page, s->short_shared_info ? 3072 : 4096);
    xkvm_ctx_write_shared_info_gfn(&w, 0xfefff);
    xkvm_ctx_write_evtchn_abi(&w, s->abi);
    for (uint32_t v = 0; v < s->fifo_vcpus; v++) {
        struct xkvm_ctx_evtchn_fifo_vcpu f = { .control_gfn = 0x200 + v, .offset = 8 * v };
        f.tail[7] = v ? 0 : 1;
        xkvm_ctx_write_evtchn_fifo_vcpu(&w, v, &f);
    }
    if (s->fifo_pages) {
        uint64_t pg[4] = { 0x300, 0x301, 0x302, 0x303 };
        xkvm_ctx_write_evtchn_fifo_array(&w, pg, s->fifo_pages);
    }
    if (s->nr_held)
        xkvm_ctx_write_evtchn_fifo_held(&w, s->held, s->nr_held);
    if (!s->no_gnttab)
        xkvm_ctx_write_gnttab(&w, 1, gfns, s->nr_frames);
    for (uint32_t f = 0; f < s->frames_written; f++)
        xkvm_ctx_write_gnttab_frame(&w, f, gframe[f]);
    xkvm_ctx_write_hvm_params(&w, sample_params, 5);
    for (uint32_t v = 0; v < 2; v++) {
        struct xkvm_ctx_vcpu_info vi = { .placement = XKVM_CTX_VCPU_INFO_SHARED,
                                         .gfn = XKVM_CTX_GFN_NONE };
        if (v)
            vi = (struct xkvm_ctx_vcpu_info) { XKVM_CTX_VCPU_INFO_REGISTERED, 0xfc0, 0x1234 };
        struct xkvm_ctx_timer t = { .singleshot_deadline = 1000 + v,
                                    .periodic_period = v ? 10000000 : 0 };
        xkvm_ctx_write_vcpu_state(&w, v, XKVM_CTX_VCPU_INITIALISED | XKVM_CTX_VCPU_UP |
                                         (v ? XKVM_CTX_VCPU_HALTED : 0));
        xkvm_ctx_write_vcpu_info(&w, v, &vi);
        xkvm_ctx_write_upcall(&w, v, v ? 0xf4 : 0);
        xkvm_ctx_write_timer(&w, v, &t);
    }
    if (s->extra_timer_vcpu) {
        struct xkvm_ctx_timer t = { 0 };
        xkvm_ctx_write_timer(&w, s->extra_timer_vcpu, &t);
    }
    for (unsigned i = 0; i < s->nr_ports; i++)
        xkvm_ctx_write_evtchn_port(&w, s->ports[i].port, &s->ports[i].p);
    if (xkvm_ctx_write_end(&w)) {
        fprintf(stderr, "writer: %s\n", w.err.msg);
        xkvm_ctx_writer_release(&w);
        return NULL;
    }
    return xkvm_ctx_writer_take(&w, len);
}

/* Offset of the first record of (type, instance) in img. */
static uint64_t offset_of(const uint8_t *img, size_t len, uint32_t type, uint32_t instance,
                          unsigned nth)
{
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0)
        if (rec.type == type && rec.instance == instance && nth-- == 0)
            return rec.offset;
    return UINT64_MAX;
}

/* The image of s passes verify; the image check refuses it as said. */
#define IMAGE_REJECT(spec, code_, type_, instance_, reason) do {                     \
        size_t _len;                                                                 \
        uint8_t *_img = write_domain((spec), &_len);                                 \
        REQUIRE(_img);                                                               \
        struct xkvm_ctx_error _e;                                                    \
        CHECK_EQ(xkvm_ctx_verify(_img, _len, NULL, NULL, &_e), 0);                   \
        CHECK_EQ(xkvm_ctx_check_image(_img, _len, NULL, NULL, &_e), -1);             \
        CHECK_MSG(_e.code == (code_), "code %s, expected %s (%s)",                   \
                  xkvm_ctx_errcode_name(_e.code), xkvm_ctx_errcode_name(code_), _e.msg); \
        CHECK_EQ(_e.type, (type_));                                                  \
        CHECK_EQ(_e.offset, offset_of(_img, _len, (type_), (instance_), 0));         \
        CHECK_STR_CONTAINS(_e.msg, reason);                                          \
        free(_img);                                                                  \
    } while (0)

/* ---- round trips ---------------------------------------------------------------- */

static void test_roundtrip_every_type(void)
{
    struct domain_spec s;
    spec_default(&s);
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    struct xkvm_ctx_summary sum;
    struct xkvm_ctx_error e;
    CHECK_MSG(xkvm_ctx_check_image(img, len, NULL, &sum, &e) == 0, "%s", e.msg);
    CHECK_EQ(sum.used, len);
    CHECK_EQ(sum.nr_records, 1 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 8 + s.nr_ports + 1);

    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    unsigned seen[16] = { 0 };
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        if (rec.type >= XKVM_CTX_XKVM_BASE && rec.type <= XKVM_CTX_TIMER)
            seen[rec.type - XKVM_CTX_XKVM_BASE]++;
        /* Each accessor answers for its own type only. */
        CHECK((xkvm_ctx_get_domain(&rec) != NULL) == (rec.type == XKVM_CTX_DOMAIN));
        CHECK((xkvm_ctx_get_timer(&rec) != NULL) == (rec.type == XKVM_CTX_TIMER));
        const struct xkvm_ctx_domain *d = xkvm_ctx_get_domain(&rec);
        if (d) {
            CHECK_EQ(d->domid, 3);
            CHECK_EQ(d->nr_vcpus, 2);
        }
        const struct xkvm_ctx_shared_info *si = xkvm_ctx_get_shared_info(&rec);
        if (si) {
            CHECK_EQ(si->buffer_size, 4096);
            CHECK(memcmp(si->buffer, shinfo_page, 4096) == 0);
        }
        const struct xkvm_ctx_shared_info_gfn *sg = xkvm_ctx_get_shared_info_gfn(&rec);
        if (sg)
            CHECK_EQ(sg->gfn, 0xfefff);
        const struct xkvm_ctx_evtchn_abi *abi = xkvm_ctx_get_evtchn_abi(&rec);
        if (abi)
            CHECK_EQ(abi->abi, XKVM_CTX_EVTCHN_ABI_2L);
        const struct xkvm_ctx_gnttab *gt = xkvm_ctx_get_gnttab(&rec);
        if (gt) {
            CHECK_EQ(gt->version, 1);
            REQUIRE(gt->nr_frames == 2);
            CHECK_EQ(gt->frame_gfn[0], 0xf0000);
            CHECK(gt->frame_gfn[1] == XKVM_CTX_GFN_NONE);
        }
        const struct xkvm_ctx_gnttab_frame *gf = xkvm_ctx_get_gnttab_frame(&rec);
        if (gf) {
            REQUIRE(rec.instance < 2);
            CHECK(memcmp(gf->data, gframe[rec.instance], 4096) == 0);
        }
        const struct xkvm_ctx_hvm_params *hp = xkvm_ctx_get_hvm_params(&rec);
        if (hp) {
            REQUIRE(hp->count == 5);
            CHECK(memcmp(hp->params, sample_params, sizeof(sample_params)) == 0);
        }
        const struct xkvm_ctx_vcpu_state *vs = xkvm_ctx_get_vcpu_state(&rec);
        if (vs)
            CHECK_EQ(vs->flags, rec.instance ? 7 : 3);
        const struct xkvm_ctx_vcpu_info *vi = xkvm_ctx_get_vcpu_info(&rec);
        if (vi && rec.instance == 1) {
            CHECK_EQ(vi->placement, XKVM_CTX_VCPU_INFO_REGISTERED);
            CHECK_EQ(vi->gfn, 0x1234);
            CHECK_EQ(vi->offset, 0xfc0);
        } else if (vi) {
            CHECK_EQ(vi->placement, XKVM_CTX_VCPU_INFO_SHARED);
            CHECK(vi->gfn == XKVM_CTX_GFN_NONE);
        }
        const struct xkvm_ctx_upcall *up = xkvm_ctx_get_upcall(&rec);
        if (up)
            CHECK_EQ(up->vector, rec.instance ? 0xf4 : 0);
        const struct xkvm_ctx_timer *t = xkvm_ctx_get_timer(&rec);
        if (t) {
            CHECK_EQ(t->singleshot_deadline, 1000 + rec.instance);
            CHECK_EQ(t->periodic_period, rec.instance ? 10000000 : 0);
        }
        const struct xkvm_ctx_evtchn_port *p = xkvm_ctx_get_evtchn_port(&rec);
        if (p) {
            bool found = false;
            for (unsigned i = 0; i < s.nr_ports; i++)
                if (s.ports[i].port == rec.instance) {
                    CHECK(memcmp(p, &s.ports[i].p, sizeof(*p)) == 0);
                    found = true;
                }
            CHECK(found);
        }
    }
    CHECK_EQ(r.err.code, XKVM_CTX_OK);
    for (uint32_t t = XKVM_CTX_DOMAIN; t <= XKVM_CTX_TIMER; t++) {
        unsigned want = t == XKVM_CTX_EVTCHN_PORT ? s.nr_ports :
                        t == XKVM_CTX_GNTTAB_FRAME || t >= XKVM_CTX_VCPU_STATE ? 2 : 1;
        CHECK_MSG(seen[t - XKVM_CTX_XKVM_BASE] == want, "type 0x%x seen %u times, want %u",
                  t, seen[t - XKVM_CTX_XKVM_BASE], want);
    }

    /* Re-encoding what was read gives the same bytes. */
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0)
        CHECK_EQ(xkvm_ctx_write(&w, rec.type, rec.instance, rec.body, rec.length), 0);
    size_t len2;
    const uint8_t *img2 = xkvm_ctx_writer_data(&w, &len2);
    CHECK_EQ(len2, len);
    CHECK(memcmp(img, img2, len) == 0);
    xkvm_ctx_writer_release(&w);
    free(img);
}

/* Typed writers take structs and pages at any alignment. */
static void test_typed_writers_unaligned(void)
{
    static alignas(8) uint8_t raw[4096 + 64];
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write_domain(&w, 9, 1), 0);
    CHECK_EQ(xkvm_ctx_write_shared_info(&w, 0, raw, 4096), 0);
    struct xkvm_ctx_evtchn_port *p = (void *)(raw + 4);       /* 4-aligned only */
    memcpy(p, &port_ipi, sizeof(port_ipi));
    CHECK_EQ(xkvm_ctx_write_evtchn_port(&w, 9, p), 0);
    const uint64_t gfn = XKVM_CTX_GFN_NONE;
    CHECK_EQ(xkvm_ctx_write_gnttab(&w, 1, &gfn, 1), 0);
    CHECK_EQ(xkvm_ctx_write_gnttab_frame(&w, 0, raw + 3), 0);
    CHECK_EQ(xkvm_ctx_write_hvm_params(&w, NULL, 0), 0);
    CHECK_EQ(xkvm_ctx_write_end(&w), 0);
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    struct xkvm_ctx_error e;
    CHECK_MSG(xkvm_ctx_check_image(img, len, NULL, NULL, &e) == 0, "%s", e.msg);
    xkvm_ctx_writer_release(&w);

    /* Too many params or frames: refused without reading past the caller's array. */
    struct xkvm_ctx_hvm_param many[40];
    memset(many, 0, sizeof(many));
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_write_start(&w);
    CHECK_EQ(xkvm_ctx_write_hvm_params(&w, many, 40), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_BAD_LENGTH);
    xkvm_ctx_writer_reset(&w);
    xkvm_ctx_write_start(&w);
    CHECK_EQ(xkvm_ctx_write_gnttab(&w, 1, NULL, XKVM_CTX_GNTTAB_MAX_FRAMES + 1), -1);
    CHECK_EQ(w.err.code, XKVM_CTX_ERR_BAD_VALUE);
    CHECK_STR_CONTAINS(w.err.msg, "field 'nr_frames' is 4097, must be 1..4096");
    xkvm_ctx_writer_release(&w);
}

/* ---- one malformed body per rule -------------------------------------------------- */

static void test_domain_rules(void)
{
    struct xkvm_ctx_domain d = { .domid = 0x7fef, .nr_vcpus = XKVM_CTX_MAX_VCPUS };
    BODY_ACCEPT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d));
    d.domid = 0x7ff0;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d), XKVM_CTX_ERR_BAD_VALUE,
                "field 'domid' is 32752, must be 1..32751");
    d.domid = 0;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d), XKVM_CTX_ERR_BAD_VALUE,
                "field 'domid' is 0, must be 1..32751");
    d.domid = 1;
    d.nr_vcpus = 0;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d), XKVM_CTX_ERR_BAD_VALUE,
                "field 'nr_vcpus' is 0, must be 1..4096");
    d.nr_vcpus = XKVM_CTX_MAX_VCPUS + 1;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d), XKVM_CTX_ERR_BAD_VALUE, "'nr_vcpus' is 4097");
    d.nr_vcpus = 1;
    d.pad = 1;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, sizeof(d), XKVM_CTX_ERR_RESERVED,
                "reserved field 'pad' is not zero");
    d.pad = 0;
    BODY_REJECT(XKVM_CTX_DOMAIN, 0, &d, 4, XKVM_CTX_ERR_BAD_LENGTH, "exactly 8 bytes");
    BODY_REJECT(XKVM_CTX_DOMAIN, 1, &d, sizeof(d), XKVM_CTX_ERR_INSTANCE, "instance 1");
}

static void test_shared_info_gfn_rules(void)
{
    struct xkvm_ctx_shared_info_gfn g = { XKVM_CTX_GFN_NONE };
    BODY_ACCEPT(XKVM_CTX_SHARED_INFO_GFN, 0, &g, sizeof(g));
    g.gfn = XKVM_CTX_GFN_MAX;
    BODY_ACCEPT(XKVM_CTX_SHARED_INFO_GFN, 0, &g, sizeof(g));
    g.gfn = XKVM_CTX_GFN_MAX + 1;
    BODY_REJECT(XKVM_CTX_SHARED_INFO_GFN, 0, &g, sizeof(g), XKVM_CTX_ERR_BAD_VALUE,
                "field 'gfn' is 0x10000000000, beyond the largest gfn");
    const uint64_t two[2] = { 0, 0 };
    BODY_REJECT(XKVM_CTX_SHARED_INFO_GFN, 0, two, 16, XKVM_CTX_ERR_BAD_LENGTH, "exactly 8");
}

static void test_evtchn_abi_rules(void)
{
    struct xkvm_ctx_evtchn_abi a = { XKVM_CTX_EVTCHN_ABI_2L, 0 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_ABI, 0, &a, sizeof(a));
    a.abi = XKVM_CTX_EVTCHN_ABI_FIFO;
    BODY_ACCEPT(XKVM_CTX_EVTCHN_ABI, 0, &a, sizeof(a));
    a.abi = 2;
    BODY_REJECT(XKVM_CTX_EVTCHN_ABI, 0, &a, sizeof(a), XKVM_CTX_ERR_BAD_VALUE,
                "field 'abi' has unknown value 2");
    a.abi = 0;
    a.pad = 0x80000000u;
    BODY_REJECT(XKVM_CTX_EVTCHN_ABI, 0, &a, sizeof(a), XKVM_CTX_ERR_RESERVED, "'pad'");
}

static void test_evtchn_port_rules(void)
{
    struct xkvm_ctx_evtchn_port p = port_ipi;
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 1, &p, sizeof(p));
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 4095, &p, sizeof(p));
    BODY_REJECT(XKVM_CTX_EVTCHN_PORT, 0, &p, sizeof(p), XKVM_CTX_ERR_INSTANCE,
                "instance 0, must be 1..4095");
    BODY_REJECT(XKVM_CTX_EVTCHN_PORT, 4096, &p, sizeof(p), XKVM_CTX_ERR_INSTANCE,
                "instance 4096");
    BODY_REJECT(XKVM_CTX_EVTCHN_PORT, 1, &p, 12, XKVM_CTX_ERR_BAD_LENGTH, "exactly 16");

    const struct { uint8_t off, size; uint64_t v; enum xkvm_ctx_errcode code; const char *why; }
    field_rules[] = {
        { 0, 1, 0, XKVM_CTX_ERR_BAD_VALUE, "field 'state' has unknown value 0" },
        { 0, 1, 5, XKVM_CTX_ERR_BAD_VALUE, "field 'state' has unknown value 5" },
        { 1, 1, 16, XKVM_CTX_ERR_BAD_VALUE, "field 'priority' is 16, must be 0..15" },
        { 2, 2, 4096, XKVM_CTX_ERR_BAD_VALUE, "field 'notify_vcpu' is 4096" },
        { 4, 2, 0x7ff0, XKVM_CTX_ERR_BAD_VALUE, "ipi port with remote_domid 32752" },
        { 6, 2, 1, XKVM_CTX_ERR_RESERVED, "reserved field 'pad'" },
        { 8, 4, 4096, XKVM_CTX_ERR_BAD_VALUE, "field 'remote_port' is 4096, must be 0..4095" },
        { 12, 4, 24, XKVM_CTX_ERR_BAD_VALUE, "field 'virq' is 24, must be 0..23" },
    };
    for (size_t i = 0; i < sizeof(field_rules) / sizeof(field_rules[0]); i++) {
        alignas(8) uint8_t b[16];
        memcpy(b, &port_ipi, 16);
        uint64_t v = field_rules[i].v;
        memcpy(b + field_rules[i].off, &v, field_rules[i].size);   /* little-endian */
        BODY_REJECT(XKVM_CTX_EVTCHN_PORT, 1, b, 16, field_rules[i].code, field_rules[i].why);
    }

    /* What each state may use. */
    const struct { struct xkvm_ctx_evtchn_port p; const char *why; } state_rules[] = {
        { { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND, .remote_port = 3 },
          "unbound port with remote_port 3" },
        { { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND, .virq = 3 }, "unbound port with" },
        { { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 2 },
          "interdomain port with remote_port 0" },
        { { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_port = 2, .virq = 1 },
          "interdomain port with virq 1" },
        { { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN, .remote_domid = 0x7ff0, .remote_port = 2 },
          "interdomain port to domid 32752, not a domain's" },
        { { .state = XKVM_CTX_EVTCHN_STATE_VIRQ, .remote_domid = 1 },
          "virq port with remote_domid 1" },
        { { .state = XKVM_CTX_EVTCHN_STATE_VIRQ, .remote_port = 1 }, "virq port with" },
        { { .state = XKVM_CTX_EVTCHN_STATE_IPI, .virq = 2 }, "ipi port with" },
        { { .state = XKVM_CTX_EVTCHN_STATE_IPI, .remote_domid = 2 }, "ipi port with" },
        { { .state = XKVM_CTX_EVTCHN_STATE_IPI, .remote_port = 2 }, "ipi port with" },
    };
    for (size_t i = 0; i < sizeof(state_rules) / sizeof(state_rules[0]); i++)
        BODY_REJECT(XKVM_CTX_EVTCHN_PORT, 1, &state_rules[i].p, 16, XKVM_CTX_ERR_BAD_VALUE,
                    state_rules[i].why);
    /* And what they may: dom0-service-bound is interdomain to domain 0. */
    p = (struct xkvm_ctx_evtchn_port) { .state = XKVM_CTX_EVTCHN_STATE_INTERDOMAIN,
                                        .remote_domid = 0, .remote_port = 7 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 7, &p, sizeof(p));
    p = (struct xkvm_ctx_evtchn_port) { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND,
                                        .remote_domid = 0x7fef, .notify_vcpu = 4095 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 7, &p, sizeof(p));
    p = (struct xkvm_ctx_evtchn_port) { .state = XKVM_CTX_EVTCHN_STATE_VIRQ, .virq = 23 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 7, &p, sizeof(p));
    /* Xen lets a guest leave a port unbound for any remote_dom: its save must not fail. */
    p = (struct xkvm_ctx_evtchn_port) { .state = XKVM_CTX_EVTCHN_STATE_UNBOUND,
                                        .remote_domid = 0xfff0 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_PORT, 7, &p, sizeof(p));
}

static void test_gnttab_rules(void)
{
    alignas(8) uint8_t b[8 + 8 * 4];
    struct xkvm_ctx_gnttab *gt = (void *)b;
    gt->version = 1;
    gt->nr_frames = 4;
    for (int i = 0; i < 4; i++)
        gt->frame_gfn[i] = i == 2 ? XKVM_CTX_GFN_NONE : 0x100u + (unsigned)i;
    BODY_ACCEPT(XKVM_CTX_GNTTAB, 0, b, sizeof(b));
    gt->version = 0;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "field 'version' has unknown value 0");
    gt->version = 3;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "field 'version' has unknown value 3");
    /* v2: one status frame's gfn follows 1..8 shared frames'. */
    gt->version = 2;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b), XKVM_CTX_ERR_BAD_LENGTH,
                "nr_frames 4 (v2) does not match length 40");
    gt->nr_frames = 3;
    BODY_ACCEPT(XKVM_CTX_GNTTAB, 0, b, sizeof(b));
    CHECK_EQ(XKVM_CTX_GNTTAB_STATUS_FRAMES(8), 1u);
    CHECK_EQ(XKVM_CTX_GNTTAB_STATUS_FRAMES(9), 2u);
    CHECK_EQ(XKVM_CTX_GNTTAB_STATUS_FRAMES(64), 8u);
    gt->version = 1;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b), XKVM_CTX_ERR_BAD_LENGTH,
                "nr_frames 3 (v1) does not match length 40");
    gt->nr_frames = 0;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, 8, XKVM_CTX_ERR_BAD_VALUE,
                "field 'nr_frames' is 0, must be 1..4096");
    gt->nr_frames = 4;
    gt->frame_gfn[3] = 1ull << 52;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "element 3: field 'gfn' is 0x10000000000000");
    gt->frame_gfn[3] = 0;
    BODY_REJECT(XKVM_CTX_GNTTAB, 0, b, sizeof(b) - 4, XKVM_CTX_ERR_BAD_LENGTH,
                "(8 + n * 8 bytes)");
    /* Past the maximum table (v2 with its status frames): checked on the length alone. */
#define GNTTAB_MAX_GFNS (XKVM_CTX_GNTTAB_MAX_FRAMES + \
                         XKVM_CTX_GNTTAB_STATUS_FRAMES(XKVM_CTX_GNTTAB_MAX_FRAMES))
    size_t big = 8 + 8 * (GNTTAB_MAX_GFNS + 1);
    uint8_t *huge = calloc(1, big + 64);
    REQUIRE(huge);
    alignas(8) static uint8_t img[8 + 8 * (GNTTAB_MAX_GFNS + 1) + 64];
    struct xkvm_ctx_gnttab *hg = (void *)huge;
    hg->version = 1;
    hg->nr_frames = XKVM_CTX_GNTTAB_MAX_FRAMES + 1;
    size_t n = one_record(img, XKVM_CTX_GNTTAB, 0, huge, big);
    struct xkvm_ctx_error e;
    CHECK_EQ(xkvm_ctx_verify(img, n, NULL, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_BAD_LENGTH);
    CHECK_STR_CONTAINS(e.msg, "exceeds the maximum 36872");
    free(huge);
}

static void test_gnttab_frame_rules(void)
{
    static alignas(8) uint8_t page[4096];
    BODY_ACCEPT(XKVM_CTX_GNTTAB_FRAME, 0, page, 4096);
    BODY_ACCEPT(XKVM_CTX_GNTTAB_FRAME, 4095, page, 4096);
    BODY_REJECT(XKVM_CTX_GNTTAB_FRAME, 0, page, 4095, XKVM_CTX_ERR_BAD_LENGTH,
                "exactly 4096 bytes");
    BODY_REJECT(XKVM_CTX_GNTTAB_FRAME, 4096, page, 4096, XKVM_CTX_ERR_INSTANCE,
                "instance 4096, must be 0..4095");
}

static void test_hvm_params_rules(void)
{
    alignas(8) uint8_t b[8 + 16 * 40];
    struct xkvm_ctx_hvm_params *hp = (void *)b;
    memset(b, 0, sizeof(b));
    hp->count = 3;
    hp->params[0] = (struct xkvm_ctx_hvm_param) { 0, 1 };
    hp->params[1] = (struct xkvm_ctx_hvm_param) { 2, 7 };
    hp->params[2] = (struct xkvm_ctx_hvm_param) { 38, 9 };
    BODY_ACCEPT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48);
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 32, XKVM_CTX_ERR_BAD_LENGTH,
                "count 3 does not match length 40");
    hp->params[2].index = 39;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48, XKVM_CTX_ERR_BAD_VALUE,
                "element 2: field 'index' is 39, must be 0..38");
    hp->params[2].index = 1;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48, XKVM_CTX_ERR_BAD_VALUE,
                "element 2: index 1 is below index 2 of element 1");
    hp->params[2].index = 2;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48, XKVM_CTX_ERR_BAD_VALUE,
                "element 2: index 2 repeats index 2 of element 1");
    hp->params[2].index = 4;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48, XKVM_CTX_ERR_BAD_VALUE,
                "element 2: parameter 4 is retired");
    hp->params[2].index = 5;
    hp->pad = 1;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 48, XKVM_CTX_ERR_RESERVED, "'pad'");
    hp->pad = 0;
    /* 40 entries cannot be sorted, distinct and below 39: the length says so first. */
    hp->count = 40;
    BODY_REJECT(XKVM_CTX_HVM_PARAMS, 0, b, 8 + 16 * 40, XKVM_CTX_ERR_BAD_LENGTH,
                "exceeds the maximum 632");
    hp->count = 0;
    BODY_ACCEPT(XKVM_CTX_HVM_PARAMS, 0, b, 8);
}

static void test_vcpu_state_rules(void)
{
    struct xkvm_ctx_vcpu_state s = { 0, 0 };
    BODY_ACCEPT(XKVM_CTX_VCPU_STATE, 4095, &s, sizeof(s));
    s.flags = XKVM_CTX_VCPU_INITIALISED;
    BODY_ACCEPT(XKVM_CTX_VCPU_STATE, 1, &s, sizeof(s));
    s.flags = 8;
    BODY_REJECT(XKVM_CTX_VCPU_STATE, 0, &s, sizeof(s), XKVM_CTX_ERR_RESERVED,
                "field 'flags' has unknown bits 0x8");
    s.flags = XKVM_CTX_VCPU_UP;
    BODY_REJECT(XKVM_CTX_VCPU_STATE, 0, &s, sizeof(s), XKVM_CTX_ERR_BAD_VALUE,
                "UP without INITIALISED");
    s.flags = XKVM_CTX_VCPU_INITIALISED | XKVM_CTX_VCPU_HALTED;
    BODY_REJECT(XKVM_CTX_VCPU_STATE, 0, &s, sizeof(s), XKVM_CTX_ERR_BAD_VALUE,
                "HALTED without UP");
    s.flags = 0;
    s.pad = 2;
    BODY_REJECT(XKVM_CTX_VCPU_STATE, 0, &s, sizeof(s), XKVM_CTX_ERR_RESERVED, "'pad'");
    s.pad = 0;
    BODY_REJECT(XKVM_CTX_VCPU_STATE, 4096, &s, sizeof(s), XKVM_CTX_ERR_INSTANCE,
                "instance 4096, must be 0..4095");
}

static void test_vcpu_info_rules(void)
{
    struct xkvm_ctx_vcpu_info vi = { XKVM_CTX_VCPU_INFO_REGISTERED, 4096 - 64, 0x55 };
    BODY_ACCEPT(XKVM_CTX_VCPU_INFO, 40, &vi, sizeof(vi));
    vi.offset = 4096 - 63;
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "field 'offset' is 4033, must be 0..4032");
    vi.offset = 12;
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "offset 12, must be 8-byte aligned");
    vi.offset = 0;
    vi.gfn = XKVM_CTX_GFN_NONE;
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "registered vcpu_info without a gfn");
    vi.gfn = XKVM_CTX_GFN_MAX + 2;
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "beyond the largest gfn");
    vi = (struct xkvm_ctx_vcpu_info) { 3, 0, XKVM_CTX_GFN_NONE };
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "field 'placement' has unknown value 3");
    vi = (struct xkvm_ctx_vcpu_info) { XKVM_CTX_VCPU_INFO_SHARED, 0, XKVM_CTX_GFN_NONE };
    BODY_ACCEPT(XKVM_CTX_VCPU_INFO, 31, &vi, sizeof(vi));
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 32, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "vCPU 32 has no slot in shared_info");
    vi.gfn = 5;
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 0, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "placement shared_info with gfn/offset set");
    vi = (struct xkvm_ctx_vcpu_info) { XKVM_CTX_VCPU_INFO_NONE, 8, XKVM_CTX_GFN_NONE };
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 40, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "placement none with gfn/offset set");
    vi.offset = 0;
    BODY_ACCEPT(XKVM_CTX_VCPU_INFO, 32, &vi, sizeof(vi));
    BODY_REJECT(XKVM_CTX_VCPU_INFO, 31, &vi, sizeof(vi), XKVM_CTX_ERR_BAD_VALUE,
                "vCPU 31 below 32 always has a vcpu_info");
}

static void test_upcall_rules(void)
{
    struct xkvm_ctx_upcall u = { 0, 0 };
    BODY_ACCEPT(XKVM_CTX_UPCALL, 0, &u, sizeof(u));
    u.vector = 16;
    BODY_ACCEPT(XKVM_CTX_UPCALL, 0, &u, sizeof(u));
    u.vector = 255;
    BODY_ACCEPT(XKVM_CTX_UPCALL, 0, &u, sizeof(u));
    u.vector = 15;
    BODY_REJECT(XKVM_CTX_UPCALL, 0, &u, sizeof(u), XKVM_CTX_ERR_BAD_VALUE,
                "upcall vector 15, must be 0 (none) or 16..255");
    u.vector = 256;
    BODY_REJECT(XKVM_CTX_UPCALL, 0, &u, sizeof(u), XKVM_CTX_ERR_BAD_VALUE,
                "field 'vector' is 256, must be 0..255");
    u.vector = 0;
    u.pad = 1;
    BODY_REJECT(XKVM_CTX_UPCALL, 0, &u, sizeof(u), XKVM_CTX_ERR_RESERVED, "'pad'");
}

static void test_timer_rules(void)
{
    struct xkvm_ctx_timer t = { UINT64_MAX, 1000000 };
    BODY_ACCEPT(XKVM_CTX_TIMER, 0, &t, sizeof(t));
    t.periodic_period = UINT64_MAX >> 2;
    BODY_ACCEPT(XKVM_CTX_TIMER, 0, &t, sizeof(t));
    t.periodic_period = 999999;
    BODY_REJECT(XKVM_CTX_TIMER, 0, &t, sizeof(t), XKVM_CTX_ERR_BAD_VALUE,
                "periodic_period 999999 ns, must be 0 (none) or 1000000..");
    t.periodic_period = (UINT64_MAX >> 2) + 1;
    BODY_REJECT(XKVM_CTX_TIMER, 0, &t, sizeof(t), XKVM_CTX_ERR_BAD_VALUE, "periodic_period");
    BODY_REJECT(XKVM_CTX_TIMER, 0, &t, 8, XKVM_CTX_ERR_BAD_LENGTH, "exactly 16");
}

static void test_vm_assist_rules(void)
{
    struct xkvm_ctx_vm_assist a = { XKVM_CTX_VMASST_RUNSTATE_UPDATE_FLAG, 0 };
    BODY_ACCEPT(XKVM_CTX_VM_ASSIST, 0, &a, sizeof(a));
    a.types = 0;
    BODY_ACCEPT(XKVM_CTX_VM_ASSIST, 0, &a, sizeof(a));
    a.types = 1u << 2;      /* writable_pagetables: PV only */
    BODY_REJECT(XKVM_CTX_VM_ASSIST, 0, &a, sizeof(a), XKVM_CTX_ERR_RESERVED, "'types'");
    a.types = 0;
    a.pad = 1;
    BODY_REJECT(XKVM_CTX_VM_ASSIST, 0, &a, sizeof(a), XKVM_CTX_ERR_RESERVED, "'pad'");
    a.pad = 0;
    BODY_REJECT(XKVM_CTX_VM_ASSIST, 1, &a, sizeof(a), XKVM_CTX_ERR_INSTANCE, "");
}

static void test_vcpu_platform_rules(void)
{
    struct xkvm_ctx_vcpu_platform p = { XKVM_CTX_MP_INIT_RECEIVED, 0, 0xffffffff80001000ull };
    BODY_ACCEPT(XKVM_CTX_VCPU_PLATFORM, 3, &p, sizeof(p));
    p.mp_state = XKVM_CTX_MP_HALTED;
    BODY_ACCEPT(XKVM_CTX_VCPU_PLATFORM, 0, &p, sizeof(p));
    p.mp_state = 4;         /* SIPI_RECEIVED is never saved: KVM applies it on reading */
    BODY_REJECT(XKVM_CTX_VCPU_PLATFORM, 0, &p, sizeof(p), XKVM_CTX_ERR_BAD_VALUE,
                "'mp_state'");
    p.mp_state = 0;
    p.intr_state = XKVM_CTX_INTR_SHADOW_STI | XKVM_CTX_INTR_NMI_MASKED;
    BODY_ACCEPT(XKVM_CTX_VCPU_PLATFORM, 0, &p, sizeof(p));
    p.intr_state = XKVM_CTX_INTR_ALL + 1;       /* a bit no version defines */
    BODY_REJECT(XKVM_CTX_VCPU_PLATFORM, 0, &p, sizeof(p), XKVM_CTX_ERR_RESERVED,
                "'intr_state'");
    p.intr_state = 0;
    BODY_REJECT(XKVM_CTX_VCPU_PLATFORM, 0, &p, 8, XKVM_CTX_ERR_BAD_LENGTH, "16");
}

/* The typed writers and accessors of the platform records, and TSC_INFO's writer. */
static void test_platform_roundtrip(void)
{
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    struct xkvm_ctx_tsc_info tsc = { .mode = XKVM_CTX_TSC_MODE_DEFAULT, .khz = 2899999 };
    struct xkvm_ctx_vcpu_platform p = { XKVM_CTX_MP_UNINITIALIZED, XKVM_CTX_INTR_SHADOW_STI,
                                        0x7000 };
    CHECK_EQ(xkvm_ctx_write_start(&w), 0);
    CHECK_EQ(xkvm_ctx_write_domain(&w, 5, 2), 0);
    CHECK_EQ(xkvm_ctx_write_tsc_info(&w, &tsc), 0);
    CHECK_EQ(xkvm_ctx_write_vm_assist(&w, XKVM_CTX_VMASST_RUNSTATE_UPDATE_FLAG), 0);
    CHECK_EQ(xkvm_ctx_write_vcpu_platform(&w, 1, &p), 0);
    CHECK_EQ(xkvm_ctx_write_end(&w), 0);
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    struct xkvm_ctx_error e;
    CHECK_MSG(xkvm_ctx_check_image(img, len, NULL, NULL, &e) == 0, "%s", e.msg);
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    unsigned found = 0;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        const struct xkvm_ctx_vcpu_platform *vp = xkvm_ctx_get_vcpu_platform(&rec);
        const struct xkvm_ctx_vm_assist *va = xkvm_ctx_get_vm_assist(&rec);
        const struct xkvm_ctx_tsc_info *ti = xkvm_ctx_get_tsc_info(&rec);
        if (vp && rec.instance == 1 && vp->mp_state == XKVM_CTX_MP_UNINITIALIZED &&
            vp->intr_state == XKVM_CTX_INTR_SHADOW_STI && vp->time_area == 0x7000)
            found |= 1;
        if (va && va->types == XKVM_CTX_VMASST_RUNSTATE_UPDATE_FLAG)
            found |= 2;
        if (ti && ti->khz == 2899999)
            found |= 4;
    }
    CHECK_EQ(found, 7);
    xkvm_ctx_writer_release(&w);

    /* A vCPU id beyond the domain's is an image-level error, as for the other types. */
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_write_start(&w);
    xkvm_ctx_write_domain(&w, 5, 2);
    xkvm_ctx_write_vcpu_platform(&w, 2, &p);
    xkvm_ctx_write_end(&w);
    img = xkvm_ctx_writer_data(&w, &len);
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, &e), -1);
    xkvm_ctx_writer_release(&w);
}

static void test_hypercall_rules(void)
{
    struct xkvm_ctx_hypercall h = { XKVM_CTX_HYPERCALL_VMCALL, 0 };
    BODY_ACCEPT(XKVM_CTX_HYPERCALL, 0, &h, sizeof(h));
    BODY_REJECT(XKVM_CTX_HYPERCALL, 1, &h, sizeof(h), XKVM_CTX_ERR_INSTANCE, "");
    h.flags = 2;
    BODY_REJECT(XKVM_CTX_HYPERCALL, 0, &h, sizeof(h), XKVM_CTX_ERR_RESERVED, "flags");
    h.flags = XKVM_CTX_HYPERCALL_VMCALL;
    h.pad = 1;
    BODY_REJECT(XKVM_CTX_HYPERCALL, 0, &h, sizeof(h), XKVM_CTX_ERR_RESERVED, "'pad'");
    BODY_REJECT(XKVM_CTX_HYPERCALL, 0, &h, 4, XKVM_CTX_ERR_BAD_LENGTH, "exactly 8");
    /* The typed writer and accessor agree. */
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_write_start(&w);
    xkvm_ctx_write_hypercall(&w, XKVM_CTX_HYPERCALL_VMCALL);
    CHECK_EQ(xkvm_ctx_write_end(&w), 0);
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    bool seen = false;
    while (xkvm_ctx_next(&r, &rec) > 0)
        if (xkvm_ctx_get_hypercall(&rec))
            seen = xkvm_ctx_get_hypercall(&rec)->flags == XKVM_CTX_HYPERCALL_VMCALL;
    CHECK(seen);
    xkvm_ctx_writer_release(&w);
}

/* ---- image-level rules ------------------------------------------------------------- */

static void test_altp2m_rules(void)
{
    struct xkvm_ctx_altp2m st = { .mode = 1, .state = 1, .active = 9 };
    BODY_ACCEPT(XKVM_CTX_ALTP2M, 0, &st, sizeof(st));
    st.active = 10;
    BODY_REJECT(XKVM_CTX_ALTP2M, 0, &st, sizeof(st), XKVM_CTX_ERR_BAD_VALUE, "'active'");
    st.active = 0;
    st.mode = 4;
    BODY_REJECT(XKVM_CTX_ALTP2M, 0, &st, sizeof(st), XKVM_CTX_ERR_BAD_VALUE, "'mode'");

    alignas(8) uint8_t b[16 + 16 * 4];
    struct xkvm_ctx_altp2m_view *v = (void *)b;
    memset(b, 0, sizeof(b));
    v->default_access = 7;
    v->visible = 1;
    v->nr_access = 3;
    v->nr_remaps = 1;
    v->entries[0] = (struct xkvm_ctx_altp2m_entry){ 0x10, 5 };
    v->entries[1] = (struct xkvm_ctx_altp2m_entry){ 0x11, 0 };
    v->entries[2] = (struct xkvm_ctx_altp2m_entry){ 0x20, 7 };
    v->entries[3] = (struct xkvm_ctx_altp2m_entry){ 0x11, 0x30 };  /* its own order */
    BODY_ACCEPT(XKVM_CTX_ALTP2M_VIEW, 9, b, sizeof(b));
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 10, b, sizeof(b), XKVM_CTX_ERR_INSTANCE, "");
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b) - 16, XKVM_CTX_ERR_BAD_LENGTH,
                "do not match length");
    v->entries[1].value = 3;        /* rw: an execute restriction KVM cannot hold */
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "element 1: access 3");
    v->entries[1] = (struct xkvm_ctx_altp2m_entry){ 0x10, 0 };
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "element 1: gfn 0x10 not above");
    v->entries[1] = (struct xkvm_ctx_altp2m_entry){ 0x11, 0 };
    v->entries[3].value = 1ull << 52;
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "element 3: gfn beyond 2^52");
    v->entries[3].value = 0x30;
    v->default_access = 1;
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE,
                "default_access 1");
    v->default_access = 0;
    v->nr_access = 1ull << 40;      /* a hostile count: refused, never multiplied */
    BODY_REJECT(XKVM_CTX_ALTP2M_VIEW, 1, b, sizeof(b), XKVM_CTX_ERR_BAD_VALUE, "");
}

static void test_image_duplicate_instance(void)
{
    struct domain_spec s;
    spec_default(&s);
    s.ports[s.nr_ports].port = 2;                   /* port 2 again */
    s.ports[s.nr_ports++].p = port_ipi;
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    struct xkvm_ctx_error e;
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_DUPLICATE);
    CHECK_EQ(e.offset, offset_of(img, len, XKVM_CTX_EVTCHN_PORT, 2, 1));
    char why[96];
    snprintf(why, sizeof(why), "second record for instance 2 (the first is at offset %llu)",
             (unsigned long long)offset_of(img, len, XKVM_CTX_EVTCHN_PORT, 2, 0));
    CHECK_STR_CONTAINS(e.msg, why);
    CHECK_STR_CONTAINS(e.msg, "(EVTCHN_PORT)");
    free(img);

    /* Per-vCPU types too. */
    spec_default(&s);
    s.extra_timer_vcpu = 1;
    img = write_domain(&s, &len);
    REQUIRE(img);
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, &e), -1);
    CHECK_EQ(e.code, XKVM_CTX_ERR_DUPLICATE);
    CHECK_EQ(e.offset, offset_of(img, len, XKVM_CTX_TIMER, 1, 1));
    free(img);
}

static void test_image_domain_rules(void)
{
    struct domain_spec s;
    spec_default(&s);
    s.no_domain = true;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_MISSING_RECORD, XKVM_CTX_SHARED_INFO_GFN, 0,
                 "PV state without a DOMAIN record");

    spec_default(&s);
    s.extra_timer_vcpu = 2;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_TIMER, 2, "vCPU 2, the domain has 2");

    spec_default(&s);
    s.nr_vcpus = 1;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_VCPU_STATE, 1,
                 "vCPU 1, the domain has 1");

    /* Xen's own types need no DOMAIN. */
    struct xkvm_ctx_writer w;
    xkvm_ctx_writer_init_buffer(&w);
    xkvm_ctx_write_start(&w);
    xkvm_ctx_write_shared_info(&w, 0, shinfo_page, 4096);
    xkvm_ctx_write_end(&w);
    size_t len;
    const uint8_t *img = xkvm_ctx_writer_data(&w, &len);
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, NULL), 0);
    xkvm_ctx_writer_release(&w);
}

static void test_image_port_rules(void)
{
    struct domain_spec s;

    spec_default(&s);
    s.ports[0].p.notify_vcpu = 2;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 1,
                 "port 1 notifies vCPU 2, the domain has 2");

    spec_default(&s);
    s.no_shared_info = true;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_MISSING_RECORD, XKVM_CTX_EVTCHN_PORT, 1,
                 "port 1 without a SHARED_INFO record");

    spec_default(&s);
    s.short_shared_info = true;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 1,
                 "SHARED_INFO holds 3072 bytes");

    spec_default(&s);
    s.ports[3].p.priority = 3;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 4,
                 "port 4 has priority 3 under the 2-level ABI");

    /* Loopback: 5 <-> 6 in domain 3. Break it three ways. */
    spec_default(&s);
    s.ports[5].p.remote_port = 4;                   /* 6 -> 4 (unbound) */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 5,
                 "port 5 is bound to port 6 of its own domain 3, which is not bound back");
    spec_default(&s);
    s.ports[5].p.remote_port = 9;                   /* 6 -> 9 (no such port) */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 5, "not bound back");
    spec_default(&s);
    s.ports[5].p.remote_port = 6;                   /* 6 -> 6 */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 5, "not bound back");
    spec_default(&s);
    s.nr_ports = 5;                                 /* 5 -> 6, no 6 at all */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 5, "not bound back");
    spec_default(&s);
    s.ports[4].p.remote_port = 5;
    s.nr_ports = 5;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 5,
                 "port 5 is bound to itself");
    /* Another domain's ports are not in this image: nothing to pair. */
    spec_default(&s);
    s.ports[4].p.remote_domid = 4;
    s.ports[5].p.remote_domid = 4;
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    struct xkvm_ctx_error e;
    CHECK_MSG(xkvm_ctx_check_image(img, len, NULL, NULL, &e) == 0, "%s", e.msg);
    free(img);
}

static void test_evtchn_fifo_rules(void)
{
    struct xkvm_ctx_evtchn_fifo_vcpu v = { .control_gfn = 0x100, .offset = 4096 - 72 };
    v.tail[15] = 4095;
    BODY_ACCEPT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v));
    v.offset = 4096 - 64;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v), XKVM_CTX_ERR_BAD_VALUE,
                "field 'offset'");
    v.offset = 12;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v), XKVM_CTX_ERR_BAD_VALUE,
                "must be 8-byte aligned");
    v.offset = 0;
    v.tail[3] = 4096;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v), XKVM_CTX_ERR_BAD_VALUE,
                "queue 3's tail is port 4096");
    v.tail[3] = 0;
    v.control_gfn = XKVM_CTX_GFN_NONE;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v), XKVM_CTX_ERR_BAD_VALUE,
                "control block without a gfn");
    v.control_gfn = 1;
    v.pad = 1;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_VCPU, 7, &v, sizeof(v), XKVM_CTX_ERR_RESERVED, "'pad'");

    uint64_t a[1 + 129] = { 2, 0x10, 0x11 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_FIFO_ARRAY, 0, a, 8 + 16);
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_ARRAY, 0, a, 8 + 8, XKVM_CTX_ERR_BAD_LENGTH,
                "nr_pages 2 does not match length 16");
    a[2] = XKVM_CTX_GFN_NONE;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_ARRAY, 0, a, 8 + 16, XKVM_CTX_ERR_BAD_VALUE,
                "event array page 1 has no gfn");
    a[0] = 129;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_ARRAY, 0, a, 8 + 129 * 8, XKVM_CTX_ERR_BAD_LENGTH, "");

    uint32_t h[6] = { 3, 0, 5, 1030, 4095 };
    BODY_ACCEPT(XKVM_CTX_EVTCHN_FIFO_HELD, 0, h, 8 + 12);
    h[3] = 5;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_HELD, 0, h, 8 + 12, XKVM_CTX_ERR_BAD_VALUE,
                "must ascend");
    h[2] = 0;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_HELD, 0, h, 8 + 12, XKVM_CTX_ERR_BAD_VALUE, "'port'");
    h[0] = 0;
    BODY_REJECT(XKVM_CTX_EVTCHN_FIFO_HELD, 0, h, 8, XKVM_CTX_ERR_BAD_VALUE, "'nr_ports'");
}

static void test_image_fifo_rules(void)
{
    struct domain_spec s;
    struct xkvm_ctx_error e;
    size_t len;

    /* A FIFO domain: any priority, held ports past the array. */
    spec_default(&s);
    s.abi = XKVM_CTX_EVTCHN_ABI_FIFO;
    s.fifo_vcpus = 2;
    s.fifo_pages = 1;
    s.ports[3].p.priority = 3;
    s.held[0] = 4095;
    s.nr_held = 1;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    CHECK_MSG(xkvm_ctx_check_image(img, len, NULL, NULL, &e) == 0, "%s", e.msg);
    free(img);

    s.abi = XKVM_CTX_EVTCHN_ABI_2L;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 4,
                 "priority 3 under the 2-level ABI");
    s.ports[3].p.priority = 7;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_FIFO_ARRAY, 0,
                 "FIFO event channel state without EVTCHN_ABI fifo");
    s.abi = XKVM_CTX_EVTCHN_ABI_FIFO;
    s.fifo_vcpus = 0;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_MISSING_RECORD, XKVM_CTX_EVTCHN_ABI, 0,
                 "without any vCPU's EVTCHN_FIFO_VCPU");
    s.fifo_vcpus = 3;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_FIFO_VCPU, 2,
                 "vCPU 2, the domain has 2");
    s.fifo_vcpus = 1;
    s.held[0] = 7;      /* bound, but port 7 has a word in page 0 */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_FIFO_HELD, 0,
                 "port 7 is held pending but has an event word");
    s.held[0] = 2000;   /* past the array, not bound */
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_FIFO_HELD, 0,
                 "port 2000 is held pending but not bound");
}

static void test_image_virq_rules(void)
{
    struct domain_spec s;

    /* VIRQ_TIMER twice on vCPU 0. */
    spec_default(&s);
    s.ports[2].p.notify_vcpu = 0;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 3,
                 "port 3: VIRQ 0 is already bound on this vCPU");
    /* A global VIRQ once, whichever vCPU it notifies. */
    spec_default(&s);
    s.ports[s.nr_ports].port = 100;
    s.ports[s.nr_ports].p = s.ports[6].p;
    s.ports[s.nr_ports++].p.notify_vcpu = 0;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_EVTCHN_PORT, 100,
                 "port 100: VIRQ 8 is already bound (a global VIRQ)");
}

static void test_image_gnttab_rules(void)
{
    struct domain_spec s;

    spec_default(&s);
    s.frames_written = 1;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_MISSING_RECORD, XKVM_CTX_GNTTAB, 0,
                 "grant frame 1 of 2 has no GNTTAB_FRAME record");

    spec_default(&s);
    s.frames_written = 3;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_INCONSISTENT, XKVM_CTX_GNTTAB_FRAME, 2,
                 "grant frame 2, the table has 2 frames");

    spec_default(&s);
    s.no_gnttab = true;
    IMAGE_REJECT(&s, XKVM_CTX_ERR_MISSING_RECORD, XKVM_CTX_GNTTAB_FRAME, 0,
                 "grant frame 0 without a GNTTAB record");

    spec_default(&s);
    s.nr_frames = s.frames_written = 3;
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, NULL), 0);
    free(img);
}

/* The image check reports what verify reports, when verify fails. */
static void test_image_check_includes_verify(void)
{
    struct domain_spec s;
    spec_default(&s);
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    uint64_t off = offset_of(img, len, XKVM_CTX_EVTCHN_PORT, 1, 0);
    img[off + 16] = 9;                              /* state 9 */
    struct xkvm_ctx_error e1, e2;
    CHECK_EQ(xkvm_ctx_verify(img, len, NULL, NULL, &e1), -1);
    CHECK_EQ(xkvm_ctx_check_image(img, len, NULL, NULL, &e2), -1);
    CHECK_EQ(e1.code, e2.code);
    CHECK_EQ(e1.offset, e2.offset);
    CHECK(strcmp(e1.msg, e2.msg) == 0);
    free(img);
}

/* Every prefix refused, every bit flip handled, by the image check. */
static void test_image_check_hostile(void)
{
    struct domain_spec s;
    spec_default(&s);
    s.nr_frames = s.frames_written = 1;
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    for (size_t n = 0; n < len; n += 8) {
        uint8_t *copy = malloc(n ? n : 1);
        REQUIRE(copy);
        memcpy(copy, img, n);
        struct xkvm_ctx_error e;
        CHECK_MSG(xkvm_ctx_check_image(copy, n, NULL, NULL, &e) == -1, "prefix %zu", n);
        free(copy);
    }
    uint8_t *copy = malloc(len);
    REQUIRE(copy);
    /* Flip bits outside the opaque page bodies (those are any bytes at all). */
    uint64_t skip_from = offset_of(img, len, XKVM_CTX_SHARED_INFO, 0, 0);
    uint64_t skip_to = offset_of(img, len, XKVM_CTX_HVM_PARAMS, 0, 0);
    unsigned accepted = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        if (bit / 8 >= skip_from + 24 && bit / 8 < skip_to - 8)
            continue;
        memcpy(copy, img, len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct xkvm_ctx_error e;
        struct xkvm_ctx_summary sum;
        if (xkvm_ctx_check_image(copy, len, NULL, &sum, &e) == 0) {
            CHECK(sum.used <= len);
            accepted++;
        } else {
            CHECK(e.offset <= len && e.msg[0]);
        }
    }
    CHECK(accepted > 0);        /* e.g. value bits, deadlines */
    free(copy);
    free(img);
}

/* ---- dump --------------------------------------------------------------------------- */

static void test_dump(void)
{
    struct domain_spec s;
    spec_default(&s);
    size_t len;
    uint8_t *img = write_domain(&s, &len);
    REQUIRE(img);
    char *text = NULL, *json = NULL;
    size_t tl = 0, jl = 0;
    FILE *ft = open_memstream(&text, &tl), *fj = open_memstream(&json, &jl);
    REQUIRE(ft && fj);
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    xkvm_ctx_reader_init(&r, img, len, NULL);
    while (xkvm_ctx_next(&r, &rec) > 0) {
        xkvm_ctx_dump_record(ft, XKVM_CTX_DUMP_TEXT, &rec);
        xkvm_ctx_dump_record(fj, XKVM_CTX_DUMP_JSON, &rec);
    }
    fclose(ft);
    fclose(fj);
    CHECK_STR_CONTAINS(text, "DOMAIN          inst=0 len=8 domid=3 nr_vcpus=2\n");
    CHECK_STR_CONTAINS(text, "SHARED_INFO_GFN inst=0 len=8 gfn=0xfefff\n");
    CHECK_STR_CONTAINS(text, "EVTCHN_ABI      inst=0 len=8 abi=2l(0)\n");
    CHECK_STR_CONTAINS(text, "GNTTAB          inst=0 len=24 version=v1(1) nr_frames=2\n"
                             "    [0] gfn=0xf0000\n    [1] gfn=none\n");
    CHECK_STR_CONTAINS(text, "GNTTAB_FRAME    inst=1 len=4096 data=(4096 bytes) "
                             "v1_entries_in_use=");
    CHECK_STR_CONTAINS(text, "HVM_PARAMS      inst=0 len=88 count=5\n"
                             "    [0] index=0 value=0x2000000000000f3\n");
    CHECK_STR_CONTAINS(text, "VCPU_STATE      inst=1 len=8 flags=0x7(initialised|up|halted)\n");
    CHECK_STR_CONTAINS(text, "VCPU_INFO       inst=1 len=16 placement=registered(2) "
                             "offset=4032 gfn=0x1234\n");
    CHECK_STR_CONTAINS(text, "VCPU_INFO       inst=0 len=16 placement=shared_info(1) "
                             "offset=0 gfn=none\n");
    CHECK_STR_CONTAINS(text, "UPCALL          inst=1 len=8 vector=244\n");
    CHECK_STR_CONTAINS(text, "TIMER           inst=1 len=16 singleshot_deadline=1001 "
                             "periodic_period=10000000\n");
    CHECK_STR_CONTAINS(text, "EVTCHN_PORT     inst=5 len=16 state=interdomain(2) priority=7 "
                             "notify_vcpu=0 remote_domid=3 remote_port=6 virq=0\n");
    CHECK_STR_CONTAINS(json, "\"name\":\"GNTTAB\",\"instance\":0,\"length\":24,\"fields\":"
                             "{\"version\":1,\"nr_frames\":2},\"elements\":[{\"gfn\":983040},"
                             "{\"gfn\":null}]}\n");
    CHECK_STR_CONTAINS(json, "\"fields\":{\"placement\":1,\"offset\":0,\"gfn\":null}}");
    CHECK_STR_CONTAINS(json, "\"fields\":{\"flags\":7}}");
    CHECK_STR_CONTAINS(json, "\"name\":\"GNTTAB_FRAME\",\"instance\":0,\"length\":4096,"
                             "\"fields\":{\"data\":\"00010203");
    free(text);
    free(json);
    free(img);
}

int main(void)
{
    RUN_TEST(test_roundtrip_every_type);
    RUN_TEST(test_typed_writers_unaligned);
    RUN_TEST(test_domain_rules);
    RUN_TEST(test_shared_info_gfn_rules);
    RUN_TEST(test_evtchn_abi_rules);
    RUN_TEST(test_evtchn_port_rules);
    RUN_TEST(test_gnttab_rules);
    RUN_TEST(test_gnttab_frame_rules);
    RUN_TEST(test_hvm_params_rules);
    RUN_TEST(test_vcpu_state_rules);
    RUN_TEST(test_vcpu_info_rules);
    RUN_TEST(test_upcall_rules);
    RUN_TEST(test_timer_rules);
    RUN_TEST(test_vm_assist_rules);
    RUN_TEST(test_vcpu_platform_rules);
    RUN_TEST(test_platform_roundtrip);
    RUN_TEST(test_hypercall_rules);
    RUN_TEST(test_altp2m_rules);
    RUN_TEST(test_image_duplicate_instance);
    RUN_TEST(test_image_domain_rules);
    RUN_TEST(test_image_port_rules);
    RUN_TEST(test_evtchn_fifo_rules);
    RUN_TEST(test_image_fifo_rules);
    RUN_TEST(test_image_virq_rules);
    RUN_TEST(test_image_gnttab_rules);
    RUN_TEST(test_image_check_includes_verify);
    RUN_TEST(test_image_check_hostile);
    RUN_TEST(test_dump);
    HARNESS_EXIT();
}
