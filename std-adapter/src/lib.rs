//! # h2msg-std — the h2msg core over std: key files, OS randomness, the `h2msg` tool
//!
//! The key-file layout of the 2012 tools ([`keys`]), the raw RSA filters ([`raw_filter`]),
//! TCP and Unix-socket endpoints ([`transport`]), a blocking driver over any
//! `Read + Write` ([`blocking`]), an async one over tokio's `AsyncRead + AsyncWrite`
//! (`tokio_driver`, feature `tokio`), a link's setup ([`link`]), the node ([`service`])
//! and its clients ([`client`]),
//! the loopback [`demo`], the capture decoder ([`dump`]), the throughput and memory
//! measurements of `h2msg bench` ([`mod@bench`]) and the tool's log ([`logging`]). The
//! embedded-io driver lives in the core (`h2msg::drive::embedded`, feature `embedded-io`).

pub mod bench;
pub mod blocking;
pub mod client;
pub mod demo;
pub mod dump;
pub mod keys;
pub mod link;
pub mod logging;
pub mod prepared;
pub mod raw_filter;
pub mod service;
pub mod threaded_rsa;
#[cfg(feature = "tokio")]
pub mod tokio_driver;
pub mod transport;

pub use h2msg as core;

/// An [`std::io::Error`] of kind `Other` carrying `e`'s message: how the tool's commands
/// report core errors through `io::Result`.
pub(crate) fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
