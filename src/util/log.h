/* Logging for xkvmd and the dom0 services: one line per message, with a timestamp. */
#ifndef XKVM_UTIL_LOG_H
#define XKVM_UTIL_LOG_H

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Log to `path` (appending), or to stderr when path is NULL. 0 or -errno. */
int log_open(const char *path, const char *ident, enum log_level max_level);
/* Log to fd, already open (taken over); fd < 0: stderr. */
void log_open_fd(int fd, const char *ident, enum log_level max_level);
struct logrot_limits;
/*
 * Rotate the log file at path (the one log_open or log_open_fd writes to) by
 * util/logrot.h's protocol within limits l; path NULL: no rotation.
 */
void log_rotate_at(const char *path, const struct logrot_limits *l);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
