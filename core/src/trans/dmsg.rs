//! DMSG transactions (dmsg.md 4): the per-connection state of every open transaction,
//! keyed by who allocated its 64-bit msgid, stacked under parents by `circuit`.
//!
//! Each connection keeps two sets of open transactions: **ours** (we allocated the msgid:
//! [`Side::Local`]) and **theirs** ([`Side::Remote`]); the same number may be open in both.
//! Every message says which set its msgid belongs to from the *sender's* view: REVTRANS
//! means "the receiver of this message allocated the msgid", REVCIRC the same for the
//! `circuit` (the parent). So a received REVTRANS names one of ours, and we set REVTRANS
//! on what we send on one of theirs.
//!
//! ## Receiving (dmsg.md 4.2, 4.3)
//!
//! [`DmsgTransactions::on_receive`] finds the parent (`circuit` 0 = top level; else in ours
//! with REVCIRC, in theirs without — not found: [`Received::Discarded`], a message racing a
//! close), then the state (in ours with REVTRANS, in theirs without), and applies:
//!
//! | Flags | Needs | Then |
//! |---|---|---|
//! | CREATE, CREATE\|DELETE | no open state, msgid ≠ 0 | a new state in theirs, under the parent |
//! | REPLY\|CREATE (\|DELETE) | an open state of ours, its reply not yet created | the reply direction starts |
//! | DELETE, REPLY\|DELETE | the state, its direction created and not yet deleted | the direction closes |
//! | neither | the state, its direction created and not deleted; no state: one-way | — |
//!
//! A message with ABORT that finds no suitable state is [`Received::Discarded`]; without
//! ABORT it is a [`DmsgTransError`] that ends the connection (TRANS, 17 — libdmsg asserts
//! instead, D5). REPLY must agree with the set: a reply travels on a transaction of ours.
//! A state is removed once both directions sent DELETE — but a parent stays (invisible to
//! new messages) while children still hang under it, so that every child can still name
//! it.
//!
//! Dispatch uses the transaction's first command: an element with CREATE or DELETE
//! dispatches as `initial command | its CREATE/DELETE/REPLY` (an `LNK_ERROR|DELETE` closing
//! a span is "`LNK_SPAN|DELETE`"), any other as `cmd & 0x20FFFFFF`
//! ([`Received::Element::effective_cmd`]).
//!
//! ## Sending (dmsg.md 4.4, 4.5)
//!
//! [`open`](DmsgTransactions::open) allocates a msgid (D23: a counter from 1, never 0,
//! skipping ids still open in ours); [`on_send`](DmsgTransactions::on_send) records an
//! element and returns the [`Stamp`] — msgid, circuit, REV flags. An element for a
//! direction that already sent DELETE, or for a dying state, is not sent
//! ([`SendVerdict`]). [`answer_cmd`](DmsgTransactions::answer_cmd) gives the standard
//! `LNK_ERROR` answers of dmsg.md 4.4.
//!
//! ## Link loss (dmsg.md 4.6)
//!
//! [`lose_link`](DmsgTransactions::lose_link) marks every state dying;
//! [`take_lost`](DmsgTransactions::take_lost) then yields one simulated termination per
//! state whose peer had not sent DELETE, in pre-order (a parent before its children,
//! children in creation order).
//!
//! ## The checkpoint rule
//!
//! Every call that returns `Err` leaves the sets exactly as they were: a step is planned
//! from `&self` and committed only when it cannot fail. Storage is `N` slots inside the
//! value (no allocation); each call scans them, O(`N`) (O(`N`²·depth) for `take_lost`).

use core::cmp::Ordering;
use core::fmt;

use super::Side;
use crate::wire::{Cmd, MsgFlags};

/// `LNK_ERROR` (dmsg.md 3.5): the generic result and close of every transaction.
const LNK_ERROR: Cmd = Cmd::from_raw(0x000F_FF01);
/// CMDSWMASK (dmsg.md 2.3): the command's identity plus REPLY.
const SWITCH_MASK: u32 = 0x20FF_FFFF;

/// One DMSG transaction's name on a connection: the set and the msgid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmsgKey {
    /// Who allocated the msgid: [`Side::Local`] = ours, [`Side::Remote`] = theirs.
    pub side: Side,
    /// The msgid.
    pub msgid: u64,
}

impl DmsgKey {
    /// A transaction we opened.
    #[must_use]
    pub const fn ours(msgid: u64) -> Self {
        Self {
            side: Side::Local,
            msgid,
        }
    }

    /// A transaction the peer opened.
    #[must_use]
    pub const fn theirs(msgid: u64) -> Self {
        Self {
            side: Side::Remote,
            msgid,
        }
    }
}

impl fmt::Display for DmsgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = match self.side {
            Side::Local => "ours",
            Side::Remote => "theirs",
        };
        write!(f, "{set} msgid {:#018x}", self.msgid)
    }
}

/// One open DMSG transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmsgState {
    key: DmsgKey,
    parent: Option<DmsgKey>,
    initial_cmd: Cmd,
    sent_create: bool,
    sent_delete: bool,
    received_create: bool,
    received_delete: bool,
    dying: bool,
    /// Creation order on this connection.
    seq: u64,
}

impl DmsgState {
    /// The transaction's name.
    #[must_use]
    pub const fn key(&self) -> DmsgKey {
        self.key
    }
    /// The parent transaction; `None` at the top level (circuit 0).
    #[must_use]
    pub const fn parent(&self) -> Option<DmsgKey> {
        self.parent
    }
    /// The command of the CREATE that opened it, without flags.
    #[must_use]
    pub const fn initial_cmd(&self) -> Cmd {
        self.initial_cmd
    }
    /// We sent our direction's CREATE.
    #[must_use]
    pub const fn sent_create(&self) -> bool {
        self.sent_create
    }
    /// We sent our direction's DELETE: nothing more goes out on it.
    #[must_use]
    pub const fn sent_delete(&self) -> bool {
        self.sent_delete
    }
    /// The peer's direction started.
    #[must_use]
    pub const fn received_create(&self) -> bool {
        self.received_create
    }
    /// The peer's direction ended.
    #[must_use]
    pub const fn received_delete(&self) -> bool {
        self.received_delete
    }
    /// The link under it was lost (dmsg.md 4.6): what we send on it is dropped.
    #[must_use]
    pub const fn is_dying(&self) -> bool {
        self.dying
    }
    /// Both directions sent DELETE: kept only while children hang under it.
    const fn finished(&self) -> bool {
        self.sent_delete && self.received_delete
    }
}

/// Where a received message belongs (see [`DmsgTransactions::on_receive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// No CREATE, DELETE or ABORT and no open state: a one-way message. `parent` is the
    /// open transaction its `circuit` names (D7: handed to the parent's handler), `None`
    /// at the top level.
    OneWay {
        /// The parent transaction, if `circuit` ≠ 0.
        parent: Option<DmsgKey>,
    },
    /// An element of a transaction.
    Element {
        /// The transaction.
        key: DmsgKey,
        /// Its parent; `None` at the top level.
        parent: Option<DmsgKey>,
        /// What a handler dispatches on: for an element with CREATE or DELETE, the
        /// transaction's first command with this element's CREATE/DELETE/REPLY; else the
        /// element's `cmd & 0x20FFFFFF`.
        effective_cmd: Cmd,
        /// This element opened the transaction (a CREATE from the peer).
        opened: bool,
        /// The transaction is over: both directions have sent DELETE.
        closed: bool,
    },
    /// Discarded without error (libdmsg's EALREADY, 16): its `circuit` names no open
    /// transaction (a message racing a close), or an ABORT found no started state.
    Discarded,
}

/// Why a received element broke the transaction rules (TRANS, 17: the connection ends),
/// or did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmsgTransError {
    /// A CREATE for a transaction that is open already.
    DuplicateCreate {
        /// The transaction.
        key: DmsgKey,
    },
    /// A CREATE with msgid 0, which one-way messages use (h2msg's rule: it could never be
    /// told apart from them).
    ZeroMsgid,
    /// REPLY and REVTRANS disagree: a reply must travel on a transaction of ours, a
    /// command on one of theirs.
    Misdirected {
        /// The transaction the msgid and REVTRANS name.
        key: DmsgKey,
    },
    /// An element names no open transaction and carries no ABORT.
    NoSuchTransaction {
        /// The transaction named.
        key: DmsgKey,
    },
    /// An element of a direction whose CREATE was not received.
    NotStarted {
        /// The transaction.
        key: DmsgKey,
    },
    /// An element after the direction's DELETE.
    DirectionClosed {
        /// The transaction.
        key: DmsgKey,
    },
    /// The element's `circuit` is not the transaction's parent.
    WrongParent {
        /// The transaction.
        key: DmsgKey,
    },
    /// A new transaction does not fit the table (not a protocol violation).
    TableFull,
}

impl DmsgTransError {
    /// True for a violation of the rules (TRANS); false for [`TableFull`](Self::TableFull).
    #[must_use]
    pub const fn is_fatal(&self) -> bool {
        !matches!(self, Self::TableFull)
    }
}

impl fmt::Display for DmsgTransError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateCreate { key } => write!(f, "CREATE for {key}, which is open"),
            Self::ZeroMsgid => f.write_str("CREATE with msgid 0"),
            Self::Misdirected { key } => {
                write!(f, "REPLY and REVTRANS disagree on {key}")
            }
            Self::NoSuchTransaction { key } => write!(f, "element of {key}, which is not open"),
            Self::NotStarted { key } => write!(f, "element of {key} before its CREATE"),
            Self::DirectionClosed { key } => write!(f, "element of {key} after its DELETE"),
            Self::WrongParent { key } => write!(f, "circuit is not the parent of {key}"),
            Self::TableFull => f.write_str("the transaction table is full"),
        }
    }
}

impl core::error::Error for DmsgTransError {}

/// What to write into an outgoing header of a transaction (dmsg.md 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The transaction's msgid.
    pub msgid: u64,
    /// The parent's msgid; 0 at the top level.
    pub circuit: u64,
    /// REVTRANS (the peer opened the transaction) and REVCIRC (the peer opened the
    /// parent), to be set in `cmd`.
    pub rev_flags: MsgFlags,
}

/// What becomes of an element we send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendVerdict {
    /// Send it with this stamp; the element is recorded.
    Send(Stamp),
    /// Our direction already sent DELETE: it is not sent (dmsg.md 4.5); nothing recorded.
    DroppedClosed,
    /// The transaction (or, for a new one, its parent) is dying: not sent, nothing
    /// recorded.
    DroppedDying,
}

/// Why an element cannot be sent. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmsgSendError {
    /// No open transaction has this key.
    NoSuchTransaction {
        /// The key given.
        key: DmsgKey,
    },
    /// The parent for a new transaction is not open.
    NoSuchParent {
        /// The key given.
        key: DmsgKey,
    },
    /// REPLY must be set exactly on elements of transactions the peer opened.
    WrongDirection {
        /// The transaction.
        key: DmsgKey,
    },
    /// Our direction of this transaction sent CREATE already.
    AlreadyCreated {
        /// The transaction.
        key: DmsgKey,
    },
    /// The first element of our direction must carry CREATE.
    NotCreated {
        /// The transaction.
        key: DmsgKey,
    },
    /// No free slot for a new transaction.
    TableFull,
}

impl fmt::Display for DmsgSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchTransaction { key } => write!(f, "{key} is not open"),
            Self::NoSuchParent { key } => write!(f, "parent {key} is not open"),
            Self::WrongDirection { key } => write!(
                f,
                "REPLY goes exactly on the transactions the peer opened ({key})"
            ),
            Self::AlreadyCreated { key } => write!(f, "{key}: our CREATE was sent already"),
            Self::NotCreated { key } => {
                write!(f, "{key}: the first element of our direction needs CREATE")
            }
            Self::TableFull => f.write_str("the transaction table is full"),
        }
    }
}

impl core::error::Error for DmsgSendError {}

/// A simulated `LOSTLINK` termination of one transaction (dmsg.md 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmsgLost {
    /// The transaction.
    pub key: DmsgKey,
    /// Its parent.
    pub parent: Option<DmsgKey>,
    /// The synthetic element: `LNK_ERROR|DELETE|ABORT`, plus CREATE if the peer never
    /// sent one on it, plus REPLY and REVTRANS on a transaction of ours (the peer is its
    /// responder). Its error is `LOSTLINK` (0x21).
    pub cmd: Cmd,
    /// What a handler dispatches on: the first command with `cmd`'s CREATE/DELETE/REPLY.
    pub effective_cmd: Cmd,
}

/// The open DMSG transactions of one connection, ours and theirs, in `N` slots.
#[derive(Clone, Debug)]
pub struct DmsgTransactions<const N: usize> {
    slots: [Option<DmsgState>; N],
    /// The last msgid we allocated.
    last_msgid: u64,
    next_seq: u64,
}

impl<const N: usize> Default for DmsgTransactions<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The CREATE, DELETE, REPLY and ABORT bits of a `cmd`.
#[derive(Clone, Copy)]
struct Bits {
    create: bool,
    delete: bool,
    reply: bool,
    abort: bool,
}

impl Bits {
    const fn of(cmd: Cmd) -> Self {
        let f = cmd.flags();
        Self {
            create: f.contains(MsgFlags::CREATE),
            delete: f.contains(MsgFlags::DELETE),
            reply: f.contains(MsgFlags::REPLY),
            abort: f.contains(MsgFlags::ABORT),
        }
    }
}

/// What a received element does to one state, planned before it is applied.
enum Plan {
    Open(DmsgState),
    Update(DmsgState),
}

impl<const N: usize> DmsgTransactions<N> {
    /// No transaction open.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: [None; N],
            last_msgid: 0,
            next_seq: 0,
        }
    }

    /// Open transactions (ours and theirs), including closed parents kept for children.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// True when no transaction is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open transaction `key`.
    #[must_use]
    pub fn get(&self, key: DmsgKey) -> Option<&DmsgState> {
        self.any(key).filter(|s| !s.finished())
    }

    /// Every state held, open or kept for its children.
    pub fn iter(&self) -> impl Iterator<Item = &DmsgState> {
        self.slots.iter().flatten()
    }

    /// The state `key`, also when it is finished but kept for its children.
    fn any(&self, key: DmsgKey) -> Option<&DmsgState> {
        self.iter().find(|s| s.key == key)
    }

    fn any_mut(&mut self, key: DmsgKey) -> Option<&mut DmsgState> {
        self.slots.iter_mut().flatten().find(|s| s.key == key)
    }

    fn has_children(&self, key: DmsgKey) -> bool {
        self.iter().any(|s| s.parent == Some(key))
    }

    fn has_free_slot(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    fn insert(&mut self, state: DmsgState) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some(state);
        }
    }

    /// Removes finished states that no child needs, repeatedly (a removal can free its
    /// parent).
    fn sweep(&mut self) {
        loop {
            let removable = self
                .iter()
                .find(|s| s.finished() && !self.has_children(s.key))
                .map(|s| s.key);
            let Some(key) = removable else { return };
            for slot in &mut self.slots {
                if slot.is_some_and(|s| s.key == key) {
                    *slot = None;
                }
            }
        }
    }

    /// Applies a planned state change.
    fn commit(&mut self, plan: Plan) {
        match plan {
            Plan::Open(state) => {
                self.next_seq += 1;
                self.insert(state);
            }
            Plan::Update(state) => {
                if let Some(s) = self.any_mut(state.key) {
                    *s = state;
                }
            }
        }
        self.sweep();
    }

    /// dmsg.md 4.2 and 4.3 for a received message: its `cmd`, `msgid` and `circuit` as
    /// decoded.
    ///
    /// # Errors
    /// A [`DmsgTransError`]: a violation (the connection must end) or
    /// [`TableFull`](DmsgTransError::TableFull). Nothing changes then.
    pub fn on_receive(
        &mut self,
        cmd: Cmd,
        msgid: u64,
        circuit: u64,
    ) -> Result<Received, DmsgTransError> {
        let flags = cmd.flags();
        let bits = Bits::of(cmd);
        let parent = if circuit == 0 {
            None
        } else {
            let side = side_of(flags.contains(MsgFlags::REVCIRC));
            let key = DmsgKey {
                side,
                msgid: circuit,
            };
            if self.get(key).is_none() {
                return Ok(Received::Discarded);
            }
            Some(key)
        };
        let key = DmsgKey {
            side: side_of(flags.contains(MsgFlags::REVTRANS)),
            msgid,
        };
        let plan = match self.plan_receive(bits, key, parent, cmd) {
            Ok(Some(plan)) => plan,
            Ok(None) if bits.create || bits.delete || bits.abort => {
                return Ok(Received::Discarded);
            }
            Ok(None) => return Ok(Received::OneWay { parent }),
            Err(e) => return Err(e),
        };
        let (Plan::Open(state) | Plan::Update(state)) = plan;
        let opened = matches!(plan, Plan::Open(_));
        let effective_cmd = if bits.create || bits.delete {
            state.initial_cmd.set(transaction_bits(cmd.flags()))
        } else {
            Cmd::from_raw(cmd.raw() & SWITCH_MASK)
        };
        self.commit(plan);
        Ok(Received::Element {
            key,
            parent,
            effective_cmd,
            opened,
            closed: state.finished(),
        })
    }

    /// The state change a received element makes, `None` for "no state: one-way, or
    /// discarded if it carries CREATE, DELETE or ABORT".
    fn plan_receive(
        &self,
        bits: Bits,
        key: DmsgKey,
        parent: Option<DmsgKey>,
        cmd: Cmd,
    ) -> Result<Option<Plan>, DmsgTransError> {
        let refuse = |e| if bits.abort { Ok(None) } else { Err(e) };
        if bits.create && !bits.reply {
            // The peer opens a transaction: its msgid is its own.
            if key.side == Side::Local {
                return refuse(DmsgTransError::Misdirected { key });
            }
            if key.msgid == 0 {
                return refuse(DmsgTransError::ZeroMsgid);
            }
            if self.any(key).is_some() {
                return refuse(DmsgTransError::DuplicateCreate { key });
            }
            if !self.has_free_slot() {
                return Err(DmsgTransError::TableFull);
            }
            let dying = parent.and_then(|p| self.get(p)).is_some_and(|p| p.dying);
            return Ok(Some(Plan::Open(DmsgState {
                key,
                parent,
                initial_cmd: cmd.clear(MsgFlags::ALL),
                sent_create: false,
                sent_delete: false,
                received_create: true,
                received_delete: bits.delete,
                dying,
                seq: self.next_seq,
            })));
        }
        let Some(state) = self.get(key).copied() else {
            return if bits.create || bits.delete {
                refuse(DmsgTransError::NoSuchTransaction { key })
            } else {
                Ok(None) // one-way (or a lone ABORT racing a close: discarded)
            };
        };
        if state.parent != parent {
            return refuse(DmsgTransError::WrongParent { key });
        }
        if bits.reply != (key.side == Side::Local) {
            return refuse(DmsgTransError::Misdirected { key });
        }
        let mut next = state;
        if bits.create {
            // REPLY|CREATE: the responder starts its direction.
            if state.received_create {
                return refuse(DmsgTransError::DuplicateCreate { key });
            }
            next.received_create = true;
        } else if !state.received_create {
            return refuse(DmsgTransError::NotStarted { key });
        }
        if state.received_delete {
            return refuse(DmsgTransError::DirectionClosed { key });
        }
        next.received_delete = bits.delete;
        Ok(Some(Plan::Update(next)))
    }

    /// Opens a new transaction of ours under `parent` (`None`: top level): allocates its
    /// msgid and records our CREATE (and DELETE, if `cmd` carries it).
    ///
    /// # Errors
    /// [`DmsgSendError`]: `cmd` carries REPLY, the parent is not open, the table is full.
    /// Nothing changes then.
    pub fn open(
        &mut self,
        cmd: Cmd,
        parent: Option<DmsgKey>,
    ) -> Result<SendVerdict, DmsgSendError> {
        let parent_state = match parent {
            None => None,
            Some(key) => Some(*self.get(key).ok_or(DmsgSendError::NoSuchParent { key })?),
        };
        let bits = Bits::of(cmd);
        if bits.reply {
            return Err(DmsgSendError::WrongDirection {
                key: DmsgKey::ours(0),
            });
        }
        if parent_state.is_some_and(|p| p.dying) {
            return Ok(SendVerdict::DroppedDying);
        }
        if !self.has_free_slot() {
            return Err(DmsgSendError::TableFull);
        }
        let msgid = self.free_msgid().ok_or(DmsgSendError::TableFull)?;
        let key = DmsgKey::ours(msgid);
        let state = DmsgState {
            key,
            parent,
            initial_cmd: cmd.clear(MsgFlags::ALL),
            sent_create: true,
            sent_delete: bits.delete,
            received_create: false,
            received_delete: false,
            dying: false,
            seq: self.next_seq,
        };
        self.last_msgid = msgid;
        self.commit(Plan::Open(state));
        Ok(SendVerdict::Send(stamp(key, parent)))
    }

    /// D23: the next msgid after the last one given, never 0, not held in ours.
    fn free_msgid(&self) -> Option<u64> {
        let mut candidate = self.last_msgid;
        // Among N + 1 consecutive non-zero ids one is free: the set holds at most N.
        for _ in 0..=N {
            candidate = candidate.wrapping_add(1);
            if candidate == 0 {
                candidate = 1;
            }
            if self.any(DmsgKey::ours(candidate)).is_none() {
                return Some(candidate);
            }
        }
        None
    }

    /// Records sending `cmd` (its CREATE, DELETE and REPLY) on the open transaction
    /// `key`, and says how to stamp it. REPLY must be set exactly when the peer opened
    /// the transaction; our direction's first element must carry CREATE.
    ///
    /// # Errors
    /// [`DmsgSendError`]; nothing changes then.
    pub fn on_send(&mut self, key: DmsgKey, cmd: Cmd) -> Result<SendVerdict, DmsgSendError> {
        let state = *self
            .get(key)
            .ok_or(DmsgSendError::NoSuchTransaction { key })?;
        let bits = Bits::of(cmd);
        if bits.reply != (key.side == Side::Remote) {
            return Err(DmsgSendError::WrongDirection { key });
        }
        if state.dying {
            return Ok(SendVerdict::DroppedDying);
        }
        if state.sent_delete {
            return Ok(SendVerdict::DroppedClosed);
        }
        if bits.create && state.sent_create {
            return Err(DmsgSendError::AlreadyCreated { key });
        }
        if !bits.create && !state.sent_create {
            return Err(DmsgSendError::NotCreated { key });
        }
        let mut next = state;
        next.sent_create = true;
        next.sent_delete = bits.delete;
        self.commit(Plan::Update(next));
        Ok(SendVerdict::Send(stamp(key, state.parent)))
    }

    /// The standard `LNK_ERROR` answer of dmsg.md 4.4 on `key`, REVTRANS and REVCIRC
    /// included. On a transaction the peer opened: with `close` false a result that keeps
    /// it open (`0xA80FFF01`, or `0x280FFF01` after our CREATE), with `close` true our
    /// DELETE (`0xE80FFF01`, or `0x680FFF01` after a result). On one of ours: `0x400FFF01`
    /// to close, a flag-less `LNK_ERROR` otherwise. `None` when `key` is not open or our
    /// direction already sent DELETE ("a helper on a closed direction does nothing").
    #[must_use]
    pub fn answer_cmd(&self, key: DmsgKey, close: bool) -> Option<Cmd> {
        let state = self.get(key)?;
        if state.sent_delete {
            return None;
        }
        let mut flags = MsgFlags::NONE;
        if key.side == Side::Remote {
            flags = flags.union(MsgFlags::REPLY).union(MsgFlags::REVTRANS);
            if !state.sent_create {
                flags = flags.union(MsgFlags::CREATE);
            }
        }
        if close {
            flags = flags.union(MsgFlags::DELETE);
        }
        if state.parent.is_some_and(|p| p.side == Side::Remote) {
            flags = flags.union(MsgFlags::REVCIRC);
        }
        Some(LNK_ERROR.set(flags))
    }

    /// The link is lost: every state is dying (dmsg.md 4.6). Then
    /// [`take_lost`](Self::take_lost) yields the terminations.
    pub fn lose_link(&mut self) {
        for state in self.slots.iter_mut().flatten() {
            state.dying = true;
        }
    }

    /// Marks `key` and every transaction under it dying. False if `key` is not open.
    pub fn set_dying(&mut self, key: DmsgKey) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let mut marks = [false; N];
        for (mark, slot) in marks.iter_mut().zip(&self.slots) {
            *mark = slot.is_some_and(|s| self.descends_from(s.key, key));
        }
        for (mark, slot) in marks.iter().zip(self.slots.iter_mut()) {
            if let (true, Some(s)) = (mark, slot) {
                s.dying = true;
            }
        }
        true
    }

    /// True if `key` is `ancestor` or lies under it.
    fn descends_from(&self, key: DmsgKey, ancestor: DmsgKey) -> bool {
        let mut at = Some(key);
        // A chain is at most N long; the bound guards against a corrupted cycle.
        for _ in 0..=N {
            match at {
                Some(k) if k == ancestor => return true,
                Some(k) => at = self.any(k).and_then(|s| s.parent),
                None => return false,
            }
        }
        false
    }

    /// The next simulated termination after [`lose_link`](Self::lose_link): among the
    /// dying states whose peer did not send DELETE, the first in pre-order. It is applied
    /// as a received DELETE. `None` when there is none left.
    pub fn take_lost(&mut self) -> Option<DmsgLost> {
        let mut best: Option<DmsgState> = None;
        for state in self.iter() {
            if !state.dying || state.received_delete {
                continue;
            }
            if best.is_none_or(|b| self.preorder(state, &b) == Ordering::Less) {
                best = Some(*state);
            }
        }
        let state = best?;
        let mut flags = MsgFlags::DELETE.union(MsgFlags::ABORT);
        if !state.received_create {
            flags = flags.union(MsgFlags::CREATE);
        }
        if state.key.side == Side::Local {
            flags = flags.union(MsgFlags::REPLY).union(MsgFlags::REVTRANS);
        }
        let mut next = state;
        next.received_create = true;
        next.received_delete = true;
        self.commit(Plan::Update(next));
        Some(DmsgLost {
            key: state.key,
            parent: state.parent,
            cmd: LNK_ERROR.set(flags),
            effective_cmd: state.initial_cmd.set(transaction_bits(flags)),
        })
    }

    /// Depth of a state: 0 at the top level.
    fn depth(&self, state: &DmsgState) -> usize {
        let mut depth = 0;
        let mut at = state.parent;
        while let Some(k) = at {
            depth += 1;
            if depth > N {
                break;
            }
            at = self.any(k).and_then(|s| s.parent);
        }
        depth
    }

    /// The ancestor of `state` `up` levels above it.
    fn lift(&self, state: DmsgState, up: usize) -> DmsgState {
        let mut at = state;
        for _ in 0..up {
            match at.parent.and_then(|k| self.any(k)) {
                Some(p) => at = *p,
                None => break,
            }
        }
        at
    }

    /// Pre-order of two states: an ancestor first, else by the creation order of the
    /// two siblings under their nearest common ancestor.
    fn preorder(&self, a: &DmsgState, b: &DmsgState) -> Ordering {
        let (da, db) = (self.depth(a), self.depth(b));
        let mut x = self.lift(*a, da.saturating_sub(db));
        let mut y = self.lift(*b, db.saturating_sub(da));
        if x.key == y.key {
            return da.cmp(&db);
        }
        for _ in 0..=N {
            if x.parent == y.parent {
                break;
            }
            x = self.lift(x, 1);
            y = self.lift(y, 1);
        }
        x.seq.cmp(&y.seq)
    }
}

/// CREATE, DELETE and REPLY of `flags`: what an element adds to its transaction's first
/// command for dispatch.
const fn transaction_bits(flags: MsgFlags) -> MsgFlags {
    flags.difference(
        MsgFlags::ALL.difference(
            MsgFlags::CREATE
                .union(MsgFlags::DELETE)
                .union(MsgFlags::REPLY),
        ),
    )
}

/// The set a received REV flag names: set → ours (the receiver allocated it).
const fn side_of(rev: bool) -> Side {
    if rev { Side::Local } else { Side::Remote }
}

/// How to stamp an element of `key` under `parent`.
const fn stamp(key: DmsgKey, parent: Option<DmsgKey>) -> Stamp {
    let mut rev = MsgFlags::NONE;
    if matches!(key.side, Side::Remote) {
        rev = rev.union(MsgFlags::REVTRANS);
    }
    let circuit = match parent {
        Some(p) => {
            if matches!(p.side, Side::Remote) {
                rev = rev.union(MsgFlags::REVCIRC);
            }
            p.msgid
        }
        None => 0,
    };
    Stamp {
        msgid: key.msgid,
        circuit,
        rev_flags: rev,
    }
}
