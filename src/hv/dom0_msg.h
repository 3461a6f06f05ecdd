/*
 * Requests on the dom0 socket (include/xkvm/dom0.h): parsing and validation, with no
 * KVM and no state, so that every byte a service sends is checked in one place that
 * can be fuzzed.
 */
#ifndef XKVM_HV_DOM0_MSG_H
#define XKVM_HV_DOM0_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "xkvm/dom0.h"

struct dom0_request {
    uint32_t type;          /* enum xkvm_dom0_type */
    uint32_t seq;
    union {
        struct xkvm_dom0_hello hello;
        struct xkvm_dom0_evtchn evtchn;
        struct xkvm_dom0_map_grant map_grant;
        struct xkvm_dom0_map_foreign map_foreign;
        struct xkvm_dom0_unmap unmap;
        struct xkvm_dom0_domain_query query;
    } u;
};

/* Body size of a request of `type`, or -1 for an unknown type. */
long dom0_msg_body_size(uint32_t type);

/*
 * Parse one request packet of `len` bytes. 0, or a positive errno with the reason in
 * err; req->seq is set whenever the header could be read, so the error reply can
 * echo it.
 */
int dom0_msg_parse(const void *buf, size_t len, struct dom0_request *req,
                   char *err, size_t errlen);

/* Encode a request (the inverse of parse). Bytes written, or 0 if cap is too small. */
size_t dom0_msg_encode(const struct dom0_request *req, void *buf, size_t cap);

const char *dom0_msg_type_name(uint32_t type);

#endif
