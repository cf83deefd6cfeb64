//! The stream modes on the two-iocom simulator: the same traffic arrives intact in `seed`,
//! `cbc` and `gcm` under any chunking; a `gcm` stream detects every bit flip, replay,
//! reordering and loss of a chunk and delivers nothing after the damage; `cbc` enforces
//! the salt sequence (MSGSEQ).

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
            // The smallest FIFO the protected modes accept, to stress compaction.
            // gcm needs 5/4 of the plaintext in the transmit ring (a tag per 64 bytes).
            let big_ring = SideConfig {
                tx_ring: 2 * (2048 + 65_536),
                ..SideConfig::default()
            };
            let small = SideConfig {
                fifo: 2048 + 80,
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
                assert_eq!(pair.a.wrote.len() % 80, 0, "{ctx}: whole records only");
                assert_eq!(pair.b.wrote.len() % 80, 0, "{ctx}: whole records only");
            }
        }
    }
}

/// The wire bytes side A sends for three `DBG_SHELL` messages in `gcm`, each sent alone
/// (so each is completed with an `LNK_PAD`): records 0 | 1–3 | 4–5.
fn gcm_wire() -> Vec<u8> {
    let mut pair = pair_in(StreamMode::Gcm, &small_side(), &small_side(), 1 << 20);
    for aux_len in [0, 100, 40] {
        pair.a
            .io
            .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux_of(aux_len, 0))
            .unwrap();
    }
    let mut wire = vec![0u8; 1 << 16];
    let n = pair.a.io.copy_pending(&mut wire);
    wire.truncate(n);
    wire
}

/// The last record of each of the three messages.
const LAST_RECORD: [usize; 3] = [0, 3, 5];

fn small_side() -> SideConfig {
    SideConfig {
        fifo: 4096,
        aux: 0,
        tx_ring: 4096,
        ..SideConfig::default()
    }
}

/// Feeds `wire` to a fresh `gcm` receiver (side B); returns the aux lengths of the
/// messages it delivered and the IOQ code it failed with.
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
    }
    (delivered, failure)
}

#[test]
fn the_untouched_gcm_stream_is_received() {
    let wire = gcm_wire();
    assert_eq!(wire.len(), 6 * 80);
    let (delivered, failure) = receive_gcm(&wire);
    assert_eq!(delivered, [0, 128, 64]);
    assert_eq!(failure, None);
}

/// The libdmsg keying (each direction by its sender's `sess` alone) would accept this: an
/// attacker replays A's old handshake block and A's old stream into a new session of B.
/// h2msg mixes B's fresh `sess` into the key, so the first chunk already fails.
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
    for bit in 0..wire.len() * 8 {
        let mut damaged = wire.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let record = bit / 8 / 80;
        let (delivered, failure) = receive_gcm(&damaged);
        assert_eq!(failure, Some(IoqError::MacFail), "bit {bit}");
        let intact = LAST_RECORD.iter().filter(|&&last| last < record).count();
        assert_eq!(
            delivered.len(),
            intact,
            "bit {bit}: only messages before the damage"
        );
    }
}

fn records(wire: &[u8]) -> Vec<&[u8]> {
    wire.chunks(80).collect()
}

#[test]
fn replayed_reordered_and_dropped_chunks_are_rejected() {
    let wire = gcm_wire();
    let r = records(&wire);
    let replayed: Vec<u8> = [r[0], r[0], r[1], r[2], r[3]].concat();
    let reordered: Vec<u8> = [r[0], r[2], r[1], r[3]].concat();
    let dropped: Vec<u8> = [r[0], r[2], r[3]].concat();
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
