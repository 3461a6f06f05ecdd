#!/usr/bin/env bash
# Same-host migration: xkvm migrate DOMAIN local:RUNDIR moves a guest to a second xkvmd
# on this machine by passing the machine-memory memfd, not the pages
# (docs/migration.md, "Same-host migration").
#
# A test=soak guest (checks its memory pattern every round) moves h1 -> h2: the
# destination allocates none of its RAM, the source keeps those frames out of its
# allocator (a second guest filling nearly all of h1's free memory leaves the first
# verifying), h2 -> h1 takes the frames back, and destroying it on h2 returns its
# memory to the host (h1's memfd shrinks). Failures leave the guest on the source,
# verifying: a destination that dies after adopting the frames (XKVM_TEST_FAULT), one
# that refuses (name taken). A guest with a disk moves too (its blkback on h2 maps its
# pages in h1's memfd). Live update of a host that holds another's memory, or lent its
# own, is refused clearly.
#   pv-disk-moves, pv-disk-back  a soak guest writing and reading back its disk every
#                        round moves h1 -> h2 and back, its rounds going on
source "$(dirname "$0")/lib.sh"
require_kvm

host_start h1 --disk-root "$WORK" || { fail start "h1 did not start"; exit 1; }
H1=$RUNDIR
host_start h2 --disk-root "$WORK" || { fail start "h2 did not start"; exit 1; }
H2=$RUNDIR
XKVM_TEST_FAULT=recv-restored host_start h3 || { fail start "h3 did not start"; exit 1; }
H3=$RUNDIR
on() { RUNDIR=$1; }

free_mb() { echo $(( $(RUNDIR=$1 info_field free_memory_kb) / 1024 )); }
rounds() { grep -a -o "round [0-9]* ok" "$1/dmesg-$2.log" 2>/dev/null | tail -1 | awk '{print $2}'; }
# verifying HOST DOMID: running there, a new round reported (each checks the memory),
# and no failure in its log.
verifying() {
  local h=$1 d=$2 r0 r1
  [ "$(RUNDIR=$h dom_field "$d" state)" = running ] || return 1
  r0=$(rounds "$h" "$d")
  for _ in $(seq 300); do
    r1=$(rounds "$h" "$d")
    if [ -n "$r1" ] && [ "${r1:-0}" != "${r0:-0}" ]; then
      ! grep -a -q "xtest: soak: FAIL" "$h/dmesg-$d.log"
      return
    fi
    sleep 0.1
  done
  return 1
}
# memfd_kb HOST: what the host's machine-memory memfd holds (KiB allocated).
memfd_kb() {
  local pid fd
  pid=$(cat "$1/xkvmd.pid")
  for fd in /proc/"$pid"/fd/*; do
    case "$(readlink "$fd")" in
    */memfd:xkvm-machine-memory*) echo $(( $(stat -L -c '%b * %B' "$fd") / 1024 )); return ;;
    esac
  done
}

make_cfg "$WORK/soak.cfg" soak "test=soak mb=4 rounds=0" 64 1
on "$H1"
D=$(xk create "$WORK/soak.cfg") || { fail create "xkvm create failed"; exit 1; }
if wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null; then pass boot; else
  fail boot "no first round: $(tail -3 "$(console_log "$D")")"; exit 1; fi
# Rounds are reported every 50th: let the guest reach round 50 so progress shows.
wait_line "$D" "xtest: soak: round 50 ok" 120 >/dev/null

# ---- h1 -> h2: nothing copied, nothing allocated for RAM on h2 ----
f1=$(free_mb "$H1"); f2=$(free_mb "$H2")
on "$H1"
if out=$(xk migrate "$D" "local:$H2" --report "$WORK/r1.json" 2>&1) &&
   [ -z "$(RUNDIR=$H1 dom_field "$D" state)" ] && verifying "$H2" "$D"; then
  pass migrate-local
else
  fail migrate-local "$out"
fi
echo "# $out"
pages=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pages_sent"])' "$WORK/r1.json" 2>/dev/null)
# RAM is 64 MiB (16384 pages): only the toolstack pages (rings) travel.
if [ -n "$pages" ] && [ "$pages" -lt 64 ]; then pass pages-not-copied; else
  fail pages-not-copied "$pages pages sent"; fi
g1=$(free_mb "$H1"); g2=$(free_mb "$H2")
if [ $((f2 - g2)) -lt 8 ]; then pass destination-allocates-no-ram; else
  fail destination-allocates-no-ram "h2 free went from $f2 to $g2 MiB"; fi
# The source freed its Xen frames and rings, but not the RAM it handed over.
if [ $((g1 - f1)) -lt 8 ]; then pass source-keeps-handed-frames; else
  fail source-keeps-handed-frames "h1 free went from $f1 to $g1 MiB"; fi

# ---- the source reuses none of them: a guest filling nearly all of h1's free memory ----
fill_mb=$(( g1 - 40 ))
make_cfg "$WORK/fill.cfg" fill "test=fill mb=$(( fill_mb - 72 )) at=64" "$fill_mb" 1
on "$H1"
F=$(xk create "$WORK/fill.cfg")
if [ -n "$F" ] && wait_line "$F" "xtest: fill: ready" 120 >/dev/null && verifying "$H2" "$D" &&
   verifying "$H2" "$D"; then
  pass source-frees-nothing-in-use
else
  fail source-frees-nothing-in-use "fill ${F:-?}: $(tail -1 "$H1/dmesg-$F.log" 2>/dev/null); soak: $(tail -1 "$H2/dmesg-$D.log")"
fi
on "$H1"; xk destroy "$F" >/dev/null 2>&1

# ---- live update: refused where memory is shared, the guest untouched ----
for h in "$H2" "$H1"; do
  n=$([ "$h" = "$H2" ] && echo destination || echo source)
  on "$h"
  out=$(xk live-update 2>&1)
  if [ $? -ne 0 ] && echo "$out" | grep -q "same-host" && verifying "$H2" "$D"; then
    pass "live-update-$n-refused"
  else
    fail "live-update-$n-refused" "$out"
  fi
done

# ---- failures leave the guest on the source, verifying ----
# A destination that dies once it has adopted the frames and built the domain.
on "$H2"
out=$(xk migrate "$D" "local:$H3" 2>&1)
if [ $? -ne 0 ] && verifying "$H2" "$D"; then pass fail-destination-dies; else
  fail fail-destination-dies "$out"; fi
# A destination that refuses: a domain of that name is there.
make_cfg "$WORK/other.cfg" soak "test=soak mb=1 rounds=0" 16 1
on "$H1"
O=$(xk create "$WORK/other.cfg")
on "$H2"
out=$(xk migrate "$D" "local:$H1" 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q "soak" && verifying "$H2" "$D"; then
  pass fail-destination-refuses
else
  fail fail-destination-refuses "$out"
fi
on "$H1"; xk destroy "$O" >/dev/null 2>&1
# A guest with a PV disk, its soak writing and reading it back every round: the
# destination's blkback maps the guest's pages in h1's memfd (a bank there), the
# rounds go on, and the disk still holds what they wrote.
truncate -s 4M "$WORK/disk.img"
make_cfg "$WORK/disk.cfg" withdisk "test=soak mb=1 rounds=0 blk=1 blk_kb=16" 16 1 "disk = [ '$WORK/disk.img,raw,xvda,rw' ]"
on "$H1"
B=$(xk create "$WORK/disk.cfg")
wait_line "$B" "xtest: soak: round 1 ok" 60 >/dev/null
out=$(xk migrate "$B" "local:$H2" 2>&1)
rc=$?
if [ $rc -eq 0 ] && verifying "$H2" "$B" && verifying "$H2" "$B" &&
   [ -z "$(RUNDIR=$H1 dom_field "$B" state)" ]; then
  pass pv-disk-moves
else
  fail pv-disk-moves "rc $rc: $out; on h2: $(RUNDIR=$H2 dom_field "$B" state); $(tail -2 "$H2/dmesg-$B.log" 2>/dev/null | tr '\n' '|')"
fi
# And back, so that h1 gets its frames again (destroyed on h2 they would stay lent).
on "$H2"
if out=$(xk migrate "$B" "local:$H1" 2>&1) && verifying "$H1" "$B" && verifying "$H1" "$B"; then
  pass pv-disk-back
else
  fail pv-disk-back "$out"
fi
on "$H1"
xk destroy "$B" >/dev/null 2>&1

# ---- back: h2 -> h1 takes its own frames again ----
on "$H2"
if out=$(xk migrate "$D" "local:$H1" 2>&1) && verifying "$H1" "$D"; then pass migrate-back; else
  fail migrate-back "$out"; fi
h1=$(free_mb "$H1")
# The frames it lent came home: h1 is as full as with the guest on it, and a live
# update of h1 (now lending nothing) is not refused for sharing.
on "$H1"
out=$(xk live-update 2>&1)
if [ $? -eq 0 ] && verifying "$H1" "$D"; then pass live-update-after-back; else
  fail live-update-after-back "$out"; fi

# ---- the guest's verdict, after four moves ----
on "$H1"
XENSTORED_PATH="$H1/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 60)
[ "$res" = "xtest: soak: PASS" ] && pass soak-verdict || fail soak-verdict "guest said: $res"
xk destroy "$D" >/dev/null 2>&1

# ---- destroy on the destination returns the memory to the host ----
make_cfg "$WORK/fill2.cfg" fill2 "test=fill mb=48 at=64" 128 1
on "$H1"
F=$(xk create "$WORK/fill2.cfg")
if [ -n "$F" ] && wait_line "$F" "xtest: fill: ready" 60 >/dev/null &&
   xk migrate "$F" "local:$H2" >/dev/null 2>&1; then
  before=$(memfd_kb "$H1")
  on "$H2"
  xk destroy "$F" >/dev/null 2>&1
  after=$(memfd_kb "$H1")
  # Its 48 MiB of data lived in h1's memfd: h2 punched them there.
  if [ -n "$before" ] && [ -n "$after" ] && [ $((before - after)) -ge $((40 * 1024)) ]; then
    pass destroy-returns-memory
  else
    fail destroy-returns-memory "h1's memfd held $before KiB, then $after KiB"
  fi
  echo "# h1's memfd: $before KiB with the guest on h2, $after KiB after h2 destroyed it"
else
  fail destroy-returns-memory "the fill guest did not move to h2"
fi
