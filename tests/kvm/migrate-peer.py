#!/usr/bin/env python3
"""A hostile migration source for tests/kvm/incoming-limits.sh: connect to 127.0.0.1:PORT
and send a save IMAGE's headers and records up to its DOMAIN_CONFIG (domid and memory_mb
rewritten as asked), then print each line the destination answers ("LINE <text>").
With --trickle S, go on sending the image's next bytes one every S seconds. With
--churn N, send N PAGE_DATA records instead that drop and re-add two toolstack pages
(XTAB one, XALLOC the other, in turn). With --big-optional MIB, send an optional record
of that size before the config. Ends with
"CLOSED <seconds since connecting>" when the destination closes, or "OPEN <seconds>"
when --max seconds have passed with the connection still open."""
import argparse, json, select, socket, struct, sys, time

DOMAIN_CONFIG = 0x7F584B03
HEADERS = 40    # image header (24) and domain header (16)

p = argparse.ArgumentParser()
p.add_argument('image')
p.add_argument('port', type=int)
p.add_argument('--domid', type=int)
p.add_argument('--memory', type=int, help='memory_mb to claim')
p.add_argument('--trickle', type=float, help='seconds between single bytes after the config')
p.add_argument('--churn', type=int, help='PAGE_DATA records dropping and re-adding pages')
p.add_argument('--big-optional', type=int, help='MiB of an optional record before the config')
p.add_argument('--max', type=float, default=30)
a = p.parse_args()

img = open(a.image, 'rb').read()
out, off = bytearray(img[:HEADERS]), HEADERS
while True:
    rtype, length = struct.unpack_from('<II', img, off)
    padded = (length + 7) & ~7
    body = img[off + 8:off + 8 + length]
    off += 8 + padded
    if rtype != DOMAIN_CONFIG:
        out += img[off - 8 - padded:off]
        continue
    if a.big_optional:
        big = a.big_optional << 20
        out += struct.pack('<II', 0x80000000 | 0x7F584BFF, big) + b'\0' * big
    cfg = json.loads(body)
    if a.domid is not None:
        cfg['domid'] = a.domid
    if a.memory is not None:
        cfg['config']['memory_mb'] = a.memory
    body = json.dumps(cfg).encode()
    out += struct.pack('<II', DOMAIN_CONFIG, len(body)) + body + b'\0' * (-len(body) % 8)
    break
rest = img[off:]

PAGE_DATA, XTAB, XALLOC, SPECIAL = 0x01, 0xF, 0xE, 0xFEFF0


def churn(n):
    """PAGE_DATA records that drop one toolstack page and re-add the other, in turn."""
    a_pfn, b_pfn = SPECIAL + 4, SPECIAL + 5
    recs = bytearray(struct.pack('<II', 0x10, 0))     # STATIC_DATA_END first
    for k in range(n):
        drop, add = (a_pfn, b_pfn) if k % 2 == 0 else (b_pfn, a_pfn)
        body = struct.pack('<IIQQ', 2, 0, drop | XTAB << 60, add | XALLOC << 60)
        recs += struct.pack('<II', PAGE_DATA, len(body)) + body
    return bytes(recs)

t0 = time.monotonic()
s = socket.create_connection(('127.0.0.1', a.port))
buf, sent, closed = b'', 0, False
try:
    s.sendall(bytes(out))
except OSError:                         # refused and closed while we were still sending
    closed = True
if a.churn and not closed:
    time.sleep(0.5)                     # after READY: the domain is being built
    try:
        s.sendall(churn(a.churn))
    except OSError:
        closed = True
    print('CHURNED', a.churn, flush=True)
next_byte = t0 + (a.trickle or 0)
while time.monotonic() - t0 < a.max and not closed:
    r, _, _ = select.select([s], [], [], 0.2)
    if r:
        try:
            d = s.recv(4096)
        except OSError:
            d = b''
        if not d:
            closed = True
        buf += d
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            print('LINE', line.decode(errors='replace'), flush=True)
    if a.trickle and not closed and time.monotonic() >= next_byte and sent < len(rest):
        try:
            s.send(rest[sent:sent + 1])
            sent += 1
        except OSError:
            closed = True
        next_byte += a.trickle
print('CLOSED' if closed else 'OPEN', round(time.monotonic() - t0, 1), flush=True)
