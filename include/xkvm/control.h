/*
 * The xkvmd control protocol: the toolstack's (xkvm CLI's) API to the hypervisor.
 * Documented in docs/control-api.md; this header holds the names both sides use.
 *
 * Transport: a SOCK_STREAM UNIX socket at RUNDIR/XKVM_CONTROL_SOCKET. Each request is
 * one JSON object on one line; each reply is one JSON object on one line, in order.
 * A request: {"cmd": NAME, ...arguments}. A reply: {"ok": true, ...results} or
 * {"ok": false, "error": "human readable text", "errno": "ESRCH"}.
 */
#ifndef XKVM_CONTROL_H
#define XKVM_CONTROL_H

#define XKVM_CONTROL_SOCKET     "xkvmd.sock"
#define XKVM_PIDFILE            "xkvmd.pid"
#define XKVM_LOGFILE            "xkvmd.log"
/* Per-domain console log: the PV console ring, written by xkvm-consoled. */
#define XKVM_CONSOLE_LOG_FMT    "console-%u.log"
/* Per-domain hypervisor-console log (console_io, port 0xE9), written by xkvmd:
 * Xen's `xl dmesg` lines for the guest, "(dN) text". */
#define XKVM_DMESG_LOG_FMT      "dmesg-%u.log"
#define XKVM_RUNDIR_ENV         "XKVM_RUNDIR"
/* The build's run directory (meson option rundir, -DXKVM_RUNDIR_DEFAULT=...). */
#ifndef XKVM_RUNDIR_DEFAULT
#define XKVM_RUNDIR_DEFAULT     "/run/xkvm"
#endif

/* Longest request line xkvmd accepts; longer ones are rejected and the peer dropped. */
#define XKVM_CONTROL_MAX_LINE   (64 * 1024)

/*
 * Commands (field "cmd") and their arguments:
 *   "create"   config: {name, memory_mb, vcpus, kernel (absolute path), cmdline,
 *                       on_poweroff, on_reboot, on_crash ("destroy"|"preserve"|"restart")}
 *              start_paused: bool (optional)
 *              -> {domid}
 *   "list"     -> {domains: [{domid, name, state, shutdown_reason, memory_kb, vcpus}]}
 *              state: "running" | "paused" | "shutdown"
 *              shutdown_reason: null | "poweroff" | "reboot" | "suspend" | "crash" | "watchdog"
 *   "info"     -> {version, machine_memory_kb, free_memory_kb, xen_free_kb, nr_domains,
 *                  kvm_module}
 *   "pause"    domid -> {}
 *   "unpause"  domid -> {}
 *   "destroy"  domid -> {}
 *   "console"  domid -> {path}          the console log to follow
 *   "dmesg"    domid -> {path}          the hypervisor-console log
 *   "dmesg-clear" domid, size, inode -> {}  drop what `xkvm dmesg -c` printed
 *   "shutdown" domid, reason ("poweroff"|"reboot") -> {}  ask the guest (control/shutdown)
 *   "sysrq"    domid, key -> {}         control/sysrq
 *   "ping"     -> {pid}
 */

#endif
