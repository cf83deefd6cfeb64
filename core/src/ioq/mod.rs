//! The two directions of a connection, as pure state machines: [`RxDecoder`] turns bytes into
//! checked messages, [`TxQueue`] turns messages into bytes for a (vectored) write.
//!
//! Neither touches a transport. A driver moves bytes between them and its socket, pipe or
//! kernel buffer, and reports what the transport did; the state machines never block,
//! never allocate and never read a clock.
//!
//! # Receiving
//!
//! The receive decoder (§5): bytes in, checked messages out.
//!
//! ## States
//!
//! The decoder walks the spec's states for every message, checking in the spec's order:
//!
//! | Phase | Waits for | Then checks |
//! |---|---|---|
//! | [`RxPhase::Header1`] | the 32-byte base header | magic (SYNC 1), `icrc1` (HCRC 5), sizes (FIELD 4) |
//! | [`RxPhase::Header2`] | the whole header (base + extended) | `icrc2` (XCRC 6) |
//! | [`RxPhase::AuxData1`] | the aux data, in the FIFO | `aux_icrc` (ACRC 7) |
//! | [`RxPhase::AuxData2`] | the aux data, in lent aux storage | `aux_icrc` (ACRC 7) |
//! | [`RxPhase::Error`] | nothing: the stream failed | — |
//! | [`RxPhase::Closed`] | nothing: the stream ended cleanly | — |
//!
//! ## Memory contract
//!
//! All memory is the caller's, given at construction as any `AsRef<[u8]> + AsMut<[u8]>`
//! (an array owned by the decoder, or a lent `&mut [u8]`):
//!
//! * The **FIFO** (at least [`MSGHDR_MAX`](crate::wire::limits::MSGHDR_MAX) = 2048 bytes; the C code used
//!   [`MSGBUF_SIZE`](crate::wire::limits::MSGBUF_SIZE) = 8192) holds headers, and whole
//!   messages that fit in it: those are delivered **zero-copy**, borrowed from the FIFO.
//! * The **aux storage** receives the aux data of a message too large for the FIFO (header
//!   plus aux above the FIFO size): the bytes already in the FIFO are moved there once, and
//!   [`read_buf`](RxDecoder::read_buf) then points the transport straight into it, so the
//!   rest arrives without another copy. Give it [`MSGAUX_MAX`](crate::wire::limits::MSGAUX_MAX) = 65536 bytes to accept every
//!   legal message, or less (even 0) to accept only what fits in the FIFO.
//! * If such a message's aux data does not fit the aux storage, [`RxDecoder::poll`] returns
//!   [`RxPoll::AuxStorageTooSmall`]: not an error of the stream. Nothing is consumed;
//!   lend bigger storage with [`RxDecoder::replace_aux_storage`] and poll again, or give up
//!   on the connection.
//!
//! Buffered bytes are never dropped (the C code's R1/R2 bugs are not reproduced): the FIFO
//! is compacted only when the message being assembled would not fit behind its start.
//!
//! ## Driving it
//!
//! ```
//! use h2msg::ioq::{RxDecoder, RxPoll};
//! use h2msg::wire::{Cmd, MsgHeader, SoftCrc32c, WireOrder};
//!
//! let mut rx = RxDecoder::new([0u8; 8192], [0u8; 0], SoftCrc32c).unwrap();
//! let wire = MsgHeader::new(Cmd::LNK_PING).seal(WireOrder::Little, &[], &[], &SoftCrc32c)?;
//!
//! // A transport would `read(rx.read_buf())` and report the count; `feed` does both for
//! // bytes the caller already has. Any chunking works.
//! for chunk in wire.chunks(5) {
//!     assert_eq!(rx.feed(chunk), chunk.len());
//! }
//! match rx.poll() {
//!     RxPoll::Message(m) => assert_eq!(m.header().cmd, Cmd::LNK_PING),
//!     other => panic!("{other:?}"),
//! }
//! assert!(matches!(rx.poll(), RxPoll::NeedInput));
//! rx.end_input();
//! assert!(matches!(rx.poll(), RxPoll::Closed)); // a clean end at a message boundary
//! # Ok::<(), h2msg::wire::EncodeError>(())
//! ```
//!
//! # Transmitting
//!
//! The transmit queue (§6): messages in, bytes out for a (vectored) write.
//!
//! [`TxQueue::enqueue`] stamps each message as §6.1 says — magic, salt (random high 24
//! bits, low 8 bits the per-link sequence), `aux_icrc`, `icrc2`, `icrc1` — and copies its
//! wire image (header, extended header, aux, zero padding — §11 T6) into a byte ring the
//! caller sized. The driver takes the queued bytes either as slices for a vectored write
//! ([`TxQueue::pending`]) or copied into its own buffer ([`TxQueue::copy_pending`]), then
//! reports how many the transport accepted ([`TxQueue::advance`]); the next call resumes at
//! exactly that byte. Bytes leave in queue order, messages are never interleaved.
//!
//! Because messages are copied into one ring, the pending bytes are at most two slices
//! (before and after the wrap), well within the spec's 16 iovecs per `writev`
//! ([`MAXIOVEC`](crate::wire::limits::MAXIOVEC)). The copy also means the caller's buffers
//! are free again as soon as `enqueue` returns.
//!
//! ```
//! use h2msg::CounterSalt;
//! use h2msg::ioq::TxQueue;
//! use h2msg::wire::{Cmd, MsgHeader, SoftCrc32c, WireOrder};
//!
//! let mut tx = TxQueue::new([0u8; 4096], CounterSalt::default(), SoftCrc32c, WireOrder::Little);
//! tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], b"help\0")?;
//! assert_eq!(tx.pending_len(), 64);
//!
//! // The transport took 10 bytes; the rest stays queued, in order.
//! tx.advance(10).unwrap();
//! assert_eq!(tx.pending_len(), 54);
//! # Ok::<(), h2msg::ioq::TxError>(())
//! ```

pub(crate) mod rx;
pub(crate) mod tx;

pub use rx::{DmsgRxDecoder, FifoTooSmall, RxDecoder, RxFailure, RxPhase, RxPoll};
pub use tx::{DmsgTxQueue, TxError, TxQueue};
