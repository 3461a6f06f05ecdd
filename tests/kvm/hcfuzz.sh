#!/usr/bin/env bash
# Hostile guests: two test=hcfuzz guests (guest/tests/hcfuzz.c; docs/testing.md, "The
# hypercall fuzzer") make random hypercalls at once on one host, with different seeds,
# while a third guest runs test=blk loop=0 console=both: a pattern written to its disk,
# flushed and read back, round after round, through xenstore, grants, events and
# xkvm-blkback, its output through the console ring too (xkvm-consoled). Checks:
#   destroyed-while-fuzzing  a third fuzzer, destroyed halfway through (the other two may
#                     hold its grants and event channels then)
#   fuzzers-finish    both fuzzing guests run their time and print their count (a crash
#                     of one is a finding: the hypervisor wrote where it was not pointed)
#   host-up           xkvmd and every dom0 service it started have the pids they had
#                     before the fuzzing
#   victim-unaffected the blk guest went on looping while the fuzzers ran and, stopped
#                     through xenstore after they were destroyed, passes; a fresh
#                     test=memory guest (made of the frames they gave back) passes too
#   log-bounded       what the fuzzers made xkvmd log stays within its rate limit (10 lines a
#                     second per domain, plus each unimplemented call once): they could
#                     flood it, one line per grant-table dump or upcall vector
#   no-leak           with the fuzzers destroyed, xkvmd's open fds, threads and free
#                     machine memory are back to their values before they started, and
#                     its anonymous memory (RssAnon) within XKVM_HCFUZZ_RSS_SLACK_KB
#                     (4096) of it: the allocator keeps what it once had
#   seed-*            fixed seeds and counts, replayed exactly (the calls depend only on
#                     the seed and the answers): xkvmd survives, the guest passes; a
#                     seed that ever finds a bug is added here
# Short form (make test): 30 s of fuzzing each. XKVM_SOAK=1 (make soak): 300 s.
# XKVM_HCFUZZ_SECONDS and XKVM_HCFUZZ_SEEDS="A B" override; the seeds are printed.
set -u
. "$(dirname "$0")/lib.sh"
require_kvm

if [ -n "${XKVM_SOAK:-}" ]; then SECS=${XKVM_HCFUZZ_SECONDS:-300}; else SECS=${XKVM_HCFUZZ_SECONDS:-30}; fi
read -r SEED_A SEED_B <<< "${XKVM_HCFUZZ_SEEDS:-$(( $(date +%s) % 1000000 )) $(( ($(date +%s) + 7919) % 1000000 ))}"
echo "# fuzzing ${SECS}s per guest, seeds $SEED_A and $SEED_B (XKVM_HCFUZZ_SEEDS=\"$SEED_A $SEED_B\" replays)"

host_start h --machine-memory 512M || { fail host-up "xkvmd did not start"; exit 0; }
XKVMD_PID=$(cat "$RUNDIR/xkvmd.pid")
XS_SOCK=$RUNDIR/xenstored/socket
for _ in $(seq 100); do [ -S "$XS_SOCK" ] && break; sleep 0.1; done

# What must come back: fds, threads, anonymous memory of xkvmd, free machine memory.
fd_count() { ls "/proc/$XKVMD_PID/fd" 2>/dev/null | wc -l; }
status_field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$XKVMD_PID/status"; }
free_kb() { info_field free_memory_kb; }
svc_pids() { host_pids "$RUNDIR" | sort | tr '\n' ' '; }
xkvmd_up() { kill -0 "$XKVMD_PID" 2>/dev/null; }

# ---- the victim: a blk loop running all along -----------------------------------------------
IMG=$WORK/disk.img
truncate -s 16M "$IMG"
make_cfg "$WORK/victim.cfg" victim "test=blk mb=1 loop=0 seed=11 console=both" 32 1 \
  "disk = [ '$IMG,raw,xvda,rw' ]"
loops_done() { grep -a -c 'xtest: blk: loop [0-9]* seed' "$(console_log "$victim")" 2>/dev/null; }
victim=$(xk create "$WORK/victim.cfg") || { fail victim-unaffected "create failed"; exit 0; }
if ! wait_line "$victim" 'xtest: blk: loop 1 seed' 90 >/dev/null; then
  fail victim-unaffected "the blk guest did not start: $(tail -3 "$(console_log "$victim")")"
  exit 0
fi
sleep 1
PIDS0=$(svc_pids); FDS0=$(fd_count); THR0=$(status_field Threads)
RSS0=$(status_field RssAnon); FREE0=$(free_kb)
echo "# before: xkvmd and services $PIDS0; fds $FDS0, threads $THR0, RssAnon ${RSS0} kB, free ${FREE0} kB"

# ---- two fuzzers at once ------------------------------------------------------------------
make_cfg "$WORK/fz-a.cfg" fz-a "test=hcfuzz seed=$SEED_A seconds=$SECS" 32 1
make_cfg "$WORK/fz-b.cfg" fz-b "test=hcfuzz seed=$SEED_B seconds=$SECS" 32 2
LOOPS0=$(loops_done)
# A third one is destroyed halfway, while the others may hold its grants and channels.
make_cfg "$WORK/fz-c.cfg" fz-c "test=hcfuzz seed=$((SEED_A + SEED_B)) seconds=$SECS progress=1" 32 1
fa=$(xk create "$WORK/fz-a.cfg"); fb=$(xk create "$WORK/fz-b.cfg"); fc=$(xk create "$WORK/fz-c.cfg")
sleep $((SECS / 2))
if [ "$(dom_field "$fc" state)" = running ] && xk destroy "$fc" >/dev/null 2>&1; then
  line=$(grep -a -o 'hcfuzz: progress: [0-9]* hypercalls' "$(console_log "$fc")" | tail -1)
  echo "# d$fc (seed $((SEED_A + SEED_B))) destroyed while fuzzing, after ${line#hcfuzz: progress: }"
  pass destroyed-while-fuzzing
else
  fail destroyed-while-fuzzing "d$fc: state $(dom_field "$fc" state) $(dom_field "$fc" shutdown_reason), not destroyed"
fi
ok=1
for d in $fa $fb; do
  res=$(wait_result "$d" hcfuzz $((SECS + 120)))
  line=$(strip_dmesg < "$(console_log "$d")" | grep -a 'hcfuzz: seed .* hypercalls in' | tail -1)
  echo "# d$d: ${line#xkvm-guest: }"
  strip_dmesg < "$(console_log "$d")" | grep -a 'hcfuzz: results:' | tail -1 | sed 's/^xkvm-guest: /# /'
  if [ "$res" != "xtest: hcfuzz: PASS" ] || [ -z "$line" ]; then
    ok=0
    fail fuzzers-finish "d$d: $res; state $(dom_field "$d" state) $(dom_field "$d" shutdown_reason); last lines: $(strip_dmesg < "$(console_log "$d")" | tail -2 | tr '\n' '|')"
  fi
done
[ $ok = 1 ] && pass fuzzers-finish
LOOPS1=$(loops_done)
bound=$((64 + 11 * (SECS + 15)))
over=""
for d in $fa $fb; do
  n=$(grep -a -c "d$d[: ]" "$RUNDIR/xkvmd.log")
  echo "# xkvmd logged $n lines about d$d"
  [ "$n" -le $bound ] || over="$over d$d: $n lines (at most $bound);"
done
[ -z "$over" ] && pass log-bounded || fail log-bounded "$over"
echo "# the blk guest did $((LOOPS1 - LOOPS0)) loops while the fuzzers ran"
xk destroy "$fa" >/dev/null 2>&1; xk destroy "$fb" >/dev/null 2>&1
sleep 1

if xkvmd_up && [ "$(svc_pids)" = "$PIDS0" ]; then
  pass host-up
else
  fail host-up "xkvmd $(xkvmd_up && echo up || echo DOWN); pids before: $PIDS0, now: $(svc_pids)"
  tail -5 "$RUNDIR/xkvmd.log" | sed 's/^/#   /'
  exit 0
fi

# ---- leaks: measured with the victim still running, as before ---------------------------
FDS1=$(fd_count); THR1=$(status_field Threads); RSS1=$(status_field RssAnon); FREE1=$(free_kb)
echo "# after:  fds $FDS1, threads $THR1, RssAnon ${RSS1} kB, free ${FREE1} kB"
slack=${XKVM_HCFUZZ_RSS_SLACK_KB:-4096}
if grep -q -a AddressSanitizer "$XKVMD"; then
  echo "# RssAnon not compared: an ASan xkvmd keeps freed memory in quarantine"
  slack=$((RSS1 - RSS0))
fi
if [ "$FDS1" = "$FDS0" ] && [ "$THR1" = "$THR0" ] && [ "$FREE1" = "$FREE0" ] &&
   [ "$RSS1" -le $((RSS0 + slack)) ]; then
  pass no-leak
else
  fail no-leak "fds $FDS0 -> $FDS1, threads $THR0 -> $THR1, free $FREE0 -> $FREE1 kB, RssAnon $RSS0 -> $RSS1 kB"
  ls -l "/proc/$XKVMD_PID/fd" | sed 's/^/#   /' | tail -20
fi

# ---- the victim, and a guest made of the frames the fuzzers gave back --------------------
XENSTORED_PATH=$XS_SOCK xenstore-write "/local/domain/$victim/data/blk-stop" 1
vres=$(wait_result "$victim" blk 120)
make_cfg "$WORK/mem.cfg" mem "test=memory" 64 1
mem=$(xk create "$WORK/mem.cfg")
mres=$(wait_result "$mem" memory 60)
if [ "$vres" = "xtest: blk: PASS" ] && [ "$mres" = "xtest: memory: PASS" ] &&
   [ "$LOOPS1" -gt "$LOOPS0" ]; then
  pass victim-unaffected
else
  fail victim-unaffected "blk: $vres ($((LOOPS1 - LOOPS0)) loops during the fuzzing); memory: $mres"
fi
destroy_all

# ---- regressions: fixed seeds that once found a bug ---------------------------------------
# regression_seed LABEL SEED COUNT [VCPUS]: the fuzzer replays exactly COUNT calls from
# SEED; xkvmd must survive and the guest pass.
regression_seed() {
  local label=$1 seed=$2 count=$3 vcpus=${4:-1} d res
  make_cfg "$WORK/$label.cfg" "$label" "test=hcfuzz seed=$seed count=$count progress=3600" 32 "$vcpus"
  d=$(xk create "$WORK/$label.cfg") || { fail "$label" "create failed"; return; }
  res=$(wait_result "$d" hcfuzz 120)
  if [ "$res" = "xtest: hcfuzz: PASS" ] && xkvmd_up; then
    pass "$label"
  else
    fail "$label" "guest: $res; xkvmd $(xkvmd_up && echo up || echo DOWN)"
  fi
  xk destroy "$d" >/dev/null 2>&1
}

# The first fixed seed: the calls where it met 2^32 + n taken as hypercall n (fixed;
# the exact check is in hypercall-bad and test-hypercall-page).
regression_seed seed-1 1 20000
regression_seed seed-2-2vcpus 2 20000 2
destroy_all
if xkvmd_up && [ "$(svc_pids)" = "$PIDS0" ]; then pass host-up-after-seeds; else fail host-up-after-seeds "xkvmd or a service went down"; fi
