#![no_main]
//! The receive decoder on arbitrary bytes in arbitrary pieces. The body is shared with the
//! stable test that replays `fuzz/seeds/rx_decoder` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::rx_decoder(data));
