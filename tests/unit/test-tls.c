/*
 * The migration transport (util/transport.h, util/tls.h): the PSK file's parser, and
 * a TLS 1.3 PSK session over a socketpair carrying a stream writer's pages to a
 * stream reader (xkvm_stream_*_init_io) and a line back, the key checked: a different key, or an
 * identity the server does not know, fails the handshake on both ends. A peer that
 * stops reading fails a write once SO_SNDTIMEO runs out, TLS and plain alike.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "util/tls.h"
#include "util/transport.h"
#include "xkvm/stream.h"

HARNESS_MAIN_STATE("tls");

#define KEY32 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void test_psk_parse(void)
{
    struct tls_psk_entry e[4];
    unsigned n;
    char err[256];
    const char *ok = "# a comment\n\nalice:" KEY32 "\r\nbob:00112233445566778899AABBCCDDEEFF\n";
    REQUIRE(tls_psk_parse(ok, strlen(ok), e, 4, &n, err, sizeof(err)) == 0);
    CHECK_EQ(n, 2);
    CHECK(!strcmp(e[0].identity, "alice") && e[0].key_len == 32 && e[0].key[1] == 0x11 &&
          e[0].key[31] == 0xff);
    CHECK(!strcmp(e[1].identity, "bob") && e[1].key_len == 16 && e[1].key[15] == 0xff);
    static const struct { const char *text, *why; } bad[] = {
        { "", "no identity" },
        { "alice\n", "identity:hexkey" },
        { ":" KEY32, "identity:hexkey" },
        { "alice:0011", "16 to 64 bytes" },                   /* too short a key */
        { "alice:" KEY32 "0", "16 to 64 bytes" },              /* odd length */
        { "alice:" KEY32 KEY32 "00", "16 to 64 bytes" },       /* 65 bytes */
        { "alice:zz112233445566778899aabbccddeeff", "not hexadecimal" },
        { "alice:" KEY32 "\nalice:" KEY32, "line 2: identity 'alice' given twice" },
        { "al\x01ice:" KEY32, "unprintable" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_MSG(tls_psk_parse(bad[i].text, strlen(bad[i].text), e, 4, &n, err,
                                sizeof(err)) == -EINVAL, "accepted bad input %zu", i);
        CHECK_STR_CONTAINS(err, bad[i].why);
    }
    const char *five = "a:" KEY32 "\nb:" KEY32 "\nc:" KEY32 "\nd:" KEY32 "\ne:" KEY32 "\n";
    CHECK(tls_psk_parse(five, strlen(five), e, 4, &n, err, sizeof(err)) == -EINVAL);
    CHECK_STR_CONTAINS(err, "more than 4");
}

static char dir[] = "/tmp/xkvm-test-tls.XXXXXX";

static struct tls_creds *psk_creds(const char *name, const char *text)
{
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
    struct tls_creds *c = tls_creds_psk(path, err, sizeof(err));
    if (!c)
        harness_fail(__FILE__, __LINE__, "%s", err);
    return c;
}

struct server {
    struct tls_creds *c;
    int fd;
    struct transport *t;
    char err[1024];
    /* what the reader saw */
    int records;
    uint64_t pages;
    bool silent;            /* after the handshake, read nothing until hold_fd is */
    int hold_fd;
};

/* The destination's side: handshake, read the stream send_stream sends, answer. */
static void *server_thread(void *arg)
{
    struct server *s = arg;
    s->t = tls_open(s->c, s->fd, true, NULL, 5000, s->err, sizeof(s->err));
    if (!s->t)
        return NULL;
    if (s->silent) {
        char b;
        (void)!read(s->hold_fd, &b, 1);
        return NULL;
    }
    struct xkvm_stream_io io = transport_stream_io(s->t);
    struct xkvm_stream_reader r;
    struct xkvm_stream_record rec;
    if (xkvm_stream_reader_init_io(&r, &io, NULL))
        return NULL;
    while (s->records < 4 && xkvm_stream_next(&r, &rec) > 0)   /* what send_stream sends */
        s->records++;
    s->pages = r.info.nr_pages_data;
    xkvm_stream_reader_release(&r);
    transport_write_all(s->t, "DONE\n", 5);
    return NULL;
}

/* The start of a stream, `pages` distinct pages, through t. */
static int send_stream(struct transport *t, unsigned pages)
{
    struct xkvm_stream_io io = transport_stream_io(t);
    struct xkvm_stream_writer w;
    struct xkvm_stream_writer_opts o = { .limits = { .max_pfn = pages } };
    static uint8_t page[4096];
    if (xkvm_stream_writer_init_io(&w, &io, &o))
        return -1;
    int rc = xkvm_stream_write_static_data_end(&w);
    for (unsigned i = 0; i < pages && !rc; i++) {
        memset(page, (int)(i * 7 + 1), sizeof(page));
        rc = xkvm_stream_add_page(&w, i, page);
    }
    if (!rc)
        rc = xkvm_stream_flush_pages(&w);
    if (rc)
        harness_fail(__FILE__, __LINE__, "writer: %s", w.err.msg);
    xkvm_stream_writer_release(&w);
    return rc;
}

/* Handshake client c against server s over a socketpair; the client's transport. */
static struct transport *pair_up(struct server *s, struct tls_creds *c, pthread_t *th,
                                 int *cfd, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return NULL;
    s->fd = sv[0];
    *cfd = sv[1];
    pthread_create(th, NULL, server_thread, s);
    return tls_open(c, sv[1], false, "ignored-for-psk", 5000, err, errlen);
}

static void test_psk_session(void)
{
    REQUIRE(mkdtemp(dir));
    struct tls_creds *sc = psk_creds("server.psk", "other:" KEY32 "\nxkvm:" KEY32 "\n");
    struct tls_creds *cc = psk_creds("client.psk", "xkvm:" KEY32 "\n");
    REQUIRE(sc && cc);
    struct server s = { .c = sc };
    pthread_t th;
    int cfd;
    char err[1024] = "";
    struct transport *t = pair_up(&s, cc, &th, &cfd, err, sizeof(err));
    CHECK_MSG(t, "client handshake: %s", err);
    if (t) {
        CHECK_STR_CONTAINS(t->name, "TLS 1.3 psk");
        if (send_stream(t, 3000))       /* 12 MiB: many corked batches */
            shutdown(cfd, SHUT_RDWR);   /* failed (said so): the server must not wait */
        char line[16] = "";
        CHECK(transport_wait_readable(t, 5000) == 1);
        CHECK(transport_read(t, line, 5) == 5 && !memcmp(line, "DONE\n", 5));
    }
    pthread_join(th, NULL);
    CHECK_MSG(s.t, "server handshake: %s", s.err);
    CHECK_EQ(s.pages, 3000);
    CHECK_EQ(s.records, 4);         /* STATIC_DATA_END and three PAGE_DATA of 1024 */
    if (s.t) {
        CHECK_STR_CONTAINS(s.t->name, "identity xkvm");
        transport_release(s.t);
    }
    if (t)
        transport_release(t);
    close(cfd);
    close(s.fd);
    tls_creds_free(cc);
    tls_creds_free(sc);
}

/* Wrong key, unknown identity: both ends fail, neither reads a byte of stream. */
static void test_psk_refused(void)
{
    struct tls_creds *sc = psk_creds("server2.psk", "xkvm:" KEY32 "\n");
    static const char *const clients[] = {
        "xkvm:ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        "stranger:" KEY32 "\n",
    };
    REQUIRE(sc);
    for (int i = 0; i < 2; i++) {
        struct tls_creds *cc = psk_creds("client2.psk", clients[i]);
        REQUIRE(cc);
        struct server s = { .c = sc };
        pthread_t th;
        int cfd;
        char err[1024] = "";
        struct transport *t = pair_up(&s, cc, &th, &cfd, err, sizeof(err));
        CHECK_MSG(!t, "client %d: handshake succeeded", i);
        CHECK_STR_CONTAINS(err, "TLS handshake (psk)");
        close(cfd);         /* a client that got through would leave the server waiting */
        pthread_join(th, NULL);
        CHECK_MSG(!s.t, "server %d: handshake succeeded", i);
        CHECK_EQ(s.records, 0);
        CHECK_STR_CONTAINS(s.err, "TLS handshake (psk)");
        if (t)
            transport_release(t);
        if (s.t)
            transport_release(s.t);
        close(s.fd);
        tls_creds_free(cc);
    }
    tls_creds_free(sc);
}

/*
 * A peer that stops reading (the link gone silent): a write fails once the socket's
 * SO_SNDTIMEO runs out, with ETIMEDOUT, over TLS (GnuTLS's E_AGAIN, not retried) and
 * plain (EAGAIN) alike, instead of waiting for ever.
 */
static void test_send_timeout(void)
{
    struct tls_creds *sc = psk_creds("server3.psk", "xkvm:" KEY32 "\n");
    struct tls_creds *cc = psk_creds("client3.psk", "xkvm:" KEY32 "\n");
    int hold[2];
    REQUIRE(sc && cc && !pipe(hold));
    struct server s = { .c = sc, .silent = true, .hold_fd = hold[0] };
    pthread_t th;
    int cfd;
    char err[1024] = "";
    struct transport *t = pair_up(&s, cc, &th, &cfd, err, sizeof(err));
    CHECK_MSG(t, "client handshake: %s", err);
    static uint8_t big[8 << 20];        /* far more than the socketpair holds */
    struct timeval tmo = { .tv_sec = 1 };
    setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
    struct transport plain;
    transport_plain(&plain, cfd);
    for (int tls = 1; tls >= 0; tls--) {
        struct transport *w = tls ? t : &plain;
        if (!w)
            continue;
        errno = 0;
        CHECK_MSG(transport_write_all(w, big, sizeof(big)) < 0,
                  "%s: 8 MiB went to a peer that reads nothing", tls ? "TLS" : "plain");
        CHECK_EQ(errno, ETIMEDOUT);
    }
    (void)!write(hold[1], "x", 1);
    pthread_join(th, NULL);
    if (s.t)
        transport_release(s.t);
    if (t)
        transport_release(t);
    close(cfd);
    close(s.fd);
    close(hold[0]);
    close(hold[1]);
    tls_creds_free(cc);
    tls_creds_free(sc);
}

/* A PSK file others can read, or an x509 directory without its CA, is refused. */
static void test_creds_refused(void)
{
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/open.psk", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("xkvm:" KEY32 "\n", f);
    fclose(f);
    chmod(path, 0644);
    CHECK(!tls_creds_psk(path, err, sizeof(err)));
    CHECK_STR_CONTAINS(err, "chmod 600");
    CHECK(!tls_creds_x509(dir, err, sizeof(err)));
    CHECK_STR_CONTAINS(err, "ca-cert.pem");
}

int main(void)
{
    RUN_TEST(test_psk_parse);
    RUN_TEST(test_psk_session);
    RUN_TEST(test_psk_refused);
    RUN_TEST(test_send_timeout);
    RUN_TEST(test_creds_refused);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (strcmp(dir + strlen(dir) - 6, "XXXXXX"))
        (void)!system(cmd);
    HARNESS_EXIT();
}
