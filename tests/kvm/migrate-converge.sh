#!/usr/bin/env bash
# Auto-converge (docs/migration.md, "Convergence"): a test=fill guest rewrites 1 MiB
# every millisecond while the link is slowed to 8 MB/s by tests/kvm/tcp-fault-proxy.py
# (rate:N), so no iteration fits a 100 ms target unthrottled. With auto-converge the
# vCPUs are throttled until the rest fits: the report says converged, with a throttle
# above 0 and an estimate within the target, and the guest runs on the destination,
# unthrottled. --no-auto-converge stops at the iteration cap without throttling.
# (The check is on the report's estimate, not on the wall-clock downtime it measured.)
# --downtime-strict fails when the cap comes first; a destination killed while the
# guest is throttled fails the migration, and so does a cancel: each way the guest
# runs on at the source with the throttle lifted.
source "$(dirname "$0")/lib.sh"
require_kvm
PROXY="$(dirname "$0")/tcp-fault-proxy.py"
BASE=$((20000 + RANDOM % 20000))
PB=$BASE; PX=$((BASE + 1)); PC=$((BASE + 2))
RATE=8000000
TARGET=100

host_start a $(migrate_auth) || { fail start "a did not start"; exit 1; }
A=$RUNDIR
host_start b --migrate-listen 127.0.0.1:$PB $(migrate_auth) || { fail start "b did not start"; exit 1; }
B=$RUNDIR
make_cfg "$WORK/g.cfg" g "test=fill mb=1 at=8 dirty_mb=1 period_ms=1" 32 1
RUNDIR=$A
D=$(xk create "$WORK/g.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: fill: ready" 60 >/dev/null || { fail boot "guest did not start"; exit 1; }

# proxy PORT TARGET: a slow link from PORT to TARGET (one connection).
proxy() {
  python3 "$PROXY" "$1" "$2" rate:$RATE > "$WORK/proxy-$1.out" &
  for _ in $(seq 50); do grep -q READY "$WORK/proxy-$1.out" && break; sleep 0.1; done
}
# report_field FILE FIELD
report_field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"; }
# source_ok LABEL: the guest runs on at the source, unthrottled.
source_ok() {
  local st th
  st=$(RUNDIR=$A dom_field "$D" state); th=$(RUNDIR=$A dom_field "$D" throttle_pct)
  if [ "$st" = running ] && [ "$th" = 0 ]; then
    pass "$1"
  else
    fail "$1" "at the source: state $st, throttle_pct $th"
  fi
}

# --downtime-strict with a cap before the throttle gets high enough: fails, lifted.
proxy $PX $PB
RUNDIR=$A xk migrate "$D" 127.0.0.1:$PX --downtime-ms $TARGET --max-iters 3 --downtime-strict \
  --report "$WORK/strict.json" > "$WORK/strict.out" 2>&1
rc=$?
th=$(report_field "$WORK/strict.json" throttle_pct)
if [ $rc != 0 ] && grep -q "cannot be met (max-iters" "$WORK/strict.out" && [ "$th" -gt 0 ]; then
  pass strict-fails
  sed 's/^/#   /' "$WORK/strict.out"
else
  fail strict-fails "rc $rc, throttle $th: $(cat "$WORK/strict.out")"
fi
source_ok strict-lifted

# A destination killed while the guest is throttled.
host_start c --migrate-listen 127.0.0.1:$PC $(migrate_auth) || { fail start "c did not start"; exit 1; }
C=$RUNDIR
RUNDIR=$A
proxy $PX $PC
RUNDIR=$A xk migrate "$D" 127.0.0.1:$PX --downtime-ms 1 > "$WORK/killed.out" 2>&1 &
MIG=$!
seen=
for _ in $(seq 300); do
  th=$(RUNDIR=$A dom_field "$D" throttle_pct)
  [ "$th" != 0 ] && [ "$th" != null ] && { seen=$th; break; }
  sleep 0.1
done
for p in $(host_pids "$C"); do kill -9 "$p" 2>/dev/null; done
wait $MIG
rc=$?
if [ -n "$seen" ] && [ $rc != 0 ] && grep -q "(the guest runs here)" "$WORK/killed.out"; then
  pass killed-destination
  echo "#   throttled at $seen% when the destination was killed"
  sed 's/^/#   /' "$WORK/killed.out"
else
  fail killed-destination "throttle seen: '${seen}', rc $rc: $(cat "$WORK/killed.out")"
fi
source_ok killed-destination-lifted

# Cancelled while the guest is throttled.
proxy $PX $PB
RUNDIR=$A xk migrate "$D" 127.0.0.1:$PX --downtime-ms 1 > "$WORK/cancel.out" 2>&1 &
MIG=$!
seen=
for _ in $(seq 300); do
  th=$(RUNDIR=$A dom_field "$D" throttle_pct)
  [ "$th" != 0 ] && [ "$th" != null ] && { seen=$th; break; }
  sleep 0.1
done
out=$(RUNDIR=$A xk migrate-cancel "$D" 2>&1)
wait $MIG
rc=$?
if [ -n "$seen" ] && [ $rc != 0 ] && grep -q "cancelled (xkvm migrate-cancel)" "$WORK/cancel.out"; then
  pass cancelled
  echo "#   throttled at $seen% when cancelled"
else
  fail cancelled "throttle seen: '${seen}', migrate-cancel: $out, rc $rc: $(cat "$WORK/cancel.out")"
fi
source_ok cancelled-lifted

# --no-auto-converge: the old behaviour, a second such guest stops at the iteration cap
# unthrottled and pauses for as long as the rest takes.
make_cfg "$WORK/g2.cfg" g2 "test=fill mb=1 at=8 dirty_mb=1 period_ms=1" 32 1
D2=$(RUNDIR=$A xk create "$WORK/g2.cfg") || { fail create "xkvm create g2 failed"; exit 1; }
wait_line "$D2" "xtest: fill: ready" 60 >/dev/null || { fail boot "g2 did not start"; exit 1; }
proxy $PX $PB
RUNDIR=$A xk migrate "$D2" 127.0.0.1:$PX --downtime-ms $TARGET --max-iters 4 --no-auto-converge \
  --report "$WORK/noconv.json" > "$WORK/noconv.out" 2>&1
rc=$?
R="$WORK/noconv.json"
if [ $rc = 0 ] && [ "$(report_field "$R" throttle_pct)" = 0 ] &&
   [ "$(report_field "$R" stop)" = max-iters ] && [ "$(RUNDIR=$B dom_field "$D2" state)" = running ]; then
  pass no-auto-converge
  sed 's/^/#   /' "$WORK/noconv.out"
else
  fail no-auto-converge "rc $rc: $(cat "$WORK/noconv.out") report: $(cat "$R" 2>/dev/null)"
fi

# Auto-converge: the rest fits the target once throttled.
proxy $PX $PB
RUNDIR=$A xk migrate "$D" 127.0.0.1:$PX --downtime-ms $TARGET --report "$WORK/conv.json" \
  > "$WORK/conv.out" 2>&1
rc=$?
R="$WORK/conv.json"
th=$(report_field "$R" throttle_pct); est=$(report_field "$R" est_downtime_ms)
if [ $rc = 0 ] && [ "$(report_field "$R" outcome)" = done ] &&
   [ "$(report_field "$R" stop)" = converged ] && [ "$th" -gt 0 ] &&
   python3 -c 'import sys; sys.exit(not float(sys.argv[1]) <= float(sys.argv[2]))' "$est" $TARGET; then
  pass converges
  sed 's/^/#   /' "$WORK/conv.out"
  echo "#   estimated final copy $est ms; measured downtime $(report_field "$R" downtime_ms) ms"
else
  fail converges "rc $rc: $(cat "$WORK/conv.out") report: $(cat "$R" 2>/dev/null)"
fi
st=$(RUNDIR=$B dom_field "$D" state); thb=$(RUNDIR=$B dom_field "$D" throttle_pct)
if [ "$st" = running ] && [ "$thb" = 0 ]; then
  pass destination-unthrottled
else
  fail destination-unthrottled "at the destination: state $st, throttle_pct $thb"
fi
