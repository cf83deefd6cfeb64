//! The two directions of a connection, as pure state machines: [`rx`] turns bytes into
//! checked messages, [`tx`] turns messages into bytes for a (vectored) write.
//!
//! Neither touches a transport. A driver moves bytes between them and its socket, pipe or
//! kernel buffer, and reports what the transport did; the state machines never block,
//! never allocate and never read a clock.

pub(crate) mod rx;
pub(crate) mod tx;

pub use rx::{FifoTooSmall, RxDecoder, RxFailure, RxPhase, RxPoll};
pub use tx::{TxError, TxQueue};
