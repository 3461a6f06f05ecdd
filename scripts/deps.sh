#!/usr/bin/env bash
# Install the Debian packages xkvm needs. Idempotent and quiet when all are present.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libjson-c-dev libxen-dev xen-doc xen-utils-4.17 xenstore-utils
      scdoc man-db groff-base libsystemd-dev acpica-tools
      zlib1g-dev liblzma-dev libzstd-dev liblz4-dev
      libgnutls28-dev gnutls-bin)   # TLS for migrations; certtool/psktool for its tests
# --bench: also what the benchmarks compare against (QEMU's migration).
[ "${1:-}" = --bench ] && pkgs+=(qemu-system-x86)
# The Linux suite's guest (scripts/linux-guest.sh): vmlinux out of the vmlinuz, a
# busybox initramfs with a static xenstore client, the pygrub boot image.
pkgs+=(lz4 busybox-static cpio kmod libc6-dev e2fsprogs)
# tests/kvm/netback.sh: its network namespace, bridge and TAP devices (ip).
pkgs+=(iproute2)
# scripts/run-tests.sh and kvm-vm.sh: pkill, to end the nested VM's suite when interrupted.
pkgs+=(procps)
# --nested-vm: what scripts/kvm-vm.sh boots (a Debian kernel with kvm_amd, busybox).
# Debian 12's 6.12 kernel: its KVM has the Xen intercept (CONFIG_KVM_XEN), which the
# 6.1 kernels lack and stock Linux guests need (docs/testing.md).
[ "${1:-}" = --nested-vm ] && pkgs+=(qemu-system-x86 linux-image-6.12-amd64 busybox-static cpio xz-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
