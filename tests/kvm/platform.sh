#!/usr/bin/env bash
# What a stock Linux PVH guest needs from its platform (docs/hypervisor.md, "ACPI",
# "SMP", "The hypercall transport"): the test guest reads the ACPI tables from
# start_info's RSDP and powers off through the FADT's sleep register (the domain must
# end as poweroff, by that path); starts vCPU 1 with LAPIC INIT/SIPI, also with a
# save/restore (and, on another guest, a live update of xkvmd) between INIT and SIPI
# and another while the started vCPU runs; keeps a saved guest's TSC rate or refuses
# a host that cannot; and uses the hypercalls Linux needs (set_timer_op, vm_assist,
# pagetable_dying, XENMEM queries, the vcpu_time area), unimplemented ones being
# logged once per domain.
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
LOG=$RUNDIR/xkvmd.log

show_log() {
  local log; log=$(console_log "$1")
  [ -f "$log" ] && tail -n "${2:-8}" "$log" | sed 's/^/#   /'
}

# guest LABEL CMDLINE VCPUS: boot it; sets DOMID.
guest() {
  make_cfg "$WORK/$1.cfg" "$1" "$2" 32 "$3"
  DOMID=$(xk create "$WORK/$1.cfg") || { fail "$1" "xkvm create failed"; return 1; }
}

# passed LABEL TEST: the guest said PASS and powered off.
passed() {
  local res; res=$(wait_result "$DOMID" "$2" 180)
  if [ "$res" != "xtest: $2: PASS" ]; then
    fail "$1" "guest said: $res"; show_log "$DOMID"; return 1
  fi
  if ! wait_state "$DOMID" shutdown 20 || [ "$(dom_field "$DOMID" shutdown_reason)" != poweroff ]; then
    fail "$1" "passed but did not power off (state $(dom_field "$DOMID" state), reason $(dom_field "$DOMID" shutdown_reason))"
    return 1
  fi
  pass "$1"
}

# ---- ACPI tables, and power-off through them ------------------------------------
for n in 1 3; do
  if guest "acpi-$n" "test=acpi vcpus=$n" "$n" && passed "acpi-${n}vcpu" acpi; then
    if grep -q "d$DOMID v0: guest powered off through ACPI (S5)" "$LOG"; then
      pass "acpi-${n}vcpu-poweroff-via-s5"
    else
      fail "acpi-${n}vcpu-poweroff-via-s5" "xkvmd did not log the ACPI power-off"
    fi
  fi
  strip_dmesg < "$(console_log "$DOMID")" | grep -a "^xkvm-guest: acpi:" | sed 's/^/#   /'
  xk destroy "$DOMID" >/dev/null 2>&1
done

# ---- hypercalls --------------------------------------------------------------------
if guest platform-hc "test=platform-hc" 1 && passed platform-hc platform-hc; then
  strip_dmesg < "$(console_log "$DOMID")" | grep -a "^xkvm-guest: platform-hc:" | sed 's/^/#   /'
  a=$(grep -c "d$DOMID: unimplemented hypercall 1 (mmu_update): -ENOSYS" "$LOG")
  b=$(grep -c "d$DOMID: unimplemented vcpu_op (hypercall 24) sub-op 99: -ENOSYS" "$LOG")
  if [ "$a" = 1 ] && [ "$b" = 1 ]; then
    pass unimplemented-logged-once
  else
    fail unimplemented-logged-once "mmu_update logged $a times, vcpu_op 99 $b times (each called twice)"
  fi
fi
xk destroy "$DOMID" >/dev/null 2>&1

# ---- INIT/SIPI --------------------------------------------------------------------
if guest sipi "test=sipi" 2 && passed sipi sipi; then
  strip_dmesg < "$(console_log "$DOMID")" | grep -a "^xkvm-guest: sipi:" | sed 's/^/#   /'
fi
xk destroy "$DOMID" >/dev/null 2>&1

# save_restore LABEL: xkvm save, then restore; the same domid comes back running.
save_restore() {
  local img=$WORK/$1.img
  if xk save "$DOMID" "$img" >/dev/null 2>"$WORK/$1.err" &&
     [ "$(xk restore "$img" 2>>"$WORK/$1.err")" = "$DOMID" ] && wait_state "$DOMID" running 20; then
    pass "$1"
  else
    fail "$1" "$(tr '\n' ' ' < "$WORK/$1.err")"
    return 1
  fi
}

# Saved between INIT and SIPI: vCPU 1 must come back waiting for the SIPI (KVM's
# INIT_RECEIVED); saved while it runs the trampoline: it must run on. The guest waits
# 20 s of its time between the two IPIs, and counts for 20 s: a restore truncates the
# console log, so "sipi sent" in the new log shows the SIPI came after the restore.
if guest sipi-saved "test=sipi delay_ms=20000 hold_ms=20000" 2; then
  if wait_line "$DOMID" '^xtest: sipi: init sent' 120 >/dev/null &&
     save_restore sipi-save-between-init-and-sipi &&
     wait_line "$DOMID" '^xtest: sipi: ap running' 120 >/dev/null; then
    if grep -a -q '^(d[0-9]*) xtest: sipi: sipi sent' "$(console_log "$DOMID")"; then
      pass sipi-saved-before-the-sipi
    else
      skip sipi-saved-before-the-sipi "the save came after the SIPI (this host is too slow for the guest's 20 s window)"
    fi
  fi
  if grep -a -q '^(d[0-9]*) xtest: sipi: ap running' "$(console_log "$DOMID")" &&
     save_restore sipi-save-while-ap-runs; then
    passed sipi-across-save-restore sipi
  else
    fail sipi-across-save-restore "the guest did not reach its lines"
    show_log "$DOMID"
  fi
  xk destroy "$DOMID" >/dev/null 2>&1
fi
# The same across live updates of xkvmd (the image keeps the console log, so line
# numbers tell whether the SIPI came after the first update).
if guest sipi-lu "test=sipi delay_ms=20000 hold_ms=20000" 2; then
  clog=$(console_log "$DOMID")
  if wait_line "$DOMID" '^xtest: sipi: init sent' 120 >/dev/null &&
     xk live-update >/dev/null 2>"$WORK/lu1.err"; then
    pass sipi-live-update-between-init-and-sipi
    upto=$(wc -l < "$clog")
    if wait_line "$DOMID" '^xtest: sipi: ap running' 120 >/dev/null; then
      at=$(grep -a -n '^(d[0-9]*) xtest: sipi: sipi sent' "$clog" | head -1 | cut -d: -f1)
      if [ "${at:-0}" -gt "$upto" ]; then
        pass sipi-live-updated-before-the-sipi
      else
        skip sipi-live-updated-before-the-sipi "the update ended after the SIPI (this host is too slow for the guest's 20 s window)"
      fi
      if xk live-update >/dev/null 2>"$WORK/lu2.err"; then
        pass sipi-live-update-while-ap-runs
        passed sipi-across-live-update sipi
      else
        fail sipi-live-update-while-ap-runs "$(cat "$WORK/lu2.err")"
      fi
    else
      fail sipi-across-live-update "vCPU 1 never ran"; show_log "$DOMID"
    fi
  else
    fail sipi-live-update-between-init-and-sipi "no init line, or: $(cat "$WORK/lu1.err")"
  fi
  xk destroy "$DOMID" >/dev/null 2>&1
fi

# ---- TSC rate ---------------------------------------------------------------------
# A save file whose guest calibrated a TSC 1.5 times this host's: where KVM can scale
# the guest's TSC the restore keeps that rate and the guest runs on; where it cannot
# (kvm-pvm) the restore is refused, naming both rates, and nothing is left behind.
tsc_control=$(python3 -c '
import fcntl, os
fd = os.open("/dev/kvm", os.O_RDWR)
print(1 if fcntl.ioctl(fd, 0xAE03, 60) > 0 else 0)')
make_cfg "$WORK/tsc.cfg" tsc "test=spin" 32 1
if D=$(xk create "$WORK/tsc.cfg") && wait_line "$D" '^xtest: spin: tick' 60 >/dev/null &&
   xk save "$D" "$WORK/tsc.img" >/dev/null 2>&1; then
  python3 "$(dirname "$0")/stream-edit.py" "$WORK/tsc.img" "$WORK/tsc-fast.img" --tsc-khz-times 1.5
  if [ "$tsc_control" = 1 ]; then
    if [ "$(xk restore "$WORK/tsc-fast.img" 2>"$WORK/tsc.err")" = "$D" ] &&
       wait_state "$D" running 20 && grep -q "d$D: guest TSC scaled to" "$LOG"; then
      pass tsc-rate-scaled-on-restore
    else
      fail tsc-rate-scaled-on-restore "$(cat "$WORK/tsc.err")"
    fi
  elif ! xk restore "$WORK/tsc-fast.img" >/dev/null 2>"$WORK/tsc.err" &&
       grep -q "cannot scale a guest's TSC" "$WORK/tsc.err" &&
       [ -z "$(dom_field "$D" state)" ]; then
    pass tsc-rate-refused-without-scaling
    sed 's/^/#   /' "$WORK/tsc.err"
  else
    fail tsc-rate-refused-without-scaling "restore: $(cat "$WORK/tsc.err"), state $(dom_field "$D" state)"
  fi
  xk destroy "$D" >/dev/null 2>&1
  # The unedited image still restores here (same rate): nothing changed for it.
  if [ "$(xk restore "$WORK/tsc.img" 2>"$WORK/tsc.err")" = "$D" ] && wait_state "$D" running 20; then
    pass tsc-rate-same-host-restores
  else
    fail tsc-rate-same-host-restores "$(cat "$WORK/tsc.err")"
  fi
  xk destroy "$D" >/dev/null 2>&1
else
  fail tsc-rate "could not boot and save a spinning guest"
fi
# ---- interrupt shadow and NMI state ------------------------------------------------
# A vCPU stopped right after `sti` must come back in the shadow, or an interrupt taken
# before its `hlt` is a wake-up it sleeps through. The state is put in a save file (no
# test can place the stop in a one-instruction window), restored paused: KVM must hold
# it; saved again before the vCPU ran, the new file must carry it (the save side).
intr_kvm() {    # "SHADOW NMI_MASKED" of vCPU 0, from debug-state (the domain paused)
  xk debug-state "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin); st = d.get("state", d)
v = st.get("vcpus_kvm", [{}])[0]
print(v.get("interrupt_shadow"), v.get("nmi_masked"))'
}
make_cfg "$WORK/intr.cfg" intr "test=spin" 32 1
if D=$(xk create "$WORK/intr.cfg") && wait_line "$D" '^xtest: spin: tick' 60 >/dev/null &&
   xk pause "$D" >/dev/null && xk save "$D" "$WORK/intr.img" >/dev/null 2>&1; then
  # STI shadow (bit 0) and NMI masked (bit 2): docs/domain-context.md, VCPU_PLATFORM.
  python3 "$(dirname "$0")/stream-edit.py" "$WORK/intr.img" "$WORK/intr-sti.img" --intr-state 0=5
  got=
  if [ "$(xk restore "$WORK/intr-sti.img" 2>"$WORK/intr.err")" = "$D" ]; then
    got=$(intr_kvm "$D")
  fi
  # KVM reports any shadow as a non-zero value (SVM does not tell STI from MOV SS).
  if [ -n "$got" ] && [ "${got%% *}" != 0 ] && [ "${got#* }" = 1 ]; then
    pass intr-state-restored
  else
    fail intr-state-restored "KVM after the restore: shadow/nmi_masked '$got' $(cat "$WORK/intr.err")"
  fi
  if xk save "$D" "$WORK/intr-again.img" >/dev/null 2>&1 &&
     [ "$(xk restore "$WORK/intr-again.img" 2>"$WORK/intr.err")" = "$D" ] &&
     [ "$(intr_kvm "$D")" = "$got" ]; then
    pass intr-state-saved
  else
    fail intr-state-saved "saved again and restored: '$(intr_kvm "$D" 2>&1)', was '$got' $(cat "$WORK/intr.err")"
  fi
  # And the guest runs on from there.
  xk unpause "$D" >/dev/null
  n0=$(grep -c 'xtest: spin: tick' "$(console_log "$D")")
  if wait_state "$D" running 10 && sleep 2 &&
     [ "$(grep -c 'xtest: spin: tick' "$(console_log "$D")")" -gt "$n0" ]; then
    pass intr-state-runs-on
  else
    fail intr-state-runs-on "state $(dom_field "$D" state), ticks $n0 -> $(grep -c 'xtest: spin: tick' "$(console_log "$D")")"
  fi
  xk destroy "$D" >/dev/null 2>&1
else
  fail intr-state "could not boot, pause and save a spinning guest"
fi

check xkvmd-alive xk info
