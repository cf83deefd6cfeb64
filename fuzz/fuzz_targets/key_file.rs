#![no_main]
//! The key-file parser on arbitrary bytes (PEM PKCS#1 / PKCS#8 / SubjectPublicKeyInfo,
//! DER, garbage). The body is shared with the stable test that replays
//! `fuzz/seeds/key_file` (tests/tests/fuzz_seeds.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| h2msg_tests::fuzz::key_file(data));
