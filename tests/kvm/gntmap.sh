#!/usr/bin/env bash
# Grant mapping between guests (docs/hypervisor.md, "Grant mapping between guests";
# guest/tests/gntmap.c). The granter grants to the mapper's domid before the mapper
# exists: xkvmd hands domids out in sequence from 1 on a fresh xkvmd, and each is checked.
#   pass-data        - the mapper maps a writable and a read-only grant, reads the
#                      granter's data, writes back; the granter sees the write; the hostile
#                      maps and unmaps each answer Xen's GNTST code (the guests check)
#   flags-while-mapped - GTF_reading/GTF_writing set in the granter's entries and the
#                      mapper's maptrack holds both while mapped; p2m audits agree
#   save-refused     - a domain holding a mapping is not saved (the error says why)
#   migrate-refused  - nor migrated: nothing arrives at the destination, the guest runs
#                      on at its source (and passes)
#   live-update-refused - nor live-updated; both work again after the unmap
#   granter-dies     - the granter destroyed while mapped: the mapper still reads both
#                      pages, unmaps, and every frame is back once both are gone
#   mapper-dies      - the mapper destroyed while mapped: the granter's entries are
#                      released (the granter checks) and every frame is back
#   readonly-enforced - the mapper writes its read-only mapping (in its RAM): it is
#                      crashed, and the granter's page is unchanged (the guest checks
#                      that a write to one above RAM is dropped, in pass-data)
set -u
. "$(dirname "$0")/lib.sh"
require_kvm

BASE=$((20000 + RANDOM % 20000))
host_start h2 --migrate-listen 127.0.0.1:$((BASE + 1)) $(migrate_auth) || { fail start "h2 did not start"; exit 0; }
H2=$RUNDIR
host_start h1 --migrate-listen 127.0.0.1:$BASE $(migrate_auth) || { fail start "h1 did not start"; exit 0; }
xs() { XENSTORED_PATH="$RUNDIR/xenstored/socket" "$@"; }
go() { xs xenstore-write "/local/domain/$1/data/gntmap-go" 1; }
state() { xk debug-state "$1"; }
audit() { state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p2m"]["audit"])'; }
refs_of() {   # DOMID: "rw ro other" from the granter's line
  local l; l=$(wait_line "$1" 'xtest: gntmap: refs rw=[0-9]+ ro=[0-9]+ other=[0-9]+' 60) || return 1
  echo "$l" | sed -E 's/.*rw=([0-9]+) ro=([0-9]+) other=([0-9]+).*/\1 \2 \3/'
}

# pair G M HOLD [EXTRA]: a granter G (granting to M and, as "other", to M+1) and a mapper M.
pair() {
  local g=$1 m=$2 hold=$3 extra=${4:-} refs
  make_cfg "$WORK/g$g.cfg" "granter$g" "test=gntmap role=granter peer=$m other=$((m + 1))" 32 1
  [ "$(xk create "$WORK/g$g.cfg")" = "$g" ] || return 1
  refs=$(refs_of "$g") || return 1
  set -- $refs
  RW=$1; RO=$2
  make_cfg "$WORK/m$m.cfg" "mapper$m" \
    "test=gntmap role=mapper peer=$g rw=$1 ro=$2 other=$3 hold=$hold $extra" 32 1
  [ "$(xk create "$WORK/m$m.cfg")" = "$m" ] || return 1
  wait_line "$m" 'xtest: gntmap: mapped' 60 >/dev/null
}

free0=$(info_field free_memory_kb)
# free_now: free machine memory once it is back to free0, or after 10 s what it is. A
# dom0 service lets go of a destroyed guest's ring pages when it hears of the
# destruction, a moment after `xkvm destroy` returns.
free_now() {
  local f
  for _ in $(seq 100); do
    f=$(info_field free_memory_kb)
    [ "$f" = "$free0" ] && break
    sleep 0.1
  done
  echo "$f"
}

# ---- pass-data, flags-while-mapped, save-refused, live-update-refused ----
if pair 1 2 1; then
  flags=$(state 1 | python3 -c '
import json, sys
gt = json.load(sys.stdin)["grant_table"]
print(" ".join("%d:%d:%d" % (a["ref"], a["flags"], a["domid"]) for a in gt["active"]))')
  mt=$(state 2 | python3 -c '
import json, sys
print(" ".join("%d:%s" % (m["domid"], m["readonly"]) for m in json.load(sys.stdin)["grant_table"]["maptrack"]))')
  # GTF_permit_access 1, GTF_readonly 4, GTF_reading 8, GTF_writing 16
  if [ "$flags" = "$RW:25:2 $RO:13:2" ] && [ "$mt" = "1:False 1:True" ] &&
     [ "$(audit 2)" = ok ] && [ "$(audit 1)" = ok ]; then
    pass flags-while-mapped
  else
    fail flags-while-mapped "granter's active entries '$flags' (want '$RW:25:2 $RO:13:2'), mapper's maptrack '$mt', audits $(audit 1) $(audit 2)"
  fi
  if out=$(xk save 2 "$WORK/m.save" 2>&1); then
    fail save-refused "saved a domain holding grant mappings"
  elif echo "$out" | grep -q "maps 2 grant"; then
    pass save-refused
    echo "# $out" | tail -1
  else
    fail save-refused "unexpected error: $out"
  fi
  if out=$(xk migrate 2 127.0.0.1:$((BASE + 1)) 2>&1); then
    fail migrate-refused "migrated a domain holding grant mappings"
  elif echo "$out" | grep -q "maps 2 grant" &&
       [ "$(RUNDIR=$H2 info_field nr_domains)" = 0 ] && [ "$(dom_field 2 state)" != null ]; then
    pass migrate-refused
  else
    fail migrate-refused "error: $out; domains at the destination: $(RUNDIR=$H2 info_field nr_domains); state $(dom_field 2 state)"
  fi
  if out=$(xk live-update --binary "$XKVMD" 2>&1); then
    fail live-update-refused "live update went ahead with grant mappings"
  elif echo "$out" | grep -q "maps 2 grant"; then
    lu_ok=1
  else
    fail live-update-refused "unexpected error: $out"
    lu_ok=0
  fi
  go 2
  rm_res=$(wait_result 2 gntmap 60)
  go 1
  g_res=$(wait_result 1 gntmap 60)
  if [ "$rm_res" = "xtest: gntmap: PASS" ] && [ "$g_res" = "xtest: gntmap: PASS" ]; then
    pass pass-data
    grep -a 'xkvm-guest: gntmap:' "$(console_log 2)" | strip_dmesg | sed 's/^/# /'
  else
    fail pass-data "mapper: $rm_res; granter: $g_res"
  fi
  left=$(state 1 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["grant_table"]["active"]))')
  if [ "${lu_ok:-0}" = 1 ] && [ "$left" = 0 ] && out=$(xk live-update --binary "$XKVMD" 2>&1); then
    pass live-update-refused
  else
    fail live-update-refused "after the unmap: $left active entries; live update: $out"
  fi
else
  fail pass-data "the pair did not get to the mapping: granter $(tail -1 "$(console_log 1)"), mapper $(tail -1 "$(console_log 2)" 2>/dev/null)"
fi
xk destroy 2 >/dev/null 2>&1; xk destroy 1 >/dev/null 2>&1

# ---- granter-dies ----
if pair 3 4 1; then
  xk destroy 3 >/dev/null 2>&1
  go 4
  res=$(wait_result 4 gntmap 60)
  xk destroy 4 >/dev/null 2>&1
  free1=$(free_now)
  if [ "$res" = "xtest: gntmap: PASS" ] && grep -aq "still right after the hold" "$(console_log 4)" &&
     [ "$free1" = "$free0" ]; then
    pass granter-dies
  else
    fail granter-dies "mapper: $res; free machine memory $free0 -> $free1 KiB"
  fi
else
  fail granter-dies "the pair did not get to the mapping"
fi
xk destroy 4 >/dev/null 2>&1; xk destroy 3 >/dev/null 2>&1

# ---- mapper-dies ----
if pair 5 6 1; then
  xk destroy 6 >/dev/null 2>&1
  go 5
  res=$(wait_result 5 gntmap 60)
  xk destroy 5 >/dev/null 2>&1
  free1=$(free_now)
  if [ "$res" = "xtest: gntmap: PASS" ] && [ "$free1" = "$free0" ]; then
    pass mapper-dies
  else
    fail mapper-dies "granter: $res; free machine memory $free0 -> $free1 KiB"
  fi
else
  fail mapper-dies "the pair did not get to the mapping"
fi

# ---- readonly-enforced ----
if pair 7 8 0 write_ro=1; then
  wait_line 8 'xtest: gntmap: writing the read-only mapping' 30 >/dev/null
  for _ in $(seq 100); do [ "$(dom_field 8 crash_reason)" != null ] && break; sleep 0.1; done
  why=$(dom_field 8 crash_reason)
  res=$(grep -a "xtest: gntmap: \(PASS\|FAIL\)" "$(console_log 8)" | strip_dmesg)
  xk destroy 8 >/dev/null 2>&1
  go 7
  gres=$(wait_result 7 gntmap 60)
  if [ "$why" != null ] && [ -z "$res" ] && [ "$gres" = "xtest: gntmap: PASS" ]; then
    pass readonly-enforced
    echo "# crash reason: $why"
  else
    fail readonly-enforced "mapper: crash reason '$why', result '$res'; granter: $gres"
  fi
else
  fail readonly-enforced "the pair did not get to the mapping"
fi
destroy_all
