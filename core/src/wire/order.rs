//! Byte order (§3.2): the protocol has no fixed wire order. Every sender writes header
//! fields in its own host order and the receiver tells which from the magic.
//!
//! h2msg is host-independent: it names the *sender's* order ([`WireOrder`]) and decodes
//! with it explicitly, on any host. The C code's `BSWAPPED` flag ("the sender's order is
//! not mine") is [`WireOrder::is_swapped_on_this_host`]. Only the base header is ever
//! converted; extended headers and aux data stay as sent (§11 R6), so whoever decodes an
//! extended structure needs the `WireOrder` that travels with the header.

use super::error::DecodeError;
use super::limits::MAGIC;

/// The byte order a sender used for its header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireOrder {
    /// Little-endian (x86, the order h2msg sends).
    Little,
    /// Big-endian.
    Big,
}

impl WireOrder {
    /// The order of the host this code runs on.
    pub const NATIVE: Self = if cfg!(target_endian = "big") {
        Self::Big
    } else {
        Self::Little
    };

    /// The sender's order, from the first two bytes of a header or handshake magic:
    /// `32 48` is little-endian 0x4832, `48 32` big-endian. Anything else is SYNC.
    ///
    /// # Errors
    /// [`DecodeError::Sync`] with the two bytes found.
    pub const fn detect(magic: [u8; 2]) -> Result<Self, DecodeError> {
        match u16::from_le_bytes(magic) {
            MAGIC => Ok(Self::Little),
            m if m == MAGIC.swap_bytes() => Ok(Self::Big),
            _ => Err(DecodeError::Sync { found: magic }),
        }
    }

    /// True when the sender's order differs from this host's: the C code's `BSWAPPED`.
    #[must_use]
    pub const fn is_swapped_on_this_host(self) -> bool {
        !matches!(
            (self, Self::NATIVE),
            (Self::Little, Self::Little) | (Self::Big, Self::Big)
        )
    }

    /// The magic as this order puts it on the wire.
    #[must_use]
    pub const fn magic_bytes(self) -> [u8; 2] {
        match self {
            Self::Little => MAGIC.to_le_bytes(),
            Self::Big => MAGIC.to_be_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_both_orders() {
        assert_eq!(WireOrder::detect([0x32, 0x48]), Ok(WireOrder::Little));
        assert_eq!(WireOrder::detect([0x48, 0x32]), Ok(WireOrder::Big));
        assert_eq!(WireOrder::Little.magic_bytes(), [0x32, 0x48]);
        assert_eq!(WireOrder::Big.magic_bytes(), [0x48, 0x32]);
    }

    #[test]
    fn anything_else_is_sync() {
        for found in [
            [0, 0],
            [0x32, 0x32],
            [0x48, 0x48],
            [0xff, 0xff],
            [0x49, 0x32],
        ] {
            assert_eq!(WireOrder::detect(found), Err(DecodeError::Sync { found }));
        }
    }

    #[test]
    fn exactly_one_order_is_swapped_on_any_host() {
        assert_ne!(
            WireOrder::Little.is_swapped_on_this_host(),
            WireOrder::Big.is_swapped_on_this_host()
        );
        assert!(!WireOrder::NATIVE.is_swapped_on_this_host());
    }
}
