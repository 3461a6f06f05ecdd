/*
 * The xkvm PV state records: typed writers (xkvmd fills a struct, never bytes) and
 * the image-level check of the rules that span records (docs/domain-context.md,
 * "Image-level rules").
 */
#include <inttypes.h>
#include <stdlib.h>

#include "ctx_internal.h"

/* ---- typed writers ----------------------------------------------------------- */

/* Bodies go out through an 8-aligned copy, whatever the caller's struct alignment. */
#define WRITE_COPY(w, type, instance, st, src)                                      \
    do {                                                                           \
        union { uint64_t align; st v; } _body;                                     \
        memcpy(&_body.v, (src), sizeof(_body.v));                                  \
        return xkvm_ctx_write((w), (type), (instance), &_body.v, sizeof(_body.v)); \
    } while (0)

int xkvm_ctx_write_domain(struct xkvm_ctx_writer *w, uint16_t domid, uint32_t nr_vcpus)
{
    struct xkvm_ctx_domain d = { .domid = domid, .nr_vcpus = nr_vcpus };
    WRITE_COPY(w, XKVM_CTX_DOMAIN, 0, struct xkvm_ctx_domain, &d);
}

int xkvm_ctx_write_shared_info_gfn(struct xkvm_ctx_writer *w, uint64_t gfn)
{
    struct xkvm_ctx_shared_info_gfn s = { .gfn = gfn };
    WRITE_COPY(w, XKVM_CTX_SHARED_INFO_GFN, 0, struct xkvm_ctx_shared_info_gfn, &s);
}

int xkvm_ctx_write_evtchn_abi(struct xkvm_ctx_writer *w, uint32_t abi)
{
    struct xkvm_ctx_evtchn_abi a = { .abi = abi };
    WRITE_COPY(w, XKVM_CTX_EVTCHN_ABI, 0, struct xkvm_ctx_evtchn_abi, &a);
}

int xkvm_ctx_write_evtchn_port(struct xkvm_ctx_writer *w, uint32_t port,
                               const struct xkvm_ctx_evtchn_port *rec)
{
    WRITE_COPY(w, XKVM_CTX_EVTCHN_PORT, port, struct xkvm_ctx_evtchn_port, rec);
}

int xkvm_ctx_write_gnttab(struct xkvm_ctx_writer *w, uint32_t version,
                          const uint64_t *frame_gfn, uint32_t nr_frames)
{
    if (w->failed)
        return -1;
    /* Bound the allocation; the validator reports the range error properly. */
    uint32_t n = nr_frames <= XKVM_CTX_GNTTAB_MAX_FRAMES ? nr_frames : 0;
    if (version == 2)
        n += XKVM_CTX_GNTTAB_STATUS_FRAMES(n);
    size_t len = sizeof(struct xkvm_ctx_gnttab) + (size_t)n * sizeof(uint64_t);
    struct xkvm_ctx_gnttab *gt = malloc(len);
    if (!gt) {
        ctx_set_error(&w->err, XKVM_CTX_ERR_NOMEM, w->offset, true, XKVM_CTX_GNTTAB,
                      "GNTTAB", "no memory for a %zu-byte body", len);
        w->failed = true;
        return -1;
    }
    gt->version = version;
    gt->nr_frames = nr_frames;
    if (n)
        memcpy(gt->frame_gfn, frame_gfn, (size_t)n * sizeof(uint64_t));
    int rc = xkvm_ctx_write(w, XKVM_CTX_GNTTAB, 0, gt, len);
    free(gt);
    return rc;
}

int xkvm_ctx_write_gnttab_frame(struct xkvm_ctx_writer *w, uint32_t idx, const void *page)
{
    if ((uintptr_t)page % XKVM_CTX_ALIGN == 0)
        return xkvm_ctx_write(w, XKVM_CTX_GNTTAB_FRAME, idx, page, XKVM_CTX_PAGE_SIZE);
    alignas(8) uint8_t copy[XKVM_CTX_PAGE_SIZE];
    memcpy(copy, page, sizeof(copy));
    return xkvm_ctx_write(w, XKVM_CTX_GNTTAB_FRAME, idx, copy, sizeof(copy));
}

int xkvm_ctx_write_hvm_params(struct xkvm_ctx_writer *w,
                              const struct xkvm_ctx_hvm_param *params, uint32_t count)
{
    alignas(8) uint8_t body[sizeof(struct xkvm_ctx_hvm_params) +
                            XKVM_CTX_HVM_NR_PARAMS * sizeof(struct xkvm_ctx_hvm_param)];
    struct xkvm_ctx_hvm_params *hp = (struct xkvm_ctx_hvm_params *)body;

    if (w->failed)
        return -1;
    if (count > XKVM_CTX_HVM_NR_PARAMS) {
        ctx_set_error(&w->err, XKVM_CTX_ERR_BAD_LENGTH, w->offset, true, XKVM_CTX_HVM_PARAMS,
                      "HVM_PARAMS", "%" PRIu32 " parameters, at most %u", count,
                      XKVM_CTX_HVM_NR_PARAMS);
        w->failed = true;
        return -1;
    }
    memset(hp, 0, sizeof(*hp));
    hp->count = count;
    if (count)
        memcpy(hp->params, params, count * sizeof(*params));
    return xkvm_ctx_write(w, XKVM_CTX_HVM_PARAMS, 0, body,
                          sizeof(*hp) + count * sizeof(*params));
}

int xkvm_ctx_write_vcpu_state(struct xkvm_ctx_writer *w, uint32_t vcpu, uint32_t flags)
{
    struct xkvm_ctx_vcpu_state s = { .flags = flags };
    WRITE_COPY(w, XKVM_CTX_VCPU_STATE, vcpu, struct xkvm_ctx_vcpu_state, &s);
}

int xkvm_ctx_write_vcpu_info(struct xkvm_ctx_writer *w, uint32_t vcpu,
                             const struct xkvm_ctx_vcpu_info *rec)
{
    WRITE_COPY(w, XKVM_CTX_VCPU_INFO, vcpu, struct xkvm_ctx_vcpu_info, rec);
}

int xkvm_ctx_write_upcall(struct xkvm_ctx_writer *w, uint32_t vcpu, uint32_t vector)
{
    struct xkvm_ctx_upcall u = { .vector = vector };
    WRITE_COPY(w, XKVM_CTX_UPCALL, vcpu, struct xkvm_ctx_upcall, &u);
}

int xkvm_ctx_write_timer(struct xkvm_ctx_writer *w, uint32_t vcpu,
                         const struct xkvm_ctx_timer *rec)
{
    WRITE_COPY(w, XKVM_CTX_TIMER, vcpu, struct xkvm_ctx_timer, rec);
}

int xkvm_ctx_write_runstate(struct xkvm_ctx_writer *w, uint32_t vcpu,
                            const struct xkvm_ctx_runstate *rec)
{
    WRITE_COPY(w, XKVM_CTX_RUNSTATE, vcpu, struct xkvm_ctx_runstate, rec);
}

int xkvm_ctx_write_time(struct xkvm_ctx_writer *w, const struct xkvm_ctx_time *rec)
{
    WRITE_COPY(w, XKVM_CTX_TIME, 0, struct xkvm_ctx_time, rec);
}

int xkvm_ctx_write_vm_assist(struct xkvm_ctx_writer *w, uint32_t types)
{
    struct xkvm_ctx_vm_assist a = { .types = types };
    WRITE_COPY(w, XKVM_CTX_VM_ASSIST, 0, struct xkvm_ctx_vm_assist, &a);
}

int xkvm_ctx_write_vcpu_platform(struct xkvm_ctx_writer *w, uint32_t vcpu,
                                 const struct xkvm_ctx_vcpu_platform *rec)
{
    WRITE_COPY(w, XKVM_CTX_VCPU_PLATFORM, vcpu, struct xkvm_ctx_vcpu_platform, rec);
}

int xkvm_ctx_write_tsc_info(struct xkvm_ctx_writer *w, const struct xkvm_ctx_tsc_info *rec)
{
    WRITE_COPY(w, XKVM_CTX_TSC_INFO, 0, struct xkvm_ctx_tsc_info, rec);
}

int xkvm_ctx_write_hypercall(struct xkvm_ctx_writer *w, uint32_t flags)
{
    struct xkvm_ctx_hypercall h = { .flags = flags };
    WRITE_COPY(w, XKVM_CTX_HYPERCALL, 0, struct xkvm_ctx_hypercall, &h);
}

int xkvm_ctx_write_evtchn_fifo_vcpu(struct xkvm_ctx_writer *w, uint32_t vcpu,
                                    const struct xkvm_ctx_evtchn_fifo_vcpu *rec)
{
    WRITE_COPY(w, XKVM_CTX_EVTCHN_FIFO_VCPU, vcpu, struct xkvm_ctx_evtchn_fifo_vcpu, rec);
}

/* A fixed 8-byte head (count, pad) and n elements of `elem` bytes, through a copy. */
static int write_counted(struct xkvm_ctx_writer *w, uint32_t type, const char *name,
                         uint32_t n, uint32_t max, const void *elems, size_t elem)
{
    if (w->failed)
        return -1;
    uint32_t k = n <= max ? n : 0;  /* bound the copy; the validator reports the count */
    size_t len = 8 + (size_t)k * elem;
    uint64_t *body = calloc(1, len + 8);
    if (!body) {
        ctx_set_error(&w->err, XKVM_CTX_ERR_NOMEM, w->offset, true, type, name,
                      "no memory for a %zu-byte body", len);
        w->failed = true;
        return -1;
    }
    memcpy(body, &n, sizeof(n));
    if (k)
        memcpy((uint8_t *)body + 8, elems, (size_t)k * elem);
    int rc = xkvm_ctx_write(w, type, 0, body, len);
    free(body);
    return rc;
}

int xkvm_ctx_write_evtchn_fifo_array(struct xkvm_ctx_writer *w, const uint64_t *page_gfn,
                                     uint32_t nr_pages)
{
    return write_counted(w, XKVM_CTX_EVTCHN_FIFO_ARRAY, "EVTCHN_FIFO_ARRAY", nr_pages,
                         XKVM_CTX_FIFO_MAX_PAGES, page_gfn, sizeof(uint64_t));
}

int xkvm_ctx_write_evtchn_fifo_held(struct xkvm_ctx_writer *w, const uint32_t *ports,
                                    uint32_t nr_ports)
{
    return write_counted(w, XKVM_CTX_EVTCHN_FIFO_HELD, "EVTCHN_FIFO_HELD", nr_ports,
                         XKVM_CTX_EVTCHN_2L_PORTS - 1, ports, sizeof(uint32_t));
}

/* ---- image-level check ------------------------------------------------------- */

struct rec_ref {
    uint32_t type, instance;
    uint32_t kind;                  /* type, if its layout is the builtin one; else ~0 */
    uint64_t offset;
    const void *body;
    uint64_t length;
};

static int cmp_type_instance(const void *a, const void *b)
{
    const struct rec_ref *x = a, *y = b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    if (x->instance != y->instance)
        return x->instance < y->instance ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bool per_vcpu_type(uint32_t type)
{
    return type == XKVM_CTX_VCPU_STATE || type == XKVM_CTX_VCPU_INFO ||
           type == XKVM_CTX_UPCALL || type == XKVM_CTX_TIMER || type == XKVM_CTX_RUNSTATE ||
           type == XKVM_CTX_VCPU_PLATFORM || type == XKVM_CTX_EVTCHN_FIFO_VCPU;
}

/* Xen's virq_is_global(): VIRQs marked "V." in xen.h are per vCPU. */
static bool virq_per_vcpu(uint32_t virq)
{
    return virq == 0 /* TIMER */ || virq == 1 /* DEBUG */ || virq == 7 /* XENOPROF */ ||
           virq == 13 /* XENPMU */;
}

struct image {
    struct rec_ref *recs;           /* image order */
    size_t n;
    const struct rec_ref *domain, *abi, *shared_info, *gnttab, *fifo_array, *fifo_held,
                         *fifo_vcpu;    /* the first */
    const struct rec_ref **port;    /* [XKVM_CTX_EVTCHN_2L_PORTS] */
    const struct xkvm_ctx_registry *reg;
    struct xkvm_ctx_error *err;
};

static int image_fail(struct image *im, const struct rec_ref *r, enum xkvm_ctx_errcode code,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int image_fail(struct image *im, const struct rec_ref *r, enum xkvm_ctx_errcode code,
                      const char *fmt, ...)
{
    const struct xkvm_ctx_type_desc *d = xkvm_ctx_lookup(im->reg, r->type);
    va_list ap;
    va_start(ap, fmt);
    ctx_set_verror(im->err, code, r->offset, true, r->type, d ? d->name : NULL, fmt, ap);
    va_end(ap);
    return -1;
}

static bool image_is_fifo(const struct image *im)
{
    return im->abi &&
           ((const struct xkvm_ctx_evtchn_abi *)im->abi->body)->abi == XKVM_CTX_EVTCHN_ABI_FIFO;
}

/* FIFO: its records only with EVTCHN_ABI 1, which needs a control block; held ports. */
static int check_fifo(struct image *im)
{
    const struct rec_ref *any = im->fifo_array ? im->fifo_array :
                                im->fifo_vcpu ? im->fifo_vcpu : im->fifo_held;
    if (!image_is_fifo(im)) {
        if (any)
            return image_fail(im, any, XKVM_CTX_ERR_INCONSISTENT,
                              "FIFO event channel state without EVTCHN_ABI fifo");
        return 0;
    }
    if (!im->fifo_vcpu)
        return image_fail(im, im->abi, XKVM_CTX_ERR_MISSING_RECORD,
                          "the FIFO ABI without any vCPU's EVTCHN_FIFO_VCPU (control block)");
    if (!im->fifo_held)
        return 0;
    const struct xkvm_ctx_evtchn_fifo_held *h = im->fifo_held->body;
    uint64_t words = im->fifo_array ?
        (uint64_t)((const struct xkvm_ctx_evtchn_fifo_array *)im->fifo_array->body)->nr_pages *
        1024 : 0;
    for (uint32_t i = 0; i < h->nr_ports; i++) {
        if (!im->port[h->port[i]])
            return image_fail(im, im->fifo_held, XKVM_CTX_ERR_INCONSISTENT,
                              "port %" PRIu32 " is held pending but not bound", h->port[i]);
        if (h->port[i] < words)
            return image_fail(im, im->fifo_held, XKVM_CTX_ERR_INCONSISTENT,
                              "port %" PRIu32 " is held pending but has an event word "
                              "(the array has %" PRIu64 ")", h->port[i], words);
    }
    return 0;
}

static int check_port(struct image *im, const struct rec_ref *r, uint32_t nr_vcpus,
                      uint16_t domid, uint32_t (*virq_seen)[XKVM_CTX_MAX_VCPUS / 32])
{
    const struct xkvm_ctx_evtchn_port *p = r->body;
    const struct xkvm_ctx_shared_info *si = im->shared_info ? im->shared_info->body : NULL;

    if (p->notify_vcpu >= nr_vcpus)
        return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                          "port %" PRIu32 " notifies vCPU %" PRIu16 ", the domain has %"
                          PRIu32, r->instance, p->notify_vcpu, nr_vcpus);
    /* 2-level: pending and mask bits are in shared_info, and there is no priority. */
    if (!si)
        return image_fail(im, r, XKVM_CTX_ERR_MISSING_RECORD,
                          "port %" PRIu32 " without a SHARED_INFO record (its pending and "
                          "mask bits live there)", r->instance);
    if (si->buffer_size != XKVM_CTX_PAGE_SIZE)
        return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                          "port %" PRIu32 " but SHARED_INFO holds %" PRIu32 " bytes, not the "
                          "whole page with its pending and mask bits", r->instance,
                          si->buffer_size);
    if (!image_is_fifo(im) && p->priority != XKVM_CTX_EVTCHN_PRIORITY_DEFAULT)
        return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                          "port %" PRIu32 " has priority %" PRIu8 " under the 2-level ABI "
                          "(must be %u)", r->instance, p->priority,
                          XKVM_CTX_EVTCHN_PRIORITY_DEFAULT);

    if (p->state == XKVM_CTX_EVTCHN_STATE_INTERDOMAIN && p->remote_domid == domid) {
        const struct rec_ref *q = im->port[p->remote_port];
        const struct xkvm_ctx_evtchn_port *pp = q ? q->body : NULL;
        if (p->remote_port == r->instance)
            return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                              "port %" PRIu32 " is bound to itself", r->instance);
        if (!pp || pp->state != XKVM_CTX_EVTCHN_STATE_INTERDOMAIN ||
            pp->remote_domid != domid || pp->remote_port != r->instance)
            return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                              "port %" PRIu32 " is bound to port %" PRIu32 " of its own "
                              "domain %" PRIu16 ", which is not bound back to it",
                              r->instance, p->remote_port, domid);
    }

    if (p->state == XKVM_CTX_EVTCHN_STATE_VIRQ) {
        /* Per-vCPU VIRQs once per vCPU; global ones once (Xen binds them on vCPU 0). */
        uint32_t v = virq_per_vcpu(p->virq) ? p->notify_vcpu : 0;
        uint32_t *word = &virq_seen[p->virq][v / 32];
        if (*word & (1u << (v % 32)))
            return image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                              "port %" PRIu32 ": VIRQ %" PRIu32 " is already bound%s",
                              r->instance, p->virq,
                              virq_per_vcpu(p->virq) ? " on this vCPU" : " (a global VIRQ)");
        *word |= 1u << (v % 32);
    }
    return 0;
}

static int check_rules(struct image *im)
{
    const struct rec_ref *first_pv = NULL;

    for (size_t i = 0; i < im->n; i++) {
        const struct rec_ref *r = &im->recs[i];
        switch (r->kind) {
        case XKVM_CTX_DOMAIN:       im->domain = r; break;
        case XKVM_CTX_EVTCHN_ABI:   im->abi = r; break;
        case XKVM_CTX_SHARED_INFO:  im->shared_info = r; break;
        case XKVM_CTX_GNTTAB:       im->gnttab = r; break;
        case XKVM_CTX_EVTCHN_PORT:  im->port[r->instance] = r; break;
        case XKVM_CTX_EVTCHN_FIFO_ARRAY: im->fifo_array = r; break;
        case XKVM_CTX_EVTCHN_FIFO_HELD:  im->fifo_held = r; break;
        case XKVM_CTX_EVTCHN_FIFO_VCPU:
            if (!im->fifo_vcpu)
                im->fifo_vcpu = r;
            break;
        default: break;
        }
        if (!first_pv && ((r->kind > XKVM_CTX_DOMAIN && r->kind <= XKVM_CTX_PV_LAST) ||
                          (r->kind >= XKVM_CTX_EVTCHN_FIFO_ARRAY &&
                           r->kind <= XKVM_CTX_FIFO_LAST)))
            first_pv = r;
    }
    if (!first_pv)
        return 0;
    if (!im->domain)
        return image_fail(im, first_pv, XKVM_CTX_ERR_MISSING_RECORD,
                          "PV state without a DOMAIN record");

    const struct xkvm_ctx_domain *dom = im->domain->body;
    const struct xkvm_ctx_gnttab *gt = im->gnttab ? im->gnttab->body : NULL;
    uint32_t (*virq_seen)[XKVM_CTX_MAX_VCPUS / 32] =
        calloc(XKVM_CTX_NR_VIRQS, sizeof(*virq_seen));
    uint8_t *frame_seen = gt ? calloc(gt->nr_frames, 1) : NULL;
    int rc = 0;

    if (!virq_seen || (gt && !frame_seen)) {
        rc = image_fail(im, im->domain, XKVM_CTX_ERR_NOMEM, "no memory for the image check");
        goto out;
    }
    for (size_t i = 0; i < im->n && !rc; i++) {
        const struct rec_ref *r = &im->recs[i];
        if (per_vcpu_type(r->kind) && r->instance >= dom->nr_vcpus)
            rc = image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                            "vCPU %" PRIu32 ", the domain has %" PRIu32, r->instance,
                            dom->nr_vcpus);
        else if (r->kind == XKVM_CTX_EVTCHN_PORT)
            rc = check_port(im, r, dom->nr_vcpus, dom->domid, virq_seen);
        else if (r->kind == XKVM_CTX_GNTTAB_FRAME && !gt)
            rc = image_fail(im, r, XKVM_CTX_ERR_MISSING_RECORD,
                            "grant frame %" PRIu32 " without a GNTTAB record", r->instance);
        else if (r->kind == XKVM_CTX_GNTTAB_FRAME && r->instance >= gt->nr_frames)
            rc = image_fail(im, r, XKVM_CTX_ERR_INCONSISTENT,
                            "grant frame %" PRIu32 ", the table has %" PRIu32 " frames",
                            r->instance, gt->nr_frames);
        else if (r->kind == XKVM_CTX_GNTTAB_FRAME)
            frame_seen[r->instance] = 1;
    }
    if (!rc)
        rc = check_fifo(im);
    /* Grant frames are Xen's, not guest memory: their contents must all be here. */
    for (uint32_t f = 0; gt && !rc && f < gt->nr_frames; f++)
        if (!frame_seen[f])
            rc = image_fail(im, im->gnttab, XKVM_CTX_ERR_MISSING_RECORD,
                            "grant frame %" PRIu32 " of %" PRIu32 " has no GNTTAB_FRAME "
                            "record", f, gt->nr_frames);
out:
    free(virq_seen);
    free(frame_seen);
    return rc;
}

int xkvm_ctx_check_image(const void *buf, size_t size,
                         const struct xkvm_ctx_registry *registry,
                         struct xkvm_ctx_summary *sum, struct xkvm_ctx_error *err)
{
    struct xkvm_ctx_error local;
    struct xkvm_ctx_reader r;
    struct xkvm_ctx_record rec;
    struct image im = { .err = err ? err : &local };
    size_t cap = 0;
    struct rec_ref *sorted = NULL;
    int rc;

    xkvm_ctx_reader_init(&r, buf, size, registry);
    im.reg = r.registry;
    while ((rc = xkvm_ctx_next(&r, &rec)) > 0) {
        if (im.n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct rec_ref *n = realloc(im.recs, ncap * sizeof(*n));
            if (!n) {
                ctx_set_error(im.err, XKVM_CTX_ERR_NOMEM, rec.offset, false, 0, NULL,
                              "no memory for the image check");
                rc = -2;
                break;
            }
            im.recs = n;
            cap = ncap;
        }
        const struct xkvm_ctx_type_desc *b = xkvm_ctx_lookup(&xkvm_ctx_builtin_registry,
                                                             rec.type);
        im.recs[im.n++] = (struct rec_ref) {
            .type = rec.type, .instance = rec.instance, .offset = rec.offset,
            /* A registry may give a builtin number another layout (tests do not, but
             * nothing stops them): only records laid out as ours get our rules. */
            .kind = b && rec.desc->fields == b->fields &&
                    rec.desc->fixed_size == b->fixed_size &&
                    rec.desc->max_instance == b->max_instance ? rec.type : UINT32_MAX,
            .body = rec.body, .length = rec.length,
        };
    }
    if (rc == -1)
        *im.err = r.err;
    if (rc < 0)
        goto out;

    /* No (type, instance) twice; ONCE types the reader has already seen to. */
    rc = -1;
    sorted = malloc((im.n ? im.n : 1) * sizeof(*sorted));
    im.port = calloc(XKVM_CTX_EVTCHN_2L_PORTS, sizeof(*im.port));
    if (!sorted || !im.port) {
        ctx_set_error(im.err, XKVM_CTX_ERR_NOMEM, 0, false, 0, NULL,
                      "no memory for the image check");
        goto out;
    }
    memcpy(sorted, im.recs, im.n * sizeof(*sorted));
    qsort(sorted, im.n, sizeof(*sorted), cmp_type_instance);
    for (size_t i = 1; i < im.n; i++)
        if (sorted[i].type == sorted[i - 1].type &&
            sorted[i].instance == sorted[i - 1].instance) {
            image_fail(&im, &sorted[i], XKVM_CTX_ERR_DUPLICATE,
                       "second record for instance %" PRIu32 " (the first is at offset %"
                       PRIu64 ")", sorted[i].instance, sorted[i - 1].offset);
            goto out;
        }
    if (check_rules(&im))
        goto out;
    rc = 0;
    if (sum)
        *sum = (struct xkvm_ctx_summary) {
            .nr_records = r.nr_records, .used = r.pos, .major = r.major, .minor = r.minor,
        };
out:
    free(sorted);
    free(im.port);
    free(im.recs);
    return rc < 0 ? -1 : 0;
}

int xkvm_ctx_write_altp2m(struct xkvm_ctx_writer *w, const struct xkvm_ctx_altp2m *rec)
{
    WRITE_COPY(w, XKVM_CTX_ALTP2M, 0, struct xkvm_ctx_altp2m, rec);
}

int xkvm_ctx_write_altp2m_view(struct xkvm_ctx_writer *w, uint32_t view,
                               const struct xkvm_ctx_altp2m_view *body)
{
    return xkvm_ctx_write(w, XKVM_CTX_ALTP2M_VIEW, view, body,
                          sizeof(*body) + (body->nr_access + body->nr_remaps) *
                          sizeof(body->entries[0]));
}
