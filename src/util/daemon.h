/*
 * The skeleton every xkvm daemon (xkvmd, xkvm-consoled, xkvm-blkback, xkvm-xenstored)
 * stands on: the common options, the run directory, detaching, the pid file or lock,
 * the log, a listening UNIX socket and the termination signals. Each daemon keeps its
 * own options, its own order of start-up steps and its own main loop.
 *
 * Functions that a main() would return from give DAEMON_CONTINUE to carry on, or the
 * exit status to return (0 after --help, 2 after a bad option, 1 after an error).
 */
#ifndef XKVM_UTIL_DAEMON_H
#define XKVM_UTIL_DAEMON_H

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#define DAEMON_CONTINUE (-1)

/* The common options a daemon takes (struct daemon_cli.common). */
enum {
    DAEMON_OPT_RUNDIR     = 1 << 0,   /* -r, --rundir DIR */
    DAEMON_OPT_FOREGROUND = 1 << 1,   /* -f, --foreground */
    DAEMON_OPT_LOG        = 1 << 2,   /* -l, --log FILE */
    DAEMON_OPT_VERBOSE    = 1 << 3,   /* -v, --verbose */
    DAEMON_OPT_HELP       = 1 << 4,   /* -h, --help: usage on stdout, status 0 */
    DAEMON_OPT_VERSION    = 1 << 5,   /* --version: "NAME VERSION" on stdout, status 0 */
    DAEMON_OPT_OPERANDS   = 1 << 6,   /* arguments after the options are the daemon's */
};
/* What a dom0 service takes: --rundir, --foreground, --verbose, --help. */
#define DAEMON_OPTS_SERVICE \
    (DAEMON_OPT_RUNDIR | DAEMON_OPT_FOREGROUND | DAEMON_OPT_VERBOSE | DAEMON_OPT_HELP)
/* The getopt value of --version (the others are their short letters). */
#define DAEMON_OPTVAL_VERSION 0x1000

struct daemon_cli {
    const char *version;              /* for --version */
    unsigned common;                  /* DAEMON_OPT_* */
    const struct option *options;     /* the daemon's own, {0}-ended; NULL: none. Their
                                         values must not be r f l v h or 0x1000. */
    const char *shortopts;            /* their short letters, getopt style; NULL: none */
    /* One of the daemon's own options: DAEMON_CONTINUE or the status main returns. */
    int (*option)(int opt, const char *arg, void *ctx);
    void *ctx;
    void (*usage)(FILE *f);
};

struct daemon {
    const char *name;                 /* "xkvmd": messages and the log's ident */
    const char *logname;              /* the log in the run directory when detached */
    /* Filled by daemon_parse: */
    const char *rundir;               /* --rundir, else $XKVM_RUNDIR, else /run/xkvm */
    const char *logpath;              /* --log FILE, or NULL */
    bool foreground, verbose;
    int operand;                      /* argv index of the first operand */
    /* Filled by daemon_rundir: */
    char absdir[PATH_MAX];
    /* daemon_detach(DAEMON_WAIT_READY): the parent waits on this, else -1. */
    int ready_fd;
};

#define DAEMON_INIT(n, log) { .name = (n), .logname = (log), .ready_fd = -1 }

/*
 * Parse argv: the common options in cli->common and the daemon's own (cli->option).
 * Operands are a usage error unless DAEMON_OPT_OPERANDS (then dm->operand is the first).
 */
int daemon_parse(struct daemon *dm, const struct daemon_cli *cli, int argc, char **argv);

/*
 * daemon_parse, then daemon_rundir; a run directory refused is said on stderr
 * ("NAME: why") and is status 1.
 */
int daemon_begin(struct daemon *dm, const struct daemon_cli *cli, int argc, char **argv,
                 bool create_rundir);

/* --rundir if given (even empty), else the environment's; NULL or empty: the default. */
const char *daemon_rundir_choose(const char *opt, const char *env);

/*
 * The run directory holds guests' consoles and the sockets that control them: the
 * daemon's alone. NULL if a directory of this stat may be ours, else why not
 * (not a directory, another user's, world-writable or sticky).
 */
const char *daemon_rundir_refusal(const struct stat *st, uid_t euid);

/*
 * Make dm->rundir ours (created 0700 when create, refused when shared, tightened to
 * 0700 when group or others had access) and resolve it into dm->absdir. 0, or -1 with
 * why in err.
 */
int daemon_rundir(struct daemon *dm, bool create, char *err, size_t errlen);

/*
 * A file only root may read: created 0600 (an existing one is tightened), never
 * through a symlink, close-on-exec. flags: O_WRONLY | O_APPEND and the like. fd or -errno.
 */
int daemon_open_private(const char *path, int flags);

/*
 * Log (util/log.h) to --log FILE, else when detached to RUNDIR/LOGNAME (private, as
 * above), else to stderr; debug messages with --verbose.
 */
void daemon_open_log(struct daemon *dm);

/*
 * One instance per run directory: open RUNDIR/FILE (mode, never through a symlink)
 * and hold an exclusive lock on it. The lock follows the open file into a detached
 * child. wait: wait for the holder to exit (said once in the log); else another
 * holder is -EBUSY, with its pid (the file's first line) in err. fd, or -errno.
 */
int daemon_lock(struct daemon *dm, const char *file, mode_t mode, bool wait, char *err,
                size_t errlen);
/* Our pid into the locked file. */
void daemon_write_pid(int fd);

enum {
    DAEMON_WAIT_READY = 1 << 0,   /* the parent exits when the child says how it went */
    DAEMON_CHDIR_ROOT = 1 << 1,   /* the child works in / */
};
/*
 * Unless dm->foreground: fork; the child starts a session of its own with stdin,
 * stdout and stderr on /dev/null and gets DAEMON_CONTINUE. The parent gets its exit
 * status: at once 0, or with DAEMON_WAIT_READY once the child called daemon_ready
 * (0) or daemon_failed (1, the message on stderr; the child dying first is 1, pointing
 * at RUNDIR/LOGNAME). Foreground: DAEMON_CONTINUE.
 */
int daemon_detach(struct daemon *dm, unsigned flags);
/* Serving: let a waiting parent exit 0. */
void daemon_ready(struct daemon *dm);
/* Not starting: the log, and the waiting parent (or, in the foreground, stderr). */
void daemon_failed(struct daemon *dm, const char *msg);

/*
 * Listen on DIR/NAME, a stream socket created 0600 (under umask 0177: no moment in
 * which another user may connect), replacing a stale one: hold the lock first.
 * sock_flags: SOCK_NONBLOCK, SOCK_CLOEXEC. fd or -errno.
 */
int daemon_listen(const char *dir, const char *name, int sock_flags, int backlog);

/* SIGPIPE ignored; SIGTERM and SIGINT set daemon_stopping() (no SA_RESTART). */
void daemon_signals(void);
bool daemon_stopping(void);
/* The signals daemon_signals handles, for threads that should leave them to main. */
void daemon_stop_sigset(sigset_t *set);

#endif
