#!/usr/bin/env bash
# Live update (issue 7, docs/live-update.md): replace xkvmd in place while guests run.
#
#   lu-accepts          xkvmd --lu-accepts says yes to its own version, no to a newer
#                       minor or another major (no KVM needed)
#   rollback-exec-*     (no KVM needed) a new xkvmd given a bad image, an image whose
#                       fds did not survive, an injected fault or a crash at start-up
#                       exec's the old binary with --lu-rollback and the reason, without
#                       the fault variable; one that already is the rollback gives up
#                       instead of looping
#   boot                NDOMS domains run test=soak (memory pattern, block I/O with
#                       verification, a xenstore watch, events, time checks)
#   updates-N           N live updates in a row (make test: 3; make soak: 20), the default
#                       way (beside: a new xkvmd pid each time, in the pid file, the old
#                       one gone), each with
#                       --verify-memory (every guest frame hashed while paused, before
#                       and after: identical): every domid, port and
#                       xenstore node unchanged, dom0 services never restarted, every
#                       soak counting rounds again, every p2m passing its audit, a soak
#                       printing its round line again (its largest clock-read gap across
#                       the update is printed beside xkvmd's downtime: the guest's view)
#   exec-updates-3      3 more with --exec: as updates-N, and the same xkvmd pid
#   keeps-paused        a domain paused by the toolstack comes out paused
#   rollback-PHASE      the new binary fails at PHASE (startup, bad-image, pass0, crash,
#                       pass1, pass2, before-unpause): the old one restores the domains,
#                       the CLI says what failed, the guests go on
#   holder              the process holding the old address space across each exec is
#                       released by the new binary and reaped, also after two updates
#                       back to back (none left behind, none failed to start)
#   cross-version       old -> xkvmd-lu-next (minor + 1, a record type and an internal
#                       structure of its own) -> the same again
#   beside-updates-3    3 updates with --beside (a new process started beside the old one
#                       builds the VMs while the guests run): as updates-N, but the CLI,
#                       the pid file and systemd get the new pid and the old one exits
#   beside-keeps-paused as keeps-paused, beside
#   default-is-beside   "xkvm live-update" with no option goes beside (the new binary's
#                       --lu-accepts answer says it can)
#   beside-rebuilt      a domain taken for changed between the build and the pause
#                       (XKVM_LU_FAULT=changed) is built again in the pause: as updates-N
#   beside-rollback-PHASE  the new process fails at PHASE (startup, bad-image, pass0 while
#                       it builds the VMs; crash, pass1, pass2, before-unpause in the
#                       pause): the old one keeps the domains and its pid, the new one is
#                       gone, the guests go on
#   beside-old-gone     the old xkvmd dies in the pause after handing over the image
#                       (XKVM_LU_FAULT=old-gone): the new one runs the guests, pid file
#                       and guests carry on
#   beside-cross-version  beside to xkvmd-lu-next and back to this build
#   refuse-major        an xkvmd of a newer major version hands over to an older one:
#                       refused before anything is paused
#   soak-verdict        every guest says PASS at the end: no anomaly
source "$(dirname "$0")/lib.sh"
UPDATES=${UPDATES:-3}
NDOMS=${NDOMS:-4}
[ "${XKVM_SOAK:-0}" = 1 ] && UPDATES=20
NEXT=$BUILD/src/daemon/xkvmd-lu-next
MAJOR=$BUILD/src/daemon/xkvmd-lu-major

# ---- the version handshake (no KVM) ----
# This build's image version, as xkvmd says it ("... (is M.m)").
ver=$("$XKVMD" --lu-accepts 0.0 | sed -n 's/.*(is \([0-9]*\.[0-9]*\)).*/\1/p')
maj=${ver%%.*}; min=${ver#*.}
if [ -z "$ver" ]; then
  fail lu-accepts "xkvmd --lu-accepts did not say its version"
elif ! "$XKVMD" --lu-accepts "$maj.$min" >/dev/null ||
     "$XKVMD" --lu-accepts "$maj.$((min + 1))" >/dev/null ||
     "$XKVMD" --lu-accepts "$((maj + 1)).0" >/dev/null; then
  fail lu-accepts "xkvmd --lu-accepts gave the wrong verdicts"
elif [ -x "$NEXT" ] && [ -x "$MAJOR" ] &&
     { ! "$NEXT" --lu-accepts "$maj.$min" >/dev/null || "$MAJOR" --lu-accepts "$maj.$min" >/dev/null; }; then
  fail lu-accepts "xkvmd-lu-next or xkvmd-lu-major gave the wrong verdicts"
else
  pass lu-accepts
fi

# ---- the rollback's exec (no KVM): the new binary hands back before touching KVM ----
# A stand-in for the old binary records how it was exec'd; fd 5 is the image, fd 6
# the "old binary", as xkvmd passes them (--lu-resume IMAGE_FD,OLD_BINARY_FD).
printf '#!/bin/sh\n{ printf "%%s\\n" "$@"; env | grep "^XKVM_LU_FAULT=" ; } > "%s"\n' \
  "$WORK/rollback-args" > "$WORK/old-xkvmd"
chmod +x "$WORK/old-xkvmd"
printf 'garbage' > "$WORK/bad.img"
SEED=$ROOT/tests/fuzz/corpus/lu-image/two.bin   # a valid image naming fds it does not have
# rollback_exec NAME IMAGE WANT [ENV...]: the new xkvmd must exec the old one with
# --lu-rollback and a reason containing WANT, and without XKVM_LU_FAULT.
rollback_exec() {
  local name=$1 img=$2 want=$3; shift 3
  rm -f "$WORK/rollback-args"
  ( exec 5<"$img" 6<"$WORK/old-xkvmd"
    env "$@" "$XKVMD" --foreground --rundir "$WORK/hx" --lu-resume 5,6 ) 2>"$WORK/$name.log"
  if [ -f "$WORK/rollback-args" ] && grep -q -- "^--lu-rollback$" "$WORK/rollback-args" &&
     grep -q -- "$want" "$WORK/rollback-args" && grep -q -- "^--lu-resume$" "$WORK/rollback-args" &&
     ! grep -q "^XKVM_LU_FAULT=" "$WORK/rollback-args"; then
    pass "$name"
  else
    fail "$name" "$(tr '\n' ' ' < "$WORK/rollback-args" 2>/dev/null) / $(tail -2 "$WORK/$name.log" | tr '\n' ' ')"
  fi
}
rollback_exec rollback-exec-bad-image "$WORK/bad.img" "not a live-update image"
rollback_exec rollback-exec-lost-fds "$SEED" "did not survive exec"
rollback_exec rollback-exec-fault "$SEED" "injected fault" XKVM_LU_FAULT=startup
rollback_exec rollback-exec-crash "$SEED" "crashed (signal 11)" XKVM_LU_FAULT=startup-crash
# Already the rollback: no second one (no loop); it gives up with a message.
rm -f "$WORK/rollback-args"
( exec 5<"$WORK/bad.img" 6<"$WORK/old-xkvmd"
  "$XKVMD" --foreground --rundir "$WORK/hx" --lu-resume 5,6 --lu-rollback earlier ) 2>"$WORK/rb2.log"
if [ $? != 0 ] && [ ! -f "$WORK/rollback-args" ] && grep -q "giving up" "$WORK/rb2.log"; then
  pass rollback-exec-no-loop
else
  fail rollback-exec-no-loop "$(tail -2 "$WORK/rb2.log" | tr '\n' ' ')"
fi

require_kvm

host_start h1 || { fail start "h1 did not start"; exit 1; }
H=$RUNDIR
DOMS=()
for i in $(seq "$NDOMS"); do
  truncate -s 16M "$WORK/disk$i.img"
  make_cfg "$WORK/soak$i.cfg" "soak$i" "test=soak mb=2 blk=1" 48 1 \
    "disk = [ '$WORK/disk$i.img,raw,xvda,rw' ]"
  d=$(xk create "$WORK/soak$i.cfg") || { fail boot "xkvm create soak$i failed"; exit 1; }
  DOMS+=("$d")
done
booted=1
for d in "${DOMS[@]}"; do
  wait_line "$d" "xtest: soak: round 1 ok" 90 >/dev/null || { booted=0; echo "# d$d: $(tail -2 "$(console_log "$d")")"; }
done
[ $booted = 1 ] && pass boot || { fail boot "not every soak reached round 1"; exit 1; }

# The soak's current round: it writes data/soak-round every round (the console only
# every 50th).
rounds() { XENSTORED_PATH="$H/xenstored/socket" xenstore-read "/local/domain/$1/data/soak-round" 2>/dev/null; }

# snapshot: every domain's ports and xenstore nodes (as migrate.sh takes them).
snapshot() {
  local d out
  for d in "${DOMS[@]}"; do
    out=$(pv_snapshot "$H" "$d") || return 1
    echo "$out" | sed "s/^/$d /"
  done
}

# settled: the snapshot equals $1 (backends re-attach within moments of the update).
settled() {
  local now
  for _ in $(seq 100); do
    now=$(snapshot 2>/dev/null)
    [ "$now" = "$1" ] && return 0
    sleep 0.1
  done
  diff <(echo "$1") <(echo "$now") | head -8 | sed 's/^/#   /'
  return 1
}

# all_counting: every domain (but those in $1, a space-separated list) counts rounds.
all_counting() {
  local d r0 r1 ok
  for d in "${DOMS[@]}"; do
    case " ${1:-} " in *" $d "*) continue ;; esac
    r0=$(rounds "$d"); ok=0
    for _ in $(seq 300); do
      r1=$(rounds "$d")
      [ -n "$r1" ] && [ "$r1" != "$r0" ] && { ok=1; break; }
      sleep 0.1
    done
    [ $ok = 1 ] || { echo "# d$d stopped at round $r0: $(tail -1 "$(console_log "$d")")"; return 1; }
  done
}

no_anomaly() { ! grep -a -q "xtest: soak: FAIL" "$H"/dmesg-*.log; }

sleep 1
BASELINE=$(snapshot)
SERVICES=$(cat "$H"/services/*.pid 2>/dev/null | sort | tr '\n' ' ')
PID=$(cat "$H/xkvmd.pid")
[ -n "$BASELINE" ] && echo "$BASELINE" | grep -q " port " && echo "$BASELINE" | grep -q " xs " \
  && pass baseline || fail baseline "no ports or nodes: $BASELINE"

# guest_gap DOMID FROM TO: the pause as the soak guest saw it, beside xkvmd's downtime:
# the largest gap between two of its clock reads in the round lines it printed after
# console line FROM (before the update) up to the first one after line TO (after it).
# Each line gives the largest gap since the line before (they come every 50 rounds), so
# the gap that covers the update is among them. 1 if no line comes after TO (the guest
# stopped reading its clock).
guest_gap() {
  local log gaps=
  log=$(console_log "$1")
  for _ in $(seq 600); do
    tail -n +"$(($3 + 1))" "$log" | strip_dmesg | grep -q "^xtest: soak: round [0-9]* ok" &&
      gaps=$(tail -n +"$(($2 + 1))" "$log" | strip_dmesg |
             sed -n 's/^xtest: soak: round [0-9]* ok (.*since the last line \([0-9]*\) us.*/\1/p') &&
      break
    sleep 0.1
  done
  [ -n "$gaps" ] || { echo "# d$1: no soak round line after the update"; return 1; }
  echo "#   the guest's view (d$1): largest gap between two of its clock reads across the update $(echo "$gaps" | sort -n | tail -1 | awk '{printf "%.2f", $1/1000}') ms"
}

# one_update LABEL [xkvm live-update options]: one update that must carry everything
# over, writing no node of the domains' devices (xenstored's request log).
NUPD=0
one_update() {
  local label=$1; shift
  local out d w d0 from
  NUPD=$((NUPD + 1))
  xs_log_mark "$H" "live-update-$NUPD" || { echo "# cannot mark xenstored's log"; return 1; }
  for d0 in "${DOMS[@]}"; do case " ${SKIP_COUNT:-} " in *" $d0 "*) ;; *) break ;; esac; done
  from=$(wc -l < "$(console_log "$d0")")
  local mode=--exec      # the exec's checks; beside's callers say --beside
  [ -n "${BESIDE:-}" ] && mode=
  if ! out=$(xk live-update --verify-memory $mode "$@" 2>&1); then
    echo "$out" | sed 's/^/#   /'; return 1
  fi
  echo "# $label: $(echo "$out" | tail -1 | sed 's/^ *//')"
  guest_gap "$d0" "$from" "$(wc -l < "$(console_log "$d0")")" || return 1
  echo "$out" | grep -q "carried over" || { echo "# not carried over: $out"; return 1; }
  echo "$out" | grep -q -- "-> ${LU_TO:-$maj.$min}:" || { echo "# not to version ${LU_TO:-$maj.$min}: $out"; return 1; }
  if [ -n "${BESIDE:-}" ]; then
    # A new process: the CLI names it, the pid file holds it, the old one is gone.
    local np
    np=$(echo "$out" | sed -n 's/.*xkvmd pid \([0-9]*\).*/\1/p')
    [ -n "$np" ] && [ "$np" != "$PID" ] || { echo "# beside: pid '$np' (was $PID)"; return 1; }
    [ "$(cat "$H/xkvmd.pid")" = "$np" ] || { echo "# pid file: $(cat "$H/xkvmd.pid"), not $np"; return 1; }
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && { echo "# the old xkvmd ($PID) is still there"; return 1; }
    PID=$np
  fi
  [ "$(cat "$H/xkvmd.pid")" = "$PID" ] || { echo "# xkvmd pid changed"; return 1; }
  kill -0 "$PID" 2>/dev/null || { echo "# xkvmd is gone"; return 1; }
  [ "$(cat "$H"/services/*.pid 2>/dev/null | sort | tr '\n' ' ')" = "$SERVICES" ] ||
    { echo "# a dom0 service was restarted"; return 1; }
  all_counting "${SKIP_COUNT:-}" || return 1
  settled "$BASELINE" || { echo "# ports or xenstore nodes changed (above)"; return 1; }
  no_anomaly || { echo "# a soak reported an anomaly"; return 1; }
  for d in "${DOMS[@]}"; do
    w=$(device_writes "$H" "$d" "control print: live-update-$NUPD\$")
    [ -z "$w" ] || { echo "$w" | head -4 | sed 's/^/#   written: /'; return 1; }
  done
  # The rebuilt p2m agrees with machine memory, its memslots and its break count.
  local a
  for d in "${DOMS[@]}"; do
    a=$(xk debug-state "$d" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p2m"]["audit"])')
    [ "$a" = ok ] || { echo "# d$d: p2m audit: $a"; return 1; }
  done
}

# ---- N updates in a row ----
# The default (beside: a new pid each time), then the exec's (same pid).
ok=0
for i in $(seq "$UPDATES"); do
  BESIDE=1 one_update "update $i" || { fail "updates-$UPDATES" "update $i (see above)"; break; }
  ok=$((ok + 1))
done
[ $ok = "$UPDATES" ] && pass "updates-$UPDATES"
ok=0
for i in 1 2 3; do
  one_update "exec update $i" || { fail exec-updates-3 "update $i (see above)"; break; }
  ok=$((ok + 1))
done
[ $ok = 3 ] && pass exec-updates-3

# ---- a paused domain stays paused ----
P=${DOMS[0]}
xk pause "$P"
if SKIP_COUNT=$P one_update "update with d$P paused" &&
   [ "$(dom_field "$P" state)" = paused ] && xk unpause "$P" && all_counting; then
  pass keeps-paused
else
  fail keeps-paused "state $(dom_field "$P" state) after the update"
  xk unpause "$P" >/dev/null 2>&1
fi

# ---- rollback from every phase of the new binary ----
for phase in startup bad-image pass0 crash pass1 pass2 before-unpause; do
  out=$(xk live-update --exec --verify-memory --inject-fault "$phase" 2>&1)
  rc=$?
  if [ $rc != 0 ] && echo "$out" | grep -q "rolled back" &&
     [ "$(cat "$H/xkvmd.pid")" = "$PID" ] && kill -0 "$PID" 2>/dev/null &&
     all_counting && settled "$BASELINE" && no_anomaly; then
    pass "rollback-$phase"
    echo "# $phase: $(echo "$out" | grep -o 'failed: .*' | head -1 | cut -c1-150)"
  else
    fail "rollback-$phase" "exit $rc: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
  fi
done

# ---- the holder of the old address space (docs/live-update.md, "The holder") ----
# Every update and rollback above started one; each new binary released it once its
# guests ran, and it was reaped. Two updates back to back: the second reaps the first's
# holder even if the exec killed the thread reaping it. Released (not left to its 10 s
# fallback): gone within 5 s; none failed to start.
holders() { ps -o stat=,comm= --ppid "$PID" | grep -c ' xkvmd$'; }
if xk live-update --exec >/dev/null && xk live-update --exec >/dev/null; then
  n=$(holders)
  for _ in $(seq 50); do [ "$n" = 0 ] && break; sleep 0.1; n=$(holders); done
  if [ "$n" = 0 ] && ! grep -q "no holder for the old address space" "$H/xkvmd.log"; then
    pass holder
  else
    fail holder "$n holder(s) left: $(ps -o pid=,stat=,comm= --ppid "$PID" | tr '\n' ' ')"
  fi
else
  fail holder "a live update failed"
fi

# ---- beside (docs/live-update.md, "Beside"): a new process, VMs built before the pause ----
ok=0
for i in 1 2 3; do
  BESIDE=1 one_update "beside $i" --beside || { fail beside-updates-3 "update $i (see above)"; break; }
  ok=$((ok + 1))
done
[ $ok = 3 ] && pass beside-updates-3
P=${DOMS[0]}
xk pause "$P"
if BESIDE=1 SKIP_COUNT=$P one_update "beside with d$P paused" --beside &&
   [ "$(dom_field "$P" state)" = paused ] && xk unpause "$P" && all_counting; then
  pass beside-keeps-paused
else
  fail beside-keeps-paused "state $(dom_field "$P" state) after the update"
  xk unpause "$P" >/dev/null 2>&1
fi
# The default, with no option: beside (the binary says it can).
if BESIDE=1 one_update "default (no option)"; then
  pass default-is-beside
else
  fail default-is-beside "see above"
fi
# A domain that changed between the build and the pause is built again in the pause
# (XKVM_LU_FAULT=changed makes the new process take the first one for changed).
if BESIDE=1 one_update "beside, d${DOMS[0]} built again in the pause" --beside --inject-fault changed &&
   grep -q "d${DOMS[0]} changed while it was built: built again" "$H/xkvmd.log"; then
  pass beside-rebuilt
else
  fail beside-rebuilt "see above"
fi
# The new process fails, before the pause (startup, bad-image, pass0: while it builds
# the VMs) or in it: the old one keeps (or unpauses) every domain, same pid.
for phase in startup bad-image pass0 crash pass1 pass2 before-unpause; do
  out=$(xk live-update --beside --verify-memory --inject-fault "$phase" 2>&1)
  rc=$?
  why=
  if [ $rc = 0 ] || ! echo "$out" | grep -q "the new xkvmd failed"; then why="not refused"
  elif [ "$(cat "$H/xkvmd.pid")" != "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
    why="xkvmd pid $(cat "$H/xkvmd.pid"), not $PID"
  elif pgrep -P "$PID" -f -- "--lu-beside" >/dev/null; then why="the new xkvmd is still there"
  elif ! all_counting; then why="a guest stopped"
  elif ! settled "$BASELINE"; then why="ports or nodes changed"
  elif ! no_anomaly; then why="a soak anomaly"
  fi
  if [ -z "$why" ]; then
    pass "beside-rollback-$phase"
    echo "# beside $phase: $(echo "$out" | grep -o 'failed: .*' | head -1 | cut -c1-150)"
  else
    fail "beside-rollback-$phase" "$why: exit $rc: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
  fi
done
# The old xkvmd dies in the pause, after handing over the image (XKVM_LU_FAULT=old-gone
# in the old one): the new one, READY with nobody to say GO, runs the guests itself.
old=$PID
out=$(xk live-update --beside --inject-fault old-gone 2>&1)
np=$(cat "$H/xkvmd.pid")
for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
if [ "$np" != "$old" ] && kill -0 "$np" 2>/dev/null && ! kill -0 "$old" 2>/dev/null &&
   grep -q "is gone without GO: the domains run here" "$H/xkvmd.log" &&
   all_counting && settled "$BASELINE" && no_anomaly; then
  pass beside-old-gone
  PID=$np
else
  fail beside-old-gone "pid $old -> $np; $(echo "$out" | tr '\n' ' ' | cut -c1-200)"
  PID=$np
fi
if [ ! -x "$NEXT" ]; then
  skip beside-cross-version "no $NEXT in this build"
elif BESIDE=1 LU_TO=$maj.$((min + 1)) one_update "beside to xkvmd-lu-next" --beside --binary "$NEXT" &&
     BESIDE=1 LU_TO=$maj.$((min + 1)) one_update "beside, next again (the default binary now)" --beside; then
  pass beside-cross-version
else
  fail beside-cross-version "see above"
fi

# ---- cross-version: old -> next -> same ----
if [ ! -x "$NEXT" ]; then
  skip cross-version "no $NEXT in this build"
elif LU_TO=$maj.$((min + 1)) one_update "to xkvmd-lu-next" --binary "$NEXT" &&
     LU_TO=$maj.$((min + 1)) one_update "next again (the default binary now)"; then
  pass cross-version
else
  fail cross-version "see above"
fi

# ---- the guests' verdict ----
for d in "${DOMS[@]}"; do
  XENSTORED_PATH="$H/xenstored/socket" xenstore-write "/local/domain/$d/data/soak-ctl" go
done
sleep 0.5
verdict=1
for d in "${DOMS[@]}"; do
  XENSTORED_PATH="$H/xenstored/socket" xenstore-write "/local/domain/$d/data/soak-stop" 1
done
for d in "${DOMS[@]}"; do
  res=$(wait_result "$d" soak 120)
  [ "$res" = "xtest: soak: PASS" ] || { verdict=0; echo "# d$d said: $res"; }
done
[ $verdict = 1 ] && pass soak-verdict || fail soak-verdict "see above"

# ---- a newer major hands over to an older binary: refused before any pause ----
if [ ! -x "$MAJOR" ]; then
  skip refuse-major "no $MAJOR in this build"
else
  RUNDIR=$WORK/h2; mkdir -p "$RUNDIR"; HOSTS+=("$RUNDIR")
  "$MAJOR" --rundir "$RUNDIR" --machine-memory 256M
  make_cfg "$WORK/idle.cfg" idle "test=soak mb=1" 32 1
  d=$(xk create "$WORK/idle.cfg")
  p2=$(cat "$RUNDIR/xkvmd.pid")
  if ! wait_line "$d" "xtest: soak: round 1 ok" 60 >/dev/null; then
    fail refuse-major "the guest on the newer-major xkvmd did not start"
  elif out=$(xk live-update --binary "$XKVMD" 2>&1); then
    fail refuse-major "the older binary took the newer image: $out"
  elif echo "$out" | grep -q "refuses" && [ "$(cat "$RUNDIR/xkvmd.pid")" = "$p2" ] &&
       [ "$(dom_field "$d" state)" = running ] && [ -f "$RUNDIR/xkvmd.log" ] &&
       ! grep -q "paused in" "$RUNDIR/xkvmd.log"; then
    pass refuse-major
  else
    fail refuse-major "$(echo "$out" | tr '\n' ' ' | cut -c1-300)"
  fi
fi
