#!/usr/bin/env bash
# A guest's XENMEM_add_to_physmap must never reach another guest's memory, nor take
# xkvmd down (docs/security.md, "p2m changes are transactions").
#   exhaust-refused   - moving frames until memslots run out ends in a clean refusal,
#                       the map audit agrees with machine memory
#   live-update       - xkvmd replaced under the hostile guest (its holes and 500 placed
#                       frames rebuilt from the image): memory verified, audit agrees
#   victim-untouched  - a second domain built from the frames the hostile one gave back
#                       passes its memory test while the hostile one keeps writing a
#                       marker into everything it can still reach (and sees only that)
#   race-survives     - two vCPUs: one moves a page in and out, the other has xkvmd
#                       copy through it; xkvmd stays up, copies succeed or -EFAULT
set -u
. "$(dirname "$0")/lib.sh"
require_kvm

# debug-state's p2m audit of a domain: "ok" or what is wrong.
p2m_audit() {
  xk debug-state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p2m"]["audit"])'
}

host_start h --machine-memory 64M || { fail start "xkvmd did not start"; exit 0; }

make_cfg "$WORK/hostile.cfg" hostile "test=physmap-exhaust seconds=25" 24 1
make_cfg "$WORK/victim.cfg" victim "test=memory" 24 1
hostile=$(xk create "$WORK/hostile.cfg") || { fail exhaust-refused "create failed"; exit 0; }
if ready=$(wait_line "$hostile" 'xtest: physmap-exhaust: ready' 60); then
  audit=$(p2m_audit "$hostile")
  if [ "$audit" = ok ]; then
    pass exhaust-refused
  else
    fail exhaust-refused "p2m audit: $audit"
  fi
  if out=$(xk live-update --verify-memory 2>&1) && [ "$(p2m_audit "$hostile")" = ok ]; then
    pass live-update
  else
    fail live-update "$(echo "$out" | tail -1); audit: $(p2m_audit "$hostile")"
  fi
  victim=$(xk create "$WORK/victim.cfg")
  vres=$(wait_result "$victim" memory 60)
  hres=$(wait_result "$hostile" physmap-exhaust 60)
  if [ "$vres" = "xtest: memory: PASS" ] && [ "$hres" = "xtest: physmap-exhaust: PASS" ]; then
    pass victim-untouched
  else
    fail victim-untouched "victim: $vres; hostile: $hres"
  fi
  [ "$(p2m_audit "$hostile")" = ok ] || fail victim-untouched "p2m audit after: $(p2m_audit "$hostile")"
else
  fail exhaust-refused "guest said: $(grep -a 'xtest:' "$(console_log "$hostile")" | tail -1)"
  fail live-update "not run: the hostile guest did not get ready"
  fail victim-untouched "not run: the hostile guest did not get ready"
fi
destroy_all

make_cfg "$WORK/race.cfg" race "test=physmap-race seconds=8" 32 2
race=$(xk create "$WORK/race.cfg") || { fail race-survives "create failed"; exit 0; }
res=$(wait_result "$race" physmap-race 90)
if [ "$res" = "xtest: physmap-race: PASS" ] && kill -0 "$(cat "$RUNDIR/xkvmd.pid")" 2>/dev/null &&
   [ "$(p2m_audit "$race")" = ok ]; then
  pass race-survives
  grep -a 'physmap-race:' "$(console_log "$race")" | sed 's/^/# /'
else
  fail race-survives "guest said: $res; xkvmd $(kill -0 "$(cat "$RUNDIR/xkvmd.pid")" 2>/dev/null && echo up || echo DOWN)"
fi
