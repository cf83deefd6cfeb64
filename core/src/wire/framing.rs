//! The framing abstraction: what the receive decoder and the transmit queue need to know
//! about a protocol revision, and nothing else. One state machine per direction serves
//! both revisions; the revision is a type chosen when the decoder or queue is built, before
//! the link's first byte (ARCHITECTURE.md "Revisions").
//!
//! | | Seed era (protocol.md) | DMSG (dmsg.md 2) |
//! |---|---|---|
//! | first read | 32-byte base header | 64-byte base header |
//! | unit | 32 bytes | 64 bytes |
//! | size | `cmd` size byte × 32; `aux_bytes` × 32 | `cmd` size byte × 64; `aux_bytes` exact, padded to 64 |
//! | base header check | `icrc1` on the first read (HCRC) | — |
//! | region check | `icrc2` over the extension (XCRC) | `hdr_crc` over the whole region (XCRC) |
//! | aux check | `aux_icrc` (ACRC) | `aux_crc` (ACRC) |
//! | salt sequence (MSGSEQ) | only in the protected modes | always |

use super::checksums::zero_pad_for;
use super::cmd::Cmd;
use super::crc::Crc32c;
use super::error::{DecodeError, EncodeError};
use super::header::{MsgHeader, ReceivedHeader};
use super::limits::{ALIGN, BASE_HEADER_LEN};
use super::order::WireOrder;

/// A protocol revision, chosen per link before its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Revision {
    /// The 2012 seed era: 32-byte header, folded CRCs (docs/protocol.md).
    Seed,
    /// The final DMSG revision: 64-byte header, one `hdr_crc` (docs/dmsg.md).
    Dmsg,
}

/// The sizes of one message as its base header announces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSizes {
    /// Header region length: base plus extension.
    pub region_len: usize,
    /// Aux bytes on the wire (padded).
    pub aux_wire_len: usize,
    /// Aux bytes a receiver reports: the seed era reports the padded length, DMSG the
    /// exact `aux_bytes`.
    pub aux_delivered_len: usize,
}

impl FrameSizes {
    /// Bytes the whole message occupies on the wire.
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        self.region_len + self.aux_wire_len
    }
}

/// The receive side of a revision: a base header that passed the first checks, and how to
/// size and check the rest of its message. Implemented by [`ReceivedHeader`] (seed) and
/// [`DmsgReceivedHeader`](super::DmsgReceivedHeader) (DMSG).
pub trait ReceivedFrame: Copy + core::fmt::Debug {
    /// The revision this framing belongs to.
    const REVISION: Revision;
    /// Bytes to read before a message can be sized: the base header.
    const BASE_LEN: usize;
    /// True when every message's salt must carry the expected sequence number, even on a
    /// plaintext stream (dmsg.md 2.6). Without it only the protected modes check it.
    const ALWAYS_SEQUENCED: bool;

    /// Parses and checks the base header at the start of `bytes` (at least
    /// [`BASE_LEN`](Self::BASE_LEN) of them).
    ///
    /// # Errors
    /// The first failing check of the revision's first read.
    fn parse_base(bytes: &[u8], crc: &impl Crc32c) -> Result<Self, DecodeError>;
    /// The message's sizes.
    fn sizes(&self) -> FrameSizes;
    /// Checks the whole header region once it is complete.
    ///
    /// # Errors
    /// XCRC (or truncation when `region` is not `region_len` bytes).
    fn check_region(&self, region: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError>;
    /// Checks the padded aux data once it is complete.
    ///
    /// # Errors
    /// ACRC (or truncation when `aux` is not `aux_wire_len` bytes).
    fn check_aux(&self, aux: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError>;
    /// The salt field (its low byte is the sender's sequence).
    fn salt(&self) -> u32;
    /// The sender's byte order.
    fn sender_order(&self) -> WireOrder;
}

impl ReceivedFrame for ReceivedHeader {
    const REVISION: Revision = Revision::Seed;
    const BASE_LEN: usize = BASE_HEADER_LEN;
    const ALWAYS_SEQUENCED: bool = false;

    fn parse_base(bytes: &[u8], crc: &impl Crc32c) -> Result<Self, DecodeError> {
        Self::parse(bytes, crc)
    }
    fn salt(&self) -> u32 {
        self.header().salt
    }
    fn check_region(&self, region: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        // `icrc1` was checked on the first read; the region adds only the extension.
        self.verify_ext(region.get(BASE_HEADER_LEN..).unwrap_or_default(), crc)
    }
    fn sender_order(&self) -> WireOrder {
        self.order()
    }
    fn check_aux(&self, aux: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        self.verify_aux(aux, crc)
    }
    fn sizes(&self) -> FrameSizes {
        FrameSizes {
            region_len: self.header_len(),
            aux_wire_len: self.aux_len(),
            aux_delivered_len: self.aux_len(),
        }
    }
}

/// One outgoing message's parts after its base header, and how to seal it.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a, C> {
    /// The byte order to send the base header in.
    pub order: WireOrder,
    /// The header region after the base header (its length is what `cmd` says).
    pub ext: &'a [u8],
    /// The aux data, unpadded.
    pub aux: &'a [u8],
    /// The CRC-32C engine.
    pub crc: &'a C,
}

/// The transmit side of a revision: a header a sender fills in, and how it is sized and
/// stamped. Implemented by [`MsgHeader`] (seed) and [`DmsgHeader`](super::DmsgHeader)
/// (DMSG).
pub trait SendFrame: Copy {
    /// The revision this framing belongs to.
    const REVISION: Revision;
    /// The stamped base header's wire bytes.
    type Base: AsRef<[u8]>;
    /// The value of the header's aux size field, found by [`plan_sizes`](Self::plan_sizes)
    /// and written by [`stamp`](Self::stamp).
    type AuxField: Copy;

    /// The one-way link filler a queue may send to complete a cipher chunk.
    fn link_pad() -> Self;
    /// Checks the sizes of a message with this header.
    ///
    /// # Errors
    /// FIELD-class [`EncodeError`]s.
    fn plan_sizes(&self, ext_len: usize, aux_len: usize) -> Result<Self::AuxField, EncodeError>;
    /// Wire bytes of a message whose sizes [`plan_sizes`](Self::plan_sizes) accepted.
    fn frame_wire_len(ext_len: usize, aux_field: Self::AuxField) -> usize;
    /// Sets the salt (random high 24 bits, sequence in the low byte).
    fn set_salt(&mut self, salt: u32);
    /// Stamps sizes and CRCs for `out` and returns the base header's wire bytes.
    fn stamp(&mut self, aux_field: Self::AuxField, out: &Outgoing<'_, impl Crc32c>) -> Self::Base;
    /// The zeros that follow `aux_len` aux bytes on the wire.
    fn aux_zero_pad(aux_len: usize) -> &'static [u8];

    /// Prepares this header for sending `out` and returns its base header's wire bytes;
    /// the wire image is those bytes, `out.ext`, `out.aux`, then
    /// [`aux_zero_pad`](Self::aux_zero_pad).
    ///
    /// # Errors
    /// An [`EncodeError`] if the sizes do not fit; the header is then left unchanged.
    fn seal_outgoing(
        &mut self,
        out: &Outgoing<'_, impl Crc32c>,
    ) -> Result<Self::Base, EncodeError> {
        let aux_field = self.plan_sizes(out.ext.len(), out.aux.len())?;
        Ok(self.stamp(aux_field, out))
    }
}

impl SendFrame for MsgHeader {
    const REVISION: Revision = Revision::Seed;
    type Base = [u8; BASE_HEADER_LEN];
    /// `aux_bytes` in 32-byte units.
    type AuxField = u16;

    fn link_pad() -> Self {
        Self::new(Cmd::LNK_PAD)
    }
    fn plan_sizes(&self, ext_len: usize, aux_len: usize) -> Result<u16, EncodeError> {
        self.check_sizes(ext_len, aux_len)
    }
    fn set_salt(&mut self, salt: u32) {
        self.salt = salt;
    }
    fn frame_wire_len(ext_len: usize, aux_units: u16) -> usize {
        BASE_HEADER_LEN + ext_len + usize::from(aux_units) * ALIGN
    }
    fn stamp(&mut self, aux_units: u16, out: &Outgoing<'_, impl Crc32c>) -> Self::Base {
        // The inherent seed-era stamp (inherent methods take precedence over this one).
        MsgHeader::stamp(self, aux_units, out.order, out.ext, out.aux, out.crc)
    }
    fn aux_zero_pad(aux_len: usize) -> &'static [u8] {
        zero_pad_for(aux_len)
    }
}
