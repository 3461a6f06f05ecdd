/*
 * The dom0 device interface: how dom0 services (xenstored, consoled, blkback) reach
 * guests through xkvmd, as Linux dom0 does through evtchn, gntdev and privcmd.
 * Documented in docs/dom0-interface.md.
 *
 * Transport: a SOCK_SEQPACKET UNIX socket at RUNDIR/XKVM_DOM0_SOCKET, mode 0600, for
 * root (or xkvmd's own user) only. One request per packet, one reply per request, in
 * order. Every message starts with struct xkvm_dom0_hdr; all integers are in host
 * byte order; every reserved field must be zero. File descriptors come with replies
 * as SCM_RIGHTS. Everything a service maps through a connection is released when the
 * connection closes.
 */
#ifndef XKVM_DOM0_H
#define XKVM_DOM0_H

#include <stdint.h>

#define XKVM_DOM0_SOCKET        "dom0.sock"
#define XKVM_DOM0_VERSION       1u
/* Longest message either side sends. */
#define XKVM_DOM0_MAX_MSG       256u
#define XKVM_DOM0_NAME_MAX      32u

enum xkvm_dom0_type {
    XKVM_DOM0_HELLO = 1,            /* hello -> hello_reply */
    XKVM_DOM0_BIND_EVTCHN,          /* evtchn -> no body, 2 fds: to_guest, from_guest */
    XKVM_DOM0_UNBIND_EVTCHN,        /* evtchn -> no body */
    XKVM_DOM0_MAP_GRANT,            /* map_grant -> map_reply, 1 fd: machine memory */
    XKVM_DOM0_UNMAP_GRANT,          /* unmap -> no body */
    XKVM_DOM0_MAP_FOREIGN,          /* map_foreign -> map_reply, 1 fd: machine memory */
    XKVM_DOM0_UNMAP_FOREIGN,        /* unmap -> no body */
    XKVM_DOM0_GET_DOMAIN_INFO,      /* domain_query -> domain_info */
    XKVM_DOM0_WATCH_DOMAINS,        /* no body -> no body, 1 fd: an eventfd that counts
                                       domain changes (create, shutdown, destroy): dom0's
                                       VIRQ_DOM_EXC. Once per connection. */
    XKVM_DOM0_TYPE_END
};

/* A reply carries the request's type with this bit set, and its seq. */
#define XKVM_DOM0_REPLY 0x80000000u

struct xkvm_dom0_hdr {
    uint32_t type;          /* enum xkvm_dom0_type, | XKVM_DOM0_REPLY in replies */
    uint32_t len;           /* whole message: header and body */
    uint32_t seq;           /* chosen by the service, echoed in the reply */
    int32_t error;          /* requests: 0; replies: 0 or a positive errno */
};

struct xkvm_dom0_hello {
    uint32_t version;       /* XKVM_DOM0_VERSION */
    uint32_t reserved;
    char name[XKVM_DOM0_NAME_MAX];  /* the service, printable, NUL-padded */
};

struct xkvm_dom0_hello_reply {
    uint32_t version;
    uint32_t page_size;
};

struct xkvm_dom0_evtchn {
    uint32_t domid;
    uint32_t port;          /* allocated by the guest, unbound, for remote domid 0 */
};

#define XKVM_DOM0_MAP_READONLY  1u

struct xkvm_dom0_map_grant {
    uint32_t domid;
    uint32_t ref;
    uint32_t flags;         /* XKVM_DOM0_MAP_* */
    uint32_t reserved;
};

struct xkvm_dom0_map_foreign {
    uint32_t domid;
    uint32_t flags;         /* XKVM_DOM0_MAP_* */
    uint64_t gfn;
};

/*
 * mmap(fd, offset = mfn * page_size) gives the frame; the fd is read-only if asked. The
 * fd is xkvmd's machine memory, where mfn is the frame's number; or, for a frame a
 * same-host migration left in another xkvmd's memory, that memfd, where mfn is the
 * frame's page in it.
 */
struct xkvm_dom0_map_reply {
    uint64_t mfn;
    uint32_t handle;        /* names the mapping in this connection */
    uint32_t reserved;
};

struct xkvm_dom0_unmap {
    uint32_t domid;
    uint32_t handle;
};

/* Xen's getdomaininfo: with NEXT, the first domain whose id is >= domid. */
#define XKVM_DOM0_INFO_NEXT     1u

struct xkvm_dom0_domain_query {
    uint32_t domid;
    uint32_t flags;         /* XKVM_DOM0_INFO_* */
};

enum xkvm_dom0_state {
    XKVM_DOM0_RUNNING = 0,
    XKVM_DOM0_PAUSED,
    XKVM_DOM0_SHUTDOWN,
};

struct xkvm_dom0_domain_info {
    uint32_t domid;
    uint32_t state;         /* enum xkvm_dom0_state */
    int32_t shutdown_reason;/* SHUTDOWN_* once shut down, else -1 */
    uint32_t vcpus;
    uint64_t memory_kb;
    uint64_t store_gfn;     /* HVM_PARAM_STORE_PFN */
    uint64_t console_gfn;   /* HVM_PARAM_CONSOLE_PFN */
    uint32_t store_evtchn;  /* HVM_PARAM_STORE_EVTCHN */
    uint32_t console_evtchn;/* HVM_PARAM_CONSOLE_EVTCHN */
    char name[64];          /* NUL-terminated */
};

#endif
