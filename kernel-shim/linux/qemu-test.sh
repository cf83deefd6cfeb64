#!/usr/bin/env bash
# Boot test of h2msg.ko (kernel-shim/README.md, "A Linux module"): builds the module
# against Debian's kernel headers and a static h2msg tool (musl), packs an initramfs
# (busybox, the module, the tool, an init script), boots Debian's kernel in
# qemu-system-x86_64 under TCG (no KVM), loads the module (its self-test runs), drives
# handed-over links (attach-test.c; then `h2msg kernel-attach` against `h2msg service`),
# unloads it, and fails unless every expected line is in the console log within the time
# limit.
#
#   kernel-shim/linux/qemu-test.sh [LOG]
#
# LOG (default $CARGO_TARGET_DIR/linux-kmod/qemu-console.log) keeps the console log.
# Honours CARGO, CARGO_TARGET_DIR and H2MSG_QEMU_TIMEOUT (seconds for the boot, 300).
# Installs what a fresh Debian machine lacks with apt-get (needs root there).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

CARGO=${CARGO:-cargo}
export CARGO
TARGET_ROOT=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT=$TARGET_ROOT/linux-kmod
LOG=$(realpath -m "${1:-$OUT/qemu-console.log}")
TIMEOUT=${H2MSG_QEMU_TIMEOUT:-300}
MUSL=x86_64-unknown-linux-musl
# What the x86_64 module loader of Linux 6.1 applies (arch/x86/kernel/module.c,
# __apply_relocate_add); any other type fails the load with "Unknown rela relocation".
LOADER_RELOCS='R_X86_64_(NONE|64|32|32S|PC32|PLT32|PC64)'

step() { printf '\n--> %s\n' "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

step "packages"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ -x /bin/busybox ]] && file /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v make >/dev/null || need+=(make)
command -v file >/dev/null || need+=(file)
compgen -G '/boot/vmlinuz-*' >/dev/null || need+=(linux-image-amd64)
compgen -G '/usr/src/linux-headers-*-amd64/Makefile' >/dev/null || need+=(linux-headers-amd64)
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The newest installed kernel image that has its headers.
KVER=
for image in $(ls -v /boot/vmlinuz-* | tac); do
    v=${image#/boot/vmlinuz-}
    if [[ -f /usr/src/linux-headers-$v/Makefile && -d /lib/modules/$v/kernel ]]; then
        KVER=$v
        break
    fi
done
[[ -n "$KVER" ]] || fail "no kernel image in /boot with headers in /usr/src"
KDIR=/usr/src/linux-headers-$KVER
echo "kernel $KVER, headers $KDIR"

step "module"
start=$SECONDS
rm -rf "$OUT/module"
mkdir -p "$OUT"
make -s -C kernel-shim/linux KDIR="$KDIR" BUILD="$OUT/module" 2>&1 | tee "$OUT/module-build.log"
ko=$OUT/module/h2msg.ko
[[ -f "$ko" ]] || fail "h2msg.ko was not built"
# modpost names each symbol it cannot resolve; the build must name none.
if grep -iE 'undefined|WARNING' "$OUT/module-build.log"; then
    fail "modpost reported undefined symbols or warnings"
fi
# Relocations the loader applies: those of SHF_ALLOC sections (it skips the others).
alloc_secs=$(readelf -SW "$ko" | awk '/^ +\[ *[0-9]+\]/ { sub(/^ +\[ *[0-9]+\] +/, ""); if ($7 ~ /A/) print $1 }')
relocs=$(readelf -rW "$ko" | awk -v secs="$alloc_secs" '
    BEGIN { n = split(secs, s, "\n"); for (i = 1; i <= n; i++) alloc[s[i]] = 1 }
    /^Relocation section/ { sec = $3; gsub(/\047/, "", sec); sub(/^\.rela/, "", sec); next }
    /R_X86_64/ && (sec in alloc) { print $3 }' | sort | uniq -c | awk '{ print $2, $1 }')
echo "relocation types in allocated sections (type count):"
echo "$relocs" | sed 's/^/    /'
bad=$(echo "$relocs" | awk '{ print $1 }' | grep -vxE "$LOADER_RELOCS" || true)
[[ -z "$bad" ]] || fail "relocation types the x86_64 module loader rejects: $bad"
echo "all of them in the loader's list: ${LOADER_RELOCS}"
echo "h2msg.ko: $(stat -c %s "$ko") bytes on disk; sections (text data bss):" \
    "$(size "$ko" | awk 'NR == 2 { print $1, $2, $3 }')"
echo "module build: $((SECONDS - start)) s"

step "static h2msg ($MUSL)"
start=$SECONDS
if command -v rustup >/dev/null; then
    rustup target add "$MUSL" >/dev/null 2>&1
fi
"$CARGO" build -p h2msg-std --bin h2msg --release --target "$MUSL" --locked --quiet
tool=$TARGET_ROOT/$MUSL/release/h2msg
file "$tool" | grep -qE 'static(ally|-pie) linked' || fail "$tool is not statically linked"
echo "tool build: $((SECONDS - start)) s"

step "attach-test (the link's peer, static, with a user-space build of the shim)"
"$CARGO" rustc -p h2msg-kshim --lib --profile kshim --crate-type staticlib --features panic-handler \
    --locked --quiet
cc -std=c11 -O1 -Wall -Wextra -Werror -static -Ikernel-shim/include -Ikernel-shim/linux \
    kernel-shim/linux/attach-test.c "$TARGET_ROOT/kshim/libh2msg_kshim.a" -Wl,--gc-sections \
    -o "$OUT/attach-test"

step "initramfs"
rd=$OUT/initramfs
rm -rf "$rd"
mkdir -p "$rd"/{bin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$rd/bin/busybox"
cp "$tool" "$rd/bin/h2msg"
cp "$OUT/attach-test" "$rd/bin/attach-test"
cp "$ko" "$rd/lib/modules/"
# libcrc32c's crc32c() needs a "crc32c" shash: the generic one works on any CPU.
mods=/lib/modules/$KVER/kernel
cp "$mods/crypto/crc32c_generic.ko" "$mods/lib/libcrc32c.ko" "$rd/lib/modules/"
cp kernel-shim/linux/initramfs-init.sh "$rd/init"
# Keys for the service and the kernel-attach client, made here: RSA key generation under
# TCG would take most of the boot. Each trusts the other's key for 127.0.0.1.
keys=$rd/etc/h2msg
"$tool" -q rsainit "$keys/service"
"$tool" -q rsainit "$keys/client"
mkdir -p "$keys/service/remote" "$keys/client/remote"
cp "$keys/client/rsa.pub" "$keys/service/remote/127.0.0.1.pub"
cp "$keys/service/rsa.pub" "$keys/client/remote/127.0.0.1.pub"
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT/initramfs.cpio.gz"
echo "initramfs: $(stat -c %s "$OUT/initramfs.cpio.gz") bytes"

step "boot (TCG, limit ${TIMEOUT} s)"
start=$SECONDS
: >"$LOG"
# The init script powers off when done; oops=panic and panic=-1 turn any oops into an
# immediate exit (-no-reboot), so the log ends there and the checks below fail.
rc=0
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 512M -smp 1 \
    -kernel "/boot/vmlinuz-$KVER" -initrd "$OUT/initramfs.cpio.gz" \
    -append "console=ttyS0 loglevel=4 oops=panic panic=-1" \
    -display none -monitor none -serial "file:$LOG" -no-reboot || rc=$?
boot=$((SECONDS - start))
echo "qemu exited with $rc after $boot s; console log: $LOG"
((rc != 124)) || echo "the boot hit the time limit"

step "console log"
expected=(
    "h2msg-test: init"
    "h2msg-test: tool runs"
    "h2msg: loaded, iocom "
    "h2msg: selftest crc32c: PASS"
    "h2msg: selftest shell: PASS"
    "h2msg: selftest ping: PASS"
    "h2msg: selftest 64k: PASS"
    "h2msg: selftest wrap: PASS"
    "h2msg: selftest linkloss: PASS"
    "h2msg: selftest done: 0 failed"
    "h2msg-attach: ok: a regular file is refused with ENOTSOCK"
    "h2msg-attach: ok: a closed fd number is refused with EBADF"
    "h2msg-attach: ok: an unconnected socket is refused with ENOTCONN"
    "h2msg-attach: ok: a datagram socket is refused with EPROTOTYPE"
    "h2msg-attach: ok: a bad argument pointer is refused with EFAULT"
    "h2msg-attach: ok: a connected TCP socket is attached"
    "h2msg: link attached"
    "h2msg-attach: ok: DBG_SHELL help answered by the kernel"
    "h2msg-attach: ok: 5 LNK_PINGs answered by the kernel"
    "h2msg-attach: ok: a second attach while the link runs is refused with EBUSY"
    "h2msg-attach: ok: the kernel pings an idle peer (keepalive)"
    "h2msg-attach: ok: DBG_SHELL status answered with counters"
    "h2msg: link down: the peer closed the stream"
    "h2msg: link down: bad magic (IOQ 1 SYNC)"
    "h2msg: link ended: down kind 1, IOQ 1"
    "h2msg-attach: ok: a new link, connected without blocking, is attached after the first one ended"
    "h2msg-attach: ok: the kernel ends the stream after garbage"
    "h2msg-test: attach ok"
    "h2msg: link closed by rmmod"
    "h2msg: unloaded"
    "h2msg-test: rmmod ok"
    "h2msg-attach: ok: the stream ended when the module was unloaded"
    "h2msg-test: held link closed by rmmod"
    "h2msg-test: service listening on 127.0.0.1:9870"
    "h2msg-test: kernel-attach without the module: h2msg: kernel-attach: /dev/h2msg: no such device (ENOENT): the h2msg module is not loaded (insmod h2msg.ko)"
    "h2msg-test: insmod again ok"
    "h2msg-test: kernel-attach ok"
    "h2msg-test: second kernel-attach: h2msg: kernel-attach: /dev/h2msg: the kernel refused the socket: the kernel drives a link already (one at a time) (EBUSY): rmmod h2msg (or wait until that link ends) before attaching another"
    "h2msg-test: service status shows the kernel link's pings answered"
    "h2msg-test: rmmod with the kernel link ok"
    "h2msg-test: service logged the kernel link's close"
    "h2msg-test: service stopped"
    "h2msg-test: done"
)
# Lines that must appear exactly so often: two loads, two unloads, and rmmod closing a
# link each time (attach-test's held link, then the kernel-attach link).
counted=(
    "2 h2msg: loaded, iocom "
    "2 h2msg: link closed by rmmod"
    "2 h2msg: unloaded"
)
missing=0
for line in "${expected[@]}"; do
    if grep -qF "$line" "$LOG"; then
        echo "ok: $line"
    else
        echo "MISSING: $line"
        missing=$((missing + 1))
    fi
done
for entry in "${counted[@]}"; do
    want=${entry%% *}
    line=${entry#* }
    got=$(grep -cF "$line" "$LOG" || true)
    if ((got == want)); then
        echo "ok: ${got}x $line"
    else
        echo "COUNT: $line: $got times, not $want"
        missing=$((missing + 1))
    fi
done
for bad in "FAIL" "UNEXPECTED" "Oops" "BUG:" "Call Trace" "Kernel panic" "Unknown rela relocation" "Unknown symbol"; do
    if grep -qF "$bad" "$LOG"; then
        grep -nF "$bad" "$LOG" | sed -n 1,5p
        echo "FOUND: $bad"
        missing=$((missing + 1))
    fi
done
grep -E 'h2msg' "$LOG" | grep -vF 'h2msg-test:' | sed 's/^/    /' || true
((missing == 0)) || fail "$missing expected line(s) missing or unwanted line(s) found in $LOG"
echo "boot test passed in $boot s (console log: $LOG)"
