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
//! A state is removed once both directions sent DELETE — but a parent stays while children
//! still hang under it: it takes no message and no new child of its own, yet every child can
//! still name it and the children's messages still reach them.
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
//! from `&self` and committed only when it cannot fail. Storage is `N` slots per set inside
//! the value (no allocation) — separate budgets, so that neither side's load starves the
//! other's; each call scans them, O(`N`) (O(`N`²·depth) for `take_lost`). After a lost
//! link, once every termination was taken, the table is emptied.

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

/// The open DMSG transactions of one connection: up to `N` of ours and `N` of theirs.
/// Separate budgets, so that neither side's load can starve the other's (a table filled by
/// our own requests would refuse every request of the peer).
#[derive(Clone, Debug)]
pub struct DmsgTransactions<const N: usize> {
    ours: [Option<DmsgState>; N],
    theirs: [Option<DmsgState>; N],
    /// The link was lost: nothing can be sent or received any more.
    link_lost: bool,
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
            ours: [None; N],
            theirs: [None; N],
            link_lost: false,
            last_msgid: 0,
            next_seq: 0,
        }
    }

    /// Open transactions (ours and theirs), including closed parents kept for children.
    #[must_use]
    pub fn len(&self) -> usize {
        self.iter().count()
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
        self.ours.iter().chain(&self.theirs).flatten()
    }

    /// The state `key`, also when it is finished but kept for its children.
    fn any(&self, key: DmsgKey) -> Option<&DmsgState> {
        self.iter().find(|s| s.key == key)
    }

    fn any_mut(&mut self, key: DmsgKey) -> Option<&mut DmsgState> {
        self.slots_mut().flatten().find(|s| s.key == key)
    }

    fn has_children(&self, key: DmsgKey) -> bool {
        self.iter().any(|s| s.parent == Some(key))
    }

    fn has_free_slot(&self, side: Side) -> bool {
        self.side_slots(side).iter().any(Option::is_none)
    }

    fn side_slots(&self, side: Side) -> &[Option<DmsgState>; N] {
        match side {
            Side::Local => &self.ours,
            Side::Remote => &self.theirs,
        }
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut Option<DmsgState>> {
        self.ours.iter_mut().chain(self.theirs.iter_mut())
    }

    fn insert(&mut self, state: DmsgState) {
        let slots = match state.key.side {
            Side::Local => &mut self.ours,
            Side::Remote => &mut self.theirs,
        };
        if let Some(slot) = slots.iter_mut().find(|s| s.is_none()) {
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
            for slot in self.slots_mut() {
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
            // A parent kept only for its children takes no new child, but the elements of
            // the children it has still reach them.
            let opening = bits.create && !bits.reply;
            let found = if opening {
                self.get(key)
            } else {
                self.any(key)
            };
            if found.is_none() {
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
            if !self.has_free_slot(Side::Remote) {
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
        if !self.has_free_slot(Side::Local) {
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
        self.link_lost = true;
        for state in self.slots_mut().flatten() {
            state.dying = true;
        }
    }

    /// Marks `key` and every transaction under it dying. False if `key` is not open.
    pub fn set_dying(&mut self, key: DmsgKey) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        // One state of the subtree at a time: each pass finds one not yet dying.
        loop {
            let next = self
                .iter()
                .find(|s| !s.dying && self.descends_from(s.key, key))
                .map(|s| s.key);
            let Some(next) = next else { break };
            if let Some(s) = self.any_mut(next) {
                s.dying = true;
            }
        }
        true
    }

    /// True if `key` is `ancestor` or lies under it.
    fn descends_from(&self, key: DmsgKey, ancestor: DmsgKey) -> bool {
        let mut at = Some(key);
        // A chain is at most 2·N long (both sets); the bound guards against a cycle.
        for _ in 0..=2 * N {
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
    /// as a received DELETE. `None` when there is none left — and after a lost link the
    /// table is then emptied: nothing can close what remains.
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
        let Some(state) = best else {
            if self.link_lost {
                // Every termination was given and nothing can close what is left.
                self.slots_mut().for_each(|slot| *slot = None);
            }
            return None;
        };
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
            if depth > 2 * N {
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
        for _ in 0..=2 * N {
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

#[cfg(test)]
mod tests {
    //! Expected values are written from DMSG.md (2.3, 4.2-4.6, D23) as literals, never
    //! computed with the code under test.
    extern crate std;
    use std::vec::Vec;

    use super::*;

    // DMSG.md 2.3, as raw `cmd` bits.
    const C: u32 = 0x8000_0000;
    const D: u32 = 0x4000_0000;
    const R: u32 = 0x2000_0000;
    const A: u32 = 0x1000_0000;
    const RT: u32 = 0x0800_0000;
    const RC: u32 = 0x0400_0000;
    /// LNK_SPAN (DMSG.md 4.3's example: 0x00001207).
    const SPAN: u32 = 0x0000_1207;
    /// LNK_ERROR.
    const ERR: u32 = 0x000F_FF01;
    /// LNK_PING.
    const PING: u32 = 0x0000_0101;
    /// DBG_SHELL.
    const SHELL: u32 = 0x0010_0101;

    type T = DmsgTransactions<8>;

    fn rx<const N: usize>(
        t: &mut DmsgTransactions<N>,
        raw: u32,
        msgid: u64,
        circuit: u64,
    ) -> Result<Received, DmsgTransError> {
        t.on_receive(Cmd::from_raw(raw), msgid, circuit)
    }

    fn snapshot<const N: usize>(t: &DmsgTransactions<N>) -> Vec<DmsgState> {
        t.iter().copied().collect()
    }

    /// A received message is refused with `want`, and `iter()` is exactly as before.
    fn refused<const N: usize>(
        t: &mut DmsgTransactions<N>,
        raw: u32,
        msgid: u64,
        circuit: u64,
        want: DmsgTransError,
    ) {
        let before = snapshot(t);
        assert_eq!(rx(t, raw, msgid, circuit), Err(want), "cmd {raw:#010x}");
        assert_eq!(snapshot(t), before, "changed on {want:?}");
    }

    /// A received message is discarded without error, and nothing changed.
    fn discarded<const N: usize>(t: &mut DmsgTransactions<N>, raw: u32, msgid: u64, circuit: u64) {
        let before = snapshot(t);
        assert_eq!(
            rx(t, raw, msgid, circuit),
            Ok(Received::Discarded),
            "cmd {raw:#010x}"
        );
        assert_eq!(snapshot(t), before, "changed on a discard");
    }

    /// An element was accepted: returns (key, parent, effective_cmd raw, opened, closed).
    fn element<const N: usize>(
        t: &mut DmsgTransactions<N>,
        raw: u32,
        msgid: u64,
        circuit: u64,
    ) -> (DmsgKey, Option<DmsgKey>, u32, bool, bool) {
        match rx(t, raw, msgid, circuit) {
            Ok(Received::Element {
                key,
                parent,
                effective_cmd,
                opened,
                closed,
            }) => (key, parent, effective_cmd.raw(), opened, closed),
            other => panic!("cmd {raw:#010x}: {other:?}"),
        }
    }

    /// A send step fails with `want`, and nothing changed (the next msgid included).
    fn send_refused<const N: usize>(
        t: &mut DmsgTransactions<N>,
        step: impl FnOnce(&mut DmsgTransactions<N>) -> Result<SendVerdict, DmsgSendError>,
        want: DmsgSendError,
    ) {
        let before = snapshot(t);
        let last = t.last_msgid;
        assert_eq!(step(t), Err(want));
        assert_eq!(snapshot(t), before, "changed on {want:?}");
        assert_eq!(t.last_msgid, last);
    }

    /// Opens one of ours and returns its key.
    fn open<const N: usize>(
        t: &mut DmsgTransactions<N>,
        raw: u32,
        parent: Option<DmsgKey>,
    ) -> DmsgKey {
        match t.open(Cmd::from_raw(raw), parent) {
            Ok(SendVerdict::Send(s)) => DmsgKey::ours(s.msgid),
            other => panic!("open {raw:#010x}: {other:?}"),
        }
    }

    fn send<const N: usize>(t: &mut DmsgTransactions<N>, key: DmsgKey, raw: u32) -> SendVerdict {
        t.on_send(key, Cmd::from_raw(raw))
            .unwrap_or_else(|e| panic!("send {raw:#010x} on {key}: {e}"))
    }

    fn stamp_of(msgid: u64, circuit: u64, rev: u32) -> SendVerdict {
        SendVerdict::Send(Stamp {
            msgid,
            circuit,
            rev_flags: MsgFlags::from_cmd_bits(rev),
        })
    }

    fn answer<const N: usize>(t: &DmsgTransactions<N>, key: DmsgKey, close: bool) -> Option<u32> {
        t.answer_cmd(key, close).map(Cmd::raw)
    }

    fn ours(msgid: u64) -> DmsgKey {
        DmsgKey::ours(msgid)
    }

    fn theirs(msgid: u64) -> DmsgKey {
        DmsgKey::theirs(msgid)
    }

    // ---- 4.3, C and C|D ----

    #[test]
    fn a_received_create_opens_a_state_in_theirs() {
        let mut t = T::new();
        assert!(t.is_empty());
        assert_eq!(
            element(&mut t, C | SPAN, 5, 0),
            (theirs(5), None, 0x8000_1207, true, false)
        );
        assert_eq!(t.len(), 1);
        let s = t.get(theirs(5)).unwrap();
        assert_eq!(s.key(), theirs(5));
        assert_eq!(s.parent(), None);
        assert_eq!(s.initial_cmd().raw(), SPAN);
        assert!(s.received_create() && !s.received_delete());
        assert!(!s.sent_create() && !s.sent_delete() && !s.is_dying());
        // The same number in ours is a different transaction.
        assert!(t.get(ours(5)).is_none());
    }

    #[test]
    fn a_received_create_delete_opens_a_state_whose_peer_direction_is_closed() {
        let mut t = T::new();
        assert_eq!(
            element(&mut t, C | D | SPAN, 6, 0),
            (theirs(6), None, 0xC000_1207, true, false)
        );
        let s = t.get(theirs(6)).unwrap();
        assert!(s.received_create() && s.received_delete());
        // Our answer closes it: both directions deleted, the state goes.
        assert_eq!(send(&mut t, theirs(6), C | D | R | ERR), stamp_of(6, 0, RT));
        assert!(t.is_empty());
        assert!(t.get(theirs(6)).is_none());
    }

    #[test]
    fn a_create_refused_changes_nothing_and_with_abort_is_discarded() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        // Existing state -> TRANS (DuplicateCreate).
        refused(
            &mut t,
            C | SPAN,
            5,
            0,
            DmsgTransError::DuplicateCreate { key: theirs(5) },
        );
        discarded(&mut t, C | A | SPAN, 5, 0);
        // msgid 0 is for one-way messages.
        refused(&mut t, C | SPAN, 0, 0, DmsgTransError::ZeroMsgid);
        discarded(&mut t, C | A | SPAN, 0, 0);
        // CREATE without REPLY but with REVTRANS names ours: misdirected.
        refused(
            &mut t,
            C | RT | SPAN,
            7,
            0,
            DmsgTransError::Misdirected { key: ours(7) },
        );
        discarded(&mut t, C | RT | A | SPAN, 7, 0);
        // A CREATE after the peer's DELETE on a still-open state is a duplicate too.
        element(&mut t, C | D | SPAN, 9, 0);
        refused(
            &mut t,
            C | SPAN,
            9,
            0,
            DmsgTransError::DuplicateCreate { key: theirs(9) },
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_create_that_does_not_fit_is_table_full_and_not_fatal() {
        let mut t = DmsgTransactions::<2>::new();
        element(&mut t, C | SPAN, 1, 0);
        element(&mut t, C | SPAN, 2, 0);
        refused(&mut t, C | SPAN, 3, 0, DmsgTransError::TableFull);
        assert!(!DmsgTransError::TableFull.is_fatal());
        for e in [
            DmsgTransError::DuplicateCreate { key: theirs(1) },
            DmsgTransError::ZeroMsgid,
            DmsgTransError::Misdirected { key: theirs(1) },
            DmsgTransError::NoSuchTransaction { key: theirs(1) },
            DmsgTransError::NotStarted { key: theirs(1) },
            DmsgTransError::DirectionClosed { key: theirs(1) },
            DmsgTransError::WrongParent { key: theirs(1) },
        ] {
            assert!(e.is_fatal(), "{e:?}");
        }
    }

    // ---- 4.3, R|C and R|C|D ----

    #[test]
    fn a_reply_create_starts_the_reply_direction_of_ours() {
        let mut t = T::new();
        let k = open(&mut t, C | SPAN, None);
        assert_eq!(k, ours(1));
        let s = t.get(k).unwrap();
        assert!(s.sent_create() && !s.sent_delete());
        assert!(!s.received_create() && !s.received_delete() && !s.is_dying());
        assert_eq!(s.initial_cmd().raw(), SPAN);
        assert_eq!(s.parent(), None);
        // The peer's result: 0xA80FFF01, dispatched as LNK_SPAN|CREATE|REPLY.
        assert_eq!(
            element(&mut t, 0xA80F_FF01, 1, 0),
            (ours(1), None, 0xA000_1207, false, false)
        );
        let s = t.get(ours(1)).unwrap();
        assert!(s.received_create() && !s.received_delete());
        assert!(s.sent_create() && !s.sent_delete());
        assert!(!t.is_empty());
        // A second R|C is a duplicate; with ABORT it is discarded.
        refused(
            &mut t,
            0xA80F_FF01,
            1,
            0,
            DmsgTransError::DuplicateCreate { key: ours(1) },
        );
        discarded(&mut t, 0xB80F_FF01, 1, 0);
    }

    #[test]
    fn a_reply_create_delete_closes_the_reply_direction_and_our_delete_removes_it() {
        let mut t = T::new();
        let k = open(&mut t, C | SPAN, None);
        assert_eq!(
            element(&mut t, 0xE80F_FF01, 1, 0),
            (k, None, 0xE000_1207, false, false)
        );
        assert!(t.get(k).unwrap().received_delete());
        assert_eq!(send(&mut t, k, D | ERR), stamp_of(1, 0, 0));
        assert!(t.is_empty());
    }

    #[test]
    fn a_reply_create_delete_after_our_delete_closes_the_transaction() {
        let mut t = T::new();
        let k = open(&mut t, C | D | SPAN, None);
        assert_eq!(t.len(), 1);
        assert_eq!(
            element(&mut t, 0xE80F_FF01, 1, 0),
            (k, None, 0xE000_1207, false, true)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_reply_create_naming_nothing_or_the_wrong_set_is_refused() {
        let mut t = T::new();
        open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SPAN, 1, 0); // theirs(1)
        // Missing -> TRANS; with ABORT discarded.
        refused(
            &mut t,
            0xA80F_FF01,
            9,
            0,
            DmsgTransError::NoSuchTransaction { key: ours(9) },
        );
        discarded(&mut t, 0xB80F_FF01, 9, 0);
        refused(
            &mut t,
            0xE80F_FF01,
            9,
            0,
            DmsgTransError::NoSuchTransaction { key: ours(9) },
        );
        // REPLY without REVTRANS names theirs(1): a reply on a transaction the peer opened.
        refused(
            &mut t,
            0xA00F_FF01,
            1,
            0,
            DmsgTransError::Misdirected { key: theirs(1) },
        );
        discarded(&mut t, 0xB00F_FF01, 1, 0);
        refused(
            &mut t,
            0xA00F_FF01,
            4,
            0,
            DmsgTransError::NoSuchTransaction { key: theirs(4) },
        );
    }

    // ---- 4.3, D and R|D ----

    #[test]
    fn an_error_delete_closing_a_span_dispatches_as_span_delete() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        // LNK_ERROR|DELETE 0x400FFF01 -> effective 0x40001207 (DMSG.md 4.3).
        assert_eq!(
            element(&mut t, 0x400F_FF01, 5, 0),
            (theirs(5), None, 0x4000_1207, false, false)
        );
        let s = t.get(theirs(5)).unwrap();
        assert!(s.received_delete());
        // After the DELETE the direction is closed.
        refused(
            &mut t,
            0x400F_FF01,
            5,
            0,
            DmsgTransError::DirectionClosed { key: theirs(5) },
        );
        refused(
            &mut t,
            PING,
            5,
            0,
            DmsgTransError::DirectionClosed { key: theirs(5) },
        );
        discarded(&mut t, 0x500F_FF01, 5, 0);
        discarded(&mut t, A | PING, 5, 0);
        // Our DELETE then removes it; the close is reported by our send, not a receive.
        assert_eq!(send(&mut t, theirs(5), C | D | R | ERR), stamp_of(5, 0, RT));
        assert!(t.is_empty());
    }

    #[test]
    fn a_delete_that_closes_the_last_direction_reports_closed() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        send(&mut t, theirs(5), C | D | R | ERR);
        assert_eq!(t.len(), 1);
        assert_eq!(
            element(&mut t, 0x400F_FF01, 5, 0),
            (theirs(5), None, 0x4000_1207, false, true)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_delete_naming_nothing_is_trans_or_with_abort_discarded() {
        let mut t = T::new();
        refused(
            &mut t,
            0x400F_FF01,
            7,
            0,
            DmsgTransError::NoSuchTransaction { key: theirs(7) },
        );
        discarded(&mut t, 0x500F_FF01, 7, 0);
        refused(
            &mut t,
            0x680F_FF01,
            7,
            0,
            DmsgTransError::NoSuchTransaction { key: ours(7) },
        );
        discarded(&mut t, 0x780F_FF01, 7, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn a_delete_without_reply_on_ours_is_misdirected() {
        let mut t = T::new();
        let k = open(&mut t, C | SPAN, None);
        element(&mut t, 0xA80F_FF01, 1, 0);
        refused(
            &mut t,
            0x480F_FF01,
            1,
            0,
            DmsgTransError::Misdirected { key: k },
        );
        discarded(&mut t, 0x580F_FF01, 1, 0);
        // And R|D on theirs.
        element(&mut t, C | SPAN, 2, 0);
        refused(
            &mut t,
            0x600F_FF01,
            2,
            0,
            DmsgTransError::Misdirected { key: theirs(2) },
        );
    }

    #[test]
    fn a_reply_delete_needs_the_reply_create_first() {
        let mut t = T::new();
        let k = open(&mut t, C | SPAN, None);
        // R|D before R|C: unstarted -> TRANS; with ABORT (0x780FFF01) discarded.
        refused(
            &mut t,
            0x680F_FF01,
            1,
            0,
            DmsgTransError::NotStarted { key: k },
        );
        discarded(&mut t, 0x780F_FF01, 1, 0);
        element(&mut t, 0xA80F_FF01, 1, 0);
        assert_eq!(
            element(&mut t, 0x680F_FF01, 1, 0),
            (k, None, 0x6000_1207, false, false)
        );
        refused(
            &mut t,
            0x680F_FF01,
            1,
            0,
            DmsgTransError::DirectionClosed { key: k },
        );
        discarded(&mut t, 0x780F_FF01, 1, 0);
        assert_eq!(send(&mut t, k, D | ERR), stamp_of(1, 0, 0));
        assert!(t.is_empty());
    }

    // ---- 4.3, none and R ----

    #[test]
    fn a_message_without_create_delete_or_state_is_one_way() {
        let mut t = T::new();
        assert_eq!(
            rx(&mut t, PING, 0, 0),
            Ok(Received::OneWay { parent: None })
        );
        assert_eq!(
            rx(&mut t, R | ERR, 0, 0),
            Ok(Received::OneWay { parent: None })
        );
        // No open state with that msgid: one-way as well.
        assert_eq!(
            rx(&mut t, PING, 42, 0),
            Ok(Received::OneWay { parent: None })
        );
        assert!(t.is_empty());
        // ABORT without a state: discarded.
        discarded(&mut t, A | PING, 42, 0);
        discarded(&mut t, A | R | PING, 0, 0);
    }

    #[test]
    fn a_streaming_element_dispatches_on_its_own_cmd_masked() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        // REVCIRC with circuit 0 means nothing; the mask 0x20FFFFFF drops it.
        assert_eq!(
            element(&mut t, RC | PING, 5, 0),
            (theirs(5), None, 0x0000_0101, false, false)
        );
        let k = open(&mut t, C | SPAN, None);
        element(&mut t, 0xA80F_FF01, 1, 0);
        // R|REVTRANS|ABORT|FLAG0 streaming on ours: REPLY kept, the rest dropped.
        assert_eq!(
            element(&mut t, R | RT | A | 0x0100_0000 | SHELL, 1, 0),
            (k, None, 0x2010_0101, false, false)
        );
        // Nothing changed by a streaming element.
        let s = t.get(k).unwrap();
        assert!(s.received_create() && !s.received_delete());
    }

    #[test]
    fn a_streaming_element_must_fit_its_state() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        let k = open(&mut t, C | SPAN, None);
        // REPLY on theirs, no REPLY on ours: misdirected.
        refused(
            &mut t,
            R | PING,
            5,
            0,
            DmsgTransError::Misdirected { key: theirs(5) },
        );
        refused(
            &mut t,
            RT | PING,
            1,
            0,
            DmsgTransError::Misdirected { key: k },
        );
        // A reply before the responder's CREATE.
        refused(
            &mut t,
            R | RT | PING,
            1,
            0,
            DmsgTransError::NotStarted { key: k },
        );
        discarded(&mut t, R | RT | A | PING, 1, 0);
    }

    // ---- 4.2: circuits ----

    #[test]
    fn the_parent_is_looked_up_in_ours_with_revcirc_and_in_theirs_without() {
        let mut t = T::new();
        let p_ours = open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SPAN, 3, 0); // theirs(3)
        element(&mut t, C | SPAN, 1, 0); // theirs(1): the same number as ours(1)
        assert_eq!(
            element(&mut t, C | RC | SHELL, 7, 1),
            (theirs(7), Some(p_ours), 0x8010_0101, true, false)
        );
        assert_eq!(
            element(&mut t, C | SHELL, 8, 1),
            (theirs(8), Some(theirs(1)), 0x8010_0101, true, false)
        );
        assert_eq!(
            element(&mut t, C | SHELL, 9, 3),
            (theirs(9), Some(theirs(3)), 0x8010_0101, true, false)
        );
        assert_eq!(t.get(theirs(7)).unwrap().parent(), Some(ours(1)));
        assert_eq!(t.get(theirs(9)).unwrap().parent(), Some(theirs(3)));
        // Elements under the right parent pass.
        assert_eq!(
            element(&mut t, D | RC | ERR, 7, 1),
            (theirs(7), Some(ours(1)), 0x4010_0101, false, false)
        );
        // A one-way message under a circuit goes to the parent (D7).
        assert_eq!(
            rx(&mut t, PING, 0, 3),
            Ok(Received::OneWay {
                parent: Some(theirs(3))
            })
        );
        assert_eq!(
            rx(&mut t, RC | PING, 0, 1),
            Ok(Received::OneWay {
                parent: Some(ours(1))
            })
        );
    }

    #[test]
    fn a_circuit_naming_nothing_open_is_discarded() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0);
        // Nothing at 99 in either set.
        discarded(&mut t, C | SHELL, 4, 99);
        discarded(&mut t, C | RC | SHELL, 4, 99);
        // 3 is open in theirs only: with REVCIRC it names ours(3), which is not open.
        discarded(&mut t, C | RC | SHELL, 4, 3);
        discarded(&mut t, PING, 0, 99);
        discarded(&mut t, 0x400F_FF01, 3, 99);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_element_whose_circuit_is_not_its_parent_is_wrong_parent() {
        let mut t = T::new();
        let p = open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SPAN, 3, 0); // theirs(3)
        element(&mut t, C | RC | SHELL, 7, 1); // theirs(7) under ours(1)
        let wrong = DmsgTransError::WrongParent { key: theirs(7) };
        refused(&mut t, 0x400F_FF01, 7, 0, wrong);
        refused(&mut t, 0x400F_FF01, 7, 3, wrong);
        refused(&mut t, PING, 7, 3, wrong);
        discarded(&mut t, 0x500F_FF01, 7, 3);
        // A top-level state named with a circuit.
        // (circuit 1 without REVCIRC names theirs(1), which is not open: discarded first.)
        discarded(&mut t, 0x400F_FF01, 3, 1);
        refused(
            &mut t,
            RC | 0x400F_FF01,
            3,
            1,
            DmsgTransError::WrongParent { key: theirs(3) },
        );
        // And a reply on our top-level one naming the peer's transaction as circuit.
        element(&mut t, 0xA80F_FF01, 1, 0);
        refused(
            &mut t,
            0x680F_FF01,
            1,
            3,
            DmsgTransError::WrongParent { key: p },
        );
    }

    // ---- D23: msgids ----

    #[test]
    fn msgids_count_from_1() {
        let mut t = T::new();
        assert_eq!(t.open(Cmd::from_raw(C | SPAN), None), Ok(stamp_of(1, 0, 0)));
        assert_eq!(t.open(Cmd::from_raw(C | SPAN), None), Ok(stamp_of(2, 0, 0)));
        // A transaction of theirs with number 3 does not hold ours(3).
        element(&mut t, C | SPAN, 3, 0);
        assert_eq!(open(&mut t, C | SPAN, None), ours(3));
        // A closed id is not given again right away: the counter goes on.
        send(&mut t, ours(1), D | ERR);
        element(&mut t, 0xE80F_FF01, 1, 0);
        assert!(t.get(ours(1)).is_none());
        assert_eq!(open(&mut t, C | SPAN, None), ours(4));
    }

    #[test]
    fn msgids_wrap_past_the_top_to_1_never_0_and_skip_open_ones() {
        let mut t = T::new();
        t.last_msgid = u64::MAX - 1;
        assert_eq!(open(&mut t, C | SPAN, None), ours(u64::MAX));
        assert_eq!(open(&mut t, C | SPAN, None), ours(1));
        assert_eq!(open(&mut t, C | SPAN, None), ours(2));
        // Wrap again with 1 and 2 still open (and u64::MAX): 3 is next.
        t.last_msgid = u64::MAX - 1;
        assert_eq!(open(&mut t, C | SPAN, None), ours(3));
        t.last_msgid = u64::MAX;
        assert_eq!(open(&mut t, C | SPAN, None), ours(4));
    }

    #[test]
    fn open_refuses_when_the_table_is_full_and_changes_nothing() {
        let mut t = DmsgTransactions::<1>::new();
        open(&mut t, C | SPAN, None);
        // The peer's transactions have a budget of their own: ours being full takes
        // nothing from it, and theirs being used takes nothing from ours.
        element(&mut t, C | SPAN, 9, 0);
        refused(&mut t, C | SPAN, 10, 0, DmsgTransError::TableFull);
        send_refused(
            &mut t,
            |t| t.open(Cmd::from_raw(C | SPAN), None),
            DmsgSendError::TableFull,
        );
        // The failed open used no msgid.
        send(&mut t, ours(1), D | ERR);
        element(&mut t, 0xE80F_FF01, 1, 0);
        assert_eq!(open(&mut t, C | SPAN, None), ours(2));
    }

    #[test]
    fn a_full_side_does_not_starve_the_other() {
        let mut t = DmsgTransactions::<2>::new();
        open(&mut t, C | SPAN, None);
        open(&mut t, C | SPAN, None);
        // Two of ours fill our budget; the peer's two still fit.
        element(&mut t, C | SPAN, 1, 0);
        element(&mut t, C | SPAN, 2, 0);
        assert_eq!(t.len(), 4);
        refused(&mut t, C | SPAN, 3, 0, DmsgTransError::TableFull);
        send_refused(
            &mut t,
            |t| t.open(Cmd::from_raw(C | SPAN), None),
            DmsgSendError::TableFull,
        );
    }

    // ---- 4.2 / 4.4 / 4.5: sending ----

    #[test]
    fn stamps_carry_revtrans_revcirc_and_the_parent_msgid() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0); // theirs(3)
        let p = open(&mut t, C | SPAN, None); // ours(1)
        // Ours at the top: no REV flags.
        assert_eq!(send(&mut t, p, PING), stamp_of(1, 0, 0));
        // Theirs at the top: REVTRANS.
        assert_eq!(send(&mut t, theirs(3), C | R | ERR), stamp_of(3, 0, RT));
        // Ours under theirs(3): REVCIRC, circuit 3.
        assert_eq!(
            t.open(Cmd::from_raw(C | SHELL), Some(theirs(3))),
            Ok(stamp_of(2, 3, RC))
        );
        assert_eq!(send(&mut t, ours(2), PING), stamp_of(2, 3, RC));
        // Ours under ours(1): neither.
        assert_eq!(
            t.open(Cmd::from_raw(C | SHELL), Some(p)),
            Ok(stamp_of(3, 1, 0))
        );
        // Theirs under ours(1): REVTRANS only.
        element(&mut t, C | RC | SHELL, 7, 1);
        assert_eq!(send(&mut t, theirs(7), C | R | ERR), stamp_of(7, 1, RT));
        // Theirs under theirs(3): both.
        element(&mut t, C | SHELL, 8, 3);
        assert_eq!(
            send(&mut t, theirs(8), C | R | ERR),
            stamp_of(8, 3, RT | RC)
        );
        assert_eq!(send(&mut t, theirs(8), R | PING), stamp_of(8, 3, RT | RC));
        // Stamps are recorded.
        let s = t.get(theirs(8)).unwrap();
        assert!(s.sent_create() && !s.sent_delete());
    }

    #[test]
    fn nothing_is_sent_after_our_delete() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        assert_eq!(send(&mut t, theirs(5), C | D | R | ERR), stamp_of(5, 0, RT));
        assert!(t.get(theirs(5)).unwrap().sent_delete());
        let before = snapshot(&t);
        assert_eq!(
            send(&mut t, theirs(5), R | PING),
            SendVerdict::DroppedClosed
        );
        assert_eq!(
            send(&mut t, theirs(5), D | R | ERR),
            SendVerdict::DroppedClosed
        );
        assert_eq!(snapshot(&t), before);
        let k = open(&mut t, C | D | SPAN, None);
        assert_eq!(send(&mut t, k, D | A | ERR), SendVerdict::DroppedClosed);
    }

    #[test]
    fn nothing_is_sent_on_a_dying_transaction() {
        let mut t = T::new();
        let p = open(&mut t, C | SPAN, None);
        element(&mut t, C | SPAN, 5, 0);
        element(&mut t, C | RC | SHELL, 6, 1); // theirs(6) under ours(1)
        assert!(!t.set_dying(theirs(99)));
        assert!(t.set_dying(p));
        assert!(t.get(p).unwrap().is_dying());
        assert!(t.get(theirs(6)).unwrap().is_dying());
        assert!(!t.get(theirs(5)).unwrap().is_dying());
        let before = snapshot(&t);
        assert_eq!(send(&mut t, p, PING), SendVerdict::DroppedDying);
        assert_eq!(
            send(&mut t, theirs(6), C | R | ERR),
            SendVerdict::DroppedDying
        );
        // A new one under a dying parent is not opened.
        assert_eq!(
            t.open(Cmd::from_raw(C | SHELL), Some(p)),
            Ok(SendVerdict::DroppedDying)
        );
        assert_eq!(snapshot(&t), before);
        // One the peer opens under it inherits "dying" (DMSG.md 4.4).
        element(&mut t, C | RC | SHELL, 7, 1);
        assert!(t.get(theirs(7)).unwrap().is_dying());
        element(&mut t, C | SHELL, 8, 5);
        assert!(!t.get(theirs(8)).unwrap().is_dying());
        // lose_link: everything.
        assert_eq!(send(&mut t, theirs(5), C | R | ERR), stamp_of(5, 0, RT));
        t.lose_link();
        assert!(t.iter().all(DmsgState::is_dying));
        assert_eq!(send(&mut t, theirs(5), R | PING), SendVerdict::DroppedDying);
        assert_eq!(
            send(&mut t, theirs(8), C | R | ERR),
            SendVerdict::DroppedDying
        );
        assert_eq!(
            t.open(Cmd::from_raw(C | SHELL), Some(theirs(5))),
            Ok(SendVerdict::DroppedDying)
        );
    }

    #[test]
    fn send_errors_change_nothing() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        let k = open(&mut t, C | SPAN, None);
        // Our CREATE went out with open().
        send_refused(
            &mut t,
            |t| t.on_send(k, Cmd::from_raw(C | SHELL)),
            DmsgSendError::AlreadyCreated { key: k },
        );
        // Our first element on theirs(5) needs CREATE.
        send_refused(
            &mut t,
            |t| t.on_send(theirs(5), Cmd::from_raw(R | PING)),
            DmsgSendError::NotCreated { key: theirs(5) },
        );
        send_refused(
            &mut t,
            |t| t.on_send(theirs(5), Cmd::from_raw(R | D | ERR)),
            DmsgSendError::NotCreated { key: theirs(5) },
        );
        send(&mut t, theirs(5), C | R | ERR);
        send_refused(
            &mut t,
            |t| t.on_send(theirs(5), Cmd::from_raw(C | R | ERR)),
            DmsgSendError::AlreadyCreated { key: theirs(5) },
        );
        // REPLY exactly on theirs.
        send_refused(
            &mut t,
            |t| t.on_send(theirs(5), Cmd::from_raw(PING)),
            DmsgSendError::WrongDirection { key: theirs(5) },
        );
        send_refused(
            &mut t,
            |t| t.on_send(k, Cmd::from_raw(R | PING)),
            DmsgSendError::WrongDirection { key: k },
        );
        send_refused(
            &mut t,
            |t| t.open(Cmd::from_raw(C | R | SPAN), None),
            DmsgSendError::WrongDirection { key: ours(0) },
        );
        // Not open.
        send_refused(
            &mut t,
            |t| t.on_send(ours(5), Cmd::from_raw(PING)),
            DmsgSendError::NoSuchTransaction { key: ours(5) },
        );
        send_refused(
            &mut t,
            |t| t.open(Cmd::from_raw(C | SHELL), Some(theirs(1))),
            DmsgSendError::NoSuchParent { key: theirs(1) },
        );
        assert_eq!(open(&mut t, C | SPAN, None), ours(2));
    }

    // ---- 4.4: answers ----

    #[test]
    fn answers_on_a_transaction_the_peer_opened() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 5, 0);
        assert_eq!(answer(&t, theirs(5), false), Some(0xA80F_FF01));
        assert_eq!(answer(&t, theirs(5), true), Some(0xE80F_FF01));
        send(&mut t, theirs(5), 0xA80F_FF01);
        assert_eq!(answer(&t, theirs(5), false), Some(0x280F_FF01));
        assert_eq!(answer(&t, theirs(5), true), Some(0x680F_FF01));
        send(&mut t, theirs(5), 0x680F_FF01);
        assert_eq!(answer(&t, theirs(5), false), None);
        assert_eq!(answer(&t, theirs(5), true), None);
        assert_eq!(answer(&t, theirs(6), true), None);
    }

    #[test]
    fn answers_on_a_transaction_of_ours() {
        let mut t = T::new();
        let k = open(&mut t, C | SPAN, None);
        assert_eq!(answer(&t, k, true), Some(0x400F_FF01));
        assert_eq!(answer(&t, k, false), Some(0x000F_FF01));
        send(&mut t, k, 0x400F_FF01);
        assert_eq!(answer(&t, k, true), None);
        assert_eq!(answer(&t, theirs(1), true), None);
    }

    #[test]
    fn answers_under_a_parent_the_peer_opened_add_revcirc() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0); // theirs(3)
        let p = open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SHELL, 8, 3); // theirs(8) under theirs(3)
        element(&mut t, C | RC | SHELL, 9, 1); // theirs(9) under ours(1)
        let mine = open(&mut t, C | SHELL, Some(theirs(3))); // ours(2) under theirs(3)
        assert_eq!(answer(&t, theirs(8), false), Some(0xAC0F_FF01));
        assert_eq!(answer(&t, theirs(8), true), Some(0xEC0F_FF01));
        send(&mut t, theirs(8), C | R | ERR);
        assert_eq!(answer(&t, theirs(8), false), Some(0x2C0F_FF01));
        assert_eq!(answer(&t, theirs(8), true), Some(0x6C0F_FF01));
        assert_eq!(answer(&t, mine, true), Some(0x440F_FF01));
        assert_eq!(answer(&t, mine, false), Some(0x040F_FF01));
        // Under a parent of ours: no REVCIRC.
        assert_eq!(answer(&t, theirs(9), false), Some(0xA80F_FF01));
        let sub = open(&mut t, C | SHELL, Some(p));
        assert_eq!(answer(&t, sub, true), Some(0x400F_FF01));
    }

    // ---- removal ----

    #[test]
    fn a_finished_parent_stays_while_a_child_hangs_under_it() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0); // P = theirs(3)
        let c = open(&mut t, C | SHELL, Some(theirs(3))); // C = ours(1) under P
        // The child's reply direction finishes while P is open (P is the sender's own:
        // no REVCIRC).
        assert_eq!(
            element(&mut t, 0xE80F_FF01, 1, 3),
            (c, Some(theirs(3)), 0xE010_0101, false, false)
        );
        // P finishes: both DELETEs.
        element(&mut t, 0x400F_FF01, 3, 0);
        assert_eq!(send(&mut t, theirs(3), 0xE80F_FF01), stamp_of(3, 0, RT));
        // Kept for the child, but no longer open.
        assert_eq!(t.len(), 2);
        assert!(t.get(theirs(3)).is_none());
        assert!(t.iter().any(|s| s.key() == theirs(3)));
        assert_eq!(answer(&t, theirs(3), true), None);
        send_refused(
            &mut t,
            |t| t.open(Cmd::from_raw(C | SHELL), Some(theirs(3))),
            DmsgSendError::NoSuchParent { key: theirs(3) },
        );
        // The child still names it.
        assert_eq!(send(&mut t, c, PING), stamp_of(1, 3, RC));
        // The child goes: so does the parent.
        assert_eq!(send(&mut t, c, D | RC | ERR), stamp_of(1, 3, RC));
        assert!(t.is_empty());
    }

    #[test]
    fn a_kept_parent_still_carries_its_childrens_elements_but_takes_no_new_child() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0); // P = theirs(3)
        let c = open(&mut t, C | SHELL, Some(theirs(3))); // C = ours(1) under P
        element(&mut t, 0xA80F_FF01, 1, 3); // the peer answers C, keeps it open
        element(&mut t, 0x400F_FF01, 3, 0); // P: the peer's DELETE …
        send(&mut t, theirs(3), 0xE80F_FF01); // … and ours: P is kept for C only
        assert!(t.get(theirs(3)).is_none());
        // A new child under the finished parent races its close: discarded.
        let before = snapshot(&t);
        assert_eq!(rx(&mut t, C | SHELL, 7, 3), Ok(Received::Discarded));
        assert_eq!(snapshot(&t), before);
        // The existing child's close still reaches it (it would be stuck otherwise).
        assert_eq!(
            element(&mut t, 0x680F_FF01, 1, 3),
            (c, Some(theirs(3)), 0x6010_0101, false, false)
        );
        send(&mut t, c, D | ERR);
        assert!(t.is_empty(), "the child and then its parent are gone");
    }

    #[test]
    fn a_kept_parent_keeps_its_msgid_out_of_use() {
        let mut t = T::new();
        let p = open(&mut t, C | SPAN, None); // ours(1)
        let c = open(&mut t, C | SHELL, Some(p)); // ours(2)
        send(&mut t, p, D | ERR);
        element(&mut t, 0xE80F_FF01, 1, 0);
        assert!(t.get(p).is_none());
        assert_eq!(t.len(), 2);
        t.last_msgid = 0;
        // 1 is kept for the child, 2 is the child: 3.
        assert_eq!(open(&mut t, C | SPAN, None), ours(3));
        let _ = c;
    }

    // ---- 4.6: link loss ----

    fn lost<const N: usize>(
        t: &mut DmsgTransactions<N>,
    ) -> Option<(DmsgKey, Option<DmsgKey>, u32, u32)> {
        t.take_lost()
            .map(|l| (l.key, l.parent, l.cmd.raw(), l.effective_cmd.raw()))
    }

    #[test]
    fn take_lost_walks_in_pre_order_not_creation_order() {
        let mut t = T::new();
        let p1 = open(&mut t, C | SPAN, None); // P1 = ours(1)
        element(&mut t, C | SHELL, 9, 0); // P2 = theirs(9)
        element(&mut t, C | RC | PING, 4, 1); // C1 = theirs(4) under P1
        assert_eq!(lost(&mut t), None, "nothing is dying yet");
        t.lose_link();
        // P1: ours, the peer never sent CREATE: ERR|C|D|R|A|REVTRANS.
        assert_eq!(lost(&mut t), Some((p1, None, 0xF80F_FF01, 0xE000_1207)));
        assert_eq!(
            lost(&mut t),
            Some((theirs(4), Some(p1), 0x500F_FF01, 0x4000_0101))
        );
        assert_eq!(
            lost(&mut t),
            Some((theirs(9), None, 0x500F_FF01, 0x4010_0101))
        );
        assert_eq!(lost(&mut t), None);
        // Every termination given, the lost link's table is emptied: nothing could ever
        // close what was left.
        assert!(t.is_empty());
    }

    #[test]
    fn take_lost_orders_a_deeper_tree() {
        let mut t = T::new();
        let p1 = open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SPAN, 9, 0); // P2 = theirs(9)
        element(&mut t, C | SHELL, 10, 9); // X = theirs(10) under P2
        element(&mut t, C | RC | SHELL, 4, 1); // C1 = theirs(4) under P1
        element(&mut t, C | SHELL, 5, 4); // G = theirs(5) under C1
        let c2 = open(&mut t, C | SHELL, Some(p1)); // C2 = ours(2) under P1
        t.lose_link();
        let mut order = Vec::new();
        while let Some(l) = t.take_lost() {
            order.push(l.key);
        }
        assert_eq!(order, [p1, theirs(4), theirs(5), c2, theirs(9), theirs(10)]);
    }

    #[test]
    fn take_lost_follows_the_tree_not_the_slots() {
        let mut t = T::new();
        element(&mut t, C | D | SPAN, 50, 0); // filler, slot 0
        element(&mut t, C | D | SPAN, 51, 0); // filler, slot 1
        let p = open(&mut t, C | SPAN, None); // P = ours(1), slot 2
        element(&mut t, C | SPAN, 9, 0); // Q = theirs(9), slot 3
        element(&mut t, C | RC | SHELL, 4, 1); // C1 = theirs(4) under P, slot 4
        // Free slot 0: the grandchild G takes it, ahead of its ancestors.
        send(&mut t, theirs(50), 0xE80F_FF01);
        element(&mut t, C | SHELL, 5, 4); // G = theirs(5) under C1
        // Free slot 1: a later top-level sibling takes it, ahead of P and Q.
        send(&mut t, theirs(51), 0xE80F_FF01);
        element(&mut t, C | SPAN, 10, 0); // Q2 = theirs(10)
        assert_eq!(t.len(), 5);
        t.lose_link();
        let mut order = Vec::new();
        while let Some(l) = t.take_lost() {
            order.push(l.key);
        }
        assert_eq!(order, [p, theirs(4), theirs(5), theirs(9), theirs(10)]);
    }

    #[test]
    fn take_lost_gives_siblings_in_creation_order_whatever_their_slots() {
        let mut t = T::new();
        element(&mut t, C | D | SPAN, 50, 0); // filler, slot 0
        let p = open(&mut t, C | SPAN, None); // P = ours(1), slot 1
        element(&mut t, C | RC | SHELL, 4, 1); // C1 = theirs(4) under P, slot 2
        send(&mut t, theirs(50), 0xE80F_FF01);
        let c2 = open(&mut t, C | SHELL, Some(p)); // C2 = ours(2) under P, slot 0
        t.lose_link();
        let mut order = Vec::new();
        while let Some(l) = t.take_lost() {
            order.push(l.key);
        }
        assert_eq!(order, [p, theirs(4), c2]);
    }

    #[test]
    fn set_dying_limits_take_lost_to_the_subtree() {
        let mut t = T::new();
        let p1 = open(&mut t, C | SPAN, None); // ours(1)
        element(&mut t, C | SPAN, 9, 0); // theirs(9)
        element(&mut t, C | RC | SHELL, 4, 1); // theirs(4) under ours(1)
        element(&mut t, C | SHELL, 5, 4); // theirs(5) under theirs(4)
        assert!(t.set_dying(theirs(4)));
        let mut order = Vec::new();
        while let Some(l) = t.take_lost() {
            order.push(l.key);
        }
        assert_eq!(order, [theirs(4), theirs(5)]);
        assert!(!t.get(p1).unwrap().is_dying());
        assert!(!t.get(theirs(9)).unwrap().is_dying());
    }

    #[test]
    fn take_lost_skips_what_the_peer_closed_and_sets_the_flags_of_4_6() {
        let mut t = T::new();
        // ours(1): answered by the peer -> 0x780FFF01 (measured against libdmsg).
        let a = open(&mut t, C | SPAN, None);
        element(&mut t, 0xA80F_FF01, 1, 0);
        // ours(2): the peer closed its direction -> skipped.
        let b = open(&mut t, C | SPAN, None);
        element(&mut t, 0xE80F_FF01, 2, 0);
        // theirs(3): C|D received -> skipped.
        element(&mut t, C | D | SPAN, 3, 0);
        // theirs(4): open, and we closed our side: the simulated DELETE finishes it.
        element(&mut t, C | SPAN, 4, 0);
        send(&mut t, theirs(4), 0xE80F_FF01);
        t.lose_link();
        assert_eq!(lost(&mut t), Some((a, None, 0x780F_FF01, 0x6000_1207)));
        assert_eq!(
            lost(&mut t),
            Some((theirs(4), None, 0x500F_FF01, 0x4000_1207))
        );
        // b and theirs(3) were skipped (their peer had closed), theirs(4) finished; at
        // the end the lost link's table is empty.
        assert_eq!(t.get(b).map(|s| s.received_delete()), Some(true));
        assert!(t.get(theirs(4)).is_none());
        assert_eq!(lost(&mut t), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_kept_parent_is_not_simulated_but_its_child_is() {
        let mut t = T::new();
        element(&mut t, C | SPAN, 3, 0); // theirs(3)
        let c = open(&mut t, C | SHELL, Some(theirs(3))); // ours(1) under it
        element(&mut t, 0x400F_FF01, 3, 0);
        send(&mut t, theirs(3), 0xE80F_FF01);
        assert_eq!(t.len(), 2);
        t.lose_link();
        assert_eq!(
            lost(&mut t),
            Some((c, Some(theirs(3)), 0xF80F_FF01, 0xE010_0101))
        );
        assert_eq!(lost(&mut t), None);
    }

    // ---- misc ----

    #[test]
    fn keys_and_errors_display() {
        use std::string::ToString;
        assert_eq!(theirs(5).to_string(), "theirs msgid 0x0000000000000005");
        assert_eq!(ours(0x10).to_string(), "ours msgid 0x0000000000000010");
        let k = ours(1);
        for (e, text) in [
            (
                DmsgTransError::DuplicateCreate { key: k },
                "CREATE for ours msgid",
            ),
            (DmsgTransError::ZeroMsgid, "CREATE with msgid 0"),
            (DmsgTransError::Misdirected { key: k }, "REPLY and REVTRANS"),
            (
                DmsgTransError::NoSuchTransaction { key: k },
                "which is not open",
            ),
            (DmsgTransError::NotStarted { key: k }, "before its CREATE"),
            (
                DmsgTransError::DirectionClosed { key: k },
                "after its DELETE",
            ),
            (DmsgTransError::WrongParent { key: k }, "not the parent"),
            (DmsgTransError::TableFull, "full"),
        ] {
            assert!(e.to_string().contains(text), "{e}");
        }
        for (e, text) in [
            (DmsgSendError::NoSuchTransaction { key: k }, "is not open"),
            (DmsgSendError::NoSuchParent { key: k }, "parent ours"),
            (DmsgSendError::WrongDirection { key: k }, "REPLY"),
            (DmsgSendError::AlreadyCreated { key: k }, "sent already"),
            (DmsgSendError::NotCreated { key: k }, "needs CREATE"),
            (DmsgSendError::TableFull, "full"),
        ] {
            assert!(e.to_string().contains(text), "{e}");
        }
    }

    #[test]
    fn new_and_default_are_empty() {
        const EMPTY: DmsgTransactions<4> = DmsgTransactions::new();
        assert!(EMPTY.is_empty());
        let d = DmsgTransactions::<4>::default();
        assert!(d.is_empty() && d.iter().next().is_none());
    }
}
