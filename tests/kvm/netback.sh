#!/usr/bin/env bash
# xkvm-netback end to end (docs/netback.md), against the test guest's netfront
# (guest/tests/pv_net.c) and an echo responder (tests/kvm/net-echo.py). Everything
# runs inside a network namespace this suite creates (and removes): xkvmd, its
# services, the bridge xkbr0 the vifs join, the responder on that bridge.
#
#   layout        libxl's vif nodes (backend mac/bridge/handle/type, frontend mac)
#   handshake     backend Connected with Linux's features; the TAP device vifD.0 up
#                 and a port of xkbr0
#   net           test=net: 200 frames out, 200 echoes back, each checked, none lost;
#                 the responder echoed them
#   announce      netback announced the guest's MAC (3 RARPs) on the bridge
#   split         the same with split event channels (event-channel-tx/-rx)
#   kill9         kill -9 of xkvm-netback while the guest loops: xkvmd restarts it, it
#                 re-attaches (its log says so), the guest's rounds go on, the
#                 xenstore tree is unchanged, the MAC is announced again
#   migrate-N     3 live migrations there and back while the guest loops: the rounds
#                 go on on the destination, its netback announces the MAC
#   live-update-N 3 live updates while the guest loops (TAP device and netback untouched)
#   loop-end      the looping guest stops on data/net-stop and passes; losses reported
#   hostile       a guest breaking its tx ring (test=net hostile=1): netback halts that
#                 vif only, stays up (same pid), and another guest's vif still works
source "$(dirname "$0")/lib.sh"
CHECKS="layout handshake net announce split kill9 migrate-1 migrate-2 migrate-3
        live-update-1 live-update-2 live-update-3 loop-end hostile"
skip_all() { for c in $CHECKS; do skip "$c" "$1"; done; exit 0; }

# ---- the namespace: re-run this script inside a fresh one --------------------------
if [ -z "${XKVM_NETBACK_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces, TAP devices)"
  command -v ip >/dev/null || skip_all "no ip (iproute2)"
  NS=xkvm-nb-$$-$RANDOM
  ip netns add "$NS" 2>/dev/null || skip_all "cannot create a network namespace"
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
if [ "$(xsr $BE/mac)" = $MAC ] && [ "$(xsr $BE/bridge)" = xkbr0 ] && [ "$(xsr $BE/handle)" = 0 ] &&
   [ "$(xsr $BE/type)" = vif ] && [ "$(xsr $BE/frontend)" = "$FE" ] && [ "$(xsr $BE/frontend-id)" = "$D" ] &&
   [ "$(xsr $FE/mac)" = $MAC ] && [ "$(xsr $FE/backend)" = "$BE" ] && [ "$(xsr $FE/backend-id)" = 0 ]; then
  pass layout
else
  fail layout "$(xenstore-ls -f "$BE" 2>&1 | head -12 | tr '\n' ';')"
fi
res=$(wait_result "$D" net 120)
if [ "$res" = "xtest: net: PASS" ] && [ "$(echoed)" -ge 200 ]; then
  pass net
  glog "$D" 3 | grep "total"
else
  fail net "guest said: $res; responder echoed $(echoed)"
  glog "$D" 12; nlog 12
fi
if [ "$(xsr $BE/state)" = 4 ] && [ "$(xsr $BE/feature-rx-copy)" = 1 ] && [ "$(xsr $BE/feature-sg)" = 1 ] &&
   [ "$(xsr $BE/feature-split-event-channels)" = 1 ] && [ "$(xsr $BE/multi-queue-max-queues)" = 1 ] &&
   ip -o link show "vif$D.0" | grep -q "master xkbr0" && ip -o link show "vif$D.0" | grep -q ",UP"; then
  pass handshake
else
  fail handshake "state $(xsr $BE/state); $(ip -o link show "vif$D.0" 2>&1)"
fi
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
