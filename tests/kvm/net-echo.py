#!/usr/bin/env python3
"""Echo responder for tests/kvm/netback.sh, run inside the suite's network namespace.

net-echo.py IFACE STATEFILE: on IFACE (the bridge holding the vifs' TAP devices) every
frame of ethertype 0x88B5 sent to the broadcast address, and every IPv4/UDP broadcast
to port 0x88B5 (the multi-queue guest's frames, one UDP flow per queue), is sent back
to its source with the MAC addresses swapped (source: 02:00:00:00:00:01), the rest
untouched; every
RARP (0x8035) frame is counted per sender MAC. STATEFILE is rewritten after each
frame: "echoed N" and "rarp MAC COUNT" lines. Exits on SIGTERM.
"""
import os
import signal
import socket
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PEER = bytes([0x02, 0, 0, 0, 0, 0x01])


def main():
    iface, state = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    echoed, rarp = 0, {}

    def save():
        tmp = state + ".tmp"
        with open(tmp, "w") as f:
            f.write("echoed %d\n" % echoed)
            for mac, n in sorted(rarp.items()):
                f.write("rarp %s %d\n" % (mac, n))
        os.replace(tmp, state)

    save()
    while True:
        frame, addr = s.recvfrom(65536)
        if addr[2] == PACKET_OUTGOING or len(frame) < 14:
            continue
        etype = frame[12] << 8 | frame[13]
        udp = (etype == 0x0800 and len(frame) >= 42 and frame[23] == 17
               and frame[36:38] == b"\x88\xb5")
        if (etype == 0x88B5 or udp) and frame[:6] == b"\xff" * 6:
            s.send(frame[6:12] + PEER + frame[12:])
            echoed += 1
        elif etype == 0x8035:
            mac = ":".join("%02x" % b for b in frame[6:12])
            rarp[mac] = rarp.get(mac, 0) + 1
        else:
            continue
        save()


if __name__ == "__main__":
    main()
