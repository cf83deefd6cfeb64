//! # h2msg-kshim — the h2msg core behind a C ABI, for kernel modules
//!
//! Not built yet. This crate will expose the core through `extern "C"` functions over
//! caller-owned memory (no allocator, no panic across the boundary) with a C header.
//! It is `no_std` from the start so that nothing std-only creeps in.
#![no_std]

pub use h2msg as core;
