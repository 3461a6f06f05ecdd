#!/usr/bin/env bash
# Bad input for the hypervisor core: malformed configs, kernels that are not (valid)
# PVH ELF images, garbage on the control socket, guests hammering hypercalls with
# hostile arguments. Each must get a clear error; xkvmd must stay up and answer; at the
# end nothing has leaked (machine memory, domains, file descriptors, threads, RSS).
source "$(dirname "$0")/lib.sh"
require_kvm
host_start h1 || { fail start "xkvmd did not start"; exit 1; }
H1=$RUNDIR
PID=$(cat "$RUNDIR/xkvmd.pid")

# Every CLI call in a check is bounded: a hung xkvmd must fail a check, not the suite.
xkt() { timeout "${XKT_TIMEOUT:-10}" "$XKVM" --rundir "$RUNDIR" "$@"; }
answers() { XKT_TIMEOUT=5 xkt info >/dev/null 2>&1; }
nr_domains() { xkt info --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["nr_domains"])' 2>/dev/null || echo "?"; }
fd_count() { ls "/proc/$PID/fd" 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null; }
rss_detail() { grep -E '^(RssAnon|RssFile|RssShmem):' "/proc/$PID/status" 2>/dev/null | tr -s ' \t\n' ' '; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$PID/status" 2>/dev/null; }

answers || { fail start "xkvmd does not answer info"; exit 1; }
free0=$(info_field free_memory_kb)
sleep 0.2   # let xkvmd see the CLI's connections close before counting
fd0=$(fd_count); rss0=$(rss_kb); thr0=$(threads)
echo "# xkvmd pid $PID: $fd0 fds, RSS $rss0 KiB, $thr0 thread(s), $free0 KiB free"

BASE_DOMS=0   # domains that exist on purpose while a create is expected to fail
# expect_create_fail NAME CFG WORD...: `xkvm create CFG` exits non-zero, every WORD is
# in its message (case-insensitive), no domain is left and xkvmd still answers.
expect_create_fail() {
  local n=$1 cfg=$2; shift 2
  local out rc nd w missing=""
  out=$(XKT_TIMEOUT=20 xkt create "$cfg" 2>"$WORK/err"); rc=$?
  [ $rc = 0 ] && [ -n "$out" ] && xkt destroy "$out" >/dev/null 2>&1
  for w in "$@"; do grep -qiF -- "$w" "$WORK/err" || missing="$missing '$w'"; done
  nd=$(nr_domains)
  if [ $rc = 0 ]; then fail "$n" "create succeeded (domid $out)"
  elif [ $rc = 124 ]; then fail "$n" "create hung (no answer in 20 s)"
  elif [ -n "$missing" ]; then fail "$n" "message lacks$missing: $(head -c 300 "$WORK/err" | tr '\n' ' ')"
  elif ! answers; then fail "$n" "xkvmd no longer answers info"
  elif [ "$nd" != "$BASE_DOMS" ]; then fail "$n" "nr_domains is $nd, expected $BASE_DOMS"
  else pass "$n"; fi
}

# cfg FILE LINE...: a config file with exactly these lines.
cfg() { local f=$WORK/$1.cfg; shift; printf '%s\n' "$@" > "$f"; echo "$f"; }
# kcfg NAME KERNEL [MEMORY]: a config booting KERNEL.
kcfg() { cfg "$1" "name = \"$1\"" "memory = ${3:-32}" "kernel = \"$2\"" 'cmdline = "test=hello"' \
             'on_poweroff = "preserve"' 'on_crash = "preserve"'; }
K="kernel = \"$GUEST\""

# ---------------------------------------------------------------------------------
# Malformed configs through `xkvm create`.
f=$(cfg syntax 'name = "syntax"' 'memory = = 32' "$K")
expect_create_fail cfg-syntax-error "$f" "$f:2:" "syntax"
expect_create_fail cfg-memory-zero "$(cfg mem0 'name = "m"' 'memory = 0' "$K")" memory "range"
expect_create_fail cfg-memory-negative "$(cfg memneg 'name = "m"' 'memory = -5' "$K")" "memneg.cfg:2"
expect_create_fail cfg-memory-huge "$(cfg memhuge 'name = "m"' 'memory = 99999999999999' "$K")" memory "range"
expect_create_fail cfg-memory-over-max "$(cfg memmax 'name = "m"' 'memory = 2000000' "$K")" memory "range"
expect_create_fail cfg-vcpus-zero "$(cfg vc0 'name = "v"' 'vcpus = 0' "$K")" vcpus "range"
expect_create_fail cfg-vcpus-1000 "$(cfg vc1000 'name = "v"' 'vcpus = 1000' "$K")" vcpus "range"
expect_create_fail cfg-vcpus-string "$(cfg vcs 'name = "v"' 'vcpus = "two"' "$K")" vcpus "number"
expect_create_fail cfg-name-missing "$(cfg noname "$K")" name missing
expect_create_fail cfg-name-bad-chars "$(cfg badname 'name = "a/b"' "$K")" name "not allowed"
expect_create_fail cfg-name-all-digits "$(cfg digname 'name = "123"' "$K")" name "digits"
expect_create_fail cfg-kernel-missing "$(cfg nokernel 'name = "k"')" kernel missing
expect_create_fail cfg-kernel-nonexistent "$(cfg kne 'name = "k"' 'kernel = "/nonexistent/vmlinuz"')" "/nonexistent/vmlinuz" "No such file"
expect_create_fail cfg-kernel-directory "$(cfg kdir 'name = "k"' 'kernel = "/tmp"')" "/tmp" "regular file"
expect_create_fail cfg-type-pv "$(cfg pv 'name = "p"' 'type = "pv"' "$K")" type "PV"
expect_create_fail cfg-type-unknown "$(cfg tx 'name = "p"' 'type = "vmx"' "$K")" type "unknown"
expect_create_fail cfg-on-crash-unknown "$(cfg oc 'name = "c"' 'on_crash = "explode"' "$K")" on_crash "explode"
expect_create_fail cfg-cmdline-too-long "$(cfg longcl 'name = "c"' "cmdline = \"$(head -c 3000 /dev/zero | tr '\0' x)\"" "$K")" cmdline "longer"
printf 'name = "n"\nmemory = 3\0 2\n' > "$WORK/nul.cfg"; echo "$K" >> "$WORK/nul.cfg"
expect_create_fail cfg-nul-byte "$WORK/nul.cfg" "NUL"
expect_create_fail cfg-file-missing "$WORK/does-not-exist.cfg" "does-not-exist.cfg" "No such file"
expect_create_fail cfg-file-directory "$WORK" "$WORK" "regular file"
expect_create_fail cfg-not-enough-memory "$(cfg nomem 'name = "big"' 'memory = 2048' "$K")" "not enough memory"

# Duplicate names: xkvmd refuses the second domain.
make_cfg "$WORK/dup.cfg" dup "test=spin tick=1000000"
if dupid=$(xkt create "$WORK/dup.cfg"); then
  BASE_DOMS=1
  expect_create_fail cfg-duplicate-name "$WORK/dup.cfg" "already exists" "dup"
  BASE_DOMS=0
  xkt destroy "$dupid" >/dev/null
else
  fail cfg-duplicate-name "the first domain named dup was not created"
fi

# ---------------------------------------------------------------------------------
# Bad kernels. pvh.c validates the ELF header, program headers, the PHYS32_ENTRY note
# (the entry must lie in the file contents of an executable PT_LOAD) and, when loading,
# that every segment and the start_info area lie in guest RAM.
KD=$WORK/kernels; mkdir -p "$KD"
python3 -c 'import random,sys; r=random.Random(42); sys.stdout.buffer.write(bytes(r.randrange(256) for _ in range(8192)))' > "$KD/random.bin"
: > "$KD/empty.bin"
printf '#!/bin/sh\necho not a kernel\n' > "$KD/script.sh"; chmod +x "$KD/script.sh"
head -c 1000 "$GUEST" > "$KD/truncated.elf"
printf '\177ELF' > "$KD/magic-only.elf"

expect_create_fail kernel-random-bytes "$(kcfg krand "$KD/random.bin")" "$KD/random.bin" "not an ELF"
expect_create_fail kernel-empty-file "$(kcfg kempty "$KD/empty.bin")" "$KD/empty.bin" "empty"
expect_create_fail kernel-shell-script "$(kcfg kscript "$KD/script.sh")" "$KD/script.sh" "not an ELF"
expect_create_fail kernel-magic-only "$(kcfg kmagic "$KD/magic-only.elf")" "$KD/magic-only.elf" "too small"
expect_create_fail kernel-truncated "$(kcfg ktrunc "$KD/truncated.elf")" "$KD/truncated.elf" "past end of file"
true_bin=$(readlink -f "$(type -P true)")
expect_create_fail kernel-host-binary "$(kcfg ktrue "$true_bin")" "$true_bin" "ELF"

# Patched copies of the test guest (ELF64, two PT_LOADs, one PT_NOTE).
cat > "$WORK/patch.py" <<'PY'
import struct, sys
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
b = bytearray(open(src, "rb").read())
assert b[:4] == b"\x7fELF" and b[4] == 2, "the test guest is not ELF64"
phoff, = struct.unpack_from("<Q", b, 0x20); phnum, = struct.unpack_from("<H", b, 0x38)
PH = [phoff + 56 * i for i in range(phnum)]
def ph(i): return list(struct.unpack_from("<IIQQQQQQ", b, PH[i]))  # type flags off vaddr paddr filesz memsz align
def setph(i, v): struct.pack_into("<IIQQQQQQ", b, PH[i], *v)
loads = [i for i in range(phnum) if ph(i)[0] == 1]
NOTE = struct.pack("<III", 4, 4, 18) + b"Xen\0"      # XEN_ELFNOTE_PHYS32_ENTRY, 4 bytes
notes = []; i = b.find(NOTE)
while i >= 0: notes.append(i + len(NOTE)); i = b.find(NOTE, i + 1)
assert notes and len(loads) >= 2, "unexpected test guest layout"
def set_entry(v):
    for n in notes: struct.pack_into("<I", b, n, v)
def shift(delta):
    for i in range(phnum):
        v = ph(i); v[4] += delta; setph(i, v)
    set_entry(struct.unpack_from("<I", b, notes[0])[0] + delta)
if mode == "entry-outside": set_entry(0x3000000)
elif mode == "entry-in-data": set_entry(ph(loads[1])[4])
elif mode == "no-pvh-note":
    for n in notes: struct.pack_into("<I", b, n - 8, 0x7f)
elif mode == "high": shift(0x80000000 - ph(loads[0])[4])
elif mode == "fills-ram":
    hi = max(ph(i)[4] + ph(i)[6] for i in loads); shift(0x2000000 - hi)
elif mode == "above-4g": d = ph(loads[1]); d[4] = 1 << 32; setph(loads[1], d)
elif mode == "memsz-overflow": d = ph(loads[1]); d[6] = 0xfffffffffffff000; setph(loads[1], d)
elif mode == "overlap": d = ph(loads[1]); d[4] = ph(loads[0])[4]; setph(loads[1], d)
elif mode == "filesz-past-eof": d = ph(loads[0]); d[5] = d[6] = 0x10000000; setph(loads[0], d)
elif mode == "phoff-past-eof": struct.pack_into("<Q", b, 0x20, len(b) - 8)
elif mode == "phnum-huge": struct.pack_into("<H", b, 0x38, 0xffff)
elif mode == "e-entry-garbage": struct.pack_into("<Q", b, 0x18, 0xdeadbeefdeadbeef)
else: sys.exit("unknown mode " + mode)
open(dst, "wb").write(b)
PY
# bad_kernel MODE WORD...: the patched guest is refused with the kernel path and WORDs.
bad_kernel() {
  local m=$1; shift
  if ! python3 "$WORK/patch.py" "$GUEST" "$KD/$m.elf" "$m" 2>"$WORK/err"; then
    fail "kernel-$m" "cannot build the kernel: $(tail -1 "$WORK/err")"; return
  fi
  expect_create_fail "kernel-$m" "$(kcfg "k-$m" "$KD/$m.elf")" "$KD/$m.elf" "$@"
}
bad_kernel no-pvh-note "PHYS32_ENTRY" "not a PVH kernel"
bad_kernel entry-outside "0x3000000" "not inside"
bad_kernel entry-in-data "executable"
bad_kernel high "0x80000000" "not in guest memory"
bad_kernel above-4g "0x100000000" "not in guest memory"
bad_kernel fills-ram "start_info" "not in guest memory"
bad_kernel memsz-overflow "overflows"
bad_kernel overlap "overlaps"
bad_kernel filesz-past-eof "past end of file"
bad_kernel phoff-past-eof "program headers" "past end of file"
bad_kernel phnum-huge "too many program headers"

# The loader uses the PVH note, not e_entry: garbage there still boots.
python3 "$WORK/patch.py" "$GUEST" "$KD/e-entry-garbage.elf" e-entry-garbage
if id=$(xkt create "$(kcfg k-eentry "$KD/e-entry-garbage.elf")" 2>"$WORK/err"); then
  res=$(wait_result "$id" hello 30)
  [ "$res" = "xtest: hello: PASS" ] && pass kernel-e-entry-ignored || fail kernel-e-entry-ignored "guest said: $res"
  xkt destroy "$id" >/dev/null 2>&1
else
  fail kernel-e-entry-ignored "create failed: $(head -c 300 "$WORK/err")"
fi

# Tiny ELFs built here: one without any Xen note, one PVH kernel linked at 2 GiB.
cat > "$KD/tiny.S" <<'S'
        .section .note.Xen, "a", @note
        .balign 4
        .long 4, 4, 18          /* "Xen", 4-byte desc, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start
        .text
        .globl _start
        .code32
_start: hlt
        jmp _start
S
if command -v gcc >/dev/null &&
   echo 'void _start(void) { for (;;); }' | gcc -nostdlib -static -no-pie -o "$KD/nonote.elf" -x c - 2>/dev/null &&
   gcc -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-Ttext-segment=0x80000000 \
       -o "$KD/tiny-high.elf" "$KD/tiny.S" 2>/dev/null; then
  expect_create_fail kernel-elf-without-note "$(kcfg k-nonote "$KD/nonote.elf")" "$KD/nonote.elf" "not a PVH kernel"
  expect_create_fail kernel-linked-at-2g "$(kcfg k-tinyhigh "$KD/tiny-high.elf")" "$KD/tiny-high.elf" "0x80000000" "not in guest memory"
else
  skip kernel-elf-without-note "no gcc to build a tiny ELF"
  skip kernel-linked-at-2g "no gcc to build a tiny ELF"
fi
check kernels-memory-returned [ "$(info_field free_memory_kb)" = "$free0" ]

# ---------------------------------------------------------------------------------
# Garbage on the control socket. A live "victim" domain must survive all of it.
make_cfg "$WORK/victim.cfg" victim "test=spin tick=1000000"
victim=$(xkt create "$WORK/victim.cfg") || { fail socket-victim "cannot create the victim domain"; victim=1; }
mkfifo "$WORK/fifo-kernel"
SUITE=$SUITE XKVM=$XKVM RUNDIR=$RUNDIR VICTIM=$victim FIFO=$WORK/fifo-kernel \
  GUEST=$GUEST python3 - <<'PY'
import errno, json, os, random, socket, subprocess, sys, time
SUITE, XKVM, RUNDIR = os.environ["SUITE"], os.environ["XKVM"], os.environ["RUNDIR"]
VICTIM, FIFO, GUEST = int(os.environ["VICTIM"]), os.environ["FIFO"], os.environ["GUEST"]
SOCK = os.path.join(RUNDIR, "xkvmd.sock")
sys.stdout.reconfigure(line_buffering=True)

def cli(*args, timeout=5):
    try:
        r = subprocess.run([XKVM, "--rundir", RUNDIR, *args], capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %d s" % timeout

def answers():
    return cli("info")[0] == 0

def report(name, why):
    """why: None for PASS, else the reason; every check also needs xkvmd to answer."""
    if why is None and not answers():
        why = "xkvmd no longer answers info"
    if why is None:
        print("PASS: %s/%s" % (SUITE, name))
    else:
        print("FAIL: %s/%s: %s" % (SUITE, name, why))

def connect(timeout=5):
    # With a timeout, Python connects non-blocking: a full listen backlog gives EAGAIN
    # where a blocking client (like the CLI) would wait. Wait too, boundedly.
    deadline = time.time() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(SOCK)
            return s
        except BlockingIOError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.01)

def read_line(s):
    buf = b""
    try:
        while b"\n" not in buf:
            c = s.recv(65536)
            if not c:
                return buf, "closed"
            buf += c
    except socket.timeout:
        return buf, "timeout"
    except OSError as e:
        return buf, "error %s" % errno.errorcode.get(e.errno, e.errno)
    return buf.split(b"\n", 1)[0], None

def parse(line):
    try:
        o = json.loads(line)          # strict: the reply must be UTF-8 JSON
    except (ValueError, UnicodeDecodeError) as e:
        return None, "reply is not valid UTF-8 JSON (%s): %r" % (e, line[:120])
    if not isinstance(o, dict) or not isinstance(o.get("ok"), bool):
        return None, "reply is not an object with a boolean ok: %r" % line[:120]
    return o, None

def expect(name, data, errno_name, contains=(), absent=("continue",)):
    """Send DATA on a fresh connection; expect an error reply with ERRNO_NAME whose
    message contains every CONTAINS word and none of the ABSENT ones (json-c's
    internal state name "continue" is not an error message)."""
    s = connect()
    try:
        s.sendall(data)
        line, err = read_line(s)
    finally:
        s.close()
    if err:
        return report(name, "no reply (%s), got %r" % (err, line[:120]))
    o, err = parse(line)
    if err:
        return report(name, err)
    if o["ok"]:
        return report(name, "accepted: %r" % line[:160])
    msg = o.get("error", "")
    if o.get("errno") != errno_name:
        return report(name, "errno %s, expected %s (error %r)" % (o.get("errno"), errno_name, msg))
    for w in contains:
        if w.lower() not in msg.lower():
            return report(name, "error %r lacks %r" % (msg, w))
    for w in absent:
        if msg.lower().endswith(w):
            return report(name, "unclear error %r" % msg)
    report(name, None)

def req(obj):
    return json.dumps(obj).encode() + b"\n"

# Not JSON, not an object, no cmd.
r = random.Random(1)
junk = bytes(b for b in (r.randrange(256) for _ in range(4096)) if b != 10) + b"\n"
expect("sock-random-bytes", junk, "EINVAL", ["malformed"])
expect("sock-invalid-json", b"{not json\n", "EINVAL", ["malformed"])
expect("sock-incomplete-json", b'{"cmd":"info"\n', "EINVAL", ["incomplete"])
expect("sock-empty-line", b"\n", "EINVAL")
expect("sock-json-array", b"[1,2,3]\n", "EINVAL", ["object"])
expect("sock-json-string", b'"info"\n', "EINVAL", ["object"])
expect("sock-json-number", b"42\n", "EINVAL", ["object"])
expect("sock-json-null", b"null\n", "EINVAL", ["object"])
expect("sock-no-cmd", b'{"domid":1}\n', "EINVAL", ["cmd"])
expect("sock-cmd-not-string", b'{"cmd":5}\n', "EINVAL", ["cmd"])
expect("sock-cmd-object", b'{"cmd":{"cmd":"info"}}\n', "EINVAL", ["cmd"])
expect("sock-unknown-cmd", req({"cmd": "format-disk"}), "EINVAL", ["unknown command"])
expect("sock-unknown-cmd-long", req({"cmd": "x" * 5000}), "EINVAL", ["unknown command"])
expect("sock-unknown-cmd-invalid-utf8", b'{"cmd":"\xff\xfe"}\n', "EINVAL")
# Messages quote (a bounded prefix of) what the client sent: the cut must not split a
# UTF-8 sequence, or the reply is not UTF-8.
expect("sock-unknown-cmd-utf8-cut", req({"cmd": "x" * 63 + "\u00e9"}), "EINVAL", ["unknown command"])
expect("sock-deep-nesting", b"[" * 5000 + b"\n", "EINVAL", ["malformed"])
expect("sock-utf8-bom", b'\xef\xbb\xbf{"cmd":"info"}\n', "EINVAL", ["malformed"])
expect("sock-trailing-garbage", b'{"cmd":"info"} {"cmd":"list"}\n', "EINVAL")
# Embedded NUL bytes.
expect("sock-nul-first", b'\x00{"cmd":"info"}\n', "EINVAL")
expect("sock-nul-in-cmd", b'{"cmd":"in\x00fo"}\n', "EINVAL")
expect("sock-nul-after-object", b'{"cmd":"info"}\x00garbage\n', "EINVAL")
expect("sock-escaped-nul-in-cmd", b'{"cmd":"info\\u0000x"}\n', "EINVAL", ["NUL"])

# domid of every wrong type and value, aimed at the victim where it could be confused.
for cmd in ("pause", "unpause", "destroy", "console", "dmesg", "dmesg-clear", "shutdown", "sysrq"):
    expect("sock-%s-no-domid" % cmd, req({"cmd": cmd}), "EINVAL", ["domid"])
    expect("sock-%s-domid-string" % cmd, req({"cmd": cmd, "domid": str(VICTIM)}), "EINVAL", ["domid"])
for label, v in [("float", float(VICTIM)), ("bool", True), ("null", None), ("array", [VICTIM]),
                 ("object", {"domid": VICTIM})]:
    expect("sock-domid-%s" % label, req({"cmd": "destroy", "domid": v}), "EINVAL", ["domid"])
for label, v in [("negative", -1), ("zero", 0), ("99999", 99999), ("0x7ff0", 0x7ff0),
                 ("2^63", 2**63), ("2^64", 2**64), ("-2^63", -2**63),
                 ("victim+2^32", VICTIM + 2**32), ("victim+2^16", VICTIM + 2**16)]:
    expect("sock-domid-%s" % label, req({"cmd": "destroy", "domid": v}), "ESRCH", ["no domain"])
expect("sock-domid-1e400", b'{"cmd":"destroy","domid":1e400}\n', "EINVAL", ["domid"])

# create with a config of wrong types / values.
base = {"name": "bad", "kernel": GUEST}
def bad_create(label, cfg, words, errno_name="EINVAL", **extra):
    expect("sock-create-" + label, req(dict({"cmd": "create", "config": cfg}, **extra)),
           errno_name, words)
bad_create("no-config", None, ["config"])
expect("sock-create-config-missing", req({"cmd": "create"}), "EINVAL", ["config"])
bad_create("config-string", "name=bad", ["object"])
bad_create("config-array", [base], ["object"])
bad_create("name-number", dict(base, name=5), ["name"])
bad_create("name-missing", {"kernel": GUEST}, ["name"])
bad_create("name-empty", dict(base, name=""), ["name"])
bad_create("name-too-long", dict(base, name="n" * 300), ["name"])
bad_create("name-nul", dict(base, name="a\0b"), ["name", "NUL"])
bad_create("name-slash", dict(base, name="../x"), ["name"])
bad_create("kernel-number", dict(base, kernel=1), ["kernel"])
bad_create("kernel-relative", dict(base, kernel="vmlinuz"), ["kernel", "absolute"])
bad_create("kernel-nul", dict(base, kernel=GUEST + "\0x"), ["kernel", "NUL"])
bad_create("kernel-too-long", dict(base, kernel="/" + "a" * 5000), ["kernel"])
bad_create("kernel-dev-zero", dict(base, kernel="/dev/zero"), ["/dev/zero", "regular file"])
bad_create("kernel-nonexistent", dict(base, kernel="/nonexistent"), ["/nonexistent"], "ENOENT")
bad_create("memory-string", dict(base, memory_mb="32"), ["memory_mb", "integer"])
bad_create("memory-float", dict(base, memory_mb=32.0), ["memory_mb", "integer"])
bad_create("memory-negative", dict(base, memory_mb=-32), ["memory_mb"])
bad_create("memory-zero", dict(base, memory_mb=0), ["memory_mb"])
bad_create("memory-2^64-1", dict(base, memory_mb=2**64 - 1), ["memory_mb"])
bad_create("memory-2^44", dict(base, memory_mb=2**44), ["memory_mb"])
bad_create("vcpus-string", dict(base, vcpus="1"), ["vcpus"])
bad_create("vcpus-zero", dict(base, vcpus=0), ["vcpus"])
bad_create("vcpus-2^32+1", dict(base, vcpus=2**32 + 1), ["vcpus"])
bad_create("cmdline-array", dict(base, cmdline=["a"]), ["cmdline"])
bad_create("cmdline-newline", dict(base, cmdline="a\nb"), ["cmdline"])
bad_create("cmdline-too-long", dict(base, cmdline="x" * 4000), ["cmdline"])
bad_create("action-number", dict(base, on_crash=1), ["on_crash"])
bad_create("action-unknown", dict(base, on_reboot="explode"), ["on_reboot"])
bad_create("action-unknown-utf8-cut", dict(base, on_reboot="x" * 31 + "\u00e9"), ["on_reboot"])
bad_create("unknown-field", dict(base, memory=32), ["unknown field"])
bad_create("start-paused-string", base, ["start_paused"], start_paused="yes")
bad_create("duplicate-victim-name", dict(base, name="victim"), ["already exists"], "EEXIST")

# A kernel that is a FIFO: opening it must not block xkvmd (the CLI stats the kernel,
# so only a raw request reaches xkvmd with one).
s = connect(timeout=10)
s.sendall(req({"cmd": "create", "config": dict(base, name="fifo", kernel=FIFO)}))
time.sleep(0.3)
rc, _, err = cli("info", timeout=3)
report("sock-create-kernel-fifo-no-hang",
       None if rc == 0 else "xkvmd stopped answering while opening a FIFO kernel (info: %s)" % (err.strip() or rc))
try:   # unblock xkvmd if it sits in open(2) of the FIFO
    os.close(os.open(FIFO, os.O_WRONLY | os.O_NONBLOCK))
except OSError:
    pass
line, err = read_line(s); s.close()
o, perr = parse(line) if not err else (None, "no reply (%s)" % err)
report("sock-create-kernel-fifo-error",
       perr or (None if not o["ok"] and "regular file" in o.get("error", "")
                else "reply %r" % line[:160]))

# A line longer than the limit, without a newline: E2BIG, then the connection is closed.
s = connect()
try:
    s.sendall(b"A" * (1 << 20))
except OSError:
    pass                      # xkvmd may close while we are still sending
got = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        got += c
except OSError:
    pass
s.close()
report("sock-1mib-line", None if b'"E2BIG"' in got else "reply %r" % got[:160])

# A request split over several writes, with a pause in the middle: xkvmd serves others
# meanwhile and then answers the whole line.
s = connect()
s.sendall(b'{"cmd":"in')
ok_meanwhile = answers()
time.sleep(0.2)
s.sendall(b'fo"}\n')
line, err = read_line(s); s.close()
report("sock-partial-line",
       "xkvmd did not answer others meanwhile" if not ok_meanwhile
       else "no reply (%s)" % err if err else None if b'"ok":true' in line else "reply %r" % line[:160])

# Several requests in one write are answered in order.
s = connect()
s.sendall(b'{"cmd":"ping"}\n{"cmd":"nope"}\n{"cmd":"info"}\n')
replies = []
buf = b""
try:
    while buf.count(b"\n") < 3:
        c = s.recv(65536)
        if not c:
            break
        buf += c
except OSError:
    pass
s.close()
rs = [json.loads(x) for x in buf.split(b"\n") if x.strip()]
report("sock-pipelined-three",
       None if len(rs) == 3 and rs[0].get("pid") and rs[1].get("errno") == "EINVAL" and
       "nr_domains" in rs[2] else "replies %r" % buf[:200])

# Clients that send requests and close before reading the replies.
for _ in range(50):
    c = connect()
    c.sendall(b'{"cmd":"list"}\n' * 10 + b'{"cmd":"info"}\n')
    c.close()
report("sock-close-before-reply", None)

# A client that sends many requests and never reads the replies: xkvmd must keep
# serving others (it blocks if it waits forever for that client's socket to drain).
s = connect(timeout=1)
try:
    for _ in range(40):
        s.sendall(b'{"cmd":"info"}\n' * 2000)
except OSError:
    pass                      # our send buffer is full: xkvmd stopped reading us
rc, _, err = cli("info", timeout=5)
report("sock-unread-replies-no-hang",
       None if rc == 0 else "xkvmd stopped answering others (info: %s)" % (err.strip() or rc))
s.close()
time.sleep(0.3)
report("sock-unread-replies-recovers", None)

# 200 connections opened and left idle.
idle = []
try:
    for _ in range(200):
        idle.append(connect())
except OSError as e:
    print("# connect %d failed: %s" % (len(idle) + 1, e))
time.sleep(0.3)
rc, _, err = cli("list", timeout=5)
dropped = 0
for c in idle:
    c.setblocking(False)
    try:
        if c.recv(1) == b"":
            dropped += 1
    except BlockingIOError:
        pass
    except OSError:
        dropped += 1
print("# %d idle connections opened, %d closed at once by xkvmd; list meanwhile: rc %d %s"
      % (len(idle), dropped, rc, err.strip()))
report("sock-200-idle-new-client-served",
       None if rc == 0 else "a new client is refused while %d idle connections are open "
       "(xkvm list: %s)" % (len(idle) - dropped, err.strip() or rc))
for c in idle:
    c.close()
time.sleep(0.3)
rc, _, err = cli("list")
report("sock-200-idle-then-list", None if rc == 0 else "xkvm list: %s" % (err.strip() or rc))

# The victim survived everything above, unchanged.
rc, out, _ = cli("list", "--json")
doms = json.loads(out) if rc == 0 else []
doms = doms.get("domains", doms) if isinstance(doms, dict) else doms
v = [d for d in doms if d.get("domid") == VICTIM]
report("sock-victim-survives",
       None if len(doms) == 1 and v and v[0]["state"] == "running" and v[0]["name"] == "victim"
       else "domains now: %s" % out.strip().replace("\n", " ")[:300])
PY
sleep 0.5   # the last creates' vCPU threads and console logs settle
xkt destroy "$victim" >/dev/null 2>&1
check socket-no-domains-left [ "$(nr_domains)" = 0 ]
check socket-memory-returned [ "$(info_field free_memory_kb)" = "$free0" ]

# ---------------------------------------------------------------------------------
# Hostile guests: hypercall-bad with 2 vCPUs, then several at once.
run_guest_test hypercall-bad 32 2 hypercall-bad-2vcpu
ids=()
for i in 1 2 3 4; do
  vc=$(( i % 2 + 1 ))
  make_cfg "$WORK/hb$i.cfg" "hb$i" "test=hypercall-bad" 32 $vc
  ids+=("$(xkt create "$WORK/hb$i.cfg" 2>/dev/null)")
done
all_ok=1; why=""
for id in "${ids[@]}"; do
  if [ -z "$id" ]; then all_ok=0; why="$why create-failed"; continue; fi
  res=$(wait_result "$id" hypercall-bad 60)
  [ "$res" = "xtest: hypercall-bad: PASS" ] || { all_ok=0; why="$why d$id:'$res'"; }
  wait_state "$id" shutdown 10 || { all_ok=0; why="$why d$id-no-shutdown"; }
done
[ $all_ok = 1 ] && pass hypercall-bad-4-at-once || fail hypercall-bad-4-at-once "$why"
for id in "${ids[@]}"; do [ -n "$id" ] && xkt destroy "$id" >/dev/null 2>&1; done

# ---------------------------------------------------------------------------------
# The kernel file changes while xkvmd loads it (a rebuild of the guest during create):
# an error is fine, a dead xkvmd is not. Run on a second host, so a crash here does
# not hide the leak checks below.
host_start h2 || fail kernel-truncated-while-loading "second xkvmd did not start"
H2=$RUNDIR; RUNDIR=$H1
if [ -f "$H2/xkvmd.pid" ]; then
  PID2=$(cat "$H2/xkvmd.pid")
  python3 - "$KD/big.elf" <<'PY'
import struct, sys
out, size = sys.argv[1], 60 << 20   # one 60 MiB executable PT_LOAD at 1 MiB, sparse
eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
eh += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 2, 64, 0, 0)
note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x100000)
noff = 64 + 2 * 56
b = bytearray(eh + struct.pack("<IIQQQQQQ", 1, 5, 0x1000, 0x100000, 0x100000, size, size, 0x1000)
              + struct.pack("<IIQQQQQQ", 4, 4, noff, 0, 0, len(note), len(note), 4) + note)
b += bytes(0x1000 - len(b)) + b"\xf4\xeb\xfd"     # hlt; jmp .-1
with open(out, "wb") as f:
    f.write(b); f.truncate(0x1000 + size)
PY
  python3 - "$H2/xkvmd.sock" "$KD/big.elf" <<'PY'
import json, os, socket, sys, threading, time
sock, kernel = sys.argv[1], sys.argv[2]
full = os.path.getsize(kernel); stop = False
def truncator():
    fd = os.open(kernel, os.O_WRONLY)
    while not stop:
        os.ftruncate(fd, 0x2000); os.ftruncate(fd, full)
    os.close(fd)
t = threading.Thread(target=truncator); t.start()
t0 = time.time(); n = 0
try:
    while time.time() - t0 < 5:
        s = socket.socket(socket.AF_UNIX); s.settimeout(10)
        try:
            s.connect(sock)
            s.sendall(json.dumps({"cmd": "create", "config": {"name": "t%d" % n, "kernel": kernel,
                                  "memory_mb": 128}}).encode() + b"\n")
            r = s.recv(4096)
        except OSError:
            r = b""
        s.close(); n += 1
        if not r:
            break
        o = json.loads(r)
        if o.get("ok"):
            s = socket.socket(socket.AF_UNIX); s.connect(sock)
            s.sendall(json.dumps({"cmd": "destroy", "domid": o["domid"]}).encode() + b"\n")
            s.recv(4096); s.close()
finally:
    stop = True; t.join()
print("# %d creates while the kernel was truncated and re-extended" % n)
PY
  sleep 0.3
  if kill -0 "$PID2" 2>/dev/null && XKT_TIMEOUT=5 "$XKVM" --rundir "$H2" info >/dev/null 2>&1; then
    pass kernel-truncated-while-loading
  else
    fail kernel-truncated-while-loading "xkvmd (h2) died while loading a kernel file that was being truncated (SIGBUS on its mmap)"
  fi
fi

# ---------------------------------------------------------------------------------
# Nothing leaked, xkvmd still alive.
check end-no-domains [ "$(nr_domains)" = 0 ]
check end-memory-returned [ "$(info_field free_memory_kb)" = "$free0" ]
fds=""
for _ in $(seq 30); do fds=$(fd_count); [ "$fds" = "$fd0" ] && break; sleep 0.1; done
[ "$fds" = "$fd0" ] && pass end-fds-returned || {
  fail end-fds-returned "xkvmd has $fds fds, $fd0 at the start"
  ls -l "/proc/$PID/fd" | sed 's/^/# /' | tail -n +2; }
thr=$(threads)
[ "$thr" = "$thr0" ] && pass end-threads-returned || fail end-threads-returned "xkvmd has $thr threads, $thr0 at the start"
rss=$(rss_kb)
echo "# xkvmd RSS: $rss0 KiB at the start, $rss KiB at the end ($(rss_detail))"
[ -n "$rss" ] && [ $(( rss - rss0 )) -lt $(( 64 * 1024 )) ] && pass end-rss-bounded ||
  fail end-rss-bounded "RSS grew from $rss0 to ${rss:-?} KiB"
kill -0 "$PID" 2>/dev/null && answers && pass end-xkvmd-alive || fail end-xkvmd-alive "xkvmd (pid $PID) is gone or does not answer"
