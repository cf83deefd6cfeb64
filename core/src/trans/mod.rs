//! The transaction table (§8): which transactions are open on one connection, and in which
//! directions.
//!
//! A **transaction** is a conversation started by a message with CREATE and kept open until
//! both ends have sent DELETE (§8.1). Its elements travel in two directions: the
//! *command* direction (from the side that sent the CREATE) and the *reply* direction
//! (REPLY set, back to it). Either end may start transactions, so a msgid alone does not
//! name one: the table keys each by [`TransKey`] = ([`Side`], msgid), where
//! [`Side::Local`] means *we* sent the CREATE and [`Side::Remote`] means the peer did.
//! Which side a message belongs to follows from two facts the caller already knows:
//!
//! | Message | REPLY clear | REPLY set |
//! |---|---|---|
//! | we send it ([`TransTable::on_send`]) | command element of a Local transaction | reply element of a Remote transaction |
//! | we receive it ([`TransTable::on_receive`]) | command element of a Remote transaction | reply element of a Local transaction |
//!
//! A message with none of CREATE, DELETE and ABORT is **one-way**: it touches no state and
//! its msgid is ignored ([`TransUpdate::OneWay`]). That is how the seed era's `DBG_SHELL`
//! works — a flag-less command answered by flag-less `REPLY`s (§4.3) — so a seed-era
//! session never opens an entry here. It also means that a mid-stream element of an open
//! transaction (no CREATE, no DELETE, no ABORT) looks one-way too: the table neither
//! checks nor reports it, and the connection routes it by its msgid ([`TransTable::get`]).
//! The only tracked mid-stream element is a lone ABORT ([`TransUpdate::Continued`]).
//!
//! ## Why a table at all, when the seed era keeps none
//!
//! The 2012 C code attaches no state to any message (§8.2, §11 T1): it accepts whatever
//! flags arrive. This module implements the *intended* semantics of §8.1 so that the
//! connection can refuse a reply to a transaction that does not exist, stop a handler
//! when the peer aborts, and, when the link dies, tell every open transaction that it
//! ended (§10 item 7, [`TransTable::lose_link`]). The rules:
//!
//! * **Command direction.** CREATE opens a new entry ([`TransError::AlreadyOpen`] if the
//!   key exists); a later element needs the entry and an open command direction
//!   ([`TransError::UnknownTransaction`], [`TransError::DirectionClosed`]); DELETE closes
//!   the direction. CREATE|DELETE is a single-element command.
//! * **Reply direction.** The entry must exist; the first reply element carries CREATE
//!   ([`TransError::ReplyNotOpened`]), a second CREATE is [`TransError::AlreadyOpen`],
//!   elements after the reply DELETE are [`TransError::DirectionClosed`].
//! * An entry is removed once **both** directions have sent DELETE.
//! * **ABORT** with CREATE is an ordinary open (a non-blocking request, still answered);
//!   with DELETE it closes the direction like DELETE; alone it closes nothing. In every
//!   case the transaction's abort bit is set and stays set.
//! * **Late aborts.** §8.1 makes relays send ABORT|DELETE for every open transaction when a
//!   link dies, even after DELETE, and lets copies race a full close. So a *received*
//!   message carrying ABORT|DELETE is never a protocol error: if the rules above would
//!   refuse it (unknown key, direction not opened or already closed, a repeated CREATE),
//!   it is discarded as [`TransUpdate::LateAbortDiscarded`] and the table is untouched.
//!   Only [`TransError::TableFull`] (a genuine new aborted command that does not fit)
//!   is still reported. Messages *we* send get no such leniency: sending one is our bug.
//!
//! ## The checkpoint rule
//!
//! Every call that returns `Err` leaves the table exactly as it was. The code makes this
//! structural: a step is first *planned* from `&self` (which cannot change anything) and
//! only then committed by an infallible write. Every error, including
//! [`TransError::TableFull`], is non-fatal: the caller decides what to tell the peer.
//!
//! ## Storage and cost
//!
//! The table is a plain array of `N` optional entries inside the value (`N` is any
//! number, including 0; no allocation, no `heapless`, no power-of-two rule); a slot
//! takes 12 bytes. Each [`TransTable::on_send`] / [`TransTable::on_receive`] /
//! [`TransTable::get`] scans the array linearly, O(`N`), which is the right trade for the
//! few dozen transactions a link of this era keeps open; a large `N` would want a hashed
//! index. Slots are found and cleared through iterators, so the table has no indexing and
//! no panic path.
//!
//! ## Building replies
//!
//! Three pure helpers turn a command's `cmd` into a reply's:
//!
//! * [`streaming_reply_cmd`] and [`final_reply_cmd`] reproduce the seed-era C helpers with
//!   the persist record absent (§8.2, §11 T1). Use them when talking to a 2012 peer:
//!   every reply line of a `DBG_SHELL` is a streaming reply, the closing in-place reply is
//!   the final one. They fit two command shapes: flag-less (everything stays one-way) and
//!   single-element CREATE|DELETE (the final reply is REPLY|CREATE|DELETE, which closes
//!   the transaction here).
//! * [`transaction_reply_cmd`] implements the intended semantics of §8.1 for a
//!   transaction tracked in this table: the first reply carries CREATE, the last DELETE.
//!   Use it for any transaction opened with CREATE that is not a seed-era
//!   single-element command, in particular long-lived ones.

use core::fmt;
use core::iter::FusedIterator;

use crate::wire::{Cmd, MsgFlags};

mod dmsg;

pub use dmsg::{
    DmsgKey, DmsgLost, DmsgSendError, DmsgState, DmsgTransError, DmsgTransactions, Received,
    SendVerdict, Stamp,
};

/// Wire value of `hdr.error` meaning "the link to the peer was lost" (`LOSTLINK`).
///
/// Not part of the seed era: §10 item 7 lists it among the later global errors (0x20
/// NOSUPP, 0x21 LOSTLINK, 0x22 IO, …). It is never sent by a seed-era peer; this crate uses
/// it for the aborts a connection reports locally for each transaction that
/// [`TransTable::lose_link`] drains.
pub const MSG_ERR_LOSTLINK: u16 = 0x21;

/// Which end of the link started a transaction (sent its CREATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// We sent the CREATE: the command is ours and replies come back to us.
    Local,
    /// The peer sent the CREATE: we receive the command and send the replies.
    Remote,
}

impl Side {
    /// The side a message belongs to, from whether we send it and its REPLY flag (the
    /// table in the module docs).
    const fn of(sending: bool, reply: bool) -> Self {
        if sending == reply {
            Self::Remote
        } else {
            Self::Local
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Remote => "remote",
        })
    }
}

/// The direction an element travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the side that sent the CREATE (REPLY clear).
    Command,
    /// Back towards it (REPLY set).
    Reply,
}

impl Direction {
    /// The direction of a message: [`Direction::Reply`] if REPLY is set.
    #[must_use]
    pub const fn of(cmd: Cmd) -> Self {
        if cmd.is_reply() {
            Self::Reply
        } else {
            Self::Command
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Command => "command",
            Self::Reply => "reply",
        })
    }
}

/// What names a transaction on one connection: who started it, and its msgid.
///
/// msgids are chosen by the side that sends the CREATE, so the same number may name one
/// Local and one Remote transaction at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransKey {
    /// Who sent the CREATE.
    pub side: Side,
    /// The `msgid` header field of every element.
    pub msgid: u32,
}

impl TransKey {
    /// The key of a transaction we started.
    #[must_use]
    pub const fn local(msgid: u32) -> Self {
        Self {
            side: Side::Local,
            msgid,
        }
    }

    /// The key of a transaction the peer started.
    #[must_use]
    pub const fn remote(msgid: u32) -> Self {
        Self {
            side: Side::Remote,
            msgid,
        }
    }
}

/// `local#5`, `remote#0x10`: side and msgid.
impl fmt::Display for TransKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:#x}", self.side, self.msgid)
    }
}

/// Where one direction of a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirState {
    /// No element with CREATE has travelled this way yet (only the reply direction of a
    /// tracked transaction can be here).
    NotCreated,
    /// CREATE has been seen, DELETE not yet: more elements may follow.
    Open,
    /// DELETE has been seen: nothing more may travel this way.
    Closed,
}

impl DirState {
    /// True once CREATE has travelled this way (open or closed since).
    #[must_use]
    pub const fn is_created(self) -> bool {
        !matches!(self, Self::NotCreated)
    }

    /// True if elements may still travel this way without CREATE.
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Open)
    }
}

/// A snapshot of one open transaction: both directions and the abort bit.
///
/// The table never holds a state whose two directions are both [`DirState::Closed`]: such
/// a transaction is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransState {
    command: DirState,
    reply: DirState,
    aborted: bool,
}

impl TransState {
    /// The state before the first element: nothing created, not aborted.
    const NEW: Self = Self {
        command: DirState::NotCreated,
        reply: DirState::NotCreated,
        aborted: false,
    };

    /// The command direction.
    #[must_use]
    pub const fn command(self) -> DirState {
        self.command
    }

    /// The reply direction.
    #[must_use]
    pub const fn reply(self) -> DirState {
        self.reply
    }

    /// The state of `direction`.
    #[must_use]
    pub const fn direction(self, direction: Direction) -> DirState {
        match direction {
            Direction::Command => self.command,
            Direction::Reply => self.reply,
        }
    }

    /// True once any accepted element of the transaction carried ABORT (sticky).
    #[must_use]
    pub const fn is_aborted(self) -> bool {
        self.aborted
    }

    const fn with_direction(self, direction: Direction, state: DirState) -> Self {
        match direction {
            Direction::Command => Self {
                command: state,
                ..self
            },
            Direction::Reply => Self {
                reply: state,
                ..self
            },
        }
    }

    const fn is_finished(self) -> bool {
        matches!(self.command, DirState::Closed) && matches!(self.reply, DirState::Closed)
    }
}

/// One accepted element of a tracked transaction, as reported in a [`TransUpdate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    /// The transaction it belongs to.
    pub key: TransKey,
    /// The direction it travelled in.
    pub direction: Direction,
    /// It carried CREATE: it was the first element of its direction. Together with
    /// [`TransUpdate::DirectionClosed`] or [`TransUpdate::Closed`] this marks a
    /// single-element direction (CREATE|DELETE).
    pub created: bool,
    /// The transaction's abort bit after this element (set by this or an earlier ABORT).
    pub aborted: bool,
}

/// What an accepted message did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransUpdate {
    /// None of CREATE, DELETE, ABORT: a one-way message, no state touched.
    OneWay,
    /// CREATE without DELETE: the element's direction is now open (for the command
    /// direction, a new entry).
    Opened(Element),
    /// ABORT without CREATE or DELETE: a further element of an open direction. (Elements
    /// with no transaction flag at all are [`TransUpdate::OneWay`], see the module docs.)
    Continued(Element),
    /// DELETE (alone or with CREATE) closed the element's direction; the other direction
    /// is still open or not yet created, so the entry stays.
    DirectionClosed(Element),
    /// DELETE closed the last open direction: the entry is gone and its msgid is free.
    Closed(Element),
    /// A received ABORT|DELETE that matched nothing it could close: a copy racing a close
    /// (§8.1). Silently dropped; the table is unchanged.
    LateAbortDiscarded(TransKey),
}

impl TransUpdate {
    /// The accepted element, unless the message was one-way or discarded.
    #[must_use]
    pub const fn element(self) -> Option<Element> {
        match self {
            Self::Opened(e) | Self::Continued(e) | Self::DirectionClosed(e) | Self::Closed(e) => {
                Some(e)
            }
            Self::OneWay | Self::LateAbortDiscarded(_) => None,
        }
    }

    /// The transaction concerned, unless the message was one-way.
    #[must_use]
    pub const fn key(self) -> Option<TransKey> {
        match self {
            Self::LateAbortDiscarded(key) => Some(key),
            _ => match self.element() {
                Some(e) => Some(e.key),
                None => None,
            },
        }
    }

    /// True if the transaction's abort bit is set after this message. False for one-way
    /// messages and for discarded late aborts (no state holds a bit for them).
    #[must_use]
    pub const fn is_aborted(self) -> bool {
        match self.element() {
            Some(e) => e.aborted,
            None => false,
        }
    }
}

/// Why a message does not fit the table. The table is unchanged (the checkpoint rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransError {
    /// CREATE for a direction that has already been created (in the command direction:
    /// the key is already in the table).
    AlreadyOpen {
        /// The transaction.
        key: TransKey,
        /// The direction of the refused element.
        direction: Direction,
    },
    /// An element without CREATE (or a reply) for a transaction that is not open.
    UnknownTransaction {
        /// The transaction that was looked for.
        key: TransKey,
        /// The direction of the refused element.
        direction: Direction,
    },
    /// An element after the DELETE of its direction.
    DirectionClosed {
        /// The transaction.
        key: TransKey,
        /// The closed direction.
        direction: Direction,
    },
    /// A reply element without CREATE before any reply element with CREATE.
    ReplyNotOpened {
        /// The transaction.
        key: TransKey,
    },
    /// A CREATE would open a new entry, but all `capacity` slots are in use.
    TableFull {
        /// The table's capacity (`N`).
        capacity: usize,
    },
}

impl TransError {
    /// The transaction concerned, if the error names one.
    #[must_use]
    pub const fn key(&self) -> Option<TransKey> {
        match *self {
            Self::AlreadyOpen { key, .. }
            | Self::UnknownTransaction { key, .. }
            | Self::DirectionClosed { key, .. }
            | Self::ReplyNotOpened { key } => Some(key),
            Self::TableFull { .. } => None,
        }
    }
}

impl fmt::Display for TransError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AlreadyOpen { key, direction } => {
                write!(
                    f,
                    "transaction {key}: {direction} direction already created"
                )
            }
            Self::UnknownTransaction { key, direction } => {
                write!(f, "transaction {key} is not open ({direction} element)")
            }
            Self::DirectionClosed { key, direction } => {
                write!(f, "transaction {key}: {direction} direction already closed")
            }
            Self::ReplyNotOpened { key } => {
                write!(f, "transaction {key}: first reply element lacks CREATE")
            }
            Self::TableFull { capacity } => {
                write!(f, "transaction table full ({capacity} open)")
            }
        }
    }
}

impl core::error::Error for TransError {}

/// One slot's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: TransKey,
    state: TransState,
}

/// A checked step, computed without touching the table; committing it cannot fail.
struct Plan {
    /// Index of the slot to write (the entry's own, or a free one for a new entry).
    slot: usize,
    /// What the slot holds afterwards (`None`: the transaction finished).
    entry: Option<Entry>,
    /// The slot was free before.
    new: bool,
    update: TransUpdate,
}

/// The open transactions of one connection, at most `N` of them, stored inline.
///
/// Feed it every message that carries CREATE, DELETE or ABORT (feeding one-way messages
/// too is harmless): [`TransTable::on_send`] before a message is queued for the peer,
/// [`TransTable::on_receive`] after one has been decoded. Send nothing that `on_send`
/// refuses; answer or drop what `on_receive` refuses. When the link dies, call
/// [`TransTable::lose_link`].
///
/// Costs are O(`N`) per call (see the module docs).
#[derive(Clone)]
pub struct TransTable<const N: usize> {
    slots: [Option<Entry>; N],
    len: usize,
}

impl<const N: usize> TransTable<N> {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: [None; N],
            len: 0,
        }
    }

    /// Number of open transactions.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if no transaction is open.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most transactions that can be open at once (`N`).
    #[must_use]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The state of an open transaction, or `None` if `key` is not open.
    #[must_use]
    pub fn get(&self, key: TransKey) -> Option<TransState> {
        self.find(key).map(|(_, state)| state)
    }

    /// Every open transaction, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TransKey, TransState)> + '_ {
        self.slots.iter().flatten().map(|e| (e.key, e.state))
    }

    /// Records a message we are about to send, before it is queued.
    ///
    /// Without REPLY it is a command element of a [`Side::Local`] transaction (we pick its
    /// msgid, see [`TransTable::next_msgid`]); with REPLY, a reply element of a
    /// [`Side::Remote`] one.
    ///
    /// # Errors
    ///
    /// Any [`TransError`] when the message breaks the rules of the module docs; the table
    /// is unchanged and the message must not be sent.
    pub fn on_send(&mut self, cmd: Cmd, msgid: u32) -> Result<TransUpdate, TransError> {
        self.apply(Side::of(true, cmd.is_reply()), cmd, msgid)
    }

    /// Records our ABORT|DELETE (`cmd`) of the [`Side::Local`] transaction `msgid`. §8.1
    /// allows it even after our DELETE was sent, while replies are still coming: then the
    /// table is unchanged (`Ok(None)`) and the transaction ends when the peer's reply
    /// direction closes. Otherwise it is [`on_send`](Self::on_send).
    ///
    /// # Errors
    /// As [`on_send`](Self::on_send); the table is unchanged then.
    pub fn on_abort(&mut self, cmd: Cmd, msgid: u32) -> Result<Option<TransUpdate>, TransError> {
        let already_deleted = self
            .get(TransKey::local(msgid))
            .is_some_and(|state| !state.command().is_open());
        if already_deleted {
            return Ok(None);
        }
        self.on_send(cmd, msgid).map(Some)
    }

    /// Records a message received from the peer, after it has been decoded.
    ///
    /// Without REPLY it is a command element of a [`Side::Remote`] transaction; with
    /// REPLY, a reply element of a [`Side::Local`] one. A received ABORT|DELETE that
    /// cannot apply is [`TransUpdate::LateAbortDiscarded`], not an error.
    ///
    /// # Errors
    ///
    /// Any [`TransError`] when the message breaks the rules of the module docs; the table
    /// is unchanged. A refused command may be answered with an error reply, a refused
    /// reply is dropped (§11 T4).
    pub fn on_receive(&mut self, cmd: Cmd, msgid: u32) -> Result<TransUpdate, TransError> {
        self.apply(Side::of(false, cmd.is_reply()), cmd, msgid)
    }

    /// Removes every open transaction, yielding each with its last state, so the
    /// connection can end each one with a local ABORT|DELETE event carrying
    /// [`MSG_ERR_LOSTLINK`] (§10 item 7; see [`LostTransaction::abort_flags`]).
    ///
    /// The table is empty once the iterator is dropped, even if it was not run to the
    /// end. Order is unspecified.
    pub fn lose_link(&mut self) -> LoseLink<'_, N> {
        LoseLink { table: self }
    }

    /// Drops an open transaction without a message: for the connection's own keepalive
    /// ping, which a peer may answer without closing it. True if it was open.
    pub(crate) fn forget(&mut self, key: TransKey) -> bool {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|slot| slot.is_some_and(|entry| entry.key == key))
        else {
            return false;
        };
        *slot = None;
        self.len = self.len.saturating_sub(1);
        true
    }

    /// Removes one open transaction (the first in slot order) as lost, for a caller that
    /// reports them one at a time; `None` once the table is empty.
    pub fn take_lost(&mut self) -> Option<LostTransaction> {
        let entry = self.slots.iter_mut().find_map(Option::take)?;
        self.len = self.len.saturating_sub(1);
        Some(LostTransaction {
            key: entry.key,
            state: entry.state,
        })
    }

    /// A msgid for a new Local transaction: nonzero, and not open on the Local side.
    ///
    /// Strategy: the first free value counting up from `after + 1`, wrapping past
    /// `u32::MAX` to 1 (0 is left to one-way messages, §8.1). Pass the msgid used last,
    /// so ids are handed out in sequence and a just-closed id is reused only after a full
    /// cycle, which keeps late ABORT|DELETE copies of old transactions from hitting new
    /// ones. At most `len() + 1` candidates are tried (at most `len()` are taken), each an
    /// O(`N`) scan, so the call always terminates.
    ///
    /// Returns `None` if the table is full: a CREATE could not be recorded anyway.
    #[must_use]
    pub fn next_msgid(&self, after: u32) -> Option<u32> {
        if self.len >= N {
            return None;
        }
        let mut candidate = after;
        for _ in 0..=self.len {
            candidate = match candidate.wrapping_add(1) {
                0 => 1,
                c => c,
            };
            if self.find(TransKey::local(candidate)).is_none() {
                return Some(candidate);
            }
        }
        None
    }

    /// The one rule implementation behind [`TransTable::on_send`] and
    /// [`TransTable::on_receive`]: the caller has resolved the side.
    fn apply(&mut self, side: Side, cmd: Cmd, msgid: u32) -> Result<TransUpdate, TransError> {
        let flags = cmd.flags();
        let tracked = MsgFlags::CREATE
            .union(MsgFlags::DELETE)
            .union(MsgFlags::ABORT);
        if !flags.intersects(tracked) {
            return Ok(TransUpdate::OneWay);
        }
        let direction = Direction::of(cmd);
        let key = TransKey { side, msgid };
        // The peer sends Remote commands and Local replies.
        let incoming = matches!(
            (side, direction),
            (Side::Remote, Direction::Command) | (Side::Local, Direction::Reply)
        );
        match self.plan(key, direction, flags) {
            Ok(plan) => {
                self.commit(&plan);
                Ok(plan.update)
            }
            Err(TransError::TableFull { capacity }) => Err(TransError::TableFull { capacity }),
            Err(_) if incoming && flags.contains(MsgFlags::ABORT.union(MsgFlags::DELETE)) => {
                Ok(TransUpdate::LateAbortDiscarded(key))
            }
            Err(e) => Err(e),
        }
    }

    /// Checks one element against the rules and computes its effect. Takes `&self`: a
    /// refused element cannot have changed anything.
    fn plan(
        &self,
        key: TransKey,
        direction: Direction,
        flags: MsgFlags,
    ) -> Result<Plan, TransError> {
        let create = flags.contains(MsgFlags::CREATE);
        let delete = flags.contains(MsgFlags::DELETE);
        let abort = flags.contains(MsgFlags::ABORT);

        let (slot, before, new) = match self.find(key) {
            Some((slot, state)) => (slot, state, false),
            None if create && direction == Direction::Command => {
                let slot = self
                    .free_slot()
                    .ok_or(TransError::TableFull { capacity: N })?;
                (slot, TransState::NEW, true)
            }
            None => return Err(TransError::UnknownTransaction { key, direction }),
        };

        let after_dir = match (before.direction(direction), create) {
            (DirState::NotCreated, true) | (DirState::Open, false) => {
                if delete {
                    DirState::Closed
                } else {
                    DirState::Open
                }
            }
            (DirState::Open | DirState::Closed, true) => {
                return Err(TransError::AlreadyOpen { key, direction });
            }
            (DirState::Closed, false) => {
                return Err(TransError::DirectionClosed { key, direction });
            }
            // Only the reply direction of an existing entry can be NotCreated: entries
            // are born by a command CREATE.
            (DirState::NotCreated, false) => return Err(TransError::ReplyNotOpened { key }),
        };

        let mut after = before.with_direction(direction, after_dir);
        after.aborted |= abort;
        let element = Element {
            key,
            direction,
            created: create,
            aborted: after.aborted,
        };
        let (entry, update) = if after.is_finished() {
            (None, TransUpdate::Closed(element))
        } else {
            let update = match after_dir {
                DirState::Closed => TransUpdate::DirectionClosed(element),
                _ if create => TransUpdate::Opened(element),
                _ => TransUpdate::Continued(element),
            };
            (Some(Entry { key, state: after }), update)
        };
        Ok(Plan {
            slot,
            entry,
            new,
            update,
        })
    }

    /// Writes a planned step. Cannot fail: every check happened in [`Self::plan`].
    fn commit(&mut self, plan: &Plan) {
        if let Some(slot) = self.slots.get_mut(plan.slot) {
            *slot = plan.entry;
            match (plan.new, plan.entry.is_some()) {
                // Saturating: the count is exact (tests check it), and this keeps the
                // table free of overflow panics in builds that check arithmetic.
                (true, true) => self.len = self.len.saturating_add(1),
                (false, false) => self.len = self.len.saturating_sub(1),
                // A new entry always has its reply direction to go, so it never finishes
                // in its first step; an update of an existing entry keeps the count.
                _ => {}
            }
        }
    }

    /// The slot index and state of `key`.
    fn find(&self, key: TransKey) -> Option<(usize, TransState)> {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(i, slot)| match slot {
                Some(e) if e.key == key => Some((i, e.state)),
                _ => None,
            })
    }

    /// The index of a free slot.
    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }
}

impl<const N: usize> Default for TransTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The open transactions and their states (not the free slots).
impl<const N: usize> fmt::Debug for TransTable<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A transaction removed by [`TransTable::lose_link`], with its state at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LostTransaction {
    /// The transaction.
    pub key: TransKey,
    /// Its last state.
    pub state: TransState,
}

impl LostTransaction {
    /// The flags of the local event that ends this transaction, as if the peer had sent
    /// it (§10 item 7, "plus CREATE/REPLY as needed"): ABORT|DELETE; plus REPLY for a
    /// Local transaction (its answers come back as replies); plus CREATE if that
    /// direction had not been created yet.
    #[must_use]
    pub const fn abort_flags(&self) -> MsgFlags {
        let base = MsgFlags::ABORT.union(MsgFlags::DELETE);
        match self.key.side {
            Side::Remote => base,
            Side::Local => {
                let reply = base.union(MsgFlags::REPLY);
                if self.state.reply.is_created() {
                    reply
                } else {
                    reply.union(MsgFlags::CREATE)
                }
            }
        }
    }
}

/// The draining iterator of [`TransTable::lose_link`]. Dropping it empties the table.
#[derive(Debug)]
pub struct LoseLink<'a, const N: usize> {
    table: &'a mut TransTable<N>,
}

impl<const N: usize> Iterator for LoseLink<'_, N> {
    type Item = LostTransaction;

    fn next(&mut self) -> Option<LostTransaction> {
        self.table.take_lost()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.table.len, Some(self.table.len))
    }
}

impl<const N: usize> ExactSizeIterator for LoseLink<'_, N> {}

impl<const N: usize> FusedIterator for LoseLink<'_, N> {}

impl<const N: usize> Drop for LoseLink<'_, N> {
    fn drop(&mut self) {
        self.table.slots = [None; N];
        self.table.len = 0;
    }
}

/// The `cmd` of a streaming reply, seed-era rules (`allocreply` with no persist record,
/// §8.2): the command's `cmd` with REPLY set and CREATE and DELETE cleared.
///
/// Use it, with [`final_reply_cmd`], when talking to a 2012 peer — e.g. for each output
/// line of a `DBG_SHELL` (0x0010_0101 → 0x2010_0101). A streaming reply is one-way to the
/// table unless the command carried ABORT.
#[must_use]
pub const fn streaming_reply_cmd(cmd: Cmd) -> Cmd {
    cmd.set(MsgFlags::REPLY)
        .clear(MsgFlags::CREATE.union(MsgFlags::DELETE))
}

/// The `cmd` of a final in-place reply, seed-era rules (`replymsg` with no persist record,
/// §8.2): the command's `cmd`, all its flag bits kept, plus REPLY.
///
/// A CREATE|DELETE command gets REPLY|CREATE|DELETE (which closes it in the table); the
/// flag-less `DBG_SHELL` gets plain REPLY. For a CREATE command without DELETE the result
/// (REPLY|CREATE) leaves the reply direction open, as the C code would: use
/// [`transaction_reply_cmd`] for such transactions.
#[must_use]
pub const fn final_reply_cmd(cmd: Cmd) -> Cmd {
    cmd.set(MsgFlags::REPLY)
}

/// The `cmd` of the next reply of a tracked transaction, intended rules (§8.1): the
/// command's `cmd` with REPLY set and CREATE, DELETE and ABORT cleared; then CREATE if no
/// reply has been sent yet, DELETE if `last`.
///
/// `state` is the [`Side::Remote`] transaction's state from [`TransTable::get`]. Returns
/// `None` if its reply direction is already closed. Add ABORT yourself when the reply
/// should carry it.
#[must_use]
pub const fn transaction_reply_cmd(cmd: Cmd, state: TransState, last: bool) -> Option<Cmd> {
    let base = cmd.set(MsgFlags::REPLY).clear(
        MsgFlags::CREATE
            .union(MsgFlags::DELETE)
            .union(MsgFlags::ABORT),
    );
    let base = match state.reply {
        DirState::NotCreated => base.set(MsgFlags::CREATE),
        DirState::Open => base,
        DirState::Closed => return None,
    };
    Some(if last {
        base.set(MsgFlags::DELETE)
    } else {
        base
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: MsgFlags = MsgFlags::CREATE;
    const D: MsgFlags = MsgFlags::DELETE;
    const R: MsgFlags = MsgFlags::REPLY;
    const A: MsgFlags = MsgFlags::ABORT;
    const NONE: MsgFlags = MsgFlags::NONE;

    /// A `DBG_SHELL` with exactly these flags.
    fn cmd(flags: MsgFlags) -> Cmd {
        Cmd::DBG_SHELL.with_flags(flags)
    }

    fn f(a: MsgFlags, b: MsgFlags) -> MsgFlags {
        a.union(b)
    }

    fn f3(a: MsgFlags, b: MsgFlags, c: MsgFlags) -> MsgFlags {
        a.union(b).union(c)
    }

    #[test]
    fn an_open_transaction_is_listed_and_not_aborted_until_it_is() {
        extern crate std;
        use std::format;
        let mut t = TransTable::<4>::new();
        assert!(t.is_empty());
        t.on_send(cmd(C), 5).unwrap();
        assert!(!t.is_empty());
        assert!(!t.get(TransKey::local(5)).unwrap().is_aborted());
        assert!(format!("{t:?}").contains("msgid: 5"), "{t:?}");
        t.on_send(cmd(A), 5).unwrap();
        assert!(t.get(TransKey::local(5)).unwrap().is_aborted());
        assert_eq!(
            format!("{} {}", Direction::Command, Direction::Reply),
            "command reply"
        );
    }

    #[test]
    fn our_abort_after_our_delete_is_allowed_and_leaves_the_table_as_it_was() {
        let mut t = TransTable::<4>::new();
        t.on_send(cmd(C), 7).unwrap();
        // Still open: the abort is an ordinary command element.
        assert!(t.on_abort(cmd(f(A, D)), 7).unwrap().is_some());
        assert!(t.get(TransKey::local(7)).unwrap().is_aborted());

        let mut t = TransTable::<4>::new();
        t.on_send(cmd(f(C, D)), 8).unwrap();
        let before = t.get(TransKey::local(8));
        // Our DELETE went out, replies still come: allowed, and the table stays as it was.
        assert_eq!(t.on_abort(cmd(f(A, D)), 8), Ok(None));
        assert_eq!(t.get(TransKey::local(8)), before);
        // Plain on_send still refuses a second DELETE.
        assert!(t.on_send(cmd(f(A, D)), 8).is_err());
    }

    /// Exact equality, slot layout included: what the checkpoint rule promises.
    fn same<const N: usize>(a: &TransTable<N>, b: &TransTable<N>) -> bool {
        a.slots == b.slots && a.len == b.len
    }

    /// The table is consistent: `len` counts the used slots, keys are unique, no entry
    /// is finished, and every entry's command direction was created.
    fn check_invariants<const N: usize>(t: &TransTable<N>) {
        let used: usize = t.slots.iter().flatten().count();
        assert_eq!(used, t.len());
        assert!(t.len() <= N);
        for (i, a) in t.slots.iter().enumerate() {
            let Some(a) = a else { continue };
            assert!(!a.state.is_finished());
            assert!(a.state.command.is_created());
            for b in t.slots.iter().skip(i + 1).flatten() {
                assert_ne!(a.key, b.key);
            }
        }
    }

    /// Runs `step` on a copy of `t`, asserts it fails with `want` and changed nothing.
    fn assert_refused<const N: usize>(
        t: &mut TransTable<N>,
        step: impl FnOnce(&mut TransTable<N>) -> Result<TransUpdate, TransError>,
        want: TransError,
    ) {
        let before = t.clone();
        assert_eq!(step(t), Err(want));
        assert!(same(t, &before), "table changed on {want:?}");
    }

    fn el(key: TransKey, direction: Direction, created: bool, aborted: bool) -> Element {
        Element {
            key,
            direction,
            created,
            aborted,
        }
    }

    #[test]
    fn new_is_const_and_empty() {
        const T: TransTable<4> = TransTable::new();
        assert!(T.is_empty());
        assert_eq!(T.len(), 0);
        assert_eq!(T.capacity(), 4);
        assert!(TransTable::<0>::default().is_empty());
    }

    #[test]
    fn a_slot_takes_12_bytes() {
        assert_eq!(size_of::<Option<Entry>>(), 12);
    }

    #[test]
    fn lostlink_has_the_later_value() {
        assert_eq!(MSG_ERR_LOSTLINK, 0x21);
    }

    #[test]
    fn one_way_messages_touch_nothing() {
        let mut t = TransTable::<2>::new();
        for flags in [NONE, R, MsgFlags::AUXOOB, f(R, MsgFlags::FLAG0)] {
            for msgid in [0, 7] {
                assert_eq!(t.on_send(cmd(flags), msgid), Ok(TransUpdate::OneWay));
                assert_eq!(t.on_receive(cmd(flags), msgid), Ok(TransUpdate::OneWay));
            }
        }
        assert!(t.is_empty());
        let u = TransUpdate::OneWay;
        assert_eq!((u.element(), u.key(), u.is_aborted()), (None, None, false));
    }

    #[test]
    fn seed_dbg_shell_exchange_is_all_one_way() {
        let mut t = TransTable::<1>::new();
        let command = Cmd::DBG_SHELL;
        assert_eq!(t.on_receive(command, 0), Ok(TransUpdate::OneWay));
        let line = streaming_reply_cmd(command);
        assert_eq!(line.raw(), 0x2010_0101);
        assert_eq!(t.on_send(line, 0), Ok(TransUpdate::OneWay));
        let last = final_reply_cmd(command);
        assert_eq!(last.raw(), 0x2010_0101);
        assert_eq!(t.on_send(last, 0), Ok(TransUpdate::OneWay));
        assert!(t.is_empty());
    }

    #[test]
    fn sides_follow_send_receive_and_reply() {
        let mut t = TransTable::<4>::new();
        // We send a command: Local.
        assert_eq!(
            t.on_send(cmd(C), 1),
            Ok(TransUpdate::Opened(el(
                TransKey::local(1),
                Direction::Command,
                true,
                false
            )))
        );
        // We receive a command: Remote, same msgid is a different transaction.
        assert_eq!(
            t.on_receive(cmd(C), 1),
            Ok(TransUpdate::Opened(el(
                TransKey::remote(1),
                Direction::Command,
                true,
                false
            )))
        );
        // Received reply: Local.
        assert_eq!(
            t.on_receive(cmd(f(R, C)), 1),
            Ok(TransUpdate::Opened(el(
                TransKey::local(1),
                Direction::Reply,
                true,
                false
            )))
        );
        // Sent reply: Remote.
        assert_eq!(
            t.on_send(cmd(f(R, C)), 1),
            Ok(TransUpdate::Opened(el(
                TransKey::remote(1),
                Direction::Reply,
                true,
                false
            )))
        );
        assert_eq!(t.len(), 2);
        check_invariants(&t);
    }

    #[test]
    fn single_element_command_answered_by_reply_create_delete() {
        // We command, the peer answers.
        let mut t = TransTable::<2>::new();
        let command = cmd(f(C, D));
        let k = TransKey::local(5);
        assert_eq!(
            t.on_send(command, 5),
            Ok(TransUpdate::DirectionClosed(el(
                k,
                Direction::Command,
                true,
                false
            )))
        );
        let state = t.get(k).unwrap();
        assert_eq!(state.command(), DirState::Closed);
        assert_eq!(state.reply(), DirState::NotCreated);
        let reply = final_reply_cmd(command);
        assert_eq!(reply.flags(), f3(R, C, D));
        assert_eq!(
            t.on_receive(reply, 5),
            Ok(TransUpdate::Closed(el(k, Direction::Reply, true, false)))
        );
        assert!(t.is_empty());

        // The peer commands, we answer.
        let k = TransKey::remote(9);
        assert!(matches!(
            t.on_receive(command, 9),
            Ok(TransUpdate::DirectionClosed(_))
        ));
        let reply = transaction_reply_cmd(command, t.get(k).unwrap(), true).unwrap();
        assert_eq!(reply, final_reply_cmd(command));
        assert_eq!(
            t.on_send(reply, 9),
            Ok(TransUpdate::Closed(el(k, Direction::Reply, true, false)))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn streaming_in_both_directions() {
        // CREATE, elements, DELETE each way. Mid-stream elements carry no transaction
        // flag, so by §8.1 they are one-way to the table: it neither checks nor changes
        // anything for them (the connection routes them by `get`).
        let mut t = TransTable::<2>::new();
        let k = TransKey::local(3);
        assert_eq!(
            t.on_send(cmd(C), 3),
            Ok(TransUpdate::Opened(el(k, Direction::Command, true, false)))
        );
        for _ in 0..3 {
            let before = t.clone();
            assert_eq!(t.on_send(cmd(NONE), 3), Ok(TransUpdate::OneWay));
            assert!(same(&t, &before));
        }
        // Replies stream while the command is still open.
        assert_eq!(
            t.on_receive(cmd(f(R, C)), 3),
            Ok(TransUpdate::Opened(el(k, Direction::Reply, true, false)))
        );
        assert_eq!(t.on_receive(cmd(R), 3), Ok(TransUpdate::OneWay));
        let s = t.get(k).unwrap();
        assert_eq!((s.command(), s.reply()), (DirState::Open, DirState::Open));
        assert_eq!(
            t.on_send(cmd(D), 3),
            Ok(TransUpdate::DirectionClosed(el(
                k,
                Direction::Command,
                false,
                false
            )))
        );
        assert_eq!(t.on_receive(cmd(R), 3), Ok(TransUpdate::OneWay));
        assert_eq!(
            t.on_receive(cmd(f(R, D)), 3),
            Ok(TransUpdate::Closed(el(k, Direction::Reply, false, false)))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn mid_stream_elements_continue() {
        // The only tracked mid-stream element is ABORT alone (a plain element is
        // one-way); it continues its direction.
        let mut t = TransTable::<1>::new();
        let k = TransKey::remote(4);
        t.on_receive(cmd(C), 4).unwrap();
        assert_eq!(
            t.on_receive(cmd(A), 4),
            Ok(TransUpdate::Continued(el(
                k,
                Direction::Command,
                false,
                true
            )))
        );
        t.on_send(cmd(f(R, C)), 4).unwrap();
        assert_eq!(
            t.on_send(cmd(f(R, A)), 4),
            Ok(TransUpdate::Continued(el(k, Direction::Reply, false, true)))
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn interleaving_many_msgids() {
        let mut t = TransTable::<16>::new();
        for id in 1..=8 {
            t.on_send(cmd(C), id).unwrap();
            t.on_receive(cmd(C), id).unwrap();
        }
        assert_eq!(t.len(), 16);
        // Answer them out of order, closing each in both roles.
        for id in [5, 2, 8, 1, 7, 3, 6, 4] {
            t.on_receive(cmd(f(R, C)), id).unwrap();
            t.on_send(cmd(f(R, C)), id).unwrap();
        }
        for id in [8, 7, 6, 5, 4, 3, 2, 1] {
            t.on_send(cmd(D), id).unwrap();
            t.on_receive(cmd(D), id).unwrap();
            check_invariants(&t);
        }
        assert_eq!(t.len(), 16);
        for id in 1..=8 {
            assert!(matches!(
                t.on_receive(cmd(f(R, D)), id),
                Ok(TransUpdate::Closed(_))
            ));
            assert!(matches!(
                t.on_send(cmd(f(R, D)), id),
                Ok(TransUpdate::Closed(_))
            ));
            assert_eq!(t.len(), 16 - 2 * id as usize);
        }
        assert!(t.is_empty());
    }

    #[test]
    fn reply_may_close_before_the_command() {
        let mut t = TransTable::<1>::new();
        let k = TransKey::remote(2);
        t.on_receive(cmd(C), 2).unwrap();
        assert_eq!(
            t.on_send(cmd(f3(R, C, D)), 2),
            Ok(TransUpdate::DirectionClosed(el(
                k,
                Direction::Reply,
                true,
                false
            )))
        );
        assert_eq!(
            t.on_receive(cmd(D), 2),
            Ok(TransUpdate::Closed(el(k, Direction::Command, false, false)))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn already_open() {
        let mut t = TransTable::<4>::new();
        let k = TransKey::local(1);
        t.on_send(cmd(C), 1).unwrap();
        let want = TransError::AlreadyOpen {
            key: k,
            direction: Direction::Command,
        };
        assert_refused(&mut t, |t| t.on_send(cmd(C), 1), want);
        // Still AlreadyOpen once the command direction closed: the key exists.
        t.on_send(cmd(D), 1).unwrap();
        assert_refused(&mut t, |t| t.on_send(cmd(f(C, D)), 1), want);
        // A second reply CREATE.
        t.on_receive(cmd(f(R, C)), 1).unwrap();
        let want = TransError::AlreadyOpen {
            key: k,
            direction: Direction::Reply,
        };
        assert_refused(&mut t, |t| t.on_receive(cmd(f(R, C)), 1), want);
        assert_eq!(want.key(), Some(k));
    }

    #[test]
    fn unknown_transaction() {
        let mut t = TransTable::<4>::new();
        t.on_send(cmd(C), 1).unwrap();
        let want = |side, direction| TransError::UnknownTransaction {
            key: TransKey { side, msgid: 2 },
            direction,
        };
        assert_refused(
            &mut t,
            |t| t.on_send(cmd(D), 2),
            want(Side::Local, Direction::Command),
        );
        assert_refused(
            &mut t,
            |t| t.on_receive(cmd(A), 2),
            want(Side::Remote, Direction::Command),
        );
        assert_refused(
            &mut t,
            |t| t.on_receive(cmd(f(R, C)), 2),
            want(Side::Local, Direction::Reply),
        );
        assert_refused(
            &mut t,
            |t| t.on_send(cmd(f(R, D)), 2),
            want(Side::Remote, Direction::Reply),
        );
        // We never send a late abort: ours would be a bug.
        assert_refused(
            &mut t,
            |t| t.on_send(cmd(f(A, D)), 2),
            want(Side::Local, Direction::Command),
        );
    }

    #[test]
    fn direction_closed() {
        let mut t = TransTable::<4>::new();
        let k = TransKey::remote(6);
        t.on_receive(cmd(f(C, D)), 6).unwrap();
        let want = TransError::DirectionClosed {
            key: k,
            direction: Direction::Command,
        };
        assert_refused(&mut t, |t| t.on_receive(cmd(D), 6), want);
        assert_refused(&mut t, |t| t.on_receive(cmd(A), 6), want);
        // Reply direction: a Local transaction whose reply closed before the command.
        let k = TransKey::local(6);
        t.on_send(cmd(C), 6).unwrap();
        t.on_receive(cmd(f3(R, C, D)), 6).unwrap();
        let want = TransError::DirectionClosed {
            key: k,
            direction: Direction::Reply,
        };
        assert_refused(&mut t, |t| t.on_receive(cmd(f(R, D)), 6), want);
        assert_refused(&mut t, |t| t.on_receive(cmd(f(R, A)), 6), want);
    }

    #[test]
    fn reply_not_opened() {
        let mut t = TransTable::<4>::new();
        let k = TransKey::remote(8);
        t.on_receive(cmd(C), 8).unwrap();
        let want = TransError::ReplyNotOpened { key: k };
        assert_refused(&mut t, |t| t.on_send(cmd(f(R, D)), 8), want);
        assert_refused(&mut t, |t| t.on_send(cmd(f(R, A)), 8), want);
        assert_refused(&mut t, |t| t.on_send(cmd(f3(R, A, D)), 8), want);
        // Received replies too (without ABORT|DELETE, which would be discarded).
        t.on_send(cmd(C), 8).unwrap();
        let want = TransError::ReplyNotOpened {
            key: TransKey::local(8),
        };
        assert_refused(&mut t, |t| t.on_receive(cmd(f(R, D)), 8), want);
    }

    #[test]
    fn table_full() {
        let mut t = TransTable::<2>::new();
        t.on_send(cmd(C), 1).unwrap();
        t.on_receive(cmd(C), 1).unwrap();
        let want = TransError::TableFull { capacity: 2 };
        assert_refused(&mut t, |t| t.on_send(cmd(C), 2), want);
        assert_refused(&mut t, |t| t.on_receive(cmd(f(C, D)), 2), want);
        // Even a received aborted single-element command is reported, not discarded.
        assert_refused(&mut t, |t| t.on_receive(cmd(f3(C, A, D)), 2), want);
        assert_eq!(want.key(), None);
        // Non-fatal: existing transactions go on, and a freed slot is reusable.
        t.on_receive(cmd(f(R, C)), 1).unwrap();
        t.on_send(cmd(D), 1).unwrap();
        assert!(matches!(
            t.on_receive(cmd(f(R, D)), 1),
            Ok(TransUpdate::Closed(_))
        ));
        assert!(t.on_send(cmd(C), 2).is_ok());
        // Capacity zero: every CREATE is refused.
        let mut z = TransTable::<0>::new();
        assert_refused(
            &mut z,
            |t| t.on_send(cmd(C), 1),
            TransError::TableFull { capacity: 0 },
        );
        assert_eq!(z.on_send(cmd(NONE), 1), Ok(TransUpdate::OneWay));
    }

    #[test]
    fn every_error_path_keeps_the_table() {
        // The checkpoint rule, path by path, on a table holding a mix of states.
        let mut t = TransTable::<4>::new();
        t.on_send(cmd(C), 1).unwrap(); // local 1: command open
        t.on_send(cmd(f(C, D)), 2).unwrap(); // local 2: command closed
        t.on_receive(cmd(f(R, C)), 2).unwrap(); //        reply open
        t.on_receive(cmd(C), 3).unwrap(); // remote 3: command open
        t.on_send(cmd(f3(R, C, D)), 3).unwrap(); //        reply closed
        let cases: [(bool, MsgFlags, u32); 10] = [
            (true, C, 1),            // AlreadyOpen, command
            (false, f(R, C), 2),     // AlreadyOpen, reply
            (true, D, 9),            // UnknownTransaction
            (false, f(R, D), 9),     // UnknownTransaction, reply
            (true, D, 2),            // DirectionClosed, command
            (true, f(R, A), 3),      // DirectionClosed, reply
            (false, f(R, D), 1),     // ReplyNotOpened
            (true, f(R, C), 9),      // UnknownTransaction, reply with CREATE
            (true, f(C, D), 4),      // TableFull
            (false, f3(C, A, D), 4), // TableFull, aborted command
        ];
        t.on_receive(cmd(C), 5).unwrap(); // fill the last slot
        for (send, flags, msgid) in cases {
            let before = t.clone();
            let r = if send {
                t.on_send(cmd(flags), msgid)
            } else {
                t.on_receive(cmd(flags), msgid)
            };
            assert!(r.is_err(), "{send} {flags} {msgid}: {r:?}");
            assert!(
                same(&t, &before),
                "{send} {flags} {msgid} changed the table"
            );
        }
    }

    #[test]
    fn abort_with_create_opens_and_records() {
        let mut t = TransTable::<2>::new();
        let k = TransKey::local(1);
        assert_eq!(
            t.on_send(cmd(f(C, A)), 1),
            Ok(TransUpdate::Opened(el(k, Direction::Command, true, true)))
        );
        assert!(t.get(k).unwrap().is_aborted());
        assert!(t.get(k).unwrap().command().is_open());
        // Still answered normally; the bit stays.
        let u = t.on_receive(cmd(f3(R, C, D)), 1).unwrap();
        assert_eq!(
            u,
            TransUpdate::DirectionClosed(el(k, Direction::Reply, true, true))
        );
        assert!(u.is_aborted());
    }

    #[test]
    fn abort_with_delete_closes_and_marks() {
        let mut t = TransTable::<2>::new();
        let k = TransKey::remote(1);
        t.on_receive(cmd(C), 1).unwrap();
        assert_eq!(
            t.on_receive(cmd(f(A, D)), 1),
            Ok(TransUpdate::DirectionClosed(el(
                k,
                Direction::Command,
                false,
                true
            )))
        );
        let s = t.get(k).unwrap();
        assert_eq!((s.command(), s.is_aborted()), (DirState::Closed, true));
        // Our side ends it the same way; the entry goes.
        assert_eq!(
            t.on_send(cmd(f3(R, C, D).union(A)), 1),
            Ok(TransUpdate::Closed(el(k, Direction::Reply, true, true)))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn abort_alone_marks_without_closing() {
        let mut t = TransTable::<2>::new();
        let k = TransKey::local(1);
        t.on_send(cmd(C), 1).unwrap();
        t.on_send(cmd(A), 1).unwrap();
        let s = t.get(k).unwrap();
        assert!(s.is_aborted());
        assert_eq!(s.command(), DirState::Open);
        assert_eq!(s.direction(Direction::Reply), DirState::NotCreated);
    }

    #[test]
    fn late_abort_delete_is_discarded() {
        let mut t = TransTable::<2>::new();
        // Unknown key, either direction.
        assert_eq!(
            t.on_receive(cmd(f(A, D)), 7),
            Ok(TransUpdate::LateAbortDiscarded(TransKey::remote(7)))
        );
        assert_eq!(
            t.on_receive(cmd(f3(R, A, D)), 7),
            Ok(TransUpdate::LateAbortDiscarded(TransKey::local(7)))
        );
        assert_eq!(
            t.on_receive(cmd(f3(R, A, D).union(C)), 7),
            Ok(TransUpdate::LateAbortDiscarded(TransKey::local(7)))
        );
        assert!(t.is_empty());
        // A copy racing a full close: we commanded, the reply closed it, then a relay's
        // copy arrives.
        t.on_send(cmd(f(C, D)), 1).unwrap();
        t.on_receive(cmd(f3(R, C, D)), 1).unwrap();
        let u = t.on_receive(cmd(f3(R, A, D)), 1).unwrap();
        assert_eq!(u, TransUpdate::LateAbortDiscarded(TransKey::local(1)));
        assert_eq!(
            (u.key(), u.element(), u.is_aborted()),
            (Some(TransKey::local(1)), None, false)
        );
        // Sent after DELETE in a half-closed transaction: discarded, nothing changes.
        t.on_receive(cmd(f(C, D)), 2).unwrap();
        let before = t.clone();
        assert_eq!(
            t.on_receive(cmd(f(A, D)), 2),
            Ok(TransUpdate::LateAbortDiscarded(TransKey::remote(2)))
        );
        assert!(same(&t, &before));
        // A reused msgid whose new reply direction is not created yet.
        t.on_send(cmd(C), 1).unwrap();
        let before = t.clone();
        assert_eq!(
            t.on_receive(cmd(f3(R, A, D)), 1),
            Ok(TransUpdate::LateAbortDiscarded(TransKey::local(1)))
        );
        assert!(same(&t, &before));
    }

    #[test]
    fn lose_link_drains_everything() {
        let mut t = TransTable::<8>::new();
        t.on_send(cmd(C), 1).unwrap();
        t.on_send(cmd(C), 2).unwrap();
        t.on_receive(cmd(f(R, C)), 2).unwrap();
        t.on_receive(cmd(C), 1).unwrap();
        t.on_receive(cmd(f(C, D)), 3).unwrap();
        let drained = t.lose_link();
        assert_eq!(drained.len(), 4);
        let mut lost = [None; 4];
        for (slot, l) in lost.iter_mut().zip(drained) {
            *slot = Some((l.key, l.abort_flags()));
        }
        assert!(t.is_empty());
        assert!(t.iter().next().is_none());
        let lost = lost.map(Option::unwrap);
        let flags_of = |k| lost.iter().find(|(key, _)| *key == k).unwrap().1;
        assert_eq!(flags_of(TransKey::local(1)), f3(R, A, D).union(C));
        assert_eq!(flags_of(TransKey::local(2)), f3(R, A, D));
        assert_eq!(flags_of(TransKey::remote(1)), f(A, D));
        assert_eq!(flags_of(TransKey::remote(3)), f(A, D));
        // The table works again afterwards.
        assert!(t.on_send(cmd(C), 1).is_ok());
    }

    #[test]
    fn lose_link_empties_even_when_dropped_early() {
        let mut t = TransTable::<4>::new();
        for id in 1..=4 {
            t.on_send(cmd(C), id).unwrap();
        }
        let mut it = t.lose_link();
        assert!(it.next().is_some());
        assert_eq!(it.len(), 3);
        drop(it);
        assert!(t.is_empty());
        check_invariants(&t);
        assert_eq!(t.lose_link().count(), 0);
    }

    #[test]
    fn next_msgid_skips_open_ids_and_zero() {
        let mut t = TransTable::<5>::new();
        assert_eq!(t.next_msgid(0), Some(1));
        t.on_send(cmd(C), 1).unwrap();
        t.on_send(cmd(C), 2).unwrap();
        // Remote ids do not block Local ones.
        t.on_receive(cmd(C), 3).unwrap();
        assert_eq!(t.next_msgid(0), Some(3));
        // Wraps past u32::MAX to 1, skipping 0 and the open 1 and 2.
        assert_eq!(t.next_msgid(u32::MAX - 1), Some(u32::MAX));
        assert_eq!(t.next_msgid(u32::MAX), Some(3));
        t.on_send(cmd(C), u32::MAX).unwrap();
        assert_eq!(t.next_msgid(u32::MAX - 1), Some(3));
        // Full: None, and it terminates.
        t.on_send(cmd(C), 3).unwrap();
        assert_eq!(t.next_msgid(0), None);
        assert_eq!(t.len(), 5);
        assert_eq!(t.next_msgid(0), None);
        assert_eq!(TransTable::<0>::new().next_msgid(0), None);
    }

    #[test]
    fn next_msgid_worst_case_tries_len_plus_one() {
        // Every candidate but the last is taken: len() + 1 tries find the free one.
        let mut t = TransTable::<4>::new();
        for id in 1..=3 {
            t.on_send(cmd(C), id).unwrap();
        }
        assert_eq!(t.next_msgid(0), Some(4));
        assert_eq!(t.next_msgid(u32::MAX), Some(4));
    }

    #[test]
    fn reply_helpers_follow_the_seed_rules() {
        let single = cmd(f(C, D));
        assert_eq!(streaming_reply_cmd(single), cmd(R));
        assert_eq!(final_reply_cmd(single), cmd(f3(R, C, D)));
        assert_eq!(final_reply_cmd(Cmd::DBG_SHELL).raw(), 0x2010_0101);
        assert_eq!(streaming_reply_cmd(cmd(f(C, A))), cmd(f(R, A)));
        // Only flags change.
        assert_eq!(
            final_reply_cmd(single).switch_key(),
            Cmd::DBG_SHELL.set(R).switch_key()
        );
    }

    #[test]
    fn transaction_reply_cmd_creates_first_and_deletes_last() {
        let mut t = TransTable::<1>::new();
        let command = cmd(f(C, A));
        t.on_receive(command, 1).unwrap();
        let k = TransKey::remote(1);
        let first = transaction_reply_cmd(command, t.get(k).unwrap(), false).unwrap();
        assert_eq!(first.flags(), f(R, C));
        t.on_send(first, 1).unwrap();
        let middle = transaction_reply_cmd(command, t.get(k).unwrap(), false).unwrap();
        assert_eq!(middle.flags(), R);
        let last = transaction_reply_cmd(command, t.get(k).unwrap(), true).unwrap();
        assert_eq!(last.flags(), f(R, D));
        assert!(matches!(
            t.on_send(last, 1),
            Ok(TransUpdate::DirectionClosed(_))
        ));
        assert_eq!(
            transaction_reply_cmd(command, t.get(k).unwrap(), true),
            None
        );
    }

    #[test]
    fn errors_display_and_compare() {
        let k = TransKey::local(0x10);
        let all = [
            TransError::AlreadyOpen {
                key: k,
                direction: Direction::Command,
            },
            TransError::UnknownTransaction {
                key: k,
                direction: Direction::Reply,
            },
            TransError::DirectionClosed {
                key: k,
                direction: Direction::Reply,
            },
            TransError::ReplyNotOpened { key: k },
            TransError::TableFull { capacity: 3 },
        ];
        for e in all {
            let copy = e;
            assert_eq!(copy, e);
            let mut buf = [0u8; 96];
            let mut w = Buf(&mut buf, 0);
            core::fmt::write(&mut w, format_args!("{e}")).unwrap();
            assert!(w.1 > 10);
            let _: &dyn core::error::Error = &e;
        }
        let mut buf = [0u8; 32];
        let mut w = Buf(&mut buf, 0);
        core::fmt::write(&mut w, format_args!("{k}")).unwrap();
        let n = w.1;
        assert_eq!(&buf[..n], b"local#0x10");
    }

    /// A fixed buffer to format into without `alloc`.
    struct Buf<'a>(&'a mut [u8], usize);

    impl core::fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Random traffic never panics, never overfills, and a refused step changes
        /// nothing; accepted steps keep the table consistent.
        #[test]
        fn random_traffic_keeps_the_invariants(
            steps in proptest::collection::vec(
                (any::<bool>(), 0u32..16, 0u32..4, any::<bool>()),
                0..200,
            ),
        ) {
            let mut t = TransTable::<4>::new();
            for (send, bits, msgid, lose) in steps {
                // CREATE, DELETE, REPLY, ABORT from the 4 low bits.
                let flags = MsgFlags::from_cmd_bits(bits << 28);
                let before = t.clone();
                let r = if send {
                    t.on_send(cmd(flags), msgid)
                } else {
                    t.on_receive(cmd(flags), msgid)
                };
                prop_assert!(t.len() <= 4);
                match r {
                    Err(_) => prop_assert!(same(&t, &before)),
                    Ok(TransUpdate::OneWay | TransUpdate::LateAbortDiscarded(_)) => {
                        prop_assert!(same(&t, &before));
                    }
                    Ok(TransUpdate::Closed(e)) => prop_assert_eq!(t.get(e.key), None),
                    Ok(u) => {
                        let e = u.element().unwrap();
                        prop_assert!(t.get(e.key).is_some());
                    }
                }
                check_invariants(&t);
                if lose && msgid == 0 && bits == 0 {
                    let n = t.len();
                    prop_assert_eq!(t.lose_link().count(), n);
                    prop_assert!(t.is_empty());
                }
            }
        }
    }
}
