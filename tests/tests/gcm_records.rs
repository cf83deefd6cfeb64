//! The `gcm` record framing (protocol.md §2.9) against an independent AES-256-GCM (the
//! `aes-gcm` crate used directly, keys and nonces computed here from the spec's rules):
//! one record's bytes, records the test seals itself (exactly 16384 plaintext bytes
//! accepted, one byte over refused although its tag is good, a zero or huge length
//! refused before anything more arrives), messages straddling records, a peer's own
//! records sent back to it, and the counter's end through the `test-util` hook.

use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use h2msg::ioq::TxError;
use h2msg::wire::{Cmd, DecodeError, IoqError, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{LinkEnd, LinkSetup, SendError, StreamMode};
use h2msg_tests::sim::{OwnedEvent, Pair, Side, SideConfig, setup_pair};

/// Receive FIFO for `gcm`: the largest header and a whole record (4 + 16384 + 16).
const GCM_FIFO: usize = 2048 + 4 + 16_384 + 16;

fn sess(seed: u8) -> [u8; 64] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
}

fn side() -> SideConfig {
    SideConfig {
        fifo: GCM_FIFO,
        ..SideConfig::default()
    }
}

/// §2.9, computed here: the key from `sender` to `receiver` is
/// `sender[0..32] XOR receiver[32..64]`; the nonce of record `n` is `sender[32..36]`
/// followed by `n` as 64-bit big-endian; the associated data is the 4-byte length header.
fn seal_record(sender: &[u8; 64], receiver: &[u8; 64], n: u64, plain: &[u8]) -> Vec<u8> {
    let key: [u8; 32] = core::array::from_fn(|i| sender[i] ^ receiver[32 + i]);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&sender[32..36]);
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    let header = (plain.len() as u32).to_be_bytes();
    let mut body = plain.to_vec();
    let tag = Aes256Gcm::new(&Array(key))
        .encrypt_inout_detached(&Array(nonce), &header, body.as_mut_slice().into())
        .unwrap();
    [&header[..], &body, &tag.0].concat()
}

/// The plaintext of `DBG_SHELL` messages with the given aux lengths, their salts
/// counting from `first_seq` (the receiver checks the sequence, MSGSEQ).
fn messages(aux_lens: &[usize], first_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &len) in aux_lens.iter().enumerate() {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL);
        let seq = first_seq + i as u32;
        h.salt = (0x00AB_CD00 << 8) | (seq & 0xFF);
        h.msgid = seq;
        let aux: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
        let base = h.seal(WireOrder::Little, &[], &aux, &SoftCrc32c).unwrap();
        let start = out.len();
        out.extend_from_slice(&base);
        out.extend_from_slice(&aux);
        out.resize(start + 32 + h.aux_len(), 0);
    }
    out
}

/// Feeds `wire` to a fresh receiver B (session `sess(2)`, peer `sess(1)`) and ends the
/// input if `end`; returns the msgids delivered and the failure.
fn receive(wire: &[u8], end: bool) -> (Vec<u32>, Option<h2msg::ioq::RxFailure>) {
    let (_, sb) = setup_pair(StreamMode::Gcm, sess(1), sess(2));
    let mut b = Side::with_setup(&side(), sb, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    let (mut got, mut failure) = (Vec::new(), None);
    let mut rest = wire;
    loop {
        while let Some(event) = b.io.poll_event() {
            match OwnedEvent::of_event(&event) {
                OwnedEvent::Message(m, _) => got.push(m.header.msgid),
                OwnedEvent::LinkDown(LinkEnd::Failed(f)) => failure = Some(f),
                _ => {}
            }
        }
        if rest.is_empty() || !b.io.interest().read {
            break;
        }
        let n = b.io.feed(rest);
        rest = &rest[n..];
        if rest.is_empty() && end {
            b.io.end_input();
        }
    }
    (got, failure)
}

#[test]
fn a_record_from_h2msg_is_the_independent_seal_of_its_messages() {
    // The salt's random bits are scripted, as `messages` makes them.
    let config = SideConfig {
        salts: vec![0x00AB_CD00],
        ..side()
    };
    let (sa, _) = setup_pair(StreamMode::Gcm, sess(1), sess(2));
    let mut a = Side::with_setup(&config, sa, None);
    let mut h = MsgHeader::new(Cmd::DBG_SHELL);
    h.msgid = 0;
    let aux: Vec<u8> = (0..100).map(|j| (j * 13) as u8).collect();
    a.io.send(h, &[], &aux).unwrap();
    let wire = a.io.pending()[0].to_vec();
    // The same message in the clear, sealed independently as record 0 of A→B.
    assert_eq!(
        wire,
        seal_record(&sess(1), &sess(2), 0, &messages(&[100], 0))
    );
}

#[test]
fn a_record_of_exactly_16_kib_is_accepted() {
    // Four messages of 4096 bytes fill one record; a fifth follows in record 1.
    let plain = messages(&[4064, 4064, 4064, 4064, 0], 0);
    let wire = [
        seal_record(&sess(1), &sess(2), 0, &plain[..16_384]),
        seal_record(&sess(1), &sess(2), 1, &plain[16_384..]),
    ]
    .concat();
    let (got, failure) = receive(&wire, true);
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert!(failure.is_none(), "{failure:?}");
}

#[test]
fn a_record_one_byte_over_16_kib_is_refused_though_its_tag_is_good() {
    let plain = messages(&[4064, 4064, 4064, 4064, 0], 0);
    let wire = seal_record(&sess(1), &sess(2), 0, &plain[..16_385]);
    let (got, failure) = receive(&wire, false);
    assert!(got.is_empty());
    let failure = failure.expect("refused");
    assert_eq!(failure.error, DecodeError::RecordLen { len: 16_385 });
    assert_eq!(failure.ioq_error(), IoqError::MacFail);
}

#[test]
fn a_zero_or_huge_length_is_refused_from_its_four_bytes_alone() {
    for len in [0u32, 16_385, u32::MAX] {
        // Nothing after the header, and the input not ended: no waiting for the body.
        let (got, failure) = receive(&len.to_be_bytes(), false);
        assert!(got.is_empty());
        assert_eq!(
            failure.map(|f| f.error),
            Some(DecodeError::RecordLen { len })
        );
    }
}

#[test]
fn messages_straddle_records_and_arrive_intact() {
    let big = SideConfig {
        tx_ring: 2048 + 65_536,
        ..side()
    };
    let (sa, sb) = setup_pair(StreamMode::Gcm, sess(1), sess(2));
    let mut a = Side::with_setup(&big, sa, None);
    let mut b = Side::with_setup(&big, sb, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    let mut pair = Pair::new(
        {
            a.io.accept(Cmd::DBG_SHELL).unwrap();
            a
        },
        b,
        1 << 20,
    );
    // One message alone, then 300 of 160 bytes queued behind it: 48 000 bytes, which
    // leave in records of 16 384 cut through messages.
    let aux: Vec<u8> = (0..100).map(|j| j as u8).collect();
    for _ in 0..301 {
        pair.a
            .io
            .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux)
            .unwrap();
    }
    pair.run(1_000_000);
    let got = pair.b.messages();
    assert_eq!(got.len(), 301);
    assert!(got.iter().all(|m| m.aux[..100] == aux[..]));
    let mut lens = Vec::new();
    let mut rest = &pair.a.wrote[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        lens.push(len);
        rest = &rest[4 + len + 16..];
    }
    assert_eq!(lens.iter().sum::<usize>(), 301 * 160);
    assert_eq!(lens[0], 160, "the first message alone");
    assert!(lens.contains(&16_384), "full records: {lens:?}");
    assert!(
        lens.iter().any(|l| l % 160 != 0),
        "a record ends inside a message"
    );
}

#[test]
fn a_peers_own_records_sent_back_to_it_are_refused() {
    // A's records, fed back to A: A opens with the key of B→A, not A→B.
    let (sa, _) = setup_pair(StreamMode::Gcm, sess(1), sess(2));
    let mut a = Side::with_setup(&side(), sa, None);
    a.io.accept(Cmd::DBG_SHELL).unwrap();
    a.io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], b"x")
        .unwrap();
    let own = a.io.pending()[0].to_vec();
    a.io.advance_write(own.len()).unwrap();
    a.io.feed(&own);
    let mut failure = None;
    while let Some(event) = a.io.poll_event() {
        if let OwnedEvent::LinkDown(LinkEnd::Failed(f)) = OwnedEvent::of_event(&event) {
            failure = Some(f.error);
        }
    }
    assert_eq!(failure, Some(DecodeError::MacFail { record: 0 }));
}

#[test]
fn the_record_counter_ends_the_link_at_its_last_value() {
    // Through the test-util hook both counters start at their last value, 2^64 - 1.
    let at_end = |own: u8, peer: u8| LinkSetup::gcm_for_testing(&sess(own), &sess(peer), u64::MAX);
    let mut a = Side::with_setup(&side(), at_end(1, 2), None);
    a.io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap();
    let last = a.io.pending()[0].to_vec();
    assert_eq!(
        last,
        seal_record(&sess(1), &sess(2), u64::MAX, &last_plain(&last))
    );
    assert_eq!(
        a.io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]),
        Err(SendError::Tx(TxError::IvWrap))
    );
    // The receiver opens the last record, then nothing more.
    let mut b = Side::with_setup(&side(), at_end(2, 1), None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    b.io.feed(&last);
    b.io.feed(&last);
    let (mut delivered, mut failure) = (0, None);
    while let Some(event) = b.io.poll_event() {
        match OwnedEvent::of_event(&event) {
            OwnedEvent::Message(..) => delivered += 1,
            OwnedEvent::LinkDown(LinkEnd::Failed(f)) => failure = Some(f.error),
            _ => {}
        }
    }
    assert_eq!((delivered, failure), (1, Some(DecodeError::IvWrap)));
}

/// The plaintext of a one-message record sealed at counter 2^64 - 1, decrypted here.
fn last_plain(record: &[u8]) -> Vec<u8> {
    let key: [u8; 32] = core::array::from_fn(|i| sess(1)[i] ^ sess(2)[32 + i]);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&sess(1)[32..36]);
    nonce[4..].copy_from_slice(&u64::MAX.to_be_bytes());
    let len = record.len() - 20;
    let mut body = record[4..4 + len].to_vec();
    let tag: [u8; 16] = record[4 + len..].try_into().unwrap();
    Aes256Gcm::new(&Array(key))
        .decrypt_inout_detached(
            &Array(nonce),
            &record[..4],
            body.as_mut_slice().into(),
            &Array(tag),
        )
        .unwrap();
    body
}
