#!/usr/bin/env bash
# xkvm-netback end to end (docs/netback.md), against the test guest's netfront
# (guest/tests/pv_net.c) and an echo responder (tests/kvm/net-echo.py). Everything
# runs inside a network namespace this suite creates (and removes): xkvmd, its
# services, the bridge xkbr0 the vifs join, the responder on that bridge.
#
#   layout        libxl's vif nodes (backend mac/bridge/handle/type, frontend mac)
#   handshake     backend Connected with Linux's features (multi-queue-max-queues:
#                 min(online CPUs, 8)); the TAP device vifD.0 up and a port of xkbr0;
#                 a 1-vCPU guest writes no multi-queue-num-queues and gets the flat
#                 single-queue layout
#   multi-queue   a 2-vCPU guest connects 2 queues (queue-0/, queue-1/ nodes); each
#                 queue's frames are echoed back on it (the TAP's flow steering), and
#                 netback counts traffic both ways on both queues
#   queues-over   a frontend asking 9 queues (more than offered) is refused: the
#                 backend's error node and Closing, the guest sees Closing
#   net           test=net: 200 frames out, 200 echoes back, each checked, none lost;
#                 the responder echoed them
#   announce      netback announced the guest's MAC (3 RARPs) on the bridge
#   split         the same with split event channels (event-channel-tx/-rx)
#   rate          rate=200Kb/s: the backend's rate node as libxl writes it; the guest's
#                 frames all go, and netback held some back (its rate waits > 0)
#   top-net       the looping guest's traffic in `xkvm list` (net_tx_bytes,
#                 net_rx_bytes) and `xkvm top` (NETTX/s, NETRX/s), from netback's
#                 RUNDIR/stats/vif-D-H
#   kill9         kill -9 of xkvm-netback while the guest loops: xkvmd restarts it, it
#                 re-attaches (its log says so), the guest's rounds go on, the
#                 xenstore tree is unchanged and no node of it was written (xenstored's
#                 request log), the MAC is announced again
#   migrate-N     3 live migrations there and back while the guest loops: the rounds
#                 go on on the destination, its netback announces the MAC, the vif's
#                 nodes are the source's and none was written on the destination after
#                 xenstored imported the domain (netback re-attached to Connected rings)
#   live-update-N 3 live updates while the guest loops (TAP device and netback
#                 untouched, no node of the vif written)
#   loop-end      the looping guest (2 vCPUs, 2 queues throughout) stops on
#                 data/net-stop and passes, with echoes on both queues; losses reported
#   hostile       a guest breaking its tx ring (test=net hostile=1): netback halts that
#                 vif only, stays up (same pid), and another guest's vif still works
source "$(dirname "$0")/lib.sh"
CHECKS="layout handshake multi-queue queues-over net announce split rate kill9 migrate-1 migrate-2 migrate-3
        live-update-1 live-update-2 live-update-3 loop-end hostile"
skip_all() { for c in $CHECKS; do skip "$c" "$1"; done; exit 0; }

# ---- the namespace: re-run this script inside a fresh one --------------------------
if [ -z "${XKVM_NETBACK_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces, TAP devices)"
  command -v ip >/dev/null || skip_all "no ip (iproute2)"
  NS=xkvm-nb-$$-$RANDOM
  ip netns add "$NS" 2>/dev/null || skip_all "cannot create a network namespace"
  if ! ip netns exec "$NS" true 2>/dev/null; then
    ip netns del "$NS"
    skip_all "cannot enter a network namespace (ip netns exec)"
  fi
  trap - EXIT
  rm -rf "$WORK"
  XKVM_NETBACK_NS=$NS ip netns exec "$NS" "$0" "$@"
  rc=$?
  ip netns del "$NS"
  exit $rc
fi

require_kvm
NETBACK=$BUILD/src/dom0/netback/xkvm-netback
[ -x "$NETBACK" ] || skip_all "xkvm-netback is not built ($NETBACK)"
[ -x "$BUILD/src/dom0/xenstored/xkvm-xenstored" ] || skip_all "xkvm-xenstored is not built"
command -v xenstore-ls >/dev/null || skip_all "no xenstore-ls (Debian xen-utils) on this host"
[ -x "$GUEST" ] || skip_all "the test guest is not built ($GUEST)"
[ -c /dev/net/tun ] || skip_all "no /dev/net/tun"
ip link set lo up
ip link add xkbr0 type bridge || skip_all "cannot create a bridge in the namespace"
ip link set xkbr0 up

ECHO_STATE=$WORK/echo.state
python3 "$ROOT/tests/kvm/net-echo.py" xkbr0 "$ECHO_STATE" &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do [ -s "$ECHO_STATE" ] && break; sleep 0.1; done

BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
host_start h1 --migrate-listen 127.0.0.1:$P1 $(migrate_auth) || { fail net "h1 did not start"; exit 1; }
H1=$RUNDIR
host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) || { fail net "h2 did not start"; exit 1; }
H2=$RUNDIR
on() { RUNDIR=$1; export XENSTORED_PATH=$1/xenstored/socket; }
on "$H1"
for _ in $(seq 100); do [ -S "$XENSTORED_PATH" ] && break; sleep 0.1; done
# Both xenstoreds log every request: who writes a vif's nodes, and when (device_writes).
xs_log_on "$H1" && xs_log_on "$H2" || fail layout "cannot turn xenstored's request log on"
# unwritten HOST D MARK_ERE: no node of D's devices written on HOST since MARK_ERE.
unwritten() {
  local w; w=$(device_writes "$1" "$2" "$3")
  [ -z "$w" ] && return 0
  echo "$w" | head -6 | sed 's/^/#   written: /'
  return 1
}
xsr() { xenstore-read "$@" 2>/dev/null; }
nlog() { tail -n "${1:-8}" "$RUNDIR/xkvm-netback.log" 2>/dev/null | sed 's/^/#   netback: /'; }
glog() { tail -n "${2:-8}" "$(console_log "$1")" 2>/dev/null | sed 's/^/#   guest: /'; }
echoed() { awk '$1 == "echoed" { print $2 }' "$ECHO_STATE"; }
rarps() { awk -v m="$1" '$1 == "rarp" && $2 == m { print $3 }' "$ECHO_STATE"; echo 0; }
rarp_count() { rarps "$1" | head -1; }
netback_pid() { cat "$1/services/xkvm-netback.pid" 2>/dev/null; }

MAC=00:16:3e:4e:42:01
# ---- one guest: layout, handshake, traffic, announce ------------------------------
make_cfg "$WORK/net.cfg" net "test=net count=200" 32 1 "vif = [ 'mac=$MAC,bridge=xkbr0' ]"
D=$(xk create "$WORK/net.cfg") || { fail net "xkvm create failed"; exit 1; }
BE=/local/domain/0/backend/vif/$D/0
FE=/local/domain/$D/device/vif/0
layout_ok() {
  [ "$(xsr $BE/mac)" = $MAC ] && [ "$(xsr $BE/bridge)" = xkbr0 ] && [ "$(xsr $BE/handle)" = 0 ] &&
  [ "$(xsr $BE/type)" = vif ] && [ "$(xsr $BE/frontend)" = "$FE" ] && [ "$(xsr $BE/frontend-id)" = "$D" ] &&
  [ "$(xsr $FE/mac)" = $MAC ] && [ "$(xsr $FE/backend)" = "$BE" ] && [ "$(xsr $FE/backend-id)" = 0 ] &&
  [ "$(xsr $FE/handle)" = 0 ]
}
# The toolstack's worker writes the layout just after the domain is created.
for _ in $(seq 50); do layout_ok && break; sleep 0.1; done
if layout_ok; then
  pass layout
else
  fail layout "$( { xenstore-ls -f "$BE"; xenstore-ls -f "$FE"; } 2>&1 | head -20 | tr '\n' ';')"
fi
res=$(wait_result "$D" net 120)
if [ "$res" = "xtest: net: PASS" ] && [ "$(echoed)" -ge 200 ]; then
  pass net
  glog "$D" 3 | grep "total"
else
  fail net "guest said: $res; responder echoed $(echoed)"
  glog "$D" 12; nlog 12
fi
MAXQ=$(nproc); [ "$MAXQ" -gt 8 ] && MAXQ=8
if [ "$(xsr $BE/state)" = 4 ] && [ "$(xsr $BE/feature-rx-copy)" = 1 ] && [ "$(xsr $BE/feature-sg)" = 1 ] &&
   [ "$(xsr $BE/feature-split-event-channels)" = 1 ] && [ "$(xsr $BE/multi-queue-max-queues)" = "$MAXQ" ] &&
   [ -z "$(xsr $FE/multi-queue-num-queues)" ] && [ -n "$(xsr $FE/tx-ring-ref)" ] &&
   grep -q "netback: $D/0: connected: queue 0 of 1:" "$RUNDIR/xkvm-netback.log" &&
   ip -o link show "vif$D.0" | grep -q "master xkbr0" && ip -o link show "vif$D.0" | grep -q ",UP"; then
  pass handshake
else
  fail handshake "state $(xsr $BE/state), max queues $(xsr $BE/multi-queue-max-queues) (want $MAXQ); $(ip -o link show "vif$D.0" 2>&1)"
fi
# The 3 RARPs go out 50, 150 and 300 ms after the connect; a quick guest can finish
# its 200 echoes before the last one, so wait for them (bounded).
for _ in $(seq 30); do [ "$(rarp_count $MAC)" -ge 3 ] && break; sleep 0.1; done
n=$(rarp_count $MAC)
if [ "$n" -ge 3 ]; then pass announce; else fail announce "$n RARPs from $MAC seen on xkbr0"; fi
xk destroy "$D" >/dev/null 2>&1
for _ in $(seq 50); do ip link show "vif$D.0" >/dev/null 2>&1 || break; sleep 0.1; done
ip link show "vif$D.0" >/dev/null 2>&1 && echo "# vif$D.0 still there after destroy"

make_cfg "$WORK/split.cfg" split "test=net count=50 split=1" 32 1 "vif = [ 'bridge=xkbr0' ]"
D=$(xk create "$WORK/split.cfg") || fail split "xkvm create failed"
res=$(wait_result "$D" net 120)
if [ "$res" = "xtest: net: PASS" ] && [ -n "$(xsr /local/domain/$D/device/vif/0/event-channel-rx)" ]; then
  pass split
else
  fail split "guest said: $res"; glog "$D" 8; nlog 8
fi
xk destroy "$D" >/dev/null 2>&1

# queue_stat D Q FIELD: netback's count for queue Q of vif D/0 at its last disconnect
# (FIELD: tx or rx packets).
queue_stat() {
  grep "netback: $1/0: queue $2: " "$RUNDIR/xkvm-netback.log" | tail -1 |
    sed -n "s/.*$3 \([0-9]*\) packets.*/\1/p" | grep . || echo 0
}
# queues_echoed D: the guest's "queue Q sent S received R same R2" lines all show
# traffic both ways, each echo back on the queue it left.
queues_echoed() {
  strip_dmesg < "$(console_log "$1")" | grep -a "xtest: net: queue" | tail -2 |
    awk '{ n++; if ($6 > 0 && $8 > 0 && $10 == $8) ok++ } END { exit !(n == 2 && ok == 2) }'
}
if [ "$MAXQ" -lt 2 ]; then
  skip multi-queue "netback offers one queue on a host with $(nproc) CPU"
else
  make_cfg "$WORK/mq.cfg" mq "test=net count=200" 32 2 "vif = [ 'bridge=xkbr0' ]"
  D=$(xk create "$WORK/mq.cfg") || fail multi-queue "xkvm create failed"
  res=$(wait_result "$D" net 120)
  FE=/local/domain/$D/device/vif/0
  nodes_ok=0
  [ "$(xsr $FE/multi-queue-num-queues)" = 2 ] && [ -n "$(xsr $FE/queue-0/tx-ring-ref)" ] &&
    [ -n "$(xsr $FE/queue-1/rx-ring-ref)" ] && [ -n "$(xsr $FE/queue-1/event-channel)" ] &&
    [ -z "$(xsr $FE/tx-ring-ref)" ] && nodes_ok=1
  xk destroy "$D" >/dev/null 2>&1
  for _ in $(seq 50); do grep -q "netback: $D/0: disconnected" "$RUNDIR/xkvm-netback.log" && break; sleep 0.1; done
  stats="tx $(queue_stat $D 0 tx)/$(queue_stat $D 1 tx) rx $(queue_stat $D 0 rx)/$(queue_stat $D 1 rx)"
  if [ "$res" = "xtest: net: PASS" ] && [ $nodes_ok = 1 ] && queues_echoed "$D" &&
     grep -q "netback: $D/0: connected: queue 1 of 2:" "$RUNDIR/xkvm-netback.log" &&
     [ "$(queue_stat $D 0 tx)" -gt 0 ] && [ "$(queue_stat $D 1 tx)" -gt 0 ] &&
     [ "$(queue_stat $D 0 rx)" -gt 0 ] && [ "$(queue_stat $D 1 rx)" -gt 0 ]; then
    pass multi-queue; echo "# multi-queue: netback's packets per queue (0/1): $stats"
  else
    fail multi-queue "guest said: $res; nodes $nodes_ok; netback per queue: $stats"
    glog "$D" 8; nlog 8
  fi
fi

# 40 frames of 1400 bytes: more than 25 KB/s on average from any guest that sends
# 18 frames a second (the credit grows with the time since connecting).
make_cfg "$WORK/over.cfg" over "test=net queues_over=1" 32 1 "vif = [ 'bridge=xkbr0' ]"
D=$(xk create "$WORK/over.cfg") || fail queues-over "xkvm create failed"
res=$(wait_result "$D" net 120)
BE=/local/domain/0/backend/vif/$D/0
if [ "$res" = "xtest: net: PASS" ] && [ "$(xsr $BE/state)" = 5 ] &&
   xsr $BE/error | grep -q "more queues than multi-queue-max-queues" &&
   grep -q "netback: $D/0: multi-queue-num-queues: more queues" "$RUNDIR/xkvm-netback.log"; then
  pass queues-over
else
  fail queues-over "guest said: $res; backend state $(xsr $BE/state), error '$(xsr $BE/error)'"
  glog "$D" 4; nlog 4
fi
xk destroy "$D" >/dev/null 2>&1

make_cfg "$WORK/rate.cfg" rate "test=net count=40 size=1400 echo_wait=3000" 32 1 "vif = [ 'bridge=xkbr0,rate=200Kb/s' ]"
D=$(xk create "$WORK/rate.cfg") || fail rate "xkvm create failed"
res=$(wait_result "$D" net 120)
rate_node=$(xsr /local/domain/0/backend/vif/$D/0/rate)
xk destroy "$D" >/dev/null 2>&1
for _ in $(seq 50); do grep -q "netback: $D/0: disconnected" "$RUNDIR/xkvm-netback.log" && break; sleep 0.1; done
waits=$(grep "netback: $D/0: disconnected" "$RUNDIR/xkvm-netback.log" | grep -o "[0-9]* rate waits" | awk '{ print $1 }')
if [ "$res" = "xtest: net: PASS" ] && [ "$rate_node" = "1250,50000" ] && [ "${waits:-0}" -gt 0 ]; then
  pass rate; echo "# rate: netback held the next frame back $waits times"
else
  fail rate "guest said: $res; rate node '$rate_node'; rate waits '${waits:-}'"; nlog 4
fi

# ---- a looping guest: netback killed, the guest moved, xkvmd replaced -------------
# last_round HOST D: the guest's last "round K" line there (0 if none yet).
last_round() {
  strip_dmesg 2>/dev/null < "$1/dmesg-$2.log" | grep -a -o "xtest: net: round [0-9]*" |
    tail -1 | awk '{ print $4 }' | grep . || echo 0
}
# rounds_go_on HOST D: a round after the current one ends there within 30 s.
rounds_go_on() {
  local r0; r0=$(last_round "$1" "$2")
  for _ in $(seq 300); do
    [ "$(last_round "$1" "$2")" -gt "$r0" ] && return 0
    sleep 0.1
  done
  return 1
}
# lost_on HOST D: frames lost in the rounds logged there (the log starts afresh each
# time the domain arrives on a host).
lost_on() {
  strip_dmesg 2>/dev/null < "$1/dmesg-$2.log" | awk '/xtest: net: round/ { l += $10 } END { print l + 0 }'
}
vif_tree() { { xenstore-ls -f "/local/domain/0/backend/vif/$1"; xenstore-ls -f "/local/domain/$1/device/vif"; } 2>&1 | LC_ALL=C sort; }

LMAC=00:16:3e:4e:42:02
LOOP_VCPUS=1; [ "$MAXQ" -ge 2 ] && LOOP_VCPUS=2
make_cfg "$WORK/loop.cfg" loop "test=net loop=0 count=50 echo_wait=300 max_lost=1000000" 32 $LOOP_VCPUS \
  "vif = [ 'mac=$LMAC,bridge=xkbr0' ]"
on "$H1"
D=$(xk create "$WORK/loop.cfg") || { fail kill9 "xkvm create failed"; exit 1; }
if ! rounds_go_on "$H1" "$D"; then
  fail kill9 "the looping guest does not get going"; glog "$D" 10; nlog 10
else
  # What netback counts reaches `xkvm list` and `xkvm top` (its stats file, rewritten
  # at most once a second: top samples over 3 s).
  net_counted() { [ "$(dom_field "$D" net_tx_bytes)" -gt 0 ] 2>/dev/null &&
                  [ "$(dom_field "$D" net_rx_bytes)" -gt 0 ] 2>/dev/null; }
  for _ in $(seq 50); do net_counted && break; sleep 0.1; done
  if net_counted && xk top --json -d 3 | python3 -c '
import json, sys
d = [d for d in json.load(sys.stdin)["domains"] if d["domid"] == int(sys.argv[1])][0]
assert d["net_tx_bytes_per_s"] > 0 and d["net_rx_bytes_per_s"] > 0, d
assert d["net_bytes_per_s"] == d["net_tx_bytes_per_s"] + d["net_rx_bytes_per_s"], d
print("# top-net: tx %.0f B/s, rx %.0f B/s" % (d["net_tx_bytes_per_s"], d["net_rx_bytes_per_s"]))
' "$D" >"$WORK/topnet.out" 2>&1; then
    pass top-net; cat "$WORK/topnet.out"
  else
    fail top-net "list: tx $(dom_field "$D" net_tx_bytes), rx $(dom_field "$D" net_rx_bytes); top: $(tail -2 "$WORK/topnet.out" | tr '\n' ' ')"
  fi
  before=$(vif_tree "$D"); pid0=$(netback_pid "$H1"); r0=$(rarp_count $LMAC); ok=1
  xs_log_mark "$H1" "kill9-d$D"
  for k in 1 2; do
    pid=$(netback_pid "$H1")
    kill -9 "$pid"
    for _ in $(seq 100); do
      p=$(netback_pid "$H1"); [ -n "$p" ] && [ "$p" != "$pid" ] && kill -0 "$p" 2>/dev/null && break
      sleep 0.1
    done
    rounds_go_on "$H1" "$D" && rounds_go_on "$H1" "$D" || { ok=0; echo "# rounds stopped after kill $k"; }
  done
  grep -q "re-attached to the existing rings" "$H1/xkvm-netback.log" || { ok=0; echo "# no re-attach in the log"; }
  after=$(vif_tree "$D")
  [ "$before" = "$after" ] || { ok=0; echo "# the vif's xenstore nodes changed"; diff <(echo "$before") <(echo "$after") | head; }
  [ "$(rarp_count $LMAC)" -gt "$r0" ] || { ok=0; echo "# no announce after the restart"; }
  unwritten "$H1" "$D" "control print: kill9-d$D\$" || { ok=0; echo "# the restarted netback wrote the above"; }
  if [ $ok = 1 ]; then
    pass kill9; echo "# kill9: $(lost_on "$H1" "$D") frames lost so far (netback killed twice)"
  else
    fail kill9 "see above"; nlog 10
  fi
fi

# Three migrations there and back (a move takes the domain to the other host's
# netback: the source's TAP device goes with the source domain, the destination's
# appears and joins xkbr0), then three live updates where it ends.
SRC=$H1; DST=$H2; DPORT=$P2
tree0=$(vif_tree "$D")
for i in 1 2 3; do
  r0=$(rarp_count $LMAC)
  on "$SRC"
  lost_src0=$(lost_on "$SRC" "$D")
  if ! out=$(xk migrate "$D" "127.0.0.1:$DPORT" 2>&1); then
    fail "migrate-$i" "$out"; break
  fi
  on "$DST"
  going=0; rounds_go_on "$DST" "$D" && rounds_go_on "$DST" "$D" && going=1
  for _ in $(seq 30); do [ "$(rarp_count $LMAC)" -ge $((r0 + 3)) ] && break; sleep 0.1; done
  tree=$(vif_tree "$D")
  [ "$tree" = "$tree0" ] || { going=0; echo "# the vif's nodes differ on the destination:"; diff <(echo "$tree0") <(echo "$tree") | head -6; }
  unwritten "$DST" "$D" "CONTROL tx 0 \"import $D " || { going=0; echo "# written on the destination after the import (above)"; }
  if [ $going = 1 ] && [ "$(rarp_count $LMAC)" -ge $((r0 + 3)) ]; then
    pass "migrate-$i"
    echo "# migration $i: $(( $(lost_on "$SRC" "$D") - lost_src0 + $(lost_on "$DST" "$D") )) frames lost in the rounds around the move"
  else
    fail "migrate-$i" "rounds $(last_round "$DST" "$D"), RARPs $(rarp_count $LMAC) (were $r0)"
    glog "$D" 6; nlog 10; break
  fi
  if [ "$SRC" = "$H1" ]; then SRC=$H2; DST=$H1; DPORT=$P1; else SRC=$H1; DST=$H2; DPORT=$P2; fi
done
# Where the guest is now (the loop above may have stopped early).
HERE=$H1; [ "$(RUNDIR=$H2 dom_field "$D" state 2>/dev/null)" = running ] && HERE=$H2
on "$HERE"
lu_lost0=$(lost_on "$HERE" "$D")
for i in 1 2 3; do
  pid=$(netback_pid "$HERE")
  xs_log_mark "$HERE" "live-update-$i-d$D"
  if ! out=$(xk live-update 2>&1); then
    fail "live-update-$i" "$(echo "$out" | tail -2 | tr '\n' ' ')"; continue
  fi
  if rounds_go_on "$HERE" "$D" && rounds_go_on "$HERE" "$D" && [ "$(netback_pid "$HERE")" = "$pid" ] &&
     [ "$(vif_tree "$D")" = "$tree0" ] && unwritten "$HERE" "$D" "control print: live-update-$i-d$D"; then
    pass "live-update-$i"
  else
    fail "live-update-$i" "rounds $(last_round "$HERE" "$D"), netback pid $(netback_pid "$HERE") (was $pid)"
    nlog 8
  fi
done
echo "# live updates: $(( $(lost_on "$HERE" "$D") - lu_lost0 )) frames lost in the rounds during and after 3 updates"
xenstore-write "/local/domain/$D/data/net-stop" 1
res=$(wait_result "$D" net 60)
if [ "$res" = "xtest: net: PASS" ] && { [ $LOOP_VCPUS = 1 ] || queues_echoed "$D"; }; then
  pass loop-end
  strip_dmesg < "$(console_log "$D")" | grep -a "xtest: net: queue" | tail -2 | sed 's/^/# /' 
  echo "# $(strip_dmesg < "$(console_log "$D")" | grep -a "xtest: net: total" | tail -1) (on the last host)"
else
  fail loop-end "guest said: $res"; glog "$D" 8
fi
xk destroy "$D" >/dev/null 2>&1

# ---- hostile: one guest breaks its ring, another keeps working ---------------------
make_cfg "$WORK/bad.cfg" bad "test=net count=20 hostile=1" 32 1 "vif = [ 'bridge=xkbr0' ]"
make_cfg "$WORK/good.cfg" good "test=net count=200" 32 1 "vif = [ 'bridge=xkbr0' ]"
pid=$(netback_pid "$RUNDIR")
BAD=$(xk create "$WORK/bad.cfg") && GOOD=$(xk create "$WORK/good.cfg")
rb=$(wait_result "$BAD" net 120); rg=$(wait_result "$GOOD" net 120)
if [ "$rb" = "xtest: net: PASS" ] && [ "$rg" = "xtest: net: PASS" ] &&
   grep -q "$BAD/0: frontend broke the ring" "$RUNDIR/xkvm-netback.log" &&
   [ "$(netback_pid "$RUNDIR")" = "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  pass hostile
else
  fail hostile "bad: $rb; good: $rg; netback pid $(netback_pid "$RUNDIR") (was $pid)"; nlog 10
fi
xk destroy "$BAD" >/dev/null 2>&1; xk destroy "$GOOD" >/dev/null 2>&1
