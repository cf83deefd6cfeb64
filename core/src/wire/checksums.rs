//! The three message checksums of §3.6, each over exactly the bytes the spec names.
//!
//! | Field | Covers | Stored |
//! |---|---|---|
//! | `aux_icrc` | the aux data as sent, padding included | full 32 bits |
//! | `icrc2` | header bytes 0x20..hbytes (the extended part), 0 if none | [`fold16`] |
//! | `icrc1` | base header bytes 0x04..0x20 (salt through `aux_icrc`) | [`fold16`] |
//!
//! `icrc1` covers `icrc2`, `aux_bytes` and `aux_icrc`, so a sender computes them in the
//! order `aux_icrc`, `icrc2`, `icrc1`. All three are over the bytes as they are on the wire,
//! in the sender's byte order.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::crc::{Crc32c, fold16};
use super::limits::{ALIGN, BASE_HEADER_LEN, HDR_CRC_BYTES, pad_len};

/// The base header split where `icrc1` coverage starts.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct CrcCoverage {
    magic: [u8; 2],
    icrc1: [u8; 2],
    covered: [u8; HDR_CRC_BYTES],
}

const _: () = assert!(size_of::<CrcCoverage>() == BASE_HEADER_LEN);

/// Zeros to pad an aux payload to a whole unit (§11 T6: padding is zeros, never garbage).
pub(crate) static ZERO_PAD: [u8; ALIGN] = [0; ALIGN];

/// The zero bytes that pad `len` bytes of aux data to a multiple of 32.
#[must_use]
pub(crate) fn zero_pad_for(len: usize) -> &'static [u8] {
    ZERO_PAD.get(..pad_len(len)).unwrap_or_default()
}

/// `icrc1` of a 32-byte base header as it is on the wire: bytes 0x04..0x20, folded.
#[must_use]
pub fn compute_icrc1(base: &[u8; BASE_HEADER_LEN], crc: &impl Crc32c) -> u16 {
    let view: &CrcCoverage = zerocopy::transmute_ref!(base);
    fold16(crc.checksum(&view.covered))
}

/// `icrc2` of an extended header (header bytes 0x20..hbytes): folded CRC, or 0 when
/// `ext` is empty (a 32-byte header has no extended part and carries 0).
#[must_use]
pub fn compute_icrc2(ext: &[u8], crc: &impl Crc32c) -> u16 {
    if ext.is_empty() {
        0
    } else {
        fold16(crc.checksum(ext))
    }
}

/// `aux_icrc` of an aux payload, as if padded with zeros to a multiple of 32.
///
/// For data that is already padded (as received) the padding is empty, so this is the plain
/// CRC-32C. Empty aux gives 0.
#[must_use]
pub fn compute_aux_icrc(aux: &[u8], crc: &impl Crc32c) -> u32 {
    if aux.is_empty() {
        return 0;
    }
    crc.append(crc.checksum(aux), zero_pad_for(aux.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SoftCrc32c;

    #[test]
    fn icrc1_covers_bytes_4_to_31_only() {
        // V1 of §3.7.
        let mut v1 = [0u8; 32];
        v1[..8].copy_from_slice(&[0x32, 0x48, 0x97, 0x2e, 0x00, 0x45, 0x8b, 0x6b]);
        v1[16..20].copy_from_slice(&[0x01, 0x01, 0x10, 0x00]);
        assert_eq!(compute_icrc1(&v1, &SoftCrc32c), 0x2E97);
        // Magic and icrc1 are outside the coverage.
        let mut changed = v1;
        changed[0] ^= 0xFF;
        changed[3] ^= 0xFF;
        assert_eq!(compute_icrc1(&changed, &SoftCrc32c), 0x2E97);
        changed[31] ^= 1;
        assert_ne!(compute_icrc1(&changed, &SoftCrc32c), 0x2E97);
    }

    #[test]
    fn icrc2_is_zero_without_an_extended_header() {
        assert_eq!(compute_icrc2(&[], &SoftCrc32c), 0);
        let ext: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(compute_icrc2(&ext, &SoftCrc32c), 0x3F93);
    }

    #[test]
    fn aux_icrc_pads_with_zeros() {
        // V2: "help\0" padded to 32 bytes.
        assert_eq!(compute_aux_icrc(b"help", &SoftCrc32c), 0xA7EE_6765);
        assert_eq!(compute_aux_icrc(b"help\0", &SoftCrc32c), 0xA7EE_6765);
        let mut padded = [0u8; 32];
        padded[..4].copy_from_slice(b"help");
        assert_eq!(compute_aux_icrc(&padded, &SoftCrc32c), 0xA7EE_6765);
        assert_eq!(compute_aux_icrc(&[], &SoftCrc32c), 0);
    }
}
