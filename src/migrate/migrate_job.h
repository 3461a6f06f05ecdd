/*
 * xkvmd's save, restore and migrate jobs (each on a thread of its own, answering on
 * the control connection it took over) and its listener for incoming migrations
 * (xkvmd --migrate-listen ADDR:PORT). Protocol: docs/control-api.md.
 */
#ifndef XKVM_MIGRATE_MIGRATE_JOB_H
#define XKVM_MIGRATE_MIGRATE_JOB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Start the job for a "save", "restore" or "migrate" request from the client on fd.
 * Returns an error reply (not detached) if the request is bad; otherwise NULL with
 * *detached set: the job dup'ed fd and answers there.
 */
struct json_object *migrate_job_start(struct json_object *req, const char *cmd, int fd,
                                      bool *detached);

/* Save, restore and migrate jobs and incoming migrations running now. */
unsigned migrate_jobs_running(void);

/* Listen for incoming migrations on "ADDR:PORT". The socket, or -errno with a message. */
int migrate_listen(const char *addrport, char *err, size_t errlen);
/* The listening socket is readable: take one connection and receive on a thread. */
void migrate_accept(int listen_fd);

#endif
