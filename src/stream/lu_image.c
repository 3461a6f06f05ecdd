/* The live-update image: writer and validating reader (xkvm/live_update.h). No KVM. */
#include "xkvm/live_update.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xkvm/ctx.h"
#include "xkvm/stream.h"

#define MAX_GFN (1ull << 40)    /* 4 PiB of guest physical space: beyond any domain */

/* ---- writer ---- */

static void put(struct xkvm_lu_writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            w->failed = true;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    if (p)
        memcpy(w->buf + w->len, p, n);
    else
        memset(w->buf + w->len, 0, n);
    w->len += n;
}

void xkvm_lu_writer_init(struct xkvm_lu_writer *w, uint32_t flags)
{
    *w = (struct xkvm_lu_writer){ 0 };
    uint8_t hdr[XKVM_LU_HDR_SIZE] = { 0 };
    uint16_t major = XKVM_LU_MAJOR, minor = XKVM_LU_MINOR;
    memcpy(hdr, XKVM_LU_MAGIC, 8);
    memcpy(hdr + 8, &major, 2);
    memcpy(hdr + 10, &minor, 2);
    memcpy(hdr + 12, &flags, 4);
    put(w, hdr, sizeof(hdr));
}

void xkvm_lu_write(struct xkvm_lu_writer *w, uint32_t type, uint32_t instance,
                   const void *body, size_t len)
{
    uint64_t l = len;
    uint32_t h[2] = { type, instance };
    put(w, h, sizeof(h));
    put(w, &l, sizeof(l));
    put(w, body, len);
    put(w, NULL, (XKVM_LU_ALIGN - len % XKVM_LU_ALIGN) % XKVM_LU_ALIGN);
}

void xkvm_lu_append_records(struct xkvm_lu_writer *w, const struct xkvm_lu_writer *part)
{
    if (part->failed)
        w->failed = true;
    else
        put(w, part->buf, part->len);
}

int xkvm_lu_finish(struct xkvm_lu_writer *w)
{
    xkvm_lu_write(w, XKVM_LU_REC_END, 0, NULL, 0);
    if (w->failed)
        return -ENOMEM;
    uint64_t body = w->len - XKVM_LU_HDR_SIZE;
    memcpy(w->buf + 16, &body, sizeof(body));
    return 0;
}

void xkvm_lu_writer_release(struct xkvm_lu_writer *w)
{
    free(w->buf);
    *w = (struct xkvm_lu_writer){ 0 };
}

/* ---- reader ---- */

bool xkvm_lu_accepts(unsigned major, unsigned minor, char *why, size_t whylen)
{
    if (major != XKVM_LU_MAJOR) {
        snprintf(why, whylen, "image version %u.%u: this xkvmd reads major version %u only",
                 major, minor, XKVM_LU_MAJOR);
        return false;
    }
    if (minor > XKVM_LU_MINOR) {
        snprintf(why, whylen, "image version %u.%u is newer than this xkvmd's %u.%u",
                 major, minor, XKVM_LU_MAJOR, XKVM_LU_MINOR);
        return false;
    }
    snprintf(why, whylen, "accepts %u.%u (is %u.%u)", major, minor, XKVM_LU_MAJOR, XKVM_LU_MINOR);
    return true;
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int cmp_extent_mfn(const void *a, const void *b)
{
    const struct xkvm_lu_extent *x = *(const struct xkvm_lu_extent *const *)a;
    const struct xkvm_lu_extent *y = *(const struct xkvm_lu_extent *const *)b;
    return x->mfn < y->mfn ? -1 : x->mfn > y->mfn;
}

/* Extents: in range, no frame twice (across every domain), none in the region. */
static int check_extents(struct xkvm_lu_image *img, char *err, size_t errlen)
{
    size_t total = 0;
    for (unsigned i = 0; i < img->nr_domains; i++)
        total += img->domains[i].nr_extents;
    const struct xkvm_lu_extent **all = calloc(total ? total : 1, sizeof(*all));
    if (!all)
        return -ENOMEM;
    size_t k = 0;
    int rc = 0;
    const struct xkvm_lu_host *h = &img->host;
    for (unsigned i = 0; i < img->nr_domains && !rc; i++) {
        const struct xkvm_lu_domain *d = &img->domains[i];
        for (size_t e = 0; e < d->nr_extents && !rc; e++) {
            const struct xkvm_lu_extent *x = &d->extents[e];
            if (x->nr == 0 || x->mfn >= h->nr_frames || x->nr > h->nr_frames - x->mfn)
                rc = bad(err, errlen, "d%u: extent %zu: frames %#llx+%llu outside machine "
                         "memory", d->domid, e, (unsigned long long)x->mfn,
                         (unsigned long long)x->nr);
            else if (x->gfn >= MAX_GFN || x->nr > MAX_GFN - x->gfn)
                rc = bad(err, errlen, "d%u: extent %zu: gfn %#llx out of range", d->domid,
                         e, (unsigned long long)x->gfn);
            else if (x->type != XKVM_LU_FRAME_RAM && x->type != XKVM_LU_FRAME_SPECIAL)
                rc = bad(err, errlen, "d%u: extent %zu: frame type %u", d->domid, e, x->type);
            else if (x->pad)
                rc = bad(err, errlen, "d%u: extent %zu: non-zero padding", d->domid, e);
            else if (h->lu_region_nr && x->mfn < h->lu_region_mfn + h->lu_region_nr &&
                     h->lu_region_mfn < x->mfn + x->nr)
                rc = bad(err, errlen, "d%u: extent %zu overlaps the live-update region",
                         d->domid, e);
            all[k++] = x;
        }
    }
    if (!rc) {
        qsort(all, k, sizeof(*all), cmp_extent_mfn);
        for (size_t i = 1; i < k && !rc; i++)
            if (all[i - 1]->mfn + all[i - 1]->nr > all[i]->mfn)
                rc = bad(err, errlen, "machine frame %#llx is in two extents",
                         (unsigned long long)all[i]->mfn);
    }
    free(all);
    return rc;
}

/* The per-domain records, in order. */
static const uint32_t domain_order[] = {
    XKVM_LU_REC_DOMAIN, XKVM_LU_REC_P2M, XKVM_LU_REC_HVM_PARAMS, XKVM_LU_REC_HVM_CONTEXT,
    XKVM_LU_REC_DOMAIN_CONTEXT,
};
#define DOMAIN_RECS (sizeof(domain_order) / sizeof(domain_order[0]))
/* In a prebuild image (XKVM_LU_HOST_PREBUILD) each domain has the first two only. */
#define PREBUILD_DOMAIN_RECS 2u

/* ---- the checker: one function per record type, in a table ---- */

/* Where a check is while it walks the image. */
struct walk {
    struct xkvm_lu_image *img;
    struct xkvm_lu_domain *cur;     /* the domain whose records come now */
    bool host, ended;
    unsigned step;                  /* position in domain_order of the next record */
    char *err;
    size_t errlen;
};

/* One record: its header and body. */
struct rec {
    uint32_t type, inst;
    const uint8_t *b;
    uint64_t len;
};

static int check_host(struct walk *w, const struct rec *r)
{
    struct xkvm_lu_image *img = w->img;
    if (w->host || r->len != sizeof(struct xkvm_lu_host))
        return bad(w->err, w->errlen, "HOST record: duplicate or %llu bytes",
                   (unsigned long long)r->len);
    memcpy(&img->host, r->b, sizeof(img->host));
    w->host = true;
    if (img->host.nr_frames == 0 || img->host.nr_frames > (1ull << 40) ||
        img->host.lu_region_mfn > img->host.nr_frames ||
        img->host.lu_region_nr > img->host.nr_frames - img->host.lu_region_mfn)
        return bad(w->err, w->errlen, "HOST: machine memory or live-update region out of range");
    if (img->host.nr_domains > XKVM_LU_MAX_DOMAINS)
        return bad(w->err, w->errlen, "HOST: %u domains", img->host.nr_domains);
    if (img->host.flags & ~(XKVM_LU_HOST_VERIFY_MEMORY | XKVM_LU_HOST_PREBUILD) ||
        (img->host.flags & XKVM_LU_HOST_VERIFY_MEMORY && img->host.flags & XKVM_LU_HOST_PREBUILD))
        return bad(w->err, w->errlen, "HOST: unknown flags %#x", img->host.flags);
    if (!(img->domains = calloc(img->host.nr_domains + 1, sizeof(*img->domains))))
        return -ENOMEM;
    return 0;
}

static int check_fd(struct walk *w, const struct rec *r)
{
    struct xkvm_lu_image *img = w->img;
    int32_t fd;
    if (r->len != sizeof(int32_t) || r->inst < 1 || r->inst > XKVM_LU_FD_ROLE_MAX)
        return bad(w->err, w->errlen, "FD record: role %u, %llu bytes", r->inst,
                   (unsigned long long)r->len);
    memcpy(&fd, r->b, 4);
    bool dup = img->fds[r->inst] >= 0;
    for (unsigned i = 1; i <= XKVM_LU_FD_ROLE_MAX; i++)
        dup |= img->fds[i] == fd;
    if (fd < 0 || dup)
        return bad(w->err, w->errlen, "FD record: role %u or fd %d given twice, or fd < 0",
                   r->inst, fd);
    img->fds[r->inst] = fd;
    return 0;
}

static int check_argv(struct walk *w, const struct rec *r)
{
    int rc = 0;
    if (r->len == 0 || r->len > 65536 || r->b[r->len - 1] != '\0')
        rc = bad(w->err, w->errlen, "ARGV record: %llu bytes, not NUL-terminated",
                 (unsigned long long)r->len);
    w->img->argv = (const char *)r->b;
    w->img->argv_len = (size_t)r->len;
    return rc;
}

static int check_times(struct walk *w, const struct rec *r)
{
    uint64_t t[2];
    if (!w->host || w->img->nr_domains || r->inst || r->len != sizeof(t) || w->img->t_prebuilt)
        return bad(w->err, w->errlen, "TIMES record: misplaced, duplicate or %llu bytes",
                   (unsigned long long)r->len);
    memcpy(t, r->b, sizeof(t));
    if (!t[1] || t[0] > t[1])
        return bad(w->err, w->errlen, "TIMES record: the prebuild ends before it starts");
    w->img->t_prebuild = t[0];
    w->img->t_prebuilt = t[1];
    return 0;
}

static int check_domain(struct walk *w, const struct rec *r)
{
    struct xkvm_lu_image *img = w->img;
    if (img->nr_domains == img->host.nr_domains)
        return bad(w->err, w->errlen, "more domains than HOST says (%u)", img->host.nr_domains);
    if (r->inst == 0 || r->inst >= 0x7FF0)
        return bad(w->err, w->errlen, "DOMAIN record for domid %u", r->inst);
    for (unsigned i = 0; i < img->nr_domains; i++)
        if (img->domains[i].domid == r->inst)
            return bad(w->err, w->errlen, "domain %u appears twice", r->inst);
    w->cur = &img->domains[img->nr_domains++];
    w->cur->domid = (uint16_t)r->inst;
    w->cur->config_json = (const char *)r->b;
    w->cur->config_len = (size_t)r->len;
    if (r->len == 0)
        return bad(w->err, w->errlen, "d%u: empty DOMAIN record", r->inst);
    return 0;
}

static int check_p2m(struct walk *w, const struct rec *r)
{
    if (r->len % sizeof(struct xkvm_lu_extent))
        return bad(w->err, w->errlen, "d%u: P2M length %llu", w->cur->domid,
                   (unsigned long long)r->len);
    w->cur->extents = (const struct xkvm_lu_extent *)r->b;      /* 8-aligned in buf */
    w->cur->nr_extents = (size_t)r->len / sizeof(struct xkvm_lu_extent);
    return 0;
}

static int check_hvm_params(struct walk *w, const struct rec *r)
{
    struct xkvm_lu_domain *cur = w->cur;
    if (r->len % sizeof(struct xkvm_lu_hvm_param))
        return bad(w->err, w->errlen, "d%u: HVM_PARAMS length %llu", cur->domid,
                   (unsigned long long)r->len);
    cur->params = (const struct xkvm_lu_hvm_param *)r->b;
    cur->nr_params = (size_t)r->len / sizeof(struct xkvm_lu_hvm_param);
    for (size_t i = 0; i < cur->nr_params; i++) {
        if (cur->params[i].index >= XKVM_CTX_HVM_NR_PARAMS || cur->params[i].pad)
            return bad(w->err, w->errlen, "d%u: HVM param %u", cur->domid, cur->params[i].index);
        for (size_t j = 0; j < i; j++)
            if (cur->params[j].index == cur->params[i].index)
                return bad(w->err, w->errlen, "d%u: HVM param %u twice", cur->domid,
                           cur->params[i].index);
    }
    return 0;
}

static int check_hvm_context(struct walk *w, const struct rec *r)
{
    struct xkvm_stream_error serr;
    w->cur->hvm_ctx = r->b;
    w->cur->hvm_len = (size_t)r->len;
    if (xkvm_hvmctx_verify(r->b, (size_t)r->len, XKVM_STREAM_MAX_VCPUS, &serr))
        return bad(w->err, w->errlen, "d%u: HVM context: %s", w->cur->domid, serr.msg);
    return 0;
}

static int check_domain_context(struct walk *w, const struct rec *r)
{
    struct xkvm_ctx_summary sum;
    struct xkvm_ctx_error cerr;
    w->cur->dom_ctx = r->b;
    w->cur->dom_len = (size_t)r->len;
    if (xkvm_ctx_check_image(r->b, (size_t)r->len, NULL, &sum, &cerr))
        return bad(w->err, w->errlen, "d%u: domain context: %s", w->cur->domid, cerr.msg);
    return 0;
}

static int check_mem_checksum(struct walk *w, const struct rec *r)
{
    struct xkvm_lu_domain *cur = w->cur;
    if (!cur || w->step || r->inst != cur->domid || r->len < 8 || r->len % 8 ||
        cur->has_checksum)
        return bad(w->err, w->errlen, "MEM_CHECKSUM record out of place or of %llu bytes",
                   (unsigned long long)r->len);
    memcpy(&cur->checksum, r->b, 8);
    cur->checksum_skip = (const uint64_t *)(r->b + 8);      /* 8-aligned in buf */
    cur->nr_checksum_skip = (size_t)(r->len - 8) / 8;
    cur->has_checksum = true;
    for (size_t i = 1; i < cur->nr_checksum_skip; i++)
        if (cur->checksum_skip[i] <= cur->checksum_skip[i - 1])
            return bad(w->err, w->errlen, "d%u: MEM_CHECKSUM: gfns left out not ascending",
                       cur->domid);
    return 0;
}

#ifdef XKVM_LU_TEST_NEXT
static int check_test_next(struct walk *w, const struct rec *r)
{
    uint64_t v[2];
    if (r->len != sizeof(v))
        return bad(w->err, w->errlen, "TEST_NEXT record of %llu bytes", (unsigned long long)r->len);
    memcpy(v, r->b, sizeof(v));
    if (v[0] != 0x4e455854u || v[1] != w->img->host.nr_domains)
        return bad(w->err, w->errlen, "TEST_NEXT record does not match");
    w->img->has_test_next = true;
    return 0;
}
#endif

static int check_end(struct walk *w, const struct rec *r)
{
    w->ended = true;
    return r->len ? bad(w->err, w->errlen, "END record with a body") : 0;
}

/*
 * Every record type a reader of this version knows, and its check. To add a type:
 * its number in xkvm/live_update.h, a check_* function above that validates the body
 * and files it into the image, a row here, and (if each domain has one) its place in
 * domain_order. An unknown type is refused unless it has XKVM_LU_OPTIONAL set.
 */
static const struct {
    uint32_t type;
    int (*check)(struct walk *w, const struct rec *r);
} record_types[] = {
    { XKVM_LU_REC_HOST,           check_host },
    { XKVM_LU_REC_FD,             check_fd },
    { XKVM_LU_REC_ARGV,           check_argv },
    { XKVM_LU_REC_TIMES,          check_times },
    { XKVM_LU_REC_DOMAIN,         check_domain },
    { XKVM_LU_REC_P2M,            check_p2m },
    { XKVM_LU_REC_HVM_PARAMS,     check_hvm_params },
    { XKVM_LU_REC_HVM_CONTEXT,    check_hvm_context },
    { XKVM_LU_REC_DOMAIN_CONTEXT, check_domain_context },
    { XKVM_LU_REC_MEM_CHECKSUM,   check_mem_checksum },
#ifdef XKVM_LU_TEST_NEXT
    { XKVM_LU_REC_TEST_NEXT,      check_test_next },
#endif
    { XKVM_LU_REC_END,            check_end },
};

static int check_record(struct walk *w, const struct rec *r)
{
    for (size_t i = 0; i < sizeof(record_types) / sizeof(record_types[0]); i++)
        if (record_types[i].type == r->type)
            return record_types[i].check(w, r);
    if (!(r->type & XKVM_LU_OPTIONAL))
        return bad(w->err, w->errlen, "unknown record type %#x", r->type);
    return 0;
}

/* The image header. 0, or -EINVAL with err. */
static int check_header(const uint8_t *p, size_t len, struct xkvm_lu_image *img, char *err,
                        size_t errlen)
{
    if (len < XKVM_LU_HDR_SIZE || memcmp(p, XKVM_LU_MAGIC, 8))
        return bad(err, errlen, "not a live-update image");
    if (len > XKVM_LU_MAX_IMAGE)
        return bad(err, errlen, "image of %zu bytes is too large", len);
    uint32_t flags;
    uint64_t body, reserved;
    memcpy(&img->major, p + 8, 2);
    memcpy(&img->minor, p + 10, 2);
    memcpy(&flags, p + 12, 4);
    memcpy(&body, p + 16, 8);
    memcpy(&reserved, p + 24, 8);
    char why[160];
    if (!xkvm_lu_accepts(img->major, img->minor, why, sizeof(why)))
        return bad(err, errlen, "%s", why);
    if (flags || reserved)
        return bad(err, errlen, "header: unknown flags %#x or reserved bits set", flags);
    if (body != len - XKVM_LU_HDR_SIZE)
        return bad(err, errlen, "header says %llu bytes of records, image has %zu",
                   (unsigned long long)body, len - XKVM_LU_HDR_SIZE);
    return 0;
}

/* The record at *off: framed inside the image, zero padding; *off moves past it. */
static int next_record(struct walk *w, const uint8_t *p, size_t len, size_t *off,
                       struct rec *r)
{
    if (len - *off < XKVM_LU_RHDR_SIZE)
        return bad(w->err, w->errlen, "image ends at byte %zu without its END record", *off);
    memcpy(&r->type, p + *off, 4);
    memcpy(&r->inst, p + *off + 4, 4);
    memcpy(&r->len, p + *off + 8, 8);
    size_t at = *off + XKVM_LU_RHDR_SIZE;
    if (r->len > len - at)
        return bad(w->err, w->errlen, "record %#x at byte %zu: length %llu runs past the end",
                   r->type, *off, (unsigned long long)r->len);
    size_t pad = (XKVM_LU_ALIGN - r->len % XKVM_LU_ALIGN) % XKVM_LU_ALIGN;
    if (pad > len - at - r->len)
        return bad(w->err, w->errlen, "record %#x at byte %zu: padding runs past the end",
                   r->type, *off);
    for (size_t i = 0; i < pad; i++)
        if (p[at + r->len + i])
            return bad(w->err, w->errlen, "record %#x at byte %zu: non-zero padding", r->type,
                       *off);
    r->b = p + at;
    *off = at + (size_t)r->len + pad;
    return 0;
}

static bool is_per_domain(uint32_t type)
{
    for (unsigned i = 0; i < DOMAIN_RECS; i++)
        if (type == domain_order[i])
            return true;
    return false;
}

/* Where a record may stand: HOST first, a domain's records together and in order. */
static int check_place(struct walk *w, const struct rec *r, bool per_domain)
{
    if (!w->host && r->type != XKVM_LU_REC_HOST)
        return bad(w->err, w->errlen, "first record is %#x, not HOST", r->type);
    if (w->step && r->type != domain_order[w->step])
        return bad(w->err, w->errlen, "d%u: record %#x where %#x was due", w->cur->domid,
                   r->type, domain_order[w->step]);
    if (per_domain && r->type != domain_order[w->step])
        return bad(w->err, w->errlen, "record %#x outside a domain's records", r->type);
    if ((r->type == XKVM_LU_REC_FD || r->type == XKVM_LU_REC_ARGV) && w->img->nr_domains)
        return bad(w->err, w->errlen, "record %#x after the first domain", r->type);
    return 0;
}

/* What holds of the image as a whole, once END was read at off. */
static int check_whole(struct walk *w, size_t off, size_t len)
{
    struct xkvm_lu_image *img = w->img;
    if (off != len)
        return bad(w->err, w->errlen, "%zu bytes after the END record", len - off);
    if (w->step)
        return bad(w->err, w->errlen, "d%u: records missing after %#x", w->cur->domid,
                   domain_order[w->step - 1]);
    if (img->nr_domains != img->host.nr_domains)
        return bad(w->err, w->errlen, "HOST says %u domains, image has %u",
                   img->host.nr_domains, img->nr_domains);
#ifdef XKVM_LU_TEST_NEXT
    /* The minor bump's own record: its images must carry it, older ones cannot. */
    if (img->minor == XKVM_LU_MINOR && !img->has_test_next)
        return bad(w->err, w->errlen, "image of version %u.%u lacks its TEST_NEXT record",
                   img->major, img->minor);
#endif
    if (img->fds[XKVM_LU_FD_MACHINE_MEMORY] < 0)
        return bad(w->err, w->errlen, "no machine-memory fd");
    if (img->host.flags & XKVM_LU_HOST_VERIFY_MEMORY)
        for (unsigned i = 0; i < img->nr_domains; i++)
            if (!img->domains[i].has_checksum)
                return bad(w->err, w->errlen, "d%u: no MEM_CHECKSUM", img->domains[i].domid);
    return check_extents(img, w->err, w->errlen);
}

int xkvm_lu_check(const void *buf, size_t len, struct xkvm_lu_image *img,
                  char *err, size_t errlen)
{
    memset(img, 0, sizeof(*img));
    for (unsigned i = 0; i <= XKVM_LU_FD_ROLE_MAX; i++)
        img->fds[i] = -1;
    const uint8_t *p = buf;
    int rc = check_header(p, len, img, err, errlen);
    if (rc)
        return rc;
    struct walk w = { .img = img, .err = err, .errlen = errlen };
    size_t off = XKVM_LU_HDR_SIZE;
    while (!rc && !w.ended) {
        struct rec r;
        if ((rc = next_record(&w, p, len, &off, &r)))
            break;
        bool per_domain = is_per_domain(r.type);
        if ((rc = check_place(&w, &r, per_domain)) || (rc = check_record(&w, &r)))
            break;
        if (per_domain) {
            w.step = (w.step + 1) % (img->host.flags & XKVM_LU_HOST_PREBUILD ?
                                     PREBUILD_DOMAIN_RECS : DOMAIN_RECS);
            if (w.step && r.inst != w.cur->domid)
                rc = bad(err, errlen, "record %#x for domain %u inside domain %u's", r.type,
                         r.inst, w.cur->domid);
        }
    }
    if (!rc)
        rc = check_whole(&w, off, len);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc)
        xkvm_lu_image_release(img);
    return rc;
}

void xkvm_lu_image_release(struct xkvm_lu_image *img)
{
    free(img->domains);
    img->domains = NULL;
    img->nr_domains = 0;
}
