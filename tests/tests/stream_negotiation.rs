//! Negotiating the stream mode through the handshake's `flags` field: two h2msg nodes end
//! in `gcm`, a 2012 C node (flags 0) gets the era mode, and a man in the middle cannot
//! strip the flag: any change to the RSA-transformed block fails the handshake.

use h2msg::wire::{Cmd, IoqError, MsgHeader, WireOrder, limits::HANDSHAKE_LEN};
use h2msg::{
    FLAG_GCM, Handshake, HandshakePoll, KeyMode, LinkSetup, ModeChoice, NegotiateError, NonePeer,
    RETIRED_FLAG_GCM_CHUNKS, RsaKeys, Session, StreamMode, UnknownMode,
};
use h2msg_tests::sim::{Pair, Side, SideConfig};
use h2msg_tests::{TestRng, c_peer_wire, receive_block, vectors_dir};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{PrivateKey, PublicKey};

type Hs = Handshake<RsaKeys<TestRng>>;

/// A gcm FIFO holds the largest header and a whole record (protocol.md §2.9).
const GCM_FIFO: usize = 2048 + 4 + 16_384 + 16;

/// The receive FIFO of the sides these tests build: the std adapter's 64 KiB.
const FIFO: usize = 64 * 1024;

fn handshake(me: &str, peer: &str, seed: u64, choice: ModeChoice) -> Hs {
    handshake_for_fifo(me, peer, seed, choice, FIFO)
}

fn handshake_for_fifo(me: &str, peer: &str, seed: u64, choice: ModeChoice, fifo: usize) -> Hs {
    let dir = vectors_dir().join("c-peer/v1-rsa");
    let prv = std::fs::read_to_string(dir.join(me).join("rsa.prv")).unwrap();
    let public = std::fs::read_to_string(dir.join(peer).join("rsa.pub")).unwrap();
    let keys = RsaKeys::new(
        PrivateKey::from_pkcs1_pem(&prv).unwrap(),
        PublicKey::from_public_key_pem(&public).unwrap(),
        TestRng(seed),
    )
    .unwrap();
    Handshake::with_flags(
        KeyMode::Rsa(keys),
        &mut TestRng(seed ^ 0xABCD),
        WireOrder::Little,
        None,
        choice.handshake_flags(fifo),
    )
    .unwrap()
}

fn done(poll: HandshakePoll) -> Session {
    match poll {
        HandshakePoll::Done(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Runs both sides' handshakes against each other; returns (node, client) sessions.
fn exchange(node: ModeChoice, client: ModeChoice) -> (Session, Session) {
    exchange_with_node_fifo(node, client, FIFO)
}

/// [`exchange`], the node's flags made for a receive FIFO of `node_fifo` bytes.
fn exchange_with_node_fifo(
    node: ModeChoice,
    client: ModeChoice,
    node_fifo: usize,
) -> (Session, Session) {
    let mut n = handshake_for_fifo("node", "client", 1, node, node_fifo);
    let mut c = handshake("client", "node", 2, client);
    let (n_wire, c_wire) = (n.pending().to_vec(), c.pending().to_vec());
    (
        done(receive_block(&mut n, &c_wire)),
        done(receive_block(&mut c, &n_wire)),
    )
}

#[test]
fn two_h2msg_nodes_on_auto_end_in_gcm_and_talk() {
    let (ns, cs) = exchange(ModeChoice::Auto, ModeChoice::Auto);
    assert_eq!((ns.peer_flags(), cs.peer_flags()), (FLAG_GCM, FLAG_GCM));
    assert!(ns.is_authenticated() && cs.is_authenticated());
    let ns = LinkSetup::negotiate(ns, ModeChoice::Auto).unwrap();
    let cs = LinkSetup::negotiate(cs, ModeChoice::Auto).unwrap();
    assert_eq!([ns.mode(), cs.mode()], [StreamMode::Gcm, StreamMode::Gcm]);

    let config = SideConfig {
        fifo: GCM_FIFO,
        ..SideConfig::default()
    };
    let a = Side::with_setup(&config, cs, None);
    let mut b = Side::with_setup(&config, ns, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    let mut pair = Pair::new(a, b, 100);
    pair.a
        .io
        .send(MsgHeader::new(Cmd::DBG_SHELL), &[], b"status\0")
        .unwrap();
    pair.run(10_000);
    let got = pair.b.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].aux[..7], b"status\0");
}

/// An `auto` node whose receive FIFO cannot hold a gcm record does not offer gcm: two
/// such nodes settle on `seed` and the small side's connection is built (offering gcm
/// would have agreed to a mode its memory refuses). One byte more and gcm is offered.
#[test]
fn an_auto_node_with_a_fifo_too_small_for_a_record_settles_on_seed() {
    let small = GCM_FIFO - 1;
    let (ns, cs) = exchange_with_node_fifo(ModeChoice::Auto, ModeChoice::Auto, small);
    assert_eq!((ns.own_flags(), cs.peer_flags()), (0, 0), "not offered");
    let ns = LinkSetup::negotiate(ns, ModeChoice::Auto).unwrap();
    let cs = LinkSetup::negotiate(cs, ModeChoice::Auto).unwrap();
    assert_eq!([ns.mode(), cs.mode()], [StreamMode::Seed, StreamMode::Seed]);
    let small_side = SideConfig {
        fifo: small,
        ..SideConfig::default()
    };
    let mut a = Side::with_setup(&SideConfig::default(), cs, None);
    let mut b = Side::with_setup(&small_side, ns, None);
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    a.io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], b"x")
        .unwrap();
    let mut pair = Pair::new(a, b, 100);
    pair.run(10_000);
    assert_eq!(pair.b.messages().len(), 1);

    assert_eq!(StreamMode::Gcm.receive_fifo_min(), GCM_FIFO);
    assert_eq!(ModeChoice::Auto.handshake_flags(GCM_FIFO), FLAG_GCM);
    assert_eq!(ModeChoice::Auto.handshake_flags(small), 0);
    // Asked for explicitly, gcm is offered whatever the FIFO (its memory check says no).
    assert_eq!(ModeChoice::Gcm.handshake_flags(small), FLAG_GCM);
}

/// An h2msg build from before the record framing offered gcm with bit 0x1 (64-byte
/// chunks). The bit is no longer sent, and a peer offering only it cannot do gcm: `auto`
/// falls back to the era mode, `gcm` refuses — the two framings never meet on a link.
#[test]
fn the_retired_chunk_flag_is_neither_sent_nor_taken_as_an_offer() {
    assert_eq!(RETIRED_FLAG_GCM_CHUNKS, 0x1);
    assert_eq!(FLAG_GCM, 0x2, "protocol.md §2.1");
    for choice in [ModeChoice::Auto, ModeChoice::Gcm] {
        assert_eq!(
            choice.handshake_flags(FIFO) & RETIRED_FLAG_GCM_CHUNKS,
            0,
            "{choice}"
        );
    }
    let old_peer = RETIRED_FLAG_GCM_CHUNKS;
    let auto = ModeChoice::Auto;
    assert_eq!(
        auto.select(auto.handshake_flags(FIFO), old_peer),
        Ok(StreamMode::Seed)
    );
    assert_eq!(
        ModeChoice::Gcm.select(FLAG_GCM, old_peer),
        Err(NegotiateError::PeerCannotGcm { peer_flags: 0x1 })
    );
    // What an old build does with our flags: it looks for bit 0x1 alone, finds none.
    assert_eq!(ModeChoice::Auto.handshake_flags(FIFO) & 0x1, 0);
}

#[test]
fn the_configured_era_mode_applies_when_one_side_does_not_offer_gcm() {
    for (node, client, expect) in [
        (ModeChoice::Auto, ModeChoice::Seed, StreamMode::Seed),
        (ModeChoice::Cbc, ModeChoice::Cbc, StreamMode::Cbc),
        (ModeChoice::Gcm, ModeChoice::Auto, StreamMode::Gcm),
    ] {
        let (ns, cs) = exchange(node, client);
        assert_eq!(
            LinkSetup::negotiate(ns, node).map(|s| s.mode()),
            Ok(expect),
            "{node} vs {client}"
        );
        assert_eq!(
            LinkSetup::negotiate(cs, client).map(|s| s.mode()),
            Ok(expect),
            "{client} vs {node}"
        );
    }
    let (ns, _) = exchange(ModeChoice::Gcm, ModeChoice::Cbc);
    let refused = LinkSetup::negotiate(ns, ModeChoice::Gcm).unwrap_err();
    assert_eq!(refused, NegotiateError::PeerCannotGcm { peer_flags: 0 });
    assert_eq!(refused.ioq_error(), IoqError::Algo);
}

#[test]
fn a_2012_c_node_sends_flags_zero_and_gets_the_era_mode() {
    let wire = c_peer_wire("c2s");
    let mut node = handshake("node", "client", 3, ModeChoice::Auto);
    let session = done(receive_block(&mut node, &wire[..HANDSHAKE_LEN]));
    assert_eq!(session.peer_flags(), 0);
    let (own, peer) = (session.own_flags(), session.peer_flags());
    assert_eq!(
        ModeChoice::Gcm.select(own, peer),
        Err(NegotiateError::PeerCannotGcm { peer_flags: 0 })
    );
    assert_eq!(
        LinkSetup::negotiate(session, ModeChoice::Auto).map(|s| s.mode()),
        Ok(StreamMode::Seed)
    );
}

/// A man in the middle who wants `seed` instead of `gcm` must clear the flag in the
/// client's block. The block travels RSA-transformed: every bit flip in the bytes that
/// carry `flags` (0x0C..0x10), and anywhere else in the first RSA block, fails the
/// handshake with KEYXCHGFAIL — it never completes with different flags.
#[test]
fn tampering_with_the_flags_fails_the_handshake_no_silent_downgrade() {
    let client = handshake("client", "node", 2, ModeChoice::Auto);
    let wire = client.pending().to_vec();
    let flag_bits = (0x0C * 8..0x10 * 8).collect::<Vec<_>>();
    let block_bits = (0..256).step_by(9).map(|byte| byte * 8 + byte % 8);
    for bit in flag_bits.into_iter().chain(block_bits) {
        let mut tampered = wire.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let mut node = handshake("node", "client", 1, ModeChoice::Auto);
        match receive_block(&mut node, &tampered) {
            HandshakePoll::Failed(e) => assert_eq!(e.ioq_error(), IoqError::KeyXchgFail),
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    // Untouched, the same bytes are accepted and carry the flag.
    let mut node = handshake("node", "client", 1, ModeChoice::Auto);
    assert_eq!(done(receive_block(&mut node, &wire)).peer_flags(), FLAG_GCM);
}

#[test]
fn none_peers_are_plaintext_and_gcm_refuses_them() {
    assert_eq!(
        ModeChoice::Auto.none_peer(),
        Ok(NonePeer::ExchangePlaintextBlock)
    );
    assert_eq!(
        ModeChoice::Seed.none_peer(),
        Ok(NonePeer::ExchangePlaintextBlock)
    );
    assert_eq!(ModeChoice::Cbc.none_peer(), Ok(NonePeer::SkipHandshake));
    assert_eq!(
        ModeChoice::Gcm.none_peer(),
        Err(NegotiateError::GcmNeedsRsa)
    );
}

#[test]
fn mode_names_parse_and_print() {
    for (text, choice) in [
        ("auto", ModeChoice::Auto),
        ("seed", ModeChoice::Seed),
        ("cbc", ModeChoice::Cbc),
        ("gcm", ModeChoice::Gcm),
    ] {
        assert_eq!(text.parse::<ModeChoice>(), Ok(choice));
        assert_eq!(choice.to_string(), text);
    }
    assert!("aes".parse::<ModeChoice>().is_err());
    assert_eq!(StreamMode::Gcm.to_string(), "gcm");
    assert_eq!(ModeChoice::default(), ModeChoice::Auto);
}

/// Every stream error prints ALGO (20, §4.4) and what was wrong, so a log line says why a
/// link was refused.
#[test]
fn stream_errors_print_their_code_and_what_was_wrong() {
    let unknown = UnknownMode.to_string();
    for name in ["auto", "seed", "cbc", "gcm"] {
        assert!(unknown.contains(name), "{unknown}");
    }
    let algo = "IOQ error 20 (ALGO): ";
    let cases = [
        (
            NegotiateError::PeerCannotGcm { peer_flags: 0x10 }.to_string(),
            "0x00000010",
        ),
        (NegotiateError::GcmNeedsRsa.to_string(), ".none"),
        (
            NegotiateError::Unsupported(StreamMode::Cbc).to_string(),
            "cbc",
        ),
        (
            NegotiateError::ReflectedSession.to_string(),
            "reflected handshake block",
        ),
    ];
    for (text, detail) in cases {
        assert!(text.starts_with(algo), "{text}");
        assert!(text.contains(detail), "{text}");
    }
}
