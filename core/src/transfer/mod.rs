//! Large transfers: a payload of any size sent as **one streaming transaction** of parts
//! of at most 64 KiB, and put back together on the other end up to a maximum, with its
//! exact byte length (protocol.md §3.5).
//!
//! # On the wire
//!
//! A transfer is one transaction (§8.1) in one direction — a request, or the replies to
//! one — under the application's command:
//!
//! | Element | Flags | Aux data |
//! |---|---|---|
//! | the **announcement** | CREATE (CREATE\|DELETE when the payload is empty) | the payload's length in bytes, a `u64` little-endian ([`ANNOUNCEMENT_LEN`] bytes) |
//! | each **data part** | none; DELETE on the last | the next bytes of the payload, at most [`PART_MAX`]; every part but the last a multiple of 32 bytes |
//!
//! The announced length is what makes the byte count exact in the seed era, whose aux
//! lengths are 32-byte units (§3.5): the receiver cuts the last part's padding to it. In
//! DMSG (exact `aux_bytes`, dmsg.md 2.5) the same announcement lets the receiver refuse a
//! transfer that is too large before any data comes and check the total exactly.
//!
//! # Sending
//!
//! [`Parts`] cuts a payload; [`Sender`] (seed-era [`Iocom`](crate::Iocom)) and
//! [`DmsgSender`] ([`DmsgIocom`](crate::DmsgIocom)) queue the parts on a connection.
//! Backpressure is the transmit queue's room: [`Sender::poll_send`] queues parts until
//! the queue is full and returns [`Progress::Blocked`]; the driver writes, and the
//! caller calls `poll_send` again. No part is ever queued twice or skipped.
//!
//! ```
//! use h2msg::transfer::{Parts, PART_MAX};
//!
//! let payload = vec![7u8; PART_MAX + 1];
//! let mut parts = Parts::new(&payload);
//! let mut sizes = Vec::new();
//! while let Some(part) = parts.next_part() {
//!     sizes.push((part.aux().len(), part.is_first(), part.is_last()));
//!     parts.part_sent(); // once the connection queued it
//! }
//! // The announcement (8 bytes), a full part, the last byte.
//! assert_eq!(sizes, [(8, true, false), (PART_MAX, false, false), (1, false, true)]);
//! ```
//!
//! # Receiving
//!
//! [`Reassembly`] is one transfer's bookkeeping without storage: it checks each part
//! against the announcement and the maximum and says which bytes are data, for a caller
//! that brings its own buffer (a kernel, say). With the `alloc` feature,
//! `Reassembler` keeps the transfers of one connection in memory, each in a buffer of its
//! announced length reserved at the announcement, up to a maximum per transfer
//! ([`DEFAULT_MAX`]: 16 MiB) and a number of transfers at once: it takes the connection's events and yields each payload whole, or
//! a typed [`TransferError`]. A failed transfer's memory is freed at once; the answer the
//! peer should get is [`TransferError::answer`], sent by `answer_failure` /
//! `answer_dmsg_failure`.

use core::fmt;

use crate::wire::MsgFlags;
use crate::wire::limits::{ALIGN, MSGAUX_MAX, MSGHDR_MAX};

mod send;
pub use send::{DmsgSender, Progress, Sender};

#[cfg(feature = "alloc")]
mod reassembler;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use reassembler::{Failure, Fed, Reassembler, Transfer, answer_dmsg_failure, answer_failure};

#[cfg(test)]
mod tests;

/// Most aux bytes of one part: 62 KiB, the seed era's largest aux (MSGAUX_MAX, 64 KiB,
/// §3.5) less the largest header (MSGHDR_MAX, 2 KiB), in both revisions. A part and its
/// header then fit a 64 KiB receive FIFO (the std adapter's), where the receiver checks
/// and takes it in place; a whole 64 KiB part would not, and each would be read in two
/// pieces and copied into aux storage first. In `transfer_bench` (64 MiB, seed, loopback,
/// alternating runs) that raised the ratio to a raw copy from 0.46–0.63× to 0.55–0.61× on
/// the blocking driver and from 0.54–0.55× to 0.57–0.64× on the tokio one. A multiple of
/// 32 bytes, as every part but the last must be. A receiver takes parts up to 65536
/// bytes, as older senders cut them: size receive storage by `MSGAUX_MAX`, not by this.
pub const PART_MAX: usize = MSGAUX_MAX - MSGHDR_MAX;

/// Aux bytes of the announcement: the payload length as a little-endian `u64`.
pub const ANNOUNCEMENT_LEN: usize = 8;

/// The largest payload a receiver takes unless configured otherwise: 16 MiB.
pub const DEFAULT_MAX: usize = 16 << 20;

/// Wire error with which a receiver refuses a transfer it has no room for: larger than
/// its maximum, one transfer too many, or memory it could not get. The value a full
/// transaction table answers with ([`MSG_ERR_TABLE_FULL`](crate::wire::MSG_ERR_TABLE_FULL),
/// 0x22, DMSG's IO): in both cases "no room here, the request was not taken".
pub const TRANSFER_ERR_TOO_LARGE: u16 = 0x22;

/// Wire error with which a receiver ends a transfer that broke the convention or ended
/// without its data: a bad announcement, more or less data than announced, an ABORT from
/// the sender. DMSG's PARAM (0x23, dmsg.md 3.4); the seed era defines no such value.
pub const TRANSFER_ERR_MALFORMED: u16 = 0x23;

/// How a revision carries aux lengths, which decides how much of a part is data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuxLength {
    /// Seed era: aux arrives padded with zeros to 32 bytes (§3.5); the announced length
    /// says where the last part's data ends.
    Padded,
    /// DMSG: aux arrives exactly `aux_bytes` long (dmsg.md 2.5).
    Exact,
}

/// Why a transfer failed. Every failure ends the transfer and frees what it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// The announced length is over the receiver's maximum.
    TooLarge {
        /// Bytes announced.
        announced: u64,
        /// The receiver's maximum.
        max: usize,
    },
    /// The receiver already holds as many transfers as it takes at once.
    TooManyTransfers {
        /// How many it takes.
        limit: usize,
    },
    /// The memory for the transfer's buffer (its announced length) could not be
    /// allocated; refused at the announcement.
    OutOfMemory {
        /// Bytes the buffer needed.
        needed: usize,
    },
    /// The first element's aux was shorter than the [`ANNOUNCEMENT_LEN`] bytes of a
    /// length.
    BadAnnouncement {
        /// Its aux bytes.
        len: usize,
    },
    /// A part carried data past the announced length.
    Overrun {
        /// Bytes announced.
        announced: usize,
    },
    /// The last part (DELETE) came before the announced length was complete.
    Truncated {
        /// Bytes announced.
        announced: usize,
        /// Bytes received.
        received: usize,
    },
    /// A part of a transfer this receiver never saw open: no announcement (CREATE) was
    /// taken for its transaction.
    NotOpen,
    /// A second announcement (CREATE) for a transfer in progress.
    AlreadyOpen,
    /// The sender ended the transfer midway (ABORT).
    Abandoned,
    /// The other end answered the transfer with this error (its refusal).
    Refused {
        /// The `error` field it sent.
        code: u32,
    },
    /// The transaction ended locally: the link was lost (LOSTLINK, §8.4) or its deadline
    /// passed.
    LinkLost,
}

impl TransferError {
    /// The wire error to end the transaction with, if the peer still waits for an
    /// answer: [`TRANSFER_ERR_TOO_LARGE`] for what we had no room for,
    /// [`TRANSFER_ERR_MALFORMED`] for a broken or abandoned transfer; `None` when there
    /// is nothing to answer (no such transfer, the peer's own refusal, a lost link).
    #[must_use]
    pub const fn answer(&self) -> Option<u16> {
        match self {
            Self::TooLarge { .. } | Self::TooManyTransfers { .. } | Self::OutOfMemory { .. } => {
                Some(TRANSFER_ERR_TOO_LARGE)
            }
            Self::BadAnnouncement { .. }
            | Self::Overrun { .. }
            | Self::Truncated { .. }
            | Self::Abandoned => Some(TRANSFER_ERR_MALFORMED),
            Self::NotOpen | Self::AlreadyOpen | Self::Refused { .. } | Self::LinkLost => None,
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { announced, max } => write!(
                f,
                "a transfer of {announced} bytes is over this receiver's maximum of {max}"
            ),
            Self::TooManyTransfers { limit } => write!(
                f,
                "this receiver takes {limit} transfers at once and holds that many"
            ),
            Self::OutOfMemory { needed } => {
                write!(f, "no memory for a transfer buffer of {needed} bytes")
            }
            Self::BadAnnouncement { len } => write!(
                f,
                "a transfer's first element carries {len} aux bytes, not an {ANNOUNCEMENT_LEN}-byte length"
            ),
            Self::Overrun { announced } => {
                write!(
                    f,
                    "a transfer sent more than the {announced} bytes it announced"
                )
            }
            Self::Truncated {
                announced,
                received,
            } => write!(
                f,
                "a transfer ended after {received} of the {announced} bytes it announced"
            ),
            Self::NotOpen => f.write_str("a part of a transfer that was never opened"),
            Self::AlreadyOpen => f.write_str("a second announcement for a transfer in progress"),
            Self::Abandoned => f.write_str("the sender abandoned the transfer midway (ABORT)"),
            Self::Refused { code } => write!(f, "the peer refused the transfer: error {code:#x}"),
            Self::LinkLost => f.write_str("the transaction ended locally (link lost or timed out)"),
        }
    }
}

impl core::error::Error for TransferError {}

/// One element of a transfer as [`Parts`] cuts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    aux: &'a [u8],
    first: bool,
    last: bool,
}

impl<'a> Part<'a> {
    /// Its aux data: the announcement, or a slice of the payload.
    #[must_use]
    pub const fn aux(&self) -> &'a [u8] {
        self.aux
    }

    /// The announcement: send it with CREATE.
    #[must_use]
    pub const fn is_first(&self) -> bool {
        self.first
    }

    /// The last element: send it with DELETE.
    #[must_use]
    pub const fn is_last(&self) -> bool {
        self.last
    }

    /// CREATE on the first element, DELETE on the last, nothing in between.
    #[must_use]
    pub const fn flags(&self) -> MsgFlags {
        let create = if self.first {
            MsgFlags::CREATE
        } else {
            MsgFlags::NONE
        };
        if self.last {
            create.union(MsgFlags::DELETE)
        } else {
            create
        }
    }
}

/// Cuts a payload into the elements of one transfer: the announcement, then parts of
/// [`PART_MAX`] bytes, the last one shorter. Knows nothing of connections: ask for the
/// [`next_part`](Self::next_part), queue it, and say so with
/// [`part_sent`](Self::part_sent).
#[derive(Clone, Debug)]
pub struct Parts<'p> {
    payload: &'p [u8],
    announcement: [u8; ANNOUNCEMENT_LEN],
    /// Payload bytes already queued; `None` before the announcement was.
    sent: Option<usize>,
    done: bool,
}

impl<'p> Parts<'p> {
    /// The elements of a transfer of `payload`.
    #[must_use]
    pub fn new(payload: &'p [u8]) -> Self {
        // usize is at most 64 bits on every target Rust supports.
        let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        Self {
            payload,
            announcement: len.to_le_bytes(),
            sent: None,
            done: false,
        }
    }

    /// The element to queue next, `None` once every element was sent.
    #[must_use]
    pub fn next_part(&self) -> Option<Part<'_>> {
        if self.done {
            return None;
        }
        let Some(sent) = self.sent else {
            return Some(Part {
                aux: &self.announcement,
                first: true,
                last: self.payload.is_empty(),
            });
        };
        let rest = self.payload.get(sent..).unwrap_or_default();
        let len = rest.len().min(PART_MAX);
        Some(Part {
            aux: rest.get(..len).unwrap_or_default(),
            first: false,
            last: len == rest.len(),
        })
    }

    /// Records that the element [`next_part`](Self::next_part) gave was queued.
    pub fn part_sent(&mut self) {
        let Some(part) = self.next_part() else {
            return;
        };
        let (len, last) = (part.aux.len(), part.last);
        self.sent = Some(match self.sent {
            None => 0,
            Some(sent) => sent.saturating_add(len),
        });
        self.done = last;
    }

    /// True once the last element was sent.
    #[must_use]
    pub const fn is_done(&self) -> bool {
        self.done
    }

    /// The payload's length.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.payload.len()
    }

    /// Payload bytes queued so far.
    #[must_use]
    pub fn sent(&self) -> usize {
        self.sent.unwrap_or(0)
    }
}

/// One transfer being received, without storage: checks every part against the
/// announcement and says which of its bytes are payload. The caller copies those into a
/// buffer of [`total`](Self::total) bytes at offset [`received`](Self::received) (taken
/// before the call).
///
/// ```
/// use h2msg::transfer::{AuxLength, Reassembly};
///
/// // A 40-byte payload from a seed-era peer: announced, then one part padded to 64.
/// let mut buffer = [0u8; 64];
/// let mut r = Reassembly::start(&40u64.to_le_bytes(), 1024)?;
/// let part = [9u8; 64];
/// let at = r.received();
/// let data = r.take(&part, AuxLength::Padded)?;
/// buffer[at..at + data.len()].copy_from_slice(data);
/// r.finish()?; // the part carried DELETE
/// assert_eq!(r.received(), 40);
/// # Ok::<(), h2msg::transfer::TransferError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reassembly {
    total: usize,
    received: usize,
}

impl Reassembly {
    /// Starts a transfer from its announcement (the CREATE element's aux), taking at most
    /// `max` bytes.
    ///
    /// # Errors
    /// [`TransferError::BadAnnouncement`] if `announcement` is shorter than
    /// [`ANNOUNCEMENT_LEN`] bytes (bytes past them are ignored: seed-era padding);
    /// [`TransferError::TooLarge`] over `max`.
    pub fn start(announcement: &[u8], max: usize) -> Result<Self, TransferError> {
        let Some(Ok(bytes)) = announcement
            .get(..ANNOUNCEMENT_LEN)
            .map(<[u8; ANNOUNCEMENT_LEN]>::try_from)
        else {
            return Err(TransferError::BadAnnouncement {
                len: announcement.len(),
            });
        };
        let announced = u64::from_le_bytes(bytes);
        match usize::try_from(announced) {
            Ok(total) if total <= max => Ok(Self { total, received: 0 }),
            _ => Err(TransferError::TooLarge { announced, max }),
        }
    }

    /// The announced length.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.total
    }

    /// Payload bytes taken so far.
    #[must_use]
    pub const fn received(&self) -> usize {
        self.received
    }

    /// Takes one data part's aux and returns the payload bytes in it: all of it, or in
    /// the seed era the last part without its padding. Nothing changes on an error.
    ///
    /// # Errors
    /// [`TransferError::Overrun`] if the part carries data past the announced length
    /// (with [`AuxLength::Padded`], more than the padding of the last 32-byte unit).
    pub fn take<'a>(
        &mut self,
        aux: &'a [u8],
        length: AuxLength,
    ) -> Result<&'a [u8], TransferError> {
        let room = self.total.saturating_sub(self.received);
        let data = if aux.len() <= room {
            aux
        } else {
            let pad = aux.len().saturating_sub(room);
            match length {
                AuxLength::Padded if pad < ALIGN => aux.get(..room).unwrap_or_default(),
                _ => {
                    return Err(TransferError::Overrun {
                        announced: self.total,
                    });
                }
            }
        };
        self.received = self.received.saturating_add(data.len());
        Ok(data)
    }

    /// Checks, at the last part (DELETE), that the whole announced length came.
    ///
    /// # Errors
    /// [`TransferError::Truncated`] otherwise.
    pub const fn finish(&self) -> Result<(), TransferError> {
        if self.received == self.total {
            Ok(())
        } else {
            Err(TransferError::Truncated {
                announced: self.total,
                received: self.received,
            })
        }
    }
}
