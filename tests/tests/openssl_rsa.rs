//! The OpenSSL RSA backend (h2msg-std feature `openssl-rsa`) against the pure one (the `rsa`
//! crate, an independent implementation used as the oracle): the same outputs and errors
//! for the same inputs, both operations, both ways round; handshakes between an OpenSSL
//! side and a pure side; and the recorded 2012 C session decoded by an OpenSSL side.
//! Run with `cargo test -p h2msg-tests --features openssl-rsa --test openssl_rsa`.
#![cfg(feature = "openssl-rsa")]

use h2msg::rand_core::TryRng;
use h2msg::wire::{WireOrder, limits::HANDSHAKE_LEN};
use h2msg::{
    Handshake, HandshakePoll, KeyMode, OwnRsa, PreparedBlock, RawRsa, RsaKeys, RsaOpError,
    fit_private_result, private_block, public_block,
};
use h2msg_std::openssl_rsa::{OpensslKeyError, OpensslOwnRsa, OpensslRsa};
use h2msg_tests::{TestRng, c_peer_recording, c_peer_wire, hex, receive_block, vectors_dir};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

fn pem(side: &str, file: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(format!("c-peer/v1-rsa/{side}/{file}"))).unwrap()
}

fn private_key(side: &str) -> PrivateKey {
    PrivateKey::from_pkcs1_pem(&pem(side, "rsa.prv")).unwrap()
}

fn public_key(side: &str) -> PublicKey {
    PublicKey::from_public_key_pem(&pem(side, "rsa.pub")).unwrap()
}

/// `len` bytes from `rng`, with the top bit cleared so that the value is below any modulus
/// of that length (a modulus of `len` bytes has its top bit set).
fn below_modulus(rng: &mut TestRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        let word = rng.try_next_u64().unwrap().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    v[0] &= 0x7F;
    v
}

/// The modulus of `key`, big-endian over its block length.
fn modulus(key: &impl PublicKeyParts) -> Vec<u8> {
    let bytes = key.n().to_be_bytes();
    let mut n = vec![0u8; key.size()];
    let take = bytes.len().min(n.len());
    let len = n.len();
    n[len - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    n
}

/// For random inputs, OpenSSL's private and public operations give the pure
/// implementation's bytes, and each undoes the other's.
#[test]
fn random_inputs_give_the_pure_implementations_outputs_both_ways() {
    let (own, peer) = (private_key("node"), public_key("client"));
    let own_public = public_key("node");
    let mut ossl = OpensslRsa::new(&own, &peer).unwrap();
    // The pure side of the node talking to the node itself, for the round trips.
    let mut ossl_self = OpensslRsa::new(&own, &own_public).unwrap();
    assert_eq!(RawRsa::block_len(&ossl), 256);
    let mut rng = TestRng(0x5EED);
    for i in 0..64 {
        let input = below_modulus(&mut rng, 256);
        let (mut got, mut want) = (vec![0xAA; 256], vec![0x55; 256]);

        RawRsa::private_op(&mut ossl, &input, &mut got).unwrap();
        private_block(&own, &mut getrandom::SysRng, &input, &mut want).unwrap();
        assert_eq!(got, want, "private op, input {i}");
        // OpenSSL's private result, through the pure public op, is the input again.
        let mut back = vec![0u8; 256];
        public_block(&own_public, &got, &mut back).unwrap();
        assert_eq!(back, input, "pure public of OpenSSL private, input {i}");

        ossl.peer_public_op(&input, &mut got).unwrap();
        public_block(&peer, &input, &mut want).unwrap();
        assert_eq!(got, want, "public op, input {i}");

        // The pure private result, through OpenSSL's public op, is the input again.
        private_block(&own, &mut getrandom::SysRng, &input, &mut want).unwrap();
        ossl_self.peer_public_op(&want, &mut back).unwrap();
        assert_eq!(back, input, "OpenSSL public of pure private, input {i}");
    }
}

/// Small values have most leading bytes zero: OpenSSL's output is left-padded as the pure
/// one is (0 and 1 are fixed points of both operations).
#[test]
fn outputs_are_left_padded_to_the_block_length() {
    let (own, peer) = (private_key("node"), public_key("client"));
    let mut ossl = OpensslRsa::new(&own, &peer).unwrap();
    for value in [0u8, 1] {
        let mut input = vec![0u8; 256];
        input[255] = value;
        let mut out = vec![0xFF; 256];
        RawRsa::private_op(&mut ossl, &input, &mut out).unwrap();
        assert_eq!(out, input);
        out.fill(0xFF);
        ossl.peer_public_op(&input, &mut out).unwrap();
        assert_eq!(out, input);
    }
    // 2^e mod n: a full-width value, the pure implementation's.
    let mut input = vec![0u8; 256];
    input[255] = 2;
    let (mut got, mut want) = (vec![0u8; 256], vec![0u8; 256]);
    ossl.peer_public_op(&input, &mut got).unwrap();
    public_block(&peer, &input, &mut want).unwrap();
    assert_eq!(got, want);
}

/// Inputs at or above the modulus, and blocks of the wrong length, are refused with the
/// pure implementation's errors, by both operations.
#[test]
fn out_of_range_and_wrong_length_inputs_fail_as_the_pure_ones_do() {
    let (own, peer) = (private_key("node"), public_key("client"));
    let mut ossl = OpensslRsa::new(&own, &peer).unwrap();
    let (own_n, peer_n) = (modulus(&own), modulus(&peer));
    let plus_one = |n: &[u8]| {
        let mut v = n.to_vec();
        for b in v.iter_mut().rev() {
            let (s, carry) = b.overflowing_add(1);
            *b = s;
            if !carry {
                break;
            }
        }
        v
    };
    let minus_one = |n: &[u8]| {
        let mut v = n.to_vec();
        for b in v.iter_mut().rev() {
            let (s, borrow) = b.overflowing_sub(1);
            *b = s;
            if !borrow {
                break;
            }
        }
        v
    };
    let mut out = vec![0u8; 256];
    let mut pure = vec![0u8; 256];
    for input in [own_n.clone(), plus_one(&own_n), vec![0xFF; 256]] {
        let want = private_block(&own, &mut getrandom::SysRng, &input, &mut pure);
        assert_eq!(want, Err(RsaOpError::InputOutOfRange));
        assert_eq!(RawRsa::private_op(&mut ossl, &input, &mut out), want);
    }
    for input in [peer_n.clone(), plus_one(&peer_n), vec![0xFF; 256]] {
        let want = public_block(&peer, &input, &mut pure);
        assert_eq!(want, Err(RsaOpError::InputOutOfRange));
        assert_eq!(ossl.peer_public_op(&input, &mut out), want);
    }
    // n - 1 is in range, and (n-1)^odd = -1 = n - 1 (mod n).
    let top = minus_one(&own_n);
    RawRsa::private_op(&mut ossl, &top, &mut out).unwrap();
    assert_eq!(out, top);
    let top = minus_one(&peer_n);
    ossl.peer_public_op(&top, &mut out).unwrap();
    assert_eq!(out, top);

    for (in_len, out_len) in [(255, 256), (257, 256), (256, 255), (256, 257), (0, 0)] {
        let input = vec![1u8; in_len];
        let mut out = vec![0u8; out_len];
        let mut pure = vec![0u8; out_len];
        let want = private_block(&own, &mut getrandom::SysRng, &input, &mut pure);
        assert_eq!(want, Err(RsaOpError::WrongLength), "{in_len}/{out_len}");
        assert_eq!(RawRsa::private_op(&mut ossl, &input, &mut out), want);
        let want = public_block(&peer, &input, &mut pure);
        assert_eq!(want, Err(RsaOpError::WrongLength), "{in_len}/{out_len}");
        assert_eq!(ossl.peer_public_op(&input, &mut out), want);
    }
}

/// The pair operations on two threads give what the pure single operations give, each
/// block with its own outcome.
#[test]
fn the_pair_operations_match_the_pure_single_ones() {
    let own = private_key("client");
    let mut ossl = OpensslRsa::new(&own, &public_key("node")).unwrap();
    let mut rng = TestRng(77);
    for _ in 0..8 {
        let (a, b) = (below_modulus(&mut rng, 256), below_modulus(&mut rng, 256));
        let (mut oa, mut ob) = (vec![0u8; 256], vec![0u8; 256]);
        let [ra, rb] = ossl.private_op_pair([&a, &b], [&mut oa, &mut ob]);
        assert_eq!((ra, rb), (Ok(()), Ok(())));
        let (mut wa, mut wb) = (vec![0u8; 256], vec![0u8; 256]);
        private_block(&own, &mut getrandom::SysRng, &a, &mut wa).unwrap();
        private_block(&own, &mut getrandom::SysRng, &b, &mut wb).unwrap();
        assert_eq!((oa, ob), (wa, wb));

        // The send loop: the same retries and results as the pure one's.
        let (mut ba, mut bb) = (a.clone(), b.clone());
        let [ra, rb] = OwnRsa::private_results_pair(&mut ossl, [&mut ba, &mut bb]);
        assert_eq!((ra, rb), (Ok(()), Ok(())));
        let (mut pa, mut pb) = (a.clone(), b.clone());
        for block in [&mut pa, &mut pb] {
            fit_private_result(
                |i, o| private_block(&own, &mut getrandom::SysRng, i, o),
                block,
            )
            .unwrap();
        }
        assert_eq!((&ba, &bb), (&pa, &pb));
        assert!(ba[0] & 0xC0 == 0 && bb[0] & 0xC0 == 0);
    }
    // One bad input fails alone.
    let good = below_modulus(&mut rng, 256);
    let bad = vec![0xFF; 256];
    let (mut o1, mut o2) = (vec![0u8; 256], vec![0u8; 256]);
    let [r1, r2] = ossl.private_op_pair([&bad, &good], [&mut o1, &mut o2]);
    assert_eq!(r1, Err(RsaOpError::InputOutOfRange));
    assert_eq!(r2, Ok(()));
    let mut want = vec![0u8; 256];
    private_block(&own, &mut getrandom::SysRng, &good, &mut want).unwrap();
    assert_eq!(o2, want);
    let [r1, r2] = ossl.private_op_pair([&good, &bad], [&mut o1, &mut o2]);
    assert_eq!((r1, r2), (Ok(()), Err(RsaOpError::InputOutOfRange)));
    assert_eq!(o1, want);
}

/// The key id is the pure implementation's, so prepared blocks move between the two; a
/// PKCS#8 copy of the key converts to the same key; keys of different sizes are refused.
#[test]
fn key_conversion_keeps_the_key() {
    let own = private_key("node");
    let ossl = OpensslOwnRsa::new(&own).unwrap();
    assert_eq!(OwnRsa::own_key_id(&ossl), h2msg_std::prepared::key_id(&own));
    use rsa::pkcs8::EncodePrivateKey;
    let pkcs8 = own.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let again = PrivateKey::from_pkcs8_pem(&pkcs8).unwrap();
    let mut a = OpensslRsa::new(&own, &public_key("client")).unwrap();
    let mut b = OpensslRsa::new(&again, &public_key("client")).unwrap();
    let input = below_modulus(&mut TestRng(3), 256);
    let (mut oa, mut ob) = (vec![0u8; 256], vec![0u8; 256]);
    RawRsa::private_op(&mut a, &input, &mut oa).unwrap();
    RawRsa::private_op(&mut b, &input, &mut ob).unwrap();
    assert_eq!(oa, ob);

    let small = PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    match OpensslRsa::new(&small, &public_key("client")) {
        Err(OpensslKeyError::SizeMismatch(e)) => assert_eq!((e.own, e.peer), (128, 256)),
        other => panic!("{other:?}"),
    }
}

/// The recorded 2012 C session: an OpenSSL node decodes the C client's block (both blocks
/// at once, through the pair) and an OpenSSL client the C node's, to the plaintext the C
/// sides recorded.
#[test]
fn an_openssl_side_decodes_the_recorded_c_session() {
    let rec = c_peer_recording();
    for (me, peer, dir) in [("node", "client", "c2s"), ("client", "node", "s2c")] {
        let sent_plain = hex(rec["handshake"][peer]["tx_plain_hex"].as_str().unwrap());
        let keys = OpensslRsa::new(&private_key(me), &public_key(peer)).unwrap();
        let mut hs =
            Handshake::new(KeyMode::Rsa(keys), &mut TestRng(1), WireOrder::Little, None).unwrap();
        let HandshakePoll::Done(session) =
            receive_block(&mut hs, &c_peer_wire(dir)[..HANDSHAKE_LEN])
        else {
            panic!("the OpenSSL {me} refused the C {peer}'s handshake");
        };
        assert_eq!(
            session.keys_for_testing().1[..],
            sent_plain[0x10..0x50],
            "{dir}"
        );
        assert_eq!(session.peer_quickmsg_text(), b"Testing 1 2 3");
    }
}

/// Both peers finish, each knowing the other's session key.
fn exchange<A: RawRsa, B: RawRsa>(
    mut a: Handshake<A>,
    mut b: Handshake<B>,
) -> ([u8; 64], [u8; 64], [u8; 64], [u8; 64]) {
    let (wa, wb) = (a.pending().to_vec(), b.pending().to_vec());
    a.feed(&wb);
    b.feed(&wa);
    a.advance(HANDSHAKE_LEN).unwrap();
    b.advance(HANDSHAKE_LEN).unwrap();
    let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) = (a.poll(), b.poll()) else {
        panic!("the handshake failed");
    };
    (
        *sa.keys_for_testing().0,
        *sa.keys_for_testing().1,
        *sb.keys_for_testing().0,
        *sb.keys_for_testing().1,
    )
}

/// An OpenSSL client and a pure node interoperate, one-shot and with a block the OpenSSL
/// side prepared (on two threads), and the other way round.
#[test]
fn an_openssl_side_and_a_pure_side_complete_handshakes() {
    for seed in 0..3u64 {
        // OpenSSL client, one-shot; pure node.
        let client = OpensslRsa::new(&private_key("client"), &public_key("node")).unwrap();
        let client = Handshake::new(
            KeyMode::Rsa(client),
            &mut TestRng(seed),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let node =
            RsaKeys::new(private_key("node"), public_key("client"), TestRng(seed + 1)).unwrap();
        let node = Handshake::new(
            KeyMode::Rsa(node),
            &mut TestRng(seed + 2),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let (c_own, c_peer, n_own, n_peer) = exchange(client, node);
        assert_eq!((c_peer, n_peer), (n_own, c_own));

        // OpenSSL node with a prepared block; pure client one-shot.
        let mut node = OpensslRsa::new(&private_key("node"), &public_key("client")).unwrap();
        let block = PreparedBlock::prepare(&mut node, &mut TestRng(seed + 3), WireOrder::Little, 0)
            .unwrap();
        let sess = *block.sess_for_testing();
        let node = Handshake::with_prepared(block, node, None, 0).unwrap();
        let client =
            RsaKeys::new(private_key("client"), public_key("node"), TestRng(seed + 4)).unwrap();
        let client = Handshake::new(
            KeyMode::Rsa(client),
            &mut TestRng(seed + 5),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let (n_own, n_peer, c_own, c_peer) = exchange(node, client);
        assert_eq!(n_own, sess);
        assert_eq!((c_peer, n_peer), (n_own, c_own));

        // A block prepared by the pure key finishes with the OpenSSL keys (same key id).
        let mut pure_own = h2msg::OwnRsaKey::new(private_key("client"), TestRng(seed + 6));
        let block =
            PreparedBlock::prepare(&mut pure_own, &mut TestRng(seed + 7), WireOrder::Little, 0)
                .unwrap();
        let client = OpensslRsa::new(&private_key("client"), &public_key("node")).unwrap();
        let client = Handshake::with_prepared(block, client, None, 0).unwrap();
        let node = OpensslRsa::new(&private_key("node"), &public_key("client")).unwrap();
        let node = Handshake::new(
            KeyMode::Rsa(node),
            &mut TestRng(seed + 8),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let (c_own, c_peer, n_own, n_peer) = exchange(client, node);
        assert_eq!((c_peer, n_peer), (n_own, c_own));
    }
}
