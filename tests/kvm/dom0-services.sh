#!/usr/bin/env bash
# The dom0 services (xkvm-xenstored, xkvm-consoled, xkvm-blkback, started and
# supervised by xkvmd) against the test guest's frontends (guest/xenbus.c,
# guest/console_ring.c, guest/blkfront.c):
#
#   xenstore          test=xenstore: domid, read/write/rm, watches, transaction
#                     conflict + retry, no access to dom0's nodes
#   xenstore-vector   the same with upcall=vector (HVMOP_set_evtchn_upcall_vector)
#   console-ring      test=console-ring console=ring: 200 lines through the PV console
#                     ring reach RUNDIR/console-N.log (xkvm-consoled)
#   blk               test=blk mb=0 on a 16 MiB raw image (xvda): whole-disk pattern
#                     written, flushed, read back in the guest; the host checks the
#                     image holds the same pattern
#   restart-SERVICE   kill -9 of each service while the guest loops over blk I/O
#                     (test=blk loop=0): xkvmd restarts it and the guest's I/O goes on
#   restart-xenstore-tree  the xenstore tree after the restarts equals the one before,
#                     except nodes the guest writes itself
#   restart-blk       the guest stops on data/blk-stop, passes, the image holds the
#                     last loop's pattern
#
# A check whose service is not built (build/src/dom0/<dir>/<binary>) is SKIPped with
# the reason; with DOM0_SERVICES=0 (lib.sh: xkvmd --no-dom0-services) all are
# SKIPped. xkvmd finds the services itself (src/daemon/services.c); they log to
# RUNDIR/<name>.log and keep their pids in RUNDIR/services/<name>.pid.
source "$(dirname "$0")/lib.sh"
require_kvm

svc_bin() { echo "$BUILD/src/dom0/$2/$1"; }
have_svc() { [ -x "$(svc_bin "$1" "$2")" ] || [ -x "$BUILD/src/daemon/$1" ]; }
HAVE_XS=0; HAVE_CONS=0; HAVE_BLK=0
have_svc xkvm-xenstored xenstored && HAVE_XS=1
have_svc xkvm-consoled consoled && HAVE_CONS=1
have_svc xkvm-blkback blkback && HAVE_BLK=1
echo "# services built: xenstored=$HAVE_XS consoled=$HAVE_CONS blkback=$HAVE_BLK"
if ! command -v xenstore-ls >/dev/null; then
  echo "# no xenstore-ls on this host: tree comparison will be skipped"
fi

ALL_CHECKS="xenstore xenstore-vector console-ring blk restart-xenstored restart-consoled restart-blkback restart-xenstore-tree restart-blk"
if [ "${DOM0_SERVICES:-1}" = 0 ]; then
  for c in $ALL_CHECKS; do skip "$c" "DOM0_SERVICES=0: xkvmd starts no dom0 services"; done
  exit 0
fi
if [ $HAVE_XS = 0 ] && [ $HAVE_CONS = 0 ] && [ $HAVE_BLK = 0 ]; then
  for c in $ALL_CHECKS; do
    skip "$c" "no dom0 service is built yet (looked in $BUILD/src/dom0/*/)"
  done
  exit 0
fi

host_start h1 || { fail start "xkvmd did not start"; exit 1; }
XS_SOCK=$RUNDIR/xenstored/socket
if [ $HAVE_XS = 1 ]; then
  for _ in $(seq 100); do [ -S "$XS_SOCK" ] && break; sleep 0.1; done
  [ -S "$XS_SOCK" ] || echo "# xenstored socket $XS_SOCK did not appear in 10 s"
fi
xsls() { XENSTORED_PATH=$XS_SOCK xenstore-ls -f "$@"; }
xswrite() { XENSTORED_PATH=$XS_SOCK xenstore-write "$@"; }

show_log() {
  local log; log=$(console_log "$1")
  [ -f "$log" ] && tail -n "${2:-12}" "$log" | sed 's/^/#   /'
}
show_svc_logs() {
  local s
  for s in xkvm-xenstored xkvm-consoled xkvm-blkback; do
    [ -f "$RUNDIR/$s.log" ] && tail -n 5 "$RUNDIR/$s.log" | sed "s/^/#   $s: /"
  done
}

# new_dom CFG: create; sets DOMID.
new_dom() {
  local out
  out=$(xk create "$1" 2>&1) || { echo "$out" | sed 's/^/#   /'; return 1; }
  DOMID=$(echo "$out" | tail -n 1)
  case $DOMID in ''|*[!0-9]*) echo "$out" | sed 's/^/#   /'; return 1 ;; esac
}

# expect_pass LABEL DOMID TEST [SECONDS]: result PASS and a poweroff.
expect_pass() {
  local label=$1 id=$2 t=$3 secs=${4:-120} res
  res=$(wait_result "$id" "$t" "$secs")
  if [ "$res" != "xtest: $t: PASS" ]; then
    fail "$label" "guest said: $res"
    show_log "$id"; show_svc_logs
    return 1
  elif ! wait_state "$id" shutdown 10 || [ "$(dom_field "$id" shutdown_reason)" != poweroff ]; then
    fail "$label" "guest passed but did not power off (state $(dom_field "$id" state))"
    return 1
  fi
  return 0
}

# check_image IMG SEED NSECT: the image's first NSECT sectors hold the guest's pattern
# (guest/tests/pv_blk.c) for SEED.
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
        want = struct.pack('<64Q', s, seed, *[(base + steps[i]) & M for i in range(2, 64)])
        if d != want:
            w = struct.unpack('<2Q', d[:16]) if len(d) >= 16 else d
            print(f"sector {s}: starts {w}, want ({s}, {seed})")
            sys.exit(1)
print(f"{nsect} sectors ok")
PY
}

loops_done() { grep -a -c 'xtest: blk: loop [0-9]* seed' "$(console_log "$1")" 2>/dev/null; }

# wait_loops DOMID N SECONDS: until the guest has finished N blk loops.
wait_loops() {
  local i
  for i in $(seq $(($3 * 10))); do
    [ "$(loops_done "$1")" -ge "$2" ] && return 0
    grep -a -q 'xtest: blk: \(PASS\|FAIL\)' "$(console_log "$1")" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

svc_pid() { cat "$RUNDIR/services/$1.pid" 2>/dev/null | head -1; }

# ---- xenstore --------------------------------------------------------------------------
# xenstore-vector: the same with the per-vCPU upcall vector instead of the callback.
for v in "xenstore:" "xenstore-vector:upcall=vector"; do
  label=${v%%:*}; extra=${v#*:}
  if [ $HAVE_XS = 0 ]; then
    skip "$label" "xkvm-xenstored not built ($(svc_bin xkvm-xenstored xenstored))"
    continue
  fi
  make_cfg "$WORK/$label.cfg" "$label" "test=xenstore $extra"
  if new_dom "$WORK/$label.cfg"; then
    expect_pass "$label" "$DOMID" xenstore && pass "$label"
    xk destroy "$DOMID" >/dev/null 2>&1
  else
    fail "$label" "xkvm create failed"
  fi
done

# ---- console ring -----------------------------------------------------------------------
if [ $HAVE_CONS = 0 ]; then
  skip console-ring "xkvm-consoled not built ($(svc_bin xkvm-consoled consoled))"
else
  # console=both: the lines in the ring (console log) and in console_io (dmesg log).
  make_cfg "$WORK/cons.cfg" cons "test=console-ring console=both lines=200"
  if new_dom "$WORK/cons.cfg"; then
    if expect_pass console-ring "$DOMID" console-ring 60; then
      n=$(grep -a -c '^xtest: console-ring: line [0-9]* of 200$' "$(ring_log "$DOMID")")
      if [ "$n" = 200 ]; then pass console-ring
      else fail console-ring "$n of 200 lines reached the log"; show_log "$DOMID"; fi
    fi
    xk destroy "$DOMID" >/dev/null 2>&1
  else
    fail console-ring "xkvm create failed"
  fi
fi

# ---- blk ------------------------------------------------------------------------------------
BLK_OK=0
if [ $HAVE_XS = 0 ] || [ $HAVE_BLK = 0 ]; then
  skip blk "needs xkvm-xenstored and xkvm-blkback (built: xenstored=$HAVE_XS blkback=$HAVE_BLK)"
else
  IMG=$WORK/disk.img
  rm -f "$IMG"; truncate -s 16M "$IMG"
  make_cfg "$WORK/blk.cfg" blk "test=blk mb=0 seed=7" 32 1 "disk = [ '$IMG,raw,xvda,rw' ]"
  if new_dom "$WORK/blk.cfg"; then
    if expect_pass blk "$DOMID" blk 300; then
      sectors=$(grep -a -o 'xtest: blk: sectors=[0-9]*' "$(console_log "$DOMID")" | head -1 | cut -d= -f2)
      if [ "$sectors" != 32768 ]; then
        fail blk "guest saw sectors=$sectors, want 32768 (16 MiB)"
      elif ! out=$(check_image "$IMG" 7 32768); then
        fail blk "image does not hold the guest's pattern: $out"
      else
        pass blk; BLK_OK=1
      fi
    fi
    xk destroy "$DOMID" >/dev/null 2>&1
  else
    fail blk "xkvm create failed"
  fi
fi

# ---- restarts under I/O ------------------------------------------------------------------------
RESTART_CHECKS="restart-xenstored restart-consoled restart-blkback restart-xenstore-tree restart-blk"
if [ $HAVE_XS = 0 ] || [ $HAVE_BLK = 0 ]; then
  for c in $RESTART_CHECKS; do
    skip "$c" "needs xkvm-xenstored and xkvm-blkback for a guest doing I/O"
  done
  exit 0
fi
if [ $BLK_OK = 0 ]; then
  for c in $RESTART_CHECKS; do skip "$c" "the blk check did not pass"; done
  exit 0
fi

IMG2=$WORK/disk2.img
rm -f "$IMG2"; truncate -s 16M "$IMG2"
make_cfg "$WORK/loop.cfg" loop "test=blk mb=2 loop=0 seed=100" 32 1 "disk = [ '$IMG2,raw,xvda,rw' ]"
if ! new_dom "$WORK/loop.cfg"; then
  for c in $RESTART_CHECKS; do fail "$c" "xkvm create failed"; done
  exit 0
fi
LD=$DOMID
if ! wait_loops "$LD" 1 120; then
  for c in $RESTART_CHECKS; do fail "$c" "the guest did not finish a first blk loop"; done
  show_log "$LD"; show_svc_logs
  exit 0
fi

# The tree minus what the guest writes itself (its data/ and its frontend's nodes).
tree() {
  xsls / 2>/dev/null | grep -v -E "^/local/domain/$LD/(data|device/vbd/[0-9]+/(ring-ref|event-channel|state|protocol|feature-persistent))( |/)" | sort
}
HAVE_TREE=0
command -v xenstore-ls >/dev/null && TREE1=$(tree) && [ -n "$TREE1" ] && HAVE_TREE=1

# restart_one NAME BINARY-NAME BUILT
restart_one() {
  local label=$1 name=$2 built=$3 old new n i
  if [ "$built" = 0 ]; then skip "$label" "$name not built"; return; fi
  old=$(svc_pid "$name")
  if [ -z "$old" ] || ! kill -0 "$old" 2>/dev/null; then
    fail "$label" "no running $name (RUNDIR/services/$name.pid: '${old}')"; return
  fi
  n=$(loops_done "$LD")
  kill -9 "$old"
  new=
  for i in $(seq 150); do
    new=$(svc_pid "$name")
    [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && break
    new=; sleep 0.1
  done
  if [ -z "$new" ]; then
    fail "$label" "xkvmd did not restart $name within 15 s"; show_svc_logs; return
  fi
  # Two more loops: one that was running across the kill, one begun after it.
  if wait_loops "$LD" $((n + 2)) 120; then
    pass "$label"
  else
    fail "$label" "guest I/O did not go on after $name restarted (pid $old -> $new; loops $n -> $(loops_done "$LD"))"
    show_log "$LD"; show_svc_logs
  fi
}
restart_one restart-xenstored xkvm-xenstored $HAVE_XS
restart_one restart-consoled xkvm-consoled $HAVE_CONS
restart_one restart-blkback xkvm-blkback $HAVE_BLK

if [ $HAVE_TREE = 0 ]; then
  skip restart-xenstore-tree "no xenstore-ls, or it listed nothing before the restarts"
else
  TREE2=$(tree)
  if [ "$TREE1" = "$TREE2" ]; then
    pass restart-xenstore-tree
  else
    fail restart-xenstore-tree "tree changed across the restarts ($(diff <(echo "$TREE1") <(echo "$TREE2") | grep -c '^[<>]') lines)"
    diff <(echo "$TREE1") <(echo "$TREE2") | head -20 | sed 's/^/#   /'
  fi
fi

# Stop the loop through xenstore; the guest passes after finishing the loop it is in.
if ! xswrite "/local/domain/$LD/data/blk-stop" 1 2>/dev/null; then
  fail restart-blk "xenstore-write of /local/domain/$LD/data/blk-stop failed"
  xk destroy "$LD" >/dev/null 2>&1
  exit 0
fi
if expect_pass restart-blk "$LD" blk 180; then
  last=$(grep -a 'xtest: blk: loop [0-9]* seed' "$(console_log "$LD")" | tail -1)
  seed=$(echo "$last" | sed 's/.* seed \([0-9]*\) ok.*/\1/')
  if ! out=$(check_image "$IMG2" "$seed" 4096); then
    fail restart-blk "image does not hold the last loop's pattern (seed $seed): $out"
  else
    pass restart-blk
  fi
fi
xk destroy "$LD" >/dev/null 2>&1
