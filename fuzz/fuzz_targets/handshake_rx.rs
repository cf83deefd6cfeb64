#![no_main]
//! The handshake receiver on arbitrary peer bytes in arbitrary pieces, in plaintext mode
//! and with a test RSA key pair. The body is shared with the stable test that replays
//! `fuzz/seeds/handshake_rx` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::handshake_rx(data));
