/* The raw image behind a virtual block device: pread/pwrite/fdatasync on a file. */
#ifndef XKVM_BLKBACK_IO_H
#define XKVM_BLKBACK_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct blk_image {
    int fd;
    bool readonly;
    bool is_file;               /* a regular file: discard punches holes */
    uint64_t sectors;           /* size in 512-byte sectors (a partial tail is unused) */
    char path[256];
};

/* The image path of a backend's `params` node ("/p", "file:/p", "aio:/p" ...). */
const char *image_path_of(const char *params);
/* Open path read-write (read-only if asked). 0 or -errno. */
int image_open(struct blk_image *img, const char *path, bool readonly);
void image_close(struct blk_image *img);

/* struct blk_ops callbacks; ctx is the struct blk_image. 0 or -errno. */
int image_io(void *ctx, bool write, const struct iovec *iov, unsigned n, uint64_t off);
int image_flush(void *ctx);
int image_discard(void *ctx, uint64_t off, uint64_t len);

#endif
