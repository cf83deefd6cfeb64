#!/usr/bin/env bash
# Builds h2msg-kshim as a host static library (profile `kshim`: release, panic=abort),
# compiles kernel-shim/tests/harness.c against the generated include/h2msg.h with the
# system C compiler, and runs it; again under AddressSanitizer and UBSan when the
# compiler supports them.
set -euo pipefail
cd "$(dirname "$0")/../.."

CC=${CC:-cc}
cargo rustc -p h2msg-kshim --lib --profile kshim --crate-type staticlib --features panic-handler --locked --quiet
# Where cargo put it: CARGO_TARGET_DIR when set.
out=${CARGO_TARGET_DIR:-target}/kshim
lib=$out/libh2msg_kshim.a
# --gc-sections drops the parts of the prebuilt (unwinding) host core that name
# rust_eh_personality; nothing the shim uses needs them.
build() {
    "$CC" -std=c11 -O1 -g -Wall -Wextra -Werror -Ikernel-shim/include "$@" \
        kernel-shim/tests/harness.c "$lib" -Wl,--gc-sections
}

echo "--- $CC $("$CC" -dumpversion)"
build -o "$out/c-harness"
"$out/c-harness"

SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
if echo 'int main(void){return 0;}' | "$CC" "${SANITIZE[@]}" -x c - -o "$out/sanitizer-probe" 2>/dev/null &&
    "$out/sanitizer-probe"; then
    echo "--- under AddressSanitizer and UBSan"
    build "${SANITIZE[@]}" -o "$out/c-harness-sanitized"
    "$out/c-harness-sanitized"
else
    echo "--- $CC cannot build with -fsanitize=address,undefined here: sanitized run skipped"
fi
