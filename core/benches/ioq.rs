//! Receive and transmit throughput of the ioq state machines, each as a ratio to a raw
//! CRC-32C pass over the same bytes measured in the same run, with core's portable CRC and
//! with a hardware CRC-32C (the `crc32c` crate) injected through [`Crc32c`]. Also: heap
//! allocations per message in steady state, and the size of a connection.
//!
//! Run: `cargo bench -p h2msg --bench ioq`.

#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark binary: a panic is a failed run"
)]

mod common;
use common::{HwCrc32c, median};

use std::hint::black_box;
use std::time::{Duration, Instant};

use h2msg::ioq::{RxDecoder, RxPoll, TxQueue};
use h2msg::wire::{Cmd, Crc32c, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{CounterSalt, Iocom};

/// Counts heap allocations (dhat's testing mode writes no profile), to show that the
/// steady state makes none.
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

const TX_RING: usize = 2048 + 65536;

/// Encodes `count` messages with `aux` through a transmit queue, draining it as a
/// transport would; returns the median time for all `count` and the stream made.
fn encode<C: Crc32c + Clone>(
    crc: C,
    aux: &[u8],
    count: usize,
    rounds: usize,
) -> (Duration, Vec<u8>, u64) {
    let mut tx = TxQueue::new(
        vec![0u8; TX_RING],
        CounterSalt::default(),
        crc,
        WireOrder::Little,
    );
    let mut stream = Vec::with_capacity(count * (32 + aux.len().div_ceil(32) * 32));
    let mut allocs = 0;
    let samples = (0..rounds)
        .map(|round| {
            let before = allocations();
            let start = Instant::now();
            for _ in 0..count {
                if tx.free() < 32 + aux.len() + 32 {
                    let n = tx.pending_len();
                    black_box(tx.pending());
                    tx.advance(n).unwrap();
                }
                tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], black_box(aux))
                    .unwrap();
                if round == 0 {
                    // The first round also records the stream (outside the measured rounds).
                    for part in tx.pending() {
                        stream.extend_from_slice(part);
                    }
                    let n = tx.pending_len();
                    tx.advance(n).unwrap();
                }
            }
            let elapsed = start.elapsed();
            if round > 0 {
                allocs += allocations() - before;
            }
            elapsed
        })
        .skip(1)
        .collect();
    (median(samples), stream, allocs)
}

/// Decodes `stream` (read in 64 KiB pieces, as from a socket); median time for all `count`.
fn decode<C: Crc32c>(crc: C, stream: &[u8], count: usize, rounds: usize) -> (Duration, u64) {
    let mut rx = RxDecoder::new(vec![0u8; 8192], vec![0u8; 65536], crc).unwrap();
    let mut allocs = 0;
    let samples = (0..rounds)
        .map(|_| {
            let before = allocations();
            let start = Instant::now();
            let mut rest = stream;
            let mut seen = 0;
            while seen < count {
                match rx.poll() {
                    RxPoll::Message(m) => {
                        black_box(m.aux());
                        seen += 1;
                    }
                    RxPoll::NeedInput => {
                        let n = rx.feed(&rest[..rest.len().min(65536)]);
                        rest = &rest[n..];
                    }
                    other => panic!("{other:?}"),
                }
            }
            let elapsed = start.elapsed();
            allocs += allocations() - before;
            elapsed
        })
        .collect();
    (median(samples), allocs)
}

/// Copying `stream` into a 64 KiB buffer (what the transport's read does) plus a CRC-32C
/// pass over it: the least any receiver can do.
fn copy_and_crc_pass<C: Crc32c>(crc: &C, stream: &[u8], rounds: usize) -> Duration {
    let mut buf = vec![0u8; 65536];
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for chunk in stream.chunks(65536) {
                    buf[..chunk.len()].copy_from_slice(black_box(chunk));
                    black_box(crc.checksum(&buf[..chunk.len()]));
                }
                start.elapsed()
            })
            .collect(),
    )
}

/// A raw CRC-32C pass over `stream`.
fn crc_pass<C: Crc32c>(crc: &C, stream: &[u8], rounds: usize) -> Duration {
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                black_box(crc.checksum(black_box(stream)));
                start.elapsed()
            })
            .collect(),
    )
}

/// Messages/s (millions) and MiB/s from the time for `count` messages.
fn rate(total: Duration, count: usize, bytes_per_msg: usize) -> (f64, f64) {
    let s = total.as_secs_f64() / count as f64;
    (1.0 / s / 1e6, bytes_per_msg as f64 / s / (1024.0 * 1024.0))
}

fn run<C: Crc32c + Clone>(name: &str, crc: C) -> u64 {
    println!("\n{name}");
    println!(
        "{:>6} {:>8} | {:>9} {:>9} {:>7} {:>9} | {:>9} {:>9} {:>7} | {:>9}",
        "aux",
        "msgs",
        "rx Mmsg/s",
        "rx MiB/s",
        "rx/crc",
        "rx/cp+crc",
        "tx Mmsg/s",
        "tx MiB/s",
        "tx/crc",
        "crc MiB/s"
    );
    let mut allocs = 0;
    for aux_len in [0usize, 64, 1024, 4096, 65536] {
        let aux: Vec<u8> = (0..aux_len).map(|i| (i * 7) as u8).collect();
        let wire_len = 32 + aux_len;
        let count = (16 << 20) / wire_len.max(256);
        let rounds = 15;
        let (tx_t, stream, tx_allocs) = encode(crc.clone(), &aux, count, rounds);
        let (rx_t, rx_allocs) = decode(crc.clone(), &stream, count, rounds);
        let crc_t = crc_pass(&crc, &stream, rounds);
        let copy_crc_t = copy_and_crc_pass(&crc, &stream, rounds);
        allocs += tx_allocs + rx_allocs;
        let (rx_m, rx_b) = rate(rx_t, count, wire_len);
        let (tx_m, tx_b) = rate(tx_t, count, wire_len);
        let (_, crc_b) = rate(crc_t, count, wire_len);
        println!(
            "{aux_len:>6} {count:>8} | {rx_m:>9.2} {rx_b:>9.0} {:>6.2}x {:>8.2}x | {tx_m:>9.2} {tx_b:>9.0} {:>6.2}x | {crc_b:>9.0}",
            crc_t.as_secs_f64() / rx_t.as_secs_f64(),
            copy_crc_t.as_secs_f64() / rx_t.as_secs_f64(),
            crc_t.as_secs_f64() / tx_t.as_secs_f64(),
        );
    }
    allocs
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    println!(
        "ioq throughput; ratios are (CRC-32C over the same bytes) / (ioq time): 1.00x = as fast as the CRC alone"
    );
    let allocs = run("portable CRC-32C (core's SoftCrc32c)", SoftCrc32c)
        + run("hardware CRC-32C (crc32c crate)", HwCrc32c);
    println!("\nheap allocations in the measured rx and tx loops: {allocs} (all sizes, both CRCs)");

    // The buffers are the caller's (8 KiB FIFO, 64 KiB aux, 66 KiB ring in the C sizes);
    // this is the connection's own state beside them.
    type DefaultIocom = Iocom<&'static mut [u8], CounterSalt, SoftCrc32c, 64>;
    println!(
        "size_of::<Iocom> over borrowed buffers, 64+64 transactions: {} bytes (plus the buffers: {} bytes)",
        size_of::<DefaultIocom>(),
        8192 + 65536 + TX_RING
    );
}
