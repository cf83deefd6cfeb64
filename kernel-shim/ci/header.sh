#!/usr/bin/env bash
# Generates kernel-shim/include/h2msg.h with cbindgen 0.29.x, or with --check fails if the
# committed header differs from what the code generates. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."

CBINDGEN_VERSION='~0.29'
if ! cbindgen --version 2>/dev/null | grep -q '^cbindgen 0\.29\.'; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked
fi

header=kernel-shim/include/h2msg.h
generate() {
    cbindgen --quiet --config kernel-shim/cbindgen.toml --crate h2msg-kshim --output "$1"
}

if [[ "${1:-}" == "--check" ]]; then
    fresh=$(mktemp)
    trap 'rm -f "$fresh"' EXIT
    generate "$fresh"
    if ! diff -u "$header" "$fresh"; then
        echo "$header is out of date: run kernel-shim/ci/header.sh and commit it" >&2
        exit 1
    fi
    echo "$header matches the code"
else
    generate "$header"
    echo "wrote $header"
fi
