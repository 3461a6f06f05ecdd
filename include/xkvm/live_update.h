/*
 * The live-update image (docs/live-update.md): what an xkvmd hands the xkvmd it
 * exec's into, in a memfd, so that every domain carries on with its memory left in
 * place in the machine-memory fd.
 *
 *   header    32 bytes: magic "XKVMLU\r\n", u16 major, u16 minor, u32 flags,
 *             u64 body length (everything after the header), u64 reserved (0)
 *   records   u32 type; u32 instance; u64 length; body; zero padding to 8 bytes
 *
 * Little-endian. HOST comes first, END last; per domain (instance = domid) DOMAIN,
 * P2M, HVM_PARAMS, HVM_CONTEXT and DOMAIN_CONTEXT, in that order, HVM_CONTEXT in
 * Xen's hvm/save.h layout and DOMAIN_CONTEXT a domain context image (xkvm/ctx.h), as
 * in a migration stream. Nothing here is an internal structure of xkvmd: a newer
 * minor version may add record types (a reader rejects types it does not know
 * unless bit 31 marks them optional), a newer major version is refused outright.
 * xkvm_lu_check() validates a whole image before anything in it is used.
 */
#ifndef XKVM_LIVE_UPDATE_H
#define XKVM_LIVE_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The image version is xkvm's version. The test suite builds xkvmd-lu-next (a minor
 * bump that adds a record type) and xkvmd-lu-major (a major bump).
 */
#if defined(XKVM_LU_TEST_MAJOR)
#define XKVM_LU_MAJOR (XKVM_VERSION_MAJOR + 1)
#define XKVM_LU_MINOR 0
#elif defined(XKVM_LU_TEST_NEXT)
#define XKVM_LU_MAJOR XKVM_VERSION_MAJOR
#define XKVM_LU_MINOR (XKVM_VERSION_MINOR + 1)
#else
#define XKVM_LU_MAJOR XKVM_VERSION_MAJOR
#define XKVM_LU_MINOR XKVM_VERSION_MINOR
#endif

#define XKVM_LU_MAGIC       "XKVMLU\r\n"
#define XKVM_LU_HDR_SIZE    32u
#define XKVM_LU_RHDR_SIZE   16u
#define XKVM_LU_ALIGN       8u
#define XKVM_LU_MAX_IMAGE   (1ull << 30)    /* a reader refuses larger images */
#define XKVM_LU_MAX_DOMAINS 4096u
#define XKVM_LU_OPTIONAL    0x80000000u     /* type bit: readers may skip it */

enum xkvm_lu_rec_type {
    XKVM_LU_REC_HOST            = 0x01,     /* struct xkvm_lu_host */
    XKVM_LU_REC_FD              = 0x02,     /* instance: enum xkvm_lu_fd_role; s32 fd */
    XKVM_LU_REC_ARGV            = 0x03,     /* the daemon's arguments, NUL-separated */
    XKVM_LU_REC_DOMAIN          = 0x10,     /* JSON {"config": {...}, "paused": bool} */
    XKVM_LU_REC_P2M             = 0x11,     /* struct xkvm_lu_extent[] */
    XKVM_LU_REC_HVM_PARAMS      = 0x12,     /* struct xkvm_lu_hvm_param[] */
    XKVM_LU_REC_HVM_CONTEXT     = 0x13,     /* Xen HVM context blob */
    XKVM_LU_REC_DOMAIN_CONTEXT  = 0x14,     /* domain context image */
    XKVM_LU_REC_MEM_CHECKSUM    = 0x15,     /* u64 hash, u64 gfns left out[] (--verify-memory) */
    /* Added by the minor bump the test suite builds (xkvmd-lu-next). */
    XKVM_LU_REC_TEST_NEXT       = 0x20,     /* u64 magic, u64 nr_domains */
    XKVM_LU_REC_END             = 0xFFFFFFFFu & ~XKVM_LU_OPTIONAL,   /* 0x7FFFFFFF */
};

enum xkvm_lu_fd_role {
    XKVM_LU_FD_MACHINE_MEMORY   = 1,
    XKVM_LU_FD_CONTROL_LISTEN   = 2,
    XKVM_LU_FD_DOM0_LISTEN      = 3,
    XKVM_LU_FD_MIGRATE_LISTEN   = 4,
    XKVM_LU_FD_PIDFILE          = 5,
    XKVM_LU_FD_CLIENT           = 6,        /* the connection that asked: gets the answer */
    XKVM_LU_FD_OLD_BINARY       = 7,        /* the xkvmd to exec again on rollback */
    XKVM_LU_FD_ROLE_MAX         = 7,
};

/*
 * Optional (readers that do not know it skip it): when the old binary prepared the
 * image before pausing anything, CLOCK_MONOTONIC ns, u64 t_prebuild then u64
 * t_prebuilt. Instance 0, after HOST, at most once.
 */
#define XKVM_LU_REC_TIMES       (XKVM_LU_OPTIONAL | 0x04u)

#define XKVM_LU_HOST_VERIFY_MEMORY  0x1u    /* MEM_CHECKSUM records are present */
/*
 * A prebuild image (docs/live-update.md, "Beside"): written while every guest runs, for
 * a new xkvmd started beside this one to build the VMs from. Per domain only DOMAIN
 * and P2M; the HOST times are 0. The image written in the pause follows it.
 */
#define XKVM_LU_HOST_PREBUILD       0x2u

struct xkvm_lu_host {
    uint64_t nr_frames;         /* machine memory size in 4 KiB frames */
    uint64_t lu_region_mfn;     /* the reserved region the next xkvmd allocates from */
    uint64_t lu_region_nr;
    uint32_t nr_domains;
    uint32_t flags;             /* XKVM_LU_HOST_* */
    /* CLOCK_MONOTONIC ns (one clock for both binaries): the hand-over's phases. */
    uint64_t t_request;         /* the request arrived */
    uint64_t t_pausing;         /* the first domain was asked to pause */
    uint64_t t_paused;          /* the last vCPU parked */
    uint64_t t_saved;           /* the image is complete */
    uint64_t t_exec;            /* just before execve */
};

struct xkvm_lu_extent {
    uint64_t gfn;
    uint64_t mfn;
    uint64_t nr;
    uint32_t type;              /* 1 RAM, 4 SPECIAL (toolstack pages) */
    uint32_t pad;
};
#define XKVM_LU_FRAME_RAM       1u
#define XKVM_LU_FRAME_SPECIAL   4u

struct xkvm_lu_hvm_param {
    uint32_t index;
    uint32_t pad;
    uint64_t value;
};

/* ---- writing (into a growing buffer) ---- */

struct xkvm_lu_writer {
    uint8_t *buf;
    size_t len, cap;
    bool failed;                /* out of memory: every later call is a no-op */
};

void xkvm_lu_writer_init(struct xkvm_lu_writer *w, uint32_t flags);
void xkvm_lu_write(struct xkvm_lu_writer *w, uint32_t type, uint32_t instance,
                   const void *body, size_t len);
/* Append another writer's records (a domain's, serialised on its own thread). */
void xkvm_lu_append_records(struct xkvm_lu_writer *w, const struct xkvm_lu_writer *part);
/* END, and the header's length. 0, or -ENOMEM. */
int xkvm_lu_finish(struct xkvm_lu_writer *w);
void xkvm_lu_writer_release(struct xkvm_lu_writer *w);

/* ---- reading (untrusted: validate everything first) ---- */

struct xkvm_lu_domain {
    uint16_t domid;
    const char *config_json;    /* not NUL-terminated: config_len bytes */
    size_t config_len;
    const struct xkvm_lu_extent *extents;   /* unaligned-safe copy is the caller's */
    size_t nr_extents;
    const struct xkvm_lu_hvm_param *params;
    size_t nr_params;
    const void *hvm_ctx, *dom_ctx;
    size_t hvm_len, dom_len;
    bool has_checksum;
    uint64_t checksum;
    const uint64_t *checksum_skip;          /* gfns dom0 had mapped: not hashed */
    size_t nr_checksum_skip;
};

struct xkvm_lu_image {
    uint16_t major, minor;
    struct xkvm_lu_host host;
    int32_t fds[XKVM_LU_FD_ROLE_MAX + 1];   /* -1 where the image names none */
    const char *argv;           /* NUL-separated */
    size_t argv_len;
    unsigned nr_domains;
    struct xkvm_lu_domain *domains;         /* nr_domains entries, malloc'd */
    bool has_test_next;
    uint64_t t_prebuild, t_prebuilt;        /* TIMES, or 0 */
};

/*
 * Check an image of len bytes at buf (8-aligned) and index it: framing, padding,
 * version (same major, minor at most ours), record order and sizes, fd roles,
 * extents (inside machine memory, no frame twice, none in the reserved region, gfns
 * in range), domids unique, every domain complete, the domain context images
 * (xkvm_ctx_check_image). Pointers in *img point into buf. 0, or -EINVAL / -ENOMEM
 * with a message.
 */
int xkvm_lu_check(const void *buf, size_t len, struct xkvm_lu_image *img,
                  char *err, size_t errlen);
void xkvm_lu_image_release(struct xkvm_lu_image *img);

/* Does a binary of our version accept images of major.minor? (--lu-accepts) */
bool xkvm_lu_accepts(unsigned major, unsigned minor, char *why, size_t whylen);

#endif
