#!/usr/bin/env bash
# Grant table v2 (docs/hypervisor.md, "Grant tables").
#   guest             - test=gnttab-v2: set_version and its refusals (-EINVAL, -EBUSY while
#                       a grant is mapped), reserved entries converted with their pins,
#                       status frames placed and listed, copies and maps through v2 entries
#                       with GTF_reading/GTF_writing in the status frame, the way back to v1
#                       (guest/tests/gnttab_v2.c)
#   state-v2          - xkvmd's state of the held guest: version 2, status frame placed
#   dom0-map          - a dom0 service (xkvm-dom0-probe) maps the held guest's v2 grant
#                       ref 20, reads and writes it; xkvmd's state shows GTF_reading|writing
#                       (from the status frame) while mapped; the guest checks the write
#   save-restore      - the guest in v2, saved and restored: its version and status frame
#                       come back (checked by xkvmd's state)
#   migrate           - then live-migrated to a second host
#   live-update       - then the destination's xkvmd live-updated; the guest resumes and
#                       checks its v2 table and status frame, copies and maps again
set -u
. "$(dirname "$0")/lib.sh"
require_kvm
BASE=$((20000 + RANDOM % 20000))

host_start h1 --migrate-listen 127.0.0.1:$BASE $(migrate_auth) || { fail start "h1 did not start"; exit 0; }
H1=$RUNDIR
host_start h2 --migrate-listen 127.0.0.1:$((BASE + 1)) $(migrate_auth) || { fail start "h2 did not start"; exit 0; }
H2=$RUNDIR
on() { RUNDIR=$1; }
xs() { XENSTORED_PATH="$RUNDIR/xenstored/socket" "$@"; }
# version, then the status frames' gfns (null: not placed), from xkvmd's state.
gt_state() {
  xk debug-state "$1" | python3 -c '
import json, sys
gt = json.load(sys.stdin)["grant_table"]
print(gt["version"], " ".join(str(f["gfn"]) for f in gt.get("status_frames", [])))'
}

on "$H1"
make_cfg "$WORK/g.cfg" g "test=gnttab-v2"
D=$(xk create "$WORK/g.cfg") || { fail guest "create failed"; exit 0; }
res=$(wait_result "$D" gnttab-v2 60)
if [ "$res" = "xtest: gnttab-v2: PASS" ]; then
  pass guest
  grep -a 'xkvm-guest: gnttab-v2:' "$(console_log "$D")" | strip_dmesg | sed 's/^/# /'
else
  fail guest "guest said: $res; $(grep -a 'gnttab-v2' "$(console_log "$D")" | tail -2 | tr '\n' '|')"
fi
xk destroy "$D" >/dev/null 2>&1

make_cfg "$WORK/h.cfg" h "test=gnttab-v2 hold=1"
D=$(xk create "$WORK/h.cfg") || { fail state-v2 "create failed"; exit 0; }
if ! wait_line "$D" "xtest: gnttab-v2: hold" 60 >/dev/null; then
  fail state-v2 "the guest did not get to v2: $(grep -a 'gnttab-v2' "$(console_log "$D")" | tail -2 | tr '\n' '|')"
  exit 0
fi
st0=$(gt_state "$D")
case "$st0" in
  "2 "[0-9]*) pass state-v2; echo "# version and status frame gfn: $st0" ;;
  *) fail state-v2 "state '$st0' (want version 2 and a placed status frame)" ;;
esac
PROBE=$BUILD/src/dom0/xkvm-dom0-probe
"$PROBE" --rundir "$RUNDIR" map-grant "$D" 20 rw expect "gnttab-v2 to dom0" write dom0-was-here \
  touch "$WORK/mapped" wait "$WORK/check" unmap > "$WORK/probe.out" 2>&1 &
for _ in $(seq 100); do [ -e "$WORK/mapped" ] && break; sleep 0.1; done
act=$(xk debug-state "$D" | python3 -c '
import json, sys
print(" ".join("%d:%d:%d" % (a["ref"], a["flags"], a["domid"]) for a in json.load(sys.stdin)["grant_table"]["active"]))')
touch "$WORK/check"
wait
# GTF_reading 8 | GTF_writing 16, pinned by domid 0; the probe succeeded in every step.
if [ -e "$WORK/mapped" ] && [ "$act" = "20:24:0" ] && grep -q "mapped d$D ref" "$WORK/probe.out" &&
   ! grep -q "failed\|error" "$WORK/probe.out"; then
  pass dom0-map
else
  fail dom0-map "active entries '$act' (want 20:24:0); probe: $(tr '\n' '|' < "$WORK/probe.out")"
fi
if xk save "$D" "$WORK/h.img" >/dev/null 2>&1 && xk restore "$WORK/h.img" "$WORK/h.cfg" >/dev/null 2>&1 &&
   [ "$(gt_state "$D")" = "$st0" ]; then
  pass save-restore
else
  fail save-restore "state after restore '$(gt_state "$D" 2>&1)', before '$st0'"
fi
if out=$(xk migrate "$D" 127.0.0.1:$((BASE + 1)) 2>&1); then
  on "$H2"
  check migrate [ "$(gt_state "$D")" = "$st0" ]
  if out=$(xk live-update 2>&1) && [ "$(gt_state "$D")" = "$st0" ]; then
    xs xenstore-write "/local/domain/$D/data/gntv2-go" 1
    res=$(wait_result "$D" gnttab-v2 60)
    if [ "$res" = "xtest: gnttab-v2: PASS" ]; then
      pass live-update
      grep -a 'after' "$(console_log "$D")" | strip_dmesg | sed 's/^/# /' | tail -3
    else
      fail live-update "guest said: $res; $(grep -a 'gnttab-v2' "$(console_log "$D")" | tail -2 | tr '\n' '|')"
    fi
  else
    fail live-update "live update: $(echo "$out" | tail -1); state $(gt_state "$D" 2>&1)"
  fi
else
  fail migrate "migration failed: $(echo "$out" | tail -1)"
  fail live-update "not run"
fi
