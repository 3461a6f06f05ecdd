#!/usr/bin/env bash
# altp2m views (docs/altp2m.md): Xen's HVMOP_altp2m with its views enforced by KVM's
# memslots, and a monitor that hears about the accesses they stop.
#   guest-mixed       - test=altp2m in mode mixed: views, a read-only page, a remapped
#                       gfn, hostile arguments and thousands of restrictions, each with
#                       Xen's code; the forbidden write is held until the monitor answers
#   monitor-event     - xkvm altp2m-monitor --json printed that write: vCPU 0, its gfn,
#                       a write, the view, a RIP; the guest then went on (resumed once)
#   no-monitor        - the same test with no monitor and altp2m = "mixed" in xl.cfg: the
#                       write is done once and counted (Xen's rule when no listener is on
#                       the ring), the guest passes
#   limited           - mode limited: the guest reaches none of the toolstack's sub-ops
#   toolstack         - xkvm altp2m: views from the toolstack, hostile arguments refused,
#                       a view past the memslot budget refused, status counts
#   soak-*            - test=altp2m-soak (a read-only page, a remapped gfn, checked and
#                       written once a second) saved and restored, migrated 3 times
#                       there and back, live-updated: after each, `status` shows the
#                       same view (1 restriction, 1 remapping, active), the guest's checks
#                       go on, and a monitor attached on the host it is on receives its
#                       violations; the guest passes at the end
#   xkvmd-alive       - xkvmd is still the same process at the end
set -u
. "$(dirname "$0")/lib.sh"
require_kvm

BASE=$((20000 + RANDOM % 20000))
P1=$BASE; P2=$((BASE + 1))
host_start h --migrate-listen 127.0.0.1:$P1 $(migrate_auth) || { fail start "xkvmd did not start"; exit 0; }
H1=$RUNDIR
pid0=$(cat "$RUNDIR/xkvmd.pid")

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# guest-mixed + monitor-event
make_cfg "$WORK/mixed.cfg" mixed "test=altp2m" 32 1
if dom=$(xk create --paused "$WORK/mixed.cfg") && xk altp2m "$dom" mode mode=mixed; then
  xk altp2m-monitor "$dom" --json --count 1 > "$WORK/monitor.out" 2>"$WORK/monitor.err" &
  mon=$!
  sleep 0.5
  xk unpause "$dom"
  res=$(wait_result "$dom" altp2m 120)
  probe=$(wait_line "$dom" 'xtest: altp2m: write-probe' 1)
  if [ "$res" = "xtest: altp2m: PASS" ]; then pass guest-mixed; else fail guest-mixed "guest said: $res"; fi
  for _ in $(seq 50); do kill -0 $mon 2>/dev/null || break; sleep 0.1; done
  kill $mon 2>/dev/null; wait $mon 2>/dev/null
  view=$(echo "$probe" | sed -n 's/.*view=\([0-9]*\).*/\1/p')
  gfn=$(echo "$probe" | sed -n 's/.*gfn=\(0x[0-9a-f]*\).*/\1/p')
  ev=$(head -1 "$WORK/monitor.out")
  want="0 $((gfn)) w $view True"
  got=$(echo "$ev" | json_get '"%d %d %s %d %s" % (d["vcpu"], d["gfn"], d["access"], d["view"], d["rip"] > 0)' 2>/dev/null)
  if [ -n "$view" ] && [ "$got" = "$want" ]; then
    pass monitor-event
  else
    fail monitor-event "event '$ev' (wanted vcpu gfn access view rip>0 = $want; got $got); $(cat "$WORK/monitor.err")"
  fi
else
  fail guest-mixed "create or mode failed"
  fail monitor-event "not run"
fi
destroy_all

# no-monitor (the mode from xl.cfg's altp2m key, as Xen 4.17's xl reads it)
make_cfg "$WORK/nomon.cfg" nomon "test=altp2m" 32 1 'altp2m = "mixed"'
if dom=$(xk create "$WORK/nomon.cfg"); then
  res=$(wait_result "$dom" altp2m 120)
  n=$(xk altp2m "$dom" status | json_get 'd["violations"]')
  if [ "$res" = "xtest: altp2m: PASS" ] && [ "$n" = 1 ]; then
    pass no-monitor
  else
    fail no-monitor "guest said: $res; violations counted: $n"
  fi
else
  fail no-monitor "create failed"
fi
destroy_all

# limited: the toolstack turns altp2m on; the guest may not change anything itself.
make_cfg "$WORK/lim.cfg" lim "test=altp2m-limited" 32 1
if dom=$(xk create --paused "$WORK/lim.cfg") && xk altp2m "$dom" mode mode=limited &&
   xk altp2m "$dom" set-state on=true && xk unpause "$dom"; then
  res=$(wait_result "$dom" altp2m-limited 120)
  if [ "$res" = "xtest: altp2m-limited: PASS" ]; then pass limited; else fail limited "guest said: $res"; fi
else
  fail limited "create failed"
fi
destroy_all

# toolstack: a running guest (test=soak keeps it busy), views made from outside.
make_cfg "$WORK/ts.cfg" ts "test=soak" 32 1
why=""
if dom=$(xk create "$WORK/ts.cfg"); then
  wait_line "$dom" 'soak|xtest' 30 >/dev/null
  t() { xk altp2m "$dom" "$@" 2>&1; }
  expect_err() {   # expect_err ERRNAME-TEXT ARGS...: the command fails saying it
    local want=$1; shift
    local out; if out=$(t "$@"); then why="$why; '$*' succeeded"; return; fi
    echo "$out" | grep -q -- "$want" || why="$why; '$*': $out"
  }
  expect_err "not supported" create access=rx                        # not on yet
  expect_err "Invalid argument" set-state on=true                    # mode disabled
  xk altp2m "$dom" mode mode=external || why="$why; mode"
  t set-state on=true >/dev/null || why="$why; set-state"
  v=$(t create access=rwx | json_get 'd["view"]') || why="$why; create"
  expect_err "not supported" create access=rw
  expect_err "Invalid argument" switch view=9
  expect_err "Invalid argument" switch view=70000
  expect_err "Invalid argument" set-access view="$v" gfn=$((0x10000)) access=rx
  expect_err "Invalid argument" change-gfn view="$v" old_gfn=$((0x200)) new_gfn=$((0xfeff1 + 100))
  expect_err "not supported" set-suppress-ve view="$v" gfn=512
  t set-access view="$v" gfn=$((0x1800)) nr=16 access=rx >/dev/null || why="$why; set-access"
  [ "$(t get-access view="$v" gfn=$((0x1808)) | json_get 'd["access"]')" = rx ] || why="$why; get-access"
  t switch view="$v" >/dev/null || why="$why; switch"
  [ "$(t get-p2m-idx vcpu=0 | json_get 'd["view"]')" = "$v" ] || why="$why; get-p2m-idx"
  expect_err "busy" destroy view="$v"
  # 3000 separate pages: more memslots than a view may take, refused whole.
  gfns=$(python3 -c 'print(",".join(str(0x100 + 2*i) for i in range(3000)))')
  out=$(t set-access view="$v" gfns="$gfns" access=rx) && why="$why; 3000 restrictions accepted"
  echo "$out" | grep -q "Cannot allocate memory" || why="$why; 3000 restrictions: ${out:0:200}"
  st=$(t status)
  [ "$(echo "$st" | json_get 'd["views"][1]["overrides"]')" = 16 ] || why="$why; status: $st"
  t switch view=0 >/dev/null && t destroy view="$v" >/dev/null || why="$why; back to 0"
  t set-state on=false >/dev/null || why="$why; off"
  [ "$(dom_field "$dom" state)" != crashed ] || why="$why; guest crashed"
  if [ -z "$why" ]; then pass toolstack; else fail toolstack "${why#; }"; fi

else
  fail toolstack "create failed"
fi
destroy_all

# soak: the views travel (save/restore, migration there and back, live update).
host_start h2 --migrate-listen 127.0.0.1:$P2 $(migrate_auth) || { fail soak-start "h2 did not start"; exit 0; }
H2=$RUNDIR
RUNDIR=$H1
# view_ok DOMID: status shows one view past 0 with 1 restriction and 1 remapping, active.
view_ok() {
  xk altp2m "$1" status | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = [x for x in d["views"] if x["view"] == d["active"]]
sys.exit(0 if d["state"] and d["active"] != 0 and v and v[0]["overrides"] == 1 and v[0]["remaps"] == 1 else 1)'
}
# rounds DOMID: the last round the guest printed.
rounds() { strip_dmesg < "$(console_log "$1")" | sed -n 's/^xtest: altp2m-soak: round \([0-9]*\) ok/\1/p' | tail -1; }
# monitor_sees DOMID: a monitor on this host receives a write violation within 10 s.
monitor_sees() {
  timeout 10 "$XKVM" --rundir "$RUNDIR" altp2m-monitor "$1" --json --count 1 > "$WORK/mon.out" 2>&1
  grep -q '"access":"w"' "$WORK/mon.out"
}
# step LABEL: after a move, on host $RUNDIR: view, progress, monitor.
step() {
  local r0 r1
  r0=$(rounds "$D")
  if ! view_ok "$D"; then fail "soak-$1" "view not as before: $(xk altp2m "$D" status 2>&1)"; return 1; fi
  if ! monitor_sees "$D"; then fail "soak-$1" "no violation event: $(cat "$WORK/mon.out")"; return 1; fi
  for _ in $(seq 50); do r1=$(rounds "$D"); [ "${r1:-0}" -gt "${r0:-0}" ] && break; sleep 0.1; done
  if [ "${r1:-0}" -le "${r0:-0}" ]; then fail "soak-$1" "the guest's rounds stopped at ${r0:-none}"; return 1; fi
  pass "soak-$1"
}
make_cfg "$WORK/soak.cfg" asoak "test=altp2m-soak seconds=75" 32 1
if D=$(xk create -p "$WORK/soak.cfg") && xk altp2m "$D" mode mode=mixed && xk unpause "$D" &&
   wait_line "$D" 'xtest: altp2m-soak: round 2 ok' 60 >/dev/null; then
  step start
  if out=$(xk save "$D" "$WORK/soak.img" 2>&1) && id=$(xk restore "$WORK/soak.img" 2>&1) && [ "$id" = "$D" ]; then
    step save-restore
  else
    fail soak-save-restore "$out $id"
  fi
  ok=1
  for i in 1 2 3; do
    RUNDIR=$H1
    if ! out=$(xk migrate "$D" "127.0.0.1:$P2" 2>&1); then fail "soak-migrate-$i" "there: $out"; ok=0; break; fi
    RUNDIR=$H2; step "migrated-$i-there" || { ok=0; break; }
    if ! out=$(xk migrate "$D" "127.0.0.1:$P1" 2>&1); then fail "soak-migrate-$i" "back: $out"; ok=0; break; fi
    RUNDIR=$H1; step "migrated-$i-back" || { ok=0; break; }
  done
  RUNDIR=$H1
  if [ $ok = 1 ]; then
    if out=$(xk live-update 2>&1); then step live-update; else fail soak-live-update "$out"; fi
  fi
  # The guest's verdict (it polls its own checks until seconds=75 are up).
  res=$(wait_result "$D" altp2m-soak 90)
  if [ "$res" = "xtest: altp2m-soak: PASS" ]; then pass soak-guest; else fail soak-guest "guest said: $res"; fi
else
  fail soak-start "the soak guest did not start: $(tail -2 "$(console_log "${D:-0}")" 2>/dev/null)"
fi
destroy_all
RUNDIR=$H1

# (A live update beside, the default, gives xkvmd a new pid: the pid file names it.)
if kill -0 "$(cat "$RUNDIR/xkvmd.pid")" 2>/dev/null && xk info >/dev/null 2>&1; then
  pass xkvmd-alive
else
  fail xkvmd-alive "xkvmd is gone (pid file: $(cat "$RUNDIR/xkvmd.pid"), first pid $pid0)"
fi
