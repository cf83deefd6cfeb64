//! The DMSG revision's 64-byte header (dmsg.md 2): its wire layout, the host form, sealing
//! for sending and the checks of the receive path.
//!
//! | Off | Size | Field | Meaning |
//! |---|---|---|---|
//! | 0x00 | 2 | `magic` | 0x4832 in sender order |
//! | 0x02 | 2 | `reserved02` | 0; copied by relays |
//! | 0x04 | 4 | `salt` | random high 24 bits, low 8 bits = tx sequence (dmsg.md 2.6) |
//! | 0x08 | 8 | `msgid` | transaction id, 0 for one-way messages |
//! | 0x10 | 8 | `circuit` | msgid of the parent transaction, 0 = top level |
//! | 0x18 | 8 | `link_verifier` | 0; copied by relays |
//! | 0x20 | 4 | `cmd` | flags · protocol · command · size in **64-byte units** (dmsg.md 2.3) |
//! | 0x24 | 4 | `aux_crc` | CRC-32C of the aux data padded to 64, 0 without aux |
//! | 0x28 | 4 | `aux_bytes` | **exact** aux length in bytes |
//! | 0x2C | 4 | `error` | error code |
//! | 0x30 | 8 | `aux_descr` | 0; never checked |
//! | 0x38 | 4 | `reserved38` | 0; never checked |
//! | 0x3C | 4 | `hdr_crc` | CRC-32C of the whole header region with this field as 0 (dmsg.md 2.4) |
//!
//! Unlike the seed header, one CRC covers the whole header region (base and extension), so
//! it is checked only once the region is complete, and it is checked on the bytes **as they
//! arrived**: a reversed-order header is never re-encoded for the check.

use zerocopy::byteorder::{ByteOrder, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::cmd::{Cmd, MsgFlags};
use super::crc::Crc32c;
use super::error::{DecodeError, EncodeError};
use super::framing::{FrameSizes, Outgoing, ReceivedFrame, Revision, SendFrame};
use super::limits::{
    DMSG_ALIGN, DMSG_AUX_MAX, DMSG_BASE_HEADER_LEN, DMSG_HDR_CRC_OFFSET, DMSG_HDR_MAX, MAGIC,
};
use super::order::WireOrder;

/// The DMSG base header exactly as on the wire, in byte order `O` (the sender's).
///
/// Field names are the C names of `struct dmsg_hdr`; the module docs describe each one.
/// Use [`DmsgHeader`] for values in host form.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct DmsgHdr<O: ByteOrder> {
    /// 0x4832 in the sender's order.
    pub magic: U16<O>,
    /// 0; copied by relays.
    pub reserved02: U16<O>,
    /// Random high 24 bits, sequence in the low byte.
    pub salt: U32<O>,
    /// Transaction id.
    pub msgid: U64<O>,
    /// Parent transaction's msgid.
    pub circuit: U64<O>,
    /// 0; copied by relays.
    pub link_verifier: U64<O>,
    /// Flags, protocol, command, size in 64-byte units.
    pub cmd: U32<O>,
    /// CRC-32C of the padded aux data.
    pub aux_crc: U32<O>,
    /// Exact aux length.
    pub aux_bytes: U32<O>,
    /// Error code.
    pub error: U32<O>,
    /// Never implemented; 0.
    pub aux_descr: U64<O>,
    /// 0.
    pub reserved38: U32<O>,
    /// CRC-32C of the header region with this field as 0.
    pub hdr_crc: U32<O>,
}

const _: () = assert!(size_of::<DmsgHdr<zerocopy::LittleEndian>>() == DMSG_BASE_HEADER_LEN);
const _: () = assert!(size_of::<DmsgHdr<zerocopy::BigEndian>>() == DMSG_BASE_HEADER_LEN);

/// Widths of the 13 base-header fields in wire order: converting between byte orders
/// reverses each field in place (dmsg.md 2.2 "swap all 13 fields"), nothing else.
const FIELD_WIDTHS: [usize; 13] = [2, 2, 4, 8, 8, 8, 4, 4, 4, 4, 8, 4, 4];

const _: () = {
    let mut sum = 0;
    let mut rest: &[usize] = &FIELD_WIDTHS;
    while let [width, tail @ ..] = rest {
        sum += *width;
        rest = tail;
    }
    assert!(sum == DMSG_BASE_HEADER_LEN);
};

/// Reverses every base-header field in place: native order ⇄ the other order.
fn reverse_each_field(bytes: &mut [u8; DMSG_BASE_HEADER_LEN]) {
    let mut rest: &mut [u8] = bytes;
    for width in FIELD_WIDTHS {
        let (field, tail) = rest.split_at_mut(width.min(rest.len()));
        field.reverse();
        rest = tail;
    }
}

/// The values of a DMSG base header in host form.
///
/// Its memory layout is the wire layout in this host's byte order, so converting to or from
/// the wire is a copy plus, for the other order, a per-field byte reversal — no field is
/// listed twice. `magic` is [`MAGIC`] in every header this crate builds or accepts.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmsgHeader {
    /// Always [`MAGIC`] (the byte order travels separately, as a [`WireOrder`]).
    pub magic: u16,
    /// Sent as 0; relays of stacked transactions copy it.
    pub reserved02: u16,
    /// Random high 24 bits, low 8 bits = the sender's sequence (dmsg.md 2.6).
    pub salt: u32,
    /// Transaction id; 0 for one-way messages.
    pub msgid: u64,
    /// Msgid of the parent transaction; 0 = top level.
    pub circuit: u64,
    /// Never set by any implementation; relays copy it.
    pub link_verifier: u64,
    /// The raw `cmd` field; see [`command`](Self::command).
    pub cmd: u32,
    /// CRC-32C of the aux data padded to 64; 0 without aux.
    pub aux_crc: u32,
    /// Exact aux length in bytes (the wire carries it padded to 64).
    pub aux_bytes: u32,
    /// Error code, meaningful mostly in `LNK_ERROR`.
    pub error: u32,
    /// Out-of-band aux descriptor; never implemented, sent as 0, not checked.
    pub aux_descr: u64,
    /// Sent as 0, not checked.
    pub reserved38: u32,
    /// CRC-32C of the header region with this field as 0.
    pub hdr_crc: u32,
}

const _: () = assert!(size_of::<DmsgHeader>() == DMSG_BASE_HEADER_LEN);

impl MsgFlags {
    /// DMSG (dmsg.md 2.3): the msgid was allocated by the **receiver** of this message. Same bit
    /// as the seed era's never-used [`AUXOOB`](Self::AUXOOB).
    pub const REVTRANS: Self = Self::AUXOOB;
    /// DMSG (dmsg.md 2.3): the circuit was allocated by the receiver of this message. Same bit as
    /// the seed era's spare [`FLAG2`](Self::FLAG2).
    pub const REVCIRC: Self = Self::FLAG2;
}

impl Cmd {
    /// DMSG's one-way link filler (`LNK_PAD`, one 64-byte unit): the same value as the seed
    /// era's, read with 64-byte units.
    pub const DMSG_LNK_PAD: Self = Self::LNK_PAD;

    /// DMSG header region length (`size byte · 64`), or `None` outside the legal 64..=2048.
    #[must_use]
    pub const fn dmsg_header_len(self) -> Option<usize> {
        let len = self.size_units() as usize * DMSG_ALIGN;
        if len >= DMSG_ALIGN && len <= DMSG_HDR_MAX {
            Some(len)
        } else {
            None
        }
    }
}

/// `len` rounded up to a multiple of 64, saturating (a saturated value is over every limit).
#[must_use]
pub const fn dmsg_padded_len(len: usize) -> usize {
    match len.checked_next_multiple_of(DMSG_ALIGN) {
        Some(padded) => padded,
        None => usize::MAX,
    }
}

/// Zeros to pad aux data to a whole 64-byte unit (libdmsg zeroes the tail, dmsg.md 2.5).
static DMSG_ZERO_PAD: [u8; DMSG_ALIGN] = [0; DMSG_ALIGN];

/// The zero bytes that pad `len` bytes of aux data to a multiple of 64.
#[must_use]
pub(crate) fn dmsg_zero_pad_for(len: usize) -> &'static [u8] {
    let pad = (DMSG_ALIGN - len % DMSG_ALIGN) % DMSG_ALIGN;
    DMSG_ZERO_PAD.get(..pad).unwrap_or_default()
}

/// `aux_crc` of an aux payload as if padded with zeros to 64; 0 for no aux.
#[must_use]
pub fn compute_aux_crc(aux: &[u8], crc: &impl Crc32c) -> u32 {
    if aux.is_empty() {
        return 0;
    }
    crc.append(crc.checksum(aux), dmsg_zero_pad_for(aux.len()))
}

/// `hdr_crc` of a header region (`base` then `ext`) as the bytes travel, with the field's
/// four bytes taken as zero whatever they hold.
#[must_use]
pub fn compute_hdr_crc(base: &[u8; DMSG_BASE_HEADER_LEN], ext: &[u8], crc: &impl Crc32c) -> u32 {
    let (covered, _field) = base.split_at(DMSG_HDR_CRC_OFFSET);
    let partial = crc.append(crc.checksum(covered), &[0; 4]);
    crc.append(partial, ext)
}

impl DmsgHeader {
    /// A header for `cmd` with every other field 0 (and the magic set).
    #[must_use]
    pub fn new(cmd: Cmd) -> Self {
        let mut header: Self = zerocopy::transmute!([0u8; DMSG_BASE_HEADER_LEN]);
        header.magic = MAGIC;
        header.cmd = cmd.raw();
        header
    }

    /// The typed `cmd` field. Its size byte counts 64-byte units here
    /// ([`Cmd::dmsg_header_len`]), and bits 27/26 are [`MsgFlags::REVTRANS`] and
    /// [`MsgFlags::REVCIRC`].
    #[must_use]
    pub const fn command(&self) -> Cmd {
        Cmd::from_raw(self.cmd)
    }

    /// The 64 wire bytes in `order`, every field as it is (no CRC work).
    #[must_use]
    pub fn to_bytes(&self, order: WireOrder) -> [u8; DMSG_BASE_HEADER_LEN] {
        let mut bytes: [u8; DMSG_BASE_HEADER_LEN] = zerocopy::transmute!(*self);
        if order.is_swapped_on_this_host() {
            reverse_each_field(&mut bytes);
        }
        bytes
    }

    /// The values of 64 wire bytes sent in `order` (the magic is taken as it is).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; DMSG_BASE_HEADER_LEN], order: WireOrder) -> Self {
        let mut host = *bytes;
        if order.is_swapped_on_this_host() {
            reverse_each_field(&mut host);
        }
        zerocopy::transmute!(host)
    }

    /// The values of a wire header in order `O`; `order` must name `O`.
    #[must_use]
    pub fn from_wire<O: ByteOrder>(raw: &DmsgHdr<O>, order: WireOrder) -> Self {
        let bytes: &[u8; DMSG_BASE_HEADER_LEN] = zerocopy::transmute_ref!(raw);
        Self::from_bytes(bytes, order)
    }
}

/// A DMSG base header whose magic and sizes passed the receive path's first checks
/// (dmsg.md 3.1 HEADER1), with the sender's byte order. Its `hdr_crc` is checked once the
/// whole header region is there ([`ReceivedFrame::check_region`]); sizes and checks are the
/// [`ReceivedFrame`] methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmsgReceivedHeader {
    header: DmsgHeader,
    order: WireOrder,
}

impl DmsgReceivedHeader {
    /// Parses the 64-byte base header at the start of `bytes`: magic (SYNC), then the
    /// header size (1..=32 units) and the padded aux size (≤ 1 MiB) — FIELD. No CRC yet: it
    /// covers the whole region. Bytes after the first 64 are not read.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] below 64 bytes, else the first failing check.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some(base) = bytes.first_chunk::<DMSG_BASE_HEADER_LEN>() else {
            return Err(DecodeError::Truncated {
                needed: DMSG_BASE_HEADER_LEN,
                available: bytes.len(),
            });
        };
        let [m0, m1, ..] = *base;
        let order = WireOrder::detect([m0, m1])?;
        let header = DmsgHeader::from_bytes(base, order);
        let units = header.command().size_units();
        if header.command().dmsg_header_len().is_none() {
            return Err(DecodeError::DmsgHeaderSize { units });
        }
        if dmsg_padded_len(header.aux_bytes as usize) > DMSG_AUX_MAX {
            return Err(DecodeError::DmsgAuxSize {
                aux_bytes: header.aux_bytes,
            });
        }
        Ok(Self { header, order })
    }

    /// The decoded field values.
    #[must_use]
    pub const fn header(&self) -> &DmsgHeader {
        &self.header
    }
}

impl ReceivedFrame for DmsgReceivedHeader {
    const REVISION: Revision = Revision::Dmsg;
    const BASE_LEN: usize = DMSG_BASE_HEADER_LEN;
    const ALWAYS_SEQUENCED: bool = true;

    fn parse_base(bytes: &[u8], _crc: &impl Crc32c) -> Result<Self, DecodeError> {
        Self::parse(bytes)
    }

    fn sizes(&self) -> FrameSizes {
        let exact = self.header.aux_bytes as usize;
        FrameSizes {
            region_len: usize::from(self.header.command().size_units()) * DMSG_ALIGN,
            aux_wire_len: dmsg_padded_len(exact),
            aux_delivered_len: exact,
        }
    }

    fn check_region(&self, region: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        let needed = self.sizes().region_len;
        let (base, ext) = region
            .split_first_chunk()
            .filter(|_| region.len() == needed)
            .ok_or(DecodeError::Truncated {
                needed,
                available: region.len(),
            })?;
        let stored = self.header.hdr_crc;
        let computed = compute_hdr_crc(base, ext, crc);
        (computed == stored)
            .then_some(())
            .ok_or(DecodeError::HdrCrc { stored, computed })
    }

    fn check_aux(&self, aux: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        let needed = self.sizes().aux_wire_len;
        if aux.len() != needed {
            return Err(DecodeError::Truncated {
                needed,
                available: aux.len(),
            });
        }
        // Without aux the field is ignored, whatever it holds (dmsg.md 2.5).
        let computed = if aux.is_empty() {
            self.header.aux_crc
        } else {
            crc.checksum(aux)
        };
        match self.header.aux_crc {
            stored if stored == computed => Ok(()),
            stored => Err(DecodeError::Acrc { stored, computed }),
        }
    }

    fn salt(&self) -> u32 {
        self.header.salt
    }

    fn sender_order(&self) -> WireOrder {
        self.order
    }
}

impl SendFrame for DmsgHeader {
    const REVISION: Revision = Revision::Dmsg;
    type Base = [u8; DMSG_BASE_HEADER_LEN];
    /// The exact `aux_bytes`.
    type AuxField = u32;

    fn set_salt(&mut self, salt: u32) {
        self.salt = salt;
    }

    fn plan_sizes(&self, ext_len: usize, aux_len: usize) -> Result<u32, EncodeError> {
        let units = self.command().size_units();
        let header_len = self
            .command()
            .dmsg_header_len()
            .ok_or(EncodeError::DmsgHeaderSize { units })?;
        let expected = header_len - DMSG_BASE_HEADER_LEN;
        if ext_len != expected {
            return Err(EncodeError::ExtLen {
                expected,
                given: ext_len,
            });
        }
        match u32::try_from(aux_len) {
            Ok(exact) if dmsg_padded_len(aux_len) <= DMSG_AUX_MAX => Ok(exact),
            _ => Err(EncodeError::DmsgAuxTooLarge { len: aux_len }),
        }
    }

    /// Sets, in the order of dmsg.md 2.4: the magic, `aux_bytes` (exact), `aux_crc` (0 without
    /// aux), then `hdr_crc` over the region in the sending order. The salt is sent as it is.
    ///
    /// libdmsg trusts a preset non-zero `aux_crc`; this sender always recomputes it, which
    /// gives the same bytes whenever the preset was right and never sends a wrong one.
    fn stamp(&mut self, aux_bytes: u32, out: &Outgoing<'_, impl Crc32c>) -> Self::Base {
        self.magic = MAGIC;
        self.aux_bytes = aux_bytes;
        self.aux_crc = compute_aux_crc(out.aux, out.crc);
        self.hdr_crc = 0;
        let mut bytes = self.to_bytes(out.order);
        self.hdr_crc = compute_hdr_crc(&bytes, out.ext, out.crc);
        let stored = match out.order {
            WireOrder::Little => self.hdr_crc.to_le_bytes(),
            WireOrder::Big => self.hdr_crc.to_be_bytes(),
        };
        if let Some(field) = bytes.get_mut(DMSG_HDR_CRC_OFFSET..) {
            field.copy_from_slice(&stored);
        }
        bytes
    }

    fn link_pad() -> Self {
        Self::new(Cmd::DMSG_LNK_PAD)
    }

    fn aux_zero_pad(aux_len: usize) -> &'static [u8] {
        dmsg_zero_pad_for(aux_len)
    }

    fn frame_wire_len(ext_len: usize, aux_bytes: u32) -> usize {
        DMSG_BASE_HEADER_LEN + ext_len + dmsg_padded_len(aux_bytes as usize)
    }
}
