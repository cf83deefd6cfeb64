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
    // parts of 32 + 63488 (a part: the largest aux less the largest header); the third
    // waits.
    let part = 65536 - 2048;
    let Progress::Blocked { needed } = sender.poll_send(&mut a).unwrap() else {
        panic!("1 MiB cannot fit a 132 KiB ring");
    };
    assert_eq!(needed, 32 + part);
    let queued = sender.parts().sent();
    assert_eq!(queued, 2 * part);
    // Nothing written: still blocked, nothing queued twice.
    assert!(matches!(
        sender.poll_send(&mut a).unwrap(),
        Progress::Blocked { .. }
    ));
    assert_eq!(sender.parts().sent(), queued);
}

/// A blocking link over `stream`, handshake done.
fn blocking_link(
    stream: std::net::TcpStream,
    seed: u64,
) -> h2msg_std::blocking::Link<std::net::TcpStream> {
    use h2msg_std::blocking::{self, Duplex, std_iocom};
    let mut duplex = Duplex::new(stream).unwrap();
    let deadline = Some(blocking::now() + std::time::Duration::from_secs(10));
    blocking::drive_handshake(
        &mut duplex,
        h2msg_tests::plaintext_handshake_until(seed, deadline),
    )
    .unwrap();
    let mut io = std_iocom(LinkSetup::plaintext(), 0).unwrap();
    io.accept(UPLOAD).unwrap();
    // As the links `h2msg_std::link` makes: reading ahead once the handshake is over.
    duplex.read_ahead(blocking::READ_AHEAD);
    blocking::Link::new(duplex, io)
}

/// A tokio link over `stream`, handshake done.
async fn tokio_link(
    stream: std::net::TcpStream,
    seed: u64,
) -> h2msg_std::tokio_driver::Link<tokio::net::TcpStream> {
    use h2msg_std::{blocking, tokio_driver};
    stream.set_nonblocking(true).unwrap();
    let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
    let deadline = Some(blocking::now() + std::time::Duration::from_secs(10));
    tokio_driver::drive_handshake(
        &mut stream,
        h2msg_tests::plaintext_handshake_until(seed, deadline),
    )
    .await
    .unwrap();
    let mut io = blocking::std_iocom(LinkSetup::plaintext(), 0).unwrap();
    io.accept(UPLOAD).unwrap();
    tokio_driver::Link::new(stream, io)
}

/// Far more than two loopback sockets buffer between them, so that a side that writes
/// without reading blocks for good.
const CROSSING_LEN: usize = 24 << 20;

/// One end of a crossing: given its payload and a barrier to wait at once it has
/// received (and written everything), returns what it received.
type CrossingSide = Box<dyn FnOnce(Vec<u8>, &std::sync::Barrier) -> Vec<u8> + Send>;

/// Runs the two ends of a crossing over one loopback TCP connection, each on its own
/// thread with its payload, and checks that each received the other's; fails the test
/// (instead of hanging it) if they are not both done within a generous deadline.
fn crossing_completes(
    a: fn(std::net::TcpStream) -> CrossingSide,
    b: fn(std::net::TcpStream) -> CrossingSide,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connecting = std::thread::spawn(move || std::net::TcpStream::connect(address).unwrap());
    let accepted = listener.accept().unwrap().0;
    let sides = [a(accepted), b(connecting.join().unwrap())];
    let (done, finished) = std::sync::mpsc::channel();
    // Neither end closes before both have received: a close with bytes unread would
    // reset the connection under the other.
    let received_both = std::sync::Arc::new(std::sync::Barrier::new(2));
    for (side, seed) in sides.into_iter().zip([1u8, 2]) {
        let (done, received_both) = (done.clone(), received_both.clone());
        std::thread::spawn(move || {
            let received = side(payload(CROSSING_LEN, seed), &received_both);
            let _ = done.send((seed, received));
        });
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (seed, received) = finished
            .recv_timeout(left)
            .expect("both ends send and receive within 60 s: no deadlock");
        let other = 3 - seed;
        assert!(
            received == payload(CROSSING_LEN, other),
            "end {seed} received end {other}'s payload"
        );
    }
}

/// Takes what `send` hands over: the one transfer expected.
fn keep_transfer(
    kept: &mut Option<h2msg_std::transfer::Outcome>,
) -> impl FnMut(h2msg_std::transfer::Incoming<'_>) + '_ {
    |incoming| {
        if let h2msg_std::transfer::Incoming::Transfer(outcome) = incoming {
            assert!(kept.is_none(), "one transfer comes");
            *kept = Some(outcome);
        }
    }
}

fn received_data(outcome: Option<h2msg_std::transfer::Outcome>) -> Vec<u8> {
    match outcome {
        Some(Ok(transfer)) => transfer.data,
        other => panic!("no transfer from the other end: {other:?}"),
    }
}

/// An end that sends its payload with the blocking `send`, then takes the other end's
/// (unless it came during the send) with `receive`.
fn blocking_end(stream: std::net::TcpStream) -> CrossingSide {
    Box::new(move |data, received_both| {
        use h2msg_std::transfer::{self, Inbox};
        let mut link = blocking_link(stream, 1);
        let mut inbox = Inbox::with_reassembler(UPLOAD, Reassembler::with_limits(CROSSING_LEN, 1));
        let mut early = None;
        let mut sender = Sender::request(UPLOAD, &data);
        transfer::send(
            &mut link,
            &mut sender,
            &mut inbox,
            keep_transfer(&mut early),
        )
        .unwrap();
        let outcome = match early {
            Some(outcome) => Some(outcome),
            None => transfer::receive(&mut link, &mut inbox, |_| {}).unwrap(),
        };
        // The last parts may still be queued: write them out.
        link.flush().unwrap();
        received_both.wait();
        received_data(outcome)
    })
}

/// [`blocking_end`] with the tokio driver's `send_async` and `receive_async`.
fn tokio_end(stream: std::net::TcpStream) -> CrossingSide {
    Box::new(move |data, received_both| {
        use h2msg_std::transfer::{self, Inbox};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut link = tokio_link(stream, 2).await;
            let mut inbox =
                Inbox::with_reassembler(UPLOAD, Reassembler::with_limits(CROSSING_LEN, 1));
            let mut early = None;
            let mut sender = Sender::request(UPLOAD, &data);
            transfer::send_async(
                &mut link,
                &mut sender,
                &mut inbox,
                keep_transfer(&mut early),
            )
            .await
            .unwrap();
            let outcome = match early {
                Some(outcome) => Some(outcome),
                None => transfer::receive_async(&mut link, &mut inbox, |_| {})
                    .await
                    .unwrap(),
            };
            link.flush().await.unwrap();
            received_both.wait();
            received_data(outcome)
        })
    })
}

/// Both ends send a large transfer at once on one link: each must keep reading while it
/// waits for room to write, or both block writing into full socket buffers.
#[test]
fn transfers_crossing_on_one_blocking_link_both_complete() {
    crossing_completes(blocking_end, blocking_end);
}

/// The same crossing with the tokio driver at one end and at both.
#[test]
fn transfers_crossing_with_the_async_send_both_complete() {
    crossing_completes(tokio_end, blocking_end);
    crossing_completes(tokio_end, tokio_end);
}

/// A transfer the receiver refuses while it is itself sending (its queue full of its own
/// parts) is still answered: the refused sender hears 0x22 (its send ends then, or had
/// queued everything before), and the receiver's own transfer goes through.
#[test]
fn a_transfer_refused_during_a_send_is_answered_and_both_ends_go_on() {
    use h2msg_std::transfer::{self, Inbox, Incoming};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let big = payload(CROSSING_LEN, 1);
    let refused = payload(1 << 20, 2);
    let receiver = std::thread::spawn(move || {
        // Takes at most 1000 bytes: the peer's transfer is refused at its announcement.
        let mut link = blocking_link(listener.accept().unwrap().0, 1);
        let mut inbox = Inbox::with_reassembler(UPLOAD, Reassembler::with_limits(1000, 1));
        let mut seen = Vec::new();
        let mut sender = Sender::request(UPLOAD, &big);
        transfer::send(&mut link, &mut sender, &mut inbox, |incoming| {
            if let Incoming::Transfer(outcome) = incoming {
                seen.push(outcome.map(|t| t.data.len()).map_err(|f| f.error));
            }
        })
        .unwrap();
        while seen.is_empty() {
            let outcome = transfer::receive(&mut link, &mut inbox, |_| {}).unwrap();
            seen.push(outcome.unwrap().map(|t| t.data.len()).map_err(|f| f.error));
        }
        while inbox.owes_answers() {
            link.flush().unwrap();
            inbox.answer_owed(link.io());
        }
        link.flush().unwrap();
        // Until the peer closes: it has everything then.
        while link.next_event(|_| ()).unwrap().is_some() {}
        seen
    });
    let mut link = blocking_link(std::net::TcpStream::connect(address).unwrap(), 2);
    let mut inbox = Inbox::with_reassembler(UPLOAD, Reassembler::with_limits(CROSSING_LEN, 1));
    let mut outcomes = Vec::new();
    let mut sender = Sender::request(UPLOAD, &refused);
    let sent = transfer::send(&mut link, &mut sender, &mut inbox, |incoming| {
        if let Incoming::Transfer(outcome) = incoming {
            outcomes.push(outcome);
        }
    });
    // All queued before the refusal came, or stopped by it.
    assert!(
        matches!(
            sent,
            Ok(())
                | Err(transfer::SendTransferError::Refused {
                    code: TRANSFER_ERR_TOO_LARGE
                })
        ),
        "{sent:?}"
    );
    let msgid = sender.msgid().unwrap();
    while outcomes.len() < 2 {
        outcomes.push(
            transfer::receive(&mut link, &mut inbox, |_| {})
                .unwrap()
                .unwrap(),
        );
    }
    drop(link);
    let failures: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .map(|f| (f.key, f.error))
        .collect();
    let refusal = TransferError::Refused {
        code: u32::from(TRANSFER_ERR_TOO_LARGE),
    };
    assert_eq!(failures, [(TransKey::local(msgid), refusal)], "0x22 heard");
    let theirs = outcomes.iter().find_map(|o| o.as_ref().ok());
    assert!(
        theirs.is_some_and(|t| t.data == payload(CROSSING_LEN, 1)),
        "the peer's transfer arrived whole"
    );
    let seen = receiver.join().unwrap();
    assert_eq!(
        seen,
        [Err(TransferError::TooLarge {
            announced: 1 << 20,
            max: 1000
        })]
    );
}

/// A sender whose transfer the peer refuses stops queueing parts when the refusal
/// arrives, instead of sending the rest for the peer to drop.
#[test]
fn a_refused_transfer_stops_being_sent() {
    use h2msg_std::transfer::{self, Inbox, SendTransferError};
    // Far more than the socket buffers, the read-ahead and both queues hold together.
    const LEN: usize = 128 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sent_back, send_ended) = std::sync::mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        let mut link = blocking_link(listener.accept().unwrap().0, 1);
        let mut inbox = Inbox::with_reassembler(UPLOAD, Reassembler::with_limits(1000, 1));
        let first = transfer::receive(&mut link, &mut inbox, |_| {}).unwrap();
        // The refusal goes out; then nothing more is read until the sender's send has
        // ended, so what it queued is bounded by the buffers between us, not by how
        // fast this thread drains them.
        link.flush().unwrap();
        send_ended.recv().unwrap();
        while transfer::receive(&mut link, &mut inbox, |_| {})
            .unwrap()
            .is_some()
        {}
        first.map(|outcome| outcome.map(|t| t.data.len()).map_err(|f| f.error))
    });
    let mut link = blocking_link(std::net::TcpStream::connect(address).unwrap(), 2);
    let data = payload(LEN, 3);
    let mut sender = Sender::request(UPLOAD, &data);
    let sent = transfer::send(&mut link, &mut sender, &mut Inbox::new(UPLOAD), |_| {});
    sent_back.send(()).unwrap();
    assert!(
        matches!(
            sent,
            Err(SendTransferError::Refused {
                code: TRANSFER_ERR_TOO_LARGE
            })
        ),
        "{sent:?}"
    );
    assert!(!sender.is_done(), "not every part was queued");
    let queued = sender.parts().sent();
    assert!(queued < LEN / 2, "stopped after {queued} of {LEN} bytes");
    let msgid = sender.msgid().unwrap();
    link.io().abort(UPLOAD, msgid).unwrap();
    link.flush().unwrap();
    drop(link);
    assert_eq!(
        receiver.join().unwrap(),
        Some(Err(TransferError::TooLarge {
            announced: LEN as u64,
            max: 1000
        }))
    );
}
