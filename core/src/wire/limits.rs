//! Protocol constants: alignment, size limits, magic values and the port (§3.5, App. A).

/// TCP port of the service (`HAMMER2_LISTEN_PORT`).
pub const LISTEN_PORT: u16 = 987;

/// The header magic as the sender writes it in its own byte order.
pub const MAGIC: u16 = 0x4832;
/// The magic as read by a receiver of the opposite byte order.
pub const MAGIC_REV: u16 = 0x3248;

/// Unit of header and aux sizes, in bytes.
pub const ALIGN: usize = 32;
/// `ALIGN - 1`, for rounding.
pub const ALIGN_MASK: usize = ALIGN - 1;

/// Size of the base message header.
pub const BASE_HEADER_LEN: usize = 32;
/// Largest header (base + extended), in bytes: the size field may be 1..=64.
pub const MSGHDR_MAX: usize = 2048;
/// Largest aux payload, in bytes (`aux_bytes` ≤ 2048 units).
pub const MSGAUX_MAX: usize = 65536;
/// Size of the C receive FIFO, the default for ours (4 × [`MSGHDR_MAX`]).
pub const MSGBUF_SIZE: usize = 8192;
/// Most slices handed to one vectored write.
pub const MAXIOVEC: usize = 16;

/// Offset of the first byte covered by `icrc1` (the salt).
pub const HDR_CRC_OFFSET: usize = 4;
/// Number of bytes covered by `icrc1` (salt through `aux_icrc`).
pub const HDR_CRC_BYTES: usize = 28;

/// Length of the handshake block each side sends.
pub const HANDSHAKE_LEN: usize = 512;
/// The only handshake version the seed era accepts (§2.5, §11 H2).
pub const HANDSHAKE_VERSION: u16 = 1;
/// The `quickmsg` every 2012 node sends, NUL included (14 bytes).
pub const HANDSHAKE_QUICKMSG: &[u8; 14] = b"Testing 1 2 3\0";

/// Local message flag of the C code meaning "header arrived in the other byte order".
/// Kept for diagnostics; in Rust the fact travels as a [`WireOrder`](super::WireOrder).
pub const MSGX_BSWAPPED: u32 = 0x0001;

/// DMSG revision (dmsg.md 2.7): unit of header and aux sizes, in bytes.
pub const DMSG_ALIGN: usize = 64;
/// DMSG revision: size of the base header (the `hdr_crc` covers it and the extension).
pub const DMSG_BASE_HEADER_LEN: usize = 64;
/// DMSG revision: largest header region (size byte 1..=32 units of 64 bytes).
pub const DMSG_HDR_MAX: usize = 2048;
/// DMSG revision: largest aux payload once padded to [`DMSG_ALIGN`] (1 MiB).
pub const DMSG_AUX_MAX: usize = 1024 * 1024;
/// DMSG revision: offset of the 4-byte `hdr_crc` field, taken as zero while it is computed.
pub const DMSG_HDR_CRC_OFFSET: usize = 0x3C;

/// Number of bytes that pad `len` up to the next multiple of [`ALIGN`].
#[must_use]
pub const fn pad_len(len: usize) -> usize {
    (ALIGN - (len & ALIGN_MASK)) & ALIGN_MASK
}

/// `len` rounded up to a multiple of [`ALIGN`], or `None` on overflow.
#[must_use]
pub const fn aligned_len(len: usize) -> Option<usize> {
    len.checked_add(pad_len(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_up_to_the_next_unit() {
        assert_eq!(pad_len(0), 0);
        assert_eq!(pad_len(1), 31);
        assert_eq!(pad_len(31), 1);
        assert_eq!(pad_len(32), 0);
        assert_eq!(pad_len(33), 31);
        assert_eq!(aligned_len(5), Some(32));
        assert_eq!(aligned_len(64), Some(64));
        assert_eq!(aligned_len(usize::MAX), None);
    }

    #[test]
    fn limits_relate_as_the_spec_says() {
        assert_eq!(MSGBUF_SIZE, 4 * MSGHDR_MAX);
        assert_eq!(MSGHDR_MAX / ALIGN, 64);
        assert_eq!(MSGAUX_MAX / ALIGN, 2048);
        assert_eq!(HDR_CRC_OFFSET + HDR_CRC_BYTES, BASE_HEADER_LEN);
        assert_eq!(MAGIC.swap_bytes(), MAGIC_REV);
        assert_eq!(DMSG_HDR_MAX / DMSG_ALIGN, 32);
        assert_eq!(DMSG_HDR_CRC_OFFSET + 4, DMSG_BASE_HEADER_LEN);
    }
}
