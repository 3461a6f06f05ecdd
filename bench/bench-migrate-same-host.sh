#!/usr/bin/env bash
# Same-host migration against TCP migration of the same guests (JSON lines on stdout):
# part of bench/bench-migrate.sh, runnable alone.
#
#   bench/bench-migrate-same-host.sh BUILD [RUNS]
#
# Two xkvmd on this machine (5 GiB of machine memory each). Guests of 256 MiB (192 MiB
# of xorshift64 data at 64 MiB: test=fill) and of 4 GiB (2 GiB of data) are migrated
# back and forth over loopback TCP (the normal live migration, RUNS times, default 3),
# then with `xkvm migrate D local:RUNDIR` (docs/migration.md, "Same-host migration":
# the memfd is passed, no page is copied; 2 * RUNS times); the median run of each:
#   {"bench":"migrate-same-host","path":"local"|"tcp","guest":"idle-256m"|"idle-4g",...}
#   {"bench":"migrate-same-host","ratio":"4g/256m","local_total":...,"tcp_total":...}
set -uo pipefail
BUILD=${1:-build}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
XKVMD=$BUILD/src/daemon/xkvmd XKVM=$BUILD/src/tools/xkvm GUEST=$BUILD/guest/xkvm-guest
W=$(mktemp -d /tmp/xkvm-bench-samehost.XXXXXX)
PORT=$((30000 + RANDOM % 20000))
cleanup() {
  for h in "$W"/s1 "$W"/s2; do
    for f in "$h/xkvmd.pid" "$h"/services/*.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  done
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT
log() { echo "bench-migrate-same-host: $*" >&2; }
[ -c /dev/kvm ] || { log "no /dev/kvm"; exit 1; }
LIM=(--machine-memory 5G --migrate-max-memory 5G --migrate-max-total 5G --migrate-insecure)
"$XKVMD" --rundir "$W/s1" "${LIM[@]}" --migrate-listen 127.0.0.1:$PORT || exit 1
"$XKVMD" --rundir "$W/s2" "${LIM[@]}" --migrate-listen 127.0.0.1:$((PORT + 1)) || exit 1
xk() { local h=$1; shift; "$XKVM" --rundir "$W/$h" "$@"; }
median() {
  python3 -c 'import sys,json; v=sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda r: r["total_ms"] or 0); print(json.dumps(v[len(v)//2]))'
}

# run_case GUEST MEM FILL_MB: boot on s1, migrate RUNS times each way per path.
run_case() {
  local name=$1 mem=$2 fill=$3 d src path
  printf 'name = "%s"\nmemory = %s\nvcpus = 1\nkernel = "%s"\ncmdline = "%s"\n' "$name" \
    "$mem" "$GUEST" "test=fill mb=$fill at=64" > "$W/$name.cfg"
  d=$(xk s1 create "$W/$name.cfg") || return 1
  for _ in $(seq 1200); do grep -q "xtest: fill: ready" "$W/s1/dmesg-$d.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "xtest: fill: ready" "$W/s1/dmesg-$d.log" || { log "$name: guest not ready"; return 1; }
  sleep 1
  src=s1
  # TCP first; then an even number of same-host moves, so that the guest ends in its
  # own host's memory (a host that lent frames keeps them out of its allocator).
  for path in tcp local; do
    local n=$RUNS
    [ $path = local ] && n=$((RUNS * 2))
    for i in $(seq "$n"); do
      local dst=s2 dport=$((PORT + 1))
      [ $src = s2 ] && { dst=s1; dport=$PORT; }
      local to="127.0.0.1:$dport"
      [ $path = local ] && to="local:$W/$dst"
      xk $src migrate "$d" "$to" --report "$W/r.json" >/dev/null || { log "$name: $path migrate failed"; return 1; }
      python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["path"]=sys.argv[2]; print(json.dumps(r))' "$W/r.json" "$path" >> "$W/$name-$path.runs"
      src=$dst
      sleep 0.5
    done
    median < "$W/$name-$path.runs" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"bench": "migrate-same-host", "path": sys.argv[1], "guest": sys.argv[2],
                  "memory_mb": int(sys.argv[3]), "data_mb": int(sys.argv[4]),
                  "total_ms": round(r["total_ms"], 2), "downtime_ms": round(r["downtime_ms"], 3),
                  "bytes": r["bytes"], "pages_sent": r["pages_sent"]}))' "$path" "$name" "$mem" "$fill"
  done
  xk $src destroy "$d"
}

small=$(run_case idle-256m 256 192) || exit 1
echo "$small"
big=$(run_case idle-4g 4096 2048) || exit 1
echo "$big"
python3 - <<PY
import json
rows = [json.loads(l) for l in """$small
$big""".splitlines() if l.strip()]
t = {(r["guest"], r["path"]): r for r in rows}
print(json.dumps({"bench": "migrate-same-host", "ratio": "4g/256m",
                  "local_total": round(t["idle-4g", "local"]["total_ms"] / t["idle-256m", "local"]["total_ms"], 3),
                  "local_downtime": round(t["idle-4g", "local"]["downtime_ms"] / t["idle-256m", "local"]["downtime_ms"], 3),
                  "tcp_total": round(t["idle-4g", "tcp"]["total_ms"] / t["idle-256m", "tcp"]["total_ms"], 3)}))
PY
