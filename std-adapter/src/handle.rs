//! A shareable handle on one link: requests that await their reply, a stream of the
//! peer's requests each with a responder, one-way sends, and a clean close — from any
//! number of tasks or threads at once.
//!
//! # Shape
//!
//! A driver owns the connection and its socket; [`Handle`]s talk to it over bounded
//! channels (as hyper's client connection does: the caller spawns the driver, the
//! handles are cheap clones). The same [`Handle`] type serves both drivers:
//!
//! | Driver | Made by | Run by | Handle calls |
//! |---|---|---|---|
//! | tokio | `tokio_driver::into_handle(link)` (feature `tokio`) | `tokio::spawn(driver.run())` | `request(..).await`, `send(..).await`, … |
//! | blocking | [`blocking::into_handle(link)`](crate::blocking::into_handle) | `thread::spawn(move \|\| driver.run())` | `blocking_request(..)`, `blocking_send(..)`, … |
//!
//! The `blocking_*` calls follow tokio's own channels (`blocking_recv`): they block the
//! calling thread, so they must not be called from inside an async task.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # async fn f(link: h2msg_std::tokio_driver::Link<tokio::io::DuplexStream>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use h2msg::wire::Cmd;
//!
//! let echo = Cmd::app(1).ok_or("command number")?;
//! let (handle, _incoming, driver) = h2msg_std::tokio_driver::into_handle(link);
//! tokio::spawn(driver.run());
//! let reply = handle.request(echo, b"hello".to_vec()).await?;
//! assert_eq!(reply.error(), 0);
//! handle.close().await?; // what was queued is written first
//! # Ok(()) }
//! ```
//!
//! # Bounds
//!
//! Nothing grows without bound: requests waiting to be opened ([`REQUEST_QUEUE`], or the
//! transaction table's `T` if larger), other
//! messages waiting to be queued on the link ([`OP_QUEUE`]), received requests not yet
//! taken from [`Incoming`] ([`INCOMING_QUEUE`]) and reply parts not yet taken from a
//! [`ReplyParts`] ([`REPLY_PART_QUEUE`]) are bounded channels. A full one makes the
//! sender wait (the driver included: it stops taking events, so the peer's bytes wait
//! in the socket — TCP's own backpressure) or, for [`Handle::try_send`], fail with
//! [`HandleError::QueueFull`]. Each message carries at most 64 KiB of data (§3.5), so a
//! link's handle machinery holds at most about (64 + 64 + 64) × 64 KiB plus 16 parts
//! per open streamed reply. The headers of requests whose [`Responder`] was dropped
//! unanswered wait in a channel without a fixed size that holds at most one per
//! transaction the peer has open (the table's `T`), so that a drop never loses its
//! answer.
//!
//! # Waiting
//!
//! Every call that hands the driver a message waits for room: first in its channel,
//! then — inside the driver — for room in the link's transmit queue and, for a request,
//! for a free transaction of ours (the table's `T`). A transmit queue that stays full
//! because the peer stopped reading ends the link by the write-stall rule (WRSTALL 31,
//! docs/liveness.md), which fails every waiter; with `Liveness::OFF` nothing bounds that
//! wait but the caller (`tokio::time::timeout`).
//!
//! # Answers nobody gives
//!
//! A request the application cannot answer is still answered, so that the peer never
//! waits forever: a [`Responder`] dropped without its final reply (a
//! [`reply`](Responder::reply) future dropped before the driver took the reply
//! included), and a request that arrives once [`Incoming`] is dropped, are answered with
//! a final reply of error 0x20 (`MSG_ERR_UNKNOWN`, §8.3), as the connection answers
//! commands nobody accepted. A responder that sent parts before it was dropped has them
//! all written before that final reply.

mod router;

use std::fmt;

use h2msg::wire::limits::MSGAUX_MAX;
use h2msg::wire::{Cmd, MsgFlags, MsgHeader};
use h2msg::{AcceptListFull, SendError};
use tokio::sync::{mpsc, oneshot};

use crate::blocking::DuplexWaker;

#[cfg(feature = "tokio")]
pub(crate) use router::Router;
pub(crate) use router::{Ended, Op, Received, Request, Served, Taken};
use router::{PartItem, Tail, pop_tail};

/// Requests a link's handles may have waiting for the driver to open them, at least: a
/// link with a larger transaction table (`T`) has room for `T`, so that as many requests
/// as it can have open can also be on their way (with fewer, tasks beyond the queue wait
/// for room one wake at a time).
pub const REQUEST_QUEUE: usize = 64;
/// Replies, one-way sends and closes a link's handles may have waiting for the driver.
pub const OP_QUEUE: usize = 64;
/// Received requests waiting in [`Incoming`].
pub const INCOMING_QUEUE: usize = 64;
/// Reply parts waiting in one [`ReplyParts`].
pub const REPLY_PART_QUEUE: usize = 16;

/// Why a handle's call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The link was closed — by [`Handle::close`], by every handle being dropped, or by
    /// its driver ending — before this call's message was sent or answered.
    Closed,
    /// The link went down while our request was open: its transaction ended with
    /// LOSTLINK (0x21, §8.4). The driver's `run` returns how the link ended.
    LinkLost,
    /// The connection refused the message.
    Refused(SendError),
    /// The request's command would be the connection's
    /// [`ACCEPT_MAX`](h2msg::ACCEPT_MAX)+1st: the handle accepts each command it
    /// requests, so that its replies are handed over.
    AcceptListFull(AcceptListFull),
    /// The message's data is longer than one message carries (64 KiB, §3.5).
    TooLarge {
        /// Bytes given.
        len: usize,
    },
    /// [`Handle::try_send`] only: no room now.
    QueueFull,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the link is closed"),
            Self::LinkLost => f.write_str("the link went down before the reply (LOSTLINK 0x21)"),
            Self::Refused(e) => write!(f, "the connection refused the message: {e}"),
            Self::AcceptListFull(e) => e.fmt(f),
            Self::TooLarge { len } => {
                write!(
                    f,
                    "{len} bytes of data: one message carries at most {MSGAUX_MAX}"
                )
            }
            Self::QueueFull => f.write_str("no room to queue the message now"),
        }
    }
}

impl std::error::Error for HandleError {}

/// One reply: its header and its data. In the seed era the data comes padded with zeros
/// to a multiple of 32 bytes (§3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    header: MsgHeader,
    data: Vec<u8>,
}

impl Reply {
    /// The reply's header as received.
    #[must_use]
    pub const fn header(&self) -> &MsgHeader {
        &self.header
    }

    /// The reply's data (its aux).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The data, owned.
    #[must_use]
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The header's `error` field: 0 for success; the peer's code otherwise (0x20: it
    /// handles no such command, 0x22: its table was full, §4.4).
    #[must_use]
    pub const fn error(&self) -> u16 {
        self.header.error
    }

    /// Whether this is the transaction's final reply (DELETE set).
    #[must_use]
    pub const fn is_last(&self) -> bool {
        self.header.cmd.flags().contains(MsgFlags::DELETE)
    }
}

/// What the handles and responders of one link share: the channels into its driver and
/// the blocking driver's waker.
#[derive(Clone, Debug)]
struct ToDriver {
    requests: mpsc::Sender<Request>,
    ops: mpsc::Sender<Op>,
    /// Wakes a blocking driver after each message (the tokio driver wakes on its own),
    /// and once more when dropped — after the senders above (fields drop in order), so
    /// that the driver sees the channels closed when the last one goes.
    waker: WakeOnDrop,
}

impl ToDriver {
    fn new(
        requests: mpsc::Sender<Request>,
        ops: mpsc::Sender<Op>,
        waker: Option<DuplexWaker>,
    ) -> Self {
        Self {
            requests,
            ops,
            waker: WakeOnDrop(waker),
        }
    }

    fn wake(&self) {
        self.waker.wake();
    }
}

/// A blocking driver's waker that also wakes it when dropped.
#[derive(Clone, Debug)]
struct WakeOnDrop(Option<DuplexWaker>);

impl WakeOnDrop {
    fn wake(&self) {
        if let Some(waker) = &self.0 {
            waker.wake();
        }
    }
}

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.wake();
    }
}

/// A cloneable handle on one link, for any number of tasks or threads (see the
/// [module](self) docs). Dropping every handle, [`Incoming`] and [`Responder`] closes the
/// link as [`close`](Self::close) does.
#[derive(Clone, Debug)]
pub struct Handle {
    to: ToDriver,
}

/// Refuses data no message can carry.
fn check_len(data: &[u8]) -> Result<(), HandleError> {
    if data.len() > MSGAUX_MAX {
        return Err(HandleError::TooLarge { len: data.len() });
    }
    Ok(())
}

impl Handle {
    /// Sends `cmd` (an application command, [`Cmd::app`]) with `data` as a new
    /// transaction and waits for its reply. A reply in several parts: the first one is
    /// returned and the rest are dropped — use [`request_parts`](Self::request_parts)
    /// to see them all.
    ///
    /// The reply's `error` field is the peer's verdict ([`Reply::error`]); an error here
    /// means no reply came. Dropping the future drops the reply when it comes.
    ///
    /// ```
    /// # async fn f(handle: h2msg_std::handle::Handle) -> Result<(), Box<dyn std::error::Error>> {
    /// let square = h2msg::wire::Cmd::app(2).ok_or("command number")?;
    /// let reply = handle.request(square, 12u64.to_le_bytes().to_vec()).await?;
    /// assert_eq!(reply.data().get(..8), Some(&144u64.to_le_bytes()[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`HandleError::Closed`], [`LinkLost`](HandleError::LinkLost),
    /// [`TooLarge`](HandleError::TooLarge), [`Refused`](HandleError::Refused).
    pub async fn request(&self, cmd: Cmd, data: impl Into<Vec<u8>>) -> Result<Reply, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::one(cmd, data.into(), reply)?).await?;
        answer.await.map_err(|_| HandleError::Closed)?
    }

    /// [`request`](Self::request), blocking the calling thread.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    ///
    /// # Panics
    /// Called from inside an async runtime (tokio's rule for its blocking calls).
    pub fn blocking_request(
        &self,
        cmd: Cmd,
        data: impl Into<Vec<u8>>,
    ) -> Result<Reply, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.blocking_submit(Request::one(cmd, data.into(), reply)?)?;
        answer.blocking_recv().map_err(|_| HandleError::Closed)?
    }

    /// Sends a request as [`request`](Self::request) does and returns its replies as
    /// they come, each part once: for a peer that answers in several parts.
    ///
    /// # Errors
    /// As [`request`](Self::request), for sending it; the parts carry their own.
    pub async fn request_parts(
        &self,
        cmd: Cmd,
        data: impl Into<Vec<u8>>,
    ) -> Result<ReplyParts, HandleError> {
        let (request, parts) = Request::parts(cmd, data.into(), self.to.waker.0.clone())?;
        self.submit(request).await?;
        Ok(parts)
    }

    /// [`request_parts`](Self::request_parts), blocking the calling thread.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_request_parts(
        &self,
        cmd: Cmd,
        data: impl Into<Vec<u8>>,
    ) -> Result<ReplyParts, HandleError> {
        let (request, parts) = Request::parts(cmd, data.into(), self.to.waker.0.clone())?;
        self.blocking_submit(request)?;
        Ok(parts)
    }

    /// Sends `cmd` with `data` as a one-way message (no transaction, no reply), waiting
    /// for room rather than failing when the link's queues are full. Returns once the
    /// driver has taken the message; it is then written in order with every other.
    ///
    /// # Errors
    /// [`HandleError::Closed`], [`TooLarge`](HandleError::TooLarge).
    pub async fn send(&self, cmd: Cmd, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = Op::one_way(cmd, data.into())?;
        self.to
            .ops
            .send(op)
            .await
            .map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }

    /// [`send`](Self::send), blocking the calling thread.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_send(&self, cmd: Cmd, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = Op::one_way(cmd, data.into())?;
        self.to
            .ops
            .blocking_send(op)
            .map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }

    /// [`send`](Self::send) without waiting, for event loops: fails at once when the
    /// driver has [`OP_QUEUE`] messages waiting already.
    ///
    /// # Errors
    /// [`HandleError::QueueFull`], [`Closed`](HandleError::Closed),
    /// [`TooLarge`](HandleError::TooLarge).
    pub fn try_send(&self, cmd: Cmd, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = Op::one_way(cmd, data.into())?;
        self.to.ops.try_send(op).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HandleError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => HandleError::Closed,
        })?;
        self.to.wake();
        Ok(())
    }

    /// Closes the link cleanly, for every handle: everything handed to the driver
    /// before this call is written, the socket's write side is shut (the peer sees the
    /// link end after our last message), and the driver ends. Requests still awaiting a
    /// reply then fail with [`HandleError::Closed`].
    ///
    /// # Errors
    /// [`HandleError::Closed`] if the link was closed already or went down meanwhile
    /// (the driver's `run` says how).
    pub async fn close(&self) -> Result<(), HandleError> {
        let (done, closed) = oneshot::channel();
        self.to
            .ops
            .send(Op::Close(done))
            .await
            .map_err(|_| HandleError::Closed)?;
        self.to.wake();
        closed.await.map_err(|_| HandleError::Closed)
    }

    /// [`close`](Self::close), blocking the calling thread.
    ///
    /// # Errors
    /// As [`close`](Self::close).
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_close(&self) -> Result<(), HandleError> {
        let (done, closed) = oneshot::channel();
        let sent = self.to.ops.blocking_send(Op::Close(done));
        sent.map_err(|_| HandleError::Closed)?;
        self.to.wake();
        closed.blocking_recv().map_err(|_| HandleError::Closed)
    }

    async fn submit(&self, request: Request) -> Result<(), HandleError> {
        let sent = self.to.requests.send(request).await;
        sent.map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }

    fn blocking_submit(&self, request: Request) -> Result<(), HandleError> {
        let sent = self.to.requests.blocking_send(request);
        sent.map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }
}

/// The parts of a reply, as they come ([`Handle::request_parts`]). Ends (`None`) only
/// after the final part (the peer's DELETE, [`Reply::is_last`]) or after an error: a
/// reply cut short — the link lost ([`HandleError::LinkLost`]) or closed
/// ([`HandleError::Closed`]) first — gives every part that had come, then that error as
/// its last item.
#[derive(Debug)]
pub struct ReplyParts {
    parts: mpsc::Receiver<PartItem>,
    /// What the driver could not fit into `parts` when it ended.
    tail: Tail,
    /// The final part or an error was given: nothing follows.
    ended: bool,
    waker: Option<DuplexWaker>,
}

impl ReplyParts {
    /// The next part; `None` after the last, or after an error.
    pub async fn next(&mut self) -> Option<Result<Reply, HandleError>> {
        let part = self.parts.recv().await;
        self.room_made();
        self.after(part)
    }

    /// [`next`](Self::next), blocking the calling thread.
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_next(&mut self) -> Option<Result<Reply, HandleError>> {
        let part = self.parts.blocking_recv();
        self.room_made();
        self.after(part)
    }

    /// What to give for what the channel gave: once it is closed, the tail, and an
    /// error if nothing said the reply was over (a driver dropped before it ended).
    fn after(&mut self, part: Option<PartItem>) -> Option<PartItem> {
        if self.ended {
            return None;
        }
        let part = part
            .or_else(|| pop_tail(&self.tail))
            .unwrap_or(Err(HandleError::Closed));
        self.ended = part.as_ref().map_or(true, Reply::is_last);
        Some(part)
    }

    /// A blocking driver waiting for room here looks again.
    fn room_made(&self) {
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }
}

/// The peer's requests (and one-way messages) for the commands this side accepted
/// (`link.io().accept(cmd)` before the handle was made), in the order they came.
/// Like a [`Handle`], it keeps the link open: a server may serve through it alone.
/// Dropping it answers later requests with 0x20 (see the [module](self) docs).
#[derive(Debug)]
pub struct Incoming {
    requests: mpsc::Receiver<IncomingRequest>,
    /// Keeps the driver's channels open, and wakes a blocking driver.
    to: ToDriver,
}

impl Incoming {
    /// The next request; `None` once the link is closed.
    pub async fn next(&mut self) -> Option<IncomingRequest> {
        let request = self.requests.recv().await;
        self.room_made();
        request
    }

    /// [`next`](Self::next), blocking the calling thread.
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_next(&mut self) -> Option<IncomingRequest> {
        let request = self.requests.blocking_recv();
        self.room_made();
        request
    }

    fn room_made(&self) {
        self.to.wake();
    }
}

/// One request from the peer, with the [`Responder`] that answers it.
#[derive(Debug)]
pub struct IncomingRequest {
    header: MsgHeader,
    data: Vec<u8>,
    responder: Responder,
}

impl IncomingRequest {
    /// The request's header as received (its command, msgid, flags).
    #[must_use]
    pub const fn header(&self) -> &MsgHeader {
        &self.header
    }

    /// The request's data (its aux; in the seed era padded to 32 bytes, §3.5).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The data and the responder, to answer after the request is gone.
    #[must_use]
    pub fn into_parts(self) -> (Vec<u8>, Responder) {
        (self.data, self.responder)
    }

    /// Answers with one final reply ([`Responder::reply`]).
    ///
    /// # Errors
    /// As [`Responder::reply`].
    pub async fn reply(self, error: u16, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.responder.reply(error, data).await
    }
}

/// Answers one request of the peer, in one part or many. Dropped without its final
/// reply, it answers error 0x20 (see the [module](self) docs).
///
/// ```
/// # async fn f(mut incoming: h2msg_std::handle::Incoming) -> Result<(), Box<dyn std::error::Error>> {
/// while let Some(request) = incoming.next().await {
///     let (data, mut responder) = request.into_parts();
///     for chunk in data.chunks(32) {
///         responder.reply_part(chunk.to_vec()).await?; // one part per 32 bytes
///     }
///     responder.reply(0, Vec::new()).await?; // the final, empty part
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Responder {
    request: MsgHeader,
    to: ToDriver,
    /// Where a responder dropped unanswered sends its request's header, for the driver
    /// to answer 0x20; `None` for a one-way message, which needs no answer, and once the
    /// driver has the final reply. Unbounded, so that a drop never loses an answer; it
    /// holds at most one header per transaction the peer has open (the table's `T`): a
    /// responder is made only for a request that opened one, the table refuses a second
    /// CREATE on an open msgid, and the transaction stays open until we answer.
    abandoned: Option<mpsc::UnboundedSender<MsgHeader>>,
}

impl Responder {
    /// The header of the request this answers.
    #[must_use]
    pub const fn request(&self) -> &MsgHeader {
        &self.request
    }

    /// Sends the final reply: `error` (0: success) and `data`. Waits for room as
    /// [`Handle::send`] does.
    ///
    /// # Errors
    /// [`HandleError::Closed`], [`TooLarge`](HandleError::TooLarge).
    pub async fn reply(mut self, error: u16, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = self.reply_op(error, data.into(), true)?;
        // Answered only once the driver has it: a future dropped while it waits for room
        // drops `self` too, which answers 0x20.
        self.to
            .ops
            .send(op)
            .await
            .map_err(|_| HandleError::Closed)?;
        self.abandoned = None;
        self.to.wake();
        Ok(())
    }

    /// [`reply`](Self::reply), blocking the calling thread.
    ///
    /// # Errors
    /// As [`reply`](Self::reply).
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_reply(
        mut self,
        error: u16,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), HandleError> {
        let op = self.reply_op(error, data.into(), true)?;
        self.to
            .ops
            .blocking_send(op)
            .map_err(|_| HandleError::Closed)?;
        self.abandoned = None;
        self.to.wake();
        Ok(())
    }

    /// Sends one part of a reply in several (error 0); the final one is
    /// [`reply`](Self::reply).
    ///
    /// # Errors
    /// As [`reply`](Self::reply).
    pub async fn reply_part(&mut self, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = self.reply_op(0, data.into(), false)?;
        self.to
            .ops
            .send(op)
            .await
            .map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }

    /// [`reply_part`](Self::reply_part), blocking the calling thread.
    ///
    /// # Errors
    /// As [`reply`](Self::reply).
    ///
    /// # Panics
    /// Called from inside an async runtime.
    pub fn blocking_reply_part(&mut self, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let op = self.reply_op(0, data.into(), false)?;
        self.to
            .ops
            .blocking_send(op)
            .map_err(|_| HandleError::Closed)?;
        self.to.wake();
        Ok(())
    }

    fn reply_op(&self, error: u16, data: Vec<u8>, last: bool) -> Result<Op, HandleError> {
        check_len(&data)?;
        Ok(Op::Reply {
            to: self.request,
            error,
            data,
            last,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(abandoned) = self.abandoned.take() {
            // A driver gone needs no answer sent. The driver is woken as `to` drops.
            let _ = abandoned.send(self.request);
        }
    }
}
