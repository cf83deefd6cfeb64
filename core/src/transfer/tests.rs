extern crate std;
use std::vec::Vec;

use super::*;

/// (aux length, first, last) of every element `Parts` gives for `len` payload bytes.
fn cut(len: usize) -> Vec<(usize, bool, bool)> {
    let payload = std::vec![0xA5u8; len];
    let mut parts = Parts::new(&payload);
    let mut out = Vec::new();
    while let Some(part) = parts.next_part() {
        out.push((part.aux().len(), part.is_first(), part.is_last()));
        parts.part_sent();
    }
    assert!(parts.is_done());
    out
}

#[test]
fn an_empty_payload_is_one_announcement_that_also_closes() {
    assert_eq!(cut(0), [(8, true, true)]);
}

/// A full part: the largest aux (65536, §3.5) less the largest header (2048), so that a
/// part and its header fit a 64 KiB receive FIFO.
const FULL_PART: usize = 65536 - 2048;

#[test]
fn parts_are_full_62_kib_but_the_last() {
    assert_eq!(cut(1), [(8, true, false), (1, false, true)]);
    assert_eq!(cut(FULL_PART), [(8, true, false), (FULL_PART, false, true)]);
    assert_eq!(
        cut(65536),
        [
            (8, true, false),
            (FULL_PART, false, false),
            (2048, false, true)
        ]
    );
    assert_eq!(
        cut(2 * FULL_PART + 33),
        [
            (8, true, false),
            (FULL_PART, false, false),
            (FULL_PART, false, false),
            (33, false, true)
        ]
    );
    assert_eq!(
        FULL_PART % 32,
        0,
        "every part but the last whole 32-byte units"
    );
}

#[test]
fn the_announcement_is_the_length_little_endian() {
    let payload = [0u8; 0x0102];
    let parts = Parts::new(&payload);
    let first = parts.next_part().map(|p| p.aux().to_vec());
    assert_eq!(first.as_deref(), Some(&[0x02, 0x01, 0, 0, 0, 0, 0, 0][..]));
}

#[test]
fn part_flags_mark_the_ends() {
    let payload = [1u8; 10];
    let mut parts = Parts::new(&payload);
    let flags: Vec<MsgFlags> = core::iter::from_fn(|| {
        let f = parts.next_part().map(|p| p.flags());
        parts.part_sent();
        f
    })
    .collect();
    assert_eq!(flags, [MsgFlags::CREATE, MsgFlags::DELETE]);
}

#[test]
fn padding_past_the_announced_length_is_cut_in_the_seed_era() {
    let mut r = Reassembly::start(&33u64.to_le_bytes(), 100).unwrap();
    assert_eq!(r.take(&[1; 32], AuxLength::Padded).unwrap().len(), 32);
    // One data byte, 31 of padding.
    assert_eq!(r.take(&[2; 32], AuxLength::Padded).unwrap(), &[2]);
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn a_full_unit_past_the_announced_length_is_an_overrun() {
    let mut r = Reassembly::start(&33u64.to_le_bytes(), 100).unwrap();
    let err = r.take(&[1; 96], AuxLength::Padded);
    assert_eq!(err, Err(TransferError::Overrun { announced: 33 }));
    // Nothing changed: the right part is still taken.
    assert_eq!(r.received(), 0);
    assert_eq!(r.take(&[1; 64], AuxLength::Padded).map(<[u8]>::len), Ok(33));
}

#[test]
fn exact_lengths_allow_no_byte_more() {
    let mut r = Reassembly::start(&5u64.to_le_bytes(), 100).unwrap();
    assert_eq!(
        r.take(&[0; 6], AuxLength::Exact),
        Err(TransferError::Overrun { announced: 5 })
    );
    assert_eq!(r.take(&[0; 4], AuxLength::Exact).map(<[u8]>::len), Ok(4));
    assert_eq!(
        r.finish(),
        Err(TransferError::Truncated {
            announced: 5,
            received: 4
        })
    );
}

#[test]
fn announcements_over_the_maximum_or_too_short_are_refused() {
    assert_eq!(
        Reassembly::start(&101u64.to_le_bytes(), 100),
        Err(TransferError::TooLarge {
            announced: 101,
            max: 100
        })
    );
    assert_eq!(
        Reassembly::start(&u64::MAX.to_le_bytes(), usize::MAX),
        if usize::BITS == 64 {
            Ok(Reassembly {
                total: usize::MAX,
                received: 0,
            })
        } else {
            Err(TransferError::TooLarge {
                announced: u64::MAX,
                max: usize::MAX,
            })
        }
    );
    assert_eq!(
        Reassembly::start(&[1, 2, 3], 100),
        Err(TransferError::BadAnnouncement { len: 3 })
    );
}

#[test]
fn answers_say_whether_the_peer_still_waits() {
    assert_eq!(
        TransferError::TooLarge {
            announced: 1,
            max: 0
        }
        .answer(),
        Some(0x22)
    );
    assert_eq!(TransferError::Abandoned.answer(), Some(0x23));
    assert_eq!(TransferError::NotOpen.answer(), None);
    assert_eq!(TransferError::LinkLost.answer(), None);
}

/// `Parts` says how far it got: the total, the payload bytes queued, and done only once
/// the last element was queued.
#[test]
fn parts_count_what_was_queued() {
    let payload = std::vec![3u8; FULL_PART + 100];
    let mut parts = Parts::new(&payload);
    let total = FULL_PART + 100;
    assert_eq!(
        (parts.total(), parts.sent(), parts.is_done()),
        (total, 0, false)
    );
    parts.part_sent(); // the announcement: no payload byte yet
    assert_eq!((parts.sent(), parts.is_done()), (0, false));
    parts.part_sent();
    assert_eq!((parts.sent(), parts.is_done()), (FULL_PART, false));
    parts.part_sent();
    assert_eq!((parts.sent(), parts.is_done()), (total, true));
    assert_eq!(parts.next_part(), None);
    parts.part_sent(); // nothing left: no change
    assert_eq!(
        (parts.total(), parts.sent(), parts.is_done()),
        (total, total, true)
    );
}

/// The seed era pads only the last 32-byte unit: 31 bytes past the announced length are
/// padding, 32 are a unit of data too many.
#[test]
fn padding_is_less_than_one_unit() {
    let mut r = Reassembly::start(&40u64.to_le_bytes(), 100).unwrap();
    assert_eq!(
        r.take(&[1; 72], AuxLength::Padded),
        Err(TransferError::Overrun { announced: 40 })
    );
    assert_eq!(r.take(&[1; 71], AuxLength::Padded).map(<[u8]>::len), Ok(40));
    assert_eq!(r.received(), 40);
    assert_eq!(r.total(), 40);
}

/// The taken bytes are counted, and only they.
#[test]
fn received_counts_the_payload_bytes_taken() {
    let mut r = Reassembly::start(&100u64.to_le_bytes(), 100).unwrap();
    assert_eq!(r.take(&[0; 64], AuxLength::Exact).map(<[u8]>::len), Ok(64));
    assert_eq!(r.received(), 64);
    assert_eq!(r.take(&[0; 36], AuxLength::Exact).map(<[u8]>::len), Ok(36));
    assert_eq!(r.received(), 100);
    assert_eq!(r.finish(), Ok(()));
}

/// 16 MiB unless configured otherwise (the module docs, protocol.md §3.5).
#[test]
fn the_default_maximum_is_16_mib() {
    assert_eq!(DEFAULT_MAX, 16 * 1024 * 1024);
}

/// Every message names the numbers it carries.
#[test]
fn error_messages_carry_their_numbers() {
    use std::string::ToString;
    let cases = [
        (
            TransferError::TooLarge {
                announced: 1001,
                max: 1000,
            },
            &["1001", "1000"][..],
        ),
        (TransferError::TooManyTransfers { limit: 4 }, &["4"]),
        (TransferError::OutOfMemory { needed: 4096 }, &["4096"]),
        (TransferError::BadAnnouncement { len: 3 }, &["3", "8"]),
        (TransferError::Overrun { announced: 77 }, &["77"]),
        (
            TransferError::Truncated {
                announced: 90,
                received: 12,
            },
            &["90", "12"],
        ),
        (TransferError::Refused { code: 0x22 }, &["0x22"]),
    ];
    for (error, numbers) in cases {
        let text = error.to_string();
        for number in numbers {
            assert!(text.contains(number), "{text:?} lacks {number}");
        }
    }
    for error in [
        TransferError::NotOpen,
        TransferError::AlreadyOpen,
        TransferError::Abandoned,
        TransferError::LinkLost,
    ] {
        assert!(!error.to_string().is_empty(), "{error:?}");
    }
}

#[cfg(feature = "alloc")]
mod reassembler {
    use super::*;
    use crate::wire::Cmd;

    const UPLOAD: Cmd = match Cmd::app(7) {
        Some(c) => c,
        None => Cmd::LNK_PAD,
    };

    fn announce(r: &mut Reassembler<u32>, key: u32, len: u64) -> Fed<u32> {
        r.feed(
            key,
            UPLOAD,
            MsgFlags::CREATE,
            0,
            &len.to_le_bytes(),
            AuxLength::Exact,
        )
    }

    fn data(r: &mut Reassembler<u32>, key: u32, bytes: &[u8], last: bool) -> Fed<u32> {
        let flags = if last {
            MsgFlags::DELETE
        } else {
            MsgFlags::NONE
        };
        r.feed(key, UPLOAD, flags, 0, bytes, AuxLength::Exact)
    }

    fn failed(fed: &Fed<u32>) -> Option<TransferError> {
        match fed {
            Fed::Failed(f) => Some(f.error),
            _ => None,
        }
    }

    #[test]
    fn interleaved_transfers_complete_apart() {
        let mut r = Reassembler::with_limits(100, 2);
        assert_eq!(announce(&mut r, 1, 3), Fed::Pending);
        assert_eq!(announce(&mut r, 2, 2), Fed::Pending);
        assert_eq!(data(&mut r, 1, b"ab", false), Fed::Pending);
        assert_eq!(
            data(&mut r, 2, b"xy", true),
            Fed::Complete(Transfer {
                key: 2,
                cmd: UPLOAD,
                data: b"xy".to_vec()
            })
        );
        let Fed::Complete(t) = data(&mut r, 1, b"c", true) else {
            panic!("transfer 1 completes");
        };
        assert_eq!(t.data, b"abc");
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn a_part_beyond_the_announcement_fails_frees_and_later_parts_are_dropped() {
        let mut r = Reassembler::with_limits(100, 2);
        announce(&mut r, 1, 4);
        assert_eq!(data(&mut r, 1, b"abc", false), Fed::Pending);
        assert!(r.buffered() >= 3);
        assert_eq!(
            failed(&data(&mut r, 1, b"de", false)),
            Some(TransferError::Overrun { announced: 4 })
        );
        assert_eq!(r.buffered(), 0);
        assert_eq!(data(&mut r, 1, b"f", false), Fed::Ignored);
        assert_eq!(data(&mut r, 1, b"", true), Fed::Ignored);
        // The record is gone with the DELETE: a new part names nothing.
        assert_eq!(
            failed(&data(&mut r, 1, b"g", false)),
            Some(TransferError::NotOpen)
        );
    }

    #[test]
    fn announcing_more_than_the_maximum_is_refused_before_any_data() {
        let mut r = Reassembler::with_limits(100, 2);
        assert_eq!(
            failed(&announce(&mut r, 1, 101)),
            Some(TransferError::TooLarge {
                announced: 101,
                max: 100
            })
        );
        assert_eq!(r.in_progress(), 0);
        assert_eq!(data(&mut r, 1, &[0; 50], false), Fed::Ignored);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn one_transfer_too_many_is_refused() {
        let mut r = Reassembler::with_limits(100, 1);
        announce(&mut r, 1, 10);
        assert_eq!(
            failed(&announce(&mut r, 2, 10)),
            Some(TransferError::TooManyTransfers { limit: 1 })
        );
        assert_eq!(r.in_progress(), 1);
    }

    #[test]
    fn an_abort_midway_abandons_and_frees() {
        let mut r = Reassembler::with_limits(100, 2);
        announce(&mut r, 1, 10);
        data(&mut r, 1, b"12345", false);
        let aborted = r.feed(
            1,
            UPLOAD,
            MsgFlags::ABORT | MsgFlags::DELETE,
            0,
            &[],
            AuxLength::Exact,
        );
        assert_eq!(failed(&aborted), Some(TransferError::Abandoned));
        assert_eq!((r.in_progress(), r.buffered()), (0, 0));
    }

    #[test]
    fn a_lost_transaction_fails_its_transfer() {
        let mut r = Reassembler::with_limits(100, 2);
        announce(&mut r, 1, 10);
        data(&mut r, 1, b"12345", false);
        assert_eq!(failed(&r.lost(1)), Some(TransferError::LinkLost));
        assert_eq!(r.lost(1), Fed::NotTransfer);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn an_early_delete_is_truncated() {
        let mut r = Reassembler::with_limits(100, 2);
        announce(&mut r, 1, 10);
        assert_eq!(
            failed(&data(&mut r, 1, b"123", true)),
            Some(TransferError::Truncated {
                announced: 10,
                received: 3
            })
        );
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn an_error_reply_is_the_peers_refusal() {
        let mut r = Reassembler::with_limits(100, 2);
        let fed = r.feed(
            1,
            UPLOAD,
            MsgFlags::CREATE | MsgFlags::DELETE,
            0x22,
            &[],
            AuxLength::Exact,
        );
        assert_eq!(failed(&fed), Some(TransferError::Refused { code: 0x22 }));
    }

    /// The announced length (checked against the maximum first) is reserved once at the
    /// announcement: the buffer is never reallocated as parts arrive.
    #[test]
    fn the_announced_length_is_reserved_once_at_the_announcement() {
        let mut r = Reassembler::with_limits(1000, 2);
        assert_eq!(announce(&mut r, 1, 700), Fed::Pending);
        assert_eq!(r.buffered(), 700, "reserved at the announcement");
        for _ in 0..6 {
            assert_eq!(data(&mut r, 1, &[0; 100], false), Fed::Pending);
            assert_eq!(r.buffered(), 700, "no growth as parts arrive");
        }
        // Over the maximum: refused before anything is reserved.
        assert!(failed(&announce(&mut r, 2, 1001)).is_some());
        assert_eq!(r.buffered(), 700);
        assert!(matches!(data(&mut r, 1, &[0; 100], true), Fed::Complete(_)));
        assert_eq!(r.buffered(), 0);
    }

    /// A refused transfer is remembered while the records of refused ones are fewer
    /// than `transfers` — however many are in progress — so that its parts are dropped
    /// quietly; past that its parts are reported as never opened. A refusal that also
    /// closed (CREATE|DELETE) leaves nothing behind: the msgid may open again.
    #[test]
    fn refused_transfers_are_remembered_up_to_the_limit() {
        let mut r = Reassembler::with_limits(100, 2);
        assert_eq!(announce(&mut r, 9, 10), Fed::Pending);
        for key in [1, 2] {
            assert!(failed(&announce(&mut r, key, 101)).is_some());
        }
        assert!(failed(&announce(&mut r, 3, 101)).is_some());
        assert_eq!(data(&mut r, 1, &[0; 4], false), Fed::Ignored);
        assert_eq!(data(&mut r, 2, &[0; 4], false), Fed::Ignored);
        assert_eq!(
            failed(&data(&mut r, 3, &[0; 4], false)),
            Some(TransferError::NotOpen)
        );
        let closed = r.feed(
            5,
            UPLOAD,
            MsgFlags::CREATE | MsgFlags::DELETE,
            0,
            &101u64.to_le_bytes(),
            AuxLength::Exact,
        );
        assert!(failed(&closed).is_some());
        assert_eq!(data(&mut r, 1, &[0; 4], true), Fed::Ignored, "closes 1");
        assert_eq!(announce(&mut r, 5, 10), Fed::Pending, "5 opens anew");
    }

    /// `clear` (the link went down) forgets every transfer and frees its memory.
    #[test]
    fn clear_forgets_everything() {
        let mut r = Reassembler::with_limits(100, 2);
        assert_eq!(announce(&mut r, 1, 10), Fed::Pending);
        assert_eq!(data(&mut r, 1, &[0; 4], false), Fed::Pending);
        r.clear();
        assert_eq!((r.in_progress(), r.buffered()), (0, 0));
        assert_eq!(
            failed(&data(&mut r, 1, &[0; 6], true)),
            Some(TransferError::NotOpen)
        );
    }

    #[test]
    fn the_limits_are_the_configured_ones() {
        let r = Reassembler::<u32>::with_limits(1000, 3);
        assert_eq!((r.max(), r.transfers()), (1000, 3));
        let r = Reassembler::<u32>::new();
        assert_eq!((r.max(), r.transfers()), (DEFAULT_MAX, 4));
    }

    #[test]
    fn the_buffer_never_grows_past_the_announced_length() {
        let mut r = Reassembler::with_limits(1000, 1);
        announce(&mut r, 1, 700);
        for _ in 0..6 {
            data(&mut r, 1, &[0; 100], false);
        }
        assert!(r.buffered() <= 700, "{}", r.buffered());
        assert!(matches!(data(&mut r, 1, &[0; 100], true), Fed::Complete(_)));
    }
}

mod sending {
    use std::vec;

    use super::*;
    use crate::iocom::{DmsgIocom, Iocom, IocomMemory};
    use crate::ioq::tx::CounterSalt;
    use crate::trans::{DmsgKey, TransKey};
    use crate::wire::{Cmd, MsgHeader, SoftCrc32c};
    use crate::{Config, LinkSetup};

    const UPLOAD: Cmd = match Cmd::app(7) {
        Some(c) => c,
        None => Cmd::LNK_PAD,
    };

    /// Room for two parts in the transmit ring.
    fn memory() -> IocomMemory<Vec<u8>> {
        IocomMemory {
            fifo: vec![0; 8192],
            aux: vec![],
            tx_ring: vec![0; 140_000],
        }
    }

    fn seed_io() -> Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8> {
        let setup = LinkSetup::plaintext();
        Iocom::new(setup, memory(), CounterSalt::default(), SoftCrc32c).unwrap()
    }

    fn dmsg_io() -> DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, 8> {
        let setup = LinkSetup::plaintext();
        let config = Config::default();
        DmsgIocom::new(setup, memory(), CounterSalt::default(), SoftCrc32c, config).unwrap()
    }

    /// A request learns its msgid from the announcement it opened (not some other
    /// transaction's), and is done only once its last part is queued.
    #[test]
    fn a_seed_request_names_the_transaction_it_opened() {
        let mut io = seed_io();
        let other = io.open(UPLOAD, &[], &[], false).unwrap().msgid;
        let payload = vec![5u8; 3 * PART_MAX];
        let mut sender = Sender::request(UPLOAD, &payload);
        assert_eq!((sender.msgid(), sender.is_done()), (None, false));
        assert!(matches!(
            sender.poll_send(&mut io),
            Ok(Progress::Blocked { .. })
        ));
        assert!(!sender.is_done(), "parts are left");
        let msgid = sender.msgid().unwrap();
        assert_ne!(msgid, other);
        assert!(
            io.local_transactions()
                .get(TransKey::local(msgid))
                .is_some()
        );
        // The transport takes what was queued; the rest fits.
        while sender.poll_send(&mut io) != Ok(Progress::Done) {
            let [older, newer] = io.pending();
            let written = older.len() + newer.len();
            io.advance_write(written).unwrap();
        }
        assert!(sender.is_done());
        assert_eq!(
            sender.msgid(),
            Some(msgid),
            "the same transaction throughout"
        );
        assert_eq!(sender.parts().sent(), payload.len());
    }

    #[test]
    fn a_reply_transfer_names_the_peers_transaction() {
        let mut to = MsgHeader::new(UPLOAD);
        to.msgid = 42;
        assert_eq!(Sender::reply(&to, &[1, 2, 3]).msgid(), Some(42));
        let key = DmsgKey::theirs(43);
        assert_eq!(DmsgSender::reply(key, UPLOAD, &[1]).key(), Some(key));
    }

    #[test]
    fn a_dmsg_request_names_the_transaction_it_opened() {
        let mut io = dmsg_io();
        let other = io.open(UPLOAD, None, &[], &[]).unwrap().msgid;
        let payload = vec![6u8; 100];
        let mut sender = DmsgSender::request(UPLOAD, None, &payload);
        assert_eq!((sender.key(), sender.is_done()), (None, false));
        assert_eq!(sender.poll_send(&mut io), Ok(Progress::Done));
        assert!(sender.is_done());
        let key = sender.key().unwrap();
        assert_eq!(key.side, crate::trans::Side::Local);
        assert_ne!(key.msgid, other);
        assert!(io.transactions().get(key).is_some());
    }

    /// Moves what `$from` has pending into `$to`.
    #[cfg(feature = "alloc")]
    macro_rules! carry {
        ($from:expr, $to:expr) => {{
            let [first, second] = $from.pending();
            let bytes = [first, second].concat();
            let taken = $to.feed(&bytes);
            $from.advance_write(taken).unwrap();
            assert_eq!(taken, bytes.len());
        }};
    }

    /// A plain request under another command.
    #[cfg(feature = "alloc")]
    const OTHER: Cmd = match Cmd::app(8) {
        Some(c) => c,
        None => Cmd::LNK_PAD,
    };

    /// The seed-era event helper takes the elements of transfers under its command — a
    /// request of the peer's as Remote, a reply to ours as Local — and nothing else: not
    /// another command, not a one-way message; a transaction lost midway fails.
    #[cfg(feature = "alloc")]
    #[test]
    fn seed_events_feed_the_commands_transfers_only() {
        let (mut a, mut b) = (seed_io(), seed_io());
        for io in [&mut a, &mut b] {
            io.accept(UPLOAD).unwrap();
            io.accept(OTHER).unwrap();
        }
        let (mut ra, mut rb) = (Reassembler::new(), Reassembler::new());
        a.open(OTHER, &[], b"other", true).unwrap();
        a.send(MsgHeader::new(UPLOAD), &[], b"one-way").unwrap();
        let payload = vec![7u8; 1000];
        let mut sender = Sender::request(UPLOAD, &payload);
        assert_eq!(sender.poll_send(&mut a), Ok(Progress::Done));
        let msgid = sender.msgid().unwrap();
        carry!(a, b);
        let mut fed = Vec::new();
        while let Some(event) = b.poll_event() {
            fed.push(rb.handle_event(UPLOAD, &event));
        }
        let upload = Transfer {
            key: TransKey::remote(msgid),
            cmd: UPLOAD,
            data: payload.clone(),
        };
        assert_eq!(
            fed,
            [
                Fed::NotTransfer,
                Fed::NotTransfer,
                Fed::Pending,
                Fed::Complete(upload.clone())
            ]
        );

        let answer = vec![8u8; 40];
        let mut reply = Sender::reply(&upload.reply_to(), &answer);
        assert_eq!(reply.poll_send(&mut b), Ok(Progress::Done));
        carry!(b, a);
        let mut fed = Vec::new();
        while let Some(event) = a.poll_event() {
            fed.push(ra.handle_event(UPLOAD, &event));
        }
        let answered = Transfer {
            key: TransKey::local(msgid),
            cmd: UPLOAD,
            data: answer,
        };
        assert!(fed.contains(&Fed::Complete(answered)), "{fed:?}");

        // A transfer cut off by the end of the link.
        a.open(UPLOAD, &[], &100u64.to_le_bytes(), false).unwrap();
        carry!(a, b);
        while let Some(event) = b.poll_event() {
            assert_eq!(rb.handle_event(UPLOAD, &event), Fed::Pending);
        }
        assert_eq!(rb.in_progress(), 1);
        b.end_input();
        let mut failures = Vec::new();
        while let Some(event) = b.poll_event() {
            if let Fed::Failed(failure) = rb.handle_event(UPLOAD, &event) {
                failures.push(failure.error);
            }
        }
        assert_eq!(failures, [TransferError::LinkLost]);
        assert_eq!((rb.in_progress(), rb.buffered()), (0, 0));
    }

    /// The DMSG event helper likewise: the command's transfers, keyed by the peer's
    /// transaction; another command is not a transfer; a lost transaction fails.
    #[cfg(feature = "alloc")]
    #[test]
    fn dmsg_events_feed_the_commands_transfers_only() {
        let (mut a, mut b) = (dmsg_io(), dmsg_io());
        for io in [&mut a, &mut b] {
            io.accept(UPLOAD).unwrap();
            io.accept(OTHER).unwrap();
        }
        let mut rb = Reassembler::new();
        a.open(OTHER, None, &[], b"other").unwrap();
        let payload = vec![9u8; 1000];
        let mut sender = DmsgSender::request(UPLOAD, None, &payload);
        assert_eq!(sender.poll_send(&mut a), Ok(Progress::Done));
        let key = sender.key().unwrap();
        a.open(UPLOAD, None, &[], &100u64.to_le_bytes()).unwrap();
        carry!(a, b);
        let mut fed = Vec::new();
        while let Some(event) = b.poll_event() {
            fed.push(rb.handle_dmsg_event(UPLOAD, &event));
        }
        let upload = Transfer {
            key: DmsgKey::theirs(key.msgid),
            cmd: UPLOAD,
            data: payload,
        };
        assert_eq!(
            fed,
            [
                Fed::NotTransfer,
                Fed::Pending,
                Fed::Complete(upload),
                Fed::Pending
            ]
        );
        assert_eq!(rb.in_progress(), 1);
        b.end_input();
        let mut failures = Vec::new();
        while let Some(event) = b.poll_event() {
            if let Fed::Failed(failure) = rb.handle_dmsg_event(UPLOAD, &event) {
                failures.push(failure.error);
            }
        }
        assert_eq!(failures, [TransferError::LinkLost]);
        assert_eq!((rb.in_progress(), rb.buffered()), (0, 0));
    }

    /// A refusal is answered on the wire: the seed-era sender hears 0x22 on its
    /// transaction, the DMSG sender too.
    #[cfg(feature = "alloc")]
    #[test]
    fn failures_are_answered_to_the_sender() {
        use super::super::{answer_dmsg_failure, answer_failure};
        let (mut a, mut b) = (seed_io(), seed_io());
        for io in [&mut a, &mut b] {
            io.accept(UPLOAD).unwrap();
        }
        let (mut ra, mut rb) = (Reassembler::new(), Reassembler::with_limits(10, 1));
        let opened = a.open(UPLOAD, &[], &11u64.to_le_bytes(), false).unwrap();
        carry!(a, b);
        let mut failures = Vec::new();
        while let Some(event) = b.poll_event() {
            if let Fed::Failed(failure) = rb.handle_event(UPLOAD, &event) {
                failures.push(failure);
            }
        }
        for failure in &failures {
            answer_failure(&mut b, failure).unwrap();
        }
        carry!(b, a);
        let mut heard = Vec::new();
        while let Some(event) = a.poll_event() {
            if let Fed::Failed(failure) = ra.handle_event(UPLOAD, &event) {
                heard.push((failure.key, failure.error));
            }
        }
        let refused = TransferError::Refused {
            code: u32::from(TRANSFER_ERR_TOO_LARGE),
        };
        assert_eq!(heard, [(TransKey::local(opened.msgid), refused)]);

        let (mut a, mut b) = (dmsg_io(), dmsg_io());
        for io in [&mut a, &mut b] {
            io.accept(UPLOAD).unwrap();
        }
        let (mut ra, mut rb) = (Reassembler::new(), Reassembler::with_limits(10, 1));
        let opened = a.open(UPLOAD, None, &[], &11u64.to_le_bytes()).unwrap();
        carry!(a, b);
        let mut failures = Vec::new();
        while let Some(event) = b.poll_event() {
            if let Fed::Failed(failure) = rb.handle_dmsg_event(UPLOAD, &event) {
                failures.push(failure);
            }
        }
        for failure in &failures {
            answer_dmsg_failure(&mut b, failure).unwrap();
        }
        carry!(b, a);
        let mut heard = Vec::new();
        while let Some(event) = a.poll_event() {
            if let Fed::Failed(failure) = ra.handle_dmsg_event(UPLOAD, &event) {
                heard.push((failure.key, failure.error));
            }
        }
        assert_eq!(heard, [(DmsgKey::ours(opened.msgid), refused)]);
    }

    /// `LinkDown` frees whatever the reassembler still holds, in both revisions: a caller
    /// that fed elements itself gets no per-transaction loss for them.
    #[cfg(feature = "alloc")]
    #[test]
    fn link_down_frees_everything() {
        use crate::iocom::{DmsgEvent, Event, LinkEnd};
        let announce = 10u64.to_le_bytes();
        let mut r = Reassembler::new();
        let key = TransKey::remote(1);
        let fed = r.feed(
            key,
            UPLOAD,
            MsgFlags::CREATE,
            0,
            &announce,
            AuxLength::Padded,
        );
        assert_eq!(fed, Fed::Pending);
        let down = Event::LinkDown(LinkEnd::Closed);
        assert_eq!(r.handle_event(UPLOAD, &down), Fed::NotTransfer);
        assert_eq!((r.in_progress(), r.buffered()), (0, 0));

        let mut r = Reassembler::new();
        let key = DmsgKey::theirs(1);
        let fed = r.feed(
            key,
            UPLOAD,
            MsgFlags::CREATE,
            0,
            &announce,
            AuxLength::Exact,
        );
        assert_eq!(fed, Fed::Pending);
        let down = DmsgEvent::LinkDown(LinkEnd::Closed);
        assert_eq!(r.handle_dmsg_event(UPLOAD, &down), Fed::NotTransfer);
        assert_eq!((r.in_progress(), r.buffered()), (0, 0));
    }
}
