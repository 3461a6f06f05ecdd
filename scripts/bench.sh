#!/usr/bin/env bash
# Run every benchmark in bench/ and print their JSON lines (one figure per line, each
# beside a reference measured in the same run). Diagnostics go to stderr.
#   scripts/bench.sh BUILD [bench-hv options...]
# Exits non-zero if any benchmark failed; the others still run.
set -uo pipefail
BUILD=${1:-build}
shift $(( $# > 0 ? 1 : 0 ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

failed=0
# run NAME CMD...: run one benchmark; a missing binary is reported, not fatal.
run() {
  local name=$1; shift
  if [ ! -x "$1" ]; then
    echo "bench.sh: $name: $1 not built, skipped" >&2
    return
  fi
  if ! "$@"; then
    echo "bench.sh: $name failed" >&2
    failed=1
  fi
}

run bench-ctx "$BUILD/bench/bench-ctx"
run bench-lu-image "$BUILD/bench/bench-lu-image"
run bench-hv "$BUILD/bench/bench-hv" \
  --xkvmd "$BUILD/src/daemon/xkvmd" --xkvm "$BUILD/src/tools/xkvm" \
  --guest "$BUILD/guest/xkvm-guest" "$@"
run bench-xenstore "$BUILD/bench/bench-xenstore"
run bench-altp2m "$BUILD/bench/bench-altp2m"
run bench-migrate "$ROOT/bench/bench-migrate.sh" "$BUILD"
run bench-live-update "$ROOT/bench/bench-live-update.sh" "$BUILD"
[ -x "$BUILD/bench/bench-blk" ] && run bench-blk "$BUILD/bench/bench-blk" \
  --xkvmd "$BUILD/src/daemon/xkvmd" --xkvm "$BUILD/src/tools/xkvm" --guest "$BUILD/guest/xkvm-guest"
[ -x "$BUILD/bench/bench-net" ] && run bench-net "$BUILD/bench/bench-net"
# The guest-side figure; it prints bench-net's lines of its own run again as its references.
[ -x "$BUILD/bench/bench-net" ] && run bench-net-guest "$ROOT/bench/bench-net-guest.sh" "$BUILD"
exit $failed
