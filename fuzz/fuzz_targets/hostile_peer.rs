#![no_main]
//! One iocom whose peer is the fuzzer: any frames in any order (raw bytes, or well-formed
//! headers built from the input), with the application's calls and time steps between.
//! The body is shared with the stable test that replays `fuzz/seeds/hostile_peer`
//! (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::hostile_peer(data));
