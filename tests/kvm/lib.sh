# Shared helpers for the KVM integration tests. Source it; each test prints one
# PASS/FAIL/SKIP line per check (the format scripts/run-tests.sh counts).
set -u
ROOT=${XKVM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${XKVM_BUILD:-$ROOT/build}
XKVMD=$BUILD/src/daemon/xkvmd
XKVM=$BUILD/src/tools/xkvm
# XKVM_GUEST: the test guest from another build (an ASan build has none: -Dguest=false)
GUEST=${XKVM_GUEST:-$BUILD/guest/xkvm-guest}
SUITE=${SUITE:-$(basename "$0" .sh)}
WORK=$(mktemp -d /tmp/xkvm-kvmtest.XXXXXX)
HOSTS=()

pass() { echo "PASS: $SUITE/$1"; }
fail() { echo "FAIL: $SUITE/$1: $2"; }
skip() { echo "SKIP: $SUITE/$1: $2"; }
# check NAME COMMAND...: PASS if the command succeeds.
check() { local n=$1; shift; if "$@" >/dev/null 2>&1; then pass "$n"; else fail "$n" "failed: $*"; fi; }

# Everything here needs /dev/kvm; where it is absent, say so once and stop.
require_kvm() {
  if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
    skip all "no usable /dev/kvm on this machine (make kvm-vm runs this suite in a nested VM)"
    exit 0
  fi
  local flavour=unknown
  for m in kvm_pvm kvm_intel kvm_amd; do [ -d /sys/module/$m ] && flavour=$m; done
  echo "# KVM flavour: $flavour"
}

# The pids of a host's xkvmd and of the dom0 services it started (they outlive it).
host_pids() {
  local h=$1 f
  for f in "$h/xkvmd.pid" "$h"/services/*.pid; do
    [ -s "$f" ] && cat "$f"
  done
}

cleanup() {
  for h in "${HOSTS[@]}"; do
    for p in $(host_pids "$h"); do kill "$p" 2>/dev/null; done
  done
  sleep 0.2
  for h in "${HOSTS[@]}"; do
    for p in $(host_pids "$h"); do kill -9 "$p" 2>/dev/null; done
  done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# host_start NAME [xkvmd options]: start xkvmd in $WORK/NAME; sets RUNDIR. xkvmd
# starts the dom0 services (xkvm-xenstored, -consoled, -blkback) that are built, unless
# DOM0_SERVICES=0.
host_start() {
  local name=$1; shift
  RUNDIR=$WORK/$name
  mkdir -p "$RUNDIR"
  HOSTS+=("$RUNDIR")
  local svc=()
  [ "${DOM0_SERVICES:-1}" = 0 ] && svc=(--no-dom0-services)
  "$XKVMD" --rundir "$RUNDIR" --machine-memory 1G "${svc[@]}" "$@"
}

xk() { "$XKVM" --rundir "$RUNDIR" "$@"; }

# migrate_auth: the migration options for a host of a suite whose peers are all xkvmd
# (use it unquoted: host_start h1 --migrate-listen ADDR:PORT $(migrate_auth)).
# --migrate-insecure by default; XKVM_MIGRATE_TRANSPORT=x509 or psk: credentials made
# once in $WORK (tests/kvm/tls-creds), so the suite's migrations go over TLS 1.3.
migrate_auth() {
  local mk="$ROOT/tests/kvm/tls-creds"
  case "${XKVM_MIGRATE_TRANSPORT:-plain}" in
  x509)
    [ -s "$WORK/migrate-x509/client-cert.pem" ] || "$mk" x509 "$WORK/migrate-x509" >&2
    echo "--migrate-tls-dir $WORK/migrate-x509" ;;
  psk)
    [ -s "$WORK/migrate.psk" ] || "$mk" psk "$WORK/migrate.psk" >&2
    echo "--migrate-psk $WORK/migrate.psk" ;;
  *) echo "--migrate-insecure" ;;
  esac
}

# make_cfg FILE NAME CMDLINE [MEMORY_MB] [VCPUS] [extra xl.cfg lines...]
make_cfg() {
  local file=$1 name=$2 cmdline=$3 mem=${4:-32} vcpus=${5:-1}
  shift 5 2>/dev/null || shift $#
  {
    echo "name = \"$name\""
    echo "memory = $mem"
    echo "vcpus = $vcpus"
    echo "kernel = \"$GUEST\""
    echo "cmdline = \"$cmdline\""
    echo 'on_poweroff = "preserve"'
    echo 'on_crash = "preserve"'
    for l in "$@"; do echo "$l"; done
  } > "$file"
}

# Where the test guest's output is: it prints with console_io, which goes to the
# domain's hypervisor-console log (xkvm dmesg), one "(dN) text" line each.
console_log() { echo "$RUNDIR/dmesg-$1.log"; }
# The PV console ring's log (xkvm console), which xkvm-consoled writes.
ring_log() { echo "$RUNDIR/console-$1.log"; }
# strip_dmesg: the guest's own text of dmesg lines on stdin.
strip_dmesg() { sed 's/^(d[0-9]*) //'; }

# wait_result DOMID TEST [SECONDS]: wait for the test's result line; prints it.
wait_result() {
  local domid=$1 test=$2 secs=${3:-60} log
  log=$(console_log "$domid")
  for _ in $(seq $((secs * 10))); do
    if grep -a -q "^(d[0-9]*) xtest: $test: \(PASS\|FAIL\)" "$log" 2>/dev/null; then
      grep -a "^(d[0-9]*) xtest: $test: \(PASS\|FAIL\)" "$log" | head -1 | strip_dmesg
      return 0
    fi
    sleep 0.1
  done
  echo "timeout"
  return 1
}

# dom_field DOMID FIELD: a field of the domain in `xkvm list --json`.
dom_field() {
  xk list --json | python3 -c '
import json, sys
doms = json.load(sys.stdin)
doms = doms.get("domains", doms) if isinstance(doms, dict) else doms
for d in doms:
    if d["domid"] == int(sys.argv[1]):
        v = d.get(sys.argv[2])
        print("null" if v is None else v)
' "$1" "$2"
}

# wait_state DOMID STATE [SECONDS]
wait_state() {
  local secs=${3:-30}
  for _ in $(seq $((secs * 10))); do
    [ "$(dom_field "$1" state)" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

info_field() {
  xk info --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1"
}

# vmcall_mode_or_skip LABEL: true where KVM intercepts VMCALL (the guest's
# hypercall=vmcall mode can run); elsewhere prints the SKIP line and is false.
vmcall_mode_or_skip() {
  local tr; tr=$(info_field hypercall_transport)
  [ "$tr" = kvm-intercept ] && return 0
  local m=unknown f
  for f in kvm_pvm kvm_intel kvm_amd; do [ -d /sys/module/$f ] && m=$f; done
  skip "$1" "hypercall transport '$tr': this host's KVM ($m) cannot intercept VMCALL (make kvm-vm runs these; transport.sh checks the verdict here)"
  return 1
}

# run_guest_test TEST [MEMORY] [VCPUS] [LABEL] [EXTRA CMDLINE]: boot the guest with
# test=TEST, expect PASS and a poweroff, destroy it.
run_guest_test() {
  local t=$1 mem=${2:-32} vcpus=${3:-1} label=${4:-$1} extra=${5:-}
  make_cfg "$WORK/$label.cfg" "$label" "test=$t${extra:+ $extra}" "$mem" "$vcpus"
  local domid res
  if ! domid=$(xk create "$WORK/$label.cfg"); then
    fail "$label" "xkvm create failed"
    return
  fi
  res=$(wait_result "$domid" "$t" 120)
  if [ "$res" != "xtest: $t: PASS" ]; then
    fail "$label" "guest said: $res"
  elif ! wait_state "$domid" shutdown 10 || [ "$(dom_field "$domid" shutdown_reason)" != poweroff ]; then
    fail "$label" "guest passed but did not power off (state $(dom_field "$domid" state))"
  else
    pass "$label"
  fi
  xk destroy "$domid" >/dev/null 2>&1
}

# destroy_all: destroy every domain, straight on the control socket (fast enough to
# catch a guest that reboots in a restart loop).
destroy_all() {
  python3 - "$RUNDIR/xkvmd.sock" <<'PY'
import json, socket, sys, time
def req(o):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    s.sendall((json.dumps(o) + "\n").encode())
    r = json.loads(s.makefile().readline()); s.close(); return r
quiet = 0
for _ in range(2000):
    doms = req({"cmd": "list"})["domains"]
    quiet = 0 if doms else quiet + 1
    if quiet >= 3: break
    for d in doms: req({"cmd": "destroy", "domid": d["domid"]})
    time.sleep(0.05)
PY
}

# wait_line DOMID REGEX [SECONDS]: wait for a line of the guest's (dmesg log) matching
# REGEX (ERE, on the guest's text: "(dN) " taken off); print it. Fails at once if the
# guest has already given its result line without printing it.
wait_line() {
  local log; log=$(console_log "$1")
  for _ in $(seq $((${3:-60} * 10))); do
    if strip_dmesg < "$log" 2>/dev/null | grep -a -q -E "$2"; then
      strip_dmesg < "$log" | grep -a -E "$2" | head -1
      return 0
    fi
    grep -a -q '^(d[0-9]*) xtest: [^:]*: \(PASS\|FAIL\)' "$log" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

# xs_control RUNDIR ARG...: one CONTROL request to RUNDIR's xenstored ("log on",
# "print TEXT"); the request log and printed lines go to RUNDIR/xkvm-xenstored.log.
xs_control() {
  python3 - "$1/xenstored/socket" "${@:2}" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b"".join(a.encode() + b"\0" for a in sys.argv[2:])
s.sendall(struct.pack("<IIII", 0, 1, 0, len(body)) + body)    # XS_CONTROL
hdr = b""
while len(hdr) < 16:
    chunk = s.recv(16 - len(hdr))
    if not chunk:
        sys.exit(1)
    hdr += chunk
sys.exit(0 if struct.unpack("<IIII", hdr)[0] == 0 else 1)
PY
}

# xs_log_on RUNDIR: turn RUNDIR's xenstored request log on (waiting for xenstored).
xs_log_on() {
  for _ in $(seq 100); do xs_control "$1" log on 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# xs_log_mark RUNDIR MARK: turn RUNDIR's xenstored request log on and put MARK in it.
xs_log_mark() { xs_log_on "$1" && xs_control "$1" print "$2"; }

# device_writes RUNDIR DOMID MARK_ERE: the requests RUNDIR's xenstored logged after the
# last line matching MARK_ERE that wrote (WRITE, MKDIR, RM, SET_PERMS) a node of the
# domain's devices: its backends' directories /local/domain/0/backend/{vbd,vif,
# console}/DOMID and its frontends' /local/domain/DOMID/device (also as the guest's
# relative paths). Nothing printed: nothing written.
device_writes() {
  local log=$1/xkvm-xenstored.log d=$2
  [ -s "$log" ] || { echo "no $log"; return; }
  awk -v mark="$3" -v d="$d" '
    $0 ~ mark { n = 0; delete w; next }
    / (WRITE|MKDIR|RM|SET_PERMS) tx / {
      p = $0; sub(/^[^"]*"/, "", p); sub(/ .*/, "", p)
      if (p ~ ("^/local/domain/0/backend/(vbd|vif|console)/" d "(/|$)") ||
          p ~ ("^/local/domain/" d "/device(/|$)") ||
          ($0 ~ (" dom" d " ") && p ~ /^device(\/|$)/))
        w[n++] = $0
    }
    END { for (i = 0; i < n; i++) print w[i] }' "$log"
}

# pv_snapshot RUNDIR DOMID: what must not change when a guest moves or its xkvmd is
# replaced: its event channel ports and its xenstore nodes with their values and
# permissions (the soak's round counter aside), in path order (a restored node may sit
# elsewhere among its siblings: xenstore gives no order).
pv_snapshot() {
  local h=$1 d=$2
  RUNDIR=$h xk debug-state "$d" | python3 -c '
import json, sys
st = json.load(sys.stdin)
for p in st["events"]["ports"]:
    print("port", p["port"], p["state"], p["vcpu"], p.get("remote_domid"), p.get("remote_port"), p.get("virq"))
' || return 1
  local xs=(env XENSTORED_PATH="$h/xenstored/socket")
  { "${xs[@]}" xenstore-ls -f -p "/local/domain/$d"
    for be in $("${xs[@]}" xenstore-list /local/domain/0/backend 2>/dev/null); do
      "${xs[@]}" xenstore-ls -f -p "/local/domain/0/backend/$be/$d" 2>/dev/null
    done
  } | grep -v "/data/soak-round = " | LC_ALL=C sort | sed 's/^/xs /'
}
