#![no_main]
//! One cluster whose peers are the fuzzer: `LNK_CONN` and `LNK_SPAN` opens, deletes,
//! relay closes and link losses from several connections in any order, with small fixed
//! capacities. The body is shared with the stable test that replays
//! `fuzz/seeds/cluster_pump` (tests/tests/fuzz_seeds.rs) and with the seeded run in
//! tests/tests/cluster_pump.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    h2msg_tests::fuzz::cluster_pump(data);
});
