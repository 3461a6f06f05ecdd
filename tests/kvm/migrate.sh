#!/usr/bin/env bash
# Save, restore and live migration without the guest's help (docs/migration.md).
#
# A 2-vCPU test=soak guest (memory pattern, block I/O through xkvm-blkback, IPIs to
# its second vCPU, xenstore writes
# and a watch, time that must never go back) is migrated between two hosts
# MIGRATIONS times back and forth (make test: 6; make soak: 20) and saved and restored
# SAVES times (2; soak: 5). After each move: the same domid, the same event channel
# ports (number, kind, vCPU, remote end) once the backends re-attached, no xenstore
# node of the domain or its backends changed, none of its devices' nodes (backend
# directories, frontends' device/) written on the destination after xenstored imported
# the domain's state (xenstored's request log: blkback re-attaches to the Connected
# ring without a write), and the guest still counts rounds. At
# the end it must PASS: no anomaly seen by the guest.
#
# Faults, each leaving the guest running on the source: destination domid taken,
# destination short of memory, nobody listening, the destination dying after the
# config, mid-pages, at END and after RESTORED (XKVM_TEST_FAULT), the connection
# dropped mid-stream and a corrupted stream (tests/kvm/tcp-fault-proxy.py), and
# restores of a truncated and of a corrupted save file that leave nothing behind.
# Finally a --compat xen-4.17 save of the running guest passes Debian's
# verify-stream-v2.
source "$(dirname "$0")/lib.sh"
require_kvm
MIGRATIONS=${MIGRATIONS:-6}
SAVES=${SAVES:-2}
[ "${XKVM_SOAK:-0}" = 1 ] && { MIGRATIONS=20; SAVES=5; }
PROXY="$(dirname "$0")/tcp-fault-proxy.py"
BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1)); P3=$((BASE + 2)); PX=$((BASE + 3))

host_start h1 --migrate-listen 127.0.0.1:$P1 $(migrate_auth) --disk-root "$WORK" || { fail start "h1 did not start"; exit 1; }
H1=$RUNDIR
host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) --disk-root "$WORK" || { fail start "h2 did not start"; exit 1; }
H2=$RUNDIR
on() { RUNDIR=$1; }     # on HOST: the following xk commands go to HOST
# Both xenstoreds log every request: nothing may write a device node on a destination.
xs_log_on "$H1" && xs_log_on "$H2" || fail xenstored-log "cannot turn the request log on"

DISK=$WORK/disk.img
truncate -s 32M "$DISK"
make_cfg "$WORK/soak.cfg" soak "test=soak mb=4 blk=1 cpus=2" 64 2 "disk = [ '$DISK,raw,xvda,rw' ]"
on "$H1"
D=$(xk create "$WORK/soak.cfg") || { fail create "xkvm create failed"; exit 1; }
if wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null; then
  pass boot
else
  fail boot "no first round: $(tail -3 "$(console_log "$D")")"
  exit 1
fi

# snapshot HOST DOMID: ports and xenstore nodes that must not change.
snapshot() { pv_snapshot "$1" "$2"; }

# settled HOST DOMID WANT: the snapshot equals WANT (backends re-attach right after
# the guest resumes: give them a few seconds).
settled() {
  local now
  for _ in $(seq 50); do
    now=$(snapshot "$1" "$2" 2>/dev/null)
    [ "$now" = "$3" ] && return 0
    sleep 0.1
  done
  diff <(echo "$3") <(echo "$now") | head -8 | sed 's/^/#   /'
  return 1
}

# untouched HOST DOMID: since HOST's xenstored imported the domain's xenstore state, no
# node of its devices (backends under /local/domain/0/backend/*/DOMID, frontends under
# device/) was written, by the toolstack or by a backend: they re-attach from the
# nodes as they are.
untouched() {
  local w
  w=$(device_writes "$1" "$2" "CONTROL tx 0 \"import $2 ")
  [ -z "$w" ] && return 0
  echo "$w" | head -8 | sed 's/^/#   written: /'
  return 1
}

# console_nodes HOST DOMID: the primary console's backend and frontend nodes are there.
console_nodes() {
  local xs=(env XENSTORED_PATH="$1/xenstored/socket") be=/local/domain/0/backend/console/$2/0
  local fe=/local/domain/$2/console
  [ "$("${xs[@]}" xenstore-read "$be/frontend" 2>&1)" = "$fe" ] &&
  [ "$("${xs[@]}" xenstore-read "$be/frontend-id" 2>&1)" = "$2" ] &&
  [ "$("${xs[@]}" xenstore-read "$be/state" 2>&1)" = 1 ] &&
  [ "$("${xs[@]}" xenstore-read "$be/protocol" 2>&1)" = vt100 ] &&
  [ "$("${xs[@]}" xenstore-read "$fe/backend" 2>&1)" = "$be" ] &&
  [ "$("${xs[@]}" xenstore-read "$fe/type" 2>&1)" = xenconsoled ] &&
  [ -n "$("${xs[@]}" xenstore-read "$fe/ring-ref" 2>/dev/null)" ] &&
  [ -n "$("${xs[@]}" xenstore-read "$fe/port" 2>/dev/null)" ]
}

# rounds HOST DOMID: the last round the guest reported.
rounds() { grep -a -o "round [0-9]* ok" "$1/dmesg-$2.log" 2>/dev/null | tail -1 | awk '{print $2}'; }

# running_on HOST DOMID: listed there as running, and counting rounds.
running_on() {
  local h=$1 d=$2 r0 r1
  [ "$(RUNDIR=$h dom_field "$d" state)" = running ] || return 1
  r0=$(rounds "$h" "$d")
  for _ in $(seq 300); do
    r1=$(rounds "$h" "$d")
    [ -n "$r1" ] && [ "${r1:-0}" != "${r0:-0}" ] && return 0
    sleep 0.1
  done
  return 1
}

sleep 1
BASELINE=$(snapshot "$H1" "$D")
if [ -n "$BASELINE" ] && echo "$BASELINE" | grep -q "^port" && echo "$BASELINE" | grep -q "^xs "; then
  pass baseline
else
  fail baseline "no ports or nodes: $BASELINE"
fi

# ---- live migration, back and forth ----
SRC=$H1; DST=$H2; DPORT=$P2
ok=0
for i in $(seq "$MIGRATIONS"); do
  on "$SRC"
  if ! out=$(xk migrate "$D" "127.0.0.1:$DPORT" --report "$WORK/report-$i.json" 2>&1); then
    fail "migrate-$i" "$out"
    break
  fi
  if [ "$(RUNDIR=$SRC dom_field "$D" state 2>/dev/null)" != "" ]; then
    fail "migrate-$i" "the domain is still on the source"
    break
  fi
  if ! running_on "$DST" "$D"; then
    fail "migrate-$i" "not running on the destination: $(tail -2 "$DST/dmesg-$D.log")"
    break
  fi
  if ! settled "$DST" "$D" "$BASELINE"; then
    fail "migrate-$i" "ports or xenstore nodes changed (above)"
    break
  fi
  if ! untouched "$DST" "$D"; then
    fail "migrate-$i" "device nodes written on the destination (above)"
    break
  fi
  if [ "$i" = 1 ]; then      # h2 never had this domain: its console nodes come from the move
    if console_nodes "$DST" "$D"; then pass console-nodes-fresh-destination; else
      fail console-nodes-fresh-destination "$(XENSTORED_PATH="$DST/xenstored/socket" xenstore-ls -f \
        "/local/domain/0/backend/console/$D" 2>&1 | head -5 | tr '\n' ';')"
    fi
    # The destination offered lz4: HVM_CONTEXT, DOMAIN_CONTEXT and XENSTORE_STATE went
    # COMPRESSED (docs/stream.md), and the guest runs on them (checked above).
    nz=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("state_compressed"))' \
         "$WORK/report-$i.json")
    if [ "$nz" = 3 ]; then pass state-compressed; else
      fail state-compressed "state_compressed is $nz in the report, expected 3"; fi
  fi
  echo "# migration $i: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("total %.1f ms, downtime %.2f ms, %d iterations, %d pages" % (r["total_ms"], r["downtime_ms"], r["iterations"], r["pages_sent"]))' "$WORK/report-$i.json")"
  ok=$((ok + 1))
  if [ "$SRC" = "$H1" ]; then SRC=$H2; DST=$H1; DPORT=$P1; else SRC=$H1; DST=$H2; DPORT=$P2; fi
done
# Where the guest is now (also after a failure above).
[ -n "$(RUNDIR=$H2 dom_field "$D" state 2>/dev/null)" ] && SRC=$H2 || SRC=$H1
[ "$ok" = "$MIGRATIONS" ] && pass "migrations-$MIGRATIONS"
HERE=$SRC   # where the guest is now

# ---- save and restore ----
ok=0
for i in $(seq "$SAVES"); do
  on "$HERE"
  img=$WORK/save-$i.img
  if ! out=$(xk save "$D" "$img" 2>&1); then fail "save-$i" "$out"; break; fi
  if [ -n "$(dom_field "$D" state 2>/dev/null)" ]; then fail "save-$i" "domain still there"; break; fi
  if ! id=$(xk restore "$img" 2>&1) || [ "$id" != "$D" ]; then fail "restore-$i" "$id"; break; fi
  if ! running_on "$HERE" "$D"; then fail "restore-$i" "not running after restore"; break; fi
  if ! settled "$HERE" "$D" "$BASELINE"; then fail "restore-$i" "ports or nodes changed"; break; fi
  if ! untouched "$HERE" "$D"; then fail "restore-$i" "device nodes written by the restore"; break; fi
  ok=$((ok + 1))
done
[ "$ok" = "$SAVES" ] && pass "save-restore-$SAVES"

# The domid is preserved, so restoring while it is there must be refused clearly.
on "$HERE"
xk save "$D" "$WORK/keep.img" --keep >/dev/null 2>&1 && running_on "$HERE" "$D" && pass save-keep ||
  fail save-keep "save --keep did not leave the guest running"
out=$(xk restore "$WORK/keep.img" 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q "taken"; then pass restore-domid-taken; else
  fail restore-domid-taken "$out"; fi

# A paused domain comes back paused, and runs on when unpaused.
on "$HERE"
xk pause "$D"
if xk save "$D" "$WORK/paused.img" >/dev/null 2>&1 && [ "$(xk restore "$WORK/paused.img" 2>&1)" = "$D" ] &&
   [ "$(dom_field "$D" state)" = paused ] && xk unpause "$D" && running_on "$HERE" "$D"; then
  pass restore-keeps-paused
else
  fail restore-keeps-paused "state $(dom_field "$D" state 2>&1)"
  xk unpause "$D" >/dev/null 2>&1
fi

# ---- faults: the guest must stay on the source, running ----
OTHER=$([ "$HERE" = "$H1" ] && echo "$H2" || echo "$H1")
OPORT=$([ "$HERE" = "$H1" ] && echo "$P2" || echo "$P1")
survives() {    # survives NAME: after a failed migration the guest runs here
  local name=$1 out=$2
  if ! running_on "$HERE" "$D"; then fail "$name" "guest not running on the source: $out"; return; fi
  if [ -n "$(RUNDIR=$OTHER dom_field "$D" state 2>/dev/null)" ]; then
    fail "$name" "the destination kept a copy"; return; fi
  pass "$name"
}
# domid taken on the destination
make_cfg "$WORK/blocker.cfg" blocker "test=spin" 32 1
on "$OTHER"; xk create --domid "$D" -p "$WORK/blocker.cfg" >/dev/null
on "$HERE"; out=$(xk migrate "$D" "127.0.0.1:$OPORT" 2>&1); rc=$?
on "$OTHER"; xk destroy "$D" >/dev/null 2>&1
if [ $rc -ne 0 ] && echo "$out" | grep -q "taken"; then survives fault-domid-taken "$out"; else
  fail fault-domid-taken "migration did not fail clearly: $out"; fi

# nobody listening
on "$HERE"; out=$(xk migrate "$D" "127.0.0.1:$P3" 2>&1)
[ $? -ne 0 ] && survives fault-refused "$out" || fail fault-refused "migration did not fail"

# destination short of memory (its incoming caps raised: the build itself must refuse)
host_start h3 --migrate-listen 127.0.0.1:$P3 $(migrate_auth) --disk-root "$WORK" --machine-memory 32M \
  --migrate-max-total 1G >/dev/null 2>&1 || true
H3=$RUNDIR
on "$HERE"; out=$(xk migrate "$D" "127.0.0.1:$P3" 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q "memory"; then OTHER_SAVE=$OTHER; OTHER=$H3; survives fault-no-memory "$out"; OTHER=$OTHER_SAVE; else
  fail fault-no-memory "$out"; fi
for p in $(host_pids "$H3"); do kill "$p" 2>/dev/null; done
sleep 0.5

# the destination dies at each phase
for phase in recv-config recv-pages recv-end recv-restored; do
  rm -rf "$WORK/f-$phase"
  XKVM_TEST_FAULT=$phase host_start "f-$phase" --migrate-listen 127.0.0.1:$P3 $(migrate_auth) --disk-root "$WORK" >/dev/null 2>&1
  FH=$RUNDIR
  on "$HERE"; out=$(xk migrate "$D" "127.0.0.1:$P3" 2>&1)
  if [ $? -ne 0 ]; then
    OTHER_SAVE=$OTHER; OTHER=$FH; survives "fault-dest-dies-$phase" "$out"; OTHER=$OTHER_SAVE
  else
    fail "fault-dest-dies-$phase" "migration succeeded: $out"
  fi
  for p in $(host_pids "$FH"); do kill -9 "$p" 2>/dev/null; done
  sleep 0.3
done

# the connection drops mid-stream; a corrupted record header
for mode in drop:3000000 flip:40; do
  python3 "$PROXY" "$PX" "$OPORT" "$mode" > "$WORK/proxy.out" 2>&1 &
  ppid=$!
  for _ in $(seq 50); do grep -q READY "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
  on "$HERE"; out=$(xk migrate "$D" "127.0.0.1:$PX" 2>&1)
  rc=$?
  wait "$ppid" 2>/dev/null
  name=fault-${mode%%:*}
  if [ $rc -ne 0 ]; then survives "$name" "$out"; else fail "$name" "migration succeeded: $out"; fi
  if [ "$mode" = flip:40 ] && ! echo "$out" | grep -qi "record\|stream"; then
    echo "$out" | sed "s/^/# $name: /"      # (over TLS the flip breaks the handshake)
  fi
done

# garbage on the migration port: refused, the host stays up, nothing is built
python3 - "$OPORT" <<'PY'
import os, socket, sys
for payload in (os.urandom(100000), b"\xff" * 8 + b"XENF" + os.urandom(5000), b""):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        s.recv(4096)
    except OSError:
        pass
    s.close()
PY
sleep 0.5
if RUNDIR=$OTHER xk list >/dev/null 2>&1 && [ -z "$(RUNDIR=$OTHER dom_field "$D" state 2>/dev/null)" ] &&
   running_on "$HERE" "$D"; then pass fault-garbage; else fail fault-garbage "destination or guest hurt"; fi

# broken save files: nothing is left behind
on "$HERE"
head -c 3000000 "$WORK/keep.img" > "$WORK/trunc.img"
cp "$WORK/keep.img" "$WORK/corrupt.img"
printf '\xff' | dd of="$WORK/corrupt.img" bs=1 seek=44 conv=notrunc 2>/dev/null
on "$OTHER"
for f in trunc corrupt; do
  out=$(xk restore "$WORK/$f.img" 2>&1)
  if [ $? -ne 0 ] && [ -z "$(dom_field "$D" state 2>/dev/null)" ]; then pass "restore-$f"; else
    fail "restore-$f" "$out"; fi
done

# ---- a plain Xen 4.17 stream of the running guest ----
V2=${XEN_VERIFY_STREAM:-/usr/lib/xen-4.17/bin/verify-stream-v2}
XEN_PY=${XEN_PYTHONPATH:-/usr/lib/xen-4.17/lib/python}
PY=$(head -1 "$V2" 2>/dev/null | sed -n 's|^#! *\([^ ]*\).*|\1|p')
[ -x "${PY:-}" ] || PY=python3
on "$HERE"
if [ ! -f "$V2" ]; then
  skip compat-verify-stream-v2 "no $V2 (Debian xen-utils-4.17)"
elif xk save "$D" "$WORK/compat.img" --keep --compat xen-4.17 >/dev/null 2>&1 &&
     out=$(PYTHONPATH=$XEN_PY "$PY" "$V2" -v < "$WORK/compat.img" 2>&1); then
  pass compat-verify-stream-v2
else
  fail compat-verify-stream-v2 "$(echo "$out" | tail -3)"
fi

# ---- the guest's verdict ----
XENSTORED_PATH="$HERE/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-ctl" go
sleep 0.5
XENSTORED_PATH="$HERE/xenstored/socket" xenstore-write "/local/domain/$D/data/soak-stop" 1
res=$(wait_result "$D" soak 120)
if [ "$res" = "xtest: soak: PASS" ]; then pass soak-verdict; else
  fail soak-verdict "guest said: $res"; fi
