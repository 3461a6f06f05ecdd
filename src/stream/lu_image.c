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

int xkvm_lu_check(const void *buf, size_t len, struct xkvm_lu_image *img,
                  char *err, size_t errlen)
{
    memset(img, 0, sizeof(*img));
    for (unsigned i = 0; i <= XKVM_LU_FD_ROLE_MAX; i++)
        img->fds[i] = -1;
    const uint8_t *p = buf;
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

    size_t off = XKVM_LU_HDR_SIZE;
    bool host = false, ended = false;
    unsigned step = 0;          /* position in domain_order of the next record */
    struct xkvm_lu_domain *cur = NULL;
    int rc = 0;
    while (!rc && !ended) {
        if (len - off < XKVM_LU_RHDR_SIZE) {
            rc = bad(err, errlen, "image ends at byte %zu without its END record", off);
            break;
        }
        uint32_t type, inst;
        uint64_t rlen;
        memcpy(&type, p + off, 4);
        memcpy(&inst, p + off + 4, 4);
        memcpy(&rlen, p + off + 8, 8);
        size_t at = off + XKVM_LU_RHDR_SIZE;
        if (rlen > len - at) {
            rc = bad(err, errlen, "record %#x at byte %zu: length %llu runs past the end",
                     type, off, (unsigned long long)rlen);
            break;
        }
        size_t pad = (XKVM_LU_ALIGN - rlen % XKVM_LU_ALIGN) % XKVM_LU_ALIGN;
        if (pad > len - at - rlen) {
            rc = bad(err, errlen, "record %#x at byte %zu: padding runs past the end", type, off);
            break;
        }
        for (size_t i = 0; i < pad; i++)
            if (p[at + rlen + i]) {
                rc = bad(err, errlen, "record %#x at byte %zu: non-zero padding", type, off);
                break;
            }
        if (rc)
            break;
        const uint8_t *b = p + at;
        off = at + (size_t)rlen + pad;
        if (!host && type != XKVM_LU_REC_HOST) {
            rc = bad(err, errlen, "first record is %#x, not HOST", type);
            break;
        }
        /* A domain's records come together and in order. */
        bool per_domain = false;
        for (unsigned i = 0; i < DOMAIN_RECS; i++)
            per_domain |= type == domain_order[i];
        if (step && type != domain_order[step]) {
            rc = bad(err, errlen, "d%u: record %#x where %#x was due", cur->domid, type,
                     domain_order[step]);
            break;
        }
        if (per_domain && type != domain_order[step]) {
            rc = bad(err, errlen, "record %#x outside a domain's records", type);
            break;
        }
        if ((type == XKVM_LU_REC_FD || type == XKVM_LU_REC_ARGV) && img->nr_domains) {
            rc = bad(err, errlen, "record %#x after the first domain", type);
            break;
        }
        switch (type) {
        case XKVM_LU_REC_HOST:
            if (host || rlen != sizeof(struct xkvm_lu_host)) {
                rc = bad(err, errlen, "HOST record: duplicate or %llu bytes",
                         (unsigned long long)rlen);
                break;
            }
            memcpy(&img->host, b, sizeof(img->host));
            host = true;
            if (img->host.nr_frames == 0 || img->host.nr_frames > (1ull << 40) ||
                img->host.lu_region_mfn > img->host.nr_frames ||
                img->host.lu_region_nr > img->host.nr_frames - img->host.lu_region_mfn)
                rc = bad(err, errlen, "HOST: machine memory or live-update region out of range");
            else if (img->host.nr_domains > XKVM_LU_MAX_DOMAINS)
                rc = bad(err, errlen, "HOST: %u domains", img->host.nr_domains);
            else if (img->host.flags & ~XKVM_LU_HOST_VERIFY_MEMORY)
                rc = bad(err, errlen, "HOST: unknown flags %#x", img->host.flags);
            else if (!(img->domains = calloc(img->host.nr_domains + 1, sizeof(*img->domains))))
                rc = -ENOMEM;
            break;
        case XKVM_LU_REC_FD: {
            int32_t fd;
            if (rlen != sizeof(int32_t) || inst < 1 || inst > XKVM_LU_FD_ROLE_MAX) {
                rc = bad(err, errlen, "FD record: role %u, %llu bytes", inst,
                         (unsigned long long)rlen);
                break;
            }
            memcpy(&fd, b, 4);
            bool dup = img->fds[inst] >= 0;
            for (unsigned r = 1; r <= XKVM_LU_FD_ROLE_MAX; r++)
                dup |= img->fds[r] == fd;
            if (fd < 0 || dup)
                rc = bad(err, errlen, "FD record: role %u or fd %d given twice, or fd < 0",
                         inst, fd);
            else
                img->fds[inst] = fd;
            break;
        }
        case XKVM_LU_REC_ARGV:
            if (rlen == 0 || rlen > 65536 || b[rlen - 1] != '\0')
                rc = bad(err, errlen, "ARGV record: %llu bytes, not NUL-terminated",
                         (unsigned long long)rlen);
            img->argv = (const char *)b;
            img->argv_len = (size_t)rlen;
            break;
        case XKVM_LU_REC_DOMAIN:
            if (img->nr_domains == img->host.nr_domains) {
                rc = bad(err, errlen, "more domains than HOST says (%u)", img->host.nr_domains);
                break;
            }
            if (inst == 0 || inst >= 0x7FF0) {
                rc = bad(err, errlen, "DOMAIN record for domid %u", inst);
                break;
            }
            for (unsigned i = 0; i < img->nr_domains; i++)
                if (img->domains[i].domid == inst)
                    rc = bad(err, errlen, "domain %u appears twice", inst);
            if (rc)
                break;
            cur = &img->domains[img->nr_domains++];
            cur->domid = (uint16_t)inst;
            cur->config_json = (const char *)b;
            cur->config_len = (size_t)rlen;
            if (rlen == 0)
                rc = bad(err, errlen, "d%u: empty DOMAIN record", inst);
            break;
        case XKVM_LU_REC_P2M:
            if (rlen % sizeof(struct xkvm_lu_extent)) {
                rc = bad(err, errlen, "d%u: P2M length %llu", cur->domid, (unsigned long long)rlen);
                break;
            }
            cur->extents = (const struct xkvm_lu_extent *)b;    /* 8-aligned in buf */
            cur->nr_extents = (size_t)rlen / sizeof(struct xkvm_lu_extent);
            break;
        case XKVM_LU_REC_HVM_PARAMS:
            if (rlen % sizeof(struct xkvm_lu_hvm_param)) {
                rc = bad(err, errlen, "d%u: HVM_PARAMS length %llu", cur->domid,
                         (unsigned long long)rlen);
                break;
            }
            cur->params = (const struct xkvm_lu_hvm_param *)b;
            cur->nr_params = (size_t)rlen / sizeof(struct xkvm_lu_hvm_param);
            for (size_t i = 0; i < cur->nr_params && !rc; i++) {
                if (cur->params[i].index >= XKVM_CTX_HVM_NR_PARAMS || cur->params[i].pad)
                    rc = bad(err, errlen, "d%u: HVM param %u", cur->domid, cur->params[i].index);
                for (size_t j = 0; j < i && !rc; j++)
                    if (cur->params[j].index == cur->params[i].index)
                        rc = bad(err, errlen, "d%u: HVM param %u twice", cur->domid,
                                 cur->params[i].index);
            }
            break;
        case XKVM_LU_REC_HVM_CONTEXT: {
            struct xkvm_stream_error serr;
            cur->hvm_ctx = b;
            cur->hvm_len = (size_t)rlen;
            if (xkvm_hvmctx_verify(b, (size_t)rlen, XKVM_STREAM_MAX_VCPUS, &serr))
                rc = bad(err, errlen, "d%u: HVM context: %s", cur->domid, serr.msg);
            break;
        }
        case XKVM_LU_REC_DOMAIN_CONTEXT: {
            struct xkvm_ctx_summary sum;
            struct xkvm_ctx_error cerr;
            cur->dom_ctx = b;
            cur->dom_len = (size_t)rlen;
            if (xkvm_ctx_check_image(b, (size_t)rlen, NULL, &sum, &cerr))
                rc = bad(err, errlen, "d%u: domain context: %s", cur->domid, cerr.msg);
            break;
        }
        case XKVM_LU_REC_MEM_CHECKSUM:
            if (!cur || step || inst != cur->domid || rlen < 8 || rlen % 8 || cur->has_checksum) {
                rc = bad(err, errlen, "MEM_CHECKSUM record out of place or of %llu bytes",
                         (unsigned long long)rlen);
                break;
            }
            memcpy(&cur->checksum, b, 8);
            cur->checksum_skip = (const uint64_t *)(b + 8);     /* 8-aligned in buf */
            cur->nr_checksum_skip = (size_t)(rlen - 8) / 8;
            cur->has_checksum = true;
            for (size_t i = 1; i < cur->nr_checksum_skip && !rc; i++)
                if (cur->checksum_skip[i] <= cur->checksum_skip[i - 1])
                    rc = bad(err, errlen, "d%u: MEM_CHECKSUM: gfns left out not ascending",
                             cur->domid);
            break;
#ifdef XKVM_LU_TEST_NEXT
        case XKVM_LU_REC_TEST_NEXT: {
            uint64_t v[2];
            if (rlen != sizeof(v)) {
                rc = bad(err, errlen, "TEST_NEXT record of %llu bytes", (unsigned long long)rlen);
                break;
            }
            memcpy(v, b, sizeof(v));
            if (v[0] != 0x4e455854u || v[1] != img->host.nr_domains)
                rc = bad(err, errlen, "TEST_NEXT record does not match");
            img->has_test_next = true;
            break;
        }
#endif
        case XKVM_LU_REC_END:
            if (rlen)
                rc = bad(err, errlen, "END record with a body");
            ended = true;
            break;
        default:
            if (!(type & XKVM_LU_OPTIONAL))
                rc = bad(err, errlen, "unknown record type %#x", type);
            break;
        }
        if (!rc && per_domain) {
            step = (step + 1) % DOMAIN_RECS;
            if (step && inst != cur->domid)
                rc = bad(err, errlen, "record %#x for domain %u inside domain %u's", type,
                         inst, cur->domid);
        }
    }
    if (!rc && off != len)
        rc = bad(err, errlen, "%zu bytes after the END record", len - off);
    if (!rc && step)
        rc = bad(err, errlen, "d%u: records missing after %#x", cur->domid, domain_order[step - 1]);
    if (!rc && img->nr_domains != img->host.nr_domains)
        rc = bad(err, errlen, "HOST says %u domains, image has %u", img->host.nr_domains,
                 img->nr_domains);
#ifdef XKVM_LU_TEST_NEXT
    /* The minor bump's own record: its images must carry it, older ones cannot. */
    if (!rc && img->minor == XKVM_LU_MINOR && !img->has_test_next)
        rc = bad(err, errlen, "image of version %u.%u lacks its TEST_NEXT record",
                 img->major, img->minor);
#endif
    if (!rc && img->fds[XKVM_LU_FD_MACHINE_MEMORY] < 0)
        rc = bad(err, errlen, "no machine-memory fd");
    if (!rc && (img->host.flags & XKVM_LU_HOST_VERIFY_MEMORY))
        for (unsigned i = 0; i < img->nr_domains && !rc; i++)
            if (!img->domains[i].has_checksum)
                rc = bad(err, errlen, "d%u: no MEM_CHECKSUM", img->domains[i].domid);
    if (!rc)
        rc = check_extents(img, err, errlen);
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
