/*
 * The source's side of several connections per migration (multiconn.h,
 * docs/migration.md "Several connections"): the extra connections' streams. save.c
 * picks the writer of each page (multiconn_tx_writer) and marks the end of each pass.
 */
#include "migrate/multiconn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrate/migrate.h"
#include "util/log.h"

int multiconn_tx_open(struct multiconn_tx *m, const struct migrate_opts *o, uint16_t domid,
                      const char *ready_line, const struct xkvm_stream_writer_opts *wo,
                      char *err, size_t errlen)
{
    char token[MULTICONN_TOKEN_LEN + 1];
    *m = (struct multiconn_tx){ 0 };
    if (o->connections <= 1 || !o->open_data)
        return 0;
    if (multiconn_ready_token(ready_line + strlen(MIGRATE_MSG_READY), token)) {
        log_warn("d%u: the destination offers no extra connections: all goes over one",
                 domid);
        return 0;
    }
    unsigned want = o->connections > MULTICONN_MAX ? MULTICONN_MAX : o->connections;
    for (unsigned i = 1; i < want; i++) {
        char why[600];
        struct transport *t = o->open_data(o->open_arg, i, why, sizeof(why));
        if (!t) {
            snprintf(err, errlen, "extra connection %u: %s", i, why);
            return -ECONNREFUSED;
        }
        struct xkvm_stream_io io = transport_stream_io(t);
        if (migrate_send_line(t, MULTICONN_DATA_WORD " %s %u", token, i)) {
            snprintf(err, errlen, "extra connection %u: closed at once%s%s", i,
                     t->why[0] ? ": " : "", t->why);
            return -EPIPE;
        }
        m->t[i] = t;
        if (xkvm_stream_writer_init_io(&m->w[i], &io, wo)) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        m->n = i;
        if (xkvm_stream_write_static_data_end(&m->w[i])) {     /* as a v3 stream must */
            snprintf(err, errlen, "extra connection %u: %s", i, m->w[i].err.msg);
            return -EPIPE;
        }
    }
    log_info("d%u: pages go over %u connections", domid, m->n + 1);
    return 0;
}

static int each(struct multiconn_tx *m, int (*fn)(struct xkvm_stream_writer *w, void *arg),
                void *arg)
{
    for (unsigned i = 1; i <= m->n; i++)
        if (fn(&m->w[i], arg)) {
            m->failed = &m->w[i];
            return -1;
        }
    return 0;
}

static int flush_one(struct xkvm_stream_writer *w, void *arg)
{
    (void)arg;
    return xkvm_stream_flush_pages(w);
}

int multiconn_tx_flush(struct multiconn_tx *m)
{
    return each(m, flush_one, NULL);
}

static int mark_one(struct xkvm_stream_writer *w, void *arg)
{
    uint32_t seq = *(uint32_t *)arg;
    uint8_t b[4] = { (uint8_t)seq, (uint8_t)(seq >> 8), (uint8_t)(seq >> 16),
                     (uint8_t)(seq >> 24) };
    return xkvm_stream_write_record(w, XKVM_STREAM_REC_SYNC, b, sizeof(b));
}

int multiconn_tx_mark(struct multiconn_tx *m, uint32_t *seq)
{
    *seq = ++m->seq;
    return each(m, mark_one, seq);
}

int multiconn_tx_end(struct multiconn_tx *m)
{
    uint32_t last = MULTICONN_LAST_MARKER;
    if (each(m, mark_one, &last))
        return -1;
    return each(m, flush_one, NULL);
}

uint64_t multiconn_tx_bytes(const struct multiconn_tx *m)
{
    uint64_t b = 0;
    for (unsigned i = 1; i <= m->n; i++)
        b += m->w[i].info.bytes;
    return b;
}

void multiconn_tx_release(struct multiconn_tx *m)
{
    for (unsigned i = 1; i <= m->n; i++)
        xkvm_stream_writer_release(&m->w[i]);
    m->n = 0;
}
