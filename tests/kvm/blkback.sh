#!/usr/bin/env bash
# xkvm-blkback end to end, against the test guest's blkfront (guest/tests/pv_blk.c):
#
#   blk               test=blk mb=0 on a 16 MiB raw image (disk = [ 'IMG,raw,xvda,rw' ]):
#                     the guest writes a pattern over the whole disk, flushes, reads
#                     back and checks; the host then checks the image holds it
#   handshake         the backend nodes Linux's blkback writes (features, sectors, info,
#                     sector-size) and both ends Connected
#   kill9-io          kill -9 of xkvm-blkback while the guest loops over I/O
#                     (test=blk loop=0): xkvmd restarts it, it re-attaches to the ring
#                     and the guest's loops go on
#   kill9-xenstore    the xenstore tree after the restarts equals the one before, and no
#                     node of the device was written (xenstored's request log)
#   kill9-data        the guest stops on data/blk-stop and passes; the image holds the
#                     last loop's pattern
#   kill9-reattach    blkback's log says it re-attached without a handshake
#   states            the state machine against a frontend played by this script (a
#                     domain that does not exist): InitWait and features; a 32-bit
#                     protocol refused (error node, Closing); Closed; InitWait again
#                     after Initialising; a ring that cannot be mapped is retried, not
#                     fatal; the device forgotten when its backend directory goes
#   xenstored-restart kill -9 of xkvm-xenstored while the guest does I/O: blkback
#                     reconnects to the new one, the device keeps serving meanwhile
#
# Where the toolstack does not write vbd nodes yet for `disk =`, the test writes
# libxl's layout itself (the domain created paused, then unpaused) and says so.
source "$(dirname "$0")/lib.sh"
require_kvm

BLKBACK=$BUILD/src/dom0/blkback/xkvm-blkback
XSD=$BUILD/src/dom0/xenstored/xkvm-xenstored
CHECKS="blk handshake states kill9-io kill9-xenstore kill9-data kill9-reattach xenstored-restart"
skip_all() { for c in $CHECKS; do skip "$c" "$1"; done; exit 0; }
[ -x "$BLKBACK" ] || skip_all "xkvm-blkback is not built ($BLKBACK)"
[ -x "$XSD" ] || skip_all "xkvm-xenstored is not built ($XSD): no xenstore to meet the guest"
command -v xenstore-ls >/dev/null || skip_all "no xenstore-ls (Debian xen-utils) on this host"
[ -x "$GUEST" ] || skip_all "the test guest is not built ($GUEST)"
grep -q 'test_blk\|"blk"' "$ROOT"/guest/tests/pv_blk.c 2>/dev/null ||
  skip_all "the guest has no test=blk (guest/tests/pv_blk.c)"

host_start h1 || { fail blk "xkvmd did not start"; exit 1; }
XS_SOCK=$RUNDIR/xenstored/socket
for _ in $(seq 100); do [ -S "$XS_SOCK" ] && break; sleep 0.1; done
export XENSTORED_PATH=$XS_SOCK
xsr() { xenstore-read "$@" 2>/dev/null; }
blog() { tail -n "${1:-8}" "$RUNDIR/xkvm-blkback.log" 2>/dev/null | sed 's/^/#   blkback: /'; }
glog() { tail -n "${2:-8}" "$(console_log "$1")" 2>/dev/null | sed 's/^/#   guest: /'; }

# check_image IMG SEED NSECT: the first NSECT sectors hold pv_blk.c's pattern for SEED.
check_image() {
  python3 - "$@" <<'PY'
import struct, sys
img, seed, nsect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
M = (1 << 64) - 1
steps = [(i * 0x165667B19E3779F9) & M for i in range(64)]
sm = (seed * 0xC2B2AE3D27D4EB4F) & M
with open(img, 'rb') as f:
    for s in range(nsect):
        d = f.read(512)
        base = ((s * 0x9E3779B97F4A7C15) & M) ^ sm
        if d != struct.pack('<64Q', s, seed, *[(base + steps[i]) & M for i in range(2, 64)]):
            print(f"sector {s} differs"); sys.exit(1)
print(f"{nsect} sectors ok")
PY
}

# harness_layout DOMID IMG: libxl's vbd layout for xvda (51712), as xkvmd would write it.
HARNESS_LAYOUT=0
harness_layout() {
  local d=$1 img=$2 be=/local/domain/0/backend/vbd/$1/51712 fe=/local/domain/$1/device/vbd/51712
  xenstore-write "$be/frontend" "$fe" "$be/frontend-id" "$d" "$be/online" 1 \
    "$be/state" 1 "$be/params" "$img" "$be/type" phy "$be/mode" w \
    "$be/device-type" disk "$be/dev" xvda "$be/removable" 0 "$be/bootable" 1 &&
  xenstore-write "$fe/backend" "$be" "$fe/backend-id" 0 "$fe/state" 1 \
    "$fe/virtual-device" 51712 "$fe/device-type" disk &&
  xenstore-chmod -r "$be" n0 "r$d" && xenstore-chmod -r "$fe" "n$d" r0
}

# new_blk_dom NAME IMG CMDLINE: create (paused), give it its disk, unpause; sets DOMID.
# A domain whose xenstore layout xkvmd could not commit ("transaction kept
# conflicting" in xkvmd.log: the domain is never introduced to xenstored, its guest
# gets no xenstore replies) is destroyed and created again, up to three times.
new_blk_dom() {
  make_cfg "$WORK/$1.cfg" "$1" "$3" 32 1 "disk = [ '$2,raw,xvda,rw' ]"
  local try
  for try in 1 2 3; do
    DOMID=$(xk create "$WORK/$1.cfg" -p 2>/dev/null | tail -n 1)
    case $DOMID in ''|*[!0-9]*) return 1 ;; esac
    grep -q "d$DOMID: xenstore transaction kept conflicting" "$RUNDIR/xkvmd.log" || break
    echo "# d$DOMID: xkvmd could not commit its xenstore layout (not blkback's): again"
    xk destroy "$DOMID" >/dev/null 2>&1
  done
  if ! xsr "/local/domain/0/backend/vbd/$DOMID/51712/params" >/dev/null; then
    HARNESS_LAYOUT=1
    harness_layout "$DOMID" "$2" || return 1
  fi
  xk unpause "$DOMID" >/dev/null
}

loops_done() { grep -a -c 'xtest: blk: loop [0-9]* seed' "$(console_log "$1")" 2>/dev/null; }
wait_loops() {   # DOMID N SECONDS
  for _ in $(seq $(($3 * 10))); do
    [ "$(loops_done "$1")" -ge "$2" ] && return 0
    grep -a -q 'xtest: blk: \(PASS\|FAIL\)' "$(console_log "$1")" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

# ---- blk, handshake -------------------------------------------------------------------
IMG=$WORK/disk.img
truncate -s 16M "$IMG"
BLK_OK=0
if ! new_blk_dom blk "$IMG" "test=blk mb=0 seed=7"; then
  fail blk "could not create the domain with its disk"; skip handshake "no domain"
else
  [ $HARNESS_LAYOUT = 1 ] && echo "# the toolstack wrote no vbd nodes: the test wrote libxl's layout"
  BE=/local/domain/0/backend/vbd/$DOMID/51712
  FE=/local/domain/$DOMID/device/vbd/51712
  # The handshake is checked while the device is up (the guest closes it when done).
  hs=""
  for _ in $(seq 300); do
    [ "$(xsr "$BE/state")" = 4 ] && [ "$(xsr "$FE/state")" = 4 ] && { hs=ok; break; }
    grep -a -q 'xtest: blk: \(PASS\|FAIL\)' "$(console_log "$DOMID")" 2>/dev/null && break
    sleep 0.1
  done
  want="feature-flush-cache=1 feature-persistent=1 feature-max-indirect-segments=256 \
sectors=32768 info=0 sector-size=512 physical-sector-size=512 max-ring-page-order=4"
  for kv in $want; do
    [ "$(xsr "$BE/${kv%%=*}")" = "${kv#*=}" ] || hs="$hs ${kv%%=*}=$(xsr "$BE/${kv%%=*}")"
  done
  if [ "$hs" = ok ]; then pass handshake
  else fail handshake "not both Connected, or nodes differ:${hs#ok}"; blog; fi
  res=$(wait_result "$DOMID" blk 300)
  if [ "$res" != "xtest: blk: PASS" ]; then
    fail blk "guest said: $res"; glog "$DOMID"; blog
  elif ! out=$(check_image "$IMG" 7 32768); then
    fail blk "image does not hold the guest's pattern: $out"
  else
    pass blk; BLK_OK=1
  fi
  xk destroy "$DOMID" >/dev/null 2>&1
fi

# ---- the state machine, with this script as the frontend ------------------------------
wait_node() {   # PATH VALUE: up to 10 s
  for _ in $(seq 100); do [ "$(xsr "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
SD=77; SBE=/local/domain/0/backend/vbd/$SD/51712; SFE=/local/domain/$SD/device/vbd/51712
SIMG=$WORK/states.img; truncate -s 1M "$SIMG"
st=""
xenstore-write "$SFE/backend" "$SBE" "$SFE/backend-id" 0 "$SFE/state" 1 &&
xenstore-write "$SBE/frontend" "$SFE" "$SBE/frontend-id" $SD "$SBE/online" 1 \
  "$SBE/state" 1 "$SBE/params" "$SIMG" "$SBE/mode" r || st="$st cannot-write"
wait_node "$SBE/state" 2 || st="$st no-InitWait($(xsr "$SBE/state"))"
[ "$(xsr "$SBE/sectors")" = 2048 ] && [ "$(xsr "$SBE/info")" = 4 ] || st="$st sectors/info"
xenstore-write "$SFE/protocol" x86_32-abi "$SFE/ring-ref" 8 "$SFE/event-channel" 5 \
  "$SFE/state" 3
wait_node "$SBE/state" 5 || st="$st 32bit-not-refused($(xsr "$SBE/state"))"
xsr "$SBE/error" | grep -q protocol || st="$st no-error-node"
xenstore-write "$SFE/state" 6
wait_node "$SBE/state" 6 || st="$st no-Closed"
xenstore-write "$SFE/protocol" x86_64-abi "$SFE/state" 1
wait_node "$SBE/state" 2 || st="$st no-InitWait-after-reconnect"
xenstore-write "$SFE/state" 3      # domain 77 does not exist: mapping fails, retried
sleep 3
[ "$(xsr "$SBE/state")" = 2 ] || st="$st unmappable-ring-changed-state($(xsr "$SBE/state"))"
# A removal racing a step: blkback must not bring back a node the toolstack removed
# (Linux's xenbus_switch_state checks the node first). The map retry steps it each second.
xenstore-rm "$SBE/state"; sleep 2.5
[ -z "$(xsr "$SBE/state")" ] || st="$st removed-state-rewritten($(xsr "$SBE/state"))"
xenstore-rm "$SBE"; xenstore-rm "$SFE"
# Removal is noticed by a watch or the 1 s rescan, after any map retry in flight: allow a loaded machine time.
for _ in $(seq 150); do grep -q "$SD/51712: device removed" "$RUNDIR/xkvm-blkback.log" && break; sleep 0.1; done
grep -q "$SD/51712: device removed" "$RUNDIR/xkvm-blkback.log" || st="$st not-forgotten"
if [ -z "$st" ]; then pass states; else fail states "${st# }"; blog 12; fi
xenstore-rm "/local/domain/0/backend/vbd/$SD" 2>/dev/null

# ---- kill -9 while the guest does I/O ----------------------------------------------------
if [ $BLK_OK = 0 ]; then
  for c in kill9-io kill9-xenstore kill9-data kill9-reattach xenstored-restart; do skip "$c" "the blk check did not pass"; done
  exit 0
fi
IMG2=$WORK/disk2.img
truncate -s 8M "$IMG2"
if ! new_blk_dom loop "$IMG2" "test=blk mb=2 loop=0 seed=100"; then
  fail kill9-io "could not create the domain"; exit 0
fi
D=$DOMID
if ! wait_loops "$D" 2 120; then
  fail kill9-io "the guest did not loop over I/O"; glog "$D"; blog; exit 0
fi
xenstore-ls -f > "$WORK/tree-before" 2>&1
xs_log_mark "$RUNDIR" "kill9-d$D" || echo "# cannot turn xenstored's request log on"
PIDFILE=$RUNDIR/services/xkvm-blkback.pid
restarts_ok=1
for round in 1 2 3; do
  old=$(head -1 "$PIDFILE")
  before=$(loops_done "$D")
  kill -9 "$old"
  # xkvmd restarts it (200 ms backoff); the guest's next loops must complete.
  new=""
  for _ in $(seq 100); do
    new=$(head -1 "$PIDFILE" 2>/dev/null)
    [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && break
    sleep 0.1
  done
  if [ -z "$new" ] || [ "$new" = "$old" ]; then
    restarts_ok=0; echo "# round $round: blkback was not restarted"; break
  fi
  if ! wait_loops "$D" $((before + 2)) 120; then
    restarts_ok=0; echo "# round $round: the guest's I/O did not go on"; glog "$D"; blog; break
  fi
  echo "# round $round: blkback $old killed, $new serves; guest loops $before -> $(loops_done "$D")"
done
[ $restarts_ok = 1 ] && pass kill9-io || fail kill9-io "see the lines above"
xenstore-ls -f > "$WORK/tree-after" 2>&1
written=$(device_writes "$RUNDIR" "$D" "control print: kill9-d$D\$")
if [ -n "$written" ]; then
  fail kill9-xenstore "the restarted blkback wrote nodes of the device"
  echo "$written" | head -6 | sed 's/^/#   /'
elif diff -u "$WORK/tree-before" "$WORK/tree-after" > "$WORK/tree.diff"; then
  pass kill9-xenstore
else
  fail kill9-xenstore "the tree changed: $(grep -c '^[-+][^-+]' "$WORK/tree.diff") lines"
  grep '^[-+][^-+]' "$WORK/tree.diff" | head -10 | sed 's/^/#   /'
fi
n=$(grep -c "re-attached to the existing ring" "$RUNDIR/xkvm-blkback.log")
hs=$(grep -c "backend state . -> 4" "$RUNDIR/xkvm-blkback.log")
if [ "$n" -ge 3 ] && [ "$hs" = 2 ]; then pass kill9-reattach
else fail kill9-reattach "re-attached $n times (want 3), handshakes to Connected $hs (want 2)"; fi
# xenstored goes away and comes back (xkvmd restarts it): the ring never stops.
XSPID=$RUNDIR/services/xkvm-xenstored.pid
lost_before=$(grep -c "lost xenstored" "$RUNDIR/xkvm-blkback.log")
before=$(loops_done "$D")
kill -9 "$(head -1 "$XSPID")"
if ! wait_loops "$D" $((before + 2)) 120; then
  fail xenstored-restart "the guest's I/O did not go on"; glog "$D"; blog
else
  for _ in $(seq 100); do
    xenstore-read "/local/domain/0/backend/vbd/$D/51712/state" >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1.5
  # After the last "lost xenstored", a "connected to xenstored".
  if [ "$(grep -c "lost xenstored" "$RUNDIR/xkvm-blkback.log")" -gt "$lost_before" ] &&
     awk '/lost xenstored/ { c = 0 } /connected to xenstored/ { c = 1 } END { exit !c }' \
       "$RUNDIR/xkvm-blkback.log"; then
    pass xenstored-restart
  else
    fail xenstored-restart "blkback did not notice or did not reconnect"; blog
  fi
fi
xenstore-write "/local/domain/$D/data/blk-stop" 1
res=$(wait_result "$D" blk 120)
last=$(grep -a 'xtest: blk: loop [0-9]* seed' "$(console_log "$D")" | tail -1 | strip_dmesg | awk '{print $6}')
if [ "$res" != "xtest: blk: PASS" ]; then
  fail kill9-data "guest said: $res"; glog "$D"
elif ! out=$(check_image "$IMG2" "$last" 4096); then
  fail kill9-data "image does not hold the last loop's pattern (seed $last): $out"
else
  pass kill9-data
fi
xk destroy "$D" >/dev/null 2>&1
