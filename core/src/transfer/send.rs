//! Queuing a transfer's parts on a connection, as far as its transmit queue has room.

use rand_core::Rng;

use super::{Part, Parts};
use crate::iocom::{DmsgIocom, Iocom, SendError};
use crate::ioq::TxError;
use crate::trans::DmsgKey;
use crate::wire::{Cmd, Crc32c, MsgFlags, MsgHeader};

/// What [`Sender::poll_send`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every part is queued: the transfer is on its way.
    Done,
    /// The transmit queue is full: let the driver write, then call `poll_send` again.
    Blocked {
        /// Wire bytes the next part needs.
        needed: usize,
    },
}

/// A full transmit queue as [`Progress::Blocked`]; any other refusal as the error.
fn blocked(e: SendError) -> Result<Progress, SendError> {
    match e {
        SendError::Tx(TxError::QueueFull { needed, .. }) => Ok(Progress::Blocked { needed }),
        e => Err(e),
    }
}

/// Queues the elements of `parts` in order with `queue` (which sends one on the
/// connection), until every one is queued or the transmit queue is full. An element the
/// connection refused is not marked sent, so the next call starts with it.
fn queue_parts(
    parts: &mut Parts<'_>,
    mut queue: impl FnMut(Part<'_>) -> Result<(), SendError>,
) -> Result<Progress, SendError> {
    while let Some(part) = parts.next_part() {
        match queue(part) {
            Ok(()) => parts.part_sent(),
            Err(e) => return blocked(e),
        }
    }
    Ok(Progress::Done)
}

/// Where a seed-era transfer goes.
#[derive(Clone, Copy, Debug)]
enum SeedRoute {
    /// A new transaction of ours under `cmd`; its msgid once the announcement is queued.
    Request { cmd: Cmd, msgid: Option<u32> },
    /// The replies to the peer's transaction, whose header is `to`.
    Reply { to: MsgHeader },
}

/// Sends one transfer on a seed-era [`Iocom`]: as a new transaction (a request), or as
/// the replies to the peer's transaction.
///
/// ```
/// # use h2msg::transfer::{Progress, Sender};
/// # use h2msg::wire::{Cmd, SoftCrc32c};
/// # use h2msg::{CounterSalt, Iocom, IocomMemory, LinkSetup};
/// let memory = IocomMemory { fifo: vec![0; 8192], aux: vec![], tx_ring: vec![0; 140_000] };
/// let mut io: Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8> =
///     Iocom::new(LinkSetup::plaintext(), memory, CounterSalt::default(), SoftCrc32c)?;
/// let upload = Cmd::app(7).ok_or("a 12-bit number")?;
/// let payload = vec![1u8; 300_000];
/// let mut sender = Sender::request(upload, &payload);
/// let mut written = 0;
/// while let Progress::Blocked { .. } = sender.poll_send(&mut io)? {
///     // A driver writes here; this sketch throws the bytes away.
///     let [a, b] = io.pending();
///     let n = a.len() + b.len();
///     io.advance_write(n)?;
///     written += n;
/// }
/// assert!(sender.is_done() && sender.msgid().is_some());
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sender<'p> {
    parts: Parts<'p>,
    route: SeedRoute,
}

impl<'p> Sender<'p> {
    /// A transfer of `payload` as a new transaction of ours under `cmd` (its flags are
    /// replaced). The peer must [accept](Iocom::accept) `cmd`, and so must we, to see the
    /// peer's replies.
    #[must_use]
    pub fn request(cmd: Cmd, payload: &'p [u8]) -> Self {
        Self {
            parts: Parts::new(payload),
            route: SeedRoute::Request {
                cmd: cmd.clear(MsgFlags::ALL),
                msgid: None,
            },
        }
    }

    /// A transfer of `payload` as the replies to the peer's open transaction `to` (a
    /// header it sent, as delivered): the first reply carries CREATE, the last DELETE.
    #[must_use]
    pub fn reply(to: &MsgHeader, payload: &'p [u8]) -> Self {
        Self {
            parts: Parts::new(payload),
            route: SeedRoute::Reply { to: *to },
        }
    }

    /// The transaction's msgid: for a request once its announcement is queued.
    #[must_use]
    pub const fn msgid(&self) -> Option<u32> {
        match self.route {
            SeedRoute::Request { msgid, .. } => msgid,
            SeedRoute::Reply { to } => Some(to.msgid),
        }
    }

    /// True once every part is queued.
    #[must_use]
    pub const fn is_done(&self) -> bool {
        self.parts.is_done()
    }

    /// Our request's msgid once its announcement is queued; `None` before, and always for
    /// a transfer sent as replies. A final reply to it carrying an error is the peer
    /// refusing the transfer: stop sending ([`abort`](Iocom::abort) the transaction).
    #[must_use]
    pub const fn request_msgid(&self) -> Option<u32> {
        match self.route {
            SeedRoute::Request { msgid, .. } => msgid,
            SeedRoute::Reply { .. } => None,
        }
    }

    /// The parts, to see how far the transfer got.
    #[must_use]
    pub const fn parts(&self) -> &Parts<'p> {
        &self.parts
    }

    /// Queues parts on `io` until all are queued ([`Progress::Done`]) or the transmit
    /// queue is full ([`Progress::Blocked`]: drive the link's writes, then call again).
    ///
    /// # Errors
    /// Any [`SendError`] but a full queue (the link is down, no free msgid, a transmit
    /// queue too small for one part: it needs 2048 + 65536 bytes). The parts queued
    /// before stay queued; the transfer cannot go on (abort it if it was opened).
    pub fn poll_send<M, R, C, const T: usize>(
        &mut self,
        io: &mut Iocom<M, R, C, T>,
    ) -> Result<Progress, SendError>
    where
        M: AsRef<[u8]> + AsMut<[u8]>,
        R: Rng,
        C: Crc32c + Clone,
    {
        let route = &mut self.route;
        queue_parts(&mut self.parts, |part| {
            match route {
                SeedRoute::Request { cmd, msgid: None } => {
                    let sent = io.open(*cmd, &[], part.aux(), part.is_last())?;
                    *route = SeedRoute::Request {
                        cmd: *cmd,
                        msgid: Some(sent.msgid),
                    };
                }
                SeedRoute::Request {
                    cmd,
                    msgid: Some(msgid),
                } => {
                    let mut header = MsgHeader::new(cmd.set(part.flags()));
                    header.msgid = *msgid;
                    io.send(header, &[], part.aux())?;
                }
                SeedRoute::Reply { to } => {
                    io.reply(to, 0, part.aux(), part.is_last())?;
                }
            }
            Ok(())
        })
    }
}

/// Where a DMSG transfer goes.
#[derive(Clone, Copy, Debug)]
enum DmsgRoute {
    /// A new transaction of ours under `parent`; its key once the announcement is queued.
    Request {
        parent: Option<DmsgKey>,
        key: Option<DmsgKey>,
    },
    /// The replies to the peer's transaction `key`.
    Reply { key: DmsgKey },
}

/// Sends one transfer on a [`DmsgIocom`]: as a new transaction of ours, or as the
/// replies to one of the peer's. Used as [`Sender`] is.
#[derive(Clone, Debug)]
pub struct DmsgSender<'p> {
    parts: Parts<'p>,
    cmd: Cmd,
    route: DmsgRoute,
}

impl<'p> DmsgSender<'p> {
    /// A transfer of `payload` as a new transaction of ours under `cmd`, stacked under
    /// `parent` (`None`: top level).
    #[must_use]
    pub fn request(cmd: Cmd, parent: Option<DmsgKey>, payload: &'p [u8]) -> Self {
        Self {
            parts: Parts::new(payload),
            cmd: cmd.clear(MsgFlags::ALL),
            route: DmsgRoute::Request { parent, key: None },
        }
    }

    /// A transfer of `payload` as the replies under `cmd` to the peer's open transaction
    /// `key`.
    #[must_use]
    pub fn reply(key: DmsgKey, cmd: Cmd, payload: &'p [u8]) -> Self {
        Self {
            parts: Parts::new(payload),
            cmd: cmd.clear(MsgFlags::ALL),
            route: DmsgRoute::Reply { key },
        }
    }

    /// The transaction: for a request once its announcement is queued.
    #[must_use]
    pub const fn key(&self) -> Option<DmsgKey> {
        match self.route {
            DmsgRoute::Request { key, .. } => key,
            DmsgRoute::Reply { key } => Some(key),
        }
    }

    /// True once every part is queued.
    #[must_use]
    pub const fn is_done(&self) -> bool {
        self.parts.is_done()
    }

    /// As [`Sender::poll_send`].
    ///
    /// # Errors
    /// As [`Sender::poll_send`].
    pub fn poll_send<M, R, C, const T: usize>(
        &mut self,
        io: &mut DmsgIocom<M, R, C, T>,
    ) -> Result<Progress, SendError>
    where
        M: AsRef<[u8]> + AsMut<[u8]>,
        R: Rng,
        C: Crc32c + Clone,
    {
        let (route, transfer_cmd) = (&mut self.route, self.cmd);
        queue_parts(&mut self.parts, |part| {
            let cmd = transfer_cmd.set(part.flags());
            match route {
                DmsgRoute::Request { parent, key: None } => {
                    let sent = io.open(cmd, *parent, &[], part.aux())?;
                    *route = DmsgRoute::Request {
                        parent: *parent,
                        key: Some(DmsgKey::ours(sent.msgid)),
                    };
                }
                DmsgRoute::Request { key: Some(key), .. } | DmsgRoute::Reply { key } => {
                    io.send(*key, cmd, &[], part.aux())?;
                }
            }
            Ok(())
        })
    }
}
