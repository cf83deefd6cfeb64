//! CRC-32C (Castagnoli, CRC-32/ISCSI) and the 16-bit fold the header CRCs use (§3.6).
//!
//! Core's implementation, [`SoftCrc32c`], is portable: a 16-slice table (16 KiB, built at
//! compile time into read-only data) from the `crc` crate. An adapter that has hardware
//! CRC-32C (SSE4.2 `crc32`, ARMv8 CRC) passes its own [`Crc32c`] instead; core never
//! depends on it.

use crc::{CRC_32_ISCSI, Crc, Table};

/// A CRC-32C engine. Implement it to give core a faster (hardware) CRC.
///
/// The value passed around is the *finished* CRC (after the final XOR), the convention of
/// most CRC-32C libraries' `append` functions: `append(append(0, a), b)` equals
/// `append(0, a ‖ b)`.
pub trait Crc32c {
    /// The CRC-32C of the earlier bytes (whose CRC is `crc`; 0 for none) followed by `bytes`.
    #[must_use]
    fn append(&self, crc: u32, bytes: &[u8]) -> u32;

    /// The CRC-32C of `bytes`.
    #[must_use]
    fn checksum(&self, bytes: &[u8]) -> u32 {
        self.append(0, bytes)
    }
}

impl<T: Crc32c + ?Sized> Crc32c for &T {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        (**self).append(crc, bytes)
    }
}

static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// The portable CRC-32C: slice-by-16 tables from the `crc` crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftCrc32c;

impl Crc32c for SoftCrc32c {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        // The crc crate takes an initial *register* value in the algorithm's (unreflected)
        // convention: undo the final XOR, then the input reflection it will apply.
        let register = (crc ^ CRC_32_ISCSI.xorout).reverse_bits();
        let mut digest = CRC32C.digest_with_initial(register);
        digest.update(bytes);
        digest.finalize()
    }

    fn checksum(&self, bytes: &[u8]) -> u32 {
        CRC32C.checksum(bytes)
    }
}

/// Folds a CRC-32C into the 16 bits a header field holds: `(c & 0xFFFF) ^ (c >> 16)`.
#[must_use]
pub const fn fold16(crc: u32) -> u16 {
    let [b0, b1, b2, b3] = crc.to_le_bytes();
    u16::from_le_bytes([b0 ^ b2, b1 ^ b3])
}

/// A [`Crc32c`] that counts bytes, for tests that prove a CRC is computed once.
#[cfg(test)]
pub(crate) struct CountingCrc(pub core::cell::Cell<usize>);

#[cfg(test)]
impl Crc32c for CountingCrc {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        self.0.set(self.0.get() + bytes.len());
        SoftCrc32c.append(crc, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appendix B, bit by bit: independent of the `crc` crate's tables.
    fn reference(bytes: &[u8]) -> u32 {
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

    #[test]
    fn self_test_values_of_appendix_b() {
        assert_eq!(SoftCrc32c.checksum(b"123456789"), 0xE306_9283);
        assert_eq!(SoftCrc32c.checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(reference(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn table_entries_of_section_3_6() {
        // Entry i of the C table is the raw register after 8 rounds on i: the CRC of the
        // single byte i with init 0 and no final XOR. With init/xorout 0xFFFFFFFF that is
        // crc(byte) ^ crc(0x00) (linearity).
        let entry = |i: u8| SoftCrc32c.checksum(&[i]) ^ SoftCrc32c.checksum(&[0]);
        assert_eq!(entry(1), 0xF26B_8303);
        assert_eq!(entry(255), 0xAD7D_5351);
    }

    #[test]
    fn fold16_xors_the_halves() {
        assert_eq!(fold16(0x2E9C_000B), 0x2E97);
        assert_eq!(fold16(0x43A6_1414), 0x57B2);
        assert_eq!(fold16(0xFFFF_FFFF), 0);
    }

    #[test]
    fn references_to_engines_are_engines() {
        let by_ref: &SoftCrc32c = &SoftCrc32c;
        assert_eq!(Crc32c::checksum(&by_ref, b"123456789"), 0xE306_9283);
        assert_eq!(Crc32c::append(&by_ref, 0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn empty_input_keeps_the_crc() {
        assert_eq!(SoftCrc32c.checksum(&[]), 0);
        assert_eq!(SoftCrc32c.append(0x1234_5678, &[]), 0x1234_5678);
    }

    proptest! {
        #[test]
        fn matches_the_bitwise_reference(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(SoftCrc32c.checksum(&bytes), reference(&bytes));
        }

        #[test]
        fn append_is_concatenation(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(bytes.len() + 1);
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(SoftCrc32c.append(SoftCrc32c.checksum(a), b), reference(&bytes));
        }
    }
}
