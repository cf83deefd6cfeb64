//! The transfers of one connection, each put back together in a buffer of its announced
//! length (feature `alloc`).

use alloc::vec::Vec;

use rand_core::Rng;

use super::{AuxLength, DEFAULT_MAX, Reassembly, TransferError};
use crate::iocom::{DmsgEvent, DmsgIocom, Event, Iocom, SendError};
use crate::trans::{DmsgKey, Received, Side, TransKey};
use crate::wire::{Cmd, Crc32c, MsgFlags, MsgHeader};

/// A payload received whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer<K> {
    /// Its transaction. For a request ([`Side::Remote`]) the transaction is still open
    /// in the reply direction: answer it (`Iocom::reply`, or a [`Sender::reply`](super::Sender::reply)).
    pub key: K,
    /// The command it came under, flags cleared.
    pub cmd: Cmd,
    /// The payload, exactly as long as announced.
    pub data: Vec<u8>,
}

impl Transfer<TransKey> {
    /// A header to answer the transfer with on a seed-era connection (`Iocom::reply`,
    /// [`Sender::reply`](super::Sender::reply)): its command and msgid.
    #[must_use]
    pub fn reply_to(&self) -> MsgHeader {
        let mut header = MsgHeader::new(self.cmd);
        header.msgid = self.key.msgid;
        header
    }
}

/// A transfer that failed. Its memory is already freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure<K> {
    /// Its transaction.
    pub key: K,
    /// The command it came under, flags cleared.
    pub cmd: Cmd,
    /// Why.
    pub error: TransferError,
}

/// What one event did to the transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fed<K> {
    /// Not about a transfer: handle the event yourself.
    NotTransfer,
    /// A part was taken; the transfer goes on.
    Pending,
    /// A part of a transfer that already failed, or a late ABORT: dropped.
    Ignored,
    /// A transfer is complete.
    Complete(Transfer<K>),
    /// A transfer failed; answer the peer with [`answer_failure`] /
    /// [`answer_dmsg_failure`] ([`TransferError::answer`] says whether it waits for one).
    Failed(Failure<K>),
}

#[derive(Debug)]
enum State {
    Receiving {
        progress: Reassembly,
        data: Vec<u8>,
    },
    /// Failed and answered: the peer's remaining parts are dropped until its DELETE.
    Refused,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    cmd: Cmd,
    state: State,
}

/// The transfers of one connection being received, each into its own buffer.
///
/// Memory is bounded: a transfer holds at most [`max`](Self::max) bytes (plus what the
/// allocator rounds up), and at most [`transfers`](Self::transfers) are received at once,
/// so the whole stays under `max × transfers`. A transfer's buffer is reserved once, at
/// its announcement, at the announced length — checked against the maximum first, so no
/// announcement makes it larger — and never reallocated as the parts arrive: a large
/// transfer costs one allocation and no copying. A transfer for which no memory can be
/// had fails at its announcement ([`TransferError::OutOfMemory`]). Failed transfers are
/// freed at once; a few records of them (no data) are kept so that their remaining parts
/// are dropped quietly.
///
/// ```
/// use h2msg::transfer::{AuxLength, Fed, Parts, Reassembler};
/// use h2msg::wire::{Cmd, MsgFlags};
///
/// let upload = Cmd::app(7).ok_or("a 12-bit number")?;
/// let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
/// let mut receiver = Reassembler::<u32>::new();
/// let mut parts = Parts::new(&payload);
/// let mut outcome = Fed::NotTransfer;
/// while let Some(part) = parts.next_part() {
///     // What a seed-era receiver sees: the aux padded to 32 bytes.
///     let mut aux = part.aux().to_vec();
///     aux.resize(aux.len().div_ceil(32) * 32, 0);
///     outcome = receiver.feed(1, upload, part.flags(), 0, &aux, AuxLength::Padded);
///     parts.part_sent();
/// }
/// let Fed::Complete(transfer) = outcome else { panic!("{outcome:?}") };
/// assert_eq!(transfer.data, payload);
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Reassembler<K> {
    max: usize,
    transfers: usize,
    entries: Vec<Entry<K>>,
}

impl<K: Copy + Eq> Default for Reassembler<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq> Reassembler<K> {
    /// Transfers received at once unless configured otherwise.
    pub const DEFAULT_TRANSFERS: usize = 4;

    /// Up to [`DEFAULT_MAX`] (16 MiB) per transfer, [`Self::DEFAULT_TRANSFERS`] at once.
    #[must_use]
    pub const fn new() -> Self {
        Self::with_limits(DEFAULT_MAX, Self::DEFAULT_TRANSFERS)
    }

    /// Up to `max` bytes per transfer and `transfers` transfers at once.
    #[must_use]
    pub const fn with_limits(max: usize, transfers: usize) -> Self {
        Self {
            max,
            transfers,
            entries: Vec::new(),
        }
    }

    /// The largest payload taken.
    #[must_use]
    pub const fn max(&self) -> usize {
        self.max
    }

    /// How many transfers are received at once.
    #[must_use]
    pub const fn transfers(&self) -> usize {
        self.transfers
    }

    /// Transfers being received now.
    #[must_use]
    pub fn in_progress(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.state, State::Receiving { .. }))
            .count()
    }

    /// Bytes of buffer held now (capacity, not just data).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match &e.state {
                State::Receiving { data, .. } => data.capacity(),
                State::Refused => 0,
            })
            .sum()
    }

    /// Forgets every transfer and frees their memory (the link is down).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    fn position(&self, key: K) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    /// Takes one received element of transaction `key` under `cmd`: its flags, its
    /// `error` field and its aux data as delivered. The revision-independent entry; the
    /// event helpers call it.
    pub fn feed(
        &mut self,
        key: K,
        cmd: Cmd,
        flags: MsgFlags,
        error: u32,
        aux: &[u8],
        length: AuxLength,
    ) -> Fed<K> {
        let cmd = cmd.clear(MsgFlags::ALL);
        let found = self.position(key);
        let fail = |error| Fed::Failed(Failure { key, cmd, error });
        if error != 0 {
            // The peer's verdict on the transaction: whatever we held is over.
            if let Some(at) = found {
                self.entries.swap_remove(at);
            }
            return fail(TransferError::Refused { code: error });
        }
        let delete = flags.contains(MsgFlags::DELETE);
        if flags.contains(MsgFlags::CREATE) {
            if let Some(at) = found {
                self.entries.swap_remove(at);
                return fail(TransferError::AlreadyOpen);
            }
            return self.open(key, cmd, aux, delete);
        }
        let Some(at) = found else {
            // A late ABORT races a close (§8.1); anything else names no transfer of ours.
            return if flags.contains(MsgFlags::ABORT) {
                Fed::Ignored
            } else {
                fail(TransferError::NotOpen)
            };
        };
        let ends = delete || flags.contains(MsgFlags::ABORT);
        let Some(Entry {
            state: State::Receiving { progress, data },
            ..
        }) = self.entries.get_mut(at)
        else {
            if ends {
                self.entries.swap_remove(at);
            }
            return Fed::Ignored;
        };
        if flags.contains(MsgFlags::ABORT) {
            self.entries.swap_remove(at);
            return fail(TransferError::Abandoned);
        }
        // `take` keeps the data within the announced length, which was reserved.
        let outcome = progress
            .take(aux, length)
            .map(|part| data.extend_from_slice(part))
            .and_then(|()| if delete { progress.finish() } else { Ok(()) });
        match outcome {
            Ok(()) if delete => {
                let entry = self.entries.swap_remove(at);
                let State::Receiving { data, .. } = entry.state else {
                    return Fed::Ignored; // matched as Receiving above
                };
                Fed::Complete(Transfer { key, cmd, data })
            }
            Ok(()) => Fed::Pending,
            Err(error) => {
                if delete {
                    self.entries.swap_remove(at);
                } else if let Some(entry) = self.entries.get_mut(at) {
                    entry.state = State::Refused;
                }
                fail(error)
            }
        }
    }

    /// An announcement (CREATE).
    fn open(&mut self, key: K, cmd: Cmd, aux: &[u8], delete: bool) -> Fed<K> {
        let fail = |error| Fed::Failed(Failure { key, cmd, error });
        let started = if self.in_progress() >= self.transfers {
            Err(TransferError::TooManyTransfers {
                limit: self.transfers,
            })
        } else {
            Reassembly::start(aux, self.max)
        };
        let progress = match started {
            Ok(progress) => progress,
            Err(error) => {
                self.remember_refused(key, cmd, delete);
                return fail(error);
            }
        };
        if delete {
            return match progress.finish() {
                Ok(()) => Fed::Complete(Transfer {
                    key,
                    cmd,
                    data: Vec::new(),
                }),
                Err(error) => fail(error),
            };
        }
        // The whole announced length at once (at most `max`: `Reassembly::start` checked
        // it): one allocation, no reallocation and copying as the parts arrive.
        let mut data = Vec::new();
        if data.try_reserve_exact(progress.total()).is_err() {
            let error = TransferError::OutOfMemory {
                needed: progress.total(),
            };
            self.remember_refused(key, cmd, delete);
            return fail(error);
        }
        self.entries.push(Entry {
            key,
            cmd,
            state: State::Receiving { progress, data },
        });
        Fed::Pending
    }

    /// Keeps a record (no data) of a refused transfer whose parts are still coming, while
    /// there is room for one: without it they are reported as [`TransferError::NotOpen`].
    fn remember_refused(&mut self, key: K, cmd: Cmd, delete: bool) {
        let refused = self.entries.len() - self.in_progress();
        if !delete && refused < self.transfers {
            self.entries.push(Entry {
                key,
                cmd,
                state: State::Refused,
            });
        }
    }

    /// The transaction `key` ended locally (link lost, deadline passed): its transfer, if
    /// any, fails with [`TransferError::LinkLost`] and its memory is freed.
    pub fn lost(&mut self, key: K) -> Fed<K> {
        let Some(at) = self.position(key) else {
            return Fed::NotTransfer;
        };
        let entry = self.entries.swap_remove(at);
        match entry.state {
            State::Receiving { .. } => Fed::Failed(Failure {
                key,
                cmd: entry.cmd,
                error: TransferError::LinkLost,
            }),
            State::Refused => Fed::Ignored,
        }
    }
}

/// The flags of a received `cmd`, without REPLY.
const fn transfer_flags(cmd: Cmd) -> MsgFlags {
    cmd.flags()
        .difference(MsgFlags::REPLY)
        .difference(MsgFlags::REVTRANS)
        .difference(MsgFlags::REVCIRC)
}

/// True if `received` is `cmd` whatever the flags.
fn same_command(received: Cmd, cmd: Cmd) -> bool {
    received.clear(MsgFlags::ALL).raw() == cmd.clear(MsgFlags::ALL).raw()
}

impl Reassembler<TransKey> {
    /// Takes an event of a seed-era [`Iocom`]: an element of a transfer under `cmd`
    /// (requests and replies: the peer's transactions and ours), or the local end of a
    /// transaction ([`Event::Aborted`], [`Event::TimedOut`]). `LinkDown` frees
    /// everything. Any other event is [`Fed::NotTransfer`]; so is a one-way message
    /// (msgid 0), which no transfer uses.
    pub fn handle_event(&mut self, cmd: Cmd, event: &Event<'_>) -> Fed<TransKey> {
        match event {
            Event::Message { msg, .. } => {
                let header = msg.header();
                if !same_command(header.cmd, cmd) || header.msgid == 0 {
                    return Fed::NotTransfer;
                }
                // A received reply belongs to a transaction we opened (trans module docs).
                let key = if header.cmd.is_reply() {
                    TransKey::local(header.msgid)
                } else {
                    TransKey::remote(header.msgid)
                };
                let flags = transfer_flags(header.cmd);
                let error = u32::from(header.error);
                self.feed(key, cmd, flags, error, msg.aux(), AuxLength::Padded)
            }
            Event::Aborted { key, .. } | Event::TimedOut { key } => self.lost(*key),
            Event::LinkDown(_) => {
                self.clear();
                Fed::NotTransfer
            }
            _ => Fed::NotTransfer,
        }
    }
}

impl Reassembler<DmsgKey> {
    /// Takes an event of a [`DmsgIocom`], as [`handle_event`](Reassembler::handle_event)
    /// does for the seed era: elements of transactions under `cmd`, and
    /// [`DmsgEvent::Lost`].
    pub fn handle_dmsg_event(&mut self, cmd: Cmd, event: &DmsgEvent<'_>) -> Fed<DmsgKey> {
        match event {
            DmsgEvent::Message {
                msg,
                received:
                    Received::Element {
                        key, effective_cmd, ..
                    },
            } => {
                if !same_command(*effective_cmd, cmd) {
                    return Fed::NotTransfer;
                }
                let header = msg.header();
                let flags = transfer_flags(header.command());
                self.feed(*key, cmd, flags, header.error, msg.aux(), AuxLength::Exact)
            }
            DmsgEvent::Lost(lost) => self.lost(lost.key),
            DmsgEvent::LinkDown(_) => {
                self.clear();
                Fed::NotTransfer
            }
            _ => Fed::NotTransfer,
        }
    }
}

/// Ends a failed transfer's transaction on a seed-era connection as
/// [`TransferError::answer`] says: a final reply with that error to the peer's request,
/// an ABORT of ours for a reply transfer. Nothing is sent when no answer is due or the
/// transaction is already over.
///
/// # Errors
/// The [`SendError`] of the answer (a full queue: drive the link and call again).
pub fn answer_failure<M, R, C, const T: usize>(
    io: &mut Iocom<M, R, C, T>,
    failure: &Failure<TransKey>,
) -> Result<(), SendError>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    let Some(code) = failure.error.answer() else {
        return Ok(());
    };
    let key = failure.key;
    match key.side {
        Side::Remote => {
            if io.remote_transactions().get(key).is_none() {
                return Ok(());
            }
            let mut to = MsgHeader::new(failure.cmd);
            to.msgid = key.msgid;
            io.reply(&to, code, &[], true).map(drop)
        }
        Side::Local => {
            if io.local_transactions().get(key).is_none() {
                return Ok(());
            }
            io.abort(failure.cmd, key.msgid).map(drop)
        }
    }
}

/// [`answer_failure`] for a [`DmsgIocom`]: our DELETE with the error on the peer's
/// transaction, an ABORT with it on ours.
///
/// # Errors
/// As [`answer_failure`].
pub fn answer_dmsg_failure<M, R, C, const T: usize>(
    io: &mut DmsgIocom<M, R, C, T>,
    failure: &Failure<DmsgKey>,
) -> Result<(), SendError>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    let Some(code) = failure.error.answer() else {
        return Ok(());
    };
    let sent = match failure.key.side {
        Side::Remote => io.answer(failure.key, true, u32::from(code)),
        Side::Local => io.abort(failure.key, u32::from(code)),
    };
    match sent {
        Ok(_) | Err(SendError::DirectionClosed | SendError::Dmsg(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
