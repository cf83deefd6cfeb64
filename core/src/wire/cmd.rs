//! The 32-bit `cmd` field (§3.4): flags, protocol nibble, command number, header size.
//!
//! ```text
//!  31 30 29 28 27 26 25 24 | 23..20 | 19..8            | 7..0
//!  CR DE RE AB OB F2 F1 F0 | proto  | command (12 bit) | header size in 32-byte units
//! ```
//!
//! Because the header size is part of the value, a command whose structure changes size is
//! a different command to the dispatcher; [`Cmd::switch_key`] is the value a dispatcher
//! matches on (`MSGF_CMDSWMASK`: protocol, number, size and REPLY).

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use super::limits::ALIGN;

/// The flag byte of `cmd` (bits 24..31).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MsgFlags(u32);

impl MsgFlags {
    /// No flags: a one-way message.
    pub const NONE: Self = Self(0);
    /// First element of a transaction.
    pub const CREATE: Self = Self(0x8000_0000);
    /// Last element of a transaction in this direction (half-close).
    pub const DELETE: Self = Self(0x4000_0000);
    /// The element travels in the reply direction.
    pub const REPLY: Self = Self(0x2000_0000);
    /// Abort request (§8.1).
    pub const ABORT: Self = Self(0x1000_0000);
    /// Aux data is out of band. Defined by the era, never implemented (§11 S1).
    pub const AUXOOB: Self = Self(0x0800_0000);
    /// Spare flag 2.
    pub const FLAG2: Self = Self(0x0400_0000);
    /// Spare flag 1.
    pub const FLAG1: Self = Self(0x0200_0000);
    /// Spare flag 0.
    pub const FLAG0: Self = Self(0x0100_0000);
    /// All flag bits (`MSGF_FLAGS`).
    pub const ALL: Self = Self(0xFF00_0000);

    const NAMED: [(Self, &'static str); 8] = [
        (Self::CREATE, "CREATE"),
        (Self::DELETE, "DELETE"),
        (Self::REPLY, "REPLY"),
        (Self::ABORT, "ABORT"),
        (Self::AUXOOB, "AUXOOB"),
        (Self::FLAG2, "FLAG2"),
        (Self::FLAG1, "FLAG1"),
        (Self::FLAG0, "FLAG0"),
    ];

    /// The flags of a raw `cmd` value (other bits are ignored).
    #[must_use]
    pub const fn from_cmd_bits(raw: u32) -> Self {
        Self(raw & Self::ALL.0)
    }

    /// The flag bits in their `cmd` positions.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if every flag of `other` is set here.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any flag of `other` is set here.
    #[must_use]
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// These flags plus `other`.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags without `other`.
    #[must_use]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// True if no flag is set.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for MsgFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for MsgFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for MsgFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `CREATE|DELETE|REPLY`, `-` when empty.
impl fmt::Display for MsgFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut sep = "";
        for (flag, name) in Self::NAMED {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        Ok(())
    }
}

/// The protocol nibble of `cmd` (bits 20..23), seed-era numbering (§4.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(u8);

impl Protocol {
    /// Link layer: talks to the directly connected peer only.
    pub const LNK: Self = Self(0x0);
    /// Debug shell.
    pub const DBG: Self = Self(0x1);
    /// Cache-coherency locks (design only in this era).
    pub const CAC: Self = Self(0x2);
    /// Quorum commit (design only).
    pub const QRM: Self = Self(0x3);
    /// Block protocol (design only).
    pub const BLK: Self = Self(0x4);
    /// Vnode operations (design only).
    pub const VOP: Self = Self(0x5);
    /// Applications' own commands: h2msg's choice, the top nibble, which neither the seed
    /// era (0x0–0x5, §4.1) nor DMSG (0x0–0x7) assigns. [`Cmd::app`] builds them.
    pub const APP: Self = Self(0xF);

    /// The protocol with this nibble value, or `None` above 15.
    #[must_use]
    pub const fn new(nibble: u8) -> Option<Self> {
        if nibble <= 0xF {
            Some(Self(nibble))
        } else {
            None
        }
    }

    /// The nibble value (0..=15).
    #[must_use]
    pub const fn nibble(self) -> u8 {
        self.0
    }

    /// The protocol in its `cmd` position (`MSGF_PROTOS` bits, e.g. DBG → 0x0010_0000).
    #[must_use]
    pub const fn cmd_bits(self) -> u32 {
        (self.0 as u32) << Cmd::PROTO_SHIFT
    }

    /// The era's name, or `None` for a nibble it does not name.
    #[must_use]
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "LNK",
            0x1 => "DBG",
            0x2 => "CAC",
            0x3 => "QRM",
            0x4 => "BLK",
            0x5 => "VOP",
            0xF => "APP",
            _ => return None,
        })
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "PROTO{:X}", self.0),
        }
    }
}

/// Command numbers (bits 8..19) of the era whose structures were never defined (§4.2,
/// §11 S3): their full `cmd` value is unknown, so they exist only as numbers. Do not send
/// them; a receiver answers them with [`MSG_ERR_UNKNOWN`](super::MSG_ERR_UNKNOWN).
pub mod number {
    /// `LNK_AUTH` (protocol LNK).
    pub const LNK_AUTH: u16 = 0x010;
    /// `LNK_HSPAN`, host-status spanning (protocol LNK).
    pub const LNK_HSPAN: u16 = 0x011;
    /// `LNK_SPAN`, registration spanning tree (protocol LNK).
    pub const LNK_SPAN: u16 = 0x012;
    /// `LNK_ERROR` (protocol LNK).
    pub const LNK_ERROR: u16 = 0xFFF;
    /// `CAC_LOCK` (protocol CAC).
    pub const CAC_LOCK: u16 = 0x001;
    /// `QRM_COMMIT` (protocol QRM).
    pub const QRM_COMMIT: u16 = 0x001;
}

/// A typed `cmd` value. Any 32-bit value is a valid `Cmd` (the receiver accepts all, §11
/// R5); [`Cmd::header_len`] tells whether its size field is usable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cmd(u32);

impl Cmd {
    /// Mask of the protocol nibble (`MSGF_PROTOS`).
    pub const PROTOS_MASK: u32 = 0x00F0_0000;
    /// Mask of the command number (`MSGF_CMDS`).
    pub const CMDS_MASK: u32 = 0x000F_FF00;
    /// Mask of the header size (`MSGF_SIZE`).
    pub const SIZE_MASK: u32 = 0x0000_00FF;
    /// What dispatchers match on: protocol, number, size and REPLY (`MSGF_CMDSWMASK`).
    pub const SWITCH_MASK: u32 = 0x20FF_FFFF;
    const PROTO_SHIFT: u32 = 20;
    const NUMBER_SHIFT: u32 = 8;

    /// One-way filler for shared-memory transports; ignored by the target.
    pub const LNK_PAD: Self = Self(0x0000_0001);
    /// Keep-alive ping. Defined but not implemented by the C tools (they answer 0x20).
    pub const LNK_PING: Self = Self(0x0000_0101);
    /// Synthesised locally when the receive path fails; never sent (§5.1).
    pub const LNK_ERROR: Self = Self(0x000F_FF01);
    /// The debug shell (§4.3): a line in the aux data, answered by `DBG_SHELL|REPLY`s.
    pub const DBG_SHELL: Self = Self(0x0010_0101);

    /// Builds `flags | proto | number << 8 | size_units` (the C constructor, §3.4).
    ///
    /// Returns `None` if `number` needs more than 12 bits. `size_units` is the header size
    /// in 32-byte units; a sendable header has 1..=64 ([`Cmd::header_len`] checks).
    #[must_use]
    pub const fn new(
        flags: MsgFlags,
        proto: Protocol,
        number: u16,
        size_units: u8,
    ) -> Option<Self> {
        if number > 0xFFF {
            return None;
        }
        Some(Self(
            flags.bits()
                | proto.cmd_bits()
                | (number as u32) << Self::NUMBER_SHIFT
                | size_units as u32,
        ))
    }

    /// Application command `number` (0..=0xFFF): protocol [`Protocol::APP`] (nibble 0xF,
    /// §4.1), no flags, a header without extension (one unit: 32 bytes in the seed era,
    /// 64 in DMSG). `None` if `number` needs more than 12 bits.
    ///
    /// ```
    /// use h2msg::wire::Cmd;
    ///
    /// const ECHO: Cmd = match Cmd::app(1) {
    ///     Some(cmd) => cmd,
    ///     None => Cmd::LNK_PAD, // unreachable: 1 fits in 12 bits
    /// };
    /// assert_eq!(ECHO.raw(), 0x00F0_0101);
    /// assert_eq!(ECHO.to_string(), "APP.0x001/1");
    /// ```
    #[must_use]
    pub const fn app(number: u16) -> Option<Self> {
        Self::new(MsgFlags::NONE, Protocol::APP, number, 1)
    }

    /// The command for a raw `cmd` field value.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw field value.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The flag bits.
    #[must_use]
    pub const fn flags(self) -> MsgFlags {
        MsgFlags::from_cmd_bits(self.0)
    }

    /// This command with its flags replaced by `flags`.
    #[must_use]
    pub const fn with_flags(self, flags: MsgFlags) -> Self {
        Self(self.0 & !MsgFlags::ALL.bits() | flags.bits())
    }

    /// This command with `flags` added.
    #[must_use]
    pub const fn set(self, flags: MsgFlags) -> Self {
        Self(self.0 | flags.bits())
    }

    /// This command with `flags` removed.
    #[must_use]
    pub const fn clear(self, flags: MsgFlags) -> Self {
        Self(self.0 & !flags.bits())
    }

    /// The protocol nibble.
    #[must_use]
    pub const fn protocol(self) -> Protocol {
        Protocol(((self.0 & Self::PROTOS_MASK) >> Self::PROTO_SHIFT) as u8)
    }

    /// The 12-bit command number.
    #[must_use]
    pub const fn number(self) -> u16 {
        ((self.0 & Self::CMDS_MASK) >> Self::NUMBER_SHIFT) as u16
    }

    /// The header size field, in 32-byte units.
    #[must_use]
    pub const fn size_units(self) -> u8 {
        (self.0 & Self::SIZE_MASK) as u8
    }

    /// Header length in bytes (`size_units · 32`), or `None` if outside the legal 32..=2048.
    #[must_use]
    pub const fn header_len(self) -> Option<usize> {
        let len = self.size_units() as usize * ALIGN;
        if len >= ALIGN && len <= super::limits::MSGHDR_MAX {
            Some(len)
        } else {
            None
        }
    }

    /// The value a dispatcher matches on (`cmd & MSGF_CMDSWMASK`): flags other than REPLY
    /// do not change which handler runs.
    #[must_use]
    pub const fn switch_key(self) -> u32 {
        self.0 & Self::SWITCH_MASK
    }

    /// True if `self` and `other` go to the same handler (equal [`Cmd::switch_key`]).
    #[must_use]
    pub const fn same_handler(self, other: Self) -> bool {
        self.switch_key() == other.switch_key()
    }

    /// True if the REPLY flag is set.
    #[must_use]
    pub const fn is_reply(self) -> bool {
        self.flags().contains(MsgFlags::REPLY)
    }

    /// The era's name for this command ignoring flags (`"DBG_SHELL"`), if it has one.
    #[must_use]
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 & !MsgFlags::ALL.bits() {
            0x0000_0001 => "LNK_PAD",
            0x0000_0101 => "LNK_PING",
            0x000F_FF01 => "LNK_ERROR",
            0x0010_0101 => "DBG_SHELL",
            _ => return None,
        })
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({:#010x} {self})", self.0)
    }
}

/// `DBG_SHELL|REPLY`, or `LNK.0x012/2|CREATE` for a command without a name.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name)?,
            None => write!(
                f,
                "{:?}.{:#05x}/{}",
                self.protocol(),
                self.number(),
                self.size_units()
            )?,
        }
        if !self.flags().is_empty() {
            write!(f, "|{}", self.flags())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_commands_have_the_spec_values() {
        // §4.2 and Appendix A.
        assert_eq!(Cmd::LNK_PAD.raw(), 0x0000_0001);
        assert_eq!(Cmd::LNK_PING.raw(), 0x0000_0101);
        assert_eq!(Cmd::LNK_ERROR.raw(), 0x000F_FF01);
        assert_eq!(Cmd::DBG_SHELL.raw(), 0x0010_0101);
    }

    #[test]
    fn application_commands_use_the_top_nibble() {
        // flags 0 | protocol 0xF << 20 | number << 8 | one 32-byte unit, as §3.4 lays
        // the field out.
        assert_eq!(Cmd::app(0).map(Cmd::raw), Some(0x00F0_0001));
        assert_eq!(Cmd::app(0x123).map(Cmd::raw), Some(0x00F1_2301));
        assert_eq!(Cmd::app(0xFFF).map(Cmd::raw), Some(0x00FF_FF01));
        assert_eq!(
            Cmd::app(0x1000),
            None,
            "13 bits do not fit the number field"
        );
        let echo = Cmd::app(7).unwrap();
        assert_eq!(echo.protocol().nibble(), 0xF);
        assert_eq!(echo.number(), 7);
        assert_eq!(echo.header_len(), Some(32));
        assert!(echo.flags().is_empty());
        // No command the era names sits in this protocol.
        for named in [Cmd::LNK_PAD, Cmd::LNK_PING, Cmd::LNK_ERROR, Cmd::DBG_SHELL] {
            assert_ne!(named.protocol(), Protocol::APP);
        }
    }

    #[test]
    fn constructor_builds_the_named_commands() {
        let n = MsgFlags::NONE;
        assert_eq!(Cmd::new(n, Protocol::LNK, 0x000, 1), Some(Cmd::LNK_PAD));
        assert_eq!(Cmd::new(n, Protocol::LNK, 0x001, 1), Some(Cmd::LNK_PING));
        assert_eq!(
            Cmd::new(n, Protocol::LNK, number::LNK_ERROR, 1),
            Some(Cmd::LNK_ERROR)
        );
        assert_eq!(Cmd::new(n, Protocol::DBG, 0x001, 1), Some(Cmd::DBG_SHELL));
        // V6: CREATE, LNK, number 0x012, size 2.
        let v6 = Cmd::new(MsgFlags::CREATE, Protocol::LNK, number::LNK_SPAN, 2).unwrap();
        assert_eq!(v6.raw(), 0x8000_1202);
        assert_eq!(Cmd::new(n, Protocol::LNK, 0x1000, 1), None);
    }

    #[test]
    fn accessors_take_the_fields_apart() {
        let c = Cmd::from_raw(0xA05A_BC07);
        assert_eq!(c.flags(), MsgFlags::CREATE | MsgFlags::REPLY);
        assert_eq!(c.protocol().nibble(), 5);
        assert_eq!(c.number(), 0xABC);
        assert_eq!(c.size_units(), 7);
        assert_eq!(c.header_len(), Some(224));
    }

    #[test]
    fn flags_have_the_spec_values() {
        // §3.4 table.
        let table = [
            (MsgFlags::CREATE, 0x8000_0000),
            (MsgFlags::DELETE, 0x4000_0000),
            (MsgFlags::REPLY, 0x2000_0000),
            (MsgFlags::ABORT, 0x1000_0000),
            (MsgFlags::AUXOOB, 0x0800_0000),
            (MsgFlags::FLAG2, 0x0400_0000),
            (MsgFlags::FLAG1, 0x0200_0000),
            (MsgFlags::FLAG0, 0x0100_0000),
            (MsgFlags::ALL, 0xFF00_0000),
        ];
        for (flag, bits) in table {
            assert_eq!(flag.bits(), bits);
        }
        assert_eq!(Cmd::PROTOS_MASK, 0x00F0_0000);
        assert_eq!(Cmd::CMDS_MASK, 0x000F_FF00);
        assert_eq!(Cmd::SIZE_MASK, 0x0000_00FF);
    }

    #[test]
    fn protocols_have_the_spec_values() {
        let table = [
            (Protocol::LNK, 0x0000_0000),
            (Protocol::DBG, 0x0010_0000),
            (Protocol::CAC, 0x0020_0000),
            (Protocol::QRM, 0x0030_0000),
            (Protocol::BLK, 0x0040_0000),
            (Protocol::VOP, 0x0050_0000),
        ];
        for (proto, bits) in table {
            assert_eq!(proto.cmd_bits(), bits);
        }
        assert_eq!(Protocol::new(16), None);
        assert_eq!(Protocol::new(15).map(Protocol::nibble), Some(15));
    }

    #[test]
    fn switch_mask_is_cmds_size_protos_and_reply() {
        let expected = Cmd::CMDS_MASK | Cmd::SIZE_MASK | Cmd::PROTOS_MASK | MsgFlags::REPLY.bits();
        assert_eq!(Cmd::SWITCH_MASK, expected);
        assert_eq!(Cmd::SWITCH_MASK, 0x20FF_FFFF);
    }

    #[test]
    fn dispatch_ignores_all_flags_but_reply() {
        let cmd = Cmd::DBG_SHELL;
        let create_delete = cmd.set(MsgFlags::CREATE | MsgFlags::DELETE | MsgFlags::ABORT);
        assert!(cmd.same_handler(create_delete));
        assert!(!cmd.same_handler(cmd.set(MsgFlags::REPLY)));
        // A different structure size is a different command.
        assert!(!cmd.same_handler(Cmd::from_raw(0x0010_0102)));
    }

    #[test]
    fn header_len_bounds() {
        assert_eq!(Cmd::from_raw(0x0000_0000).header_len(), None);
        assert_eq!(Cmd::from_raw(0x0000_0001).header_len(), Some(32));
        assert_eq!(Cmd::from_raw(0x0000_0040).header_len(), Some(2048));
        assert_eq!(Cmd::from_raw(0x0000_0041).header_len(), None);
        assert_eq!(Cmd::from_raw(0x0000_00FF).header_len(), None);
    }

    #[test]
    fn flag_edits_touch_only_flags() {
        let reply = Cmd::DBG_SHELL.set(MsgFlags::REPLY);
        assert_eq!(reply.raw(), 0x2010_0101);
        assert!(reply.is_reply());
        assert_eq!(reply.clear(MsgFlags::REPLY), Cmd::DBG_SHELL);
        assert_eq!(
            Cmd::from_raw(0xFF10_0101)
                .with_flags(MsgFlags::DELETE)
                .raw(),
            0x4010_0101
        );
        assert!(!MsgFlags::CREATE.contains(MsgFlags::CREATE | MsgFlags::DELETE));
        assert!(MsgFlags::CREATE.intersects(MsgFlags::CREATE | MsgFlags::DELETE));
        assert_eq!((MsgFlags::ALL).difference(MsgFlags::ALL), MsgFlags::NONE);
    }

    #[test]
    fn flag_set_algebra() {
        let cd = MsgFlags::CREATE | MsgFlags::DELETE;
        assert!(!MsgFlags::CREATE.intersects(MsgFlags::DELETE));
        assert_eq!(cd | MsgFlags::CREATE, cd, "union of overlapping flags");
        let mut f = MsgFlags::NONE;
        f |= MsgFlags::CREATE;
        assert_eq!(f, MsgFlags::CREATE);
        assert!(
            Cmd::DBG_SHELL
                .set(MsgFlags::REPLY)
                .set(MsgFlags::REPLY)
                .is_reply()
        );
        assert!(!Cmd::DBG_SHELL.is_reply());
    }

    #[test]
    fn formatting_names_everything() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{:?}", MsgFlags::CREATE | MsgFlags::REPLY),
            "CREATE|REPLY"
        );
        assert_eq!(format!("{}", MsgFlags::NONE), "-");
        assert_eq!(format!("{:?}", Protocol::DBG), "DBG");
        assert_eq!(format!("{:?}", Protocol::new(9).unwrap()), "PROTO9");
        assert_eq!(format!("{:?}", Cmd::DBG_SHELL), "Cmd(0x00100101 DBG_SHELL)");
        assert_eq!(
            format!("{}", Cmd::from_raw(0x8000_1202)),
            "LNK.0x012/2|CREATE"
        );
        let names = [
            (Protocol::LNK, "LNK"),
            (Protocol::DBG, "DBG"),
            (Protocol::CAC, "CAC"),
            (Protocol::QRM, "QRM"),
            (Protocol::BLK, "BLK"),
            (Protocol::VOP, "VOP"),
        ];
        for (p, name) in names {
            assert_eq!(p.name(), Some(name));
        }
        let cmds = [
            (Cmd::LNK_PAD, "LNK_PAD"),
            (Cmd::LNK_PING, "LNK_PING"),
            (Cmd::LNK_ERROR, "LNK_ERROR"),
            (Cmd::DBG_SHELL, "DBG_SHELL"),
        ];
        for (c, name) in cmds {
            assert_eq!(c.name(), Some(name));
        }
    }

    #[test]
    fn names_ignore_flags() {
        assert_eq!(Cmd::from_raw(0x2010_0101).name(), Some("DBG_SHELL"));
        assert_eq!(Cmd::from_raw(0x0000_1202).name(), None);
        assert_eq!(Protocol::new(9).unwrap().name(), None);
    }
}
