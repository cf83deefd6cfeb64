//! The RSA handshake against the sessions recorded from the 2012 C implementation, and
//! against the `openssl` command as an independent RSA implementation.

use std::process::Command;

use h2msg::wire::{WireOrder, limits::HANDSHAKE_LEN, verifier};
use h2msg::{
    Handshake, HandshakeError, HandshakePoll, KeyMode, OwnRsaKey, PreparedBlock,
    PreparedBlockError, RawRsa, RsaKeys,
};
use h2msg_tests::{TestRng, c_peer_recording, c_peer_wire, hex, receive_block, vectors_dir};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{PrivateKey, PublicKey};

fn private_key(side: &str) -> PrivateKey {
    let path = vectors_dir().join(format!("c-peer/v1-rsa/{side}/rsa.prv"));
    PrivateKey::from_pkcs1_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn public_key(side: &str) -> PublicKey {
    let path = vectors_dir().join(format!("c-peer/v1-rsa/{side}/rsa.pub"));
    PublicKey::from_public_key_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

type Hs = Handshake<RsaKeys<TestRng>>;

/// `me` with its own key and the other side's public key.
fn handshake(me: &str, peer: &str, seed: u64) -> Hs {
    let keys = RsaKeys::new(private_key(me), public_key(peer), TestRng(seed)).unwrap();
    Handshake::new(
        KeyMode::Rsa(keys),
        &mut TestRng(seed ^ 0xABCD),
        WireOrder::Little,
        None,
    )
    .unwrap()
}

#[test]
fn the_c_handshakes_decode_to_the_senders_plaintext() {
    let rec = c_peer_recording();
    for (me, peer, dir) in [("node", "client", "c2s"), ("client", "node", "s2c")] {
        let sent_plain = hex(rec["handshake"][peer]["tx_plain_hex"].as_str().unwrap());
        let wire = c_peer_wire(dir);
        let mut hs = handshake(me, peer, 1);
        let HandshakePoll::Done(session) = receive_block(&mut hs, &wire[..HANDSHAKE_LEN]) else {
            panic!("{me} refused the C {peer}'s handshake");
        };
        assert_eq!(
            hs.received_block_for_testing().unwrap().wire_bytes()[..],
            sent_plain[..],
            "{me} decodes {dir}"
        );
        assert_eq!(session.keys_for_testing().1[..], sent_plain[0x10..0x50]);
        assert_eq!(session.peer_quickmsg_text(), b"Testing 1 2 3");
    }
}

#[test]
fn the_wrong_peer_key_fails() {
    let wire = c_peer_wire("c2s");
    // The node believing the client's key is its own.
    let keys = RsaKeys::new(private_key("node"), public_key("node"), TestRng(5)).unwrap();
    let mut hs =
        Handshake::new(KeyMode::Rsa(keys), &mut TestRng(6), WireOrder::Little, None).unwrap();
    let poll = receive_block(&mut hs, &wire[..HANDSHAKE_LEN]);
    let HandshakePoll::Failed(e) = poll else {
        panic!("{poll:?}")
    };
    assert_eq!(e.ioq_error().code(), 12);
}

/// One bit flipped in each received byte (bit number = byte mod 8): a flip in the first
/// block (sess, verifier) always fails; one in the second block (padding and random bytes
/// only, which nothing verifies) fails unless its decoding happens to stay in range, and
/// then the session is still exactly the sender's.
#[test]
fn flipped_bits_never_yield_a_wrong_session() {
    let rec = c_peer_recording();
    let sent_plain = hex(rec["handshake"]["client"]["tx_plain_hex"].as_str().unwrap());
    let wire = c_peer_wire("c2s");
    let mut missed_in_second_block = 0;
    for byte in 0..HANDSHAKE_LEN {
        let mut bad = wire[..HANDSHAKE_LEN].to_vec();
        bad[byte] ^= 1 << (byte % 8);
        let mut hs = handshake("node", "client", byte as u64);
        match receive_block(&mut hs, &bad) {
            HandshakePoll::Failed(HandshakeError::KeyExchange(_)) => {}
            HandshakePoll::Done(s) => {
                assert!(
                    byte >= 256,
                    "a flip at {byte} in the first block was accepted"
                );
                assert_eq!(s.keys_for_testing().1[..], sent_plain[0x10..0x50]);
                missed_in_second_block += 1;
            }
            other => panic!("flip at {byte}: {other:?}"),
        }
    }
    println!(
        "flips in the unverified second block that decoded in range: {missed_in_second_block} of 256"
    );
    assert!(missed_in_second_block < 256, "the range checks catch some");
}

fn openssl(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    // A directory of its own per call: the tests run in parallel threads of one process.
    let dir = tempfile::tempdir().ok()?;
    let (inp, out) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
    std::fs::write(&inp, input).ok()?;
    let status = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(&inp)
        .arg("-out")
        .arg(&out)
        .status()
        .ok()?;
    assert!(status.success(), "openssl {args:?} failed");
    std::fs::read(&out).ok()
}

fn key_path(side: &str, file: &str) -> String {
    vectors_dir()
        .join(format!("c-peer/v1-rsa/{side}/{file}"))
        .display()
        .to_string()
}

/// Our block, sent by a client h2msg, undone by `openssl` with the node's private key and
/// the client's public key, then checked by the C receiver's rules written out here.
#[test]
fn openssl_undoes_our_handshake_and_the_c_rules_accept_it() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIPPED: no openssl command on this machine");
        return;
    }
    let hs = handshake("client", "node", 77);
    let wire = hs.pending().to_vec();
    let node_prv = key_path("node", "rsa.prv");
    let client_pub = key_path("client", "rsa.pub");
    let mut plain = Vec::new();
    for block in wire.chunks(256) {
        let p1 = openssl(
            &[
                "pkeyutl",
                "-decrypt",
                "-inkey",
                &node_prv,
                "-pkeyopt",
                "rsa_padding_mode:none",
            ],
            block,
        )
        .expect("openssl private op");
        assert_eq!(p1.len(), 256);
        assert_eq!(
            p1[0] & 0xC0,
            0,
            "the sender kept the private-op result below 2^2046"
        );
        let b = openssl(
            &[
                "pkeyutl",
                "-verifyrecover",
                "-pubin",
                "-inkey",
                &client_pub,
                "-pkeyopt",
                "rsa_padding_mode:none",
            ],
            &p1,
        )
        .expect("openssl public op");
        assert_eq!(b.len(), 256);
        plain.extend_from_slice(&b);
    }
    // §2.5, as the C receiver applies it.
    assert_eq!(&plain[8..10], &[0x32, 0x48], "magic, little-endian");
    assert_eq!(&plain[10..12], &[1, 0], "version 1");
    let sess: [u8; 64] = plain[0x10..0x50].try_into().unwrap();
    let mut sum = 0u32;
    for k in 0..16 {
        let x = sess[4 * k] ^ sess[4 * k + 1] ^ sess[4 * k + 2] ^ sess[4 * k + 3];
        sum += u32::from(x ^ plain[0x50 + k]);
    }
    assert_eq!(sum, 0, "verifier");
    assert_eq!(verifier(&sess)[..], plain[0x50..0x60]);
    assert_eq!(&plain[0x60..0x6E], b"Testing 1 2 3\0");
    assert_eq!(plain[0] & 0xC0, 0);
    assert_eq!(plain[0x100] & 0xC0, 0);
}

/// Our raw operations give the bytes `openssl` gives for the same key and input.
#[test]
fn raw_rsa_operations_match_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIPPED: no openssl command on this machine");
        return;
    }
    let mut keys = RsaKeys::new(private_key("node"), public_key("client"), TestRng(9)).unwrap();
    let mut input = [0u8; 256];
    for (i, b) in input.iter_mut().enumerate() {
        *b = (i * 37 + 11) as u8;
    }
    input[0] = 0x3A; // below any 2048-bit modulus
    let mut ours = [0u8; 256];
    keys.private_op(&input, &mut ours).unwrap();
    let theirs = openssl(
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            &key_path("node", "rsa.prv"),
            "-pkeyopt",
            "rsa_padding_mode:none",
        ],
        &input,
    )
    .unwrap();
    assert_eq!(ours[..], theirs[..], "private op");
    keys.peer_public_op(&input, &mut ours).unwrap();
    let theirs = openssl(
        &[
            "pkeyutl",
            "-verifyrecover",
            "-pubin",
            "-inkey",
            &key_path("client", "rsa.pub"),
            "-pkeyopt",
            "rsa_padding_mode:none",
        ],
        &input,
    )
    .unwrap();
    assert_eq!(ours[..], theirs[..], "public op");
}

#[test]
fn two_rsa_sides_agree_for_several_seeds() {
    for seed in 0..4u64 {
        let mut a = handshake("client", "node", seed);
        let mut b = handshake("node", "client", seed + 100);
        let (wa, wb) = (a.pending().to_vec(), b.pending().to_vec());
        // Uneven pieces.
        for piece in wb.chunks(37) {
            a.feed(piece);
        }
        for piece in wa.chunks(200) {
            b.feed(piece);
        }
        a.advance(HANDSHAKE_LEN).unwrap();
        b.advance(HANDSHAKE_LEN).unwrap();
        let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) = (a.poll(), b.poll()) else {
            panic!("seed {seed}");
        };
        assert_eq!(sa.keys_for_testing().1, sb.keys_for_testing().0);
        assert_eq!(sb.keys_for_testing().1, sa.keys_for_testing().0);
        assert_ne!(sa.keys_for_testing().0, sb.keys_for_testing().0);
    }
}

/// `me` finishing a block prepared with its own key alone, for `peer`.
fn prepared_handshake(me: &str, peer: &str, seed: u64, flags: u32) -> Hs {
    let mut own = OwnRsaKey::new(private_key(me), TestRng(seed));
    let block = PreparedBlock::prepare(
        &mut own,
        &mut TestRng(seed ^ 0xABCD),
        WireOrder::Little,
        flags,
    )
    .unwrap();
    let keys = RsaKeys::new(private_key(me), public_key(peer), TestRng(seed + 1)).unwrap();
    Handshake::with_prepared(block, keys, None, flags).unwrap()
}

#[test]
fn a_prepared_side_decodes_the_c_peers_block() {
    let rec = c_peer_recording();
    let sent_plain = hex(rec["handshake"]["client"]["tx_plain_hex"].as_str().unwrap());
    let mut hs = prepared_handshake("node", "client", 3, 0);
    let HandshakePoll::Done(session) = receive_block(&mut hs, &c_peer_wire("c2s")[..HANDSHAKE_LEN])
    else {
        panic!("a prepared node refused the C client's handshake");
    };
    assert_eq!(session.keys_for_testing().1[..], sent_plain[0x10..0x50]);
}

/// What a prepared side sends is what the C receiver would decode: its own private key
/// (here the C client's recorded key) then our public key, as §2.5 undoes them.
#[test]
fn a_prepared_side_and_a_one_shot_side_agree_with_the_c_keys() {
    for seed in 0..3u64 {
        for prepared_is_client in [true, false] {
            let (mut a, mut b) = if prepared_is_client {
                (
                    prepared_handshake("client", "node", seed, 0),
                    handshake("node", "client", seed + 100),
                )
            } else {
                (
                    handshake("client", "node", seed),
                    prepared_handshake("node", "client", seed + 100, 0),
                )
            };
            let (wa, wb) = (a.pending().to_vec(), b.pending().to_vec());
            a.feed(&wb);
            b.feed(&wa);
            a.advance(HANDSHAKE_LEN).unwrap();
            b.advance(HANDSHAKE_LEN).unwrap();
            let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) = (a.poll(), b.poll()) else {
                panic!("seed {seed}");
            };
            assert_eq!(sa.keys_for_testing().1, sb.keys_for_testing().0);
            assert_eq!(sb.keys_for_testing().1, sa.keys_for_testing().0);
        }
    }
}

#[test]
fn a_block_prepared_with_the_other_key_or_flags_is_refused() {
    let mut client = OwnRsaKey::new(private_key("client"), TestRng(1));
    let block = PreparedBlock::prepare(&mut client, &mut TestRng(2), WireOrder::Little, 0).unwrap();
    // The node's keys: its private key is not the client's.
    let node = RsaKeys::new(private_key("node"), public_key("client"), TestRng(3)).unwrap();
    assert_eq!(
        Handshake::with_prepared(block, node, None, 0).unwrap_err(),
        PreparedBlockError::KeyMismatch
    );
    let block = PreparedBlock::prepare(&mut client, &mut TestRng(4), WireOrder::Little, 1).unwrap();
    let client_keys = RsaKeys::new(private_key("client"), public_key("node"), TestRng(5)).unwrap();
    assert_eq!(
        Handshake::with_prepared(block, client_keys, None, 0).unwrap_err(),
        PreparedBlockError::FlagsMismatch {
            prepared: 1,
            requested: 0
        }
    );
}

mod agreement {
    use super::*;
    use h2msg::RsaOpError;
    use proptest::prelude::*;

    /// Test-only RSA stand-in (copies), so that many random seeds run quickly; the real
    /// keys are covered by `two_rsa_sides_agree_for_several_seeds`.
    struct Copy256;

    impl RawRsa for Copy256 {
        fn block_len(&self) -> usize {
            256
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            out.copy_from_slice(input);
            Ok(())
        }
        fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            out.copy_from_slice(input);
            Ok(())
        }
    }

    fn run<K: RawRsa>(
        mut a: Handshake<K>,
        mut b: Handshake<K>,
        piece: usize,
    ) -> (HandshakePoll, HandshakePoll) {
        let (wa, wb) = (a.pending().to_vec(), b.pending().to_vec());
        for chunk in wb.chunks(piece) {
            assert_eq!(a.feed(chunk), chunk.len());
        }
        for chunk in wa.chunks(piece) {
            assert_eq!(b.feed(chunk), chunk.len());
        }
        a.advance(HANDSHAKE_LEN).unwrap();
        b.advance(HANDSHAKE_LEN).unwrap();
        (a.poll(), b.poll())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn both_sides_learn_each_others_sess(seed_a: u64, seed_b: u64, piece in 1usize..600, rsa: bool) {
            let make = |seed: u64| {
                let mode = if rsa { KeyMode::Rsa(Copy256) } else { KeyMode::Plaintext };
                Handshake::new(mode, &mut TestRng(seed), WireOrder::Little, None).unwrap()
            };
            let (a, b) = (make(seed_a), make(seed_b));
            let (own_a, own_b) = (
                a.pending().to_vec(),
                b.pending().to_vec(),
            );
            let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) = run(a, b, piece) else {
                return Err(TestCaseError::fail("handshake failed"));
            };
            // With the copying stand-in the wire bytes are the plaintext blocks (bar the
            // retry counters), so each side's sess can be read off what it sent.
            prop_assert_eq!(&sa.keys_for_testing().0[..], &own_a[0x10..0x50]);
            prop_assert_eq!(&sb.keys_for_testing().0[..], &own_b[0x10..0x50]);
            prop_assert_eq!(sa.keys_for_testing().1, sb.keys_for_testing().0);
            prop_assert_eq!(sb.keys_for_testing().1, sa.keys_for_testing().0);
        }
    }
}
