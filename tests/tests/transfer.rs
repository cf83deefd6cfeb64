//! Large transfers over two real connections in memory (protocol.md §3.5): every stream
//! mode and both revisions, exact lengths at the sizes around the 32-byte unit and the
//! 64 KiB part, and the bad inputs — a transfer over the maximum, more data than
//! announced, a part of a transfer never opened, an abort midway, a lost link — each
//! ending that transfer with a typed error, its memory freed, the link still working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failing check fails loudly"
)]

use h2msg::trans::{DmsgKey, TransKey};
use h2msg::transfer::{
    DmsgSender, Fed, Progress, Reassembler, Sender, TRANSFER_ERR_MALFORMED, TRANSFER_ERR_TOO_LARGE,
    TransferError, answer_dmsg_failure, answer_failure,
};
use h2msg::wire::{Cmd, MsgFlags, MsgHeader, SoftCrc32c};
use h2msg::{Config, CounterSalt, DmsgIocom, Event, Iocom, IocomMemory, LinkSetup, StreamMode};
use h2msg_tests::sim::setup_pair;
use proptest::prelude::*;

type Io = Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;
type Dmsg = DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;

/// The application command the transfers use (nibble 0xF, number 0x123).
const UPLOAD: Cmd = match Cmd::app(0x123) {
    Some(c) => c,
    None => Cmd::LNK_PAD,
};

/// A plain request/reply command, to show other transactions still work.
const PING_APP: Cmd = match Cmd::app(0x124) {
    Some(c) => c,
    None => Cmd::LNK_PAD,
};

fn memory() -> IocomMemory<Vec<u8>> {
    IocomMemory {
        // A gcm receiver holds a whole record (16 KiB) beside the largest header (§2.9).
        fifo: vec![0; 32 << 10],
        aux: vec![0; 1 << 20],
        tx_ring: vec![0; 2 * (2048 + 65536)],
    }
}

fn pair(mode: StreamMode) -> (Io, Io) {
    let (a, b) = setup_pair(mode, [1; 64], [2; 64]);
    let build = |setup| {
        let mut io = Io::new(setup, memory(), CounterSalt::default(), SoftCrc32c).unwrap();
        io.accept(UPLOAD).unwrap();
        io.accept(PING_APP).unwrap();
        io
    };
    (build(a), build(b))
}

fn dmsg_pair() -> (Dmsg, Dmsg) {
    let build = || {
        let mut io = Dmsg::new(
            LinkSetup::plaintext(),
            memory(),
            CounterSalt::default(),
            SoftCrc32c,
            Config::default(),
        )
        .unwrap();
        io.accept(UPLOAD).unwrap();
        io.accept(PING_APP).unwrap();
        io
    };
    (build(), build())
}

/// The transport: moves what `from` has pending into `to`, as much as `to` takes.
macro_rules! carry {
    ($from:expr, $to:expr) => {{
        let [first, second] = $from.pending();
        let bytes = [first, second].concat();
        let taken = $to.feed(&bytes);
        $from.advance_write(taken).unwrap();
        taken
    }};
}

/// A payload whose every byte depends on its position (a shifted copy would show).
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// What one side's application saw of the transfers, in order.
#[derive(Debug)]
struct Seen<K> {
    complete: Vec<(K, Vec<u8>)>,
    failed: Vec<(K, TransferError)>,
    /// `(msgid, error)` of every reply under `PING_APP` or an error reply under `UPLOAD`.
    replies: Vec<(u64, u32)>,
    /// `PING_APP` requests, to answer.
    requests: Vec<MsgHeader>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self {
            complete: Vec::new(),
            failed: Vec::new(),
            replies: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// Takes every event of a seed-era side: transfers into `r`, failures answered.
fn drain(io: &mut Io, r: &mut Reassembler<TransKey>, seen: &mut Seen<TransKey>) {
    loop {
        let mut request = None;
        let fed = {
            let Some(event) = io.poll_event() else { break };
            let fed = r.handle_event(UPLOAD, &event);
            if let (Fed::NotTransfer, Event::Message { msg, .. }) = (&fed, &event) {
                let h = *msg.header();
                if h.cmd.is_reply() {
                    seen.replies.push((u64::from(h.msgid), u32::from(h.error)));
                } else if h.cmd.clear(MsgFlags::ALL) == PING_APP {
                    request = Some(h);
                }
            }
            fed
        };
        if let Some(h) = request {
            seen.requests.push(h);
        }
        match fed {
            Fed::Complete(t) => seen.complete.push((t.key, t.data)),
            Fed::Failed(f) => {
                if let TransferError::Refused { code } = f.error {
                    seen.replies.push((u64::from(f.key.msgid), code));
                }
                answer_failure(io, &f).unwrap();
                seen.failed.push((f.key, f.error));
            }
            _ => {}
        }
    }
}

fn drain_dmsg(io: &mut Dmsg, r: &mut Reassembler<DmsgKey>, seen: &mut Seen<DmsgKey>) {
    while let Some(event) = io.poll_event() {
        let fed = r.handle_dmsg_event(UPLOAD, &event);
        match fed {
            Fed::Complete(t) => seen.complete.push((t.key, t.data)),
            Fed::Failed(f) => {
                answer_dmsg_failure(io, &f).unwrap();
                seen.failed.push((f.key, f.error));
            }
            _ => {}
        }
    }
}

/// Sends `data` from `a` as a request and lets `b` reassemble it; then `b` sends
/// `answer` back as the reply transfer and `a` reassembles it. Returns both sides' view.
fn seed_round_trip(
    mode: StreamMode,
    data: &[u8],
    answer: &[u8],
) -> (Seen<TransKey>, Seen<TransKey>) {
    let (mut a, mut b) = pair(mode);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::<TransKey>::default(), Seen::<TransKey>::default());
    let mut upload = Sender::request(UPLOAD, data);
    let mut reply: Option<Sender<'_>> = None;
    for _ in 0..100_000 {
        if !upload.is_done() {
            upload.poll_send(&mut a).unwrap();
        }
        if reply.is_none()
            && let Some((key, _)) = seen_b.complete.first()
        {
            let mut to = MsgHeader::new(UPLOAD);
            to.msgid = key.msgid;
            reply = Some(Sender::reply(&to, answer));
        }
        if let Some(sender) = reply.as_mut().filter(|s| !s.is_done()) {
            sender.poll_send(&mut b).unwrap();
        }
        let moved = carry!(a, b) + carry!(b, a);
        drain(&mut b, &mut rb, &mut seen_b);
        drain(&mut a, &mut ra, &mut seen_a);
        if moved == 0 && !seen_a.complete.is_empty() {
            break;
        }
    }
    assert_eq!(
        rb.buffered() + ra.buffered(),
        0,
        "nothing held after completion"
    );
    (seen_a, seen_b)
}

fn dmsg_round_trip(data: &[u8], answer: &[u8]) -> (Seen<DmsgKey>, Seen<DmsgKey>) {
    let (mut a, mut b) = dmsg_pair();
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let mut upload = DmsgSender::request(UPLOAD, None, data);
    let mut reply: Option<DmsgSender<'_>> = None;
    for _ in 0..100_000 {
        if !upload.is_done() {
            upload.poll_send(&mut a).unwrap();
        }
        if reply.is_none()
            && let Some((key, _)) = seen_b.complete.first()
        {
            reply = Some(DmsgSender::reply(*key, UPLOAD, answer));
        }
        if let Some(sender) = reply.as_mut().filter(|s| !s.is_done()) {
            sender.poll_send(&mut b).unwrap();
        }
        let moved = carry!(a, b) + carry!(b, a);
        drain_dmsg(&mut b, &mut rb, &mut seen_b);
        drain_dmsg(&mut a, &mut ra, &mut seen_a);
        if moved == 0 && !seen_a.complete.is_empty() {
            break;
        }
    }
    (seen_a, seen_b)
}

/// Sizes around the 32-byte unit and the 64 KiB part, and a multi-MiB one.
const EDGE_SIZES: [usize; 10] = [
    0,
    1,
    31,
    32,
    33,
    65535,
    65536,
    65537,
    2 * 65536 + 8,
    3 * (1 << 20) + 7,
];

#[test]
fn every_edge_size_round_trips_byte_exact_in_every_seed_era_mode() {
    for mode in [StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm] {
        for (i, &len) in EDGE_SIZES.iter().enumerate() {
            let up = payload(len, i as u8);
            let down = payload(EDGE_SIZES[EDGE_SIZES.len() - 1 - i], 0x5A);
            let (a, b) = seed_round_trip(mode, &up, &down);
            assert_eq!(b.complete.len(), 1, "{mode:?} {len}: one upload");
            assert_eq!(b.complete[0].1, up, "{mode:?} {len}: upload bytes");
            assert_eq!(a.complete.len(), 1, "{mode:?} {len}: one download");
            assert_eq!(a.complete[0].1, down, "{mode:?} {len}: download bytes");
            assert!(a.failed.is_empty() && b.failed.is_empty());
        }
    }
}

#[test]
fn every_edge_size_round_trips_byte_exact_in_dmsg() {
    for (i, &len) in EDGE_SIZES.iter().enumerate() {
        let up = payload(len, i as u8);
        let down = payload(EDGE_SIZES[EDGE_SIZES.len() - 1 - i], 0x5A);
        let (a, b) = dmsg_round_trip(&up, &down);
        assert_eq!(b.complete.len(), 1, "{len}: one upload");
        assert_eq!(b.complete[0].1, up, "{len}: upload bytes");
        assert_eq!(a.complete.len(), 1, "{len}: one download");
        assert_eq!(a.complete[0].1, down, "{len}: download bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_sizes_round_trip_byte_exact(
        up in 0usize..300_000,
        down in 0usize..300_000,
        mode in prop::sample::select(vec![StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm]),
        seed in any::<u8>(),
    ) {
        let (up, down) = (payload(up, seed), payload(down, !seed));
        let (a, b) = seed_round_trip(mode, &up, &down);
        prop_assert_eq!(&b.complete[0].1, &up);
        prop_assert_eq!(&a.complete[0].1, &down);
        let (a, b) = dmsg_round_trip(&up, &down);
        prop_assert_eq!(&b.complete[0].1, &up);
        prop_assert_eq!(&a.complete[0].1, &down);
    }
}

/// Runs both seed sides until nothing moves.
fn settle(
    a: &mut Io,
    b: &mut Io,
    r: (&mut Reassembler<TransKey>, &mut Reassembler<TransKey>),
    seen: (&mut Seen<TransKey>, &mut Seen<TransKey>),
) {
    let (ra, rb) = r;
    let (seen_a, seen_b) = seen;
    loop {
        let moved = carry!(a, b) + carry!(b, a);
        drain(b, rb, seen_b);
        drain(a, ra, seen_a);
        if moved == 0 {
            break;
        }
    }
}

/// After a bad transfer: a plain request opened earlier is still answered, and a new
/// transfer on the same link completes.
fn link_still_works(
    a: &mut Io,
    b: &mut Io,
    r: (&mut Reassembler<TransKey>, &mut Reassembler<TransKey>),
    seen: (&mut Seen<TransKey>, &mut Seen<TransKey>),
    pending: &MsgHeader,
) {
    let (ra, rb) = r;
    let (seen_a, seen_b) = seen;
    let good = payload(70_000, 9);
    let mut sender = Sender::request(UPLOAD, &good);
    while sender.poll_send(a).unwrap() != Progress::Done {
        settle(a, b, (&mut *ra, &mut *rb), (&mut *seen_a, &mut *seen_b));
    }
    settle(a, b, (&mut *ra, &mut *rb), (&mut *seen_a, &mut *seen_b));
    // `b` answers every plain request it has seen, the one opened before the bad
    // transfer included.
    for request in seen_b.requests.drain(..) {
        b.reply(&request, 0, b"pong", true).unwrap();
    }
    settle(a, b, (&mut *ra, &mut *rb), (&mut *seen_a, &mut *seen_b));
    let msgid = sender.msgid().unwrap();
    assert_eq!(
        seen_b.complete.last(),
        Some(&(TransKey::remote(msgid), good)),
        "the next transfer completes"
    );
    assert!(
        seen_a.replies.contains(&(u64::from(pending.msgid), 0)),
        "the earlier request is answered: {:?}",
        seen_a.replies
    );
}

/// Opens a plain request on `a` that stays open across the bad transfer.
fn open_plain_request(a: &mut Io) -> MsgHeader {
    a.open(PING_APP, &[], b"ping", true).unwrap()
}

#[test]
fn a_transfer_over_the_maximum_is_refused_at_once_with_0x22_and_nothing_is_kept() {
    let (mut a, mut b) = pair(StreamMode::Seed);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::with_limits(100_000, 2));
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let pending = open_plain_request(&mut a);
    let big = payload(1 << 20, 3);
    let mut sender = Sender::request(UPLOAD, &big);
    while sender.poll_send(&mut a).unwrap() != Progress::Done {
        settle(
            &mut a,
            &mut b,
            (&mut ra, &mut rb),
            (&mut seen_a, &mut seen_b),
        );
        assert_eq!(
            rb.buffered(),
            0,
            "no byte of the refused transfer is buffered"
        );
    }
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    let msgid = sender.msgid().unwrap();
    assert_eq!(
        seen_b.failed,
        [(
            TransKey::remote(msgid),
            TransferError::TooLarge {
                announced: 1 << 20,
                max: 100_000
            }
        )]
    );
    assert!(seen_b.complete.is_empty());
    assert!(
        seen_a
            .replies
            .contains(&(u64::from(msgid), u32::from(TRANSFER_ERR_TOO_LARGE))),
        "the sender is told 0x22: {:?}",
        seen_a.replies
    );
    // Both directions closed: the transaction is gone at both ends.
    assert!(
        b.remote_transactions()
            .get(TransKey::remote(msgid))
            .is_none()
    );
    assert!(a.local_transactions().get(TransKey::local(msgid)).is_none());
    link_still_works(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
        &pending,
    );
}

#[test]
fn data_past_the_announced_length_ends_the_transfer_with_0x23() {
    let (mut a, mut b) = pair(StreamMode::Gcm);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let pending = open_plain_request(&mut a);
    // Announces 100 bytes, then sends a full part.
    let opened = a.open(UPLOAD, &[], &100u64.to_le_bytes(), false).unwrap();
    let mut part = MsgHeader::new(UPLOAD);
    part.msgid = opened.msgid;
    a.send(part, &[], &[7; 4096]).unwrap();
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    let key = TransKey::remote(opened.msgid);
    assert_eq!(
        seen_b.failed,
        [(key, TransferError::Overrun { announced: 100 })]
    );
    assert_eq!(rb.buffered(), 0);
    assert!(
        seen_a
            .replies
            .contains(&(u64::from(opened.msgid), u32::from(TRANSFER_ERR_MALFORMED)))
    );
    // The sender's further parts are dropped quietly, its DELETE closes the transaction.
    a.send(part, &[], &[7; 64]).unwrap();
    let mut last = part;
    last.cmd = UPLOAD.set(MsgFlags::DELETE);
    a.send(last, &[], &[]).unwrap();
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    assert_eq!(
        seen_b.failed.len(),
        1,
        "no second failure: {:?}",
        seen_b.failed
    );
    assert!(b.remote_transactions().get(key).is_none());
    link_still_works(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
        &pending,
    );
}

#[test]
fn a_part_of_a_transfer_never_opened_is_reported_and_not_answered() {
    let (mut a, mut b) = pair(StreamMode::Seed);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let pending = open_plain_request(&mut a);
    // A mid-stream element (no flags) under msgid 77, which was never opened.
    let mut stray = MsgHeader::new(UPLOAD);
    stray.msgid = 77;
    a.send(stray, &[], &[1; 64]).unwrap();
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    assert_eq!(
        seen_b.failed,
        [(TransKey::remote(77), TransferError::NotOpen)]
    );
    assert!(
        seen_a.replies.iter().all(|(id, _)| *id != 77),
        "nothing answered"
    );
    assert_eq!((rb.in_progress(), rb.buffered()), (0, 0));
    link_still_works(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
        &pending,
    );
}

#[test]
fn a_transfer_abandoned_midway_is_freed_and_answered_with_0x23() {
    let (mut a, mut b) = pair(StreamMode::Cbc);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let pending = open_plain_request(&mut a);
    let data = payload(1 << 20, 4);
    let mut sender = Sender::request(UPLOAD, &data);
    // Announcement and a few parts, then the sender gives up.
    for _ in 0..3 {
        sender.poll_send(&mut a).unwrap();
        settle(
            &mut a,
            &mut b,
            (&mut ra, &mut rb),
            (&mut seen_a, &mut seen_b),
        );
    }
    assert_eq!(rb.in_progress(), 1);
    assert!(rb.buffered() > 0);
    let msgid = sender.msgid().unwrap();
    a.abort(UPLOAD, msgid).unwrap();
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    assert_eq!(
        seen_b.failed,
        [(TransKey::remote(msgid), TransferError::Abandoned)]
    );
    assert_eq!((rb.in_progress(), rb.buffered()), (0, 0));
    assert!(
        seen_a
            .replies
            .contains(&(u64::from(msgid), u32::from(TRANSFER_ERR_MALFORMED)))
    );
    assert!(
        b.remote_transactions()
            .get(TransKey::remote(msgid))
            .is_none()
    );
    link_still_works(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
        &pending,
    );
}

#[test]
fn a_link_lost_midway_fails_the_transfer_and_frees_it() {
    let (mut a, mut b) = pair(StreamMode::Seed);
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let data = payload(1 << 20, 5);
    let mut sender = Sender::request(UPLOAD, &data);
    sender.poll_send(&mut a).unwrap();
    settle(
        &mut a,
        &mut b,
        (&mut ra, &mut rb),
        (&mut seen_a, &mut seen_b),
    );
    assert!(rb.buffered() > 0);
    b.end_input(); // the peer's stream ended mid-transfer
    drain(&mut b, &mut rb, &mut seen_b);
    let msgid = sender.msgid().unwrap();
    assert_eq!(
        seen_b.failed,
        [(TransKey::remote(msgid), TransferError::LinkLost)]
    );
    assert_eq!((rb.in_progress(), rb.buffered()), (0, 0));
}

#[test]
fn dmsg_refuses_a_transfer_over_the_maximum_and_carries_on() {
    let (mut a, mut b) = dmsg_pair();
    let (mut ra, mut rb) = (Reassembler::new(), Reassembler::with_limits(1000, 2));
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let big = payload(200_000, 6);
    let mut sender = DmsgSender::request(UPLOAD, None, &big);
    loop {
        let done = sender.poll_send(&mut a).unwrap() == Progress::Done;
        let moved = carry!(a, b) + carry!(b, a);
        drain_dmsg(&mut b, &mut rb, &mut seen_b);
        drain_dmsg(&mut a, &mut ra, &mut seen_a);
        assert_eq!(rb.buffered(), 0);
        if done && moved == 0 {
            break;
        }
    }
    let key = sender.key().unwrap();
    assert_eq!(
        seen_b.failed,
        [(
            DmsgKey::theirs(key.msgid),
            TransferError::TooLarge {
                announced: 200_000,
                max: 1000
            }
        )]
    );
    // The sender's reassembler saw the refusal as the peer's error.
    assert_eq!(
        seen_a.failed,
        [(
            key,
            TransferError::Refused {
                code: u32::from(TRANSFER_ERR_TOO_LARGE)
            }
        )]
    );
    // A transfer within the maximum still goes through on the same link.
    let small = payload(999, 7);
    let mut sender = DmsgSender::request(UPLOAD, None, &small);
    assert_eq!(sender.poll_send(&mut a).unwrap(), Progress::Done);
    for _ in 0..4 {
        carry!(a, b);
        carry!(b, a);
        drain_dmsg(&mut b, &mut rb, &mut seen_b);
        drain_dmsg(&mut a, &mut ra, &mut seen_a);
    }
    assert_eq!(seen_b.complete.len(), 1);
    assert_eq!(seen_b.complete[0].1, small);
}

#[test]
fn a_queue_full_of_parts_blocks_and_resumes_where_it_stopped() {
    let (mut a, _) = pair(StreamMode::Seed);
    let data = payload(1 << 20, 8);
    let mut sender = Sender::request(UPLOAD, &data);
    // The ring (2 × (2048 + 65536) bytes) takes the announcement (32 + 32 bytes) and two
    // parts of 32 + 65536; the third waits.
    let Progress::Blocked { needed } = sender.poll_send(&mut a).unwrap() else {
        panic!("1 MiB cannot fit a 132 KiB ring");
    };
    assert_eq!(needed, 32 + 65536);
    let queued = sender.parts().sent();
    assert_eq!(queued, 2 * 65536);
    // Nothing written: still blocked, nothing queued twice.
    assert!(matches!(
        sender.poll_send(&mut a).unwrap(),
        Progress::Blocked { .. }
    ));
    assert_eq!(sender.parts().sent(), queued);
}
