/* The "altp2m" control command: the toolstack's HVMOP_altp2m and the monitor's requests. */
#ifndef XKVM_DAEMON_ALTP2M_COMMAND_H
#define XKVM_DAEMON_ALTP2M_COMMAND_H

#include <json-c/json.h>

struct domain;

/* Main thread: the request's "op" on d; the reply. */
struct json_object *altp2m_command(struct domain *d, struct json_object *req);

#endif
