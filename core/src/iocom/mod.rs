//! One connection: receive decoder, transmit queue and transaction tables ([`Iocom`]).

use core::fmt;

use heapless::Vec as BoundedVec;

mod channel;
mod dmsg;
mod liveness;

pub use dmsg::{DmsgEvent, DmsgIocom};

use channel::{Channel, LinkState, RxStep};
pub use liveness::Liveness;
use liveness::{TransDeadline, next_deadline};
use rand_core::Rng;

use crate::ioq::rx::RxFailure;
use crate::ioq::tx::{Room, TxError};
use crate::setup::LinkSetup;
use crate::stream::StreamMode;
use crate::time::{Instant, earliest};
use crate::trans::{
    Direction, DmsgSendError, DmsgTransError, MSG_ERR_LOSTLINK, Side, TransError, TransKey,
    TransTable, TransUpdate, final_reply_cmd, streaming_reply_cmd, transaction_reply_cmd,
};
use crate::wire::limits::BASE_HEADER_LEN;
use crate::wire::{
    Cmd, Crc32c, MSG_ERR_TABLE_FULL, MSG_ERR_UNKNOWN, MessageView, MsgFlags, MsgHeader,
    ReceivedHeader, WireOrder,
};

/// Most commands one connection can [accept](Iocom::accept).
pub const ACCEPT_MAX: usize = 16;

/// The caller's memory for one connection: three buffers of one type `M` — `Vec<u8>`,
/// `Box<[u8]>`, `[u8; N]`, `&mut [u8]`, anything that is `AsRef<[u8]> + AsMut<[u8]>`.
#[derive(Debug)]
pub struct IocomMemory<M> {
    /// Receive FIFO (≥ 2048 bytes; 8192 is the C size; a protected mode needs one cipher
    /// record more: 32 bytes for `cbc`, 80 for `gcm`).
    pub fifo: M,
    /// Aux storage for messages larger than the FIFO (65536 accepts all; may be empty).
    pub aux: M,
    /// Transmit ring (2048 + 65536 bytes can queue any legal message; a `gcm` message
    /// takes 5/4 of its size, about 84 KiB for the largest).
    pub tx_ring: M,
}

/// Why [`Iocom::new`] refused its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryError {
    /// The receive FIFO is below the 2048-byte header limit plus one cipher record of
    /// the stream mode.
    FifoTooSmall {
        /// Its size.
        len: usize,
        /// The size the mode needs.
        needed: usize,
    },
    /// The transmit ring cannot hold a header-only reply in the stream mode (32 bytes;
    /// one 80-byte record for `gcm`), or is not a whole number of 32-byte units for
    /// `cbc`, which encrypts in place.
    TxRingUnfit {
        /// Its size.
        len: usize,
        /// The stream mode.
        mode: StreamMode,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FifoTooSmall { len, needed } => write!(
                f,
                "receive FIFO of {len} bytes, the connection needs at least {needed}"
            ),
            Self::TxRingUnfit { len, mode } => write!(
                f,
                "transmit ring of {len} bytes does not fit stream mode {mode} \
                 (it must hold a header-only reply; cbc needs a multiple of 32)"
            ),
        }
    }
}

impl core::error::Error for MemoryError {}

/// How a connection behaves beyond its memory and stream mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The byte order of the headers we send (receivers accept both, §3.2).
    pub order: WireOrder,
    /// Keepalive, dead-peer and write-stall rules ([`Liveness::default`]: on).
    pub liveness: Liveness,
}

impl Default for Config {
    /// Little-endian headers (what every C node sends), the default [`Liveness`].
    fn default() -> Self {
        Self {
            order: WireOrder::Little,
            liveness: Liveness::default(),
        }
    }
}

/// How the link ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// The input ended at a message boundary.
    Closed,
    /// The received stream failed: the C code's synthesised `LNK_ERROR`
    /// ([`RxFailure::lnk_error`]) carries its IOQ code. Also the transmit side's IVWRAP
    /// (18), at the receive offset where it happened.
    Failed(RxFailure),
    /// The driver reported a transport failure (SOCK, 3).
    TransportFailed,
    /// A message's aux data fit neither the FIFO nor the aux storage, and the application
    /// did not lend bigger storage after [`Event::AuxStorageTooSmall`]: the link's memory
    /// bound was hit.
    AuxStorageTooSmall {
        /// Aux bytes the message carries.
        needed: usize,
        /// Aux storage size.
        available: usize,
    },
    /// No byte arrived for [`Liveness::dead`] after a keepalive ping (h2msg's PEERTIMEOUT,
    /// 30): the peer or the path to it is gone.
    PeerTimeout,
    /// Bytes waited to be written and the transport took none for [`Liveness::stall`]
    /// (h2msg's WRSTALL, 31): the peer does not read.
    WriteStalled,
    /// A received DMSG element broke the transaction rules (dmsg.md 4.3; TRANS, 17):
    /// libdmsg asserts here, h2msg ends only this link (D5).
    TransactionViolation(DmsgTransError),
}

/// What [`Iocom::poll_event`] hands the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A received message for the application: a command it accepted, or a reply to one.
    /// Borrowed until the next `&mut` call; copy what you need first.
    Message {
        /// The message.
        msg: MessageView<'a>,
        /// What it did to the transaction table.
        update: TransUpdate,
    },
    /// A received element broke the transaction rules and was dropped; the link goes on.
    Rejected {
        /// Its header.
        header: MsgHeader,
        /// The rule it broke.
        error: TransError,
    },
    /// The next message's aux data fits neither FIFO nor aux storage. Said once: lend
    /// bigger storage with [`Iocom::replace_aux_storage`] before the next `poll_event`, or
    /// the link goes down with [`LinkEnd::AuxStorageTooSmall`].
    AuxStorageTooSmall {
        /// Aux bytes needed.
        needed: usize,
        /// Aux storage size.
        available: usize,
    },
    /// An open transaction ended because the link was lost (§10 item 7): a local
    /// `LNK_ERROR` with ABORT|DELETE (plus REPLY, and CREATE if no reply had come, for a
    /// transaction we opened) and error `LOSTLINK`, as if the peer had ended it.
    Aborted {
        /// The transaction.
        key: TransKey,
        /// The synthesised element: its flags, msgid, error `LOSTLINK` (0x21).
        header: MsgHeader,
    },
    /// A transaction we opened passed its [deadline](Iocom::set_deadline): an ABORT was
    /// sent (if the link had room for it) and the transaction is over for the
    /// application — later replies to it are dropped.
    TimedOut {
        /// The transaction.
        key: TransKey,
    },
    /// The link is down; the last event.
    LinkDown(LinkEnd),
}

/// What the connection waits for (§7's RREQ / WIDLE / EOF, as a value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Received bytes are wanted ([`Iocom::read_buf`] has room).
    pub read: bool,
    /// Bytes wait to be written ([`Iocom::pending`]).
    pub write: bool,
    /// Nothing more will happen: the link is down, its last event delivered and nothing
    /// is left to write.
    pub finished: bool,
}

/// The C iocom flags (§7), for diagnostics and C callers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IocomFlags(u32);

impl IocomFlags {
    pub(crate) const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// Stop: the link is down.
    pub const EOF: u32 = 0x01;
    /// The reader wants input.
    pub const RREQ: u32 = 0x02;
    /// The writer was told the transport is full.
    pub const WREQ: u32 = 0x04;
    /// Nothing queued for transmit.
    pub const WIDLE: u32 = 0x08;

    /// The bits.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if every bit of `mask` is set.
    #[must_use]
    pub const fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// Why [`Iocom::send`] (or a helper) did not send. Nothing changed in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The transmit queue refused it (sizes, room).
    Tx(TxError),
    /// The transaction rules refused it.
    Transaction(TransError),
    /// No free msgid for a new transaction: all `capacity` entries of our side's
    /// transaction table are open (the connection's `T`).
    NoFreeMsgid {
        /// How many transactions of ours the table holds (`T`).
        capacity: usize,
    },
    /// [`Iocom::set_deadline`] named no open transaction of ours.
    NoSuchTransaction,
    /// The link is down.
    LinkDown,
    /// A DMSG transaction refused the element (not open, or the table is full).
    Dmsg(DmsgSendError),
    /// Our direction of that DMSG transaction already sent DELETE: nothing more may go.
    DirectionClosed,
    /// [`DmsgIocom::send_one_way`] was given CREATE, DELETE or ABORT.
    NotOneWay,
}

impl From<TxError> for SendError {
    fn from(e: TxError) -> Self {
        Self::Tx(e)
    }
}

impl From<TransError> for SendError {
    fn from(e: TransError) -> Self {
        Self::Transaction(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tx(e) => e.fmt(f),
            Self::Transaction(e) => e.fmt(f),
            Self::NoFreeMsgid { capacity } => write!(
                f,
                "no free msgid: all {capacity} transactions this side may open are open; \
                 wait for one to end (its final reply) or build the connection with a \
                 larger table (the `T` of `Iocom`; h2msg-std: `LinkOptions::transactions`)"
            ),
            Self::NoSuchTransaction => f.write_str("no open transaction of ours has that msgid"),
            Self::LinkDown => f.write_str("the link is down"),
            Self::Dmsg(e) => e.fmt(f),
            Self::DirectionClosed => {
                f.write_str("our direction of this transaction already sent DELETE")
            }
            Self::NotOneWay => f.write_str("a one-way message carries no CREATE, DELETE or ABORT"),
        }
    }
}

impl core::error::Error for SendError {}

/// [`Iocom::accept`] was given more than [`ACCEPT_MAX`] commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptListFull;

impl fmt::Display for AcceptListFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a connection accepts at most {ACCEPT_MAX} commands")
    }
}

impl core::error::Error for AcceptListFull {}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IocomStats {
    /// Messages decoded.
    pub received: u64,
    /// Messages queued for sending, auto-answers included.
    pub sent: u64,
    /// Commands answered by the connection itself (pings, unknown commands).
    pub auto_replies: u64,
    /// Received messages dropped (padding, unknown replies, late aborts, rule breaks).
    pub dropped: u64,
}

/// What one received message turned into.
enum Step {
    Nothing,
    Handled,
    Deliver(TransUpdate),
    Emit(Event<'static>),
}

/// One connection (§7): a receive decoder, a transmit queue and a transaction table, with
/// the link-level rules of the era applied between them, behind one sans-IO API.
///
/// # Two sides
///
/// The **driver** moves bytes: it reads into [`Iocom::read_buf`] (or [`Iocom::feed`]s
/// bytes), writes [`Iocom::pending`] and reports with [`Iocom::advance_write`], tells the
/// end of input ([`Iocom::end_input`]) or a transport failure
/// ([`Iocom::transport_failed`]), and asks [`Iocom::interest`] what to wait for — the
/// C flags RREQ, WREQ, WIDLE and EOF as a value ([`Iocom::flags`] gives the bits).
///
/// The **application** pulls [`Event`]s from [`Iocom::poll_event`] and sends with
/// [`Iocom::send`], [`Iocom::open`], [`Iocom::reply`] and [`Iocom::abort`].
///
/// # What the connection answers by itself
///
/// | Received | Done | Why |
/// |---|---|---|
/// | `LNK_PAD` | dropped | one-way filler (§4.2) |
/// | `LNK_ERROR` | dropped | only ever synthesised locally (§5.1), exempt from 0x20 (§8.3) |
/// | `LNK_PING` command | final reply, error 0 | so a peer can measure liveness (a 2012 C node answers 0x20 instead) |
/// | a command not [accepted](Iocom::accept), or with AUXOOB | final reply, error 0x20 | §8.3, §11 S1 |
/// | a reply to a command not accepted | dropped | §11 T4 (the C tools crash here) |
/// | an element that breaks the transaction rules | dropped, [`Event::Rejected`] | §8.1 |
/// | a request (CREATE) that does not fit the transaction table | final reply REPLY\|CREATE\|DELETE, error [`MSG_ERR_TABLE_FULL`] (0x22), and [`Event::Rejected`] | h2msg's choice: the peer's request fails at once |
/// | a late ABORT\|DELETE | dropped | §8.1 |
///
/// Auto-answers are final replies with the seed era's flag rules
/// ([`final_reply_cmd`]) and do not enter the transaction
/// table. To always be able to answer, the connection reads a message only while the
/// transmit queue has room for a header-only reply: a peer that does not read its replies
/// stalls its own requests, and memory stays bounded.
///
/// # Link loss
///
/// When the stream fails, ends, or the transport fails, every open transaction is reported
/// as [`Event::Aborted`] (a local ABORT|DELETE with error
/// [`MSG_ERR_LOSTLINK`], so no caller waits forever),
/// then one [`Event::LinkDown`] — after which `poll_event` returns `None`. Queued transmit
/// bytes are discarded on a failure (as the C code does) but kept after a clean end of
/// input, so replies already queued can still be flushed.
///
/// # Stream modes
///
/// A connection is built in the stream mode its [`LinkSetup`] carries — plaintext `seed`,
/// or `cbc` / `gcm` negotiated from the handshake's session — and keeps it for its whole
/// life; the driver's calls are the same in every mode (the bytes it moves are simply
/// ciphertext). A failing protected stream ends the link like any receive failure, with
/// MSGSEQ (15), MACFAIL (19) or IVWRAP (18) in [`LinkEnd::Failed`]. The crate docs show
/// the whole lifecycle.
///
/// # Time
///
/// The connection never reads a clock. [`Iocom::poll_timeout`] says when it next needs the
/// time, [`Iocom::handle_timeout`] gives it (see [`Instant`](crate::Instant)); on that seam run the
/// [`Liveness`] rules — keepalive pings after `idle`, [`LinkEnd::PeerTimeout`] after
/// `dead` more, [`LinkEnd::WriteStalled`] when writes make no progress for `stall` — and
/// transaction deadlines ([`Iocom::set_deadline`], [`Event::TimedOut`]). The seed era had
/// no timer at all (the C loop's 5 s poll timeout had no protocol meaning, §7):
/// [`Liveness::OFF`] gives exactly that.
///
/// `M` is the buffer type of [`IocomMemory`], `R` the salt RNG, `C` the CRC-32C engine,
/// `T` the capacity of each of the two transaction tables (ours and the peer's).
pub struct Iocom<M, R, C, const T: usize> {
    ch: Channel<M, R, C, ReceivedHeader, MsgHeader>,
    /// Transactions we opened. Separate from `remote` so that neither side's load can
    /// starve the other's (a shared table filled by our own requests would refuse every
    /// request of the peer, and both ends would wait for each other).
    local: TransTable<T>,
    /// Transactions the peer opened.
    remote: TransTable<T>,
    accepted: BoundedVec<u32, ACCEPT_MAX>,
    last_msgid: u32,
    mode: StreamMode,
    /// The msgid of our keepalive ping while its transaction is open: its reply is the
    /// connection's own, never the application's.
    keepalive: Option<u32>,
    deadlines: BoundedVec<TransDeadline, T>,
}

impl<M, R, C, const T: usize> fmt::Debug for Iocom<M, R, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iocom")
            .field("channel", &self.ch)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl<M, R, C, const T: usize> Iocom<M, R, C, T>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    /// A connection over the caller's memory, in the stream mode of `setup`, with the
    /// default [`Config`] (little-endian headers, default [`Liveness`]). It accepts
    /// `LNK_PING` replies; [`accept`](Self::accept) the commands the application handles.
    ///
    /// # Errors
    /// [`MemoryError`] if the memory does not fit the mode: the FIFO below 2048 bytes plus
    /// one cipher record, the transmit ring unable to hold a header-only reply.
    pub fn new(
        setup: LinkSetup,
        memory: IocomMemory<M>,
        rng: R,
        crc: C,
    ) -> Result<Self, MemoryError> {
        Self::with_config(setup, memory, rng, crc, Config::default())
    }

    /// Like [`new`](Self::new), with a [`Config`].
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_config(
        setup: LinkSetup,
        memory: IocomMemory<M>,
        rng: R,
        crc: C,
        config: Config,
    ) -> Result<Self, MemoryError> {
        let (ch, mode) = Channel::build(setup, memory, rng, crc, &config, BASE_HEADER_LEN)?;
        let mut accepted = BoundedVec::new();
        // Capacity is ACCEPT_MAX ≥ 1: this push cannot fail.
        let _ = accepted.push(dispatch_key(Cmd::LNK_PING));
        Ok(Self {
            ch,
            local: TransTable::new(),
            remote: TransTable::new(),
            accepted,
            last_msgid: 0,
            mode,
            keepalive: None,
            deadlines: BoundedVec::new(),
        })
    }

    /// Hands commands matching `cmd` (by [`Cmd::same_handler`], REPLY ignored) and their
    /// replies to the application instead of answering them with 0x20.
    ///
    /// # Errors
    /// [`AcceptListFull`] beyond [`ACCEPT_MAX`] commands.
    pub fn accept(&mut self, cmd: Cmd) -> Result<(), AcceptListFull> {
        let key = dispatch_key(cmd);
        if self.accepted.contains(&key) {
            return Ok(());
        }
        self.accepted.push(key).map_err(|_| AcceptListFull)
    }

    /// The stream mode in use, fixed when the connection was built.
    #[must_use]
    pub const fn stream_mode(&self) -> StreamMode {
        self.mode
    }

    /// How the link ended, once [`Event::LinkDown`] was given (`None` before).
    #[must_use]
    pub const fn link_end(&self) -> Option<LinkEnd> {
        self.ch.link_end()
    }

    // ----- driver side -------------------------------------------------------------

    channel::driver_side!();

    // ----- time ----------------------------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, at the latest:
    /// the next keepalive, dead-peer or write-stall check or transaction deadline. `None`:
    /// nothing is timed (rules [off](Liveness::OFF), no deadlines, or the link is down).
    /// Ask again after every call on this connection; the answer moves.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.ch.timer_deadline() {
            Some(stall) => stall,
            None => earliest(self.ch.next_timer(), next_deadline(&self.deadlines)),
        }
    }

    /// Tells the connection the time: call it at [`poll_timeout`](Self::poll_timeout) and
    /// whenever the driver wakes for I/O, with a monotonic `now` (see [`Instant`](crate::Instant)).
    /// Bytes read or written since the last call count as moving at this `now`. Due rules
    /// fire here, each at most once: a keepalive `LNK_PING` is queued, the link goes
    /// down ([`LinkEnd::PeerTimeout`], [`LinkEnd::WriteStalled`]), an expired
    /// transaction is aborted ([`Event::TimedOut`]). Then poll events and write.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.ch.tick(now) else {
            return;
        };
        if due.ping && self.keepalive.is_none() {
            // Best effort: a full table or ring leaves the dead-peer rule to run anyway
            // (a peer that is silent that long is dead either way).
            if let Ok(sent) = self.open(Cmd::LNK_PING, &[], &[], true) {
                self.keepalive = Some(sent.msgid);
            }
        }
        self.expire_deadlines(now);
    }

    /// Gives a transaction we opened — `opened` is the header [`open`](Self::open)
    /// returned — a deadline on the driver's clock: if it is still open then,
    /// [`handle_timeout`](Self::handle_timeout) sends its ABORT and reports
    /// [`Event::TimedOut`]. A second call moves the deadline.
    ///
    /// # Errors
    /// [`SendError::NoSuchTransaction`] unless `opened` names an open transaction of ours
    /// that has not timed out; [`SendError::LinkDown`] once the link is down.
    pub fn set_deadline(&mut self, opened: &MsgHeader, at: Instant) -> Result<(), SendError> {
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        let msgid = opened.msgid;
        if opened.cmd.is_reply() || self.local.get(TransKey::local(msgid)).is_none() {
            return Err(SendError::NoSuchTransaction);
        }
        self.prune_deadlines();
        if let Some(d) = self.deadlines.iter_mut().find(|d| d.msgid == msgid) {
            if d.expired {
                return Err(SendError::NoSuchTransaction);
            }
            d.at = at;
            return Ok(());
        }
        let deadline = TransDeadline {
            msgid,
            cmd: opened.cmd,
            at,
            expired: false,
            reported: false,
        };
        // One entry per open transaction of ours, and the table holds at most T.
        self.deadlines
            .push(deadline)
            .map_err(|_| SendError::NoFreeMsgid { capacity: T })
    }

    /// Forgets the deadlines that are done: a deadline lives while its transaction is
    /// open, or until its expiry is told.
    fn prune_deadlines(&mut self) {
        let local = &self.local;
        self.deadlines.retain(|d| {
            (d.expired && !d.reported) || local.get(TransKey::local(d.msgid)).is_some()
        });
    }

    fn expire_deadlines(&mut self, now: Instant) {
        self.prune_deadlines();
        let mut i = 0;
        while let Some(d) = self.deadlines.get(i).copied() {
            i += 1;
            if d.expired || now < d.at {
                continue;
            }
            // The abort may find no room; the application is told either way.
            let _ = self.abort(d.cmd, d.msgid);
            if let Some(entry) = self.deadlines.get_mut(i - 1) {
                entry.expired = true;
            }
        }
    }

    /// True if a received reply belongs to the connection itself or to a transaction the
    /// application was told is over: the keepalive's reply, a reply after a deadline.
    fn is_own_reply(&mut self, msgid: u32) -> bool {
        if self.keepalive == Some(msgid) {
            // Any answer proves the peer alive and ends the ping: the 2012 C node answers
            // a ping it does not know with REPLY alone, which leaves the transaction open.
            self.local.forget(TransKey::local(msgid));
            self.keepalive = None;
            return true;
        }
        self.deadlines.iter().any(|d| d.msgid == msgid && d.expired)
    }

    /// The open transactions we started ([`Side::Local`](crate::trans::Side::Local)).
    #[must_use]
    pub const fn local_transactions(&self) -> &TransTable<T> {
        &self.local
    }

    /// The open transactions the peer started ([`Side::Remote`](crate::trans::Side::Remote)).
    #[must_use]
    pub const fn remote_transactions(&self) -> &TransTable<T> {
        &self.remote
    }

    /// The table that tracks a message, by the side that opened its transaction: a
    /// received reply or a sent command belongs to one of ours.
    fn table_for(&mut self, cmd: Cmd, sending: bool) -> &mut TransTable<T> {
        if cmd.is_reply() != sending {
            &mut self.local
        } else {
            &mut self.remote
        }
    }

    // ----- application side --------------------------------------------------------

    /// The next event, or `None` if there is nothing until more input arrives, transmit
    /// room frees up, or the link is down and everything was said.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        loop {
            let step = self.step();
            if !matches!(step, Step::Handled) {
                // Whatever was queued (auto-answers) can leave now: a gcm record is sealed.
                self.ch.tx.make_sendable();
            }
            match step {
                Step::Nothing => return None,
                Step::Handled => {}
                Step::Emit(event) => return Some(event),
                Step::Deliver(update) => {
                    return self
                        .ch
                        .rx
                        .current()
                        .map(|msg| Event::Message { msg, update });
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        if matches!(self.ch.link, LinkState::Down(_)) {
            return Step::Nothing;
        }
        // Before the link-loss reports too: a timed-out transaction is skipped by them (the
        // application was to be told it is over), so its TimedOut must not be lost when
        // the link fails between `handle_timeout` and `poll_event`.
        if let Some(d) = self.deadlines.iter_mut().find(|d| d.expired && !d.reported) {
            d.reported = true;
            return Step::Emit(Event::TimedOut {
                key: TransKey::local(d.msgid),
            });
        }
        match self.ch.link {
            LinkState::Down(_) => return Step::Nothing,
            LinkState::Draining(end) => {
                return match self.local.take_lost().or_else(|| self.remote.take_lost()) {
                    Some(lost)
                        if lost.key.side == Side::Local && self.is_own_reply(lost.key.msgid) =>
                    {
                        Step::Handled
                    }
                    Some(lost) => {
                        let mut header =
                            MsgHeader::new(Cmd::LNK_ERROR.with_flags(lost.abort_flags()));
                        header.msgid = lost.key.msgid;
                        header.error = MSG_ERR_LOSTLINK;
                        Step::Emit(Event::Aborted {
                            key: lost.key,
                            header,
                        })
                    }
                    None => {
                        self.ch.link = LinkState::Down(end);
                        Step::Emit(Event::LinkDown(end))
                    }
                };
            }
            LinkState::Up => {}
        }
        match self.ch.poll_rx() {
            RxStep::Nothing => Step::Nothing,
            RxStep::Handled => Step::Handled,
            RxStep::AuxStorageTooSmall { needed, available } => {
                Step::Emit(Event::AuxStorageTooSmall { needed, available })
            }
            RxStep::Message(received) => self.dispatch(*received.header()),
        }
    }

    /// The link-level rules of the module table, for one received message.
    fn dispatch(&mut self, header: MsgHeader) -> Step {
        let cmd = header.cmd;
        let accepted = self.accepted.contains(&dispatch_key(cmd));
        let auxoob = cmd.flags().contains(MsgFlags::AUXOOB);
        let ping = cmd.same_handler(Cmd::LNK_PING);
        if cmd.is_reply() {
            if !accepted {
                self.ch.stats.dropped += 1;
                return Step::Handled;
            }
        } else if cmd.same_handler(Cmd::LNK_PAD) || cmd.same_handler(Cmd::LNK_ERROR) {
            // Padding is ignored by definition; LNK_ERROR is only ever made locally (§5.1)
            // and §8.3 exempts it from the 0x20 answer, so one from the wire is dropped.
            self.ch.stats.dropped += 1;
            return Step::Handled;
        } else if auxoob || !accepted || ping {
            let error = if ping && !auxoob { 0 } else { MSG_ERR_UNKNOWN };
            self.auto_reply(reply_header(&header, final_reply_cmd(cmd), error));
            return Step::Handled;
        }
        match self.table_for(cmd, false).on_receive(cmd, header.msgid) {
            Ok(TransUpdate::LateAbortDiscarded(_)) => {
                self.ch.stats.dropped += 1;
                Step::Handled
            }
            Ok(_) if cmd.is_reply() && self.is_own_reply(header.msgid) => {
                self.ch.stats.dropped += 1;
                Step::Handled
            }
            Ok(update) => Step::Deliver(update),
            Err(error) => {
                self.ch.stats.dropped += 1;
                if matches!(error, TransError::TableFull { .. }) && !cmd.is_reply() {
                    // A request that does not fit is refused at once, closed in one
                    // reply, so that the peer's request fails instead of waiting forever.
                    let closed = MsgFlags::REPLY | MsgFlags::CREATE | MsgFlags::DELETE;
                    let cmd = cmd.clear(MsgFlags::ALL).set(closed);
                    self.auto_reply(reply_header(&header, cmd, MSG_ERR_TABLE_FULL));
                }
                Step::Emit(Event::Rejected { header, error })
            }
        }
    }

    /// Queues an answer the connection gives by itself. Room for a header was checked
    /// before the message it answers was read; what can still refuse it is an exhausted
    /// gcm counter, which ends the link (IVWRAP) rather than leave the peer unanswered on
    /// a link that seems up.
    fn auto_reply(&mut self, reply: MsgHeader) {
        match self.ch.tx.enqueue(reply, &[], &[]) {
            Ok(_) => {
                self.ch.stats.sent += 1;
                self.ch.stats.auto_replies += 1;
            }
            Err(e) => {
                let _ = self.refused(e);
            }
        }
    }

    /// Sends a message as given (flags, msgid and all), after the transaction rules.
    /// Returns the header as sent (salt and CRCs stamped).
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent or recorded then.
    pub fn send(
        &mut self,
        header: MsgHeader,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<MsgHeader, SendError> {
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        let room = self.reserve(&header, ext.len(), aux.len())?;
        self.table_for(header.cmd, true)
            .on_send(header.cmd, header.msgid)?;
        Ok(self.queue(room, header, ext, aux))
    }

    /// The transmit room for a message, or the refusal as the caller sees it.
    fn reserve(
        &mut self,
        header: &MsgHeader,
        ext_len: usize,
        aux_len: usize,
    ) -> Result<Room, SendError> {
        self.ch
            .tx
            .reserve(header, ext_len, aux_len)
            .map_err(|e| self.refused(e))
    }

    /// Queues a message into the room reserved for it and makes it sendable (§2.9: a
    /// `gcm` record is sealed unless earlier bytes still wait for the transport).
    fn queue(&mut self, room: Room, header: MsgHeader, ext: &[u8], aux: &[u8]) -> MsgHeader {
        let sent = self.ch.tx.enqueue_reserved(room, header, ext, aux);
        self.ch.tx.make_sendable();
        self.ch.stats.sent += 1;
        sent
    }

    /// A transmit refusal as the caller sees it; an exhausted `gcm` counter also ends the
    /// link (IVWRAP): nothing can be sent on it any more.
    fn refused(&mut self, e: TxError) -> SendError {
        SendError::Tx(self.ch.refused(e))
    }

    /// Opens a transaction: sends `cmd` with CREATE (and DELETE if `last`) under a fresh
    /// msgid. Returns the header as sent; its msgid names the transaction.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent or recorded then.
    pub fn open(
        &mut self,
        cmd: Cmd,
        ext: &[u8],
        aux: &[u8],
        last: bool,
    ) -> Result<MsgHeader, SendError> {
        let msgid = self
            .local
            .next_msgid(self.last_msgid)
            .ok_or(SendError::NoFreeMsgid { capacity: T })?;
        let flags = if last {
            MsgFlags::CREATE | MsgFlags::DELETE
        } else {
            MsgFlags::CREATE
        };
        let mut header = MsgHeader::new(cmd.clear(MsgFlags::ALL).set(flags));
        header.msgid = msgid;
        let sent = self.send(header, ext, aux)?;
        self.last_msgid = msgid;
        // A msgid is reused only after its transaction closed: what was said of the old
        // one (an expired deadline) must not touch the new one.
        self.deadlines.retain(|d| d.msgid != msgid);
        Ok(sent)
    }

    /// Replies to a received command `to` (its header as delivered).
    ///
    /// For a command of an open transaction the reply follows the transaction rules: the
    /// first reply carries CREATE, the one with `last` DELETE. For a one-way command (the
    /// seed era's `DBG_SHELL`) the reply follows §8.2's seed rules: streaming replies
    /// (`last == false`) are `REPLY` with CREATE/DELETE cleared, the final reply keeps the
    /// command's flags plus REPLY. msgid, source, target and `resv05` are copied (§11 T2).
    /// The C tools never put aux data in a final reply; h2msg sends whatever `aux` holds.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent or recorded then.
    pub fn reply(
        &mut self,
        to: &MsgHeader,
        error: u16,
        aux: &[u8],
        last: bool,
    ) -> Result<MsgHeader, SendError> {
        let key = TransKey::remote(to.msgid);
        let cmd = match self.remote.get(key) {
            Some(state) => transaction_reply_cmd(to.cmd, state, last).ok_or(
                SendError::Transaction(TransError::DirectionClosed {
                    key,
                    direction: Direction::Reply,
                }),
            )?,
            _ if last => final_reply_cmd(to.cmd),
            _ => streaming_reply_cmd(to.cmd),
        };
        self.send(reply_header(to, cmd, error), &[], aux)
    }

    /// Aborts a transaction we opened: sends its command with ABORT|DELETE. Allowed even
    /// after our DELETE was sent, while replies are still coming (§8.1); the transaction
    /// then ends when the peer's reply direction closes.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent or recorded then.
    pub fn abort(&mut self, cmd: Cmd, msgid: u32) -> Result<MsgHeader, SendError> {
        let mut header = MsgHeader::new(
            cmd.clear(MsgFlags::ALL)
                .set(MsgFlags::ABORT | MsgFlags::DELETE),
        );
        header.msgid = msgid;
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        let room = self.reserve(&header, 0, 0)?;
        self.local.on_abort(header.cmd, msgid)?;
        Ok(self.queue(room, header, &[], &[]))
    }
}

/// What dispatch matches on: the command without REPLY (a command and its replies share it).
const fn dispatch_key(cmd: Cmd) -> u32 {
    cmd.clear(MsgFlags::REPLY).switch_key()
}

/// A reply header built from the command's, as the C code builds replies in place.
fn reply_header(to: &MsgHeader, cmd: Cmd, error: u16) -> MsgHeader {
    let mut h = MsgHeader::new(cmd);
    h.msgid = to.msgid;
    h.source = to.source;
    h.target = to.target;
    h.resv05 = to.resv05;
    h.error = error;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::OverCommit;
    use crate::ioq::tx::CounterSalt;
    use crate::wire::SoftCrc32c;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    type Io = Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 4>;

    fn memory(fifo: usize, tx_ring: usize) -> IocomMemory<Vec<u8>> {
        IocomMemory {
            fifo: vec![0u8; fifo],
            aux: vec![],
            tx_ring: vec![0u8; tx_ring],
        }
    }

    fn with_setup(setup: LinkSetup, fifo: usize, tx_ring: usize) -> Result<Io, MemoryError> {
        Iocom::new(
            setup,
            memory(fifo, tx_ring),
            CounterSalt::default(),
            SoftCrc32c,
        )
    }

    fn iocom(tx_ring: usize) -> Io {
        with_setup(LinkSetup::plaintext(), 2048, tx_ring).unwrap()
    }

    fn message_bytes(cmd: Cmd, msgid: u32, aux: &[u8]) -> Vec<u8> {
        let mut h = MsgHeader::new(cmd);
        h.msgid = msgid;
        let mut out = h
            .seal(WireOrder::Little, &[], aux, &SoftCrc32c)
            .unwrap()
            .to_vec();
        out.extend_from_slice(aux);
        out.resize(32 + h.aux_len(), 0);
        out
    }

    fn ping_bytes(n: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let mut h = MsgHeader::new(Cmd::LNK_PING);
            h.msgid = i;
            out.extend_from_slice(&h.seal(WireOrder::Little, &[], &[], &SoftCrc32c).unwrap());
        }
        out
    }

    #[test]
    fn a_deadline_that_expired_before_the_link_failed_is_still_reported() {
        let mut io = iocom(1024);
        let echo = Cmd::new(MsgFlags::NONE, crate::wire::Protocol::LNK, 0x050, 1).unwrap();
        let opened = io.open(echo, &[], &[], false).unwrap();
        io.set_deadline(&opened, Instant::from_millis(500)).unwrap();
        io.handle_timeout(Instant::from_millis(500));
        io.transport_failed(); // before the application polled
        let key = TransKey::local(opened.msgid);
        assert!(matches!(io.poll_event(), Some(Event::TimedOut { key: k }) if k == key));
        assert!(matches!(
            io.poll_event(),
            Some(Event::LinkDown(LinkEnd::TransportFailed))
        ));
        assert!(io.poll_event().is_none());
    }

    #[test]
    fn a_fresh_connection_wants_to_read_and_is_idle() {
        let io = iocom(1024);
        let flags = io.flags();
        assert!(flags.contains(IocomFlags::RREQ | IocomFlags::WIDLE));
        assert!(!flags.contains(IocomFlags::EOF));
        assert_eq!(
            io.interest(),
            Interest {
                read: true,
                write: false,
                finished: false
            }
        );
    }

    #[test]
    fn reading_stops_while_replies_cannot_be_queued() {
        // Room for two header-only replies only.
        let mut io = iocom(64);
        assert_eq!(io.feed(&ping_bytes(5)), 160);
        assert!(io.poll_event().is_none());
        assert_eq!(io.stats().auto_replies, 2, "answered while there was room");
        assert!(!io.interest().read, "no reading until replies leave");
        assert!(io.interest().write);
        assert!(!io.flags().contains(IocomFlags::WIDLE));
        // The transport takes the replies: the rest get answered.
        let n = io.ch.tx.pending_len();
        io.advance_write(n).unwrap();
        assert!(io.poll_event().is_none());
        io.advance_write(io.ch.tx.pending_len()).unwrap();
        assert!(io.poll_event().is_none());
        assert_eq!(io.stats().auto_replies, 5, "nothing received was lost");
    }

    #[test]
    fn write_would_block_is_wreq_until_bytes_leave() {
        let mut io = iocom(1024);
        io.send(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        io.write_would_block();
        assert!(io.flags().contains(IocomFlags::WREQ));
        io.advance_write(10).unwrap();
        assert!(!io.flags().contains(IocomFlags::WREQ));
        assert_eq!(
            io.advance_write(100),
            Err(OverCommit {
                reported: 100,
                room: 22
            })
        );
    }

    #[test]
    fn a_clean_end_keeps_queued_replies_a_failure_drops_them() {
        let mut io = iocom(1024);
        io.feed(&ping_bytes(1));
        io.end_input();
        assert!(matches!(
            io.poll_event(),
            Some(Event::LinkDown(LinkEnd::Closed))
        ));
        assert!(io.poll_event().is_none());
        assert_eq!(
            io.pending()[0].len(),
            32,
            "the ping's reply can still be flushed"
        );
        assert!(!io.interest().finished);
        io.advance_write(32).unwrap();
        assert!(io.interest().finished);
        assert!(io.flags().contains(IocomFlags::EOF));

        let mut io = iocom(1024);
        io.send(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        let mut bad = ping_bytes(1);
        bad[0] = 0;
        io.feed(&bad);
        match io.poll_event() {
            Some(Event::LinkDown(LinkEnd::Failed(f))) => assert_eq!(f.lnk_error().error, 1),
            other => panic!("{other:?}"),
        }
        assert!(
            io.pending()[0].is_empty(),
            "a broken link sends nothing more"
        );
        assert_eq!(io.feed(b"more"), 0);
        assert!(io.read_buf().is_empty());
    }

    #[test]
    fn an_unanswered_aux_stall_is_said_once_then_ends_the_link() {
        let mut io = iocom(1024);
        io.accept(Cmd::DBG_SHELL).unwrap();
        let big = message_bytes(Cmd::DBG_SHELL, 1, &[7u8; 4000]);
        io.feed(&big);
        assert!(matches!(
            io.poll_event(),
            Some(Event::AuxStorageTooSmall {
                needed: 4000,
                available: 0
            })
        ));
        match io.poll_event() {
            Some(Event::LinkDown(LinkEnd::AuxStorageTooSmall {
                needed: 4000,
                available: 0,
            })) => {}
            other => panic!("{other:?}"),
        }
        assert!(io.poll_event().is_none());
    }

    #[test]
    fn lending_storage_after_the_stall_delivers_the_message() {
        let mut io = iocom(1024);
        io.accept(Cmd::DBG_SHELL).unwrap();
        let big = message_bytes(Cmd::DBG_SHELL, 1, &[7u8; 4000]);
        let taken = io.feed(&big);
        assert!(matches!(
            io.poll_event(),
            Some(Event::AuxStorageTooSmall { .. })
        ));
        io.replace_aux_storage(vec![0u8; 4000]).unwrap();
        assert!(io.poll_event().is_none());
        assert_eq!(io.feed(&big[taken..]), big.len() - taken);
        match io.poll_event() {
            Some(Event::Message { msg, .. }) => assert_eq!(msg.aux(), &[7u8; 4000][..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wire_lnk_error_is_dropped_unanswered() {
        let mut io = iocom(1024);
        io.feed(&message_bytes(Cmd::LNK_ERROR, 0, &[]));
        assert!(io.poll_event().is_none());
        assert_eq!((io.stats().dropped, io.stats().auto_replies), (1, 0));
        assert!(io.pending()[0].is_empty());
    }

    #[test]
    fn no_read_interest_after_the_end_of_input() {
        let mut io = iocom(1024);
        io.end_input();
        assert!(!io.interest().read);
        assert!(matches!(
            io.poll_event(),
            Some(Event::LinkDown(LinkEnd::Closed))
        ));
    }

    #[test]
    fn abort_after_our_delete_is_sent() {
        let mut io = iocom(1024);
        let h = io.open(Cmd::DBG_SHELL, &[], &[], true).unwrap();
        let before = io.ch.tx.pending_len();
        let abort = io.abort(Cmd::DBG_SHELL, h.msgid).unwrap();
        assert!(
            abort
                .cmd
                .flags()
                .contains(MsgFlags::ABORT | MsgFlags::DELETE)
        );
        assert_eq!(io.ch.tx.pending_len(), before + 32);
        assert_eq!(
            io.local_transactions().len(),
            1,
            "still waiting for the replies"
        );
    }

    #[test]
    fn counters_count() {
        let mut io = iocom(1024);
        io.accept(Cmd::DBG_SHELL).unwrap();
        let mut input = ping_bytes(2);
        input.extend(message_bytes(Cmd::LNK_PAD, 0, &[]));
        input.extend(message_bytes(Cmd::LNK_PAD, 0, &[]));
        input.extend(message_bytes(Cmd::DBG_SHELL.set(MsgFlags::REPLY), 0, &[])); // accepted reply
        input.extend(message_bytes(
            Cmd::LNK_PING.set(MsgFlags::REPLY | MsgFlags::DELETE),
            9,
            &[],
        ));
        io.feed(&input);
        while io.poll_event().is_some() {}
        io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap();
        io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap();
        io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap();
        let stats = io.stats();
        assert_eq!(stats.received, 6);
        assert_eq!(stats.auto_replies, 2);
        // Two pads, and a reply element for a transaction that does not exist.
        assert_eq!(stats.dropped, 3);
        assert_eq!(stats.sent, 5);
    }

    #[test]
    fn a_down_link_takes_no_input() {
        let mut io = iocom(1024);
        io.transport_failed();
        assert!(io.read_buf().is_empty());
        assert_eq!(
            io.commit_read(1),
            Err(OverCommit {
                reported: 1,
                room: 0
            })
        );
        assert_eq!(io.commit_read(0), Ok(()));
        let mut up = iocom(1024);
        let room = up.read_buf().len();
        assert!(room > 0);
        assert_eq!(
            up.commit_read(room + 1),
            Err(OverCommit {
                reported: room + 1,
                room
            })
        );
    }

    #[test]
    fn flag_bits_are_the_c_values() {
        let mut io = iocom(1024);
        assert_eq!(io.flags().bits(), IocomFlags::RREQ | IocomFlags::WIDLE);
        assert_eq!(
            (
                IocomFlags::EOF,
                IocomFlags::RREQ,
                IocomFlags::WREQ,
                IocomFlags::WIDLE
            ),
            (1, 2, 4, 8)
        );
        io.send(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        io.write_would_block();
        io.advance_write(0).unwrap();
        assert_eq!(
            io.flags().bits(),
            IocomFlags::RREQ | IocomFlags::WREQ,
            "nothing left: still blocked"
        );
        io.transport_failed();
        assert_eq!(
            io.flags().bits(),
            IocomFlags::EOF | IocomFlags::WREQ | IocomFlags::WIDLE
        );
    }

    #[test]
    fn errors_say_what_happened() {
        use std::string::ToString;
        assert_eq!(SendError::LinkDown.to_string(), "the link is down");
        // The limit, and the two ways out: wait, or a larger table.
        assert_eq!(
            SendError::NoFreeMsgid { capacity: 64 }.to_string(),
            "no free msgid: all 64 transactions this side may open are open; wait for one \
             to end (its final reply) or build the connection with a larger table (the `T` \
             of `Iocom`; h2msg-std: `LinkOptions::transactions`)"
        );
        assert_eq!(
            AcceptListFull.to_string(),
            "a connection accepts at most 16 commands"
        );
        assert_eq!(
            MemoryError::TxRingUnfit {
                len: 8,
                mode: StreamMode::Cbc
            }
            .to_string(),
            "transmit ring of 8 bytes does not fit stream mode cbc \
             (it must hold a header-only reply; cbc needs a multiple of 32)"
        );
        assert_eq!(
            MemoryError::FifoTooSmall {
                len: 8,
                needed: 2128
            }
            .to_string(),
            "receive FIFO of 8 bytes, the connection needs at least 2128"
        );
        assert_eq!(
            OverCommit {
                reported: 5,
                room: 4
            }
            .to_string(),
            "5 bytes reported read into a buffer of 4"
        );
        let f = RxFailure {
            error: crate::wire::DecodeError::Sync { found: [1, 2] },
            offset: 64,
        };
        assert_eq!(
            f.to_string(),
            "message at stream offset 64: IOQ error 1 (SYNC): magic bytes 01 02 are neither 32 48 nor 48 32"
        );
        assert!(
            std::format!("{:?}", iocom(64))
                .starts_with("Iocom { channel: Channel { rx: RxDecoder { phase: Header1")
        );
    }

    /// A connection whose `gcm` counters are at their last value, keyed with `own` and
    /// `peer` as the two session keys; `gcm_at_end(4, 3)` is `gcm_at_end(3, 4)`'s peer.
    #[cfg(feature = "stream-crypto")]
    fn gcm_at_end(own: u8, peer: u8) -> Io {
        let setup = LinkSetup::gcm_for_testing(&[own; 64], &[peer; 64], u64::MAX);
        with_setup(setup, 2048 + 4 + 16_384 + 16, 1024).unwrap()
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn an_exhausted_gcm_counter_ends_the_link_with_ivwrap_on_both_sides() {
        // Both counters at their last value: one record each way, then IVWRAP.
        let mut io = gcm_at_end(3, 4);
        io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap();
        let wire = io.pending()[0].to_vec();
        assert_eq!(
            wire.len(),
            4 + 32 + 16,
            "the message alone: the last record"
        );
        assert_eq!(
            io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]),
            Err(SendError::Tx(TxError::IvWrap))
        );
        match io.poll_event() {
            Some(Event::LinkDown(LinkEnd::Failed(f))) => assert_eq!(f.lnk_error().error, 18),
            other => panic!("{other:?}"),
        }

        let mut rx_side = gcm_at_end(4, 3);
        rx_side.accept(Cmd::DBG_SHELL).unwrap();
        rx_side.feed(&wire);
        assert!(matches!(rx_side.poll_event(), Some(Event::Message { .. })));
        rx_side.feed(&wire);
        match rx_side.poll_event() {
            Some(Event::LinkDown(LinkEnd::Failed(f))) => {
                assert_eq!(f.ioq_error(), crate::wire::IoqError::IvWrap);
            }
            other => panic!("{other:?}"),
        }
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_ping_that_cannot_be_answered_for_ivwrap_ends_the_link() {
        // The peer's side sends one ping in the last record its counter allows.
        let mut peer = gcm_at_end(4, 3);
        let mut ping = MsgHeader::new(Cmd::LNK_PING);
        ping.msgid = 5;
        peer.send(ping, &[], &[]).unwrap();
        let wire = peer.pending()[0].to_vec();
        // Our side can still receive that chunk, but its own counter is spent.
        let mut io = gcm_at_end(3, 4);
        io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[]).unwrap(); // the last record
        io.feed(&wire);
        match io.poll_event() {
            Some(Event::LinkDown(LinkEnd::Failed(f))) => {
                assert_eq!(f.ioq_error(), crate::wire::IoqError::IvWrap);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(io.stats().auto_replies, 0);
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_connection_refuses_memory_that_does_not_fit_its_mode() {
        let gcm = || LinkSetup::gcm_for_testing(&[3; 64], &[4; 64], 0);
        // A FIFO needs room for the largest header and a whole record (§2.9: 4 + 16384 + 16).
        assert_eq!(
            with_setup(gcm(), 18_451, 1024).err(),
            Some(MemoryError::FifoTooSmall {
                len: 18_451,
                needed: 18_452
            })
        );
        // A ring needs room for a header-only reply sealed alone: 4 + 32 + 16.
        assert_eq!(
            with_setup(gcm(), 18_452, 51).err(),
            Some(MemoryError::TxRingUnfit {
                len: 51,
                mode: StreamMode::Gcm
            })
        );
        let io = with_setup(gcm(), 18_452, 52).unwrap();
        assert_eq!(io.stream_mode(), StreamMode::Gcm);
    }

    #[test]
    fn a_plaintext_connection_needs_the_header_limit_and_one_header_of_ring() {
        assert_eq!(
            with_setup(LinkSetup::plaintext(), 2047, 32).err(),
            Some(MemoryError::FifoTooSmall {
                len: 2047,
                needed: 2048
            })
        );
        assert_eq!(
            with_setup(LinkSetup::plaintext(), 2048, 31).err(),
            Some(MemoryError::TxRingUnfit {
                len: 31,
                mode: StreamMode::Seed
            })
        );
        assert!(with_setup(LinkSetup::plaintext(), 2048, 32).is_ok());
    }

    #[test]
    fn the_accept_list_is_bounded() {
        let mut io = iocom(1024);
        for n in 0..ACCEPT_MAX as u16 - 1 {
            io.accept(Cmd::new(MsgFlags::NONE, crate::wire::Protocol::BLK, n, 1).unwrap())
                .unwrap();
        }
        // Accepting one already there is fine; one more is not.
        io.accept(Cmd::LNK_PING.set(MsgFlags::REPLY)).unwrap();
        assert_eq!(io.accept(Cmd::DBG_SHELL), Err(AcceptListFull));
    }

    #[test]
    fn open_uses_fresh_msgids_and_a_full_table_refuses() {
        let mut io = iocom(4096);
        let ids: Vec<u32> = (0..4)
            .map(|_| io.open(Cmd::DBG_SHELL, &[], &[], false).unwrap().msgid)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let pending = io.ch.tx.pending_len();
        assert_eq!(
            io.open(Cmd::DBG_SHELL, &[], &[], false),
            Err(SendError::NoFreeMsgid { capacity: 4 })
        );
        assert_eq!(io.ch.tx.pending_len(), pending, "nothing queued");
        // A rule break is refused before anything is queued.
        let mut dup = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::CREATE));
        dup.msgid = 2;
        assert!(matches!(
            io.send(dup, &[], &[]),
            Err(SendError::Transaction(_))
        ));
        assert_eq!(io.ch.tx.pending_len(), pending);
    }

    // ----- time ----------------------------------------------------------------------

    fn timed(idle: u64, dead: u64, stall: u64) -> Io {
        let liveness = Liveness {
            idle: Some(core::time::Duration::from_millis(idle)),
            dead: Some(core::time::Duration::from_millis(dead)),
            stall: Some(core::time::Duration::from_millis(stall)),
        };
        let config = Config {
            liveness,
            ..Config::default()
        };
        let memory = memory(2048, 4096);
        Iocom::with_config(
            LinkSetup::plaintext(),
            memory,
            CounterSalt::default(),
            SoftCrc32c,
            config,
        )
        .unwrap()
    }

    fn drain(io: &mut Io) -> Vec<u8> {
        let bytes = [io.pending()[0], io.pending()[1]].concat();
        io.advance_write(bytes.len()).unwrap();
        bytes
    }

    const fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// The wire bytes of the peer's header-only final reply to `to`.
    fn final_reply_to(to: &MsgHeader, error: u16) -> Vec<u8> {
        let mut reply = reply_header(to, final_reply_cmd(to.cmd), error);
        let base = reply
            .seal(WireOrder::Little, &[], &[], &SoftCrc32c)
            .unwrap();
        base.to_vec()
    }

    /// A connection at time 0 with one DBG_SHELL request sent, due at `deadline`.
    fn request_due_at(deadline: Instant) -> (Io, MsgHeader) {
        let mut io = iocom(4096);
        io.accept(Cmd::DBG_SHELL).unwrap();
        io.handle_timeout(ms(0));
        let opened = io.open(Cmd::DBG_SHELL, &[], &[], true).unwrap();
        io.set_deadline(&opened, deadline).unwrap();
        drain(&mut io);
        (io, opened)
    }

    #[test]
    fn the_keepalive_ping_goes_out_at_idle_and_its_reply_stays_with_the_connection() {
        let mut io = timed(100, 50, 10_000);
        io.handle_timeout(ms(1_000));
        assert_eq!(io.poll_timeout(), Some(ms(1_100)));
        io.handle_timeout(ms(1_100));
        let ping = drain(&mut io);
        let view = MessageView::parse(&ping, &SoftCrc32c).unwrap();
        assert!(view.header().cmd.same_handler(Cmd::LNK_PING));
        assert!(!view.header().cmd.is_reply());
        // The peer (a 2012 C node) answers with error 0x20: alive, and nothing for the app.
        io.feed(&final_reply_to(view.header(), 0x20));
        assert!(
            io.poll_event().is_none(),
            "the keepalive's reply is the connection's own"
        );
        io.handle_timeout(ms(1_149));
        assert_eq!(
            io.poll_timeout(),
            Some(ms(1_249)),
            "the silence restarts at the reply"
        );
        assert!(
            io.local_transactions().is_empty(),
            "the ping's transaction closed"
        );
    }

    #[test]
    fn a_deadline_of_a_transaction_closed_in_time_never_wakes_the_driver_again() {
        let (mut io, opened) = request_due_at(ms(500));
        io.feed(&final_reply_to(&opened, 0));
        assert!(matches!(io.poll_event(), Some(Event::Message { .. })));
        io.handle_timeout(ms(500));
        assert!(
            io.poll_event().is_none(),
            "no TimedOut for a closed transaction"
        );
        assert!(
            io.poll_timeout().is_none_or(|t| t > ms(500)),
            "no deadline in the past keeps the driver spinning: {:?}",
            io.poll_timeout()
        );
        assert!(
            io.pending()[0].is_empty(),
            "no ABORT for a closed transaction"
        );
    }

    #[test]
    fn an_expired_transaction_is_aborted_once_and_its_late_reply_dropped() {
        let (mut io, opened) = request_due_at(ms(500));
        assert_eq!(
            io.poll_timeout(),
            Some(ms(500)),
            "the deadline is the next timer"
        );
        io.handle_timeout(ms(499));
        assert!(io.poll_event().is_none());
        io.handle_timeout(ms(500));
        assert!(
            io.poll_timeout().is_some_and(|t| t > ms(500)),
            "an expired deadline is no timer any more"
        );
        let abort = drain(&mut io);
        let view = MessageView::parse(&abort, &SoftCrc32c).unwrap();
        assert_eq!(view.header().msgid, opened.msgid);
        assert!(
            view.header()
                .cmd
                .flags()
                .contains(MsgFlags::ABORT | MsgFlags::DELETE)
        );
        match io.poll_event() {
            Some(Event::TimedOut { key }) => assert_eq!(key, TransKey::local(opened.msgid)),
            other => panic!("{other:?}"),
        }
        assert!(io.poll_event().is_none(), "said once");
        io.handle_timeout(ms(10_000));
        assert!(io.pending()[0].is_empty(), "aborted once");
        io.feed(&final_reply_to(&opened, 0));
        assert!(
            io.poll_event().is_none(),
            "the late reply is not the application's"
        );
    }

    #[test]
    fn a_request_beyond_the_transaction_table_is_refused_with_a_closing_reply() {
        let mut io = iocom(1024);
        io.accept(Cmd::DBG_SHELL).unwrap();
        // T = 4: four open requests of the peer fill its side of the table.
        let create = Cmd::DBG_SHELL.set(MsgFlags::CREATE);
        for msgid in 1..=5 {
            assert_eq!(io.feed(&message_bytes(create, msgid, &[])), 32);
        }
        let mut rejected = Vec::new();
        while let Some(event) = io.poll_event() {
            if let Event::Rejected { header, error } = event {
                rejected.push((header.msgid, error));
            }
        }
        assert_eq!(
            rejected,
            [(5, TransError::TableFull { capacity: 4 })],
            "the fifth does not fit"
        );
        // Its answer closes it in one message: REPLY|CREATE|DELETE (0xE0 in the flag
        // byte, §3.4), error 0x22, on its msgid; nothing else was sent.
        let wire = drain(&mut io);
        let reply = MessageView::parse(&wire, &SoftCrc32c).unwrap();
        assert_eq!(wire.len(), 32);
        assert_eq!(reply.header().cmd.raw(), 0xE010_0101);
        assert_eq!((reply.header().msgid, reply.header().error), (5, 0x22));
        assert_eq!(
            io.remote_transactions().len(),
            4,
            "the four that fit stay open"
        );
        assert_eq!(io.link_end(), None, "the link goes on");
    }

    #[test]
    fn a_full_transaction_table_sends_no_keepalive_yet_the_silent_peer_times_out() {
        let mut io = timed(100, 50, 10_000);
        io.handle_timeout(ms(0));
        // T = 4 here: four open requests fill our side of the table.
        for _ in 0..4 {
            io.open(Cmd::DBG_SHELL, &[], &[], false).unwrap();
        }
        assert!(
            io.open(Cmd::DBG_SHELL, &[], &[], false).is_err(),
            "the table is full"
        );
        drain(&mut io);
        assert_eq!(io.local_transactions().len(), 4);
        io.handle_timeout(ms(100)); // the keepalive is due, but has no slot
        assert!(
            io.pending()[0].is_empty() && io.pending()[1].is_empty(),
            "no keepalive fits a full table"
        );
        assert_eq!(io.local_transactions().len(), 4);
        io.handle_timeout(ms(149));
        assert!(io.poll_event().is_none());
        assert!(io.link_end().is_none());
        // The dead rule runs from the ping that could not be sent: idle + dead.
        assert_eq!(io.poll_timeout(), Some(ms(150)));
        io.handle_timeout(ms(150));
        let mut link_down = None;
        while let Some(event) = io.poll_event() {
            if let Event::LinkDown(end) = event {
                link_down = Some(end);
            }
        }
        assert_eq!(link_down, Some(LinkEnd::PeerTimeout));
        assert_eq!(io.link_end(), Some(LinkEnd::PeerTimeout));
    }

    #[test]
    fn a_silent_peer_ends_the_link_with_peer_timeout_and_a_stalled_writer_with_write_stalled() {
        let mut io = timed(100, 50, 10_000);
        io.handle_timeout(ms(0));
        io.handle_timeout(ms(100)); // the ping
        io.handle_timeout(ms(149));
        assert!(io.poll_event().is_none());
        io.handle_timeout(ms(150));
        // The unanswered ping's transaction is the connection's own: not reported lost.
        assert!(matches!(
            io.poll_event(),
            Some(Event::LinkDown(LinkEnd::PeerTimeout))
        ));

        let mut io = timed(10_000, 10_000, 30);
        io.handle_timeout(ms(0));
        io.send(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        io.handle_timeout(ms(10)); // the bytes wait from here
        io.handle_timeout(ms(39));
        assert!(io.link_end().is_none() && io.poll_event().is_none());
        io.handle_timeout(ms(40));
        while io.poll_event().is_some() {}
        assert_eq!(io.link_end(), Some(LinkEnd::WriteStalled));
        assert_eq!(io.poll_timeout(), None, "a link that is down needs no time");
    }

    #[test]
    fn a_peer_that_closed_and_never_reads_cannot_hold_the_link_open() {
        let mut io = timed(10_000, 10_000, 30);
        io.handle_timeout(ms(0));
        io.feed(&message_bytes(Cmd::LNK_PING, 7, &[])); // answered, the answer queued
        io.end_input(); // the peer half-closed
        while io.poll_event().is_some() {}
        assert_eq!(io.link_end(), Some(LinkEnd::Closed));
        assert!(
            !io.pending()[0].is_empty(),
            "the answer still waits to go out"
        );
        io.handle_timeout(ms(5));
        assert_eq!(io.poll_timeout(), Some(ms(35)), "the stall rule still runs");
        io.handle_timeout(ms(34));
        assert!(!io.interest().finished);
        io.handle_timeout(ms(35));
        assert!(
            io.pending()[0].is_empty(),
            "what could not be written is dropped"
        );
        assert!(io.interest().finished, "the driver may end");
        assert_eq!(io.poll_timeout(), None);
    }
}
