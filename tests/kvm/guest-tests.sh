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
check memory-returned [ "$(info_field free_memory_kb)" = "$free0" ]
check xkvmd-alive xk info
