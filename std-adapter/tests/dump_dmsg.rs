//! `h2msg dump --proto dmsg` on the two sessions recorded between libdmsg nodes
//! (`tests/vectors/dmsg-peer`): every message the independent decoder listed in
//! `PREFIX.decoded.txt` is printed with its offset, cmd, name, flags, msgid, circuit,
//! error, aux and payload values; damaged copies of the captures stop at the damaged
//! message with its IOQ code and a non-zero exit; `--proto auto` picks the revision whose
//! first header checks out and refuses when both or neither do.
//!
//! Expected values are parsed from the `.decoded.txt` files (a separate Python decoder
//! with its own CRC-32C); nothing expected comes from h2msg.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

mod common;

fn vector(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(path)
}

fn read_vector(path: &str) -> Vec<u8> {
    std::fs::read(vector(path)).unwrap()
}

/// Splits a line into `(key, value)` tokens (`None` for a bare word). Quoted values —
/// Python's `'…'` / `"…"` in the decoded files, Rust's `"…"` in our output — keep their
/// spaces and are unescaped.
fn tokens(line: &str) -> Vec<(Option<String>, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if chars.get(i) == Some(&'=') {
            i += 1;
            let value = if matches!(chars.get(i), Some('\'' | '"')) {
                let (text, next) = quoted(&chars, i);
                i = next;
                text
            } else {
                let vstart = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[vstart..i].iter().collect()
            };
            out.push((Some(word), value));
        } else {
            out.push((None, word));
        }
    }
    out
}

/// The quoted string starting at `chars[at]`, unescaped, and the index after it.
fn quoted(chars: &[char], at: usize) -> (String, usize) {
    let quote = chars[at];
    let mut out = String::new();
    let mut i = at + 1;
    loop {
        let c = *chars.get(i).expect("unterminated string");
        i += 1;
        if c == quote {
            return (out, i);
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars[i];
        i += 1;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' | '\'' | '"' => out.push(e),
            'x' => {
                let hex: String = chars[i..i + 2].iter().collect();
                i += 2;
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
            }
            'u' => {
                let close = i + chars[i..].iter().position(|&c| c == '}').unwrap();
                let hex: String = chars[i + 1..close].iter().collect();
                i = close + 1;
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("escape \\{other}"),
        }
    }
}

/// `0x…` or bare hex (`hex` true), else decimal.
fn num(text: &str, hex: bool) -> u64 {
    match text.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None if hex => u64::from_str_radix(text, 16),
        None => text.parse(),
    }
    .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// One message as the independent decoder listed it.
#[derive(Debug, Default)]
struct Expected {
    dir: String,
    offset: u64,
    cmd: u64,
    /// `LNK_ERROR(RESULT)` and so on.
    name: String,
    /// The flag words (`CREATE|REPLY|REVTRANS`), empty when none.
    flags: String,
    msgid: u64,
    circuit: u64,
    error: u64,
    aux_bytes: u64,
    aux: Option<String>,
    /// The `header:` line's fields, when there is one.
    header: BTreeMap<String, String>,
    /// Payload fields.
    payload: BTreeMap<String, String>,
}

/// The decoded file of `prefix`: the names of its two directions (client → service
/// first) and its messages.
fn decoded(prefix: &str) -> ((String, String), Vec<Expected>) {
    let text = String::from_utf8(read_vector(&format!("dmsg-peer/{prefix}.decoded.txt"))).unwrap();
    let mut lines = text.lines();
    // "# none-AB: B->A 1472 bytes, A->B 1152 bytes"
    let words: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let dirs = (words[2].to_string(), words[5].to_string());
    let mut messages: Vec<Expected> = Vec::new();
    let mut trailer = String::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("# ") {
            trailer = rest.to_string();
            continue;
        }
        let toks = tokens(line);
        if toks.get(1).map(|t| t.1.as_str()) == Some("ms") {
            let keyed = |key: &str| -> &str {
                &toks
                    .iter()
                    .find(|t| t.0.as_deref() == Some(key))
                    .unwrap_or_else(|| panic!("no {key} in {line}"))
                    .1
            };
            let cmd_at = toks
                .iter()
                .position(|t| t.0.as_deref() == Some("cmd"))
                .unwrap();
            let size_at = toks
                .iter()
                .position(|t| t.0.as_deref() == Some("size"))
                .unwrap();
            messages.push(Expected {
                dir: toks[2].1.clone(),
                offset: num(toks[3].1.strip_prefix('@').unwrap(), true),
                cmd: num(keyed("cmd"), true),
                name: toks[cmd_at + 1].1.clone(),
                flags: toks[cmd_at + 2..size_at]
                    .iter()
                    .map(|t| t.1.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
                msgid: num(keyed("msgid"), true),
                circuit: num(keyed("circuit"), true),
                error: num(keyed("error"), false),
                aux_bytes: num(keyed("aux_bytes"), false),
                ..Expected::default()
            });
            continue;
        }
        let current = messages.last_mut().unwrap();
        let header = toks.first().map(|t| t.1.as_str()) == Some("header:");
        for (key, value) in toks.into_iter().skip(usize::from(header)) {
            let key = key.unwrap_or_else(|| panic!("bare word in {line}"));
            if header {
                current.header.insert(key, value);
            } else if key == "aux" {
                current.aux = Some(value);
            } else {
                current.payload.insert(key, value);
            }
        }
    }
    assert_eq!(
        trailer,
        format!("{} messages, 0 with problems", messages.len())
    );
    (dirs, messages)
}

/// Runs `h2msg dump ARGS` with `stdin` on its standard input.
fn dump_binary(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = common::h2msg()
        .arg("dump")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A dump that stops early may close its input first.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Our output's lines as `key → value` maps (the offset under `"offset"`).
fn printed(stdout: &[u8]) -> Vec<BTreeMap<String, String>> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|line| {
            let toks = tokens(line);
            let mut map: BTreeMap<String, String> = toks
                .iter()
                .filter_map(|(k, v)| k.clone().map(|k| (k, v.clone())))
                .collect();
            map.insert("offset".into(), toks[0].1.clone());
            map
        })
        .collect()
}

/// Compares a payload value: numbers as numbers, anything else as text.
fn same_value(ours: &str, theirs: &str) -> bool {
    let as_num = |s: &str| match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse::<u64>().ok(),
    };
    match (as_num(ours), as_num(theirs)) {
        (Some(a), Some(b)) => a == b,
        _ => ours == theirs,
    }
}

/// Both directions of both sessions: one printed line per listed message, with its
/// values.
#[test]
fn the_recorded_libdmsg_sessions_dump_as_the_independent_decoder_lists_them() {
    let mut checked = 0;
    for prefix in ["none-shell", "none-AB"] {
        let ((c2s, s2c), messages) = decoded(prefix);
        for (file, dir) in [("c2s", c2s), ("s2c", s2c)] {
            let path = vector(&format!("dmsg-peer/{prefix}.{file}.bin"));
            let out = common::h2msg()
                .args(["dump", "--proto", "dmsg"])
                .arg(&path)
                .output()
                .unwrap();
            let context = format!("{prefix}.{file} ({dir})");
            assert!(
                out.status.success(),
                "{context}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines = printed(&out.stdout);
            let expected: Vec<&Expected> = messages.iter().filter(|m| m.dir == dir).collect();
            assert_eq!(lines.len(), expected.len(), "{context}: message count");
            for (got, want) in lines.iter().zip(&expected) {
                let at = format!("{context} @{:#x}", want.offset);
                let field = |k: &str| {
                    got.get(k)
                        .unwrap_or_else(|| panic!("{at}: no {k} printed"))
                        .as_str()
                };
                assert_eq!(num(field("offset"), false), want.offset, "{at}");
                for (key, value, hex) in [
                    ("cmd", want.cmd, true),
                    ("msgid", want.msgid, true),
                    ("circuit", want.circuit, true),
                    ("error", want.error, true),
                    ("aux_bytes", want.aux_bytes, false),
                ] {
                    assert_eq!(num(field(key), hex), value, "{at}: {key}");
                }
                // `LNK_ERROR(RESULT)`: the decoder adds what the answer means.
                let name = want.name.split('(').next().unwrap();
                assert_eq!(field("name"), name, "{at}");
                let flags = if want.flags.is_empty() {
                    "-"
                } else {
                    &want.flags
                };
                assert_eq!(field("flags"), flags, "{at}");
                match &want.aux {
                    Some(text) => assert_eq!(field("aux"), text, "{at}: aux"),
                    None => assert_eq!(field("aux"), "-", "{at}: aux"),
                }
                for (key, value) in &want.payload {
                    assert!(
                        same_value(field(key), value),
                        "{at}: {key} printed {:?}, listed {value:?}",
                        field(key)
                    );
                }
                for key in ["salt", "hdr_crc", "aux_crc"] {
                    if let Some(value) = want.header.get(key) {
                        assert_eq!(num(field(key), true), num(value, true), "{at}: {key}");
                    }
                }
                checked += 1;
            }
        }
    }
    // 28 + 13 messages in the two files.
    assert_eq!(checked, 41);
}

/// The listed offset of the `index`th message of `prefix`'s direction `file`.
fn listed_offset(prefix: &str, c2s: bool, index: usize) -> usize {
    let ((c, s), messages) = decoded(prefix);
    let dir = if c2s { c } else { s };
    let offset = messages
        .iter()
        .filter(|m| m.dir == dir)
        .nth(index)
        .unwrap()
        .offset;
    usize::try_from(offset).unwrap()
}

/// A cut, a flipped header byte, a flipped aux byte and a missing message: each stops the
/// dump at the listed offset of the damaged message with its IOQ code, after a line per
/// message before it, and the exit status is non-zero.
#[test]
fn a_damaged_dmsg_capture_stops_at_its_offset_with_the_ioq_code() {
    let shell = read_vector("dmsg-peer/none-shell.s2c.bin");
    // The first DBG_SHELL reply (`debug> `, aux in a second 64-byte unit) is message 5.
    let reply = listed_offset("none-shell", false, 5);
    let after = listed_offset("none-shell", false, 6);
    let ab = read_vector("dmsg-peer/none-AB.c2s.bin");
    let second = listed_offset("none-AB", true, 1);
    let third = listed_offset("none-AB", true, 2);

    let mut header_flip = shell.clone();
    header_flip[reply + 8] ^= 0x01; // msgid: hdr_crc no longer matches
    let mut aux_flip = shell.clone();
    aux_flip[reply + 64] ^= 0x20; // the aux text
    let mut missing = ab[..second].to_vec(); // message 1 left out: 2 comes as 1
    missing.extend_from_slice(&ab[third..]);
    let cases: [(&str, Vec<u8>, usize, usize, &str); 4] = [
        (
            "cut",
            shell[..reply + 70].to_vec(),
            reply,
            5,
            "IOQ error 2 (EOF)",
        ),
        ("hdr", header_flip, reply, 5, "IOQ error 6 (XCRC)"),
        ("aux", aux_flip, reply, 5, "IOQ error 7 (ACRC)"),
        ("seq", missing, second, 1, "IOQ error 15 (MSGSEQ)"),
    ];
    assert!(after > reply + 70, "the cut falls inside message 5");
    for (what, bytes, offset, before, code) in cases {
        for json in [false, true] {
            let mut args = vec!["--proto", "dmsg", "-"];
            if json {
                args.insert(0, "--json");
            }
            let out = dump_binary(&args, &bytes);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
            assert!(
                stderr.contains(&format!("damaged frame at offset {offset}: {code}")),
                "{what}: {stderr}"
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), before + 1, "{what}: {stdout}");
            let last = lines[before];
            if json {
                let v: serde_json::Value = serde_json::from_str(last).unwrap();
                assert_eq!(v["offset"], offset, "{what}");
                let number: u64 = code.split_whitespace().nth(2).unwrap().parse().unwrap();
                assert_eq!(v["error"], number, "{what}");
            } else {
                assert!(
                    last.trim_start()
                        .starts_with(&format!("{offset} damaged: {code}")),
                    "{what}: {last}"
                );
            }
        }
    }
}

/// `--proto auto` decodes a DMSG capture as `--proto dmsg` does and a seed one as
/// `--proto seed` does; it refuses a capture that starts with a handshake block (neither
/// checks out) and a header built to pass both checks, naming why.
#[test]
fn auto_picks_the_revision_whose_first_header_checks_out_and_refuses_to_guess() {
    use h2msg::wire::limits::DMSG_BASE_HEADER_LEN;
    use h2msg::wire::{SoftCrc32c, compute_hdr_crc, compute_icrc1};
    use h2msg_std::dump::{Detected, detect};
    use h2msg_std::proto::Proto;

    for (path, proto, skip) in [
        ("dmsg-peer/none-AB.c2s.bin", "dmsg", false),
        ("dmsg-peer/none-shell.s2c.bin", "dmsg", false),
        ("spec/v1-v6.bin", "seed", false),
        ("c-peer/v1-rsa/wire-c2s.bin", "seed", true),
    ] {
        let bytes = read_vector(path);
        let mut args = vec!["--proto", proto, "-"];
        if skip {
            args.insert(0, "--skip-handshake");
        }
        let chosen = dump_binary(&args, &bytes);
        let at = args.len() - 2;
        args[at] = "auto";
        let auto = dump_binary(&args, &bytes);
        assert!(chosen.status.success() && auto.status.success(), "{path}");
        assert!(!chosen.stdout.is_empty(), "{path}");
        assert_eq!(auto.stdout, chosen.stdout, "{path}");
    }

    // A capture that starts with the handshake: neither revision.
    let out = dump_binary(
        &["--proto", "auto", "-"],
        &read_vector("c-peer/v1-rsa/wire-c2s.bin"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither revision") && stderr.contains("--skip-handshake"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // 64 bytes that are a valid DMSG LNK_PING (cmd 0x00000101 at 0x20, hdr_crc at 0x3C)
    // and whose first 32 are a valid seed LNK_PING (cmd 0x00000101 at 0x10 — DMSG's
    // `circuit` — and `icrc1` at 0x02 — DMSG's `reserved02`).
    let mut both = [0u8; DMSG_BASE_HEADER_LEN];
    both[..2].copy_from_slice(&[0x32, 0x48]);
    both[0x10..0x14].copy_from_slice(&0x0000_0101u32.to_le_bytes());
    both[0x20..0x24].copy_from_slice(&0x0000_0101u32.to_le_bytes());
    let icrc1 = compute_icrc1(both[..32].try_into().unwrap(), &SoftCrc32c);
    both[2..4].copy_from_slice(&icrc1.to_le_bytes());
    let hdr_crc = compute_hdr_crc(&both, &[], &SoftCrc32c);
    both[0x3C..].copy_from_slice(&hdr_crc.to_le_bytes());
    // Each revision on its own takes it (as its first message).
    for proto in ["seed", "dmsg"] {
        let out = dump_binary(&["--proto", proto, "-"], &both);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout
                .lines()
                .next()
                .unwrap_or_default()
                .contains("damaged"),
            "{proto}: {stdout}"
        );
    }
    let out = dump_binary(&["--proto", "auto", "-"], &both);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("both a seed header"), "{stderr}");
    assert!(out.stdout.is_empty());

    // The library says the same, and gives back the bytes it read.
    let (prefix, found) = detect(&mut &both[..]).unwrap();
    assert_eq!((prefix.as_slice(), found), (&both[..], Detected::Both));
    let ab = read_vector("dmsg-peer/none-AB.c2s.bin");
    let (prefix, found) = detect(&mut &ab[..]).unwrap();
    // LNK_CONN's whole header region (384 bytes) was read to check hdr_crc.
    assert_eq!(
        (prefix.as_slice(), found),
        (&ab[..384], Detected::Proto(Proto::Dmsg))
    );
    assert_eq!(detect(&mut &[][..]).unwrap().1, Detected::Empty);
    // Cut inside LNK_CONN's region: DMSG's check fails (EOF), and seed's never passed.
    assert!(matches!(
        detect(&mut &ab[..200]).unwrap().1,
        Detected::Neither { .. }
    ));
}
