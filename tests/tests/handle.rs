//! The shareable handle (`h2msg_std::handle`) over both drivers: concurrent requests each
//! matched to its own reply, replies in parts, the peer's requests with responders,
//! waiting and non-waiting sends, a close that writes what was queued, and the ends of
//! a link (the peer vanishing, every handle dropped).
//!
//! The links are plaintext over in-memory pipes (tokio) or loopback TCP (blocking)
//! without a handshake: the handshake has its own tests, and both ends agree on
//! `LinkSetup::plaintext()`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use h2msg::wire::{Cmd, MSG_ERR_UNKNOWN, MsgFlags};
use h2msg::{Event, LinkSetup};
use h2msg_std::blocking::{self, Duplex, std_iocom};
use h2msg_std::handle::{HandleError, INCOMING_QUEUE, Incoming, OP_QUEUE, REPLY_PART_QUEUE};
use h2msg_std::tokio_driver::{self, Link};
use tokio::io::DuplexStream;
use tokio::task::JoinSet;

/// "Square this number": the request's data is a u64 (little-endian), the reply's its
/// square.
const SQUARE: Cmd = match Cmd::app(2) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};
/// "Send this back in parts": the reply is the request's data, one 32-byte part at a
/// time, then an empty final part.
const PARTS: Cmd = match Cmd::app(3) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};
/// A request the server takes and drops unanswered.
const IGNORED: Cmd = match Cmd::app(4) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};
/// A one-way note.
const NOTE: Cmd = match Cmd::app(5) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};
/// "Start answering in parts, then give up": the server sends the request's data in
/// 32-byte parts and drops its responder without a final reply.
const HALF: Cmd = match Cmd::app(6) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};

/// A tokio link over one end of an in-memory pipe, accepting `commands`.
fn tokio_link(stream: DuplexStream, commands: &[Cmd]) -> Link<DuplexStream> {
    let mut io = std_iocom(LinkSetup::plaintext(), 0).unwrap();
    for &cmd in commands {
        io.accept(cmd).unwrap();
    }
    Link::new(stream, io)
}

/// Two linked ends of a pipe with `buffer` bytes of room each way.
fn pipe(buffer: usize) -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(buffer)
}

fn first_u64(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

/// Serves SQUARE, PARTS and IGNORED until the link ends.
async fn serve(mut incoming: Incoming) {
    while let Some(request) = incoming.next().await {
        let cmd = request.header().cmd.clear(MsgFlags::ALL);
        if cmd == SQUARE.clear(MsgFlags::ALL) {
            let n = first_u64(request.data()).unwrap();
            let squared = n.wrapping_mul(n).to_le_bytes().to_vec();
            request.reply(0, squared).await.unwrap();
        } else if cmd == PARTS.clear(MsgFlags::ALL) {
            let (data, mut responder) = request.into_parts();
            for chunk in data.chunks(32) {
                responder.reply_part(chunk.to_vec()).await.unwrap();
            }
            responder.reply(0, Vec::new()).await.unwrap();
        } else if cmd == HALF.clear(MsgFlags::ALL) {
            let (data, mut responder) = request.into_parts();
            for chunk in data.chunks(32) {
                responder.reply_part(chunk.to_vec()).await.unwrap();
            }
            // Dropped here without its final reply.
        }
        // IGNORED: dropped here, with its responder.
    }
}

/// A client handle and a serving handle over one pipe, both drivers running.
fn client_and_server(
    server_tasks: &mut JoinSet<()>,
) -> (h2msg_std::handle::Handle, tokio::task::JoinHandle<()>) {
    let (a, b) = pipe(64 * 1024);
    let (client, _, client_driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let (server, incoming, server_driver) =
        tokio_driver::into_handle(tokio_link(b, &[SQUARE, PARTS, IGNORED, HALF]));
    let driving = tokio::spawn(async move {
        client_driver.run().await.unwrap();
    });
    server_tasks.spawn(async move {
        server_driver.run().await.unwrap();
    });
    server_tasks.spawn(serve(incoming));
    // The server needs no handle of its own: its incoming stream keeps its link open.
    drop(server);
    (client, driving)
}

#[tokio::test]
async fn two_hundred_concurrent_requests_each_get_their_own_reply() {
    let mut server = JoinSet::new();
    let (client, driving) = client_and_server(&mut server);
    // More than the 64 transactions the table holds: the rest wait for free ones.
    let mut requests = JoinSet::new();
    for n in 0..200u64 {
        let handle = client.clone();
        requests.spawn(async move {
            let value = 1_000_003 * n + 7;
            let reply = handle.request(SQUARE, value.to_le_bytes().to_vec()).await;
            (value, reply)
        });
    }
    let mut answered = 0;
    while let Some(done) = requests.join_next().await {
        let (value, reply) = done.unwrap();
        let reply = reply.unwrap();
        assert_eq!(reply.error(), 0);
        assert!(reply.is_last());
        assert_eq!(first_u64(reply.data()), Some(value * value), "for {value}");
        answered += 1;
    }
    assert_eq!(answered, 200);
    client.close().await.unwrap();
    driving.await.unwrap();
}

#[tokio::test]
async fn a_reply_in_parts_arrives_part_by_part() {
    let mut server = JoinSet::new();
    let (client, driving) = client_and_server(&mut server);
    let data: Vec<u8> = (0..100u8).collect();
    let mut parts = client.request_parts(PARTS, data.clone()).await.unwrap();
    let mut received = Vec::new();
    let mut lasts = Vec::new();
    while let Some(part) = parts.next().await {
        let part = part.unwrap();
        lasts.push(part.is_last());
        received.push(part.into_data());
    }
    // 100 bytes in 32-byte parts: 32, 32, 32, 4 (padded to 32 in the seed era), then
    // the empty final part.
    assert_eq!(lasts, [false, false, false, false, true]);
    assert_eq!(received.concat().get(..100), Some(&data[..]));
    assert_eq!(received.last().map(Vec::len), Some(0));

    // `request` gives the first part alone.
    let first = client.request(PARTS, data.clone()).await.unwrap();
    assert!(!first.is_last());
    assert_eq!(first.data(), &data[..32]);
    // The link goes on serving after the dropped parts.
    let reply = client.request(SQUARE, 9u64.to_le_bytes().to_vec()).await;
    assert_eq!(first_u64(reply.unwrap().data()), Some(81));
    client.close().await.unwrap();
    driving.await.unwrap();
}

#[tokio::test]
async fn a_request_its_responder_drops_is_answered_0x20() {
    let mut server = JoinSet::new();
    let (client, driving) = client_and_server(&mut server);
    let reply = client.request(IGNORED, b"anyone?".to_vec()).await.unwrap();
    assert_eq!(reply.error(), MSG_ERR_UNKNOWN);
    assert!(reply.is_last());
    client.close().await.unwrap();
    driving.await.unwrap();
}

#[tokio::test]
async fn a_responder_dropped_after_some_parts_sends_them_all_before_its_0x20() {
    let mut server = JoinSet::new();
    let (client, driving) = client_and_server(&mut server);
    let data: Vec<u8> = (0..100u8).collect();
    let mut parts = client.request_parts(HALF, data.clone()).await.unwrap();
    let mut received = Vec::new();
    let mut ends = Vec::new();
    while let Some(part) = parts.next().await {
        let part = part.unwrap();
        ends.push((part.error(), part.is_last()));
        received.push(part.into_data());
    }
    // Four parts (32, 32, 32 and 4 bytes padded to 32), then the answer the drop owes:
    // an empty final reply with error 0x20 — after the parts, never in their place.
    let ok = (0, false);
    assert_eq!(ends, [ok, ok, ok, ok, (MSG_ERR_UNKNOWN, true)]);
    assert_eq!(received.concat().get(..100), Some(&data[..]));
    client.close().await.unwrap();
    driving.await.unwrap();
}

#[tokio::test]
async fn a_request_after_incoming_is_dropped_is_answered_0x20() {
    let (a, b) = pipe(64 * 1024);
    let (client, _, client_driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let (_server, incoming, server_driver) = tokio_driver::into_handle(tokio_link(b, &[SQUARE]));
    drop(incoming);
    tokio::spawn(client_driver.run());
    tokio::spawn(server_driver.run());
    let reply = client.request(SQUARE, 3u64.to_le_bytes().to_vec()).await;
    assert_eq!(reply.unwrap().error(), MSG_ERR_UNKNOWN);
}

/// How long a test waits for an answer before it calls the wait endless: a guard against
/// a hung test, far beyond any expected time, not a measurement.
const HANG_GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_reply_dropped_before_the_driver_took_it_is_answered_0x20() {
    let (a, b) = pipe(64 * 1024);
    let (client, _, client_driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let (server, mut incoming, server_driver) =
        tokio_driver::into_handle(tokio_link(b, &[IGNORED, NOTE]));
    tokio::spawn(client_driver.run());
    tokio::spawn(server_driver.run());
    let asking = {
        let client = client.clone();
        tokio::spawn(async move { client.request(IGNORED, b"anyone?".to_vec()).await })
    };
    let request = incoming.next().await.unwrap();
    // One thread, and no await until the reply below: the server's driver cannot run, so
    // its op channel stays full.
    for n in 0..OP_QUEUE as u64 {
        server.try_send(NOTE, n.to_le_bytes().to_vec()).unwrap();
    }
    assert_eq!(server.try_send(NOTE, vec![0]), Err(HandleError::QueueFull));
    // The reply waits for room; its future is dropped before it finds any (a timeout, a
    // select): the request was never answered by the application.
    tokio::select! {
        biased;
        _ = request.reply(0, b"late".to_vec()) => panic!("room in a full channel"),
        () = std::future::ready(()) => {}
    }
    let reply = tokio::time::timeout(HANG_GUARD, asking)
        .await
        .expect("the request was never answered")
        .unwrap()
        .unwrap();
    assert_eq!(reply.error(), MSG_ERR_UNKNOWN);
    assert!(reply.is_last());
}

#[tokio::test]
async fn reply_parts_cut_short_by_a_close_end_with_an_error() {
    let mut server = JoinSet::new();
    let (client, driving) = client_and_server(&mut server);
    // 40 parts of 32 bytes and an empty final one: far more than the stream holds while
    // nobody reads it.
    let data: Vec<u8> = (0..40 * 32u32).map(|i| (i % 251) as u8).collect();
    let mut parts = client.request_parts(PARTS, data.clone()).await.unwrap();
    // Time for the parts to fill the stream (whatever came, the reply cannot be whole).
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.close().await.unwrap();
    driving.await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = parts.next().await {
        items.push(item);
    }
    // The parts that came, in order and none of them the last; then why it ended.
    let (end, delivered) = items.split_last().unwrap();
    assert_eq!(end, &Err(HandleError::Closed));
    assert!(delivered.len() >= REPLY_PART_QUEUE, "{}", delivered.len());
    for (part, expected) in delivered.iter().zip(data.chunks(32)) {
        let part = part.as_ref().unwrap();
        assert!(!part.is_last());
        assert_eq!(part.data(), expected);
    }
    // Ended for good.
    assert!(parts.next().await.is_none());
}

/// Reads one-way NOTEs with the low-level loop until the link ends: their first bytes,
/// in order.
async fn read_notes(stream: DuplexStream) -> Vec<u64> {
    let mut link = tokio_link(stream, &[NOTE]);
    let mut notes = Vec::new();
    while let Some(note) = link
        .next_event(|event| match event {
            Event::Message { msg, .. } => first_u64(msg.aux()),
            _ => None,
        })
        .await
        .unwrap()
    {
        notes.extend(note);
    }
    notes
}

#[tokio::test]
async fn close_writes_everything_queued_before_it() {
    // A pipe of 4 KiB: most of the notes are still queued when the close is asked for.
    let (a, b) = pipe(4096);
    let (client, _, driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let driving = tokio::spawn(driver.run());
    let reader = tokio::spawn(read_notes(b));
    for n in 0..500u64 {
        let mut data = n.to_le_bytes().to_vec();
        data.resize(1024, 0xAB);
        client.send(NOTE, data).await.unwrap();
    }
    client.close().await.unwrap();
    driving.await.unwrap().unwrap();
    let notes = reader.await.unwrap();
    assert_eq!(notes, (0..500).collect::<Vec<_>>());
    // Closed for every later call.
    assert_eq!(client.send(NOTE, vec![1]).await, Err(HandleError::Closed));
    assert_eq!(
        client.request(SQUARE, vec![1]).await.unwrap_err(),
        HandleError::Closed
    );
}

#[tokio::test]
async fn try_send_reports_a_full_queue_and_send_waits_for_room() {
    // Nobody reads the other end yet: the pipe, the link's queue and the channel fill.
    let (a, b) = pipe(4096);
    let (client, _, driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let driving = tokio::spawn(driver.run());
    let note = |n: u64| {
        let mut data = n.to_le_bytes().to_vec();
        data.resize(4096, 0x5A);
        data
    };
    let mut sent = 0u64;
    // Full once try_send fails even after the driver had every chance to take work.
    loop {
        match client.try_send(NOTE, note(sent)) {
            Ok(()) => sent += 1,
            Err(HandleError::QueueFull) => {
                for _ in 0..100 {
                    tokio::task::yield_now().await;
                }
                match client.try_send(NOTE, note(sent)) {
                    Ok(()) => sent += 1,
                    Err(HandleError::QueueFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    // At least the channel's worth was taken before it filled.
    assert!(sent >= OP_QUEUE as u64, "{sent}");

    // A waiting send does not fail: it waits, and nothing can make room yet.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.send(NOTE, note(sent)).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the send should wait for room");

    // The peer reads: the send completes, and every note arrives once, in order.
    let reader = tokio::spawn(read_notes(b));
    waiting.await.unwrap().unwrap();
    client.close().await.unwrap();
    driving.await.unwrap().unwrap();
    let notes = reader.await.unwrap();
    assert_eq!(notes, (0..=sent).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_peer_vanishing_fails_every_waiting_request() {
    let (a, b) = pipe(64 * 1024);
    let (client, _, driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let driving = tokio::spawn(driver.run());
    // The peer reads ten requests, answers none, and goes.
    let peer = tokio::spawn(async move {
        let mut link = tokio_link(b, &[SQUARE]);
        let mut seen = 0;
        while seen < 10 {
            let request = link
                .next_event(|event| matches!(event, Event::Message { .. }))
                .await
                .unwrap()
                .unwrap();
            seen += usize::from(request);
        }
        drop(link);
    });
    let mut requests = JoinSet::new();
    for n in 0..10u64 {
        let handle = client.clone();
        requests.spawn(async move { handle.request(SQUARE, n.to_le_bytes().to_vec()).await });
    }
    peer.await.unwrap();
    let mut failed = 0;
    while let Some(done) = requests.join_next().await {
        assert_eq!(done.unwrap(), Err(HandleError::LinkLost));
        failed += 1;
    }
    assert_eq!(failed, 10);
    // The peer closed at a message boundary: a clean end for the driver.
    driving.await.unwrap().unwrap();
    assert_eq!(
        client.request(SQUARE, vec![0]).await.unwrap_err(),
        HandleError::Closed
    );
}

#[tokio::test]
async fn dropping_every_handle_ends_the_driver_and_the_link() {
    let (a, b) = pipe(64 * 1024);
    let (client, incoming, driver) = tokio_driver::into_handle(tokio_link(a, &[]));
    let driving = tokio::spawn(driver.run());
    let reader = tokio::spawn(read_notes(b));
    client
        .send(NOTE, 42u64.to_le_bytes().to_vec())
        .await
        .unwrap();
    let other = client.clone();
    drop(client);
    drop(incoming);
    // One clone is still there: the driver runs on.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!driving.is_finished());
    drop(other);
    driving.await.unwrap().unwrap();
    // The peer got the note, then the end of the link.
    assert_eq!(reader.await.unwrap(), [42]);
}

/// A blocking link over one end of a loopback TCP pair, accepting `commands`.
fn blocking_link(stream: TcpStream, commands: &[Cmd]) -> blocking::Link<TcpStream> {
    let mut io = std_iocom(LinkSetup::plaintext(), 0).unwrap();
    for &cmd in commands {
        io.accept(cmd).unwrap();
    }
    blocking::Link::new(Duplex::new(stream).unwrap(), io)
}

#[test]
fn a_blocking_handle_serves_several_threads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();

    let (client, _, client_driver) = blocking::into_handle(blocking_link(a, &[]));
    let (server, mut incoming, server_driver) =
        blocking::into_handle(blocking_link(b, &[SQUARE, PARTS]));
    let client_driving = thread::spawn(move || client_driver.run());
    let server_driving = thread::spawn(move || server_driver.run());
    drop(server);
    let serving = thread::spawn(move || {
        let mut served = 0;
        while let Some(request) = incoming.blocking_next() {
            let is_parts = request.header().cmd.clear(MsgFlags::ALL) == PARTS.clear(MsgFlags::ALL);
            let (data, mut responder) = request.into_parts();
            if is_parts {
                responder.blocking_reply_part(data.clone()).unwrap();
                responder.blocking_reply(0, data).unwrap();
            } else {
                let n = first_u64(&data).unwrap();
                responder
                    .blocking_reply(0, (n * n).to_le_bytes().to_vec())
                    .unwrap();
            }
            served += 1;
        }
        served
    });

    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = client.clone();
            thread::spawn(move || {
                for i in 0..25u64 {
                    let value = t * 1000 + i;
                    let reply = handle
                        .blocking_request(SQUARE, value.to_le_bytes().to_vec())
                        .unwrap();
                    assert_eq!(first_u64(reply.data()), Some(value * value));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut parts = client.blocking_request_parts(PARTS, vec![7; 64]).unwrap();
    let first = parts.blocking_next().unwrap().unwrap();
    let last = parts.blocking_next().unwrap().unwrap();
    assert!(parts.blocking_next().is_none());
    assert_eq!((first.is_last(), last.is_last()), (false, true));
    assert_eq!((first.data(), last.data()), (&[7; 64][..], &[7; 64][..]));

    client.blocking_close().unwrap();
    client_driving.join().unwrap().unwrap();
    // Our close ends the server's link cleanly, and with it its incoming stream.
    server_driving.join().unwrap().unwrap();
    assert_eq!(serving.join().unwrap(), 101);
}

#[test]
fn a_blocking_driver_keeps_writing_while_a_consumer_does_not_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    let (client, mut client_incoming, client_driver) =
        blocking::into_handle(blocking_link(a, &[NOTE]));
    let (server, server_incoming, server_driver) = blocking::into_handle(blocking_link(b, &[NOTE]));
    let client_driving = thread::spawn(move || client_driver.run());
    let server_driving = thread::spawn(move || server_driver.run());
    // More notes than the server's incoming stream holds, and nobody reads it: its driver
    // holds the next one, waiting for room.
    for n in 0..INCOMING_QUEUE as u64 + 2 {
        client
            .blocking_send(NOTE, n.to_le_bytes().to_vec())
            .unwrap();
    }
    // Time for them to arrive (the check below holds whatever came by then).
    thread::sleep(Duration::from_millis(200));
    server
        .blocking_send(NOTE, 7u64.to_le_bytes().to_vec())
        .unwrap();
    let (got, note) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let first = client_incoming.blocking_next().map(|n| first_u64(n.data()));
        let _ = got.send(first);
    });
    assert_eq!(
        note.recv_timeout(HANG_GUARD)
            .expect("the note was never written"),
        Some(Some(7))
    );
    drop(server_incoming);
    drop(server);
    server_driving.join().unwrap().unwrap();
    client_driving.join().unwrap().unwrap();
}

#[test]
fn blocking_reply_parts_cut_short_by_a_close_end_with_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    let (client, _, client_driver) = blocking::into_handle(blocking_link(a, &[]));
    let (server, mut incoming, server_driver) = blocking::into_handle(blocking_link(b, &[PARTS]));
    let client_driving = thread::spawn(move || client_driver.run());
    let server_driving = thread::spawn(move || server_driver.run());
    drop(server);
    let serving = thread::spawn(move || {
        while let Some(request) = incoming.blocking_next() {
            let (data, mut responder) = request.into_parts();
            for chunk in data.chunks(32) {
                if responder.blocking_reply_part(chunk.to_vec()).is_err() {
                    return;
                }
            }
            let _ = responder.blocking_reply(0, Vec::new());
        }
    });
    // 40 parts and an empty final one, more than the stream holds while nobody reads it.
    let data: Vec<u8> = (0..40 * 32u32).map(|i| (i % 251) as u8).collect();
    let mut parts = client.blocking_request_parts(PARTS, data.clone()).unwrap();
    // Time for the parts to fill the stream (whatever came, the reply cannot be whole).
    thread::sleep(Duration::from_millis(200));
    client.blocking_close().unwrap();
    client_driving.join().unwrap().unwrap();
    let mut items = Vec::new();
    while let Some(item) = parts.blocking_next() {
        items.push(item);
    }
    let (end, delivered) = items.split_last().unwrap();
    assert_eq!(end, &Err(HandleError::Closed));
    assert!(delivered.len() >= REPLY_PART_QUEUE, "{}", delivered.len());
    for (part, expected) in delivered.iter().zip(data.chunks(32)) {
        let part = part.as_ref().unwrap();
        assert!(!part.is_last());
        assert_eq!(part.data(), expected);
    }
    assert!(parts.blocking_next().is_none());
    server_driving.join().unwrap().unwrap();
    serving.join().unwrap();
}
