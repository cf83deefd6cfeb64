#![no_main]
//! Two connected iocoms driven by arbitrary operations. The body is shared with the stable
//! test that replays `fuzz/seeds/iocom_pump` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::iocom_pump(data));
