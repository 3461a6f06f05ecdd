#!/usr/bin/env bash
# The installed tree (issue 21): `meson install --destdir D`, then run from D, not build/.
#
#   files               every installed file (listed as "# installed: ..."), exactly the
#                       expected set: xkvmd, xkvm, xkvm-ctx in bindir; the four dom0
#                       services in libexecdir/xkvm; the test guest and examples/hello.cfg
#                       in datadir/xkvm; README and docs in datadir/doc/xkvm; the four man
#                       pages; the bash completion; xkvmd.service and xkvm-domains.service
#                       in systemd's unit directory, its script in libexecdir/xkvm. No
#                       test binaries.
#   man-PAGE            `man -l` and `groff -ww` render the page without a warning
#   completion-commands sourcing the installed completion, `xkvm ` offers every command
#   (no KVM needed for the above)
#   services            the installed xkvmd starts the installed dom0 services (libexec)
#   hello               the installed examples/hello.cfg boots the installed guest: PASS
#   completion-domain   `xkvm pause ` offers the running domain's name
#   save-restore        a soak guest saved and restored by the installed binaries
#   migrate             a second installed xkvmd (--migrate-listen on 127.0.0.1): the soak
#                       guest live-migrates there and keeps running
#   live-update         there, `xkvm live-update` (default: the running binary, D's xkvmd)
#                       keeps the pid and the domain; the soak then says PASS
source "$(dirname "$0")/lib.sh"

D=$WORK/destdir
if ! meson install -C "$BUILD" --no-rebuild --quiet --destdir "$D" >"$WORK/install.log" 2>&1; then
  fail install "meson install failed: $(tail -3 "$WORK/install.log" | tr '\n' ' ')"
  exit 1
fi
# The build's directories (absolute prefix, the others relative to it or absolute).
eval "$(meson introspect --buildoptions "$BUILD" | python3 -c '
import json, os, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
p = o["prefix"]
for k in ("bindir", "libexecdir", "datadir", "mandir"):
    print("%s=%s" % (k.upper(), os.path.join(p, o[k]).lstrip("/")))
')"
# scdoc is looked for by meson; the pages exist in the build iff it was found.
[ -f "$BUILD/man/xkvm.1" ] && SCDOC=1 || SCDOC=0

(cd "$D" && find . -type f -o -type l | sed 's|^\./||' | sort) > "$WORK/installed"
sed 's/^/# installed: /' "$WORK/installed"
{
  for f in xkvmd xkvm xkvm-ctx; do echo "$BINDIR/$f"; done
  for f in xkvm-xenstored xkvm-consoled xkvm-blkback xkvm-netback xkvm-domains; do echo "$LIBEXECDIR/xkvm/$f"; done
  # The units go to systemd's unit directory under the prefix, wherever that is here.
  units=$(grep -E '(^|/)systemd/system/(xkvmd|xkvm-domains)\.service$' "$WORK/installed")
  if [ "$(echo "$units" | grep -c .)" = 2 ]; then echo "$units"
  else echo "systemd/system/xkvmd.service"; echo "systemd/system/xkvm-domains.service"; fi
  echo "$DATADIR/xkvm/xkvm-guest"
  echo "$DATADIR/xkvm/examples/hello.cfg"
  echo "$DATADIR/doc/xkvm/README.md"
  for f in "$ROOT"/docs/*.md; do echo "$DATADIR/doc/xkvm/$(basename "$f")"; done
  if [ "$SCDOC" = 1 ]; then
    for p in man1/xkvm.1 man1/xkvm-ctx.1 man5/xkvm.cfg.5 man8/xkvmd.8; do echo "$MANDIR/$p"; done
  fi
  echo "$DATADIR/bash-completion/completions/xkvm"
} | sort > "$WORK/expected"
missing=$(comm -23 "$WORK/expected" "$WORK/installed" | tr '\n' ' ')
extra=$(comm -13 "$WORK/expected" "$WORK/installed" | tr '\n' ' ')
testbins=$(grep -E 'lu-next|lu-major|/test-|fuzz|bench|probe' "$WORK/installed" | tr '\n' ' ')
if [ -n "$missing$extra$testbins" ]; then
  fail files "missing: ${missing:-none}; unexpected: ${extra:-none}; test binaries: ${testbins:-none}"
else
  pass files
fi

# ---- man pages ----
if [ "$SCDOC" = 1 ]; then
  for p in man1/xkvm.1 man1/xkvm-ctx.1 man5/xkvm.cfg.5 man8/xkvmd.8; do
    page=$D/$MANDIR/$p
    out=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null; groff -ww -mandoc -z "$page" 2>&1)
    if [ -n "$out" ]; then
      fail "man-$(basename "$p")" "$(echo "$out" | head -3 | tr '\n' ' ')"
    elif ! MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q NAME; then
      fail "man-$(basename "$p")" "renders nothing"
    else
      pass "man-$(basename "$p")"
    fi
  done
  # Every command of `xkvm help` has its entry in xkvm(1).
  undocumented=
  for c in $("$D/$BINDIR/xkvm" help | sed -n 's/^  \([a-z][a-z0-9-]*\).*/\1/p'); do
    MANWIDTH=200 man -l "$D/$MANDIR/man1/xkvm.1" 2>/dev/null | grep -q "^       $c\b" || undocumented+=" $c"
  done
  if [ -n "$undocumented" ]; then fail man-commands "not in xkvm(1):$undocumented"; else pass man-commands; fi
else
  skip man "scdoc not found at build time: no man pages (scripts/deps.sh installs it)"
fi

# ---- bash completion ----
COMPL=$D/$DATADIR/bash-completion/completions/xkvm
# complete_words WORD...: what the completion offers for the words (the last one the
# word being completed), as the installed xkvm on PATH.
complete_words() {
  PATH="$D/$BINDIR:$PATH" bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    [ "$(complete -p xkvm)" = "complete -F _xkvm xkvm" ] || { echo "not registered"; exit 1; }
    _xkvm; printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPL" "$@"
}
want=$("$D/$BINDIR/xkvm" help | sed -n 's/^  \([a-z][a-z0-9-]*\).*/\1/p' | sort)
got=$(complete_words xkvm '' | sort)
if [ -n "$want" ] && [ "$want" = "$got" ]; then
  pass completion-commands
else
  fail completion-commands "offered: $(echo $got)"
fi

# ---- the installed binaries through a cycle (KVM) ----
require_kvm
XKVMD=$D/$BINDIR/xkvmd
XKVM=$D/$BINDIR/xkvm
GUEST=$D/$DATADIR/xkvm/xkvm-guest
unset XKVM_SERVICES_DIR
host_start h || { fail start "the installed xkvmd did not start"; exit 1; }

ok=1
for s in xkvm-xenstored xkvm-consoled xkvm-blkback xkvm-netback; do
  # The pid file is written between fork and exec: wait for the exec too.
  pid= exe=
  for _ in $(seq 100); do
    pid=$(cat "$RUNDIR/services/$s.pid" 2>/dev/null)
    exe=$( [ -n "$pid" ] && readlink "/proc/$pid/exe" 2>/dev/null)
    [ "$exe" = "$D/$LIBEXECDIR/xkvm/$s" ] && break
    sleep 0.1
  done
  [ "$exe" = "$D/$LIBEXECDIR/xkvm/$s" ] || { ok=0; fail services "$s: pid '${pid}' runs '${exe}'"; }
done
[ $ok = 1 ] && pass services

# The installed example, as installed (its kernel is ../xkvm-guest).
if ! d=$(xk create "$D/$DATADIR/xkvm/examples/hello.cfg" 2>"$WORK/hello.err"); then
  fail hello "xkvm create: $(cat "$WORK/hello.err")"
else
  res=$(wait_result "$d" hello 60)
  [ "$res" = "xtest: hello: PASS" ] && pass hello || fail hello "guest said: $res"
  xk destroy "$d" >/dev/null 2>&1
fi

make_cfg "$WORK/soak.cfg" soaker "test=soak mb=4"
if ! D1=$(xk create "$WORK/soak.cfg"); then fail boot "xkvm create failed"; exit 1; fi
wait_line "$D1" "soak: round 1 ok" 60 >/dev/null || { fail boot "no soak round: $(tail -2 "$(console_log "$D1")")"; exit 1; }

got=$(complete_words xkvm --rundir "$RUNDIR" pause '')
[ "$got" = soaker ] && pass completion-domain || fail completion-domain "offered: $(echo $got)"

if xk save "$D1" "$WORK/soak.img" >/dev/null 2>"$WORK/save.err" &&
   [ "$(xk restore "$WORK/soak.img" 2>"$WORK/restore.err")" = "$D1" ] && wait_state "$D1" running 10; then
  pass save-restore
else
  fail save-restore "$(cat "$WORK/save.err" "$WORK/restore.err" 2>/dev/null | tr '\n' ' ')"
fi

H1=$RUNDIR
PORT=$((20000 + RANDOM % 20000))
if host_start h2 --migrate-listen 127.0.0.1:$PORT $(migrate_auth) >/dev/null 2>&1; then
  H2=$RUNDIR
  RUNDIR=$H1
  if out=$(xk migrate "$D1" 127.0.0.1:$PORT 2>&1) && RUNDIR=$H2 wait_state "$D1" running 10; then
    pass migrate
  else
    fail migrate "$out"
  fi
  RUNDIR=$H2
else
  fail migrate "the second installed xkvmd did not start"
  RUNDIR=$H1
fi

if ! out=$(xk live-update 2>&1); then
  fail live-update "xkvm live-update: $out"
elif pid=$(cat "$RUNDIR/xkvmd.pid") && [ "$(readlink /proc/$pid/exe)" != "$XKVMD" ]; then
  fail live-update "xkvmd is now pid $pid running $(readlink /proc/$pid/exe)"
elif [ "$(dom_field "$D1" state)" != running ]; then
  fail live-update "the domain is $(dom_field "$D1" state)"
else
  XENSTORED_PATH="$RUNDIR/xenstored/socket" xenstore-write "/local/domain/$D1/data/soak-stop" 1
  res=$(wait_result "$D1" soak 60)
  [ "$res" = "xtest: soak: PASS" ] && pass live-update || fail live-update "guest said: $res"
fi
xk destroy "$D1" >/dev/null 2>&1
