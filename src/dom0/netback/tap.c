/* TAP devices for vifs: see tap.h. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int tap_claim(const char *name)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "xkvm-netback/%s", name);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (bind(s, (struct sockaddr *)&a, len) < 0) {
        int e = errno;
        close(s);
        return e == EADDRINUSE ? -EBUSY : -e;
    }
    return s;
}

int tap_open(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int hdr = (int)sizeof(struct virtio_net_hdr);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETPERSIST, 1) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int tap_queue_attach(int fd, bool on)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}

int tap_set_offload(int fd, bool csum, bool tso4, bool tso6)
{
    unsigned flags = 0;
    if (csum) {
        flags |= TUN_F_CSUM;
        if (tso4)
            flags |= TUN_F_TSO4;
        if (tso6)
            flags |= TUN_F_TSO6;
    }
    return ioctl(fd, TUNSETOFFLOAD, flags) < 0 ? -errno : 0;
}

int tap_up(const char *name, const char *bridge)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int rc = 0;
    /*
     * The host end's MAC is fe:ff:ff:ff:ff:ff on every vif, as Linux's netback sets it
     * (xenvif_alloc): the same on every host, so a guest's ARP entry for its host end
     * still holds after a migration. Set while the device is down.
     */
    struct ifreq hw;
    memset(&hw, 0, sizeof(hw));
    snprintf(hw.ifr_name, sizeof(hw.ifr_name), "%s", name);
    hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(hw.ifr_hwaddr.sa_data, "\xfe\xff\xff\xff\xff\xff", 6);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        rc = -errno;
    if (!rc && !(ifr.ifr_flags & IFF_UP) && ioctl(s, SIOCSIFHWADDR, &hw) < 0)
        rc = -errno;
    if (!rc && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            rc = -errno;
    }
    if (!rc && bridge && *bridge) {
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
        ifr.ifr_ifindex = (int)if_nametoindex(name);
        /* EBUSY: already a port (of this bridge: a restarted netback). */
        if (ioctl(s, SIOCBRADDIF, &ifr) < 0 && errno != EBUSY)
            rc = -errno;
    }
    close(s);
    return rc;
}

void tap_destroy(int fd)
{
    if (fd < 0)
        return;
    ioctl(fd, TUNSETPERSIST, 0);
    close(fd);
}

int tap_announce(int fd, const uint8_t mac[6])
{
    uint8_t buf[sizeof(struct virtio_net_hdr) + 60];
    memset(buf, 0, sizeof(buf));
    uint8_t *f = buf + sizeof(struct virtio_net_hdr);
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x80, f[13] = 0x35;             /* ETH_P_RARP */
    f[14] = 0, f[15] = 1;                   /* hardware: Ethernet */
    f[16] = 0x08, f[17] = 0x00;             /* protocol: IPv4 */
    f[18] = 6, f[19] = 4;
    f[20] = 0, f[21] = 3;                   /* reverse request */
    memcpy(f + 22, mac, 6);                 /* sender MAC, sender IP 0 */
    memcpy(f + 32, mac, 6);                 /* target MAC, target IP 0 */
    return write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) ? 0 : -errno;
}
