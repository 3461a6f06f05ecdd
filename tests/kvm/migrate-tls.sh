#!/usr/bin/env bash
# Migration over TLS 1.3 (docs/migration.md, "Transport"; docs/security.md). Credentials
# are made here with GnuTLS's certtool and psktool (tests/kvm/tls-creds): a CA A
# with server and client pairs, another CA B, pairs of A's that expired two days ago,
# two PSK files with the same identity and different keys.
#
# - x509: a test=soak guest moves A -> A and back, both ends verified (to a destination
#   live-updated just before: it loads its credentials again); PSK likewise.
#   The report names the transport and the peer the destination's log names.
# - Refused, each with a clear reason on the side that refused, nothing built on the
#   destination (nothing listed, free memory unchanged) and the guest running on at its
#   source: a destination whose certificate is from another CA, one whose certificate
#   expired, one that does not have the name asked for (--tls-hostname), a source whose
#   client certificate is from another CA, one whose client certificate expired, a
#   wrong pre-shared key, a plain-text source (told so in plain text), and a peer that
#   starts a handshake and stalls (dropped at the admission deadline, its slot freed).
# - Xen's way, ssh: `xkvm migrate DOMAIN ssh://root@HOST:2222` runs `ssh -p 2222
#   root@HOST xkvm migrate-receive` and streams through it. There is no sshd here:
#   tests/kvm/fake-ssh stands in for ssh (--ssh-command), running the command
#   locally against the far host's run directory. The guest moves; to a far end whose
#   xkvmd is not running, the migration fails and the guest runs on.
# - xkvmd --migrate-listen without credentials or --migrate-insecure refuses to start,
#   as it does with a PSK file others can read.
source "$(dirname "$0")/lib.sh"
require_kvm
command -v certtool >/dev/null && command -v psktool >/dev/null ||
  { skip all "certtool/psktool missing (gnutls-bin; scripts/deps.sh installs it)"; exit 0; }
MK="$(dirname "$0")/tls-creds"
PEER="$(dirname "$0")/migrate-peer.py"
BASE=$((20000 + RANDOM % 20000))
PX=$BASE; PB=$((BASE + 1)); PE=$((BASE + 2)); PP=$((BASE + 3)); PS=$((BASE + 4))
ADMIT=6     # destination DX's --migrate-timeout: its admission deadline too

C=$WORK/creds
"$MK" x509 "$C/a" "xkvm test CA A"
"$MK" x509 "$C/b" "xkvm test CA B"
mkdir -p "$C/expired" "$C/mixed"
cp "$C/a/ca-cert.pem" "$C/a/ca-key.pem" "$C/expired/"
"$MK" x509 "$C/expired" "" -2                       # A's CA, pairs expired 2 days ago
cp "$C/a/ca-cert.pem" "$C/a/server-cert.pem" "$C/a/server-key.pem" "$C/mixed/"
cp "$C/b/client-cert.pem" "$C/b/client-key.pem" "$C/mixed/"   # trusts A, is B's
"$MK" psk "$C/good.psk" xkvm
"$MK" psk "$C/wrong.psk" xkvm
[ -s "$C/expired/client-cert.pem" ] && [ -s "$C/good.psk" ] ||
  { fail creds "could not make the credentials"; exit 1; }

on() { RUNDIR=$1; }
# A destination: host_start NAME, listening on PORT with OPTS. Sets the variable NAME.
dest() {
  local n=$1 port=$2; shift 2
  host_start "$n" --migrate-listen 127.0.0.1:$port "$@" || { fail start "$n did not start"; exit 1; }
  printf -v "$n" %s "$RUNDIR"
}
# A source with a running guest: host_start NAME OPTS; sets the variable NAME.
source_host() {
  local n=$1; shift
  host_start "$n" "$@" || { fail start "$n did not start"; exit 1; }
  printf -v "$n" %s "$RUNDIR"
  make_cfg "$WORK/$n.cfg" "g$n" "test=soak mb=4" 32 1
  local d; d=$(xk create "$WORK/$n.cfg") || { fail start "$n: create failed"; exit 1; }
  wait_line "$d" "xtest: soak: round 1 ok" 60 >/dev/null || { fail start "$n: guest did not start"; exit 1; }
}
rounds() { grep -a -c "xtest: soak: round [0-9]* ok" "$1/dmesg-$2.log" 2>/dev/null; }
# runs_on HOST DOMID: running there, and its round count grows.
runs_on() {
  local n0; n0=$(rounds "$1" "$2")
  for _ in $(seq 300); do
    [ "$(rounds "$1" "$2")" -gt "$n0" ] && [ "$(RUNDIR=$1 dom_field "$2" state)" = running ] &&
      return 0
    sleep 0.1
  done
  return 1
}
ndoms() { RUNDIR=$1 xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("domains", d) if isinstance(d, dict) else d))'; }

dest DX $PX --migrate-tls-dir "$C/a" --migrate-timeout $ADMIT
dest DB $PB --migrate-tls-dir "$C/b"
dest DE $PE --migrate-tls-dir "$C/expired"
dest DP $PP --migrate-psk "$C/good.psk"
source_host SX --migrate-listen 127.0.0.1:$PS --migrate-tls-dir "$C/a"
FREE_DX=$(RUNDIR=$DX info_field free_memory_kb)

# refused NAME SRC DEST PORT WANT_SRC WANT_DEST_LOG [migrate options]: the migration
# fails, the source's error matches WANT_SRC, the destination's log WANT_DEST_LOG,
# nothing is left on the destination and the guest runs on at the source.
refused() {
  local name=$1 src=$2 dst=$3 port=$4 want=$5 wantlog=$6; shift 6
  local free0 out; free0=$(RUNDIR=$dst info_field free_memory_kb)
  out=$(RUNDIR=$src xk migrate 1 127.0.0.1:$port "$@" 2>&1)
  local rc=$? log=""
  for _ in $(seq 50); do
    log=$(grep -a "incoming migration from" "$dst/xkvmd.log" | tail -1)
    echo "$log" | grep -q -E "$wantlog" && break
    sleep 0.1
  done
  if [ $rc = 0 ]; then
    fail "$name" "migration succeeded: $out"
  elif ! echo "$out" | grep -q -E "$want"; then
    fail "$name" "source said: $out"
  elif ! echo "$log" | grep -q -E "$wantlog"; then
    fail "$name" "destination's log: ${log:-nothing}"
  elif [ "$(ndoms "$dst")" != 0 ] || [ "$(RUNDIR=$dst info_field free_memory_kb)" != "$free0" ]; then
    fail "$name" "the destination holds something: $(ndoms "$dst") domain(s)"
  elif ! runs_on "$src" 1; then
    fail "$name" "the guest does not run on at the source"
  else
    pass "$name"
    echo "#   source: $(echo "$out" | head -1)"
  fi
}

# ---- the destination's identity does not verify: the source refuses it ----
refused dest-other-ca "$SX" "$DB" $PB "certificate does not verify: .*issuer is unknown" \
  "refused: TLS handshake \(x509\): the client refused us"
refused dest-expired "$SX" "$DE" $PE "certificate does not verify: .*expired" \
  "refused: TLS handshake \(x509\): the client refused us"
refused dest-wrong-name "$SX" "$DX" $PX "certificate does not verify: .*(hostname|name)" \
  "refused: TLS handshake \(x509\): the client refused us" --tls-hostname migrate.example.org

# ---- the source's identity does not verify: the destination refuses it ----
source_host SM --migrate-tls-dir "$C/mixed"
# (GnuTLS offers no certificate the server's CA did not issue: "sent no certificate")
refused source-other-ca "$SM" "$DX" $PX "TLS alert|refused us" \
  "client's certificate does not verify: .*issuer is unknown|the client sent no certificate"
source_host SE --migrate-tls-dir "$C/expired"
# (SE's server pair is expired too, but a source uses only its client pair and the CA)
refused source-expired "$SE" "$DX" $PX "TLS alert|refused us" \
  "client's certificate does not verify: .*expired"
source_host SW --migrate-psk "$C/wrong.psk"
refused psk-wrong-key "$SW" "$DP" $PP "TLS handshake \(psk\): .*pre-shared key" \
  "refused: TLS handshake \(psk\)"
source_host SN --migrate-insecure
refused plaintext-source "$SN" "$DX" $PX "only over TLS.*--migrate-tls-dir or --migrate-psk" \
  "refused: it sent plain text"

# ---- a peer that starts a handshake and stalls ----
t0=$(date +%s)
out=$(python3 - $PX $((ADMIT + 15)) <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # a ClientHello's first bytes
s.settimeout(float(sys.argv[2]))
t = time.time()
try:
    d = s.recv(4096)
    print("CLOSED" if not d else "DATA", round(time.time() - t))
except socket.timeout:
    print("OPEN")
PY
)
log=$(grep -a "incoming migration from" "$DX/xkvmd.log" | tail -1)
if echo "$out" | grep -q -E "^(CLOSED|DATA)" && [ $(($(date +%s) - t0)) -le $((ADMIT + 5)) ] &&
   echo "$log" | grep -q -E "cut off|not complete within|refused: TLS handshake" &&
   [ "$(ndoms "$DX")" = 0 ] && [ "$(RUNDIR=$DX info_field free_memory_kb)" = "$FREE_DX" ]; then
  pass handshake-staller-dropped
  echo "#   destination: $log"
else
  fail handshake-staller-dropped "peer saw: $out; destination: $log"
fi

# ---- x509 both ways, then PSK ----
migrated() {   # NAME SRC DST PORT DOMID WANT_TRANSPORT
  local out
  if ! out=$(RUNDIR=$2 xk migrate "$5" 127.0.0.1:$4 --report "$WORK/r.json" 2>&1); then
    fail "$1" "migration failed: $out"
  elif ! grep -q "\"transport\":\"$6" "$WORK/r.json"; then
    fail "$1" "report: $(cat "$WORK/r.json")"
  elif ! runs_on "$3" "$5"; then
    fail "$1" "the guest does not run on at the destination"
  elif [ "$(ndoms "$2")" != 0 ]; then
    fail "$1" "the source still lists it"
  else
    pass "$1"
    echo "$out" | sed 's/^/#   /'
  fi
}
# A live update keeps the listener; the new binary loads the credentials again.
if out=$(RUNDIR=$DX xk live-update 2>&1) && kill -0 "$(cat "$DX/xkvmd.pid")" 2>/dev/null; then
  pass live-update-keeps-tls
else
  fail live-update-keeps-tls "live update: $out"
fi
migrated x509-there "$SX" "$DX" $PX 1 "TLS 1.3 x509 CN=localhost"
grep -a -q "incoming migration from .* over TLS 1.3 x509 CN=xkvm migration source" "$DX/xkvmd.log" &&
  pass x509-source-named || fail x509-source-named "destination's log does not name the client"
migrated x509-back "$DX" "$SX" $PS 1 "TLS 1.3 x509 CN=localhost"
RUNDIR=$SX xk destroy 1 >/dev/null 2>&1
source_host SP --migrate-psk "$C/good.psk"
migrated psk "$SP" "$DP" $PP 1 "TLS 1.3 psk"
grep -a -q "incoming migration from .* over TLS 1.3 psk identity xkvm" "$DP/xkvmd.log" &&
  pass psk-identity-named || fail psk-identity-named "destination's log does not name the identity"

# ---- through ssh (a stand-in: fake-ssh; see the top) ----
FAKE="$(cd "$(dirname "$0")" && pwd)/fake-ssh"
via_ssh() {    # SRC FAR_RUNDIR: xkvm migrate 1 ssh://root@far.example:2222 from SRC
  FAKE_SSH_RUNDIR=$2 FAKE_SSH_LOG=$WORK/ssh.log RUNDIR=$1 \
    xk migrate 1 ssh://root@far.example:2222 --ssh-command "$FAKE" --remote-xkvm "$XKVM" \
    --report "$WORK/r.json" 2>&1
}
if ! out=$(via_ssh "$DP" "$SX"); then
  fail ssh "migration failed: $out"
elif ! grep -q '"transport":"ssh"' "$WORK/r.json" || ! runs_on "$SX" 1 || [ "$(ndoms "$DP")" != 0 ]; then
  fail ssh "report $(cat "$WORK/r.json"); on SX: $(ndoms "$SX"), on DP: $(ndoms "$DP")"
elif ! grep -q -- "-p 2222 root@far.example $XKVM migrate-receive" "$WORK/ssh.log"; then
  fail ssh "ssh was run as: $(cat "$WORK/ssh.log")"
else
  pass ssh
  echo "$out" | sed 's/^/#   /'
fi
mkdir -p "$WORK/nohost"
if out=$(via_ssh "$SX" "$WORK/nohost"); then
  fail ssh-far-end-down "migration succeeded: $out"
elif ! echo "$out" | grep -q "the guest runs here" || ! runs_on "$SX" 1; then
  fail ssh-far-end-down "the guest does not run on at the source: $out"
else
  pass ssh-far-end-down
  echo "$out" | grep -v "^migrated" | sed 's/^/#   /'
fi

# ---- start-up refusals ----
mkdir -p "$WORK/nocreds"
out=$("$XKVMD" --rundir "$WORK/nocreds" --migrate-listen 127.0.0.1:$((BASE + 5)) 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q -- "--migrate-insecure" && [ ! -e "$WORK/nocreds/xkvmd.sock" ]; then
  pass listen-without-credentials-refused
  echo "#   $out" | cut -c1-160
else
  fail listen-without-credentials-refused "xkvmd said: $out"
fi
cp "$C/good.psk" "$WORK/open.psk"; chmod 644 "$WORK/open.psk"
out=$("$XKVMD" --rundir "$WORK/nocreds" --migrate-listen 127.0.0.1:$((BASE + 5)) \
      --migrate-psk "$WORK/open.psk" 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q "chmod 600" && [ ! -e "$WORK/nocreds/xkvmd.sock" ]; then
  pass readable-psk-refused
else
  fail readable-psk-refused "xkvmd said: $out"
fi
