//! The blocking driver's socket threads ([`Duplex`]): reading ahead once asked to, and
//! not before — a handshake must leave the bytes after its block in the socket.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use h2msg::drive::{IoInterest, Transport, TryIoError};
use h2msg_std::blocking::{Duplex, READ_AHEAD, now};

const READ: IoInterest = IoInterest {
    read: true,
    write: false,
};

/// A connected loopback pair: (ours, the peer's).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let ours = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (ours, theirs)
}

/// The byte at stream offset `i` of the peer's pattern: period 251 (prime), so a byte
/// lost, doubled or moved by any power-of-two boundary shows.
fn pattern(i: usize) -> u8 {
    u8::try_from(i % 251).expect("below 251")
}

#[test]
fn without_read_ahead_nothing_is_read_until_asked_and_the_socket_can_be_taken_back() {
    let (ours, mut theirs) = pair();
    let mut duplex = Duplex::new(ours).expect("threads");
    theirs.write_all(b"after the block").expect("write");
    // Nothing asked: a wait for input sees none however long the bytes sit in the socket.
    duplex
        .wait(READ, Some(now() + Duration::from_millis(200)))
        .expect("a timed wait");
    let mut socket = duplex.into_inner().expect("idle: no read asked, none held");
    let mut got = [0u8; 15];
    std::io::Read::read_exact(&mut socket, &mut got).expect("the bytes stayed in the socket");
    assert_eq!(&got, b"after the block");
}

/// One read into `buf` through the duplex, waiting as a driver does while nothing is
/// there: the bytes read, 0 at the end of input.
fn read_some(duplex: &mut Duplex<TcpStream>, buf: &mut [u8]) -> usize {
    loop {
        match duplex.try_read(buf) {
            Ok(n) => return n,
            Err(TryIoError::WouldBlock) => duplex
                .wait(READ, Some(now() + Duration::from_secs(10)))
                .expect("a timed wait"),
            Err(TryIoError::Failed(e)) => panic!("the read failed: {e}"),
        }
    }
}

/// Reads exactly `n` bytes through the duplex, waiting as a driver does.
fn read_exactly(duplex: &mut Duplex<TcpStream>, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut buf = vec![0u8; n - got.len()];
        match read_some(duplex, &mut buf) {
            0 => panic!("the input ended after {} bytes", got.len()),
            k => got.extend_from_slice(&buf[..k]),
        }
    }
    got
}

/// The peer sends 1 MiB; we read its first 10 bytes, then wait a while for input
/// without asking for more, and ask for the socket back.
fn socket_after_a_small_read(read_ahead: usize) -> std::io::Result<TcpStream> {
    let (ours, mut theirs) = pair();
    let mut duplex = Duplex::new(ours).expect("threads");
    duplex.read_ahead(read_ahead);
    thread::spawn(move || {
        let bytes: Vec<u8> = (0..1 << 20).map(pattern).collect();
        // Nobody reads the whole: the write fails or blocks until the test drops its
        // end, which is all this thread is for.
        let _ = theirs.write_all(&bytes);
    });
    let first = read_exactly(&mut duplex, 10);
    assert_eq!(first, (0..10).map(pattern).collect::<Vec<_>>());
    // The read filled all it was asked for, so the socket likely has more: a reader
    // allowed to read ahead goes on (and this wait ends when it brings bytes), one that
    // is not waits to be asked (and this wait runs out).
    duplex
        .wait(READ, Some(now() + Duration::from_millis(500)))
        .expect("a timed wait");
    duplex.into_inner()
}

#[test]
fn without_read_ahead_a_small_read_leaves_the_rest_in_the_socket() {
    let mut socket = socket_after_a_small_read(0).expect("idle: nothing read unasked");
    let mut next = [0u8; 5];
    std::io::Read::read_exact(&mut socket, &mut next).expect("read");
    assert_eq!(next.to_vec(), (10..15).map(pattern).collect::<Vec<_>>());
}

#[test]
fn with_read_ahead_a_full_read_goes_on_reading_so_the_socket_is_not_handed_back() {
    let err = socket_after_a_small_read(READ_AHEAD).expect_err("the reader read on unasked");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
}

#[test]
fn reads_filled_before_read_ahead_was_on_do_not_start_it() {
    // As after a handshake: reads of exactly what was asked, which fill their chunk.
    let (ours, mut theirs) = pair();
    let mut duplex = Duplex::new(ours).expect("threads");
    theirs.write_all(b"the whole block").expect("write");
    assert_eq!(read_exactly(&mut duplex, 15), b"the whole block");
    duplex.read_ahead(READ_AHEAD);
    // Nothing more comes: a reader that took the handshake's full reads as "the socket
    // has more" would now sit in a read and keep the socket.
    duplex
        .wait(READ, Some(now() + Duration::from_millis(300)))
        .expect("a timed wait");
    let mut socket = duplex
        .into_inner()
        .expect("an idle link's socket comes back");
    theirs.write_all(b"next").expect("write");
    let mut next = [0u8; 4];
    std::io::Read::read_exact(&mut socket, &mut next).expect("read");
    assert_eq!(&next, b"next");
}

#[test]
fn with_read_ahead_a_short_read_stops_the_reader_so_an_idle_socket_comes_back() {
    let (ours, mut theirs) = pair();
    let mut duplex = Duplex::new(ours).expect("threads");
    duplex.read_ahead(READ_AHEAD);
    theirs.write_all(b"a ping's reply").expect("write");
    // Asked for more than came: a short read, after which the reader waits to be asked.
    let mut buf = [0u8; 64];
    let n = read_some(&mut duplex, &mut buf);
    assert_eq!(&buf[..n], b"a ping's reply");
    let mut socket = duplex
        .into_inner()
        .expect("an idle link's socket comes back");
    theirs.write_all(b"later").expect("write");
    let mut later = [0u8; 5];
    std::io::Read::read_exact(&mut socket, &mut later).expect("read");
    assert_eq!(&later, b"later");
}

#[test]
fn read_ahead_delivers_every_byte_in_order_through_reads_of_any_size() {
    let (ours, mut theirs) = pair();
    let mut duplex = Duplex::new(ours).expect("threads");
    duplex.read_ahead(READ_AHEAD);
    // Several times the read-ahead, so the buffer fills, wraps and drains many times.
    let total = 5 * READ_AHEAD + 12_345;
    let writer = thread::spawn(move || {
        let bytes: Vec<u8> = (0..total).map(pattern).collect();
        for piece in bytes.chunks(100_003) {
            theirs.write_all(piece).expect("write");
        }
        theirs.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(total);
    // Odd sizes, smaller and larger than the socket reads, so reads split buffered runs.
    let sizes = [1usize, 7, 4096, 65_537, 300_001, 13];
    let mut turn = 0;
    loop {
        let mut buf = vec![0u8; sizes[turn % sizes.len()]];
        turn += 1;
        match read_some(&mut duplex, &mut buf) {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    writer.join().expect("the writer");
    assert_eq!(got.len(), total);
    let first_wrong = got.iter().enumerate().position(|(i, b)| *b != pattern(i));
    assert_eq!(first_wrong, None, "every byte where it was sent");
}
