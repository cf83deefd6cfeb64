//! The DMSG revision's framing (dmsg.md 2.8): vectors V1–V5 byte for byte, bit flips,
//! truncation, every chunking, limits. Expected bytes are written out from the DMSG specification and
//! `dmsg_vectors.py`'s printed output, never produced by the code under test.

use h2msg::CounterSalt;
use h2msg::ioq::{DmsgRxDecoder, DmsgTxQueue, RxDecoder, RxPoll, TxQueue};
use h2msg::wire::{
    Cmd, DecodeError, DmsgHeader, IoqError, MessageView, Outgoing, SendFrame, SoftCrc32c, WireOrder,
};
use h2msg_tests::dmsg_vector;
use proptest::prelude::*;

fn v1() -> Vec<u8> {
    dmsg_vector(1)
}
fn v2() -> Vec<u8> {
    dmsg_vector(2)
}
fn v3() -> Vec<u8> {
    dmsg_vector(3)
}
fn v4() -> Vec<u8> {
    dmsg_vector(4)
}
fn v5() -> Vec<u8> {
    dmsg_vector(5)
}

/// (wire, salt, msgid, cmd, ext, aux, order) as the spec text states them.
/// One vector: (wire, salt, msgid, cmd, ext, aux, order).
type Vector = (Vec<u8>, u32, u64, u32, Vec<u8>, Vec<u8>, WireOrder);

fn vectors() -> Vec<Vector> {
    let v1w = v1();
    let v2w = v2();
    vec![
        (
            v1w.clone(),
            0x1234_5600,
            1,
            0x8000_1106,
            v1w[64..].to_vec(),
            vec![],
            WireOrder::Little,
        ),
        (
            v2w.clone(),
            0x9ABC_DE01,
            2,
            0x8000_1207,
            v2w[64..].to_vec(),
            vec![],
            WireOrder::Little,
        ),
        (
            v3(),
            0x0BAD_CA02,
            0,
            0x0010_0101,
            vec![],
            b"tree\0".to_vec(),
            WireOrder::Little,
        ),
        (
            v4(),
            0x55AA_7703,
            0x7F5A_1C00_2A40,
            0xA80F_FF01,
            vec![],
            vec![],
            WireOrder::Little,
        ),
        (
            v5(),
            0x55AA_7703,
            0x7F5A_1C00_2A40,
            0xA80F_FF01,
            vec![],
            vec![],
            WireOrder::Big,
        ),
    ]
}

#[test]
fn vectors_encode_byte_for_byte() {
    for (i, (wire, salt, msgid, cmd, ext, aux, order)) in vectors().into_iter().enumerate() {
        let mut h = DmsgHeader::new(Cmd::from_raw(cmd));
        h.salt = salt;
        h.msgid = msgid;
        let out = Outgoing {
            order,
            ext: &ext,
            aux: &aux,
            crc: &SoftCrc32c,
        };
        let base = h.seal_outgoing(&out).unwrap();
        let mut got = base.to_vec();
        got.extend_from_slice(&ext);
        got.extend_from_slice(&aux);
        got.extend_from_slice(DmsgHeader::aux_zero_pad(aux.len()));
        assert_eq!(got, wire, "V{}", i + 1);
    }
    let mut h = DmsgHeader::new(Cmd::from_raw(0x0010_0101));
    h.salt = 0x0BAD_CA02;
    let out = Outgoing {
        order: WireOrder::Little,
        ext: &[],
        aux: b"tree\0",
        crc: &SoftCrc32c,
    };
    h.seal_outgoing(&out).unwrap();
    assert_eq!(
        (h.aux_crc, h.hdr_crc, h.aux_bytes),
        (0xB1E3_FFE0, 0x3120_6C0D, 5)
    );
}

#[test]
fn vectors_decode_field_by_field() {
    let hdr_crcs = [
        0xCAA4_96F6,
        0x6A4F_B60A,
        0x3120_6C0D,
        0x3391_4E00,
        0xEBF0_26AF,
    ];
    for (i, (wire, salt, msgid, cmd, ext, aux, order)) in vectors().into_iter().enumerate() {
        let m = MessageView::parse_dmsg(&wire, &SoftCrc32c).unwrap();
        let h = m.header();
        assert_eq!(
            (h.salt, h.msgid, h.cmd, h.hdr_crc),
            (salt, msgid, cmd, hdr_crcs[i]),
            "V{}",
            i + 1
        );
        assert_eq!((m.ext(), m.aux(), m.order()), (&ext[..], &aux[..], order));
        assert_eq!(m.wire_len(), wire.len());
    }
}

/// V1..V4 as one little-endian stream (sequence 0..3), decoded in every chunking.
#[test]
fn decoder_every_chunking() {
    let stream: Vec<u8> = [v1(), v2(), v3(), v4()].concat();
    for chunk in [1, 2, 3, 7, 63, 64, 65, 100, 383, 1000, stream.len()] {
        let mut rx: DmsgRxDecoder<_, _, _> =
            RxDecoder::new_framed(vec![0u8; 2048], vec![0u8; 0], SoftCrc32c).unwrap();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        loop {
            match rx.poll() {
                RxPoll::Message(m) => got.push((m.header().msgid, m.aux().to_vec())),
                RxPoll::NeedInput if rest.is_empty() => rx.end_input(),
                RxPoll::NeedInput => {
                    let n = rx.feed(&rest[..chunk.min(rest.len())]);
                    rest = &rest[n..];
                }
                RxPoll::Closed => break,
                other => panic!("chunk {chunk}: {other:?}"),
            }
        }
        assert_eq!(got.len(), 4, "chunk {chunk}");
        assert_eq!(got[2], (0, b"tree\0".to_vec()));
    }
}

fn decode_one(wire: &[u8]) -> Result<(), IoqError> {
    let mut rx: DmsgRxDecoder<_, _, _> =
        RxDecoder::new_framed(vec![0u8; 2048], vec![0u8; 1 << 20], SoftCrc32c).unwrap();
    let mut rest = wire;
    loop {
        match rx.poll() {
            RxPoll::Message(_) => {}
            RxPoll::NeedInput if rest.is_empty() => rx.end_input(),
            RxPoll::NeedInput => {
                let n = rx.feed(rest);
                rest = &rest[n..];
            }
            RxPoll::Closed => return Ok(()),
            RxPoll::Failed(f) => return Err(f.ioq_error()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sequence_is_enforced_in_plaintext() {
    // V2 carries sequence 1: as a stream's first message it is MSGSEQ.
    assert_eq!(decode_one(&v2()), Err(IoqError::MsgSeq));
    assert_eq!(decode_one(&v1()), Ok(()));
}

#[test]
fn limits() {
    let seal = |units: u32, aux: &[u8]| {
        let mut h = DmsgHeader::new(Cmd::from_raw(0x0010_0100 | units));
        let ext = vec![0u8; (units as usize).saturating_sub(1) * 64];
        let out = Outgoing {
            order: WireOrder::Little,
            ext: &ext,
            aux,
            crc: &SoftCrc32c,
        };
        h.seal_outgoing(&out)
            .map(|b| [b.to_vec(), ext.clone(), aux.to_vec()].concat())
    };
    let mut biggest = seal(32, &[]).unwrap();
    assert_eq!(biggest.len(), 2048);
    assert_eq!(decode_one(&biggest), Ok(()));
    assert!(seal(33, &[]).is_err());
    biggest[0x20] = 33; // 2112 bytes: FIELD before any CRC
    assert_eq!(decode_one(&biggest), Err(IoqError::Field));
    let mib = vec![7u8; 1 << 20];
    assert_eq!(decode_one(&seal(1, &mib).unwrap()), Ok(()));
    assert!(seal(1, &vec![0u8; (1 << 20) + 1]).is_err());
    let mut over = seal(1, &[1]).unwrap();
    over[0x28..0x2C].copy_from_slice(&((1u32 << 20) + 1).to_le_bytes());
    assert_eq!(
        MessageView::parse_dmsg(&over, &SoftCrc32c).unwrap_err(),
        DecodeError::DmsgAuxSize {
            aux_bytes: (1 << 20) + 1
        }
    );
    // A too-small aux storage is a typed, non-fatal answer.
    let wire = seal(1, &mib).unwrap();
    let mut rx: DmsgRxDecoder<_, _, _> =
        RxDecoder::new_framed(vec![0u8; 2048], vec![0u8; 1000], SoftCrc32c).unwrap();
    rx.feed(&wire);
    assert!(matches!(
        rx.poll(),
        RxPoll::AuxStorageTooSmall {
            needed: 1048576,
            available: 1000
        }
    ));
}

#[test]
fn queue_sends_v3_with_its_sequence() {
    let mut tx: DmsgTxQueue<_, _, _> = TxQueue::new_framed(
        vec![0u8; 4096],
        CounterSalt::default(),
        SoftCrc32c,
        WireOrder::Little,
    );
    for _ in 0..3 {
        tx.enqueue(DmsgHeader::new(Cmd::from_raw(0x0010_0101)), &[], b"tree\0")
            .unwrap();
    }
    let mut all = vec![0u8; tx.pending_len()];
    tx.copy_pending(&mut all);
    assert_eq!(all.len(), 3 * 128);
    assert_eq!(decode_one(&all), Ok(()));
    assert_eq!(all[4], 0); // sequence 0 in the salt's low byte
    assert_eq!(all[128 + 4], 1);
}

proptest! {
    #[test]
    fn any_single_bit_flip_is_rejected(which in 0usize..5, bit in any::<prop::sample::Index>()) {
        let wire = [v1(), v2(), v3(), v4(), v5()][which].clone();
        let bit = bit.index(wire.len() * 8);
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = MessageView::parse_dmsg(&bad, &SoftCrc32c).unwrap_err().ioq_error();
        let at = bit / 8;
        let expected: &[IoqError] = if at < 2 {
            &[IoqError::Sync]
        } else if at == if which == 4 { 0x23 } else { 0x20 } || (0x28..0x2C).contains(&at) {
            // size fields: out of range, or a different length (truncated / CRC)
            &[IoqError::Field, IoqError::Eof, IoqError::Xcrc, IoqError::Acrc]
        } else if at >= wire.len() - if which == 2 { 64 } else { 0 } {
            &[IoqError::Acrc]
        } else {
            &[IoqError::Xcrc]
        };
        prop_assert!(expected.contains(&err), "byte {at:#x}: {err:?}");
    }

    #[test]
    fn truncation_is_eof(which in 0usize..5, cut in any::<prop::sample::Index>()) {
        let wire = [v1(), v2(), v3(), v4(), v5()][which].clone();
        let cut = cut.index(wire.len());
        let err = MessageView::parse_dmsg(&wire[..cut], &SoftCrc32c).unwrap_err();
        prop_assert_eq!(err.ioq_error(), IoqError::Eof);
        if cut > 0 {
            prop_assert_eq!(decode_one(&wire[..cut]), Err(IoqError::Eof));
        }
    }
}
