#!/usr/bin/env bash
# Saving a domain's PV state as a domain context image (docs/domain-context.md):
# `xkvm save-context` on a guest holding one event channel port of each kind (and,
# with the dom0 services, its xenstore/console ports), then `xkvm-ctx verify` passes
# and `xkvm-ctx dump --json` shows what `xkvm debug-state` shows: the same ports
# (numbers, types, vCPUs, remote ends), grant frames, vcpu_info placement, shared_info
# gfn, HVM params. The guest keeps running through the pause/unpause and still passes.
# A domain that does not exist is a clear error.
source "$(dirname "$0")/lib.sh"
require_kvm
XKVM_CTX=$BUILD/src/tools/xkvm-ctx
host_start h1 || { fail start "xkvmd did not start"; exit 1; }

show_log() {
  local log; log=$(console_log "$1")
  [ -f "$log" ] && tail -n "${2:-12}" "$log" | sed 's/^/#   /'
}


# compare CTX_JSON DEBUG_JSON READY_LINE: the image against debug-state.
compare() {
  python3 - "$@" <<'PY'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = recs[-1]
recs = recs[:-1]
st = json.load(open(sys.argv[2]))
kv = dict(re.findall(r'([a-z0-9-]+)=([0-9,]+)', sys.argv[3]))
errs = []
STATES = {1: 'unbound', 2: 'interdomain', 3: 'virq', 4: 'ipi'}
PLACEMENTS = {0: 'none', 1: 'shared_info', 2: 'registered'}
if not summary.get('ok'):
    errs.append(f'dump summary not ok: {summary}')
by = {}
for r in recs:
    by.setdefault(r['name'], {})[r['instance']] = r
def one(name):
    d = by.get(name, {})
    if len(d) != 1:
        errs.append(f'{len(d)} {name} records, want 1')
        return {'fields': {}, 'elements': []}
    return next(iter(d.values()))
names = [r['name'] for r in recs]
if names[0] != 'START' or names[-1] != 'END':
    errs.append(f'image runs {names[0]}..{names[-1]}')
ev = st['events']
# DOMAIN
dom = one('DOMAIN')['fields']
if dom.get('domid') != st['domid']:
    errs.append(f"DOMAIN.domid {dom.get('domid')}, want {st['domid']}")
if dom.get('nr_vcpus') != len(ev['vcpus']):
    errs.append(f"DOMAIN.nr_vcpus {dom.get('nr_vcpus')}, want {len(ev['vcpus'])}")
# shared_info
si = one('SHARED_INFO')['fields']
if si.get('buffer_size') != 4096:
    errs.append(f"SHARED_INFO.buffer_size {si.get('buffer_size')}")
sgfn = one('SHARED_INFO_GFN')['fields'].get('gfn')
if sgfn != ev['shared_info_gfn']:
    errs.append(f"SHARED_INFO_GFN {sgfn}, want {ev['shared_info_gfn']}")
abi = one('EVTCHN_ABI')['fields'].get('abi')
if abi not in (0, '2l'):
    errs.append(f'EVTCHN_ABI {abi}')
# ports: exactly debug-state's, same type, vCPU and remote end
ctx_ports = by.get('EVTCHN_PORT', {})
dbg_ports = {p['port']: p for p in ev['ports']}
if sorted(ctx_ports) != sorted(dbg_ports):
    errs.append(f'ports {sorted(ctx_ports)}, debug-state {sorted(dbg_ports)}')
dom0 = 0
for port, p in dbg_ports.items():
    r = ctx_ports.get(port)
    if not r:
        continue
    f = r['fields']
    if STATES.get(f.get('state')) != p['state']:
        errs.append(f"port {port}: state {f.get('state')}, want {p['state']}")
    if f.get('notify_vcpu') != p['vcpu']:
        errs.append(f"port {port}: notify_vcpu {f.get('notify_vcpu')}, want {p['vcpu']}")
    if f.get('priority') != 7:
        errs.append(f"port {port}: priority {f.get('priority')}")
    want_rd = p.get('remote_domid', 0)
    if p.get('dom0_service'):
        want_rd = 0
        dom0 += 1
    if f.get('remote_domid') != want_rd:
        errs.append(f"port {port}: remote_domid {f.get('remote_domid')}, want {want_rd}")
    if f.get('remote_port') != p.get('remote_port', 0):
        errs.append(f"port {port}: remote_port {f.get('remote_port')}, want {p.get('remote_port', 0)}")
    if f.get('virq') != p.get('virq', 0):
        errs.append(f"port {port}: virq {f.get('virq')}, want {p.get('virq', 0)}")
# the guest's own ports are there with the kinds its ready line names
if kv:
    a, b = map(int, kv['interdomain'].split(','))
    want = {a: 'interdomain', b: 'interdomain', int(kv['virq-timer']): 'virq',
            int(kv['ipi0']): 'ipi', int(kv['unbound0']): 'unbound'}
    if int(kv.get('ipi1', 0)):
        want[int(kv['ipi1'])] = 'ipi'
    for port, t in want.items():
        r = ctx_ports.get(port)
        if not r or STATES.get(r['fields'].get('state')) != t:
            errs.append(f'guest port {port} ({t}) not in the image as {t}')
    if ctx_ports.get(a, {}).get('fields', {}).get('remote_port') != b:
        errs.append(f'loopback pair {a},{b} not paired in the image')
# grant table
gt = st['grant_table']
g = one('GNTTAB')
gf = g['fields']
if gf.get('nr_frames') != gt['nr_frames'] or gf.get('version') != gt['version']:
    errs.append(f"GNTTAB v{gf.get('version')} {gf.get('nr_frames')} frames, want v{gt['version']} {gt['nr_frames']}")
gfns = [e.get('gfn', e.get('frame_gfn')) for e in g.get('elements', [])]
want_gfns = [f['gfn'] for f in gt['frames']]
if gfns != want_gfns:
    errs.append(f'GNTTAB frame gfns {gfns}, want {want_gfns}')
frames = by.get('GNTTAB_FRAME', {})
if sorted(frames) != list(range(gt['nr_frames'])):
    errs.append(f'GNTTAB_FRAME instances {sorted(frames)}')
# HVM params: debug-state's non-zero ones, minus Xen's retired ones
retired = {4, 13, 20, 21, 22, 23, 25, 30}
hp = one('HVM_PARAMS')
got_p = {e['index']: e['value'] for e in hp.get('elements', [])}
want_p = {int(k): v for k, v in st['hvm_params'].items() if int(k) not in retired}
if got_p != want_p:
    errs.append(f'HVM_PARAMS {got_p}, want {want_p}')
# per vCPU
for v in ev['vcpus']:
    i = v['id']
    for name in ('VCPU_STATE', 'VCPU_INFO', 'UPCALL', 'TIMER'):
        if i not in by.get(name, {}):
            errs.append(f'vCPU {i}: no {name}')
    vi = by.get('VCPU_INFO', {}).get(i, {}).get('fields', {})
    pl = v['vcpu_info']['placement']
    if PLACEMENTS.get(vi.get('placement')) != pl:
        errs.append(f"vCPU {i}: vcpu_info {vi.get('placement')}, want {pl}")
    if pl == 'registered' and (vi.get('gfn') != v['vcpu_info']['gfn'] or
                               vi.get('offset') != v['vcpu_info']['offset']):
        errs.append(f"vCPU {i}: vcpu_info at {vi.get('gfn')}+{vi.get('offset')}, "
                    f"want {v['vcpu_info']['gfn']}+{v['vcpu_info']['offset']}")
    up = by.get('UPCALL', {}).get(i, {}).get('fields', {}).get('vector')
    if up != v['upcall_vector']:
        errs.append(f"vCPU {i}: upcall vector {up}, want {v['upcall_vector']}")
    fl = by.get('VCPU_STATE', {}).get(i, {}).get('fields', {}).get('flags')
    tm = by.get('TIMER', {}).get(i, {}).get('fields', {})
    if tm.get('periodic_period') != v['timers']['periodic_period_ns']:
        errs.append(f"vCPU {i}: periodic {tm.get('periodic_period')}, want {v['timers']['periodic_period_ns']}")
if errs:
    print('; '.join(errs)); sys.exit(1)
vis = ','.join(PLACEMENTS.get(by['VCPU_INFO'][v['id']]['fields'].get('placement'), '?') for v in ev['vcpus'])
print(f"{len(recs)} records: {len(ctx_ports)} ports ({dom0} dom0-service), "
      f"{gt['nr_frames']} grant frame(s) at {gfns}, {len(got_p)} params, vcpu_info {vis}")
PY
}

# ---- a guest holding one port of each kind, two vCPUs -----------------------------
make_cfg "$WORK/hold.cfg" hold "test=evtchn-hold hold_ms=15000" 32 2
if hid=$(xk create "$WORK/hold.cfg"); then
  if ready=$(wait_line "$hid" 'xkvm-guest: evtchn-hold: ready' 60); then
    if out=$(xk save-context "$hid" "$WORK/hold.ctx" 2>&1); then
      pass save-context
      xk debug-state "$hid" > "$WORK/hold-debug.json" 2>&1
      if v=$("$XKVM_CTX" verify "$WORK/hold.ctx" 2>&1); then
        pass verify; echo "#   $v"
      else
        fail verify "$v"
      fi
      if "$XKVM_CTX" dump --json "$WORK/hold.ctx" > "$WORK/hold-dump.json" 2>&1 &&
         verdict=$(compare "$WORK/hold-dump.json" "$WORK/hold-debug.json" "$ready"); then
        pass matches-debug-state; echo "#   $verdict"
      else
        fail matches-debug-state "${verdict:-xkvm-ctx dump failed: $(head -c 300 "$WORK/hold-dump.json")}"
      fi
      # a few more saves in a row: pausing and unpausing must not disturb the guest
      n=0
      for i in 1 2 3 4 5; do
        xk save-context "$hid" "$WORK/hold-$i.ctx" >/dev/null 2>&1 &&
          "$XKVM_CTX" verify "$WORK/hold-$i.ctx" >/dev/null 2>&1 && n=$((n + 1))
        sleep 0.2
      done
      if [ $n = 5 ]; then pass repeated-saves; else fail repeated-saves "$n of 5 saves verified"; fi
      if [ "$(dom_field "$hid" state)" = running ] || [ "$(dom_field "$hid" state)" = blocked ]; then
        pass not-left-paused
      else
        fail not-left-paused "state $(dom_field "$hid" state) after the saves"
      fi
    else
      fail save-context "xkvm save-context $hid: $out"
    fi
    res=$(wait_result "$hid" evtchn-hold 60)
    if [ "$res" = "xtest: evtchn-hold: PASS" ] && wait_state "$hid" shutdown 10 &&
       [ "$(dom_field "$hid" shutdown_reason)" = poweroff ]; then
      pass guest-survives
    else
      fail guest-survives "guest said: $res (state $(dom_field "$hid" state))"
      show_log "$hid"
    fi
  else
    fail save-context "the evtchn-hold guest never became ready"
    show_log "$hid"
  fi
  xk destroy "$hid" >/dev/null 2>&1
else
  fail save-context "creating the evtchn-hold guest failed"
fi

# ---- guests that registered vcpu_info / mapped grant frames, then shut down --------
# A preserved domain that has shut down can be saved too; the image must still match.
saved_after_shutdown() {   # LABEL TEST "EXTRA" VCPUS
  local label=$1 t=$2 extra=$3 vcpus=$4 id res verdict
  make_cfg "$WORK/$label.cfg" "$label" "test=$t $extra" 32 "$vcpus"
  if ! id=$(xk create "$WORK/$label.cfg"); then
    fail "$label" "creating the $t guest failed"; return
  fi
  res=$(wait_result "$id" "$t" 120)
  wait_state "$id" shutdown 10
  if xk save-context "$id" "$WORK/$label.ctx" >/dev/null 2>&1 &&
     "$XKVM_CTX" verify "$WORK/$label.ctx" >/dev/null 2>&1 &&
     xk debug-state "$id" > "$WORK/$label-debug.json" 2>&1 &&
     "$XKVM_CTX" dump --json "$WORK/$label.ctx" > "$WORK/$label-dump.json" &&
     verdict=$(compare "$WORK/$label-dump.json" "$WORK/$label-debug.json" ""); then
    pass "$label"; echo "#   guest: $res; $verdict"
  else
    fail "$label" "${verdict:-save, verify or dump failed}"
  fi
  xk destroy "$id" >/dev/null 2>&1
}
saved_after_shutdown vcpu-info-registered vcpu-info "upcall=vector" 2
saved_after_shutdown gnttab-mapped gnttab "" 1

# ---- errors -------------------------------------------------------------------------
if out=$(xk save-context 4242 "$WORK/none.ctx" 2>&1); then
  fail no-such-domain "save-context of domain 4242 succeeded"
elif echo "$out" | grep -q -i "no domain" && [ ! -e "$WORK/none.ctx" ]; then
  pass no-such-domain
else
  fail no-such-domain "unclear error: $out"
fi
reply=$(python3 - "$RUNDIR/xkvmd.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"cmd":"domain-context","domid":4242}\n')
print(s.makefile().readline().strip())
PY
)
if echo "$reply" | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["ok"] is False and r["errno"]=="ESRCH" and "4242" in r["error"] else 1)'; then
  pass domain-context-esrch
else
  fail domain-context-esrch "reply: $reply"
fi
if out=$(xk save-context 2>&1); [ $? = 2 ]; then pass usage; else fail usage "$out"; fi

check xkvmd-alive xk info
