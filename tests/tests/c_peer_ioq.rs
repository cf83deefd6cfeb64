//! The receive decoder and the transmit queue against the session recorded from the 2012
//! C implementation: decoding both directions in every chunking, and re-creating the C
//! client's byte stream with the same salts.

use h2msg::ioq::TxQueue;
use h2msg::ioq::{RxDecoder, RxPoll};
use h2msg::wire::{Cmd, MsgHeader, SoftCrc32c, WireOrder, limits::HANDSHAKE_LEN};
use h2msg_tests::{GlibcRandom, assert_frame, c_peer_frames, c_peer_wire, hex, json_u32};

/// Decodes `stream` fed in pieces whose sizes cycle through `sizes`, checking each message
/// against the recording as it comes out. Returns the number of messages.
fn decode_in_pieces(direction: &str, stream: &[u8], sizes: &[usize]) -> usize {
    let frames = c_peer_frames(direction);
    let mut rx = RxDecoder::new([0u8; 2048], [0u8; 0], SoftCrc32c).unwrap();
    let mut rest = stream;
    let mut next_size = sizes.iter().cycle();
    let mut seen = 0;
    loop {
        match rx.poll() {
            RxPoll::Message(m) => {
                let ctx = format!("{direction} message {seen}, pieces {sizes:?}");
                assert_frame(&m, &frames[seen], &ctx);
                seen += 1;
            }
            RxPoll::NeedInput if rest.is_empty() => rx.end_input(),
            RxPoll::NeedInput => {
                let n = (*next_size.next().unwrap()).min(rest.len());
                let taken = rx.feed(&rest[..n]);
                assert!(taken > 0);
                rest = &rest[taken..];
            }
            RxPoll::Closed => return seen,
            other => panic!("{direction}: unexpected {other:?} after {seen} messages"),
        }
    }
}

#[test]
fn both_directions_decode_in_every_fixed_chunk_size() {
    for (direction, count) in [("c2s", 9), ("s2c", 13)] {
        let wire = c_peer_wire(direction);
        let stream = &wire[HANDSHAKE_LEN..];
        for size in 1..=stream.len() {
            assert_eq!(
                decode_in_pieces(direction, stream, &[size]),
                count,
                "{direction} size {size}"
            );
        }
    }
}

#[test]
fn both_directions_decode_in_uneven_pieces() {
    let patterns: [&[usize]; 5] = [&[1, 31], &[33, 1, 2], &[7, 64, 5], &[100, 3], &[31, 32, 33]];
    for direction in ["c2s", "s2c"] {
        let wire = c_peer_wire(direction);
        for pattern in patterns {
            decode_in_pieces(direction, &wire[HANDSHAKE_LEN..], pattern);
        }
    }
}

/// Queues each recorded frame's fields and aux bytes (the C's garbage padding included,
/// since the recorded aux is already a whole number of units) with glibc salts.
fn replay(direction: &str) -> (Vec<u8>, Vec<bool>) {
    let frames = c_peer_frames(direction);
    let mut tx = TxQueue::new(
        vec![0u8; 1 << 16],
        GlibcRandom::new(1),
        SoftCrc32c,
        WireOrder::Little,
    );
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for f in &frames {
        let mut h = MsgHeader::new(Cmd::from_raw(json_u32(&f["cmd"])));
        h.msgid = json_u32(&f["msgid"]);
        h.error = json_u32(&f["error"]) as u16;
        let aux = hex(f["aux_hex"].as_str().unwrap());
        tx.enqueue(h, &[], &aux).unwrap();
        for part in tx.pending() {
            out.extend_from_slice(part);
        }
        tx.advance(tx.pending_len()).unwrap();
        // §11 T3: the C sends a stale aux_icrc without aux; h2msg sends 0.
        stale.push(aux.is_empty() && json_u32(&f["aux_icrc"]) != 0);
    }
    (out, stale)
}

#[test]
fn the_c_client_stream_is_recreated_byte_for_byte() {
    let wire = c_peer_wire("c2s");
    let (ours, stale) = replay("c2s");
    assert!(
        stale.iter().all(|s| !s),
        "the client never sends stale aux_icrc"
    );
    assert_eq!(ours, &wire[HANDSHAKE_LEN..]);
}

#[test]
fn the_c_node_stream_is_recreated_except_stale_aux_icrc() {
    let wire = c_peer_wire("s2c");
    let (ours, stale) = replay("s2c");
    assert_eq!(ours.len(), wire.len() - HANDSHAKE_LEN);
    let frames = c_peer_frames("s2c");
    let mut exact = 0;
    for (f, stale) in frames.iter().zip(stale) {
        let at = f["offset"].as_u64().unwrap() as usize;
        let theirs = &wire[at..];
        let mine = &ours[at - HANDSHAKE_LEN..];
        let len = 32 + 32 * f["aux_bytes"].as_u64().unwrap() as usize;
        if stale {
            // Same bytes but for icrc1 (2..4) and aux_icrc (28..32), which is 0 here.
            assert_eq!(&mine[4..28], &theirs[4..28], "frame at {at}");
            assert_eq!(&mine[28..32], &[0; 4], "frame at {at}");
        } else {
            assert_eq!(&mine[..len], &theirs[..len], "frame at {at}");
            exact += 1;
        }
    }
    assert_eq!(
        exact, 8,
        "8 of the node's 13 frames carry no stale aux_icrc"
    );
}
