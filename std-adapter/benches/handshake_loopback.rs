//! Handshake latency over loopback TCP with the 2048-bit keys of the recorded C peers, both
//! sides in this process (each on its own thread), as `link::handshake` runs it:
//!
//! * `one-shot`: `RsaKeys`, the send loop's private ops after connecting (the path before
//!   the pool, and the kernel's) — the baseline;
//! * `threaded`: `ThreadedRsa`, both RSA blocks on two threads (the send loops, then the
//!   decryption), the path `link::handshake` takes when its pool is empty;
//! * `server pool`: the accepting side takes a prepared block, the connecting side is
//!   `threaded` one-shot (a `ping -n 1` against a warm service);
//! * `both pools`: both sides take prepared blocks (two nodes that connect often);
//! * with feature `openssl-rsa`, the same three on OpenSSL's RSA (`OpensslRsa`, pools of
//!   `OpensslOwnRsa`), in the same rounds, and `openssl speed rsa2048` run before the rounds
//!   as the stand-in for the C peer's RSA (it uses OpenSSL): its private and public op times
//!   and what a one-shot side's 9.2 private + 2 public ops cost at that speed.
//!
//! Rounds interleave the variants; each ratio is the median of per-round ratios to the
//! baseline of the same round. Pools are refilled between rounds (not timed); the CPU of
//! the whole process over all rounds, refills included, is reported per handshake.
//!
//! Run: `cargo bench -p h2msg-std --bench handshake_loopback [--features openssl-rsa]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    reason = "a benchmark binary: a panic is a failed run"
)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use h2msg::wire::WireOrder;
use h2msg::{Handshake, KeyMode, PreparedBlock, RsaKeys, Session};
use h2msg_std::bench::loopback_pair;
use h2msg_std::blocking::{Duplex, drive_handshake};
#[cfg(feature = "openssl-rsa")]
use h2msg_std::openssl_rsa::{OpensslOwnRsa, OpensslRsa};
use h2msg_std::prepared::BlockPool;
use h2msg_std::threaded_rsa::ThreadedRsa;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{PrivateKey, PublicKey};

fn key_file(side: &str, file: &str) -> String {
    let path = format!(
        "{}/../tests/vectors/c-peer/v1-rsa/{side}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    OneShot,
    Threaded,
    Pooled,
    #[cfg(feature = "openssl-rsa")]
    OsslThreaded,
    #[cfg(feature = "openssl-rsa")]
    OsslPooled,
}

struct Side {
    own: PrivateKey,
    peer: PublicKey,
    pool: BlockPool,
    #[cfg(feature = "openssl-rsa")]
    ossl_pool: BlockPool,
}

impl Side {
    fn new(me: &str, peer: &str) -> Self {
        let own = PrivateKey::from_pkcs1_pem(&key_file(me, "rsa.prv")).unwrap();
        Self {
            // The pure pool whatever the features (`BlockPool::start` takes the links' RSA).
            pool: BlockPool::start_with(
                h2msg::OwnRsaKey::new(own.clone(), getrandom::SysRng),
                0,
                4,
            )
            .unwrap(),
            #[cfg(feature = "openssl-rsa")]
            ossl_pool: BlockPool::start_with(OpensslOwnRsa::new(&own).unwrap(), 0, 4).unwrap(),
            own,
            peer: PublicKey::from_public_key_pem(&key_file(peer, "rsa.pub")).unwrap(),
        }
    }

    fn pools(&self) -> Vec<&BlockPool> {
        #[cfg(feature = "openssl-rsa")]
        return vec![&self.pool, &self.ossl_pool];
        #[cfg(not(feature = "openssl-rsa"))]
        vec![&self.pool]
    }

    fn handshake(&self, stream: TcpStream, path: Path) -> Session {
        let mut duplex = Duplex::new(stream).unwrap();
        match path {
            Path::OneShot => {
                let keys =
                    RsaKeys::new(self.own.clone(), self.peer.clone(), getrandom::SysRng).unwrap();
                let hs = Handshake::new(
                    KeyMode::Rsa(keys),
                    &mut getrandom::SysRng,
                    WireOrder::Little,
                    None,
                )
                .unwrap();
                drive_handshake(&mut duplex, hs).unwrap()
            }
            Path::Threaded => {
                // As `link::handshake` does with an empty pool: our block now, its two
                // send loops on two threads.
                let mut keys = ThreadedRsa::new(self.own.clone(), self.peer.clone()).unwrap();
                let block =
                    PreparedBlock::prepare(&mut keys, &mut getrandom::SysRng, WireOrder::Little, 0)
                        .unwrap();
                let hs = Handshake::with_prepared(block, keys, None, 0).unwrap();
                drive_handshake(&mut duplex, hs).unwrap()
            }
            Path::Pooled => {
                let keys = ThreadedRsa::new(self.own.clone(), self.peer.clone()).unwrap();
                let block = self.pool.take().expect("the pool was refilled");
                let hs = Handshake::with_prepared(block, keys, None, 0).unwrap();
                drive_handshake(&mut duplex, hs).unwrap()
            }
            #[cfg(feature = "openssl-rsa")]
            Path::OsslThreaded => {
                let mut keys = OpensslRsa::new(&self.own, &self.peer).unwrap();
                let block =
                    PreparedBlock::prepare(&mut keys, &mut getrandom::SysRng, WireOrder::Little, 0)
                        .unwrap();
                let hs = Handshake::with_prepared(block, keys, None, 0).unwrap();
                drive_handshake(&mut duplex, hs).unwrap()
            }
            #[cfg(feature = "openssl-rsa")]
            Path::OsslPooled => {
                let keys = OpensslRsa::new(&self.own, &self.peer).unwrap();
                let block = self.ossl_pool.take().expect("the pool was refilled");
                let hs = Handshake::with_prepared(block, keys, None, 0).unwrap();
                drive_handshake(&mut duplex, hs).unwrap()
            }
        }
    }
}

/// `openssl speed -seconds 1 rsa2048`: (private op, public op) times, if the command runs.
fn openssl_speed() -> Option<(Duration, Duration)> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "1", "rsa2048"])
        .output()
        .ok()?;
    // The summary line: "rsa 2048 bits 0.000240s 0.000007s   4166.7 142857.1".
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("rsa 2048 bits"))?;
    let mut secs = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('s')?.parse::<f64>().ok());
    Some((
        Duration::from_secs_f64(secs.next()?),
        Duration::from_secs_f64(secs.next()?),
    ))
}

/// One connection: the client side on this thread, the server side on another; the time
/// until both have their session.
fn connection(client: &Side, server: &Side, client_path: Path, server_path: Path) -> Duration {
    let (a, b) = loopback_pair().unwrap();
    let start = Instant::now();
    std::thread::scope(|scope| {
        let server_side = scope.spawn(|| server.handshake(b, server_path));
        let ours = client.handshake(a, client_path);
        let theirs = server_side.join().unwrap();
        assert!(ours.is_authenticated() && theirs.is_authenticated());
    });
    start.elapsed()
}

/// CPU time of the whole process (all threads), from /proc/self/stat (Linux).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on
    // Linux's usual configuration).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = 31;
    let client = Side::new("client", "node");
    let server = Side::new("node", "client");
    // Before the rounds, so that it does not share the CPUs with them.
    let speed = openssl_speed();
    let variants = [
        ("one-shot (baseline)", Path::OneShot, Path::OneShot),
        ("threaded", Path::Threaded, Path::Threaded),
        ("server pool + threaded", Path::Threaded, Path::Pooled),
        ("both pools + threaded", Path::Pooled, Path::Pooled),
        #[cfg(feature = "openssl-rsa")]
        ("openssl threaded", Path::OsslThreaded, Path::OsslThreaded),
        #[cfg(feature = "openssl-rsa")]
        ("openssl server pool", Path::OsslThreaded, Path::OsslPooled),
        #[cfg(feature = "openssl-rsa")]
        ("openssl both pools", Path::OsslPooled, Path::OsslPooled),
    ];
    let mut times = vec![Vec::new(); variants.len()];
    let mut ratios = vec![Vec::new(); variants.len()];
    let mut cpu = vec![Duration::ZERO; variants.len()];
    for _ in 0..rounds {
        let mut baseline = None;
        for (v, &(_, client_path, server_path)) in variants.iter().enumerate() {
            // Refills are part of the CPU a pooled handshake costs, not of its latency.
            let cpu_before = process_cpu();
            for pool in client.pools().into_iter().chain(server.pools()) {
                assert!(pool.wait_full(Duration::from_secs(30)));
            }
            let t = connection(&client, &server, client_path, server_path);
            for pool in client.pools().into_iter().chain(server.pools()) {
                assert!(pool.wait_full(Duration::from_secs(30)));
            }
            cpu[v] += process_cpu() - cpu_before;
            let ms = t.as_secs_f64() * 1e3;
            let base = *baseline.get_or_insert(ms);
            times[v].push(ms);
            ratios[v].push(ms / base);
        }
    }
    println!(
        "loopback TCP handshake, both sides in-process, 2048-bit keys, medians of {rounds} rounds"
    );
    for (v, (name, ..)) in variants.iter().enumerate() {
        println!(
            "{name:<24} {:8.3} ms  / baseline {:5.2}x   CPU per connection (both sides, refills included) {:6.1} ms",
            median(times[v].clone()),
            median(ratios[v].clone()),
            cpu[v].as_secs_f64() * 1e3 / rounds as f64
        );
    }
    match speed {
        Some((private, public)) => println!(
            "openssl speed rsa2048 (the C peer's RSA): private {:.3} ms, public {:.4} ms; \
             a one-shot side's 9.2 private + 2 public ops: {:.2} ms CPU, both sides {:.2} ms",
            private.as_secs_f64() * 1e3,
            public.as_secs_f64() * 1e3,
            (private * 92 / 10 + public * 2).as_secs_f64() * 1e3,
            (private * 92 / 10 + public * 2).as_secs_f64() * 2e3,
        ),
        None => println!("openssl speed rsa2048: the openssl command did not run"),
    }
}
