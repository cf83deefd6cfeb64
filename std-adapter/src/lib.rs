//! # h2msg-std — the h2msg core over std: key files, OS randomness, the `h2msg` tool
//!
//! Today this crate holds the key-file layout of the 2012 tools ([`keys`]) and the raw RSA
//! filters ([`raw_filter`]); the `h2msg` binary exposes them as `rsainit`, `rsaenc` and
//! `rsadec`. The socket drivers and the service, shell, ping, dump and demo commands are
//! still to come.

pub mod keys;
pub mod raw_filter;

pub use h2msg as core;
