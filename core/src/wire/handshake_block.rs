//! The 512-byte handshake block each side sends first (§2.1), and its verifier.
//!
//! | Off | Size | Field | Content |
//! |---|---|---|---|
//! | 0x000 | 8 | `pad1` | random; byte 0 `&= 0x3F`; bytes 4..8 the RSA retry counter |
//! | 0x008 | 2 | `magic` | 0x4832 in sender order |
//! | 0x00A | 2 | `version` | 1, sender order |
//! | 0x00C | 4 | `flags` | 0, sender order, ignored by the receiver |
//! | 0x010 | 64 | `sess` | the sender's 512 random session bits |
//! | 0x050 | 16 | `verf` | `verf[k] = sess[4k] ^ sess[4k+1] ^ sess[4k+2] ^ sess[4k+3]` |
//! | 0x060 | 32 | `quickmsg` | "Testing 1 2 3\0", rest random |
//! | 0x080 | 128 | `junk080` | random |
//! | 0x100 | 8 | `pad2` | like `pad1`, for the second RSA block |
//! | 0x108 | 248 | `junk100` | random |
//!
//! The order-dependent fields are kept as bytes: the receiver does not validate the magic
//! (§11 H3), it only uses it to decide how to read `version` and `flags`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::limits::{HANDSHAKE_LEN, HANDSHAKE_QUICKMSG, HANDSHAKE_VERSION, MAGIC};
use super::order::WireOrder;

/// Length of the session key material.
pub const SESS_LEN: usize = 64;
/// Length of the verifier.
pub const VERF_LEN: usize = 16;

/// The handshake block exactly as sent (before, and after undoing, the RSA transform).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[allow(missing_docs)] // the table in the module docs describes every field
pub struct HandshakeBlock {
    pub pad1: [u8; 8],
    pub magic: [u8; 2],
    pub version: [u8; 2],
    pub flags: [u8; 4],
    pub sess: [u8; SESS_LEN],
    pub verf: [u8; VERF_LEN],
    pub quickmsg: [u8; 32],
    pub junk080: [u8; 128],
    pub pad2: [u8; 8],
    pub junk100: [u8; 248],
}

const _: () = assert!(size_of::<HandshakeBlock>() == HANDSHAKE_LEN);

/// The verifier of a session key as the C code computes it (§2.1, §11 H1): byte `k` is the
/// XOR of `sess[4k..4k+4]`, with no complement.
#[must_use]
pub fn verifier(sess: &[u8; SESS_LEN]) -> [u8; VERF_LEN] {
    let mut verf = [0u8; VERF_LEN];
    for (v, group) in verf.iter_mut().zip(sess.chunks_exact(4)) {
        *v = group.iter().fold(0, |acc, b| acc ^ b);
    }
    verf
}

impl HandshakeBlock {
    /// The 512 wire bytes viewed as a block (no copy).
    #[must_use]
    pub fn from_wire(bytes: &[u8; HANDSHAKE_LEN]) -> &Self {
        zerocopy::transmute_ref!(bytes)
    }

    /// The 512 wire bytes viewed as a mutable block (no copy).
    #[must_use]
    pub fn from_wire_mut(bytes: &mut [u8; HANDSHAKE_LEN]) -> &mut Self {
        zerocopy::transmute_mut!(bytes)
    }

    /// The block's 512 wire bytes (no copy).
    #[must_use]
    pub fn wire_bytes(&self) -> &[u8; HANDSHAKE_LEN] {
        zerocopy::transmute_ref!(self)
    }

    /// Sets what §2.3 step 6 overwrites after the random fill: `quickmsg` text, magic,
    /// version 1 and flags 0 in `order`, the verifier of the current `sess`, and the top two
    /// bits of both `pad` bytes 0 cleared (so each RSA block is below the modulus).
    pub fn stamp(&mut self, order: WireOrder) {
        self.stamp_with_flags(order, 0);
    }

    /// Like [`stamp`](Self::stamp), with `flags` in the `flags` field (C nodes send 0 and
    /// ignore it; h2msg advertises its stream modes there, see [`ModeChoice`](crate::ModeChoice)).
    pub fn stamp_with_flags(&mut self, order: WireOrder, flags: u32) {
        for (dst, src) in self.quickmsg.iter_mut().zip(HANDSHAKE_QUICKMSG) {
            *dst = *src;
        }
        let (magic, version, flags) = match order {
            WireOrder::Little => (
                MAGIC.to_le_bytes(),
                HANDSHAKE_VERSION.to_le_bytes(),
                flags.to_le_bytes(),
            ),
            WireOrder::Big => (
                MAGIC.to_be_bytes(),
                HANDSHAKE_VERSION.to_be_bytes(),
                flags.to_be_bytes(),
            ),
        };
        self.magic = magic;
        self.version = version;
        self.flags = flags;
        self.verf = verifier(&self.sess);
        for pad in [&mut self.pad1, &mut self.pad2] {
            pad[0] &= 0x3F;
        }
    }

    /// The order to read `version` and `flags` in: the sender's if the magic names one,
    /// else this host's (the C receiver swaps only on the reversed magic, §2.5 step 4).
    #[must_use]
    pub fn field_order(&self) -> WireOrder {
        WireOrder::detect(self.magic).unwrap_or(WireOrder::NATIVE)
    }

    /// The version field, read in [`field_order`](Self::field_order).
    #[must_use]
    pub fn version(&self) -> u16 {
        match self.field_order() {
            WireOrder::Little => u16::from_le_bytes(self.version),
            WireOrder::Big => u16::from_be_bytes(self.version),
        }
    }

    /// The flags field, read in [`field_order`](Self::field_order).
    #[must_use]
    pub fn flags(&self) -> u32 {
        match self.field_order() {
            WireOrder::Little => u32::from_le_bytes(self.flags),
            WireOrder::Big => u32::from_be_bytes(self.flags),
        }
    }

    /// §2.5 step 5: XOR the recomputed verifier into the received one, sum the bytes, add 1
    /// if the version is not 1; the block is acceptable iff the total is 0. The sum touches
    /// every byte whatever the data, so its time does not depend on where a mismatch is.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        let expected = verifier(&self.sess);
        let sum: u32 = self
            .verf
            .iter()
            .zip(expected)
            .map(|(got, want)| u32::from(got ^ want))
            .sum();
        sum + u32::from(self.version() != HANDSHAKE_VERSION) == 0
    }

    /// The `quickmsg` text up to its NUL (the C peers send "Testing 1 2 3").
    #[must_use]
    pub fn quickmsg_text(&self) -> &[u8] {
        super::until_nul(&self.quickmsg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn field_offsets_match_section_2_1() {
        type B = HandshakeBlock;
        let table = [
            (offset_of!(B, pad1), 0x000),
            (offset_of!(B, magic), 0x008),
            (offset_of!(B, version), 0x00A),
            (offset_of!(B, flags), 0x00C),
            (offset_of!(B, sess), 0x010),
            (offset_of!(B, verf), 0x050),
            (offset_of!(B, quickmsg), 0x060),
            (offset_of!(B, junk080), 0x080),
            (offset_of!(B, pad2), 0x100),
            (offset_of!(B, junk100), 0x108),
        ];
        for (i, (off, spec)) in table.into_iter().enumerate() {
            assert_eq!(off, spec, "field {i}");
        }
    }

    #[test]
    fn verifier_vector_of_section_2_1() {
        let sess: [u8; 64] = core::array::from_fn(|i| (0x1D * i + 0x5A) as u8);
        assert_eq!(
            verifier(&sess),
            [
                0x08, 0x08, 0xf8, 0x98, 0x88, 0x08, 0x18, 0x38, 0x88, 0x88, 0x38, 0x18, 0x08, 0x88,
                0x98, 0x78
            ]
        );
    }

    fn random_block(seed: u8) -> HandshakeBlock {
        let bytes: [u8; 512] =
            core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) | 0xC0);
        HandshakeBlock::read_from_bytes(&bytes).unwrap()
    }

    #[test]
    fn stamp_sets_the_fixed_fields() {
        for order in [WireOrder::Little, WireOrder::Big] {
            let mut b = random_block(3);
            let sess_before = b.sess;
            b.stamp(order);
            let bytes = b.as_bytes();
            assert_eq!(&bytes[0x60..0x6E], b"Testing 1 2 3\0");
            assert_eq!(&bytes[8..10], &order.magic_bytes());
            assert_eq!(b.version(), 1);
            assert_eq!(b.flags(), 0);
            assert_eq!(bytes[0] & 0xC0, 0);
            assert_eq!(bytes[0x100] & 0xC0, 0);
            assert_eq!(b.sess, sess_before);
            assert!(b.is_valid());
            assert_eq!(b.quickmsg_text(), b"Testing 1 2 3");
        }
    }

    #[test]
    fn flags_are_read_in_the_sender_order() {
        for order in [WireOrder::Little, WireOrder::Big] {
            let mut b = random_block(5);
            b.stamp(order);
            b.flags = match order {
                WireOrder::Little => 0x0102_0304u32.to_le_bytes(),
                WireOrder::Big => 0x0102_0304u32.to_be_bytes(),
            };
            assert_eq!(b.flags(), 0x0102_0304, "{order:?}");
            assert!(b.is_valid(), "flags are ignored by the receiver");
        }
    }

    #[test]
    fn big_endian_version_reads_as_one() {
        let mut b = random_block(9);
        b.stamp(WireOrder::Big);
        assert_eq!(b.version, [0, 1]);
        assert_eq!(b.field_order(), WireOrder::Big);
    }

    #[test]
    fn any_verifier_or_sess_bit_flip_is_invalid() {
        let mut good = random_block(1);
        good.stamp(WireOrder::Little);
        for byte in 0x10..0x60 {
            let mut bad = good;
            bad.as_mut_bytes()[byte] ^= 0x40;
            assert!(!bad.is_valid(), "byte {byte:#x}");
        }
    }

    #[test]
    fn wrong_version_is_invalid() {
        let mut b = random_block(2);
        b.stamp(WireOrder::Little);
        b.version = 2u16.to_le_bytes();
        assert!(!b.is_valid());
        b.version = 0u16.to_le_bytes();
        assert!(!b.is_valid());
    }

    #[test]
    fn garbage_magic_reads_fields_in_host_order() {
        let mut b = random_block(4);
        b.stamp(WireOrder::NATIVE);
        b.magic = [0, 0];
        assert_eq!(b.field_order(), WireOrder::NATIVE);
        assert!(b.is_valid()); // the magic is not checked (§11 H3)
    }
}
