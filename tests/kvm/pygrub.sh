#!/usr/bin/env bash
# bootloader = "pygrub" (docs/config.md "Booting from the guest's disk",
# docs/security.md): the kernel and command line come from an ext4 image built
# without mounting (mkfs.ext4 -d) holding /boot/xkvm-guest and /boot/grub/grub.cfg.
#
#   boots-from-disk      grub.cfg's command line, then the config's (libxl's --args)
#   default-entry        `set default=1` picks the second menu entry
#   files-removed        nothing is left in RUNDIR/bootloader after a build
#   restart-rereads      a guest that reboots is built again from its disk: a grub.cfg
#                        changed meanwhile (debugfs) is the one the new domain boots
#   garbage-image        a disk that is no file system: a clear error, no domain
#   no-grub-cfg          a file system without grub.cfg: a clear error, no domain
#   unreadable-image     a 0600 image pygrub's user cannot read: an error naming
#                        --bootloader-user, no domain
#   bootloader-user      xkvmd --bootloader-user 12345: an image only uid 12345 may
#                        read (0400) boots there, and is refused on a default host;
#                        root and unknown users are refused
source "$(dirname "$0")/lib.sh"
require_kvm
PYGRUB=/usr/lib/xen-4.17/bin/pygrub
if [ ! -x "$PYGRUB" ]; then skip all "no $PYGRUB (xen-utils-4.17)"; exit 0; fi
if ! command -v mkfs.ext4 >/dev/null || ! command -v debugfs >/dev/null; then
  skip all "no mkfs.ext4/debugfs (e2fsprogs)"; exit 0
fi
host_start h1 || { fail start "xkvmd did not start"; exit 1; }

# image NAME GRUB_CFG_TEXT|-: an ext4 image with the test guest in /boot (and the
# grub.cfg, unless -), readable by pygrub's unprivileged user.
image() {
  local root=$WORK/root-$1
  rm -rf "$root"; mkdir -p "$root/boot/grub"
  cp "$GUEST" "$root/boot/xkvm-guest"
  [ "$2" = - ] || printf '%s\n' "$2" > "$root/boot/grub/grub.cfg"
  truncate -s 16M "$WORK/$1.img"
  mkfs.ext4 -q -F -d "$root" "$WORK/$1.img" >/dev/null 2>&1 && chmod 644 "$WORK/$1.img"
}

# pg_cfg NAME IMAGE [lines]: a config booting through pygrub from IMAGE.
pg_cfg() {
  local f=$WORK/$1.cfg
  { echo "name = \"$1\""; echo 'memory = 32'; echo 'bootloader = "pygrub"'
    echo 'cmdline = "from=config"'; echo "disk = [ '$WORK/$2.img,raw,xvda,rw' ]"
    echo 'on_poweroff = "preserve"'; shift 2; for l in "$@"; do echo "$l"; done; } > "$f"
  echo "$f"
}

bootdir_empty() { [ -z "$(ls -A "$RUNDIR/bootloader" 2>/dev/null)" ]; }

GRUB1='set default=0
set timeout=0
menuentry "xkvm test guest" {
    linux /boot/xkvm-guest test=hello from=grub
}
menuentry "the other one" {
    linux /boot/xkvm-guest test=hello from=second-entry
}'
image disk "$GRUB1" || { fail boots-from-disk "mkfs.ext4 -d failed"; exit 1; }
if D=$(xk create "$(pg_cfg pg disk)" 2>"$WORK/err"); then
  res=$(wait_result "$D" hello 60)
  line=$(wait_line "$D" 'booting, cmdline' 5)
  if [ "$res" != "xtest: hello: PASS" ]; then fail boots-from-disk "guest said: $res"
  elif [ "$line" != 'xkvm-guest: booting, cmdline "test=hello from=grub from=config"' ]; then
    fail boots-from-disk "command line: $line"
  else pass boots-from-disk; fi
  grep -q "d$D: pygrub found kernel, no ramdisk" "$RUNDIR/xkvmd.log" || echo "# no pygrub line in xkvmd.log"
  xk destroy "$D"
else
  fail boots-from-disk "create: $(cat "$WORK/err")"
fi
bootdir_empty && pass files-removed || fail files-removed "left: $(ls -A "$RUNDIR/bootloader")"

# Another default entry.
image second "${GRUB1/set default=0/set default=1}"
if D=$(xk create "$(pg_cfg pg2 second)" 2>"$WORK/err") &&
   line=$(wait_line "$D" 'booting, cmdline' 30) &&
   [ "$line" = 'xkvm-guest: booting, cmdline "test=hello from=second-entry from=config"' ]; then
  pass default-entry
else fail default-entry "$(cat "$WORK/err") ${line:-}"; fi
[ -n "${D:-}" ] && xk destroy "$D" 2>/dev/null

# A reboot builds the domain again from the disk, reading grub.cfg again.
image rb "${GRUB1/test=hello from=grub/test=reboot from=grub}"
if D=$(xk create -p "$(pg_cfg rb rb 'on_reboot = "restart"')" 2>"$WORK/err"); then
  printf '%s\n' "${GRUB1/from=grub/from=grub-after-reboot}" > "$WORK/grub2.cfg"
  debugfs -w -R "rm /boot/grub/grub.cfg" "$WORK/rb.img" >/dev/null 2>&1
  debugfs -w -R "write $WORK/grub2.cfg /boot/grub/grub.cfg" "$WORK/rb.img" >/dev/null 2>&1
  xk unpause "$D"
  new=""
  for _ in $(seq 300); do
    new=$(xk list | awk -v d="$D" '$1 == "rb" && $2 != d {print $2}')
    [ -n "$new" ] && break; sleep 0.1
  done
  if [ -z "$new" ]; then fail restart-rereads "rb was not restarted"
  elif line=$(wait_line "$new" 'booting, cmdline' 30) &&
       [ "$line" = 'xkvm-guest: booting, cmdline "test=hello from=grub-after-reboot from=config"' ]; then
    pass restart-rereads
  else fail restart-rereads "the restarted guest: ${line:-nothing}"; fi
  [ -n "$new" ] && xk destroy "$new" 2>/dev/null
else
  fail restart-rereads "create: $(cat "$WORK/err")"
fi

# refused LABEL IMAGE WANT: create fails with WANT in the message, no domain is left.
refused() {
  local n0 out
  n0=$(info_field nr_domains)
  if out=$(xk create "$(pg_cfg "$1" "$2")" 2>&1); then
    fail "$1" "created d$out"; xk destroy "$out" 2>/dev/null
  elif ! grep -q -- "$3" <<<"$out"; then fail "$1" "error: $out"
  elif [ "$(info_field nr_domains)" != "$n0" ]; then fail "$1" "a domain was left"
  elif ! bootdir_empty; then fail "$1" "files left: $(ls -A "$RUNDIR/bootloader")"
  else pass "$1"; echo "# $out"; fi
}
head -c 16M /dev/urandom > "$WORK/garbage.img"; chmod 644 "$WORK/garbage.img"
refused garbage-image garbage "pygrub found no kernel on $WORK/garbage.img"
image nocfg - || fail no-grub-cfg "mkfs.ext4 failed"
refused no-grub-cfg nocfg "pygrub found no kernel on $WORK/nocfg.img"
cp "$WORK/disk.img" "$WORK/private.img"; chmod 600 "$WORK/private.img"
refused unreadable-image private "bootloader-user) and cannot read $WORK/private.img"

# --bootloader-user: whom pygrub runs as.
cp "$WORK/disk.img" "$WORK/own.img"; chown 12345:12345 "$WORK/own.img"; chmod 400 "$WORK/own.img"
refused own-image-default-user own "cannot read $WORK/own.img"
destroy_all
H1=$RUNDIR
host_start h2 --bootloader-user 12345 || fail bootloader-user "xkvmd did not start"
if D=$(xk create "$(pg_cfg own own)" 2>"$WORK/err") && [ "$(wait_result "$D" hello 60)" = "xtest: hello: PASS" ]; then
  pass bootloader-user
else fail bootloader-user "$(cat "$WORK/err")"; fi
if ! "$XKVMD" --rundir "$WORK/bad" --bootloader-user root --foreground 2>"$WORK/err" &&
   grep -q "must not run as root" "$WORK/err" &&
   ! "$XKVMD" --rundir "$WORK/bad" --bootloader-user no-such-user-xkvm --foreground 2>/dev/null; then
  pass bootloader-user-refused
else fail bootloader-user-refused "$(cat "$WORK/err")"; fi
destroy_all
