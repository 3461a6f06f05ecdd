#!/usr/bin/env bash
# The dom0 device interface (dom0.sock): a guest grants a page to dom0, a dom0 service
# (xkvm-dom0-probe) maps it, reads the guest's pattern and answers; refusals (non-root
# peers, garbage, grants not for dom0); a guest destroyed under a mapping; memory
# returned once the mappings go. Event channels: a port the guest allocated unbound for
# dom0 bound by the probe, a ping-pong of events both ways, refusals, UNBIND, and the
# port back to unbound for dom0 once the service goes.
source "$(dirname "$0")/lib.sh"
require_kvm
PROBE=$BUILD/src/dom0/xkvm-dom0-probe
PING="xkvm-gnttab-dom0 ping"
PONG="xkvm-gnttab-dom0 pong"
# The interface alone: no dom0 services holding guest pages while frames are counted.
DOM0_SERVICES=0 host_start h1 || { fail start "xkvmd did not start"; exit 1; }
free0=$(info_field free_memory_kb)
probe() { "$PROBE" --rundir "$RUNDIR" "$@"; }

check socket-mode-0600 [ "$(stat -c %a "$RUNDIR/dom0.sock")" = 600 ]
check hello-as-root probe
check no-such-domain probe '!ESRCH' info 999

# Refused for anyone but root: by the socket's mode, and by xkvmd's peer check when
# the mode would let them in.
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$PROBE" --rundir "$RUNDIR" "$@"; }
out=$(nobody 2>&1)
if [ $? != 0 ] && grep -q EACCES <<<"$out"; then pass non-root-refused-by-mode
else fail non-root-refused-by-mode "probe as nobody: $out"; fi
chmod 711 "$WORK" "$RUNDIR"; chmod 666 "$RUNDIR/dom0.sock"
out=$(nobody 2>&1)
if [ $? != 0 ] && grep -q EACCES <<<"$out"; then pass non-root-refused-by-peer-check
else fail non-root-refused-by-peer-check "probe as nobody: $out"; fi
chmod 700 "$WORK" "$RUNDIR"; chmod 600 "$RUNDIR/dom0.sock"

# Garbage: short, lying length, unknown type, reply bit, bad fields, oversized. Each
# gets an error reply; the connection and xkvmd stay up.
mapfile -t garbage < <(python3 - <<'PY'
import os, struct
def msg(t, ln, body=b""): return (struct.pack("<IIIi", t, ln, 1, 0) + body).hex()
print("00")                                                   # shorter than a header
print(msg(8, 99, bytes(8)))                                   # length lies
print(msg(77, 16))                                            # unknown type
print(msg(0x80000008, 24, bytes(8)))                          # a reply
print(msg(4, 32, struct.pack("<IIII", 1, 8, 2, 0)))           # unknown map flag
print(msg(4, 32, struct.pack("<IIII", 0, 8, 0, 0)))           # domid 0
print(msg(8, 24, struct.pack("<II", 0, 2)))                   # unknown info flag
print(os.urandom(600).hex())                                  # too long
PY
)
steps=()
for g in "${garbage[@]}"; do steps+=(raw "$g"); done
out=$(probe "${steps[@]}" info 999 2>&1)
if [ "$(grep -c '^refused: E' <<<"$out")" = ${#garbage[@]} ]; then pass garbage-refused
else fail garbage-refused "$out"; fi
python3 - "$RUNDIR/dom0.sock" <<'PY' && pass garbage-before-hello || fail garbage-before-hello "see above"
import os, socket, struct, sys
for n in range(200):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    s.send(os.urandom(n % 64 + 1))
    s.settimeout(5)
    r = s.recv(256)
    t, ln, seq, err = struct.unpack("<IIIi", r[:16])
    assert err > 0 and ln == len(r), (n, r)
    s.close()
PY
check xkvmd-alive-after-garbage xk info

# start_guest NAME: boot test=gnttab-dom0; sets ID, REF, OTHER, RO, GFN.
start_guest() {
  make_cfg "$WORK/$1.cfg" "$1" "test=gnttab-dom0"
  ID=$(xk create "$WORK/$1.cfg") || return 1
  local line=""
  for _ in $(seq 300); do
    line=$(grep -a -m1 "xtest: gnttab-dom0: gref=" "$(console_log "$ID")" 2>/dev/null) && break
    sleep 0.1
  done
  [ -n "$line" ] || return 1
  eval "$(sed -E 's/.*gref=([0-9]+) other=([0-9]+) ro=([0-9]+) gfn=(0x[0-9a-f]+).*/REF=\1 OTHER=\2 RO=\3 GFN=\4/' <<<"$line")"
}
wait_file() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
wait_console() { for _ in $(seq 300); do grep -a -q "$2" "$(console_log "$1")" && return 0; sleep 0.1; done; return 1; }

# 1. The guest's page by grant and by gfn; refusals; the reply; the guest passes.
if ! start_guest g1; then fail guest-grants "no gref line from the guest"; else
  pass guest-grants
  probe info "$ID" | grep -q "'g1'" && pass domain-info || fail domain-info "no info for d$ID"
  probe map-foreign "$ID" "$GFN" ro expect "$PING" unmap >/dev/null 2>&1 &&
    pass map-foreign || fail map-foreign "foreign map of gfn $GFN"
  check not-granted-to-dom0 probe '!EACCES' map-grant "$ID" "$OTHER" rw
  check read-only-grant-mapped-rw probe '!EACCES' map-grant "$ID" "$RO" rw
  check read-only-grant-mapped-ro probe map-grant "$ID" "$RO" ro expect "$PING" unmap
  check ref-beyond-table probe '!EINVAL' map-grant "$ID" 99999 rw
  check grant-of-no-domain probe '!ESRCH' map-grant 999 "$REF" rw
  probe map-grant "$ID" "$REF" rw expect "$PING" write "$PONG" \
        touch "$WORK/mapped1" wait "$WORK/go1" unmap > "$WORK/probe1.out" 2>&1 &
  p1=$!
  if wait_console "$ID" "saw pong"; then pass guest-saw-reply; else fail guest-saw-reply "no pong seen"; fi
  touch "$WORK/go1"
  wait $p1 && pass probe-map-write-unmap || fail probe-map-write-unmap "$(cat "$WORK/probe1.out")"
  res=$(wait_result "$ID" gnttab-dom0 30)
  [ "$res" = "xtest: gnttab-dom0: PASS" ] && pass guest-passes || fail guest-passes "guest said: $res"
  xk destroy "$ID"
fi
check memory-returned-1 [ "$(info_field free_memory_kb)" = "$free0" ]

# 2. Destroy the guest while the service maps its page: xkvmd stays up, the frame
# stays the service's (intact, not reused) until it unmaps; then memory returns.
if ! start_guest g2; then fail destroy-under-map "no gref line from the guest"; else
  probe map-grant "$ID" "$REF" rw expect "$PING" write "$PONG" touch "$WORK/mapped2" \
        wait "$WORK/go2" expect "$PONG" write "still mine" expect "still mine" unmap \
        touch "$WORK/unmapped2" wait "$WORK/go2b" > "$WORK/probe2.out" 2>&1 &
  p2=$!
  wait_file "$WORK/mapped2"
  xk destroy "$ID"
  check xkvmd-alive-after-destroy xk info
  check frame-held-while-mapped [ "$(info_field free_memory_kb)" = $((free0 - 4)) ]
  touch "$WORK/go2"
  wait_file "$WORK/unmapped2"
  check memory-returned-after-unmap [ "$(info_field free_memory_kb)" = "$free0" ]
  touch "$WORK/go2b"
  wait $p2 && pass frame-valid-after-destroy || fail frame-valid-after-destroy "$(cat "$WORK/probe2.out")"
fi

# 3. The same, but the service just exits: closing the connection releases the frame.
if ! start_guest g3; then fail close-releases "no gref line from the guest"; else
  probe map-grant "$ID" "$REF" rw touch "$WORK/mapped3" wait "$WORK/go3" >/dev/null 2>&1 &
  p3=$!
  wait_file "$WORK/mapped3"
  xk destroy "$ID"
  touch "$WORK/go3"
  wait $p3
  sleep 0.2
  check close-releases [ "$(info_field free_memory_kb)" = "$free0" ]
fi

# 4. Event channels (guest test evtchn-dom0): the guest allocates port EP unbound for
# dom0 (and ESELF unbound for itself, EIDOM interdomain to itself) and answers every
# event from dom0 with a send on EP, EVCOUNT times per round, 2 rounds.
EVCOUNT=${EVCOUNT:-1000}
# port_state DOMID PORT: "STATE REMOTE_DOMID DOM0_SERVICE" from xkvm debug-state.
port_state() {
  xk debug-state "$1" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["events"]["ports"]:
    if p["port"] == int(sys.argv[1]):
        print(p["state"], p.get("remote_domid"), str(p.get("dom0_service", False)).lower())
        break
else:
    print("free")
' "$2"
}
wait_port_state() {  # DOMID PORT WANT
  for _ in $(seq 50); do [ "$(port_state "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done
  echo "port $2 of d$1: $(port_state "$1" "$2"), want $3" >&2; return 1
}
evline=""
make_cfg "$WORK/e1.cfg" e1 "test=evtchn-dom0 count=$EVCOUNT rounds=2"
if ID=$(xk create "$WORK/e1.cfg") && wait_console "$ID" "xtest: evtchn-dom0: port="; then
  evline=$(grep -a -m1 "xtest: evtchn-dom0: port=" "$(console_log "$ID")")
fi
if [ -z "$evline" ]; then fail evtchn-guest-allocates "no port line from the guest"; else
  eval "$(sed -E 's/.*port=([0-9]+) self-unbound=([0-9]+) interdomain=([0-9]+).*/EP=\1 ESELF=\2 EIDOM=\3/' <<<"$evline")"
  pass evtchn-guest-allocates
  check evtchn-unbound-before wait_port_state "$ID" "$EP" "unbound 0 false"
  # Refusals: each a clear errno, and the guest's port untouched.
  check evtchn-bind-never-allocated probe '!EINVAL' bind "$ID" 63
  check evtchn-bind-beyond-ports probe '!EINVAL' bind "$ID" 4000
  check evtchn-bind-port-0 probe '!EINVAL' bind "$ID" 0
  check evtchn-bind-interdomain-port probe '!EINVAL' bind "$ID" "$EIDOM"
  check evtchn-bind-unbound-for-self probe '!EINVAL' bind "$ID" "$ESELF"
  check evtchn-bind-no-domain probe '!ESRCH' bind 999 "$EP"
  check evtchn-unbind-not-bound probe '!ENOENT' unbind "$ID" "$EP"
  check evtchn-bind-twice-same-conn probe bind "$ID" "$EP" '!EBUSY' bind "$ID" "$EP"
  check evtchn-unbound-after-close-1 wait_port_state "$ID" "$EP" "unbound 0 false"
  probe bind "$ID" "$EP" touch "$WORK/ebound" wait "$WORK/ego" > "$WORK/ehold.out" 2>&1 &
  ph=$!
  if wait_file "$WORK/ebound"; then
    check evtchn-debug-state-bound wait_port_state "$ID" "$EP" "interdomain 0 true"
    check evtchn-bind-twice-other-conn probe '!EINVAL' bind "$ID" "$EP"
  else fail evtchn-bind-hold "$(cat "$WORK/ehold.out")"; fi
  touch "$WORK/ego"; wait $ph
  check evtchn-unbound-after-close-2 wait_port_state "$ID" "$EP" "unbound 0 false"
  check evtchn-port-other-kinds-kept wait_port_state "$ID" "$EIDOM" "interdomain $ID false"

  # Round 1: ping-pong, then an explicit UNBIND (and a write to the old fd after it).
  out=$(probe evtchn-pingpong "$ID" "$EP" "$EVCOUNT" unbind "$ID" "$EP" \
              touch "$WORK/eunbound" wait "$WORK/ego1" 2>&1 &
        wait_file "$WORK/eunbound" && wait_port_state "$ID" "$EP" "unbound 0 false" &&
        echo "state-after-unbind-ok"; touch "$WORK/ego1"; wait)
  echo "$out" | grep -E '^pingpong|^unbound' | sed 's/^/# /'
  grep -q "^pingpong d$ID port $EP: $EVCOUNT round trips" <<<"$out" &&
    pass evtchn-pingpong-probe || fail evtchn-pingpong-probe "$out"
  grep -q "^unbound d$ID port $EP" <<<"$out" && pass evtchn-unbind || fail evtchn-unbind "$out"
  grep -q state-after-unbind-ok <<<"$out" && pass evtchn-debug-state-after-unbind ||
    fail evtchn-debug-state-after-unbind "$out"
  wait_console "$ID" "evtchn-dom0: round 1 unbound" && pass evtchn-guest-round-1 ||
    fail evtchn-guest-round-1 "$(tail -3 "$(console_log "$ID")")"

  # Round 2: ping-pong again on the same port; the probe just exits.
  if out=$(probe evtchn-pingpong "$ID" "$EP" "$EVCOUNT" 2>&1); then
    pass evtchn-pingpong-rebind; else fail evtchn-pingpong-rebind "$out"; fi
  echo "$out" | grep '^pingpong' | sed 's/^/# /'
  us=$(sed -nE 's/.*: ([0-9.]+) us per round trip.*/\1/p' <<<"$out")
  echo "# dom0 event round trip: ${us:-?} us"
  # The guest may have seen the close already and closed the port itself.
  st=$(port_state "$ID" "$EP")
  [ "$st" = "unbound 0 false" ] || [ "$st" = free ] && pass evtchn-unbound-after-exit ||
    fail evtchn-unbound-after-exit "port $EP: $st"
  res=$(wait_result "$ID" evtchn-dom0 30)
  [ "$res" = "xtest: evtchn-dom0: PASS" ] && pass evtchn-guest-passes ||
    fail evtchn-guest-passes "guest said: $res"
  xk destroy "$ID"
fi

# 5. A guest destroyed while a service holds its port: the service's fds stay valid
# (writes reach nobody), xkvmd stays up, and the memory comes back.
make_cfg "$WORK/e2.cfg" e2 "test=evtchn-dom0 count=1"
if ID=$(xk create "$WORK/e2.cfg") && wait_console "$ID" "xtest: evtchn-dom0: port="; then
  EP=$(sed -nE 's/^\(d[0-9]+\) xtest: evtchn-dom0: port=([0-9]+).*/\1/p' "$(console_log "$ID")" | head -1)
  probe evtchn-pingpong "$ID" "$EP" 1 touch "$WORK/e2bound" wait "$WORK/e2go" \
        '!ETIMEDOUT' evtchn-pingpong "$ID" "$EP" 1 1 > "$WORK/e2.out" 2>&1 &
  p5=$!
  wait_file "$WORK/e2bound"
  xk destroy "$ID"
  check evtchn-xkvmd-alive-after-destroy xk info
  touch "$WORK/e2go"
  wait $p5 && pass evtchn-destroyed-under-binding ||
    fail evtchn-destroyed-under-binding "$(cat "$WORK/e2.out")"
else fail evtchn-destroyed-under-binding "no port line from the guest"; fi
sleep 0.2
check xkvmd-alive xk info
check memory-returned-end [ "$(info_field free_memory_kb)" = "$free0" ]
