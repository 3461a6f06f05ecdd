#!/usr/bin/env bash
# Post-copy (docs/migration.md "Post-copy"): xkvm migrate --postcopy over a link slowed
# by tests/kvm/tcp-fault-proxy.py (rate:N), so the guest faults on pages before the
# background stream has sent them.
#   postcopy-soak        a test=soak guest (checks its memory pattern every round)
#                        moves with --postcopy-after 0 (nothing pre-copied) over a
#                        1.5 MB/s link (its 4.6 MB take 3 s in the background): done,
#                        the guest faulted on missing pages (faults on demand > 0),
#                        it counts on there and says PASS
#   postcopy-fill        a guest dirtying faster than the link completes by post-copy
#                        after its first pass (no throttle needed)
#   postcopy-cancel-refused  migrate-cancel during post-copy: "too late"
#   postcopy-killed      the connection killed mid-post-copy: both sides keep their
#                        copy, paused, listed postcopy-paused; the source's half
#                        cannot be migrated again
#   postcopy-recover-wrong-token  a peer naming the paused domain with a wrong token
#                        is refused, both stay paused
#   postcopy-recover-killed  a recovery whose link is killed too: both paused again
#   postcopy-recovered   a second xkvm migrate-recover over a fresh link completes it: the
#                        source's copy is gone, the guest says PASS at the destination
#   postcopy-ssh-killed  a post-copy over ssh:// (tests/kvm/fake-ssh, slowed) whose ssh
#                        is killed mid-way: both copies postcopy-paused
#   postcopy-ssh-recovered  xkvm migrate-recover DOMAIN ssh://... completes it (a second
#                        migrate-receive at the far end); the guest says PASS there
# A silent link (tcp-fault-proxy.py stall:N: forwards N bytes, then nothing either way,
# closing nothing), hosts with --migrate-stall-timeout 3 (docs/migration.md "A silent link"):
#   precopy-stalled      silent 1 MB into a 24 MB first pass: the source's write times
#                        out, the guest runs on there, nothing left at the destination
#   postcopy-stalled     silent 2 MB into a post-copy: both copies postcopy-paused, each
#                        side by its own timeout, both xkvmds alive
#   postcopy-stalled-recovered  xkvm migrate-recover over a direct link completes it
source "$(dirname "$0")/lib.sh"
require_kvm
PROXY="$(dirname "$0")/tcp-fault-proxy.py"
BASE=$((20000 + RANDOM % 20000))
PB=$BASE; PX=$((BASE + 1))

host_start a $(migrate_auth) || { fail start "a did not start"; exit 1; }
A=$RUNDIR
host_start b --migrate-listen 127.0.0.1:$PB $(migrate_auth) || { fail start "b did not start"; exit 1; }
B=$RUNDIR
RUNDIR=$A

proxy() {   # proxy PORT TARGET RATE: a slow link (one connection)
  rm -f "$WORK/proxy-$1.out"
  python3 "$PROXY" "$1" "$2" rate:$3 > "$WORK/proxy-$1.out" &
  PROXY_PID=$!
  for _ in $(seq 50); do grep -q READY "$WORK/proxy-$1.out" 2>/dev/null && break; sleep 0.1; done
}
report_field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"; }

# A soak guest, nothing pre-copied: every page it touches is fetched on demand.
make_cfg "$WORK/soak.cfg" soak "test=soak mb=4" 32 1
D=$(xk create "$WORK/soak.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "no first round: $(tail -3 "$(console_log "$D")")"; exit 1; }
proxy $PX $PB 1500000
xk migrate "$D" 127.0.0.1:$PX --postcopy-after 0 --report "$WORK/soak.json" > "$WORK/soak.out" 2>&1
rc=$?
if grep -q "post-copy needs userfaultfd" "$WORK/soak.out"; then
  skip postcopy "this host's kernel refuses userfaultfd: $(grep -o 'needs userfaultfd.*' "$WORK/soak.out")"
  exit 0
fi
R="$WORK/soak.json"
od=$(report_field "$R" faults_on_demand); out=$(report_field "$R" outcome)
if [ $rc = 0 ] && [ "$out" = done ] && [ "${od:-0}" != null ] && [ "${od:-0}" -gt 0 ]; then
  pass postcopy-soak-migrated
  sed 's/^/#   /' "$WORK/soak.out"
else
  fail postcopy-soak-migrated "rc $rc, outcome $out, faults on demand $od: $(cat "$WORK/soak.out")"
fi
st=$(RUNDIR=$A dom_field "$D" state)
[ -z "$st" ] && pass postcopy-source-gone || fail postcopy-source-gone "still at the source: $st"
RUNDIR=$B
r0=$(grep -a -c "round [0-9]* ok" "$B/dmesg-$D.log" 2>/dev/null)
XENSTORED_PATH="$B/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 60)
[ "$res" = "xtest: soak: PASS" ] && pass postcopy-soak-verdict ||
  fail postcopy-soak-verdict "guest said: $res ($(tail -3 "$B/dmesg-$D.log"))"
xk destroy "$D" >/dev/null 2>&1
RUNDIR=$A

# A guest dirtying 2 GB/s against a 8 MB/s link: post-copy after its first pass.
make_cfg "$WORK/fill.cfg" fill "test=fill mb=8 at=8 dirty_mb=2 period_ms=1" 32 1
F=$(xk create "$WORK/fill.cfg") || { fail create "xkvm create fill failed"; exit 1; }
wait_line "$F" "xtest: fill: ready" 60 >/dev/null || { fail boot "fill did not start"; exit 1; }
proxy $PX $PB 8000000
xk migrate "$F" 127.0.0.1:$PX --postcopy --no-auto-converge --report "$WORK/fill.json" \
  > "$WORK/fill.out" 2>&1
rc=$?
if [ $rc = 0 ] && [ "$(report_field "$WORK/fill.json" postcopy)" = True ] &&
   [ "$(RUNDIR=$B dom_field "$F" state)" = running ]; then
  pass postcopy-fill
  sed 's/^/#   /' "$WORK/fill.out"
else
  fail postcopy-fill "rc $rc: $(cat "$WORK/fill.out")"
fi
RUNDIR=$B xk destroy "$F" >/dev/null 2>&1

# The link killed mid-post-copy (a cancel before that is refused).
make_cfg "$WORK/big.cfg" big "test=soak mb=4" 64 1
K=$(xk create "$WORK/big.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$K" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "no first round"; exit 1; }
proxy $PX $PB 500000
xk migrate "$K" 127.0.0.1:$PX --postcopy-after 0 --report "$WORK/killed.json" \
  > "$WORK/killed.out" 2>&1 &
MIG=$!
for _ in $(seq 300); do
  [ "$(RUNDIR=$B dom_field "$K" state)" = running ] && break
  sleep 0.1
done
cancel=$(xk migrate-cancel "$K" 2>&1)
if echo "$cancel" | grep -q "too late"; then
  pass postcopy-cancel-refused
  echo "#   $cancel"
else
  fail postcopy-cancel-refused "migrate-cancel said: '$cancel'"
fi
sleep 1
kill "$PROXY_PID" 2>/dev/null
wait $MIG
rc=$?
sa=$(RUNDIR=$A dom_field "$K" state); sb=
for _ in $(seq 100); do
  sb=$(RUNDIR=$B dom_field "$K" state); [ "$sb" = postcopy-paused ] && break; sleep 0.1
done
if [ $rc != 0 ] && [ "$(report_field "$WORK/killed.json" outcome)" = postcopy-paused ] &&
   [ "$sa" = postcopy-paused ] && [ "$sb" = postcopy-paused ]; then
  pass postcopy-killed
  echo "#   source: $sa, destination: $sb"
  sed 's/^/#   /' "$WORK/killed.out"
else
  fail postcopy-killed "rc $rc, source $sa, destination $sb: $(cat "$WORK/killed.out")"
fi
# Either half of the split guest is never sent anywhere again.
out=$(xk migrate "$K" 127.0.0.1:$PB 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q "is postcopy-paused" &&
   [ "$(RUNDIR=$A dom_field "$K" state)" = postcopy-paused ]; then
  pass postcopy-paused-not-sent
else
  fail postcopy-paused-not-sent "$out"
fi
# A stray peer naming the paused domain with a made-up token is refused (plain
# transport only: over TLS it would not get past the handshake), and nothing changes.
if [ "${XKVM_MIGRATE_TRANSPORT:-plain}" = plain ]; then
  ans=$(python3 - "$PB" "$K" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"POSTCOPY-RECOVER %s %s\n" % (sys.argv[2].encode(), b"0" * 32))
print(s.makefile("rb").readline().decode(errors="replace").strip())
PY
)
  if echo "$ans" | grep -q "^ERROR .*no postcopy-paused domain" &&
     [ "$(RUNDIR=$A dom_field "$K" state)" = postcopy-paused ] &&
     [ "$(RUNDIR=$B dom_field "$K" state)" = postcopy-paused ]; then
    pass postcopy-recover-wrong-token
    echo "#   $ans"
  else
    fail postcopy-recover-wrong-token "answer '$ans', source $(RUNDIR=$A dom_field "$K" state), destination $(RUNDIR=$B dom_field "$K" state)"
  fi
else
  echo "SKIP: postcopy-recover-wrong-token: a raw peer cannot speak ${XKVM_MIGRATE_TRANSPORT}"
fi
# A recovery whose link dies too: both copies paused again, as before it.
proxy $PX $PB 200000
xk migrate-recover "$K" 127.0.0.1:$PX > "$WORK/recover1.out" 2>&1 &
REC=$!
for _ in $(seq 100); do
  [ "$(RUNDIR=$B dom_field "$K" state)" = running ] && break
  sleep 0.1
done
sleep 1
kill "$PROXY_PID" 2>/dev/null
wait $REC
rc=$?
sa=; sb=
for _ in $(seq 100); do
  sa=$(RUNDIR=$A dom_field "$K" state); sb=$(RUNDIR=$B dom_field "$K" state)
  [ "$sa" = postcopy-paused ] && [ "$sb" = postcopy-paused ] && break
  sleep 0.1
done
if [ $rc != 0 ] && [ "$sa" = postcopy-paused ] && [ "$sb" = postcopy-paused ]; then
  pass postcopy-recover-killed
  sed 's/^/#   /' "$WORK/recover1.out"
else
  fail postcopy-recover-killed "rc $rc, source $sa, destination $sb: $(cat "$WORK/recover1.out")"
fi
# The operator's way out: xkvm migrate-recover over a fresh link. The destination
# says what it still misses, the paused vCPUs go on as the pages arrive, the source's
# copy goes once the destination has every page.
proxy $PX $PB 1500000
xk migrate-recover "$K" 127.0.0.1:$PX --report "$WORK/recover.json" > "$WORK/recover.out" 2>&1
rc=$?
sb=$(RUNDIR=$B dom_field "$K" state)
if [ $rc = 0 ] && [ "$(report_field "$WORK/recover.json" outcome)" = done ] &&
   [ "$sb" = running ] && [ -z "$(RUNDIR=$A dom_field "$K" state)" ]; then
  pass postcopy-recovered
  sed 's/^/#   /' "$WORK/recover.out"
else
  fail postcopy-recovered "rc $rc, destination $sb, source $(RUNDIR=$A dom_field "$K" state): $(cat "$WORK/recover.out")"
fi
kill "$PROXY_PID" 2>/dev/null
XENSTORED_PATH="$B/xenstored/socket" xenstore-write "/local/domain/$K/data/soak-stop" 1
res=$(RUNDIR=$B wait_result "$K" soak 60)
[ "$res" = "xtest: soak: PASS" ] && pass postcopy-recovered-verdict ||
  fail postcopy-recovered-verdict "guest said: $res ($(tail -3 "$B/dmesg-$K.log"))"
RUNDIR=$B xk destroy "$K" >/dev/null 2>&1

# ---- post-copy through ssh (tests/kvm/fake-ssh stands in for ssh: see migrate-tls.sh) ----
FAKE="$(cd "$(dirname "$0")" && pwd)/fake-ssh"
via_ssh() {    # SUBCOMMAND DOMID [options]: xkvm SUBCOMMAND DOMID ssh://..., from A to B
  local sub=$1 dom=$2; shift 2
  FAKE_SSH_RUNDIR=$B FAKE_SSH_LOG=$WORK/ssh.log RUNDIR=$A \
    xk "$sub" "$dom" ssh://root@far.example:2222 --ssh-command "$FAKE" --remote-xkvm "$XKVM" "$@"
}
# both_paused SRC DST DOMID: wait (at most 30 s) until both list it postcopy-paused.
both_paused() {
  for _ in $(seq 300); do
    [ "$(RUNDIR=$1 dom_field "$3" state)" = postcopy-paused ] &&
      [ "$(RUNDIR=$2 dom_field "$3" state)" = postcopy-paused ] && return 0
    sleep 0.1
  done
  return 1
}
RUNDIR=$A
make_cfg "$WORK/ssh.cfg" sshg "test=soak mb=4" 64 1
S=$(xk create "$WORK/ssh.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$S" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "no first round"; exit 1; }
rm -f "$WORK/ssh.pid" "$WORK/ssh.log"
FAKE_SSH_RATE=500000 FAKE_SSH_PIDFILE=$WORK/ssh.pid via_ssh migrate "$S" --postcopy-after 0 \
  --report "$WORK/ssh-killed.json" > "$WORK/ssh-killed.out" 2>&1 &
MIG=$!
for _ in $(seq 300); do
  [ "$(RUNDIR=$B dom_field "$S" state)" = running ] && break
  sleep 0.1
done
sleep 1
[ -s "$WORK/ssh.pid" ] && kill "$(cat "$WORK/ssh.pid")" 2>/dev/null     # ssh dies
wait $MIG
rc=$?
if [ $rc != 0 ] && [ "$(report_field "$WORK/ssh-killed.json" outcome)" = postcopy-paused ] &&
   [ "$(report_field "$WORK/ssh-killed.json" transport)" = ssh ] && both_paused "$A" "$B" "$S"; then
  pass postcopy-ssh-killed
  sed 's/^/#   /' "$WORK/ssh-killed.out"
else
  fail postcopy-ssh-killed "rc $rc, source $(RUNDIR=$A dom_field "$S" state), destination $(RUNDIR=$B dom_field "$S" state): $(cat "$WORK/ssh-killed.out")"
fi
via_ssh migrate-recover "$S" --report "$WORK/ssh-recover.json" > "$WORK/ssh-recover.out" 2>&1
rc=$?
sb=$(RUNDIR=$B dom_field "$S" state); sa=$(RUNDIR=$A dom_field "$S" state)
if [ $rc = 0 ] && [ "$(report_field "$WORK/ssh-recover.json" outcome)" = done ] &&
   [ "$(report_field "$WORK/ssh-recover.json" transport)" = ssh ] &&
   [ "$sb" = running ] && [ -z "$sa" ] &&
   [ "$(grep -c -- "-p 2222 root@far.example $XKVM migrate-receive" "$WORK/ssh.log")" = 2 ]; then
  pass postcopy-ssh-recovered
  sed 's/^/#   /' "$WORK/ssh-recover.out"
else
  fail postcopy-ssh-recovered "rc $rc, destination $sb, source '$sa', ssh run as: $(cat "$WORK/ssh.log"): $(cat "$WORK/ssh-recover.out")"
fi
XENSTORED_PATH="$B/xenstored/socket" xenstore-write "/local/domain/$S/data/soak-stop" 1
res=$(RUNDIR=$B wait_result "$S" soak 60)
[ "$res" = "xtest: soak: PASS" ] && pass postcopy-ssh-recovered-verdict ||
  fail postcopy-ssh-recovered-verdict "guest said: $res ($(tail -3 "$B/dmesg-$S.log"))"
RUNDIR=$B xk destroy "$S" >/dev/null 2>&1

# ---- a silent link: the proxy stops moving bytes either way and keeps both ends open ----
# Hosts whose migration connections fail after $STALL s of silence (--migrate-stall-timeout).
STALL=3
PC=$((BASE + 2)); PY=$((BASE + 3))
host_start c --migrate-stall-timeout $STALL $(migrate_auth) || { fail start "c did not start"; exit 1; }
C=$RUNDIR
host_start d --migrate-listen 127.0.0.1:$PC --migrate-stall-timeout $STALL $(migrate_auth) ||
  { fail start "d did not start"; exit 1; }
DD=$RUNDIR
RUNDIR=$C
stall_proxy() {   # PORT TARGET N: forward N bytes, then nothing either way
  rm -f "$WORK/proxy-$1.out"
  python3 "$PROXY" "$1" "$2" stall:$3 > "$WORK/proxy-$1.out" &
  PROXY_PID=$!
  for _ in $(seq 50); do grep -q READY "$WORK/proxy-$1.out" 2>/dev/null && break; sleep 0.1; done
}
ndoms() { RUNDIR=$1 xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("domains", d) if isinstance(d, dict) else d))'; }
alive() { kill -0 "$(cat "$C/xkvmd.pid")" 2>/dev/null && kill -0 "$(cat "$DD/xkvmd.pid")" 2>/dev/null; }

# Pre-copy: the link goes silent 1 MB into the first pass of a guest with 24 MB of
# random data (more than the sockets between can hold), so the source's write blocks:
# it fails after the stall timeout and the guest runs on there; the destination's read
# fails likewise and it removes what it built.
cpu_ns() { RUNDIR=$1 dom_field "$2" cpu_ns; }
make_cfg "$WORK/pre.cfg" pre "test=fill mb=24 at=8 dirty_mb=1 period_ms=100" 64 1
G=$(xk create "$WORK/pre.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$G" "xtest: fill: ready" 60 >/dev/null || { fail boot "fill did not start"; exit 1; }
stall_proxy $PY $PC 1000000
out=$(timeout 30 "$XKVM" --rundir "$C" migrate "$G" 127.0.0.1:$PY --report "$WORK/pre.json" 2>&1)
rc=$?
nd=1
for _ in $(seq 100); do nd=$(ndoms "$DD"); [ "$nd" = 0 ] && break; sleep 0.1; done
e0=$(cpu_ns "$C" "$G"); sleep 1; e1=$(cpu_ns "$C" "$G")
if [ $rc = 124 ]; then
  fail precopy-stalled "xkvm migrate still waiting after 30 s on a link silent for $STALL s"
elif [ $rc = 0 ] || [ "$(report_field "$WORK/pre.json" outcome)" != resumed ] ||
     ! grep -q STALLED "$WORK/proxy-$PY.out"; then
  fail precopy-stalled "rc $rc: $out"
elif [ "$nd" != 0 ]; then
  fail precopy-stalled "the destination still lists $nd domain(s): $(RUNDIR=$DD xk list 2>&1)"
elif [ "$(dom_field "$G" state)" != running ] || ! [ "${e1:-0}" -gt "${e0:-0}" ] || ! alive; then
  fail precopy-stalled "the guest does not run on at the source (state $(dom_field "$G" state), cpu_ns $e0 -> $e1)"
else
  pass precopy-stalled
  echo "$out" | sed 's/^/#   /'
  grep -a "incoming migration from" "$DD/xkvmd.log" | tail -1 | sed 's/^/#   destination: /'
fi
kill "$PROXY_PID" 2>/dev/null
xk destroy "$G" >/dev/null 2>&1

# Post-copy: the link goes silent 2 MB in (after the switch: nothing is pre-copied, and
# before the end: the soak guest's pages are some 4.6 MB). Each side gives up on its
# own (the proxy closes neither), both copies paused; a fresh direct link recovers it.
make_cfg "$WORK/stall.cfg" stall "test=soak mb=4" 64 1
H=$(xk create "$WORK/stall.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$H" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "no first round"; exit 1; }
stall_proxy $PY $PC 2000000
timeout 30 "$XKVM" --rundir "$C" migrate "$H" 127.0.0.1:$PY --postcopy-after 0 \
  --report "$WORK/stall.json" > "$WORK/stall.out" 2>&1
rc=$?
if [ $rc != 124 ] && [ $rc != 0 ] && [ "$(report_field "$WORK/stall.json" outcome)" = postcopy-paused ] &&
   both_paused "$C" "$DD" "$H" && alive; then
  pass postcopy-stalled
  sed 's/^/#   /' "$WORK/stall.out"
  grep -a "d$H: post-copy connection lost" "$DD/xkvmd.log" | tail -1 | sed 's/^/#   destination: /'
else
  fail postcopy-stalled "rc $rc, source $(RUNDIR=$C dom_field "$H" state), destination $(RUNDIR=$DD dom_field "$H" state): $(cat "$WORK/stall.out")"
fi
# The silent link stays open (the proxy lives on): the recovery goes around it.
RUNDIR=$C xk migrate-recover "$H" 127.0.0.1:$PC --report "$WORK/stall-recover.json" \
  > "$WORK/stall-recover.out" 2>&1
rc=$?
sb=$(RUNDIR=$DD dom_field "$H" state); sa=$(RUNDIR=$C dom_field "$H" state)
if [ $rc = 0 ] && [ "$(report_field "$WORK/stall-recover.json" outcome)" = done ] &&
   [ "$sb" = running ] && [ -z "$sa" ]; then
  pass postcopy-stalled-recovered
  sed 's/^/#   /' "$WORK/stall-recover.out"
else
  fail postcopy-stalled-recovered "rc $rc, destination $sb, source '$sa': $(cat "$WORK/stall-recover.out")"
fi
kill "$PROXY_PID" 2>/dev/null
XENSTORED_PATH="$DD/xenstored/socket" xenstore-write "/local/domain/$H/data/soak-stop" 1
res=$(RUNDIR=$DD wait_result "$H" soak 60)
[ "$res" = "xtest: soak: PASS" ] && pass postcopy-stalled-verdict ||
  fail postcopy-stalled-verdict "guest said: $res ($(tail -3 "$DD/dmesg-$H.log"))"
RUNDIR=$DD xk destroy "$H" >/dev/null 2>&1
