//! Property tests of the receive decoder: chunking never changes what it decodes, hostile
//! bytes never panic, and damage at any offset costs exactly the damaged message onwards.

use h2msg::ioq::RxFailure;
use h2msg::wire::{Cmd, DecodeError, MsgFlags, MsgHeader, Protocol, SoftCrc32c, WireOrder};
use h2msg_tests::{Ending, OwnedMessage, decode_stream};
use proptest::prelude::*;

/// A valid message: random fields, extended header of 0..=2 units, aux of 0..=3000 bytes
/// (some larger than a 2 KiB FIFO), either byte order. Returns its wire image and what a
/// decoder must give back: the sealed header, the extended bytes and the aux as given.
fn message() -> impl Strategy<Value = (Vec<u8>, OwnedMessage)> {
    (
        any::<(u32, u32, u8, u16)>(),
        0usize..3,
        prop_oneof![3 => 0usize..200, 1 => 0usize..3000],
        any::<bool>(),
    )
        .prop_flat_map(|((salt, msgid, flags, number), ext_units, aux_len, big)| {
            (
                proptest::collection::vec(any::<u8>(), ext_units * 32),
                proptest::collection::vec(any::<u8>(), aux_len),
            )
                .prop_map(move |(ext, aux)| {
                    let cmd = Cmd::new(
                        MsgFlags::from_cmd_bits(u32::from(flags) << 24),
                        Protocol::LNK,
                        number & 0xFFF,
                        1 + ext_units as u8,
                    )
                    .unwrap();
                    let mut h = MsgHeader::new(cmd);
                    h.salt = salt;
                    h.msgid = msgid;
                    let order = if big {
                        WireOrder::Big
                    } else {
                        WireOrder::Little
                    };
                    let mut w = h.seal(order, &ext, &aux, &SoftCrc32c).unwrap().to_vec();
                    w.extend_from_slice(&ext);
                    w.extend_from_slice(&aux);
                    w.resize(32 + ext.len() + h.aux_len(), 0);
                    let mut padded = aux.clone();
                    padded.resize(aux.len().div_ceil(32) * 32, 0);
                    (
                        w,
                        OwnedMessage {
                            header: h,
                            order,
                            ext,
                            aux: padded,
                        },
                    )
                })
        })
}

/// Several messages back to back: the bytes, where each starts, and what each must decode to.
fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<OwnedMessage>)> {
    proptest::collection::vec(message(), 1..12).prop_map(|msgs| {
        let mut starts = Vec::new();
        let mut s = Vec::new();
        let mut expected = Vec::new();
        for (wire, m) in msgs {
            starts.push(s.len());
            s.extend(wire);
            expected.push(m);
        }
        (s, starts, expected)
    })
}

fn pieces() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..700, 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunking_never_changes_the_messages((s, _starts, expected) in stream(), pieces in pieces()) {
        let (whole, end) = decode_stream(&s, &[s.len()], 8192, 65536);
        prop_assert_eq!(end, Ending::Closed);
        prop_assert_eq!(&whole, &expected, "decoded fields, extended bytes and aux are what was sent");
        // A 2 KiB FIFO with lent aux storage, in arbitrary pieces: the same messages.
        let (split, end) = decode_stream(&s, &pieces, 2048, 65536);
        prop_assert_eq!(end, Ending::Closed);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        pieces in pieces(),
    ) {
        let (msgs, end) = decode_stream(&bytes, &pieces, 2048, 4096);
        if let Ending::Failed(f) = end {
            prop_assert_eq!(f.offset, msgs.iter().map(|m| 32 + m.ext.len() + m.aux.len()).sum::<usize>() as u64);
        }
    }

    /// Valid streams with bytes overwritten, CRCs then repaired half of the time, so that
    /// the size, extended-header and aux paths see hostile values, not just SYNC.
    #[test]
    fn mangled_streams_never_panic(
        (s, _starts, _expected) in stream(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        repair in any::<bool>(),
        pieces in pieces(),
    ) {
        let mut bytes = s;
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if repair {
            h2msg_tests::fuzz::repair_crcs(&mut bytes);
        }
        let (msgs, end) = decode_stream(&bytes, &pieces, 2048, 4096);
        if let Ending::Failed(f) = end {
            prop_assert!([1, 2, 4, 5, 6, 7].contains(&f.ioq_error().code()));
            let delivered: usize = msgs.iter().map(|m| 32 + m.ext.len() + m.aux.len()).sum();
            prop_assert_eq!(f.offset, delivered as u64);
        }
    }

    #[test]
    fn a_flipped_bit_costs_exactly_its_message(
        (s, starts, expected) in stream(),
        pick in any::<prop::sample::Index>(),
        pieces in pieces(),
    ) {
        let intact = expected;
        let bit = pick.index(s.len() * 8);
        let mut bad = s.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let victim = starts.iter().rposition(|&st| st <= bit / 8).unwrap();
        let (msgs, end) = decode_stream(&bad, &pieces, 2048, 65536);
        prop_assert_eq!(&msgs[..], &intact[..victim]);
        match end {
            Ending::Failed(RxFailure { error, offset }) => {
                prop_assert_eq!(offset, starts[victim] as u64);
                prop_assert!([1, 5, 6, 7].contains(&error.ioq_error().code()), "{:?}", error);
            }
            other => prop_assert!(false, "damage went unnoticed: {:?}", other),
        }
    }

    #[test]
    fn truncation_delivers_what_is_whole_then_eof(
        (s, starts, intact) in stream(),
        cut in any::<prop::sample::Index>(),
        pieces in pieces(),
    ) {
        let n = cut.index(s.len());
        let whole_msgs = starts.iter().filter(|&&st| st < n).count();
        let (msgs, end) = decode_stream(&s[..n], &pieces, 2048, 65536);
        if starts.contains(&n) || n == 0 {
            // A cut at a message boundary is a clean close after the earlier messages.
            prop_assert_eq!(end, Ending::Closed);
            prop_assert_eq!(&msgs[..], &intact[..whole_msgs]);
        } else {
            let victim = whole_msgs - 1;
            prop_assert_eq!(&msgs[..], &intact[..victim]);
            match end {
                Ending::Failed(RxFailure { error: DecodeError::Truncated { .. }, offset }) => {
                    prop_assert_eq!(offset, starts[victim] as u64);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
