//! Helpers shared by the integration tests: where the vectors are, hex decoding, and an
//! independent CRC-32C so that expected values never come from the code under test.

use std::path::PathBuf;

/// The vector folder of this crate (`tests/vectors`).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Reads a vector file, naming it in the panic if it is missing.
pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Decodes hex, ignoring ASCII whitespace (so spec text can be pasted as it is).
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks_exact(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex {s:?}"))
        })
        .collect()
}

/// Parses "0x1234" or "1234" as hexadecimal.
pub fn hex_u32(text: &str) -> u32 {
    let digits = text.trim_start_matches("0x");
    u32::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("bad hex number {text:?}"))
}

/// CRC-32C exactly as PROTOCOL.md Appendix B describes it, one bit at a time.
pub fn reference_crc32c(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    c ^ 0xFFFF_FFFF
}

/// `fold16` of §3.6, written independently of the core's.
pub fn reference_fold16(crc: u32) -> u16 {
    ((crc & 0xFFFF) ^ (crc >> 16)) as u16
}

/// The byte ranges of the base header fields, from the table of PROTOCOL.md §3.1.
pub const HEADER_FIELDS: [(&str, usize, usize); 12] = [
    ("magic", 0x00, 2),
    ("icrc1", 0x02, 2),
    ("salt", 0x04, 4),
    ("source", 0x08, 2),
    ("target", 0x0A, 2),
    ("msgid", 0x0C, 4),
    ("cmd", 0x10, 4),
    ("error", 0x14, 2),
    ("resv05", 0x16, 2),
    ("icrc2", 0x18, 2),
    ("aux_bytes", 0x1A, 2),
    ("aux_icrc", 0x1C, 4),
];

/// The header with every field's bytes reversed: what the other byte order sends.
pub fn swap_header_fields(header: &[u8; 32]) -> [u8; 32] {
    let mut out = *header;
    for (_, offset, len) in HEADER_FIELDS {
        out[offset..offset + len].reverse();
    }
    out
}

/// Reads field `name` of a raw header in the given order (`big` or little).
pub fn field(header: &[u8], name: &str, big: bool) -> u32 {
    let (_, offset, len) = HEADER_FIELDS
        .iter()
        .find(|f| f.0 == name)
        .expect("known field");
    let bytes = &header[*offset..offset + len];
    let mut value = 0u32;
    if big {
        for &b in bytes {
            value = value << 8 | u32::from(b);
        }
    } else {
        for &b in bytes.iter().rev() {
            value = value << 8 | u32::from(b);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_crc_has_the_appendix_b_check_values() {
        assert_eq!(reference_crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(reference_crc32c(&[0; 32]), 0x8A91_36AA);
    }

    #[test]
    fn hex_reads_spec_text() {
        assert_eq!(hex("32 48\n97 2e"), [0x32, 0x48, 0x97, 0x2e]);
        assert_eq!(hex_u32("0x2E97"), 0x2E97);
    }

    #[test]
    fn field_table_tiles_the_header() {
        let mut next = 0;
        for (_, offset, len) in HEADER_FIELDS {
            assert_eq!(offset, next);
            next += len;
        }
        assert_eq!(next, 32);
    }
}
