#!/usr/bin/env bash
# Interop: the migration streams xkvm writes, fed to Xen's own checker, Debian's
# verify-stream-v2 (package xen-utils-4.17). One PASS/FAIL/SKIP line per check.
#   - a --compat xen-4.17 stream must be accepted;
#   - a stream with xkvm's extension records (mandatory types 0x7f584b01/02) must
#     be rejected as an unrecognised record: the spec requires a restorer to fail
#     on unknown mandatory records;
#   - a stream with an unknown optional record (bit 31): the spec lets a restorer
#     skip it; verify-stream-v2 4.17 rejects every unknown type. Either outcome
#     passes; the line says which;
#   - a corrupted compat stream must be rejected (the checker really checks);
#   - xkvm's own fd reader accepts all the streams it wrote.
set -u
ROOT=${XKVM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${XKVM_BUILD:-$ROOT/build}
SUITE=verify-stream
MAKE=$BUILD/tests/interop/make-stream
VERIFY=${XEN_VERIFY_STREAM:-/usr/lib/xen-4.17/bin/verify-stream-v2}
XEN_PY=${XEN_PYTHONPATH:-/usr/lib/xen-4.17/lib/python}
WORK=$(mktemp -d /tmp/xkvm-interop.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

pass() { echo "PASS: $SUITE/$1${2:+: $2}"; }
fail() { echo "FAIL: $SUITE/$1: $2"; }
skip() { echo "SKIP: $SUITE/$1: $2"; }

if [ ! -x "$MAKE" ]; then
  fail all "$MAKE not built"
  exit 1
fi
if [ ! -f "$VERIFY" ]; then
  skip all "$VERIFY not installed (Debian package xen-utils-4.17)"
  exit 0
fi
PY=$(head -1 "$VERIFY" | sed -n 's|^#! *\([^ ]*\).*|\1|p')
[ -x "${PY:-}" ] || PY=python3
if ! PYTHONPATH=$XEN_PY${PYTHONPATH:+:$PYTHONPATH} "$PY" -c 'import xen.migration.libxc' 2>/dev/null; then
  skip all "python module xen.migration not found under $XEN_PY"
  exit 0
fi

# verify FILE: run verify-stream-v2 on FILE (stdin); output in FILE.log; its exit code.
verify() {
  PYTHONPATH=$XEN_PY${PYTHONPATH:+:$PYTHONPATH} "$PY" "$VERIFY" -v < "$1" > "$1.log" 2>&1
}

# Build the streams.
"$MAKE" --compat xen-4.17 "$WORK/compat.bin" 2>"$WORK/make.err" || {
  fail make-compat "make-stream --compat xen-4.17: $(cat "$WORK/make.err")"; exit 1; }
"$MAKE" "$WORK/ext.bin" 2>"$WORK/make.err" || {
  fail make-ext "make-stream: $(cat "$WORK/make.err")"; exit 1; }
"$MAKE" --no-ext --optional "$WORK/optional.bin" 2>"$WORK/make.err" || {
  fail make-optional "make-stream --optional: $(cat "$WORK/make.err")"; exit 1; }

# 1. compat stream accepted.
if verify "$WORK/compat.bin"; then
  pass compat-accepted "$(grep -c '^Libxc Record' "$WORK/compat.bin.log") records + page data"
else
  fail compat-accepted "verify-stream-v2 rejected it: $(grep -E 'Error' "$WORK/compat.bin.log" | tail -1)"
  sed 's/^/    /' "$WORK/compat.bin.log" | tail -15
fi

# 2. extension records: unknown mandatory type, must be rejected by name.
verify "$WORK/ext.bin"; rc=$?
if [ $rc -eq 1 ] && grep -q 'Unrecognised record type 0x7f584b01' "$WORK/ext.bin.log"; then
  pass extensions-rejected "rejected as the spec requires: unrecognised record type 0x7f584b01 (DOMAIN_CONTEXT)"
else
  fail extensions-rejected "exit $rc: $(tail -1 "$WORK/ext.bin.log")"
fi

# 3. unknown optional record: skipped (spec) or rejected (verify-stream-v2 4.17).
verify "$WORK/optional.bin"; rc=$?
if [ $rc -eq 0 ]; then
  pass optional-record "skipped by verify-stream-v2"
elif [ $rc -eq 1 ] && grep -q 'Unrecognised record type 0x80584b7f' "$WORK/optional.bin.log"; then
  pass optional-record "rejected by verify-stream-v2 (it knows no optional types; the spec would allow skipping)"
else
  fail optional-record "exit $rc: $(tail -1 "$WORK/optional.bin.log")"
fi

# 4. negative control: set the reserved field of the first PAGE_DATA record. Layout:
# headers 0-39, STATIC_DATA_END 40-47, PAGE_DATA header at 48, count 56, reserved 60.
cp "$WORK/compat.bin" "$WORK/bad.bin"
printf '\x01' | dd of="$WORK/bad.bin" bs=1 seek=60 conv=notrunc status=none
verify "$WORK/bad.bin"; rc=$?
if [ $rc -eq 1 ] && grep -q 'Reserved bits set in PAGE_DATA' "$WORK/bad.bin.log"; then
  pass corrupted-rejected
else
  fail corrupted-rejected "exit $rc: $(tail -1 "$WORK/bad.bin.log")"
fi
if "$MAKE" --check "$WORK/bad.bin" >/dev/null 2>"$WORK/check.err"; then
  fail xkvm-reader-corrupted "xkvm's reader accepted the corrupted stream"
elif grep -q 'offset 48, record PAGE_DATA (0x1): reserved field' "$WORK/check.err"; then
  pass xkvm-reader-corrupted
else
  fail xkvm-reader-corrupted "unexpected error: $(cat "$WORK/check.err")"
fi

# 5. xkvm's own reader accepts what it wrote.
for s in compat ext optional; do
  if "$MAKE" --check "$WORK/$s.bin" > "$WORK/$s.check" 2>&1; then
    pass "xkvm-reader-$s" "$(tail -1 "$WORK/$s.check")"
  else
    fail "xkvm-reader-$s" "$(tail -1 "$WORK/$s.check")"
  fi
done
