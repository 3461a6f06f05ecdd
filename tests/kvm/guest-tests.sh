#!/usr/bin/env bash
# Boot the test guest with each of its core tests on a fresh xkvmd; each must PASS
# and power off.
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
free0=$(info_field free_memory_kb)
for t in hello cpuid memory hypercall-bad; do
  run_guest_test "$t"
done
run_guest_test memory 64 2 memory-64m-2vcpu
# A guest flooding the hypervisor console (console_io, debug port) gets a bounded log:
# 8 MiB written, at most the burst and the rate for the seconds it ran kept.
t0=$(date +%s)
run_guest_test console-flood
secs=$(( $(date +%s) - t0 + 1 ))
log=$(ls -t "$RUNDIR"/dmesg-*.log | head -1)
size=$(stat -c %s "$log")
if [ "$size" -le $(( 256 * 1024 + secs * 64 * 1024 + 4096 )) ] &&
   grep -a -q "bytes of console output dropped" "$log"; then
  pass console-flood-bounded
else
  fail console-flood-bounded "$size bytes kept in $secs s, or no drop noted"
fi
# The same guest calling Xen with VMCALL/VMMCALL directly (hypercall=vmcall), where KVM
# intercepts it; console-flood's long console_io writes are continuations.
if vmcall_mode_or_skip vmcall-mode; then
  for t in hello cpuid memory hypercall-bad console-flood; do
    run_guest_test "$t" 32 1 "$t-vmcall" hypercall=vmcall
  done
  run_guest_test memory 64 2 memory-64m-2vcpu-vmcall hypercall=vmcall
fi
check memory-returned [ "$(info_field free_memory_kb)" = "$free0" ]
check xkvmd-alive xk info
