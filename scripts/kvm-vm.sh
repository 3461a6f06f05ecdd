#!/usr/bin/env bash
# Run KVM integration suites inside a QEMU VM on a machine without /dev/kvm.
#
#   scripts/kvm-vm.sh BUILD [SUITE...]      (default: every tests/kvm/*.sh)
#
# The VM is QEMU's software emulator (TCG) with AMD SVM and nested paging emulated,
# running Debian's kernel with kvm_amd: inside it, /dev/kvm is real KVM and the suites
# run unchanged against the binaries built here. It sees this machine's root file
# system read-only over 9p, so nothing needs copying; /tmp inside is its own tmpfs.
# Output: each suite's lines, as if run here; the VM's console goes to $OUT/console.log.
#
# Why: some machines of this project's kind are themselves kvm-pvm guests and have no
# /dev/kvm (docs/testing.md). Everything is emulated, so it is slow (a suite takes 5-30x
# its native time) and timings mean nothing; behaviour is what it checks. One vCPU by
# default: with two (multi-threaded TCG), nested guests were seen to triple-fault and
# the VM's kernel to panic, with no xkvm code involved.
#
# The VM boots the newest Debian kernel built with CONFIG_KVM_XEN (6.12, from deps.sh
# --nested-vm), so that its KVM intercepts a guest's VMCALL for xkvm (KVM_CAP_XEN_HVM,
# printed as "# kvm-vm: ... KVM_CAP_XEN_HVM ..."): the Linux suite needs it. For that
# suite the stock guest kernel is prepared here first (scripts/linux-guest.sh).
# XKVM_VM_TIMEOUT (seconds, default 5400) stops the VM; a suite it cuts short FAILs
# saying so.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:?usage: scripts/kvm-vm.sh BUILD [SUITE...]}" && pwd); shift
case $BUILD in "$ROOT"/*) ;; *) echo "kvm-vm: BUILD must be inside $ROOT"; exit 1 ;; esac
SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && for t in "$ROOT"/tests/kvm/*.sh; do
  [ -x "$t" ] && SUITES+=("$(basename "$t" .sh)")
done
"$ROOT/scripts/deps.sh" --nested-vm || exit 1
# The newest Debian amd64 kernel whose KVM has the Xen intercept (CONFIG_KVM_XEN: the
# Linux suite needs it; deps.sh --nested-vm installs 6.12), else the newest at all.
KVER=
for k in $(ls /lib/modules | sort -V | grep -- '-amd64$'); do
  [ -r "/boot/vmlinuz-$k" ] || continue
  if grep -q '^CONFIG_KVM_XEN=y' "/boot/config-$k" 2>/dev/null; then KVER=$k; XEN_KVER=$k
  elif [ -z "${XEN_KVER:-}" ]; then KVER=$k; fi
done
KERNEL=/boot/vmlinuz-$KVER
[ -n "$KVER" ] && [ -r "$KERNEL" ] || { echo "kvm-vm: no Debian amd64 kernel in /boot"; exit 1; }
[ -n "${XEN_KVER:-}" ] || echo "# kvm-vm: $KVER has no CONFIG_KVM_XEN: stock Linux guests cannot run in this VM"
OUT=$(mktemp -d /tmp/xkvm-vm.XXXXXX)
TIMEOUT=${XKVM_VM_TIMEOUT:-5400}

# Told to end (TERM, HUP; INT where not ignored: make test runs this in the background
# and ends it with TERM), end the VM too: timeout puts qemu in a process group of its
# own, which neither a terminal's Ctrl-C nor a signal to ours reaches. The children are
# found by parent pid: the VM's timeout (also one just started), or the step under way.
# shellcheck disable=SC2317  # called from the traps
stop_vm() {
  pkill -TERM -P $$
  wait
  exit "$1"
}
trap 'stop_vm 143' TERM
trap 'stop_vm 129' HUP
trap 'stop_vm 130' INT

# The Linux suite's stock kernel and initramfs: prepared here (the VM has no network
# and sees this root read-only); the suite inside finds them through XKVM_LINUX_GUEST.
LINUX_GUEST=
if [[ " ${SUITES[*]} " == *" linux "* ]]; then
  LINUX_GUEST=$("$ROOT/scripts/linux-guest.sh") ||
    echo "# kvm-vm: scripts/linux-guest.sh failed; the linux suite will say why"
fi
MEM=${XKVM_VM_MEM:-8G}
SMP=${XKVM_VM_SMP:-1}

# ---- the initramfs: busybox, the modules for 9p, kvm_amd and tun (netback), an init that mounts
# the host's root and runs $OUT/inner.sh in it ----
INITRD=$OUT/initrd
mkdir -p "$INITRD"/{bin,proc,sys,dev,newroot,lib/modules}
cp /bin/busybox "$INITRD/bin/busybox"
MODS=()
for m in 9pnet_virtio virtio_pci 9p kvm_amd tun; do
  while read -r _ path; do
    # 6.12's modules are xz-compressed; busybox's insmod takes plain ELF only.
    name=$(basename "$path" .xz)
    [ -f "$INITRD/lib/modules/$name" ] && continue
    case $path in
      *.xz) xz -dc "$path" > "$INITRD/lib/modules/$name" ;;
      *) cp "$path" "$INITRD/lib/modules/$name" ;;
    esac
    MODS+=("$name")
  done < <(modprobe -S "$KVER" --show-depends "$m" | grep '^insmod ')
done
cat > "$INITRD/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${MODS[*]}; do
  case \$m in kvm-amd.ko) p="vgif=0 vls=0" ;; *) p= ;; esac
  insmod /lib/modules/\$m \$p || echo "kvm-vm: insmod \$m failed"
done
O=trans=virtio,version=9p2000.L,msize=1048576,cache=none
mount -t 9p -o \$O,ro hostroot /newroot || { echo "kvm-vm: cannot mount the host's root"; poweroff -f; }
mount -t 9p -o \$O out /newroot/mnt
for d in tmp run var/tmp root; do mount -t tmpfs tmpfs /newroot/\$d; done
# The repository at its own path, also where that is under /tmp.
mkdir -p /newroot$ROOT 2>/dev/null; mount -t 9p -o \$O,ro repo /newroot$ROOT
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
ln -s /proc/self/fd /newroot/dev/fd
for i in 0 1 2; do ln -s /proc/self/fd/\$i /newroot/dev/\$(echo stdin stdout stderr | cut -d' ' -f\$((i + 1))); done
exec switch_root /newroot /bin/sh /mnt/inner.sh
INIT
chmod +x "$INITRD/init"
(cd "$INITRD" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$OUT/initrd.gz"

# ---- what runs inside ----
cat > "$OUT/inner.sh" <<INNER
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export XKVM_ROOT=$ROOT XKVM_BUILD=$BUILD XKVM_SOAK=${XKVM_SOAK:-}
[ -n "$LINUX_GUEST" ] && export XKVM_LINUX_GUEST=$LINUX_GUEST XKVM_LINUX_LOGDIR=/mnt
$(for v in XKVM_LINUX_BOOT_SECS XKVM_LINUX_REPLY_SECS XKVM_LINUX_CMDLINE_EXTRA; do [ -n "${!v:-}" ] && echo "export $v='${!v}'"; done)
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
ip link set lo up
if [ -c /dev/kvm ]; then
  # What KVM offers inside: the Xen intercept is what stock Linux guests need.
  python3 -c 'import fcntl, os; fd = os.open("/dev/kvm", os.O_RDWR); print("kernel", os.uname().release, "KVM_CAP_XEN_HVM", hex(fcntl.ioctl(fd, 0xAE03, 38)))' > /mnt/caps 2>&1
  for s in ${SUITES[*]}; do
    bash $ROOT/tests/kvm/\$s.sh > /mnt/\$s.log 2>&1
    echo \$? > /mnt/\$s.rc
  done
else
  echo "no /dev/kvm in the VM: \$(dmesg | grep -iE 'kvm|svm' | tail -2 | tr '\n' ' ')" > /mnt/no-kvm
fi
echo o > /proc/sysrq-trigger
sleep 10
INNER

# In the background and waited for, so that the traps above run at once. Its stdin is
# not the terminal, which -nographic would otherwise take over (raw mode).
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
  -smp "$SMP" -m "$MEM" -nographic -no-reboot -kernel "$KERNEL" -initrd "$OUT/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$OUT",mount_tag=out,security_model=none \
  -virtfs local,path="$ROOT",mount_tag=repo,security_model=none,readonly=on \
  < /dev/null > "$OUT/console.log" 2>&1 &
wait $!
vm_rc=$?

rc=0
if [ -f "$OUT/no-kvm" ]; then
  echo "SKIP: kvm-vm/all: $(cat "$OUT/no-kvm")"
  exit 0
fi
[ -f "$OUT/caps" ] && echo "# kvm-vm: $(cat "$OUT/caps")"
for s in "${SUITES[@]}"; do
  if [ -f "$OUT/$s.log" ]; then
    cat "$OUT/$s.log"
  fi
  if [ ! -f "$OUT/$s.rc" ]; then
    if [ $vm_rc = 124 ]; then
      echo "FAIL: $s/vm: the VM was stopped after its $TIMEOUT s (XKVM_VM_TIMEOUT) before the suite ended; console: $OUT/console.log"
    else
      echo "FAIL: $s/vm: the VM ended (status $vm_rc) before the suite did; console: $OUT/console.log"
    fi
    rc=1
  elif [ "$(cat "$OUT/$s.rc")" != 0 ]; then
    rc=1
  fi
done
[ $rc = 0 ] || echo "# kvm-vm: the VM's output (suites' logs, the Linux suite's guest and xkvmd logs): $OUT"
grep -a -q -E 'Kernel panic|BUG:' "$OUT/console.log" &&
  echo "# kvm-vm: the VM's kernel complained; see $OUT/console.log"
exit $rc
