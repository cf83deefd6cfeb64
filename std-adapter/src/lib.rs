//! # h2msg-std — the h2msg core over std: key files, OS randomness, the `h2msg` tool
//!
//! Today this crate holds the key-file layout of the 2012 tools ([`keys`]), the raw RSA
//! filters ([`raw_filter`]), a blocking driver over any `Read + Write` ([`blocking`]), an
//! async one over tokio's `AsyncRead + AsyncWrite` (`tokio_driver`, feature `tokio`), the
//! node's debug shell ([`service`]), the loopback [`demo`] and the capture decoder ([`dump`]). The `h2msg` binary exposes
//! `rsainit`, `rsaenc`, `rsadec`, `demo` and `dump`; the standing service, shell, ping and
//! bench commands are still to come. The embedded-io driver lives in the core
//! (`h2msg::drive::embedded`, feature `embedded-io`).

pub mod blocking;
pub mod client;
pub mod demo;
pub mod dump;
pub mod keys;
pub mod raw_filter;
pub mod service;
#[cfg(feature = "tokio")]
pub mod tokio_driver;

pub use h2msg as core;
