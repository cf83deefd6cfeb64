//! The stream modes on the two-iocom simulator: the same traffic arrives intact in `seed`,
//! `cbc` and `gcm` under any chunking; a `gcm` stream detects every bit flip, replay,
//! reordering and loss of a record and delivers nothing after the damage; `cbc` enforces
//! the salt sequence (MSGSEQ). (`gcm_records.rs` checks the record framing itself.)

use aes::Aes256;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit, array::Array};
use h2msg::LinkEnd;
use h2msg::keys::CbcKeys;
use h2msg::wire::{Cmd, IoqError, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{FLAG_GCM, LinkSetup, ModeChoice, NegotiateError, StreamMode};
use h2msg_tests::sim::{OwnedEvent, Pair, Side, SideConfig, session_pair, setup_pair};

const MODES: [StreamMode; 3] = [StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm];

fn sess(seed: u8) -> [u8; 64] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
}

/// Two sides already past their handshake, both in `mode`.
fn pair_in(mode: StreamMode, a: &SideConfig, b: &SideConfig, transfer: usize) -> Pair {
    let (sa, sb) = setup_pair(mode, sess(1), sess(2));
    let mut a = Side::with_setup(a, sa, None);
    let mut b = Side::with_setup(b, sb, None);
    a.io.accept(Cmd::DBG_SHELL).unwrap();
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    Pair::new(a, b, transfer)
}

fn aux_of(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

/// Message sizes that cover header-only, half chunks, the FIFO/aux-storage boundary and
/// the largest legal aux.
const AUX_LENS: [usize; 9] = [0, 1, 32, 33, 100, 2100, 8150, 20_000, 65_536];

#[test]
fn the_same_traffic_arrives_in_every_mode_and_chunking() {
    for mode in MODES {
        for transfer in [1, 7, 33, 80, 1000, 70_000] {
            // The smallest FIFO gcm accepts (the largest header and a whole record), to
            // stress compaction; gcm adds 20 bytes per record in the transmit ring.
            let big_ring = SideConfig {
                tx_ring: 2 * (2048 + 65_536),
                fifo: GCM_FIFO,
                ..SideConfig::default()
            };
            let small = SideConfig {
                fifo: GCM_FIFO,
                ..big_ring.clone()
            };
            let mut pair = pair_in(mode, &small, &big_ring, transfer);
            for (i, &len) in AUX_LENS.iter().enumerate() {
                pair.a
                    .io
                    .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux_of(len, i))
                    .unwrap();
                pair.b
                    .io
                    .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
                    .unwrap();
                pair.run(1_000_000);
            }
            let ctx = format!("{mode} in chunks of {transfer}");
            let got: Vec<_> = pair
                .b
                .messages()
                .into_iter()
                .filter(|m| !m.header.cmd.is_reply())
                .collect();
            assert_eq!(got.len(), AUX_LENS.len(), "{ctx}");
            let pongs = pair.b.messages().len() - got.len();
            assert_eq!(pongs, AUX_LENS.len(), "{ctx}: every ping answered");
            for (i, (m, &len)) in got.iter().zip(&AUX_LENS).enumerate() {
                assert_eq!(m.aux[..len], aux_of(len, i)[..], "{ctx}: message {i}");
            }
            assert!(pair.a.events.iter().all(|e| e.failure().is_none()), "{ctx}");
            assert!(pair.b.events.iter().all(|e| e.failure().is_none()), "{ctx}");
            assert_eq!(pair.a.io.stream_mode(), mode);
            // What crossed the wire is plaintext only in seed mode.
            let marker = aux_of(65_536, 8);
            let plain_on_wire = pair.a.wrote.windows(64).any(|w| w == &marker[..64]);
            assert_eq!(plain_on_wire, mode == StreamMode::Seed, "{ctx}");
            if mode == StreamMode::Gcm {
                records(&pair.a.wrote); // whole records only, each within the limit
                records(&pair.b.wrote);
            }
        }
    }
}

/// Receive FIFO for `gcm`: the largest header and a whole record (4 + 16384 + 16).
const GCM_FIFO: usize = 2048 + 4 + 16_384 + 16;

/// The wire bytes side A sends in `gcm` for four `DBG_SHELL` messages: the first alone
/// (record 0), two queued while it was unsent (record 1, sealed once record 0 had gone),
/// the last alone again (record 2).
fn gcm_wire() -> Vec<u8> {
    let mut pair = pair_in(StreamMode::Gcm, &small_side(), &small_side(), 1 << 20);
    let mut wire = Vec::new();
    let send = |pair: &mut Pair, aux_lens: &[usize], wire: &mut Vec<u8>| {
        for &aux_len in aux_lens {
            pair.a
                .io
                .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux_of(aux_len, 0))
                .unwrap();
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = pair.a.io.copy_pending(&mut buf);
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
            pair.a.io.advance_write(n).unwrap();
        }
    };
    send(&mut pair, &[0, 100, 40], &mut wire);
    send(&mut pair, &[8], &mut wire);
    wire
}

/// The record holding the last byte of each of the four messages.
const LAST_RECORD: [usize; 4] = [0, 1, 1, 2];

/// The record lengths of [`gcm_wire`], by §2.9: 4 + plaintext + 16 each.
const GCM_WIRE_RECORDS: [usize; 3] = [4 + 32 + 16, 4 + (160 + 96) + 16, 4 + 64 + 16];

fn small_side() -> SideConfig {
    SideConfig {
        fifo: GCM_FIFO,
        aux: 0,
        tx_ring: 4096,
        ..SideConfig::default()
    }
}

/// Feeds `wire` to a fresh `gcm` receiver (side B), then ends its input; returns the aux
/// lengths of the messages it delivered and the IOQ code it failed with.
fn receive_gcm(wire: &[u8]) -> (Vec<usize>, Option<IoqError>) {
    receive_gcm_in_session(sess(2), wire)
}

/// [`receive_gcm`] with B's own `sess` given: the peer's is A's of [`gcm_wire`].
fn receive_gcm_in_session(b_sess: [u8; 64], wire: &[u8]) -> (Vec<usize>, Option<IoqError>) {
    let (_, sb) = setup_pair(StreamMode::Gcm, sess(1), b_sess);
    let mut b = Side::with_setup(&small_side(), sb, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    let mut rest = wire;
    let mut delivered = Vec::new();
    let mut failure = None;
    loop {
        while let Some(event) = b.io.poll_event() {
            match OwnedEvent::of_event(&event) {
                OwnedEvent::Message(m, _) => delivered.push(m.aux.len()),
                OwnedEvent::LinkDown(LinkEnd::Failed(f)) => failure = Some(f.ioq_error()),
                _ => {}
            }
        }
        if rest.is_empty() || !b.io.interest().read {
            break;
        }
        let n = b.io.feed(rest);
        rest = &rest[n..];
        if rest.is_empty() {
            // The sender closes after its last record.
            b.io.end_input();
        }
    }
    (delivered, failure)
}

#[test]
fn the_untouched_gcm_stream_is_received() {
    let wire = gcm_wire();
    let lens: Vec<usize> = records(&wire).iter().map(|r| r.len()).collect();
    assert_eq!(lens, GCM_WIRE_RECORDS);
    let (delivered, failure) = receive_gcm(&wire);
    assert_eq!(delivered, [0, 128, 64, 32]);
    assert_eq!(failure, None);
}

/// The libdmsg keying (each direction by its sender's `sess` alone) would accept this: an
/// attacker replays A's old handshake block and A's old stream into a new session of B.
/// h2msg mixes B's fresh `sess` into the key, so the first record already fails.
#[test]
fn a_recorded_gcm_session_replayed_into_a_new_session_fails() {
    let wire = gcm_wire();
    let (delivered, failure) = receive_gcm_in_session(sess(7), &wire);
    assert_eq!((delivered.len(), failure), (0, Some(IoqError::MacFail)));
}

#[test]
fn a_reflected_session_is_refused_by_both_protected_modes() {
    let reflected = || session_pair(sess(5), sess(5), FLAG_GCM, FLAG_GCM).0;
    for choice in [ModeChoice::Cbc, ModeChoice::Gcm] {
        assert_eq!(
            LinkSetup::negotiate(reflected(), choice).map(|s| s.mode()),
            Err(NegotiateError::ReflectedSession),
            "{choice}"
        );
    }
    let seed = LinkSetup::negotiate(session_pair(sess(5), sess(5), 0, 0).0, ModeChoice::Seed);
    assert_eq!(seed.map(|s| s.mode()), Ok(StreamMode::Seed));
}

#[test]
fn every_bit_flip_of_a_gcm_stream_is_detected_and_nothing_after_it_is_delivered() {
    let wire = gcm_wire();
    let ends: Vec<usize> = GCM_WIRE_RECORDS
        .iter()
        .scan(0, |at, len| {
            *at += len;
            Some(*at)
        })
        .collect();
    for bit in 0..wire.len() * 8 {
        let mut damaged = wire.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let record = ends.iter().filter(|&&end| end <= bit / 8).count();
        let start = ends[record] - GCM_WIRE_RECORDS[record];
        // A flip in a length header (the associated data) that makes the record longer
        // than the rest of the stream leaves the receiver waiting for bytes that never
        // come: the stream ends inside a record (EOF). Every other flip fails the tag or
        // the length check (MACFAIL).
        let header = u32::from_be_bytes(damaged[start..start + 4].try_into().unwrap());
        let expected = if bit / 8 < start + 4
            && (1..=16_384).contains(&header)
            && start + 4 + header as usize + 16 > wire.len()
        {
            IoqError::Eof
        } else {
            IoqError::MacFail
        };
        let (delivered, failure) = receive_gcm(&damaged);
        assert_eq!(failure, Some(expected), "bit {bit}");
        let intact = LAST_RECORD.iter().filter(|&&last| last < record).count();
        assert_eq!(
            delivered.len(),
            intact,
            "bit {bit}: only messages before the damage"
        );
    }
}

/// `wire` cut into records by their length headers (§2.9), checking each is whole and
/// within 1..=16384 plaintext bytes.
fn records(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!((1..=16_384).contains(&len), "record length {len}");
        let (record, later) = rest.split_at(4 + len + 16);
        out.push(record);
        rest = later;
    }
    out
}

#[test]
fn replayed_reordered_and_dropped_records_are_rejected() {
    let wire = gcm_wire();
    let r = records(&wire);
    let replayed: Vec<u8> = [r[0], r[0], r[1], r[2]].concat();
    let reordered: Vec<u8> = [r[0], r[2], r[1]].concat();
    let dropped: Vec<u8> = [r[0], r[2]].concat();
    for (name, stream) in [
        ("replayed", replayed),
        ("reordered", reordered),
        ("dropped", dropped),
    ] {
        let (delivered, failure) = receive_gcm(&stream);
        assert_eq!(failure, Some(IoqError::MacFail), "{name}");
        assert_eq!(delivered, [0], "{name}: only the message before the damage");
    }
}

#[test]
fn a_gcm_stream_cut_inside_a_record_ends_with_eof() {
    let wire = gcm_wire();
    let (_, sb) = setup_pair(StreamMode::Gcm, sess(1), sess(2));
    let mut b = Side::with_setup(&small_side(), sb, None);
    assert_eq!(b.io.feed(&wire[..100]), 100);
    b.io.end_input();
    let mut failure = None;
    while let Some(event) = b.io.poll_event() {
        if let OwnedEvent::LinkDown(LinkEnd::Failed(f)) = OwnedEvent::of_event(&event) {
            failure = Some(f.ioq_error());
        }
    }
    assert_eq!(failure, Some(IoqError::Eof));
}

/// A `cbc` stream built outside h2msg (the `cbc` crate with the §2.8 keys) whose third
/// message carries sequence number 3 instead of 2: a sender that skipped a message.
#[test]
fn msgseq_fires_on_a_skipped_message_in_cbc() {
    let keys = CbcKeys::derive(&sess(1), &sess(2));
    let (_, sb) = setup_pair(StreamMode::Cbc, sess(1), sess(2));
    let mut plain = Vec::new();
    for seq in [0u32, 1, 3, 4] {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL);
        h.salt = 0x1234_5600 | seq;
        h.msgid = seq;
        plain.extend_from_slice(&h.seal(WireOrder::Little, &[], &[], &SoftCrc32c).unwrap());
    }
    let mut enc = cbc::Encryptor::<Aes256>::new(&Array(*keys.key()), &Array(keys.iv()));
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut plain);
    assert!(rest.is_empty());
    enc.encrypt_blocks(blocks);

    let mut b = Side::with_setup(&SideConfig::default(), sb, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    assert_eq!(b.io.feed(&plain), plain.len());
    let mut msgids = Vec::new();
    let mut failure = None;
    while let Some(event) = b.io.poll_event() {
        match OwnedEvent::of_event(&event) {
            OwnedEvent::Message(m, _) => msgids.push(m.header.msgid),
            OwnedEvent::LinkDown(LinkEnd::Failed(f)) => failure = Some(f),
            _ => {}
        }
    }
    assert_eq!(msgids, [0, 1], "the messages before the gap");
    let failure = failure.expect("the link fails");
    assert_eq!(failure.ioq_error(), IoqError::MsgSeq);
    assert_eq!(failure.offset, 64, "at the third message");
    assert_eq!(failure.lnk_error().error, 15);
}

#[test]
fn a_cbc_stream_from_h2msg_matches_an_independent_encryption() {
    // Side A's cbc bytes decrypt, with the cbc crate and the §2.8 keys, to the seed-mode
    // bytes of the same messages.
    let seed_cfg = SideConfig {
        salts: vec![7, 8],
        ..SideConfig::default()
    };
    let mut wires = Vec::new();
    for mode in [StreamMode::Seed, StreamMode::Cbc] {
        let mut pair = pair_in(mode, &seed_cfg, &SideConfig::default(), 1 << 20);
        pair.a
            .io
            .send(MsgHeader::new(Cmd::DBG_SHELL), &[], b"help\0")
            .unwrap();
        pair.a
            .io
            .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
            .unwrap();
        pair.run(1000);
        wires.push(pair.a.wrote.clone());
    }
    let keys = CbcKeys::derive(&sess(1), &sess(2));
    let mut dec = cbc::Decryptor::<Aes256>::new(&Array(*keys.key()), &Array(keys.iv()));
    let mut cbc_wire = wires[1].clone();
    let (blocks, _) = Array::slice_as_chunks_mut(&mut cbc_wire);
    cbc::cipher::BlockModeDecrypt::decrypt_blocks(&mut dec, blocks);
    assert_eq!(cbc_wire, wires[0]);
}
