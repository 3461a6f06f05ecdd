/* libFuzzer: domcfg_from_json() on arbitrary bytes, as xkvmd sees a create request. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <json-c/json.h>

#include "util/domcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return 0;
    struct json_object *o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    json_tokener_free(tok);

    struct domcfg c;
    char err[256];
    memset(&c, 0, sizeof(c));
    if (domcfg_from_json(o, &c, err, sizeof(err)) == 0) {
        /* An accepted config must satisfy validate and survive a round trip. */
        if (domcfg_validate(&c, err, sizeof(err)) != 0)
            __builtin_trap();
        struct json_object *again = domcfg_to_json(&c);
        struct domcfg c2;
        if (!again || domcfg_from_json(again, &c2, err, sizeof(err)) != 0 ||
            memcmp(&c, &c2, sizeof(c)) != 0)
            __builtin_trap();
        json_object_put(again);
    } else if (memchr(err, '\0', sizeof(err)) == NULL) {
        __builtin_trap();
    }
    json_object_put(o);
    return 0;
}
