#!/usr/bin/env bash
# Builds the kernel shim as a host static library (as kernel-shim/ci/c-harness.sh does:
# profile `kshim`, panic=abort), compiles examples/c/kshim_pair.c against
# kernel-shim/include/h2msg.h with the system C compiler, and runs it. Honours CARGO,
# CARGO_TARGET_DIR and CC.
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO=${CARGO:-cargo}
CC=${CC:-cc}
out=${CARGO_TARGET_DIR:-target}/kshim
"$CARGO" rustc -p h2msg-kshim --lib --profile kshim --crate-type staticlib --features panic-handler --locked --quiet
# --gc-sections drops the parts of the prebuilt (unwinding) host core that name
# rust_eh_personality; nothing the shim uses needs them.
"$CC" -std=c11 -O1 -g -Wall -Wextra -Werror -Ikernel-shim/include \
    examples/c/kshim_pair.c "$out/libh2msg_kshim.a" -Wl,--gc-sections -o "$out/kshim_pair"
"$out/kshim_pair"
