#!/usr/bin/env bash
# Live update's guest-visible downtime, beside save-to-file plus restore of the same
# domains in the same run (JSON lines on stdout).
#
#   bench/bench-live-update.sh BUILD [RUNS]
#
# Cases: 1, 8 and 32 domains of 256 MiB (each with 16 MiB of random data written by
# test=fill), and one domain of 4 GiB (256 MiB of random data). Each case boots its
# domains on a fresh host, live-updates it RUNS times (default 5; the same binary) and
# reports the median run by downtime, with its phases, first with --exec, then with --beside (the
# new xkvmd started beside the old one, the VMs built before the pause):
#   {"bench":"live-update","mode":"exec","domains":8,"mem_mb":256,"downtime_ms":...,"phases_ms":{...}}
#   {"bench":"live-update","mode":"beside",...}
# then saves every domain to a file and restores it (xkvm save / xkvm restore, one after
# the other) as the reference: the time each domain was gone, and the whole job:
#   {"bench":"live-update-reference","domains":8,...,"per_domain_ms":...,"total_ms":...}
# BENCH_LU_CASES (e.g. "1x256 8x256") runs only those cases. Needs /dev/kvm.
set -uo pipefail
BUILD=${1:-build}
RUNS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
XKVMD=$BUILD/src/daemon/xkvmd XKVM=$BUILD/src/tools/xkvm GUEST=$BUILD/guest/xkvm-guest
W=$(mktemp -d /tmp/xkvm-bench-lu.XXXXXX)
stop_host() {
  local h=$1 f p pids=()
  for f in "$h/xkvmd.pid" "$h"/services/*.pid; do
    [ -s "$f" ] && p=$(cat "$f") && kill "$p" 2>/dev/null && pids+=("$p")
  done
  for _ in $(seq 100); do      # until they are gone: the next case needs the memory
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return
    sleep 0.1
  done
}
cleanup() { for h in "$W"/h*; do [ -d "$h" ] && stop_host "$h"; done; rm -rf "$W"; }
trap cleanup EXIT
log() { echo "bench-live-update: $*" >&2; }
[ -c /dev/kvm ] || { log "no /dev/kvm"; exit 1; }

# updates NDOMS MEM_MB FILL_MB MODE [OPTIONS]: RUNS live updates (xk of the case's host);
# the median run by downtime as one line.
updates() {
  local n=$1 mem=$2 fill=$3 mode=$4 i
  shift 4
  : > "$W/runs"
  for i in $(seq "$RUNS"); do
    xk live-update --json "$@" >> "$W/runs" || { log "live update ($mode) failed"; return 1; }
    sleep 0.5
  done
  python3 - "$W/runs" "$n" "$mem" "$fill" "$mode" <<'PY'
import json, sys
runs = sorted((json.loads(l) for l in open(sys.argv[1]) if l.strip()), key=lambda r: r["downtime_ms"])
r = runs[len(runs) // 2]
print(json.dumps({"bench": "live-update", "mode": sys.argv[5], "domains": int(sys.argv[2]),
                  "mem_mb": int(sys.argv[3]), "random_mb": int(sys.argv[4]),
                  "downtime_ms": round(r["downtime_ms"], 3),
                  "downtime_min_ms": round(runs[0]["downtime_ms"], 3),
                  "downtime_max_ms": round(runs[-1]["downtime_ms"], 3),
                  "phases_ms": {k: round(v, 3) for k, v in r["phases_ms"].items()}}))
PY
}

# case NDOMS MEM_MB FILL_MB MACHINE_MEMORY
run_case() {
  local n=$1 mem=$2 fill=$3 mm=$4 h=$W/h$1-$2 ids=() d i
  xk() { "$XKVM" --rundir "$h" "$@"; }
  "$XKVMD" --rundir "$h" --machine-memory "$mm" || return 1
  for i in $(seq "$n"); do
    cat > "$W/d$n-$i.cfg" <<CFG
name = "lu$n-$i"
memory = $mem
vcpus = 1
kernel = "$GUEST"
cmdline = "test=fill mb=$fill at=16"
CFG
    d=$(xk create "$W/d$n-$i.cfg") || { log "create failed"; return 1; }
    ids+=("$d")
  done
  for d in "${ids[@]}"; do
    for _ in $(seq 1800); do grep -q "xtest: fill: ready" "$h/dmesg-$d.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "xtest: fill: ready" "$h/dmesg-$d.log" || { log "d$d not ready"; return 1; }
  done
  sleep 1
  updates "$n" "$mem" "$fill" exec --exec || return 1
  updates "$n" "$mem" "$fill" beside --beside || return 1
  # The reference: each domain saved to a file and restored, one after the other.
  local t0 t1 t2 worst=0 sum=0 save=0 start end gone
  start=$(date +%s%N)
  for d in "${ids[@]}"; do
    t0=$(date +%s%N)
    xk save "$d" "$W/save.img" >/dev/null || { log "save d$d failed"; return 1; }
    t1=$(date +%s%N)
    xk restore "$W/save.img" >/dev/null || { log "restore d$d failed"; return 1; }
    t2=$(date +%s%N)
    rm -f "$W/save.img"
    gone=$(( (t2 - t0) / 1000 ))
    save=$((save + (t1 - t0) / 1000))
    sum=$((sum + gone)); [ $gone -gt $worst ] && worst=$gone
  done
  end=$(date +%s%N)
  python3 -c 'import json,sys; n,mem,s,sv,w,t=map(int,sys.argv[1:]); print(json.dumps({"bench":"live-update-reference","system":"save+restore","domains":n,"mem_mb":mem,"per_domain_ms":round(s/n/1000,2),"save_ms":round(sv/n/1000,2),"restore_ms":round((s-sv)/n/1000,2),"worst_domain_ms":round(w/1000,2),"total_ms":round(t/1e6,2)}))' \
    "$n" "$mem" "$sum" "$save" "$worst" "$(( end - start ))"
  stop_host "$h"
}

CASES=${BENCH_LU_CASES:-1x256 8x256 32x256 1x4096}
wanted() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
failed=0
wanted 1x256 && { run_case 1 256 16 1G || failed=1; }
wanted 8x256 && { run_case 8 256 16 3G || failed=1; }
wanted 32x256 && { run_case 32 256 16 9G || failed=1; }
wanted 1x4096 && { run_case 1 4096 256 5G || failed=1; }
exit $failed
