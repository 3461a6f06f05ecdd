#!/usr/bin/env bash
# The main job on its embedded default (`make demo`):
#  1. build, verify and dump a sample domain context image with xkvm-ctx;
#  2. start a host (xkvmd in a fresh run directory), boot the test guest from
#     examples/hello.cfg and follow its console until it powers off.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=$ROOT/$BUILD
work=$(mktemp -d /tmp/xkvm-demo.XXXXXX)
rundir=$work/host1
cleanup() {
  [ -f "$rundir/xkvmd.pid" ] && kill "$(cat "$rundir/xkvmd.pid")" 2>/dev/null || true
  # The dom0 services outlive xkvmd by design; the demo's host goes away whole.
  for p in "$rundir"/services/*.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
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
step "Start a host: xkvmd in $rundir"
run "$B/src/hv/xkvmd" --rundir "$rundir" --machine-memory 1G
run "$B/src/tools/xkvm" info

step "Boot the test guest (PVH, Xen hypercall ABI) from examples/hello.cfg"
cat examples/hello.cfg
echo "\$ $B/src/tools/xkvm create examples/hello.cfg"
domid=$("$B/src/tools/xkvm" create examples/hello.cfg)
echo "$domid"
run "$B/src/tools/xkvm" list
step "Its console, followed until the guest powers off (on_poweroff = destroy)"
run timeout 60 "$B/src/tools/xkvm" console "$domid" || true
run "$B/src/tools/xkvm" list
echo
grep -h "d$domid:" "$rundir/xkvmd.log" | sed 's/^/xkvmd.log: /'
