/*
 * TLS 1.3 for migration connections, through GnuTLS (docs/migration.md, "Transport";
 * docs/security.md): x509 with both ends verified, or a pre-shared key with (EC)DHE.
 * A handshake on a connected socket gives a struct transport (util/transport.h) that
 * save and restore use like any other.
 */
#ifndef XKVM_UTIL_TLS_H
#define XKVM_UTIL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/transport.h"

/* The files of an x509 directory, as QEMU's tls-creds-x509 lays them out. */
#define TLS_CA_CERT      "ca-cert.pem"
#define TLS_CA_CRL       "ca-crl.pem"          /* optional */
#define TLS_SERVER_CERT  "server-cert.pem"
#define TLS_SERVER_KEY   "server-key.pem"
#define TLS_CLIENT_CERT  "client-cert.pem"
#define TLS_CLIENT_KEY   "client-key.pem"

/* A PSK file: lines "identity:hexkey" (GnuTLS psktool's format, QEMU's psk-file). */
#define TLS_PSK_IDENTITY_MAX 128
#define TLS_PSK_KEY_MIN      16     /* bytes: 128 bits at least */
#define TLS_PSK_KEY_MAX      64
#define TLS_PSK_MAX_ENTRIES  64
struct tls_psk_entry {
    char identity[TLS_PSK_IDENTITY_MAX + 1];
    uint8_t key[TLS_PSK_KEY_MAX];
    size_t key_len;
};
/*
 * Parse a PSK file's text (I/O-free): up to max entries into out, *n of them. Blank
 * lines and lines starting with '#' are skipped. 0, or -EINVAL with a message naming
 * the line.
 */
int tls_psk_parse(const char *text, size_t len, struct tls_psk_entry *out, unsigned max,
                  unsigned *n, char *err, size_t errlen);

struct tls_creds;
/*
 * Load the credentials (xkvmd --migrate-tls-dir DIR / --migrate-psk FILE). An x509
 * directory must hold ca-cert.pem; each key pair is loaded if present, and checked
 * when a role needs it (tls_creds_check). NULL with a message on failure.
 */
struct tls_creds *tls_creds_x509(const char *dir, char *err, size_t errlen);
struct tls_creds *tls_creds_psk(const char *file, char *err, size_t errlen);
/* Can these credentials play this role (server: the destination)? 0, or -ENOENT with err. */
int tls_creds_check(const struct tls_creds *c, bool server, char *err, size_t errlen);
/* "x509" or "psk". */
const char *tls_creds_kind(const struct tls_creds *c);
void tls_creds_free(struct tls_creds *c);

/*
 * Run a TLS 1.3 handshake on the connected socket fd (blocking), as the server (the
 * destination: verifies the client's certificate, or knows the client's PSK identity)
 * or the client (the source: verifies the server's certificate for hostname, an IP
 * address or a DNS name). At most timeout_ms. On success a transport over the session
 * (transport_release frees it, and the transport itself; fd stays the caller's).
 * NULL with a message saying why the peer was refused or refused us.
 */
struct transport *tls_open(const struct tls_creds *c, int fd, bool server, const char *hostname,
                           unsigned timeout_ms, char *err, size_t errlen);

/*
 * Server side, before the handshake: does the peer's first byte look like TLS (a
 * handshake record)? 1 yes, 0 no (a plaintext peer: tell it in plain text), -errno
 * (nothing within timeout_ms, closed).
 */
int tls_peek_is_tls(int fd, unsigned timeout_ms);

#endif
