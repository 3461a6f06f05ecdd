#!/usr/bin/env bash
# Several connections per migration (docs/migration.md, "Several connections";
# src/migrate/multiconn*.c): `xkvm migrate --connections 3`.
#
# - plain and over TLS 1.3 (x509 made by tests/kvm/tls-creds): a test=soak guest
#   (a 4 MiB memory pattern it verifies, time that must never go back) moves A -> B and back
#   over 3 connections each way; the report says 3, the destination's log names the
#   two extra data connections done, and at the end the guest's verdict is PASS.
# - an extra connection dying mid-pages (the destination's XKVM_TEST_FAULT=data-drop
#   drops it after its first PAGE_DATA): the migration fails, the guest runs on at
#   the source, nothing is left on the destination (no domain, free memory back).
# - a stray connection that begins with `DATA <token> 1` naming no migration is
#   refused (told so, logged), and so is one that begins with D and no DATA line.
source "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))
PA=$BASE; PB=$((BASE + 1)); PTA=$((BASE + 2)); PTB=$((BASE + 3)); PF=$((BASE + 4))

on() { RUNDIR=$1; }
rounds() { grep -a -c "xtest: soak: round [0-9]* ok" "$1/dmesg-$2.log" 2>/dev/null; }
runs_on() {     # runs_on HOST DOMID: running there, and its round count grows
  local n0; n0=$(rounds "$1" "$2")
  for _ in $(seq 300); do
    [ "$(rounds "$1" "$2")" -gt "$n0" ] && [ "$(RUNDIR=$1 dom_field "$2" state)" = running ] &&
      return 0
    sleep 0.1
  done
  return 1
}
ndoms() { RUNDIR=$1 xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("domains", d) if isinstance(d, dict) else d))'; }
start() {      # start VAR NAME OPTS...: a host; VAR its run directory
  local v=$1 n=$2; shift 2
  host_start "$n" --disk-root "$WORK" "$@" || { fail start "$n did not start"; exit 1; }
  printf -v "$v" %s "$RUNDIR"
}

# move NAME FROM TO PORT: --connections 3, checked as said above.
move() {
  local name=$1 from=$2 to=$3 port=$4 out
  local n0; n0=$(grep -a -c "incoming data connection [12] from .* done" "$to/xkvmd.log")
  on "$from"
  if ! out=$(xk migrate 1 127.0.0.1:$port --connections 3 --report "$WORK/$name.json" 2>&1); then
    fail "$name" "migration failed: $out"; return 1
  fi
  local conns; conns=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("connections"))' "$WORK/$name.json")
  local n1; n1=$(grep -a -c "incoming data connection [12] from .* done" "$to/xkvmd.log")
  if [ "$conns" != 3 ]; then
    fail "$name" "the report says $conns connection(s)"
  elif [ $((n1 - n0)) != 2 ]; then
    fail "$name" "the destination logged $((n1 - n0)) extra data connection(s) done"
  elif ! runs_on "$to" 1; then
    fail "$name" "the guest does not run on at the destination"
  else
    pass "$name"; return 0
  fi
  return 1
}

verdict() {    # verdict HOST NAME: the soak guest's own check of its memory and time
  local x="$1/xenstored/socket" res
  XENSTORED_PATH=$x xenstore-write /local/domain/1/data/soak-ctl go
  sleep 0.5
  XENSTORED_PATH=$x xenstore-write /local/domain/1/data/soak-stop 1
  res=$(RUNDIR=$1 wait_result 1 soak 120)
  if [ "$res" = "xtest: soak: PASS" ]; then pass "$2"; else fail "$2" "guest said: $res"; fi
}

guest() {      # guest HOST: a soak guest (domain 1) running there
  on "$1"
  make_cfg "$WORK/soak.cfg" soak "test=soak mb=4 cpus=2" 64 2
  local out; out=$(xk create "$WORK/soak.cfg" 2>&1) && wait_line 1 "xtest: soak: round 1 ok" 60 >/dev/null ||
    { fail start "the guest did not start: $out"; exit 1; }
}

# ---- plain ----
start A a --migrate-listen 127.0.0.1:$PA --migrate-insecure
start B b --migrate-listen 127.0.0.1:$PB --migrate-insecure
guest "$A"
move plain-3-there "$A" "$B" $PB && move plain-3-back "$B" "$A" $PA

# ---- a stray DATA connection, and a D that is no DATA line ----
stray() {
  python3 - "$PB" "$1" <<'PY'
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b'\n')
s.settimeout(10)
got = b''
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except OSError:
    pass
print(got.decode(errors='replace').strip())
PY
}
out=$(stray "DATA 0123456789abcdef0123456789abcdef 1")
if echo "$out" | grep -q "ERROR refused: DATA names no migration" &&
   grep -a -q "failed: refused: DATA names no migration" "$B/xkvmd.log"; then
  pass stray-data-refused
else
  fail stray-data-refused "peer read '$out'"
fi
out=$(stray "DANCE")
if echo "$out" | grep -q "ERROR refused: not a migration stream nor a DATA line"; then
  pass stray-d-refused
else
  fail stray-d-refused "peer read '$out'"
fi

# ---- an extra connection dies mid-pages ----
XKVM_TEST_FAULT=data-drop start F f --migrate-listen 127.0.0.1:$PF --migrate-insecure
free0=$(RUNDIR=$F info_field free_memory_kb)
on "$A"
out=$(xk migrate 1 127.0.0.1:$PF --connections 3 2>&1)
rc=$?
gone=1
for _ in $(seq 50); do
  [ "$(ndoms "$F")" = 0 ] && [ "$(RUNDIR=$F info_field free_memory_kb)" = "$free0" ] && { gone=0; break; }
  sleep 0.1
done
if [ $rc = 0 ]; then
  fail data-conn-dies "migration succeeded: $out"
elif ! echo "$out" | grep -q "the guest runs here"; then
  fail data-conn-dies "source said: $out"
elif [ $gone != 0 ]; then
  fail data-conn-dies "the destination holds something: $(ndoms "$F") domain(s)"
elif ! grep -a -q "extra data connection [12]: XKVM_TEST_FAULT=data-drop" "$F/xkvmd.log"; then
  fail data-conn-dies "the destination's log does not name the extra connection"
elif ! runs_on "$A" 1; then
  fail data-conn-dies "the guest does not run on at the source"
else
  pass data-conn-dies
  echo "#   source: $(echo "$out" | head -1)"
fi
verdict "$A" plain-verdict

# ---- over TLS 1.3 (x509) ----
if command -v certtool >/dev/null; then
  "$(dirname "$0")/tls-creds" x509 "$WORK/creds" >/dev/null 2>&1
  start TA ta --migrate-listen 127.0.0.1:$PTA --migrate-tls-dir "$WORK/creds"
  start TB tb --migrate-listen 127.0.0.1:$PTB --migrate-tls-dir "$WORK/creds"
  guest "$TA"
  move tls-3-there "$TA" "$TB" $PTB && move tls-3-back "$TB" "$TA" $PTA
  grep -a -q "incoming migration from .* over TLS 1.3" "$TB/xkvmd.log" &&
    [ "$(grep -a -c "incoming migration from .* over TLS 1.3" "$TB/xkvmd.log")" -ge 3 ] &&
    pass tls-all-sessions || fail tls-all-sessions "fewer than 3 TLS sessions logged on the destination"
  verdict "$TA" tls-verdict
else
  skip tls "certtool missing (gnutls-bin; scripts/deps.sh installs it)"
fi
