/*
 * Several connections for one migration (docs/migration.md, "Several connections";
 * docs/stream.md): the main connection carries the line protocol, the state and a
 * share of the pages; N-1 extra ones, opened to the same port once the destination
 * admitted the domain and offered a token with READY, carry the other shares.
 *
 * A page goes on connection (gfn / 64) % N in every pass, so all copies of a page
 * travel on one connection, in order. Each extra connection is a stream of its own
 * (headers, STATIC_DATA_END, PAGE_DATA, a SYNC marker with a 4-byte sequence number
 * after each pass, and last the marker MULTICONN_LAST_MARKER: its end); the main
 * stream's SYNC says how many extra connections there are and which marker they must
 * all have delivered before the destination answers SYNCED, and its END is applied
 * only once every extra connection delivered its last marker.
 */
#ifndef XKVM_MIGRATE_MULTICONN_H
#define XKVM_MIGRATE_MULTICONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/multiconn_line.h"
#include "util/transport.h"
#include "xkvm/stream.h"

/* An extra connection's last marker: all its pages have been sent. */
#define MULTICONN_LAST_MARKER 0xffffffffu

/* ---- destination (multiconn_recv.c) ---- */

struct multiconn_rx;
/*
 * Offer extra connections to the migration receiving through main_fd (receiver: the
 * restore's, opaque here). The token goes into READY. NULL: none offered.
 */
struct multiconn_rx *multiconn_rx_open(void *receiver, int main_fd,
                                       char token[MULTICONN_TOKEN_LEN + 1]);
/*
 * The main stream's SYNC (count extra connections, all at marker seq) or END (end: all
 * of them ended): wait for them. 0, or -errno with a message (one of them failed or
 * stalled, or the main connection went away meanwhile).
 */
int multiconn_rx_wait(struct multiconn_rx *m, const uint32_t *count, uint32_t seq, bool end,
                      char *err, size_t errlen);
/* Why the extra connections failed the migration, into err; false if they did not. */
bool multiconn_rx_failed(struct multiconn_rx *m, char *err, size_t errlen);
/* No more extra connections: those still open are shut down and waited for; freed. */
void multiconn_rx_close(struct multiconn_rx *m);

/*
 * An extra connection whose DATA line named token and index (xkvmd's listener, after
 * the TLS handshake): its pages into the migration's domain, in this thread, until
 * its last marker. 0, or -errno with a message; refused (unknown token, index taken or beyond
 * the count): -EACCES before anything is read.
 */
int migrate_receive_data(const char *token, unsigned index, struct transport *t,
                         char *err, size_t errlen);

/* ---- source (multiconn_send.c) ---- */

struct migrate_opts;
struct multiconn_tx {
    unsigned n;                 /* extra connections open (0: the main one only) */
    uint32_t seq;               /* the last marker sent */
    struct transport *t[MULTICONN_MAX];
    struct xkvm_stream_writer w[MULTICONN_MAX];     /* [1..n] */
    struct xkvm_stream_writer *failed;              /* the writer that failed, if one */
};
/*
 * After READY (its line: "READY" and maybe a token): open o->connections - 1 extra
 * connections through o->open_data and begin each with its DATA line. A destination
 * that offers no token gets the main connection only (logged). 0 or -errno with err.
 */
int multiconn_tx_open(struct multiconn_tx *m, const struct migrate_opts *o, uint16_t domid,
                      const char *ready_line, const struct xkvm_stream_writer_opts *wo,
                      char *err, size_t errlen);
/* Where the pages of bitmap word `word` (gfns word*64..+63) go: main or an extra one. */
static inline struct xkvm_stream_writer *multiconn_tx_writer(struct multiconn_tx *m,
                                                           struct xkvm_stream_writer *main,
                                                           uint64_t word)
{
    unsigned i = m->n ? (unsigned)(word % (m->n + 1)) : 0;
    return i ? &m->w[i] : main;
}
/* Flush every extra writer (between batches). 0, or -1 with m->failed set. */
int multiconn_tx_flush(struct multiconn_tx *m);
/* The next marker on every extra connection; its number (the main SYNC's body). */
int multiconn_tx_mark(struct multiconn_tx *m, uint32_t *seq);
/* The last marker on every extra connection (after the last pages). */
int multiconn_tx_end(struct multiconn_tx *m);
/* Bytes written on the extra connections. */
uint64_t multiconn_tx_bytes(const struct multiconn_tx *m);
void multiconn_tx_release(struct multiconn_tx *m);

/* restore.c: one extra connection's records into receiver's domain; marker(arg, seq). */
int restore_data_stream(void *receiver, struct transport *t,
                        void (*marker)(void *arg, uint32_t seq), void *arg,
                        char *err, size_t errlen);

#endif
