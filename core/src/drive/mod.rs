//! What every driver shares: the decisions that do not depend on the transport, and the
//! one error type that names the IOQ code of each failure.
//!
//! A driver moves bytes between a transport and the sans-IO core. Whether it blocks
//! (`h2msg-std`'s `blocking`), awaits (its `tokio_driver`) or runs on a microcontroller
//! (`embedded`, feature `embedded-io`), it makes the same decisions: write everything
//! and read as the transport allows — both at once, so two peers that flood each other
//! never block each other — take a read of 0 bytes as the end of input, tell the core the
//! time after every wake and at its [`poll_timeout`](Pump::poll_timeout), fail the link
//! on a transport error, and report how the link ended. [`Pump`] and [`HandshakePump`]
//! make those decisions once; [`Link`] and [`drive_handshake`] are the loop, written once
//! over a small [`Transport`] trait (non-blocking reads and writes, a wait, a clock). A
//! driver only implements the trait — or, if it awaits (tokio), uses the pumps directly.
//!
//! Every driver returns [`DriveError`], generic over the transport's error type; its
//! [`code`](DriveError::code) is the spec's IOQ status code (§4.4): SOCK (3) for the
//! transport, the decoder's code for a damaged stream, 12–14 for the handshake.

mod connection;
#[cfg(feature = "embedded-io")]
#[cfg_attr(docsrs, doc(cfg(feature = "embedded-io")))]
pub mod embedded;
mod error;
mod handshake;
mod link;
mod pump;

pub use connection::{Connection, PollEvent};
pub use error::DriveError;
pub use handshake::{HandshakeNext, HandshakePump};
pub use link::{Link, Transport, TryIoError, Waited, drive_handshake};
pub use pump::{IoInterest, NextIo, Pump, PumpIo, reply_error};
