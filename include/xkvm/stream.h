/*
 * Migration and save streams: the libxc migration stream (Xen's
 * docs/specs/libxc-migration-stream, version 3) for x86 HVM guests, plus xkvm's
 * extension records. Layout, rules and the choices made: docs/stream.md.
 *
 *   image header   24 bytes, big-endian: marker, "XENF", version 3, options
 *   domain header  16 bytes: type (x86 HVM), page_shift 12, xen major/minor
 *   records        u32 type; u32 body_length; body; zero padding to 8 bytes
 *
 * Domain header and records are little-endian (the options' endianness bit is 0).
 * Everything a reader returns has been validated as untrusted input first:
 * framing, lengths (capped before anything is allocated or read), padding,
 * record order, page counts, pfn limits, the HVM context blob, the domain context
 * image. No KVM here.
 */
#ifndef XKVM_STREAM_H
#define XKVM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---- Stream layout ----------------------------------------------------------- */

#define XKVM_STREAM_MARKER          0xFFFFFFFFFFFFFFFFull
#define XKVM_STREAM_ID              0x58454E46u     /* "XENF" */
#define XKVM_STREAM_VERSION         3u              /* written; 2 and 3 are read */
#define XKVM_STREAM_OPT_BIG_ENDIAN  0x0001u         /* options bit 0 */
#define XKVM_STREAM_IHDR_SIZE       24u
#define XKVM_STREAM_DHDR_SIZE       16u
#define XKVM_STREAM_RHDR_SIZE       8u
#define XKVM_STREAM_ALIGN           8u

#define XKVM_STREAM_DOMAIN_X86_PV   1u              /* recognised, not supported */
#define XKVM_STREAM_DOMAIN_X86_HVM  2u
#define XKVM_STREAM_PAGE_SHIFT      12u
#define XKVM_STREAM_PAGE_SIZE       4096u

enum xkvm_stream_rec_type {
    XKVM_STREAM_REC_END                 = 0x00,
    XKVM_STREAM_REC_PAGE_DATA           = 0x01,
    XKVM_STREAM_REC_X86_PV_INFO         = 0x02,
    XKVM_STREAM_REC_X86_PV_P2M_FRAMES   = 0x03,
    XKVM_STREAM_REC_X86_PV_VCPU_BASIC   = 0x04,
    XKVM_STREAM_REC_X86_PV_VCPU_EXTENDED = 0x05,
    XKVM_STREAM_REC_X86_PV_VCPU_XSAVE   = 0x06,
    XKVM_STREAM_REC_SHARED_INFO         = 0x07,
    XKVM_STREAM_REC_X86_TSC_INFO        = 0x08,
    XKVM_STREAM_REC_HVM_CONTEXT         = 0x09,
    XKVM_STREAM_REC_HVM_PARAMS          = 0x0A,
    XKVM_STREAM_REC_TOOLSTACK           = 0x0B,
    XKVM_STREAM_REC_X86_PV_VCPU_MSRS    = 0x0C,
    XKVM_STREAM_REC_VERIFY              = 0x0D,
    XKVM_STREAM_REC_CHECKPOINT          = 0x0E,
    XKVM_STREAM_REC_CHECKPOINT_DIRTY_PFN_LIST = 0x0F,
    XKVM_STREAM_REC_STATIC_DATA_END     = 0x10,
    XKVM_STREAM_REC_X86_CPUID_POLICY    = 0x11,
    XKVM_STREAM_REC_X86_MSR_POLICY      = 0x12,

    /*
     * xkvm extensions. Mandatory (bit 31 clear): a restorer that skipped them
     * would resume a guest whose event channels, grants and xenstore connection
     * are gone, so one that does not know them must fail, as the spec requires of
     * unknown mandatory records. Taken from the top of the mandatory range
     * ("XK" = 0x584B), far from the low numbers Xen allocates next.
     */
    XKVM_STREAM_REC_XKVM_BASE           = 0x7F584B00,
    XKVM_STREAM_REC_DOMAIN_CONTEXT      = 0x7F584B01,   /* src/ctx image */
    XKVM_STREAM_REC_XENSTORE_STATE      = 0x7F584B02,   /* designs/xenstore-migration */
    XKVM_STREAM_REC_DOMAIN_CONFIG       = 0x7F584B03,   /* JSON: domid + config (static) */
    XKVM_STREAM_REC_LOCAL_MEMORY        = 0x7F584B04,   /* same-host: RAM runs in place */
    /* 0x7F584B05, 0x7F584B06: POSTCOPY_MISSING, POSTCOPY_DONE (xkvm/postcopy.h) */
    XKVM_STREAM_REC_COMPRESSED          = 0x7F584B07,   /* a state record, compressed */
};

/*
 * COMPRESSED (live migration to a destination that offers it, docs/stream.md
 * "COMPRESSED"): one of the state records the source writes in the pause
 * (HVM_CONTEXT, DOMAIN_CONTEXT, XENSTORE_STATE), its body compressed. Body,
 * little-endian: u32 type (the record it holds), u32 length (that record's body
 * length), u8 method, u8 reserved[3] = 0, then the compressed bytes to the body's end.
 * A reader hands out the record it holds, checked as if it had come plain.
 */
#define XKVM_STREAM_COMPRESSED_HDR      12u
#define XKVM_STREAM_COMPRESS_LZ4        1u      /* one LZ4 block (liblz4's format) */
/* Whether a record of this type may travel compressed. */
bool xkvm_stream_compressible(uint32_t type);

/*
 * LOCAL_MEMORY (same-host migration only, docs/migration.md "Same-host migration";
 * docs/stream.md): the domain's RAM stays where it is, in memfds the source passed
 * beside the stream (SCM_RIGHTS, before the stream's first byte). Body, little-endian:
 * u32 nr_fds (the memfds passed), u32 nr_runs, then nr_runs runs.
 */
struct xkvm_stream_local_run {
    uint64_t gfn;           /* first gfn of the run */
    uint64_t frame;         /* its first page in memfd fd_index (offset / 4096) */
    uint32_t count;         /* pages, > 0 */
    uint32_t fd_index;      /* < nr_fds */
};
#define XKVM_STREAM_LOCAL_FDS_MAX   16
/* Run i of a validated LOCAL_MEMORY record (i < the record's nr_runs). */
struct xkvm_stream_record;
void xkvm_stream_local_run_get(const struct xkvm_stream_record *rec, uint32_t i,
                               struct xkvm_stream_local_run *run);
/* Bit 31 set: optional record; a reader that does not know it skips it. */
#define XKVM_STREAM_REC_OPTIONAL    0x80000000u
/*
 * Live migration only (optional, empty): "answer when you have read up to here". The
 * destination says SYNCED on its back channel; the source pauses the guest only once
 * the destination has caught up, so the downtime never includes a backlog.
 */
#define XKVM_STREAM_REC_SYNC        0xFF584B10u

/* PAGE_DATA pfn entries: bits 63-60 page type, 59-52 reserved, 51-0 pfn. */
#define XKVM_STREAM_PFN_MASK        ((1ull << 52) - 1)
#define XKVM_STREAM_PFN_RSVD_MASK   (((1ull << 60) - 1) & ~XKVM_STREAM_PFN_MASK)
#define XKVM_STREAM_PFN_TYPE_SHIFT  60
enum xkvm_stream_page_type {            /* XEN_DOMCTL_PFINFO_* >> 28 */
    XKVM_STREAM_PAGE_NORMAL = 0x0,      /* NOTAB: page_size bytes of data follow */
    /* 0x1-0x4, 0x9-0xC: PV page tables, rejected in HVM streams; 0x5-0x8 reserved */
    XKVM_STREAM_PAGE_BROKEN = 0xD,      /* no data */
    XKVM_STREAM_PAGE_XALLOC = 0xE,      /* allocate only, no data: a zero page */
    XKVM_STREAM_PAGE_XTAB   = 0xF,      /* invalid pfn (not RAM any more), no data */
};

/* ---- Limits (untrusted input never allocates beyond these) ------------------- */

#define XKVM_STREAM_BATCH_MAX       1024u   /* pfns per PAGE_DATA (libxc's batch) */
#define XKVM_STREAM_PAGE_DATA_MAX \
    (8u + 8u * XKVM_STREAM_BATCH_MAX + XKVM_STREAM_PAGE_SIZE * XKVM_STREAM_BATCH_MAX)
#define XKVM_STREAM_RECORD_MAX      (16u << 20)     /* any body, default cap */
#define XKVM_STREAM_MAX_VCPUS       1024u           /* HVM context instances */

struct xkvm_stream_limits {
    uint64_t max_pfn;           /* pfns must be < this; 0: 2^52 */
    uint32_t max_vcpus;         /* per-vCPU HVM context instances < this; 0: 128 */
    uint32_t record_max;        /* body length cap; 0 or larger: XKVM_STREAM_RECORD_MAX */
};

/* ---- Errors ------------------------------------------------------------------ */

enum xkvm_stream_errcode {
    XKVM_STREAM_OK = 0,
    XKVM_STREAM_ERR_IO,             /* read/write failed (sys_errno) */
    XKVM_STREAM_ERR_TRUNCATED,      /* input ended inside a header or record */
    XKVM_STREAM_ERR_MARKER,         /* image header marker */
    XKVM_STREAM_ERR_ID,             /* image header id */
    XKVM_STREAM_ERR_VERSION,        /* image version not 2 or 3 */
    XKVM_STREAM_ERR_ENDIAN,         /* big-endian stream */
    XKVM_STREAM_ERR_DOMAIN,         /* domain type or page shift */
    XKVM_STREAM_ERR_RESERVED,       /* reserved field or bits not zero */
    XKVM_STREAM_ERR_PADDING,        /* non-zero padding byte */
    XKVM_STREAM_ERR_TOO_LARGE,      /* length over the cap for its type */
    XKVM_STREAM_ERR_UNKNOWN_TYPE,   /* unknown mandatory record type */
    XKVM_STREAM_ERR_UNSUPPORTED,    /* known type, not valid in this stream */
    XKVM_STREAM_ERR_BAD_LENGTH,     /* length does not fit the record layout */
    XKVM_STREAM_ERR_BAD_VALUE,      /* field value out of range */
    XKVM_STREAM_ERR_ORDER,          /* record in a place the order rules forbid */
    XKVM_STREAM_ERR_DUPLICATE,      /* once-per-stream record seen twice */
    XKVM_STREAM_ERR_MISSING,        /* END before a required record */
    XKVM_STREAM_ERR_PFN_RANGE,      /* pfn >= limit */
    XKVM_STREAM_ERR_PFN_DUPLICATE,  /* pfn twice in one PAGE_DATA */
    XKVM_STREAM_ERR_PAGE_TYPE,      /* reserved or PV page type */
    XKVM_STREAM_ERR_HVM_CONTEXT,    /* HVM context blob invalid (reason says why) */
    XKVM_STREAM_ERR_DOMAIN_CONTEXT, /* domain context image invalid */
    XKVM_STREAM_ERR_COMPAT,         /* writer: extension record in compat mode */
    XKVM_STREAM_ERR_AFTER_END,      /* writer: record after END */
    XKVM_STREAM_ERR_NOMEM,
    XKVM_STREAM_ERR_MISALIGNED,     /* buffer reader: buffer not 8-byte aligned */
    XKVM_STREAM_ERR_ARG,            /* caller error (bad option/argument) */
};

struct xkvm_stream_error {
    enum xkvm_stream_errcode code;
    uint64_t offset;                /* of the header/record (or entry) at fault */
    bool type_known;                /* a record type applies */
    uint32_t type;
    int sys_errno;                  /* ERR_IO */
    char reason[256];
    char msg[400];                  /* "offset 48, record PAGE_DATA (0x1): <reason>" */
};

const char *xkvm_stream_errcode_name(enum xkvm_stream_errcode code);
/* "PAGE_DATA", ..., "DOMAIN_CONTEXT"; NULL for unknown types. */
const char *xkvm_stream_rec_name(uint32_t type);

/* ---- Reading ----------------------------------------------------------------- */

struct xkvm_stream_record {
    uint64_t offset;                /* of the record header in the stream */
    uint32_t type;
    uint32_t length;                /* body length, padding excluded */
    const uint8_t *body;            /* 8-byte aligned; valid until the next call */
    bool skipped;                   /* unknown optional record: validated framing only */
    uint32_t compressed_length;     /* came in a COMPRESSED record of this body length; 0: plain */
    /*
     * PAGE_DATA from a reader that defers page contents: the page bytes still to be
     * read with xkvm_stream_read_pages (body holds the count and the pfns only). 0
     * otherwise.
     */
    uint32_t pages_pending;
};

/* Bookkeeping the reader (and writer) keeps; also the verify summary. */
struct xkvm_stream_info {
    uint32_t version;               /* image header */
    uint32_t domain_type;
    uint32_t xen_major, xen_minor;
    uint64_t nr_records;            /* END included */
    uint64_t nr_pfns;               /* PAGE_DATA entries */
    uint64_t nr_pages_data;         /* entries that carried page contents */
    uint64_t nr_pages_zero;         /* XALLOC entries */
    uint64_t bytes;                 /* stream bytes consumed (END included) */
    uint32_t nr_compressed;         /* records that came (or went) COMPRESSED */
};

struct xkvm_stream_state;           /* order rules, shared by reader and writer */

/*
 * Where an fd reader's bytes come from and an fd writer's go: read(2) and writev(2)
 * on the fd unless a transport (a TLS session) gives its own, which behave the same
 * way (-1 with errno, 0 at the end).
 */
struct xkvm_stream_io {
    ssize_t (*read)(void *ctx, void *buf, size_t len);
    ssize_t (*writev)(void *ctx, const struct iovec *iov, int iovcnt);
    void *ctx;
};

struct xkvm_stream_reader {
    /* source */
    const uint8_t *buf;             /* buffer reader */
    size_t size;
    int fd;                         /* fd reader, -1 for buffers */
    struct xkvm_stream_io io;       /* fd reader: NULL members: read(2) on fd */
    uint8_t *rbuf;                  /* fd reader: current record */
    size_t rcap;
    uint8_t *zbuf;                  /* the record a COMPRESSED one held */
    uint64_t pos;                   /* stream offset of the next byte */
    struct xkvm_stream_limits limits;
    struct xkvm_stream_info info;
    struct xkvm_stream_state *st;
    bool headers_done, ended, failed;
    bool defer_pages;               /* xkvm_stream_reader_defer_pages */
    uint64_t pages_left;            /* page bytes of the last PAGE_DATA not yet read */
    struct xkvm_stream_error err;
};

/*
 * A reader over a complete buffer (8-byte aligned: malloc'd memory is; tests and
 * fuzzing) or over an fd whose bytes arrive as they come (live migration; reads
 * block, EINTR is retried, the fd stays the caller's). limits NULL: defaults.
 * 0, or -1 with r->err (MISALIGNED, NOMEM).
 */
int xkvm_stream_reader_init_buffer(struct xkvm_stream_reader *r, const void *buf,
                                   size_t size, const struct xkvm_stream_limits *limits);
int xkvm_stream_reader_init_fd(struct xkvm_stream_reader *r, int fd,
                               const struct xkvm_stream_limits *limits);
/* An fd reader whose bytes come through io (a transport), not read(2). */
int xkvm_stream_reader_init_io(struct xkvm_stream_reader *r, const struct xkvm_stream_io *io,
                               const struct xkvm_stream_limits *limits);
void xkvm_stream_reader_release(struct xkvm_stream_reader *r);
/*
 * Change the cap on record bodies from the next record on (0: the default,
 * XKVM_STREAM_RECORD_MAX): a receiver keeps it low until it has admitted the peer.
 */
void xkvm_stream_reader_set_record_max(struct xkvm_stream_reader *r, uint32_t record_max);

/*
 * One copy on the receiving side (docs/stream.md, "Reading page data in place"): with
 * defer on, next() returns a PAGE_DATA record after reading and validating its count
 * and pfn array only (rec->pages_pending says how many page bytes follow); the caller
 * decides where each page goes and reads the contents there with
 * xkvm_stream_read_pages, in stream order, all of them before the next next().
 */
void xkvm_stream_reader_defer_pages(struct xkvm_stream_reader *r, bool on);
/*
 * Post-copy recovery (docs/migration.md "Recovering a post-copy"): this new stream
 * continues a post-copy tail, so after its headers only PAGE_DATA and POSTCOPY_DONE
 * are accepted, as after END and POSTCOPY_MISSING. Call before the first record.
 */
void xkvm_stream_reader_postcopy_tail(struct xkvm_stream_reader *r);
/*
 * Read the next page bytes of the current PAGE_DATA into iov (total a multiple of
 * 4096, at most what is pending). 0, or -1 with r->err (TRUNCATED, IO; sticky).
 */
int xkvm_stream_read_pages(struct xkvm_stream_reader *r, const struct iovec *iov, int iovcnt);
/*
 * The same for a caller that moves the bytes itself (restore.c: splice(2) from the
 * socket into the memfd): move(ctx, n) moves up to n bytes of the stream to where
 * they go and returns how many, 0 at the end of the stream, -1 with errno. An fd
 * reader whose io reads the descriptor itself only (no buffering, no TLS). 0 or -1.
 */
int xkvm_stream_read_pages_by(struct xkvm_stream_reader *r, size_t len,
                              ssize_t (*move)(void *ctx, size_t len), void *ctx);

/*
 * Read and check the image and domain headers (done by the first next() if not
 * called). 0 or -1 with r->err.
 */
int xkvm_stream_read_headers(struct xkvm_stream_reader *r);

/*
 * Next record, fully validated, END included. 1 with *rec filled, 0 after END has
 * been returned (bytes after END are not read), -1 on error (r->err, sticky).
 */
int xkvm_stream_next(struct xkvm_stream_reader *r, struct xkvm_stream_record *rec);

/* Read and validate a whole stream in a buffer. 0 or -1 with err. */
int xkvm_stream_verify(const void *buf, size_t size, const struct xkvm_stream_limits *limits,
                       struct xkvm_stream_info *info, struct xkvm_stream_error *err);

/* ---- Decoding validated records ---------------------------------------------- */

struct xkvm_stream_page {
    uint64_t pfn;
    unsigned type;                  /* enum xkvm_stream_page_type */
    const void *data;               /* page contents, NULL for types without data and
                                     * for a record whose pages are pending */
};
struct xkvm_stream_page_iter {
    const uint8_t *pfns, *data;
    uint32_t count, i;
};
/* Iterate the entries of a validated PAGE_DATA record. */
void xkvm_stream_page_iter_init(struct xkvm_stream_page_iter *it,
                                const struct xkvm_stream_record *rec);
bool xkvm_stream_page_next(struct xkvm_stream_page_iter *it, struct xkvm_stream_page *pg);

struct xkvm_stream_tsc_info {
    uint32_t mode;                  /* 0 default, 1 always emulate, 2 never emulate */
    uint32_t khz;
    uint64_t nsec;
    uint32_t incarnation;
};
void xkvm_stream_decode_tsc_info(const struct xkvm_stream_record *rec,
                                 struct xkvm_stream_tsc_info *tsc);

struct xkvm_stream_hvm_param {
    uint64_t index;                 /* < HVM_NR_PARAMS, no duplicates */
    uint64_t value;
};
/* Entries of a validated HVM_PARAMS record; returns the count. */
uint32_t xkvm_stream_hvm_params_count(const struct xkvm_stream_record *rec);
void xkvm_stream_hvm_param_get(const struct xkvm_stream_record *rec, uint32_t i,
                               struct xkvm_stream_hvm_param *p);

/* ---- Writing ----------------------------------------------------------------- */

enum xkvm_stream_compat {
    XKVM_STREAM_COMPAT_NONE = 0,    /* xkvm's full stream, extensions included */
    XKVM_STREAM_COMPAT_XEN_4_17,    /* plain v3 stream: no extension records */
};
/* "xen-4.17" -> XEN_4_17, "none"/"xkvm" -> NONE; -1 if unknown. */
int xkvm_stream_compat_parse(const char *s);

struct xkvm_stream_writer_opts {
    enum xkvm_stream_compat compat;
    uint32_t xen_major, xen_minor;  /* domain header; 0/0: 4.17 */
    uint32_t batch;                 /* pages per PAGE_DATA, 1..1024; 0: 1024 */
    bool skip_zero;                 /* zero pages never sent with data: XALLOC */
    /*
     * Pages are referenced, not copied, until their PAGE_DATA record is written (at
     * the latest on flush): the caller keeps them mapped. What a page holds when the
     * record is written is what goes out (live migration resends what changes).
     */
    bool reference_pages;
    /*
     * The state records (xkvm_stream_compressible) go as COMPRESSED where that is
     * smaller. Only for a reader that said it reads them (migrate.h, READY's
     * MIGRATE_FEATURE_LZ4): an older xkvm refuses the record. Not with a compat mode.
     */
    bool compress_state;
    struct xkvm_stream_limits limits; /* what the records are checked against */
};

struct xkvm_stream_writer {
    int fd;                         /* -1: buffer */
    struct xkvm_stream_io io;       /* fd writer: NULL members: writev(2) on fd */
    uint8_t *buf;                   /* buffer sink */
    size_t len, cap;
    struct xkvm_stream_writer_opts opts;
    struct xkvm_stream_info info;
    struct xkvm_stream_state *st;
    uint8_t *batch;                 /* pending PAGE_DATA: header, pfns, pages */
    const uint8_t **refs;           /* reference_pages: the pending pages */
    struct iovec *iov;              /* reference_pages: scratch for writev */
    uint32_t nr_batch, nr_batch_data;
    uint64_t *sent;                 /* skip_zero: bitmap of pfns sent with data */
    bool headers_done, ended, failed;
    struct xkvm_stream_error err;
};

/* opts NULL: defaults. 0 or -1 with w->err (ARG, NOMEM). */
int xkvm_stream_writer_init_fd(struct xkvm_stream_writer *w, int fd,
                               const struct xkvm_stream_writer_opts *opts);
/* An fd writer whose bytes go through io (a transport), not writev(2). */
/* The writer's side of xkvm_stream_reader_postcopy_tail. */
void xkvm_stream_writer_postcopy_tail(struct xkvm_stream_writer *w);
int xkvm_stream_writer_init_io(struct xkvm_stream_writer *w, const struct xkvm_stream_io *io,
                               const struct xkvm_stream_writer_opts *opts);
int xkvm_stream_writer_init_buffer(struct xkvm_stream_writer *w,
                                   const struct xkvm_stream_writer_opts *opts);
void xkvm_stream_writer_release(struct xkvm_stream_writer *w);
/* Buffer sink: the bytes so far / take them (free()); the writer keeps nothing. */
const uint8_t *xkvm_stream_writer_data(const struct xkvm_stream_writer *w, size_t *len);
void *xkvm_stream_writer_take(struct xkvm_stream_writer *w, size_t *len);

/*
 * Every call below checks what it writes exactly as the reader would (the same
 * code), so the writer never emits a stream its reader rejects. 0, or -1 with
 * w->err (sticky). Image and domain headers go out with the first record.
 */
int xkvm_stream_write_record(struct xkvm_stream_writer *w, uint32_t type,
                             const void *body, uint32_t length);
int xkvm_stream_write_static_data_end(struct xkvm_stream_writer *w);
/*
 * Queue one page (data: 4096 bytes) for PAGE_DATA; a record goes out every
 * `batch` pages and on flush. With skip_zero, an all-zero page whose pfn has
 * never been sent with data in this stream goes out as XALLOC without data;
 * once sent with data, a page always carries data (it may have to overwrite).
 */
int xkvm_stream_add_page(struct xkvm_stream_writer *w, uint64_t pfn, const void *data);
/* Queue a pfn of a type without data (XTAB, XALLOC, BROKEN). */
int xkvm_stream_add_pfn(struct xkvm_stream_writer *w, uint64_t pfn, unsigned type);
int xkvm_stream_flush_pages(struct xkvm_stream_writer *w);
int xkvm_stream_write_tsc_info(struct xkvm_stream_writer *w,
                               const struct xkvm_stream_tsc_info *tsc);
int xkvm_stream_write_hvm_params(struct xkvm_stream_writer *w,
                                 const struct xkvm_stream_hvm_param *p, uint32_t count);
int xkvm_stream_write_hvm_context(struct xkvm_stream_writer *w, const void *blob, uint32_t len);
/* Extensions: ERR_COMPAT in compat mode. */
int xkvm_stream_write_domain_context(struct xkvm_stream_writer *w, const void *img, uint32_t len);
int xkvm_stream_write_xenstore_state(struct xkvm_stream_writer *w, const void *blob, uint32_t len);
int xkvm_stream_write_domain_config(struct xkvm_stream_writer *w, const char *json, uint32_t len);
#define XKVM_STREAM_CONFIG_MAX      (256u << 10)
/* Flushes pending pages, writes END. */
int xkvm_stream_write_end(struct xkvm_stream_writer *w);

/* ---- HVM context blob (Xen's public/hvm/save.h layout) ------------------------ */

/*
 * A sequence of entries {u16 typecode; u16 instance; u32 length; data[length]}
 * with no padding, HEADER first and END (0/0/0) last. Lengths are checked
 * against Xen's struct sizes; CPU_XSAVE and CPU_MSR are variable.
 */
enum xkvm_hvmctx_code {
    XKVM_HVMCTX_END = 0, XKVM_HVMCTX_HEADER = 1, XKVM_HVMCTX_CPU = 2,
    XKVM_HVMCTX_PIC = 3, XKVM_HVMCTX_IOAPIC = 4, XKVM_HVMCTX_LAPIC = 5,
    XKVM_HVMCTX_LAPIC_REGS = 6, XKVM_HVMCTX_PCI_IRQ = 7, XKVM_HVMCTX_ISA_IRQ = 8,
    XKVM_HVMCTX_PCI_LINK = 9, XKVM_HVMCTX_PIT = 10, XKVM_HVMCTX_RTC = 11,
    XKVM_HVMCTX_HPET = 12, XKVM_HVMCTX_PMTIMER = 13, XKVM_HVMCTX_MTRR = 14,
    XKVM_HVMCTX_VIRIDIAN_DOMAIN = 15, XKVM_HVMCTX_CPU_XSAVE = 16,
    XKVM_HVMCTX_VIRIDIAN_VCPU = 17, XKVM_HVMCTX_VMCE_VCPU = 18,
    XKVM_HVMCTX_TSC_ADJUST = 19, XKVM_HVMCTX_CPU_MSR = 20,
    XKVM_HVMCTX_CODE_MAX = 20,
};
#define XKVM_HVMCTX_DESC_SIZE       8u
#define XKVM_HVMCTX_HEADER_SIZE     24u     /* struct hvm_save_header */
#define XKVM_HVMCTX_CPU_SIZE        1032u   /* struct hvm_hw_cpu */
#define XKVM_HVMCTX_XSAVE_MIN       600u    /* struct hvm_hw_cpu_xsave, legacy area + header */
#define XKVM_HVMCTX_XSAVE_MAX       (24u + 65536u)
#define XKVM_HVMCTX_MSR_MAX         1024u   /* entries in one CPU_MSR */
#define XKVM_HVMCTX_FILE_MAGIC      0x54381286u
#define XKVM_HVMCTX_FILE_VERSION    1u

/* Name of a typecode ("CPU"), NULL if unknown. */
const char *xkvm_hvmctx_name(uint16_t typecode);
/* Fixed length of a typecode; 0 for END, the variable ones and unknown ones. */
uint32_t xkvm_hvmctx_fixed_size(uint16_t typecode);

struct xkvm_hvmctx_entry {
    uint64_t offset;                /* of the descriptor in the blob */
    uint16_t typecode, instance;
    uint32_t length;
    const uint8_t *data;            /* not necessarily aligned: memcpy out */
};

struct xkvm_hvmctx_walker {
    const uint8_t *buf;
    size_t size, pos;
    uint32_t max_vcpus;
    unsigned nr_entries;
    bool ended, failed;
    uint64_t seen[(XKVM_HVMCTX_CODE_MAX + 1) * XKVM_STREAM_MAX_VCPUS / 64];
    struct xkvm_stream_error err;   /* offset: within the blob */
};

/* max_vcpus 0: 128 (capped at XKVM_STREAM_MAX_VCPUS). */
void xkvm_hvmctx_walker_init(struct xkvm_hvmctx_walker *w, const void *blob, size_t size,
                             uint32_t max_vcpus);
/* 1 with *e (END included), 0 after END, -1 on error (w->err). */
int xkvm_hvmctx_next(struct xkvm_hvmctx_walker *w, struct xkvm_hvmctx_entry *e);
int xkvm_hvmctx_verify(const void *blob, size_t size, uint32_t max_vcpus,
                       struct xkvm_stream_error *err);

struct xkvm_hvmctx_builder {
    uint8_t *buf;
    size_t len, cap;
    struct xkvm_hvmctx_walker check;    /* bookkeeping for duplicates */
    bool ended, failed;
    struct xkvm_stream_error err;
};
/* Starts the blob with HEADER. 0 or -1 (NOMEM). */
int xkvm_hvmctx_builder_init(struct xkvm_hvmctx_builder *b, uint32_t max_vcpus,
                             uint64_t changeset, uint32_t cpuid, uint32_t gtsc_khz);
/* Append one entry, checked as the walker checks it. 0 or -1 with b->err. */
int xkvm_hvmctx_add(struct xkvm_hvmctx_builder *b, uint16_t typecode, uint16_t instance,
                    const void *data, uint32_t length);
/* Append END. */
int xkvm_hvmctx_finish(struct xkvm_hvmctx_builder *b);
void *xkvm_hvmctx_take(struct xkvm_hvmctx_builder *b, size_t *len);
void xkvm_hvmctx_builder_release(struct xkvm_hvmctx_builder *b);

#endif /* XKVM_STREAM_H */
