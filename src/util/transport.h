/*
 * The byte transport under a migration stream (docs/migration.md, "Transport"): one
 * small interface over a plain descriptor (a socket, a file, a pipe) or a TLS session
 * (util/tls.h), so that save and restore never know which they talk through.
 * Reads and writes block; they return what read(2)/writev(2) would, -1 with errno.
 */
#ifndef XKVM_UTIL_TRANSPORT_H
#define XKVM_UTIL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "xkvm/stream.h"

struct transport {
    int fd;                     /* the descriptor beneath: poll, shutdown (not owned) */
    ssize_t (*read)(struct transport *t, void *buf, size_t len);
    ssize_t (*writev)(struct transport *t, const struct iovec *iov, int iovcnt);
    /* Bytes already received and buffered, which poll() on fd cannot see. */
    bool (*pending)(struct transport *t);
    /* Free what the transport holds; never closes fd. NULL: nothing to free. */
    void (*release)(struct transport *t);
    const char *name;           /* "plain", "TLS 1.3 x509", ... for logs and reports */
    bool raw;                   /* the stream's bytes are fd's bytes, unbuffered (plain):
                                 * a reader may splice(2) from fd */
    char why[200];              /* what made a read or write fail, if the transport knows
                                 * more than errno (the peer's TLS alert); else "" */
};

/* A transport straight on fd (read/writev). */
void transport_plain(struct transport *t, int fd);

ssize_t transport_read(struct transport *t, void *buf, size_t len);
/* Write all of buf (retrying short writes). 0, or -1 with errno. */
int transport_write_all(struct transport *t, const void *buf, size_t len);
/*
 * Wait up to timeout_ms for something to read (buffered or on the fd). 1: readable,
 * 0: timed out, -1 with errno.
 */
int transport_wait_readable(struct transport *t, unsigned timeout_ms);
void transport_release(struct transport *t);

/*
 * t with one byte read ahead put back in front (a destination reads a connection's
 * first byte to tell a migration stream from an extra data connection): reads return
 * it first, everything else goes to inner. Releasing it releases nothing.
 */
struct transport_pushback {
    struct transport t;
    struct transport *inner;
    int byte;                   /* -1: given out */
};
void transport_pushback(struct transport_pushback *p, struct transport *inner, uint8_t byte);

/* The stream reader's and writer's view of t (xkvm_stream_*_init_io). */
struct xkvm_stream_io transport_stream_io(struct transport *t);

#endif
