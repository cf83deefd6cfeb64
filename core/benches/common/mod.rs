//! What the core's benchmarks share: the median and timing of repeated runs, and the
//! hardware CRC-32C they inject.

#![allow(dead_code, reason = "each benchmark uses a part")]

use std::time::{Duration, Instant};

use h2msg::wire::Crc32c;

/// Hardware CRC-32C (SSE4.2 `crc32` / ARMv8 CRC, software fallback) from the `crc32c` crate.
#[derive(Clone, Copy)]
pub(crate) struct HwCrc32c;

impl Crc32c for HwCrc32c {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(crc, bytes)
    }
}

/// The middle value (the upper one of an even count).
pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of `rounds` calls of `f`, each given its round number.
pub(crate) fn time(rounds: usize, mut f: impl FnMut(usize)) -> Duration {
    median(
        (0..rounds)
            .map(|i| {
                let start = Instant::now();
                f(i);
                start.elapsed()
            })
            .collect(),
    )
}
