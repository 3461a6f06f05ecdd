#!/usr/bin/env bash
# Live migration on loopback, xkvm beside QEMU in the same run (JSON lines on stdout).
#
#   bench/bench-migrate.sh BUILD [RUNS]
#
# Both guests have 1 GiB of RAM of which 256 MiB hold random data (xkvm: the guest's
# test=fill writes xorshift64 output at 64 MiB; QEMU: 256 MiB from /dev/urandom loaded
# at 64 MiB with -device loader, in a guest with no firmware work left: it idles in
# SeaBIOS). Each is migrated RUNS times (default 3) between two hosts (xkvmd
# --migrate-listen; qemu -incoming) and the median run is reported:
#   {"bench":"migrate","system":"xkvm","guest":"idle-1g-256m-random",...}
#   {"bench":"migrate","system":"qemu-default",...}      QEMU 7.2's default settings
#   {"bench":"migrate","system":"qemu-unthrottled",...}  max-bandwidth raised to 100 GB/s
#   {"bench":"migrate","ratio":...}                      QEMU total time / xkvm's
#   {"bench":"migrate","system":"xkvm-tls-psk",...}      xkvm over TLS 1.3 (PSK)
#   {"bench":"stream-floor","transport":"plain"|"tls-psk",...}  the floor: the idle
#       case's bytes through one loopback socket / one TLS session (bench-stream-floor)
#   {"bench":"migrate","ratio":"xkvm_total/floor","transport":...,"x_floor":...}  the
#       idle case against its floor (goal: <= 1.2x); BENCH_MIGRATE_QUICK=1 stops here
#   (BENCH_MIGRATE_CONVERGE=1 runs only the four slowed-link cases below;
#   BENCH_MIGRATE_PREALLOC=1 starts every xkvmd with --machine-memory-prealloc)
# and xkvm with a guest that keeps dirtying memory (dirty_mb per 100 ms) against the
# 5 ms downtime target, and one dirtying twice as fast as a slowed link (auto-converge:
# {"guest":"dirtying-2x-link-8mbs","throttle_pct":...,"stop":...}), the same by
# post-copy ({"system":"xkvm-postcopy",...,"downtime_ms":...,"fault_wait_ms_avg":...}),
# both again over a 40 MB/s link ({"guest":"dirtying-2x-link-40mbs",...,"goal_5ms_met":...}),
# and the same-host case (bench/bench-migrate-same-host.sh:
# {"bench":"migrate-same-host",...}). Needs /dev/kvm and qemu-system-x86_64 (scripts/deps.sh --bench).
set -uo pipefail
# BENCH_MIGRATE_CONNECTIONS=N: the idle cases (plain and TLS) over N connections
# (xkvm migrate --connections N, docs/migration.md "Several connections").
CONNS=${BENCH_MIGRATE_CONNECTIONS:-}
BUILD=${1:-build}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
XKVMD=$BUILD/src/daemon/xkvmd XKVM=$BUILD/src/tools/xkvm GUEST=$BUILD/guest/xkvm-guest
QEMU=${QEMU:-qemu-system-x86_64}
W=$(mktemp -d /tmp/xkvm-bench-migrate.XXXXXX)
PORT=$((30000 + RANDOM % 20000))
cleanup() {
  for h in "$W"/h1 "$W"/h2 "$W"/h3 "$W"/h4; do
    for f in "$h/xkvmd.pid" "$h"/services/*.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  done
  pkill -f "$W/q" 2>/dev/null
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT
log() { echo "bench-migrate: $*" >&2; }
[ -c /dev/kvm ] || { log "no /dev/kvm"; exit 1; }

# median [KEY]: of JSON lines, the one with the median KEY (default total_ms), with the
# KEY's min and max over the runs added ("KEY_min", "KEY_max").
median() {
  python3 -c 'import sys,json
k = sys.argv[1] if len(sys.argv) > 1 else "total_ms"
v = sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda r: r[k] or 0)
m = v[len(v)//2]; m[k + "_min"] = v[0][k]; m[k + "_max"] = v[-1][k]
print(json.dumps(m))' "$@"
}

# ---- xkvm ----
# BENCH_MIGRATE_PREALLOC=1: every xkvmd with --machine-memory-prealloc (the destination
# places pages in frames already resident, as the floor reads into a resident buffer).
PREALLOC=()
[ "${BENCH_MIGRATE_PREALLOC:-}" = 1 ] && PREALLOC=(--machine-memory-prealloc)
"$XKVMD" --rundir "$W/h1" --machine-memory 2G "${PREALLOC[@]}" --migrate-listen 127.0.0.1:$PORT --migrate-insecure || exit 1
"$XKVMD" --rundir "$W/h2" --machine-memory 2G "${PREALLOC[@]}" --migrate-listen 127.0.0.1:$((PORT + 1)) --migrate-insecure || exit 1
# The same over TLS 1.3 with a pre-shared key (docs/migration.md, "Transport").
(umask 077; psktool -u bench -p "$W/migrate.psk" >/dev/null) || exit 1
"$XKVMD" --rundir "$W/h3" --machine-memory 2G "${PREALLOC[@]}" --migrate-listen 127.0.0.1:$((PORT + 3)) --migrate-psk "$W/migrate.psk" || exit 1
"$XKVMD" --rundir "$W/h4" --machine-memory 2G "${PREALLOC[@]}" --migrate-listen 127.0.0.1:$((PORT + 4)) --migrate-psk "$W/migrate.psk" || exit 1
xk() { local h=$1; shift; "$XKVM" --rundir "$W/$h" "$@"; }
# The hosts a case migrates between, and their ports: plain by default.
A=h1 B=h2 PA=$PORT PB=$((PORT + 1))

# xkvm_case NAME CMDLINE: boot, wait for the fill, migrate RUNS times; prints JSON lines.
xkvm_case() {
  local name=$1 cmdline=$2 d src=$A dst=$B dport=$PB
  cat > "$W/$name.cfg" <<CFG
name = "$name"
memory = 1024
vcpus = 1
kernel = "$GUEST"
cmdline = "$cmdline"
CFG
  d=$(xk $A create "$W/$name.cfg") || return 1
  for _ in $(seq 600); do grep -q "xtest: fill: ready" "$W/$A/dmesg-$d.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "xtest: fill: ready" "$W/$A/dmesg-$d.log" || { log "$name: guest not ready"; return 1; }
  sleep 1
  for i in $(seq "$RUNS"); do
    xk $src migrate "$d" 127.0.0.1:$dport ${CONNS:+--connections $CONNS} --report "$W/r.json" >/dev/null ||
      { log "$name: migrate failed"; return 1; }
    cat "$W/r.json"
    if [ $src = $A ]; then src=$B; dst=$A; dport=$PA; else src=$A; dst=$B; dport=$PB; fi
    sleep 1
  done
  xk $src destroy "$d"
}

# BENCH_MIGRATE_CONVERGE=1: only the four slowed-link cases (auto-converge and post-copy,
# 8 and 40 MB/s) below, skipping the idle, dirtying, same-host and QEMU cases.
CONVERGE_ONLY=${BENCH_MIGRATE_CONVERGE:-}
if [ "$CONVERGE_ONLY" != 1 ]; then
xkvm_json=$(xkvm_case idle "test=fill mb=256 at=64" | median) || exit 1
echo "$xkvm_json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"bench": "migrate", "system": "xkvm", "guest": "idle-1g-256m-random",
                  "total_ms": round(r["total_ms"], 2), "downtime_ms": round(r["downtime_ms"], 3),
                  "bytes": r["bytes"], "iterations": r["iterations"], "rate_mbs": round(r["rate_mbs"]),
                  "connections": r.get("connections")}))'
A=h3 B=h4 PA=$((PORT + 3)) PB=$((PORT + 4))
tls_json=$(xkvm_case idle-tls "test=fill mb=256 at=64" | median) || exit 1
A=h1 B=h2 PA=$PORT PB=$((PORT + 1))
echo "$tls_json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"bench": "migrate", "system": "xkvm-tls-psk", "guest": "idle-1g-256m-random",
                  "transport": r.get("transport"), "total_ms": round(r["total_ms"], 2),
                  "downtime_ms": round(r["downtime_ms"], 3), "bytes": r["bytes"],
                  "iterations": r["iterations"], "rate_mbs": round(r["rate_mbs"]),
                  "connections": r.get("connections")}))'
floor=$("$BUILD/bench/bench-stream-floor" "$(echo "$xkvm_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')") || exit 1
echo "$floor"
# The goal (issue 19): total time <= 1.2x the floor, plain and TLS each against its own.
python3 - "$xkvm_json" "$tls_json" "$floor" "${BENCH_MIGRATE_PREALLOC:-0}" <<'PY'
import json, sys
x, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
prealloc = sys.argv[4] == "1"
f = {r["transport"]: r["ms"] for r in map(json.loads, sys.argv[3].splitlines())}
for name, r, fl in (("plain", x, f["plain"]), ("tls-psk", t, f["tls-psk"])):
    print(json.dumps({"bench": "migrate", "ratio": "xkvm_total/floor", "transport": name,
                      "total_ms": round(r["total_ms"], 2), "floor_ms": fl,
                      "x_floor": round(r["total_ms"] / fl, 2), "prealloc": prealloc,
                      "goal_1_2x_met": r["total_ms"] <= 1.2 * fl}))
PY
# BENCH_MIGRATE_QUICK=1: only the idle guest, plain and TLS, and the floors.
[ "${BENCH_MIGRATE_QUICK:-}" = 1 ] && exit 0
dirty_json=$(xkvm_case dirty "test=fill mb=256 at=64 dirty_mb=8 period_ms=100" | median) || exit 1
echo "$dirty_json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"bench": "migrate", "system": "xkvm", "guest": "dirtying-80mbs-1g-256m-random",
                  "downtime_target_ms": 5, "total_ms": round(r["total_ms"], 2),
                  "downtime_ms": round(r["downtime_ms"], 3), "bytes": r["bytes"],
                  "iterations": r["iterations"], "final_pages": r["final_pages"]}))'
fi

# Auto-converge: a guest dirtying 2x the link (1 MiB every 64 ms, about 16 MB/s, over a
# link of 8 MB/s: tests/kvm/tcp-fault-proxy.py rate:N) against the 5 ms target.
PROXY=$ROOT/tests/kvm/tcp-fault-proxy.py
# converge_case NAME PORT_OFFSET [MIGRATE OPTIONS]: proxies at PORT + PORT_OFFSET + 1...
# The link and the guest: LINK_RATE bytes a second (default 8 MB/s) and DIRTY, the
# guest's fill arguments (default 1 MiB every 64 ms, about 16 MB/s).
LINK_RATE=8000000 DIRTY="mb=1 at=8 dirty_mb=1 period_ms=64"
converge_case() {
  local name=$1 d src=h1 dport=$((PORT + 1)) pport=$((PORT + $2))
  shift 2
  printf 'name = "%s"\nmemory = 256\nvcpus = 1\nkernel = "%s"\ncmdline = "%s"\n' "$name" \
    "$GUEST" "test=fill $DIRTY" > "$W/$name.cfg"
  d=$(xk h1 create "$W/$name.cfg") || return 1
  for _ in $(seq 600); do grep -q "xtest: fill: ready" "$W/h1/dmesg-$d.log" 2>/dev/null && break; sleep 0.1; done
  for i in $(seq "$RUNS"); do
    pport=$((pport + 1)); rm -f "$W/proxy.out"
    python3 "$PROXY" $pport $dport rate:$LINK_RATE > "$W/proxy.out" &
    for _ in $(seq 50); do grep -q READY "$W/proxy.out" 2>/dev/null && break; sleep 0.1; done
    xk $src migrate "$d" 127.0.0.1:$pport --downtime-ms 5 "$@" --report "$W/r.json" >/dev/null ||
      { log "$name: migrate failed"; return 1; }
    wait
    cat "$W/r.json"
    if [ $src = h1 ]; then src=h2; dport=$PORT; else src=h1; dport=$((PORT + 1)); fi
  done
  xk $src destroy "$d"
}
# conv_line SYSTEM GUEST: an auto-converge or post-copy case's run of median downtime
# (with the min and max over the runs) as one line.
conv_line() {
  python3 -c '
import json, sys
r = json.load(sys.stdin)
line = {"bench": "migrate", "system": sys.argv[1], "guest": sys.argv[2],
        "downtime_target_ms": r["downtime_target_ms"], "stop": r["stop"],
        "throttle_pct": r["throttle_pct"], "downtime_ms": round(r["downtime_ms"], 3),
        "downtime_ms_min": round(r["downtime_ms_min"], 3),
        "downtime_ms_max": round(r["downtime_ms_max"], 3),
        "est_downtime_ms": round(r["est_downtime_ms"], 3), "final_bytes": r["final_bytes"],
        "state_compressed": r.get("state_compressed"), "dest_ms": round(r["dest_ms"], 3),
        "total_ms": round(r["total_ms"], 2), "iterations": r["iterations"]}
if r.get("postcopy"):
    line.update({k: r[k] for k in ("postcopy_ms", "postcopy_pages", "pages_on_demand",
                                   "faults_on_demand", "fault_wait_ms_avg", "fault_wait_ms_max")})
line["goal_5ms_met"] = r["downtime_ms"] < 5
print(json.dumps(line))' "$1" "$2"
}
converge_case converge 5 | median downtime_ms | conv_line xkvm dirtying-2x-link-8mbs || exit 1

# Same-host migration (memfd passed) against TCP, 256 MiB and 4 GiB guests.
[ "$CONVERGE_ONLY" = 1 ] || "$ROOT/bench/bench-migrate-same-host.sh" "$BUILD" "$RUNS" || exit 1
# Post-copy (docs/migration.md "Post-copy"): the same guest and link, switching after
# the first pass instead of throttling: the downtime does not depend on the dirty rate.
converge_case postcopy 25 --postcopy --no-auto-converge | median downtime_ms |
  conv_line xkvm-postcopy dirtying-2x-link-8mbs || exit 1

# The same two ways over a faster link: 40 MB/s, the guest dirtying 8 MiB every 100 ms
# (about 80 MB/s, still twice the link), where the state's bytes weigh less.
LINK_RATE=40000000 DIRTY="mb=8 at=8 dirty_mb=8 period_ms=100"
converge_case converge40 45 | median downtime_ms | conv_line xkvm dirtying-2x-link-40mbs || exit 1
converge_case postcopy40 65 --postcopy --no-auto-converge | median downtime_ms |
  conv_line xkvm-postcopy dirtying-2x-link-40mbs || exit 1

[ "$CONVERGE_ONLY" = 1 ] && exit 0

# ---- QEMU ----
if ! command -v "$QEMU" >/dev/null; then
  log "no $QEMU: install qemu-system-x86 (scripts/deps.sh --bench)"
  exit 1
fi
head -c 256M /dev/urandom > "$W/rand.bin"
qmp() {     # qmp SOCKET COMMAND-JSON...: run commands, print the last reply
  python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile('rw')
json.loads(f.readline())
def cmd(c):
    f.write(json.dumps(c) + '\n'); f.flush()
    while True:
        r = json.loads(f.readline())
        if 'return' in r or 'error' in r:
            return r
cmd({'execute': 'qmp_capabilities'})
for c in sys.argv[2:]:
    r = cmd(json.loads(c))
print(json.dumps(r))
PY
}
qemu_case() {
  local sys=$1 bw=$2 i
  for i in $(seq "$RUNS"); do
    rm -f "$W"/q*.sock
    "$QEMU" -accel kvm -m 1024 -display none -nodefaults -serial none \
      -device loader,file="$W/rand.bin",addr=0x4000000,force-raw=on \
      -qmp unix:"$W/qs.sock",server=on,wait=off -name "$W/qs" -daemonize || return 1
    "$QEMU" -accel kvm -m 1024 -display none -nodefaults -serial none \
      -incoming tcp:127.0.0.1:$((PORT + 2)) \
      -qmp unix:"$W/qd.sock",server=on,wait=off -name "$W/qd" -daemonize || return 1
    sleep 1
    local set='{"execute":"query-status"}'
    [ "$bw" != default ] && set="{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":$bw}}"
    qmp "$W/qs.sock" "$set" \
      "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$((PORT + 2))\"}}" >/dev/null
    for _ in $(seq 1200); do
      r=$(qmp "$W/qs.sock" '{"execute":"query-migrate"}')
      st=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["return"].get("status"))')
      [ "$st" = completed ] || [ "$st" = failed ] && break
      sleep 0.05
    done
    echo "$r" | python3 -c '
import json, sys
r = json.load(sys.stdin)["return"]
print(json.dumps({"total_ms": r.get("total-time"), "downtime_ms": r.get("downtime"),
                  "bytes": r["ram"]["transferred"], "status": r["status"]}))'
    qmp "$W/qs.sock" '{"execute":"quit"}' >/dev/null 2>&1
    qmp "$W/qd.sock" '{"execute":"quit"}' >/dev/null 2>&1
    sleep 0.5
  done | median | python3 -c '
import json, sys
r = json.load(sys.stdin)
r.update({"bench": "migrate", "system": sys.argv[1], "guest": "idle-1g-256m-random"})
print(json.dumps(r))' "$sys"
}
qd=$(qemu_case qemu-default default) || exit 1
echo "$qd"
qu=$(qemu_case qemu-unthrottled 100000000000) || exit 1
echo "$qu"
python3 - "$xkvm_json" "$qd" "$qu" <<'PY'
import json, sys
x, d, u = (json.loads(a) for a in sys.argv[1:])
print(json.dumps({"bench": "migrate", "ratio": "qemu_total/xkvm_total",
                  "vs_qemu_default": round(d["total_ms"] / x["total_ms"], 2),
                  "vs_qemu_unthrottled": round(u["total_ms"] / x["total_ms"], 2),
                  "bytes_xkvm": x["bytes"], "bytes_qemu": d["bytes"]}))
PY
