#include "hv/dom0_msg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The first domid Xen reserves (DOMID_FIRST_RESERVED). */
#define DOMID_RESERVED 0x7FF0u

static const struct {
    const char *name;
    size_t body;
} types[XKVM_DOM0_TYPE_END] = {
    [XKVM_DOM0_HELLO]           = { "hello", sizeof(struct xkvm_dom0_hello) },
    [XKVM_DOM0_BIND_EVTCHN]     = { "bind_evtchn", sizeof(struct xkvm_dom0_evtchn) },
    [XKVM_DOM0_UNBIND_EVTCHN]   = { "unbind_evtchn", sizeof(struct xkvm_dom0_evtchn) },
    [XKVM_DOM0_MAP_GRANT]       = { "map_grant", sizeof(struct xkvm_dom0_map_grant) },
    [XKVM_DOM0_UNMAP_GRANT]     = { "unmap_grant", sizeof(struct xkvm_dom0_unmap) },
    [XKVM_DOM0_MAP_FOREIGN]     = { "map_foreign", sizeof(struct xkvm_dom0_map_foreign) },
    [XKVM_DOM0_UNMAP_FOREIGN]   = { "unmap_foreign", sizeof(struct xkvm_dom0_unmap) },
    [XKVM_DOM0_GET_DOMAIN_INFO] = { "get_domain_info", sizeof(struct xkvm_dom0_domain_query) },
    [XKVM_DOM0_WATCH_DOMAINS] = { "watch_domains", 0 },
};

long dom0_msg_body_size(uint32_t type)
{
    if (type == 0 || type >= XKVM_DOM0_TYPE_END)
        return -1;
    return (long)types[type].body;
}

const char *dom0_msg_type_name(uint32_t type)
{
    return dom0_msg_body_size(type) < 0 ? "unknown" : types[type].name;
}

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return e;
}

/* A name is 1..NAME_MAX-1 printable characters, then NULs only. */
static int check_name(const char *name)
{
    size_t n = strnlen(name, XKVM_DOM0_NAME_MAX);
    if (n == 0 || n == XKVM_DOM0_NAME_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7e)
            return -1;
    for (size_t i = n; i < XKVM_DOM0_NAME_MAX; i++)
        if (name[i])
            return -1;
    return 0;
}

static int check_body(struct dom0_request *r, char *err, size_t errlen)
{
    uint32_t domid = 0;
    switch (r->type) {
    case XKVM_DOM0_HELLO:
        if (r->u.hello.version != XKVM_DOM0_VERSION)
            return fail(err, errlen, EPROTONOSUPPORT, "protocol version %u, xkvmd speaks %u",
                        r->u.hello.version, XKVM_DOM0_VERSION);
        if (r->u.hello.reserved)
            return fail(err, errlen, EINVAL, "reserved field not zero");
        if (check_name(r->u.hello.name))
            return fail(err, errlen, EINVAL, "service name: 1 to %u printable characters, "
                        "NUL-padded", XKVM_DOM0_NAME_MAX - 1);
        return 0;
    case XKVM_DOM0_BIND_EVTCHN:
    case XKVM_DOM0_UNBIND_EVTCHN:
        domid = r->u.evtchn.domid;
        break;
    case XKVM_DOM0_MAP_GRANT:
        if (r->u.map_grant.flags & ~XKVM_DOM0_MAP_READONLY)
            return fail(err, errlen, EINVAL, "unknown flags %#x", r->u.map_grant.flags);
        if (r->u.map_grant.reserved)
            return fail(err, errlen, EINVAL, "reserved field not zero");
        domid = r->u.map_grant.domid;
        break;
    case XKVM_DOM0_MAP_FOREIGN:
        if (r->u.map_foreign.flags & ~XKVM_DOM0_MAP_READONLY)
            return fail(err, errlen, EINVAL, "unknown flags %#x", r->u.map_foreign.flags);
        domid = r->u.map_foreign.domid;
        break;
    case XKVM_DOM0_UNMAP_GRANT:
    case XKVM_DOM0_UNMAP_FOREIGN:
        domid = r->u.unmap.domid;
        break;
    case XKVM_DOM0_WATCH_DOMAINS:
        return 0;
    case XKVM_DOM0_GET_DOMAIN_INFO:
        if (r->u.query.flags & ~XKVM_DOM0_INFO_NEXT)
            return fail(err, errlen, EINVAL, "unknown flags %#x", r->u.query.flags);
        if (r->u.query.domid >= DOMID_RESERVED)
            return fail(err, errlen, EINVAL, "domid %u is not a guest's", r->u.query.domid);
        return 0;
    }
    /* dom0 is the caller itself: every target is a guest. */
    if (domid == 0 || domid >= DOMID_RESERVED)
        return fail(err, errlen, EINVAL, "domid %u is not a guest's", domid);
    return 0;
}

int dom0_msg_parse(const void *buf, size_t len, struct dom0_request *req,
                   char *err, size_t errlen)
{
    struct xkvm_dom0_hdr h;
    memset(req, 0, sizeof(*req));
    if (len < sizeof(h))
        return fail(err, errlen, EBADMSG, "message of %zu bytes is shorter than a header", len);
    memcpy(&h, buf, sizeof(h));
    req->seq = h.seq;
    if (h.len != len)
        return fail(err, errlen, EBADMSG, "header says %u bytes, packet has %zu", h.len, len);
    long body = dom0_msg_body_size(h.type);
    if (body < 0)
        return fail(err, errlen, EOPNOTSUPP, "unknown request type %#x", h.type);
    if (h.error)
        return fail(err, errlen, EINVAL, "a request's error field must be zero");
    if (len - sizeof(h) != (size_t)body)
        return fail(err, errlen, EBADMSG, "%s: body of %zu bytes, want %ld",
                    types[h.type].name, len - sizeof(h), body);
    req->type = h.type;
    memcpy(&req->u, (const uint8_t *)buf + sizeof(h), (size_t)body);
    return check_body(req, err, errlen);
}

size_t dom0_msg_encode(const struct dom0_request *req, void *buf, size_t cap)
{
    long body = dom0_msg_body_size(req->type);
    if (body < 0 || cap < sizeof(struct xkvm_dom0_hdr) + (size_t)body)
        return 0;
    struct xkvm_dom0_hdr h = { .type = req->type, .seq = req->seq,
                               .len = (uint32_t)(sizeof(h) + (size_t)body) };
    memcpy(buf, &h, sizeof(h));
    memcpy((uint8_t *)buf + sizeof(h), &req->u, (size_t)body);
    return h.len;
}
