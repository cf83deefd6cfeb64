//! The handshake receiver on arbitrary peer bytes in arbitrary chunking (`handshake_rx`),
//! in plaintext mode and with a throwaway 2048-bit RSA key pair (`fuzz/keys/`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::OnceLock;

use h2msg::wire::limits::HANDSHAKE_LEN;
use h2msg::wire::{HandshakeBlock, WireOrder};
use h2msg::{Handshake, HandshakePoll, Instant, KeyMode, NoRsa, RawRsa, RsaKeys, RsaOpError};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::{PrivateKey, PublicKey};

use crate::TestRng;

/// The receiving node's key and the peer's: the throwaway 2048-bit keys of the recorded C
/// session (`tests/vectors/c-peer/v1-rsa`), so that its real handshake bytes are a seed.
const OWN_KEY_PEM: &str = include_str!("../../vectors/c-peer/v1-rsa/node/rsa.prv");
const PEER_KEY_PEM: &str = include_str!("../../vectors/c-peer/v1-rsa/client/rsa.prv");

struct FuzzKeys {
    own: PrivateKey,
    own_public: PublicKey,
    peer: PrivateKey,
    peer_public: PublicKey,
}

/// Parsed once per process: RSA key parsing is slow next to one input.
fn fuzz_keys() -> &'static FuzzKeys {
    static KEYS: OnceLock<FuzzKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let own = PrivateKey::from_pkcs1_pem(OWN_KEY_PEM).expect("own test key parses");
        let peer = PrivateKey::from_pkcs1_pem(PEER_KEY_PEM).expect("peer test key parses");
        FuzzKeys {
            own_public: own.to_public_key(),
            peer_public: peer.to_public_key(),
            own,
            peer,
        }
    })
}

/// Our keys, with the transform of our own block skipped: what is fuzzed is the receiving
/// side, and RSA under the fuzzer's instrumentation is slow. While `sending` is set (only
/// inside `Handshake::new`) both operations copy their input; afterwards they are the
/// real ones.
struct ReceiveOnlyRsa {
    keys: RsaKeys<TestRng>,
    sending: Rc<Cell<bool>>,
}

impl RawRsa for ReceiveOnlyRsa {
    fn block_len(&self) -> usize {
        self.keys.block_len()
    }
    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        if self.sending.get() {
            out.copy_from_slice(input);
            return Ok(());
        }
        self.keys.private_op(input, out)
    }
    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        if self.sending.get() {
            out.copy_from_slice(input);
            return Ok(());
        }
        self.keys.peer_public_op(input, out)
    }
}

/// The first bytes of the input say how the rest is used.
struct Plan {
    rsa: bool,
    /// The peer's block is stamped valid from the payload (RSA: one of a few made once),
    /// then damaged if `damage`; else the payload is the wire bytes as they are.
    generated: bool,
    /// Flip `damage_mask` at `damage_at` of the generated block before it is sent.
    damage: bool,
    own_order: WireOrder,
    /// Feed pieces alternate between these sizes (at least 1).
    pieces: [usize; 2],
    /// Tell the handshake the input ended once the payload is fed.
    end_input: bool,
    /// A deadline at this many ms, with the clock moving by `time_step` ms per piece.
    deadline: Option<u64>,
    time_step: u64,
    damage_at: usize,
    damage_mask: u8,
}

impl Plan {
    const LEN: usize = 6;

    fn read(head: [u8; Self::LEN]) -> Self {
        let [mode, piece_a, piece_b, time, at_low, mask] = head;
        Self {
            rsa: mode & 1 != 0,
            generated: mode & 2 != 0,
            damage: mode & 4 != 0,
            own_order: if mode & 8 != 0 {
                WireOrder::Big
            } else {
                WireOrder::Little
            },
            end_input: mode & 0x10 != 0,
            deadline: (mode & 0x20 != 0).then(|| u64::from(time >> 4) * 100),
            time_step: u64::from(time & 0x0F) * 10,
            pieces: [usize::from(piece_a).max(1), usize::from(piece_b).max(1) * 3],
            damage_at: (usize::from(at_low) | usize::from(mode >> 6) << 8) % HANDSHAKE_LEN,
            damage_mask: mask.max(1),
        }
    }
}

/// The handshake receiver fed arbitrary peer bytes in arbitrary pieces. Checks that it
/// never panics, takes at most 512 bytes, says `Done` or `Failed` once and `Finished`
/// after, sends nothing once failed, that `poll_timeout` is not in the past after
/// `handle_timeout`, and that a valid peer block fed whole before any deadline completes
/// with the peer's session key.
pub fn handshake_rx(data: &[u8]) {
    let Some((head, payload)) = data.split_first_chunk::<{ Plan::LEN }>() else {
        return;
    };
    let plan = Plan::read(*head);
    let seed = payload
        .iter()
        .take(8)
        .fold(0x5EED_u64, |s, &b| s.rotate_left(8) ^ u64::from(b));
    let deadline = plan.deadline.map(Instant::from_millis);
    if plan.rsa {
        let keys = fuzz_keys();
        let own = RsaKeys::new(
            keys.own.clone(),
            keys.peer_public.clone(),
            TestRng(seed ^ 1),
        )
        .expect("the test keys are the same size");
        let sending = Rc::new(Cell::new(true));
        let own = ReceiveOnlyRsa {
            keys: own,
            sending: Rc::clone(&sending),
        };
        let handshake = Handshake::new(
            KeyMode::Rsa(own),
            &mut TestRng(seed),
            plan.own_order,
            deadline,
        )
        .expect("a 2048-bit key pair and a working random source");
        sending.set(false);
        run(handshake, true, &plan, payload);
    } else {
        let handshake = Handshake::<NoRsa>::new(
            KeyMode::Plaintext,
            &mut TestRng(seed),
            plan.own_order,
            deadline,
        )
        .expect("a plaintext handshake needs only random bytes");
        run(handshake, false, &plan, payload);
    }
}

/// Plaintext blocks stamped valid, as an honest peer would send them; then the wire bytes.
fn stamped_block(payload: &[u8]) -> ([u8; HANDSHAKE_LEN], [u8; 64]) {
    let mut block = [0u8; HANDSHAKE_LEN];
    for (dst, src) in block.iter_mut().zip(payload.iter().cycle()) {
        *dst = *src;
    }
    let fields = HandshakeBlock::from_wire_mut(&mut block);
    let flags = u32::from_le_bytes(fields.flags);
    fields.stamp_with_flags(WireOrder::Little, flags);
    let sess = fields.sess;
    (block, sess)
}

/// What an honest RSA peer sends (§2.4): per 256-byte block, the private operation
/// retried until its result has the top two bits clear, then the receiver's public one.
fn rsa_transformed(mut block: [u8; HANDSHAKE_LEN], keys: &mut impl RawRsa) -> [u8; HANDSHAKE_LEN] {
    for chunk in block.chunks_exact_mut(keys.block_len()) {
        let mut private = vec![0u8; chunk.len()];
        loop {
            keys.private_op(chunk, &mut private)
                .expect("a stamped block is in range");
            if private[0] & 0xC0 == 0 {
                break;
            }
            let counter = u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes"));
            chunk[4..8].copy_from_slice(&counter.wrapping_add(1).to_le_bytes());
        }
        keys.peer_public_op(&private, chunk)
            .expect("the result is below the modulus");
    }
    block
}

/// Valid RSA blocks from the peer and their session keys, made once per process: RSA under
/// the fuzzer's instrumentation is slow, and making one per input would double the cost of
/// every RSA input.
fn honest_rsa_blocks() -> &'static [([u8; HANDSHAKE_LEN], [u8; 64]); 4] {
    static BLOCKS: OnceLock<[([u8; HANDSHAKE_LEN], [u8; 64]); 4]> = OnceLock::new();
    BLOCKS.get_or_init(|| {
        let keys = fuzz_keys();
        let mut peer = RsaKeys::new(keys.peer.clone(), keys.own_public.clone(), TestRng(2))
            .expect("the test keys are the same size");
        core::array::from_fn(|i| {
            let (plain, sess) = stamped_block(&[i as u8 * 61 + 1, 0x42, 0x17]);
            (rsa_transformed(plain, &mut peer), sess)
        })
    })
}

/// The peer's wire bytes and, if they are a valid block sent whole, its session key. In
/// generated mode a plaintext block is stamped from the payload; an RSA one is one of
/// [`honest_rsa_blocks`], chosen by the payload. Damage flips bits on the wire.
fn peer_bytes(rsa: bool, plan: &Plan, payload: &[u8]) -> (Vec<u8>, Option<[u8; 64]>) {
    if !plan.generated {
        return (payload.to_vec(), None);
    }
    let (mut block, sess) = if rsa {
        let choice = usize::from(payload.first().copied().unwrap_or(0) & 3);
        honest_rsa_blocks()[choice]
    } else {
        stamped_block(payload)
    };
    if plan.damage {
        block[plan.damage_at] ^= plan.damage_mask;
        return (block.to_vec(), None);
    }
    (block.to_vec(), Some(sess))
}

fn run<K: RawRsa>(mut handshake: Handshake<K>, rsa: bool, plan: &Plan, payload: &[u8]) {
    let (wire, expected_sess) = peer_bytes(rsa, plan, payload);
    let mut now = 0u64;
    let mut timed_out = false;
    let mut taken = 0usize;
    let mut outcome: Option<Result<[u8; 64], ()>> = None;
    let check = |poll: HandshakePoll, outcome: &mut Option<Result<[u8; 64], ()>>| match poll {
        HandshakePoll::InProgress => assert!(outcome.is_none(), "in progress after the end"),
        HandshakePoll::Done(session) => {
            assert!(outcome.is_none(), "a second outcome");
            *outcome = Some(Ok(*session.keys_for_testing().1));
        }
        HandshakePoll::Failed(_) => {
            assert!(outcome.is_none(), "a second outcome");
            *outcome = Some(Err(()));
        }
        HandshakePoll::Finished => assert!(outcome.is_some(), "finished before an outcome"),
        other => panic!("unknown poll result {other:?}"),
    };
    let mut rest = wire.as_slice();
    let mut turn = 0;
    while !rest.is_empty() || !handshake.pending().is_empty() {
        let size = plan.pieces[turn % 2];
        turn += 1;
        // Our side sends a piece...
        let send = handshake.pending().len().min(size);
        handshake.advance(send).expect("within pending");
        // ...and the peer's bytes arrive in a piece.
        let (piece, after) = rest.split_at(size.min(rest.len()));
        let took = handshake.feed(piece);
        assert!(took <= piece.len());
        taken += took;
        assert!(taken <= HANDSHAKE_LEN, "took more than the handshake");
        rest = after;
        if plan.time_step > 0 {
            now += plan.time_step;
            let at = Instant::from_millis(now);
            handshake.handle_timeout(at);
            timed_out |= plan.deadline.is_some_and(|d| now >= d);
            if let Some(next) = handshake.poll_timeout() {
                assert!(next > at, "poll_timeout {next:?} not after now {at:?}");
            }
        }
        check(handshake.poll(), &mut outcome);
        if outcome.is_some() {
            // Done needs all 512 bytes sent; a failed handshake sends nothing more.
            assert!(
                handshake.pending().is_empty(),
                "bytes to send after the end"
            );
            break;
        }
        if send == 0 && took == 0 && rest.is_empty() {
            break;
        }
    }
    if plan.end_input {
        handshake.end_input();
    }
    for _ in 0..3 {
        check(handshake.poll(), &mut outcome);
    }
    if outcome == Some(Err(())) {
        assert!(handshake.pending().is_empty(), "sends after failing");
        assert!(handshake.read_buf().is_empty(), "reads after failing");
    }
    if let Some(sess) = expected_sess
        && !timed_out
    {
        assert_eq!(outcome, Some(Ok(sess)), "a valid block did not complete");
    }
    if plan.end_input && taken < HANDSHAKE_LEN {
        assert!(matches!(outcome, Some(Err(()))), "a short input completed");
    }
}
