#!/usr/bin/env bash
# The toolstack verbs a guest answers (docs/control-api.md "shutdown", "sysrq"), the
# hypervisor-console log (`xkvm dmesg`) and a triple fault (docs/hypervisor.md):
#
#   shutdown-acknowledged   test=control, `xkvm shutdown -w`: the guest acknowledges
#                           (control/shutdown back to "") and powers off; -w returns once
#                           it has (on_poweroff=preserve: shut down, reason poweroff)
#   shutdown-w-destroyed    on_poweroff=destroy: -w returns once the domain is gone
#   reboot-restarted        `xkvm reboot -w`: on_reboot=restart, the old domid is gone and
#                           the name runs again under a new one
#   sysrq                   `xkvm sysrq D h`: the guest sees 'h' and acknowledges it
#   shutdown-unanswered     a guest without a control watch: control/shutdown is written
#                           (as libxl does for PVH, no feature check), the CLI gives up
#                           after --timeout without an acknowledgement, the guest runs on
#   verbs-refused           a shut-down domain, a bad key, a bad reason, no such domain
#   dmesg-lines             the guest's console_io output is in `xkvm dmesg` as "(dN) text"
#                           lines, and not in the console (ring) log
#   dmesg-long-line         a 450-byte line is cut at 199 bytes, as Xen's DOMAIN_PBUF_SIZE
#   dmesg-clear             `xkvm dmesg -c` prints, then the next dmesg has only newer lines
#   dmesg-live-update       the log is kept across a live update and grows on
#   dmesg-migration         after a migration the source keeps its log; the destination's
#                           has only what the guest printed there
#   triple-fault-reboot     a triple fault is a shutdown with reason reboot (Xen's
#                           HVM_PARAM_TRIPLE_FAULT_REASON default): on_reboot=preserve
#                           keeps it as such, on_crash does not apply
#   triple-fault-restart    with on_reboot=restart (xl's default) it runs again, new domid
source "$(dirname "$0")/lib.sh"
require_kvm
P2=$((20000 + RANDOM % 20000))
host_start h1 $(migrate_auth) || { fail start "xkvmd did not start"; exit 1; }
H1=$RUNDIR
XS=(env XENSTORED_PATH="$H1/xenstored/socket")

# control_guest LABEL [xl.cfg lines, each replacing make_cfg's of its key]: a
# test=control guest that is ready; sets D.
control_guest() {
  local label=$1 f=$WORK/$1.cfg l; shift
  make_cfg "$f" "$label" "test=control" 32 1
  for l in "$@"; do
    grep -v "^${l%% =*} = " "$f" > "$f.new"; echo "$l" >> "$f.new"; mv "$f.new" "$f"
  done
  D=$(xk create "$f") && wait_line "$D" "control: ready" 60 >/dev/null
}

# named NAME OLD: the domids of domains called NAME other than OLD.
named() {
  xk list --json | python3 -c '
import json, sys
doms = json.load(sys.stdin)
doms = doms.get("domains", doms) if isinstance(doms, dict) else doms
print(" ".join(str(d["domid"]) for d in doms if d["name"] == sys.argv[1] and d["domid"] != int(sys.argv[2])))' "$1" "$2"
}

# --- shutdown -w, acknowledged ---
if control_guest ctl1; then
  out=$(timeout 60 "$XKVM" --rundir "$RUNDIR" shutdown -w "$D" 2>&1)
  ack=$(wait_line "$D" 'control: shutdown request "poweroff" acknowledged' 5)
  node=$("${XS[@]}" xenstore-read "/local/domain/$D/control/shutdown" 2>&1)
  if [ -z "$ack" ]; then fail shutdown-acknowledged "the guest did not see the request ($out)"
  elif [ "$(dom_field "$D" state)/$(dom_field "$D" shutdown_reason)" != shutdown/poweroff ]; then
    fail shutdown-acknowledged "after -w: $(dom_field "$D" state) $(dom_field "$D" shutdown_reason): $out"
  elif [ -n "$node" ]; then fail shutdown-acknowledged "control/shutdown is \"$node\", not acknowledged"
  elif ! grep -q "reason: poweroff" <<<"$out"; then fail shutdown-acknowledged "-w said: $out"
  else pass shutdown-acknowledged; fi
  # Refusals on a domain that has shut down.
  r1=$(xk shutdown "$D" 2>&1); s1=$?
  r2=$(xk sysrq "$D" h 2>&1); s2=$?
  xk destroy "$D"
else
  fail shutdown-acknowledged "the control guest did not start: $(tail -2 "$(console_log "${D:-0}")" 2>/dev/null)"
fi

# --- on_poweroff = destroy: -w returns once it is gone ---
if control_guest ctl2 'on_poweroff = "destroy"'; then
  out=$(timeout 60 "$XKVM" --rundir "$RUNDIR" shutdown -w ctl2 2>&1)
  if [ $? = 0 ] && [ -z "$(dom_field "$D" state)" ] && grep -q "destroyed" <<<"$out"; then
    pass shutdown-w-destroyed
  else fail shutdown-w-destroyed "-w: $out; state now: $(dom_field "$D" state)"; fi
else
  fail shutdown-w-destroyed "the control guest did not start"
fi

# --- reboot -w: on_reboot = restart ---
if control_guest ctl3 'on_reboot = "restart"'; then
  old=$D
  out=$(timeout 60 "$XKVM" --rundir "$RUNDIR" reboot -w "$old" 2>&1)
  new=$(named ctl3 "$old")
  if [ -n "$(dom_field "$old" state)" ]; then fail reboot-restarted "d$old still there: $out"
  elif [ -z "$new" ] || [ "$new" = "$old" ]; then fail reboot-restarted "no new ctl3 ($new): $out"
  elif ! wait_line "$new" "control: ready" 60 >/dev/null; then fail reboot-restarted "d$new did not boot"
  elif ! grep -q 'shutdown request "reboot" acknowledged' "$(console_log "$old")"; then
    fail reboot-restarted "d$old's log has no acknowledged reboot"
  else pass reboot-restarted; fi
  # --- sysrq on the restarted guest ---
  D=$new
  if xk sysrq ctl3 h && line=$(wait_line "$D" "control: sysrq 'h'" 20) &&
     for _ in $(seq 50); do
       [ -z "$("${XS[@]}" xenstore-read "/local/domain/$D/control/sysrq" 2>&1)" ] && break; sleep 0.1
     done && [ -z "$("${XS[@]}" xenstore-read "/local/domain/$D/control/sysrq" 2>&1)" ]; then
    pass sysrq
  else fail sysrq "the guest did not get or acknowledge 'h'"; fi
  xk destroy "$D"
else
  fail reboot-restarted "the control guest did not start"
fi

# --- a guest that never answers: the node is written, the guest runs on ---
make_cfg "$WORK/spin.cfg" spin "test=spin tick=20000" 32 1
S=$(xk create "$WORK/spin.cfg")
wait_line "$S" "spin: tick 1" 30 >/dev/null
out=$(xk shutdown --timeout 2 "$S" 2>&1); st=$?
if [ $st = 1 ] && grep -q "did not acknowledge the poweroff request within 2 s" <<<"$out" &&
   [ "$("${XS[@]}" xenstore-read "/local/domain/$S/control/shutdown" 2>&1)" = poweroff ] &&
   [ "$(dom_field "$S" state)" = running ]; then
  pass shutdown-unanswered
else
  fail shutdown-unanswered "exit $st ($out), node: $("${XS[@]}" xenstore-read "/local/domain/$S/control/shutdown" 2>&1), state $(dom_field "$S" state)"
fi

# --- refusals ---
sock_req() {
  python3 - "$RUNDIR/xkvmd.sock" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
r = json.loads(s.makefile().readline())
print(r.get("errno", "ok"))
PY
}
bad=""
[ "${s1:-0}" != 0 ] && grep -q "has shut down" <<<"${r1:-}" || bad+=" shutdown-of-shut-down(${r1:-})"
[ "${s2:-0}" != 0 ] || bad+=" sysrq-of-shut-down"
xk sysrq "$S" hh >/dev/null 2>&1; [ $? = 2 ] || bad+=" two-char-key"
xk shutdown --timeout x "$S" >/dev/null 2>&1; [ $? = 2 ] || bad+=" bad-timeout"
[ "$(sock_req "{\"cmd\":\"sysrq\",\"domid\":$S,\"key\":\"\\n\"}")" = EINVAL ] || bad+=" newline-key"
[ "$(sock_req "{\"cmd\":\"sysrq\",\"domid\":$S}")" = EINVAL ] || bad+=" no-key"
[ "$(sock_req "{\"cmd\":\"shutdown\",\"domid\":$S,\"reason\":\"suspend\"}")" = EINVAL ] || bad+=" suspend"
[ "$(sock_req "{\"cmd\":\"shutdown\",\"domid\":$S,\"reason\":7}")" = EINVAL ] || bad+=" reason-number"
[ "$(sock_req '{"cmd":"shutdown","domid":999}')" = ESRCH ] || bad+=" no-such-domain"
[ "$(sock_req "{\"cmd\":\"dmesg-clear\",\"domid\":$S,\"size\":-1,\"inode\":1}")" = EINVAL ] || bad+=" clear-negative"
xk shutdown nosuch >/dev/null 2>&1 && bad+=" cli-no-such-domain"
[ "$(dom_field "$S" state)" = running ] || bad+=" spin-guest-hurt"
[ -z "$bad" ] && pass verbs-refused || fail verbs-refused "$bad"

# --- dmesg ---
out=$(xk dmesg "$S")
if ! grep -q "^(d$S) xtest: spin: tick 1$" <<<"$out"; then fail dmesg-lines "no (d$S) tick line: $(head -3 <<<"$out")"
elif grep -v -q "^(d$S) " <<<"$out"; then fail dmesg-lines "a line without (d$S): $(grep -v "^(d$S) " <<<"$out" | head -1)"
elif grep -a -q "spin: tick" "$(ring_log "$S")" 2>/dev/null; then fail dmesg-lines "console_io output in the console log too"
else pass dmesg-lines; fi

n1=$(xk dmesg -c "$S" | grep -c "spin: tick")
sleep 1
out=$(xk dmesg "$S")
first=$(grep -o "tick [0-9]*" <<<"$out" | head -1 | cut -d' ' -f2)
if [ "$n1" -ge 1 ] && [ -n "$first" ] && [ "$first" -gt "$n1" ] && [ "$(grep -c "tick 1$" <<<"$out")" = 0 ]; then
  pass dmesg-clear
else fail dmesg-clear "printed $n1 ticks, then the log starts at tick '${first:-none}'"; fi

make_cfg "$WORK/long.cfg" long "test=hello $(printf 'x%.0s' $(seq 420))" 32 1
L=$(xk create "$WORK/long.cfg")
wait_result "$L" hello 30 >/dev/null
boot=$(xk dmesg "$L" | grep "cmdline")
if [ "$(head -1 <<<"$boot" | wc -c)" = $(( ${#L} + 4 + 199 + 1 )) ] &&
   xk dmesg "$L" | grep -q -E "^\(d$L\) x+\"?$"; then
  pass dmesg-long-line
else fail dmesg-long-line "$(xk dmesg "$L" | awk '{print length($0)}' | tr '\n' ' ')"; fi
xk destroy "$L" 2>/dev/null

# Live update keeps the file and appends.
before=$(grep -c "spin: tick" "$(console_log "$S")")
if xk live-update >/dev/null 2>&1; then
  sleep 2
  after=$(xk dmesg "$S" | grep -c "spin: tick")
  if [ "$after" -gt "$before" ] && [ "$(xk dmesg "$S" | grep -c "tick $first$")" = 1 ]; then
    pass dmesg-live-update
  else fail dmesg-live-update "$before tick lines before, $after after"; fi
else
  fail dmesg-live-update "live update failed"
fi

# Migration: the source keeps its log, the destination starts its own.
host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) || { fail dmesg-migration "h2 did not start"; }
H2=$RUNDIR
RUNDIR=$H1
if xk migrate "$S" 127.0.0.1:$P2 >/dev/null 2>&1; then
  src=$(grep -c "spin: tick" "$H1/dmesg-$S.log")
  sleep 2
  RUNDIR=$H2
  dst=$(xk dmesg "$S" | grep -c "spin: tick")
  dfirst=$(xk dmesg "$S" | grep -o "tick [0-9]*" | head -1 | cut -d' ' -f2)
  if [ "$src" -ge "$before" ] && [ "$dst" -ge 1 ] && [ "${dfirst:-0}" -gt "$first" ]; then
    pass dmesg-migration
  else fail dmesg-migration "source log $src ticks, destination $dst from tick ${dfirst:-none}"; fi
  xk destroy "$S"
  RUNDIR=$H1
else
  fail dmesg-migration "migration failed"
  xk destroy "$S"
fi

# --- triple fault ---
make_cfg "$WORK/tf1.cfg" tf1 "test=triple-fault" 32 1 'on_reboot = "preserve"'
T=$(xk create "$WORK/tf1.cfg")
if wait_state "$T" shutdown 30 && [ "$(dom_field "$T" shutdown_reason)" = reboot ] &&
   grep -q "d$T v0: triple fault: invoking HVM shutdown action 1 (reboot)" "$RUNDIR/xkvmd.log"; then
  pass triple-fault-reboot
else fail triple-fault-reboot "state $(dom_field "$T" state), reason $(dom_field "$T" shutdown_reason)"; fi
xk destroy "$T"

make_cfg "$WORK/tf2.cfg" tf2 "test=triple-fault" 32 1 'on_reboot = "restart"'
T=$(xk create "$WORK/tf2.cfg")
restarted=""
for _ in $(seq 300); do
  restarted=$(named tf2 "$T")
  [ -n "$restarted" ] && break
  sleep 0.1
done
if [ -n "$restarted" ]; then pass triple-fault-restart
else fail triple-fault-restart "tf2 (d$T) was not restarted: $(xk list | grep tf2)"; fi
destroy_all
