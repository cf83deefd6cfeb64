//! Handshake cost with 2048-bit keys, against the raw RSA operations it performs, measured
//! in the same run: per side (build and encrypt our block, decrypt the peer's) and per
//! connection (both sides in one process); and the same with blocks prepared beforehand
//! ([`PreparedBlock`], as the std pool keeps them), next to the one-shot path in the same
//! rounds.
//!
//! Run: `cargo bench -p h2msg --features crypto --bench handshake`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark binary: a panic is a failed run"
)]

mod common;
use common::{median, time};

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use h2msg::wire::WireOrder;
use h2msg::{
    Handshake, HandshakePoll, KeyMode, OwnKeyId, PreparedBlock, RawRsa, RsaKeys, RsaOpError,
};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{PrivateKey, PublicKey};

/// Deterministic generator for the benchmark (not secure; the bench measures time only).
struct BenchRng(u64);

impl rand_core::TryRng for BenchRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Ok(self.0 ^ (self.0 >> 29))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for BenchRng {}

fn key_file(side: &str, file: &str) -> String {
    let path = format!(
        "{}/../tests/vectors/c-peer/v1-rsa/{side}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn keys(me: &str, peer: &str, seed: u64) -> RsaKeys<BenchRng> {
    let own = PrivateKey::from_pkcs1_pem(&key_file(me, "rsa.prv")).unwrap();
    let peer = PublicKey::from_public_key_pem(&key_file(peer, "rsa.pub")).unwrap();
    RsaKeys::new(own, peer, BenchRng(seed)).unwrap()
}

fn main() {
    let rounds = 31;
    let mut k = keys("client", "node", 1);
    let block: Vec<u8> = (0..256)
        .map(|i| if i == 0 { 0x2A } else { (i * 13) as u8 })
        .collect();
    let mut out = vec![0u8; 256];
    let private = time(rounds, |_| {
        k.private_op(black_box(&block), &mut out).unwrap()
    });
    let public = time(rounds, |_| {
        k.peer_public_op(black_box(&block), &mut out).unwrap()
    });

    // One side: build and encrypt our block (per block: private ops until the result fits,
    // then a public op), then undo the peer's (per block: one private, one public op).
    // Keys are parsed outside the timing: loading key files is not part of the handshake.
    let peer_bytes = Handshake::new(
        KeyMode::Rsa(keys("node", "client", 2)),
        &mut BenchRng(3),
        WireOrder::Little,
        None,
    )
    .unwrap()
    .pending()
    .to_vec();
    let private_ops = Rc::new(Cell::new(0u32));
    let public_ops = Rc::new(Cell::new(0u32));
    let mut ratios = Vec::new();
    let mut sides = Vec::new();
    let (mut total_private, mut total_public) = (0, 0);
    for i in 0..rounds {
        let mut counted = Counting {
            keys: keys("client", "node", i as u64),
            private: Rc::clone(&private_ops),
            public: Rc::clone(&public_ops),
        };
        // This round's cost of one private op, measured next to the handshake it explains.
        let op_start = Instant::now();
        for _ in 0..3 {
            counted
                .keys
                .private_op(black_box(&block), &mut out)
                .unwrap();
        }
        let private_now = op_start.elapsed() / 3;
        private_ops.set(0);
        public_ops.set(0);
        let start = Instant::now();
        let mut hs = Handshake::new(
            KeyMode::Rsa(counted),
            &mut BenchRng(i as u64),
            WireOrder::Little,
            None,
        )
        .unwrap();
        hs.feed(&peer_bytes);
        let n = hs.pending().len();
        hs.advance(n).unwrap();
        assert!(matches!(hs.poll(), HandshakePoll::Done(_)));
        let elapsed = start.elapsed();
        let (ops, public_n) = (private_ops.get(), public_ops.get());
        total_private += ops;
        total_public += public_n;
        // This run's own raw RSA work.
        let raw = private_now * ops + public * public_n;
        ratios.push(elapsed.as_secs_f64() / raw.as_secs_f64());
        sides.push(elapsed);
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[rounds / 2];
    let side = median(sides);

    // One side again, its block prepared beforehand (outside the timing): the private ops
    // of the send loop are counted apart, as the pool's background work.
    let mut prepared_sides = Vec::new();
    let (mut total_prepare_private, mut total_finish_private) = (0, 0);
    for i in 0..rounds {
        let mut counted = Counting {
            keys: keys("client", "node", i as u64),
            private: Rc::clone(&private_ops),
            public: Rc::clone(&public_ops),
        };
        private_ops.set(0);
        let block =
            PreparedBlock::prepare(&mut counted, &mut BenchRng(i as u64), WireOrder::Little, 0)
                .unwrap();
        total_prepare_private += private_ops.get();
        private_ops.set(0);
        let start = Instant::now();
        let mut hs = Handshake::with_prepared(block, counted, None, 0).unwrap();
        hs.feed(&peer_bytes);
        let n = hs.pending().len();
        hs.advance(n).unwrap();
        assert!(matches!(hs.poll(), HandshakePoll::Done(_)));
        prepared_sides.push(start.elapsed());
        total_finish_private += private_ops.get();
    }
    let prepared_side = median(prepared_sides);
    let prepare_private_per_block = f64::from(total_prepare_private) / rounds as f64;
    let finish_private_per_side = f64::from(total_finish_private) / rounds as f64;
    let private_per_side = f64::from(total_private) / rounds as f64;
    let public_per_side = f64::from(total_public) / rounds as f64;

    // Both sides in one process, one-shot and prepared in the same round, so that drift
    // hits both alike; the blocks are prepared outside the timing.
    let mut one_shot = Vec::new();
    let mut prepared = Vec::new();
    let mut connection_ratios = Vec::new();
    for i in 0..rounds {
        let seed = i as u64;
        // Keys are parsed outside the timing, as above.
        let (ka, kb) = (
            keys("client", "node", seed),
            keys("node", "client", 7 + seed),
        );
        let start = Instant::now();
        let a = Handshake::new(
            KeyMode::Rsa(ka),
            &mut BenchRng(seed),
            WireOrder::Little,
            None,
        )
        .unwrap();
        let b = Handshake::new(
            KeyMode::Rsa(kb),
            &mut BenchRng(9 + seed),
            WireOrder::Little,
            None,
        )
        .unwrap();
        connect(a, b);
        let one_shot_now = start.elapsed();

        let (mut ka, mut kb) = (
            keys("client", "node", seed),
            keys("node", "client", 7 + seed),
        );
        let ba =
            PreparedBlock::prepare(&mut ka, &mut BenchRng(seed), WireOrder::Little, 0).unwrap();
        let bb =
            PreparedBlock::prepare(&mut kb, &mut BenchRng(9 + seed), WireOrder::Little, 0).unwrap();
        let start = Instant::now();
        let a = Handshake::with_prepared(ba, ka, None, 0).unwrap();
        let b = Handshake::with_prepared(bb, kb, None, 0).unwrap();
        connect(a, b);
        let prepared_now = start.elapsed();
        connection_ratios.push(prepared_now.as_secs_f64() / one_shot_now.as_secs_f64());
        one_shot.push(one_shot_now);
        prepared.push(prepared_now);
    }
    connection_ratios.sort_by(f64::total_cmp);
    let connection_ratio = connection_ratios[rounds / 2];
    let connection = median(one_shot);
    let prepared_connection = median(prepared);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("2048-bit keys, medians of {rounds} runs");
    println!("raw private op (blinded, CRT):   {:8.3} ms", ms(private));
    println!("raw public op:                   {:8.3} ms", ms(public));
    println!(
        "private ops per side (retries included): {private_per_side:.2}; public ops: {public_per_side:.2}"
    );
    println!(
        "one side (build, send, receive): {:8.3} ms; / its own raw RSA operations: {ratio:.2}x",
        ms(side)
    );
    println!("one connection (both sides):     {:8.3} ms", ms(connection));
    println!(
        "prepared block: {prepare_private_per_block:.2} private ops to make (in the background)"
    );
    println!(
        "one side, block prepared:        {:8.3} ms ({finish_private_per_side:.2} private ops); / one-shot side: {:.2}x",
        ms(prepared_side),
        prepared_side.as_secs_f64() / side.as_secs_f64()
    );
    println!(
        "one connection, both prepared:   {:8.3} ms; / one-shot connection, same rounds: {connection_ratio:.2}x",
        ms(prepared_connection)
    );
}

/// Runs two handshakes against each other in memory until both are done.
fn connect<K: RawRsa>(mut a: Handshake<K>, mut b: Handshake<K>) {
    let (wa, wb) = (a.pending().to_vec(), b.pending().to_vec());
    a.feed(&wb);
    b.feed(&wa);
    a.advance(512).unwrap();
    b.advance(512).unwrap();
    assert!(matches!(
        (a.poll(), b.poll()),
        (HandshakePoll::Done(_), HandshakePoll::Done(_))
    ));
}

/// Counts the private and public operations of `keys`.
struct Counting<K> {
    keys: K,
    private: Rc<Cell<u32>>,
    public: Rc<Cell<u32>>,
}

impl<K: RawRsa> RawRsa for Counting<K> {
    fn block_len(&self) -> usize {
        self.keys.block_len()
    }
    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        self.private.set(self.private.get() + 1);
        self.keys.private_op(input, out)
    }
    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        self.public.set(self.public.get() + 1);
        self.keys.peer_public_op(input, out)
    }
    fn own_key_id(&self) -> Option<OwnKeyId> {
        self.keys.own_key_id()
    }
}

impl<K: RawRsa> h2msg::OwnRsa for Counting<K> {
    fn block_len(&self) -> usize {
        self.keys.block_len()
    }
    fn own_key_id(&self) -> OwnKeyId {
        self.keys.own_key_id().unwrap()
    }
    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        RawRsa::private_op(self, input, out)
    }
}
