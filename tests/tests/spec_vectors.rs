//! The worked vectors of docs/protocol.md §3.7 (V1–V6) and the verifier vector of §2.1, byte for
//! byte, encoded and decoded, in both byte orders.
//!
//! Every expected byte is pasted from the spec text; values the spec does not state (the
//! other byte order's `icrc1`) come from the independent bit-by-bit CRC in `h2msg_tests`.

use h2msg::wire::{Cmd, MessageView, MsgHeader, SoftCrc32c, WireOrder, verifier};
use h2msg_tests::{
    field, hex, read_vector, reference_crc32c, reference_fold16, swap_header_fields,
};

struct Vector {
    name: &'static str,
    order: WireOrder,
    salt: u32,
    source: u16,
    msgid: u32,
    cmd: u32,
    /// Extended header bytes (header bytes 0x20..).
    ext: Vec<u8>,
    /// Aux bytes as the spec shows them, padding included.
    aux: Vec<u8>,
    /// The base header exactly as printed in §3.7.
    wire_header: &'static str,
    /// "CRC-32C of bytes 4..31 = ..." as printed.
    header_crc: u32,
    icrc1: u16,
    icrc2: u16,
    aux_icrc: u32,
}

fn padded(text: &[u8]) -> Vec<u8> {
    let mut v = text.to_vec();
    v.resize(text.len().div_ceil(32) * 32, 0);
    v
}

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "V1",
            order: WireOrder::Little,
            salt: 0x6B8B_4500,
            source: 0,
            msgid: 0,
            cmd: 0x0010_0101,
            ext: vec![],
            aux: vec![],
            wire_header: "32 48 97 2e 00 45 8b 6b 00 00 00 00 00 00 00 00
                          01 01 10 00 00 00 00 00 00 00 00 00 00 00 00 00",
            header_crc: 0x2E9C_000B,
            icrc1: 0x2E97,
            icrc2: 0,
            aux_icrc: 0,
        },
        Vector {
            name: "V2",
            order: WireOrder::Little,
            salt: 0x327B_2301,
            source: 0,
            msgid: 0,
            cmd: 0x0010_0101,
            ext: vec![],
            aux: padded(b"help\0"),
            wire_header: "32 48 1e 91 01 23 7b 32 00 00 00 00 00 00 00 00
                          01 01 10 00 00 00 00 00 00 00 01 00 65 67 ee a7",
            header_crc: 0x4AA9_DBB7,
            icrc1: 0x911E,
            icrc2: 0,
            aux_icrc: 0xA7EE_6765,
        },
        Vector {
            name: "V3",
            order: WireOrder::Little,
            salt: 0x643C_9800,
            source: 0,
            msgid: 0,
            cmd: 0x2010_0101,
            ext: vec![],
            aux: padded(b"Unrecognized command: foo\n\0"),
            wire_header: "32 48 fa 08 00 98 3c 64 00 00 00 00 00 00 00 00
                          01 01 10 20 00 00 00 00 00 00 01 00 ec 2b 8d 9e",
            header_crc: 0xBB78_B382,
            icrc1: 0x08FA,
            icrc2: 0,
            aux_icrc: 0x9E8D_2BEC,
        },
        Vector {
            name: "V4",
            order: WireOrder::Little,
            salt: 0x6633_4801,
            source: 0,
            msgid: 0,
            cmd: 0x2010_0101,
            ext: vec![],
            aux: vec![],
            wire_header: "3248451b 01483366 00000000 00000000 01011020 00000000 00000000 00000000",
            header_crc: 0x3AC7_2182,
            icrc1: 0x1B45,
            icrc2: 0,
            aux_icrc: 0,
        },
        Vector {
            name: "V5",
            order: WireOrder::Big,
            salt: 0x6B8B_4500,
            source: 0,
            msgid: 0,
            cmd: 0x0010_0101,
            ext: vec![],
            aux: vec![],
            wire_header: "48327ff0 6b8b4500 00000000 00000000 00100101 00000000 00000000 00000000",
            header_crc: 0x575D_28AD,
            icrc1: 0x7FF0,
            icrc2: 0,
            aux_icrc: 0,
        },
        Vector {
            name: "V6",
            order: WireOrder::Little,
            salt: 2,
            source: 1,
            msgid: 7,
            cmd: 0x8000_1202,
            ext: (0u8..32).collect(),
            aux: vec![],
            wire_header: "3248b257 02000000 01000000 07000000 02120080 00000000 933f0000 00000000",
            header_crc: 0x43A6_1414,
            icrc1: 0x57B2,
            icrc2: 0x3F93,
            aux_icrc: 0,
        },
    ]
}

impl Vector {
    fn header(&self) -> MsgHeader {
        let mut h = MsgHeader::new(Cmd::from_raw(self.cmd));
        h.salt = self.salt;
        h.source = self.source;
        h.msgid = self.msgid;
        h
    }

    fn wire(&self) -> Vec<u8> {
        let mut w = hex(self.wire_header);
        w.extend_from_slice(&self.ext);
        w.extend_from_slice(&self.aux);
        w
    }
}

/// Seals `v` in `order` and lays out the whole message as the wire carries it.
fn encode(v: &Vector, order: WireOrder) -> (MsgHeader, Vec<u8>) {
    let mut h = v.header();
    let base = h.seal(order, &v.ext, &v.aux, &SoftCrc32c).unwrap();
    let mut out = base.to_vec();
    out.extend_from_slice(&v.ext);
    out.extend_from_slice(&v.aux);
    out.resize(32 + v.ext.len() + h.aux_len(), 0);
    (h, out)
}

#[test]
fn the_spec_s_intermediate_crcs_are_right() {
    for v in vectors() {
        let w = v.wire();
        assert_eq!(reference_crc32c(&w[4..32]), v.header_crc, "{}", v.name);
        assert_eq!(reference_fold16(v.header_crc), v.icrc1, "{}", v.name);
        if !v.aux.is_empty() {
            assert_eq!(reference_crc32c(&v.aux), v.aux_icrc, "{}", v.name);
        }
        if !v.ext.is_empty() {
            assert_eq!(
                reference_fold16(reference_crc32c(&v.ext)),
                v.icrc2,
                "{}",
                v.name
            );
        }
    }
}

#[test]
fn encoding_gives_the_spec_bytes() {
    for v in vectors() {
        let (h, wire) = encode(&v, v.order);
        assert_eq!(wire, v.wire(), "{}", v.name);
        assert_eq!(
            (h.icrc1, h.icrc2, h.aux_icrc),
            (v.icrc1, v.icrc2, v.aux_icrc),
            "{}",
            v.name
        );
    }
}

#[test]
fn decoding_the_spec_bytes_gives_the_fields() {
    for v in vectors() {
        let wire = v.wire();
        let m =
            MessageView::parse(&wire, &SoftCrc32c).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let h = m.header();
        assert_eq!(m.order(), v.order, "{}", v.name);
        assert_eq!(h.cmd.raw(), v.cmd, "{}", v.name);
        assert_eq!(
            (h.salt, h.source, h.target, h.msgid, h.error, h.resv05),
            (v.salt, v.source, 0, v.msgid, 0, 0),
            "{}",
            v.name
        );
        assert_eq!(
            (h.icrc1, h.icrc2, h.aux_icrc),
            (v.icrc1, v.icrc2, v.aux_icrc),
            "{}",
            v.name
        );
        assert_eq!(h.aux_units as usize * 32, v.aux.len(), "{}", v.name);
        assert_eq!(m.ext(), &v.ext[..], "{}", v.name);
        assert_eq!(m.aux(), &v.aux[..], "{}", v.name);
        assert_eq!(m.wire_len(), wire.len(), "{}", v.name);
        assert_eq!(
            m.received().is_bswapped(),
            v.order != WireOrder::Little && cfg!(target_endian = "little")
        );
    }
}

/// The other byte order: each base header field reversed in place, `icrc1` recomputed over
/// the new bytes with the reference CRC; extended and aux bytes unchanged (§3.2).
fn other_order(v: &Vector) -> Vec<u8> {
    let mut base: [u8; 32] = hex(v.wire_header).try_into().unwrap();
    base = swap_header_fields(&base);
    let big = base[0] == 0x48;
    let icrc1 = reference_fold16(reference_crc32c(&base[4..32]));
    base[2..4].copy_from_slice(&if big {
        icrc1.to_be_bytes()
    } else {
        icrc1.to_le_bytes()
    });
    let mut w = base.to_vec();
    w.extend_from_slice(&v.ext);
    w.extend_from_slice(&v.aux);
    w
}

#[test]
fn v5_is_v1_in_the_other_order() {
    let all = vectors();
    assert_eq!(other_order(&all[0]), all[4].wire());
    assert_eq!(other_order(&all[4]), all[0].wire());
}

#[test]
fn every_vector_round_trips_in_the_other_order() {
    for v in vectors() {
        let flipped = match v.order {
            WireOrder::Little => WireOrder::Big,
            WireOrder::Big => WireOrder::Little,
        };
        let expected = other_order(&v);
        let (_, wire) = encode(&v, flipped);
        assert_eq!(wire, expected, "{} in {flipped:?}", v.name);

        let m = MessageView::parse(&expected, &SoftCrc32c).unwrap();
        assert_eq!(m.order(), flipped);
        let h = m.header();
        let big = flipped == WireOrder::Big;
        assert_eq!(h.cmd.raw(), v.cmd);
        assert_eq!(h.salt, v.salt);
        assert_eq!(u32::from(h.icrc1), field(&expected, "icrc1", big));
        assert_eq!((h.icrc2, h.aux_icrc), (v.icrc2, v.aux_icrc));
        assert_eq!(m.ext(), &v.ext[..]);
    }
}

#[test]
fn the_vector_file_holds_the_same_bytes() {
    let file = read_vector("spec/v1-v6.bin");
    let concatenated: Vec<u8> = vectors().iter().flat_map(Vector::wire).collect();
    assert_eq!(file.len(), 288);
    assert_eq!(file, concatenated);
    // And the file decodes as six consecutive messages.
    let mut offset = 0;
    let mut names = Vec::new();
    while offset < file.len() {
        let m = MessageView::parse(&file[offset..], &SoftCrc32c).unwrap();
        names.push(m.header().cmd.raw());
        offset += m.wire_len();
    }
    assert_eq!(
        names,
        [
            0x0010_0101,
            0x0010_0101,
            0x2010_0101,
            0x2010_0101,
            0x0010_0101,
            0x8000_1202
        ]
    );
}

#[test]
fn verifier_vector_of_section_2_1() {
    let sess: [u8; 64] = hex(
        "5a7794b1ceeb0825425f7c99b6d3f00d2a4764819ebbd8f5122f4c6986a3c0dd
         fa1734516e8ba8c5e2ff1c39567390adcae704213e5b7895b2cfec092643607d",
    )
    .try_into()
    .unwrap();
    // The spec's generating rule, as a check on the transcription above.
    for (i, b) in sess.iter().enumerate() {
        assert_eq!(*b, (0x1D * i + 0x5A) as u8);
    }
    assert_eq!(
        verifier(&sess).to_vec(),
        hex("0808f898880818388888381808889878")
    );
    // The spec's warning: 00 01 .. 3f gives an all-zero verifier.
    let counting: [u8; 64] = std::array::from_fn(|i| i as u8);
    assert_eq!(verifier(&counting), [0; 16]);
}
