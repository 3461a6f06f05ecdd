#!/usr/bin/env bash
# The Linux suite: Debian's stock cloud kernel as a PVH guest (issue 15, item 4;
# docs/testing.md, "The Linux suite").
#
# The kernel and a busybox initramfs come from scripts/linux-guest.sh (or the
# directory $XKVM_LINUX_GUEST names: the nested VM of scripts/kvm-vm.sh gets it
# prepared). The guest's /init (tests/linux/init.sh) prints one "linux-check: NAME:
# PASS|FAIL" line per check on hvc0 and answers requests the suite writes to xenstore.
#
# Where xkvm's host has the intercept transport (KVM_CAP_XEN_HVM: VMCALL reaches
# xkvmd):
#   boot            kernel + ramdisk, 2 vCPUs of maxvcpus 4, 384 MiB, a scratch disk:
#                   every boot check passes (clocksource xen, time, xenstore,
#                   xen-blkfront, a 1 MiB pattern written and read back with O_DIRECT)
#   disk-image      the pattern the guest wrote is in the host's disk image
#   xenstore-host   the node the guest wrote reads the same from the host
#   events-fifo     the kernel uses FIFO event channels (debug-state: ABI fifo,
#                   control blocks on vCPUs 0 and 1 at least)
#   net-boot        xen-netfront comes up on the vif and pings the host end of its TAP
#                   (moved into a network namespace of the suite's own, 10.231.0.1/24)
#   net-queues      xen-netfront connected 2 queues (netback offers 2 here:
#                   XKVM_NETBACK_MAX_QUEUES, the VM has one CPU), each with its rings
#                   and event channels under queue-N/; still so after the moves
#   vcpu-online     xkvm vcpu-set 3, then the guest brings cpu2 online
#   balloon-out     xkvm mem-set 352: Linux's balloon driver gives back 32 MiB, which
#                   xkvmd no longer holds; the guest's checks pass; the holes then go
#                   through the migrations and the live update
#   migrate-N       live migration to the other host while the guest's disk loop
#                   runs; after it the guest answers, its checks pass
#   save-restore    (full form) save, restore, checks pass
#   live-update     xkvm live-update under the guest (beside, the default: a new xkvmd
#                   pid), checks pass
#   net-migrate, net-live-update: the guest pings through the vif again, after the
#                   migrations (the destination's TAP) and after the live update
#   balloon-in      xkvm mem-set 384: the balloon driver takes its pages back
#   dmesg-*         after each step, the kernel log the guest prints shows no Xen
#                   error or warning
#   poweroff        the guest powers off: state shutdown, reason poweroff
#   pygrub-*        (full form) the same kernel booted through bootloader = "pygrub"
#                   from an ext4 image holding /boot and /boot/grub/grub.cfg
# Short form (make test): boot, disk, network, vcpu-online, balloon, one migration, one
# live update, poweroff. Full form (XKVM_SOAK=1, make soak): 6 migrations (there and back 3
# times), save/restore, live update, and the pygrub boot.
#
# XKVM_LINUX_BOOT_SECS (900) and XKVM_LINUX_REPLY_SECS (300) bound the waits for the
# guest; XKVM_LINUX_CMDLINE_EXTRA is appended to its command line (diagnosis: nosmp).
#
# Where the host has no intercept (kvm-pvm): the same kernel booted natively must be
# stopped within 60 s with the "cannot intercept VMCALL" reason, shown by xkvm list
# (native-verdict); the rest skips, saying so.
source "$(dirname "$0")/lib.sh"
require_kvm
FULL=0
[ "${XKVM_SOAK:-0}" = 1 ] && FULL=1
MIGRATIONS=$([ $FULL = 1 ] && echo 6 || echo 1)
# How long the guest may take to boot and to answer: generous, since in the nested VM
# (make kvm-vm) everything is emulated; a timeout is a FAIL that says so.
BOOT_SECS=${XKVM_LINUX_BOOT_SECS:-900}
REPLY_SECS=${XKVM_LINUX_REPLY_SECS:-300}

if [ -n "${XKVM_LINUX_GUEST:-}" ]; then
  LG=$XKVM_LINUX_GUEST
elif ! LG=$("$ROOT/scripts/linux-guest.sh" 2> "$WORK/linux-guest.err"); then
  fail fetch "scripts/linux-guest.sh: $(tail -1 "$WORK/linux-guest.err")"
  exit 1
fi
for f in vmlinux vmlinuz initrd.img release; do
  [ -r "$LG/$f" ] || { fail fetch "$LG/$f missing (scripts/linux-guest.sh prepares it)"; exit 1; }
done
echo "# stock kernel: $(cat "$LG/release") from $LG"

# XKVM_LINUX_LOGDIR: where the guests' console logs are copied at the end (kvm-vm.sh
# sets its output directory, so that they outlive the VM).
keep_logs() {
  [ -n "${XKVM_LINUX_LOGDIR:-}" ] || return 0
  local h f
  for h in "${HOSTS[@]}"; do
    for f in "$h"/console-*.log "$h"/xkvmd.log "$h"/xkvm-*.log "$h"/hvc-*.log "$h"/dmesg-*.log; do
      [ -f "$f" ] && cp "$f" "$XKVM_LINUX_LOGDIR/linux-$(basename "$h")-$(basename "$f")"
    done
  done
}
# The host end of the guest's vif: its TAP device, moved into a namespace of our own.
NS=xkvm-linux-$$
NET_HOST=10.231.0.1
trap 'keep_logs; ip netns del "$NS" 2>/dev/null; cleanup' EXIT

# Netback offers one queue per CPU of this host, and the nested VM has one: ask for 2,
# as Linux's xen_netback.max_queues would, so that stock netfront runs multi-queue.
export XKVM_NETBACK_MAX_QUEUES=2
BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
host_start h1 --migrate-listen 127.0.0.1:$P1 $(migrate_auth) --disk-root "$WORK" --machine-memory 2G ||
  { fail start "h1 did not start"; exit 1; }
H1=$RUNDIR
on() { RUNDIR=$1; }

# The host's hypercall transport as xkvm info names it; "intercept" where VMCALL comes
# to xkvmd through KVM's Xen support.
TRANSPORT=$(xk info --json | python3 -c '
import json, sys
info = json.load(sys.stdin)
print(next((str(v) for k, v in info.items() if "transport" in k), ""))')
echo "# hypercall transport: ${TRANSPORT:-(not named by xkvm info)}"

# ---- no intercept: the verdict, and nothing else ----
native_verdict() {
  local cfg=$WORK/verdict.cfg d t0 row
  cat > "$cfg" <<EOF
name = "linux-native"
type = "pvh"
memory = 256
vcpus = 1
kernel = "$LG/vmlinux"
cmdline = "console=hvc0 earlyprintk=xen"
on_crash = "preserve"
on_poweroff = "preserve"
EOF
  d=$(xk create "$cfg") || { fail native-verdict "xkvm create failed"; return; }
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 60 ]; do
    row=$(xk list | awk -v d="$d" '$2 == d')
    grep -qi vmcall <<< "$row" && break
    sleep 1
  done
  if grep -qi vmcall <<< "$row" && [ "$(dom_field "$d" state)" != running ]; then
    pass native-verdict
    echo "# after $((SECONDS - t0)) s: $row"
    grep -i vmcall "$H1/xkvmd.log" | tail -1 | sed 's/^/# log: /'
  else
    fail native-verdict "after 60 s the guest is '$(dom_field "$d" state)', xkvm list: $row"
  fi
  xk destroy "$d" >/dev/null 2>&1
}
case $TRANSPORT in
  *intercept*|*kvm-xen*|*kvm_xen*) ;;
  "")
    skip all "xkvm info names no hypercall transport: this xkvm has only the port-I/O page, which no current Linux uses (issue 15)"
    exit 0 ;;
  *)
    native_verdict
    skip all "this host's KVM ($(info_field kvm_module)) cannot intercept VMCALL, which a stock Linux uses for every hypercall; make kvm-vm SUITES=linux runs this suite in a nested VM whose KVM can"
    exit 0 ;;
esac

host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) --disk-root "$WORK" --machine-memory 2G ||
  { fail start "h2 did not start"; exit 1; }
H2=$RUNDIR
on "$H1"

# ---- talking to the guest ----
# The guest's hvc0, as xkvm-consoled logs it (RUNDIR/console-DOMID.log): where Linux
# and its /init write. (Not lib.sh's console_log, which names the log of the test
# guest's output, wherever that goes.)
hvc_log() { echo "$RUNDIR/console-$1.log"; }
SEQ=0
# ask DOMID COMMAND [ARG]: write the request, wait for the guest's reply line; the
# guest's check lines since the request go to $WORK/last-reply. Succeeds on PASS.
ask() {
  local d=$1 log from reply
  SEQ=$((SEQ + 1))
  log=$(hvc_log "$d")
  from=$(wc -l < "$log" 2>/dev/null || echo 0)
  XENSTORED_PATH=$RUNDIR/xenstored/socket xenstore-write \
    "/local/domain/$d/data/xkvm-test/request" "$SEQ $2${3:+ $3}" || return 1
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$REPLY_SECS" ]; do
    reply=$(tail -n +$((from + 1)) "$log" | grep -a -m1 "^linux-reply: $SEQ " | tr -d '\r')
    [ -n "$reply" ] && break
    sleep 0.5
  done
  tail -n +$((from + 1)) "$log" | tr -d '\r' > "$WORK/last-reply"
  [ "$reply" = "linux-reply: $SEQ PASS" ]
}
# failed_checks: the FAIL lines of the last reply, on one line.
failed_checks() {
  local f; f=$(grep -a '^linux-check: .*: FAIL' "$WORK/last-reply" | tr '\n' ';')
  echo "${f:-no reply within $REPLY_SECS s; console: $(tail -2 "$WORK/last-reply" | tr '\n' ' ')}"
}
# snap NAME DOMID: for a step that failed, what xkvmd and KVM hold for the guest, three
# times 3 s apart (paused for each look: KVM shows a vCPU only out of KVM_RUN), and the
# logs so far, into $XKVM_LINUX_LOGDIR.
snap() {
  [ -n "${XKVM_LINUX_LOGDIR:-}" ] || return 0
  local n
  for n in 1 2 3; do
    xk pause "$2" >/dev/null 2>&1
    xk debug-state "$2" > "$XKVM_LINUX_LOGDIR/linux-$1-debug-$n.json" 2>&1
    xk unpause "$2" >/dev/null 2>&1
    sleep 3
  done
  keep_logs
  # The last look, one line per vCPU, for the suite's own log.
  python3 - "$XKVM_LINUX_LOGDIR/linux-$1-debug-3.json" <<'PY' 2>&1 | sed 's/^/# /'
import json, sys
d = json.load(open(sys.argv[1])); st = d.get("state", d)
ev = {v.get("id", i): v for i, v in enumerate(st.get("events", {}).get("vcpus", []))}
print("system time %s ns" % st.get("events", {}).get("system_time_ns"))
for k in st.get("vcpus_kvm", []):
    e = ev.get(k["id"], {})
    vi, t = e.get("vcpu_info", {}), e.get("timers", {})
    print("v%d: mp_state %s rip %s if %s irr %s isr %s ppr %s; upcall_pending %s vector %s "
          "deadline %s timer_events %s" % (k["id"], k.get("mp_state"), k.get("rip"), k.get("if"),
          k.get("lapic", {}).get("irr"), k.get("lapic", {}).get("isr"), k.get("lapic", {}).get("ppr"),
          vi.get("upcall_pending"), e.get("upcall_vector"), t.get("singleshot_deadline_ns"),
          e.get("counters", {}).get("timer_events")))
PY
}
# tap_into_ns DOMID: this host's netback made vifDOMID.0 in our namespace (the root
# one); move it into $NS, once the TAP of a host the guest left is gone from there,
# and give it $NET_HOST. Says why not on stdout.
tap_into_ns() {
  local tap=vif$1.0
  ip netns list | grep -qw "$NS" || ip netns add "$NS" || { echo "ip netns add $NS failed"; return 1; }
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    ip link show "$tap" >/dev/null 2>&1 && ! ip -n "$NS" link show "$tap" >/dev/null 2>&1 && break
    sleep 0.5
  done
  ip link show "$tap" >/dev/null 2>&1 || { echo "no $tap here after 30 s"; return 1; }
  ip link set "$tap" netns "$NS" &&
    ip -n "$NS" addr add "$NET_HOST/24" dev "$tap" && ip -n "$NS" link set "$tap" up ||
    { echo "cannot move $tap into $NS"; return 1; }
}
# net_step NAME DOMID [move]: the guest pings $NET_HOST through its vif.
net_step() {
  local why
  if [ "${3:-}" = move ] && ! why=$(tap_into_ns "$2"); then fail "$1" "$why"; return; fi
  if ask "$2" net-ping "$NET_HOST"; then
    pass "$1"; grep -a '^linux-check: net' "$WORK/last-reply" | sed 's/^/# /'
  else
    fail "$1" "$(failed_checks)"
  fi
}
# net_queues NAME DOMID: the frontend's vif 0 has 2 queues, each with its ring refs and
# event channel(s), and both ends are Connected.
net_queues() {
  local fe=/local/domain/$2/device/vif/0 n q why=
  rd() { XENSTORED_PATH=$RUNDIR/xenstored/socket xenstore-read "$1" 2>/dev/null; }
  n=$(rd "$fe/multi-queue-num-queues")
  [ "$n" = 2 ] || why="multi-queue-num-queues '$n', want 2 (backend offers '$(rd "$(rd "$fe/backend")/multi-queue-max-queues")')"
  for q in 0 1; do
    [ -n "$why" ] && break
    [ -n "$(rd "$fe/queue-$q/tx-ring-ref")" ] && [ -n "$(rd "$fe/queue-$q/rx-ring-ref")" ] &&
      { [ -n "$(rd "$fe/queue-$q/event-channel-tx")" ] || [ -n "$(rd "$fe/queue-$q/event-channel")" ]; } ||
      why="queue-$q lacks its ring refs or event channel"
  done
  [ -z "$why" ] && [ "$(rd "$fe/state")" = 4 ] && [ "$(rd "$(rd "$fe/backend")/state")" = 4 ] ||
    why=${why:-"frontend state '$(rd "$fe/state")', backend '$(rd "$(rd "$fe/backend")/state")'"}
  if [ -z "$why" ]; then pass "$1"; else fail "$1" "$why"; fi
}
# balloon_step NAME DOMID MIB: xkvm mem-set MIB, then wait (up to 300 s) until xkvmd
# holds within 4 MiB of it; the guest's checks pass.
balloon_step() {
  local out kb= want=$(($3 * 1024)) t0=$SECONDS
  if ! out=$(xk mem-set "$2" "$3" 2>&1); then fail "$1" "xkvm mem-set: $out"; return; fi
  while [ $((SECONDS - t0)) -lt 300 ]; do
    kb=$(dom_field "$2" memory_kb)
    [ "$kb" -le $((want + 4096)) ] 2>/dev/null && [ "$kb" -ge $((want - 4096)) ] && break
    sleep 3
  done
  ask "$2" memory >/dev/null
  echo "# $1: xkvmd holds $kb KiB after $((SECONDS - t0)) s; $(grep -a -m1 '^linux-info: balloon' "$WORK/last-reply" | tr -d '\r')"
  if [ "$kb" -le $((want + 4096)) ] 2>/dev/null && [ "$kb" -ge $((want - 4096)) ]; then
    step_ok "$1" "$2"
  else
    fail "$1" "xkvmd holds $kb KiB after 300 s, target $want KiB"
  fi
}
# step_ok NAME DOMID: the guest answers a ping with every check passing.
step_ok() {
  if ask "$2" ping "$(date +%s)"; then pass "$1"; else fail "$1" "$(failed_checks)"; snap "$1" "$2"; fi
}
# Xen errors or warnings in a kernel log (one line each): a message of a Xen part of
# the kernel that complains, a WARN in Xen code, and whatever is fatal anywhere. (In
# the nested VM, a WARN from fpu__init_system_xstate about CPUID 0xD's sizes is the
# emulated SVM's, not Xen's: it does not count.)
XEN_TROUBLE='(xen|xenbus|blkfront|blkif|evtchn|grant|gnttab|hvc|pvclock|balloon)[^ ]*:.*(error|warn|fail|unable|cannot|invalid|bug)|xen.*(error|fail)'
FATAL='BUG:|Oops|Kernel panic|WARNING:.*/xen/'   # (case matters: not "loops_per_jiffy")
# dmesg_clean NAME DOMID: the guest's kernel log since the last one shows no Xen trouble.
dmesg_clean() {
  local bad
  if ! ask "$2" dmesg; then fail "$1" "no kernel log from the guest: $(failed_checks)"; return; fi
  local klog; klog=$(grep -a '^linux-dmesg: ' "$WORK/last-reply" | sed 's/^linux-dmesg: //')
  bad=$(grep -a -i -E "$XEN_TROUBLE" <<< "$klog"; grep -a -E "$FATAL" <<< "$klog")
  if [ -n "$bad" ]; then fail "$1" "$(echo "$bad" | head -3 | tr '\n' ';')"; else pass "$1"; fi
}
# wait_boot NAME DOMID: the boot checks, one PASS/FAIL per check, then the verdict.
wait_boot() {
  local name=$1 d=$2 log line=
  log=$(hvc_log "$d")
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$BOOT_SECS" ]; do
    line=$(grep -a -m1 '^linux-boot-done:' "$log" 2>/dev/null | tr -d '\r')
    [ -n "$line" ] && break
    # (xkvm list costs a python: seldom, in the nested VM every cycle counts)
    [ $(((SECONDS - t0) % 15)) -lt 2 ] && [ "$(dom_field "$d" state)" != running ] && break
    sleep 2
  done
  if [ -z "$line" ]; then
    fail "$name" "no linux-boot-done after $((SECONDS - t0)) s (state $(dom_field "$d" state) $(dom_field "$d" shutdown_reason)); console: $(tail -3 "$log" | tr '\n' ' ')"
    return 1
  fi
  grep -a '^linux-check: ' "$log" | tr -d '\r' | sed 's/^/# /'
  if [[ $line == *"all PASS"* ]]; then pass "$name"; else fail "$name" "failed:${line#linux-boot-done:}"; fi
}

# ---- boot with kernel and ramdisk ----
SCRATCH=$WORK/scratch.img
truncate -s 64M "$SCRATCH"
cat > "$WORK/linux.cfg" <<EOF
name = "linux"
type = "pvh"
memory = 384
vcpus = 2
maxvcpus = 4
kernel = "$LG/vmlinux"
ramdisk = "$LG/initrd.img"
cmdline = "console=hvc0 linuxcheck.disk=xvda${XKVM_LINUX_CMDLINE_EXTRA:+ $XKVM_LINUX_CMDLINE_EXTRA}"
disk = [ '$SCRATCH,raw,xvda,rw' ]
vif = [ 'mac=00:16:3e:4c:69:6e' ]
on_poweroff = "preserve"
on_crash = "preserve"
on_reboot = "preserve"
EOF
T0=$SECONDS
D=$(xk create "$WORK/linux.cfg") || { fail boot "xkvm create failed"; exit 1; }
if ! wait_boot boot "$D"; then
  tr -d '\r' < "$(hvc_log "$D")" | tail -60 | sed 's/^/#   /'
  [ -n "${XKVM_LINUX_LOGDIR:-}" ] && xk debug-state "$D" > "$XKVM_LINUX_LOGDIR/linux-debug-state.json" 2>&1
  grep -a -i -E 'xkvmd|error|warn|crash' "$H1/xkvmd.log" | tail -20 | sed 's/^/# xkvmd.log: /'
  exit 1
fi
echo "# booted to its checks in $((SECONDS - T0)) s"
LOG=$(hvc_log "$D")
if grep -a -q '^linux-info: cpus online=0-1 possible=0-3' "$LOG"; then pass cpus-at-boot; else
  fail cpus-at-boot "$(grep -a '^linux-info: cpus' "$LOG")"; fi

# FIFO event channels: Linux takes them whenever Xen offers them (events_fifo.c), one
# control block per vCPU it brought up; everything after runs on them.
fifo=$(xk debug-state "$D" 2>/dev/null | python3 -c '
import json, sys
ev = json.load(sys.stdin)["events"]
cbs = [v["id"] for v in ev["vcpus"] if v.get("fifo_control_block")]
print(ev["abi"], "control-blocks=" + ",".join(map(str, cbs)))' 2>&1)
if [[ $fifo == "fifo control-blocks=0,1"* ]]; then
  pass events-fifo
else
  fail events-fifo "debug-state: '$fifo'; kernel: '$(grep -a -m1 'xen:events' "$LOG" | tr -d '\r')'"
fi

# The pattern the guest wrote and the node it set, seen from the host.
sum=$(grep -a -o '^linux-check: disk: PASS sha256 [0-9a-f]*' "$LOG" | awk '{print $NF}')
if [ -n "$sum" ] && [ "$(head -c 1048576 "$SCRATCH" | sha256sum | cut -d' ' -f1)" = "$sum" ]; then
  pass disk-image
else
  fail disk-image "the image's first MiB is not what the guest wrote ($sum)"
fi
want=$(grep -a -o '^linux-check: xenstore: PASS data/linux-check=[^ ]*' "$LOG" | sed 's/.*=//' | tr -d '\r')
got=$(XENSTORED_PATH=$RUNDIR/xenstored/socket xenstore-read "/local/domain/$D/data/linux-check" 2>&1)
if [ -n "$want" ] && [ "$got" = "$want" ]; then pass xenstore-host; else
  fail xenstore-host "the guest wrote '$want', the host reads '$got'"; fi
net_step net-boot "$D" move
net_queues net-queues "$D"
dmesg_clean dmesg-boot "$D"

# ---- a vCPU brought online ----
if ! out=$(xk vcpu-set "$D" 3 2>&1); then
  fail vcpu-online "xkvm vcpu-set $D 3: $out"
elif ask "$D" cpu-online 2; then
  pass vcpu-online
else
  fail vcpu-online "$(failed_checks)"
fi

# ---- the balloon driver gives back 32 MiB (a little: in the nested VM it goes at
# about 0.5 MiB/s) ----
balloon_step balloon-out "$D" 352

# ---- live migration, there and back, the disk loop running ----
SRC=$H1; DST=$H2; DPORT=$P2
for i in $(seq "$MIGRATIONS"); do
  on "$SRC"
  if ! out=$(xk migrate "$D" "127.0.0.1:$DPORT" --report "$WORK/report-$i.json" 2>&1); then
    fail "migrate-$i" "$out"
    break
  fi
  on "$DST"
  step_ok "migrate-$i" "$D" || true
  echo "# migration $i: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("total %.0f ms, downtime %.1f ms" % (r["total_ms"], r["downtime_ms"]))' "$WORK/report-$i.json" 2>/dev/null)"
  if [ "$SRC" = "$H1" ]; then SRC=$H2; DST=$H1; DPORT=$P1; else SRC=$H1; DST=$H2; DPORT=$P2; fi
done
HERE=$([ -n "$(RUNDIR=$H2 dom_field "$D" state 2>/dev/null)" ] && echo "$H2" || echo "$H1")
on "$HERE"
net_step net-migrate "$D" move
net_queues net-queues-migrate "$D"
dmesg_clean dmesg-migrate "$D"

# ---- save and restore (full form) ----
if [ $FULL = 1 ]; then
  if ! out=$(xk save "$D" "$WORK/linux.save" 2>&1); then
    fail save-restore "save: $out"
  elif ! id=$(xk restore "$WORK/linux.save" "$WORK/linux.cfg" 2>&1) || [ "$id" != "$D" ]; then
    fail save-restore "restore: $id"
  else
    step_ok save-restore "$D"
    dmesg_clean dmesg-save-restore "$D"
  fi
  rm -f "$WORK/linux.save"
fi

# ---- live update of the host under the guest ----
# The default: the new xkvmd started beside the old one (docs/live-update.md "Beside"):
# a new pid, in the pid file, the old process gone.
pid0=$(info_field pid)
if ! out=$(xk live-update 2>&1); then
  fail live-update "$out"
elif [ "$(info_field pid)" = "$pid0" ] || [ "$(cat "$RUNDIR/xkvmd.pid")" != "$(info_field pid)" ] ||
     kill -0 "$pid0" 2>/dev/null; then
  fail live-update "xkvmd pid $pid0 -> $(info_field pid) (pid file $(cat "$RUNDIR/xkvmd.pid")): not handed over beside"
else
  step_ok live-update "$D"
  net_step net-live-update "$D"
  dmesg_clean dmesg-live-update "$D"
fi
balloon_step balloon-in "$D" 384

# ---- poweroff ----
ask "$D" poweroff >/dev/null
if wait_state "$D" shutdown 120 && [ "$(dom_field "$D" shutdown_reason)" = poweroff ]; then
  pass poweroff
else
  fail poweroff "state $(dom_field "$D" state), reason $(dom_field "$D" shutdown_reason)"
fi
xk destroy "$D" >/dev/null 2>&1
echo "# the kernel's boot log (kernel + ramdisk boot):"
grep -a -v '^linux-\(dmesg\|check\|reply\|info\)' "$LOG" | tr -d '\r' | head -400 | sed 's/^/#   /'

[ $FULL = 1 ] || exit 0

# ---- pygrub: kernel, initrd and command line from the guest's own ext4 image ----
BOOTFS=$WORK/bootfs
mkdir -p "$BOOTFS/boot/grub"
rel=$(cat "$LG/release")
cp "$LG/vmlinuz" "$BOOTFS/boot/vmlinuz-$rel"
cp "$LG/initrd.img" "$BOOTFS/boot/initrd.img-$rel"
cat > "$BOOTFS/boot/grub/grub.cfg" <<EOF
set default=0
set timeout=0
menuentry 'Debian GNU/Linux (xkvm linux suite)' {
  linux /boot/vmlinuz-$rel console=hvc0 linuxcheck.disk=xvdb linuxcheck.boot=pygrub
  initrd /boot/initrd.img-$rel
}
EOF
BOOTIMG=$WORK/boot.img
if ! mkfs.ext4 -q -F -L boot -d "$BOOTFS" "$BOOTIMG" 96M >/dev/null 2>&1; then
  fail pygrub-image "mkfs.ext4 -d failed"
  exit 1
fi
truncate -s 64M "$WORK/scratch2.img"
cat > "$WORK/pygrub.cfg" <<EOF
name = "linux-pygrub"
type = "pvh"
memory = 384
vcpus = 2
maxvcpus = 4
bootloader = "pygrub"
disk = [ '$BOOTIMG,raw,xvda,ro', '$WORK/scratch2.img,raw,xvdb,rw' ]
on_poweroff = "preserve"
on_crash = "preserve"
on_reboot = "preserve"
EOF
on "$H1"
if ! D=$(xk create "$WORK/pygrub.cfg" 2>&1); then
  fail pygrub-boot "xkvm create: $D"
  exit 1
fi
if wait_boot pygrub-boot "$D"; then
  if grep -a -q '^linux-info: kernel .*linuxcheck.boot=pygrub' "$(hvc_log "$D")"; then
    pass pygrub-cmdline
  else
    fail pygrub-cmdline "the guest's command line is not grub.cfg's: $(grep -a '^linux-info: kernel' "$(hvc_log "$D")")"
  fi
  step_ok pygrub-ping "$D"
  dmesg_clean dmesg-pygrub "$D"
fi
xk destroy "$D" >/dev/null 2>&1
