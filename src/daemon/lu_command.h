/* The "live-update" control command: the request parsed, then migrate/live_update.c. */
#ifndef XKVM_DAEMON_LU_COMMAND_H
#define XKVM_DAEMON_LU_COMMAND_H

#include <json-c/json.h>

/*
 * Main thread. On success it does not return: the new xkvmd answers the client on
 * client_fd. Otherwise the error reply, with every domain running as before.
 */
struct json_object *lu_command(struct json_object *req, int client_fd);

#endif
