//! # h2msg-std — the h2msg core over std: key files, OS randomness, the `h2msg` tool
//!
//! The key-file layout of the 2012 tools ([`keys`]), the raw RSA filters ([`raw_filter`]),
//! TCP and Unix-socket endpoints ([`transport`]), a blocking driver over any
//! `Read + Write` ([`blocking`]), an async one over tokio's `AsyncRead + AsyncWrite`
//! (`tokio_driver`, feature `tokio`), a link's setup ([`link`]), a shareable
//! request/reply handle over either driver ([`handle`]), large transfers over a link
//! ([`transfer`]), the node ([`service`]), its kept-up outgoing links ([`autoconn`]) and
//! its clients ([`client`]), the loopback [`demo`], the handover of a link to the Linux
//! kernel module ([`kernel_attach`]), the capture decoder ([`dump`]), the throughput and
//! memory measurements of `h2msg bench` ([`mod@bench`]) and the tool's log ([`logging`]).
//! The embedded-io driver lives in the core (`h2msg::drive::embedded`, feature
//! `embedded-io`).
//!
//! ## Getting a link
//!
//! [`link::connect`] and [`link::accept`] set a link up in one call over blocking
//! sockets — key lookup by the peer's address, handshake, stream mode, connection —
//! and `tokio_driver::connect` / `accept` do the same over tokio streams; both take a
//! [`ModeChoice`](h2msg::ModeChoice) or [`link::LinkOptions`] (timeouts, liveness, the
//! size of the transaction tables) and turn `TCP_NODELAY` on. `docs/guide.md` in the
//! repository walks through a link's life; `examples/` has programs to start from.
//!
//! ## Sharing a link
//!
//! [`handle`]: a cloneable [`Handle`](handle::Handle) whose requests each await their own
//! reply, a stream of the peer's requests with responders, waiting sends and a clean
//! close, for any number of tasks (`tokio_driver::into_handle` with
//! feature `tokio`) or threads ([`blocking::into_handle`]).
//!
//! ## Features
//!
//! | Feature | Adds |
//! |---|---|
//! | `openssl-rsa` | `openssl_rsa`: the handshake's raw RSA on the system's OpenSSL (about 10× faster private operations than the `rsa` crate), used by every link this crate sets up; needs libssl-dev and pkg-config |
//! | `tokio` (default) | `tokio_driver`: the async driver, its `connect` / `accept` and the handle's driver, over any tokio `AsyncRead + AsyncWrite` (tokio 1, features `io-util`, `time`, `net`, `macros`, `rt-multi-thread`; a runtime with `enable_time` for timers). On by default, because the service runs its links as tasks; `default-features = false` leaves it out. The handle's channels are tokio's `sync` module, always built (no runtime needed) |
//!
//! The core is always built with `crypto`, `stream-crypto` and `std`: RSA handshakes and
//! every stream mode are there without a feature. [`crypto`] re-exports the `rsa` crate
//! and the key loaders.

pub mod autoconn;
pub mod bench;
pub mod blocking;
pub mod client;
pub mod cluster_hub;
pub mod crypto;
pub mod demo;
pub mod dmsg_shell;
pub mod dump;
pub mod handle;
pub mod kernel_attach;
pub mod keys;
pub mod link;
pub mod logging;
#[cfg(feature = "openssl-rsa")]
pub mod openssl_rsa;
pub mod prepared;
pub mod proto;
pub mod raw_filter;
pub mod service;
pub mod threaded_rsa;
#[cfg(feature = "tokio")]
pub mod tokio_driver;
pub mod transfer;
pub mod transport;

pub use h2msg as core;

/// An [`std::io::Error`] of kind `Other` carrying `e`'s message: how the tool's commands
/// report core errors through `io::Result`.
pub(crate) fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(input: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
