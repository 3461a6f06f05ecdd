#include "util/logrot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int logrot_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case '\0': break;
    default: return -EINVAL;
    }
    if (shift && (*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B'))
        end += 2;
    else if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int logrot_parse_keep(const char *s, unsigned *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > LOGROT_KEEP_LIMIT)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

void logrot_limits_from_env(struct logrot_limits *l)
{
    l->max = LOGROT_DEFAULT_MAX;
    l->keep = LOGROT_DEFAULT_KEEP;
    uint64_t max;
    unsigned keep;
    if (!logrot_parse_size(getenv(LOGROT_ENV_MAX), &max))
        l->max = max;
    if (!logrot_parse_keep(getenv(LOGROT_ENV_KEEP), &keep))
        l->keep = keep;
}

size_t logrot_cut(const char *buf, size_t len, uint64_t size, uint64_t max, bool *rotate)
{
    *rotate = false;
    if (!max || size + len < max)
        return len;
    /* The first newline at or past the cap's byte ends the line that reaches it. */
    size_t from = size >= max ? 0 : (size_t)(max - size - 1);
    const char *nl = from < len ? memchr(buf + from, '\n', len - from) : NULL;
    if (!nl)
        return len;
    *rotate = true;
    return (size_t)(nl - buf) + 1;
}

int logrot_rotate(const char *path, unsigned keep)
{
    char from[PATH_MAX], to[PATH_MAX];
    if (keep == 0)
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
    for (unsigned g = keep; g > 1; g--) {
        snprintf(from, sizeof(from), "%s.%u", path, g - 1);
        snprintf(to, sizeof(to), "%s.%u", path, g);
        if (rename(from, to) < 0 && errno != ENOENT)
            return -errno;
    }
    snprintf(to, sizeof(to), "%s.1", path);
    return rename(path, to) < 0 ? -errno : 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* PATH opened afresh in *fd's place (its number kept). 0 or -errno. */
static int reopen(int *fd, const char *path)
{
    int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (nfd < 0)
        return -errno;
    fchmod(nfd, 0600);
    if (dup3(nfd, *fd, O_CLOEXEC) < 0) {
        int e = -errno;
        close(nfd);
        return e;
    }
    close(nfd);
    return 0;
}

int logrot_write(int *fd, const char *path, const struct logrot_limits *l,
                 const void *buf, size_t len)
{
    const char *p = buf;
    if (!path || !l || !l->max || *fd < 0)
        return write_all(*fd, p, len);
    unsigned reopens = 0;
    while (len) {
        if (flock(*fd, LOCK_EX) < 0)
            return write_all(*fd, p, len);
        struct stat fs, ps;
        if (fstat(*fd, &fs) < 0)
            return write_all(*fd, p, len);
        if (stat(path, &ps) < 0 || ps.st_ino != fs.st_ino || ps.st_dev != fs.st_dev) {
            /* Rotated (or removed) by another writer: write to the file at PATH. */
            flock(*fd, LOCK_UN);
            if (++reopens > 8 || reopen(fd, path) < 0)
                return write_all(*fd, p, len);
            continue;
        }
        bool rotate;
        size_t n = logrot_cut(p, len, (uint64_t)fs.st_size, l->max, &rotate);
        int rc = write_all(*fd, p, n);
        if (rc) {
            flock(*fd, LOCK_UN);
            return rc;
        }
        p += n;
        len -= n;
        /* Renamed while locked: every other writer sees the new inode before writing. */
        if (!rotate || logrot_rotate(path, l->keep) < 0 || reopen(fd, path) < 0)
            flock(*fd, LOCK_UN);    /* (reopen closed the old description: its lock too) */
    }
    return 0;
}
