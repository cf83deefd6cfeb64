//! `h2msg dump` on the recorded C streams (matching `vectors.json` field by field), on the
//! spec vectors, on a stream of our own transmit queue, and on damaged input.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::PathBuf;
mod common;

use h2msg_std::dump::{DumpEnd, dump};
use serde_json::Value;

fn vector(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(path)
}

fn json_lines(bytes: &[u8], skip: bool) -> (Vec<Value>, DumpEnd) {
    let mut out = Vec::new();
    let end = dump(bytes, skip, true, &mut out).unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, end)
}

fn hex_num(v: &Value) -> u64 {
    match v {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap(),
        v => v.as_u64().unwrap(),
    }
}

#[test]
fn the_recorded_c_streams_dump_as_recorded() {
    let rec: Value =
        serde_json::from_slice(&std::fs::read(vector("c-peer/v1-rsa/vectors.json")).unwrap())
            .unwrap();
    for dir in ["c2s", "s2c"] {
        let bytes = std::fs::read(vector(&format!("c-peer/v1-rsa/wire-{dir}.bin"))).unwrap();
        let (lines, end) = json_lines(&bytes, true);
        let frames = rec["streams"][dir]["frames"].as_array().unwrap();
        assert_eq!(
            end,
            DumpEnd::Clean {
                messages: frames.len()
            }
        );
        for (got, want) in lines.iter().zip(frames) {
            for field in [
                "offset",
                "icrc1",
                "salt",
                "source",
                "target",
                "msgid",
                "cmd",
                "error",
                "resv05",
                "icrc2",
                "aux_bytes",
                "aux_icrc",
            ] {
                assert_eq!(
                    hex_num(&got[field]),
                    hex_num(&want[field]),
                    "{dir} {field} at {}",
                    want["offset"]
                );
            }
            assert_eq!(got["name"], want["name"]);
            assert_eq!(got["aux_hex"], want["aux_hex"]);
            assert_eq!(
                got["aux_text"], want["aux_text"],
                "{dir} at {}",
                want["offset"]
            );
        }
    }
}

#[test]
fn the_spec_vectors_dump_with_both_byte_orders() {
    let bytes = std::fs::read(vector("spec/v1-v6.bin")).unwrap();
    let (lines, end) = json_lines(&bytes, false);
    assert_eq!(end, DumpEnd::Clean { messages: 6 });
    let offsets: Vec<u64> = lines
        .iter()
        .map(|l| l["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 32, 96, 160, 192, 224]);
    assert_eq!(lines[4]["order"], "big");
    assert_eq!(lines[5]["ext_hex"].as_str().unwrap().len(), 64);
    assert_eq!(lines[2]["aux_text"], "Unrecognized command: foo\n");
}

#[test]
fn a_damaged_frame_is_reported_and_decoding_stops() {
    let mut bytes = std::fs::read(vector("spec/v1-v6.bin")).unwrap();
    bytes[96 + 40] ^= 1; // V3's aux
    let mut out = Vec::new();
    let end = dump(&bytes, false, false, &mut out).unwrap();
    let DumpEnd::Damaged { messages, failure } = end else {
        panic!()
    };
    assert_eq!(
        (messages, failure.offset, failure.ioq_error().code()),
        (2, 96, 7)
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("damaged: IOQ error 7 (ACRC)"),
        "{text}"
    );
    // The binary says so and exits non-zero.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let status = common::h2msg()
        .arg("dump")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("damaged frame at offset 96"));
}

/// A stream our own transmit side wrote over a real socket, captured at the receiving end
/// and run through the `h2msg dump` binary: every message comes back with the fields we
/// sent, at the offsets the sizes give, with its CRCs verified.
#[test]
fn a_stream_written_by_our_transmit_side_dumps_as_sent() {
    use std::io::{Read, Write};

    use h2msg::wire::{Cmd, MsgHeader};
    use h2msg_std::blocking::{Link, std_iocom};

    let (a, mut b) = h2msg_std::bench::loopback_pair().unwrap();
    let duplex = h2msg_std::blocking::Duplex::new(a).unwrap();
    let mut link = Link::new(duplex, std_iocom(h2msg::LinkSetup::plaintext(), 0).unwrap());
    let big: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let sent: [(Cmd, u32, &[u8]); 4] = [
        (Cmd::DBG_SHELL, 0, b"status\0"),
        (Cmd::LNK_PING, 7, b""),
        (Cmd::DBG_SHELL, 9, &big),
        (Cmd::LNK_PING, 0x1234_5678, b"x"),
    ];
    for (cmd, msgid, aux) in sent {
        let mut h = MsgHeader::new(cmd);
        h.msgid = msgid;
        link.io().send(h, &[], aux).unwrap();
    }
    link.flush().unwrap();
    drop(link);
    let mut capture = Vec::new();
    b.read_to_end(&mut capture).unwrap();

    let mut child = common::h2msg()
        .args(["dump", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&capture).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), sent.len());
    let mut offset = 0u64;
    for (line, (cmd, msgid, aux)) in lines.iter().zip(sent) {
        assert_eq!(line["offset"], offset);
        assert_eq!(hex_num(&line["cmd"]), u64::from(cmd.raw()));
        assert_eq!(hex_num(&line["msgid"]), u64::from(msgid));
        assert_eq!(line["crc"], "ok");
        let padded = aux.len().div_ceil(32) * 32;
        let mut expected_aux = aux.to_vec();
        expected_aux.resize(padded, 0);
        let hex: String = expected_aux.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(line["aux_hex"], hex);
        offset += 32 + padded as u64;
    }
    assert_eq!(lines[0]["aux_text"], "status");
    assert_eq!(offset, capture.len() as u64);
}

/// Runs `h2msg dump ARGS` with `stdin`, killing it if still running after `limit`:
/// `(exit code, stderr)`, or `None` if it had to be killed.
fn dump_binary_within(
    args: &[&str],
    stdin: std::process::Stdio,
    limit: std::time::Duration,
) -> Option<(Option<i32>, String)> {
    use std::io::Read;
    let mut child = common::h2msg()
        .arg("dump")
        .args(args)
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return Some((status.code(), stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// An endless input that is bad from its first byte: the dump stops at offset 0 instead
/// of reading (and holding) all of it first.
#[test]
fn an_endless_bad_input_stops_at_offset_0() {
    let (code, stderr) = dump_binary_within(
        &["/dev/zero"],
        std::process::Stdio::null(),
        std::time::Duration::from_secs(20),
    )
    .expect("h2msg dump /dev/zero still running after 20 s");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at offset 0:"), "{stderr}");
}

/// Messages are printed as they arrive, while the input is still open.
#[test]
fn messages_are_printed_while_the_input_is_still_open() {
    use std::io::{BufRead, Write};
    let spec = std::fs::read(vector("spec/v1-v6.bin")).unwrap();
    let mut child = common::h2msg()
        .args(["dump", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // V1 and V2 (offsets 0 and 32), then nothing more for now.
    stdin.write_all(&spec[..96]).unwrap();
    stdin.flush().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let mut offsets = Vec::new();
    for _ in 0..2 {
        let line = lines_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .map_err(|_| format!("no line while the input is open; got {offsets:?}"))
            .unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        offsets.push(value["offset"].as_u64().unwrap());
    }
    assert_eq!(offsets, [0, 32]);
    // The rest, then the end of input: a clean end.
    stdin.write_all(&spec[96..]).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    assert_eq!(lines_rx.iter().count(), 4);
}

/// A capture shorter than the handshake it is said to start with is an error, not an
/// empty clean dump.
#[test]
fn skipping_the_handshake_of_a_short_capture_is_an_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), [0u8; 100]).unwrap();
    let (code, stderr) = dump_binary_within(
        &["--skip-handshake", file.path().to_str().unwrap()],
        std::process::Stdio::null(),
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("offset 0") && stderr.contains("EOF") && stderr.contains("100"),
        "{stderr}"
    );
    // The library says the same.
    let mut out = Vec::new();
    let end = dump(&[0u8; 100], true, false, &mut out).unwrap();
    let DumpEnd::Damaged { messages, failure } = end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (messages, failure.offset, failure.ioq_error().code()),
        (0, 0, 2)
    );
}

/// A capture cut inside a message ends with EOF at that message's offset.
#[test]
fn a_capture_cut_inside_a_message_is_reported_at_its_offset() {
    let spec = std::fs::read(vector("spec/v1-v6.bin")).unwrap();
    let mut out = Vec::new();
    let end = dump(&spec[..100], false, false, &mut out).unwrap();
    let DumpEnd::Damaged { messages, failure } = end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (messages, failure.offset, failure.ioq_error().code()),
        (2, 96, 2)
    );
}
