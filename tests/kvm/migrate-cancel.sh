#!/usr/bin/env bash
# xkvm migrate-cancel (docs/migration.md, "Cancel"): a live migration slowed down by a
# proxy (tests/kvm/tcp-fault-proxy.py rate:N, a 1 MB/s link) is cancelled from another
# shell once the destination has built its copy. The migrate command fails saying so,
# the guest runs on at the source, the destination removes its copy (nothing listed,
# free memory back); a cancel with no migration running is refused (ENOENT); the same
# guest then migrates normally.
source "$(dirname "$0")/lib.sh"
require_kvm
PROXY="$(dirname "$0")/tcp-fault-proxy.py"
BASE=$((20000 + RANDOM % 20000))
PB=$BASE; PX=$((BASE + 1))

host_start a $(migrate_auth) || { fail start "a did not start"; exit 1; }
A=$RUNDIR
host_start b --migrate-listen 127.0.0.1:$PB $(migrate_auth) || { fail start "b did not start"; exit 1; }
B=$RUNDIR
make_cfg "$WORK/g.cfg" g "test=soak mb=4" 32 1
RUNDIR=$A
D=$(xk create "$WORK/g.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "guest did not start"; exit 1; }
FREE_B=$(RUNDIR=$B info_field free_memory_kb)
rounds() { grep -a -c "xtest: soak: round [0-9]* ok" "$A/dmesg-$D.log"; }
ndoms() { RUNDIR=$1 xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("domains", d) if isinstance(d, dict) else d))'; }

python3 "$PROXY" $PX $PB rate:1000000 > "$WORK/proxy.out" &
for _ in $(seq 50); do grep -q READY "$WORK/proxy.out" && break; sleep 0.1; done
xk migrate "$D" 127.0.0.1:$PX > "$WORK/migrate.out" 2>&1 &
MIG=$!
built=
for _ in $(seq 200); do
  grep -q "built 'g' for restore" "$B/xkvmd.log" && { built=1; break; }
  sleep 0.1
done
sleep 1         # pages are flowing
out=$(xk migrate-cancel "$D" 2>&1)
crc=$?
wait $MIG
mrc=$?
n0=$(rounds)
gone=
for _ in $(seq 100); do
  [ "$(ndoms "$B")" = 0 ] && [ "$(RUNDIR=$B info_field free_memory_kb)" = "$FREE_B" ] && { gone=1; break; }
  sleep 0.1
done
runs=
for _ in $(seq 300); do
  [ "$(rounds)" -gt "$n0" ] && [ "$(dom_field "$D" state)" = running ] && { runs=1; break; }
  sleep 0.1
done
if [ -z "$built" ]; then
  fail cancel "the destination never built its copy: $(tail -2 "$B/xkvmd.log")"
elif [ $crc != 0 ]; then
  fail cancel "migrate-cancel said: $out"
elif [ $mrc = 0 ] || ! grep -q "cancelled (xkvm migrate-cancel).*(the guest runs here)" "$WORK/migrate.out"; then
  fail cancel "xkvm migrate said: $(cat "$WORK/migrate.out")"
elif [ -z "$runs" ]; then
  fail cancel "the guest does not run on at the source"
elif [ -z "$gone" ]; then
  fail cancel "the destination kept something: $(ndoms "$B") domain(s), free $FREE_B -> $(RUNDIR=$B info_field free_memory_kb) KiB"
else
  pass cancel
  sed 's/^/#   /' "$WORK/migrate.out"
  grep -a "incoming domain removed\|incoming migration from" "$B/xkvmd.log" | tail -1 | sed 's/^/#   destination: /'
fi

out=$(xk migrate-cancel "$D" 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q "no migration of domain"; then
  pass cancel-nothing-running
else
  fail cancel-nothing-running "migrate-cancel said: $out"
fi

if out=$(xk migrate "$D" 127.0.0.1:$PB 2>&1) && [ "$(RUNDIR=$B dom_field "$D" state)" = running ]; then
  pass migrate-after-cancel
else
  fail migrate-after-cancel "xkvm migrate said: $out"
fi
