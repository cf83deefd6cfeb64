//! Full duplex over loopback TCP: two endpoints each send [`flood_bytes`] (default 1 GiB,
//! `H2MSG_FLOOD_BYTES` overrides) of 64 KiB messages to the other at the same time, in
//! the blocking and in the tokio driver — all of it arrives. A test double of the old
//! write-first policy stalls on the same load, which is what these tests are built to
//! catch. And liveness through the blocking driver: a peer that goes silent after the
//! handshake is dropped with PEERTIMEOUT at about `idle + dead`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use h2msg::drive::{DriveError, NextIo, Pump};
use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{Config, Event, LinkSetup, Liveness, SendError};
use h2msg_std::blocking::{self, Duplex, StdIocom, std_iocom_with};
use h2msg_tests::plaintext_handshake_until;

/// Aux bytes per message: the largest a message carries.
const MESSAGE_AUX: usize = 64 * 1024;
/// The byte every flood message's aux is filled with.
const FILL: u8 = 0x5A;

/// A flood that makes no progress for this long has stalled.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(5);

/// What each endpoint sends: `H2MSG_FLOOD_BYTES` or 1 GiB, in whole messages.
fn flood_bytes() -> u64 {
    std::env::var("H2MSG_FLOOD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30)
}

fn messages_for(bytes: u64) -> u64 {
    bytes.div_ceil(MESSAGE_AUX as u64).max(1)
}

/// A connection that takes the flood's messages, with the liveness rules off (a
/// debug-build flood must not race the write-stall rule).
fn flood_connection() -> StdIocom {
    let config = Config {
        liveness: Liveness::OFF,
        ..Config::default()
    };
    let mut io = std_iocom_with(LinkSetup::plaintext(), 0, config).expect("std sizes");
    io.accept(Cmd::DBG_SHELL).expect("accept list");
    io
}

/// How a run of two flooding endpoints ended.
#[derive(Debug)]
enum Outcome {
    /// Both received everything; each endpoint's receive rate in MiB/s.
    Completed([f64; 2]),
    /// Neither received a byte for [`NO_PROGRESS_LIMIT`].
    Stalled,
}

/// Runs `endpoint` at both ends of a loopback TCP connection, each told how many messages
/// to send and receive and given a counter of messages received. Watches the counters:
/// no progress for [`NO_PROGRESS_LIMIT`] is a stall, and the sockets are then shut down
/// so that the endpoints end.
fn run_pair<F>(messages: u64, endpoint: F) -> Outcome
where
    F: Fn(TcpStream, u64, u64, &AtomicU64) -> Result<(), String> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let client = TcpStream::connect(address).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let sockets = [client, server];
    let shutdown: Vec<TcpStream> = sockets
        .iter()
        .map(|s| s.try_clone().expect("a second handle"))
        .collect();
    let endpoint = Arc::new(endpoint);
    let received: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(side, socket)| {
            socket.set_nodelay(true).expect("TCP_NODELAY");
            let endpoint = Arc::clone(&endpoint);
            let received = Arc::clone(&received);
            thread::spawn(move || -> Result<Duration, String> {
                endpoint(socket, side as u64, messages, &received[side])?;
                Ok(start.elapsed())
            })
        })
        .collect();

    let mut last = [0, 0];
    let mut last_progress = Instant::now();
    let stalled = loop {
        thread::sleep(Duration::from_millis(100));
        if threads.iter().all(thread::JoinHandle::is_finished) {
            break false;
        }
        let now = [0, 1].map(|side| received[side].load(Ordering::Relaxed));
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= NO_PROGRESS_LIMIT {
            break true;
        }
    };
    if stalled {
        for socket in &shutdown {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("an endpoint panicked"))
        .collect();
    if stalled {
        return Outcome::Stalled;
    }
    let mut rates = [0.0; 2];
    for (side, result) in results.into_iter().enumerate() {
        let elapsed = result.unwrap_or_else(|e| panic!("endpoint {side}: {e}"));
        let got = received[side].load(Ordering::Relaxed);
        assert_eq!(got, messages, "endpoint {side} received everything");
        let mib = (got * MESSAGE_AUX as u64) as f64 / f64::from(1 << 20);
        rates[side] = mib / elapsed.as_secs_f64();
    }
    Outcome::Completed(rates)
}

fn report(driver: &str, messages: u64, outcome: &Outcome) {
    if let Outcome::Completed([a, b]) = outcome {
        let mib = (messages * MESSAGE_AUX as u64) >> 20;
        eprintln!(
            "{driver} flood, {mib} MiB each way at once: {a:.0} MiB/s into endpoint 0, {b:.0} MiB/s into endpoint 1"
        );
    }
}

/// The flood through the blocking driver: queue while there is room, take events while
/// the peer's messages are due, flush the rest.
fn blocking_endpoint(
    socket: TcpStream,
    side: u64,
    messages: u64,
    received: &AtomicU64,
) -> Result<(), String> {
    let mut duplex = Duplex::new(socket).map_err(|e| e.to_string())?;
    let deadline = Some(blocking::now() + Duration::from_secs(10));
    blocking::drive_handshake(&mut duplex, plaintext_handshake_until(side, deadline))
        .map_err(|e| e.to_string())?;
    let mut link = blocking::Link::new(duplex, flood_connection());
    let aux = vec![FILL; MESSAGE_AUX];
    let mut sent = 0;
    while sent < messages || received.load(Ordering::Relaxed) < messages {
        while sent < messages {
            match link.io().send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux) {
                Ok(_) => sent += 1,
                Err(SendError::Tx(_)) => break, // the queue is full
                Err(e) => return Err(e.to_string()),
            }
        }
        if received.load(Ordering::Relaxed) < messages {
            let event = link.next_event(flood_message);
            match event.map_err(|e| e.to_string())? {
                Some(Some(Ok(()))) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Some(Some(Err(why))) => return Err(why),
                Some(None) => {}
                None => return Err("the peer closed early".into()),
            }
        } else {
            link.flush().map_err(|e| e.to_string())?;
        }
    }
    link.flush().map_err(|e| e.to_string())
}

/// `None` for an event that is not a message; for a message, whether it is one of the
/// flood's: `MESSAGE_AUX` bytes of aux, the fill byte at its first and last positions.
fn flood_message(event: Event<'_>) -> Option<Result<(), String>> {
    let Event::Message { msg, .. } = event else {
        return None;
    };
    let aux = msg.aux();
    Some(
        if aux.len() == MESSAGE_AUX && aux.first() == Some(&FILL) && aux.last() == Some(&FILL) {
            Ok(())
        } else {
            Err(format!(
                "a flood message arrived changed: {} aux bytes, first {:?}, last {:?}",
                aux.len(),
                aux.first(),
                aux.last()
            ))
        },
    )
}

/// The flood through the tokio driver, on a runtime of its own per endpoint.
fn tokio_endpoint(
    socket: TcpStream,
    side: u64,
    messages: u64,
    received: &AtomicU64,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = tokio::net::TcpStream::from_std(socket).map_err(|e| e.to_string())?;
        let deadline = Some(blocking::now() + Duration::from_secs(10));
        h2msg_std::tokio_driver::drive_handshake(
            &mut stream,
            plaintext_handshake_until(side, deadline),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut link = h2msg_std::tokio_driver::Link::new(stream, flood_connection());
        let aux = vec![FILL; MESSAGE_AUX];
        let mut sent = 0;
        while sent < messages || received.load(Ordering::Relaxed) < messages {
            while sent < messages {
                match link.io().send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux) {
                    Ok(_) => sent += 1,
                    Err(SendError::Tx(_)) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if received.load(Ordering::Relaxed) < messages {
                let event = link.next_event(flood_message);
                match event.await.map_err(|e| e.to_string())? {
                    Some(Some(Ok(()))) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Some(Err(why))) => return Err(why),
                    Some(None) => {}
                    None => return Err("the peer closed early".into()),
                }
            } else {
                link.flush().await.map_err(|e| e.to_string())?;
            }
        }
        link.flush().await.map_err(|e| e.to_string())
    })
}

/// The old drivers' policy as a test double: whenever bytes wait, block in a write, and
/// read only when nothing does.
fn write_first_endpoint(
    mut socket: TcpStream,
    side: u64,
    messages: u64,
    received: &AtomicU64,
) -> Result<(), String> {
    let mut duplex =
        Duplex::new(socket.try_clone().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let deadline = Some(blocking::now() + Duration::from_secs(10));
    blocking::drive_handshake(&mut duplex, plaintext_handshake_until(side, deadline))
        .map_err(|e| e.to_string())?;
    duplex.into_inner().map_err(|e| e.to_string())?;
    let mut pump = Pump::new(flood_connection());
    let aux = vec![FILL; MESSAGE_AUX];
    let mut sent = 0;
    let fail = |e: DriveError<io::Error>| e.to_string();
    while sent < messages || received.load(Ordering::Relaxed) < messages {
        while sent < messages {
            match pump.io().send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux) {
                Ok(_) => sent += 1,
                Err(_) => break,
            }
        }
        while let Some(event) = pump.poll_event() {
            if matches!(event, Event::Message { .. }) {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
        match pump.next_io().map_err(fail)? {
            NextIo::Closed => return Err("the peer closed early".into()),
            NextIo::Wait(wants) if wants.write => {
                let [older, newer] = pump.pending();
                let result = socket.write_vectored(&[IoSlice::new(older), IoSlice::new(newer)]);
                pump.on_write(result).map_err(fail)?;
            }
            NextIo::Wait(_) => {
                let result = socket.read(pump.read_buf());
                pump.on_read(result).map_err(fail)?;
            }
        }
    }
    Ok(())
}

#[test]
fn the_blocking_driver_floods_both_ways_at_once() {
    let messages = messages_for(flood_bytes());
    let outcome = run_pair(messages, blocking_endpoint);
    report("blocking", messages, &outcome);
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
}

#[test]
fn the_tokio_driver_floods_both_ways_at_once() {
    let messages = messages_for(flood_bytes());
    let outcome = run_pair(messages, tokio_endpoint);
    report("tokio", messages, &outcome);
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
}

/// The failure the flood tests catch: with write-first drivers at both ends, both block
/// in a write once the socket buffers are full, and neither reads again.
#[test]
fn a_write_first_driver_stalls_under_the_same_flood() {
    // Far more than any loopback socket buffers hold, whatever the flood volume.
    let messages = messages_for(256 << 20);
    let outcome = run_pair(messages, write_first_endpoint);
    assert!(
        matches!(outcome, Outcome::Stalled),
        "the write-first double completed: {outcome:?}"
    );
}

/// A peer that completes the plaintext handshake and then neither sends nor closes is
/// dropped with PEERTIMEOUT (30) at about `idle + dead`.
#[test]
fn a_silent_peer_is_dropped_with_peer_timeout_at_idle_plus_dead() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let silent = thread::spawn(move || {
        let (socket, _) = listener.accept().expect("accept");
        let mut duplex = Duplex::new(socket).expect("threads");
        let deadline = Some(blocking::now() + Duration::from_secs(10));
        blocking::drive_handshake(&mut duplex, plaintext_handshake_until(1, deadline))
            .expect("the silent peer's handshake");
        let mut socket = duplex.into_inner().expect("idle after the handshake");
        // Silent from here on; returns when our side hangs up.
        let _ = io::copy(&mut socket, &mut io::sink());
    });

    let (idle, dead) = (Duration::from_millis(300), Duration::from_millis(400));
    let mut duplex = Duplex::new(TcpStream::connect(address).expect("connect")).expect("threads");
    let deadline = Some(blocking::now() + Duration::from_secs(10));
    blocking::drive_handshake(&mut duplex, plaintext_handshake_until(2, deadline))
        .expect("our handshake");
    let config = Config {
        liveness: Liveness {
            idle: Some(idle),
            dead: Some(dead),
            stall: None,
        },
        ..Config::default()
    };
    let io = std_iocom_with(LinkSetup::plaintext(), 0, config).expect("std sizes");
    let start = Instant::now();
    let mut link = blocking::Link::new(duplex, io);
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    let ours = thread::spawn(move || {
        let end = loop {
            match link.next_event(|_| ()) {
                Ok(Some(())) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = ended_tx.send((end, start.elapsed()));
    });
    let (end, waited) = ended_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the silent peer is dropped within 30 s");
    let err = end.expect_err("the link ends in an error");
    assert!(matches!(err, DriveError::PeerTimeout), "{err:?}");
    assert_eq!(err.code(), 30);
    let limit = idle + dead;
    // The driver's clock counts whole milliseconds: its start may be up to one early.
    assert!(
        waited + Duration::from_millis(1) >= limit,
        "dropped after {waited:?}, before {limit:?}"
    );
    // Only a guard against "never": generous, so a loaded machine cannot flake it.
    assert!(
        waited < limit + Duration::from_secs(10),
        "dropped after {waited:?}, {limit:?} was due"
    );
    ours.join().expect("our side");
    silent.join().expect("the silent side");
}
