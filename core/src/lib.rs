//! # h2msg — the HAMMER2 cluster messaging protocol (2012 link protocol)
//!
//! `h2msg` is a `no_std`, sans-IO implementation of the link protocol that DragonFly BSD's
//! HAMMER2 nodes spoke in 2012, the protocol that later became DMSG. Bytes go in, messages
//! come out, and nothing in this crate touches a socket, a clock, a file or an allocator:
//! the adapters (`h2msg-std`, `h2msg-kshim`) own those.
//!
//! ## The lifecycle
//!
//! Every link goes through the same steps, and the types allow no other order:
//!
//! 1. a [`Handshake`] exchanges the 512-byte blocks (RSA, or in the clear with a `.none`
//!    peer) and yields a [`Session`];
//! 2. [`LinkSetup::negotiate`] consumes the session and picks the [`StreamMode`] both ends
//!    accept ([`ModeChoice`]), its ciphers keyed;
//! 3. [`Iocom::new`] builds the connection from the setup and the caller's
//!    [`IocomMemory`], already in its mode;
//! 4. the driver moves bytes ([`Iocom::read_buf`], [`Iocom::pending`], …) and time
//!    ([`Iocom::poll_timeout`], [`Iocom::handle_timeout`] with an [`Instant`]); the
//!    application sends ([`Iocom::open`], [`Iocom::reply`]) and takes [`Event`]s until
//!    [`Event::LinkDown`]. [`drive::Pump`] holds what every driver decides the same way.
//!
//! ## Example: two nodes, handshake to reply, in memory
//!
//! ```
//! use h2msg::wire::{Cmd, SoftCrc32c, WireOrder};
//! use h2msg::{
//!     CounterSalt, Event, Handshake, HandshakePoll, Iocom, IocomMemory, KeyMode, LinkSetup,
//!     ModeChoice, NoRsa, Session,
//! };
//!
//! // A predictable stand-in for a random source, so that this example needs no
//! // dependency: never use one like it outside a test. A real node passes
//! // `&mut getrandom::SysRng` (see "Randomness" below).
//! struct Dice(u8);
//! impl h2msg::rand_core::TryRng for Dice {
//!     type Error = core::convert::Infallible;
//!     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(7) }
//!     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { Ok(7) }
//!     fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
//!         for b in dst { self.0 = self.0.wrapping_mul(31).wrapping_add(7); *b = self.0; }
//!         Ok(())
//!     }
//! }
//! impl h2msg::rand_core::TryCryptoRng for Dice {}
//!
//! // 1. The handshake of two `.none` peers (a real node passes `KeyMode::Rsa`). Each
//! //    side's bytes are fed to the other.
//! let side = |seed| Handshake::<NoRsa>::new(KeyMode::Plaintext, &mut Dice(seed), WireOrder::Little, None);
//! let (mut a, mut b) = (side(1)?, side(2)?);
//! let (to_b, to_a) = (a.pending().to_vec(), b.pending().to_vec());
//! b.feed(&to_b);
//! a.feed(&to_a);
//! a.advance(to_b.len())?;
//! b.advance(to_a.len())?;
//! let done = |poll| match poll {
//!     HandshakePoll::Done(session) => Ok::<Session, &str>(session),
//!     _ => Err("the handshake did not complete"),
//! };
//! let (session_a, session_b) = (done(a.poll())?, done(b.poll())?);
//!
//! // 2. Negotiation consumes each session; 3. each setup builds a connection.
//! type Node = Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8>;
//! let connection = |session| -> Result<Node, Box<dyn core::error::Error>> {
//!     let setup = LinkSetup::negotiate(session, ModeChoice::Auto)?;
//!     let memory = IocomMemory { fifo: vec![0; 8192], aux: vec![0; 65536], tx_ring: vec![0; 70000] };
//!     let mut io = Iocom::new(setup, memory, CounterSalt::default(), SoftCrc32c)?;
//!     io.accept(Cmd::DBG_SHELL)?; // the command this application handles
//!     Ok(io)
//! };
//! let (mut a, mut b) = (connection(session_a)?, connection(session_b)?);
//!
//! // 4. One transaction each way. `carry` is the transport: what one side wrote, the
//! //    other reads.
//! fn carry(from: &mut Node, to: &mut Node) {
//!     let [first, second] = from.pending();
//!     let bytes = [first, second].concat();
//!     from.advance_write(bytes.len()).ok();
//!     to.feed(&bytes);
//! }
//! fn transaction(client: &mut Node, server: &mut Node) -> Result<(), Box<dyn core::error::Error>> {
//!     let request = client.open(Cmd::DBG_SHELL, &[], b"status\0", true)?;
//!     carry(client, server);
//!     let Some(Event::Message { msg, .. }) = server.poll_event() else { panic!("a request") };
//!     let asked = *msg.header();
//!     assert_eq!(&msg.aux()[..7], b"status\0");
//!     server.reply(&asked, 0, b"all well\0", true)?;
//!     carry(server, client);
//!     let Some(Event::Message { msg, .. }) = client.poll_event() else { panic!("a reply") };
//!     assert_eq!(msg.header().msgid, request.msgid);
//!     assert_eq!(&msg.aux()[..9], b"all well\0");
//!     Ok(())
//! }
//! transaction(&mut a, &mut b)?;
//! transaction(&mut b, &mut a)?;
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! ## Modules
//!
//! The lifecycle's types live at the crate root. Five modules hold what the lifecycle
//! does not need every day: [`wire`] (the exact byte layouts, commands, limits, error
//! codes, CRC-32C), [`ioq`] (the receive decoder and transmit queue on their own, for
//! tools such as a capture decoder), [`trans`] (the transaction rules and their
//! vocabulary), [`transfer`] (payloads of any size as one transaction of parts of up to
//! 64 KiB, reassembled with their exact length, §3.5) and [`drive`] (what every driver
//! shares; the embedded-io driver).
//!
//! ## Features
//!
//! | Feature | Adds |
//! |---|---|
//! | `crypto` | `RsaKeys`, the default RSA of the handshake (the `rsa` crate; needs `alloc`) |
//! | `stream-crypto` | the `cbc` and `gcm` stream modes (RustCrypto AES, no alloc) |
//! | `dmsg-gcm-unverified` | **UNVERIFIED** libdmsg's GCM stream keying (dmsg.md 1.4): `LinkSetup::dmsg_gcm_unverified`, `keys::GcmKeys::libdmsg`; implies `stream-crypto` |
//! | `embedded-io` | `drive::embedded`, a blocking driver over embedded-io 0.7 |
//! | `alloc` | `cluster::Heap`: cluster tables that grow as they fill, up to limits; `transfer::Reassembler`: large transfers received into memory that grows as data arrives, up to a maximum |
//! | `std` | `From<DriveError<std::io::Error>> for std::io::Error` |
//! | `test-util` | helpers for tests that need known secrets (`Session::from_parts_for_testing`, `keys_for_testing`, the decoded peer block, a prepared block's `sess`); never for products |
//!
//! ## Randomness
//!
//! The handshake draws the random bytes of its block (§2.3) from the RNG the caller
//! passes: any **`rand_core` 0.10** `TryCryptoRng` (the trait generation this crate is
//! written against, re-exported as `h2msg::rand_core`). With std, **`getrandom` 0.4** with its
//! `sys_rng` feature provides one, `getrandom::SysRng` (the OS source; h2msg-std uses
//! it). An RNG implementing an older `rand_core` (0.6, 0.9: `rand` 0.8 and 0.9) does not
//! satisfy the bound even where its type looks right; the compiler then names a missing
//! `TryCryptoRng` implementation. A kernel or an embedded target implements the two
//! traits over its own source (the kernel shim does).
//!
//! The authority on the format is the project's protocol reference, `docs/protocol.md`;
//! section numbers in these docs (§3.6 and so on) refer to it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]

// Only for `From<DriveError<std::io::Error>> for std::io::Error` (feature `std`).
#[cfg(feature = "std")]
extern crate std;
// Only for the cluster's growable tables (feature `alloc`).
#[cfg(feature = "alloc")]
extern crate alloc;

// The layers, bottom first: time, wire, buf, handshake, stream, ioq, trans, setup, iocom,
// transfer, cluster, drive. A module imports only from the layers below it (tests/layering.rs checks it);
// `handshake` uses only `time`, `wire` and `buf`.
mod buf;
pub mod cluster;
pub mod drive;
mod handshake;
mod iocom;
pub mod ioq;
mod setup;
mod stream;
mod time;
pub mod trans;
pub mod transfer;
pub mod wire;

pub use buf::OverCommit;
pub use handshake::{
    Handshake, HandshakeError, HandshakePoll, KeyExchangeFailure, KeyMode, MAX_RSA_RETRIES, NoRsa,
    OwnKeyId, OwnRsa, PreparedBlock, PreparedBlockError, RawRsa, RsaOpError, Session,
    fit_private_result,
};
#[cfg(feature = "crypto")]
#[cfg_attr(docsrs, doc(cfg(feature = "crypto")))]
pub use handshake::{KeySizeMismatch, OwnRsaKey, RsaKeys, private_block, public_block};
pub use iocom::{
    ACCEPT_MAX, AcceptListFull, Config, DmsgEvent, DmsgIocom, Event, Interest, Iocom, IocomFlags,
    IocomMemory, IocomStats, LinkEnd, Liveness, MemoryError, SendError,
};
pub use ioq::tx::CounterSalt;
pub use setup::LinkSetup;
pub use stream::{
    FLAG_GCM, ModeChoice, NegotiateError, NonePeer, RETIRED_FLAG_GCM_CHUNKS, StreamMode,
    UnknownMode, keys,
};
pub use time::Instant;

/// The `rand_core` this crate's RNG parameters are written against.
pub use rand_core;
