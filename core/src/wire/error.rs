//! Error codes: the IOQ status codes of §4.4, the wire error values, and the typed errors of
//! the decode and encode helpers.

use core::fmt;

/// Wire value of `hdr.error` meaning "unknown command" (`MSG_ERR_UNKNOWN`, §4.4).
///
/// Receivers answer every command they do not handle with a final reply carrying it (§8.3).
pub const MSG_ERR_UNKNOWN: u16 = 0x20;

/// Wire value of `hdr.error` with which an h2msg connection refuses a transaction that does
/// not fit its transaction table: the peer's request fails at once instead of waiting
/// forever. The seed era defines no such value; h2msg uses the one DMSG calls IO (0x22,
/// dmsg.md 3.4), in both revisions.
pub const MSG_ERR_TABLE_FULL: u16 = 0x22;

/// The local IOQ status codes of §4.4 (`ioq.error`).
///
/// They are never transmitted: the receive path copies one into the `error` field of the
/// `LNK_ERROR` it synthesises when a connection fails. Codes 15 (MSGSEQ) and 18–20
/// (IVWRAP, MACFAIL, ALGO) belong to the protected stream modes ([`StreamMode`](crate::StreamMode)); 17
/// (TRANS) to the DMSG revision's transactions. 16 (EALREADY) is no error — a discarded
/// message — and not defined here; the enum is `#[non_exhaustive]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum IoqError {
    /// 1: the header magic is neither 0x4832 nor 0x3248.
    Sync = 1,
    /// 2: the stream ended (inside a message, or at a boundary in the C code's view, §11 R4).
    Eof = 2,
    /// 3: the transport failed.
    Sock = 3,
    /// 4: a size field is out of range (header 32..=2048 bytes, aux ≤ 65536 bytes).
    Field = 4,
    /// 5: the base header CRC (`icrc1`) does not match.
    Hcrc = 5,
    /// 6: the extended header CRC (`icrc2`) does not match.
    Xcrc = 6,
    /// 7: the aux data CRC (`aux_icrc`) does not match.
    Acrc = 7,
    /// 8: defined by the C code, never raised there.
    State = 8,
    /// 9: the peer's address cannot be obtained.
    NoPeer = 9,
    /// 10: neither `remote/<peer>.pub` nor `remote/<peer>.none` exists.
    NoRKey = 10,
    /// 11: our own `rsa.pub` or `rsa.prv` cannot be opened.
    NoLKey = 11,
    /// 12: the key exchange failed (RSA error, short read, bad verifier, version ≠ 1).
    KeyXchgFail = 12,
    /// 13: a key file does not parse, or the key sizes do not fit.
    KeyFmt = 13,
    /// 14: the random source is unusable.
    BadURandom = 14,
    /// 15: a protected stream's message carries the wrong sequence number in its salt's
    /// low byte (§2.8): a message was dropped, repeated or inserted.
    MsgSeq = 15,
    /// 17 (DMSG): a received element broke the transaction rules (dmsg.md 4.3).
    Trans = 17,
    /// 18: a `gcm` stream's nonce counter is exhausted (§2.9).
    IvWrap = 18,
    /// 19: a `gcm` chunk's tag does not verify: the stream was modified (§2.9).
    MacFail = 19,
    /// 20: the stream cipher cannot be set up or was refused (§2.9).
    Algo = 20,
    /// 30 (h2msg's own; no C code has it): no byte arrived for the dead-peer time after a
    /// keepalive ping ([`Liveness`](crate::Liveness)).
    PeerTimeout = 30,
    /// 31 (h2msg's own): bytes waited to be written and the transport took none for the
    /// write-stall time ([`Liveness`](crate::Liveness)).
    WriteStalled = 31,
}

impl IoqError {
    /// Every defined code, in numeric order.
    pub const ALL: [IoqError; 21] = [
        Self::Sync,
        Self::Eof,
        Self::Sock,
        Self::Field,
        Self::Hcrc,
        Self::Xcrc,
        Self::Acrc,
        Self::State,
        Self::NoPeer,
        Self::NoRKey,
        Self::NoLKey,
        Self::KeyXchgFail,
        Self::KeyFmt,
        Self::BadURandom,
        Self::MsgSeq,
        Self::Trans,
        Self::IvWrap,
        Self::MacFail,
        Self::Algo,
        Self::PeerTimeout,
        Self::WriteStalled,
    ];

    /// The numeric code, as carried in a synthesised `LNK_ERROR`.
    #[must_use]
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The error for a numeric code, or `None` for 0 and for codes this crate does not define.
    #[must_use]
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Sync,
            2 => Self::Eof,
            3 => Self::Sock,
            4 => Self::Field,
            5 => Self::Hcrc,
            6 => Self::Xcrc,
            7 => Self::Acrc,
            8 => Self::State,
            9 => Self::NoPeer,
            10 => Self::NoRKey,
            11 => Self::NoLKey,
            12 => Self::KeyXchgFail,
            13 => Self::KeyFmt,
            14 => Self::BadURandom,
            15 => Self::MsgSeq,
            17 => Self::Trans,
            18 => Self::IvWrap,
            19 => Self::MacFail,
            20 => Self::Algo,
            30 => Self::PeerTimeout,
            31 => Self::WriteStalled,
            _ => return None,
        })
    }

    /// The C name without its prefix (`HAMMER2_IOQ_ERROR_SYNC` → `"SYNC"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sync => "SYNC",
            Self::Eof => "EOF",
            Self::Sock => "SOCK",
            Self::Field => "FIELD",
            Self::Hcrc => "HCRC",
            Self::Xcrc => "XCRC",
            Self::Acrc => "ACRC",
            Self::State => "STATE",
            Self::NoPeer => "NOPEER",
            Self::NoRKey => "NORKEY",
            Self::NoLKey => "NOLKEY",
            Self::KeyXchgFail => "KEYXCHGFAIL",
            Self::KeyFmt => "KEYFMT",
            Self::BadURandom => "BADURANDOM",
            Self::MsgSeq => "MSGSEQ",
            Self::Trans => "TRANS",
            Self::IvWrap => "IVWRAP",
            Self::MacFail => "MACFAIL",
            Self::Algo => "ALGO",
            Self::PeerTimeout => "PEERTIMEOUT",
            Self::WriteStalled => "WRSTALL",
        }
    }
}

impl fmt::Display for IoqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IOQ error {} ({})", self.code(), self.name())
    }
}

impl core::error::Error for IoqError {}

/// Why a received header, extended header or aux block was refused.
///
/// Each variant names the offending value; [`DecodeError::ioq_error`] gives the spec's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the part being decoded needs (an end of input inside a message).
    Truncated {
        /// Bytes the part needs.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// The first two bytes are neither magic order (SYNC).
    Sync {
        /// The two bytes as they arrived.
        found: [u8; 2],
    },
    /// `icrc1` does not match the base header (HCRC).
    Hcrc {
        /// The value carried in the header.
        stored: u16,
        /// The value computed over bytes 4..32.
        computed: u16,
    },
    /// The header size field is outside 1..=64 units (FIELD).
    HeaderSize {
        /// The size field (units of 32 bytes).
        units: u8,
    },
    /// `aux_bytes` is above 2048 units (FIELD).
    AuxSize {
        /// The `aux_bytes` field (units of 32 bytes).
        units: u16,
    },
    /// `icrc2` does not match the extended header (XCRC).
    Xcrc {
        /// The value carried in the header.
        stored: u16,
        /// The value computed over the extended bytes.
        computed: u16,
    },
    /// `aux_icrc` does not match the aux data (ACRC).
    Acrc {
        /// The value carried in the header.
        stored: u32,
        /// The value computed over the aux bytes.
        computed: u32,
    },
    /// A protected stream's message has the wrong sequence number (MSGSEQ).
    MsgSeq {
        /// The receiver's message counter, low byte.
        expected: u8,
        /// The salt's low byte.
        found: u8,
    },
    /// A `gcm` record (libdmsg: a 64-byte chunk) failed authentication (MACFAIL); nothing
    /// of it was released.
    MacFail {
        /// The record's counter value (its index in the stream).
        record: u64,
    },
    /// A `gcm` record's length header is 0 or above the 16384-byte maximum (MACFAIL, as
    /// any other change to a sealed stream): refused before anything of the record is
    /// waited for or decrypted.
    RecordLen {
        /// The length the header announces.
        len: u32,
    },
    /// The `gcm` nonce counter is exhausted (IVWRAP).
    IvWrap,
    /// DMSG: `hdr_crc` does not match the header region (XCRC, dmsg.md 2.4).
    HdrCrc {
        /// The value carried in the header.
        stored: u32,
        /// The value computed over the raw header region with the field as zero.
        computed: u32,
    },
    /// DMSG: the header size byte is outside 1..=32 units of 64 bytes (FIELD).
    DmsgHeaderSize {
        /// The size byte of `cmd` (units of 64 bytes).
        units: u8,
    },
    /// DMSG: `aux_bytes` padded to 64 exceeds 1 MiB (FIELD).
    DmsgAuxSize {
        /// The exact aux length the header announces.
        aux_bytes: u32,
    },
}

impl DecodeError {
    /// The IOQ status code this error maps to (§4.4). Truncation maps to EOF (2): input
    /// that ends inside a message is what code 2 reports (§5.2).
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        match self {
            Self::Truncated { .. } => IoqError::Eof,
            Self::Sync { .. } => IoqError::Sync,
            Self::Hcrc { .. } => IoqError::Hcrc,
            Self::HeaderSize { .. }
            | Self::AuxSize { .. }
            | Self::DmsgHeaderSize { .. }
            | Self::DmsgAuxSize { .. } => IoqError::Field,
            Self::Xcrc { .. } | Self::HdrCrc { .. } => IoqError::Xcrc,
            Self::Acrc { .. } => IoqError::Acrc,
            Self::MsgSeq { .. } => IoqError::MsgSeq,
            Self::MacFail { .. } | Self::RecordLen { .. } => IoqError::MacFail,
            Self::IvWrap => IoqError::IvWrap,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.ioq_error();
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "{code}: need {needed} bytes, have {available}")
            }
            Self::Sync { found } => write!(
                f,
                "{code}: magic bytes {:02x} {:02x} are neither 32 48 nor 48 32",
                found[0], found[1]
            ),
            Self::Hcrc { stored, computed } => {
                write!(
                    f,
                    "{code}: icrc1 is {stored:#06x}, header gives {computed:#06x}"
                )
            }
            Self::HeaderSize { units } => write!(
                f,
                "{code}: header size {units} units ({} bytes) is outside 32..=2048",
                usize::from(units) * 32
            ),
            Self::AuxSize { units } => write!(
                f,
                "{code}: aux size {units} units ({} bytes) is above 65536",
                usize::from(units) * 32
            ),
            Self::Xcrc { stored, computed } => write!(
                f,
                "{code}: icrc2 is {stored:#06x}, extended header gives {computed:#06x}"
            ),
            Self::Acrc { stored, computed } => write!(
                f,
                "{code}: aux_icrc is {stored:#010x}, aux data gives {computed:#010x}"
            ),
            Self::MsgSeq { expected, found } => {
                write!(f, "{code}: salt sequence {found}, expected {expected}")
            }
            Self::MacFail { record } => {
                write!(f, "{code}: record {record} failed authentication")
            }
            Self::RecordLen { len } => {
                write!(f, "{code}: record length {len} is outside 1..=16384")
            }
            Self::IvWrap => write!(f, "{code}: the nonce counter is exhausted"),
            Self::HdrCrc { stored, computed } => write!(
                f,
                "{code}: hdr_crc is {stored:#010x}, header region gives {computed:#010x}"
            ),
            Self::DmsgHeaderSize { units } => write!(
                f,
                "{code}: header size {units} units ({} bytes) is outside 64..=2048",
                usize::from(units) * 64
            ),
            Self::DmsgAuxSize { aux_bytes } => write!(
                f,
                "{code}: aux size {aux_bytes} bytes is above 1048576 once padded to 64"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a header could not be sealed for sending. Nothing is changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The `cmd` size field is 0: a header is at least one 32-byte unit.
    ZeroHeaderSize,
    /// The extended header given does not match the `cmd` size field.
    ExtLen {
        /// Extended bytes the `cmd` size field calls for (`units·32 − 32`).
        expected: usize,
        /// Extended bytes given.
        given: usize,
    },
    /// The header would exceed [`MSGHDR_MAX`](super::limits::MSGHDR_MAX).
    HeaderTooLarge {
        /// Header length in bytes the `cmd` size field calls for.
        len: usize,
    },
    /// The aux payload exceeds [`MSGAUX_MAX`](super::limits::MSGAUX_MAX) once padded.
    AuxTooLarge {
        /// Aux length given, in bytes.
        len: usize,
    },
    /// DMSG: the `cmd` size byte is outside 1..=32 units of 64 bytes.
    DmsgHeaderSize {
        /// The size byte of `cmd`.
        units: u8,
    },
    /// DMSG: the aux payload exceeds [`DMSG_AUX_MAX`](super::limits::DMSG_AUX_MAX) once
    /// padded to 64.
    DmsgAuxTooLarge {
        /// Aux length given, in bytes.
        len: usize,
    },
}

impl EncodeError {
    /// The IOQ status code this error maps to: every encode error is a size problem (FIELD).
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        IoqError::Field
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroHeaderSize => {
                f.write_str("cmd size field is 0; a header is at least 32 bytes")
            }
            Self::ExtLen { expected, given } => write!(
                f,
                "cmd size field calls for {expected} extended header bytes, {given} given"
            ),
            Self::HeaderTooLarge { len } => {
                write!(f, "header of {len} bytes exceeds the 2048-byte limit")
            }
            Self::AuxTooLarge { len } => {
                write!(f, "aux payload of {len} bytes exceeds the 65536-byte limit")
            }
            Self::DmsgHeaderSize { units } => write!(
                f,
                "cmd size byte {units} is outside the DMSG header's 1..=32 units of 64 bytes"
            ),
            Self::DmsgAuxTooLarge { len } => write!(
                f,
                "aux payload of {len} bytes exceeds the DMSG limit of 1048576 once padded"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_spec_table() {
        // §4.4, written out independently of the enum's discriminants.
        let table: [(u16, &str); 21] = [
            (1, "SYNC"),
            (2, "EOF"),
            (3, "SOCK"),
            (4, "FIELD"),
            (5, "HCRC"),
            (6, "XCRC"),
            (7, "ACRC"),
            (8, "STATE"),
            (9, "NOPEER"),
            (10, "NORKEY"),
            (11, "NOLKEY"),
            (12, "KEYXCHGFAIL"),
            (13, "KEYFMT"),
            (14, "BADURANDOM"),
            (15, "MSGSEQ"),
            // dmsg.md 3.3.
            (17, "TRANS"),
            (18, "IVWRAP"),
            (19, "MACFAIL"),
            (20, "ALGO"),
            // h2msg's own liveness codes (docs/liveness.md), beyond the C table.
            (30, "PEERTIMEOUT"),
            (31, "WRSTALL"),
        ];
        for (code, name) in table {
            let e = IoqError::from_code(code).unwrap();
            assert_eq!(e.code(), code);
            assert_eq!(e.name(), name);
        }
        for (e, (code, _)) in IoqError::ALL.iter().zip(table) {
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn undefined_and_reserved_codes_are_none() {
        for code in [0, 16, 21, 22, 24, 0xFFFF] {
            assert_eq!(IoqError::from_code(code), None, "code {code}");
        }
    }

    #[test]
    fn decode_errors_map_to_their_codes() {
        let cases = [
            (
                DecodeError::Truncated {
                    needed: 32,
                    available: 3,
                },
                2,
            ),
            (DecodeError::Sync { found: [0, 0] }, 1),
            (
                DecodeError::Hcrc {
                    stored: 1,
                    computed: 2,
                },
                5,
            ),
            (DecodeError::HeaderSize { units: 0 }, 4),
            (DecodeError::AuxSize { units: 2049 }, 4),
            (
                DecodeError::Xcrc {
                    stored: 1,
                    computed: 2,
                },
                6,
            ),
            (
                DecodeError::Acrc {
                    stored: 1,
                    computed: 2,
                },
                7,
            ),
            (
                DecodeError::MsgSeq {
                    expected: 1,
                    found: 2,
                },
                15,
            ),
            (DecodeError::IvWrap, 18),
            (DecodeError::MacFail { record: 3 }, 19),
            (DecodeError::RecordLen { len: 16_385 }, 19),
        ];
        for (err, code) in cases {
            assert_eq!(err.ioq_error().code(), code, "{err:?}");
        }
    }

    #[test]
    fn messages_name_the_offending_value() {
        use core::fmt::Write;
        struct Buf([u8; 128], usize);
        impl Write for Buf {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.1 + s.len();
                self.0
                    .get_mut(self.1..end)
                    .ok_or(fmt::Error)?
                    .copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut b = Buf([0; 128], 0);
        write!(
            b,
            "{}",
            DecodeError::Hcrc {
                stored: 0x2e97,
                computed: 0x1234
            }
        )
        .unwrap();
        let s = core::str::from_utf8(&b.0[..b.1]).unwrap();
        assert_eq!(
            s,
            "IOQ error 5 (HCRC): icrc1 is 0x2e97, header gives 0x1234"
        );
    }
}
