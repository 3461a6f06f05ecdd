/*
 * The destination's side of several connections per migration (multiconn.h,
 * docs/migration.md "Several connections"): the token a migration offers, the extra
 * connections that present it, and the main stream's waits for them. A data
 * connection that fails fails the migration: the main connection is shut down, so the
 * main receiver's next read fails and it removes what it built, after
 * multiconn_rx_close has shut down and waited for every extra connection.
 */
#include "migrate/multiconn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "migrate/migrate.h"
#include "util/clock.h"

struct multiconn_rx {
    char token[MULTICONN_TOKEN_LEN + 1];
    void *receiver;
    int main_fd;
    pthread_mutex_t lock;       /* the members below */
    pthread_cond_t cond;
    bool closed;
    unsigned active;            /* data connections inside migrate_receive_data */
    uint32_t count;             /* extra connections the source has; UINT32_MAX: unknown */
    int fd[MULTICONN_MAX];      /* by index; -1: none (any more) */
    bool used[MULTICONN_MAX], ended[MULTICONN_MAX];
    uint32_t marker[MULTICONN_MAX];
    int failed;
    char err[512];
    struct multiconn_rx *next;
};

static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct multiconn_rx *sessions;

struct multiconn_rx *multiconn_rx_open(void *receiver, int main_fd,
                                       char token[MULTICONN_TOKEN_LEN + 1])
{
    uint8_t b[MULTICONN_TOKEN_BYTES];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return NULL;
    struct multiconn_rx *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    multiconn_token_format(b, m->token);
    memcpy(token, m->token, sizeof(m->token));
    m->receiver = receiver;
    m->main_fd = main_fd;
    m->count = UINT32_MAX;
    for (unsigned i = 0; i < MULTICONN_MAX; i++)
        m->fd[i] = -1;
    pthread_mutex_init(&m->lock, NULL);
    cond_init_monotonic(&m->cond);
    pthread_mutex_lock(&sessions_lock);
    m->next = sessions;
    sessions = m;
    pthread_mutex_unlock(&sessions_lock);
    return m;
}

/*
 * An extra connection failed: the first failure wins. The main receiver learns it at
 * its next read (its reading side is shut down: it can still send its ERROR line to
 * the source), or at once if it waits for the extra connections. m->lock held.
 */
static void fail_locked(struct multiconn_rx *m, int rc, const char *msg)
{
    if (!m->failed) {
        m->failed = rc;
        snprintf(m->err, sizeof(m->err), "%s", msg);
        shutdown(m->main_fd, SHUT_RD);
    }
    pthread_cond_broadcast(&m->cond);
}

/* Is everything the main stream waits for there? (m->lock held) */
static bool delivered(struct multiconn_rx *m, uint32_t seq, bool end)
{
    unsigned n = 0;
    for (unsigned i = 1; i < MULTICONN_MAX; i++)
        if (m->used[i]) {
            n++;
            if (end ? !m->ended[i] : m->marker[i] < seq)
                return false;
        }
    return n == (m->count == UINT32_MAX ? 0 : m->count);
}

/* Has the main connection been shut down (watchdog, a failed data connection)? */
static bool main_gone(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int multiconn_rx_wait(struct multiconn_rx *m, const uint32_t *count, uint32_t seq, bool end,
                      char *err, size_t errlen)
{
    int rc = 0;
    /* An extra connection silent for the stall timeout fails it, as a main one would. */
    uint64_t until = mono_ns() + migrate_stall_timeout_ms() * 1000000ull;
    pthread_mutex_lock(&m->lock);
    if (count && (*count >= MULTICONN_MAX ||
                  (m->count != UINT32_MAX && m->count != *count))) {
        rc = -EPROTO;
        snprintf(err, errlen, "SYNC names %u extra connections (%s)", *count,
                 *count >= MULTICONN_MAX ? "too many" : "a different count than before");
    } else if (count) {
        m->count = *count;
        for (unsigned i = *count + 1; i < MULTICONN_MAX; i++)
            if (m->used[i] && !rc) {
                rc = -EPROTO;
                snprintf(err, errlen, "extra connection %u is beyond the %u announced", i, *count);
            }
    }
    while (!rc && !m->failed && !delivered(m, seq, end)) {
        uint64_t now = mono_ns();
        if (now >= until || main_gone(m->main_fd)) {
            rc = now >= until ? -ETIMEDOUT : -EPIPE;
            snprintf(err, errlen, now >= until ? "an extra data connection did not deliver "
                     "its pages within %u s" : "the main connection ended while waiting for "
                     "the extra data connections", migrate_stall_timeout_ms() / 1000);
            break;
        }
        uint64_t wake = now + 200000000ull < until ? now + 200000000ull : until;
        struct timespec ts = ns_timespec(wake);
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    if (!rc && m->failed) {
        rc = m->failed;
        snprintf(err, errlen, "%s", m->err);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

bool multiconn_rx_failed(struct multiconn_rx *m, char *err, size_t errlen)
{
    pthread_mutex_lock(&m->lock);
    bool f = m->failed != 0;
    if (f)
        snprintf(err, errlen, "%s", m->err);
    pthread_mutex_unlock(&m->lock);
    return f;
}

void multiconn_rx_close(struct multiconn_rx *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&sessions_lock);
    for (struct multiconn_rx **p = &sessions; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    pthread_mutex_unlock(&sessions_lock);
    pthread_mutex_lock(&m->lock);
    m->closed = true;
    for (unsigned i = 0; i < MULTICONN_MAX; i++)
        if (m->fd[i] >= 0)
            shutdown(m->fd[i], SHUT_RDWR);  /* their reads fail: they leave */
    while (m->active)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void on_marker(void *arg, uint32_t seq)
{
    struct multiconn_rx *m = ((void **)arg)[0];
    unsigned i = *(unsigned *)((void **)arg)[1];
    pthread_mutex_lock(&m->lock);
    m->marker[i] = seq;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* The session of token, entered as connection index; NULL with err if refused. */
static struct multiconn_rx *enter(const char *token, unsigned index, int fd, char *err,
                                  size_t errlen)
{
    struct multiconn_rx *m = NULL;
    pthread_mutex_lock(&sessions_lock);
    for (struct multiconn_rx *s = sessions; s && !m; s = s->next)
        if (!strcmp(s->token, token))
            m = s;
    if (!m) {
        snprintf(err, errlen, "refused: DATA names no migration in progress here "
                 "(an unknown or used token)");
    } else {
        pthread_mutex_lock(&m->lock);
        if (m->closed || m->used[index] || (m->count != UINT32_MAX && index > m->count)) {
            snprintf(err, errlen, "refused: DATA connection %u %s", index,
                     m->used[index] ? "is connected already" : "is not expected (any more)");
            pthread_mutex_unlock(&m->lock);
            m = NULL;
        } else {
            m->used[index] = true;
            m->fd[index] = fd;
            m->active++;
            pthread_mutex_unlock(&m->lock);
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    return m;
}

int migrate_receive_data(const char *token, unsigned index, struct transport *t,
                         char *err, size_t errlen)
{
    if (index < 1 || index >= MULTICONN_MAX) {
        snprintf(err, errlen, "refused: DATA connection %u out of range", index);
        return -EACCES;
    }
    struct multiconn_rx *m = enter(token, index, t->fd, err, errlen);
    if (!m)
        return -EACCES;
    void *arg[2] = { m, &index };
    int rc = restore_data_stream(m->receiver, t, on_marker, arg, err, errlen);
    pthread_mutex_lock(&m->lock);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof(msg), "extra data connection %u: %s", index, err);
        fail_locked(m, rc, msg);
    }
    m->ended[index] = !rc;
    m->fd[index] = -1;      /* its caller closes it: never shut down again */
    m->active--;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return rc;
}
