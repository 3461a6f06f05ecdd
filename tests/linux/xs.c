/*
 * xs: a tiny xenstore client for the Linux test guest's initramfs
 * (tests/linux/init.sh; docs/testing.md, "The Linux suite").
 *
 *   xs read PATH          print the value (no newline added), exit 1 if absent
 *   xs write PATH VALUE   write it
 *   xs rm PATH            remove it
 *
 * It speaks the xenstore wire protocol (xen/io/xs_wire.h) over the kernel's
 * /dev/xen/xenbus, which every Xen guest kernel with xenbus provides; busybox has no
 * xenstore tools. Built statically by scripts/linux-guest.sh, outside meson: it runs
 * inside the guest, not on the host.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XS_READ 2
#define XS_WRITE 11
#define XS_RM 13
#define XS_ERROR 16
#define XS_PAYLOAD_MAX 4096

struct xs_header {
    uint32_t type, req_id, tx_id, len;
};

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One request, one reply. The reply's payload lands in out (NUL-terminated). */
static int xs_request(uint32_t type, const char *a, const char *b, char *out,
                      uint32_t *out_type)
{
    char req[sizeof(struct xs_header) + XS_PAYLOAD_MAX];
    size_t alen = strlen(a) + 1, blen = b ? strlen(b) : 0;
    struct xs_header h = { .type = type, .req_id = 1 };
    int fd;

    if (alen + blen > XS_PAYLOAD_MAX)
        return -1;
    h.len = (uint32_t)(alen + blen);
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), a, alen);
    if (b)
        memcpy(req + sizeof(h) + alen, b, blen);
    fd = open("/dev/xen/xenbus", O_RDWR);
    if (fd < 0) {
        perror("xs: /dev/xen/xenbus");
        return -1;
    }
    /* The device wants the whole message in one write. */
    if (write_all(fd, req, sizeof(h) + h.len) < 0 || read_all(fd, &h, sizeof(h)) < 0 ||
        h.len > XS_PAYLOAD_MAX || read_all(fd, out, h.len) < 0) {
        perror("xs: xenbus");
        close(fd);
        return -1;
    }
    close(fd);
    out[h.len] = '\0';
    *out_type = h.type;
    return (int)h.len;
}

int main(int argc, char **argv)
{
    static char reply[XS_PAYLOAD_MAX + 1];
    uint32_t type, want;
    int len;

    if (argc == 3 && strcmp(argv[1], "read") == 0)
        want = XS_READ;
    else if (argc == 4 && strcmp(argv[1], "write") == 0)
        want = XS_WRITE;
    else if (argc == 3 && strcmp(argv[1], "rm") == 0)
        want = XS_RM;
    else {
        fprintf(stderr, "usage: xs read PATH | xs write PATH VALUE | xs rm PATH\n");
        return 2;
    }
    len = xs_request(want, argv[2], argc == 4 ? argv[3] : NULL, reply, &type);
    if (len < 0)
        return 1;
    if (type == XS_ERROR) {
        fprintf(stderr, "xs: %s %s: %s\n", argv[1], argv[2], reply);
        return 1;
    }
    if (type != want) {
        fprintf(stderr, "xs: unexpected reply type %u\n", type);
        return 1;
    }
    if (want == XS_READ)
        fwrite(reply, 1, (size_t)len, stdout);
    return 0;
}
