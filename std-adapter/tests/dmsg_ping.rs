//! `h2msg ping --proto dmsg` against a DMSG node in this test: a `DmsgIocom` over loopback
//! TCP that only polls its events (the connection answers one-way pings by itself, D11).
//! Over RSA against `h2msg service --proto dmsg`; `--mode gcm` of a `.none` peer is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::TcpListener;
use std::path::Path;
use std::thread;

use h2msg::wire::{Cmd, LnkConn, PeerType};
use h2msg::{Config, IocomStats, LinkSetup, Liveness};
use h2msg_std::blocking::{DmsgLink, Duplex, std_dmsg_iocom};

mod common;

/// A DMSG node for one connection: opens its `LNK_CONN` as libdmsg does, then polls
/// events until the peer is gone. Returns the connection's counters.
fn responder(listener: TcpListener) -> thread::JoinHandle<IocomStats> {
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let config = Config {
            liveness: Liveness::OFF,
            ..Config::default()
        };
        let io = std_dmsg_iocom(LinkSetup::plaintext(), 0, config).unwrap();
        let mut link = DmsgLink::new(Duplex::new(stream).unwrap(), io);
        let mut conn = LnkConn::new();
        conn.set_peer_type(PeerType::ROUTER);
        link.io()
            .open(Cmd::DMSG_LNK_CONN, None, conn.as_ext(), &[])
            .unwrap();
        // Until the link is down: a clean end (`None`) or the peer's EOF as an error.
        while let Ok(Some(())) = link.next_event(|_| ()) {}
        link.io().stats()
    })
}

/// A key directory that trusts 127.0.0.1 as `.none`.
fn none_keys(root: &Path) -> String {
    std::fs::create_dir_all(root.join("remote")).unwrap();
    std::fs::write(root.join("remote/127.0.0.1.none"), "").unwrap();
    root.to_str().unwrap().to_string()
}

#[test]
fn ping_over_dmsg_reports_every_one_way_reply() {
    const PINGS: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let keys = none_keys(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = responder(listener);

    let out = common::h2msg_ok(&[
        "--keydir",
        &keys,
        "ping",
        "--proto",
        "dmsg",
        "-n",
        &PINGS.to_string(),
        &addr,
    ]);
    let replies: Vec<&str> = out.lines().filter(|l| l.starts_with("reply ")).collect();
    assert_eq!(replies.len() as u64, PINGS, "{out}");
    for (i, line) in replies.iter().enumerate() {
        assert!(
            line.starts_with(&format!("reply {} from {addr}: time=", i + 1)),
            "{line}"
        );
        assert!(line.ends_with(" ms error=0x0"), "{line}");
    }
    assert!(
        out.contains(&format!("{PINGS} pings: min ")),
        "no summary in {out}"
    );

    // The node answered each ping, and our LNK_CONN with its result: nothing else.
    let stats = node.join().unwrap();
    assert_eq!(stats.auto_replies, PINGS + 1, "{stats:?}");
}

#[test]
fn ping_over_dmsg_runs_over_rsa_and_refuses_gcm_of_a_none_peer() {
    let dir = tempfile::tempdir().unwrap();
    // Over RSA: the service's and the client's keys trust each other (`.pub`), the same
    // handshake as the seed revision's, then DMSG.
    let (node, client) = common::trusted_pair(dir.path());
    let service = common::Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
    let out = common::h2msg_ok(&[
        "--keydir",
        client.to_str().unwrap(),
        "ping",
        "--proto",
        "dmsg",
        "-n",
        "3",
        &service.endpoint,
    ]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("reply ")).count(),
        3,
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| !l.starts_with("reply ") || l.ends_with("error=0x0"))
    );

    // gcm needs an RSA handshake: a `.none` peer is refused, naming the mode.
    let none = none_keys(&dir.path().join("none"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = common::h2msg()
        .args([
            "--keydir", &none, "ping", "--proto", "dmsg", "-n", "1", "--mode", "gcm",
        ])
        .arg(&addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gcm"), "{stderr}");
    assert!(out.stdout.is_empty());
}
