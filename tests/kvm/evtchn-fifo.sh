#!/usr/bin/env bash
# FIFO event channels (evtchn=fifo; docs/hypervisor.md, "FIFO event channels"): the
# test guest's event tests with its FIFO consumer, under both upcall modes; the FIFO
# ABI's own checks and hostile inputs (test=evtchn-fifo); an interdomain channel
# between a FIFO guest and a 2-level one; and a FIFO guest with events in flight
# across save/restore, live migration and live update (test=evtchn-fifo-soak).
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }

# run_fifo LABEL TEST "EXTRA CMDLINE" [VCPUS]
run_fifo() {
  local label=$1 t=$2 extra=$3 vcpus=${4:-1}
  run_guest_test "$t" 32 "$vcpus" "$label" "evtchn=fifo $extra"
}

run_fifo fifo-loopback-callback evtchn-loopback "upcall=callback"
run_fifo fifo-loopback-vector evtchn-loopback "upcall=vector"
run_fifo fifo-loopback-block evtchn-loopback "upcall=callback wait=block"
run_fifo fifo-virq-timer evtchn-virq-timer "upcall=vector"
run_fifo fifo-ipi-callback evtchn-ipi "upcall=callback" 2
run_fifo fifo-ipi-vector evtchn-ipi "upcall=vector" 2
run_guest_test evtchn-fifo 32 1 fifo-abi ""
