#!/usr/bin/env bash
# The main job on its embedded default (`make demo`):
#  1. build, verify and dump a sample domain context image with xkvm-ctx;
#  2. start a host (xkvmd in a fresh run directory), boot the test guest from
#     examples/hello.cfg and follow its console until it powers off;
#  3. start a second host, boot a guest that keeps busy (test=soak: memory, block
#     I/O, xenstore, clock), live-migrate it there and back, show the downtime and
#     total time of each move;
#  4. live-update that host's xkvmd under the running guest (same process, memory left
#     in place), show the downtime and its phases, and the guest's own verdict.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=$ROOT/$BUILD
work=$(mktemp -d /tmp/xkvm-demo.XXXXXX)
rundir=$work/host1
rundir2=$work/host2
cleanup() {
  for h in "$rundir" "$rundir2"; do
    [ -f "$h/xkvmd.pid" ] && kill "$(cat "$h/xkvmd.pid")" 2>/dev/null || true
    # The dom0 services outlive xkvmd by design; the demo's hosts go away whole.
    for p in "$h"/services/*.pid; do
      [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Domain context records (seed 004): build, verify and dump a sample image"
run "$B/src/tools/xkvm-ctx" sample "$work/sample.ctx"
run "$B/src/tools/xkvm-ctx" verify "$work/sample.ctx"
run "$B/src/tools/xkvm-ctx" dump "$work/sample.ctx"

if [ ! -c /dev/kvm ]; then
  echo
  echo "demo: no /dev/kvm on this machine: skipping the guest part"
  exit 0
fi

export XKVM_RUNDIR=$rundir
port1=$((20000 + RANDOM % 20000)); port2=$((port1 + 1))
step "Start a host: xkvmd in $rundir"
# Migrations between the two hosts go over TLS 1.3 with a pre-shared key both share
# (GnuTLS's psktool makes one: identity:hexkey); x509: --migrate-tls-dir DIR.
(umask 077; psktool -u demo -p "$work/migrate.psk" >/dev/null)
run "$B/src/daemon/xkvmd" --rundir "$rundir" --machine-memory 1G --migrate-listen 127.0.0.1:$port1 \
    --migrate-psk "$work/migrate.psk" --disk-root "$work"
run "$B/src/tools/xkvm" info

step "Boot the test guest (PVH, Xen hypercall ABI) from examples/hello.cfg"
cat examples/hello.cfg
echo "\$ $B/src/tools/xkvm create examples/hello.cfg"
domid=$("$B/src/tools/xkvm" create examples/hello.cfg)
echo "$domid"
run "$B/src/tools/xkvm" list
step "What it printed (console_io: its hypervisor-console log, as xl dmesg shows it), once it powered off (on_poweroff = destroy)"
for _ in $(seq 300); do "$B/src/tools/xkvm" list | grep -q "^hello " || break; sleep 0.1; done
run "$B/src/tools/xkvm" dmesg "$domid"
run "$B/src/tools/xkvm" list
echo
grep -h "d$domid:" "$rundir/xkvmd.log" | sed 's/^/xkvmd.log: /'

step "Live migration: a second host, and a guest that keeps busy (test=soak)"
# A stream names no host path on trust: the destination allows disks under $work.
run "$B/src/daemon/xkvmd" --rundir "$rundir2" --machine-memory 1G --migrate-listen 127.0.0.1:$port2 \
    --migrate-psk "$work/migrate.psk" --disk-root "$work"
truncate -s 16M "$work/disk.img"
sed -e "s|@DISK@|$work/disk.img|" -e "s|@GUEST@|$B/guest/xkvm-guest|" examples/soak.cfg.in > "$work/soak.cfg"
cat "$work/soak.cfg"
domid=$("$B/src/tools/xkvm" create "$work/soak.cfg")
echo "\$ xkvm create $work/soak.cfg"; echo "$domid"
for _ in $(seq 100); do grep -q "round 1 ok" "$rundir/dmesg-$domid.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
tail -n 2 "$rundir/dmesg-$domid.log"
report() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  over %s: downtime %.2f ms, total %.1f ms, %d pre-copy iteration(s), %.1f MB sent" % (r.get("transport", "?"), r["downtime_ms"], r["total_ms"], r["iterations"], r["bytes"] / 1e6))' "$1"
}
step "Migrate it to the second host (memory, block I/O, xenstore, events in flight)"
run "$B/src/tools/xkvm" migrate "$domid" 127.0.0.1:$port2 --report "$work/there.json"
report "$work/there.json"
run "$B/src/tools/xkvm" --rundir "$rundir2" list
for _ in $(seq 100); do grep -q "round" "$rundir2/dmesg-$domid.log" 2>/dev/null && break; sleep 0.1; done
echo "host2 console:"; tail -n 1 "$rundir2/dmesg-$domid.log"
step "And back"
run "$B/src/tools/xkvm" --rundir "$rundir2" migrate "$domid" 127.0.0.1:$port1 --report "$work/back.json"
report "$work/back.json"
run "$B/src/tools/xkvm" list
sleep 2
step "Live update: replace this host's xkvmd while the guest runs (memory stays in place)"
lastround() { grep -a -o "round [0-9]* ok" "$rundir/dmesg-$domid.log" | tail -1; }
echo "xkvmd pid $(cat "$rundir/xkvmd.pid"), guest at $(lastround)"
run "$B/src/tools/xkvm" live-update --verify-memory
sleep 3
echo "xkvmd pid $(cat "$rundir/xkvmd.pid") (the same process, a new binary), guest at $(lastround)"
step "The guest's verdict: it checks its memory, disk, xenstore and clock every round"
XENSTORED_PATH=$rundir/xenstored/socket xenstore-write "/local/domain/$domid/data/soak-ctl" go
sleep 0.5
XENSTORED_PATH=$rundir/xenstored/socket xenstore-write "/local/domain/$domid/data/soak-stop" 1
for _ in $(seq 300); do grep -q "xtest: soak: \(PASS\|FAIL\)" "$rundir/dmesg-$domid.log" && break; sleep 0.1; done
tail -n 3 "$rundir/dmesg-$domid.log"
