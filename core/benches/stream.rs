//! In-memory throughput of one link direction in each stream mode — sender `Iocom` queues,
//! its pending bytes are copied into the receiver `Iocom`, which decodes and delivers —
//! at 0 B, 1 KiB and 64 KiB aux, with the ratio to the raw cipher over the same plaintext
//! bytes measured in the same run (encrypt + decrypt, one call each, as a bulk transfer
//! would: the best any protected link could do). The hardware CRC-32C is injected.
//!
//! Run: `cargo bench -p h2msg --features stream-crypto --bench stream`.

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
use common::{HwCrc32c, median};

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::Aes256;
use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{
    CounterSalt, Event, FLAG_GCM, Iocom, IocomMemory, LinkSetup, ModeChoice, Session, StreamMode,
};

/// Most plaintext bytes in one `gcm` record (protocol.md §2.9).
const RECORD_PLAIN_MAX: usize = 16 * 1024;

type Link = Iocom<Vec<u8>, CounterSalt, HwCrc32c, 4>;

/// The setup an RSA handshake between two h2msg nodes insisting on `mode` gives, with
/// chosen session keys.
fn setup(mode: StreamMode, own: u8, peer: u8) -> LinkSetup {
    let (choice, flags) = match mode {
        StreamMode::Seed => (ModeChoice::Seed, 0),
        StreamMode::Cbc => (ModeChoice::Cbc, 0),
        StreamMode::Gcm => (ModeChoice::Gcm, FLAG_GCM),
    };
    let session = Session::from_parts_for_testing([own; 64], [peer; 64], flags, flags);
    LinkSetup::negotiate(session, choice).unwrap()
}

fn link(mode: StreamMode, own: u8, peer: u8) -> Link {
    // gcm's FIFO holds the largest header and a whole record (§2.9).
    let fifo = if mode == StreamMode::Gcm {
        2048 + 4 + 16_384 + 16
    } else {
        8192
    };
    let memory = IocomMemory {
        fifo: vec![0u8; fifo],
        aux: vec![0u8; 65536],
        tx_ring: vec![0u8; 2 * (2048 + 65536)],
    };
    let mut io = Iocom::new(
        setup(mode, own, peer),
        memory,
        CounterSalt::default(),
        HwCrc32c,
    )
    .unwrap();
    io.accept(Cmd::DBG_SHELL).unwrap();
    io
}

/// Sends `count` messages from one link to the other; returns the median time and the
/// wire bytes per message.
fn one_direction(mode: StreamMode, aux: &[u8], count: usize, rounds: usize) -> (Duration, usize) {
    let mut samples = Vec::new();
    let mut wire_per_msg = 0;
    let mut buf = vec![0u8; 1 << 17];
    for _ in 0..rounds {
        let mut a = link(mode, 1, 2);
        let mut b = link(mode, 2, 1);
        let mut wire = 0;
        let start = Instant::now();
        let mut delivered = 0;
        for _ in 0..count {
            a.send(MsgHeader::new(Cmd::DBG_SHELL), &[], aux).unwrap();
            loop {
                let n = a.copy_pending(&mut buf);
                if n == 0 {
                    break;
                }
                let mut at = 0;
                while at < n {
                    let took = b.feed(&buf[at..n]);
                    at += took;
                    while let Some(event) = b.poll_event() {
                        if let Event::Message { msg, .. } = event {
                            black_box(msg.aux());
                            delivered += 1;
                        }
                    }
                }
                a.advance_write(n).unwrap();
                wire += n;
            }
        }
        samples.push(start.elapsed());
        assert_eq!(delivered, count);
        wire_per_msg = wire / count;
    }
    (median(samples), wire_per_msg)
}

/// Raw AES-256-GCM over `len` bytes in pieces of up to `chunk` bytes (the last one
/// shorter): one encrypt and one decrypt call per piece. `chunk = len` is bulk GCM; 16 384 is the
/// protocol's record (§2.9), to show the cost the framing itself imposes.
fn raw_gcm(len: usize, chunk: usize, count: usize, rounds: usize) -> Duration {
    let chunk = chunk.max(1);
    let aead = Aes256Gcm::new(&Array([7u8; 32]));
    let nonce = Array([1u8; 12]);
    let mut buf = vec![0u8; len];
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..count {
                    for piece in buf.chunks_mut(chunk) {
                        let tag = aead
                            .encrypt_inout_detached(&nonce, &[], piece.into())
                            .unwrap();
                        aead.decrypt_inout_detached(&nonce, &[], piece.into(), &tag)
                            .unwrap();
                    }
                }
                black_box(&buf);
                start.elapsed()
            })
            .collect(),
    )
}

/// Raw AES-256-CBC over `len` bytes: one encrypt and one decrypt call.
fn raw_cbc(len: usize, count: usize, rounds: usize) -> Duration {
    let mut buf = vec![0u8; len];
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..count {
                    let mut enc =
                        cbc::Encryptor::<Aes256>::new(&Array([7u8; 32]), &Array([1u8; 16]));
                    let (blocks, _) = Array::slice_as_chunks_mut(&mut buf);
                    enc.encrypt_blocks(blocks);
                    let mut dec =
                        cbc::Decryptor::<Aes256>::new(&Array([7u8; 32]), &Array([1u8; 16]));
                    let (blocks, _) = Array::slice_as_chunks_mut(&mut buf);
                    dec.decrypt_blocks(blocks);
                }
                black_box(&buf);
                start.elapsed()
            })
            .collect(),
    )
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0)
}

fn main() {
    println!("one direction, in memory: sender Iocom -> copy -> receiver Iocom (hw CRC-32C)");
    println!(
        "{:>6} {:>5} {:>9} {:>10} {:>9} {:>12} {:>10} {:>9}",
        "aux", "mode", "wire/msg", "kmsg/s", "MiB/s", "raw MiB/s", "raw/link", "vs seed"
    );
    for aux_len in [0usize, 1024, 65536] {
        let aux = vec![0x5Au8; aux_len];
        let count = match aux_len {
            0 => 200_000,
            1024 => 40_000,
            _ => 1_000,
        };
        let rounds = 7;
        let plain = 32 + aux_len;
        let (seed, _) = one_direction(StreamMode::Seed, &aux, count, rounds);
        let in_records = raw_gcm(plain, RECORD_PLAIN_MAX, count, rounds);
        for mode in [StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm] {
            let (t, wire) = one_direction(mode, &aux, count, rounds);
            let (raw_name, raw) = match mode {
                StreamMode::Seed => ("-", None),
                StreamMode::Cbc => ("cbc", Some(raw_cbc(plain, count, rounds))),
                StreamMode::Gcm => ("gcm", Some(raw_gcm(plain, plain, count, rounds))),
            };
            let raw_cols = raw.map_or_else(
                || format!("{:>12} {:>10}", "-", "-"),
                |r| {
                    format!(
                        "{:>8.0} {raw_name} {:>9.2}x",
                        mib_s(plain * count, r),
                        r.as_secs_f64() / t.as_secs_f64()
                    )
                },
            );
            println!(
                "{:>6} {:>5} {:>9} {:>10.1} {:>9.0} {raw_cols} {:>8.2}x",
                aux_len,
                mode.name(),
                wire,
                count as f64 / t.as_secs_f64() / 1000.0,
                mib_s(plain * count, t),
                seed.as_secs_f64() / t.as_secs_f64(),
            );
            if mode == StreamMode::Gcm {
                println!(
                    "{:>6} {:>5} raw gcm in 16 KiB records: {:.0} MiB/s, {:.2}x of the link's time",
                    aux_len,
                    "",
                    mib_s(plain * count, in_records),
                    in_records.as_secs_f64() / t.as_secs_f64()
                );
            }
        }
    }
    println!("raw/link: time of the raw cipher (encrypt + decrypt) over the same plaintext");
    println!("bytes / time of the link; 1.00x = the link costs no more than its cipher.");
}
