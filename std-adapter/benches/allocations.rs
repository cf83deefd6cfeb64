//! Heap allocations per message in steady state through the blocking driver over loopback
//! TCP (goal: 0). Two transfers that differ only in their message count are counted; the
//! difference divided by the extra messages is what each message costs, with the setup
//! (sockets, threads, connection buffers) cancelled out.
//!
//! Run: `cargo bench -p h2msg-std --bench allocations`. Throughput: `h2msg bench`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a benchmark binary: a panic is a failed run"
)]

use h2msg::StreamMode;
use h2msg_std::bench::h2msg_transfer;
use indicatif::ProgressBar;

/// Counts heap allocations (dhat's testing mode writes no profile).
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let hidden = ProgressBar::hidden();
    println!("heap allocations per message in steady state (goal 0)");
    for mode in [StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm] {
        for aux_len in [0usize, 1024, 65536] {
            let base = 2_000u64;
            let small = allocations_during(|| {
                h2msg_transfer(aux_len, base, mode, &hidden).unwrap();
            });
            let large = allocations_during(|| {
                h2msg_transfer(aux_len, 3 * base, mode, &hidden).unwrap();
            });
            let per_message = large.saturating_sub(small) as f64 / (2 * base) as f64;
            println!(
                "  {mode} aux {aux_len:>5} B: {small} allocations for {base} messages, \
                 {large} for {}: {per_message:.4} per message",
                3 * base
            );
        }
    }
}
