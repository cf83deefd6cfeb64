//! # h2msg-std — the h2msg core over std sockets, pipes and key files
//!
//! Not built yet. This crate will hold the blocking, tokio and embedded-io drivers, the key
//! file layout of `/etc/hammer2`, and the `h2msg` command-line tool (keys, service, shell,
//! ping, dump, demo). Until then it only re-exports the core so the workspace links.

pub use h2msg as core;
