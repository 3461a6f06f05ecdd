#!/usr/bin/env bash
# FIFO event channels (evtchn=fifo; docs/hypervisor.md, "FIFO event channels"): the
# test guest's event tests with its FIFO consumer, under both upcall modes; the FIFO
# ABI's own checks and hostile inputs (test=evtchn-fifo); an interdomain channel
# between a FIFO guest and a 2-level one; and a 2-vCPU FIFO soak guest (xenstore,
# block I/O, IPIs: events in flight) across save/restore, two live migrations and a
# live update, still FIFO with the same ports after each, passing at the end; a guest
# that gives back a FIFO page is refused save and live update, nothing lost.
source "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
host_start h1 --migrate-listen 127.0.0.1:$P1 $(migrate_auth) --disk-root "$WORK" ||
  { fail start "xkvmd did not start"; exit 1; }
H1=$RUNDIR

# abi_of DOMID: the ABI xkvmd says the domain uses ("fifo" or "2-level").
abi_of() {
  xk debug-state "$1" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["events"]["abi"])' 2>/dev/null
}

# run_fifo LABEL TEST "EXTRA CMDLINE" [VCPUS]: the test passes, and xkvmd switched the
# domain to FIFO (its log says so once per domain).
run_fifo() {
  local label=$1 t=$2 extra=$3 vcpus=${4:-1} before after
  before=$(grep -c "event channels: FIFO ABI" "$H1/xkvmd.log")
  run_guest_test "$t" 32 "$vcpus" "$label" "evtchn=fifo $extra"
  after=$(grep -c "event channels: FIFO ABI" "$H1/xkvmd.log")
  [ "$after" -gt "$before" ] || fail "$label-used-fifo" "xkvmd never switched the domain to FIFO"
}

run_fifo fifo-loopback-callback evtchn-loopback "upcall=callback"
run_fifo fifo-loopback-vector evtchn-loopback "upcall=vector"
run_fifo fifo-loopback-block evtchn-loopback "upcall=callback wait=block"
run_fifo fifo-virq-timer evtchn-virq-timer "upcall=vector"
run_fifo fifo-ipi-callback evtchn-ipi "upcall=callback" 2
run_fifo fifo-ipi-vector evtchn-ipi "upcall=vector" 2

# Calling Xen with VMCALL/VMMCALL directly, as Linux does, where KVM intercepts it.
if vmcall_mode_or_skip fifo-vmcall; then
  run_fifo fifo-loopback-vmcall evtchn-loopback "upcall=vector hypercall=vmcall"
  run_fifo fifo-ipi-vmcall evtchn-ipi "upcall=vector hypercall=vmcall" 2
  run_guest_test evtchn-fifo 32 1 fifo-abi-vmcall "hypercall=vmcall"
fi

# The ABI's own rules and hostile inputs (bad init_control, expand_array past 128
# pages, priorities out of range, a LINK loop); xkvmd stays up through them.
run_guest_test evtchn-fifo 32 1 fifo-abi ""
check xkvmd-alive-after-hostile xk list

# ---- a FIFO server and a 2-level client on one interdomain channel ----------------
# Domids are handed out in order: the server is the next, the client the one after.
LAST=$(grep -a -o 'info: d[0-9]*: created' "$H1/xkvmd.log" | grep -o '[0-9]*' | sort -n | tail -1)
SID=$((LAST + 1)); CID=$((LAST + 2))
make_cfg "$WORK/ev-server.cfg" ev-server \
  "test=evtchn-interdomain role=server peer=$CID count=2000 evtchn=fifo" 32 1
if [ "$(xk create "$WORK/ev-server.cfg")" = "$SID" ] &&
   line=$(wait_line "$SID" 'xtest: evtchn-interdomain: port=[0-9]+' 60); then
  make_cfg "$WORK/ev-client.cfg" ev-client \
    "test=evtchn-interdomain role=client peer=$SID port=${line##*port=} count=2000" 32 1
  if [ "$(xk create "$WORK/ev-client.cfg")" = "$CID" ]; then
    for d in $CID $SID; do
      res=$(wait_result "$d" evtchn-interdomain 300)
      [ "$res" = "xtest: evtchn-interdomain: PASS" ] && pass "interdomain-fifo-2l-d$d" ||
        fail "interdomain-fifo-2l-d$d" "guest said: $res"
    done
  else
    fail interdomain-fifo-2l "creating the client (as d$CID) failed"
  fi
else
  fail interdomain-fifo-2l "the FIFO server (as d$SID) did not start or printed no port"
fi
xk destroy $CID >/dev/null 2>&1; xk destroy $SID >/dev/null 2>&1

# ---- a FIFO guest with events in flight: save/restore, migration, live update ------
host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) --disk-root "$WORK" ||
  { fail start-h2 "h2 did not start"; exit 1; }
H2=$RUNDIR
on() { RUNDIR=$1; }
DISK=$WORK/disk.img
truncate -s 16M "$DISK"
make_cfg "$WORK/soak.cfg" soak "test=soak mb=1 blk=1 cpus=2 evtchn=fifo" 48 2 \
  "disk = [ '$DISK,raw,xvda,rw' ]"
on "$H1"
D=$(xk create "$WORK/soak.cfg") || { fail soak-create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 90 >/dev/null || { fail soak-boot "no first round"; exit 1; }

rounds() { grep -a -o "round [0-9]* ok" "$1/dmesg-$2.log" 2>/dev/null | tail -1 | awk '{print $2}'; }
# ports HOST DOMID: its event channel ports (number, kind, vCPU, remote end).
ports() { pv_snapshot "$1" "$2" 2>/dev/null | grep '^port'; }
# moved LABEL HOST: the guest runs there, counts rounds, is FIFO with the same ports.
moved() {
  local label=$1 h=$2 r0 r1 now
  on "$h"
  r0=$(rounds "$h" "$D")
  for _ in $(seq 300); do
    r1=$(rounds "$h" "$D")
    [ -n "$r1" ] && [ "${r1:-0}" != "${r0:-0}" ] && break
    sleep 0.1
  done
  if [ "${r1:-0}" = "${r0:-0}" ]; then fail "$label" "no round after the move"; return; fi
  if [ "$(abi_of "$D")" != fifo ]; then fail "$label" "ABI $(abi_of "$D") after the move"; return; fi
  for _ in $(seq 50); do      # backends re-attach once the guest runs again
    now=$(ports "$h" "$D")
    [ "$now" = "$BASELINE" ] && break
    sleep 0.1
  done
  if [ "$now" != "$BASELINE" ]; then
    diff <(echo "$BASELINE") <(echo "$now") | head -6 | sed 's/^/#   /'
    fail "$label" "event channel ports changed"
    return
  fi
  pass "$label"
}
sleep 1
[ "$(abi_of "$D")" = fifo ] && pass soak-fifo || fail soak-fifo "ABI $(abi_of "$D")"
BASELINE=$(ports "$H1" "$D")
[ -n "$BASELINE" ] || fail soak-ports "debug-state lists no ports"

on "$H1"
if xk save "$D" "$WORK/fifo.img" >/dev/null 2>&1 && [ "$(xk restore "$WORK/fifo.img" 2>&1)" = "$D" ]; then
  moved fifo-save-restore "$H1"
else
  fail fifo-save-restore "save or restore failed"
fi
on "$H1"
if out=$(xk migrate "$D" "127.0.0.1:$P2" 2>&1); then moved fifo-migrate-there "$H2"; else
  fail fifo-migrate-there "$out"; fi
on "$H2"
if out=$(xk migrate "$D" "127.0.0.1:$P1" 2>&1); then moved fifo-migrate-back "$H1"; else
  fail fifo-migrate-back "$out"; fi
on "$H1"
if out=$(xk live-update --verify-memory 2>&1); then moved fifo-live-update "$H1"; else
  fail fifo-live-update "$out"; fi

on "$H1"
XENSTORED_PATH="$H1/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 120)
[ "$res" = "xtest: soak: PASS" ] && pass fifo-soak-verdict || fail fifo-soak-verdict "guest said: $res"

on "$H1"
# A hostile guest gives back the page it made a FIFO event array page: it cannot be
# saved, migrated or live-updated (its event state has no gfn any more), and a live
# update refuses before pausing anything, every domain running on; once it is gone,
# live update works again. (Before: the image was unrestorable, and the rollback lost
# every domain on the host.)
make_cfg "$WORK/giveback.cfg" fifo-giveback "test=fifo-giveback" 32 1
if G=$(xk create "$WORK/giveback.cfg") && wait_line "$G" 'xtest: fifo-giveback: given back' 60 >/dev/null; then
  pid0=$(info_field pid)
  if out=$(xk live-update 2>&1); then
    fail giveback-live-update-refused "live update went through: $out"
  elif ! grep -q "gave back or replaced gfn" <<< "$out"; then
    fail giveback-live-update-refused "refused, but not for the page: $out"
  elif [ "$(dom_field "$G" state)" != running ] || [ "$(info_field pid)" != "$pid0" ]; then
    fail giveback-live-update-refused "the guest is '$(dom_field "$G" state)', pid $pid0 -> $(info_field pid)"
  else
    pass giveback-live-update-refused
  fi
  if out=$(xk save "$G" "$WORK/giveback.img" 2>&1); then
    fail giveback-save-refused "saved: $out"
  elif ! grep -q "gave back or replaced gfn" <<< "$out" || [ "$(dom_field "$G" state)" != running ]; then
    fail giveback-save-refused "$out; guest '$(dom_field "$G" state)'"
  else
    pass giveback-save-refused
  fi
  xk destroy "$G" >/dev/null 2>&1
  if out=$(xk live-update 2>&1); then pass giveback-live-update-after; else
    fail giveback-live-update-after "$out"; fi
else
  fail giveback-live-update-refused "the guest did not give its page back: $(tail -3 "$(console_log "$G")" 2>/dev/null | tr '\n' ' ')"
fi
