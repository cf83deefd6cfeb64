#!/usr/bin/env bash
# Freestanding proof of the kernel object (kernel-shim/README.md explains each check).
#
# Builds h2msg-kshim as a static library for x86_64-unknown-none (profile `kshim`:
# release, panic=abort; static relocation model; frame pointers kept), links it into one
# relocatable object and checks, with readelf and objdump (GNU nm may crash on this
# machine's LLVM plugin):
#   1. the object's undefined symbols are exactly the allow-list;
#   2. its exported functions are exactly the functions of include/h2msg.h;
#   3. no export can reach the panic handler: kept from that export alone
#      (ld -r --gc-sections -u), the object has no relocation naming the sentinel the
#      handler calls -- and kept from the handler, it has one (so the check can see);
#   4. the object kept from all exports, with only the API left global (the one to link
#      into a module), uses no SIMD register, holds no trap instruction (ud0/ud1/ud2,
#      int3, int1, int $n: they would stop the kernel without the panic handler, so
#      check 3 cannot see them; a control object shows the check finds them) and no
#      stack frame of 3 KiB or more;
# then reports relocation types, section sizes and the largest stack frames. When a
# nightly toolchain with rust-src is present it repeats all of it for the build-std
# variant and asserts that no R_X86_64_GOTPCREL is left.
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET=x86_64-unknown-none
ALLOWED_UNDEFINED=(h2msg_kernel_panic)
SENTINEL=h2msg_panic_sentinel
HEADER=kernel-shim/include/h2msg.h
MAX_FRAME=3072
# The two init functions hold one copy of the iocom state while they move the core's
# constructor result into the block: 3.75 KB since the core's time seam (64 transaction
# deadlines). Building it in place needs a placement constructor in the core.
INIT_MAX_FRAME=4096
INIT_FUNCTIONS='<h2msg_iocom_init>:|<h2msg_iocom_init_liveness>:'
# What DragonFly's kernel linker accepts (x86_64 elf_machdep.c).
DRAGONFLY_RELOCS='R_X86_64_(NONE|64|PC32|32|32S|GLOB_DAT|JMP_SLOT|RELATIVE)'
RUST_FLAGS='-C relocation-model=static -C force-frame-pointers=yes'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Relocations outside debug sections as "section symbol type", one per line.
code_relocs() {
    readelf -rW "$1" | awk '
        /^Relocation section/ { sec = $3; next }
        /R_X86_64/ && sec !~ /debug|eh_frame/ { print sec, $5, $3 }'
}

# Trap instructions (ud0/ud1/ud2, int3, int1, int $n) in an object, one per line as
# "<section> <offset> <instruction> <verdict>". The verdict is "table-only" for a ud2 that
# only a jump table can reach: LLVM's lowering of an impossible `match` arm (an enum
# discriminant no valid value has, so reaching it needs memory corruption, which is
# already undefined behaviour; rustc keeps LLVM's trap for it). Such a ud2 follows an
# unconditional jmp, ret or ud2 (no fall-through; nop padding in between is ignored), no
# branch in its section targets it, no relocation from code names it, and a relocation
# from .rodata does. Every other trap is "reachable": straight-line code or a branch gets
# there, as it would for an abort, and the kernel would stop without the panic handler.
traps() {
    local obj=$1 disasm=$2
    readelf -rW "$obj" | awk '
        /^Relocation section/ { sec = $3; gsub(/\047/, "", sec); next }
        /R_X86_64/ && $6 ~ /^[+-]$/ {
            a = $7; sub(/^0+/, "", a); if (a == "") a = "0"
            kind = (sec ~ /^\.rela\.rodata/) ? "table" : (sec ~ /^\.rela\.text/ ? "code" : "other")
            print "REL", $5, a, kind
        }' >"$work/trap-relocs"
    awk -v relocs="$work/trap-relocs" '
        function hex(s) { sub(/^0+/, "", s); return s == "" ? "0" : s }
        BEGIN {
            while ((getline line < relocs) > 0) {
                split(line, r, " ")
                if (r[4] == "table") table[r[2] " " r[3]] = 1
                else if (r[4] == "code") code[r[2] " " r[3]] = 1
            }
        }
        /^Disassembly of section / { sec = $4; sub(/:$/, "", sec); prev = "start"; next }
        /^ *[0-9a-f]+:\t/ {
            n = split($0, f, "\t")
            if (n < 3) next # the second line of a long instruction
            addr = f[1]; gsub(/[ :]/, "", addr); addr = hex(addr)
            ins = f[3]; sub(/ +$/, "", ins)
            mn = ins; sub(/ .*/, "", mn)
            if (ins ~ /^(j[a-z]+|call|loop[a-z]*) +[0-9a-f]+ </) {
                split(ins, g, / +/); target[sec " " hex(g[2])] = 1
            }
            if (ins ~ /^(ud[012][a-z]*|int3|int1|icebp|int +\$0x[0-9a-f]+)( |$)/) {
                ntrap++; tsec[ntrap] = sec; taddr[ntrap] = addr; tins[ntrap] = mn; tprev[ntrap] = prev
            }
            if (mn !~ /^(nop[a-z]*|data16|cs)$/) prev = mn
        }
        END {
            for (i = 1; i <= ntrap; i++) {
                k = tsec[i] " " taddr[i]
                # A PC-relative reference to the trap carries the addend offset - 4.
                pc = sprintf("%x", ("0x" taddr[i]) + 0 - 4)
                ok = tins[i] == "ud2" && tprev[i] ~ /^(jmp|jmpq|ret|retq|ud2)$/ && !(k in target) \
                    && (k in table) && !(k in code) && !((tsec[i] " " pc) in code)
                print tsec[i], taddr[i], tins[i], ok ? "table-only" : "reachable"
            }
        }' "$disasm"
}

prove() {
    local label=$1 lib=$2 out=$3 forbid_gotpcrel=$4
    echo "--- $label: $lib"
    local whole=$work/whole.o
    ld -r --whole-archive "$lib" -o "$whole"

    # 1. Undefined symbols (local leftovers of ld -r are not references).
    local undefined allowed
    undefined=$(readelf -sW "$whole" | awk '$7 == "UND" && $5 != "LOCAL" && $8 != "" { print $8 }' | sort -u)
    allowed=$(printf '%s\n' "${ALLOWED_UNDEFINED[@]}" | sort -u)
    [[ "$undefined" == "$allowed" ]] ||
        fail "undefined symbols differ from the allow-list: $(diff <(echo "$allowed") <(echo "$undefined") | grep '^[<>]' | tr '\n' ' ')"
    echo "undefined symbols: $(echo "$undefined" | tr '\n' ' ')(= allow-list)"

    # 2. Exports against the header's declarations.
    local exports declared
    exports=$(readelf -sW "$whole" | awk -v s="$SENTINEL" '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" && $8 ~ /^h2msg_/ && $8 != s { print $8 }' | sort -u)
    declared=$(grep -oE '^[a-z_ ]+[ *](h2msg_iocom_[a-z_]+)\(' "$HEADER" | grep -oE 'h2msg_iocom_[a-z_]+' | sort -u)
    [[ -n "$exports" && "$exports" == "$declared" ]] ||
        fail "exported functions differ from $HEADER: $(diff <(echo "$declared") <(echo "$exports") | grep '^[<>]' | tr '\n' ' ')"
    echo "exports: $(echo "$exports" | wc -l) functions, as declared in $HEADER"

    # 3. Panic reachability, with a control that the check sees the handler.
    local handler
    handler=$(readelf -sW "$whole" | awk '$4 == "FUNC" && $7 != "UND" && $8 ~ /rust_begin_unwind$/ && !found { found = $8 } END { print found }')
    [[ -n "$handler" ]] || fail "no panic handler found in the object"
    ld -r --gc-sections -u "$handler" --whole-archive "$lib" -o "$work/control.o"
    code_relocs "$work/control.o" | grep " $SENTINEL " >/dev/null ||
        fail "control: the object kept from the panic handler has no relocation to $SENTINEL"
    local export
    for export in $exports; do
        ld -r --gc-sections -u "$export" --whole-archive "$lib" -o "$work/one.o"
        if code_relocs "$work/one.o" | grep " $SENTINEL " >/dev/null; then
            echo "panic paths kept from $export:" >&2
            code_relocs "$work/one.o" | grep -E 'panicking|_fail' >&2 || true
            fail "$export can reach the panic handler"
        fi
    done
    echo "panic handler: unreachable from each of the exports (control: reachable from the handler)"

    # 4. The object for a module: kept from all exports.
    local keep=()
    for export in $exports; do keep+=(-u "$export"); done
    ld -r --gc-sections "${keep[@]}" --whole-archive "$lib" -o "$out"
    # Only the API stays global: Rust's internal symbols and compiler_builtins' weak
    # mem* cannot clash with the kernel's.
    objcopy --wildcard --keep-global-symbol='h2msg_*' "$out"
    local module_globals
    module_globals=$(readelf -sW "$out" | awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") && $8 != "" { print $8 }' | sort -u)
    [[ "$module_globals" == "$exports" ]] ||
        fail "module object defines global symbols besides the API: $(comm -13 <(echo "$exports") <(echo "$module_globals") | tr '\n' ' ')"
    local module_undefined
    module_undefined=$(readelf -sW "$out" | awk '$7 == "UND" && $5 != "LOCAL" && $8 != "" { print $8 }' | sort -u)
    [[ -z "$module_undefined" ]] || [[ "$(comm -23 <(echo "$module_undefined") <(echo "$allowed"))" == "" ]] ||
        fail "module object has undefined symbols off the allow-list: $module_undefined"
    objdump -d "$out" >"$work/disasm"
    if grep -E '%[xyz]mm[0-9]' "$work/disasm" >/dev/null; then
        grep -nE '%[xyz]mm[0-9]' "$work/disasm" | sed -n 1,10p >&2
        fail "the module object uses SIMD registers"
    fi
    local trap_lines reachable
    trap_lines=$(traps "$out" "$work/disasm")
    reachable=$(echo "$trap_lines" | grep ' reachable$' || true)
    if [[ -n "$reachable" ]]; then
        echo "$reachable" | sed -n 1,10p >&2
        fail "the module object holds reachable trap instructions ($(echo "$reachable" | wc -l))"
    fi
    local table_only=0
    [[ -z "$trap_lines" ]] || table_only=$(echo "$trap_lines" | wc -l)
    local frames
    frames=$(awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 }
        /sub +\$0x[0-9a-f]+,%rsp/ { match($0, /\$0x[0-9a-f]+/); print substr($0, RSTART + 3, RLENGTH - 3), fn }' \
        "$work/disasm" | while read -r hex fn; do echo "$((16#$hex)) $fn"; done | sort -rn | sed -n 1,3p)
    local init_frames other_frames largest
    init_frames=$(awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 }
        /sub +\$0x[0-9a-f]+,%rsp/ { match($0, /\$0x[0-9a-f]+/); print substr($0, RSTART + 3, RLENGTH - 3), fn }' \
        "$work/disasm" | while read -r hex fn; do echo "$((16#$hex)) $fn"; done | sort -rn)
    other_frames=$(echo "$init_frames" | grep -vE "$INIT_FUNCTIONS" || true)
    init_frames=$(echo "$init_frames" | grep -E "$INIT_FUNCTIONS" || true)
    largest=${other_frames%% *}
    largest=${largest:-0}
    ((largest < MAX_FRAME)) || fail "a stack frame of $largest bytes (limit $MAX_FRAME): $(echo "$other_frames" | sed -n 1,3p)"
    largest=${init_frames%% *}
    largest=${largest:-0}
    ((largest < INIT_MAX_FRAME)) || fail "an init stack frame of $largest bytes (limit $INIT_MAX_FRAME): $init_frames"
    echo "module object: $out ($(stat -c %s "$out") bytes with debug info), no SIMD registers, no reachable trap instruction"
    if ((table_only > 0)); then
        echo "ud2 reached only through a jump table (an impossible match arm): $table_only"
        echo "$trap_lines" | awk '{ printf "    %s +0x%s\n", $1, $2 }'
    fi
    echo "largest stack frames (bytes, function):"
    echo "$frames" | sed 's/^/    /'
    echo "sections (bytes):"
    size -A "$out" | awk '$1 ~ /^\.(text|rodata|data|bss)/ { split($1, p, "."); sum[p[2]] += $2 }
        END { for (k in sum) printf "    .%s %d\n", k, sum[k] }' | sort
    echo "relocation types (module object / whole archive), outside debug sections:"
    join -a1 -a2 -e 0 -o 0,1.2,2.2 \
        <(code_relocs "$out" | awk '{ print $3 }' | sort | uniq -c | awk '{ print $2, $1 }' | sort) \
        <(code_relocs "$whole" | awk '{ print $3 }' | sort | uniq -c | awk '{ print $2, $1 }' | sort) |
        awk '{ printf "    %-20s %6d %8d\n", $1, $2, $3 }'
    local outside
    outside=$(code_relocs "$out" | awk '{ print $3 }' | sort -u | grep -vxE "$DRAGONFLY_RELOCS" | tr '\n' ' ' || true)
    [[ -z "$outside" ]] || echo "note: outside DragonFly's list: $outside(see kernel-shim/README.md)"
    if [[ "$forbid_gotpcrel" == yes ]] && code_relocs "$out" | grep 'R_X86_64_GOTPCREL$' >/dev/null; then
        fail "R_X86_64_GOTPCREL in the $label module object"
    fi
    local whole_simd
    whole_simd=$(objdump -d "$whole" | grep -cE '%[xyz]mm[0-9]' || true)
    echo "whole archive: $(stat -c %s "$whole") bytes; SIMD instructions in it (not in the module object): $whole_simd"
}

# Control for the trap check: in a hand-made object it must find every kind of trap and
# pass exactly the one ud2 that only a jump table reaches; a ud2 after fall-through code,
# or one a branch targets (even if a table also names it), is reachable.
cat >"$work/traps.s" <<'ASM'
    .section .text.traps,"ax",@progbits
traps:
    mov %rdi, %rax
    ud2
    ud1 %eax, %eax
    int3
    int $0x80
    int1
    test %rdi, %rdi
    je .Lbranched
    jmp *.Ltable(,%rdi,8)
.Lcase:
    ret
    nop
.Ltable_only:
    ud2
.Lbranched:
    ud2
    .section .rodata.traps,"a",@progbits
.Ltable:
    .quad .Lcase, .Ltable_only, .Lbranched
ASM
as -o "$work/traps.o" "$work/traps.s"
objdump -d "$work/traps.o" >"$work/traps.disasm"
control=$(traps "$work/traps.o" "$work/traps.disasm" | awk '{ print $3, $4 }' | tr '\n' ',')
[[ "$control" == "ud2 reachable,ud1 reachable,int3 reachable,int reachable,int1 reachable,ud2 table-only,ud2 reachable," ]] ||
    fail "control: the trap check misjudges a hand-made object: $control"
echo "trap check control: 6 reachable traps found, the table-only ud2 told apart"

# Where cargo builds: the developer's CARGO_TARGET_DIR, if set (relative to the root).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
CARGO=${CARGO:-cargo}

start=$SECONDS
echo "==> stable: $(rustc --version)"
RUSTFLAGS="$RUST_FLAGS" "$CARGO" rustc -p h2msg-kshim --lib --profile kshim --target "$TARGET" \
    --crate-type staticlib --features panic-handler --locked --quiet
prove stable "$TARGET_DIR/$TARGET/kshim/libh2msg_kshim.a" "$TARGET_DIR/$TARGET/kshim/h2msg_kshim.o" no
echo "stable proof: $((SECONDS - start)) s"

start=$SECONDS
echo "==> nightly, core and compiler_builtins rebuilt (-Zbuild-std)"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "no nightly toolchain: build-std variant skipped"
    exit 0
fi
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup +nightly component add rust-src >/dev/null 2>&1 || true
fi
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "nightly has no rust-src and it could not be added: build-std variant skipped"
    exit 0
fi
NIGHTLY_DIR=$TARGET_DIR/nightly-build-std
RUSTFLAGS="$RUST_FLAGS -Z plt=yes" cargo +nightly rustc -p h2msg-kshim --lib --profile kshim \
    --target "$TARGET" --crate-type staticlib --features panic-handler --locked --quiet \
    --target-dir "$NIGHTLY_DIR" -Zbuild-std=core,compiler_builtins -Zbuild-std-features=compiler-builtins-mem
prove "nightly build-std" "$NIGHTLY_DIR/$TARGET/kshim/libh2msg_kshim.a" \
    "$NIGHTLY_DIR/$TARGET/kshim/h2msg_kshim.o" yes
echo "nightly proof: $((SECONDS - start)) s"
