#!/usr/bin/env bash
# Log rotation (util/logrot.h, docs/control-api.md "Logs") and `xkvm top`:
#
#   console-io-lines       test=console-lines n=N through console_io (xkvmd writes) with
#                          --log-max-size 16K: several rotations, every line in the
#                          kept generations exactly once, whole, no file over the cap
#   console-ring-lines     test=console-echo lines=N through the PV ring (xkvm-consoled
#                          writes the same file): every line exactly once across them
#   generations-capped     --log-max-size 1K --log-keep 2: console-N.log.1 and .2, never .3; what is kept
#                          is the newest lines, contiguous, up to the last
#   daemon-log-rotated     --verbose --log-max-size 1K: xkvmd.log rotates, lines whole,
#                          at most --log-keep generations
#   bad-options            --log-max-size junk / --log-keep 1000 are refused
#   top-json               `xkvm top --json -d 1`: one object, fields present, rates
#                          non-negative, a spinning guest's CPU% > 0
#   top-tty                `xkvm top -n 2 -d 0.3` on a pseudo-terminal: two redraws
#   top-pipe               `xkvm top -n 2 -d 0.3 | cat`: two tables, no escapes
#   top-disk               a guest with a disk writing and reading it in a loop
#                          (test=blk loop=0): `xkvm top --json` shows its disk bytes/s > 0
source "$(dirname "$0")/lib.sh"
require_kvm

# check_files LOG PATTERN N KEEP CAP: PATTERN's numbered lines 1..N in LOG.KEEP ...
# LOG.1 LOG, each once (or, with tail=1 in $5's place, a contiguous run ending at N);
# no generation past KEEP; no file over CAP plus a line.
check_files() {
  python3 - "$@" <<'PY'
import os, re, sys
log, pat, n, keep, cap, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
files = [f"{log}.{g}" for g in range(keep, 0, -1)] + [log]
if os.path.exists(f"{log}.{keep + 1}"):
    print(f"{log}.{keep + 1} exists"); sys.exit(1)
got, gens, big = [], 0, []
for f in files:
    if not os.path.exists(f): continue
    gens += 1
    if os.path.getsize(f) > cap + 200: big.append((f, os.path.getsize(f)))
    data = open(f, "rb").read().decode("latin-1")
    got += [int(m) for m in re.findall(pat, data, re.M)]
if big: print("over the cap:", big); sys.exit(1)
if gens < 3: print(f"only {gens} files: no rotations?"); sys.exit(1)
if mode == "all":
    want = list(range(1, n + 1))
else:
    want = list(range(n - len(got) + 1, n + 1)) if got else [0]
if got != want:
    missing = sorted(set(want) - set(got)); dups = len(got) - len(set(got))
    print(f"{len(got)} lines in {gens} files, {len(missing)} missing (first {missing[:5]}), {dups} duplicated")
    sys.exit(1)
print(f"{len(got)} lines in {gens} files")
PY
}

# Wait for the guest's result line in any generation.
wait_result_any() {
  local log; log=$(console_log "$1")
  for _ in $(seq $((${3:-60} * 10))); do
    if cat "$log".* "$log" 2>/dev/null | grep -a -q "xtest: $2: \(PASS\|FAIL\)"; then
      cat "$log".* "$log" | grep -a "xtest: $2: \(PASS\|FAIL\)" | head -1 | strip_dmesg
      return 0
    fi
    sleep 0.1
  done
  echo timeout
  return 1
}

# --- bad options ---
if ! "$XKVMD" --rundir "$WORK/bad" --log-max-size junk --foreground 2>/dev/null &&
   ! "$XKVMD" --rundir "$WORK/bad" --log-keep 1000 --foreground 2>/dev/null; then
  pass bad-options
else
  fail bad-options "xkvmd took a bad --log-max-size or --log-keep"
fi

# --- h1: 16K cap, 40 generations: everything is kept ---
host_start h1 --log-max-size 16K --log-keep 40 || { fail start "xkvmd did not start"; exit 1; }
N=6000      # ~140 KB: inside console_io's 256 KB burst, so nothing is rate-limited
make_cfg "$WORK/lines.cfg" lines "test=console-lines n=$N spin=6" 32 1
id=$(xk create "$WORK/lines.cfg") || { fail console-io-lines "create failed"; exit 1; }
# top while it runs: the lines take little time, then it spins for 6 s.
sleep 1.5
if out=$(xk top --json -d 1) && echo "$out" | python3 -c '
import json, sys
o = json.load(sys.stdin)
assert isinstance(o["interval_s"], float) and o["interval_s"] > 0.5, o
d = [d for d in o["domains"] if d["domid"] == int(sys.argv[1])][0]
for k in ("domid", "name", "state", "vcpus", "memory_kb", "cpu_ns", "cpu_percent",
          "events_per_s", "hypercalls_per_s", "exits_per_s", "disk_bytes_per_s", "net_bytes_per_s"):
    assert k in d, k
for k in ("cpu_percent", "events_per_s", "hypercalls_per_s", "exits_per_s"):
    assert d[k] >= 0, (k, d[k])
assert d["cpu_percent"] > 10, d
# The memory it holds now (as xl top): its 32 MiB, less a page or two where the
# guest mapped shared_info or a grant frame over its RAM.
assert d["cpu_ns"] > 0 and 32 * 1024 - 64 <= d["memory_kb"] <= 32 * 1024, d
print("cpu %.1f%%, %.0f events/s, %.0f exits/s" % (d["cpu_percent"], d["events_per_s"], d["exits_per_s"]))
' "$id" >"$WORK/top.out" 2>&1; then
  pass top-json; echo "# $(cat "$WORK/top.out")"
else
  fail top-json "$(tail -3 "$WORK/top.out" | tr '\n' ' ') $(echo "$out" | head -c 300)"
fi
python3 - "$XKVM" "$RUNDIR" >"$WORK/tty.out" 2>&1 <<'PY'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--rundir", sys.argv[2], "top", "-n", "2", "-d", "0.3"])
out = b""
while True:
    try: b = os.read(fd, 4096)
    except OSError: break
    if not b: break
    out += b
_, st = os.waitpid(pid, 0)
clears, headers = out.count(b"\x1b[2J"), out.count(b"CPU(%)")
print("status", os.waitstatus_to_exitcode(st), "clears", clears, "headers", headers)
PY
if grep -q "status 0 clears 2 headers 2" "$WORK/tty.out"; then pass top-tty
else fail top-tty "$(cat "$WORK/tty.out")"; fi
xk top -n 2 -d 0.3 | cat >"$WORK/pipe.out"
if [ "$(grep -c 'CPU(%)' "$WORK/pipe.out")" = 2 ] && ! grep -q $'\033' "$WORK/pipe.out" &&
   grep -q "^lines " "$WORK/pipe.out"; then pass top-pipe
else fail top-pipe "$(head -5 "$WORK/pipe.out")"; fi

res=$(wait_result_any "$id" console-lines 60)
if [ "$res" != "xtest: console-lines: PASS" ]; then
  fail console-io-lines "guest said: $res"
elif why=$(check_files "$(console_log "$id")" 'xkvm-guest: line (\d+)$' "$N" 40 16384 all); then
  pass console-io-lines; echo "# $why"
else
  fail console-io-lines "$why"
fi
xk destroy "$id" >/dev/null 2>&1

# The PV ring, through xkvm-consoled, into the same kind of rotating file.
SOCK=$RUNDIR/consoled.sock
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
RL=4000
make_cfg "$WORK/echo.cfg" echo "test=console-echo lines=$RL" 32 1
if id=$(xk create -p "$WORK/echo.cfg"); then
  python3 - "$SOCK" "$id" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(f"{sys.argv[2]}\nhello-from-host\n".encode())
time.sleep(30)
PY
  inp=$!
  sleep 0.3
  xk unpause "$id"
  res=$(wait_result_any "$id" console-echo 60)
  kill "$inp" 2>/dev/null; wait "$inp" 2>/dev/null
  if [ "$res" != "xtest: console-echo: PASS" ]; then
    fail console-ring-lines "guest said: $res"
  elif why=$(check_files "$(ring_log "$id")" "^ring: line (\d+) of 0*$RL$" "$RL" 40 16384 all); then
    pass console-ring-lines; echo "# $why"
  else
    fail console-ring-lines "$why"
  fi
  xk destroy "$id" >/dev/null 2>&1
else
  fail console-ring-lines "create failed"
fi

# --- h2: 1K cap, 2 generations, --verbose ---
host_start h2 --log-max-size 1K --log-keep 2 --verbose || { fail start "xkvmd h2 did not start"; exit 1; }
make_cfg "$WORK/lines2.cfg" lines2 "test=console-lines n=3000" 32 1
id=$(xk create "$WORK/lines2.cfg") || fail generations-capped "create failed"
res=$(wait_result_any "$id" console-lines 60)
# The result line comes after the numbered ones: count up to the last numbered line.
if [ "$res" != "xtest: console-lines: PASS" ]; then
  fail generations-capped "guest said: $res"
elif why=$(check_files "$(console_log "$id")" 'xkvm-guest: line (\d+)$' 3000 2 1024 tail); then
  pass generations-capped; echo "# $why"
else
  fail generations-capped "$why"
fi
for _ in 1 2 3; do xk list >/dev/null; xk info >/dev/null; xk debug-state "$id" >/dev/null; done
xk destroy "$id" >/dev/null 2>&1
if why=$(python3 - "$RUNDIR/xkvmd.log" <<'PY'
import os, re, sys
log = sys.argv[1]
if os.path.exists(log + ".3"): print(".3 exists"); sys.exit(1)
if not os.path.exists(log + ".1"): print("no .1: not rotated"); sys.exit(1)
n = 0
for f in (log + ".2", log + ".1", log):
    if not os.path.exists(f): continue
    if os.path.getsize(f) > 1024 + 2048: print(f, "over the cap"); sys.exit(1)
    for l in open(f, "rb").read().decode("latin-1").splitlines():
        n += 1
        if not re.match(r"^\d\d:\d\d:\d\d\.\d{3} \S+\[\d+\] (error|warning|info|debug): ", l):
            print("broken line:", l[:80]); sys.exit(1)
print(f"{n} whole lines")
PY
); then pass daemon-log-rotated; echo "# $why"; else fail daemon-log-rotated "$why"; fi

# ---- top-disk: blkback's per-device counters reach `xkvm top` ----
host_start disk || { fail top-disk "xkvmd did not start"; exit 0; }
truncate -s 16M "$WORK/disk.img"
make_cfg "$WORK/disk.cfg" diskio "test=blk mb=4 loop=0" 32 1 "disk = [ '$WORK/disk.img,raw,xvda,rw' ]"
if id=$(xk create "$WORK/disk.cfg") && wait_line "$id" 'xtest: blk: loop 1 ' 90 >/dev/null; then
  # blkback rewrites its counters at most once a second: sample over 3 s so that
  # at least one rewrite falls between the two samples even on a loaded host.
  out=$(xk top --json -d 3)
  if echo "$out" | python3 -c '
import json, sys
doms = json.load(sys.stdin)["domains"]
d = [x for x in doms if x["domid"] == int(sys.argv[1])][0]
rate = d["disk_bytes_per_s"]
print(rate)
sys.exit(0 if rate and rate > 0 else 1)' "$id" >"$WORK/disk.out" 2>&1; then
    pass top-disk; echo "# disk $(cat "$WORK/disk.out") bytes/s"
  else
    fail top-disk "$(cat "$WORK/disk.out") $(echo "$out" | head -c 300)"
  fi
else
  fail top-disk "the blk guest did not start looping: $(tail -3 "$(console_log "${id:-0}")" 2>/dev/null)"
fi
