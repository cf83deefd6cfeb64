//! # h2msg — the HAMMER2 cluster messaging protocol (2012 link protocol)
//!
//! `h2msg` is a `no_std`, sans-IO implementation of the link protocol that DragonFly BSD's
//! HAMMER2 nodes spoke in 2012, the protocol that later became DMSG. Bytes go in, messages
//! come out, and nothing in this crate touches a socket, a clock, a file or an allocator:
//! the adapters own those.
//!
//! ## Layers
//!
//! ```text
//!   std-adapter (h2msg-std)          kernel-shim (h2msg-kshim)
//!   sockets, key files, the CLI      extern "C", caller-owned memory
//!                \                      /
//!                 +---- pure calls ----+
//!                          |
//!   core (this crate)  #![no_std]  #![forbid(unsafe_code)]
//!     wire       layouts of the 32-byte header and the 512-byte handshake
//!                block, the `cmd` field, limits, error codes, CRC-32C,
//!                byte-order detection
//!     ioq        receive decoder and transmit queue
//!     iocom      one connection: rx + tx + flags + events
//!     trans      the transaction table
//!     handshake  the 512-byte RSA exchange, RSA behind a trait
//!     stream     what follows the handshake: seed (plaintext), cbc, gcm,
//!                and their negotiation through the handshake's flags
//!     drive      what every driver shares; the embedded-io driver
//! ```
//!
//! Today the crate holds the [`wire`] layer — everything needed to encode, decode and
//! check one message exactly as the 2012 C implementation put it on the wire — the two
//! directions of a connection in [`ioq`], the transaction table in [`trans`], and one whole
//! connection in [`iocom`], the 512-byte [`handshake`] that opens every link, and the
//! [`stream`] modes that protect what follows it (feature `stream-crypto` for `cbc`/`gcm`).
//!
//! ## Example: a `DBG_SHELL` line, sealed and parsed back
//!
//! ```
//! use h2msg::wire::{Cmd, MessageView, MsgHeader, SoftCrc32c, WireOrder};
//!
//! let crc = SoftCrc32c;
//! let mut header = MsgHeader::new(Cmd::DBG_SHELL);
//! header.salt = 0x327B_2301;
//! let aux = b"help\0";
//!
//! // Sealing stamps aux_bytes, aux_icrc, icrc2 and icrc1 (PROTOCOL.md §3.6).
//! let base = header.seal(WireOrder::Little, &[], aux, &crc)?;
//! assert_eq!(header.aux_icrc, 0xA7EE_6765);
//!
//! // The wire image is the base header, then the aux data padded with zeros to 32.
//! let mut wire = [0u8; 64];
//! wire[..32].copy_from_slice(&base);
//! wire[32..37].copy_from_slice(aux);
//!
//! let view = MessageView::parse(&wire, &crc)?;
//! assert_eq!(view.header().cmd, Cmd::DBG_SHELL);
//! assert_eq!(&view.aux()[..5], b"help\0");
//! assert_eq!(view.wire_len(), 64);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! The authority on the format is the project's `PROTOCOL.md`; section numbers in these
//! docs (§3.6 and so on) refer to it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]

// Only for `From<DriveError<std::io::Error>> for std::io::Error` (feature `std`).
#[cfg(feature = "std")]
extern crate std;

pub mod drive;
pub mod handshake;
pub mod iocom;
pub mod ioq;
pub mod stream;
pub mod trans;
pub mod wire;

/// The `rand_core` this crate's RNG parameters are written against.
pub use rand_core;
