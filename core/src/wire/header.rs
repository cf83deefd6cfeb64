//! The 32-byte message header (§3.1): its wire layout, the decoded form, and the two
//! operations on it — sealing a header for sending and parsing a received one.
//!
//! | Off | Size | Field | Meaning |
//! |---|---|---|---|
//! | 0x00 | 2 | `magic` | 0x4832 in sender order |
//! | 0x02 | 2 | `icrc1` | folded CRC of bytes 0x04..0x20 |
//! | 0x04 | 4 | `salt` | random high 24 bits, low 8 bits = tx sequence |
//! | 0x08 | 2 | `source` | source link id (0 in this era) |
//! | 0x0A | 2 | `target` | target link id (0 in this era) |
//! | 0x0C | 4 | `msgid` | transaction id, 0 for one-way messages |
//! | 0x10 | 4 | `cmd` | see [`Cmd`] |
//! | 0x14 | 2 | `error` | error code of replies |
//! | 0x16 | 2 | `resv05` | reserved, sent as 0 |
//! | 0x18 | 2 | `icrc2` | folded CRC of the extended header, 0 if none |
//! | 0x1A | 2 | `aux_bytes` | aux length in **32-byte units** |
//! | 0x1C | 4 | `aux_icrc` | CRC-32C of the padded aux data |

use zerocopy::byteorder::{BigEndian, ByteOrder, LittleEndian, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksums::{compute_aux_icrc, compute_icrc1, compute_icrc2};
use super::cmd::Cmd;
use super::crc::Crc32c;
use super::error::{DecodeError, EncodeError};
use super::limits::{ALIGN, BASE_HEADER_LEN, MAGIC, MSGAUX_MAX, MSGHDR_MAX};
use super::order::WireOrder;

/// The base header exactly as on the wire, in byte order `O` (the sender's).
///
/// Field names are the C names; `aux_bytes` counts 32-byte units. Use [`MsgHeader`] for
/// the decoded values.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[allow(missing_docs)] // the table in the module docs describes every field
pub struct MsgHdr<O: ByteOrder> {
    pub magic: U16<O>,
    pub icrc1: U16<O>,
    pub salt: U32<O>,
    pub source: U16<O>,
    pub target: U16<O>,
    pub msgid: U32<O>,
    pub cmd: U32<O>,
    pub error: U16<O>,
    pub resv05: U16<O>,
    pub icrc2: U16<O>,
    pub aux_bytes: U16<O>,
    pub aux_icrc: U32<O>,
}

const _: () = assert!(size_of::<MsgHdr<LittleEndian>>() == BASE_HEADER_LEN);
const _: () = assert!(size_of::<MsgHdr<BigEndian>>() == BASE_HEADER_LEN);

/// The values of a base header, in host form. The magic is implied (it is the byte order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgHeader {
    /// Folded CRC of base header bytes 0x04..0x20.
    pub icrc1: u16,
    /// Random high 24 bits, low 8 bits = the sender's per-link sequence (§3.3).
    pub salt: u32,
    /// Source link id (always 0 in this era).
    pub source: u16,
    /// Target link id (always 0 in this era).
    pub target: u16,
    /// Transaction id; 0 for one-way messages.
    pub msgid: u32,
    /// Command, flags and header size.
    pub cmd: Cmd,
    /// Error code, for replies.
    pub error: u16,
    /// Reserved; sent as 0, echoed by in-place replies.
    pub resv05: u16,
    /// Folded CRC of the extended header, 0 if there is none.
    pub icrc2: u16,
    /// Aux length in 32-byte units (the C field `aux_bytes`).
    pub aux_units: u16,
    /// CRC-32C of the padded aux data.
    pub aux_icrc: u32,
}

impl MsgHeader {
    /// A header for `cmd` with every other field 0.
    #[must_use]
    pub const fn new(cmd: Cmd) -> Self {
        Self {
            icrc1: 0,
            salt: 0,
            source: 0,
            target: 0,
            msgid: 0,
            cmd,
            error: 0,
            resv05: 0,
            icrc2: 0,
            aux_units: 0,
            aux_icrc: 0,
        }
    }

    /// The values of a wire header (its magic is not looked at).
    #[must_use]
    pub fn from_wire<O: ByteOrder>(raw: &MsgHdr<O>) -> Self {
        Self {
            icrc1: raw.icrc1.get(),
            salt: raw.salt.get(),
            source: raw.source.get(),
            target: raw.target.get(),
            msgid: raw.msgid.get(),
            cmd: Cmd::from_raw(raw.cmd.get()),
            error: raw.error.get(),
            resv05: raw.resv05.get(),
            icrc2: raw.icrc2.get(),
            aux_units: raw.aux_bytes.get(),
            aux_icrc: raw.aux_icrc.get(),
        }
    }

    /// The wire header in order `O`, magic included, every field as it is (no CRC work).
    #[must_use]
    pub fn to_wire<O: ByteOrder>(&self) -> MsgHdr<O> {
        MsgHdr {
            magic: U16::new(MAGIC),
            icrc1: U16::new(self.icrc1),
            salt: U32::new(self.salt),
            source: U16::new(self.source),
            target: U16::new(self.target),
            msgid: U32::new(self.msgid),
            cmd: U32::new(self.cmd.raw()),
            error: U16::new(self.error),
            resv05: U16::new(self.resv05),
            icrc2: U16::new(self.icrc2),
            aux_bytes: U16::new(self.aux_units),
            aux_icrc: U32::new(self.aux_icrc),
        }
    }

    /// The 32 wire bytes in `order`, every field as it is (no CRC work).
    #[must_use]
    pub fn to_bytes(&self, order: WireOrder) -> [u8; BASE_HEADER_LEN] {
        match order {
            WireOrder::Little => zerocopy::transmute!(self.to_wire::<LittleEndian>()),
            WireOrder::Big => zerocopy::transmute!(self.to_wire::<BigEndian>()),
        }
    }

    /// Aux data length in bytes (`aux_units · 32`).
    #[must_use]
    pub const fn aux_len(&self) -> usize {
        self.aux_units as usize * ALIGN
    }

    /// Checks that an extended header of `ext_len` bytes and aux data of `aux_len` bytes
    /// can be sent with this header's `cmd`, and returns the aux size in 32-byte units.
    ///
    /// # Errors
    /// The [`EncodeError`] that [`seal`](Self::seal) would return.
    pub fn check_sizes(&self, ext_len: usize, aux_len: usize) -> Result<u16, EncodeError> {
        let header_len = usize::from(self.cmd.size_units()) * ALIGN;
        if header_len == 0 {
            return Err(EncodeError::ZeroHeaderSize);
        }
        if header_len > MSGHDR_MAX {
            return Err(EncodeError::HeaderTooLarge { len: header_len });
        }
        let expected = header_len - BASE_HEADER_LEN;
        if ext_len != expected {
            return Err(EncodeError::ExtLen {
                expected,
                given: ext_len,
            });
        }
        // MSGAUX_MAX is a multiple of 32, so padding never pushes a fitting length over it.
        match u16::try_from(aux_len.div_ceil(ALIGN)) {
            Ok(units) if aux_len <= MSGAUX_MAX => Ok(units),
            _ => Err(EncodeError::AuxTooLarge { len: aux_len }),
        }
    }

    /// Prepares this header for sending and returns its 32 wire bytes.
    ///
    /// `ext` is the extended header (header bytes 0x20.., its length must be what the `cmd`
    /// size field says) and `aux` the payload, of any length up to 65536: it is sent padded
    /// with zeros to a multiple of 32 (§11 T6). Sealing sets, in the order of §3.6:
    /// `aux_units`, `aux_icrc` (0 without aux — §11 T3), `icrc2` (0 without `ext`), then
    /// `icrc1` over the bytes in `order`. The wire image of the message is the returned
    /// bytes, then `ext`, then `aux`, then [`pad_len`](super::limits::pad_len)`(aux.len())`
    /// zeros.
    ///
    /// # Errors
    /// An [`EncodeError`] if the sizes do not fit; the header is then left unchanged.
    pub fn seal(
        &mut self,
        order: WireOrder,
        ext: &[u8],
        aux: &[u8],
        crc: &impl Crc32c,
    ) -> Result<[u8; BASE_HEADER_LEN], EncodeError> {
        let aux_units = self.check_sizes(ext.len(), aux.len())?;
        Ok(self.stamp(aux_units, order, ext, aux, crc))
    }

    /// [`seal`](Self::seal) after [`check_sizes`](Self::check_sizes) returned `aux_units`.
    pub(crate) fn stamp(
        &mut self,
        aux_units: u16,
        order: WireOrder,
        ext: &[u8],
        aux: &[u8],
        crc: &impl Crc32c,
    ) -> [u8; BASE_HEADER_LEN] {
        self.aux_units = aux_units;
        self.aux_icrc = compute_aux_icrc(aux, crc);
        self.icrc2 = compute_icrc2(ext, crc);
        self.icrc1 = 0;
        let mut bytes = self.to_bytes(order);
        self.icrc1 = compute_icrc1(&bytes, crc);
        let icrc1 = match order {
            WireOrder::Little => self.icrc1.to_le_bytes(),
            WireOrder::Big => self.icrc1.to_be_bytes(),
        };
        if let Some(field) = bytes.get_mut(2..4) {
            field.copy_from_slice(&icrc1);
        }
        bytes
    }
}

/// A base header that passed the checks of the receive path, with the sender's byte order.
///
/// Made only by [`ReceivedHeader::parse`], so its sizes are known to be in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedHeader {
    header: MsgHeader,
    order: WireOrder,
}

impl ReceivedHeader {
    /// Parses and checks the base header at the start of `bytes`, in the spec's order
    /// (§5 HEADER1): magic (SYNC), `icrc1` over the raw bytes (HCRC), then the header and
    /// aux sizes (FIELD). Only the first 32 bytes are read; anything after is ignored.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] below 32 bytes, else the first failing check.
    pub fn parse(bytes: &[u8], crc: &impl Crc32c) -> Result<Self, DecodeError> {
        let Some(base) = bytes.first_chunk::<BASE_HEADER_LEN>() else {
            return Err(DecodeError::Truncated {
                needed: BASE_HEADER_LEN,
                available: bytes.len(),
            });
        };
        let [m0, m1, ..] = *base;
        let order = WireOrder::detect([m0, m1])?;
        let header = match order {
            WireOrder::Little => {
                let raw: &MsgHdr<LittleEndian> = zerocopy::transmute_ref!(base);
                MsgHeader::from_wire(raw)
            }
            WireOrder::Big => {
                let raw: &MsgHdr<BigEndian> = zerocopy::transmute_ref!(base);
                MsgHeader::from_wire(raw)
            }
        };
        let computed = compute_icrc1(base, crc);
        if computed != header.icrc1 {
            return Err(DecodeError::Hcrc {
                stored: header.icrc1,
                computed,
            });
        }
        if header.cmd.header_len().is_none() {
            return Err(DecodeError::HeaderSize {
                units: header.cmd.size_units(),
            });
        }
        if header.aux_len() > MSGAUX_MAX {
            return Err(DecodeError::AuxSize {
                units: header.aux_units,
            });
        }
        Ok(Self { header, order })
    }

    /// The decoded field values.
    #[must_use]
    pub const fn header(&self) -> &MsgHeader {
        &self.header
    }

    /// The sender's byte order. Extended headers and aux data are in this order, unswapped.
    #[must_use]
    pub const fn order(&self) -> WireOrder {
        self.order
    }

    /// The C code's `BSWAPPED`: the sender's order is not this host's.
    #[must_use]
    pub const fn is_bswapped(&self) -> bool {
        self.order.is_swapped_on_this_host()
    }

    /// Header length in bytes, base plus extended (32..=2048).
    #[must_use]
    pub const fn header_len(&self) -> usize {
        self.header.cmd.size_units() as usize * ALIGN
    }

    /// Length of the extended header in bytes (0..=2016).
    #[must_use]
    pub const fn ext_len(&self) -> usize {
        self.header_len() - BASE_HEADER_LEN
    }

    /// Aux length in bytes (0..=65536, a multiple of 32).
    #[must_use]
    pub const fn aux_len(&self) -> usize {
        self.header.aux_len()
    }

    /// Bytes the whole message occupies on the wire: header plus aux.
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        self.header_len() + self.aux_len()
    }

    /// Checks the extended header (the [`ext_len`](Self::ext_len) bytes after the base
    /// header) against `icrc2`. With no extended header nothing is checked (§3.6).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `ext` is not exactly `ext_len` bytes, else
    /// [`DecodeError::Xcrc`].
    pub fn verify_ext(&self, ext: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        if ext.len() != self.ext_len() {
            return Err(DecodeError::Truncated {
                needed: self.ext_len(),
                available: ext.len(),
            });
        }
        if ext.is_empty() {
            return Ok(());
        }
        let computed = compute_icrc2(ext, crc);
        if computed == self.header.icrc2 {
            Ok(())
        } else {
            Err(DecodeError::Xcrc {
                stored: self.header.icrc2,
                computed,
            })
        }
    }

    /// Checks the extended header and aux data of the whole message in `msg` (its base
    /// header first) and returns them.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `msg` is shorter than [`wire_len`](Self::wire_len),
    /// else the first failing check of [`verify_ext`](Self::verify_ext) and
    /// [`verify_aux`](Self::verify_aux).
    pub(crate) fn verify_body<'a>(
        &self,
        msg: &'a [u8],
        crc: &impl Crc32c,
    ) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
        let truncated = DecodeError::Truncated {
            needed: self.wire_len(),
            available: msg.len(),
        };
        let ext = msg
            .get(BASE_HEADER_LEN..self.header_len())
            .ok_or(truncated)?;
        self.verify_ext(ext, crc)?;
        let aux = msg
            .get(self.header_len()..self.wire_len())
            .ok_or(truncated)?;
        self.verify_aux(aux, crc)?;
        Ok((ext, aux))
    }

    /// Checks the aux data (exactly [`aux_len`](Self::aux_len) bytes) against `aux_icrc`.
    /// With no aux the field is ignored, whatever stale value it holds (§11 T3).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `aux` is not exactly `aux_len` bytes, else
    /// [`DecodeError::Acrc`].
    pub fn verify_aux(&self, aux: &[u8], crc: &impl Crc32c) -> Result<(), DecodeError> {
        if aux.len() != self.aux_len() {
            return Err(DecodeError::Truncated {
                needed: self.aux_len(),
                available: aux.len(),
            });
        }
        if aux.is_empty() {
            return Ok(());
        }
        self.verify_aux_crc(crc.checksum(aux))
    }

    /// Compares an aux CRC-32C the caller computed (for example incrementally, as the
    /// bytes arrived) with `aux_icrc`.
    ///
    /// # Errors
    /// [`DecodeError::Acrc`] on a mismatch.
    pub const fn verify_aux_crc(&self, computed: u32) -> Result<(), DecodeError> {
        if computed == self.header.aux_icrc {
            Ok(())
        } else {
            Err(DecodeError::Acrc {
                stored: self.header.aux_icrc,
                computed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::crc::{CountingCrc, SoftCrc32c};
    use crate::wire::{MsgFlags, Protocol};
    use core::mem::offset_of;

    const V1: [u8; 32] = [
        0x32, 0x48, 0x97, 0x2e, 0x00, 0x45, 0x8b, 0x6b, 0, 0, 0, 0, 0, 0, 0, 0, //
        0x01, 0x01, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn field_offsets_match_section_3_1() {
        type H = MsgHdr<LittleEndian>;
        let table = [
            (
                offset_of!(H, magic),
                0x00,
                size_of::<U16<LittleEndian>>(),
                2,
            ),
            (offset_of!(H, icrc1), 0x02, 2, 2),
            (offset_of!(H, salt), 0x04, 4, 4),
            (offset_of!(H, source), 0x08, 2, 2),
            (offset_of!(H, target), 0x0A, 2, 2),
            (offset_of!(H, msgid), 0x0C, 4, 4),
            (offset_of!(H, cmd), 0x10, 4, 4),
            (offset_of!(H, error), 0x14, 2, 2),
            (offset_of!(H, resv05), 0x16, 2, 2),
            (offset_of!(H, icrc2), 0x18, 2, 2),
            (offset_of!(H, aux_bytes), 0x1A, 2, 2),
            (offset_of!(H, aux_icrc), 0x1C, 4, 4),
        ];
        for (i, (off, spec_off, size, spec_size)) in table.into_iter().enumerate() {
            assert_eq!(off, spec_off, "field {i}");
            assert_eq!(size, spec_size, "field {i}");
        }
        // The offsets are consecutive and end at 32: no hidden padding.
        assert_eq!(size_of::<H>(), 32);
        assert_eq!(align_of::<H>(), 1);
    }

    #[test]
    fn each_field_lands_at_its_spec_offset_in_both_orders() {
        let h = MsgHeader {
            icrc1: 0x0102,
            salt: 0x0304_0506,
            source: 0x0708,
            target: 0x090A,
            msgid: 0x0B0C_0D0E,
            cmd: Cmd::from_raw(0x0F10_1112),
            error: 0x1314,
            resv05: 0x1516,
            icrc2: 0x1718,
            aux_units: 0x191A,
            aux_icrc: 0x1B1C_1D1E,
        };
        let be: [u8; 32] = [
            0x48, 0x32, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C,
            0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
            0x1B, 0x1C, 0x1D, 0x1E,
        ];
        assert_eq!(h.to_bytes(WireOrder::Big), be);
        let le = h.to_bytes(WireOrder::Little);
        // Each field reversed in place.
        for (start, len) in [
            (0, 2),
            (2, 2),
            (4, 4),
            (8, 2),
            (10, 2),
            (12, 4),
            (16, 4),
            (20, 2),
            (22, 2),
            (24, 2),
            (26, 2),
            (28, 4),
        ] {
            let mut field = be[start..start + len].to_vec();
            field.reverse();
            assert_eq!(&le[start..start + len], &field[..], "field at {start:#x}");
        }
        assert_eq!(
            MsgHeader::from_wire(MsgHdr::<BigEndian>::ref_from_bytes(&be).unwrap()),
            h
        );
        assert_eq!(
            MsgHeader::from_wire(MsgHdr::<LittleEndian>::ref_from_bytes(&le).unwrap()),
            h
        );
    }

    #[test]
    fn parses_v1() {
        let r = ReceivedHeader::parse(&V1, &SoftCrc32c).unwrap();
        assert_eq!(r.header().cmd, Cmd::DBG_SHELL);
        assert_eq!(r.header().salt, 0x6B8B_4500);
        assert_eq!(r.header().icrc1, 0x2E97);
        assert_eq!(r.order(), WireOrder::Little);
        assert_eq!(
            (r.header_len(), r.ext_len(), r.aux_len(), r.wire_len()),
            (32, 0, 0, 32)
        );
    }

    #[test]
    fn short_input_is_truncated_not_a_panic() {
        for n in 0..32 {
            assert_eq!(
                ReceivedHeader::parse(&V1[..n], &SoftCrc32c),
                Err(DecodeError::Truncated {
                    needed: 32,
                    available: n
                })
            );
        }
    }

    #[test]
    fn bad_magic_is_sync_before_crc() {
        let mut bad = V1;
        bad[0] = 0x33;
        bad[31] ^= 0xFF; // CRC is also wrong: SYNC is checked first
        assert_eq!(
            ReceivedHeader::parse(&bad, &SoftCrc32c),
            Err(DecodeError::Sync {
                found: [0x33, 0x48]
            })
        );
    }

    #[test]
    fn any_covered_bit_flip_is_hcrc() {
        for byte in 4..32 {
            for bit in 0..8 {
                let mut bad = V1;
                bad[byte] ^= 1 << bit;
                let err = ReceivedHeader::parse(&bad, &SoftCrc32c).unwrap_err();
                assert!(
                    matches!(err, DecodeError::Hcrc { stored: 0x2E97, .. }),
                    "{byte}/{bit}: {err:?}"
                );
            }
        }
        let mut bad = V1;
        bad[2] ^= 1; // icrc1 itself
        assert_eq!(
            ReceivedHeader::parse(&bad, &SoftCrc32c),
            Err(DecodeError::Hcrc {
                stored: 0x2E96,
                computed: 0x2E97
            })
        );
    }

    /// Seals `cmd_raw` with raw (unchecked) sizes, so FIELD errors can be provoked.
    fn sealed_raw(cmd_raw: u32, aux_units: u16) -> [u8; 32] {
        let mut h = MsgHeader::new(Cmd::from_raw(cmd_raw));
        h.aux_units = aux_units;
        let mut bytes = h.to_bytes(WireOrder::Little);
        h.icrc1 = compute_icrc1(&bytes, &SoftCrc32c);
        bytes = h.to_bytes(WireOrder::Little);
        bytes
    }

    #[test]
    fn out_of_range_sizes_are_field_after_crc() {
        for units in [0u8, 65, 0xFF] {
            let bytes = sealed_raw(0x0010_0100 | u32::from(units), 0);
            assert_eq!(
                ReceivedHeader::parse(&bytes, &SoftCrc32c),
                Err(DecodeError::HeaderSize { units })
            );
        }
        for units in [2049u16, 0xFFFF] {
            let bytes = sealed_raw(0x0010_0101, units);
            assert_eq!(
                ReceivedHeader::parse(&bytes, &SoftCrc32c),
                Err(DecodeError::AuxSize { units })
            );
        }
        // The limits themselves are legal.
        let r = ReceivedHeader::parse(&sealed_raw(0x0000_0040, 2048), &SoftCrc32c).unwrap();
        assert_eq!((r.header_len(), r.aux_len()), (2048, 65536));
    }

    #[test]
    fn seal_stamps_the_v2_crcs() {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL);
        h.salt = 0x327B_2301;
        h.aux_icrc = 0xDEAD_BEEF; // stale values are overwritten
        h.icrc2 = 0x1111;
        let bytes = h
            .seal(WireOrder::Little, &[], b"help\0", &SoftCrc32c)
            .unwrap();
        assert_eq!(h.aux_units, 1);
        assert_eq!(h.aux_icrc, 0xA7EE_6765);
        assert_eq!(h.icrc2, 0);
        assert_eq!(h.icrc1, 0x911E);
        assert_eq!(&bytes[..4], &[0x32, 0x48, 0x1e, 0x91]);
    }

    #[test]
    fn seal_without_aux_sends_zero_aux_icrc() {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::REPLY));
        h.aux_icrc = 0x4F5A_F25B; // what a C in-place reply would carry
        h.aux_units = 3;
        h.seal(WireOrder::Little, &[], &[], &SoftCrc32c).unwrap();
        assert_eq!((h.aux_units, h.aux_icrc), (0, 0));
    }

    #[test]
    fn seal_rejects_bad_sizes_and_changes_nothing() {
        let ext = [0u8; 64];
        let cases: [(u32, usize, usize, EncodeError); 5] = [
            (0x0000_0100, 0, 0, EncodeError::ZeroHeaderSize),
            (
                0x0000_0141,
                2016,
                0,
                EncodeError::HeaderTooLarge { len: 2080 },
            ),
            (
                0x0000_0101,
                32,
                0,
                EncodeError::ExtLen {
                    expected: 0,
                    given: 32,
                },
            ),
            (
                0x0000_0103,
                32,
                0,
                EncodeError::ExtLen {
                    expected: 64,
                    given: 32,
                },
            ),
            (
                0x0000_0101,
                0,
                65537,
                EncodeError::AuxTooLarge { len: 65537 },
            ),
        ];
        let big_ext = [0u8; 2016];
        let aux = [0u8; 65537];
        for (cmd, ext_len, aux_len, err) in cases {
            let mut h = MsgHeader::new(Cmd::from_raw(cmd));
            h.salt = 7;
            let before = h;
            let ext = if ext_len > 64 {
                &big_ext[..ext_len]
            } else {
                &ext[..ext_len]
            };
            assert_eq!(
                h.seal(WireOrder::Little, ext, &aux[..aux_len], &SoftCrc32c),
                Err(err)
            );
            assert_eq!(h, before);
            assert_eq!(err.ioq_error().code(), 4);
        }
        // The largest legal message seals.
        let mut h = MsgHeader::new(Cmd::new(MsgFlags::NONE, Protocol::LNK, 0x12, 64).unwrap());
        h.seal(WireOrder::Little, &big_ext, &aux[..65536], &SoftCrc32c)
            .unwrap();
        assert_eq!(h.aux_units, 2048);
    }

    #[test]
    fn seal_computes_each_crc_once() {
        let crc = CountingCrc(core::cell::Cell::new(0));
        let ext = [5u8; 32];
        let mut h = MsgHeader::new(Cmd::from_raw(0x0000_1202));
        h.seal(WireOrder::Little, &ext, &[1u8; 40], &crc).unwrap();
        // 40 aux + 24 zero pad, 32 ext, 28 covered header bytes.
        assert_eq!(crc.0.get(), 64 + 32 + 28);
    }

    #[test]
    fn verify_ext_and_aux() {
        let ext: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut h = MsgHeader::new(Cmd::from_raw(0x8000_1202));
        let bytes = h.seal(WireOrder::Little, &ext, b"x", &SoftCrc32c).unwrap();
        let r = ReceivedHeader::parse(&bytes, &SoftCrc32c).unwrap();
        assert_eq!(r.verify_ext(&ext, &SoftCrc32c), Ok(()));
        let mut bad = ext;
        bad[31] ^= 0x80;
        assert!(matches!(
            r.verify_ext(&bad, &SoftCrc32c),
            Err(DecodeError::Xcrc { stored: 0x3F93, .. })
        ));
        assert_eq!(
            r.verify_ext(&ext[..31], &SoftCrc32c),
            Err(DecodeError::Truncated {
                needed: 32,
                available: 31
            })
        );
        let mut aux = [0u8; 32];
        aux[0] = b'x';
        assert_eq!(r.verify_aux(&aux, &SoftCrc32c), Ok(()));
        aux[31] = 1; // padding is covered
        assert!(matches!(
            r.verify_aux(&aux, &SoftCrc32c),
            Err(DecodeError::Acrc { .. })
        ));
        assert_eq!(
            r.verify_aux(&aux[..1], &SoftCrc32c),
            Err(DecodeError::Truncated {
                needed: 32,
                available: 1
            })
        );
    }

    #[test]
    fn stale_aux_icrc_without_aux_is_accepted() {
        // §11 T3: a C final reply keeps the command's aux_icrc with aux_bytes 0.
        let mut h = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::REPLY));
        h.aux_icrc = 0x4F5A_F25B;
        let mut bytes = h.to_bytes(WireOrder::Little);
        h.icrc1 = compute_icrc1(&bytes, &SoftCrc32c);
        bytes = h.to_bytes(WireOrder::Little);
        let r = ReceivedHeader::parse(&bytes, &SoftCrc32c).unwrap();
        assert_eq!(r.verify_aux(&[], &SoftCrc32c), Ok(()));
        assert_eq!(r.header().aux_icrc, 0x4F5A_F25B);
    }

    #[test]
    fn big_endian_sender_is_bswapped_on_little_hosts() {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL);
        h.salt = 0x6B8B_4500;
        let be = h.seal(WireOrder::Big, &[], &[], &SoftCrc32c).unwrap();
        let r = ReceivedHeader::parse(&be, &SoftCrc32c).unwrap();
        assert_eq!(r.order(), WireOrder::Big);
        assert_eq!(r.is_bswapped(), cfg!(target_endian = "little"));
        assert_eq!(r.header().icrc1, 0x7FF0); // V5
        assert_eq!(*r.header(), h);
    }
}
