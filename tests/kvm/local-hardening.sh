#!/usr/bin/env bash
# What other local users can reach (docs/control-api.md, "Files and sockets"):
# - the run directory is 0700 (tightened if it existed), the control socket 0600 even
#   under umask 000, xkvmd's and the dom0 services' logs and guests' console logs 0600;
# - a shared run directory (world-writable, sticky) is refused;
# - `xkvm save` creates its image itself: a symlink planted at the path is refused and
#   its target untouched, an existing file is refused and kept, and a save request
#   without a descriptor passed makes xkvmd open nothing; save and restore through
#   passed descriptors still round-trip the guest.
source "$(dirname "$0")/lib.sh"
require_kvm

mode() { stat -c %a "$1" 2>/dev/null; }

mkdir -p "$WORK/h"
chmod 0755 "$WORK/h"
touch "$WORK/h/xkvmd.log"
chmod 0644 "$WORK/h/xkvmd.log"
OLD_UMASK=$(umask)
umask 000
host_start h || { fail start "xkvmd did not start"; exit 1; }
umask "$OLD_UMASK"
make_cfg "$WORK/g.cfg" g "test=soak mb=4" 32 1
D=$(xk create "$WORK/g.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || fail boot "guest did not start"

bad=""
[ "$(mode "$RUNDIR")" = 700 ] || bad+=" rundir=$(mode "$RUNDIR")"
[ "$(mode "$RUNDIR/xkvmd.sock")" = 600 ] || bad+=" xkvmd.sock=$(mode "$RUNDIR/xkvmd.sock")"
for f in "$RUNDIR/xkvmd.log" "$RUNDIR/console-$D.log" "$RUNDIR/dmesg-$D.log" "$RUNDIR"/xkvm-*.log; do
  [ "$(mode "$f")" = 600 ] || bad+=" $(basename "$f")=$(mode "$f")"
done
[ -z "$bad" ] && pass modes || fail modes "$bad"

mkdir -m 1777 "$WORK/shared"
if "$XKVMD" --rundir "$WORK/shared" --machine-memory 64M --no-dom0-services 2>/dev/null; then
  HOSTS+=("$WORK/shared")
  fail shared-rundir-refused "xkvmd started in a world-writable sticky directory"
else
  pass shared-rundir-refused
fi

echo precious > "$WORK/target"
ln -s "$WORK/target" "$WORK/planted.img"
if ! xk save "$D" "$WORK/planted.img" --keep >/dev/null 2>&1 &&
   [ "$(cat "$WORK/target")" = precious ] && [ -L "$WORK/planted.img" ]; then
  pass save-symlink-refused
else
  fail save-symlink-refused "target now $(stat -c %s "$WORK/target") bytes"
fi

echo mine > "$WORK/existing.img"
if ! xk save "$D" "$WORK/existing.img" --keep >/dev/null 2>&1 &&
   [ "$(cat "$WORK/existing.img")" = mine ]; then
  pass save-existing-refused
else
  fail save-existing-refused "existing.img now $(stat -c %s "$WORK/existing.img") bytes"
fi

# A client that sends only a path: xkvmd must not create or open it.
reply=$(python3 - "$RUNDIR/xkvmd.sock" "$D" "$WORK/by-path.img" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((json.dumps({"cmd": "save", "domid": int(sys.argv[2]), "path": sys.argv[3],
                       "keep": True}) + "\n").encode())
print(s.makefile().readline().strip())
PY
)
if echo "$reply" | grep -q '"ok":false' && [ ! -e "$WORK/by-path.img" ]; then
  pass save-by-path-refused
else
  fail save-by-path-refused "reply $reply; file $(ls -l "$WORK/by-path.img" 2>&1)"
fi

if xk save "$D" "$WORK/good.img" >/dev/null && [ "$(mode "$WORK/good.img")" = 600 ] &&
   [ "$(xk restore "$WORK/good.img")" = "$D" ] && wait_state "$D" running 10; then
  pass save-restore-by-fd
else
  fail save-restore-by-fd "state $(dom_field "$D" state)"
fi
