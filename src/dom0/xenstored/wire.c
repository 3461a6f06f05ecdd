/* The xenstore wire format (xs_wire.h): pure parsing and formatting, fuzzed. */
#include <string.h>
#include "xs.h"

int xs_wire_parse(const uint8_t *buf, size_t len, struct xsd_sockmsg *hdr,
                  const uint8_t **body, size_t *used)
{
    if (len < XS_HDR_SIZE)
        return 0;
    memcpy(hdr, buf, XS_HDR_SIZE);
    if (hdr->len > XENSTORE_PAYLOAD_MAX)
        return -1;
    if (len - XS_HDR_SIZE < hdr->len)
        return 0;
    *body = buf + XS_HDR_SIZE;
    *used = XS_HDR_SIZE + hdr->len;
    return 1;
}

int xs_wire_split(const uint8_t *body, uint32_t len, const char **v, int max)
{
    int n = 0;
    uint32_t start = 0;
    for (uint32_t i = 0; i < len && n < max; i++) {
        if (body[i] == '\0') {
            v[n++] = (const char *)body + start;
            start = i + 1;
        }
    }
    return n;
}

static const struct xsd_errors *find_err(int err)
{
    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        if (xsd_errors[i].errnum == err)
            return &xsd_errors[i];
    return NULL;
}

const char *xs_errno_name(int err)
{
    const struct xsd_errors *e = find_err(err);
    return e ? e->errstring : "EIO";
}

int xs_errno_from_name(const char *s)
{
    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        if (!strcmp(xsd_errors[i].errstring, s))
            return xsd_errors[i].errnum;
    return -1;
}

static const char *const type_names[XS_TYPE_COUNT] = {
    [XS_CONTROL] = "CONTROL", [XS_DIRECTORY] = "DIRECTORY", [XS_READ] = "READ",
    [XS_GET_PERMS] = "GET_PERMS", [XS_WATCH] = "WATCH", [XS_UNWATCH] = "UNWATCH",
    [XS_TRANSACTION_START] = "TRANSACTION_START", [XS_TRANSACTION_END] = "TRANSACTION_END",
    [XS_INTRODUCE] = "INTRODUCE", [XS_RELEASE] = "RELEASE",
    [XS_GET_DOMAIN_PATH] = "GET_DOMAIN_PATH", [XS_WRITE] = "WRITE", [XS_MKDIR] = "MKDIR",
    [XS_RM] = "RM", [XS_SET_PERMS] = "SET_PERMS", [XS_WATCH_EVENT] = "WATCH_EVENT",
    [XS_ERROR] = "ERROR", [XS_IS_DOMAIN_INTRODUCED] = "IS_DOMAIN_INTRODUCED",
    [XS_RESUME] = "RESUME", [XS_SET_TARGET] = "SET_TARGET",
    [XS_RESET_WATCHES] = "RESET_WATCHES", [XS_DIRECTORY_PART] = "DIRECTORY_PART",
};

const char *xs_type_name(uint32_t type)
{
    if (type < XS_TYPE_COUNT && type_names[type])
        return type_names[type];
    return "UNKNOWN";
}

bool xs_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
