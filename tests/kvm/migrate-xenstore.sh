#!/usr/bin/env bash
# A guest's xenstore requests in flight across a migration (docs/migration.md, "xenstored
# stops touching the ring before the last copy"). Both hosts' xenstored answer a guest's
# request 20 ms after taking it from the ring (XKVM_TEST_FAULT=xenstored-slow-reply), as
# on a loaded host; the quiet wait before the last copy is 2 ms, so a request the soak
# guest has just sent is taken from the ring before the copy and answered after it.
# The guest (test=soak: a xenstore write and read every round) moves MOVES times back
# and forth and must go on counting rounds at each destination: a reply lost in a
# move leaves its xenbus waiting for ever (told never to resend, as Linux's). Then a
# migration whose destination dies after the source's END: the guest runs on at the
# source, its ring taken up again
# (CONTROL resume). Then it moves there and back through a host whose xenstored acts as
# one older than `quiesce` (XKVM_TEST_FAULT=xenstored-no-quiesce): its xkvmd warns and
# exports after the last copy. Finally the guest says PASS.
source "$(dirname "$0")/lib.sh"
require_kvm
MOVES=${MOVES:-6}
BASE=$((20000 + RANDOM % 20000))
PA=$BASE; PB=$((BASE + 1)); PF=$((BASE + 2))

export XKVM_TEST_FAULT=xenstored-slow-reply
host_start a --migrate-listen 127.0.0.1:$PA $(migrate_auth) || { fail start "a did not start"; exit 1; }
A=$RUNDIR
host_start b --migrate-listen 127.0.0.1:$PB $(migrate_auth) || { fail start "b did not start"; exit 1; }
B=$RUNDIR
unset XKVM_TEST_FAULT

# Never a resend after a reconnection (the test guest's xenbus does that after 5 s
# without a reply; Linux's does not): a lost reply stops the guest, as it stops Linux.
make_cfg "$WORK/g.cfg" g "test=soak mb=1 xs_reconnect=600000 xs_timeout=600000" 32 1
RUNDIR=$A
D=$(xk create "$WORK/g.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "guest did not start"; exit 1; }

# rounds HOST: how many "round N ok" lines the guest printed there (one every 50).
rounds() { grep -a -c "xtest: soak: round [0-9]* ok" "$1/dmesg-$D.log" 2>/dev/null; }
# counting HOST: the guest runs there and prints a new round line within 60 s.
counting() {
  local r0 t0=$SECONDS
  r0=$(rounds "$1")
  while [ $((SECONDS - t0)) -lt 60 ]; do
    [ "$(rounds "$1")" -gt "$r0" ] && return 0
    sleep 0.2
  done
  return 1
}
# A slow xenstored makes a round take about 40 ms: a round line every 2 s or so.
counting "$A" || { fail boot "the guest counts no rounds"; exit 1; }

HERE=$A; THERE=$B; PORT=$PB
for i in $(seq "$MOVES"); do
  RUNDIR=$HERE
  sleep 0.$((RANDOM % 10))      # land the pause anywhere in a round
  if ! out=$(xk migrate "$D" "127.0.0.1:$PORT" 2>&1); then
    fail "move-$i" "migration failed: $out"; exit 1
  fi
  RUNDIR=$THERE
  if counting "$THERE"; then
    pass "move-$i"
  else
    fail "move-$i" "the guest counts no rounds at the destination (its xenbus waits for a reply); last line: $(tail -1 "$THERE/dmesg-$D.log")"
    exit 1
  fi
  if [ "$HERE" = "$A" ]; then HERE=$B; THERE=$A; PORT=$PA; else HERE=$A; THERE=$B; PORT=$PB; fi
done

# The destination dies after the source sent END: the source takes its ring up again.
XKVM_TEST_FAULT=recv-end host_start f --migrate-listen 127.0.0.1:$PF $(migrate_auth) >/dev/null 2>&1
RUNDIR=$HERE
out=$(xk migrate "$D" "127.0.0.1:$PF" 2>&1)
if [ $? -eq 0 ]; then
  fail resumed "the migration succeeded: $out"
elif counting "$HERE"; then
  pass resumed
else
  fail resumed "after the failed migration ($out) the guest counts no rounds at the source"
fi

# A source whose xenstored is older than its xkvmd (adopted across a live update)
# ignores `quiesce`: xkvmd says so and takes the export after the last copy, as before.
PO=$((BASE + 3))
XKVM_TEST_FAULT=xenstored-no-quiesce host_start o --migrate-listen 127.0.0.1:$PO $(migrate_auth) >/dev/null 2>&1
O=$RUNDIR
HOME_PORT=$([ "$HERE" = "$A" ] && echo "$PA" || echo "$PB")
RUNDIR=$HERE
if ! out=$(xk migrate "$D" "127.0.0.1:$PO" 2>&1) || ! counting "$O"; then
  fail older-xenstored "the move to the host with the older xenstored: ${out:-the guest counts no rounds there}"
else
  RUNDIR=$O
  if ! out=$(xk migrate "$D" "127.0.0.1:$HOME_PORT" 2>&1); then
    fail older-xenstored "the migration from it failed: $out"
  elif ! grep -q "xenstored cannot quiesce the ring" "$O/xkvmd.log"; then
    fail older-xenstored "its xkvmd did not say the ring was not quiesced: $(grep "d$D" "$O/xkvmd.log" | tail -2)"
  elif ! counting "$HERE"; then
    fail older-xenstored "the guest counts no rounds back at $HERE"
  else
    pass older-xenstored
  fi
fi

RUNDIR=$HERE
XENSTORED_PATH="$HERE/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 60)
if [ "$res" = "xtest: soak: PASS" ]; then pass verdict; else fail verdict "guest said: $res"; fi
xk destroy "$D" >/dev/null 2>&1
