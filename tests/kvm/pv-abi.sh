#!/usr/bin/env bash
# The PV guest ABI end to end, driven from the test guest (guest/tests/pv_*.c):
# event channels (loopback, VIRQ_TIMER with the vCPU timers, IPIs between vCPUs,
# interdomain between two guests), vcpu_info registration, grant copy between two
# guests, hostile arguments, under both upcall modes (HVM_PARAM_CALLBACK_IRQ vector
# and the per-vCPU upcall vector), and `xkvm debug-state` on a guest holding ports.
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }

MAXID=0     # highest domid created so far on this fresh xkvmd
HAVE_DOMID_OPT=0
[ -z "${PV_PREDICT_DOMIDS:-}" ] && xk help 2>&1 | grep -q -- '--domid' && HAVE_DOMID_OPT=1   # PV_PREDICT_DOMIDS=1: never use it

# new_dom CFG [DOMID]: create; sets DOMID. With a wanted domid, asks for it with
# --domid when the CLI has it, else relies on xkvmd's sequential allocation; either
# way the result is checked by the caller (prediction_ok).
new_dom() {
  local cfg=$1 want=${2:-} args=()
  [ -n "$want" ] && [ $HAVE_DOMID_OPT = 1 ] && args=(--domid "$want")
  local out
  if ! out=$(xk create "$cfg" "${args[@]}" 2>&1); then
    # a CLI whose help names --domid but whose parser does not take it yet
    if [ ${#args[@]} -gt 0 ] && echo "$out" | grep -q "unexpected argument"; then
      HAVE_DOMID_OPT=0
      out=$(xk create "$cfg" 2>&1) || { echo "$out" >&2; return 1; }
    else
      echo "$out" >&2
      return 1
    fi
  fi
  DOMID=$(echo "$out" | tail -n 1)
  case $DOMID in ''|*[!0-9]*) echo "$out" >&2; return 1 ;; esac
  [ "$DOMID" -gt "$MAXID" ] && MAXID=$DOMID
  return 0
}

# Show the end of a guest's console after a failure (comment lines, not counted).
show_log() {
  local log; log=$(console_log "$1")
  [ -f "$log" ] && tail -n "${2:-12}" "$log" | sed 's/^/#   /'
}

# check_result LABEL DOMID TEST [SECONDS]: PASS and poweroff.
check_result() {
  local label=$1 id=$2 t=$3 secs=${4:-120} res
  res=$(wait_result "$id" "$t" "$secs")
  if [ "$res" != "xtest: $t: PASS" ]; then
    fail "$label" "guest said: $res"
    show_log "$id"
  elif ! wait_state "$id" shutdown 10 || [ "$(dom_field "$id" shutdown_reason)" != poweroff ]; then
    fail "$label" "guest passed but did not power off (state $(dom_field "$id" state))"
  else
    pass "$label"
  fi
}

# run_pv LABEL TEST "EXTRA CMDLINE" [VCPUS] [SECONDS]: one guest, one test.
run_pv() {
  local label=$1 t=$2 extra=$3 vcpus=${4:-1} secs=${5:-120}
  make_cfg "$WORK/$label.cfg" "$label" "test=$t $extra" 32 "$vcpus"
  if ! new_dom "$WORK/$label.cfg"; then fail "$label" "xkvm create failed"; return; fi
  local id=$DOMID
  check_result "$label" "$id" "$t" "$secs"
  # one diagnostic line worth keeping in the log
  grep -a -E "xkvm-guest: (evtchn-|vcpu-info|periodic|singleshot|abi-bad)" \
    "$(console_log "$id")" 2>/dev/null | tail -n 3 | sed 's/^/#   /'
  xk destroy "$id" >/dev/null 2>&1
}

# ---- single-guest tests ----------------------------------------------------------
run_pv evtchn-loopback-callback evtchn-loopback "upcall=callback"
run_pv evtchn-loopback-vector evtchn-loopback "upcall=vector"
run_pv evtchn-loopback-vector-xapic evtchn-loopback "upcall=vector apic=xapic"
run_pv evtchn-loopback-block evtchn-loopback "upcall=callback wait=block"
run_pv evtchn-virq-timer-callback evtchn-virq-timer "upcall=callback"
run_pv evtchn-virq-timer-vector evtchn-virq-timer "upcall=vector"
run_pv evtchn-ipi-callback evtchn-ipi "upcall=callback" 2
run_pv evtchn-ipi-vector evtchn-ipi "upcall=vector" 2
run_pv vcpu-info-callback vcpu-info "upcall=callback" 2
run_pv vcpu-info-vector-4vcpu vcpu-info "upcall=vector" 4
run_pv abi-bad abi-bad "" 1
run_pv runstate runstate "" 1
run_pv runstate-2vcpu-vector runstate "upcall=vector" 2
run_pv gnttab-self gnttab "" 1

# ---- the same, calling Xen with VMCALL/VMMCALL directly (hypercall=vmcall) ----------
# Where KVM intercepts it. gnttab's batch longer than xkvmd copies at once is a
# continuation of the VMCALL.
if vmcall_mode_or_skip vmcall-mode; then
  run_pv evtchn-loopback-vector-vmcall evtchn-loopback "upcall=vector hypercall=vmcall"
  run_pv evtchn-loopback-block-vmcall evtchn-loopback "upcall=callback wait=block hypercall=vmcall"
  run_pv evtchn-virq-timer-vmcall evtchn-virq-timer "upcall=vector hypercall=vmcall"
  run_pv evtchn-ipi-vmcall evtchn-ipi "upcall=vector hypercall=vmcall" 2
  run_pv vcpu-info-vmcall vcpu-info "upcall=vector hypercall=vmcall" 2
  run_pv abi-bad-vmcall abi-bad "hypercall=vmcall" 1
  run_pv runstate-vmcall runstate "hypercall=vmcall" 1
  run_pv gnttab-self-vmcall gnttab "hypercall=vmcall" 1
fi

# ---- two guests: the first needs the second's domid -----------------------------
# two_guests LABEL TEST FIRST_ARGS SECOND_ARGS_FN LINE_REGEX... is spelled out per test
# below; both use: first = MAXID+1, second = MAXID+2.
prediction_ok() {   # LABEL WANT GOT
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "wanted domid $2, got $3"; fi
}

# evtchn-interdomain: server allocates, prints its port; client binds; 10,000 events.
first=$((MAXID + 1)); second=$((MAXID + 2))
make_cfg "$WORK/ev-server.cfg" ev-server \
  "test=evtchn-interdomain role=server peer=$second" 32 1
if new_dom "$WORK/ev-server.cfg" "$first"; then
  sid=$DOMID
  prediction_ok interdomain-server-domid "$first" "$sid"
  if line=$(wait_line "$sid" 'xtest: evtchn-interdomain: port=[0-9]+' 60); then
    port=${line##*port=}
    make_cfg "$WORK/ev-client.cfg" ev-client \
      "test=evtchn-interdomain role=client peer=$sid port=$port" 32 1
    if new_dom "$WORK/ev-client.cfg" "$second"; then
      cid=$DOMID
      prediction_ok interdomain-client-domid "$second" "$cid"
      check_result evtchn-interdomain-client "$cid" evtchn-interdomain 300
      check_result evtchn-interdomain-server "$sid" evtchn-interdomain 30
      for id in "$sid" "$cid"; do
        grep -a "xkvm-guest: evtchn-interdomain: .*sent" "$(console_log "$id")" | sed 's/^/#   /'
      done
      xk destroy "$cid" >/dev/null 2>&1
    else
      fail evtchn-interdomain "creating the client failed"
    fi
  else
    fail evtchn-interdomain "the server printed no port line"
    show_log "$sid"
  fi
  xk destroy "$sid" >/dev/null 2>&1
else
  fail evtchn-interdomain "creating the server failed"
fi

# gnttab-peer: granter grants a page read-only, prints gref and a done port; copier
# copies (the single-guest `gnttab` test covers copies within one domain).
first=$((MAXID + 1)); second=$((MAXID + 2))
make_cfg "$WORK/gt-granter.cfg" gt-granter "test=gnttab-peer role=granter peer=$second" 32 1
if new_dom "$WORK/gt-granter.cfg" "$first"; then
  gid=$DOMID
  prediction_ok gnttab-peer-granter-domid "$first" "$gid"
  gref=$(wait_line "$gid" 'xtest: gnttab-peer: gref=[0-9]+' 60) && gref=${gref##*gref=}
  dport=$(wait_line "$gid" 'xtest: gnttab-peer: done-port=[0-9]+' 10) && dport=${dport##*done-port=}
  if [ -n "$gref" ] && [ -n "$dport" ]; then
    make_cfg "$WORK/gt-copier.cfg" gt-copier \
      "test=gnttab-peer role=copier peer=$gid gref=$gref done_port=$dport" 32 1
    if new_dom "$WORK/gt-copier.cfg" "$second"; then
      cid=$DOMID
      prediction_ok gnttab-peer-copier-domid "$second" "$cid"
      check_result gnttab-peer-copier "$cid" gnttab-peer 120
      check_result gnttab-peer-granter "$gid" gnttab-peer 30
      grep -a "xkvm-guest: gnttab-peer: " "$(console_log "$cid")" | sed 's/^/#   /'
      xk destroy "$cid" >/dev/null 2>&1
    else
      fail gnttab-peer "creating the copier failed"
    fi
  else
    fail gnttab-peer "the granter printed no gref/done-port line"
    show_log "$gid"
  fi
  xk destroy "$gid" >/dev/null 2>&1
else
  fail gnttab-peer "creating the granter failed"
fi

# ---- xkvm debug-state on a guest holding one port of each kind --------------------
make_cfg "$WORK/hold.cfg" hold "test=evtchn-hold" 32 2
if new_dom "$WORK/hold.cfg"; then
  hid=$DOMID
  if ready=$(wait_line "$hid" 'xkvm-guest: evtchn-hold: ready' 60); then
    if ! out=$(xk debug-state "$hid" 2>&1); then
      if echo "$out" | grep -q -i -E 'unknown|usage|not implemented|unsupported'; then
        skip debug-state "xkvm debug-state is not available yet: $(echo "$out" | head -1)"
      else
        fail debug-state "xkvm debug-state $hid failed: $(echo "$out" | head -1)"
      fi
    else
      echo "$out" > "$WORK/debug-state.json"
      # Ports from the ready line: interdomain=A,B virq-timer=V ipi0=I ipi1=J unbound0=U
      if verdict=$(python3 - "$WORK/debug-state.json" "$ready" <<'PY'
import json, re, sys
state = json.load(open(sys.argv[1]))
kv = dict(re.findall(r'([a-z0-9-]+)=([0-9,]+)', sys.argv[2]))
a, b = map(int, kv['interdomain'].split(','))
want = {  # port: (type word, vcpu, remote port or None, pending, masked)
    a: ('interdomain', 0, b, True, True),
    b: ('interdomain', 0, a, None, False),
    int(kv['virq-timer']): ('virq', 0, None, None, False),
    int(kv['ipi0']): ('ipi', 0, None, None, False),
    int(kv['unbound0']): ('unbound', 0, None, None, True),
}
if int(kv.get('ipi1', 0)):
    want[int(kv['ipi1'])] = ('ipi', 1, None, None, False)

# Find port objects anywhere in the JSON: dicts with a numeric "port" key, or dicts
# keyed by port number.
found = {}
def walk(o, key=None):
    if isinstance(o, dict):
        p = o.get('port', o.get('local_port'))
        if isinstance(p, int):
            found.setdefault(p, o)
        elif key is not None and str(key).isdigit() and any(
                k in o for k in ('type', 'state', 'kind')):
            found.setdefault(int(key), o)
        for k, v in o.items():
            walk(v, k)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(state)
def field(o, *names):
    for n in names:
        if n in o:
            return o[n]
    return None
errs = []
for port, (typ, vcpu, rport, pending, masked) in sorted(want.items()):
    o = found.get(port)
    if o is None:
        errs.append(f'port {port} ({typ}) missing'); continue
    t = str(field(o, 'type', 'state', 'kind')).lower()
    if typ not in t:
        errs.append(f'port {port}: type {t}, want {typ}')
    v = field(o, 'vcpu', 'notify_vcpu', 'notify_vcpu_id')
    if v is not None and v != vcpu:
        errs.append(f'port {port}: vcpu {v}, want {vcpu}')
    if v is None:
        errs.append(f'port {port}: no vcpu field')
    if rport is not None:
        r = field(o, 'remote_port', 'rport')
        if r is None and isinstance(o.get('remote'), dict):
            r = field(o['remote'], 'port')
        if r != rport:
            errs.append(f'port {port}: remote port {r}, want {rport}')
    for name, w in (('pending', pending), ('masked', masked)):
        got = o.get(name)
        if got is None:
            errs.append(f'port {port}: no {name} field')
        elif w is not None and bool(got) != w:
            errs.append(f'port {port}: {name} {got}, want {w}')
print('; '.join(errs) if errs else f'{len(want)} ports as expected')
sys.exit(1 if errs else 0)
PY
      ); then
        pass debug-state
        echo "#   $verdict"
      else
        fail debug-state "$verdict"
        head -c 1500 "$WORK/debug-state.json" | sed 's/^/#   /'; echo
      fi
    fi
  else
    fail debug-state "the evtchn-hold guest never became ready"
    show_log "$hid"
  fi
  xk destroy "$hid" >/dev/null 2>&1
else
  fail debug-state "creating the evtchn-hold guest failed"
fi

check xkvmd-alive xk info
