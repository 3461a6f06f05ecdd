/*
 * xkvmd's save, restore and migrate jobs (each on a thread of its own, answering on
 * the control connection it took over) and, in incoming.c, its listener for incoming
 * migrations (xkvmd --migrate-listen ADDR:PORT) with the limits peers live under.
 * Protocol: docs/control-api.md.
 */
#ifndef XKVM_MIGRATE_MIGRATE_JOB_H
#define XKVM_MIGRATE_MIGRATE_JOB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Start the job for a "save", "restore" or "migrate" request from the client on fd;
 * *file_fd is the descriptor that came with the request (-1: none), which a save or
 * restore takes (setting it to -1). Returns an error reply (not detached) if the
 * request is bad; otherwise NULL with *detached set: the job dup'ed fd and answers there.
 */
struct json_object *migrate_job_start(struct json_object *req, const char *cmd, int fd,
                                      int *file_fd, bool *detached);

/*
 * migrate-cancel: stop the running migration of domain domid before its hand-over
 * (migrate.h, struct migrate_cancel). The reply: ok, ENOENT (none running), EBUSY (too late).
 */
struct json_object *migrate_cancel_domain(unsigned domid);

/* Save, restore and migrate jobs and incoming migrations running now. */
unsigned migrate_jobs_running(void);
/*
 * Run fn(arg) on a detached thread with every signal blocked (they belong to the main
 * loop and the vCPU threads). 0 or an errno.
 */
int migrate_start_thread(void *(*fn)(void *), void *arg);

/* ---- the transport (docs/migration.md, "Transport") ---- */

struct tls_creds;
/*
 * Credentials from xkvmd --migrate-tls-dir or --migrate-psk (taken): every migration
 * out and every one in goes through TLS 1.3 with them. NULL (the default): plain TCP,
 * which a listener accepts only with --migrate-insecure.
 */
void migrate_set_credentials(struct tls_creds *c);
struct tls_creds *migrate_credentials(void);
/* The source's handshake with the destination must end within this. */
#define MIGRATE_TLS_CONNECT_TIMEOUT_MS 30000u

/* ---- incoming.c: the listener and the limits peers live under ---- */

struct migrate_incoming_limits {
    uint64_t max_memory_mb;     /* one incoming domain at most; 0: the total */
    uint64_t max_total_mb;      /* all incoming domains at once; 0: a share of the machine */
    unsigned timeout_s;         /* a whole incoming migration; 0: the default */
};
/* Default total: this share of machine memory may be claimed by incoming migrations. */
#define MIGRATE_DEFAULT_TOTAL_PERCENT 50
/* An hour: a 16 GiB guest's first pass takes some 23 min over 100 Mbit/s. */
#define MIGRATE_DEFAULT_TIMEOUT_S 3600u

void migrate_incoming_configure(const struct migrate_incoming_limits *l);
/* Listen for incoming migrations on "ADDR:PORT". The socket, or -errno with a message. */
int migrate_listen(const char *addrport, char *err, size_t errlen);
/*
 * "migrate-receive" (xkvm migrate-receive, at the far end of xkvm migrate ssh://...):
 * receive on the stream socket the client passed (*file_fd, taken), under the same
 * limits as a network peer; the outcome ({"ok", "domid"} or the error) goes to the
 * client's connection fd, which is dup'ed (*detached). An error reply if it cannot start.
 * same_host: the source is an xkvmd on this host (xkvm migrate DOMAIN local:RUNDIR),
 * which passes its memory first (migrate/local_mem.h).
 */
struct json_object *migrate_receive_start(int client_fd, int *file_fd, bool same_host,
                                          bool *detached);
/* The listening socket is readable: take one connection and receive on a thread. */
void migrate_accept(int listen_fd);
/* Main loop, at least once a second: shut down peers past their deadlines. */
void migrate_incoming_watchdog(void);
unsigned migrate_incoming_running(void);

#endif
