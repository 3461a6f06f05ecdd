#!/usr/bin/env bash
# Run every test suite and print one closing line: N passed, N failed[, N skipped].
#   scripts/run-tests.sh BUILD SANBUILD
# Suites: unit (normal and ASan+UBSan builds), fuzz (ASan+UBSan, bounded time),
# kvm integration (normal build; skipped with a reason where /dev/kvm is absent), the
# Linux suite in a nested VM where this machine's KVM cannot run it (below), interop.
# The nested VM mostly occupies one core for 8-15 minutes, so it starts first, in the
# background, beside the unit tests and fuzzers (one core each); the KVM suites wait
# for it and keep both cores. Before the closing line: the slowest suites and where the
# time went (each suite's seconds are in $LOG/times, lines the counts ignore).
set -uo pipefail
BUILD=${1:-build}
SAN=${2:-build-san}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=$(mktemp -d /tmp/xkvm-test.XXXXXX)
export XKVM_ROOT=$ROOT XKVM_BUILD=$ROOT/$BUILD
# `make soak` (XKVM_SOAK=1): the same suites with the long counts the issues ask for.
if [ -n "${XKVM_SOAK:-}" ]; then
  FUZZ_SECONDS=${XKVM_FUZZ_SECONDS:-120}
  export XS_RANDOM_SECONDS=${XS_RANDOM_SECONDS:-30}
else
  FUZZ_SECONDS=${XKVM_FUZZ_SECONDS:-30}
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

results=$LOG/results times=$LOG/times
: > "$results"
: > "$times"
t_start=$EPOCHSECONDS

suite_log() { echo "$LOG/$(echo "$1" | tr '/ ' '__').log"; }

# record_suite LABEL RC SECONDS: count the PASS/FAIL/SKIP lines of a finished program's
# log. A program that dies without a result line, or exits non-zero with no FAIL line,
# counts as one failure of its own.
record_suite() {
  local label=$1 rc=$2 out; out=$(suite_log "$1")
  echo "TIME: $label $3 s" >> "$times"
  grep -E '^(PASS|FAIL|SKIP): ' "$out" | sed "s|^\([A-Z]*\): |\1: $label: |" | tee -a "$results"
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$out"; then
    echo "FAIL: $label: exited with status $rc (log: $out)" | tee -a "$results"
    tail -20 "$out" | sed 's/^/    /'
  fi
  if grep -q '^FAIL: ' "$out"; then
    echo "    (log: $out)"
  fi
}

# run_suite LABEL CMD...: run a test program to its end and count its lines.
run_suite() {
  local label=$1 t0=$EPOCHSECONDS rc; shift
  "$@" > "$(suite_log "$label")" 2>&1
  rc=$?
  record_suite "$label" "$rc" $((EPOCHSECONDS - t0))
}

# The Linux suite needs KVM's Xen intercept: a stock kernel calls Xen with VMCALL.
# Where this machine's KVM lacks it (kvm-pvm; no /dev/kvm), tests/kvm/linux.sh only
# checks the verdict, and the suite runs in the nested VM of scripts/kvm-vm.sh, whose
# KVM has it, stopped after XKVM_LINUX_VM_TIMEOUT seconds (a FAIL that says so):
# make test's short form gets 25 minutes (it took 13-15 under emulation, with two
# netfront queues, the balloon and a move each way), make soak's full form 90.
native_has_intercept() {   # KVM_CAP_XEN_HVM (38) has KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL
  [ -c /dev/kvm ] && python3 -c 'import fcntl, os, sys
sys.exit(0 if fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR), 0xAE03, 38) & 2 else 1)' 2>/dev/null
}

# start_nested: the nested Linux suite in the background; finish_nested counts it.
# Nothing it needs is written meanwhile (make test built both trees first; the unit
# tests and fuzzers only read them); its VM has its own /tmp and network, and its
# output directory is a fresh /tmp/xkvm-vm.*.
nested_pid=
start_nested() {
  local vm_timeout=${XKVM_LINUX_VM_TIMEOUT:-$([ -n "${XKVM_SOAK:-}" ] && echo 5400 || echo 1500)}
  nested_t0=$EPOCHSECONDS
  # The guest's own bounds inside, so that a stuck guest is reported by the suite (its
  # console and xkvmd's log) before the VM's bound cuts everything short.
  XKVM_VM_TIMEOUT=$vm_timeout XKVM_LINUX_BOOT_SECS=${XKVM_LINUX_BOOT_SECS:-$((vm_timeout / 2))} \
    XKVM_LINUX_REPLY_SECS=${XKVM_LINUX_REPLY_SECS:-$((vm_timeout / 6))} \
    "$ROOT/scripts/kvm-vm.sh" "$ROOT/$BUILD" linux > "$(suite_log kvm-vm/linux)" 2>&1 &
  nested_pid=$!
}

# finish_nested: wait for it and count its lines here, in the foreground, so that they
# never interleave with another suite's. Its time runs to its log's last write (its
# end, when that came before the wait).
finish_nested() {
  local t0=$EPOCHSECONDS rc end
  wait "$nested_pid"
  rc=$?
  nested_pid=
  nested_wait=$((EPOCHSECONDS - t0))
  end=$(stat -c %Y "$(suite_log kvm-vm/linux)" 2>/dev/null || echo "$EPOCHSECONDS")
  record_suite kvm-vm/linux "$rc" $((end - nested_t0))
}

# stop_nested (on exit, and so on an interrupt): end the nested suite if it still runs.
# kvm-vm.sh stops its VM when told to end, once its current step has ended: then that
# step (by parent pid), so that it ends at once.
stop_nested() {
  [ -n "${nested_pid:-}" ] || return 0
  echo "stopping the nested VM's suite (pid $nested_pid)" >&2
  kill -TERM "$nested_pid" 2>/dev/null
  pkill -TERM -P "$nested_pid" 2>/dev/null
  wait "$nested_pid" 2>/dev/null
  nested_pid=
}
trap stop_nested EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

nested_wait=
if ! native_has_intercept; then
  echo "== the Linux suite in a nested VM, in the background until the KVM suites (this machine's KVM cannot intercept VMCALL)"
  start_nested
fi

echo "== unit tests"
for t in "$ROOT/$BUILD"/tests/unit/test-*; do
  [ -f "$t" ] && [ -x "$t" ] && run_suite "unit/$(basename "$t")" "$t"
done
echo "== unit tests under ASan+UBSan"
for t in "$ROOT/$SAN"/tests/unit/test-*; do
  [ -f "$t" ] && [ -x "$t" ] && run_suite "san/$(basename "$t")" "$t"
done

echo "== fuzz targets (ASan+UBSan, ${FUZZ_SECONDS}s each)"
for f in "$ROOT/$SAN"/tests/fuzz/fuzz-*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus_src=$ROOT/tests/fuzz/corpus/${name#fuzz-}
  work=$LOG/corpus-$name
  mkdir -p "$work"
  [ -d "$corpus_src" ] && cp -r "$corpus_src"/. "$work"/
  run_suite "fuzz/$name" "$ROOT/scripts/run-fuzz.sh" "$f" "$work" "$FUZZ_SECONDS"
done
t_fuzz_end=$EPOCHSECONDS

if [ -n "$nested_pid" ]; then
  echo "== the Linux suite in a nested VM (started before the unit tests)"
  finish_nested
fi

t_kvm=$EPOCHSECONDS
echo "== KVM integration tests"
for t in "$ROOT"/tests/kvm/*.sh; do
  [ -f "$t" ] && [ -x "$t" ] && run_suite "kvm/$(basename "$t" .sh)" "$t"
done

t_interop=$EPOCHSECONDS
echo "== interop tests (Debian's Xen tools)"
for t in "$ROOT"/tests/interop/*.sh; do
  [ -f "$t" ] && [ -x "$t" ] && run_suite "interop/$(basename "$t" .sh)" "$t"
done

# report_times: the slowest suites, then the phases (the nested suite ran beside the
# first one; "waiting" is how long the KVM suites waited for it).
report_times() {
  local now=$EPOCHSECONDS nested=
  echo
  echo "slowest suites (of $(wc -l < "$times")):"
  sed -E 's/^TIME: (.*) ([0-9]+) s$/\2 \1/' "$times" | sort -rn | head -8 |
    while read -r secs label; do printf '  %5d s  %s\n' "$secs" "$label"; done
  [ -n "$nested_wait" ] &&
    nested=" (beside them the nested Linux suite, then ${nested_wait} s waiting for it)"
  echo "time: unit+fuzz $((t_fuzz_end - t_start)) s$nested, KVM $((t_interop - t_kvm)) s," \
    "interop $((now - t_interop)) s; total $((now - t_start)) s ($(((now - t_start + 30) / 60)) min)"
}
report_times

pass=$(grep -c '^PASS: ' "$results")
fail=$(grep -c '^FAIL: ' "$results")
skip=$(grep -c '^SKIP: ' "$results")
echo
echo "logs: $LOG"
if [ "$skip" -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
