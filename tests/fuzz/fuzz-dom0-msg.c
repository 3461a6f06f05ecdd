/*
 * libFuzzer: dom0_msg_parse() on arbitrary bytes, as xkvmd sees a packet on
 * dom0.sock. An accepted request must re-encode to exactly the bytes it came from.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hv/dom0_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dom0_request req;
    char err[128];
    if (dom0_msg_parse(data, size, &req, err, sizeof(err)) != 0) {
        if (!memchr(err, '\0', sizeof(err)) || !err[0])
            __builtin_trap();
        return 0;
    }
    uint8_t again[XKVM_DOM0_MAX_MSG];
    size_t n = dom0_msg_encode(&req, again, sizeof(again));
    if (n != size || memcmp(again, data, size) != 0)
        __builtin_trap();
    if (req.type == XKVM_DOM0_HELLO &&
        !memchr(req.u.hello.name, '\0', sizeof(req.u.hello.name)))
        __builtin_trap();
    return 0;
}
