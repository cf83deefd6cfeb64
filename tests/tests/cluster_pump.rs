//! The `cluster_pump` fuzz body (tests/src/fuzz/cluster_pump.rs) on seeded random inputs,
//! so that its invariants are checked on stable in every test run, not only in CI's short
//! fuzz step: no panic, capacities held, no relay from a gone link or on a gone
//! connection or back on its source's, relays and links matching the peers' model.

use h2msg::rand_core::TryRng;
use h2msg_tests::TestRng;
use h2msg_tests::fuzz::{LINKS, PumpReach, RELAYS, cluster_pump};

fn bytes(rng: &mut TestRng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    match rng.try_fill_bytes(&mut out) {
        Ok(()) => out,
        Err(never) => match never {},
    }
}

/// The most each run reached, and the sums of its counters.
fn fold(all: PumpReach, r: PumpReach) -> PumpReach {
    PumpReach {
        relays: all.relays.max(r.relays),
        links: all.links.max(r.links),
        refused: all.refused + r.refused,
        deferred: all.deferred + r.deferred,
        sent: all.sent + r.sent,
        closed: all.closed + r.closed,
    }
}

#[test]
fn random_inputs_keep_the_cluster_invariants() {
    let mut rng = TestRng(0xC1_0573);
    let mut all = PumpReach::default();
    for len in [8usize, 64, 256, 1024, 4096] {
        for _ in 0..100 {
            all = fold(all, cluster_pump(&bytes(&mut rng, len)));
        }
    }
    // Relays were sent and closed again, or the invariants were checked on nothing.
    assert!(all.sent > 100 && all.closed > 100, "{all:?}");
}

#[test]
fn inputs_biased_to_opens_and_flushes_fill_every_table() {
    // Few closes and losses: the capacities are reached, so refusals and deferred
    // relays happen (the body asserts the bounds at every step).
    let mut rng = TestRng(77);
    let mut all = PumpReach::default();
    for _ in 0..150 {
        let mut input = bytes(&mut rng, 2048);
        for (i, b) in input.iter_mut().enumerate().skip(1) {
            // Most ops are opens (0, 3..5), flushes (10), registrations (12), scans (14).
            if i % 4 == 1 {
                let op = [0u8, 3, 4, 5, 10, 14, 12][usize::from(*b) % 7];
                *b = (*b & 0xF0) | op;
            }
        }
        all = fold(all, cluster_pump(&input));
    }
    assert_eq!((all.links, all.relays), (LINKS, RELAYS), "{all:?}");
    assert!(all.refused > 0 && all.deferred > 0, "{all:?}");
}

#[test]
fn the_seed_corpus_sends_and_closes_relays() {
    // The seeds (fuzz/seeds/cluster_pump) start the fuzzer where relays come and go.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/cluster_pump");
    let mut each = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let reach = cluster_pump(&std::fs::read(&path).unwrap());
        each.push((path.file_name().unwrap().to_owned(), reach));
    }
    assert!(each.iter().all(|(_, r)| r.sent > 0), "{each:?}");
    assert!(
        each.iter().filter(|(_, r)| r.closed > 0).count() >= 4,
        "{each:?}"
    );
}
