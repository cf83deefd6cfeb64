//! Large transfers over a link: the core's [`h2msg::transfer`] driven by the blocking
//! driver ([`send`], [`receive`]) and the tokio driver (`send_async`, `receive_async`,
//! feature `tokio`).
//!
//! A payload of any size goes as one transaction of ≤ 64 KiB parts after an 8-byte length
//! announcement (`docs/protocol.md` §3.5); the receiver puts it back together up to its
//! [`Reassembler`]'s maximum (16 MiB by default). These functions take the low-level link
//! and an [`Inbox`]: the transfers coming in under one command.
//!
//! Sending keeps the transmit queue full — it queues the next part as soon as the link
//! wrote enough to make room — and **keeps reading while it waits**: both ends may send
//! large transfers at once on one link without blocking each other in full socket
//! buffers. What arrives meanwhile goes into the inbox's reassembler; each transfer that
//! completes or fails, and every other event, is handed to the caller's closure as it
//! comes ([`Incoming`]). Nothing is held back beyond the reassembler's own bounded
//! buffers, so memory stays bounded however much the peer sends.
//!
//! ```no_run
//! use h2msg::transfer::Sender;
//! use h2msg::wire::{Cmd, MsgFlags};
//! use h2msg::ModeChoice;
//! use h2msg_std::transfer::{self, Inbox, Incoming};
//! use h2msg_std::{keys::KeyDir, link};
//!
//! let upload = Cmd::app(7).ok_or("a 12-bit number")?;
//! let keys = KeyDir::new("/etc/hammer2");
//! let (mut link, _) = link::connect("192.0.2.7:987", &keys, ModeChoice::Auto)?;
//! link.io().accept(upload)?; // to see the answer
//! let mut inbox = Inbox::new(upload);
//!
//! // Send 5 MiB as one transaction; a transfer of the peer's that ends meanwhile is
//! // handed over here.
//! let payload = vec![0u8; 5 << 20];
//! let mut early = None;
//! transfer::send(&mut link, &mut Sender::request(upload, &payload), &mut inbox, |incoming| {
//!     if let Incoming::Transfer(outcome) = incoming {
//!         early = Some(outcome);
//!     }
//! })?;
//! // Then wait for the peer's answer: a transfer back.
//! let answer = match early {
//!     Some(outcome) => Some(outcome),
//!     None => transfer::receive(&mut link, &mut inbox, |_other_event| {})?,
//! };
//! match answer {
//!     Some(Ok(answer)) => println!("{} bytes back", answer.data.len()),
//!     Some(Err(failure)) => println!("failed: {}", failure.error),
//!     None => println!("the peer closed the link"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use h2msg::drive::{DriveError, Link as DriveLink, Transport, reply_error};
use h2msg::ioq::TxError;
use h2msg::trans::TransKey;
use h2msg::transfer::{Failure, Fed, Progress, Reassembler, Sender, Transfer, answer_failure};
use h2msg::wire::{Cmd, MsgFlags};
use h2msg::{Event, SendError};

use crate::blocking::StdIocom;

/// What [`receive`] ends with: a payload whole, or a transfer that failed (answered
/// already when the peer waits for an answer).
pub type Outcome = Result<Transfer<TransKey>, Failure<TransKey>>;

/// What [`send`] hands its caller while it waits for room to send.
#[derive(Debug)]
pub enum Incoming<'e> {
    /// A transfer under the inbox's command ended: its payload whole, or its failure
    /// (answered, as [`receive`] answers it).
    Transfer(Outcome),
    /// Any other event of the link.
    Event(Event<'e>),
}

/// The transfers coming in under one command on one link: the [`Reassembler`] that puts
/// them back together, and the answers to failed ones that found the transmit queue full
/// (at most one per open transaction, so no more than the two transaction tables hold).
/// Keep one per link and pass it to every [`send`] and [`receive`] on it: a transfer
/// half received by one call is completed by the next.
#[derive(Debug)]
pub struct Inbox {
    cmd: Cmd,
    reassembler: Reassembler<TransKey>,
    owed: Vec<Failure<TransKey>>,
}

impl Inbox {
    /// Transfers under `cmd`, up to the default maximum ([`Reassembler::new`]).
    #[must_use]
    pub fn new(cmd: Cmd) -> Self {
        Self::with_reassembler(cmd, Reassembler::new())
    }

    /// Transfers under `cmd` into `reassembler` (its limits chosen).
    #[must_use]
    pub fn with_reassembler(cmd: Cmd, reassembler: Reassembler<TransKey>) -> Self {
        Self {
            cmd,
            reassembler,
            owed: Vec::new(),
        }
    }

    /// The command the transfers come under.
    #[must_use]
    pub const fn cmd(&self) -> Cmd {
        self.cmd
    }

    /// The reassembler, to see what it holds.
    #[must_use]
    pub const fn reassembler(&self) -> &Reassembler<TransKey> {
        &self.reassembler
    }

    /// Whether answers to failed transfers still wait for room in the transmit queue.
    /// Every [`send`] and [`receive`] call queues them first; a caller done with the
    /// inbox queues them with [`answer_owed`](Self::answer_owed).
    #[must_use]
    pub fn owes_answers(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Queues the answers still owed, as far as the transmit queue has room; true once
    /// none is left. Between calls, let the link write (`link.flush()`).
    pub fn answer_owed<const T: usize>(&mut self, io: &mut StdIocom<T>) -> bool {
        self.owed
            .retain(|failure| queue_full(answer_failure(io, failure)));
        self.owed.is_empty()
    }

    /// Answers a failed transfer now, or once the transmit queue has room.
    fn answer<const T: usize>(&mut self, io: &mut StdIocom<T>, failure: &Failure<TransKey>) {
        let owed_already = self.owed.iter().any(|f| f.key == failure.key);
        if !owed_already && queue_full(answer_failure(io, failure)) {
            self.owed.push(*failure);
        }
    }

    /// Takes the connection's next event, if one is ready: a transfer's element into the
    /// reassembler (`Some(Some(outcome))` when a transfer ended), any other event to
    /// `other`. `None` when no event is ready.
    fn take_event<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        watch: impl FnOnce(&Event<'_>),
        other: impl FnOnce(Event<'_>),
    ) -> Option<Option<Outcome>> {
        let fed = {
            let event = io.poll_event()?;
            watch(&event);
            let fed = self.reassembler.handle_event(self.cmd, &event);
            if fed == Fed::NotTransfer {
                other(event);
            }
            fed
        };
        Some(match fed {
            Fed::Complete(transfer) => Some(Ok(transfer)),
            Fed::Failed(failure) => {
                self.answer(io, &failure);
                Some(Err(failure))
            }
            _ => None,
        })
    }

    /// What [`send`] does between two turns of the link: take every ready event, queue
    /// the answers owed, then as many parts as fit. True once every part is queued.
    ///
    /// # Errors
    /// The connection's refusal of a part, or the peer's of the transfer (a final reply
    /// to our request with an error): no part is queued after it.
    fn send_between_turns<const T: usize, E>(
        &mut self,
        io: &mut StdIocom<T>,
        sender: &mut Sender<'_>,
        incoming: &mut impl FnMut(Incoming<'_>),
    ) -> Result<bool, SendTransferError<E>> {
        let ours = sender.request_msgid();
        let mut refused = None;
        let mut watch = |event: &Event<'_>| {
            if let Some(code) = ours.and_then(|msgid| refusal(event, msgid)) {
                refused = Some(code);
            }
        };
        while let Some(taken) =
            self.take_event(io, &mut watch, |event| incoming(Incoming::Event(event)))
        {
            if let Some(outcome) = taken {
                incoming(Incoming::Transfer(outcome));
            }
        }
        self.answer_owed(io);
        if let Some(code) = refused {
            return Err(SendTransferError::Refused { code });
        }
        Ok(sender.poll_send(io)? == Progress::Done)
    }

    /// What [`receive`] does between two turns of the link: queue the answers owed, then
    /// take ready events until a transfer ends.
    fn receive_between_turns<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        other: &mut impl FnMut(Event<'_>),
    ) -> Option<Outcome> {
        self.answer_owed(io);
        while let Some(taken) = self.take_event(io, |_| {}, &mut *other) {
            if taken.is_some() {
                return taken;
            }
        }
        None
    }
}

/// The error of `event` if it is the peer's final reply (DELETE) to our request `msgid`
/// with an error: the peer refused the transfer and closed its side.
fn refusal(event: &Event<'_>, msgid: u32) -> Option<u16> {
    let Event::Message { msg, .. } = event else {
        return None;
    };
    let header = msg.header();
    let last = header.cmd.flags().contains(MsgFlags::DELETE);
    (last && header.error != 0)
        .then(|| reply_error(event, msgid))
        .flatten()
}

/// Whether an answer found the transmit queue full (and is still owed). Any other
/// refusal means no answer can go: the link is down or the transaction is over.
fn queue_full(answered: Result<(), SendError>) -> bool {
    matches!(answered, Err(SendError::Tx(TxError::QueueFull { .. })))
}

/// Why a transfer could not be sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendTransferError<E> {
    /// The connection refused a part (the link is down, no free msgid, a transmit queue
    /// too small for one part). The parts before it were sent.
    Send(SendError),
    /// The link failed while the transfer was being sent.
    Drive(DriveError<E>),
    /// The peer closed the link before the last part could be queued.
    Closed,
    /// The peer refused the transfer — a final reply to our request with error `code`
    /// ([`TRANSFER_ERR_TOO_LARGE`](h2msg::transfer::TRANSFER_ERR_TOO_LARGE), 0x22, or
    /// [`TRANSFER_ERR_MALFORMED`](h2msg::transfer::TRANSFER_ERR_MALFORMED), 0x23, §3.5) —
    /// before its last part was queued. No part is queued after the refusal; abort our
    /// side of the transaction (`link.io().abort(cmd, msgid)`).
    Refused {
        /// The reply's error field.
        code: u16,
    },
}

impl<E: fmt::Display> fmt::Display for SendTransferError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "a part of the transfer was refused: {e}"),
            Self::Drive(e) => write!(f, "the link failed during the transfer: {e}"),
            Self::Closed => f.write_str("the link closed before the transfer was sent"),
            Self::Refused { code } => write!(f, "the peer refused the transfer (error {code:#x})"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SendTransferError<E> {}

impl<E> From<DriveError<E>> for SendTransferError<E> {
    fn from(e: DriveError<E>) -> Self {
        Self::Drive(e)
    }
}

impl<E> From<SendError> for SendTransferError<E> {
    fn from(e: SendError) -> Self {
        Self::Send(e)
    }
}

/// Sends every part of `sender` on a blocking link. Queues parts while the transmit
/// queue has room and, while it has none, drives the link — writing, and reading too:
/// every event that arrives meanwhile is taken, transfers under the inbox's command into
/// its reassembler, and handed to `incoming` (a transfer that ended, or any other event).
/// Returns once the last part is queued; the link writes the rest as it is driven next
/// (`receive`, `next_event`, `flush`).
///
/// # Errors
/// [`SendTransferError`]; a transfer cut short must be aborted by the caller
/// (`link.io().abort(cmd, msgid)`) if it was opened.
pub fn send<Tr: Transport, const T: usize>(
    link: &mut DriveLink<Tr, StdIocom<T>>,
    sender: &mut Sender<'_>,
    inbox: &mut Inbox,
    mut incoming: impl FnMut(Incoming<'_>),
) -> Result<(), SendTransferError<Tr::Error>> {
    while !inbox.send_between_turns(link.io(), sender, &mut incoming)? {
        if !link.step()? {
            return Err(SendTransferError::Closed);
        }
    }
    Ok(())
}

/// Drives a blocking link until a transfer under the inbox's command completes or fails
/// — a request of the peer's or a reply to ours — and returns it; `None` once the peer
/// closed the link cleanly. A failure the peer waits to hear of is answered
/// ([`answer_failure`]: 0x22 too large, 0x23 malformed) — at once, or by the next call
/// on the inbox if the transmit queue is full ([`Inbox::owes_answers`]). Every other
/// event is handed to `other`.
///
/// # Errors
/// The link's [`DriveError`].
pub fn receive<Tr: Transport, const T: usize>(
    link: &mut DriveLink<Tr, StdIocom<T>>,
    inbox: &mut Inbox,
    mut other: impl FnMut(Event<'_>),
) -> Result<Option<Outcome>, DriveError<Tr::Error>> {
    loop {
        if let Some(outcome) = inbox.receive_between_turns(link.io(), &mut other) {
            return Ok(Some(outcome));
        }
        if !link.step()? {
            return Ok(None);
        }
    }
}

#[cfg(feature = "tokio")]
mod tokio_io {
    use h2msg::Event;
    use h2msg::transfer::Sender;
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::{Inbox, Incoming, Outcome, SendTransferError};
    use crate::blocking::DriveError;
    use crate::tokio_driver::Link;

    /// [`send`](super::send) over the tokio driver. Cancel-safe between turns: a dropped
    /// future leaves every part queued so far queued, `sender` says how far it got, and
    /// the inbox holds what was received.
    ///
    /// # Errors
    /// As [`send`](super::send).
    pub async fn send_async<S: AsyncRead + AsyncWrite + Unpin, const T: usize>(
        link: &mut Link<S, T>,
        sender: &mut Sender<'_>,
        inbox: &mut Inbox,
        mut incoming: impl FnMut(Incoming<'_>),
    ) -> Result<(), SendTransferError<std::io::Error>> {
        while !inbox.send_between_turns(link.io(), sender, &mut incoming)? {
            if !link.step().await? {
                return Err(SendTransferError::Closed);
            }
        }
        Ok(())
    }

    /// [`receive`](super::receive) over the tokio driver.
    ///
    /// # Errors
    /// As [`receive`](super::receive).
    pub async fn receive_async<S: AsyncRead + AsyncWrite + Unpin, const T: usize>(
        link: &mut Link<S, T>,
        inbox: &mut Inbox,
        mut other: impl FnMut(Event<'_>),
    ) -> Result<Option<Outcome>, DriveError> {
        loop {
            if let Some(outcome) = inbox.receive_between_turns(link.io(), &mut other) {
                return Ok(Some(outcome));
            }
            if !link.step().await? {
                return Ok(None);
            }
        }
    }
}

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio_io::{receive_async, send_async};
