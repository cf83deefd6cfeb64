//! A real session recorded from the 2012 C implementation (`vectors/c-peer/v1-rsa`):
//! every frame of both directions decodes to what the recording's `vectors.json` lists,
//! and the plaintext handshake blocks pass our verifier.

use h2msg::wire::{HandshakeBlock, MessageView, SoftCrc32c, WireOrder, limits::HANDSHAKE_LEN};
use h2msg_tests::{hex, hex_u32, read_vector};
use serde_json::Value;

fn block_from(bytes: &[u8]) -> HandshakeBlock {
    *HandshakeBlock::from_wire(bytes.try_into().expect("512 bytes"))
}

fn recording() -> Value {
    serde_json::from_slice(&read_vector("c-peer/v1-rsa/vectors.json")).unwrap()
}

fn num(v: &Value) -> u32 {
    match v {
        Value::String(s) => hex_u32(s),
        Value::Number(n) => u32::try_from(n.as_u64().unwrap()).unwrap(),
        other => panic!("not a number: {other}"),
    }
}

fn check_stream(direction: &str, expected_frames: usize) {
    let rec = recording();
    let stream = &rec["streams"][direction];
    let wire = read_vector(&format!(
        "c-peer/v1-rsa/{}",
        stream["file"].as_str().unwrap()
    ));
    assert_eq!(wire.len() as u64, stream["bytes"].as_u64().unwrap());
    let frames = stream["frames"].as_array().unwrap();
    assert_eq!(frames.len(), expected_frames);

    let mut offset = HANDSHAKE_LEN;
    for f in frames {
        let at = usize::try_from(f["offset"].as_u64().unwrap()).unwrap();
        assert_eq!(offset, at, "{direction}: frames are back to back");
        let m = MessageView::parse(&wire[offset..], &SoftCrc32c)
            .unwrap_or_else(|e| panic!("{direction} frame at {offset}: {e}"));
        let h = m.header();
        let ctx = format!("{direction} frame at {offset}");
        assert_eq!(m.order(), WireOrder::Little, "{ctx}");
        assert_eq!(u32::from(h.icrc1), num(&f["icrc1"]), "{ctx}");
        assert_eq!(h.salt, num(&f["salt"]), "{ctx}");
        assert_eq!(u32::from(h.source), num(&f["source"]), "{ctx}");
        assert_eq!(u32::from(h.target), num(&f["target"]), "{ctx}");
        assert_eq!(h.msgid, num(&f["msgid"]), "{ctx}");
        assert_eq!(h.cmd.raw(), num(&f["cmd"]), "{ctx}");
        assert_eq!(u32::from(h.error), num(&f["error"]), "{ctx}");
        assert_eq!(u32::from(h.resv05), num(&f["resv05"]), "{ctx}");
        assert_eq!(u32::from(h.icrc2), num(&f["icrc2"]), "{ctx}");
        assert_eq!(u32::from(h.aux_units), num(&f["aux_bytes"]), "{ctx}");
        assert_eq!(h.aux_icrc, num(&f["aux_icrc"]), "{ctx}");
        assert_eq!(
            m.received().header_len() as u64,
            f["hbytes"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            &wire[offset..offset + 32],
            &hex(f["header_hex"].as_str().unwrap())[..],
            "{ctx}"
        );
        assert_eq!(m.aux(), &hex(f["aux_hex"].as_str().unwrap())[..], "{ctx}");
        assert_eq!(h.cmd.to_string(), f["name"].as_str().unwrap(), "{ctx}");
        match f["aux_text"].as_str() {
            Some(text) => assert_eq!(m.aux_until_nul(), text.as_bytes(), "{ctx}"),
            None => assert!(m.aux().is_empty(), "{ctx}"),
        }
        offset += m.wire_len();
    }
    assert_eq!(
        offset,
        wire.len(),
        "{direction}: nothing after the last frame"
    );
}

#[test]
fn client_to_node_frames_decode() {
    check_stream("c2s", 9);
}

#[test]
fn node_to_client_frames_decode() {
    check_stream("s2c", 13);
}

#[test]
fn c_replies_carry_stale_aux_icrc_and_still_decode() {
    // §11 T3 in the wild: the node's final reply to "help" (s2c offset 704) keeps the
    // aux_icrc of the client's "help" command (c2s offset 640) while carrying no aux.
    let c2s = read_vector("c-peer/v1-rsa/wire-c2s.bin");
    let s2c = read_vector("c-peer/v1-rsa/wire-s2c.bin");
    let command = MessageView::parse(&c2s[640..], &SoftCrc32c).unwrap();
    let reply = MessageView::parse(&s2c[704..], &SoftCrc32c).unwrap();
    assert_eq!(command.aux_until_nul(), b"help");
    assert!(reply.aux().is_empty());
    assert_ne!(reply.header().aux_icrc, 0);
    assert_eq!(reply.header().aux_icrc, command.header().aux_icrc);
}

#[test]
fn c_handshake_blocks_pass_the_verifier() {
    let rec = recording();
    let hs = &rec["handshake"];
    for side in ["client", "node"] {
        for key in ["tx_plain_hex", "rx_plain_hex"] {
            let bytes = hex(hs[side][key].as_str().unwrap());
            let block = block_from(&bytes);
            assert!(block.is_valid(), "{side} {key}");
            assert_eq!(block.field_order(), WireOrder::Little, "{side} {key}");
            assert_eq!(block.version(), 1);
            assert_eq!(block.flags(), 0);
            assert_eq!(block.quickmsg_text(), b"Testing 1 2 3", "{side} {key}");
            assert_eq!(block.pad1[0] & 0xC0, 0, "{side} {key}");
            assert_eq!(block.pad2[0] & 0xC0, 0, "{side} {key}");
        }
    }
    // What one side sent is what the other decoded.
    assert_eq!(hs["client"]["tx_plain_hex"], hs["node"]["rx_plain_hex"]);
    let node_tx = hex(hs["node"]["tx_plain_hex"].as_str().unwrap());
    let mut tampered = block_from(&node_tx);
    tampered.sess[0] ^= 1;
    assert!(!tampered.is_valid());
}
