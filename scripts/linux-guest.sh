#!/usr/bin/env bash
# Fetch and prepare the stock Linux guest of the Linux suite (tests/kvm/linux.sh;
# docs/testing.md, "The Linux suite").
#
#   scripts/linux-guest.sh          prepare (once; quiet when done) and print its directory
#
# What lands in the directory (CACHE/PACKAGE/):
#   vmlinuz      Debian's linux-image-cloud-amd64 kernel as the package ships it
#   vmlinux      the ELF inside it, unmodified: the LZ4 payload of the bzImage,
#                decompressed (the PVH entry point is an ELF note of this file)
#   initrd.img   a busybox initramfs: tests/linux/init.sh as /init, the kernel's
#                xen-blkfront.ko and xen-netfront.ko (and whatever modules.dep says
#                they need) and the xenstore client tests/linux/xs.c, built static here
#   release      the kernel's release string (uname -r)
#
# CACHE is $XKVM_LINUX_CACHE, else /var/cache/xkvm/linux-guest where writable (root,
# as CI runs), else ${XDG_CACHE_HOME:-~/.cache}/xkvm/linux-guest. It lies outside the
# repository and outside /tmp, so that the nested VM of scripts/kvm-vm.sh (which sees
# this machine's root read-only, with a /tmp of its own) finds it. The package comes
# from the configured Debian mirror through `apt-get download` (no root install); the
# current version is what linux-image-cloud-amd64 depends on. The initramfs is rebuilt
# when init.sh, xs.c or this script change.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "linux-guest: $*" >&2; exit 1; }

cache_dir() {
  if [ -n "${XKVM_LINUX_CACHE:-}" ]; then echo "$XKVM_LINUX_CACHE"
  elif mkdir -p /var/cache/xkvm/linux-guest 2>/dev/null && [ -w /var/cache/xkvm/linux-guest ]; then
    echo /var/cache/xkvm/linux-guest
  else echo "${XDG_CACHE_HOME:-$HOME/.cache}/xkvm/linux-guest"; fi
}

# The versioned package linux-image-cloud-amd64 currently depends on.
current_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\(-unsigned\)\?\)$/\1/p' | head -1
}

# fetch_kernel DIR PACKAGE: the .deb, extracted, and its modules.dep (not shipped).
fetch_kernel() {
  local dir=$1 pkg=$2 tmp
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
    { rm -rf "$tmp"; die "apt-get download $pkg failed (no network to the Debian mirror?)"; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/tree"
  local rel; rel=$(ls "$tmp/tree/lib/modules")
  [ -n "$rel" ] && [ -f "$tmp/tree/boot/vmlinuz-$rel" ] || { rm -rf "$tmp"; die "$pkg: no kernel in the package"; }
  depmod -b "$tmp/tree" "$rel"
  cp "$tmp/tree/boot/vmlinuz-$rel" "$tmp/vmlinuz"
  echo "$rel" > "$tmp/release"
  rm -rf "$dir/tree"; mv "$tmp/tree" "$dir/tree"
  mv "$tmp/vmlinuz" "$tmp/release" "$dir/"
  rm -rf "$tmp"
}

# extract_vmlinux VMLINUZ OUT: the bzImage's payload (boot protocol >= 2.08 names its
# offset and length in the setup header) must be an LZ4 legacy frame (the cloud
# flavour's CONFIG_KERNEL_LZ4); lz4 -d stops at its end and complains about what
# follows (the kernel appends the uncompressed size), so success is judged by the
# result: an x86-64 ELF carrying Xen's PVH entry note.
extract_vmlinux() {
  local in=$1 out=$2
  python3 - "$in" "$out.lz4" <<'PY' || die "$in: not a bzImage with an LZ4 payload"
import struct, sys
d = open(sys.argv[1], "rb").read()
if d[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", d, 0x206)[0] < 0x208:
    sys.exit("not a bzImage with boot protocol >= 2.08")
setup = (d[0x1f1] or 4) + 1
off, length = struct.unpack_from("<II", d, 0x248)
payload = d[setup * 512 + off:setup * 512 + off + length]
if payload[:4] != bytes.fromhex("02214c18"):
    sys.exit("payload magic %s is not LZ4's legacy frame" % payload[:4].hex())
open(sys.argv[2], "wb").write(payload)
PY
  lz4 -dc "$out.lz4" > "$out.part" 2>/dev/null || true
  rm -f "$out.lz4"
  local hdr notes
  hdr=$(readelf -h "$out.part" 2>/dev/null) || true
  grep -q 'Advanced Micro Devices X86-64' <<< "$hdr" ||
    die "$in: the payload did not decompress to an x86-64 ELF"
  # XEN_ELFNOTE_PHYS32_ENTRY (18): the PVH entry point.
  notes=$(readelf -n "$out.part")
  grep -A1 '^ *Xen ' <<< "$notes" | grep -q 'note type: (0x00000012)' ||
    die "$in: vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note"
  mv "$out.part" "$out"
}

# build_initrd DIR: busybox, xen-blkfront, xen-netfront and their dependencies, xs, init.
build_initrd() {
  local dir=$1 rel tmp
  rel=$(cat "$dir/release")
  tmp=$(mktemp -d "$dir/.initrd.XXXXXX")
  mkdir -p "$tmp"/{bin,sbin,dev,proc,sys,tmp,lib/modules}
  cp /bin/busybox "$tmp/bin/busybox"
  [[ $(readelf -l /bin/busybox) == *INTERP* ]] && die "/bin/busybox is not static (busybox-static)"
  gcc -static -Os -Wall -Wextra -Werror -o "$tmp/bin/xs" "$ROOT/tests/linux/xs.c"
  : > "$tmp/lib/modules/load-order"
  while read -r _ path _; do
    cp "$path" "$tmp/lib/modules/"
    basename "$path" >> "$tmp/lib/modules/load-order"
  done < <(modprobe -d "$dir/tree" -S "$rel" --show-depends xen-blkfront | grep '^insmod ')
  grep -q '^xen-blkfront.ko' "$tmp/lib/modules/load-order" || die "no xen-blkfront.ko in $rel"
  # xen-netfront and what it needs beyond the disk's modules, loaded on the host's request.
  : > "$tmp/lib/modules/net-order"
  while read -r _ path _; do
    grep -qx "$(basename "$path")" "$tmp/lib/modules/load-order" && continue
    cp "$path" "$tmp/lib/modules/"
    basename "$path" >> "$tmp/lib/modules/net-order"
  done < <(modprobe -d "$dir/tree" -S "$rel" --show-depends xen-netfront | grep '^insmod ')
  grep -q '^xen-netfront.ko' "$tmp/lib/modules/net-order" || die "no xen-netfront.ko in $rel"
  cp "$ROOT/tests/linux/init.sh" "$tmp/init"
  chmod +x "$tmp/init"
  (cd "$tmp" && find . -mindepth 1 ! -name '.*' | sort | cpio -o -H newc --quiet | gzip -9) > "$dir/initrd.img.part"
  mv "$dir/initrd.img.part" "$dir/initrd.img"
  rm -rf "$tmp"
}

main() {
  for t in apt-get dpkg-deb depmod modprobe lz4 readelf cpio gzip gcc python3; do
    command -v "$t" >/dev/null || die "$t missing (scripts/deps.sh installs it)"
  done
  [ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static)"
  local cache pkg dir stamp
  cache=$(cache_dir)
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  pkg=$(current_package)
  if [ -z "$pkg" ]; then
    # Offline and the lists say nothing: use what is cached, if anything.
    pkg=$(ls -1 "$cache" 2>/dev/null | grep -- '-cloud-amd64' | sort -V | tail -1)
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-cloud-amd64 (apt-get update?) and nothing is cached"
  fi
  dir=$cache/$pkg
  mkdir -p "$dir"
  [ -f "$dir/release" ] && [ -f "$dir/vmlinuz" ] && [ -d "$dir/tree" ] || fetch_kernel "$dir" "$pkg"
  [ -f "$dir/vmlinux" ] || extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux"
  stamp=$(cat "$ROOT/tests/linux/init.sh" "$ROOT/tests/linux/xs.c" "$0" | sha256sum | cut -c1-16)
  if [ ! -f "$dir/initrd.img" ] || [ "$(cat "$dir/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
    build_initrd "$dir"
    echo "$stamp" > "$dir/initrd.stamp"
  fi
  echo "$dir"
}
main "$@"
