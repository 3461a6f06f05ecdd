#!/usr/bin/env bash
# xkvmd under systemd (docs/operating.md, "systemd"), without a systemd: a fake service
# manager (a python3 AF_UNIX datagram listener at $NOTIFY_SOCKET, with SO_PASSCRED for
# the sender's pid) records what xkvmd --foreground says.
#
#   units-verify        systemd-analyze verify accepts the built units (SKIP without it)
#   ready-when-serving  READY=1 comes from xkvmd's pid, names it as MAINPID, and at
#                       that moment "xkvm info" is answered
#   live-update         with a guest running, "xkvm live-update --exec": RELOADING=1, then
#                       READY=1 again, both from the same pid (the exec keeps the pid
#                       and NOTIFY_SOCKET); xkvm info answered then; the guest runs on
#   only-main           every message came from xkvmd's pid (not a dom0 service)
#   domains-save        xkvm-domains stop saves the running guest to XKVM_DOMAINS_SAVE
#                       (it is gone from xkvmd); start restores it and it runs on
#   stopping            SIGTERM: STOPPING=1 from the same pid, xkvmd exits 0
#   services-outlive    the dom0 services run on after xkvmd stopped (KillMode=process)
#   beside              live-update --beside under a second xkvmd: MAINPID=<new pid> from
#                       the old pid before READY=1 from the new one (xkvm info answered),
#                       the old one exits 0, the guest runs on, SIGTERM stops the new one
source "$(dirname "$0")/lib.sh"

# ---- the units (no KVM) ----
if ! command -v systemd-analyze >/dev/null; then
  skip units-verify "no systemd-analyze (Debian package systemd) on this machine"
elif [ ! -f "$BUILD/systemd/xkvmd.service" ]; then
  fail units-verify "no $BUILD/systemd/xkvmd.service"
else
  # The units as built name installed paths; point them at this build's binaries.
  mkdir -p "$WORK/units"
  for u in xkvmd.service xkvm-domains.service; do
    sed -e "s|ExecStart=[^ ]*/xkvmd |ExecStart=$XKVMD |" \
        -e "s|ExecReload=[^ ]*/xkvm |ExecReload=$XKVM |" \
        -e "s|XKVM=[^ ]*/xkvm$|XKVM=$XKVM|" \
        -e "s#Exec\(Start\|Stop\)=[^ ]*/xkvm-domains #Exec\1=$ROOT/systemd/xkvm-domains #" \
        "$BUILD/systemd/$u" > "$WORK/units/$u"
  done
  if out=$(cd "$WORK/units" && systemd-analyze verify --man=no ./xkvmd.service \
           ./xkvm-domains.service 2>&1) && [ -z "$out" ]; then
    pass units-verify
  elif echo "$out" | grep -qi "system has not been booted with systemd\|Failed to connect\|Permission denied"; then
    skip units-verify "systemd-analyze cannot run here: $(echo "$out" | head -1)"
  else
    fail units-verify "$(echo "$out" | head -3 | tr '\n' ' ')"
  fi
fi

require_kvm

# ---- the fake service manager ----
NOTIFY=$WORK/notify.sock
MSGS=$WORK/notify.msgs
cat > "$WORK/listener.py" <<'PY'
import os, socket, struct, subprocess, sys
path, out, xkvm, rundir = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = "?"
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        msg = data.decode(errors="replace")
        info = "-"
        if "READY=1" in msg.split("\n"):
            # At this moment the control socket must answer.
            r = subprocess.run([xkvm, "--rundir", rundir, "info"], capture_output=True,
                               timeout=10)
            info = "ok" if r.returncode == 0 else "fail"
        f.write("pid=%s info=%s %s\n" % (pid, info, msg.replace("\n", "|")))
PY
RUNDIR=$WORK/h
mkdir -p "$RUNDIR"
HOSTS+=("$RUNDIR")
python3 "$WORK/listener.py" "$NOTIFY" "$MSGS" "$XKVM" "$RUNDIR" &
LISTENER=$!
for _ in $(seq 50); do [ -S "$NOTIFY" ] && break; sleep 0.1; done
stop_listener() { kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null; }
trap 'stop_listener; cleanup' EXIT

# msgs_with KEY: the recorded messages holding the assignment KEY (e.g. READY=1).
msgs_with() { grep -E "(\||^pid=[^ ]* info=[^ ]* )$1(\||\$)" "$MSGS" 2>/dev/null; }
wait_msgs() {   # wait_msgs KEY COUNT [SECONDS]
  for _ in $(seq $((${3:-30} * 10))); do
    [ "$(msgs_with "$1" | wc -l)" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

NOTIFY_SOCKET=$NOTIFY "$XKVMD" --rundir "$RUNDIR" --machine-memory 1G --foreground \
  2>"$WORK/xkvmd.log" &
XPID=$!
if wait_msgs READY=1 1 30; then
  r=$(msgs_with READY=1 | head -1)
  if [[ $r == "pid=$XPID info=ok "* ]] && [[ $r == *"|MAINPID=$XPID|"* ]]; then
    pass ready-when-serving
  else
    fail ready-when-serving "xkvmd pid $XPID, got: $r"
  fi
else
  fail ready-when-serving "no READY=1 in 30 s: $(tail -2 "$WORK/xkvmd.log" | tr '\n' ' ')"
  exit 1
fi

make_cfg "$WORK/g.cfg" g1 "test=soak mb=2" 48 1
D=$(xk create "$WORK/g.cfg") || { fail live-update "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 90 >/dev/null || { fail live-update "the guest did not boot"; exit 1; }

if ! out=$(xk live-update --exec 2>&1); then
  fail live-update "xkvm live-update --exec: $out"
elif ! wait_msgs READY=1 2 30; then
  fail live-update "no second READY=1: $(tr '\n' ' ' < "$MSGS")"
else
  rel=$(msgs_with RELOADING=1 | head -1)
  r2=$(msgs_with READY=1 | sed -n 2p)
  # RELOADING=1 before the second READY=1, both from the same pid.
  order=$(grep -n -E "RELOADING=1|READY=1" "$MSGS" | sed -n 2p)
  if [ -z "$rel" ] || [[ $rel != "pid=$XPID "* ]] || [[ $order != *RELOADING=1* ]] ||
     [[ $rel != *"|MONOTONIC_USEC="* ]]; then
    fail live-update "RELOADING=1 missing, out of order or from another pid: $rel"
  elif [[ $r2 != "pid=$XPID info=ok "* ]] || [[ $r2 != *": 1 domain(s)"* ]]; then
    fail live-update "second READY=1: $r2"
  elif [ "$(dom_field "$D" state 2>/dev/null)" != running ] ||
       ! kill -0 "$XPID" 2>/dev/null; then
    fail live-update "after the update: domain $D is '$(dom_field "$D" state)', xkvmd pid $XPID alive? $(kill -0 "$XPID" 2>/dev/null && echo yes || echo no)"
  else
    pass live-update
  fi
fi
echo "# $(echo "$out" | head -1)"

# ---- xkvm-domains: save on stop, restore on start ----
SAVE=$WORK/save
DOMS_ENV=(env XKVM="$XKVM" XKVM_RUNDIR="$RUNDIR" XKVM_DOMAINS_SAVE="$SAVE"
          XKVM_DOMAINS_AUTO="$WORK/auto")
if ! "${DOMS_ENV[@]}" "$ROOT/systemd/xkvm-domains" stop > "$WORK/domains-stop.log" 2>&1; then
  fail domains-save "xkvm-domains stop: $(tr '\n' ' ' < "$WORK/domains-stop.log")"
elif [ ! -s "$SAVE/g1.save" ] || [ -n "$(xk list | awk 'NR > 1')" ]; then
  fail domains-save "no $SAVE/g1.save, or domains left: $(xk list | tr '\n' ' ')"
elif ! "${DOMS_ENV[@]}" "$ROOT/systemd/xkvm-domains" start > "$WORK/domains-start.log" 2>&1; then
  fail domains-save "xkvm-domains start: $(tr '\n' ' ' < "$WORK/domains-start.log")"
elif [ -e "$SAVE/g1.save" ] || [ "$(dom_field "$D" state 2>/dev/null)" != running ]; then
  fail domains-save "after start: $(ls "$SAVE") / $(xk list | tr '\n' ' ')"
else
  r0=$(wc -l < "$(console_log "$D")")
  ok=0
  for _ in $(seq 100); do
    [ "$(wc -l < "$(console_log "$D")")" -gt "$r0" ] && { ok=1; break; }
    sleep 0.1
  done
  # The soak prints a line every 50 rounds: the restored guest goes on counting.
  if [ $ok = 0 ]; then
    fail domains-save "the restored guest printed nothing in 10 s: $(tail -1 "$(console_log "$D")")"
  elif grep -a -q "xtest: soak: FAIL" "$(console_log "$D")"; then
    fail domains-save "the restored guest reports a failure: $(grep -a FAIL "$(console_log "$D")" | head -1)"
  else
    pass domains-save
  fi
fi

SERVICES=$(cat "$RUNDIR"/services/*.pid 2>/dev/null)
kill -TERM "$XPID"
wait "$XPID"; st=$?
if wait_msgs STOPPING=1 1 10; then
  s=$(msgs_with STOPPING=1 | head -1)
  if [[ $s == "pid=$XPID "* ]] && [ "$st" = 0 ]; then
    pass stopping
  else
    fail stopping "exit status $st, message: $s"
  fi
else
  fail stopping "no STOPPING=1 (exit status $st)"
fi

if [ "$(grep -c -v "^pid=$XPID " "$MSGS")" = 0 ]; then
  pass only-main
else
  fail only-main "$(grep -v "^pid=$XPID " "$MSGS" | head -2 | tr '\n' ' ')"
fi

alive=0
for p in $SERVICES; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
if [ -n "$SERVICES" ] && [ "$alive" = "$(echo "$SERVICES" | wc -w)" ]; then
  pass services-outlive
else
  fail services-outlive "services '$SERVICES', $alive alive after xkvmd stopped"
fi
# ---- live update --beside: the service's main pid changes ----
# A new xkvmd under the same fake manager (the services above are adopted), a guest,
# and an update with --beside: the old process says MAINPID=<new pid> before it exits,
# then READY=1 comes from the new pid (NotifyAccess=main accepts it only then), with
# xkvm info answered; the guest runs on; SIGTERM to the new pid stops it.
n0=$(msgs_with READY=1 | wc -l)
NOTIFY_SOCKET=$NOTIFY "$XKVMD" --rundir "$RUNDIR" --machine-memory 1G --foreground \
  2>>"$WORK/xkvmd.log" &
XPID=$!
if ! wait_msgs READY=1 $((n0 + 1)) 30; then
  fail beside "the second xkvmd did not say READY=1"
elif ! D=$(xk create "$WORK/g.cfg") || ! wait_line "$D" "xtest: soak: round 1 ok" 90 >/dev/null; then
  fail beside "the guest did not boot"
elif ! out=$(xk live-update --beside 2>&1); then
  fail beside "xkvm live-update --beside: $out"
else
  NP=$(echo "$out" | sed -n 's/.*xkvmd pid \([0-9]*\).*/\1/p')
  wait_msgs READY=1 $((n0 + 2)) 30
  wait "$XPID"; st=$?
  main=$(grep -n "^pid=$XPID .*MAINPID=$NP" "$MSGS" | head -1 | cut -d: -f1)
  ready=$(grep -n "^pid=$NP info=ok .*READY=1" "$MSGS" | head -1 | cut -d: -f1)
  if [ -z "$NP" ] || [ "$NP" = "$XPID" ] || [ "$st" != 0 ]; then
    fail beside "new pid '$NP' (old $XPID, which exited with $st): $out"
  elif [ -z "$main" ] || [ -z "$ready" ] || [ "$main" -ge "$ready" ]; then
    fail beside "MAINPID=$NP from $XPID (line '$main') not before READY=1 from $NP (line '$ready'): $(tail -4 "$MSGS" | tr '\n' ' ')"
  elif [ "$(cat "$RUNDIR/xkvmd.pid")" != "$NP" ] || [ "$(dom_field "$D" state)" != running ]; then
    fail beside "pid file $(cat "$RUNDIR/xkvmd.pid"), domain $D '$(dom_field "$D" state)'"
  else
    kill -TERM "$NP"
    for _ in $(seq 100); do kill -0 "$NP" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NP" 2>/dev/null || ! grep -q "^pid=$NP .*STOPPING=1" "$MSGS"; then
      fail beside "the new xkvmd ($NP) did not stop on SIGTERM, or said no STOPPING=1"
    else
      pass beside
    fi
  fi
fi

echo "# notify messages:"
sed 's/^/#   /' "$MSGS"
