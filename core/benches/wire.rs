//! Wire-layer figures, each as a ratio against a baseline measured in the same run.
//!
//! * CRC-32C: core's slice-by-16 table (`SoftCrc32c`) against the byte-at-a-time 256-entry
//!   table the 2012 C code used, over message-sized inputs.
//! * Per message: sealing a header and parsing the message back, against computing just
//!   the CRCs both must compute (28 header bytes and the aux, twice): what framing costs
//!   beyond its checksums.
//!
//! Run: `cargo bench -p h2msg --bench wire`. Timings are medians of several rounds.

#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "a benchmark binary: a panic is a failed run"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use h2msg::wire::{Cmd, Crc32c, MessageView, MsgHeader, SoftCrc32c, WireOrder};

/// The C implementation's CRC: one 256-entry table, one byte per step.
struct BytewiseCrc32c([u32; 256]);

impl BytewiseCrc32c {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        Self(table)
    }
}

impl Crc32c for BytewiseCrc32c {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        let mut c = !crc;
        for &b in bytes {
            c = self.0[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        !c
    }
}

/// Median time per call of `f`, over `rounds` rounds of `iters` calls.
fn median_per_call(iters: u32, rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed() / iters
        })
        .collect();
    samples.sort();
    samples[rounds / 2]
}

fn mib_per_s(bytes: usize, per_call: Duration) -> f64 {
    bytes as f64 / per_call.as_secs_f64() / (1024.0 * 1024.0)
}

fn main() {
    let bytewise = BytewiseCrc32c::new();
    let soft = SoftCrc32c;
    let data: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    assert_eq!(
        bytewise.checksum(&data),
        soft.checksum(&data),
        "both CRCs agree"
    );

    println!("CRC-32C throughput (baseline: the C code's byte-at-a-time table)");
    println!(
        "{:>8}  {:>14}  {:>14}  {:>7}",
        "bytes", "bytewise MiB/s", "core MiB/s", "ratio"
    );
    for len in [28usize, 256, 4096, 65536] {
        let input = &data[..len];
        let iters = (4_000_000 / len as u32).max(20);
        let base = median_per_call(iters, 9, || {
            black_box(bytewise.checksum(black_box(input)));
        });
        let ours = median_per_call(iters, 9, || {
            black_box(soft.checksum(black_box(input)));
        });
        println!(
            "{len:>8}  {:>14.0}  {:>14.0}  {:>6.2}x",
            mib_per_s(len, base),
            mib_per_s(len, ours),
            base.as_secs_f64() / ours.as_secs_f64()
        );
    }

    println!();
    println!("Per message: seal + parse vs the CRCs alone (baseline)");
    println!(
        "{:>8}  {:>10}  {:>14}  {:>7}",
        "aux", "CRCs ns", "seal+parse ns", "ratio"
    );
    let mut wire = vec![0u8; 32 + 65536];
    for aux_len in [0usize, 32, 1024, 65536] {
        let aux = &data[..aux_len];
        let total = 32 + aux_len;
        let iters = (2_000_000 / total as u32).max(20);
        let base = median_per_call(iters, 9, || {
            for _ in 0..2 {
                black_box(soft.checksum(black_box(&data[4..32])));
                black_box(soft.checksum(black_box(aux)));
            }
        });
        let ours = median_per_call(iters, 9, || {
            let mut h = MsgHeader::new(Cmd::DBG_SHELL);
            let base = h
                .seal(WireOrder::Little, &[], black_box(aux), &soft)
                .unwrap();
            wire[..32].copy_from_slice(&base);
            wire[32..total].copy_from_slice(aux);
            let view = MessageView::parse(black_box(&wire[..total]), &soft).unwrap();
            black_box(view.wire_len());
        });
        println!(
            "{aux_len:>8}  {:>10.0}  {:>14.0}  {:>6.1}x",
            base.as_nanos(),
            ours.as_nanos(),
            ours.as_secs_f64() / base.as_secs_f64()
        );
    }
}
