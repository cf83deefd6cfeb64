//! A whole message that sits contiguously in a buffer, checked and borrowed in place.
//!
//! This is the zero-copy read path for bytes that are all present already (a capture file,
//! a FIFO holding a complete message). Incremental input is the receive decoder's job.

use core::fmt;

use super::crc::Crc32c;
use super::dmsg::{DmsgHeader, DmsgReceivedHeader};
use super::error::DecodeError;
use super::framing::ReceivedFrame;
use super::header::{MsgHeader, ReceivedHeader};
use super::limits::DMSG_BASE_HEADER_LEN;
use super::order::WireOrder;

/// One checked message borrowed from the buffer it was parsed from.
///
/// `H` is the revision's received header: [`ReceivedHeader`] (seed era, the default) or
/// [`DmsgReceivedHeader`].
///
/// Its `Debug` shows the header, and of the extension and the aux data their length and
/// first 16 bytes in hex: a 64 KiB aux would otherwise print as 64 Ki
/// decimals.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a, H = ReceivedHeader> {
    received: H,
    ext: &'a [u8],
    aux: &'a [u8],
}

/// How many leading bytes of a message's extension and aux data its `Debug` shows.
const DEBUG_PREVIEW: usize = 16;

impl<H: fmt::Debug> fmt::Debug for MessageView<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageView")
            .field("received", &self.received)
            .field("ext", &Preview(self.ext))
            .field("aux", &Preview(self.aux))
            .finish()
    }
}

/// A byte string shown by its length and first [`DEBUG_PREVIEW`] bytes:
/// `40 bytes [73 74 61 74 …]`.
struct Preview<'a>(&'a [u8]);

impl fmt::Debug for Preview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes [", self.0.len())?;
        for (i, byte) in self.0.iter().take(DEBUG_PREVIEW).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{byte:02x}")?;
        }
        let more = if self.0.len() > DEBUG_PREVIEW {
            " …"
        } else {
            ""
        };
        write!(f, "{more}]")
    }
}

impl<'a> MessageView<'a, DmsgReceivedHeader> {
    /// Parses the DMSG message at the start of `bytes` with every check of the receive path,
    /// in its order (dmsg.md 3.1): magic, sizes, `hdr_crc`, `aux_crc`. The sequence is the
    /// decoder's business, not checked here. Bytes after the message are not read.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when `bytes` ends inside the message, else the first
    /// failing check.
    pub fn parse_dmsg(bytes: &'a [u8], crc: &impl Crc32c) -> Result<Self, DecodeError> {
        let received = DmsgReceivedHeader::parse(bytes)?;
        let sizes = received.sizes();
        let truncated = DecodeError::Truncated {
            needed: sizes.wire_len(),
            available: bytes.len(),
        };
        let region = bytes.get(..sizes.region_len).ok_or(truncated)?;
        received.check_region(region, crc)?;
        let padded = bytes
            .get(sizes.region_len..sizes.wire_len())
            .ok_or(truncated)?;
        received.check_aux(padded, crc)?;
        let ext = region.get(DMSG_BASE_HEADER_LEN..).unwrap_or_default();
        let aux = padded.get(..sizes.aux_delivered_len).unwrap_or_default();
        Ok(Self { received, ext, aux })
    }

    /// The decoded DMSG base header.
    #[must_use]
    pub const fn header(&self) -> &DmsgHeader {
        self.received.header()
    }
}

impl<'a, H: ReceivedFrame> MessageView<'a, H> {
    /// A view of parts the receive decoder has already checked.
    pub(crate) const fn from_checked_parts(received: H, ext: &'a [u8], aux: &'a [u8]) -> Self {
        Self { received, ext, aux }
    }

    /// The base header with its byte order and size accessors.
    #[must_use]
    pub const fn received(&self) -> &H {
        &self.received
    }

    /// The sender's byte order, which the extended header and aux data are still in.
    #[must_use]
    pub fn order(&self) -> WireOrder {
        self.received.sender_order()
    }

    /// The extended header bytes (header bytes after the base header), as sent.
    #[must_use]
    pub const fn ext(&self) -> &'a [u8] {
        self.ext
    }

    /// The aux data: as sent with its padding in the seed era (a multiple of 32 bytes),
    /// exactly `aux_bytes` long in DMSG.
    #[must_use]
    pub const fn aux(&self) -> &'a [u8] {
        self.aux
    }

    /// The aux data up to its first NUL: the text of a `DBG_SHELL` line or reply.
    #[must_use]
    pub fn aux_until_nul(&self) -> &'a [u8] {
        super::until_nul(self.aux)
    }

    /// Bytes the message occupies on the wire.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        self.received.sizes().wire_len()
    }
}

impl<'a> MessageView<'a> {
    /// Parses the message at the start of `bytes` with every check of the receive path, in
    /// its order: magic, `icrc1`, sizes, `icrc2`, `aux_icrc`. Bytes after the message are
    /// not read; [`wire_len`](Self::wire_len) says where the next one starts.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when `bytes` ends inside the message (with the whole
    /// message length as `needed` once the base header is readable), else the first
    /// failing check.
    pub fn parse(bytes: &'a [u8], crc: &impl Crc32c) -> Result<Self, DecodeError> {
        let received = ReceivedHeader::parse(bytes, crc)?;
        let (ext, aux) = received.verify_body(bytes, crc)?;
        Ok(Self { received, ext, aux })
    }

    /// The decoded base header.
    #[must_use]
    pub const fn header(&self) -> &MsgHeader {
        self.received.header()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Cmd, SoftCrc32c};

    fn message(cmd: Cmd, ext: &[u8], aux: &[u8], out: &mut [u8]) -> usize {
        let mut h = MsgHeader::new(cmd);
        let base = h.seal(WireOrder::Little, ext, aux, &SoftCrc32c).unwrap();
        out[..32].copy_from_slice(&base);
        out[32..32 + ext.len()].copy_from_slice(ext);
        let a = 32 + ext.len();
        out[a..a + aux.len()].copy_from_slice(aux);
        a + h.aux_len()
    }

    #[test]
    fn parses_consecutive_messages() {
        let mut buf = [0u8; 256];
        let n1 = message(Cmd::DBG_SHELL, &[], b"status\0", &mut buf);
        let n2 = message(Cmd::from_raw(0x0000_1202), &[9u8; 32], &[], &mut buf[n1..]);
        let first = MessageView::parse(&buf[..n1 + n2], &SoftCrc32c).unwrap();
        assert_eq!(first.wire_len(), 64);
        assert_eq!(first.aux_until_nul(), b"status");
        assert!(first.ext().is_empty());
        let second = MessageView::parse(&buf[n1..n1 + n2], &SoftCrc32c).unwrap();
        assert_eq!(second.ext(), &[9u8; 32]);
        assert!(second.aux().is_empty());
        assert_eq!(second.wire_len(), 64);
    }

    #[test]
    fn truncation_reports_the_whole_message_length() {
        let mut buf = [0u8; 128];
        let n = message(Cmd::from_raw(0x0000_1202), &[1u8; 32], &[2u8; 64], &mut buf);
        assert_eq!(n, 128);
        for cut in [32, 40, 64, 100, 127] {
            assert_eq!(
                MessageView::parse(&buf[..cut], &SoftCrc32c),
                Err(DecodeError::Truncated {
                    needed: 128,
                    available: cut
                })
            );
        }
    }

    #[test]
    fn ext_is_checked_before_aux() {
        let mut buf = [0u8; 128];
        message(Cmd::from_raw(0x0000_1202), &[1u8; 32], &[2u8; 64], &mut buf);
        buf[40] ^= 1;
        buf[100] ^= 1;
        assert!(matches!(
            MessageView::parse(&buf, &SoftCrc32c),
            Err(DecodeError::Xcrc { .. })
        ));
        buf[40] ^= 1;
        assert!(matches!(
            MessageView::parse(&buf, &SoftCrc32c),
            Err(DecodeError::Acrc { .. })
        ));
    }

    #[test]
    fn debug_shows_lengths_and_first_bytes_only() {
        extern crate std;
        use std::format;
        use std::vec;
        // The largest seed-era aux: its Debug must stay one short line.
        let aux: std::vec::Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; 32 + 32 + aux.len()];
        message(Cmd::from_raw(0x0000_1202), &[0xAB; 32], &aux, &mut buf);
        let view = MessageView::parse(&buf, &SoftCrc32c).unwrap();
        let shown = format!("{view:?}");
        assert!(
            shown.contains(
                "ext: 32 bytes [ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab …], \
                 aux: 65536 bytes [00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f …]"
            ),
            "{shown}"
        );
        assert!(
            shown.starts_with("MessageView { received: ReceivedHeader {"),
            "{shown}"
        );
        assert!(shown.len() < 600, "{} characters: {shown}", shown.len());
        // Short parts are shown whole, without the ellipsis.
        let mut small = [0u8; 64];
        message(Cmd::DBG_SHELL, &[], b"hi\0", &mut small);
        let shown = format!("{:?}", MessageView::parse(&small, &SoftCrc32c).unwrap());
        assert!(
            shown.contains("ext: 0 bytes [], aux: 32 bytes [68 69 00 00"),
            "{shown}"
        );
    }

    #[test]
    fn aux_without_nul_is_whole() {
        let mut buf = [0u8; 64];
        message(Cmd::DBG_SHELL, &[], &[b'a'; 32], &mut buf);
        assert_eq!(
            MessageView::parse(&buf, &SoftCrc32c)
                .unwrap()
                .aux_until_nul(),
            &[b'a'; 32]
        );
    }
}
