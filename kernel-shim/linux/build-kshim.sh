#!/usr/bin/env bash
# Builds the h2msg-kshim object a Linux x86_64 module links: kernel-shim/linux/README in
# kernel-shim/README.md ("A Linux module") says why each flag is there.
#
#   build-kshim.sh OUT.o
#
# Honours CARGO (default cargo) and CARGO_TARGET_DIR (default target). Uses the toolchain
# cargo runs with RUSTC_BOOTSTRAP=1 for the -Z flags, as the Linux kernel's own Rust build
# does; needs that toolchain's rust-src (added with rustup when missing).
set -euo pipefail
out=${1:?usage: build-kshim.sh OUT.o}
cd "$(dirname "$0")/../.."

CARGO=${CARGO:-cargo}
TARGET=x86_64-unknown-none
# Its own directory: other RUSTFLAGS would otherwise rebuild the workspace's target dir.
TARGET_DIR=${CARGO_TARGET_DIR:-target}/linux-kmod
HEADER=kernel-shim/include/h2msg.h

# x86_64-unknown-none already is: soft-float (no SSE/AVX: the kernel saves no FPU state for
# kernel code), no red zone (interrupts push onto the kernel stack below %rsp), kernel code
# model. The flags add:
#   relocation-model=static  absolute addressing, no GOT: a module has no GOT;
#   code-model=kernel        stated, not left to the target: -2 GiB addresses, so the
#                            sign-extended R_X86_64_32S the module loader takes are enough;
#   -Z plt=yes + build-std   direct calls (PLT32) instead of calls through the GOT
#                            (GOTPCREL, which the x86_64 module loader rejects); the
#                            prebuilt core is PIC and calls memcpy through the GOT, so core
#                            and compiler_builtins are rebuilt with these flags;
#   retpoline-external-thunk indirect calls (the kernel-ops table) through the kernel's
#                            __x86_indirect_thunk_*, like the kernel's C (CONFIG_RETPOLINE);
#                            LLVM also emits no jump tables then;
#   function-return=thunk-extern  returns through __x86_return_thunk (CONFIG_RETHUNK);
#   force-frame-pointers     readable oops traces: objtool makes no ORC data for this object;
#   force-unwind-tables=no   no .eh_frame: panic=abort, and the kernel does not use it.
RUSTFLAGS="-C relocation-model=static -C code-model=kernel -C force-frame-pointers=yes"
RUSTFLAGS+=" -C force-unwind-tables=no -Z plt=yes -Z retpoline-external-thunk"
RUSTFLAGS+=" -Z function-return=thunk-extern"
export RUSTFLAGS RUSTC_BOOTSTRAP=1

# build-std compiles core from the toolchain's sources (a no-op when they are there).
if command -v rustup >/dev/null; then
    rustup component add rust-src 2>/dev/null
fi

"$CARGO" rustc -p h2msg-kshim --lib --profile kshim --target "$TARGET" --crate-type staticlib \
    --features panic-handler --locked --quiet --target-dir "$TARGET_DIR" \
    -Zbuild-std=core,compiler_builtins -Zbuild-std-features=compiler-builtins-mem
lib=$TARGET_DIR/$TARGET/kshim/libh2msg_kshim.a

# One relocatable object holding what the API reaches; only the API stays global, so
# Rust's symbols and compiler_builtins' mem* cannot clash with the kernel's. No debug
# sections: the module loader skips them anyway, and they are most of the size.
keep=()
for f in $(grep -oE 'h2msg_iocom_[a-z_]+\(' "$HEADER" | tr -d '(' | sort -u); do keep+=(-u "$f"); done
mkdir -p "$(dirname "$out")"
ld -r --gc-sections "${keep[@]}" --whole-archive "$lib" -o "$out"
objcopy --wildcard --keep-global-symbol='h2msg_*' --strip-debug "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
