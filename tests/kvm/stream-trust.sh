#!/usr/bin/env bash
# A restore or migration stream is the guest's data (issue 13, part 2; docs/migration.md,
# "What a stream may name"). A real save file of a soak guest with a disk is rewritten
# (tests/kvm/stream-edit.py) to name host resources, and each crafted file is restored:
#   xs-own-params       its own backend's params -> a root-only 0600 file: not taken
#                       (the toolstack writes params from the config); the guest runs on
#                       its own disk, the secret file is never opened or written
#   xs-other-backend    a params node under another running domain's backend: refused
#   xs-other-domain     a node under another domain's /local/domain/N: refused
#   xs-root             a node at the root: refused
#   xs-foreign-conn     a CONNECTION record naming the other domain: refused
#   cfg-disk-outside    a DOMAIN_CONFIG disk outside every --disk-root: refused
#   cfg-disk-dotdot     ...reached with "..": refused
#   cfg-disk-symlink    ...through a symlink inside the root: refused
#   cfg-kernel          a kernel outside --kernel-root: never read, restarts become destroy
#   no-disk-root        a host without --disk-root refuses a stream that names a disk,
#                       saying which option to use; with a CONFIG the restore works and
#                       takes the config's disk; a CONFIG with other disks is refused
#   migrate-*           crafted streams sent to --migrate-listen: refused the same way
# After each refusal: a clear error, no domain left, the whole xenstore tree as before,
# the other domain still running.
source "$(dirname "$0")/lib.sh"
require_kvm
EDIT="$(dirname "$0")/stream-edit.py"
PORT=$((20000 + RANDOM % 20000))

IMAGES=$WORK/images
mkdir -p "$IMAGES" "$WORK/kernels"
host_start h1 --disk-root "$IMAGES" --migrate-listen 127.0.0.1:$PORT --migrate-insecure ||
  { fail start "h1 did not start"; exit 1; }
H1=$RUNDIR
host_start h2 --migrate-listen 127.0.0.1:$((PORT + 1)) --migrate-insecure ||
  { fail start "h2 did not start"; exit 1; }
H2=$RUNDIR
on() { RUNDIR=$1; }

SECRET=$WORK/secret.img
head -c 1048576 /dev/zero | tr '\0' 'S' > "$SECRET"
chmod 600 "$SECRET"
SECRET_SUM=$(sha256sum < "$SECRET")
truncate -s 16M "$IMAGES/a.img" "$IMAGES/v.img"
ln -s "$SECRET" "$IMAGES/link.img"
make_cfg "$WORK/a.cfg" a "test=soak mb=1 blk=1" 32 1 "disk = [ '$IMAGES/a.img,raw,xvda,rw' ]"
make_cfg "$WORK/v.cfg" v "test=soak mb=1 blk=1" 32 1 "disk = [ '$IMAGES/v.img,raw,xvda,rw' ]"

on "$H1"
A=$(xk create "$WORK/a.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$A" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "a: no first round"; exit 1; }
xk save "$A" "$WORK/a.img" >/dev/null || { fail save "xkvm save failed"; exit 1; }
V=$(xk create "$WORK/v.cfg") || { fail create "victim: xkvm create failed"; exit 1; }
wait_line "$V" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "victim: no first round"; exit 1; }
pass setup

# The whole tree of a host, but the victim's round counter (it changes every round).
tree() {
  XENSTORED_PATH="$1/xenstored/socket" xenstore-ls -f -p / | grep -v "/data/soak-round = "
}
blkback_log() { cat "$1"/services/*blkback*.log 2>/dev/null; }

# unchanged NAME HOST BEFORE: no domain A, the same tree, the victim alive, the secret
# never named to blkback nor written.
unchanged() {
  local name=$1 h=$2 before=$3 now
  now=$(tree "$h")
  if [ -n "$(RUNDIR=$h dom_field "$A" state 2>/dev/null)" ]; then
    fail "$name-nothing-left" "domain $A exists"
  elif [ "$now" != "$before" ]; then
    fail "$name-nothing-left" "xenstore changed: $(diff <(echo "$before") <(echo "$now") | head -5 | tr '\n' ' ')"
  elif [ "$h" = "$H1" ] && [ "$(RUNDIR=$h dom_field "$V" state)" != running ]; then
    fail "$name-nothing-left" "the other domain is not running"
  elif blkback_log "$h" | grep -q "$SECRET" || [ "$(sha256sum < "$SECRET")" != "$SECRET_SUM" ]; then
    fail "$name-nothing-left" "blkback was given the secret file"
  else
    pass "$name-nothing-left"
  fi
}

# refused NAME HOST WANT [stream-edit options]: a crafted restore fails saying WANT.
refused() {
  local name=$1 h=$2 want=$3 before out; shift 3
  python3 "$EDIT" "$WORK/a.img" "$WORK/$name.img" "$@" || { fail "$name" "cannot craft"; return; }
  before=$(tree "$h")
  if out=$(RUNDIR=$h xk restore "$WORK/$name.img" 2>&1); then
    fail "$name" "restore succeeded: $out"
  elif ! echo "$out" | grep -q -- "$want"; then
    fail "$name" "unclear error: $out"
  else
    pass "$name"
  fi
  unchanged "$name" "$h" "$before"
}

BE=/local/domain/0/backend/vbd
xsr() { XENSTORED_PATH="$1/xenstored/socket" xenstore-read "$2" 2>/dev/null; }

# ---- XENSTORE_STATE ----
refused xs-other-backend "$H1" "outside the domain's own subtree" --xs-set "$BE/$V/51712/params=$SECRET"
refused xs-other-domain "$H1" "outside the domain's own subtree" --xs-set "/local/domain/$V/evil=1"
refused xs-root "$H1" "outside the domain's own subtree" --xs-set "/evil=1"
refused xs-foreign-conn "$H1" "outside the domain's own subtree" --xs-conn-domid "$V"
refused xs-new-toolstack-node "$H1" "may not write" --xs-set "/local/domain/$A/control/evil=1"

# Its own backend's params: not taken; the guest runs on the disk the config names.
python3 "$EDIT" "$WORK/a.img" "$WORK/own.img" --xs-set "$BE/$A/51712/params=$SECRET" \
  --xs-set "/local/domain/$A/name=evil"
before=$(tree "$H1")
on "$H1"
if out=$(xk restore "$WORK/own.img" 2>&1) && [ "$out" = "$A" ]; then
  if [ "$(xsr "$H1" "$BE/$A/51712/params")" = "$IMAGES/a.img" ] &&
     [ "$(xsr "$H1" "/local/domain/$A/name")" = a ] &&
     wait_line "$A" "xtest: soak: round [0-9]* ok" 30 >/dev/null && sleep 2 &&
     ! grep -a -q "soak: FAIL" "$(console_log "$A")"; then
    pass xs-own-params
  else
    fail xs-own-params "params $(xsr "$H1" "$BE/$A/51712/params"), name $(xsr "$H1" "/local/domain/$A/name")"
  fi
  xk destroy "$A" >/dev/null 2>&1
  sleep 0.5
else
  fail xs-own-params "restore failed: $out"
fi
unchanged xs-own-params "$H1" "$before"

# ---- DOMAIN_CONFIG ----
refused cfg-disk-outside "$H1" "outside every --disk-root" --disk-path "$SECRET"
refused cfg-disk-dotdot "$H1" "outside every --disk-root" --disk-path "$IMAGES/../secret.img"
refused cfg-disk-symlink "$H1" "symbolic link" --disk-path "$IMAGES/link.img"
refused cfg-disk-device "$H1" "outside every --disk-root\|not a regular file" --disk-path /dev/zero

python3 "$EDIT" "$WORK/a.img" "$WORK/kernel.img" --kernel "$SECRET"
on "$H1"
if out=$(xk restore "$WORK/kernel.img" 2>&1) && [ "$out" = "$A" ] &&
   grep -q "kernel $SECRET is not under any --kernel-root: never read; the domain's restart actions become destroy" "$H1/xkvmd.log"; then
  pass cfg-kernel
else
  fail cfg-kernel "restore: $out; $(grep -a "kernel-root" "$H1/xkvmd.log" | tail -1)"
fi
xk destroy "$A" >/dev/null 2>&1
sleep 0.5

# ---- a host that allows no stream paths; a CONFIG from the operator ----
refused no-disk-root "$H2" "unless allowed with --disk-root DIR"
on "$H2"
if out=$(xk restore "$WORK/a.img" "$WORK/a.cfg" 2>&1) && [ "$out" = "$A" ] &&
   [ "$(xsr "$H2" "$BE/$A/51712/params")" = "$IMAGES/a.img" ]; then
  pass restore-with-config
else
  fail restore-with-config "$out"
fi
xk destroy "$A" >/dev/null 2>&1
sleep 0.5
before=$(tree "$H2")
make_cfg "$WORK/other.cfg" a "test=soak" 32 1 "disk = [ '$IMAGES/a.img,raw,xvdb,rw' ]"
if out=$(xk restore "$WORK/a.img" "$WORK/other.cfg" 2>&1); then
  fail restore-config-mismatch "restore succeeded: $out"
elif echo "$out" | grep -q "disk xvda is not in the config"; then
  pass restore-config-mismatch
else
  fail restore-config-mismatch "unclear error: $out"
fi
unchanged restore-config "$H2" "$before"

# ---- the same over --migrate-listen ----
# send_stream PORT FILE: the destination's answer lines.
send_stream() {
  python3 - "$1" "$2" <<'PY'
import socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(30)
def send():
    # The destination answers ERROR and closes as soon as it refuses: keep reading.
    try:
        s.sendall(open(sys.argv[2], "rb").read())
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=send, daemon=True).start()
out = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
except OSError as e:
    out += ("# %s" % e).encode()
print(out.decode(errors="replace"))
PY
}
for c in "xs-root:$H1:$PORT:outside the domain's own subtree" \
         "xs-other-backend:$H1:$PORT:outside the domain's own subtree" \
         "cfg-disk-outside:$H1:$PORT:outside every --disk-root" \
         "no-disk-root:$H2:$((PORT + 1)):unless allowed with --disk-root"; do
  IFS=: read -r name h port want <<< "$c"
  before=$(tree "$h")
  out=$(send_stream "$port" "$WORK/$name.img")
  if echo "$out" | grep -q "^ERROR.*$want"; then pass "migrate-$name"; else
    fail "migrate-$name" "destination said: $(echo "$out" | tr '\n' ' ')"; fi
  sleep 0.5
  unchanged "migrate-$name" "$h" "$before"
done
