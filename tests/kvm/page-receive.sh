#!/usr/bin/env bash
# PAGE_DATA received in place (issue 19; docs/stream.md, "Reading page data in place";
# src/migrate/restore.c on_pages): page contents go from the stream straight into the
# guest's frames, after every pfn of the record was checked and placed. A save file of
# a test=soak guest is restored as it is and crafted:
#   cut-in-pages     cut 100 bytes into the page contents of a PAGE_DATA record:
#                    refused (truncated), no domain left
#   foreign-pfn      one data page of a record moved to a pfn the domain does not
#                    have: refused before its bytes are read, no domain left
#   unread-tail      a record whose count claims one page less than its length
#                    carries: refused by the reader (length), no domain left
#   restore          the untouched file: the guest runs on, its soak rounds (which
#                    check the memory pattern of the round before) go on passing
SUITE=page-receive
source "$(dirname "$0")/lib.sh"
require_kvm

host_start h1 --disk-root "$WORK" || { fail start "xkvmd did not start"; exit 1; }
make_cfg "$WORK/soak.cfg" soak "test=soak mb=4 cpus=1" 64 1
D=$(xk create "$WORK/soak.cfg") || { fail create "xkvm create failed"; exit 1; }
wait_line "$D" "xtest: soak: round 1 ok" 60 >/dev/null || { fail boot "no first round"; exit 1; }
sleep 0.5
xk save "$D" "$WORK/a.img" >/dev/null || { fail save "xkvm save failed"; exit 1; }

python3 - "$WORK" <<'PY' || { fail craft "could not craft the streams"; exit 1; }
import struct, sys
w = sys.argv[1]
data = open(w + "/a.img", "rb").read()
off, target = 40, None
while off + 8 <= len(data):
    t, l = struct.unpack_from("<II", data, off)
    if t == 1 and target is None:
        count = struct.unpack_from("<I", data, off + 8)[0]
        ents = struct.unpack_from("<%dQ" % count, data, off + 16)
        ndata = sum(1 for e in ents if e >> 60 == 0)
        if ndata >= 2:
            target = (off, l, count, ents)
    off += 8 + ((l + 7) & ~7)
off, l, count, ents = target
pages_at = off + 16 + 8 * count
open(w + "/cut-in-pages.img", "wb").write(data[:pages_at + 4096 + 100])
i = next(k for k, e in enumerate(ents) if e >> 60 == 0)
b = bytearray(data)
struct.pack_into("<Q", b, off + 16 + 8 * i, 0xFFFFFFF)        # far beyond 64 MiB
open(w + "/foreign-pfn.img", "wb").write(b)
b = bytearray(data)
last = max(k for k, e in enumerate(ents) if e >> 60 == 0)
struct.pack_into("<Q", b, off + 16 + 8 * last, (0xE << 60) | (ents[last] & ((1 << 52) - 1)))
open(w + "/unread-tail.img", "wb").write(b)                    # XALLOC: one page too many
PY

nothing_left() { [ -z "$(xk list 2>/dev/null | awk 'NR > 1 && $1 != 0')" ]; }
refused() {     # refused NAME WANT
  local out
  if out=$(xk restore "$WORK/$1.img" 2>&1); then
    fail "$1" "restore succeeded: $out"
  elif ! echo "$out" | grep -q -- "$2"; then
    fail "$1" "refused, but not for '$2': $out"
  elif ! nothing_left; then
    fail "$1" "a domain is left: $(xk list)"
  else
    pass "$1"
  fi
}
refused cut-in-pages "stream ends inside page contents"
refused foreign-pfn "beyond the domain's memory"
refused unread-tail "body_length"

if N=$(xk restore "$WORK/a.img" 2>&1); then
  r0=$(grep -a -c "xtest: soak: round" "$(console_log "$N")")
  ok=0
  for _ in $(seq 300); do
    [ "$(grep -a -c "xtest: soak: round" "$(console_log "$N")")" -gt "$r0" ] && { ok=1; break; }
    grep -a -q "xtest: soak: FAIL" "$(console_log "$N")" && break
    sleep 0.1
  done
  if [ $ok = 1 ] && ! grep -a -q "xtest: soak: FAIL" "$(console_log "$N")"; then
    pass restore
  else
    fail restore "no new soak round after the restore: $(tail -3 "$(console_log "$N")")"
  fi
  xk destroy "$N" >/dev/null 2>&1
else
  fail restore "xkvm restore failed: $N"
fi
