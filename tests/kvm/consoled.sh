#!/usr/bin/env bash
# xkvm-consoled and the toolstack's xenstore layout (docs/dom0-services.md), with the
# guest test console-echo (guest/tests/pv_console_ring.c):
#
#   output-complete        lines=N numbered lines through the PV console ring reach
#                          RUNDIR/console-N.log, each exactly once and in order, while
#   restart-mid-output     consoled is killed (-9) mid-output and restarted by xkvmd
#   input-reaches-guest    a line sent on RUNDIR/consoled.sock reaches the guest's in
#                          ring (the guest echoes it)
#   cli-console-input      `xkvm console DOMID` on a terminal forwards typed keys
#   xenstore-layout        /local/domain/N/{name,domid,console/*,store/*}, the vbd
#                          frontend/backend and /libxl/N after create (xenstore-ls)
#   xenstore-removed       all of it gone after destroy
#   hostile-socket         junk on consoled.sock does not hurt consoled
#   hostile-ring           test=console-hostile: a guest that breaks its ring indexes
#                          gets its ring reset and served again; consoled stays up
#   flood-no-stall         a guest flooding its ring (rate limited) does not stall
#                          another guest's console; the flood arrives complete
#   services-survive-xkvmd the services outlive xkvmd; the next xkvmd adopts them
#                          (no second instance) and consoled serves its new domains
source "$(dirname "$0")/lib.sh"
require_kvm
CONSOLED=$BUILD/src/dom0/consoled/xkvm-consoled
if [ ! -x "$CONSOLED" ]; then
  for c in output-complete restart-mid-output input-reaches-guest cli-console-input \
           xenstore-layout xenstore-removed hostile-socket hostile-ring flood-no-stall \
           services-survive-xkvmd; do
    skip "$c" "xkvm-consoled is not built ($CONSOLED)"
  done
  exit 0
fi
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
SOCK=$RUNDIR/consoled.sock
PIDF=$RUNDIR/services/xkvm-consoled.pid
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { fail start "consoled did not create $SOCK"; exit 1; }

# send_input DOMID TEXT [HOLD_SECONDS]: connect to consoled.sock, name the domain,
# type TEXT (a newline added), keep the connection for a while.
send_input() {
  python3 - "$SOCK" "$1" "$2" "${3:-1}" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(f"{sys.argv[2]}\n{sys.argv[3]}\n".encode())
time.sleep(float(sys.argv[4]))
PY
}

# check_lines LOG N: "ring: line I of N" for I = 1..N, each once, in order.
check_lines() {
  python3 - "$1" "$2" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read().decode("latin-1")
got = [int(m) for m in re.findall(r"^ring: line (\d+) of \d+$", data, re.M)]
n = int(sys.argv[2])
if got != list(range(1, n + 1)):
    missing = sorted(set(range(1, n + 1)) - set(got))
    dups = len(got) - len(set(got))
    print(f"{len(got)} lines, {len(missing)} missing (first {missing[:5]}), {dups} duplicated")
    sys.exit(1)
PY
}

LINES=6000
make_cfg "$WORK/echo.cfg" echo "test=console-echo lines=$LINES" 32 1 \
  "disk = [ '$WORK/disk.img,raw,xvda,rw' ]"
truncate -s 1M "$WORK/disk.img"
if ! id=$(xk create -p "$WORK/echo.cfg"); then
  fail output-complete "xkvm create failed"; exit 1
fi
LOG=$(ring_log "$id")
send_input "$id" "hello-from-host" 30 &
inp=$!
sleep 0.3
xk unpause "$id"

# Kill consoled once a third of the lines are out; xkvmd restarts it.
old=$(cat "$PIDF")
for _ in $(seq 300); do
  [ "$(grep -a -c '^ring: line' "$LOG" 2>/dev/null)" -ge $((LINES / 3)) ] && break
  sleep 0.05
done
at=$(grep -a -c '^ring: line' "$LOG")
kill -9 "$old"
echo "# killed consoled (pid $old) after $at of $LINES lines"
new=$old
for _ in $(seq 100); do
  new=$(cat "$PIDF" 2>/dev/null)
  [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && break
  sleep 0.1
done
if [ "$new" != "$old" ] && [ "$at" -lt "$LINES" ]; then pass restart-mid-output
else fail restart-mid-output "consoled pid $old -> $new, killed after $at of $LINES lines"; fi

res=$(wait_result "$id" console-echo 90)
if [ "$res" != "xtest: console-echo: PASS" ]; then
  fail output-complete "guest said: $res"
  tail -5 "$LOG" | sed 's/^/#   /'
elif why=$(check_lines "$LOG" "$LINES"); then
  pass output-complete
else
  fail output-complete "$why"
fi
if grep -a -q "^ring: echo hello-from-host$" "$LOG" &&
   grep -a -q "console-echo: got hello-from-host$" "$(console_log "$id")"; then
  pass input-reaches-guest
else
  fail input-reaches-guest "no echo of the input in $LOG"
fi
kill $inp 2>/dev/null; wait $inp 2>/dev/null

# The xenstore layout, if there is a xenstored to hold it.
XS_SOCK=$RUNDIR/xenstored/socket
xsls() { XENSTORED_PATH=$XS_SOCK xenstore-ls -f "$@" 2>/dev/null; }
if [ ! -x "$BUILD/src/dom0/xenstored/xkvm-xenstored" ]; then
  skip xenstore-layout "xkvm-xenstored is not built"
  skip xenstore-removed "xkvm-xenstored is not built"
elif ! command -v xenstore-ls >/dev/null; then
  skip xenstore-layout "no xenstore-ls (Debian xen-utils) on this host"
  skip xenstore-removed "no xenstore-ls (Debian xen-utils) on this host"
else
  tree=$(xsls /)
  want=("/local/domain/$id/name = \"echo\""
        "/local/domain/$id/domid = \"$id\""
        "/local/domain/$id/memory/static-max = \"32768\""
        "/local/domain/$id/console/ring-ref = \"$((0xFEFF1))\""
        "/local/domain/$id/console/type = \"xenconsoled\""
        "/local/domain/$id/store/ring-ref = \"$((0xFEFF0))\""
        "/local/domain/$id/device/vbd/51712/backend = \"/local/domain/0/backend/vbd/$id/51712\""
        "/local/domain/$id/device/vbd/51712/virtual-device = \"51712\""
        "/local/domain/0/backend/vbd/$id/51712/params = \"$WORK/disk.img\""
        "/local/domain/0/backend/vbd/$id/51712/mode = \"w\""
        "/local/domain/0/backend/vbd/$id/51712/frontend-id = \"$id\""
        "/libxl/$id/type = \"pvh\"")
  missing=""
  for w in "${want[@]}"; do
    grep -qxF "$w" <<<"$tree" || missing="$missing; $w"
  done
  port=$(grep "^/local/domain/$id/console/port = " <<<"$tree")
  [ -n "$port" ] || missing="$missing; console/port"
  if [ -z "$missing" ]; then pass xenstore-layout
  else fail xenstore-layout "missing${missing}"; fi
fi

# Junk on the socket: bad domid lines, binary, a huge line; consoled stays up.
python3 - "$SOCK" <<'PY'
import socket, sys
for junk in [b"abc\n", b"0\n", b"99999999999999999999\n", b"\xff" * 5000, b"1" * 100000,
             b"32767\n" + b"x" * 100000, b""]:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(junk); s.close()
    except OSError:
        pass
PY
sleep 0.3
pid=$(cat "$PIDF")
if kill -0 "$pid" 2>/dev/null && [ "$pid" = "$new" ]; then pass hostile-socket
else fail hostile-socket "consoled pid $new -> $pid"; fi

# A guest that breaks its own ring.
make_cfg "$WORK/hostile.cfg" hostile "test=console-hostile"
idh=$(xk create "$WORK/hostile.cfg")
res=$(wait_result "$idh" console-hostile 30)
if [ "$res" != "xtest: console-hostile: PASS" ]; then fail hostile-ring "guest said: $res"
elif ! grep -a -q "^ring: after reset$" "$(ring_log "$idh")"; then
  fail hostile-ring "no output after the reset"
elif [ "$(cat "$PIDF")" != "$new" ]; then fail hostile-ring "consoled restarted"
else pass hostile-ring; fi
xk destroy "$idh" 2>/dev/null

# A flooding guest (rate limited) and a quiet one at the same time.
FLOOD=40000
make_cfg "$WORK/flood.cfg" flood "test=console-echo lines=$FLOOD"
make_cfg "$WORK/quiet.cfg" quiet "test=console-echo lines=100"
idf=$(xk create "$WORK/flood.cfg")
send_input "$idf" "flood-done" 60 &
inpf=$!
sleep 0.5
t0=$(date +%s.%N)
idq=$(xk create "$WORK/quiet.cfg")
send_input "$idq" "quiet-done" 30 &
inpq=$!
resq=$(wait_result "$idq" console-echo 30)
tq=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
resf=$(wait_result "$idf" console-echo 120)
kill $inpf $inpq 2>/dev/null; wait $inpf $inpq 2>/dev/null
flood_done=$(grep -a -c '^ring: line' "$(ring_log "$idf")")
echo "# quiet guest done in ${tq}s while the flood guest wrote $FLOOD lines"
if [ "$resq" != "xtest: console-echo: PASS" ]; then fail flood-no-stall "quiet guest: $resq"
elif ! why=$(check_lines "$(ring_log "$idq")" 100); then fail flood-no-stall "quiet guest: $why"
elif [ "$resf" != "xtest: console-echo: PASS" ]; then fail flood-no-stall "flood guest: $resf ($flood_done lines)"
elif ! why=$(check_lines "$(ring_log "$idf")" $FLOOD); then fail flood-no-stall "flood guest: $why"
else pass flood-no-stall; fi
xk destroy "$idf" 2>/dev/null; xk destroy "$idq" 2>/dev/null

# xkvm console on a terminal: typed keys reach the guest, Ctrl-] detaches.
make_cfg "$WORK/cli.cfg" cli "test=console-echo lines=10"
id2=$(xk create "$WORK/cli.cfg")
python3 - "$XKVM" "$RUNDIR" "$id2" <<'PY' > "$WORK/cli.out" 2>&1
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--rundir", sys.argv[2], "console", sys.argv[3]])
out = b""
def pump(secs, until=None):
    global out
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try: out += os.read(fd, 4096)
            except OSError: return
        if until and until in out: return
pump(20, b"ring: line 000010 of 000010")
os.write(fd, b"typed-at-the-cli\r")
pump(20, b"ring: echo typed-at-the-cli")
os.write(fd, b"\x1d")
pump(3)
os.waitpid(pid, 0)
sys.stdout.write(out.decode("latin-1"))
PY
if grep -a -q "got typed-at-the-cli" "$(console_log "$id2")"; then pass cli-console-input
else fail cli-console-input "the guest did not get the typed line: $(tail -c 300 "$WORK/cli.out" | tr '\r\n' '  ')"; fi

xk destroy "$id2" 2>/dev/null
xk destroy "$id" 2>/dev/null
if [ -x "$BUILD/src/dom0/xenstored/xkvm-xenstored" ] && command -v xenstore-ls >/dev/null; then
  sleep 0.5
  tree=$(xsls /)
  left=$(grep -E "^/local/domain/($id|$id2)/|^/local/domain/0/backend/[a-z]+/($id|$id2)/|^/libxl/($id|$id2)/|^/vm/" <<<"$tree" | head -3)
  if [ -z "$left" ]; then pass xenstore-removed
  else fail xenstore-removed "left behind: $(tr '\n' ';' <<<"$left")"; fi
fi
check xkvmd-alive xk info

# xkvmd goes away and comes back: the same service processes serve the new one.
svc_pids() { cat "$RUNDIR"/services/*.pid 2>/dev/null | sort | tr '\n' ' '; }
before=$(svc_pids)
xpid=$(cat "$RUNDIR/xkvmd.pid")
kill "$xpid"
for _ in $(seq 100); do kill -0 "$xpid" 2>/dev/null || break; sleep 0.1; done
alive=1
for p in $before; do kill -0 "$p" 2>/dev/null || alive=0; done
host_start h1 || fail services-survive-xkvmd "xkvmd did not start again"
sleep 0.5
after=$(svc_pids)
make_cfg "$WORK/again.cfg" again "test=console-echo lines=50"
id3=$(xk create "$WORK/again.cfg")
send_input "$id3" "again" 5 &
inp=$!
res=$(wait_result "$id3" console-echo 60)
kill $inp 2>/dev/null; wait $inp 2>/dev/null
if [ $alive != 1 ]; then fail services-survive-xkvmd "a service died with xkvmd ($before)"
elif [ "$before" != "$after" ]; then fail services-survive-xkvmd "services $before -> $after"
elif [ "$res" != "xtest: console-echo: PASS" ]; then fail services-survive-xkvmd "guest said: $res"
elif ! why=$(check_lines "$(ring_log "$id3")" 50); then fail services-survive-xkvmd "$why"
else pass services-survive-xkvmd; fi
