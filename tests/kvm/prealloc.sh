#!/usr/bin/env bash
# xkvmd --machine-memory-prealloc (docs/operating.md, "Machine memory"): every frame of
# machine memory is resident from the start and stays so; a freed frame is zeroed
# instead of punched out of the memfd. Checked from the outside:
#   resident-at-start     - xkvmd's resident set holds the whole machine memory
#   default-not-resident  - without the option it does not (the check can fail)
#   kept-after-destroy    - a guest that wrote its memory is destroyed: still resident
#   zero-after-destroy    - and every byte of machine memory reads zero again
#   memory                - the test guest's memory test passes on reused frames
#   migrate-there, -back  - a guest moves to a preallocated host and back (its pages
#                           read in place, not spliced), and runs
#   soak-verdict          - its memory pattern and clock checked every round held
#   zero-after-migrate    - both hosts' machine memory reads zero once it is destroyed
source "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))
MIB=1024

# rss_mib: xkvmd's resident set (its mapping of machine memory is most of it).
rss_mib() {
  awk '/^Rss:/ { print int($2 / 1024) }' "/proc/$(cat "$RUNDIR/xkvmd.pid")/smaps_rollup"
}
# machine_memory_zero: every byte of the memfd is zero (cmp against /dev/zero).
machine_memory_zero() {
  local pid fd
  pid=$(cat "$RUNDIR/xkvmd.pid")
  fd=$(ls -l "/proc/$pid/fd" | awk '/memfd:xkvm-machine-memory/ { print $9; exit }')
  [ -n "$fd" ] && cmp -s -n $((MIB << 20)) "/proc/$pid/fd/$fd" /dev/zero
}
on() { RUNDIR=$1; }

host_start plain || { fail start "plain did not start"; exit 0; }
if [ "$(rss_mib)" -lt $((MIB / 2)) ]; then pass default-not-resident; else
  fail default-not-resident "resident $(rss_mib) MiB without --machine-memory-prealloc"; fi

host_start a --machine-memory-prealloc --migrate-listen 127.0.0.1:$BASE $(migrate_auth) ||
  { fail start "a did not start"; exit 0; }
A=$RUNDIR
host_start b --machine-memory-prealloc --migrate-listen 127.0.0.1:$((BASE + 1)) $(migrate_auth) ||
  { fail start "b did not start"; exit 0; }
B=$RUNDIR
on "$A"
if [ "$(rss_mib)" -ge $((MIB - 8)) ]; then pass resident-at-start; else
  fail resident-at-start "resident $(rss_mib) MiB of $MIB"; fi

# A guest that writes 64 MiB of data, destroyed.
make_cfg "$WORK/f.cfg" f "test=fill mb=64 at=8" 128 1
D=$(xk create "$WORK/f.cfg") || { fail create "xkvm create failed"; exit 0; }
wait_line "$D" "xtest: fill: ready" 60 >/dev/null || fail fill "the guest did not fill its memory"
xk destroy "$D" >/dev/null
if [ "$(rss_mib)" -ge $((MIB - 8)) ]; then pass kept-after-destroy; else
  fail kept-after-destroy "resident $(rss_mib) MiB of $MIB after the destroy"; fi
if machine_memory_zero; then pass zero-after-destroy; else
  fail zero-after-destroy "machine memory holds non-zero bytes with no domain"; fi

run_guest_test memory 64

# There and back: the destination reads the pages straight into frames already
# resident (no splice); the soak guest checks its memory pattern every round.
make_cfg "$WORK/s.cfg" s "test=soak mb=4" 64 1
D=$(xk create "$WORK/s.cfg") || { fail create "xkvm create failed"; exit 0; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || fail soak "the soak guest did not start"
if out=$(xk migrate "$D" 127.0.0.1:$((BASE + 1)) 2>&1) && on "$B" &&
   [ "$(dom_field "$D" state)" = running ]; then pass migrate-there; else
  fail migrate-there "$out"; fi
on "$B"
if out=$(xk migrate "$D" 127.0.0.1:$BASE 2>&1) && on "$A" &&
   [ "$(dom_field "$D" state)" = running ]; then pass migrate-back; else
  fail migrate-back "$out"; fi
on "$A"
sleep 0.5
XENSTORED_PATH="$A/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 60)
if [ "$res" = "xtest: soak: PASS" ]; then pass soak-verdict; else
  fail soak-verdict "guest said: $res"; fi
xk destroy "$D" >/dev/null 2>&1
sleep 0.2
zero=ok
for h in "$A" "$B"; do on "$h"; machine_memory_zero || zero="$h"; done
if [ "$zero" = ok ]; then pass zero-after-migrate; else
  fail zero-after-migrate "machine memory of $zero holds non-zero bytes with no domain"; fi
