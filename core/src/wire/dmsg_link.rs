//! DMSG's link-layer payloads (dmsg.md 5.1): the extended headers of `LNK_CONN` and
//! `LNK_SPAN`, the [`PeerType`] and [`Uuid`] they carry, and the DMSG command and error
//! constants the 2012 protocol did not have.
//!
//! A payload is the part of the header region after the 64-byte base header: bytes
//! 0x40..0x180 of an `LNK_CONN` message ([`LnkConn`], 320 bytes) and 0x40..0x1C0 of an
//! `LNK_SPAN` ([`LnkSpan`], 384 bytes). Field offsets in the docs below are from the start
//! of the message, as in dmsg.md 5.1.
//!
//! **Byte order.** No implementation swaps a payload: its integers are in the sender's host
//! order (little-endian for every libdmsg node). The layouts keep them as byte arrays, and
//! every integer accessor and setter takes the [`WireOrder`] of the message's base header
//! ([`MessageView::order`](super::MessageView::order) on receipt, the queue's order when
//! sending): a big-endian sender's payload is read as it wrote it. UUIDs are the exception:
//! they are compared and printed as DragonFly's `struct uuid` on a little-endian host
//! ([`Uuid`]), the only form ever seen.
//!
//! **Labels** are NUL-terminated text in 128-byte fields. Their last byte is NUL on
//! receipt whatever the sender put there (dmsg.md 2.7): the label accessors never look at
//! it, and [`LnkConn::read_from_ext`] / [`LnkSpan::read_from_ext`] store a NUL there in the
//! copy they return.

use core::cmp::Ordering;
use core::fmt;
use core::mem::offset_of;

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::cmd::Cmd;
use super::limits::DMSG_BASE_HEADER_LEN;
use super::order::WireOrder;

/// Length of every label field, its terminating NUL included (`DMSG_LABEL_SIZE`).
pub const DMSG_LABEL_SIZE: usize = 128;
/// Longest label text a field can carry: one byte is left for the NUL.
pub const DMSG_LABEL_MAX: usize = DMSG_LABEL_SIZE - 1;
/// The largest `dist` a node relays (`DMSG_SPAN_MAXDIST`): a span received with a larger
/// one is not passed on, so 17 is the largest `dist` ever sent.
pub const DMSG_SPAN_MAXDIST: u32 = 16;
/// The span protocol version (`DMSG_SPAN_PROTO_1`), sent in `proto_version`.
pub const DMSG_SPAN_PROTO_1: u16 = 1;

/// Wire error value (the `error` field): unknown or unsupported command
/// (`DMSG_ERR_NOSUPP`). Values below 0x20 are local IOQ codes.
pub const DMSG_ERR_NOSUPP: u32 = 0x20;
/// Wire error value: simulated link loss, delivered locally for every open transaction
/// when a connection fails (`DMSG_ERR_LOSTLINK`).
pub const DMSG_ERR_LOSTLINK: u32 = 0x21;
/// Wire error value: I/O error (`DMSG_ERR_IO`).
pub const DMSG_ERR_IO: u32 = 0x22;
/// Wire error value: bad parameter (`DMSG_ERR_PARAM`).
pub const DMSG_ERR_PARAM: u32 = 0x23;
/// Wire error value: cannot open a circuit (`DMSG_ERR_CANTCIRC`).
pub const DMSG_ERR_CANTCIRC: u32 = 0x24;

/// `cmd` bits that identify a command: protocol, number and size (`DMSGF_BASECMDMASK`).
const BASE_CMD_MASK: u32 = 0x00FF_FFFF;

/// DMSG commands without a 2012 counterpart (dmsg.md 5.1). `LNK_PAD`
/// ([`Cmd::DMSG_LNK_PAD`]), `LNK_PING`, `LNK_ERROR` and `DBG_SHELL` have the same values in
/// both revisions and keep their 2012 names ([`Cmd::LNK_PING`], [`Cmd::LNK_ERROR`],
/// [`Cmd::DBG_SHELL`]); their size byte counts 64-byte units in DMSG.
impl Cmd {
    /// `LNK_AUTH` (two 64-byte units): defined by libdmsg, never sent by it. The 2012
    /// protocol only had its number ([`number::LNK_AUTH`](super::number::LNK_AUTH)).
    pub const DMSG_LNK_AUTH: Self = Self::from_raw(0x0000_1002);
    /// `LNK_CONN` (six units, payload [`LnkConn`]): each end opens one when the link comes
    /// up and keeps it open for the life of the link.
    pub const DMSG_LNK_CONN: Self = Self::from_raw(0x0000_1106);
    /// `LNK_SPAN` (seven units, payload [`LnkSpan`]): one transaction per advertised
    /// node. The 2012 protocol only had its number
    /// ([`number::LNK_SPAN`](super::number::LNK_SPAN)).
    pub const DMSG_LNK_SPAN: Self = Self::from_raw(0x0000_1207);
    /// `LNK_HAMMER2_VOLCONF` (eight units): a kernel mount's volume configuration entry,
    /// sent one-way inside its open `LNK_CONN`.
    pub const DMSG_LNK_HAMMER2_VOLCONF: Self = Self::from_raw(0x0000_2008);

    /// h2msg's `LNK_SEQREQ` (docs/dmsg.md 5.9, not libdmsg's): opened with DELETE under a
    /// span, routed to the span's originator, which moves the registration to a new route
    /// sequence. Only sent for spans whose originator stamped one (libdmsg's never do).
    pub const DMSG_LNK_SEQREQ: Self = Self::from_raw(0x0000_1301);

    /// DMSG's name for this command, flags ignored (`"LNK_CONN"`), if it has one. Unlike
    /// [`Cmd::name`] it reads the size byte in 64-byte units, so it names the commands of
    /// dmsg.md 5.1 and the four that keep their 2012 values.
    #[must_use]
    pub const fn dmsg_name(self) -> Option<&'static str> {
        Some(match self.raw() & BASE_CMD_MASK {
            0x0000_0001 => "LNK_PAD",
            0x0000_0101 => "LNK_PING",
            0x0000_1002 => "LNK_AUTH",
            0x0000_1106 => "LNK_CONN",
            0x0000_1207 => "LNK_SPAN",
            0x0000_1301 => "LNK_SEQREQ",
            0x0000_2008 => "LNK_HAMMER2_VOLCONF",
            0x000F_FF01 => "LNK_ERROR",
            0x0010_0101 => "DBG_SHELL",
            _ => return None,
        })
    }
}

/// The type of a node (dmsg.md 5.1): what an `LNK_CONN` says this end is, and what an
/// `LNK_SPAN` says the advertised service is. Any byte is a valid `PeerType`; the named
/// ones are constants.
#[repr(transparent)]
#[derive(
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub struct PeerType(pub u8);

impl PeerType {
    /// No type.
    pub const NONE: Self = Self(0);
    /// A router: what a `hammer2 service` and the shell client say they are.
    pub const ROUTER: Self = Self(1);
    /// A block device.
    pub const BLOCK: Self = Self(2);
    /// A HAMMER2 file system: what a kernel mount says it is and advertises.
    pub const HAMMER2: Self = Self(3);
    /// A client. Spans of clients are never relayed to clients.
    pub const CLIENT: Self = Self(63);

    /// The name the debug shell's `tree` command prints for this type (`"HAMMER2"`), or
    /// `"?PEERTYPE?"` for a value without one.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NONE => "NONE",
            Self::ROUTER => "ROUTER",
            Self::BLOCK => "BLOCK",
            Self::HAMMER2 => "HAMMER2",
            Self::CLIENT => "CLIENT",
            _ => "?PEERTYPE?",
        }
    }

    /// This type's bit in an `LNK_CONN`'s `peer_mask` (`1 << type`), or `None` for a type
    /// of 64 or more, which no mask can select (the C shift is undefined there; h2msg
    /// treats such a type as filtered out).
    #[must_use]
    pub const fn mask_bit(self) -> Option<u64> {
        1u64.checked_shl(self.0 as u32)
    }
}

/// `1(ROUTER)`.
impl fmt::Debug for PeerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.0, self.name())
    }
}

/// The `tree` name ([`PeerType::name`]).
impl fmt::Display for PeerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A UUID exactly as its 16 bytes travel in a payload: DragonFly's `struct uuid` in the
/// sender's host order (a little-endian `u32`, two little-endian `u16`s, then 8 bytes).
///
/// [`Display`](fmt::Display) gives the usual text form of that structure, so the first
/// three groups appear byte-reversed against the wire: wire bytes `00 11 22 33 44 55 66 77
/// 88 99 aa bb cc dd ee ff` print as `33221100-5544-7766-8899-aabbccddeeff`. [`Ord`]
/// compares as DragonFly does (the `u32`, then the `u16`s as numbers, then the bytes),
/// which decides the order of the `tree` dump. Both read the integers little-endian, the
/// order of every libdmsg node (dmsg.md 5.1).
#[repr(transparent)]
#[derive(
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The nil UUID (all zero): "no id".
    pub const NIL: Self = Self([0; 16]);

    /// The UUID with these wire bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The wire bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// True for the nil UUID.
    #[must_use]
    pub fn is_nil(&self) -> bool {
        *self == Self::NIL
    }

    /// The structure's fields: `time_low`, `time_mid`, `time_hi_and_version` (read
    /// little-endian) and the remaining 8 bytes as they are.
    #[must_use]
    pub const fn fields(&self) -> (u32, u16, u16, [u8; 8]) {
        let [
            a0,
            a1,
            a2,
            a3,
            b0,
            b1,
            c0,
            c1,
            d0,
            d1,
            d2,
            d3,
            d4,
            d5,
            d6,
            d7,
        ] = self.0;
        (
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1]),
            [d0, d1, d2, d3, d4, d5, d6, d7],
        )
    }
}

impl Ord for Uuid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.fields().cmp(&other.fields())
    }
}

impl PartialOrd for Uuid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `33221100-5544-7766-8899-aabbccddeeff`.
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c, [d0, d1, n0, n1, n2, n3, n4, n5]) = self.fields();
        write!(
            f,
            "{a:08x}-{b:04x}-{c:04x}-{d0:02x}{d1:02x}-\
             {n0:02x}{n1:02x}{n2:02x}{n3:02x}{n4:02x}{n5:02x}"
        )
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// An extended header whose length is not its payload's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadLenError {
    /// The payload's length.
    pub expected: usize,
    /// The length given.
    pub found: usize,
}

impl fmt::Display for PayloadLenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "extended header of {} bytes where the payload has {}",
            self.found, self.expected
        )
    }
}

impl core::error::Error for PayloadLenError {}

/// Why a label was not set. The field is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// More than [`DMSG_LABEL_MAX`] bytes: no room for the NUL.
    TooLong {
        /// The label's length.
        len: usize,
    },
    /// The label contains a NUL, where a receiver would cut it.
    ContainsNul {
        /// Index of the first NUL.
        at: usize,
    },
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => write!(
                f,
                "label of {len} bytes: at most {DMSG_LABEL_MAX} fit with the NUL"
            ),
            Self::ContainsNul { at } => write!(f, "label contains a NUL at byte {at}"),
        }
    }
}

impl core::error::Error for LabelError {}

/// A label field's text: up to its first NUL, never reading its last byte (which a
/// receiver takes as NUL whatever it holds).
fn label_text(field: &[u8; DMSG_LABEL_SIZE]) -> &[u8] {
    let usable = field.split_last().map_or(&[][..], |(_, rest)| rest);
    super::until_nul(usable)
}

/// Writes `text` and zeros to the end of the field.
fn set_label_text(field: &mut [u8; DMSG_LABEL_SIZE], text: &[u8]) -> Result<(), LabelError> {
    if text.len() > DMSG_LABEL_MAX {
        return Err(LabelError::TooLong { len: text.len() });
    }
    if let Some(at) = text.iter().position(|&b| b == 0) {
        return Err(LabelError::ContainsNul { at });
    }
    let (head, tail) = field.split_at_mut(text.len());
    head.copy_from_slice(text);
    tail.fill(0);
    Ok(())
}

/// Puts the NUL into a label field's last byte.
fn force_nul(field: &mut [u8; DMSG_LABEL_SIZE]) {
    if let Some(last) = field.last_mut() {
        *last = 0;
    }
}

fn get_u16(bytes: [u8; 2], order: WireOrder) -> u16 {
    match order {
        WireOrder::Little => u16::from_le_bytes(bytes),
        WireOrder::Big => u16::from_be_bytes(bytes),
    }
}

fn get_u32(bytes: [u8; 4], order: WireOrder) -> u32 {
    match order {
        WireOrder::Little => u32::from_le_bytes(bytes),
        WireOrder::Big => u32::from_be_bytes(bytes),
    }
}

fn get_u64(bytes: [u8; 8], order: WireOrder) -> u64 {
    match order {
        WireOrder::Little => u64::from_le_bytes(bytes),
        WireOrder::Big => u64::from_be_bytes(bytes),
    }
}

fn put_u16(value: u16, order: WireOrder) -> [u8; 2] {
    match order {
        WireOrder::Little => value.to_le_bytes(),
        WireOrder::Big => value.to_be_bytes(),
    }
}

fn put_u32(value: u32, order: WireOrder) -> [u8; 4] {
    match order {
        WireOrder::Little => value.to_le_bytes(),
        WireOrder::Big => value.to_be_bytes(),
    }
}

fn put_u64(value: u64, order: WireOrder) -> [u8; 8] {
    match order {
        WireOrder::Little => value.to_le_bytes(),
        WireOrder::Big => value.to_be_bytes(),
    }
}

/// The payload of `LNK_CONN` (dmsg.md 5.1): message bytes 0x40..0x180, as they travel.
///
/// Integers are byte arrays in the sender's order; read and write them with the accessors,
/// which take that order (see the module docs).
///
/// | Off | Size | Field |
/// |---|---|---|
/// | 0x040 | 16 | `media_id` |
/// | 0x050 | 16 | `peer_id` |
/// | 0x060 | 16 | `reserved01` |
/// | 0x070 | 8 | `peer_mask` |
/// | 0x078 | 1 | `peer_type` |
/// | 0x079 | 1 | `reserved02` |
/// | 0x07A | 2 | `proto_version` |
/// | 0x07C | 4 | `status` |
/// | 0x080 | 4 | `rnss` |
/// | 0x084 | 8 | `reserved03` |
/// | 0x08C | 56 | `reserved04` |
/// | 0x0C4 | 128 | `peer_label` |
/// | 0x144 | 60 | `tail` (structure padding, then zeros to the 64-byte unit) |
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct LnkConn {
    /// Groups the connections of one medium.
    pub media_id: Uuid,
    /// This end's identity; for a CLIENT, an optional filter on span clusters.
    pub peer_id: Uuid,
    /// 0.
    pub reserved01: [u8; 16],
    /// Bit `1 << t` set: "send me spans of peer type `t`".
    pub peer_mask: [u8; 8],
    /// This end's type.
    pub peer_type: PeerType,
    /// 0.
    pub reserved02: u8,
    /// [`DMSG_SPAN_PROTO_1`] (a service sends 0; nobody checks).
    pub proto_version: [u8; 2],
    /// Unused.
    pub status: [u8; 4],
    /// Unused (never filled).
    pub rnss: [u8; 4],
    /// 0.
    pub reserved03: [u8; 8],
    /// 0.
    pub reserved04: [u8; 56],
    /// This end's identity text, NUL-terminated.
    pub peer_label: [u8; DMSG_LABEL_SIZE],
    /// Zeros: the C structure's padding and the rest of the last 64-byte unit.
    pub tail: [u8; 60],
}

/// The payload of `LNK_SPAN` (dmsg.md 5.1): message bytes 0x40..0x1C0, as they travel.
///
/// Integers are byte arrays in the sender's order; read and write them with the accessors,
/// which take that order (see the module docs).
///
/// | Off | Size | Field |
/// |---|---|---|
/// | 0x040 | 16 | `peer_id` |
/// | 0x050 | 16 | `pfs_id` |
/// | 0x060 | 1 | `pfs_type` |
/// | 0x061 | 1 | `peer_type` |
/// | 0x062 | 2 | `proto_version` |
/// | 0x064 | 4 | `status` |
/// | 0x068 | 8 | `reserved02` |
/// | 0x070 | 4 | `dist` |
/// | 0x074 | 4 | `rnss` |
/// | 0x078 | 56 | `media` |
/// | 0x0B0 | 128 | `peer_label` |
/// | 0x130 | 128 | `pfs_label` |
/// | 0x1B0 | 16 | `tail` (zeros to the 64-byte unit) |
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct LnkSpan {
    /// Cluster key, with `peer_type` and `peer_label`.
    pub peer_id: Uuid,
    /// Node key, with `pfs_label`.
    pub pfs_id: Uuid,
    /// Peer-specific (0 = default).
    pub pfs_type: u8,
    /// Type of the advertised service.
    pub peer_type: PeerType,
    /// [`DMSG_SPAN_PROTO_1`] (a kernel mount closes spans of any other version).
    pub proto_version: [u8; 2],
    /// Unused.
    pub status: [u8; 4],
    /// 0.
    pub reserved02: [u8; 8],
    /// Hops from the originator, which sends 0.
    pub dist: [u8; 4],
    /// Random sub-sort: each relay adds its own constant; the originator sends 0.
    pub rnss: [u8; 4],
    /// Zero, or for a BLOCK span its size (`u64`) and block size (`u32`).
    pub media: [u8; 56],
    /// Cluster key text, NUL-terminated (a kernel mount puts the PFS name here).
    pub peer_label: [u8; DMSG_LABEL_SIZE],
    /// Node key text, NUL-terminated.
    pub pfs_label: [u8; DMSG_LABEL_SIZE],
    /// Zeros: the rest of the last 64-byte unit.
    pub tail: [u8; 16],
}

/// True if `cmd`'s header region is the base header plus exactly `payload` bytes.
const fn region_fits(cmd: Cmd, payload: usize) -> bool {
    matches!(cmd.dmsg_header_len(), Some(len) if len == DMSG_BASE_HEADER_LEN + payload)
}

const _: () = assert!(size_of::<LnkConn>() == 0x180 - 0x40);
const _: () = assert!(size_of::<LnkSpan>() == 0x1C0 - 0x40);
const _: () = assert!(region_fits(Cmd::DMSG_LNK_CONN, size_of::<LnkConn>()));
const _: () = assert!(region_fits(Cmd::DMSG_LNK_SPAN, size_of::<LnkSpan>()));
// The C structures (base header included) are 328 and 432 bytes (dmsg.md 5.1): LNK_CONN's
// has 4 bytes of padding after its label, then both are zero up to the 64-byte unit.
const _: () = assert!(DMSG_BASE_HEADER_LEN + offset_of!(LnkConn, tail) + 4 == 328);
const _: () = assert!(DMSG_BASE_HEADER_LEN + offset_of!(LnkSpan, tail) == 432);

impl Default for LnkConn {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl Default for LnkSpan {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// The framing methods both payloads share: their length, a zeroed value, a view or a
/// copy of a received extended header, the bytes to send. `$cmd` names the command.
macro_rules! payload_framing {
    ($cmd:ident) => {
        /// Length of the payload: the extended header of its command
        #[doc = concat!("([`Cmd::", stringify!($cmd), "`]).")]
        pub const LEN: usize = size_of::<Self>();

        /// A payload with every byte 0 (fill it with the setters).
        #[must_use]
        pub fn new() -> Self {
            Self::new_zeroed()
        }

        /// Views a received extended header as this payload (no copy). The label
        /// accessors ignore the labels' last byte, so nothing needs forcing.
        ///
        /// # Errors
        /// [`PayloadLenError`] unless `ext` is exactly [`Self::LEN`] bytes.
        pub fn ref_from_ext(ext: &[u8]) -> Result<&Self, PayloadLenError> {
            Self::ref_from_bytes(ext).map_err(|_| PayloadLenError {
                expected: Self::LEN,
                found: ext.len(),
            })
        }

        /// Copies a received extended header, with the labels' last byte set to NUL as a
        /// receiver does (dmsg.md 2.7): the copy can be stored or relayed as it is.
        ///
        /// # Errors
        /// [`PayloadLenError`] unless `ext` is exactly [`Self::LEN`] bytes.
        pub fn read_from_ext(ext: &[u8]) -> Result<Self, PayloadLenError> {
            let mut copy = *Self::ref_from_ext(ext)?;
            copy.force_label_nul();
            Ok(copy)
        }

        /// The payload's wire bytes: the extended header to send with its command.
        #[must_use]
        pub fn as_ext(&self) -> &[u8] {
            self.as_bytes()
        }
    };
}

impl LnkConn {
    payload_framing!(DMSG_LNK_CONN);

    /// Sets the label field's last byte to NUL.
    pub fn force_label_nul(&mut self) {
        force_nul(&mut self.peer_label);
    }

    /// This end's type.
    #[must_use]
    pub const fn peer_type(&self) -> PeerType {
        self.peer_type
    }

    /// The spans this end wants: bit `1 << t` for peer type `t`
    /// ([`PeerType::mask_bit`]).
    #[must_use]
    pub fn peer_mask(&self, order: WireOrder) -> u64 {
        get_u64(self.peer_mask, order)
    }

    /// The protocol version.
    #[must_use]
    pub fn proto_version(&self, order: WireOrder) -> u16 {
        get_u16(self.proto_version, order)
    }

    /// The unused `status` field.
    #[must_use]
    pub fn status(&self, order: WireOrder) -> u32 {
        get_u32(self.status, order)
    }

    /// The unused `rnss` field.
    #[must_use]
    pub fn rnss(&self, order: WireOrder) -> u32 {
        get_u32(self.rnss, order)
    }

    /// The label text, up to its NUL (at most [`DMSG_LABEL_MAX`] bytes).
    #[must_use]
    pub fn peer_label(&self) -> &[u8] {
        label_text(&self.peer_label)
    }

    /// Sets this end's type.
    pub fn set_peer_type(&mut self, peer_type: PeerType) {
        self.peer_type = peer_type;
    }

    /// Sets the mask of wanted span types.
    pub fn set_peer_mask(&mut self, mask: u64, order: WireOrder) {
        self.peer_mask = put_u64(mask, order);
    }

    /// Sets the protocol version (h2msg sends [`DMSG_SPAN_PROTO_1`]).
    pub fn set_proto_version(&mut self, version: u16, order: WireOrder) {
        self.proto_version = put_u16(version, order);
    }

    /// Sets the label; the rest of the field is zeroed.
    ///
    /// # Errors
    /// [`LabelError`] if `text` is longer than [`DMSG_LABEL_MAX`] or contains a NUL.
    pub fn set_peer_label(&mut self, text: &[u8]) -> Result<(), LabelError> {
        set_label_text(&mut self.peer_label, text)
    }
}

impl LnkSpan {
    payload_framing!(DMSG_LNK_SPAN);

    /// Sets both label fields' last byte to NUL.
    pub fn force_label_nul(&mut self) {
        force_nul(&mut self.peer_label);
        force_nul(&mut self.pfs_label);
    }

    /// The advertised service's type.
    #[must_use]
    pub const fn peer_type(&self) -> PeerType {
        self.peer_type
    }

    /// The peer-specific PFS type.
    #[must_use]
    pub const fn pfs_type(&self) -> u8 {
        self.pfs_type
    }

    /// The protocol version.
    #[must_use]
    pub fn proto_version(&self, order: WireOrder) -> u16 {
        get_u16(self.proto_version, order)
    }

    /// The unused `status` field.
    #[must_use]
    pub fn status(&self, order: WireOrder) -> u32 {
        get_u32(self.status, order)
    }

    /// Hops from the originator (0 at the originator).
    #[must_use]
    pub fn dist(&self, order: WireOrder) -> u32 {
        get_u32(self.dist, order)
    }

    /// The random sub-sort value.
    #[must_use]
    pub fn rnss(&self, order: WireOrder) -> u32 {
        get_u32(self.rnss, order)
    }

    /// The cluster label text, up to its NUL (at most [`DMSG_LABEL_MAX`] bytes).
    #[must_use]
    pub fn peer_label(&self) -> &[u8] {
        label_text(&self.peer_label)
    }

    /// The node label text, up to its NUL (at most [`DMSG_LABEL_MAX`] bytes).
    #[must_use]
    pub fn pfs_label(&self) -> &[u8] {
        label_text(&self.pfs_label)
    }

    /// Sets the advertised service's type.
    pub fn set_peer_type(&mut self, peer_type: PeerType) {
        self.peer_type = peer_type;
    }

    /// Sets the PFS type.
    pub fn set_pfs_type(&mut self, pfs_type: u8) {
        self.pfs_type = pfs_type;
    }

    /// Sets the protocol version (h2msg sends [`DMSG_SPAN_PROTO_1`]).
    pub fn set_proto_version(&mut self, version: u16, order: WireOrder) {
        self.proto_version = put_u16(version, order);
    }

    /// Sets the distance from the originator.
    pub fn set_dist(&mut self, dist: u32, order: WireOrder) {
        self.dist = put_u32(dist, order);
    }

    /// Sets the random sub-sort value.
    pub fn set_rnss(&mut self, rnss: u32, order: WireOrder) {
        self.rnss = put_u32(rnss, order);
    }

    /// This payload with its integers written little-endian, read in `order` (the order of
    /// the header it came with, D3): what a relay sends under its own little-endian
    /// header. The fields whose layout is known are converted: `proto_version`, `status`,
    /// `reserved02`, `dist`, `rnss`, and for a BLOCK span the `media` size, block size and
    /// reserved word; other `media` bytes are copied as they are.
    #[must_use]
    pub fn to_little_endian(&self, order: WireOrder) -> Self {
        let mut out = *self;
        if order == WireOrder::Little {
            return out;
        }
        out.proto_version = self.proto_version(order).to_le_bytes();
        out.status = self.status(order).to_le_bytes();
        out.reserved02 = u64::from_be_bytes(self.reserved02).to_le_bytes();
        out.dist = self.dist(order).to_le_bytes();
        out.rnss = self.rnss(order).to_le_bytes();
        if self.peer_type == PeerType::BLOCK {
            // dmsg.md 5.1: bytes u64 @0, blksize u32 @8, reserved u32 @12.
            for (at, len) in [(0usize, 8usize), (8, 4), (12, 4)] {
                if let Some(field) = out.media.get_mut(at..at + len) {
                    field.reverse();
                }
            }
        }
        out
    }

    /// Sets the cluster label; the rest of the field is zeroed.
    ///
    /// # Errors
    /// [`LabelError`] if `text` is longer than [`DMSG_LABEL_MAX`] or contains a NUL.
    pub fn set_peer_label(&mut self, text: &[u8]) -> Result<(), LabelError> {
        set_label_text(&mut self.peer_label, text)
    }

    /// Sets the node label; the rest of the field is zeroed.
    ///
    /// # Errors
    /// [`LabelError`] if `text` is longer than [`DMSG_LABEL_MAX`] or contains a NUL.
    pub fn set_pfs_label(&mut self, text: &[u8]) -> Result<(), LabelError> {
        set_label_text(&mut self.pfs_label, text)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;
    use crate::wire::{MessageView, SoftCrc32c};

    /// A wire image of `len` bytes: zero except the hex rows `(offset, "b0 b1 …")`.
    fn image(len: usize, rows: &[(usize, &str)]) -> Vec<u8> {
        let mut out = std::vec![0u8; len];
        for &(off, hex) in rows {
            for (i, b) in hex.split_whitespace().enumerate() {
                out[off + i] = u8::from_str_radix(b, 16).unwrap();
            }
        }
        out
    }

    /// Vector V1 of dmsg.md 2.8 (the DMSG specification's hex rows).
    fn v1() -> Vec<u8> {
        image(
            384,
            &[
                (0x00, "32 48 00 00 00 56 34 12 01 00 00 00 00 00 00 00"),
                (0x20, "06 11 00 80 00 00 00 00 00 00 00 00 00 00 00 00"),
                (0x30, "00 00 00 00 00 00 00 00 00 00 00 00 f6 96 a4 ca"),
                (0x70, "ff ff ff ff ff ff ff ff 01 00 01 00 00 00 00 00"),
                (0xc0, "00 00 00 00 68 32 6d 73 67 00"),
            ],
        )
    }

    /// Vector V2 of dmsg.md 2.8.
    fn v2() -> Vec<u8> {
        image(
            448,
            &[
                (0x00, "32 48 00 00 01 de bc 9a 02 00 00 00 00 00 00 00"),
                (0x20, "07 12 00 80 00 00 00 00 00 00 00 00 00 00 00 00"),
                (0x30, "00 00 00 00 00 00 00 00 00 00 00 00 0a b6 4f 6a"),
                (0x40, "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"),
                (0x50, "0f 1e 2d 3c 4b 5a 69 78 87 96 a5 b4 c3 d2 e1 f0"),
                (0x60, "00 03 01 00 00 00 00 00 00 00 00 00 00 00 00 00"),
                (0x70, "02 00 00 00 04 03 02 01 00 00 00 00 00 00 00 00"),
                (0xb0, "63 6c 75 73 74 65 72 41 00"),
                (0x130, "6e 6f 64 65 31 00"),
            ],
        )
    }

    const LE: WireOrder = WireOrder::Little;

    /// Every field is at its table offset, and each table size reaches the next field
    /// (the last one reaches `end`): no hidden padding, no overlap.
    fn assert_tiles(table: &[(&str, usize, usize, usize)], end: usize) {
        for (i, &(name, got, spec, size)) in table.iter().enumerate() {
            assert_eq!(got, spec, "{name} offset");
            let next = table.get(i + 1).map_or(end, |row| row.2);
            assert_eq!(spec + size, next, "{name} size");
        }
    }

    #[test]
    fn conn_offsets_match_the_payload_table() {
        // (field, offset from the message start, size) as the table of dmsg.md 5.1 lists them.
        let table = [
            ("media_id", 0x40 + offset_of!(LnkConn, media_id), 0x040, 16),
            ("peer_id", 0x40 + offset_of!(LnkConn, peer_id), 0x050, 16),
            (
                "reserved01",
                0x40 + offset_of!(LnkConn, reserved01),
                0x060,
                16,
            ),
            ("peer_mask", 0x40 + offset_of!(LnkConn, peer_mask), 0x070, 8),
            ("peer_type", 0x40 + offset_of!(LnkConn, peer_type), 0x078, 1),
            (
                "reserved02",
                0x40 + offset_of!(LnkConn, reserved02),
                0x079,
                1,
            ),
            (
                "proto_version",
                0x40 + offset_of!(LnkConn, proto_version),
                0x07A,
                2,
            ),
            ("status", 0x40 + offset_of!(LnkConn, status), 0x07C, 4),
            ("rnss", 0x40 + offset_of!(LnkConn, rnss), 0x080, 4),
            (
                "reserved03",
                0x40 + offset_of!(LnkConn, reserved03),
                0x084,
                8,
            ),
            (
                "reserved04",
                0x40 + offset_of!(LnkConn, reserved04),
                0x08C,
                56,
            ),
            (
                "peer_label",
                0x40 + offset_of!(LnkConn, peer_label),
                0x0C4,
                128,
            ),
            ("tail", 0x40 + offset_of!(LnkConn, tail), 0x144, 60),
        ];
        assert_tiles(&table, 0x180);
        assert_eq!(0x40 + size_of::<LnkConn>(), 0x180);
        assert_eq!(LnkConn::LEN, 320);
        assert_eq!(align_of::<LnkConn>(), 1);
    }

    #[test]
    fn span_offsets_match_the_payload_table() {
        let table = [
            ("peer_id", 0x40 + offset_of!(LnkSpan, peer_id), 0x040, 16),
            ("pfs_id", 0x40 + offset_of!(LnkSpan, pfs_id), 0x050, 16),
            ("pfs_type", 0x40 + offset_of!(LnkSpan, pfs_type), 0x060, 1),
            ("peer_type", 0x40 + offset_of!(LnkSpan, peer_type), 0x061, 1),
            (
                "proto_version",
                0x40 + offset_of!(LnkSpan, proto_version),
                0x062,
                2,
            ),
            ("status", 0x40 + offset_of!(LnkSpan, status), 0x064, 4),
            (
                "reserved02",
                0x40 + offset_of!(LnkSpan, reserved02),
                0x068,
                8,
            ),
            ("dist", 0x40 + offset_of!(LnkSpan, dist), 0x070, 4),
            ("rnss", 0x40 + offset_of!(LnkSpan, rnss), 0x074, 4),
            ("media", 0x40 + offset_of!(LnkSpan, media), 0x078, 56),
            (
                "peer_label",
                0x40 + offset_of!(LnkSpan, peer_label),
                0x0B0,
                128,
            ),
            (
                "pfs_label",
                0x40 + offset_of!(LnkSpan, pfs_label),
                0x130,
                128,
            ),
            ("tail", 0x40 + offset_of!(LnkSpan, tail), 0x1B0, 16),
        ];
        assert_tiles(&table, 0x1C0);
        assert_eq!(0x40 + size_of::<LnkSpan>(), 0x1C0);
        assert_eq!(LnkSpan::LEN, 384);
        assert_eq!(align_of::<LnkSpan>(), 1);
    }

    #[test]
    fn v1_conn_payload_field_by_field() {
        let wire = v1();
        let m = MessageView::parse_dmsg(&wire, &SoftCrc32c).unwrap();
        assert_eq!(m.header().cmd, 0x8000_1106);
        let conn = LnkConn::ref_from_ext(m.ext()).unwrap();
        assert_eq!(conn.peer_mask(m.order()), 0xFFFF_FFFF_FFFF_FFFF);
        assert_eq!(conn.peer_type(), PeerType(1));
        assert_eq!(conn.proto_version(m.order()), 1);
        assert_eq!(conn.peer_label(), b"h2msg");
        assert_eq!(conn.status(m.order()), 0);
        assert_eq!(conn.rnss(m.order()), 0);
        assert_eq!(conn.media_id, Uuid::NIL);
        assert_eq!(conn.peer_id, Uuid::NIL);
        assert_eq!(conn.reserved01, [0; 16]);
    }

    #[test]
    fn v2_span_payload_field_by_field() {
        let wire = v2();
        let m = MessageView::parse_dmsg(&wire, &SoftCrc32c).unwrap();
        assert_eq!(m.header().cmd, 0x8000_1207);
        let span = LnkSpan::ref_from_ext(m.ext()).unwrap();
        assert_eq!(
            span.peer_id.to_string(),
            "33221100-5544-7766-8899-aabbccddeeff"
        );
        // The `tree` line the specification measured for this very span.
        assert_eq!(
            span.pfs_id.to_string(),
            "3c2d1e0f-5a4b-7869-8796-a5b4c3d2e1f0"
        );
        assert_eq!(span.pfs_type(), 0);
        assert_eq!(span.peer_type(), PeerType(3));
        assert_eq!(span.proto_version(LE), 1);
        assert_eq!(span.dist(LE), 2);
        assert_eq!(span.rnss(LE), 0x0102_0304);
        assert_eq!(span.status(LE), 0);
        assert_eq!(span.peer_label(), b"clusterA");
        assert_eq!(span.pfs_label(), b"node1");
        assert_eq!(span.media, [0; 56]);
    }

    #[test]
    fn setters_build_the_v1_and_v2_payloads() {
        let mut conn = LnkConn::new();
        conn.set_peer_mask(u64::MAX, LE);
        conn.set_peer_type(PeerType::ROUTER);
        conn.set_proto_version(DMSG_SPAN_PROTO_1, LE);
        conn.set_peer_label(b"h2msg").unwrap();
        assert_eq!(conn.as_ext(), &v1()[0x40..]);

        let mut span = LnkSpan::new();
        span.peer_id =
            Uuid::from_bytes(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff");
        span.pfs_id =
            Uuid::from_bytes(*b"\x0f\x1e\x2d\x3c\x4b\x5a\x69\x78\x87\x96\xa5\xb4\xc3\xd2\xe1\xf0");
        span.set_pfs_type(0);
        span.set_peer_type(PeerType::HAMMER2);
        span.set_proto_version(1, LE);
        span.set_dist(2, LE);
        span.set_rnss(0x0102_0304, LE);
        span.set_peer_label(b"clusterA").unwrap();
        span.set_pfs_label(b"node1").unwrap();
        assert_eq!(span.as_ext(), &v2()[0x40..]);
    }

    #[test]
    fn integers_are_read_in_the_senders_order() {
        let wire = v2();
        let span = LnkSpan::ref_from_ext(&wire[0x40..]).unwrap();
        // The same bytes from a big-endian sender mean other numbers.
        assert_eq!(span.dist(WireOrder::Big), 0x0200_0000);
        assert_eq!(span.rnss(WireOrder::Big), 0x0403_0201);
        assert_eq!(span.proto_version(WireOrder::Big), 0x0100);
        let mut be = LnkConn::new();
        be.set_peer_mask(0x0102_0304_0506_0708, WireOrder::Big);
        be.set_proto_version(1, WireOrder::Big);
        assert_eq!(be.peer_mask, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(be.proto_version, [0, 1]);
        assert_eq!(be.peer_mask(WireOrder::Big), 0x0102_0304_0506_0708);
        assert_eq!(be.peer_mask(LE), 0x0807_0605_0403_0201);
    }

    #[test]
    fn payload_length_must_be_exact() {
        let wire = v1();
        assert_eq!(
            LnkConn::ref_from_ext(&wire[0x40..0x17F]),
            Err(PayloadLenError {
                expected: 320,
                found: 319
            })
        );
        assert_eq!(
            LnkSpan::ref_from_ext(&wire[0x40..]).map(|_| ()),
            Err(PayloadLenError {
                expected: 384,
                found: 320
            })
        );
        assert_eq!(
            LnkSpan::read_from_ext(&[0; 385]).map(|_| ()),
            Err(PayloadLenError {
                expected: 384,
                found: 385
            })
        );
    }

    #[test]
    fn the_last_label_byte_is_nul_on_receipt() {
        // Labels filled to the last byte without a NUL: only 127 bytes are text.
        let mut ext = std::vec![0u8; LnkSpan::LEN];
        ext[0xB0 - 0x40..0x130 - 0x40].fill(b'a');
        ext[0x130 - 0x40..0x1B0 - 0x40].fill(b'b');
        let span = LnkSpan::ref_from_ext(&ext).unwrap();
        assert_eq!(span.peer_label(), &[b'a'; 127][..]);
        assert_eq!(span.pfs_label(), &[b'b'; 127][..]);
        let copy = LnkSpan::read_from_ext(&ext).unwrap();
        assert_eq!(copy.peer_label[127], 0);
        assert_eq!(copy.pfs_label[127], 0);
        assert_eq!(copy.peer_label[126], b'a');
        assert_eq!(copy.pfs_label[126], b'b');

        let mut ext = std::vec![0u8; LnkConn::LEN];
        ext[0xC4 - 0x40..0x144 - 0x40].fill(b'c');
        assert_eq!(
            LnkConn::ref_from_ext(&ext).unwrap().peer_label(),
            &[b'c'; 127][..]
        );
        let copy = LnkConn::read_from_ext(&ext).unwrap();
        assert_eq!(copy.peer_label[127], 0);
        assert_eq!(copy.peer_label[126], b'c');
        assert_eq!(copy.tail, [0; 60]);
    }

    #[test]
    fn labels_are_checked_when_set() {
        let mut conn = LnkConn::new();
        conn.set_peer_label(&[b'x'; 127]).unwrap();
        assert_eq!(conn.peer_label(), &[b'x'; 127][..]);
        assert_eq!(conn.peer_label[127], 0);
        assert_eq!(
            conn.set_peer_label(&[b'y'; 128]),
            Err(LabelError::TooLong { len: 128 })
        );
        assert_eq!(
            conn.set_peer_label(b"ab\0c"),
            Err(LabelError::ContainsNul { at: 2 })
        );
        assert_eq!(conn.peer_label(), &[b'x'; 127][..], "unchanged on error");
        // A shorter label clears what the longer one left.
        conn.set_peer_label(b"short").unwrap();
        assert_eq!(conn.peer_label(), b"short");
        assert!(conn.peer_label[5..].iter().all(|&b| b == 0));

        let mut span = LnkSpan::new();
        assert_eq!(
            span.set_pfs_label(&[b'z'; 200]),
            Err(LabelError::TooLong { len: 200 })
        );
        span.set_pfs_label(b"").unwrap();
        assert_eq!(span.pfs_label(), b"");
        assert_eq!(
            format!("{}", LabelError::TooLong { len: 128 }),
            "label of 128 bytes: at most 127 fit with the NUL"
        );
    }

    #[test]
    fn uuid_text_reverses_the_first_three_groups() {
        let uuid = Uuid::from_bytes([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        assert_eq!(uuid.to_string(), "33221100-5544-7766-8899-aabbccddeeff");
        assert_eq!(
            format!("{uuid:?}"),
            "Uuid(33221100-5544-7766-8899-aabbccddeeff)"
        );
        assert_eq!(
            Uuid::NIL.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert!(Uuid::NIL.is_nil());
        assert!(!uuid.is_nil());
        assert_eq!(uuid.as_bytes()[1], 0x11);
    }

    #[test]
    fn uuids_order_as_dragonfly_compares_them() {
        let with = |i: usize, v: u8| {
            let mut b = [0u8; 16];
            b[i] = v;
            Uuid::from_bytes(b)
        };
        // time_low 1 < time_low 0x100, although the bytes compare the other way.
        assert!(with(0, 1) < with(1, 1));
        assert!(with(0, 1).0 > with(1, 1).0);
        // time_low before time_mid, time_mid before time_hi, and each u16 as a number.
        assert!(with(4, 0xFF) < with(3, 1));
        assert!(with(4, 1) < with(5, 1));
        assert!(with(6, 0xFF) < with(5, 1));
        assert!(with(6, 1) < with(7, 1));
        // The last 8 bytes compare in wire order.
        assert!(with(9, 0xFF) < with(8, 1));
        assert!(with(15, 1) < with(14, 1));
        assert!(Uuid::NIL < with(15, 1));
        assert_eq!(with(3, 7).cmp(&with(3, 7)), Ordering::Equal);
        let mut sorted = [with(2, 1), with(0, 2), with(1, 1), with(0, 1)];
        sorted.sort();
        assert_eq!(sorted, [with(0, 1), with(0, 2), with(1, 1), with(2, 1)]);
    }

    #[test]
    fn peer_type_names_are_the_tree_output() {
        let named = [
            (0, "NONE"),
            (1, "ROUTER"),
            (2, "BLOCK"),
            (3, "HAMMER2"),
            (63, "CLIENT"),
        ];
        for (value, name) in named {
            assert_eq!(PeerType(value).name(), name);
            assert_eq!(PeerType(value).to_string(), name);
        }
        for value in [4, 5, 62, 64, 255] {
            assert_eq!(PeerType(value).name(), "?PEERTYPE?");
        }
        assert_eq!(
            [
                PeerType::NONE,
                PeerType::ROUTER,
                PeerType::BLOCK,
                PeerType::HAMMER2,
                PeerType::CLIENT
            ],
            [
                PeerType(0),
                PeerType(1),
                PeerType(2),
                PeerType(3),
                PeerType(63)
            ]
        );
        assert_eq!(format!("{:?}", PeerType(3)), "3(HAMMER2)");
    }

    #[test]
    fn peer_mask_bits() {
        assert_eq!(PeerType::NONE.mask_bit(), Some(1));
        assert_eq!(PeerType::HAMMER2.mask_bit(), Some(8));
        assert_eq!(PeerType::CLIENT.mask_bit(), Some(1 << 63));
        assert_eq!(PeerType(64).mask_bit(), None);
        assert_eq!(PeerType(255).mask_bit(), None);
    }

    #[test]
    fn commands_and_constants_have_the_appendix_values() {
        assert_eq!(Cmd::DMSG_LNK_AUTH.raw(), 0x0000_1002);
        assert_eq!(Cmd::DMSG_LNK_CONN.raw(), 0x0000_1106);
        assert_eq!(Cmd::DMSG_LNK_SPAN.raw(), 0x0000_1207);
        assert_eq!(Cmd::DMSG_LNK_HAMMER2_VOLCONF.raw(), 0x0000_2008);
        // The header regions of dmsg.md 5.1's table: 128, 384, 448 and 512 bytes.
        let regions = [
            (Cmd::DMSG_LNK_AUTH, 128),
            (Cmd::DMSG_LNK_CONN, 384),
            (Cmd::DMSG_LNK_SPAN, 448),
            (Cmd::DMSG_LNK_HAMMER2_VOLCONF, 512),
        ];
        for (cmd, len) in regions {
            assert_eq!(cmd.dmsg_header_len(), Some(len), "{cmd:?}");
        }
        let errors = [
            DMSG_ERR_NOSUPP,
            DMSG_ERR_LOSTLINK,
            DMSG_ERR_IO,
            DMSG_ERR_PARAM,
            DMSG_ERR_CANTCIRC,
        ];
        assert_eq!(errors, [0x20, 0x21, 0x22, 0x23, 0x24]);
        assert_eq!(DMSG_SPAN_MAXDIST, 16);
        assert_eq!(DMSG_LABEL_SIZE, 128);
        assert_eq!(DMSG_LABEL_MAX, 127);
    }

    #[test]
    fn dmsg_names_ignore_flags() {
        let names = [
            (0x0000_0001, "LNK_PAD"),
            (0x2000_0101, "LNK_PING"),
            (0x0000_1002, "LNK_AUTH"),
            (0x8000_1106, "LNK_CONN"),
            (0x4000_1207, "LNK_SPAN"),
            (0x0000_2008, "LNK_HAMMER2_VOLCONF"),
            (0xA80F_FF01, "LNK_ERROR"),
            (0x2010_0101, "DBG_SHELL"),
        ];
        for (raw, name) in names {
            assert_eq!(Cmd::from_raw(raw).dmsg_name(), Some(name), "{raw:#x}");
        }
        // The size byte is part of the identity.
        assert_eq!(Cmd::from_raw(0x8000_1202).dmsg_name(), None);
        assert_eq!(Cmd::from_raw(0x0000_1107).dmsg_name(), None);
    }
}
