//! The two protocol revisions side by side: one-way `DBG_SHELL` messages with 0 B, 1 KiB
//! and 64 KiB of aux sent by one connection and delivered by another, in memory, for the
//! seed era (`Iocom`, 32-byte header) and DMSG (`DmsgIocom`, 64-byte header, one
//! `hdr_crc` over the header, exact aux, the sequence always checked), in the same run.
//! The baseline is a copy of the same wire bytes (what the transport must do anyway).
//!
//! Run: `cargo bench -p h2msg --bench revisions`.

#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark binary: a panic is a failed run"
)]

mod common;
use common::{HwCrc32c, time};

use std::hint::black_box;

use h2msg::drive::Connection;
use h2msg::wire::{Cmd, MsgFlags, MsgHeader};
use h2msg::{
    Config, CounterSalt, DmsgEvent, DmsgIocom, Event, Iocom, IocomMemory, LinkSetup, Liveness,
};

const FIFO: usize = 64 * 1024;
const AUX: usize = 128 * 1024;
const RING: usize = 256 * 1024;

fn memory() -> IocomMemory<Vec<u8>> {
    IocomMemory {
        fifo: vec![0u8; FIFO],
        aux: vec![0u8; AUX],
        tx_ring: vec![0u8; RING],
    }
}

fn config() -> Config {
    Config {
        liveness: Liveness::OFF,
        ..Config::default()
    }
}

type Seed = Iocom<Vec<u8>, CounterSalt, HwCrc32c, 8>;
type Dmsg = DmsgIocom<Vec<u8>, CounterSalt, HwCrc32c, 8>;

/// Moves `from`'s pending bytes into `to` and counts `to`'s delivered messages; `copied`
/// gets the bytes moved.
fn shuttle<A: Connection, B: Connection>(
    from: &mut A,
    to: &mut B,
    delivered: impl Fn(&mut B) -> usize,
) -> (usize, usize) {
    let mut moved = 0;
    let mut count = 0;
    loop {
        let [first, second] = from.pending();
        let chunk = if first.is_empty() { second } else { first };
        if chunk.is_empty() {
            return (moved, count);
        }
        let room = to.read_buf();
        let n = chunk.len().min(room.len());
        room[..n].copy_from_slice(&chunk[..n]);
        to.commit_read(n).unwrap();
        from.advance_write(n).unwrap();
        moved += n;
        count += delivered(to);
    }
}

fn seed_delivered(io: &mut Seed) -> usize {
    let mut n = 0;
    while let Some(e) = io.poll_event() {
        if let Event::Message { msg, .. } = e {
            black_box(msg.aux());
            n += 1;
        }
    }
    n
}

fn dmsg_delivered(io: &mut Dmsg) -> usize {
    let mut n = 0;
    while let Some(e) = io.poll_event() {
        if let DmsgEvent::Message { msg, .. } = e {
            black_box(msg.aux());
            n += 1;
        }
    }
    n
}

/// Sends `count` messages from a to b, in batches that fit the ring; returns the wire bytes.
fn seed_run(a: &mut Seed, b: &mut Seed, aux: &[u8], count: usize) -> usize {
    let (mut sent, mut got, mut bytes) = (0, 0, 0);
    while got < count {
        while sent < count && a.send(MsgHeader::new(Cmd::DBG_SHELL), &[], aux).is_ok() {
            sent += 1;
        }
        let (moved, n) = shuttle(a, b, seed_delivered);
        bytes += moved;
        got += n;
    }
    bytes
}

fn dmsg_run(a: &mut Dmsg, b: &mut Dmsg, aux: &[u8], count: usize) -> usize {
    let (mut sent, mut got, mut bytes) = (0, 0, 0);
    while got < count {
        while sent < count && a.send_one_way(Cmd::DBG_SHELL, &[], aux).is_ok() {
            sent += 1;
        }
        let (moved, n) = shuttle(a, b, dmsg_delivered);
        bytes += moved;
        got += n;
    }
    bytes
}

fn seed_pair() -> (Seed, Seed) {
    let make = || {
        let mut io = Iocom::with_config(
            LinkSetup::plaintext(),
            memory(),
            CounterSalt::default(),
            HwCrc32c,
            config(),
        )
        .unwrap();
        io.accept(Cmd::DBG_SHELL).unwrap();
        io
    };
    (make(), make())
}

fn dmsg_pair() -> (Dmsg, Dmsg) {
    let make = || {
        let mut io = DmsgIocom::new(
            LinkSetup::plaintext(),
            memory(),
            CounterSalt::default(),
            HwCrc32c,
            config(),
        )
        .unwrap();
        io.accept(Cmd::DBG_SHELL).unwrap();
        io
    };
    (make(), make())
}

fn main() {
    // The one-way message each revision sends (no REPLY, no transaction flags).
    assert_eq!(Cmd::DBG_SHELL.flags(), MsgFlags::NONE);
    println!("one-way DBG_SHELL from one connection to another, in memory, hardware CRC-32C;");
    println!(
        "medians of 11 rounds; copy = the same wire bytes copied once (the least a transport does)"
    );
    println!(
        "{:>6} | {:>10} {:>9} {:>7} | {:>10} {:>9} {:>7} | {:>10}",
        "aux", "seed msg/s", "MB/s", "/copy", "dmsg msg/s", "MB/s", "/copy", "dmsg/seed"
    );
    for aux_len in [0usize, 1024, 65536] {
        let aux: Vec<u8> = (0..aux_len).map(|i| (i * 7) as u8).collect();
        let count = ((32 << 20) / (64 + aux_len)).max(1000);
        let rounds = 11;
        let (mut a, mut b) = seed_pair();
        let mut seed_bytes = 0;
        let seed_t = time(rounds, |_| {
            seed_bytes = seed_run(&mut a, &mut b, &aux, count)
        });
        let (mut a, mut b) = dmsg_pair();
        let mut dmsg_bytes = 0;
        let dmsg_t = time(rounds, |_| {
            dmsg_bytes = dmsg_run(&mut a, &mut b, &aux, count)
        });
        let src = vec![1u8; dmsg_bytes];
        let mut dst = vec![0u8; dmsg_bytes];
        let copy_t = time(rounds, |_| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        });
        let per_s = |t: std::time::Duration| count as f64 / t.as_secs_f64();
        let mb_s = |t: std::time::Duration, bytes: usize| bytes as f64 / t.as_secs_f64() / 1e6;
        println!(
            "{aux_len:>6} | {:>10.0} {:>9.0} {:>6.2}x | {:>10.0} {:>9.0} {:>6.2}x | {:>9.2}x",
            per_s(seed_t),
            mb_s(seed_t, seed_bytes),
            copy_t.as_secs_f64() * seed_bytes as f64 / dmsg_bytes as f64 / seed_t.as_secs_f64(),
            per_s(dmsg_t),
            mb_s(dmsg_t, dmsg_bytes),
            copy_t.as_secs_f64() / dmsg_t.as_secs_f64(),
            seed_t.as_secs_f64() / dmsg_t.as_secs_f64(),
        );
    }
}
