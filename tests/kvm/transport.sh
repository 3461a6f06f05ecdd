#!/usr/bin/env bash
# The hypercall transport (docs/hypervisor.md, "The hypercall transport" and "A guest
# this host cannot run"). xkvm info names the transport KVM allows: KVM's Xen intercept
# where KVM_CAP_XEN_HVM has it, else the port-I/O page.
#
# Without the intercept (kvm_pvm): the test guest in hypercall=vmcall mode is stopped
# within 60 s with the verdict, which `xkvm list` shows and xkvmd's log explains; guests
# that make no exit for longer than the watch's 5 s (a CPL3 loop, a vCPU idle in
# SCHEDOP_block) are left alone.
#
# With it (kvm_amd/kvm_intel, `make kvm-vm`): the page holds the native VMCALL/VMMCALL
# stubs; a page guest moves from a port-I/O host (xkvmd --hypercall-transport port-io)
# to the intercept host and back; a guest that has issued VMCALL is refused by the
# port-I/O host, at migration and at restore, and keeps running on its source; on the
# intercept host it survives a live update and a save and restore, still a VMCALL guest.
# (guest-tests.sh and pv-abi.sh run the guest's tests in vmcall mode there.)
source "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
flavour=unknown
for m in kvm_pvm kvm_intel kvm_amd; do [ -d /sys/module/$m ] && flavour=$m; done

# What KVM says, asked directly: KVM_CHECK_EXTENSION(KVM_CAP_XEN_HVM).
cap=$(python3 -c 'import fcntl, os; print(fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR), 0xAE03, 38))')
want=port-io
[ $(( ${cap:-0} & 2 )) -ne 0 ] && want=kvm-intercept
echo "# KVM_CAP_XEN_HVM = $cap"

host_start h1 --migrate-listen 127.0.0.1:$P1 $(migrate_auth) || { fail start "xkvmd did not start"; exit 1; }
H1=$RUNDIR
on() { RUNDIR=$1; }
got=$(info_field hypercall_transport)
if [ "$got" = "$want" ]; then pass transport-named; else fail transport-named "xkvm info says '$got', KVM allows '$want'"; fi

# ticks HOST DOMID: the spin guest's last tick.
# (the guest prints its ticks with console_io: the hypervisor-console log, dmesg-N.log)
ticks() { grep -a -o "spin: tick [0-9]*" "$1/dmesg-$2.log" 2>/dev/null | tail -1 | awk '{print $3}'; }
# ticking HOST DOMID: running there, and its tick count grows.
ticking() {
  local t0 t1
  [ "$(RUNDIR=$1 dom_field "$2" state)" = running ] || return 1
  t0=$(ticks "$1" "$2")
  for _ in $(seq 600); do
    t1=$(ticks "$1" "$2")
    [ -n "$t1" ] && [ "$t1" != "${t0:-}" ] && return 0
    sleep 0.1
  done
  return 1
}

verdict_checks() {
  make_cfg "$WORK/vm.cfg" vmcall "test=hello hypercall=vmcall" 32 1
  local id t0 secs
  id=$(xk create "$WORK/vm.cfg") || { fail verdict "xkvm create failed"; return; }
  t0=$(date +%s)
  wait_state "$id" shutdown 60
  secs=$(( $(date +%s) - t0 ))
  local why; why=$(dom_field "$id" crash_reason)
  local text="the guest issues VMCALL hypercalls; this host's KVM ($flavour) cannot intercept them"
  if [ "$(dom_field "$id" shutdown_reason)" = crash ] && [ "$why" = "$text" ]; then
    pass verdict-within-60s; echo "#   after ${secs} s: $why"
  else
    fail verdict-within-60s "after ${secs} s: state $(dom_field "$id" state), reason '$why'"
  fi
  if xk list | grep -F "$id" | grep -q -F "crash: $text"; then pass verdict-in-list
  else fail verdict-in-list "$(xk list | grep -F vmcall)"; fi
  if grep -q -E "d$id v0: (VMCALL|VMMCALL) at RIP 0x[0-9a-f]+ \(RAX [0-9]+\): this host cannot intercept it" "$RUNDIR/xkvmd.log"
  then pass verdict-logged; else fail verdict-logged "no explanation in xkvmd.log"; fi
  xk destroy "$id" >/dev/null 2>&1

  # No verdict on healthy guests that make no exit for longer than the watch waits.
  make_cfg "$WORK/busy.cfg" busy "test=busy-user tick=2500000000 ticks=1" 32 1
  id=$(xk create "$WORK/busy.cfg") || { fail quiet-cpl3-loop "xkvm create failed"; return; }
  local res; res=$(wait_result "$id" busy-user 120)
  if [ "$res" = "xtest: busy-user: PASS" ]; then pass quiet-cpl3-loop
  else fail quiet-cpl3-loop "guest said: $res, reason '$(dom_field "$id" crash_reason)'"; fi
  xk destroy "$id" >/dev/null 2>&1
  make_cfg "$WORK/hold.cfg" hold "test=evtchn-hold" 32 2
  id=$(xk create "$WORK/hold.cfg") || { fail quiet-idle "xkvm create failed"; return; }
  if wait_line "$id" '^xkvm-guest: evtchn-hold: ready' 60 >/dev/null; then
    sleep 8
    if [ "$(dom_field "$id" state)" = running ] && [ "$(dom_field "$id" crash_reason)" = null ]
    then pass quiet-idle; else fail quiet-idle "state $(dom_field "$id" state): $(dom_field "$id" crash_reason)"; fi
  else
    fail quiet-idle "the evtchn-hold guest never became ready"
  fi
  xk destroy "$id" >/dev/null 2>&1
}

intercept_checks() {
  # The page holds the host's native instruction; calling through it is VMCALL too.
  make_cfg "$WORK/page.cfg" page "test=cpuid" 32 1
  local id insn
  id=$(xk create "$WORK/page.cfg") || { fail native-page "xkvm create failed"; return; }
  insn=$(wait_line "$id" 'hypercall page 0x[0-9a-f]+ via MSR' 60)
  case $insn in
    *"(vmcall)"|*"(vmmcall)") pass native-page ;;
    *) fail native-page "banner: $insn" ;;
  esac
  if [ "$(wait_result "$id" cpuid 60)" = "xtest: cpuid: PASS" ] && [ "$(dom_field "$id" guest_vmcall)" = True ]
  then pass native-page-runs; else fail native-page-runs "cpuid test, guest_vmcall $(dom_field "$id" guest_vmcall)"; fi
  xk destroy "$id" >/dev/null 2>&1

  host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) --hypercall-transport port-io ||
    { fail start-h2 "the port-io xkvmd did not start"; return; }
  H2=$RUNDIR
  check h2-transport [ "$(info_field hypercall_transport)" = port-io ]

  # A port-I/O page guest moves to the intercept host and back.
  make_cfg "$WORK/io.cfg" io "test=spin tick=20000" 32 1
  on "$H2"; id=$(xk create "$WORK/io.cfg") || { fail portio-to-intercept "xkvm create failed"; return; }
  if ticking "$H2" "$id" && xk migrate "$id" "127.0.0.1:$P1" >/dev/null 2>&1 && ticking "$H1" "$id" &&
     [ "$(RUNDIR=$H1 dom_field "$id" guest_vmcall)" = False ]; then
    pass portio-to-intercept
  else
    fail portio-to-intercept "guest $id not ticking on the intercept host"
  fi
  on "$H1"
  if xk migrate "$id" "127.0.0.1:$P2" >/dev/null 2>&1 && ticking "$H2" "$id"; then pass portio-back
  else fail portio-back "guest $id did not come back to the port-io host"; fi
  on "$H2"; xk destroy "$id" >/dev/null 2>&1

  # A guest that has issued VMCALL stays where it is.
  on "$H1"
  make_cfg "$WORK/vm.cfg" vmspin "test=spin tick=20000 hypercall=vmcall" 32 1
  id=$(xk create "$WORK/vm.cfg") || { fail vmcall-refused "xkvm create failed"; return; }
  ticking "$H1" "$id" || { fail vmcall-refused "the vmcall guest does not tick"; return; }
  local out; out=$(xk migrate "$id" "127.0.0.1:$P2" 2>&1)
  if [ $? -ne 0 ] && echo "$out" | grep -q "the guest issues VMCALL hypercalls; this host's KVM ($flavour) cannot intercept them"; then
    pass vmcall-refused; echo "$out" | head -2 | sed "s/^/#   /"
  else
    fail vmcall-refused "migrate said: $out"
  fi
  if ticking "$H1" "$id"; then pass vmcall-stays-on-source; else fail vmcall-stays-on-source "state $(dom_field "$id" state)"; fi
  if xk save "$id" "$WORK/vm.img" --keep >/dev/null 2>&1; then
    on "$H2"; out=$(xk restore "$WORK/vm.img" 2>&1)
    if [ $? -ne 0 ] && echo "$out" | grep -q "cannot intercept them" && [ -z "$(xk list --json | grep domid)" ]
    then pass vmcall-restore-refused; else fail vmcall-restore-refused "restore said: $out"; fi
    on "$H1"
  else
    fail vmcall-restore-refused "xkvm save failed"
  fi
  # On its own (intercept) host it is saved and restored, and survives a live update,
  # still a VMCALL guest.
  on "$H1"
  if xk live-update >/dev/null 2>&1 && ticking "$H1" "$id" && [ "$(dom_field "$id" guest_vmcall)" = True ]
  then pass vmcall-live-update; else fail vmcall-live-update "state $(dom_field "$id" state), guest_vmcall $(dom_field "$id" guest_vmcall)"; fi
  xk destroy "$id" >/dev/null 2>&1
  if [ -s "$WORK/vm.img" ] && xk restore "$WORK/vm.img" >/dev/null 2>&1 && ticking "$H1" "$id" &&
     [ "$(dom_field "$id" guest_vmcall)" = True ]; then
    pass vmcall-restore-intercept
  else
    fail vmcall-restore-intercept "restored guest $id: state $(dom_field "$id" state), guest_vmcall $(dom_field "$id" guest_vmcall)"
  fi
  xk destroy "$id" >/dev/null 2>&1
}

if [ "$want" = port-io ]; then
  verdict_checks
  skip intercept "this host's KVM ($flavour) has no Xen hypercall intercept (KVM_CAP_XEN_HVM = $cap): make kvm-vm SUITES=transport runs these checks"
else
  skip verdict "this host's KVM ($flavour) intercepts VMCALL: no verdict to give (kvm_pvm hosts check it)"
  intercept_checks
fi
on "$H1"; check xkvmd-alive xk info
