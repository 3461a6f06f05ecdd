#!/bin/bash
# xkvm-xenstored against Debian's xenstore clients (xenstore-utils, xen-utils-4.17's
# test-xenstore) on its UNIX socket. Needs no xkvmd and no guest: without xkvmd the
# daemon serves socket clients and retries the dom0 connection in the background.
# XS_RANDOM_SECONDS (default 10; 30 for the full run) sets test-xenstore's random mode.
# The last part (skipped without /dev/kvm) runs under xkvmd, which starts xenstored as
# a service and introduces a guest: a script plays the guest on its ring page (mapped
# through dom0.sock like any service): requests as the guest, garbage indexes, a huge
# payload, reconnection, and a guest watch kept across kill -9 of xenstored.
source "$(dirname "$0")/lib.sh"
XSD=$BUILD/src/dom0/xenstored/xkvm-xenstored
TX=/usr/lib/xen-4.17/bin/test-xenstore
RANDOM_SECS=${XS_RANDOM_SECONDS:-10}

if [ ! -x "$XSD" ]; then skip all "no $XSD"; exit 0; fi
if ! command -v xenstore-read >/dev/null; then skip all "xenstore-utils not installed"; exit 0; fi

RD=$WORK/host
mkdir -p "$RD"
export XENSTORED_PATH=$RD/xenstored/socket
xsd_pid() { cat "$RD/xenstored/xenstored.pid" 2>/dev/null; }
xsd_stop() { local p; p=$(xsd_pid); [ -n "$p" ] && kill "$p" 2>/dev/null; }
trap 'xsd_stop; cleanup' EXIT

xsd_start() {
  "$XSD" --rundir "$RD" || return 1
  for _ in $(seq 50); do [ -S "$XENSTORED_PATH" ] && xenstore-read /tool/xenstored >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

if xsd_start; then pass start; else fail start "xkvm-xenstored did not come up"; exit 0; fi

# --- Debian's test-xenstore: every test, then random mode
if [ -x "$TX" ]; then
  out=$("$TX" 2>&1); rc=$?
  n=$(echo "$out" | grep -c ' ns$')
  if [ $rc -eq 0 ] && [ "$n" -eq "$("$TX" -l | wc -l)" ]; then
    pass test-xenstore; echo "# test-xenstore: $n/$n tests passed"
  else
    fail test-xenstore "rc $rc, $n tests passed: $(echo "$out" | grep -v ' ns$' | head -3)"
  fi
  out=$("$TX" -r "$RANDOM_SECS" 2>&1); rc=$?
  if [ $rc -eq 0 ] && [ -z "$out" ]; then pass "test-xenstore-random-${RANDOM_SECS}s"
  else fail "test-xenstore-random-${RANDOM_SECS}s" "rc $rc: $(echo "$out" | head -3)"; fi
else
  skip test-xenstore "no $TX (xen-utils-4.17)"
fi

# --- xenstore-* tools
xenstore-write /vm/a/b one /vm/a/c two /vm/d "with space"
check tools-read test "$(xenstore-read /vm/a/b)" = one
check tools-ls test "$(xenstore-ls /vm | tr -d ' ')" = "$(printf 'a=""\nb="one"\nc="two"\nd="withspace"')"
xenstore-chmod /vm/a/b n3 r5 b7
check tools-chmod-ls-p bash -c "xenstore-ls -p /vm/a | grep -q '^b = \"one\".*(n3,r5,b7)'"
check tools-exists xenstore-exists /vm/a/c
xenstore-watch -n 3 /vm/w > "$WORK/watch.out" 2>&1 &
wpid=$!
sleep 0.3
xenstore-write /vm/w/x 1
xenstore-rm /vm/w
for _ in $(seq 30); do kill -0 $wpid 2>/dev/null || break; sleep 0.1; done
kill $wpid 2>/dev/null
check tools-watch test "$(tr '\n' ' ' < "$WORK/watch.out")" = "/vm/w /vm/w/x /vm/w "
xenstore-rm /vm/a
check tools-rm bash -c "! xenstore-exists /vm/a/b && xenstore-exists /vm/d"
check tools-enoent bash -c "! xenstore-read /vm/nothere 2>/dev/null"
check tools-einval bash -c "! xenstore-write '/vm/bad path' 1 2>/dev/null"

# --- a huge request drops that client only; others go on
python3 - "$XENSTORED_PATH" <<'PY' && pass huge-request-dropped || fail huge-request-dropped "connection not closed"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(3)
s.sendall(struct.pack('<IIII', 11, 1, 0, 1 << 30) + b'x' * 64)
try:
    sys.exit(0 if s.recv(100) == b'' else 1)
except ConnectionResetError:
    sys.exit(0)
PY
check huge-request-others-unaffected test "$(xenstore-read /vm/d)" = "with space"

# --- export/import of one domain (designs/xenstore-migration stream). The import is
# for a domain whose top directory the toolstack wrote; it applies the stream's
# nodes there as the guest's own writes (docs/xenstored.md).
toolstack_dir() { xenstore-write "/local/domain/$1" "" && xenstore-chmod "/local/domain/$1" "n$1" r0; }
toolstack_dir 9
xenstore-write /local/domain/9/name vm9 /local/domain/9/device/vbd/768/state 4
before=$(xenstore-ls -p /local/domain/9)
if "$XSD" --rundir "$RD" export 9 "$WORK/dom9.xs" && [ "$(head -c 8 "$WORK/dom9.xs")" = xenstore ]; then
  pass export
  xenstore-rm /local/domain/9
  toolstack_dir 9
  if "$XSD" --rundir "$RD" import 9 "$WORK/dom9.xs" && [ "$(xenstore-ls -p /local/domain/9)" = "$before" ]; then
    pass import
  else fail import "tree differs after import"; fi
  toolstack_dir 10
  if "$XSD" --rundir "$RD" import 10 "$WORK/dom9.xs" && [ "$(xenstore-read /local/domain/10/name)" = vm9 ] &&
     [ "$(xenstore-ls -p /local/domain/10 | sed 's/10/9/g')" = "$before" ]; then
    pass import-other-domid
  else fail import-other-domid "$(xenstore-ls -p /local/domain/10 | head -3)"; fi
  if ! out=$("$XSD" --rundir "$RD" import 11 "$WORK/dom9.xs" 2>&1) && echo "$out" | grep -q "may not write" &&
     ! xenstore-exists /local/domain/11; then
    pass import-refused
  else fail import-refused "$out"; fi
else fail export "no stream"; fi

# --- kill -9 and restart: nothing lost
for i in $(seq 200); do echo "/persist/n$i v$i"; done | xargs -n 100 xenstore-write
xenstore-chmod /persist/n7 n0 r4
before=$(xenstore-ls -p /)
kill -9 "$(xsd_pid)"
sleep 0.2
if xsd_start; then
  after=$(xenstore-ls -p /)
  if [ "$before" = "$after" ]; then pass kill9-restart; echo "# $(echo "$after" | wc -l) nodes identical after kill -9"
  else fail kill9-restart "xenstore-ls -p differs: $(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"; fi
else
  fail kill9-restart "did not restart"
fi
check restart-test-xenstore "$TX" -t "ta rmw"
xsd_stop

# --- the ring, under xkvmd (a guest that powered off and is preserved: its ring page
# and port stay; the script writes requests as the guest would; xenstored's 1 s ring
# poll stands in for the guest's notifications).
if [ ! -c /dev/kvm ] || [ ! -x "$XKVMD" ] || [ ! -x "$GUEST" ]; then
  skip ring "needs /dev/kvm, $XKVMD and $GUEST"
  exit 0
fi
host_start ring || { fail ring-start "xkvmd did not start"; exit 0; }
export XENSTORED_PATH=$RUNDIR/xenstored/socket
for _ in $(seq 50); do xenstore-read /tool/xenstored >/dev/null 2>&1 && break; sleep 0.1; done
make_cfg "$WORK/ring.cfg" ring "test=basic"
domid=$(xk create "$WORK/ring.cfg") || { fail ring-create "xkvm create failed"; exit 0; }
wait_state "$domid" shutdown 20
for _ in $(seq 50); do [ "$(xenstore-read /local/domain/$domid/domid 2>/dev/null)" = "$domid" ] && break; sleep 0.1; done
cat > "$WORK/ringtest.py" <<'PY'
import mmap, os, socket, struct, subprocess, sys, time
rundir, domid, gfn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
OK = True
def res(name, good, why=''):
    global OK
    print(('PASS: xenstored/' + name) if good else ('FAIL: xenstored/%s: %s' % (name, why)), flush=True)
    OK &= bool(good)

s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(rundir + '/dom0.sock')
s.send(struct.pack('<IIIi', 1, 56, 1, 0) + struct.pack('<II', 1, 0) + b'ring-test'.ljust(32, b'\0'))
s.recv(256)
s.send(struct.pack('<IIIi', 6, 32, 2, 0) + struct.pack('<IIQ', domid, 0, gfn))
msg, fds, _, _ = socket.recv_fds(s, 256, 1)
err = struct.unpack('<IIIi', msg[:16])[3]
if err:
    res('ring-map', False, 'MAP_FOREIGN errno %d' % err); sys.exit(1)
mfn = struct.unpack('<Q', msg[16:24])[0]
m = mmap.mmap(fds[0], 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=mfn * 4096)
def get(off): return struct.unpack_from('<I', m, off)[0]
def put(off, v): struct.pack_into('<I', m, off, v & 0xffffffff)
REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, FEAT, CONN, ERR = 2048, 2052, 2056, 2060, 2064, 2068, 2072

def send_raw(b):
    prod = get(REQ_PROD)
    for i, c in enumerate(b):
        m[(prod + i) & 1023] = c
    put(REQ_PROD, prod + len(b))

def recv_n(n, secs=4):
    out = b''
    t = time.time() + secs
    while len(out) < n and time.time() < t:
        cons, prod = get(RSP_CONS), get(RSP_PROD)
        if cons == prod:
            time.sleep(0.02); continue
        k = min(prod - cons, n - len(out))
        out += bytes(m[1024 + ((cons + i) & 1023)] for i in range(k))
        put(RSP_CONS, cons + k)
    return out

def recv_msg():
    h = recv_n(16)
    if len(h) < 16: return None
    t, r, x, l = struct.unpack('<IIII', h)
    return t, r, recv_n(l)

def rq(t, *args, rid=1):
    p = b''.join(a if isinstance(a, bytes) else a.encode() + b'\0' for a in args)
    send_raw(struct.pack('<IIII', t, rid, 0, len(p)) + p)
    while True:
        r = recv_msg()
        if r is None or r[0] != 15: return r

def wait(cond, secs=4):
    t = time.time() + secs
    while time.time() < t:
        if cond(): return True
        time.sleep(0.05)
    return False

READ, WRITE, WATCH, ERROR, EVENT = 2, 11, 4, 16, 15
res('ring-features', get(FEAT) & 3 == 3, 'server_features %#x' % get(FEAT))
r = rq(READ, 'domid')
res('ring-guest-read-relative', r and r[0] == READ and r[2] == str(domid).encode(), repr(r))
r = rq(READ, '/tool/xenstored')
res('ring-guest-eacces', r and r[0] == ERROR and r[2] == b'EACCES\0', repr(r))
r = rq(WRITE, '/tool/xenstored/x', b'1')
res('ring-guest-write-eacces', r and r[0] == ERROR and r[2] == b'EACCES\0', repr(r))

# Garbage indexes: the connection stops with the error indicator, others go on.
put(REQ_PROD, get(REQ_CONS) + 5000)
res('ring-bad-index-error', wait(lambda: get(ERR) == 2), 'error %d' % get(ERR))
out = subprocess.run(['xenstore-read', '/tool/xenstored'], capture_output=True)
res('ring-bad-index-socket-unaffected', out.returncode == 0, out.stderr)
def reconnect():
    put(CONN, 1)
    return wait(lambda: get(CONN) == 0 and get(ERR) == 0)
res('ring-reconnect', reconnect())
r = rq(READ, 'domid')
res('ring-after-reconnect', r and r[2] == str(domid).encode(), repr(r))
# A payload over XENSTORE_PAYLOAD_MAX
send_raw(struct.pack('<IIII', WRITE, 1, 0, 1 << 20))
res('ring-huge-payload-error', wait(lambda: get(ERR) == 3), 'error %d' % get(ERR))
res('ring-reconnect-2', reconnect())

# A guest watch survives kill -9 of xenstored (xkvmd restarts it; the ring is re-mapped).
r = rq(WATCH, 'domid', 'tok')
ev = recv_msg()
res('ring-watch', r and r[0] == WATCH and ev and ev[0] == EVENT and ev[2] == b'domid\0tok\0', repr((r, ev)))
pidf = rundir + '/xenstored/xenstored.pid'
old = int(open(pidf).read())
os.kill(old, 9)
def restarted():
    try:
        return int(open(pidf).read()) != old and subprocess.run(['xenstore-read', '/tool/xenstored'], capture_output=True).returncode == 0
    except Exception:
        return False
res('ring-kill9-restarted', wait(restarted, 15))
time.sleep(0.5)
subprocess.run(['xenstore-write', '/local/domain/%d/domid' % domid, str(domid)])
ev = recv_msg()
res('ring-watch-kept-across-kill9', ev and ev[0] == EVENT and ev[2] == b'domid\0tok\0', repr(ev))
r = rq(READ, 'domid')
res('ring-read-after-kill9', r and r[2] == str(domid).encode(), repr(r))
sys.exit(0 if OK else 1)
PY
timeout 90 python3 "$WORK/ringtest.py" "$RUNDIR" "$domid" 0xfeff0 || true
xk destroy "$domid" >/dev/null 2>&1
