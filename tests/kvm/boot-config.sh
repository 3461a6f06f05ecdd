#!/usr/bin/env bash
# Booting as distributions and xl configs do (docs/config.md): the test guest packed
# into a bzImage with each codec boots; a distribution's bzImage (XKVM_DISTRO_KERNEL,
# else this host's /boot/vmlinuz-$(uname -r), else the newest /boot/vmlinuz-*) loads and its PVH entry is found;
# `ramdisk` arrives intact as hvm_start_info module 0; `root`/`extra` make the command
# line; `maxvcpus` vCPUs exist and `xkvm vcpu-set` moves cpu/N/availability;
# `uuid` names /vm and shows in `xkvm list --json`; `cpus` pins the vCPU threads; a
# save/restore and a live update keep all of it.
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
XS=(env XENSTORED_PATH="$RUNDIR/xenstored/socket")

# boot_ok LABEL CFG TEST: create from CFG, expect the test's PASS; prints the domid.
boot_ok() {
  local label=$1 cfg=$2 t=$3 id res
  if ! id=$(xk create "$cfg" 2>"$WORK/$label.err"); then
    fail "$label" "create failed: $(head -c 300 "$WORK/$label.err")"; return 1
  fi
  res=$(wait_result "$id" "$t" 120)
  if [ "$res" = "xtest: $t: PASS" ]; then pass "$label"; else fail "$label" "guest said: $res"; fi
  echo "$id" > "$WORK/$label.id"
}

# bzImages of the test guest, one per codec (the fuzz seeds' recipe).
mkdir -p "$WORK/bz"
"$BUILD/tests/unit/test-kimage" --write-corpus "$WORK/bz" >/dev/null
for codec in gzip xz lzma zstd lz4; do
  make_cfg "$WORK/bz-$codec.cfg" "bz-$codec" "test=hello" 32 1
  sed -i "s|^kernel = .*|kernel = \"$WORK/bz/bzimage-$codec\"|" "$WORK/bz-$codec.cfg"
  boot_ok "bzimage-$codec-boots" "$WORK/bz-$codec.cfg" hello
  id=$(cat "$WORK/bzimage-$codec-boots.id" 2>/dev/null) && xk destroy "$id" >/dev/null 2>&1
done
check bzimage-format-logged grep -q "bzImage+lz4, ELF of $(stat -c %s "$GUEST") bytes" "$RUNDIR/xkvmd.log"

# A distribution's kernel: loaded, PVH entry found (it cannot run under kvm-pvm).
distro=${XKVM_DISTRO_KERNEL:-/boot/vmlinuz-$(uname -r)}
[ -r "$distro" ] || distro=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
if [ -r "$distro" ]; then
  make_cfg "$WORK/distro.cfg" distro "console=hvc0" 512 1
  sed -i "s|^kernel = .*|kernel = \"$distro\"|" "$WORK/distro.cfg"
  if id=$(xk create -p "$WORK/distro.cfg" 2>"$WORK/distro.err"); then
    line=$(grep -a "d$id: kernel $distro: bzImage+" "$RUNDIR/xkvmd.log" | head -1)
    if [[ $line == *"PVH entry 0x"* ]]; then pass distro-kernel-loads; echo "# ${line#*: }"
    else fail distro-kernel-loads "no load line in xkvmd.log"; fi
    xk destroy "$id" >/dev/null 2>&1
  else
    fail distro-kernel-loads "create failed: $(head -c 300 "$WORK/distro.err")"
  fi
else
  skip distro-kernel-loads "no readable $distro (set XKVM_DISTRO_KERNEL to a bzImage)"
fi

# ramdisk: its bytes at module 0, hashed by the guest.
head -c 50001 /dev/urandom > "$WORK/initrd.img"
want=$(python3 -c '
import sys
h = 2166136261
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("%08x" % h)' "$WORK/initrd.img")
make_cfg "$WORK/rd.cfg" rd "test=modules" 32 1 "ramdisk = \"$WORK/initrd.img\""
boot_ok ramdisk-module "$WORK/rd.cfg" modules
id=$(cat "$WORK/ramdisk-module.id" 2>/dev/null)
got=$(strip_dmesg < "$(console_log "$id")" 2>/dev/null | grep -a "^xtest: modules: module 0 ")
if [[ $got == *"size 50001 fnv1a $want" ]]; then pass ramdisk-bytes-intact
else fail ramdisk-bytes-intact "guest saw '$got', file hash $want"; fi
xk destroy "$id" >/dev/null 2>&1
make_cfg "$WORK/nord.cfg" nord "test=modules modules=0" 32 1
boot_ok no-ramdisk-no-modules "$WORK/nord.cfg" modules
xk destroy "$(cat "$WORK/no-ramdisk-no-modules.id")" >/dev/null 2>&1

# root + extra without cmdline: "root=ROOT EXTRA", as xl.
make_cfg "$WORK/ex.cfg" ex "" 32 1 'root = "/dev/xvda1"' 'extra = "test=hello quiet"'
sed -i '/^cmdline = /d' "$WORK/ex.cfg"
boot_ok extra-root-boots "$WORK/ex.cfg" hello
id=$(cat "$WORK/extra-root-boots.id" 2>/dev/null)
check extra-root-cmdline grep -q 'booting, cmdline "root=/dev/xvda1 test=hello quiet"' "$(console_log "$id")"
xk destroy "$id" >/dev/null 2>&1

# maxvcpus: the guest finds all of them.
make_cfg "$WORK/mv.cfg" mv "test=vcpu-count expect=3" 32 1 'maxvcpus = 3'
boot_ok maxvcpus-created "$WORK/mv.cfg" vcpu-count
xk destroy "$(cat "$WORK/maxvcpus-created.id")" >/dev/null 2>&1

# A running guest with 2 of 4 vCPUs online, a uuid given in upper case, pinned.
uuid=5f2e8a10-0c3b-4d2e-9a7f-1b2c3d4e5f60
make_cfg "$WORK/sp.cfg" sp "test=spin tick=200000" 32 2 'maxvcpus = 4' \
  "uuid = \"${uuid^^}\"" 'cpus = "0"'
id=$(xk create "$WORK/sp.cfg") || fail sp-create "create failed"
avail() {
  local v out=
  for v in 0 1 2 3; do
    out+="$("${XS[@]}" xenstore-read "/local/domain/$id/cpu/$v/availability" 2>/dev/null || echo -) "
  done
  echo "${out% }"
}
wait_avail() {
  for _ in $(seq 100); do [ "$(avail)" = "$1" ] && return 0; sleep 0.1; done
  return 1
}
check availability-at-create wait_avail "online online offline offline"
check list-vcpus [ "$(dom_field "$id" vcpus)/$(dom_field "$id" max_vcpus)" = 2/4 ]
xk vcpu-set sp 4 && check vcpu-set-up wait_avail "online online online online" \
  || fail vcpu-set-up "vcpu-set 4 failed"
xk vcpu-set "$id" 1 && check vcpu-set-down wait_avail "online offline offline offline" \
  || fail vcpu-set-down "vcpu-set 1 failed"
check list-vcpus-after-set [ "$(dom_field "$id" vcpus)" = 1 ]
check vcpu-set-above-max-refused bash -c "! $XKVM --rundir $RUNDIR vcpu-set $id 5 2>/dev/null"
check vcpu-set-zero-refused bash -c "! $XKVM --rundir $RUNDIR vcpu-set $id 0 2>/dev/null"

check uuid-listed [ "$(dom_field "$id" uuid)" = "$uuid" ]
check uuid-vm-node [ "$("${XS[@]}" xenstore-read "/local/domain/$id/vm" 2>/dev/null)" = "/vm/$uuid" ]
check uuid-vm-uuid [ "$("${XS[@]}" xenstore-read "/vm/$uuid/uuid" 2>/dev/null)" = "$uuid" ]
make_cfg "$WORK/sp2.cfg" sp2 "test=spin" 32 1 "uuid = \"$uuid\""
check uuid-duplicate-refused bash -c "! $XKVM --rundir $RUNDIR create $WORK/sp2.cfg 2>/dev/null"
other=$(xk create "$WORK/rd.cfg")
check uuid-generated-otherwise bash -c "source $ROOT/tests/kvm/lib.sh >/dev/null; RUNDIR=$RUNDIR; u=\$(dom_field $other uuid); [ \${#u} = 36 ] && [ \$u != $uuid ]"
xk destroy "$other" >/dev/null 2>&1

# cpus = "0": every vCPU thread of the domain on CPU 0 alone (4 of them).
pinned=$(grep -a -c "d$id: vCPU [0-9]* pinned to CPUs 0$" "$RUNDIR/xkvmd.log")
on0=0
for st in /proc/"$(cat "$RUNDIR/xkvmd.pid")"/task/*/status; do
  grep -q "^Cpus_allowed_list:[[:space:]]*0$" "$st" 2>/dev/null && on0=$((on0 + 1))
done
if [ "$(nproc)" -lt 2 ]; then
  skip cpus-pinned "one CPU here: pinning cannot be told from no pinning"
elif [ "$pinned" = 4 ] && [ "$on0" -ge 4 ]; then pass cpus-pinned
else fail cpus-pinned "$pinned pin log lines, $on0 xkvmd threads on CPU 0 alone"; fi

# Saved and restored (its kernel from the config): uuid, vcpus as vcpu-set left them,
# maxvcpus and the pinning come back.
if xk save "$id" "$WORK/sp.img" >/dev/null 2>&1 && xk restore "$WORK/sp.img" "$WORK/sp.cfg" >/dev/null 2>&1; then
  check restore-keeps-vcpus [ "$(dom_field "$id" vcpus)/$(dom_field "$id" max_vcpus)" = 1/4 ]
  check restore-keeps-uuid [ "$(dom_field "$id" uuid)" = "$uuid" ]
  check restore-keeps-availability wait_avail "online offline offline offline"
  check restore-repins [ "$(grep -a -c "d$id: vCPU [0-9]* pinned to CPUs 0$" "$RUNDIR/xkvmd.log")" = 8 ]
  # A live update carries the config over and pins the threads again.
  if xk live-update >/dev/null 2>&1; then
    check live-update-repins [ "$(grep -a -c "d$id: vCPU [0-9]* pinned to CPUs 0$" "$RUNDIR/xkvmd.log")" = 12 ]
    check live-update-keeps-config [ "$(dom_field "$id" vcpus)/$(dom_field "$id" max_vcpus)/$(dom_field "$id" uuid)" = "1/4/$uuid" ]
  else
    fail live-update-repins "xkvm live-update failed"
  fi
else
  fail restore-keeps-vcpus "save or restore failed"
fi
xk destroy "$id" >/dev/null 2>&1
