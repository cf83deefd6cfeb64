#![no_main]
//! The large-transfer reassembler on arbitrary elements. The body is shared with the
//! stable test that replays `fuzz/seeds/reassembler` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::reassembler(data));
