//! What every driver shares: the decisions that do not depend on the transport, and the
//! one error type that names the IOQ code of each failure.
//!
//! A driver moves bytes between a transport and the sans-IO core. Whether it blocks
//! (`h2msg-std`'s `blocking`), awaits (its `tokio_driver`) or runs on a microcontroller
//! (`embedded`, feature `embedded-io`), it makes the same decisions: write everything
//! queued before blocking on a read, take a read of 0 bytes as the end of input, fail the
//! link on a transport error, and report how the link ended. [`Pump`] and
//! [`HandshakePump`] make them once; a driver only adds its transport's calls and its own
//! "try again".
//!
//! Every driver returns [`DriveError`], generic over the transport's error type; its
//! [`code`](DriveError::code) is the spec's IOQ status code (§4.4): SOCK (3) for the
//! transport, the decoder's code for a damaged stream, 12–14 for the handshake.

#[cfg(feature = "embedded-io")]
#[cfg_attr(docsrs, doc(cfg(feature = "embedded-io")))]
pub mod embedded;
mod error;
mod handshake;
mod pump;

pub use error::DriveError;
pub use handshake::{HandshakeNext, HandshakePump};
pub use pump::{NextIo, Pump, reply_error};
