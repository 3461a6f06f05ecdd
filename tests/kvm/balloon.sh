#!/usr/bin/env bash
# Memory reservation and ballooning (docs/hypervisor.md, "Memory reservation").
#   guest                 - test=balloon: pages out and in, Xen's answers to hostile
#                           requests, RAM up to maxmem and not past it, an order-2
#                           extent, increase_reservation (guest/tests/balloon.c)
#   xenstore-nodes        - memory/static-max and memory/target as libxl writes them (KiB)
#   mem-set               - xkvm mem-set writes memory/target; past maxmem refused
#   named-frame-kept      - a page a dom0 service maps (xkvm-dom0-probe) and the guest
#                           then gives back stays as it was, readable and writable by
#                           the service, and is freed when the service unmaps it
#   frames-returned       - machine memory in use drops by the pages given back and
#                           rises again when they are taken back; list's Mem follows
#   migrate-holes         - pages given back stay holes across a live migration, and the
#                           guest takes them back and gives others on the destination;
#                           meanwhile it gives 32 pages back and takes them again round
#                           after round, so the copy sees a p2m that keeps changing; 16
#                           pages it populated above its memory (maxmem) move with it
#   live-update-holes     - the same across a live update of the destination's xkvmd
#   big-out               - test=balloon-big: a 256 MiB guest gives back 64 MiB (16384
#                           pages) in batches of 512, as Linux's balloon driver: machine
#                           memory in use drops by that much, and xkvmd's mappings and
#                           the p2m's mapping budget grow by a run's worth, not per page
#   big-migrate           - the 16384 holes migrate as holes (the guest checks them, its
#                           count and what a hole reads as: zeros), and come back
#   big-live-update       - given back again, then a live update of the destination: the
#                           holes, the count and the budget survive; taken back, machine
#                           memory in use rises by the 16384 pages again
#   big-fragmentation     - every other page of 16384 in one decrease: it stops at the
#                           mapping budget with the count done (Xen's partial answer),
#                           the p2m whole (audit), the pages not given back intact; then
#                           a populate over a page it holds replaces it (as Xen)
set -u
. "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))
N=320

host_start h1 --migrate-listen 127.0.0.1:$BASE $(migrate_auth) || { fail start "h1 did not start"; exit 0; }
H1=$RUNDIR
host_start h2 --migrate-listen 127.0.0.1:$((BASE + 1)) $(migrate_auth) || { fail start "h2 did not start"; exit 0; }
H2=$RUNDIR
on() { RUNDIR=$1; }
xs() { XENSTORED_PATH="$RUNDIR/xenstored/socket" "$@"; }
go() { xs xenstore-write "/local/domain/$1/data/balloon-go" "$2"; }
p2m_audit() {
  xk debug-state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p2m"]["audit"])'
}

# ---- the guest test, with the host watching machine memory ----
on "$H1"
make_cfg "$WORK/b.cfg" b "test=balloon hold=1 pages=$N" 32 1 "maxmem = 33"
D=$(xk create "$WORK/b.cfg") || { fail guest "create failed"; exit 0; }
for _ in $(seq 50); do
  xs xenstore-read "/local/domain/$D/memory/target" >/dev/null 2>&1 && break
  sleep 0.1
done
smax=$(xs xenstore-read "/local/domain/$D/memory/static-max" 2>&1)
target=$(xs xenstore-read "/local/domain/$D/memory/target" 2>&1)
if [ "$smax" = 33792 ] && [ "$target" = 32768 ]; then
  pass xenstore-nodes
else
  fail xenstore-nodes "static-max '$smax' (want 33792), target '$target' (want 32768)"
fi
# A dom0 service maps the first page before the guest gives it back: the frame must stay
# as it was (not freed, not handed out) until the service lets go, then be freed.
PROBE=$BUILD/src/dom0/xkvm-dom0-probe
if wait_line "$D" "xtest: balloon: ready$" 60 >/dev/null; then
  top=$((32 * 256)); A=$((top - 64 - N))       # guest/tests/balloon.c: a = top - 64 - n
  "$PROBE" --rundir "$RUNDIR" map-foreign "$D" "$A" rw expect balloon-page touch "$WORK/mapped" \
    wait "$WORK/check" expect balloon-page write probe-was-here unmap touch "$WORK/unmapped" \
    > "$WORK/probe.out" 2>&1 &
  for _ in $(seq 100); do [ -e "$WORK/mapped" ] && break; sleep 0.1; done
  go "$D" 1
  if wait_line "$D" "xtest: balloon: out$" 60 >/dev/null; then
    free_out=$(info_field free_memory_kb); mem_out=$(dom_field "$D" memory_kb)
    touch "$WORK/check"
    for _ in $(seq 100); do [ -e "$WORK/unmapped" ] && break; sleep 0.1; done
    wait
    free_unmapped=$(info_field free_memory_kb)
    if [ -e "$WORK/unmapped" ] && [ "$free_unmapped" = $((free_out + 4)) ]; then
      pass named-frame-kept
    else
      fail named-frame-kept "probe: $(tr '\n' '|' < "$WORK/probe.out"); free machine memory $free_out -> $free_unmapped KiB at the unmap (want 4 KiB more)"
    fi
    go "$D" 2
    if wait_line "$D" "xtest: balloon: in$" 60 >/dev/null; then
      free_in=$(info_field free_memory_kb); mem_in=$(dom_field "$D" memory_kb)
      diff=$((free_unmapped - free_in))
      if [ $((mem_in - mem_out)) = $((N * 4)) ] &&
         [ "$diff" -ge $(((N - 2) * 4)) ] && [ "$diff" -le $(((N + 2) * 4)) ]; then
        pass frames-returned
      else
        fail frames-returned "Mem $mem_out -> $mem_in KiB, free machine memory $free_unmapped -> $free_in KiB (want $((N * 4)) KiB less)"
      fi
    else
      fail frames-returned "the guest did not take its pages back: $(tail -2 "$(console_log "$D")")"
    fi
    go "$D" 3
  else
    fail named-frame-kept "the guest did not give pages back: $(tail -2 "$(console_log "$D")")"
    fail frames-returned "not run"
  fi
else
  fail named-frame-kept "the guest did not get ready: $(tail -2 "$(console_log "$D")")"
  fail frames-returned "not run"
fi
res=$(wait_result "$D" balloon 60)
if [ "$res" = "xtest: balloon: PASS" ] && [ "$(p2m_audit "$D")" = ok ]; then
  pass guest
  grep -a 'xkvm-guest: balloon:' "$(console_log "$D")" | strip_dmesg | sed 's/^/# /'
else
  fail guest "guest said: $res; p2m audit: $(p2m_audit "$D")"
fi
xk destroy "$D" >/dev/null 2>&1

# ---- mem-set ----
make_cfg "$WORK/m.cfg" m "test=spin" 32 1 "maxmem = 48"
D=$(xk create "$WORK/m.cfg") || { fail mem-set "create failed"; exit 0; }
ok=1
xk mem-set "$D" 24 || ok=0
for _ in $(seq 50); do
  [ "$(xs xenstore-read "/local/domain/$D/memory/target" 2>/dev/null)" = 24576 ] && break
  sleep 0.1
done
t1=$(xs xenstore-read "/local/domain/$D/memory/target" 2>&1)
xk mem-set "$D" 40960k || ok=0
for _ in $(seq 50); do
  [ "$(xs xenstore-read "/local/domain/$D/memory/target" 2>/dev/null)" = 40960 ] && break
  sleep 0.1
done
t2=$(xs xenstore-read "/local/domain/$D/memory/target" 2>&1)
err=$(xk mem-set "$D" 49 2>&1) && ok=0
if [ $ok = 1 ] && [ "$t1" = 24576 ] && [ "$t2" = 40960 ] && [ "$(dom_field "$D" target_kb)" = 40960 ] &&
   echo "$err" | grep -q "out of range"; then
  pass mem-set
else
  fail mem-set "targets '$t1' '$t2' (want 24576 40960), list target $(dom_field "$D" target_kb), past maxmem: $err"
fi
xk destroy "$D" >/dev/null 2>&1

# ---- at a Linux balloon driver's scale (guest/tests/balloon.c, balloon-big) ----
BIG=16384
p2m_field() {
  xk debug-state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p2m"][sys.argv[1]])' "$2"
}
vmas() { wc -l < "/proc/$(cat "$RUNDIR/xkvmd.pid")/maps"; }
# big_wait DOMID PHASE: the guest reached PHASE (or fails the check named by $3).
big_wait() {
  wait_line "$1" "xtest: balloon-big: $2\$" 120 >/dev/null && return 0
  fail "$3" "the guest did not reach $2: $(grep -a 'xtest:' "$(console_log "$1")" | tail -1)"
  return 1
}
big_suite() {
  on "$H1"
  make_cfg "$WORK/big.cfg" big "test=balloon-big pages=$BIG" 256 1 "maxmem = 257"
  local D free0 vma0 br0 free1 vma1 br1 mem1 free2 res
  D=$(xk create "$WORK/big.cfg") || { fail big-out "create failed"; return; }
  big_wait "$D" ready big-out || return
  free0=$(info_field free_memory_kb); vma0=$(vmas); br0=$(p2m_field "$D" breaks)
  go "$D" 1
  big_wait "$D" out1 big-out || return
  free1=$(info_field free_memory_kb); vma1=$(vmas); br1=$(p2m_field "$D" breaks)
  mem1=$(dom_field "$D" memory_kb)
  if [ $((free1 - free0)) -ge $(((BIG - 8) * 4)) ] && [ $((free1 - free0)) -le $(((BIG + 8) * 4)) ] &&
     [ $((vma1 - vma0)) -le 4 ] && [ $((br1 - br0)) -le 4 ] && [ "$(p2m_audit "$D")" = ok ]; then
    pass big-out
  else
    fail big-out "free machine memory $free0 -> $free1 KiB (want $((BIG * 4)) more), xkvmd mappings $vma0 -> $vma1, p2m breaks $br0 -> $br1, audit $(p2m_audit "$D")"
  fi
  local out
  if ! out=$(xk migrate "$D" 127.0.0.1:$((BASE + 1)) 2>&1); then
    fail big-migrate "migration failed: $(echo "$out" | tail -1)"; return
  fi
  on "$H2"
  local br2=$(p2m_field "$D" breaks) mem2=$(dom_field "$D" memory_kb)
  go "$D" 2
  big_wait "$D" in1 big-migrate || return
  if [ "$mem2" = "$mem1" ] && [ "$br2" -le $((br1 + 4)) ] && [ "$(p2m_audit "$D")" = ok ]; then
    pass big-migrate
  else
    fail big-migrate "Mem $mem1 -> $mem2 KiB across the move, p2m breaks $br1 -> $br2, audit $(p2m_audit "$D")"
  fi
  go "$D" 3
  big_wait "$D" out2 big-live-update || return
  br2=$(p2m_field "$D" breaks); mem2=$(dom_field "$D" memory_kb)
  if ! out=$(xk live-update --verify-memory 2>&1); then
    fail big-live-update "live update: $(echo "$out" | tail -1)"; return
  fi
  local br3=$(p2m_field "$D" breaks) mem3=$(dom_field "$D" memory_kb)
  free2=$(info_field free_memory_kb)
  go "$D" 4
  big_wait "$D" in2 big-live-update || return
  local free3=$(info_field free_memory_kb) mem4=$(dom_field "$D" memory_kb)
  if [ "$mem3" = "$mem2" ] && [ "$br3" -le $((br2 + 4)) ] && [ "$(p2m_audit "$D")" = ok ] &&
     [ $((mem4 - mem3)) = $((BIG * 4)) ] && [ $((free2 - free3)) -ge $(((BIG - 8) * 4)) ] &&
     [ $((free2 - free3)) -le $(((BIG + 8) * 4)) ]; then
    pass big-live-update
  else
    fail big-live-update "Mem $mem2 -> $mem3 -> $mem4 KiB (out, updated, in), p2m breaks $br2 -> $br3, free machine memory $free2 -> $free3 KiB, audit $(p2m_audit "$D")"
  fi
  go "$D" 5
  res=$(wait_result "$D" balloon-big 120)
  if [ "$res" = "xtest: balloon-big: PASS" ] && [ "$(p2m_audit "$D")" = ok ]; then
    pass big-fragmentation
    grep -a 'xkvm-guest: balloon-big:' "$(console_log "$D")" | strip_dmesg | sed 's/^/# /'
  else
    fail big-fragmentation "guest said: $res; p2m audit: $(p2m_audit "$D")"
  fi
  xk destroy "$D" >/dev/null 2>&1
}
big_suite

# ---- across a migration and a live update ----
on "$H1"
make_cfg "$WORK/mv.cfg" mv "test=balloon-move pages=256" 32 1 "maxmem = 33"
D=$(xk create "$WORK/mv.cfg") || { fail migrate-holes "create failed"; exit 0; }
if ! wait_line "$D" "xtest: balloon-move: out1" 60 >/dev/null; then
  fail migrate-holes "the guest did not give pages back: $(tail -2 "$(console_log "$D")")"
  fail live-update-holes "not run"
  exit 0
fi
xk mem-set "$D" 30 >/dev/null
if out=$(xk migrate "$D" 127.0.0.1:$((BASE + 1)) 2>&1); then
  on "$H2"
  go "$D" 1
  # The guest checks its count against the source's, its holes and its pages itself.
  if wait_line "$D" "xtest: balloon-move: out2" 60 >/dev/null &&
     grep -a 'rounds of' "$H2/dmesg-$D.log" | strip_dmesg | sed 's/^/# /' &&
     [ "$(xs xenstore-read "/local/domain/$D/memory/target")" = 30720 ] && [ "$(p2m_audit "$D")" = ok ]; then
    pass migrate-holes
  else
    fail migrate-holes "target $(xs xenstore-read "/local/domain/$D/memory/target"), audit $(p2m_audit "$D"): $(grep -a 'xtest:' "$(console_log "$D")" | tail -1)"
  fi
else
  fail migrate-holes "migration failed: $(echo "$out" | tail -1)"
  fail live-update-holes "not run"
  exit 0
fi
mem0=$(dom_field "$D" memory_kb)
if out=$(xk live-update --verify-memory 2>&1) && [ "$(p2m_audit "$D")" = ok ] &&
   [ "$(dom_field "$D" memory_kb)" = "$mem0" ]; then
  go "$D" 2
  if wait_line "$D" "xtest: balloon-move: in2" 60 >/dev/null && [ "$(dom_field "$D" memory_kb)" = $((mem0 + 256 * 4)) ]; then
    go "$D" 3
    res=$(wait_result "$D" balloon-move 60)
    if [ "$res" = "xtest: balloon-move: PASS" ]; then
      pass live-update-holes
    else
      fail live-update-holes "guest said: $res"
    fi
  else
    fail live-update-holes "Mem $(dom_field "$D" memory_kb) KiB: $(grep -a 'xtest:' "$(console_log "$D")" | tail -1)"
  fi
else
  fail live-update-holes "live update: $(echo "$out" | tail -1); audit $(p2m_audit "$D"); Mem $(dom_field "$D" memory_kb) KiB, $mem0 before"
fi
