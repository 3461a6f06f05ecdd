#!/usr/bin/env python3
"""Rewrite the records of an xkvm save file that name host resources (tests only).

A crafting tool for tests/kvm/stream-trust.sh: it copies a save file (a libxc
migration stream, docs/stream.md) and changes its XENSTORE_STATE record (the
xenstore migration stream of designs/xenstore-migration: NODE records) or its
DOMAIN_CONFIG record (JSON) as told, or the guest's TSC rate (X86_TSC_INFO and the
DOMAIN_CONTEXT image's TSC_INFO), or a vCPU's interrupt state (VCPU_PLATFORM's
intr_state: tests/kvm/platform.sh); every other record is copied as it is.

  stream-edit.py IN OUT [--xs-set PATH=VALUE]... [--disk-path PATH] [--kernel PATH]
                        [--xs-conn-domid N] [--tsc-khz-times F] [--intr-state VCPU=FLAGS]

--xs-set changes the value of the node at PATH, or adds a node there (owned by the
stream's domain), --disk-path the first disk's path, --kernel the kernel.
"""
import argparse
import json
import struct
import sys

REC_X86_TSC_INFO = 0x08
REC_DOMAIN_CONTEXT = 0x7F584B01
CTX_TSC_INFO = 3
CTX_VCPU_PLATFORM = 0x111
REC_XENSTORE_STATE = 0x7F584B02
REC_DOMAIN_CONFIG = 0x7F584B03
XS_END, XS_CONN, XS_NODE = 0, 2, 5
STREAM_HEADERS = 40         # image header (24) and domain header (16)


def pad8(n):
    return (8 - (n & 7)) & 7


def records(data, off):
    """(type, body) of each record from off on, END included."""
    while off + 8 <= len(data):
        rtype, rlen = struct.unpack_from("<II", data, off)
        body = data[off + 8:off + 8 + rlen]
        yield rtype, body
        off += 8 + rlen + pad8(rlen)


def record(rtype, body):
    return struct.pack("<II", rtype, len(body)) + body + b"\0" * pad8(len(body))


def xs_node(path, value, owner):
    p = path.encode() + b"\0"
    head = struct.pack("<IIHHHH", 0, 0, len(p), len(value), 0, 1)
    return head + struct.pack("<BBH", ord("n"), 0, owner) + p + value


def node_path(body):
    plen, _vlen, _acc, nperms = struct.unpack_from("<HHHH", body, 8)
    start = 16 + 4 * nperms
    return body[start:start + plen - 1].decode(), start + plen


def edit_xenstore(blob, sets, conn_domid):
    out, domid, seen = [blob[:16]], 0, set()
    for rtype, body in records(blob, 16):
        if rtype == XS_CONN:
            domid = struct.unpack_from("<H", body, 8)[0]
            if conn_domid is not None:
                body = body[:8] + struct.pack("<H", conn_domid) + body[10:]
        elif rtype == XS_NODE:
            path, vstart = node_path(body)
            if path in sets:
                seen.add(path)
                plen_field = struct.unpack_from("<H", body, 8)[0]
                value = sets[path].encode()
                body = (body[:8] + struct.pack("<HH", plen_field, len(value)) +
                        body[12:vstart] + value)
        elif rtype == XS_END:
            for path, value in sets.items():
                if path not in seen:
                    out.append(record(XS_NODE, xs_node(path, value.encode(), domid)))
        out.append(record(rtype, body))
        if rtype == XS_END:
            break
    return b"".join(out)


def edit_config(body, disk_path, kernel):
    cfg = json.loads(body.decode())
    if disk_path is not None:
        cfg["config"]["disks"][0]["path"] = disk_path
    if kernel is not None:
        cfg["config"]["kernel"] = kernel
    return json.dumps(cfg, separators=(",", ":")).encode()


def scale_khz(body, at, times):
    """body with the u32 kHz at offset `at` multiplied by `times`."""
    khz, = struct.unpack_from("<I", body, at)
    b = bytearray(body)
    struct.pack_into("<I", b, at, int(khz * times))
    return bytes(b)


def edit_context(img, times, intr):
    """A domain context image (docs/domain-context.md) with TSC_INFO's khz scaled by
    times (if set) and VCPU_PLATFORM's intr_state set as intr ({vcpu: flags}) says."""
    out, off = bytearray(img), 0
    while off + 16 <= len(img):
        rtype, inst, rlen = struct.unpack_from("<IIQ", img, off)
        if rtype == CTX_TSC_INFO and times:
            out[off + 16:off + 16 + rlen] = scale_khz(img[off + 16:off + 16 + rlen], 4, times)
        if rtype == CTX_VCPU_PLATFORM and inst in intr:
            struct.pack_into("<I", out, off + 16 + 4, intr[inst])
        if rtype == 0 and off:
            break
        off += 16 + rlen + pad8(rlen)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("infile")
    ap.add_argument("outfile")
    ap.add_argument("--xs-set", action="append", default=[])
    ap.add_argument("--xs-conn-domid", type=int)
    ap.add_argument("--disk-path")
    ap.add_argument("--kernel")
    ap.add_argument("--tsc-khz-times", type=float)
    ap.add_argument("--intr-state", action="append", default=[])
    a = ap.parse_args()
    intr = {int(v): int(f, 0) for v, f in (x.split("=", 1) for x in a.intr_state)}
    sets = dict(s.split("=", 1) for s in a.xs_set)
    data = open(a.infile, "rb").read()
    out = [data[:STREAM_HEADERS]]
    for rtype, body in records(data, STREAM_HEADERS):
        if rtype == REC_XENSTORE_STATE:
            body = edit_xenstore(body, sets, a.xs_conn_domid)
        elif rtype == REC_DOMAIN_CONFIG:
            body = edit_config(body, a.disk_path, a.kernel)
        elif rtype == REC_X86_TSC_INFO and a.tsc_khz_times:
            body = scale_khz(body, 4, a.tsc_khz_times)
        elif rtype == REC_DOMAIN_CONTEXT and (a.tsc_khz_times or intr):
            body = edit_context(body, a.tsc_khz_times, intr)
        out.append(record(rtype, body))
    open(a.outfile, "wb").write(b"".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
