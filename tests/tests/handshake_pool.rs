//! The std pool of prepared handshake blocks (issue #18, "Bad input"): no block is handed
//! out twice, under refills and under concurrent takers, and its blocks finish into
//! handshakes that a one-shot peer accepts.

use std::collections::HashSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use h2msg::wire::{WireOrder, limits::HANDSHAKE_LEN};
use h2msg::{Handshake, HandshakePoll, KeyMode, PreparedBlock, RsaKeys};
use h2msg_std::prepared::{BlockPool, key_id};
use h2msg_tests::{TestRng, vectors_dir};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{PrivateKey, PublicKey};

/// Generous: filling a pool takes a few tens of milliseconds in a test build.
const FILL_TIMEOUT: Duration = Duration::from_secs(60);

fn private_key(side: &str) -> PrivateKey {
    let path = vectors_dir().join(format!("c-peer/v1-rsa/{side}/rsa.prv"));
    PrivateKey::from_pkcs1_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn public_key(side: &str) -> PublicKey {
    let path = vectors_dir().join(format!("c-peer/v1-rsa/{side}/rsa.pub"));
    PublicKey::from_public_key_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sess(block: &PreparedBlock) -> [u8; 64] {
    *block.sess_for_testing()
}

#[test]
fn the_pool_never_hands_out_a_block_twice_across_refills() {
    let pool = BlockPool::start(private_key("client"), 0x5, 3).unwrap();
    assert_eq!(pool.key(), key_id(&private_key("client")));
    let mut seen = HashSet::new();
    for round in 0..3 {
        assert!(
            pool.wait_full(FILL_TIMEOUT),
            "round {round}: the pool refills"
        );
        assert_eq!(pool.ready(), 3);
        for _ in 0..3 {
            let block = pool.take().expect("a full pool has blocks");
            assert_eq!(block.flags(), 0x5);
            assert_eq!(block.key_id(), pool.key());
            assert!(
                seen.insert(sess(&block)),
                "round {round}: a block came back"
            );
        }
    }
    assert_eq!(seen.len(), 9);
    assert!(pool.prepared() >= 9);
}

#[test]
fn concurrent_takers_each_get_distinct_blocks() {
    const TAKERS: usize = 4;
    const WANTED: usize = 12;
    let pool = Arc::new(BlockPool::start(private_key("node"), 0, 4).unwrap());
    assert!(pool.wait_full(FILL_TIMEOUT));
    let taken = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(TAKERS));
    let threads: Vec<_> = (0..TAKERS)
        .map(|_| {
            let (pool, taken, start) = (Arc::clone(&pool), Arc::clone(&taken), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                loop {
                    if taken.lock().unwrap().len() >= WANTED {
                        return;
                    }
                    match pool.take() {
                        Some(block) => taken.lock().unwrap().push(sess(&block)),
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let taken = taken.lock().unwrap();
    let distinct: HashSet<_> = taken.iter().collect();
    assert!(taken.len() >= WANTED);
    assert_eq!(distinct.len(), taken.len(), "a block went to two takers");
}

#[test]
fn a_pooled_block_finishes_into_a_handshake_the_one_shot_path_accepts() {
    let pool = BlockPool::start(private_key("client"), 0, 2).unwrap();
    assert!(pool.wait_full(FILL_TIMEOUT));
    let block = pool.take().unwrap();
    let own_sess = sess(&block);
    let keys = RsaKeys::new(private_key("client"), public_key("node"), TestRng(1)).unwrap();
    let mut client = Handshake::with_prepared(block, keys, None, 0).unwrap();
    let node_keys = RsaKeys::new(private_key("node"), public_key("client"), TestRng(2)).unwrap();
    let mut node = Handshake::new(
        KeyMode::Rsa(node_keys),
        &mut TestRng(3),
        WireOrder::Little,
        None,
    )
    .unwrap();
    let (wc, wn) = (client.pending().to_vec(), node.pending().to_vec());
    client.feed(&wn);
    node.feed(&wc);
    client.advance(HANDSHAKE_LEN).unwrap();
    node.advance(HANDSHAKE_LEN).unwrap();
    let (HandshakePoll::Done(sc), HandshakePoll::Done(sn)) = (client.poll(), node.poll()) else {
        panic!("the handshake failed");
    };
    assert_eq!(sc.keys_for_testing().0, &own_sess);
    assert_eq!(sn.keys_for_testing().1, &own_sess);
    assert_eq!(sc.keys_for_testing().1, sn.keys_for_testing().0);
}

/// The process-wide pools `link::handshake` uses: none for a single handshake, one from
/// the second on, per key and flags.
#[test]
fn the_process_pool_starts_at_the_second_handshake() {
    use h2msg_std::prepared::{pool_started, set_pool_size, take_prepared, warm_up};
    set_pool_size(2);
    let node = private_key("node");
    assert!(!pool_started(&node, 0x40), "no handshake yet, no pool");
    assert!(
        take_prepared(&node, 0x40).is_none(),
        "one handshake starts no pool"
    );
    assert!(
        !pool_started(&node, 0x40),
        "the first handshake must not start the pool"
    );
    // The second starts it (without warm_up); it is empty at first.
    let _ = take_prepared(&node, 0x40);
    assert!(
        pool_started(&node, 0x40),
        "the second handshake starts the pool"
    );
    // warm_up now hands back the pool the second handshake started.
    let pool = warm_up(&node, 0x40).expect("started at the second handshake");
    assert!(pool.wait_full(FILL_TIMEOUT));
    let block = take_prepared(&node, 0x40).expect("a full pool");
    assert_eq!((block.flags(), block.key_id()), (0x40, key_id(&node)));
    // Other flags are another pool.
    let other = warm_up(&node, 0x41).unwrap();
    assert!(!Arc::ptr_eq(&pool, &other));
    assert!(other.wait_full(FILL_TIMEOUT));
    assert_eq!(take_prepared(&node, 0x41).unwrap().flags(), 0x41);
}

/// The std RSA that decrypts both received blocks on two threads decodes the recorded C
/// client's handshake (all 512 bytes at once, so both blocks go through the pair), and
/// agrees with a prepared peer.
#[test]
fn threaded_rsa_decodes_the_c_client_and_agrees_with_a_prepared_peer() {
    use h2msg_std::threaded_rsa::ThreadedRsa;
    use h2msg_tests::{c_peer_recording, c_peer_wire, hex, receive_block};
    let rec = c_peer_recording();
    let sent_plain = hex(rec["handshake"]["client"]["tx_plain_hex"].as_str().unwrap());
    let node = ThreadedRsa::new(private_key("node"), public_key("client")).unwrap();
    let mut hs =
        Handshake::new(KeyMode::Rsa(node), &mut TestRng(1), WireOrder::Little, None).unwrap();
    let HandshakePoll::Done(session) = receive_block(&mut hs, &c_peer_wire("c2s")[..HANDSHAKE_LEN])
    else {
        panic!("the threaded node refused the C client's handshake");
    };
    assert_eq!(session.keys_for_testing().1[..], sent_plain[0x10..0x50]);

    let mut client_keys =
        RsaKeys::new(private_key("client"), public_key("node"), TestRng(2)).unwrap();
    let block =
        PreparedBlock::prepare(&mut client_keys, &mut TestRng(3), WireOrder::Little, 0).unwrap();
    let mut client = Handshake::with_prepared(block, client_keys, None, 0).unwrap();
    let node = ThreadedRsa::new(private_key("node"), public_key("client")).unwrap();
    let mut node =
        Handshake::new(KeyMode::Rsa(node), &mut TestRng(4), WireOrder::Little, None).unwrap();
    let (wc, wn) = (client.pending().to_vec(), node.pending().to_vec());
    client.feed(&wn);
    node.feed(&wc);
    client.advance(HANDSHAKE_LEN).unwrap();
    node.advance(HANDSHAKE_LEN).unwrap();
    let (HandshakePoll::Done(sc), HandshakePoll::Done(sn)) = (client.poll(), node.poll()) else {
        panic!("the handshake failed");
    };
    assert_eq!(sc.keys_for_testing().1, sn.keys_for_testing().0);
    assert_eq!(sn.keys_for_testing().1, sc.keys_for_testing().0);
}

/// A block prepared by `ThreadedRsa` (both RSA blocks' send loops on two threads) finishes
/// into a handshake that a one-shot `RsaKeys` peer accepts, for several draws.
#[test]
fn a_block_prepared_on_two_threads_interoperates_with_the_one_shot_path() {
    use h2msg_std::threaded_rsa::ThreadedRsa;
    for seed in 0..3 {
        let mut client = ThreadedRsa::new(private_key("client"), public_key("node")).unwrap();
        let block =
            PreparedBlock::prepare(&mut client, &mut TestRng(seed), WireOrder::Little, 0).unwrap();
        let own_sess = sess(&block);
        let mut client = Handshake::with_prepared(block, client, None, 0).unwrap();
        let node =
            RsaKeys::new(private_key("node"), public_key("client"), TestRng(seed + 9)).unwrap();
        let mut node = Handshake::new(
            KeyMode::Rsa(node),
            &mut TestRng(seed + 5),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let (wc, wn) = (client.pending().to_vec(), node.pending().to_vec());
        client.feed(&wn);
        node.feed(&wc);
        client.advance(HANDSHAKE_LEN).unwrap();
        node.advance(HANDSHAKE_LEN).unwrap();
        let (HandshakePoll::Done(sc), HandshakePoll::Done(sn)) = (client.poll(), node.poll())
        else {
            panic!("seed {seed}: the handshake failed");
        };
        assert_eq!(sn.keys_for_testing().1, &own_sess);
        assert_eq!(sc.keys_for_testing().1, sn.keys_for_testing().0);
    }
}
