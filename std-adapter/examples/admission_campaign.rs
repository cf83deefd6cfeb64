//! The admission campaign of issue #13: keyed addresses that open handshakes and stall,
//! against one `h2msg service`, while a good client connects now and then. Prints how many
//! good connections were served, their connect times, what the attackers saw and the
//! service's CPU use. A measurement, not a test: nothing here asserts a time.
//!
//! ```text
//! cargo run -p h2msg-std --example admission_campaign -- \
//!     --bin target/debug/h2msg --addresses 20 [--per-address 16] [--good 10] \
//!     [-- SERVICE OPTIONS, e.g. --max-links 200]
//! ```
//!
//! Each attacker address is 127.0.0.2, 127.0.0.3, ... with a `.pub` key in the service's
//! key directory (a keyed address: the service starts an RSA handshake with it). Each of
//! its connections connects, sends nothing and reads until the service closes it, then
//! connects again after `--attacker-pause` seconds: the slots stay held for the whole run.
//! The good client is 127.0.0.1 with a real key pair; a connection counts as served once
//! its handshake is through and the shell answered `ping` with `pong`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a measurement program: a failed set-up ends it with its reason"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use h2msg::ModeChoice;
use h2msg_std::client::{connect_within, shell_exchange};
use h2msg_std::keys::KeyDir;
use h2msg_std::transport::Endpoint;
use socket2::{Domain, Socket, Type};

/// What the attackers saw, summed over all their connections.
#[derive(Default)]
struct AttackCounts {
    connected: AtomicU64,
    connect_failed: AtomicU64,
    /// Closed by the service within [`REFUSED_WITHIN`] of connecting, before any byte.
    refused: AtomicU64,
    /// Closed later (evicted, or at the handshake deadline).
    closed_later: AtomicU64,
}

/// A close this soon after the connect, with no byte before it, is taken for a refusal.
const REFUSED_WITHIN: Duration = Duration::from_millis(100);

struct Options {
    bin: PathBuf,
    addresses: u8,
    per_address: usize,
    good: usize,
    good_interval: Duration,
    attacker_pause: Duration,
    settle: Duration,
    service_args: Vec<String>,
}

fn options() -> Options {
    let mut o = Options {
        bin: PathBuf::from("target/debug/h2msg"),
        addresses: 20,
        per_address: 16,
        good: 10,
        good_interval: Duration::from_millis(300),
        attacker_pause: Duration::from_secs(1),
        settle: Duration::from_secs(3),
        service_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bin" => o.bin = PathBuf::from(value()),
            "--addresses" => o.addresses = value().parse().expect("1 to 250 addresses"),
            "--per-address" => o.per_address = value().parse().unwrap(),
            "--good" => o.good = value().parse().unwrap(),
            "--good-interval" => o.good_interval = secs(&value()),
            "--attacker-pause" => o.attacker_pause = secs(&value()),
            "--settle" => o.settle = secs(&value()),
            "--" => {
                o.service_args = args.collect();
                break;
            }
            other => panic!("unknown option {other}"),
        }
    }
    assert!((1..=250).contains(&o.addresses), "1 to 250 addresses");
    o
}

fn secs(text: &str) -> Duration {
    Duration::from_secs_f64(text.parse().unwrap())
}

fn run(bin: &Path, args: &[&str]) {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key directories: the node trusts the client at 127.0.0.1 and has a `.pub` key for each
/// attacker address (the client's, which the attackers do not have the private half of).
fn key_dirs(root: &Path, bin: &Path, addresses: u8) -> (PathBuf, PathBuf) {
    let (node, client) = (root.join("node"), root.join("client"));
    for dir in [&node, &client] {
        run(bin, &["rsainit", dir.to_str().unwrap()]);
        std::fs::create_dir_all(dir.join("remote")).unwrap();
    }
    std::fs::copy(client.join("rsa.pub"), node.join("remote/127.0.0.1.pub")).unwrap();
    std::fs::copy(node.join("rsa.pub"), client.join("remote/127.0.0.1.pub")).unwrap();
    for a in 0..addresses {
        let ip = attacker_ip(a);
        std::fs::copy(
            client.join("rsa.pub"),
            node.join(format!("remote/{ip}.pub")),
        )
        .unwrap();
    }
    (node, client)
}

fn attacker_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, index + 2)
}

/// The service's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name's closing parenthesis; utime and stime are the 12th
    // and 13th of them, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// One attacker connection slot: connect from `ip`, stall until closed, pause, again.
/// The pauses vary (half to one and a half times `pause`, by `seed`), so that the slots do
/// not come back in step, leaving quiet gaps a good client could slip through.
fn attacker(
    ip: Ipv4Addr,
    service: SocketAddr,
    pause: Duration,
    seed: u64,
    stop: &AtomicBool,
    counts: &AttackCounts,
) {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut jittered = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        pause.mul_f64(0.5 + (state >> 11) as f64 / (1u64 << 53) as f64)
    };
    thread::sleep(jittered());
    while !stop.load(Ordering::Relaxed) {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let connected = socket
            .bind(&SocketAddr::from((ip, 0)).into())
            .and_then(|()| socket.connect_timeout(&service.into(), Duration::from_secs(2)));
        if connected.is_err() {
            counts.connect_failed.fetch_add(1, Ordering::Relaxed);
            thread::sleep(jittered());
            continue;
        }
        counts.connected.fetch_add(1, Ordering::Relaxed);
        let mut stream: std::net::TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let mut got_bytes = false;
        let mut buf = [0u8; 1024];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => got_bytes = true,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        if !got_bytes && start.elapsed() < REFUSED_WITHIN {
            counts.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.closed_later.fetch_add(1, Ordering::Relaxed);
        }
        thread::sleep(jittered());
    }
}

fn start_service(bin: &Path, node: &Path, extra: &[String]) -> (Child, String) {
    let mut child = Command::new(bin)
        .args([
            "--keydir",
            node.to_str().unwrap(),
            "service",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on`, got {line:?}"))
        .to_string();
    (child, endpoint)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p of the samples at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let o = options();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let root = tempfile::tempdir().unwrap();
    let (node, client) = key_dirs(root.path(), &o.bin, o.addresses);
    let (mut service, endpoint) = start_service(&o.bin, &node, &o.service_args);
    let address: SocketAddr = endpoint.parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(AttackCounts::default());
    let cpu_before = cpu_time(service.id());
    let attack_start = Instant::now();
    let mut attackers = Vec::new();
    for a in 0..o.addresses {
        for slot in 0..o.per_address {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            let pause = o.attacker_pause;
            let seed = u64::from(a) * 1000 + slot as u64;
            attackers.push(
                thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        attacker(attacker_ip(a), address, pause, seed, &stop, &counts);
                    })
                    .unwrap(),
            );
        }
    }
    thread::sleep(o.settle);

    let keys = KeyDir::new(&client);
    let target = Endpoint::parse(Some(&endpoint));
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..o.good {
        let start = Instant::now();
        let served = connect_within(&target, &keys, ModeChoice::Auto, Duration::from_secs(10))
            .and_then(|(mut link, _)| {
                let took = start.elapsed();
                let mut text = Vec::new();
                shell_exchange(&mut link, "ping", &mut text, false)?;
                if text == b"pong\n" {
                    Ok(took)
                } else {
                    Err(std::io::Error::other(format!("answer {text:?}")))
                }
            });
        match served {
            Ok(took) => times.push(took),
            Err(e) => failures.push(e.to_string()),
        }
        thread::sleep(o.good_interval);
    }
    let attack_time = attack_start.elapsed();
    let cpu = cpu_time(service.id()).saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let _ = service.kill();
    let _ = service.wait();
    for a in attackers {
        let _ = a.join();
    }

    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "service {:?}: {} addresses x {} stalled handshakes",
        o.service_args, o.addresses, o.per_address
    );
    println!(
        "good client: {}/{} served; connect time p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        o.good,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default())
    );
    for f in &failures {
        println!("  failed: {f}");
    }
    println!(
        "attackers: {} connections ({} refused at once, {} closed later, {} connects failed)",
        counts.connected.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.closed_later.load(Ordering::Relaxed),
        counts.connect_failed.load(Ordering::Relaxed)
    );
    println!(
        "service CPU: {:.2} s in {:.1} s ({:.0} %)",
        cpu.as_secs_f64(),
        attack_time.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / attack_time.as_secs_f64()
    );
}
