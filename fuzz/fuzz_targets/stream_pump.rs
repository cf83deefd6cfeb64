#![no_main]
//! Two connected iocoms in the `cbc` or `gcm` stream mode driven by arbitrary operations,
//! corruption in flight included. The body is shared with the stable test that replays
//! `fuzz/seeds/stream_pump` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::stream_pump(data));
