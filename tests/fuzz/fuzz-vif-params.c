/*
 * libFuzzer: nb_params_read() (src/dom0/netback/vifparams.c) on a frontend directory
 * made of fuzz bytes: the first byte is the number of queues offered, the rest
 * "node=value" lines, read the way xenbus_be_read_uint reads xenstore. An accepted
 * result must stay within what was offered and name only values that were there.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dom0/netback/vifparams.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct dir {
    const char *text;
};

static long long rd(void *ctx, const char *node, long long dflt)
{
    const struct dir *d = ctx;
    size_t n = strlen(node);
    for (const char *l = d->text; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (len > n && !strncmp(l, node, n) && l[n] == '=') {
            char v[32];
            size_t vl = len - n - 1;
            if (vl == 0 || vl >= sizeof(v))
                return -1;
            memcpy(v, l + n + 1, vl);
            v[vl] = '\0';
            char *end;
            unsigned long long x = strtoull(v, &end, 10);
            return !*end && x <= UINT32_MAX ? (long long)x : -1;
        }
        l += len + (e ? 1 : 0);
    }
    return dflt;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct dir d = { text };
    unsigned max = data[0] % (NB_MAX_QUEUES + 2);
    struct nb_ring_params rp;
    const char *why = NULL;
    int rc = nb_params_read(rd, &d, max, &rp, &why);
    if (rc == 0) {
        unsigned cap = max >= 1 && max <= NB_MAX_QUEUES ? max : 1;
        if (rp.nr_queues < 1 || rp.nr_queues > cap)
            __builtin_trap();
        if (rp.nr_queues > 1 && !strstr(text, "multi-queue-num-queues="))
            __builtin_trap();
        for (unsigned i = 0; i < rp.nr_queues; i++)
            if (!rp.q[i].split && rp.q[i].tx_port != rp.q[i].rx_port)
                __builtin_trap();
    } else if (!why) {
        __builtin_trap();
    }
    free(text);
    return 0;
}
