//! A real session recorded from the 2012 C implementation (`vectors/c-peer/v1-rsa`):
//! every frame of both directions decodes to what the recording's `vectors.json` lists,
//! and the plaintext handshake blocks pass our verifier.

use h2msg::wire::{HandshakeBlock, MessageView, SoftCrc32c, WireOrder, limits::HANDSHAKE_LEN};
use h2msg_tests::{assert_frame, c_peer_frames, c_peer_recording, c_peer_wire, hex};

fn block_from(bytes: &[u8]) -> HandshakeBlock {
    *HandshakeBlock::from_wire(bytes.try_into().expect("512 bytes"))
}

fn check_stream(direction: &str, expected_frames: usize) {
    let wire = c_peer_wire(direction);
    let rec = c_peer_recording();
    assert_eq!(
        wire.len() as u64,
        rec["streams"][direction]["bytes"].as_u64().unwrap()
    );
    let frames = c_peer_frames(direction);
    assert_eq!(frames.len(), expected_frames);

    let mut offset = HANDSHAKE_LEN;
    for f in &frames {
        assert_eq!(
            offset as u64,
            f["offset"].as_u64().unwrap(),
            "{direction}: back to back"
        );
        let m = MessageView::parse(&wire[offset..], &SoftCrc32c)
            .unwrap_or_else(|e| panic!("{direction} frame at {offset}: {e}"));
        assert_eq!(
            &wire[offset..offset + 32],
            &hex(f["header_hex"].as_str().unwrap())[..]
        );
        assert_frame(&m, f, &format!("{direction} frame at {offset}"));
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
    let c2s = c_peer_wire("c2s");
    let s2c = c_peer_wire("s2c");
    let command = MessageView::parse(&c2s[640..], &SoftCrc32c).unwrap();
    let reply = MessageView::parse(&s2c[704..], &SoftCrc32c).unwrap();
    assert_eq!(command.aux_until_nul(), b"help");
    assert!(reply.aux().is_empty());
    assert_ne!(reply.header().aux_icrc, 0);
    assert_eq!(reply.header().aux_icrc, command.header().aux_icrc);
}

#[test]
fn c_handshake_blocks_pass_the_verifier() {
    let rec = c_peer_recording();
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
