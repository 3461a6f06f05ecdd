/*
 * TLS 1.3 migration transport over GnuTLS: credentials, the handshake with its
 * verification, and the transport it yields (tls.h; docs/migration.md, "Transport").
 */
#include "util/tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/*
 * Only TLS 1.3; with a PSK only the modes with an (EC)DHE exchange (forward secrecy).
 * AES-GCM first: GnuTLS moves CHACHA20 ahead where it believes the CPU lacks AES
 * instructions, and on a kvm-pvm guest it does so although AES-NI works (measured: 55
 * MB/s with CHACHA20 against GBs with AES-GCM, bench-stream-floor).
 */
#define PRIO_BASE "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
                  "+CHACHA20-POLY1305"
#define PRIO_X509 PRIO_BASE
#define PRIO_PSK  PRIO_BASE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"
/* Corked bytes sent as one batch of records by a writev. */
#define CORK_BYTES (256u << 10)

struct tls_creds {
    bool psk;
    gnutls_certificate_credentials_t server, client;    /* x509; NULL: no such pair */
    gnutls_psk_server_credentials_t psk_server;
    gnutls_psk_client_credentials_t psk_client;
    struct tls_psk_entry *entries;
    unsigned nr_entries;
    char where[256];            /* the directory or file, for messages */
};

struct tls_transport {
    struct transport t;
    gnutls_session_t s;
    char desc[320];             /* t.name: who the peer proved to be */
};

/* ---- the PSK file ---- */

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One "identity:hexkey" line (no newline). 0 or -EINVAL with a message. */
static int psk_line(const char *p, size_t len, struct tls_psk_entry *e, char *err, size_t errlen)
{
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p || (size_t)(colon - p) > TLS_PSK_IDENTITY_MAX) {
        snprintf(err, errlen, "wants identity:hexkey (an identity of 1 to %d characters)",
                 TLS_PSK_IDENTITY_MAX);
        return -EINVAL;
    }
    size_t idlen = (size_t)(colon - p), hexlen = len - idlen - 1;
    for (size_t i = 0; i < idlen; i++)
        if (!isprint((unsigned char)p[i])) {
            snprintf(err, errlen, "the identity has an unprintable character");
            return -EINVAL;
        }
    if (hexlen % 2 || hexlen / 2 < TLS_PSK_KEY_MIN || hexlen / 2 > TLS_PSK_KEY_MAX) {
        snprintf(err, errlen, "the key must be %d to %d bytes in hex (psktool makes 32)",
                 TLS_PSK_KEY_MIN, TLS_PSK_KEY_MAX);
        return -EINVAL;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->identity, p, idlen);
    for (size_t i = 0; i < hexlen / 2; i++) {
        int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "the key is not hexadecimal");
            return -EINVAL;
        }
        e->key[i] = (uint8_t)(hi << 4 | lo);
    }
    e->key_len = hexlen / 2;
    return 0;
}

int tls_psk_parse(const char *text, size_t len, struct tls_psk_entry *out, unsigned max,
                  unsigned *n, char *err, size_t errlen)
{
    *n = 0;
    unsigned lineno = 0;
    for (size_t off = 0; off < len;) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t ll = nl ? (size_t)(nl - text - off) : len - off;
        const char *line = text + off;
        off += ll + (nl ? 1 : 0);
        lineno++;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (!ll || line[0] == '#')
            continue;
        char why[160];
        if (*n == max) {
            snprintf(err, errlen, "line %u: more than %u keys", lineno, max);
            return -EINVAL;
        }
        if (psk_line(line, ll, &out[*n], why, sizeof(why))) {
            snprintf(err, errlen, "line %u: %s", lineno, why);
            return -EINVAL;
        }
        for (unsigned i = 0; i < *n; i++)
            if (!strcmp(out[i].identity, out[*n].identity)) {
                snprintf(err, errlen, "line %u: identity '%s' given twice", lineno,
                         out[i].identity);
                return -EINVAL;
            }
        (*n)++;
    }
    if (!*n) {
        snprintf(err, errlen, "no identity:hexkey line");
        return -EINVAL;
    }
    return 0;
}

/* ---- credentials ---- */

/* A secret (a key, a PSK file) must not be readable by others. 0 or -EPERM/-errno. */
static int check_secret(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st)) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "%s is a secret but its mode is %04o: chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

void tls_creds_free(struct tls_creds *c)
{
    if (!c)
        return;
    if (c->server)
        gnutls_certificate_free_credentials(c->server);
    if (c->client)
        gnutls_certificate_free_credentials(c->client);
    if (c->psk_server)
        gnutls_psk_free_server_credentials(c->psk_server);
    if (c->psk_client)
        gnutls_psk_free_client_credentials(c->psk_client);
    if (c->entries)
        explicit_bzero(c->entries, c->nr_entries * sizeof(*c->entries));
    free(c->entries);
    free(c);
}

/*
 * One role's x509 credentials: the CA (and its CRL, if there) and the pair
 * DIR/cert, DIR/key. *out stays NULL when the pair is not there at all.
 */
static int load_pair(const char *dir, const char *cert, const char *key,
                     gnutls_certificate_credentials_t *out, char *err, size_t errlen)
{
    char cp[4200], kp[4200], ca[4200], crl[4200];
    snprintf(cp, sizeof(cp), "%s/%s", dir, cert);
    snprintf(kp, sizeof(kp), "%s/%s", dir, key);
    snprintf(ca, sizeof(ca), "%s/%s", dir, TLS_CA_CERT);
    snprintf(crl, sizeof(crl), "%s/%s", dir, TLS_CA_CRL);
    if (access(cp, F_OK) && access(kp, F_OK))
        return 0;
    int rc = check_secret(kp, err, errlen);
    if (rc)
        return rc;
    gnutls_certificate_credentials_t x;
    if (gnutls_certificate_allocate_credentials(&x) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int g = gnutls_certificate_set_x509_trust_file(x, ca, GNUTLS_X509_FMT_PEM);
    const char *what = ca;
    if (g == 0)
        g = GNUTLS_E_NO_CERTIFICATE_FOUND;
    if (g > 0 && !access(crl, F_OK)) {
        what = crl;
        g = gnutls_certificate_set_x509_crl_file(x, crl, GNUTLS_X509_FMT_PEM);
    }
    if (g >= 0) {
        what = cp;
        g = gnutls_certificate_set_x509_key_file(x, cp, kp, GNUTLS_X509_FMT_PEM);
    }
    if (g < 0) {
        snprintf(err, errlen, "%s: %s", what, gnutls_strerror(g));
        gnutls_certificate_free_credentials(x);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

struct tls_creds *tls_creds_x509(const char *dir, char *err, size_t errlen)
{
    struct tls_creds *c = calloc(1, sizeof(*c));
    char ca[4200];
    snprintf(ca, sizeof(ca), "%s/%s", dir, TLS_CA_CERT);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->where, sizeof(c->where), "%s", dir);
    if (access(ca, R_OK)) {
        snprintf(err, errlen, "%s: %s (the CA both ends trust)", ca, strerror(errno));
        tls_creds_free(c);
        return NULL;
    }
    if (load_pair(dir, TLS_SERVER_CERT, TLS_SERVER_KEY, &c->server, err, errlen) ||
        load_pair(dir, TLS_CLIENT_CERT, TLS_CLIENT_KEY, &c->client, err, errlen)) {
        tls_creds_free(c);
        return NULL;
    }
    if (!c->server && !c->client) {
        snprintf(err, errlen, "%s holds neither %s/%s nor %s/%s", dir, TLS_SERVER_CERT,
                 TLS_SERVER_KEY, TLS_CLIENT_CERT, TLS_CLIENT_KEY);
        tls_creds_free(c);
        return NULL;
    }
    return c;
}

/* The server's key for the identity the client named (session pointer: the creds). */
static int psk_lookup(gnutls_session_t s, const char *identity, gnutls_datum_t *key)
{
    const struct tls_creds *c = gnutls_session_get_ptr(s);
    for (unsigned i = 0; i < c->nr_entries; i++) {
        if (strcmp(c->entries[i].identity, identity))
            continue;
        key->data = gnutls_malloc(c->entries[i].key_len);
        if (!key->data)
            return -1;
        memcpy(key->data, c->entries[i].key, c->entries[i].key_len);
        key->size = (unsigned)c->entries[i].key_len;
        return 0;
    }
    return -1;
}

static int read_small_file(const char *path, char *buf, size_t cap, size_t *len, char *err,
                           size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, cap);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (n < 0 || (size_t)n == cap) {
        snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(e) : "too big for a PSK file");
        return -EINVAL;
    }
    *len = (size_t)n;
    return 0;
}

struct tls_creds *tls_creds_psk(const char *file, char *err, size_t errlen)
{
    char buf[TLS_PSK_MAX_ENTRIES * (TLS_PSK_IDENTITY_MAX + 2 * TLS_PSK_KEY_MAX + 4)];
    size_t len;
    struct tls_creds *c = calloc(1, sizeof(*c));
    if (c)
        c->entries = calloc(TLS_PSK_MAX_ENTRIES, sizeof(*c->entries));
    if (!c || !c->entries) {
        snprintf(err, errlen, "out of memory");
        tls_creds_free(c);
        return NULL;
    }
    c->psk = true;
    snprintf(c->where, sizeof(c->where), "%s", file);
    char why[256];
    int rc = check_secret(file, err, errlen);
    if (!rc)
        rc = read_small_file(file, buf, sizeof(buf), &len, err, errlen);
    if (!rc && (rc = tls_psk_parse(buf, len, c->entries, TLS_PSK_MAX_ENTRIES, &c->nr_entries,
                                   why, sizeof(why))))
        snprintf(err, errlen, "%s: %s", file, why);
    explicit_bzero(buf, sizeof(buf));
    gnutls_datum_t key = { .data = c->entries[0].key, .size = (unsigned)c->entries[0].key_len };
    if (!rc && (gnutls_psk_allocate_server_credentials(&c->psk_server) < 0 ||
                gnutls_psk_allocate_client_credentials(&c->psk_client) < 0 ||
                gnutls_psk_set_client_credentials(c->psk_client, c->entries[0].identity, &key,
                                                  GNUTLS_PSK_KEY_RAW) < 0)) {
        snprintf(err, errlen, "%s: cannot set up the PSK credentials", file);
        rc = -ENOMEM;
    }
    if (rc) {
        tls_creds_free(c);
        return NULL;
    }
    gnutls_psk_set_server_credentials_function(c->psk_server, psk_lookup);
    return c;
}

int tls_creds_check(const struct tls_creds *c, bool server, char *err, size_t errlen)
{
    if (c->psk || (server ? c->server : c->client))
        return 0;
    snprintf(err, errlen, "%s has no %s and %s: %s", c->where,
             server ? TLS_SERVER_CERT : TLS_CLIENT_CERT, server ? TLS_SERVER_KEY : TLS_CLIENT_KEY,
             server ? "it cannot accept migrations" : "it cannot send migrations");
    return -ENOENT;
}

const char *tls_creds_kind(const struct tls_creds *c)
{
    return c->psk ? "psk" : "x509";
}

/* ---- the transport over a session ---- */

static ssize_t tls_errno(struct tls_transport *tt, ssize_t g)
{
    if (g == GNUTLS_E_FATAL_ALERT_RECEIVED)
        snprintf(tt->t.why, sizeof(tt->t.why), "the peer sent the TLS alert \"%s\"",
                 gnutls_alert_get_name(gnutls_alert_get(tt->s)));
    else if (g != GNUTLS_E_INTERRUPTED && g != GNUTLS_E_AGAIN)
        snprintf(tt->t.why, sizeof(tt->t.why), "TLS: %s", gnutls_strerror((int)g));
    if (g == GNUTLS_E_INTERRUPTED)
        errno = EINTR;
    else if (g == GNUTLS_E_AGAIN)
        errno = ETIMEDOUT;      /* SO_RCVTIMEO/SO_SNDTIMEO ran out */
    else
        errno = EIO;
    return -1;
}

static ssize_t tls_read(struct transport *t, void *buf, size_t len)
{
    struct tls_transport *tt = (struct tls_transport *)t;
    ssize_t g = gnutls_record_recv(tt->s, buf, len);
    if (g >= 0)
        return g;
    if (g == GNUTLS_E_PREMATURE_TERMINATION)
        return 0;               /* closed without close_notify: the stream's END tells */
    return tls_errno(tt, g);
}

/*
 * Send what is corked; 0 or -1 with errno. The socket blocks: GNUTLS_E_AGAIN is its
 * SO_SNDTIMEO running out (a link silent for the stall timeout), which fails the
 * write (ETIMEDOUT) rather than waiting again, for ever on a dead link; so not
 * GNUTLS_RECORD_WAIT, which retries it.
 */
static int tls_uncork(struct tls_transport *tt)
{
    ssize_t g;
    do
        g = gnutls_record_uncork(tt->s, 0);
    while (g == GNUTLS_E_INTERRUPTED);
    return g < 0 ? (int)tls_errno(tt, g) : 0;
}

/* All of iov goes out (corked into full records), or -1 with errno. */
static ssize_t tls_writev(struct transport *t, const struct iovec *iov, int iovcnt)
{
    struct tls_transport *tt = (struct tls_transport *)t;
    size_t total = 0, corked = 0;
    gnutls_record_cork(tt->s);
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        for (size_t left = iov[i].iov_len; left;) {
            ssize_t g = gnutls_record_send(tt->s, p, left);
            if (g == GNUTLS_E_INTERRUPTED)
                continue;       /* GNUTLS_E_AGAIN: the send timeout, as in tls_uncork */
            if (g < 0) {
                return tls_errno(tt, g);    /* the session is dead: deinit drops the rest */
            }
            p += g;
            left -= (size_t)g;
            corked += (size_t)g;
            total += (size_t)g;
            if (corked >= CORK_BYTES) {
                if (tls_uncork(tt))
                    return -1;
                corked = 0;
                gnutls_record_cork(tt->s);
            }
        }
    }
    return tls_uncork(tt) ? -1 : (ssize_t)total;
}

static bool tls_pending(struct transport *t)
{
    return gnutls_record_check_pending(((struct tls_transport *)t)->s) > 0;
}

static void tls_release(struct transport *t)
{
    struct tls_transport *tt = (struct tls_transport *)t;
    gnutls_deinit(tt->s);
    free(tt);
}

/* ---- the handshake ---- */

static void verify_failure(gnutls_session_t s, bool server, char *err, size_t errlen)
{
    gnutls_datum_t out = { 0 };
    unsigned status = gnutls_session_get_verify_cert_status(s);
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) < 0)
        out.data = NULL;
    snprintf(err, errlen, "the %s's certificate does not verify: %s", server ? "client" :
             "server", out.data ? (const char *)out.data : "(no details)");
    gnutls_free(out.data);
}

/* Why the handshake failed, in words (err). */
static void handshake_failure(gnutls_session_t s, int g, bool server, bool psk,
                              unsigned timeout_ms, char *err, size_t errlen)
{
    char why[600];
    switch (g) {
    case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
        verify_failure(s, server, why, sizeof(why));
        break;
    case GNUTLS_E_FATAL_ALERT_RECEIVED:
        snprintf(why, sizeof(why), "the %s refused us: %s (alert)%s",
                 server ? "client" : "server", gnutls_alert_get_name(gnutls_alert_get(s)),
                 psk ? "; a different pre-shared key?" : "");
        break;
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        snprintf(why, sizeof(why), "the %s sent no certificate", server ? "client" : "server");
        break;
    case GNUTLS_E_TIMEDOUT:
    case GNUTLS_E_AGAIN:
        snprintf(why, sizeof(why), "not complete within %u ms", timeout_ms);
        break;
    case GNUTLS_E_PREMATURE_TERMINATION:
    case GNUTLS_E_PULL_ERROR:
    case GNUTLS_E_PUSH_ERROR:
        snprintf(why, sizeof(why), "the %s closed the connection", server ? "client" : "server");
        break;
    case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
    case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
    case GNUTLS_E_UNEXPECTED_PACKET:
        snprintf(why, sizeof(why), "%s (does the %s speak TLS 1.3? an xkvmd with "
                 "--migrate-insecure does not)", gnutls_strerror(g), server ? "client" : "server");
        break;
    default:
        snprintf(why, sizeof(why), "%s%s", gnutls_strerror(g),
                 psk ? " (a different pre-shared key or identity?)" : "");
    }
    snprintf(err, errlen, "TLS handshake (%s): %s", psk ? "psk" : "x509", why);
}

static bool is_ip_address(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* The session's credentials and what is verified. 0 or a GnuTLS error. */
static int session_setup(gnutls_session_t s, const struct tls_creds *c, bool server,
                         const char *hostname)
{
    int g = gnutls_priority_set_direct(s, c->psk ? PRIO_PSK : PRIO_X509, NULL);
    if (g < 0)
        return g;
    if (c->psk) {
        gnutls_session_set_ptr(s, (void *)c);
        return server ? gnutls_credentials_set(s, GNUTLS_CRD_PSK, c->psk_server)
                      : gnutls_credentials_set(s, GNUTLS_CRD_PSK, c->psk_client);
    }
    if ((g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server ? c->server : c->client)))
        return g;
    if (server) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_typed_vdata_st v = { .type = GNUTLS_DT_KEY_PURPOSE_OID,
                                    .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT };
        gnutls_session_set_verify_cert2(s, &v, 1, 0);
        return 0;
    }
    gnutls_typed_vdata_st v[2] = {
        { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (void *)GNUTLS_KP_TLS_WWW_SERVER },
        { .type = GNUTLS_DT_DNS_HOSTNAME, .data = (void *)hostname },
    };
    gnutls_session_set_verify_cert2(s, v, 2, 0);
    if (!is_ip_address(hostname))
        g = gnutls_server_name_set(s, GNUTLS_NAME_DNS, hostname, strlen(hostname));
    return g;
}

/* "TLS 1.3 x509 <subject>" or "TLS 1.3 psk <identity>": who the peer proved to be. */
static void describe_peer(struct tls_transport *tt, const struct tls_creds *c, bool server)
{
    char who[256] = "";
    if (c->psk && server) {
        gnutls_datum_t id;
        if (!gnutls_psk_server_get_username2(tt->s, &id))
            snprintf(who, sizeof(who), " identity %.*s", (int)id.size, (const char *)id.data);
    } else if (!c->psk) {
        unsigned n = 0;
        const gnutls_datum_t *chain = gnutls_certificate_get_peers(tt->s, &n);
        gnutls_x509_crt_t crt;
        if (n && !gnutls_x509_crt_init(&crt)) {
            size_t len = sizeof(who) - 2;
            who[0] = ' ';
            if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) ||
                gnutls_x509_crt_get_dn(crt, who + 1, &len))
                who[0] = '\0';
            gnutls_x509_crt_deinit(crt);
        }
    }
    snprintf(tt->desc, sizeof(tt->desc), "TLS 1.3 %s%s", tls_creds_kind(c), who);
    tt->t.name = tt->desc;
}

struct transport *tls_open(const struct tls_creds *c, int fd, bool server, const char *hostname,
                           unsigned timeout_ms, char *err, size_t errlen)
{
    if (tls_creds_check(c, server, err, errlen))
        return NULL;
    struct tls_transport *tt = calloc(1, sizeof(*tt));
    if (!tt || gnutls_init(&tt->s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS |
                           GNUTLS_NO_SIGNAL) < 0) {
        snprintf(err, errlen, "out of memory");
        free(tt);
        return NULL;
    }
    int g = session_setup(tt->s, c, server, hostname ? hostname : "");
    if (!g) {
        gnutls_transport_set_int(tt->s, fd);
        gnutls_handshake_set_timeout(tt->s, timeout_ms ? timeout_ms
                                                       : GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
        do
            g = gnutls_handshake(tt->s);
        while (g == GNUTLS_E_INTERRUPTED);
    }
    if (g < 0) {
        handshake_failure(tt->s, g, server, c->psk, timeout_ms, err, errlen);
        if (g != GNUTLS_E_FATAL_ALERT_RECEIVED && g != GNUTLS_E_PREMATURE_TERMINATION &&
            g != GNUTLS_E_PULL_ERROR && g != GNUTLS_E_PUSH_ERROR)
            gnutls_alert_send_appropriate(tt->s, g);     /* the peer learns why */
        gnutls_deinit(tt->s);
        free(tt);
        return NULL;
    }
    tt->t = (struct transport){ .fd = fd, .read = tls_read, .writev = tls_writev,
                                .pending = tls_pending, .release = tls_release };
    describe_peer(tt, c, server);
    return &tt->t;
}

int tls_peek_is_tls(int fd, unsigned timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r;
    do
        r = poll(&p, 1, (int)timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return r < 0 ? -errno : -ETIMEDOUT;
    unsigned char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK);
    if (n <= 0)
        return n < 0 ? -errno : -EPIPE;
    return b == 0x16;           /* TLS record type 22: handshake */
}
