//! One DMSG connection (dmsg.md 3, 4): the 64-byte revision's decoder and queue on the
//! shared [`Channel`], the per-connection transaction sets of [`DmsgTransactions`], and the
//! link-level answers every DMSG node gives by itself.

use core::fmt;

use heapless::Vec as BoundedVec;
use rand_core::Rng;

use super::channel::{Channel, LinkState, RxStep};
use super::liveness::Due;
use super::{ACCEPT_MAX, AcceptListFull, Config, IocomMemory, LinkEnd, MemoryError, SendError};
use crate::ioq::tx::Room;
use crate::setup::LinkSetup;
use crate::stream::StreamMode;
use crate::time::Instant;
use crate::trans::{
    DmsgKey, DmsgLost, DmsgSendError, DmsgTransError, DmsgTransactions, Received, SendVerdict, Side,
};
use crate::wire::limits::DMSG_BASE_HEADER_LEN;
use crate::wire::{
    Cmd, Crc32c, DMSG_ERR_IO, DMSG_ERR_NOSUPP, DMSG_ERR_PARAM, DmsgHeader, DmsgReceivedHeader,
    MessageView, MsgFlags,
};

const LNK_CONN: Cmd = Cmd::DMSG_LNK_CONN;
const LNK_SPAN: Cmd = Cmd::DMSG_LNK_SPAN;
/// The identity of a command: protocol, number and size, without flags (dmsg.md 2.3).
const BASE_CMD_MASK: u32 = 0x00FF_FFFF;

/// What [`DmsgIocom::poll_event`] hands the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum DmsgEvent<'a> {
    /// A received message for the application: a command it accepted, an element of a
    /// transaction it opened, or an `LNK_CONN` / `LNK_SPAN` element (answered already by
    /// the connection, dmsg.md 5.2). Borrowed until the next `&mut` call.
    Message {
        /// The message.
        msg: MessageView<'a, DmsgReceivedHeader>,
        /// Where it belongs: one-way, or which transaction, with the effective command.
        received: Received,
    },
    /// An open transaction ended because the link was lost (dmsg.md 4.6): the simulated
    /// `LNK_ERROR|DELETE|ABORT` with error `LOSTLINK` (0x21). Parents come before their
    /// children.
    Lost(DmsgLost),
    /// The next message's aux data fits neither FIFO nor aux storage. Said once: lend
    /// bigger storage with [`DmsgIocom::replace_aux_storage`] before the next
    /// `poll_event`, or the link goes down with [`LinkEnd::AuxStorageTooSmall`].
    AuxStorageTooSmall {
        /// Aux bytes needed.
        needed: usize,
        /// Aux storage size.
        available: usize,
    },
    /// The link is down; the last event.
    LinkDown(LinkEnd),
}

/// What one received message turned into.
enum Step {
    Nothing,
    Handled,
    Deliver(Received),
    Emit(DmsgEvent<'static>),
}

/// One DMSG connection: the 64-byte header, 64-bit msgids, transactions stacked by
/// `circuit`, and the answers of dmsg.md 3.5 and 5.2 — behind the same driver calls as
/// [`Iocom`](super::Iocom).
///
/// # What the connection answers by itself
///
/// | Received | Done | Why |
/// |---|---|---|
/// | `LNK_PAD` | dropped | D10: filler, never answered |
/// | one-way `LNK_PING` | one-way `LNK_PING\|REPLY` (its replies reach the application if it accepts `LNK_PING`) | D11 |
/// | one-way `LNK_ERROR`, any one-way `REPLY` not [accepted](Self::accept) | dropped | D9: answering them ping-pongs forever |
/// | another one-way command not accepted | `LNK_ERROR\|REPLY` 0x200FFF01, error 0x20 | D9 |
/// | `LNK_CONN\|CREATE` | result 0xA80FFF01, delivered | dmsg.md 5.2 |
/// | a second `LNK_CONN\|CREATE` | closed at once, error 0x23 PARAM | D19 (libdmsg asserts) |
/// | `LNK_SPAN\|CREATE` | result 0xA80FFF01, delivered | dmsg.md 5.2 |
/// | `DELETE` on the peer's `LNK_CONN` or `LNK_SPAN` | our DELETE (0x680FFF01), delivered | dmsg.md 5.2, 5.5 |
/// | `DELETE` on our own `LNK_CONN` | our DELETE (0x400FFF01), delivered | both directions close |
/// | a transaction not accepted (and not stacked under one of ours) | closed at once, error 0x20 | dmsg.md 4.4 |
/// | a transaction past the table's `T` slots | closed at once, error 0x22 | h2msg's choice: the peer is told, not left waiting |
/// | an element that breaks dmsg.md 4.3 | the link fails: TRANS (17) | D5 (libdmsg asserts) |
/// | an element naming a closed parent, a late ABORT | dropped | dmsg.md 4.2 (EALREADY) |
///
/// To always be able to answer, the connection reads a message only while its transmit
/// queue has room for a header-only answer.
///
/// # Link loss
///
/// When the stream fails, ends, or the transport fails, every open transaction is
/// reported as [`DmsgEvent::Lost`], parents first, then one [`DmsgEvent::LinkDown`]
/// (D6: deliver the terminations, then close).
///
/// `M` is the buffer type of [`IocomMemory`], `R` the salt RNG, `C` the CRC-32C engine,
/// `T` the number of transactions each side may have open (ours and theirs apart, so that
/// neither side's load starves the other's).
pub struct DmsgIocom<M, R, C, const T: usize> {
    ch: Channel<M, R, C, DmsgReceivedHeader, DmsgHeader>,
    trans: DmsgTransactions<T>,
    accepted: BoundedVec<u32, ACCEPT_MAX>,
    /// The peer's `LNK_CONN`, once it opened one.
    peer_conn: Option<DmsgKey>,
    mode: StreamMode,
    /// Link loss was applied to the transaction sets.
    lost_marked: bool,
}

impl<M, R, C, const T: usize> fmt::Debug for DmsgIocom<M, R, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmsgIocom")
            .field("channel", &self.ch)
            .field("transactions", &self.trans)
            .field("peer_conn", &self.peer_conn)
            .finish_non_exhaustive()
    }
}

impl<M, R, C, const T: usize> DmsgIocom<M, R, C, T>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    /// A DMSG connection over the caller's memory, in the stream mode of `setup`
    /// (`LinkSetup::plaintext()` for a `.none` peer: DMSG exchanges nothing then,
    /// dmsg.md 1.2). Liveness comes from `config`; libdmsg never pings, so
    /// [`Liveness::OFF`](super::Liveness::OFF) is what a libdmsg node does (D11).
    ///
    /// # Errors
    /// [`MemoryError`] as for [`Iocom::new`](super::Iocom::new).
    pub fn new(
        setup: LinkSetup,
        memory: IocomMemory<M>,
        rng: R,
        crc: C,
        config: Config,
    ) -> Result<Self, MemoryError> {
        let (ch, mode) = Channel::build(setup, memory, rng, crc, &config, DMSG_BASE_HEADER_LEN)?;
        Ok(Self {
            ch,
            trans: DmsgTransactions::new(),
            accepted: BoundedVec::new(),
            peer_conn: None,
            mode,
            lost_marked: false,
        })
    }

    /// Hands commands with `cmd`'s identity (protocol, number, size; flags ignored) to the
    /// application instead of answering them with NOSUPP.
    ///
    /// # Errors
    /// [`AcceptListFull`] beyond [`ACCEPT_MAX`] commands.
    pub fn accept(&mut self, cmd: Cmd) -> Result<(), AcceptListFull> {
        let key = base_cmd(cmd);
        if self.accepted.contains(&key) {
            return Ok(());
        }
        self.accepted.push(key).map_err(|_| AcceptListFull)
    }

    /// The stream mode in use.
    #[must_use]
    pub const fn stream_mode(&self) -> StreamMode {
        self.mode
    }

    /// How the link ended, once [`DmsgEvent::LinkDown`] was given.
    #[must_use]
    pub const fn link_end(&self) -> Option<LinkEnd> {
        self.ch.link_end()
    }

    /// The open transactions.
    #[must_use]
    pub const fn transactions(&self) -> &DmsgTransactions<T> {
        &self.trans
    }

    /// The peer's `LNK_CONN` transaction, once it opened one.
    #[must_use]
    pub const fn peer_conn(&self) -> Option<DmsgKey> {
        self.peer_conn
    }

    // ----- driver side: as `Iocom`'s ------------------------------------------------

    super::channel::driver_side!();

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, at the latest.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ch
            .timer_deadline()
            .unwrap_or_else(|| self.ch.next_timer())
    }

    /// Tells the connection the time (see [`Iocom::handle_timeout`](super::Iocom::handle_timeout)).
    /// The keepalive is a one-way `LNK_PING` (D11): any byte back proves the peer alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(Due { ping: true, .. }) = self.ch.tick(now) {
            // Best effort: a full ring leaves the dead-peer rule to run anyway.
            let _ = self.send_one_way(Cmd::LNK_PING, &[], &[]);
        }
    }

    // ----- application side ---------------------------------------------------------

    /// The next event, or `None` if there is nothing until more input arrives, transmit
    /// room frees up, or the link is down and everything was said.
    pub fn poll_event(&mut self) -> Option<DmsgEvent<'_>> {
        loop {
            let step = self.step();
            if !matches!(step, Step::Handled) {
                self.ch.tx.make_sendable();
            }
            match step {
                Step::Nothing => return None,
                Step::Handled => {}
                Step::Emit(event) => return Some(event),
                Step::Deliver(received) => {
                    return self
                        .ch
                        .rx
                        .current()
                        .map(|msg| DmsgEvent::Message { msg, received });
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        match self.ch.link {
            LinkState::Down(_) => return Step::Nothing,
            LinkState::Draining(end) => {
                if !self.lost_marked {
                    self.trans.lose_link();
                    self.lost_marked = true;
                }
                return match self.trans.take_lost() {
                    // One the application never saw (refused by the connection) ends
                    // silently.
                    Some(lost)
                        if !self.application_sees(lost.key, lost.parent, lost.effective_cmd) =>
                    {
                        Step::Handled
                    }
                    Some(lost) => Step::Emit(DmsgEvent::Lost(lost)),
                    None => {
                        self.ch.link = LinkState::Down(end);
                        Step::Emit(DmsgEvent::LinkDown(end))
                    }
                };
            }
            LinkState::Up => {}
        }
        match self.ch.poll_rx() {
            RxStep::Nothing => Step::Nothing,
            RxStep::Handled => Step::Handled,
            RxStep::AuxStorageTooSmall { needed, available } => {
                Step::Emit(DmsgEvent::AuxStorageTooSmall { needed, available })
            }
            RxStep::Message(received) => self.dispatch(*received.header()),
        }
    }

    /// dmsg.md 4.2–4.3 and the link-level answers, for one received message.
    fn dispatch(&mut self, header: DmsgHeader) -> Step {
        let cmd = header.command();
        match self.trans.on_receive(cmd, header.msgid, header.circuit) {
            Ok(Received::Discarded) => self.dropped(),
            Ok(received @ Received::OneWay { parent }) => self.one_way(cmd, parent, received),
            Ok(received @ Received::Element { .. }) => self.element(received),
            Err(DmsgTransError::TableFull) => {
                self.refuse_unrecorded(&header, DMSG_ERR_IO);
                self.dropped()
            }
            Err(violation) => {
                self.ch.fail(LinkEnd::TransactionViolation(violation));
                Step::Handled
            }
        }
    }

    fn dropped(&mut self) -> Step {
        self.ch.stats.dropped += 1;
        Step::Handled
    }

    fn one_way(&mut self, cmd: Cmd, parent: Option<DmsgKey>, received: Received) -> Step {
        let base = base_cmd(cmd);
        let reply = cmd.flags().contains(MsgFlags::REPLY);
        let answer = if base == base_cmd(Cmd::LNK_PAD) {
            return self.dropped(); // D10
        } else if base == base_cmd(Cmd::LNK_PING) && !reply && parent.is_none() {
            // D11: always answered by the connection; accepting LNK_PING hands the
            // application the replies to its own pings.
            (Cmd::LNK_PING.set(MsgFlags::REPLY), 0)
        } else if self.accepted.contains(&base) {
            return Step::Deliver(received);
        } else if reply || base == base_cmd(Cmd::LNK_ERROR) || parent.is_some() {
            // D9: never answer an answer. D7: an answer inside a circuit would have to be
            // one-way with a circuit, which crashes libdmsg; drop it instead.
            return self.dropped();
        } else {
            (Cmd::LNK_ERROR.set(MsgFlags::REPLY), DMSG_ERR_NOSUPP)
        };
        let mut header = DmsgHeader::new(answer.0);
        header.error = answer.1;
        if self.enqueue(header, &[], &[]).is_ok() {
            self.ch.stats.auto_replies += 1;
        }
        Step::Handled
    }

    fn element(&mut self, received: Received) -> Step {
        let Received::Element {
            key,
            parent,
            effective_cmd,
            opened,
            ..
        } = received
        else {
            return Step::Handled;
        };
        let base = base_cmd(effective_cmd);
        let delete = effective_cmd.flags().contains(MsgFlags::DELETE);
        let theirs = key.side == Side::Remote;
        let deliver = if base == base_cmd(LNK_CONN) && theirs {
            if opened && self.peer_conn.is_some() {
                self.auto_answer(key, true, DMSG_ERR_PARAM); // D19: keep the first
                return self.dropped();
            }
            if opened {
                self.peer_conn = Some(key);
                self.auto_answer(key, false, 0);
            }
            if delete {
                if self.peer_conn == Some(key) {
                    self.peer_conn = None;
                }
                self.auto_answer(key, true, 0);
            }
            true
        } else if base == base_cmd(LNK_SPAN) && theirs {
            if opened {
                self.auto_answer(key, false, 0);
            }
            if delete {
                self.auto_answer(key, true, 0);
            }
            true
        } else if base == base_cmd(LNK_CONN) && delete {
            // The peer closed its side of our LNK_CONN: close ours, so both are done.
            self.auto_answer(key, true, 0);
            true
        } else if self.application_sees(key, parent, effective_cmd) {
            true
        } else {
            if opened {
                self.auto_answer(key, true, DMSG_ERR_NOSUPP);
            }
            false
        };
        if !deliver {
            return self.dropped();
        }
        // The connection's own answers may have closed the transaction.
        Step::Deliver(Received::Element {
            key,
            parent,
            effective_cmd,
            opened,
            closed: self.trans.get(key).is_none(),
        })
    }

    /// True for the transactions the application is given: its own, those stacked under
    /// one of its own (whatever their command: under a span it relays, a cluster routes
    /// them, dmsg.md 4.5), the ones it accepted, and every `LNK_CONN` and `LNK_SPAN`
    /// (which the connection answers).
    fn application_sees(&self, key: DmsgKey, parent: Option<DmsgKey>, effective_cmd: Cmd) -> bool {
        let base = base_cmd(effective_cmd);
        key.side == Side::Local
            || parent.is_some_and(|p| p.side == Side::Local)
            || self.accepted.contains(&base)
            || base == base_cmd(LNK_CONN)
            || base == base_cmd(LNK_SPAN)
    }

    /// Sends the standard `LNK_ERROR` answer (dmsg.md 4.4) on `key`: a result, or the
    /// close. Nothing when our direction is closed already.
    fn auto_answer(&mut self, key: DmsgKey, close: bool, error: u32) {
        if let Some(cmd) = self.trans.answer_cmd(key, close)
            && self.send_element(key, cmd, error, &[], &[]).is_ok()
        {
            self.ch.stats.auto_replies += 1;
        }
    }

    /// Closes at once a transaction the peer opened that the table could not record.
    fn refuse_unrecorded(&mut self, to: &DmsgHeader, error: u32) {
        let flags = to.command().flags();
        let mut rev = MsgFlags::REVTRANS;
        if to.circuit != 0 && !flags.contains(MsgFlags::REVCIRC) {
            rev = rev.union(MsgFlags::REVCIRC);
        }
        let cmd = Cmd::LNK_ERROR.set(
            MsgFlags::CREATE
                .union(MsgFlags::DELETE)
                .union(MsgFlags::REPLY)
                .union(rev),
        );
        let mut header = DmsgHeader::new(cmd);
        header.msgid = to.msgid;
        header.circuit = to.circuit;
        header.error = error;
        if self.enqueue(header, &[], &[]).is_ok() {
            self.ch.stats.auto_replies += 1;
        }
    }

    /// Queues a fully stamped header; the caller made the transaction-level decision.
    fn enqueue(
        &mut self,
        header: DmsgHeader,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        let room = self.reserve(&header, ext.len(), aux.len())?;
        Ok(self.queue(room, header, ext, aux))
    }

    /// The transmit room for a message with `header`'s command and these sizes, or the
    /// refusal as the caller sees it. Sizes come from the command alone, so the room can
    /// be taken before the transaction stamps msgid and circuit.
    fn reserve(
        &mut self,
        header: &DmsgHeader,
        ext_len: usize,
        aux_len: usize,
    ) -> Result<Room<u32>, SendError> {
        self.ch
            .tx
            .reserve(header, ext_len, aux_len)
            .map_err(|e| SendError::Tx(self.ch.refused(e)))
    }

    /// Queues a message into the room reserved for it and makes it sendable now.
    fn queue(&mut self, room: Room<u32>, header: DmsgHeader, ext: &[u8], aux: &[u8]) -> DmsgHeader {
        let sent = self.ch.tx.enqueue_reserved(room, header, ext, aux);
        self.ch.tx.make_sendable();
        self.ch.stats.sent += 1;
        sent
    }

    /// Queues an element of a transaction into `room` as the table's `verdict` says: with
    /// its stamp (msgid, circuit, REV flags), or not at all.
    fn queue_stamped(
        &mut self,
        room: Room<u32>,
        verdict: Result<SendVerdict, DmsgSendError>,
        cmd: Cmd,
        error: u32,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        let stamp = match verdict {
            Ok(SendVerdict::Send(stamp)) => stamp,
            Ok(SendVerdict::DroppedClosed) => return Err(SendError::DirectionClosed),
            Ok(SendVerdict::DroppedDying) => return Err(SendError::LinkDown),
            Err(e) => return Err(SendError::Dmsg(e)),
        };
        let mut header = DmsgHeader::new(cmd.set(stamp.rev_flags));
        header.msgid = stamp.msgid;
        header.circuit = stamp.circuit;
        header.error = error;
        Ok(self.queue(room, header, ext, aux))
    }

    /// Sends `cmd` on the open transaction `key`: the table says how to stamp it, or that
    /// it is dropped (our direction closed, or the state dying).
    fn send_element(
        &mut self,
        key: DmsgKey,
        cmd: Cmd,
        error: u32,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        // Room first, so that the table records only what is certainly queued.
        let room = self.reserve(&DmsgHeader::new(cmd), ext.len(), aux.len())?;
        let verdict = self.trans.on_send(key, cmd);
        self.queue_stamped(room, verdict, cmd, error, ext, aux)
    }

    /// Opens a transaction of ours under `parent` (`None`: top level): sends `cmd` with
    /// CREATE (keep DELETE in `cmd` for a single-element command). Returns the header as
    /// sent; [`DmsgKey::ours`] of its msgid names the transaction.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent or recorded then.
    pub fn open(
        &mut self,
        cmd: Cmd,
        parent: Option<DmsgKey>,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        self.forward_open(cmd, parent, 0, ext, aux)
    }

    /// Sends the next element of the open transaction `key`: `cmd`'s CREATE and DELETE
    /// flags are kept, REPLY is set when the peer opened the transaction (we answer it),
    /// the REV flags, msgid and circuit come from the transaction (dmsg.md 4.2).
    ///
    /// # Errors
    /// [`SendError::DirectionClosed`] after our DELETE; [`SendError::Dmsg`] if `key` is
    /// not open; else as [`open`](Self::open). Nothing is sent or recorded then.
    pub fn send(
        &mut self,
        key: DmsgKey,
        cmd: Cmd,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        self.forward(key, cmd, 0, ext, aux)
    }

    /// The standard `LNK_ERROR` answer on `key` (dmsg.md 4.4): with `close` false a
    /// result that keeps the transaction open (0xA80FFF01 first, 0x280FFF01 later, on a
    /// transaction the peer opened), with `close` true our DELETE (0xE80FFF01 /
    /// 0x680FFF01 on theirs, 0x400FFF01 on ours).
    ///
    /// # Errors
    /// [`SendError::DirectionClosed`] when our direction already sent DELETE, else as
    /// [`send`](Self::send).
    pub fn answer(
        &mut self,
        key: DmsgKey,
        close: bool,
        error: u32,
    ) -> Result<DmsgHeader, SendError> {
        let cmd = self
            .trans
            .answer_cmd(key, close)
            .ok_or(SendError::DirectionClosed)?;
        self.send_element(key, cmd, error, &[], &[])
    }

    /// [`open`](Self::open) with an `error` value: a relay opens the twin of a
    /// transaction received on another connection with its command and `error` as
    /// received (dmsg.md 4.5; DELETE and ABORT kept, REPLY and the REV flags its own).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn forward_open(
        &mut self,
        cmd: Cmd,
        parent: Option<DmsgKey>,
        error: u32,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        let cmd = cmd
            .clear(
                MsgFlags::REPLY
                    .union(MsgFlags::REVTRANS)
                    .union(MsgFlags::REVCIRC),
            )
            .set(MsgFlags::CREATE);
        let room = self.reserve(&DmsgHeader::new(cmd), ext.len(), aux.len())?;
        let verdict = self.trans.open(cmd, parent);
        self.queue_stamped(room, verdict, cmd, error, ext, aux)
    }

    /// [`send`](Self::send) with an `error` value: a relay sends an element received on
    /// another connection on its twin `key` so (dmsg.md 4.5).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn forward(
        &mut self,
        key: DmsgKey,
        cmd: Cmd,
        error: u32,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        let mut cmd = cmd.clear(
            MsgFlags::REPLY
                .union(MsgFlags::REVTRANS)
                .union(MsgFlags::REVCIRC),
        );
        if key.side == Side::Remote {
            cmd = cmd.set(MsgFlags::REPLY);
        }
        self.send_element(key, cmd, error, ext, aux)
    }

    /// Ends the transaction `key` on our side with `LNK_ERROR|DELETE|ABORT` carrying
    /// `error` — what a relay sends when the other half of a routed transaction was lost
    /// (dmsg.md 4.6, error 0x21 LOSTLINK).
    ///
    /// # Errors
    /// [`SendError::DirectionClosed`] when our direction already sent DELETE, else as
    /// [`send`](Self::send).
    pub fn abort(&mut self, key: DmsgKey, error: u32) -> Result<DmsgHeader, SendError> {
        let cmd = self
            .trans
            .answer_cmd(key, true)
            .ok_or(SendError::DirectionClosed)?
            .set(MsgFlags::ABORT);
        self.send_element(key, cmd, error, &[], &[])
    }

    /// Sends a one-way message (no transaction: msgid and circuit 0), such as a
    /// `DBG_SHELL` line or, with REPLY, one line of its output.
    ///
    /// # Errors
    /// [`SendError::NotOneWay`] if `cmd` carries CREATE, DELETE or ABORT; else as
    /// [`open`](Self::open).
    pub fn send_one_way(
        &mut self,
        cmd: Cmd,
        ext: &[u8],
        aux: &[u8],
    ) -> Result<DmsgHeader, SendError> {
        if !self.ch.is_up() {
            return Err(SendError::LinkDown);
        }
        if cmd.flags().intersects(
            MsgFlags::CREATE
                .union(MsgFlags::DELETE)
                .union(MsgFlags::ABORT),
        ) {
            return Err(SendError::NotOneWay);
        }
        let cmd = cmd.clear(MsgFlags::REVTRANS.union(MsgFlags::REVCIRC));
        self.enqueue(DmsgHeader::new(cmd), ext, aux)
    }
}

/// A command's identity without flags (dmsg.md 2.3, BASECMDMASK).
const fn base_cmd(cmd: Cmd) -> u32 {
    cmd.raw() & BASE_CMD_MASK
}
