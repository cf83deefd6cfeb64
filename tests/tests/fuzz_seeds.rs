//! Replays each fuzz target's seed corpus (`fuzz/seeds/<target>/`) on stable, so the
//! targets' bodies are compiled and exercised by every test run.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        body(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(
        count >= 5,
        "{target}: only {count} seeds in {}",
        dir.display()
    );
}

#[test]
fn rx_decoder_seeds() {
    replay("rx_decoder", h2msg_tests::fuzz::rx_decoder);
}

#[test]
fn iocom_pump_seeds() {
    replay("iocom_pump", h2msg_tests::fuzz::iocom_pump);
}

#[test]
fn stream_pump_seeds() {
    replay("stream_pump", h2msg_tests::fuzz::stream_pump);
}

#[test]
fn handshake_rx_seeds() {
    replay("handshake_rx", h2msg_tests::fuzz::handshake_rx);
}

#[test]
fn key_file_seeds() {
    replay("key_file", h2msg_tests::fuzz::key_file);
}

#[test]
fn dump_seeds() {
    replay("dump", h2msg_tests::fuzz::dump);
}

#[test]
fn hostile_peer_seeds() {
    replay("hostile_peer", h2msg_tests::fuzz::hostile_peer);
}

#[test]
fn dmsg_peer_seeds() {
    replay("dmsg_peer", h2msg_tests::fuzz::dmsg_peer);
}

#[test]
fn cluster_pump_seeds() {
    replay("cluster_pump", |data| {
        h2msg_tests::fuzz::cluster_pump(data);
    });
}

#[test]
fn repair_makes_a_damaged_stream_decode_again() {
    // The repair helper must really fix CRCs, or the fuzzer would never get past them.
    // (Bytes chosen outside the size fields, which repair keeps as they are.)
    let spec = h2msg_tests::read_vector("spec/v1-v6.bin");
    let mut damaged = spec.clone();
    for at in [3usize, 40, 100, 150, 235] {
        damaged[at] ^= 0x10;
    }
    let (_, end) = h2msg_tests::decode_stream(&damaged, &[64], 8192, 0);
    assert!(matches!(end, h2msg_tests::Ending::Failed(_)));
    h2msg_tests::fuzz::repair_crcs(&mut damaged);
    let (msgs, end) = h2msg_tests::decode_stream(&damaged, &[64], 8192, 0);
    assert_eq!((msgs.len(), end), (6, h2msg_tests::Ending::Closed));
}

#[test]
fn reassembler_seeds() {
    replay("reassembler", h2msg_tests::fuzz::reassembler);
}
