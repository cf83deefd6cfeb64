#![no_main]
//! The streaming `dump` decoder on arbitrary input. The body is shared with the stable
//! test that replays `fuzz/seeds/dump` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::dump(data));
