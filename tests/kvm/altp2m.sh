#!/usr/bin/env bash
# altp2m views (docs/altp2m.md): Xen's HVMOP_altp2m with its views enforced by KVM's
# memslots, and a monitor that hears about the accesses they stop.
#   guest-mixed       - test=altp2m in mode mixed: views, a read-only page, a remapped
#                       gfn, hostile arguments and thousands of restrictions, each with
#                       Xen's code; the forbidden write is held until the monitor answers
#   monitor-event     - xkvm altp2m-monitor --json printed that write: vCPU 0, its gfn,
#                       a write, the view, a RIP; the guest then went on (resumed once)
#   no-monitor        - the same test with no monitor: the write is done once and counted
#                       (Xen's rule when no listener is on the ring), the guest passes
#   limited           - mode limited: the guest reaches none of the toolstack's sub-ops
#   toolstack         - xkvm altp2m: views from the toolstack, hostile arguments refused,
#                       a view past the memslot budget refused, status counts
#   save-refused      - a domain with altp2m on is not saved (its views would be lost)
#                       and keeps running; live update likewise
#   xkvmd-alive       - xkvmd is still the same process at the end
set -u
. "$(dirname "$0")/lib.sh"
require_kvm

host_start h || { fail start "xkvmd did not start"; exit 0; }
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

# no-monitor
make_cfg "$WORK/nomon.cfg" nomon "test=altp2m" 32 1
if dom=$(xk create --paused "$WORK/nomon.cfg") && xk altp2m "$dom" mode mode=mixed && xk unpause "$dom"; then
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

  # save-refused: views are never dropped by a save or a live update
  t set-state on=true >/dev/null
  if out=$(xk save "$dom" "$WORK/ts.img" 2>&1) || ! echo "$out" | grep -q altp2m; then
    fail save-refused "save of a domain with altp2m on: $out"
  elif out=$(xk live-update 2>&1) || ! echo "$out" | grep -q altp2m; then
    fail save-refused "live update with altp2m on: $out"
  elif [ "$(dom_field "$dom" state)" = running ] || [ "$(dom_field "$dom" state)" = blocked ]; then
    pass save-refused
  else
    fail save-refused "domain state after: $(dom_field "$dom" state)"
  fi
else
  fail toolstack "create failed"
  fail save-refused "not run"
fi
destroy_all

if [ "$(cat "$RUNDIR/xkvmd.pid")" = "$pid0" ] && kill -0 "$pid0" 2>/dev/null; then
  pass xkvmd-alive
else
  fail xkvmd-alive "xkvmd is gone or was replaced"
fi
