#!/usr/bin/env bash
# What an unauthenticated migration peer can hold on a destination (docs/migration.md,
# "Incoming limits"). The destination runs with a short --migrate-timeout and small
# caps; hostile peers (tests/kvm/migrate-peer.py) replay the start of a real save image
# with their own domid and memory claim:
# - a claim over --migrate-max-memory is refused with an ERROR line before anything is
#   built: free memory unchanged;
# - a claim that would take the incoming total over --migrate-max-total is refused;
# - four peers that send their config and then a byte now and then get their domains
#   built, but those domains are not listed, not addressable and not counted; a fifth
#   peer is refused clearly; all four are cut off at the deadline and every frame
#   comes back;
# - a peer that drops and re-adds toolstack pages (XTAB / XALLOC) 20,000 times holds no
#   more than its admitted claim; one that sends a 16 MiB record before its config is
#   refused before xkvmd buffers it;
# - a real live migration (of a guest named as the squatters' were) then succeeds.
source "$(dirname "$0")/lib.sh"
require_kvm
PEER="$(dirname "$0")/migrate-peer.py"
BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
TIMEOUT=10

host_start src --migrate-listen 127.0.0.1:$P1 --migrate-insecure || { fail start "source did not start"; exit 1; }
SRC=$RUNDIR
host_start dst --migrate-listen 127.0.0.1:$P2 --migrate-insecure --migrate-timeout $TIMEOUT \
  --migrate-max-memory 128M --migrate-max-total 280M ||
  { fail start "destination did not start with the incoming limits"; exit 1; }
DST=$RUNDIR
on() { RUNDIR=$1; }

make_cfg "$WORK/g.cfg" g "test=soak mb=4" 32 1
on "$SRC"
D=$(xk create "$WORK/g.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "guest did not start"; exit 1; }
IMG=$WORK/g.img
xk save "$D" "$IMG" --keep >/dev/null || { fail save "xkvm save --keep failed"; exit 1; }

on "$DST"
FREE0=$(info_field free_memory_kb)
peer() { python3 "$PEER" "$IMG" $P2 "$@"; }

# ---- one claim over the per-migration cap ----
out=$(peer --domid 150 --memory 192 --max 10)
if echo "$out" | grep -q "^LINE ERROR .*--migrate-max-memory" && echo "$out" | grep -q "^CLOSED" &&
   [ "$(info_field free_memory_kb)" = "$FREE0" ]; then
  pass over-cap-refused
else
  fail over-cap-refused "peer saw: $(echo "$out" | tr '\n' '|'); free $FREE0 -> $(info_field free_memory_kb) KiB"
fi

# ---- page churn: frames dropped with XTAB go back; no pile-up beyond the claim ----
peer --domid 160 --memory 32 --churn 20000 --max $((TIMEOUT + 5)) > "$WORK/churn.out" &
for _ in $(seq 100); do grep -q '^CHURNED' "$WORK/churn.out" 2>/dev/null && break; sleep 0.1; done
FREEC=$FREE0      # the lowest free memory seen while the records are worked through
for _ in $(seq 30); do
  f=$(info_field free_memory_kb); [ "$f" -lt "$FREEC" ] && FREEC=$f; sleep 0.2
done
wait
used=$((FREE0 - FREEC))
if grep -q '^CHURNED' "$WORK/churn.out" && [ $used -le $(((32 + 1) * 1024)) ]; then
  pass churn-bounded
else
  fail churn-bounded "a 32 MiB claim holds $used KiB after 20000 drop/re-add records ($(tr '\n' '|' < "$WORK/churn.out"))"
fi
for _ in $(seq 50); do [ "$(info_field free_memory_kb)" = "$FREE0" ] && break; sleep 0.1; done

# ---- a big record before the config: refused, not buffered ----
out=$(peer --domid 170 --memory 16 --big-optional 16 --max 10)
if echo "$out" | grep -q "^CLOSED" && grep -q "exceeds the cap" "$DST/xkvmd.log"; then
  pass big-record-before-config
else
  fail big-record-before-config "peer saw: $(echo "$out" | tr '\n' '|'); log: $(grep -a 'incoming' "$DST/xkvmd.log" | tail -1)"
fi

# ---- squatters: config, then a byte a second ----
T0=$(date +%s)
for i in 1 2 3; do
  peer --domid $((200 + i)) --memory 80 --trickle 1 --max $((TIMEOUT + 15)) > "$WORK/squat-$i.out" &
done
# ready N FILE...: each file has a READY line (10 s at most).
ready() {
  for _ in $(seq 100); do
    local n=0 f
    for f in "$@"; do grep -q "^LINE READY" "$f" 2>/dev/null && n=$((n + 1)); done
    [ $n = $# ] && return 0
    sleep 0.1
  done
  return 1
}
ready "$WORK"/squat-{1,2,3}.out || fail squatters-admitted "$(cat "$WORK"/squat-*.out | tr '\n' '|')"
out=$(peer --domid 210 --memory 80 --max 10)
if echo "$out" | grep -q "^LINE ERROR .*--migrate-max-total"; then pass total-cap-refused; else
  fail total-cap-refused "peer saw: $(echo "$out" | tr '\n' '|')"; fi
peer --domid 204 --memory 32 --trickle 1 --max $((TIMEOUT + 15)) > "$WORK/squat-4.out" &
ready "$WORK"/squat-{1,2,3,4}.out && pass squatters-admitted ||
  fail squatters-admitted "$(cat "$WORK"/squat-*.out | tr '\n' '|')"

# Built (their memory is taken), yet invisible: not listed, counted or addressable.
FREE1=$(info_field free_memory_kb)
listed=$(xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("domains",d) if isinstance(d,dict) else d; print(" ".join(str(x["domid"]) for x in d))')
if [ $((FREE0 - FREE1)) -ge $(((3 * 80 + 32) * 1024)) ] && [ -z "$listed" ] &&
   [ "$(info_field nr_domains)" = 0 ] && ! xk destroy 201 >/dev/null 2>&1 &&
   ! xk pause 204 >/dev/null 2>&1; then
  pass incoming-invisible
else
  fail incoming-invisible "free $FREE0 -> $FREE1 KiB, listed '$listed', nr_domains $(info_field nr_domains)"
fi
out=$(peer --domid 220 --memory 16 --max 10)
if echo "$out" | grep -q "^LINE ERROR too many incoming migrations.*try again later"; then
  pass fifth-refused
else
  fail fifth-refused "peer saw: $(echo "$out" | tr '\n' '|')"
fi

# ---- the deadline: every squatter cut off, every frame back ----
wait
cut=0
for i in 1 2 3 4; do
  s=$(awk '/^CLOSED/ {print int($2)}' "$WORK/squat-$i.out")
  [ -n "$s" ] && [ "$s" -le $((TIMEOUT + 3)) ] && cut=$((cut + 1))
done
for _ in $(seq 50); do [ "$(info_field free_memory_kb)" = "$FREE0" ] && break; sleep 0.1; done
if [ $cut = 4 ] && [ "$(info_field free_memory_kb)" = "$FREE0" ] &&
   grep -q "cut off: not complete within --migrate-timeout" "$DST/xkvmd.log"; then
  pass squatters-cut-off
else
  fail squatters-cut-off "$cut of 4 cut off in time ($(tail -qn1 "$WORK"/squat-*.out | tr '\n' ' ')); free $FREE0 -> $(info_field free_memory_kb) KiB"
fi
echo "# squatters held their slots for $(( $(date +%s) - T0 )) s (deadline $TIMEOUT s)"

# ---- a real migration still gets in ----
on "$SRC"
if out=$(xk migrate "$D" "127.0.0.1:$P2" 2>&1) && [ "$(RUNDIR=$DST dom_field "$D" state)" = running ] &&
   [ "$(RUNDIR=$DST dom_field "$D" name)" = g ]; then
  pass real-migration-after
else
  fail real-migration-after "$out"
fi
