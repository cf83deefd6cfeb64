//! One test per IOQ error code the receive path can raise (§4.4), each fed through the
//! decoder in several chunkings. SOCK (3) belongs to the transport adapters and STATE (8)
//! is defined but never raised, by the C code or by h2msg.

use h2msg::ioq::RxFailure;
use h2msg::wire::{Cmd, DecodeError, IoqError, MsgHeader, SoftCrc32c, WireOrder};
use h2msg_tests::{Ending, decode_stream, reference_crc32c, reference_fold16};

fn ping(msgid: u32) -> Vec<u8> {
    let mut h = MsgHeader::new(Cmd::LNK_PING);
    h.msgid = msgid;
    h.seal(WireOrder::Little, &[], &[], &SoftCrc32c)
        .unwrap()
        .to_vec()
}

/// A good message, then `bad`: the good one must come out, then the failure at offset 32.
fn fails_after_one_good(bad: &[u8]) -> RxFailure {
    let mut stream = ping(1);
    stream.extend_from_slice(bad);
    let mut result = None;
    for pieces in [&[stream.len()][..], &[1], &[7, 33], &[31]] {
        let (msgs, end) = decode_stream(&stream, pieces, 2048, 65536);
        assert_eq!(msgs.len(), 1, "the message before the damage is delivered");
        assert_eq!(msgs[0].header.msgid, 1);
        let Ending::Failed(f) = end else {
            panic!("no failure with pieces {pieces:?}")
        };
        assert_eq!(f.offset, 32);
        assert_eq!(f.lnk_error().cmd, Cmd::LNK_ERROR);
        assert_eq!(f.lnk_error().error, f.ioq_error().code());
        if let Some(first) = result {
            assert_eq!(first, f, "chunking changed the failure");
        }
        result = Some(f);
    }
    result.unwrap()
}

/// A header with the given raw fields and a correct icrc1 (reference CRC).
fn header_with(cmd: u32, aux_units: u16) -> Vec<u8> {
    let mut w = vec![0u8; 32];
    w[..2].copy_from_slice(&[0x32, 0x48]);
    w[16..20].copy_from_slice(&cmd.to_le_bytes());
    w[26..28].copy_from_slice(&aux_units.to_le_bytes());
    let icrc1 = reference_fold16(reference_crc32c(&w[4..32]));
    w[2..4].copy_from_slice(&icrc1.to_le_bytes());
    w
}

#[test]
fn ioq_error_1_sync() {
    let mut bad = ping(2);
    bad[0] = 0x00;
    let f = fails_after_one_good(&bad);
    assert_eq!(f.ioq_error(), IoqError::Sync);
    assert_eq!(
        f.error,
        DecodeError::Sync {
            found: [0x00, 0x48]
        }
    );
}

#[test]
fn ioq_error_2_eof_inside_a_message() {
    let mut h = MsgHeader::new(Cmd::DBG_SHELL);
    let mut bad = h
        .seal(WireOrder::Little, &[], b"cut short", &SoftCrc32c)
        .unwrap()
        .to_vec();
    bad.extend_from_slice(b"cut");
    let f = fails_after_one_good(&bad);
    assert_eq!(f.ioq_error(), IoqError::Eof);
    assert_eq!(
        f.error,
        DecodeError::Truncated {
            needed: 64,
            available: 35
        }
    );
}

#[test]
fn ioq_error_2_is_not_raised_at_a_boundary() {
    let (msgs, end) = decode_stream(&ping(1), &[5], 2048, 0);
    assert_eq!((msgs.len(), end), (1, Ending::Closed));
}

#[test]
fn ioq_error_4_field_header_size() {
    for units in [0u32, 65, 255] {
        let f = fails_after_one_good(&header_with(0x0000_0100 | units, 0));
        assert_eq!(f.ioq_error(), IoqError::Field);
        assert_eq!(f.error, DecodeError::HeaderSize { units: units as u8 });
    }
}

#[test]
fn ioq_error_4_field_aux_size() {
    let f = fails_after_one_good(&header_with(0x0000_0101, 2049));
    assert_eq!(f.ioq_error(), IoqError::Field);
    assert_eq!(f.error, DecodeError::AuxSize { units: 2049 });
}

#[test]
fn ioq_error_5_hcrc() {
    let mut bad = ping(2);
    bad[12] ^= 0x01; // msgid
    let f = fails_after_one_good(&bad);
    assert_eq!(f.ioq_error(), IoqError::Hcrc);
    assert!(matches!(f.error, DecodeError::Hcrc { .. }));
}

#[test]
fn ioq_error_6_xcrc() {
    let ext = [0x5Au8; 64];
    let mut h = MsgHeader::new(Cmd::from_raw(0x0000_1203));
    let mut bad = h
        .seal(WireOrder::Little, &ext, &[], &SoftCrc32c)
        .unwrap()
        .to_vec();
    bad.extend_from_slice(&ext);
    bad[32 + 63] ^= 0x80;
    let f = fails_after_one_good(&bad);
    assert_eq!(f.ioq_error(), IoqError::Xcrc);
    assert!(matches!(f.error, DecodeError::Xcrc { .. }));
}

#[test]
fn ioq_error_7_acrc_in_the_fifo_and_in_lent_storage() {
    for aux_len in [64usize, 4096] {
        let aux = vec![0x11u8; aux_len];
        let mut h = MsgHeader::new(Cmd::DBG_SHELL);
        let mut bad = h
            .seal(WireOrder::Little, &[], &aux, &SoftCrc32c)
            .unwrap()
            .to_vec();
        bad.extend_from_slice(&aux);
        *bad.last_mut().unwrap() ^= 0x01;
        let f = fails_after_one_good(&bad);
        assert_eq!(f.ioq_error(), IoqError::Acrc, "aux {aux_len}");
        assert!(matches!(f.error, DecodeError::Acrc { .. }));
    }
}

#[test]
fn ioq_error_6_xcrc_comes_before_eof_in_the_aux() {
    // §5 HEADER2: the extended header is checked as soon as it is complete, so a bad one
    // is reported as XCRC even when the input then ends inside the aux data.
    let ext = [0x5Au8; 32];
    let mut h = MsgHeader::new(Cmd::from_raw(0x0000_1202));
    let mut bad = h
        .seal(WireOrder::Little, &ext, &[1u8; 64], &SoftCrc32c)
        .unwrap()
        .to_vec();
    bad.extend_from_slice(&ext);
    bad[40] ^= 0x01;
    bad.extend_from_slice(&[1u8; 10]); // 10 of 64 aux bytes, then the end
    let f = fails_after_one_good(&bad);
    assert_eq!(f.ioq_error(), IoqError::Xcrc);
}
