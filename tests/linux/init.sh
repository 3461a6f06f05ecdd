#!/bin/busybox sh
# /init of the Linux test guest's initramfs (built by scripts/linux-guest.sh; the host
# side is tests/kvm/linux.sh; docs/testing.md, "The Linux suite").
#
# A stock Debian kernel runs this as its first process. It checks what a Xen PV guest
# relies on and prints one verdict line per check on hvc0:
#   linux-check: NAME: PASS|FAIL detail
# then keeps disk I/O running (for the migrations) and answers the host's requests:
# the host writes "SEQ COMMAND [ARG]" to the xenstore node data/xkvm-test/request;
# the guest runs COMMAND and ends with "linux-reply: SEQ PASS|FAIL" (also written to
# data/xkvm-test/reply). Commands:
#   ping HOSTTIME   the checks again: xenstore, time (never back; wall clock near the
#                   host's), clocksource, the boot pattern still on disk, the disk loop
#                   still going and clean
#   cpu-online N    bring vCPU N online (after the host's xkvm vcpu-set)
#   dmesg           print the kernel log since the last dmesg as "linux-dmesg: ..." lines
#   net-ping HOSTIP load xen-netfront (once), give eth0 HOSTIP's /24 with host part .2,
#                   and ping HOSTIP (the host's end of the vif's TAP device)
#   memory          print what the balloon driver holds (its current_kb and target_kb)
#   poweroff        power off
# Command line (parsed from /proc/cmdline): linuxcheck.disk=DEV, the scratch disk the
# checks may overwrite (default xvda).
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
exec 0</dev/console 1>/dev/console 2>&1

check() {   # check NAME PASS|FAIL [detail]
  echo "linux-check: $1: $2${3:+ $3}"
  [ "$2" = PASS ] || FAILED="$FAILED $1"
}
info() { echo "linux-info: $*"; }
param() { for w in $(cat /proc/cmdline); do case $w in "$1="*) echo "${w#*=}" ;; esac; done; }

DISK=$(param linuxcheck.disk)
DISK=${DISK:-xvda}
FAILED=

info "kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
info "cpus online=$(cat /sys/devices/system/cpu/online) possible=$(cat /sys/devices/system/cpu/possible) present=$(cat /sys/devices/system/cpu/present)"
info "hypervisor $(cat /sys/hypervisor/type 2>/dev/null) $(cat /sys/hypervisor/version/major 2>/dev/null).$(cat /sys/hypervisor/version/minor 2>/dev/null)"
check boot PASS "init running on $(nproc) cpus"

# ---- clocksource and time ----
uptime_s() { cut -d. -f1 /proc/uptime; }
check_clocksource() {
  local cs; cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
  if [ "$cs" = xen ]; then check clocksource PASS; else check clocksource FAIL "current is $cs"; fi
}
LAST_UP=0
# check_time [HOSTTIME]: the monotonic clock never goes back and moves across a 2 s
# sleep by 2 s or more (and not absurdly more); the wall clock is after 2023 and, when
# the host says its time, within a minute of it.
check_time() {
  local m0 m1 r0 r1 host=${1:-}
  m0=$(uptime_s); r0=$(date +%s)
  sleep 2
  m1=$(uptime_s); r1=$(date +%s)
  if [ "$m0" -lt "$LAST_UP" ]; then
    check time FAIL "uptime went back: $LAST_UP -> $m0"
  elif [ $((m1 - m0)) -lt 2 ] || [ $((m1 - m0)) -gt 30 ]; then
    check time FAIL "uptime moved by $((m1 - m0)) s across sleep 2"
  elif [ $((r1 - r0)) -lt 1 ] || [ $((r1 - r0)) -gt 30 ]; then
    check time FAIL "wall clock moved by $((r1 - r0)) s across sleep 2"
  elif [ "$r1" -lt 1672531200 ]; then
    check time FAIL "wall clock is $(date)"
  elif [ -n "$host" ] && { [ $((r1 - host)) -gt 60 ] || [ $((host - r1)) -gt 60 ]; }; then
    check time FAIL "wall clock $r1, the host said $host"
  else
    check time PASS "uptime $m1 s, $(date -u +%FT%TZ)"
  fi
  LAST_UP=$m1
}

# ---- xenstore ----
XS_N=0
check_xenstore() {
  local name domid val got
  XS_N=$((XS_N + 1))
  name=$(xs read name) && domid=$(xs read domid) || { check xenstore FAIL "cannot read name/domid"; return; }
  val="$name-$domid-$XS_N-$(uptime_s)"
  if ! xs write data/linux-check "$val"; then
    check xenstore FAIL "cannot write data/linux-check"
  elif ! got=$(xs read data/linux-check) || [ "$got" != "$val" ]; then
    check xenstore FAIL "wrote $val, read back '$got'"
  else
    check xenstore PASS "data/linux-check=$val"
  fi
}

# ---- the PV disk ----
load_blkfront() {
  local m
  for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" || { check blkfront FAIL "insmod $m failed"; return 1; }
  done
  for _ in $(seq 120); do
    [ -b "/dev/$DISK" ] && { check blkfront PASS "/dev/$DISK, $(cat /sys/block/$DISK/size) sectors"; return 0; }
    sleep 0.5
  done
  check blkfront FAIL "no /dev/$DISK after 60 s"
  return 1
}
# The boot pattern: 1 MiB of random bytes at the start of the scratch disk, written
# and read back with O_DIRECT (the page cache cannot answer), its sha256 printed for
# the host to compare with the disk image.
PATTERN_SUM=
write_pattern() {
  head -c 1048576 /dev/urandom > /tmp/pattern
  PATTERN_SUM=$(sha256sum < /tmp/pattern | cut -d' ' -f1)
  if ! dd if=/tmp/pattern of="/dev/$DISK" bs=65536 count=16 oflag=direct conv=fsync 2>/dev/null; then
    check disk FAIL "write failed"; return
  fi
  verify_pattern disk
}
verify_pattern() {
  local got
  got=$(dd if="/dev/$DISK" bs=65536 count=16 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ "$got" = "$PATTERN_SUM" ]; then check "$1" PASS "sha256 $PATTERN_SUM"
  else check "$1" FAIL "read back $got, wrote $PATTERN_SUM"; fi
}

# The disk loop: forever, round R rewrites one of 16 64 KiB blocks after the pattern
# with text naming R, reads it back with O_DIRECT and compares. Its progress and any
# mismatch go to /tmp/diskloop.{round,fail}.
disk_loop() {
  local r=0 b
  while :; do
    r=$((r + 1)); b=$((16 + r % 16))
    yes "xkvm linux disk loop round $r block $b" | head -c 65536 > /tmp/block
    if ! dd if=/tmp/block of="/dev/$DISK" bs=65536 seek=$b count=1 oflag=direct conv=fsync 2>/dev/null ||
       ! dd if="/dev/$DISK" bs=65536 skip=$b count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/block; then
      echo "round $r block $b" >> /tmp/diskloop.fail
      echo "linux-check: disk-loop: FAIL round $r block $b did not read back"
    fi
    echo "$r" > /tmp/diskloop.round
    sleep 0.2
  done
}
LAST_ROUND=0
check_disk_loop() {
  local r
  for _ in $(seq 60); do
    r=$(cat /tmp/diskloop.round 2>/dev/null || echo 0)
    [ "$r" -gt "$LAST_ROUND" ] && break
    sleep 0.5
  done
  if [ -s /tmp/diskloop.fail ]; then check disk-loop FAIL "$(head -1 /tmp/diskloop.fail)"
  elif [ "$r" -le "$LAST_ROUND" ]; then check disk-loop FAIL "stuck at round $r"
  else check disk-loop PASS "round $r"; fi
  LAST_ROUND=$r
}

cpu_online() {
  local n=$1 f=/sys/devices/system/cpu/cpu$1/online
  for _ in $(seq 60); do [ -f "$f" ] && break; sleep 0.5; done
  if [ ! -f "$f" ]; then check cpu-online FAIL "no cpu$n in sysfs (present=$(cat /sys/devices/system/cpu/present))"; return; fi
  echo 1 > "$f" 2>/dev/null
  if [ "$(cat "$f")" = 1 ]; then
    check cpu-online PASS "cpu$n online; online=$(cat /sys/devices/system/cpu/online), nproc $(nproc)"
  else
    check cpu-online FAIL "cpu$n stayed offline; online=$(cat /sys/devices/system/cpu/online)"
  fi
}

# ---- the PV network (loaded on the host's first net-ping: it needs the TAP's far end) ----
NET=0
load_netfront() {
  local m
  for m in $(cat /lib/modules/net-order); do
    insmod "/lib/modules/$m" || { check netfront FAIL "insmod $m failed"; return 1; }
  done
  for _ in $(seq 120); do
    [ -d /sys/class/net/eth0 ] && { check netfront PASS "eth0 $(cat /sys/class/net/eth0/address)"; return 0; }
    sleep 0.5
  done
  check netfront FAIL "no eth0 after 60 s"
  return 1
}
net_ping() {
  local host=$1 me=${1%.*}.2 out
  if [ $NET = 0 ]; then
    load_netfront || return
    ip link set eth0 up && ip addr add "$me/24" dev eth0 || { check net-ping FAIL "cannot configure eth0 as $me"; return; }
    NET=1
  fi
  if out=$(ping -c 3 -W 5 "$host" 2>&1); then
    check net-ping PASS "$(echo "$out" | grep -a 'packets transmitted')"
  else
    check net-ping FAIL "$(echo "$out" | tail -2 | tr '\n' ' ')"
  fi
}
balloon_info() {
  local i=/sys/devices/system/xen_memory/xen_memory0
  info "balloon current_kb=$(cat $i/info/current_kb 2>/dev/null) target_kb=$(cat $i/target_kb 2>/dev/null)"
}

# ---- boot checks ----
check_clocksource
check_time
check_xenstore
BLK=0
load_blkfront && BLK=1
if [ $BLK = 1 ]; then
  write_pattern
  disk_loop &
fi
echo "linux-boot-done:${FAILED:- all PASS}"
xs write data/xkvm-test/reply "0 ${FAILED:-PASS}" 2>/dev/null

# ---- the host's requests ----
LAST=
while :; do
  req=$(xs read data/xkvm-test/request 2>/dev/null)
  if [ -n "$req" ] && [ "$req" != "$LAST" ]; then
    LAST=$req
    set -- $req
    seq=$1; cmd=${2:-}; arg=${3:-}
    FAILED=
    case $cmd in
      ping)
        check_xenstore
        check_time "$arg"
        check_clocksource
        if [ $BLK = 1 ]; then verify_pattern disk-pattern; check_disk_loop; fi ;;
      cpu-online) cpu_online "$arg" ;;
      net-ping) net_ping "$arg" ;;
      memory) balloon_info ;;
      dmesg) dmesg -c | sed 's/^/linux-dmesg: /' ;;
      poweroff) echo "linux-reply: $seq PASS"; sync; poweroff -f ;;
      *) check request FAIL "unknown request '$req'" ;;
    esac
    echo "linux-reply: $seq ${FAILED:+FAIL$FAILED}${FAILED:-PASS}"
    xs write data/xkvm-test/reply "$seq ${FAILED:-PASS}" 2>/dev/null
  fi
  sleep 1
done
