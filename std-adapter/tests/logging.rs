//! The service's log never holds the service up: with standard error on a pipe that nobody
//! reads, a flood of connections (each logging) leaves new links served and SIGTERM
//! obeyed; repeated warnings are summarised and lines that did not fit are counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use h2msg::ModeChoice;
use h2msg_std::client::{connect_within, shell_exchange};
use h2msg_std::keys::KeyDir;
use h2msg_std::transport::Endpoint;
use socket2::{Domain, Socket, Type};

mod common;
use common::{h2msg, plaintext_pair};

/// Connections of each kind in the flood: enough that their lines (about 100 bytes a good
/// link at `-v`) overflow a 64 KiB pipe and the logger's queue several times over.
const FLOOD_EACH: usize = 2000;

/// A connection from 127.0.0.2, an address with no key files: the service logs a NORKEY
/// warning for it. Closed at once.
fn unkeyed_connection(service: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())?;
    socket.connect_timeout(&service.into(), Duration::from_secs(1))
}

#[test]
fn a_log_nobody_reads_holds_up_neither_links_nor_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let mut child = h2msg()
        .args(["-v", "--keydir", node.to_str().unwrap(), "service"])
        .args(["--listen", "127.0.0.1:0"])
        // The flood is of log lines, not of handshakes: no rate limit in the way.
        .args([
            "--handshake-rate",
            "1000000",
            "--handshake-burst",
            "1048576",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open and not read until the flood is over.
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let address: SocketAddr = endpoint.parse().unwrap();
    let keys = KeyDir::new(&client);

    let flood_start = Instant::now();
    let (mut attempted, mut unkeyed, mut plaintext) = (0usize, 0usize, 0usize);
    for _ in 0..FLOOD_EACH {
        attempted += 1;
        unkeyed += usize::from(unkeyed_connection(address).is_ok());
        // A good link at -v logs `up` and `closed`; lines no rate limit applies to.
        let good = connect_within(
            &Endpoint::parse(Some(&endpoint)),
            &keys,
            ModeChoice::Auto,
            Duration::from_secs(1),
        );
        plaintext += usize::from(good.is_ok());
        if flood_start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let flood_time = flood_start.elapsed();

    // A new good link is served at once, although nobody has read a byte of the log.
    let (served, answer) = mpsc::channel();
    let endpoint_for_client = endpoint.clone();
    thread::spawn(move || {
        let result = connect_within(
            &Endpoint::parse(Some(&endpoint_for_client)),
            &keys,
            ModeChoice::Auto,
            Duration::from_secs(5),
        )
        .and_then(|(mut link, _)| {
            let mut text = Vec::new();
            shell_exchange(&mut link, "ping", &mut text, false).map(|()| text)
        });
        let _ = served.send(result.map_err(|e| e.to_string()));
    });
    let pong = answer
        .recv_timeout(Duration::from_secs(10))
        .expect("a good link is served within 10 s after the flood");
    assert_eq!(pong.unwrap(), b"pong\n");

    // SIGTERM is obeyed while the log is still unread.
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the service ignored SIGTERM for 5 s"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let exit_time = signalled.elapsed();
    assert!(status.success(), "{status:?}");

    let mut log = String::new();
    BufReader::new(stderr).read_to_string(&mut log).unwrap();
    eprintln!(
        "flood: {unkeyed} unkeyed and {plaintext} plaintext connections of {attempted} \
         attempts each in {flood_time:?}; \
         exit {exit_time:?} after SIGTERM; {} bytes of log reached the pipe",
        log.len()
    );
    // Of the connections actually tried (the flood stops at 30 s on a slow machine), at
    // least half of each kind got through while nobody read the log.
    assert!(attempted > 0);
    assert!(
        unkeyed >= attempted.div_ceil(2) && plaintext >= attempted.div_ceil(2),
        "{unkeyed} unkeyed and {plaintext} plaintext of {attempted} attempts"
    );
    // What reached the pipe before it filled: whole lines, and the NORKEY warning (one
    // per unkeyed connection) no more often than the rate limit lets it through. (That the
    // rest are summarised and dropped lines counted, the logging module's tests show: here
    // the pipe stayed full to the end.)
    assert!(
        log.len() > 32 << 10,
        "the pipe should have filled: {} bytes",
        log.len()
    );
    assert!(log.lines().all(|l| l.starts_with("h2msg [")), "{log}");
    let norkey = log.lines().filter(|l| l.contains("NORKEY")).count();
    assert!(
        (1..=h2msg_std::logging::RATE_BUDGET as usize).contains(&norkey),
        "{norkey} NORKEY lines"
    );
}
