#!/usr/bin/env bash
# Domain lifecycle: four domains at once, pause/unpause of a busy guest (1 and 4
# vCPUs), destroy, shutdown reasons and on_* actions, memory returned.
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
free0=$(info_field free_memory_kb)

log_size() { stat -c %s "$(console_log "$1")"; }
ticks() { grep -a -c "xtest: spin: tick" "$(console_log "$1")"; }

# Four spinning domains at once, one of them with 4 vCPUs.
ids=()
for i in 1 2 3 4; do
  vc=1; [ $i = 4 ] && vc=4
  make_cfg "$WORK/spin$i.cfg" "spin$i" "test=spin tick=20000" 32 $vc
  ids+=("$(xk create "$WORK/spin$i.cfg")")
done
sleep 3
all_ticking=1
for id in "${ids[@]}"; do [ "$(ticks "$id")" -ge 1 ] || all_ticking=0; done
check four-domains-run [ $all_ticking = 1 ]
check four-domains-listed [ "$(info_field nr_domains)" = 4 ]

# pause_check LABEL DOMID: paused guest makes no progress; unpaused it resumes.
pause_check() {
  local label=$1 id=$2
  if ! xk pause "$id"; then fail "$label" "pause failed"; return; fi
  local s1; s1=$(log_size "$id")
  local st; st=$(dom_field "$id" state)
  sleep 1.5
  local s2; s2=$(log_size "$id")
  xk unpause "$id" || { fail "$label" "unpause failed"; return; }
  local grew=0
  for _ in $(seq 50); do [ "$(log_size "$id")" -gt "$s2" ] && { grew=1; break; }; sleep 0.1; done
  if [ "$st" != paused ]; then fail "$label" "state while paused: $st"
  elif [ "$s1" != "$s2" ]; then fail "$label" "console grew while paused ($s1 -> $s2)"
  elif [ $grew != 1 ]; then fail "$label" "no progress after unpause"
  else pass "$label"; fi
}
pause_check pause-unpause-1vcpu "${ids[0]}"
pause_check pause-unpause-4vcpu "${ids[3]}"

# Pause is counted like Xen's: two pauses need two unpauses.
xk pause "${ids[1]}"; xk pause "${ids[1]}"; xk unpause "${ids[1]}"
check pause-counted [ "$(dom_field "${ids[1]}" state)" = paused ]
xk unpause "${ids[1]}"
check pause-counted-released [ "$(dom_field "${ids[1]}" state)" = running ]
check unpause-running-refused bash -c "! $XKVM --rundir $RUNDIR unpause ${ids[1]}"

for id in "${ids[@]}"; do xk destroy "$id"; done
check destroy-all [ "$(info_field nr_domains)" = 0 ]
check memory-returned-after-destroy [ "$(info_field free_memory_kb)" = "$free0" ]

# Shutdown reasons are visible in list; on_poweroff=destroy removes the domain.
make_cfg "$WORK/crash.cfg" crash "test=crash"
id=$(xk create "$WORK/crash.cfg")
check crash-reason bash -c "source $ROOT/tests/kvm/lib.sh >/dev/null; RUNDIR=$RUNDIR; wait_state $id shutdown 30 && [ \"\$(dom_field $id shutdown_reason)\" = crash ]"
xk list | grep -q crash && pass crash-in-list || fail crash-in-list "crash not shown by xkvm list"
xk destroy "$id"

make_cfg "$WORK/rb.cfg" rb "test=reboot" 32 1 'on_reboot = "preserve"'
id=$(xk create "$WORK/rb.cfg")
wait_state "$id" shutdown 30
check reboot-reason [ "$(dom_field "$id" shutdown_reason)" = reboot ]
xk destroy "$id"

make_cfg "$WORK/rs.cfg" rs "test=reboot" 32 1 'on_reboot = "restart"'
id=$(xk create "$WORK/rs.cfg")
restarted=0
for _ in $(seq 100); do
  n=$(xk list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("domains",d) if isinstance(d,dict) else d; print(" ".join(str(x["domid"]) for x in d if x["name"]=="rs"))')
  for other in $n; do [ "$other" != "$id" ] && restarted=$other; done
  [ "$restarted" != 0 ] && break
  sleep 0.1
done
check reboot-restarts-with-new-domid [ "$restarted" != 0 ]
# The restarted guest reboots again at once: destroy until none is left.
destroy_all
check restart-loop-destroyed [ "$(info_field nr_domains)" = 0 ]

cat > "$WORK/off.cfg" <<CFG
name = "off"
memory = 32
kernel = "$GUEST"
cmdline = "test=hello"
CFG
id=$(xk create "$WORK/off.cfg")
gone=0
for _ in $(seq 100); do
  xk list --json | grep -q "\"domid\": *$id[,}]" || { gone=1; break; }
  sleep 0.1
done
check poweroff-destroys [ $gone = 1 ]
check memory-returned-at-end [ "$(info_field free_memory_kb)" = "$free0" ]
