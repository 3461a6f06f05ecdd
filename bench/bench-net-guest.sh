#!/usr/bin/env bash
# The guest-side network figure (docs/performance.md, "Network from the guest"): the
# test guest's netfront (test=net-bench) through xkvm-netback and its TAP device, beside
# the in-process figure and the TAP reference of bench-net from the same run. JSON lines
# on stdout:
#   {"bench":"net","figure":...}            bench-net's lines (in process; TAP write)
#   {"bench":"net-guest","figure":"tx_60",...}   the guest sending as fast as it can
#   {"bench":"net-guest","figure":"rx_1514",...} the host flooding the guest's vif
# each with packets/s, Mbit/s, the matching in-process and reference packets/s, and
# the CPU that xkvmd (the guest's vCPU threads; KVM's emulation of guest kernel code
# counts there) and xkvm-netback used during the phase, in cores.
#
#   bench/bench-net-guest.sh BUILD [SECONDS] [VCPUS]
#
# Needs root, /dev/kvm, ip, /dev/net/tun and python3. Runs inside a network namespace
# of its own (xkvmd, netback, the TAP device vifD.0 on no bridge, the flooder: an
# AF_PACKET socket on vifD.0 sending IPv4/UDP frames to the guest's MAC, 8 flows so
# the TAP's steering spreads them over the queues).
set -uo pipefail
BUILD=${1:-build}
SECS=${2:-2}
VCPUS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
log() { echo "bench-net-guest: $*" >&2; }
if [ -z "${XKVM_BENCH_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }
  [ -c /dev/kvm ] || { log "no /dev/kvm"; exit 1; }
  NS=xkvm-bng-$$-$RANDOM
  ip netns add "$NS" || { log "cannot create a network namespace"; exit 1; }
  XKVM_BENCH_NS=$NS ip netns exec "$NS" "$0" "$@"
  rc=$?
  ip netns del "$NS"
  exit $rc
fi
XKVMD=$BUILD/src/daemon/xkvmd XKVM=$BUILD/src/tools/xkvm GUEST=$BUILD/guest/xkvm-guest
W=$(mktemp -d /tmp/xkvm-bench-net-guest.XXXXXX)
H=$W/h FLOOD_PID=
cleanup() {
  [ -n "$FLOOD_PID" ] && kill "$FLOOD_PID" 2>/dev/null
  for f in "$H/xkvmd.pid" "$H"/services/*.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT
ip link set lo up
"$BUILD/bench/bench-net" --seconds 0.5 | tee "$W/inproc"
"$XKVMD" --rundir "$H" --machine-memory 256M || { log "xkvmd did not start"; exit 1; }
export XENSTORED_PATH=$H/xenstored/socket
MAC=00:16:3e:4e:42:10
cat > "$W/g.cfg" <<CFG
name = "netbench"
memory = 48
vcpus = $VCPUS
kernel = "$GUEST"
cmdline = "test=net-bench seconds=$SECS"
on_poweroff = "preserve"
vif = [ 'mac=$MAC' ]
CFG
D=$("$XKVM" --rundir "$H" create "$W/g.cfg") || { log "create failed"; exit 1; }
LOG=$H/dmesg-$D.log
cat > "$W/flood.py" <<'PY'
import socket, subprocess, sys
iface, mac, path = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
def frame(size, flow):
    ip = bytes([0x45, 0, (size - 14) >> 8, (size - 14) & 0xff, 0, 0, 0x40, 0, 64, 17, 0, 0,
                10, 0, 0, 2, 10, 0, 0, 1])
    sport = 41000 + flow
    udp = bytes([sport >> 8, sport & 0xff, 0x88, 0xb5, (size - 34) >> 8, (size - 34) & 0xff, 0, 0])
    hdr = mac + bytes([2, 0, 0, 0, 0, 2, 8, 0]) + ip + udp
    return hdr + bytes(size - len(hdr))
size = 0
while True:
    want = subprocess.run(["xenstore-read", path], capture_output=True, text=True).stdout.strip()
    if want == "done":
        break
    if not want.isdigit():
        continue
    size = int(want)
    frames = [frame(size, f) for f in range(8)]
    for _ in range(2000):
        for f in frames:
            try:
                s.send(f)
            except OSError:
                pass
PY
for _ in $(seq 100); do ip link show "vif$D.0" >/dev/null 2>&1 && break; sleep 0.1; done
python3 "$W/flood.py" "vif$D.0" "$MAC" "/local/domain/$D/data/net-bench-rx" &
FLOOD_PID=$!
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
NBPID=$(cat "$H/services/xkvm-netback.pid") XPID=$(cat "$H/xkvmd.pid")
# Sample both processes' CPU time at each phase's start and end line.
declare -A c0
for phase in tx-60 tx-1514 rx-60 rx-1514; do
  for _ in $(seq 1200); do grep -aq "net-bench: $phase start" "$LOG" 2>/dev/null && break
    grep -aq "xtest: net-bench: FAIL" "$LOG" 2>/dev/null && break; sleep 0.05; done
  c0[$phase]="$(cpu "$NBPID") $(cpu "$XPID") $(date +%s.%N)"
  for _ in $(seq 1200); do grep -aq "net-bench: $phase frames" "$LOG" 2>/dev/null && break
    grep -aq "xtest: net-bench: FAIL" "$LOG" 2>/dev/null && break; sleep 0.05; done
  echo "$phase ${c0[$phase]} $(cpu "$NBPID") $(cpu "$XPID") $(date +%s.%N)" >> "$W/cpu"
done
grep -aq "xtest: net-bench: PASS" "$LOG" || { log "guest: $(grep -a xtest "$LOG" | tail -3)"; exit 1; }
python3 - "$W/inproc" "$LOG" "$W/cpu" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
inproc = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "pps" in r:
        inproc[r["figure"]] = r
text = open(sys.argv[2], errors="replace").read()
queues = int(re.search(r"net-bench: queues (\d+)", text).group(1))
c = re.search(r"costs ns memcpy-60 (\d+) memcpy-1514 (\d+) evtchn-send (\d+)", text)
print(json.dumps({"bench": "net-guest", "figure": "guest_costs_us", "memcpy_60": int(c.group(1)) / 1e3,
                  "memcpy_1514": int(c.group(2)) / 1e3, "evtchn_send": int(c.group(3)) / 1e3}))
tck = float(sys.argv[4])
cpu = {}
for l in open(sys.argv[3]):
    p, nb0, x0, t0, nb1, x1, t1 = l.split()
    wall = float(t1) - float(t0)
    cpu[p] = ((float(nb1) - float(nb0)) / tck / wall, (float(x1) - float(x0)) / tck / wall)
for m in re.finditer(r"net-bench: (tx|rx)-(\d+) frames (\d+) bytes (\d+) ns (\d+)", text):
    d, size, n, b, ns = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
    pps = n / (ns / 1e9) if ns else 0.0
    ref = inproc.get("%s_%d" % (d, 64 if size == 60 else size), {})
    nb, xk = cpu.get("%s-%d" % (d, size), (None, None))
    print(json.dumps({"bench": "net-guest", "figure": "%s_%d" % (d, size), "bytes": size,
                      "queues": queues, "pps": round(pps), "mbit_s": round(b * 8 / ns * 1e3, 2) if ns else 0,
                      "us_per_frame": round(1e6 / pps, 1) if pps else None,
                      "in_process_pps": ref.get("pps"), "ref_pps": ref.get("ref_pps"),
                      "ref": "TAP write" if d == "tx" else "memcpy",
                      "netback_cpu": round(nb, 2) if nb is not None else None,
                      "xkvmd_cpu": round(xk, 2) if xk is not None else None}))
PY
