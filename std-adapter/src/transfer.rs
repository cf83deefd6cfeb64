//! Large transfers over a link: the core's [`h2msg::transfer`] driven by the blocking
//! driver ([`send`], [`receive`]) and the tokio driver (`send_async`, `receive_async`,
//! feature `tokio`).
//!
//! A payload of any size goes as one transaction of ≤ 64 KiB parts after an 8-byte length
//! announcement (`docs/protocol.md` §3.5); the receiver puts it back together up to its
//! [`Reassembler`]'s maximum (16 MiB by default). These functions take the low-level link
//! and wait the way its `flush` and `next_event` do; events that are not about transfers
//! go to the caller's closure, so nothing is lost while a transfer runs.
//!
//! ```no_run
//! use h2msg::transfer::{Reassembler, Sender};
//! use h2msg::wire::Cmd;
//! use h2msg::ModeChoice;
//! use h2msg_std::{keys::KeyDir, link, transfer};
//!
//! let upload = Cmd::app(7).ok_or("a 12-bit number")?;
//! let keys = KeyDir::new("/etc/hammer2");
//! let (mut link, _) = link::connect("192.0.2.7:987", &keys, ModeChoice::Auto)?;
//! link.io().accept(upload)?; // to see the answer
//!
//! // Send 5 MiB as one transaction, then wait for the peer's answer: a transfer back.
//! let payload = vec![0u8; 5 << 20];
//! transfer::send(&mut link, &mut Sender::request(upload, &payload))?;
//! let mut reassembler = Reassembler::new();
//! match transfer::receive(&mut link, upload, &mut reassembler, |_other_event| {})? {
//!     Some(Ok(answer)) => println!("{} bytes back", answer.data.len()),
//!     Some(Err(failure)) => println!("failed: {}", failure.error),
//!     None => println!("the peer closed the link"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use h2msg::drive::{DriveError, Link as DriveLink, Transport};
use h2msg::trans::TransKey;
use h2msg::transfer::{Failure, Fed, Progress, Reassembler, Sender, Transfer, answer_failure};
use h2msg::wire::Cmd;
use h2msg::{Event, SendError};

use crate::blocking::StdIocom;

/// What [`receive`] ends with: a payload whole, or a transfer that failed (answered
/// already when the peer waits for an answer).
pub type Outcome = Result<Transfer<TransKey>, Failure<TransKey>>;

/// Why a transfer could not be sent.
#[derive(Debug)]
pub enum SendTransferError<E> {
    /// The connection refused a part (the link is down, no free msgid, a transmit queue
    /// too small for one part). The parts before it were sent.
    Send(SendError),
    /// The link failed while its queue drained.
    Drive(DriveError<E>),
    /// The queue drained and still had no room for the next part: the driver made no
    /// progress (the link ended).
    NoProgress,
}

impl<E: fmt::Display> fmt::Display for SendTransferError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "a part of the transfer was refused: {e}"),
            Self::Drive(e) => write!(f, "the link failed during the transfer: {e}"),
            Self::NoProgress => f.write_str("the transmit queue never had room for the next part"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SendTransferError<E> {}

impl<E> From<DriveError<E>> for SendTransferError<E> {
    fn from(e: DriveError<E>) -> Self {
        Self::Drive(e)
    }
}

/// How far a sender got: parts queued and whether the announcement went.
fn mark(sender: &Sender<'_>) -> (usize, bool, bool) {
    (
        sender.parts().sent(),
        sender.msgid().is_some(),
        sender.is_done(),
    )
}

/// Sends every part of `sender` on a blocking link, waiting for room in the transmit
/// queue by writing it out ([`flush`](DriveLink::flush); bytes read meanwhile stay queued
/// in the connection for the next `next_event`). Returns once the last part is queued;
/// `link.flush()` to see it leave.
///
/// # Errors
/// [`SendTransferError`]; a transfer cut short must be aborted by the caller
/// (`link.io().abort(cmd, msgid)`) if it was opened.
pub fn send<Tr: Transport, const T: usize>(
    link: &mut DriveLink<Tr, StdIocom<T>>,
    sender: &mut Sender<'_>,
) -> Result<(), SendTransferError<Tr::Error>> {
    let mut stuck_at = None;
    loop {
        match sender.poll_send(link.io()) {
            Ok(Progress::Done) => return Ok(()),
            Ok(Progress::Blocked { .. }) => {
                if stuck_at == Some(mark(sender)) {
                    return Err(SendTransferError::NoProgress);
                }
                stuck_at = Some(mark(sender));
                link.flush()?;
            }
            Err(e) => return Err(SendTransferError::Send(e)),
        }
    }
}

/// Drives a blocking link until a transfer under `cmd` completes or fails — a request of
/// the peer's or a reply to ours — and returns it; `None` once the peer closed the link
/// cleanly. A failure the peer waits to hear of is answered first
/// ([`answer_failure`]: 0x22 too large, 0x23 malformed). Every other event is handed to
/// `other`.
///
/// # Errors
/// The link's [`DriveError`].
pub fn receive<Tr: Transport, const T: usize>(
    link: &mut DriveLink<Tr, StdIocom<T>>,
    cmd: Cmd,
    reassembler: &mut Reassembler<TransKey>,
    mut other: impl FnMut(Event<'_>),
) -> Result<Option<Outcome>, DriveError<Tr::Error>> {
    loop {
        let fed = link.next_event(|event| {
            let fed = reassembler.handle_event(cmd, &event);
            if fed == Fed::NotTransfer {
                other(event);
            }
            fed
        })?;
        match fed {
            None => return Ok(None),
            Some(Fed::Complete(transfer)) => return Ok(Some(Ok(transfer))),
            Some(Fed::Failed(failure)) => {
                if answer_failure(link.io(), &failure).is_err() {
                    // No room for the answer: make some, then try once more (a link
                    // going down cannot take it, and is reported by the next wait).
                    link.flush()?;
                    let _ = answer_failure(link.io(), &failure);
                }
                return Ok(Some(Err(failure)));
            }
            Some(_) => {}
        }
    }
}

#[cfg(feature = "tokio")]
mod tokio_io {
    use h2msg::Event;
    use h2msg::trans::TransKey;
    use h2msg::transfer::{Fed, Progress, Reassembler, Sender, answer_failure};
    use h2msg::wire::Cmd;
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::{Outcome, SendTransferError, mark};
    use crate::blocking::DriveError;
    use crate::tokio_driver::Link;

    /// [`send`](super::send) over the tokio driver: waits for room with
    /// `link.flush().await`. Cancel-safe between parts: a dropped future leaves every part
    /// queued so far queued, and `sender` says how far it got.
    ///
    /// # Errors
    /// As [`send`](super::send).
    pub async fn send_async<S: AsyncRead + AsyncWrite + Unpin, const T: usize>(
        link: &mut Link<S, T>,
        sender: &mut Sender<'_>,
    ) -> Result<(), SendTransferError<std::io::Error>> {
        let mut stuck_at = None;
        loop {
            match sender.poll_send(link.io()) {
                Ok(Progress::Done) => return Ok(()),
                Ok(Progress::Blocked { .. }) => {
                    if stuck_at == Some(mark(sender)) {
                        return Err(SendTransferError::NoProgress);
                    }
                    stuck_at = Some(mark(sender));
                    link.flush().await?;
                }
                Err(e) => return Err(SendTransferError::Send(e)),
            }
        }
    }

    /// [`receive`](super::receive) over the tokio driver.
    ///
    /// # Errors
    /// As [`receive`](super::receive).
    pub async fn receive_async<S: AsyncRead + AsyncWrite + Unpin, const T: usize>(
        link: &mut Link<S, T>,
        cmd: Cmd,
        reassembler: &mut Reassembler<TransKey>,
        mut other: impl FnMut(Event<'_>),
    ) -> Result<Option<Outcome>, DriveError> {
        loop {
            let fed = link
                .next_event(|event| {
                    let fed = reassembler.handle_event(cmd, &event);
                    if fed == Fed::NotTransfer {
                        other(event);
                    }
                    fed
                })
                .await?;
            match fed {
                None => return Ok(None),
                Some(Fed::Complete(transfer)) => return Ok(Some(Ok(transfer))),
                Some(Fed::Failed(failure)) => {
                    if answer_failure(link.io(), &failure).is_err() {
                        link.flush().await?;
                        let _ = answer_failure(link.io(), &failure);
                    }
                    return Ok(Some(Err(failure)));
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio_io::{receive_async, send_async};
