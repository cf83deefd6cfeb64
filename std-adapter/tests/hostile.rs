//! Hostile and broken clients against one running `h2msg service`, while a good client
//! keeps working: each bad link costs only itself. And the service's clean stop on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use h2msg::Event;
use h2msg::ModeChoice;
use h2msg::wire::{Cmd, MsgFlags, MsgHeader};
use h2msg_std::blocking::std_iocom;
use h2msg_std::client::{connect, shell_exchange};
use h2msg_std::keys::KeyDir;
use h2msg_std::transport::Endpoint;

mod common;
use common::{Service, handshaken, plaintext_pair, time_to_close};

/// How long the service gives a handshake in these tests (`--handshake-timeout`).
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(1);

/// The wire bytes of one message, encoded by a connection's transmit side.
fn encoded(header: MsgHeader, aux: &[u8]) -> Vec<u8> {
    let mut io = std_iocom(h2msg::LinkSetup::plaintext(), 0).unwrap();
    io.send(header, &[], aux).unwrap();
    let mut bytes = vec![0u8; 64 + aux.len()];
    let n = io.copy_pending(&mut bytes);
    bytes.truncate(n);
    bytes
}

#[test]
fn hostile_clients_cost_only_their_own_links() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let deadline = format!("{}", HANDSHAKE_DEADLINE.as_secs_f64());
    let service = Service::start_with(&node, "127.0.0.1:0", &["--handshake-timeout", &deadline]);
    let endpoint = service.endpoint.clone();
    let good_keys = KeyDir::new(&client);
    let (mut good, _) = connect(
        &Endpoint::parse(Some(&endpoint)),
        &good_keys,
        ModeChoice::Auto,
    )
    .unwrap();
    // A stuck service fails the test instead of hanging it.
    good.transport()
        .stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let hostile: Vec<thread::JoinHandle<&'static str>> = vec![
        {
            // Garbage instead of a handshake block: the verifier fails, the link closes.
            let endpoint = endpoint.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect(endpoint.as_str()).unwrap();
                let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
                let _ = s.write_all(&garbage);
                let took = time_to_close(&mut s);
                assert!(took < Duration::from_secs(5), "{took:?}");
                "garbage handshake"
            })
        },
        {
            // A third of a handshake block, then silence: the deadline closes the link.
            let endpoint = endpoint.clone();
            thread::spawn(move || {
                // The service's clock starts after our connect, so ours runs longer.
                let start = Instant::now();
                let mut s = TcpStream::connect(endpoint.as_str()).unwrap();
                s.write_all(&[0u8; 170]).unwrap();
                time_to_close(&mut s);
                let took = start.elapsed();
                assert!(
                    took >= HANDSHAKE_DEADLINE && took < Duration::from_secs(5),
                    "closed after {took:?}, not at the handshake deadline"
                );
                "stalled handshake"
            })
        },
        {
            // A good handshake, then garbage where a message header belongs (SYNC).
            let (endpoint, client) = (endpoint.clone(), client.clone());
            thread::spawn(move || {
                let mut s = handshaken(&endpoint, &client);
                s.write_all(&[0x5Au8; 64]).unwrap();
                let took = time_to_close(&mut s);
                assert!(took < Duration::from_secs(5), "{took:?}");
                "garbage message"
            })
        },
        {
            // Half of a 64 KiB message, then the client goes away (EOF mid-message).
            let (endpoint, client) = (endpoint.clone(), client.clone());
            thread::spawn(move || {
                let mut s = handshaken(&endpoint, &client);
                let bytes = encoded(MsgHeader::new(Cmd::LNK_PING), &[1u8; 65536]);
                s.write_all(&bytes[..bytes.len() / 2]).unwrap();
                drop(s);
                "disconnect mid-message"
            })
        },
        {
            // A 64 KiB aux message one byte per write: answered like any other.
            let (endpoint, client) = (endpoint.clone(), client.clone());
            thread::spawn(move || {
                let mut s = handshaken(&endpoint, &client);
                s.set_nodelay(true).unwrap();
                let mut ping = MsgHeader::new(Cmd::LNK_PING);
                ping.msgid = 77;
                let aux: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
                for byte in encoded(ping, &aux) {
                    s.write_all(&[byte]).unwrap();
                }
                let mut rx = std_iocom(h2msg::LinkSetup::plaintext(), 0).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                loop {
                    if let Some(reply) = rx.poll_event().and_then(|e| match e {
                        Event::Message { msg, .. } => Some(*msg.header()),
                        _ => None,
                    }) {
                        assert_eq!(reply.cmd, Cmd::LNK_PING.set(MsgFlags::REPLY));
                        assert_eq!((reply.msgid, reply.error), (77, 0));
                        break;
                    }
                    let n = s.read(rx.read_buf()).unwrap();
                    assert_ne!(n, 0, "closed before the reply");
                    rx.commit_read(n).unwrap();
                }
                "64 KiB one byte at a time"
            })
        },
    ];

    // The good client is served all along: pings and shell lines, answered right.
    let mut round = 0u32;
    while !hostile.iter().all(thread::JoinHandle::is_finished) {
        round += 1;
        let mut ping = MsgHeader::new(Cmd::LNK_PING);
        ping.msgid = round;
        good.io().send(ping, &[], &[]).unwrap();
        assert_eq!(h2msg_std::client::ping_answer(&mut good, round).unwrap(), 0);
        let mut text = Vec::new();
        shell_exchange(&mut good, "ping", &mut text, false).unwrap();
        assert_eq!(text, b"pong\n");
        thread::sleep(Duration::from_millis(20));
    }
    for h in hostile {
        let name = h.join().expect("a hostile client's expectation failed");
        eprintln!("{name}: handled");
    }
    assert!(
        round > 1,
        "the good client should have been served during the attacks"
    );

    // Every bad link is gone from the service; the good one is the only link left.
    let gone = Instant::now();
    loop {
        let mut text = Vec::new();
        shell_exchange(&mut good, "status", &mut text, false).unwrap();
        let status = String::from_utf8(text).unwrap();
        if status.starts_with("links: 1 of ") {
            assert!(status.contains("(served 6, refused 0)"), "{status}");
            break;
        }
        assert!(gone.elapsed() < Duration::from_secs(5), "{status}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// One address may have only so many handshakes under way: with two stalled, a third
/// connection is closed at once, and once the stalled ones time out a good client is
/// served again.
#[test]
fn stalled_handshakes_from_one_address_are_capped() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let deadline = format!("{}", HANDSHAKE_DEADLINE.as_secs_f64());
    let service = Service::start_with(
        &node,
        "127.0.0.1:0",
        &[
            "--handshake-timeout",
            &deadline,
            "--handshakes-per-peer",
            "2",
        ],
    );
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(service.endpoint.as_str()).unwrap())
        .collect();
    // Give the service time to admit both before the third arrives.
    thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(service.endpoint.as_str()).unwrap();
    let took = time_to_close(&mut third);
    assert!(took < HANDSHAKE_DEADLINE / 2, "the third waited {took:?}");

    thread::sleep(HANDSHAKE_DEADLINE);
    let (mut good, _) = connect(
        &Endpoint::parse(Some(&service.endpoint)),
        &KeyDir::new(&client),
        ModeChoice::Auto,
    )
    .unwrap();
    let mut text = Vec::new();
    shell_exchange(&mut good, "status", &mut text, false).unwrap();
    let status = String::from_utf8(text).unwrap();
    assert!(status.starts_with("links: 1 of "), "{status}");
    assert!(status.contains("(served 3, refused 1)"), "{status}");
    drop(stalled);
}

#[test]
fn sigterm_stops_the_service_and_closes_its_links() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let socket = t.path().join("h2msg.sock");
    let mut service = Service::start_with(&node, &format!("unix:{}", socket.display()), &[]);
    let (mut link, _) = connect(
        &Endpoint::parse(Some(&service.endpoint)),
        &KeyDir::new(&client),
        ModeChoice::Auto,
    )
    .unwrap();
    let mut text = Vec::new();
    shell_exchange(&mut link, "ping", &mut text, false).unwrap();
    assert_eq!(text, b"pong\n");
    assert!(socket.exists());
    // A peer that never starts its handshake must not hold the stop up until the
    // handshake deadline (10 s by default).
    let silent = std::os::unix::net::UnixStream::connect(&socket).unwrap();

    let status = service
        .signal_and_wait("TERM", Duration::from_secs(5))
        .expect("the service stops within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    // Our link was shut down from the other side: it goes down, and the socket file is gone.
    let mut events = Vec::new();
    while let Some(down) = link
        .next_event(|e| matches!(e, Event::LinkDown(_)))
        .unwrap()
    {
        events.push(down);
        assert!(events.len() < 10, "the link should go down");
    }
    assert_eq!(events, [true]);
    assert!(!socket.exists());
    drop(silent);
}

#[test]
fn sigterm_stops_the_service_after_its_socket_file_was_removed() {
    let t = tempfile::tempdir().unwrap();
    let (node, _) = plaintext_pair(t.path());
    let socket = t.path().join("h2msg.sock");
    let mut service = Service::start_with(&node, &format!("unix:{}", socket.display()), &[]);
    // Someone cleaned up the run directory under the running service: nothing can connect
    // to its socket any more, the service itself included.
    std::fs::remove_file(&socket).unwrap();
    let start = std::time::Instant::now();
    let status = service
        .signal_and_wait("TERM", Duration::from_secs(5))
        .expect("the service stops within 5 s of SIGTERM without its socket file");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}
