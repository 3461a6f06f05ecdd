#!/usr/bin/env python3
"""A TCP proxy for migration fault tests: listen on PORT, forward one connection to
TARGET_PORT on 127.0.0.1, and in the source->destination direction either close both
sides after N bytes (drop:N), flip the byte at offset N (flip:N), pass at most N
bytes a second (rate:N, a slow link), or go silent after N bytes (stall:N: nothing
more is forwarded either way, nor read, and both connections stay open until the
proxy is killed: a link that dies without an EOF). Prints READY."""
import socket, sys, threading, time

port, target, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
kind, n = mode.split(':')
n = int(n)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', port))
ls.listen(1)
print('READY', flush=True)
ls.settimeout(60)
try:
    a, _ = ls.accept()
except OSError:
    sys.exit(1)
b = socket.create_connection(('127.0.0.1', target))
# A link, not an application: no Nagle delay of its own on either side (the small
# records at the end of a stream would otherwise wait for a delayed ACK, 40 ms).
for s in (a, b):
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
stalled = threading.Event()

def silent():
    """stall: hold both connections open, moving nothing, until killed."""
    while True:
        time.sleep(3600)

def back():
    try:
        while not stalled.is_set():
            d = b.recv(65536)
            if not d:
                break
            if stalled.is_set():
                break
            a.sendall(d)
    except OSError:
        pass
    if stalled.is_set():
        return
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

threading.Thread(target=back, daemon=True).start()
seen = 0
try:
    while True:
        d = a.recv(65536)
        if not d:
            break
        if kind == 'stall' and seen + len(d) >= n:
            stalled.set()
            b.sendall(d[:n - seen])
            print('STALLED', flush=True)
            silent()
        if kind == 'drop' and seen + len(d) >= n:
            b.sendall(d[:n - seen])
            break
        if kind == 'rate':
            time.sleep(len(d) / n)
        if kind == 'flip' and seen <= n < seen + len(d):
            d = bytearray(d)
            d[n - seen] ^= 0xFF
            d = bytes(d)
        b.sendall(d)
        seen += len(d)
except OSError:
    pass
for s in (a, b):
    try:
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    except OSError:
        pass
