#![no_main]
//! One DMSG connection whose peer is the fuzzer: any bytes in any chunking, CRCs repaired
//! where a frame is well formed enough. The body is shared with the stable test that
//! replays `fuzz/seeds/dmsg_peer` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::dmsg_peer(data));
