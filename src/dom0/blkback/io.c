/* Image I/O: see io.h. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

const char *image_path_of(const char *params)
{
    /* libxl writes the target itself; older tools prefix a format or driver. */
    const char *colon = strchr(params, ':');
    if (params[0] != '/' && colon && colon[1] == '/')
        return colon + 1;
    return params;
}

int image_open(struct blk_image *img, const char *path, bool readonly)
{
    memset(img, 0, sizeof(*img));
    img->fd = -1;
    if (snprintf(img->path, sizeof(img->path), "%s", path) >= (int)sizeof(img->path))
        return -ENAMETOOLONG;
    /* The toolstack writes a resolved path: a symlink there was put in after the fact. */
    int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    uint64_t bytes = 0;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (S_ISREG(st.st_mode)) {
        bytes = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
            goto fail;
    } else {
        errno = EINVAL;
        goto fail;
    }
    img->fd = fd;
    img->readonly = readonly;
    img->is_file = S_ISREG(st.st_mode);
    img->sectors = bytes / 512;
    return 0;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

void image_close(struct blk_image *img)
{
    if (img->fd >= 0)
        close(img->fd);
    img->fd = -1;
}

int image_io(void *ctx, bool write, const struct iovec *iov, unsigned n, uint64_t off)
{
    struct blk_image *img = ctx;
    if (write && img->readonly)
        return -EROFS;
    struct iovec local[1024];
    if (n > sizeof(local) / sizeof(local[0]))
        return -EINVAL;
    memcpy(local, iov, n * sizeof(*iov));
    struct iovec *v = local;
    while (n) {
        ssize_t done = write ? pwritev(img->fd, v, (int)n, (off_t)off)
                             : preadv(img->fd, v, (int)n, (off_t)off);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (done == 0)
            return -EIO;            /* the image shrank under us */
        off += (uint64_t)done;
        while (n && (size_t)done >= v->iov_len) {
            done -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n) {
            v->iov_base = (uint8_t *)v->iov_base + done;
            v->iov_len -= (size_t)done;
        }
    }
    return 0;
}

int image_flush(void *ctx)
{
    struct blk_image *img = ctx;
    return fdatasync(img->fd) < 0 ? -errno : 0;
}

int image_discard(void *ctx, uint64_t off, uint64_t len)
{
    struct blk_image *img = ctx;
    if (img->readonly)
        return -EROFS;
    if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0)
        return errno == EOPNOTSUPP ? 0 : -errno;    /* discard is only a hint */
    return 0;
}
